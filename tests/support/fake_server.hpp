// fake_server.hpp - the C++ side of the fake LMTP server (internal to tests/support).
//
// fake_lmtp.h documents the behaviour; this header is what the C API (fake_capi.cpp) and the
// standalone program (fake_main.cpp) are built on. Nothing here depends on liblmtp.
#pragma once

#include <sys/socket.h>

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

struct ssl_ctx_st;  // OpenSSL's SSL_CTX, kept out of this header

namespace fake {

// Drip: script steps only (send the reply again and again).
enum class Action { Continue = 0, Close = 1, Hang = 2, Reset = 3, StopReading = 4, Drip = 5 };

// One step of an exact script (fake_lmtp.h, "Script mode").
struct ScriptStep {
    std::string expect;  // the bytes the client must send next, exactly
    std::string reply;   // then written back
    Action then = Action::Continue;
    int delay_ms = 0;       // before the reply (Drip: between repeats)
    int byte_delay_ms = 0;  // > 0: the reply one byte at a time
    bool allow_early = false;  // no lockstep check: more may come before the reply
};

// One recipient rule: what RCPT and the end of DATA answer for one address.
struct Rule {
    std::string address;  // as written in the rules string
    int rcpt_code = 250;
    std::string rcpt_text;  // empty: the default text
    int data_code = 250;
    std::string data_text;
    unsigned long rcpt_times = 0;  // CODE*N: the code the first N times only (then 250); 0: always
    unsigned long data_times = 0;
};

// Parse "addr=CODE[:text][,CODE[:text]];..." (see fake_lmtp.h). False and err set on bad syntax.
bool parse_rules(const std::string &spec, std::vector<Rule> &out, std::string &err);

// Write the test certificates (fake_lmtp.h, fake_make_test_certs) into dir. False and err set on
// failure. Implemented in fake_certs.cpp.
bool make_test_certs(const std::string &dir, std::string &err);

// "PLAIN LOGIN,SCRAM-SHA-256" -> {"PLAIN", "LOGIN", "SCRAM-SHA-256"} (split on spaces and commas,
// upper-cased).
std::vector<std::string> parse_mechanisms(const std::string &spec);

// Base64 (RFC 4648, with padding, no line breaks). decode: false on anything malformed.
std::string base64_encode(const std::string &raw);
bool base64_decode(const std::string &text, std::string &raw);

struct Options {
    int family = AF_INET;
    std::string unix_path;  // empty: generated
    unsigned port = 0;
    int rcvbuf = 0;

    std::string hostname = "fake.example";
    bool has_greeting = false;
    std::string greeting;
    bool pipelining = true;
    bool enhanced = true;
    bool eightbitmime = true;
    unsigned long size = 0;
    std::vector<std::string> extra_caps;
    std::string rules;

    bool fault = false;
    std::string fault_on;
    std::string fault_reply;
    std::string fault_fill;
    long fault_repeat = 0;
    std::string fault_tail;
    Action fault_action = Action::Continue;
    bool fault_keep = false;
    unsigned long fault_skip = 0;
    unsigned long fault_times = 0;
    unsigned long fault_body_bytes = 0;  // with fault_on ".": fire after this many message bytes
    long fault_replies = -1;             // with fault_on ".": send the first N final replies, then fault

    int reply_delay_ms = 0;
    int byte_delay_ms = 0;
    std::size_t record_limit = 0;

    // TLS (fake_lmtp.h, "TLS"). An empty tls_cert = no TLS.
    std::string tls_cert;
    std::string tls_key;  // empty: the key is in tls_cert
    bool tls_implicit = false;
    bool tls_require = false;
    int tls_verify_client = 0;  // 0 no, 1 request (record the result), 2 require a valid one
    std::string tls_client_ca;
    int tls_max_version = 0;     // 0 = any (TLS 1.2 is always the minimum), 12, 13
    int tls_fail_handshake = 0;  // 0 no, 1 garbage then close, 2 close
    std::string tls_plain_after_220;

    // AUTH (fake_lmtp.h, "AUTH"). No mechanisms = AUTH is not implemented (502).
    std::vector<std::string> auth_mechanisms;  // upper case, in the advertised order
    bool auth_after_tls = false;
    bool auth_require = false;
    bool has_auth_account = false;
    std::string auth_user;
    std::string auth_password;
    int auth_fail_code = 0;
    std::string scram_salt;  // raw bytes; empty: random per server
    unsigned scram_iterations = 4096;
    std::string scram_server_nonce;  // empty: random per exchange
    bool scram_bad_server_signature = false;

    // CHUNKING: reject the Nth BDAT chunk of every transaction (1-based; 0 = never).
    unsigned long bdat_fail_chunk = 0;

    // Script mode (fake_lmtp.h): not empty = every connection plays these steps, nothing else.
    std::vector<ScriptStep> script;

