// The engine: one LMTP connection's whole life as a state machine over bytes
// and the time, doing no I/O of its own (sans-I/O).
//
// It owns every protocol decision: the banner, LHLO, STARTTLS and the TLS
// records (OpenSSL over memory buffers), AUTH (the SASL exchange), the
// deliveries queued on it (pipelined back to back, each with its own
// results), BDAT windows, the bound on octets in flight, and the deadline of
// whatever it waits for. A driver moves the bytes:
//
//   feed(bytes, now)       what came from the server (ciphertext under TLS); an empty feed: end of stream
//   output_pieces()        what must go to the server, then consumed(n, now)
//   step(now)              one unit of work: apply one reply, queue a piece of a message, start one...
//   run(now)               steps until nothing is left to do
//   waiting_for_server()   a reply (or a TLS record) is awaited: read
//   deadline()             when the wait ends; on_time(now) once it has passed
//
// The blocking Client is such a driver (a short loop over a Transport); the
// C API's non-blocking handle is another (the caller's poll loop), and its
// bytes-only mode hands feed and output to the caller itself.
//
// Errors: a call that breaks the connection (a protocol violation, a
// timeout, the server gone, the driver's I/O failure) closes it, marks every
// recipient without a verdict unknown, reports every delivery queued, records
// the error (failure()) and throws it. A job the caller asked for (AUTH,
// STARTTLS) that the server refuses without closing ends with job_error().
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lmtp/reply.hpp"
#include "lmtp/session.hpp"
#include "lmtp/status.hpp"
#include "lmtp/tls.hpp"
#include "lmtp/transport.hpp"

typedef struct ssl_st SSL;
typedef struct bio_st BIO;

namespace lmtp {

class SaslMechanism;

// When the connection's set-up upgrades to TLS with STARTTLS (RFC 3207).
enum class StartTls {
    off,            // never on its own (starttls() still works)
    opportunistic,  // when the server offers it
    required,       // always: the set-up fails if the server does not offer it
};

struct ClientOptions {
    // LHLO argument; empty means this machine's host name (or "localhost").
    std::string hello;
    // Deadline for each reply, and for each write of a batch of bytes.
    std::chrono::milliseconds timeout{kDefaultTimeout};
    // Deadline for each address tried when connecting; 0 means `timeout`.
    std::chrono::milliseconds connect_timeout{0};
    std::string local_address;
    std::uint16_t local_port = 0;
    SessionLimits limits;
    // Message bytes are sent in writes of about this size.
    std::size_t write_chunk = 64 * 1024;
    // Send LHLO right after the banner (the set-up then fails if it is refused).
    // Off: the set-up reads the banner only, and the caller says hello;
    // STARTTLS and AUTH below are then the caller's to do too.
    bool send_hello = true;

    // --- TLS ---
    TlsOptions tls;
    StartTls starttls = StartTls::off;
    // TLS from the first byte (no STARTTLS), as on a port that speaks TLS only.
    bool implicit_tls = false;

    // --- AUTH, done by the set-up after LHLO (and STARTTLS) when a user is set ---
    std::string auth_user;
    std::string auth_password;
    std::string auth_mechanism;  // empty: the strongest offered
    // PLAIN and LOGIN send the password itself: by default only over TLS or
    // a unix socket.
    bool auth_allow_plaintext = false;

