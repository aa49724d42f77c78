/*
 * test_capi_auth.c - AUTH (RFC 4954) through the C API against the fake server: PLAIN and LOGIN
 * (only over TLS or a unix socket unless allowed), SCRAM-SHA-256 (RFC 5802, RFC 7677) anywhere,
 * the automatic pick, refusals (535, 534, 538, 454), a SCRAM server that cannot prove itself,
 * mechanisms not offered, AUTH at connect, a server that requires AUTH, and a trace that never
 * shows a credential.
 */
#include "capi_tls.h"

#include <stdio.h>
#include <stdlib.h>

#define LHLO_LINE "LHLO " TEST_HELLO "\r\n"

#define USER "alice-user"
#define PASS "s3cr3t-Pa55:w0rd"

/* A fake offering `mechs` for USER/PASS; with TLS (STARTTLS) when tls. */
static void auth_fake_config(fake_config *c, int tls, const char *mechs) {
    if (tls)
        tls_fake_config(c, "server");
    else
        test_fake_config(c);
    c->auth_mechanisms = mechs;
    c->auth_user = USER;
    c->auth_password = PASS;
}

/* A handle inside TLS (STARTTLS at connect). */
static lmtp_t *connect_tls(fx *x, fake_lmtp *f, const lmtp_options *base) {
    lmtp_options o;
    lmtp_t *h;
    if (base)
        o = *base;
    else
        tls_client_options(&o);
    o.tls_ca_file = CERTS.ca;
    o.starttls = LMTP_STARTTLS_REQUIRED;
    if (strcmp(fake_host(f), "127.0.0.1") != 0 && strcmp(fake_host(f), "::1") != 0) o.tls_server_name = "localhost";
    h = fx_connect(x, f, &o);
    assert_int_equal(lmtp_tls_active(h), 1);
    return h;
}

/* The expected AUTH lines. */
static void plain_line(char *out, size_t cap, const char *user, const char *pass) {
    char raw[256], b64[400];
    size_t n = 0;
    raw[n++] = '\0';
    memcpy(raw + n, user, strlen(user));
    n += strlen(user);
    raw[n++] = '\0';
    memcpy(raw + n, pass, strlen(pass));
    n += strlen(pass);
    b64_encode(raw, n, b64);
    if (snprintf(out, cap, "AUTH PLAIN %s\r\n", b64) >= (int)cap) fail();
}

static void login_lines(char *out, size_t cap, const char *user, const char *pass) {
    char bu[200], bp[200];
    b64_encode(user, strlen(user), bu);
    b64_encode(pass, strlen(pass), bp);
    if (snprintf(out, cap, "AUTH LOGIN\r\n%s\r\n%s\r\n", bu, bp) >= (int)cap) fail();
}

/* ---- PLAIN and LOGIN where they may go --------------------------------------------------------- */

static void plain_and_login_over_tls(void **state) {
    fx *x = *state;
    static const char *const mechs[] = {"PLAIN", "LOGIN", "plain", "login"};
    size_t i;

    for (i = 0; i < 4; i++) {
        fake_config c;
        fake_lmtp *f;
        lmtp_t *h;
        char want[1400], lines[1024];
        const char *rcpts[] = {"alice@x"};
        print_message("AUTH %s inside TLS\n", mechs[i]);
        auth_fake_config(&c, 1, "PLAIN LOGIN");
        c.auth_after_tls = 1;
        c.reply_delay_ms = 5; /* a client that does not wait for 334 would show */
        f = fx_fake(x, &c);
        h = connect_tls(x, f, NULL);
        assert_int_equal(lmtp_supports(h, "AUTH"), 1);
        assert_string_equal(lmtp_capability(h, "AUTH"), "PLAIN LOGIN");
        assert_ok(h, lmtp_auth(h, USER, PASS, mechs[i], 0));
        assert_int_equal(lmtp_code(h), 235);
        assert_string_equal(lmtp_enhanced(h), "2.7.0");
        assert_int_equal(fake_auth_successes(f), 1);
        assert_int_equal(fake_auth_failures(f), 0);
        assert_string_equal(fake_auth_user(f), USER);
        if (i % 2 == 0) {
            assert_string_equal(fake_auth_mechanism(f), "PLAIN");
            plain_line(lines, sizeof lines, USER, PASS);
        } else {
            assert_string_equal(fake_auth_mechanism(f), "LOGIN");
            login_lines(lines, sizeof lines, USER, PASS);
        }
        if (snprintf(want, sizeof want, LHLO_LINE "%s", lines) >= (int)sizeof want) fail();
        assert_transcript_from(f, (size_t)fake_tls_offset(f), want);
        assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 1, "m\n", 2, NULL, NULL));
        assert_string_equal(fake_message_auth_user(f, 0), USER);
        assert_int_equal(fake_message_tls(f, 0), 1);
        assert_int_equal(fake_lockstep_violations(f), 0);
        fx_free(x, h);
        fx_stop(x, f);
    }
}

