#include "lmtp/body.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace lmtp {

namespace {

#if defined(__SSE2__)
// 64 bytes of input, and bit masks of where a given byte is in them.
struct Block64 {
    __m128i v[4];
    explicit Block64(const char* p) {
        for (int i = 0; i < 4; ++i) v[i] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * i));
    }
    std::uint64_t mask(__m128i c) const {
        std::uint64_t m = 0;
        for (int i = 0; i < 4; ++i)
            m |= static_cast<std::uint64_t>(static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(v[i], c))))
                 << (16 * i);
        return m;
    }
};
#endif

// Set bits (without a libgcc call when the target has no POPCNT).
inline unsigned bit_count(std::uint64_t x) noexcept {
    x = x - ((x >> 1) & 0x5555555555555555u);
    x = (x & 0x3333333333333333u) + ((x >> 2) & 0x3333333333333333u);
    x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0fu;
    return static_cast<unsigned>((x * 0x0101010101010101u) >> 56);
}

// The first CR or LF in [p, end), or end.
inline const char* find_line_end(const char* p, const char* end) noexcept {
#if defined(__SSE2__)
    const __m128i lf = _mm_set1_epi8('\n');
    const __m128i cr = _mm_set1_epi8('\r');
    auto hits = [&](const char* at) {
        __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(at));
        return _mm_or_si128(_mm_cmpeq_epi8(v, lf), _mm_cmpeq_epi8(v, cr));
    };
    // Short lines end in the first 16 bytes; long ones are scanned 64 bytes
    // a step, then 16 at a time over the 64 that hold the line end.
    if (end - p >= 16) {
        unsigned m = static_cast<unsigned>(_mm_movemask_epi8(hits(p)));
        if (m) return p + __builtin_ctz(m);
        p += 16;
    }
    while (end - p >= 64) {
        __m128i any = _mm_or_si128(_mm_or_si128(hits(p), hits(p + 16)), _mm_or_si128(hits(p + 32), hits(p + 48)));
        if (_mm_movemask_epi8(any)) break;
        p += 64;
    }
    while (end - p >= 16) {
        unsigned m = static_cast<unsigned>(_mm_movemask_epi8(hits(p)));
        if (m) return p + __builtin_ctz(m);
        p += 16;
    }
#endif
    while (p < end && *p != '\n' && *p != '\r') ++p;
    return p;
}

}  // namespace

void BodyEncoder::reset() {
    state_ = State::line_start;
    in_ = 0;
}

