/*
 * test_capi_robustness.c - a broken or hostile server, or a careless caller, never costs more than
 * a clear error. Every case asserts the status and a message that names the problem, that the call
 * came back within its deadline (elapsed time measured, with room for valgrind), and that the
 * session is then either closed (lmtp_is_connected 0, the next call says "not connected") or still
 * usable, never desynchronised (after a reconnect VRFY gets its own 252, not an older reply), and
 * that every recipient of a delivery has a result (UNKNOWN where the server never said).
 *
 * The connection faults run by DATA and by BDAT, and over implicit TLS; the whole fault table also
 * runs in a loop while the process's resident memory is watched. The program keeps the default
 * SIGPIPE disposition from start to end: a library that raised SIGPIPE would kill it (lmtp.h rule 9).
 *
 * Cases test_capi_failures.c and test_capi_api.c already cover are not repeated here (the table
 * names them where it leaves them out).
 */
#include "capi_tls.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

/* Deadline of the cases that wait, and the room an upper bound leaves (valgrind is ~20x slower). */
#define SHORT_TIMEOUT_MS 300u
#define SLACK_MS 1500L


/* ---- checks shared by every case ------------------------------------------------------------- */

static void assert_sigpipe_default(void) {
    struct sigaction sa;
    assert_int_equal(sigaction(SIGPIPE, NULL, &sa), 0);
    assert_true(sa.sa_handler == SIG_DFL);
}

/* The call took at most its deadline plus SLACK_MS, plus `work_ms` for the bytes it moved (the
   deadline is per reply and per write, not per call); with `timed_out`, at least the deadline. */
static void assert_elapsed_(long elapsed, unsigned timeout_ms, int timed_out, long work_ms, const char *file,
                            int line) {
    const long bound = (long)timeout_ms + SLACK_MS + work_ms;
    print_message("  elapsed %ld ms (timeout %u ms, bound %ld ms)\n", elapsed, timeout_ms, bound);
    if (elapsed < bound && (!timed_out || elapsed >= (long)timeout_ms - 5)) return;
    print_error("%s:%d: %ld ms for a call with a %u ms deadline%s\n", file, line, elapsed, timeout_ms,
                timed_out ? " that timed out" : "");
    _fail(file, line);
}
#define assert_elapsed(elapsed, timeout_ms, timed_out) \
    assert_elapsed_((elapsed), (timeout_ms), (timed_out), 0, __FILE__, __LINE__)

/* Time a message of n bytes may take to go through (dot-stuffing, TLS, the fake on the other end). */
static long work_ms(size_t n) { return (long)(n >> 20) * (test_under_valgrind() ? 2000 : 200); }

/* The call failed with `want`, and lmtp_errmsg contains one of the '|'-separated words of `why`. */
static void assert_failed_(lmtp_t *h, int got, int want, const char *why, const char *file, int line) {
    const char *msg = lmtp_errmsg(h);
    const char *w = why;
    assert_status_(h, got, want, "the call", file, line);
    assert_status_(h, lmtp_errcode(h), want, "lmtp_errcode", file, line);
    print_message("  errmsg: %s\n", msg);
    while (*w) {
        const char *bar = strchr(w, '|');
        size_t n = bar ? (size_t)(bar - w) : strlen(w);
        char word[64];
        if (n >= sizeof word) n = sizeof word - 1;
        memcpy(word, w, n);
        word[n] = '\0';
        if (has(msg, word)) return;
        w += n + (bar ? 1 : 0);
    }
    print_error("%s:%d: errmsg \"%s\" names none of \"%s\"\n", file, line, msg, why);
    _fail(file, line);
}
#define assert_failed(h, got, want, why) assert_failed_((h), (got), (want), (why), __FILE__, __LINE__)

/* Closed: not connected, and the next call says so. */
static void assert_closed_(lmtp_t *h, const char *file, int line) {
    if (lmtp_is_connected(h) != 0) {
        print_error("%s:%d: the handle is still connected\n", file, line);
        _fail(file, line);
    }
    assert_failed_(h, lmtp_noop(h), LMTP_ERR_NOT_CONNECTED, "not connected", file, line);
    assert_int_equal(lmtp_code(h), 0);
}
#define assert_closed(h) assert_closed_((h), __FILE__, __LINE__)

