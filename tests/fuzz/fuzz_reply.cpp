// Reply parser: never crashes, never exceeds its limits, and gives the same
// replies (or the same error) whether the input comes whole or split.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "lmtp/reply.hpp"

namespace {

struct Outcome {
    std::vector<lmtp::Reply> replies;
    bool failed = false;
};

Outcome run(const std::string& in, std::size_t step, const lmtp::ReplyLimits& limits) {
    Outcome o;
    lmtp::ReplyParser p(limits);
    std::size_t pos = 0;
    while (pos < in.size() && !o.failed) {
        std::size_t end = step ? std::min(in.size(), pos + step) : in.size();
        std::string_view piece(in.data() + pos, end - pos);
        while (!piece.empty()) {
            std::size_t used = 0;
            auto r = p.feed(piece, used);
            if (used > piece.size()) std::abort();
            piece.remove_prefix(used);
            if (r == lmtp::ReplyParser::Result::reply) {
                lmtp::Reply rep = p.take();
                if (rep.code < 200 || rep.code > 559 || rep.lines.empty()) std::abort();
                std::size_t size = 0;
                for (const auto& l : rep.lines) {
                    // On the wire a line is at least "NNN" + text + LF.
                    if (l.size() + 5 > limits.max_reply_line) std::abort();
                    size += l.size() + 4;
                }
                if (size > limits.max_reply_size) std::abort();
                (void)rep.text();
                (void)rep.summary();
                o.replies.push_back(std::move(rep));
            } else if (r == lmtp::ReplyParser::Result::error) {
                if (p.error().empty()) std::abort();
                o.failed = true;
                break;
            } else if (!piece.empty()) {
                std::abort();  // need_more must have taken everything it was given
            }
        }
        pos = end;
    }
    return o;
}

bool same(const Outcome& a, const Outcome& b) {
    if (a.failed != b.failed || a.replies.size() != b.replies.size()) return false;
    for (std::size_t i = 0; i < a.replies.size(); ++i) {
        const auto& x = a.replies[i];
        const auto& y = b.replies[i];
        if (x.code != y.code || x.lines != y.lines || x.line_codes != y.line_codes || !(x.enhanced == y.enhanced))
            return false;
    }
    return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    lmtp::ReplyLimits limits;
    limits.max_reply_line = 16 + data[0] % 200;
    limits.max_reply_size = 64 + data[1] * 4u;
    limits.accept_bare_lf = data[0] & 1;
    std::string in(reinterpret_cast<const char*>(data + 2), size - 2);
    Outcome whole = run(in, 0, limits);
    for (std::size_t step : {1u, 2u, 7u}) {
        if (!same(whole, run(in, step, limits))) std::abort();
    }
    return 0;
}
