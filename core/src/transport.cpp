#include "lmtp/transport.hpp"

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <thread>
#include <unistd.h>

#include "lmtp/status.hpp"

namespace lmtp {

namespace {

std::string errno_text(int err) {
    char buf[256];
    // GNU strerror_r returns the message (which may not be buf).
    return std::string(strerror_r(err, buf, sizeof buf));
}

// Waits for `events` on fd until `deadline`. False when the deadline passed.
bool wait_fd(int fd, short events, Deadline deadline) {
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0) {
            // One last look without waiting: the event may already be there.
            pollfd p{fd, events, 0};
            int n = ::poll(&p, 1, 0);
            return n > 0;
        }
        // Round up, so that we never wake a little early and spin.
        auto ms = left.count() + 1;
        pollfd p{fd, events, 0};
        int n = ::poll(&p, 1, ms > 2000000000 ? 2000000000 : static_cast<int>(ms));
        if (n > 0) return true;
        if (n < 0 && errno != EINTR) return true;  // let the caller's syscall report it
    }
}

std::string describe(const sockaddr* sa, socklen_t len) {
    char host[NI_MAXHOST] = "?";
    char serv[NI_MAXSERV] = "?";
    getnameinfo(sa, len, host, sizeof host, serv, sizeof serv, NI_NUMERICHOST | NI_NUMERICSERV);
    if (sa->sa_family == AF_INET6) return "[" + std::string(host) + "] port " + serv;
    return std::string(host) + " port " + serv;
}

struct AddrInfo {
    addrinfo* list = nullptr;
    ~AddrInfo() {
        if (list) freeaddrinfo(list);
    }
};

class Fd {
public:
    explicit Fd(int fd) : fd_(fd) {}
    ~Fd() {
        if (fd_ >= 0) ::close(fd_);
    }
    int get() const { return fd_; }
    int release() {
        int f = fd_;
        fd_ = -1;
        return f;
    }

private:
    int fd_;
};

}  // namespace

SocketTransport::SocketTransport(int fd, bool local, std::string peer)
    : fd_(fd), local_(local), peer_(std::move(peer)) {
    if (fd_ >= 0) {
        int flags = fcntl(fd_, F_GETFL, 0);
        if (flags >= 0 && !(flags & O_NONBLOCK)) fcntl(fd_, F_SETFL, flags | O_NONBLOCK);
    }
}

SocketTransport::~SocketTransport() {
    close();
}

void SocketTransport::close() noexcept {
    if (fd_ >= 0) {
        ::close(fd_);
        fd_ = -1;
    }
}

// One address to try: a socket address and the local one to bind first.
struct Connector::Target {
    sockaddr_storage addr{};
    socklen_t len = 0;
    int family = 0;
    int protocol = 0;
    std::string where;
    bool has_local = false;
    bool local_mismatch = false;  // the local address is of another family
    sockaddr_storage local{};
    socklen_t local_len = 0;
};

Connector::Connector(const std::string& host, std::uint16_t port, const ConnectOptions& options, Deadline now)
    : host_(host), options_(options) {
    if (host.empty()) throw Error(Status::invalid_argument, "no host given");
    if (host[0] == '/') {
        sockaddr_un sa{};
        if (host.size() >= sizeof sa.sun_path)
            throw Error(Status::invalid_argument, "unix socket path is " + std::to_string(host.size()) +
                                                      " bytes, more than a socket address holds (" +
                                                      std::to_string(sizeof sa.sun_path - 1) + ")");
        if (host.find('\0') != std::string::npos)
            throw Error(Status::invalid_argument, "unix socket path contains a NUL byte");
        sa.sun_family = AF_UNIX;
        std::memcpy(sa.sun_path, host.data(), host.size());
        Target t;
        std::memcpy(&t.addr, &sa, sizeof sa);
        t.len = sizeof sa;
        t.family = AF_UNIX;
        t.where = host;
        targets_.push_back(std::move(t));
        unix_ = true;
        unix_deadline_ = now + options_.timeout;
        start(now);
        return;
    }
    if (port == 0) throw Error(Status::invalid_argument, "no port given for host " + host);
    name_ = host;
    if (name_.size() > 2 && name_.front() == '[' && name_.back() == ']') name_ = name_.substr(1, name_.size() - 2);
    service_ = std::to_string(port);
    add_targets(name_, service_, 0);
    if (targets_.empty()) give_up();
    start(now);
}

