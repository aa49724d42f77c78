// lmtp-sink: the benchmark's LMTP server. Loopback only, a thread per
// connection. It speaks LMTP with PIPELINING, CHUNKING, ENHANCEDSTATUSCODES,
// 8BITMIME and SIZE, and answers the way real servers do: it reads all that is
// available, answers every complete command, and writes its replies in one
// flush once its input is drained. Each flush is a round trip some client
// waited for; the sink counts, per message, the flushes that carried one of
// its replies (MAIL, RCPT, DATA, BDAT, final). Every body is checked (length
// and hash) against the body generated for the size it declares (body.hpp).
//
// A test instrument, written apart from core/: its own line reader and its own
// dot-unstuffing.
//
//   lmtp-sink [--port N] [--rtt-us N] [--refuse STR] [--defer STR] [--max-size N] [--exit-on-eof]
//   lmtp-sink --make-body SIZE FILE
//
// Prints "PORT n" when listening. Stops on SIGTERM/SIGINT or, with
// --exit-on-eof, when stdin reaches EOF, and prints one line "STATS key=value ..." (see print_stats).

#include "body.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

struct Config {
    unsigned rtt_us = 0;
    std::string refuse;  // RCPT refused (550) when the address contains this
    std::string defer;   // final reply 452 after the message when the address contains this
    std::uint64_t max_size = 64ull << 20;
};
Config cfg;

struct Stats {
    std::atomic<std::uint64_t> connections{0}, messages{0}, verified{0}, bad_bodies{0}, rcpt_delivered{0},
        rcpt_refused{0}, rcpt_deferred{0}, body_bytes{0}, flushes{0}, txn_flushes{0}, message_flushes{0}, max_message_flushes{0},
        protocol_errors{0};
    std::atomic<int> active{0};
};
Stats stats;

int stop_pipe[2] = {-1, -1};

// ---- expected bodies ------------------------------------------------------------

std::mutex expect_mu;
std::map<std::uint64_t, std::uint64_t> expect_hash;  // size -> hash of make_body(size)

std::uint64_t expected_hash(std::uint64_t size) {
    {
        std::lock_guard<std::mutex> lk(expect_mu);
        auto it = expect_hash.find(size);
        if (it != expect_hash.end()) return it->second;
    }
    std::string body = sink::make_body(static_cast<std::size_t>(size));
    sink::Hash64 h;
    h.update(body.data(), body.size());
    std::lock_guard<std::mutex> lk(expect_mu);
    return expect_hash[size] = h.final();
}

bool contains(std::string_view s, const std::string& needle) {
    return !needle.empty() && s.find(needle) != std::string_view::npos;
}

bool iequals_prefix(std::string_view line, std::string_view prefix) {
    if (line.size() < prefix.size()) return false;
    for (std::size_t i = 0; i < prefix.size(); ++i) {
        char a = line[i];
        if (a >= 'a' && a <= 'z') a = static_cast<char>(a - 32);
        if (a != prefix[i]) return false;
    }
    return true;
}

// The address inside <...> (or the whole argument).
std::string_view address_of(std::string_view arg) {
    auto lt = arg.find('<');
    auto gt = arg.find('>', lt == std::string_view::npos ? 0 : lt);
    if (lt == std::string_view::npos || gt == std::string_view::npos) return arg;
    return arg.substr(lt + 1, gt - lt - 1);
}

void update_max(std::atomic<std::uint64_t>& a, std::uint64_t v) {
    std::uint64_t cur = a.load();
    while (v > cur && !a.compare_exchange_weak(cur, v)) {
    }
}

// ---- one connection ---------------------------------------------------------------

class Connection {
public:
    explicit Connection(int fd) : fd_(fd) {}
    void run();

private:
    enum class Mode { command, data, bdat };
    enum class Dot { line_start, dot, dot_cr, mid };

    struct Message {
        std::uint32_t flushes = 0;
        bool final_queued = false;
    };

    void process();
    bool command(std::string_view line);
    void data_bytes();
    void bdat_bytes();
    void emit(const char* p, std::size_t n);
    void end_message();
    void reply(std::string_view text, bool tagged = true);
    bool flush();
    void reset_transaction();

