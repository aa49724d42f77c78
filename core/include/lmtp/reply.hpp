// Server replies and the reply parser.
//
// The parser works on bytes only (no I/O): feed it whatever arrived, in pieces
// split anywhere, and it hands back one complete reply at a time. It holds at
// most one line and one reply, both bounded by ReplyLimits.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace lmtp {

// An enhanced status code (RFC 3463, announced by ENHANCEDSTATUSCODES, RFC 2034):
// class.subject.detail, e.g. 5.1.1. All zero when the reply carries none.
struct EnhancedCode {
    int klass = 0;    // 2, 4 or 5; always equal to the first digit of the reply code
    int subject = 0;  // 0-999
    int detail = 0;   // 0-999

    bool present() const { return klass != 0; }
    std::string str() const;  // "5.1.1", or "" when absent
    friend bool operator==(const EnhancedCode& a, const EnhancedCode& b) {
        return a.klass == b.klass && a.subject == b.subject && a.detail == b.detail;
    }
};

// One reply: a code and one or more lines of text.
struct Reply {
    int code = 0;                    // 200-559; 0 means "no reply"
    EnhancedCode enhanced;           // from the first line, when it carries one
    std::vector<std::string> lines;  // each line's text after "NNN-" / "NNN ", as sent
    // Each line's own code, only when they differ (a conforming server never
    // does that; some answer every recipient after the message on one line of
    // a single reply: see Session). Empty when every line carries `code`.
    std::vector<int> line_codes;

    bool empty() const { return code == 0; }
    // Whether the lines carry different codes.
    bool mixed() const { return !line_codes.empty(); }
    // The code on line i.
    int line_code(std::size_t i) const { return i < line_codes.size() ? line_codes[i] : code; }
    // Line i as a reply of its own (its code, its enhanced code, its text).
    Reply line_reply(std::size_t i) const;
    bool positive() const { return code >= 200 && code < 400; }      // 2xx or 3xx
    bool completion() const { return code >= 200 && code < 300; }    // 2xx
    bool intermediate() const { return code >= 300 && code < 400; }  // 3xx
    bool transient() const { return code >= 400 && code < 500; }     // 4xx
    bool permanent() const { return code >= 500 && code < 600; }     // 5xx
    // The server is closing the connection (see closes_connection).
    bool closing() const;

    // The lines joined with '\n', each without its leading enhanced code.
    std::string text() const;
    // The lines joined with '\n', exactly as sent (enhanced codes kept).
    std::string message() const;
    // "550 5.1.1 No such user" on one line (multi-line text joined by "; ").
    std::string summary() const;
};

// 421: the server is closing the connection (RFC 5321 3.8); whatever the
// reply answered, nothing more will come on this connection.
constexpr bool closes_connection(int code) {
    return code == 421;
}
inline bool Reply::closing() const {
    return closes_connection(code);
}

// Parses an enhanced code at the start of `text` for a reply of class
// `reply_class` (2, 4 or 5). On success stores it and returns the number of
// characters it took, including one following space; otherwise returns 0.
std::size_t parse_enhanced_code(std::string_view text, int reply_class, EnhancedCode& out);

// Bounds on what a server may send. Exceeding one is a protocol error.
// (A change of code between the lines of one reply is not the parser's to
// refuse: it keeps each line's code, and the session decides, knowing what
// the reply answers.)
struct ReplyLimits {
    // Longest reply line in octets, CRLF included (RFC 5321 allows 512; servers exceed it).
    std::size_t max_reply_line = 8192;
    // Largest whole reply in octets, all lines and their CRLFs included.
    std::size_t max_reply_size = 256 * 1024;
    // Accept a line ended by a bare LF instead of CRLF. Off: a bare LF is an error.
    bool accept_bare_lf = false;
};

class ReplyParser {
public:
    enum class Result {
        need_more,  // all input consumed, no complete reply yet
        reply,      // a reply is complete: call take()
        error,      // the input is not a valid reply: see error(); the parser stays failed
    };

    explicit ReplyParser(const ReplyLimits& limits = {});

    // Consumes input up to and including the end of one reply, and no further.
    // `consumed` receives how many bytes were used; unused bytes belong to the
    // next reply and must be fed again.
    Result feed(const char* data, std::size_t len, std::size_t& consumed);
    Result feed(std::string_view data, std::size_t& consumed) { return feed(data.data(), data.size(), consumed); }

    // The completed reply (valid after feed returned Result::reply).
    Reply take();

    const std::string& error() const { return error_; }
    bool failed() const { return !error_.empty(); }
    // True when part of a reply has been seen but it is not complete.
    bool in_reply() const { return !line_.empty() || !reply_.lines.empty(); }

    void reset();
    const ReplyLimits& limits() const { return limits_; }
    void set_limits(const ReplyLimits& limits) { limits_ = limits; }

private:
    bool finish_line(std::string_view line);
    void fail(std::string message);

    ReplyLimits limits_;
    std::string line_;      // the current, incomplete line (CR included if seen)
    Reply reply_;           // the reply being assembled
    std::size_t size_ = 0;  // octets of the current reply so far
    bool complete_ = false;
    std::string error_;
};

// Renders arbitrary bytes for an error message: printable ASCII as is, CR,
// LF, TAB and backslash as \r \n \t \\, every other byte as \xHH; cut to
// about `max` characters (then "..." is appended).
std::string printable(std::string_view bytes, std::size_t max = 80);

}  // namespace lmtp
