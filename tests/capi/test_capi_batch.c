/*
 * test_capi_batch.c - lmtp_deliver_batch against the fake server: many messages over one
 * connection, pipelined back to back (RFC 2920), each with its own per-recipient results; the
 * round trips they cost (fake_flushes), by BDAT and by DATA; every way a message or the session
 * can fail in the middle of a batch.
 */
#include "capi_test.h"

#include <stdio.h>
#include <stdlib.h>

#define LHLO_LINE "LHLO " TEST_HELLO "\r\n"
#define MAX_SEEN 2000
#define MAX_RCPTS 4

/* What the callback saw of one message. */
typedef struct seen_msg {
    size_t index;
    int status;
    size_t count;                 /* lmtp_result_count */
    int result[MAX_RCPTS];        /* lmtp_result_status */
    int stage[MAX_RCPTS];
    int code[MAX_RCPTS];
    char address[MAX_RCPTS][32];
    char errmsg[160];
} seen_msg;

typedef struct seen {
    seen_msg *m;  /* MAX_SEEN entries */
    size_t n;
    size_t stop_after; /* non-zero: ask to stop at this many calls */
} seen;

static int record(void *user, size_t index, int status) {
    /* The handle is found through the global below: the callback gets only `user`. */
    extern lmtp_t *batch_handle;
    seen *s = user;
    seen_msg *m;
    size_t i;
    assert_true(s->n < MAX_SEEN);
    m = &s->m[s->n++];
    m->index = index;
    m->status = status;
    assert_int_equal(lmtp_errcode(batch_handle), status);
    snprintf(m->errmsg, sizeof m->errmsg, "%s", lmtp_errmsg(batch_handle));
    m->count = lmtp_result_count(batch_handle);
    for (i = 0; i < m->count && i < MAX_RCPTS; i++) {
        m->result[i] = lmtp_result_status(batch_handle, i);
        m->stage[i] = lmtp_result_stage(batch_handle, i);
        m->code[i] = lmtp_result_code(batch_handle, i);
        snprintf(m->address[i], sizeof m->address[i], "%s", lmtp_result_address(batch_handle, i));
    }
    return s->stop_after && s->n >= s->stop_after;
}

lmtp_t *batch_handle;

static seen *new_seen(fx *x) {
    seen *s = fx_alloc(x, sizeof *s);
    memset(s, 0, sizeof *s);
    s->m = fx_alloc(x, MAX_SEEN * sizeof *s->m);
    memset(s->m, 0, MAX_SEEN * sizeof *s->m);
    return s;
}

static lmtp_message_t message(const char *from, const char *const *rcpts, size_t nrcpts, const char *data) {
    lmtp_message_t m = LMTP_MESSAGE_INIT;
    m.from = from;
    m.rcpts = rcpts;
    m.nrcpts = nrcpts;
    m.data = data;
    m.len = data ? strlen(data) : 0;
    return m;
}

static void chunking_config(fake_config *c) {
    test_fake_config(c);
    c->extra_caps = "CHUNKING";
}

static lmtp_t *connect_batch(fx *x, fake_lmtp *f, const lmtp_options *o) {
    batch_handle = fx_connect(x, f, o);
    return batch_handle;
}

static void assert_seen(const seen_msg *m, size_t index, int status, size_t count) {
    if (m->index != index || m->status != status || m->count != count)
        print_error("message %zu: index %zu status %d (%s) results %zu\n", index, m->index, m->status, m->errmsg,
                    m->count);
    assert_int_equal(m->index, index);
    assert_int_equal(m->status, status);
    assert_int_equal(m->count, count);
}

/* ---- round trips ------------------------------------------------------------------------------ */

/* 1,000 messages of 2 KB with CHUNKING: each a pipelined MAIL, RCPT, BDAT LAST and RSET, many to a
   write; each message still gets the verdict the rules give its recipient. */
