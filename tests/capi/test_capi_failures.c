/*
 * test_capi_failures.c - deadlines and broken servers. Every wait has a deadline (rule 9 of lmtp.h);
 * after a timeout, an I/O error or a protocol error the connection is closed and the recipients still
 * without a verdict are LMTP_RESULT_UNKNOWN (rule 10); malformed replies are protocol errors with a
 * message that says why; the handle can connect again.
 */
#include "capi_test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define SHORT_TIMEOUT_MS 300
#define LHLO_LINE "LHLO " TEST_HELLO "\r\n"

static void short_options(lmtp_options *o) {
    test_options(o);
    o->timeout_ms = SHORT_TIMEOUT_MS;
}

/* The call took about one timeout: at least 250 ms, at most 2 s. */
#define assert_about_one_timeout(elapsed)                                                        \
    do {                                                                                         \
        long e_ = (elapsed);                                                                     \
        print_message("elapsed %ld ms (timeout %d ms)\n", e_, SHORT_TIMEOUT_MS);                 \
        assert_in_range(e_, 250, 2000);                                                          \
    } while (0)

/* ---- timeouts ------------------------------------------------------------------------------ */

static void banner_never_sent(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_options o;
    lmtp_t *h = NULL;
    long t0;
    int st;

    test_fake_config(&c);
    c.fault_on = "";
    c.fault_action = FAKE_HANG;
    f = fx_fake(x, &c);
    short_options(&o);
    t0 = now_ms();
    st = lmtp_new(&h, fake_host(f), fake_port(f), &o);
    fx_keep(x, h);
    assert_status(h, st, LMTP_ERR_TIMEOUT);
    assert_about_one_timeout(now_ms() - t0);
    assert_non_null(h);
    assert_int_equal(lmtp_errcode(h), LMTP_ERR_TIMEOUT);
    assert_has(lmtp_errmsg(h), "banner");
    assert_int_equal(lmtp_is_connected(h), 0);
    assert_int_equal(lmtp_code(h), 0);
    assert_string_equal(lmtp_banner(h), "");
    /* Nothing was sent: the client waited for the banner. */
    assert_true(fake_wait_idle(f, 1, 2000));
    assert_transcript(f, "");
}

/* The server takes the message and never answers. */
static void hang_at_final_dot(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_options o;
    lmtp_t *h;
    const char *rcpts[] = {"alice@x", "nosuch@x", "bob@x"};
    long t0;

    test_fake_config(&c);
    c.fault_on = ".";
    c.fault_action = FAKE_HANG;
    f = fx_fake(x, &c);
    short_options(&o);
    h = fx_connect(x, f, &o);
    t0 = now_ms();
    assert_status(h, lmtp_deliver(h, "s@x", rcpts, 3, "m\n", 2, NULL, NULL), LMTP_ERR_TIMEOUT);
    assert_about_one_timeout(now_ms() - t0);
    assert_int_equal(lmtp_errcode(h), LMTP_ERR_TIMEOUT);
    assert_true(strlen(lmtp_errmsg(h)) > 0);
    assert_int_equal(lmtp_is_connected(h), 0);
    assert_int_equal(lmtp_result_count(h), 3);
    assert_result(h, 0, "alice@x", LMTP_RESULT_UNKNOWN, LMTP_STAGE_NONE, 0, "", "", 250, "<alice@x> OK");
    assert_result(h, 1, "nosuch@x", LMTP_RESULT_PERMFAIL, LMTP_STAGE_RCPT, 550, "5.1.1", NULL, 550, NULL);
    assert_result(h, 2, "bob@x", LMTP_RESULT_UNKNOWN, LMTP_STAGE_NONE, 0, "", "", 250, "<bob@x> OK");
    assert_int_equal(fake_message_count(f), 1);
    assert_status(h, lmtp_noop(h), LMTP_ERR_NOT_CONNECTED);
}

/* The server answers for some recipients, then hangs. */
static void hang_after_some_final_replies(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_options o;
    lmtp_t *h;
    long t0;

    test_fake_config(&c);
    c.fault_on = ".";
    c.fault_reply = "250 2.0.0 <alice@x> Saved\r\n";
    c.fault_action = FAKE_HANG;
    f = fx_fake(x, &c);
    short_options(&o);
    h = fx_connect(x, f, &o);

    /* Step by step: data_end waits for every reply. */
    assert_ok(h, lmtp_mail(h, "s@x", NULL));
    assert_ok(h, lmtp_to(h, "alice@x", NULL));
    assert_ok(h, lmtp_to(h, "bob@x", NULL));
    assert_ok(h, lmtp_data_start(h));
    assert_ok(h, lmtp_data_write(h, "m\n", 2));
    t0 = now_ms();
    assert_status(h, lmtp_data_end(h), LMTP_ERR_TIMEOUT);
    assert_about_one_timeout(now_ms() - t0);
    assert_int_equal(lmtp_is_connected(h), 0);
    assert_result(h, 0, "alice@x", LMTP_RESULT_OK, LMTP_STAGE_DATA, 250, "2.0.0", "<alice@x> Saved", 250, NULL);
    assert_result(h, 1, "bob@x", LMTP_RESULT_UNKNOWN, LMTP_STAGE_NONE, 0, "", "", 250, NULL);
}

