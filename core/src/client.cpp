#include "lmtp/client.hpp"

#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>
#include <unistd.h>

#include "lmtp/auth.hpp"

namespace lmtp {

namespace {

constexpr std::size_t kReadBuffer = 16 * 1024;

std::string default_hello() {
    char name[256] = {};
    if (gethostname(name, sizeof name - 1) == 0 && name[0]) {
        std::string s(name);
        bool ok = std::all_of(s.begin(), s.end(), [](char c) {
            return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
        });
        if (ok) return s;
    }
    return "localhost";
}

std::string trace_line(const Reply& r, std::size_t i) {
    std::string line = std::to_string(r.line_code(i));
    bool last = i + 1 == r.lines.size();
    if (last && r.lines[i].empty()) return line;
    line += last ? ' ' : '-';
    line += r.lines[i];
    return line;
}

}  // namespace

BodySource memory_source(std::string_view bytes) {
    auto offset = std::make_shared<std::size_t>(0);
    return [bytes, offset](char* buf, std::size_t cap) {
        std::size_t n = std::min(cap, bytes.size() - *offset);
        if (n) std::memcpy(buf, bytes.data() + *offset, n);
        *offset += n;
        return n;
    };
}

Client::Client(ClientOptions options)
    : options_(std::move(options)), session_(options_.limits), parser_(options_.limits.reply), rbuf_(kReadBuffer) {
    if (options_.connect_timeout.count() <= 0) options_.connect_timeout = options_.timeout;
    if (options_.write_chunk == 0) options_.write_chunk = 64 * 1024;
    session_.set_trace(options_.trace);
    session_.set_strict_replies(options_.strict_replies);
}

Client::~Client() {
    close();
}

void Client::trace(TraceDir dir, std::string_view text) const noexcept {
    if (!options_.trace) return;
    try {
        options_.trace(dir, text);
    } catch (...) {
        // A throwing callback must not cost a reply that has already been read.
    }
}

void Client::set_trace(TraceFn fn) {
    options_.trace = std::move(fn);
    session_.set_trace(options_.trace);
}

void Client::set_timeout(std::chrono::milliseconds timeout) {
    if (timeout.count() <= 0) throw Error(Status::invalid_argument, "timeout must be positive");
    options_.timeout = timeout;
}

bool Client::connected() const {
    return transport_ && transport_->is_open() && session_.phase() != Phase::closed;
}

std::string Client::domain() const {
    const Reply& b = session_.banner();
    if (b.lines.empty()) return {};
    std::string_view first = b.lines[0];
    while (!first.empty() && first.front() == ' ') first.remove_prefix(1);
    return std::string(first.substr(0, first.find(' ')));
}

// --- connection --------------------------------------------------------------------

void Client::reset_input() {
    parser_.reset();
    parser_.set_limits(session_.limits().reply);
    rpos_ = rlen_ = 0;
    raw_owed_ = 0;
    replay_.clear();
}

void Client::close() noexcept {
    if (transport_) {
        transport_->close();
        transport_.reset();
    }
    session_.close();
    reset_input();
}

void Client::fail(Status status, const std::string& why, int os_error) {
    // After this the session cannot go on: close, then report.
    trace(TraceDir::info, "connection closed: " + why);
    close();
    throw Error(status, why, os_error);
}

std::string Client::checked_hello() const {
    std::string name = options_.hello.empty() ? default_hello() : options_.hello;
    cmd::lhlo(name, session_.limits().max_command_line);  // throws if it could not be sent
    return name;
}

namespace {

// Base64 would carry them safely, but no server reads a CR, LF or NUL in a
// name or password as meant; PLAIN uses NUL as its separator.
void check_auth_args(const std::string& user, const std::string& password, const std::string& mechanism) {
    const std::pair<const std::string*, const char*> args[] = {
        {&user, "user name"}, {&password, "password"}, {&mechanism, "mechanism name"}};
    for (const auto& [s, what] : args)
        if (s->find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos)
            throw Error(Status::bad_input, std::string("AUTH: the ") + what + " contains a CR, LF or NUL; nothing was sent");
    if (!mechanism.empty() &&
        (mechanism.size() > 20 || mechanism.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                              "abcdefghijklmnopqrstuvwxyz0123456789-_") !=
                                      std::string::npos))
        throw Error(Status::invalid_argument,
                    "AUTH: the mechanism name is not a SASL name (up to 20 letters, digits, '-' or '_')");
}

}  // namespace

