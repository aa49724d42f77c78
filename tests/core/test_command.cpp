// Tests for the command formatter (lmtp/command.hpp): the exact bytes of
// every command line (transcript style), the checks that keep caller strings
// from adding protocol lines, and the line-length limits.
#include "lmtp/command.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "lmtp/status.hpp"

namespace {

using lmtp::BodyType;
using lmtp::MailParams;
using lmtp::MailVerb;
using lmtp::Param;
using lmtp::RcptParams;
using lmtp::Ret;
using lmtp::Status;
namespace cmd = lmtp::cmd;
using namespace std::string_literals;

const char* status_str(Status s) {
    switch (s) {
        case Status::bad_input: return "bad_input";
        case Status::line_too_long: return "line_too_long";
        case Status::invalid_argument: return "invalid_argument";
        default: return "other";
    }
}

// Runs `f`, which must throw lmtp::Error with status `want`.
::testing::AssertionResult throws_status(const std::function<void()>& f, Status want) {
    try {
        f();
    } catch (const lmtp::Error& e) {
        if (e.status() == want) return ::testing::AssertionSuccess();
        return ::testing::AssertionFailure()
               << "threw status " << static_cast<int>(e.status()) << " ("
               << status_str(e.status()) << "), expected " << static_cast<int>(want) << " ("
               << status_str(want) << "); what(): " << e.what();
    } catch (const std::exception& e) {
        return ::testing::AssertionFailure() << "threw a non-lmtp exception: " << e.what();
    } catch (...) {
        return ::testing::AssertionFailure() << "threw something unknown";
    }
    return ::testing::AssertionFailure() << "did not throw";
}

#define EXPECT_BAD_INPUT(stmt) EXPECT_TRUE(throws_status([&] { (void)(stmt); }, Status::bad_input))
#define EXPECT_TOO_LONG(stmt) \
    EXPECT_TRUE(throws_status([&] { (void)(stmt); }, Status::line_too_long))

// Renders a byte string readably for failure messages.
std::string show(const std::string& s) {
    std::string o;
    for (unsigned char c : s) {
        if (c == '\r') o += "\\r";
        else if (c == '\n') o += "\\n";
        else if (c < 0x20 || c >= 0x7f) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02X", c);
            o += buf;
        } else o += static_cast<char>(c);
    }
    return o;
}

// The characters that must never get through in an address or argument.
const std::vector<std::string> kControls = {"\r"s, "\n"s, "\r\n"s, "\0"s, "\x01"s, "\t"s,
                                            "\x1b"s, "\x1f"s, "\x7f"s};

// The string with a control character put at the start, middle and end.
std::vector<std::string> poisoned(const std::string& base) {
    std::vector<std::string> out;
    for (const std::string& c : kControls) {
        out.push_back(c + base);
        out.push_back(base.substr(0, base.size() / 2) + c + base.substr(base.size() / 2));
        out.push_back(base + c);
    }
    return out;
}

// ---------------------------------------------------------------------------
// Transcript: exact bytes.

TEST(CommandBytes, SimpleCommands) {
    EXPECT_EQ(cmd::lhlo("host"), "LHLO host\r\n");
    EXPECT_EQ(cmd::lhlo("client.example.org"), "LHLO client.example.org\r\n");
    EXPECT_EQ(cmd::lhlo("[192.0.2.1]"), "LHLO [192.0.2.1]\r\n");
    EXPECT_EQ(cmd::data(), "DATA\r\n");
    EXPECT_EQ(cmd::bdat(123, false), "BDAT 123\r\n");
    EXPECT_EQ(cmd::bdat(0, true), "BDAT 0 LAST\r\n");
    EXPECT_EQ(cmd::bdat(123, true), "BDAT 123 LAST\r\n");
    EXPECT_EQ(cmd::bdat(0, false), "BDAT 0\r\n");
    EXPECT_EQ(cmd::bdat(18446744073709551615ull, false), "BDAT 18446744073709551615\r\n");
    EXPECT_EQ(cmd::rset(), "RSET\r\n");
    EXPECT_EQ(cmd::noop(), "NOOP\r\n");
    EXPECT_EQ(cmd::quit(), "QUIT\r\n");
    EXPECT_EQ(cmd::verify("user"), "VRFY user\r\n");
    EXPECT_EQ(cmd::verify("Smith"), "VRFY Smith\r\n");
    EXPECT_EQ(cmd::expand("staff"), "EXPN staff\r\n");
    EXPECT_EQ(cmd::help(), "HELP\r\n");
    EXPECT_EQ(cmd::help(""), "HELP\r\n");
    EXPECT_EQ(cmd::help("DATA"), "HELP DATA\r\n");
    EXPECT_EQ(cmd::etrn("example.org"), "ETRN example.org\r\n");
    EXPECT_EQ(cmd::etrn("@example.org"), "ETRN @example.org\r\n");
    EXPECT_EQ(cmd::raw("XCMD arg"), "XCMD arg\r\n");
    EXPECT_EQ(cmd::raw("NOOP"), "NOOP\r\n");
}

