/*
 * test_capi_commands.c - the step-by-step API (the shape of Net::LMTP): one command, one reply;
 * DATA in steps and the per-recipient replies read one by one with lmtp_response; the caller's own
 * command lines; what the server said about itself; ESMTP parameters byte for byte.
 */
#include "capi_test.h"

#include <stdio.h>
#include <stdlib.h>

#define LHLO_LINE "LHLO " TEST_HELLO "\r\n"

/* A server advertising SIZE 100000, DSN, SMTPUTF8 and two made-up extensions. */
static fake_lmtp *rich_fake(fx *x) {
    fake_config c;
    test_fake_config(&c);
    c.size = 100000;
    c.extra_caps = "DSN\nSMTPUTF8\nXKEY bar baz\nXFLAG";
    return fx_fake(x, &c);
}

/* Asserts that nothing was sent since `mark`: one NOOP round trip, then the transcript is exactly
   what it was plus "NOOP\r\n". (The fake records bytes as they arrive; the round trip makes sure
   that anything sent before the NOOP has arrived.) */
static void assert_nothing_sent_(lmtp_t *h, fake_lmtp *f, size_t mark, const char *file, int line) {
    int st = lmtp_noop(h);
    assert_status_(h, st, LMTP_OK, "lmtp_noop (after a refused call)", file, line);
    assert_transcript_from_(f, mark, "NOOP\r\n", file, line);
}
#define assert_nothing_sent(h, f, mark) assert_nothing_sent_((h), (f), (mark), __FILE__, __LINE__)

/* ---- a transaction in steps ------------------------------------------------------------- */

static void step_by_step_transaction(void **state) {
    fx *x = *state;
    fake_lmtp *f = x->fake[0];
    lmtp_t *h = x->h[0];
    static const char *const chunks[] = {"Subject: steps\r", "\n", "\r\n", ".", "dot line\n", "a", "b\r", "\n.",
                                         "x\r\n", ".", "\r", "\n", "end"};
    int k1 = -1, k2 = -1, k3 = -1;
    size_t i;

    assert_ok(h, lmtp_mail(h, "s@x", NULL));
    assert_int_equal(lmtp_code(h), 250);
    assert_string_equal(lmtp_enhanced(h), "2.1.0");
    assert_int_equal(lmtp_enhanced_parts(h, &k1, &k2, &k3), 1);
    assert_int_equal(k1, 2);
    assert_int_equal(k2, 1);
    assert_int_equal(k3, 0);
    assert_string_equal(lmtp_text(h), "OK");
    assert_string_equal(lmtp_message(h), "2.1.0 OK");
    assert_int_equal(lmtp_message_count(h), 1);
    assert_string_equal(lmtp_message_line(h, 0), "2.1.0 OK");
    assert_string_equal(lmtp_message_line(h, 1), "");

    assert_ok(h, lmtp_to(h, "alice@x", NULL));
    assert_int_equal(lmtp_code(h), 250);
    assert_string_equal(lmtp_text(h), "<alice@x> OK");
    assert_ok(h, lmtp_recipient(h, "full@x", NULL));
    assert_status(h, lmtp_to(h, "nosuch@x", NULL), LMTP_ERR_REJECTED);
    assert_int_equal(lmtp_code(h), 550);
    assert_string_equal(lmtp_enhanced(h), "5.1.1");
    assert_string_equal(lmtp_text(h), "<nosuch@x> User doesn't exist");
    assert_int_equal(lmtp_errcode(h), LMTP_ERR_REJECTED);
    assert_has(lmtp_errmsg(h), "550");
    assert_ok(h, lmtp_to(h, "temp@x", NULL));
    assert_int_equal(lmtp_errcode(h), LMTP_OK);
    assert_string_equal(lmtp_errmsg(h), "");

    /* Before the message: accepted recipients are pending, the refused one has its verdict. */
    assert_int_equal(lmtp_result_count(h), 4);
    assert_result(h, 0, "alice@x", LMTP_RESULT_PENDING, LMTP_STAGE_NONE, 0, "", "", 250, "<alice@x> OK");
    assert_result(h, 2, "nosuch@x", LMTP_RESULT_PERMFAIL, LMTP_STAGE_RCPT, 550, "5.1.1",
                  "<nosuch@x> User doesn't exist", 550, "<nosuch@x> User doesn't exist");

    assert_ok(h, lmtp_data_start(h));
    assert_int_equal(lmtp_code(h), 354);
    assert_string_equal(lmtp_enhanced(h), "");
    k1 = k2 = k3 = -1;
    assert_int_equal(lmtp_enhanced_parts(h, &k1, &k2, &k3), 0);
    assert_int_equal(k1, 0);
    assert_int_equal(k2, 0);
    assert_int_equal(k3, 0);
    assert_string_equal(lmtp_message(h), "go ahead");

    for (i = 0; i < sizeof chunks / sizeof chunks[0]; i++) assert_ok(h, lmtp_data_write(h, chunks[i], strlen(chunks[i])));
    assert_ok(h, lmtp_data_write(h, "", 0));
    assert_ok(h, lmtp_data_write(h, NULL, 0));
    assert_ok(h, lmtp_data_end(h));

    /* The first recipient's reply, then the others one by one, then nothing. */
    assert_int_equal(lmtp_code(h), 250);
    assert_string_equal(lmtp_message(h), "2.0.0 <alice@x> Saved");
    assert_status(h, lmtp_response(h), LMTP_ERR_REJECTED);
    assert_int_equal(lmtp_code(h), 552);
    assert_string_equal(lmtp_enhanced(h), "5.2.2");
    assert_string_equal(lmtp_text(h), "<full@x> Quota exceeded");
    assert_status(h, lmtp_response(h), LMTP_ERR_REJECTED);
    assert_int_equal(lmtp_code(h), 452);
    assert_string_equal(lmtp_message(h), "4.2.2 <temp@x> Mailbox is full, try again later");
    assert_status(h, lmtp_response(h), LMTP_ERR_BAD_SEQUENCE);
    assert_status(h, lmtp_response(h), LMTP_ERR_BAD_SEQUENCE);

    assert_result(h, 0, "alice@x", LMTP_RESULT_OK, LMTP_STAGE_DATA, 250, "2.0.0", "<alice@x> Saved", 250, NULL);
    assert_result(h, 1, "full@x", LMTP_RESULT_PERMFAIL, LMTP_STAGE_DATA, 552, "5.2.2", "<full@x> Quota exceeded",
                  250, NULL);
    assert_result(h, 2, "nosuch@x", LMTP_RESULT_PERMFAIL, LMTP_STAGE_RCPT, 550, "5.1.1", NULL, 550, NULL);
    assert_result(h, 3, "temp@x", LMTP_RESULT_TEMPFAIL, LMTP_STAGE_DATA, 452, "4.2.2", NULL, 250, NULL);

    /* A later command gets its own reply. */
    assert_ok(h, lmtp_noop(h));
    assert_int_equal(lmtp_code(h), 250);
    assert_string_equal(lmtp_message(h), "2.0.0 OK");

    assert_transcript(f, LHLO_LINE
                      "MAIL FROM:<s@x>\r\n"
                      "RCPT TO:<alice@x>\r\n"
                      "RCPT TO:<full@x>\r\n"
                      "RCPT TO:<nosuch@x>\r\n"
                      "RCPT TO:<temp@x>\r\n"
                      "DATA\r\n"
                      "Subject: steps\r\n\r\n..dot line\r\nab\r\n..x\r\n..\r\nend\r\n.\r\n"
                      "NOOP\r\n");
    assert_int_equal(fake_message_count(f), 1);
    assert_message(f, 0, "Subject: steps\r\n\r\n.dot line\r\nab\r\n.x\r\n.\r\nend\r\n");
}

/* Chunk boundaries anywhere: a message written byte by byte, or cut after a CR, before a dot... gives
   the same bytes on the wire as written whole. */
