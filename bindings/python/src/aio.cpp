// lmtp._lmtp._Conn: one connection's engine in the bytes-only mode
// (lmtp::EventDriver::start_bytes), for lmtp/aio.py. The asyncio transport
// moves the bytes: the protocol feeds what it reads, writes output() and
// says how much with output_done(), calls process() when the deadline
// (deadline_in) passes and after submitting. Nothing here waits or blocks,
// and the GIL is held throughout (the loop's thread owns the connection).
//
// Errors: a call that ends the connection raises _lmtp.Error; every message
// it ends is reported by take_done() all the same (its recipients unknown).
#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "binding.hpp"
#include "lmtp/event_driver.hpp"

namespace lmtp_python {

namespace {

using namespace pybind11::literals;
using lmtp::Clock;
using lmtp::Status;

lmtp::StartTls to_starttls(const std::string& s) {
    if (s == "off") return lmtp::StartTls::off;
    if (s == "opportunistic") return lmtp::StartTls::opportunistic;
    if (s == "required") return lmtp::StartTls::required;
    throw py::value_error("starttls is 'off', 'opportunistic' or 'required'");
}

py::tuple error_args(const lmtp::Error& e) {
    return py::make_tuple(lmtp::status_name(e.status()), e.what(), e.os_error());
}

class Conn {
public:
    Conn(const std::string& hello, double timeout, std::size_t max_reply_line, std::size_t max_reply_size,
         bool implicit_tls, bool strict_replies, const std::string& starttls, const std::string& auth_user,
         const std::string& auth_password, const std::string& auth_mechanism, bool auth_allow_plaintext,
         std::size_t max_in_flight)
        : client_(options(hello, timeout, max_reply_line, max_reply_size, implicit_tls, strict_replies, starttls,
                          auth_user, auth_password, auth_mechanism, auth_allow_plaintext, max_in_flight)) {}

    lmtp::Client& client() { return client_; }
    lmtp::Engine& engine() { return client_.engine(); }
    bool active() const { return driver_ && driver_->active(); }

    // The transport is connected: the engine starts (the banner is awaited).
    void open(const std::string& tls_name, bool local) {
        if (active()) throw lmtp::Error(Status::bad_sequence, "the connection is already open");
        if (!driver_) driver_ = std::make_unique<lmtp::EventDriver>(engine(), client_.options());
        engine().set_last_reply({});
        driver_->start_bytes(tls_name, local, Clock::now());
    }

    void feed(const py::bytes& data) {
        std::string_view v = data;
        if (!active()) {
            if (v.empty()) return;  // the end of a stream already closed
            throw lmtp::Error(Status::not_connected, "bytes came for a closed connection");
        }
        driver_->feed(v.data(), v.size(), Clock::now());
    }

    py::bytes output() {
        if (!active()) return py::bytes();
        std::string_view out = driver_->output();
        return py::bytes(out.data(), out.size());
    }

    void output_done(std::size_t n) {
        if (!active()) return;
        driver_->output_done(n, Clock::now());
    }

    // The work due now: what was submitted starts, a deadline that passed fails.
    void process() {
        if (active()) driver_->process(0, Clock::now());
    }

    // Seconds until the engine's deadline (0 when it passed), None without one.
    std::optional<double> deadline_in() const {
        if (!active()) return std::nullopt;
        std::optional<lmtp::Deadline> d = driver_->deadline();
        if (!d) return std::nullopt;
        double left = std::chrono::duration<double>(*d - Clock::now()).count();
        return left > 0 ? left : 0.0;
    }