static void thousand_small_messages_share_round_trips(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    const char *who[] = {"alice@x", "temp@x", "nosuch@x", "full@x"};
    const int want[] = {LMTP_RESULT_OK, LMTP_RESULT_TEMPFAIL, LMTP_RESULT_PERMFAIL, LMTP_RESULT_PERMFAIL};
    const int want_stage[] = {LMTP_STAGE_DATA, LMTP_STAGE_DATA, LMTP_STAGE_RCPT, LMTP_STAGE_DATA};
    enum { N = 1000, SIZE = 2048 };
    lmtp_message_t *msgs = fx_alloc(x, N * sizeof *msgs);
    char *body = fx_alloc(x, SIZE + 1);
    seen *s = new_seen(x);
    size_t i, before, flushes, stored = 0;

    chunking_config(&c);
    c.record_limit = 4096;
    f = fx_fake(x, &c);
    h = connect_batch(x, f, NULL);
    for (i = 0; i < SIZE; i++) body[i] = (char)(i % 64 == 63 ? '\n' : 'a' + (char)(i % 26));
    body[SIZE] = '\0';
    for (i = 0; i < N; i++) msgs[i] = message("s@x", &who[i % 4], 1, body);

    before = fake_flushes(f);
    assert_ok(h, lmtp_deliver_batch(h, msgs, N, record, s));
    flushes = fake_flushes(f) - before;
    print_message("1,000 messages of 2 KB by BDAT: %zu round trips\n", flushes);
    assert_true(flushes < N / 10);
    assert_int_equal(s->n, N);
    for (i = 0; i < N; i++) {
        assert_seen(&s->m[i], i, LMTP_OK, 1);
        assert_string_equal(s->m[i].address[0], who[i % 4]);
        assert_int_equal(s->m[i].result[0], want[i % 4]);
        assert_int_equal(s->m[i].stage[0], want_stage[i % 4]);
        if (i % 4 != 2) stored++;
    }
    assert_int_equal(fake_message_count(f), stored);
    assert_int_equal(fake_lockstep_violations(f), 0);
    assert_int_equal(lmtp_is_connected(h), 1);
    assert_ok(h, lmtp_noop(h));  /* the session goes on */
}

/* By DATA the 354 makes each message wait: one round trip per message, its body going out with the
   next message's MAIL, RCPT and DATA; the body never before its 354. */
static void by_data_one_round_trip_per_message(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    const char *rcpts[] = {"alice@x", "bob@x"};
    enum { N = 50 };
    lmtp_message_t msgs[N];
    seen *s = new_seen(x);
    size_t i, before, mark;

    test_fake_config(&c);
    c.reply_delay_ms = 1;
    f = fx_fake(x, &c);
    h = connect_batch(x, f, NULL);
    for (i = 0; i < N; i++) msgs[i] = message("s@x", rcpts, 2, ".dot\nline\n");
    before = fake_flushes(f);
    mark = transcript_len(f);
    assert_ok(h, lmtp_deliver_batch(h, msgs, N, record, s));
    assert_int_equal(fake_flushes(f) - before, N + 1);
    assert_int_equal(fake_lockstep_violations(f), 0);
    assert_int_equal(s->n, N);
    for (i = 0; i < N; i++) {
        assert_seen(&s->m[i], i, LMTP_OK, 2);
        assert_int_equal(s->m[i].result[0], LMTP_RESULT_OK);
        assert_int_equal(s->m[i].result[1], LMTP_RESULT_OK);
    }
    assert_int_equal(fake_message_count(f), N);
    assert_message(f, N - 1, ".dot\r\nline\r\n");
    {
        size_t len;
        const char *t = fake_transcript(f, &len);
        const char *two = "MAIL FROM:<s@x>\r\nRCPT TO:<alice@x>\r\nRCPT TO:<bob@x>\r\nDATA\r\n"
                          "..dot\r\nline\r\n.\r\nMAIL FROM:<s@x>\r\n";
        assert_true(contains(t + mark, len - mark, two));
    }
}

