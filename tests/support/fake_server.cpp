// fake_server.cpp - the fake LMTP server: listener, one thread per connection, the LMTP session.
//
// Written from scratch for the tests and independent of liblmtp on purpose (its own line reader,
// its own dot-unstuffing). Behaviour is documented in fake_lmtp.h.
#include "fake_server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/sockios.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
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
constexpr std::size_t kMaxAuthLine = 12288;       // RFC 4954: AUTH lines may be this long
constexpr int kHandshakeMs = 30000;               // a TLS handshake must complete within this
constexpr int kFailHandshakeWaitMs = 2000;        // tls_fail_handshake: wait this long for a ClientHello

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
bool parse_code_text(const std::string &s, int &code, std::string &text, unsigned long *times = nullptr) {
    std::size_t colon = s.find(':');
    std::string c = trim(s.substr(0, colon));
    std::size_t star = c.find('*');
    if (star != std::string::npos) {
        if (!times || star + 1 >= c.size()) return false;
        for (std::size_t i = star + 1; i < c.size(); ++i)
            if (!std::isdigit(static_cast<unsigned char>(c[i]))) return false;
        *times = std::stoul(c.substr(star + 1));
        if (*times == 0) return false;
        c = c.substr(0, star);
    }
    if (!parse_code(c, code)) return false;
    text = colon == std::string::npos ? std::string() : s.substr(colon + 1);
    return true;
}

std::atomic<unsigned> g_unix_counter{0};

// ---- a socket BIO that never raises SIGPIPE ------------------------------------------------
// OpenSSL's own socket BIO writes with write(): a client that has gone away would kill the test
// process with SIGPIPE. This one uses send(MSG_NOSIGNAL); the socket is non-blocking.

int fd_of(BIO *b) { return static_cast<int>(reinterpret_cast<std::intptr_t>(BIO_get_data(b))); }

int nbio_write(BIO *b, const char *in, int inl) {
    BIO_clear_retry_flags(b);
    for (;;) {
        ssize_t n = ::send(fd_of(b), in, static_cast<std::size_t>(inl), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n >= 0) return static_cast<int>(n);
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) BIO_set_retry_write(b);
        return -1;
    }
}

int nbio_read(BIO *b, char *out, int outl) {
    BIO_clear_retry_flags(b);
    for (;;) {
        ssize_t n = ::recv(fd_of(b), out, static_cast<std::size_t>(outl), MSG_DONTWAIT);
        if (n > 0) return static_cast<int>(n);
        if (n == 0) {
            BIO_set_flags(b, BIO_FLAGS_IN_EOF);
            return 0;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) BIO_set_retry_read(b);
        return -1;
    }
}

int nbio_puts(BIO *b, const char *s) { return nbio_write(b, s, static_cast<int>(std::strlen(s))); }

long nbio_ctrl(BIO *b, int cmd, long, void *) {
    if (cmd == BIO_CTRL_FLUSH) return 1;
    if (cmd == BIO_CTRL_EOF) return BIO_test_flags(b, BIO_FLAGS_IN_EOF) ? 1 : 0;
    return 0;
}

int nbio_create(BIO *b) {
    BIO_set_init(b, 1);
    return 1;
}

BIO_METHOD *nbio_method() {
    static BIO_METHOD *m = [] {
        BIO_METHOD *x = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "fake-lmtp socket");
        if (x) {
            BIO_meth_set_write(x, nbio_write);
            BIO_meth_set_read(x, nbio_read);
            BIO_meth_set_puts(x, nbio_puts);
            BIO_meth_set_ctrl(x, nbio_ctrl);
            BIO_meth_set_create(x, nbio_create);
        }
        return x;
    }();
    return m;
}

// The first pending OpenSSL error as text (and the queue emptied).
std::string ssl_error(const char *what) {
    unsigned long e = ERR_get_error();
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    ERR_clear_error();
    return std::string(what) + ": " + (e ? buf : "unknown error");
}

std::string hmac_sha256(const std::string &key, const std::string &data) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
         reinterpret_cast<const unsigned char *>(data.data()), data.size(), md, &len);
    return std::string(reinterpret_cast<char *>(md), len);
}

std::string sha256(const std::string &data) {
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char *>(data.data()), data.size(), md);
    return std::string(reinterpret_cast<char *>(md), sizeof md);
}

std::string random_base64(std::size_t raw_bytes) {
    std::string raw(raw_bytes, '\0');
    if (RAND_bytes(reinterpret_cast<unsigned char *>(&raw[0]), static_cast<int>(raw.size())) != 1) {
        // Never expected; fall back to something unique enough for a test server.
        ERR_clear_error();
        static std::atomic<unsigned long> counter{0};
        raw = std::to_string(::getpid()) + "-" + std::to_string(counter.fetch_add(1)) + "-" +
              std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
    }
    return base64_encode(raw);
}

// SASL: the mechanisms this server implements.
bool known_mechanism(const std::string &m) {
    return m == "PLAIN" || m == "LOGIN" || m == "EXTERNAL" || m == "SCRAM-SHA-256";
}

// RFC 4954 2.x/4.x/5.x texts for auth_fail_code.
void auth_code_text(int code, std::string &ecode, std::string &text) {
    switch (code) {
    case 432: ecode = "4.7.12"; text = "A password transition is needed"; return;
    case 454: ecode = "4.7.0"; text = "Temporary authentication failure"; return;
    case 500: ecode = "5.5.6"; text = "Authentication Exchange line is too long"; return;
    case 501: ecode = "5.5.2"; text = "Invalid authentication exchange"; return;
    case 503: ecode = "5.5.1"; text = "Bad sequence of commands"; return;
    case 504: ecode = "5.5.4"; text = "Unrecognized authentication type"; return;
    case 530: ecode = "5.7.0"; text = "Authentication required"; return;
    case 534: ecode = "5.7.9"; text = "Authentication mechanism is too weak"; return;
    case 535: ecode = "5.7.8"; text = "Authentication credentials invalid"; return;
    case 538: ecode = "5.7.11"; text = "Encryption required for requested authentication mechanism"; return;
    default: break;
    }
    if (code / 100 == 4) {
        ecode = "4.7.0";
        text = "Temporary authentication failure";
    } else {
        ecode = "5.7.0";
        text = "Authentication failed";
    }
}

}  // namespace

std::vector<std::string> parse_mechanisms(const std::string &spec) {
    std::vector<std::string> out;
    std::string cur;
    for (char c : spec + " ") {
        if (c == ' ' || c == ',' || c == '\t' || c == '\n' || c == '\r') {
            if (!cur.empty()) out.push_back(upper(cur));
            cur.clear();
        } else {
            cur += c;
        }
    }
    return out;
}

std::string base64_encode(const std::string &raw) {
    std::string out(4 * ((raw.size() + 2) / 3) + 1, '\0');
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char *>(&out[0]),
                            reinterpret_cast<const unsigned char *>(raw.data()), static_cast<int>(raw.size()));
    out.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
    return out;
}