/* Usable and in step: VRFY gets its own reply (252, which no other command here gets). */
static void assert_in_step_(lmtp_t *h, const char *file, int line) {
    assert_status_(h, lmtp_verify(h, "alice@x"), LMTP_OK, "lmtp_verify", file, line);
    assert_int_equal(lmtp_code(h), 252);
}
#define assert_in_step(h) assert_in_step_((h), __FILE__, __LINE__)

/* The handle connects again to f and delivers to alice@x and bob@x. */
static void assert_reconnects_and_delivers(lmtp_t *h, fake_lmtp *f, int transfer) {
    const char *rcpts[] = {"alice@x", "bob@x"};
    lmtp_mail_options m;
    lmtp_mail_options_init(&m);
    m.transfer = transfer;
    assert_ok(h, lmtp_set_timeout(h, TEST_TIMEOUT_MS));
    assert_ok(h, lmtp_connect(h, fake_host(f), fake_port(f)));
    assert_in_step(h);
    assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 2, "again\n", 6, &m, NULL));
    assert_int_equal(lmtp_result_status(h, 0), LMTP_RESULT_OK);
    assert_int_equal(lmtp_result_status(h, 1), LMTP_RESULT_OK);
    assert_in_step(h);
}

/* A message of `limit` bytes made on the fly (copied from a pattern of 63 letters and a LF per
   line: cheap, so that the time a call takes is the library's, also under valgrind). */
typedef struct gen_source {
    size_t produced, limit;
} gen_source;

static char PATTERN[64 * 1024];

static long gen_read(void *user, void *buf, size_t cap) {
    gen_source *g = user;
    char *p = buf;
    size_t n = g->limit - g->produced, done = 0;
    if (n > cap) n = cap;
    if (PATTERN[0] == '\0') {
        size_t i;
        for (i = 0; i < sizeof PATTERN; i++) PATTERN[i] = (char)(i % 64 == 63 ? '\n' : 'a' + (int)(i % 26));
    }
    while (done < n) {
        size_t at = (g->produced + done) % sizeof PATTERN;
        size_t m = sizeof PATTERN - at;
        if (m > n - done) m = n - done;
        memcpy(p + done, PATTERN + at, m);
        done += m;
    }
    g->produced += n;
    return (long)n;
}

/* ---- SIGPIPE ------------------------------------------------------------------------------- */

/* First and last test: the disposition is the default one, and the library did not change it. */
static void sigpipe_is_default(void **state) {
    (void)state;
    assert_sigpipe_default();
}

/* ---- the banner, one byte at a time ------------------------------------------------------------- */

/* A byte every 20 ms: the 29-byte banner takes ~560 ms. Each read gets a byte long before the
   deadline; what counts is the whole reply. */
static void banner_byte_by_byte(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_options o;
    lmtp_t *h = NULL;
    long t0, elapsed;
    int st;

    test_fake_config(&c);
    c.byte_delay_ms = 20;
    f = fx_fake(x, &c);

    /* Within the deadline: connected, the banner whole. */
    test_options(&o);
    o.timeout_ms = 4000;
    o.flags = LMTP_OPT_NO_HELLO; /* the banner only: the LHLO reply would trickle in as slowly */
    t0 = now_ms();
    st = lmtp_new(&h, fake_host(f), fake_port(f), &o);
    elapsed = now_ms() - t0;
    fx_keep(x, h);
    assert_ok(h, st);
    assert_elapsed(elapsed, o.timeout_ms, 0);
    assert_true(elapsed >= 28 * 20 - 40);
    assert_string_equal(lmtp_banner(h), "fake.example LMTP ready");
    assert_int_equal(lmtp_is_connected(h), 1);
    fx_free(x, h);

    /* Longer than the deadline although no single read waits long: a timeout at the deadline. */
    test_options(&o);
    o.timeout_ms = SHORT_TIMEOUT_MS;
    h = NULL;
    t0 = now_ms();
    st = lmtp_new(&h, fake_host(f), fake_port(f), &o);
    elapsed = now_ms() - t0;
    fx_keep(x, h);
    assert_failed(h, st, LMTP_ERR_TIMEOUT, "banner");
    assert_elapsed(elapsed, o.timeout_ms, 1);
    assert_string_equal(lmtp_banner(h), "");
    assert_closed(h);
    /* Nothing was sent while the banner was incomplete. */
    assert_true(fake_wait_idle(f, 2, 3000));
    assert_transcript(f, "");
}

