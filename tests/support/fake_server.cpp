// fake_server.cpp - the fake LMTP server: listener, one thread per connection, the LMTP session.
//
// Written from scratch for the tests and independent of liblmtp on purpose (its own line reader,
// its own dot-unstuffing). Behaviour is documented in fake_lmtp.h.
#include "fake_server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace fake {
namespace {

constexpr std::size_t kMaxLine = 1000;            // bytes, CRLF included
constexpr std::size_t kReadChunk = 64 * 1024;     // one recv()
constexpr std::size_t kReadBatch = 256 * 1024;    // at most this much is read before processing
constexpr std::size_t kFaultRecord = 1024 * 1024; // of a fault output, only this much goes to sent
constexpr int kCloseDrainMs = 1000;               // after FIN, how long we wait for the client's

std::string upper(std::string s) {
    for (char &c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return s;
}

bool iequals(const std::string &a, const std::string &b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
            return false;
    return true;
}

bool istarts_with(const std::string &s, const std::string &prefix) {
    return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

std::string trim(const std::string &s) {
    std::size_t b = 0, e = s.size();
    while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
    while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
    return s.substr(b, e - b);
}

bool all_digits(const std::string &s) {
    if (s.empty()) return false;
    for (char c : s)
        if (c < '0' || c > '9') return false;
    return true;
}

bool non_ascii(const std::string &s) {
    for (char c : s)
        if (static_cast<unsigned char>(c) >= 0x80) return true;
    return false;
}

// "2.1.5 " style prefix at the start of a text line?
bool starts_with_enhanced(const std::string &t) {
    std::size_t i = 0;
    if (t.size() < 5 || (t[0] != '2' && t[0] != '4' && t[0] != '5') || t[1] != '.') return false;
    i = 2;
    for (int part = 0; part < 2; ++part) {
        std::size_t digits = 0;
        while (i < t.size() && t[i] >= '0' && t[i] <= '9') ++i, ++digits;
        if (digits == 0 || digits > 3) return false;
        if (part == 0) {
            if (i >= t.size() || t[i] != '.') return false;
            ++i;
        }
    }
    return i == t.size() || t[i] == ' ';
}

enum class Ctx { Rcpt, Data };

// The enhanced code and the default text (after "<addr> ") of a rule reply.
void rule_defaults(Ctx ctx, int code, std::string &ecode, std::string &text) {
    const int cls = code / 100;
    if (cls == 2) {
        ecode = ctx == Ctx::Rcpt ? "2.1.5" : "2.0.0";
        text = ctx == Ctx::Rcpt ? "OK" : "Saved";
        return;
    }
    struct Known { int code; const char *rcpt_e, *rcpt_t, *data_e, *data_t; };
    static const Known known[] = {
        {421, "4.3.2", "Service shutting down", "4.3.2", "Service shutting down"},
        {450, "4.2.1", "Mailbox temporarily unavailable", "4.2.0", "Mailbox temporarily unavailable"},
        {451, "4.3.0", "Temporary failure", "4.3.0", "Temporary failure"},
        {452, "4.2.2", "Mailbox is full, try again later", "4.2.2", "Mailbox is full, try again later"},
        {550, "5.1.1", "User doesn't exist", "5.2.0", "Delivery failed"},
        {551, "5.1.6", "User not local", "5.1.6", "User not local"},
        {552, "5.2.2", "Quota exceeded", "5.2.2", "Quota exceeded"},
        {553, "5.1.3", "Mailbox name not allowed", "5.1.3", "Mailbox name not allowed"},
        {554, "5.7.1", "Rejected", "5.6.0", "Message rejected"},
    };
    for (const Known &k : known) {
        if (k.code == code) {
            ecode = ctx == Ctx::Rcpt ? k.rcpt_e : k.data_e;
            text = ctx == Ctx::Rcpt ? k.rcpt_t : k.data_t;
            return;
        }
    }
    if (cls == 4) {
        ecode = "4.0.0";
        text = "Temporary failure";
    } else if (cls == 5) {
        ecode = "5.0.0";
        text = "Rejected";
    } else {
        ecode.clear();  // 1xx/3xx carry no enhanced code
        text = "Reply";
    }
}

bool parse_code(const std::string &s, int &code) {
    if (s.size() != 3 || !all_digits(s) || s[0] < '1' || s[0] > '5') return false;
    code = std::atoi(s.c_str());
    return true;
}

// "CODE[:text]"
bool parse_code_text(const std::string &s, int &code, std::string &text) {
    std::size_t colon = s.find(':');
    if (!parse_code(trim(s.substr(0, colon)), code)) return false;
    text = colon == std::string::npos ? std::string() : s.substr(colon + 1);
    return true;
}

std::atomic<unsigned> g_unix_counter{0};

}  // namespace

bool parse_rules(const std::string &spec, std::vector<Rule> &out, std::string &err) {
    out.clear();
    std::size_t start = 0;
    while (start <= spec.size()) {
        std::size_t end = spec.find(';', start);
        if (end == std::string::npos) end = spec.size();
        std::string entry = spec.substr(start, end - start);
        start = end + 1;
        if (trim(entry).empty()) continue;
        std::size_t eq = entry.find('=');
        if (eq == std::string::npos) {
            err = "rule without '=': " + entry;
            return false;
        }
        Rule r;
        r.address = trim(entry.substr(0, eq));
        if (r.address.size() >= 2 && r.address.front() == '<' && r.address.back() == '>')
            r.address = r.address.substr(1, r.address.size() - 2);
        std::string codes = entry.substr(eq + 1);
        std::size_t comma = codes.find(',');
        std::string first = codes.substr(0, comma);
        if (r.address.empty() || !parse_code_text(first, r.rcpt_code, r.rcpt_text)) {
            err = "bad rule: " + entry;
            return false;
        }
        if (comma != std::string::npos &&
            !parse_code_text(codes.substr(comma + 1), r.data_code, r.data_text)) {
            err = "bad DATA code in rule: " + entry;
            return false;
        }
        out.push_back(r);
    }
    return true;
}

// ---------------------------------------------------------------------------------------------
// One connection.

class Session {
public:
    Session(Server &srv, int fd) : srv_(srv), o_(srv.options()), fd_(fd), tcp_(o_.family != AF_UNIX) {}
    ~Session() {
        if (fd_ >= 0) ::close(fd_);
    }
    void run();

private:
    enum class Mode { Command, Discard, Body, Chunk };
    enum class Body { Bol, Mid, Cr, Dot, DotCr };

    // I/O
    int wait(short events, int timeout_ms);
    void read_available();
    void quickack();
    bool pause(int ms);
    bool send_all(const char *p, std::size_t n);
    bool write_out(const char *p, std::size_t n);
    bool flush();
    void finish();

    // protocol
    void process();
    void command(std::string line);
    void dispatch(const std::string &verb, const std::string &arg);
    void bdat(const std::string &arg, bool fired);
    void finish_chunk();
    bool feed_body();
    void finish_message(const std::string &verb);
    void emit_fault(const std::string &verb);
    void queue(const std::string &bytes, const std::string &verb);
    std::string reply(int code, const char *ecode, const std::string &text) const;
    std::string rule_reply(Ctx ctx, int code, const std::string &custom, const std::string &addr) const;
    const Rule *find_rule(const std::string &addr) const;
    bool has_cap(const char *name) const;
    bool check_params(const std::string &params, bool mail, std::string &error);
    void reset_transaction();
    void add_to_message(const char *p, std::size_t n);
    bool must_wait(const std::string &verb) const {
        return !o_.pipelining || verb.empty() || verb == "LHLO" || verb == "DATA";
    }

    Server &srv_;
    const Options &o_;
    int fd_;
    bool tcp_;

    std::string in_;
    std::size_t pos_ = 0;
    bool eof_ = false;
    bool fresh_input_ = false;
    std::string out_;
    bool need_wait_ = false;

    // A fault output too big to build in memory: written by flush() after out_.
    bool stream_ = false;
    long stream_count_ = 0;  // < 0: forever
    bool flush_now_ = false;

    bool action_set_ = false;
    Action action_ = Action::Continue;

    // LMTP state
    bool greeted_ = false;
    bool in_mail_ = false;
    bool smtputf8_ = false;
    bool bdat_used_ = false;
    std::vector<std::string> rcpts_;
    Mode mode_ = Mode::Command;
    Body body_ = Body::Bol;
    std::string msg_;
    std::size_t msg_size_ = 0;
    unsigned long long chunk_left_ = 0;
    unsigned long long chunk_size_ = 0;
    bool chunk_last_ = false;
    bool chunk_fired_ = false;
    int chunk_error_ = 0;  // 0 = accepted, else the reply code to give after the chunk
    std::string chunk_error_text_;
};

int Session::wait(short events, int timeout_ms) {
    pollfd p[2];
    p[0].fd = fd_;
    p[0].events = events;
    p[0].revents = 0;
    p[1].fd = srv_.wake_fd();
    p[1].events = POLLIN;
    p[1].revents = 0;
    for (;;) {
        int r = ::poll(p, 2, timeout_ms);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (p[1].revents) return -1;
        if (r == 0) return 0;
        return p[0].revents ? p[0].revents : 0;
    }
}

// Read what is there (without blocking), record it, keep it for processing.
void Session::read_available() {
    if (eof_) return;
    if (pos_ > 0) {
        in_.erase(0, pos_);
        pos_ = 0;
    }
    char buf[kReadChunk];
    std::size_t total = 0;
    // ACK at once rather than with the delayed ACK: otherwise a client with Nagle on holds its next
    // small command until our reply comes, and a lockstep violation would go unseen. (Linux clears
    // TCP_QUICKACK by itself, so it is set again around every read.)
    quickack();
    while (total < kReadBatch) {
        ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) {
            in_.append(buf, static_cast<std::size_t>(n));
            srv_.add_client_bytes(buf, static_cast<std::size_t>(n));
            total += static_cast<std::size_t>(n);
            fresh_input_ = true;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        eof_ = true;  // 0 = orderly close, < 0 = reset or other error
        break;
    }
    quickack();
}

void Session::quickack() {
    if (!tcp_) return;
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
}

// Sleep ms, reading (and recording) what the client sends meanwhile. False if stopping.
bool Session::pause(int ms) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                        deadline - std::chrono::steady_clock::now())
                        .count();
        if (left <= 0) return true;
        if (eof_) {  // nothing more to read: only watch the stop pipe
            pollfd w{srv_.wake_fd(), POLLIN, 0};
            int r = ::poll(&w, 1, static_cast<int>(left));
            if (r > 0) return false;
            continue;
        }
        int r = wait(POLLIN, static_cast<int>(left));
        if (r < 0) return false;
        if (r > 0) {
            std::size_t before = in_.size() - pos_;
            read_available();
            if (in_.size() - pos_ > before && need_wait_) {
                srv_.add_violation();
                need_wait_ = false;
            }
        }
    }
}

