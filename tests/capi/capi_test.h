/*
 * capi_test.h - shared helpers of the CMocka suites of the C API (lmtp.h).
 *
 * Each test gets a fixture (struct fx) from fx_setup: every fake server and every handle the test
 * starts is registered in it, and fx_teardown stops and frees them all, also when an assertion
 * failed half-way (CMocka leaves the test by longjmp, the teardown still runs).
 *
 * Byte strings are compared exactly; on a mismatch both sides are printed with \r \n \xHH escapes.
 */
#ifndef CAPI_TEST_H
#define CAPI_TEST_H

#define _POSIX_C_SOURCE 200809L

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "fake_lmtp.h"
#include "lmtp.h"

#define FX_MAX 6

/* Default timeout of a handle in the tests that do not test timeouts (ms). */
#define TEST_TIMEOUT_MS 3000
/* The LHLO argument of every test handle. */
#define TEST_HELLO "client.test"

typedef struct fx {
    fake_lmtp *fake[FX_MAX];
    int nfake;
    lmtp_t *h[FX_MAX];
    int nh;
    void *mem[FX_MAX]; /* buffers freed by the teardown */
    int nmem;
} fx;

/* Fixture: an empty fx (the test starts what it needs). */
int fx_setup(void **state);
/* Fixture: a default fake server (rules RULES below) and a connected handle: fx->fake[0], fx->h[0]. */
int fx_setup_default(void **state);
/* Stops every fake server and frees every handle and buffer registered in the fixture. */
int fx_teardown(void **state);

/* Per-recipient rules used by many tests. */
#define RULES                                                                                   \
    "alice@x=250,250;temp@x=250,452;full@x=250,552;nosuch@x=550;bob@x=250,250;carol@x=250,250;" \
    "multi@x=250,451:first line|second line;deny@x=250,554:5.7.1 policy says no"

/* Fills c with the fake defaults plus RULES. */
void test_fake_config(fake_config *c);
/* Fills o with LMTP_OPTIONS_INIT, TEST_TIMEOUT_MS and TEST_HELLO. */
void test_options(lmtp_options *o);

/* Starts a fake server (asserts that it started) and registers it. */
fake_lmtp *fx_fake(fx *x, const fake_config *c);
/* lmtp_new to the fake (asserts LMTP_OK) and registers the handle. o NULL: test_options(). */
lmtp_t *fx_connect(fx *x, fake_lmtp *f, const lmtp_options *o);
/* Registers a handle (for one made by the test itself); returns it. */
lmtp_t *fx_keep(fx *x, lmtp_t *h);
/* Frees a registered handle now (and unregisters it). */
void fx_free(fx *x, lmtp_t *h);
/* Stops a registered fake now (and unregisters it). */
void fx_stop(fx *x, fake_lmtp *f);
/* malloc that the teardown frees; asserts on failure. */
void *fx_alloc(fx *x, size_t n);

/* Milliseconds of a monotonic clock. */
long now_ms(void);
/* Non-zero when the program runs under valgrind (everything ~20x slower: bounds on elapsed time
   that are not timeouts must make room for it). */
int test_under_valgrind(void);
void sleep_ms(int ms);

/* Length of the transcript so far. */
size_t transcript_len(fake_lmtp *f);
/* 1 if needle occurs in hay[0..n). */
int contains(const char *hay, size_t n, const char *needle);
/* 1 if s contains the C string needle. */
int has(const char *s, const char *needle);

/* Exact byte comparisons that print both sides, escaped, on a mismatch. */
void assert_bytes_(const char *got, size_t got_len, const char *want, size_t want_len, const char *what,
                   const char *file, int line);
#define assert_bytes(got, got_len, want, want_len) \
    assert_bytes_((got), (got_len), (want), (want_len), #got, __FILE__, __LINE__)
/* The transcript from offset `from` on equals `want` (a C string). */
void assert_transcript_from_(fake_lmtp *f, size_t from, const char *want, const char *file, int line);
#define assert_transcript_from(f, from, want) assert_transcript_from_((f), (from), (want), __FILE__, __LINE__)
/* The whole transcript equals `want`. */
#define assert_transcript(f, want) assert_transcript_from_((f), 0, (want), __FILE__, __LINE__)
/* Message i of the fake equals `want` (a C string). */
void assert_message_(fake_lmtp *f, size_t i, const char *want, size_t want_len, const char *file, int line);
#define assert_message(f, i, want) assert_message_((f), (i), (want), strlen(want), __FILE__, __LINE__)
/* s contains needle (prints both otherwise). */
void assert_has_(const char *s, const char *needle, const char *file, int line);
#define assert_has(s, needle) assert_has_((s), (needle), __FILE__, __LINE__)
/* The call returned `want`; prints lmtp_errmsg(h) and the last reply otherwise. */
void assert_status_(lmtp_t *h, int got, int want, const char *call, const char *file, int line);
#define assert_status(h, call, want) assert_status_((h), (call), (want), #call, __FILE__, __LINE__)
#define assert_ok(h, call) assert_status_((h), (call), LMTP_OK, #call, __FILE__, __LINE__)

/* Checks every lmtp_result_* getter of recipient i. enhanced/text/rcpt_text NULL: not checked. */
void assert_result_(lmtp_t *h, size_t i, const char *address, int status, int stage, int code, const char *enhanced,
                    const char *text, int rcpt_code, const char *rcpt_text, const char *file, int line);
#define assert_result(h, i, address, status, stage, code, enhanced, text, rcpt_code, rcpt_text)           \
    assert_result_((h), (i), (address), (status), (stage), (code), (enhanced), (text), (rcpt_code), (rcpt_text), \
                   __FILE__, __LINE__)

/* A recorded trace: every callback as "<dir>|<line>" (dir S R D I), lines joined by "\n". */
typedef struct trace_log {
    char *buf;
    size_t len, cap;
    int calls;
    int bad_bytes; /* callbacks whose line held CR, LF or NUL (but a data piece's final CR) */
} trace_log;
void trace_record(void *user, int direction, const char *line, size_t len);
void trace_log_free(trace_log *t);

#endif /* CAPI_TEST_H */