void Client::connect(const std::string& host, std::uint16_t port) {
    close();
    last_ = Reply{};
    std::string name = checked_hello();  // a bad Hello fails before connecting
    if (options_.send_hello && !options_.auth_user.empty())  // and so do bad AUTH options
        check_auth_args(options_.auth_user, options_.auth_password, options_.auth_mechanism);
    ConnectOptions co;
    co.timeout = options_.connect_timeout;
    co.local_address = options_.local_address;
    co.local_port = options_.local_port;
    std::unique_ptr<Transport> t = SocketTransport::connect(host, port, co);
    trace(TraceDir::info, "connected to " + t->peer());
    host_ = host;
    if (options_.implicit_tls) {
        auto tls = TlsTransport::handshake(std::move(t), options_.tls, host_, Clock::now() + options_.timeout);
        trace(TraceDir::info, "TLS established: " + tls->description());
        t = std::move(tls);
    }
    greet(std::move(t), name);
}

void Client::connect(std::unique_ptr<Transport> transport) {
    close();
    last_ = Reply{};
    if (!transport || !transport->is_open()) throw Error(Status::invalid_argument, "no open transport");
    greet(std::move(transport), checked_hello());
}

void Client::greet(std::unique_ptr<Transport> transport, const std::string& name) {
    transport_ = std::move(transport);
    reset_input();
    session_.start();
    try {
        run();
        if (!last_.completion()) throw Error(Status::rejected, "the server refused the connection: " + last_.summary());
        if (!options_.send_hello) return;  // the caller sends LHLO when it wants
        const Reply& r = hello(name);
        if (!r.completion()) throw Error(Status::rejected, "the server refused LHLO: " + r.summary());
        after_hello();
    } catch (const Error& e) {
        fail(e.status(), e.what(), e.os_error());  // connected means greeted: nothing is left half open
    }
}

// What connect() does after LHLO, as the options say: STARTTLS, then AUTH.
void Client::after_hello() {
    if (options_.starttls != StartTls::off && !tls_active()) {
        if (supports("STARTTLS")) {
            const Reply& r = starttls();
            if (!tls_active() && options_.starttls == StartTls::required)
                throw Error(Status::tls, "TLS is required but the server refused STARTTLS: " + r.summary());
            if (tls_active() && !last_.completion())
                throw Error(Status::rejected, "the server refused LHLO after STARTTLS: " + last_.summary());
            // Refused with opportunistic TLS: the session goes on in plain text.
        } else if (options_.starttls == StartTls::required) {
            throw Error(Status::not_advertised, "TLS is required but the server does not offer STARTTLS");
        }
    }
    if (!options_.auth_user.empty())
        auth(options_.auth_user, options_.auth_password, options_.auth_mechanism, options_.auth_allow_plaintext);
}

void Client::require_connection() const {
    if (!connected()) throw Error(Status::not_connected, "not connected");
}

// --- reading and writing -------------------------------------------------------------

void Client::flush() {
    while (session_.output_size() > 0) {
        // The pieces go out together, a BDAT chunk's payload without being
        // copied next to its command line.
        std::string_view pieces[3];
        std::size_t count = session_.output_pieces(pieces);
        std::size_t size = session_.output_size();
        try {
            transport_->write_pieces(pieces, count, Clock::now() + options_.timeout);
        } catch (const Error& e) {
            std::string why = e.what();
            if (e.status() == Status::timeout)
                why = "timed out after " + std::to_string(options_.timeout.count()) +
                      " ms writing to the server (it stopped reading)";
            take_replies_left();
            fail(e.status(), why, e.os_error());
        }
        written_ += size;
        session_.consumed(size);
    }
}

// A write failed (the connection closed, or the server stopped reading while
// pipelined commands or a body were still going out). The replies the server
// sent before are already here: take them, without waiting, so that the
// verdicts they carry (a refused RCPT, a final reply) are kept rather than
// turned into UNKNOWN.
void Client::take_replies_left() noexcept {
    try {
        while (transport_ && session_.awaiting() > 0 && (rpos_ < rlen_ || transport_->readable()))
            apply(read_reply(Clock::now()));
    } catch (...) {
        // The end of what came (the reset itself, a reply cut short): the caller reports the write.
    }
}

Reply Client::read_reply() {
    return read_reply(Clock::now() + options_.timeout);  // for the whole reply
}