bool Session::send_all(const char *p, std::size_t n) {
    while (n > 0) {
        ssize_t w = ::send(fd_, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            p += w;
            n -= static_cast<std::size_t>(w);
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (wait(POLLOUT, -1) < 0) return false;
            continue;
        }
        return false;
    }
    return true;
}

bool Session::write_out(const char *p, std::size_t n) {
    if (o_.byte_delay_ms <= 0) return send_all(p, n);
    for (std::size_t i = 0; i < n; ++i) {
        if (!send_all(p + i, 1)) return false;
        if (i + 1 < n && !pause(o_.byte_delay_ms)) return false;
    }
    return true;
}

// Write the queued replies (one flush). False if the connection is over.
bool Session::flush() {
    if (out_.empty() && !stream_) return true;
    if (o_.reply_delay_ms > 0 && !pause(o_.reply_delay_ms)) return false;
    srv_.add_server_bytes(out_.data(), out_.size(), true);
    bool ok = write_out(out_.data(), out_.size());
    out_.clear();
    if (ok && stream_) {
        stream_ = false;
        // fault_fill repeated stream_count_ times (forever if < 0), then fault_tail.
        std::string block;
        while (block.size() < 64 * 1024) block += o_.fault_fill;
        const std::size_t per_block = block.size() / o_.fault_fill.size();
        std::size_t recorded = 0;
        long left = stream_count_;
        while (ok && left != 0) {
            std::size_t copies = per_block;
            if (left > 0 && static_cast<unsigned long>(left) < per_block) copies = static_cast<std::size_t>(left);
            std::size_t n = copies * o_.fault_fill.size();
            if (recorded < kFaultRecord) {
                std::size_t r = std::min(n, kFaultRecord - recorded);
                srv_.add_server_bytes(block.data(), r, false);
                recorded += r;
            }
            ok = write_out(block.data(), n);
            if (left > 0) left -= static_cast<long>(copies);
        }
        if (ok && !o_.fault_tail.empty()) {
            srv_.add_server_bytes(o_.fault_tail.data(), o_.fault_tail.size(), false);
            ok = write_out(o_.fault_tail.data(), o_.fault_tail.size());
        }
    }
    need_wait_ = false;
    return ok;
}

