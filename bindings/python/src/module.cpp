// lmtp._lmtp: the compiled half of the Python package. A thin binding of
// lmtp::Client; the smtplib-shaped API and the exceptions callers see are
// built in lmtp/__init__.py.
//
// Threads: every call that may wait on the network releases the GIL. The
// callbacks that need Python (the message source, the trace) take it back
// for the time of the call. One Client is used by one thread at a time; a
// second thread gets RuntimeError instead of a data race.
#include <pybind11/functional.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <tuple>
#include <optional>
#include <string>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "binding.hpp"
#include "lmtp.h"  // the version macros
#include "lmtp/client.hpp"

namespace py = pybind11;
using namespace pybind11::literals;

namespace lmtp_python {

py::object enhanced_tuple(const lmtp::EnhancedCode& e) {
    if (!e.present()) return py::none();
    return py::make_tuple(e.klass, e.subject, e.detail);
}

py::bytes reply_message(const lmtp::Reply& r) { return py::bytes(r.message()); }

std::chrono::milliseconds to_ms(double seconds) {
    if (!(seconds > 0)) throw py::value_error("timeout must be a positive number of seconds");
    double ms = std::ceil(seconds * 1000.0);
    if (ms > static_cast<double>(std::numeric_limits<std::uint32_t>::max()))
        ms = static_cast<double>(std::numeric_limits<std::uint32_t>::max());
    return std::chrono::milliseconds(static_cast<std::int64_t>(ms));
}

std::optional<std::string_view> message_view(py::handle obj) {
    if (PyBytes_Check(obj.ptr())) {
        char* p = nullptr;
        Py_ssize_t n = 0;
        PyBytes_AsStringAndSize(obj.ptr(), &p, &n);
        return std::string_view(p, static_cast<std::size_t>(n));
    }
    if (PyUnicode_Check(obj.ptr())) {
        if (!PyUnicode_IS_ASCII(obj.ptr()))
            throw py::value_error("a str message must be ASCII (encode it to bytes first)");
        return std::string_view(static_cast<const char*>(PyUnicode_DATA(obj.ptr())),
                                static_cast<std::size_t>(PyUnicode_GET_LENGTH(obj.ptr())));
    }
    return std::nullopt;
}

bool Pieces::take(py::handle obj) {
    if (std::optional<std::string_view> v = message_view(obj)) {
        add(*v);
        return true;
    }
    if (!PyTuple_Check(obj.ptr())) return false;
    for (py::handle piece : py::reinterpret_borrow<py::tuple>(obj)) {
        std::optional<std::string_view> v = message_view(piece);
        if (!v) throw py::type_error("a message in pieces is a tuple of bytes or ASCII str");
        add(*v);
    }
    return true;
}

lmtp::BodySource Pieces::source() const {
    if (views.size() == 1) return lmtp::memory_source(views[0]);
    auto at = std::make_shared<std::pair<std::size_t, std::size_t>>(0, 0);  // piece, offset in it
    return [views = views, at](char* buf, std::size_t cap) {
        std::size_t n = 0;
        while (n < cap && at->first < views.size()) {
            std::string_view rest = views[at->first].substr(at->second);
            std::size_t k = std::min(cap - n, rest.size());
            if (k) std::memcpy(buf + n, rest.data(), k);
            n += k;
            at->second += k;
            if (at->second == views[at->first].size()) *at = {at->first + 1, 0};
        }
        return n;
    };
}

std::uint64_t Pieces::canonical_length() const {
    lmtp::CanonicalLength n;
    for (std::string_view v : views) n.add(v);
    return n.total();
}

lmtp::ClientOptions client_options(const std::string& hello, double timeout, std::optional<double> connect_timeout,
                                   const std::string& local_address, unsigned local_port, std::size_t max_reply_line,
                                   std::size_t max_reply_size, bool send_hello, bool implicit_tls,
                                   bool strict_replies) {
    lmtp::ClientOptions o;
    o.hello = hello;
    o.strict_replies = strict_replies;
    o.send_hello = send_hello;
    o.implicit_tls = implicit_tls;
    o.timeout = to_ms(timeout);
    if (connect_timeout) o.connect_timeout = to_ms(*connect_timeout);
    o.local_address = local_address;
    if (local_port > 65535) throw py::value_error("local port out of range");
    o.local_port = static_cast<std::uint16_t>(local_port);
    if (max_reply_line) o.limits.reply.max_reply_line = max_reply_line;
    if (max_reply_size) o.limits.reply.max_reply_size = max_reply_size;
    // A message over the server's SIZE is refused before it is sent, as lmtp always did.
    o.refuse_over_size = true;
    return o;
}

lmtp::BodySource python_reader(PyObject* read) {
    return [read](char* buf, std::size_t cap) -> std::size_t {
        py::gil_scoped_acquire gil;
        std::string why;
        try {
            py::object chunk = py::handle(read)(cap);
            if (chunk.is_none()) return 0;
            if (!py::isinstance<py::bytes>(chunk)) throw py::type_error("the message source must give bytes");
            std::string_view v = py::cast<std::string_view>(chunk);
            if (v.size() > cap) throw py::value_error("the message source gave more bytes than asked for");
            std::memcpy(buf, v.data(), v.size());
            return v.size();
        } catch (py::error_already_set& e) {
            why = e.what();
        } catch (const std::exception& e) {
            why = e.what();
        }
        throw lmtp::Error(lmtp::Status::aborted, "the message source raised " + why);
    };
}

lmtp::BatchMessage batch_message(const std::string& from, const std::vector<std::string>& rcpts, const Pieces* whole,
                                 PyObject* read, const Params& params, lmtp::Transfer transfer) {
    lmtp::BatchMessage m;
    m.from = from;
    m.recipients = rcpts;
    m.mail_params = params.mail;
    m.rcpt_params = params.rcpt;
    m.force = params.force;
    m.transfer = transfer;
    if (whole) {
        m.source = whole->source();
        m.size_hint = whole->size;
        // The core declares SIZE from it when the server offers SIZE (and refuses a message
        // over the server's limit before sending it: ClientOptions::refuse_over_size).
        if (whole->views.size() == 1)
            m.bytes = whole->views[0];
        else
            m.canonical_size = whole->canonical_length();
    } else {
        m.source = python_reader(read);
    }
    return m;
}

// Everything lmtp.Result holds, in one tuple: (address, stage, code, enhanced,
// text, message, rcpt_code, outcome); stage None when there is no verdict.
// Result.outcome's public names: the core's, but "temporary" and "permanent" for its tempfail and
// permfail (the one place the Python face renames an outcome).
namespace {

const char* python_outcome(lmtp::Outcome o) noexcept {
    switch (o) {
        case lmtp::Outcome::tempfail: return "temporary";
        case lmtp::Outcome::permfail: return "permanent";
        default: return lmtp::outcome_name(o);
    }
}

py::tuple result_fields(const lmtp::RecipientResult& r) {
    const std::string text = r.reply.text();
    PyObject* decoded = PyUnicode_DecodeUTF8(text.data(), static_cast<Py_ssize_t>(text.size()), "replace");
    if (!decoded) throw py::error_already_set();
    return py::make_tuple(r.address,
                          r.stage == lmtp::Stage::none ? py::object(py::none())
                                                       : py::object(py::str(lmtp::stage_name(r.stage))),
                          r.reply.code, enhanced_tuple(r.reply.enhanced), py::reinterpret_steal<py::str>(decoded),
                          reply_message(r.reply), r.rcpt_reply.code, python_outcome(r.outcome));
}

}  // namespace

py::list results_fields(const std::vector<lmtp::RecipientResult>& rs) {
    py::list out(rs.size());
    for (std::size_t i = 0; i < rs.size(); ++i) out[i] = result_fields(rs[i]);
    return out;
}

py::list capability_list(const lmtp::Capabilities& caps) {
    py::list l;
    for (const auto& e : caps.entries()) l.append(py::make_tuple(e.keyword, e.params));
    return l;
}

lmtp::TraceFn python_trace(const py::object* fn) {
    return [fn](lmtp::TraceDir dir, std::string_view line) {
        py::gil_scoped_acquire gil;
        try {
            (*fn)(static_cast<int>(dir), py::bytes(line.data(), line.size()));
        } catch (py::error_already_set& e) {
            e.discard_as_unraisable("lmtp trace callback");
        }
    };
}

const Params& params_or_none(const Params* params) {
    static const Params none;
    return params ? *params : none;
}

lmtp::Transfer to_transfer(const std::string& transfer) {
    if (transfer == "data") return lmtp::Transfer::data;
    if (transfer == "bdat") return lmtp::Transfer::bdat;
    if (transfer == "auto") return lmtp::Transfer::automatic;
    throw py::value_error("transfer is 'auto', 'data' or 'bdat'");
}



}  // namespace lmtp_python

