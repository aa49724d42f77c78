// lmtp._lmtp.Pool: the core's delivery pool (lmtp::Pool, core/include/lmtp/pool.hpp)
// for lmtp.Pool (lmtp/pool.py). Messages are read where Python holds them, as
// Client.deliver_many reads them; the whole delivery runs without the GIL, which
// only a message source that is a Python callable (a file, an iterable) and the
// trace take back, for the time of their call. One deliver_many at a time per
// pool: a second thread gets RuntimeError.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "binding.hpp"
#include "lmtp/pool.hpp"

namespace lmtp_python {

namespace {

using namespace pybind11::literals;

// Seconds as a pool's duration; 0 allowed (a limit turned off, no delay).
std::chrono::milliseconds pool_ms(double seconds, const char* what) {
    if (!(seconds >= 0)) throw py::value_error(std::string(what) + " must be a number of seconds >= 0");
    return seconds == 0 ? std::chrono::milliseconds(0) : to_ms(seconds);
}

class PyPool {
public:
    using Message = std::tuple<std::string, std::vector<std::string>, py::object>;

    PyPool(lmtp::ClientOptions client, lmtp::PoolOptions options)
        : client_(std::move(client)), options_(std::move(options)) {}

    // Marks the pool busy for one call; a second thread gets RuntimeError.
    class Use {
    public:
        explicit Use(PyPool& p) : p_(p) {
            if (p_.busy_.exchange(true))
                throw std::runtime_error("this lmtp.Pool is already in use by another thread");
        }
        ~Use() { p_.busy_ = false; }
        Use(const Use&) = delete;
        Use& operator=(const Use&) = delete;

    private:
        PyPool& p_;
    };

    // Settings that apply to the connections the pool opens from now on.
    template <typename F>
    void configure(F&& f) {
        Use use(*this);
        f(client_);
        pool_.reset();  // none open yet in practice (they are set before the first delivery)
    }

    void add_server(const std::string& host, unsigned port) {
        Use use(*this);
        if (port > 65535) throw py::value_error("port out of range");
        servers_.emplace_back(host, static_cast<std::uint16_t>(port));
        if (pool_) pool_->add_server(host, static_cast<std::uint16_t>(port));
    }

    void set_trace(py::object fn) {
        configure([&](lmtp::ClientOptions& o) {
            trace_ = std::move(fn);
            o.trace = trace_.is_none() ? lmtp::TraceFn() : python_trace(&trace_);
        });
    }

    // Every message, through the pool; returns per message, in the order given,
    // (status name, why, result_fields list, attempts list).
    py::list deliver_many(const std::vector<Message>& messages, const Params& params, lmtp::Transfer transfer) {
        Use use(*this);
        const std::size_t n = messages.size();
        // Looked at now, with the GIL. A message in memory goes as `bytes` (in place; pieces
        // joined once), which the pool can send again for a retry; a callable is read once.
        std::vector<Pieces> whole(n);
        std::vector<std::string> joined(n);
        std::vector<PyObject*> readers(n, nullptr);  // borrowed: `messages` holds them
        for (std::size_t i = 0; i < n; ++i) {
            const py::object& src = std::get<2>(messages[i]);
            if (!whole[i].take(src)) {
                readers[i] = src.ptr();
            } else if (whole[i].views.size() > 1) {
                joined[i].reserve(whole[i].size);
                for (std::string_view v : whole[i].views) joined[i] += v;
            }
        }
        struct Done {
            lmtp::Status status = lmtp::Status::ok;
            std::string why;
            std::vector<lmtp::RecipientResult> results;
            std::vector<unsigned> attempts;
        };
        std::vector<Done> done(n);
        {
            py::gil_scoped_release nogil;
            lmtp::Pool& pool = this->pool();
            std::map<std::size_t, std::size_t> index;  // the core's id -> position
            for (std::size_t i = 0; i < n; ++i) {
                const auto& [from, rcpts, src] = messages[i];
                (void)src;
                try {
                    lmtp::BatchMessage m = batch_message(from, rcpts, readers[i] ? nullptr : &whole[i], readers[i],
                                                         params, transfer);
                    if (!readers[i]) {
                        m.source = nullptr;  // the core reads `bytes` and declares their SIZE
                        m.bytes = whole[i].views.size() == 1 ? whole[i].views[0] : std::string_view(joined[i]);
                    }
                    index[pool.submit(std::move(m), lmtp::Clock::now())] = i;
                } catch (const lmtp::Error& e) {
                    done[i].status = e.status();
                    done[i].why = e.what();
                }
            }
            pool.kick(lmtp::Clock::now());
            try {
                for (;;) {
                    while (pool.has_report()) {
                        lmtp::PoolReport rep = pool.take_report();
                        auto it = index.find(rep.id);
                        if (it == index.end()) continue;
                        done[it->second] = {rep.status, std::move(rep.why), std::move(rep.recipients),
                                            std::move(rep.attempts)};
                        index.erase(it);
                    }
                    if (index.empty()) break;
                    pool.run_once();
                }
            } catch (...) {
                // The pool cannot go on: nothing of these messages stays with it (it holds their
                // bytes, which are the caller's).
                pool_.reset();
                throw;
            }
        }
        py::list out(n);
        for (std::size_t i = 0; i < n; ++i) out[i] = report_fields(done[i].status, done[i].why, done[i].results,
                                                                  done[i].attempts);
        return out;
    }