TEST(CommandBytes, MailFrom) {
    EXPECT_EQ(cmd::mail(MailVerb::mail, "a@b"), "MAIL FROM:<a@b>\r\n");
    EXPECT_EQ(cmd::mail(MailVerb::mail, ""), "MAIL FROM:<>\r\n");
    EXPECT_EQ(cmd::mail(MailVerb::mail, "<a@b>"), "MAIL FROM:<a@b>\r\n");
    EXPECT_EQ(cmd::mail(MailVerb::mail, "<>"), "MAIL FROM:<>\r\n");
    EXPECT_EQ(cmd::mail(MailVerb::send, "a@b"), "SEND FROM:<a@b>\r\n");
    EXPECT_EQ(cmd::mail(MailVerb::soml, "a@b"), "SOML FROM:<a@b>\r\n");
    EXPECT_EQ(cmd::mail(MailVerb::saml, "a@b"), "SAML FROM:<a@b>\r\n");
    EXPECT_EQ(cmd::mail(MailVerb::saml, ""), "SAML FROM:<>\r\n");
    EXPECT_EQ(cmd::mail(MailVerb::mail, "caf\xC3\xA9@example.org"),
              "MAIL FROM:<caf\xC3\xA9@example.org>\r\n");
}

TEST(CommandBytes, AnglePath) {
    EXPECT_EQ(lmtp::angle_path("a@b", "MAIL FROM"), "<a@b>");
    EXPECT_EQ(lmtp::angle_path("", "MAIL FROM"), "<>");
    EXPECT_EQ(lmtp::angle_path("<a@b>", "RCPT TO"), "<a@b>");
    EXPECT_EQ(lmtp::angle_path("<>", "MAIL FROM"), "<>");
    EXPECT_BAD_INPUT(lmtp::angle_path("a\r\n@b", "RCPT TO"));
    EXPECT_BAD_INPUT(lmtp::angle_path("<a@b\n>", "RCPT TO"));
}

TEST(CommandBytes, ErrorMessageNamesTheField) {
    // `what` exists to name the field in the error message.
    try {
        lmtp::angle_path("a\nb", "RCPT TO");
        FAIL() << "no throw";
    } catch (const lmtp::Error& e) {
        EXPECT_NE(std::string(e.what()).find("RCPT TO"), std::string::npos) << e.what();
    }
}

TEST(CommandBytes, MailParamsOneByOne) {
    struct Row {
        const char* name;
        std::function<void(MailParams&)> set;
        std::string suffix;
    };
    const std::vector<Row> rows = {
        {"size", [](MailParams& p) { p.size = 1234; }, " SIZE=1234"},
        {"size_zero", [](MailParams& p) { p.size = 0; }, " SIZE=0"},
        {"size_big", [](MailParams& p) { p.size = 10240000000ull; }, " SIZE=10240000000"},
        {"body_7bit", [](MailParams& p) { p.body = BodyType::seven_bit; }, " BODY=7BIT"},
        {"body_8bit", [](MailParams& p) { p.body = BodyType::eight_bit_mime; },
         " BODY=8BITMIME"},
        {"body_binary", [](MailParams& p) { p.body = BodyType::binary_mime; },
         " BODY=BINARYMIME"},
        {"body_none", [](MailParams& p) { p.body = BodyType::none; }, ""},
        {"smtputf8", [](MailParams& p) { p.smtputf8 = true; }, " SMTPUTF8"},
        {"ret_full", [](MailParams& p) { p.ret = Ret::full; }, " RET=FULL"},
        {"ret_hdrs", [](MailParams& p) { p.ret = Ret::hdrs; }, " RET=HDRS"},
        {"envid_plain", [](MailParams& p) { p.envid = "QQ314159"; }, " ENVID=QQ314159"},
        {"envid_xtext", [](MailParams& p) { p.envid = "a+b=c d"; }, " ENVID=a+2Bb+3Dc+20d"},
        {"envid_utf8", [](MailParams& p) { p.envid = "caf\xC3\xA9"; }, " ENVID=caf+C3+A9"},
        {"transid", [](MailParams& p) { p.transid = "abc@host"; }, " TRANSID=<abc@host>"},
        {"transid_bracketed", [](MailParams& p) { p.transid = "<abc@host>"; },
         " TRANSID=<abc@host>"},
        {"extra_value", [](MailParams& p) { p.extra = {{"XFOO", "bar"}}; }, " XFOO=bar"},
        {"extra_keyword_only", [](MailParams& p) { p.extra = {{"XBAZ", std::nullopt}}; },
         " XBAZ"},
        {"extra_two_in_order",
         [](MailParams& p) { p.extra = {{"XB", "2"}, {"XA", std::nullopt}, {"X-C", "3"}}; },
         " XB=2 XA X-C=3"},
        {"extra_utf8_value", [](MailParams& p) { p.extra = {{"XU", "caf\xC3\xA9"}}; },
         " XU=caf\xC3\xA9"},
    };
    for (const Row& r : rows) {
        SCOPED_TRACE(r.name);
        MailParams p;
        r.set(p);
        EXPECT_EQ(show(cmd::mail(MailVerb::mail, "a@b", p)),
                  show("MAIL FROM:<a@b>" + r.suffix + "\r\n"));
    }
}

