/*
 * test_capi_tls.c - TLS through the C API against the fake server: STARTTLS (RFC 3207) at connect
 * and step by step over IPv4, IPv6 and unix sockets, implicit TLS, certificate verification (name,
 * chain, expiry, the system's CAs, skipping it), broken handshakes and STARTTLS injection, the
 * minimum version, client certificates and AUTH EXTERNAL (RFC 4422 appendix A).
 *
 * The certificates are made once per program in a fresh temporary directory (certs_group_setup).
 */
#include "capi_tls.h"

#include <stdio.h>
#include <stdlib.h>

#define LHLO_LINE "LHLO " TEST_HELLO "\r\n"
#define STARTTLS_LINE "STARTTLS\r\n"

enum { MODE_REQUIRED, MODE_OPPORTUNISTIC, MODE_EXPLICIT };

static const char *family_name(int family) {
    return family == AF_INET ? "IPv4" : family == AF_INET6 ? "IPv6" : "unix";
}

/* A failed connect: the status (one of want[0..nwant)), the handle not connected nor encrypted, the
   failure reported quickly, the calls after it say "not connected", the server saw the connection
   end (nothing half open). Returns the status. */
static int expect_new_fails(fx *x, fake_lmtp *f, const lmtp_options *o, const int *want, size_t nwant,
                            const char *errmsg_has) {
    lmtp_t *h;
    long t0 = now_ms(), elapsed;
    size_t k, conns;
    int st = fx_try_new(x, f, o, &h);
    elapsed = now_ms() - t0;
    for (k = 0; k < nwant; k++)
        if (st == want[k]) break;
    if (k == nwant) {
        print_error("lmtp_new returned %d (%s): \"%s\"\n", st, lmtp_strerror(st), lmtp_errmsg(h));
        fail_msg("unexpected status %d", st);
    }
    print_message("  failed as expected (%d, %ld ms): %s\n", st, elapsed, lmtp_errmsg(h));
    assert_int_equal(lmtp_errcode(h), st);
    if (errmsg_has) assert_has(lmtp_errmsg(h), errmsg_has);
    assert_true(strlen(lmtp_errmsg(h)) > 0);
    assert_int_equal(lmtp_is_connected(h), 0);
    assert_int_equal(lmtp_tls_active(h), 0);
    /* Quickly: not after a timeout (loading the system's CAs alone takes seconds under valgrind). */
    assert_true(elapsed < TEST_TIMEOUT_MS * (test_under_valgrind() ? 5 : 1));
    assert_status(h, lmtp_noop(h), LMTP_ERR_NOT_CONNECTED);
    conns = fake_connections(f);
    assert_true(conns >= 1);
    assert_true(fake_wait_idle(f, conns, 2000));
    fx_free(x, h);
    return st;
}

/* ---- STARTTLS that works ---------------------------------------------------------------------- */

/* After STARTTLS: encrypted, LHLO again inside TLS, STARTTLS no longer offered, a delivery inside
   TLS. `before_tls` is the transcript up to the handshake. */
static void check_tls_session(fake_lmtp *f, lmtp_t *h, const char *before_tls) {
    const char *rcpts[] = {"alice@x", "full@x"};
    char want[256];
    long off;

    assert_int_equal(lmtp_is_connected(h), 1);
    assert_int_equal(lmtp_tls_active(h), 1);
    assert_int_equal(fake_tls_sessions(f), 1);
    assert_int_equal(fake_tls_failures(f), 0);
    off = fake_tls_offset(f);
    assert_int_equal(off, (long)strlen(before_tls));
    snprintf(want, sizeof want, "%s%s", before_tls, LHLO_LINE);
    assert_transcript(f, want);
    /* What was offered before TLS is forgotten: the new LHLO reply no longer has STARTTLS. */
    assert_int_equal(lmtp_supports(h, "STARTTLS"), 0);
    assert_null(lmtp_capability(h, "STARTTLS"));
    assert_int_equal(lmtp_supports(h, "PIPELINING"), 1);
    assert_non_null(fake_tls_version(f));

    assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 2, "secret\n", 7, NULL, NULL));
    assert_result(h, 0, "alice@x", LMTP_RESULT_OK, LMTP_STAGE_DATA, 250, "2.0.0", "<alice@x> Saved", 250,
                  "<alice@x> OK");
    assert_result(h, 1, "full@x", LMTP_RESULT_PERMFAIL, LMTP_STAGE_DATA, 552, "5.2.2", "<full@x> Quota exceeded",
                  250, "<full@x> OK");
    assert_transcript_from(f, (size_t)off,
                           LHLO_LINE "MAIL FROM:<s@x>\r\nRCPT TO:<alice@x>\r\nRCPT TO:<full@x>\r\nDATA\r\n"
                                     "secret\r\n.\r\n");
    assert_int_equal(fake_message_count(f), 1);
    assert_message(f, 0, "secret\r\n");
    assert_int_equal(fake_message_tls(f, 0), 1);
    assert_int_equal(fake_lockstep_violations(f), 0);
    assert_int_equal(fake_connections(f), 1);
}