// After the last reply: do the fault action, or close politely.
void Session::finish() {
    if (action_ == Action::Hang) {
        // Never answer, keep reading (and recording) until the client closes.
        while (!eof_) {
            if (wait(POLLIN, -1) < 0) return;
            read_available();
            in_.clear();  // recorded, never processed
            pos_ = 0;
        }
        return;
    }
    if (action_ == Action::StopReading) {
        // Never read again; end when the client is gone (or on stop).
        for (;;) {
            int r = wait(POLLRDHUP, -1);
            if (r < 0 || (r & (POLLRDHUP | POLLHUP | POLLERR))) return;
        }
    }
    if (action_ == Action::Reset) {
        linger l;
        l.l_onoff = 1;
        l.l_linger = 0;
        ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        return;  // the destructor closes: RST
    }
    // Close: send FIN after the replies, then let the client close first (closing with unread
    // bytes in the socket would send an RST and could destroy our last reply in flight).
    ::shutdown(fd_, SHUT_WR);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kCloseDrainMs);
    while (!eof_) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                        deadline - std::chrono::steady_clock::now())
                        .count();
        if (left <= 0) return;
        int r = wait(POLLIN, static_cast<int>(left));
        if (r <= 0) return;
        read_available();
        in_.clear();
        pos_ = 0;
    }
}

void Session::run() {
    // The greeting, or the fault at connect.
    bool fired = o_.fault && o_.fault_on.empty() && srv_.fault_fires();
    if (fired && !o_.fault_keep) {
        emit_fault("");
    } else {
        queue(o_.has_greeting ? o_.greeting : "220 " + o_.hostname + " LMTP ready\r\n", "");
        if (fired) emit_fault("");
    }
    for (;;) {
        fresh_input_ = false;
        process();
        if (!flush()) return;
        if (action_set_) break;
        if (flush_now_ || fresh_input_) {
            flush_now_ = false;
            continue;
        }
        if (eof_) return;
        if (wait(POLLIN, -1) < 0) return;
        read_available();
    }
    finish();
}

