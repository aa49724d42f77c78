// The engine as transcripts: what the client must send, what the server answers. Each
// transcript is played with the server's bytes in one piece, cut at every byte boundary in turn,
// and one byte at a time; the client's bytes, the deliveries reported and their verdicts must be
// the same every time. The clock is the test's: deadlines are checked to the millisecond. And the
// Connector walking addresses (its socket changes from one to the next).
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <set>
#include <string>
#include <vector>

#include "lmtp/engine.hpp"
#include "lmtp/transport.hpp"

using namespace lmtp;

namespace {

using ms = std::chrono::milliseconds;
const Deadline T0 = Deadline{} + std::chrono::hours(1);

// One step: all the client must have sent, then the server's answer.
struct Exchange {
    std::string client;
    std::string server;
};

struct Play {
    std::string error;  // the first difference, or how the engine failed
    std::vector<Delivered> delivered;
};

std::string take_output(Engine& e, Deadline now) {
    std::string out;
    std::string_view pieces[3];
    std::size_t n = e.output_pieces(pieces);
    for (std::size_t i = 0; i < n; ++i) out.append(pieces[i]);
    e.consumed(out.size(), now);
    return out;
}

// Runs the engine until it has nothing to do, taking each delivery as it is reported (a single
// one's results are the session's transaction() then: it reports none of its own).
void run(Engine& e, Deadline now, Play& p, bool single) {
    auto take = [&] {
        while (e.has_delivered()) {
            p.delivered.push_back(e.take_delivered());
            if (single) p.delivered.back().txn = e.session().transaction();
        }
    };
    while (e.step(now)) take();
    take();
}

// Plays `script` against a fresh engine (local: a unix socket), the server's stream cut at the
// positions in `cuts` (offsets in the whole stream, ascending). `single`: each message is
// submitted as a single delivery (a batch of one), as Client::deliver does.
Play play(const ClientOptions& o, const std::vector<Exchange>& script, const std::vector<BatchMessage>& messages,
          const std::vector<std::size_t>& cuts, bool local = false, bool single = false) {
    Play p;
    Engine e(o);
    Deadline now = T0;
    std::string sent;
    try {
        e.open(now, "server.test", local);
        for (const auto& m : messages) e.submit(m, single);
        std::size_t global = 0;
        for (std::size_t step = 0; step < script.size(); ++step) {
            const Exchange& x = script[step];
            run(e, now, p, single);
            sent += take_output(e, now);
            if (sent != x.client) {
                p.error = "step " + std::to_string(step) + ": the client sent '" + printable(sent, 400) +
                          "', the transcript says '" + printable(x.client, 400) + "'";
                return p;
            }
            sent.clear();
            std::size_t pos = 0;
            while (pos < x.server.size()) {
                std::size_t end = x.server.size();
                for (std::size_t c : cuts)
                    if (c > global + pos && c < global + x.server.size()) {
                        end = c - global;
                        break;
                    }
                e.feed(x.server.data() + pos, end - pos, now);
                run(e, now, p, single);
                sent += take_output(e, now);
                pos = end;
                now += ms(1);
            }
            global += x.server.size();
        }
        run(e, now, p, single);
        sent += take_output(e, now);
        if (!sent.empty()) p.error = "the client sent more after the transcript: '" + printable(sent, 400) + "'";
    } catch (const Error& err) {
        p.error = std::string("the engine failed: ") + err.what();
    }
    run(e, now, p, single);
    return p;
}

std::size_t server_bytes(const std::vector<Exchange>& script) {
    std::size_t n = 0;
    for (const auto& x : script) n += x.server.size();
    return n;
}

// The verdicts of a delivery as one line: "ok 250|permfail 550|...".
std::string verdicts(const Delivered& d) {
    std::string s = std::string(status_name(d.status)) + ":";
    for (const auto& r : d.txn.recipients)
        s += std::string(" ") + outcome_name(r.outcome) + " " + std::to_string(r.reply.code);
    return s;
}

// Plays the transcript whole, cut at every boundary, and byte by byte; every play must pass and
// report the same deliveries as `want`.
void every_cut(const ClientOptions& o, const std::vector<Exchange>& script, const std::vector<BatchMessage>& messages,
               const std::vector<std::string>& want, bool local = false, bool single = false) {
    const std::size_t total = server_bytes(script);
    std::vector<std::vector<std::size_t>> plays{{}};
    for (std::size_t k = 1; k < total; ++k) plays.push_back({k});
    std::vector<std::size_t> all;
    for (std::size_t k = 1; k < total; ++k) all.push_back(k);
    plays.push_back(all);
    for (const auto& cuts : plays) {
        Play p = play(o, script, messages, cuts, local, single);
        std::string where = cuts.empty() ? "whole" : cuts.size() > 1 ? "byte by byte" : "cut at " + std::to_string(cuts[0]);
        ASSERT_EQ(p.error, "") << where;
        ASSERT_EQ(p.delivered.size(), want.size()) << where;
        for (std::size_t i = 0; i < want.size(); ++i) EXPECT_EQ(verdicts(p.delivered[i]), want[i]) << where;
    }
}

ClientOptions options() {
    ClientOptions o;
    o.hello = "client.test";
    o.timeout = ms(100);
    return o;
}

BatchMessage message(std::string from, std::vector<std::string> rcpts, std::string_view body) {
    BatchMessage m;
    m.from = std::move(from);
    m.recipients = std::move(rcpts);
    m.bytes = body;
    m.size_hint = body.size();
    return m;
}

const std::string kBanner = "220 server.test LMTP\r\n";

}  // namespace