Reply Client::read_reply(Deadline deadline) {
    for (;;) {
        if (rpos_ < rlen_) {
            std::size_t used = 0;
            auto result = parser_.feed(rbuf_.data() + rpos_, rlen_ - rpos_, used);
            rpos_ += used;
            if (result == ReplyParser::Result::reply) {
                Reply r = parser_.take();
                if (options_.trace)
                    for (std::size_t i = 0; i < r.lines.size(); ++i) trace(TraceDir::receive, trace_line(r, i));
                return r;
            }
            if (result == ReplyParser::Result::error) {
                std::string why =
                    "invalid reply from the server (waiting for " + session_.awaited() + "): " + parser_.error();
                fail(Status::protocol, why);
            }
        }
        rpos_ = rlen_ = 0;
        std::size_t n = 0;
        try {
            n = transport_->read(rbuf_.data(), rbuf_.size(), deadline);
        } catch (const Error& e) {
            std::string why = e.what();
            if (e.status() == Status::timeout)
                why = "timed out after " + std::to_string(options_.timeout.count()) + " ms waiting for " +
                      session_.awaited();
            else
                why += " (waiting for " + session_.awaited() + ")";
            fail(e.status(), why, e.os_error());
        }
        if (n == 0) {
            std::string why = std::string("the server closed the connection ") +
                              (parser_.in_reply() ? "in the middle of " : "while we waited for ") + session_.awaited();
            fail(Status::closed, why);
        }
        rlen_ = n;
    }
}

void Client::apply(const Reply& reply) {
    last_ = reply;
    try {
        session_.on_reply(reply);
    } catch (const Error& e) {
        // The session may leave a last word (a lone dot after a wrong 354);
        // send it if the server still reads, then leave.
        if (!session_.output().empty() && transport_) {
            try {
                transport_->write(session_.output(), Clock::now() + options_.timeout);
            } catch (const Error&) {
            }
        }
        fail(e.status(), e.what(), e.os_error());
    }
    if (session_.phase() == Phase::closed) close();  // QUIT answered, or 421
}

void Client::run() {
    for (;;) {
        switch (session_.want()) {
            case Session::Want::write: flush(); break;
            case Session::Want::read: apply(read_reply()); break;
            case Session::Want::body:
            case Session::Want::idle: return;
        }
    }
}

void Client::settle_pending() {
    if (session_.awaiting() > 0) run();
    raw_owed_ = 0;
}

void Client::check_unsolicited() {
    if (!transport_ || session_.awaiting() > 0) return;
    std::string extra;
    if (rpos_ < rlen_) {
        extra.assign(rbuf_.data() + rpos_, rlen_ - rpos_);
    } else if (parser_.in_reply()) {
        extra = "(part of a reply)";
    } else if (transport_->readable()) {
        char buf[512];
        std::size_t n = 0;
        try {
            n = transport_->read(buf, sizeof buf, Clock::now() + options_.timeout);
        } catch (const Error& e) {
            fail(e.status(), e.what(), e.os_error());
        }
        if (n == 0) fail(Status::closed, "the server closed the connection");
        extra.assign(buf, n);
    }
    if (extra.empty()) return;
    if (extra.compare(0, 4, "421 ") == 0 || extra.compare(0, 4, "421-") == 0)
        fail(Status::closed, "the server is closing the connection: " + printable(extra.substr(0, extra.find('\r'))));
    fail(Status::protocol,
         "the server sent data that answers no command (a reply too many?): '" + printable(extra) + "'");
}

void Client::begin_command() {
    last_ = Reply{};  // a call that gets no reply leaves code 0
    require_connection();
    settle_pending();
    require_connection();
    check_unsolicited();
    replay_.clear();
    last_ = Reply{};
}

template <typename Queue>
const Reply& Client::one(Queue&& queue) {
    begin_command();
    queue();
    run();
    return last_;
}

// --- one command, one reply ------------------------------------------------------------

const Reply& Client::hello(std::string_view domain) {
    return one([&] { session_.lhlo(domain); });
}

const Reply& Client::mail(std::string_view from, const MailParams& params, bool force) {
    return mail(MailVerb::mail, from, params, force);
}

const Reply& Client::mail(MailVerb verb, std::string_view from, const MailParams& params, bool force) {
    return one([&] { session_.mail(verb, from, params, force); });
}

const Reply& Client::rcpt(std::string_view to, const RcptParams& params, bool force) {
    return one([&] { session_.rcpt(to, params, force); });
}

const Reply& Client::rset() {
    return one([&] { session_.rset(); });
}

const Reply& Client::noop() {
    return one([&] { session_.noop(); });
}

const Reply& Client::verify(std::string_view address) {
    return one([&] { session_.verify(address); });
}