// Handle every complete item (command line, body bytes, chunk bytes) in the input.
void Session::process() {
    while (!action_set_ && !flush_now_ && pos_ < in_.size()) {
        const std::size_t avail = in_.size() - pos_;
        if (mode_ == Mode::Command || mode_ == Mode::Discard) {
            const char *start = in_.data() + pos_;
            const char *nl = static_cast<const char *>(std::memchr(start, '\n', avail));
            if (!nl) {
                if (mode_ == Mode::Discard || avail >= kMaxLine) {
                    mode_ = Mode::Discard;  // too long already: drop it, answer at its end
                    pos_ = in_.size();
                }
                break;
            }
            std::size_t len = static_cast<std::size_t>(nl - start) + 1;
            std::string line(start, len);
            pos_ += len;
            if (mode_ == Mode::Discard || len > kMaxLine) {
                mode_ = Mode::Command;
                queue(reply(500, "5.5.2", "Line too long"), "?");
            } else {
                line.pop_back();  // LF
                if (!line.empty() && line.back() == '\r') line.pop_back();
                command(line);
            }
        } else if (mode_ == Mode::Body) {
            if (!feed_body()) break;
            finish_message(".");
        } else {  // Chunk
            std::size_t n = static_cast<std::size_t>(std::min<unsigned long long>(chunk_left_, avail));
            if (chunk_error_ == 0 && !(chunk_fired_ && !o_.fault_keep)) add_to_message(in_.data() + pos_, n);
            pos_ += n;
            chunk_left_ -= n;
            if (chunk_left_ > 0) break;
            finish_chunk();
        }
        // Bytes already here although the client had to wait for a reply we have not sent yet.
        if (need_wait_ && pos_ < in_.size()) {
            srv_.add_violation();
            need_wait_ = false;
        }
    }
}

void Session::queue(const std::string &bytes, const std::string &verb) {
    if (bytes.empty()) return;
    out_ += bytes;
    if (must_wait(verb)) need_wait_ = true;
}

std::string Session::reply(int code, const char *ecode, const std::string &text) const {
    std::string r = std::to_string(code);
    r += ' ';
    if (o_.enhanced && ecode && *ecode) {
        r += ecode;
        r += ' ';
    }
    r += text;
    r += "\r\n";
    return r;
}

std::string Session::rule_reply(Ctx ctx, int code, const std::string &custom, const std::string &addr) const {
    std::string ecode, text;
    rule_defaults(ctx, code, ecode, text);
    std::vector<std::string> lines;
    if (custom.empty()) {
        lines.push_back("<" + addr + "> " + text);
    } else {
        std::size_t s = 0;
        for (;;) {
            std::size_t bar = custom.find('|', s);
            lines.push_back(custom.substr(s, bar == std::string::npos ? std::string::npos : bar - s));
            if (bar == std::string::npos) break;
            s = bar + 1;
        }
    }
    std::string r;
    const std::string c = std::to_string(code);
    for (std::size_t i = 0; i < lines.size(); ++i) {
        r += c;
        r += i + 1 < lines.size() ? '-' : ' ';
        if (o_.enhanced && !ecode.empty() && !starts_with_enhanced(lines[i])) r += ecode + " ";
        r += lines[i];
        r += "\r\n";
    }
    return r;
}

const Rule *Session::find_rule(const std::string &addr) const {
    for (const Rule &r : srv_.rules())
        if (iequals(r.address, addr)) return &r;
    return nullptr;
}

bool Session::has_cap(const char *name) const {
    for (const std::string &c : srv_.capabilities()) {
        std::string word = c.substr(0, c.find(' '));
        if (iequals(word, name)) return true;
    }
    return false;
}

void Session::reset_transaction() {
    in_mail_ = false;
    smtputf8_ = false;
    bdat_used_ = false;
    rcpts_.clear();
    msg_.clear();
    msg_size_ = 0;
}

void Session::add_to_message(const char *p, std::size_t n) {
    msg_size_ += n;
    if (o_.record_limit == 0) {
        msg_.append(p, n);
    } else if (msg_.size() < o_.record_limit) {
        msg_.append(p, std::min(n, o_.record_limit - msg_.size()));
    }
}

// Fault output: fault_reply, fault_fill x fault_repeat, fault_tail; then the action.
void Session::emit_fault(const std::string &verb) {
    const std::size_t fill_total = o_.fault_fill.size() * static_cast<std::size_t>(o_.fault_repeat > 0 ? o_.fault_repeat : 0);
    if (!o_.fault_fill.empty() && (o_.fault_repeat < 0 || fill_total > 1024 * 1024)) {
        // Too big to build: flush what is queued, then stream it.
        out_ += o_.fault_reply;
        stream_ = true;
        stream_count_ = o_.fault_repeat;
        flush_now_ = true;
        if (must_wait(verb)) need_wait_ = true;
    } else {
        std::string bytes = o_.fault_reply;
        if (!o_.fault_fill.empty())
            for (long i = 0; i < o_.fault_repeat; ++i) bytes += o_.fault_fill;
        bytes += o_.fault_tail;
        queue(bytes, verb);
    }
    if (o_.fault_action != Action::Continue) {
        action_set_ = true;
        action_ = o_.fault_action;
    }
}

void Session::command(std::string line) {
    std::size_t sp = line.find(' ');
    std::string verb = upper(line.substr(0, sp));
    std::string arg = sp == std::string::npos ? std::string() : line.substr(sp + 1);

    bool fired = o_.fault && !o_.fault_on.empty() && o_.fault_on != "." &&
                 istarts_with(line, o_.fault_on) && srv_.fault_fires();
    if (verb == "BDAT" && has_cap("CHUNKING")) {
        bdat(arg, fired);
        return;
    }
    if (fired && !o_.fault_keep) {
        emit_fault(verb);
        return;
    }
    dispatch(verb, arg);
    if (fired) emit_fault(verb);
}

