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
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace fake {

enum class Action { Continue = 0, Close = 1, Hang = 2, Reset = 3, StopReading = 4 };

// One recipient rule: what RCPT and the end of DATA answer for one address.
struct Rule {
    std::string address;  // as written in the rules string
    int rcpt_code = 250;
    std::string rcpt_text;  // empty: the default text
    int data_code = 250;
    std::string data_text;
};

// Parse "addr=CODE[:text][,CODE[:text]];..." (see fake_lmtp.h). False and err set on bad syntax.
bool parse_rules(const std::string &spec, std::vector<Rule> &out, std::string &err);

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

    int reply_delay_ms = 0;
    int byte_delay_ms = 0;
    std::size_t record_limit = 0;

    // For the standalone program: called (under the server's lock, from a connection thread) with
    // every chunk the clients send, every chunk the server writes, and every completed message.
    std::function<void(const char *, std::size_t)> on_client_bytes;
    std::function<void(const char *, std::size_t)> on_server_bytes;
    std::function<void(std::size_t index, const std::string &msg)> on_message;
};

// What the connections share, under one lock.
struct Record {
    std::mutex mu;
    std::condition_variable cv;
    std::string transcript;
    std::string sent;
    std::deque<std::string> messages;  // deque: element addresses stay put on push_back
    std::size_t flushes = 0;
    int violations = 0;
    std::size_t connections = 0;
    std::size_t open = 0;
    unsigned long fault_matches = 0;
    unsigned long fault_fired = 0;
};

class Session;

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

    // Helpers for the sessions (all take the lock).
    void add_client_bytes(const char *p, std::size_t n);
    void add_server_bytes(const char *p, std::size_t n, bool count_flush);
    void add_message(std::string msg);
    void add_violation();
    // Whether the fault fires for this match (counts matches; call once per matching event).
    bool fault_fires();

private:
    Server() = default;
    void accept_loop();
    void reap(bool all);

    struct Conn {
        std::thread thread;
        bool done = false;  // under rec_.mu
    };

    Options opt_;
    std::vector<Rule> rules_;
    std::vector<std::string> caps_;
    int listen_fd_ = -1;
    int wake_[2] = {-1, -1};
    unsigned port_ = 0;
    std::string host_;
    bool unlink_path_ = false;
    bool stopped_ = false;
    std::thread acceptor_;
    std::list<Conn> conns_;  // touched by the acceptor thread only, then by stop() after joining it
    Record rec_;
};

}  // namespace fake