    // --- BDAT ---
    // Message bytes read per BDAT chunk (the chunk grows by the CRLF fixes).
    std::size_t bdat_chunk = 256 * 1024;
    // BDAT chunks sent ahead of their replies, at most, when the server
    // offers PIPELINING; without it each chunk waits for the one before.
    std::size_t bdat_window = 4;
    // Deliveries: octets sent ahead of their replies, at most (but always
    // one whole message, and with BDAT at least its first chunk).
    std::size_t max_in_flight = 1024 * 1024;
    // Never read the first final reply as one line per recipient (the
    // servers that answer so: session.hpp). Off: such servers are recognised.
    bool strict_replies = false;
    // A message in memory over the server's SIZE limit: refused before anything of it is sent
    // (Status::too_big), instead of going undeclared so that the server refuses it per
    // recipient. The faces that always refused such a message (Python) set it.
    bool refuse_over_size = false;
    TraceFn trace;
};

// Gives the next piece of a message: writes up to `cap` bytes into `buf` and
// returns how many; 0 means the message is complete. Throwing abandons the
// transaction (the connection is closed: the server must not deliver a
// message whose end it never saw). Under the non-blocking API it must not
// block.
using BodySource = std::function<std::size_t(char* buf, std::size_t cap)>;
// A message already in memory as a BodySource (`bytes` must outlive it).
BodySource memory_source(std::string_view bytes);

// One message to deliver.
struct BatchMessage {
    std::string from;
    std::vector<std::string> recipients;
    BodySource source;
    std::size_t size_hint = 0;  // its length when known (for the bound on octets in flight), else 0
    // The whole message when it is in memory (`source` may then be empty):
    // its SIZE is declared from its canonical length when the server offers
    // SIZE and the caller gave none.
    std::optional<std::string_view> bytes;
    // Its canonical length (CRLF line ends) when the caller counted it, for a
    // message in memory given by `source` (in pieces): declared as SIZE as for
    // `bytes`. The core decides whether and what to declare, never the caller.
    std::optional<std::uint64_t> canonical_size;
    MailParams mail_params;
    RcptParams rcpt_params;
    bool force = false;
    Transfer transfer = Transfer::automatic;
    bool canonical = false;
};

// A delivery the engine finished with: every recipient has a verdict
// (status ok), or the message could not be sent (refused before anything of
// it went out: no results), or the session ended under it (every recipient
// without a verdict unknown). `why` is empty for Status::ok.
struct Delivered {
    std::uint64_t token = 0;
    Transaction txn;
    Status status = Status::ok;
    std::string why;
    // The message's end (the final "." of DATA, or BDAT LAST) was written: a server
    // may have delivered it although no final reply came. False: it cannot have.
    bool end_sent = false;
};

class Engine {
public:
    // `options` belongs to the owner and is read as it is at each step.
    explicit Engine(const ClientOptions& options);
    ~Engine();
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    // --- the connection ---------------------------------------------------------
    // The transport is connected. `host`: what the caller connected to (the
    // name TLS verifies by default); `local`: a unix socket. Starts the
    // set-up: TLS first with implicit TLS, the banner, then (send_hello)
    // LHLO, STARTTLS and AUTH as the options say. Checks the LHLO name and
    // the AUTH settings first (throws without opening).
    void open(Deadline now, const std::string& host, bool local);
    bool is_open() const { return open_; }
    // The set-up (or a job) is running.
    bool busy() const { return step_ != Step::none; }
    // Drops the connection without QUIT; deliveries in flight end unknown,
    // reported with `status` and `why`.
    void close(Status status = Status::closed, const std::string& why = "the connection was closed") noexcept;
    // Why the connection ended, if an error ended it.
    const std::optional<Error>& failure() const { return failure_; }

    // --- bytes --------------------------------------------------------------------
    void feed(const char* data, std::size_t n, Deadline now);
    // What must go out, in up to three pieces (a BDAT chunk apart from the
    // command lines around it, so that it is never copied).
    std::size_t output_pieces(std::string_view (&pieces)[3]);
    std::size_t output_size() const;
    void consumed(std::size_t n, Deadline now);
    // A reply or a TLS record is awaited (the driver should read).
    bool waiting_for_server() const;
    // A complete reply (or plaintext) is buffered and step() would use it.
    bool input_ready() const;
    // When the current wait times out; none when nothing is awaited.
    std::optional<Deadline> deadline() const;
    // The driver's clock passed deadline() (after feeding what was readable):
    // fails with Status::timeout, saying what was awaited.
    void on_time(Deadline now);
    // A write failed: what was still to go is dropped, so that the replies the server sent
    // before it went can be taken (their verdicts kept) before io_failed.
    void discard_output() noexcept;
    // The driver's read or write failed: closes, reports, throws.
    [[noreturn]] void io_failed(const Error& e, bool writing);
    // Bytes a broken session leaves to send if the server still reads (the
    // lone dot after a wrong 354). Taken once.
    std::string take_last_words();