    int fd_;
    std::string in_;
    std::size_t pos_ = 0;
    std::string out_;
    bool quit_ = false;
    bool hello_ = false;
    Mode mode_ = Mode::command;

    // the transaction
    bool mail_ = false;
    std::vector<std::string> rcpts_;
    std::uint64_t msg_id_ = 0;  // the current transaction's message (ids start at 1)
    std::uint64_t next_id_ = 0;
    std::map<std::uint64_t, Message> msgs_;
    std::vector<std::uint64_t> touched_;  // messages with a reply in out_

    // the body
    Dot dot_ = Dot::line_start;
    std::uint64_t bdat_left_ = 0;
    bool bdat_last_ = false;
    bool bdat_discard_ = false;
    sink::Hash64 hash_;
    std::string head_;  // the first octets of the body, for X-Bench-Size
};

void Connection::reply(std::string_view text, bool tagged) {
    out_.append(text.data(), text.size());
    out_ += "\r\n";
    if (tagged && msg_id_ != 0 && (touched_.empty() || touched_.back() != msg_id_)) touched_.push_back(msg_id_);
}

void Connection::reset_transaction() {
    if (msg_id_ && !msgs_[msg_id_].final_queued) msgs_.erase(msg_id_);
    mail_ = false;
    rcpts_.clear();
    msg_id_ = 0;
}