/* A reply that never ends: the whole reply has a deadline, not only each read. */
static void endless_multiline_reply(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_options o;
    lmtp_t *h;
    long t0;

    test_fake_config(&c);
    c.fault_on = "NOOP";
    c.fault_fill = "250-more\r\n";
    c.fault_repeat = -1;
    c.byte_delay_ms = 1; /* a steady trickle: every read gets something */
    f = fx_fake(x, &c);
    short_options(&o);
    h = fx_connect(x, f, &o);
    t0 = now_ms();
    assert_status(h, lmtp_noop(h), LMTP_ERR_TIMEOUT);
    assert_about_one_timeout(now_ms() - t0);
    assert_int_equal(lmtp_is_connected(h), 0);
}

/* The same where the final replies are due: the recipients stay without a verdict. */
static void endless_reply_after_the_message(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_options o;
    lmtp_t *h;
    const char *rcpts[] = {"alice@x", "bob@x"};
    long t0;

    test_fake_config(&c);
    c.fault_on = ".";
    c.fault_fill = "250-2.0.0 still saving\r\n";
    c.fault_repeat = -1;
    c.byte_delay_ms = 1;
    f = fx_fake(x, &c);
    short_options(&o);
    h = fx_connect(x, f, &o);
    t0 = now_ms();
    assert_status(h, lmtp_deliver(h, "s@x", rcpts, 2, "m\n", 2, NULL, NULL), LMTP_ERR_TIMEOUT);
    assert_about_one_timeout(now_ms() - t0);
    assert_int_equal(lmtp_is_connected(h), 0);
    assert_result(h, 0, "alice@x", LMTP_RESULT_UNKNOWN, LMTP_STAGE_NONE, 0, "", "", 250, NULL);
    assert_result(h, 1, "bob@x", LMTP_RESULT_UNKNOWN, LMTP_STAGE_NONE, 0, "", "", 250, NULL);
}

/* A single command that never gets its reply; lmtp_set_timeout sets the deadline. */
static void reply_never_comes(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    long t0;

    test_fake_config(&c);
    c.fault_on = "NOOP";
    c.fault_action = FAKE_HANG;
    c.fault_times = 1;
    f = fx_fake(x, &c);
    h = fx_connect(x, f, NULL);
    assert_int_equal(lmtp_timeout(h), TEST_TIMEOUT_MS);
    assert_ok(h, lmtp_set_timeout(h, SHORT_TIMEOUT_MS));
    assert_int_equal(lmtp_timeout(h), SHORT_TIMEOUT_MS);
    t0 = now_ms();
    assert_status(h, lmtp_noop(h), LMTP_ERR_TIMEOUT);
    assert_about_one_timeout(now_ms() - t0);
    assert_int_equal(lmtp_is_connected(h), 0);
    assert_int_equal(lmtp_code(h), 0);

    /* The handle connects again (the fault fired once) and works. */
    assert_ok(h, lmtp_connect(h, fake_host(f), fake_port(f)));
    assert_int_equal(lmtp_timeout(h), SHORT_TIMEOUT_MS);
    assert_ok(h, lmtp_noop(h));
    assert_int_equal(lmtp_code(h), 250);
}

/* The server stops reading while a big message is written: the write has a deadline too. */
typedef struct endless {
    size_t produced, limit;
} endless;

static long endless_read(void *user, void *buf, size_t cap) {
    endless *e = user;
    size_t n = cap, i;
    char *p = buf;
    if (e->produced >= e->limit) return 0;
    if (n > e->limit - e->produced) n = e->limit - e->produced;
    for (i = 0; i < n; i++) p[i] = (i % 64 == 63) ? '\n' : (char)('a' + (int)(i % 26));
    e->produced += n;
    return (long)n;
}

static void server_stops_reading(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_options o;
    lmtp_t *h;
    const char *rcpts[] = {"alice@x", "bob@x"};
    endless e;
    long t0, elapsed;

    test_fake_config(&c);
    c.fault_on = "DATA";
    c.fault_keep = 1; /* DATA gets its 354, then the server never reads again */
    c.fault_action = FAKE_STOP_READING;
    c.rcvbuf = 4096;
    f = fx_fake(x, &c);
    short_options(&o);
    h = fx_connect(x, f, &o);
    e.produced = 0;
    e.limit = (size_t)256 * 1024 * 1024; /* far more than any socket buffers */
    t0 = now_ms();
    assert_status(h, lmtp_deliver_stream(h, "s@x", rcpts, 2, endless_read, &e, NULL, NULL), LMTP_ERR_TIMEOUT);
    elapsed = now_ms() - t0;
    print_message("%lu bytes produced before the timeout, %ld ms\n", (unsigned long)e.produced, elapsed);
    assert_true(e.produced < e.limit);
    assert_in_range(elapsed, 250, 3000);
    assert_int_equal(lmtp_is_connected(h), 0);
    assert_int_equal(lmtp_result_status(h, 0), LMTP_RESULT_UNKNOWN);
    assert_int_equal(lmtp_result_status(h, 1), LMTP_RESULT_UNKNOWN);
    assert_int_equal(fake_message_count(f), 0);
}

