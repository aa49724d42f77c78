/*
 * test_capi_nonblocking.c - the non-blocking C API (lmtp.h, "non-blocking use"): handles driven by
 * one poll() loop, messages submitted before the banner, each message's callback exactly once
 * with its own per-recipient results, the callback rules, deadlines (and a reply already readable
 * when the deadline passes), connections that fail, lmtp_close with messages pending, STARTTLS
 * over the event loop, and the bytes-only mode over a socket the test owns.
 */
#include "capi_test.h"
#include "capi_tls.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

/* One submitted message and what its callback saw. */
typedef struct sub {
    const char *rcpts[4];
    size_t nrcpts;
    const char *body;
    struct lmtp_message msg;
    int calls;
    int status;
    size_t count;
    int result[4];
    int stage[4];
    int code[4];
    char errmsg[256];
    int inner; /* what a call made inside the callback returned */
    int (*inside)(struct sub *s, lmtp_t *h);
    struct sub *resubmit; /* submitted from inside the callback */
} sub;

static void done_cb(void *user, lmtp_t *h, int status) {
    sub *s = user;
    size_t i;
    s->calls++;
    s->status = status;
    s->count = lmtp_result_count(h);
    for (i = 0; i < s->count && i < 4; i++) {
        s->result[i] = lmtp_result_status(h, i);
        s->stage[i] = lmtp_result_stage(h, i);
        s->code[i] = lmtp_result_code(h, i);
    }
    snprintf(s->errmsg, sizeof s->errmsg, "%s", status == LMTP_OK ? "" : lmtp_errmsg(h));
    if (s->inside) s->inner = s->inside(s, h);
}

static void sub_init(sub *s, const char *body, const char *r0, const char *r1, const char *r2) {
    memset(s, 0, sizeof *s);
    s->rcpts[0] = r0;
    s->rcpts[1] = r1;
    s->rcpts[2] = r2;
    s->nrcpts = r2 ? 3 : r1 ? 2 : 1;
    s->body = body;
    lmtp_message_init(&s->msg);
    s->msg.from = "sender@x";
    s->msg.rcpts = s->rcpts;
    s->msg.nrcpts = s->nrcpts;
    s->msg.data = body;
    s->msg.len = strlen(body);
    s->status = -1;
}

/* Runs handles hs[0..n) from one poll() loop until none has a message pending (or max_ms). Returns
   the number of lmtp_process calls that returned an error. */
static int run_loop(lmtp_t **hs, int n, long max_ms) {
    struct pollfd p[128];
    long t0 = now_ms();
    int errors = 0, i;
    assert_true(n <= 128);
    for (;;) {
        int active = 0, timeout = -1;
        for (i = 0; i < n; i++) {
            int w = lmtp_want(hs[i]), t = lmtp_timeout_ms(hs[i]);
            p[i].fd = -1;
            p[i].events = 0;
            p[i].revents = 0;
            if (!lmtp_pending(hs[i])) continue;
            active++;
            p[i].fd = lmtp_fd(hs[i]);
            if (w & LMTP_IO_READ) p[i].events |= POLLIN;
            if (w & LMTP_IO_WRITE) p[i].events |= POLLOUT;
            if (t >= 0 && (timeout < 0 || t < timeout)) timeout = t;
        }
        if (!active) return errors;
        if (now_ms() - t0 > max_ms) fail_msg("the loop did not finish in %ld ms", max_ms);
        if (timeout < 0 || timeout > 200) timeout = 200; /* (the test's own bound, not the library's) */
        assert_true(poll(p, (nfds_t)n, timeout) >= 0);
        for (i = 0; i < n; i++) {
            int ev = 0;
            if (!lmtp_pending(hs[i])) continue;
            if (p[i].revents & (POLLIN | POLLHUP | POLLERR)) ev |= LMTP_IO_READ;
            if (p[i].revents & POLLOUT) ev |= LMTP_IO_WRITE;
            if (ev || lmtp_timeout_ms(hs[i]) == 0) errors += lmtp_process(hs[i], ev) != LMTP_OK;
        }
    }
}

/* A socket of the test's own, connected to the fake. */
static int connect_to(fake_lmtp *f) {
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)fake_port(f));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

