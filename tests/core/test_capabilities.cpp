// Tests for the LHLO reply reader (lmtp/capabilities.hpp).
#include "lmtp/capabilities.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "lmtp/reply.hpp"

namespace {

using lmtp::Capabilities;
using lmtp::Reply;

Reply make_reply(std::vector<std::string> lines, int code = 250) {
    Reply r;
    r.code = code;
    r.lines = std::move(lines);
    return r;
}

// Parses the bytes of a whole reply with the real parser.
Reply parse_bytes(const std::string& bytes) {
    lmtp::ReplyParser p;
    std::size_t consumed = 0;
    auto res = p.feed(bytes, consumed);
    EXPECT_EQ(res, lmtp::ReplyParser::Result::reply) << p.error();
    EXPECT_EQ(consumed, bytes.size());
    return p.take();
}

std::vector<std::string> keywords(const Capabilities& c) {
    std::vector<std::string> out;
    for (const auto& e : c.entries()) out.push_back(e.keyword);
    return out;
}

TEST(Capabilities, DefaultIsEmpty) {
    Capabilities c;
    EXPECT_TRUE(c.empty());
    EXPECT_FALSE(c.has("SIZE"));
    EXPECT_FALSE(c.params("SIZE").has_value());
    EXPECT_EQ(c.size_limit(), 0u);
    EXPECT_TRUE(c.auth_mechanisms().empty());
    EXPECT_EQ(c.domain(), "");
    EXPECT_TRUE(c.entries().empty());
}

TEST(Capabilities, DovecotLhloReply) {
    // What Dovecot's LMTP server answers to LHLO.
    const std::string wire =
        "250-host\r\n250-8BITMIME\r\n250-CHUNKING\r\n250-ENHANCEDSTATUSCODES\r\n"
        "250-PIPELINING\r\n250 STARTTLS\r\n";
    Capabilities c = Capabilities::parse(parse_bytes(wire));
    EXPECT_FALSE(c.empty());
    EXPECT_EQ(c.domain(), "host");
    EXPECT_EQ(keywords(c), (std::vector<std::string>{"8BITMIME", "CHUNKING",
                                                     "ENHANCEDSTATUSCODES", "PIPELINING",
                                                     "STARTTLS"}));
    for (const char* kw : {"8BITMIME", "CHUNKING", "ENHANCEDSTATUSCODES", "PIPELINING",
                           "STARTTLS", "8bitmime", "chunking", "Pipelining", "sTaRtTlS",
                           "enhancedstatuscodes"}) {
        EXPECT_TRUE(c.has(kw)) << kw;
    }
    for (const char* kw : {"SIZE", "DSN", "SMTPUTF8", "BINARYMIME", "AUTH", "host", "HOST",
                           "", "PIPELININGX", "PIPE", "8BITMIM"}) {
        EXPECT_FALSE(c.has(kw)) << kw;
    }
    ASSERT_TRUE(c.params("PIPELINING").has_value());
    EXPECT_EQ(*c.params("PIPELINING"), "");
    ASSERT_TRUE(c.params("starttls").has_value());
    EXPECT_EQ(*c.params("starttls"), "");
    EXPECT_FALSE(c.params("SIZE").has_value());
    EXPECT_EQ(c.size_limit(), 0u);
    EXPECT_TRUE(c.auth_mechanisms().empty());
    for (const auto& e : c.entries()) EXPECT_EQ(e.params, "") << e.keyword;
}

TEST(Capabilities, WhatEveryDeliveryConsultsIsLookedUpOnce) {
    Capabilities none;
    EXPECT_FALSE(none.offered().pipelining || none.offered().chunking || none.offered().size);
    // Any case, with or without parameters: as has() says.
    Capabilities c = Capabilities::parse(parse_bytes("250-host\r\n250-pipelining\r\n250-Chunking\r\n250 SIZE\r\n"));
    EXPECT_TRUE(c.offered().pipelining);
    EXPECT_TRUE(c.offered().chunking);
    EXPECT_TRUE(c.offered().size);
    EXPECT_EQ(c.size_limit(), 0u);
    Capabilities d = Capabilities::parse(parse_bytes("250-host\r\n250-SIZE 1000\r\n250 8BITMIME\r\n"));
    EXPECT_FALSE(d.offered().pipelining);
    EXPECT_FALSE(d.offered().chunking);
    EXPECT_TRUE(d.offered().size);
    for (const char* k : {"PIPELINING", "CHUNKING", "SIZE"}) EXPECT_EQ(c.has(k), true) << k;
}

TEST(Capabilities, DomainIsFirstWordOfFirstLine) {
    EXPECT_EQ(Capabilities::parse(make_reply({"mx.example.org Hello client", "PIPELINING"}))
                  .domain(),
              "mx.example.org");
    EXPECT_EQ(Capabilities::parse(make_reply({"mx.example.org"})).domain(), "mx.example.org");
    // A one-line reply: a name and no extensions.
    Capabilities c = Capabilities::parse(make_reply({"lmtp.example Dovecot ready."}));
    EXPECT_EQ(c.domain(), "lmtp.example");
    EXPECT_TRUE(c.entries().empty());
    EXPECT_FALSE(c.empty());
    // The first line is the greeting, never a keyword.
    Capabilities d = Capabilities::parse(make_reply({"SIZE", "PIPELINING"}));
    EXPECT_EQ(d.domain(), "SIZE");
    EXPECT_FALSE(d.has("SIZE"));
    EXPECT_TRUE(d.has("PIPELINING"));
}

TEST(Capabilities, KeywordsUpperCasedParamsKept) {
    Capabilities c = Capabilities::parse(
        make_reply({"h", "pipelining", "Size 5000", "X-Custom-Ext Some Params Here", "dsn"}));
    EXPECT_EQ(keywords(c),
              (std::vector<std::string>{"PIPELINING", "SIZE", "X-CUSTOM-EXT", "DSN"}));
    ASSERT_TRUE(c.params("x-custom-ext").has_value());
    EXPECT_EQ(*c.params("x-custom-ext"), "Some Params Here");
    ASSERT_TRUE(c.params("SIZE").has_value());
    EXPECT_EQ(*c.params("SIZE"), "5000");
    EXPECT_EQ(c.size_limit(), 5000u);
    EXPECT_TRUE(c.has("dsn"));
    EXPECT_EQ(c.entries()[2].params, "Some Params Here");
}

struct SizeCase {
    std::string line;
    bool has_size;
    std::uint64_t limit;
};

TEST(Capabilities, SizeValues) {
    const SizeCase cases[] = {
        {"SIZE 10240000", true, 10240000u},
        {"SIZE", true, 0u},
        {"SIZE 0", true, 0u},
        {"SIZE junk", true, 0u},
        {"size 123", true, 123u},
        {"SIZE 18446744073709551615", true, 18446744073709551615ull},  // 1*20DIGIT, RFC 1870
        {"SIZE 18446744073709551616", true, 0u},  // does not fit: junk
        {"SIZE 99999999999999999999999", true, 0u},
        {"PIPELINING", false, 0u},
    };
    for (const SizeCase& c : cases) {
        SCOPED_TRACE(c.line);
        Capabilities caps = Capabilities::parse(make_reply({"host", c.line, "8BITMIME"}));
        EXPECT_EQ(caps.has("SIZE"), c.has_size);
        EXPECT_EQ(caps.has("size"), c.has_size);
        EXPECT_EQ(caps.size_limit(), c.limit);
        EXPECT_TRUE(caps.has("8BITMIME"));
    }
}

TEST(Capabilities, AuthMechanisms) {
    struct Row {
        std::vector<std::string> lines;
        std::vector<std::string> mechs;
    };
    const Row rows[] = {
        {{"h", "AUTH PLAIN LOGIN"}, {"PLAIN", "LOGIN"}},
        {{"h", "AUTH=LOGIN"}, {"LOGIN"}},
        {{"h", "AUTH=LOGIN PLAIN"}, {"LOGIN", "PLAIN"}},
        {{"h", "auth plain cram-md5"}, {"PLAIN", "CRAM-MD5"}},
        {{"h", "AUTH SCRAM-SHA-256 PLAIN XOAUTH2"}, {"SCRAM-SHA-256", "PLAIN", "XOAUTH2"}},
        {{"h", "PIPELINING"}, {}},
    };
    for (const Row& r : rows) {
        SCOPED_TRACE(r.lines[1]);
        Capabilities c = Capabilities::parse(make_reply(r.lines));
        EXPECT_EQ(c.auth_mechanisms(), r.mechs);
    }
    Capabilities c = Capabilities::parse(make_reply({"h", "AUTH PLAIN LOGIN"}));
    EXPECT_TRUE(c.has("AUTH"));
    ASSERT_TRUE(c.params("auth").has_value());
    EXPECT_EQ(*c.params("auth"), "PLAIN LOGIN");
}

TEST(Capabilities, JunkLinesSkipped) {
    Capabilities c = Capabilities::parse(make_reply({
        "host",
        "8BITMIME",
        "",                   // empty
        "!bang",              // not a keyword character
        "-dash-first",        // a keyword starts with a letter or digit
        "PIPE LINING",        // fine: keyword PIPE with params LINING
        "SIZE 100",
    }));
    EXPECT_EQ(keywords(c), (std::vector<std::string>{"8BITMIME", "PIPE", "SIZE"}));
    EXPECT_EQ(c.size_limit(), 100u);
    EXPECT_FALSE(c.has(""));
    EXPECT_FALSE(c.has("!BANG"));
    EXPECT_FALSE(c.has("-DASH-FIRST"));
}

TEST(Capabilities, LaterDuplicateReplacesEarlier) {
    Capabilities c = Capabilities::parse(make_reply({"h", "SIZE 100", "PIPELINING", "size 200"}));
    EXPECT_EQ(c.size_limit(), 200u);
    ASSERT_TRUE(c.params("SIZE").has_value());
    EXPECT_EQ(*c.params("SIZE"), "200");
    int sizes = 0;
    for (const auto& e : c.entries()) sizes += e.keyword == "SIZE";
    EXPECT_EQ(sizes, 1);
    EXPECT_TRUE(c.has("PIPELINING"));
}

TEST(Capabilities, FullPostfixStyleReply) {
    const std::string wire =
        "250-mail.example.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-ETRN\r\n"
        "250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250-AUTH=PLAIN LOGIN\r\n"
        "250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n";
    Capabilities c = Capabilities::parse(parse_bytes(wire));
    EXPECT_EQ(c.domain(), "mail.example.com");
    EXPECT_EQ(c.size_limit(), 10240000u);
    for (const char* kw : {"PIPELINING", "SIZE", "ETRN", "STARTTLS", "AUTH",
                           "ENHANCEDSTATUSCODES", "8BITMIME", "DSN", "SMTPUTF8", "CHUNKING"})
        EXPECT_TRUE(c.has(kw)) << kw;
    ASSERT_GE(c.auth_mechanisms().size(), 2u);
    EXPECT_EQ(c.auth_mechanisms()[0], "PLAIN");
    EXPECT_EQ(c.auth_mechanisms()[1], "LOGIN");
}

TEST(Iequals, Table) {
    EXPECT_TRUE(lmtp::iequals("abc", "ABC"));
    EXPECT_TRUE(lmtp::iequals("SiZe", "sIzE"));
    EXPECT_TRUE(lmtp::iequals("", ""));
    EXPECT_TRUE(lmtp::iequals("8BITMIME", "8bitmime"));
    EXPECT_TRUE(lmtp::iequals("x-y_z", "X-Y_Z"));
    EXPECT_FALSE(lmtp::iequals("abc", "abd"));
    EXPECT_FALSE(lmtp::iequals("abc", "ab"));
    EXPECT_FALSE(lmtp::iequals("ab", "abc"));
    EXPECT_FALSE(lmtp::iequals("", "a"));
    // Only ASCII letters fold: '@' (0x40) and '`' (0x60) differ by 0x20 but are not letters.
    EXPECT_FALSE(lmtp::iequals("@", "`"));
    EXPECT_FALSE(lmtp::iequals("[", "{"));
    EXPECT_FALSE(lmtp::iequals("\xC3\xA9", "\xC3\x89"));
}

}  // namespace