    // --- work -------------------------------------------------------------------------
    // One unit of work; false when there is none until more input, output
    // space or time.
    bool step(Deadline now);
    void run(Deadline now) {
        while (step(now)) {
        }
    }
    // A wait starts now (a command was queued): the deadline counts from here.
    void begin_wait(Deadline now) { activity_ = now; }
    // Bytes that answer no command (kept until asked): throws Error(closed)
    // for a 421, Error(protocol) otherwise, and closes. Also fails for a
    // server that closed the connection while nothing was awaited.
    void check_unsolicited();
    // Replies applied since open(): a driver waits for one with it.
    std::uint64_t replies_seen() const { return replies_; }

    // --- jobs (one at a time; the set-up is one) -------------------------------------
    // STARTTLS, the handshake, LHLO again. Bad TLS settings throw before
    // anything is sent. The job ends with the STARTTLS refusal or LHLO's reply.
    void start_starttls(const std::string& hello);
    // AUTH with `mechanism` (empty: the strongest offered). Checks throw
    // before anything is sent. The job ends with 235, or job_error()
    // Error(auth) saying why.
    void start_auth(const std::string& user, const std::string& password, const std::string& mechanism,
                    bool allow_plaintext);
    // The job's error when it ended without success and without closing.
    std::optional<Error> take_job_error();
    const Reply& starttls_reply() const { return starttls_reply_; }

    // --- deliveries ------------------------------------------------------------------
    // Queues a message behind the others; it starts when the set-up is done,
    // the octets in flight allow, and (without PIPELINING) the one before has
    // its verdicts. `single`: as a batch of one (nothing pipelined behind it)
    // whose results stay in transaction() (Client::deliver); its report
    // carries none. Returns its token.
    std::uint64_t submit(BatchMessage&& message, bool single = false);
    std::uint64_t submit(const BatchMessage& message, bool single = false) {
        return submit(BatchMessage(message), single);
    }
    // A single delivery (as submit(message, true)) described in place: the
    // caller fills the message returned before the engine next steps.
    BatchMessage& submit_single();
    // Deliveries finished, in the order they were submitted.
    bool has_delivered() const { return !delivered_.empty(); }
    Delivered take_delivered();
    // The oldest one (has_delivered() first); drop_delivered() forgets it.
    Delivered& next_delivered() { return delivered_.front(); }
    void drop_delivered();
    // A message that cannot be sent (its source failed before it was given):
    // reported in its turn with this error and no results.
    std::uint64_t submit_refused(Status status, std::string why);
    // Messages queued and not finished; those not started.
    std::size_t deliveries() const { return waiting_.size() + slots_.size(); }  // (the active one has its slot)
    std::size_t waiting_count() const { return waiting_.size(); }
    // Forgets the messages not yet started (no report for them); returns how many.
    std::size_t drop_waiting();
    // Forgets one message not yet started (none of its bytes queued: no report for it, as if
    // never submitted). False when it has started (or was reported, or is unknown): then only
    // closing abandons it.
    bool withdraw(std::uint64_t token);
    // Forgets reports nobody took (after a break the blocking client reported itself).
    void forget_delivered() { delivered_.clear(); }

