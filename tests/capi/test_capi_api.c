/*
 * test_capi_api.c - the rules at the top of lmtp.h: nothing a caller passes can add a line to the
 * protocol (CR, LF, NUL and control characters are refused and nothing is sent); command line limits;
 * NULL handles and NULL strings; lmtp_strerror; the version; option structs versioned by their size;
 * the last error and its reset; the trace callback; lmtp_close and lmtp_free.
 */
#include "capi_test.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#define LHLO_LINE "LHLO " TEST_HELLO "\r\n"

/* A server that advertises every extension a parameter may need, so that only the input check
   can refuse. */
static fake_lmtp *permissive_fake(fx *x) {
    fake_config c;
    test_fake_config(&c);
    c.size = 1000000;
    c.extra_caps = "DSN\nSMTPUTF8\nCHECKPOINT\nXKEY\nXFLAG";
    return fx_fake(x, &c);
}

/* Nothing was sent since `mark`: one NOOP round trip, then the transcript grew by "NOOP\r\n" only. */
static void assert_nothing_sent_(lmtp_t *h, fake_lmtp *f, size_t mark, const char *file, int line) {
    int st = lmtp_noop(h);
    assert_status_(h, st, LMTP_OK, "lmtp_noop (after a refused call)", file, line);
    assert_transcript_from_(f, mark, "NOOP\r\n", file, line);
}
#define assert_nothing_sent(h, f, mark) assert_nothing_sent_((h), (f), (mark), __FILE__, __LINE__)

/* ---- injection ------------------------------------------------------------------------------- */

/* Strings that must never reach the wire. */
static const char *const bad_strings[] = {
    "a\rb",          "a\nb",         "x@y\r\nRSET",   "x@y\nDATA",      "\r\n",   "a\x01z",
    "a\x1b[31mz",    "a\x7fz",       "tab\there",     "x@y\r",          "\nx@y",  "a\x1f",
};
#define NBAD (sizeof bad_strings / sizeof bad_strings[0])

static void injection_is_refused_and_nothing_is_sent(void **state) {
    fx *x = *state;
    fake_lmtp *f = permissive_fake(x);
    lmtp_t *h = fx_connect(x, f, NULL);
    size_t k, mark;

    for (k = 0; k < NBAD; k++) {
        const char *bad = bad_strings[k];
        const char *good_rcpts[] = {"alice@x", "bob@x"};
        const char *bad_rcpts[3];
        lmtp_mail_options m;
        lmtp_rcpt_options r;
        char line[64];

        print_message("bad string %lu\n", (unsigned long)k);
        bad_rcpts[0] = "alice@x";
        bad_rcpts[1] = bad;
        bad_rcpts[2] = "bob@x";
        mark = transcript_len(f);

        /* Outside a transaction. */
        assert_status(h, lmtp_mail(h, bad, NULL), LMTP_ERR_BAD_INPUT);
        assert_int_equal(lmtp_errcode(h), LMTP_ERR_BAD_INPUT);
        assert_true(strlen(lmtp_errmsg(h)) > 0);
        assert_status(h, lmtp_send(h, bad), LMTP_ERR_BAD_INPUT);
        assert_status(h, lmtp_send_or_mail(h, bad), LMTP_ERR_BAD_INPUT);
        assert_status(h, lmtp_send_and_mail(h, bad), LMTP_ERR_BAD_INPUT);
        assert_status(h, lmtp_hello(h, bad), LMTP_ERR_BAD_INPUT);
        assert_status(h, lmtp_verify(h, bad), LMTP_ERR_BAD_INPUT);
        assert_status(h, lmtp_expand(h, bad), LMTP_ERR_BAD_INPUT);
        assert_status(h, lmtp_help(h, bad), LMTP_ERR_BAD_INPUT);
        assert_status(h, lmtp_etrn(h, bad), LMTP_ERR_BAD_INPUT);
        assert_status(h, lmtp_command(h, bad), LMTP_ERR_BAD_INPUT);
        snprintf(line, sizeof line, "NOOP %s", bad);
        assert_status(h, lmtp_command(h, line), LMTP_ERR_BAD_INPUT);

        lmtp_mail_options_init(&m);
        m.envid = bad;
        assert_status(h, lmtp_mail(h, "s@x", &m), LMTP_ERR_BAD_INPUT);
        lmtp_mail_options_init(&m);
        m.transid = bad;
        assert_status(h, lmtp_mail(h, "s@x", &m), LMTP_ERR_BAD_INPUT);
        lmtp_mail_options_init(&m);
        snprintf(line, sizeof line, "XKEY=%s", bad);
        m.extra = line;
        assert_status(h, lmtp_mail(h, "s@x", &m), LMTP_ERR_BAD_INPUT);
        lmtp_mail_options_init(&m);
        snprintf(line, sizeof line, "XFLAG %s", bad);
        m.extra = line;
        assert_status(h, lmtp_mail(h, "s@x", &m), LMTP_ERR_BAD_INPUT);

        /* lmtp_deliver checks every line before sending any. */
        assert_status(h, lmtp_deliver(h, bad, good_rcpts, 2, "m", 1, NULL, NULL), LMTP_ERR_BAD_INPUT);
        assert_status(h, lmtp_deliver(h, "s@x", bad_rcpts, 3, "m", 1, NULL, NULL), LMTP_ERR_BAD_INPUT);
        lmtp_rcpt_options_init(&r);
        r.orcpt = bad;
        assert_status(h, lmtp_deliver(h, "s@x", good_rcpts, 2, "m", 1, NULL, &r), LMTP_ERR_BAD_INPUT);
        lmtp_mail_options_init(&m);
        m.envid = bad;
        assert_status(h, lmtp_deliver(h, "s@x", good_rcpts, 2, "m", 1, &m, NULL), LMTP_ERR_BAD_INPUT);
        assert_nothing_sent(h, f, mark);

        /* Inside a transaction: RCPT and its parameters. */
        assert_ok(h, lmtp_mail(h, "s@x", NULL));
        mark = transcript_len(f);
        assert_status(h, lmtp_to(h, bad, NULL), LMTP_ERR_BAD_INPUT);
        assert_status(h, lmtp_recipient(h, bad, NULL), LMTP_ERR_BAD_INPUT);
        lmtp_rcpt_options_init(&r);
        r.orcpt = bad;
        assert_status(h, lmtp_to(h, "alice@x", &r), LMTP_ERR_BAD_INPUT);
        lmtp_rcpt_options_init(&r);
        r.orcpt = "orig@x";
        r.orcpt_type = bad;
        assert_status(h, lmtp_to(h, "alice@x", &r), LMTP_ERR_BAD_INPUT);
        lmtp_rcpt_options_init(&r);
        snprintf(line, sizeof line, "XKEY=%s", bad);
        r.extra = line;
        assert_status(h, lmtp_to(h, "alice@x", &r), LMTP_ERR_BAD_INPUT);
        assert_int_equal(lmtp_result_count(h), 0);
        assert_nothing_sent(h, f, mark);
        assert_ok(h, lmtp_reset(h));
    }
    assert_int_equal(lmtp_is_connected(h), 1);
    assert_int_equal(fake_message_count(f), 0);
}

