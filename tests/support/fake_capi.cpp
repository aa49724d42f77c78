// fake_capi.cpp - the C face of the fake LMTP server (fake_lmtp.h) over fake::Server.
#include "fake_lmtp.h"

#include <chrono>
#include <cstring>
#include <cerrno>
#include <exception>
#include <new>
#include <string>

#include "fake_server.hpp"

struct fake_lmtp {
    std::unique_ptr<fake::Server> server;
    std::string transcript;  // snapshot returned by fake_transcript()
    std::string sent;        // snapshot returned by fake_sent()
    std::string tls_version, tls_client_cn, auth_mechanism, auth_user;  // snapshots, likewise
    std::string peer_address, script_error;                              // likewise
};

namespace {

thread_local std::string g_start_error;

std::string str(const char *s) { return s ? std::string(s) : std::string(); }

// A byte string of the C API: len 0 = up to the NUL.
std::string bytes(const char *s, size_t len) { return s ? std::string(s, len ? len : std::strlen(s)) : std::string(); }

// fake_config.script -> the server's steps; false and g_start_error set if one is malformed.
bool copy_script(const fake_config &cfg, std::vector<fake::ScriptStep> &out) {
    if (cfg.script_len > 0 && !cfg.script) {
        g_start_error = "script is NULL but script_len is " + std::to_string(cfg.script_len);
        return false;
    }
    for (size_t i = 0; i < cfg.script_len; ++i) {
        const fake_step &in = cfg.script[i];
        if (in.then < FAKE_CONTINUE || in.then > FAKE_DRIP) {
            g_start_error = "script[" + std::to_string(i) + "]: bad then " + std::to_string(in.then);
            return false;
        }
        fake::ScriptStep st;
        st.expect = bytes(in.expect, in.expect_len);
        st.reply = bytes(in.reply, in.reply_len);
        st.then = static_cast<fake::Action>(in.then);
        st.delay_ms = in.delay_ms;
        st.byte_delay_ms = in.byte_delay_ms;
        st.allow_early = in.allow_early != 0;
        out.push_back(std::move(st));
    }
    return true;
}

}  // namespace

