// Tests for the reply parser (lmtp/reply.hpp): pure bytes in, replies out.
//
// The header is the specification. RFC 5321 4.2 gives the reply syntax:
//   Reply-line = *( Reply-code "-" [ textstring ] CRLF )
//                   Reply-code [ SP textstring ] CRLF
//   Reply-code = %x32-35 %x30-35 %x30-39
// RFC 3463 gives the enhanced codes (class "." subject "." detail).
#include "lmtp/reply.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace {

using lmtp::EnhancedCode;
using lmtp::Reply;
using lmtp::ReplyLimits;
using lmtp::ReplyParser;
using Result = lmtp::ReplyParser::Result;

// One reply rendered as a string, so that vectors of replies compare with a
// readable diff: "250 [2.1.5] {line1|line2}".
std::string render(const Reply& r) {
    std::string s = std::to_string(r.code) + " [" + r.enhanced.str() + "] {";
    for (std::size_t i = 0; i < r.lines.size(); ++i) {
        if (i) s += '|';
        s += lmtp::printable(r.lines[i], 10000);
    }
    return s + "}";
}

struct Outcome {
    std::vector<std::string> replies;  // rendered
    bool error = false;
    std::string message;
    bool in_reply_at_end = false;
};

// Feeds `pieces` one after another, the way a client would: whatever feed()
// did not consume is fed again after take(). Checks the feed() contract on
// the way (consumed never exceeds the input; need_more consumes everything).
Outcome run(ReplyParser& p, const std::vector<std::string_view>& pieces) {
    Outcome o;
    for (std::string_view piece : pieces) {
        std::size_t off = 0;
        int guard = 0;
        while (off < piece.size()) {
            if (++guard > 100000) {
                ADD_FAILURE() << "parser makes no progress";
                return o;
            }
            std::size_t consumed = 12345678;
            Result r = p.feed(piece.substr(off), consumed);
            if (r == Result::error) {
                o.error = true;
                o.message = p.error();
                EXPECT_TRUE(p.failed());
                return o;
            }
            EXPECT_LE(consumed, piece.size() - off);
            if (consumed > piece.size() - off) return o;
            off += consumed;
            if (r == Result::reply) {
                o.replies.push_back(render(p.take()));
            } else {
                EXPECT_EQ(off, piece.size()) << "need_more must consume all input";
                off = piece.size();
            }
        }
    }
    o.in_reply_at_end = p.in_reply();
    return o;
}

Outcome run_whole(std::string_view bytes, ReplyLimits limits = {}) {
    ReplyParser p(limits);
    return run(p, {bytes});
}

Outcome run_bytewise(std::string_view bytes, ReplyLimits limits = {}) {
    ReplyParser p(limits);
    std::vector<std::string_view> pieces;
    for (std::size_t i = 0; i < bytes.size(); ++i) pieces.push_back(bytes.substr(i, 1));
    return run(p, pieces);
}

bool has_raw_control(std::string_view s) {
    return std::any_of(s.begin(), s.end(), [](char c) {
        auto u = static_cast<unsigned char>(c);
        return u < 0x20 || u == 0x7f;
    });
}

std::string lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

// ---------------------------------------------------------------------------
// Well-formed replies.

struct GoodCase {
    const char* name;
    std::string input;
    int code;
    EnhancedCode enhanced;
    std::vector<std::string> lines;
    std::string text;
    std::string message;
};

