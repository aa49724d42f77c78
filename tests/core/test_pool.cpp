// PoolPlanner: the pool's policy, driven by hand with an injected clock (no socket).
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "lmtp/pool.hpp"

using namespace std::chrono_literals;
using lmtp::Deadline;
using lmtp::Delivered;
using lmtp::Outcome;
using lmtp::PoolOptions;
using lmtp::PoolPlanner;
using lmtp::Status;

namespace {

const Deadline t0 = Deadline{} + std::chrono::hours(1);

// One recipient's verdict as the engine gives it.
lmtp::RecipientResult verdict(const std::string& address, int code) {
    lmtp::RecipientResult r;
    r.address = address;
    r.reply.code = code;
    r.stage = lmtp::Stage::data;
    if (code == 0)
        r.outcome = Outcome::unknown;
    else
        r.outcome = code < 300 ? Outcome::ok : code < 500 ? Outcome::tempfail : Outcome::permfail;
    return r;
}

// The engine's report of a transaction with these codes (0: no verdict) for the sent addresses.
Delivered attempt(const std::vector<std::string>& addresses, const std::vector<int>& codes,
                  Status status = Status::ok, bool end_sent = true) {
    Delivered d;
    for (std::size_t i = 0; i < addresses.size(); ++i) d.txn.recipients.push_back(verdict(addresses[i], codes[i]));
    d.status = status;
    if (status != Status::ok) d.why = "the connection broke";
    d.end_sent = end_sent;
    return d;
}

PoolOptions options() {
    PoolOptions o;
    o.connections = 1;
    o.retries = 3;
    o.retry_delay = 100ms;
    o.retry_delay_max = 1000ms;
    o.idle_timeout = 0ms;
    o.max_connection_age = 0ms;
    o.max_messages_per_connection = 0;
    return o;
}

// A planner with one server and one connection set up at t0.
struct Fixture {
    explicit Fixture(PoolOptions o = options()) : p(o) { p.add_server(); }
    PoolPlanner::ConnId connect(Deadline now = t0) {
        auto open = p.next_open(now);
        EXPECT_TRUE(open.has_value());
        if (!open) return 0;
        p.opened(open->conn, now);
        return open->conn;
    }
    std::vector<std::string> addresses(const PoolPlanner::Send& s, const std::vector<std::string>& all) {
        std::vector<std::string> out;
        for (std::size_t i : s.recipients) out.push_back(all[i]);
        return out;
    }
    PoolPlanner p;
};

}  // namespace

TEST(PoolPlanner, MailboxKeyFoldsTheDomainOnly) {
    EXPECT_EQ(lmtp::mailbox_key("Alice@Example.ORG"), "Alice@example.org");
    EXPECT_EQ(lmtp::mailbox_key("alice"), "alice");
    EXPECT_NE(lmtp::mailbox_key("Alice@x"), lmtp::mailbox_key("alice@x"));
}

TEST(PoolPlanner, RetryDelayDoublesUpToItsCapAndTheLast4xxStays) {
    PoolOptions o = options();
    o.retries = 5;
    o.retry_delay = 100ms;
    o.retry_delay_max = 300ms;
    Fixture f(o);
    f.p.add({"a@x"}, true, t0);
    auto c = f.connect();
    Deadline now = t0;
    const std::chrono::milliseconds waits[] = {100ms, 200ms, 300ms, 300ms, 300ms};
    for (auto wait : waits) {
        auto s = f.p.next_send(now);
        ASSERT_TRUE(s);
        f.p.finished(c, attempt({"a@x"}, {451}), now);
        EXPECT_FALSE(f.p.next_send(now)) << "no re-send before its delay";
        ASSERT_TRUE(f.p.wake(now));
        EXPECT_EQ(*f.p.wake(now) - now, wait);
        EXPECT_FALSE(f.p.next_send(now + wait - 1ms));
        now += wait;
    }
    ASSERT_TRUE(f.p.next_send(now));
    f.p.finished(c, attempt({"a@x"}, {451}), now);
    ASSERT_TRUE(f.p.has_report());
    lmtp::PoolReport r = f.p.take_report();
    EXPECT_EQ(r.status, Status::ok);
    ASSERT_EQ(r.recipients.size(), 1u);
    EXPECT_EQ(r.recipients[0].outcome, Outcome::tempfail);
    EXPECT_EQ(r.recipients[0].reply.code, 451);
    EXPECT_EQ(r.attempts[0], 6u);
    EXPECT_EQ(f.p.pending(), 0u);
}