using namespace lmtp_python;

namespace {

// The Python exception for everything the core reports: args are
// (status_name, message); lmtp/__init__.py turns it into smtplib's classes.
PyObject* g_error = nullptr;


// Whether a line of `text` starts with "From " (the generator's "From " mangling
// then has work to do): 16 octets at a time, an LF with an F after it.
bool has_from_line(std::string_view text) {
    if (text.substr(0, 5) == "From ") return true;
    const char* p = text.data();
    const char* const end = p + text.size();
#if defined(__SSE2__)
    const __m128i lf = _mm_set1_epi8('\n');
    const __m128i f = _mm_set1_epi8('F');
    for (; end - p >= 17; p += 16) {
        const __m128i here = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
        const __m128i next = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 1));
        unsigned m = static_cast<unsigned>(
            _mm_movemask_epi8(_mm_and_si128(_mm_cmpeq_epi8(here, lf), _mm_cmpeq_epi8(next, f))));
        for (; m; m &= m - 1) {
            const char* at = p + __builtin_ctz(m) + 1;
            if (end - at >= 5 && std::memcmp(at, "From ", 5) == 0) return true;
        }
    }
#endif
    for (; (p = static_cast<const char*>(std::memchr(p, '\n', static_cast<std::size_t>(end - p)))) != nullptr; ++p)
        if (end - p > 5 && std::memcmp(p + 1, "From ", 5) == 0) return true;
    return false;
}

