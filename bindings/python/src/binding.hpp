// What the two halves of lmtp._lmtp share: the blocking Client (module.cpp)
// and the asyncio connection (aio.cpp). Messages as the core takes them,
// results as lmtp.Result takes them, the option values.
#pragma once

#include <pybind11/pybind11.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lmtp/client.hpp"
#include "lmtp/pool.hpp"

namespace lmtp_python {

namespace py = pybind11;

// Seconds as the core's deadline (ValueError unless positive; capped at what it holds).
std::chrono::milliseconds to_ms(double seconds);

// The options the Python faces give (0 for a limit: the core's default).
lmtp::ClientOptions client_options(const std::string& hello, double timeout, std::optional<double> connect_timeout,
                                   const std::string& local_address, unsigned local_port, std::size_t max_reply_line,
                                   std::size_t max_reply_size, bool send_hello, bool implicit_tls,
                                   bool strict_replies);

// A message held in memory as the core takes it, without a copy: bytes, or a
// str of ASCII characters only (CPython keeps those one byte per character:
// the str's own buffer is the message on the wire). Empty when it is neither.
std::optional<std::string_view> message_view(py::handle obj);

// A message held in memory as one or more pieces, each bytes or an ASCII str,
// read in place (lmtp/__init__.py gives a tuple of pieces for an
// email.message.Message: its folded header block, then its body as it is).
// The Python objects must outlive the views.
struct Pieces {
    std::vector<std::string_view> views;
    std::size_t size = 0;

    // False when `obj` is neither a message in memory nor a tuple of them.
    bool take(py::handle obj);
    void add(std::string_view v) {
        views.push_back(v);
        size += v.size();
    }
    lmtp::BodySource source() const;
    // What SIZE declares: the whole message's size with CRLF line ends.
    std::uint64_t canonical_length() const;
};

// A read(n) -> bytes callable as the core's source, called with the GIL
// (taken when the caller runs without it). `read` is borrowed: its owner
// keeps it alive while the core may call it. A failure (an exception, no
// bytes, too many) abandons the message with Status::aborted saying why.
lmtp::BodySource python_reader(PyObject* read);

// MAIL and RCPT parameters made once for a set of option strings (lmtp/__init__.py keeps
// them), parsed by the core from their wire form.
struct Params {
    lmtp::MailParams mail;
    lmtp::RcptParams rcpt;
    bool force = true;
};

const Params& params_or_none(const Params* params);
lmtp::Transfer to_transfer(const std::string& transfer);

// One message of a batch: `whole` (read in place) when it is in memory,
// else `read`. The core declares SIZE for a message in memory.
lmtp::BatchMessage batch_message(const std::string& from, const std::vector<std::string>& rcpts, const Pieces* whole,
                                 PyObject* read, const Params& params, lmtp::Transfer transfer);

// Everything lmtp.Result holds, in one tuple per recipient: (address, stage,
// code, enhanced, text, message, rcpt_code, outcome).
py::list results_fields(const std::vector<lmtp::RecipientResult>& rs);
// The (keyword, params) pairs of an LHLO reply.
py::list capability_list(const lmtp::Capabilities& caps);
// The core's trace calling `*fn(direction, line)` with the GIL; `fn` (an
// owner's member) outlives the core's use of it. Exceptions are unraisable.
lmtp::TraceFn python_trace(const py::object* fn);

// The TLS settings lmtp/__init__.py's _apply_tls gives (set_tls(...)).
template <typename Class, typename Setter>
void def_set_tls(py::class_<Class>& cls, Setter set) {
    using namespace pybind11::literals;
    cls.def(
        "set_tls",
        [set](Class& c, const std::string& ca_file, const std::string& ca_dir, py::bytes ca_pem,
              const std::string& cert_file, const std::string& key_file, const std::string& server_name,
              int min_version, bool verify_name, bool insecure) {
            lmtp::TlsOptions t;
            t.ca_file = ca_file;
            t.ca_dir = ca_dir;
            t.ca_pem = ca_pem;
            t.cert_file = cert_file;
            t.key_file = key_file;
            t.server_name = server_name;
            t.min_version = min_version;
            t.verify_name = verify_name;
            t.insecure_skip_verify = insecure;
            set(c, t);
        },
        "ca_file"_a = "", "ca_dir"_a = "", "ca_pem"_a = py::bytes(), "cert_file"_a = "", "key_file"_a = "",
        "server_name"_a = "", "min_version"_a = 0, "verify_name"_a = true, "insecure"_a = false);
}

// The asyncio half: lmtp._lmtp._Conn (aio.cpp).
void bind_aio(py::module_& m);

// The engine's report of a message a _Conn (aio.cpp) submitted with keep=True, once it
// came; taken once (for the asyncio pool's planner, without re-encoding it).
std::optional<lmtp::Delivered> take_kept(py::handle conn, std::uint64_t token);

// The delivery pool: lmtp._lmtp.Pool (pool.cpp).
void bind_pool(py::module_& m);

// A pool's options from lmtp.Pool's and lmtp.AsyncPool's arguments (seconds; 0: no limit
// or no delay); ValueError for values out of range (pool.cpp).
lmtp::PoolOptions pool_options(std::size_t connections, unsigned retries, double retry_delay,
                               double retry_delay_max, std::size_t max_messages_per_connection,
                               double max_connection_age, double idle_timeout, std::size_t mailbox_concurrency,
                               bool resend_unknown);
// One message's report as lmtp/pool.py reads it: (status name, why, result_fields, attempts);
// a recipient never sent (no verdict) is "unknown".
py::tuple report_fields(lmtp::Status status, const std::string& why, std::vector<lmtp::RecipientResult>& results,
                        const std::vector<unsigned>& attempts);

// The asyncio pool's policy: lmtp._lmtp._Planner (apool.cpp).
void bind_apool(py::module_& m);

}  // namespace lmtp_python
