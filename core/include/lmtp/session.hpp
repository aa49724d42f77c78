// The LMTP session as a state machine over values: no sockets, no clocks.
//
// Commands are queued into an output buffer; each queued command adds the
// reply it expects to a queue. Replies are handed in, in order, and matched
// by counting (RFC 2920): the first reply answers the oldest command still
// waiting. After the final dot, one reply per accepted RCPT (RFC 2033 4.2),
// in RCPT order, duplicates included.
//
// The driver (Client, or a test) loops on want():
//   Want::write  send output() and call consumed(n)
//   Want::read   read one reply and call on_reply()
//   Want::body   the server waits for the message: body() ... end_body()
//   Want::idle   nothing to do
//
// A reply that does not fit the state (a 354 with no accepted recipient, a
// 2xx to DATA, an unexpected 3xx, lines with different codes...) is a
// protocol error: the session closes, every recipient without a verdict is
// marked unknown, and Error(protocol) is thrown. close() does the same for
// errors the driver sees (I/O, timeouts).
//
// One reply per line: some servers answer every recipient after the message
// at once, as ONE multi-line reply with a line per recipient, in RCPT order
// ("250-Ok", "550-<b@x> Failed", "250 Ok"): Net::Server::Mail::LMTP, the Perl
// server library, does. Waiting for the further replies would wait for ever,
// so the first final reply is read as one line per accepted recipient when
// there are two or more of them, the reply has exactly that many lines, and
// either its lines carry different codes (which no conforming reply does) or
// the banner names Net::Server::Mail. Any other reply is read as RFC 2033
// says: a conforming server (one whose reply for a recipient is itself
// multi-line) is never misread. set_strict_replies(true) turns this off.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lmtp/body.hpp"
#include "lmtp/capabilities.hpp"
#include "lmtp/command.hpp"
#include "lmtp/reply.hpp"
#include "lmtp/status.hpp"

namespace lmtp {

enum class Phase {
    closed,         // no connection, or it ended (QUIT, 421, error)
    greeting,       // connected, waiting for the banner
    connected,      // banner received; LHLO not (yet) accepted
    ready,          // LHLO accepted, no transaction known to be open
    transaction,    // MAIL accepted (as far as replies have told)
    body,           // the message is being sent (after DATA's 354, or as BDAT chunks)
    tls_handshake,  // STARTTLS got 220: the driver must now run the TLS handshake
};

// How a message goes: DATA (dot-stuffed) or BDAT chunks (RFC 3030).
// automatic: BDAT when the server offers CHUNKING.
enum class Transfer { automatic, data, bdat };

// Which command's reply decided a recipient's fate.
enum class Stage { none, mail, rcpt, data };

// A recipient's verdict. The one vocabulary of the core and the C API (LMTP_RESULT_*, the same
// numbers); a face that had other public names for them maps them in one place (Python's
// "temporary" and "permanent": bindings/python/src/module.cpp).
enum class Outcome {
    pending = 0,   // no verdict yet
    ok = 1,        // delivered (2xx final reply)
    tempfail = 2,  // 4xx at MAIL, RCPT or after the message: try again later
    permfail = 3,  // 5xx at MAIL, RCPT or after the message
    unknown = 4,   // the session ended before the server gave a verdict
};

const char* outcome_name(Outcome o) noexcept;  // "pending", "ok", "tempfail", "permfail", "unknown"
const char* stage_name(Stage s) noexcept;      // "none", "mail", "rcpt", "data"

struct RecipientResult {
    std::string address;  // as the caller gave it
    Reply rcpt_reply;     // the reply to its RCPT; empty if none came
    Reply reply;          // the verdict: the final reply after the message, or the
                          // refusal (of RCPT, or of MAIL/DATA for everyone); empty
                          // while pending or when unknown
    Stage stage = Stage::none;
    Outcome outcome = Outcome::pending;
};

struct Transaction {
    Reply mail_reply;
    Reply data_reply;                         // the reply to DATA (354 or a refusal)
    std::vector<RecipientResult> recipients;  // one per RCPT, in order
    std::vector<std::size_t> accepted;        // indexes of accepted RCPTs, in order
    std::size_t finals = 0;                   // final replies received so far
    bool finished = false;                    // every recipient has its verdict