static lmtp_t *start(fx *x, fake_lmtp *f, const lmtp_options *o) {
    lmtp_options def;
    lmtp_t *h = NULL;
    if (!o) {
        test_options(&def);
        o = &def;
    }
    assert_int_equal(lmtp_create(&h, o), LMTP_OK);
    fx_keep(x, h);
    assert_ok(h, lmtp_connect_start(h, "127.0.0.1", fake_port(f)));
    return h;
}

/* 100 connections from one thread, three messages each submitted before any banner came: every
   message has its callback once, with its own verdicts, and the server stored each once. */
static void hundred_connections(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    enum { N = 100, PER = 3 };
    static lmtp_t *hs[N];
    static sub subs[N][PER];
    int i, k;
    test_fake_config(&c);
    c.reply_delay_ms = 5;
    f = fx_fake(x, &c);
    for (i = 0; i < N; i++) {
        lmtp_options o;
        test_options(&o);
        assert_int_equal(lmtp_create(&hs[i], &o), LMTP_OK);
        assert_ok(hs[i], lmtp_connect_start(hs[i], "127.0.0.1", fake_port(f)));
        for (k = 0; k < PER; k++) {
            sub_init(&subs[i][k], "Subject: hi\n\nhello\n", "alice@x", "nosuch@x", "full@x");
            assert_ok(hs[i], lmtp_submit(hs[i], &subs[i][k].msg, done_cb, &subs[i][k]));
        }
        assert_int_equal(lmtp_pending(hs[i]), PER);
    }
    assert_int_equal(run_loop(hs, N, 60000), 0);
    for (i = 0; i < N; i++) {
        for (k = 0; k < PER; k++) {
            sub *s = &subs[i][k];
            assert_int_equal(s->calls, 1);
            assert_int_equal(s->status, LMTP_OK);
            assert_int_equal(s->count, 3);
            assert_int_equal(s->result[0], LMTP_RESULT_OK);
            assert_int_equal(s->result[1], LMTP_RESULT_PERMFAIL);
            assert_int_equal(s->stage[1], LMTP_STAGE_RCPT);
            assert_int_equal(s->code[1], 550);
            assert_int_equal(s->result[2], LMTP_RESULT_PERMFAIL);
            assert_int_equal(s->stage[2], LMTP_STAGE_DATA);
            assert_int_equal(s->code[2], 552);
        }
        assert_int_equal(lmtp_pending(hs[i]), 0);
        assert_int_equal(lmtp_is_connected(hs[i]), 1);
        lmtp_free(hs[i]);
    }
    assert_int_equal(fake_message_count(f), N * PER);
}

static int try_blocking_call(sub *s, lmtp_t *h) {
    (void)s;
    return lmtp_noop(h);
}

static int try_process(sub *s, lmtp_t *h) {
    (void)s;
    return lmtp_process(h, 0);
}

static int submit_more(sub *s, lmtp_t *h) {
    return lmtp_submit(h, &s->resubmit->msg, done_cb, s->resubmit);
}

static int free_inside(sub *s, lmtp_t *h) {
    (void)s;
    lmtp_free(h); /* takes effect when the callback returns */
    return lmtp_result_count(h) == 1 ? LMTP_OK : -1;
}

/* Inside a callback: the getters and lmtp_submit work, other calls are refused; a message
   submitted there is delivered; lmtp_free there takes effect afterwards (valgrind and ASan watch). */