/* ---- refused and dropped connections ---------------------------------------------------------- */

static void banner_refused(void **state) {
    fx *x = *state;
    static const struct {
        const char *greeting;
        int action;
        int code;
        const char *enhanced, *text;
    } cases[] = {
        {"421 4.3.2 go away\r\n", FAKE_CLOSE, 421, "4.3.2", "go away"},
        {"554 5.3.2 no service here\r\n", FAKE_HANG, 554, "5.3.2", "no service here"},
        {"554-first\r\n554 second\r\n", FAKE_CLOSE, 554, "", "first\nsecond"},
    };
    size_t k;

    for (k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        fake_config c;
        fake_lmtp *f;
        lmtp_options o;
        lmtp_t *h = NULL;
        int st;

        test_fake_config(&c);
        c.fault_on = "";
        c.fault_reply = cases[k].greeting;
        c.fault_action = cases[k].action;
        f = fx_fake(x, &c);
        short_options(&o);
        st = lmtp_new(&h, fake_host(f), fake_port(f), &o);
        fx_keep(x, h);
        assert_status(h, st, LMTP_ERR_REJECTED);
        assert_int_equal(lmtp_errcode(h), LMTP_ERR_REJECTED);
        assert_int_equal(lmtp_code(h), cases[k].code);
        assert_string_equal(lmtp_enhanced(h), cases[k].enhanced);
        assert_string_equal(lmtp_text(h), cases[k].text);
        assert_has(lmtp_errmsg(h), cases[k].code == 421 ? "421" : "554");
        assert_int_equal(lmtp_is_connected(h), 0);
        /* No LHLO after a refused banner. */
        assert_true(fake_wait_idle(f, 1, 2000));
        assert_false(contains(fake_transcript(f, NULL), transcript_len(f), "LHLO"));
        fx_free(x, h);
        fx_stop(x, f);
    }
}

static void lhlo_refused(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_options o;
    lmtp_t *h = NULL;
    int st;

    test_fake_config(&c);
    c.fault_on = "LHLO";
    c.fault_reply = "550 5.7.0 not you\r\n";
    f = fx_fake(x, &c);
    short_options(&o);
    st = lmtp_new(&h, fake_host(f), fake_port(f), &o);
    fx_keep(x, h);
    assert_status(h, st, LMTP_ERR_REJECTED);
    assert_int_equal(lmtp_code(h), 550);
    assert_string_equal(lmtp_text(h), "not you");
    assert_int_equal(lmtp_is_connected(h), 0);
}

/* The connection closes where DATA's reply was due. */
static void closed_at_data(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    const char *rcpts[] = {"alice@x", "nosuch@x", "bob@x"};

    test_fake_config(&c);
    c.fault_on = "DATA";
    c.fault_action = FAKE_CLOSE;
    f = fx_fake(x, &c);
    h = fx_connect(x, f, NULL);
    assert_status(h, lmtp_deliver(h, "s@x", rcpts, 3, "m\n", 2, NULL, NULL), LMTP_ERR_CLOSED);
    assert_int_equal(lmtp_errcode(h), LMTP_ERR_CLOSED);
    assert_has(lmtp_errmsg(h), "DATA");
    assert_int_equal(lmtp_is_connected(h), 0);
    assert_result(h, 0, "alice@x", LMTP_RESULT_UNKNOWN, LMTP_STAGE_NONE, 0, "", "", 250, "<alice@x> OK");
    assert_result(h, 1, "nosuch@x", LMTP_RESULT_PERMFAIL, LMTP_STAGE_RCPT, 550, "5.1.1",
                  "<nosuch@x> User doesn't exist", 550, NULL);
    assert_result(h, 2, "bob@x", LMTP_RESULT_UNKNOWN, LMTP_STAGE_NONE, 0, "", "", 250, "<bob@x> OK");
    assert_int_equal(fake_message_count(f), 0);
}

/* The connection closes after some of the per-recipient replies. */
static void closed_after_some_final_replies(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    const char *rcpts[] = {"alice@x", "temp@x", "bob@x", "carol@x"};

    test_fake_config(&c);
    c.fault_on = ".";
    c.fault_reply = "250 2.0.0 <alice@x> Saved\r\n452 4.2.2 <temp@x> later\r\n";
    c.fault_action = FAKE_CLOSE;
    f = fx_fake(x, &c);
    h = fx_connect(x, f, NULL);
    assert_status(h, lmtp_deliver(h, "s@x", rcpts, 4, "m\n", 2, NULL, NULL), LMTP_ERR_CLOSED);
    assert_int_equal(lmtp_is_connected(h), 0);
    assert_int_equal(lmtp_result_count(h), 4);
    assert_result(h, 0, "alice@x", LMTP_RESULT_OK, LMTP_STAGE_DATA, 250, "2.0.0", "<alice@x> Saved", 250, NULL);
    assert_result(h, 1, "temp@x", LMTP_RESULT_TEMPFAIL, LMTP_STAGE_DATA, 452, "4.2.2", "<temp@x> later", 250, NULL);
    assert_result(h, 2, "bob@x", LMTP_RESULT_UNKNOWN, LMTP_STAGE_NONE, 0, "", "", 250, "<bob@x> OK");
    assert_result(h, 3, "carol@x", LMTP_RESULT_UNKNOWN, LMTP_STAGE_NONE, 0, "", "", 250, "<carol@x> OK");

    /* The handle connects again and delivers. */
    assert_ok(h, lmtp_connect(h, fake_host(f), fake_port(f)));
    assert_ok(h, lmtp_noop(h));
    assert_int_equal(fake_connections(f), 2);
}

