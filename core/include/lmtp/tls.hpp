// TLS settings and the client session prepared from them, with OpenSSL. The
// engine (engine.hpp) runs the session over memory buffers: the ciphertext
// goes through whatever carries the connection, so every wait keeps its
// deadline and a closed peer never raises SIGPIPE.
#pragma once

#include <string>
#include <utility>

#include "lmtp/status.hpp"

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;
typedef struct bio_st BIO;

namespace lmtp {

struct TlsOptions {
    std::string ca_file;      // PEM bundle of trusted CAs; with ca_dir empty too: the system's defaults
    std::string ca_dir;       // directory of hashed CA certificates
    std::string ca_pem;       // trusted CA certificates given as PEM text (added to the above)
    std::string cert_file;    // a client certificate (PEM, chain allowed), for EXTERNAL or servers that ask
    std::string key_file;     // its private key (PEM); empty: read from cert_file
    std::string server_name;  // the name sent (SNI) and verified; empty: the host connected to
    int min_version = 0;      // 0 or 0x0303: TLS 1.2; 0x0304: TLS 1.3
    // Verify that the certificate is for the server's name (or IP). Off: the
    // chain is still verified (Python's check_hostname = False).
    bool verify_name = true;
    // No certificate or name verification at all. Named for what it is: only
    // for tests and for servers reached over a channel already trusted.
    bool insecure_skip_verify = false;
};

// A client TLS setup made and checked before anything is sent, so that a
// missing CA file, an unreadable key or a unix socket without a name to
// verify is reported while the session is still usable in plain text:
// certificates and keys loaded, the name to send and verify chosen. `host` is
// what the caller connected to; `local`: a unix socket, whose path is never a
// name. Throws Error(invalid_argument) for bad settings, Error(tls) when
// OpenSSL itself fails.
class TlsSetup {
public:
    static TlsSetup make(const TlsOptions& options, const std::string& host, bool local);
    TlsSetup(TlsSetup&& other) noexcept;
    TlsSetup& operator=(TlsSetup&& other) noexcept;
    TlsSetup(const TlsSetup&) = delete;
    TlsSetup& operator=(const TlsSetup&) = delete;
    ~TlsSetup();

    // Hands the prepared session over (the caller frees both); the setup is empty after.
    std::pair<SSL_CTX*, SSL*> release() noexcept;

private:
    TlsSetup(SSL_CTX* ctx, SSL* ssl) : ctx_(ctx), ssl_(ssl) {}
    SSL_CTX* ctx_ = nullptr;
    SSL* ssl_ = nullptr;
};

// OpenSSL's queued errors as one sentence; the queue is emptied.
std::string tls_errors();
// "TLSv1.3 TLS_AES_256_GCM_SHA384"
std::string tls_description(SSL* ssl);
// Why a handshake step failed: Error(certificate) when the server's
// certificate was refused (the reason: expired, name mismatch, unknown CA...),
// Error(tls) with OpenSSL's errors otherwise. Empties OpenSSL's error queue.
Error tls_handshake_error(SSL* ssl);

}  // namespace lmtp