/* ---- a reply cut short -------------------------------------------------------------------------- */

/* NOOP answered by a reply without its CRLF: held open, a timeout; closed, a closed connection. */
static void reply_without_crlf(void **state) {
    fx *x = *state;
    static const struct {
        int action, status;
        const char *why;
    } cases[] = {
        {FAKE_HANG, LMTP_ERR_TIMEOUT, "timed out"},
        {FAKE_CLOSE, LMTP_ERR_CLOSED, "in the middle of"},
        {FAKE_RESET, LMTP_ERR_CLOSED, "reset"},
    };
    size_t k;

    for (k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        fake_config c;
        fake_lmtp *f;
        lmtp_options o;
        lmtp_t *h;
        long t0;
        int st;

        print_message("action %d\n", cases[k].action);
        test_fake_config(&c);
        c.fault_on = "NOOP";
        c.fault_reply = "250 2.0.0 this line never ends";
        c.fault_action = cases[k].action;
        c.fault_times = 1;
        f = fx_fake(x, &c);
        test_options(&o);
        o.timeout_ms = SHORT_TIMEOUT_MS;
        h = fx_connect(x, f, &o);
        t0 = now_ms();
        st = lmtp_noop(h);
        assert_elapsed(now_ms() - t0, o.timeout_ms, cases[k].status == LMTP_ERR_TIMEOUT);
        assert_failed(h, st, cases[k].status, cases[k].why);
        assert_has(lmtp_errmsg(h), "NOOP");
        assert_int_equal(lmtp_code(h), 0);
        assert_closed(h);
        assert_reconnects_and_delivers(h, f, LMTP_TRANSFER_DATA);
        fx_free(x, h);
        fx_stop(x, f);
    }
}

/* ---- the fault table: connections that break around the message ------------------------------- */

/* Where the fault is triggered. */
enum { ON_TRANSFER, ON_MESSAGE };

typedef struct fault_case {
    const char *name;
    int on;                   /* ON_TRANSFER: at DATA / the first BDAT; ON_MESSAGE: fault_on "." */
    unsigned long body_bytes; /* fault_body_bytes: in the middle of the message */
    const char *reply;
    int action;
    int keep;                 /* the command's own reply first */
    size_t body;              /* bytes of the message */
    /* expected */
    int status;               /* of lmtp_deliver_stream */
    const char *why;          /* words of which lmtp_errmsg names one */
    int alice, bob;           /* results of the two accepted recipients */
    int cut_short;            /* the message source was not read to its end */
    int extra;                /* the next call finds a reply too many */
    const char *by_data;      /* already covered by DATA in test_capi_failures.c: that test */
} fault_case;

#define SMALL_BODY ((size_t)1000)
#define BIG_BODY ((size_t)8 << 20)
#define MID_BODY ((unsigned long)1 << 20)
#define ENDLESS_BODY ((size_t)256 << 20)
#define SAVED_ALICE "250 2.0.0 <alice@x> Saved\r\n"
#define U LMTP_RESULT_UNKNOWN
#define OK LMTP_RESULT_OK

