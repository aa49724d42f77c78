// The blocking LMTP client: a Session driven over a Transport.
//
// Errors: methods throw lmtp::Error when there is no server answer to give
// (bad input, I/O failure, timeout, protocol violation, wrong sequence). A
// server's refusal (4xx/5xx) is an answer, not an exception: the method
// returns the reply and the caller looks at its code.
//
// After a timeout, an I/O error or a protocol error the connection is closed
// (a half-read reply cannot be resynchronised), and every recipient still
// waiting for a verdict is marked Outcome::unknown.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "lmtp/reply.hpp"
#include "lmtp/session.hpp"
#include "lmtp/tls.hpp"
#include "lmtp/transport.hpp"

namespace lmtp {

// When connect() upgrades to TLS with STARTTLS (RFC 3207).
enum class StartTls {
    off,            // never on its own (starttls() still works)
    opportunistic,  // when the server offers it
    required,       // always: connect() fails if the server does not offer it
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
    // Send LHLO right after the banner (connect() then fails if it is refused).
    // Off: connect() reads the banner only, and the caller calls hello();
    // STARTTLS and AUTH below are then the caller's to do too.
    bool send_hello = true;

    // --- TLS ---
    TlsOptions tls;
    StartTls starttls = StartTls::off;
    // TLS from the first byte (no STARTTLS), as on a port that speaks TLS only.
    bool implicit_tls = false;

    // --- AUTH, done by connect() after LHLO (and STARTTLS) when a user is set ---
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
    // deliver_batch: octets sent ahead of their replies, at most (but always
    // one whole message, and with BDAT at least its first chunk).
    std::size_t max_in_flight = 1024 * 1024;
    // Never read the first final reply as one line per recipient (the
    // servers that answer so: session.hpp). Off: such servers are recognised.
    bool strict_replies = false;
    TraceFn trace;
};

// Gives the next piece of a message: writes up to `cap` bytes into `buf` and
// returns how many; 0 means the message is complete. Throwing abandons the
// transaction (the connection is closed: the server must not deliver a
// message whose end it never saw).
using BodySource = std::function<std::size_t(char* buf, std::size_t cap)>;
// A message already in memory as a BodySource (`bytes` must outlive it).
BodySource memory_source(std::string_view bytes);

// One message of a batch (deliver_batch).
struct BatchMessage {
    std::string from;
    std::vector<std::string> recipients;
    BodySource source;
    std::size_t size_hint = 0;  // its length when known (for the bound on octets in flight), else 0
    MailParams mail_params;
    RcptParams rcpt_params;
    bool force = false;
    Transfer transfer = Transfer::automatic;
    bool canonical = false;
};
// Gives message `index` of a batch. Throwing Error fails that message alone
// (nothing of it is sent; its callback gets the status).
using BatchSource = std::function<BatchMessage(std::size_t index)>;
// Called once per message, in order, when each of its recipients has a
// verdict, or with the status that kept it from being sent (then `txn` holds
// no results for a message refused before sending, every recipient unknown
// for one the session ended under). `why` is empty for Status::ok. Return
// false to send no more messages (those already sent still get their call).
// Must not throw, nor use the client.
using BatchDone =
    std::function<bool(std::size_t index, const Transaction& txn, Status status, const std::string& why)>;

class Client {
public:
    explicit Client(ClientOptions options = {});
    ~Client();
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    // Connects, reads the banner and sends LHLO (unless options say not to).
    // A refused banner or LHLO throws Error(rejected) (the reply is in
    // last_reply()) and closes.
    void connect(const std::string& host, std::uint16_t port);
    // The same over a transport the caller made.
    void connect(std::unique_ptr<Transport> transport);
    bool connected() const;
    // Drops the connection without QUIT (abandons any transaction).
    void close() noexcept;

    // --- what is known ------------------------------------------------------
    const Reply& banner() const { return session_.banner(); }
    // First word of the banner (what the server calls itself).
    std::string domain() const;
    const Capabilities& capabilities() const { return session_.capabilities(); }
    bool supports(std::string_view keyword) const { return session_.supports(keyword); }
    const Reply& last_reply() const { return last_; }
    const Transaction& transaction() const { return session_.transaction(); }
    const Session& session() const { return session_; }
    const Transport* transport() const { return transport_.get(); }