    // Drops every connection (without QUIT); the next delivery opens new ones.
    void close() {
        Use use(*this);
        py::gil_scoped_release nogil;
        pool_.reset();
    }

    std::size_t connections() const { return pool_ ? pool_->planner().connection_count() : 0; }

private:
    lmtp::Pool& pool() {
        if (!pool_) {
            pool_ = std::make_unique<lmtp::Pool>(client_, options_);
            for (const auto& [host, port] : servers_) pool_->add_server(host, port);
        }
        return *pool_;
    }

    lmtp::ClientOptions client_;
    lmtp::PoolOptions options_;
    std::vector<std::pair<std::string, std::uint16_t>> servers_;
    std::unique_ptr<lmtp::Pool> pool_;
    std::atomic<bool> busy_{false};
    py::object trace_;
};

}  // namespace

lmtp::PoolOptions pool_options(std::size_t connections, unsigned retries, double retry_delay,
                               double retry_delay_max, std::size_t max_messages_per_connection,
                               double max_connection_age, double idle_timeout, std::size_t mailbox_concurrency,
                               bool resend_unknown) {
    if (connections == 0) throw py::value_error("connections must be at least 1");
    lmtp::PoolOptions po;
    po.connections = connections;
    po.retries = retries;
    po.retry_delay = pool_ms(retry_delay, "retry_delay");
    po.retry_delay_max = pool_ms(retry_delay_max, "retry_delay_max");
    if (po.retry_delay_max < po.retry_delay) throw py::value_error("retry_delay_max is less than retry_delay");
    po.max_messages_per_connection = max_messages_per_connection;
    po.max_connection_age = pool_ms(max_connection_age, "max_connection_age");
    po.idle_timeout = pool_ms(idle_timeout, "idle_timeout");
    po.mailbox_concurrency = mailbox_concurrency;
    po.resend_unknown = resend_unknown;
    return po;
}

py::tuple report_fields(lmtp::Status status, const std::string& why, std::vector<lmtp::RecipientResult>& results,
                        const std::vector<unsigned>& attempts) {
    // A recipient never sent (a message given up after a break) has no verdict: unknown.
    for (lmtp::RecipientResult& r : results)
        if (r.outcome == lmtp::Outcome::pending) r.outcome = lmtp::Outcome::unknown;
    return py::make_tuple(status == lmtp::Status::ok ? "ok" : lmtp::status_name(status), why,
                          results_fields(results), py::cast(attempts));
}

void bind_pool(py::module_& m) {
    py::class_<PyPool> cls(m, "Pool", "The core's delivery pool (use lmtp.Pool, not this one).");
    cls.def(py::init([](const std::string& hello, double timeout, std::optional<double> connect_timeout,
                        const std::string& local_address, unsigned local_port, bool implicit_tls,
                        bool strict_replies, std::size_t connections, unsigned retries, double retry_delay,
                        double retry_delay_max, std::size_t max_messages_per_connection,
                        double max_connection_age, double idle_timeout, std::size_t mailbox_concurrency,
                        bool resend_unknown) {
                lmtp::PoolOptions po = pool_options(connections, retries, retry_delay, retry_delay_max,
                                                    max_messages_per_connection, max_connection_age, idle_timeout,
                                                    mailbox_concurrency, resend_unknown);
                return std::make_unique<PyPool>(client_options(hello, timeout, connect_timeout, local_address,
                                                               local_port, 0, 0, true, implicit_tls, strict_replies),
                                                po);
            }),
            "hello"_a, "timeout"_a, "connect_timeout"_a = py::none(), "local_address"_a = "", "local_port"_a = 0,
            "implicit_tls"_a = false, "strict_replies"_a = false, "connections"_a = 4, "retries"_a = 3,
            "retry_delay"_a = 1.0, "retry_delay_max"_a = 60.0, "max_messages_per_connection"_a = 100,
            "max_connection_age"_a = 300.0, "idle_timeout"_a = 10.0, "mailbox_concurrency"_a = 2,
            "resend_unknown"_a = false);
    def_set_tls(cls, [](PyPool& p, const lmtp::TlsOptions& t) { p.configure([&](lmtp::ClientOptions& o) { o.tls = t; }); });
    cls.def(
           "set_starttls",
           [](PyPool& p, bool required) {
               p.configure([&](lmtp::ClientOptions& o) {
                   o.starttls = required ? lmtp::StartTls::required : lmtp::StartTls::opportunistic;
               });
           },
           "required"_a = true)
        .def(
            "set_auth",
            [](PyPool& p, const std::string& user, const std::string& password, const std::string& mechanism,
               bool allow_plaintext) {
                p.configure([&](lmtp::ClientOptions& o) {
                    o.auth_user = user;
                    o.auth_password = password;
                    o.auth_mechanism = mechanism;
                    o.auth_allow_plaintext = allow_plaintext;
                });
            },
            "user"_a, "password"_a, "mechanism"_a = "", "allow_plaintext"_a = false)
        .def("add_server", &PyPool::add_server, "host"_a, "port"_a)
        .def("set_trace", &PyPool::set_trace)
        .def(
            "deliver_many",
            [](PyPool& p, const std::vector<PyPool::Message>& messages, const Params* params,
               const std::string& transfer) {
                return p.deliver_many(messages, params_or_none(params), to_transfer(transfer));
            },
            "messages"_a, "params"_a = py::none(), "transfer"_a = "auto")
        .def("close", &PyPool::close)
        .def_property_readonly("connections", &PyPool::connections, "Connections open (or opening) now.");
}

}  // namespace lmtp_python