static void starttls_one(fx *x, int family, int mode) {
    fake_config c;
    lmtp_options o;
    fake_lmtp *f;
    lmtp_t *h;

    print_message("STARTTLS over %s, %s\n", family_name(family),
                  mode == MODE_REQUIRED ? "required at connect"
                  : mode == MODE_OPPORTUNISTIC ? "opportunistic at connect" : "lmtp_set_tls + lmtp_starttls");
    tls_fake_config(&c, "server");
    c.family = family;
    c.reply_delay_ms = 5; /* makes a client that sends before the 220 (or before LHLO's reply) visible */
    f = fx_fake(x, &c);

    if (mode == MODE_EXPLICIT) {
        lmtp_options t;
        h = fx_connect(x, f, NULL); /* plain options: no CA, no STARTTLS */
        assert_int_equal(lmtp_tls_active(h), 0);
        assert_int_equal(lmtp_supports(h, "STARTTLS"), 1);
        assert_transcript(f, LHLO_LINE);
        tls_client_options(&t);
        if (family == AF_UNIX) t.tls_server_name = "localhost";
        assert_ok(h, lmtp_set_tls(h, &t));
        assert_int_equal(lmtp_tls_active(h), 0);
        assert_transcript(f, LHLO_LINE); /* lmtp_set_tls sends nothing */
        assert_ok(h, lmtp_starttls(h));
        assert_int_equal(lmtp_code(h), 250); /* the reply to the LHLO inside TLS */
        assert_int_equal(lmtp_errcode(h), LMTP_OK);
        assert_string_equal(lmtp_errmsg(h), "");
    } else {
        tls_client_options(&o);
        o.starttls = mode == MODE_REQUIRED ? LMTP_STARTTLS_REQUIRED : LMTP_STARTTLS_OPPORTUNISTIC;
        if (family == AF_UNIX) o.tls_server_name = "localhost";
        h = fx_connect(x, f, &o);
    }
    check_tls_session(f, h, LHLO_LINE STARTTLS_LINE);

    /* A second STARTTLS is not possible any more: the server says 503 (or the library refuses). */
    {
        size_t mark = transcript_len(f);
        int st = lmtp_starttls(h);
        assert_int_not_equal(st, LMTP_OK);
        assert_int_equal(lmtp_tls_active(h), 1);
        assert_int_equal(lmtp_is_connected(h), 1);
        if (st == LMTP_ERR_REJECTED) {
            assert_int_equal(lmtp_code(h), 503);
            assert_transcript_from(f, mark, STARTTLS_LINE);
        } else {
            assert_transcript_from(f, mark, "");
        }
    }
    assert_ok(h, lmtp_quit(h));
    assert_int_equal(lmtp_is_connected(h), 0);
    assert_int_equal(lmtp_tls_active(h), 0);
    fx_free(x, h);
    fx_stop(x, f);
}

static void starttls_everywhere(void **state) {
    fx *x = *state;
    static const int families[] = {AF_INET, AF_INET6, AF_UNIX};
    static const int modes[] = {MODE_REQUIRED, MODE_OPPORTUNISTIC, MODE_EXPLICIT};
    size_t i, j;
    for (i = 0; i < 3; i++)
        for (j = 0; j < 3; j++) starttls_one(x, families[i], modes[j]);
}

/* OPPORTUNISTIC against a server without STARTTLS: plain text, fine. */
static void opportunistic_without_starttls_stays_plain(void **state) {
    fx *x = *state;
    fake_config c;
    lmtp_options o;
    fake_lmtp *f;
    lmtp_t *h;
    const char *rcpts[] = {"alice@x"};

    test_fake_config(&c);
    f = fx_fake(x, &c);
    tls_client_options(&o);
    o.starttls = LMTP_STARTTLS_OPPORTUNISTIC;
    h = fx_connect(x, f, &o);
    assert_int_equal(lmtp_tls_active(h), 0);
    assert_transcript(f, LHLO_LINE);
    assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 1, "m\n", 2, NULL, NULL));
    assert_int_equal(fake_message_tls(f, 0), 0);
    assert_int_equal(fake_tls_offset(f), -1);
}

/* REQUIRED against a server without STARTTLS: NOT_ADVERTISED, nothing but LHLO was said. */
static void required_without_starttls_fails_before_mail(void **state) {
    fx *x = *state;
    fake_config c;
    lmtp_options o;
    fake_lmtp *f;
    lmtp_t *h;
    const char *rcpts[] = {"alice@x"};
    static const int want[] = {LMTP_ERR_NOT_ADVERTISED};
    int st;

    test_fake_config(&c);
    f = fx_fake(x, &c);
    tls_client_options(&o);
    o.starttls = LMTP_STARTTLS_REQUIRED;
    expect_new_fails(x, f, &o, want, 1, "STARTTLS");
    assert_transcript(f, LHLO_LINE);

    /* A handle made by lmtp_create: connect fails the same way, deliver finds no connection. */
    assert_int_equal(lmtp_create(&h, &o), LMTP_OK);
    fx_keep(x, h);
    st = lmtp_connect(h, fake_host(f), fake_port(f));
    assert_status(h, st, LMTP_ERR_NOT_ADVERTISED);
    assert_int_equal(lmtp_is_connected(h), 0);
    assert_status(h, lmtp_deliver(h, "s@x", rcpts, 1, "m\n", 2, NULL, NULL), LMTP_ERR_NOT_CONNECTED);
    assert_true(fake_wait_idle(f, 2, 2000));
    assert_transcript(f, LHLO_LINE LHLO_LINE);
    assert_int_equal(fake_message_count(f), 0);
}

/* ---- certificate verification -------------------------------------------------------------------- */

static void verify_failure(fx *x, const char *cert, const char *ca, const char *server_name, const char *errmsg_has) {
    fake_config c;
    lmtp_options o;
    fake_lmtp *f;
    static const int want[] = {LMTP_ERR_CERTIFICATE};

    print_message("server certificate %s, CA %s, name %s\n", cert, ca ? ca : "(system)",
                  server_name ? server_name : "(the host)");
    tls_fake_config(&c, cert);
    f = fx_fake(x, &c);
    tls_client_options(&o);
    o.tls_ca_file = ca;
    o.tls_server_name = server_name;
    o.starttls = LMTP_STARTTLS_REQUIRED;
    expect_new_fails(x, f, &o, want, 1, errmsg_has);
    assert_int_equal(fake_tls_sessions(f), 0);
    /* Nothing was sent after STARTTLS: no LHLO, no MAIL, in clear or not. */
    assert_transcript(f, LHLO_LINE STARTTLS_LINE);
    assert_int_equal(fake_message_count(f), 0);
    fx_stop(x, f);
}

