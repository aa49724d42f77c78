// The session state machine, driven by hand: exact bytes out, replies in.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "lmtp/session.hpp"

using namespace lmtp;

namespace {

Reply parse(const std::string& bytes) {
    ReplyParser p;
    std::size_t used = 0;
    auto r = p.feed(bytes, used);
    EXPECT_EQ(r, ReplyParser::Result::reply) << bytes << ": " << p.error();
    EXPECT_EQ(used, bytes.size());
    return p.take();
}

const char kLhloPipelining[] =
    "250-server.example\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250 SIZE 1000\r\n";
const char kLhloPlain[] = "250-server.example\r\n250 8BITMIME\r\n";

// A session with a transcript of what it sent.
struct Driver {
    Session s;
    std::string sent;
    std::vector<std::pair<TraceDir, std::string>> traced;

    explicit Driver(const char* lhlo_reply = kLhloPipelining, const char* banner = "220 server.example LMTP ready\r\n",
                    bool strict = false) {
        s.set_trace([this](TraceDir d, std::string_view l) { traced.emplace_back(d, std::string(l)); });
        s.set_strict_replies(strict);
        s.start();
        reply(banner);
        s.lhlo("client.example");
        EXPECT_EQ(take(), "LHLO client.example\r\n");
        reply(lhlo_reply);
        EXPECT_EQ(s.phase(), Phase::ready);
    }
    std::string take() {
        std::string out(s.output());
        s.consumed(out.size());
        sent += out;
        return out;
    }
    Session::Event reply(const std::string& bytes) { return s.on_reply(parse(bytes)); }
    const RecipientResult& r(std::size_t i) const { return s.transaction().recipients.at(i); }
};

}  // namespace

TEST(Session, GreetingAndCapabilities) {
    Driver d;
    EXPECT_TRUE(d.s.supports("pipelining"));
    EXPECT_TRUE(d.s.supports("SIZE"));
    EXPECT_EQ(d.s.capabilities().size_limit(), 1000u);
    EXPECT_EQ(d.s.banner().code, 220);
    EXPECT_EQ(d.s.want(), Session::Want::idle);
}

TEST(Session, RefusedGreetingCloses) {
    Session s;
    s.start();
    EXPECT_EQ(s.want(), Session::Want::read);
    s.on_reply(parse("554 5.3.2 not now\r\n"));
    EXPECT_EQ(s.phase(), Phase::closed);
    EXPECT_THROW(s.lhlo("x"), Error);
}

TEST(Session, PipelinedDeliverySendsOneGroupAndMatchesRepliesByCount) {
    Driver d;
    d.s.deliver("s@x", {"a@x", "b@x", "c@x"});
    EXPECT_EQ(d.s.want(), Session::Want::write);
    EXPECT_EQ(d.take(), "MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\nRCPT TO:<c@x>\r\nDATA\r\n");
    EXPECT_EQ(d.s.awaiting(), 5u);
    EXPECT_EQ(d.reply("250 2.1.0 ok\r\n").cmd, Session::Cmd::mail);
    auto e = d.reply("250 2.1.5 ok\r\n");
    EXPECT_EQ(e.cmd, Session::Cmd::rcpt);
    EXPECT_EQ(e.index, 0u);
    d.reply("550 5.1.1 no such user\r\n");
    d.reply("250 2.1.5 ok\r\n");
    EXPECT_EQ(d.reply("354 go ahead\r\n").cmd, Session::Cmd::data);
    EXPECT_EQ(d.s.want(), Session::Want::body);
    EXPECT_EQ(d.s.phase(), Phase::body);
    d.s.body("Subject: x\n\nhi\n");
    d.s.end_body();
    EXPECT_EQ(d.take(), "Subject: x\r\n\r\nhi\r\n.\r\n");
    EXPECT_EQ(d.s.awaiting(), 2u);  // one per accepted recipient, not per RCPT
    e = d.reply("250 2.0.0 <a@x> saved\r\n");
    EXPECT_EQ(e.cmd, Session::Cmd::final);
    EXPECT_EQ(e.index, 0u);
    e = d.reply("452 4.2.2 <c@x> over quota\r\n");
    EXPECT_EQ(e.index, 2u);

    const Transaction& t = d.s.transaction();
    EXPECT_TRUE(t.finished);
    EXPECT_FALSE(t.all_delivered());
    EXPECT_EQ(d.r(0).outcome, Outcome::ok);
    EXPECT_EQ(d.r(0).stage, Stage::data);
    EXPECT_EQ(d.r(0).reply.code, 250);
    EXPECT_EQ(d.r(0).rcpt_reply.code, 250);
    EXPECT_EQ(d.r(1).outcome, Outcome::permfail);
    EXPECT_EQ(d.r(1).stage, Stage::rcpt);
    EXPECT_EQ(d.r(1).reply.enhanced.str(), "5.1.1");
    EXPECT_EQ(d.r(2).outcome, Outcome::tempfail);
    EXPECT_EQ(d.r(2).stage, Stage::data);
    EXPECT_EQ(d.r(2).reply.text(), "<c@x> over quota");
    EXPECT_EQ(d.s.phase(), Phase::ready);
    EXPECT_FALSE(d.s.server_in_transaction());
    EXPECT_EQ(d.s.want(), Session::Want::idle);
}

TEST(Session, LockstepWithoutPipeliningSendsOneCommandPerReply) {
    Driver d(kLhloPlain);
    d.s.deliver("s@x", {"a@x", "b@x"});
    EXPECT_EQ(d.take(), "MAIL FROM:<s@x>\r\n");
    EXPECT_EQ(d.s.want(), Session::Want::read);
    d.reply("250 ok\r\n");
    EXPECT_EQ(d.take(), "RCPT TO:<a@x>\r\n");
    d.reply("250 ok\r\n");
    EXPECT_EQ(d.take(), "RCPT TO:<b@x>\r\n");
    d.reply("250 ok\r\n");
    EXPECT_EQ(d.take(), "DATA\r\n");
    d.reply("354 go\r\n");
    d.s.body("x");
    d.s.end_body();
    EXPECT_EQ(d.take(), "x\r\n.\r\n");
    d.reply("250 a\r\n");
    d.reply("250 b\r\n");
    EXPECT_TRUE(d.s.transaction().all_delivered());
}

TEST(Session, BodyBytesThatNeedNoChangeAreTakenWithoutACopy) {
    Driver d;
    d.s.deliver("s@x", {"a@x"});
    EXPECT_EQ(d.take(), "MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nDATA\r\n");
    d.reply("250 ok\r\n");
    d.reply("250 ok\r\n");
    d.reply("354 go\r\n");
    std::string clean(1000, 'x');
    clean += "\r\n";
    const char* bytes = clean.data();
    d.s.body_swap(clean);
    std::string_view pieces[3];
    ASSERT_EQ(d.s.output_pieces(pieces), 1u);
    EXPECT_EQ(pieces[0].data(), bytes);  // the caller's own buffer
    EXPECT_EQ(pieces[0].size(), 1002u);
    // Bytes that need a change (a dot to double, a bare LF) are encoded as a
    // copy, after what is already queued; the caller keeps them.
    std::string dotted = ".a\nb";
    d.s.body_swap(dotted);
    EXPECT_EQ(dotted, ".a\nb");
    d.s.end_body();
    EXPECT_EQ(d.take(), std::string(1000, 'x') + "\r\n..a\r\nb\r\n.\r\n");
    d.reply("250 2.0.0 saved\r\n");
    EXPECT_TRUE(d.s.transaction().all_delivered());
}

TEST(Session, DuplicateRecipientsEachGetTheirOwnReply) {
    Driver d;
    d.s.deliver("s@x", {"a@x", "a@x"});
    EXPECT_EQ(d.take(), "MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nRCPT TO:<a@x>\r\nDATA\r\n");
    d.reply("250 ok\r\n");
    d.reply("250 ok\r\n");
    d.reply("250 ok\r\n");
    d.reply("354 go\r\n");
    d.s.end_body();
    EXPECT_EQ(d.take(), ".\r\n");
    EXPECT_EQ(d.s.awaiting(), 2u);
    d.reply("250 first\r\n");
    d.reply("552 second\r\n");
    EXPECT_EQ(d.r(0).reply.text(), "first");
    EXPECT_EQ(d.r(1).reply.text(), "second");
    EXPECT_EQ(d.r(1).outcome, Outcome::permfail);
}

TEST(Session, RefusedMailIsEveryRecipientsVerdictWhenPipelined) {
    Driver d;
    d.s.deliver("s@x", {"a@x", "b@x"});
    d.take();
    d.reply("451 4.3.0 try later\r\n");
    d.reply("503 5.5.1 need MAIL\r\n");
    d.reply("503 5.5.1 need MAIL\r\n");
    d.reply("503 5.5.1 need RCPT\r\n");
    EXPECT_EQ(d.s.want(), Session::Want::idle);
    for (std::size_t i = 0; i < 2; ++i) {
        EXPECT_EQ(d.r(i).outcome, Outcome::tempfail);
        EXPECT_EQ(d.r(i).stage, Stage::mail);
        EXPECT_EQ(d.r(i).reply.code, 451);
        EXPECT_EQ(d.r(i).rcpt_reply.code, 503);
    }
    EXPECT_TRUE(d.s.transaction().finished);
    EXPECT_FALSE(d.s.delivering());
    EXPECT_FALSE(d.s.server_in_transaction());
}

TEST(Session, RefusedMailSendsNoRcptInLockstep) {
    Driver d(kLhloPlain);
    d.s.deliver("s@x", {"a@x"});
    d.take();
    d.reply("550 5.7.1 sender refused\r\n");
    EXPECT_EQ(d.s.output(), "");
    EXPECT_EQ(d.s.want(), Session::Want::idle);
    EXPECT_EQ(d.r(0).stage, Stage::mail);
    EXPECT_EQ(d.r(0).outcome, Outcome::permfail);
}