/* The bound on octets in flight: 1 octet means one message at a time (but each still goes). */
static void max_in_flight_bounds_what_goes_ahead(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    lmtp_options o;
    const char *rcpts[] = {"alice@x"};
    enum { N = 20 };
    lmtp_message_t msgs[N];
    seen *s = new_seen(x);
    size_t i, before;

    chunking_config(&c);
    f = fx_fake(x, &c);
    test_options(&o);
    o.max_in_flight = 1;
    h = connect_batch(x, f, &o);
    for (i = 0; i < N; i++) msgs[i] = message("s@x", rcpts, 1, "small\n");
    before = fake_flushes(f);
    assert_ok(h, lmtp_deliver_batch(h, msgs, N, record, s));
    assert_int_equal(fake_flushes(f) - before, N);
    assert_int_equal(s->n, N);

    /* And the setter: the default again, so the next batch shares its round trips. */
    assert_ok(h, lmtp_set_max_in_flight(h, 0));
    before = fake_flushes(f);
    s->n = 0;
    assert_ok(h, lmtp_deliver_batch(h, msgs, N, record, s));
    assert_true(fake_flushes(f) - before <= 2);
    assert_int_equal(s->n, N);
}

/* ---- refusals, each staying with its message -------------------------------------------------- */

/* A refused MAIL, a message whose recipients are all refused (RFC 2033: no reply to its BDAT
   LAST; the RSET after it keeps the count), a bad address (refused before sending: no results,
   nothing of it sent), a message with neither data nor read: each fails alone. */
static void refusals_stay_with_their_message(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    const char *ok[] = {"alice@x", "temp@x"};
    const char *none[] = {"nosuch@x", "nosuch@x"};
    const char *bad[] = {"evil\r\nRSET@x"};
    lmtp_message_t msgs[6];
    seen *s = new_seen(x);
    size_t mark, len;
    const char *t;

    chunking_config(&c);
    c.fault_on = "MAIL FROM:<refused@x>";
    c.fault_reply = "451 4.3.0 not now\r\n";
    f = fx_fake(x, &c);
    h = connect_batch(x, f, NULL);
    msgs[0] = message("s@x", ok, 2, "one\n");
    msgs[1] = message("refused@x", ok, 2, "two\n");
    msgs[2] = message("s@x", none, 2, "three\n");
    msgs[3] = message("s@x", bad, 1, "four\n");
    msgs[4] = message("s@x", ok, 1, NULL);
    msgs[4].len = 3; /* neither data nor read */
    msgs[5] = message("s@x", ok, 2, "six\n");
    mark = transcript_len(f);
    assert_ok(h, lmtp_deliver_batch(h, msgs, 6, record, s));
    assert_int_equal(s->n, 6);

    assert_seen(&s->m[0], 0, LMTP_OK, 2);
    assert_int_equal(s->m[0].result[0], LMTP_RESULT_OK);
    assert_int_equal(s->m[0].result[1], LMTP_RESULT_TEMPFAIL);
    assert_seen(&s->m[1], 1, LMTP_OK, 2);
    assert_int_equal(s->m[1].result[0], LMTP_RESULT_TEMPFAIL);
    assert_int_equal(s->m[1].stage[0], LMTP_STAGE_MAIL);
    assert_int_equal(s->m[1].code[1], 451);
    assert_seen(&s->m[2], 2, LMTP_OK, 2);
    assert_int_equal(s->m[2].result[0], LMTP_RESULT_PERMFAIL);
    assert_int_equal(s->m[2].stage[1], LMTP_STAGE_RCPT);
    assert_seen(&s->m[3], 3, LMTP_ERR_BAD_INPUT, 0);
    assert_seen(&s->m[4], 4, LMTP_ERR_INVALID_ARGUMENT, 0);
    assert_seen(&s->m[5], 5, LMTP_OK, 2);
    assert_int_equal(s->m[5].result[0], LMTP_RESULT_OK);
    assert_string_equal(s->m[5].address[1], "temp@x");

    t = fake_transcript(f, &len);
    assert_false(contains(t + mark, len - mark, "evil"));
    assert_true(contains(t + mark, len - mark,
                         "RCPT TO:<nosuch@x>\r\nBDAT 7 LAST\r\nthree\r\nRSET\r\nMAIL FROM:<s@x>\r\n"));
    assert_int_equal(fake_message_count(f), 2);
    assert_message(f, 1, "six\r\n");
    /* After the batch the results are those of the last message the server answered. */
    assert_int_equal(lmtp_result_count(h), 2);
    assert_string_equal(lmtp_result_address(h, 0), "alice@x");
    assert_int_equal(lmtp_errcode(h), LMTP_OK);
}