static void certificate_for_another_name(void **state) {
    /* A name checked against DNS:other.example. */
    verify_failure(*state, "wrong-name", CERTS.ca, "localhost", "hostname mismatch");
    /* The IP address connected to (127.0.0.1) is not in it either. */
    verify_failure(*state, "wrong-name", CERTS.ca, NULL, "mismatch");
}

static void certificate_from_an_unknown_ca(void **state) {
    /* A good server certificate, but the client trusts only an unrelated CA. */
    verify_failure(*state, "server", CERTS.other_ca, NULL, "unable to get local issuer certificate");
    /* A self-signed certificate, the test CA trusted. */
    verify_failure(*state, "self-signed", CERTS.ca, NULL, "self");
    verify_failure(*state, "self-signed", CERTS.ca, "localhost", "self");
}

static void certificate_expired(void **state) {
    verify_failure(*state, "expired", CERTS.ca, NULL, "expired");
    verify_failure(*state, "expired", CERTS.ca, "localhost", "expired");
}

/* No tls_ca_file: the system's CAs, which do not know the test CA. */
static void system_cas_refuse_the_test_ca(void **state) {
    verify_failure(*state, "server", NULL, NULL, NULL);
    verify_failure(*state, "server", NULL, "localhost", NULL);
}

/* The right name is accepted, the IP in the SAN too (the verification does not refuse everything). */
static void matching_names_are_accepted(void **state) {
    fx *x = *state;
    fake_config c;
    lmtp_options o;
    fake_lmtp *f;
    lmtp_t *h;

    tls_fake_config(&c, "server");
    f = fx_fake(x, &c);
    tls_client_options(&o);
    o.starttls = LMTP_STARTTLS_REQUIRED;
    o.tls_server_name = "localhost";
    h = fx_connect(x, f, &o);
    assert_int_equal(lmtp_tls_active(h), 1);
    fx_free(x, h);
    /* No name given: the IP address connected to (127.0.0.1) is verified against the SAN. */
    o.tls_server_name = NULL;
    h = fx_connect(x, f, &o);
    assert_int_equal(lmtp_tls_active(h), 1);
}

/* LMTP_OPT_TLS_INSECURE_SKIP_VERIFY: any certificate, any name, even over a unix socket without a name. */
static void insecure_skip_verify_accepts_any(void **state) {
    fx *x = *state;
    static const char *const certs[] = {"self-signed", "wrong-name", "expired", "server"};
    static const int families[] = {AF_INET, AF_UNIX};
    size_t i, j;

    for (i = 0; i < 4; i++) {
        for (j = 0; j < 2; j++) {
            fake_config c;
            lmtp_options o;
            fake_lmtp *f;
            lmtp_t *h;
            const char *rcpts[] = {"bob@x"};
            print_message("insecure: %s over %s\n", certs[i], family_name(families[j]));
            tls_fake_config(&c, certs[i]);
            c.family = families[j];
            f = fx_fake(x, &c);
            test_options(&o); /* no CA at all */
            o.starttls = LMTP_STARTTLS_REQUIRED;
            o.flags = LMTP_OPT_TLS_INSECURE_SKIP_VERIFY;
            h = fx_connect(x, f, &o);
            check_tls_session(f, h, LHLO_LINE STARTTLS_LINE);
            assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 1, "m\n", 2, NULL, NULL));
            fx_free(x, h);
            fx_stop(x, f);
        }
    }
}

/* A handle whose verification failed can be told to skip it (lmtp_set_tls) and connect again. */
static void set_tls_applies_to_the_next_connect(void **state) {
    fx *x = *state;
    fake_config c;
    lmtp_options o, t;
    fake_lmtp *f;
    lmtp_t *h;

    tls_fake_config(&c, "self-signed");
    f = fx_fake(x, &c);
    tls_client_options(&o);
    o.starttls = LMTP_STARTTLS_REQUIRED;
    assert_int_equal(fx_try_new(x, f, &o, &h), LMTP_ERR_CERTIFICATE);
    assert_int_equal(lmtp_is_connected(h), 0);

    test_options(&t);
    t.flags = LMTP_OPT_TLS_INSECURE_SKIP_VERIFY;
    assert_ok(h, lmtp_set_tls(h, &t));
    assert_ok(h, lmtp_connect(h, fake_host(f), fake_port(f)));
    assert_int_equal(lmtp_tls_active(h), 1);
    assert_int_equal(fake_tls_sessions(f), 1);

    /* And back to verifying with the test CA: refused again. */
    tls_client_options(&t);
    assert_ok(h, lmtp_set_tls(h, &t));
    assert_status(h, lmtp_connect(h, fake_host(f), fake_port(f)), LMTP_ERR_CERTIFICATE);
    assert_has(lmtp_errmsg(h), "self");
    assert_int_equal(lmtp_is_connected(h), 0);

    /* lmtp_set_tls checks its argument. */
    assert_status(h, lmtp_set_tls(h, NULL), LMTP_ERR_INVALID_ARGUMENT);
    assert_int_equal(lmtp_set_tls(NULL, &t), LMTP_ERR_INVALID_ARGUMENT);
}

/* A unix socket has no name to verify: tls_server_name is needed (or skipping verification). */
static void unix_socket_needs_a_server_name(void **state) {
    fx *x = *state;
    fake_config c;
    lmtp_options o, t;
    fake_lmtp *f;
    lmtp_t *h;
    static const int want[] = {LMTP_ERR_INVALID_ARGUMENT};

    tls_fake_config(&c, "server");
    c.family = AF_UNIX;
    f = fx_fake(x, &c);
    tls_client_options(&o);
    o.starttls = LMTP_STARTTLS_REQUIRED;
    expect_new_fails(x, f, &o, want, 1, "name");
    assert_int_equal(fake_tls_sessions(f), 0);

    /* Step by step: the same refusal, the connection closed, not left waiting for a handshake. */
    h = fx_connect(x, f, NULL);
    tls_client_options(&t);
    assert_ok(h, lmtp_set_tls(h, &t));
    assert_status(h, lmtp_starttls(h), LMTP_ERR_INVALID_ARGUMENT);
    assert_has(lmtp_errmsg(h), "name");
    assert_int_equal(lmtp_tls_active(h), 0);
    if (lmtp_is_connected(h)) {
        /* If the library refused before sending STARTTLS, the session must still be usable. */
        assert_ok(h, lmtp_noop(h));
    } else {
        assert_true(fake_wait_idle(f, 2, 2000));
    }
    assert_int_equal(fake_tls_sessions(f), 0);
}