/* Address and parameter syntax that would change the meaning of the line. */
static void syntax_that_would_add_parameters(void **state) {
    fx *x = *state;
    fake_lmtp *f = permissive_fake(x);
    lmtp_t *h = fx_connect(x, f, NULL);
    lmtp_mail_options m;
    lmtp_rcpt_options r;
    size_t mark;
    const char *rcpts[] = {"bob@x> NOTIFY=NEVER"};

    mark = transcript_len(f);
    assert_status(h, lmtp_mail(h, "s@x> RET=FULL", NULL), LMTP_ERR_BAD_INPUT);
    assert_status(h, lmtp_mail(h, "<s@x> <t@x>", NULL), LMTP_ERR_BAD_INPUT);
    assert_status(h, lmtp_deliver(h, "s@x", rcpts, 1, "m", 1, NULL, NULL), LMTP_ERR_BAD_INPUT);
    lmtp_mail_options_init(&m);
    m.extra = "XKEY=a=b";
    assert_status(h, lmtp_mail(h, "s@x", &m), LMTP_ERR_BAD_INPUT);
    m.extra = "XKEY=";
    assert_status(h, lmtp_mail(h, "s@x", &m), LMTP_ERR_BAD_INPUT);
    m.extra = "=x";
    assert_status(h, lmtp_mail(h, "s@x", &m), LMTP_ERR_BAD_INPUT);
    m.extra = "X_KEY=1";
    assert_status(h, lmtp_mail(h, "s@x", &m), LMTP_ERR_BAD_INPUT);
    lmtp_mail_options_init(&m);
    m.transid = "<a@x> RET=FULL";
    assert_status(h, lmtp_mail(h, "s@x", &m), LMTP_ERR_BAD_INPUT);
    assert_status(h, lmtp_hello(h, "two words"), LMTP_ERR_BAD_INPUT);
    assert_nothing_sent(h, f, mark);

    assert_ok(h, lmtp_mail(h, "s@x", NULL));
    mark = transcript_len(f);
    assert_status(h, lmtp_to(h, "bob@x> NOTIFY=NEVER", NULL), LMTP_ERR_BAD_INPUT);
    assert_status(h, lmtp_to(h, "a<b@x", NULL), LMTP_ERR_BAD_INPUT);
    lmtp_rcpt_options_init(&r);
    r.orcpt = "a@x";
    r.orcpt_type = "rfc822;x";
    assert_status(h, lmtp_to(h, "bob@x", &r), LMTP_ERR_BAD_INPUT);
    assert_nothing_sent(h, f, mark);

    /* Inside quotes '>' is part of the local part and goes out as given (the fake's simple parser
       stops at the first '>' and answers 501); brackets given by the caller are not doubled. */
    mark = transcript_len(f);
    assert_status(h, lmtp_to(h, "\"a>b\"@x", NULL), LMTP_ERR_REJECTED);
    assert_int_equal(lmtp_code(h), 501);
    assert_ok(h, lmtp_to(h, "<carol@x>", NULL));
    assert_transcript_from(f, mark, "RCPT TO:<\"a>b\"@x>\r\nRCPT TO:<carol@x>\r\n");
    assert_ok(h, lmtp_reset(h));
}

/* A bad LHLO argument in the options: lmtp_new fails and sends nothing at all. */
static void bad_hello_option(void **state) {
    fx *x = *state;
    static const char *const hellos[] = {"bad\r\nMAIL FROM:<evil@x>", "bad\nx", "a\x01", "two words"};
    size_t k;

    for (k = 0; k < sizeof hellos / sizeof hellos[0]; k++) {
        fake_config c;
        fake_lmtp *f;
        lmtp_options o;
        lmtp_t *h = NULL;
        int st, connected;

        test_fake_config(&c);
        f = fx_fake(x, &c);
        test_options(&o);
        o.hello = hellos[k];
        st = lmtp_new(&h, fake_host(f), fake_port(f), &o);
        fx_keep(x, h);
        assert_status(h, st, LMTP_ERR_BAD_INPUT);
        assert_non_null(h);
        assert_int_equal(lmtp_errcode(h), LMTP_ERR_BAD_INPUT);
        connected = lmtp_is_connected(h);
        fx_free(x, h);
        /* The Hello name is checked before connecting: not even a connection was made. */
        assert_int_equal(fake_connections(f), 0);
        assert_transcript(f, "");
        /* lmtp_new failed: the handle must not be left half connected (banner read, no LHLO sent),
           where lmtp_noop would still work and lmtp_deliver would say BAD_SEQUENCE. */
        assert_int_equal(connected, 0);
        fx_stop(x, f);
    }
}

