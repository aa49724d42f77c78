// The blocking client over real sockets, against the fake server playing an
// exact script: transcripts, write counts (round trips), deadlines, broken servers.
#include <gtest/gtest.h>

#include <algorithm>
#include <arpa/inet.h>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <netinet/in.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

#include "fake_lmtp.h"
#include "lmtp/client.hpp"

using namespace lmtp;
using namespace std::chrono_literals;

namespace {

struct Step {
    std::string expect;  // bytes the client must send next, exactly
    std::string reply;   // then these are sent back
    enum Then {
        go_on = FAKE_CONTINUE,
        close_after = FAKE_CLOSE,
        hang = FAKE_HANG,
        stop_reading = FAKE_STOP_READING,
        drip = FAKE_DRIP
    } then = go_on;
    int delay_ms = 0;       // wait before replying (drip: between repeats)
    int byte_delay_ms = 0;  // send the reply one byte at a time
    bool exclusive = true;  // nothing more may arrive before the reply (lockstep)
};

const char kBanner[] = "220 srv.example LMTP ready\r\n";
const char kLhlo[] = "LHLO test.example\r\n";
const char kCapsPipelining[] = "250-srv.example\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250 8BITMIME\r\n";
const char kCapsPlain[] = "250-srv.example\r\n250 ENHANCEDSTATUSCODES\r\n";

std::vector<Step> greeting(const char* caps = kCapsPipelining) {
    return {{"", kBanner}, {kLhlo, caps}};
}

std::vector<Step> operator+(std::vector<Step> a, const std::vector<Step>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

// Counts the client's writes: each is one batch of commands.
class CountingTransport : public Transport {
public:
    CountingTransport(std::unique_ptr<Transport> inner, std::atomic<int>& writes, std::atomic<std::size_t>& biggest,
                      std::atomic<std::size_t>& most_pieces)
        : inner_(std::move(inner)), writes_(writes), biggest_(biggest), most_pieces_(most_pieces) {}
    std::size_t read(char* b, std::size_t c, Deadline d) override { return inner_->read(b, c, d); }
    void write(std::string_view data, Deadline d) override {
        ++writes_;
        if (data.size() > biggest_) biggest_ = data.size();
        inner_->write(data, d);
    }
    // One write of several pieces counts once, as the socket sends them at once.
    void write_pieces(const std::string_view* pieces, std::size_t count, Deadline d) override {
        ++writes_;
        std::size_t size = 0;
        for (std::size_t i = 0; i < count; ++i) size += pieces[i].size();
        if (size > biggest_) biggest_ = size;
        if (count > most_pieces_) most_pieces_ = count;
        inner_->write_pieces(pieces, count, d);
    }
    bool readable() override { return inner_->readable(); }
    void close() noexcept override { inner_->close(); }
    bool is_open() const override { return inner_->is_open(); }
    bool is_local() const override { return inner_->is_local(); }
    std::string peer() const override { return inner_->peer(); }

private:
    std::unique_ptr<Transport> inner_;
    std::atomic<int>& writes_;
    std::atomic<std::size_t>& biggest_;
    std::atomic<std::size_t>& most_pieces_;
};

// The fake server (tests/support, fake_lmtp.h) playing an exact script: it checks that the client
// sends exactly each step's `expect` and answers `reply`; error() tells the first departure.
class ScriptedFake {
public:
    // Over a socketpair (transport()), or listening on loopback (AF_INET, AF_INET6) or on a unix path.
    explicit ScriptedFake(const std::vector<Step>& steps, int family = AF_UNSPEC, const std::string& path = {}) {
        std::vector<fake_step> script;
        for (const Step& s : steps) {
            fake_step f{};
            f.expect = s.expect.c_str();
            f.expect_len = s.expect.size();
            f.reply = s.reply.c_str();
            f.reply_len = s.reply.size();
            f.then = s.then;
            f.delay_ms = s.delay_ms;
            f.byte_delay_ms = s.byte_delay_ms;
            f.allow_early = s.exclusive ? 0 : 1;
            script.push_back(f);
        }
        fake_config cfg;
        fake_config_init(&cfg);
        if (family != AF_UNSPEC) cfg.family = family;
        if (!path.empty()) cfg.unix_path = path.c_str();
        cfg.script = script.data();
        cfg.script_len = script.size();
        fake_ = fake_start(&cfg);
        if (!fake_) ADD_FAILURE() << "fake_start: " << fake_start_error();
    }
    // Every test holds the client to its script: a departure the test did not look at fails it too.
    ~ScriptedFake() {
        if (fake_ && fake_wait_idle(fake_, 1, 2000)) {
            EXPECT_EQ(std::string(fake_script_error(fake_)), "");
        }
        fake_stop(fake_);
    }
    ScriptedFake(const ScriptedFake&) = delete;
    ScriptedFake& operator=(const ScriptedFake&) = delete;

    // The client's end of a new connection, its writes counted.
    std::unique_ptr<Transport> transport() {
        int fd = fake_ ? fake_socketpair(fake_) : -1;
        EXPECT_GE(fd, 0);
        auto t = std::make_unique<SocketTransport>(fd, true, "peer");
        return std::make_unique<CountingTransport>(std::move(t), writes, biggest, most_pieces);
    }
    std::uint16_t port() const { return fake_ ? static_cast<std::uint16_t>(fake_port(fake_)) : 0; }
    // Waits until the client has gone (the script's verdict is then complete).
    void finish() {
        EXPECT_TRUE(fake_ && fake_wait_idle(fake_, 1, 5000)) << "the connection is still open";
    }
    std::string received() {
        std::size_t len = 0;
        const char* p = fake_ ? fake_transcript(fake_, &len) : "";
        return std::string(p, len);
    }
    std::string error() { return fake_ ? fake_script_error(fake_) : "no fake server"; }
    std::string peer_address() {
        const char* a = fake_ ? fake_peer_address(fake_, 0) : nullptr;
        return a ? a : "";
    }
    std::atomic<int> writes{0};
    std::atomic<std::size_t> biggest{0};
    std::atomic<std::size_t> most_pieces{0};  // in one write_pieces call

private:
    fake_lmtp* fake_ = nullptr;
};

ClientOptions options(int timeout_ms = 3000) {
    ClientOptions o;
    o.hello = "test.example";
    o.timeout = std::chrono::milliseconds(timeout_ms);
    return o;
}

Status status_of(const std::function<void()>& f, std::string* message = nullptr) {
    try {
        f();
    } catch (const Error& e) {
        if (message) *message = e.what();
        return e.status();
    }
    return Status::ok;
}

bool contains(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

}  // namespace

TEST(Client, ConnectReadsBannerAndSendsLhlo) {
    ScriptedFake peer(greeting());
    Client c(options());
    c.connect(peer.transport());
    EXPECT_TRUE(c.connected());
    EXPECT_EQ(c.banner().code, 220);
    EXPECT_EQ(c.domain(), "srv.example");
    EXPECT_TRUE(c.supports("pipelining"));
    EXPECT_EQ(c.last_reply().code, 250);
    c.close();
    peer.finish();
    EXPECT_EQ(peer.error(), "");
    EXPECT_EQ(peer.received(), kLhlo);
}

TEST(Client, RefusedBannerAndRefusedLhloFailTheConnection) {
    {
        ScriptedFake peer(std::vector<Step>{{"", "554 5.3.2 no service\r\n"}});
        Client c(options());
        std::string msg;
        EXPECT_EQ(status_of([&] { c.connect(peer.transport()); }, &msg), Status::rejected);
        EXPECT_TRUE(contains(msg, "554")) << msg;
        EXPECT_FALSE(c.connected());
        EXPECT_EQ(c.last_reply().code, 554);
    }
    {
        ScriptedFake peer(std::vector<Step>{{"", kBanner}, {kLhlo, "500 5.5.1 what\r\n"}});
        Client c(options());
        EXPECT_EQ(status_of([&] { c.connect(peer.transport()); }), Status::rejected);
        EXPECT_FALSE(c.connected());
        EXPECT_EQ(c.last_reply().code, 500);
    }
}

TEST(Client, PipelinedDeliveryTakesTwoWrites) {
    ScriptedFake peer(greeting() + std::vector<Step>{
                               {"MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\nRCPT TO:<c@x>\r\nDATA\r\n",
                                "250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 unknown\r\n250 2.1.5 ok\r\n354 go\r\n"},
                               {"Subject: t\r\n\r\nhello\r\n.\r\n",
                                "250 2.0.0 <a@x> saved\r\n552 5.2.2 <c@x> quota\r\n"},
                               {"QUIT\r\n", "221 2.0.0 bye\r\n"}});
    Client c(options());
    c.connect(peer.transport());
    int before = peer.writes;
    const Transaction& t = c.deliver("s@x", {"a@x", "b@x", "c@x"}, "Subject: t\n\nhello\n");
    EXPECT_EQ(peer.writes - before, 2);
    ASSERT_EQ(t.recipients.size(), 3u);
    EXPECT_EQ(t.recipients[0].outcome, Outcome::ok);
    EXPECT_EQ(t.recipients[1].outcome, Outcome::permfail);
    EXPECT_EQ(t.recipients[1].stage, Stage::rcpt);
    EXPECT_EQ(t.recipients[2].outcome, Outcome::permfail);
    EXPECT_EQ(t.recipients[2].stage, Stage::data);
    EXPECT_EQ(t.recipients[2].reply.enhanced.str(), "5.2.2");
    c.quit();
    EXPECT_FALSE(c.connected());
    peer.finish();
    EXPECT_EQ(peer.error(), "");
}

TEST(Client, LockstepServerGetsOneCommandAtATime) {
    ScriptedFake peer(greeting(kCapsPlain) + std::vector<Step>{{"MAIL FROM:<s@x>\r\n", "250 ok\r\n"},
                                                       {"RCPT TO:<a@x>\r\n", "250 ok\r\n"},
                                                       {"RCPT TO:<b@x>\r\n", "250 ok\r\n"},
                                                       {"DATA\r\n", "354 go\r\n"},
                                                       {"x\r\n.\r\n", "250 a\r\n250 b\r\n"}});
    Client c(options());
    c.connect(peer.transport());
    const Transaction& t = c.deliver("s@x", {"a@x", "b@x"}, "x");
    EXPECT_TRUE(t.all_delivered());
    c.close();
    peer.finish();
    EXPECT_EQ(peer.error(), "");  // the peer fails the test if anything came early
}

TEST(Client, LargeMessageStreamsInBoundedWrites) {
    std::string line(998, 'x');
    line += "\r\n";
    std::string body;
    while (body.size() < 3 * 1024 * 1024) body += line;
    ScriptedFake peer(greeting() + std::vector<Step>{{"MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nDATA\r\n", "250 ok\r\n250 ok\r\n354 go\r\n"},
                                             {body + ".\r\n", "250 saved\r\n", Step::go_on, 0, 0, false}});
    ClientOptions o = options();
    o.write_chunk = 64 * 1024;
    Client c(o);
    c.connect(peer.transport());
    std::size_t offset = 0, calls = 0;
    BodySource src = [&](char* buf, std::size_t cap) {
        ++calls;
        std::size_t n = std::min<std::size_t>(cap, body.size() - offset);
        std::memcpy(buf, body.data() + offset, n);
        offset += n;
        return n;
    };
    peer.biggest = 0;
    EXPECT_TRUE(c.deliver("s@x", {"a@x"}, src).all_delivered());
    EXPECT_GE(calls, body.size() / o.write_chunk);
    EXPECT_LE(peer.biggest.load(), 2 * o.write_chunk + 8);
    c.close();
    peer.finish();
    EXPECT_EQ(peer.error(), "");
}

TEST(Client, SilentServerTimesOutWithinTheDeadline) {
    ScriptedFake peer(std::vector<Step>{{"", "", Step::hang}});
    Client c(options(200));
    auto t0 = Clock::now();
    std::string msg;
    EXPECT_EQ(status_of([&] { c.connect(peer.transport()); }, &msg), Status::timeout);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
    EXPECT_GE(ms, 190);
    EXPECT_LT(ms, 2000);
    EXPECT_TRUE(contains(msg, "banner")) << msg;
    EXPECT_FALSE(c.connected());
}

TEST(Client, AReplyThatNeverEndsHitsTheWholeReplyDeadline) {
    ScriptedFake peer(greeting() + std::vector<Step>{{"NOOP\r\n", "250-still going\r\n", Step::drip, 20}});
    Client c(options(300));
    c.connect(peer.transport());
    auto t0 = Clock::now();
    std::string msg;
    EXPECT_EQ(status_of([&] { c.noop(); }, &msg), Status::timeout);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
    EXPECT_LT(ms, 1500) << "each read made progress, but the whole reply has a deadline";
    EXPECT_FALSE(c.connected());
}

TEST(Client, BannerSentOneByteAtATime) {
    ScriptedFake peer(std::vector<Step>{{"", kBanner, Step::go_on, 0, 2}, {kLhlo, kCapsPipelining, Step::go_on, 0, 1}});
    Client c(options(5000));
    c.connect(peer.transport());
    EXPECT_EQ(c.domain(), "srv.example");
    EXPECT_TRUE(c.supports("8BITMIME"));
}

TEST(Client, ServerClosingMidTransactionLeavesRecipientsUnknown) {
    ScriptedFake peer(greeting() + std::vector<Step>{{"MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n",
                                              "250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n"},
                                             {"m\r\n.\r\n", "250 a saved\r\n", Step::close_after}});
    Client c(options());
    c.connect(peer.transport());
    std::string msg;
    EXPECT_EQ(status_of([&] { c.deliver("s@x", {"a@x", "b@x"}, "m"); }, &msg), Status::closed);
    EXPECT_TRUE(contains(msg, "<b@x>")) << msg;
    const Transaction& t = c.transaction();
    EXPECT_EQ(t.recipients[0].outcome, Outcome::ok);
    EXPECT_EQ(t.recipients[1].outcome, Outcome::unknown);
    EXPECT_FALSE(c.connected());
    EXPECT_EQ(status_of([&] { c.noop(); }), Status::not_connected);
}

TEST(Client, GarbageReplyIsAProtocolErrorAndCloses) {
    ScriptedFake peer(greeting() + std::vector<Step>{{"NOOP\r\n", "hello there\r\n"}});
    Client c(options());
    c.connect(peer.transport());
    std::string msg;
    EXPECT_EQ(status_of([&] { c.noop(); }, &msg), Status::protocol);
    EXPECT_TRUE(contains(msg, "three-digit")) << msg;
    EXPECT_FALSE(c.connected());
}

TEST(Client, OversizedReplyIsRefused) {
    std::string huge = "250 " + std::string(100000, 'a') + "\r\n";
    ScriptedFake peer(greeting() + std::vector<Step>{{"NOOP\r\n", huge}});
    Client c(options());
    c.connect(peer.transport());
    std::string msg;
    EXPECT_EQ(status_of([&] { c.noop(); }, &msg), Status::protocol);
    EXPECT_TRUE(contains(msg, "max_reply_line")) << msg;
}

TEST(Client, PerRecipientRepliesComeOneByOneThroughResponse) {
    ScriptedFake peer(greeting(kCapsPlain) + std::vector<Step>{{"MAIL FROM:<s@x>\r\n", "250 ok\r\n"},
                                                       {"RCPT TO:<a@x>\r\n", "250 ok\r\n"},
                                                       {"RCPT TO:<b@x>\r\n", "250 ok\r\n"},
                                                       {"RCPT TO:<c@x>\r\n", "250 ok\r\n"},
                                                       {"DATA\r\n", "354 go\r\n"},
                                                       {"hi\r\n.\r\n", "250 a\r\n452 b\r\n250 c\r\n"},
                                                       {"NOOP\r\n", "250 noop\r\n"}});
    Client c(options());
    c.connect(peer.transport());
    EXPECT_EQ(c.mail("s@x").code, 250);
    for (const char* r : {"a@x", "b@x", "c@x"}) EXPECT_EQ(c.rcpt(r).code, 250);
    EXPECT_EQ(c.data_start().code, 354);
    c.data_write("hi\n");
    EXPECT_EQ(c.data_end().text(), "a");  // the first recipient's, as Net::LMTP returned
    EXPECT_EQ(c.response().text(), "b");
    EXPECT_EQ(c.response().code, 250);
    EXPECT_EQ(c.last_reply().text(), "c");
    EXPECT_EQ(status_of([&] { c.response(); }), Status::bad_sequence);
    // And the session was never behind: the next command gets its own reply.
    EXPECT_EQ(c.noop().text(), "noop");
    c.close();
    peer.finish();
    EXPECT_EQ(peer.error(), "");
}

// The session breaks after k of the three final replies: the ones that came
// stay, data_end throws the break with the first recipient's reply as the last
// reply, and response() still yields each further recipient, a missing one as
// the break again, naming it.
TEST(Client, ABreakAfterSomeFinalRepliesKeepsThemForResponse) {
    const char* finals[] = {"250 a\r\n", "452 b\r\n", "250 c\r\n"};
    for (int k = 0; k <= 3; ++k) {
        for (bool by_bdat : {false, true}) {
            std::string replies;
            for (int i = 0; i < k; ++i) replies += finals[i];
            std::vector<Step> script = greeting(by_bdat ? "250-srv.example\r\n250 CHUNKING\r\n" : kCapsPlain) +
                                       std::vector<Step>{{"MAIL FROM:<s@x>\r\n", "250 ok\r\n"},
                                                         {"RCPT TO:<a@x>\r\n", "250 ok\r\n"},
                                                         {"RCPT TO:<b@x>\r\n", "250 ok\r\n"},
                                                         {"RCPT TO:<c@x>\r\n", "250 ok\r\n"}};
            if (by_bdat) {
                script.push_back({"BDAT 4 LAST\r\nhi\r\n", replies, k == 3 ? Step::go_on : Step::close_after});
            } else {
                script.push_back({"DATA\r\n", "354 go\r\n"});
                script.push_back({"hi\r\n.\r\n", replies, k == 3 ? Step::go_on : Step::close_after});
            }
            ScriptedFake peer(script);
            Client c(options());
            c.connect(peer.transport());
            c.mail("s@x");
            for (const char* r : {"a@x", "b@x", "c@x"}) c.rcpt(r);
            auto end = [&] {
                if (by_bdat) return c.bdat("hi\r\n", true);
                c.data_start();
                c.data_write("hi\n");
                return c.data_end();
            };
            std::string msg;
            Status st = status_of([&] { end(); }, &msg);
            SCOPED_TRACE("k=" + std::to_string(k) + (by_bdat ? " BDAT" : " DATA"));
            EXPECT_EQ(st, k == 3 ? Status::ok : Status::closed) << msg;
            EXPECT_EQ(c.last_reply().code, k >= 1 ? 250 : 0) << "the first recipient's verdict, when it came";
            const Transaction& t = c.transaction();
            for (int i = 0; i < 3; ++i)
                EXPECT_EQ(t.recipients[i].outcome, i < k ? (i == 1 ? Outcome::tempfail : Outcome::ok)
                                                         : Outcome::unknown);
            EXPECT_EQ(c.finals_owed(), 2u);
            for (int i = 1; i < 3; ++i) {
                std::string why;
                Status got = status_of([&] { c.response(); }, &why);
                if (i < k) {
                    EXPECT_EQ(got, Status::ok);
                    EXPECT_EQ(c.last_reply().code, i == 1 ? 452 : 250);
                } else {
                    EXPECT_EQ(got, Status::closed);
                    EXPECT_TRUE(contains(why, i == 1 ? "<b@x>" : "<c@x>")) << why;
                    EXPECT_EQ(c.last_reply().code, 0);
                }
            }
            EXPECT_EQ(status_of([&] { c.response(); }), k == 3 ? Status::bad_sequence : Status::not_connected)
                << "no more: not another break";
        }
    }
}

TEST(Client, A421AmongTheFinalRepliesIsThatRecipientsVerdict) {
    ScriptedFake peer(greeting(kCapsPlain) + std::vector<Step>{{"MAIL FROM:<s@x>\r\n", "250 ok\r\n"},
                                                       {"RCPT TO:<a@x>\r\n", "250 ok\r\n"},
                                                       {"RCPT TO:<b@x>\r\n", "250 ok\r\n"},
                                                       {"RCPT TO:<c@x>\r\n", "250 ok\r\n"},
                                                       {"DATA\r\n", "354 go\r\n"},
                                                       {"hi\r\n.\r\n", "250 a\r\n421 4.3.2 bye\r\n"}});
    Client c(options());
    c.connect(peer.transport());
    c.mail("s@x");
    for (const char* r : {"a@x", "b@x", "c@x"}) c.rcpt(r);
    c.data_start();
    c.data_write("hi\n");
    EXPECT_EQ(status_of([&] { c.data_end(); }), Status::closed);
    EXPECT_EQ(c.last_reply().code, 250);
    EXPECT_EQ(c.response().code, 421);
    EXPECT_EQ(c.transaction().recipients[1].outcome, Outcome::tempfail);
    std::string why;
    EXPECT_EQ(status_of([&] { c.response(); }, &why), Status::closed);
    EXPECT_TRUE(contains(why, "<c@x>")) << why;
}

TEST(Client, CommandAndResponse) {
    ScriptedFake peer(greeting() + std::vector<Step>{{"XFOO bar\r\n", "250 foo done\r\n"},
                                             {"VRFY x\r\n", "252 maybe\r\n"},
                                             {"NOOP\r\n", "250 ok\r\n"}});
    Client c(options());
    c.connect(peer.transport());
    c.command("XFOO bar");
    EXPECT_EQ(c.response().text(), "foo done");
    c.command("VRFY x");  // its reply is never asked for...
    EXPECT_EQ(c.noop().text(), "ok");  // ...so the next call reads it first
    EXPECT_EQ(status_of([&] { c.command("NOOP\r\nQUIT"); }), Status::bad_input);
    c.close();
    peer.finish();
    EXPECT_EQ(peer.error(), "");
}

TEST(Client, AnExtraReplyIsCaughtBeforeTheNextCommand) {
    ScriptedFake peer(greeting() + std::vector<Step>{{"MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nDATA\r\n", "250 ok\r\n250 ok\r\n354 go\r\n"},
                                             {"m\r\n.\r\n", "250 saved\r\n250 one too many\r\n"}});
    Client c(options());
    c.connect(peer.transport());
    EXPECT_TRUE(c.deliver("s@x", {"a@x"}, "m").all_delivered());
    std::string msg;
    EXPECT_EQ(status_of([&] { c.noop(); }, &msg), Status::protocol);
    EXPECT_TRUE(contains(msg, "one too many")) << msg;
    EXPECT_FALSE(c.connected());
}

TEST(Client, AnUnannounced421IsReportedAsClosed) {
    ScriptedFake peer(greeting() + std::vector<Step>{{"", "421 4.4.2 idle timeout\r\n", Step::close_after, 0, 0, false}});
    Client c(options());
    c.connect(peer.transport());
    std::this_thread::sleep_for(50ms);
    std::string msg;
    EXPECT_EQ(status_of([&] { c.noop(); }, &msg), Status::closed);
    EXPECT_TRUE(contains(msg, "421")) << msg;
}

TEST(Client, FailingMessageSourceAbandonsTheTransaction) {
    ScriptedFake peer(greeting() + std::vector<Step>{{"MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nDATA\r\n", "250 ok\r\n250 ok\r\n354 go\r\n"}});
    ClientOptions o = options();
    o.write_chunk = 4;
    Client c(o);
    c.connect(peer.transport());
    int calls = 0;
    BodySource src = [&](char* buf, std::size_t) -> std::size_t {
        if (++calls > 2) throw std::runtime_error("disk on fire");
        std::memcpy(buf, "abcd", 4);
        return 4;
    };
    std::string msg;
    EXPECT_EQ(status_of([&] { c.deliver("s@x", {"a@x"}, src); }, &msg), Status::aborted);
    EXPECT_TRUE(contains(msg, "disk on fire")) << msg;
    EXPECT_FALSE(c.connected());
    EXPECT_EQ(c.transaction().recipients[0].outcome, Outcome::unknown);
    peer.finish();
    EXPECT_FALSE(contains(peer.received(), "\r\n.\r\n"));
}

TEST(Client, QuitAcceptsAServerThatJustHangsUp) {
    ScriptedFake peer(greeting() + std::vector<Step>{{"QUIT\r\n", "", Step::close_after}});
    Client c(options());
    c.connect(peer.transport());
    c.quit();
    EXPECT_FALSE(c.connected());
}

TEST(Client, WritingToAClosedConnectionNeverRaisesSigpipe) {
    ASSERT_EQ(signal(SIGPIPE, SIG_DFL), SIG_DFL);  // the default: SIGPIPE would kill us
    ScriptedFake peer(greeting() + std::vector<Step>{{"MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nDATA\r\n", "250 ok\r\n250 ok\r\n354 go\r\n",
                                              Step::close_after}});
    Client c(options());
    c.connect(peer.transport());
    std::string big(8 * 1024 * 1024, 'y');
    Status st = status_of([&] { c.deliver("s@x", {"a@x"}, big); });
    EXPECT_TRUE(st == Status::closed || st == Status::io) << status_name(st);
    EXPECT_FALSE(c.connected());
}

TEST(Client, AServerThatStopsReadingHitsTheWriteDeadline) {
    ScriptedFake peer(greeting() + std::vector<Step>{{"MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nDATA\r\n", "250 ok\r\n250 ok\r\n354 go\r\n",
                                              Step::stop_reading}});
    Client c(options(300));
    c.connect(peer.transport());
    std::string big(32 * 1024 * 1024, 'y');
    auto t0 = Clock::now();
    std::string msg;
    EXPECT_EQ(status_of([&] { c.deliver("s@x", {"a@x"}, big); }, &msg), Status::timeout);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
    EXPECT_LT(ms, 3000);
    EXPECT_TRUE(contains(msg, "stopped reading")) << msg;
    EXPECT_EQ(c.transaction().recipients[0].outcome, Outcome::unknown);
}

TEST(Client, TraceSeesEveryLine) {
    ScriptedFake peer(greeting() + std::vector<Step>{{"NOOP\r\n", "250-one\r\n250 two\r\n"}});
    std::vector<std::string> lines;
    ClientOptions o = options();
    o.trace = [&](TraceDir d, std::string_view l) {
        if (d != TraceDir::info) lines.push_back((d == TraceDir::send ? ">>> " : "<<< ") + std::string(l));
    };
    Client c(o);
    c.connect(peer.transport());
    c.noop();
    std::vector<std::string> want = {"<<< 220 srv.example LMTP ready", ">>> LHLO test.example", "<<< 250-srv.example",
                                     "<<< 250-PIPELINING", "<<< 250-ENHANCEDSTATUSCODES", "<<< 250 8BITMIME",
                                     ">>> NOOP", "<<< 250-one", "<<< 250 two"};
    EXPECT_EQ(lines, want);
}

// A whole message in one data_write (one datasend): sent in pieces, each write bounded, the bytes as
// one encoding of the whole, the trace as one call (pieces between LFs, empty ones at the end left out).
TEST(Client, OneLargeDataWriteGoesOutInBoundedPiecesTracedAsOne) {
    std::string body;
    for (int i = 0; body.size() < 4u << 20; ++i) body += i % 7 ? "plain text of a line\n" : ".a dot line\r\n";
    body += "\n\n";
    std::string wire;
    for (std::size_t i = 0; i < body.size(); ++i) {  // dot-stuffed, LF made CRLF
        if (body[i] == '.' && (i == 0 || body[i - 1] == '\n')) wire += '.';
        if (body[i] == '\n' && (i == 0 || body[i - 1] != '\r')) wire += '\r';
        wire += body[i];
    }
    ScriptedFake peer(greeting(kCapsPlain) + std::vector<Step>{{"MAIL FROM:<s@x>\r\n", "250 ok\r\n"},
                                                       {"RCPT TO:<a@x>\r\n", "250 ok\r\n"},
                                                       {"DATA\r\n", "354 go\r\n"},
                                                       {wire + ".\r\n", "250 saved\r\n", Step::go_on, 0, 0, false}});
    std::size_t traced = 0, last_empty_run = 0;
    std::string last;
    ClientOptions o = options();
    o.trace = [&](TraceDir d, std::string_view l) {
        if (d != TraceDir::data) return;
        ++traced;
        last = std::string(l);
        last_empty_run = l.empty() ? last_empty_run + 1 : 0;
    };
    Client c(o);
    c.connect(peer.transport());
    c.mail("s@x");
    c.rcpt("a@x");
    c.data_start();
    const std::size_t lines = static_cast<std::size_t>(std::count(body.begin(), body.end(), '\n'));
    const int writes_before = peer.writes;
    c.data_write(body);
    EXPECT_GT(peer.writes - writes_before, 10) << "sent as it is encoded, not gathered whole";
    EXPECT_LE(peer.biggest.load(), std::size_t(600) * 1024) << "no write of the whole message at once";
    EXPECT_EQ(c.data_end().code, 250);
    // Net::Cmd's rule: every piece between LFs, but the empty ones at the end of the call.
    EXPECT_EQ(traced, lines - 2 + 1) << "one trace line per line, the trailing empty pieces left out, and the dot";
    EXPECT_EQ(last, ".");
    c.close();
    peer.finish();
    EXPECT_EQ(peer.error(), "");
}

TEST(Client, AThrowingTraceCallbackLosesNoReply) {
    ScriptedFake peer(greeting() + std::vector<Step>{{"MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nDATA\r\n", "250 ok\r\n250 ok\r\n354 go\r\n"},
                                             {"m\r\n.\r\n", "250 saved\r\n"},
                                             {"NOOP\r\n", "250 noop\r\n"}});
    ClientOptions o = options();
    o.trace = [](TraceDir, std::string_view) { throw std::runtime_error("trace failed"); };
    Client c(o);
    c.connect(peer.transport());
    EXPECT_TRUE(c.deliver("s@x", {"a@x"}, "m").all_delivered());
    EXPECT_EQ(c.noop().text(), "noop");
}

// --- the socket transport: TCP (v4, v6), unix, local address, failures ----------------

TEST(Transport, ConnectsOverIPv4IPv6AndUnixSockets) {
    for (const char* host : {"127.0.0.1", "localhost"}) {
        ScriptedFake peer(greeting(), AF_INET);
        Client c(options());
        c.connect(host, peer.port());
        EXPECT_EQ(c.domain(), "srv.example") << host;
        EXPECT_FALSE(c.transport()->is_local());
    }
    for (const char* host : {"::1", "[::1]"}) {
        ScriptedFake peer(greeting(), AF_INET6);
        Client c(options());
        c.connect(host, peer.port());
        EXPECT_EQ(c.domain(), "srv.example") << host;
        EXPECT_TRUE(contains(c.transport()->peer(), "[::1]"));
    }
    std::string path = "/tmp/lmtp-test-" + std::to_string(getpid()) + ".sock";
    ScriptedFake peer(greeting(), AF_UNIX, path);
    Client c(options());
    c.connect(path, 0);
    EXPECT_TRUE(c.transport()->is_local());
    EXPECT_EQ(c.transport()->peer(), path);
}

TEST(Transport, LocalAddressIsUsed) {
    ScriptedFake peer(greeting(), AF_INET);
    ClientOptions o = options();
    o.local_address = "127.0.0.1";
    Client c(o);
    c.connect("127.0.0.1", peer.port());
    c.close();
    peer.finish();
    EXPECT_EQ(peer.peer_address(), "127.0.0.1");
}

TEST(Transport, FailuresSayWhat) {
    std::string msg;
    // A port nothing listens on: take one and close it.
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    std::uint16_t dead = ntohs(a.sin_port);
    ::close(fd);
    Client c(options());
    EXPECT_EQ(status_of([&] { c.connect("127.0.0.1", dead); }, &msg), Status::connect);
    EXPECT_TRUE(contains(msg, "127.0.0.1 port " + std::to_string(dead))) << msg;
    EXPECT_TRUE(contains(msg, "refused")) << msg;
    EXPECT_EQ(status_of([&] { c.connect("no-such-host.invalid", 24); }, &msg), Status::resolve);
    EXPECT_EQ(status_of([&] { c.connect("/nonexistent/lmtp.sock", 0); }, &msg), Status::connect);
    EXPECT_TRUE(contains(msg, "/nonexistent/lmtp.sock")) << msg;
    EXPECT_EQ(status_of([&] { c.connect("/" + std::string(200, 'p'), 0); }), Status::invalid_argument);
    EXPECT_EQ(status_of([&] { c.connect("127.0.0.1", 0); }), Status::invalid_argument);
    EXPECT_EQ(status_of([&] { c.connect("", 24); }), Status::invalid_argument);
    ClientOptions o = options();
    o.local_address = "::1";  // IPv6 source for an IPv4 target
    Client c6(o);
    EXPECT_EQ(status_of([&] { c6.connect("127.0.0.1", dead); }, &msg), Status::connect);
    EXPECT_TRUE(contains(msg, "family")) << msg;
}

TEST(Transport, NotConnectedCallsFailCleanly) {
    Client c(options());
    EXPECT_EQ(status_of([&] { c.noop(); }), Status::not_connected);
    EXPECT_EQ(status_of([&] { c.deliver("s@x", {"a@x"}, "m"); }), Status::not_connected);
    EXPECT_EQ(status_of([&] { c.data_write("x"); }), Status::not_connected);
    EXPECT_EQ(status_of([&] { c.response(); }), Status::not_connected);
}

// --- many messages over one connection ----------------------------------------------------

namespace {

const char kCapsChunking[] = "250-srv.example\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 ENHANCEDSTATUSCODES\r\n";

// What a batch callback saw, per message.
struct Seen {
    std::size_t index;
    Status status;
    std::string why;
    Transaction txn;
};

struct Batch {
    std::vector<BatchMessage> messages;
    std::vector<Seen> seen;
    std::size_t stop_after = SIZE_MAX;  // the callback says stop after this many calls

    void add(const std::string& from, std::vector<std::string> rcpts, const std::string& body,
             Transfer transfer = Transfer::automatic) {
        BatchMessage m;
        m.from = from;
        m.recipients = std::move(rcpts);
        auto offset = std::make_shared<std::size_t>(0);
        m.source = [body, offset](char* buf, std::size_t cap) {
            std::size_t n = std::min(cap, body.size() - *offset);
            std::memcpy(buf, body.data() + *offset, n);
            *offset += n;
            return n;
        };
        m.size_hint = body.size();
        m.transfer = transfer;
        messages.push_back(std::move(m));
    }
    // Runs the batch; the status that ended it (ok when none did).
    Status run(Client& c, std::string* why = nullptr) {
        return status_of(
            [&] {
                c.deliver_batch(
                    messages.size(), [&](std::size_t i) { return messages.at(i); },
                    [&](std::size_t i, const Transaction& t, Status st, const std::string& w) {
                        seen.push_back({i, st, w, t});
                        return seen.size() < stop_after;
                    });
            },
            why);
    }
};

std::string bdat_message(const std::string& rcpt, const std::string& body) {
    return "MAIL FROM:<s@x>\r\nRCPT TO:<" + rcpt + ">\r\nBDAT " + std::to_string(body.size()) + " LAST\r\n" + body +
           "RSET\r\n";
}

const char kOneDelivered[] = "250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 2.0.0 saved\r\n250 2.0.0 reset\r\n";

}  // namespace

TEST(ClientBatch, HundredSmallMessagesByBdatGoInOneWrite) {
    Batch b;
    std::string sent, replies;
    for (int i = 0; i < 100; ++i) {
        std::string rcpt = "u" + std::to_string(i) + "@x";
        std::string body = "Subject: " + std::to_string(i) + "\r\n\r\nhello\r\n";
        b.add("s@x", {rcpt}, body);
        sent += bdat_message(rcpt, body);
        replies += kOneDelivered;
    }
    ScriptedFake peer(greeting(kCapsChunking) + std::vector<Step>{{sent, replies}, {"QUIT\r\n", "221 bye\r\n"}});
    Client c(options());
    c.connect(peer.transport());
    int before = peer.writes;
    EXPECT_EQ(b.run(c), Status::ok);
    EXPECT_EQ(peer.writes - before, 1);
    ASSERT_EQ(b.seen.size(), 100u);
    for (std::size_t i = 0; i < 100; ++i) {
        EXPECT_EQ(b.seen[i].index, i);
        EXPECT_EQ(b.seen[i].status, Status::ok);
        ASSERT_EQ(b.seen[i].txn.recipients.size(), 1u);
        EXPECT_EQ(b.seen[i].txn.recipients[0].address, "u" + std::to_string(i) + "@x");
        EXPECT_EQ(b.seen[i].txn.recipients[0].outcome, Outcome::ok);
    }
    c.quit();
    peer.finish();
    EXPECT_EQ(peer.error(), "");
}

TEST(ClientBatch, ByDataEachMessageCostsOneWrite) {
    // [MAIL RCPT DATA] -> 354 -> [body . MAIL RCPT DATA] -> ... : the 354 makes each message wait.
    Batch b;
    std::vector<Step> steps{{"MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nDATA\r\n", "250 ok\r\n250 ok\r\n354 go\r\n"}};
    for (int i = 0; i < 3; ++i) {
        b.add("s@x", {"a@x"}, "m" + std::to_string(i) + "\n");
        std::string body = "m" + std::to_string(i) + "\r\n.\r\n";
        if (i < 2)
            steps.push_back({body + "MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nDATA\r\n",
                             "250 2.0.0 saved\r\n250 ok\r\n250 ok\r\n354 go\r\n"});
        else
            steps.push_back({body, "450 4.2.0 later\r\n"});
    }
    ScriptedFake peer(greeting() + steps);
    Client c(options());
    c.connect(peer.transport());
    int before = peer.writes;
    EXPECT_EQ(b.run(c), Status::ok);
    EXPECT_EQ(peer.writes - before, 4);  // one per message, and the first group
    ASSERT_EQ(b.seen.size(), 3u);
    EXPECT_TRUE(b.seen[0].txn.all_delivered());
    EXPECT_TRUE(b.seen[1].txn.all_delivered());
    EXPECT_EQ(b.seen[2].txn.recipients[0].outcome, Outcome::tempfail);
    c.close();
    peer.finish();
    EXPECT_EQ(peer.error(), "");
}

TEST(ClientBatch, TheBoundOnOctetsInFlightMakesMessagesWait) {
    // With a bound smaller than one message each waits for the one before (but still goes).
    Batch b;
    std::vector<Step> steps;
    for (int i = 0; i < 3; ++i) {
        b.add("s@x", {"a@x"}, "body\r\n");
        steps.push_back({bdat_message("a@x", "body\r\n"), kOneDelivered});
    }
    ScriptedFake peer(greeting(kCapsChunking) + steps);
    ClientOptions o = options();
    o.max_in_flight = 10;
    Client c(o);
    c.connect(peer.transport());
    int before = peer.writes;
    EXPECT_EQ(b.run(c), Status::ok);
    EXPECT_EQ(peer.writes - before, 3);
    EXPECT_EQ(b.seen.size(), 3u);
    c.close();
    peer.finish();
    EXPECT_EQ(peer.error(), "");  // the peer fails the test if a message came before its turn
}

TEST(ClientBatch, ACloseWithSeveralInFlightLeavesEachItsOwnResults) {
    Batch b;
    std::string sent;
    for (int i = 0; i < 4; ++i) {
        b.add("s@x", {"a@x", "b@x"}, "m\r\n");
        sent += "MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\nBDAT 3 LAST\r\nm\r\nRSET\r\n";
    }
    // The first message whole; the second's MAIL, a's RCPT and final; then the server goes.
    ScriptedFake peer(greeting(kCapsChunking) +
              std::vector<Step>{{sent,
                                 "250 ok\r\n250 ok\r\n550 5.1.1 no\r\n250 saved\r\n250 reset\r\n"
                                 "250 ok\r\n250 ok\r\n",
                                 Step::close_after}});
    Client c(options());
    c.connect(peer.transport());
    std::string why;
    EXPECT_EQ(b.run(c, &why), Status::closed);
    ASSERT_EQ(b.seen.size(), 4u);
    EXPECT_EQ(b.seen[0].status, Status::ok);
    EXPECT_EQ(b.seen[0].txn.recipients[0].outcome, Outcome::ok);
    EXPECT_EQ(b.seen[0].txn.recipients[1].outcome, Outcome::permfail);
    for (std::size_t i = 1; i < 4; ++i) {
        EXPECT_EQ(b.seen[i].index, i);
        EXPECT_EQ(b.seen[i].status, Status::closed);
        ASSERT_EQ(b.seen[i].txn.recipients.size(), 2u);
        EXPECT_EQ(b.seen[i].txn.recipients[1].outcome, Outcome::unknown);
        EXPECT_EQ(b.seen[i].txn.recipients[0].outcome, Outcome::unknown);
    }
    EXPECT_EQ(b.seen[1].txn.recipients[0].rcpt_reply.code, 250);  // what did come is kept
    EXPECT_FALSE(c.connected());
    peer.finish();
}

TEST(ClientBatch, ALocalRefusalFailsThatMessageAloneAndSendsNothingOfIt) {
    Batch b;
    b.add("s@x", {"a@x"}, "one\r\n");
    b.add("s@x", {"bad>@x"}, "two\r\n");
    b.add("s@x", {"c@x"}, "three\r\n");
    b.messages[1].recipients = {"a\r\nRSET@x"};
    ScriptedFake peer(greeting(kCapsChunking) +
              std::vector<Step>{{bdat_message("a@x", "one\r\n") + bdat_message("c@x", "three\r\n"),
                                 std::string(kOneDelivered) + kOneDelivered}});
    Client c(options());
    c.connect(peer.transport());
    EXPECT_EQ(b.run(c), Status::ok);
    ASSERT_EQ(b.seen.size(), 3u);
    EXPECT_EQ(b.seen[0].status, Status::ok);
    EXPECT_EQ(b.seen[1].status, Status::bad_input);
    EXPECT_TRUE(b.seen[1].txn.recipients.empty());
    EXPECT_EQ(b.seen[2].status, Status::ok);
    EXPECT_TRUE(b.seen[2].txn.all_delivered());
    EXPECT_TRUE(c.connected());
    c.close();
    peer.finish();
    EXPECT_EQ(peer.error(), "");
}

TEST(ClientBatch, ASourceFailingBeforeItsFirstChunkFailsThatMessageAlone) {
    Batch b;
    b.add("s@x", {"a@x"}, "one\r\n");
    b.add("s@x", {"b@x"}, "two\r\n");
    b.messages[0].source = [](char*, std::size_t) -> std::size_t { throw std::runtime_error("disk on fire"); };
    ScriptedFake peer(greeting(kCapsChunking) + std::vector<Step>{{bdat_message("b@x", "two\r\n"), kOneDelivered}});
    Client c(options());
    c.connect(peer.transport());
    EXPECT_EQ(b.run(c), Status::ok);
    ASSERT_EQ(b.seen.size(), 2u);
    EXPECT_EQ(b.seen[0].status, Status::aborted);
    EXPECT_TRUE(contains(b.seen[0].why, "disk on fire")) << b.seen[0].why;
    EXPECT_TRUE(b.seen[1].txn.all_delivered());
    c.close();
    peer.finish();
    EXPECT_EQ(peer.error(), "");
}

TEST(ClientBatch, TheCallbackCanStopTheBatch) {
    Batch b;
    for (int i = 0; i < 3; ++i) b.add("s@x", {"a@x"}, "m\r\n");
    b.stop_after = 1;
    ClientOptions o = options();
    o.max_in_flight = 1;  // one message at a time, so that the stop comes before the next is sent
    ScriptedFake peer(greeting(kCapsChunking) + std::vector<Step>{{bdat_message("a@x", "m\r\n"), kOneDelivered}});
    Client c(o);
    c.connect(peer.transport());
    bool whole = true;
    EXPECT_NO_THROW(whole = c.deliver_batch(
                        3, [&](std::size_t i) { return b.messages.at(i); },
                        [&](std::size_t i, const Transaction& t, Status st, const std::string& w) {
                            b.seen.push_back({i, st, w, t});
                            return false;
                        }));
    EXPECT_FALSE(whole);
    EXPECT_EQ(b.seen.size(), 1u);
    EXPECT_TRUE(c.connected());
    c.close();
    peer.finish();
    EXPECT_EQ(peer.error(), "");
}

TEST(ClientBatch, WithoutPipeliningOneMessageAfterTheOther) {
    Batch b;
    b.add("s@x", {"a@x"}, "m\r\n");
    b.add("s@x", {"b@x"}, "n\r\n");
    ScriptedFake peer(greeting(kCapsPlain) + std::vector<Step>{{"MAIL FROM:<s@x>\r\n", "250 ok\r\n"},
                                                       {"RCPT TO:<a@x>\r\n", "250 ok\r\n"},
                                                       {"DATA\r\n", "354 go\r\n"},
                                                       {"m\r\n.\r\n", "250 saved\r\n"},
                                                       {"MAIL FROM:<s@x>\r\n", "250 ok\r\n"},
                                                       {"RCPT TO:<b@x>\r\n", "550 no\r\n"}});
    Client c(options());
    c.connect(peer.transport());
    EXPECT_EQ(b.run(c), Status::ok);
    ASSERT_EQ(b.seen.size(), 2u);
    EXPECT_TRUE(b.seen[0].txn.all_delivered());
    EXPECT_EQ(b.seen[1].txn.recipients[0].stage, Stage::rcpt);
    c.close();
    peer.finish();
    EXPECT_EQ(peer.error(), "");
}

TEST(ClientBdat, EachChunkGoesWithItsLineInOneWriteWithoutBeingJoined) {
    // The chunk's bytes are a piece of their own after the BDAT line (and
    // MAIL, RCPT before the first): one write each, no copy next to the line.
    ClientOptions o = options();
    o.bdat_chunk = 8;
    ScriptedFake peer(greeting(kCapsChunking) +
              std::vector<Step>{{"MAIL FROM:<s@x>\r\nRCPT TO:<b@x>\r\nBDAT 8\r\n01234567BDAT 8\r\n89abcdef",
                                 "250 ok\r\n250 ok\r\n250 8\r\n250 8\r\n"},
                                {"BDAT 5 LAST\r\nXYZ\r\n", "250 2.0.0 saved\r\n"}});
    Client c(o);
    c.connect(peer.transport());
    int before = peer.writes;
    const Transaction& t = c.deliver("s@x", {"b@x"}, std::string_view("0123456789abcdefXYZ"), {}, {}, false,
                                     Transfer::bdat);
    EXPECT_TRUE(t.all_delivered());
    EXPECT_EQ(peer.writes - before, 3);  // one per chunk
    EXPECT_EQ(peer.most_pieces, 2u);     // the commands, then the chunk's bytes
    c.close();
    peer.finish();
    EXPECT_EQ(peer.error(), "");
}

TEST(Transport, WritePiecesSendsThemInOrderWhateverTheSocketTakes) {
    // More pieces than one writev takes, empty ones, and more bytes than the
    // socket buffer holds (so sends stop part way through a piece).
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    std::vector<std::string> parts;
    std::string want;
    for (int i = 0; i < 20; ++i) {
        std::string p(i % 3 == 0 ? 0 : static_cast<std::size_t>(1000 + i * 37777), static_cast<char>('a' + i));
        want += p;
        parts.push_back(std::move(p));
    }
    std::vector<std::string_view> pieces(parts.begin(), parts.end());
    std::string got;
    std::thread reader([&] {
        char buf[65536];
        for (;;) {
            ssize_t n = ::recv(sv[1], buf, sizeof buf, 0);
            if (n <= 0) break;
            got.append(buf, static_cast<std::size_t>(n));
        }
    });
    {
        SocketTransport t(sv[0], true, "pair");
        t.write_pieces(pieces.data(), pieces.size(), Clock::now() + 10s);
    }  // closes the socket: the reader sees the end
    reader.join();
    ::close(sv[1]);
    EXPECT_EQ(got.size(), want.size());
    EXPECT_TRUE(got == want);
}

TEST(ClientBatch, ALargeMessageStreamsInChunksBetweenSmallOnes) {
    ClientOptions o = options();
    o.bdat_chunk = 8;
    Batch b;
    b.add("s@x", {"a@x"}, "one\r\n");
    b.add("s@x", {"b@x"}, "0123456789abcdefXYZ");  // 8 + 8 + 3 (+ CRLF)
    b.add("s@x", {"c@x"}, "three\r\n");
    ScriptedFake peer(greeting(kCapsChunking) +
              std::vector<Step>{{bdat_message("a@x", "one\r\n") +
                                     "MAIL FROM:<s@x>\r\nRCPT TO:<b@x>\r\nBDAT 8\r\n01234567",
                                 "", Step::go_on, 0, 0, false},
                                {"BDAT 8\r\n89abcdef", "", Step::go_on, 0, 0, false},
                                {"", std::string(kOneDelivered) + "250 ok\r\n250 ok\r\n250 8\r\n250 8\r\n"},
                                {"BDAT 5 LAST\r\nXYZ\r\nRSET\r\n" + bdat_message("c@x", "three\r\n"),
                                 "250 saved\r\n250 reset\r\n" + std::string(kOneDelivered)}});
    Client c(o);
    c.connect(peer.transport());
    EXPECT_EQ(b.run(c), Status::ok);
    ASSERT_EQ(b.seen.size(), 3u);
    for (const auto& s : b.seen) EXPECT_TRUE(s.txn.all_delivered()) << s.index;
    c.close();
    peer.finish();
    EXPECT_EQ(peer.error(), "");
}