class PyClient {
public:
    PyClient(const std::string& hello, double timeout, std::optional<double> connect_timeout,
             const std::string& local_address, unsigned local_port, std::size_t max_reply_line,
             std::size_t max_reply_size, bool send_hello, bool implicit_tls, bool strict_replies)
        : client_(client_options(hello, timeout, connect_timeout, local_address, local_port, max_reply_line,
                               max_reply_size, send_hello, implicit_tls, strict_replies)) {}

    // Marks the client busy for one call; a second thread gets RuntimeError.
    class Use {
    public:
        explicit Use(PyClient& c) : c_(c) {
            if (c_.busy_.exchange(true))
                throw std::runtime_error("this LMTP connection is already in use by another thread");
        }
        ~Use() { c_.busy_ = false; }
        Use(const Use&) = delete;
        Use& operator=(const Use&) = delete;

    private:
        PyClient& c_;
    };

    lmtp::Client& client() { return client_; }

    // Runs f without the GIL, with the client marked busy.
    template <typename F>
    auto blocking(F&& f) -> decltype(f()) {
        Use use(*this);
        py::gil_scoped_release nogil;
        return f();
    }

    void set_trace(py::object fn) {
        Use use(*this);
        trace_ = fn;
        if (fn.is_none()) {
            client_.set_trace(nullptr);
            return;
        }
        client_.set_trace(python_trace(&trace_));
    }

    // The whole transaction; `source` is bytes or an ASCII str (sent from its
    // own buffer, no copy) or a callable read(n) -> bytes (b"" at the end),
    // called with the GIL. A message in memory is handed to the core as such,
    // which declares SIZE= its size on the wire when the server offers SIZE and
    // the parameters give none. Returns each recipient's result_fields.
    py::list deliver(const std::string& from, const std::vector<std::string>& rcpts, py::object source,
                     const Params& params, lmtp::Transfer transfer, bool canonical) {
        Use use(*this);
        std::optional<py::error_already_set> raised;
        Pieces whole;  // `source` keeps them alive
        const bool in_memory = whole.take(source);
        lmtp::BatchMessage m = batch_message(from, rcpts, in_memory ? &whole : nullptr, nullptr, params, transfer);
        m.canonical = canonical;
        if (!in_memory) {
            m.source = [&](char* buf, std::size_t cap) -> std::size_t {
                py::gil_scoped_acquire gil;
                try {
                    py::object chunk = source(cap);
                    if (chunk.is_none()) return 0;
                    if (!py::isinstance<py::bytes>(chunk))
                        throw py::type_error("the message source must give bytes, not " +
                                             std::string(py::str(chunk.get_type().attr("__name__"))));
                    char* p = nullptr;
                    Py_ssize_t n = 0;
                    PyBytes_AsStringAndSize(chunk.ptr(), &p, &n);
                    if (static_cast<std::size_t>(n) > cap)
                        throw py::value_error("the message source gave more bytes than asked for");
                    std::memcpy(buf, p, static_cast<std::size_t>(n));
                    return static_cast<std::size_t>(n);
                } catch (py::error_already_set& e) {
                    raised.emplace(std::move(e));
                } catch (const py::builtin_exception& e) {
                    e.set_error();
                    raised.emplace();
                }
                throw lmtp::Error(lmtp::Status::aborted, "the message source raised an exception");
            };
        }
        try {
            py::gil_scoped_release nogil;
            client_.deliver(std::move(m));
        } catch (const lmtp::Error&) {
            if (raised) throw std::move(*raised);  // the caller's own exception, as it was raised
            throw;
        }
        return results_fields(client_.transaction().recipients);
    }