TEST(PoolPlanner, OnlyThe4xxRecipientsAreSentAgain) {
    Fixture f;
    const std::vector<std::string> all{"a@x", "t@x", "b@x", "u@x"};
    f.p.add(all, true, t0);
    auto c = f.connect();
    auto s = f.p.next_send(t0);
    ASSERT_TRUE(s);
    EXPECT_EQ(f.addresses(*s, all), all);
    f.p.finished(c, attempt(all, {250, 451, 550, 452}), t0);
    EXPECT_FALSE(f.p.has_report());
    s = f.p.next_send(t0 + 100ms);
    ASSERT_TRUE(s);
    EXPECT_EQ(f.addresses(*s, all), (std::vector<std::string>{"t@x", "u@x"}));
    f.p.finished(c, attempt({"t@x", "u@x"}, {250, 550}), t0 + 100ms);
    ASSERT_TRUE(f.p.has_report());
    auto r = f.p.take_report();
    EXPECT_EQ(r.status, Status::ok);
    ASSERT_EQ(r.recipients.size(), 4u);
    EXPECT_EQ(r.recipients[0].address, "a@x");
    EXPECT_EQ(r.recipients[0].outcome, Outcome::ok);
    EXPECT_EQ(r.recipients[1].outcome, Outcome::ok);
    EXPECT_EQ(r.recipients[2].outcome, Outcome::permfail);
    EXPECT_EQ(r.recipients[3].outcome, Outcome::permfail);
    EXPECT_EQ(r.attempts, (std::vector<unsigned>{1, 2, 1, 2}));
}

TEST(PoolPlanner, AStreamIsSentOnceIts4xxStayTempfail) {
    Fixture f;
    f.p.add({"a@x", "t@x"}, false, t0);
    auto c = f.connect();
    ASSERT_TRUE(f.p.next_send(t0));
    f.p.finished(c, attempt({"a@x", "t@x"}, {250, 451}), t0);
    ASSERT_TRUE(f.p.has_report());
    auto r = f.p.take_report();
    EXPECT_EQ(r.recipients[1].outcome, Outcome::tempfail);
    EXPECT_EQ(r.attempts, (std::vector<unsigned>{1, 1}));
}

TEST(PoolPlanner, UnknownAfterTheEndIsNeverSentAgain) {
    Fixture f;
    f.p.add({"a@x", "b@x"}, true, t0);
    auto c = f.connect();
    ASSERT_TRUE(f.p.next_send(t0));
    f.p.finished(c, attempt({"a@x", "b@x"}, {250, 0}, Status::closed, true), t0);
    f.p.closed(c, Status::closed, "gone", t0);
    ASSERT_TRUE(f.p.has_report());
    auto r = f.p.take_report();
    // The break's status says why b@x has no verdict; a@x's verdict is kept.
    EXPECT_EQ(r.status, Status::closed);
    EXPECT_FALSE(r.why.empty());
    EXPECT_EQ(r.recipients[0].outcome, Outcome::ok);
    EXPECT_EQ(r.recipients[1].outcome, Outcome::unknown);
    EXPECT_EQ(f.p.pending(), 0u);
    EXPECT_FALSE(f.p.next_open(t0 + 10s));
}