    bool all_delivered() const;
    // DATA was answered 354: the server took the message, or waits for it.
    bool data_accepted() const { return data_reply.code == 354; }
};

enum class TraceDir {
    send,     // a command line we sent (without CRLF)
    receive,  // a reply line received (without CRLF)
    data,     // message body as the caller gave it, piece by piece between LFs (a CR
              // before the LF kept; empty pieces at the end of a chunk left out), and
              // the final "." (never dot-stuffed)
    info,     // a note from the library (connect, TLS, ...)
};
using TraceFn = std::function<void(TraceDir, std::string_view)>;

struct SessionLimits {
    std::size_t max_command_line = kDefaultMaxCommandLine;
    ReplyLimits reply;  // used by the driver's ReplyParser
};

class Session {
public:
    enum class Want { write, read, body, idle };

    // What a reply answered.
    enum class Cmd {
        greeting,
        lhlo,
        mail,
        rcpt,
        data,
        final,
        rset,
        quit,
        other,
        starttls,
        auth,
        bdat,
        bdat_last,
        bdat_sync,  // after BDAT LAST with nobody accepted: a NOOP, or in a batch of
                    // several the RSET that follows (see resolve_front)
    };
    struct Event {
        Cmd cmd = Cmd::other;
        std::size_t index = 0;  // recipient index for rcpt and final (0 for the others)
    };

    explicit Session(const SessionLimits& limits = {});

    // --- driving -----------------------------------------------------------
    Want want() const;
    Phase phase() const { return phase_; }
    // All the output not yet consumed, as one run of bytes.
    std::string_view output() const;
    // The same output in up to three pieces, without gathering them: a BDAT
    // chunk's payload is kept apart from the command lines around it, so a
    // driver can write them together (writev) instead of copying the chunk.
    // Returns the number of non-empty pieces put in `pieces`.
    std::size_t output_pieces(std::string_view (&pieces)[3]) const;
    std::size_t output_size() const { return out_.size() + payload_.size() + tail_.size(); }
    void consumed(std::size_t n);
    std::size_t awaiting() const { return expect_.size(); }
    // What the next reply will answer, for messages: "the reply to MAIL".
    std::string awaited() const;
    // The connection is open: expect the banner.
    void start();
    // Apply the next reply. Throws Error(protocol) if it does not fit.
    Event on_reply(const Reply& reply);
    // The connection ended (closed on purpose, failed, or dropped by the
    // driver after an I/O error): drop output, mark recipients without a
    // verdict unknown.
    void close();

    // --- commands (each queues one line and the reply it expects) ----------
    // Throw Error(bad_input / line_too_long / not_advertised / too_big /
    // bad_sequence / not_connected) before queueing anything.
    void lhlo(std::string_view domain);
    void mail(MailVerb verb, std::string_view from, const MailParams& params = {}, bool force = false);
    void rcpt(std::string_view to, const RcptParams& params = {}, bool force = false);
    void data();
    void rset();
    void noop();
    void quit();
    void verify(std::string_view address);
    void expand(std::string_view list);
    void help(std::string_view topic);
    void etrn(std::string_view domain);
    // A caller's own line (no CRLF). Its verb decides how its reply is read:
    // LHLO/EHLO/HELO, MAIL/SEND/SOML/SAML, RCPT, DATA, RSET and QUIT act as
    // their own commands do. STARTTLS, AUTH and BDAT are refused: they need
    // more than a line and must go through their own calls.
    void raw(std::string_view line);

    // --- the message (phase body) -------------------------------------------
    void body(std::string_view chunk);
    // The same in two steps, for a driver that queues a large chunk piece by
    // piece: trace_body(chunk) once (the trace shows the chunk as one, by
    // Net::Cmd's rules), then body_piece() for each piece of it.
    void trace_body(std::string_view chunk) const noexcept;
    void body_piece(std::string_view piece);
    // The same, for bytes the caller hands over: when they go on the wire
    // unchanged (CRLF line ends, no dot at a line start) the session takes
    // the buffer itself, as a piece of the output of its own, and `chunk`
    // gets a spare buffer in exchange, of unspecified contents and size.
    void body_swap(std::string& chunk);
    // Appends the terminator; expects one reply per accepted recipient.
    void end_body();

