#include "lmtp/auth.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cstring>

#include "lmtp/capabilities.hpp"
#include "lmtp/status.hpp"

namespace lmtp {

namespace {

[[noreturn]] void auth_error(const std::string& what) {
    throw Error(Status::auth, what);
}

using Bytes = std::string;

Bytes hmac_sha256(std::string_view key, std::string_view data) {
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (!HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
              reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len))
        throw Error(Status::internal, "HMAC-SHA-256 failed");
    return Bytes(reinterpret_cast<char*>(out), len);
}

Bytes sha256(std::string_view data) {
    unsigned char out[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), out);
    return Bytes(reinterpret_cast<char*>(out), sizeof out);
}

Bytes pbkdf2_sha256(std::string_view password, std::string_view salt, int iterations) {
    unsigned char out[SHA256_DIGEST_LENGTH];
    if (!PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                           reinterpret_cast<const unsigned char*>(salt.data()), static_cast<int>(salt.size()),
                           iterations, EVP_sha256(), sizeof out, out))
        throw Error(Status::internal, "PBKDF2 failed");
    return Bytes(reinterpret_cast<char*>(out), sizeof out);
}

std::string upper(std::string s) {
    for (char& c : s)
        if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    return s;
}

// --- PLAIN (RFC 4616): authzid NUL authcid NUL password ------------------------------

class Plain final : public SaslMechanism {
public:
    Plain(std::string user, std::string password, std::string authzid)
        : message_(std::move(authzid) + '\0' + std::move(user) + '\0' + std::move(password)) {}
    const char* name() const override { return "PLAIN"; }
    std::optional<std::string> initial() override {
        sent_ = true;
        return message_;
    }
    std::string step(std::string_view challenge) override {
        // A server that wants the response after an empty challenge.
        if (!challenge.empty() || sent_) auth_error("unexpected PLAIN challenge from the server");
        sent_ = true;
        return message_;
    }
    bool complete() const override { return sent_; }
    bool reveals_password() const override { return true; }

private:
    std::string message_;
    bool sent_ = false;
};

// --- LOGIN: the user name, then the password, each asked for ------------------------

class Login final : public SaslMechanism {
public:
    Login(std::string user, std::string password) : user_(std::move(user)), password_(std::move(password)) {}
    const char* name() const override { return "LOGIN"; }
    std::optional<std::string> initial() override { return std::nullopt; }
    std::string step(std::string_view challenge) override {
        // "Username:" then "Password:"; servers word them variously, so go by order.
        (void)challenge;
        if (step_ == 0) {
            ++step_;
            return user_;
        }
        if (step_ == 1) {
            ++step_;
            return password_;
        }
        auth_error("unexpected third LOGIN challenge from the server");
    }
    bool complete() const override { return step_ == 2; }
    bool reveals_password() const override { return true; }

private:
    std::string user_, password_;
    int step_ = 0;
};

// --- EXTERNAL (RFC 4422 appendix A) ----------------------------------------------------

class External final : public SaslMechanism {
public:
    explicit External(std::string authzid) : authzid_(std::move(authzid)) {}
    const char* name() const override { return "EXTERNAL"; }
    std::optional<std::string> initial() override { return authzid_; }
    std::string step(std::string_view challenge) override {
        if (!challenge.empty()) auth_error("unexpected EXTERNAL challenge from the server");
        return authzid_;
    }
    bool complete() const override { return true; }

private:
    std::string authzid_;
};

// --- SCRAM-SHA-256 (RFC 5802, RFC 7677) -------------------------------------------------

// saslname: "=" and "," are written =3D and =2C (RFC 5802 5.1).
std::string saslname(std::string_view user) {
    std::string out;
    for (char c : user) {
        if (c == '=')
            out += "=3D";
        else if (c == ',')
            out += "=2C";
        else
            out += c;
    }
    return out;
}

// The value of attribute `key` in a "k=v,k=v" message, or nullopt.
std::optional<std::string_view> attribute(std::string_view message, char key) {
    while (!message.empty()) {
        std::size_t comma = message.find(',');
        std::string_view part = message.substr(0, comma);
        if (part.size() >= 2 && part[0] == key && part[1] == '=') return part.substr(2);
        if (comma == std::string_view::npos) break;
        message.remove_prefix(comma + 1);
    }
    return std::nullopt;
}

class ScramSha256 final : public SaslMechanism {
public:
    ScramSha256(std::string user, std::string password, std::string nonce)
        : user_(std::move(user)), password_(std::move(password)), nonce_(std::move(nonce)) {
        if (nonce_.empty()) {
            unsigned char raw[24];
            if (RAND_bytes(raw, sizeof raw) != 1) throw Error(Status::internal, "no random bytes for the SCRAM nonce");
            nonce_ = base64_encode(std::string_view(reinterpret_cast<char*>(raw), sizeof raw));
        }
        first_bare_ = "n=" + saslname(user_) + ",r=" + nonce_;
    }
    const char* name() const override { return "SCRAM-SHA-256"; }
    std::optional<std::string> initial() override { return "n,," + first_bare_; }