bool Session::check_params(const std::string &params, bool mail, std::string &error) {
    std::size_t s = 0;
    while (s < params.size()) {
        std::size_t e = params.find(' ', s);
        if (e == std::string::npos) e = params.size();
        std::string p = params.substr(s, e - s);
        s = e + 1;
        if (p.empty()) continue;
        std::size_t eq = p.find('=');
        std::string key = upper(p.substr(0, eq));
        std::string value = eq == std::string::npos ? std::string() : p.substr(eq + 1);
        const char *needs = nullptr;
        if (mail && key == "SIZE") {
            needs = "SIZE";
            if (!all_digits(value) || value.size() > 18) {
                error = reply(501, "5.5.4", "Invalid SIZE parameter");
                return false;
            }
            if (o_.size && std::strtoull(value.c_str(), nullptr, 10) > o_.size) {
                error = reply(552, "5.3.4", "Message size exceeds fixed maximum message size");
                return false;
            }
        } else if (mail && key == "BODY") {
            std::string v = upper(value);
            if (v == "7BIT" || v == "8BITMIME") {
                needs = "8BITMIME";
            } else if (v == "BINARYMIME") {
                needs = "BINARYMIME";
            } else {
                error = reply(501, "5.5.4", "Invalid BODY parameter");
                return false;
            }
        } else if (mail && (key == "RET" || key == "ENVID")) {
            needs = "DSN";
        } else if (!mail && (key == "NOTIFY" || key == "ORCPT")) {
            needs = "DSN";
        } else if (mail && key == "SMTPUTF8") {
            needs = "SMTPUTF8";
            smtputf8_ = true;
        } else if (mail && key == "AUTH") {
            needs = "AUTH";
        }
        if (!needs || !has_cap(needs)) {
            error = reply(555, "5.5.4", "Unsupported parameter " + key);
            return false;
        }
    }
    return true;
}

// Split "FROM:<path> params" into path and params. False on bad syntax.
static bool split_path(const std::string &arg, const char *keyword, std::string &path, std::string &params) {
    const std::string kw = keyword;
    if (!istarts_with(arg, kw) || arg.size() <= kw.size() || arg[kw.size()] != '<') return false;
    std::size_t close = arg.find('>', kw.size());
    if (close == std::string::npos) return false;
    path = arg.substr(kw.size() + 1, close - kw.size() - 1);
    std::string rest = arg.substr(close + 1);
    if (!rest.empty() && rest[0] != ' ') return false;
    params = rest;
    return true;
}

