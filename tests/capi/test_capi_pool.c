/*
 * The delivery pool (lmtp_pool_*): many messages over K connections, retries of 4xx, breaks,
 * stalls, refused and dead servers, the non-blocking face in a poll() loop, the callback rules
 * and lmtp_pool_free with messages pending.
 */
#include "capi_test.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>

#define MAXR 4
#define MAXM 64

/* What one message's callback saw. */
typedef struct seen {
    int calls;
    int status;
    size_t index;
    size_t count;
    int result[MAXR];
    int code[MAXR];
    int attempts[MAXR];
    char address[MAXR][32];
    char errmsg[256];
} seen;

typedef struct book {
    seen m[MAXM];
    int total;
    lmtp_pool *pool;
    /* what a callback tries (callback rules) */
    int try_rules;
    int process_status, deliver_status, close_status, submit_status;
    int free_inside;
    struct lmtp_message extra;
} book;

static const char *const RCPTS3[] = {"alice@x", "nosuch@x", "full@x"};
static const char BODY[] = "Subject: pool\n\nhello\n";

static void done_cb(void *user, lmtp_pool *p, size_t index, lmtp_t *r, int status) {
    book *b = user;
    seen *s;
    size_t i;
    assert_true(index < MAXM);
    s = &b->m[index];
    s->calls++;
    b->total++;
    s->status = status;
    s->index = index;
    assert_int_equal(lmtp_errcode(r), status);
    snprintf(s->errmsg, sizeof s->errmsg, "%s", lmtp_errmsg(r));
    s->count = lmtp_result_count(r);
    for (i = 0; i < s->count && i < MAXR; i++) {
        s->result[i] = lmtp_result_status(r, i);
        s->code[i] = lmtp_result_code(r, i);
        s->attempts[i] = lmtp_result_attempts(r, i);
        snprintf(s->address[i], sizeof s->address[i], "%s", lmtp_result_address(r, i));
    }
    assert_int_equal(lmtp_result_attempts(r, s->count), 0);
    if (b->try_rules) {
        int fd = 0, ev = 0;
        b->try_rules = 0;
        b->process_status = lmtp_pool_process(p, &fd, &ev, 0);
        b->deliver_status = lmtp_pool_deliver(p, NULL, 0, done_cb, b);
        b->close_status = lmtp_close(r);
        lmtp_free(r); /* ignored: r is the pool's */
        b->submit_status = lmtp_pool_submit(p, &b->extra, done_cb, b, NULL);
    }
    if (b->free_inside) {
        b->free_inside = 0;
        lmtp_pool_free(p);
    }
}

static void message(struct lmtp_message *m, const char *const *rcpts, size_t n) {
    lmtp_message_init(m);
    m->from = "sender@x";
    m->rcpts = rcpts;
    m->nrcpts = n;
    m->data = BODY;
    m->len = sizeof BODY - 1;
}

static lmtp_pool *new_pool(book *b, const lmtp_pool_options *po, unsigned timeout_ms) {
    lmtp_options o;
    lmtp_pool *p = NULL;
    test_options(&o);
    if (timeout_ms) o.timeout_ms = timeout_ms;
    assert_int_equal(lmtp_pool_new(&p, &o, po), LMTP_OK);
    assert_non_null(p);
    b->pool = p;
    return p;
}

static void add(lmtp_pool *p, fake_lmtp *f) {
    assert_int_equal(lmtp_pool_add_server(p, fake_host(f), fake_port(f)), LMTP_OK);
}

/* A fresh book, a fake server with `c` and a pool to it (the fake in *f). */
static lmtp_pool *start_case(fx *x, book *b, const fake_config *c, const lmtp_pool_options *po, unsigned timeout_ms,
                             fake_lmtp **f) {
    lmtp_pool *p;
    memset(b, 0, sizeof *b);
    *f = fx_fake(x, c);
    p = new_pool(b, po, timeout_ms);
    add(p, *f);
    return p;
}

/* The test defaults plus a fault (fake_lmtp.h: fault_on, fault_skip, fault_times, fault_action). */
static void fault_config(fake_config *c, const char *on, unsigned long skip, unsigned long times, int action) {
    test_fake_config(c);
    c->fault_on = on;
    c->fault_skip = skip;
    c->fault_times = times;
    c->fault_action = action;
}