    std::string step(std::string_view challenge) override {
        if (state_ == 0) return client_final(challenge);
        if (state_ == 1) return verify_server(challenge);
        auth_error("unexpected SCRAM challenge after the exchange ended");
    }
    bool complete() const override { return state_ == 2; }

private:
    std::string client_final(std::string_view server_first) {
        if (attribute(server_first, 'm')) auth_error("the server's SCRAM message asks for an extension liblmtp lacks");
        auto r = attribute(server_first, 'r');
        auto s = attribute(server_first, 's');
        auto i = attribute(server_first, 'i');
        if (!r || !s || !i) auth_error("malformed SCRAM server-first message");
        if (r->size() <= nonce_.size() || r->compare(0, nonce_.size(), nonce_) != 0)
            auth_error("the server's SCRAM nonce does not extend ours");
        int iterations = 0;
        for (char c : *i) {
            if (c < '0' || c > '9' || iterations > 10'000'000) auth_error("bad SCRAM iteration count");
            iterations = iterations * 10 + (c - '0');
        }
        if (iterations < 1) auth_error("bad SCRAM iteration count");
        Bytes salt = base64_decode(*s);
        Bytes salted = pbkdf2_sha256(password_, salt, iterations);
        Bytes client_key = hmac_sha256(salted, "Client Key");
        Bytes stored_key = sha256(client_key);
        std::string without_proof = "c=" + base64_encode("n,,") + ",r=" + std::string(*r);
        std::string auth_message = first_bare_ + "," + std::string(server_first) + "," + without_proof;
        Bytes signature = hmac_sha256(stored_key, auth_message);
        Bytes proof = client_key;
        for (std::size_t k = 0; k < proof.size(); ++k) proof[k] = static_cast<char>(proof[k] ^ signature[k]);
        server_signature_ = hmac_sha256(hmac_sha256(salted, "Server Key"), auth_message);
        OPENSSL_cleanse(salted.data(), salted.size());
        OPENSSL_cleanse(client_key.data(), client_key.size());
        state_ = 1;
        return without_proof + ",p=" + base64_encode(proof);
    }

    std::string verify_server(std::string_view server_final) {
        if (auto e = attribute(server_final, 'e')) auth_error("the server refused SCRAM: " + std::string(*e));
        auto v = attribute(server_final, 'v');
        if (!v) auth_error("malformed SCRAM server-final message");
        Bytes got = base64_decode(*v);
        if (got.size() != server_signature_.size() ||
            CRYPTO_memcmp(got.data(), server_signature_.data(), got.size()) != 0)
            auth_error("the server's SCRAM signature is wrong: it does not know the password");
        state_ = 2;
        return {};
    }

    std::string user_, password_, nonce_, first_bare_;
    Bytes server_signature_;
    int state_ = 0;
};

}  // namespace

std::string base64_encode(std::string_view data) {
    if (data.empty()) return {};
    std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                            reinterpret_cast<const unsigned char*>(data.data()), static_cast<int>(data.size()));
    out.resize(static_cast<std::size_t>(n));
    return out;
}

std::string base64_decode(std::string_view text) {
    if (text.empty()) return {};
    auto is_b64 = [](char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
    };
    std::size_t pad = 0;
    bool ok = text.size() % 4 == 0;
    for (std::size_t k = 0; ok && k < text.size(); ++k) {
        char c = text[k];
        if (c == '=') {
            ++pad;
            ok = k >= text.size() - 2;
        } else {
            ok = is_b64(c) && pad == 0;
        }
    }
    if (!ok) throw Error(Status::protocol, "the server sent invalid base64");
    std::string out(3 * (text.size() / 4), '\0');
    int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                            reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
    if (n < 0) throw Error(Status::protocol, "the server sent invalid base64");
    out.resize(static_cast<std::size_t>(n) - pad);  // EVP_DecodeBlock counts the padding as zero bytes
    return out;
}

std::unique_ptr<SaslMechanism> make_plain(const std::string& user, const std::string& password,
                                          const std::string& authzid) {
    return std::make_unique<Plain>(user, password, authzid);
}
std::unique_ptr<SaslMechanism> make_login(const std::string& user, const std::string& password) {
    return std::make_unique<Login>(user, password);
}
std::unique_ptr<SaslMechanism> make_external(const std::string& authzid) {
    return std::make_unique<External>(authzid);
}
std::unique_ptr<SaslMechanism> make_scram_sha256(const std::string& user, const std::string& password,
                                                 const std::string& client_nonce) {
    return std::make_unique<ScramSha256>(user, password, client_nonce);
}

const std::vector<std::string>& supported_mechanisms() {
    static const std::vector<std::string> names = {"SCRAM-SHA-256", "EXTERNAL", "PLAIN", "LOGIN"};
    return names;
}

std::string pick_mechanism(const std::vector<std::string>& offered, bool have_client_certificate) {
    for (const auto& m : supported_mechanisms()) {
        if (m == "EXTERNAL" && !have_client_certificate) continue;
        for (const auto& o : offered)
            if (iequals(o, m)) return m;
    }
    return {};
}

std::unique_ptr<SaslMechanism> make_mechanism(const std::string& name, const std::string& user,
                                              const std::string& password) {
    std::string n = upper(name);
    if (n == "PLAIN") return make_plain(user, password);
    if (n == "LOGIN") return make_login(user, password);
    if (n == "EXTERNAL") return make_external(user);
    if (n == "SCRAM-SHA-256") return make_scram_sha256(user, password);
    throw Error(Status::invalid_argument, "liblmtp does not implement the SASL mechanism " + name);
}

}  // namespace lmtp