    // --- one command, one reply (Net::LMTP style) ----------------------------
    const Reply& hello(std::string_view domain);
    const Reply& mail(std::string_view from, const MailParams& params = {}, bool force = false);
    const Reply& mail(MailVerb verb, std::string_view from, const MailParams& params = {}, bool force = false);
    const Reply& rcpt(std::string_view to, const RcptParams& params = {}, bool force = false);
    const Reply& rset();
    const Reply& noop();
    const Reply& verify(std::string_view address);
    const Reply& expand(std::string_view list);
    const Reply& help(std::string_view topic = {});
    const Reply& etrn(std::string_view domain);
    // Sends QUIT, reads its reply (if any) and closes.
    const Reply& quit();

    // --- the message, step by step --------------------------------------------
    // DATA; 354 means go on with data_write.
    const Reply& data_start();
    void data_write(std::string_view chunk);
    // Ends the message and reads one reply per accepted recipient (all of
    // them, always). Returns the first; the others are in transaction() and,
    // for Net::Cmd-style readers, come one by one from response().
    // When the session breaks first, it throws the error that ended it; the
    // verdicts that came stay in transaction(), last_reply() is the first
    // recipient's final reply (empty if it never came), and response() still
    // yields each further recipient: its reply, or for one whose reply never
    // came, that error again (naming the recipient).
    const Reply& data_end();
    // DATA, the whole message, and the end: data_start + data_write + data_end.
    const Reply& data(std::string_view message);

    // --- TLS and authentication ------------------------------------------------
    // STARTTLS, the handshake, and LHLO again. Returns the reply to STARTTLS
    // when the server refuses it (the session stays as it was), else the
    // reply to the new LHLO. Handshake failures throw (Error(certificate) says
    // why the certificate was refused) and close the connection.
    const Reply& starttls();
    bool tls_active() const { return transport_ && transport_->is_tls(); }
    // The server's reply to the last STARTTLS (starttls() returns LHLO's after it).
    const Reply& starttls_reply() const { return starttls_reply_; }
    // AUTH with `mechanism` (empty: the strongest the server offers that can be
    // used). Throws Error(auth) when the server refuses (last_reply() holds
    // 535, 534, 538...) or the exchange goes wrong, Error(insecure) before
    // sending a password in clear text over TCP unless allow_plaintext,
    // Error(not_advertised) when the server offers no AUTH or no usable mechanism.
    const Reply& auth(const std::string& user, const std::string& password, const std::string& mechanism = {},
                      bool allow_plaintext = false);
    bool authenticated() const { return session_.authenticated(); }

    // --- BDAT, step by step (Net::SMTP's bdat / bdatlast) ------------------------
    // BDAT with `bytes` sent exactly as given. For the LAST chunk, every
    // accepted recipient's reply is read; the first is returned, the others
    // come from response(), as after data_end() (a break too).
    const Reply& bdat(std::string_view bytes, bool last);

    // --- a caller's own command line --------------------------------------------
    // Sends it (checked: no CR, LF, NUL; within the line limit). Its reply is
    // read by response(); if the caller never reads it, the next call does.
    void command(std::string_view line);
    // The next reply: to a command() not yet answered, else the next
    // per-recipient reply left from data_end(). Throws Error(bad_sequence)
    // when no reply is owed (Error(not_connected) when the connection is gone
    // too), and the error that ended the session for a recipient whose final
    // reply never came.
    const Reply& response();
    // Per-recipient replies left for response() (a missing one included).
    std::size_t finals_owed() const { return replay_.size(); }

    // --- a whole transaction in one call --------------------------------------
    // MAIL, RCPT..., the message and every per-recipient reply, pipelined when
    // the server allows. Returns with each recipient's verdict. Throws only
    // when the session breaks (then unfinished recipients are unknown).
    // `transfer`: DATA, BDAT, or automatic (BDAT when CHUNKING is offered).
    // `canonical`: the message already has CRLF line ends; sent as is (BDAT).
    const Transaction& deliver(std::string_view from, const std::vector<std::string>& recipients,
                               std::string_view message, const MailParams& mail_params = {},
                               const RcptParams& rcpt_params = {}, bool force = false,
                               Transfer transfer = Transfer::automatic, bool canonical = false);
    // `size_hint`: the message's size when the caller knows it (it is read
    // in buffers no bigger than it needs), else 0.
    const Transaction& deliver(std::string_view from, const std::vector<std::string>& recipients,
                               const BodySource& source, const MailParams& mail_params = {},
                               const RcptParams& rcpt_params = {}, bool force = false,
                               Transfer transfer = Transfer::automatic, bool canonical = false,
                               std::size_t size_hint = 0);