/* A unix socket is local: PLAIN and LOGIN may go without TLS. */
static void plain_and_login_over_a_unix_socket(void **state) {
    fx *x = *state;
    static const char *const mechs[] = {"PLAIN", "LOGIN", NULL};
    size_t i;

    for (i = 0; i < 3; i++) {
        fake_config c;
        fake_lmtp *f;
        lmtp_t *h;
        char want[1400], lines[1024];
        auth_fake_config(&c, 0, "LOGIN PLAIN");
        c.family = AF_UNIX;
        f = fx_fake(x, &c);
        h = fx_connect(x, f, NULL);
        assert_int_equal(lmtp_tls_active(h), 0);
        assert_ok(h, lmtp_auth(h, USER, PASS, mechs[i], 0));
        /* The automatic pick prefers PLAIN to LOGIN. */
        assert_string_equal(fake_auth_mechanism(f), mechs[i] && strcmp(mechs[i], "LOGIN") == 0 ? "LOGIN" : "PLAIN");
        assert_string_equal(fake_auth_user(f), USER);
        if (mechs[i] && strcmp(mechs[i], "LOGIN") == 0)
            login_lines(lines, sizeof lines, USER, PASS);
        else
            plain_line(lines, sizeof lines, USER, PASS);
        if (snprintf(want, sizeof want, LHLO_LINE "%s", lines) >= (int)sizeof want) fail();
        assert_transcript(f, want);
        fx_free(x, h);
        fx_stop(x, f);
    }
}

/* Over unencrypted TCP: INSECURE, nothing sent, unless the caller allows it. */
static void plain_and_login_over_tcp_are_refused(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    static const char *const mechs[] = {"PLAIN", "LOGIN", NULL};
    size_t i, mark;

    auth_fake_config(&c, 0, "PLAIN LOGIN");
    f = fx_fake(x, &c);
    for (i = 0; i < 3; i++) {
        print_message("AUTH %s over TCP\n", mechs[i] ? mechs[i] : "(automatic)");
        h = fx_connect(x, f, NULL);
        mark = transcript_len(f);
        assert_status(h, lmtp_auth(h, USER, PASS, mechs[i], 0), LMTP_ERR_INSECURE);
        assert_int_equal(lmtp_errcode(h), LMTP_ERR_INSECURE);
        assert_true(strlen(lmtp_errmsg(h)) > 0);
        assert_false(has(lmtp_errmsg(h), PASS));
        assert_int_equal(lmtp_code(h), 0); /* no reply: nothing was sent */
        assert_transcript_from(f, mark, "");
        assert_int_equal(lmtp_is_connected(h), 1);
        assert_ok(h, lmtp_noop(h));
        assert_transcript_from(f, mark, "NOOP\r\n");
        assert_int_equal(fake_auth_failures(f), 0);
        assert_int_equal(fake_auth_successes(f), 0);

        /* Allowed explicitly. */
        mark = transcript_len(f);
        assert_ok(h, lmtp_auth(h, USER, PASS, mechs[i], LMTP_OPT_AUTH_ALLOW_PLAINTEXT));
        assert_int_equal(fake_auth_successes(f), 1);
        assert_string_equal(fake_auth_mechanism(f), mechs[i] && strcmp(mechs[i], "LOGIN") == 0 ? "LOGIN" : "PLAIN");
        fx_free(x, h);
        assert_true(fake_wait_idle(f, fake_connections(f), 2000));
        fake_clear(f);
    }
}

/* The same at connect: lmtp_new fails with INSECURE (nothing half open), or goes when allowed. */
static void auth_at_connect_over_tcp(void **state) {
    fx *x = *state;
    fake_config c;
    lmtp_options o;
    fake_lmtp *f;
    lmtp_t *h;
    int st;

    auth_fake_config(&c, 0, "PLAIN LOGIN");
    f = fx_fake(x, &c);
    test_options(&o);
    o.auth_user = USER;
    o.auth_password = PASS;
    st = fx_try_new(x, f, &o, &h);
    assert_status(h, st, LMTP_ERR_INSECURE);
    assert_int_equal(lmtp_is_connected(h), 0);
    assert_true(fake_wait_idle(f, 1, 2000));
    assert_transcript(f, LHLO_LINE);
    fx_free(x, h);

    o.flags = LMTP_OPT_AUTH_ALLOW_PLAINTEXT;
    o.auth_mechanism = "LOGIN";
    h = fx_connect(x, f, &o);
    assert_int_equal(lmtp_is_connected(h), 1);
    assert_int_equal(fake_auth_successes(f), 1);
    assert_string_equal(fake_auth_mechanism(f), "LOGIN");
}