TEST(CommandBytes, MailParamsOrder) {
    // All at once: SIZE, RET, BODY, SMTPUTF8, TRANSID, ENVID, then the extras
    // in their order (Net::SMTP's order, as command.hpp states).
    MailParams p;
    p.size = 1234;
    p.body = BodyType::eight_bit_mime;
    p.smtputf8 = true;
    p.ret = Ret::hdrs;
    p.envid = "QQ314159";
    p.transid = "t@h";
    p.extra = {{"XFOO", "bar"}, {"XBAR", std::nullopt}};
    EXPECT_EQ(cmd::mail(MailVerb::mail, "a@b", p),
              "MAIL FROM:<a@b> SIZE=1234 RET=HDRS BODY=8BITMIME SMTPUTF8 TRANSID=<t@h> "
              "ENVID=QQ314159 XFOO=bar XBAR\r\n");
    EXPECT_EQ(cmd::mail(MailVerb::send, "", p),
              "SEND FROM:<> SIZE=1234 RET=HDRS BODY=8BITMIME SMTPUTF8 TRANSID=<t@h> "
              "ENVID=QQ314159 XFOO=bar XBAR\r\n");
    // Some of them, still in that order.
    MailParams q;
    q.envid = "x";
    q.size = 7;
    q.ret = Ret::full;
    EXPECT_EQ(cmd::mail(MailVerb::mail, "a@b", q), "MAIL FROM:<a@b> SIZE=7 RET=FULL ENVID=x\r\n");
}

TEST(CommandBytes, RcptTo) {
    EXPECT_EQ(cmd::rcpt("a@b"), "RCPT TO:<a@b>\r\n");
    EXPECT_EQ(cmd::rcpt("<a@b>"), "RCPT TO:<a@b>\r\n");
    EXPECT_EQ(cmd::rcpt("postmaster"), "RCPT TO:<postmaster>\r\n");
    EXPECT_EQ(cmd::rcpt("<@relay.example:a@b>"), "RCPT TO:<@relay.example:a@b>\r\n");
}

TEST(CommandBytes, RcptParams) {
    struct Row {
        const char* name;
        std::function<void(RcptParams&)> set;
        std::string suffix;
    };
    const std::vector<Row> rows = {
        {"never", [](RcptParams& p) { p.notify = lmtp::notify_never; }, " NOTIFY=NEVER"},
        {"success", [](RcptParams& p) { p.notify = lmtp::notify_success; }, " NOTIFY=SUCCESS"},
        {"failure", [](RcptParams& p) { p.notify = lmtp::notify_failure; }, " NOTIFY=FAILURE"},
        {"delay", [](RcptParams& p) { p.notify = lmtp::notify_delay; }, " NOTIFY=DELAY"},
        {"all_three",
         [](RcptParams& p) {
             p.notify = lmtp::notify_success | lmtp::notify_failure | lmtp::notify_delay;
         },
         " NOTIFY=SUCCESS,FAILURE,DELAY"},
        {"failure_delay",
         [](RcptParams& p) { p.notify = lmtp::notify_failure | lmtp::notify_delay; },
         " NOTIFY=FAILURE,DELAY"},
        {"success_delay",
         [](RcptParams& p) { p.notify = lmtp::notify_delay | lmtp::notify_success; },
         " NOTIFY=SUCCESS,DELAY"},
        {"orcpt", [](RcptParams& p) { p.orcpt = "a@b"; }, " ORCPT=rfc822;a@b"},
        {"orcpt_xtext", [](RcptParams& p) { p.orcpt = "a+b=c d@e"; },
         " ORCPT=rfc822;a+2Bb+3Dc+20d@e"},
        {"orcpt_type",
         [](RcptParams& p) {
             p.orcpt = "x@y";
             p.orcpt_type = "RFC822";
         },
         " ORCPT=RFC822;x@y"},
        {"extra", [](RcptParams& p) { p.extra = {{"XFOO", "1"}, {"XBAR", std::nullopt}}; },
         " XFOO=1 XBAR"},
        {"all",
         [](RcptParams& p) {
             p.extra = {{"XFOO", "1"}};
             p.orcpt = "x@y";
             p.notify = lmtp::notify_success | lmtp::notify_failure;
         },
         " NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x@y XFOO=1"},
    };
    for (const Row& r : rows) {
        SCOPED_TRACE(r.name);
        RcptParams p;
        r.set(p);
        EXPECT_EQ(show(cmd::rcpt("a@b", p)), show("RCPT TO:<a@b>" + r.suffix + "\r\n"));
    }
}

TEST(CommandBytes, NotifyNeverWithOthersIsBadInput) {
    for (unsigned other : {unsigned(lmtp::notify_success), unsigned(lmtp::notify_failure),
                           unsigned(lmtp::notify_delay),
                           unsigned(lmtp::notify_success | lmtp::notify_failure |
                                    lmtp::notify_delay)}) {
        SCOPED_TRACE(other);
        RcptParams p;
        p.notify = lmtp::notify_never | other;
        EXPECT_BAD_INPUT(cmd::rcpt("a@b", p));
    }
}

