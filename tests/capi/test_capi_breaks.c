/*
 * test_capi_breaks.c - no verdict is lost when the connection breaks after the message.
 *
 * A matrix, not examples: for DATA and BDAT, a close and a reset, n = 1..4 recipients, the server
 * sends k = 0..n of the final replies and then breaks the connection (fake_config.fault_replies).
 * For each cell, the step API (lmtp_data_end / lmtp_bdat LAST, then lmtp_response for each further
 * recipient), lmtp_data, lmtp_deliver and lmtp_deliver_batch (three messages, the break at the end
 * of the second) must report every recipient as the server answered it: the rule's verdict for
 * the k answered, LMTP_RESULT_UNKNOWN for the others; lmtp_response yields each of them, a missing
 * one as LMTP_ERR_CLOSED naming it, never LMTP_ERR_BAD_SEQUENCE (after the last one:
 * LMTP_ERR_NOT_CONNECTED, the connection being gone).
 */
#include "capi_test.h"

#include <stdio.h>

#define RULES4 "r0@x=250,250;r1@x=250,552;r2@x=250,452;r3@x=250,250"
static const char *const kRcpts[] = {"r0@x", "r1@x", "r2@x", "r3@x"};
static const int kCode[] = {250, 552, 452, 250};
static const int kVerdict[] = {LMTP_RESULT_OK, LMTP_RESULT_PERMFAIL, LMTP_RESULT_TEMPFAIL, LMTP_RESULT_OK};
static const char kMsg[] = "Subject: break\r\n\r\nbody\r\n";

/* The cell under test, for the failure messages. */
static char g_cell[160];

#define expect_int(got, want, what)                                                                \
    do {                                                                                           \
        long g_ = (long)(got), w_ = (long)(want);                                                  \
        if (g_ != w_) fail_msg("%s: %s: got %ld, want %ld", g_cell, (what), g_, w_);               \
    } while (0)

#define expect_status(h, got, want, what)                                                          \
    do {                                                                                           \
        int g_ = (got), w_ = (want);                                                               \
        if (g_ != w_)                                                                              \
            fail_msg("%s: %s: got %s (%s), want %s", g_cell, (what), lmtp_strerror(g_), lmtp_errmsg(h), \
                     lmtp_strerror(w_));                                                           \
    } while (0)

static fake_lmtp *breaking_fake(fx *x, int bdat, int reset, size_t k, unsigned long skip, unsigned long times) {
    fake_config c;
    fake_config_init(&c);
    c.rules = RULES4;
    c.extra_caps = bdat ? "CHUNKING" : NULL;
    c.fault_on = ".";
    c.fault_replies = (long)k;
    c.fault_action = reset ? FAKE_RESET : FAKE_CLOSE;
    c.fault_skip = skip;
    c.fault_times = times;
    return fx_fake(x, &c);
}

/* The per-recipient results of a message to n recipients that broke after k final replies. */
static void expect_results(lmtp_t *h, size_t n, size_t k) {
    size_t i;
    expect_int(lmtp_result_count(h), n, "result count");
    for (i = 0; i < n; i++) {
        char what[64];
        if (strcmp(lmtp_result_address(h, i), kRcpts[i]) != 0)
            fail_msg("%s: result %zu is %s", g_cell, i, lmtp_result_address(h, i));
        snprintf(what, sizeof what, "%s status", kRcpts[i]);
        expect_int(lmtp_result_status(h, i), i < k ? kVerdict[i] : LMTP_RESULT_UNKNOWN, what);
        snprintf(what, sizeof what, "%s code", kRcpts[i]);
        expect_int(lmtp_result_code(h, i), i < k ? kCode[i] : 0, what);
        snprintf(what, sizeof what, "%s stage", kRcpts[i]);
        expect_int(lmtp_result_stage(h, i), i < k ? LMTP_STAGE_DATA : LMTP_STAGE_NONE, what);
    }
}

static lmtp_t *with_recipients(fx *x, fake_lmtp *f, size_t n) {
    lmtp_t *h = fx_connect(x, f, NULL);
    size_t i;
    expect_status(h, lmtp_mail(h, "s@x", NULL), LMTP_OK, "MAIL");
    for (i = 0; i < n; i++) expect_status(h, lmtp_to(h, kRcpts[i], NULL), LMTP_OK, "RCPT");
    return h;
}