TEST(Session, NoAcceptedRecipientLeavesTransactionOpenAndNextDeliveryResets) {
    Driver d;
    d.s.deliver("s@x", {"a@x"});
    d.take();
    d.reply("250 ok\r\n");
    d.reply("550 no\r\n");
    d.reply("503 5.5.1 no valid recipients\r\n");
    EXPECT_TRUE(d.s.transaction().finished);
    EXPECT_TRUE(d.s.server_in_transaction());
    d.s.deliver("s@x", {"b@x"});
    EXPECT_EQ(d.take(), "RSET\r\nMAIL FROM:<s@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n");
    d.reply("250 reset\r\n");
    d.reply("250 ok\r\n");
    d.reply("250 ok\r\n");
    d.reply("354 go\r\n");
    EXPECT_EQ(d.s.want(), Session::Want::body);
    EXPECT_EQ(d.s.transaction().recipients.size(), 1u);
}

TEST(Session, LockstepSkipsDataWhenNobodyWasAccepted) {
    Driver d(kLhloPlain);
    d.s.deliver("s@x", {"a@x"});
    d.take();
    d.reply("250 ok\r\n");
    EXPECT_EQ(d.take(), "RCPT TO:<a@x>\r\n");
    d.reply("550 no\r\n");
    EXPECT_EQ(d.s.output(), "");
    EXPECT_EQ(d.s.want(), Session::Want::idle);
    EXPECT_TRUE(d.s.transaction().finished);
    d.s.deliver("s@x", {"a@x"});
    EXPECT_EQ(d.take(), "RSET\r\n");  // without PIPELINING, MAIL waits for RSET's reply
    d.reply("250 reset\r\n");
    EXPECT_EQ(d.take(), "MAIL FROM:<s@x>\r\n");
    d.reply("250 ok\r\n");
    EXPECT_EQ(d.take(), "RCPT TO:<a@x>\r\n");
}

TEST(Session, DataAcceptedWithoutRecipientsSendsALoneDotAndCloses) {
    Driver d;
    d.s.deliver("s@x", {"a@x", "b@x"});
    d.take();
    d.reply("250 ok\r\n");
    d.reply("550 no\r\n");
    d.reply("550 no\r\n");
    try {
        d.reply("354 go ahead anyway\r\n");
        FAIL() << "expected a protocol error";
    } catch (const Error& e) {
        EXPECT_EQ(e.status(), Status::protocol);
        EXPECT_NE(std::string(e.what()).find("no recipient was accepted"), std::string::npos) << e.what();
    }
    EXPECT_EQ(d.s.output(), ".\r\nQUIT\r\n");
    EXPECT_EQ(d.s.phase(), Phase::closed);
    EXPECT_EQ(d.r(0).outcome, Outcome::permfail);  // verdicts already given stay
    EXPECT_EQ(d.r(1).stage, Stage::rcpt);
}

TEST(Session, WrongReplyToDataIsAProtocolErrorAndMarksUnknown) {
    Driver d;
    d.s.deliver("s@x", {"a@x", "b@x"});
    d.take();
    d.reply("250 ok\r\n");
    d.reply("250 ok\r\n");
    d.reply("550 no\r\n");
    EXPECT_THROW(d.reply("250 data is fine\r\n"), Error);
    EXPECT_EQ(d.s.phase(), Phase::closed);
    EXPECT_EQ(d.r(0).outcome, Outcome::unknown);
    EXPECT_EQ(d.r(0).stage, Stage::none);
    EXPECT_EQ(d.r(1).outcome, Outcome::permfail);
    EXPECT_EQ(d.s.awaiting(), 0u);
}

TEST(Session, IntermediateReplyWhereFinalWasDue) {
    Driver d;
    d.s.deliver("s@x", {"a@x", "b@x"});
    d.take();
    for (int i = 0; i < 3; ++i) d.reply("250 ok\r\n");
    d.reply("354 go\r\n");
    d.s.end_body();
    d.take();
    d.reply("250 a done\r\n");
    EXPECT_THROW(d.reply("354 what\r\n"), Error);
    EXPECT_EQ(d.r(0).outcome, Outcome::ok);
    EXPECT_EQ(d.r(1).outcome, Outcome::unknown);
}

TEST(Session, Reply421InTheMiddleOfFinalRepliesEndsTheSession) {
    Driver d;
    d.s.deliver("s@x", {"a@x", "b@x", "c@x"});
    d.take();
    for (int i = 0; i < 4; ++i) d.reply("250 ok\r\n");
    d.reply("354 go\r\n");
    d.s.end_body();
    d.take();
    d.reply("250 a\r\n");
    d.reply("421 4.3.2 shutting down\r\n");
    EXPECT_EQ(d.s.phase(), Phase::closed);
    EXPECT_EQ(d.s.awaiting(), 0u);
    EXPECT_EQ(d.r(0).outcome, Outcome::ok);
    EXPECT_EQ(d.r(1).outcome, Outcome::tempfail);
    EXPECT_EQ(d.r(1).reply.code, 421);
    EXPECT_EQ(d.r(2).outcome, Outcome::unknown);
    EXPECT_FALSE(d.s.transaction().finished);
}

TEST(Session, Reply421ToAPipelinedRcptDropsTheRest) {
    Driver d;
    d.s.deliver("s@x", {"a@x", "b@x"});
    d.take();
    d.reply("250 ok\r\n");
    d.reply("421 4.4.2 bye\r\n");
    EXPECT_EQ(d.s.phase(), Phase::closed);
    EXPECT_EQ(d.s.awaiting(), 0u);
    EXPECT_EQ(d.r(0).outcome, Outcome::tempfail);
    EXPECT_EQ(d.r(0).stage, Stage::rcpt);
    EXPECT_EQ(d.r(1).outcome, Outcome::unknown);
}

TEST(Session, CloseMarksPendingRecipientsUnknownAndDropsOutput) {
    Driver d;
    d.s.deliver("s@x", {"a@x", "b@x"});
    d.reply("250 ok\r\n");
    d.reply("550 no\r\n");
    d.s.close();  // what the driver does after a timeout
    EXPECT_EQ(d.s.output(), "");
    EXPECT_EQ(d.s.phase(), Phase::closed);
    EXPECT_EQ(d.r(0).outcome, Outcome::permfail);
    EXPECT_EQ(d.r(1).outcome, Outcome::unknown);
    EXPECT_THROW(d.s.noop(), Error);
}

TEST(Session, StepByStepTransaction) {
    Driver d;
    d.s.mail(MailVerb::mail, "s@x");
    EXPECT_EQ(d.take(), "MAIL FROM:<s@x>\r\n");
    d.reply("250 ok\r\n");
    EXPECT_TRUE(d.s.server_in_transaction());
    d.s.rcpt("a@x");
    EXPECT_EQ(d.take(), "RCPT TO:<a@x>\r\n");
    d.reply("250 ok\r\n");
    d.s.rcpt("b@x");
    d.reply("550 no\r\n");
    d.s.data();
    EXPECT_THROW(d.s.noop(), Error);  // DATA's reply first
    EXPECT_EQ(d.take(), "RCPT TO:<b@x>\r\nDATA\r\n");
    d.reply("354 go\r\n");
    EXPECT_THROW(d.s.rset(), Error);  // no commands inside a message
    d.s.body(".leading dot\n");
    d.s.end_body();
    EXPECT_EQ(d.take(), "..leading dot\r\n.\r\n");
    d.reply("250 stored\r\n");
    EXPECT_TRUE(d.s.transaction().finished);
    EXPECT_EQ(d.r(0).outcome, Outcome::ok);
    EXPECT_EQ(d.r(1).outcome, Outcome::permfail);
}

TEST(Session, OldMailVerbs) {
    Driver d;
    d.s.mail(MailVerb::send, "s@x");
    EXPECT_EQ(d.take(), "SEND FROM:<s@x>\r\n");
    d.reply("502 no\r\n");
    d.s.mail(MailVerb::soml, "s@x");
    EXPECT_EQ(d.take(), "SOML FROM:<s@x>\r\n");
    d.reply("502 no\r\n");
    d.s.mail(MailVerb::saml, "");
    EXPECT_EQ(d.take(), "SAML FROM:<>\r\n");
}

TEST(Session, OtherCommands) {
    Driver d;
    d.s.rset();
    d.s.noop();
    d.s.verify("a@x");
    d.s.expand("list");
    d.s.help("");
    d.s.help("MAIL");
    d.s.etrn("example.org");
    d.s.quit();
    EXPECT_EQ(d.take(),
              "RSET\r\nNOOP\r\nVRFY a@x\r\nEXPN list\r\nHELP\r\nHELP MAIL\r\nETRN example.org\r\nQUIT\r\n");
    EXPECT_EQ(d.s.awaiting(), 8u);
}

TEST(Session, RawCommandsAreReadLikeTheirOwnCommands) {
    Driver d;
    d.s.raw("MAIL FROM:<s@x>");
    d.s.raw("RCPT TO:<a@x> NOTIFY=NEVER");
    d.s.raw("rcpt to:b@x");
    EXPECT_EQ(d.take(), "MAIL FROM:<s@x>\r\nRCPT TO:<a@x> NOTIFY=NEVER\r\nrcpt to:b@x\r\n");
    EXPECT_EQ(d.reply("250 ok\r\n").cmd, Session::Cmd::mail);
    EXPECT_EQ(d.reply("250 ok\r\n").cmd, Session::Cmd::rcpt);
    EXPECT_EQ(d.reply("250 ok\r\n").cmd, Session::Cmd::rcpt);
    EXPECT_EQ(d.r(0).address, "a@x");
    EXPECT_EQ(d.r(1).address, "b@x");
    d.s.raw("DATA");
    EXPECT_THROW(d.s.raw("NOOP"), Error);  // DATA's reply must come first
    d.take();
    d.reply("354 go\r\n");
    EXPECT_EQ(d.s.phase(), Phase::body);
    EXPECT_THROW(d.s.raw("NOOP"), Error);
    d.s.end_body();
    EXPECT_EQ(d.s.awaiting(), 2u);
}