static void data_write_chunk_boundaries(void **state) {
    fx *x = *state;
    fake_lmtp *f = x->fake[0];
    lmtp_t *h = x->h[0];
    static const struct {
        const char *const chunks[6];
        const char *wire, *decoded;
    } cases[] = {
        {{"x\r", NULL}, "x\r\n.\r\n", "x\r\n"},
        {{"a\r", "\n.", NULL}, "a\r\n..\r\n.\r\n", "a\r\n.\r\n"},
        {{"a\r", "\r", "\n", ".", "b", NULL}, "a\r\n\r\n..b\r\n.\r\n", "a\r\n\r\n.b\r\n"},
        {{".", NULL}, "..\r\n.\r\n", ".\r\n"},
        {{"\r\n", ".\r", "\n", NULL}, "\r\n..\r\n.\r\n", "\r\n.\r\n"},
        {{"a\n", "\n", ".", ".", "\n", NULL}, "a\r\n\r\n...\r\n.\r\n", "a\r\n\r\n..\r\n"},
    };
    static const char bytewise[] = "line\r\n.\r\n.x\n\r.\rend";
    size_t k, i, mark;
    char want[256];

    for (k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        print_message("case %lu\n", (unsigned long)k);
        assert_ok(h, lmtp_mail(h, "s@x", NULL));
        assert_ok(h, lmtp_to(h, "bob@x", NULL));
        assert_ok(h, lmtp_data_start(h));
        mark = transcript_len(f);
        for (i = 0; cases[k].chunks[i]; i++) assert_ok(h, lmtp_data_write(h, cases[k].chunks[i], strlen(cases[k].chunks[i])));
        assert_ok(h, lmtp_data_end(h));
        assert_transcript_from(f, mark, cases[k].wire);
        assert_message(f, k, cases[k].decoded);
    }

    /* One byte at a time. */
    assert_ok(h, lmtp_mail(h, "s@x", NULL));
    assert_ok(h, lmtp_to(h, "bob@x", NULL));
    assert_ok(h, lmtp_data_start(h));
    mark = transcript_len(f);
    for (i = 0; i + 1 < sizeof bytewise; i++) assert_ok(h, lmtp_data_write(h, bytewise + i, 1));
    assert_ok(h, lmtp_data_end(h));
    snprintf(want, sizeof want, "%s", "line\r\n..\r\n..x\r\n\r\n..\r\nend\r\n.\r\n");
    assert_transcript_from(f, mark, want);
    assert_message(f, k, "line\r\n.\r\n.x\r\n\r\n.\r\nend\r\n");

    /* The same through lmtp_deliver, whole. */
    {
        const char *r[] = {"bob@x"};
        mark = transcript_len(f);
        assert_ok(h, lmtp_deliver(h, "s@x", r, 1, bytewise, sizeof bytewise - 1, NULL, NULL));
        assert_transcript_from(f, mark + strlen("MAIL FROM:<s@x>\r\nRCPT TO:<bob@x>\r\nDATA\r\n"), want);
    }
}

/* The caller skips the per-recipient replies: the next command still gets its own reply. */
static void unread_final_replies_never_answer_a_later_command(void **state) {
    fx *x = *state;
    lmtp_t *h = x->h[0];

    assert_ok(h, lmtp_mail(h, "s@x", NULL));
    assert_ok(h, lmtp_to(h, "alice@x", NULL));
    assert_ok(h, lmtp_to(h, "full@x", NULL));
    assert_ok(h, lmtp_to(h, "temp@x", NULL));
    assert_ok(h, lmtp_data_start(h));
    assert_ok(h, lmtp_data_write(h, "x\n", 2));
    assert_ok(h, lmtp_data_end(h));
    assert_int_equal(lmtp_code(h), 250);

    assert_ok(h, lmtp_verify(h, "someone"));
    assert_int_equal(lmtp_code(h), 252);
    assert_has(lmtp_message(h), "Cannot VRFY user");
    assert_ok(h, lmtp_noop(h));
    assert_string_equal(lmtp_message(h), "2.0.0 OK");
    /* And a new transaction works normally. */
    assert_ok(h, lmtp_mail(h, "s2@x", NULL));
    assert_string_equal(lmtp_message(h), "2.1.0 OK");
    assert_ok(h, lmtp_reset(h));
}

/* lmtp_data with the whole message: OK once every final reply is in; the first recipient's is the last
   reply even when it is a refusal; lmtp_response gives the others. */
static void data_whole_message(void **state) {
    fx *x = *state;
    fake_lmtp *f = x->fake[0];
    lmtp_t *h = x->h[0];
    const char *msg = "Subject: whole\n\n.hi\n";
    size_t mark = transcript_len(f);

    assert_ok(h, lmtp_mail(h, "s@x", NULL));
    assert_ok(h, lmtp_to(h, "full@x", NULL));
    assert_ok(h, lmtp_to(h, "alice@x", NULL));
    assert_ok(h, lmtp_data(h, msg, strlen(msg)));
    assert_int_equal(lmtp_code(h), 552);
    assert_string_equal(lmtp_text(h), "<full@x> Quota exceeded");
    assert_status(h, lmtp_response(h), LMTP_OK);
    assert_int_equal(lmtp_code(h), 250);
    assert_string_equal(lmtp_text(h), "<alice@x> Saved");
    assert_status(h, lmtp_response(h), LMTP_ERR_BAD_SEQUENCE);
    assert_result(h, 0, "full@x", LMTP_RESULT_PERMFAIL, LMTP_STAGE_DATA, 552, NULL, NULL, 250, NULL);
    assert_result(h, 1, "alice@x", LMTP_RESULT_OK, LMTP_STAGE_DATA, 250, NULL, NULL, 250, NULL);
    assert_transcript_from(f, mark,
                           "MAIL FROM:<s@x>\r\nRCPT TO:<full@x>\r\nRCPT TO:<alice@x>\r\nDATA\r\n"
                           "Subject: whole\r\n\r\n..hi\r\n.\r\n");
    assert_message(f, 0, "Subject: whole\r\n\r\n.hi\r\n");

    /* DATA refused (no recipient accepted at the server): REJECTED with the 503. */
    assert_ok(h, lmtp_mail(h, "s@x", NULL));
    assert_status(h, lmtp_to(h, "nosuch@x", NULL), LMTP_ERR_REJECTED);
    assert_status(h, lmtp_data(h, msg, strlen(msg)), LMTP_ERR_REJECTED);
    assert_int_equal(lmtp_code(h), 503);
    assert_int_equal(lmtp_is_connected(h), 1);
    assert_ok(h, lmtp_reset(h));
    assert_int_equal(fake_message_count(f), 1);
}

/* Calls that do not fit the state of the session. */
static void sequence_errors(void **state) {
    fx *x = *state;
    fake_lmtp *f = x->fake[0];
    lmtp_t *h = x->h[0];
    size_t mark = transcript_len(f);

    assert_status(h, lmtp_response(h), LMTP_ERR_BAD_SEQUENCE);
    assert_status(h, lmtp_data_write(h, "x", 1), LMTP_ERR_BAD_SEQUENCE);
    assert_status(h, lmtp_data_end(h), LMTP_ERR_BAD_SEQUENCE);
    assert_int_equal(lmtp_errcode(h), LMTP_ERR_BAD_SEQUENCE);
    assert_true(strlen(lmtp_errmsg(h)) > 0);
    assert_nothing_sent(h, f, mark);

    /* DATA without MAIL: the server's 503. */
    assert_status(h, lmtp_data_start(h), LMTP_ERR_REJECTED);
    assert_int_equal(lmtp_code(h), 503);
    assert_status(h, lmtp_data_write(h, "x", 1), LMTP_ERR_BAD_SEQUENCE);

    /* While the message is being sent no command can go out. */
    assert_ok(h, lmtp_mail(h, "s@x", NULL));
    assert_ok(h, lmtp_to(h, "bob@x", NULL));
    assert_ok(h, lmtp_data_start(h));
    mark = transcript_len(f);
    assert_ok(h, lmtp_data_write(h, "body\n", 5));
    assert_status(h, lmtp_noop(h), LMTP_ERR_BAD_SEQUENCE);
    assert_status(h, lmtp_mail(h, "s@x", NULL), LMTP_ERR_BAD_SEQUENCE);
    assert_status(h, lmtp_command(h, "NOOP"), LMTP_ERR_BAD_SEQUENCE);
    {
        const char *r[] = {"bob@x"};
        assert_status(h, lmtp_deliver(h, "s@x", r, 1, "m", 1, NULL, NULL), LMTP_ERR_BAD_SEQUENCE);
    }
    assert_ok(h, lmtp_data_write(h, "more\n", 5));
    assert_ok(h, lmtp_data_end(h));
    assert_int_equal(lmtp_code(h), 250);
    /* Only the message went out. */
    assert_transcript_from(f, mark, "body\r\nmore\r\n.\r\n");
    assert_message(f, 0, "body\r\nmore\r\n");
}

/* ---- one command, one reply ----------------------------------------------------------------- */

