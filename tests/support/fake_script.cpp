// fake_script.cpp - script mode of the fake LMTP server (fake_lmtp.h, "Script mode"): a connection
// that checks the client sends exactly each step's bytes and answers with the step's reply.
#include "fake_server.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>

namespace fake {
namespace {

constexpr std::size_t kShowWhole = 200;       // bytes shown whole in an error message
constexpr std::size_t kShowBefore = 40;       // ... else this much before the first difference
constexpr std::size_t kShowAfter = 80;        // ... and this much from it
constexpr std::size_t kDripRecord = 1 << 20;  // FAKE_DRIP: how much of the repeats fake_sent() keeps
constexpr int kLockstepWindowMs = 5;          // how long a lockstep step watches for early bytes

// Bytes as a C string literal would show them: "MAIL FROM:<a@x>\r\n".
std::string quoted(const std::string &s, std::size_t from, std::size_t to) {
    to = std::min(to, s.size());
    std::string out = from > 0 ? "..." : "";
    out += '"';
    for (std::size_t i = from; i < to; ++i) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        if (c == '\r') out += "\\r";
        else if (c == '\n') out += "\\n";
        else if (c == '\t') out += "\\t";
        else if (c == '"' || c == '\\') (out += '\\') += static_cast<char>(c);
        else if (c < 0x20 || c >= 0x7f) {
            char hex[8];
            std::snprintf(hex, sizeof hex, "\\x%02x", c);
            out += hex;
        } else {
            out += static_cast<char>(c);
        }
    }
    out += '"';
    if (to < s.size()) out += "...";
    return out;
}

std::string quoted(const std::string &s) { return quoted(s, 0, s.size()); }

class Player {
public:
    Player(Server &srv, int fd, std::size_t index)
        : srv_(srv), steps_(srv.options().script), fd_(fd), index_(index) {}
    ~Player() {
        if (fd_ >= 0) ::close(fd_);
    }
    void run();

private:
    enum class Io { Got, Quiet, Gone, Stop };
    Io pull(int timeout_ms);
    bool pause(int ms);
    bool write_all(const char *p, std::size_t n);
    bool reply(const ScriptStep &st);
    void drip(const ScriptStep &st);
    bool expect(std::size_t i);
    void lockstep(std::size_t i);
    void listen_to_the_end();
    void stop_reading();
    void fail(std::size_t i, const std::string &why);

    Server &srv_;
    const std::vector<ScriptStep> &steps_;
    int fd_;
    std::size_t index_;
    std::string in_;  // received, not yet matched
    bool eof_ = false;
};

// Wait up to timeout_ms (< 0: no limit) for the client, then read (and record) all there is.
Player::Io Player::pull(int timeout_ms) {
    if (eof_) return Io::Gone;
    pollfd p[2] = {{fd_, POLLIN, 0}, {srv_.wake_fd(), POLLIN, 0}};
    for (;;) {
        int r = ::poll(p, 2, timeout_ms);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 || p[1].revents) return Io::Stop;
        if (r == 0) return Io::Quiet;
        break;
    }
    char buf[64 * 1024];
    bool got = false;
    for (;;) {
        ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) {
            in_.append(buf, static_cast<std::size_t>(n));
            srv_.add_client_bytes(buf, static_cast<std::size_t>(n));
            got = true;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        eof_ = true;  // orderly close, reset or other error
        break;
    }
    return got ? Io::Got : eof_ ? Io::Gone : Io::Quiet;
}

// Sleep ms, reading (and recording) what comes meanwhile. False on fake_stop.
bool Player::pause(int ms) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    for (;;) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
        if (left <= 0) return true;
        if (eof_) {  // nothing more to read: only watch the stop pipe
            pollfd w{srv_.wake_fd(), POLLIN, 0};
            if (::poll(&w, 1, static_cast<int>(left)) > 0) return false;
            continue;
        }
        if (pull(static_cast<int>(left)) == Io::Stop) return false;
    }
}

bool Player::write_all(const char *p, std::size_t n) {
    while (n > 0) {
        ssize_t w = ::send(fd_, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            p += w;
            n -= static_cast<std::size_t>(w);
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            pollfd q[2] = {{fd_, POLLOUT, 0}, {srv_.wake_fd(), POLLIN, 0}};
            if (::poll(q, 2, -1) < 0 && errno != EINTR) return false;
            if (q[1].revents) return false;
            continue;
        }
        return false;
    }
    return true;
}

// The step's reply: one flush, at once or byte by byte. False if the connection is over.
bool Player::reply(const ScriptStep &st) {
    if (st.reply.empty()) return true;
    srv_.add_server_bytes(st.reply.data(), st.reply.size(), true);
    if (st.byte_delay_ms <= 0) return write_all(st.reply.data(), st.reply.size());
    for (char c : st.reply)
        if (!write_all(&c, 1) || !pause(st.byte_delay_ms)) return false;
    return true;
}

