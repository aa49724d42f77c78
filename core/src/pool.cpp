#include "lmtp/pool.hpp"

#include <poll.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <set>

namespace lmtp {

namespace {

// Errors that end a connection (its recipients without a verdict are unknown),
// as opposed to a message refused before anything of it was sent.
bool connection_error(Status s) {
    switch (s) {
        case Status::closed:
        case Status::io:
        case Status::timeout:
        case Status::protocol:
        case Status::tls:
        case Status::certificate:
        case Status::not_connected:
        case Status::aborted: return true;
        default: return false;
    }
}

bool has_verdict(const RecipientResult& r) {
    return r.outcome != Outcome::pending;
}

}  // namespace

std::string mailbox_key(const std::string& address) {
    std::string key = address;
    std::size_t at = key.rfind('@');
    if (at == std::string::npos) return key;
    for (std::size_t i = at + 1; i < key.size(); ++i)
        key[i] = static_cast<char>(std::tolower(static_cast<unsigned char>(key[i])));
    return key;
}

// ---- the planner ---------------------------------------------------------------------------

PoolPlanner::PoolPlanner(PoolOptions options) : opt_(std::move(options)) {
    if (opt_.connections == 0) opt_.connections = 1;
    if (opt_.retry_delay.count() < 0) opt_.retry_delay = std::chrono::milliseconds(0);
    if (opt_.retry_delay_max < opt_.retry_delay) opt_.retry_delay_max = opt_.retry_delay;
    if (!opt_.connect_attempts) opt_.connect_attempts = opt_.retries + 1;
    if (*opt_.connect_attempts == 0) opt_.connect_attempts = 1;
}

std::size_t PoolPlanner::add_server() {
    servers_.push_back({});
    return servers_.size() - 1;
}

std::size_t PoolPlanner::add(std::vector<std::string> recipients, bool resendable, Deadline now) {
    Message m;
    m.resendable = resendable;
    m.not_before = now;
    m.rcpts.reserve(recipients.size());
    for (auto& a : recipients) {
        Rcpt r;
        r.key = mailbox_key(a);
        r.result.address = a;
        r.address = std::move(a);
        m.rcpts.push_back(std::move(r));
    }
    const std::size_t id = next_id_++;
    messages_.emplace(id, std::move(m));
    return id;
}

std::chrono::milliseconds PoolPlanner::doubled(unsigned round) const {
    // retry_delay * 2^(round-1), capped; round >= 1.
    std::chrono::milliseconds d = opt_.retry_delay;
    for (unsigned i = 1; i < round && d < opt_.retry_delay_max; ++i) d *= 2;
    return std::min(d, opt_.retry_delay_max);
}

bool PoolPlanner::mailbox_free(const std::string& key) const {
    if (opt_.mailbox_concurrency == 0) return true;
    auto it = mailboxes_.find(key);
    return it == mailboxes_.end() || it->second < opt_.mailbox_concurrency;
}

// The recipients of `m` that may go now: waiting, and with a free mailbox.
// A stream goes once, so with all of its recipients or not at all.
std::vector<std::size_t> PoolPlanner::sendable(const Message& m) const {
    std::vector<std::size_t> out;
    for (std::size_t i = 0; i < m.rcpts.size(); ++i) {
        const Rcpt& r = m.rcpts[i];
        if (r.final || r.in_flight) continue;
        if (mailbox_free(r.key))
            out.push_back(i);
        else if (!m.resendable)
            return {};
    }
    return out;
}

bool PoolPlanner::waiting(const Message& m, Deadline now) const {
    return !m.conn && m.not_before <= now && !sendable(m).empty();
}

std::size_t PoolPlanner::eligible_count(Deadline now) const {
    std::size_t n = 0;
    for (const auto& [id, m] : messages_)
        if (waiting(m, now)) ++n;
    return n;
}

std::size_t PoolPlanner::busy_count() const {
    std::size_t n = 0;
    for (const auto& [id, c] : conns_)
        if (c.state == ConnState::busy) ++n;
    return n;
}

// The server next_open would connect to now, if it would.
std::optional<std::size_t> PoolPlanner::server_to_open(Deadline now) const {
    if (servers_.empty() || conns_.size() >= opt_.connections) return std::nullopt;
    std::size_t idle = 0, connecting = 0;
    for (const auto& [id, c] : conns_) {
        if (c.state == ConnState::idle) ++idle;
        if (c.state == ConnState::connecting) ++connecting;
    }
    // Until a connection proved the servers answer, one connect at a time.
    if (!proven_ && connecting > 0) return std::nullopt;
    if (eligible_count(now) <= idle + connecting) return std::nullopt;
    for (std::size_t s = 0; s < servers_.size(); ++s)
        if (servers_[s].skip_until <= now) return s;
    return std::nullopt;
}

std::optional<PoolPlanner::Open> PoolPlanner::next_open(Deadline now) {
    const std::optional<std::size_t> s = server_to_open(now);
    if (!s) return std::nullopt;
    Conn c;
    c.server = *s;
    c.epoch = epoch_;
    ConnId id = next_conn_++;
    conns_.emplace(id, c);
    return Open{id, *s};
}

std::optional<PoolPlanner::Send> PoolPlanner::next_send(Deadline now) {
    for (auto& [cid, c] : conns_) {
        if (c.state != ConnState::idle) continue;
        if (reuse_over(c, now)) continue;  // next_quit retires it
        for (auto& [mid, m] : messages_) {
            if (m.conn || m.not_before > now) continue;
            std::vector<std::size_t> rcpts = sendable(m);
            if (rcpts.empty()) continue;
            std::set<std::string> keys;
            for (std::size_t i : rcpts) {
                Rcpt& r = m.rcpts[i];
                r.in_flight = true;
                ++r.attempts;
                keys.insert(r.key);
            }
            for (const auto& k : keys) ++mailboxes_[k];
            m.conn = cid;
            m.sent_once = true;
            c.state = ConnState::busy;
            c.message = mid;
            c.sent = rcpts;
            ++c.messages;
            return Send{cid, mid, std::move(rcpts)};
        }
    }
    return std::nullopt;
}

bool PoolPlanner::reuse_over(const Conn& c, Deadline now) const {
    if (opt_.max_messages_per_connection && c.messages >= opt_.max_messages_per_connection) return true;
    if (opt_.max_connection_age.count() > 0 && now - c.opened >= opt_.max_connection_age) return true;
    return false;
}

// An idle connection next_quit ends: idle too long, or its reuse limits reached.
bool PoolPlanner::retiring(const Conn& c, Deadline now) const {
    if (c.state != ConnState::idle) return false;
    const bool idle_over = opt_.idle_timeout.count() > 0 && now - c.idle_since >= opt_.idle_timeout;
    return idle_over || reuse_over(c, now);
}

std::optional<PoolPlanner::ConnId> PoolPlanner::next_quit(Deadline now) {
    for (auto& [cid, c] : conns_) {
        if (retiring(c, now)) {
            c.state = ConnState::quitting;
            return cid;
        }
    }
    return std::nullopt;
}

bool PoolPlanner::due(Deadline now) const {
    bool idle = false;
    for (const auto& [id, c] : conns_) {
        if (retiring(c, now)) return true;  // next_quit
        idle = idle || c.state == ConnState::idle;
    }
    if (idle && eligible_count(now) > 0) return true;  // next_send (no idle connection is retiring)
    return server_to_open(now).has_value();             // next_open
}

std::optional<Deadline> PoolPlanner::wake(Deadline now) const {
    if (due(now)) return now;
    std::optional<Deadline> w;
    auto consider = [&](Deadline t) {
        if (t > now && (!w || t < *w)) w = t;
    };
    bool wants_connection = false;
    for (const auto& [id, m] : messages_) {
        if (m.conn) continue;
        if (m.not_before > now) {
            consider(m.not_before);
        } else if (!sendable(m).empty()) {
            wants_connection = true;
        }
    }
    if (wants_connection && conns_.size() < opt_.connections)
        for (const Server& s : servers_) consider(s.skip_until);
    for (const auto& [id, c] : conns_) {
        if (c.state != ConnState::idle) continue;
        if (opt_.idle_timeout.count() > 0) consider(c.idle_since + opt_.idle_timeout);
        if (opt_.max_connection_age.count() > 0) consider(c.opened + opt_.max_connection_age);
    }
    return w;
}

void PoolPlanner::opened(ConnId conn, Deadline now) {
    auto it = conns_.find(conn);
    if (it == conns_.end() || it->second.state != ConnState::connecting) return;
    Conn& c = it->second;
    c.state = ConnState::idle;
    c.opened = now;
    c.idle_since = now;
    proven_ = true;
    rounds_ = 0;
    servers_[c.server].skip_until = Deadline{};
    for (Server& s : servers_) s.failed = false;
}

// A message's recipients in flight are no longer: their mailboxes free again.
void PoolPlanner::release(Message& m) {
    std::set<std::string> keys;
    for (Rcpt& r : m.rcpts) {
        if (!r.in_flight) continue;
        r.in_flight = false;
        keys.insert(r.key);
    }
    for (const auto& k : keys) {
        auto it = mailboxes_.find(k);
        if (it != mailboxes_.end() && --it->second == 0) mailboxes_.erase(it);
    }
    m.conn.reset();
}

void PoolPlanner::finished(ConnId conn, const Delivered& d, Deadline now) {
    auto cit = conns_.find(conn);
    if (cit == conns_.end() || !cit->second.message) return;
    Conn& c = cit->second;
    const std::size_t id = *c.message;
    const std::vector<std::size_t> sent = std::move(c.sent);
    c.message.reset();
    c.sent.clear();
    if (c.state == ConnState::busy) {
        c.state = ConnState::idle;
        c.idle_since = now;
    }
    auto mit = messages_.find(id);
    if (mit == messages_.end()) return;
    Message& m = mit->second;
    release(m);

    const bool refused_before = !connection_error(d.status) && d.status != Status::ok && d.txn.recipients.empty();
    if (refused_before) {
        // Refused before anything of it was sent (bad input, too big, an extension not
        // offered): this try ends the message.
        for (std::size_t i : sent) m.rcpts[i].final = true;
        bool all = true;
        for (const Rcpt& r : m.rcpts) all = all && has_verdict(r.result);
        if (!m.answered || !all) {
            report(id, m, d.status, d.why);
        } else {
            report(id, m, Status::ok, {});
        }
        messages_.erase(mit);
        return;
    }

    m.answered = true;
    bool any_retry = false, broke_before_end = false;
    for (std::size_t j = 0; j < sent.size(); ++j) {
        Rcpt& r = m.rcpts[sent[j]];
        RecipientResult got;
        if (j < d.txn.recipients.size()) {
            got = d.txn.recipients[j];
        } else {
            got.address = r.address;
            got.outcome = Outcome::unknown;
        }
        got.address = r.address;
        if (got.outcome == Outcome::pending) got.outcome = Outcome::unknown;
        switch (got.outcome) {
            case Outcome::ok:
            case Outcome::permfail:
                r.result = got;
                r.final = true;
                break;
            case Outcome::tempfail:
                r.result = got;
                if (m.resendable && r.resends < opt_.retries) {
                    ++r.resends;
                    any_retry = true;
                } else {
                    r.final = true;
                }
                break;
            case Outcome::unknown:
            case Outcome::pending:
                if (!d.end_sent) {
                    // The server cannot have the message: it goes again (a stream cannot).
                    if (m.resendable) {
                        broke_before_end = true;  // (a verdict from an earlier try stays)
                    } else {
                        r.result = got;
                        r.final = true;
                    }
                } else if (opt_.resend_unknown && m.resendable && r.resends < opt_.retries) {
                    r.result = got;
                    ++r.resends;
                    any_retry = true;
                } else {
                    r.result = got;
                    r.final = true;
                }
                break;
        }
    }
    if (d.status != Status::ok) {
        m.last_status = d.status;
        m.last_why = d.why;
    }
    if (broke_before_end) {
        ++m.breaks;
        if (m.breaks > opt_.retries) {
            // A poison message: its recipients that never got past the break are unknown.
            for (std::size_t i : sent) {
                Rcpt& r = m.rcpts[i];
                if (r.final || has_verdict(r.result)) continue;
                r.result.outcome = Outcome::unknown;
                r.final = true;
            }
            for (Rcpt& r : m.rcpts) r.final = true;  // (4xx ones waiting: their last verdict)
            report(id, m, d.status, d.why);
            messages_.erase(mit);
            return;
        }
    } else {
        m.breaks = 0;
    }
    if (any_retry) {
        ++m.retry_round;
        m.not_before = now + doubled(m.retry_round);
    } else {
        m.not_before = now;
    }
    settle(id, m, now);
}

// Reports `m` when every recipient has its final verdict.
void PoolPlanner::settle(std::size_t id, Message& m, Deadline now) {
    (void)now;
    bool unknown = false;
    for (const Rcpt& r : m.rcpts) {
        if (!r.final) return;
        unknown = unknown || r.result.outcome == Outcome::unknown;
    }
    // A recipient left unknown by a break: the break's status says why, as a batch's does.
    if (unknown && m.last_status != Status::ok)
        report(id, m, m.last_status, m.last_why);
    else
        report(id, m, Status::ok, {});
    messages_.erase(id);
}

void PoolPlanner::report(std::size_t id, Message& m, Status status, const std::string& why) {
    PoolReport rep;
    rep.id = id;
    rep.status = status;
    rep.why = status == Status::ok ? std::string() : why;
    if (m.answered) {
        rep.recipients.reserve(m.rcpts.size());
        rep.attempts.reserve(m.rcpts.size());
        for (Rcpt& r : m.rcpts) {
            rep.recipients.push_back(std::move(r.result));
            rep.attempts.push_back(r.attempts);
        }
    }
    reports_.push_back(std::move(rep));
}

void PoolPlanner::closed(ConnId conn, Status status, const std::string& why, Deadline now) {
    auto it = conns_.find(conn);
    if (it == conns_.end()) return;
    if (it->second.message) {
        // The driver did not give the message's report: nothing of it is known to
        // have been written to its end.
        Delivered d;
        d.status = status == Status::ok ? Status::closed : status;
        d.why = why.empty() ? "the connection was closed" : why;
        finished(conn, d, now);
        it = conns_.find(conn);
    }
    const Conn c = std::move(it->second);
    conns_.erase(it);
    if (c.state != ConnState::connecting) return;
    // A connect or set-up failure: the server is skipped for the back-off.
    if (c.epoch != epoch_) return;  // a round already counted it
    proven_ = false;
    Server& s = servers_[c.server];
    s.failed = true;
    s.skip_until = now + doubled(rounds_ + 1);
    bool all = std::all_of(servers_.begin(), servers_.end(), [](const Server& x) { return x.failed; });
    if (!all) return;
    ++rounds_;
    ++epoch_;
    for (Server& x : servers_) x.failed = false;
    if (rounds_ >= *opt_.connect_attempts) {
        give_up(status == Status::ok ? Status::connect : status,
                why.empty() ? "no server could be connected" : why);
        rounds_ = 0;
    }
}

void PoolPlanner::give_up(Status status, const std::string& why) {
    for (auto it = messages_.begin(); it != messages_.end();) {
        Message& m = it->second;
        if (m.conn) {
            ++it;
            continue;
        }
        for (Rcpt& r : m.rcpts) r.final = true;
        bool all = true;
        for (const Rcpt& r : m.rcpts) all = all && has_verdict(r.result);
        if (m.answered && all)
            report(it->first, m, Status::ok, {});
        else
            report(it->first, m, status, why + " (after " + std::to_string(*opt_.connect_attempts) +
                                             (*opt_.connect_attempts == 1 ? " round" : " rounds") +
                                             " of connects)");
        it = messages_.erase(it);
    }
}

void PoolPlanner::abandon(Status status, const std::string& why) {
    for (auto& [id, m] : messages_) {
        for (Rcpt& r : m.rcpts) {
            // Recipients in flight: their message may be on its way: unknown.
            if (r.in_flight) {
                r.result.outcome = Outcome::unknown;
                m.answered = true;
            }
            r.in_flight = false;
        }
        report(id, m, status, why);
    }
    messages_.clear();
    mailboxes_.clear();
    conns_.clear();
}

bool PoolPlanner::withdraw(std::size_t id, Deadline now) {
    auto mit = messages_.find(id);
    if (mit == messages_.end()) return false;
    Message& m = mit->second;
    if (m.conn) {
        auto cit = conns_.find(*m.conn);
        if (cit != conns_.end() && cit->second.message == id) {
            Conn& c = cit->second;
            c.message.reset();
            c.sent.clear();
            if (c.messages > 0) --c.messages;  // nothing of it was sent: it does not count
            if (c.state == ConnState::busy) {
                c.state = ConnState::idle;
                c.idle_since = now;
            }
        }
    }
    release(m);
    messages_.erase(mit);
    return true;
}

PoolReport PoolPlanner::take_report() {
    PoolReport r = std::move(reports_.front());
    reports_.pop_front();
    return r;
}

// ---- the driver ----------------------------------------------------------------------------

Pool::Pool(ClientOptions client, PoolOptions options) : client_(std::move(client)), planner_(std::move(options)) {
    client_.send_hello = true;  // a pool connection is set up whole before it takes a message
}

Pool::~Pool() {
    for (auto& [id, c] : conns_) c.driver->close();
}

void Pool::add_server(const std::string& host, std::uint16_t port) {
    if (host.empty()) throw Error(Status::invalid_argument, "the server's host is empty");
    servers_.push_back({host, port});
    planner_.add_server();
}

std::size_t Pool::submit(BatchMessage message, Deadline now) {
    if (servers_.empty()) throw Error(Status::bad_sequence, "the pool has no server: add one first");
    if (message.recipients.empty()) throw Error(Status::invalid_argument, "the message has no recipient");
    const bool resendable = message.bytes.has_value() && !message.source;
    std::size_t id = planner_.add(message.recipients, resendable, now);
    held_.emplace(id, Held{std::move(message), resendable});
    return id;
}

std::size_t Pool::fds(Wait* out, std::size_t cap) const {
    std::size_t n = 0;
    for (const auto& [id, c] : conns_) {
        int fd = c.driver->fd();
        if (fd < 0) continue;
        if (n < cap && out) out[n] = {fd, c.driver->want()};
        ++n;
    }
    return n;
}

std::optional<Deadline> Pool::deadline(Deadline now) const {
    if (planner_.has_report()) return now;  // reports to hand out: at once
    std::optional<Deadline> d = planner_.wake(now);
    for (const auto& [id, c] : conns_) {
        std::optional<Deadline> cd = c.driver->deadline();
        if (cd && (!d || *cd < *d)) d = cd;
    }
    return d;
}

void Pool::process(const Wait* events, std::size_t n, Deadline now) {
    std::vector<PoolPlanner::ConnId> ids;
    ids.reserve(conns_.size());
    for (const auto& [id, c] : conns_) ids.push_back(id);
    for (PoolPlanner::ConnId id : ids) {
        auto it = conns_.find(id);
        if (it == conns_.end()) continue;
        Conn& c = it->second;
        const int fd = c.driver->fd();
        unsigned ev = 0;
        for (std::size_t i = 0; i < n; ++i)
            if (events[i].fd == fd && fd >= 0) ev |= events[i].want;
        std::optional<Deadline> d = c.driver->deadline();
        if (ev == 0 && !(d && *d <= now)) continue;
        drive(id, ev & (EventDriver::want_read | EventDriver::want_write), now);
    }
    decide(now);
}

// One connection's work, with whatever ends it turned into the planner's events.
void Pool::drive(PoolPlanner::ConnId id, unsigned events, Deadline now) {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    Conn& c = it->second;
    try {
        c.driver->process(events, now);
    } catch (const Error& e) {
        harvest(id, c, now);
        drop(id, e.status(), e.what(), now);
        return;
    }
    harvest(id, c, now);
    if (!c.driver->active()) {
        drop(id, Status::closed, "the server closed the connection", now);
        return;
    }
    if (!c.ready && c.engine->is_open() && !c.engine->busy()) {
        c.ready = true;
        planner_.opened(id, now);
    }
}

// The message the engine finished, to the planner.
void Pool::harvest(PoolPlanner::ConnId id, Conn& c, Deadline now) {
    while (c.engine->has_delivered()) {
        Delivered d = c.engine->take_delivered();
        if (!c.token || d.token != *c.token) continue;
        c.token.reset();
        planner_.finished(id, d, now);
    }
}

void Pool::drop(PoolPlanner::ConnId id, Status status, const std::string& why, Deadline now) {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    it->second.driver->close(status, why);
    harvest(id, it->second, now);
    conns_.erase(it);
    planner_.closed(id, status, why, now);
}

void Pool::decide(Deadline now) {
    for (int guard = 0; guard < 100000; ++guard) {
        if (auto q = planner_.next_quit(now)) {
            quit(*q, now);
            continue;
        }
        if (auto s = planner_.next_send(now)) {
            send(*s, now);
            continue;
        }
        if (auto o = planner_.next_open(now)) {
            start(*o, now);
            continue;
        }
        break;
    }
}

void Pool::start(const PoolPlanner::Open& o, Deadline now) {
    Conn c;
    c.server = o.server;
    c.engine = std::make_unique<Engine>(client_);
    c.driver = std::make_unique<EventDriver>(*c.engine, client_);
    const Server& s = servers_[o.server];
    auto [it, inserted] = conns_.emplace(o.conn, std::move(c));
    (void)inserted;
    try {
        it->second.driver->connect_start(s.host, s.port, now);
    } catch (const Error& e) {
        drop(o.conn, e.status(), e.what(), now);
        return;
    }
    drive(o.conn, 0, now);  // a unix socket may be connected already; the banner may be here
}

void Pool::send(const PoolPlanner::Send& s, Deadline now) {
    auto it = conns_.find(s.conn);
    auto hit = held_.find(s.message);
    if (it == conns_.end() || hit == held_.end()) return;
    Conn& c = it->second;
    Held& h = hit->second;
    std::vector<std::string> rcpts;
    for (std::size_t i : s.recipients)
        if (i < h.message.recipients.size()) rcpts.push_back(h.message.recipients[i]);
    BatchMessage m;
    if (h.resendable) {
        m = h.message;  // the bytes are the caller's; a copy of the rest
    } else {
        m = std::move(h.message);  // a stream goes once
    }
    m.recipients = std::move(rcpts);
    c.message = s.message;
    try {
        c.engine->begin_wait(now);
        c.token = c.engine->submit(std::move(m));
    } catch (const Error& e) {
        Delivered d;
        d.status = e.status();
        d.why = e.what();
        planner_.finished(s.conn, d, now);
        return;
    }
    drive(s.conn, 0, now);  // its first bytes go out now when the socket takes them
}

void Pool::quit(PoolPlanner::ConnId id, Deadline now) {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    Conn& c = it->second;
    try {
        c.engine->begin_wait(now);
        c.engine->session().quit();
    } catch (const Error& e) {
        drop(id, Status::ok, {}, now);
        return;
    }
    c.quitting = true;
    drive(id, 0, now);
}

PoolReport Pool::take_report() {
    PoolReport r = planner_.take_report();
    held_.erase(r.id);
    return r;
}

void Pool::kick(Deadline now) {
    decide(now);
}

void Pool::run_once() {
    std::vector<Wait> waits(conns_.size());
    std::size_t n = fds(waits.data(), waits.size());
    waits.resize(n);
    std::vector<pollfd> pfd(n);
    for (std::size_t i = 0; i < n; ++i) {
        pfd[i].fd = waits[i].fd;
        pfd[i].events = static_cast<short>(((waits[i].want & EventDriver::want_read) ? POLLIN : 0) |
                                           ((waits[i].want & EventDriver::want_write) ? POLLOUT : 0));
        pfd[i].revents = 0;
    }
    Deadline now = Clock::now();
    int timeout = -1;
    if (std::optional<Deadline> d = deadline(now)) {
        auto left = *d - now;
        if (left <= Clock::duration::zero()) {
            timeout = 0;
        } else {
            auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(left + std::chrono::microseconds(999)).count();
            timeout = ms > INT_MAX ? INT_MAX : static_cast<int>(ms);
        }
    }
    if (n == 0 && timeout < 0) {
        // Nothing to wait for: what can be decided is decided now.
        process(nullptr, 0, Clock::now());
        if (pending() > 0 && !has_report() && fds(nullptr, 0) == 0 && !deadline(Clock::now()))
            throw Error(Status::internal, "the pool has messages waiting but nothing to wait for");
        return;
    }
    int r = ::poll(pfd.data(), static_cast<nfds_t>(n), timeout);
    std::vector<Wait> events;
    if (r > 0) {
        for (std::size_t i = 0; i < n; ++i) {
            unsigned ev = 0;
            if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) ev |= EventDriver::want_read;
            if (pfd[i].revents & (POLLOUT | POLLERR)) ev |= EventDriver::want_write;
            if (ev) events.push_back({pfd[i].fd, ev});
        }
    }
    process(events.data(), events.size(), Clock::now());
}

void Pool::abandon(Status status, const std::string& why) {
    for (auto& [id, c] : conns_) c.driver->close(status, why);
    conns_.clear();
    planner_.abandon(status, why);
    held_.clear();
}

}  // namespace lmtp