/* ---- SCRAM-SHA-256 ------------------------------------------------------------------------------- */

/* Checks the SCRAM exchange in the transcript from `mark`: client-first (on the AUTH line or the
   next), client-final with a proof, the empty line after the server's signature. Stores the
   client-final line (base64) and the proof (base64) if asked. */
static void check_scram_exchange(fake_lmtp *f, size_t mark, const char *user, char *final_b64, char *proof) {
    char line[1024], dec[1024];
    size_t k = 0, n;
    char *p;

    assert_true(transcript_nth_line(f, mark, k++, line, sizeof line));
    if (strcmp(line, "AUTH SCRAM-SHA-256") == 0) {
        assert_true(transcript_nth_line(f, mark, k++, line, sizeof line));
    } else {
        assert_true(strncmp(line, "AUTH SCRAM-SHA-256 ", 19) == 0);
        memmove(line, line + 19, strlen(line + 19) + 1);
    }
    n = b64_decode(line, strlen(line), dec);
    assert_true(n != (size_t)-1);
    {
        char want[256];
        snprintf(want, sizeof want, "n,,n=%s,r=", user);
        if (strncmp(dec, want, strlen(want)) != 0) fail_msg("client-first is \"%s\"", dec);
    }
    assert_true(transcript_nth_line(f, mark, k++, line, sizeof line));
    if (final_b64) strcpy(final_b64, line);
    n = b64_decode(line, strlen(line), dec);
    assert_true(n != (size_t)-1);
    if (strncmp(dec, "c=biws,r=", 9) != 0) fail_msg("client-final is \"%s\"", dec);
    p = strstr(dec, ",p=");
    assert_non_null(p);
    assert_int_equal(strlen(p + 3), 44); /* base64 of 32 bytes */
    if (proof) strcpy(proof, p + 3);
    assert_true(transcript_nth_line(f, mark, k++, line, sizeof line));
    assert_string_equal(line, ""); /* the answer to the server's signature */
    assert_false(transcript_nth_line(f, mark, k, line, sizeof line));
}

/* SCRAM never reveals the password: it goes over plain TCP (RFC 7677's account). */
static void scram_over_plain_tcp(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    size_t mark, n;
    const char *t;
    char b64pass[32];
    const char *rcpts[] = {"alice@x"};

    test_fake_config(&c);
    c.auth_mechanisms = "SCRAM-SHA-256";
    c.auth_user = "user";
    c.auth_password = "pencil";
    c.scram_salt = "W22ZaJ0SNY7soEsUEjb6gQ==";
    c.scram_iterations = 4096;
    c.reply_delay_ms = 5;
    f = fx_fake(x, &c);
    h = fx_connect(x, f, NULL);
    mark = transcript_len(f);
    assert_ok(h, lmtp_auth(h, "user", "pencil", "SCRAM-SHA-256", 0));
    assert_int_equal(lmtp_code(h), 235);
    assert_int_equal(fake_auth_successes(f), 1);
    assert_string_equal(fake_auth_mechanism(f), "SCRAM-SHA-256");
    assert_string_equal(fake_auth_user(f), "user");
    check_scram_exchange(f, mark, "user", NULL, NULL);
    t = fake_transcript(f, &n);
    assert_false(contains(t, n, "pencil"));
    b64_encode("pencil", 6, b64pass);
    assert_false(contains(t, n, b64pass));
    assert_int_equal(fake_lockstep_violations(f), 0);
    assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 1, "m\n", 2, NULL, NULL));
    assert_string_equal(fake_message_auth_user(f, 0), "user");
}

/* The automatic pick takes SCRAM-SHA-256 when offered, over TCP and inside TLS. */
static void automatic_pick_prefers_scram(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    size_t mark;

    auth_fake_config(&c, 0, "PLAIN LOGIN SCRAM-SHA-256 EXTERNAL");
    f = fx_fake(x, &c);
    h = fx_connect(x, f, NULL);
    mark = transcript_len(f);
    assert_ok(h, lmtp_auth(h, USER, PASS, NULL, 0));
    assert_string_equal(fake_auth_mechanism(f), "SCRAM-SHA-256");
    check_scram_exchange(f, mark, USER, NULL, NULL);
    fx_free(x, h);
    fx_stop(x, f);

    auth_fake_config(&c, 1, "LOGIN PLAIN SCRAM-SHA-256");
    f = fx_fake(x, &c);
    h = connect_tls(x, f, NULL);
    assert_ok(h, lmtp_auth(h, USER, PASS, NULL, 0));
    assert_string_equal(fake_auth_mechanism(f), "SCRAM-SHA-256");
    assert_string_equal(fake_auth_user(f), USER);
}

