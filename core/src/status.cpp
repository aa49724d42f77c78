#include "lmtp/status.hpp"

namespace lmtp {

const char* status_name(Status s) noexcept {
    switch (s) {
        case Status::ok: return "ok";
        case Status::invalid_argument: return "invalid_argument";
        case Status::bad_input: return "bad_input";
        case Status::line_too_long: return "line_too_long";
        case Status::not_advertised: return "not_advertised";
        case Status::bad_sequence: return "bad_sequence";
        case Status::resolve: return "resolve";
        case Status::connect: return "connect";
        case Status::timeout: return "timeout";
        case Status::io: return "io";
        case Status::closed: return "closed";
        case Status::protocol: return "protocol";
        case Status::rejected: return "rejected";
        case Status::no_memory: return "no_memory";
        case Status::too_big: return "too_big";
        case Status::no_recipients: return "no_recipients";
        case Status::aborted: return "aborted";
        case Status::not_connected: return "not_connected";
        case Status::internal: return "internal";
        case Status::tls: return "tls";
        case Status::certificate: return "certificate";
        case Status::auth: return "auth";
        case Status::insecure: return "insecure";
    }
    return "unknown";
}

const char* status_description(Status s) noexcept {
    switch (s) {
        case Status::ok: return "success";
        case Status::invalid_argument: return "invalid argument";
        case Status::bad_input: return "input would break the protocol (CR, LF, NUL or bad syntax)";
        case Status::line_too_long: return "command line too long";
        case Status::not_advertised: return "the server does not offer the extension this needs";
        case Status::bad_sequence: return "command out of sequence";
        case Status::resolve: return "host name could not be resolved";
        case Status::connect: return "could not connect";
        case Status::timeout: return "timed out waiting for the server";
        case Status::io: return "connection I/O error";
        case Status::closed: return "the server closed the connection";
        case Status::protocol: return "protocol error: invalid or unexpected reply from the server";
        case Status::rejected: return "the server refused the command";
        case Status::no_memory: return "out of memory";
        case Status::too_big: return "message exceeds the server's size limit";
        case Status::no_recipients: return "no recipient was accepted";
        case Status::aborted: return "transaction abandoned: the message source failed";
        case Status::not_connected: return "not connected";
        case Status::internal: return "internal error";
        case Status::tls: return "TLS failed";
        case Status::certificate: return "the server's certificate could not be verified";
        case Status::auth: return "authentication failed";
        case Status::insecure: return "refused to send a password over an unencrypted connection";
    }
    return "unknown status";
}

}  // namespace lmtp