/* A refused chunk (the fake refuses the 2nd chunk of every transaction) is that message's verdict;
   no LAST follows it, and RSET goes before the next MAIL. */
static void refused_chunk_stays_with_its_message(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    lmtp_options o;
    const char *rcpts[] = {"alice@x", "bob@x"};
    lmtp_message_t msgs[3];
    seen *s = new_seen(x);
    size_t mark;

    chunking_config(&c);
    c.bdat_fail_chunk = 2;
    f = fx_fake(x, &c);
    test_options(&o);
    o.bdat_chunk_size = 16;
    h = connect_batch(x, f, &o);
    msgs[0] = message("s@x", rcpts, 2, "short\n");
    msgs[1] = message("s@x", rcpts, 2, "a message longer than two chunks of sixteen\n");
    msgs[2] = message("s@x", rcpts, 2, "short again\n");
    mark = transcript_len(f);
    assert_ok(h, lmtp_deliver_batch(h, msgs, 3, record, s));
    assert_int_equal(s->n, 3);
    assert_int_equal(s->m[0].result[1], LMTP_RESULT_OK);
    assert_int_equal(s->m[1].result[0], LMTP_RESULT_PERMFAIL);
    assert_int_equal(s->m[1].code[1], 552);
    assert_int_equal(s->m[1].stage[1], LMTP_STAGE_DATA);
    assert_int_equal(s->m[2].result[0], LMTP_RESULT_OK);
    assert_int_equal(s->m[2].result[1], LMTP_RESULT_OK);
#define GROUP "MAIL FROM:<s@x>\r\nRCPT TO:<alice@x>\r\nRCPT TO:<bob@x>\r\n"
    assert_transcript_from(f, mark,
                           GROUP "BDAT 7 LAST\r\nshort\r\nRSET\r\n"
                           GROUP "BDAT 16\r\na message longerBDAT 16\r\n than two chunksRSET\r\n"
                           GROUP "BDAT 13 LAST\r\nshort again\r\nRSET\r\n");
#undef GROUP
    assert_int_equal(fake_message_count(f), 2);
    assert_message(f, 1, "short again\r\n");
}

/* ---- the session ending in the middle ------------------------------------------------------------ */

/* A 421 in answer to a MAIL in the middle: the messages before have their verdicts, that message
   the 421, the later ones LMTP_ERR_CLOSED and UNKNOWN; the call returns LMTP_ERR_CLOSED. */
static void reply_421_in_the_middle(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    const char *rcpts[] = {"alice@x", "bob@x"};
    lmtp_message_t msgs[8];
    seen *s = new_seen(x);
    size_t i;

    chunking_config(&c);
    c.fault_on = "MAIL FROM:<s3@x>";
    c.fault_reply = "421 4.3.2 shutting down\r\n";
    c.fault_action = FAKE_CLOSE;
    f = fx_fake(x, &c);
    h = connect_batch(x, f, NULL);
    for (i = 0; i < 8; i++) msgs[i] = message(i == 3 ? "s3@x" : "s@x", rcpts, 2, "m\n");
    assert_status(h, lmtp_deliver_batch(h, msgs, 8, record, s), LMTP_ERR_CLOSED);
    assert_int_equal(s->n, 8);
    for (i = 0; i < 3; i++) {
        assert_seen(&s->m[i], i, LMTP_OK, 2);
        assert_int_equal(s->m[i].result[1], LMTP_RESULT_OK);
    }
    assert_seen(&s->m[3], 3, LMTP_OK, 2);
    assert_int_equal(s->m[3].code[0], 421);
    assert_int_equal(s->m[3].stage[1], LMTP_STAGE_MAIL);
    for (i = 4; i < 8; i++) {
        assert_seen(&s->m[i], i, LMTP_ERR_CLOSED, 2);
        assert_int_equal(s->m[i].result[0], LMTP_RESULT_UNKNOWN);
        assert_int_equal(s->m[i].result[1], LMTP_RESULT_UNKNOWN);
    }
    assert_int_equal(lmtp_is_connected(h), 0);
    assert_int_equal(fake_message_count(f), 3);
}