/* ---- refusals ------------------------------------------------------------------------------------- */

static void wrong_password(void **state) {
    fx *x = *state;
    static const char *const mechs[] = {"PLAIN", "LOGIN", "SCRAM-SHA-256"};
    size_t i;

    for (i = 0; i < 3; i++) {
        fake_config c;
        fake_lmtp *f;
        lmtp_t *h;
        print_message("wrong password with %s\n", mechs[i]);
        auth_fake_config(&c, 1, "PLAIN LOGIN SCRAM-SHA-256");
        f = fx_fake(x, &c);
        h = connect_tls(x, f, NULL);
        assert_status(h, lmtp_auth(h, USER, "not-the-password", mechs[i], 0), LMTP_ERR_AUTH);
        assert_int_equal(lmtp_errcode(h), LMTP_ERR_AUTH);
        assert_int_equal(lmtp_code(h), 535);
        assert_string_equal(lmtp_enhanced(h), "5.7.8");
        assert_has(lmtp_errmsg(h), "credentials");
        assert_false(has(lmtp_errmsg(h), "not-the-password"));
        assert_int_equal(fake_auth_failures(f), 1);
        assert_int_equal(fake_auth_successes(f), 0);
        /* Still connected and in step; the right password then works. */
        assert_int_equal(lmtp_is_connected(h), 1);
        assert_ok(h, lmtp_noop(h));
        assert_int_equal(lmtp_code(h), 250);
        assert_ok(h, lmtp_auth(h, USER, PASS, mechs[i], 0));
        assert_int_equal(fake_auth_successes(f), 1);
        assert_string_equal(fake_auth_mechanism(f), mechs[i]);
        fx_free(x, h);
        fx_stop(x, f);
    }
}

static void refusal_codes(void **state) {
    fx *x = *state;
    static const struct {
        int code;
        const char *enhanced;
        const char *why; /* part of the explanation */
    } cases[] = {
        {534, "5.7.9", "mechanism"},
        {538, "5.7.11", "ncrypt"},
        {454, "4.7.0", "emporar"},
        {432, "4.7.12", "transition"},
    };
    size_t i;

    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fake_config c;
        fake_lmtp *f;
        lmtp_t *h;
        char code[8];
        print_message("auth_fail_code %d\n", cases[i].code);
        auth_fake_config(&c, 0, "SCRAM-SHA-256 PLAIN");
        c.auth_fail_code = cases[i].code;
        f = fx_fake(x, &c);
        h = fx_connect(x, f, NULL);
        assert_status(h, lmtp_auth(h, USER, PASS, NULL, 0), LMTP_ERR_AUTH);
        assert_int_equal(lmtp_code(h), cases[i].code);
        assert_string_equal(lmtp_enhanced(h), cases[i].enhanced);
        snprintf(code, sizeof code, "%d", cases[i].code);
        assert_has(lmtp_errmsg(h), code);
        assert_has(lmtp_errmsg(h), cases[i].why);
        assert_int_equal(lmtp_is_connected(h), 1);
        assert_ok(h, lmtp_noop(h));
        fx_free(x, h);
        fx_stop(x, f);
    }
}

/* A SCRAM server that cannot prove it knows the password: AUTH fails, the exchange is cancelled
   (or the connection closed); the client does not consider itself authenticated. */
static void scram_bad_server_signature(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    size_t mark, n;
    const char *t;

    auth_fake_config(&c, 0, "SCRAM-SHA-256");
    c.scram_bad_server_signature = 1;
    f = fx_fake(x, &c);
    h = fx_connect(x, f, NULL);
    mark = transcript_len(f);
    assert_status(h, lmtp_auth(h, USER, PASS, "SCRAM-SHA-256", 0), LMTP_ERR_AUTH);
    assert_has(lmtp_errmsg(h), "signature");
    assert_int_equal(fake_auth_successes(f), 0);
    t = fake_transcript(f, &n);
    /* The empty line that would complete the exchange was never sent. */
    assert_false(contains(t + mark, n - mark, "\r\n\r\n"));
    if (lmtp_is_connected(h)) {
        assert_true(n >= 3 && memcmp(t + n - 3, "*\r\n", 3) == 0);
        assert_int_equal(fake_auth_failures(f), 1); /* the cancel */
        assert_ok(h, lmtp_noop(h));
        assert_int_equal(lmtp_code(h), 250);
    } else {
        assert_true(fake_wait_idle(f, 1, 2000));
    }
}