void BodyEncoder::encode(std::string_view in, std::string& out) {
    in_ += in.size();
    const char* p = in.data();
    const char* const end = p + in.size();
    if (p == end) return;
    if (state_ == State::after_cr) {
        state_ = State::line_start;
        if (*p == '\n') ++p;  // the LF of a CRLF whose CR ended the previous line
    }
    const bool stuff = mode_ == Mode::dot_stuff;

    // Output is gathered in a small local buffer with direct stores and
    // handed to `out` in large appends, so that short lines cost a few
    // stores each rather than a string append each; long spans go to `out`
    // directly. Each store checks the room left first.
    constexpr std::size_t kStage = 8192;
    constexpr std::size_t kDirect = 512;
    char stage[kStage];
    char* w = stage;
    char* const wend = stage + kStage;
    auto flush = [&] {
        if (w != stage) out.append(stage, static_cast<std::size_t>(w - stage));
        w = stage;
    };
    auto copy = [&](const char* from, std::size_t n) {
        if (n == 0) return;
        if (n <= 16 && end - from >= 16) {
            if (wend - w < 16) flush();
            std::memcpy(w, from, 16);  // a constant size: one load and one store
            w += n;
        } else if (n >= kDirect) {
            flush();
            out.append(from, n);
        } else {
            if (static_cast<std::size_t>(wend - w) < n) flush();
            std::memcpy(w, from, n);
            w += n;
        }
    };

    auto put = [&](char c) {
        if (w == wend) flush();
        *w++ = c;
    };
    auto put_crlf = [&] {
        if (wend - w < 2) flush();
        w[0] = '\r';
        w[1] = '\n';
        w += 2;
    };

    // After a bare line end, more line ends (blank lines, runs of bare LFs
    // or CRs) are written by a tight loop of their own, a few stores each.
    auto more_line_ends = [&] {
        while (end - p >= 2) {
            if (wend - w < 2) flush();
            if (*p == '\n') {
                ++p;
            } else if (*p == '\r') {
                // A branch, not a select: p must not wait for the load of p[1].
                if (p[1] == '\n') ++p;
                ++p;
            } else {
                break;
            }
            w[0] = '\r';
            w[1] = '\n';
            w += 2;
        }
    };

    // Bytes that go out as they are (CRLF line ends included) are copied in
    // spans, from `span` up to the next byte that needs a change: a bare LF or
    // CR, or a dot that starts a line. One pass: each byte is looked at once.
    const char* span = p;
    bool line_start = state_ == State::line_start;  // p is at the start of a line

    std::ptrdiff_t lf_at = -1;  // offsets in `in` of the next LF and CR (or its size) once searched
    std::ptrdiff_t cr_at = -1;
    auto find = [&](std::ptrdiff_t from, char c) {
        const void* f = std::memchr(in.data() + from, c, in.size() - static_cast<std::size_t>(from));
        return f ? static_cast<const char*>(f) - in.data() : static_cast<std::ptrdiff_t>(in.size());
    };

#if defined(__SSE2__)
    // 64 bytes at a time, while a byte after them is there to look at: bit
    // masks of the CRs, LFs and dots say at once where a byte must be added
    // (a CR before a bare LF, an LF after a bare CR, a dot before a dot that
    // starts a line). Lines cost nothing of their own; each change a few
    // stores, with no chain of loads from one line to the next.
    {
        const __m128i lf = _mm_set1_epi8('\n');
        const __m128i cr = _mm_set1_epi8('\r');
        const __m128i dot = _mm_set1_epi8('.');
        std::uint64_t cr_before = 0;  // the byte before p is a CR
        auto no_line_end = [&](const char* at) {  // none in the 64 bytes at `at`
            __m128i any = _mm_setzero_si128();
            for (int i = 0; i < 4; ++i) {
                __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(at + 16 * i));
                any = _mm_or_si128(any, _mm_or_si128(_mm_cmpeq_epi8(x, lf), _mm_cmpeq_epi8(x, cr)));
            }
            return _mm_movemask_epi8(any) == 0;
        };
        while (end - p > 64) {
            if (!line_start && !cr_before && no_line_end(p)) {
                // A long line: nothing to change up to its end, which memchr
                // finds fastest. The next CR and LF are remembered, so each
                // byte is searched at most once for each whatever the lines.
                const std::ptrdiff_t at = p - in.data();
                if (lf_at < at) lf_at = find(at, '\n');
                if (cr_at < at) cr_at = find(at, '\r');
                const std::ptrdiff_t stop = std::min(lf_at, cr_at);
                p += (stop - at) / 64 * 64;  // at least 64: none in the first 64
                continue;
            }
            const Block64 block(p);
            const std::uint64_t lfs = block.mask(lf);
            const std::uint64_t crs = block.mask(cr);
            const std::uint64_t lf_next = (lfs >> 1) | (static_cast<std::uint64_t>(p[64] == '\n') << 63);
            const std::uint64_t bare_cr = crs & ~lf_next;
            const std::uint64_t bare_lf = lfs & ~((crs << 1) | cr_before);
            const std::uint64_t ends = lfs | bare_cr;  // the last byte of each line end
            const std::uint64_t starts = (ends << 1) | static_cast<std::uint64_t>(line_start);
            const std::uint64_t dots = stuff ? block.mask(dot) & starts : 0;
            const std::uint64_t lf_after_cr = bare_cr << 1;  // the LF goes before the next byte
            std::uint64_t add = bare_lf | dots | lf_after_cr;
            if (__builtin_expect((add | bare_cr) == 0, 1)) {
                // CRLF lines and no dot to double (most of a text): the span goes on.
                cr_before = crs >> 63;
                line_start = (ends >> 63) != 0;
                p += 64;
                continue;
            }
            if (bit_count(add) > 8 && !(dots & lf_after_cr)) {
                // Many changes (short lines): byte by byte without branches,
                // each byte after what goes before it, if anything does.
                copy(span, static_cast<std::size_t>(p - span));
                if (wend - w < 128) flush();
                for (int i = 0; i < 64; ++i) {
                    const char c = p[i];
                    *w = c == '\n' ? '\r' : (stuff && c == '.') ? '.' : '\n';  // kept only where one goes
                    w += (add >> i) & 1;
                    *w++ = c;
                }
                span = p + 64;
                add = 0;
            }
            while (add) {
                const unsigned k = static_cast<unsigned>(__builtin_ctzll(add));
                const std::uint64_t bit = add & (0 - add);
                add ^= bit;
                copy(span, static_cast<std::size_t>(p + k - span));
                span = p + k;
                if (lf_after_cr & bit) put('\n');
                if (bare_lf & bit) put('\r');
                if (dots & bit) put('.');
            }
            if (bare_cr >> 63) {  // a bare CR last: its LF before the next 64
                copy(span, static_cast<std::size_t>(p + 64 - span));
                span = p + 64;
                put('\n');
            }
            cr_before = crs >> 63;
            line_start = (ends >> 63) != 0;
            p += 64;
        }
        if (cr_before && p < end && *p == '\n') {  // the LF of a CRLF cut by the last 64: it stays
            ++p;
            line_start = true;
        }
    }
