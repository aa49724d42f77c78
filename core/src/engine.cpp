#include "lmtp/engine.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <unistd.h>

#include "lmtp/auth.hpp"

namespace lmtp {

namespace {

constexpr std::size_t kTlsRead = 16 * 1024;

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

// Octets to read at a time: `cap`, or for a message of known size under that
// (`size_hint`, 0: unknown), the message and one octet more (to see its end):
// growing a buffer fills it with zeros, and a 2 KB message must not cost
// clearing 256 KiB.
std::size_t read_size(std::size_t cap, std::size_t size_hint) {
    return size_hint && size_hint < cap ? size_hint + 1 : cap;
}

Transaction all_unknown(const std::vector<std::string>& recipients) {
    Transaction t;
    for (const auto& address : recipients) {
        RecipientResult r;
        r.address = address;
        r.outcome = Outcome::unknown;
        t.recipients.push_back(std::move(r));
    }
    return t;
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

Engine::Engine(const ClientOptions& options)
    : opt_(options), session_(options.limits), parser_(options.limits.reply) {
    session_.set_trace(opt_.trace);
    session_.set_strict_replies(opt_.strict_replies);
}

Engine::~Engine() {
    close();
}

void Engine::trace(TraceDir dir, std::string_view text) const noexcept {
    if (!opt_.trace) return;
    try {
        opt_.trace(dir, text);
    } catch (...) {
        // A throwing callback must not cost a reply that has already been read.
    }
}

std::string Engine::hello_name() const {
    std::string name = opt_.hello.empty() ? default_hello() : opt_.hello;
    cmd::lhlo(name, session_.limits().max_command_line);  // throws if it could not be sent
    return name;
}

// Why a wait timed out: writing, or waiting for what is awaited.
std::string Engine::timed_out(bool writing) const {
    return "timed out after " + std::to_string(opt_.timeout.count()) + " ms " +
           (writing ? "writing to the server (it stopped reading)" : "waiting for " + session_.awaited());
}

// --- the connection ---------------------------------------------------------------

std::string Engine::check_setup() const {
    std::string name = hello_name();  // a bad name fails before anything is sent
    if (opt_.send_hello && !opt_.auth_user.empty())  // and so do bad AUTH options
        check_auth_args(opt_.auth_user, opt_.auth_password, opt_.auth_mechanism);
    return name;
}

void Engine::open(Deadline now, const std::string& host, bool local) {
    // A connection still open ends; messages submitted before this one opened wait for it.
    if (open_ || ssl_) {
        std::deque<Pending> waiting;
        waiting.swap(waiting_);
        end_session(Status::closed, "the connection was closed");
        waiting_.swap(waiting);
    }
    last_ = Reply{};
    hello_ = check_setup();
    host_ = host;
    local_ = local;
    if (opt_.implicit_tls) tls_setup_.emplace(TlsSetup::make(opt_.tls, host_, local_));
    reset_input();
    failure_.reset();
    written_ = acked_ = 0;
    replies_ = 0;
    activity_ = now;
    session_.start();
    open_ = true;
    setup_ = true;
    if (opt_.implicit_tls) {
        step_ = Step::implicit_tls;
        begin_handshake();
    } else {
        step_ = Step::banner;
    }
}

void Engine::reset_input() {
    parser_.reset();
    parser_.set_limits(session_.limits().reply);
    in_.clear();
    in_pos_ = 0;
    eof_ = false;
}

void Engine::end_session(Status status, const std::string& why) {
    const bool was_open = open_;
    open_ = false;
    session_.close();  // every recipient without a verdict: unknown
    while (!slots_.empty()) {
        Slot s = std::move(slots_.front());
        slots_.pop_front();
        Delivered d{s.token, {}, s.status, s.why, end_written(s)};
        bool finished = false;
        if (s.id && session_.batch_has_finished()) {
            Transaction t = session_.batch_take().second;
            finished = s.single ? session_.transaction().finished : t.finished;
            if (!s.single) d.txn = std::move(t);  // (a single one's stay in the session)
        }
        if (s.id && !finished) {
            d.status = status;
            d.why = why;
        }
        delivered_.push_back(std::move(d));
    }
    for (Pending& p : waiting_) {
        if (p.refused)
            delivered_.push_back({p.token, {}, p.refused->status(), p.refused->what()});
        else
            delivered_.push_back({p.token, all_unknown(p.m.recipients), status, why});
    }
    waiting_.clear();
    active_.reset();
    aborting_.clear();
    if (session_.batching()) session_.batch_end();
    step_ = Step::none;
    setup_ = false;
    sasl_.reset();
    tls_setup_.reset();
    if (ssl_) SSL_free(ssl_);  // frees both memory BIOs
    if (tls_ctx_) SSL_CTX_free(static_cast<SSL_CTX*>(tls_ctx_));
    ssl_ = nullptr;
    tls_ctx_ = nullptr;
    rbio_ = wbio_ = nullptr;
    tls_ = Tls::off;
    cipher_.clear();
    cipher_pos_ = 0;
    if (was_open) reset_input();
}

void Engine::close(Status status, const std::string& why) noexcept {
    try {
        if (open_ || ssl_ || !waiting_.empty()) end_session(status, why);
    } catch (...) {
        // Only allocation can fail here; the state is closed either way.
    }
}

void Engine::fail(Status status, const std::string& why, int os_error) {
    // After this the session cannot go on: close, report, then throw.
    trace(TraceDir::info, "connection closed: " + why);
    end_session(status, why);
    failure_ = Error(status, why, os_error);
    throw *failure_;
}

// The connection is breaking: the replies already here are taken first (what is left to send
// never will be), so that the verdicts they carry are kept. Errors there end it the same way.
void Engine::take_buffered() noexcept {
    discard_output();
    try {
        while (open_ && session_.awaiting() > 0 && in_pos_ < in_.size() && apply_one(activity_)) {
        }
    } catch (...) {
    }
}

void Engine::io_failed(const Error& e, bool writing) {
    take_buffered();
    if (!open_ && failure_) throw *failure_;  // a reply taken there broke the session already
    std::string why = e.what();
    if (e.status() == Status::timeout)
        why = timed_out(writing);
    else if (!writing)
        why += " (waiting for " + session_.awaited() + ")";
    fail(e.status(), why, e.os_error());
}

void Engine::discard_output() noexcept {
    if (session_.output_size() > 0) session_.consumed(session_.output_size());
    cipher_.clear();
    cipher_pos_ = 0;
}

std::string Engine::take_last_words() {
    std::string w;
    w.swap(last_words_);
    return w;
}

// --- bytes ----------------------------------------------------------------------------

void Engine::feed(const char* data, std::size_t n, Deadline now) {
    (void)now;
    if (!open_) return;
    if (n == 0)
        eof_ = true;
    else if (tls_ != Tls::off)
        BIO_write(rbio_, data, static_cast<int>(n));
    else
        in_.append(data, n);
    if (tls_ != Tls::off) tls_pump();
}

std::size_t Engine::output_size() const {
    return cipher_.size() - cipher_pos_ + session_.output_size();
}

std::size_t Engine::output_pieces(std::string_view (&pieces)[3]) {
    if (tls_ == Tls::off) return session_.output_pieces(pieces);
    seal();
    if (cipher_pos_ == cipher_.size()) return 0;
    pieces[0] = std::string_view(cipher_).substr(cipher_pos_);
    return 1;
}

void Engine::consumed(std::size_t n, Deadline now) {
    if (n == 0) return;
    activity_ = now;
    if (tls_ == Tls::off) {
        written_ += n;
        session_.consumed(n);
        return;
    }
    cipher_pos_ += std::min(n, cipher_.size() - cipher_pos_);
    if (cipher_pos_ == cipher_.size()) {
        cipher_.clear();
        cipher_pos_ = 0;
    }
}

bool Engine::waiting_for_server() const {
    return open_ && (session_.awaiting() > 0 || tls_ == Tls::handshake);
}

bool Engine::input_ready() const {
    return in_pos_ < in_.size();
}

std::optional<Deadline> Engine::deadline() const {
    if (!open_ || (output_size() == 0 && !waiting_for_server())) return std::nullopt;
    return activity_ + opt_.timeout;
}

void Engine::on_time(Deadline now) {
    std::optional<Deadline> d = deadline();
    if (!d || now < *d) return;
    if (tls_ == Tls::handshake)
        fail(Status::timeout,
             "timed out after " + std::to_string(opt_.timeout.count()) + " ms during the TLS handshake", ETIMEDOUT);
    const bool writing = output_size() > 0;
    if (writing) {
        take_buffered();  // the verdicts that came while the write waited are kept
        if (!open_ && failure_) throw *failure_;
    }
    fail(Status::timeout, timed_out(writing), ETIMEDOUT);
}

void Engine::check_unsolicited() {
    if (!open_ || session_.awaiting() > 0 || tls_ == Tls::handshake) return;
    std::string extra;
    if (in_pos_ < in_.size())
        extra = in_.substr(in_pos_, 512);
    else if (parser_.in_reply())
        extra = "(part of a reply)";
    if (extra.empty()) {
        if (eof_) fail(Status::closed, "the server closed the connection");
        return;
    }
    if (extra.compare(0, 4, "421 ") == 0 || extra.compare(0, 4, "421-") == 0)
        fail(Status::closed, "the server is closing the connection: " + printable(extra.substr(0, extra.find('\r'))));
    fail(Status::protocol,
         "the server sent data that answers no command (a reply too many?): '" + printable(extra) + "'");
}

// --- TLS over memory buffers ----------------------------------------------------------

void Engine::begin_handshake() {
    auto [ctx, ssl] = tls_setup_->release();
    tls_setup_.reset();
    tls_ctx_ = ctx;
    ssl_ = ssl;
    rbio_ = SSL_get_rbio(ssl_);
    wbio_ = SSL_get_wbio(ssl_);
    tls_ = Tls::handshake;
    tls_pump();
}

void Engine::drain_cipher() {
    while (BIO_ctrl_pending(wbio_) > 0) {
        std::size_t have = cipher_.size();
        std::size_t want = BIO_ctrl_pending(wbio_);
        cipher_.resize(have + want);
        int n = BIO_read(wbio_, cipher_.data() + have, static_cast<int>(want));
        cipher_.resize(have + (n > 0 ? static_cast<std::size_t>(n) : 0));
        if (n <= 0) break;
    }
}

void Engine::tls_pump() {
    if (tls_ == Tls::handshake) {
        ERR_clear_error();
        int rc = SSL_do_handshake(ssl_);
        drain_cipher();
        if (rc != 1) {
            int err = SSL_get_error(ssl_, rc);
            if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
                ERR_clear_error();
                if (eof_) fail(Status::closed, "the server closed the connection during the TLS handshake");
                return;
            }
            Error e = tls_handshake_error(ssl_);
            fail(e.status(), e.what());
        }
        tls_ = Tls::on;
        trace(TraceDir::info, "TLS established: " + tls_description(ssl_));
        if (step_ == Step::implicit_tls) {
            step_ = Step::banner;
        } else if (step_ == Step::handshake) {
            // RFC 3207 4.2: LHLO again; what was offered before counts no more.
            session_.tls_started();
            session_.lhlo(hello_);
            step_ = Step::lhlo_tls;
        }
    }
    if (tls_ == Tls::on) tls_read();
}

void Engine::tls_read() {
    char buf[kTlsRead];
    for (;;) {
        ERR_clear_error();
        int n = SSL_read(ssl_, buf, sizeof buf);
        if (n > 0) {
            in_.append(buf, static_cast<std::size_t>(n));
            continue;
        }
        int err = SSL_get_error(ssl_, n);
        if (err == SSL_ERROR_ZERO_RETURN) {  // close_notify
            eof_ = true;
            break;
        }
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) break;
        fail(Status::tls, "TLS read from the server failed: " + tls_errors());
    }
    ERR_clear_error();
    drain_cipher();  // TLS may have something to say (a key update)
}

// The session's plaintext, encrypted into the ciphertext to send.
void Engine::seal() {
    if (tls_ != Tls::on || session_.output_size() == 0) return;
    std::string_view pieces[3];
    std::size_t count = session_.output_pieces(pieces);
    std::size_t total = 0;
    for (std::size_t i = 0; i < count; ++i) {
        std::string_view p = pieces[i];
        total += p.size();
        while (!p.empty()) {
            ERR_clear_error();
            int n = SSL_write(ssl_, p.data(), static_cast<int>(std::min<std::size_t>(p.size(), 1 << 30)));
            if (n <= 0) fail(Status::tls, "TLS write to the server failed: " + tls_errors());
            p.remove_prefix(static_cast<std::size_t>(n));
            drain_cipher();
        }
    }
    written_ += total;
    session_.consumed(total);
}

// --- replies --------------------------------------------------------------------------

bool Engine::step(Deadline now) {
    if (!open_) return false;
    // A reply is taken once the commands queued before it are written: one that came
    // earlier cannot answer them (what a lockstep server says is read in its turn).
    // At the end of the stream what is left to send never will be: the replies that came are
    // taken as they are.
    if (eof_ && output_size() > 0 && tls_ != Tls::handshake) discard_output();
    if (session_.awaiting() > 0 && output_size() == 0) {
        if (in_pos_ < in_.size() && apply_one(now)) return true;
        if (eof_ && tls_ != Tls::handshake)
            fail(Status::closed, std::string("the server closed the connection ") +
                                     (parser_.in_reply() ? "in the middle of " : "while we waited for ") +
                                     session_.awaited());
    }
    // Output appearing where there was none starts a wait (a slow message source is not the server's time).
    const bool had_output = output_size() > 0;
    bool progress = deliveries_step(now);
    seal();
    if (!had_output && output_size() > 0) activity_ = now;
    return progress;
}

bool Engine::apply_one(Deadline now) {
    std::size_t used = 0;
    auto result = parser_.feed(in_.data() + in_pos_, in_.size() - in_pos_, used);
    in_pos_ += used;
    if (in_pos_ == in_.size()) {
        in_.clear();
        in_pos_ = 0;
    } else if (in_pos_ > 64 * 1024) {
        in_.erase(0, in_pos_);
        in_pos_ = 0;
    }
    if (result == ReplyParser::Result::error)
        fail(Status::protocol,
             "invalid reply from the server (waiting for " + session_.awaited() + "): " + parser_.error());
    if (result != ReplyParser::Result::reply) return false;
    Reply r = parser_.take();
    if (opt_.trace)
        for (std::size_t i = 0; i < r.lines.size(); ++i) trace(TraceDir::receive, trace_line(r, i));
    last_ = std::move(r);  // (nothing assigns last_ while apply reads it)
    apply(last_, now);
    return true;
}

// `reply`: last_, the reply just taken.
void Engine::apply(const Reply& reply, Deadline now) {
    ++replies_;
    activity_ = now;
    try {
        session_.on_reply(reply);
    } catch (const Error& e) {
        // The session may leave a last word (a lone dot after a wrong 354),
        // for the driver to send if the server still reads.
        if (tls_ == Tls::off) last_words_ = std::string(session_.output());
        fail(e.status(), e.what(), e.os_error());
    }
    if (step_ != Step::none) on_job_reply(reply);
    if (session_.phase() == Phase::closed && open_) {  // QUIT answered, or 421
        std::string why = "the server ended the session";
        if (reply.code == 421) why += ": " + reply.summary();
        end_session(Status::closed, why);
    }
}

// --- jobs: the set-up, STARTTLS, AUTH -----------------------------------------------------

void Engine::job_done() {
    step_ = Step::none;
    setup_ = false;
    sasl_.reset();
}

void Engine::job_fatal(Status status, const std::string& why) {
    fail(status, why);
}

void Engine::job_failed(Status status, const std::string& why) {
    if (setup_) job_fatal(status, why);  // the connection is not what the options asked for
    job_error_ = Error(status, why);
    job_done();
}

std::optional<Error> Engine::take_job_error() {
    std::optional<Error> e;
    e.swap(job_error_);
    return e;
}

void Engine::on_job_reply(const Reply& reply) {
    switch (step_) {
        case Step::banner:
            if (!reply.completion()) job_fatal(Status::rejected, "the server refused the connection: " + reply.summary());
            if (!opt_.send_hello) return job_done();  // the caller sends LHLO when it wants
            session_.lhlo(hello_);
            step_ = Step::lhlo;
            return;
        case Step::lhlo:
            if (!reply.completion()) job_fatal(Status::rejected, "the server refused LHLO: " + reply.summary());
            return after_hello();
        case Step::starttls:
            starttls_reply_ = reply;
            if (session_.phase() != Phase::tls_handshake) {  // refused: still plain text
                tls_setup_.reset();
                if (!setup_) return job_done();
                if (opt_.starttls == StartTls::required)
                    job_fatal(Status::tls, "TLS is required but the server refused STARTTLS: " + reply.summary());
                return maybe_auth();  // opportunistic: the session goes on in plain text
            }
            // Nothing may follow the 220 in plain text: it would be read as if it came
            // over TLS (RFC 3207 5, the STARTTLS command injection).
            if (in_pos_ < in_.size() || parser_.in_reply())
                fail(Status::protocol, "the server sent more after its 220 to STARTTLS, before TLS began; closing");
            step_ = Step::handshake;
            return begin_handshake();
        case Step::lhlo_tls:
            if (!setup_) return job_done();
            if (!reply.completion())
                job_fatal(Status::rejected, "the server refused LHLO after STARTTLS: " + reply.summary());
            return maybe_auth();
        case Step::auth: return auth_reply(reply);
        case Step::auth_cancel: return job_failed(Status::auth, auth_abandoned_);
        default: return;
    }
}

void Engine::after_hello() {
    if (opt_.starttls != StartTls::off && tls_ != Tls::on) {
        if (session_.supports("STARTTLS")) {
            try {
                start_starttls(hello_);
            } catch (const Error& e) {
                job_fatal(e.status(), e.what());
            }
            setup_ = true;
            return;
        }
        if (opt_.starttls == StartTls::required)
            job_fatal(Status::not_advertised, "TLS is required but the server does not offer STARTTLS");
    }
    maybe_auth();
}

void Engine::maybe_auth() {
    if (!opt_.auth_user.empty()) {
        try {
            start_auth(opt_.auth_user, opt_.auth_password, opt_.auth_mechanism, opt_.auth_allow_plaintext);
        } catch (const Error& e) {
            job_fatal(e.status(), e.what());
        }
        setup_ = true;
        return;
    }
    job_done();
}

void Engine::start_starttls(const std::string& hello) {
    // The settings are checked before STARTTLS is sent: a bad one leaves the
    // session as it was, in plain text, rather than broken after the 220.
    if (tls_ == Tls::on) throw Error(Status::bad_sequence, "STARTTLS: TLS is already active");
    const Phase phase = session_.phase();
    if (phase == Phase::connected || phase == Phase::ready || phase == Phase::transaction)
        tls_setup_.emplace(TlsSetup::make(opt_.tls, host_, local_));
    session_.starttls();
    hello_ = hello;
    setup_ = false;
    step_ = Step::starttls;
}

void Engine::start_auth(const std::string& user, const std::string& password, const std::string& mechanism,
                        bool allow_plaintext) {
    check_auth_args(user, password, mechanism);
    if (!session_.supports("AUTH")) throw Error(Status::not_advertised, "the server does not offer AUTH");
    const auto& offered = session_.capabilities().auth_mechanisms();
    std::string mech;
    if (mechanism.empty()) {
        mech = pick_mechanism(offered, tls_ == Tls::on && !opt_.tls.cert_file.empty());
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
    if (sasl->reveals_password() && tls_ != Tls::on && !local_ && !allow_plaintext)
        throw Error(Status::insecure, "refusing to send a password with AUTH " + mech +
                                          " over unencrypted TCP: use STARTTLS, a unix socket, or allow it explicitly");
    std::optional<std::string> initial = sasl->initial();
    initial_sent_ = session_.auth(mech, initial ? std::optional<std::string>(base64_encode(*initial)) : std::nullopt);
    initial_ = std::move(initial);
    sasl_ = std::move(sasl);
    mech_ = mech;
    setup_ = false;
    step_ = Step::auth;
}

void Engine::auth_reply(const Reply& reply) {
    if (reply.code == 334) {
        std::string answer;
        try {
            if (initial_ && !initial_sent_) {
                answer = *initial_;  // it did not fit on the AUTH line
                initial_sent_ = true;
            } else {
                answer = sasl_->step(base64_decode(reply.lines.empty() ? std::string() : reply.lines[0]));
            }
        } catch (const Error& e) {
            // Cancel the exchange (RFC 4954: "*"), read the server's 501, then report.
            session_.auth_response("*");
            auth_abandoned_ = "AUTH " + mech_ + " abandoned: " + e.what();
            step_ = Step::auth_cancel;
            return;
        }
        session_.auth_response(base64_encode(answer));
        return;
    }
    if (reply.code == 235) {
        if (!sasl_->complete())
            fail(Status::auth, "the server accepted AUTH " + mech_ + " without proving it knows the password");
        trace(TraceDir::info, "authenticated with " + mech_);
        return job_done();
    }
    job_failed(Status::auth, why_auth_failed(reply, mech_));
}

// --- deliveries ---------------------------------------------------------------------------

std::uint64_t Engine::submit(BatchMessage&& message, bool single) {
    const std::uint64_t token = next_token_++;
    waiting_.emplace_back(token, std::move(message), single);
    return token;
}

BatchMessage& Engine::submit_single() {
    return waiting_.emplace_back(next_token_++, BatchMessage{}, true).m;
}

std::uint64_t Engine::submit_refused(Status status, std::string why) {
    const std::uint64_t token = next_token_++;
    waiting_.emplace_back(token, BatchMessage{}, false).refused.emplace(status, std::move(why));
    return token;
}

std::size_t Engine::drop_waiting() {
    std::size_t n = waiting_.size();
    waiting_.clear();
    return n;
}

bool Engine::withdraw(std::uint64_t token) {
    for (auto it = waiting_.begin(); it != waiting_.end(); ++it)
        if (it->token == token) {
            waiting_.erase(it);
            return true;
        }
    return false;
}

Delivered Engine::take_delivered() {
    Delivered d = std::move(delivered_.front());
    delivered_.pop_front();
    return d;
}

void Engine::drop_delivered() {
    delivered_.pop_front();
}

bool Engine::deliveries_step(Deadline now) {
    if (step_ != Step::none) return false;  // the set-up or a job first
    if (!aborting_.empty()) {
        // A source failed in the middle of a message: without its end the server
        // must not deliver it, and closing is the only way to abandon it. The
        // earlier messages are whole on the wire: their verdicts come first.
        if (output_size() == 0 && !session_.batch_older_pending())
            fail(Status::aborted, aborting_ + "; the connection was closed and nothing was delivered");
        return false;
    }
    const std::size_t reported = delivered_.size();
    if (!slots_.empty()) report();
    if (session_.batching() && slots_.empty() && !active_ && session_.awaiting() == 0) session_.batch_end();
    if (delivered_.size() != reported) return true;  // the driver hears of them before anything more starts
    bool progress = false;
    if (active_) {
        progress |= push_body();
    } else if (!waiting_.empty() && may_start()) {
        if (session_.awaiting() == 0 && output_size() == 0) activity_ = now;  // a wait begins
        start_next();
        progress = true;
    }
    return progress;
}

bool Engine::may_start() const {
    if (waiting_.front().refused) return true;  // nothing to send: reported in its turn
    // (A phase that allows no delivery, as a message of the caller's own under
    // way, is the session's to refuse: the message fails alone.)
    const Pending& p = waiting_.front();
    if (p.single || !session_.capabilities().offered().pipelining || !session_.batching())
        // One transaction of its own, or the first of a batch: once every earlier reply is in.
        return slots_.empty() && session_.awaiting() == 0;
    // Pipelined behind the others: while the octets in flight allow it, and
    // once the output has drained (so that the server, writing replies,
    // never waits for us while we write).
    if (output_size() >= opt_.write_chunk) return false;
    const std::uint64_t in_flight = queued_bytes() - acked_;
    return session_.awaiting() == 0 || in_flight == 0 || in_flight + p.m.size_hint <= opt_.max_in_flight;
}

void Engine::start_next() {
    // The message is read where it waits, and leaves the queue when this returns (or
    // before the connection fails, which reports what still waits).
    struct Taken {
        std::deque<Pending>& waiting;
        bool held = true;
        void release() {
            if (held) waiting.pop_front();
            held = false;
        }
        ~Taken() { release(); }
    } taken{waiting_};
    Pending& p = waiting_.front();
    BatchMessage& m = p.m;
    // Refused before anything of it was queued: reported in its turn, without results.
    auto refuse = [&](Status status, const std::string& why) {
        slots_.push_back({p.token, 0, p.single, 0, status, why});
    };
    if (p.refused) return refuse(p.refused->status(), p.refused->what());
    // SIZE (RFC 1870) from the octets that will go on the wire, when the server offers it and the
    // caller declared none: a message in memory (or one whose canonical_size the caller counted)
    // is declared, one from a source is not. A message over the server's limit goes undeclared,
    // so that the server's own refusal, one per recipient, is its verdict (what the C API has
    // always given); with ClientOptions::refuse_over_size it is declared and so refused here,
    // before anything of it is sent (Status::too_big, as for a SIZE the caller declared).
    if ((m.bytes || m.canonical_size) && !m.mail_params.size && session_.capabilities().offered().size) {
        std::uint64_t size = 0;
        if (m.canonical_size) {
            size = *m.canonical_size;
        } else if (m.canonical) {
            size = m.bytes->size();
        } else {
            size = canonical_length(*m.bytes);
            // Not one octet added: every line already ends with CRLF, the last one too. By BDAT
            // the bytes then go as they are, without the encoder scanning them a second time.
            if (size == m.bytes->size()) m.canonical = true;
        }
        const std::uint64_t limit = session_.capabilities().size_limit();
        if (opt_.refuse_over_size || !limit || size <= limit) m.mail_params.size = size;
    }
    // Every delivery is a transaction of a batch; a single one is a batch of one.
    Active a;
    a.size_hint = m.size_hint;
    a.source = std::move(m.source);
    a.bytes = m.bytes.value_or(std::string_view());
    std::size_t n = 0;
    std::uint64_t id = 0;
    // A delivery the session cannot take queues nothing; a single one's results then say
    // why: none (refused here), or all unknown when there is no connection to deliver over.
    auto refused = [&](const Error& e) {
        const Status s = e.status();
        if (p.single && (s == Status::not_connected || s == Status::closed || s == Status::io ||
                         s == Status::timeout || s == Status::protocol))
            session_.abandon_delivery(m.recipients);
        refuse(s, e.what());
    };
    bool bdat = false;
    try {
        if (!session_.batching()) session_.batch_begin(p.single);
        bdat = session_.would_bdat(m.mail_params, m.transfer);
    } catch (const Error& e) {
        return refused(e);
    }
    if (bdat) {
        // The first chunk is read before anything of the message is queued: a source that
        // fails there fails this message alone, nothing of it sent. Each chunk is read whole
        // and one ahead, so that the last one goes as BDAT LAST.
        chunk_.resize(read_size(std::max<std::size_t>(opt_.bdat_chunk, 1), m.size_hint));
        std::string why;
        if (!fill(a, n, why)) {
            if (p.single) {  // a single delivery's failing source closes the connection, as documented
                session_.abandon_delivery(m.recipients);
                taken.release();
                fail(Status::aborted, why + "; the connection was closed and nothing was delivered");
            }
            return refuse(Status::aborted, why + "; nothing of the message was sent");
        }
    }
    try {
        id = session_.batch_deliver(m.from, m.recipients, m.mail_params, m.rcpt_params, m.force, m.transfer,
                                    m.canonical);
    } catch (const Error& e) {
        return refused(e);
    }
    if (n > 0) {
        hold_chunk(n);
        a.bdat = true;
        a.more = n == chunk_.size();
    } else if (bdat) {
        session_.bdat_to_data();  // an empty message: DATA and its lone dot say it without ambiguity
        a.empty = true;
    }
    slots_.push_back({p.token, id, p.single, 0, Status::ok, {}});
    active_.emplace(std::move(a));
}

bool Engine::read_source(Active& a, char* buf, std::size_t cap, std::size_t& n, std::string& why) {
    n = 0;
    if (!a.source) {  // a message in memory
        n = std::min(cap, a.bytes.size());
        if (n) std::memcpy(buf, a.bytes.data(), n);
        a.bytes.remove_prefix(n);
        return true;
    }
    try {
        n = a.source(buf, cap);
        if (n > cap) why = "the message source returned more bytes than asked for";
    } catch (const std::exception& e) {
        why = std::string("the message source failed: ") + e.what();
    } catch (...) {
        why = "the message source failed";
    }
    return why.empty();
}

// Fills chunk_ (at its size) from the message; a source may give a few bytes
// per call. `n`: the bytes read. False when the source failed (`why`).
bool Engine::fill(Active& a, std::size_t& n, std::string& why) {
    n = 0;
    std::size_t got = 1;
    while (got && n < chunk_.size()) {
        if (!read_source(a, chunk_.data() + n, chunk_.size() - n, got, why)) return false;
        n += got;
    }
    return true;
}

// The next chunk of the active message into chunk_ (`n` bytes); false when
// its source failed (the message is then being abandoned).
bool Engine::next_chunk(Active& a, std::size_t& n) {
    std::string why;
    if (fill(a, n, why)) return true;
    abort_message(why);
    return false;
}

// The chunk just read into chunk_ (n bytes) becomes held_ without a copy;
// chunk_ takes the other buffer, at the chunk size again.
void Engine::hold_chunk(std::size_t n) {
    const std::size_t size = chunk_.size();
    held_.swap(chunk_);
    held_.resize(n);
    chunk_.resize(size);
}

void Engine::abort_message(const std::string& why) {
    active_.reset();
    // Alone (a single delivery, or without PIPELINING one at a time) nothing else is owed a verdict.
    if (slots_.empty() || slots_.back().single || !session_.capabilities().offered().pipelining)
        fail(Status::aborted, why + "; the connection was closed and nothing was delivered");
    aborting_ = why;
}

void Engine::message_queued() {
    active_.reset();
    if (!slots_.empty()) slots_.back().end = queued_bytes();
}

bool Engine::push_body() {
    Active& a = *active_;
    if (session_.lockstep_pending()) return false;  // without PIPELINING: the replies to MAIL and RCPT first
    return a.bdat ? push_bdat(a) : push_data(a);
}

// The message after DATA's 354, up to its final dot, without waiting for the
// final replies.
bool Engine::push_data(Active& a) {
    if (session_.phase() != Phase::body) {
        if (session_.awaiting_data_reply()) return false;  // the 354 first
        message_queued();                                  // DATA refused: the message ends here
        return true;
    }
    if (a.empty) {
        session_.end_body();
        message_queued();
        return true;
    }
    if (output_size() >= opt_.write_chunk) return false;
    chunk_.resize(read_size(opt_.write_chunk, a.size_hint));
    std::size_t n = 0;
    std::string why;
    if (!read_source(a, chunk_.data(), chunk_.size(), n, why)) {
        abort_message(why);
        return true;
    }
    if (n == 0) {
        session_.end_body();
        message_queued();
        return true;
    }
    chunk_.resize(n);
    session_.body_swap(chunk_);  // no copy when the bytes need no change
    return true;
}

// The message whose next chunk is in held_, up to BDAT LAST, without waiting
// for the final replies. Chunks go ahead of their replies up to the window.
bool Engine::push_bdat(Active& a) {
    // A chunk was refused: no more, never the LAST one. Or without PIPELINING nobody
    // was accepted (or MAIL was refused): the message ends before its body.
    if (session_.bdat_failed() || !session_.bdat_mode()) {
        message_queued();
        return true;
    }
    const std::size_t window = session_.capabilities().offered().pipelining ? opt_.bdat_window : 0;
    if (a.more) {
        // Each chunk after the first waits for the one before to be written:
        // one write each, the chunk never copied next to another.
        if (session_.bdat_in_flight() > window || (a.chunks > 0 && output_size() > 0)) return false;
        std::size_t n = 0;
        if (!next_chunk(a, n)) return true;
        if (n == 0) {
            a.more = false;
            return true;
        }
        session_.bdat_chunk_swap(held_, false);  // no copy when the bytes need no change
        ++a.chunks;
        hold_chunk(n);
        a.more = n == chunk_.size();
        return true;
    }
    // LAST only for a message the server took whole: every earlier chunk answered.
    if (session_.bdat_in_flight() > 0) return false;
    session_.bdat_chunk_swap(held_, true);
    message_queued();
    return true;
}

void Engine::report() {
    while (!slots_.empty()) {
        Slot& s = slots_.front();
        if (s.id && !session_.batch_has_finished()) break;
        Delivered& d = delivered_.emplace_back();
        d.token = s.token;
        d.status = s.status;
        d.why = std::move(s.why);
        d.end_sent = end_written(s);
        if (s.id) {
            if (s.single)
                session_.batch_skip();  // (a single one's results stay in the session)
            else
                d.txn = session_.batch_take().second;
            acked_ = std::max(acked_, s.end);
        }
        slots_.pop_front();
    }
}

}  // namespace lmtp
