// BodyEncoder::pass_through: true exactly when encode() would append the
// input unchanged, and then the encoder's state moves on as encode() moves it.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <string_view>

#include "lmtp/body.hpp"

using lmtp::BodyEncoder;
using Mode = BodyEncoder::Mode;

namespace {

std::string random_text(std::mt19937& rng, std::size_t max_len) {
    // Mostly CRLF lines, so that many inputs pass; now and then a bare CR or
    // LF, a dot, a CR at the end.
    static const std::string pieces[] = {"ab", "x", "\r\n", "\r\n", "\r\n", ".", "\r", "\n", "hello world "};
    std::string s;
    std::size_t len = rng() % (max_len + 1);
    while (s.size() < len) s += pieces[rng() % (sizeof pieces / sizeof pieces[0])];
    return s;
}

}  // namespace

TEST(EncoderPassThrough, TrueExactlyWhenEncodeChangesNothing) {
    std::mt19937 rng(99);
    int passed = 0;
    for (int n = 0; n < 20000; ++n) {
        const Mode mode = n % 2 ? Mode::dot_stuff : Mode::canonical;
        const std::string before = random_text(rng, 8);
        const std::string in = random_text(rng, n % 3 ? 40 : 300);  // past 64 bytes too
        const std::string after = random_text(rng, 8);
        BodyEncoder a(mode), b(mode);
        std::string out_a, out_b;
        a.encode(before, out_a);
        b.encode(before, out_b);
        std::string enc;
        a.encode(in, enc);
        const bool same = enc == in;
        ASSERT_EQ(b.pass_through(in), same) << n;
        if (!same) continue;
        ++passed;
        out_a += enc;
        out_b += in;
        EXPECT_EQ(a.at_line_start(), b.at_line_start());
        EXPECT_EQ(a.bytes_in(), b.bytes_in());
        a.encode(after, out_a);
        b.encode(after, out_b);
        a.finish(out_a);
        b.finish(out_b);
        ASSERT_EQ(out_a, out_b) << n;
    }
    EXPECT_GT(passed, 2000);  // the interesting case is not rare
}

TEST(EncoderPassThrough, FalseChangesNothing) {
    for (std::string in : {"a\nb", "a\rb", "ab\r", ".x\r\n", "\n"}) {
        BodyEncoder e(Mode::dot_stuff);
        std::string out;
        e.encode("z\r", out);  // a CR carried: an LF first would be dropped
        ASSERT_FALSE(e.pass_through(in)) << in;
        EXPECT_EQ(e.bytes_in(), 2u);
        e.encode(in, out);
        e.finish(out);
        BodyEncoder f(Mode::dot_stuff);
        std::string want;
        f.encode("z\r" + in, want);
        f.finish(want);
        EXPECT_EQ(out, want) << in;
    }
}