/* ---- mechanisms not offered ------------------------------------------------------------------------- */

static void nothing_to_authenticate_with(void **state) {
    fx *x = *state;
    static const struct {
        const char *offered; /* NULL: no AUTH at all */
        const char *asked;
        int want;
    } cases[] = {
        {NULL, NULL, LMTP_ERR_NOT_ADVERTISED},
        {NULL, "PLAIN", LMTP_ERR_NOT_ADVERTISED},
        {NULL, "SCRAM-SHA-256", LMTP_ERR_NOT_ADVERTISED},
        {"CRAM-MD5", NULL, LMTP_ERR_NOT_ADVERTISED},
        {"CRAM-MD5 DIGEST-MD5", NULL, LMTP_ERR_NOT_ADVERTISED},
        {"SCRAM-SHA-256", "PLAIN", LMTP_ERR_NOT_ADVERTISED},
        {"PLAIN", "SCRAM-SHA-256", LMTP_ERR_NOT_ADVERTISED},
        {"PLAIN LOGIN", "EXTERNAL", LMTP_ERR_NOT_ADVERTISED},
    };
    size_t i;

    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fake_config c;
        fake_lmtp *f;
        lmtp_t *h;
        size_t mark;
        print_message("offered %s, asked %s\n", cases[i].offered ? cases[i].offered : "(no AUTH)",
                      cases[i].asked ? cases[i].asked : "(automatic)");
        auth_fake_config(&c, 0, cases[i].offered);
        c.family = AF_UNIX; /* PLAIN would be allowed here: only "not offered" can stop it */
        f = fx_fake(x, &c);
        h = fx_connect(x, f, NULL);
        mark = transcript_len(f);
        assert_status(h, lmtp_auth(h, USER, PASS, cases[i].asked, 0), cases[i].want);
        assert_true(strlen(lmtp_errmsg(h)) > 0);
        assert_transcript_from(f, mark, "");
        assert_int_equal(lmtp_is_connected(h), 1);
        assert_ok(h, lmtp_noop(h));
        fx_free(x, h);
        fx_stop(x, f);
    }
}

/* A mechanism offered but not implemented by liblmtp, named explicitly: refused, nothing sent. */
static void unimplemented_mechanism_named(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    size_t mark;
    int st;

    auth_fake_config(&c, 0, "CRAM-MD5 PLAIN");
    c.family = AF_UNIX;
    f = fx_fake(x, &c);
    h = fx_connect(x, f, NULL);
    mark = transcript_len(f);
    st = lmtp_auth(h, USER, PASS, "CRAM-MD5", 0);
    assert_true(st == LMTP_ERR_NOT_ADVERTISED || st == LMTP_ERR_INVALID_ARGUMENT);
    assert_transcript_from(f, mark, "");
    assert_int_equal(lmtp_is_connected(h), 1);
    /* The automatic pick skips it and takes PLAIN. */
    assert_ok(h, lmtp_auth(h, USER, PASS, NULL, 0));
    assert_string_equal(fake_auth_mechanism(f), "PLAIN");
}

/* ---- AUTH at connect, and servers that want it ------------------------------------------------------- */

static void auth_at_connect(void **state) {
    fx *x = *state;
    fake_config c;
    lmtp_options o;
    fake_lmtp *f;
    lmtp_t *h;
    char want[1400], lines[1024];
    int st;

    auth_fake_config(&c, 1, "PLAIN LOGIN");
    c.auth_after_tls = 1;
    c.reply_delay_ms = 5;
    f = fx_fake(x, &c);
    tls_client_options(&o);
    o.auth_user = USER;
    o.auth_password = PASS;
    h = connect_tls(x, f, &o);
    assert_int_equal(fake_auth_successes(f), 1);
    assert_string_equal(fake_auth_mechanism(f), "PLAIN");
    assert_string_equal(fake_auth_user(f), USER);
    plain_line(lines, sizeof lines, USER, PASS);
    if (snprintf(want, sizeof want, LHLO_LINE "STARTTLS\r\n" LHLO_LINE "%s", lines) >= (int)sizeof want) fail();
    assert_transcript(f, want);
    assert_int_equal(fake_lockstep_violations(f), 0);
    fx_free(x, h);
    assert_true(fake_wait_idle(f, 1, 2000));
    fake_clear(f);

    /* A mechanism named in the options. */
    o.auth_mechanism = "LOGIN";
    h = connect_tls(x, f, &o);
    assert_string_equal(fake_auth_mechanism(f), "LOGIN");
    login_lines(lines, sizeof lines, USER, PASS);
    if (snprintf(want, sizeof want, LHLO_LINE "STARTTLS\r\n" LHLO_LINE "%s", lines) >= (int)sizeof want) fail();
    assert_transcript(f, want);
    assert_int_equal(fake_lockstep_violations(f), 0);
    fx_free(x, h);
    assert_true(fake_wait_idle(f, 1, 2000));

    /* A wrong password at connect: lmtp_new fails with AUTH, nothing half open. */
    o.auth_mechanism = NULL;
    o.auth_password = "wrong";
    o.starttls = LMTP_STARTTLS_REQUIRED;
    st = fx_try_new(x, f, &o, &h);
    assert_status(h, st, LMTP_ERR_AUTH);
    assert_has(lmtp_errmsg(h), "credentials");
    assert_int_equal(lmtp_is_connected(h), 0);
    assert_true(fake_wait_idle(f, 2, 2000));
    assert_int_equal(fake_auth_failures(f), 1);
}

