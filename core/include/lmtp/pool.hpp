// A delivery pool: messages spread over up to K connections to a list of
// servers, with retries of temporary failures, reuse limits and connect
// back-off. Two layers, as everywhere in liblmtp:
//
//   PoolPlanner  the policy, sans-I/O: no socket, no clock of its own (every
//                call is given the time). It decides which queued message goes
//                to which free connection (and with which of its recipients),
//                when a 4xx is retried, what a break means for each recipient,
//                when to open, retire (QUIT) and drop connections, and the
//                connect back-off. Every driver uses it, so the policy lives here.
//   Pool         the I/O driver: the planner and its connections, each an
//                Engine driven by an EventDriver. A non-blocking face (fds,
//                deadline, process) and a blocking one (run_once: one poll()).
//
// Decisions where the contract leaves room (written here, where the drivers read them):
//  - One message in flight per connection, so that a break makes one message's
//    recipients uncertain, no more.
//  - A break BEFORE a message's end was written: the server cannot have delivered
//    it; its recipients without a verdict go back to the queue at once (no retry
//    delay). After `retries + 1` such breaks in a row the message is reported with
//    the break's status and those recipients UNKNOWN (a poison message must not loop).
//  - A break AFTER the end: recipients without a verdict are UNKNOWN and never
//    re-sent, unless resend_unknown (then they take the 4xx retry path and budget).
//  - A 4xx re-send holds only the recipients that got the 4xx, in a new
//    transaction, after retry_delay doubled per re-send of that message (capped).
//  - A message given as a stream (not resendable) is sent once: its 4xx stay
//    TEMPFAIL, and a break before its end leaves its recipients UNKNOWN with the
//    break's status.
//  - mailbox_concurrency: a message goes with those of its waiting recipients whose
//    mailbox is free; those whose mailbox is busy wait for a later transaction of
//    the same message. The oldest message that can go, goes first.
//  - Connections are opened only when a message waits for one. Until one
//    connection has completed its set-up (and after any connect failure) only one
//    connect is under way at a time, so that a dead server costs one attempt per
//    round, not K.
//  - A connect that fails (or whose set-up fails: banner or LHLO refused, TLS)
//    skips that server for the current back-off and tries the next in list order.
//    A round ends when every server failed since the last success; the back-off is
//    retry_delay doubled per round (capped at retry_delay_max). After
//    connect_attempts rounds every message not in flight is reported with the last
//    connect error; one that never went out has no results, one with verdicts from
//    earlier transactions keeps them (recipients never sent: PENDING). A success
//    resets the rounds.
//  - A connection that breaks while idle (the server's own idle timeout) is simply
//    dropped: no back-off.
//  - Status of a report: ok when every recipient has the server's verdict (ok,
//    tempfail, permfail); a recipient left unknown by a break after the end makes
//    it the break's status and reason (as a batch reports a session that ended
//    under a message), the verdicts that came kept; otherwise the error that kept
//    the rest from being sent (a local refusal, the connect error, a poison break,
//    closed).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "lmtp/engine.hpp"
#include "lmtp/event_driver.hpp"
#include "lmtp/session.hpp"
#include "lmtp/status.hpp"
#include "lmtp/transport.hpp"

namespace lmtp {

struct PoolOptions {
    std::size_t connections = 4;                       // K, at least 1
    unsigned retries = 3;                              // re-sends of a recipient after a 4xx
    std::chrono::milliseconds retry_delay{1000};       // before the first re-send; doubles
    std::chrono::milliseconds retry_delay_max{60000};  // the cap of the doubling
    std::size_t max_messages_per_connection = 100;     // then QUIT; 0: no limit
    std::chrono::milliseconds max_connection_age{300000};  // then QUIT after its message; 0: none
    std::chrono::milliseconds idle_timeout{10000};     // an idle connection is closed (QUIT); 0: never
    std::size_t mailbox_concurrency = 2;               // messages in flight per address; 0: no limit
    bool resend_unknown = false;                       // re-send recipients unknown after the end
    std::optional<unsigned> connect_attempts;          // rounds of failed connects; none: retries + 1
};

// What the pool says of one message, once.
struct PoolReport {
    std::size_t id = 0;
    Status status = Status::ok;
    std::string why;                          // empty for Status::ok
    std::vector<RecipientResult> recipients;  // in the order given; empty when nothing was sent
    std::vector<unsigned> attempts;           // per recipient: transactions that included it
};

// The mailbox a recipient address names, for mailbox_concurrency: the domain
// (after the last '@') compared case-insensitively, the local part as it is.
std::string mailbox_key(const std::string& address);

class PoolPlanner {
public:
    using ConnId = std::uint64_t;