/* A port where nobody listens. */
static unsigned dead_port(fx *x) {
    fake_config c;
    fake_lmtp *f;
    unsigned port;
    fake_config_init(&c);
    f = fx_fake(x, &c);
    port = fake_port(f);
    fx_stop(x, f);
    return port;
}

static size_t count_of(const char *hay, size_t len, const char *needle) {
    size_t n = 0, k = strlen(needle), i;
    for (i = 0; i + k <= len; i++)
        if (memcmp(hay + i, needle, k) == 0) n++;
    return n;
}

/* 40 messages over 4 connections, blocking: each callback once, results in the order given. */
static void blocking_many(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_pool_options po = LMTP_POOL_OPTIONS_INIT;
    struct lmtp_message msgs[40];
    book *b = fx_alloc(x, sizeof *b);
    lmtp_pool *p;
    int i;
    test_fake_config(&c);
    c.reply_delay_ms = 5;
    po.connections = 4;
    po.mailbox_concurrency = 40;
    p = start_case(x, b, &c, &po, 0, &f);
    for (i = 0; i < 40; i++) message(&msgs[i], RCPTS3, 3);
    assert_int_equal(lmtp_pool_deliver(p, msgs, 40, done_cb, b), LMTP_OK);
    assert_int_equal(b->total, 40);
    assert_int_equal(lmtp_pool_pending(p), 0);
    for (i = 0; i < 40; i++) {
        seen *s = &b->m[i];
        assert_int_equal(s->calls, 1);
        assert_int_equal(s->status, LMTP_OK);
        assert_int_equal(s->count, 3);
        assert_string_equal(s->address[0], "alice@x");
        assert_string_equal(s->address[1], "nosuch@x");
        assert_string_equal(s->address[2], "full@x");
        assert_int_equal(s->result[0], LMTP_RESULT_OK);
        assert_int_equal(s->result[1], LMTP_RESULT_PERMFAIL);
        assert_int_equal(s->code[1], 550);
        assert_int_equal(s->result[2], LMTP_RESULT_PERMFAIL);
        assert_int_equal(s->code[2], 552);
        assert_int_equal(s->attempts[0], 1);
    }
    assert_int_equal(fake_message_count(f), 40);
    assert_true(fake_connections(f) > 1);
    assert_true(fake_connections(f) <= 4);
    /* The connections are kept for the next call. */
    {
        size_t before = fake_connections(f);
        memset(b, 0, sizeof *b);
        b->pool = p;
        assert_int_equal(lmtp_pool_deliver(p, msgs, 4, done_cb, b), LMTP_OK);
        assert_int_equal(b->total, 4);
        assert_int_equal(fake_connections(f), before);
    }
    lmtp_pool_free(p);
}

/* A 451 answered twice after the message, and a 451 at RCPT once: retried until 250, only those
   recipients in the re-sends, attempts counted. */
static void retries_until_ok(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_pool_options po = LMTP_POOL_OPTIONS_INIT;
    struct lmtp_message m;
    static const char *const rcpts[] = {"alice@x", "later@x", "busy@x"};
    book *b = fx_alloc(x, sizeof *b);
    lmtp_pool *p;
    size_t len;
    const char *t;
    long t0 = now_ms();
    fake_config_init(&c);
    c.rules = "later@x=250,451*2;busy@x=451*1";
    po.retry_delay_ms = 30;
    p = start_case(x, b, &c, &po, 0, &f);
    message(&m, rcpts, 3);
    assert_int_equal(lmtp_pool_deliver(p, &m, 1, done_cb, b), LMTP_OK);
    assert_int_equal(b->m[0].calls, 1);
    assert_int_equal(b->m[0].status, LMTP_OK);
    assert_int_equal(b->m[0].result[0], LMTP_RESULT_OK);
    assert_int_equal(b->m[0].result[1], LMTP_RESULT_OK);
    assert_int_equal(b->m[0].result[2], LMTP_RESULT_OK);
    assert_int_equal(b->m[0].attempts[0], 1);
    assert_int_equal(b->m[0].attempts[1], 3);
    assert_int_equal(b->m[0].attempts[2], 2);
    /* 30 ms, then 60 ms between the tries. */
    assert_true(now_ms() - t0 >= 90);
    t = fake_transcript(f, &len);
    assert_int_equal(count_of(t, len, "RCPT TO:<alice@x>"), 1);
    assert_int_equal(count_of(t, len, "RCPT TO:<later@x>"), 3);
    assert_int_equal(count_of(t, len, "RCPT TO:<busy@x>"), 2);
    lmtp_pool_free(p);

    /* Retries spent: the last 451 stays. */
    fake_config_init(&c);
    c.rules = "temp@x=250,451";
    po.retries = 2;
    po.retry_delay_ms = 10;
    p = start_case(x, b, &c, &po, 0, &f);
    {
        static const char *const one[] = {"temp@x"};
        message(&m, one, 1);
    }
    assert_int_equal(lmtp_pool_deliver(p, &m, 1, done_cb, b), LMTP_OK);
    assert_int_equal(b->m[0].status, LMTP_OK);
    assert_int_equal(b->m[0].result[0], LMTP_RESULT_TEMPFAIL);
    assert_int_equal(b->m[0].code[0], 451);
    assert_int_equal(b->m[0].attempts[0], 3);
    assert_int_equal(fake_message_count(f), 3);
    lmtp_pool_free(p);
}