TEST(EngineTranscript, TwoMessagesPipelinedByData) {
    std::vector<Exchange> script = {
        {"", kBanner},
        {"LHLO client.test\r\n", "250-server.test\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n"},
        {"MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n",
         "250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 no such user\r\n354 go\r\n"},
        // The body's end goes with the next message's commands (RFC 2920).
        {"one\r\n.\r\nMAIL FROM:<s@x>\r\nRCPT TO:<c@x>\r\nDATA\r\n",
         "250 2.0.0 <a@x> saved\r\n250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n"},
        {"two\r\n.\r\n", "452 4.2.2 <c@x> full, later\r\n"},
    };
    every_cut(options(), script, {message("s@x", {"a@x", "b@x"}, "one\n"), message("s@x", {"c@x"}, "two\n")},
              {"ok: ok 250 permfail 550", "ok: tempfail 452"});
}

TEST(EngineTranscript, TwoMessagesByBdatShareARoundTrip) {
    std::vector<Exchange> script = {
        {"", kBanner},
        {"LHLO client.test\r\n", "250-server.test\r\n250-PIPELINING\r\n250 CHUNKING\r\n"},
        {"MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nBDAT 5 LAST\r\none\r\nRSET\r\nMAIL FROM:<s@x>\r\nRCPT TO:<b@x>\r\n"
         "RCPT TO:<c@x>\r\nBDAT 5 LAST\r\ntwo\r\nRSET\r\n",
         "250 ok\r\n250 ok\r\n250 <a@x> saved\r\n250 reset\r\n250 ok\r\n250 ok\r\n250 ok\r\n250 <b@x> saved\r\n"
         "550 <c@x> failed\r\n250 reset\r\n"},
    };
    ClientOptions o = options();
    every_cut(o, script, {message("s@x", {"a@x"}, "one\n"), message("s@x", {"b@x", "c@x"}, "two\n")},
              {"ok: ok 250", "ok: ok 250 permfail 550"});
}

TEST(EngineTranscript, AuthLoginAnswersEachChallenge) {
    ClientOptions o = options();
    o.auth_user = "user";
    o.auth_password = "pw";
    o.auth_mechanism = "LOGIN";
    std::vector<Exchange> script = {
        {"", kBanner},
        {"LHLO client.test\r\n", "250-server.test\r\n250 AUTH LOGIN PLAIN\r\n"},
        {"AUTH LOGIN\r\n", "334 VXNlcm5hbWU6\r\n"},
        {"dXNlcg==\r\n", "334 UGFzc3dvcmQ6\r\n"},
        {"cHc=\r\n", "235 2.7.0 welcome\r\n"},
        // Without PIPELINING each command waits for the reply before it.
        {"MAIL FROM:<s@x>\r\n", "250 ok\r\n"},
        {"RCPT TO:<a@x>\r\n", "250 ok\r\n"},
        {"DATA\r\n", "354 go\r\n"},
        {"hi\r\n.\r\n", "250 <a@x> saved\r\n"},
    };
    every_cut(o, script, {message("s@x", {"a@x"}, "hi\r\n")}, {"ok: ok 250"}, true);
}