TEST(Session, RawCommandsThatNeedMoreThanALineAreRefused) {
    Driver d;
    for (const char* line : {"STARTTLS", "AUTH PLAIN AGFAYg==", "BDAT 10 LAST", "starttls"}) {
        try {
            d.s.raw(line);
            ADD_FAILURE() << line;
        } catch (const Error& e) {
            EXPECT_EQ(e.status(), Status::bad_sequence) << line;
        }
    }
    EXPECT_EQ(d.s.output(), "");
}

TEST(Session, InjectionIsRefusedAndNothingIsQueued) {
    Driver d;
    const std::vector<std::string> bad = {"a@x\r\nRSET", "a@x\nDATA", std::string("a@x\0b", 5), "a@x\rQUIT"};
    for (const auto& addr : bad) {
        try {
            d.s.deliver("s@x", {"ok@x", addr});
            ADD_FAILURE() << "accepted " << printable(addr);
        } catch (const Error& e) {
            EXPECT_EQ(e.status(), Status::bad_input);
        }
        EXPECT_THROW(d.s.deliver(addr, {"ok@x"}), Error);
        EXPECT_THROW(d.s.rcpt(addr), Error);
        EXPECT_THROW(d.s.raw("NOOP " + addr), Error);
        EXPECT_THROW(d.s.lhlo(addr), Error);
        EXPECT_EQ(d.s.output(), "");
        EXPECT_EQ(d.s.awaiting(), 0u);
        EXPECT_FALSE(d.s.delivering());
    }
}

TEST(Session, ParametersNeedTheirExtensionUnlessForced) {
    Driver d(kLhloPlain);
    MailParams mp;
    mp.size = 10;
    try {
        d.s.mail(MailVerb::mail, "s@x", mp);
        FAIL();
    } catch (const Error& e) {
        EXPECT_EQ(e.status(), Status::not_advertised);
        EXPECT_NE(std::string(e.what()).find("SIZE"), std::string::npos);
    }
    RcptParams rp;
    rp.notify = notify_failure;
    EXPECT_THROW(d.s.rcpt("a@x", rp), Error);
    EXPECT_THROW(d.s.deliver("s@x", {"a@x"}, {}, rp), Error);
    EXPECT_EQ(d.s.output(), "");
    MailParams eight;
    eight.body = BodyType::eight_bit_mime;
    d.s.mail(MailVerb::mail, "s@x", eight);  // 8BITMIME is offered
    d.s.mail(MailVerb::mail, "s@x", mp, true);
    d.s.rcpt("a@x", rp, true);
    EXPECT_EQ(d.take(),
              "MAIL FROM:<s@x> BODY=8BITMIME\r\nMAIL FROM:<s@x> SIZE=10\r\nRCPT TO:<a@x> NOTIFY=FAILURE\r\n");
}

TEST(Session, SizeOverTheAdvertisedLimitIsRefusedBeforeSending) {
    Driver d;  // SIZE 1000
    MailParams mp;
    mp.size = 1001;
    try {
        d.s.deliver("s@x", {"a@x"}, mp);
        FAIL();
    } catch (const Error& e) {
        EXPECT_EQ(e.status(), Status::too_big);
    }
    EXPECT_EQ(d.s.output(), "");
    mp.size = 1000;
    d.s.deliver("s@x", {"a@x"}, mp);
    EXPECT_EQ(d.take(), "MAIL FROM:<s@x> SIZE=1000\r\nRCPT TO:<a@x>\r\nDATA\r\n");
}

TEST(Session, DeliverNeedsRecipientsAndAReadySession) {
    Driver d;
    EXPECT_THROW(d.s.deliver("s@x", {}), Error);
    d.s.noop();
    EXPECT_THROW(d.s.deliver("s@x", {"a@x"}), Error);  // a reply is still owed
    Session fresh;
    EXPECT_THROW(fresh.deliver("s@x", {"a@x"}), Error);  // not connected
}

TEST(Session, RefusedLhloLeavesNoCapabilities) {
    Session s;
    s.start();
    s.on_reply(parse("220 hi\r\n"));
    s.lhlo("c");
    s.consumed(s.output().size());
    s.on_reply(parse("500 5.5.1 what\r\n"));
    EXPECT_EQ(s.phase(), Phase::connected);
    EXPECT_FALSE(s.supports("PIPELINING"));
    EXPECT_THROW(s.deliver("s@x", {"a@x"}), Error);
}

TEST(Session, ReplyWithNothingExpectedIsAProtocolError) {
    Driver d;
    EXPECT_THROW(d.reply("250 surprise\r\n"), Error);
    EXPECT_EQ(d.s.phase(), Phase::closed);
}

TEST(Session, BackToBackTransactionsNeedNoReset) {
    Driver d;
    for (int round = 0; round < 3; ++round) {
        d.s.deliver("s@x", {"a@x"});
        EXPECT_EQ(d.take(), "MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nDATA\r\n") << round;
        d.reply("250 ok\r\n");
        d.reply("250 ok\r\n");
        d.reply("354 go\r\n");
        d.s.body("m");
        d.s.end_body();
        d.take();
        d.reply("250 saved\r\n");
        EXPECT_TRUE(d.s.transaction().all_delivered());
    }
}

TEST(Session, TraceShowsCommandsAndBodyLines) {
    Driver d;
    d.traced.clear();
    d.s.deliver("s@x", {"a@x"});
    d.reply("250 ok\r\n");
    d.reply("250 ok\r\n");
    d.reply("354 go\r\n");
    d.s.body("line one\r\nline two\n");
    d.s.end_body();
    std::vector<std::pair<TraceDir, std::string>> want = {
        {TraceDir::send, "MAIL FROM:<s@x>"}, {TraceDir::send, "RCPT TO:<a@x>"}, {TraceDir::send, "DATA"},
        {TraceDir::data, "line one\r"},      {TraceDir::data, "line two"},      {TraceDir::data, "."},
    };
    EXPECT_EQ(d.traced, want);
}

TEST(Session, AwaitedNamesTheCommand) {
    Driver d;
    d.s.deliver("s@x", {"who@x"});
    EXPECT_EQ(d.s.awaited(), "the reply to MAIL");
    d.reply("250 ok\r\n");
    EXPECT_EQ(d.s.awaited(), "the reply to RCPT TO:<who@x>");
    d.reply("250 ok\r\n");
    d.reply("354 go\r\n");
    d.s.end_body();
    EXPECT_EQ(d.s.awaited(), "the final reply for <who@x>");
}

TEST(Session, ARefusedDeliveryLeavesNoStaleResults) {
    Driver d;
    d.s.deliver("s@x", {"a@x"});
    d.take();
    d.reply("250 ok\r\n");
    d.reply("550 no\r\n");
    d.reply("503 no recipients\r\n");
    ASSERT_EQ(d.s.transaction().recipients.size(), 1u);
    EXPECT_THROW(d.s.deliver("s@x", {"b@x", "bad\r\n@x"}), Error);
    EXPECT_TRUE(d.s.transaction().recipients.empty());
    EXPECT_EQ(d.s.output(), "");
}

TEST(Session, ADeliveryWithoutRecipientsLeavesNoStaleResults) {
    Driver d;
    d.s.deliver("s@x", {"a@x"});
    d.take();
    d.reply("250 ok\r\n");
    d.reply("250 ok\r\n");
    d.reply("354 go\r\n");
    d.s.body("m");
    d.s.end_body();
    d.take();
    d.reply("250 saved\r\n");
    ASSERT_TRUE(d.s.transaction().finished);
    ASSERT_EQ(d.s.transaction().recipients.size(), 1u);
    EXPECT_THROW(d.s.deliver("s@x", {}), Error);
    EXPECT_TRUE(d.s.transaction().recipients.empty());
    EXPECT_EQ(d.s.output(), "");
}

TEST(Session, AThrowingTraceCallbackChangesNothing) {
    Driver d;
    d.s.set_trace([](TraceDir, std::string_view) { throw std::runtime_error("trace failed"); });
    d.s.deliver("s@x", {"a@x"});
    EXPECT_EQ(d.take(), "MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nDATA\r\n");
    d.reply("250 ok\r\n");
    d.reply("250 ok\r\n");
    d.reply("354 go\r\n");
    d.s.body("x\n");
    d.s.end_body();
    EXPECT_EQ(d.take(), "x\r\n.\r\n");
    d.reply("250 ok\r\n");
    EXPECT_TRUE(d.s.transaction().all_delivered());
}

TEST(Session, DataTraceFollowsNetCmdSplitRules) {
    Driver d;
    d.s.deliver("s@x", {"a@x"});
    d.reply("250 ok\r\n");
    d.reply("250 ok\r\n");
    d.reply("354 go\r\n");
    d.traced.clear();
    d.s.body("\n");            // nothing: only an empty piece
    d.s.body("a\n\nb\n\n");   // a, "", b: the empty pieces at the end are left out
    d.s.body("c\r\n");         // the CR stays
    d.s.end_body();
    std::vector<std::pair<TraceDir, std::string>> want = {
        {TraceDir::data, "a"}, {TraceDir::data, ""}, {TraceDir::data, "b"}, {TraceDir::data, "c\r"},
        {TraceDir::data, "."}};
    EXPECT_EQ(d.traced, want);
}

// --- STARTTLS, AUTH, BDAT ----------------------------------------------------------------

namespace {
const char kLhloChunking[] =
    "250-server.example\r\n250-PIPELINING\r\n250-CHUNKING\r\n250-STARTTLS\r\n250 AUTH PLAIN SCRAM-SHA-256\r\n";
const char kLhloChunkingLockstep[] = "250-server.example\r\n250 CHUNKING\r\n";
}  // namespace