// Writes out_ in one go (after the simulated round trip); every message with a
// reply in it has waited one more round trip. The counters are updated before
// the write, so a client that has its replies finds them counted.
bool Connection::flush() {
    if (out_.empty()) return true;
    if (cfg.rtt_us) std::this_thread::sleep_for(std::chrono::microseconds(cfg.rtt_us));
    stats.flushes++;
    if (!touched_.empty()) stats.txn_flushes++;
    for (std::uint64_t id : touched_) {
        auto it = msgs_.find(id);
        if (it == msgs_.end()) continue;
        it->second.flushes++;
        if (it->second.final_queued) {
            stats.message_flushes += it->second.flushes;
            update_max(stats.max_message_flushes, it->second.flushes);
            msgs_.erase(it);
        }
    }
    touched_.clear();
    std::size_t off = 0;
    while (off < out_.size()) {
        ssize_t n = ::send(fd_, out_.data() + off, out_.size() - off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        off += static_cast<std::size_t>(n);
    }
    out_.clear();
    return true;
}

void Connection::emit(const char* p, std::size_t n) {
    hash_.update(p, n);
    if (head_.size() < 32) head_.append(p, std::min(n, 32 - head_.size()));
}

void Connection::end_message() {
    std::uint64_t len = hash_.length();
    std::uint64_t declared = 0;
    bool ok = false;
    std::size_t hl = std::strlen(sink::kSizeHeader);
    if (head_.size() >= hl + 12 && head_.compare(0, hl, sink::kSizeHeader) == 0) {
        declared = std::strtoull(head_.c_str() + hl, nullptr, 10);
        ok = declared == len && declared >= sink::kMinBodySize && declared <= cfg.max_size &&
             expected_hash(declared) == hash_.final();
    }
    stats.messages++;
    (ok ? stats.verified : stats.bad_bodies)++;
    stats.body_bytes += len;
    for (const std::string& r : rcpts_) {
        if (!ok) {
            reply("554 5.6.0 <" + r + "> Body check failed: " + std::to_string(len) + " octets, not the body of " +
                  std::to_string(declared));
            stats.rcpt_deferred++;  // counted as a failure after the message
        } else if (contains(r, cfg.defer)) {
            reply("452 4.2.2 <" + r + "> Mailbox full, try again later");
            stats.rcpt_deferred++;
        } else {
            reply("250 2.0.0 <" + r + "> Delivered");
            stats.rcpt_delivered++;
        }
    }
    msgs_[msg_id_].final_queued = true;
    mail_ = false;
    rcpts_.clear();
    msg_id_ = 0;
}

bool Connection::command(std::string_view line) {
    auto arg_after = [&](std::size_t n) {
        std::string_view a = line.substr(std::min(n, line.size()));
        while (!a.empty() && a.front() == ' ') a.remove_prefix(1);
        return a;
    };
    if (iequals_prefix(line, "LHLO")) {
        reset_transaction();
        hello_ = true;
        char caps[256];
        std::snprintf(caps, sizeof caps,
                      "250-sink.bench Hello\r\n250-PIPELINING\r\n250-CHUNKING\r\n250-ENHANCEDSTATUSCODES\r\n"
                      "250-8BITMIME\r\n250 SIZE %" PRIu64,
                      cfg.max_size);
        reply(caps, false);
    } else if (iequals_prefix(line, "EHLO") || iequals_prefix(line, "HELO")) {
        reply("500 5.5.1 This is an LMTP server: LHLO", false);
    } else if (iequals_prefix(line, "MAIL FROM:")) {
        if (!hello_) {
            reply("503 5.5.1 LHLO first", false);
        } else if (mail_) {
            reply("503 5.5.1 MAIL already given");
        } else {
            std::string_view a = arg_after(10);
            std::size_t sp = a.find(" SIZE=");
            if (sp == std::string_view::npos) sp = a.find(" size=");
            if (sp != std::string_view::npos &&
                std::strtoull(std::string(a.substr(sp + 6)).c_str(), nullptr, 10) > cfg.max_size) {
                reply("552 5.3.4 Message too big", false);
            } else {
                mail_ = true;
                msg_id_ = ++next_id_;
                msgs_[msg_id_];
                hash_ = sink::Hash64();
                head_.clear();
                reply("250 2.1.0 Sender OK");
            }
        }
    } else if (iequals_prefix(line, "RCPT TO:")) {
        if (!mail_) {
            reply("503 5.5.1 MAIL first");
        } else {
            std::string addr(address_of(arg_after(8)));
            if (contains(addr, cfg.refuse)) {
                reply("550 5.1.1 <" + addr + "> User unknown");
                stats.rcpt_refused++;
            } else {
                reply("250 2.1.5 <" + addr + "> Recipient OK");
                rcpts_.push_back(std::move(addr));
            }
        }
    } else if (iequals_prefix(line, "DATA")) {
        if (!mail_) {
            reply("503 5.5.1 MAIL first");
        } else if (rcpts_.empty()) {
            reply("503 5.5.1 No valid recipients");
        } else {
            reply("354 End data with <CR><LF>.<CR><LF>");
            mode_ = Mode::data;
            dot_ = Dot::line_start;
            hash_ = sink::Hash64();
            head_.clear();
        }
    } else if (iequals_prefix(line, "BDAT ")) {
        std::string_view a = arg_after(5);
        char* end = nullptr;
        std::string num(a);
        bdat_left_ = std::strtoull(num.c_str(), &end, 10);
        if (end == num.c_str()) {
            reply("501 5.5.4 BDAT needs a size", false);
            stats.protocol_errors++;
            return false;
        }
        std::string_view rest(end);
        while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
        bdat_last_ = iequals_prefix(rest, "LAST");
        bdat_discard_ = !mail_ || rcpts_.empty();
        mode_ = Mode::bdat;
        bdat_bytes();
    } else if (iequals_prefix(line, "RSET")) {
        reset_transaction();
        hash_ = sink::Hash64();
        head_.clear();
        reply("250 2.0.0 OK", false);
    } else if (iequals_prefix(line, "NOOP")) {
        reply("250 2.0.0 OK");
    } else if (iequals_prefix(line, "QUIT")) {
        reply("221 2.0.0 Bye", false);
        quit_ = true;
    } else if (iequals_prefix(line, "VRFY")) {
        reply("252 2.5.0 Cannot VRFY user", false);
    } else {
        reply("500 5.5.2 Unknown command", false);
    }
    return true;
}

// The first LF followed by a dot in [p, end), or nullptr: 16 octets at a time.
const char* find_lf_dot(const char* p, const char* end) {
#if defined(__SSE2__)
    const __m128i lf = _mm_set1_epi8('\n');
    const __m128i dot = _mm_set1_epi8('.');
    for (; end - p >= 17; p += 16) {
        const __m128i here = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
        const __m128i next = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 1));
        const int m = _mm_movemask_epi8(_mm_and_si128(_mm_cmpeq_epi8(here, lf), _mm_cmpeq_epi8(next, dot)));
        if (m) return p + __builtin_ctz(static_cast<unsigned>(m));
    }
