// The C interface over lmtp::Client. Each function is a few lines over the
// C++ object; call() turns every exception into a status, so none crosses
// the extern "C" border.
#define LMTP_BUILDING 1
#include "lmtp.h"

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <memory>
#include <cstdio>
#include <new>
#include <string>
#include <type_traits>
#include <vector>

#include <unistd.h>

#include "lmtp/client.hpp"
#include "lmtp/event_driver.hpp"
#include "lmtp/pool.hpp"

using lmtp::Status;

// lmtp.h's enum is made from the status table (capi/gen-status.py): each enumerator has the
// table's value, and the core's Status the same.
#define LMTP_SAME(c_name, name, value, reply_code, description, note)                      \
    static_assert(c_name == (value), #c_name " must be " #value " as in status_table.h"); \
    static_assert(static_cast<int>(Status::name) == (value), #c_name " must equal Status::" #name);
LMTP_STATUS_TABLE(LMTP_SAME)
#undef LMTP_SAME
static_assert(LMTP_TRACE_SEND == static_cast<int>(lmtp::TraceDir::send), "trace directions");
static_assert(LMTP_TRACE_RECEIVE == static_cast<int>(lmtp::TraceDir::receive), "trace directions");
static_assert(LMTP_TRACE_DATA == static_cast<int>(lmtp::TraceDir::data), "trace directions");
static_assert(LMTP_TRACE_INFO == static_cast<int>(lmtp::TraceDir::info), "trace directions");
static_assert(LMTP_DEFAULT_TIMEOUT_MS == lmtp::kDefaultTimeout.count(), "lmtp.h's default timeout is the core's");
static_assert(LMTP_RESULT_PENDING == static_cast<int>(lmtp::Outcome::pending), "outcomes");
static_assert(LMTP_RESULT_OK == static_cast<int>(lmtp::Outcome::ok), "outcomes");
static_assert(LMTP_RESULT_TEMPFAIL == static_cast<int>(lmtp::Outcome::tempfail), "outcomes");
static_assert(LMTP_RESULT_PERMFAIL == static_cast<int>(lmtp::Outcome::permfail), "outcomes");
static_assert(LMTP_RESULT_UNKNOWN == static_cast<int>(lmtp::Outcome::unknown), "outcomes");
static_assert(LMTP_STAGE_NONE == static_cast<int>(lmtp::Stage::none), "stages");
static_assert(LMTP_STAGE_MAIL == static_cast<int>(lmtp::Stage::mail), "stages");
static_assert(LMTP_STAGE_RCPT == static_cast<int>(lmtp::Stage::rcpt), "stages");
static_assert(LMTP_STAGE_DATA == static_cast<int>(lmtp::Stage::data), "stages");
// lmtp_mail_options_parse and lmtp_rcpt_options_parse store the core's values as they are.
static_assert(LMTP_BODY_7BIT == static_cast<int>(lmtp::BodyType::seven_bit), "body types");
static_assert(LMTP_BODY_8BITMIME == static_cast<int>(lmtp::BodyType::eight_bit_mime), "body types");
static_assert(LMTP_BODY_BINARYMIME == static_cast<int>(lmtp::BodyType::binary_mime), "body types");
static_assert(LMTP_RET_FULL == static_cast<int>(lmtp::Ret::full), "RET values");
static_assert(LMTP_RET_HDRS == static_cast<int>(lmtp::Ret::hdrs), "RET values");
static_assert(unsigned{LMTP_NOTIFY_NEVER} == lmtp::notify_never &&
                  unsigned{LMTP_NOTIFY_SUCCESS} == lmtp::notify_success &&
                  unsigned{LMTP_NOTIFY_FAILURE} == lmtp::notify_failure &&
                  unsigned{LMTP_NOTIFY_DELAY} == lmtp::notify_delay,
              "NOTIFY flags");

struct lmtp_handle {
    explicit lmtp_handle(lmtp::ClientOptions o) : client(std::move(o)) {}

    lmtp::Client client;
    // The non-blocking mode (lmtp_connect_start, lmtp_adopt_fd, lmtp_open_bytes): the client's
    // engine driven by the caller's loop, and the callback of each message submitted.
    std::unique_ptr<lmtp::EventDriver> nb;
    struct Submitted {
        std::uint64_t token;
        lmtp_done_fn done;
        void* user;
    };
    std::deque<Submitted> submitted;
    int in_callback = 0;       // a lmtp_done_fn is running
    bool submitted_inside = false;  // lmtp_submit ran inside a callback: the engine goes on after it
    bool close_after = false;  // lmtp_close inside a callback: when it returns
    bool free_after = false;   // lmtp_free inside a callback: when it returns

    bool driven() const { return nb && nb->active(); }
    int status = LMTP_OK;
    int os_error = 0;
    std::string errmsg;
    lmtp_trace_fn trace_fn = nullptr;
    void* trace_user = nullptr;
    // One slot per getter that builds its string, so that pointers from
    // different getters do not overwrite each other.
    std::string s_banner, s_domain, s_enhanced, s_message, s_text, s_cap;
    std::string s_res_enhanced, s_res_text, s_res_rcpt_text;
    // During a lmtp_deliver_batch callback: the transaction the results describe.
    const lmtp::Transaction* view = nullptr;
    // The `r` of a pool's callbacks (lmtp_pool_done_fn): never freed or closed by the caller;
    // `attempts` per recipient during the call.
    bool pool_view = false;
    const std::vector<unsigned>* attempts = nullptr;
    // What lmtp_mail_options_parse and lmtp_rcpt_options_parse point a caller's struct at,
    // and the extension lmtp_*_options_check names.
    std::string p_envid, p_transid, p_mail_extra, p_orcpt, p_orcpt_type, p_rcpt_extra;
    std::string s_mail_missing, s_rcpt_missing;

    const lmtp::Transaction& results() const { return view ? *view : client.transaction(); }

    int fail(int st, const std::string& message, int os_err = 0) {
        status = st;
        errmsg = message;
        os_error = os_err;
        return st;
    }
};

namespace {

// True when a caller's options struct is big enough to hold `field`
// (a program built against an older, shorter struct).
#define LMTP_HAS(o, field) \
    ((o)->struct_size >= offsetof(std::remove_pointer_t<decltype(o)>, field) + sizeof((o)->field))

// f's status, every exception turned into one and kept by `h` (a handle or a pool) with fail().
template <typename H, typename F>
int guarded(H* h, F&& f) {
    try {
        return f();
    } catch (const lmtp::Error& e) {
        return h->fail(static_cast<int>(e.status()), e.what(), e.os_error());
    } catch (const std::bad_alloc&) {
        return h->fail(LMTP_ERR_NO_MEMORY, "out of memory");
    } catch (const std::exception& e) {
        return h->fail(LMTP_ERR_INTERNAL, std::string("internal error: ") + e.what());
    } catch (...) {
        return h->fail(LMTP_ERR_INTERNAL, "internal error: unknown exception");
    }
}

// Runs f with every exception turned into a status (any time, even inside a callback).
template <typename F>
int call_any(lmtp_t* h, F&& f) {
    if (!h) return LMTP_ERR_INVALID_ARGUMENT;
    h->status = LMTP_OK;
    h->os_error = 0;
    h->errmsg.clear();
    return guarded(h, std::forward<F>(f));
}

// A call that changes the handle: not inside a lmtp_done_fn (lmtp.h, rule N6).
template <typename F>
int call(lmtp_t* h, F&& f) {
    if (h && h->in_callback)
        return h->fail(LMTP_ERR_BAD_SEQUENCE, "this call is not allowed inside a callback (lmtp.h, rule N6)");
    return call_any(h, std::forward<F>(f));
}

// A call that talks to the server and waits: not while the handle is driven by an event loop.
template <typename F>
int talk(lmtp_t* h, F&& f) {
    if (h && !h->in_callback && h->driven())
        return h->fail(LMTP_ERR_BAD_SEQUENCE,
                       "the handle is driven by lmtp_process (non-blocking); use lmtp_submit, or lmtp_close first");
    return call(h, std::forward<F>(f));
}

// The status of a command that got `reply`.
int answered(lmtp_t* h, const lmtp::Reply& reply, const char* what) {
    if (reply.positive()) return LMTP_OK;
    if (reply.empty()) return h->fail(LMTP_ERR_NOT_CONNECTED, std::string(what) + ": no reply");
    return h->fail(LMTP_ERR_REJECTED, std::string("the server refused ") + what + ": " + reply.summary());
}

std::string need(const char* s, const char* what) {
    if (!s) throw lmtp::Error(Status::invalid_argument, std::string(what) + " is NULL");
    return s;
}

// The `extra` field: words the core checks and keeps as they are.
std::vector<lmtp::Param> parse_extra(const char* extra) {
    return extra ? lmtp::parse_params(extra) : std::vector<lmtp::Param>{};
}

std::string text(const char* p) {
    return p ? std::string(p) : std::string();
}

// The TLS settings of an options struct (as far as the caller's struct goes).
lmtp::TlsOptions tls_options(const lmtp_options* opts) {
    lmtp::TlsOptions t;
    if (LMTP_HAS(opts, flags)) t.insecure_skip_verify = (opts->flags & LMTP_OPT_TLS_INSECURE_SKIP_VERIFY) != 0;
    if (LMTP_HAS(opts, tls_ca_file)) t.ca_file = text(opts->tls_ca_file);
    if (LMTP_HAS(opts, tls_ca_dir)) t.ca_dir = text(opts->tls_ca_dir);
    if (LMTP_HAS(opts, tls_cert_file)) t.cert_file = text(opts->tls_cert_file);
    if (LMTP_HAS(opts, tls_key_file)) t.key_file = text(opts->tls_key_file);
    if (LMTP_HAS(opts, tls_server_name)) t.server_name = text(opts->tls_server_name);
    if (LMTP_HAS(opts, tls_min_version)) {
        t.min_version = opts->tls_min_version;
        if (t.min_version != 0 && t.min_version != 0x0303 && t.min_version != 0x0304) {
            char hex[16];
            std::snprintf(hex, sizeof hex, "0x%04x", static_cast<unsigned>(t.min_version));
            throw lmtp::Error(Status::invalid_argument, std::string("lmtp_options.tls_min_version ") + hex +
                                                            " is not 0, 0x0303 (TLS 1.2) or 0x0304 (TLS 1.3)");
        }
    }
    return t;
}

// How lmtp_deliver* sends the message, from the mail options.
struct Body {
    lmtp::Transfer transfer = lmtp::Transfer::automatic;
    bool canonical = false;
};

Body body_options(const lmtp_mail_options* o) {
    Body b;
    if (!o) return b;
    if (LMTP_HAS(o, flags)) b.canonical = (o->flags & LMTP_BODY_CANONICAL) != 0;
    if (LMTP_HAS(o, transfer)) {
        switch (o->transfer) {
            case LMTP_TRANSFER_AUTO: break;
            case LMTP_TRANSFER_DATA: b.transfer = lmtp::Transfer::data; break;
            case LMTP_TRANSFER_BDAT: b.transfer = lmtp::Transfer::bdat; break;
            default: throw lmtp::Error(Status::invalid_argument, "unknown transfer " + std::to_string(o->transfer));
        }
    }
    return b;
}

lmtp::MailParams mail_params(const lmtp_mail_options* o, bool& force) {
    lmtp::MailParams p;
    force = false;
    if (!o) return p;
    if (o->struct_size < sizeof(std::size_t))
        throw lmtp::Error(Status::invalid_argument, "lmtp_mail_options.struct_size is not set");
    if (LMTP_HAS(o, size) && o->size) p.size = o->size;
    if (LMTP_HAS(o, body)) {
        switch (o->body) {
            case LMTP_BODY_NONE: break;
            case LMTP_BODY_7BIT: p.body = lmtp::BodyType::seven_bit; break;
            case LMTP_BODY_8BITMIME: p.body = lmtp::BodyType::eight_bit_mime; break;
            case LMTP_BODY_BINARYMIME: p.body = lmtp::BodyType::binary_mime; break;
            default: throw lmtp::Error(Status::invalid_argument, "unknown body type " + std::to_string(o->body));
        }
    }
    if (LMTP_HAS(o, smtputf8)) p.smtputf8 = o->smtputf8 != 0;
    if (LMTP_HAS(o, ret)) {
        switch (o->ret) {
            case LMTP_RET_NONE: break;
            case LMTP_RET_FULL: p.ret = lmtp::Ret::full; break;
            case LMTP_RET_HDRS: p.ret = lmtp::Ret::hdrs; break;
            default: throw lmtp::Error(Status::invalid_argument, "unknown RET value " + std::to_string(o->ret));
        }
    }
    if (LMTP_HAS(o, envid) && o->envid) p.envid = o->envid;
    if (LMTP_HAS(o, transid) && o->transid) p.transid = o->transid;
    if (LMTP_HAS(o, extra)) p.extra = parse_extra(o->extra);
    if (LMTP_HAS(o, flags)) force = (o->flags & LMTP_FORCE) != 0;
    return p;
}

lmtp::RcptParams rcpt_params(const lmtp_rcpt_options* o, bool& force) {
    lmtp::RcptParams p;
    force = false;
    if (!o) return p;
    if (o->struct_size < sizeof(std::size_t))
        throw lmtp::Error(Status::invalid_argument, "lmtp_rcpt_options.struct_size is not set");
    if (LMTP_HAS(o, notify)) p.notify = o->notify;
    if (LMTP_HAS(o, orcpt) && o->orcpt) p.orcpt = o->orcpt;
    if (LMTP_HAS(o, orcpt_type) && o->orcpt_type) p.orcpt_type = o->orcpt_type;
    if (LMTP_HAS(o, extra)) p.extra = parse_extra(o->extra);
    if (LMTP_HAS(o, flags)) force = (o->flags & LMTP_FORCE) != 0;
    return p;
}

const lmtp::RecipientResult* result(lmtp_t* h, std::size_t i) {
    if (!h) return nullptr;
    const auto& r = h->results().recipients;
    return i < r.size() ? &r[i] : nullptr;
}

// Stores what `make` builds in the handle's slot for this getter. Getters
// return no status, so an allocation failure gives "" (never an exception
// across the C border).
template <typename Make>
const char* keep(std::string& slot, Make&& make) noexcept {
    try {
        slot = make();
        return slot.c_str();
    } catch (...) {
        return "";
    }
}

// The message read through a caller's callback; a negative return abandons it.
lmtp::BodySource reader(lmtp_read_fn read, void* user) {
    return [read, user](char* buf, std::size_t cap) -> std::size_t {
        long n = read(user, buf, cap);
        if (n < 0) throw lmtp::Error(Status::aborted, "the read callback returned " + std::to_string(n));
        return static_cast<std::size_t>(n);
    };
}

std::vector<std::string> recipients(const char* const* rcpts, std::size_t n) {
    if (!rcpts && n) throw lmtp::Error(Status::invalid_argument, "recipient list is NULL");
    std::vector<std::string> list;
    list.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
        if (!rcpts[i]) throw lmtp::Error(Status::invalid_argument, "recipient " + std::to_string(i) + " is NULL");
        list.emplace_back(rcpts[i]);
    }
    return list;
}

}  // namespace

extern "C" {

const char* lmtp_version(void) {
#define LMTP_STR2(x) #x
#define LMTP_STR(x) LMTP_STR2(x)
    return LMTP_STR(LMTP_VERSION_MAJOR) "." LMTP_STR(LMTP_VERSION_MINOR) "." LMTP_STR(LMTP_VERSION_PATCH);
}

unsigned lmtp_version_num(void) {
    return LMTP_VERSION_NUM;
}

const char* lmtp_strerror(int status) {
    if (status < 0 || status >= lmtp::status_count()) return "unknown status code";
    return lmtp::status_description(static_cast<Status>(status));
}

const char* lmtp_status_name(int status) {
    if (status < 0 || status >= lmtp::status_count()) return nullptr;
    return lmtp::status_name(static_cast<Status>(status));
}

int lmtp_status_reply_code(int status) {
    return lmtp::status_reply_code(static_cast<Status>(status));  // 0 for a number that is no status
}

void lmtp_options_init(lmtp_options* opts) {
    if (!opts) return;
    *opts = lmtp_options LMTP_OPTIONS_INIT;
}

void lmtp_mail_options_init(lmtp_mail_options* opts) {
    if (!opts) return;
    *opts = lmtp_mail_options LMTP_MAIL_OPTIONS_INIT;
}

void lmtp_rcpt_options_init(lmtp_rcpt_options* opts) {
    if (!opts) return;
    *opts = lmtp_rcpt_options LMTP_RCPT_OPTIONS_INIT;
}

void lmtp_message_init(struct lmtp_message* msg) {
    if (!msg) return;
    *msg = lmtp_message_t LMTP_MESSAGE_INIT;
}

namespace {

// The ClientOptions an lmtp_options struct gives (lmtp_create, lmtp_pool_new); `bad` says why
// they are unusable, `fn` and `user` are its trace callback.
lmtp::ClientOptions client_options(const lmtp_options* opts, std::string& bad, lmtp_trace_fn& fn, void*& user) {
    lmtp::ClientOptions o;
    if (opts && opts->struct_size < sizeof(std::size_t)) {
        bad = "lmtp_options.struct_size is not set (initialise the struct with LMTP_OPTIONS_INIT)";
    } else if (opts) {
        if (LMTP_HAS(opts, timeout_ms) && opts->timeout_ms) o.timeout = std::chrono::milliseconds(opts->timeout_ms);
        if (LMTP_HAS(opts, connect_timeout_ms) && opts->connect_timeout_ms)
            o.connect_timeout = std::chrono::milliseconds(opts->connect_timeout_ms);
        if (LMTP_HAS(opts, hello) && opts->hello) o.hello = opts->hello;
        if (LMTP_HAS(opts, local_address) && opts->local_address) o.local_address = opts->local_address;
        if (LMTP_HAS(opts, local_port)) {
            if (opts->local_port > 65535)
                bad = "lmtp_options.local_port " + std::to_string(opts->local_port) + " is out of range";
            else
                o.local_port = static_cast<std::uint16_t>(opts->local_port);
        }
        if (LMTP_HAS(opts, max_reply_line) && opts->max_reply_line)
            o.limits.reply.max_reply_line = opts->max_reply_line;
        if (LMTP_HAS(opts, max_reply_size) && opts->max_reply_size)
            o.limits.reply.max_reply_size = opts->max_reply_size;
        if (LMTP_HAS(opts, max_command_line) && opts->max_command_line)
            o.limits.max_command_line = opts->max_command_line;
        if (LMTP_HAS(opts, trace)) fn = opts->trace;
        if (LMTP_HAS(opts, trace_user)) user = opts->trace_user;
        if (LMTP_HAS(opts, flags)) {
            o.limits.reply.accept_bare_lf = (opts->flags & LMTP_OPT_ACCEPT_BARE_LF) != 0;
            o.send_hello = (opts->flags & LMTP_OPT_NO_HELLO) == 0;
            o.implicit_tls = (opts->flags & LMTP_OPT_IMPLICIT_TLS) != 0;
            o.auth_allow_plaintext = (opts->flags & LMTP_OPT_AUTH_ALLOW_PLAINTEXT) != 0;
            o.strict_replies = (opts->flags & LMTP_OPT_STRICT_REPLIES) != 0;
        }
        if (LMTP_HAS(opts, starttls)) {
            switch (opts->starttls) {
                case LMTP_STARTTLS_OFF: o.starttls = lmtp::StartTls::off; break;
                case LMTP_STARTTLS_OPPORTUNISTIC: o.starttls = lmtp::StartTls::opportunistic; break;
                case LMTP_STARTTLS_REQUIRED: o.starttls = lmtp::StartTls::required; break;
                default:
                    bad = "lmtp_options.starttls " + std::to_string(opts->starttls) +
                          " is not an LMTP_STARTTLS_ value";
            }
        }
        try {
            o.tls = tls_options(opts);
        } catch (const lmtp::Error& e) {
            if (bad.empty()) bad = e.what();
        }
        if (LMTP_HAS(opts, auth_user)) o.auth_user = text(opts->auth_user);
        if (LMTP_HAS(opts, auth_password)) o.auth_password = text(opts->auth_password);
        if (LMTP_HAS(opts, auth_mechanism)) o.auth_mechanism = text(opts->auth_mechanism);
        if (LMTP_HAS(opts, bdat_chunk_size) && opts->bdat_chunk_size) o.bdat_chunk = opts->bdat_chunk_size;
        if (LMTP_HAS(opts, max_in_flight) && opts->max_in_flight) o.max_in_flight = opts->max_in_flight;
    }
    return o;
}

}  // namespace

int lmtp_create(lmtp_t** out, const lmtp_options* opts) {
    if (!out) return LMTP_ERR_INVALID_ARGUMENT;
    *out = nullptr;
    try {
        lmtp_trace_fn fn = nullptr;
        void* user = nullptr;
        std::string bad;  // why the options are unusable
        lmtp::ClientOptions o = client_options(opts, bad, fn, user);
        if (!bad.empty()) {
            // A handle all the same, so that lmtp_errmsg() can say which option.
            auto* h = new lmtp_handle(lmtp::ClientOptions{});
            *out = h;
            return h->fail(LMTP_ERR_INVALID_ARGUMENT, bad);
        }
        auto* h = new lmtp_handle(std::move(o));
        if (fn) lmtp_set_trace(h, fn, user);
        *out = h;
        return LMTP_OK;
    } catch (const std::bad_alloc&) {
        return LMTP_ERR_NO_MEMORY;
    } catch (...) {
        return LMTP_ERR_INTERNAL;
    }
}

int lmtp_connect(lmtp_t* h, const char* host, unsigned port) {
    return talk(h, [&]() -> int {
        if (port > 65535)
            throw lmtp::Error(Status::invalid_argument, "port " + std::to_string(port) + " is out of range");
        h->client.connect(need(host, "host"), static_cast<std::uint16_t>(port));
        return LMTP_OK;
    });
}

int lmtp_new(lmtp_t** out, const char* host, unsigned port, const lmtp_options* opts) {
    int st = lmtp_create(out, opts);
    if (st != LMTP_OK) return st;
    return lmtp_connect(*out, host, port);
}

namespace {

// The callbacks due, each message's once (lmtp.h, rules N6 and N7), then a close or free asked
// for inside one. False when the handle is gone.
bool run_callbacks(lmtp_t* h) {
    lmtp::Engine& engine = h->client.engine();
    for (;;) {
        while (engine.has_delivered()) {
            lmtp::Delivered d = engine.take_delivered();
            auto it = h->submitted.begin();
            while (it != h->submitted.end() && it->token != d.token) ++it;
            if (it == h->submitted.end()) continue;
            lmtp_handle::Submitted sub = *it;
            h->submitted.erase(it);
            if (!sub.done) continue;
            const int status = h->status, os_error = h->os_error;
            std::string errmsg = std::move(h->errmsg);
            h->view = &d.txn;
            h->status = static_cast<int>(d.status);
            h->errmsg = d.why;
            h->os_error = 0;
            ++h->in_callback;
            sub.done(sub.user, h, h->status);
            --h->in_callback;
            h->view = nullptr;
            h->status = status;
            h->os_error = os_error;
            h->errmsg = std::move(errmsg);
        }
        if (!h->close_after && !h->free_after) return true;
        h->close_after = false;
        if (h->nb) h->nb->close(Status::closed, "the connection was closed by the caller");
        h->client.close();
        if (engine.has_delivered()) continue;  // the messages it dropped: their callbacks first
        if (h->free_after) {
            delete h;
            return false;
        }
        return true;
    }
}

}  // namespace

void lmtp_free(lmtp_t* h) {
    if (!h || h->pool_view) return;
    h->free_after = true;
    if (h->in_callback) return;  // when the callback returns
    run_callbacks(h);
}

int lmtp_close(lmtp_t* h) {
    if (h && h->pool_view) return h->fail(LMTP_ERR_BAD_SEQUENCE, "a pool's result handle cannot be closed");
    if (h && h->in_callback) {
        h->close_after = true;
        return LMTP_OK;
    }
    return call(h, [&]() -> int {
        h->close_after = true;
        run_callbacks(h);
        return LMTP_OK;
    });
}

int lmtp_is_connected(const lmtp_t* h) {
    if (!h) return 0;
    if (h->driven()) return h->client.engine().is_open() ? 1 : 0;
    return h->client.connected() ? 1 : 0;
}

int lmtp_set_timeout(lmtp_t* h, unsigned timeout_ms) {
    return call(h, [&]() -> int {
        h->client.set_timeout(std::chrono::milliseconds(timeout_ms));
        return LMTP_OK;
    });
}

int lmtp_set_max_in_flight(lmtp_t* h, size_t octets) {
    return call(h, [&]() -> int {
        h->client.set_max_in_flight(octets);
        return LMTP_OK;
    });
}

unsigned lmtp_timeout(const lmtp_t* h) {
    return h ? static_cast<unsigned>(h->client.timeout().count()) : 0;
}

int lmtp_set_trace(lmtp_t* h, lmtp_trace_fn trace, void* user) {
    return call(h, [&]() -> int {
        h->trace_fn = trace;
        h->trace_user = user;
        if (!trace) {
            h->client.set_trace(nullptr);
        } else {
            h->client.set_trace([h](lmtp::TraceDir dir, std::string_view line) {
                // Never NULL, even for an empty line.
                h->trace_fn(h->trace_user, static_cast<int>(dir), line.empty() ? "" : line.data(), line.size());
            });
        }
        return LMTP_OK;
    });
}

const char* lmtp_banner(lmtp_t* h) {
    return h ? keep(h->s_banner, [&] { return h->client.banner().message(); }) : "";
}
const char* lmtp_domain(lmtp_t* h) {
    return h ? keep(h->s_domain, [&] { return h->client.domain(); }) : "";
}

int lmtp_supports(lmtp_t* h, const char* keyword) {
    return h && keyword && h->client.supports(keyword) ? 1 : 0;
}

const char* lmtp_capability(lmtp_t* h, const char* keyword) {
    if (!h || !keyword) return nullptr;
    auto p = h->client.capabilities().params(keyword);
    return p ? keep(h->s_cap, [&] { return std::string(*p); }) : nullptr;
}

unsigned long long lmtp_size_limit(lmtp_t* h) {
    return h ? h->client.capabilities().size_limit() : 0;
}

int lmtp_code(lmtp_t* h) {
    return h ? h->client.last_reply().code : 0;
}

const char* lmtp_enhanced(lmtp_t* h) {
    return h ? keep(h->s_enhanced, [&] { return h->client.last_reply().enhanced.str(); }) : "";
}

int lmtp_enhanced_parts(lmtp_t* h, int* klass, int* subject, int* detail) {
    if (!h) return 0;
    const auto& e = h->client.last_reply().enhanced;
    if (klass) *klass = e.klass;
    if (subject) *subject = e.subject;
    if (detail) *detail = e.detail;
    return e.present() ? 1 : 0;
}

const char* lmtp_message(lmtp_t* h) {
    return h ? keep(h->s_message, [&] { return h->client.last_reply().message(); }) : "";
}
const char* lmtp_text(lmtp_t* h) {
    return h ? keep(h->s_text, [&] { return h->client.last_reply().text(); }) : "";
}
size_t lmtp_message_count(lmtp_t* h) {
    return h ? h->client.last_reply().lines.size() : 0;
}

const char* lmtp_message_line(lmtp_t* h, size_t i) {
    if (!h) return "";
    const auto& lines = h->client.last_reply().lines;
    return i < lines.size() ? lines[i].c_str() : "";
}

int lmtp_errcode(lmtp_t* h) {
    return h ? h->status : LMTP_ERR_INVALID_ARGUMENT;
}
const char* lmtp_errmsg(lmtp_t* h) {
    return h ? h->errmsg.c_str() : "";
}
int lmtp_os_error(lmtp_t* h) {
    return h ? h->os_error : 0;
}

int lmtp_hello(lmtp_t* h, const char* domain) {
    return talk(h, [&]() -> int { return answered(h, h->client.hello(need(domain, "domain")), "LHLO"); });
}

int lmtp_mail(lmtp_t* h, const char* from, const lmtp_mail_options* opts) {
    return talk(h, [&]() -> int {
        bool force = false;
        lmtp::MailParams p = mail_params(opts, force);
        return answered(h, h->client.mail(need(from, "sender"), p, force), "MAIL FROM");
    });
}

static int old_mail(lmtp_t* h, lmtp::MailVerb verb, const char* from, const char* what) {
    return talk(h, [&]() -> int { return answered(h, h->client.mail(verb, need(from, "sender")), what); });
}

int lmtp_send(lmtp_t* h, const char* from) {
    return old_mail(h, lmtp::MailVerb::send, from, "SEND FROM");
}
int lmtp_send_or_mail(lmtp_t* h, const char* from) {
    return old_mail(h, lmtp::MailVerb::soml, from, "SOML FROM");
}
int lmtp_send_and_mail(lmtp_t* h, const char* from) {
    return old_mail(h, lmtp::MailVerb::saml, from, "SAML FROM");
}

int lmtp_recipient(lmtp_t* h, const char* to, const lmtp_rcpt_options* opts) {
    return talk(h, [&]() -> int {
        bool force = false;
        lmtp::RcptParams p = rcpt_params(opts, force);
        return answered(h, h->client.rcpt(need(to, "recipient"), p, force), "RCPT TO");
    });
}

int lmtp_to(lmtp_t* h, const char* to, const lmtp_rcpt_options* opts) {
    return lmtp_recipient(h, to, opts);
}

int lmtp_reset(lmtp_t* h) {
    return talk(h, [&]() -> int { return answered(h, h->client.rset(), "RSET"); });
}
int lmtp_noop(lmtp_t* h) {
    return talk(h, [&]() -> int { return answered(h, h->client.noop(), "NOOP"); });
}
int lmtp_verify(lmtp_t* h, const char* address) {
    return talk(h, [&]() -> int { return answered(h, h->client.verify(need(address, "address")), "VRFY"); });
}
int lmtp_expand(lmtp_t* h, const char* list) {
    return talk(h, [&]() -> int { return answered(h, h->client.expand(need(list, "list")), "EXPN"); });
}
int lmtp_help(lmtp_t* h, const char* topic) {
    return talk(h, [&]() -> int { return answered(h, h->client.help(topic ? topic : ""), "HELP"); });
}
int lmtp_etrn(lmtp_t* h, const char* domain) {
    return talk(h, [&]() -> int { return answered(h, h->client.etrn(need(domain, "domain")), "ETRN"); });
}

int lmtp_quit(lmtp_t* h) {
    return talk(h, [&]() -> int {
        const lmtp::Reply& r = h->client.quit();
        if (r.empty() || r.positive()) return LMTP_OK;  // a server may just hang up on QUIT
        return h->fail(LMTP_ERR_REJECTED, "the server refused QUIT: " + r.summary());
    });
}

int lmtp_data(lmtp_t* h, const void* msg, size_t len) {
    return talk(h, [&]() -> int {
        if (!msg && len) throw lmtp::Error(Status::invalid_argument, "message is NULL");
        const lmtp::Reply& r = h->client.data(std::string_view(static_cast<const char*>(msg), msg ? len : 0));
        if (h->client.transaction().data_accepted()) return LMTP_OK;  // every final reply is in
        return answered(h, r, "DATA");
    });
}

int lmtp_data_start(lmtp_t* h) {
    return talk(h, [&]() -> int { return answered(h, h->client.data_start(), "DATA"); });
}

int lmtp_data_write(lmtp_t* h, const void* buf, size_t len) {
    return talk(h, [&]() -> int {
        if (!buf && len) throw lmtp::Error(Status::invalid_argument, "buffer is NULL");
        h->client.data_write(std::string_view(static_cast<const char*>(buf), buf ? len : 0));
        return LMTP_OK;
    });
}

int lmtp_data_end(lmtp_t* h) {
    return talk(h, [&]() -> int {
        h->client.data_end();
        return LMTP_OK;
    });
}

int lmtp_bdat(lmtp_t* h, const void* buf, size_t len, int last) {
    return talk(h, [&]() -> int {
        if (!buf && len) throw lmtp::Error(Status::invalid_argument, "buffer is NULL");
        const lmtp::Reply& r =
            h->client.bdat(std::string_view(static_cast<const char*>(buf), buf ? len : 0), last != 0);
        if (last && h->client.transaction().accepted.empty())
            return h->fail(LMTP_ERR_NO_RECIPIENTS, "no recipient was accepted: the message went to nobody");
        if (last) return LMTP_OK;  // every final reply is in: see the results
        return answered(h, r, "the BDAT chunk");
    });
}

int lmtp_starttls(lmtp_t* h) {
    return talk(h, [&]() -> int {
        const lmtp::Reply& r = h->client.starttls();
        if (!h->client.tls_active()) return answered(h, r, "STARTTLS");
        return answered(h, r, "LHLO after STARTTLS");
    });
}

int lmtp_tls_active(lmtp_t* h) {
    return h && h->client.tls_active() ? 1 : 0;
}

int lmtp_set_tls(lmtp_t* h, const lmtp_options* opts) {
    return call(h, [&]() -> int {
        if (!opts || opts->struct_size < sizeof(std::size_t))
            throw lmtp::Error(Status::invalid_argument, "lmtp_options is NULL or its struct_size is not set");
        h->client.set_tls_options(tls_options(opts));
        if (LMTP_HAS(opts, flags)) h->client.set_implicit_tls((opts->flags & LMTP_OPT_IMPLICIT_TLS) != 0);
        return LMTP_OK;
    });
}

int lmtp_auth(lmtp_t* h, const char* user, const char* password, const char* mechanism, unsigned flags) {
    return talk(h, [&]() -> int {
        h->client.auth(need(user, "user"), password ? password : "", mechanism ? mechanism : "",
                       (flags & LMTP_OPT_AUTH_ALLOW_PLAINTEXT) != 0);
        return LMTP_OK;
    });
}

int lmtp_command(lmtp_t* h, const char* line) {
    return talk(h, [&]() -> int {
        h->client.command(need(line, "command line"));
        return LMTP_OK;
    });
}

int lmtp_response(lmtp_t* h) {
    return talk(h, [&]() -> int { return answered(h, h->client.response(), "the command"); });
}

int lmtp_deliver(lmtp_t* h, const char* from, const char* const* rcpts, size_t nrcpts, const void* msg, size_t len,
                 const lmtp_mail_options* mopts, const lmtp_rcpt_options* ropts) {
    return talk(h, [&]() -> int {
        if (!msg && len) throw lmtp::Error(Status::invalid_argument, "message is NULL");
        bool mforce = false, rforce = false;
        lmtp::MailParams mp = mail_params(mopts, mforce);
        lmtp::RcptParams rp = rcpt_params(ropts, rforce);
        Body b = body_options(mopts);
        h->client.deliver(need(from, "sender"), recipients(rcpts, nrcpts),
                          std::string_view(static_cast<const char*>(msg), msg ? len : 0), mp, rp, mforce || rforce,
                          b.transfer, b.canonical);
        return LMTP_OK;
    });
}

int lmtp_deliver_stream(lmtp_t* h, const char* from, const char* const* rcpts, size_t nrcpts, lmtp_read_fn read,
                        void* user, const lmtp_mail_options* mopts, const lmtp_rcpt_options* ropts) {
    return talk(h, [&]() -> int {
        if (!read) throw lmtp::Error(Status::invalid_argument, "read callback is NULL");
        bool mforce = false, rforce = false;
        lmtp::MailParams mp = mail_params(mopts, mforce);
        lmtp::RcptParams rp = rcpt_params(ropts, rforce);
        Body b = body_options(mopts);
        h->client.deliver(need(from, "sender"), recipients(rcpts, nrcpts), reader(read, user), mp, rp, mforce || rforce,
                          b.transfer, b.canonical);
        return LMTP_OK;
    });
}

// Message i of the caller's as the core takes it; throws for an unusable one.
static lmtp::BatchMessage core_message(const lmtp_message_t* m, std::size_t i) {
    if (m->struct_size < sizeof(std::size_t))
        throw lmtp::Error(Status::invalid_argument, "lmtp_message.struct_size is not set");
    if (!LMTP_HAS(m, rcpt)) throw lmtp::Error(Status::invalid_argument, "lmtp_message.struct_size is too small");
    lmtp::BatchMessage b;
    b.from = need(m->from, "sender");
    b.recipients = recipients(m->rcpts, m->nrcpts);
    if (m->data) {
        b.bytes = std::string_view(static_cast<const char*>(m->data), m->len);  // read in place
        b.size_hint = m->len;
    } else if (m->read) {
        b.source = reader(m->read, m->read_user);
    } else if (m->len) {
        throw lmtp::Error(Status::invalid_argument, "message " + std::to_string(i) + " has neither data nor read");
    } else {
        b.source = lmtp::memory_source({});
    }
    bool mforce = false, rforce = false;
    b.mail_params = mail_params(m->mail, mforce);
    b.rcpt_params = rcpt_params(m->rcpt, rforce);
    b.force = mforce || rforce;
    Body body = body_options(m->mail);
    b.transfer = body.transfer;
    b.canonical = body.canonical;
    return b;
}

}  // extern "C"

// ---- parameters as written on the wire; what a reply says; the size of a message ----------

namespace {

// A command-line limit no set of parameters reaches: lmtp_*_options_check formats a line only to
// check its parameters; whether it fits depends on the address it will carry.
constexpr std::size_t kAnyLength = std::size_t{1} << 30;

// "K=V K2": parameters for the `extra` field of an options struct.
std::string extra_words(const std::vector<lmtp::Param>& params) {
    std::string out;
    for (const auto& p : params) {
        if (!out.empty()) out += ' ';
        out += p.keyword;
        if (p.value) out += '=' + *p.value;
    }
    return out;
}

const char* or_null(const std::string& s) {
    return s.empty() ? nullptr : s.c_str();
}

template <typename Options>
void need_options(const Options* opts, const char* what) {
    if (!opts || opts->struct_size < sizeof(std::size_t))
        throw lmtp::Error(Status::invalid_argument, std::string(what) + " is NULL or its struct_size is not set");
}

// The status of lmtp_*_options_check: the first parameter the server cannot take, if any.
int check_offered(lmtp_t* h, const std::vector<std::pair<std::string, std::string>>& gaps, const char* command,
                  std::string& slot, const char** missing) {
    if (gaps.empty()) return LMTP_OK;
    const auto& [extension, param] = gaps.front();
    slot = extension;
    if (missing) *missing = slot.c_str();
    return h->fail(LMTP_ERR_NOT_ADVERTISED, std::string(command) + " parameter " + param + " needs the " + extension +
                                                " extension, which the server did not advertise");
}

}  // namespace

extern "C" {

int lmtp_mail_options_parse(lmtp_t* h, lmtp_mail_options* opts, const char* wire) {
    return call(h, [&]() -> int {
        need_options(opts, "lmtp_mail_options");
        const lmtp::MailParams p = lmtp::parse_mail_params(need(wire, "parameter string"));
        std::string extra = extra_words(p.extra);
        h->p_envid = p.envid;
        h->p_transid = p.transid;
        h->p_mail_extra = std::move(extra);
        if (LMTP_HAS(opts, size)) opts->size = p.size.value_or(0);
        if (LMTP_HAS(opts, body)) opts->body = static_cast<int>(p.body);
        if (LMTP_HAS(opts, smtputf8)) opts->smtputf8 = p.smtputf8 ? 1 : 0;
        if (LMTP_HAS(opts, ret)) opts->ret = static_cast<int>(p.ret);
        if (LMTP_HAS(opts, envid)) opts->envid = or_null(h->p_envid);
        if (LMTP_HAS(opts, transid)) opts->transid = or_null(h->p_transid);
        if (LMTP_HAS(opts, extra)) opts->extra = or_null(h->p_mail_extra);
        return LMTP_OK;
    });
}

int lmtp_rcpt_options_parse(lmtp_t* h, lmtp_rcpt_options* opts, const char* wire) {
    return call(h, [&]() -> int {
        need_options(opts, "lmtp_rcpt_options");
        const lmtp::RcptParams p = lmtp::parse_rcpt_params(need(wire, "parameter string"));
        std::string extra = extra_words(p.extra);
        h->p_orcpt = p.orcpt;
        h->p_orcpt_type = p.orcpt.empty() ? std::string() : p.orcpt_type;
        h->p_rcpt_extra = std::move(extra);
        if (LMTP_HAS(opts, notify)) opts->notify = p.notify;
        if (LMTP_HAS(opts, orcpt)) opts->orcpt = or_null(h->p_orcpt);
        if (LMTP_HAS(opts, orcpt_type)) opts->orcpt_type = or_null(h->p_orcpt_type);
        if (LMTP_HAS(opts, extra)) opts->extra = or_null(h->p_rcpt_extra);
        return LMTP_OK;
    });
}

int lmtp_mail_options_check(lmtp_t* h, const lmtp_mail_options* opts, const char** missing) {
    if (missing) *missing = nullptr;
    return call(h, [&]() -> int {
        bool force = false;
        const lmtp::MailParams p = mail_params(opts, force);
        lmtp::cmd::mail(lmtp::MailVerb::mail, "", p, kAnyLength);  // what lmtp_mail would refuse whatever is offered
        return check_offered(h, lmtp::unoffered(p, h->client.capabilities()), "MAIL", h->s_mail_missing, missing);
    });
}

int lmtp_rcpt_options_check(lmtp_t* h, const lmtp_rcpt_options* opts, const char** missing) {
    if (missing) *missing = nullptr;
    return call(h, [&]() -> int {
        bool force = false;
        const lmtp::RcptParams p = rcpt_params(opts, force);
        lmtp::cmd::rcpt("postmaster", p, kAnyLength);
        return check_offered(h, lmtp::unoffered(p, h->client.capabilities()), "RCPT", h->s_rcpt_missing, missing);
    });
}

int lmtp_reply_class(lmtp_t* h) {
    if (!h) return LMTP_REPLY_NONE;
    const lmtp::Reply& r = h->client.last_reply();
    if (r.completion()) return LMTP_REPLY_COMPLETION;
    if (r.intermediate()) return LMTP_REPLY_INTERMEDIATE;
    if (r.transient()) return LMTP_REPLY_TRANSIENT;
    if (r.permanent()) return LMTP_REPLY_PERMANENT;
    return LMTP_REPLY_NONE;
}

unsigned long long lmtp_canonical_length(const void* msg, size_t len) {
    return msg ? lmtp::canonical_length(std::string_view(static_cast<const char*>(msg), len)) : 0;
}

int lmtp_canonical_length_stream(lmtp_read_fn read, void* user, unsigned long long* size) {
    if (!read || !size) return LMTP_ERR_INVALID_ARGUMENT;
    try {
        std::vector<char> buf(64 * 1024);
        lmtp::CanonicalLength length;
        for (;;) {
            long n = read(user, buf.data(), buf.size());
            if (n < 0) return LMTP_ERR_ABORTED;
            if (n == 0) break;
            length.add(std::string_view(buf.data(), std::min(static_cast<std::size_t>(n), buf.size())));
        }
        *size = length.total();
        return LMTP_OK;
    } catch (const std::bad_alloc&) {
        return LMTP_ERR_NO_MEMORY;
    } catch (...) {
        return LMTP_ERR_INTERNAL;
    }
}

int lmtp_deliver_batch(lmtp_t* h, const struct lmtp_message* msgs, size_t n, lmtp_batch_fn done, void* user) {
    return talk(h, [&]() -> int {
        if (!msgs && n) throw lmtp::Error(Status::invalid_argument, "message list is NULL");
        // Message i as the core takes it; a bad one fails alone.
        lmtp::BatchSource next = [&](std::size_t i) { return core_message(&msgs[i], i); };
        bool stopped_by_caller = false;
        lmtp::BatchDone report = [&](std::size_t i, const lmtp::Transaction& txn, Status st, const std::string& why) {
            if (!done) return true;
            h->view = &txn;
            h->status = static_cast<int>(st);
            h->errmsg = why;
            bool go_on = done(user, i, h->status) == 0;
            h->view = nullptr;
            h->status = LMTP_OK;
            h->errmsg.clear();
            if (!go_on) stopped_by_caller = true;
            return go_on;
        };
        bool whole = h->client.deliver_batch(n, next, report);
        if (!whole && stopped_by_caller)
            return h->fail(LMTP_ERR_ABORTED, "the batch was stopped by its callback");
        return LMTP_OK;
    });
}

size_t lmtp_result_count(lmtp_t* h) {
    return h ? h->results().recipients.size() : 0;
}

const char* lmtp_result_address(lmtp_t* h, size_t i) {
    const auto* r = result(h, i);
    return r ? r->address.c_str() : "";
}

int lmtp_result_status(lmtp_t* h, size_t i) {
    const auto* r = result(h, i);
    if (!r) return LMTP_RESULT_UNKNOWN;
    return static_cast<int>(r->outcome);  // the same numbers (checked above)
}

int lmtp_result_stage(lmtp_t* h, size_t i) {
    const auto* r = result(h, i);
    return r ? static_cast<int>(r->stage) : LMTP_STAGE_NONE;
}

int lmtp_result_code(lmtp_t* h, size_t i) {
    const auto* r = result(h, i);
    return r ? r->reply.code : 0;
}

const char* lmtp_result_enhanced(lmtp_t* h, size_t i) {
    const auto* r = result(h, i);
    return r ? keep(h->s_res_enhanced, [&] { return r->reply.enhanced.str(); }) : "";
}

const char* lmtp_result_text(lmtp_t* h, size_t i) {
    const auto* r = result(h, i);
    return r ? keep(h->s_res_text, [&] { return r->reply.text(); }) : "";
}

int lmtp_result_rcpt_code(lmtp_t* h, size_t i) {
    const auto* r = result(h, i);
    return r ? r->rcpt_reply.code : 0;
}

const char* lmtp_result_rcpt_text(lmtp_t* h, size_t i) {
    const auto* r = result(h, i);
    return r ? keep(h->s_res_rcpt_text, [&] { return r->rcpt_reply.text(); }) : "";
}

}  // extern "C"

// --- non-blocking use ---------------------------------------------------------------------------

namespace {

lmtp::EventDriver& driver(lmtp_t* h) {
    if (!h->nb) h->nb = std::make_unique<lmtp::EventDriver>(h->client.engine(), h->client.options());
    return *h->nb;
}

// A call that processes: its status, then the callbacks due (which must not change it).
template <typename F>
int process_call(lmtp_t* h, F&& f) {
    if (!h) return LMTP_ERR_INVALID_ARGUMENT;
    int st = call(h, std::forward<F>(f));
    if (h->in_callback) return st;
    int os_error = h->os_error;
    std::string errmsg = h->errmsg;
    for (;;) {
        h->submitted_inside = false;
        if (!run_callbacks(h)) return st;
        if (!h->submitted_inside || !h->driven()) break;
        // Messages submitted by the callbacks: their first bytes are queued (and written if the
        // socket takes them) before the call returns, so that lmtp_want asks for the write.
        int again = call(h, [&]() -> int {
            h->nb->process(0, lmtp::Clock::now());
            return LMTP_OK;
        });
        if (again != LMTP_OK && st == LMTP_OK) {
            st = again;
            os_error = h->os_error;
            errmsg = h->errmsg;
        }
    }
    h->status = st;
    h->os_error = os_error;
    h->errmsg = std::move(errmsg);
    return st;
}

// A new connection in the non-blocking mode replaces whatever the handle had.
void restart(lmtp_t* h) {
    h->close_after = true;
    run_callbacks(h);
}

}  // namespace

int lmtp_connect_start(lmtp_t* h, const char* host, unsigned port) {
    return call(h, [&]() -> int {
        if (port > 65535)
            throw lmtp::Error(Status::invalid_argument, "port " + std::to_string(port) + " is out of range");
        std::string name = need(host, "host");
        restart(h);
        driver(h).connect_start(name, static_cast<std::uint16_t>(port), lmtp::Clock::now());
        return LMTP_OK;
    });
}

int lmtp_adopt_fd(lmtp_t* h, int fd, const char* tls_name) {
    if (!h || h->in_callback) {
        if (fd >= 0) ::close(fd);  // handed over with the call, even one refused
        return h ? call(h, [] { return LMTP_OK; }) : LMTP_ERR_INVALID_ARGUMENT;
    }
    return call(h, [&]() -> int {
        restart(h);
        driver(h).adopt_fd(fd, text(tls_name), lmtp::Clock::now());
        return LMTP_OK;
    });
}

int lmtp_open_bytes(lmtp_t* h, const char* tls_name, int local) {
    return call(h, [&]() -> int {
        restart(h);
        driver(h).start_bytes(text(tls_name), local != 0, lmtp::Clock::now());
        return LMTP_OK;
    });
}

int lmtp_fd(const lmtp_t* h) {
    return h && h->nb ? h->nb->fd() : -1;
}

int lmtp_want(const lmtp_t* h) {
    return h && h->nb ? static_cast<int>(h->nb->want()) : 0;
}

int lmtp_timeout_ms(const lmtp_t* h) {
    if (!h || !h->nb) return -1;
    std::optional<lmtp::Deadline> d = h->nb->deadline();
    if (!d) return -1;
    auto left = *d - lmtp::Clock::now();
    if (left <= lmtp::Clock::duration::zero()) return 0;
    // Rounded up: a wait that ends a little early would only spin.
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(left + std::chrono::microseconds(999)).count();
    return ms > INT_MAX ? INT_MAX : static_cast<int>(ms);
}

int lmtp_process(lmtp_t* h, int events) {
    return process_call(h, [&]() -> int {
        if (!h->nb || !h->nb->active()) throw lmtp::Error(Status::not_connected, "no connection to process");
        h->nb->process(static_cast<unsigned>(events) & (LMTP_IO_READ | LMTP_IO_WRITE), lmtp::Clock::now());
        return LMTP_OK;
    });
}

int lmtp_submit(lmtp_t* h, const struct lmtp_message* msg, lmtp_done_fn done, void* user) {
    return call_any(h, [&]() -> int {
        if (!h->driven())
            throw lmtp::Error(Status::bad_sequence,
                              "no connection started: lmtp_connect_start, lmtp_adopt_fd or lmtp_open_bytes first");
        if (!msg) throw lmtp::Error(Status::invalid_argument, "message is NULL");
        lmtp::BatchMessage m = core_message(msg, 0);
        h->submitted.push_back({0, done, user});
        try {
            h->submitted.back().token = h->client.engine().submit(std::move(m));
        } catch (...) {
            h->submitted.pop_back();
            throw;
        }
        // Its first bytes are queued now, so that lmtp_want asks for the write (inside a callback:
        // when the callbacks are done). A connection that breaks here reports the message through
        // its callback, at the next processing call.
        if (h->in_callback)
            h->submitted_inside = true;
        else
            h->client.engine().run(lmtp::Clock::now());
        return LMTP_OK;
    });
}

size_t lmtp_pending(const lmtp_t* h) {
    return h ? h->submitted.size() : 0;
}

int lmtp_feed(lmtp_t* h, const void* buf, size_t len) {
    return process_call(h, [&]() -> int {
        if (!buf && len) throw lmtp::Error(Status::invalid_argument, "buffer is NULL");
        if (!h->nb) throw lmtp::Error(Status::bad_sequence, "lmtp_feed: the handle is not in the bytes-only mode");
        h->nb->feed(static_cast<const char*>(buf), len, lmtp::Clock::now());
        return LMTP_OK;
    });
}

size_t lmtp_output(lmtp_t* h, const void** ptr) {
    if (ptr) *ptr = nullptr;
    if (!h || !ptr || !h->nb) return 0;
    try {
        std::string_view out = h->nb->output();
        *ptr = out.empty() ? nullptr : out.data();
        return out.size();
    } catch (...) {
        return 0;
    }
}

int lmtp_output_done(lmtp_t* h, size_t n) {
    return process_call(h, [&]() -> int {
        if (!h->nb) throw lmtp::Error(Status::bad_sequence, "lmtp_output_done: the handle is not in the bytes-only mode");
        h->nb->output_done(n, lmtp::Clock::now());
        return LMTP_OK;
    });
}

// --- the delivery pool --------------------------------------------------------------------------

struct lmtp_pool {
    lmtp_pool(lmtp::ClientOptions o, lmtp::PoolOptions po) : pool(std::move(o), std::move(po)), view(lmtp::ClientOptions{}) {
        view.pool_view = true;
        view.in_callback = 1;  // only its getters
    }

    lmtp::Pool pool;
    lmtp_handle view;  // `r` in the callbacks
    struct Sub {
        lmtp_pool_done_fn done;
        void* user;
        std::size_t index;
    };
    std::map<std::size_t, Sub> subs;  // by the core's message id
    std::size_t next_index = 0;       // lmtp_pool_submit's numbers
    int in_callback = 0;
    bool kick_after = false;  // lmtp_pool_submit inside a callback: decisions when they are done
    bool free_after = false;
    int status = LMTP_OK;
    std::string errmsg;

    int fail(int st, const std::string& message, int /*os_error*/ = 0) {
        status = st;
        errmsg = message;
        return st;
    }
};

namespace {

template <typename F>
int pool_call_any(lmtp_pool* p, F&& f) {
    if (!p) return LMTP_ERR_INVALID_ARGUMENT;
    p->status = LMTP_OK;
    p->errmsg.clear();
    return guarded(p, std::forward<F>(f));
}

// A pool call that is not allowed inside a callback (lmtp.h, P8).
template <typename F>
int pool_call(lmtp_pool* p, F&& f) {
    if (p && p->in_callback)
        return p->fail(LMTP_ERR_BAD_SEQUENCE, "this call is not allowed inside a pool callback (lmtp.h, rule P8)");
    return pool_call_any(p, std::forward<F>(f));
}

// One message's callback, `r` describing it.
void pool_report(lmtp_pool* p, const lmtp_pool::Sub& sub, int status, const std::string& why,
                 const lmtp::Transaction* txn, const std::vector<unsigned>* attempts) {
    if (!sub.done) return;
    lmtp_handle& v = p->view;
    v.view = txn;
    v.attempts = attempts;
    v.status = status;
    v.errmsg = why;
    ++p->in_callback;
    sub.done(sub.user, p, sub.index, &v, status);
    --p->in_callback;
    v.view = nullptr;
    v.attempts = nullptr;
    v.status = LMTP_OK;
    v.errmsg.clear();
}

// The callbacks due, each message's once; then the decisions that submissions inside them
// call for (which may finish more). False when the pool was freed.
bool pool_callbacks(lmtp_pool* p) {
    for (;;) {
        while (p->pool.has_report()) {
            lmtp::PoolReport rep = p->pool.take_report();
            auto it = p->subs.find(rep.id);
            if (it == p->subs.end()) continue;
            lmtp_pool::Sub sub = it->second;
            p->subs.erase(it);
            lmtp::Transaction txn;
            txn.recipients = std::move(rep.recipients);
            pool_report(p, sub, static_cast<int>(rep.status), rep.why, &txn, &rep.attempts);
        }
        if (p->free_after) {
            p->free_after = false;
            p->pool.abandon(Status::closed, "the pool was freed");
            if (p->pool.has_report()) {
                p->free_after = true;  // their callbacks first (each once), then the pool goes
                continue;
            }
            delete p;
            return false;
        }
        if (!p->kick_after) return true;
        p->kick_after = false;
        p->pool.kick(lmtp::Clock::now());
    }
}

lmtp::PoolOptions pool_options(const lmtp_pool_options* o) {
    lmtp::PoolOptions po;
    if (!o) return po;
    if (o->struct_size < sizeof(std::size_t))
        throw lmtp::Error(Status::invalid_argument,
                          "lmtp_pool_options.struct_size is not set (initialise the struct with LMTP_POOL_OPTIONS_INIT)");
    using ms = std::chrono::milliseconds;
    const unsigned flags = LMTP_HAS(o, flags) ? o->flags : 0;
    if (LMTP_HAS(o, connections) && o->connections) po.connections = o->connections;
    if (LMTP_HAS(o, retries) && o->retries) po.retries = o->retries;
    if (flags & LMTP_POOL_NO_RETRIES) po.retries = 0;
    if (LMTP_HAS(o, retry_delay_ms) && o->retry_delay_ms) po.retry_delay = ms(o->retry_delay_ms);
    if (LMTP_HAS(o, retry_delay_max_ms) && o->retry_delay_max_ms) po.retry_delay_max = ms(o->retry_delay_max_ms);
    if (po.retry_delay_max < po.retry_delay)
        throw lmtp::Error(Status::invalid_argument, "lmtp_pool_options.retry_delay_max_ms " +
                                                        std::to_string(po.retry_delay_max.count()) +
                                                        " is less than retry_delay_ms " +
                                                        std::to_string(po.retry_delay.count()));
    if (LMTP_HAS(o, max_messages_per_connection) && o->max_messages_per_connection)
        po.max_messages_per_connection = o->max_messages_per_connection;
    if (flags & LMTP_POOL_NO_MESSAGE_LIMIT) po.max_messages_per_connection = 0;
    if (LMTP_HAS(o, max_connection_age_ms) && o->max_connection_age_ms) po.max_connection_age = ms(o->max_connection_age_ms);
    if (flags & LMTP_POOL_NO_AGE_LIMIT) po.max_connection_age = ms(0);
    if (LMTP_HAS(o, idle_timeout_ms) && o->idle_timeout_ms) po.idle_timeout = ms(o->idle_timeout_ms);
    if (flags & LMTP_POOL_NO_IDLE_TIMEOUT) po.idle_timeout = ms(0);
    if (LMTP_HAS(o, mailbox_concurrency) && o->mailbox_concurrency) po.mailbox_concurrency = o->mailbox_concurrency;
    if (flags & LMTP_POOL_NO_MAILBOX_LIMIT) po.mailbox_concurrency = 0;
    po.resend_unknown = (flags & LMTP_POOL_RESEND_UNKNOWN) != 0;
    return po;
}

}  // namespace

extern "C" {

void lmtp_pool_options_init(lmtp_pool_options* popts) {
    if (!popts) return;
    *popts = lmtp_pool_options LMTP_POOL_OPTIONS_INIT;
}

int lmtp_pool_new(lmtp_pool** out, const lmtp_options* opts, const lmtp_pool_options* popts) {
    if (!out) return LMTP_ERR_INVALID_ARGUMENT;
    *out = nullptr;
    try {
        lmtp_trace_fn fn = nullptr;
        void* user = nullptr;
        std::string bad;
        lmtp::ClientOptions o = client_options(opts, bad, fn, user);
        lmtp::PoolOptions po;
        if (bad.empty()) {
            try {
                po = pool_options(popts);
            } catch (const lmtp::Error& e) {
                bad = e.what();
            }
        }
        if (!bad.empty()) {
            auto* p = new lmtp_pool(lmtp::ClientOptions{}, lmtp::PoolOptions{});
            *out = p;
            return p->fail(LMTP_ERR_INVALID_ARGUMENT, bad);
        }
        if (fn) {
            o.trace = [fn, user](lmtp::TraceDir dir, std::string_view line) {
                fn(user, static_cast<int>(dir), line.empty() ? "" : line.data(), line.size());
            };
        }
        *out = new lmtp_pool(std::move(o), std::move(po));
        return LMTP_OK;
    } catch (const std::bad_alloc&) {
        return LMTP_ERR_NO_MEMORY;
    } catch (...) {
        return LMTP_ERR_INTERNAL;
    }
}

int lmtp_pool_add_server(lmtp_pool* p, const char* host, unsigned port) {
    return pool_call(p, [&]() -> int {
        if (port > 65535) throw lmtp::Error(Status::invalid_argument, "port " + std::to_string(port) + " is out of range");
        p->pool.add_server(need(host, "host"), static_cast<std::uint16_t>(port));
        return LMTP_OK;
    });
}

void lmtp_pool_free(lmtp_pool* p) {
    if (!p) return;
    p->free_after = true;
    if (p->in_callback) return;  // when the callbacks are done
    pool_callbacks(p);
}

const char* lmtp_pool_errmsg(const lmtp_pool* p) {
    return p ? p->errmsg.c_str() : "";
}

int lmtp_pool_errcode(const lmtp_pool* p) {
    return p ? p->status : LMTP_ERR_INVALID_ARGUMENT;
}

int lmtp_pool_submit(lmtp_pool* p, const struct lmtp_message* msg, lmtp_pool_done_fn done, void* user,
                     size_t* index) {
    return pool_call_any(p, [&]() -> int {
        if (p->free_after) throw lmtp::Error(Status::bad_sequence, "the pool is being freed");
        if (!msg) throw lmtp::Error(Status::invalid_argument, "message is NULL");
        lmtp::BatchMessage m = core_message(msg, p->next_index);
        const lmtp::Deadline now = lmtp::Clock::now();
        std::size_t id = p->pool.submit(std::move(m), now);
        const std::size_t number = p->next_index++;
        p->subs[id] = {done, user, number};
        if (index) *index = number;
        if (p->in_callback)
            p->kick_after = true;
        else
            p->pool.kick(now);  // its connection starts now, so that lmtp_pool_fds has it
        return LMTP_OK;
    });
}

size_t lmtp_pool_pending(const lmtp_pool* p) {
    return p ? p->subs.size() : 0;
}

size_t lmtp_pool_fds(const lmtp_pool* p, int* fds, int* wants, size_t cap) {
    if (!p) return 0;
    if (!fds || !wants) cap = 0;
    try {
        std::vector<lmtp::Pool::Wait> w(cap);
        std::size_t n = p->pool.fds(w.data(), cap);
        for (std::size_t i = 0; i < n && i < cap; ++i) {
            fds[i] = w[i].fd;
            wants[i] = static_cast<int>(w[i].want);
        }
        return n;
    } catch (...) {
        return 0;
    }
}

int lmtp_pool_timeout_ms(const lmtp_pool* p) {
    if (!p) return -1;
    const lmtp::Deadline now = lmtp::Clock::now();
    std::optional<lmtp::Deadline> d = p->pool.deadline(now);
    if (!d) return -1;
    auto left = *d - now;
    if (left <= lmtp::Clock::duration::zero()) return 0;
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(left + std::chrono::microseconds(999)).count();
    return ms > INT_MAX ? INT_MAX : static_cast<int>(ms);
}

int lmtp_pool_process(lmtp_pool* p, const int* fds, const int* events, size_t n) {
    int st = pool_call(p, [&]() -> int {
        if (n && (!fds || !events)) throw lmtp::Error(Status::invalid_argument, "fds or events is NULL");
        std::vector<lmtp::Pool::Wait> ev;
        ev.reserve(n);
        for (std::size_t i = 0; i < n; ++i)
            ev.push_back({fds[i], static_cast<unsigned>(events[i]) & (LMTP_IO_READ | LMTP_IO_WRITE)});
        p->pool.process(ev.data(), ev.size(), lmtp::Clock::now());
        return LMTP_OK;
    });
    if (p && !p->in_callback) {
        const std::string errmsg = p->errmsg;
        if (!pool_callbacks(p)) return st;
        p->status = st;
        p->errmsg = errmsg;
    }
    return st;
}

int lmtp_pool_deliver(lmtp_pool* p, const struct lmtp_message* msgs, size_t n, lmtp_pool_done_fn done, void* user) {
    int st = pool_call(p, [&]() -> int {
        if (!msgs && n) throw lmtp::Error(Status::invalid_argument, "message list is NULL");
        if (p->pool.server_count() == 0) throw lmtp::Error(Status::bad_sequence, "the pool has no server: lmtp_pool_add_server first");
        std::set<std::size_t> mine;  // the core's ids of these messages
        for (std::size_t i = 0; i < n; ++i) {
            lmtp::BatchMessage m;
            try {
                m = core_message(&msgs[i], i);
                std::size_t id = p->pool.submit(std::move(m), lmtp::Clock::now());
                p->subs[id] = {done, user, i};
                mine.insert(id);
            } catch (const lmtp::Error& e) {
                pool_report(p, {done, user, i}, static_cast<int>(e.status()), e.what(), nullptr, nullptr);
            }
        }
        p->pool.kick(lmtp::Clock::now());
        auto left = [&] {
            for (std::size_t id : mine)
                if (p->subs.count(id)) return true;
            return false;
        };
        for (;;) {
            if (!pool_callbacks(p)) return LMTP_OK;  // freed by a callback: nothing more to wait for
            if (!left()) break;
            p->pool.run_once();
        }
        return LMTP_OK;
    });
    return st;
}

int lmtp_result_attempts(lmtp_t* h, size_t i) {
    if (!h) return 0;
    if (i >= h->results().recipients.size()) return 0;
    if (h->attempts) return i < h->attempts->size() ? static_cast<int>((*h->attempts)[i]) : 0;
    return 1;
}

}  // extern "C"