void Session::dispatch(const std::string &verb, const std::string &arg) {
    if (verb == "LHLO") {
        if (trim(arg).empty()) {
            queue(reply(501, "5.5.4", "Syntax: LHLO hostname"), verb);
            return;
        }
        greeted_ = true;
        reset_transaction();
        const std::vector<std::string> &caps = srv_.capabilities();
        std::string r = "250" + std::string(caps.empty() ? " " : "-") + o_.hostname + "\r\n";
        for (std::size_t i = 0; i < caps.size(); ++i)
            r += "250" + std::string(i + 1 < caps.size() ? "-" : " ") + caps[i] + "\r\n";
        queue(r, verb);
    } else if (verb == "EHLO" || verb == "HELO") {
        queue(reply(500, "5.5.1", "Use LHLO"), verb);
    } else if (verb == "MAIL" || verb == "SEND" || verb == "SOML" || verb == "SAML") {
        std::string path, params, error;
        if (!greeted_) {
            queue(reply(503, "5.5.1", "LHLO first"), verb);
        } else if (in_mail_) {
            queue(reply(503, "5.5.1", "MAIL already given"), verb);
        } else if (!split_path(arg, "FROM:", path, params)) {
            queue(reply(501, "5.5.4", "Syntax: MAIL FROM:<address> [parameters]"), verb);
        } else if (!check_params(params, true, error)) {
            smtputf8_ = false;  // check_params may have seen SMTPUTF8 before the bad parameter
            queue(error, verb);
        } else if (non_ascii(path) && !smtputf8_) {
            queue(reply(553, "5.6.7", "Non-ASCII address needs SMTPUTF8"), verb);
        } else {
            in_mail_ = true;
            rcpts_.clear();
            queue(reply(250, "2.1.0", "OK"), verb);
        }
    } else if (verb == "RCPT") {
        std::string addr, params, error;
        if (!in_mail_) {
            queue(reply(503, "5.5.1", "MAIL needed first"), verb);
        } else if (!split_path(arg, "TO:", addr, params)) {
            queue(reply(501, "5.5.4", "Syntax: RCPT TO:<address> [parameters]"), verb);
        } else if (addr.empty()) {
            queue(reply(501, "5.1.3", "Empty recipient"), verb);
        } else if (!check_params(params, false, error)) {
            queue(error, verb);
        } else if (non_ascii(addr) && !smtputf8_) {
            queue(reply(553, "5.6.7", "<" + addr + "> Non-ASCII address needs SMTPUTF8"), verb);
        } else {
            const Rule *r = find_rule(addr);
            int code = r ? r->rcpt_code : 250;
            queue(rule_reply(Ctx::Rcpt, code, r ? r->rcpt_text : std::string(), addr), verb);
            if (code / 100 == 2) rcpts_.push_back(addr);
        }
    } else if (verb == "DATA") {
        if (!trim(arg).empty()) {
            queue(reply(501, "5.5.4", "Syntax: DATA"), verb);
        } else if (!in_mail_) {
            queue(reply(503, "5.5.1", "MAIL needed first"), verb);
        } else if (bdat_used_) {
            queue(reply(503, "5.5.1", "DATA after BDAT"), verb);
        } else if (rcpts_.empty()) {
            queue(reply(503, "5.5.1", "No valid recipients"), verb);
        } else {
            queue("354 go ahead\r\n", verb);
            mode_ = Mode::Body;
            body_ = Body::Bol;
            msg_.clear();
            msg_size_ = 0;
        }
    } else if (verb == "RSET") {
        reset_transaction();
        queue(reply(250, "2.0.0", "OK"), verb);
    } else if (verb == "NOOP") {
        queue(reply(250, "2.0.0", "OK"), verb);
    } else if (verb == "VRFY") {
        if (trim(arg).empty())
            queue(reply(501, "5.5.4", "Syntax: VRFY address"), verb);
        else
            queue(reply(252, "2.0.0", "Cannot VRFY user, but will accept message and attempt delivery"), verb);
    } else if (verb == "EXPN") {
        if (trim(arg).empty()) {
            queue(reply(501, "5.5.4", "Syntax: EXPN list"), verb);
        } else {
            const char *members[] = {"alpha", "beta", "gamma"};
            std::string r;
            for (int i = 0; i < 3; ++i) {
                std::string line = std::string(members[i]) + " <" + members[i] + "@" + o_.hostname + ">";
                std::string one = reply(250, "2.1.5", line);
                if (i < 2) one[3] = '-';
                r += one;
            }
            queue(r, verb);
        }
    } else if (verb == "HELP") {
        std::string r = reply(214, "2.0.0", "fake LMTP server, commands:");
        r[3] = '-';
        std::string r2 = reply(214, "2.0.0", "LHLO MAIL RCPT DATA BDAT RSET NOOP VRFY EXPN HELP ETRN QUIT");
        r2[3] = '-';
        r += r2 + reply(214, "2.0.0", "End of HELP");
        queue(r, verb);
    } else if (verb == "ETRN") {
        if (trim(arg).empty())
            queue(reply(501, "5.5.4", "Syntax: ETRN node"), verb);
        else
            queue(reply(250, "2.0.0", "Queuing started"), verb);
    } else if (verb == "QUIT") {
        queue(reply(221, "2.0.0", o_.hostname + " closing connection"), verb);
        action_set_ = true;
        action_ = Action::Close;
    } else if (verb == "STARTTLS" || verb == "AUTH" || verb == "TURN" || verb == "ATRN") {
        queue(reply(502, "5.5.1", "Not implemented"), verb);
    } else if (verb.empty()) {
        queue(reply(500, "5.5.2", "Syntax error"), verb);
    } else {
        queue(reply(500, "5.5.2", "Unknown command"), verb);
    }
}

void Session::bdat(const std::string &arg, bool fired) {
    std::string a = trim(arg);
    std::size_t sp = a.find(' ');
    std::string size = a.substr(0, sp);
    std::string rest = sp == std::string::npos ? std::string() : trim(a.substr(sp + 1));
    if (!all_digits(size) || size.size() > 15 || !(rest.empty() || iequals(rest, "LAST"))) {
        // We cannot know how many bytes follow: what comes next is read as commands.
        if (fired && !o_.fault_keep) {
            emit_fault("BDAT");
            return;
        }
        queue(reply(501, "5.5.4", "Syntax: BDAT size [LAST]"), "BDAT");
        if (fired) emit_fault("BDAT");
        return;
    }
    chunk_size_ = chunk_left_ = std::strtoull(size.c_str(), nullptr, 10);
    chunk_last_ = !rest.empty();
    chunk_fired_ = fired;
    chunk_error_ = 0;
    if (!in_mail_) {
        chunk_error_ = 503;
        chunk_error_text_ = "MAIL needed first";
    } else if (rcpts_.empty()) {
        chunk_error_ = 503;
        chunk_error_text_ = "No valid recipients";
    } else if (!(fired && !o_.fault_keep) && !bdat_used_) {
        bdat_used_ = true;
        msg_.clear();
        msg_size_ = 0;
    }
    mode_ = Mode::Chunk;
    if (chunk_left_ == 0) finish_chunk();
}

void Session::finish_chunk() {
    mode_ = Mode::Command;
    if (chunk_fired_ && !o_.fault_keep) {
        emit_fault("BDAT");  // not executed: the chunk was swallowed, the state is unchanged
        return;
    }
    if (chunk_error_) {
        queue(reply(chunk_error_, "5.5.1", chunk_error_text_), "BDAT");
    } else if (chunk_last_) {
        finish_message("BDAT");
    } else {
        queue(reply(250, "2.0.0", std::to_string(chunk_size_) + " octets received"), "BDAT");
    }
    if (chunk_fired_) emit_fault("BDAT");
}