    // --- many messages, pipelined back to back -------------------------------------
    // Delivers messages 0..count-1 over this connection, each with its own
    // results. With PIPELINING each message's MAIL follows the end of the one
    // before without waiting (RFC 2920), up to max_in_flight octets ahead of
    // their replies: with CHUNKING many small messages share a round trip;
    // by DATA each message costs one (its 354 must come before its body, and
    // that body goes with the next message's MAIL, RCPT and DATA). Without
    // PIPELINING it delivers one message after the other.
    // Returns true when every message had its callback, false when the
    // callback stopped the batch. Throws the Error that ended the session,
    // after the callbacks of every message (those not sent get its status
    // and every recipient unknown).
    bool deliver_batch(std::size_t count, const BatchSource& next, const BatchDone& done);

    // --- settings ------------------------------------------------------------
    void set_timeout(std::chrono::milliseconds timeout);
    std::chrono::milliseconds timeout() const { return options_.timeout; }
    void set_trace(TraceFn fn);
    // TLS settings for what comes next (a later starttls() or connect()).
    void set_tls_options(const TlsOptions& tls) { options_.tls = tls; }
    // TLS from the first byte for the next connect().
    void set_implicit_tls(bool on) { options_.implicit_tls = on; }
    // 0: the default (1 MiB).
    void set_max_in_flight(std::size_t octets) { options_.max_in_flight = octets ? octets : 1024 * 1024; }
    const ClientOptions& options() const { return options_; }

private:
    void require_connection() const;
    void begin_command();
    // begin_command, queue the command, run until its reply is in.
    template <typename Queue>
    const Reply& one(Queue&& queue);
    void settle_pending();
    void check_unsolicited();
    void flush();
    void take_replies_left() noexcept;
    Reply read_reply();
    Reply read_reply(Deadline deadline);
    void apply(const Reply& reply);
    void run();
    // `size_hint`: the message's size when known, else 0 (see read_size).
    void send_body(const BodySource& source, std::size_t size_hint);
    void stream_body(const BodySource& source, std::size_t size_hint);
    void send_bdat(const BodySource& source, std::size_t size_hint);
    void hold_chunk(std::size_t n);
    void send_chunks(const BodySource& source, bool more);
    struct Batch;
    bool deliver_each(std::size_t count, const BatchSource& next, const BatchDone& done);
    void batch_message(Batch& b, std::size_t index, const BatchMessage& m);
    void batch_report(Batch& b, Status ended, const std::string& why);
    void batch_drain();
    std::uint64_t queued_bytes() const { return written_ + session_.output_size(); }
    bool try_read_source(const BodySource& source, char* buf, std::size_t cap, std::size_t& n, std::string& why);
    std::size_t read_source(const BodySource& source, char* buf, std::size_t cap);
    std::size_t fill_from_source(const BodySource& source, char* buf, std::size_t cap);
    static std::size_t read_size(std::size_t cap, std::size_t size_hint);
    void after_hello();
    void read_finals();
    void replay_finals(const Error* ended);
    [[noreturn]] void fail(Status status, const std::string& why, int os_error = 0);
    void greet(std::unique_ptr<Transport> transport, const std::string& name);
    std::string checked_hello() const;
    void reset_input();
    void trace(TraceDir dir, std::string_view text) const noexcept;

    ClientOptions options_;
    Session session_;
    std::unique_ptr<Transport> transport_;
    ReplyParser parser_;
    std::vector<char> rbuf_;
    std::size_t rpos_ = 0;
    std::size_t rlen_ = 0;
    Reply last_;
    std::size_t raw_owed_ = 0;  // command() replies not yet read by response()
    // A per-recipient reply after the first, for response(): the reply, or
    // (ended not ok) why it never came.
    struct Owed {
        Reply reply;
        Status ended = Status::ok;
        std::string why;
    };
    std::deque<Owed> replay_;
    std::string chunk_;         // scratch for message pieces
    std::string held_;          // BDAT: the chunk read ahead, to know which one is last
    std::string host_;          // what connect() was given (the TLS name by default)
    Reply starttls_reply_;
    std::uint64_t written_ = 0;  // octets written over this connection
    bool batch_settle_ = false;  // a message source failing in a batch: read the older replies first
};

}  // namespace lmtp