// FAKE_DRIP: the reply again every delay_ms until the client goes (or fake_stop).
void Player::drip(const ScriptStep &st) {
    std::size_t recorded = 0;
    for (;;) {
        const std::size_t keep = std::min(st.reply.size(), kDripRecord - std::min(recorded, kDripRecord));
        srv_.add_server_bytes(st.reply.data(), keep, true);
        recorded += keep;
        if (!write_all(st.reply.data(), st.reply.size()) || !pause(st.delay_ms) || eof_) return;
    }
}

void Player::fail(std::size_t i, const std::string &why) {
    srv_.add_script_error("connection " + std::to_string(index_) + ", script[" + std::to_string(i) + "] of " +
                          std::to_string(steps_.size()) + ": " + why);
}

// Wait for step i's bytes and check them as they come. False (error recorded) if they differ or
// the client went before sending them all.
bool Player::expect(std::size_t i) {
    const std::string &want = steps_[i].expect;
    for (;;) {
        const std::size_t n = std::min(in_.size(), want.size());
        const auto diff = std::mismatch(want.begin(), want.begin() + static_cast<std::ptrdiff_t>(n), in_.begin());
        if (diff.first != want.begin() + static_cast<std::ptrdiff_t>(n)) {
            const std::size_t at = static_cast<std::size_t>(diff.first - want.begin());
            if (want.size() <= kShowWhole) {
                fail(i, "expected " + quoted(want) + " but received " + quoted(in_, 0, want.size()));
            } else {
                const std::size_t from = at > kShowBefore ? at - kShowBefore : 0;
                fail(i, "expected " + std::to_string(want.size()) + " bytes, received bytes differ at byte " +
                            std::to_string(at) + ": expected " + quoted(want, from, at + kShowAfter) +
                            " but received " + quoted(in_, from, std::min(at + kShowAfter, want.size())));
            }
            return false;
        }
        if (n == want.size()) break;
        const Io io = pull(-1);
        if (io == Io::Stop) return false;
        if (io == Io::Gone) {
            fail(i, in_.empty() ? "the client closed the connection; expected " + quoted(want, 0, kShowWhole)
                                : "the client closed the connection after sending " + quoted(in_) +
                                      " of the expected " + quoted(want, 0, kShowWhole));
            return false;
        }
    }
    in_.erase(0, want.size());
    return true;
}

// Lockstep: nothing more may come before the reply (in the same read, or within the window or
// the step's delay).
void Player::lockstep(std::size_t i) {
    const ScriptStep &st = steps_[i];
    if (in_.empty()) pause(std::max(kLockstepWindowMs, st.then == Action::Drip ? 0 : st.delay_ms));
    if (in_.empty()) return;
    srv_.add_violation();
    fail(i, "the client sent " + quoted(in_, 0, kShowWhole) + " before it had the reply to " +
                quoted(st.expect, 0, kShowWhole) + " (lockstep)");
}

// Record what the client still sends, until it closes (or fake_stop).
void Player::listen_to_the_end() {
    for (;;) {
        in_.clear();
        const Io io = pull(-1);
        if (io == Io::Gone || io == Io::Stop) return;
    }
}

// Never read again; end when the client is gone (or on fake_stop).
void Player::stop_reading() {
    for (;;) {
        pollfd p[2] = {{fd_, POLLRDHUP, 0}, {srv_.wake_fd(), POLLIN, 0}};
        int r = ::poll(p, 2, -1);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 || p[1].revents || (p[0].revents & (POLLRDHUP | POLLHUP | POLLERR))) return;
    }
}

void Player::run() {
    for (std::size_t i = 0; i < steps_.size(); ++i) {
        const ScriptStep &st = steps_[i];
        if (!expect(i)) break;
        if (!st.allow_early) lockstep(i);
        else if (st.delay_ms > 0 && st.then != Action::Drip && !pause(st.delay_ms)) return;
        if (i + 1 == steps_.size()) srv_.add_script_done();  // the last reply goes out now
        if (st.then == Action::Drip) return drip(st);
        if (!reply(st)) {
            if (i + 1 < steps_.size()) fail(i, "the connection broke while the reply was written");
            return;
        }
        switch (st.then) {
        case Action::Close:
            ::close(fd_);  // at once: what the client writes from now on meets a closed socket
            fd_ = -1;
            return;
        case Action::Reset: {
            linger l{1, 0};
            ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
            return;  // the destructor closes: RST
        }
        case Action::StopReading:
            return stop_reading();
        case Action::Hang:
            return listen_to_the_end();
        default:
            break;
        }
    }
    listen_to_the_end();  // after the script (or a departure from it): record only
}

}  // namespace

void play_script(Server &srv, int fd, std::size_t index) {
    Player p(srv, fd, index);
    p.run();
}

}  // namespace fake
