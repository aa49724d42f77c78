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

#include "lmtp/capabilities.hpp"
#include "lmtp/reply.hpp"
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

// ---------------------------------------------------------------------------
// Parameters as written on the wire: parse_mail_params, parse_rcpt_params

MailParams mail_with(const std::function<void(MailParams&)>& set) {
    MailParams p;
    set(p);
    return p;
}

RcptParams rcpt_with(const std::function<void(RcptParams&)>& set) {
    RcptParams p;
    set(p);
    return p;
}

// Runs `f`, which must throw Error(bad_input) with `part` in its message.
::testing::AssertionResult refused_with(const std::function<void()>& f, const std::string& part) {
    try {
        f();
    } catch (const lmtp::Error& e) {
        if (e.status() != Status::bad_input)
            return ::testing::AssertionFailure() << "status " << status_str(e.status()) << ": " << e.what();
        if (std::string(e.what()).find(part) == std::string::npos)
            return ::testing::AssertionFailure() << "message '" << e.what() << "' lacks '" << part << "'";
        if (std::string(e.what()).find_first_of("\r\n") != std::string::npos)
            return ::testing::AssertionFailure() << "message has a line break: " << show(e.what());
        return ::testing::AssertionSuccess();
    } catch (...) {
        return ::testing::AssertionFailure() << "threw something else";
    }
    return ::testing::AssertionFailure() << "did not throw";
}

TEST(ParseParams, Mail) {
    struct Row {
        const char* wire;
        MailParams want;
    };
    const std::vector<Row> rows = {
        {"", {}},
        {"   ", {}},
        {"SIZE=1234", mail_with([](MailParams& p) { p.size = 1234; })},
        {"size=0", mail_with([](MailParams& p) { p.size = 0; })},
        {"SIZE=18446744073709551615", mail_with([](MailParams& p) { p.size = 18446744073709551615ull; })},
        {"BODY=7BIT", mail_with([](MailParams& p) { p.body = BodyType::seven_bit; })},
        {"body=8bitmime", mail_with([](MailParams& p) { p.body = BodyType::eight_bit_mime; })},
        {"BODY=BinaryMime", mail_with([](MailParams& p) { p.body = BodyType::binary_mime; })},
        {"SMTPUTF8", mail_with([](MailParams& p) { p.smtputf8 = true; })},
        {"RET=FULL", mail_with([](MailParams& p) { p.ret = Ret::full; })},
        {"ret=hdrs", mail_with([](MailParams& p) { p.ret = Ret::hdrs; })},
        {"ENVID=QQ314159", mail_with([](MailParams& p) { p.envid = "QQ314159"; })},
        {"ENVID=a+2Bb+3Dc+20d", mail_with([](MailParams& p) { p.envid = "a+b=c d"; })},
        {"ENVID=caf+c3+a9", mail_with([](MailParams& p) { p.envid = "caf\xC3\xA9"; })},
        {"TRANSID=<t@h>", mail_with([](MailParams& p) { p.transid = "t@h"; })},
        {"TRANSID=t@h", mail_with([](MailParams& p) { p.transid = "t@h"; })},
        {"XFOO=bar", mail_with([](MailParams& p) {
             p.extra = {{"XFOO", "bar"}};
         })},
        {"x-foo", mail_with([](MailParams& p) {
             p.extra = {{"x-foo", std::nullopt}};
         })},
        {"AUTH=<>", mail_with([](MailParams& p) {
             p.extra = {{"AUTH", "<>"}};
         })},
        {"XU=caf\xC3\xA9", mail_with([](MailParams& p) {
             p.extra = {{"XU", "caf\xC3\xA9"}};
         })},
        {"SIZE=1 SIZE=2", mail_with([](MailParams& p) { p.size = 2; })},
        {"  SIZE=5   BODY=8BITMIME  ", mail_with([](MailParams& p) {
             p.size = 5;
             p.body = BodyType::eight_bit_mime;
         })},
        {"XB=2 SIZE=7 XA RET=HDRS X-C=3 SMTPUTF8 ENVID=e TRANSID=<t@h> BODY=7BIT", mail_with([](MailParams& p) {
             p.size = 7;
             p.ret = Ret::hdrs;
             p.smtputf8 = true;
             p.envid = "e";
             p.transid = "t@h";
             p.body = BodyType::seven_bit;
             p.extra = {{"XB", "2"}, {"XA", std::nullopt}, {"X-C", "3"}};
         })},
        // NOTIFY and ORCPT belong to RCPT: here they are other parameters.
        {"NOTIFY=NEVER", mail_with([](MailParams& p) {
             p.extra = {{"NOTIFY", "NEVER"}};
         })},
    };
    for (const Row& r : rows) {
        SCOPED_TRACE(show(r.wire));
        EXPECT_TRUE(lmtp::parse_mail_params(r.wire) == r.want);
    }
}