TEST(SessionTls, StartTlsWaitsForTheHandshakeThenForgetsTheCapabilities) {
    Driver d(kLhloChunking);
    d.s.starttls();
    EXPECT_EQ(d.take(), "STARTTLS\r\n");
    d.reply("220 2.0.0 go ahead\r\n");
    EXPECT_EQ(d.s.phase(), Phase::tls_handshake);
    EXPECT_EQ(d.s.want(), Session::Want::idle);
    EXPECT_THROW(d.s.noop(), Error);  // nothing may be sent in plain text now
    d.s.tls_started();
    EXPECT_EQ(d.s.phase(), Phase::connected);
    EXPECT_FALSE(d.s.supports("CHUNKING"));  // RFC 3207: forget what was offered
    d.s.lhlo("client.example");
    EXPECT_EQ(d.take(), "LHLO client.example\r\n");
}

TEST(SessionTls, RefusedStartTlsLeavesThePlainSession) {
    Driver d(kLhloChunking);
    d.s.starttls();
    d.take();
    d.reply("454 4.7.0 TLS not available\r\n");
    EXPECT_EQ(d.s.phase(), Phase::ready);
    EXPECT_TRUE(d.s.supports("CHUNKING"));
    EXPECT_THROW(d.s.tls_started(), Error);
}

TEST(SessionAuth, ExchangeWithContinuationsAndHiddenCredentials) {
    Driver d(kLhloChunking);
    d.traced.clear();
    EXPECT_TRUE(d.s.auth("PLAIN", std::string("AHUAcA==")));
    EXPECT_EQ(d.take(), "AUTH PLAIN AHUAcA==\r\n");
    d.reply("235 2.7.0 ok\r\n");
    EXPECT_TRUE(d.s.authenticated());
    d.s.auth("SCRAM-SHA-256", std::string("biwsbj11c2Vy"));
    d.take();
    d.reply("334 cj1hYmM=\r\n");  // 334 is allowed here, and only here
    d.s.auth_response("Yz1iaXdz");
    d.s.auth_response("*");
    EXPECT_EQ(d.take(), "Yz1iaXdz\r\n*\r\n");
    for (const auto& [dir, line] : d.traced) {
        EXPECT_EQ(line.find("AHUAcA"), std::string::npos) << line;
        EXPECT_EQ(line.find("Yz1iaXdz"), std::string::npos) << line;
        EXPECT_EQ(line.find("biwsbj11c2Vy"), std::string::npos) << line;
    }
    EXPECT_EQ(d.traced.front().second, "AUTH PLAIN [credentials hidden]");
}

TEST(SessionAuth, AnInitialResponseTooLongForTheLineGoesAfter334) {
    Driver d(kLhloChunking);
    std::string long_response(600, 'A');
    EXPECT_FALSE(d.s.auth("PLAIN", long_response));
    EXPECT_EQ(d.take(), "AUTH PLAIN\r\n");
}

TEST(SessionAuth, A334ToAnythingElseIsAProtocolError) {
    Driver d(kLhloChunking);
    d.s.noop();
    d.take();
    EXPECT_THROW(d.reply("334 what\r\n"), Error);
}

TEST(SessionBdat, PipelinedSmallMessageIsOneWrite) {
    Driver d(kLhloChunking);
    d.s.deliver("s@x", {"a@x", "b@x", "c@x"});
    EXPECT_TRUE(d.s.bdat_mode());
    EXPECT_EQ(d.s.want(), Session::Want::body);  // the chunk joins MAIL and RCPT
    d.s.bdat_chunk("Subject: t\n\n.hi\n", true);
    EXPECT_EQ(d.take(),
              "MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\nRCPT TO:<c@x>\r\n"
              "BDAT 19 LAST\r\nSubject: t\r\n\r\n.hi\r\n");  // CRLF made, no dot-stuffing
    d.reply("250 ok\r\n");
    d.reply("250 ok\r\n");
    d.reply("550 no such user\r\n");
    d.reply("250 ok\r\n");
    EXPECT_EQ(d.s.awaiting(), 2u);  // one per accepted recipient
    d.reply("250 2.0.0 saved\r\n");
    d.reply("452 4.2.2 full\r\n");
    const Transaction& t = d.s.transaction();
    EXPECT_TRUE(t.finished);
    EXPECT_EQ(d.r(0).outcome, Outcome::ok);
    EXPECT_EQ(d.r(1).stage, Stage::rcpt);
    EXPECT_EQ(d.r(2).outcome, Outcome::tempfail);
    EXPECT_EQ(d.r(2).stage, Stage::data);
    EXPECT_EQ(d.s.want(), Session::Want::idle);
    EXPECT_FALSE(d.s.server_in_transaction());
}

TEST(SessionBdat, AChunkIsAPieceOfTheOutputOfItsOwn) {
    Driver d(kLhloChunking);
    d.s.deliver("s@x", {"a@x"});
    d.s.bdat_chunk("abcdef", false);
    std::string_view pieces[3];
    ASSERT_EQ(d.s.output_pieces(pieces), 2u);
    EXPECT_EQ(pieces[0], "MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nBDAT 6\r\n");
    EXPECT_EQ(pieces[1], "abcdef");
    EXPECT_EQ(d.s.output_size(), pieces[0].size() + pieces[1].size());
    // A driver that writes only part of it: what is left, in order.
    d.s.consumed(pieces[0].size() + 2);
    ASSERT_EQ(d.s.output_pieces(pieces), 1u);
    EXPECT_EQ(pieces[0], "cdef");
    // The next chunk before the rest went out: all of it, in order, and the
    // new chunk apart again.
    d.s.bdat_chunk("gh\n", true);
    ASSERT_EQ(d.s.output_pieces(pieces), 2u);
    EXPECT_EQ(pieces[0], "cdefBDAT 4 LAST\r\n");
    EXPECT_EQ(pieces[1], "gh\r\n");
    EXPECT_EQ(d.s.output(), "cdefBDAT 4 LAST\r\ngh\r\n");  // output() joins them
    ASSERT_EQ(d.s.output_pieces(pieces), 1u);
    EXPECT_EQ(d.take(), "cdefBDAT 4 LAST\r\ngh\r\n");
    EXPECT_EQ(d.s.output_size(), 0u);
    EXPECT_EQ(d.s.output_pieces(pieces), 0u);
}

TEST(SessionBdat, AChunkThatNeedsNoChangeIsTakenWithoutACopy) {
    Driver d(kLhloChunking);
    d.s.deliver("s@x", {"a@x"});
    std::string clean(1000, 'x');
    clean += "\r\n";
    const char* bytes = clean.data();
    d.s.bdat_chunk_swap(clean, false);
    std::string_view pieces[3];
    ASSERT_EQ(d.s.output_pieces(pieces), 2u);
    EXPECT_EQ(pieces[0], "MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nBDAT 1002\r\n");
    EXPECT_EQ(pieces[1].data(), bytes);  // the caller's own buffer
    EXPECT_EQ(pieces[1].size(), 1002u);
    d.take();
    // A chunk that needs a change is copied, changed; the caller keeps its bytes.
    std::string bare = "a\nb";
    d.s.bdat_chunk_swap(bare, false);
    EXPECT_EQ(bare, "a\nb");
    EXPECT_EQ(d.take(), "BDAT 4\r\na\r\nb");
    // The last one gets its CRLF when the body does not end with one.
    std::string end = "cd";
    d.s.bdat_chunk_swap(end, true);
    EXPECT_EQ(d.take(), "BDAT 4 LAST\r\ncd\r\n");
    d.reply("250 ok\r\n");
    d.reply("250 ok\r\n");
    d.reply("250 ok\r\n");
    d.reply("250 ok\r\n");
    d.reply("250 2.0.0 saved\r\n");
    EXPECT_TRUE(d.s.transaction().finished);
}

TEST(SessionBdat, CommandsQueuedAfterAChunkFollowIt) {
    // In a batch, RSET (and the next message) follow a LAST chunk.
    Driver d(kLhloChunking);
    d.s.batch_begin();
    d.s.batch_deliver("s@x", {"a@x"}, {}, {}, false, Transfer::bdat, false);
    d.s.bdat_chunk("hello\r\n", true);
    std::string_view pieces[3];
    ASSERT_EQ(d.s.output_pieces(pieces), 3u);
    EXPECT_EQ(pieces[1], "hello\r\n");
    EXPECT_EQ(pieces[2], "RSET\r\n");
    EXPECT_EQ(d.take(), "MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nBDAT 7 LAST\r\nhello\r\nRSET\r\n");
}

TEST(SessionBdat, NeverSentWithoutChunkingEvenWhenForced) {
    // force lets parameters through; BDAT to a server that did not offer
    // CHUNKING is another matter (RFC 3030 2).
    for (bool force : {false, true}) {
        Driver d(kLhloPlain);
        for (Transfer tr : {Transfer::bdat, Transfer::automatic}) {
            MailParams mp;
            if (tr == Transfer::automatic) mp.body = BodyType::binary_mime;
            try {
                d.s.deliver("s@x", {"a@x"}, mp, {}, force, tr);
                FAIL() << "force=" << force;
            } catch (const Error& e) {
                EXPECT_EQ(e.status(), Status::not_advertised);
                EXPECT_NE(std::string(e.what()).find("CHUNKING"), std::string::npos) << e.what();
            }
        }
        EXPECT_EQ(d.s.output(), "");
        d.s.deliver("s@x", {"a@x"}, {}, {}, force, Transfer::automatic);  // DATA, then
        EXPECT_FALSE(d.s.bdat_mode());
    }
}