// Dot-unstuff body bytes into msg_. True once the final "." line has been consumed.
bool Session::feed_body() {
    while (pos_ < in_.size()) {
        const char c = in_[pos_];
        switch (body_) {
        case Body::Mid: {
            // Fast path: copy up to the next CR.
            const char *start = in_.data() + pos_;
            const char *cr = static_cast<const char *>(std::memchr(start, '\r', in_.size() - pos_));
            std::size_t n = cr ? static_cast<std::size_t>(cr - start) : in_.size() - pos_;
            add_to_message(start, n);
            pos_ += n;
            if (cr) {
                add_to_message("\r", 1);
                ++pos_;
                body_ = Body::Cr;
            }
            continue;
        }
        case Body::Bol:
            ++pos_;
            if (c == '.') {
                body_ = Body::Dot;
            } else {
                add_to_message(&c, 1);
                body_ = c == '\r' ? Body::Cr : Body::Mid;
            }
            continue;
        case Body::Cr:
            ++pos_;
            add_to_message(&c, 1);
            body_ = c == '\n' ? Body::Bol : c == '\r' ? Body::Cr : Body::Mid;
            continue;
        case Body::Dot:
            ++pos_;
            if (c == '\r') {
                body_ = Body::DotCr;
            } else {
                add_to_message(&c, 1);  // the leading dot is removed
                body_ = Body::Mid;
            }
            continue;
        case Body::DotCr:
            if (c == '\n') {
                ++pos_;
                mode_ = Mode::Command;
                return true;
            }
            // ".\r" + something else: the dot is removed, the CR kept; c is seen again after CR.
            add_to_message("\r", 1);
            body_ = Body::Cr;
            continue;
        }
    }
    return false;
}

void Session::finish_message(const std::string &verb) {
    mode_ = Mode::Command;
    const bool too_big = o_.size != 0 && msg_size_ > o_.size;
    std::string replies;
    for (const std::string &addr : rcpts_) {
        if (too_big) {
            replies += reply(552, "5.3.4", "<" + addr + "> Message too big");
            continue;
        }
        const Rule *r = find_rule(addr);
        replies += rule_reply(Ctx::Data, r ? r->data_code : 250, r ? r->data_text : std::string(), addr);
    }
    srv_.add_message(std::move(msg_));
    reset_transaction();
    const bool fired = o_.fault && o_.fault_on == "." && srv_.fault_fires();
    if (!fired || o_.fault_keep) queue(replies, verb);
    if (fired) emit_fault(verb);
}

// ---------------------------------------------------------------------------------------------
// The server.

std::unique_ptr<Server> Server::start(const Options &opt, std::string &err) {
    std::unique_ptr<Server> s(new Server);
    s->opt_ = opt;
    Options &o = s->opt_;
    if (!parse_rules(o.rules, s->rules_, err)) return nullptr;
    if (o.fault && !o.fault_fill.empty() && o.fault_repeat == 0) o.fault_fill.clear();
    if (o.hostname.empty()) o.hostname = "fake.example";
    if (o.pipelining) s->caps_.push_back("PIPELINING");
    if (o.enhanced) s->caps_.push_back("ENHANCEDSTATUSCODES");
    if (o.eightbitmime) s->caps_.push_back("8BITMIME");
    if (o.size) s->caps_.push_back("SIZE " + std::to_string(o.size));
    for (const std::string &c : o.extra_caps)
        if (!trim(c).empty()) s->caps_.push_back(trim(c));

    if (::pipe2(s->wake_, O_CLOEXEC | O_NONBLOCK) != 0) {
        err = std::string("pipe2: ") + std::strerror(errno);
        return nullptr;
    }
    int fd = ::socket(o.family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        err = std::string("socket: ") + std::strerror(errno);
        return nullptr;
    }
    s->listen_fd_ = fd;
    int one = 1;
    if (o.rcvbuf > 0) ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &o.rcvbuf, sizeof o.rcvbuf);
    if (o.family == AF_INET) {
        ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(static_cast<uint16_t>(o.port));
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0) {
            err = std::string("bind 127.0.0.1: ") + std::strerror(errno);
            return nullptr;
        }
        socklen_t len = sizeof a;
        ::getsockname(fd, reinterpret_cast<sockaddr *>(&a), &len);
        s->port_ = ntohs(a.sin_port);
        s->host_ = "127.0.0.1";
    } else if (o.family == AF_INET6) {
        ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        sockaddr_in6 a{};
        a.sin6_family = AF_INET6;
        a.sin6_port = htons(static_cast<uint16_t>(o.port));
        a.sin6_addr = in6addr_loopback;
        if (::bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0) {
            err = std::string("bind [::1]: ") + std::strerror(errno);
            return nullptr;
        }
        socklen_t len = sizeof a;
        ::getsockname(fd, reinterpret_cast<sockaddr *>(&a), &len);
        s->port_ = ntohs(a.sin6_port);
        s->host_ = "::1";
    } else if (o.family == AF_UNIX) {
        if (o.unix_path.empty()) {
            const char *dir = std::getenv("TMPDIR");
            if (!dir || !*dir) dir = "/tmp";
            o.unix_path = std::string(dir) + "/fake-lmtp-" + std::to_string(::getpid()) + "-" +
                          std::to_string(g_unix_counter.fetch_add(1)) + ".sock";
        }
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        if (o.unix_path.size() >= sizeof a.sun_path) {
            err = "unix socket path too long: " + o.unix_path;
            return nullptr;
        }
        std::memcpy(a.sun_path, o.unix_path.c_str(), o.unix_path.size() + 1);
        struct stat st;
        if (::lstat(o.unix_path.c_str(), &st) == 0) {
            if (!S_ISSOCK(st.st_mode)) {
                err = "exists and is not a socket: " + o.unix_path;
                return nullptr;
            }
            ::unlink(o.unix_path.c_str());
        }
        if (::bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0) {
            err = "bind " + o.unix_path + ": " + std::strerror(errno);
            return nullptr;
        }
        s->unlink_path_ = true;
        s->host_ = o.unix_path;
    } else {
        err = "unsupported address family " + std::to_string(o.family);
        return nullptr;
    }
    if (::listen(fd, 64) != 0) {
        err = std::string("listen: ") + std::strerror(errno);
        return nullptr;
    }
    try {
        Server *raw = s.get();
        s->acceptor_ = std::thread([raw] { raw->accept_loop(); });
    } catch (const std::exception &e) {
        err = std::string("thread: ") + e.what();
        return nullptr;
    }
    return s;
}