#endif

    while (p < end) {
        if (line_start) {
            line_start = false;
            if (stuff && *p == '.') {
                copy(span, static_cast<std::size_t>(p - span));
                put('.');
                span = p;  // the dot itself goes with what follows
            }
        }
        const char* eol = p;
        if (*p != '\n' && *p != '\r') {
            const std::ptrdiff_t at = p - in.data();
            eol = lf_at >= at && cr_at >= at ? in.data() + std::min(lf_at, cr_at) : find_line_end(p, end);
        }
        if (eol == end) {
            p = end;
            break;
        }
        line_start = true;
        if (*eol == '\n') {  // a bare LF: a CR before it
            copy(span, static_cast<std::size_t>(eol - span));
            put_crlf();
            p = eol + 1;
            more_line_ends();
            span = p;
        } else if (eol + 1 == end) {  // a CR at the end: its LF may come with the next piece
            copy(span, static_cast<std::size_t>(end - span));
            put('\n');
            state_ = State::after_cr;
            flush();
            return;
        } else if (eol[1] == '\n') {  // CRLF: stays as it is, in the span
            p = eol + 2;
        } else {  // a bare CR: its LF after it
            copy(span, static_cast<std::size_t>(eol + 1 - span));
            put('\n');
            p = eol + 1;
            more_line_ends();
            span = p;
        }
    }
    copy(span, static_cast<std::size_t>(end - span));
    state_ = line_start ? State::line_start : State::mid_line;
    flush();
}

bool BodyEncoder::pass_through(std::string_view in) {
    const char* p = in.data();
    const char* const end = p + in.size();
    if (p == end) return true;
    if (state_ == State::after_cr && *p == '\n') return false;  // that LF would be dropped
    const bool stuff = mode_ == Mode::dot_stuff;
    bool line_start = state_ != State::mid_line;
    bool cr_before = false;  // the byte before p is a CR
#if defined(__SSE2__)
    // 64 bytes at a time: each LF right after a CR and each CR right before
    // an LF (CRLF, nothing else), no dot at a line start when stuffing.
    const __m128i lf = _mm_set1_epi8('\n');
    const __m128i cr = _mm_set1_epi8('\r');
    const __m128i dot = _mm_set1_epi8('.');
    while (end - p >= 64) {
        const Block64 block(p);
        const std::uint64_t lfs = block.mask(lf);
        const std::uint64_t crs = block.mask(cr);
        if (((crs << 1) | static_cast<std::uint64_t>(cr_before)) != lfs) return false;
        if (stuff && (block.mask(dot) & ((lfs << 1) | static_cast<std::uint64_t>(line_start)))) return false;
        cr_before = (crs >> 63) != 0;
        line_start = (lfs >> 63) != 0;
        p += 64;
    }
#endif
    for (; p < end; ++p) {
        const char c = *p;
        if ((c == '\n') != cr_before) return false;
        if (line_start && stuff && c == '.') return false;
        cr_before = c == '\r';
        line_start = c == '\n';
    }
    if (cr_before) return false;  // a CR last gets its LF at once
    in_ += in.size();
    state_ = line_start ? State::line_start : State::mid_line;
    return true;
}