    // --- BDAT (CHUNKING, RFC 3030) ---------------------------------------------
    // While a message goes by BDAT (bdat_mode()), each chunk is sent with its
    // own BDAT command. `raw` is message bytes as the caller has them: line
    // ends are made CRLF (unless the body was declared canonical) and the size
    // is counted after that. After the LAST chunk, one reply per accepted
    // recipient (RFC 2033 4.3), none when nobody was accepted.
    void bdat_chunk(std::string_view raw, bool last);
    // The same, for a chunk the caller hands over: when its bytes go on the
    // wire unchanged (CRLF line ends only, or a canonical body) the session
    // takes the buffer itself instead of a copy, and `raw` gets a spare
    // buffer in exchange, of unspecified contents and size.
    void bdat_chunk_swap(std::string& raw, bool last);
    // A chunk of bytes sent exactly as given (Net::SMTP's bdat/bdatlast),
    // inside a transaction of the step-by-step API.
    void bdat_raw(std::string_view bytes, bool last);
    // An empty message cannot be sent as BDAT safely (servers disagree on the
    // replies to "BDAT 0 LAST"): send DATA and an empty body instead. While
    // lockstep_pending(), DATA then follows the RCPTs in place of the chunks.
    void bdat_to_data();
    bool bdat_mode() const { return bdat_mode_; }
    // A chunk was refused: send no more (never the LAST one).
    bool bdat_failed() const { return bdat_failed_; }
    // Chunk replies still to come.
    std::size_t bdat_in_flight() const { return bdat_in_flight_; }

    // --- STARTTLS (RFC 3207) and AUTH (RFC 4954) ---------------------------------
    void starttls();
    // The driver finished the TLS handshake: what the server said before is
    // forgotten; LHLO must be sent again.
    void tls_started();
    // AUTH mechanism [initial response (base64)]. Returns false when the
    // initial response did not fit the line and was left out: send it after
    // the first 334. The trace shows the command, never the credentials.
    bool auth(std::string_view mechanism, const std::optional<std::string>& initial_base64);
    // The next line of the exchange (base64, or "*" to cancel).
    void auth_response(std::string_view base64);
    bool authenticated() const { return authenticated_; }

    // --- a whole delivery: a batch of transactions --------------------------------
    // Every whole delivery goes one way: as a transaction of a batch, stamped
    // with its id. A batch queues transaction after transaction; each
    // expectation carries the id of its transaction; replies fill the oldest
    // transaction still in flight, and each transaction, once every reply it is
    // owed has come, waits in a queue of finished ones for the driver
    // (batch_take), in the order they were queued. A transaction is the one
    // transaction() describes from its first reply, or at once when nothing
    // older is owed a reply.
    //
    // With PIPELINING, MAIL, every RCPT and DATA go in one group (RFC 2920),
    // and MAIL may follow the end of the message before (DATA's final dot, or
    // BDAT LAST) without waiting for its replies. With BDAT no DATA is queued:
    // the session wants the body at once, so that the first chunk goes in the
    // same write as MAIL and RCPT. Without PIPELINING one command is in flight
    // at a time: MAIL (after RSET's reply when one goes first), each RCPT after
    // the reply before, DATA (or the chunks) only when a recipient was
    // accepted; a transaction waits for every reply of the one before.
    //
    // The server may still hold a transaction (MAIL accepted, no end): RSET
    // goes before the next MAIL. BDAT LAST with no recipient accepted gets no
    // reply from an RFC server (RFC 2033 4.3) while Dovecot 2.3 refuses it
    // ("503 5.5.0 No valid recipients") and keeps the transaction. Pipelined
    // in a batch of several, BDAT LAST is always followed by RSET: RSET's 250
    // ends whatever the server kept, and a refusal arriving before it can only
    // be BDAT LAST's. Alone (a batch of one, or without PIPELINING, where who
    // was accepted is known first), nothing follows it; when nobody was
    // accepted a NOOP settles it (its 2xx comes first if there was no
    // refusal), and a refusal puts RSET before the next MAIL.
    //
    // batch_begin() with no reply owed; batch_end() once every reply is in (or
    // after close()). close() hands every transaction in flight over as
    // finished-or-not: those with recipients still waiting are marked unknown
    // and have `finished` false. `one`: a batch of one transaction (a single
    // delivery), whose results stay in transaction(): batch_take gives its id
    // and no copy of them, and the batch ends by itself once it is handed over.
    void batch_begin(bool one = false);
    // What batch_begin checks, without beginning: throws as it would.
    void check_batch() const;
    // Queues [RSET] MAIL and every RCPT, then DATA, or with BDAT wants the
    // first chunk at once (bdat_chunk, or bdat_to_data for an empty message);
    // without PIPELINING only the first of them (the others follow the
    // replies). All lines are checked before anything is queued and nothing
    // is queued when a check fails (in a batch of one the results are then
    // empty: nothing was attempted). `canonical`: the message already has CRLF
    // line ends (needed for BODY=BINARYMIME); sent as is. Returns the
    // transaction's id.
    std::uint64_t batch_deliver(std::string_view from, const std::vector<std::string>& recipients,
                                const MailParams& mail_params = {}, const RcptParams& rcpt_params = {},
                                bool force = false, Transfer transfer = Transfer::automatic, bool canonical = false);
    void batch_end();
    bool batching() const { return batch_; }
    // Whether batch_deliver would send the message by BDAT.
    bool would_bdat(const MailParams& mail_params, Transfer transfer) const;
    // DATA was sent and its reply has not come yet.
    bool awaiting_data_reply() const { return data_pending_; }
    // Without PIPELINING: the newest delivery's MAIL and RCPTs are still going
    // one by one (the message's turn has not come; when it does, DATA is
    // queued or the session wants the chunks, unless nobody was accepted).
    bool lockstep_pending() const { return lockstep_.active; }
    // A reply owed to a transaction older than the newest one is still to come.
    bool batch_older_pending() const;
    // Transactions handed over, in order.
    bool batch_has_finished() const { return one_done_ != 0 || !batch_done_.empty(); }
    std::pair<std::uint64_t, Transaction> batch_take();
    // The same without its results: the id only (a batch of one's are in transaction()).
    std::uint64_t batch_skip();