/* ---- handshakes that go wrong --------------------------------------------------------------------- */

static void handshake_fails_after_220(void **state) {
    fx *x = *state;
    static const int want[] = {LMTP_ERR_TLS, LMTP_ERR_CLOSED};
    int mode;

    for (mode = 1; mode <= 2; mode++) {
        fake_config c;
        lmtp_options o;
        fake_lmtp *f;
        lmtp_t *h;
        print_message("tls_fail_handshake %d\n", mode);
        tls_fake_config(&c, "server");
        c.tls_fail_handshake = mode;
        f = fx_fake(x, &c);
        tls_client_options(&o);
        o.starttls = LMTP_STARTTLS_REQUIRED;
        expect_new_fails(x, f, &o, want, 2, NULL);
        assert_transcript(f, LHLO_LINE STARTTLS_LINE);
        assert_int_equal(fake_tls_sessions(f), 0);

        /* The same step by step. */
        h = fx_connect(x, f, NULL);
        assert_ok(h, lmtp_set_tls(h, &o));
        {
            long t0 = now_ms();
            int st = lmtp_starttls(h);
            long el = now_ms() - t0;
            assert_true(st == LMTP_ERR_TLS || st == LMTP_ERR_CLOSED);
            assert_true(el < TEST_TIMEOUT_MS);
        }
        assert_int_equal(lmtp_is_connected(h), 0);
        assert_int_equal(lmtp_tls_active(h), 0);
        assert_status(h, lmtp_noop(h), LMTP_ERR_NOT_CONNECTED);
        fx_free(x, h);
        fx_stop(x, f);
    }
}

/* "220 ready", then the connection drops: an error at once, no hang. */
static void connection_drops_after_220(void **state) {
    fx *x = *state;
    fake_config c;
    lmtp_options o;
    fake_lmtp *f;
    static const int want[] = {LMTP_ERR_CLOSED, LMTP_ERR_IO, LMTP_ERR_TLS};

    tls_fake_config(&c, "server");
    c.fault_on = "STARTTLS";
    c.fault_reply = "220 2.0.0 ready\r\n";
    c.fault_action = FAKE_CLOSE;
    f = fx_fake(x, &c);
    tls_client_options(&o);
    o.starttls = LMTP_STARTTLS_REQUIRED;
    expect_new_fails(x, f, &o, want, 3, NULL);
    o.starttls = LMTP_STARTTLS_OPPORTUNISTIC;
    expect_new_fails(x, f, &o, want, 3, NULL);
}

/* Plain text right after "220 ready" (RFC 3207 5): refused, the connection closed, no TLS begun. */
static void plaintext_injected_after_220(void **state) {
    fx *x = *state;
    fake_config c;
    lmtp_options o;
    fake_lmtp *f;
    lmtp_t *h;
    static const int want[] = {LMTP_ERR_PROTOCOL};

    tls_fake_config(&c, "server");
    c.tls_plain_after_220 = "250 2.0.0 injected\r\n";
    f = fx_fake(x, &c);
    tls_client_options(&o);
    o.starttls = LMTP_STARTTLS_REQUIRED;
    expect_new_fails(x, f, &o, want, 1, NULL);
    assert_transcript(f, LHLO_LINE STARTTLS_LINE);

    h = fx_connect(x, f, NULL);
    assert_ok(h, lmtp_set_tls(h, &o));
    assert_status(h, lmtp_starttls(h), LMTP_ERR_PROTOCOL);
    assert_int_equal(lmtp_is_connected(h), 0);
    assert_int_equal(lmtp_tls_active(h), 0);
    assert_true(fake_wait_idle(f, 2, 2000));
    assert_int_equal(fake_tls_sessions(f), 0);
    assert_transcript(f, LHLO_LINE STARTTLS_LINE LHLO_LINE STARTTLS_LINE);
}

/* STARTTLS refused: REJECTED with the reply, the session stays in plain text and usable. */
static void starttls_refused(void **state) {
    fx *x = *state;
    fake_config c;
    lmtp_options t;
    fake_lmtp *f;
    lmtp_t *h;
    const char *rcpts[] = {"alice@x"};
    size_t mark;

    tls_fake_config(&c, "server");
    c.fault_on = "STARTTLS";
    c.fault_reply = "454 4.7.0 no\r\n";
    c.fault_times = 1;
    f = fx_fake(x, &c);
    h = fx_connect(x, f, NULL);
    tls_client_options(&t);
    assert_ok(h, lmtp_set_tls(h, &t));
    assert_status(h, lmtp_starttls(h), LMTP_ERR_REJECTED);
    assert_int_equal(lmtp_code(h), 454);
    assert_string_equal(lmtp_enhanced(h), "4.7.0");
    assert_string_equal(lmtp_text(h), "no");
    assert_int_equal(lmtp_is_connected(h), 1);
    assert_int_equal(lmtp_tls_active(h), 0);
    assert_int_equal(lmtp_supports(h, "STARTTLS"), 1); /* the session stays as it was */
    assert_ok(h, lmtp_noop(h));
    assert_int_equal(lmtp_code(h), 250);
    assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 1, "m\n", 2, NULL, NULL));
    assert_int_equal(fake_message_tls(f, 0), 0);
    assert_transcript(f, LHLO_LINE STARTTLS_LINE "NOOP\r\nMAIL FROM:<s@x>\r\nRCPT TO:<alice@x>\r\nDATA\r\nm\r\n.\r\n");

    /* The fault fired once: now STARTTLS works on the same connection. */
    mark = transcript_len(f);
    assert_ok(h, lmtp_starttls(h));
    assert_int_equal(lmtp_tls_active(h), 1);
    assert_int_equal(fake_tls_offset(f), (long)(mark + strlen(STARTTLS_LINE)));
    assert_transcript_from(f, mark, STARTTLS_LINE LHLO_LINE);
}