TEST(CommandBytes, CommandVerb) {
    EXPECT_EQ(lmtp::command_verb("rcpt to:<a>"), "RCPT");
    EXPECT_EQ(lmtp::command_verb("RCPT TO:<a@b>\r\n"), "RCPT");
    EXPECT_EQ(lmtp::command_verb("MAIL FROM:<a@b> SIZE=1"), "MAIL");
    EXPECT_EQ(lmtp::command_verb("lhlo host\r\n"), "LHLO");
    EXPECT_EQ(lmtp::command_verb("DATA\r\n"), "DATA");
    EXPECT_EQ(lmtp::command_verb("quit"), "QUIT");
    EXPECT_EQ(lmtp::command_verb("Bdat 12 LAST\r\n"), "BDAT");
    EXPECT_EQ(lmtp::command_verb("xclient name=x"), "XCLIENT");
    EXPECT_EQ(lmtp::command_verb(""), "");
    // Round trip with the formatter.
    EXPECT_EQ(lmtp::command_verb(cmd::mail(MailVerb::saml, "a@b")), "SAML");
    EXPECT_EQ(lmtp::command_verb(cmd::help("x")), "HELP");
    EXPECT_EQ(lmtp::command_verb(cmd::bdat(5, true)), "BDAT");
}

// ---------------------------------------------------------------------------
// xtext (RFC 3461 4.)

TEST(Xtext, Encode) {
    EXPECT_EQ(lmtp::xtext_encode(""), "");
    EXPECT_EQ(lmtp::xtext_encode("abc"), "abc");
    EXPECT_EQ(lmtp::xtext_encode("a+b=c d"), "a+2Bb+3Dc+20d");
    EXPECT_EQ(lmtp::xtext_encode("+"), "+2B");
    EXPECT_EQ(lmtp::xtext_encode("="), "+3D");
    EXPECT_EQ(lmtp::xtext_encode(" "), "+20");
    EXPECT_EQ(lmtp::xtext_encode("!~"), "!~");  // 33 and 126 are kept
    EXPECT_EQ(lmtp::xtext_encode("\x7f"), "+7F");
    EXPECT_EQ(lmtp::xtext_encode("\r\n"), "+0D+0A");
    EXPECT_EQ(lmtp::xtext_encode("\0"s), "+00");
    EXPECT_EQ(lmtp::xtext_encode("caf\xC3\xA9"), "caf+C3+A9");
    EXPECT_EQ(lmtp::xtext_encode("\xff"), "+FF");
    EXPECT_EQ(lmtp::xtext_encode("<a@b>"), "<a@b>");
}

TEST(Xtext, EveryByteEncodesAndRoundTrips) {
    for (int i = 0; i < 256; ++i) {
        const std::string raw(1, static_cast<char>(i));
        const std::string enc = lmtp::xtext_encode(raw);
        const bool kept = i >= 33 && i <= 126 && i != '+' && i != '=';
        if (kept) {
            EXPECT_EQ(enc, raw) << i;
        } else {
            char buf[8];
            std::snprintf(buf, sizeof buf, "+%02X", i);
            EXPECT_EQ(enc, buf) << i;
        }
        EXPECT_EQ(lmtp::xtext_decode(enc), raw) << i;
    }
    std::string all;
    for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
    const std::string enc = lmtp::xtext_encode(all);
    for (char c : enc) {
        auto u = static_cast<unsigned char>(c);
        EXPECT_TRUE(u >= 33 && u <= 126 && u != '=') << int(u);
    }
    EXPECT_EQ(lmtp::xtext_decode(enc), all);
}

TEST(Xtext, RandomRoundTrip) {
    std::mt19937 rng(20330);
    for (int n = 0; n < 500; ++n) {
        std::string s(rng() % 40, '\0');
        for (char& c : s) c = static_cast<char>(rng() % 256);
        EXPECT_EQ(lmtp::xtext_decode(lmtp::xtext_encode(s)), s);
    }
}

TEST(Xtext, Decode) {
    EXPECT_EQ(lmtp::xtext_decode(""), "");
    EXPECT_EQ(lmtp::xtext_decode("abc"), "abc");
    EXPECT_EQ(lmtp::xtext_decode("a+2Bb+3Dc+20d"), "a+b=c d");
    EXPECT_EQ(lmtp::xtext_decode("+00"), "\0"s);
    EXPECT_EQ(lmtp::xtext_decode("caf+C3+A9"), "caf\xC3\xA9");
}

TEST(Xtext, BadDecodeThrows) {
    for (const char* bad : {"+", "+2", "a+", "a+2", "+G0", "+0G", "+ 1", "+-1", "x+zz"}) {
        SCOPED_TRACE(bad);
        EXPECT_BAD_INPUT(lmtp::xtext_decode(bad));
    }
}

// ---------------------------------------------------------------------------
// required_extensions

using Needs = std::vector<std::pair<std::string, std::string>>;

Needs sorted(Needs v) {
    std::sort(v.begin(), v.end());
    return v;
}