bool base64_decode(const std::string &text, std::string &raw) {
    raw.clear();
    if (text.size() % 4 != 0) return false;
    std::size_t pad = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (c == '=') {
            if (i + 2 < text.size()) return false;  // '=' only in the last two places
            ++pad;
            continue;
        }
        if (pad) return false;  // data after '='
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '/') return false;
    }
    if (text.empty()) return true;
    std::string out(text.size() / 4 * 3, '\0');
    int n = EVP_DecodeBlock(reinterpret_cast<unsigned char *>(&out[0]),
                            reinterpret_cast<const unsigned char *>(text.data()), static_cast<int>(text.size()));
    if (n < 0 || static_cast<std::size_t>(n) < pad) return false;
    out.resize(static_cast<std::size_t>(n) - pad);
    raw = out;
    return true;
}

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
        if (r.address.empty() || !parse_code_text(first, r.rcpt_code, r.rcpt_text, &r.rcpt_times)) {
            err = "bad rule: " + entry;
            return false;
        }
        if (comma != std::string::npos &&
            !parse_code_text(codes.substr(comma + 1), r.data_code, r.data_text, &r.data_times)) {
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
    Session(Server &srv, int fd, bool tcp) : srv_(srv), o_(srv.options()), fd_(fd), tcp_(tcp) {}
    ~Session() {
        if (ssl_) SSL_free(ssl_);
        if (fd_ >= 0) ::close(fd_);
    }
    void run();

private:
    enum class Mode { Command, Discard, Body, Chunk };
    enum class Body { Bol, Mid, Cr, Dot, DotCr };
    enum class Auth { None, PlainResponse, LoginUser, LoginPassword, ExternalResponse, ScramFirst,
                      ScramFinal, ScramDone };

    // I/O
    int wait(short events, int timeout_ms);
    int wait_raw(short events, int timeout_ms);
    long recv_some(char *buf, std::size_t n);
    long send_some(const char *p, std::size_t n, short &want);
    void read_available();
    void quickack();
    bool pause(int ms);
    bool send_all(const char *p, std::size_t n);
    bool write_out(const char *p, std::size_t n);
    bool flush();
    void finish();

    // TLS
    bool handshake();
    void fail_handshake();
    bool after_starttls();
    void abort_tls();

    // protocol
    void process();
    std::size_t line_limit(const char *start, std::size_t avail) const;
    void command(std::string line);
    void dispatch(const std::string &verb, const std::string &arg);
    std::string gate(const std::string &verb) const;
    void bdat(const std::string &arg, bool fired);
    void finish_chunk();
    bool feed_body();
    bool body_fault(std::size_t n, const std::string &verb);
    void finish_message(const std::string &verb);
    void emit_fault(const std::string &verb);
    void queue(const std::string &bytes, const std::string &verb);
    std::string reply(int code, const char *ecode, const std::string &text) const;
    std::string rule_reply(Ctx ctx, int code, const std::string &custom, const std::string &addr) const;
    const Rule *find_rule(const std::string &addr) const;
    std::vector<std::string> capabilities() const;
    bool has_cap(const char *name) const;
    bool check_params(const std::string &params, bool mail, std::string &error);
    void reset_transaction();
    void add_to_message(const char *p, std::size_t n);
    bool must_wait(const std::string &verb) const {
        return !o_.pipelining || verb.empty() || verb == "LHLO" || verb == "DATA" || verb == "STARTTLS" ||
               verb == "AUTH";
    }

    // AUTH
    void auth_command(const std::string &arg);
    void auth_response(const std::string &line);
    void auth_step(const std::string &data);
    void auth_challenge(const std::string &raw, Auth next);
    void auth_ok(const std::string &user);
    void auth_fail(int code, const std::string &user, const char *ecode = nullptr, const char *text = nullptr);
    void auth_end();
    void auth_plain(const std::string &data);
    void auth_external(const std::string &authzid);
    void scram_first(const std::string &msg);
    void scram_final(const std::string &msg);

    Server &srv_;
    const Options &o_;
    int fd_;
    bool tcp_;

    std::string in_;
    std::size_t pos_ = 0;
    bool eof_ = false;
    bool fresh_input_ = false;
    bool record_input_ = true;  // false once a handshake was failed on purpose: raw TLS bytes
    std::string out_;
    bool need_wait_ = false;

    // A fault output too big to build in memory: written by flush() after out_.
    bool stream_ = false;
    long stream_count_ = 0;  // < 0: forever
    bool flush_now_ = false;

    bool action_set_ = false;
    bool drain_before_reset_ = false;  // fault_replies: the replies before the fault must arrive
    Action action_ = Action::Continue;

    // TLS state
    SSL *ssl_ = nullptr;           // set once a handshake started
    bool tls_ = false;             // the handshake completed: everything now goes through ssl_
    bool starttls_pending_ = false;
    TlsSession tls_info_;

    // AUTH state
    Auth auth_ = Auth::None;
    std::string auth_mech_;        // of the exchange in progress
    bool auth_ir_ = false;         // it began with an initial response (for lockstep)
    bool authed_ = false;
    std::string authed_user_;
    std::string authed_mech_;
    std::string login_user_;
    std::string scram_user_, scram_gs2_, scram_client_first_bare_, scram_server_first_, scram_nonce_;

    // LMTP state
    bool greeted_ = false;
    bool in_mail_ = false;
    bool smtputf8_ = false;
    bool bdat_used_ = false;
    bool bdat_failed_ = false;  // a chunk was rejected: later chunks are discarded until MAIL/RSET
    unsigned long chunk_index_ = 0;  // BDAT chunks of this transaction
    std::vector<std::string> rcpts_;
    Mode mode_ = Mode::Command;
    Body body_ = Body::Bol;
    std::string msg_;
    std::size_t msg_size_ = 0;
    unsigned long long chunk_left_ = 0;
    unsigned long long chunk_size_ = 0;
    bool chunk_last_ = false;
    bool chunk_fired_ = false;
    bool chunk_silent_ = false;  // BDAT LAST without accepted recipients: no reply at all
    bool chunk_reject_ = false;  // bdat_fail_chunk: this chunk is rejected
    unsigned long long body_read_ = 0;  // message bytes read in this transaction (fault_body_bytes)
    bool body_fault_done_ = false;      // fault_body_bytes was reached in this transaction
    int chunk_error_ = 0;  // 0 = accepted, else the reply code to give after the chunk
    std::string chunk_error_ecode_;
    std::string chunk_error_text_;
};