std::vector<GoodCase> good_cases() {
    return {
        {"single_line", "250 Ok\r\n", 250, {}, {"Ok"}, "Ok", "Ok"},
        {"multi_line", "250-a\r\n250 b\r\n", 250, {}, {"a", "b"}, "a\nb", "a\nb"},
        {"three_lines", "250-a\r\n250-b\r\n250 c\r\n", 250, {}, {"a", "b", "c"}, "a\nb\nc",
         "a\nb\nc"},
        {"code_only", "250\r\n", 250, {}, {""}, "", ""},
        {"code_space_no_text", "250 \r\n", 250, {}, {""}, "", ""},
        {"continuation_without_text", "250-\r\n250 b\r\n", 250, {}, {"", "b"}, "\nb", "\nb"},
        {"enhanced_2", "250 2.1.5 Ok\r\n", 250, {2, 1, 5}, {"2.1.5 Ok"}, "Ok", "2.1.5 Ok"},
        {"enhanced_5", "550 5.1.1 no\r\n", 550, {5, 1, 1}, {"5.1.1 no"}, "no", "5.1.1 no"},
        {"enhanced_4", "452 4.2.2 Mailbox full\r\n", 452, {4, 2, 2}, {"4.2.2 Mailbox full"},
         "Mailbox full", "4.2.2 Mailbox full"},
        {"enhanced_wrong_class_is_text", "250 4.1.1 x\r\n", 250, {}, {"4.1.1 x"}, "4.1.1 x",
         "4.1.1 x"},
        {"enhanced_wrong_class_5_in_4xx", "451 5.0.0 x\r\n", 451, {}, {"5.0.0 x"}, "5.0.0 x",
         "5.0.0 x"},
        {"enhanced_three_digit_parts", "550 5.999.999 x\r\n", 550, {5, 999, 999},
         {"5.999.999 x"}, "x", "5.999.999 x"},
        {"enhanced_multi_line", "452-4.2.2 a\r\n452 4.2.2 b\r\n", 452, {4, 2, 2},
         {"4.2.2 a", "4.2.2 b"}, "a\nb", "4.2.2 a\n4.2.2 b"},
        {"enhanced_first_line_only", "250-2.0.0 a\r\n250 b\r\n", 250, {2, 0, 0},
         {"2.0.0 a", "b"}, "a\nb", "2.0.0 a\nb"},
        {"enhanced_code_only_text", "250 2.0.0\r\n", 250, {2, 0, 0}, {"2.0.0"}, "", "2.0.0"},
        {"intermediate_354", "354 End data with <CR><LF>.<CR><LF>\r\n", 354, {},
         {"End data with <CR><LF>.<CR><LF>"}, "End data with <CR><LF>.<CR><LF>",
         "End data with <CR><LF>.<CR><LF>"},
        {"lowest_code_200", "200 x\r\n", 200, {}, {"x"}, "x", "x"},
        {"highest_code_559", "559 x\r\n", 559, {}, {"x"}, "x", "x"},
        {"text_with_spaces_kept", "250  two  spaces \r\n", 250, {}, {" two  spaces "},
         " two  spaces ", " two  spaces "},
        {"utf8_text", "250 2.0.0 caf\xC3\xA9\r\n", 250, {2, 0, 0}, {"2.0.0 caf\xC3\xA9"},
         "caf\xC3\xA9", "2.0.0 caf\xC3\xA9"},
        {"tab_in_text", "250 a\tb\r\n", 250, {}, {"a\tb"}, "a\tb", "a\tb"},
    };
}

class ReplyGood : public ::testing::TestWithParam<GoodCase> {};

TEST_P(ReplyGood, ParsesInOneFeed) {
    const GoodCase& c = GetParam();
    ReplyParser p;
    std::size_t consumed = 0;
    ASSERT_EQ(p.feed(c.input, consumed), Result::reply) << p.error();
    EXPECT_EQ(consumed, c.input.size());
    EXPECT_FALSE(p.failed());
    Reply r = p.take();
    EXPECT_EQ(r.code, c.code);
    EXPECT_EQ(r.enhanced, c.enhanced) << "got " << r.enhanced.str();
    EXPECT_EQ(r.enhanced.present(), c.enhanced.klass != 0);
    EXPECT_EQ(r.lines, c.lines);
    EXPECT_EQ(r.text(), c.text);
    EXPECT_EQ(r.message(), c.message);
    EXPECT_FALSE(r.empty());
    EXPECT_FALSE(p.in_reply());
}

TEST_P(ReplyGood, ParsesByteByByte) {
    const GoodCase& c = GetParam();
    ReplyParser p;
    for (std::size_t i = 0; i < c.input.size(); ++i) {
        std::size_t consumed = 99;
        Result r = p.feed(c.input.data() + i, 1, consumed);
        EXPECT_EQ(consumed, 1u) << "at byte " << i;
        if (i + 1 < c.input.size()) {
            ASSERT_EQ(r, Result::need_more) << "at byte " << i << ": " << p.error();
            EXPECT_TRUE(p.in_reply()) << "at byte " << i;
        } else {
            ASSERT_EQ(r, Result::reply) << p.error();
        }
    }
    Reply r = p.take();
    EXPECT_EQ(r.code, c.code);
    EXPECT_EQ(r.enhanced, c.enhanced);
    EXPECT_EQ(r.lines, c.lines);
}

TEST_P(ReplyGood, AcceptedWithBareLfWhenAllowed) {
    // The same reply with bare LF line ends parses the same when allowed.
    const GoodCase& c = GetParam();
    std::string lf;
    for (std::size_t i = 0; i < c.input.size(); ++i) {
        if (c.input[i] == '\r' && i + 1 < c.input.size() && c.input[i + 1] == '\n') continue;
        lf += c.input[i];
    }
    ReplyLimits lim;
    lim.accept_bare_lf = true;
    ReplyParser p(lim);
    std::size_t consumed = 0;
    ASSERT_EQ(p.feed(lf, consumed), Result::reply) << p.error();
    EXPECT_EQ(consumed, lf.size());
    Reply r = p.take();
    EXPECT_EQ(r.code, c.code);
    EXPECT_EQ(r.lines, c.lines);
    // And CRLF is still fine when bare LF is allowed.
    ReplyParser q(lim);
    ASSERT_EQ(q.feed(c.input, consumed), Result::reply) << q.error();
    EXPECT_EQ(q.take().lines, c.lines);
}

void PrintTo(const GoodCase& c, std::ostream* os) { *os << c.name; }