/* After the call that ended the message: the first recipient's reply is the last reply, and
   lmtp_response yields each further one, a missing one as the break. */
static void expect_step_replies(lmtp_t *h, int st, size_t n, size_t k) {
    size_t i;
    expect_status(h, st, k == n ? LMTP_OK : LMTP_ERR_CLOSED, "the call that ends the message");
    expect_int(lmtp_code(h), k >= 1 ? kCode[0] : 0, "lmtp_code: the first recipient's final reply");
    for (i = 1; i < n; i++) {
        char what[64];
        snprintf(what, sizeof what, "lmtp_response for %s", kRcpts[i]);
        st = lmtp_response(h);
        if (i < k) {
            expect_status(h, st, kCode[i] < 400 ? LMTP_OK : LMTP_ERR_REJECTED, what);
            expect_int(lmtp_code(h), kCode[i], what);
        } else {
            expect_status(h, st, LMTP_ERR_CLOSED, what);
            expect_int(lmtp_code(h), 0, what);
            if (!has(lmtp_errmsg(h), kRcpts[i])) fail_msg("%s: %s: '%s' does not name it", g_cell, what, lmtp_errmsg(h));
        }
    }
    expect_status(h, lmtp_response(h), k == n ? LMTP_ERR_BAD_SEQUENCE : LMTP_ERR_NOT_CONNECTED,
                  "lmtp_response after the last recipient");
    expect_results(h, n, k);
    if (k < n) expect_int(lmtp_is_connected(h), 0, "connected after the break");
}

static void step_api(fx *x, fake_lmtp *f, int bdat, size_t n, size_t k) {
    lmtp_t *h = with_recipients(x, f, n);
    int st;
    if (bdat) {
        st = lmtp_bdat(h, kMsg, strlen(kMsg), 1);
    } else {
        expect_status(h, lmtp_data_start(h), LMTP_OK, "DATA");
        expect_status(h, lmtp_data_write(h, kMsg, strlen(kMsg)), LMTP_OK, "data_write");
        st = lmtp_data_end(h);
    }
    expect_step_replies(h, st, n, k);
    fx_free(x, h);
    if (!bdat) {  /* the whole message in one call ends the same way */
        h = with_recipients(x, f, n);
        expect_step_replies(h, lmtp_data(h, kMsg, strlen(kMsg)), n, k);
        fx_free(x, h);
    }
}

static void deliver(fx *x, fake_lmtp *f, int bdat, size_t n, size_t k) {
    lmtp_t *h = fx_connect(x, f, NULL);
    lmtp_mail_options mo = LMTP_MAIL_OPTIONS_INIT;
    mo.transfer = bdat ? LMTP_TRANSFER_BDAT : LMTP_TRANSFER_DATA;
    expect_status(h, lmtp_deliver(h, "s@x", kRcpts, n, kMsg, strlen(kMsg), &mo, NULL),
                  k == n ? LMTP_OK : LMTP_ERR_CLOSED, "lmtp_deliver");
    expect_results(h, n, k);
    fx_free(x, h);
}

/* What the batch callback saw of each message. */
typedef struct seen {
    lmtp_t *h;
    int calls;
    int status[3];
    size_t count[3];
    int verdict[3][4];
    int code[3][4];
} seen;

static int record(void *user, size_t index, int status) {
    seen *s = user;
    size_t i;
    if (index >= 3) return 1;
    s->calls++;
    s->status[index] = status;
    s->count[index] = lmtp_result_count(s->h);
    for (i = 0; i < s->count[index] && i < 4; i++) {
        s->verdict[index][i] = lmtp_result_status(s->h, i);
        s->code[index][i] = lmtp_result_code(s->h, i);
    }
    return 0;
}