static const fault_case FAULTS[] = {
    {"closed before the message", ON_TRANSFER, 0, NULL, FAKE_CLOSE, 0, SMALL_BODY,
     LMTP_ERR_CLOSED, "closed", U, U, 0, 0, "closed_at_data"},
    {"reset before the message", ON_TRANSFER, 0, NULL, FAKE_RESET, 0, SMALL_BODY,
     LMTP_ERR_CLOSED, "reset", U, U, 0, 0, NULL},
    {"closed during the message", ON_MESSAGE, MID_BODY, NULL, FAKE_CLOSE, 0, BIG_BODY,
     LMTP_ERR_CLOSED, "closed", U, U, 0, 0, NULL},
    {"reset during the message", ON_MESSAGE, MID_BODY, NULL, FAKE_RESET, 0, BIG_BODY,
     LMTP_ERR_CLOSED, "reset|closed", U, U, 1, 0, NULL},
    {"closed at the end of the message", ON_MESSAGE, 0, NULL, FAKE_CLOSE, 0, SMALL_BODY,
     LMTP_ERR_CLOSED, "closed", U, U, 0, 0, NULL},
    {"reset at the end of the message", ON_MESSAGE, 0, NULL, FAKE_RESET, 0, SMALL_BODY,
     LMTP_ERR_CLOSED, "reset", U, U, 0, 0, NULL},
    {"closed after one final reply", ON_MESSAGE, 0, SAVED_ALICE, FAKE_CLOSE, 0, SMALL_BODY,
     LMTP_ERR_CLOSED, "closed", OK, U, 0, 0, "closed_after_some_final_replies"},
    {"reset after one final reply", ON_MESSAGE, 0, SAVED_ALICE, FAKE_RESET, 0, SMALL_BODY,
     LMTP_ERR_CLOSED, "reset", OK, U, 0, 0, NULL},
    {"quiet after one final reply", ON_MESSAGE, 0, SAVED_ALICE, FAKE_HANG, 0, SMALL_BODY,
     LMTP_ERR_TIMEOUT, "timed out", OK, U, 0, 0, "hang_after_some_final_replies"},
    {"a final reply too many", ON_MESSAGE, 0, "250 2.0.0 one reply too many\r\n", FAKE_CONTINUE, 1, SMALL_BODY,
     LMTP_OK, "", OK, OK, 0, 1, "extra_reply_after_final_replies"},
    {"stops reading the message", ON_TRANSFER, 0, NULL, FAKE_STOP_READING, 1, ENDLESS_BODY,
     LMTP_ERR_TIMEOUT, "stopped reading", U, U, 1, 0, NULL},
};
#define NFAULTS (sizeof FAULTS / sizeof FAULTS[0])

/* One fault: a fresh fake, a delivery to alice@x (accepted), nosuch@x (refused at RCPT) and bob@x
   (accepted) by `transfer`, the checks, then a reconnect that delivers. */