/* Empty strings where a value is needed are refused and send nothing. (Which code: see the next test.) */
#define assert_refused_empty(h, call)                                                                   \
    do {                                                                                                \
        int st_ = (call);                                                                               \
        if (st_ != LMTP_ERR_INVALID_ARGUMENT && st_ != LMTP_ERR_BAD_INPUT)                              \
            assert_status_((h), st_, LMTP_ERR_INVALID_ARGUMENT, #call, __FILE__, __LINE__);             \
    } while (0)

static void empty_arguments_send_nothing(void **state) {
    fx *x = *state;
    fake_lmtp *f = x->fake[0];
    lmtp_t *h = x->h[0];
    const char *empty_rcpt[] = {"alice@x", ""};
    size_t mark = transcript_len(f);

    assert_refused_empty(h, lmtp_verify(h, ""));
    assert_refused_empty(h, lmtp_expand(h, ""));
    assert_refused_empty(h, lmtp_etrn(h, ""));
    assert_refused_empty(h, lmtp_hello(h, ""));
    assert_refused_empty(h, lmtp_command(h, ""));
    assert_status(h, lmtp_deliver(h, "s@x", empty_rcpt, 0, "m", 1, NULL, NULL), LMTP_ERR_INVALID_ARGUMENT);
    assert_status(h, lmtp_deliver(h, "s@x", NULL, 0, "m", 1, NULL, NULL), LMTP_ERR_INVALID_ARGUMENT);
    assert_nothing_sent(h, f, mark);
}

/* An empty recipient is never sent as "RCPT TO:<>" (RFC 5321 4.1.1.3: a forward-path is a mailbox;
   lmtp.h: an empty value is unusable). */
static void empty_recipient_rcpt_to(void **state) {
    fx *x = *state;
    fake_lmtp *f = x->fake[0];
    lmtp_t *h = x->h[0];
    size_t mark;

    assert_ok(h, lmtp_mail(h, "s@x", NULL));
    mark = transcript_len(f);
    assert_refused_empty(h, lmtp_to(h, "", NULL));
    assert_refused_empty(h, lmtp_to(h, "<>", NULL));
    assert_nothing_sent(h, f, mark);
    assert_ok(h, lmtp_reset(h));
}

static void empty_recipient_in_deliver(void **state) {
    fx *x = *state;
    fake_lmtp *f = x->fake[0];
    lmtp_t *h = x->h[0];
    const char *empty_rcpt[] = {"alice@x", ""};
    size_t mark = transcript_len(f);

    assert_refused_empty(h, lmtp_deliver(h, "s@x", empty_rcpt, 2, "m", 1, NULL, NULL));
    assert_nothing_sent(h, f, mark);
    assert_int_equal(fake_message_count(f), 0);
}

/* lmtp.h: LMTP_ERR_INVALID_ARGUMENT = "a value passed is unusable (NULL, empty, out of range)". */
static void empty_arguments_are_invalid_argument(void **state) {
    fx *x = *state;
    lmtp_t *h = x->h[0];
    assert_status(h, lmtp_verify(h, ""), LMTP_ERR_INVALID_ARGUMENT);
    assert_status(h, lmtp_expand(h, ""), LMTP_ERR_INVALID_ARGUMENT);
    assert_status(h, lmtp_etrn(h, ""), LMTP_ERR_INVALID_ARGUMENT);
    assert_status(h, lmtp_hello(h, ""), LMTP_ERR_INVALID_ARGUMENT);
    assert_status(h, lmtp_command(h, ""), LMTP_ERR_INVALID_ARGUMENT);
}

/* ---- command line limits ------------------------------------------------------------------------ */

static char *repeat_char(fx *x, char c, size_t n) {
    char *s = fx_alloc(x, n + 1);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

static void command_line_limit(void **state) {
    fx *x = *state;
    fake_lmtp *f = permissive_fake(x);
    lmtp_t *h = fx_connect(x, f, NULL);
    char *arg = repeat_char(x, 'v', 600);
    char *addr = repeat_char(x, 'm', 600);
    char *want = fx_alloc(x, 1200);
    size_t mark;
    lmtp_mail_options m;
    const char *rcpts[2];

    /* "VRFY " + 505 + CRLF = 512 octets: fits. */
    arg[505] = '\0';
    mark = transcript_len(f);
    assert_ok(h, lmtp_verify(h, arg));
    snprintf(want, 1200, "VRFY %s\r\n", arg);
    assert_transcript_from(f, mark, want);

    /* One more: LINE_TOO_LONG, nothing sent. */
    arg[505] = 'v';
    arg[506] = '\0';
    mark = transcript_len(f);
    assert_status(h, lmtp_verify(h, arg), LMTP_ERR_LINE_TOO_LONG);
    assert_int_equal(lmtp_errcode(h), LMTP_ERR_LINE_TOO_LONG);
    assert_has(lmtp_errmsg(h), "512");
    assert_status(h, lmtp_expand(h, arg), LMTP_ERR_LINE_TOO_LONG);
    assert_status(h, lmtp_etrn(h, arg), LMTP_ERR_LINE_TOO_LONG);
    assert_status(h, lmtp_help(h, arg), LMTP_ERR_LINE_TOO_LONG);
    assert_nothing_sent(h, f, mark);

    /* lmtp_command: 510 + CRLF fits, 511 does not. */
    memset(arg, 'v', 600);
    memcpy(arg, "NOOP ", 5);
    arg[510] = '\0';
    mark = transcript_len(f);
    assert_ok(h, lmtp_command(h, arg));
    assert_ok(h, lmtp_response(h));
    arg[510] = 'v';
    arg[511] = '\0';
    assert_status(h, lmtp_command(h, arg), LMTP_ERR_LINE_TOO_LONG);
    assert_status(h, lmtp_response(h), LMTP_ERR_BAD_SEQUENCE);
    arg[510] = '\0';
    snprintf(want, 1200, "%s\r\n", arg);
    assert_transcript_from(f, mark, want);

    /* lmtp_deliver: a recipient too long for its RCPT line (9 + 502 + 1 + 2 = 514 octets) stops
       everything before MAIL is sent. */
    addr[502] = '\0';
    rcpts[0] = "alice@x";
    rcpts[1] = addr;
    mark = transcript_len(f);
    assert_status(h, lmtp_deliver(h, "s@x", rcpts, 2, "m", 1, NULL, NULL), LMTP_ERR_LINE_TOO_LONG);
    assert_nothing_sent(h, f, mark);
    /* 500 octets: exactly 512, it goes out. */
    addr[500] = '\0';
    mark = transcript_len(f);
    assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 2, "m", 1, NULL, NULL));
    /* (SIZE: the server offers it, and the message is counted as it goes, "m" CR LF.) */
    snprintf(want, 1200, "MAIL FROM:<s@x> SIZE=3\r\nRCPT TO:<alice@x>\r\nRCPT TO:<%s>\r\nDATA\r\nm\r\n.\r\n", addr);
    assert_transcript_from(f, mark, want);

    /* MAIL FROM:<addr> without parameters: 11 + 500 + 1 + 2 = 514 octets: too long. */
    addr[500] = '\0';
    mark = transcript_len(f);
    assert_status(h, lmtp_mail(h, addr, NULL), LMTP_ERR_LINE_TOO_LONG);
    assert_nothing_sent(h, f, mark);

    /* With SIZE the line may be 26 octets longer (RFC 1870): 514 + 7 = 521 octets go out. */
    lmtp_mail_options_init(&m);
    m.size = 1;
    mark = transcript_len(f);
    assert_ok(h, lmtp_mail(h, addr, &m));
    snprintf(want, 1200, "MAIL FROM:<%s> SIZE=1\r\n", addr);
    assert_transcript_from(f, mark, want);
    assert_ok(h, lmtp_reset(h));
}

static void max_command_line_option(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_options o;
    lmtp_t *h;
    char *arg = repeat_char(x, 'w', 950);
    char *want = fx_alloc(x, 1000);
    size_t mark;

    test_fake_config(&c);
    f = fx_fake(x, &c);

    /* Smaller: 64 octets. */
    test_options(&o);
    o.max_command_line = 64;
    h = fx_connect(x, f, &o);
    arg[57] = '\0'; /* "VRFY " + 57 + CRLF = 64 */
    mark = transcript_len(f);
    assert_ok(h, lmtp_verify(h, arg));
    arg[57] = 'w';
    arg[58] = '\0';
    assert_status(h, lmtp_verify(h, arg), LMTP_ERR_LINE_TOO_LONG);
    assert_has(lmtp_errmsg(h), "64");
    arg[57] = '\0';
    snprintf(want, 1000, "VRFY %s\r\n", arg);
    assert_transcript_from(f, mark, want);
    fx_free(x, h);

    /* Larger: 1000 octets (the fake takes lines up to 1000). */
    test_options(&o);
    o.max_command_line = 1000;
    h = fx_connect(x, f, &o);
    memset(arg, 'w', 950);
    arg[893] = '\0'; /* "VRFY " + 893 + CRLF = 900 */
    mark = transcript_len(f);
    assert_ok(h, lmtp_verify(h, arg));
    assert_int_equal(lmtp_code(h), 252);
    snprintf(want, 1000, "VRFY %s\r\n", arg);
    assert_transcript_from(f, mark, want);
}

/* ---- NULL handles and NULL strings ----------------------------------------------------------------- */

static long never_read(void *user, void *buf, size_t cap) {
    (void)user;
    (void)buf;
    (void)cap;
    return 0;
}