#endif
    for (; end - p >= 2; ++p)
        if (p[0] == '\n' && p[1] == '.') return p;
    return nullptr;
}

// Body bytes after DATA: removes dot-stuffing, stops at the lone dot.
void Connection::data_bytes() {
    while (pos_ < in_.size()) {
        const char* p = in_.data() + pos_;
        std::size_t n = in_.size() - pos_;
        switch (dot_) {
        case Dot::mid: {
            // Up to the next line that starts with a dot (the only place a byte is removed), or the
            // end of what came: the lines in between are data as they are, taken in one piece.
            const char* nl = find_lf_dot(p, p + n);
            if (!nl && n && p[n - 1] == '\n') nl = p + n - 1;  // the dot may come with the next read
            std::size_t take = nl ? static_cast<std::size_t>(nl - p) + 1 : n;
            emit(p, take);
            pos_ += take;
            if (nl) dot_ = Dot::line_start;
            break;
        }
        case Dot::line_start:
            if (*p == '.') {
                dot_ = Dot::dot;
                pos_++;
            } else {
                dot_ = Dot::mid;
            }
            break;
        case Dot::dot:
            if (*p == '\r') {
                dot_ = Dot::dot_cr;
                pos_++;
            } else {
                dot_ = Dot::mid;  // the leading dot is removed; this byte is data
            }
            break;
        case Dot::dot_cr:
            if (*p == '\n') {
                pos_++;
                mode_ = Mode::command;
                end_message();
                return;
            }
            emit("\r", 1);
            dot_ = Dot::mid;
            break;
        }
    }
}

void Connection::bdat_bytes() {
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(bdat_left_, in_.size() - pos_));
    if (!bdat_discard_) emit(in_.data() + pos_, n);
    pos_ += n;
    bdat_left_ -= n;
    if (bdat_left_) return;
    mode_ = Mode::command;
    if (bdat_discard_) {
        // no transaction or no recipient: one 503 (also for LAST, as Dovecot does)
        reply(mail_ ? "503 5.5.1 No valid recipients" : "503 5.5.1 MAIL first");
    } else if (bdat_last_) {
        end_message();
    } else {
        reply("250 2.0.0 " + std::to_string(n) + " octets received");
    }
}

void Connection::process() {
    for (;;) {
        if (mode_ == Mode::data) {
            data_bytes();
            if (mode_ == Mode::data) return;
            continue;
        }
        if (mode_ == Mode::bdat) {
            bdat_bytes();
            if (mode_ == Mode::bdat) return;
            continue;
        }
        if (quit_) return;
        const char* p = in_.data() + pos_;
        std::size_t n = in_.size() - pos_;
        const void* nl = std::memchr(p, '\n', n);
        if (!nl) {
            if (n > 4096) {
                reply("500 5.5.2 Line too long", false);
                stats.protocol_errors++;
                quit_ = true;
            }
            return;
        }
        std::size_t len = static_cast<std::size_t>(static_cast<const char*>(nl) - p);
        pos_ += len + 1;
        if (len && p[len - 1] == '\r') len--;
        if (!command(std::string_view(p, len))) {
            quit_ = true;
            return;
        }
    }
}

void Connection::run() {
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    reply("220 sink.bench LMTP benchmark sink ready", false);
    if (!flush()) return;
    std::vector<char> buf(256 * 1024);
    bool blocking = true;
    while (!quit_) {
        ssize_t n = ::recv(fd_, buf.data(), buf.size(), blocking ? 0 : MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            // input drained: answer now
            if (!flush()) return;
            blocking = true;
            continue;
        }
        if (n <= 0) break;
        if (pos_ > 0 && pos_ == in_.size()) {
            in_.clear();
            pos_ = 0;
        } else if (pos_ > 65536) {
            in_.erase(0, pos_);
            pos_ = 0;
        }
        in_.append(buf.data(), static_cast<std::size_t>(n));
        process();
        // with replies waiting, look once more for input before flushing
        blocking = out_.empty();
    }
    flush();
}