static void run_fault(fx *x, const fault_case *k, int transfer, int tls, unsigned timeout_ms) {
    const char *rcpts[] = {"alice@x", "nosuch@x", "bob@x"};
    int want[3];
    fake_config c;
    fake_lmtp *f;
    lmtp_options o;
    lmtp_mail_options m;
    lmtp_t *h;
    gen_source g;
    long t0, elapsed;
    size_t i;
    int rcpt_seen;
    int st;

    want[0] = k->alice;
    want[1] = LMTP_RESULT_PERMFAIL;
    want[2] = k->bob;
    print_message("%s, by %s%s\n", k->name, transfer == LMTP_TRANSFER_BDAT ? "BDAT" : "DATA",
                  tls ? ", over TLS" : "");
    if (tls)
        tls_fake_config(&c, "server");
    else
        test_fake_config(&c);
    c.tls_implicit = tls;
    c.extra_caps = transfer == LMTP_TRANSFER_BDAT ? "CHUNKING" : NULL;
    c.fault_on = k->on == ON_MESSAGE ? "." : transfer == LMTP_TRANSFER_BDAT ? "BDAT" : "DATA";
    c.fault_body_bytes = k->body_bytes;
    c.fault_reply = k->reply;
    c.fault_action = k->action;
    c.fault_keep = k->keep;
    c.fault_times = 1;
    c.record_limit = 65536;
    /* A small window: with the big messages the client is still writing when the fault fires (BDAT:
       the first chunk must get through before the server stops reading). */
    c.rcvbuf = k->action == FAKE_STOP_READING && transfer == LMTP_TRANSFER_DATA ? 4096 : 65536;
    f = fx_fake(x, &c);

    if (tls) {
        tls_client_options(&o);
        o.flags |= LMTP_OPT_IMPLICIT_TLS;
    } else {
        test_options(&o);
    }
    /* Chunks bigger than the socket buffers: a BDAT write blocks like a DATA body. */
    if (k->action == FAKE_STOP_READING) o.bdat_chunk_size = (size_t)4 << 20;
    h = fx_connect(x, f, &o); /* with the default timeout: the connection is not what is tested */
    assert_int_equal(lmtp_tls_active(h), tls);
    assert_ok(h, lmtp_set_timeout(h, timeout_ms));
    lmtp_mail_options_init(&m);
    m.transfer = transfer;
    g.produced = 0;
    g.limit = k->body;

    t0 = now_ms();
    st = lmtp_deliver_stream(h, "s@x", rcpts, 3, gen_read, &g, &m, NULL);
    elapsed = now_ms() - t0;
    print_message("  %lu of %lu message bytes read\n", (unsigned long)g.produced, (unsigned long)g.limit);
    assert_elapsed_(elapsed, timeout_ms, k->status == LMTP_ERR_TIMEOUT, work_ms(g.produced), __FILE__, __LINE__);
    if (k->status == LMTP_OK)
        assert_ok(h, st);
    else
        assert_failed(h, st, k->status, k->why);
    assert_sigpipe_default();
    if (k->cut_short) assert_true(g.produced < g.limit);

    /* Every recipient has a result; the verdicts that came are kept. */
    assert_int_equal(lmtp_result_count(h), 3);
    /* A server that stops reading may also be too slow to have answered RCPT when the write gives
       up: then nosuch@x is rightly UNKNOWN too. */
    if (k->action == FAKE_STOP_READING && lmtp_result_status(h, 1) == U) want[1] = U;
    for (i = 0; i < 3; i++) {
        assert_string_equal(lmtp_result_address(h, i), rcpts[i]);
        assert_int_equal(lmtp_result_status(h, i), want[i]);
    }
    if (want[1] != U)
        assert_result(h, 1, "nosuch@x", LMTP_RESULT_PERMFAIL, LMTP_STAGE_RCPT, 550, "5.1.1", NULL, 550, NULL);
    /* The same server may not even have answered the RCPTs before the client's write gave up (seen
       under valgrind, over TLS): then no RCPT reply is known. */
    rcpt_seen = !(k->action == FAKE_STOP_READING && lmtp_result_rcpt_code(h, 0) == 0);
    if (k->alice == LMTP_RESULT_OK)
        assert_result(h, 0, "alice@x", OK, LMTP_STAGE_DATA, 250, "2.0.0", "<alice@x> Saved", 250, NULL);
    else
        assert_result(h, 0, "alice@x", U, LMTP_STAGE_NONE, 0, "", "", rcpt_seen ? 250 : 0,
                      rcpt_seen ? "<alice@x> OK" : "");
    if (k->bob == LMTP_RESULT_UNKNOWN && (rcpt_seen || lmtp_result_rcpt_code(h, 2) != 0))
        assert_result(h, 2, "bob@x", U, LMTP_STAGE_NONE, 0, "", "", 250, NULL);
    if (!rcpt_seen) {
        assert_int_equal(lmtp_result_status(h, 1), U); /* nosuch@x's came after alice's: not seen either */
        assert_int_equal(lmtp_result_rcpt_code(h, 2), 0);
    }

    if (k->extra) {
        /* The reply nobody asked for fails the next command; it never answers it. */
        assert_int_equal(lmtp_is_connected(h), 1);
        assert_failed(h, lmtp_noop(h), LMTP_ERR_PROTOCOL, "one reply too many");
    }
    assert_closed(h);
    assert_reconnects_and_delivers(h, f, transfer);
    fx_free(x, h);
    fx_stop(x, f);
    print_message("  done in %ld ms\n", now_ms() - t0);
}

/* Every fault of the table by one transfer; by DATA, the ones test_capi_failures.c covers are left
   to it. */