INSTANTIATE_TEST_SUITE_P(Table, ReplyGood, ::testing::ValuesIn(good_cases()),
                         [](const ::testing::TestParamInfo<GoodCase>& i) {
                             return std::string(i.param.name);
                         });

// ---------------------------------------------------------------------------
// Reply helpers: summary, predicates, EnhancedCode.

TEST(Reply, SummaryExamples) {
    Reply r;
    r.code = 550;
    r.enhanced = {5, 1, 1};
    r.lines = {"5.1.1 No such user"};
    EXPECT_EQ(r.summary(), "550 5.1.1 No such user");

    Reply plain;
    plain.code = 250;
    plain.lines = {"Ok"};
    EXPECT_EQ(plain.summary(), "250 Ok");

    Reply multi;
    multi.code = 250;
    multi.lines = {"a", "b", "c"};
    EXPECT_EQ(multi.summary(), "250 a; b; c");
    EXPECT_EQ(multi.summary().find('\n'), std::string::npos);
}

TEST(Reply, SummaryOfMultiLineEnhancedReplyIsOneLine) {
    ReplyParser p;
    std::size_t consumed = 0;
    ASSERT_EQ(p.feed("452-4.2.2 a\r\n452 4.2.2 b\r\n", consumed), Result::reply);
    Reply r = p.take();
    // One line: code, enhanced code, the lines joined by "; ". Whether the
    // enhanced code is repeated for the later lines the header leaves open.
    const std::string s = r.summary();
    EXPECT_TRUE(s == "452 4.2.2 a; b" || s == "452 4.2.2 a; 4.2.2 b") << s;
}

TEST(Reply, Predicates) {
    struct Row {
        int code;
        bool positive, completion, intermediate, transient, permanent;
    };
    const Row rows[] = {
        {250, true, true, false, false, false},  {354, true, false, true, false, false},
        {421, false, false, false, true, false}, {452, false, false, false, true, false},
        {550, false, false, false, false, true}, {554, false, false, false, false, true},
    };
    for (const Row& row : rows) {
        SCOPED_TRACE(row.code);
        ReplyParser p;
        std::string in = std::to_string(row.code) + " x\r\n";
        std::size_t consumed = 0;
        ASSERT_EQ(p.feed(in, consumed), Result::reply);
        Reply r = p.take();
        EXPECT_EQ(r.positive(), row.positive);
        EXPECT_EQ(r.completion(), row.completion);
        EXPECT_EQ(r.intermediate(), row.intermediate);
        EXPECT_EQ(r.transient(), row.transient);
        EXPECT_EQ(r.permanent(), row.permanent);
        EXPECT_FALSE(r.empty());
    }
    EXPECT_TRUE(Reply{}.empty());
}

TEST(EnhancedCode, StrAndPresent) {
    EXPECT_EQ((EnhancedCode{5, 1, 1}).str(), "5.1.1");
    EXPECT_EQ((EnhancedCode{2, 0, 0}).str(), "2.0.0");
    EXPECT_EQ((EnhancedCode{4, 123, 999}).str(), "4.123.999");
    EXPECT_EQ(EnhancedCode{}.str(), "");
    EXPECT_FALSE(EnhancedCode{}.present());
    EXPECT_TRUE((EnhancedCode{2, 0, 0}).present());
}

struct EnhCase {
    std::string text;
    int reply_class;
    std::size_t taken;
    EnhancedCode code;
};

TEST(EnhancedCode, ParseTable) {
    const EnhCase cases[] = {
        {"2.1.5 Ok", 2, 6, {2, 1, 5}},
        {"5.1.1 no", 5, 6, {5, 1, 1}},
        {"4.2.2 full", 4, 6, {4, 2, 2}},
        {"2.1.5", 2, 5, {2, 1, 5}},              // nothing after it: no space to take
        {"2.999.999 x", 2, 10, {2, 999, 999}},
        {"5.7.26 x", 5, 7, {5, 7, 26}},
        {"4.1.1 x", 2, 0, {}},                   // class differs from the reply's
        {"2.1.5 Ok", 5, 0, {}},
        {"3.0.0 x", 3, 0, {}},                   // RFC 3463: class is 2, 4 or 5
        {"2.1000.1 x", 2, 0, {}},                // subject at most 3 digits
        {"2.1.1000 x", 2, 0, {}},                // detail at most 3 digits
        {"2..1 x", 2, 0, {}},
        {"2.1. x", 2, 0, {}},
        {"2.1 x", 2, 0, {}},
        {"2. x", 2, 0, {}},
        {".1.1 x", 2, 0, {}},
        {"2.a.1 x", 2, 0, {}},
        {"x 2.1.1", 2, 0, {}},
        {"", 2, 0, {}},
        {"2.1.5Ok", 2, 0, {}},                   // not a separate token
    };
    for (const EnhCase& c : cases) {
        SCOPED_TRACE("\"" + c.text + "\" class " + std::to_string(c.reply_class));
        EnhancedCode out;
        EXPECT_EQ(lmtp::parse_enhanced_code(c.text, c.reply_class, out), c.taken);
        if (c.taken) {
            EXPECT_EQ(out, c.code) << out.str();
        }
    }
}

