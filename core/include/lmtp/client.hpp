// The blocking LMTP client: the Engine (engine.hpp) driven over a Transport,
// one call at a time; each call runs the engine until its answer is in.
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

#include "lmtp/engine.hpp"
#include "lmtp/reply.hpp"
#include "lmtp/session.hpp"
#include "lmtp/tls.hpp"
#include "lmtp/transport.hpp"

namespace lmtp {

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
    const Reply& last_reply() const { return engine_.last_reply(); }
    const Transaction& transaction() const { return session_.transaction(); }
    const Session& session() const { return session_; }
    const Transport* transport() const { return transport_.get(); }
    // The engine this client drives (the non-blocking API drives it directly).
    Engine& engine() { return engine_; }
    const Engine& engine() const { return engine_; }

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
    bool tls_active() const { return engine_.tls_active(); }
    // The server's reply to the last STARTTLS (starttls() returns LHLO's after it).
    const Reply& starttls_reply() const { return engine_.starttls_reply(); }
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

    // The same for a message described whole (engine.hpp's BatchMessage: a
    // message in memory given in pieces can carry its canonical_size).
    const Transaction& deliver(BatchMessage message);

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
    // Runs the engine until `done()` (and, with flush_first, everything queued
    // is written): applies what came, writes what it has, reads what it waits
    // for, each within the engine's deadline.
    template <typename Done>
    void drive(Done&& done, bool flush_first = true);
    void run();
    void settle_pending();
    void flush();
    void write_out();
    void read_in();
    void take_replies_left() noexcept;
    void broken();
    void wait_job();
    void greet(std::unique_ptr<Transport> transport);
    void take_unsolicited();
    void begin_one(const std::vector<std::string>& recipients);
    const Transaction& finish_one();
    void read_finals();
    void replay_finals(const Error* ended);

    ClientOptions options_;
    Engine engine_;
    Session& session_;
    std::unique_ptr<Transport> transport_;
    std::vector<char> rbuf_;
    std::size_t raw_owed_ = 0;  // command() replies not yet read by response()
    // A per-recipient reply after the first, for response(): the reply, or
    // (ended not ok) why it never came.
    struct Owed {
        Reply reply;
        Status ended = Status::ok;
        std::string why;
    };
    std::deque<Owed> replay_;
    std::string host_;  // what connect() was given (the TLS name by default)
};

}  // namespace lmtp