TEST(SessionBdat, SeveralChunksAndTheirReplies) {
    Driver d(kLhloChunking);
    d.s.deliver("s@x", {"a@x"});
    d.s.bdat_chunk("abc\r", false);  // a CR at the end of a chunk...
    d.s.bdat_chunk("\ndef", true);   // ...and its LF in the next
    EXPECT_EQ(d.take(), "MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nBDAT 5\r\nabc\r\nBDAT 5 LAST\r\ndef\r\n");
    EXPECT_EQ(d.s.bdat_in_flight(), 1u);
    d.reply("250 ok\r\n");
    d.reply("250 ok\r\n");
    d.reply("250 2.0.0 5 octets\r\n");
    EXPECT_EQ(d.s.bdat_in_flight(), 0u);
    d.reply("250 2.0.0 delivered\r\n");
    EXPECT_TRUE(d.s.transaction().all_delivered());
}

TEST(SessionBdat, AChunkThatEncodesToNothingIsNotSent) {
    Driver d(kLhloChunking);
    d.s.deliver("s@x", {"a@x"});
    d.s.bdat_chunk("ab\r", false);  // sent as CR LF at once...
    d.s.bdat_chunk("\n", false);    // ...so this LF is part of it and leaves nothing
    EXPECT_EQ(d.s.bdat_in_flight(), 1u);
    d.s.bdat_chunk("c", true);
    EXPECT_EQ(d.take(), "MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nBDAT 4\r\nab\r\nBDAT 3 LAST\r\nc\r\n");
}

TEST(SessionBdat, CanonicalBodiesAreSentAsTheyAre) {
    Driver d(kLhloChunking);
    d.s.deliver("s@x", {"a@x"}, {}, {}, false, Transfer::bdat, true);
    const std::string body("bare\nlf\0x", 9);  // no CRLF fixing, a NUL kept, no final CRLF added
    d.s.bdat_chunk(body, true);
    EXPECT_EQ(d.take(), "MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nBDAT 9 LAST\r\n" + body);
}

TEST(SessionBdat, LockstepSendsChunksOnlyAfterTheRecipients) {
    Driver d(kLhloChunkingLockstep);
    d.s.deliver("s@x", {"a@x"});
    EXPECT_EQ(d.take(), "MAIL FROM:<s@x>\r\n");
    d.reply("250 ok\r\n");
    EXPECT_EQ(d.take(), "RCPT TO:<a@x>\r\n");
    EXPECT_EQ(d.s.want(), Session::Want::read);
    d.reply("250 ok\r\n");
    EXPECT_EQ(d.s.want(), Session::Want::body);
    d.s.bdat_chunk("m", true);
    EXPECT_EQ(d.take(), "BDAT 3 LAST\r\nm\r\n");
    d.reply("250 delivered\r\n");
    EXPECT_TRUE(d.s.transaction().all_delivered());
}

TEST(SessionBdat, NobodyAcceptedMeansNoReplyButANoopToBeSure) {
    Driver d(kLhloChunking);
    d.s.deliver("s@x", {"a@x"});
    d.s.bdat_chunk("m", true);
    d.take();
    d.reply("250 ok\r\n");
    d.reply("550 unknown\r\n");
    // RFC 2033 4.3: no reply to BDAT LAST; a NOOP finds out whether the server sent one anyway.
    EXPECT_EQ(d.take(), "NOOP\r\n");
    EXPECT_TRUE(d.s.transaction().finished);
    d.reply("503 5.5.0 No valid recipients\r\n");  // Dovecot 2.3 does send one
    EXPECT_EQ(d.s.awaiting(), 1u);                 // so the NOOP's own is still due
    d.reply("250 2.0.0 OK\r\n");
    EXPECT_EQ(d.s.want(), Session::Want::idle);
    // After that refusal the server may still hold the transaction (Dovecot does): RSET first.
    EXPECT_TRUE(d.s.server_in_transaction());
    // And a server that follows the RFC: the NOOP's 2xx comes at once.
    d.s.deliver("s@x", {"a@x"});
    d.s.bdat_chunk("m", true);
    EXPECT_EQ(d.take(), "RSET\r\nMAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nBDAT 3 LAST\r\nm\r\n");
    d.reply("250 2.0.0 OK\r\n");
    EXPECT_FALSE(d.s.server_in_transaction());
    d.reply("250 ok\r\n");
    d.reply("550 unknown\r\n");
    EXPECT_EQ(d.take(), "NOOP\r\n");
    d.reply("250 2.0.0 OK\r\n");
    EXPECT_EQ(d.s.awaiting(), 0u);
    EXPECT_EQ(d.s.want(), Session::Want::idle);
    EXPECT_FALSE(d.s.server_in_transaction());  // no refusal: the transaction ended with BDAT LAST
}

TEST(SessionBdat, ARefusedChunkIsEveryonesVerdictAndNoLastFollows) {
    Driver d(kLhloChunking);
    d.s.deliver("s@x", {"a@x", "b@x"});
    d.s.bdat_chunk("part one", false);
    d.take();
    d.reply("250 ok\r\n");
    d.reply("250 ok\r\n");
    d.reply("250 ok\r\n");
    d.reply("552 5.3.4 message too big\r\n");
    EXPECT_TRUE(d.s.bdat_failed());
    EXPECT_THROW(d.s.bdat_chunk("more", true), Error);
    EXPECT_EQ(d.s.output(), "");
    EXPECT_TRUE(d.s.transaction().finished);
    EXPECT_EQ(d.r(0).reply.code, 552);
    EXPECT_EQ(d.r(1).outcome, Outcome::permfail);
    EXPECT_EQ(d.r(1).stage, Stage::data);
    EXPECT_TRUE(d.s.server_in_transaction());  // RSET before the next one
    d.s.deliver("s@x", {"a@x"});
    EXPECT_EQ(d.s.output().substr(0, 6), "RSET\r\n");
}

TEST(SessionBdat, AnEmptyMessageGoesByData) {
    Driver d(kLhloChunking);
    d.s.deliver("s@x", {"a@x"});
    d.s.bdat_to_data();
    EXPECT_EQ(d.take(), "MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nDATA\r\n");
    d.reply("250 ok\r\n");
    d.reply("250 ok\r\n");
    d.reply("354 go\r\n");
    d.s.end_body();
    EXPECT_EQ(d.take(), ".\r\n");
    d.reply("250 saved\r\n");
    EXPECT_TRUE(d.s.transaction().all_delivered());
}

TEST(SessionBdat, TheCallerCanChooseData) {
    Driver d(kLhloChunking);
    d.s.deliver("s@x", {"a@x"}, {}, {}, false, Transfer::data);
    EXPECT_FALSE(d.s.bdat_mode());
    EXPECT_EQ(d.take(), "MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nDATA\r\n");
    Driver plain;  // no CHUNKING offered
    EXPECT_THROW(plain.s.deliver("s@x", {"a@x"}, {}, {}, false, Transfer::bdat), Error);
    EXPECT_EQ(plain.s.output(), "");
    plain.s.deliver("s@x", {"a@x"});  // automatic: DATA
    EXPECT_FALSE(plain.s.bdat_mode());
}

TEST(SessionBdat, StepByStepChunksAsGiven) {
    Driver d(kLhloChunking);
    d.s.mail(MailVerb::mail, "s@x");
    d.reply("250 ok\r\n");
    d.s.rcpt("a@x");
    d.reply("250 ok\r\n");
    d.s.rcpt("b@x");
    d.reply("250 ok\r\n");
    d.take();
    d.s.bdat_raw("raw\n", false);
    EXPECT_EQ(d.take(), "BDAT 4\r\nraw\n");
    d.reply("250 4 octets\r\n");
    d.s.bdat_raw("", true);
    EXPECT_EQ(d.take(), "BDAT 0 LAST\r\n");
    EXPECT_EQ(d.s.awaiting(), 2u);
    d.reply("250 a\r\n");
    d.reply("250 b\r\n");
    EXPECT_TRUE(d.s.transaction().all_delivered());
}

// --- a batch: transactions back to back ------------------------------------------------

namespace {

// Takes every finished transaction of a batch, in order.
std::vector<std::pair<std::uint64_t, Transaction>> finished(Session& s) {
    std::vector<std::pair<std::uint64_t, Transaction>> out;
    while (s.batch_has_finished()) out.push_back(s.batch_take());
    return out;
}

// Queues a one-chunk message by BDAT LAST.
std::uint64_t small(Driver& d, const std::vector<std::string>& rcpts, std::string_view body = "m") {
    std::uint64_t id = d.s.batch_deliver("s@x", rcpts);
    d.s.bdat_chunk(body, true);
    return id;
}

}  // namespace

// batch_skip takes the next finished transaction's id without its results; a batch of one
// hands over its id only (its results stay in transaction(), reused in place by the next one).
TEST(SessionBatch, SkipGivesIdsInOrderAndABatchOfOneKeepsItsResults) {
    Driver d(kLhloChunking);
    d.s.batch_begin();
    std::uint64_t a = small(d, {"a@x"});
    std::uint64_t b = small(d, {"b@x"});
    d.take();
    for (const char* r : {"250 ok\r\n", "250 ok\r\n", "250 a saved\r\n", "250 reset\r\n", "250 ok\r\n", "250 ok\r\n",
                          "550 b refused\r\n", "250 reset\r\n"})
        d.reply(r);
    ASSERT_TRUE(d.s.batch_has_finished());
    EXPECT_EQ(d.s.batch_skip(), a);
    auto rest = finished(d.s);
    ASSERT_EQ(rest.size(), 1u);
    EXPECT_EQ(rest[0].first, b);
    EXPECT_EQ(rest[0].second.recipients[0].reply.code, 550);
    EXPECT_THROW(d.s.batch_skip(), Error);  // nothing left
    d.s.batch_end();

    for (int round = 0; round < 2; ++round) {  // the second reuses the first's results in place
        d.s.batch_begin(true);
        std::uint64_t one = small(d, {"c@x", "d@x"});
        d.take();
        for (const char* r : {"250 ok\r\n", "250 ok\r\n", "250 ok\r\n", "250 c saved\r\n", "452 d full\r\n"})
            d.reply(r);
        EXPECT_FALSE(d.s.batching());  // a batch of one ends by itself
        ASSERT_TRUE(d.s.batch_has_finished());
        auto taken = d.s.batch_take();
        EXPECT_EQ(taken.first, one);
        EXPECT_TRUE(taken.second.recipients.empty());  // no copy of the results
        EXPECT_FALSE(d.s.batch_has_finished());
        const Transaction& t = d.s.transaction();
        ASSERT_EQ(t.recipients.size(), 2u);
        EXPECT_EQ(t.recipients[0].address, "c@x");
        EXPECT_EQ(t.recipients[0].outcome, Outcome::ok);
        EXPECT_EQ(t.recipients[1].outcome, Outcome::tempfail);
        EXPECT_EQ(t.recipients[1].reply.text(), "d full");
        EXPECT_TRUE(t.finished);
    }
}