/* The server says 421 in the middle of the final replies and leaves. */
static void service_closing_among_final_replies(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    const char *rcpts[] = {"alice@x", "bob@x", "carol@x"};

    test_fake_config(&c);
    c.fault_on = ".";
    c.fault_reply = "250 2.0.0 <alice@x> Saved\r\n421 4.3.2 shutting down\r\n";
    c.fault_action = FAKE_CLOSE;
    f = fx_fake(x, &c);
    h = fx_connect(x, f, NULL);
    assert_status(h, lmtp_deliver(h, "s@x", rcpts, 3, "m\n", 2, NULL, NULL), LMTP_ERR_CLOSED);
    assert_int_equal(lmtp_is_connected(h), 0);
    assert_result(h, 0, "alice@x", LMTP_RESULT_OK, LMTP_STAGE_DATA, 250, "2.0.0", NULL, 250, NULL);
    assert_int_equal(lmtp_result_status(h, 2), LMTP_RESULT_UNKNOWN);
}

/* 421 in answer to a RCPT: the server is leaving; nobody accepted gets a guessed verdict. */
static void service_closing_at_rcpt(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    const char *rcpts[] = {"alice@x", "bob@x", "carol@x"};

    test_fake_config(&c);
    c.fault_on = "RCPT TO:<bob@x>";
    c.fault_reply = "421 4.3.2 shutting down\r\n";
    c.fault_action = FAKE_CLOSE;
    f = fx_fake(x, &c);
    h = fx_connect(x, f, NULL);
    assert_status(h, lmtp_deliver(h, "s@x", rcpts, 3, "m\n", 2, NULL, NULL), LMTP_ERR_CLOSED);
    print_message("errmsg: %s\n", lmtp_errmsg(h));
    assert_int_equal(lmtp_is_connected(h), 0);
    assert_result(h, 0, "alice@x", LMTP_RESULT_UNKNOWN, LMTP_STAGE_NONE, 0, "", "", 250, "<alice@x> OK");
    assert_int_equal(lmtp_result_rcpt_code(h, 1), 421);
    assert_result(h, 2, "carol@x", LMTP_RESULT_UNKNOWN, LMTP_STAGE_NONE, 0, "", "", 0, "");
    assert_int_equal(fake_message_count(f), 0);
}

/* The server closed the connection after a delivery, while the client was idle: the next delivery fails
   with CLOSED, and its results are its own recipients without a verdict (UNKNOWN), never the results
   of the delivery before. */
static void failed_deliver_leaves_no_stale_results(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    const char *first[] = {"alice@x"};
    const char *second[] = {"bob@x", "carol@x"};

    test_fake_config(&c);
    c.fault_on = ".";
    c.fault_keep = 1; /* normal final replies, then close */
    c.fault_action = FAKE_CLOSE;
    f = fx_fake(x, &c);
    h = fx_connect(x, f, NULL);
    assert_ok(h, lmtp_deliver(h, "s@x", first, 1, "m\n", 2, NULL, NULL));
    assert_int_equal(lmtp_result_status(h, 0), LMTP_RESULT_OK);
    sleep_ms(50); /* the client is idle while the server leaves (the fake then waits for our close) */

    assert_status(h, lmtp_deliver(h, "s@x", second, 2, "m\n", 2, NULL, NULL), LMTP_ERR_CLOSED);
    assert_int_equal(lmtp_is_connected(h), 0);
    print_message("results after the failed delivery: %lu, first \"%s\" status %d\n",
                  (unsigned long)lmtp_result_count(h), lmtp_result_address(h, 0), lmtp_result_status(h, 0));
    assert_int_equal(lmtp_result_count(h), 2);
    assert_result(h, 0, "bob@x", LMTP_RESULT_UNKNOWN, LMTP_STAGE_NONE, 0, "", "", 0, "");
    assert_result(h, 1, "carol@x", LMTP_RESULT_UNKNOWN, LMTP_STAGE_NONE, 0, "", "", 0, "");
}

