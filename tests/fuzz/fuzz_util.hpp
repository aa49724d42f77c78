// Helpers shared by the fuzz targets: a checked assertion that says what
// broke, reply comparison, the parser run over a whole stream, and the
// reference form of a message on the wire.
#pragma once

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "lmtp/body.hpp"
#include "lmtp/reply.hpp"

namespace fuzz {

// An invariant: when it does not hold, say which one and abort (libFuzzer
// then keeps the input as a crash).
inline void require(bool ok, const char* what) {
    if (ok) return;
    std::fprintf(stderr, "fuzz invariant broken: %s\n", what);
    std::abort();
}

inline bool same_reply(const lmtp::Reply& a, const lmtp::Reply& b) {
    return a.code == b.code && a.enhanced == b.enhanced && a.lines == b.lines && a.line_codes == b.line_codes;
}

// Every reply in `stream`, in order, up to the end or the first error.
inline std::vector<lmtp::Reply> parse_replies(std::string_view stream, const lmtp::ReplyLimits& limits) {
    std::vector<lmtp::Reply> out;
    lmtp::ReplyParser parser(limits);
    while (!stream.empty()) {
        std::size_t used = 0;
        auto result = parser.feed(stream, used);
        require(used <= stream.size(), "the parser consumed more than it was given");
        stream.remove_prefix(used);
        if (result != lmtp::ReplyParser::Result::reply) break;
        out.push_back(parser.take());
    }
    return out;
}

// The message as it must arrive: every line end CRLF (a bare CR or LF
// becomes one), and a final CRLF added to a non-empty message without one.
inline std::string canonical(std::string_view in) {
    return lmtp::encode_reference(in, lmtp::BodyEncoder::Mode::canonical);
}

}  // namespace fuzz