/* The server drops the connection instead of the final replies of the 3rd message: its recipients
   are unknown (its end was written) and never sent again; the others are delivered over a new
   connection. */
static void killed_mid_run(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_pool_options po = LMTP_POOL_OPTIONS_INIT;
    struct lmtp_message msgs[6];
    static const char *const rcpts[] = {"alice@x", "bob@x"};
    book *b = fx_alloc(x, sizeof *b);
    lmtp_pool *p;
    int i, unknown = 0;
    fault_config(&c, ".", 2, 1, FAKE_CLOSE);
    po.connections = 1;
    p = start_case(x, b, &c, &po, 0, &f);
    for (i = 0; i < 6; i++) message(&msgs[i], rcpts, 2);
    assert_int_equal(lmtp_pool_deliver(p, msgs, 6, done_cb, b), LMTP_OK);
    assert_int_equal(b->total, 6);
    for (i = 0; i < 6; i++) {
        assert_int_equal(b->m[i].calls, 1);
        if (b->m[i].result[0] == LMTP_RESULT_UNKNOWN) {
            unknown++;
            /* The break's status: the server closed the connection after the message's end. */
            assert_int_equal(b->m[i].status, LMTP_ERR_CLOSED);
            assert_true(b->m[i].errmsg[0] != '\0');
            assert_int_equal(b->m[i].result[1], LMTP_RESULT_UNKNOWN);
            assert_int_equal(b->m[i].attempts[0], 1);
        } else {
            assert_int_equal(b->m[i].status, LMTP_OK);
            assert_int_equal(b->m[i].result[0], LMTP_RESULT_OK);
            assert_int_equal(b->m[i].result[1], LMTP_RESULT_OK);
        }
    }
    assert_int_equal(unknown, 1);
    assert_int_equal(fake_message_count(f), 6); /* the lost one was stored, never sent again */
    assert_int_equal(fake_connections(f), 2);
    lmtp_pool_free(p);

    /* Broken before the end (at DATA): the server cannot have it: sent again, delivered. */
    fault_config(&c, "DATA", 1, 1, FAKE_CLOSE);
    p = start_case(x, b, &c, &po, 0, &f);
    assert_int_equal(lmtp_pool_deliver(p, msgs, 3, done_cb, b), LMTP_OK);
    for (i = 0; i < 3; i++) {
        assert_int_equal(b->m[i].status, LMTP_OK);
        assert_int_equal(b->m[i].result[0], LMTP_RESULT_OK);
    }
    assert_int_equal(b->m[1].attempts[0], 2);
    assert_int_equal(fake_message_count(f), 3);
    lmtp_pool_free(p);

    /* A poison message: every connection breaks before its end: reported with the break. */
    fault_config(&c, "DATA", 0, 0, FAKE_CLOSE);
    po.retries = 2;
    p = start_case(x, b, &c, &po, 0, &f);
    assert_int_equal(lmtp_pool_deliver(p, msgs, 1, done_cb, b), LMTP_OK);
    assert_int_equal(b->m[0].calls, 1);
    assert_int_equal(b->m[0].status, LMTP_ERR_CLOSED);
    assert_int_equal(b->m[0].result[0], LMTP_RESULT_UNKNOWN);
    assert_int_equal(b->m[0].attempts[0], 3);
    assert_int_equal(fake_connections(f), 3);
    lmtp_pool_free(p);
}