Server::~Server() { stop(); }

void Server::stop() {
    if (stopped_) return;
    stopped_ = true;
    if (wake_[1] >= 0) {
        char c = 'x';
        while (::write(wake_[1], &c, 1) < 0 && errno == EINTR) {
        }
    }
    if (acceptor_.joinable()) acceptor_.join();
    reap(true);
    if (listen_fd_ >= 0) ::close(listen_fd_);
    listen_fd_ = -1;
    for (int &w : wake_) {
        if (w >= 0) ::close(w);
        w = -1;
    }
    if (unlink_path_) ::unlink(opt_.unix_path.c_str());
    unlink_path_ = false;
}

void Server::reap(bool all) {
    for (auto it = conns_.begin(); it != conns_.end();) {
        bool done;
        {
            std::lock_guard<std::mutex> lock(rec_.mu);
            done = it->done;
        }
        if (done || all) {
            if (it->thread.joinable()) it->thread.join();
            it = conns_.erase(it);
        } else {
            ++it;
        }
    }
}

void Server::accept_loop() {
    for (;;) {
        pollfd p[2];
        p[0].fd = listen_fd_;
        p[0].events = POLLIN;
        p[0].revents = 0;
        p[1].fd = wake_[0];
        p[1].events = POLLIN;
        p[1].revents = 0;
        int r = ::poll(p, 2, -1);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 || p[1].revents) return;
        int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                pollfd w{wake_[0], POLLIN, 0};
                ::poll(&w, 1, 50);  // out of resources: do not spin
            }
            continue;
        }
        if (opt_.family != AF_UNIX) {
            int one = 1;
            ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        reap(false);
        {
            std::lock_guard<std::mutex> lock(rec_.mu);
            ++rec_.connections;
            ++rec_.open;
        }
        try {
            conns_.emplace_back();
            Conn *c = &conns_.back();
            c->thread = std::thread([this, c, fd] {
                {
                    Session s(*this, fd);
                    try {
                        s.run();
                    } catch (...) {
                        // out of memory in a test helper: drop the connection
                    }
                }
                std::lock_guard<std::mutex> lock(rec_.mu);
                c->done = true;
                --rec_.open;
                rec_.cv.notify_all();
            });
        } catch (...) {
            if (!conns_.empty() && !conns_.back().thread.joinable()) conns_.pop_back();
            ::close(fd);
            std::lock_guard<std::mutex> lock(rec_.mu);
            --rec_.open;
            rec_.cv.notify_all();
        }
    }
}

void Server::add_client_bytes(const char *p, std::size_t n) {
    std::lock_guard<std::mutex> lock(rec_.mu);
    std::size_t keep = n;
    if (opt_.record_limit)
        keep = rec_.transcript.size() >= opt_.record_limit ? 0 : std::min(n, opt_.record_limit - rec_.transcript.size());
    rec_.transcript.append(p, keep);
    if (opt_.on_client_bytes) opt_.on_client_bytes(p, n);
}

void Server::add_server_bytes(const char *p, std::size_t n, bool count_flush) {
    std::lock_guard<std::mutex> lock(rec_.mu);
    std::size_t keep = n;
    if (opt_.record_limit)
        keep = rec_.sent.size() >= opt_.record_limit ? 0 : std::min(n, opt_.record_limit - rec_.sent.size());
    rec_.sent.append(p, keep);
    if (count_flush) ++rec_.flushes;
    if (opt_.on_server_bytes) opt_.on_server_bytes(p, n);
}

void Server::add_message(std::string msg) {
    std::lock_guard<std::mutex> lock(rec_.mu);
    rec_.messages.push_back(std::move(msg));
    if (opt_.on_message) opt_.on_message(rec_.messages.size() - 1, rec_.messages.back());
}

void Server::add_violation() {
    std::lock_guard<std::mutex> lock(rec_.mu);
    ++rec_.violations;
}

bool Server::fault_fires() {
    std::lock_guard<std::mutex> lock(rec_.mu);
    ++rec_.fault_matches;
    if (rec_.fault_matches <= opt_.fault_skip) return false;
    if (opt_.fault_times && rec_.fault_fired >= opt_.fault_times) return false;
    ++rec_.fault_fired;
    return true;
}

}  // namespace fake
