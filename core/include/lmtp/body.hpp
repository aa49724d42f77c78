// Message bodies on the wire: streaming encoder (client side) and decoder
// (server side, used by tests and tools). Both keep their state between
// chunks, so a message of any size passes through in pieces, and a chunk may
// end anywhere: in a CR, between CR and LF, right after a line end, in a dot.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace lmtp {

// Turns message bytes into what goes on the wire.
//
// Line ends: CRLF stays, a bare LF and a bare CR each become CRLF, so the wire
// never carries a lone CR or LF (and no "\n.\r\n" style end-of-data lookalike).
// Mode::dot_stuff (DATA): a "." at the start of a line is doubled, and
// finish() appends the terminator: ".\r\n" when the body ended with a line
// end (or is empty), "\r\n.\r\n" when it did not.
// Mode::canonical (BDAT): line ends only; finish() appends "\r\n" when the
// body did not end with one, so both modes deliver the same message.
class BodyEncoder {
public:
    enum class Mode { dot_stuff, canonical };

    explicit BodyEncoder(Mode mode = Mode::dot_stuff) : mode_(mode) {}

    // Appends the encoding of `in` to `out`. Output is at most about twice
    // the input (every byte a lone LF), plus one byte carried in.
    void encode(std::string_view in, std::string& out);
    // True when encode(in) would append `in` itself, unchanged: then the
    // state moves on as encode(in) would move it, and the caller may send
    // `in` as it is. False, and nothing changes, otherwise. A check without
    // a copy, for a caller that can hand its own buffer on.
    bool pass_through(std::string_view in);
    // Appends what ends the body (see above) and resets for the next message.
    void finish(std::string& out);
    void reset();

    Mode mode() const { return mode_; }
    void set_mode(Mode m) { mode_ = m; }
    // True when the next byte starts a line (nothing encoded yet, or a line end last).
    bool at_line_start() const { return state_ != State::mid_line; }
    std::uint64_t bytes_in() const { return in_; }

private:
    enum class State : unsigned char {
        line_start,  // next byte starts a line
        after_cr,    // a CR was emitted as CRLF; an LF right after it belongs to it
        mid_line,
    };
    Mode mode_;
    State state_ = State::line_start;
    std::uint64_t in_ = 0;
};

// The size of `body` as it goes on the wire, line ends made CRLF and a final
// CRLF added when missing, without dot-stuffing or terminator: the message
// size RFC 1870 asks SIZE to declare.
std::uint64_t canonical_length(std::string_view body) noexcept;

// The same for a message that comes in pieces, split anywhere (a CRLF may
// straddle two of them): add() each piece in order, then total().
class CanonicalLength {
public:
    void add(std::string_view piece) noexcept;
    // The size so far, with the final CRLF when the pieces do not end with a line end.
    std::uint64_t total() const noexcept;

private:
    std::uint64_t n_ = 0;      // octets so far with CRLF line ends, no final CRLF added
    bool line_start_ = true;   // the next octet starts a line
    bool after_cr_ = false;    // the last octet was a CR (its LF counted): an LF next is the same line end
};

// The encoder's reference: what encode() over the whole message and then
// finish() give, computed plainly a byte at a time (body_reference.cpp). Not
// for the delivery path; the tests and the fuzzer hold the encoder to it.
std::string encode_reference(std::string_view message, BodyEncoder::Mode mode);

// The reverse of dot-stuffing, for a server reading DATA: removes the doubled
// dots and stops at the terminating ".\r\n". Expects CRLF line ends; a bare LF
// or CR is passed through as data (it is the encoder's job not to send them).
class BodyDecoder {
public:
    // Appends decoded bytes to `out`; returns how many input bytes were used.
    // After the terminator no more input is taken and done() is true.
    std::size_t decode(std::string_view in, std::string& out);
    bool done() const { return state_ == State::done; }
    void reset() { state_ = State::line_start; }

private:
    enum class State : unsigned char {
        line_start,  // at the start of a line
        dot,         // a line began with "."
        dot_cr,      // ".\r" at the start of a line
        mid_line,
        cr,  // a CR inside a line
        done,
    };
    State state_ = State::line_start;
};

}  // namespace lmtp