/* lmtp_code: "or 0 when the last call got no reply". */
static void code_is_zero_after_a_call_without_reply(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    const char *rcpts[] = {"alice@x"};

    test_fake_config(&c);
    c.fault_on = ".";
    c.fault_keep = 1;
    c.fault_action = FAKE_CLOSE;
    f = fx_fake(x, &c);
    h = fx_connect(x, f, NULL);

    /* Refused before sending: no reply. */
    assert_ok(h, lmtp_noop(h));
    assert_int_equal(lmtp_code(h), 250);
    assert_status(h, lmtp_verify(h, "a\rb"), LMTP_ERR_BAD_INPUT);
    assert_int_equal(lmtp_code(h), 0);

    /* The connection closed under an idle client: the next call finds out, without a reply. */
    assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 1, "m\n", 2, NULL, NULL));
    assert_int_equal(lmtp_code(h) / 100, 2);
    sleep_ms(50); /* the client is idle while the server leaves (the fake then waits for our close) */
    assert_status(h, lmtp_noop(h), LMTP_ERR_CLOSED);
    assert_int_equal(lmtp_code(h), 0);
    assert_string_equal(lmtp_message(h), "");

    /* Not connected: no reply either. */
    assert_ok(h, lmtp_connect(h, fake_host(f), fake_port(f)));
    assert_ok(h, lmtp_noop(h));
    assert_int_equal(lmtp_code(h), 250);
    assert_ok(h, lmtp_close(h));
    assert_status(h, lmtp_noop(h), LMTP_ERR_NOT_CONNECTED);
    assert_int_equal(lmtp_code(h), 0);
    assert_string_equal(lmtp_message(h), "");
    assert_string_equal(lmtp_enhanced(h), "");
}

/* ---- malformed replies ---------------------------------------------------------------------------- */

/* NOOP answered with `reply`: a protocol error whose message contains `why`, the connection closed. */
static void garbage_case(fx *x, const char *reply, const char *why) {
    fake_config c;
    fake_lmtp *f;
    lmtp_options o;
    lmtp_t *h;

    print_message("reply to NOOP: %s", reply);
    test_fake_config(&c);
    c.fault_on = "NOOP";
    c.fault_reply = reply;
    c.fault_times = 1;
    f = fx_fake(x, &c);
    short_options(&o);
    h = fx_connect(x, f, &o);
    assert_status(h, lmtp_noop(h), LMTP_ERR_PROTOCOL);
    assert_int_equal(lmtp_errcode(h), LMTP_ERR_PROTOCOL);
    print_message("  errmsg: %s\n", lmtp_errmsg(h));
    assert_has(lmtp_errmsg(h), why);
    assert_int_equal(lmtp_is_connected(h), 0);
    assert_status(h, lmtp_noop(h), LMTP_ERR_NOT_CONNECTED);
    /* The handle can connect again. */
    assert_ok(h, lmtp_connect(h, fake_host(f), fake_port(f)));
    assert_ok(h, lmtp_noop(h));
    fx_free(x, h);
    fx_stop(x, f);
}

static void garbage_replies(void **state) {
    fx *x = *state;
    garbage_case(x, "hello\r\n", "hello");
    garbage_case(x, "25\r\n", "25");
    garbage_case(x, "2500 x\r\n", "2500");
    garbage_case(x, "999 x\r\n", "999");
    garbage_case(x, "150 x\r\n", "150");
    garbage_case(x, "260 x\r\n", "260");
    garbage_case(x, "250-first\r\n251 second\r\n", "251");
    garbage_case(x, "250x\r\n", "250x");
    garbage_case(x, "250 ok\n", "LF");
    garbage_case(x, "250 a\rb\r\n", "CR");
    /* An intermediate reply where none can come. */
    garbage_case(x, "354 go on\r\n", "354");
}

/* ---- a scripted raw server, for bytes fake_config cannot carry (NUL) -------------------------------- */

typedef struct raw_server {
    int lfd;
    unsigned port;
    pthread_t thread;
    const char *reply; /* sent after the command that follows LHLO */
    size_t reply_len;
    char got[4096]; /* what the client sent */
    size_t got_len;
} raw_server;

/* Reads until `lines` more LFs arrived (or EOF / 3 s). */
static int raw_read_lines(raw_server *s, int fd, int lines) {
    long deadline = now_ms() + 3000;
    while (lines > 0) {
        struct pollfd p;
        ssize_t n;
        size_t i, start = s->got_len;
        long left = deadline - now_ms();
        if (left <= 0) return -1;
        p.fd = fd;
        p.events = POLLIN;
        p.revents = 0;
        if (poll(&p, 1, (int)left) <= 0) return -1;
        if (s->got_len >= sizeof s->got) return -1;
        n = recv(fd, s->got + s->got_len, sizeof s->got - s->got_len, 0);
        if (n <= 0) return -1;
        s->got_len += (size_t)n;
        for (i = start; i < s->got_len; i++)
            if (s->got[i] == '\n') lines--;
    }
    return 0;
}

static void raw_send(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) return;
        p += w;
        n -= (size_t)w;
    }
}