static void simple_commands(void **state) {
    fx *x = *state;
    fake_lmtp *f = x->fake[0];
    lmtp_t *h = x->h[0];
    size_t mark = transcript_len(f);

    assert_ok(h, lmtp_noop(h));
    assert_int_equal(lmtp_code(h), 250);
    assert_ok(h, lmtp_reset(h));
    assert_int_equal(lmtp_code(h), 250);
    assert_string_equal(lmtp_message(h), "2.0.0 OK");

    assert_ok(h, lmtp_verify(h, "alice@x"));
    assert_int_equal(lmtp_code(h), 252);
    assert_string_equal(lmtp_text(h), "Cannot VRFY user, but will accept message and attempt delivery");

    assert_ok(h, lmtp_expand(h, "staff"));
    assert_int_equal(lmtp_code(h), 250);
    assert_int_equal(lmtp_message_count(h), 3);
    assert_string_equal(lmtp_message_line(h, 0), "2.1.5 alpha <alpha@fake.example>");
    assert_string_equal(lmtp_message_line(h, 1), "2.1.5 beta <beta@fake.example>");
    assert_string_equal(lmtp_message_line(h, 2), "2.1.5 gamma <gamma@fake.example>");
    assert_string_equal(lmtp_message_line(h, 3), "");
    assert_string_equal(lmtp_message_line(h, (size_t)-1), "");
    assert_string_equal(lmtp_message(h),
                        "2.1.5 alpha <alpha@fake.example>\n2.1.5 beta <beta@fake.example>\n"
                        "2.1.5 gamma <gamma@fake.example>");
    assert_string_equal(lmtp_text(h), "alpha <alpha@fake.example>\nbeta <beta@fake.example>\ngamma <gamma@fake.example>");
    assert_string_equal(lmtp_enhanced(h), "2.1.5");

    assert_ok(h, lmtp_help(h, NULL));
    assert_int_equal(lmtp_code(h), 214);
    assert_int_equal(lmtp_message_count(h), 3);
    assert_string_equal(lmtp_message_line(h, 2), "2.0.0 End of HELP");
    assert_ok(h, lmtp_help(h, "DATA"));
    assert_int_equal(lmtp_code(h), 214);

    assert_ok(h, lmtp_etrn(h, "example.org"));
    assert_int_equal(lmtp_code(h), 250);
    assert_string_equal(lmtp_text(h), "Queuing started");

    assert_ok(h, lmtp_hello(h, "again.test"));
    assert_int_equal(lmtp_code(h), 250);
    assert_int_equal(lmtp_supports(h, "PIPELINING"), 1);

    /* SEND, SOML, SAML: each opens a transaction like MAIL. */
    assert_ok(h, lmtp_send(h, "a@x"));
    assert_string_equal(lmtp_message(h), "2.1.0 OK");
    assert_ok(h, lmtp_reset(h));
    assert_ok(h, lmtp_send_or_mail(h, "b@x"));
    assert_ok(h, lmtp_reset(h));
    assert_ok(h, lmtp_send_and_mail(h, ""));
    assert_ok(h, lmtp_reset(h));

    /* A refusal is REJECTED with the reply kept. */
    assert_ok(h, lmtp_mail(h, "c@x", NULL));
    assert_status(h, lmtp_mail(h, "d@x", NULL), LMTP_ERR_REJECTED);
    assert_int_equal(lmtp_code(h), 503);
    assert_string_equal(lmtp_text(h), "MAIL already given");
    assert_ok(h, lmtp_reset(h));

    assert_transcript_from(f, mark,
                           "NOOP\r\n"
                           "RSET\r\n"
                           "VRFY alice@x\r\n"
                           "EXPN staff\r\n"
                           "HELP\r\n"
                           "HELP DATA\r\n"
                           "ETRN example.org\r\n"
                           "LHLO again.test\r\n"
                           "SEND FROM:<a@x>\r\n"
                           "RSET\r\n"
                           "SOML FROM:<b@x>\r\n"
                           "RSET\r\n"
                           "SAML FROM:<>\r\n"
                           "RSET\r\n"
                           "MAIL FROM:<c@x>\r\n"
                           "MAIL FROM:<d@x>\r\n"
                           "RSET\r\n");
}

static void quit_closes(void **state) {
    fx *x = *state;
    fake_lmtp *f = x->fake[0];
    lmtp_t *h = x->h[0];
    const char *r[] = {"bob@x"};
    size_t mark = transcript_len(f);

    assert_ok(h, lmtp_quit(h));
    assert_int_equal(lmtp_code(h), 221);
    assert_string_equal(lmtp_text(h), "fake.example closing connection");
    assert_int_equal(lmtp_is_connected(h), 0);
    assert_true(fake_wait_idle(f, 1, 2000));
    assert_transcript_from(f, mark, "QUIT\r\n");

    assert_status(h, lmtp_noop(h), LMTP_ERR_NOT_CONNECTED);
    assert_int_equal(lmtp_errcode(h), LMTP_ERR_NOT_CONNECTED);
    assert_true(strlen(lmtp_errmsg(h)) > 0);
    assert_status(h, lmtp_mail(h, "s@x", NULL), LMTP_ERR_NOT_CONNECTED);
    assert_status(h, lmtp_to(h, "bob@x", NULL), LMTP_ERR_NOT_CONNECTED);
    assert_status(h, lmtp_data_start(h), LMTP_ERR_NOT_CONNECTED);
    assert_status(h, lmtp_data_write(h, "x", 1), LMTP_ERR_NOT_CONNECTED);
    assert_status(h, lmtp_data_end(h), LMTP_ERR_NOT_CONNECTED);
    assert_status(h, lmtp_data(h, "x", 1), LMTP_ERR_NOT_CONNECTED);
    assert_status(h, lmtp_command(h, "NOOP"), LMTP_ERR_NOT_CONNECTED);
    assert_status(h, lmtp_deliver(h, "s@x", r, 1, "m", 1, NULL, NULL), LMTP_ERR_NOT_CONNECTED);
    assert_status(h, lmtp_hello(h, "x.test"), LMTP_ERR_NOT_CONNECTED);
    assert_status(h, lmtp_verify(h, "x"), LMTP_ERR_NOT_CONNECTED);
    assert_status(h, lmtp_quit(h), LMTP_ERR_NOT_CONNECTED);
    assert_ok(h, lmtp_close(h));
    assert_int_equal(transcript_len(f), mark + 6);

    /* The handle connects again. */
    assert_ok(h, lmtp_connect(h, fake_host(f), fake_port(f)));
    assert_ok(h, lmtp_deliver(h, "s@x", r, 1, "m", 1, NULL, NULL));
    assert_int_equal(fake_connections(f), 2);
}

/* LMTP_OPT_NO_HELLO: connect reads the banner only; LHLO when the caller says. */
static void no_hello_option(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_options o;
    lmtp_t *h;
    const char *r[] = {"bob@x"};

    test_fake_config(&c);
    f = fx_fake(x, &c);
    test_options(&o);
    o.flags = LMTP_OPT_NO_HELLO;
    h = fx_connect(x, f, &o);
    assert_int_equal(lmtp_code(h), 220);
    assert_int_equal(lmtp_supports(h, "PIPELINING"), 0); /* nothing known yet */
    assert_int_equal(transcript_len(f), 0);
    /* A whole delivery needs LHLO first... */
    assert_status(h, lmtp_deliver(h, "s@x", r, 1, "m", 1, NULL, NULL), LMTP_ERR_BAD_SEQUENCE);
    assert_int_equal(transcript_len(f), 0);
    /* ...which the caller sends. */
    assert_ok(h, lmtp_hello(h, "later.example"));
    assert_int_equal(lmtp_supports(h, "PIPELINING"), 1);
    assert_ok(h, lmtp_deliver(h, "s@x", r, 1, "m", 1, NULL, NULL));
    assert_transcript_from(f, 0, "LHLO later.example\r\nMAIL FROM:<s@x>\r\nRCPT TO:<bob@x>\r\nDATA\r\nm\r\n.\r\n");
}

/* ---- the caller's own command lines ----------------------------------------------------------- */