TEST(ParseParams, MailErrors) {
    struct Row {
        std::string wire;
        std::string says;  // part of the message
    };
    const std::vector<Row> rows = {
        {"SIZE", "SIZE needs a value"},
        {"SIZE=", "SIZE is empty"},
        {"SIZE=12a", "'SIZE=12a': the size is not a number"},
        {"SIZE=-1", "not a number"},
        {"SIZE=18446744073709551616", "does not fit in 64 bits"},
        {"SIZE=99999999999999999999999", "does not fit in 64 bits"},
        {"BODY=9BIT", "'BODY=9BIT': the body type is not 7BIT, 8BITMIME or BINARYMIME"},
        {"BODY", "BODY needs a value"},
        {"SMTPUTF8=yes", "SMTPUTF8 takes no value"},
        {"RET=BODY", "RET is FULL or HDRS"},
        {"ENVID", "ENVID needs a value"},
        {"ENVID=a+2", "'+XX'"},
        {"ENVID=a+ZZb", "malformed '+XX' escape"},
        {"ENVID=caf\xC3\xA9", "not xtext"},
        {"ENVID=a+0Ab", "line feed"},
        {"TRANSID=<a<b>", "outside a quoted string"},
        {"XKEY=a=b", "contains '='"},
        {"=x", "not a valid keyword"},
        {"X_KEY=1", "'X_KEY' is not a valid keyword"},
        {"SIZE=10\r\nRSET", "carriage return"},
        {"SIZE=10\nRSET", "line feed"},
        {std::string("X=a\0b", 5), "NUL"},
        {"SIZE=1\tBODY=7BIT", "control character 0x09"},
    };
    for (const Row& r : rows) {
        SCOPED_TRACE(show(r.wire));
        EXPECT_TRUE(refused_with([&] { lmtp::parse_mail_params(r.wire); }, r.says));
    }
    // The message names the word and the command.
    EXPECT_TRUE(refused_with([] { lmtp::parse_mail_params("SIZE=1 BODY=9BIT"); }, "MAIL FROM parameter 'BODY=9BIT'"));
}

TEST(ParseParams, Rcpt) {
    struct Row {
        const char* wire;
        RcptParams want;
    };
    const std::vector<Row> rows = {
        {"", {}},
        {"NOTIFY=NEVER", rcpt_with([](RcptParams& p) { p.notify = lmtp::notify_never; })},
        {"notify=success,failure,delay",
         rcpt_with([](RcptParams& p) { p.notify = lmtp::notify_success | lmtp::notify_failure | lmtp::notify_delay; })},
        {"NOTIFY=DELAY,Success",
         rcpt_with([](RcptParams& p) { p.notify = lmtp::notify_success | lmtp::notify_delay; })},
        {"NOTIFY=FAILURE,FAILURE", rcpt_with([](RcptParams& p) { p.notify = lmtp::notify_failure; })},
        {"ORCPT=rfc822;a@b", rcpt_with([](RcptParams& p) { p.orcpt = "a@b"; })},
        {"ORCPT=RFC822;a+2Bb+3Dc+20d@e", rcpt_with([](RcptParams& p) {
             p.orcpt = "a+b=c d@e";
             p.orcpt_type = "RFC822";
         })},
        {"ORCPT=utf-8;x;y", rcpt_with([](RcptParams& p) {
             p.orcpt = "x;y";
             p.orcpt_type = "utf-8";
         })},
        {"XFOO=1 XBAR", rcpt_with([](RcptParams& p) {
             p.extra = {{"XFOO", "1"}, {"XBAR", std::nullopt}};
         })},
        {"NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x@y XFOO=1", rcpt_with([](RcptParams& p) {
             p.notify = lmtp::notify_success | lmtp::notify_failure;
             p.orcpt = "x@y";
             p.extra = {{"XFOO", "1"}};
         })},
        // SIZE belongs to MAIL: here it is another parameter.
        {"SIZE=abc", rcpt_with([](RcptParams& p) {
             p.extra = {{"SIZE", "abc"}};
         })},
    };
    for (const Row& r : rows) {
        SCOPED_TRACE(show(r.wire));
        EXPECT_TRUE(lmtp::parse_rcpt_params(r.wire) == r.want);
    }
}

