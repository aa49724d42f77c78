#include "lmtp/client.hpp"

#include <algorithm>
#include <memory>

namespace lmtp {

namespace {

constexpr std::size_t kReadBuffer = 16 * 1024;

}  // namespace

Client::Client(ClientOptions options)
    : options_(std::move(options)), engine_(options_), session_(engine_.session()), rbuf_(kReadBuffer) {
    if (options_.connect_timeout.count() <= 0) options_.connect_timeout = options_.timeout;
    if (options_.write_chunk == 0) options_.write_chunk = 64 * 1024;
}

Client::~Client() {
    close();
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
    return transport_ && transport_->is_open() && engine_.is_open() && session_.phase() != Phase::closed;
}

std::string Client::domain() const {
    const Reply& b = session_.banner();
    if (b.lines.empty()) return {};
    std::string_view first = b.lines[0];
    while (!first.empty() && first.front() == ' ') first.remove_prefix(1);
    return std::string(first.substr(0, first.find(' ')));
}

// --- connection --------------------------------------------------------------------

void Client::close() noexcept {
    engine_.close();
    if (transport_) {
        transport_->close();
        transport_.reset();
    }
    raw_owed_ = 0;
    replay_.clear();
}

// The engine broke the connection: send its last word if the server still
// reads, then drop the transport.
void Client::broken() {
    if (transport_) {
        std::string words = engine_.take_last_words();
        if (!words.empty()) {
            try {
                transport_->write(words, Clock::now() + options_.timeout);
            } catch (const Error&) {
            }
        }
        transport_->close();
        transport_.reset();
    }
    raw_owed_ = 0;
    replay_.clear();
}

void Client::connect(const std::string& host, std::uint16_t port) {
    close();
    engine_.set_last_reply({});
    engine_.check_setup();  // a bad LHLO name or AUTH setting fails before connecting
    ConnectOptions co;
    co.timeout = options_.connect_timeout;
    co.local_address = options_.local_address;
    co.local_port = options_.local_port;
    std::unique_ptr<Transport> t = SocketTransport::connect(host, port, co);
    engine_.trace(TraceDir::info, "connected to " + t->peer());
    host_ = host;
    greet(std::move(t));
}

void Client::connect(std::unique_ptr<Transport> transport) {
    close();
    engine_.set_last_reply({});
    if (!transport || !transport->is_open()) throw Error(Status::invalid_argument, "no open transport");
    greet(std::move(transport));
}

void Client::greet(std::unique_ptr<Transport> transport) {
    transport_ = std::move(transport);
    try {
        engine_.open(Clock::now(), host_, transport_->is_local());
    } catch (const Error&) {
        transport_->close();
        transport_.reset();
        throw;
    }
    wait_job();  // connected means greeted: a failure closes, nothing is left half open
}

void Client::require_connection() const {
    if (!connected()) throw Error(Status::not_connected, "not connected");
}

// --- driving the engine ---------------------------------------------------------------

template <typename Done>
void Client::drive(Done&& done, bool flush_first) {
    int read_first = 0;  // reads made before the pending write
    try {
        for (;;) {
            // A call ends with its commands written, even when a server answered ahead of them
            // (a batch, which asks for its next message with output still queued, flushes at its end).
            if ((!flush_first || engine_.output_size() == 0) && done()) return;
            if (engine_.step(Clock::now())) continue;
            if (!engine_.is_open()) {  // QUIT answered, or the server said 421
                if (transport_) {
                    transport_->close();
                    transport_.reset();
                }
                return;
            }
            if (engine_.output_size() > 0) {
                // Before a large write, replies already here are read first (up to 64 reads),
                // so that the server, writing them, never waits for us while we write.
                if (read_first < 64 && engine_.output_size() >= options_.write_chunk &&
                    engine_.waiting_for_server() && transport_->readable()) {
                    read_in();
                    ++read_first;
                } else {
                    write_out();
                    read_first = 0;
                }
            } else if (engine_.waiting_for_server()) {
                read_in();
            } else {
                return;  // the engine waits for the caller
            }
        }
    } catch (const Error&) {
        if (!engine_.is_open()) broken();
        throw;
    }
}

void Client::run() {
    drive([] { return false; });
}

void Client::write_out() {
    // The pieces go out together, a BDAT chunk's payload without being copied
    // next to its command line.
    std::string_view pieces[3];
    std::size_t count = engine_.output_pieces(pieces);
    std::size_t size = 0;
    for (std::size_t i = 0; i < count; ++i) size += pieces[i].size();
    try {
        transport_->write_pieces(pieces, count, engine_.deadline().value_or(Clock::now() + options_.timeout));
    } catch (const Error& e) {
        engine_.discard_output();
        take_replies_left();
        engine_.io_failed(e, true);
    }
    engine_.consumed(size, Clock::now());
}

void Client::read_in() {
    std::size_t n = 0;
    for (;;) {
        try {
            n = transport_->read(rbuf_.data(), rbuf_.size(),
                                 engine_.deadline().value_or(Clock::now() + options_.timeout));
            break;
        } catch (const Error& e) {
            if (e.status() != Status::timeout) engine_.io_failed(e, false);
            // A reply already readable is read before the deadline is declared passed;
            // otherwise the transport's word that the deadline passed is taken.
            if (transport_->readable()) continue;
            engine_.on_time(std::max(Clock::now(), engine_.deadline().value_or(Clock::now())));
        }
    }
    engine_.feed(rbuf_.data(), n, Clock::now());
}

// A write failed (the connection closed, or the server stopped reading while
// pipelined commands or a body were still going out). The replies the server
// sent before are already here: take them, without waiting, so that the
// verdicts they carry (a refused RCPT, a final reply) are kept rather than
// turned into UNKNOWN.
void Client::take_replies_left() noexcept {
    try {
        for (;;) {
            while (session_.awaiting() > 0 && engine_.step(Clock::now())) {
            }
            if (!engine_.is_open() || session_.awaiting() == 0 || !transport_->readable()) break;
            std::size_t n = transport_->read(rbuf_.data(), rbuf_.size(), Clock::now());
            if (n == 0) break;
            engine_.feed(rbuf_.data(), n, Clock::now());
        }
    } catch (...) {
        // The end of what came (the reset itself, a reply cut short): the caller reports the write.
    }
}

void Client::settle_pending() {
    if (session_.awaiting() > 0) run();
    raw_owed_ = 0;
}

// What the server sent unasked (read without waiting) is judged by the engine:
// a 421 or a reply too many closes the connection.
void Client::take_unsolicited() {
    try {
        if (transport_ && session_.awaiting() == 0 && !engine_.input_ready() && transport_->readable()) {
            std::size_t n = 0;
            try {
                n = transport_->read(rbuf_.data(), 512, Clock::now() + options_.timeout);
            } catch (const Error& e) {
                engine_.io_failed(e, false);
            }
            engine_.feed(rbuf_.data(), n, Clock::now());
        }
        engine_.check_unsolicited();
    } catch (const Error&) {
        if (!engine_.is_open()) broken();
        throw;
    }
}

void Client::begin_command() {
    engine_.set_last_reply({});  // a call that gets no reply leaves code 0
    require_connection();
    settle_pending();
    require_connection();
    take_unsolicited();
    replay_.clear();
    engine_.set_last_reply({});
    engine_.begin_wait(Clock::now());
}

// The engine's job (the set-up, STARTTLS, AUTH) to its end; a job the server
// refused without closing throws its error.
void Client::wait_job() {
    drive([&] { return !engine_.busy(); });
    if (engine_.busy()) throw Error(Status::internal, "the engine stopped in the middle of a job");
    if (std::optional<Error> e = engine_.take_job_error()) throw *e;
}

template <typename Queue>
const Reply& Client::one(Queue&& queue) {
    begin_command();
    queue();
    run();
    return engine_.last_reply();
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
    return engine_.last_reply();
}

// --- the message, step by step -----------------------------------------------------------

const Reply& Client::data_start() {
    return one([&] { session_.data(); });
}

void Client::flush() {
    try {
        while (engine_.output_size() > 0) write_out();
    } catch (const Error&) {
        if (!engine_.is_open()) broken();
        throw;
    }
}

void Client::data_write(std::string_view chunk) {
    engine_.set_last_reply({});
    require_connection();
    if (session_.phase() != Phase::body) settle_pending();
    // However much comes at once (a whole message in one datasend), it goes
    // out in pieces of a few writes (256 KiB by default): the output stays
    // that small, and warm in the cache. The trace shows the chunk as given.
    const std::size_t step = 4 * options_.write_chunk;
    std::string_view piece = chunk.substr(0, step);
    session_.body_piece(piece);  // (checks that a message is under way)
    session_.trace_body(chunk);
    engine_.begin_wait(Clock::now());
    for (;;) {
        chunk.remove_prefix(piece.size());
        if (engine_.output_size() >= step) flush();
        if (chunk.empty()) break;
        piece = chunk.substr(0, step);
        session_.body_piece(piece);
    }
}

const Reply& Client::data_end() {
    engine_.set_last_reply({});
    require_connection();
    if (session_.phase() != Phase::body) settle_pending();
    session_.end_body();
    engine_.begin_wait(Clock::now());
    read_finals();
    return engine_.last_reply();
}

// Every final reply of the message just ended. On a break the replies that
// came keep their place: the replay is made from them before the error goes on.
void Client::read_finals() {
    try {
        run();
        if (!session_.transaction().finished) {  // a 421 among them: the server left
            std::string why = "the session ended before every recipient had its final reply";
            if (!engine_.last_reply().empty()) why += " (last reply: " + engine_.last_reply().summary() + ")";
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
    engine_.set_last_reply(t.recipients[t.accepted.front()].reply);
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
    return engine_.last_reply();
}

// --- TLS and AUTH ----------------------------------------------------------------------------

const Reply& Client::starttls() {
    begin_command();
    engine_.start_starttls(engine_.hello_name());
    wait_job();
    return engine_.last_reply();
}

const Reply& Client::auth(const std::string& user, const std::string& password, const std::string& mechanism,
                          bool allow_plaintext) {
    begin_command();
    engine_.start_auth(user, password, mechanism, allow_plaintext);
    wait_job();
    return engine_.last_reply();
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
    engine_.set_last_reply({});
    require_connection();
    if (session_.awaiting() == 0) take_unsolicited();
    replay_.clear();
    session_.raw(line);
    engine_.begin_wait(Clock::now());
    flush();
    ++raw_owed_;
}

const Reply& Client::response() {
    if (raw_owed_ > 0 && session_.awaiting() > 0) {
        --raw_owed_;
        const std::uint64_t before = engine_.replies_seen();
        engine_.begin_wait(Clock::now());
        drive([&] { return engine_.replies_seen() > before; });
        return engine_.last_reply();
    }
    raw_owed_ = 0;
    if (!replay_.empty()) {
        Owed owed = std::move(replay_.front());
        replay_.pop_front();
        engine_.set_last_reply(std::move(owed.reply));
        if (owed.ended != Status::ok) throw Error(owed.ended, owed.why);
        return engine_.last_reply();
    }
    if (!connected()) throw Error(Status::not_connected, "no reply is owed, and the connection is closed");
    throw Error(Status::bad_sequence, "no reply is owed: every reply has been read");
}

// --- a whole transaction ------------------------------------------------------------------------

namespace {

// A message's description, filled where it waits in the engine's queue.
void describe(BatchMessage& m, std::string_view from, const std::vector<std::string>& recipients,
              const MailParams& mail_params, const RcptParams& rcpt_params, bool force, Transfer transfer,
              bool canonical) {
    m.from.assign(from.data(), from.size());
    m.recipients = recipients;
    m.mail_params = mail_params;
    m.rcpt_params = rcpt_params;
    m.force = force;
    m.transfer = transfer;
    m.canonical = canonical;
}

}  // namespace

const Transaction& Client::deliver(std::string_view from, const std::vector<std::string>& recipients,
                                   std::string_view message, const MailParams& mail_params,
                                   const RcptParams& rcpt_params, bool force, Transfer transfer, bool canonical) {
    begin_one(recipients);
    BatchMessage& m = engine_.submit_single();
    describe(m, from, recipients, mail_params, rcpt_params, force, transfer, canonical);
    m.bytes = message;
    m.size_hint = message.size();
    return finish_one();
}

const Transaction& Client::deliver(std::string_view from, const std::vector<std::string>& recipients,
                                   const BodySource& source, const MailParams& mail_params,
                                   const RcptParams& rcpt_params, bool force, Transfer transfer, bool canonical,
                                   std::size_t size_hint) {
    begin_one(recipients);
    BatchMessage& m = engine_.submit_single();
    describe(m, from, recipients, mail_params, rcpt_params, force, transfer, canonical);
    m.source = source;
    m.size_hint = size_hint;
    return finish_one();
}

const Transaction& Client::deliver(BatchMessage message) {
    begin_one(message.recipients);
    engine_.submit(std::move(message), true);
    return finish_one();
}

// One message as a transaction of its own, its results in transaction(): the
// connection checked (none: the results are this call's, all unknown) ...
void Client::begin_one(const std::vector<std::string>& recipients) {
    try {
        begin_command();
    } catch (const Error& e) {
        if (e.status() == Status::not_connected || e.status() == Status::closed || e.status() == Status::io ||
            e.status() == Status::timeout || e.status() == Status::protocol)
            session_.abandon_delivery(recipients);
        throw;
    }
    engine_.forget_delivered();
}

// ... then, once it is submitted, driven to its verdicts.
const Transaction& Client::finish_one() {
    drive([&] { return engine_.has_delivered(); });
    if (!engine_.has_delivered()) throw Error(Status::internal, "the delivery stopped before its end");
    Delivered& d = engine_.next_delivered();
    if (d.status != Status::ok && engine_.is_open()) {  // refused before sending
        Error refused(d.status, std::move(d.why));
        engine_.drop_delivered();
        throw refused;
    }
    engine_.drop_delivered();
    run();  // what the session still settles after the verdicts (the NOOP after a BDAT LAST nobody took)
    const Transaction& t = session_.transaction();
    if (!t.finished) {
        std::string why = "the server ended the session before every recipient had a verdict";
        if (!engine_.last_reply().empty()) why += ": " + engine_.last_reply().summary();
        throw Error(Status::closed, why);
    }
    return t;
}

// --- many messages -------------------------------------------------------------------------------

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
        // A batch the session cannot begin fails whole, before any message is asked for.
        session_.check_batch();
    } catch (const Error& e) {
        report_unreached(0, count, next, done, e);
        throw;
    }
    engine_.forget_delivered();
    std::deque<std::size_t> order;  // the index of each message given to the engine, in order
    std::size_t given = 0;
    bool stopped = false;
    // Each report in order; after a stop, the messages already sent still get theirs.
    auto report = [&] {
        while (engine_.has_delivered()) {
            Delivered d = engine_.take_delivered();
            std::size_t index = order.front();
            order.pop_front();
            if (!done(index, d.txn, d.status, d.why) && !stopped) {
                stopped = true;
                for (std::size_t n = engine_.drop_waiting(); n > 0; --n) order.pop_back();
            }
        }
    };
    try {
        for (;;) {
            if (!stopped && given < count && engine_.waiting_count() == 0) {
                // The next message, given when the engine has none waiting: it
                // starts when the octets in flight leave room for it.
                std::size_t i = given++;
                order.push_back(i);
                try {
                    engine_.submit(next(i));
                } catch (const Error& e) {
                    engine_.submit_refused(e.status(), e.what());
                }
            }
            report();
            if (engine_.deliveries() == 0 && (stopped || given == count)) {
                run();  // the replies still owed (the RSET after the last BDAT LAST)
                break;
            }
            drive([&] { return engine_.has_delivered() || (!stopped && given < count && engine_.waiting_count() == 0); },
                  false);
            if (!engine_.is_open()) {
                report();
                throw Error(Status::closed, "the server ended the session: " + engine_.last_reply().summary());
            }
            if (!engine_.has_delivered() && engine_.waiting_count() > 0 && engine_.output_size() == 0 &&
                !engine_.waiting_for_server())
                throw Error(Status::internal, "the batch cannot go on: the next message cannot start");
        }
    } catch (const Error& e) {
        if (engine_.is_open()) {  // every message in flight ends unknown
            engine_.close(e.status(), e.what());
            broken();
        }
        report();
        if (!stopped) report_unreached(given, count, next, done, e);
        throw;
    }
    return !stopped;
}

}  // namespace lmtp