// ---------------------------------------------------------------------------
// Streams of replies: feed() stops at the end of one reply, and every way of
// splitting the bytes gives the same replies.

const std::string kStream =
    "250-mail.example.org\r\n250-8BITMIME\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n"
    "250 2.1.0 Ok\r\n"
    "250\r\n"
    "550 5.1.1 <x@y>: User doesn't exist\r\n"
    "452-4.2.2 over\r\n452 4.2.2 quota\r\n"
    "354 go ahead\r\n"
    "221 2.0.0 Bye\r\n";

const std::vector<std::string> kStreamExpected = {
    "250 [] {mail.example.org|8BITMIME|PIPELINING|ENHANCEDSTATUSCODES}",
    "250 [2.1.0] {2.1.0 Ok}",
    "250 [] {}",
    "550 [5.1.1] {5.1.1 <x@y>: User doesn't exist}",
    "452 [4.2.2] {4.2.2 over|4.2.2 quota}",
    "354 [] {go ahead}",
    "221 [2.0.0] {2.0.0 Bye}",
};

TEST(ReplyStream, WholeBuffer) {
    Outcome o = run_whole(kStream);
    EXPECT_FALSE(o.error) << o.message;
    EXPECT_EQ(o.replies, kStreamExpected);
    EXPECT_FALSE(o.in_reply_at_end);
}

TEST(ReplyStream, TwoRepliesInOneBufferComeOutOneByOne) {
    const std::string a = "250 2.1.0 Ok\r\n";
    const std::string b = "250-x\r\n250 2.1.5 y\r\n";
    const std::string both = a + b + "25";  // plus the start of a third
    ReplyParser p;
    std::size_t consumed = 0;
    ASSERT_EQ(p.feed(both, consumed), Result::reply);
    EXPECT_EQ(consumed, a.size());
    EXPECT_EQ(render(p.take()), "250 [2.1.0] {2.1.0 Ok}");
    EXPECT_FALSE(p.in_reply());

    std::string_view rest = std::string_view(both).substr(a.size());
    ASSERT_EQ(p.feed(rest, consumed), Result::reply);
    EXPECT_EQ(consumed, b.size());
    // The enhanced code comes from the first line only, which has none.
    EXPECT_EQ(render(p.take()), "250 [] {x|2.1.5 y}");

    rest = rest.substr(b.size());
    ASSERT_EQ(p.feed(rest, consumed), Result::need_more);
    EXPECT_EQ(consumed, 2u);
    EXPECT_TRUE(p.in_reply());
    ASSERT_EQ(p.feed("1 Bye\r\n", consumed), Result::reply);
    EXPECT_EQ(consumed, 7u);
    EXPECT_EQ(render(p.take()), "251 [] {Bye}");
}

TEST(ReplyStream, SplitInTwoAtEveryOffset) {
    for (std::size_t i = 0; i <= kStream.size(); ++i) {
        SCOPED_TRACE("split at " + std::to_string(i));
        ReplyParser p;
        std::string_view s(kStream);
        Outcome o = run(p, {s.substr(0, i), s.substr(i)});
        ASSERT_FALSE(o.error) << o.message;
        ASSERT_EQ(o.replies, kStreamExpected);
    }
}

TEST(ReplyStream, SplitInThreeAtEveryPairOfOffsets) {
    const std::string_view s(kStream);
    for (std::size_t i = 0; i <= s.size(); ++i) {
        for (std::size_t j = i; j <= s.size(); ++j) {
            ReplyParser p;
            Outcome o = run(p, {s.substr(0, i), s.substr(i, j - i), s.substr(j)});
            ASSERT_FALSE(o.error) << "split at " << i << "," << j << ": " << o.message;
            ASSERT_EQ(o.replies, kStreamExpected) << "split at " << i << "," << j;
        }
    }
}

TEST(ReplyStream, OneByteAtATime) {
    Outcome o = run_bytewise(kStream);
    EXPECT_FALSE(o.error) << o.message;
    EXPECT_EQ(o.replies, kStreamExpected);
    EXPECT_FALSE(o.in_reply_at_end);
}

TEST(ReplyStream, BareLfStreamSplitEverywhereWhenAllowed) {
    // Mixed line ends: the server sends bare LF on some lines.
    const std::string s = "250-a\n250-b\r\n250 c\n250 2.0.0 d\r\n550 5.1.1 e\n";
    const std::vector<std::string> expected = {"250 [] {a|b|c}", "250 [2.0.0] {2.0.0 d}",
                                               "550 [5.1.1] {5.1.1 e}"};
    ReplyLimits lim;
    lim.accept_bare_lf = true;
    for (std::size_t i = 0; i <= s.size(); ++i) {
        ReplyParser p(lim);
        std::string_view v(s);
        Outcome o = run(p, {v.substr(0, i), v.substr(i)});
        ASSERT_FALSE(o.error) << "split at " << i << ": " << o.message;
        ASSERT_EQ(o.replies, expected) << "split at " << i;
    }
    Outcome o = run_bytewise(s, lim);
    EXPECT_FALSE(o.error) << o.message;
    EXPECT_EQ(o.replies, expected);
}