static void callback_rules(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h, *h2;
    sub a, b, d, e, g;
    test_fake_config(&c);
    f = fx_fake(x, &c);
    h = start(x, f, NULL);
    sub_init(&a, "one\n", "alice@x", NULL, NULL);
    sub_init(&b, "two\n", "bob@x", NULL, NULL);
    sub_init(&d, "three\n", "carol@x", NULL, NULL);
    sub_init(&e, "four\n", "alice@x", NULL, NULL);
    a.inside = try_blocking_call;
    b.inside = try_process;
    d.inside = submit_more;
    d.resubmit = &e;
    assert_ok(h, lmtp_submit(h, &a.msg, done_cb, &a));
    assert_ok(h, lmtp_submit(h, &b.msg, done_cb, &b));
    assert_ok(h, lmtp_submit(h, &d.msg, done_cb, &d));
    /* A blocking call on a driven handle is refused, and changes nothing. */
    assert_status(h, lmtp_noop(h), LMTP_ERR_BAD_SEQUENCE);
    assert_has(lmtp_errmsg(h), "lmtp_process");
    assert_int_equal(run_loop(&h, 1, 10000), 0);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.status, LMTP_OK);
    assert_int_equal(a.inner, LMTP_ERR_BAD_SEQUENCE);
    assert_int_equal(b.inner, LMTP_ERR_BAD_SEQUENCE);
    assert_int_equal(d.inner, LMTP_OK);
    assert_int_equal(e.calls, 1);
    assert_int_equal(e.status, LMTP_OK);
    assert_int_equal(e.result[0], LMTP_RESULT_OK);
    assert_int_equal(fake_message_count(f), 4);

    /* lmtp_free inside the callback. */
    assert_int_equal(lmtp_create(&h2, NULL), LMTP_OK);
    assert_ok(h2, lmtp_connect_start(h2, "127.0.0.1", fake_port(f)));
    sub_init(&g, "five\n", "alice@x", NULL, NULL);
    g.inside = free_inside;
    assert_ok(h2, lmtp_submit(h2, &g.msg, done_cb, &g));
    while (g.calls == 0) {
        struct pollfd p = {lmtp_fd(h2), 0, 0};
        int w = lmtp_want(h2), ev = 0;
        p.events = (short)((w & LMTP_IO_READ ? POLLIN : 0) | (w & LMTP_IO_WRITE ? POLLOUT : 0));
        assert_true(poll(&p, 1, 5000) > 0);
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) ev |= LMTP_IO_READ;
        if (p.revents & POLLOUT) ev |= LMTP_IO_WRITE;
        lmtp_process(h2, ev); /* the last one frees h2 at its end */
    }
    assert_int_equal(g.status, LMTP_OK);
    assert_int_equal(g.inner, LMTP_OK);
}

/* lmtp_close with messages pending: each gets its callback, LMTP_ERR_CLOSED, recipients unknown;
   then the handle works in the blocking way again. */
static void close_reports_pending(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    sub a, b;
    test_fake_config(&c);
    f = fx_fake(x, &c);
    h = start(x, f, NULL);
    sub_init(&a, "one\n", "alice@x", "bob@x", NULL);
    sub_init(&b, "two\n", "bob@x", NULL, NULL);
    assert_ok(h, lmtp_submit(h, &a.msg, done_cb, &a));
    assert_ok(h, lmtp_submit(h, &b.msg, done_cb, &b));
    assert_true(lmtp_want(h) != 0);
    assert_true(lmtp_fd(h) >= 0);
    assert_ok(h, lmtp_close(h));
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.status, LMTP_ERR_CLOSED);
    assert_int_equal(a.count, 2);
    assert_int_equal(a.result[0], LMTP_RESULT_UNKNOWN);
    assert_int_equal(a.result[1], LMTP_RESULT_UNKNOWN);
    assert_int_equal(b.calls, 1);
    assert_int_equal(b.status, LMTP_ERR_CLOSED);
    assert_int_equal(lmtp_pending(h), 0);
    assert_int_equal(lmtp_fd(h), -1);
    assert_int_equal(lmtp_want(h), 0);
    assert_int_equal(lmtp_timeout_ms(h), -1);
    assert_status(h, lmtp_process(h, 0), LMTP_ERR_NOT_CONNECTED);
    /* Submitting needs a connection started. */
    assert_status(h, lmtp_submit(h, &a.msg, done_cb, &a), LMTP_ERR_BAD_SEQUENCE);
    assert_int_equal(a.calls, 1);
    /* Blocking again. */
    assert_ok(h, lmtp_connect(h, "127.0.0.1", fake_port(f)));
    assert_ok(h, lmtp_noop(h));
}