    // Many messages pipelined back to back (Client::deliver_batch). Each
    // message is (sender, recipients, bytes or read(n) callable). Returns,
    // per message, (status name, reason, results); the status of the
    // session's end (None when it did not end) comes last.
    py::tuple deliver_many(const std::vector<std::tuple<std::string, std::vector<std::string>, py::object>>& messages,
                           const Params& params, lmtp::Transfer transfer) {
        Use use(*this);
        struct Done {
            lmtp::Status status;
            std::string why;
            std::vector<lmtp::RecipientResult> results;
        };
        std::vector<Done> done;
        done.reserve(messages.size());
        // Looked at now, with the GIL: the batch runs without it and touches no
        // Python object but through the readers, which take it back.
        std::vector<Pieces> bytes(messages.size());  // `messages` keeps them alive
        std::vector<PyObject*> readers(messages.size(), nullptr);  // borrowed: `messages` holds them
        for (std::size_t i = 0; i < messages.size(); ++i) {
            const py::object& src = std::get<2>(messages[i]);
            if (!bytes[i].take(src)) readers[i] = src.ptr();
        }
        lmtp::BatchSource next = [&](std::size_t i) {
            const auto& [from, rcpts, src] = messages[i];
            (void)src;
            return batch_message(from, rcpts, readers[i] ? nullptr : &bytes[i], readers[i], params, transfer);
        };
        lmtp::BatchDone report = [&](std::size_t, const lmtp::Transaction& t, lmtp::Status st, const std::string& why) {
            done.push_back({st, why, t.recipients});
            return true;
        };
        py::object ended = py::none();
        try {
            py::gil_scoped_release nogil;
            client_.deliver_batch(messages.size(), next, report);
        } catch (const lmtp::Error& e) {
            ended = py::make_tuple(lmtp::status_name(e.status()), e.what(), e.os_error());
        }
        py::list out;
        for (auto& d : done)
            out.append(py::make_tuple(d.status == lmtp::Status::ok ? "ok" : lmtp::status_name(d.status), d.why,
                                      results_fields(d.results)));
        return py::make_tuple(out, ended);
    }

private:
    lmtp::Client client_;
    std::atomic<bool> busy_{false};
    py::object trace_;
};

}  // namespace