const Reply& Client::expand(std::string_view list) {
    return one([&] { session_.expand(list); });
}

const Reply& Client::help(std::string_view topic) {
    return one([&] { session_.help(topic); });
}

const Reply& Client::etrn(std::string_view domain) {
    return one([&] { session_.etrn(domain); });
}

const Reply& Client::quit() {
    begin_command();
    session_.quit();
    try {
        run();
    } catch (const Error& e) {
        // A server that just hangs up on QUIT has done what was asked.
        if (e.status() != Status::closed) throw;
    }
    close();
    return last_;
}

// --- the message, step by step -----------------------------------------------------------

const Reply& Client::data_start() {
    return one([&] { session_.data(); });
}

void Client::data_write(std::string_view chunk) {
    last_ = Reply{};
    require_connection();
    if (session_.phase() != Phase::body) settle_pending();
    // However much comes at once (a whole message in one datasend), it goes
    // out in pieces of a few writes (256 KiB by default): the output stays
    // that small, and warm in the cache. The trace shows the chunk as given.
    const std::size_t step = 4 * options_.write_chunk;
    std::string_view piece = chunk.substr(0, step);
    session_.body_piece(piece);  // (checks that a message is under way)
    session_.trace_body(chunk);
    for (;;) {
        chunk.remove_prefix(piece.size());
        if (session_.output_size() >= step) flush();
        if (chunk.empty()) break;
        piece = chunk.substr(0, step);
        session_.body_piece(piece);
    }
}

const Reply& Client::data_end() {
    last_ = Reply{};
    require_connection();
    if (session_.phase() != Phase::body) settle_pending();
    session_.end_body();
    read_finals();
    return last_;
}

// Every final reply of the message just ended. On a break the replies that
// came keep their place: the replay is made from them before the error goes on.
void Client::read_finals() {
    try {
        run();
        if (!session_.transaction().finished) {  // a 421 among them: the server left
            std::string why = "the session ended before every recipient had its final reply";
            if (!last_.empty()) why += " (last reply: " + last_.summary() + ")";
            throw Error(Status::closed, why);
        }
    } catch (const Error& e) {
        replay_finals(&e);
        throw;
    }
    replay_finals(nullptr);
}

// The first recipient's final reply becomes the last reply (what Net::LMTP
// returned; empty when it never came); the others wait for response(), each
// missing one as the error that ended the session.
void Client::replay_finals(const Error* ended) {
    const Transaction& t = session_.transaction();
    replay_.clear();
    if (t.accepted.empty()) return;
    last_ = t.recipients[t.accepted.front()].reply;
    for (std::size_t k = 1; k < t.accepted.size(); ++k) {
        const RecipientResult& r = t.recipients[t.accepted[k]];
        Owed owed{r.reply, Status::ok, {}};
        if (ended && r.outcome == Outcome::unknown) {
            owed.ended = ended->status();
            owed.why = "no final reply for <" + r.address + ">: " + ended->what();
        }
        replay_.push_back(std::move(owed));
    }
}

const Reply& Client::bdat(std::string_view bytes, bool last) {
    begin_command();
    session_.bdat_raw(bytes, last);
    if (last)
        read_finals();
    else
        run();
    return last_;
}

// --- TLS and AUTH ----------------------------------------------------------------------------

const Reply& Client::starttls() {
    // The settings are checked before STARTTLS is sent: a bad one leaves the
    // session as it was, in plain text, rather than broken after the 220.
    begin_command();
    if (tls_active()) throw Error(Status::bad_sequence, "STARTTLS: TLS is already active");
    std::optional<TlsSetup> setup;
    const Phase phase = session_.phase();
    if (phase == Phase::connected || phase == Phase::ready || phase == Phase::transaction)
        setup.emplace(TlsSetup::make(options_.tls, host_, transport_->is_local()));
    session_.starttls();
    run();
    starttls_reply_ = last_;
    if (session_.phase() != Phase::tls_handshake) return last_;  // refused: still plain text
    // Nothing may follow the 220 in plain text: it would be read as if it came
    // over TLS (RFC 3207 5, the STARTTLS command injection).
    if (rpos_ < rlen_ || parser_.in_reply())
        fail(Status::protocol, "the server sent more after its 220 to STARTTLS, before TLS began; closing");
    try {
        if (!setup) throw Error(Status::internal, "STARTTLS accepted without a TLS setup");
        transport_ = TlsTransport::handshake(std::move(transport_), std::move(*setup), Clock::now() + options_.timeout);
    } catch (const Error& e) {
        fail(e.status(), e.what(), e.os_error());
    }
    trace(TraceDir::info, "TLS established: " + static_cast<TlsTransport*>(transport_.get())->description());
    session_.tls_started();
    return hello(checked_hello());  // RFC 3207 4.2: LHLO again; what was offered before counts no more
}

