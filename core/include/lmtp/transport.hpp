// Moving bytes with deadlines. A Transport is a small interface so that TLS,
// test fakes and other carriers plug in without touching the protocol code.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <utility>
#include <vector>
#include <string>
#include <string_view>

namespace lmtp {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;

class Transport {
public:
    virtual ~Transport() = default;

    // Reads what is available, up to `cap` bytes, waiting until `deadline`
    // for at least one. Returns 0 at end of stream.
    // Throws Error(timeout) or Error(io).
    virtual std::size_t read(char* buf, std::size_t cap, Deadline deadline) = 0;
    // Writes all of `data` before `deadline`. Throws Error(timeout),
    // Error(closed) (peer gone) or Error(io). Never raises SIGPIPE.
    virtual void write(std::string_view data, Deadline deadline) = 0;
    // Writes the pieces one after the other, as write() would their
    // concatenation, in one write as far as the carrier allows. A socket
    // sends them with one writev; by default they are joined and written once.
    virtual void write_pieces(const std::string_view* pieces, std::size_t count, Deadline deadline) {
        if (count == 1) return write(pieces[0], deadline);
        std::string joined;
        std::size_t size = 0;
        for (std::size_t i = 0; i < count; ++i) size += pieces[i].size();
        joined.reserve(size);
        for (std::size_t i = 0; i < count; ++i) joined.append(pieces[i]);
        if (!joined.empty()) write(joined, deadline);
    }
    // True if a read would not block (data, end of stream or an error waiting).
    virtual bool readable() = 0;
    virtual void close() noexcept = 0;
    virtual bool is_open() const = 0;
    // A unix domain socket (local to this machine).
    virtual bool is_local() const = 0;
    // Encrypted (TLS).
    virtual bool is_tls() const { return false; }
    // For messages: "127.0.0.1 port 24", "[::1] port 24", "/run/lmtp".
    virtual std::string peer() const = 0;
};

// The deadline for each reply, each write and each address tried, when the
// caller sets none: the one place it is spelled (lmtp.h's
// LMTP_DEFAULT_TIMEOUT_MS is checked against it; the faces read it).
inline constexpr std::chrono::milliseconds kDefaultTimeout{120000};

struct ConnectOptions {
    std::chrono::milliseconds timeout{kDefaultTimeout};  // for each address tried
    std::string local_address;                  // bind to this IP before connecting
    std::uint16_t local_port = 0;
};

class SocketTransport;

// A connect() that walks a host's addresses without blocking: each address
// gets a non-blocking socket and `timeout` to connect; a refusal or a timeout
// moves on to the next, and the socket (fd()) changes. Only the name lookup
// in the constructor blocks (an IP literal or a unix socket path needs none).
// SocketTransport::connect is this with a wait; the non-blocking API hands
// the socket and the deadline to the caller's event loop.
class Connector {
public:
    // Resolves `host` (a name, an IP literal with or without brackets, or a
    // path starting with "/") and starts the first address. Throws
    // Error(resolve / invalid_argument), or the connect error when no address
    // can even be tried.
    Connector(const std::string& host, std::uint16_t port, const ConnectOptions& options, Deadline now);
    // The same over IP literals given with their ports, tried in this order.
    Connector(const std::vector<std::pair<std::string, std::uint16_t>>& addresses, const ConnectOptions& options,
              Deadline now);
    ~Connector();
    Connector(const Connector&) = delete;
    Connector& operator=(const Connector&) = delete;

    // The socket being connected (-1 once taken).
    int fd() const { return fd_; }
    bool connected() const { return connected_; }
    // A connect() is in progress on fd() (wait for it to be writable); else
    // a retry is due at deadline().
    bool in_progress() const { return waiting_; }
    // When to call check() without the socket having become writable: the
    // address's deadline, or a retry (a unix socket's full backlog).
    Deadline deadline() const { return deadline_; }
    // The socket became writable, or the deadline passed: true once
    // connected; otherwise the next address is under way (fd() changed: the
    // new socket is opened before the old one is closed, so the number
    // differs). Throws Error(connect / timeout) naming every address tried
    // when none is left.
    bool check(Deadline now);
    // The connected socket.
    std::unique_ptr<SocketTransport> take();

private:
    struct Target;
    void add_targets(const std::string& name, const std::string& service, int flags);
    void start(Deadline now);
    void next(Deadline now, const std::string& what, bool timed_out, int err);
    [[noreturn]] void give_up();

    std::string host_;
    std::string service_;
    std::string name_;
    ConnectOptions options_;
    std::vector<Target> targets_;
    std::size_t at_ = 0;
    int fd_ = -1;
    bool connected_ = false;
    bool unix_ = false;
    bool waiting_ = false;  // connect() in progress (else: a retry is due at deadline_)
    Deadline deadline_{};
    Deadline unix_deadline_{};
    std::string errors_;
    bool all_timeouts_ = true;
    int last_errno_ = 0;
};

// A connected TCP or unix stream socket, non-blocking underneath; every wait
// is a poll() bounded by the caller's deadline. Writes use MSG_NOSIGNAL.
class SocketTransport final : public Transport {
public:
    // "host" may be a name, an IPv4 literal, an IPv6 literal (with or without
    // brackets), or a path starting with "/" for a unix socket (port ignored).
    // For names, every address getaddrinfo returns is tried in order, each
    // within options.timeout. Throws Error(resolve / connect / timeout /
    // invalid_argument) with a message naming what was tried.
    static std::unique_ptr<SocketTransport> connect(const std::string& host, std::uint16_t port,
                                                    const ConnectOptions& options);
    static std::unique_ptr<SocketTransport> connect_unix(const std::string& path, const ConnectOptions& options);
    // Takes ownership of a connected socket (tests, socketpair()).
    explicit SocketTransport(int fd, bool local = false, std::string peer = {});
    ~SocketTransport() override;
    SocketTransport(const SocketTransport&) = delete;
    SocketTransport& operator=(const SocketTransport&) = delete;

    std::size_t read(char* buf, std::size_t cap, Deadline deadline) override;
    void write(std::string_view data, Deadline deadline) override;
    void write_pieces(const std::string_view* pieces, std::size_t count, Deadline deadline) override;
    bool readable() override;
    // Without waiting: the bytes read (0 at end of stream), or nothing when
    // none are there yet. Throws as read() does.
    std::optional<std::size_t> try_read(char* buf, std::size_t cap);
    // Without waiting: the bytes written (0 when the socket takes none now).
    // Throws as write() does.
    std::size_t try_write_pieces(const std::string_view* pieces, std::size_t count);
    void close() noexcept override;
    bool is_open() const override { return fd_ >= 0; }
    bool is_local() const override { return local_; }
    std::string peer() const override { return peer_; }
    int fd() const { return fd_; }

private:
    int fd_;
    bool local_;
    std::string peer_;
};

}  // namespace lmtp