/* A refused connection: lmtp_process says so and the message waiting for it gets the error. */
static void connection_refused(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    sub a;
    unsigned port;
    int st = LMTP_OK;
    long t0 = now_ms();
    test_fake_config(&c);
    f = fx_fake(x, &c);
    port = fake_port(f);
    fx_stop(x, f); /* nobody listens there now */
    assert_int_equal(lmtp_create(&h, NULL), LMTP_OK);
    fx_keep(x, h);
    st = lmtp_connect_start(h, "127.0.0.1", port);
    if (st != LMTP_OK) { /* refused at once: said by the start itself */
        assert_status(h, st, LMTP_ERR_CONNECT);
        assert_has(lmtp_errmsg(h), "cannot connect");
        return;
    }
    sub_init(&a, "one\n", "alice@x", NULL, NULL);
    assert_ok(h, lmtp_submit(h, &a.msg, done_cb, &a));
    while (a.calls == 0 && now_ms() - t0 < 5000) {
        struct pollfd p = {lmtp_fd(h), POLLOUT, 0};
        poll(&p, 1, 100);
        st = lmtp_process(h, p.revents ? LMTP_IO_WRITE : 0);
    }
    assert_int_equal(st, LMTP_ERR_CONNECT);
    assert_has(lmtp_errmsg(h), "cannot connect");
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.status, LMTP_ERR_CONNECT);
    assert_int_equal(a.result[0], LMTP_RESULT_UNKNOWN);
    assert_int_equal(lmtp_want(h), 0);
    assert_int_equal(lmtp_fd(h), -1);
}

/* The server stops answering after MAIL: the deadline passes, the message's recipients are
   unknown, lmtp_want is 0. */
static void deadline_passes(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    lmtp_options o;
    sub a;
    long t0, el;
    test_fake_config(&c);
    c.fault_on = "RCPT";
    c.fault_action = FAKE_HANG;
    f = fx_fake(x, &c);
    test_options(&o);
    o.timeout_ms = 300;
    h = start(x, f, &o);
    sub_init(&a, "one\n", "alice@x", NULL, NULL);
    assert_ok(h, lmtp_submit(h, &a.msg, done_cb, &a));
    t0 = now_ms();
    assert_int_equal(run_loop(&h, 1, 10000), 1);
    el = now_ms() - t0;
    assert_true(el >= 250);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.status, LMTP_ERR_TIMEOUT);
    assert_has(a.errmsg, "timed out after 300 ms");
    assert_int_equal(a.result[0], LMTP_RESULT_UNKNOWN);
    assert_int_equal(lmtp_want(h), 0);
    assert_int_equal(lmtp_is_connected(h), 0);
}

/* The deadline passes while the reply is already readable (the loop was busy elsewhere): the
   reply is read and counts, no timeout. */
static void reply_readable_at_deadline(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    lmtp_options o;
    sub a;
    test_fake_config(&c);
    f = fx_fake(x, &c);
    test_options(&o);
    o.timeout_ms = 200;
    h = start(x, f, &o);
    sub_init(&a, "one\n", "alice@x", NULL, NULL);
    assert_ok(h, lmtp_submit(h, &a.msg, done_cb, &a));
    /* Each step waits past the deadline before it looks: every reply is there by then. */
    while (a.calls == 0) {
        int st;
        sleep_ms(260);
        assert_int_equal(lmtp_timeout_ms(h), 0);
        st = lmtp_process(h, 0);
        assert_ok(h, st);
    }
    assert_int_equal(a.status, LMTP_OK);
    assert_int_equal(a.result[0], LMTP_RESULT_OK);
    assert_int_equal(fake_message_count(f), 1);
}

/* STARTTLS (required) over the event loop: TLS runs over the engine's memory buffers. */
static void starttls_in_the_loop(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    lmtp_options o;
    sub a;
    tls_fake_config(&c, "server");
    f = fx_fake(x, &c);
    tls_client_options(&o);
    o.starttls = LMTP_STARTTLS_REQUIRED;
    h = start(x, f, &o);
    sub_init(&a, "over TLS\n", "alice@x", NULL, NULL);
    assert_ok(h, lmtp_submit(h, &a.msg, done_cb, &a));
    assert_int_equal(run_loop(&h, 1, 10000), 0);
    assert_int_equal(a.status, LMTP_OK);
    assert_int_equal(a.result[0], LMTP_RESULT_OK);
    assert_int_equal(lmtp_tls_active(h), 1);
    assert_message(f, 0, "over TLS\r\n");
}