static void null_handle(void **state) {
    const char *rcpts[] = {"a@x"};
    int k1 = 7;
    (void)state;

    assert_int_equal(lmtp_create(NULL, NULL), LMTP_ERR_INVALID_ARGUMENT);
    assert_int_equal(lmtp_new(NULL, "127.0.0.1", 24, NULL), LMTP_ERR_INVALID_ARGUMENT);
    assert_int_equal(lmtp_connect(NULL, "127.0.0.1", 24), LMTP_ERR_INVALID_ARGUMENT);
    assert_int_equal(lmtp_close(NULL), LMTP_ERR_INVALID_ARGUMENT);
    assert_int_equal(lmtp_set_timeout(NULL, 100), LMTP_ERR_INVALID_ARGUMENT);
    assert_int_equal(lmtp_set_trace(NULL, trace_record, NULL), LMTP_ERR_INVALID_ARGUMENT);
    assert_int_equal(lmtp_hello(NULL, "x"), LMTP_ERR_INVALID_ARGUMENT);
    assert_int_equal(lmtp_mail(NULL, "x", NULL), LMTP_ERR_INVALID_ARGUMENT);
    assert_int_equal(lmtp_send(NULL, "x"), LMTP_ERR_INVALID_ARGUMENT);
    assert_int_equal(lmtp_send_or_mail(NULL, "x"), LMTP_ERR_INVALID_ARGUMENT);
    assert_int_equal(lmtp_send_and_mail(NULL, "x"), LMTP_ERR_INVALID_ARGUMENT);
    assert_int_equal(lmtp_recipient(NULL, "x", NULL), LMTP_ERR_INVALID_ARGUMENT);
    assert_int_equal(lmtp_to(NULL, "x", NULL), LMTP_ERR_INVALID_ARGUMENT);
    assert_int_equal(lmtp_reset(NULL), LMTP_ERR_INVALID_ARGUMENT);
    assert_int_equal(lmtp_noop(NULL), LMTP_ERR_INVALID_ARGUMENT);
    assert_int_equal(lmtp_verify(NULL, "x"), LMTP_ERR_INVALID_ARGUMENT);
    assert_int_equal(lmtp_expand(NULL, "x"), LMTP_ERR_INVALID_ARGUMENT);
    assert_int_equal(lmtp_help(NULL, NULL), LMTP_ERR_INVALID_ARGUMENT);
    assert_int_equal(lmtp_etrn(NULL, "x"), LMTP_ERR_INVALID_ARGUMENT);
    assert_int_equal(lmtp_quit(NULL), LMTP_ERR_INVALID_ARGUMENT);
    assert_int_equal(lmtp_data(NULL, "x", 1), LMTP_ERR_INVALID_ARGUMENT);
    assert_int_equal(lmtp_data_start(NULL), LMTP_ERR_INVALID_ARGUMENT);
    assert_int_equal(lmtp_data_write(NULL, "x", 1), LMTP_ERR_INVALID_ARGUMENT);
    assert_int_equal(lmtp_data_end(NULL), LMTP_ERR_INVALID_ARGUMENT);
    assert_int_equal(lmtp_command(NULL, "NOOP"), LMTP_ERR_INVALID_ARGUMENT);
    assert_int_equal(lmtp_response(NULL), LMTP_ERR_INVALID_ARGUMENT);
    assert_int_equal(lmtp_deliver(NULL, "s@x", rcpts, 1, "m", 1, NULL, NULL), LMTP_ERR_INVALID_ARGUMENT);
    assert_int_equal(lmtp_deliver_stream(NULL, "s@x", rcpts, 1, never_read, NULL, NULL, NULL),
                     LMTP_ERR_INVALID_ARGUMENT);
    {
        lmtp_mail_options m = LMTP_MAIL_OPTIONS_INIT;
        lmtp_rcpt_options r = LMTP_RCPT_OPTIONS_INIT;
        const char *missing = "unset";
        assert_int_equal(lmtp_mail_options_parse(NULL, &m, "SIZE=1"), LMTP_ERR_INVALID_ARGUMENT);
        assert_int_equal(m.size, 0);
        assert_int_equal(lmtp_rcpt_options_parse(NULL, &r, "NOTIFY=NEVER"), LMTP_ERR_INVALID_ARGUMENT);
        assert_int_equal(r.notify, 0);
        assert_int_equal(lmtp_mail_options_check(NULL, &m, &missing), LMTP_ERR_INVALID_ARGUMENT);
        assert_null(missing);
        missing = "unset";
        assert_int_equal(lmtp_rcpt_options_check(NULL, &r, &missing), LMTP_ERR_INVALID_ARGUMENT);
        assert_null(missing);
    }

    /* Getters: 0 or "". */
    assert_int_equal(lmtp_is_connected(NULL), 0);
    assert_int_equal(lmtp_timeout(NULL), 0);
    assert_string_equal(lmtp_banner(NULL), "");
    assert_string_equal(lmtp_domain(NULL), "");
    assert_int_equal(lmtp_supports(NULL, "PIPELINING"), 0);
    assert_int_equal(lmtp_size_limit(NULL), 0);
    assert_int_equal(lmtp_code(NULL), 0);
    assert_string_equal(lmtp_enhanced(NULL), "");
    assert_int_equal(lmtp_enhanced_parts(NULL, &k1, NULL, NULL), 0);
    assert_string_equal(lmtp_message(NULL), "");
    assert_string_equal(lmtp_text(NULL), "");
    assert_int_equal(lmtp_message_count(NULL), 0);
    assert_string_equal(lmtp_message_line(NULL, 0), "");
    assert_string_equal(lmtp_errmsg(NULL), "");
    assert_int_equal(lmtp_result_count(NULL), 0);
    assert_string_equal(lmtp_result_address(NULL, 0), "");
    assert_int_equal(lmtp_result_stage(NULL, 0), LMTP_STAGE_NONE);
    assert_int_equal(lmtp_result_code(NULL, 0), 0);
    assert_string_equal(lmtp_result_enhanced(NULL, 0), "");
    assert_string_equal(lmtp_result_text(NULL, 0), "");
    assert_int_equal(lmtp_result_rcpt_code(NULL, 0), 0);
    assert_string_equal(lmtp_result_rcpt_text(NULL, 0), "");
    assert_int_equal(lmtp_reply_class(NULL), LMTP_REPLY_NONE);

    /* Nothing to free, nothing to fill: no crash. */
    lmtp_free(NULL);
    lmtp_options_init(NULL);
    lmtp_mail_options_init(NULL);
    lmtp_rcpt_options_init(NULL);
}

static void null_strings(void **state) {
    fx *x = *state;
    fake_lmtp *f = x->fake[0];
    lmtp_t *h = x->h[0];
    const char *rcpts[] = {"alice@x", NULL};
    size_t mark = transcript_len(f);

    assert_status(h, lmtp_mail(h, NULL, NULL), LMTP_ERR_INVALID_ARGUMENT);
    assert_int_equal(lmtp_errcode(h), LMTP_ERR_INVALID_ARGUMENT);
    assert_true(strlen(lmtp_errmsg(h)) > 0);
    assert_status(h, lmtp_send(h, NULL), LMTP_ERR_INVALID_ARGUMENT);
    assert_status(h, lmtp_send_or_mail(h, NULL), LMTP_ERR_INVALID_ARGUMENT);
    assert_status(h, lmtp_send_and_mail(h, NULL), LMTP_ERR_INVALID_ARGUMENT);
    assert_status(h, lmtp_hello(h, NULL), LMTP_ERR_INVALID_ARGUMENT);
    assert_status(h, lmtp_verify(h, NULL), LMTP_ERR_INVALID_ARGUMENT);
    assert_status(h, lmtp_expand(h, NULL), LMTP_ERR_INVALID_ARGUMENT);
    assert_status(h, lmtp_etrn(h, NULL), LMTP_ERR_INVALID_ARGUMENT);
    assert_status(h, lmtp_command(h, NULL), LMTP_ERR_INVALID_ARGUMENT);
    assert_status(h, lmtp_deliver(h, NULL, rcpts, 1, "m", 1, NULL, NULL), LMTP_ERR_INVALID_ARGUMENT);
    assert_status(h, lmtp_deliver(h, "s@x", NULL, 1, "m", 1, NULL, NULL), LMTP_ERR_INVALID_ARGUMENT);
    assert_status(h, lmtp_deliver(h, "s@x", rcpts, 2, "m", 1, NULL, NULL), LMTP_ERR_INVALID_ARGUMENT);
    assert_status(h, lmtp_deliver(h, "s@x", rcpts, 1, NULL, 5, NULL, NULL), LMTP_ERR_INVALID_ARGUMENT);
    assert_status(h, lmtp_deliver_stream(h, "s@x", rcpts, 1, NULL, NULL, NULL, NULL), LMTP_ERR_INVALID_ARGUMENT);
    assert_status(h, lmtp_deliver_stream(h, NULL, rcpts, 1, never_read, NULL, NULL, NULL),
                  LMTP_ERR_INVALID_ARGUMENT);
    assert_status(h, lmtp_data(h, NULL, 3), LMTP_ERR_INVALID_ARGUMENT);
    assert_status(h, lmtp_connect(h, NULL, 24), LMTP_ERR_INVALID_ARGUMENT);
    assert_int_equal(lmtp_supports(h, NULL), 0);
    assert_null(lmtp_capability(h, NULL));

    /* lmtp_connect(NULL host) must not have dropped the connection... or if it did, say so. */
    assert_int_equal(lmtp_is_connected(h), 1);
    assert_nothing_sent(h, f, mark);

    /* In a transaction. */
    assert_ok(h, lmtp_mail(h, "s@x", NULL));
    mark = transcript_len(f);
    assert_status(h, lmtp_to(h, NULL, NULL), LMTP_ERR_INVALID_ARGUMENT);
    assert_status(h, lmtp_recipient(h, NULL, NULL), LMTP_ERR_INVALID_ARGUMENT);
    assert_nothing_sent(h, f, mark);
    assert_ok(h, lmtp_to(h, "alice@x", NULL));
    assert_ok(h, lmtp_data_start(h));
    assert_status(h, lmtp_data_write(h, NULL, 4), LMTP_ERR_INVALID_ARGUMENT);
    assert_ok(h, lmtp_data_write(h, "ok\n", 3));
    assert_ok(h, lmtp_data_end(h));
    assert_message(f, 0, "ok\r\n");

    /* lmtp_new with a NULL host: *out is still set, with the reason. */
    {
        lmtp_t *h2 = NULL;
        int st = lmtp_new(&h2, NULL, 24, NULL);
        fx_keep(x, h2);
        assert_int_equal(st, LMTP_ERR_INVALID_ARGUMENT);
        assert_non_null(h2);
        assert_int_equal(lmtp_errcode(h2), LMTP_ERR_INVALID_ARGUMENT);
        assert_true(strlen(lmtp_errmsg(h2)) > 0);
        assert_int_equal(lmtp_is_connected(h2), 0);
    }
}

