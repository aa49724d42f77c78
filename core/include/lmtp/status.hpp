// Status codes and the exception type of the liblmtp core.
//
// The numeric values are part of the stable C ABI (capi/include/lmtp.h repeats
// them as lmtp_status and checks at compile time that both lists agree).
// New codes are added at the end; none is ever renumbered or removed.
#pragma once

#include <stdexcept>
#include <string>

namespace lmtp {

enum class Status : int {
    ok = 0,
    invalid_argument = 1,  // a value the caller passed is unusable (empty, out of range)
    bad_input = 2,         // a caller string would break the protocol (CR, LF, NUL, bad syntax)
    line_too_long = 3,     // a command line would exceed its limit
    not_advertised = 4,    // the server did not advertise the extension a parameter needs
    bad_sequence = 5,      // the call does not fit the state of the session
    resolve = 6,           // the host name could not be resolved
    connect = 7,           // no address of the host accepted the connection
    timeout = 8,           // a deadline passed while waiting for the server
    io = 9,                // reading or writing the connection failed
    closed = 10,           // the server closed the connection
    protocol = 11,         // the server sent something that is not a valid reply here
    rejected = 12,         // the server answered with a 4xx or 5xx reply
    no_memory = 13,        // memory allocation failed
    too_big = 14,          // the message is larger than the server's SIZE limit
    no_recipients = 15,    // no recipient was accepted, so no message was sent
    aborted = 16,          // the caller's message source failed; the transaction was abandoned
    not_connected = 17,    // there is no connection (never made, quit, or dropped)
    internal = 18,         // a bug in liblmtp
    tls = 19,              // the TLS handshake or a TLS record failed
    certificate = 20,      // the server's certificate could not be verified
    auth = 21,             // authentication failed (the reply says why: 535, 534, 538...)
    insecure = 22,         // refused to send a password over an unencrypted TCP connection
};

// Short identifier, e.g. "timeout".
const char* status_name(Status s) noexcept;
// One sentence for people, e.g. "timed out waiting for the server".
const char* status_description(Status s) noexcept;

// What the core throws. `what()` is the full, specific message
// ("RCPT TO address contains a line feed (LF)"), `status()` the category.
class Error : public std::runtime_error {
public:
    Error(Status status, const std::string& message, int os_error = 0)
        : std::runtime_error(message), status_(status), os_error_(os_error) {}
    Status status() const noexcept { return status_; }
    // The errno behind a connect or I/O failure (the last address tried), else 0.
    int os_error() const noexcept { return os_error_; }

private:
    Status status_;
    int os_error_;
};

}  // namespace lmtp