    // A batch of one (batch_begin(true) and batch_deliver): the results are
    // transaction(). Throws as they would; nothing is queued then.
    void deliver(std::string_view from, const std::vector<std::string>& recipients, const MailParams& mail_params = {},
                 const RcptParams& rcpt_params = {}, bool force = false, Transfer transfer = Transfer::automatic,
                 bool canonical = false);
    // Transactions of a batch are in flight (not all handed over).
    bool delivering() const { return batch_current_ != 0 || !batch_queued_.empty(); }
    // Makes the results this delivery's recipients, all unknown: for a
    // delivery that failed before anything could be sent.
    void abandon_delivery(const std::vector<std::string>& recipients);

    // --- what is known ------------------------------------------------------
    const Reply& banner() const { return banner_; }
    const Capabilities& capabilities() const { return caps_; }
    bool supports(std::string_view keyword) const { return caps_.has(keyword); }
    const Transaction& transaction() const { return txn_; }
    // True while the server holds a transaction open (MAIL accepted, not ended).
    bool server_in_transaction() const { return server_txn_; }

    // Never read a reply as one line per recipient (see the top of this file).
    void set_strict_replies(bool on) { strict_replies_ = on; }
    bool strict_replies() const { return strict_replies_; }
    // The banner named a server known to answer recipients line by line.
    bool line_per_recipient_server() const { return line_server_; }

    void set_trace(TraceFn fn) { trace_ = std::move(fn); }
    const SessionLimits& limits() const { return limits_; }
    void set_limits(const SessionLimits& l) { limits_ = l; }

private:
    // What a bdat_sync expectation settles (see resolve_front).
    enum class Sync : std::uint8_t {
        none,
        noop,             // the NOOP after BDAT LAST with nobody accepted
        after_refusal,    // the NOOP's reply, after the server refused that BDAT LAST
        rset,             // in a batch of several: the RSET after it (on bdat_last: one follows)
    };
    struct Expect {
        Cmd cmd;
        std::size_t index;       // the recipient, for rcpt and final
        std::string verb;        // for Cmd::other: the command's verb, for messages
        std::uint64_t txn = 0;   // the batch transaction it belongs to; 0: none (the current one)
        Sync sync = Sync::none;  // for bdat_sync: which reply it is
    };
    // A delivery's lines, checked.
    struct Lines {
        std::string mail;
        std::vector<std::string> rcpts;
        bool bdat = false;  // the message goes by BDAT
    };
    struct Queued {
        std::uint64_t id;
        Transaction txn;
    };