    // --- what is known ----------------------------------------------------------------
    Session& session() { return session_; }
    const Session& session() const { return session_; }
    const Reply& last_reply() const { return last_; }
    void set_last_reply(Reply r) { last_ = std::move(r); }
    bool tls_active() const { return tls_ == Tls::on; }
    bool is_local() const { return local_; }
    // The LHLO name as the options give it, checked (throws Error(bad_input)).
    std::string hello_name() const;
    // What open() checks before anything is sent: the LHLO name, the AUTH settings.
    // Returns the LHLO name.
    std::string check_setup() const;
    void reset_input();
    // A line for the trace callback (a throwing callback is ignored).
    void trace(TraceDir dir, std::string_view text) const noexcept;

private:
    enum class Step { none, implicit_tls, banner, lhlo, starttls, handshake, lhlo_tls, auth, auth_cancel };
    enum class Tls { off, handshake, on };
    struct Pending {
        Pending(std::uint64_t t, BatchMessage&& message, bool one) : token(t), m(std::move(message)), single(one) {}
        std::uint64_t token;
        BatchMessage m;
        bool single;
        std::optional<Error> refused;
    };
    struct Slot {
        std::uint64_t token = 0;
        std::uint64_t id = 0;   // the session's batch transaction; 0: none
        bool single = false;    // a batch of one: the caller reads its results in session().transaction()
        std::uint64_t end = 0;  // queued_bytes() once the whole message was queued
        Status status = Status::ok;
        std::string why;
    };
    struct Active {
        BodySource source;        // the message's bytes; none: `bytes`
        std::string_view bytes;   // what is left of a message in memory
        std::size_t size_hint = 0;
        bool bdat = false;      // the body goes as BDAT chunks; held_ has the next one
        bool more = false;      // the source may have more after held_
        std::size_t chunks = 0; // chunks queued so far
        bool empty = false;     // an empty message sent by DATA: only its end
    };

    [[noreturn]] void fail(Status status, const std::string& why, int os_error = 0);
    void take_buffered() noexcept;
    void end_session(Status status, const std::string& why);
    void job_done();
    [[noreturn]] void job_fatal(Status status, const std::string& why);
    void job_failed(Status status, const std::string& why);
    bool apply_one(Deadline now);
    void apply(const Reply& reply, Deadline now);
    void on_job_reply(const Reply& reply);
    void after_hello();
    void maybe_auth();
    void auth_reply(const Reply& reply);
    void begin_handshake();
    void tls_pump();
    void tls_read();
    void seal();
    void drain_cipher();
    bool deliveries_step(Deadline now);
    bool may_start() const;
    void start_next();
    bool push_body();
    bool push_bdat(Active& a);
    bool push_data(Active& a);
    void message_queued();
    void report();
    void abort_message(const std::string& why);
    bool read_source(Active& a, char* buf, std::size_t cap, std::size_t& n, std::string& why);
    bool fill(Active& a, std::size_t& n, std::string& why);
    bool next_chunk(Active& a, std::size_t& n);
    void hold_chunk(std::size_t n);
    std::uint64_t queued_bytes() const { return written_ + session_.output_size(); }
    bool end_written(const Slot& s) const { return s.end != 0 && written_ >= s.end; }
    std::string timed_out(bool writing) const;

    const ClientOptions& opt_;
    Session session_;
    ReplyParser parser_;
    std::string in_;        // plaintext from the server not yet parsed
    std::size_t in_pos_ = 0;
    bool eof_ = false;
    bool open_ = false;
    bool local_ = false;
    std::string host_;
    Reply last_;
    std::uint64_t replies_ = 0;
    Deadline activity_{};
    std::optional<Error> failure_;
    std::string last_words_;

    // TLS over memory buffers.
    Tls tls_ = Tls::off;
    std::optional<TlsSetup> tls_setup_;
    SSL* ssl_ = nullptr;
    void* tls_ctx_ = nullptr;  // SSL_CTX*, owned
    BIO* rbio_ = nullptr;
    BIO* wbio_ = nullptr;
    std::string cipher_;  // ciphertext to send
    std::size_t cipher_pos_ = 0;

    // The job under way.
    Step step_ = Step::none;
    bool setup_ = false;  // the job is open()'s whole set-up
    std::optional<Error> job_error_;
    Reply starttls_reply_;
    std::string hello_;
    std::unique_ptr<SaslMechanism> sasl_;
    std::string mech_;
    std::optional<std::string> initial_;
    bool initial_sent_ = false;
    std::string auth_abandoned_;

    // Deliveries.
    std::uint64_t next_token_ = 1;
    std::deque<Pending> waiting_;
    std::deque<Slot> slots_;
    std::optional<Active> active_;
    std::deque<Delivered> delivered_;
    std::string aborting_;  // a source failed mid-message: close once the older replies are in
    std::string chunk_;
    std::string held_;
    std::uint64_t written_ = 0;
    std::uint64_t acked_ = 0;
};

}  // namespace lmtp