TEST(SessionBatch, BdatTransactionsGoBackToBackEachFollowedByRset) {
    Driver d(kLhloChunking);
    d.s.batch_begin();
    std::uint64_t a = small(d, {"a@x", "b@x"});
    std::uint64_t b = small(d, {"c@x"}, "n");
    EXPECT_NE(a, b);
    EXPECT_EQ(d.take(),
              "MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\nBDAT 3 LAST\r\nm\r\nRSET\r\n"
              "MAIL FROM:<s@x>\r\nRCPT TO:<c@x>\r\nBDAT 3 LAST\r\nn\r\nRSET\r\n");
    EXPECT_EQ(d.s.awaiting(), 9u);  // MAIL, 2 RCPT, BDAT LAST, RSET; MAIL, RCPT, BDAT LAST, RSET
    d.reply("250 2.1.0 ok\r\n");
    d.reply("250 2.1.5 ok\r\n");
    d.reply("550 5.1.1 unknown\r\n");
    EXPECT_EQ(d.s.awaiting(), 1u + 1 + 4);  // one final (b refused), RSET, then the second message
    EXPECT_FALSE(d.s.batch_has_finished());
    d.reply("250 2.0.0 <a@x> saved\r\n");
    EXPECT_FALSE(d.s.batch_has_finished());  // its RSET is still owed
    d.reply("250 2.0.0 reset\r\n");
    auto done = finished(d.s);
    ASSERT_EQ(done.size(), 1u);
    EXPECT_EQ(done[0].first, a);
    const Transaction& t = done[0].second;
    ASSERT_EQ(t.recipients.size(), 2u);
    EXPECT_EQ(t.recipients[0].outcome, Outcome::ok);
    EXPECT_EQ(t.recipients[1].outcome, Outcome::permfail);
    EXPECT_EQ(t.recipients[1].stage, Stage::rcpt);
    d.reply("250 2.1.0 ok\r\n");
    d.reply("250 2.1.5 ok\r\n");
    d.reply("452 4.2.2 <c@x> full\r\n");
    d.reply("250 2.0.0 reset\r\n");
    done = finished(d.s);
    ASSERT_EQ(done.size(), 1u);
    EXPECT_EQ(done[0].first, b);
    EXPECT_EQ(done[0].second.recipients[0].outcome, Outcome::tempfail);
    EXPECT_EQ(done[0].second.recipients[0].stage, Stage::data);
    EXPECT_EQ(d.s.awaiting(), 0u);
    d.s.batch_end();
    EXPECT_FALSE(d.s.batching());
    d.s.noop();  // the session goes on as before
    EXPECT_EQ(d.take(), "NOOP\r\n");
}

TEST(SessionBatch, NobodyAcceptedByAnRfcServerOrByDovecot) {
    // RFC 2033 4.3: no reply to BDAT LAST when nobody was accepted; Dovecot 2.3
    // answers "503 5.5.0 No valid recipients" and keeps the transaction. The
    // RSET after BDAT LAST tells them apart, and ends what Dovecot kept.
    for (bool dovecot : {false, true}) {
        Driver d(kLhloChunking);
        d.s.batch_begin();
        std::uint64_t a = small(d, {"nobody@x"});
        std::uint64_t b = small(d, {"a@x"});
        EXPECT_EQ(d.take(),
                  "MAIL FROM:<s@x>\r\nRCPT TO:<nobody@x>\r\nBDAT 3 LAST\r\nm\r\nRSET\r\n"
                  "MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nBDAT 3 LAST\r\nm\r\nRSET\r\n");
        d.reply("250 2.1.0 ok\r\n");
        d.reply("550 5.1.1 <nobody@x> User doesn't exist\r\n");
        if (dovecot) d.reply("503 5.5.0 No valid recipients\r\n");
        d.reply("250 2.0.0 OK\r\n");  // RSET
        auto done = finished(d.s);
        ASSERT_EQ(done.size(), 1u) << dovecot;
        EXPECT_EQ(done[0].first, a);
        EXPECT_TRUE(done[0].second.finished);
        EXPECT_EQ(done[0].second.recipients[0].outcome, Outcome::permfail);
        EXPECT_EQ(done[0].second.recipients[0].stage, Stage::rcpt);
        // The second message is read as its own, whatever came before.
        d.reply("250 2.1.0 ok\r\n");
        d.reply("250 2.1.5 ok\r\n");
        d.reply("250 2.0.0 <a@x> saved\r\n");
        d.reply("250 2.0.0 OK\r\n");
        done = finished(d.s);
        ASSERT_EQ(done.size(), 1u) << dovecot;
        EXPECT_EQ(done[0].first, b);
        EXPECT_TRUE(done[0].second.all_delivered());
        EXPECT_EQ(d.s.awaiting(), 0u);
        EXPECT_FALSE(d.s.server_in_transaction());
        d.s.batch_end();
    }
}

TEST(SessionBatch, RefusedMailRefusedChunkAndRefusedLastEachStayWithTheirMessage) {
    Driver d(kLhloChunking);
    d.s.batch_begin();
    small(d, {"a@x", "b@x"});  // MAIL refused
    small(d, {"c@x"});         // LAST refused
    d.s.batch_deliver("s@x", {"d@x"});
    d.s.bdat_chunk("part", false);  // a chunk refused: no LAST, RSET before the next MAIL
    d.take();
    d.reply("451 4.3.0 try later\r\n");
    d.reply("503 5.5.1 MAIL first\r\n");
    d.reply("503 5.5.1 MAIL first\r\n");
    d.reply("503 5.5.1 MAIL first\r\n");  // to BDAT LAST, sent without MAIL
    d.reply("250 2.0.0 OK\r\n");
    d.reply("250 2.1.0 ok\r\n");
    d.reply("250 2.1.5 ok\r\n");
    d.reply("552 5.3.4 <c@x> too big\r\n");
    d.reply("250 2.0.0 OK\r\n");
    d.reply("250 2.1.0 ok\r\n");
    d.reply("250 2.1.5 ok\r\n");
    d.reply("554 5.6.0 bad chunk\r\n");
    EXPECT_EQ(d.s.awaiting(), 0u);
    auto done = finished(d.s);
    ASSERT_EQ(done.size(), 3u);
    for (const auto& r : done[0].second.recipients) {
        EXPECT_EQ(r.outcome, Outcome::tempfail);
        EXPECT_EQ(r.stage, Stage::mail);
        EXPECT_EQ(r.reply.code, 451);
    }
    EXPECT_EQ(done[1].second.recipients[0].reply.code, 552);
    EXPECT_EQ(done[1].second.recipients[0].stage, Stage::data);
    EXPECT_EQ(done[2].second.recipients[0].reply.code, 554);
    EXPECT_TRUE(done[2].second.finished);
    small(d, {"e@x"});
    EXPECT_EQ(d.take(), "RSET\r\nMAIL FROM:<s@x>\r\nRCPT TO:<e@x>\r\nBDAT 3 LAST\r\nm\r\nRSET\r\n");
}

TEST(SessionBatch, ByDataTheBodyGoesWithTheNextGroupAndARefusedDataResets) {
    Driver d;  // PIPELINING, no CHUNKING
    d.s.batch_begin();
    d.s.batch_deliver("s@x", {"a@x"});
    EXPECT_EQ(d.take(), "MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nDATA\r\n");
    d.reply("250 ok\r\n");
    d.reply("250 ok\r\n");
    EXPECT_TRUE(d.s.awaiting_data_reply());
    d.reply("354 go\r\n");
    EXPECT_EQ(d.s.want(), Session::Want::body);
    d.s.body("one\n");
    d.s.end_body();
    d.s.batch_deliver("s@x", {"b@x"});
    EXPECT_EQ(d.take(), "one\r\n.\r\nMAIL FROM:<s@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n");
    d.reply("250 2.0.0 <a@x> saved\r\n");
    auto done = finished(d.s);
    ASSERT_EQ(done.size(), 1u);
    EXPECT_TRUE(done[0].second.all_delivered());
    d.reply("250 ok\r\n");
    d.reply("550 5.1.1 unknown\r\n");
    d.reply("503 5.5.1 No valid recipients\r\n");
    EXPECT_FALSE(d.s.awaiting_data_reply());
    done = finished(d.s);
    ASSERT_EQ(done.size(), 1u);
    EXPECT_EQ(done[0].second.recipients[0].stage, Stage::rcpt);
    d.s.batch_deliver("s@x", {"c@x"});
    EXPECT_EQ(d.take(), "RSET\r\nMAIL FROM:<s@x>\r\nRCPT TO:<c@x>\r\nDATA\r\n");  // DATA refused: the server may hold it
}