void BodyEncoder::finish(std::string& out) {
    bool mid = state_ == State::mid_line;
    if (mode_ == Mode::dot_stuff)
        out += mid ? "\r\n.\r\n" : ".\r\n";
    else if (mid)
        out += "\r\n";
    reset();
}

std::uint64_t canonical_length(std::string_view body) noexcept {
    CanonicalLength c;
    c.add(body);
    return c.total();
}

void CanonicalLength::add(std::string_view piece) noexcept {
    if (piece.empty()) return;
    // Each LF without a CR before it and each CR without an LF after it grow
    // by one octet: that is, the LFs and CRs counted, less twice the CRLFs.
    // A CR that ended the piece before was counted as growing; an LF first
    // here makes it a CRLF, and the pair is taken off then.
    std::uint64_t lfs_n = 0, crs_n = 0, crlfs = 0;
    const char* p = piece.data();
    const char* const end = p + piece.size();
    bool cr_before = last_ == '\r';  // the byte before p is a CR
#if defined(__SSE2__)
    const __m128i lf = _mm_set1_epi8('\n');
    const __m128i cr = _mm_set1_epi8('\r');
    for (; end - p >= 64; p += 64) {
        const Block64 block(p);
        const std::uint64_t lfs = block.mask(lf);
        const std::uint64_t crs = block.mask(cr);
        lfs_n += bit_count(lfs);
        crs_n += bit_count(crs);
        crlfs += bit_count(lfs & ((crs << 1) | static_cast<std::uint64_t>(cr_before)));
        cr_before = (crs >> 63) != 0;
    }
#endif
    for (; p < end; ++p) {
        lfs_n += *p == '\n';
        crs_n += *p == '\r';
        crlfs += *p == '\n' && cr_before;
        cr_before = *p == '\r';
    }
    n_ += piece.size() + lfs_n + crs_n;
    n_ -= 2 * crlfs;
    last_ = piece.back();
    any_ = true;
}

std::uint64_t CanonicalLength::total() const noexcept {
    return any_ && last_ != '\n' && last_ != '\r' ? n_ + 2 : n_;  // the final CRLF
}

std::size_t BodyDecoder::decode(std::string_view in, std::string& out) {
    std::size_t i = 0;
    const std::size_t n = in.size();
    while (i < n && state_ != State::done) {
        char c = in[i];
        switch (state_) {
            case State::line_start:
                if (c == '.') {
                    state_ = State::dot;
                    ++i;
                } else {
                    state_ = State::mid_line;
                }
                break;
            case State::dot:  // the first dot of a line is never data
                if (c == '\r') {
                    state_ = State::dot_cr;
                    ++i;
                } else {
                    state_ = State::mid_line;
                }
                break;
            case State::dot_cr:
                if (c == '\n') {
                    state_ = State::done;
                    ++i;
                } else {
                    out += '\r';
                    state_ = State::mid_line;
                }
                break;
            case State::mid_line: {
                const void* cr = std::memchr(in.data() + i, '\r', n - i);
                std::size_t stop = cr ? static_cast<std::size_t>(static_cast<const char*>(cr) - in.data()) : n;
                out.append(in.data() + i, stop - i);
                i = stop;
                if (cr) {
                    out += '\r';
                    state_ = State::cr;
                    ++i;
                }
                break;
            }
            case State::cr:
                if (c == '\n') {
                    out += '\n';
                    state_ = State::line_start;
                    ++i;
                } else {
                    state_ = State::mid_line;
                }
                break;
            case State::done: break;
        }
    }
    return i;
}

}  // namespace lmtp
