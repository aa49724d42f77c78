// Body encoder: whatever the input and however it is cut, the output is the
// reference's (lmtp::encode_reference, the plain byte-at-a-time definition),
// the wire form has only CRLF line ends, every line starting with "." is
// stuffed, the decoder gives back the input with CRLF line ends, and the
// output is the same as in one piece. And the encoder's scan, 64 bytes at
// once, gives what its byte-at-a-time definition gives (body_scan.hpp), and
// so does its count of bare line ends (SIZE's canonical length, in pieces too).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "body_scan.hpp"
#include "fuzz_util.hpp"
#include "lmtp/body.hpp"

namespace {

using fuzz::canonical;
using fuzz::require;

std::string encode(const std::string& in, std::size_t step, lmtp::BodyEncoder::Mode mode) {
    lmtp::BodyEncoder enc(mode);
    std::string out;
    for (std::size_t pos = 0; pos < in.size(); pos += step) enc.encode(std::string_view(in).substr(pos, step), out);
    enc.finish(out);
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    std::size_t step = 1 + data[0] % 17;
    std::string in(reinterpret_cast<const char*>(data + 1), size - 1);
    std::string wire = encode(in, in.size() + 1, lmtp::BodyEncoder::Mode::dot_stuff);
    if (encode(in, step, lmtp::BodyEncoder::Mode::dot_stuff) != wire) std::abort();
    if (wire != lmtp::encode_reference(in, lmtp::BodyEncoder::Mode::dot_stuff)) std::abort();
    // Only CRLF line ends on the wire.
    for (std::size_t i = 0; i < wire.size(); ++i) {
        if (wire[i] == '\r' && (i + 1 >= wire.size() || wire[i + 1] != '\n')) std::abort();
        if (wire[i] == '\n' && (i == 0 || wire[i - 1] != '\r')) std::abort();
    }
    // The terminator comes once, at the end.
    if (wire.size() < 3 || wire.compare(wire.size() - 3, 3, ".\r\n") != 0) std::abort();
    std::size_t first_end = wire.find("\r\n.\r\n");
    if (wire.compare(0, 3, ".\r\n") == 0) first_end = 0; else if (first_end != std::string::npos) first_end += 2;
    if (first_end != wire.size() - 3) std::abort();
    // Decoding gives the input back with canonical line ends.
    lmtp::BodyDecoder dec;
    std::string back;
    std::size_t used = 0;
    for (std::size_t pos = 0; pos < wire.size() && !dec.done(); pos += step)
        used += dec.decode(std::string_view(wire).substr(pos, step), back);
    if (!dec.done() || used != wire.size()) std::abort();
    if (back != canonical(in)) std::abort();
    // Canonical mode: the same message, without stuffing or terminator; and its size.
    if (encode(in, step, lmtp::BodyEncoder::Mode::canonical) != canonical(in)) std::abort();
    if (lmtp::canonical_length(in) != canonical(in).size()) std::abort();
    lmtp::CanonicalLength pieces;
    for (std::size_t pos = 0; pos < in.size(); pos += step) pieces.add(std::string_view(in).substr(pos, step));
    if (pieces.total() != canonical(in).size()) std::abort();
    // The scan, in both modes, at a line start and in a line, over the input
    // and over what follows one of its first 16 bytes, which the first byte
    // chooses (every alignment of the scan's loads over a run).
    using lmtp::detail::scan_trace;
    const std::size_t max = 1 + data[0] % 3;  // blocks a call
    for (std::size_t from : {std::size_t{0}, std::size_t{1} + data[0] / 17 % 15}) {
        if (from > in.size()) break;
        const char* begin = in.data() + from;
        const char* end = in.data() + in.size();
        require(lmtp::detail::count_bare(begin, end) == lmtp::detail::count_bare_scalar(begin, end),
                "count_bare() and count_bare_scalar() differ");
        for (bool stuff : {true, false})
            for (bool line_start : {true, false})
                require(scan_trace(lmtp::detail::scan, begin, end, stuff, line_start, max) ==
                            scan_trace(lmtp::detail::scan_scalar, begin, end, stuff, line_start, max),
                        "scan() and scan_scalar() differ");
    }
    return 0;
}