static void *raw_serve(void *arg) {
    raw_server *s = arg;
    static const char banner[] = "220 raw.example ready\r\n";
    static const char lhlo[] = "250-raw.example\r\n250 PIPELINING\r\n";
    struct pollfd p;
    int fd;
    char sink[256];

    p.fd = s->lfd;
    p.events = POLLIN;
    p.revents = 0;
    if (poll(&p, 1, 3000) <= 0) return NULL;
    fd = accept(s->lfd, NULL, NULL);
    if (fd < 0) return NULL;
    raw_send(fd, banner, sizeof banner - 1);
    if (raw_read_lines(s, fd, 1) == 0) {
        raw_send(fd, lhlo, sizeof lhlo - 1);
        if (raw_read_lines(s, fd, 1) == 0) raw_send(fd, s->reply, s->reply_len);
    }
    /* Wait until the client closes (it must, after a protocol error). */
    p.fd = fd;
    p.events = POLLIN;
    while (poll(&p, 1, 3000) > 0 && recv(fd, sink, sizeof sink, 0) > 0) {
    }
    close(fd);
    return NULL;
}

static void raw_start(raw_server *s, const char *reply, size_t reply_len) {
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    memset(s, 0, sizeof *s);
    s->reply = reply;
    s->reply_len = reply_len;
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s->lfd >= 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(s->lfd, 1), 0);
    assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&a, &len), 0);
    s->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&s->thread, NULL, raw_serve, s), 0);
}

static void raw_stop(raw_server *s) {
    pthread_join(s->thread, NULL);
    close(s->lfd);
}

static void nul_byte_in_reply(void **state) {
    static const char reply[] = "250 a\0b\r\n";
    raw_server s;
    lmtp_options o;
    lmtp_t *h = NULL;
    int st, st2 = -1, connected = -1;
    char msg[512] = "";
    (void)state;

    raw_start(&s, reply, sizeof reply - 1);
    short_options(&o);
    st = lmtp_new(&h, "127.0.0.1", s.port, &o);
    if (st == LMTP_OK) {
        st2 = lmtp_noop(h);
        snprintf(msg, sizeof msg, "%s", lmtp_errmsg(h));
        connected = lmtp_is_connected(h);
    }
    lmtp_free(h);
    raw_stop(&s);
    assert_int_equal(st, LMTP_OK);
    assert_int_equal(st2, LMTP_ERR_PROTOCOL);
    print_message("errmsg: %s\n", msg);
    assert_has(msg, "NUL");
    assert_int_equal(connected, 0);
    assert_true(contains(s.got, s.got_len, "NOOP\r\n"));
}

/* ---- oversized replies ------------------------------------------------------------------------------- */

static void oversized_reply_line(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_options o;
    lmtp_t *h;
    long t0;

    test_fake_config(&c);
    c.fault_on = "NOOP";
    c.fault_reply = "250 ";
    c.fault_fill = "x";
    c.fault_repeat = 1L << 20;
    c.fault_tail = "\r\n";
    f = fx_fake(x, &c);
    short_options(&o);
    h = fx_connect(x, f, &o);
    t0 = now_ms();
    assert_status(h, lmtp_noop(h), LMTP_ERR_PROTOCOL);
    assert_true(now_ms() - t0 < 2000);
    print_message("errmsg: %s\n", lmtp_errmsg(h));
    assert_has(lmtp_errmsg(h), "8192");
    assert_int_equal(lmtp_is_connected(h), 0);
}