TEST(SessionBatch, A421OrACloseMarksEveryTransactionInFlightUnknown) {
    for (bool by_421 : {true, false}) {
        Driver d(kLhloChunking);
        d.s.batch_begin();
        for (int i = 0; i < 3; ++i) small(d, {"a@x", "b@x"});
        d.take();
        d.reply("250 ok\r\n");
        d.reply("250 ok\r\n");
        d.reply("550 no\r\n");
        d.reply("250 saved\r\n");
        d.reply("250 reset\r\n");  // the first is whole
        d.reply("250 ok\r\n");     // the second's MAIL...
        if (by_421)
            d.reply("421 4.3.2 shutting down\r\n");
        else
            d.s.close();
        EXPECT_EQ(d.s.phase(), Phase::closed);
        auto done = finished(d.s);
        ASSERT_EQ(done.size(), 3u);
        EXPECT_TRUE(done[0].second.finished);
        EXPECT_EQ(done[0].second.recipients[1].outcome, Outcome::permfail);
        for (std::size_t k = 1; k < 3; ++k) {
            EXPECT_FALSE(done[k].second.finished);
            for (std::size_t i = by_421 && k == 1 ? 1 : 0; i < 2; ++i)
                EXPECT_EQ(done[k].second.recipients[i].outcome, Outcome::unknown);
        }
        if (by_421) {
            EXPECT_EQ(done[1].second.recipients[0].rcpt_reply.code, 421);  // the 421 answered its RCPT
            EXPECT_EQ(done[1].second.recipients[0].outcome, Outcome::tempfail);
        }
        d.s.batch_end();
    }
}

TEST(SessionBatch, ALocalRefusalQueuesNothingAndTheBatchGoesOn) {
    Driver d(kLhloChunking);
    d.s.batch_begin();
    small(d, {"a@x"});
    std::string before(d.s.output());
    EXPECT_THROW(d.s.batch_deliver("s@x", {"bad\r\naddress@x"}), Error);
    EXPECT_THROW(d.s.batch_deliver("s@x", {}), Error);
    EXPECT_EQ(d.s.output(), before);
    EXPECT_EQ(d.s.want(), Session::Want::write);  // not wanting a body: nothing was started
    small(d, {"b@x"});
    EXPECT_EQ(d.take(),
              "MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nBDAT 3 LAST\r\nm\r\nRSET\r\n"
              "MAIL FROM:<s@x>\r\nRCPT TO:<b@x>\r\nBDAT 3 LAST\r\nm\r\nRSET\r\n");
}

TEST(SessionBatch, NeedsNoReplyOwedAndWithoutPipeliningOneTransactionAtATime) {
    Driver plain(kLhloPlain);
    plain.s.batch_begin();  // without PIPELINING: in lockstep
    plain.s.batch_deliver("s@x", {"a@x"});
    EXPECT_EQ(plain.take(), "MAIL FROM:<s@x>\r\n");
    EXPECT_THROW(plain.s.batch_deliver("s@x", {"b@x"}), Error);  // MAIL's reply first
    EXPECT_EQ(plain.s.output(), "");
    Driver d(kLhloChunking);
    d.s.noop();
    EXPECT_THROW(d.s.batch_begin(), Error);
    Driver e(kLhloChunking);
    EXPECT_THROW(e.s.batch_deliver("s@x", {"a@x"}), Error);  // no batch begun
    e.s.batch_begin();
    EXPECT_THROW(e.s.deliver("s@x", {"a@x"}), Error);        // one thing at a time
}

TEST(SessionBatch, WithoutPipeliningTransactionsGoInLockstepEachWithItsResults) {
    Driver d(kLhloPlain);
    d.s.batch_begin();
    std::uint64_t a = d.s.batch_deliver("s@x", {"a@x", "b@x"});
    EXPECT_EQ(d.take(), "MAIL FROM:<s@x>\r\n");
    EXPECT_TRUE(d.s.lockstep_pending());
    d.reply("250 ok\r\n");
    EXPECT_EQ(d.take(), "RCPT TO:<a@x>\r\n");
    d.reply("250 ok\r\n");
    EXPECT_EQ(d.take(), "RCPT TO:<b@x>\r\n");
    d.reply("550 5.1.1 unknown\r\n");
    EXPECT_FALSE(d.s.lockstep_pending());
    EXPECT_EQ(d.take(), "DATA\r\n");
    d.reply("354 go\r\n");
    d.s.body("one\n");
    d.s.end_body();
    EXPECT_EQ(d.take(), "one\r\n.\r\n");
    EXPECT_FALSE(d.s.batch_has_finished());
    d.reply("250 2.0.0 <a@x> saved\r\n");
    auto done = finished(d.s);
    ASSERT_EQ(done.size(), 1u);
    EXPECT_EQ(done[0].first, a);
    EXPECT_EQ(done[0].second.recipients[0].outcome, Outcome::ok);
    EXPECT_EQ(done[0].second.recipients[1].stage, Stage::rcpt);
    // Nobody accepted: no DATA; the server still holds the transaction.
    std::uint64_t b = d.s.batch_deliver("s@x", {"c@x"});
    EXPECT_EQ(d.take(), "MAIL FROM:<s@x>\r\n");
    d.reply("250 ok\r\n");
    EXPECT_EQ(d.take(), "RCPT TO:<c@x>\r\n");
    d.reply("450 4.2.1 later\r\n");
    EXPECT_EQ(d.s.output(), "");
    EXPECT_EQ(d.s.want(), Session::Want::idle);
    done = finished(d.s);
    ASSERT_EQ(done.size(), 1u);
    EXPECT_EQ(done[0].first, b);
    EXPECT_TRUE(done[0].second.finished);
    EXPECT_EQ(done[0].second.recipients[0].outcome, Outcome::tempfail);
    // So RSET goes first, and MAIL after its reply; a refused MAIL sends no RCPT.
    std::uint64_t c = d.s.batch_deliver("t@x", {"d@x", "e@x"});
    EXPECT_EQ(d.take(), "RSET\r\n");
    d.reply("250 reset\r\n");
    EXPECT_EQ(d.take(), "MAIL FROM:<t@x>\r\n");
    d.reply("550 5.7.1 sender refused\r\n");
    EXPECT_EQ(d.s.output(), "");
    done = finished(d.s);
    ASSERT_EQ(done.size(), 1u);
    EXPECT_EQ(done[0].first, c);
    for (const auto& r : done[0].second.recipients) {
        EXPECT_EQ(r.stage, Stage::mail);
        EXPECT_EQ(r.outcome, Outcome::permfail);
    }
    EXPECT_EQ(d.s.awaiting(), 0u);
    d.s.batch_end();
    EXPECT_FALSE(d.s.server_in_transaction());
}

TEST(SessionBatch, WithoutPipeliningByBdatTheChunksWaitForTheRecipientsAndNoRsetFollows) {
    Driver d(kLhloChunkingLockstep);
    d.s.batch_begin();
    d.s.batch_deliver("s@x", {"a@x"});
    EXPECT_EQ(d.s.want(), Session::Want::write);  // no chunk before the recipients are known
    EXPECT_EQ(d.take(), "MAIL FROM:<s@x>\r\n");
    d.reply("250 ok\r\n");
    EXPECT_EQ(d.take(), "RCPT TO:<a@x>\r\n");
    EXPECT_THROW(d.s.bdat_chunk("early", true), Error);
    d.reply("250 ok\r\n");
    EXPECT_EQ(d.s.want(), Session::Want::body);
    d.s.bdat_chunk("m", true);
    EXPECT_EQ(d.take(), "BDAT 3 LAST\r\nm\r\n");  // someone was accepted: no RSET, no NOOP
    d.reply("250 2.0.0 saved\r\n");
    auto done = finished(d.s);
    ASSERT_EQ(done.size(), 1u);
    EXPECT_TRUE(done[0].second.all_delivered());
    // An empty message goes by DATA, after the recipients.
    d.s.batch_deliver("s@x", {"b@x"});
    d.s.bdat_to_data();
    EXPECT_EQ(d.take(), "MAIL FROM:<s@x>\r\n");
    d.reply("250 ok\r\n");
    EXPECT_EQ(d.take(), "RCPT TO:<b@x>\r\n");
    d.reply("250 ok\r\n");
    EXPECT_EQ(d.take(), "DATA\r\n");
    d.reply("354 go\r\n");
    d.s.end_body();
    EXPECT_EQ(d.take(), ".\r\n");
    d.reply("250 2.0.0 saved\r\n");
    done = finished(d.s);
    ASSERT_EQ(done.size(), 1u);
    EXPECT_TRUE(done[0].second.all_delivered());
    EXPECT_EQ(d.s.awaiting(), 0u);
    d.s.batch_end();
}

TEST(SessionBatch, ASingleDeliveryIsABatchOfOneWhoseResultsStayInTransaction) {
    Driver d(kLhloChunking);
    d.s.deliver("s@x", {"a@x", "b@x"});
    EXPECT_TRUE(d.s.batching());
    EXPECT_TRUE(d.s.delivering());
    ASSERT_EQ(d.s.transaction().recipients.size(), 2u);  // this delivery's, pending, before any reply
    EXPECT_EQ(d.r(0).outcome, Outcome::pending);
    EXPECT_THROW(d.s.batch_deliver("s@x", {"c@x"}), Error);  // one transaction, no more
    d.s.bdat_chunk("m", true);
    EXPECT_EQ(d.take(), "MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\nBDAT 3 LAST\r\nm\r\n");  // no RSET
    for (const char* r : {"250 ok\r\n", "250 ok\r\n", "250 ok\r\n", "250 a saved\r\n"}) d.reply(r);
    EXPECT_FALSE(d.s.batch_has_finished());
    d.reply("452 b full\r\n");
    // Handed over: the batch ended by itself, its results are transaction()'s, not a copy.
    EXPECT_FALSE(d.s.batching());
    EXPECT_FALSE(d.s.delivering());
    auto done = finished(d.s);
    ASSERT_EQ(done.size(), 1u);
    EXPECT_TRUE(done[0].second.recipients.empty());
    EXPECT_EQ(d.r(0).outcome, Outcome::ok);
    EXPECT_EQ(d.r(1).outcome, Outcome::tempfail);
    // The step-by-step API goes on as before, and so does the next delivery.
    d.s.noop();
    EXPECT_EQ(d.take(), "NOOP\r\n");
    d.reply("250 ok\r\n");
    d.s.deliver("s@x", {"c@x"});
    EXPECT_EQ(d.s.transaction().recipients.size(), 1u);
    d.s.close();
    EXPECT_EQ(d.r(0).outcome, Outcome::unknown);  // the session ended under it
    done = finished(d.s);
    ASSERT_EQ(done.size(), 1u);
    EXPECT_FALSE(d.s.batching());
}