    // `keep`: the engine's report of it is kept whole for a pool's planner (take_kept), and
    // take_done gives None for its results.
    std::uint64_t submit(const std::string& from, const std::vector<std::string>& rcpts, py::object source,
                         const Params* params, const std::string& transfer, bool canonical, bool keep) {
        if (!active() || !engine().is_open())
            throw lmtp::Error(Status::not_connected, "the connection is not open");
        const lmtp::Transfer how = to_transfer(transfer);
        Pieces whole;
        PyObject* read = nullptr;
        if (!whole.take(source)) {
            if (!PyCallable_Check(source.ptr()))
                throw py::type_error("a message is bytes, an ASCII str, a tuple of them or a read(n) callable");
            read = source.ptr();
        }
        lmtp::BatchMessage m = batch_message(from, rcpts, read ? nullptr : &whole, read, params_or_none(params), how);
        m.canonical = canonical;
        const std::uint64_t token = engine().submit(std::move(m));
        kept_.emplace(token, std::move(source));  // the bytes it reads in place, or its reader
        if (keep) for_planner_.emplace(token, std::nullopt);
        return token;
    }

    bool withdraw(std::uint64_t token) {
        if (!engine().withdraw(token)) return false;
        kept_.erase(token);
        for_planner_.erase(token);
        return true;
    }

    // The deliveries finished since the last call: (token, status, why, results); results
    // None for a message submitted with `keep` (its report waits for take_kept).
    py::list take_done() {
        py::list out;
        while (engine().has_delivered()) {
            lmtp::Delivered d = engine().take_delivered();
            kept_.erase(d.token);
            const char* status = d.status == Status::ok ? "ok" : lmtp::status_name(d.status);
            auto it = for_planner_.find(d.token);
            if (it != for_planner_.end()) {
                out.append(py::make_tuple(d.token, status, d.why, py::none()));
                it->second = std::move(d);
                continue;
            }
            out.append(py::make_tuple(d.token, status, d.why, results_fields(d.txn.recipients)));
        }
        return out;
    }

    // The engine's report of a message submitted with `keep`, once it came (then forgotten).
    std::optional<lmtp::Delivered> take_kept(std::uint64_t token) {
        auto it = for_planner_.find(token);
        if (it == for_planner_.end() || !it->second) return std::nullopt;
        std::optional<lmtp::Delivered> d = std::move(it->second);
        for_planner_.erase(it);
        return d;
    }

    // Drops the connection without QUIT: the deliveries in flight end with `why`, their
    // recipients unknown (take_done reports them).
    void close(const std::string& why) {
        if (driver_) driver_->close(Status::closed, why);
    }

    void start_starttls() {
        require_idle("STARTTLS");
        engine().set_last_reply({});
        engine().begin_wait(Clock::now());
        engine().start_starttls(engine().hello_name());
    }

    void start_auth(const std::string& user, const std::string& password, const std::string& mechanism,
                    bool allow_plaintext) {
        require_idle("AUTH");
        engine().set_last_reply({});
        engine().begin_wait(Clock::now());
        engine().start_auth(user, password, mechanism, allow_plaintext);
    }

    void start_quit() {
        require_idle("QUIT");
        engine().set_last_reply({});
        engine().begin_wait(Clock::now());
        engine().session().quit();
    }

    // The error a job (the set-up, STARTTLS, AUTH) ended with without closing, as
    // _lmtp.Error's args; None when it succeeded.
    py::object take_job_error() {
        std::optional<lmtp::Error> e = engine().take_job_error();
        return e ? py::object(error_args(*e)) : py::object(py::none());
    }

    // Why the connection ended (as _lmtp.Error's args), None while it did not fail.
    py::object failure() const {
        const auto& f = client_.engine().failure();
        return f ? py::object(error_args(*f)) : py::object(py::none());
    }

    bool is_open() const { return active() && client_.engine().is_open(); }

    void set_trace(py::object fn) {
        trace_ = fn;
        client_.set_trace(fn.is_none() ? lmtp::TraceFn() : python_trace(&trace_));
    }

private:
    void require_idle(const char* what) {
        if (!is_open()) throw lmtp::Error(Status::not_connected, std::string(what) + ": the connection is not open");
        if (engine().busy() || engine().deliveries() > 0)
            throw lmtp::Error(Status::bad_sequence, std::string(what) + ": the connection is busy");
    }