/* At connect: REQUIRED fails; OPPORTUNISTIC goes on in plain text (TLS when offered and possible). */
static void starttls_refused_at_connect(void **state) {
    fx *x = *state;
    fake_config c;
    lmtp_options o;
    fake_lmtp *f;
    lmtp_t *h;
    static const int want[] = {LMTP_ERR_REJECTED, LMTP_ERR_TLS};
    const char *rcpts[] = {"alice@x"};
    int st;

    tls_fake_config(&c, "server");
    c.fault_on = "STARTTLS";
    c.fault_reply = "454 4.7.0 TLS not available now\r\n";
    f = fx_fake(x, &c);
    tls_client_options(&o);
    o.starttls = LMTP_STARTTLS_REQUIRED;
    st = expect_new_fails(x, f, &o, want, 2, "454");
    (void)st;
    assert_transcript(f, LHLO_LINE STARTTLS_LINE);

    o.starttls = LMTP_STARTTLS_OPPORTUNISTIC;
    st = fx_try_new(x, f, &o, &h);
    assert_status(h, st, LMTP_OK);
    assert_int_equal(lmtp_is_connected(h), 1);
    assert_int_equal(lmtp_tls_active(h), 0);
    assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 1, "m\n", 2, NULL, NULL));
    assert_int_equal(lmtp_result_status(h, 0), LMTP_RESULT_OK);
    assert_int_equal(fake_message_tls(f, 0), 0);
}

/* ---- implicit TLS ----------------------------------------------------------------------------------- */

static void implicit_tls(void **state) {
    fx *x = *state;
    fake_config c;
    lmtp_options o;
    fake_lmtp *f;
    lmtp_t *h;
    const char *rcpts[] = {"alice@x", "temp@x"};
    int starttls;

    tls_fake_config(&c, "server");
    c.tls_implicit = 1;
    f = fx_fake(x, &c);
    for (starttls = LMTP_STARTTLS_OFF; starttls <= LMTP_STARTTLS_REQUIRED; starttls++) {
        size_t mark = transcript_len(f);
        print_message("implicit TLS with starttls = %d\n", starttls);
        tls_client_options(&o);
        o.flags = LMTP_OPT_IMPLICIT_TLS;
        o.starttls = starttls; /* already encrypted: no STARTTLS in any case */
        h = fx_connect(x, f, &o);
        assert_int_equal(lmtp_tls_active(h), 1);
        assert_string_equal(lmtp_banner(h), "fake.example LMTP ready");
        assert_string_equal(lmtp_domain(h), "fake.example");
        assert_int_equal(lmtp_supports(h, "STARTTLS"), 0);
        assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 2, "implicit\n", 9, NULL, NULL));
        assert_result(h, 0, "alice@x", LMTP_RESULT_OK, LMTP_STAGE_DATA, 250, "2.0.0", NULL, 250, NULL);
        assert_result(h, 1, "temp@x", LMTP_RESULT_TEMPFAIL, LMTP_STAGE_DATA, 452, "4.2.2", NULL, 250, NULL);
        assert_transcript_from(f, mark,
                               LHLO_LINE "MAIL FROM:<s@x>\r\nRCPT TO:<alice@x>\r\nRCPT TO:<temp@x>\r\nDATA\r\n"
                                         "implicit\r\n.\r\n");
        assert_int_equal(fake_message_tls(f, (size_t)starttls), 1);
        assert_int_equal(fake_tls_offset_at(f, (size_t)starttls), (long)mark);
        assert_ok(h, lmtp_quit(h));
        fx_free(x, h);
    }
    assert_int_equal(fake_tls_offset(f), 0);
    assert_int_equal(fake_tls_sessions(f), 3);
}

/* Implicit TLS against a server that speaks plain text: a TLS failure, quickly. */
static void implicit_tls_against_a_plain_server(void **state) {
    fx *x = *state;
    fake_config c;
    lmtp_options o;
    fake_lmtp *f;
    static const int want[] = {LMTP_ERR_TLS, LMTP_ERR_CLOSED, LMTP_ERR_PROTOCOL};

    test_fake_config(&c);
    f = fx_fake(x, &c);
    tls_client_options(&o);
    o.flags = LMTP_OPT_IMPLICIT_TLS;
    expect_new_fails(x, f, &o, want, 3, NULL);
    assert_int_equal(fake_message_count(f), 0);
}

/* Implicit TLS that fails its verification: CERTIFICATE, no LHLO sent. */
static void implicit_tls_verification(void **state) {
    fx *x = *state;
    fake_config c;
    lmtp_options o;
    fake_lmtp *f;
    static const int want[] = {LMTP_ERR_CERTIFICATE};

    tls_fake_config(&c, "expired");
    c.tls_implicit = 1;
    f = fx_fake(x, &c);
    tls_client_options(&o);
    o.flags = LMTP_OPT_IMPLICIT_TLS;
    expect_new_fails(x, f, &o, want, 1, "expired");
    assert_transcript(f, "");
}

/* lmtp_set_tls takes "the TLS flags" too: LMTP_OPT_IMPLICIT_TLS for the next lmtp_connect. */
static void set_tls_implicit_flag_applies_to_the_next_connect(void **state) {
    fx *x = *state;
    fake_config c;
    lmtp_options o, t;
    fake_lmtp *f;
    lmtp_t *h;
    int st;

    tls_fake_config(&c, "server");
    c.tls_implicit = 1;
    f = fx_fake(x, &c);
    test_options(&o);
    o.timeout_ms = 1000; /* a client that waits for a plain banner would wait this long */
    assert_int_equal(lmtp_create(&h, &o), LMTP_OK);
    fx_keep(x, h);
    tls_client_options(&t);
    t.flags = LMTP_OPT_IMPLICIT_TLS;
    assert_ok(h, lmtp_set_tls(h, &t));
    st = lmtp_connect(h, fake_host(f), fake_port(f));
    assert_status(h, st, LMTP_OK);
    assert_int_equal(lmtp_tls_active(h), 1);
}

