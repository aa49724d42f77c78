// fake_capi.cpp - the C face of the fake LMTP server (fake_lmtp.h) over fake::Server.
#include "fake_lmtp.h"

#include <chrono>
#include <exception>
#include <new>
#include <string>

#include "fake_server.hpp"

struct fake_lmtp {
    std::unique_ptr<fake::Server> server;
    std::string transcript;  // snapshot returned by fake_transcript()
    std::string sent;        // snapshot returned by fake_sent()
};

namespace {

thread_local std::string g_start_error;

std::string str(const char *s) { return s ? std::string(s) : std::string(); }

}  // namespace

extern "C" {

void fake_config_init(fake_config *c) {
    if (!c) return;
    *c = fake_config{};
    c->family = AF_INET;
    c->pipelining = 1;
    c->enhanced = 1;
    c->eightbitmime = 1;
    c->fault_action = FAKE_CONTINUE;
}

fake_lmtp *fake_start(const fake_config *cfg) {
    g_start_error.clear();
    try {
        fake_config defaults;
        if (!cfg) {
            fake_config_init(&defaults);
            cfg = &defaults;
        }
        fake::Options o;
        o.family = cfg->family == AF_UNSPEC ? AF_INET : cfg->family;
        o.unix_path = str(cfg->unix_path);
        o.port = cfg->port;
        o.rcvbuf = cfg->rcvbuf;
        if (cfg->hostname) o.hostname = cfg->hostname;
        o.has_greeting = cfg->greeting != nullptr;
        o.greeting = str(cfg->greeting);
        o.pipelining = cfg->pipelining != 0;
        o.enhanced = cfg->enhanced != 0;
        o.eightbitmime = cfg->eightbitmime != 0;
        o.size = cfg->size;
        if (cfg->extra_caps) {
            std::string caps = cfg->extra_caps;
            std::size_t s = 0;
            while (s <= caps.size()) {
                std::size_t e = caps.find('\n', s);
                if (e == std::string::npos) e = caps.size();
                std::string one = caps.substr(s, e - s);
                if (!one.empty() && one.back() == '\r') one.pop_back();
                if (!one.empty()) o.extra_caps.push_back(one);
                s = e + 1;
            }
        }
        o.rules = str(cfg->rules);
        o.fault = cfg->fault_on != nullptr;
        o.fault_on = str(cfg->fault_on);
        o.fault_reply = str(cfg->fault_reply);
        o.fault_fill = str(cfg->fault_fill);
        o.fault_repeat = cfg->fault_repeat;
        o.fault_tail = str(cfg->fault_tail);
        if (cfg->fault_action < FAKE_CONTINUE || cfg->fault_action > FAKE_STOP_READING) {
            g_start_error = "bad fault_action " + std::to_string(cfg->fault_action);
            return nullptr;
        }
        o.fault_action = static_cast<fake::Action>(cfg->fault_action);
        o.fault_keep = cfg->fault_keep != 0;
        o.fault_skip = cfg->fault_skip;
        o.fault_times = cfg->fault_times;
        o.reply_delay_ms = cfg->reply_delay_ms;
        o.byte_delay_ms = cfg->byte_delay_ms;
        o.record_limit = cfg->record_limit;

        std::unique_ptr<fake_lmtp> f(new fake_lmtp);
        f->server = fake::Server::start(o, g_start_error);
        if (!f->server) return nullptr;
        return f.release();
    } catch (const std::exception &e) {
        g_start_error = e.what();
    } catch (...) {
        g_start_error = "unknown exception";
    }
    return nullptr;
}

const char *fake_start_error(void) { return g_start_error.c_str(); }

unsigned fake_port(const fake_lmtp *f) { return f ? f->server->port() : 0; }

const char *fake_host(const fake_lmtp *f) { return f ? f->server->host().c_str() : ""; }

const char *fake_transcript(fake_lmtp *f, size_t *len) {
    fake::Record &r = f->server->record();
    {
        std::lock_guard<std::mutex> lock(r.mu);
        f->transcript = r.transcript;  // assign may throw only bad_alloc: acceptable in a test helper
    }
    if (len) *len = f->transcript.size();
    return f->transcript.c_str();
}

const char *fake_sent(fake_lmtp *f, size_t *len) {
    fake::Record &r = f->server->record();
    {
        std::lock_guard<std::mutex> lock(r.mu);
        f->sent = r.sent;
    }
    if (len) *len = f->sent.size();
    return f->sent.c_str();
}

size_t fake_message_count(fake_lmtp *f) {
    fake::Record &r = f->server->record();
    std::lock_guard<std::mutex> lock(r.mu);
    return r.messages.size();
}

const char *fake_message(fake_lmtp *f, size_t i, size_t *len) {
    fake::Record &r = f->server->record();
    std::lock_guard<std::mutex> lock(r.mu);
    if (i >= r.messages.size()) {
        if (len) *len = 0;
        return nullptr;
    }
    // Messages are never modified once stored and the deque keeps them in place.
    const std::string &m = r.messages[i];
    if (len) *len = m.size();
    return m.c_str();
}

size_t fake_flushes(fake_lmtp *f) {
    fake::Record &r = f->server->record();
    std::lock_guard<std::mutex> lock(r.mu);
    return r.flushes;
}

int fake_lockstep_violations(fake_lmtp *f) {
    fake::Record &r = f->server->record();
    std::lock_guard<std::mutex> lock(r.mu);
    return r.violations;
}

size_t fake_connections(fake_lmtp *f) {
    fake::Record &r = f->server->record();
    std::lock_guard<std::mutex> lock(r.mu);
    return r.connections;
}

int fake_wait_idle(fake_lmtp *f, size_t min_connections, int timeout_ms) {
    fake::Record &r = f->server->record();
    std::unique_lock<std::mutex> lock(r.mu);
    auto ready = [&] { return r.connections >= min_connections && r.open == 0; };
    if (timeout_ms < 0) {
        r.cv.wait(lock, ready);
        return 1;
    }
    return r.cv.wait_for(lock, std::chrono::milliseconds(timeout_ms), ready) ? 1 : 0;
}

void fake_clear(fake_lmtp *f) {
    fake::Record &r = f->server->record();
    std::lock_guard<std::mutex> lock(r.mu);
    r.transcript.clear();
    r.sent.clear();
    r.messages.clear();
    r.flushes = 0;
    r.violations = 0;
    r.connections = 0;
    f->transcript.clear();
    f->sent.clear();
}

void fake_stop(fake_lmtp *f) {
    if (!f) return;
    f->server->stop();
    delete f;
}

}  // extern "C"