static void command_and_response(void **state) {
    fx *x = *state;
    fake_lmtp *f = x->fake[0];
    lmtp_t *h = x->h[0];
    size_t mark = transcript_len(f);

    assert_ok(h, lmtp_command(h, "NOOP"));
    assert_ok(h, lmtp_response(h));
    assert_int_equal(lmtp_code(h), 250);
    assert_status(h, lmtp_response(h), LMTP_ERR_BAD_SEQUENCE);

    assert_ok(h, lmtp_command(h, "XFOO bar"));
    assert_status(h, lmtp_response(h), LMTP_ERR_REJECTED);
    assert_int_equal(lmtp_code(h), 500);
    assert_string_equal(lmtp_message(h), "5.5.2 Unknown command");

    /* Two lines, then their replies in order. */
    assert_ok(h, lmtp_command(h, "VRFY a"));
    assert_ok(h, lmtp_command(h, "EXPN b"));
    assert_ok(h, lmtp_response(h));
    assert_int_equal(lmtp_code(h), 252);
    assert_ok(h, lmtp_response(h));
    assert_int_equal(lmtp_code(h), 250);
    assert_int_equal(lmtp_message_count(h), 3);
    assert_status(h, lmtp_response(h), LMTP_ERR_BAD_SEQUENCE);

    /* A reply the caller does not read is read by the next call, which gets its own. */
    assert_ok(h, lmtp_command(h, "VRFY c"));
    assert_ok(h, lmtp_etrn(h, "d.example"));
    assert_int_equal(lmtp_code(h), 250);
    assert_string_equal(lmtp_text(h), "Queuing started");
    assert_status(h, lmtp_response(h), LMTP_ERR_BAD_SEQUENCE);

    /* A whole transaction through command lines, the Net::Cmd way. */
    assert_ok(h, lmtp_command(h, "MAIL FROM:<raw@x>"));
    assert_ok(h, lmtp_response(h));
    assert_ok(h, lmtp_command(h, "RCPT TO:<alice@x>"));
    assert_ok(h, lmtp_response(h));
    assert_ok(h, lmtp_command(h, "RCPT TO:<full@x>"));
    assert_ok(h, lmtp_response(h));
    assert_ok(h, lmtp_command(h, "DATA"));
    assert_ok(h, lmtp_response(h));
    assert_int_equal(lmtp_code(h), 354);
    assert_ok(h, lmtp_data_write(h, ".raw\n", 5));
    assert_ok(h, lmtp_data_end(h));
    assert_int_equal(lmtp_code(h), 250);
    assert_status(h, lmtp_response(h), LMTP_ERR_REJECTED);
    assert_int_equal(lmtp_code(h), 552);
    assert_status(h, lmtp_response(h), LMTP_ERR_BAD_SEQUENCE);
    assert_int_equal(lmtp_result_count(h), 2);
    assert_result(h, 0, "alice@x", LMTP_RESULT_OK, LMTP_STAGE_DATA, 250, NULL, NULL, 250, NULL);
    assert_result(h, 1, "full@x", LMTP_RESULT_PERMFAIL, LMTP_STAGE_DATA, 552, NULL, NULL, 250, NULL);

    assert_transcript_from(f, mark,
                           "NOOP\r\nXFOO bar\r\nVRFY a\r\nEXPN b\r\nVRFY c\r\nETRN d.example\r\n"
                           "MAIL FROM:<raw@x>\r\nRCPT TO:<alice@x>\r\nRCPT TO:<full@x>\r\nDATA\r\n..raw\r\n.\r\n");
    assert_message(f, 0, ".raw\r\n");

    /* QUIT as a command line closes like lmtp_quit. */
    assert_ok(h, lmtp_command(h, "QUIT"));
    assert_ok(h, lmtp_response(h));
    assert_int_equal(lmtp_code(h), 221);
    assert_int_equal(lmtp_is_connected(h), 0);
}

/* ---- what the server said about itself ----------------------------------------------------------- */

static void server_information(void **state) {
    fx *x = *state;
    fake_lmtp *f = rich_fake(x);
    lmtp_t *h = fx_connect(x, f, NULL);
    const char *p;

    assert_string_equal(lmtp_banner(h), "fake.example LMTP ready");
    assert_string_equal(lmtp_domain(h), "fake.example");
    assert_int_equal(lmtp_supports(h, "PIPELINING"), 1);
    assert_int_equal(lmtp_supports(h, "pipelining"), 1);
    assert_int_equal(lmtp_supports(h, "EnhancedStatusCodes"), 1);
    assert_int_equal(lmtp_supports(h, "8BITMIME"), 1);
    assert_int_equal(lmtp_supports(h, "DSN"), 1);
    assert_int_equal(lmtp_supports(h, "SMTPUTF8"), 1);
    assert_int_equal(lmtp_supports(h, "XKEY"), 1);
    assert_int_equal(lmtp_supports(h, "CHUNKING"), 0);
    assert_int_equal(lmtp_supports(h, "PIPE"), 0);
    assert_int_equal(lmtp_supports(h, ""), 0);
    assert_int_equal(lmtp_supports(h, "fake.example"), 0);

    p = lmtp_capability(h, "SIZE");
    assert_non_null(p);
    assert_string_equal(p, "100000");
    p = lmtp_capability(h, "xkey");
    assert_non_null(p);
    assert_string_equal(p, "bar baz");
    p = lmtp_capability(h, "PIPELINING");
    assert_non_null(p);
    assert_string_equal(p, "");
    assert_null(lmtp_capability(h, "CHUNKING"));
    assert_int_equal(lmtp_size_limit(h), 100000);

    /* The last reply after connecting is the LHLO reply. */
    assert_int_equal(lmtp_code(h), 250);
    assert_string_equal(lmtp_message_line(h, 0), "fake.example");
}

static void multi_line_banner_and_no_extensions(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    int k1 = -1, k2 = -1, k3 = -1;

    test_fake_config(&c);
    c.greeting = "220-mx.example.org first line\r\n220-second\r\n220 third\r\n";
    c.pipelining = 0;
    c.enhanced = 0;
    c.eightbitmime = 0;
    f = fx_fake(x, &c);
    h = fx_connect(x, f, NULL);
    assert_string_equal(lmtp_banner(h), "mx.example.org first line\nsecond\nthird");
    assert_string_equal(lmtp_domain(h), "mx.example.org");
    assert_int_equal(lmtp_supports(h, "PIPELINING"), 0);
    assert_int_equal(lmtp_supports(h, "ENHANCEDSTATUSCODES"), 0);
    assert_null(lmtp_capability(h, "SIZE"));
    assert_int_equal(lmtp_size_limit(h), 0);

    /* Replies without enhanced codes. */
    assert_ok(h, lmtp_noop(h));
    assert_string_equal(lmtp_enhanced(h), "");
    assert_int_equal(lmtp_enhanced_parts(h, &k1, &k2, &k3), 0);
    assert_int_equal(k1, 0);
    assert_int_equal(k2, 0);
    assert_int_equal(k3, 0);
    assert_int_equal(lmtp_enhanced_parts(h, NULL, NULL, NULL), 0);
    assert_string_equal(lmtp_text(h), "OK");
    assert_string_equal(lmtp_message(h), "OK");

    /* Only some of the parts asked for. */
    assert_status(h, lmtp_to(h, "x@x", NULL), LMTP_ERR_REJECTED); /* 503: no MAIL */
    assert_int_equal(lmtp_code(h), 503);
}

static void enhanced_code_parts(void **state) {
    fx *x = *state;
    lmtp_t *h = x->h[0];
    int k1 = -1, k3 = -1;

    assert_ok(h, lmtp_mail(h, "s@x", NULL));
    assert_status(h, lmtp_to(h, "nosuch@x", NULL), LMTP_ERR_REJECTED);
    assert_int_equal(lmtp_enhanced_parts(h, &k1, NULL, &k3), 1);
    assert_int_equal(k1, 5);
    assert_int_equal(k3, 1);
    assert_int_equal(lmtp_enhanced_parts(h, NULL, NULL, NULL), 1);
    assert_string_equal(lmtp_enhanced(h), "5.1.1");
    assert_string_equal(lmtp_message(h), "5.1.1 <nosuch@x> User doesn't exist");
    assert_string_equal(lmtp_text(h), "<nosuch@x> User doesn't exist");
    assert_ok(h, lmtp_reset(h));
}

/* ---- ESMTP parameters -------------------------------------------------------------------------- */

/* lmtp_mail with opts: `want_line` sent (CRLF added here), the call returns want_status. Closes the
   transaction afterwards with RSET. */
static void mail_case_(lmtp_t *h, fake_lmtp *f, const lmtp_mail_options *o, const char *want_line, int want_status,
                       const char *file, int line) {
    char want[1024];
    size_t mark = transcript_len(f);
    int st = lmtp_mail(h, "s@x", o);
    assert_status_(h, st, want_status, want_line, file, line);
    snprintf(want, sizeof want, "%s\r\n", want_line);
    assert_transcript_from_(f, mark, want, file, line);
    if (st == LMTP_OK) {
        st = lmtp_reset(h);
        assert_status_(h, st, LMTP_OK, "lmtp_reset", file, line);
    }
}
#define mail_case(h, f, o, want_line, want_status) mail_case_((h), (f), (o), (want_line), (want_status), __FILE__, __LINE__)