static void run_table(fx *x, int transfer, int tls, int all) {
    size_t i;
    for (i = 0; i < NFAULTS; i++) {
        if (!all && transfer == LMTP_TRANSFER_DATA && !tls && FAULTS[i].by_data) {
            print_message("%s, by DATA: see test_capi_failures.c %s\n", FAULTS[i].name, FAULTS[i].by_data);
            continue;
        }
        run_fault(x, &FAULTS[i], transfer, tls, SHORT_TIMEOUT_MS);
    }
}

static void faults_by_data(void **state) { run_table(*state, LMTP_TRANSFER_DATA, 0, 0); }

static void faults_by_bdat(void **state) { run_table(*state, LMTP_TRANSFER_BDAT, 0, 0); }

/* Over TLS the closed connection is under a TLS record layer: a write to it must not raise SIGPIPE
   either. */
static void faults_over_tls(void **state) {
    fx *x = *state;
    size_t i;
    for (i = 0; i < NFAULTS; i++) {
        if (FAULTS[i].body_bytes == 0 && FAULTS[i].action != FAKE_STOP_READING) continue;
        run_fault(x, &FAULTS[i], LMTP_TRANSFER_DATA, 1, SHORT_TIMEOUT_MS);
        run_fault(x, &FAULTS[i], LMTP_TRANSFER_BDAT, 1, SHORT_TIMEOUT_MS);
    }
}

/* ---- the caller: what test_capi_api.c leaves out ---------------------------------------------------- */

/* A recorded source: how many times it was read. */
static long counting_read(void *user, void *buf, size_t cap) {
    int *calls = user;
    (void)buf;
    (void)cap;
    ++*calls;
    return 0;
}

/* lmtp_deliver_stream checks every line before it sends any, and never reads the message. */
static void stream_delivery_refuses_bad_input(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    static const char *const bad[] = {"a\rb", "a\nb", "x@y\r\nRSET"};
    char *long_rcpt;
    size_t k, mark;
    int calls = 0;

    test_fake_config(&c);
    c.extra_caps = "DSN\nCHECKPOINT\nXKEY";
    f = fx_fake(x, &c);
    h = fx_connect(x, f, NULL);
    long_rcpt = fx_alloc(x, 600);
    memset(long_rcpt, 'r', 599);
    long_rcpt[599] = '\0';
    mark = transcript_len(f);

    for (k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        const char *rcpts[] = {"alice@x", bad[k]};
        const char *good[] = {"alice@x"};
        char extra[64];
        lmtp_mail_options m;
        lmtp_rcpt_options r;
        int field;

        assert_failed(h, lmtp_deliver_stream(h, bad[k], good, 1, counting_read, &calls, NULL, NULL),
                      LMTP_ERR_BAD_INPUT, "CR|LF");
        assert_failed(h, lmtp_deliver_stream(h, "s@x", rcpts, 2, counting_read, &calls, NULL, NULL),
                      LMTP_ERR_BAD_INPUT, "CR|LF");
        snprintf(extra, sizeof extra, "XKEY=%s", bad[k]);
        for (field = 0; field < 3; field++) {
            lmtp_mail_options_init(&m);
            if (field == 0) m.envid = bad[k];
            if (field == 1) m.transid = bad[k];
            if (field == 2) m.extra = extra;
            assert_status(h, lmtp_deliver_stream(h, "s@x", good, 1, counting_read, &calls, &m, NULL),
                          LMTP_ERR_BAD_INPUT);
            lmtp_rcpt_options_init(&r);
            if (field == 0) r.orcpt = bad[k];
            if (field == 1) {
                r.orcpt = "o@x";
                r.orcpt_type = bad[k];
            }
            if (field == 2) r.extra = extra;
            assert_status(h, lmtp_deliver_stream(h, "s@x", good, 1, counting_read, &calls, NULL, &r),
                          LMTP_ERR_BAD_INPUT);
        }
    }
    {
        const char *rcpts[] = {"alice@x", long_rcpt};
        assert_failed(h, lmtp_deliver_stream(h, "s@x", rcpts, 2, counting_read, &calls, NULL, NULL),
                      LMTP_ERR_LINE_TOO_LONG, "512");
    }
    assert_int_equal(calls, 0);
    assert_int_equal(lmtp_is_connected(h), 1);
    assert_int_equal(transcript_len(f), mark);
    assert_in_step(h);
    assert_reconnects_and_delivers(h, f, LMTP_TRANSFER_DATA);
}