TEST(PoolPlanner, UnknownAfterTheEndIsSentAgainWhenOptedIn) {
    PoolOptions o = options();
    o.resend_unknown = true;
    o.retries = 1;
    Fixture f(o);
    const std::vector<std::string> all{"a@x", "b@x"};
    f.p.add(all, true, t0);
    auto c = f.connect();
    ASSERT_TRUE(f.p.next_send(t0));
    f.p.finished(c, attempt(all, {250, 0}, Status::timeout, true), t0);
    f.p.closed(c, Status::timeout, "stalled", t0);
    EXPECT_FALSE(f.p.has_report());
    auto c2 = f.connect(t0 + 100ms);
    auto s = f.p.next_send(t0 + 100ms);
    ASSERT_TRUE(s);
    EXPECT_EQ(f.addresses(*s, all), (std::vector<std::string>{"b@x"}));
    f.p.finished(c2, attempt({"b@x"}, {0}, Status::timeout, true), t0 + 100ms);
    ASSERT_TRUE(f.p.has_report()) << "the one re-send allowed is spent";
    auto r = f.p.take_report();
    EXPECT_EQ(r.recipients[1].outcome, Outcome::unknown);
    EXPECT_EQ(r.attempts[1], 2u);
}

TEST(PoolPlanner, ABreakBeforeTheEndRequeuesAtOnceAndAPoisonMessageStops) {
    PoolOptions o = options();
    o.retries = 2;
    Fixture f(o);
    const std::vector<std::string> all{"a@x", "b@x"};
    f.p.add(all, true, t0);
    for (int i = 0; i < 3; ++i) {
        auto c = f.connect();
        auto s = f.p.next_send(t0);
        ASSERT_TRUE(s) << "try " << i << " goes without a retry delay";
        EXPECT_EQ(s->recipients.size(), 2u);
        f.p.finished(c, attempt(all, {0, 0}, Status::closed, false), t0);
        f.p.closed(c, Status::closed, "gone", t0);
        if (i < 2) {
            EXPECT_FALSE(f.p.has_report());
        }
    }
    ASSERT_TRUE(f.p.has_report());
    auto r = f.p.take_report();
    EXPECT_EQ(r.status, Status::closed);
    EXPECT_FALSE(r.why.empty());
    EXPECT_EQ(r.recipients[0].outcome, Outcome::unknown);
    EXPECT_EQ(r.attempts, (std::vector<unsigned>{3, 3}));
}

TEST(PoolPlanner, ABreakWithoutTheEnginesReportCountsAsBeforeTheEnd) {
    Fixture f;
    f.p.add({"a@x"}, true, t0);
    auto c = f.connect();
    ASSERT_TRUE(f.p.next_send(t0));
    f.p.closed(c, Status::io, "reset", t0);
    EXPECT_FALSE(f.p.has_report());
    EXPECT_TRUE(f.p.next_open(t0)) << "a new connection for the message";
}

TEST(PoolPlanner, MailboxConcurrencySpreadsAndLaterMessagesPass) {
    PoolOptions o = options();
    o.connections = 3;
    o.mailbox_concurrency = 1;
    Fixture f(o);
    f.p.add({"a@x"}, true, t0);         // 0
    f.p.add({"a@X"}, true, t0);         // 1: the same mailbox (domain without case)
    f.p.add({"b@x"}, true, t0);         // 2
    f.p.add({"a@x", "c@x"}, true, t0);  // 3: c@x may go alone
    std::vector<PoolPlanner::ConnId> conns;
    for (int i = 0; i < 3; ++i) conns.push_back(f.connect());
    auto s0 = f.p.next_send(t0);
    auto s1 = f.p.next_send(t0);
    auto s2 = f.p.next_send(t0);
    ASSERT_TRUE(s0 && s1 && s2);
    EXPECT_EQ(s0->message, 0u);
    EXPECT_EQ(s1->message, 2u) << "message 1 waits for a@x; message 2 passes it";
    EXPECT_EQ(s2->message, 3u);
    EXPECT_EQ(s2->recipients, (std::vector<std::size_t>{1})) << "only c@x, whose mailbox is free";
    f.p.finished(s2->conn, attempt({"c@x"}, {250}), t0);
    // a@x frees: the oldest waiting for it goes first (message 1), then message 3's a@x.
    f.p.finished(s0->conn, attempt({"a@x"}, {250}), t0);
    auto n1 = f.p.next_send(t0);
    ASSERT_TRUE(n1);
    EXPECT_EQ(n1->message, 1u);
    EXPECT_FALSE(f.p.next_send(t0)) << "a@x is busy again";
    f.p.finished(n1->conn, attempt({"a@X"}, {250}), t0);
    auto n3 = f.p.next_send(t0);
    ASSERT_TRUE(n3);
    EXPECT_EQ(n3->message, 3u);
    EXPECT_EQ(n3->recipients, (std::vector<std::size_t>{0}));
    f.p.finished(n3->conn, attempt({"a@x"}, {250}), t0);
    f.p.finished(s1->conn, attempt({"b@x"}, {250}), t0);
    std::vector<std::size_t> ids;
    while (f.p.has_report()) {
        auto r = f.p.take_report();
        ids.push_back(r.id);
        EXPECT_EQ(r.status, Status::ok);
        if (r.id == 3) {
            EXPECT_EQ(r.attempts, (std::vector<unsigned>{1, 1}));
        }
    }
    EXPECT_EQ(ids.size(), 4u);
}

