// SASL mechanisms for AUTH (RFC 4954), as pure exchanges: no I/O, so each
// can be tested against the RFCs' own examples. Every cryptographic step and
// every base64 conversion is OpenSSL's.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lmtp {

// Base64 (RFC 4648) with OpenSSL's encoder. decode throws Error(protocol) on
// anything that is not canonical base64.
std::string base64_encode(std::string_view data);
std::string base64_decode(std::string_view text);

class SaslMechanism {
public:
    virtual ~SaslMechanism() = default;
    // The name for AUTH, e.g. "SCRAM-SHA-256".
    virtual const char* name() const = 0;
    // The initial response (raw bytes, before base64), if the mechanism has one.
    virtual std::optional<std::string> initial() = 0;
    // The answer to a server challenge (raw bytes). Throws Error(auth) when
    // the challenge is wrong (then the exchange must be cancelled).
    virtual std::string step(std::string_view challenge) = 0;
    // True once the mechanism has everything it needs from the server; for
    // SCRAM, once the server has proved it knows the password.
    virtual bool complete() const = 0;
    // True if the password itself goes to the server (PLAIN, LOGIN): only
    // over TLS or a local socket unless the caller allows it.
    virtual bool reveals_password() const { return false; }
};

std::unique_ptr<SaslMechanism> make_plain(const std::string& user, const std::string& password,
                                          const std::string& authzid = {});
std::unique_ptr<SaslMechanism> make_login(const std::string& user, const std::string& password);
// Authenticates as the TLS client certificate's identity (or `authzid`).
std::unique_ptr<SaslMechanism> make_external(const std::string& authzid = {});
// SCRAM-SHA-256 (RFC 5802, RFC 7677). `client_nonce` empty: 24 random bytes,
// base64. Passwords are used as given (UTF-8), without SASLprep.
std::unique_ptr<SaslMechanism> make_scram_sha256(const std::string& user, const std::string& password,
                                                 const std::string& client_nonce = {});

// The mechanisms liblmtp implements, strongest first.
const std::vector<std::string>& supported_mechanisms();
// The strongest mechanism offered that can be used: SCRAM-SHA-256, then
// EXTERNAL (only with a client certificate), PLAIN, LOGIN. Empty if none.
std::string pick_mechanism(const std::vector<std::string>& offered, bool have_client_certificate);
// The mechanism named `name` (case-insensitive); throws Error(invalid_argument)
// for one liblmtp does not implement.
std::unique_ptr<SaslMechanism> make_mechanism(const std::string& name, const std::string& user,
                                              const std::string& password);

}  // namespace lmtp