/* A NUL ends a C string: nothing after it is read, so nothing after it can reach the wire. */
static void nul_ends_every_string(void **state) {
    fx *x = *state;
    fake_lmtp *f = x->fake[0];
    lmtp_t *h = x->h[0];
    static const char from[] = "s@x\0>\r\nRSET";
    static const char rcpt[] = "alice@x\0\r\nDATA";
    static const char line[] = "NOOP\0\r\nQUIT";
    const char *rcpts[] = {rcpt};
    size_t mark = transcript_len(f);

    assert_ok(h, lmtp_mail(h, from, NULL));
    assert_ok(h, lmtp_to(h, rcpt, NULL));
    assert_ok(h, lmtp_reset(h));
    assert_ok(h, lmtp_command(h, line));
    assert_ok(h, lmtp_response(h));
    assert_ok(h, lmtp_deliver(h, from, rcpts, 1, "m\n", 2, NULL, NULL));
    assert_transcript_from(f, mark,
                           "MAIL FROM:<s@x>\r\nRCPT TO:<alice@x>\r\nRSET\r\nNOOP\r\n"
                           "MAIL FROM:<s@x>\r\nRCPT TO:<alice@x>\r\nDATA\r\nm\r\n.\r\n");
    assert_in_step(h);
}

/* AUTH credentials in lmtp_options are checked before connecting, like the Hello name: a bad one
   fails lmtp_new before a byte (or a connection) is made. */
static void bad_auth_options_send_nothing(void **state) {
    fx *x = *state;
    static const struct {
        const char *user, *password, *mechanism;
    } cases[] = {
        {"us\r\ner", "pw", NULL},
        {"user", "p\nw", NULL},
        {"user\r\nMAIL FROM:<evil@x>", "pw", "PLAIN"},
        {"user", "pw", "PLAIN\r\nRSET"},
    };
    fake_config c;
    fake_lmtp *f;
    size_t k;

    test_fake_config(&c);
    c.family = AF_UNIX; /* PLAIN is allowed there: only the input check can refuse */
    c.auth_mechanisms = "PLAIN";
    c.auth_user = "user";
    c.auth_password = "pw";
    f = fx_fake(x, &c);
    for (k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        lmtp_options o;
        lmtp_t *h = NULL;
        int st;

        test_options(&o);
        o.auth_user = cases[k].user;
        o.auth_password = cases[k].password;
        o.auth_mechanism = cases[k].mechanism;
        st = lmtp_new(&h, fake_host(f), fake_port(f), &o);
        fx_keep(x, h);
        assert_failed(h, st, LMTP_ERR_BAD_INPUT, "CR|LF");
        assert_closed(h);
        fx_free(x, h);
    }
    assert_int_equal(fake_connections(f), 0);
    assert_transcript(f, "");
    assert_int_equal(fake_auth_failures(f), 0);

    /* The same handle options with good credentials work. */
    {
        lmtp_options o;
        lmtp_t *h;
        test_options(&o);
        o.auth_user = "user";
        o.auth_password = "pw";
        h = fx_connect(x, f, &o);
        assert_int_equal(fake_auth_successes(f), 1);
        assert_in_step(h);
    }
}

/* ---- no memory growth ------------------------------------------------------------------------------- */

/* A VmRSS: or VmHWM: line of /proc/self/status, in KiB (0 if unreadable). */
static long status_kib(const char *key) {
    FILE *fp = fopen("/proc/self/status", "r");
    char line[256];
    long v = 0;
    size_t n = strlen(key);
    if (!fp) return 0;
    while (fgets(line, sizeof line, fp))
        if (strncmp(line, key, n) == 0) {
            v = strtol(line + n, NULL, 10);
            break;
        }
    fclose(fp);
    return v;
}