TEST(EngineTranscript, OneLinePerRecipientServerIsUnderstood) {
    // A server that answers every recipient in one multi-line reply, a line each.
    std::vector<Exchange> script = {
        {"", "220 mail Net::Server::Mail ESMTP\r\n"},
        {"LHLO client.test\r\n", "250-mail\r\n250 PIPELINING\r\n"},
        {"MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n", "250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n"},
        {"m\r\n.\r\n", "250-<a@x> ok\r\n452 <b@x> later\r\n"},
    };
    every_cut(options(), script, {message("s@x", {"a@x", "b@x"}, "m\n")}, {"ok: ok 250 tempfail 452"});
}

// Without PIPELINING one command is in flight at a time, whether the messages go as a batch or
// one by one as single deliveries: the same bytes either way.
TEST(EngineTranscript, ThreeMessagesInLockstepWithoutPipelining) {
    std::vector<Exchange> script = {
        {"", kBanner},
        {"LHLO client.test\r\n", "250-server.test\r\n250 ENHANCEDSTATUSCODES\r\n"},
        {"MAIL FROM:<s@x>\r\n", "250 2.1.0 ok\r\n"},
        {"RCPT TO:<a@x>\r\n", "250 2.1.5 ok\r\n"},
        {"RCPT TO:<b@x>\r\n", "550 5.1.1 no such user\r\n"},
        {"DATA\r\n", "354 go\r\n"},
        {"one\r\n.\r\n", "250 2.0.0 <a@x> saved\r\n"},
        // Nobody accepted: no DATA, and the server still holds the transaction.
        {"MAIL FROM:<s@x>\r\n", "250 2.1.0 ok\r\n"},
        {"RCPT TO:<c@x>\r\n", "550 5.1.1 no such user\r\n"},
        {"RSET\r\n", "250 2.0.0 reset\r\n"},
        {"MAIL FROM:<s@x>\r\n", "250 2.1.0 ok\r\n"},
        {"RCPT TO:<d@x>\r\n", "250 2.1.5 ok\r\n"},
        {"DATA\r\n", "354 go\r\n"},
        {"three\r\n.\r\n", "452 4.2.2 <d@x> full, later\r\n"},
    };
    for (bool single : {false, true})
        every_cut(options(), script,
                  {message("s@x", {"a@x", "b@x"}, "one\n"), message("s@x", {"c@x"}, "two\n"),
                   message("s@x", {"d@x"}, "three\n")},
                  {"ok: ok 250 permfail 550", "ok: permfail 550", "ok: tempfail 452"}, false, single);
}

