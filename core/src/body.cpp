#include "lmtp/body.hpp"

#include <cstring>

namespace lmtp {

void BodyEncoder::reset() {
    state_ = State::line_start;
    in_ = 0;
}

void BodyEncoder::encode(std::string_view in, std::string& out) {
    in_ += in.size();
    const char* p = in.data();
    const char* const end = p + in.size();
    // The next LF at or after p (or end); kept between lines so that text with
    // many CRs and no LF is still scanned once.
    const char* lf = p;
    while (p < end) {
        if (state_ == State::after_cr) {
            state_ = State::line_start;
            if (*p == '\n') {  // the LF of a CRLF whose CR ended the previous line
                ++p;
                continue;
            }
        }
        if (state_ == State::line_start) {
            if (*p == '.' && mode_ == Mode::dot_stuff) out += '.';
            state_ = State::mid_line;
        }
        if (lf < p) lf = p;
        if (lf < end && *lf != '\n') {
            const void* f = std::memchr(p, '\n', static_cast<std::size_t>(end - p));
            lf = f ? static_cast<const char*>(f) : end;
        }
        const void* cr = std::memchr(p, '\r', static_cast<std::size_t>(lf - p));
        const char* eol = cr ? static_cast<const char*>(cr) : lf;
        out.append(p, static_cast<std::size_t>(eol - p));
        if (eol == end) return;
        out += "\r\n";
        state_ = *eol == '\r' ? State::after_cr : State::line_start;
        p = eol + 1;
    }
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
    std::uint64_t n = body.size();
    for (std::size_t i = 0; i < body.size(); ++i) {
        if (body[i] == '\n' && (i == 0 || body[i - 1] != '\r')) ++n;                // LF -> CRLF
        if (body[i] == '\r' && (i + 1 == body.size() || body[i + 1] != '\n')) ++n;  // CR -> CRLF
    }
    if (!body.empty() && body.back() != '\n' && body.back() != '\r') n += 2;  // the final CRLF
    return n;
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
