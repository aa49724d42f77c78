#include "lmtp/event_driver.hpp"

#include <sys/socket.h>
#include <unistd.h>

namespace lmtp {

namespace {

constexpr std::size_t kReadBuffer = 16 * 1024;
// Reads and writes per process call at most, so that one busy connection
// cannot keep the caller's loop from the others.
constexpr int kRounds = 64;

}  // namespace

EventDriver::EventDriver(Engine& engine, const ClientOptions& options)
    : engine_(engine), opt_(options), rbuf_(kReadBuffer, '\0') {}

EventDriver::~EventDriver() {
    close();
}

void EventDriver::close(Status status, const std::string& why) noexcept {
    engine_.close(status, why);
    socket_.reset();
    connector_.reset();
    mode_ = Mode::none;
    gathered_.clear();
}

void EventDriver::connect_start(const std::string& host, std::uint16_t port, Deadline now) {
    close();
    engine_.check_setup();  // a bad LHLO name or AUTH setting fails before connecting
    ConnectOptions co;
    co.timeout = opt_.connect_timeout.count() > 0 ? opt_.connect_timeout : opt_.timeout;
    co.local_address = opt_.local_address;
    co.local_port = opt_.local_port;
    connector_ = std::make_unique<Connector>(host, port, co, now);
    host_ = host;
    mode_ = Mode::connecting;
    if (connector_->connected()) opened(now);
}

void EventDriver::opened(Deadline now) {
    socket_ = connector_->take();
    connector_.reset();
    mode_ = Mode::socket;
    engine_.trace(TraceDir::info, "connected to " + socket_->peer());
    engine_.open(now, host_, socket_->is_local());
}

void EventDriver::adopt_fd(int fd, const std::string& tls_name, Deadline now) {
    close();
    if (fd < 0) throw Error(Status::invalid_argument, "no socket given (fd < 0)");
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    const bool local = getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0 && ss.ss_family == AF_UNIX;
    socket_ = std::make_unique<SocketTransport>(fd, local, "socket " + std::to_string(fd));  // owned from here
    host_ = tls_name;
    mode_ = Mode::socket;
    try {
        engine_.open(now, host_, local);
    } catch (...) {
        close();  // the socket too: it was handed over
        throw;
    }
}

void EventDriver::start_bytes(const std::string& tls_name, bool local, Deadline now) {
    close();
    engine_.open(now, tls_name, local);
    mode_ = Mode::bytes;
}

int EventDriver::fd() const {
    if (mode_ == Mode::connecting) return connector_->fd();
    if (mode_ == Mode::socket && socket_) return socket_->fd();
    return -1;
}

unsigned EventDriver::want() const {
    switch (mode_) {
        case Mode::connecting: return connector_->in_progress() ? want_write : 0;
        case Mode::socket:
        case Mode::bytes:
            if (!engine_.is_open()) return 0;
            // A connection with nothing to do still reads: the server may close it.
            return want_read | (engine_.output_size() > 0 ? want_write : 0);
        case Mode::none: break;
    }
    return 0;
}

std::optional<Deadline> EventDriver::deadline() const {
    if (mode_ == Mode::connecting) return connector_->deadline();
    if (mode_ == Mode::none) return std::nullopt;
    return engine_.deadline();
}

void EventDriver::process(unsigned events, Deadline now) {
    try {
        switch (mode_) {
            case Mode::none: throw Error(Status::not_connected, "no connection to process");
            case Mode::connecting:
                try {
                    if (!connector_->check(now)) return;  // (the next address may be under way)
                    opened(now);
                } catch (const Error& e) {
                    // Messages waiting for the connection get its failure.
                    close(e.status(), e.what());
                    throw;
                }
                pump(true, now);  // the banner may be here already
                break;
            case Mode::socket: pump((events & want_read) != 0, now); break;
            case Mode::bytes: settle(now); break;
        }
    } catch (const Error&) {
        if (!engine_.is_open()) close();
        throw;
    }
    if (!engine_.is_open()) close();  // QUIT answered, or 421
}

void EventDriver::fail_io(const Error& e, bool writing) {
    engine_.io_failed(e, writing);
}

bool EventDriver::read_some(Deadline now) {
    std::optional<std::size_t> n;
    try {
        n = socket_->try_read(rbuf_.data(), rbuf_.size());
    } catch (const Error& e) {
        fail_io(e, false);
    }
    if (!n) return false;
    engine_.feed(rbuf_.data(), *n, now);
    engine_.run(now);
    return *n > 0;
}

bool EventDriver::write_some(Deadline now) {
    if (engine_.output_size() == 0) return false;
    std::string_view pieces[3];
    std::size_t count = engine_.output_pieces(pieces);
    std::size_t n = 0;
    try {
        n = socket_->try_write_pieces(pieces, count);
    } catch (const Error& e) {
        // The replies the server sent before it went are here: their verdicts are kept.
        engine_.discard_output();
        try {
            while (engine_.is_open() && read_some(now)) {
            }
        } catch (const Error&) {
        }
        if (!engine_.is_open()) throw;
        fail_io(e, true);
    }
    if (n == 0) return false;
    engine_.consumed(n, now);
    engine_.run(now);
    return true;
}

void EventDriver::pump(bool readable, Deadline now) {
    for (int round = 0; round < kRounds && engine_.is_open(); ++round) {
        engine_.run(now);
        bool progress = write_some(now);
        if (readable && engine_.is_open()) {
            if (read_some(now))
                progress = true;
            else
                readable = false;
        }
        if (!progress) break;
    }
    settle(now);
}

// After the I/O: the work it allows, the deadline, and bytes nobody asked for.
void EventDriver::settle(Deadline now) {
    engine_.run(now);
    if (!engine_.is_open()) return;
    std::optional<Deadline> d = engine_.deadline();
    if (d && now >= *d) {
        // What is already readable is read before the deadline is declared passed.
        if (mode_ == Mode::socket)
            while (engine_.is_open() && read_some(now)) {
            }
        if (engine_.is_open()) engine_.on_time(now);
    }
    if (engine_.is_open() && !engine_.busy()) engine_.check_unsolicited();
}

void EventDriver::feed(const char* data, std::size_t n, Deadline now) {
    if (mode_ != Mode::bytes) throw Error(Status::bad_sequence, "feed: the handle is not in the bytes-only mode");
    try {
        engine_.feed(data, n, now);
        settle(now);
    } catch (const Error&) {
        if (!engine_.is_open()) close();
        throw;
    }
    if (!engine_.is_open()) close();
}

std::string_view EventDriver::output() {
    if (mode_ != Mode::bytes) return {};
    std::string_view pieces[3];
    std::size_t count = engine_.output_pieces(pieces);
    if (count == 0) return {};
    if (count == 1) return pieces[0];
    gathered_.clear();
    for (std::size_t i = 0; i < count; ++i) gathered_.append(pieces[i]);
    return gathered_;
}

void EventDriver::output_done(std::size_t n, Deadline now) {
    if (mode_ != Mode::bytes) throw Error(Status::bad_sequence, "output_done: the handle is not in the bytes-only mode");
    if (n > engine_.output_size())
        throw Error(Status::invalid_argument, "output_done: " + std::to_string(n) + " octets are more than the " +
                                                  std::to_string(engine_.output_size()) + " given by output");
    try {
        engine_.consumed(n, now);
        settle(now);
    } catch (const Error&) {
        if (!engine_.is_open()) close();
        throw;
    }
    if (!engine_.is_open()) close();
}

}  // namespace lmtp