TEST(PoolPlanner, TheOldestMessageIsNotStarved) {
    PoolOptions o = options();
    o.connections = 2;
    o.mailbox_concurrency = 1;
    Fixture f(o);
    f.p.add({"a@x"}, true, t0);
    f.p.add({"a@x", "b@x"}, true, t0);  // 1: b@x goes at once, a@x waits
    auto c1 = f.connect();
    f.connect();
    auto s0 = f.p.next_send(t0);
    ASSERT_TRUE(s0);
    EXPECT_EQ(s0->message, 0u);
    auto s = f.p.next_send(t0);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->message, 1u);
    EXPECT_EQ(s->recipients, (std::vector<std::size_t>{1}));
    f.p.finished(s->conn, attempt({"b@x"}, {250}), t0);
    for (int i = 0; i < 5; ++i) f.p.add({"a@x"}, true, t0);  // newer messages for the same mailbox
    f.p.finished(c1, attempt({"a@x"}, {250}), t0);
    auto n = f.p.next_send(t0);
    ASSERT_TRUE(n);
    EXPECT_EQ(n->message, 1u) << "the oldest waiting for a@x goes first";
    EXPECT_EQ(n->recipients, (std::vector<std::size_t>{0}));
}

TEST(PoolPlanner, ReuseCountAndAgeLimitsEndTheConnectionAfterItsMessage) {
    PoolOptions o = options();
    o.max_messages_per_connection = 2;
    Fixture f(o);
    for (int i = 0; i < 3; ++i) f.p.add({"a@x"}, true, t0);
    auto c = f.connect();
    for (int i = 0; i < 2; ++i) {
        EXPECT_FALSE(f.p.next_quit(t0));
        ASSERT_TRUE(f.p.next_send(t0));
        f.p.finished(c, attempt({"a@x"}, {250}), t0);
    }
    EXPECT_FALSE(f.p.next_send(t0)) << "the connection carried its 2 messages";
    auto q = f.p.next_quit(t0);
    ASSERT_TRUE(q);
    EXPECT_EQ(*q, c);
    f.p.closed(c, Status::ok, {}, t0);
    EXPECT_TRUE(f.p.next_open(t0)) << "a new connection for the third";

    PoolOptions a = options();
    a.max_connection_age = 1000ms;
    Fixture g(a);
    g.p.add({"a@x"}, true, t0);
    auto d = g.connect();
    ASSERT_TRUE(g.p.next_send(t0 + 900ms));
    EXPECT_FALSE(g.p.next_quit(t0 + 1500ms)) << "never in the middle of a message";
    g.p.finished(d, attempt({"a@x"}, {250}), t0 + 1500ms);
    g.p.add({"b@x"}, true, t0 + 1500ms);
    EXPECT_FALSE(g.p.next_send(t0 + 1500ms));
    EXPECT_TRUE(g.p.next_quit(t0 + 1500ms));
}

