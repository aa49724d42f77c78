// Moving bytes with deadlines. A Transport is a small interface so that TLS,
// test fakes and other carriers plug in without touching the protocol code.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
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
