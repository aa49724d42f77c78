// The scan of the body encoder (body_scan.hpp): a byte at a time, and 64
// bytes at a time, with SSE2 or in 64-bit words.
#include "body_scan.hpp"

#include <algorithm>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace lmtp::detail {

namespace {

// Hands a block on when it needs a change.
inline void keep(const BlockChanges& c, BlockChanges* out, std::size_t& found) noexcept {
    if (c.cr | c.lf | c.dot) out[found++] = c;
}

#if defined(__SSE2__)

// 64 bytes of input, and bit masks of where a given byte is in them: four
// 16-byte compares.
struct Block64 {
    __m128i v[4];
    explicit Block64(const char* p) noexcept {
        for (int i = 0; i < 4; ++i) v[i] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * i));
    }
    std::uint64_t mask(char c) const noexcept {
        const __m128i x = _mm_set1_epi8(c);
        // Spelled out rather than a loop, so that the four stay in registers.
        const auto bits = [&](int i) {
            return static_cast<std::uint64_t>(static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(v[i], x))));
        };
        return bits(0) | bits(1) << 16 | bits(2) << 32 | bits(3) << 48;
    }
    // Which of the bytes at the bits of `where` are dots.
    std::uint64_t dots_among(std::uint64_t where) const noexcept { return mask('.') & where; }
};

#else

// The same without SSE2: eight 64-bit words, each compared eight bytes at
// once with integer arithmetic.
struct Block64 {
    std::uint64_t w[8];
    explicit Block64(const char* p) noexcept {
        std::memcpy(w, p, sizeof w);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        for (std::uint64_t& x : w) x = __builtin_bswap64(x);  // byte i of a word in its bits 8i to 8i+7
#endif
    }
    std::uint64_t mask(char c) const noexcept {
        constexpr std::uint64_t low7 = 0x7f7f7f7f7f7f7f7fu;
        const std::uint64_t all_c = 0x0101010101010101u * static_cast<unsigned char>(c);
        // A zero byte where c is; then the top bit of each zero byte set (no
        // carry crosses from one byte to the next).
        std::uint64_t zero[8];
        std::uint64_t any = 0;
        for (int i = 0; i < 8; ++i) {
            const std::uint64_t x = w[i] ^ all_c;
            zero[i] = ~(((x & low7) + low7) | x | low7);
            any |= zero[i];
        }
        if (any == 0) return 0;  // a text without CRs, say: no bits to gather
        // Each word's eight top bits gathered into its top byte by one
        // multiply, byte i's at bit 56 + i.
        std::uint64_t m = 0;
        for (int i = 0; i < 8; ++i) m |= (((zero[i] >> 7) * 0x0102040810204080u) >> 56) << (8 * i);
        return m;
    }
    // Which of the bytes at the bits of `where` are dots: the few line starts
    // of a text looked at one by one, cheaper here than a mask of all.
    std::uint64_t dots_among(std::uint64_t where) const noexcept {
        if (bit_count(where) > 8) return mask('.') & where;
        std::uint64_t dots = 0;
        for (std::uint64_t rest = where; rest; rest &= rest - 1) {
            const unsigned i = static_cast<unsigned>(__builtin_ctzll(rest));
            if (((w[i / 8] >> (8 * (i % 8))) & 0xff) == '.') dots |= rest & (0 - rest);
        }
        return dots;
    }
};

#endif

// The changes in the first n bytes of the block at cur.p, from the masks of
// its LFs and CRs; moves what the cursor knows of the byte before past them
// (cur.p itself is the caller's to move). The same rules as scan_scalar(),
// on all the bytes at once.
inline BlockChanges changes(const Block64& b, std::uint64_t lfs, std::uint64_t crs, std::size_t n,
                            ScanCursor& cur) noexcept {
    const std::uint64_t after_cr = (crs << 1) | static_cast<std::uint64_t>(cur.cr_before);
    const std::uint64_t after_lf = (lfs << 1) | static_cast<std::uint64_t>(cur.line_start);
    BlockChanges c{cur.p, lfs & ~after_cr, after_cr & ~lfs, 0};
    if (cur.stuff) c.dot = b.dots_among(after_lf | c.lf);
    if (n < kScanBlock) c.lf &= (std::uint64_t{1} << n) - 1;  // not the byte after the input
    cur.cr_before = ((crs >> (n - 1)) & 1) != 0;
    cur.line_start = ((lfs >> (n - 1)) & 1) != 0;
    return c;
}

// The next `c` at or after `from`, or end.
inline const char* find(const char* from, const char* end, char c) noexcept {
    const void* f = std::memchr(from, c, static_cast<std::size_t>(end - from));
    return f ? static_cast<const char*>(f) : end;
}

// The block at cur.p is in the middle of a line that goes on past it: no
// change up to the line's end, which memchr finds fastest. Moves cur.p on by
// whole blocks, to the one that holds the line's end (or to the last bytes).
// The next CR and LF are remembered, so each byte is searched at most once
// for each whatever the lines.
inline void skip_to_line_end(ScanCursor& cur) noexcept {
    const char* from = cur.p + kScanBlock;
    if (cur.next_lf < from) cur.next_lf = find(from, cur.end, '\n');
    if (cur.next_cr < from) cur.next_cr = find(from, cur.end, '\r');
    const char* stop = std::min(cur.next_lf, cur.next_cr);
    cur.p += static_cast<std::size_t>(stop - cur.p) / kScanBlock * kScanBlock;
}

}  // namespace