/* ---- status codes, versions ------------------------------------------------------------------------- */

static void strerror_names_every_code(void **state) {
    const char *seen[LMTP_ERR_INTERNAL + 1];
    static const int out_of_range[] = {-1, LMTP_ERR_INTERNAL + 1, 100, 1000, INT_MAX, INT_MIN};
    int i, j;
    (void)state;

    for (i = LMTP_OK; i <= LMTP_ERR_INTERNAL; i++) {
        const char *s = lmtp_strerror(i);
        assert_non_null(s);
        assert_true(strlen(s) > 0);
        print_message("%2d: %s\n", i, s);
        for (j = 0; j < i; j++) assert_string_not_equal(s, seen[j]);
        seen[i] = s;
    }
    for (i = 0; i < (int)(sizeof out_of_range / sizeof out_of_range[0]); i++) {
        const char *s = lmtp_strerror(out_of_range[i]);
        assert_non_null(s);
        assert_true(strlen(s) > 0);
        for (j = 0; j <= LMTP_ERR_INTERNAL; j++) assert_string_not_equal(s, seen[j]);
    }
    /* The numbers never move (rule 8). */
    assert_int_equal(LMTP_ERR_INVALID_ARGUMENT, 1);
    assert_int_equal(LMTP_ERR_REJECTED, 12);
    assert_int_equal(LMTP_ERR_INTERNAL, 18);
}

/* lmtp_status_name lists every status, 0, 1, 2... up to the first NULL, each name the enumerator's
 * in lower case; lmtp_status_reply_code gives local refusals a server's code, 0 otherwise. */
static void status_names_and_reply_codes(void **state) {
    static const struct {
        int status;
        const char *name;
        int code;
    } known[] = {
        {LMTP_OK, "ok", 0},
        {LMTP_ERR_INVALID_ARGUMENT, "invalid_argument", 501},
        {LMTP_ERR_BAD_INPUT, "bad_input", 501},
        {LMTP_ERR_LINE_TOO_LONG, "line_too_long", 500},
        {LMTP_ERR_NOT_ADVERTISED, "not_advertised", 555},
        {LMTP_ERR_BAD_SEQUENCE, "bad_sequence", 503},
        {LMTP_ERR_TIMEOUT, "timeout", 0},
        {LMTP_ERR_REJECTED, "rejected", 0},
        {LMTP_ERR_TOO_BIG, "too_big", 552},
        {LMTP_ERR_NO_RECIPIENTS, "no_recipients", 554},
        {LMTP_ERR_NOT_CONNECTED, "not_connected", 0},
        {LMTP_ERR_AUTH, "auth", 535},
        {LMTP_ERR_INSECURE, "insecure", 538},
    };
    static const int none[] = {-1, LMTP_ERR_INSECURE + 1, 1000, INT_MAX, INT_MIN};
    int i, j, count = 0;
    (void)state;

    while (lmtp_status_name(count)) {
        const char *name = lmtp_status_name(count);
        assert_true(strlen(name) > 0);
        for (j = 0; name[j]; j++) assert_true((name[j] >= 'a' && name[j] <= 'z') || name[j] == '_');
        for (j = 0; j < count; j++) assert_string_not_equal(name, lmtp_status_name(j));
        assert_string_not_equal(lmtp_strerror(count), "unknown status code");
        count++;
    }
    assert_int_equal(count, LMTP_ERR_INSECURE + 1);
    for (i = 0; i < (int)(sizeof known / sizeof known[0]); i++) {
        assert_string_equal(lmtp_status_name(known[i].status), known[i].name);
        assert_int_equal(lmtp_status_reply_code(known[i].status), known[i].code);
    }
    for (i = 0; i < (int)(sizeof none / sizeof none[0]); i++) {
        assert_null(lmtp_status_name(none[i]));
        assert_int_equal(lmtp_status_reply_code(none[i]), 0);
        assert_string_equal(lmtp_strerror(none[i]), "unknown status code");
    }
}

/* A message given to lmtp_canonical_length_stream `step` bytes at a time; fails after `fail_at`
   bytes when that is not 0. */
typedef struct pieces {
    const char *data;
    size_t len, at, step, fail_at;
    int calls;
} pieces;

static long read_pieces(void *user, void *buf, size_t cap) {
    pieces *p = user;
    size_t n = p->len - p->at;
    p->calls++;
    if (p->fail_at && p->at >= p->fail_at) return -1;
    if (n > p->step) n = p->step;
    if (n > cap) n = cap;
    memcpy(buf, p->data + p->at, n);
    p->at += n;
    return (long)n;
}

/* The size SIZE declares: line ends made CRLF, a final CRLF added; in one buffer or streamed in
   pieces that cut a CRLF in two. */
static void canonical_length_of_a_message(void **state) {
    static const struct {
        const char *msg;
        unsigned long long size;
    } cases[] = {
        {"", 0},        {"a", 3},           {"a\n", 3},        {"a\r\n", 3},           {"a\r", 3},
        {"\n\n", 4},  {"a\nb", 6},       {"\r\r\n", 4},   {"a\rb\nc\r\nd", 12}, {".x\n..\n", 8},
    };
    size_t i, step;
    (void)state;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = strlen(cases[i].msg);
        assert_int_equal(lmtp_canonical_length(cases[i].msg, len), cases[i].size);
        for (step = 1; step <= 4; step++) {
            pieces p = {cases[i].msg, len, 0, step, 0, 0};
            unsigned long long size = 12345;
            assert_int_equal(lmtp_canonical_length_stream(read_pieces, &p, &size), LMTP_OK);
            assert_int_equal(size, cases[i].size);
        }
    }
    assert_int_equal(lmtp_canonical_length(NULL, 0), 0);
    {
        /* A read that fails: LMTP_ERR_ABORTED, the size untouched. */
        pieces p = {"abc\ndef\n", 8, 0, 2, 4, 0};
        unsigned long long size = 7;
        assert_int_equal(lmtp_canonical_length_stream(read_pieces, &p, &size), LMTP_ERR_ABORTED);
        assert_int_equal(size, 7);
        assert_int_equal(lmtp_canonical_length_stream(NULL, &p, &size), LMTP_ERR_INVALID_ARGUMENT);
        assert_int_equal(lmtp_canonical_length_stream(read_pieces, &p, NULL), LMTP_ERR_INVALID_ARGUMENT);
    }
}