TEST(EngineTranscript, LockstepByBdatOneChunkInFlightAndAnEmptyMessageByData) {
    ClientOptions o = options();
    o.bdat_chunk = 4;
    std::vector<Exchange> script = {
        {"", kBanner},
        {"LHLO client.test\r\n", "250-server.test\r\n250 CHUNKING\r\n"},
        {"MAIL FROM:<s@x>\r\n", "250 ok\r\n"},
        {"RCPT TO:<a@x>\r\n", "250 ok\r\n"},
        {"BDAT 4\r\nabcd", "250 4 octets\r\n"},
        {"BDAT 4\r\nefgh", "250 4 octets\r\n"},
        {"BDAT 2 LAST\r\n\r\n", "250 <a@x> saved\r\n"},  // someone was accepted: no RSET, no NOOP
        {"MAIL FROM:<s@x>\r\n", "250 ok\r\n"},
        {"RCPT TO:<b@x>\r\n", "250 ok\r\n"},
        {"DATA\r\n", "354 go\r\n"},
        {".\r\n", "250 <b@x> saved\r\n"},
        {"MAIL FROM:<s@x>\r\n", "250 ok\r\n"},
        {"RCPT TO:<c@x>\r\n", "550 no\r\n"},  // nobody: no chunk at all
        {"RSET\r\n", "250 reset\r\n"},
        {"MAIL FROM:<s@x>\r\n", "250 ok\r\n"},
        {"RCPT TO:<d@x>\r\n", "250 ok\r\n"},
        {"BDAT 3 LAST\r\nm\r\n", "250 <d@x> saved\r\n"},
    };
    for (bool single : {false, true})
        every_cut(o, script,
                  {message("s@x", {"a@x"}, "abcdefgh\n"), message("s@x", {"b@x"}, ""), message("s@x", {"c@x"}, "x\n"),
                   message("s@x", {"d@x"}, "m\n")},
                  {"ok: ok 250", "ok: ok 250", "ok: permfail 550", "ok: ok 250"}, false, single);
}

// BDAT LAST with nobody accepted, pipelined: alone, a NOOP settles it once that is known (a
// refusal before its reply, as Dovecot 2.3 sends, puts RSET before the next MAIL); in a batch of
// several, RSET follows every LAST (TwoMessagesByBdatShareARoundTrip).
TEST(EngineTranscript, SingleDeliveriesByBdatWithNobodyAcceptedSettleWithANoop) {
    const std::string lhlo = "250-server.test\r\n250-PIPELINING\r\n250 CHUNKING\r\n";
    for (bool dovecot : {false, true}) {
        std::vector<Exchange> script = {
            {"", kBanner},
            {"LHLO client.test\r\n", lhlo},
            {"MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nBDAT 3 LAST\r\nm\r\n", "250 ok\r\n550 5.1.1 no such user\r\n"},
            {"NOOP\r\n", dovecot ? "503 5.5.0 No valid recipients\r\n250 2.0.0 ok\r\n" : "250 2.0.0 ok\r\n"},
            {std::string(dovecot ? "RSET\r\n" : "") + "MAIL FROM:<s@x>\r\nRCPT TO:<b@x>\r\nBDAT 3 LAST\r\nn\r\n",
             std::string(dovecot ? "250 reset\r\n" : "") + "250 ok\r\n250 ok\r\n250 <b@x> saved\r\n"},
        };
        every_cut(options(), script, {message("s@x", {"a@x"}, "m\n"), message("s@x", {"b@x"}, "n\n")},
                  {"ok: permfail 550", "ok: ok 250"}, false, true);
    }
}

// --- the clock --------------------------------------------------------------------------------------

TEST(EngineClock, TheDeadlineCountsFromTheWaitAndFailsToTheMillisecond) {
    ClientOptions o = options();
    Engine e(o);
    e.open(T0, "server.test", false);
    e.submit(message("s@x", {"a@x"}, "m\n"));
    ASSERT_TRUE(e.deadline());
    EXPECT_EQ(*e.deadline(), T0 + ms(100));
    e.on_time(T0 + ms(99));  // not yet
    EXPECT_TRUE(e.is_open());
    try {
        e.on_time(T0 + ms(100));
        FAIL() << "no timeout";
    } catch (const Error& err) {
        EXPECT_EQ(err.status(), Status::timeout);
        EXPECT_STREQ(err.what(), "timed out after 100 ms waiting for the banner");
    }
    EXPECT_FALSE(e.is_open());
    ASSERT_TRUE(e.failure());
    EXPECT_FALSE(e.deadline());
    // The message waiting for the set-up is reported, with the timeout, its recipient unknown.
    ASSERT_TRUE(e.has_delivered());
    Delivered d = e.take_delivered();
    EXPECT_EQ(d.status, Status::timeout);
    ASSERT_EQ(d.txn.recipients.size(), 1u);
    EXPECT_EQ(d.txn.recipients[0].outcome, Outcome::unknown);
}