void print_stats() {
    std::printf(
        "STATS connections=%" PRIu64 " messages=%" PRIu64 " verified=%" PRIu64 " bad_bodies=%" PRIu64
        " rcpt_delivered=%" PRIu64 " rcpt_refused=%" PRIu64 " rcpt_deferred=%" PRIu64 " body_bytes=%" PRIu64
        " flushes=%" PRIu64 " txn_flushes=%" PRIu64 " message_flushes=%" PRIu64 " max_message_flushes=%" PRIu64 " protocol_errors=%" PRIu64
        "\n",
        stats.connections.load(), stats.messages.load(), stats.verified.load(), stats.bad_bodies.load(),
        stats.rcpt_delivered.load(), stats.rcpt_refused.load(), stats.rcpt_deferred.load(), stats.body_bytes.load(),
        stats.flushes.load(), stats.txn_flushes.load(), stats.message_flushes.load(), stats.max_message_flushes.load(),
        stats.protocol_errors.load());
    std::fflush(stdout);
}

void on_signal(int) {
    char c = 's';
    ssize_t r = ::write(stop_pipe[1], &c, 1);
    (void)r;
}

int usage() {
    std::fprintf(stderr,
                 "usage: lmtp-sink [--port N] [--rtt-us N] [--refuse STR] [--defer STR] [--max-size N]\n"
                 "                 [--exit-on-eof]\n"
                 "       lmtp-sink --make-body SIZE FILE\n");
    return 64;
}

}  // namespace

int main(int argc, char** argv) {
    unsigned port = 0;
    bool watch_stdin = false;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto val = [&]() -> const char* {
            if (i + 1 >= argc) {
                usage();
                std::exit(64);
            }
            return argv[++i];
        };
        if (a == "--port") port = static_cast<unsigned>(std::atoi(val()));
        else if (a == "--rtt-us") cfg.rtt_us = static_cast<unsigned>(std::atoi(val()));
        else if (a == "--refuse") cfg.refuse = val();
        else if (a == "--defer") cfg.defer = val();
        else if (a == "--exit-on-eof") watch_stdin = true;
        else if (a == "--max-size") cfg.max_size = std::strtoull(val(), nullptr, 10);
        else if (a == "--make-body") {
            std::size_t size = std::strtoull(val(), nullptr, 10);
            const char* file = val();
            if (size < sink::kMinBodySize) {
                std::fprintf(stderr, "lmtp-sink: a body has at least %zu octets\n", sink::kMinBodySize);
                return 64;
            }
            std::string body = sink::make_body(size);
            FILE* f = std::fopen(file, "wb");
            if (!f || std::fwrite(body.data(), 1, body.size(), f) != body.size() || std::fclose(f) != 0) {
                std::perror(file);
                return 73;
            }
            return 0;
        } else return usage();
    }

    signal(SIGPIPE, SIG_IGN);
    if (pipe(stop_pipe) != 0) return 71;
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);

    int ls = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(static_cast<std::uint16_t>(port));
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(ls, reinterpret_cast<sockaddr*>(&sin), sizeof sin) != 0 || ::listen(ls, 256) != 0) {
        std::perror("lmtp-sink: bind/listen");
        return 71;
    }
    socklen_t sl = sizeof sin;
    getsockname(ls, reinterpret_cast<sockaddr*>(&sin), &sl);
    std::printf("PORT %u\n", ntohs(sin.sin_port));
    std::fflush(stdout);

    for (;;) {
        pollfd pf[3] = {{ls, POLLIN, 0}, {stop_pipe[0], POLLIN, 0}, {0, POLLIN, 0}};
        int r = ::poll(pf, watch_stdin ? 3 : 2, -1);
        if (r < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (pf[1].revents) break;
        if (watch_stdin && pf[2].revents) {
            char b[256];
            ssize_t n = ::read(0, b, sizeof b);
            if (n <= 0) break;  // EOF on stdin: stop
        }
        if (pf[0].revents & POLLIN) {
            int fd = ::accept4(ls, nullptr, nullptr, SOCK_CLOEXEC);
            if (fd < 0) continue;
            stats.connections++;
            stats.active++;
            std::thread([fd] {
                Connection c(fd);
                c.run();
                ::close(fd);
                stats.active--;
            }).detach();
        }
    }
    // connections still closing finish their counting first (a client has its
    // replies only after they were counted, so this wait is short)
    for (int i = 0; i < 200 && stats.active.load() > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    print_stats();
    std::fflush(stdout);
    std::_Exit(0);
}