extern "C" {

void fake_config_init(fake_config *c) {
    if (!c) return;
    *c = fake_config{};
    c->family = AF_INET;
    c->fault_replies = -1;
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
        o.fault_body_bytes = cfg->fault_body_bytes;
        o.fault_replies = cfg->fault_replies;
        o.reply_delay_ms = cfg->reply_delay_ms;
        o.byte_delay_ms = cfg->byte_delay_ms;
        o.record_limit = cfg->record_limit;

        o.tls_cert = str(cfg->tls_cert);
        o.tls_key = str(cfg->tls_key);
        o.tls_implicit = cfg->tls_implicit != 0;
        o.tls_require = cfg->tls_require != 0;
        o.tls_verify_client = cfg->tls_verify_client;
        o.tls_client_ca = str(cfg->tls_client_ca);
        o.tls_max_version = cfg->tls_max_version;
        o.tls_fail_handshake = cfg->tls_fail_handshake;
        o.tls_plain_after_220 = str(cfg->tls_plain_after_220);

        o.auth_mechanisms = fake::parse_mechanisms(str(cfg->auth_mechanisms));
        o.auth_after_tls = cfg->auth_after_tls != 0;
        o.auth_require = cfg->auth_require != 0;
        o.has_auth_account = cfg->auth_user != nullptr;
        o.auth_user = str(cfg->auth_user);
        o.auth_password = str(cfg->auth_password);
        o.auth_fail_code = cfg->auth_fail_code;
        if (cfg->scram_salt && !fake::base64_decode(cfg->scram_salt, o.scram_salt)) {
            g_start_error = std::string("scram_salt is not base64: ") + cfg->scram_salt;
            return nullptr;
        }
        o.scram_iterations = cfg->scram_iterations;
        o.scram_server_nonce = str(cfg->scram_server_nonce);
        o.scram_bad_server_signature = cfg->scram_bad_server_signature != 0;
        o.bdat_fail_chunk = cfg->bdat_fail_chunk;
        if (!copy_script(*cfg, o.script)) return nullptr;

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

int fake_make_test_certs(const char *dir) {
    g_start_error.clear();
    try {
        if (!dir) {
            g_start_error = "fake_make_test_certs: dir is NULL";
            return -1;
        }
        return fake::make_test_certs(dir, g_start_error) ? 0 : -1;
    } catch (const std::exception &e) {
        g_start_error = e.what();
    } catch (...) {
        g_start_error = "unknown exception";
    }
    return -1;
}

int fake_socketpair(fake_lmtp *f) {
    if (!f) {
        errno = EINVAL;
        return -1;
    }
    return f->server->connect_pair();
}

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

int fake_message_tls(fake_lmtp *f, size_t i) {
    fake::Record &r = f->server->record();
    std::lock_guard<std::mutex> lock(r.mu);
    return i < r.message_info.size() && r.message_info[i].tls ? 1 : 0;
}

const char *fake_message_auth_user(fake_lmtp *f, size_t i) {
    fake::Record &r = f->server->record();
    std::lock_guard<std::mutex> lock(r.mu);
    // Like messages, stored infos are never modified and the deque keeps them in place.
    if (i >= r.message_info.size() || r.message_info[i].auth_user.empty()) return nullptr;
    return r.message_info[i].auth_user.c_str();
}

size_t fake_tls_sessions(fake_lmtp *f) {
    fake::Record &r = f->server->record();
    std::lock_guard<std::mutex> lock(r.mu);
    return r.tls.size();
}

size_t fake_tls_failures(fake_lmtp *f) {
    fake::Record &r = f->server->record();
    std::lock_guard<std::mutex> lock(r.mu);
    return r.tls_failures;
}

long fake_tls_offset_at(fake_lmtp *f, size_t i) {
    fake::Record &r = f->server->record();
    std::lock_guard<std::mutex> lock(r.mu);
    return i < r.tls.size() ? static_cast<long>(r.tls[i].offset) : -1;
}

long fake_tls_offset(fake_lmtp *f) { return fake_tls_offset_at(f, 0); }

const char *fake_tls_version(fake_lmtp *f) {
    fake::Record &r = f->server->record();
    std::lock_guard<std::mutex> lock(r.mu);
    if (r.tls.empty()) return nullptr;
    f->tls_version = r.tls.back().version;
    return f->tls_version.c_str();
}

const char *fake_tls_client_cn(fake_lmtp *f) {
    fake::Record &r = f->server->record();
    std::lock_guard<std::mutex> lock(r.mu);
    if (r.tls.empty() || !r.tls.back().client_cert) return nullptr;
    f->tls_client_cn = r.tls.back().client_cn;
    return f->tls_client_cn.c_str();
}

int fake_tls_client_verified(fake_lmtp *f) {
    fake::Record &r = f->server->record();
    std::lock_guard<std::mutex> lock(r.mu);
    return !r.tls.empty() && r.tls.back().client_verified ? 1 : 0;
}

size_t fake_auth_successes(fake_lmtp *f) {
    fake::Record &r = f->server->record();
    std::lock_guard<std::mutex> lock(r.mu);
    return r.auth_successes;
}

size_t fake_auth_failures(fake_lmtp *f) {
    fake::Record &r = f->server->record();
    std::lock_guard<std::mutex> lock(r.mu);
    return r.auth_failures;
}

const char *fake_auth_mechanism(fake_lmtp *f) {
    fake::Record &r = f->server->record();
    std::lock_guard<std::mutex> lock(r.mu);
    if (r.auth_successes == 0) return nullptr;
    f->auth_mechanism = r.auth_mechanism;
    return f->auth_mechanism.c_str();
}

const char *fake_auth_user(fake_lmtp *f) {
    fake::Record &r = f->server->record();
    std::lock_guard<std::mutex> lock(r.mu);
    if (r.auth_successes == 0) return nullptr;
    f->auth_user = r.auth_user;
    return f->auth_user.c_str();
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

const char *fake_peer_address(fake_lmtp *f, size_t i) {
    fake::Record &r = f->server->record();
    std::lock_guard<std::mutex> lock(r.mu);
    if (i >= r.peers.size()) return nullptr;
    f->peer_address = r.peers[i];
    return f->peer_address.c_str();
}

const char *fake_script_error(fake_lmtp *f) {
    fake::Record &r = f->server->record();
    std::lock_guard<std::mutex> lock(r.mu);
    f->script_error = r.script_error;
    return f->script_error.c_str();
}

size_t fake_script_done(fake_lmtp *f) {
    fake::Record &r = f->server->record();
    std::lock_guard<std::mutex> lock(r.mu);
    return r.scripts_done;
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
    r.message_info.clear();
    r.tls.clear();
    r.tls_failures = 0;
    r.auth_successes = 0;
    r.auth_failures = 0;
    r.auth_user.clear();
    r.auth_mechanism.clear();
    r.flushes = 0;
    r.violations = 0;
    r.connections = 0;
    r.peers.clear();
    r.script_error.clear();
    r.scripts_done = 0;
    f->transcript.clear();
    f->sent.clear();
    f->tls_version.clear();
    f->tls_client_cn.clear();
    f->auth_mechanism.clear();
    f->auth_user.clear();
    f->peer_address.clear();
    f->script_error.clear();
}

void fake_stop(fake_lmtp *f) {
    if (!f) return;
    f->server->stop();
    delete f;
}

}  // extern "C"
