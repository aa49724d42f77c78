// The non-blocking driver: an Engine (engine.hpp) handed to the caller's
// event loop. The driver owns the socket and never blocks (but a host name's
// lookup in connect_start: give an IP literal or a unix socket path, or
// adopt a socket connected by the caller); the loop waits on fd() for want(),
// at most until deadline(), and calls process() with what happened. In the
// bytes-only mode the caller owns the transport too (an asyncio transport):
// it feeds what it read and writes output().
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "lmtp/engine.hpp"
#include "lmtp/transport.hpp"

namespace lmtp {

class EventDriver {
public:
    static constexpr unsigned want_read = 1;
    static constexpr unsigned want_write = 2;

    // `engine` and `options` belong to the owner (a Client) and outlive the driver.
    EventDriver(Engine& engine, const ClientOptions& options);
    ~EventDriver();
    EventDriver(const EventDriver&) = delete;
    EventDriver& operator=(const EventDriver&) = delete;

    // Starts connecting to `host` (each of its addresses in turn: fd() may
    // change). Throws for a name that does not resolve or bad arguments.
    void connect_start(const std::string& host, std::uint16_t port, Deadline now);
    // A connected socket the caller made (made non-blocking here; owned and
    // closed by the driver from now on). `tls_name`: the name TLS verifies.
    void adopt_fd(int fd, const std::string& tls_name, Deadline now);
    // The bytes-only mode: the caller moves the bytes. `local`: the
    // connection is local (a unix socket), as for AUTH PLAIN without TLS.
    void start_bytes(const std::string& tls_name, bool local, Deadline now);

    // A connection (or a connect) is under way.
    bool active() const { return mode_ != Mode::none; }
    bool bytes_only() const { return mode_ == Mode::bytes; }
    int fd() const;
    unsigned want() const;
    std::optional<Deadline> deadline() const;
    // Does what `events` (want_read | want_write, or 0 when the wait timed
    // out) allows and what the time asks, without blocking. A deadline that
    // passed fails only after what was already readable has been read.
    // Throws the Error that ended the connection.
    void process(unsigned events, Deadline now);

    // --- bytes-only ---------------------------------------------------------
    // What the caller read (n == 0: the end of the stream).
    void feed(const char* data, std::size_t n, Deadline now);
    // What must be written, as one run of bytes (valid until the next call).
    std::string_view output();
    void output_done(std::size_t n, Deadline now);

    // Drops the connection (no QUIT): deliveries in flight end unknown.
    void close(Status status = Status::closed, const std::string& why = "the connection was closed") noexcept;

private:
    enum class Mode { none, connecting, socket, bytes };
    void opened(Deadline now);
    void pump(bool readable, Deadline now);
    bool write_some(Deadline now);
    bool read_some(Deadline now);
    void settle(Deadline now);
    void fail_io(const Error& e, bool writing);

    Engine& engine_;
    const ClientOptions& opt_;
    Mode mode_ = Mode::none;
    std::unique_ptr<Connector> connector_;
    std::unique_ptr<SocketTransport> socket_;
    std::string host_;
    std::string gathered_;  // bytes-only: the output as one run
    std::string rbuf_;
};

}  // namespace lmtp
