// SASL mechanisms and base64, on bytes: RFC 4616, RFC 7677's own exchange.
#include <gtest/gtest.h>

#include "lmtp/auth.hpp"
#include "lmtp/status.hpp"

using namespace lmtp;

namespace {

Status status_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.status();
    }
    return Status::ok;
}

}  // namespace

TEST(Base64, RoundTripsAndRefusesJunk) {
    EXPECT_EQ(base64_encode(""), "");
    EXPECT_EQ(base64_encode("f"), "Zg==");
    EXPECT_EQ(base64_encode("fo"), "Zm8=");
    EXPECT_EQ(base64_encode("foo"), "Zm9v");
    EXPECT_EQ(base64_encode(std::string("\0a\0b", 4)), "AGEAYg==");
    for (std::string s : {"", "f", "fo", "foo", "foob", "fooba", "foobar", "\xff\xfe\x00\x01"}) {
        EXPECT_EQ(base64_decode(base64_encode(s)), s);
    }
    EXPECT_EQ(base64_decode("VXNlcm5hbWU6"), "Username:");
    for (const char* bad : {"Zg=", "Z===", "Zm9v!", "Zg==Zg==", "=Zg=", "Zm 9v"})
        EXPECT_EQ(status_of([&] { base64_decode(bad); }), Status::protocol) << bad;
}

TEST(Sasl, PlainSendsAuthzidUserPassword) {
    auto m = make_plain("tim", "tanstaaftanstaaf");
    EXPECT_STREQ(m->name(), "PLAIN");
    EXPECT_TRUE(m->reveals_password());
    auto first = m->initial();
    ASSERT_TRUE(first.has_value());
    EXPECT_EQ(*first, std::string("\0tim\0tanstaaftanstaaf", 21));
    EXPECT_EQ(base64_encode(*first), "AHRpbQB0YW5zdGFhZnRhbnN0YWFm");  // RFC 4616 section 4
    EXPECT_TRUE(m->complete());
    EXPECT_EQ(*make_plain("u", "p", "admin")->initial(), std::string("admin\0u\0p", 9));
}

TEST(Sasl, LoginAnswersUserThenPassword) {
    auto m = make_login("alice", "secret");
    EXPECT_FALSE(m->initial().has_value());
    EXPECT_EQ(m->step("Username:"), "alice");
    EXPECT_FALSE(m->complete());
    EXPECT_EQ(m->step("Password:"), "secret");
    EXPECT_TRUE(m->complete());
    EXPECT_EQ(status_of([&] { m->step("More?"); }), Status::auth);
}

TEST(Sasl, ExternalSendsTheAuthzid) {
    auto m = make_external();
    EXPECT_EQ(*m->initial(), "");
    EXPECT_FALSE(m->reveals_password());
    EXPECT_EQ(*make_external("bob")->initial(), "bob");
}

TEST(Sasl, ScramSha256MatchesRfc7677) {
    // RFC 7677 section 3: user "user", password "pencil".
    auto m = make_scram_sha256("user", "pencil", "rOprNGfwEbeRWgbNEkqO");
    EXPECT_STREQ(m->name(), "SCRAM-SHA-256");
    EXPECT_FALSE(m->reveals_password());
    EXPECT_EQ(*m->initial(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
    std::string final_msg =
        m->step("r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
    EXPECT_EQ(final_msg,
              "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
              "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
    EXPECT_FALSE(m->complete());  // not before the server proved itself
    EXPECT_EQ(m->step("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="), "");
    EXPECT_TRUE(m->complete());
}

TEST(Sasl, ScramRefusesAServerThatDoesNotKnowThePassword) {
    auto m = make_scram_sha256("user", "pencil", "rOprNGfwEbeRWgbNEkqO");
    m->initial();
    m->step("r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
    EXPECT_EQ(status_of([&] { m->step("v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="); }), Status::auth);
    EXPECT_FALSE(m->complete());
}

TEST(Sasl, ScramRefusesBadServerMessages) {
    const char* bad[] = {
        "r=someoneelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",                                  // nonce not ours
        "r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",                         // nothing added
        "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0",                         // no iterations
        "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=x",                         // not a number
        "r=rOprNGfwEbeRWgbNEkqOxyz,i=4096",                                                 // no salt
        "m=ext,r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",               // extension
        "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=99999999999",              // absurd cost
    };
    for (const char* b : bad) {
        auto m = make_scram_sha256("user", "pencil", "rOprNGfwEbeRWgbNEkqO");
        m->initial();
        EXPECT_EQ(status_of([&] { m->step(b); }), Status::auth) << b;
    }
    auto m = make_scram_sha256("user", "pencil", "rOprNGfwEbeRWgbNEkqO");
    m->initial();
    m->step("r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
    EXPECT_EQ(status_of([&] { m->step("e=invalid-proof"); }), Status::auth);
}

TEST(Sasl, ScramEscapesTheUserNameAndMakesARandomNonce) {
    auto m = make_scram_sha256("a=b,c", "p");
    std::string first = *m->initial();
    ASSERT_EQ(first.rfind("n,,n=a=3Db=2Cc,r=", 0), 0u) << first;
    auto other = make_scram_sha256("a=b,c", "p");
    EXPECT_NE(first, *other->initial());  // a fresh nonce each time
    EXPECT_GE(first.size() - std::string("n,,n=a=3Db=2Cc,r=").size(), 24u);
}

TEST(Sasl, PickingTheStrongest) {
    EXPECT_EQ(pick_mechanism({"PLAIN", "LOGIN", "SCRAM-SHA-256"}, false), "SCRAM-SHA-256");
    EXPECT_EQ(pick_mechanism({"login", "plain"}, false), "PLAIN");
    EXPECT_EQ(pick_mechanism({"EXTERNAL", "PLAIN"}, false), "PLAIN");
    EXPECT_EQ(pick_mechanism({"EXTERNAL", "PLAIN"}, true), "EXTERNAL");
    EXPECT_EQ(pick_mechanism({"CRAM-MD5", "GSSAPI"}, false), "");
    EXPECT_EQ(status_of([&] { make_mechanism("CRAM-MD5", "u", "p"); }), Status::invalid_argument);
    EXPECT_STREQ(make_mechanism("scram-sha-256", "u", "p")->name(), "SCRAM-SHA-256");
}