PYBIND11_MODULE(_lmtp, m) {
    m.doc() = "The compiled core of the lmtp package (use the lmtp module, not this one).";
    m.attr("library_version") = std::to_string(LMTP_VERSION_MAJOR) + "." + std::to_string(LMTP_VERSION_MINOR) + "." +
                                std::to_string(LMTP_VERSION_PATCH);
    // Seconds, for socket-style timeouts: the core's default deadline.
    m.attr("default_timeout") = std::chrono::duration<double>(lmtp::kDefaultTimeout).count();
    // liblmtp's statuses, from its one table: (name, value, reply code of a local refusal, sentence).
    py::list statuses;
    for (int i = 0; i < lmtp::status_count(); ++i) {
        const auto s = static_cast<lmtp::Status>(i);
        statuses.append(
            py::make_tuple(lmtp::status_name(s), i, lmtp::status_reply_code(s), lmtp::status_description(s)));
    }
    m.attr("statuses") = statuses;

    static py::exception<lmtp::Error> error(m, "Error");
    g_error = error.ptr();
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const lmtp::Error& e) {
            py::tuple args = py::make_tuple(lmtp::status_name(e.status()), e.what(), e.os_error());
            PyErr_SetObject(g_error, args.ptr());
        }
    });

    m.def(
        "canonical_length",
        [](py::object body) {
            std::optional<std::string_view> v = message_view(body);
            if (!v) throw py::type_error("canonical_length takes bytes or an ASCII str");
            return lmtp::canonical_length(*v);
        },
        "The size of a message on the wire with CRLF line ends (what SIZE declares, RFC 1870).");

    m.def(
        "has_from_line",
        [](py::object text) {
            std::optional<std::string_view> v = message_view(text);
            if (!v) throw py::type_error("has_from_line takes bytes or an ASCII str");
            return has_from_line(*v);
        },
        "Whether a line starts with 'From ' (at the start, or after an LF).");

    py::class_<lmtp::Reply>(m, "Reply", "A server reply.")
        .def_readonly("code", &lmtp::Reply::code)
        .def_property_readonly("enhanced", [](const lmtp::Reply& r) { return enhanced_tuple(r.enhanced); })
        .def_property_readonly("lines",
                               [](const lmtp::Reply& r) {
                                   py::list l;
                                   for (const auto& s : r.lines) l.append(py::bytes(s));
                                   return l;
                               })
        .def_property_readonly("message", &reply_message)
        .def_property_readonly("completion", &lmtp::Reply::completion, "2xx: done.")
        .def_property_readonly("closing", &lmtp::Reply::closing, "421: the server is closing the connection.")
        .def_property_readonly("text", [](const lmtp::Reply& r) { return py::bytes(r.text()); });

    py::class_<Params>(m, "Params",
                       "MAIL and RCPT parameters as written on the wire (\"SIZE=1 BODY=8BITMIME\"), parsed once.")
        .def(py::init([](const std::string& mail, const std::string& rcpt, bool force) {
                 return Params{lmtp::parse_mail_params(mail), lmtp::parse_rcpt_params(rcpt), force};
             }),
             "mail"_a = "", "rcpt"_a = "", "force"_a = true)
        .def_property_readonly("smtputf8", [](const Params& p) { return p.mail.smtputf8; });

    m.def("closes_connection", &lmtp::closes_connection, "code"_a,
          "Whether a reply with this code means the server is closing the connection (421).");

    py::class_<PyClient> client(m, "Client");
    client
        .def(py::init<const std::string&, double, std::optional<double>, const std::string&, unsigned, std::size_t,
                      std::size_t, bool, bool, bool>(),
             "hello"_a, "timeout"_a, "connect_timeout"_a = py::none(), "local_address"_a = "", "local_port"_a = 0,
             "max_reply_line"_a = 0, "max_reply_size"_a = 0, "send_hello"_a = true, "implicit_tls"_a = false,
             "strict_replies"_a = false)
        ;
    def_set_tls(client, [](PyClient& c, const lmtp::TlsOptions& t) { c.client().set_tls_options(t); });
    client
        .def("starttls", [](PyClient& c) { return c.blocking([&] { return c.client().starttls(); }); })
        .def_property_readonly("starttls_reply", [](PyClient& c) { return c.client().starttls_reply(); })
        .def_property_readonly("tls_active", [](PyClient& c) { return c.client().tls_active(); })
        .def(
            "auth",
            [](PyClient& c, const std::string& user, const std::string& password, const std::string& mechanism,
               bool allow_plaintext) {
                return c.blocking([&] { return c.client().auth(user, password, mechanism, allow_plaintext); });
            },
            "user"_a, "password"_a, "mechanism"_a = "", "allow_plaintext"_a = false)
        .def("connect",
             [](PyClient& c, const std::string& host, unsigned port) {
                 if (port > 65535) throw py::value_error("port out of range");
                 c.blocking([&] { c.client().connect(host, static_cast<std::uint16_t>(port)); });
             })
        .def("close", [](PyClient& c) { c.blocking([&] { c.client().close(); }); })
        .def_property_readonly("connected", [](PyClient& c) { return c.client().connected(); })
        .def_property_readonly("is_local",
                               [](PyClient& c) {
                                   return c.client().transport() && c.client().transport()->is_local();
                               })
        .def_property_readonly("banner", [](PyClient& c) { return c.client().banner(); })
        .def_property_readonly("last_reply", [](PyClient& c) { return c.client().last_reply(); })
        .def_property_readonly("capabilities", [](PyClient& c) { return capability_list(c.client().capabilities()); })
        .def_property_readonly("size_limit", [](PyClient& c) { return c.client().capabilities().size_limit(); })
        .def("set_timeout", [](PyClient& c, double s) { c.client().set_timeout(to_ms(s)); })
        .def("set_trace", &PyClient::set_trace)
        .def("hello",
             [](PyClient& c, const std::string& d) { return c.blocking([&] { return c.client().hello(d); }); })
        .def(
            "mail",
            [](PyClient& c, const std::string& verb, const std::string& from, const Params* params, bool force) {
                lmtp::MailVerb v = verb == "SEND"   ? lmtp::MailVerb::send
                                   : verb == "SOML" ? lmtp::MailVerb::soml
                                   : verb == "SAML" ? lmtp::MailVerb::saml
                                                    : lmtp::MailVerb::mail;
                const lmtp::MailParams& p = params_or_none(params).mail;
                return c.blocking([&] { return c.client().mail(v, from, p, force); });
            },
            "verb"_a, "sender"_a, "params"_a = py::none(), "force"_a = false)
        .def(
            "rcpt",
            [](PyClient& c, const std::string& to, const Params* params, bool force) {
                const lmtp::RcptParams& p = params_or_none(params).rcpt;
                return c.blocking([&] { return c.client().rcpt(to, p, force); });
            },
            "recipient"_a, "params"_a = py::none(), "force"_a = false)
        .def(
            "unoffered",
            [](PyClient& c, const Params& params) {
                // The extensions the server's LHLO reply lacks for these parameters, MAIL's then RCPT's.
                std::vector<std::string> out;
                for (const auto& gap : lmtp::unoffered(params.mail, c.client().capabilities()))
                    out.push_back(gap.first);
                for (const auto& gap : lmtp::unoffered(params.rcpt, c.client().capabilities()))
                    out.push_back(gap.first);
                return out;
            },
            "params"_a)
        .def_property_readonly(
            "data_accepted", [](PyClient& c) { return c.client().transaction().data_accepted(); },
            "DATA was answered 354: the server waits for the message.")
        .def("rset", [](PyClient& c) { return c.blocking([&] { return c.client().rset(); }); })
        .def("noop", [](PyClient& c) { return c.blocking([&] { return c.client().noop(); }); })
        .def("verify",
             [](PyClient& c, const std::string& a) { return c.blocking([&] { return c.client().verify(a); }); })
        .def("expand",
             [](PyClient& c, const std::string& a) { return c.blocking([&] { return c.client().expand(a); }); })
        .def("help",
             [](PyClient& c, const std::string& a) { return c.blocking([&] { return c.client().help(a); }); })
        .def("etrn",
             [](PyClient& c, const std::string& a) { return c.blocking([&] { return c.client().etrn(a); }); })
        .def("quit", [](PyClient& c) { return c.blocking([&] { return c.client().quit(); }); })
        .def("data_start", [](PyClient& c) { return c.blocking([&] { return c.client().data_start(); }); })
        .def("data_write",
             [](PyClient& c, py::object chunk) {
                 std::optional<std::string_view> v = message_view(chunk);  // `chunk` stays alive for the call
                 if (!v) throw py::type_error("data_write takes bytes or an ASCII str");
                 c.blocking([&] { c.client().data_write(*v); });
             })
        .def("data_end", [](PyClient& c) { return c.blocking([&] { return c.client().data_end(); }); })
        .def("command",
             [](PyClient& c, const std::string& line) { c.blocking([&] { c.client().command(line); }); })
        .def("response", [](PyClient& c) { return c.blocking([&] { return c.client().response(); }); })
        .def_property_readonly("finals_owed", [](PyClient& c) { return c.client().finals_owed(); })
        .def(
            "deliver",
            [](PyClient& c, const std::string& from, const std::vector<std::string>& rcpts, py::object source,
               const Params* params, const std::string& transfer, bool canonical) {
                return c.deliver(from, rcpts, source, params_or_none(params), to_transfer(transfer), canonical);
            },
            "sender"_a, "recipients"_a, "source"_a, "params"_a = py::none(), "transfer"_a = "auto",
            "canonical"_a = false)
        .def(
            "deliver_many",
            [](PyClient& c, const std::vector<std::tuple<std::string, std::vector<std::string>, py::object>>& messages,
               const Params* params, const std::string& transfer) {
                return c.deliver_many(messages, params_or_none(params), to_transfer(transfer));
            },
            "messages"_a, "params"_a = py::none(), "transfer"_a = "auto")
        .def_property_readonly("results", [](PyClient& c) { return results_fields(c.client().transaction().recipients); });

    bind_aio(m);
    bind_pool(m);
    bind_apool(m);
}