Connector::Connector(const std::vector<std::pair<std::string, std::uint16_t>>& addresses, const ConnectOptions& options,
                     Deadline now)
    : host_("the addresses given"), options_(options) {
    for (const auto& [ip, port] : addresses) add_targets(ip, std::to_string(port), AI_NUMERICHOST);
    if (targets_.empty()) give_up();
    start(now);
}

// The addresses of `name` (flags: AI_NUMERICHOST for IP literals only), each with the local
// address of its family when one is set.
void Connector::add_targets(const std::string& name, const std::string& service, int flags) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | flags;
    AddrInfo found;
    int rc = getaddrinfo(name.c_str(), service.c_str(), &hints, &found.list);
    if (rc != 0)
        throw Error(Status::resolve, "cannot resolve host '" + name + "': " +
                                         (rc == EAI_SYSTEM ? errno_text(errno) : std::string(gai_strerror(rc))));
    AddrInfo locals;
    if (!options_.local_address.empty() || options_.local_port) {
        addrinfo lh{};
        lh.ai_family = AF_UNSPEC;
        lh.ai_socktype = SOCK_STREAM;
        lh.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
        std::string lport = std::to_string(options_.local_port);
        rc = getaddrinfo(options_.local_address.empty() ? nullptr : options_.local_address.c_str(), lport.c_str(), &lh,
                         &locals.list);
        if (rc != 0)
            throw Error(Status::invalid_argument,
                        "local address '" + options_.local_address + "' is not an IP address: " + gai_strerror(rc));
    }
    for (addrinfo* ai = found.list; ai; ai = ai->ai_next) {
        Target t;
        std::memcpy(&t.addr, ai->ai_addr, ai->ai_addrlen);
        t.len = ai->ai_addrlen;
        t.family = ai->ai_family;
        t.protocol = ai->ai_protocol;
        t.where = describe(ai->ai_addr, ai->ai_addrlen);
        if (locals.list) {
            t.local_mismatch = true;
            for (addrinfo* l = locals.list; l && t.local_mismatch; l = l->ai_next) {
                if (l->ai_family != ai->ai_family) continue;
                std::memcpy(&t.local, l->ai_addr, l->ai_addrlen);
                t.local_len = l->ai_addrlen;
                t.has_local = true;
                t.local_mismatch = false;
            }
        }
        targets_.push_back(std::move(t));
    }
}

Connector::~Connector() {
    if (fd_ >= 0) ::close(fd_);
}