/* ---- minimum version -------------------------------------------------------------------------------- */

static void minimum_version(void **state) {
    fx *x = *state;
    fake_config c;
    lmtp_options o;
    fake_lmtp *f;
    lmtp_t *h;
    static const int want[] = {LMTP_ERR_TLS};

    /* TLS 1.3 wanted, the server stops at 1.2: the handshake fails. */
    tls_fake_config(&c, "server");
    c.tls_max_version = 12;
    f = fx_fake(x, &c);
    tls_client_options(&o);
    o.starttls = LMTP_STARTTLS_REQUIRED;
    o.tls_min_version = 0x0304;
    expect_new_fails(x, f, &o, want, 1, NULL);
    assert_int_equal(fake_tls_sessions(f), 0);
    assert_int_equal(fake_tls_failures(f), 1);

    /* The default minimum (1.2) with that server: TLS 1.2. */
    o.tls_min_version = 0;
    h = fx_connect(x, f, &o);
    assert_int_equal(lmtp_tls_active(h), 1);
    assert_string_equal(fake_tls_version(f), "TLSv1.2");
    fx_free(x, h);
    o.tls_min_version = 0x0303;
    h = fx_connect(x, f, &o);
    assert_string_equal(fake_tls_version(f), "TLSv1.2");
    fx_free(x, h);
    fx_stop(x, f);

    /* TLS 1.3 wanted from a server that has it. */
    tls_fake_config(&c, "server");
    f = fx_fake(x, &c);
    o.tls_min_version = 0x0304;
    h = fx_connect(x, f, &o);
    assert_int_equal(lmtp_tls_active(h), 1);
    assert_string_equal(fake_tls_version(f), "TLSv1.3");
}

/* A minimum version that is not 0, 1.2 or 1.3 is an unusable option: lmtp_create says so. */
static void minimum_version_out_of_range(void **state) {
    fx *x = *state;
    lmtp_options o;
    lmtp_t *h = NULL;
    int st;

    tls_client_options(&o);
    o.tls_min_version = 0x0301; /* TLS 1.0 */
    st = lmtp_create(&h, &o);
    fx_keep(x, h);
    assert_non_null(h);
    assert_status(h, st, LMTP_ERR_INVALID_ARGUMENT);
    assert_has(lmtp_errmsg(h), "tls_min_version");
}

/* ---- client certificates and EXTERNAL ------------------------------------------------------------- */

static void client_fake_config(fake_config *c, int verify, const char *mechs) {
    tls_fake_config(c, "server");
    c->tls_verify_client = verify;
    c->tls_client_ca = CERTS.ca;
    c->auth_mechanisms = mechs;
    c->auth_user = "bob";
    c->auth_password = "bobs-password";
}

static void external_with_a_client_certificate(void **state) {
    fx *x = *state;
    fake_config c;
    lmtp_options o;
    fake_lmtp *f;
    lmtp_t *h;
    const char *rcpts[] = {"alice@x"};
    long off;

    client_fake_config(&c, 2, "PLAIN LOGIN EXTERNAL");
    c.reply_delay_ms = 5;
    f = fx_fake(x, &c);
    tls_client_options(&o);
    o.starttls = LMTP_STARTTLS_REQUIRED;
    o.tls_cert_file = CERTS.client_pem;
    o.tls_key_file = CERTS.client_key;
    h = fx_connect(x, f, &o);
    assert_int_equal(lmtp_tls_active(h), 1);
    assert_string_equal(fake_tls_client_cn(f), "client.example");
    assert_int_equal(fake_tls_client_verified(f), 1);
    assert_ok(h, lmtp_auth(h, "", NULL, "EXTERNAL", 0));
    assert_int_equal(lmtp_code(h), 235);
    assert_int_equal(fake_auth_successes(f), 1);
    assert_string_equal(fake_auth_mechanism(f), "EXTERNAL");
    assert_string_equal(fake_auth_user(f), "client.example");
    off = fake_tls_offset(f);
    assert_transcript_from(f, (size_t)off, LHLO_LINE "AUTH EXTERNAL =\r\n");
    assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 1, "m\n", 2, NULL, NULL));
    assert_string_equal(fake_message_auth_user(f, 0), "client.example");
    assert_int_equal(fake_lockstep_violations(f), 0);
}

/* The automatic pick takes EXTERNAL only when a client certificate is configured. */
static void external_is_picked_only_with_a_certificate(void **state) {
    fx *x = *state;
    fake_config c;
    lmtp_options t;
    fake_lmtp *f;
    lmtp_t *h;
    size_t mark;

    client_fake_config(&c, 1, "PLAIN LOGIN EXTERNAL");
    f = fx_fake(x, &c);

    /* With a certificate given by lmtp_set_tls before lmtp_starttls. */
    h = fx_connect(x, f, NULL);
    tls_client_options(&t);
    t.tls_cert_file = CERTS.client_pem;
    t.tls_key_file = CERTS.client_key;
    assert_ok(h, lmtp_set_tls(h, &t));
    assert_ok(h, lmtp_starttls(h));
    assert_int_equal(fake_tls_client_verified(f), 1);
    assert_ok(h, lmtp_auth(h, "", NULL, NULL, 0));
    assert_string_equal(fake_auth_mechanism(f), "EXTERNAL");
    assert_string_equal(fake_auth_user(f), "client.example");
    fx_free(x, h);

    /* Without one: PLAIN (the strongest usable; inside TLS it may send the password). */
    h = fx_connect(x, f, NULL);
    tls_client_options(&t);
    assert_ok(h, lmtp_set_tls(h, &t));
    assert_ok(h, lmtp_starttls(h));
    assert_null(fake_tls_client_cn(f));
    assert_ok(h, lmtp_auth(h, "bob", "bobs-password", NULL, 0));
    assert_string_equal(fake_auth_mechanism(f), "PLAIN");
    assert_string_equal(fake_auth_user(f), "bob");
    fx_free(x, h);
    fx_stop(x, f);

    /* A server offering only EXTERNAL, no certificate: nothing usable, nothing sent. */
    client_fake_config(&c, 1, "EXTERNAL");
    f = fx_fake(x, &c);
    h = fx_connect(x, f, NULL);
    assert_ok(h, lmtp_set_tls(h, &t));
    assert_ok(h, lmtp_starttls(h));
    mark = transcript_len(f);
    assert_status(h, lmtp_auth(h, "", NULL, NULL, 0), LMTP_ERR_NOT_ADVERTISED);
    assert_transcript_from(f, mark, "");
    assert_int_equal(lmtp_is_connected(h), 1);
    assert_int_equal(fake_auth_failures(f), 0);
}

