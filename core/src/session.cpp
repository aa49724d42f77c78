#include "lmtp/session.hpp"

#include <algorithm>
#include <initializer_list>

namespace lmtp {

const char* outcome_name(Outcome o) noexcept {
    switch (o) {
        case Outcome::pending: return "pending";
        case Outcome::ok: return "ok";
        case Outcome::tempfail: return "tempfail";
        case Outcome::permfail: return "permfail";
        case Outcome::unknown: return "unknown";
    }
    return "?";
}

const char* stage_name(Stage s) noexcept {
    switch (s) {
        case Stage::none: return "none";
        case Stage::mail: return "mail";
        case Stage::rcpt: return "rcpt";
        case Stage::data: return "data";
    }
    return "?";
}

bool Transaction::all_delivered() const {
    if (!finished || recipients.empty()) return false;
    for (const auto& r : recipients)
        if (r.outcome != Outcome::ok) return false;
    return true;
}

Session::Session(const SessionLimits& limits) : limits_(limits) {}

Session::Want Session::want() const {
    if (bdat_first_) return Want::body;  // the first chunk goes out with MAIL and RCPT
    if (output_size() > 0) return Want::write;
    if (!expect_.empty()) return Want::read;
    if (phase_ == Phase::body) return Want::body;
    return Want::idle;
}

void Session::gather_output() const {
    if (payload_.empty() && tail_.empty()) return;
    out_.reserve(output_size());
    out_ += payload_;
    out_ += tail_;
    payload_.clear();
    tail_.clear();
}

std::string_view Session::output() const {
    gather_output();
    return out_;
}

std::size_t Session::output_pieces(std::string_view (&pieces)[3]) const {
    std::size_t n = 0;
    for (const std::string* s : {&out_, &payload_, &tail_})
        if (!s->empty()) pieces[n++] = *s;
    return n;
}

void Session::consumed(std::size_t n) {
    for (std::string* s : {&out_, &payload_, &tail_}) {
        std::size_t k = std::min(n, s->size());
        n -= k;
        if (s == &payload_ && k > 0 && k == s->size()) {
            spare_.swap(payload_);  // written: kept as it is, for the next chunk
            payload_.clear();
        } else {
            s->erase(0, k);  // whole, as a driver that writes everything consumes: no move
        }
    }
    if (out_.empty() && payload_.empty()) out_.swap(tail_);
}

void Session::start() {
    out_.clear();
    payload_.clear();
    tail_.clear();
    expect_.clear();
    banner_ = Reply{};
    caps_ = Capabilities{};
    txn_ = Transaction{};
    server_txn_ = false;
    mail_ok_ = false;
    data_pending_ = false;
    authenticated_ = false;
    line_server_ = false;
    bdat_mode_ = bdat_first_ = bdat_failed_ = false;
    bdat_in_flight_ = 0;
    lockstep_ = Lockstep{};
    encoder_.reset();
    batch_ = one_ = batch_reset_ = false;
    batch_current_ = stamp_ = 0;
    batch_queued_.clear();
    batch_done_.clear();
    one_done_ = 0;
    phase_ = Phase::greeting;
    expect_.push_back({Cmd::greeting, 0, {}});
}

std::string Session::awaited() const {
    return expect_.empty() ? "nothing" : describe(expect_.front());
}

std::string Session::describe(const Expect& e) const {
    switch (e.cmd) {
        case Cmd::greeting: return "the banner";
        case Cmd::lhlo: return "the reply to LHLO";
        case Cmd::mail: return "the reply to MAIL";
        case Cmd::rcpt: return "the reply to RCPT TO:<" + txn_of(e).recipients[e.index].address + ">";
        case Cmd::data: return "the reply to DATA";
        case Cmd::final: return "the final reply for <" + txn_of(e).recipients[e.index].address + ">";
        case Cmd::rset: return "the reply to RSET";
        case Cmd::quit: return "the reply to QUIT";
        case Cmd::other: return "the reply to " + e.verb;
        case Cmd::starttls: return "the reply to STARTTLS";
        case Cmd::auth: return "the reply to AUTH";
        case Cmd::bdat: return "the reply to a BDAT chunk";
        case Cmd::bdat_last: return "the final replies after BDAT LAST";
        case Cmd::bdat_sync:
            return e.sync == Sync::rset ? "the reply to RSET (after BDAT LAST with no recipient)"
                                : "the reply to NOOP (after BDAT LAST with no recipient)";
    }
    return "a reply";
}

const Transaction& Session::txn_of(const Expect& e) const {
    if (e.txn && e.txn != batch_current_)
        for (const auto& q : batch_queued_)
            if (q.id == e.txn) return q.txn;
    return txn_;
}

// --- state changes -------------------------------------------------------------

void Session::settle(std::size_t index, const Reply& reply, Stage stage) {
    RecipientResult& r = txn_.recipients[index];
    r.reply = reply;
    r.stage = stage;
    r.outcome = reply.completion() ? Outcome::ok : reply.transient() ? Outcome::tempfail : Outcome::permfail;
}

void Session::mark_unknown(Transaction& t) {
    for (auto& r : t.recipients) {
        if (r.outcome == Outcome::pending) {
            r.outcome = Outcome::unknown;
            r.stage = Stage::none;
        }
    }
}

void Session::mark_unknown() {
    mark_unknown(txn_);
}

void Session::end_connection() {
    phase_ = Phase::closed;
    expect_.clear();
    lockstep_ = Lockstep{};
    data_pending_ = false;
    bdat_mode_ = bdat_first_ = false;
    bdat_in_flight_ = 0;
    server_txn_ = false;
    mail_ok_ = false;
    mark_unknown();
    // A batch hands every transaction in flight over, in order: no more replies will come.
    for (auto& q : batch_queued_) mark_unknown(q.txn);
    if (batch_current_) hand_over();
    for (auto& q : batch_queued_) batch_done_.push_back(std::move(q));
    batch_queued_.clear();
    if (one_) end_one();
}

void Session::protocol_error(const std::string& message) {
    end_connection();
    throw Error(Status::protocol, message);
}

void Session::close() {
    out_.clear();
    payload_.clear();
    tail_.clear();
    spare_ = std::string();
    end_connection();
}

void Session::new_transaction() {
    txn_ = Transaction{};
    mail_ok_ = false;
    lockstep_ = Lockstep{};
    encoder_.reset();
    bdat_mode_ = bdat_first_ = bdat_failed_ = false;
    bdat_in_flight_ = 0;
    canonical_ = false;
}

std::size_t Session::add_recipient(std::string_view address) {
    if (txn_.finished) {
        // A RCPT after a finished transaction starts a new list of results.
        txn_ = Transaction{};
    }
    RecipientResult r;
    r.address = std::string(address);
    txn_.recipients.push_back(std::move(r));
    return txn_.recipients.size() - 1;
}

void Session::finish_transaction() {
    txn_.finished = true;
}

Session::Event Session::on_reply(const Reply& reply) {
    if (expect_.empty())
        protocol_error("unexpected reply '" + printable(reply.summary()) + "': no command was waiting for one");
    const Expect e = expect_.front();
    expect_.pop_front();
    if (e.txn && e.txn != batch_current_) promote(e.txn);
    // Lines with different codes are no reply at all, except one line per recipient (the top of session.hpp).
    if (reply.mixed() && !(e.cmd == Cmd::final && one_line_per_recipient(reply)))
        protocol_error("reply code changed within a multi-line reply ('" + printable(reply.summary()) + "') as " +
                       describe(e));
    // Only DATA (354) and AUTH (334) may be answered with an intermediate reply.
    if (reply.intermediate() && e.cmd != Cmd::data && !(e.cmd == Cmd::auth && reply.code == 334))
        protocol_error("unexpected intermediate reply '" + printable(reply.summary()) + "' as " + describe(e));

    switch (e.cmd) {
        case Cmd::greeting:
            banner_ = reply;
            phase_ = reply.completion() ? Phase::connected : Phase::closed;
            line_server_ = std::any_of(reply.lines.begin(), reply.lines.end(), [](const std::string& l) {
                return l.find("Net::Server::Mail") != std::string::npos;
            });
            break;

        case Cmd::lhlo:
            if (reply.completion()) {
                // A new LHLO also ends any transaction (RFC 5321 4.1.4).
                caps_ = Capabilities::parse(reply);
                phase_ = Phase::ready;
                server_txn_ = false;
                mail_ok_ = false;
            }
            break;

        case Cmd::mail:
            txn_.mail_reply = reply;
            if (reply.completion()) {
                mail_ok_ = true;
                server_txn_ = true;
                // With pipelined BDAT the message may already be going out.
                if (phase_ != Phase::body) phase_ = Phase::transaction;
            } else if (e.txn) {
                // A delivery's MAIL refused: that is every recipient's verdict.
                for (std::size_t i = 0; i < txn_.recipients.size(); ++i) settle(i, reply, Stage::mail);
                txn_.finished = true;
                lockstep_.active = false;
            }
            if (mail_ok_) lockstep_next();
            break;

        case Cmd::rcpt: {
            RecipientResult& r = txn_.recipients[e.index];
            r.rcpt_reply = reply;
            if (e.txn && !mail_ok_) break;  // already settled by MAIL's refusal
            if (reply.completion())
                txn_.accepted.push_back(e.index);
            else
                settle(e.index, reply, Stage::rcpt);
            lockstep_next();
            break;
        }

        case Cmd::data:
            data_pending_ = false;
            txn_.data_reply = reply;
            if (reply.code == 354) {
                if (txn_.accepted.empty()) {
                    // RFC 2033 4.2: with no accepted recipient DATA must fail (503).
                    // End the data phase with a lone dot and leave: no count of
                    // replies after it can be trusted any more.
                    queue_out() += ".\r\nQUIT\r\n";
                    trace_sent(".");
                    trace_sent("QUIT");
                    txn_.finished = true;
                    protocol_error("the server accepted DATA (354) although no recipient was accepted");
                }
                phase_ = Phase::body;
                encoder_.reset();
                encoder_.set_mode(BodyEncoder::Mode::dot_stuff);
            } else if (reply.positive()) {
                protocol_error("the server answered DATA with " + std::to_string(reply.code) + " instead of 354");
            } else {
                // The message was refused for every accepted recipient.
                for (std::size_t i : txn_.accepted) settle(i, reply, Stage::data);
                finish_transaction();
                batch_reset_ = batch_;  // the server may still hold the transaction
            }
            break;

        case Cmd::final:
            txn_.finals += settle_final(e, reply);
            if (txn_.finals == txn_.accepted.size()) {
                finish_transaction();
                if (phase_ != Phase::body) phase_ = Phase::ready;  // (a batch may be sending the next one)
                server_txn_ = false;
                mail_ok_ = false;
            }
            break;

        case Cmd::rset:
            if (reply.completion()) {
                server_txn_ = false;
                mail_ok_ = false;
                if (phase_ == Phase::transaction) phase_ = Phase::ready;
            }
            if (lockstep_.active && !lockstep_.mail.empty()) {
                // Lockstep: MAIL waited for RSET's reply.
                queue(lockstep_.mail, Cmd::mail);
                lockstep_.mail.clear();
            }
            break;

        case Cmd::quit: phase_ = Phase::closed; break;

        case Cmd::other: break;

        case Cmd::starttls:
            // 220: the server now waits for the TLS handshake; anything else: still plain text.
            if (reply.code == 220) phase_ = Phase::tls_handshake;
            break;

        case Cmd::auth:
            if (reply.code == 235) authenticated_ = true;
            break;

        case Cmd::bdat:
            --bdat_in_flight_;
            if (!reply.completion() && !bdat_failed_) {
                bdat_failed_ = true;
                bdat_failure_ = reply;
            }
            if (bdat_failed_ && bdat_in_flight_ == 0 && bdat_mode_) settle_bdat_failure();
            break;

        case Cmd::bdat_last: break;  // never answered itself: resolve_front() turns it into the final replies

        case Cmd::bdat_sync:
            if (e.sync == Sync::rset) {
                // In a batch: a refusal is the server's answer to BDAT LAST (Dovecot 2.3) and the
                // RSET's reply comes next; a 2xx is the RSET's own (an RFC server said nothing).
                if (reply.completion() && !expect_.empty() && expect_.front().cmd == Cmd::rset) {
                    expect_.pop_front();
                    server_txn_ = false;
                    mail_ok_ = false;
                }
                break;
            }
            // A refusal first is the server's answer to BDAT LAST; the NOOP's comes next. The
            // server may still hold the transaction (Dovecot 2.3 does, and answers the next MAIL
            // with "503 5.5.0 MAIL already given"): RSET before the next one.
            if (e.sync == Sync::noop && !reply.completion()) {
                expect_.push_front({Cmd::bdat_sync, 0, {}, e.txn, Sync::after_refusal});
                server_txn_ = true;
                batch_reset_ = batch_;
            }
            break;
    }
    // 421: the server is closing the connection (RFC 5321 3.8); nothing more will come.
    if (reply.code == 421 || phase_ == Phase::closed) {
        close();
    } else {
        resolve_front();
        retire_if_done();
    }
    return Event{e.cmd, e.index};
}

bool Session::one_line_per_recipient(const Reply& reply) const {
    const std::size_t n = txn_.accepted.size();
    if (strict_replies_ || txn_.finals != 0 || n < 2 || reply.lines.size() != n || !(reply.mixed() || line_server_))
        return false;
    // Each line a verdict: 2xx, 4xx or 5xx (a 3xx on a line is no verdict, and no reply).
    for (std::size_t i = 0; i < n; ++i)
        if (reply.line_code(i) / 100 == 3) return false;
    return true;
}

// A final reply: the verdict of the recipient `e` names, or of every accepted
// recipient when it comes as one line each. Returns how many it settled.
std::size_t Session::settle_final(const Expect& e, const Reply& reply) {
    if (!one_line_per_recipient(reply)) {
        settle(e.index, reply, Stage::data);
        return 1;
    }
    const std::size_t n = txn_.accepted.size();
    // The others' expectations come next, one each: this reply answered them too.
    for (std::size_t k = 1; k < n; ++k) {
        if (expect_.empty() || expect_.front().cmd != Cmd::final || expect_.front().txn != e.txn) {
            end_connection();
            throw Error(Status::internal, "the final replies of a transaction are not waited for together");
        }
        expect_.pop_front();
    }
    for (std::size_t k = 0; k < n; ++k) settle(txn_.accepted[k], reply.line_reply(k), Stage::data);
    return n;
}

void Session::abandon_delivery(const std::vector<std::string>& recipients) {
    new_transaction();
    for (const auto& r : recipients) add_recipient(r);
    mark_unknown();
}

// Without PIPELINING, a reply of the delivery came: its next line, or the message's turn.
void Session::lockstep_next() {
    if (!lockstep_.active) return;
    if (lockstep_.next_rcpt < lockstep_.rcpts.size()) {
        std::size_t i = lockstep_.next_rcpt++;
        queue(lockstep_.rcpts[i], Cmd::rcpt, i);
        return;
    }
    const bool bdat = lockstep_.bdat;
    lockstep_ = Lockstep{};
    if (txn_.accepted.empty()) {
        // Nobody accepted: no DATA. The server still holds the transaction
        // open; the next delivery sends RSET first.
        finish_transaction();
        batch_reset_ = batch_;
    } else if (bdat) {
        phase_ = Phase::body;  // the chunks go one by one, each after the previous reply
        bdat_mode_ = true;
    } else {
        queue(cmd::data(), Cmd::data);
        data_pending_ = true;
    }
}

// --- commands ----------------------------------------------------------------------

void Session::require_command_phase(const char* what) const {
    switch (phase_) {
        case Phase::closed: throw Error(Status::not_connected, std::string(what) + ": not connected");
        case Phase::greeting:
            throw Error(Status::bad_sequence, std::string(what) + ": the server's banner has not been read yet");
        case Phase::body:
            throw Error(Status::bad_sequence, std::string(what) + ": a message is being sent; end it first (data_end)");
        case Phase::tls_handshake:
            throw Error(Status::bad_sequence, std::string(what) + ": the TLS handshake after STARTTLS comes first");
        default: break;
    }
    if (data_pending_) throw Error(Status::bad_sequence, std::string(what) + ": the reply to DATA must be read first");
}

template <typename Params>
void Session::check_advertised(const Params& params, const char* command, bool force) const {
    if (force) return;
    if (auto missing = first_unoffered(params, caps_))
        throw Error(Status::not_advertised, std::string(command) + " parameter " + missing->second + " needs the " +
                                                missing->first + " extension, which the server did not advertise");
}

void Session::check_size(const MailParams& params) const {
    if (params.size && caps_.size_limit() && *params.size > caps_.size_limit())
        throw Error(Status::too_big, "the message (" + std::to_string(*params.size) +
                                         " octets) exceeds the server's SIZE limit of " +
                                         std::to_string(caps_.size_limit()) + " octets");
}

void Session::trace(TraceDir dir, std::string_view text) const noexcept {
    // A trace callback that throws must not break the protocol mid-step.
    if (!trace_) return;
    try {
        trace_(dir, text);
    } catch (...) {
    }
}

void Session::trace_sent(std::string_view line) const noexcept {
    if (line.size() >= 2 && line.substr(line.size() - 2) == "\r\n") line.remove_suffix(2);
    trace(TraceDir::send, line);
}

void Session::queue(std::string_view line, Cmd cmd, std::size_t index, std::string_view verb) {
    trace_sent(line);
    queue_out() += line;
    expect_.push_back({cmd, index,
                       cmd == Cmd::other ? std::string(verb.empty() ? command_verb(line) : verb) : std::string(),
                       stamp_});
}

void Session::lhlo(std::string_view domain) {
    require_command_phase("LHLO");
    queue(cmd::lhlo(domain, limits_.max_command_line), Cmd::lhlo);
}

void Session::mail(MailVerb verb, std::string_view from, const MailParams& params, bool force) {
    require_command_phase("MAIL");
    std::string line = cmd::mail(verb, from, params, limits_.max_command_line);
    check_advertised(params, "MAIL", force);
    check_size(params);
    new_transaction();
    queue(line, Cmd::mail);
}

void Session::rcpt(std::string_view to, const RcptParams& params, bool force) {
    require_command_phase("RCPT");
    std::string line = cmd::rcpt(to, params, limits_.max_command_line);
    check_advertised(params, "RCPT", force);
    std::size_t i = add_recipient(to);
    queue(line, Cmd::rcpt, i);
}

void Session::data() {
    require_command_phase("DATA");
    queue(cmd::data(), Cmd::data);
    data_pending_ = true;
}

void Session::rset() {
    require_command_phase("RSET");
    queue(cmd::rset(), Cmd::rset);
}

void Session::noop() {
    require_command_phase("NOOP");
    queue(cmd::noop(), Cmd::other);
}

void Session::quit() {
    require_command_phase("QUIT");
    queue(cmd::quit(), Cmd::quit);
}

void Session::verify(std::string_view address) {
    require_command_phase("VRFY");
    queue(cmd::verify(address, limits_.max_command_line), Cmd::other);
}

void Session::expand(std::string_view list) {
    require_command_phase("EXPN");
    queue(cmd::expand(list, limits_.max_command_line), Cmd::other);
}

void Session::help(std::string_view topic) {
    require_command_phase("HELP");
    queue(cmd::help(topic, limits_.max_command_line), Cmd::other);
}

void Session::etrn(std::string_view domain) {
    require_command_phase("ETRN");
    queue(cmd::etrn(domain, limits_.max_command_line), Cmd::other);
}

namespace {

// The address of a "RCPT TO:<addr> ..." line, for the recipient's result.
std::string rcpt_address(std::string_view line) {
    std::size_t lt = line.find('<');
    std::size_t gt = line.find('>', lt == std::string_view::npos ? 0 : lt);
    if (lt != std::string_view::npos && gt != std::string_view::npos)
        return std::string(line.substr(lt + 1, gt - lt - 1));
    std::size_t colon = line.find(':');
    std::string_view rest = colon == std::string_view::npos ? std::string_view{} : line.substr(colon + 1);
    return std::string(rest.substr(0, rest.find(' ')));
}

}  // namespace

void Session::raw(std::string_view line) {
    require_command_phase("command");
    std::string formatted = cmd::raw(line, limits_.max_command_line);
    std::string verb = command_verb(line);
    if (verb == "STARTTLS" || verb == "AUTH" || verb == "BDAT")
        throw Error(Status::bad_sequence,
                    verb + " cannot be sent as a plain command line: it needs more than one line; use its own call");
    if (verb == "LHLO" || verb == "EHLO" || verb == "HELO") {
        queue(formatted, Cmd::lhlo);
    } else if (verb == "MAIL" || verb == "SEND" || verb == "SOML" || verb == "SAML") {
        new_transaction();
        queue(formatted, Cmd::mail);
    } else if (verb == "RCPT") {
        std::size_t i = add_recipient(rcpt_address(line));
        queue(formatted, Cmd::rcpt, i);
    } else if (verb == "DATA") {
        queue(formatted, Cmd::data);
        data_pending_ = true;
    } else if (verb == "RSET") {
        queue(formatted, Cmd::rset);
    } else if (verb == "QUIT") {
        queue(formatted, Cmd::quit);
    } else {
        queue(formatted, Cmd::other);
    }
}

// --- the message ---------------------------------------------------------------------

void Session::body(std::string_view chunk) {
    body_piece(chunk);  // (checks the phase first: nothing is traced for a body that cannot be sent)
    trace_body(chunk);
}

void Session::trace_body(std::string_view chunk) const noexcept {
    if (trace_ && !chunk.empty()) trace_pieces(chunk);
}

void Session::body_piece(std::string_view piece) {
    if (phase_ != Phase::body || bdat_mode_)
        throw Error(phase_ == Phase::closed ? Status::not_connected : Status::bad_sequence,
                    bdat_mode_ ? "this message goes by BDAT: send it in chunks"
                               : "message data can only be sent after DATA was accepted (354)");
    encoder_.encode(piece, queue_out());
}

void Session::body_swap(std::string& chunk) {
    if (phase_ != Phase::body || bdat_mode_ || chunk.empty() || !encoder_.pass_through(chunk)) return body(chunk);
    if (trace_) trace_pieces(chunk);
    gather_output();
    std::string taken;
    taken.swap(chunk);
    chunk.swap(spare_);
    spare_.swap(payload_);  // payload_ was empty (gathered): its buffer is the next spare
    payload_.swap(taken);
}

void Session::trace_pieces(std::string_view chunk) const noexcept {
    // As Net::Cmd's datasend traces: the pieces between LFs, as given (a CR
    // before the LF kept), empty pieces at the end of a chunk left out.
    std::size_t empties = 0;  // empty pieces not yet shown: shown only if more follows
    std::string_view rest = chunk;
    while (!rest.empty()) {
        std::size_t lf = rest.find('\n');
        std::string_view piece = rest.substr(0, lf);
        if (piece.empty()) {
            ++empties;
        } else {
            for (; empties; --empties) trace(TraceDir::data, {});
            trace(TraceDir::data, piece);
        }
        if (lf == std::string_view::npos) break;
        rest.remove_prefix(lf + 1);
    }
}

void Session::end_body() {
    if (phase_ != Phase::body || bdat_mode_)
        throw Error(phase_ == Phase::closed ? Status::not_connected : Status::bad_sequence,
                    bdat_mode_ ? "this message goes by BDAT: its last chunk ends it"
                               : "there is no message to end: DATA was not accepted");
    encoder_.finish(queue_out());
    trace(TraceDir::data, ".");
    phase_ = Phase::transaction;
    for (std::size_t i : txn_.accepted) expect_.push_back({Cmd::final, i, {}, stamp_});
}

// --- a whole delivery: a batch --------------------------------------------------------

Session::Lines Session::check_delivery(std::string_view from, const std::vector<std::string>& recipients,
                                       const MailParams& mail_params, const RcptParams& rcpt_params, bool force,
                                       Transfer transfer) const {
    if (recipients.empty()) throw Error(Status::invalid_argument, "deliver: no recipients");
    Lines lines;
    lines.bdat = would_bdat(mail_params, transfer);
    lines.rcpts.reserve(recipients.size());
    // Not overridden by force, which is for parameters: RFC 3030 forbids
    // BDAT unless the server offered CHUNKING.
    if (lines.bdat && !caps_.offered().chunking)
        throw Error(Status::not_advertised, "BDAT needs the CHUNKING extension, which the server did not advertise");
    if (mail_params.body == BodyType::binary_mime && transfer == Transfer::data)
        throw Error(Status::invalid_argument, "BODY=BINARYMIME can only be sent with BDAT");
    lines.mail = cmd::mail(MailVerb::mail, from, mail_params, limits_.max_command_line);
    check_advertised(mail_params, "MAIL", force);
    check_size(mail_params);
    for (const auto& r : recipients) lines.rcpts.push_back(cmd::rcpt(r, rcpt_params, limits_.max_command_line));
    check_advertised(rcpt_params, "RCPT", force);
    return lines;
}

bool Session::would_bdat(const MailParams& mail_params, Transfer transfer) const {
    return transfer == Transfer::bdat || (transfer == Transfer::automatic && caps_.offered().chunking) ||
           mail_params.body == BodyType::binary_mime;
}

void Session::deliver(std::string_view from, const std::vector<std::string>& recipients, const MailParams& mail_params,
                      const RcptParams& rcpt_params, bool force, Transfer transfer, bool canonical) {
    batch_begin(true);
    try {
        batch_deliver(from, recipients, mail_params, rcpt_params, force, transfer, canonical);
    } catch (const Error&) {
        batch_end();
        throw;
    }
}

// RFC 2920: MAIL (queued), every RCPT and DATA in one group; DATA ends it.
// With BDAT the chunks join the group (RFC 3030 allows it).
void Session::start_message(Lines& lines) {
    for (std::size_t i = 0; i < lines.rcpts.size(); ++i) queue(lines.rcpts[i], Cmd::rcpt, i);
    if (lines.bdat) {
        phase_ = Phase::body;
        bdat_mode_ = true;
        bdat_first_ = true;
    } else {
        queue(cmd::data(), Cmd::data);
        data_pending_ = true;
    }
}

void Session::check_batch() const {
    require_command_phase("batch");
    if (phase_ == Phase::connected) throw Error(Status::bad_sequence, "deliver: the server has not accepted LHLO");
    if (!expect_.empty()) throw Error(Status::bad_sequence, "deliver: replies to earlier commands are still owed");
    if (batch_) throw Error(Status::bad_sequence, "deliver: a batch is under way");
}

void Session::batch_begin(bool one) {
    check_batch();
    batch_ = true;
    one_ = one;
    batch_reset_ = server_txn_;
    batch_current_ = stamp_ = 0;
    batch_queued_.clear();
    batch_done_.clear();
    one_done_ = 0;
}

std::uint64_t Session::batch_deliver(std::string_view from, const std::vector<std::string>& recipients,
                                     const MailParams& mail_params, const RcptParams& rcpt_params, bool force,
                                     Transfer transfer, bool canonical) {
    require_command_phase("deliver");
    if (!batch_) throw Error(Status::bad_sequence, "batch_deliver: no batch was begun");
    if (one_ && stamp_) throw Error(Status::bad_sequence, "batch_deliver: a batch of one has its transaction");
    const bool pipelined = caps_.offered().pipelining;
    if (!pipelined && !expect_.empty())
        throw Error(Status::bad_sequence,
                    "deliver: without PIPELINING a transaction waits for every reply of the one before");
    if (one_) clear_results(txn_);  // from here a refusal leaves no results: an earlier delivery's are not this one's
    Lines lines = check_delivery(from, recipients, mail_params, rcpt_params, force, transfer);

    stamp_ = batch_next_++;
    if (!batch_current_ && batch_queued_.empty()) {
        // Nothing older is owed a reply: the transaction replies will fill.
        if (!one_) clear_results(txn_);
        add_recipients(txn_, recipients);
        batch_current_ = stamp_;
        mail_ok_ = false;
    } else {
        Queued q{stamp_, Transaction{}};
        add_recipients(q.txn, recipients);
        batch_queued_.push_back(std::move(q));
    }
    encoder_.reset();
    bdat_mode_ = bdat_first_ = bdat_failed_ = false;
    bdat_in_flight_ = 0;
    canonical_ = canonical;
    // The server may hold a transaction: what the replies said, or what those still owed may say.
    const bool reset = batch_reset_ || (expect_.empty() && server_txn_);
    batch_reset_ = false;
    if (!pipelined) {
        lockstep_.active = true;
        lockstep_.rcpts = std::move(lines.rcpts);
        lockstep_.bdat = lines.bdat;
        if (reset) {
            queue(cmd::rset(), Cmd::rset);
            lockstep_.mail = std::move(lines.mail);  // sent when RSET is answered
        } else {
            queue(lines.mail, Cmd::mail);
        }
        return stamp_;
    }
    if (reset) queue(cmd::rset(), Cmd::rset);
    queue(lines.mail, Cmd::mail);
    start_message(lines);
    return stamp_;
}

void Session::batch_end() {
    batch_ = one_ = batch_reset_ = false;
    stamp_ = 0;
    batch_current_ = 0;
    batch_queued_.clear();
    batch_done_.clear();
    one_done_ = 0;
    lockstep_ = Lockstep{};
}

// A batch of one ends by itself once its transaction is handed over (batch_take still gives its id).
void Session::end_one() {
    batch_ = one_ = batch_reset_ = false;
    stamp_ = 0;
}

bool Session::batch_older_pending() const {
    return !expect_.empty() && expect_.front().txn != 0 && expect_.front().txn != stamp_;
}

std::pair<std::uint64_t, Transaction> Session::batch_take() {
    if (one_done_) return {batch_skip(), Transaction{}};
    if (batch_done_.empty()) throw Error(Status::bad_sequence, "batch_take: no finished transaction");
    std::pair<std::uint64_t, Transaction> taken{batch_done_.front().id, std::move(batch_done_.front().txn)};
    batch_done_.pop_front();
    return taken;
}

std::uint64_t Session::batch_skip() {
    const std::uint64_t id = one_done_;
    if (id) {
        one_done_ = 0;
        return id;
    }
    if (batch_done_.empty()) throw Error(Status::bad_sequence, "batch_skip: no finished transaction");
    const std::uint64_t front = batch_done_.front().id;
    batch_done_.pop_front();
    return front;
}

// The first reply of a later transaction: the one replies were filling has
// had every reply it was owed.
void Session::promote(std::uint64_t id) {
    if (batch_current_) hand_over();
    while (!batch_queued_.empty() && batch_queued_.front().id != id) {  // (never: ids come in order)
        batch_done_.push_back(std::move(batch_queued_.front()));
        batch_queued_.pop_front();
    }
    if (batch_queued_.empty()) return;
    txn_ = std::move(batch_queued_.front().txn);
    batch_queued_.pop_front();
    batch_current_ = id;
    mail_ok_ = false;
}

void Session::retire_if_done() {
    if (!batch_current_ || !txn_.finished) return;
    if (!expect_.empty() && expect_.front().txn == batch_current_) return;
    // Its message still going (chunks after a refused MAIL): its end is still owed a reply.
    if (batch_current_ == stamp_ && (bdat_mode_ || phase_ == Phase::body)) return;
    hand_over();
    if (one_) end_one();
}

// The transaction replies were filling joins the finished ones (a batch of one's results stay in txn_).
void Session::hand_over() {
    if (one_)
        one_done_ = batch_current_;
    else
        batch_done_.push_back({batch_current_, txn_});
    batch_current_ = 0;
}

// Empty results, keeping the room they had (the next delivery fills it again).
void Session::clear_results(Transaction& t) {
    t.mail_reply = Reply{};
    t.data_reply = Reply{};
    t.recipients.clear();
    t.accepted.clear();
    t.finals = 0;
    t.finished = false;
}

void Session::add_recipients(Transaction& t, const std::vector<std::string>& recipients) {
    t.recipients.resize(recipients.size());
    for (std::size_t i = 0; i < recipients.size(); ++i) t.recipients[i].address = recipients[i];
}

// --- BDAT ------------------------------------------------------------------------------

void Session::queue_bdat(std::string_view bytes, bool last, std::string* payload) {
    if (payload) bytes = *payload;
    std::string line = cmd::bdat(bytes.size(), last);
    trace_sent(line);
    if (trace_ && !bytes.empty()) trace_pieces(bytes);
    std::string& out = queue_out();
    out += line;
    if (payload)
        payload_.swap(*payload);  // nothing is queued after out_ (bdat_chunk gathered it)
    else
        out.append(bytes);
    bdat_first_ = false;
    if (last) {
        // The final replies: one per recipient accepted by then (known when
        // this reaches the front of the queue), or none. In a batch of several,
        // pipelined, RSET follows (see batch_begin in session.hpp).
        const bool rset = batch_ && !one_ && caps_.offered().pipelining;
        expect_.push_back({Cmd::bdat_last, 0, {}, stamp_, rset ? Sync::rset : Sync::none});
        bdat_mode_ = false;
        phase_ = Phase::transaction;
        if (rset) queue(cmd::rset(), Cmd::rset);
        resolve_front();
    } else {
        expect_.push_back({Cmd::bdat, 0, {}, stamp_});
        ++bdat_in_flight_;
    }
}

void Session::bdat_chunk(std::string_view raw, bool last) {
    if (phase_ != Phase::body || !bdat_mode_)
        throw Error(phase_ == Phase::closed ? Status::not_connected : Status::bad_sequence,
                    "BDAT chunks can only be sent while a message goes by BDAT");
    if (bdat_failed_) throw Error(Status::bad_sequence, "a BDAT chunk was refused: no more chunks may follow");
    // The chunk is encoded straight into the output, as a piece of its own
    // after its BDAT line: a driver can write both without another copy.
    gather_output();
    std::string chunk;
    chunk.swap(spare_);
    chunk.clear();  // its capacity kept for this chunk
    if (canonical_) {
        chunk.assign(raw);
    } else {
        encoder_.set_mode(BodyEncoder::Mode::canonical);
        encoder_.encode(raw, chunk);
        if (last) encoder_.finish(chunk);
    }
    // A CR held back for the next chunk can leave nothing to send: a BDAT 0
    // would only cost a round trip.
    if (!chunk.empty() || last) queue_bdat({}, last, &chunk);
    spare_.swap(chunk);
}

void Session::bdat_chunk_swap(std::string& raw, bool last) {
    if (phase_ != Phase::body || !bdat_mode_ || bdat_failed_ || raw.empty()) return bdat_chunk(raw, last);
    if (!canonical_) {
        encoder_.set_mode(BodyEncoder::Mode::canonical);
        if (!encoder_.pass_through(raw)) return bdat_chunk(raw, last);
        if (last) encoder_.finish(raw);  // a CRLF when the body did not end with one
    }
    gather_output();
    std::string chunk;
    chunk.swap(raw);
    raw.swap(spare_);
    queue_bdat({}, last, &chunk);
    spare_.swap(chunk);  // what the payload held: empty, its capacity kept
}

void Session::bdat_raw(std::string_view bytes, bool last) {
    require_command_phase("BDAT");
    if (bdat_failed_) throw Error(Status::bad_sequence, "a BDAT chunk was refused: no more chunks may follow");
    bdat_mode_ = true;
    phase_ = Phase::body;
    queue_bdat(bytes, last);
    if (!last) phase_ = Phase::transaction;  // the step-by-step API sends any command next
}

void Session::bdat_to_data() {
    if (lockstep_.active && lockstep_.bdat) {
        lockstep_.bdat = false;  // DATA follows the RCPTs
        return;
    }
    if (phase_ != Phase::body || !bdat_mode_) throw Error(Status::bad_sequence, "no BDAT message to send");
    bdat_mode_ = bdat_first_ = false;
    phase_ = Phase::transaction;
    queue(cmd::data(), Cmd::data);
    data_pending_ = true;
}

void Session::settle_bdat_failure() {
    // The message was refused: that is every accepted recipient's verdict. No
    // LAST chunk went out, so the server may still hold the transaction.
    for (std::size_t i : txn_.accepted)
        if (txn_.recipients[i].outcome == Outcome::pending) settle(i, bdat_failure_, Stage::data);
    bdat_mode_ = false;
    finish_transaction();
    phase_ = server_txn_ ? Phase::transaction : Phase::ready;
    batch_reset_ = batch_;  // no LAST went out: the server may hold the transaction
}

void Session::resolve_front() {
    while (!expect_.empty() && expect_.front().cmd == Cmd::bdat_last) {
        const std::uint64_t id = expect_.front().txn;
        const Sync sync = expect_.front().sync;
        expect_.pop_front();
        if (id && id != batch_current_) promote(id);
        if (txn_.accepted.empty() && sync == Sync::rset) {
            // The RSET queued after BDAT LAST settles it (see batch_begin in session.hpp).
            finish_transaction();
            expect_.push_front({Cmd::bdat_sync, 0, {}, id, Sync::rset});
        } else if (txn_.accepted.empty()) {
            // RFC 2033 4.3: with no accepted recipient BDAT LAST gets no reply
            // at all; but some servers (Dovecot 2.3) refuse it with one. A
            // NOOP settles it: its 2xx comes first if there was no refusal.
            finish_transaction();
            server_txn_ = false;
            mail_ok_ = false;
            phase_ = Phase::ready;
            queue(cmd::noop(), Cmd::bdat_sync, 0);
            expect_.back().sync = Sync::noop;
            expect_.back().txn = id;
        } else {
            for (auto it = txn_.accepted.rbegin(); it != txn_.accepted.rend(); ++it)
                expect_.push_front({Cmd::final, *it, {}, id});
        }
    }
}

// --- STARTTLS and AUTH ------------------------------------------------------------------

void Session::starttls() {
    require_command_phase("STARTTLS");
    if (!expect_.empty()) throw Error(Status::bad_sequence, "STARTTLS: replies to earlier commands are still owed");
    queue(cmd::starttls(), Cmd::starttls);
}

void Session::tls_started() {
    if (phase_ != Phase::tls_handshake) throw Error(Status::bad_sequence, "no STARTTLS handshake was pending");
    // RFC 3207 4.2: forget everything learnt before; LHLO again.
    caps_ = Capabilities{};
    phase_ = Phase::connected;
    server_txn_ = false;
    mail_ok_ = false;
    authenticated_ = false;
}

bool Session::auth(std::string_view mechanism, const std::optional<std::string>& initial_base64) {
    require_command_phase("AUTH");
    std::string line;
    bool with_initial = initial_base64.has_value();
    try {
        line = cmd::auth(mechanism, initial_base64, limits_.max_command_line);
    } catch (const Error& e) {
        if (e.status() != Status::line_too_long || !with_initial) throw;
        with_initial = false;  // RFC 4954 4: too long for the line, so it goes after the first 334
        line = cmd::auth(mechanism, std::nullopt, limits_.max_command_line);
    }
    std::string shown = "AUTH " + std::string(mechanism) + (with_initial ? " [credentials hidden]" : "");
    trace(TraceDir::send, shown);
    queue_out() += line;
    expect_.push_back({Cmd::auth, 0, {}});
    return with_initial;
}

void Session::auth_response(std::string_view base64) {
    if (phase_ == Phase::closed) throw Error(Status::not_connected, "AUTH: not connected");
    std::string line = cmd::auth_response(base64);
    trace(TraceDir::send, base64 == "*" ? "*" : "[credentials hidden]");
    queue_out() += line;
    expect_.push_back({Cmd::auth, 0, {}});
}

}  // namespace lmtp