TEST(RequiredExtensions, Mail) {
    EXPECT_TRUE(lmtp::required_extensions(MailParams{}).empty());
    struct Row {
        const char* name;
        std::function<void(MailParams&)> set;
        Needs needs;
    };
    const std::vector<Row> rows = {
        {"size", [](MailParams& p) { p.size = 1; }, {{"SIZE", "SIZE"}}},
        {"size_zero", [](MailParams& p) { p.size = 0; }, {{"SIZE", "SIZE"}}},
        {"body_7bit", [](MailParams& p) { p.body = BodyType::seven_bit; },
         {{"8BITMIME", "BODY"}}},
        {"body_8bit", [](MailParams& p) { p.body = BodyType::eight_bit_mime; },
         {{"8BITMIME", "BODY"}}},
        {"body_binary", [](MailParams& p) { p.body = BodyType::binary_mime; },
         {{"BINARYMIME", "BODY"}}},
        {"smtputf8", [](MailParams& p) { p.smtputf8 = true; }, {{"SMTPUTF8", "SMTPUTF8"}}},
        {"ret", [](MailParams& p) { p.ret = Ret::full; }, {{"DSN", "RET"}}},
        {"envid", [](MailParams& p) { p.envid = "x"; }, {{"DSN", "ENVID"}}},
        {"transid", [](MailParams& p) { p.transid = "t@h"; }, {{"CHECKPOINT", "TRANSID"}}},
        {"extra", [](MailParams& p) { p.extra = {{"XFOO", "1"}}; }, {{"XFOO", "XFOO"}}},
        {"extra_no_value", [](MailParams& p) { p.extra = {{"XBAR", std::nullopt}}; },
         {{"XBAR", "XBAR"}}},
    };
    for (const Row& r : rows) {
        SCOPED_TRACE(r.name);
        MailParams p;
        r.set(p);
        EXPECT_EQ(lmtp::required_extensions(p), r.needs);
    }
    MailParams all;
    all.size = 5;
    all.body = BodyType::eight_bit_mime;
    all.smtputf8 = true;
    all.ret = Ret::hdrs;
    all.envid = "e";
    all.transid = "t@h";
    all.extra = {{"XFOO", "1"}};
    EXPECT_EQ(sorted(lmtp::required_extensions(all)),
              sorted({{"SIZE", "SIZE"},
                      {"8BITMIME", "BODY"},
                      {"SMTPUTF8", "SMTPUTF8"},
                      {"DSN", "RET"},
                      {"DSN", "ENVID"},
                      {"CHECKPOINT", "TRANSID"},
                      {"XFOO", "XFOO"}}));
}

TEST(RequiredExtensions, Rcpt) {
    EXPECT_TRUE(lmtp::required_extensions(RcptParams{}).empty());
    RcptParams n;
    n.notify = lmtp::notify_never;
    EXPECT_EQ(lmtp::required_extensions(n), (Needs{{"DSN", "NOTIFY"}}));
    RcptParams o;
    o.orcpt = "a@b";
    EXPECT_EQ(lmtp::required_extensions(o), (Needs{{"DSN", "ORCPT"}}));
    RcptParams x;
    x.extra = {{"XRCPTFOO", "v"}};
    EXPECT_EQ(lmtp::required_extensions(x), (Needs{{"XRCPTFOO", "XRCPTFOO"}}));
    RcptParams all;
    all.notify = lmtp::notify_success | lmtp::notify_failure;
    all.orcpt = "a@b";
    all.extra = {{"XA", std::nullopt}};
    EXPECT_EQ(sorted(lmtp::required_extensions(all)),
              sorted({{"DSN", "NOTIFY"}, {"DSN", "ORCPT"}, {"XA", "XA"}}));
}

// ---------------------------------------------------------------------------
// Injection: no caller string adds a line or a NUL to the protocol.

TEST(CommandInjection, Addresses) {
    for (const std::string& s : poisoned("user@example.org")) {
        SCOPED_TRACE(show(s));
        EXPECT_BAD_INPUT(cmd::mail(MailVerb::mail, s));
        EXPECT_BAD_INPUT(cmd::mail(MailVerb::send, s));
        EXPECT_BAD_INPUT(cmd::mail(MailVerb::soml, s));
        EXPECT_BAD_INPUT(cmd::mail(MailVerb::saml, s));
        EXPECT_BAD_INPUT(cmd::rcpt(s));
        EXPECT_BAD_INPUT(cmd::mail(MailVerb::mail, "<" + s + ">"));
        EXPECT_BAD_INPUT(cmd::rcpt("<" + s + ">"));
    }
    // An address that closes the path early would smuggle in parameters.
    EXPECT_BAD_INPUT(cmd::rcpt("a@b> NOTIFY=NEVER"));
    EXPECT_BAD_INPUT(cmd::mail(MailVerb::mail, "a@b> SIZE=1"));
    EXPECT_BAD_INPUT(cmd::mail(MailVerb::mail, "<a@b> SIZE=1>"));
    // ... but '<' and '>' inside a quoted local part are data.
    EXPECT_EQ(cmd::rcpt("\"a>b\"@c"), "RCPT TO:<\"a>b\"@c>\r\n");
    // The classic: smuggling a second command.
    EXPECT_BAD_INPUT(cmd::rcpt("a@b>\r\nRCPT TO:<evil@x"));
    EXPECT_BAD_INPUT(cmd::mail(MailVerb::mail, "a@b>\r\nDATA\r\n"));
}