// Starts targets_[at_], or the next that can be started.
void Connector::start(Deadline now) {
    while (at_ < targets_.size()) {
        const Target& t = targets_[at_];
        if (t.local_mismatch) {
            next(now, t.where + ": the local address is of another family", false, 0);
            return;
        }
        int fd = ::socket(t.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, t.protocol);
        if (fd < 0) {
            next(now, t.where + ": socket: " + errno_text(errno), false, errno);
            return;
        }
        // The new socket exists before the old one is closed: its number differs.
        if (fd_ >= 0) ::close(fd_);
        fd_ = fd;
        if (t.has_local) {
            int one = 1;
            setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
            if (::bind(fd_, reinterpret_cast<const sockaddr*>(&t.local), t.local_len) != 0) {
                int err = errno;
                next(now,
                     t.where + ": cannot bind to " + describe(reinterpret_cast<const sockaddr*>(&t.local), t.local_len) +
                         ": " + errno_text(err),
                     false, err);
                return;
            }
        }
        if (!unix_) {
            // We batch our own writes; Nagle would only delay the last piece.
            int one = 1;
            setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        deadline_ = unix_ ? unix_deadline_ : now + options_.timeout;
        int rc;
        do {
            rc = ::connect(fd_, reinterpret_cast<const sockaddr*>(&t.addr), t.len);
        } while (rc != 0 && errno == EINTR);
        if (rc == 0) {
            connected_ = true;
            return;
        }
        int err = errno;
        if (err == EINPROGRESS) {
            waiting_ = true;
            return;
        }
        if (unix_ && err == EAGAIN) {
            // The listener's backlog is full: try again shortly, until the deadline.
            waiting_ = false;
            if (now >= unix_deadline_)
                throw Error(Status::timeout,
                            "cannot connect to " + host_ + ": its backlog stayed full for " +
                                std::to_string(options_.timeout.count()) + " ms",
                            ETIMEDOUT);
            deadline_ = std::min(unix_deadline_, now + std::chrono::milliseconds(5));
            return;
        }
        next(now, t.where + ": " + errno_text(err), false, err);
        return;
    }
}

// The current address failed: note why, go on with the next.
void Connector::next(Deadline now, const std::string& what, bool timed_out, int err) {
    if (unix_) {
        if (timed_out) throw Error(Status::timeout, "cannot connect to " + host_ + ": timed out", ETIMEDOUT);
        throw Error(Status::connect, "cannot connect to unix socket " + host_ + ": " + errno_text(err), err);
    }
    if (!errors_.empty()) errors_ += "; ";
    errors_ += what;
    all_timeouts_ = all_timeouts_ && timed_out;
    last_errno_ = timed_out ? ETIMEDOUT : err;
    ++at_;
    if (at_ >= targets_.size()) give_up();
    start(now);
}

void Connector::give_up() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    std::string errors = errors_.empty() ? std::string("no address found") : errors_;
    Status status = all_timeouts_ && !errors_.empty() ? Status::timeout : Status::connect;
    // One address that is the host itself (an IP literal): name it once.
    const std::string& last = targets_.empty() ? std::string() : targets_.back().where;
    if (targets_.size() == 1 && (last == name_ + " port " + service_ || last == "[" + name_ + "] port " + service_))
        throw Error(status, "cannot connect to " + errors, last_errno_);
    throw Error(status, "cannot connect to " + host_ + " port " + service_ + ": " + errors, last_errno_);
}

bool Connector::check(Deadline now) {
    if (connected_) return true;
    if (!waiting_) {  // a retry was due
        if (now >= deadline_) start(now);
        return connected_;
    }
    pollfd p{fd_, POLLOUT, 0};
    int n = ::poll(&p, 1, 0);
    if (n <= 0) {
        if (now < deadline_) return false;
        next(now, targets_[at_].where + ": timed out after " + std::to_string(options_.timeout.count()) + " ms", true,
             ETIMEDOUT);
        return connected_;
    }
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err == 0) {
        connected_ = true;
        return true;
    }
    next(now, targets_[at_].where + ": " + errno_text(err), false, err);
    return connected_;
}

std::unique_ptr<SocketTransport> Connector::take() {
    if (!connected_ || fd_ < 0) throw Error(Status::not_connected, "not connected");
    int fd = fd_;
    fd_ = -1;
    return std::make_unique<SocketTransport>(fd, unix_, targets_[at_].where);
}

std::unique_ptr<SocketTransport> SocketTransport::connect(const std::string& host, std::uint16_t port,
                                                          const ConnectOptions& options) {
    Connector c(host, port, options, Clock::now());
    while (!c.connected()) {
        if (c.in_progress())
            wait_fd(c.fd(), POLLOUT, c.deadline());
        else
            std::this_thread::sleep_until(c.deadline());  // a unix socket's full backlog: a retry shortly
        c.check(Clock::now());
    }
    return c.take();
}

std::unique_ptr<SocketTransport> SocketTransport::connect_unix(const std::string& path, const ConnectOptions& options) {
    if (path.empty() || path[0] != '/') throw Error(Status::invalid_argument, "a unix socket path starts with '/'");
    return connect(path, 0, options);
}

std::optional<std::size_t> SocketTransport::try_read(char* buf, std::size_t cap) {
    if (fd_ < 0) throw Error(Status::not_connected, "not connected");
    for (;;) {
        ssize_t n = ::recv(fd_, buf, cap, 0);
        if (n >= 0) return static_cast<std::size_t>(n);
        int err = errno;
        if (err == EINTR) continue;
        if (err == EAGAIN || err == EWOULDBLOCK) return std::nullopt;
        if (err == ECONNRESET) throw Error(Status::closed, "connection reset by " + peer_, err);
        throw Error(Status::io, "reading from " + peer_ + " failed: " + errno_text(err), err);
    }
}

