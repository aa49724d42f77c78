/*
 * test_capi_transport.c - where lmtp_connect goes: unix sockets (a host starting with "/"), IPv6
 * literals with and without brackets, IPv4, host names; the local address; the errors for a closed
 * port, a host that does not resolve and a missing socket file.
 */
#include "capi_test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define LHLO_LINE "LHLO " TEST_HELLO "\r\n"

/* One delivery through h, checked at the fake. */
static void deliver_once(lmtp_t *h, fake_lmtp *f) {
    const char *rcpts[] = {"alice@x", "full@x"};
    size_t before = fake_message_count(f);
    size_t mark = transcript_len(f);
    assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 2, "Subject: t\n\nbody\n", 17, NULL, NULL));
    assert_int_equal(lmtp_result_status(h, 0), LMTP_RESULT_OK);
    assert_int_equal(lmtp_result_code(h, 1), 552);
    assert_int_equal(fake_message_count(f), before + 1);
    assert_message(f, before, "Subject: t\r\n\r\nbody\r\n");
    assert_transcript_from(f, mark,
                           "MAIL FROM:<s@x>\r\nRCPT TO:<alice@x>\r\nRCPT TO:<full@x>\r\nDATA\r\n"
                           "Subject: t\r\n\r\nbody\r\n.\r\n");
}

static void unix_socket(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_options o;
    lmtp_t *h = NULL;
    const char *path;

    test_fake_config(&c);
    c.family = AF_UNIX;
    f = fx_fake(x, &c);
    path = fake_host(f);
    assert_true(path[0] == '/');
    assert_int_equal(fake_port(f), 0);
    test_options(&o);
    /* The port is ignored for a unix socket. */
    assert_ok(h, lmtp_new(&h, path, 12345, &o));
    fx_keep(x, h);
    assert_int_equal(lmtp_is_connected(h), 1);
    assert_string_equal(lmtp_domain(h), "fake.example");
    assert_transcript(f, LHLO_LINE);
    deliver_once(h, f);
    assert_ok(h, lmtp_quit(h));

    /* And with port 0, through lmtp_create + lmtp_connect. */
    fx_free(x, h);
    h = NULL;
    assert_ok(h, lmtp_create(&h, &o));
    fx_keep(x, h);
    assert_int_equal(lmtp_is_connected(h), 0);
    assert_ok(h, lmtp_connect(h, path, 0));
    deliver_once(h, f);
    assert_int_equal(fake_connections(f), 2);
}