TEST(PoolPlanner, AnIdleConnectionIsClosedAfterIdleTimeout) {
    PoolOptions o = options();
    o.idle_timeout = 5s;
    Fixture f(o);
    f.p.add({"a@x"}, true, t0);
    auto c = f.connect();
    ASSERT_TRUE(f.p.next_send(t0));
    f.p.finished(c, attempt({"a@x"}, {250}), t0 + 1s);
    ASSERT_TRUE(f.p.wake(t0 + 1s));
    EXPECT_EQ(*f.p.wake(t0 + 1s), t0 + 6s);
    EXPECT_FALSE(f.p.next_quit(t0 + 5s));
    EXPECT_TRUE(f.p.next_quit(t0 + 6s));
}

TEST(PoolPlanner, ConnectBackOffDoublesThenGivesUpWithoutResults) {
    PoolOptions o = options();
    o.retries = 2;  // connect_attempts: 3 rounds
    o.retry_delay = 100ms;
    Fixture f(o);
    f.p.add({"a@x"}, true, t0);
    f.p.add({"b@x"}, true, t0);
    Deadline now = t0;
    const std::chrono::milliseconds waits[] = {100ms, 200ms};
    for (auto wait : waits) {
        auto open = f.p.next_open(now);
        ASSERT_TRUE(open);
        f.p.closed(open->conn, Status::connect, "refused", now);
        EXPECT_FALSE(f.p.has_report());
        EXPECT_FALSE(f.p.next_open(now)) << "no spinning on a dead server";
        ASSERT_TRUE(f.p.wake(now));
        EXPECT_EQ(*f.p.wake(now) - now, wait);
        now += wait;
    }
    auto open = f.p.next_open(now);
    ASSERT_TRUE(open);
    f.p.closed(open->conn, Status::connect, "refused", now);
    for (std::size_t id = 0; id < 2; ++id) {
        ASSERT_TRUE(f.p.has_report());
        auto r = f.p.take_report();
        EXPECT_EQ(r.id, id);
        EXPECT_EQ(r.status, Status::connect);
        EXPECT_NE(r.why.find("refused"), std::string::npos);
        EXPECT_TRUE(r.recipients.empty()) << "nothing was sent";
    }
    EXPECT_FALSE(f.p.has_report());
    EXPECT_EQ(f.p.pending(), 0u);
}

TEST(PoolPlanner, ServersAreTriedInOrderAndAFailedOneIsSkipped) {
    PoolOptions o = options();
    o.connections = 2;
    PoolPlanner p(o);
    p.add_server();
    p.add_server();
    for (int i = 0; i < 4; ++i) p.add({"a" + std::to_string(i) + "@x"}, true, t0);
    auto first = p.next_open(t0);
    ASSERT_TRUE(first);
    EXPECT_EQ(first->server, 0u);
    EXPECT_FALSE(p.next_open(t0)) << "one connect at a time until one is set up";
    p.closed(first->conn, Status::connect, "refused", t0);
    auto second = p.next_open(t0);
    ASSERT_TRUE(second);
    EXPECT_EQ(second->server, 1u) << "the next server at once";
    p.opened(second->conn, t0);
    auto third = p.next_open(t0);
    ASSERT_TRUE(third);
    EXPECT_EQ(third->server, 1u) << "server 0 is still in its back-off";
    p.opened(third->conn, t0);
    EXPECT_TRUE(p.next_send(t0));
    EXPECT_TRUE(p.next_send(t0));
    EXPECT_FALSE(p.next_open(t0)) << "K connections";
}