TEST(EngineClock, AReplyAlreadyReadableWhenTheDeadlinePassesCounts) {
    // The driver feeds what is readable before it tells the engine the time passed.
    ClientOptions o = options();
    Engine e(o);
    e.open(T0, "server.test", false);
    const Deadline late = T0 + ms(150);
    e.feed(kBanner.data(), kBanner.size(), late);
    e.run(late);
    e.on_time(late);
    EXPECT_TRUE(e.is_open());
    EXPECT_EQ(e.session().phase(), Phase::connected);
    // LHLO went out at `late`: its deadline counts from there.
    std::string out = take_output(e, late);
    EXPECT_EQ(out, "LHLO client.test\r\n");
    ASSERT_TRUE(e.deadline());
    EXPECT_EQ(*e.deadline(), late + ms(100));
    const std::string half = "250-server.test\r\n";
    e.feed(half.data(), half.size(), late + ms(50));
    e.run(late + ms(50));
    // Half a reply is no progress: the wait still ends 100 ms after LHLO went out.
    EXPECT_EQ(*e.deadline(), late + ms(100));
    EXPECT_THROW(e.on_time(late + ms(100)), Error);
    EXPECT_EQ(e.failure()->status(), Status::timeout);
    EXPECT_STREQ(e.failure()->what(), "timed out after 100 ms waiting for the reply to LHLO");
}

TEST(EngineClock, AnIdleConnectionHasNoDeadline) {
    ClientOptions o = options();
    Engine e(o);
    e.open(T0, "server.test", false);
    std::string lhlo_reply = "250 server.test\r\n";
    e.feed(kBanner.data(), kBanner.size(), T0);
    e.run(T0);
    take_output(e, T0);
    e.feed(lhlo_reply.data(), lhlo_reply.size(), T0 + ms(1));
    e.run(T0 + ms(1));
    EXPECT_FALSE(e.busy());
    EXPECT_FALSE(e.deadline());
    e.on_time(T0 + std::chrono::hours(10));
    EXPECT_TRUE(e.is_open());
    // A message submitted later starts a wait of its own.
    e.submit(message("s@x", {"a@x"}, "m\n"));
    e.run(T0 + std::chrono::hours(10));
    ASSERT_TRUE(e.deadline());
    EXPECT_EQ(*e.deadline(), T0 + std::chrono::hours(10) + ms(100));
}

TEST(EngineQueue, AMessageNotStartedIsWithdrawnWithoutATrace) {
    ClientOptions o = options();
    Engine e(o);
    e.open(T0, "server.test", false);
    const std::uint64_t one = e.submit(message("s@x", {"a@x"}, "one\n"));
    const std::uint64_t two = e.submit(message("s@x", {"b@x"}, "two\n"));
    const std::uint64_t three = e.submit(message("s@x", {"c@x"}, "three\n"));
    EXPECT_TRUE(e.withdraw(two));   // queued behind the set-up: nothing of it exists on the wire
    EXPECT_FALSE(e.withdraw(two));  // once only
    EXPECT_FALSE(e.withdraw(999));
    EXPECT_EQ(e.waiting_count(), 2u);
    std::string reply = kBanner + "250 server.test\r\n";  // no PIPELINING: one message at a time
    e.feed(reply.data(), reply.size(), T0);
    e.run(T0);
    std::string sent = take_output(e, T0);
    e.run(T0);
    sent += take_output(e, T0);
    EXPECT_EQ(sent, "LHLO client.test\r\nMAIL FROM:<s@x>\r\n");
    EXPECT_FALSE(e.withdraw(one));  // started: only closing abandons it
    sent.clear();
    for (std::string line : {"250 ok\r\n", "250 ok\r\n", "354 go\r\n", "250 saved\r\n"}) {
        e.feed(line.data(), line.size(), T0);
        e.run(T0);
        sent += take_output(e, T0);
    }
    EXPECT_EQ(sent, "RCPT TO:<a@x>\r\nDATA\r\none\r\n.\r\nMAIL FROM:<s@x>\r\n");
    EXPECT_FALSE(e.withdraw(three));  // started in its turn
    ASSERT_TRUE(e.has_delivered());
    Delivered d = e.take_delivered();
    EXPECT_EQ(d.token, one);
    EXPECT_EQ(verdicts(d), "ok: ok 250");
    EXPECT_FALSE(e.has_delivered());
    e.close();
    ASSERT_TRUE(e.has_delivered());
    EXPECT_EQ(e.take_delivered().token, three);  // the withdrawn one is never reported
    EXPECT_FALSE(e.has_delivered());
}

