/* capi_test.c - shared helpers of the CMocka suites of the C API (see capi_test.h). */
#include "capi_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif

/* ---- fixtures --------------------------------------------------------------------------- */

int fx_setup(void **state) {
    fx *x = calloc(1, sizeof *x);
    if (!x) return -1;
    *state = x;
    return 0;
}

int fx_setup_default(void **state) {
    fx *x;
    fake_config c;
    lmtp_options o;
    if (fx_setup(state) != 0) return -1;
    x = *state;
    test_fake_config(&c);
    x->fake[0] = fake_start(&c);
    if (!x->fake[0]) {
        print_error("fake_start: %s\n", fake_start_error());
        return -1;
    }
    x->nfake = 1;
    test_options(&o);
    if (lmtp_new(&x->h[0], fake_host(x->fake[0]), fake_port(x->fake[0]), &o) != LMTP_OK) {
        print_error("lmtp_new: %s\n", x->h[0] ? lmtp_errmsg(x->h[0]) : "(no handle)");
        x->nh = x->h[0] ? 1 : 0;
        return -1;
    }
    x->nh = 1;
    return 0;
}

int fx_teardown(void **state) {
    fx *x = *state;
    int i;
    if (!x) return 0;
    for (i = 0; i < x->nh; i++) lmtp_free(x->h[i]);
    for (i = 0; i < x->nfake; i++) fake_stop(x->fake[i]);
    for (i = 0; i < x->nmem; i++) free(x->mem[i]);
    free(x);
    *state = NULL;
    return 0;
}

void test_fake_config(fake_config *c) {
    fake_config_init(c);
    c->rules = RULES;
}

void test_options(lmtp_options *o) {
    lmtp_options_init(o);
    o->timeout_ms = TEST_TIMEOUT_MS;
    o->hello = TEST_HELLO;
}

fake_lmtp *fx_fake(fx *x, const fake_config *c) {
    fake_lmtp *f;
    assert_true(x->nfake < FX_MAX);
    f = fake_start(c);
    if (!f) {
        print_error("fake_start failed: %s\n", fake_start_error());
        fail();
    }
    x->fake[x->nfake++] = f;
    return f;
}

lmtp_t *fx_keep(fx *x, lmtp_t *h) {
    if (!h) return NULL;
    assert_true(x->nh < FX_MAX);
    x->h[x->nh++] = h;
    return h;
}

lmtp_t *fx_connect(fx *x, fake_lmtp *f, const lmtp_options *o) {
    lmtp_options def;
    lmtp_t *h = NULL;
    int st;
    if (!o) {
        test_options(&def);
        o = &def;
    }
    st = lmtp_new(&h, fake_host(f), fake_port(f), o);
    fx_keep(x, h);
    if (st != LMTP_OK) {
        print_error("lmtp_new(%s, %u) = %d: %s\n", fake_host(f), fake_port(f), st, h ? lmtp_errmsg(h) : "");
        fail();
    }
    assert_non_null(h);
    return h;
}

void fx_free(fx *x, lmtp_t *h) {
    int i;
    for (i = 0; i < x->nh; i++) {
        if (x->h[i] == h) {
            x->h[i] = x->h[--x->nh];
            break;
        }
    }
    lmtp_free(h);
}

void fx_stop(fx *x, fake_lmtp *f) {
    int i;
    for (i = 0; i < x->nfake; i++) {
        if (x->fake[i] == f) {
            x->fake[i] = x->fake[--x->nfake];
            break;
        }
    }
    fake_stop(f);
}

void *fx_alloc(fx *x, size_t n) {
    void *p;
    assert_true(x->nmem < FX_MAX);
    p = malloc(n ? n : 1);
    assert_non_null(p);
    x->mem[x->nmem++] = p;
    return p;
}

/* ---- time ------------------------------------------------------------------------------- */

long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int test_under_valgrind(void) {
#ifdef RUNNING_ON_VALGRIND
    return RUNNING_ON_VALGRIND != 0;
#else
    const char *p = getenv("LD_PRELOAD");
    return p && strstr(p, "vgpreload") != NULL;
#endif
}

void sleep_ms(int ms) {
    struct timespec ts;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    nanosleep(&ts, NULL);
}

/* ---- bytes ------------------------------------------------------------------------------ */

size_t transcript_len(fake_lmtp *f) {
    size_t n = 0;
    fake_transcript(f, &n);
    return n;
}

int contains(const char *hay, size_t n, const char *needle) {
    size_t m = strlen(needle), i;
    if (m == 0) return 1;
    if (!hay || n < m) return 0;
    for (i = 0; i + m <= n; i++)
        if (hay[i] == needle[0] && memcmp(hay + i, needle, m) == 0) return 1;
    return 0;
}

int has(const char *s, const char *needle) { return s && strstr(s, needle) != NULL; }