TEST(PoolPlanner, ALocalRefusalReportsWithoutResults) {
    Fixture f;
    f.p.add({"a@x"}, true, t0);
    auto c = f.connect();
    ASSERT_TRUE(f.p.next_send(t0));
    Delivered d;
    d.status = Status::too_big;
    d.why = "too big";
    f.p.finished(c, d, t0);
    ASSERT_TRUE(f.p.has_report());
    auto r = f.p.take_report();
    EXPECT_EQ(r.status, Status::too_big);
    EXPECT_TRUE(r.recipients.empty());
}

TEST(PoolPlanner, AbandonReportsEveryMessageOnce) {
    Fixture f;
    f.p.add({"a@x"}, true, t0);
    f.p.add({"b@x"}, true, t0);
    f.connect();
    ASSERT_TRUE(f.p.next_send(t0));
    f.p.abandon(Status::closed, "freed");
    int n = 0;
    while (f.p.has_report()) {
        auto r = f.p.take_report();
        EXPECT_EQ(r.status, Status::closed);
        if (r.id == 0) {
            ASSERT_EQ(r.recipients.size(), 1u);
            EXPECT_EQ(r.recipients[0].outcome, Outcome::unknown) << "it was on a connection";
        }
        ++n;
    }
    EXPECT_EQ(n, 2);
    EXPECT_EQ(f.p.pending(), 0u);
}

TEST(PoolPlanner, AWithdrawnMessageIsForgottenWithoutAReport) {
    PoolOptions o = options();
    o.mailbox_concurrency = 1;
    o.max_messages_per_connection = 2;
    Fixture f(o);
    f.p.add({"a@x"}, true, t0);  // 0: on the connection, then withdrawn from it
    f.p.add({"b@x"}, true, t0);  // 1: withdrawn while queued
    f.p.add({"a@x"}, true, t0);  // 2: waits for a@x's mailbox
    auto c = f.connect();
    auto s = f.p.next_send(t0);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->message, 0u);
    EXPECT_TRUE(f.p.withdraw(1, t0));
    EXPECT_FALSE(f.p.withdraw(1, t0)) << "once";
    EXPECT_EQ(f.p.busy_count(), 1u);
    EXPECT_TRUE(f.p.withdraw(0, t0));
    EXPECT_EQ(f.p.busy_count(), 0u) << "the connection is idle again";
    EXPECT_FALSE(f.p.has_report());
    EXPECT_EQ(f.p.pending(), 1u);
    // a@x's mailbox is free again, and the withdrawn message did not count for reuse.
    s = f.p.next_send(t0);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->message, 2u);
    f.p.finished(c, attempt({"a@x"}, {250}), t0);
    ASSERT_TRUE(f.p.has_report());
    EXPECT_EQ(f.p.take_report().id, 2u);
    EXPECT_FALSE(f.p.next_quit(t0)) << "one message so far of the two allowed";
    EXPECT_FALSE(f.p.withdraw(2, t0)) << "reported already";
    EXPECT_FALSE(f.p.withdraw(7, t0));
}

// A retry whose time came while the driver was busy elsewhere (no decision taken since): wake()
// says now, so that the driver does not sleep until the next connection deadline (an idle
// timeout, seconds away) with the message due.
TEST(PoolPlanner, ADecisionAlreadyDueWakesAtOnce) {
    PoolOptions o = options();
    o.idle_timeout = 10000ms;
    Fixture f(o);
    f.p.add({"a@x"}, true, t0);
    auto c = f.connect();
    ASSERT_TRUE(f.p.next_send(t0));
    f.p.finished(c, attempt({"a@x"}, {451}), t0);
    ASSERT_TRUE(f.p.wake(t0));
    EXPECT_EQ(*f.p.wake(t0), t0 + 100ms) << "the retry, not the idle timeout";
    const Deadline late = t0 + 150ms;  // past the retry, nothing decided yet
    ASSERT_TRUE(f.p.wake(late));
    EXPECT_EQ(*f.p.wake(late), late);
    ASSERT_TRUE(f.p.next_send(late)) << "and the decision is indeed there to take";
    // Nothing due any more: the wake is in the future again (no spin at `now`).
    auto w = f.p.wake(late);
    EXPECT_TRUE(!w || *w > late);
}