/* max_reply_line from lmtp_options: a line of exactly the limit (CRLF included) passes, one more fails. */
static void max_reply_line_option(void **state) {
    fx *x = *state;
    int k;
    for (k = 0; k < 2; k++) {
        fake_config c;
        fake_lmtp *f;
        lmtp_options o;
        lmtp_t *h;
        char reply[256];
        /* "250 " + n x's + CRLF = 100 (+k) octets */
        int n = 100 - 6 + k;
        snprintf(reply, sizeof reply, "250 %.*s\r\n", n,
                 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        assert_int_equal(strlen(reply), 100 + (size_t)k);
        test_fake_config(&c);
        c.fault_on = "NOOP";
        c.fault_reply = reply;
        f = fx_fake(x, &c);
        short_options(&o);
        o.max_reply_line = 100;
        h = fx_connect(x, f, &o);
        if (k == 0) {
            assert_ok(h, lmtp_noop(h));
            assert_int_equal(strlen(lmtp_message(h)), (size_t)n);
        } else {
            assert_status(h, lmtp_noop(h), LMTP_ERR_PROTOCOL);
            assert_has(lmtp_errmsg(h), "100");
            assert_int_equal(lmtp_is_connected(h), 0);
        }
        fx_free(x, h);
        fx_stop(x, f);
    }
}

/* A multi-line reply that never ends, sent as fast as possible: over max_reply_size. */
static void huge_multiline_reply(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_options o;
    lmtp_t *h;
    long t0;

    test_fake_config(&c);
    c.fault_on = "NOOP";
    c.fault_fill = "250-a line of a reply that goes on and on and on and on and on and on\r\n";
    c.fault_repeat = -1;
    f = fx_fake(x, &c);
    short_options(&o);
    h = fx_connect(x, f, &o);
    t0 = now_ms();
    assert_status(h, lmtp_noop(h), LMTP_ERR_PROTOCOL);
    assert_true(now_ms() - t0 < 2000);
    print_message("errmsg: %s\n", lmtp_errmsg(h));
    assert_has(lmtp_errmsg(h), "262144");
    assert_int_equal(lmtp_is_connected(h), 0);
}

/* max_reply_size from lmtp_options. */
static void max_reply_size_option(void **state) {
    fx *x = *state;
    int k;
    for (k = 0; k < 2; k++) {
        fake_config c;
        fake_lmtp *f;
        lmtp_options o;
        lmtp_t *h;
        test_fake_config(&c);
        c.fault_on = "NOOP";
        c.fault_fill = "250-0123456789012345678901234567890123456789012345678901234\r\n"; /* 61 octets */
        c.fault_repeat = k == 0 ? 14 : 17;                                                 /* 854 / 1037 */
        c.fault_tail = "250 end\r\n";
        f = fx_fake(x, &c);
        short_options(&o);
        o.max_reply_size = 1000;
        h = fx_connect(x, f, &o);
        if (k == 0) {
            assert_ok(h, lmtp_noop(h));
            assert_int_equal(lmtp_message_count(h), 15);
            assert_string_equal(lmtp_message_line(h, 14), "end");
        } else {
            assert_status(h, lmtp_noop(h), LMTP_ERR_PROTOCOL);
            assert_has(lmtp_errmsg(h), "1000");
            assert_int_equal(lmtp_is_connected(h), 0);
        }
        fx_free(x, h);
        fx_stop(x, f);
    }
}

/* ---- bare LF --------------------------------------------------------------------------------------- */

static void bare_lf_accepted_on_request(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_options o;
    lmtp_t *h = NULL;
    int st;
    const char *rcpts[] = {"alice@x"};

    test_fake_config(&c);
    c.greeting = "220 lf.example ready\n";
    c.fault_on = "NOOP";
    c.fault_reply = "250-first\n250 second\n";
    f = fx_fake(x, &c);

    /* Refused by default, already at the banner. */
    short_options(&o);
    st = lmtp_new(&h, fake_host(f), fake_port(f), &o);
    fx_keep(x, h);
    assert_status(h, st, LMTP_ERR_PROTOCOL);
    assert_has(lmtp_errmsg(h), "LF");
    assert_int_equal(lmtp_is_connected(h), 0);

    /* Accepted with LMTP_OPT_ACCEPT_BARE_LF. */
    short_options(&o);
    o.flags = LMTP_OPT_ACCEPT_BARE_LF;
    h = fx_connect(x, f, &o);
    assert_string_equal(lmtp_banner(h), "lf.example ready");
    assert_ok(h, lmtp_noop(h));
    assert_int_equal(lmtp_code(h), 250);
    assert_int_equal(lmtp_message_count(h), 2);
    assert_string_equal(lmtp_message_line(h, 0), "first");
    assert_string_equal(lmtp_message_line(h, 1), "second");
    /* CRLF replies still work with the flag. */
    assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 1, "m\n", 2, NULL, NULL));
    assert_int_equal(lmtp_result_status(h, 0), LMTP_RESULT_OK);
}

/* ---- replies that answer nothing ---------------------------------------------------------------------- */

static void extra_reply_after_final_replies(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    const char *rcpts[] = {"alice@x", "full@x"};

    test_fake_config(&c);
    c.fault_on = ".";
    c.fault_keep = 1;
    c.fault_reply = "250 2.0.0 one reply too many\r\n";
    f = fx_fake(x, &c);
    h = fx_connect(x, f, NULL);
    assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 2, "m\n", 2, NULL, NULL));
    assert_result(h, 0, "alice@x", LMTP_RESULT_OK, LMTP_STAGE_DATA, 250, NULL, "<alice@x> Saved", 250, NULL);
    assert_result(h, 1, "full@x", LMTP_RESULT_PERMFAIL, LMTP_STAGE_DATA, 552, NULL, NULL, 250, NULL);

    /* The next call finds the reply nobody asked for. */
    assert_status(h, lmtp_noop(h), LMTP_ERR_PROTOCOL);
    print_message("errmsg: %s\n", lmtp_errmsg(h));
    assert_has(lmtp_errmsg(h), "one reply too many");
    assert_int_equal(lmtp_is_connected(h), 0);
    /* The results of the delivery are still there. */
    assert_int_equal(lmtp_result_status(h, 0), LMTP_RESULT_OK);

    /* The same in steps: the extra reply fails the next command, never answers it. */
    assert_ok(h, lmtp_connect(h, fake_host(f), fake_port(f)));
    assert_ok(h, lmtp_mail(h, "s@x", NULL));
    assert_ok(h, lmtp_to(h, "alice@x", NULL));
    assert_ok(h, lmtp_data(h, "m\n", 2));
    assert_int_equal(lmtp_code(h), 250);
    assert_status(h, lmtp_mail(h, "s@x", NULL), LMTP_ERR_PROTOCOL);
    assert_int_equal(lmtp_is_connected(h), 0);
}