static void mail_parameters(void **state) {
    fx *x = *state;
    fake_lmtp *f = rich_fake(x);
    lmtp_t *h = fx_connect(x, f, NULL);
    lmtp_mail_options o;

    lmtp_mail_options_init(&o);
    mail_case(h, f, &o, "MAIL FROM:<s@x>", LMTP_OK);

    lmtp_mail_options_init(&o);
    o.size = 12345;
    mail_case(h, f, &o, "MAIL FROM:<s@x> SIZE=12345", LMTP_OK);

    lmtp_mail_options_init(&o);
    o.body = LMTP_BODY_8BITMIME;
    mail_case(h, f, &o, "MAIL FROM:<s@x> BODY=8BITMIME", LMTP_OK);
    o.body = LMTP_BODY_7BIT;
    mail_case(h, f, &o, "MAIL FROM:<s@x> BODY=7BIT", LMTP_OK);

    lmtp_mail_options_init(&o);
    o.smtputf8 = 1;
    mail_case(h, f, &o, "MAIL FROM:<s@x> SMTPUTF8", LMTP_OK);

    lmtp_mail_options_init(&o);
    o.ret = LMTP_RET_FULL;
    mail_case(h, f, &o, "MAIL FROM:<s@x> RET=FULL", LMTP_OK);
    o.ret = LMTP_RET_HDRS;
    mail_case(h, f, &o, "MAIL FROM:<s@x> RET=HDRS", LMTP_OK);

    /* ENVID is xtext-encoded: '+', '=', space and bytes outside 33..126 become +XX. */
    lmtp_mail_options_init(&o);
    o.envid = "QQ314159";
    mail_case(h, f, &o, "MAIL FROM:<s@x> ENVID=QQ314159", LMTP_OK);
    o.envid = "a+b=c d\xc3\xa9~";
    mail_case(h, f, &o, "MAIL FROM:<s@x> ENVID=a+2Bb+3Dc+20d+C3+A9~", LMTP_OK);

    /* Everything at once. */
    lmtp_mail_options_init(&o);
    o.size = 10;
    o.body = LMTP_BODY_8BITMIME;
    o.smtputf8 = 1;
    o.ret = LMTP_RET_HDRS;
    o.envid = "q1";
    mail_case(h, f, &o, "MAIL FROM:<s@x> SIZE=10 RET=HDRS BODY=8BITMIME SMTPUTF8 ENVID=q1", LMTP_OK);

    /* Extra parameters, each checked against the capabilities; the fake does not know them (555). */
    lmtp_mail_options_init(&o);
    o.extra = "XKEY=VALUE XFLAG";
    mail_case(h, f, &o, "MAIL FROM:<s@x> XKEY=VALUE XFLAG", LMTP_ERR_REJECTED);
    assert_int_equal(lmtp_code(h), 555);
    assert_string_equal(lmtp_enhanced(h), "5.5.4");

    /* A UTF-8 sender with SMTPUTF8. */
    lmtp_mail_options_init(&o);
    o.smtputf8 = 1;
    {
        size_t mark = transcript_len(f);
        assert_ok(h, lmtp_mail(h, "j\xc3\xb6rg@x", &o));
        assert_transcript_from(f, mark, "MAIL FROM:<j\xc3\xb6rg@x> SMTPUTF8\r\n");
        assert_ok(h, lmtp_reset(h));
    }
}

static void rcpt_case_(lmtp_t *h, fake_lmtp *f, const lmtp_rcpt_options *o, const char *want_line, int want_status,
                       const char *file, int line) {
    char want[1024];
    size_t mark = transcript_len(f);
    int st = lmtp_to(h, "alice@x", o);
    assert_status_(h, st, want_status, want_line, file, line);
    snprintf(want, sizeof want, "%s\r\n", want_line);
    assert_transcript_from_(f, mark, want, file, line);
}
#define rcpt_case(h, f, o, want_line, want_status) rcpt_case_((h), (f), (o), (want_line), (want_status), __FILE__, __LINE__)

static void rcpt_parameters(void **state) {
    fx *x = *state;
    fake_lmtp *f = rich_fake(x);
    lmtp_t *h = fx_connect(x, f, NULL);
    lmtp_rcpt_options o;
    size_t mark;

    assert_ok(h, lmtp_mail(h, "s@x", NULL));

    lmtp_rcpt_options_init(&o);
    rcpt_case(h, f, &o, "RCPT TO:<alice@x>", LMTP_OK);
    o.notify = LMTP_NOTIFY_SUCCESS;
    rcpt_case(h, f, &o, "RCPT TO:<alice@x> NOTIFY=SUCCESS", LMTP_OK);
    o.notify = LMTP_NOTIFY_FAILURE | LMTP_NOTIFY_DELAY;
    rcpt_case(h, f, &o, "RCPT TO:<alice@x> NOTIFY=FAILURE,DELAY", LMTP_OK);
    o.notify = LMTP_NOTIFY_DELAY | LMTP_NOTIFY_SUCCESS | LMTP_NOTIFY_FAILURE;
    rcpt_case(h, f, &o, "RCPT TO:<alice@x> NOTIFY=SUCCESS,FAILURE,DELAY", LMTP_OK);
    o.notify = LMTP_NOTIFY_NEVER;
    rcpt_case(h, f, &o, "RCPT TO:<alice@x> NOTIFY=NEVER", LMTP_OK);

    /* NEVER with anything else is not valid (RFC 3461 4.1): refused, nothing sent. */
    mark = transcript_len(f);
    o.notify = LMTP_NOTIFY_NEVER | LMTP_NOTIFY_SUCCESS;
    assert_status(h, lmtp_to(h, "alice@x", &o), LMTP_ERR_BAD_INPUT);
    assert_nothing_sent(h, f, mark);

    /* ORCPT: address type (default rfc822) ";" xtext. */
    lmtp_rcpt_options_init(&o);
    o.orcpt = "bob+tag@x";
    rcpt_case(h, f, &o, "RCPT TO:<alice@x> ORCPT=rfc822;bob+2Btag@x", LMTP_OK);
    o.orcpt = "b=b \xc3\xa9@x";
    o.orcpt_type = "utf-8";
    rcpt_case(h, f, &o, "RCPT TO:<alice@x> ORCPT=utf-8;b+3Db+20+C3+A9@x", LMTP_OK);

    lmtp_rcpt_options_init(&o);
    o.notify = LMTP_NOTIFY_FAILURE;
    o.orcpt = "orig@x";
    rcpt_case(h, f, &o, "RCPT TO:<alice@x> NOTIFY=FAILURE ORCPT=rfc822;orig@x", LMTP_OK);

    lmtp_rcpt_options_init(&o);
    o.extra = "XKEY=1 XFLAG";
    rcpt_case(h, f, &o, "RCPT TO:<alice@x> XKEY=1 XFLAG", LMTP_ERR_REJECTED);
    assert_int_equal(lmtp_code(h), 555);

    /* ropts of lmtp_deliver apply to every recipient. */
    assert_ok(h, lmtp_reset(h));
    {
        const char *r[] = {"alice@x", "bob@x"};
        lmtp_mail_options m;
        lmtp_mail_options_init(&m);
        m.size = 2;
        m.ret = LMTP_RET_HDRS;
        lmtp_rcpt_options_init(&o);
        o.notify = LMTP_NOTIFY_SUCCESS | LMTP_NOTIFY_FAILURE;
        mark = transcript_len(f);
        assert_ok(h, lmtp_deliver(h, "s@x", r, 2, "m\n", 2, &m, &o));
        assert_transcript_from(f, mark,
                               "MAIL FROM:<s@x> SIZE=2 RET=HDRS\r\n"
                               "RCPT TO:<alice@x> NOTIFY=SUCCESS,FAILURE\r\n"
                               "RCPT TO:<bob@x> NOTIFY=SUCCESS,FAILURE\r\n"
                               "DATA\r\nm\r\n.\r\n");
        assert_int_equal(lmtp_result_status(h, 1), LMTP_RESULT_OK);
    }
}