TEST(ReplyStream, InReply) {
    ReplyParser p;
    EXPECT_FALSE(p.in_reply());
    std::size_t consumed = 0;
    ASSERT_EQ(p.feed("2", consumed), Result::need_more);
    EXPECT_TRUE(p.in_reply());
    ASSERT_EQ(p.feed("50-a\r\n", consumed), Result::need_more);
    EXPECT_TRUE(p.in_reply());  // a whole line, but not a whole reply
    ASSERT_EQ(p.feed("250 b\r", consumed), Result::need_more);
    EXPECT_TRUE(p.in_reply());
    ASSERT_EQ(p.feed("\n", consumed), Result::reply);
    p.take();
    EXPECT_FALSE(p.in_reply());
    ASSERT_EQ(p.feed("250-x\r\n", consumed), Result::need_more);
    EXPECT_TRUE(p.in_reply());
    p.reset();
    EXPECT_FALSE(p.in_reply());
    EXPECT_FALSE(p.failed());
}

TEST(ReplyStream, EmptyFeedNeedsMore) {
    ReplyParser p;
    std::size_t consumed = 42;
    EXPECT_EQ(p.feed("", consumed), Result::need_more);
    EXPECT_EQ(consumed, 0u);
    EXPECT_FALSE(p.in_reply());
    EXPECT_FALSE(p.failed());
}

// ---------------------------------------------------------------------------
// Errors.

struct BadCase {
    const char* name;
    std::string input;
    bool accept_bare_lf;
};

std::vector<BadCase> bad_cases() {
    using namespace std::string_literals;
    return {
        {"no_code", "hello\r\n", false},
        {"empty_line", "\r\n", false},
        {"space_first", " 250 x\r\n", false},
        {"too_short_2", "25\r\n", false},
        {"too_short_1", "2\r\n", false},
        {"non_digit_middle", "2x0 ok\r\n", false},
        {"non_digit_last", "25a ok\r\n", false},
        {"non_digit_first", "a50 ok\r\n", false},
        {"code_999", "999 x\r\n", false},
        {"code_100", "100 x\r\n", false},
        {"code_199", "199 x\r\n", false},
        {"code_600", "600 x\r\n", false},
        {"code_000", "000 x\r\n", false},
        {"code_560", "560 x\r\n", false},
        {"four_digit_code", "2500 x\r\n", false},
        {"bad_separator", "250x\r\n", false},
        {"bad_separator_multiline", "250-a\r\n250+b\r\n", false},
        {"continuation_garbage", "250-a\r\nxyz\r\n", false},
        {"bare_lf", "250 a\n", false},
        {"bare_lf_second_line", "250-a\r\n250 b\n", false},
        {"bare_lf_code_only", "250\n", false},
        {"bare_cr_in_line", "250 a\rb\r\n", false},
        {"bare_cr_in_line_lf_allowed", "250 a\rb\r\n", true},
        {"cr_cr_lf", "250 a\r\r\n", false},
        {"nul_in_text", "250 a\0b\r\n"s, false},
        {"nul_in_text_lf_allowed", "250 a\0b\n"s, true},
        {"nul_in_code", "2\0"s "50 a\r\n", false},
        {"nul_first_line_of_two", "250-\0\r\n250 b\r\n"s, false},
    };
}

class ReplyBad : public ::testing::TestWithParam<BadCase> {};

void expect_fails(const BadCase& c, const Outcome& o) {
    EXPECT_TRUE(o.error) << "input " << lmtp::printable(c.input);
    EXPECT_TRUE(o.replies.empty()) << "a reply came out: " << o.replies.front();
    EXPECT_FALSE(o.message.empty());
    // Error messages are for people and logs: offending bytes must be escaped.
    EXPECT_FALSE(has_raw_control(o.message)) << lmtp::printable(o.message, 1000);
}

TEST_P(ReplyBad, RejectedInOneFeed) {
    ReplyLimits lim;
    lim.accept_bare_lf = GetParam().accept_bare_lf;
    expect_fails(GetParam(), run_whole(GetParam().input, lim));
}

TEST_P(ReplyBad, RejectedByteByByte) {
    ReplyLimits lim;
    lim.accept_bare_lf = GetParam().accept_bare_lf;
    expect_fails(GetParam(), run_bytewise(GetParam().input, lim));
}

