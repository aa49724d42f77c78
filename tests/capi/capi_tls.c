/* capi_tls.c - shared helpers of the TLS and AUTH suites (see capi_tls.h). */
#include "capi_tls.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

test_certs CERTS;

static void path(char *out, const char *file) {
    int n = snprintf(out, CERT_PATH_MAX, "%s/%s", CERTS.dir, file);
    if (n < 0 || n >= CERT_PATH_MAX) abort();
}

int certs_group_setup(void **state) {
    const char *tmp = getenv("TMPDIR");
    (void)state;
    if (!tmp || !*tmp) tmp = "/tmp";
    snprintf(CERTS.dir, sizeof CERTS.dir, "%s/lmtp-capi-certs-XXXXXX", tmp);
    if (!mkdtemp(CERTS.dir)) {
        print_error("mkdtemp(%s) failed\n", CERTS.dir);
        return -1;
    }
    if (fake_make_test_certs(CERTS.dir) != 0) {
        print_error("fake_make_test_certs: %s\n", fake_start_error());
        return -1;
    }
    path(CERTS.ca, "ca.pem");
    path(CERTS.server_pem, "server.pem");
    path(CERTS.server_key, "server.key");
    path(CERTS.wrong_pem, "wrong-name.pem");
    path(CERTS.wrong_key, "wrong-name.key");
    path(CERTS.expired_pem, "expired.pem");
    path(CERTS.expired_key, "expired.key");
    path(CERTS.self_pem, "self-signed.pem");
    path(CERTS.self_key, "self-signed.key");
    path(CERTS.other_ca, "other-ca.pem");
    path(CERTS.client_pem, "client.pem");
    path(CERTS.client_key, "client.key");
    return 0;
}

int certs_group_teardown(void **state) {
    DIR *d;
    struct dirent *e;
    (void)state;
    if (!CERTS.dir[0]) return 0;
    d = opendir(CERTS.dir);
    if (d) {
        while ((e = readdir(d)) != NULL) {
            char p[CERT_PATH_MAX + 256];
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            snprintf(p, sizeof p, "%s/%s", CERTS.dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(CERTS.dir);
    return 0;
}

void tls_fake_config(fake_config *c, const char *which) {
    test_fake_config(c);
    if (strcmp(which, "server") == 0) {
        c->tls_cert = CERTS.server_pem;
        c->tls_key = CERTS.server_key;
    } else if (strcmp(which, "wrong-name") == 0) {
        c->tls_cert = CERTS.wrong_pem;
        c->tls_key = CERTS.wrong_key;
    } else if (strcmp(which, "expired") == 0) {
        c->tls_cert = CERTS.expired_pem;
        c->tls_key = CERTS.expired_key;
    } else if (strcmp(which, "self-signed") == 0) {
        c->tls_cert = CERTS.self_pem;
        c->tls_key = CERTS.self_key;
    } else {
        fail_msg("unknown certificate %s", which);
    }
}

void tls_client_options(lmtp_options *o) {
    test_options(o);
    o->tls_ca_file = CERTS.ca;
}

int fx_try_new(fx *x, fake_lmtp *f, const lmtp_options *o, lmtp_t **out) {
    lmtp_t *h = NULL;
    int st = lmtp_new(&h, fake_host(f), fake_port(f), o);
    assert_non_null(h);
    fx_keep(x, h);
    *out = h;
    return st;
}

/* ---- base64 ----------------------------------------------------------------------------- */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t b64_encode(const void *in, size_t n, char *out) {
    const unsigned char *p = in;
    size_t i, o = 0;
    for (i = 0; i + 2 < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
        out[o++] = B64[v >> 18 & 63];
        out[o++] = B64[v >> 12 & 63];
        out[o++] = B64[v >> 6 & 63];
        out[o++] = B64[v & 63];
    }
    if (n - i == 1) {
        unsigned v = (unsigned)p[i] << 16;
        out[o++] = B64[v >> 18 & 63];
        out[o++] = B64[v >> 12 & 63];
        out[o++] = '=';
        out[o++] = '=';
    } else if (n - i == 2) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8;
        out[o++] = B64[v >> 18 & 63];
        out[o++] = B64[v >> 12 & 63];
        out[o++] = B64[v >> 6 & 63];
        out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

static int b64_value(char c) {
    const char *p = c ? strchr(B64, c) : NULL;
    return p ? (int)(p - B64) : -1;
}

size_t b64_decode(const char *in, size_t n, char *out) {
    size_t i, o = 0;
    if (n % 4 != 0) return (size_t)-1;
    for (i = 0; i < n; i += 4) {
        int a = b64_value(in[i]), b = b64_value(in[i + 1]);
        int c = in[i + 2] == '=' ? -2 : b64_value(in[i + 2]);
        int d = in[i + 3] == '=' ? -2 : b64_value(in[i + 3]);
        if (a < 0 || b < 0 || c == -1 || d == -1) return (size_t)-1;
        if ((c == -2 || d == -2) && i + 4 != n) return (size_t)-1;
        if (c == -2 && d != -2) return (size_t)-1;
        out[o++] = (char)(a << 2 | b >> 4);
        if (c >= 0) out[o++] = (char)((b & 15) << 4 | c >> 2);
        if (d >= 0) out[o++] = (char)((c & 3) << 6 | d);
    }
    out[o] = '\0';
    return o;
}

/* ---- transcript lines --------------------------------------------------------------------- */

int transcript_nth_line(fake_lmtp *f, size_t from, size_t k, char *buf, size_t cap) {
    size_t n = 0, i, start;
    const char *t = fake_transcript(f, &n);
    if (from > n) return 0;
    start = from;
    for (i = from; i + 1 < n; i++) {
        if (t[i] == '\r' && t[i + 1] == '\n') {
            if (k == 0) {
                size_t len = i - start;
                if (len >= cap) len = cap - 1;
                memcpy(buf, t + start, len);
                buf[len] = '\0';
                return 1;
            }
            k--;
            start = i + 2;
            i++;
        }
    }
    return 0;
}

int transcript_line(fake_lmtp *f, size_t from, const char *prefix, char *buf, size_t cap) {
    size_t k;
    for (k = 0; transcript_nth_line(f, from, k, buf, cap); k++)
        if (strncmp(buf, prefix, strlen(prefix)) == 0) return 1;
    return 0;
}