std::size_t SocketTransport::try_write_pieces(const std::string_view* pieces, std::size_t count) {
    if (fd_ < 0) throw Error(Status::not_connected, "not connected");
    constexpr std::size_t kMaxPieces = 8;
    iovec iov[kMaxPieces];
    std::size_t n_iov = 0;
    for (std::size_t i = 0; i < count && n_iov < kMaxPieces; ++i)
        if (!pieces[i].empty()) iov[n_iov++] = {const_cast<char*>(pieces[i].data()), pieces[i].size()};
    if (n_iov == 0) return 0;
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = n_iov;
    for (;;) {
        ssize_t n = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
        if (n >= 0) return static_cast<std::size_t>(n);
        int err = errno;
        if (err == EINTR) continue;
        if (err == EAGAIN || err == EWOULDBLOCK) return 0;
        if (err == EPIPE || err == ECONNRESET)
            throw Error(Status::closed,
                        "the connection to " + peer_ + " was closed by the server (" + errno_text(err) + ")", err);
        throw Error(Status::io, "writing to " + peer_ + " failed: " + errno_text(err), err);
    }
}

std::size_t SocketTransport::read(char* buf, std::size_t cap, Deadline deadline) {
    if (fd_ < 0) throw Error(Status::not_connected, "not connected");
    for (;;) {
        ssize_t n = ::recv(fd_, buf, cap, 0);
        if (n >= 0) return static_cast<std::size_t>(n);
        int err = errno;
        if (err == EINTR) continue;
        if (err == EAGAIN || err == EWOULDBLOCK) {
            if (!wait_fd(fd_, POLLIN, deadline))
                throw Error(Status::timeout, "timed out reading from " + peer_, ETIMEDOUT);
            continue;
        }
        if (err == ECONNRESET) throw Error(Status::closed, "connection reset by " + peer_, err);
        throw Error(Status::io, "reading from " + peer_ + " failed: " + errno_text(err), err);
    }
}

void SocketTransport::write(std::string_view data, Deadline deadline) {
    write_pieces(&data, 1, deadline);
}

void SocketTransport::write_pieces(const std::string_view* pieces, std::size_t count, Deadline deadline) {
    if (fd_ < 0) throw Error(Status::not_connected, "not connected");
    constexpr std::size_t kMaxPieces = 8;
    iovec iov[kMaxPieces];
    std::size_t n_iov = 0;
    std::size_t next = 0;  // the first piece not yet in iov
    for (;;) {
        // Refill: the pieces left, up to kMaxPieces at a time.
        while (next < count && n_iov < kMaxPieces) {
            if (!pieces[next].empty())
                iov[n_iov++] = {const_cast<char*>(pieces[next].data()), pieces[next].size()};
            ++next;
        }
        if (n_iov == 0) return;
        msghdr msg{};
        msg.msg_iov = iov;
        msg.msg_iovlen = n_iov;
        ssize_t n = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
        if (n > 0) {
            // Drop what went out; a piece sent in part keeps its rest.
            std::size_t done = static_cast<std::size_t>(n);
            std::size_t i = 0;
            while (i < n_iov && done >= iov[i].iov_len) done -= iov[i++].iov_len;
            if (i < n_iov) {
                iov[i].iov_base = static_cast<char*>(iov[i].iov_base) + done;
                iov[i].iov_len -= done;
            }
            std::copy(iov + i, iov + n_iov, iov);
            n_iov -= i;
            continue;
        }
        int err = n < 0 ? errno : EIO;
        if (err == EINTR) continue;
        if (err == EAGAIN || err == EWOULDBLOCK) {
            if (!wait_fd(fd_, POLLOUT, deadline))
                throw Error(Status::timeout, "timed out writing to " + peer_ + " (it is not reading)", ETIMEDOUT);
            continue;
        }
        if (err == EPIPE || err == ECONNRESET)
            throw Error(Status::closed,
                        "the connection to " + peer_ + " was closed by the server (" + errno_text(err) + ")", err);
        throw Error(Status::io, "writing to " + peer_ + " failed: " + errno_text(err), err);
    }
}

bool SocketTransport::readable() {
    if (fd_ < 0) return false;
    pollfd p{fd_, POLLIN, 0};
    for (;;) {
        int n = ::poll(&p, 1, 0);
        if (n >= 0) return n > 0;
        if (errno != EINTR) return true;
    }
}

}  // namespace lmtp
