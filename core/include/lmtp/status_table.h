/* The one list of liblmtp's status codes (valid C and C++).
 *
 * Everything that names a status is made from this table:
 *   - lmtp::Status, lmtp::status_name(), lmtp::status_description() and
 *     lmtp::status_reply_code() in the core (status.hpp, status.cpp);
 *   - the lmtp_status enum of capi/include/lmtp.h (the block between its
 *     "status table" markers, written by capi/gen-status.py; the ctest
 *     status_table fails when it is stale), lmtp_strerror(),
 *     lmtp_status_name() and lmtp_status_reply_code(), and compile-time
 *     checks that the enum and the table agree (capi/lmtp.cpp);
 *   - Net::LMTP's and the lmtp Python package's status names, which they
 *     read from the library when they load.
 *
 * The values are part of the stable C ABI: a new status is appended with the
 * next value; none is ever renumbered or removed.
 *
 * X(C_NAME, name, value, reply_code, description, note)
 *   C_NAME       the enumerator of lmtp.h
 *   name         the short identifier (lmtp::Status::name, lmtp_status_name())
 *   value        its number
 *   reply_code   for a refusal made by liblmtp before anything was sent: the
 *                code a server would have answered with (501 syntax, 555
 *                parameter not recognised, 503 bad sequence...), so that faces
 *                that report server codes (Net::LMTP's code()) report one;
 *                0 when the status is not such a refusal
 *   description  one sentence for people (lmtp_strerror())
 *   note         the comment beside the enumerator in lmtp.h
 */
#ifndef LMTP_STATUS_TABLE_H
#define LMTP_STATUS_TABLE_H

/* clang-format off */
#define LMTP_STATUS_TABLE(X) \
    X(LMTP_OK, ok, 0, 0, \
      "success", \
      "success") \
    X(LMTP_ERR_INVALID_ARGUMENT, invalid_argument, 1, 501, \
      "invalid argument", \
      "a value passed is unusable (NULL, empty, out of range)") \
    X(LMTP_ERR_BAD_INPUT, bad_input, 2, 501, \
      "input would break the protocol (CR, LF, NUL or bad syntax)", \
      "CR, LF, NUL or bad syntax in an address or parameter") \
    X(LMTP_ERR_LINE_TOO_LONG, line_too_long, 3, 500, \
      "command line too long", \
      "the command line would exceed its limit") \
    X(LMTP_ERR_NOT_ADVERTISED, not_advertised, 4, 555, \
      "the server does not offer the extension this needs", \
      "the server did not offer the extension a parameter needs") \
    X(LMTP_ERR_BAD_SEQUENCE, bad_sequence, 5, 503, \
      "command out of sequence", \
      "the call does not fit the state of the session") \
    X(LMTP_ERR_RESOLVE, resolve, 6, 0, \
      "host name could not be resolved", \
      "the host name could not be resolved") \
    X(LMTP_ERR_CONNECT, connect, 7, 0, \
      "could not connect", \
      "no address of the host accepted the connection") \
    X(LMTP_ERR_TIMEOUT, timeout, 8, 0, \
      "timed out waiting for the server", \
      "a deadline passed while waiting for the server") \
    X(LMTP_ERR_IO, io, 9, 0, \
      "connection I/O error", \
      "reading or writing the connection failed") \
    X(LMTP_ERR_CLOSED, closed, 10, 0, \
      "the server closed the connection", \
      "the server closed the connection") \
    X(LMTP_ERR_PROTOCOL, protocol, 11, 0, \
      "protocol error: invalid or unexpected reply from the server", \
      "the server sent something that is not a valid reply here") \
    X(LMTP_ERR_REJECTED, rejected, 12, 0, \
      "the server refused the command", \
      "the server answered 4xx or 5xx: see lmtp_code()") \
    X(LMTP_ERR_NO_MEMORY, no_memory, 13, 0, \
      "out of memory", \
      "out of memory") \
    X(LMTP_ERR_TOO_BIG, too_big, 14, 552, \
      "message exceeds the server's size limit", \
      "the message exceeds the server's SIZE limit") \
    X(LMTP_ERR_NO_RECIPIENTS, no_recipients, 15, 554, \
      "no recipient was accepted", \
      "no recipient was accepted: nothing to send") \
    X(LMTP_ERR_ABORTED, aborted, 16, 0, \
      "transaction abandoned: the message source failed", \
      "the message source failed; the transaction was abandoned") \
    X(LMTP_ERR_NOT_CONNECTED, not_connected, 17, 0, \
      "not connected", \
      "there is no connection") \
    X(LMTP_ERR_INTERNAL, internal, 18, 0, \
      "internal error", \
      "a bug in liblmtp") \
    X(LMTP_ERR_TLS, tls, 19, 0, \
      "TLS failed", \
      "the TLS handshake or a TLS record failed") \
    X(LMTP_ERR_CERTIFICATE, certificate, 20, 0, \
      "the server's certificate could not be verified", \
      "the server's certificate could not be verified") \
    X(LMTP_ERR_AUTH, auth, 21, 535, \
      "authentication failed", \
      "authentication failed: see lmtp_code() (535, 534, 538...)") \
    X(LMTP_ERR_INSECURE, insecure, 22, 538, \
      "refused to send a password over an unencrypted connection", \
      "refused to send a password over unencrypted TCP")
/* clang-format on */

#endif /* LMTP_STATUS_TABLE_H */