/* AUTH at connect with the options: EXTERNAL with the certificate's identity as authzid. */
static void external_at_connect(void **state) {
    fx *x = *state;
    fake_config c;
    lmtp_options o;
    fake_lmtp *f;
    lmtp_t *h;
    char want[128], b64[64];

    client_fake_config(&c, 2, "PLAIN EXTERNAL");
    f = fx_fake(x, &c);
    tls_client_options(&o);
    o.starttls = LMTP_STARTTLS_REQUIRED;
    o.tls_cert_file = CERTS.client_pem;
    o.tls_key_file = CERTS.client_key;
    o.auth_user = "client.example";
    h = fx_connect(x, f, &o);
    assert_int_equal(lmtp_tls_active(h), 1);
    assert_int_equal(fake_auth_successes(f), 1);
    assert_string_equal(fake_auth_mechanism(f), "EXTERNAL");
    assert_string_equal(fake_auth_user(f), "client.example");
    b64_encode("client.example", 14, b64);
    snprintf(want, sizeof want, LHLO_LINE "AUTH EXTERNAL %s\r\n", b64);
    assert_transcript_from(f, (size_t)fake_tls_offset(f), want);
}

/* A server that requires a client certificate, none given: the connection fails. */
static void client_certificate_required_but_missing(void **state) {
    fx *x = *state;
    fake_config c;
    lmtp_options o;
    fake_lmtp *f;
    static const int want[] = {LMTP_ERR_TLS, LMTP_ERR_CLOSED, LMTP_ERR_IO};

    client_fake_config(&c, 2, "EXTERNAL");
    f = fx_fake(x, &c);
    tls_client_options(&o);
    o.starttls = LMTP_STARTTLS_REQUIRED;
    expect_new_fails(x, f, &o, want, 3, NULL);
    assert_int_equal(fake_auth_successes(f), 0);
    assert_int_equal(fake_message_count(f), 0);
}

/* ---- deadlines ---------------------------------------------------------------------------------- */

/* "220 ready", then silence: the handshake has the timeout's deadline. */
static void handshake_times_out(void **state) {
    fx *x = *state;
    fake_config c;
    lmtp_options o;
    fake_lmtp *f;
    lmtp_t *h;
    long t0, el;
    int st;

    tls_fake_config(&c, "server");
    c.fault_on = "STARTTLS";
    c.fault_reply = "220 2.0.0 ready\r\n";
    c.fault_action = FAKE_HANG;
    f = fx_fake(x, &c);
    tls_client_options(&o);
    o.starttls = LMTP_STARTTLS_REQUIRED;
    o.timeout_ms = 400;
    t0 = now_ms();
    st = fx_try_new(x, f, &o, &h);
    el = now_ms() - t0;
    print_message("STARTTLS handshake against silence: %d after %ld ms: %s\n", st, el, lmtp_errmsg(h));
    assert_status(h, st, LMTP_ERR_TIMEOUT);
    assert_int_equal(lmtp_os_error(h), 110 /* ETIMEDOUT */);
    assert_true(el >= 350 && el < 1500);
    assert_int_equal(lmtp_is_connected(h), 0);
    fx_free(x, h);
    fx_stop(x, f);

    /* Implicit TLS to a server that never answers the ClientHello. */
    test_fake_config(&c);
    c.fault_on = "";
    c.fault_action = FAKE_HANG;
    f = fx_fake(x, &c);
    o.starttls = LMTP_STARTTLS_OFF;
    o.flags = LMTP_OPT_IMPLICIT_TLS;
    t0 = now_ms();
    st = fx_try_new(x, f, &o, &h);
    el = now_ms() - t0;
    print_message("implicit TLS against silence: %d after %ld ms: %s\n", st, el, lmtp_errmsg(h));
    assert_status(h, st, LMTP_ERR_TIMEOUT);
    assert_true(el >= 350 && el < 1500);
    assert_int_equal(lmtp_is_connected(h), 0);
}

/* LMTP_OPT_NO_HELLO: connect reads the banner only; STARTTLS and AUTH options are ignored. */
static void no_hello_ignores_starttls_and_auth(void **state) {
    fx *x = *state;
    fake_config c;
    lmtp_options o;
    fake_lmtp *f;
    lmtp_t *h;

    tls_fake_config(&c, "server");
    c.auth_mechanisms = "PLAIN";
    c.auth_user = "u";
    c.auth_password = "p";
    f = fx_fake(x, &c);
    tls_client_options(&o);
    o.flags = LMTP_OPT_NO_HELLO;
    o.starttls = LMTP_STARTTLS_REQUIRED;
    o.auth_user = "u";
    o.auth_password = "p";
    h = fx_connect(x, f, &o);
    assert_int_equal(lmtp_tls_active(h), 0);
    assert_int_equal(lmtp_is_connected(h), 1);
    sleep_ms(20);
    assert_transcript(f, "");
    /* The caller does it: LHLO, STARTTLS (LHLO again), AUTH. */
    assert_ok(h, lmtp_hello(h, TEST_HELLO));
    assert_ok(h, lmtp_starttls(h));
    assert_int_equal(lmtp_tls_active(h), 1);
    assert_ok(h, lmtp_auth(h, "u", "p", NULL, 0));
    assert_transcript_from(f, 0, LHLO_LINE STARTTLS_LINE LHLO_LINE "AUTH PLAIN AHUAcA==\r\n");
}