/* A server that stops answering after a message: the deadline ends that connection, its message's
   recipients are unknown; the next message goes over a new connection. */
static void stalling_server(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_pool_options po = LMTP_POOL_OPTIONS_INIT;
    struct lmtp_message msgs[3];
    static const char *const rcpts[] = {"alice@x"};
    book *b = fx_alloc(x, sizeof *b);
    lmtp_pool *p;
    int i;
    long t0 = now_ms();
    fault_config(&c, ".", 0, 1, FAKE_HANG);
    po.connections = 1;
    p = start_case(x, b, &c, &po, 300, &f);
    for (i = 0; i < 3; i++) message(&msgs[i], rcpts, 1);
    assert_int_equal(lmtp_pool_deliver(p, msgs, 3, done_cb, b), LMTP_OK);
    assert_int_equal(b->total, 3);
    assert_int_equal(b->m[0].result[0], LMTP_RESULT_UNKNOWN);
    assert_int_equal(b->m[0].status, LMTP_ERR_TIMEOUT);
    assert_int_equal(b->m[1].result[0], LMTP_RESULT_OK);
    assert_int_equal(b->m[1].status, LMTP_OK);
    assert_int_equal(b->m[2].result[0], LMTP_RESULT_OK);
    assert_true(now_ms() - t0 >= 290);
    assert_true(now_ms() - t0 < (test_under_valgrind() ? 20000 : 3000));
    assert_int_equal(fake_connections(f), 2);
    lmtp_pool_free(p);
}

/* Runs the non-blocking loop until nothing is pending; returns the loop's turns. `timeouts` gets
   the largest lmtp_pool_timeout_ms seen with no socket to wait on. */
static int run_loop(lmtp_pool *p, long max_ms, int *max_idle_timeout) {
    long t0 = now_ms();
    int turns = 0;
    while (lmtp_pool_pending(p) > 0 && now_ms() - t0 < max_ms) {
        int fds[16], wants[16], rfds[16], revs[16];
        struct pollfd pf[16];
        size_t n = lmtp_pool_fds(p, fds, wants, 16), i, k = 0;
        int timeout = lmtp_pool_timeout_ms(p);
        assert_true(n <= 16);
        if (n == 0 && max_idle_timeout && timeout > *max_idle_timeout) *max_idle_timeout = timeout;
        for (i = 0; i < n; i++) {
            pf[i].fd = fds[i];
            pf[i].events = (short)(((wants[i] & LMTP_IO_READ) ? POLLIN : 0) | ((wants[i] & LMTP_IO_WRITE) ? POLLOUT : 0));
            pf[i].revents = 0;
        }
        if (timeout < 0 || timeout > 1000) timeout = 1000;
        if (poll(pf, (nfds_t)n, timeout) > 0) {
            for (i = 0; i < n; i++) {
                int ev = 0;
                if (pf[i].revents & (POLLIN | POLLHUP | POLLERR)) ev |= LMTP_IO_READ;
                if (pf[i].revents & POLLOUT) ev |= LMTP_IO_WRITE;
                if (ev) {
                    rfds[k] = pf[i].fd;
                    revs[k++] = ev;
                }
            }
        }
        assert_int_equal(lmtp_pool_process(p, rfds, revs, k), LMTP_OK);
        turns++;
    }
    return turns;
}

/* Nobody listens: the back-off shows in lmtp_pool_timeout_ms (no spinning), then each message
   gets LMTP_ERR_CONNECT and no results. */
static void refused_back_off(void **state) {
    fx *x = *state;
    lmtp_pool_options po = LMTP_POOL_OPTIONS_INIT;
    struct lmtp_message m[2];
    static const char *const rcpts[] = {"alice@x"};
    book *b = fx_alloc(x, sizeof *b);
    lmtp_pool *p;
    unsigned port = dead_port(x);
    int turns, max_timeout = 0;
    size_t idx = 99;
    long t0 = now_ms();
    memset(b, 0, sizeof *b);
    po.retries = 2; /* three rounds */
    po.retry_delay_ms = 100;
    p = new_pool(b, &po, 0);
    assert_int_equal(lmtp_pool_add_server(p, "127.0.0.1", port), LMTP_OK);
    message(&m[0], rcpts, 1);
    message(&m[1], rcpts, 1);
    assert_int_equal(lmtp_pool_submit(p, &m[0], done_cb, b, &idx), LMTP_OK);
    assert_int_equal(idx, 0);
    assert_int_equal(lmtp_pool_submit(p, &m[1], done_cb, b, &idx), LMTP_OK);
    assert_int_equal(idx, 1);
    assert_int_equal(lmtp_pool_pending(p), 2);
    turns = run_loop(p, 5000, &max_timeout);
    assert_int_equal(lmtp_pool_pending(p), 0);
    assert_true(max_timeout >= 150); /* the second back-off: 200 ms */
    assert_true(turns < 30);
    assert_true(now_ms() - t0 >= 290);
    assert_int_equal(b->m[0].calls, 1);
    assert_int_equal(b->m[1].calls, 1);
    assert_int_equal(b->m[0].status, LMTP_ERR_CONNECT);
    assert_int_equal(b->m[0].count, 0);
    assert_int_equal(b->m[1].status, LMTP_ERR_CONNECT);
    lmtp_pool_free(p);
}