static void batch(fx *x, int bdat, int reset, size_t n, size_t k) {
    fake_lmtp *f = breaking_fake(x, bdat, reset, k, 1, 1); /* the second message's end */
    lmtp_t *h = fx_connect(x, f, NULL);
    lmtp_mail_options mo = LMTP_MAIL_OPTIONS_INIT;
    struct lmtp_message m[3];
    seen s;
    size_t j, i;
    mo.transfer = bdat ? LMTP_TRANSFER_BDAT : LMTP_TRANSFER_DATA;
    for (j = 0; j < 3; j++) {
        lmtp_message_init(&m[j]);
        m[j].from = "s@x";
        m[j].rcpts = kRcpts;
        m[j].nrcpts = n;
        m[j].data = kMsg;
        m[j].len = strlen(kMsg);
        m[j].mail = &mo;
    }
    memset(&s, 0, sizeof s);
    s.h = h;
    expect_status(h, lmtp_deliver_batch(h, m, 3, record, &s), LMTP_ERR_CLOSED, "lmtp_deliver_batch");
    expect_int(s.calls, 3, "callbacks");
    for (j = 0; j < 3; j++) {
        /* message 0: every verdict; 1: the k that came; 2: none (the connection was gone) */
        size_t answered = j == 0 ? n : j == 1 ? k : 0;
        char what[64];
        snprintf(what, sizeof what, "message %zu status", j);
        expect_int(s.status[j], answered == n ? LMTP_OK : LMTP_ERR_CLOSED, what);
        snprintf(what, sizeof what, "message %zu result count", j);
        expect_int(s.count[j], n, what);
        for (i = 0; i < n; i++) {
            snprintf(what, sizeof what, "message %zu %s status", j, kRcpts[i]);
            expect_int(s.verdict[j][i], i < answered ? kVerdict[i] : LMTP_RESULT_UNKNOWN, what);
            snprintf(what, sizeof what, "message %zu %s code", j, kRcpts[i]);
            expect_int(s.code[j][i], i < answered ? kCode[i] : 0, what);
        }
    }
    expect_int(fake_message_count(f), 2, "messages the server stored");
    fx_free(x, h);
    fx_stop(x, f);
}

static void matrix(void **state) {
    fx *x = *state;
    int bdat, reset;
    size_t n, k;
    int cells = 0;
    for (bdat = 0; bdat <= 1; bdat++) {
        for (reset = 0; reset <= 1; reset++) {
            for (k = 0; k <= 4; k++) {
                /* one server for the single messages of every n >= k: it breaks after k replies each time */
                fake_lmtp *f = breaking_fake(x, bdat, reset, k, 0, 0);
                for (n = k > 0 ? k : 1; n <= 4; n++) {
                    snprintf(g_cell, sizeof g_cell, "%s, %s after %zu of %zu final replies", bdat ? "BDAT" : "DATA",
                             reset ? "reset" : "close", k, n);
                    step_api(x, f, bdat, n, k);
                    deliver(x, f, bdat, n, k);
                    batch(x, bdat, reset, n, k);
                    cells++;
                }
                fx_stop(x, f);
            }
        }
    }
    print_message("%d cells, each: step API, lmtp_data, lmtp_deliver, lmtp_deliver_batch\n", cells);
    assert_int_equal(cells, 2 * 2 * (2 + 3 + 4 + 5));
}

/* A 421 among the final replies is that recipient's verdict (temporary); the others after it
   have none, and lmtp_response says so. */
static void a_421_among_the_final_replies(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    fake_config_init(&c);
    c.rules = "a@x=250,250;b@x=250,421:4.3.2 shutting down;c@x=250,250";
    f = fx_fake(x, &c);
    h = fx_connect(x, f, NULL);
    snprintf(g_cell, sizeof g_cell, "421 among the final replies");
    assert_ok(h, lmtp_mail(h, "s@x", NULL));
    assert_ok(h, lmtp_to(h, "a@x", NULL));
    assert_ok(h, lmtp_to(h, "b@x", NULL));
    assert_ok(h, lmtp_to(h, "c@x", NULL));
    assert_status(h, lmtp_data(h, kMsg, strlen(kMsg)), LMTP_ERR_CLOSED);
    assert_int_equal(lmtp_code(h), 250);
    assert_status(h, lmtp_response(h), LMTP_ERR_REJECTED);
    assert_int_equal(lmtp_code(h), 421);
    assert_status(h, lmtp_response(h), LMTP_ERR_CLOSED);
    assert_has(lmtp_errmsg(h), "<c@x>");
    assert_status(h, lmtp_response(h), LMTP_ERR_NOT_CONNECTED);
    assert_int_equal(lmtp_result_status(h, 0), LMTP_RESULT_OK);
    assert_int_equal(lmtp_result_status(h, 1), LMTP_RESULT_TEMPFAIL);
    assert_int_equal(lmtp_result_status(h, 2), LMTP_RESULT_UNKNOWN);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(matrix, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(a_421_among_the_final_replies, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