namespace {

std::string why_auth_failed(const Reply& r, const std::string& mechanism) {
    std::string why;
    switch (r.code) {
        case 535: why = "the server refused the credentials"; break;
        case 534: why = "the server wants a stronger mechanism than " + mechanism; break;
        case 538: why = "AUTH " + mechanism + " needs an encrypted connection (STARTTLS) first"; break;
        case 454: why = "temporary authentication failure; try again later"; break;
        case 530: why = "the server wants something else first (STARTTLS?)"; break;
        case 504: why = "the server does not accept the mechanism " + mechanism; break;
        default: why = "authentication with " + mechanism + " failed"; break;
    }
    return why + ": " + r.summary();
}

}  // namespace

const Reply& Client::auth(const std::string& user, const std::string& password, const std::string& mechanism,
                          bool allow_plaintext) {
    last_ = Reply{};
    require_connection();
    settle_pending();
    check_unsolicited();
    replay_.clear();
    check_auth_args(user, password, mechanism);
    if (!supports("AUTH")) throw Error(Status::not_advertised, "the server does not offer AUTH");
    const auto& offered = capabilities().auth_mechanisms();
    std::string mech;
    if (mechanism.empty()) {
        mech = pick_mechanism(offered, tls_active() && !options_.tls.cert_file.empty());
        if (mech.empty()) {
            std::string list;
            for (const auto& m : offered) list += (list.empty() ? "" : " ") + m;
            throw Error(Status::not_advertised,
                        "none of the server's AUTH mechanisms (" + list + ") is one liblmtp can use");
        }
    } else {
        mech = mechanism;
        for (char& c : mech)
            if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
        if (std::find(offered.begin(), offered.end(), mech) == offered.end())
            throw Error(Status::not_advertised, "the server does not offer AUTH " + mech);
    }
    auto sasl = make_mechanism(mech, user, password);
    if (sasl->reveals_password() && !tls_active() && !transport_->is_local() && !allow_plaintext)
        throw Error(Status::insecure, "refusing to send a password with AUTH " + mech +
                                          " over unencrypted TCP: use STARTTLS, a unix socket, or allow it explicitly");

    std::optional<std::string> initial = sasl->initial();
    bool initial_sent =
        session_.auth(mech, initial ? std::optional<std::string>(base64_encode(*initial)) : std::nullopt);
    run();
    while (last_.code == 334) {
        std::string answer;
        try {
            if (initial && !initial_sent) {
                answer = *initial;  // it did not fit on the AUTH line
                initial_sent = true;
            } else {
                answer = sasl->step(base64_decode(last_.lines.empty() ? std::string() : last_.lines[0]));
            }
        } catch (const Error& e) {
            // Cancel the exchange (RFC 4954: "*"), read the server's 501, then report.
            session_.auth_response("*");
            run();
            throw Error(Status::auth, std::string("AUTH ") + mech + " abandoned: " + e.what());
        }
        session_.auth_response(base64_encode(answer));
        run();
    }
    if (last_.code == 235) {
        if (!sasl->complete())
            fail(Status::auth, "the server accepted AUTH " + mech + " without proving it knows the password");
        trace(TraceDir::info, "authenticated with " + mech);
        return last_;
    }
    throw Error(Status::auth, why_auth_failed(last_, mech));
}

const Reply& Client::data(std::string_view message) {
    const Reply& r = data_start();
    if (r.code != 354) return r;
    std::size_t step = options_.write_chunk;
    for (std::size_t off = 0; off < message.size(); off += step) data_write(message.substr(off, step));
    return data_end();
}

// --- a caller's own command line --------------------------------------------------------------

void Client::command(std::string_view line) {
    last_ = Reply{};
    require_connection();
    if (session_.awaiting() == 0) check_unsolicited();
    replay_.clear();
    session_.raw(line);
    flush();
    ++raw_owed_;
}