static void versions_match_the_header(void **state) {
    char want[32];
    (void)state;
    snprintf(want, sizeof want, "%d.%d.%d", LMTP_VERSION_MAJOR, LMTP_VERSION_MINOR, LMTP_VERSION_PATCH);
    assert_non_null(lmtp_version());
    assert_string_equal(lmtp_version(), want);
    assert_int_equal(lmtp_version_num(), LMTP_VERSION_NUM);
    assert_int_equal(LMTP_VERSION_NUM,
                     (unsigned)LMTP_VERSION_MAJOR * 65536u + (unsigned)LMTP_VERSION_MINOR * 256u +
                         (unsigned)LMTP_VERSION_PATCH);
}

/* ---- the last error ----------------------------------------------------------------------------------- */

static void last_error_resets_after_success(void **state) {
    fx *x = *state;
    lmtp_t *h = x->h[0];

    assert_int_equal(lmtp_errcode(h), LMTP_OK);
    assert_string_equal(lmtp_errmsg(h), "");

    assert_status(h, lmtp_verify(h, "a\r\nb"), LMTP_ERR_BAD_INPUT);
    assert_int_equal(lmtp_errcode(h), LMTP_ERR_BAD_INPUT);
    assert_true(strlen(lmtp_errmsg(h)) > 0);
    assert_ok(h, lmtp_noop(h));
    assert_int_equal(lmtp_errcode(h), LMTP_OK);
    assert_string_equal(lmtp_errmsg(h), "");

    assert_status(h, lmtp_to(h, "alice@x", NULL), LMTP_ERR_REJECTED); /* 503: no MAIL */
    assert_int_equal(lmtp_errcode(h), LMTP_ERR_REJECTED);
    assert_has(lmtp_errmsg(h), "503");
    assert_int_equal(lmtp_code(h), 503);
    assert_ok(h, lmtp_mail(h, "s@x", NULL));
    assert_int_equal(lmtp_errcode(h), LMTP_OK);
    assert_string_equal(lmtp_errmsg(h), "");
    assert_int_equal(lmtp_code(h), 250);

    assert_status(h, lmtp_response(h), LMTP_ERR_BAD_SEQUENCE);
    assert_int_equal(lmtp_errcode(h), LMTP_ERR_BAD_SEQUENCE);
    assert_ok(h, lmtp_set_timeout(h, 2000));
    assert_int_equal(lmtp_errcode(h), LMTP_OK);
    assert_string_equal(lmtp_errmsg(h), "");
    assert_ok(h, lmtp_reset(h));
}

/* ---- option structs ------------------------------------------------------------------------------------ */

static void option_initialisers_agree(void **state) {
    lmtp_options a = LMTP_OPTIONS_INIT, b;
    lmtp_mail_options ma = LMTP_MAIL_OPTIONS_INIT, mb;
    lmtp_rcpt_options ra = LMTP_RCPT_OPTIONS_INIT, rb;
    (void)state;

    memset(&b, 0xA5, sizeof b);
    lmtp_options_init(&b);
    assert_int_equal(a.struct_size, sizeof(lmtp_options));
    assert_int_equal(b.struct_size, sizeof(lmtp_options));
    assert_int_equal(b.timeout_ms, a.timeout_ms);
    assert_int_equal(b.connect_timeout_ms, 0);
    assert_null(b.hello);
    assert_null(b.local_address);
    assert_int_equal(b.local_port, 0);
    assert_int_equal(b.max_reply_line, 0);
    assert_int_equal(b.max_reply_size, 0);
    assert_int_equal(b.max_command_line, 0);
    assert_null(b.trace);
    assert_null(b.trace_user);
    assert_int_equal(b.flags, 0);

    memset(&mb, 0xA5, sizeof mb);
    lmtp_mail_options_init(&mb);
    assert_int_equal(ma.struct_size, sizeof(lmtp_mail_options));
    assert_int_equal(mb.struct_size, sizeof(lmtp_mail_options));
    assert_int_equal(mb.size, 0);
    assert_int_equal(mb.body, LMTP_BODY_NONE);
    assert_int_equal(mb.smtputf8, 0);
    assert_int_equal(mb.ret, LMTP_RET_NONE);
    assert_null(mb.envid);
    assert_null(mb.transid);
    assert_null(mb.extra);
    assert_int_equal(mb.flags, 0);

    memset(&rb, 0xA5, sizeof rb);
    lmtp_rcpt_options_init(&rb);
    assert_int_equal(ra.struct_size, sizeof(lmtp_rcpt_options));
    assert_int_equal(rb.struct_size, sizeof(lmtp_rcpt_options));
    assert_int_equal(rb.notify, 0);
    assert_null(rb.orcpt);
    assert_null(rb.orcpt_type);
    assert_null(rb.extra);
    assert_int_equal(rb.flags, 0);
}

static int garbage_trace_calls;
static void garbage_trace(void *user, int direction, const char *line, size_t len) {
    (void)user;
    (void)direction;
    (void)line;
    (void)len;
    garbage_trace_calls++;
}

/* A program built against an older, shorter lmtp_options: the fields after its struct_size are not
   its own and must be ignored, whatever they hold. */
static void older_smaller_option_structs(void **state) {
    fx *x = *state;
    fake_lmtp *f = permissive_fake(x);
    lmtp_options o;
    lmtp_mail_options m;
    lmtp_rcpt_options r;
    lmtp_t *h = NULL;
    const char *rcpts[] = {"alice@x", "bob@x"};
    size_t mark;
    int st;

    /* Up to connect_timeout_ms / local_port: the reply limits, trace and flags are garbage. */
    test_options(&o);
    o.struct_size = offsetof(lmtp_options, max_reply_line);
    o.timeout_ms = 2500;
    o.max_reply_line = 1;    /* would refuse every reply */
    o.max_reply_size = 1;    /* likewise */
    o.max_command_line = 3;  /* would refuse every command */
    o.trace = garbage_trace; /* would be called */
    o.trace_user = (void *)&o;
    o.flags = 0xFFFFFFFFu;
    garbage_trace_calls = 0;
    st = lmtp_new(&h, fake_host(f), fake_port(f), &o);
    fx_keep(x, h);
    assert_status(h, st, LMTP_OK);
    assert_int_equal(lmtp_timeout(h), 2500); /* a field inside the struct is honoured */
    assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 2, "old\n", 4, NULL, NULL));
    assert_int_equal(lmtp_result_status(h, 1), LMTP_RESULT_OK);
    assert_int_equal(garbage_trace_calls, 0);
    assert_transcript(f, "LHLO " TEST_HELLO "\r\nMAIL FROM:<s@x> SIZE=5\r\nRCPT TO:<alice@x>\r\nRCPT TO:<bob@x>\r\n"
                         "DATA\r\nold\r\n.\r\n");

    /* Up to `hello` only: the LHLO argument is garbage (it would be refused), so the default is used. */
    fx_free(x, h);
    h = NULL;
    test_options(&o);
    o.struct_size = offsetof(lmtp_options, hello);
    o.timeout_ms = 1500;
    o.hello = "bad\r\nhello";
    o.local_address = "garbage";
    st = lmtp_new(&h, fake_host(f), fake_port(f), &o);
    fx_keep(x, h);
    assert_status(h, st, LMTP_OK);
    assert_int_equal(lmtp_timeout(h), 1500);

    /* Mail options that end before envid: envid, transid, extra and flags are garbage. */
    lmtp_mail_options_init(&m);
    m.struct_size = offsetof(lmtp_mail_options, envid);
    m.body = LMTP_BODY_8BITMIME;
    m.envid = "bad\r\n";
    m.transid = "bad\n";
    m.extra = "NOT=advertised\r";
    m.flags = 0xFFFFFFFFu;
    mark = transcript_len(f);
    assert_ok(h, lmtp_mail(h, "s@x", &m));
    assert_transcript_from(f, mark, "MAIL FROM:<s@x> BODY=8BITMIME\r\n");

    /* Rcpt options that end before orcpt. */
    lmtp_rcpt_options_init(&r);
    r.struct_size = offsetof(lmtp_rcpt_options, orcpt);
    r.notify = LMTP_NOTIFY_SUCCESS;
    r.orcpt = "bad\r\n";
    r.orcpt_type = "bad type";
    r.extra = "bad\n";
    r.flags = 0xFFFFFFFFu;
    mark = transcript_len(f);
    assert_ok(h, lmtp_to(h, "alice@x", &r));
    assert_transcript_from(f, mark, "RCPT TO:<alice@x> NOTIFY=SUCCESS\r\n");
    assert_ok(h, lmtp_reset(h));

    /* Options that end before their first field: nothing is read but the size. */
    lmtp_mail_options_init(&m);
    m.struct_size = sizeof(size_t);
    m.size = 999999999999ull;
    m.body = 77;
    mark = transcript_len(f);
    assert_ok(h, lmtp_mail(h, "s@x", &m));
    assert_transcript_from(f, mark, "MAIL FROM:<s@x>\r\n");
    assert_ok(h, lmtp_reset(h));
}