/* Parameters the server did not advertise: refused before sending, unless forced. */
static void parameters_not_advertised(void **state) {
    fx *x = *state;
    fake_lmtp *f = x->fake[0]; /* default: PIPELINING, ENHANCEDSTATUSCODES, 8BITMIME only */
    lmtp_t *h = x->h[0];
    const char *r[] = {"alice@x"};
    lmtp_mail_options m;
    lmtp_rcpt_options o;
    size_t mark = transcript_len(f);

    lmtp_mail_options_init(&m);
    m.size = 10;
    assert_status(h, lmtp_mail(h, "s@x", &m), LMTP_ERR_NOT_ADVERTISED);
    assert_int_equal(lmtp_errcode(h), LMTP_ERR_NOT_ADVERTISED);
    assert_has(lmtp_errmsg(h), "SIZE");
    assert_status(h, lmtp_deliver(h, "s@x", r, 1, "m", 1, &m, NULL), LMTP_ERR_NOT_ADVERTISED);
    lmtp_mail_options_init(&m);
    m.ret = LMTP_RET_FULL;
    assert_status(h, lmtp_mail(h, "s@x", &m), LMTP_ERR_NOT_ADVERTISED);
    assert_has(lmtp_errmsg(h), "DSN");
    lmtp_mail_options_init(&m);
    m.envid = "id";
    assert_status(h, lmtp_mail(h, "s@x", &m), LMTP_ERR_NOT_ADVERTISED);
    lmtp_mail_options_init(&m);
    m.smtputf8 = 1;
    assert_status(h, lmtp_mail(h, "s@x", &m), LMTP_ERR_NOT_ADVERTISED);
    lmtp_mail_options_init(&m);
    m.body = LMTP_BODY_BINARYMIME;
    assert_status(h, lmtp_mail(h, "s@x", &m), LMTP_ERR_NOT_ADVERTISED);
    lmtp_mail_options_init(&m);
    m.extra = "XKEY=1";
    assert_status(h, lmtp_mail(h, "s@x", &m), LMTP_ERR_NOT_ADVERTISED);
    lmtp_mail_options_init(&m);
    m.transid = "<t1@x>";
    assert_status(h, lmtp_mail(h, "s@x", &m), LMTP_ERR_NOT_ADVERTISED);

    lmtp_rcpt_options_init(&o);
    o.notify = LMTP_NOTIFY_NEVER;
    assert_status(h, lmtp_deliver(h, "s@x", r, 1, "m", 1, NULL, &o), LMTP_ERR_NOT_ADVERTISED);
    assert_int_equal(lmtp_result_count(h), 0);
    assert_nothing_sent(h, f, mark);

    /* RCPT parameters, inside a transaction. */
    assert_ok(h, lmtp_mail(h, "s@x", NULL));
    mark = transcript_len(f);
    assert_status(h, lmtp_to(h, "alice@x", &o), LMTP_ERR_NOT_ADVERTISED);
    lmtp_rcpt_options_init(&o);
    o.orcpt = "a@x";
    assert_status(h, lmtp_to(h, "alice@x", &o), LMTP_ERR_NOT_ADVERTISED);
    lmtp_rcpt_options_init(&o);
    o.extra = "XFLAG";
    assert_status(h, lmtp_to(h, "alice@x", &o), LMTP_ERR_NOT_ADVERTISED);
    assert_nothing_sent(h, f, mark);

    /* LMTP_FORCE sends them anyway; the fake answers 555. */
    lmtp_rcpt_options_init(&o);
    o.notify = LMTP_NOTIFY_SUCCESS;
    o.flags = LMTP_FORCE;
    mark = transcript_len(f);
    assert_status(h, lmtp_to(h, "alice@x", &o), LMTP_ERR_REJECTED);
    assert_int_equal(lmtp_code(h), 555);
    assert_transcript_from(f, mark, "RCPT TO:<alice@x> NOTIFY=SUCCESS\r\n");
    assert_ok(h, lmtp_reset(h));

    lmtp_mail_options_init(&m);
    m.ret = LMTP_RET_FULL;
    m.flags = LMTP_FORCE;
    mark = transcript_len(f);
    assert_status(h, lmtp_mail(h, "s@x", &m), LMTP_ERR_REJECTED);
    assert_int_equal(lmtp_code(h), 555);
    assert_string_equal(lmtp_text(h), "Unsupported parameter RET");
    assert_transcript_from(f, mark, "MAIL FROM:<s@x> RET=FULL\r\n");

    /* Forced in lmtp_deliver: MAIL refused, that is every recipient's verdict. */
    mark = transcript_len(f);
    assert_ok(h, lmtp_deliver(h, "s@x", r, 1, "m", 1, &m, NULL));
    assert_result(h, 0, "alice@x", LMTP_RESULT_PERMFAIL, LMTP_STAGE_MAIL, 555, "5.5.4", NULL, 503, NULL);
    assert_transcript_from(f, mark, "MAIL FROM:<s@x> RET=FULL\r\nRCPT TO:<alice@x>\r\nDATA\r\n");
}

/* Without 8BITMIME, BODY is not advertised either. */
static void body_needs_8bitmime(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    lmtp_mail_options m;
    size_t mark;

    test_fake_config(&c);
    c.eightbitmime = 0;
    f = fx_fake(x, &c);
    h = fx_connect(x, f, NULL);
    mark = transcript_len(f);
    lmtp_mail_options_init(&m);
    m.body = LMTP_BODY_8BITMIME;
    assert_status(h, lmtp_mail(h, "s@x", &m), LMTP_ERR_NOT_ADVERTISED);
    m.body = LMTP_BODY_7BIT;
    assert_status(h, lmtp_mail(h, "s@x", &m), LMTP_ERR_NOT_ADVERTISED);
    assert_nothing_sent(h, f, mark);
}

/* A declared SIZE over the server's limit: TOO_BIG before anything is sent. */
static void size_over_the_limit(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    lmtp_mail_options m;
    const char *r[] = {"alice@x"};
    size_t mark;

    test_fake_config(&c);
    c.size = 1000;
    f = fx_fake(x, &c);
    h = fx_connect(x, f, NULL);
    assert_int_equal(lmtp_size_limit(h), 1000);
    mark = transcript_len(f);
    lmtp_mail_options_init(&m);
    m.size = 1001;
    assert_status(h, lmtp_mail(h, "s@x", &m), LMTP_ERR_TOO_BIG);
    assert_int_equal(lmtp_errcode(h), LMTP_ERR_TOO_BIG);
    assert_has(lmtp_errmsg(h), "1000");
    m.size = 18446744073709551615ull;
    assert_status(h, lmtp_mail(h, "s@x", &m), LMTP_ERR_TOO_BIG);
    m.size = 5000;
    assert_status(h, lmtp_deliver(h, "s@x", r, 1, "m", 1, &m, NULL), LMTP_ERR_TOO_BIG);
    assert_int_equal(lmtp_result_count(h), 0);
    assert_nothing_sent(h, f, mark);

    /* At the limit it goes out. */
    m.size = 1000;
    mark = transcript_len(f);
    assert_ok(h, lmtp_mail(h, "s@x", &m));
    assert_transcript_from(f, mark, "MAIL FROM:<s@x> SIZE=1000\r\n");
    assert_ok(h, lmtp_reset(h));
}

/* ---- parameters written as on the wire ---------------------------------------------- */

/* Field by field (a struct's padding holds no defined bytes to compare). */
static void assert_same_string(const char *a, const char *b) {
    if (!a || !b) {
        assert_ptr_equal(a, b);
        return;
    }
    assert_string_equal(a, b);
}

static void assert_same_mail_options(const lmtp_mail_options *a, const lmtp_mail_options *b) {
    assert_int_equal(a->struct_size, b->struct_size);
    assert_int_equal(a->size, b->size);
    assert_int_equal(a->body, b->body);
    assert_int_equal(a->smtputf8, b->smtputf8);
    assert_int_equal(a->ret, b->ret);
    assert_same_string(a->envid, b->envid);
    assert_same_string(a->transid, b->transid);
    assert_same_string(a->extra, b->extra);
    assert_int_equal(a->flags, b->flags);
    assert_int_equal(a->transfer, b->transfer);
}

static void assert_same_rcpt_options(const lmtp_rcpt_options *a, const lmtp_rcpt_options *b) {
    assert_int_equal(a->struct_size, b->struct_size);
    assert_int_equal(a->notify, b->notify);
    assert_same_string(a->orcpt, b->orcpt);
    assert_same_string(a->orcpt_type, b->orcpt_type);
    assert_same_string(a->extra, b->extra);
    assert_int_equal(a->flags, b->flags);
}

