// fake_certs.cpp - the test certificates (fake_make_test_certs, make-test-certs), made with the
// OpenSSL API at test time: no openssl command, no configuration file, nothing checked in.
//
// Every key is EC P-256 and every signature ECDSA with SHA-256. What is written (PEM):
//   ca.pem ca.key                 "liblmtp test CA", self-signed, CA:TRUE
//   server.pem server.key         CN=localhost, SAN DNS:localhost IP:127.0.0.1 IP:::1, by the CA
//   wrong-name.pem wrong-name.key CN=other.example, SAN DNS:other.example only, by the CA
//   expired.pem expired.key       like server.pem but notAfter yesterday (notBefore 30 days ago)
//   self-signed.pem .key          like server.pem but self-signed (not from the CA)
//   other-ca.pem other-ca.key     an unrelated CA ("liblmtp other CA")
//   client.pem client.key         CN=client.example, extendedKeyUsage clientAuth, by the CA
#include "fake_server.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace fake {
namespace {

struct KeyFree {
    void operator()(EVP_PKEY *k) const { EVP_PKEY_free(k); }
};
struct CertFree {
    void operator()(X509 *x) const { X509_free(x); }
};
using Key = std::unique_ptr<EVP_PKEY, KeyFree>;
using Cert = std::unique_ptr<X509, CertFree>;

constexpr long kDay = 24L * 3600;

std::string openssl_error(const std::string &what) {
    unsigned long e = ERR_get_error();
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    ERR_clear_error();
    return what + ": " + (e ? buf : "unknown OpenSSL error");
}

struct Spec {
    std::string cn;
    std::string san;      // for X509V3_EXT_conf_nid, e.g. "DNS:localhost,IP:127.0.0.1"; empty: none
    bool ca = false;
    bool client = false;  // extendedKeyUsage clientAuth (else serverAuth), leaves only
    long not_before = -3600;          // seconds from now
    long not_after = 3650 * kDay;     // seconds from now
};

bool add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value, std::string &err) {
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(nullptr, ctx, nid, value);
    if (!ext) {
        err = openssl_error(std::string("extension ") + OBJ_nid2sn(nid) + "=" + value);
        return false;
    }
    const int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    if (ok != 1) {
        err = openssl_error("X509_add_ext");
        return false;
    }
    return true;
}

// A certificate for key, signed by issuer/issuer_key (self-signed if issuer is null).
Cert make_cert(const Spec &s, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key, std::string &err) {
    Cert x(X509_new());
    if (!x) {
        err = openssl_error("X509_new");
        return nullptr;
    }
    X509_set_version(x.get(), 2);  // v3
    BIGNUM *serial = BN_new();
    bool ok = serial && BN_rand(serial, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) == 1 &&
              BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(x.get())) != nullptr;
    BN_free(serial);
    if (!ok) {
        err = openssl_error("serial number");
        return nullptr;
    }
    if (!X509_gmtime_adj(X509_getm_notBefore(x.get()), s.not_before) ||
        !X509_gmtime_adj(X509_getm_notAfter(x.get()), s.not_after) || X509_set_pubkey(x.get(), key) != 1) {
        err = openssl_error("validity/public key");
        return nullptr;
    }
    X509_NAME *name = X509_get_subject_name(x.get());
    const unsigned char *org = reinterpret_cast<const unsigned char *>("liblmtp tests");
    if (X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, org, -1, -1, 0) != 1 ||
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char *>(s.cn.c_str()),
                                   -1, -1, 0) != 1 ||
        X509_set_issuer_name(x.get(), issuer ? X509_get_subject_name(issuer) : name) != 1) {
        err = openssl_error("names");
        return nullptr;
    }
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer ? issuer : x.get(), x.get(), nullptr, nullptr, 0);
    if (!add_ext(x.get(), &ctx, NID_basic_constraints, s.ca ? "critical,CA:TRUE" : "critical,CA:FALSE", err) ||
        !add_ext(x.get(), &ctx, NID_key_usage, s.ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature",
                 err) ||
        !add_ext(x.get(), &ctx, NID_subject_key_identifier, "hash", err))
        return nullptr;
    if (issuer && !add_ext(x.get(), &ctx, NID_authority_key_identifier, "keyid:always", err)) return nullptr;
    if (!s.ca && !add_ext(x.get(), &ctx, NID_ext_key_usage, s.client ? "clientAuth" : "serverAuth", err))
        return nullptr;
    if (!s.san.empty() && !add_ext(x.get(), &ctx, NID_subject_alt_name, s.san.c_str(), err)) return nullptr;
    if (X509_sign(x.get(), issuer_key ? issuer_key : key, EVP_sha256()) <= 0) {
        err = openssl_error("X509_sign");
        return nullptr;
    }
    return x;
}