const Reply& Client::response() {
    if (raw_owed_ > 0 && session_.awaiting() > 0) {
        --raw_owed_;
        apply(read_reply());
        return last_;
    }
    raw_owed_ = 0;
    if (!replay_.empty()) {
        Owed owed = std::move(replay_.front());
        replay_.pop_front();
        last_ = std::move(owed.reply);
        if (owed.ended != Status::ok) throw Error(owed.ended, owed.why);
        return last_;
    }
    if (!connected()) throw Error(Status::not_connected, "no reply is owed, and the connection is closed");
    throw Error(Status::bad_sequence, "no reply is owed: every reply has been read");
}

// --- a whole transaction ------------------------------------------------------------------------

const Transaction& Client::deliver(std::string_view from, const std::vector<std::string>& recipients,
                                   std::string_view message, const MailParams& mail_params,
                                   const RcptParams& rcpt_params, bool force, Transfer transfer, bool canonical) {
    return deliver(from, recipients, memory_source(message), mail_params, rcpt_params, force, transfer, canonical,
                   message.size());
}

const Transaction& Client::deliver(std::string_view from, const std::vector<std::string>& recipients,
                                   const BodySource& source, const MailParams& mail_params,
                                   const RcptParams& rcpt_params, bool force, Transfer transfer, bool canonical,
                                   std::size_t size_hint) {
    try {
        begin_command();
        session_.deliver(from, recipients, mail_params, rcpt_params, force, transfer, canonical);
    } catch (const Error& e) {
        // No connection to deliver over: the results are this call's, all unknown.
        if (e.status() == Status::not_connected || e.status() == Status::closed || e.status() == Status::io ||
            e.status() == Status::timeout || e.status() == Status::protocol)
            session_.abandon_delivery(recipients);
        throw;
    }
    run();
    if (session_.want() == Session::Want::body) {
        if (session_.bdat_mode())
            send_bdat(source, size_hint);
        else
            send_body(source, size_hint);
    }
    const Transaction& t = session_.transaction();
    if (!t.finished) {
        std::string why = "the server ended the session before every recipient had a verdict";
        if (!last_.empty()) why += ": " + last_.summary();
        throw Error(Status::closed, why);
    }
    return t;
}

bool Client::try_read_source(const BodySource& source, char* buf, std::size_t cap, std::size_t& n,
                             std::string& why) {
    n = 0;
    try {
        n = source(buf, cap);
        if (n > cap) why = "the message source returned more bytes than asked for";
    } catch (const std::exception& e) {
        why = std::string("the message source failed: ") + e.what();
    } catch (...) {
        why = "the message source failed";
    }
    return why.empty();
}

std::size_t Client::read_source(const BodySource& source, char* buf, std::size_t cap) {
    std::size_t n = 0;
    std::string why;
    if (try_read_source(source, buf, cap, n, why)) return n;
    if (batch_settle_) {
        // The earlier messages of a batch are whole on the wire: their verdicts are still to be had.
        try {
            flush();
            while (session_.batch_older_pending()) apply(read_reply());
        } catch (const Error&) {
        }
    }
    // Without its end (the final dot, the LAST chunk) the server must not
    // deliver the message; closing is the only way to abandon it.
    fail(Status::aborted, why + "; the connection was closed and nothing was delivered");
}

std::size_t Client::fill_from_source(const BodySource& source, char* buf, std::size_t cap) {
    // A source may give a few bytes per call; the chunk is filled all the same.
    std::size_t got = 0;
    while (got < cap) {
        std::size_t n = read_source(source, buf + got, cap - got);
        if (n == 0) break;
        got += n;
    }
    return got;
}

// Octets to read at a time: `cap`, or for a message of known size under that
// (`size_hint`, 0: unknown), the message and one octet more (to see its end):
// growing a buffer fills it with zeros, and a 2 KB message must not cost
// clearing 256 KiB.
std::size_t Client::read_size(std::size_t cap, std::size_t size_hint) {
    return size_hint && size_hint < cap ? size_hint + 1 : cap;
}

void Client::send_bdat(const BodySource& source, std::size_t size_hint) {
    // Each chunk is read whole and one ahead, so that the last one goes as
    // BDAT LAST: a message that fits in one chunk goes with MAIL and RCPT in
    // one write.
    chunk_.resize(read_size(std::max<std::size_t>(options_.bdat_chunk, 1), size_hint));
    std::size_t n = fill_from_source(source, chunk_.data(), chunk_.size());
    if (n == 0) {
        // An empty message: DATA and its lone dot say it without ambiguity.
        session_.bdat_to_data();
        run();
        if (session_.want() == Session::Want::body) {
            session_.end_body();
            run();
        }
        return;
    }
    hold_chunk(n);
    send_chunks(source, n == chunk_.size());
    run();
}