TEST_P(ReplyBad, StaysFailedUntilReset) {
    const BadCase& c = GetParam();
    ReplyLimits lim;
    lim.accept_bare_lf = c.accept_bare_lf;
    ReplyParser p(lim);
    ASSERT_TRUE(run(p, {c.input}).error);
    const std::string first = p.error();
    EXPECT_TRUE(p.failed());
    std::size_t consumed = 0;
    EXPECT_EQ(p.feed("250 ok\r\n", consumed), Result::error);
    EXPECT_TRUE(p.failed());
    EXPECT_EQ(p.error(), first) << "the first error is kept";
    p.reset();
    EXPECT_FALSE(p.failed());
    EXPECT_TRUE(p.error().empty());
    EXPECT_FALSE(p.in_reply());
    ASSERT_EQ(p.feed("250 ok\r\n", consumed), Result::reply) << p.error();
    EXPECT_EQ(consumed, 8u);
    EXPECT_EQ(render(p.take()), "250 [] {ok}");
}

void PrintTo(const BadCase& c, std::ostream* os) { *os << c.name; }

INSTANTIATE_TEST_SUITE_P(Table, ReplyBad, ::testing::ValuesIn(bad_cases()),
                         [](const ::testing::TestParamInfo<BadCase>& i) {
                             return std::string(i.param.name);
                         });

// Lines with different codes are no valid reply, but whether they are an
// error depends on what the reply answers (session.hpp: one line per
// recipient); the parser keeps each line's code for the session to decide.
TEST(ReplyMixed, EachLineKeepsItsCode) {
    ReplyParser p;
    std::size_t used = 0;
    const std::string in = "250-Ok\r\n550-<b@x> Failed\r\n250 2.0.0 Ok\r\n251 next\r\n";
    ASSERT_EQ(p.feed(in, used), Result::reply) << p.error();
    Reply r = p.take();
    EXPECT_EQ(used, in.size() - std::string("251 next\r\n").size()) << "one reply, no further";
    EXPECT_EQ(r.code, 250);
    EXPECT_TRUE(r.mixed());
    EXPECT_EQ(r.line_codes, (std::vector<int>{250, 550, 250}));
    EXPECT_EQ(r.line_code(1), 550);
    EXPECT_EQ(r.summary(), "250 Ok; 550 <b@x> Failed; 250 2.0.0 Ok");
    EXPECT_EQ(r.text(), "Ok\n<b@x> Failed\nOk");
    EXPECT_EQ(render(r.line_reply(1)), "550 [] {<b@x> Failed}");
    EXPECT_EQ(render(r.line_reply(2)), "250 [2.0.0] {2.0.0 Ok}");
    EXPECT_EQ(r.line_reply(3).code, 0) << "no such line";

    // The same code on every line: not mixed, as ever.
    ReplyParser q;
    ASSERT_EQ(q.feed("250-a\r\n250 b\r\n", used), Result::reply);
    Reply same = q.take();
    EXPECT_FALSE(same.mixed());
    EXPECT_EQ(same.line_code(1), 250);
    EXPECT_EQ(render(same.line_reply(0)), "250 [] {a}");
}

TEST(ReplyMixed, SplitAnywhereGivesTheSameCodes) {
    const std::string in = "250-a\r\n251-b\r\n550 5.1.1 c\r\n";
    for (std::size_t cut = 1; cut < in.size(); ++cut) {
        ReplyParser p;
        Outcome o = run(p, {std::string_view(in).substr(0, cut), std::string_view(in).substr(cut)});
        ASSERT_FALSE(o.error) << o.message;
        ASSERT_EQ(o.replies.size(), 1u);
        EXPECT_EQ(o.replies[0], "250 [] {a|b|5.1.1 c}");
    }
}

TEST(ReplyErrors, MessagesNameTheProblem) {
    // A clear message quotes (escaped) what was wrong, or the limit passed.
    struct Row {
        std::string input;
        std::size_t max_line;
        std::string needle;
    };
    const Row rows[] = {
        {"hello\r\n", 8192, "hello"},
        {"999 x\r\n", 8192, "999"},
        {"2500 x\r\n", 8192, "2500"},
        {"250 a\n", 8192, "LF"},
        {"250 " + std::string(100, 'x') + "\r\n", 64, "64"},
    };
    for (const Row& r : rows) {
        ReplyLimits lim;
        lim.max_reply_line = r.max_line;
        Outcome o = run_whole(r.input, lim);
        ASSERT_TRUE(o.error) << lmtp::printable(r.input);
        EXPECT_NE(o.message.find(r.needle), std::string::npos)
            << "message \"" << o.message << "\" does not mention " << r.needle;
    }
}

TEST(ReplyErrors, SecondDigitAboveFiveRejected) {
    // RFC 5321 4.2: Reply-code = %x32-35 %x30-35 %x30-39.
    for (const char* in : {"260 x\r\n", "370 x\r\n", "490 x\r\n", "299 x\r\n"}) {
        Outcome o = run_whole(in);
        EXPECT_TRUE(o.error) << in;
    }
}

TEST(ReplyErrors, NothingComesOutOfABadReply) {
    // A bad reply followed by more bytes: whatever was consumed, the parser
    // fails and gives nothing out.
    Outcome o = run_whole("hello\r\n250 ok\r\n");
    EXPECT_TRUE(o.error);
    EXPECT_TRUE(o.replies.empty());
}