/* AUTH offered only inside TLS: not before STARTTLS, yes after it. */
static void auth_offered_only_after_starttls(void **state) {
    fx *x = *state;
    fake_config c;
    lmtp_options t;
    fake_lmtp *f;
    lmtp_t *h;
    size_t mark;

    auth_fake_config(&c, 1, "PLAIN");
    c.auth_after_tls = 1;
    f = fx_fake(x, &c);
    h = fx_connect(x, f, NULL);
    assert_int_equal(lmtp_supports(h, "AUTH"), 0);
    mark = transcript_len(f);
    assert_status(h, lmtp_auth(h, USER, PASS, NULL, 0), LMTP_ERR_NOT_ADVERTISED);
    assert_transcript_from(f, mark, "");
    tls_client_options(&t);
    assert_ok(h, lmtp_set_tls(h, &t));
    assert_ok(h, lmtp_starttls(h));
    assert_int_equal(lmtp_supports(h, "AUTH"), 1);
    assert_ok(h, lmtp_auth(h, USER, PASS, NULL, 0));
    assert_string_equal(fake_auth_user(f), USER);
}

/* A server that wants AUTH before MAIL: 530 for every recipient, then it works after AUTH. */
static void server_requires_auth(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    const char *rcpts[] = {"alice@x", "bob@x"};
    size_t mark;

    auth_fake_config(&c, 0, "PLAIN");
    c.family = AF_UNIX;
    c.auth_require = 1;
    f = fx_fake(x, &c);
    h = fx_connect(x, f, NULL);
    assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 2, "m\n", 2, NULL, NULL));
    assert_result(h, 0, "alice@x", LMTP_RESULT_PERMFAIL, LMTP_STAGE_MAIL, 530, "5.7.0", NULL, 503, NULL);
    assert_result(h, 1, "bob@x", LMTP_RESULT_PERMFAIL, LMTP_STAGE_MAIL, 530, "5.7.0", NULL, 503, NULL);
    assert_int_equal(fake_message_count(f), 0);

    assert_ok(h, lmtp_auth(h, USER, PASS, NULL, 0));
    mark = transcript_len(f);
    assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 2, "m\n", 2, NULL, NULL));
    assert_transcript_from(f, mark, "MAIL FROM:<s@x>\r\nRCPT TO:<alice@x>\r\nRCPT TO:<bob@x>\r\nDATA\r\nm\r\n.\r\n");
    assert_result(h, 0, "alice@x", LMTP_RESULT_OK, LMTP_STAGE_DATA, 250, NULL, NULL, 250, NULL);
    assert_result(h, 1, "bob@x", LMTP_RESULT_OK, LMTP_STAGE_DATA, 250, NULL, NULL, 250, NULL);
    assert_int_equal(fake_message_count(f), 1);
    assert_string_equal(fake_message_auth_user(f, 0), USER);
}

/* ---- the trace never shows a credential ------------------------------------------------------------- */

/* Every traced line is free of every secret; the trace shows that AUTH <mech> happened. */
static void assert_trace_clean(const trace_log *t, const char *const *secrets, size_t nsecrets, const char *auth_line) {
    const char *p = t->buf ? t->buf : "";
    int saw_auth = 0;
    assert_int_equal(t->bad_bytes, 0);
    while (*p) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        size_t k;
        for (k = 0; k < nsecrets; k++) {
            if (secrets[k] && secrets[k][0] && contains(p, len, secrets[k])) {
                print_error("trace line \"%.*s\" shows secret \"%s\"\n", (int)len, p, secrets[k]);
                fail();
            }
        }
        if (auth_line && len >= strlen(auth_line) && memcmp(p, auth_line, strlen(auth_line)) == 0) saw_auth = 1;
        p += len;
        if (*p == '\n') p++;
    }
    if (auth_line && !saw_auth) fail_msg("the trace does not show \"%s\":\n%s", auth_line, t->buf ? t->buf : "");
}