Key make_key(std::string &err) {
    Key k(EVP_EC_gen("P-256"));
    if (!k) err = openssl_error("EC P-256 key generation");
    return k;
}

// Write to path.tmp, then rename: a file that exists is complete. Keys are made 0600.
bool write_pem(const std::string &path, X509 *cert, EVP_PKEY *key, std::string &err) {
    const std::string tmp = path + ".tmp";
    BIO *b = BIO_new_file(tmp.c_str(), "w");
    if (!b) {
        err = openssl_error("create " + tmp);
        return false;
    }
    if (key) ::chmod(tmp.c_str(), 0600);
    const bool ok = cert ? PEM_write_bio_X509(b, cert) == 1
                         : PEM_write_bio_PrivateKey(b, key, nullptr, nullptr, 0, nullptr, nullptr) == 1;
    const bool flushed = BIO_flush(b) == 1;
    BIO_free(b);
    if (!ok || !flushed) {
        err = openssl_error("write " + tmp);
        ::unlink(tmp.c_str());
        return false;
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        err = "rename " + tmp + ": " + std::strerror(errno);
        ::unlink(tmp.c_str());
        return false;
    }
    return true;
}

bool write_pair(const std::string &dir, const char *base, X509 *cert, EVP_PKEY *key, std::string &err) {
    return write_pem(dir + "/" + base + ".pem", cert, nullptr, err) &&
           write_pem(dir + "/" + base + ".key", nullptr, key, err);
}

}  // namespace

bool make_test_certs(const std::string &dir_in, std::string &err) {
    ERR_clear_error();
    std::string dir = dir_in.empty() ? std::string(".") : dir_in;
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
        err = "mkdir " + dir + ": " + std::strerror(errno);
        return false;
    }
    const std::string localhost = "DNS:localhost,IP:127.0.0.1,IP:::1";

    Key ca_key = make_key(err);
    if (!ca_key) return false;
    Spec ca_spec;
    ca_spec.cn = "liblmtp test CA";
    ca_spec.ca = true;
    Cert ca = make_cert(ca_spec, ca_key.get(), nullptr, nullptr, err);
    if (!ca || !write_pair(dir, "ca", ca.get(), ca_key.get(), err)) return false;

    struct Leaf {
        const char *base;
        Spec spec;
        bool self_signed;
    };
    std::vector<Leaf> leaves;
    {
        Leaf l{"server", Spec(), false};
        l.spec.cn = "localhost";
        l.spec.san = localhost;
        leaves.push_back(l);
        l.base = "wrong-name";
        l.spec.cn = "other.example";
        l.spec.san = "DNS:other.example";
        leaves.push_back(l);
        l.base = "expired";
        l.spec.cn = "localhost";
        l.spec.san = localhost;
        l.spec.not_before = -30 * kDay;
        l.spec.not_after = -kDay;
        leaves.push_back(l);
        l.base = "self-signed";
        l.spec.not_before = -3600;
        l.spec.not_after = 3650 * kDay;
        l.self_signed = true;
        leaves.push_back(l);
        l.base = "client";
        l.spec.cn = "client.example";
        l.spec.san = "DNS:client.example";
        l.spec.client = true;
        l.self_signed = false;
        leaves.push_back(l);
    }
    for (const Leaf &l : leaves) {
        Key k = make_key(err);
        if (!k) return false;
        Cert c = l.self_signed ? make_cert(l.spec, k.get(), nullptr, nullptr, err)
                               : make_cert(l.spec, k.get(), ca.get(), ca_key.get(), err);
        if (!c || !write_pair(dir, l.base, c.get(), k.get(), err)) return false;
    }

    Key other_key = make_key(err);
    if (!other_key) return false;
    Spec other_spec;
    other_spec.cn = "liblmtp other CA";
    other_spec.ca = true;
    Cert other = make_cert(other_spec, other_key.get(), nullptr, nullptr, err);
    if (!other || !write_pair(dir, "other-ca", other.get(), other_key.get(), err)) return false;
    return true;
}

}  // namespace fake