static int have_ipv6_loopback(void) {
    struct sockaddr_in6 a;
    int fd = socket(AF_INET6, SOCK_STREAM, 0), ok;
    if (fd < 0) return 0;
    memset(&a, 0, sizeof a);
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

static void ipv6_literals(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_options o;
    lmtp_t *h = NULL;
    char bracketed[64];

    if (!have_ipv6_loopback()) {
        print_message("no IPv6 loopback here: skipped\n");
        skip();
    }
    test_fake_config(&c);
    c.family = AF_INET6;
    f = fx_fake(x, &c);
    assert_string_equal(fake_host(f), "::1");
    test_options(&o);

    assert_ok(h, lmtp_new(&h, "::1", fake_port(f), &o));
    fx_keep(x, h);
    deliver_once(h, f);
    fx_free(x, h);

    h = NULL;
    snprintf(bracketed, sizeof bracketed, "[%s]", fake_host(f));
    assert_ok(h, lmtp_new(&h, bracketed, fake_port(f), &o));
    fx_keep(x, h);
    deliver_once(h, f);
    assert_int_equal(fake_connections(f), 2);
}

static void ipv4_and_names(void **state) {
    fx *x = *state;
    fake_lmtp *f;
    fake_config c;
    lmtp_options o;
    lmtp_t *h = NULL;

    test_fake_config(&c);
    f = fx_fake(x, &c);
    assert_string_equal(fake_host(f), "127.0.0.1");
    test_options(&o);
    assert_ok(h, lmtp_new(&h, "127.0.0.1", fake_port(f), &o));
    fx_keep(x, h);
    deliver_once(h, f);
    fx_free(x, h);

    /* A name: every address it resolves to is tried in order (localhost may be ::1 first). */
    h = NULL;
    assert_ok(h, lmtp_new(&h, "localhost", fake_port(f), &o));
    fx_keep(x, h);
    deliver_once(h, f);
    assert_int_equal(fake_connections(f), 2);
}

/* A TCP port nobody listens on (a socket bound to it and kept, but not listening). */
static int closed_port(unsigned *port) {
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static void local_address_and_port(void **state) {
    fx *x = *state;
    fake_lmtp *f;
    fake_config c;
    lmtp_options o;
    lmtp_t *h = NULL;
    unsigned port = 0;
    int probe, st;
    struct sockaddr_in a;

    test_fake_config(&c);
    f = fx_fake(x, &c);

    /* Pick a free local port, then let the library bind to it. */
    probe = closed_port(&port);
    close(probe);
    test_options(&o);
    o.local_address = "127.0.0.1";
    o.local_port = port;
    st = lmtp_new(&h, fake_host(f), fake_port(f), &o);
    fx_keep(x, h);
    assert_status(h, st, LMTP_OK);
    deliver_once(h, f);
    /* The connection holds that local port: binding it again fails. */
    probe = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(probe >= 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((unsigned short)port);
    st = bind(probe, (struct sockaddr *)&a, sizeof a);
    close(probe);
    assert_int_equal(st, -1);
    fx_free(x, h);

    /* Only a local address. */
    h = NULL;
    test_options(&o);
    o.local_address = "127.0.0.1";
    assert_ok(h, lmtp_new(&h, fake_host(f), fake_port(f), &o));
    fx_keep(x, h);
    deliver_once(h, f);
    fx_free(x, h);

    /* A local address of the other family: no address can be used. */
    if (have_ipv6_loopback()) {
        h = NULL;
        test_options(&o);
        o.local_address = "::1";
        st = lmtp_new(&h, fake_host(f), fake_port(f), &o);
        fx_keep(x, h);
        assert_status(h, st, LMTP_ERR_CONNECT);
        assert_int_equal(lmtp_is_connected(h), 0);
        print_message("errmsg: %s\n", lmtp_errmsg(h));
        fx_free(x, h);
    }

    /* A local address that is not an IP address is unusable. */
    h = NULL;
    test_options(&o);
    o.local_address = "not an address";
    st = lmtp_new(&h, fake_host(f), fake_port(f), &o);
    fx_keep(x, h);
    assert_status(h, st, LMTP_ERR_INVALID_ARGUMENT);
    assert_int_equal(lmtp_is_connected(h), 0);
    assert_int_equal(fake_connections(f), 2);
}

static void connection_refused(void **state) {
    fx *x = *state;
    lmtp_options o;
    lmtp_t *h = NULL;
    unsigned port = 0;
    int fd = closed_port(&port), st;
    char port_text[16];
    long t0;
    (void)x;

    test_options(&o);
    t0 = now_ms();
    st = lmtp_new(&h, "127.0.0.1", port, &o);
    fx_keep(x, h);
    close(fd);
    assert_status(h, st, LMTP_ERR_CONNECT);
    assert_true(now_ms() - t0 < 2000);
    assert_non_null(h);
    assert_int_equal(lmtp_errcode(h), LMTP_ERR_CONNECT);
    print_message("errmsg: %s\n", lmtp_errmsg(h));
    assert_has(lmtp_errmsg(h), "127.0.0.1");
    snprintf(port_text, sizeof port_text, "%u", port);
    assert_has(lmtp_errmsg(h), port_text);
    assert_int_equal(lmtp_is_connected(h), 0);
    assert_int_equal(lmtp_code(h), 0);
    assert_int_equal(lmtp_os_error(h), ECONNREFUSED);
    assert_status(h, lmtp_noop(h), LMTP_ERR_NOT_CONNECTED);
    assert_int_equal(lmtp_os_error(h), 0); /* each call says its own */
}

/* A listener whose backlog is full: connecting hangs, connect_timeout_ms (not timeout_ms) ends it. */
static void connect_timeout(void **state) {
    fx *x = *state;
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    int lfd, fillers[8], i, st;
    lmtp_options o;
    lmtp_t *h = NULL;
    long t0, elapsed;

    lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(lfd >= 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(lfd, 0), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &len), 0);
    for (i = 0; i < 8; i++) {
        fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (fillers[i] >= 0) (void)connect(fillers[i], (struct sockaddr *)&a, sizeof a);
    }
    sleep_ms(50);

    test_options(&o);
    o.timeout_ms = 5000;
    o.connect_timeout_ms = 300;
    t0 = now_ms();
    st = lmtp_new(&h, "127.0.0.1", ntohs(a.sin_port), &o);
    elapsed = now_ms() - t0;
    fx_keep(x, h);
    for (i = 0; i < 8; i++)
        if (fillers[i] >= 0) close(fillers[i]);
    close(lfd);
    print_message("status %d after %ld ms: %s\n", st, elapsed, h ? lmtp_errmsg(h) : "");
    assert_status(h, st, LMTP_ERR_TIMEOUT);
    assert_in_range(elapsed, 250, 2000);
    assert_int_equal(lmtp_os_error(h), ETIMEDOUT);
    assert_has(lmtp_errmsg(h), "127.0.0.1");
    assert_int_equal(lmtp_is_connected(h), 0);
}

static void host_does_not_resolve(void **state) {
    fx *x = *state;
    lmtp_options o;
    lmtp_t *h = NULL;
    int st;

    test_options(&o);
    st = lmtp_new(&h, "no-such-host.invalid", 24, &o);
    fx_keep(x, h);
    assert_status(h, st, LMTP_ERR_RESOLVE);
    assert_non_null(h);
    assert_int_equal(lmtp_errcode(h), LMTP_ERR_RESOLVE);
    print_message("errmsg: %s\n", lmtp_errmsg(h));
    assert_has(lmtp_errmsg(h), "no-such-host.invalid");
    assert_int_equal(lmtp_is_connected(h), 0);
}

static void unix_socket_missing(void **state) {
    fx *x = *state;
    lmtp_options o;
    lmtp_t *h = NULL;
    int st;
    char path[200];

    snprintf(path, sizeof path, "/tmp/liblmtp-capi-test-%ld-missing.sock", (long)getpid());
    unlink(path);
    test_options(&o);
    st = lmtp_new(&h, path, 0, &o);
    fx_keep(x, h);
    assert_status(h, st, LMTP_ERR_CONNECT);
    print_message("errmsg: %s\n", lmtp_errmsg(h));
    assert_has(lmtp_errmsg(h), path);
    assert_int_equal(lmtp_os_error(h), ENOENT);
    assert_int_equal(lmtp_is_connected(h), 0);
}

/* Values that cannot be used: a unix path too long for a socket address, TCP port 0 or > 65535. */
static void unusable_addresses(void **state) {
    fx *x = *state;
    lmtp_t *h = NULL;
    char path[300];
    fake_lmtp *f;
    fake_config c;

    test_fake_config(&c);
    f = fx_fake(x, &c);
    assert_ok(h, lmtp_create(&h, NULL));
    fx_keep(x, h);
    memset(path, 'a', sizeof path - 1);
    path[0] = '/';
    path[sizeof path - 1] = '\0';
    assert_status(h, lmtp_connect(h, path, 0), LMTP_ERR_INVALID_ARGUMENT);
    assert_status(h, lmtp_connect(h, "127.0.0.1", 0), LMTP_ERR_INVALID_ARGUMENT);
    assert_status(h, lmtp_connect(h, "127.0.0.1", 65536), LMTP_ERR_INVALID_ARGUMENT);
    assert_status(h, lmtp_connect(h, "127.0.0.1", 0x10000u + fake_port(f)), LMTP_ERR_INVALID_ARGUMENT);
    assert_status(h, lmtp_connect(h, "", fake_port(f)), LMTP_ERR_INVALID_ARGUMENT);
    assert_int_equal(lmtp_is_connected(h), 0);
    assert_int_equal(fake_connections(f), 0);
    /* The handle is still good. */
    assert_ok(h, lmtp_connect(h, "127.0.0.1", fake_port(f)));
    deliver_once(h, f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(unix_socket, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(ipv6_literals, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(ipv4_and_names, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(local_address_and_port, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(connection_refused, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(connect_timeout, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(host_does_not_resolve, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(unix_socket_missing, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(unusable_addresses, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests_name("capi_transport", tests, NULL, NULL);
}