static void trace_hides_credentials(void **state) {
    fx *x = *state;
    fake_config c;
    lmtp_options o;
    fake_lmtp *f;
    lmtp_t *h;
    trace_log t;
    char plain[400], b64pass[100], b64user[100], final_b64[1024], proof[128];
    char raw[128];
    size_t n, mark, tn;
    const char *tr;

    /* Every secret form. */
    n = 0;
    raw[n++] = '\0';
    memcpy(raw + n, USER, strlen(USER));
    n += strlen(USER);
    raw[n++] = '\0';
    memcpy(raw + n, PASS, strlen(PASS));
    n += strlen(PASS);
    b64_encode(raw, n, plain);
    b64_encode(PASS, strlen(PASS), b64pass);
    b64_encode(USER, strlen(USER), b64user);

    /* PLAIN and LOGIN inside TLS, by lmtp_auth, then a wrong password; and PLAIN at connect. */
    {
        static const char *const mechs[] = {"PLAIN", "LOGIN"};
        size_t i;
        for (i = 0; i < 2; i++) {
            const char *secrets[] = {PASS, plain, b64pass, b64user};
            char auth_line[32];
            memset(&t, 0, sizeof t);
            auth_fake_config(&c, 1, "PLAIN LOGIN");
            f = fx_fake(x, &c);
            tls_client_options(&o);
            o.trace = trace_record;
            o.trace_user = &t;
            h = connect_tls(x, f, &o);
            assert_status(h, lmtp_auth(h, USER, "wrong-" PASS, mechs[i], 0), LMTP_ERR_AUTH);
            assert_ok(h, lmtp_auth(h, USER, PASS, mechs[i], 0));
            snprintf(auth_line, sizeof auth_line, "S|AUTH %s", mechs[i]);
            print_message("trace of AUTH %s:\n%s", mechs[i], t.buf);
            assert_trace_clean(&t, secrets, 4, auth_line);
            {
                char wrong_b64[100];
                const char *more[] = {"wrong-" PASS, wrong_b64};
                b64_encode("wrong-" PASS, strlen("wrong-" PASS), wrong_b64);
                assert_trace_clean(&t, more, 2, NULL);
            }
            /* The transcript of course holds them. */
            tr = fake_transcript(f, &tn);
            assert_true(contains(tr, tn, i == 0 ? plain : b64pass));
            fx_free(x, h);
            fx_stop(x, f);
            trace_log_free(&t);
        }

        memset(&t, 0, sizeof t);
        auth_fake_config(&c, 1, "PLAIN");
        f = fx_fake(x, &c);
        tls_client_options(&o);
        o.trace = trace_record;
        o.trace_user = &t;
        o.auth_user = USER;
        o.auth_password = PASS;
        h = connect_tls(x, f, &o);
        assert_int_equal(fake_auth_successes(f), 1);
        {
            const char *secrets[] = {PASS, plain, b64pass};
            assert_trace_clean(&t, secrets, 3, "S|AUTH PLAIN");
        }
        fx_free(x, h);
        fx_stop(x, f);
        trace_log_free(&t);
    }

    /* SCRAM over TCP: neither the password nor the proof nor the client-final message. */
    memset(&t, 0, sizeof t);
    auth_fake_config(&c, 0, "SCRAM-SHA-256");
    f = fx_fake(x, &c);
    test_options(&o);
    o.trace = trace_record;
    o.trace_user = &t;
    h = fx_connect(x, f, &o);
    mark = transcript_len(f);
    assert_ok(h, lmtp_auth(h, USER, PASS, NULL, 0));
    check_scram_exchange(f, mark, USER, final_b64, proof);
    print_message("trace of AUTH SCRAM-SHA-256:\n%s", t.buf);
    {
        const char *secrets[] = {PASS, b64pass, final_b64, proof};
        assert_trace_clean(&t, secrets, 4, "S|AUTH SCRAM-SHA-256");
    }
    tr = fake_transcript(f, &tn);
    assert_true(contains(tr, tn, final_b64));
    fx_free(x, h);
    trace_log_free(&t);
}

