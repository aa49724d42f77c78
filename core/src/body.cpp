// The body encoder and decoder (lmtp/body.hpp). The encoder copies its input
// as it is, in spans, and adds a byte where the scan (body_scan.hpp) says one
// goes; the scan is where the speed is, and has a definition of its own a
// byte at a time. body_reference.cpp defines what the encoder gives.
#include "lmtp/body.hpp"

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "body_scan.hpp"

namespace lmtp {

namespace {

// Calls f on each block of the cursor's input that needs a change, in order,
// and leaves the cursor at the input's end. The scan hands on a few blocks at
// a time, so that its loop runs on without a call for each.
template <class F>
inline void for_each_changed_block(detail::ScanCursor& cur, F&& f) {
    constexpr std::size_t kBatch = 16;
    detail::BlockChanges blocks[kBatch];
    while (cur.p != cur.end) {
        const std::size_t n = detail::scan(cur, blocks, kBatch);
        for (std::size_t i = 0; i < n; ++i) f(blocks[i]);
    }
}

// Where the encoder adds one byte before another, the byte added, looked up
// by the other: a CR before an LF, a dot before a dot (when dot-stuffing),
// else the LF of the bare CR before it.
struct ByteBefore {
    char at[256];
};
constexpr ByteBefore byte_before(bool stuff) {
    ByteBefore t{};
    for (char& c : t.at) c = '\n';
    t.at[static_cast<unsigned char>('\n')] = '\r';
    if (stuff) t.at[static_cast<unsigned char>('.')] = '.';
    return t;
}
constexpr ByteBefore kBeforeStuffed = byte_before(true);
constexpr ByteBefore kBeforeCanonical = byte_before(false);

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
    const char* const before = stuff ? kBeforeStuffed.at : kBeforeCanonical.at;

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

    // The input goes out as it is (CRLF line ends included), copied in spans
    // from `span` up to the next byte the scan says a byte goes before: a CR
    // before a bare LF, the LF of a bare CR before the byte after it, a dot
    // before a dot that starts a line.
    const char* span = p;
    detail::ScanCursor cur(p, end, stuff, state_ == State::line_start);
    for_each_changed_block(cur, [&](const detail::BlockChanges& b) {
        // Copies in locals: the stores of output bytes below could otherwise
        // be taken to change them.
        const char* const at = b.at;
        const std::uint64_t cr = b.cr, lf = b.lf, dot = b.dot;
        std::uint64_t add = cr | lf | dot;
        if (detail::bit_count(add) > 8 && !(dot & lf) && end - at >= 64) {
            // Many changes (short lines), none of two bytes before one:
            // byte by byte without branches, each byte after what goes
            // before it, if anything does.
            copy(span, static_cast<std::size_t>(at - span));
            if (wend - w < 128) flush();
            char* o = w;  // in a register: `w` itself is shared with the lambdas above
            std::uint64_t more = add;
            for (int i = 0; i < 64; ++i) {
                const char c = at[i];
                *o = before[static_cast<unsigned char>(c)];  // kept only where one goes
                o += more & 1;
                more >>= 1;
                *o++ = c;
            }
            w = o;
            span = at + 64;
            return;
        }
        while (add) {
            const unsigned k = static_cast<unsigned>(__builtin_ctzll(add));
            const std::uint64_t bit = add & (0 - add);
            add ^= bit;
            copy(span, static_cast<std::size_t>(at + k - span));
            span = at + k;
            if (lf & bit) put('\n');
            if (cr & bit) put('\r');
            if (dot & bit) put('.');
        }
    });
    copy(span, static_cast<std::size_t>(end - span));
    if (cur.cr_before) {  // a CR last: its LF now, and an LF that starts the next piece is dropped
        put('\n');
        state_ = State::after_cr;
    } else {
        state_ = cur.line_start ? State::line_start : State::mid_line;
    }
    flush();
}

bool BodyEncoder::pass_through(std::string_view in) {
    if (in.empty()) return true;
    if (state_ == State::after_cr && in.front() == '\n') return false;  // that LF would be dropped
    detail::ScanCursor cur(in.data(), in.data() + in.size(), mode_ == Mode::dot_stuff, state_ != State::mid_line);
    // Unchanged: no block needs a change, and no CR is last (it gets its LF at once).
    detail::BlockChanges first;
    if (detail::scan(cur, &first, 1) != 0 || cur.cr_before) return false;
    in_ += in.size();
    state_ = cur.line_start ? State::line_start : State::mid_line;
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

// One octet more for each bare LF (its CR) and each bare CR (its LF), as the
// encoder makes them, piece after piece: a CR that ends a piece gets its LF at
// once, and an LF that starts the next piece is then the same line end.
void CanonicalLength::add(std::string_view piece) noexcept {
    if (piece.empty()) return;
    const char* p = piece.data();
    const char* const end = p + piece.size();
    std::uint64_t n = piece.size();
    if (after_cr_) {
        after_cr_ = false;
        line_start_ = true;
        if (*p == '\n') {
            ++p;
            --n;
        }
    }
    if (p == end) {
        n_ += n;
        return;
    }
    if (*p == '\n') n += 1;  // an LF first: the byte before it (if any) was no CR
    n += detail::count_bare(p, end);
    const char last = end[-1];
    if (last == '\r') {  // its LF is added at once; an LF starting the next piece is that one
        n += 1;
        after_cr_ = true;
        line_start_ = true;
    } else {
        line_start_ = last == '\n';
    }
    n_ += n;
}

std::uint64_t CanonicalLength::total() const noexcept {
    return line_start_ ? n_ : n_ + 2;  // the last line's CRLF when it has none
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