TEST(ParseParams, RcptErrors) {
    struct Row {
        std::string wire;
        std::string says;
    };
    const std::vector<Row> rows = {
        {"NOTIFY", "NOTIFY needs a value"},
        {"NOTIFY=SOMETIMES", "'SOMETIMES' is not a NOTIFY keyword"},
        {"NOTIFY=never,success", "NEVER cannot be combined"},
        {"NOTIFY=DELAY,NEVER", "NEVER cannot be combined"},
        {"NOTIFY=SUCCESS,,FAILURE", "an empty NOTIFY keyword"},
        {"NOTIFY=SUCCESS,", "an empty NOTIFY keyword"},
        {"ORCPT=a@b", "an address type, ';' and the address"},
        {"ORCPT=rfc822;", "an address type, ';' and the address"},
        {"ORCPT=;a@b", "the address type '' is not a valid keyword"},
        {"ORCPT=rfc822;a+4", "'+XX'"},
        {"ORCPT=rfc822;a+00b", "NUL"},
        {"NOTIFY=SUCCESS\r\nRSET", "carriage return"},
        {"X-B=1\n", "line feed"},
    };
    for (const Row& r : rows) {
        SCOPED_TRACE(show(r.wire));
        EXPECT_TRUE(refused_with([&] { lmtp::parse_rcpt_params(r.wire); }, r.says));
    }
    EXPECT_TRUE(
        refused_with([] { lmtp::parse_rcpt_params("NOTIFY=NEVER,DELAY"); }, "RCPT TO parameter 'NOTIFY=NEVER,DELAY'"));
}

TEST(ParseParams, WordsAloneKeepKnownKeywords) {
    EXPECT_TRUE(lmtp::parse_params("SIZE=abc XFLAG  BODY=x") ==
                (std::vector<Param>{{"SIZE", "abc"}, {"XFLAG", std::nullopt}, {"BODY", "x"}}));
    EXPECT_TRUE(lmtp::parse_params("").empty());
    EXPECT_TRUE(refused_with([] { lmtp::parse_params("XKEY="); }, "XKEY is empty"));
    EXPECT_TRUE(refused_with([] { lmtp::parse_params("XKEY=1\r"); }, "carriage return"));
}

// What cmd::mail / cmd::rcpt put after the address, without the CRLF.
std::string wire_of(const std::string& line, const std::string& head) {
    EXPECT_EQ(line.compare(0, head.size(), head), 0) << line;
    EXPECT_EQ(line.substr(line.size() - 2), "\r\n");
    return line.substr(head.size(), line.size() - head.size() - 2);
}

TEST(ParseParams, RoundTripThroughTheFormatter) {
    // parse(format(p)) == p for the command builder's own output.
    std::mt19937 rng(2033);
    auto raw_text = [&](std::size_t max) {
        std::string s(1 + rng() % max, 'x');
        for (char& c : s) c = static_cast<char>(0x20 + rng() % (0x100 - 0x20));
        for (char& c : s)
            if (c == '\x7f') c = '~';
        return s;
    };
    auto keyword = [&] {
        static const char chars[] = "ABCXYZabcxyz0123456789-";
        std::string k = "X";
        for (std::size_t i = rng() % 6; i > 0; --i) k += chars[rng() % (sizeof chars - 1)];
        return k;
    };
    auto value = [&] {
        std::string v(1 + rng() % 8, 'v');
        for (char& c : v) {
            c = static_cast<char>(33 + rng() % 94);
            if (c == '=') c = '+';
        }
        return v;
    };
    for (int round = 0; round < 500; ++round) {
        SCOPED_TRACE(round);
        MailParams m;
        if (rng() % 2) m.size = (static_cast<std::uint64_t>(rng()) << 32) | rng();
        m.body = static_cast<BodyType>(rng() % 4);
        m.smtputf8 = rng() % 2;
        m.ret = static_cast<Ret>(rng() % 3);
        if (rng() % 2) m.envid = raw_text(30);
        if (rng() % 3 == 0) m.transid = "t" + std::to_string(round) + "@h";
        for (std::size_t i = rng() % 3; i > 0; --i)
            m.extra.push_back({keyword(), rng() % 2 ? std::optional<std::string>(value()) : std::nullopt});
        const std::string line = cmd::mail(MailVerb::mail, "a@b", m, 4096);
        const std::string wire = wire_of(line, "MAIL FROM:<a@b>");
        EXPECT_TRUE(lmtp::parse_mail_params(wire) == m) << show(line);

        RcptParams r;
        static const unsigned notifies[] = {0, lmtp::notify_never, lmtp::notify_success, lmtp::notify_delay,
                                            lmtp::notify_success | lmtp::notify_failure | lmtp::notify_delay};
        r.notify = notifies[rng() % 5];
        if (rng() % 2) {
            r.orcpt = raw_text(40);
            if (rng() % 2) r.orcpt_type = "utf-8";
        }
        for (std::size_t i = rng() % 3; i > 0; --i)
            r.extra.push_back({keyword(), rng() % 2 ? std::optional<std::string>(value()) : std::nullopt});
        const std::string rline = cmd::rcpt("a@b", r, 4096);
        EXPECT_TRUE(lmtp::parse_rcpt_params(wire_of(rline, "RCPT TO:<a@b>")) == r) << show(rline);
    }
}