    std::string describe(const Expect& e) const;
    const Transaction& txn_of(const Expect& e) const;
    Lines check_delivery(std::string_view from, const std::vector<std::string>& recipients,
                         const MailParams& mail_params, const RcptParams& rcpt_params, bool force,
                         Transfer transfer) const;
    void start_message(Lines& lines);
    void promote(std::uint64_t id);
    void retire_if_done();
    void hand_over();
    static void clear_results(Transaction& t);
    static void add_recipients(Transaction& t, const std::vector<std::string>& recipients);
    void end_one();
    void require_command_phase(const char* what) const;
    // Throws not_advertised for the first parameter whose extension the server did not offer (not with force).
    template <typename Params>
    void check_advertised(const Params& params, const char* command, bool force) const;
    void check_size(const MailParams& params) const;
    void queue(std::string_view line, Cmd cmd, std::size_t index = 0, std::string_view verb = {});
    void new_transaction();
    std::size_t add_recipient(std::string_view address);
    [[noreturn]] void protocol_error(const std::string& message);
    void end_connection();
    void mark_unknown();
    static void mark_unknown(Transaction& t);
    void settle(std::size_t index, const Reply& reply, Stage stage);
    bool one_line_per_recipient(const Reply& reply) const;
    std::size_t settle_final(const Expect& e, const Reply& reply);
    void finish_transaction();
    void lockstep_next();
    void resolve_front();
    // The BDAT line and its bytes: `bytes`, or `payload` taken over whole
    // (swapped) as a piece of the output of its own.
    void queue_bdat(std::string_view bytes, bool last, std::string* payload = nullptr);
    void settle_bdat_failure();
    void trace(TraceDir dir, std::string_view text) const noexcept;
    void trace_sent(std::string_view line) const noexcept;
    void trace_pieces(std::string_view chunk) const noexcept;

    SessionLimits limits_;
    Phase phase_ = Phase::closed;
    // Output, in this order: out_, payload_ (a BDAT chunk's bytes), tail_
    // (what was queued after that chunk). payload_ and tail_ are empty
    // unless a chunk is waiting; output() gathers all into out_.
    std::string& queue_out() { return payload_.empty() ? out_ : tail_; }
    void gather_output() const;
    mutable std::string out_;
    mutable std::string payload_;
    mutable std::string tail_;
    std::string spare_;  // a buffer for the next chunk: a payload once written, or a caller's
    std::deque<Expect> expect_;
    Reply banner_;
    Capabilities caps_;
    Transaction txn_;
    bool server_txn_ = false;    // the server has a transaction open
    bool mail_ok_ = false;       // MAIL of the current transaction accepted
    bool data_pending_ = false;  // DATA sent, its reply not in yet
    bool authenticated_ = false;
    bool strict_replies_ = false;
    bool line_server_ = false;  // the banner named a server that answers line by line
    bool bdat_mode_ = false;    // the current message goes by BDAT
    bool bdat_first_ = false;   // pipelined BDAT: the first chunk joins MAIL and RCPT
    bool bdat_failed_ = false;  // a chunk was refused
    bool canonical_ = false;    // the body is already canonical: no line-end conversion
    std::size_t bdat_in_flight_ = 0;
    Reply bdat_failure_;
    // The batch: transactions queued whose first reply has not come, the one
    // replies are filling (txn_, id batch_current_), and those finished.
    bool batch_ = false;
    bool one_ = false;          // a batch of one transaction
    bool batch_reset_ = false;  // RSET before the next MAIL: the server may hold a transaction
    std::uint64_t batch_next_ = 1;
    std::uint64_t batch_current_ = 0;
    std::uint64_t stamp_ = 0;  // the transaction new expectations belong to
    std::deque<Queued> batch_queued_;
    std::deque<Queued> batch_done_;
    std::uint64_t one_done_ = 0;  // a batch of one handed over: its id (its results are txn_)
    BodyEncoder encoder_;
    TraceFn trace_;

    // Without PIPELINING: the newest delivery's lines still to send, each after the reply before.
    struct Lockstep {
        bool active = false;
        std::string mail;                // sent once RSET is answered
        std::vector<std::string> rcpts;  // sent one by one
        std::size_t next_rcpt = 0;
        bool bdat = false;  // the message goes by BDAT
    } lockstep_;
};

}  // namespace lmtp
