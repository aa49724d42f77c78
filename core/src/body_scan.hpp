// The scan of the body encoder (body.cpp): where in its input the encoder
// must add a byte. The input is read in blocks of 64 bytes, and for each
// block that needs a change the scan gives bit masks of where the bytes go;
// the encoder copies everything else as it is. Internal to the core: this
// header is not installed.
//
// Two implementations give the same answers: scan() looks at 64 bytes at
// once (with SSE2 where the compiler targets it, else eight bytes at a time
// in 64-bit words), scan_scalar() at one byte at a time. The tests and the
// fuzzer hold the first to the second.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace lmtp::detail {

constexpr std::size_t kScanBlock = 64;

// One block of input that needs a change, and the changes. Bit i of a mask
// stands for byte i of the block; each byte added goes before that byte.
// A block is 64 bytes, except the last of the input, which may be shorter.
struct BlockChanges {
    const char* at;       // the block's first byte
    std::uint64_t cr;     // a bare LF: a CR before it
    std::uint64_t lf;     // the byte after a bare CR: the CR's LF before it
    std::uint64_t dot;    // a dot that starts a line, when dot-stuffing: another dot before it
};

// Where a scan stands in its input, and what it knows of the byte before.
// A CR's LF is added before the byte after the CR, so a CR that ends a
// block is settled by the next one, or by the caller when it ends the input.
struct ScanCursor {
    ScanCursor(const char* begin, const char* end_, bool dot_stuff, bool at_line_start) noexcept
        : p(begin), end(end_), stuff(dot_stuff), line_start(at_line_start),
          next_lf(begin), next_cr(begin) {}

    const char* p;           // the next byte to scan
    const char* end;         // the end of the input
    bool stuff;              // dots that start a line are doubled (DATA)
    bool line_start;         // the byte at p starts a line: the byte before is an LF, or there is none
    bool cr_before = false;  // the byte before p is a CR, and whether an LF follows it is not known yet
    // Where scan() last found the next LF and CR (or end), so that a long
    // line is searched once; before p means not searched. scan_scalar()
    // does not use them.
    const char* next_lf;
    const char* next_cr;
};

// Scans from cur.p on and writes the blocks that need a change to `out`, at
// most `max` (at least 1) of them, in order; returns how many. Stops when
// `max` are written or the input is scanned to its end, and moves `cur` past
// the blocks it scanned: a return of less than `max` means cur.p == cur.end.
std::size_t scan(ScanCursor& cur, BlockChanges* out, std::size_t max) noexcept;
std::size_t scan_scalar(ScanCursor& cur, BlockChanges* out, std::size_t max) noexcept;

// The bytes a canonical form adds inside [begin, end): one for each LF that
// is not the second byte of a CRLF, and one for each CR followed by a byte
// other than LF. The byte before `begin` and the one after `end` are not
// known: an LF at `begin` and a CR that ends the input are the caller's to
// settle. count_bare() goes 16 bytes at a time where SSE2 is there (a pair
// (CR at i, LF at i + 1) disagreeing is exactly one such byte);
// count_bare_scalar() is its definition, a byte at a time.
std::uint64_t count_bare(const char* begin, const char* end) noexcept;
std::uint64_t count_bare_scalar(const char* begin, const char* end) noexcept;

// Set bits (without a libgcc call when the target has no POPCNT).
inline unsigned bit_count(std::uint64_t x) noexcept {
    x = x - ((x >> 1) & 0x5555555555555555u);
    x = (x & 0x3333333333333333u) + ((x >> 2) & 0x3333333333333333u);
    x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0fu;
    return static_cast<unsigned>((x * 0x0101010101010101u) >> 56);
}

using ScanFunction = std::size_t (*)(ScanCursor&, BlockChanges*, std::size_t) noexcept;

// Everything a scan gives over [begin, end), `max` blocks a call, as
// numbers: for each call, how many blocks, each block (its offset from
// begin and its masks), and where the cursor is after it. Two scans agree
// when their traces are equal: the tests and the fuzzer hold scan() to
// scan_scalar() with it.
inline std::vector<std::uint64_t> scan_trace(ScanFunction scan_with, const char* begin, const char* end,
                                             bool dot_stuff, bool at_line_start, std::size_t max) {
    std::vector<std::uint64_t> trace;
    std::vector<BlockChanges> blocks(max);
    ScanCursor cur(begin, end, dot_stuff, at_line_start);
    while (cur.p != end) {
        const std::size_t n = scan_with(cur, blocks.data(), max);
        trace.push_back(n);
        for (std::size_t i = 0; i < n; ++i) {
            const BlockChanges& b = blocks[i];
            trace.insert(trace.end(), {static_cast<std::uint64_t>(b.at - begin), b.cr, b.lf, b.dot});
        }
        trace.insert(trace.end(), {static_cast<std::uint64_t>(cur.p - begin), cur.line_start, cur.cr_before});
        if (n < max && cur.p != end) break;  // against the contract: no endless loop over it
    }
    return trace;
}

}  // namespace lmtp::detail