    explicit PoolPlanner(PoolOptions options);

    // The servers, tried in the order added.
    std::size_t add_server();
    std::size_t server_count() const { return servers_.size(); }

    // A message to deliver; `resendable`: its bytes can be given again (in memory).
    // Returns its id (0, 1, 2... in order).
    std::size_t add(std::vector<std::string> recipients, bool resendable, Deadline now);
    // Messages not reported yet.
    std::size_t pending() const { return messages_.size(); }

    // --- decisions (ask after every event, until each says nothing) ---------------------
    struct Open {
        ConnId conn;
        std::size_t server;
    };
    struct Send {
        ConnId conn;
        std::size_t message;
        std::vector<std::size_t> recipients;  // indexes into the message's list, in order
    };
    // A connection to start now.
    std::optional<Open> next_open(Deadline now);
    // A message for a ready, idle connection.
    std::optional<Send> next_send(Deadline now);
    // A connection to end politely (QUIT): reuse limits reached, or idle too long.
    std::optional<ConnId> next_quit(Deadline now);
    // When a decision may change with the time alone (a retry due, a back-off over,
    // an idle connection to close); none when only an event can change one.
    // `now` itself when a decision is already due (a retry whose time came while the
    // driver was busy elsewhere): the driver must not sleep past it.
    std::optional<Deadline> wake(Deadline now) const;

    // --- events ---------------------------------------------------------------------
    // The connection's set-up is done: it takes messages.
    void opened(ConnId conn, Deadline now);
    // The connection ended: a connect or set-up failure (before opened), a break,
    // or the end of a QUIT. The message in flight, if any, must have been given to
    // finished() first; if not, its recipients count as broken before the end.
    void closed(ConnId conn, Status status, const std::string& why, Deadline now);
    // The message in flight on `conn` ended (the engine's report of it).
    void finished(ConnId conn, const Delivered& d, Deadline now);
    // Every message not reported yet is reported now with `status` (recipients as
    // far as known), and forgotten; the connections are forgotten too.
    void abandon(Status status, const std::string& why);
    // The caller takes message `id` back: forgotten without a report. One in flight
    // may be taken back only when none of its bytes was written (the driver withdrew
    // it from its engine): its connection is idle again, its recipients' mailboxes
    // free. False for an id not pending (reported already, or never added).
    bool withdraw(std::size_t id, Deadline now);

    // --- reports --------------------------------------------------------------------
    bool has_report() const { return !reports_.empty(); }
    PoolReport take_report();

    // --- for tests and drivers ----------------------------------------------------------
    std::size_t connection_count() const { return conns_.size(); }
    std::size_t busy_count() const;
    const PoolOptions& options() const { return opt_; }

private:
    enum class ConnState { connecting, idle, busy, quitting };
    struct Conn {
        std::size_t server = 0;
        ConnState state = ConnState::connecting;
        std::uint64_t epoch = 0;  // the connect round it started in
        Deadline opened{};
        Deadline idle_since{};
        std::size_t messages = 0;
        std::optional<std::size_t> message;  // in flight
        std::vector<std::size_t> sent;       // its recipients in this transaction
    };
    struct Rcpt {
        std::string address;
        std::string key;
        RecipientResult result;
        bool final = false;
        bool in_flight = false;
        unsigned attempts = 0;
        unsigned resends = 0;  // 4xx (or unknown) re-sends used
    };
    struct Message {
        std::vector<Rcpt> rcpts;
        bool resendable = true;
        bool sent_once = false;
        bool answered = false;  // a try got as far as results (or a break)
        Deadline not_before{};
        unsigned retry_round = 0;
        unsigned breaks = 0;  // breaks before the end, in a row
        std::optional<ConnId> conn;
        Status last_status = Status::ok;
        std::string last_why;
    };
    struct Server {
        Deadline skip_until{};
        bool failed = false;  // in this round
    };

