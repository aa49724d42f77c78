// The reference of the body encoder: what BodyEncoder::encode() over the whole
// message, then finish(), must give, written as plainly as possible, one byte
// at a time. The encoder (body.cpp, over the scan of body_scan.cpp) is fast
// and intricate; this is its definition. The tests and the fuzzer compare the
// two.
#include "lmtp/body.hpp"

namespace lmtp {

std::string encode_reference(std::string_view message, BodyEncoder::Mode mode) {
    const bool stuff = mode == BodyEncoder::Mode::dot_stuff;
    std::string out;
    bool line_start = true;
    for (std::size_t i = 0; i < message.size(); ++i) {
        const char c = message[i];
        if (c == '\r' || c == '\n') {
            // CRLF, a bare CR and a bare LF are each one line end: CRLF.
            out += "\r\n";
            if (c == '\r' && i + 1 < message.size() && message[i + 1] == '\n') ++i;
            line_start = true;
            continue;
        }
        if (stuff && line_start && c == '.') out += '.';  // RFC 5321 4.5.2
        out += c;
        line_start = false;
    }
    if (!line_start) out += "\r\n";  // the last line ends too
    if (stuff) out += ".\r\n";       // the terminator
    return out;
}

}  // namespace lmtp