/* NULL handles and calls without a connection. */
static void arguments_and_states(void **state) {
    fx *x = *state;
    lmtp_options o;
    lmtp_t *h;

    assert_int_equal(lmtp_starttls(NULL), LMTP_ERR_INVALID_ARGUMENT);
    assert_int_equal(lmtp_tls_active(NULL), 0);
    assert_int_equal(lmtp_auth(NULL, "u", "p", NULL, 0), LMTP_ERR_INVALID_ARGUMENT);
    assert_int_equal(lmtp_bdat(NULL, "x", 1, 1), LMTP_ERR_INVALID_ARGUMENT);
    tls_client_options(&o);
    assert_int_equal(lmtp_create(&h, &o), LMTP_OK);
    fx_keep(x, h);
    assert_int_equal(lmtp_tls_active(h), 0);
    assert_status(h, lmtp_starttls(h), LMTP_ERR_NOT_CONNECTED);
    assert_status(h, lmtp_auth(h, "u", "p", NULL, 0), LMTP_ERR_NOT_CONNECTED);
    assert_status(h, lmtp_bdat(h, "x", 1, 1), LMTP_ERR_NOT_CONNECTED);
    assert_ok(h, lmtp_set_tls(h, &o)); /* settings may be given while not connected */
    o.struct_size = 0;
    assert_status(h, lmtp_set_tls(h, &o), LMTP_ERR_INVALID_ARGUMENT);
    /* lmtp_options.starttls out of range is an unusable option. */
    tls_client_options(&o);
    o.starttls = 3;
    {
        lmtp_t *b = NULL;
        int st = lmtp_create(&b, &o);
        fx_keep(x, b);
        assert_status(b, st, LMTP_ERR_INVALID_ARGUMENT);
        assert_has(lmtp_errmsg(b), "starttls");
    }
}

/* A big message inside TLS, by BDAT (several chunks in flight) and by DATA: stored exactly. */
typedef struct pattern_source {
    size_t len, pos, calls;
} pattern_source;

static char pattern_byte(size_t i) {
    return (char)(i % 80 == 78 ? '\r' : i % 80 == 79 ? '\n' : 'A' + (int)(i * 7 % 26));
}

static long pattern_read(void *user, void *buf, size_t cap) {
    static const size_t pieces[] = {70001, 3, 262144, 999, 131072};
    pattern_source *s = user;
    size_t n = pieces[s->calls++ % 5], i;
    char *b = buf;
    if (n > cap) n = cap;
    if (n > s->len - s->pos) n = s->len - s->pos;
    for (i = 0; i < n; i++) b[i] = pattern_byte(s->pos + i);
    s->pos += n;
    return (long)n;
}

static void large_message_inside_tls(void **state) {
    fx *x = *state;
    fake_config c;
    lmtp_options o;
    fake_lmtp *f;
    lmtp_t *h;
    const char *rcpts[] = {"alice@x", "bob@x"};
    lmtp_mail_options m = LMTP_MAIL_OPTIONS_INIT;
    size_t k, len = 80u * 80000, i, n; /* whole lines: no final CRLF to add */
    const char *stored;

    tls_fake_config(&c, "server");
    c.extra_caps = "CHUNKING";
    f = fx_fake(x, &c);
    tls_client_options(&o);
    o.starttls = LMTP_STARTTLS_REQUIRED;
    h = fx_connect(x, f, &o);
    for (k = 0; k < 2; k++) {
        pattern_source s;
        memset(&s, 0, sizeof s);
        s.len = len;
        m.transfer = k == 0 ? LMTP_TRANSFER_BDAT : LMTP_TRANSFER_DATA;
        assert_ok(h, lmtp_deliver_stream(h, "s@x", rcpts, 2, pattern_read, &s, &m, NULL));
        assert_int_equal(lmtp_result_status(h, 0), LMTP_RESULT_OK);
        assert_int_equal(lmtp_result_status(h, 1), LMTP_RESULT_OK);
        assert_int_equal(fake_message_count(f), k + 1);
        assert_int_equal(fake_message_tls(f, k), 1);
        stored = fake_message(f, k, &n);
        assert_int_equal(n, len);
        for (i = 0; i < len; i++)
            if (stored[i] != pattern_byte(i)) fail_msg("message %lu differs at byte %lu", (unsigned long)k, (unsigned long)i);
    }
    assert_int_equal(lmtp_tls_active(h), 1);
    assert_ok(h, lmtp_noop(h));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(starttls_everywhere, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(opportunistic_without_starttls_stays_plain, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(required_without_starttls_fails_before_mail, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(certificate_for_another_name, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(certificate_from_an_unknown_ca, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(certificate_expired, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(system_cas_refuse_the_test_ca, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(matching_names_are_accepted, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(insecure_skip_verify_accepts_any, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(set_tls_applies_to_the_next_connect, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(unix_socket_needs_a_server_name, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(handshake_fails_after_220, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(connection_drops_after_220, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(plaintext_injected_after_220, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(starttls_refused, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(starttls_refused_at_connect, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(implicit_tls, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(implicit_tls_against_a_plain_server, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(implicit_tls_verification, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(set_tls_implicit_flag_applies_to_the_next_connect, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(minimum_version, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(minimum_version_out_of_range, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(external_with_a_client_certificate, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(external_is_picked_only_with_a_certificate, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(external_at_connect, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(client_certificate_required_but_missing, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(handshake_times_out, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(no_hello_ignores_starttls_and_auth, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(arguments_and_states, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(large_message_inside_tls, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests_name("capi_tls", tests, certs_group_setup, certs_group_teardown);
}