TEST(ReplyErrors, GoodReplyBeforeABadOneComesOut) {
    Outcome o = run_whole("250 ok\r\nbogus\r\n");
    ASSERT_EQ(o.replies.size(), 1u);
    EXPECT_EQ(o.replies[0], "250 [] {ok}");
    EXPECT_TRUE(o.error);
}

// ---------------------------------------------------------------------------
// Limits.

TEST(ReplyLimitsTest, Defaults) {
    ReplyLimits lim;
    EXPECT_EQ(lim.max_reply_line, 8192u);
    EXPECT_EQ(lim.max_reply_size, 256u * 1024u);
    EXPECT_FALSE(lim.accept_bare_lf);
    ReplyParser p;
    EXPECT_EQ(p.limits().max_reply_line, 8192u);
    EXPECT_EQ(p.limits().max_reply_size, 256u * 1024u);
    EXPECT_FALSE(p.limits().accept_bare_lf);
}

TEST(ReplyLimitsTest, Settable) {
    ReplyLimits lim;
    lim.max_reply_line = 100;
    lim.max_reply_size = 1000;
    lim.accept_bare_lf = true;
    ReplyParser p;
    p.set_limits(lim);
    EXPECT_EQ(p.limits().max_reply_line, 100u);
    EXPECT_EQ(p.limits().max_reply_size, 1000u);
    EXPECT_TRUE(p.limits().accept_bare_lf);
    // The new limits are in force.
    std::size_t consumed = 0;
    EXPECT_EQ(p.feed("250 a\n", consumed), Result::reply) << p.error();
    p.take();
    EXPECT_EQ(p.feed("250 " + std::string(200, 'x') + "\r\n", consumed), Result::error);

    ReplyParser q(lim);
    EXPECT_EQ(q.limits().max_reply_line, 100u);
}

// "250 " + text + "\r\n" of exactly `octets` octets.
std::string line_of(std::size_t octets, char sep = ' ') {
    return std::string("250") + sep + std::string(octets - 6, 'x') + "\r\n";
}

TEST(ReplyLimitsTest, LineLengthBoundaryDefault) {
    std::string ok = line_of(8192);
    ASSERT_EQ(ok.size(), 8192u);
    Outcome o = run_whole(ok);
    EXPECT_FALSE(o.error) << o.message;
    EXPECT_EQ(o.replies.size(), 1u);

    o = run_whole(line_of(8193));
    EXPECT_TRUE(o.error);
    EXPECT_TRUE(o.replies.empty());
}

TEST(ReplyLimitsTest, LineLengthBoundaryCustom) {
    ReplyLimits lim;
    lim.max_reply_line = 64;
    for (bool bytewise : {false, true}) {
        SCOPED_TRACE(bytewise ? "bytewise" : "whole");
        auto go = [&](const std::string& s) {
            return bytewise ? run_bytewise(s, lim) : run_whole(s, lim);
        };
        Outcome o = go(line_of(64));
        EXPECT_FALSE(o.error) << o.message;
        EXPECT_EQ(o.replies.size(), 1u);
        EXPECT_TRUE(go(line_of(65)).error);
        // Continuation lines are bounded the same way.
        o = go(line_of(64, '-') + line_of(64));
        EXPECT_FALSE(o.error) << o.message;
        EXPECT_EQ(o.replies.size(), 1u);
        EXPECT_TRUE(go(line_of(65, '-') + line_of(10)).error);
        EXPECT_TRUE(go(line_of(10, '-') + line_of(65)).error);
    }
}

TEST(ReplyLimitsTest, LongLineWithBareLfAllowed) {
    // With bare LF allowed the line limit still holds.
    ReplyLimits lim;
    lim.max_reply_line = 64;
    lim.accept_bare_lf = true;
    std::string ok = "250 " + std::string(40, 'x') + "\n";
    EXPECT_FALSE(run_whole(ok, lim).error);
    std::string bad = "250 " + std::string(70, 'x') + "\n";
    EXPECT_TRUE(run_whole(bad, lim).error);
}

TEST(ReplyLimitsTest, LongLineDetectedBeforeItsEnd) {
    // A server that sends an endless line: the parser must give up once the
    // line passes the limit, not wait (and buffer) until an LF arrives.
    ReplyLimits lim;
    lim.max_reply_line = 64;
    ReplyParser p(lim);
    const std::string prefix = "250 ";
    std::size_t fed = 0;
    std::size_t consumed = 0;
    Result r = p.feed(prefix, consumed);
    ASSERT_EQ(r, Result::need_more);
    fed += prefix.size();
    // Up to 62 octets (64 minus CRLF) the line can still be valid.
    while (fed < 62) {
        r = p.feed("x", consumed);
        ASSERT_EQ(r, Result::need_more) << "failed early at octet " << fed;
        ++fed;
    }
    // From here on, at most a few more octets may be taken before the error.
    for (int i = 0; i < 4 && r != Result::error; ++i) {
        r = p.feed("x", consumed);
        ++fed;
    }
    EXPECT_EQ(r, Result::error) << "still waiting after " << fed << " octets without LF";
    EXPECT_TRUE(p.failed());
    EXPECT_FALSE(has_raw_control(p.error()));

    // The same in one big feed without any LF.
    ReplyParser q(lim);
    std::string endless = "250 " + std::string(100000, 'x');
    EXPECT_EQ(q.feed(endless, consumed), Result::error);
    // Default limit too: a megabyte without LF fails.
    ReplyParser d;
    EXPECT_EQ(d.feed("250-" + std::string(1 << 20, 'y'), consumed), Result::error);
}

