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

std::unique_ptr<SocketTransport> SocketTransport::connect(const std::string& host, std::uint16_t port,
                                                          const ConnectOptions& options) {
    if (host.empty()) throw Error(Status::invalid_argument, "no host given");
    if (host[0] == '/') return connect_unix(host, options);
    if (port == 0) throw Error(Status::invalid_argument, "no port given for host " + host);
    std::string name = host;
    if (name.size() > 2 && name.front() == '[' && name.back() == ']') name = name.substr(1, name.size() - 2);

    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    AddrInfo targets;
    std::string service = std::to_string(port);
    int rc = getaddrinfo(name.c_str(), service.c_str(), &hints, &targets.list);
    if (rc != 0)
        throw Error(Status::resolve, "cannot resolve host '" + host + "': " +
                                         (rc == EAI_SYSTEM ? errno_text(errno) : std::string(gai_strerror(rc))));

    AddrInfo locals;
    if (!options.local_address.empty() || options.local_port) {
        addrinfo lh{};
        lh.ai_family = AF_UNSPEC;
        lh.ai_socktype = SOCK_STREAM;
        lh.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
        std::string lport = std::to_string(options.local_port);
        rc = getaddrinfo(options.local_address.empty() ? nullptr : options.local_address.c_str(), lport.c_str(), &lh,
                         &locals.list);
        if (rc != 0)
            throw Error(Status::invalid_argument,
                        "local address '" + options.local_address + "' is not an IP address: " + gai_strerror(rc));
    }

    std::string errors, last_where;
    bool all_timeouts = true;
    int tried = 0;
    int last_errno = 0;
    auto note = [&](const std::string& what, bool timed_out, int err = 0) {
        if (!errors.empty()) errors += "; ";
        errors += what;
        all_timeouts = all_timeouts && timed_out;
        last_errno = timed_out ? ETIMEDOUT : err;
    };
    for (addrinfo* ai = targets.list; ai; ai = ai->ai_next) {
        std::string where = describe(ai->ai_addr, ai->ai_addrlen);
        last_where = where;
        ++tried;
        const addrinfo* local = nullptr;
        if (locals.list) {
            for (addrinfo* l = locals.list; l && !local; l = l->ai_next)
                if (l->ai_family == ai->ai_family) local = l;
            if (!local) {
                note(where + ": the local address is of another family", false);
                continue;
            }
        }
        Fd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol));
        if (fd.get() < 0) {
            note(where + ": socket: " + errno_text(errno), false, errno);
            continue;
        }
        if (local) {
            int one = 1;
            setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
            if (::bind(fd.get(), local->ai_addr, local->ai_addrlen) != 0) {
                int err = errno;
                note(where + ": cannot bind to " + describe(local->ai_addr, local->ai_addrlen) + ": " + errno_text(err),
                     false, err);
                continue;
            }
        }
        // We batch our own writes; Nagle would only delay the last piece.
        int one = 1;
        setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        Deadline deadline = Clock::now() + options.timeout;
        if (::connect(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0) {
            if (errno != EINPROGRESS && errno != EINTR) {
                note(where + ": " + errno_text(errno), false, errno);
                continue;
            }
            if (!wait_fd(fd.get(), POLLOUT, deadline)) {
                note(where + ": timed out after " + std::to_string(options.timeout.count()) + " ms", true);
                continue;
            }
            int err = 0;
            socklen_t len = sizeof err;
            if (getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
            if (err != 0) {
                note(where + ": " + errno_text(err), false, err);
                continue;
            }
        }
        return std::make_unique<SocketTransport>(fd.release(), false, where);
    }
    if (errors.empty()) errors = "no address found";
    Status status = all_timeouts ? Status::timeout : Status::connect;
    // One address that is the host itself (an IP literal): name it once.
    if (tried == 1 && (last_where == name + " port " + service || last_where == "[" + name + "] port " + service))
        throw Error(status, "cannot connect to " + errors, last_errno);
    throw Error(status, "cannot connect to " + host + " port " + service + ": " + errors, last_errno);
}

std::unique_ptr<SocketTransport> SocketTransport::connect_unix(const std::string& path, const ConnectOptions& options) {
    sockaddr_un sa{};
    if (path.size() >= sizeof sa.sun_path)
        throw Error(Status::invalid_argument, "unix socket path is " + std::to_string(path.size()) +
                                                  " bytes, more than a socket address holds (" +
                                                  std::to_string(sizeof sa.sun_path - 1) + ")");
    if (path.find('\0') != std::string::npos)
        throw Error(Status::invalid_argument, "unix socket path contains a NUL byte");
    sa.sun_family = AF_UNIX;
    std::memcpy(sa.sun_path, path.data(), path.size());
    Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (fd.get() < 0) throw Error(Status::connect, "socket: " + errno_text(errno), errno);
    Deadline deadline = Clock::now() + options.timeout;
    for (;;) {
        if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0) break;
        int err = errno;
        if (err == EINTR) continue;
        if (err == EAGAIN) {
            // The listener's backlog is full; try again until the deadline.
            if (Clock::now() >= deadline)
                throw Error(Status::timeout,
                            "cannot connect to " + path + ": its backlog stayed full for " +
                                std::to_string(options.timeout.count()) + " ms",
                            ETIMEDOUT);
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
            continue;
        }
        if (err == EINPROGRESS) {
            if (!wait_fd(fd.get(), POLLOUT, deadline))
                throw Error(Status::timeout, "cannot connect to " + path + ": timed out", ETIMEDOUT);
            int soerr = 0;
            socklen_t len = sizeof soerr;
            getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &soerr, &len);
            if (soerr == 0) break;
            err = soerr;
        }
        throw Error(Status::connect, "cannot connect to unix socket " + path + ": " + errno_text(err), err);
    }
    return std::make_unique<SocketTransport>(fd.release(), true, path);
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
