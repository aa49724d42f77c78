// lmtp._lmtp._Planner: the core's pool policy (lmtp::PoolPlanner, core/include/lmtp/pool.hpp)
// for lmtp.AsyncPool (lmtp/apool.py), which drives it with asyncio connections
// (lmtp/aio.py's _Connection over _lmtp._Conn). The planner decides; the Python
// side only carries out its decisions and tells it what happened.
//
// Time: every call reads the core's steady clock (lmtp::Clock) itself, as _Conn
// does for its engine, and wake_in() answers in seconds from now, which the
// driver adds to the loop's clock for its timer. No absolute time crosses over,
// so the loop's clock (asyncio's or uvloop's) never has to agree with the core's.
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <vector>

#include "binding.hpp"
#include "lmtp/pool.hpp"

namespace lmtp_python {

namespace {

using namespace pybind11::literals;
using lmtp::Clock;
using lmtp::Status;

Status status_named(const std::string& name) {
    for (int i = 0; i < lmtp::status_count(); ++i)
        if (name == lmtp::status_name(static_cast<Status>(i))) return static_cast<Status>(i);
    throw py::value_error("no status is named '" + name + "'");
}

class Planner {
public:
    explicit Planner(lmtp::PoolOptions options) : p_(std::move(options)) {}

    std::size_t add_server() { return p_.add_server(); }

    std::size_t add(std::vector<std::string> recipients, bool resendable) {
        if (recipients.empty()) throw py::value_error("the message has no recipient");
        if (p_.server_count() == 0) throw py::value_error("the pool has no server");
        return p_.add(std::move(recipients), resendable, Clock::now());
    }

    bool withdraw(std::size_t id) { return p_.withdraw(id, Clock::now()); }

    // (conn, server index) or None.
    py::object next_open() {
        auto o = p_.next_open(Clock::now());
        return o ? py::object(py::make_tuple(o->conn, o->server)) : py::object(py::none());
    }

    // (conn, message id, [recipient indexes]) or None.
    py::object next_send() {
        auto s = p_.next_send(Clock::now());
        return s ? py::object(py::make_tuple(s->conn, s->message, py::cast(s->recipients))) : py::object(py::none());
    }

    std::optional<lmtp::PoolPlanner::ConnId> next_quit() { return p_.next_quit(Clock::now()); }

    // Seconds until a decision may change with the time alone; None: only an event changes one.
    std::optional<double> wake_in() const {
        const lmtp::Deadline now = Clock::now();
        std::optional<lmtp::Deadline> w = p_.wake(now);
        if (!w) return std::nullopt;
        const double left = std::chrono::duration<double>(*w - now).count();
        return left > 0 ? left : 0.0;
    }

    void opened(lmtp::PoolPlanner::ConnId conn) { p_.opened(conn, Clock::now()); }

    void closed(lmtp::PoolPlanner::ConnId conn, const std::string& status, const std::string& why) {
        p_.closed(conn, status_named(status), why, Clock::now());
    }

    // The message on `conn` ended: its report is the one `engine` (a _Conn) kept for `token`.
    // False when the _Conn has none (then closed() tells the planner the connection's end).
    bool finished(lmtp::PoolPlanner::ConnId conn, py::handle engine, std::uint64_t token) {
        std::optional<lmtp::Delivered> d = take_kept(engine, token);
        if (!d) return false;
        p_.finished(conn, *d, Clock::now());
        return true;
    }

    // The message for `conn` could not be submitted (the engine refused it before sending).
    void refused(lmtp::PoolPlanner::ConnId conn, const std::string& status, const std::string& why) {
        lmtp::Delivered d;
        d.status = status_named(status);
        d.why = why;
        p_.finished(conn, d, Clock::now());
    }

    void abandon(const std::string& status, const std::string& why) { p_.abandon(status_named(status), why); }

    // The reports due: (id, status name, why, result_fields, attempts) each.
    py::list take_reports() {
        py::list out;
        while (p_.has_report()) {
            lmtp::PoolReport r = p_.take_report();
            py::tuple fields = report_fields(r.status, r.why, r.recipients, r.attempts);
            out.append(py::make_tuple(r.id, fields[0], fields[1], fields[2], fields[3]));
        }
        return out;
    }

    const lmtp::PoolPlanner& planner() const { return p_; }

private:
    lmtp::PoolPlanner p_;
};

}  // namespace

void bind_apool(py::module_& m) {
    py::class_<Planner>(m, "_Planner", "The core's pool policy, for lmtp.AsyncPool (use that, not this).")
        .def(py::init([](std::size_t connections, unsigned retries, double retry_delay, double retry_delay_max,
                         std::size_t max_messages_per_connection, double max_connection_age, double idle_timeout,
                         std::size_t mailbox_concurrency, bool resend_unknown) {
                 return std::make_unique<Planner>(pool_options(connections, retries, retry_delay, retry_delay_max,
                                                               max_messages_per_connection, max_connection_age,
                                                               idle_timeout, mailbox_concurrency, resend_unknown));
             }),
             "connections"_a = 4, "retries"_a = 3, "retry_delay"_a = 1.0, "retry_delay_max"_a = 60.0,
             "max_messages_per_connection"_a = 100, "max_connection_age"_a = 300.0, "idle_timeout"_a = 10.0,
             "mailbox_concurrency"_a = 2, "resend_unknown"_a = false)
        .def("add_server", &Planner::add_server)
        .def("add", &Planner::add, "recipients"_a, "resendable"_a)
        .def("withdraw", &Planner::withdraw, "id"_a)
        .def("next_open", &Planner::next_open)
        .def("next_send", &Planner::next_send)
        .def("next_quit", &Planner::next_quit)
        .def("wake_in", &Planner::wake_in)
        .def("opened", &Planner::opened, "conn"_a)
        .def("closed", &Planner::closed, "conn"_a, "status"_a, "why"_a)
        .def("finished", &Planner::finished, "conn"_a, "engine"_a, "token"_a)
        .def("refused", &Planner::refused, "conn"_a, "status"_a, "why"_a)
        .def("abandon", &Planner::abandon, "status"_a, "why"_a)
        .def("take_reports", &Planner::take_reports)
        .def_property_readonly("pending", [](const Planner& p) { return p.planner().pending(); })
        .def_property_readonly("connections", [](const Planner& p) { return p.planner().connection_count(); })
        .def_property_readonly("busy", [](const Planner& p) { return p.planner().busy_count(); });
}

}  // namespace lmtp_python