/* lmtp_mail_options_parse fills the struct as lmtp_mail takes it, on a handle not yet connected;
   lmtp_mail then sends the parameters as the library writes them. */
static void mail_options_from_the_wire(void **state) {
    fx *x = *state;
    fake_lmtp *f = rich_fake(x);
    lmtp_t *h = NULL;
    lmtp_mail_options o, before;
    size_t mark;

    assert_ok(h, lmtp_create(&h, NULL));
    fx_keep(x, h);
    lmtp_mail_options_init(&o);
    o.flags = LMTP_FORCE;
    o.transfer = LMTP_TRANSFER_DATA;
    assert_ok(h, lmtp_mail_options_parse(h, &o, "size=1234  BODY=8bitmime SMTPUTF8 RET=hdrs ENVID=a+2Bb+20c "
                                                "TRANSID=<t@x> XKEY=v XFLAG"));
    assert_int_equal(o.size, 1234);
    assert_int_equal(o.body, LMTP_BODY_8BITMIME);
    assert_int_equal(o.smtputf8, 1);
    assert_int_equal(o.ret, LMTP_RET_HDRS);
    assert_string_equal(o.envid, "a+b c");
    assert_string_equal(o.transid, "t@x");
    assert_string_equal(o.extra, "XKEY=v XFLAG");
    assert_int_equal(o.flags, LMTP_FORCE); /* left as they were */
    assert_int_equal(o.transfer, LMTP_TRANSFER_DATA);
    assert_int_equal(o.struct_size, sizeof o);

    /* A second parse sets every parameter again: those it does not give go back to their default. */
    assert_ok(h, lmtp_mail_options_parse(h, &o, "BODY=BINARYMIME ENVID=e"));
    assert_int_equal(o.size, 0);
    assert_int_equal(o.body, LMTP_BODY_BINARYMIME);
    assert_int_equal(o.smtputf8, 0);
    assert_int_equal(o.ret, LMTP_RET_NONE);
    assert_string_equal(o.envid, "e");
    assert_null(o.transid);
    assert_null(o.extra);
    assert_ok(h, lmtp_mail_options_parse(h, &o, ""));
    assert_int_equal(o.body, LMTP_BODY_NONE);
    assert_null(o.envid);

    /* A malformed word: LMTP_ERR_BAD_INPUT naming it, the struct unchanged. */
    assert_ok(h, lmtp_mail_options_parse(h, &o, "SIZE=7 RET=FULL"));
    before = o;
    assert_status(h, lmtp_mail_options_parse(h, &o, "RET=HDRS SIZE=7x"), LMTP_ERR_BAD_INPUT);
    assert_has(lmtp_errmsg(h), "'SIZE=7x'");
    assert_same_mail_options(&o, &before);
    assert_status(h, lmtp_mail_options_parse(h, &o, "BODY=9BIT"), LMTP_ERR_BAD_INPUT);
    assert_has(lmtp_errmsg(h), "7BIT, 8BITMIME or BINARYMIME");
    assert_status(h, lmtp_mail_options_parse(h, &o, "ENVID=a+4"), LMTP_ERR_BAD_INPUT);
    assert_status(h, lmtp_mail_options_parse(h, &o, "SIZE=1\r\nRSET"), LMTP_ERR_BAD_INPUT);
    assert_has(lmtp_errmsg(h), "carriage return");
    assert_status(h, lmtp_mail_options_parse(h, &o, "SMTPUTF8=1"), LMTP_ERR_BAD_INPUT);
    assert_same_mail_options(&o, &before);
    assert_status(h, lmtp_mail_options_parse(h, NULL, "SIZE=1"), LMTP_ERR_INVALID_ARGUMENT);
    assert_status(h, lmtp_mail_options_parse(h, &o, NULL), LMTP_ERR_INVALID_ARGUMENT);
    before.struct_size = 0;
    assert_status(h, lmtp_mail_options_parse(h, &before, "SIZE=1"), LMTP_ERR_INVALID_ARGUMENT);
    assert_int_equal(before.size, 7);

    /* A struct of an older, shorter kind: nothing is written past its end. */
    {
        lmtp_mail_options shorter;
        lmtp_mail_options_init(&shorter);
        shorter.struct_size = offsetof(lmtp_mail_options, envid);
        shorter.envid = "kept";
        assert_ok(h, lmtp_mail_options_parse(h, &shorter, "RET=FULL ENVID=x"));
        assert_int_equal(shorter.ret, LMTP_RET_FULL);
        assert_string_equal(shorter.envid, "kept");
    }

    /* What lmtp_mail sends with parsed options. */
    assert_ok(h, lmtp_connect(h, fake_host(f), fake_port(f)));
    assert_ok(h, lmtp_mail_options_parse(h, &o, "SIZE=10 RET=FULL BODY=8BITMIME SMTPUTF8 ENVID=q+2B1 XKEY=v XFLAG"));
    o.flags = 0;
    mark = transcript_len(f);
    assert_status(h, lmtp_mail(h, "s@x", &o), LMTP_ERR_REJECTED); /* the fake does not know XKEY */
    assert_transcript_from(f, mark, "MAIL FROM:<s@x> SIZE=10 RET=FULL BODY=8BITMIME SMTPUTF8 ENVID=q+2B1 XKEY=v XFLAG\r\n");
    assert_ok(h, lmtp_mail_options_parse(h, &o, "ENVID=q+2B1 RET=HDRS"));
    mark = transcript_len(f);
    assert_ok(h, lmtp_mail(h, "s@x", &o));
    assert_transcript_from(f, mark, "MAIL FROM:<s@x> RET=HDRS ENVID=q+2B1\r\n");
    assert_ok(h, lmtp_reset(h));
}

static void rcpt_options_from_the_wire(void **state) {
    fx *x = *state;
    fake_lmtp *f = rich_fake(x);
    lmtp_t *h = fx_connect(x, f, NULL);
    lmtp_rcpt_options o, before;
    size_t mark;

    lmtp_rcpt_options_init(&o);
    assert_ok(h, lmtp_rcpt_options_parse(h, &o, "notify=delay,success ORCPT=rfc822;b+2Bt+20x@x"));
    assert_int_equal(o.notify, LMTP_NOTIFY_SUCCESS | LMTP_NOTIFY_DELAY);
    assert_string_equal(o.orcpt, "b+t x@x");
    assert_string_equal(o.orcpt_type, "rfc822");
    assert_null(o.extra);
    assert_ok(h, lmtp_mail(h, "s@x", NULL));
    mark = transcript_len(f);
    assert_ok(h, lmtp_to(h, "alice@x", &o));
    assert_transcript_from(f, mark, "RCPT TO:<alice@x> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;b+2Bt+20x@x\r\n");

    assert_ok(h, lmtp_rcpt_options_parse(h, &o, "NOTIFY=NEVER ORCPT=utf-8;a@x XFLAG"));
    assert_int_equal(o.notify, LMTP_NOTIFY_NEVER);
    assert_string_equal(o.orcpt_type, "utf-8");
    assert_string_equal(o.extra, "XFLAG");

    before = o;
    assert_status(h, lmtp_rcpt_options_parse(h, &o, "NOTIFY=NEVER,SUCCESS"), LMTP_ERR_BAD_INPUT);
    assert_has(lmtp_errmsg(h), "NEVER cannot be combined");
    assert_status(h, lmtp_rcpt_options_parse(h, &o, "NOTIFY=SOMETIMES"), LMTP_ERR_BAD_INPUT);
    assert_has(lmtp_errmsg(h), "'SOMETIMES' is not a NOTIFY keyword");
    assert_status(h, lmtp_rcpt_options_parse(h, &o, "ORCPT=a@x"), LMTP_ERR_BAD_INPUT);
    assert_status(h, lmtp_rcpt_options_parse(h, &o, "ORCPT=rfc822;a+0Ax"), LMTP_ERR_BAD_INPUT);
    assert_same_rcpt_options(&o, &before);

    /* Parsing sends nothing, also in the middle of a transaction. */
    mark = transcript_len(f);
    assert_ok(h, lmtp_rcpt_options_parse(h, &o, ""));
    assert_int_equal(o.notify, 0);
    assert_null(o.orcpt);
    assert_null(o.orcpt_type);
    assert_nothing_sent(h, f, mark);
}