/* The resident size once it settles: the least of ten samples 50 ms apart. The fake server's
   threads may still hold a large message's buffers for a moment after a round (seen under load:
   28 MiB more in one sample); memory kept for good is in every sample. */
static long settled_rss_kib(void) {
    long least = status_kib("VmRSS:");
    int i;
    for (i = 0; i < 9; i++) {
        long v;
        sleep_ms(50);
        v = status_kib("VmRSS:");
        if (v > 0 && v < least) least = v;
    }
    return least;
}

/* Every fault of the table by DATA and BDAT, with and without TLS, once (the warm-up), then
   more rounds: the resident size may not grow by more than a small bound. Valgrind and ASan run it
   for their leak checks (valgrind with one round); their RSS says nothing about ours. */
static void run_everything(fx *x, unsigned timeout_ms) {
    size_t i;
    for (i = 0; i < NFAULTS; i++) {
        int tls;
        for (tls = 0; tls < 2; tls++) {
            run_fault(x, &FAULTS[i], LMTP_TRANSFER_DATA, tls, timeout_ms);
            run_fault(x, &FAULTS[i], LMTP_TRANSFER_BDAT, tls, timeout_ms);
        }
    }
}

static void no_memory_growth(void **state) {
    fx *x = *state;
    const int valgrind = test_under_valgrind();
#if defined(__SANITIZE_ADDRESS__)
    const int sanitized = 1; /* ASan keeps freed memory in quarantine: its RSS says nothing either */
#else
    const int sanitized = 0;
#endif
    const int rounds = valgrind ? 1 : sanitized ? 3 : 12;
    const unsigned timeout_ms = valgrind ? SHORT_TIMEOUT_MS : 100;
    const long bound_kib = 4096;
    long rss0, rss1, hwm0, hwm1, t0;
    int r;

    run_everything(x, timeout_ms); /* warm-up: allocator arenas, OpenSSL tables, thread stacks */
    rss0 = settled_rss_kib();
    hwm0 = status_kib("VmHWM:");
    t0 = now_ms();
    for (r = 0; r < rounds; r++) run_everything(x, timeout_ms);
    rss1 = settled_rss_kib();
    hwm1 = status_kib("VmHWM:");
    print_message("%d rounds of %lu faults in %ld ms: VmRSS %ld -> %ld KiB, VmHWM %ld -> %ld KiB\n", rounds,
                  (unsigned long)(NFAULTS * 4), now_ms() - t0, rss0, rss1, hwm0, hwm1);
    fprintf(stderr, "no_memory_growth: %d rounds, VmRSS %ld -> %ld KiB (%+ld), VmHWM %ld -> %ld KiB (%+ld)\n",
            rounds, rss0, rss1, rss1 - rss0, hwm0, hwm1, hwm1 - hwm0);
    assert_true(rss0 > 0);
    if (!valgrind && !sanitized) {
        assert_true(rss1 - rss0 < bound_kib);
        assert_true(hwm1 - hwm0 < bound_kib);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sigpipe_is_default),
        cmocka_unit_test_setup_teardown(banner_byte_by_byte, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(reply_without_crlf, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(faults_by_data, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(faults_by_bdat, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(faults_over_tls, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(stream_delivery_refuses_bad_input, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(nul_ends_every_string, fx_setup_default, fx_teardown),
        cmocka_unit_test_setup_teardown(bad_auth_options_send_nothing, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(no_memory_growth, fx_setup, fx_teardown),
        cmocka_unit_test(sigpipe_is_default),
    };
    /* Never ignore SIGPIPE here: the library must not raise it, and this program would die if it did. */
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) != 0 || sa.sa_handler != SIG_DFL) {
        fprintf(stderr, "test_capi_robustness: SIGPIPE must have its default disposition\n");
        return 1;
    }
    /* ROBUSTNESS_FILTER=pattern runs only the matching tests (cmocka_set_test_filter). */
    if (getenv("ROBUSTNESS_FILTER")) cmocka_set_test_filter(getenv("ROBUSTNESS_FILTER"));
    return cmocka_run_group_tests_name("capi_robustness", tests, certs_group_setup, certs_group_teardown);
}