/* The bytes-only mode: the test owns the socket and moves every byte. */
static void bytes_only(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    sub a, b;
    int fd;
    long t0 = now_ms();
    test_fake_config(&c);
    f = fx_fake(x, &c);
    fd = connect_to(f);
    assert_int_equal(lmtp_create(&h, NULL), LMTP_OK);
    fx_keep(x, h);
    assert_ok(h, lmtp_open_bytes(h, NULL, 0));
    assert_int_equal(lmtp_fd(h), -1);
    sub_init(&a, "bytes\n", "alice@x", "temp@x", NULL);
    sub_init(&b, "more\n", "bob@x", NULL, NULL);
    assert_ok(h, lmtp_submit(h, &a.msg, done_cb, &a));
    assert_ok(h, lmtp_submit(h, &b.msg, done_cb, &b));
    while (lmtp_pending(h) && now_ms() - t0 < 10000) {
        const void *out;
        size_t n = lmtp_output(h, &out);
        char buf[4096];
        struct pollfd p = {fd, POLLIN, 0};
        if (n) {
            ssize_t w = send(fd, out, n, MSG_NOSIGNAL);
            assert_true(w > 0);
            assert_ok(h, lmtp_output_done(h, (size_t)w));
            continue;
        }
        if (poll(&p, 1, 100) > 0) {
            ssize_t r = recv(fd, buf, sizeof buf, 0);
            assert_true(r >= 0);
            assert_ok(h, lmtp_feed(h, buf, (size_t)r));
        }
    }
    assert_int_equal(a.status, LMTP_OK);
    assert_int_equal(a.result[0], LMTP_RESULT_OK);
    assert_int_equal(a.result[1], LMTP_RESULT_TEMPFAIL);
    assert_int_equal(a.code[1], 452);
    assert_int_equal(b.status, LMTP_OK);
    assert_int_equal(fake_message_count(f), 2);
    /* Too many octets reported as sent; then the end of the stream while a reply is awaited. */
    assert_status(h, lmtp_output_done(h, 1), LMTP_ERR_INVALID_ARGUMENT);
    sub_init(&a, "last\n", "alice@x", NULL, NULL);
    assert_ok(h, lmtp_submit(h, &a.msg, done_cb, &a));
    assert_status(h, lmtp_feed(h, NULL, 0), LMTP_ERR_CLOSED);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.status, LMTP_ERR_CLOSED);
    assert_int_equal(a.result[0], LMTP_RESULT_UNKNOWN);
    close(fd);
}

/* A socket the caller connected, handed over. */
static void adopted_socket(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    sub a;
    int fd;
    test_fake_config(&c);
    f = fx_fake(x, &c);
    fd = connect_to(f);
    assert_int_equal(lmtp_create(&h, NULL), LMTP_OK);
    fx_keep(x, h);
    assert_ok(h, lmtp_adopt_fd(h, fd, NULL));
    assert_int_equal(lmtp_fd(h), fd);
    sub_init(&a, "adopted\n", "alice@x", NULL, NULL);
    assert_ok(h, lmtp_submit(h, &a.msg, done_cb, &a));
    assert_int_equal(run_loop(&h, 1, 10000), 0);
    assert_int_equal(a.status, LMTP_OK);
    assert_status(h, lmtp_adopt_fd(h, -1, NULL), LMTP_ERR_INVALID_ARGUMENT);
    /* A handle whose options cannot be used: the call fails, and the socket handed over is closed. */
    {
        lmtp_options bad;
        lmtp_t *h2;
        test_options(&bad);
        bad.hello = "two words";
        assert_int_equal(lmtp_create(&h2, &bad), LMTP_OK);
        fx_keep(x, h2);
        int pair[2];
        char byte;
        /* A socket pair, so that the close is seen from the other end (a number freed by the
           close may be taken at once by the fake's threads: checking the number proves nothing). */
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
        assert_status(h2, lmtp_adopt_fd(h2, pair[0], NULL), LMTP_ERR_BAD_INPUT);
        assert_int_equal(read(pair[1], &byte, 1), 0); /* end of stream: the only copy was closed */
        close(pair[1]);
        assert_int_equal(lmtp_want(h2), 0);
        assert_int_equal(lmtp_fd(h2), -1);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(hundred_connections, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(callback_rules, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(close_reports_pending, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(connection_refused, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(deadline_passes, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(reply_readable_at_deadline, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(starttls_in_the_loop, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(bytes_only, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(adopted_socket, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, certs_group_setup, certs_group_teardown);
}