/* The server closes at the end of the third message (its message stored, no replies) with more
   in flight: the first two have their verdicts, the rest are UNKNOWN. */
static void close_with_several_in_flight(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    const char *rcpts[] = {"alice@x", "temp@x"};
    lmtp_message_t msgs[6];
    seen *s = new_seen(x);
    size_t i;

    chunking_config(&c);
    c.fault_on = ".";
    c.fault_skip = 2;
    c.fault_action = FAKE_CLOSE;
    f = fx_fake(x, &c);
    h = connect_batch(x, f, NULL);
    for (i = 0; i < 6; i++) msgs[i] = message("s@x", rcpts, 2, "m\n");
    assert_status(h, lmtp_deliver_batch(h, msgs, 6, record, s), LMTP_ERR_CLOSED);
    assert_int_equal(s->n, 6);
    for (i = 0; i < 2; i++) {
        assert_seen(&s->m[i], i, LMTP_OK, 2);
        assert_int_equal(s->m[i].result[0], LMTP_RESULT_OK);
        assert_int_equal(s->m[i].result[1], LMTP_RESULT_TEMPFAIL);
    }
    for (i = 2; i < 6; i++) {
        assert_seen(&s->m[i], i, LMTP_ERR_CLOSED, 2);
        assert_int_equal(s->m[i].result[0], LMTP_RESULT_UNKNOWN);
        assert_string_equal(s->m[i].address[1], "temp@x");
    }
    assert_int_equal(lmtp_is_connected(h), 0);
}

/* A batch on a handle that is not connected: every message gets LMTP_ERR_NOT_CONNECTED. */
static void not_connected(void **state) {
    fx *x = *state;
    lmtp_t *h = NULL;
    const char *rcpts[] = {"alice@x"};
    lmtp_message_t msgs[2];
    seen *s = new_seen(x);

    assert_ok(h, lmtp_create(&h, NULL));
    fx_keep(x, h);
    batch_handle = h;
    msgs[0] = message("s@x", rcpts, 1, "m\n");
    msgs[1] = msgs[0];
    assert_status(h, lmtp_deliver_batch(h, msgs, 2, record, s), LMTP_ERR_NOT_CONNECTED);
    assert_int_equal(s->n, 2);
    assert_seen(&s->m[1], 1, LMTP_ERR_NOT_CONNECTED, 1);
    assert_int_equal(s->m[1].result[0], LMTP_RESULT_UNKNOWN);
    assert_int_equal(lmtp_deliver_batch(NULL, msgs, 2, record, s), LMTP_ERR_INVALID_ARGUMENT);
}

/* ---- streams, stopping, arguments ------------------------------------------------------------------ */

typedef struct reader {
    const char *text;
    size_t off;
    int fail;
} reader;

static long read_text(void *user, void *buf, size_t cap) {
    reader *r = user;
    size_t n = strlen(r->text) - r->off;
    if (r->fail) return -1;
    if (n > cap) n = cap;
    memcpy(buf, r->text + r->off, n);
    r->off += n;
    return (long)n;
}

/* Streamed messages are read as they are sent; one whose read fails before anything of it went out
   fails alone (LMTP_ERR_ABORTED) and the batch goes on. */