TEST(ReplyLimitsTest, ReplySizeBoundary) {
    ReplyLimits lim;
    lim.max_reply_size = 100;
    // Two lines: 6 + 40 + 6 + 48 = 100 octets, CRLFs included.
    const std::string ok = "250-" + std::string(40, 'a') + "\r\n250 " + std::string(48, 'b') + "\r\n";
    ASSERT_EQ(ok.size(), 100u);
    const std::string bad = "250-" + std::string(40, 'a') + "\r\n250 " + std::string(49, 'b') + "\r\n";
    for (bool bytewise : {false, true}) {
        SCOPED_TRACE(bytewise ? "bytewise" : "whole");
        Outcome o = bytewise ? run_bytewise(ok, lim) : run_whole(ok, lim);
        EXPECT_FALSE(o.error) << o.message;
        EXPECT_EQ(o.replies.size(), 1u);
        o = bytewise ? run_bytewise(bad, lim) : run_whole(bad, lim);
        EXPECT_TRUE(o.error);
        EXPECT_TRUE(o.replies.empty());
    }
}

TEST(ReplyLimitsTest, ReplySizeCountsPerReply) {
    ReplyLimits lim;
    lim.max_reply_size = 100;
    // Three replies of 60 octets each: each fits on its own.
    const std::string one = "250 " + std::string(54, 'z') + "\r\n";
    ASSERT_EQ(one.size(), 60u);
    Outcome o = run_whole(one + one + one, lim);
    EXPECT_FALSE(o.error) << o.message;
    EXPECT_EQ(o.replies.size(), 3u);
}

TEST(ReplyLimitsTest, EndlessMultiLineReplyFails) {
    ReplyParser p;  // default: 256 KiB per reply
    std::string chunk;
    for (int i = 0; i < 1000; ++i) chunk += "250-some capability line\r\n";
    Result r = Result::need_more;
    std::size_t total = 0;
    while (r == Result::need_more && total < 4u * 1024 * 1024) {
        std::size_t consumed = 0;
        r = p.feed(chunk, consumed);
        total += chunk.size();
    }
    EXPECT_EQ(r, Result::error);
    EXPECT_LE(total, 256u * 1024 + chunk.size());
}

// ---------------------------------------------------------------------------
// printable()

TEST(Printable, EscapesNonPrintable) {
    using namespace std::string_literals;
    EXPECT_EQ(lmtp::printable("abc"), "abc");
    EXPECT_EQ(lmtp::printable("Hello, world! ~{}"), "Hello, world! ~{}");
    EXPECT_EQ(lmtp::printable("a\r\n"), "a\\r\\n");
    EXPECT_EQ(lower(lmtp::printable("\0"s)), "\\x00");
    EXPECT_EQ(lower(lmtp::printable("\x7f")), "\\x7f");
    EXPECT_EQ(lower(lmtp::printable("\xff\x80")), "\\xff\\x80");
    EXPECT_EQ(lmtp::printable("\t"), "\\t");
    EXPECT_EQ(lmtp::printable(""), "");
    // A backslash is escaped too, so that "\\x41" in the text cannot pass for an escape.
    EXPECT_EQ(lmtp::printable("a\\b"), "a\\\\b");
}

TEST(Printable, AllBytesRenderWithoutControlCharacters) {
    std::string all;
    for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
    std::string out = lmtp::printable(all, 100000);
    EXPECT_FALSE(has_raw_control(out));
    for (char c : out) EXPECT_LT(static_cast<unsigned char>(c), 0x80u);
    // Every printable ASCII byte appears as itself.
    for (int c = 0x20; c < 0x7f; ++c)
        EXPECT_NE(out.find(static_cast<char>(c)), std::string::npos) << c;
}

TEST(Printable, CutToAboutMax) {
    const std::string big(1000, 'a');
    std::string out = lmtp::printable(big, 80);
    EXPECT_GE(out.size(), 40u);
    EXPECT_LE(out.size(), 96u);
    EXPECT_EQ(out.substr(0, 40), std::string(40, 'a'));
    // Escapes count towards the bound too.
    std::string ctl(1000, '\x01');
    EXPECT_LE(lmtp::printable(ctl, 80).size(), 96u);
    // Short input is not cut.
    EXPECT_EQ(lmtp::printable(std::string(80, 'b'), 80), std::string(80, 'b'));
    EXPECT_EQ(lmtp::printable(std::string(10, 'b')), std::string(10, 'b'));
}

}  // namespace