TEST(CommandInjection, Arguments) {
    for (const std::string& s : poisoned("client.example")) {
        SCOPED_TRACE(show(s));
        EXPECT_BAD_INPUT(cmd::lhlo(s));
        EXPECT_BAD_INPUT(cmd::verify(s));
        EXPECT_BAD_INPUT(cmd::expand(s));
        EXPECT_BAD_INPUT(cmd::help(s));
        EXPECT_BAD_INPUT(cmd::etrn(s));
        EXPECT_BAD_INPUT(cmd::raw(s));
        EXPECT_BAD_INPUT(cmd::raw("NOOP " + s));
    }
    EXPECT_BAD_INPUT(cmd::raw("NOOP\r\n"));
    EXPECT_BAD_INPUT(cmd::raw("NOOP\r\nQUIT"));
    EXPECT_BAD_INPUT(cmd::raw("NOOP\n"));
}

TEST(CommandInjection, DsnAndTransidValues) {
    for (const std::string& s : poisoned("id-123")) {
        SCOPED_TRACE(show(s));
        MailParams e;
        e.envid = s;
        EXPECT_BAD_INPUT(cmd::mail(MailVerb::mail, "a@b", e));
        MailParams t;
        t.transid = s;
        EXPECT_BAD_INPUT(cmd::mail(MailVerb::mail, "a@b", t));
        RcptParams o;
        o.orcpt = s;
        EXPECT_BAD_INPUT(cmd::rcpt("a@b", o));
        RcptParams ot;
        ot.orcpt = "a@b";
        ot.orcpt_type = s;
        EXPECT_BAD_INPUT(cmd::rcpt("a@b", ot));
    }
}

TEST(CommandInjection, ExtraParams) {
    auto mail_with = [](Param p) {
        MailParams m;
        m.extra = {std::move(p)};
        return cmd::mail(MailVerb::mail, "a@b", m);
    };
    auto rcpt_with = [](Param p) {
        RcptParams r;
        r.extra = {std::move(p)};
        return cmd::rcpt("a@b", r);
    };
    for (const std::string& s : poisoned("XFOO")) {
        SCOPED_TRACE("keyword " + show(s));
        EXPECT_BAD_INPUT(mail_with({s, "v"}));
        EXPECT_BAD_INPUT(mail_with({s, std::nullopt}));
        EXPECT_BAD_INPUT(rcpt_with({s, "v"}));
    }
    for (const std::string& s : poisoned("value")) {
        SCOPED_TRACE("value " + show(s));
        EXPECT_BAD_INPUT(mail_with({"XFOO", s}));
        EXPECT_BAD_INPUT(rcpt_with({"XFOO", s}));
    }
    // RFC 5321 4.1.2: esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-"),
    // esmtp-value = 1*(%d33-60 / %d62-126 / UTF8-non-ascii): no space, no "=".
    EXPECT_BAD_INPUT(mail_with({"X FOO", "v"}));
    EXPECT_BAD_INPUT(mail_with({"XFOO", "a b"}));
    EXPECT_BAD_INPUT(mail_with({"XFOO", "a=b"}));
    EXPECT_BAD_INPUT(mail_with({"XFOO=1", std::nullopt}));
    EXPECT_BAD_INPUT(mail_with({"XFOO=1 SIZE", "2"}));
    EXPECT_BAD_INPUT(rcpt_with({"X FOO", "v"}));
    EXPECT_BAD_INPUT(rcpt_with({"XFOO", "a b"}));
    EXPECT_BAD_INPUT(rcpt_with({"XFOO", "a=b"}));
    EXPECT_BAD_INPUT(rcpt_with({"X:FOO", "v"}));
    // An empty keyword is no parameter at all.
    try {
        mail_with({"", "v"});
        ADD_FAILURE() << "empty keyword accepted";
    } catch (const lmtp::Error& e) {
        EXPECT_TRUE(e.status() == Status::bad_input || e.status() == Status::invalid_argument)
            << static_cast<int>(e.status());
    }
}

TEST(CommandInjection, ErrorMessagesAreOneLine) {
    // The message may quote the input, but never with a raw line break.
    try {
        cmd::rcpt("a\r\nb@c");
        FAIL() << "no throw";
    } catch (const lmtp::Error& e) {
        std::string w = e.what();
        EXPECT_FALSE(w.empty());
        EXPECT_EQ(w.find_first_of("\r\n"s + '\0'), std::string::npos) << show(w);
    }
}