static void streamed_messages_and_a_failing_read(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    const char *rcpts[] = {"alice@x"};
    reader r[3] = {{"first\n", 0, 0}, {"never\n", 0, 1}, {"third\n", 0, 0}};
    lmtp_message_t msgs[3];
    seen *s = new_seen(x);
    size_t i;

    chunking_config(&c);
    f = fx_fake(x, &c);
    h = connect_batch(x, f, NULL);
    for (i = 0; i < 3; i++) {
        lmtp_message_init(&msgs[i]);
        msgs[i].from = "s@x";
        msgs[i].rcpts = rcpts;
        msgs[i].nrcpts = 1;
        msgs[i].read = read_text;
        msgs[i].read_user = &r[i];
    }
    assert_ok(h, lmtp_deliver_batch(h, msgs, 3, record, s));
    assert_seen(&s->m[0], 0, LMTP_OK, 1);
    assert_seen(&s->m[1], 1, LMTP_ERR_ABORTED, 0);
    assert_seen(&s->m[2], 2, LMTP_OK, 1);
    assert_int_equal(fake_message_count(f), 2);
    assert_message(f, 1, "third\r\n");
    assert_int_equal(lmtp_is_connected(h), 1);
}

/* The callback stops the batch: the messages already sent still get their callbacks, no later
   message is sent, and the call says LMTP_ERR_ABORTED. */
static void callback_stops_the_batch(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    lmtp_options o;
    const char *rcpts[] = {"alice@x"};
    lmtp_message_t msgs[5];
    seen *s = new_seen(x);
    size_t i;

    chunking_config(&c);
    f = fx_fake(x, &c);
    test_options(&o);
    o.max_in_flight = 1;
    h = connect_batch(x, f, &o);
    for (i = 0; i < 5; i++) msgs[i] = message("s@x", rcpts, 1, "m\n");
    s->stop_after = 2;
    assert_status(h, lmtp_deliver_batch(h, msgs, 5, record, s), LMTP_ERR_ABORTED);
    assert_int_equal(s->n, 2);
    assert_int_equal(fake_message_count(f), 2);
    assert_int_equal(lmtp_is_connected(h), 1);
    assert_ok(h, lmtp_noop(h));
    /* A NULL callback: the messages go all the same. */
    assert_ok(h, lmtp_deliver_batch(h, msgs, 5, NULL, NULL));
    assert_int_equal(fake_message_count(f), 7);
}

/* Without PIPELINING the messages go one after the other, each with its results. */
static void without_pipelining(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    const char *rcpts[] = {"alice@x", "nosuch@x"};
    const char *bad[] = {"a\nb@x"};
    lmtp_message_t msgs[3];
    seen *s = new_seen(x);

    test_fake_config(&c);
    c.pipelining = 0;
    f = fx_fake(x, &c);
    h = connect_batch(x, f, NULL);
    msgs[0] = message("s@x", rcpts, 2, "one\n");
    msgs[1] = message("s@x", bad, 1, "two\n");
    msgs[2] = message("s@x", rcpts, 2, "three\n");
    assert_ok(h, lmtp_deliver_batch(h, msgs, 3, record, s));
    assert_seen(&s->m[0], 0, LMTP_OK, 2);
    assert_int_equal(s->m[0].result[1], LMTP_RESULT_PERMFAIL);
    assert_seen(&s->m[1], 1, LMTP_ERR_BAD_INPUT, 0);
    assert_seen(&s->m[2], 2, LMTP_OK, 2);
    assert_int_equal(fake_lockstep_violations(f), 0);
    assert_int_equal(fake_message_count(f), 2);
}

/* Without PIPELINING, by BDAT: each message in lockstep (the chunks once its recipients are known,
   none when nobody was accepted, RSET before the next MAIL then), an empty one by DATA. */