/* A password whose PLAIN initial response does not fit on the AUTH line goes after "334 "
   (RFC 4954 4); the trace hides it there too. */
static void long_credentials(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    lmtp_options o;
    trace_log t;
    char pass[1201], b64[2000], raw[1300];
    size_t n = 0;

    memset(pass, 'p', 1200);
    pass[1200] = '\0';
    pass[0] = 'Q';
    memset(&t, 0, sizeof t);
    tls_fake_config(&c, "server");
    c.auth_mechanisms = "PLAIN LOGIN";
    c.auth_user = USER;
    c.auth_password = pass;
    c.reply_delay_ms = 5;
    f = fx_fake(x, &c);
    tls_client_options(&o);
    o.trace = trace_record;
    o.trace_user = &t;
    h = connect_tls(x, f, &o);
    assert_ok(h, lmtp_auth(h, USER, pass, "PLAIN", 0));
    assert_int_equal(fake_auth_successes(f), 1);
    assert_string_equal(fake_auth_user(f), USER);
    assert_int_equal(fake_lockstep_violations(f), 0);
    raw[n++] = '\0';
    memcpy(raw + n, USER, strlen(USER));
    n += strlen(USER);
    raw[n++] = '\0';
    memcpy(raw + n, pass, 1200);
    n += 1200;
    b64_encode(raw, n, b64);
    {
        const char *secrets[] = {pass, b64, "pppppppppppppppp", "cHBwcHBwcHBwcHBwcHBw"};
        assert_trace_clean(&t, secrets, 4, "S|AUTH PLAIN");
    }
    fx_free(x, h);
    trace_log_free(&t);
}

/* SCRAM with a user name that needs escaping (RFC 5802 5.1: "," as =2C, "=" as =3D). */
static void scram_user_name_escaping(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    size_t mark;

    test_fake_config(&c);
    c.auth_mechanisms = "SCRAM-SHA-256";
    c.auth_user = "a,b=c";
    c.auth_password = "pw";
    f = fx_fake(x, &c);
    h = fx_connect(x, f, NULL);
    mark = transcript_len(f);
    assert_ok(h, lmtp_auth(h, "a,b=c", "pw", NULL, 0));
    assert_string_equal(fake_auth_user(f), "a,b=c");
    check_scram_exchange(f, mark, "a=2Cb=3Dc", NULL, NULL);
}

/* Rule 4 of lmtp.h: no string passed in may hold CR or LF; BAD_INPUT and nothing sent. */
static void line_ends_in_arguments(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    static const struct {
        const char *user, *pass, *mech;
    } cases[] = {
        {"us\r\ner", PASS, "PLAIN"},
        {USER, "pa\nss", "PLAIN"},
        {USER, PASS, "PLAIN\r\nRSET"},
        {USER, "pa\rss", "SCRAM-SHA-256"},
    };
    size_t i, mark;

    auth_fake_config(&c, 0, "PLAIN SCRAM-SHA-256");
    c.family = AF_UNIX;
    f = fx_fake(x, &c);
    h = fx_connect(x, f, NULL);
    int bad = 0;

    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int st, ok;
        size_t sent;
        mark = transcript_len(f);
        st = lmtp_auth(h, cases[i].user, cases[i].pass, cases[i].mech, 0);
        sent = transcript_len(f) - mark;
        /* The mechanism with a line end is not offered either; either answer sends nothing. */
        ok = (st == LMTP_ERR_BAD_INPUT || (i == 2 && st == LMTP_ERR_NOT_ADVERTISED)) && sent == 0;
        print_message("case %lu: %d (%s), %lu bytes sent: %s\n", (unsigned long)i, st, lmtp_errmsg(h),
                      (unsigned long)sent, ok ? "ok" : "WRONG");
        bad += !ok;
        assert_int_equal(lmtp_is_connected(h), 1);
    }
    assert_int_equal(bad, 0);
    assert_int_equal(fake_auth_successes(f), 0);
    assert_int_equal(fake_auth_failures(f), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(plain_and_login_over_tls, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(plain_and_login_over_a_unix_socket, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(plain_and_login_over_tcp_are_refused, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(auth_at_connect_over_tcp, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(scram_over_plain_tcp, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(automatic_pick_prefers_scram, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(wrong_password, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(refusal_codes, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(scram_bad_server_signature, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(nothing_to_authenticate_with, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(unimplemented_mechanism_named, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(auth_at_connect, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(auth_offered_only_after_starttls, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(server_requires_auth, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(trace_hides_credentials, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(long_credentials, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(scram_user_name_escaping, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(line_ends_in_arguments, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests_name("capi_auth", tests, certs_group_setup, certs_group_teardown);
}