// Whatever random bytes a caller passes, a formatted line has exactly one
// line end, at its end, and no NUL; or the call throws lmtp::Error.
TEST(CommandInjection, RandomStringsNeverAddALine) {
    std::mt19937 rng(3461);
    const std::string alphabet = "ab@.<>:+= -\r\n\0\x01\x7f\xC3\xA9"s;
    auto random_string = [&] {
        std::string s(rng() % 12, 'x');
        for (char& c : s) c = alphabet[rng() % alphabet.size()];
        return s;
    };
    auto check = [](const std::string& line) {
        ASSERT_GE(line.size(), 2u);
        EXPECT_EQ(line.substr(line.size() - 2), "\r\n");
        EXPECT_EQ(line.find_first_of("\r\n"s + '\0'), line.size() - 2) << show(line);
    };
    int formatted = 0;
    for (int n = 0; n < 3000; ++n) {
        std::string s = random_string();
        std::vector<std::function<std::string()>> calls = {
            [&] { return cmd::lhlo(s); },
            [&] { return cmd::mail(MailVerb::mail, s); },
            [&] { return cmd::rcpt(s); },
            [&] { return cmd::verify(s); },
            [&] { return cmd::expand(s); },
            [&] { return cmd::help(s); },
            [&] { return cmd::etrn(s); },
            [&] { return cmd::raw("X" + s); },
            [&] {
                MailParams p;
                p.envid = s;
                p.transid = s;
                return cmd::mail(MailVerb::mail, "a@b", p);
            },
            [&] {
                MailParams p;
                p.extra = {{"X" + s, s}};
                return cmd::mail(MailVerb::mail, "a@b", p);
            },
            [&] {
                RcptParams p;
                p.orcpt = s;
                p.extra = {{"XA", s}};
                return cmd::rcpt("a@b", p);
            },
        };
        for (auto& call : calls) {
            try {
                check(call());
                ++formatted;
            } catch (const lmtp::Error& e) {
                EXPECT_TRUE(e.status() == Status::bad_input ||
                            e.status() == Status::invalid_argument ||
                            e.status() == Status::line_too_long)
                    << static_cast<int>(e.status());
            }
        }
    }
    EXPECT_GT(formatted, 1000);  // the test did exercise the formatter
}

// ---------------------------------------------------------------------------
// Line length. RFC 5321 4.5.3.1.4: 512 octets with CRLF; the extensions'
// allowances are added to it for the lines that carry their parameters.

// An address of `n` octets.
std::string addr_of(std::size_t n) {
    std::string a = "@example.org";
    return std::string(n - a.size(), 'u') + a;
}

// Builds "prefix<addr>suffix\r\n" of exactly `total` octets.
std::string exact_line(const std::string& prefix, const std::string& suffix, std::size_t total,
                       std::string* addr_out) {
    const std::size_t fixed = prefix.size() + 2 + suffix.size() + 2;
    *addr_out = addr_of(total - fixed);
    std::string line = prefix + "<" + *addr_out + ">" + suffix + "\r\n";
    EXPECT_EQ(line.size(), total);
    return line;
}

TEST(CommandLength, RawBoundary) {
    const std::string l510(510, 'x');
    EXPECT_EQ(cmd::raw(l510).size(), 512u);
    EXPECT_EQ(cmd::raw(l510), l510 + "\r\n");
    EXPECT_TOO_LONG(cmd::raw(std::string(511, 'x')));
    EXPECT_TOO_LONG(cmd::raw(std::string(100000, 'x')));
    // A custom limit.
    EXPECT_EQ(cmd::raw(std::string(98, 'x'), 100).size(), 100u);
    EXPECT_TOO_LONG(cmd::raw(std::string(99, 'x'), 100));
    EXPECT_EQ(cmd::raw(std::string(998, 'x'), 1000).size(), 1000u);
    EXPECT_TOO_LONG(cmd::raw(std::string(999, 'x'), 1000));
}

TEST(CommandLength, RcptBoundary) {
    std::string addr;
    std::string line = exact_line("RCPT TO:", "", 512, &addr);
    EXPECT_EQ(cmd::rcpt(addr), line);
    exact_line("RCPT TO:", "", 513, &addr);
    EXPECT_TOO_LONG(cmd::rcpt(addr));
    // Custom limit.
    line = exact_line("RCPT TO:", "", 100, &addr);
    EXPECT_EQ(cmd::rcpt(addr, {}, 100), line);
    exact_line("RCPT TO:", "", 101, &addr);
    EXPECT_TOO_LONG(cmd::rcpt(addr, {}, 100));
    // Extra parameters bring no allowance.
    RcptParams x;
    x.extra = {{"XFOO", "bar"}};
    line = exact_line("RCPT TO:", " XFOO=bar", 512, &addr);
    EXPECT_EQ(cmd::rcpt(addr, x), line);
    exact_line("RCPT TO:", " XFOO=bar", 513, &addr);
    EXPECT_TOO_LONG(cmd::rcpt(addr, x));
}

