// Throughput of lmtp::BodyEncoder, the body encoder every delivery goes
// through (line ends made CRLF, leading dots doubled for DATA). Inputs of 1 KB,
// 64 KB, 1 MB and 16 MB are fed in 64 KiB pieces, as a client streams a
// message, into one reused output buffer. The bytes/s counter is of input
// bytes; the same figure at every size shows the cost grows linearly.
//
//   text      mail-like lines with CRLF, one in seven starting with a dot
//   dots      nothing but '.' (one long line: only its first dot is doubled)
//   dot_lines ".\r\n" again and again: every line is stuffed (output 4/3 of input)
//   bare_lf   nothing but '\n': every byte becomes CRLF (output twice the input)
//   bare_cr   nothing but '\r': every byte becomes CRLF
//   text (canonical) the same text in BDAT mode: line ends only, no dot-stuffing
//
// And the encoder's scan alone (core/src/body_scan.hpp), which finds where
// bytes are added and writes nothing, fed the same way:
//
//   scan_text         the text, DATA mode, 64 bytes at once (SSE2 on x86-64)
//   scan_text_scalar  the same, a byte at a time (the scan's definition)
//   scan_dots         one long line, skipped to its end
//   scan_bare_lf      a change at every byte
#include <lmtp/body.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>

#include "body_scan.hpp"

namespace {

std::string make_input(const std::string& kind, std::size_t size) {
    std::string s;
    s.reserve(size + 80);
    if (kind == "text") {
        static const char words[] = "the quick brown fox jumps over the lazy dog while 42 mailboxes wait ";
        std::uint32_t st = 1;
        for (std::size_t line = 0; s.size() < size; ++line) {
            if (line % 7 == 0) s += '.';
            for (int i = 0; i < 70; ++i) {
                st = st * 1103515245u + 12345u;
                s += words[(st >> 16) % (sizeof words - 1)];
            }
            s += "\r\n";
        }
    } else if (kind == "dots") {
        s.assign(size, '.');
    } else if (kind == "dot_lines") {
        while (s.size() < size) s += ".\r\n";
    } else if (kind == "bare_lf") {
        s.assign(size, '\n');
    } else if (kind == "bare_cr") {
        s.assign(size, '\r');
    }
    s.resize(size);
    return s;
}

void BM_Encode(benchmark::State& state, std::string kind, lmtp::BodyEncoder::Mode mode) {
    const std::size_t size = static_cast<std::size_t>(state.range(0));
    const std::string input = make_input(kind, size);
    constexpr std::size_t piece = 64 * 1024;
    lmtp::BodyEncoder enc(mode);
    std::string out;
    out.reserve(2 * piece + 8);
    std::uint64_t wire = 0;
    for (auto _ : state) {
        std::string_view in(input);
        while (!in.empty()) {
            std::string_view chunk = in.substr(0, piece);
            in.remove_prefix(chunk.size());
            out.clear();
            enc.encode(chunk, out);
            wire += out.size();
            benchmark::DoNotOptimize(out.data());
        }
        out.clear();
        enc.finish(out);
        wire += out.size();
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(size));
    state.counters["wire_per_input"] =
        static_cast<double>(wire) / static_cast<double>(state.iterations()) / static_cast<double>(size);
}

void BM_Scan(benchmark::State& state, std::string kind, lmtp::detail::ScanFunction scan) {
    const std::size_t size = static_cast<std::size_t>(state.range(0));
    const std::string input = make_input(kind, size);
    constexpr std::size_t piece = 64 * 1024;
    lmtp::detail::BlockChanges blocks[16];
    for (auto _ : state) {
        bool line_start = true, cr_before = false;
        std::size_t changed = 0;
        for (std::size_t pos = 0; pos < size; pos += piece) {
            const char* begin = input.data() + pos;
            lmtp::detail::ScanCursor cur(begin, begin + std::min(piece, size - pos), true, line_start);
            cur.cr_before = cr_before;
            while (cur.p != cur.end) changed += scan(cur, blocks, 16);
            line_start = cur.line_start;
            cr_before = cur.cr_before;
        }
        benchmark::DoNotOptimize(changed);
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(size));
}

void sizes(benchmark::internal::Benchmark* b) {
    for (std::int64_t s : {1 << 10, 64 << 10, 1 << 20, 16 << 20}) b->Arg(s);
}

}  // namespace

BENCHMARK_CAPTURE(BM_Encode, text, std::string("text"), lmtp::BodyEncoder::Mode::dot_stuff)->Apply(sizes);
BENCHMARK_CAPTURE(BM_Encode, dots, std::string("dots"), lmtp::BodyEncoder::Mode::dot_stuff)->Apply(sizes);
BENCHMARK_CAPTURE(BM_Encode, dot_lines, std::string("dot_lines"), lmtp::BodyEncoder::Mode::dot_stuff)->Apply(sizes);
BENCHMARK_CAPTURE(BM_Encode, bare_lf, std::string("bare_lf"), lmtp::BodyEncoder::Mode::dot_stuff)->Apply(sizes);
BENCHMARK_CAPTURE(BM_Encode, bare_cr, std::string("bare_cr"), lmtp::BodyEncoder::Mode::dot_stuff)->Apply(sizes);
BENCHMARK_CAPTURE(BM_Encode, text_canonical, std::string("text"), lmtp::BodyEncoder::Mode::canonical)->Apply(sizes);

BENCHMARK_CAPTURE(BM_Scan, scan_text, std::string("text"), lmtp::detail::scan)->Apply(sizes);
BENCHMARK_CAPTURE(BM_Scan, scan_text_scalar, std::string("text"), lmtp::detail::scan_scalar)->Apply(sizes);
BENCHMARK_CAPTURE(BM_Scan, scan_dots, std::string("dots"), lmtp::detail::scan)->Apply(sizes);
BENCHMARK_CAPTURE(BM_Scan, scan_bare_lf, std::string("bare_lf"), lmtp::detail::scan)->Apply(sizes);

BENCHMARK_MAIN();