// The chunk just read into chunk_ (n bytes) becomes held_ without a copy;
// chunk_ takes the other buffer, at the chunk size again.
void Client::hold_chunk(std::size_t n) {
    const std::size_t size = chunk_.size();
    held_.swap(chunk_);
    held_.resize(n);
    chunk_.resize(size);
}

// The message whose first chunk is in held_ (`more`: the source may have
// more), up to BDAT LAST, without waiting for the final replies.
void Client::send_chunks(const BodySource& source, bool more) {
    const std::size_t window = session_.capabilities().has("PIPELINING") ? options_.bdat_window : 0;
    while (more) {
        std::size_t n = fill_from_source(source, chunk_.data(), chunk_.size());
        if (n == 0) break;
        session_.bdat_chunk_swap(held_, false);  // no copy when the bytes need no change
        flush();
        while (session_.bdat_in_flight() > window) apply(read_reply());
        if (session_.bdat_failed()) break;
        hold_chunk(n);
        more = n == chunk_.size();
    }
    // LAST only for a message the server took whole: every earlier chunk answered.
    if (session_.bdat_in_flight() > 0) {
        flush();
        while (session_.bdat_in_flight() > 0) apply(read_reply());
    }
    if (!session_.bdat_failed()) session_.bdat_chunk_swap(held_, true);
}

void Client::send_body(const BodySource& source, std::size_t size_hint) {
    stream_body(source, size_hint);
    run();
}

// The message after DATA's 354, up to its final dot, without waiting for the
// final replies.
void Client::stream_body(const BodySource& source, std::size_t size_hint) {
    for (;;) {
        chunk_.resize(read_size(options_.write_chunk, size_hint));
        std::size_t n = read_source(source, chunk_.data(), chunk_.size());
        if (n == 0) break;
        chunk_.resize(n);
        session_.body_swap(chunk_);  // no copy when the bytes need no change
        if (session_.output_size() >= options_.write_chunk) flush();
    }
    session_.end_body();
}

// --- many messages -------------------------------------------------------------------------------

struct Client::Batch {
    struct Slot {
        std::size_t index = 0;
        std::uint64_t id = 0;   // the session's transaction; 0: refused before anything was sent
        std::uint64_t end = 0;  // queued_bytes() once the whole message was queued
        Status status = Status::ok;
        std::string why;
    };
    const BatchDone& done;
    std::deque<Slot> slots;   // messages given to the session or refused, not yet reported
    std::size_t reached = 0;  // messages that got a slot
    std::uint64_t acked = 0;  // queued_bytes() at the end of the last message answered
    bool stopped = false;

    void add(Slot slot) {
        reached = slot.index + 1;  // a message with a slot is reported from it, never as unreached
        slots.push_back(std::move(slot));
    }
};

namespace {

// Messages a broken session never reached: each gets the status, every recipient unknown.
void report_unreached(std::size_t from, std::size_t count, const BatchSource& next, const BatchDone& done,
                      const Error& e) {
    for (std::size_t k = from; k < count; ++k) {
        Transaction t;
        try {
            for (const auto& address : next(k).recipients) {
                RecipientResult r;
                r.address = address;
                r.outcome = Outcome::unknown;
                t.recipients.push_back(std::move(r));
            }
        } catch (const Error&) {
        }
        if (!done(k, t, e.status(), e.what())) return;
    }
}

}  // namespace

bool Client::deliver_batch(std::size_t count, const BatchSource& next, const BatchDone& done) {
    try {
        begin_command();
        if (supports("PIPELINING")) session_.batch_begin();
    } catch (const Error& e) {
        report_unreached(0, count, next, done, e);
        throw;
    }
    if (!session_.batching()) return deliver_each(count, next, done);

    Batch b{done, {}, 0, queued_bytes(), false};
    auto alive = [&] {
        if (!connected()) throw Error(Status::closed, "the server ended the session: " + last_.summary());
    };
    batch_settle_ = true;
    try {
        for (std::size_t i = 0; i < count && !b.stopped; ++i) {
            BatchMessage m;
            bool given = true;
            try {
                m = next(i);
            } catch (const Error& e) {
                b.add({i, 0, 0, e.status(), e.what()});
                given = false;
            }
            if (given) {
                // Room for it: replies first while the octets in flight would pass the bound.
                auto in_flight = [&] { return queued_bytes() - b.acked; };
                while (!b.stopped && session_.awaiting() > 0 && in_flight() > 0 &&
                       in_flight() + m.size_hint > options_.max_in_flight) {
                    flush();
                    apply(read_reply());
                    alive();
                    batch_report(b, Status::ok, {});
                }
                if (b.stopped) break;
                batch_message(b, i, m);
            }
            if (session_.output_size() >= options_.write_chunk) {
                batch_drain();  // so that the server, writing replies, never waits for us while we write
                flush();
            }
            batch_drain();
            alive();
            batch_report(b, Status::ok, {});
        }
        flush();
        while (session_.awaiting() > 0) {
            apply(read_reply());
            batch_report(b, Status::ok, {});
        }
        alive();
        batch_report(b, Status::ok, {});
    } catch (const Error& e) {
        batch_settle_ = false;
        if (connected()) close();  // hands every transaction in flight over, unfinished ones unknown
        batch_report(b, e.status(), e.what());
        session_.batch_end();
        if (!b.stopped) report_unreached(b.reached, count, next, done, e);
        throw;
    }
    batch_settle_ = false;
    session_.batch_end();
    return !b.stopped;
}