static void check_(lmtp_t *h, const lmtp_mail_options *m, const lmtp_rcpt_options *r, const char *want,
                   const char *file, int line) {
    const char *missing = "unset";
    int st = m ? lmtp_mail_options_check(h, m, &missing) : lmtp_rcpt_options_check(h, r, &missing);
    assert_status_(h, st, want ? LMTP_ERR_NOT_ADVERTISED : LMTP_OK, want ? want : "offered", file, line);
    if (!want) {
        _assert_true(missing == NULL, "missing == NULL", file, line);
        return;
    }
    _assert_true(missing != NULL, "missing != NULL", file, line);
    _assert_string_equal(missing, want, file, line);
    assert_has_(lmtp_errmsg(h), want, file, line);
}
#define check_mail(h, m, want) check_((h), (m), NULL, (want), __FILE__, __LINE__)
#define check_rcpt(h, r, want) check_((h), NULL, (r), (want), __FILE__, __LINE__)

/* A handle connected to a fake that offers `caps` (lines separated by "\n") besides the defaults. */
static lmtp_t *connect_offering(fx *x, const char *caps) {
    fake_config c;
    test_fake_config(&c);
    c.extra_caps = caps;
    return fx_connect(x, fx_fake(x, &c), NULL);
}

/* lmtp_*_options_check: what the server did not offer, as lmtp_mail would refuse it; and
   BODY=BINARYMIME without CHUNKING, which lmtp_mail sends but no message could follow. */
static void options_check_names_what_is_lacking(void **state) {
    fx *x = *state;
    fake_lmtp *f = x->fake[0]; /* PIPELINING, ENHANCEDSTATUSCODES, 8BITMIME only */
    lmtp_t *h = x->h[0];
    lmtp_mail_options m;
    lmtp_rcpt_options r;
    size_t mark = transcript_len(f);

    lmtp_mail_options_init(&m);
    check_mail(h, NULL, NULL);
    check_mail(h, &m, NULL);
    m.body = LMTP_BODY_8BITMIME;
    check_mail(h, &m, NULL);
    m.flags = LMTP_FORCE; /* changes nothing here */
    m.size = 10;
    check_mail(h, &m, "SIZE");
    assert_has(lmtp_errmsg(h), "SIZE");
    assert_status(h, lmtp_mail_options_check(h, &m, NULL), LMTP_ERR_NOT_ADVERTISED);
    lmtp_mail_options_init(&m);
    m.body = LMTP_BODY_BINARYMIME;
    check_mail(h, &m, "BINARYMIME");
    lmtp_mail_options_init(&m);
    m.ret = LMTP_RET_FULL;
    check_mail(h, &m, "DSN");
    lmtp_mail_options_init(&m);
    m.smtputf8 = 1;
    check_mail(h, &m, "SMTPUTF8");
    lmtp_mail_options_init(&m);
    m.transid = "t@x";
    check_mail(h, &m, "CHECKPOINT");
    lmtp_mail_options_init(&m);
    m.extra = "xkey=1";
    check_mail(h, &m, "XKEY");
    m.extra = "xkey=";
    assert_status(h, lmtp_mail_options_check(h, &m, NULL), LMTP_ERR_BAD_INPUT);
    lmtp_mail_options_init(&m);
    m.envid = "a\r\nRSET";
    assert_status(h, lmtp_mail_options_check(h, &m, NULL), LMTP_ERR_BAD_INPUT);
    m.envid = NULL;
    m.body = 9;
    assert_status(h, lmtp_mail_options_check(h, &m, NULL), LMTP_ERR_INVALID_ARGUMENT);
    m.struct_size = 0;
    assert_status(h, lmtp_mail_options_check(h, &m, NULL), LMTP_ERR_INVALID_ARGUMENT);

    lmtp_rcpt_options_init(&r);
    check_rcpt(h, &r, NULL);
    check_rcpt(h, NULL, NULL);
    r.notify = LMTP_NOTIFY_NEVER;
    check_rcpt(h, &r, "DSN");
    lmtp_rcpt_options_init(&r);
    r.orcpt = "a@x";
    check_rcpt(h, &r, "DSN");
    lmtp_rcpt_options_init(&r);
    r.extra = "XFLAG";
    check_rcpt(h, &r, "XFLAG");
    r.notify = 64;
    assert_status(h, lmtp_rcpt_options_check(h, &r, NULL), LMTP_ERR_INVALID_ARGUMENT);
    r.notify = LMTP_NOTIFY_NEVER | LMTP_NOTIFY_DELAY;
    assert_status(h, lmtp_rcpt_options_check(h, &r, NULL), LMTP_ERR_BAD_INPUT);
    assert_nothing_sent(h, f, mark);

    /* BINARYMIME without CHUNKING: its message could only go by BDAT. */
    lmtp_mail_options_init(&m);
    m.body = LMTP_BODY_BINARYMIME;
    m.ret = LMTP_RET_HDRS;
    h = connect_offering(x, "BINARYMIME\nDSN");
    check_mail(h, &m, "CHUNKING");
    assert_has(lmtp_errmsg(h), "BODY");
    m.ret = LMTP_RET_NONE;
    check_mail(connect_offering(x, "BINARYMIME\nCHUNKING"), &m, NULL);
}

/* lmtp_reply_class: the class of the last reply, as the library reads it. */
static void reply_class_of_the_last_reply(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h = NULL;

    test_fake_config(&c);
    c.fault_on = "VRFY";
    c.fault_reply = "450 4.2.0 later\r\n";
    f = fx_fake(x, &c);
    assert_ok(h, lmtp_create(&h, NULL));
    fx_keep(x, h);
    assert_int_equal(lmtp_reply_class(h), LMTP_REPLY_NONE);
    assert_ok(h, lmtp_connect(h, fake_host(f), fake_port(f)));
    assert_int_equal(lmtp_reply_class(h), LMTP_REPLY_COMPLETION); /* LHLO's */
    assert_ok(h, lmtp_mail(h, "s@x", NULL));
    assert_status(h, lmtp_to(h, "nosuch@x", NULL), LMTP_ERR_REJECTED);
    assert_int_equal(lmtp_reply_class(h), LMTP_REPLY_PERMANENT);
    assert_ok(h, lmtp_to(h, "alice@x", NULL));
    assert_int_equal(lmtp_reply_class(h), LMTP_REPLY_COMPLETION);
    assert_ok(h, lmtp_data_start(h));
    assert_int_equal(lmtp_code(h), 354);
    assert_int_equal(lmtp_reply_class(h), LMTP_REPLY_INTERMEDIATE);
    assert_ok(h, lmtp_data_write(h, "m\n", 2));
    assert_ok(h, lmtp_data_end(h));
    assert_int_equal(lmtp_reply_class(h), LMTP_REPLY_COMPLETION);
    assert_status(h, lmtp_verify(h, "a@x"), LMTP_ERR_REJECTED);
    assert_int_equal(lmtp_reply_class(h), LMTP_REPLY_TRANSIENT);
    assert_status(h, lmtp_mail(h, "s@x\n", NULL), LMTP_ERR_BAD_INPUT); /* no reply: nothing was sent */
    assert_int_equal(lmtp_code(h), 0);
    assert_int_equal(lmtp_reply_class(h), LMTP_REPLY_NONE);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(step_by_step_transaction, fx_setup_default, fx_teardown),
        cmocka_unit_test_setup_teardown(data_write_chunk_boundaries, fx_setup_default, fx_teardown),
        cmocka_unit_test_setup_teardown(unread_final_replies_never_answer_a_later_command, fx_setup_default,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(data_whole_message, fx_setup_default, fx_teardown),
        cmocka_unit_test_setup_teardown(sequence_errors, fx_setup_default, fx_teardown),
        cmocka_unit_test_setup_teardown(simple_commands, fx_setup_default, fx_teardown),
        cmocka_unit_test_setup_teardown(quit_closes, fx_setup_default, fx_teardown),
        cmocka_unit_test_setup_teardown(no_hello_option, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(command_and_response, fx_setup_default, fx_teardown),
        cmocka_unit_test_setup_teardown(server_information, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(multi_line_banner_and_no_extensions, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(enhanced_code_parts, fx_setup_default, fx_teardown),
        cmocka_unit_test_setup_teardown(mail_parameters, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(rcpt_parameters, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(parameters_not_advertised, fx_setup_default, fx_teardown),
        cmocka_unit_test_setup_teardown(body_needs_8bitmime, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(size_over_the_limit, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(mail_options_from_the_wire, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(rcpt_options_from_the_wire, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(options_check_names_what_is_lacking, fx_setup_default, fx_teardown),
        cmocka_unit_test_setup_teardown(reply_class_of_the_last_reply, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests_name("capi_commands", tests, NULL, NULL);
}