// ---------------------------------------------------------------------------
// unoffered: what a server cannot take

lmtp::Capabilities offering(std::vector<std::string> keywords) {
    lmtp::Reply r;
    r.code = 250;
    r.lines.push_back("lmtp.example");
    for (auto& k : keywords) r.lines.push_back(k);
    return lmtp::Capabilities::parse(r);
}

TEST(Unoffered, Mail) {
    const lmtp::Capabilities none = offering({});
    const lmtp::Capabilities all =
        offering({"SIZE 1000", "8BITMIME", "BINARYMIME", "CHUNKING", "SMTPUTF8", "DSN", "CHECKPOINT", "XFOO"});
    struct Row {
        const char* wire;
        Needs lacking;  // with nothing offered
    };
    const std::vector<Row> rows = {
        {"", {}},
        {"SIZE=1", {{"SIZE", "SIZE"}}},
        {"BODY=7BIT", {{"8BITMIME", "BODY"}}},
        {"BODY=8BITMIME", {{"8BITMIME", "BODY"}}},
        {"BODY=BINARYMIME", {{"BINARYMIME", "BODY"}, {"CHUNKING", "BODY"}}},
        {"SMTPUTF8", {{"SMTPUTF8", "SMTPUTF8"}}},
        {"RET=FULL ENVID=x", {{"DSN", "RET"}, {"DSN", "ENVID"}}},
        {"TRANSID=<t@h>", {{"CHECKPOINT", "TRANSID"}}},
        {"xfoo=1", {{"XFOO", "XFOO"}}},
    };
    for (const Row& r : rows) {
        SCOPED_TRACE(r.wire);
        const MailParams p = lmtp::parse_mail_params(r.wire);
        EXPECT_EQ(lmtp::unoffered(p, none), r.lacking);
        EXPECT_TRUE(lmtp::unoffered(p, all).empty());
    }
    // BINARYMIME alone is not enough: its message needs BDAT.
    EXPECT_EQ(lmtp::unoffered(lmtp::parse_mail_params("BODY=BINARYMIME"), offering({"BINARYMIME"})),
              (Needs{{"CHUNKING", "BODY"}}));
    EXPECT_EQ(lmtp::unoffered(lmtp::parse_mail_params("SIZE=1 BODY=BINARYMIME SMTPUTF8"), offering({"SIZE"})),
              (Needs{{"BINARYMIME", "BODY"}, {"CHUNKING", "BODY"}, {"SMTPUTF8", "SMTPUTF8"}}));
}

TEST(Unoffered, Rcpt) {
    const RcptParams p = lmtp::parse_rcpt_params("NOTIFY=NEVER ORCPT=rfc822;a@b XBAR");
    EXPECT_EQ(lmtp::unoffered(p, offering({})), (Needs{{"DSN", "NOTIFY"}, {"DSN", "ORCPT"}, {"XBAR", "XBAR"}}));
    EXPECT_EQ(lmtp::unoffered(p, offering({"dsn"})), (Needs{{"XBAR", "XBAR"}}));
    EXPECT_TRUE(lmtp::unoffered(p, offering({"DSN", "XBAR"})).empty());
}

}  // namespace