static void struct_size_zero_is_refused(void **state) {
    fx *x = *state;
    fake_lmtp *f = x->fake[0];
    lmtp_t *h = x->h[0];
    lmtp_options o;
    lmtp_mail_options m;
    lmtp_rcpt_options r;
    const char *rcpts[] = {"alice@x"};
    lmtp_t *h2 = NULL;
    size_t mark;
    int st;

    test_options(&o);
    o.struct_size = 0;
    assert_int_equal(lmtp_create(&h2, &o), LMTP_ERR_INVALID_ARGUMENT);
    fx_keep(x, h2);
    h2 = NULL;
    st = lmtp_new(&h2, fake_host(f), fake_port(f), &o);
    fx_keep(x, h2);
    assert_int_equal(st, LMTP_ERR_INVALID_ARGUMENT);
    assert_int_equal(fake_connections(f), 1);

    mark = transcript_len(f);
    lmtp_mail_options_init(&m);
    m.struct_size = 0;
    assert_status(h, lmtp_mail(h, "s@x", &m), LMTP_ERR_INVALID_ARGUMENT);
    assert_status(h, lmtp_deliver(h, "s@x", rcpts, 1, "m", 1, &m, NULL), LMTP_ERR_INVALID_ARGUMENT);
    lmtp_rcpt_options_init(&r);
    r.struct_size = 0;
    assert_status(h, lmtp_deliver(h, "s@x", rcpts, 1, "m", 1, NULL, &r), LMTP_ERR_INVALID_ARGUMENT);
    assert_nothing_sent(h, f, mark);
    assert_ok(h, lmtp_mail(h, "s@x", NULL));
    mark = transcript_len(f);
    assert_status(h, lmtp_to(h, "alice@x", &r), LMTP_ERR_INVALID_ARGUMENT);
    assert_nothing_sent(h, f, mark);
    assert_ok(h, lmtp_reset(h));
}

/* lmtp_new: "On failure *out is still set (unless LMTP_ERR_NO_MEMORY or LMTP_ERR_INVALID_ARGUMENT with
   out == NULL) so that lmtp_errmsg() can tell why". Unusable options are such a failure. */
static void lmtp_new_sets_out_for_unusable_options(void **state) {
    fx *x = *state;
    fake_lmtp *f = x->fake[0];
    lmtp_options o;
    int k;

    for (k = 0; k < 2; k++) {
        lmtp_t *h2 = NULL;
        int st;
        test_options(&o);
        if (k == 0)
            o.struct_size = 0;
        else
            o.local_port = 70000;
        st = lmtp_new(&h2, fake_host(f), fake_port(f), &o);
        fx_keep(x, h2);
        assert_int_equal(st, LMTP_ERR_INVALID_ARGUMENT);
        assert_non_null(h2);
        assert_int_equal(lmtp_errcode(h2), LMTP_ERR_INVALID_ARGUMENT);
        assert_true(strlen(lmtp_errmsg(h2)) > 0);
        assert_int_equal(lmtp_is_connected(h2), 0);
    }
}

/* Values out of range in option structs are unusable: INVALID_ARGUMENT, nothing sent. */
static void option_values_out_of_range(void **state) {
    fx *x = *state;
    fake_lmtp *f = permissive_fake(x);
    lmtp_t *h = fx_connect(x, f, NULL);
    lmtp_options o;
    lmtp_mail_options m;
    lmtp_t *h2 = NULL;
    size_t mark;

    test_options(&o);
    o.local_port = 65536;
    assert_int_equal(lmtp_create(&h2, &o), LMTP_ERR_INVALID_ARGUMENT);
    fx_keep(x, h2);

    mark = transcript_len(f);
    lmtp_mail_options_init(&m);
    m.body = 99;
    assert_status(h, lmtp_mail(h, "s@x", &m), LMTP_ERR_INVALID_ARGUMENT);
    lmtp_mail_options_init(&m);
    m.ret = -1;
    assert_status(h, lmtp_mail(h, "s@x", &m), LMTP_ERR_INVALID_ARGUMENT);
    assert_nothing_sent(h, f, mark);
}

/* A NOTIFY flag that does not exist is out of range like an unknown BODY or RET value. */
static void notify_unknown_flag(void **state) {
    fx *x = *state;
    fake_lmtp *f = permissive_fake(x);
    lmtp_t *h = fx_connect(x, f, NULL);
    lmtp_rcpt_options r;
    size_t mark;
    int st;

    assert_ok(h, lmtp_mail(h, "s@x", NULL));
    mark = transcript_len(f);
    lmtp_rcpt_options_init(&r);
    r.notify = 0x40; /* no such NOTIFY flag */
    st = lmtp_to(h, "alice@x", &r);
    print_message("status %d: %s\n", st, lmtp_errmsg(h));
    assert_true(st != LMTP_OK);
    assert_nothing_sent(h, f, mark);
    assert_status(h, st, LMTP_ERR_INVALID_ARGUMENT);
}

/* ---- handles without a connection ------------------------------------------------------------------------ */

static void unconnected_handle(void **state) {
    fx *x = *state;
    lmtp_t *h = NULL;
    lmtp_options o;

    assert_ok(h, lmtp_create(&h, NULL));
    fx_keep(x, h);
    assert_int_equal(lmtp_is_connected(h), 0);
    assert_int_equal(lmtp_timeout(h), 120000);
    assert_int_equal(lmtp_timeout(h), LMTP_DEFAULT_TIMEOUT_MS);
    assert_string_equal(lmtp_banner(h), "");
    assert_string_equal(lmtp_domain(h), "");
    assert_int_equal(lmtp_code(h), 0);
    assert_int_equal(lmtp_supports(h, "PIPELINING"), 0);
    assert_null(lmtp_capability(h, "PIPELINING"));
    assert_int_equal(lmtp_size_limit(h), 0);
    assert_int_equal(lmtp_result_count(h), 0);
    assert_int_equal(lmtp_errcode(h), LMTP_OK);
    assert_status(h, lmtp_noop(h), LMTP_ERR_NOT_CONNECTED);
    assert_status(h, lmtp_mail(h, "s@x", NULL), LMTP_ERR_NOT_CONNECTED);
    assert_status(h, lmtp_data_start(h), LMTP_ERR_NOT_CONNECTED);
    assert_ok(h, lmtp_close(h));

    test_options(&o);
    o.timeout_ms = 4321;
    fx_free(x, h);
    h = NULL;
    assert_ok(h, lmtp_create(&h, &o));
    fx_keep(x, h);
    assert_int_equal(lmtp_timeout(h), 4321);
    assert_ok(h, lmtp_set_timeout(h, 1234));
    assert_int_equal(lmtp_timeout(h), 1234);
}

