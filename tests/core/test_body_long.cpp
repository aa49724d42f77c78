// The body encoder on long inputs: long enough for every path of its fast
// loop (spans copied whole, runs of line ends that fill its staging buffer
// many times over, pieces ending anywhere), against a byte-by-byte model.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "lmtp/body.hpp"

using lmtp::BodyEncoder;
using Mode = BodyEncoder::Mode;

namespace {

// The reference the encoder is held to (lmtp/body.hpp).
std::string model(std::string_view in, Mode mode) {
    return lmtp::encode_reference(in, mode);
}

std::string encode(std::string_view in, Mode mode, std::mt19937& rng, std::size_t max_piece) {
    BodyEncoder e(mode);
    std::string out;
    while (!in.empty()) {
        std::size_t n = max_piece ? std::min<std::size_t>(rng() % (max_piece + 1), in.size()) : in.size();
        e.encode(in.substr(0, n), out);
        in.remove_prefix(n);
    }
    e.finish(out);
    return out;
}

std::string shaped(std::mt19937& rng, int shape) {
    std::string s;
    while (s.size() < 40000) {
        switch (shape) {
            case 0: s += std::string(rng() % 3000, 'x'); break;                      // long lines
            case 1: s += std::string(1 + rng() % 20, "\n\r."[rng() % 3]); break;    // line ends only
            case 2: s += ".\r\n"; break;                                             // stuffed lines
            default: s += std::string(rng() % 40, 'y'); break;                       // short lines
        }
        s += "\r\n\n\r..\r\n."[rng() % 8];
    }
    return s;
}

}  // namespace

TEST(EncoderLong, EveryShapeAndSplitMatchesTheModel) {
    std::mt19937 rng(777);
    for (int shape = 0; shape < 4; ++shape) {
        for (int n = 0; n < 4; ++n) {
            const std::string in = shaped(rng, shape);
            for (Mode mode : {Mode::dot_stuff, Mode::canonical}) {
                const std::string want = model(in, mode);
                for (std::size_t max_piece : {0u, 17u, 700u, 9000u})
                    ASSERT_TRUE(encode(in, mode, rng, max_piece) == want)
                        << "shape " << shape << " piece " << max_piece << " dot_stuff " << (mode == Mode::dot_stuff);
            }
        }
    }
}