/* An unannounced 421 after the final replies: the server is leaving. */
static void unsolicited_421(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    const char *rcpts[] = {"alice@x"};

    test_fake_config(&c);
    c.fault_on = ".";
    c.fault_keep = 1;
    c.fault_reply = "421 4.3.2 shutting down\r\n";
    c.fault_action = FAKE_CLOSE;
    f = fx_fake(x, &c);
    h = fx_connect(x, f, NULL);
    assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 1, "m\n", 2, NULL, NULL));
    assert_int_equal(lmtp_result_status(h, 0), LMTP_RESULT_OK);
    sleep_ms(50); /* the client is idle while the server leaves (the fake then waits for our close) */
    assert_status(h, lmtp_noop(h), LMTP_ERR_CLOSED);
    assert_has(lmtp_errmsg(h), "421");
    assert_int_equal(lmtp_is_connected(h), 0);
}

/* DATA accepted (354) although no recipient was: a lone "." ends the data phase, then a protocol error. */
static void data_accepted_without_recipients(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    const char *rcpts[] = {"nosuch@x"};
    size_t mark;

    test_fake_config(&c);
    c.fault_on = "DATA";
    c.fault_reply = "354 go\r\n";
    f = fx_fake(x, &c);
    h = fx_connect(x, f, NULL);
    mark = transcript_len(f);
    assert_status(h, lmtp_deliver(h, "s@x", rcpts, 1, "secret\n", 7, NULL, NULL), LMTP_ERR_PROTOCOL);
    print_message("errmsg: %s\n", lmtp_errmsg(h));
    assert_has(lmtp_errmsg(h), "354");
    assert_int_equal(lmtp_is_connected(h), 0);
    assert_result(h, 0, "nosuch@x", LMTP_RESULT_PERMFAIL, LMTP_STAGE_RCPT, 550, "5.1.1", NULL, 550, NULL);
    assert_true(fake_wait_idle(f, 1, 2000));
    /* The message itself never went out: a lone "." (and QUIT, as the README says). */
    assert_transcript_from(f, mark, "MAIL FROM:<s@x>\r\nRCPT TO:<nosuch@x>\r\nDATA\r\n.\r\nQUIT\r\n");
    assert_int_equal(fake_message_count(f), 0);

    /* In steps. */
    assert_ok(h, lmtp_connect(h, fake_host(f), fake_port(f)));
    mark = transcript_len(f);
    assert_ok(h, lmtp_mail(h, "s@x", NULL));
    assert_status(h, lmtp_to(h, "nosuch@x", NULL), LMTP_ERR_REJECTED);
    assert_status(h, lmtp_data_start(h), LMTP_ERR_PROTOCOL);
    assert_int_equal(lmtp_is_connected(h), 0);
    assert_status(h, lmtp_data_write(h, "secret\n", 7), LMTP_ERR_NOT_CONNECTED);
    assert_true(fake_wait_idle(f, 2, 2000));
    assert_transcript_from(f, mark, "MAIL FROM:<s@x>\r\nRCPT TO:<nosuch@x>\r\nDATA\r\n.\r\nQUIT\r\n");
}

/* A reset connection: the session ends, nobody's fate is guessed. */
static void connection_reset_at_mail(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    const char *rcpts[] = {"alice@x", "bob@x"};
    int st;

    test_fake_config(&c);
    c.fault_on = "MAIL";
    c.fault_action = FAKE_RESET;
    f = fx_fake(x, &c);
    h = fx_connect(x, f, NULL);
    st = lmtp_deliver(h, "s@x", rcpts, 2, "m\n", 2, NULL, NULL);
    print_message("status %d (%s): %s\n", st, lmtp_strerror(st), lmtp_errmsg(h));
    assert_true(st == LMTP_ERR_CLOSED || st == LMTP_ERR_IO);
    assert_int_equal(lmtp_is_connected(h), 0);
    assert_int_equal(lmtp_result_count(h), 2);
    assert_int_equal(lmtp_result_status(h, 0), LMTP_RESULT_UNKNOWN);
    assert_int_equal(lmtp_result_status(h, 1), LMTP_RESULT_UNKNOWN);
    assert_int_equal(lmtp_result_rcpt_code(h, 0), 0);
    assert_string_equal(lmtp_result_rcpt_text(h, 0), "");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(banner_never_sent, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(hang_at_final_dot, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(hang_after_some_final_replies, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(endless_multiline_reply, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(endless_reply_after_the_message, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(reply_never_comes, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(server_stops_reading, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(banner_refused, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(lhlo_refused, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(closed_at_data, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(closed_after_some_final_replies, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(service_closing_among_final_replies, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(service_closing_at_rcpt, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(failed_deliver_leaves_no_stale_results, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(code_is_zero_after_a_call_without_reply, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(garbage_replies, fx_setup, fx_teardown),
        cmocka_unit_test(nul_byte_in_reply),
        cmocka_unit_test_setup_teardown(oversized_reply_line, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(max_reply_line_option, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(huge_multiline_reply, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(max_reply_size_option, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(bare_lf_accepted_on_request, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(extra_reply_after_final_replies, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(unsolicited_421, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(data_accepted_without_recipients, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(connection_reset_at_mail, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests_name("capi_failures", tests, NULL, NULL);
}