    static lmtp::ClientOptions options(const std::string& hello, double timeout, std::size_t max_reply_line,
                                       std::size_t max_reply_size, bool implicit_tls, bool strict_replies,
                                       const std::string& starttls, const std::string& auth_user,
                                       const std::string& auth_password, const std::string& auth_mechanism,
                                       bool auth_allow_plaintext, std::size_t max_in_flight) {
        lmtp::ClientOptions o = client_options(hello, timeout, std::nullopt, "", 0, max_reply_line, max_reply_size,
                                               true, implicit_tls, strict_replies);
        o.starttls = to_starttls(starttls);
        o.auth_user = auth_user;
        o.auth_password = auth_password;
        o.auth_mechanism = auth_mechanism;
        o.auth_allow_plaintext = auth_allow_plaintext;
        if (max_in_flight) o.max_in_flight = max_in_flight;
        return o;
    }

    lmtp::Client client_;  // its options and engine; the driver below is what moves them
    std::unique_ptr<lmtp::EventDriver> driver_;  // (destroyed first)
    std::unordered_map<std::uint64_t, py::object> kept_;  // what each message submitted reads
    std::unordered_map<std::uint64_t, std::optional<lmtp::Delivered>> for_planner_;  // `keep`: its report
    py::object trace_;
};

}  // namespace

std::optional<lmtp::Delivered> take_kept(py::handle conn, std::uint64_t token) {
    return py::cast<Conn&>(conn).take_kept(token);
}

void bind_aio(py::module_& m) {
    py::class_<Conn> conn(m, "_Conn",
                          "One LMTP connection's engine over bytes, for lmtp.aio (the asyncio transport moves them).");
    conn.def(py::init<const std::string&, double, std::size_t, std::size_t, bool, bool, const std::string&,
                      const std::string&, const std::string&, const std::string&, bool, std::size_t>(),
             "hello"_a, "timeout"_a, "max_reply_line"_a = 0, "max_reply_size"_a = 0, "implicit_tls"_a = false,
             "strict_replies"_a = false, "starttls"_a = "off", "auth_user"_a = "", "auth_password"_a = "",
             "auth_mechanism"_a = "", "auth_allow_plaintext"_a = false, "max_in_flight"_a = 0)
        .def("open", &Conn::open, "tls_name"_a, "local"_a)
        .def("feed", &Conn::feed, "data"_a)
        .def("output", &Conn::output)
        .def("output_done", &Conn::output_done, "n"_a)
        .def("process", &Conn::process)
        .def("deadline_in", &Conn::deadline_in)
        .def("submit", &Conn::submit, "sender"_a, "recipients"_a, "source"_a, "params"_a = py::none(),
             "transfer"_a = "auto", "canonical"_a = false, "keep"_a = false)
        .def("withdraw", &Conn::withdraw, "token"_a)
        .def("take_done", &Conn::take_done)
        .def("close", &Conn::close, "why"_a = "the connection was closed")
        .def("start_starttls", &Conn::start_starttls)
        .def("start_auth", &Conn::start_auth, "user"_a, "password"_a, "mechanism"_a = "", "allow_plaintext"_a = false)
        .def("start_quit", &Conn::start_quit)
        .def("take_job_error", &Conn::take_job_error)
        .def("set_trace", &Conn::set_trace)
        .def_property_readonly("failure", &Conn::failure)
        .def_property_readonly("is_open", &Conn::is_open)
        .def_property_readonly("busy", [](Conn& c) { return c.engine().busy(); })
        .def_property_readonly("pending", [](Conn& c) { return c.engine().deliveries(); })
        .def_property_readonly("banner", [](Conn& c) { return lmtp::Reply(c.client().banner()); })
        .def_property_readonly("last_reply", [](Conn& c) { return lmtp::Reply(c.client().last_reply()); })
        .def_property_readonly("starttls_reply", [](Conn& c) { return lmtp::Reply(c.client().starttls_reply()); })
        .def_property_readonly("tls_active", [](Conn& c) { return c.client().tls_active(); })
        .def_property_readonly("capabilities", [](Conn& c) { return capability_list(c.client().capabilities()); });
    def_set_tls(conn, [](Conn& c, const lmtp::TlsOptions& t) { c.client().set_tls_options(t); });
}

}  // namespace lmtp_python