// Poll the socket and the stop pipe. -1: stopping (or poll error), 0: timeout, else revents.
int Session::wait_raw(short events, int timeout_ms) {
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

// Like wait_raw, but decrypted bytes already buffered inside OpenSSL count as readable.
int Session::wait(short events, int timeout_ms) {
    if ((events & POLLIN) && tls_ && SSL_pending(ssl_) > 0) {
        pollfd w{srv_.wake_fd(), POLLIN, 0};
        if (::poll(&w, 1, 0) > 0) return -1;
        return POLLIN;
    }
    return wait_raw(events, timeout_ms);
}

// One read, plain or TLS: > 0 bytes, 0 end of stream (or error), -1 nothing there now.
long Session::recv_some(char *buf, std::size_t n) {
    if (!tls_) {
        for (;;) {
            ssize_t r = ::recv(fd_, buf, n, MSG_DONTWAIT);
            if (r >= 0) return static_cast<long>(r);
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return -1;
            return 0;  // reset or other error: the end
        }
    }
    for (;;) {
        ERR_clear_error();
        std::size_t got = 0;
        if (SSL_read_ex(ssl_, buf, n, &got) == 1) return static_cast<long>(got);
        const int e = SSL_get_error(ssl_, 0);
        if (e == SSL_ERROR_WANT_READ) return -1;
        if (e == SSL_ERROR_WANT_WRITE) {  // e.g. answering a KeyUpdate with a full send buffer
            if (wait_raw(POLLOUT, -1) <= 0) return 0;
            continue;
        }
        ERR_clear_error();
        return 0;  // close_notify, EOF without it, or a TLS error: the end
    }
}

// One write, plain or TLS: > 0 bytes written, 0 error, -1 would block (want = what to poll for).
long Session::send_some(const char *p, std::size_t n, short &want) {
    want = POLLOUT;
    if (!tls_) {
        for (;;) {
            ssize_t w = ::send(fd_, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w > 0) return static_cast<long>(w);
            if (w < 0 && errno == EINTR) continue;
            if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return -1;
            return 0;
        }
    }
    ERR_clear_error();
    std::size_t written = 0;
    if (SSL_write_ex(ssl_, p, n, &written) == 1) return static_cast<long>(written);
    const int e = SSL_get_error(ssl_, 0);
    if (e == SSL_ERROR_WANT_WRITE) return -1;
    if (e == SSL_ERROR_WANT_READ) {
        want = POLLIN;
        return -1;
    }
    ERR_clear_error();
    return 0;
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
        long n = recv_some(buf, sizeof buf);
        if (n > 0) {
            const std::size_t got = static_cast<std::size_t>(n);
            in_.append(buf, got);
            if (record_input_) srv_.add_client_bytes(buf, got);
            total += got;
            fresh_input_ = true;
            continue;
        }
        if (n == 0) eof_ = true;  // orderly close, reset or other error
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
        short want = POLLOUT;
        long w = send_some(p, n, want);
        if (w > 0) {
            p += w;
            n -= static_cast<std::size_t>(w);
            continue;
        }
        if (w < 0) {
            // wait_raw, not wait: SSL_write wants bytes from the socket, not buffered ones.
            if (wait_raw(want, -1) < 0) return false;
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
        // fault_replies: what was written must reach the client before the RST (a socket closed
        // with unsent bytes drops them): wait until the peer acknowledged everything.
        for (int i = 0; drain_before_reset_ && i < 200; ++i) {
            int unacked = 0;
            if (::ioctl(fd_, SIOCOUTQ, &unacked) != 0 || unacked == 0) break;
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        linger l;
        l.l_onoff = 1;
        l.l_linger = 0;
        ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        return;  // the destructor closes: RST
    }
    // Close: send FIN after the replies (and TLS close_notify before it), then let the client close
    // first (closing with unread bytes in the socket would send an RST and could destroy our last
    // reply in flight).
    if (tls_) {
        ERR_clear_error();
        SSL_shutdown(ssl_);  // sends close_notify; we do not wait for the client's
        ERR_clear_error();
    }
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
    if (o_.tls_implicit) {  // TLS from the first byte: the greeting goes inside
        if (o_.tls_fail_handshake) {
            fail_handshake();
            finish();
            return;
        }
        if (!handshake()) {
            abort_tls();
            finish();
            return;
        }
    }
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
        if (starttls_pending_) {  // the 220 is out: now the handshake
            starttls_pending_ = false;
            flush_now_ = false;
            if (!after_starttls()) break;
            continue;
        }
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

// The server side of a TLS handshake on the connection (non-blocking, prompt on stop).
bool Session::handshake() {
    ssl_ = SSL_new(srv_.tls_ctx());
    BIO *bio = ssl_ ? BIO_new(nbio_method()) : nullptr;
    if (!bio) {
        srv_.add_tls_failure(ssl_error("SSL_new"));
        return false;
    }
    BIO_set_data(bio, reinterpret_cast<void *>(static_cast<std::intptr_t>(fd_)));
    SSL_set_bio(ssl_, bio, bio);
    SSL_set_accept_state(ssl_);
    SSL_set_mode(ssl_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kHandshakeMs);
    for (;;) {
        ERR_clear_error();
        const int r = SSL_do_handshake(ssl_);
        if (r == 1) break;
        const int e = SSL_get_error(ssl_, r);
        short want = e == SSL_ERROR_WANT_READ ? POLLIN : e == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
        if (!want) {
            srv_.add_tls_failure(e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN
                                     ? std::string("the client closed or reset during the handshake")
                                     : ssl_error("handshake"));
            return false;
        }
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                              deadline - std::chrono::steady_clock::now())
                              .count();
        const int w = left > 0 ? wait_raw(want, static_cast<int>(left)) : 0;
        if (w <= 0) {
            srv_.add_tls_failure(w == 0 ? "handshake timeout" : "stopped during the handshake");
            ERR_clear_error();
            return false;
        }
    }
    tls_ = true;
    tls_info_ = TlsSession();
    tls_info_.version = SSL_get_version(ssl_);
    const char *cipher = SSL_get_cipher_name(ssl_);
    tls_info_.cipher = cipher ? cipher : "";
    if (X509 *peer = SSL_get1_peer_certificate(ssl_)) {
        tls_info_.client_cert = true;
        tls_info_.client_verified = SSL_get_verify_result(ssl_) == X509_V_OK;
        char cn[256] = "";
        if (X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof cn) > 0)
            tls_info_.client_cn = cn;
        X509_free(peer);
    }
    ERR_clear_error();
    srv_.add_tls(tls_info_);
    return true;
}

// tls_fail_handshake: instead of a handshake, read (unrecorded) what the client sends first, then
// answer garbage (1) or nothing (2); the caller then closes.
void Session::fail_handshake() {
    record_input_ = false;
    in_.clear();
    pos_ = 0;
    if (wait_raw(POLLIN, kFailHandshakeWaitMs) > 0) read_available();
    in_.clear();
    pos_ = 0;
    if (o_.tls_fail_handshake == 1) {
        static const char garbage[] = "garbage: this is not a TLS handshake\r\n";
        srv_.add_server_bytes(garbage, sizeof garbage - 1, false);
        send_all(garbage, sizeof garbage - 1);
    }
    srv_.add_tls_failure(o_.tls_fail_handshake == 1 ? "tls_fail_handshake: garbage sent"
                                                    : "tls_fail_handshake: closed");
    action_set_ = true;
    action_ = Action::Close;
}

// After a failed handshake: close (FIN, then drain what the client still sends, unrecorded, so that
// it sees an orderly close rather than an RST).
void Session::abort_tls() {
    record_input_ = false;
    in_.clear();
    pos_ = 0;
    action_set_ = true;
    action_ = Action::Close;
}

// After "220 ready" went out. False: the connection is over (the caller runs finish()).
bool Session::after_starttls() {
    // Plaintext that came after STARTTLS must not be taken as said inside TLS (RFC 3207 5; the
    // lockstep violation was counted when it was seen).
    in_.clear();
    pos_ = 0;
    if (o_.tls_fail_handshake) {
        fail_handshake();
        return false;
    }
    if (!handshake()) {
        abort_tls();
        return false;
    }
    // RFC 3207 4.2: forget everything; a new LHLO is needed.
    greeted_ = false;
    reset_transaction();
    bdat_failed_ = false;
    authed_ = false;
    authed_user_.clear();
    authed_mech_.clear();
    auth_end();
    return true;
}

// Handle every complete item (command line, body bytes, chunk bytes) in the input.
void Session::process() {
    while (!action_set_ && !flush_now_ && pos_ < in_.size()) {
        const std::size_t avail = in_.size() - pos_;
        if (mode_ == Mode::Command || mode_ == Mode::Discard) {
            const char *start = in_.data() + pos_;
            const char *nl = static_cast<const char *>(std::memchr(start, '\n', avail));
            const std::size_t limit = line_limit(start, avail);
            if (!nl) {
                if (mode_ == Mode::Discard || avail >= limit) {
                    mode_ = Mode::Discard;  // too long already: drop it, answer at its end
                    pos_ = in_.size();
                }
                break;
            }
            std::size_t len = static_cast<std::size_t>(nl - start) + 1;
            std::string line(start, len);
            pos_ += len;
            if (mode_ == Mode::Discard || len > limit) {
                mode_ = Mode::Command;
                if (auth_ != Auth::None) {
                    auth_fail(500, std::string());  // RFC 4954: 500 5.5.6, the exchange ends
                } else {
                    queue(reply(500, "5.5.2", "Line too long"), "?");
                }
            } else {
                line.pop_back();  // LF
                if (!line.empty() && line.back() == '\r') line.pop_back();
                if (auth_ != Auth::None)
                    auth_response(line);
                else
                    command(line);
            }
        } else if (mode_ == Mode::Body) {
            const std::size_t from = pos_;
            const bool done = feed_body();
            if (body_fault(pos_ - from, "DATA")) break;
            if (!done) break;
            finish_message(".");
        } else {  // Chunk
            std::size_t n = static_cast<std::size_t>(std::min<unsigned long long>(chunk_left_, avail));
            if (chunk_error_ == 0 && !chunk_silent_ && !chunk_reject_ && !(chunk_fired_ && !o_.fault_keep))
                add_to_message(in_.data() + pos_, n);
            pos_ += n;
            chunk_left_ -= n;
            if (body_fault(n, "BDAT")) break;
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

// Longest line accepted here, CRLF included: 1000, or 12288 for AUTH and its responses.
std::size_t Session::line_limit(const char *start, std::size_t avail) const {
    if (auth_ != Auth::None) return kMaxAuthLine;
    if (srv_.options().auth_mechanisms.empty() || avail < 5) return kMaxLine;
    return istarts_with(std::string(start, 5), "AUTH ") ? kMaxAuthLine : kMaxLine;
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

// The LHLO capabilities now: the fixed ones, STARTTLS (before TLS), AUTH (unless only after TLS).
std::vector<std::string> Session::capabilities() const {
    std::vector<std::string> caps = srv_.capabilities();
    if (srv_.tls_ctx() && !tls_) caps.push_back("STARTTLS");
    if (!o_.auth_mechanisms.empty() && (tls_ || !o_.auth_after_tls)) {
        std::string a = "AUTH";
        for (const std::string &m : o_.auth_mechanisms) a += " " + m;
        caps.push_back(a);
    }
    return caps;
}

bool Session::has_cap(const char *name) const {
    for (const std::string &c : capabilities()) {
        std::string word = c.substr(0, c.find(' '));
        if (iequals(word, name)) return true;
    }
    return false;
}

void Session::reset_transaction() {
    body_read_ = 0;
    body_fault_done_ = false;
    in_mail_ = false;
    smtputf8_ = false;
    bdat_used_ = false;
    chunk_index_ = 0;
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
        bytes.reserve(bytes.size() + fill_total + o_.fault_tail.size());
        if (o_.fault_fill.size() == 1)  // one call, not a million: valgrind runs these too
            bytes.append(fill_total, o_.fault_fill[0]);
        else if (!o_.fault_fill.empty())
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

// tls_require (RFC 3207 4): before TLS, every command but LHLO, NOOP, RSET, QUIT and STARTTLS gets
// 530. The reply to give, or "" when the command may go ahead.
std::string Session::gate(const std::string &verb) const {
    if (!o_.tls_require || tls_) return std::string();
    if (verb == "LHLO" || verb == "EHLO" || verb == "HELO" || verb == "NOOP" || verb == "RSET" ||
        verb == "QUIT" || verb == "STARTTLS")
        return std::string();
    return reply(530, "5.7.0", "Must issue a STARTTLS command first");
}

void Session::dispatch(const std::string &verb, const std::string &arg) {
    const std::string refused = gate(verb);
    if (!refused.empty()) {
        queue(refused, verb);
        return;
    }
    if (verb == "LHLO") {
        if (trim(arg).empty()) {
            queue(reply(501, "5.5.4", "Syntax: LHLO hostname"), verb);
            return;
        }
        greeted_ = true;
        reset_transaction();
        bdat_failed_ = false;
        const std::vector<std::string> caps = capabilities();
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
        } else if (o_.auth_require && !authed_) {
            queue(reply(530, "5.7.0", "Authentication required"), verb);
        } else if (!split_path(arg, "FROM:", path, params)) {
            queue(reply(501, "5.5.4", "Syntax: MAIL FROM:<address> [parameters]"), verb);
        } else if (!check_params(params, true, error)) {
            smtputf8_ = false;  // check_params may have seen SMTPUTF8 before the bad parameter
            queue(error, verb);
        } else if (non_ascii(path) && !smtputf8_) {
            queue(reply(553, "5.6.7", "Non-ASCII address needs SMTPUTF8"), verb);
        } else {
            in_mail_ = true;
            bdat_failed_ = false;
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
            if (r && !srv_.rule_applies(*r, false)) r = nullptr;
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
        bdat_failed_ = false;
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
    } else if (verb == "STARTTLS" && srv_.tls_ctx()) {
        if (!trim(arg).empty()) {
            queue(reply(501, "5.5.4", "Syntax: STARTTLS"), verb);
        } else if (tls_) {
            queue(reply(503, "5.5.1", "TLS already active"), verb);
        } else if (in_mail_) {
            queue(reply(503, "5.5.1", "STARTTLS not permitted in a mail transaction"), verb);
        } else {
            // tls_plain_after_220: extra plaintext in the same write (the injection a client must
            // refuse to read as if it came inside TLS).
            queue(reply(220, "2.0.0", "ready") + o_.tls_plain_after_220, verb);
            starttls_pending_ = true;
            flush_now_ = true;  // stop processing: what follows is not for the plaintext session
        }
    } else if (verb == "AUTH" && !o_.auth_mechanisms.empty()) {
        auth_command(arg);
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
    chunk_error_ecode_ = "5.5.1";
    chunk_silent_ = false;
    chunk_reject_ = false;
    const bool executed = !(fired && !o_.fault_keep);
    if (o_.tls_require && !tls_) {
        chunk_error_ = 530;
        chunk_error_ecode_ = "5.7.0";
        chunk_error_text_ = "Must issue a STARTTLS command first";
    } else if (bdat_failed_) {
        chunk_error_ = 503;
        chunk_error_text_ = "Transaction failed, chunk discarded";
    } else if (!in_mail_) {
        chunk_error_ = 503;
        chunk_error_text_ = "MAIL needed first";
    } else if (rcpts_.empty()) {
        if (chunk_last_) {
            chunk_silent_ = true;  // RFC 2033 4.3: one reply per accepted recipient, so none
        } else {
            chunk_error_ = 503;
            chunk_error_text_ = "No valid recipients";
        }
    } else if (executed) {
        ++chunk_index_;
        if (o_.bdat_fail_chunk && chunk_index_ == o_.bdat_fail_chunk) {
            chunk_reject_ = true;
        } else if (!bdat_used_) {
            bdat_used_ = true;
            msg_.clear();
            msg_size_ = 0;
        }
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
    if (chunk_silent_) {
        reset_transaction();  // the transaction is over; nothing was delivered, nothing to say
    } else if (chunk_reject_) {
        // bdat_fail_chunk: the message is dropped. LAST still gets one reply per recipient (the
        // client counts them); an earlier chunk gets one reply and the chunks after it, already
        // pipelined, are discarded with one 503 each (RFC 3030 2) until MAIL or RSET.
        const std::string text = "Message too big for system";
        std::string r;
        if (chunk_last_) {
            for (const std::string &addr : rcpts_) r += reply(552, "5.3.4", "<" + addr + "> " + text);
        } else {
            r = reply(552, "5.3.4", text);
            bdat_failed_ = true;
        }
        reset_transaction();
        queue(r, "BDAT");
    } else if (chunk_error_) {
        queue(reply(chunk_error_, chunk_error_ecode_.c_str(), chunk_error_text_), "BDAT");
    } else if (chunk_last_) {
        finish_message("BDAT");
    } else {
        queue(reply(250, "2.0.0", std::to_string(chunk_size_) + " octets received"), "BDAT");
    }
    if (chunk_fired_) emit_fault("BDAT");
}

// fault_body_bytes: count n more message bytes; fire once the count reaches it. True when the
// fault fired with an action (the connection is over: nothing more is processed).
bool Session::body_fault(std::size_t n, const std::string &verb) {
    if (!o_.fault || o_.fault_on != "." || o_.fault_body_bytes == 0 || body_fault_done_) return false;
    body_read_ += n;
    if (body_read_ < o_.fault_body_bytes) return false;
    body_fault_done_ = true;
    if (!srv_.fault_fires()) return false;
    emit_fault(verb);
    return action_set_;
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
    std::string before_fault;  // fault_replies: the first ones, sent before the fault
    long n = 0;
    for (const std::string &addr : rcpts_) {
        const Rule *r = find_rule(addr);
        if (r && !too_big && !srv_.rule_applies(*r, true)) r = nullptr;
        std::string one = too_big ? reply(552, "5.3.4", "<" + addr + "> Message too big")
                                  : rule_reply(Ctx::Data, r ? r->data_code : 250, r ? r->data_text : std::string(), addr);
        if (n++ < o_.fault_replies) before_fault += one;
        replies += one;
    }
    MessageInfo info;
    info.tls = tls_;
    info.auth_user = authed_user_;
    info.auth_mechanism = authed_mech_;
    srv_.add_message(std::move(msg_), std::move(info));
    reset_transaction();
    const bool fired = o_.fault && o_.fault_on == "." && o_.fault_body_bytes == 0 && srv_.fault_fires();
    if (!fired || o_.fault_keep)
        queue(replies, verb);
    else if (o_.fault_replies >= 0) {
        queue(before_fault, verb);
        drain_before_reset_ = true;
    }
    if (fired) emit_fault(verb);
}

// ---------------------------------------------------------------------------------------------
// AUTH (RFC 4954) with PLAIN, LOGIN, EXTERNAL and SCRAM-SHA-256 (RFC 5802, RFC 7677).

namespace {

// SCRAM saslname: "=2C" -> ',', "=3D" -> '='; any other '=' is malformed.
bool scram_unescape(const std::string &in, std::string &out) {
    out.clear();
    for (std::size_t i = 0; i < in.size(); ++i) {
        if (in[i] == ',') return false;
        if (in[i] != '=') {
            out += in[i];
            continue;
        }
        if (in.compare(i, 3, "=2C") == 0) out += ',';
        else if (in.compare(i, 3, "=3D") == 0) out += '=';
        else return false;
        i += 2;
    }
    return true;
}

std::vector<std::string> split_commas(const std::string &s) {
    std::vector<std::string> out;
    std::size_t start = 0;
    for (;;) {
        std::size_t c = s.find(',', start);
        out.push_back(s.substr(start, c == std::string::npos ? std::string::npos : c - start));
        if (c == std::string::npos) return out;
        start = c + 1;
    }
}

}  // namespace

void Session::auth_command(const std::string &arg) {
    const std::string a = trim(arg);
    const std::size_t sp = a.find(' ');
    const std::string mech = upper(a.substr(0, sp));
    const bool has_ir = sp != std::string::npos;
    const std::string ir = has_ir ? trim(a.substr(sp + 1)) : std::string();
    auth_mech_ = mech;
    // RFC 4954 4: AUTH ends a pipelined group, except with an initial response for a mechanism
    // done in one round trip (PLAIN, EXTERNAL).
    auth_ir_ = has_ir && (mech == "PLAIN" || mech == "EXTERNAL");
    const bool listed = std::find(o_.auth_mechanisms.begin(), o_.auth_mechanisms.end(), mech) !=
                        o_.auth_mechanisms.end();
    if (mech.empty()) {
        auth_fail(501, std::string(), "5.5.4", "Syntax: AUTH mechanism [initial-response]");
    } else if (!greeted_) {
        auth_fail(503, std::string(), "5.5.1", "LHLO first");
    } else if (authed_) {
        auth_fail(503, std::string(), "5.5.1", "Already authenticated");
    } else if (in_mail_) {
        auth_fail(503, std::string(), "5.5.1", "AUTH not permitted during a mail transaction");
    } else if (o_.auth_after_tls && !tls_) {
        auth_fail(538, std::string());
    } else if (!listed || !known_mechanism(mech)) {
        auth_fail(504, std::string());
    } else if (o_.auth_fail_code) {
        auth_fail(o_.auth_fail_code, std::string());
    } else if (has_ir) {
        // "=" is an empty initial response.
        std::string data;
        if (ir != "=" && !base64_decode(ir, data)) {
            auth_fail(501, std::string(), "5.5.2", "Invalid base64 data");
            return;
        }
        auth_ = mech == "PLAIN" ? Auth::PlainResponse
              : mech == "LOGIN" ? Auth::LoginUser
              : mech == "EXTERNAL" ? Auth::ExternalResponse
              : Auth::ScramFirst;
        auth_step(data);
    } else if (mech == "PLAIN") {
        auth_challenge(std::string(), Auth::PlainResponse);
    } else if (mech == "LOGIN") {
        auth_challenge("Username:", Auth::LoginUser);
    } else if (mech == "EXTERNAL") {
        auth_challenge(std::string(), Auth::ExternalResponse);
    } else {
        auth_challenge(std::string(), Auth::ScramFirst);
    }
}

// A line of the client during an exchange.
void Session::auth_response(const std::string &line) {
    if (line == "*") {
        auth_fail(501, std::string(), "5.7.0", "Authentication canceled");
        return;
    }
    std::string data;
    if (line != "=" && !base64_decode(trim(line), data)) {
        auth_fail(501, std::string(), "5.5.2", "Invalid base64 data");
        return;
    }
    auth_step(data);
}

void Session::auth_step(const std::string &data) {
    switch (auth_) {
    case Auth::None:
        return;
    case Auth::PlainResponse:
        auth_plain(data);
        return;
    case Auth::LoginUser:
        login_user_ = data;
        auth_challenge("Password:", Auth::LoginPassword);
        return;
    case Auth::LoginPassword: {
        const std::string user = login_user_;
        if (o_.has_auth_account && user == o_.auth_user && data == o_.auth_password)
            auth_ok(user);
        else
            auth_fail(535, user);
        return;
    }
    case Auth::ExternalResponse:
        auth_external(data);
        return;
    case Auth::ScramFirst:
        scram_first(data);
        return;
    case Auth::ScramFinal:
        scram_final(data);
        return;
    case Auth::ScramDone: {
        const std::string user = scram_user_;
        if (data.empty())
            auth_ok(user);  // the client accepted our v=
        else
            auth_fail(535, user);
        return;
    }
    }
}

void Session::auth_challenge(const std::string &raw, Auth next) {
    queue("334 " + base64_encode(raw) + "\r\n", "AUTH");
    auth_ = next;
}

void Session::auth_ok(const std::string &user) {
    const std::string mech = auth_mech_;
    const bool ir = auth_ir_;
    auth_end();
    authed_ = true;
    authed_user_ = user;
    authed_mech_ = mech;
    srv_.add_auth(true, mech, user, 235);
    queue(reply(235, "2.7.0", "Authentication successful"), ir ? "AUTH-IR" : "AUTH");
}

void Session::auth_fail(int code, const std::string &user, const char *ecode, const char *text) {
    const std::string mech = auth_mech_;
    const bool ir = auth_ir_;
    auth_end();
    std::string e, t;
    auth_code_text(code, e, t);
    if (ecode) e = ecode;
    if (text) t = text;
    srv_.add_auth(false, mech, user, code);
    queue(reply(code, e.c_str(), t), ir ? "AUTH-IR" : "AUTH");
}

void Session::auth_end() {
    auth_ = Auth::None;
    auth_mech_.clear();
    auth_ir_ = false;
    login_user_.clear();
    scram_user_.clear();
    scram_gs2_.clear();
    scram_client_first_bare_.clear();
    scram_server_first_.clear();
    scram_nonce_.clear();
}

// PLAIN (RFC 4616): authzid NUL authcid NUL passwd.
void Session::auth_plain(const std::string &data) {
    const std::size_t a = data.find('\0');
    const std::size_t b = a == std::string::npos ? a : data.find('\0', a + 1);
    if (b == std::string::npos) {
        auth_fail(501, std::string(), "5.5.2", "Malformed PLAIN response");
        return;
    }
    const std::string authzid = data.substr(0, a);
    const std::string authcid = data.substr(a + 1, b - a - 1);
    const std::string passwd = data.substr(b + 1);
    if (o_.has_auth_account && authcid == o_.auth_user && passwd == o_.auth_password &&
        (authzid.empty() || authzid == authcid))
        auth_ok(authcid);
    else
        auth_fail(535, authcid);
}

// EXTERNAL (RFC 4422 A): the identity is the verified client certificate's CN; the authzid must be
// empty or that CN.
void Session::auth_external(const std::string &authzid) {
    const std::string cn = tls_info_.client_cn;
    if (!tls_ || !tls_info_.client_verified || cn.empty() || !(authzid.empty() || authzid == cn)) {
        auth_fail(535, authzid.empty() ? cn : authzid);
        return;
    }
    auth_ok(cn);
}

// SCRAM-SHA-256, client-first-message: gs2-header client-first-message-bare.
void Session::scram_first(const std::string &msg) {
    if (!msg.empty() && msg[0] == 'p') {
        auth_fail(535, std::string(), "5.7.8", "Channel binding not supported");
        return;
    }
    const std::size_t c2 = msg.size() >= 2 && (msg[0] == 'n' || msg[0] == 'y') && msg[1] == ','
                               ? msg.find(',', 2)
                               : std::string::npos;
    if (c2 == std::string::npos) {
        auth_fail(501, std::string(), "5.5.2", "Malformed SCRAM client-first-message");
        return;
    }
    const std::string authz_attr = msg.substr(2, c2 - 2);
    std::string authzid;
    if (!authz_attr.empty() && (authz_attr.compare(0, 2, "a=") != 0 || !scram_unescape(authz_attr.substr(2), authzid))) {
        auth_fail(501, std::string(), "5.5.2", "Malformed SCRAM client-first-message");
        return;
    }
    const std::string bare = msg.substr(c2 + 1);
    const std::vector<std::string> attrs = split_commas(bare);
    std::string user;
    if (attrs.size() < 2 || attrs[0].compare(0, 2, "n=") != 0 || !scram_unescape(attrs[0].substr(2), user) ||
        user.empty() || attrs[1].compare(0, 2, "r=") != 0 || attrs[1].size() == 2) {
        // (an "m=" mandatory extension lands here too: none is supported)
        auth_fail(501, std::string(), "5.5.2", "Malformed SCRAM client-first-message");
        return;
    }
    if (!authzid.empty() && authzid != user) {
        auth_fail(535, user);
        return;
    }
    scram_user_ = user;
    scram_gs2_ = msg.substr(0, c2 + 1);
    scram_client_first_bare_ = bare;
    scram_nonce_ = attrs[1].substr(2) + (o_.scram_server_nonce.empty() ? random_base64(18) : o_.scram_server_nonce);
    scram_server_first_ = "r=" + scram_nonce_ + ",s=" + base64_encode(o_.scram_salt) +
                          ",i=" + std::to_string(o_.scram_iterations);
    auth_challenge(scram_server_first_, Auth::ScramFinal);
}

// client-final-message: c=...,r=...[,extensions],p=proof. Answer v=ServerSignature.
void Session::scram_final(const std::string &msg) {
    const std::string user = scram_user_;
    const std::size_t pp = msg.rfind(",p=");
    if (pp == std::string::npos) {
        auth_fail(501, user, "5.5.2", "Malformed SCRAM client-final-message");
        return;
    }
    const std::string without_proof = msg.substr(0, pp);
    const std::vector<std::string> attrs = split_commas(without_proof);
    std::string proof;
    if (attrs.size() < 2 || attrs[0].compare(0, 2, "c=") != 0 || attrs[1].compare(0, 2, "r=") != 0 ||
        !base64_decode(msg.substr(pp + 3), proof)) {
        auth_fail(501, user, "5.5.2", "Malformed SCRAM client-final-message");
        return;
    }
    bool ok = attrs[0].substr(2) == base64_encode(scram_gs2_) && attrs[1].substr(2) == scram_nonce_ &&
              proof.size() == SHA256_DIGEST_LENGTH && o_.has_auth_account && user == o_.auth_user;
    const std::string auth_message = scram_client_first_bare_ + "," + scram_server_first_ + "," + without_proof;
    if (ok) {
        // ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage); it must hash to StoredKey.
        const std::string &stored = srv_.scram_stored_key();
        std::string key = hmac_sha256(stored, auth_message);
        for (std::size_t i = 0; i < key.size(); ++i) key[i] = static_cast<char>(key[i] ^ proof[i]);
        const std::string h = sha256(key);
        ok = CRYPTO_memcmp(h.data(), stored.data(), h.size()) == 0;
    }
    if (!ok) {
        auth_fail(535, user);
        return;
    }
    std::string signature = hmac_sha256(srv_.scram_server_key(), auth_message);
    if (o_.scram_bad_server_signature) signature[0] = static_cast<char>(signature[0] ^ 0x5a);
    auth_challenge("v=" + base64_encode(signature), Auth::ScramDone);
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
    if (!s->setup_tls(err) || !s->setup_auth(err)) return nullptr;
    if (!o.script.empty() && (o.fault || o.has_greeting || !o.rules.empty() || o.size || !o.extra_caps.empty() ||
                              o.reply_delay_ms || o.byte_delay_ms || !o.tls_cert.empty() ||
                              !o.auth_mechanisms.empty() || o.bdat_fail_chunk)) {
        err = "script mode: the server says only what the script says (greeting, rules, caps, faults, delays, "
              "TLS, AUTH and bdat_fail_chunk do not apply)";
        return nullptr;
    }
    for (std::size_t i = 0; i < o.script.size(); ++i) {
        const ScriptStep &st = o.script[i];
        const std::string at = "script[" + std::to_string(i) + "]: ";
        if (st.then != Action::Continue && i + 1 != o.script.size()) {
            err = at + "only the last step may end the script (then is not FAKE_CONTINUE)";
            return nullptr;
        }
        if (st.delay_ms < 0 || st.byte_delay_ms < 0) {
            err = at + "negative delay";
            return nullptr;
        }
        if (st.then == Action::Drip && (st.delay_ms <= 0 || st.reply.empty())) {
            err = at + "FAKE_DRIP needs a reply and delay_ms > 0";
            return nullptr;
        }
    }

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

namespace {

// tls_verify_client 1: ask for a certificate, accept any (or none), record whether it verified.
int accept_any_certificate(int, X509_STORE_CTX *) { return 1; }

}  // namespace

bool Server::setup_tls(std::string &err) {
    Options &o = opt_;
    if (o.tls_cert.empty()) {
        if (o.tls_implicit) err = "tls_implicit needs tls_cert";
        else if (!o.tls_key.empty() || o.tls_verify_client || !o.tls_client_ca.empty())
            err = "TLS options need tls_cert";
        return err.empty();
    }
    if (o.tls_verify_client < 0 || o.tls_verify_client > 2) {
        err = "bad tls_verify_client " + std::to_string(o.tls_verify_client);
        return false;
    }
    if (o.tls_verify_client && o.tls_client_ca.empty()) {
        err = "tls_verify_client needs tls_client_ca";
        return false;
    }
    if (o.tls_max_version != 0 && o.tls_max_version != 12 && o.tls_max_version != 13) {
        err = "bad tls_max_version " + std::to_string(o.tls_max_version) + " (0, 12 or 13)";
        return false;
    }
    if (o.tls_fail_handshake < 0 || o.tls_fail_handshake > 2) {
        err = "bad tls_fail_handshake " + std::to_string(o.tls_fail_handshake) + " (0, 1 or 2)";
        return false;
    }
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        err = ssl_error("SSL_CTX_new");
        return false;
    }
    tls_ctx_ = ctx;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (o.tls_max_version) SSL_CTX_set_max_proto_version(ctx, o.tls_max_version == 12 ? TLS1_2_VERSION : TLS1_3_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_num_tickets(ctx, 0);  // no session tickets: fewer bytes a client must read
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    const std::string key = o.tls_key.empty() ? o.tls_cert : o.tls_key;
    if (SSL_CTX_use_certificate_chain_file(ctx, o.tls_cert.c_str()) != 1) {
        err = ssl_error(("tls_cert " + o.tls_cert).c_str());
        return false;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM) != 1) {
        err = ssl_error(("tls_key " + key).c_str());
        return false;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        err = ssl_error("tls_key does not match tls_cert");
        return false;
    }
    if (o.tls_verify_client) {
        if (SSL_CTX_load_verify_locations(ctx, o.tls_client_ca.c_str(), nullptr) != 1) {
            err = ssl_error(("tls_client_ca " + o.tls_client_ca).c_str());
            return false;
        }
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o.tls_client_ca.c_str());
        if (names) SSL_CTX_set_client_CA_list(ctx, names);
        if (o.tls_verify_client == 2)
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
        else
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, accept_any_certificate);
        // Session id context: needed by OpenSSL when verifying peers (even without resumption).
        static const unsigned char sid[] = "fake-lmtp";
        SSL_CTX_set_session_id_context(ctx, sid, sizeof sid - 1);
    }
    ERR_clear_error();
    return true;
}

bool Server::setup_auth(std::string &err) {
    Options &o = opt_;
    for (const std::string &m : o.auth_mechanisms) {
        if (m.empty() || m.find_first_of(" \t\r\n") != std::string::npos) {
            err = "bad AUTH mechanism name '" + m + "'";
            return false;
        }
    }
    if (o.auth_fail_code && (o.auth_fail_code < 400 || o.auth_fail_code > 599)) {
        err = "bad auth_fail_code " + std::to_string(o.auth_fail_code) + " (400..599)";
        return false;
    }
    if (o.scram_iterations == 0) o.scram_iterations = 4096;
    if (o.scram_server_nonce.find(',') != std::string::npos) {
        err = "scram_server_nonce must not contain ','";
        return false;
    }
    if (o.scram_salt.empty()) {
        std::string raw;
        base64_decode(random_base64(16), raw);
        o.scram_salt = raw;
    }
    if (o.has_auth_account) {
        // SaltedPassword = PBKDF2-HMAC-SHA-256(password, salt, i); ClientKey = HMAC(SP, "Client Key");
        // StoredKey = H(ClientKey); ServerKey = HMAC(SP, "Server Key") (RFC 5802 3). No SASLprep.
        unsigned char salted[SHA256_DIGEST_LENGTH];
        if (PKCS5_PBKDF2_HMAC(o.auth_password.data(), static_cast<int>(o.auth_password.size()),
                              reinterpret_cast<const unsigned char *>(o.scram_salt.data()),
                              static_cast<int>(o.scram_salt.size()), static_cast<int>(o.scram_iterations),
                              EVP_sha256(), sizeof salted, salted) != 1) {
            err = ssl_error("PKCS5_PBKDF2_HMAC");
            return false;
        }
        const std::string sp(reinterpret_cast<char *>(salted), sizeof salted);
        scram_stored_key_ = sha256(hmac_sha256(sp, "Client Key"));
        scram_server_key_ = hmac_sha256(sp, "Server Key");
    }
    return true;
}

Server::~Server() {
    stop();
    if (tls_ctx_) SSL_CTX_free(tls_ctx_);
}

void Server::stop() {
    if (stopped_) return;
    stopped_ = true;
    if (wake_[1] >= 0) {
        char c = 'x';
        while (::write(wake_[1], &c, 1) < 0 && errno == EINTR) {
        }
    }
    if (acceptor_.joinable()) acceptor_.join();
    {
        std::lock_guard<std::mutex> lock(conns_mu_);
        reap(true);
    }
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
        sockaddr_storage from{};
        socklen_t from_len = sizeof from;
        int fd = ::accept4(listen_fd_, reinterpret_cast<sockaddr *>(&from), &from_len, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                pollfd w{wake_[0], POLLIN, 0};
                ::poll(&w, 1, 50);  // out of resources: do not spin
            }
            continue;
        }
        char address[INET6_ADDRSTRLEN] = "";
        if (from.ss_family == AF_INET)
            ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in *>(&from)->sin_addr, address, sizeof address);
        else if (from.ss_family == AF_INET6)
            ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6 *>(&from)->sin6_addr, address, sizeof address);
        if (opt_.family != AF_UNIX) {
            int one = 1;
            ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        spawn(fd, opt_.family != AF_UNIX, address);
    }
}

bool Server::spawn(int fd, bool tcp, const std::string &peer) {
    std::lock_guard<std::mutex> conns_lock(conns_mu_);
    reap(false);
    std::size_t index;
    {
        std::lock_guard<std::mutex> lock(rec_.mu);
        index = rec_.connections++;
        rec_.peers.push_back(peer);
        ++rec_.open;
    }
    try {
        conns_.emplace_back();
        Conn *c = &conns_.back();
        c->thread = std::thread([this, c, fd, tcp, index] {
            try {
                if (!opt_.script.empty()) {
                    play_script(*this, fd, index);
                } else {
                    Session s(*this, fd, tcp);
                    s.run();
                }
            } catch (...) {
                // out of memory in a test helper: drop the connection
            }
            std::lock_guard<std::mutex> lock(rec_.mu);
            c->done = true;
            --rec_.open;
            rec_.cv.notify_all();
        });
        return true;
    } catch (...) {
        if (!conns_.empty() && !conns_.back().thread.joinable()) conns_.pop_back();
        ::close(fd);
        std::lock_guard<std::mutex> lock(rec_.mu);
        --rec_.open;
        rec_.cv.notify_all();
        return false;
    }
}

int Server::connect_pair() {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return -1;
    ::fcntl(sv[1], F_SETFL, ::fcntl(sv[1], F_GETFL) | O_NONBLOCK);
    if (opt_.rcvbuf > 0) ::setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &opt_.rcvbuf, sizeof opt_.rcvbuf);
    if (!spawn(sv[1], false, "")) {
        ::close(sv[0]);
        errno = ENOMEM;
        return -1;
    }
    return sv[0];
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

void Server::add_message(std::string msg, MessageInfo info) {
    std::lock_guard<std::mutex> lock(rec_.mu);
    rec_.messages.push_back(std::move(msg));
    rec_.message_info.push_back(std::move(info));
    const std::size_t i = rec_.messages.size() - 1;
    if (opt_.on_message) opt_.on_message(i, rec_.messages.back());
    if (opt_.on_event) {
        const MessageInfo &m = rec_.message_info.back();
        opt_.on_event("MESSAGE " + std::to_string(i) + " tls=" + (m.tls ? "1" : "0") + " auth=" +
                      (m.auth_user.empty() ? std::string("-") : m.auth_mechanism + ":" + m.auth_user));
    }
}

void Server::add_tls(TlsSession info) {
    std::lock_guard<std::mutex> lock(rec_.mu);
    info.offset = rec_.transcript.size();
    rec_.tls.push_back(info);
    if (opt_.on_event)
        opt_.on_event("TLS " + std::to_string(rec_.tls.size() - 1) + " offset=" + std::to_string(info.offset) +
                      " version=" + info.version + " cipher=" + info.cipher + " client_cert=" +
                      (info.client_cert ? (info.client_verified ? "verified" : "unverified") : "none") +
                      (info.client_cn.empty() ? std::string() : " cn=" + info.client_cn));
}

void Server::add_tls_failure(const std::string &why) {
    std::lock_guard<std::mutex> lock(rec_.mu);
    ++rec_.tls_failures;
    if (opt_.on_event) opt_.on_event("TLS_FAILED " + why);
}

void Server::add_auth(bool ok, const std::string &mechanism, const std::string &user, int code) {
    std::lock_guard<std::mutex> lock(rec_.mu);
    if (ok) {
        ++rec_.auth_successes;
        rec_.auth_user = user;
        rec_.auth_mechanism = mechanism;
    } else {
        ++rec_.auth_failures;
    }
    if (opt_.on_event)
        opt_.on_event(std::string(ok ? "AUTH_OK " : "AUTH_FAILED ") + std::to_string(code) + " " +
                      (mechanism.empty() ? std::string("-") : mechanism) + " " + (user.empty() ? std::string("-") : user));
}

void Server::add_violation() {
    std::lock_guard<std::mutex> lock(rec_.mu);
    ++rec_.violations;
}

bool Server::rule_applies(const Rule &r, bool data) {
    const unsigned long times = data ? r.data_times : r.rcpt_times;
    if (times == 0) return true;
    std::lock_guard<std::mutex> lock(rule_mu_);
    return ++rule_uses_[{&r, data}] <= times;
}

void Server::add_script_error(const std::string &why) {
    std::lock_guard<std::mutex> lock(rec_.mu);
    if (rec_.script_error.empty()) rec_.script_error = why;
}

void Server::add_script_done() {
    std::lock_guard<std::mutex> lock(rec_.mu);
    ++rec_.scripts_done;
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