static void without_pipelining_by_bdat(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    const char *rcpts[] = {"alice@x", "nosuch@x"};
    const char *nobody[] = {"nosuch@x"};
    const char *transcript;
    lmtp_message_t msgs[4];
    seen *s = new_seen(x);

    chunking_config(&c);
    c.pipelining = 0;
    f = fx_fake(x, &c);
    h = connect_batch(x, f, NULL);
    msgs[0] = message("s@x", rcpts, 2, "one\n");
    msgs[1] = message("s@x", nobody, 1, "two\n");
    msgs[2] = message("s@x", rcpts, 2, "");
    msgs[3] = message("s@x", rcpts, 2, "four\n");
    assert_ok(h, lmtp_deliver_batch(h, msgs, 4, record, s));
    assert_int_equal(s->n, 4);
    assert_seen(&s->m[0], 0, LMTP_OK, 2);
    assert_int_equal(s->m[0].result[0], LMTP_RESULT_OK);
    assert_int_equal(s->m[0].result[1], LMTP_RESULT_PERMFAIL);
    assert_seen(&s->m[1], 1, LMTP_OK, 1);
    assert_int_equal(s->m[1].result[0], LMTP_RESULT_PERMFAIL);
    assert_seen(&s->m[2], 2, LMTP_OK, 2);
    assert_int_equal(s->m[2].result[0], LMTP_RESULT_OK);
    assert_seen(&s->m[3], 3, LMTP_OK, 2);
    assert_int_equal(s->m[3].result[0], LMTP_RESULT_OK);
    assert_int_equal(fake_lockstep_violations(f), 0);
    assert_int_equal(fake_message_count(f), 3);
    assert_message(f, 0, "one\r\n");
    assert_message(f, 1, "");
    assert_message(f, 2, "four\r\n");
    transcript = fake_transcript(f, NULL);
    assert_non_null(strstr(transcript, "RCPT TO:<nosuch@x>\r\n"));
    assert_null(strstr(transcript, "NOOP"));
    assert_non_null(strstr(transcript, "RSET\r\n"));
    /* The results of lmtp_deliver afterwards describe it alone, in lockstep too. */
    assert_ok(h, lmtp_deliver(h, "s@x", nobody, 1, "five\n", 5, NULL, NULL));
    assert_int_equal(lmtp_result_count(h), 1);
    assert_int_equal(lmtp_result_status(h, 0), LMTP_RESULT_PERMFAIL);
    assert_int_equal(fake_lockstep_violations(f), 0);
}

/* The message struct: its INIT and init function agree; a struct_size not set fails that message. */
static void message_struct(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    lmtp_message_t a = LMTP_MESSAGE_INIT, b;
    const char *rcpts[] = {"alice@x"};
    lmtp_message_t msgs[2];
    seen *s = new_seen(x);

    memset(&b, 0x5a, sizeof b);
    lmtp_message_init(&b);
    assert_memory_equal(&a, &b, sizeof a);
    assert_int_equal(a.struct_size, sizeof(struct lmtp_message));
    lmtp_message_init(NULL);

    chunking_config(&c);
    f = fx_fake(x, &c);
    h = connect_batch(x, f, NULL);
    msgs[0] = message("s@x", rcpts, 1, "m\n");
    msgs[0].struct_size = 0;
    msgs[1] = message("s@x", rcpts, 1, "");  /* an empty message goes by DATA */
    assert_ok(h, lmtp_deliver_batch(h, msgs, 2, record, s));
    assert_seen(&s->m[0], 0, LMTP_ERR_INVALID_ARGUMENT, 0);
    assert_has(s->m[0].errmsg, "struct_size");
    assert_seen(&s->m[1], 1, LMTP_OK, 1);
    assert_int_equal(s->m[1].result[0], LMTP_RESULT_OK);
    assert_message(f, 0, "");
    assert_status(h, lmtp_deliver_batch(h, NULL, 1, record, s), LMTP_ERR_INVALID_ARGUMENT);
    assert_ok(h, lmtp_deliver_batch(h, NULL, 0, record, s));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(thousand_small_messages_share_round_trips, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(by_data_one_round_trip_per_message, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(max_in_flight_bounds_what_goes_ahead, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(refusals_stay_with_their_message, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(refused_chunk_stays_with_its_message, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(reply_421_in_the_middle, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(close_with_several_in_flight, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(not_connected, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(streamed_messages_and_a_failing_read, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(callback_stops_the_batch, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(without_pipelining, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(without_pipelining_by_bdat, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(message_struct, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests_name("capi_batch", tests, NULL, NULL);
}