// --- one line per recipient (Net::Server::Mail::LMTP) ------------------------------------

namespace {

const char kNsmBanner[] = "220 mx.example LMTP Net::Server::Mail (Perl) Service ready\r\n";
const char kNsmLhlo[] = "250-mx.example Service ready\r\n250 PIPELINING\r\n";

// MAIL, the RCPTs (all accepted but those in `refused`) and DATA, answered; the body sent.
void through_body(Driver& d, const std::vector<std::string>& rcpts, const std::vector<std::string>& refused = {}) {
    d.s.deliver("s@x", rcpts);
    d.take();
    d.reply("250 Ok\r\n");
    for (const auto& r : rcpts)
        d.reply(std::find(refused.begin(), refused.end(), r) == refused.end() ? "250 Ok\r\n" : "550 no\r\n");
    d.reply("354 go\r\n");
    d.s.body("x\n");
    d.s.end_body();
    d.take();
}

}  // namespace

TEST(SessionLinePerRecipient, ServerNamedInTheBannerAnswersEveryRecipientInOneReply) {
    for (std::size_t n : {2u, 3u, 4u}) {
        Driver d(kNsmLhlo, kNsmBanner);
        EXPECT_TRUE(d.s.line_per_recipient_server());
        std::vector<std::string> rcpts;
        std::string reply;
        for (std::size_t i = 0; i < n; ++i) {
            rcpts.push_back("r" + std::to_string(i) + "@x");
            reply += std::string("250") + (i + 1 < n ? "-" : " ") + "Ok\r\n";
        }
        through_body(d, rcpts);
        EXPECT_EQ(d.s.awaiting(), n);
        d.reply(reply);
        EXPECT_EQ(d.s.awaiting(), 0u) << "nothing more is waited for";
        const Transaction& t = d.s.transaction();
        EXPECT_TRUE(t.finished);
        EXPECT_TRUE(t.all_delivered());
        for (std::size_t i = 0; i < n; ++i) {
            EXPECT_EQ(d.r(i).reply.code, 250);
            EXPECT_EQ(d.r(i).reply.lines, std::vector<std::string>{"Ok"});
            EXPECT_EQ(d.r(i).stage, Stage::data);
        }
        EXPECT_EQ(d.s.phase(), Phase::ready);
    }
}

TEST(SessionLinePerRecipient, MixedCodesSettleInRcptOrderSkippingTheRefused) {
    for (const char* banner : {kNsmBanner, "220 other.example ESMTP\r\n"}) {
        Driver d(kNsmLhlo, banner);
        through_body(d, {"a@x", "nosuch@x", "b@x", "c@x"}, {"nosuch@x"});
        EXPECT_EQ(d.s.awaiting(), 3u);
        d.reply("250-Ok\r\n550-<b@x> Failed\r\n452 4.2.2 <c@x> full\r\n");
        EXPECT_EQ(d.s.awaiting(), 0u);
        EXPECT_EQ(d.r(0).outcome, Outcome::ok);
        EXPECT_EQ(d.r(1).outcome, Outcome::permfail);
        EXPECT_EQ(d.r(1).stage, Stage::rcpt);
        EXPECT_EQ(d.r(2).outcome, Outcome::permfail);
        EXPECT_EQ(d.r(2).reply.code, 550);
        EXPECT_EQ(d.r(2).reply.text(), "<b@x> Failed");
        EXPECT_EQ(d.r(3).outcome, Outcome::tempfail);
        EXPECT_EQ(d.r(3).reply.enhanced.str(), "4.2.2");
        EXPECT_EQ(d.r(3).reply.text(), "<c@x> full");
        EXPECT_TRUE(d.s.transaction().finished);
    }
}

TEST(SessionLinePerRecipient, AConformingServerIsNeverMisread) {
    // The same lines from a server not known to answer line by line: the first
    // recipient's own (multi-line) reply, then one reply for each other.
    Driver d;
    through_body(d, {"a@x", "b@x", "c@x"});
    d.reply("250-2.0.0 <a@x> saved\r\n250-2.0.0 as message 1\r\n250 2.0.0 and logged\r\n");
    EXPECT_EQ(d.s.awaiting(), 2u);
    EXPECT_EQ(d.r(0).reply.lines.size(), 3u);
    d.reply("250 2.0.0 <b@x> saved\r\n");
    d.reply("552 5.2.2 <c@x> full\r\n");
    EXPECT_EQ(d.r(1).reply.lines, std::vector<std::string>{"2.0.0 <b@x> saved"});
    EXPECT_EQ(d.r(2).outcome, Outcome::permfail);
    EXPECT_TRUE(d.s.transaction().finished);
}

TEST(SessionLinePerRecipient, OnlyExactlyOneLinePerAcceptedRecipient) {
    {
        // One recipient: a multi-line reply is its own, whoever the server is.
        Driver d(kNsmLhlo, kNsmBanner);
        through_body(d, {"a@x"});
        d.reply("250-Ok\r\n250 and more\r\n");
        EXPECT_TRUE(d.s.transaction().finished);
        EXPECT_EQ(d.r(0).reply.lines.size(), 2u);
    }
    {
        // Named server, two lines for three recipients: read as RFC 2033 says.
        Driver d(kNsmLhlo, kNsmBanner);
        through_body(d, {"a@x", "b@x", "c@x"});
        d.reply("250-Ok\r\n250 Ok\r\n");
        EXPECT_EQ(d.s.awaiting(), 2u);
    }
    {
        // A 3xx line is no verdict: the lines are no per-recipient reply, and mixed codes no reply.
        Driver d(kNsmLhlo, kNsmBanner);
        through_body(d, {"a@x", "b@x"});
        EXPECT_THROW(d.reply("250-Ok\r\n354 go ahead\r\n"), Error);
        EXPECT_EQ(d.r(0).outcome, Outcome::unknown);
        EXPECT_EQ(d.r(1).outcome, Outcome::unknown);
    }
    {
        // Mixed codes but the wrong number of lines: no reply at all.
        Driver d;
        through_body(d, {"a@x", "b@x", "c@x"});
        try {
            d.reply("250-Ok\r\n550 Failed\r\n");
            ADD_FAILURE() << "accepted";
        } catch (const Error& e) {
            EXPECT_EQ(e.status(), Status::protocol);
            EXPECT_NE(std::string(e.what()).find("250 Ok; 550 Failed"), std::string::npos) << e.what();
        }
        EXPECT_EQ(d.s.phase(), Phase::closed);
        for (std::size_t i = 0; i < 3; ++i) EXPECT_EQ(d.r(i).outcome, Outcome::unknown);
    }
}

TEST(SessionLinePerRecipient, MixedCodesAnywhereElseAreAProtocolError) {
    Driver d;
    d.s.noop();
    d.take();
    try {
        d.reply("250-a\r\n251 b\r\n");
        ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
        EXPECT_EQ(e.status(), Status::protocol);
        EXPECT_NE(std::string(e.what()).find("changed within a multi-line reply"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("251"), std::string::npos) << e.what();
    }
    EXPECT_EQ(d.s.phase(), Phase::closed);
    Session s;
    s.start();
    EXPECT_THROW(s.on_reply(parse("220-a\r\n554 b\r\n")), Error);
}

TEST(SessionLinePerRecipient, StrictRepliesNeverSplit) {
    {
        Driver d(kNsmLhlo, kNsmBanner, true);
        through_body(d, {"a@x", "b@x"});
        d.reply("250-Ok\r\n250 Ok\r\n");
        EXPECT_EQ(d.s.awaiting(), 1u) << "the first recipient's reply; the second's is still owed";
    }
    {
        Driver d(kNsmLhlo, kNsmBanner, true);
        through_body(d, {"a@x", "b@x"});
        EXPECT_THROW(d.reply("250-Ok\r\n550 Failed\r\n"), Error);
        EXPECT_EQ(d.s.phase(), Phase::closed);
    }
}

TEST(SessionLinePerRecipient, InABatchEachTransactionGetsItsOwnLines) {
    Driver d("250-mx.example Service ready\r\n250-PIPELINING\r\n250 CHUNKING\r\n", kNsmBanner);
    d.s.batch_begin();
    std::uint64_t a = small(d, {"a@x", "b@x"});
    std::uint64_t b = small(d, {"c@x", "e@x", "f@x"});
    d.take();
    for (const char* r : {"250 ok\r\n", "250 ok\r\n", "250 ok\r\n", "250-Ok\r\n550 <b@x> Failed\r\n", "250 reset\r\n",
                          "250 ok\r\n", "250 ok\r\n", "250 ok\r\n", "250 ok\r\n", "250-Ok\r\n250-Ok\r\n250 Ok\r\n",
                          "250 reset\r\n"})
        d.reply(r);
    EXPECT_EQ(d.s.awaiting(), 0u);
    auto done = finished(d.s);
    ASSERT_EQ(done.size(), 2u);
    EXPECT_EQ(done[0].first, a);
    EXPECT_EQ(done[0].second.recipients[0].outcome, Outcome::ok);
    EXPECT_EQ(done[0].second.recipients[1].outcome, Outcome::permfail);
    EXPECT_EQ(done[1].first, b);
    EXPECT_TRUE(done[1].second.all_delivered());
    d.s.batch_end();
}