void Client::batch_message(Batch& b, std::size_t index, const BatchMessage& m) {
    const bool bdat = session_.would_bdat(m.mail_params, m.transfer);
    std::size_t n = 0;
    if (bdat) {
        // The first chunk is read before anything of the message is queued: a
        // source that fails there fails this message alone.
        chunk_.resize(read_size(std::max<std::size_t>(options_.bdat_chunk, 1), m.size_hint));
        std::string why;
        for (std::size_t got = 1; got && n < chunk_.size(); n += got) {
            if (!try_read_source(m.source, chunk_.data() + n, chunk_.size() - n, got, why)) {
                b.add({index, 0, 0, Status::aborted, why + "; nothing of the message was sent"});
                return;
            }
        }
    }
    std::uint64_t id = 0;
    try {
        id = session_.batch_deliver(m.from, m.recipients, m.mail_params, m.rcpt_params, m.force, m.transfer,
                                    m.canonical);
    } catch (const Error& e) {
        if (!connected()) throw;
        b.add({index, 0, 0, e.status(), e.what()});  // nothing was queued
        return;
    }
    b.add({index, id, 0, Status::ok, {}});
    if (n > 0) {
        hold_chunk(n);
        send_chunks(m.source, n == chunk_.size());
    } else {
        if (bdat) session_.bdat_to_data();  // an empty message goes by DATA
        flush();
        while (session_.awaiting_data_reply()) apply(read_reply());
        if (session_.phase() == Phase::body) stream_body(m.source, m.size_hint);  // its dot joins the next message's group
    }
    b.slots.back().end = queued_bytes();
}

// Replies already here, without waiting for more.
void Client::batch_drain() {
    while (session_.awaiting() > 0 && (rpos_ < rlen_ || transport_->readable())) apply(read_reply());
}

void Client::batch_report(Batch& b, Status ended, const std::string& why) {
    while (!b.slots.empty()) {
        Batch::Slot& s = b.slots.front();
        Transaction txn;
        Status status = s.status;
        std::string reason = s.why;
        if (s.id) {
            if (!session_.batch_has_finished()) break;
            txn = session_.batch_take().second;
            b.acked = std::max(b.acked, s.end);
            if (!txn.finished) {
                status = ended == Status::ok ? Status::closed : ended;
                reason = why.empty() ? "the session ended before every recipient had a verdict" : why;
            }
        }
        std::size_t index = s.index;
        b.slots.pop_front();
        if (!b.done(index, txn, status, reason)) b.stopped = true;
    }
}

// Without PIPELINING: one message after the other.
bool Client::deliver_each(std::size_t count, const BatchSource& next, const BatchDone& done) {
    for (std::size_t i = 0; i < count; ++i) {
        BatchMessage m;
        try {
            m = next(i);
        } catch (const Error& e) {
            if (!done(i, Transaction{}, e.status(), e.what())) return false;
            continue;
        }
        Status status = Status::ok;
        std::string why;
        try {
            deliver(m.from, m.recipients, m.source, m.mail_params, m.rcpt_params, m.force, m.transfer, m.canonical);
        } catch (const Error& e) {
            if (!connected()) {
                if (done(i, session_.transaction(), e.status(), e.what()))
                    report_unreached(i + 1, count, next, done, e);
                throw;
            }
            status = e.status();
            why = e.what();
        }
        if (!done(i, session_.transaction(), status, why)) return false;
    }
    return true;
}

}  // namespace lmtp