/* The first server is down: the second takes the messages. */
static void first_server_down(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    struct lmtp_message msgs[5];
    book *b = fx_alloc(x, sizeof *b);
    lmtp_pool *p;
    unsigned port = dead_port(x);
    int i;
    memset(b, 0, sizeof *b);
    test_fake_config(&c);
    f = fx_fake(x, &c);
    p = new_pool(b, NULL, 0);
    assert_int_equal(lmtp_pool_add_server(p, "127.0.0.1", port), LMTP_OK);
    add(p, f);
    for (i = 0; i < 5; i++) message(&msgs[i], RCPTS3, 3);
    assert_int_equal(lmtp_pool_deliver(p, msgs, 5, done_cb, b), LMTP_OK);
    for (i = 0; i < 5; i++) {
        assert_int_equal(b->m[i].status, LMTP_OK);
        assert_int_equal(b->m[i].result[0], LMTP_RESULT_OK);
    }
    assert_int_equal(fake_message_count(f), 5);
    lmtp_pool_free(p);
}

/* Non-blocking: messages submitted, a poll() loop over lmtp_pool_fds; the callback rules. */
static void nonblocking_loop(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_pool_options po = LMTP_POOL_OPTIONS_INIT;
    struct lmtp_message m;
    book *b = fx_alloc(x, sizeof *b);
    lmtp_pool *p;
    int i;
    test_fake_config(&c);
    c.reply_delay_ms = 2;
    po.connections = 3;
    p = start_case(x, b, &c, &po, 0, &f);
    message(&m, RCPTS3, 3);
    message(&b->extra, RCPTS3, 1);
    b->try_rules = 1;
    for (i = 0; i < 10; i++) {
        size_t idx = 0;
        assert_int_equal(lmtp_pool_submit(p, &m, done_cb, b, &idx), LMTP_OK);
        assert_int_equal(idx, (size_t)i);
    }
    assert_true(lmtp_pool_fds(p, NULL, NULL, 0) >= 1); /* a connection started */
    run_loop(p, 10000, NULL);
    assert_int_equal(lmtp_pool_pending(p), 0);
    assert_int_equal(b->total, 11); /* the one submitted inside a callback too */
    for (i = 0; i < 11; i++) {
        assert_int_equal(b->m[i].calls, 1);
        assert_int_equal(b->m[i].status, LMTP_OK);
        assert_int_equal(b->m[i].result[0], LMTP_RESULT_OK);
    }
    assert_int_equal(b->m[10].count, 1);
    assert_int_equal(b->process_status, LMTP_ERR_BAD_SEQUENCE);
    assert_int_equal(b->deliver_status, LMTP_ERR_BAD_SEQUENCE);
    assert_int_equal(b->close_status, LMTP_ERR_BAD_SEQUENCE);
    assert_int_equal(b->submit_status, LMTP_OK);
    assert_true(fake_connections(f) <= 3);
    lmtp_pool_free(p);
}