TEST(EngineBytes, TheServerClosingMidReplyNamesWhatWasAwaited) {
    ClientOptions o = options();
    Engine e(o);
    e.open(T0, "server.test", false);
    e.feed("220 ser", 7, T0);
    e.run(T0);
    e.feed(nullptr, 0, T0);
    EXPECT_THROW(e.run(T0), Error);
    EXPECT_EQ(e.failure()->status(), Status::closed);
    EXPECT_STREQ(e.failure()->what(), "the server closed the connection in the middle of the banner");
}

// --- connecting -------------------------------------------------------------------------------------

namespace {

// A port on 127.0.0.1 with a listener (listening) or none (refused).
int loopback_socket(bool listening, std::uint16_t& port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
    socklen_t len = sizeof sa;
    getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
    port = ntohs(sa.sin_port);
    if (listening) {
        listen(fd, 8);
        return fd;
    }
    close(fd);
    return -1;
}

}  // namespace

TEST(Connector, WalksTheAddressesAndTheSocketChanges) {
    // The first address never answers (a listener whose queue is full drops the SYN), the
    // second accepts: after the first one's deadline the Connector moves on, on a new socket.
    std::uint16_t full = 0, open = 0;
    int stuck = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(stuck, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
    socklen_t len = sizeof sa;
    getsockname(stuck, reinterpret_cast<sockaddr*>(&sa), &len);
    full = ntohs(sa.sin_port);
    ASSERT_EQ(listen(stuck, 0), 0);
    std::vector<int> fillers;
    for (int i = 0; i < 4; ++i) {  // fill its queue (never accepted)
        int f = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(f, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
        fillers.push_back(f);
    }
    usleep(50000);
    int listener = loopback_socket(true, open);
    ASSERT_GE(listener, 0);
    ConnectOptions co;
    co.timeout = ms(300);
    const Deadline t0 = Clock::now();
    Connector c({{"127.0.0.1", full}, {"127.0.0.1", open}}, co, t0);
    std::vector<int> fds{c.fd()};
    for (int i = 0; i < 100 && !c.connected(); ++i) {
        pollfd p{c.fd(), POLLOUT, 0};
        poll(&p, 1, 50);
        c.check(Clock::now());
        if (c.fd() >= 0 && c.fd() != fds.back()) fds.push_back(c.fd());
    }
    ASSERT_TRUE(c.connected());
    EXPECT_GE(Clock::now() - t0, ms(300));  // the first address had its whole deadline
    ASSERT_EQ(fds.size(), 2u);              // then a socket of its own for the second
    EXPECT_NE(fds[0], fds[1]);
    auto t = c.take();
    EXPECT_TRUE(t->is_open());
    EXPECT_EQ(c.fd(), -1);
    for (int f : fillers) close(f);
    close(stuck);
    close(listener);
}

TEST(Connector, EveryAddressRefusedNamesThemAll) {
    std::uint16_t a = 0, b = 0;
    loopback_socket(false, a);
    loopback_socket(false, b);
    ConnectOptions co;
    co.timeout = ms(2000);
    try {
        Connector c({{"127.0.0.1", a}, {"127.0.0.1", b}}, co, Clock::now());
        for (int i = 0; i < 100 && !c.connected(); ++i) {
            pollfd p{c.fd(), POLLOUT, 0};
            poll(&p, 1, 100);
            c.check(Clock::now());
        }
        FAIL() << "connected to a refused port";
    } catch (const Error& e) {
        EXPECT_EQ(e.status(), Status::connect);
        std::string what = e.what();
        EXPECT_NE(what.find("127.0.0.1 port " + std::to_string(a)), std::string::npos) << what;
        EXPECT_NE(what.find("127.0.0.1 port " + std::to_string(b)), std::string::npos) << what;
    }
}