    bool waiting(const Message& m, Deadline now) const;
    // next_quit, next_send or next_open would give something now.
    bool due(Deadline now) const;
    std::optional<std::size_t> server_to_open(Deadline now) const;
    bool retiring(const Conn& c, Deadline now) const;
    bool mailbox_free(const std::string& key) const;
    std::vector<std::size_t> sendable(const Message& m) const;
    std::size_t eligible_count(Deadline now) const;
    void release(Message& m);
    void settle(std::size_t id, Message& m, Deadline now);
    void report(std::size_t id, Message& m, Status status, const std::string& why);
    void give_up(Status status, const std::string& why);
    std::chrono::milliseconds doubled(unsigned round) const;
    bool reuse_over(const Conn& c, Deadline now) const;

    PoolOptions opt_;
    std::vector<Server> servers_;
    std::map<std::size_t, Message> messages_;  // by id: the oldest first
    std::map<ConnId, Conn> conns_;
    std::map<std::string, std::size_t> mailboxes_;  // messages in flight per mailbox
    std::deque<PoolReport> reports_;
    std::size_t next_id_ = 0;
    ConnId next_conn_ = 1;
    std::uint64_t epoch_ = 0;
    unsigned rounds_ = 0;   // failed connect rounds in a row
    bool proven_ = false;   // a connection completed its set-up since the last connect failure
};

// The I/O driver of a pool.
class Pool {
public:
    // `client`: each connection's options (LHLO is always sent).
    Pool(ClientOptions client, PoolOptions options);
    ~Pool();  // drops every connection without QUIT (reports nothing)
    Pool(const Pool&) = delete;
    Pool& operator=(const Pool&) = delete;

    // A server, tried in the order added: a host (name, IP literal, or unix socket
    // path starting with "/") and a port. A host name is looked up (blocking) when
    // a connection to it starts.
    void add_server(const std::string& host, std::uint16_t port);
    std::size_t server_count() const { return servers_.size(); }

    // Queues a message; its bytes (in memory, or its source) must stay valid until
    // its report. Throws for a message that cannot be queued (no recipient, no
    // server). Returns its id. Messages start going out at the next process() or kick().
    std::size_t submit(BatchMessage message, Deadline now);
    std::size_t pending() const { return planner_.pending(); }

    // --- non-blocking ---------------------------------------------------------------
    struct Wait {
        int fd;
        unsigned want;  // EventDriver::want_read | want_write
    };
    // The sockets to wait on: fills up to `cap`, returns how many there are.
    std::size_t fds(Wait* out, std::size_t cap) const;
    // When process() must be called even without an event; none: no limit.
    std::optional<Deadline> deadline(Deadline now) const;
    // What happened: `events` (fd, want_read | want_write) from the wait, none after
    // a timeout. Never blocks (but a host name's lookup); never throws for a
    // connection's failure (it is the planner's event).
    void process(const Wait* events, std::size_t n, Deadline now);
    bool has_report() const { return planner_.has_report(); }
    PoolReport take_report();
    // Makes the decisions due now (connects, sends) without waiting for an event:
    // after submit(), so that fds() and deadline() include the new work.
    void kick(Deadline now);

    // --- blocking -------------------------------------------------------------------
    // One wait (poll) and its processing.
    void run_once();

    // Every message not reported yet is reported with `status`; connections dropped.
    void abandon(Status status, const std::string& why);

    const PoolPlanner& planner() const { return planner_; }

private:
    struct Conn {
        std::unique_ptr<Engine> engine;
        std::unique_ptr<EventDriver> driver;
        std::size_t server = 0;
        bool ready = false;
        bool quitting = false;
        std::optional<std::uint64_t> token;  // the message in flight
        std::size_t message = 0;
    };
    struct Server {
        std::string host;
        std::uint16_t port;
    };
    struct Held {
        BatchMessage message;  // recipients: the whole list
        bool resendable;
    };

    void drive(PoolPlanner::ConnId id, unsigned events, Deadline now);
    void harvest(PoolPlanner::ConnId id, Conn& c, Deadline now);
    void drop(PoolPlanner::ConnId id, Status status, const std::string& why, Deadline now);
    void decide(Deadline now);
    void start(const PoolPlanner::Open& o, Deadline now);
    void send(const PoolPlanner::Send& s, Deadline now);
    void quit(PoolPlanner::ConnId id, Deadline now);

    ClientOptions client_;
    PoolPlanner planner_;
    std::vector<Server> servers_;
    std::map<PoolPlanner::ConnId, Conn> conns_;
    std::map<std::size_t, Held> held_;
};

}  // namespace lmtp
