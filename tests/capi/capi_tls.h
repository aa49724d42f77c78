/*
 * capi_tls.h - shared helpers of the TLS and AUTH suites of the C API: the test certificates (made
 * once per test program in a fresh temporary directory by fake_make_test_certs), fake and client
 * configurations that use them, base64 for checking what went over the wire, and a run of a handle
 * that must fail (status, not connected, elapsed time).
 */
#ifndef CAPI_TLS_H
#define CAPI_TLS_H

#include "capi_test.h"

#define CERT_PATH_MAX 512

typedef struct test_certs {
    char dir[CERT_PATH_MAX];
    char ca[CERT_PATH_MAX];          /* the test CA */
    char server_pem[CERT_PATH_MAX];  /* localhost, 127.0.0.1, ::1; by the CA */
    char server_key[CERT_PATH_MAX];
    char wrong_pem[CERT_PATH_MAX];   /* DNS:other.example only */
    char wrong_key[CERT_PATH_MAX];
    char expired_pem[CERT_PATH_MAX];
    char expired_key[CERT_PATH_MAX];
    char self_pem[CERT_PATH_MAX];    /* self-signed */
    char self_key[CERT_PATH_MAX];
    char other_ca[CERT_PATH_MAX];    /* an unrelated CA */
    char client_pem[CERT_PATH_MAX];  /* CN=client.example, by the CA */
    char client_key[CERT_PATH_MAX];
} test_certs;

extern test_certs CERTS;

/* CMocka group fixtures: make the certificates in a new temporary directory / remove them. */
int certs_group_setup(void **state);
int certs_group_teardown(void **state);

/* test_fake_config + STARTTLS with the certificate `which`: "server", "wrong-name", "expired",
   "self-signed". */
void tls_fake_config(fake_config *c, const char *which);
/* test_options + tls_ca_file = the test CA (no STARTTLS: set o->starttls as needed). */
void tls_client_options(lmtp_options *o);

/* lmtp_new to the fake's address with `o`; registers the handle (also on failure) and returns the
   status. *out gets the handle. */
int fx_try_new(fx *x, fake_lmtp *f, const lmtp_options *o, lmtp_t **out);

/* base64 (RFC 4648). out must hold 4 * ((n + 2) / 3) + 1 bytes; returns the length. */
size_t b64_encode(const void *in, size_t n, char *out);
/* Decodes canonical base64 into out (at least 3 * strlen(in) / 4 + 1 bytes, NUL added); returns
   the length, or (size_t)-1 on anything that is not base64. */
size_t b64_decode(const char *in, size_t n, char *out);

/* The first line (without CRLF) of the transcript at or after `from` that starts with `prefix`,
   copied into buf (NUL-terminated); 1 if found. */
int transcript_line(fake_lmtp *f, size_t from, const char *prefix, char *buf, size_t cap);
/* The k-th line (0-based, without CRLF) of the transcript from `from` on; 1 if found. */
int transcript_nth_line(fake_lmtp *f, size_t from, size_t k, char *buf, size_t cap);

#endif /* CAPI_TLS_H */