/* ---- lmtp_close and lmtp_free ------------------------------------------------------------------------------ */

static void close_drops_without_quit(void **state) {
    fx *x = *state;
    fake_lmtp *f = x->fake[0];
    lmtp_t *h = x->h[0];
    const char *rcpts[] = {"alice@x"};

    /* In the middle of a transaction. */
    assert_ok(h, lmtp_mail(h, "s@x", NULL));
    assert_ok(h, lmtp_to(h, "alice@x", NULL));
    assert_ok(h, lmtp_data_start(h));
    assert_ok(h, lmtp_data_write(h, "half a message\n", 15));
    assert_ok(h, lmtp_close(h));
    assert_int_equal(lmtp_is_connected(h), 0);
    assert_int_equal(lmtp_errcode(h), LMTP_OK);
    assert_ok(h, lmtp_close(h));
    assert_status(h, lmtp_noop(h), LMTP_ERR_NOT_CONNECTED);
    assert_status(h, lmtp_data_end(h), LMTP_ERR_NOT_CONNECTED);
    assert_true(fake_wait_idle(f, 1, 2000));
    assert_false(contains(fake_transcript(f, NULL), transcript_len(f), "QUIT"));
    assert_int_equal(fake_message_count(f), 0);
    assert_int_equal(lmtp_result_status(h, 0), LMTP_RESULT_UNKNOWN);

    /* lmtp_free on a connected handle: no QUIT either. */
    assert_ok(h, lmtp_connect(h, fake_host(f), fake_port(f)));
    assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 1, "m", 1, NULL, NULL));
    fx_free(x, h);
    assert_true(fake_wait_idle(f, 2, 2000));
    assert_false(contains(fake_transcript(f, NULL), transcript_len(f), "QUIT"));
    assert_int_equal(fake_message_count(f), 1);
}

/* ---- trace ------------------------------------------------------------------------------------------------ */

/* The trace without the library's own notes (INFO lines). */
static void trace_without_info(const trace_log *t, char *out, size_t cap) {
    size_t o = 0;
    const char *p = t->buf ? t->buf : "";
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) + 1 : strlen(p);
        if (p[0] != 'I' && o + n < cap) {
            memcpy(out + o, p, n);
            o += n;
        }
        p += n;
    }
    out[o] = '\0';
}

static void trace_sees_the_dialogue(void **state) {
    fx *x = *state;
    fake_lmtp *f;
    fake_config c;
    lmtp_options o;
    lmtp_t *h;
    trace_log t, t2;
    char got[4096];
    const char *rcpts[] = {"alice@x", "full@x"};
    int calls;

    memset(&t, 0, sizeof t);
    memset(&t2, 0, sizeof t2);
    test_fake_config(&c);
    f = fx_fake(x, &c);
    test_options(&o);
    o.trace = trace_record;
    o.trace_user = &t;
    h = fx_connect(x, f, &o);
    trace_without_info(&t, got, sizeof got);
    assert_string_equal(got,
                        "R|220 fake.example LMTP ready\n"
                        "S|LHLO " TEST_HELLO "\n"
                        "R|250-fake.example\n"
                        "R|250-PIPELINING\n"
                        "R|250-ENHANCEDSTATUSCODES\n"
                        "R|250 8BITMIME\n");
    assert_true(has(t.buf, "I|")); /* the library's note about the connection */

    t.len = 0;
    t.buf[0] = '\0';
    assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 2, "Subject: t\n\n.dot\r\nend", 21, NULL, NULL));
    trace_without_info(&t, got, sizeof got);
    assert_string_equal(got,
                        "S|MAIL FROM:<s@x>\n"
                        "S|RCPT TO:<alice@x>\n"
                        "S|RCPT TO:<full@x>\n"
                        "S|DATA\n"
                        "R|250 2.1.0 OK\n"
                        "R|250 2.1.5 <alice@x> OK\n"
                        "R|250 2.1.5 <full@x> OK\n"
                        "R|354 go ahead\n"
                        "D|Subject: t\n"
                        "D|\n"
                        "D|.dot\r\n"
                        "D|end\n"
                        "D|.\n"
                        "R|250 2.0.0 <alice@x> Saved\n"
                        "R|552 5.2.2 <full@x> Quota exceeded\n");
    assert_int_equal(t.bad_bytes, 0);

    /* Off. */
    assert_ok(h, lmtp_set_trace(h, NULL, NULL));
    calls = t.calls;
    assert_ok(h, lmtp_noop(h));
    assert_ok(h, lmtp_expand(h, "list"));
    assert_int_equal(t.calls, calls);

    /* On again, with another user pointer. */
    assert_ok(h, lmtp_set_trace(h, trace_record, &t2));
    assert_ok(h, lmtp_expand(h, "list"));
    assert_ok(h, lmtp_quit(h));
    trace_without_info(&t2, got, sizeof got);
    assert_string_equal(got,
                        "S|EXPN list\n"
                        "R|250-2.1.5 alpha <alpha@fake.example>\n"
                        "R|250-2.1.5 beta <beta@fake.example>\n"
                        "R|250 2.1.5 gamma <gamma@fake.example>\n"
                        "S|QUIT\n"
                        "R|221 2.0.0 fake.example closing connection\n");
    assert_int_equal(t.calls, calls);
    assert_int_equal(t2.bad_bytes, 0);
    trace_log_free(&t);
    trace_log_free(&t2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(injection_is_refused_and_nothing_is_sent, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(syntax_that_would_add_parameters, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(bad_hello_option, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(empty_arguments_send_nothing, fx_setup_default, fx_teardown),
        cmocka_unit_test_setup_teardown(empty_recipient_rcpt_to, fx_setup_default, fx_teardown),
        cmocka_unit_test_setup_teardown(empty_recipient_in_deliver, fx_setup_default, fx_teardown),
        cmocka_unit_test_setup_teardown(empty_arguments_are_invalid_argument, fx_setup_default, fx_teardown),
        cmocka_unit_test_setup_teardown(command_line_limit, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(max_command_line_option, fx_setup, fx_teardown),
        cmocka_unit_test(null_handle),
        cmocka_unit_test_setup_teardown(null_strings, fx_setup_default, fx_teardown),
        cmocka_unit_test(strerror_names_every_code),
        cmocka_unit_test(status_names_and_reply_codes),
        cmocka_unit_test(versions_match_the_header),
        cmocka_unit_test_setup_teardown(last_error_resets_after_success, fx_setup_default, fx_teardown),
        cmocka_unit_test(option_initialisers_agree),
        cmocka_unit_test_setup_teardown(older_smaller_option_structs, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(struct_size_zero_is_refused, fx_setup_default, fx_teardown),
        cmocka_unit_test_setup_teardown(lmtp_new_sets_out_for_unusable_options, fx_setup_default, fx_teardown),
        cmocka_unit_test_setup_teardown(option_values_out_of_range, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(notify_unknown_flag, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(unconnected_handle, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(close_drops_without_quit, fx_setup_default, fx_teardown),
        cmocka_unit_test_setup_teardown(trace_sees_the_dialogue, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(canonical_length_of_a_message, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests_name("capi_api", tests, NULL, NULL);
}