/* lmtp_pool_free with messages pending: each callback once, LMTP_ERR_CLOSED; and inside a callback. */
static void free_with_pending(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    struct lmtp_message m;
    book *b = fx_alloc(x, sizeof *b);
    lmtp_pool *p;
    int i;
    test_fake_config(&c);
    c.fault_on = "";
    c.fault_action = FAKE_HANG; /* no banner: nothing goes */
    p = start_case(x, b, &c, NULL, 0, &f);
    message(&m, RCPTS3, 3);
    for (i = 0; i < 3; i++) assert_int_equal(lmtp_pool_submit(p, &m, done_cb, b, NULL), LMTP_OK);
    run_loop(p, 100, NULL);
    assert_int_equal(b->total, 0);
    lmtp_pool_free(p);
    assert_int_equal(b->total, 3);
    for (i = 0; i < 3; i++) {
        assert_int_equal(b->m[i].calls, 1);
        assert_int_equal(b->m[i].status, LMTP_ERR_CLOSED);
    }

    /* Freed inside the first callback: the others still get theirs, once. */
    test_fake_config(&c);
    p = start_case(x, b, &c, NULL, 0, &f);
    for (i = 0; i < 4; i++) assert_int_equal(lmtp_pool_submit(p, &m, done_cb, b, NULL), LMTP_OK);
    b->free_inside = 1;
    {
        long t0 = now_ms();
        while (b->total == 0 && now_ms() - t0 < 5000) {
            int fds[8], wants[8];
            size_t n = lmtp_pool_fds(p, fds, wants, 8), k;
            int ev[8];
            sleep_ms(2);
            for (k = 0; k < n; k++) ev[k] = LMTP_IO_READ | LMTP_IO_WRITE;
            lmtp_pool_process(p, fds, ev, n); /* the pool may be gone after this */
        }
    }
    assert_int_equal(b->total, 4);
    for (i = 0; i < 4; i++) assert_int_equal(b->m[i].calls, 1);
}

/* Options and arguments. */
static void options_and_arguments(void **state) {
    lmtp_pool *p = NULL;
    lmtp_pool_options po;
    struct lmtp_message m;
    (void)state;
    lmtp_pool_options_init(&po);
    assert_int_equal(po.struct_size, sizeof po);
    po.struct_size = 0;
    assert_int_equal(lmtp_pool_new(&p, NULL, &po), LMTP_ERR_INVALID_ARGUMENT);
    assert_non_null(p);
    assert_int_equal(lmtp_pool_errcode(p), LMTP_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(lmtp_pool_errmsg(p), "struct_size"));
    lmtp_pool_free(p);
    lmtp_pool_options_init(&po);
    po.retry_delay_ms = 5000;
    po.retry_delay_max_ms = 100;
    assert_int_equal(lmtp_pool_new(&p, NULL, &po), LMTP_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(lmtp_pool_errmsg(p), "retry_delay_max_ms"));
    lmtp_pool_free(p);
    assert_int_equal(lmtp_pool_new(&p, NULL, NULL), LMTP_OK);
    message(&m, RCPTS3, 3);
    assert_int_equal(lmtp_pool_submit(p, &m, done_cb, NULL, NULL), LMTP_ERR_BAD_SEQUENCE);
    assert_int_equal(lmtp_pool_deliver(p, &m, 1, done_cb, NULL), LMTP_ERR_BAD_SEQUENCE);
    assert_int_equal(lmtp_pool_add_server(p, "127.0.0.1", 70000), LMTP_ERR_INVALID_ARGUMENT);
    assert_int_equal(lmtp_pool_add_server(p, NULL, 24), LMTP_ERR_INVALID_ARGUMENT);
    assert_int_equal(lmtp_pool_add_server(p, "127.0.0.1", 24), LMTP_OK);
    m.nrcpts = 0;
    assert_int_equal(lmtp_pool_submit(p, &m, done_cb, NULL, NULL), LMTP_ERR_INVALID_ARGUMENT);
    assert_int_equal(lmtp_pool_pending(p), 0);
    assert_int_equal(lmtp_pool_timeout_ms(p), -1);
    assert_int_equal(lmtp_pool_fds(p, NULL, NULL, 0), 0);
    assert_int_equal(lmtp_pool_process(NULL, NULL, NULL, 0), LMTP_ERR_INVALID_ARGUMENT);
    assert_int_equal(lmtp_pool_errcode(NULL), LMTP_ERR_INVALID_ARGUMENT);
    assert_string_equal(lmtp_pool_errmsg(NULL), "");
    assert_int_equal(lmtp_result_attempts(NULL, 0), 0);
    lmtp_pool_free(p);
    lmtp_pool_free(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(blocking_many, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(retries_until_ok, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(killed_mid_run, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(stalling_server, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(refused_back_off, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(first_server_down, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(nonblocking_loop, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(free_with_pending, fx_setup, fx_teardown),
        cmocka_unit_test(options_and_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