TEST(CommandLength, RcptDsnAllowance) {
    // NOTIFY and ORCPT together raise the RCPT line by 500 (RFC 3461 4.):
    // 1012 octets with the default limit.
    RcptParams o;
    o.orcpt = "o@x";
    const std::string os = " ORCPT=rfc822;o@x";
    std::string addr;
    for (std::size_t total : {std::size_t(513), std::size_t(700), std::size_t(1012)}) {
        SCOPED_TRACE(total);
        std::string line = exact_line("RCPT TO:", os, total, &addr);
        EXPECT_EQ(cmd::rcpt(addr, o), line);
    }
    exact_line("RCPT TO:", os, 1013, &addr);
    EXPECT_TOO_LONG(cmd::rcpt(addr, o));

    RcptParams n;
    n.notify = lmtp::notify_never;
    std::string line = exact_line("RCPT TO:", " NOTIFY=NEVER", 1012, &addr);
    EXPECT_EQ(cmd::rcpt(addr, n), line);
    exact_line("RCPT TO:", " NOTIFY=NEVER", 1013, &addr);
    EXPECT_TOO_LONG(cmd::rcpt(addr, n));

    // Both: still +500, not +1000.
    RcptParams b;
    b.notify = lmtp::notify_failure;
    b.orcpt = "o@x";
    const std::string bs = " NOTIFY=FAILURE ORCPT=rfc822;o@x";
    line = exact_line("RCPT TO:", bs, 1012, &addr);
    EXPECT_EQ(cmd::rcpt(addr, b), line);
    exact_line("RCPT TO:", bs, 1013, &addr);
    EXPECT_TOO_LONG(cmd::rcpt(addr, b));

    // The allowance is added to a custom base limit.
    line = exact_line("RCPT TO:", os, 600, &addr);
    EXPECT_EQ(cmd::rcpt(addr, o, 100), line);
    exact_line("RCPT TO:", os, 601, &addr);
    EXPECT_TOO_LONG(cmd::rcpt(addr, o, 100));

    // A long ORCPT value counts in its xtext form: 400 spaces are 1200
    // octets on the wire. Refused either as too long a line or, since RFC
    // 3461 also bounds ORCPT itself to 500 characters, as bad input.
    RcptParams big;
    big.orcpt = std::string(400, ' ');
    try {
        (void)cmd::rcpt("a@b", big);
        ADD_FAILURE() << "a 1200-octet ORCPT was accepted";
    } catch (const lmtp::Error& e) {
        EXPECT_TRUE(e.status() == Status::line_too_long || e.status() == Status::bad_input)
            << static_cast<int>(e.status()) << " " << e.what();
    }
    big.orcpt = std::string(400, 'o');
    EXPECT_NO_THROW(cmd::rcpt("a@b", big));
}

TEST(CommandLength, MailBoundaries) {
    struct Row {
        const char* name;
        std::function<void(MailParams&)> set;
        std::string suffix;
        std::size_t limit;
    };
    const std::vector<Row> rows = {
        {"none", [](MailParams&) {}, "", 512},
        {"size", [](MailParams& p) { p.size = 1234; }, " SIZE=1234", 512 + 26},
        {"body", [](MailParams& p) { p.body = BodyType::eight_bit_mime; }, " BODY=8BITMIME",
         512},
        {"smtputf8", [](MailParams& p) { p.smtputf8 = true; }, " SMTPUTF8", 512 + 10},
        {"ret", [](MailParams& p) { p.ret = Ret::full; }, " RET=FULL", 512 + 100},
        {"envid", [](MailParams& p) { p.envid = "E1"; }, " ENVID=E1", 512 + 100},
        {"ret_envid",
         [](MailParams& p) {
             p.ret = Ret::hdrs;
             p.envid = "E1";
         },
         " RET=HDRS ENVID=E1", 512 + 100},
        {"size_ret_envid_utf8",
         [](MailParams& p) {
             p.size = 1;
             p.smtputf8 = true;
             p.ret = Ret::hdrs;
             p.envid = "E1";
         },
         " SIZE=1 RET=HDRS SMTPUTF8 ENVID=E1", 512 + 26 + 10 + 100},
        {"extra", [](MailParams& p) { p.extra = {{"XFOO", "1"}}; }, " XFOO=1", 512},
    };
    for (const Row& r : rows) {
        SCOPED_TRACE(r.name);
        MailParams p;
        r.set(p);
        std::string addr;
        std::string line = exact_line("MAIL FROM:", r.suffix, r.limit, &addr);
        EXPECT_EQ(cmd::mail(MailVerb::mail, addr, p), line);
        exact_line("MAIL FROM:", r.suffix, r.limit + 1, &addr);
        EXPECT_TOO_LONG(cmd::mail(MailVerb::mail, addr, p));
        // The same allowances on top of a custom limit.
        const std::size_t custom = r.limit - 512 + 200;
        line = exact_line("MAIL FROM:", r.suffix, custom, &addr);
        EXPECT_EQ(cmd::mail(MailVerb::mail, addr, p, 200), line);
        exact_line("MAIL FROM:", r.suffix, custom + 1, &addr);
        EXPECT_TOO_LONG(cmd::mail(MailVerb::mail, addr, p, 200));
    }
}

TEST(CommandLength, ArgumentCommands) {
    struct Row {
        const char* verb;
        std::function<std::string(std::string_view, std::size_t)> f;
    };
    const std::vector<Row> rows = {
        {"LHLO", [](std::string_view a, std::size_t m) { return cmd::lhlo(a, m); }},
        {"VRFY", [](std::string_view a, std::size_t m) { return cmd::verify(a, m); }},
        {"EXPN", [](std::string_view a, std::size_t m) { return cmd::expand(a, m); }},
        {"HELP", [](std::string_view a, std::size_t m) { return cmd::help(a, m); }},
        {"ETRN", [](std::string_view a, std::size_t m) { return cmd::etrn(a, m); }},
    };
    for (const Row& r : rows) {
        SCOPED_TRACE(r.verb);
        for (std::size_t limit : {std::size_t(512), std::size_t(64), std::size_t(2000)}) {
            SCOPED_TRACE(limit);
            // "VERB " + arg + CRLF
            const std::string arg(limit - 7, 'a');
            EXPECT_EQ(r.f(arg, limit), std::string(r.verb) + " " + arg + "\r\n");
            EXPECT_TOO_LONG(r.f(arg + "a", limit));
        }
    }
}

}  // namespace