/* Prints bytes escaped, at most 4000 of them. */
static void print_escaped(const char *label, const char *p, size_t n) {
    static const char hex[] = "0123456789ABCDEF";
    char out[4200];
    size_t o = 0, i;
    for (i = 0; i < n && o < 4000; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '\r') {
            out[o++] = '\\';
            out[o++] = 'r';
        } else if (c == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else if (c == '\\') {
            out[o++] = '\\';
            out[o++] = '\\';
        } else if (c >= 0x20 && c < 0x7f) {
            out[o++] = (char)c;
        } else {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
    print_error("  %s (%lu bytes): \"%s\"%s\n", label, (unsigned long)n, out, i < n ? "..." : "");
}

void assert_bytes_(const char *got, size_t got_len, const char *want, size_t want_len, const char *what,
                   const char *file, int line) {
    size_t i;
    if (got && got_len == want_len && memcmp(got, want, want_len) == 0) return;
    print_error("%s:%d: %s differs\n", file, line, what);
    if (!got) {
        print_error("  got NULL\n");
    } else {
        for (i = 0; i < got_len && i < want_len && got[i] == want[i];) i++;
        print_error("  first difference at byte %lu\n", (unsigned long)i);
        print_escaped("got ", got, got_len);
    }
    print_escaped("want", want, want_len);
    _fail(file, line);
}

void assert_transcript_from_(fake_lmtp *f, size_t from, const char *want, const char *file, int line) {
    size_t n = 0;
    const char *t = fake_transcript(f, &n);
    if (from > n) {
        print_error("%s:%d: the transcript (%lu bytes) is shorter than offset %lu\n", file, line,
                    (unsigned long)n, (unsigned long)from);
        _fail(file, line);
    }
    assert_bytes_(t + from, n - from, want, strlen(want), "transcript", file, line);
}

void assert_message_(fake_lmtp *f, size_t i, const char *want, size_t want_len, const char *file, int line) {
    size_t n = 0;
    const char *m = fake_message(f, i, &n);
    if (!m) {
        print_error("%s:%d: the fake stored no message %lu (it has %lu)\n", file, line, (unsigned long)i,
                    (unsigned long)fake_message_count(f));
        _fail(file, line);
    }
    assert_bytes_(m, n, want, want_len, "stored message", file, line);
}

void assert_has_(const char *s, const char *needle, const char *file, int line) {
    if (has(s, needle)) return;
    print_error("%s:%d: \"%s\" does not contain \"%s\"\n", file, line, s ? s : "(null)", needle);
    _fail(file, line);
}

void assert_status_(lmtp_t *h, int got, int want, const char *call, const char *file, int line) {
    if (got == want) return;
    print_error("%s:%d: %s returned %d (%s), want %d (%s)\n", file, line, call, got, lmtp_strerror(got), want,
                lmtp_strerror(want));
    if (h) print_error("  errmsg: \"%s\"; last reply: %d \"%s\"\n", lmtp_errmsg(h), lmtp_code(h), lmtp_message(h));
    _fail(file, line);
}

static void result_str(const char *file, int line, size_t i, const char *what, const char *got, const char *want) {
    if (!want) return;
    if (got && strcmp(got, want) == 0) return;
    print_error("%s:%d: recipient %lu: %s is \"%s\", want \"%s\"\n", file, line, (unsigned long)i, what,
                got ? got : "(null)", want);
    _fail(file, line);
}

static void result_int(const char *file, int line, size_t i, const char *what, int got, int want) {
    if (got == want) return;
    print_error("%s:%d: recipient %lu: %s is %d, want %d\n", file, line, (unsigned long)i, what, got, want);
    _fail(file, line);
}

void assert_result_(lmtp_t *h, size_t i, const char *address, int status, int stage, int code, const char *enhanced,
                    const char *text, int rcpt_code, const char *rcpt_text, const char *file, int line) {
    if (i >= lmtp_result_count(h)) {
        print_error("%s:%d: recipient %lu: only %lu results\n", file, line, (unsigned long)i,
                    (unsigned long)lmtp_result_count(h));
        _fail(file, line);
    }
    result_str(file, line, i, "address", lmtp_result_address(h, i), address);
    result_int(file, line, i, "status", lmtp_result_status(h, i), status);
    result_int(file, line, i, "stage", lmtp_result_stage(h, i), stage);
    result_int(file, line, i, "code", lmtp_result_code(h, i), code);
    result_str(file, line, i, "enhanced", lmtp_result_enhanced(h, i), enhanced);
    result_str(file, line, i, "text", lmtp_result_text(h, i), text);
    result_int(file, line, i, "rcpt_code", lmtp_result_rcpt_code(h, i), rcpt_code);
    result_str(file, line, i, "rcpt_text", lmtp_result_rcpt_text(h, i), rcpt_text);
}

/* ---- trace ------------------------------------------------------------------------------ */

void trace_record(void *user, int direction, const char *line, size_t len) {
    trace_log *t = user;
    static const char dirs[] = "SRDI";
    size_t need = t->len + len + 4;
    size_t i;
    t->calls++;
    if (!line) t->bad_bytes++; /* never NULL, even for an empty line */
    for (i = 0; line && i < len; i++) {
        /* A data piece keeps the CR that came before its LF (as Net::Cmd shows it). */
        if (line[i] == '\r' && direction == LMTP_TRACE_DATA && i + 1 == len) continue;
        if (line[i] == '\r' || line[i] == '\n' || line[i] == '\0') {
            t->bad_bytes++;
            break;
        }
    }
    if (need > t->cap) {
        size_t cap = t->cap ? t->cap : 1024;
        char *nb;
        while (cap < need) cap *= 2;
        nb = realloc(t->buf, cap);
        if (!nb) return;
        t->buf = nb;
        t->cap = cap;
    }
    t->buf[t->len++] = (direction >= 0 && direction <= 3) ? dirs[direction] : '?';
    t->buf[t->len++] = '|';
    if (len) memcpy(t->buf + t->len, line, len);
    t->len += len;
    t->buf[t->len++] = '\n';
    t->buf[t->len] = '\0';
}

void trace_log_free(trace_log *t) {
    free(t->buf);
    t->buf = NULL;
    t->len = t->cap = 0;
}
