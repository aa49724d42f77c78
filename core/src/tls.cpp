#include "lmtp/tls.hpp"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <cstring>
#include <memory>

#include "lmtp/status.hpp"

namespace lmtp {

std::string tls_errors() {
    std::string out;
    while (unsigned long e = ERR_get_error()) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof buf);
        if (!out.empty()) out += "; ";
        out += buf;
    }
    return out.empty() ? std::string("no detail from OpenSSL") : out;
}

namespace {

bool is_ip_literal(const std::string& s) {
    unsigned char buf[16];
    return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

struct CtxDeleter {
    void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
struct SslDeleter {
    void operator()(SSL* s) const { SSL_free(s); }
};

SSL_CTX* make_context(const TlsOptions& o) {
    // Thread-safe and done once by OpenSSL itself (1.1 and later).
    OPENSSL_init_ssl(OPENSSL_INIT_LOAD_SSL_STRINGS | OPENSSL_INIT_LOAD_CRYPTO_STRINGS, nullptr);
    std::unique_ptr<SSL_CTX, CtxDeleter> ctx(SSL_CTX_new(TLS_client_method()));
    if (!ctx) throw Error(Status::tls, "cannot create a TLS context: " + tls_errors());
    int min = o.min_version ? o.min_version : TLS1_2_VERSION;
    if (min != TLS1_2_VERSION && min != TLS1_3_VERSION)
        throw Error(Status::invalid_argument, "minimum TLS version must be 1.2 (0x0303) or 1.3 (0x0304)");
    SSL_CTX_set_min_proto_version(ctx.get(), min);
    SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (!o.insecure_skip_verify) {
        SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
        if (!o.ca_pem.empty()) {
            // CAs given in memory: added to the store, besides the files below.
            BIO* mem = BIO_new_mem_buf(o.ca_pem.data(), static_cast<int>(o.ca_pem.size()));
            X509_STORE* store = SSL_CTX_get_cert_store(ctx.get());
            int added = 0;
            while (X509* cert = PEM_read_bio_X509(mem, nullptr, nullptr, nullptr)) {
                added += X509_STORE_add_cert(store, cert) == 1;
                X509_free(cert);
            }
            BIO_free(mem);
            ERR_clear_error();  // the end of the PEM text reads as an error
            if (!added) throw Error(Status::invalid_argument, "no CA certificate found in the PEM text given");
        }
        if (!o.ca_file.empty() || !o.ca_dir.empty()) {
            if (SSL_CTX_load_verify_locations(ctx.get(), o.ca_file.empty() ? nullptr : o.ca_file.c_str(),
                                              o.ca_dir.empty() ? nullptr : o.ca_dir.c_str()) != 1)
                throw Error(Status::invalid_argument, "cannot load the CA certificates (" +
                                                          (o.ca_file.empty() ? o.ca_dir : o.ca_file) +
                                                          "): " + tls_errors());
        } else if (o.ca_pem.empty() && SSL_CTX_set_default_verify_paths(ctx.get()) != 1) {
            throw Error(Status::tls, "cannot load the system's CA certificates: " + tls_errors());
        }
    }
    if (!o.cert_file.empty()) {
        const std::string& key = o.key_file.empty() ? o.cert_file : o.key_file;
        if (SSL_CTX_use_certificate_chain_file(ctx.get(), o.cert_file.c_str()) != 1)
            throw Error(Status::invalid_argument,
                        "cannot load the client certificate " + o.cert_file + ": " + tls_errors());
        if (SSL_CTX_use_PrivateKey_file(ctx.get(), key.c_str(), SSL_FILETYPE_PEM) != 1)
            throw Error(Status::invalid_argument, "cannot load the client key " + key + ": " + tls_errors());
        if (SSL_CTX_check_private_key(ctx.get()) != 1)
            throw Error(Status::invalid_argument, "the client key does not match the certificate " + o.cert_file);
    }
    return ctx.release();
}

}  // namespace

TlsSetup::TlsSetup(TlsSetup&& other) noexcept : ctx_(other.ctx_), ssl_(other.ssl_) {
    other.ctx_ = nullptr;
    other.ssl_ = nullptr;
}

TlsSetup& TlsSetup::operator=(TlsSetup&& other) noexcept {
    if (this != &other) {
        SSL_free(ssl_);
        SSL_CTX_free(ctx_);
        ctx_ = other.ctx_;
        ssl_ = other.ssl_;
        other.ctx_ = nullptr;
        other.ssl_ = nullptr;
    }
    return *this;
}

TlsSetup::~TlsSetup() {
    SSL_free(ssl_);  // frees both memory BIOs
    SSL_CTX_free(ctx_);
}

TlsSetup TlsSetup::make(const TlsOptions& options, const std::string& host, bool local) {
    ERR_clear_error();
    std::unique_ptr<SSL_CTX, CtxDeleter> ctx;
    std::unique_ptr<SSL, SslDeleter> ssl;
    try {
        ctx.reset(make_context(options));
        ssl.reset(SSL_new(ctx.get()));
        if (!ssl) throw Error(Status::tls, "cannot create a TLS session: " + tls_errors());
        BIO* rbio = BIO_new(BIO_s_mem());
        BIO* wbio = BIO_new(BIO_s_mem());
        if (!rbio || !wbio) {
            BIO_free(rbio);
            BIO_free(wbio);
            throw Error(Status::no_memory, "cannot create TLS buffers");
        }
        SSL_set_bio(ssl.get(), rbio, wbio);
        SSL_set_connect_state(ssl.get());

        // The name to verify: the caller's, else the host; never a socket path.
        std::string name = options.server_name;
        if (name.empty() && !local) {
            name = host;
            if (name.size() > 2 && name.front() == '[' && name.back() == ']') name = name.substr(1, name.size() - 2);
        }
        const bool check_name = !options.insecure_skip_verify && options.verify_name;
        if (name.empty() && check_name)
            throw Error(Status::invalid_argument,
                        "TLS over a unix socket needs the server name to verify (TLS server name option), "
                        "or verification turned off explicitly");
        if (!name.empty()) {
            if (is_ip_literal(name)) {
                if (check_name && X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl.get()), name.c_str()) != 1)
                    throw Error(Status::invalid_argument, "bad IP address to verify: " + name);
            } else {
                SSL_set_tlsext_host_name(ssl.get(), name.c_str());  // SNI (not for IP addresses)
                if (check_name) {
                    SSL_set_hostflags(ssl.get(), X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
                    if (SSL_set1_host(ssl.get(), name.c_str()) != 1)
                        throw Error(Status::invalid_argument, "bad host name to verify: " + name);
                }
            }
        }
    } catch (...) {
        ERR_clear_error();
        throw;
    }
    return TlsSetup(ctx.release(), ssl.release());
}

Error tls_handshake_error(SSL* ssl) {
    long verify = SSL_get_verify_result(ssl);
    if (verify != X509_V_OK) {
        std::string what = X509_verify_cert_error_string(verify);
        ERR_clear_error();
        return Error(Status::certificate, "the server's certificate was refused: " + what);
    }
    return Error(Status::tls, "TLS handshake failed: " + tls_errors());
}

std::string tls_description(SSL* ssl) {
    const char* cipher = SSL_get_cipher_name(ssl);
    return std::string(SSL_get_version(ssl)) + " " + (cipher ? cipher : "?");
}

std::pair<SSL_CTX*, SSL*> TlsSetup::release() noexcept {
    std::pair<SSL_CTX*, SSL*> p{ctx_, ssl_};
    ctx_ = nullptr;
    ssl_ = nullptr;
    return p;
}

}  // namespace lmtp