// The definition: each byte is looked at with what is known of the one before.
std::size_t scan_scalar(ScanCursor& cur, BlockChanges* out, std::size_t max) noexcept {
    std::size_t found = 0;
    while (found < max && cur.p != cur.end) {
        const std::size_t n = std::min(kScanBlock, static_cast<std::size_t>(cur.end - cur.p));
        BlockChanges c{cur.p, 0, 0, 0};
        for (std::size_t i = 0; i < n; ++i) {
            const char ch = cur.p[i];
            const std::uint64_t bit = std::uint64_t{1} << i;
            const bool after_cr = cur.cr_before;
            cur.cr_before = ch == '\r';
            if (ch == '\n') {
                if (!after_cr) c.cr |= bit;  // a bare LF
                cur.line_start = true;
                continue;
            }
            if (after_cr) {  // the CR before was bare: this byte starts a line
                c.lf |= bit;
                cur.line_start = true;
            }
            if (cur.line_start && cur.stuff && ch == '.') c.dot |= bit;
            cur.line_start = false;
        }
        cur.p += n;
        keep(c, out, found);
    }
    return found;
}

std::size_t scan(ScanCursor& cursor, BlockChanges* out, std::size_t max) noexcept {
    ScanCursor cur = cursor;  // a local copy the compiler keeps in registers
    std::size_t found = 0;
    while (found < max && static_cast<std::size_t>(cur.end - cur.p) >= kScanBlock) {
        const Block64 b(cur.p);
        const std::uint64_t lfs = b.mask('\n');
        const std::uint64_t crs = b.mask('\r');
        if ((lfs | crs) == 0 && !cur.line_start && !cur.cr_before) {
            skip_to_line_end(cur);
            continue;
        }
        keep(changes(b, lfs, crs, kScanBlock, cur), out, found);
        cur.p += kScanBlock;
    }
    if (found < max && cur.p != cur.end) {
        // Fewer than 64 bytes left: scanned from a copy padded with zero
        // bytes, which are neither CR, LF nor dot.
        alignas(16) char pad[kScanBlock] = {};
        const std::size_t n = static_cast<std::size_t>(cur.end - cur.p);
        std::memcpy(pad, cur.p, n);
        const Block64 b(pad);
        keep(changes(b, b.mask('\n'), b.mask('\r'), n, cur), out, found);
        cur.p = cur.end;
    }
    cursor = cur;
    return found;
}

std::uint64_t count_bare_scalar(const char* begin, const char* end) noexcept {
    std::uint64_t n = 0;
    for (const char* p = begin; p + 1 < end; ++p) {
        if (p[0] == '\r' && p[1] != '\n') ++n;  // a bare CR at p
        if (p[0] != '\r' && p[1] == '\n') ++n;  // a bare LF at p + 1
    }
    return n;
}

std::uint64_t count_bare(const char* begin, const char* end) noexcept {
    if (end - begin < 2) return 0;
    // The pairs (p[i], p[i + 1]) for i in [0, pairs): each counts when exactly one of
    // "p[i] is CR" and "p[i + 1] is LF" holds.
    const std::size_t pairs = static_cast<std::size_t>(end - begin) - 1;
    std::size_t i = 0;
    std::uint64_t n = 0;
#if defined(__SSE2__)
    const __m128i cr = _mm_set1_epi8('\r');
    const __m128i lf = _mm_set1_epi8('\n');
    // One pair's answer: 0xff where it counts.
    const auto bare = [&](std::size_t at) {
        const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(begin + at));
        const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(begin + at + 1));
        return _mm_xor_si128(_mm_cmpeq_epi8(a, cr), _mm_cmpeq_epi8(b, lf));
    };
    while (pairs - i >= 16) {
        // Two sets of byte counters (0 - matches), 255 loads between them at most (so
        // that no counter passes 255), then summed. 64 pairs a round.
        const std::size_t loads = std::min<std::size_t>((pairs - i) / 16, 255);
        __m128i acc = _mm_setzero_si128();
        __m128i acc2 = _mm_setzero_si128();
        std::size_t r = 0;
        for (; r + 4 <= loads; r += 4, i += 64) {
            acc = _mm_sub_epi8(acc, bare(i));
            acc2 = _mm_sub_epi8(acc2, bare(i + 16));
            acc = _mm_sub_epi8(acc, bare(i + 32));
            acc2 = _mm_sub_epi8(acc2, bare(i + 48));
        }
        for (; r < loads; ++r, i += 16) acc = _mm_sub_epi8(acc, bare(i));
        const __m128i zero = _mm_setzero_si128();
        const __m128i sums = _mm_add_epi64(_mm_sad_epu8(acc, zero), _mm_sad_epu8(acc2, zero));
        n += static_cast<std::uint64_t>(_mm_cvtsi128_si32(sums)) +
             static_cast<std::uint64_t>(_mm_cvtsi128_si32(_mm_unpackhi_epi64(sums, sums)));
    }
    if (i < pairs && pairs >= 16) {
        // The last pairs: the 16 that end the input, less those already counted.
        const unsigned last = static_cast<unsigned>(_mm_movemask_epi8(bare(pairs - 16)));
        n += bit_count(last >> (16 - (pairs - i)));
        i = pairs;
    }
#endif
    return n + count_bare_scalar(begin + i, end);
}

}  // namespace lmtp::detail