    // For the standalone program: called (under the server's lock, from a connection thread) with
    // every chunk the clients send, every chunk the server writes, and every completed message.
    std::function<void(const char *, std::size_t)> on_client_bytes;
    std::function<void(const char *, std::size_t)> on_server_bytes;
    std::function<void(std::size_t index, const std::string &msg)> on_message;
    // One line per TLS handshake, AUTH outcome and message (see fake-lmtp --events).
    std::function<void(const std::string &line)> on_event;
};

// One completed TLS handshake.
struct TlsSession {
    std::size_t offset = 0;  // transcript size when it completed: what follows came inside TLS
    std::string version;     // "TLSv1.3"
    std::string cipher;
    bool client_cert = false;      // the client presented a certificate
    bool client_verified = false;  // ... and it verified against tls_client_ca
    std::string client_cn;         // its subject CN
};

// What is known of a stored message besides its bytes.
struct MessageInfo {
    bool tls = false;
    std::string auth_user;  // empty: not authenticated
    std::string auth_mechanism;
};

// What the connections share, under one lock.
struct Record {
    std::mutex mu;
    std::condition_variable cv;
    std::string transcript;
    std::string sent;
    std::deque<std::string> messages;  // deque: element addresses stay put on push_back
    std::deque<MessageInfo> message_info;  // parallel to messages
    std::vector<TlsSession> tls;           // completed handshakes, in order
    std::size_t tls_failures = 0;          // handshakes that failed (or were failed on purpose)
    std::size_t auth_successes = 0;
    std::size_t auth_failures = 0;         // 5xx/4xx answers to AUTH exchanges, cancels included
    std::string auth_user;                 // of the last successful AUTH
    std::string auth_mechanism;            // of the last successful AUTH
    std::size_t flushes = 0;
    int violations = 0;
    std::size_t connections = 0;
    std::vector<std::string> peers;  // per connection: the client's IP address ("" if none)
    std::size_t open = 0;
    std::string script_error;        // the first departure from the script ("" if none)
    std::size_t scripts_done = 0;    // connections that played the whole script
    unsigned long fault_matches = 0;
    unsigned long fault_fired = 0;
};

class Session;
class Server;

// Plays options().script on one connection (fake_script.cpp): reads until each step's bytes came,
// checks them, replies. Owns fd. `index` names the connection in error messages.
void play_script(Server &srv, int fd, std::size_t index);

class Server {
public:
    // Bind, listen and start the accept thread. nullptr and err set on failure.
    static std::unique_ptr<Server> start(const Options &opt, std::string &err);
    ~Server();  // stops everything, like stop()
    Server(const Server &) = delete;
    Server &operator=(const Server &) = delete;

    void stop();
    unsigned port() const { return port_; }
    const std::string &host() const { return host_; }
    int family() const { return opt_.family; }

    Record &record() { return rec_; }
    const Options &options() const { return opt_; }
    const std::vector<Rule> &rules() const { return rules_; }
    const std::vector<std::string> &capabilities() const { return caps_; }
    int wake_fd() const { return wake_[0]; }
    ssl_ctx_st *tls_ctx() const { return tls_ctx_; }  // nullptr: no TLS
    // SCRAM-SHA-256 keys of the account (valid if options().has_auth_account).
    const std::string &scram_stored_key() const { return scram_stored_key_; }
    const std::string &scram_server_key() const { return scram_server_key_; }

    // Helpers for the sessions (all take the lock).
    void add_client_bytes(const char *p, std::size_t n);
    void add_server_bytes(const char *p, std::size_t n, bool count_flush);
    void add_message(std::string msg, MessageInfo info);
    void add_tls(TlsSession info);
    void add_tls_failure(const std::string &why);
    void add_auth(bool ok, const std::string &mechanism, const std::string &user, int code);
    void add_violation();
    void add_script_error(const std::string &why);  // keeps the first
    void add_script_done();
    // A new connection over a socketpair: the server serves one end, the caller gets the other
    // (blocking, close-on-exec). -1 and errno set on failure.
    int connect_pair();
    // Whether the fault fires for this match (counts matches; call once per matching event).
    bool fault_fires();
    // Whether rule r's RCPT (data false) or DATA code applies this time (CODE*N: the first N).
    bool rule_applies(const Rule &r, bool data);

private:
    Server() = default;
    bool setup_tls(std::string &err);
    bool setup_auth(std::string &err);
    void accept_loop();
    void reap(bool all);  // call with conns_mu_ held
    // Serve fd (non-blocking, owned from here on) on a thread of its own; false if none could start.
    bool spawn(int fd, bool tcp, const std::string &peer);

    struct Conn {
        std::thread thread;
        bool done = false;  // under rec_.mu
    };

    Options opt_;
    std::vector<Rule> rules_;
    std::mutex rule_mu_;
    std::map<std::pair<const Rule *, bool>, unsigned long> rule_uses_;  // under rule_mu_
    std::vector<std::string> caps_;
    ssl_ctx_st *tls_ctx_ = nullptr;
    std::string scram_stored_key_;
    std::string scram_server_key_;
    int listen_fd_ = -1;
    int wake_[2] = {-1, -1};
    unsigned port_ = 0;
    std::string host_;
    bool unlink_path_ = false;
    bool stopped_ = false;
    std::thread acceptor_;
    std::mutex conns_mu_;    // conns_: the acceptor thread, connect_pair() and stop() touch it
    std::list<Conn> conns_;
    Record rec_;
};

}  // namespace fake
