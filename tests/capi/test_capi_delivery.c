/*
 * test_capi_delivery.c - lmtp_deliver and lmtp_deliver_stream against the fake server:
 * one verdict per recipient (RFC 2033 4.2), the bytes on the wire, the message the server decoded,
 * round trips with and without PIPELINING (RFC 2920), several transactions on one connection.
 */
#include "capi_test.h"

#include <stdio.h>
#include <stdlib.h>

#define LHLO_LINE "LHLO " TEST_HELLO "\r\n"

/* ---- per-recipient outcomes ------------------------------------------------------------- */

static void deliver_gives_each_recipient_its_verdict(void **state) {
    fx *x = *state;
    fake_lmtp *f = x->fake[0];
    lmtp_t *h = x->h[0];
    const char *rcpts[] = {"alice@x", "temp@x", "full@x", "nosuch@x", "alice@x"};
    const char *msg = "Subject: outcomes\n\nhello\n";
    size_t i;

    assert_transcript(f, LHLO_LINE);
    assert_ok(h, lmtp_deliver(h, "sender@x", rcpts, 5, msg, strlen(msg), NULL, NULL));
    assert_int_equal(lmtp_errcode(h), LMTP_OK);
    assert_string_equal(lmtp_errmsg(h), "");

    assert_int_equal(lmtp_result_count(h), 5);
    assert_result(h, 0, "alice@x", LMTP_RESULT_OK, LMTP_STAGE_DATA, 250, "2.0.0", "<alice@x> Saved", 250,
                  "<alice@x> OK");
    assert_result(h, 1, "temp@x", LMTP_RESULT_TEMPFAIL, LMTP_STAGE_DATA, 452, "4.2.2",
                  "<temp@x> Mailbox is full, try again later", 250, "<temp@x> OK");
    assert_result(h, 2, "full@x", LMTP_RESULT_PERMFAIL, LMTP_STAGE_DATA, 552, "5.2.2", "<full@x> Quota exceeded",
                  250, "<full@x> OK");
    assert_result(h, 3, "nosuch@x", LMTP_RESULT_PERMFAIL, LMTP_STAGE_RCPT, 550, "5.1.1",
                  "<nosuch@x> User doesn't exist", 550, "<nosuch@x> User doesn't exist");
    /* The duplicate gets its own RCPT reply and its own final reply. */
    assert_result(h, 4, "alice@x", LMTP_RESULT_OK, LMTP_STAGE_DATA, 250, "2.0.0", "<alice@x> Saved", 250,
                  "<alice@x> OK");

    /* Out of range: 0, "" or UNKNOWN. */
    for (i = 5; i < 7; i++) {
        assert_string_equal(lmtp_result_address(h, i), "");
        assert_int_equal(lmtp_result_status(h, i), LMTP_RESULT_UNKNOWN);
        assert_int_equal(lmtp_result_stage(h, i), LMTP_STAGE_NONE);
        assert_int_equal(lmtp_result_code(h, i), 0);
        assert_string_equal(lmtp_result_enhanced(h, i), "");
        assert_string_equal(lmtp_result_text(h, i), "");
        assert_int_equal(lmtp_result_rcpt_code(h, i), 0);
        assert_string_equal(lmtp_result_rcpt_text(h, i), "");
    }
    assert_int_equal(lmtp_result_status(h, (size_t)-1), LMTP_RESULT_UNKNOWN);

    assert_transcript(f, LHLO_LINE
                      "MAIL FROM:<sender@x>\r\n"
                      "RCPT TO:<alice@x>\r\n"
                      "RCPT TO:<temp@x>\r\n"
                      "RCPT TO:<full@x>\r\n"
                      "RCPT TO:<nosuch@x>\r\n"
                      "RCPT TO:<alice@x>\r\n"
                      "DATA\r\n"
                      "Subject: outcomes\r\n\r\nhello\r\n.\r\n");
    assert_int_equal(fake_message_count(f), 1);
    assert_message(f, 0, "Subject: outcomes\r\n\r\nhello\r\n");
    assert_int_equal(lmtp_is_connected(h), 1);
}

/* Strings from different result getters do not overwrite each other. */
static void result_strings_are_independent(void **state) {
    fx *x = *state;
    lmtp_t *h = x->h[0];
    const char *rcpts[] = {"alice@x", "full@x"};
    const char *enh, *text, *rtext, *addr;

    assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 2, "m\n", 2, NULL, NULL));
    enh = lmtp_result_enhanced(h, 1);
    text = lmtp_result_text(h, 1);
    rtext = lmtp_result_rcpt_text(h, 1);
    addr = lmtp_result_address(h, 1);
    (void)lmtp_code(h);
    (void)lmtp_message(h);
    (void)lmtp_enhanced(h);
    assert_string_equal(enh, "5.2.2");
    assert_string_equal(text, "<full@x> Quota exceeded");
    assert_string_equal(rtext, "<full@x> OK");
    assert_string_equal(addr, "full@x");
}

/* Multi-line final replies, and a text that brings its own enhanced code. */
static void multiline_and_custom_final_replies(void **state) {
    fx *x = *state;
    lmtp_t *h = x->h[0];
    const char *rcpts[] = {"multi@x", "deny@x", "bob@x"};

    assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 3, "m\n", 2, NULL, NULL));
    assert_int_equal(lmtp_result_count(h), 3);
    assert_result(h, 0, "multi@x", LMTP_RESULT_TEMPFAIL, LMTP_STAGE_DATA, 451, "4.3.0", "first line\nsecond line",
                  250, "<multi@x> OK");
    assert_result(h, 1, "deny@x", LMTP_RESULT_PERMFAIL, LMTP_STAGE_DATA, 554, "5.7.1", "policy says no", 250,
                  "<deny@x> OK");
    assert_result(h, 2, "bob@x", LMTP_RESULT_OK, LMTP_STAGE_DATA, 250, "2.0.0", "<bob@x> Saved", 250,
                  "<bob@x> OK");
}

/* MAIL refused: that is every recipient's verdict (stage MAIL); the call still has an answer for all. */
static void mail_refusal_is_every_recipients_verdict(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    const char *rcpts[] = {"alice@x", "bob@x"};

    test_fake_config(&c);
    c.fault_on = "MAIL";
    c.fault_reply = "451 4.3.0 try later\r\n";
    f = fx_fake(x, &c);
    h = fx_connect(x, f, NULL);
    assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 2, "m\n", 2, NULL, NULL));
    assert_int_equal(lmtp_result_count(h), 2);
    /* The fake refuses RCPT without MAIL with 503. */
    assert_result(h, 0, "alice@x", LMTP_RESULT_TEMPFAIL, LMTP_STAGE_MAIL, 451, "4.3.0", "try later", 503, NULL);
    assert_result(h, 1, "bob@x", LMTP_RESULT_TEMPFAIL, LMTP_STAGE_MAIL, 451, "4.3.0", "try later", 503, NULL);
    assert_int_equal(fake_message_count(f), 0);
    assert_transcript(f, LHLO_LINE "MAIL FROM:<s@x>\r\nRCPT TO:<alice@x>\r\nRCPT TO:<bob@x>\r\nDATA\r\n");
    /* The session is still usable. */
    assert_ok(h, lmtp_noop(h));
    assert_int_equal(lmtp_code(h), 250);
}

/* DATA refused: every accepted recipient gets that refusal (stage DATA); refused ones keep theirs. */
static void data_refusal_is_every_accepted_recipients_verdict(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    const char *rcpts[] = {"alice@x", "nosuch@x", "bob@x"};
    size_t mark;

    test_fake_config(&c);
    c.fault_on = "DATA";
    c.fault_reply = "554 5.6.0 no thanks\r\n";
    c.fault_times = 1;
    f = fx_fake(x, &c);
    h = fx_connect(x, f, NULL);
    assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 3, "m\n", 2, NULL, NULL));
    assert_result(h, 0, "alice@x", LMTP_RESULT_PERMFAIL, LMTP_STAGE_DATA, 554, "5.6.0", "no thanks", 250, NULL);
    assert_result(h, 1, "nosuch@x", LMTP_RESULT_PERMFAIL, LMTP_STAGE_RCPT, 550, "5.1.1",
                  "<nosuch@x> User doesn't exist", 550, NULL);
    assert_result(h, 2, "bob@x", LMTP_RESULT_PERMFAIL, LMTP_STAGE_DATA, 554, "5.6.0", "no thanks", 250, NULL);
    assert_int_equal(fake_message_count(f), 0);

    /* The server still holds the transaction: the next delivery starts with RSET. */
    mark = transcript_len(f);
    assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 1, "m\n", 2, NULL, NULL));
    assert_transcript_from(f, mark, "RSET\r\nMAIL FROM:<s@x>\r\nRCPT TO:<alice@x>\r\nDATA\r\nm\r\n.\r\n");
    assert_result(h, 0, "alice@x", LMTP_RESULT_OK, LMTP_STAGE_DATA, 250, "2.0.0", "<alice@x> Saved", 250, NULL);
    assert_int_equal(lmtp_result_count(h), 1);
}

/* A transaction left open by the step-by-step calls: lmtp_deliver sends RSET first. */
static void deliver_after_an_open_transaction(void **state) {
    fx *x = *state;
    fake_lmtp *f = x->fake[0];
    lmtp_t *h = x->h[0];
    const char *rcpts[] = {"bob@x"};
    size_t mark;

    assert_ok(h, lmtp_mail(h, "old@x", NULL));
    assert_ok(h, lmtp_to(h, "alice@x", NULL));
    mark = transcript_len(f);
    assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 1, "m\n", 2, NULL, NULL));
    assert_transcript_from(f, mark, "RSET\r\nMAIL FROM:<s@x>\r\nRCPT TO:<bob@x>\r\nDATA\r\nm\r\n.\r\n");
    assert_int_equal(lmtp_result_count(h), 1);
    assert_result(h, 0, "bob@x", LMTP_RESULT_OK, LMTP_STAGE_DATA, 250, "2.0.0", "<bob@x> Saved", 250, NULL);

    /* A MAIL sent as a raw command line whose reply was never read: read first, then RSET. */
    mark = transcript_len(f);
    assert_ok(h, lmtp_command(h, "MAIL FROM:<raw@x>"));
    assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 1, "n\n", 2, NULL, NULL));
    assert_transcript_from(f, mark, "MAIL FROM:<raw@x>\r\nRSET\r\nMAIL FROM:<s@x>\r\nRCPT TO:<bob@x>\r\nDATA\r\nn\r\n.\r\n");
    assert_int_equal(lmtp_result_status(h, 0), LMTP_RESULT_OK);
    assert_status(h, lmtp_response(h), LMTP_ERR_BAD_SEQUENCE);
    assert_int_equal(fake_message_count(f), 2);
}

/* Without PIPELINING, a refused MAIL ends the delivery: no RCPT is sent. */
static void lockstep_mail_refused(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    const char *rcpts[] = {"alice@x", "bob@x"};
    size_t mark;

    test_fake_config(&c);
    c.pipelining = 0;
    c.reply_delay_ms = 20;
    c.fault_on = "MAIL";
    c.fault_reply = "452 4.3.1 out of storage\r\n";
    c.fault_times = 1;
    f = fx_fake(x, &c);
    h = fx_connect(x, f, NULL);
    mark = transcript_len(f);
    assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 2, "m\n", 2, NULL, NULL));
    assert_transcript_from(f, mark, "MAIL FROM:<s@x>\r\n");
    assert_result(h, 0, "alice@x", LMTP_RESULT_TEMPFAIL, LMTP_STAGE_MAIL, 452, "4.3.1", "out of storage", 0, "");
    assert_result(h, 1, "bob@x", LMTP_RESULT_TEMPFAIL, LMTP_STAGE_MAIL, 452, "4.3.1", "out of storage", 0, "");
    /* MAIL was refused: no transaction is open, no RSET is needed. */
    mark = transcript_len(f);
    assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 1, "m\n", 2, NULL, NULL));
    assert_transcript_from(f, mark, "MAIL FROM:<s@x>\r\nRCPT TO:<alice@x>\r\nDATA\r\nm\r\n.\r\n");
    assert_int_equal(lmtp_result_status(h, 0), LMTP_RESULT_OK);
    assert_int_equal(fake_lockstep_violations(f), 0);
}

/* The server's own SIZE check after the message: one 552 per recipient. */
static void message_over_the_servers_size(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    const char *rcpts[] = {"alice@x", "bob@x"};
    char msg[300];

    memset(msg, 'z', sizeof msg);
    test_fake_config(&c);
    c.size = 100;
    f = fx_fake(x, &c);
    h = fx_connect(x, f, NULL);
    assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 2, msg, sizeof msg, NULL, NULL));
    assert_result(h, 0, "alice@x", LMTP_RESULT_PERMFAIL, LMTP_STAGE_DATA, 552, "5.3.4", "<alice@x> Message too big",
                  250, NULL);
    assert_result(h, 1, "bob@x", LMTP_RESULT_PERMFAIL, LMTP_STAGE_DATA, 552, "5.3.4", "<bob@x> Message too big", 250,
                  NULL);
}

/* ---- the body on the wire and as the server decoded it ------------------------------------ */

struct body_case {
    const char *name;
    const char *in;
    size_t in_len;
    const char *wire;    /* after DATA\r\n, final dot included */
    const char *decoded; /* what the server stored */
};

#define BODY(name, in, wire, decoded) {name, in, sizeof(in) - 1, wire, decoded}

static const struct body_case body_cases[] = {
    BODY("LF to CRLF", "a\nb\n", "a\r\nb\r\n.\r\n", "a\r\nb\r\n"),
    BODY("CRLF kept", "a\r\nb\r\n", "a\r\nb\r\n.\r\n", "a\r\nb\r\n"),
    BODY("bare CR to CRLF", "a\rb\r", "a\r\nb\r\n.\r\n", "a\r\nb\r\n"),
    BODY("final CRLF added", "no newline at the end", "no newline at the end\r\n.\r\n", "no newline at the end\r\n"),
    BODY("leading dots doubled", ".one\n..two\nmid.dot\n. space\n",
         "..one\r\n...two\r\nmid.dot\r\n.. space\r\n.\r\n", ".one\r\n..two\r\nmid.dot\r\n. space\r\n"),
    BODY("a lone dot line does not end the message", "x\r\n.\r\ny\r\n", "x\r\n..\r\ny\r\n.\r\n", "x\r\n.\r\ny\r\n"),
    BODY("dot first in the message", ".\n", "..\r\n.\r\n", ".\r\n"),
    BODY("dot at the very end without newline", "end\n.", "end\r\n..\r\n.\r\n", "end\r\n.\r\n"),
    BODY("CRLF.CRLF inside", "a\r\n.\r\n.\r\nb", "a\r\n..\r\n..\r\nb\r\n.\r\n", "a\r\n.\r\n.\r\nb\r\n"),
    BODY("empty lines", "\n\n\r\n", "\r\n\r\n\r\n.\r\n", "\r\n\r\n\r\n"),
    BODY("mixed line ends", "a\r\rb\n\rc", "a\r\n\r\nb\r\n\r\nc\r\n.\r\n", "a\r\n\r\nb\r\n\r\nc\r\n"),
    BODY("8-bit bytes", "caf\xc3\xa9 \xff\n", "caf\xc3\xa9 \xff\r\n.\r\n", "caf\xc3\xa9 \xff\r\n"),
    BODY("empty message", "", ".\r\n", ""),
};

static void body_is_encoded_and_decoded_exactly(void **state) {
    fx *x = *state;
    fake_lmtp *f = x->fake[0];
    lmtp_t *h = x->h[0];
    const char *rcpts[] = {"bob@x"};
    size_t k;

    for (k = 0; k < sizeof body_cases / sizeof body_cases[0]; k++) {
        const struct body_case *c = &body_cases[k];
        char want[512];
        size_t mark = transcript_len(f);
        print_message("body case: %s\n", c->name);
        assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 1, c->in, c->in_len, NULL, NULL));
        assert_int_equal(lmtp_result_status(h, 0), LMTP_RESULT_OK);
        snprintf(want, sizeof want, "MAIL FROM:<s@x>\r\nRCPT TO:<bob@x>\r\nDATA\r\n%s", c->wire);
        assert_transcript_from(f, mark, want);
        assert_int_equal(fake_message_count(f), k + 1);
        assert_message(f, k, c->decoded);
    }
}

/* A NUL byte in a message is data (messages are byte buffers with a length). */
static void body_with_nul_bytes(void **state) {
    fx *x = *state;
    fake_lmtp *f = x->fake[0];
    lmtp_t *h = x->h[0];
    const char *rcpts[] = {"bob@x"};
    static const char msg[] = "a\0b\n.\0\n";
    static const char decoded[] = "a\0b\r\n.\0\r\n";

    assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 1, msg, sizeof msg - 1, NULL, NULL));
    assert_message_(f, 0, decoded, sizeof decoded - 1, __FILE__, __LINE__);
}

/* The null sender. */
static void null_sender(void **state) {
    fx *x = *state;
    fake_lmtp *f = x->fake[0];
    lmtp_t *h = x->h[0];
    const char *rcpts[] = {"bob@x"};
    size_t mark = transcript_len(f);

    assert_ok(h, lmtp_deliver(h, "", rcpts, 1, "m", 1, NULL, NULL));
    assert_transcript_from(f, mark, "MAIL FROM:<>\r\nRCPT TO:<bob@x>\r\nDATA\r\nm\r\n.\r\n");
}

/* ---- round trips -------------------------------------------------------------------------- */

/* With PIPELINING: MAIL, every RCPT and DATA in one flush; the body after 354; 2 round trips. */
static void pipelined_delivery_costs_two_round_trips(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    static const size_t counts[] = {1, 3, 40};
    const char *rcpts[40];
    char names[40][16];
    size_t k, i;

    test_fake_config(&c);
    c.reply_delay_ms = 10; /* makes a client that sends the body before 354 visible */
    f = fx_fake(x, &c);
    h = fx_connect(x, f, NULL);
    for (i = 0; i < 40; i++) {
        snprintf(names[i], sizeof names[i], "r%lu@x", (unsigned long)i);
        rcpts[i] = names[i];
    }
    for (k = 0; k < sizeof counts / sizeof counts[0]; k++) {
        size_t before = fake_flushes(f);
        assert_ok(h, lmtp_deliver(h, "s@x", rcpts, counts[k], "hello\n", 6, NULL, NULL));
        print_message("%lu recipients: %lu round trips\n", (unsigned long)counts[k],
                      (unsigned long)(fake_flushes(f) - before));
        assert_int_equal(fake_flushes(f) - before, 2);
        assert_int_equal(lmtp_result_count(h), counts[k]);
        for (i = 0; i < counts[k]; i++) assert_int_equal(lmtp_result_status(h, i), LMTP_RESULT_OK);
    }
    assert_int_equal(fake_lockstep_violations(f), 0);
    assert_int_equal(fake_message_count(f), 3);
}

/* A refused recipient, and RSET before a delivery: still one group, still 2 round trips. */
static void pipelined_round_trips_with_refusals_and_rset(void **state) {
    fx *x = *state;
    fake_lmtp *f = x->fake[0];
    lmtp_t *h = x->h[0];
    const char *refused[] = {"nosuch@x"};
    const char *mixed[] = {"nosuch@x", "alice@x", "full@x"};
    size_t before, mark;

    /* Everybody refused: MAIL, RCPT, DATA answered 250, 550, 503 in one round trip. */
    before = fake_flushes(f);
    assert_ok(h, lmtp_deliver(h, "s@x", refused, 1, "m\n", 2, NULL, NULL));
    assert_int_equal(fake_flushes(f) - before, 1);
    assert_result(h, 0, "nosuch@x", LMTP_RESULT_PERMFAIL, LMTP_STAGE_RCPT, 550, "5.1.1", NULL, 550, NULL);

    /* The next one: RSET, MAIL, RCPT..., DATA in one group. */
    before = fake_flushes(f);
    mark = transcript_len(f);
    assert_ok(h, lmtp_deliver(h, "s@x", mixed, 3, "m\n", 2, NULL, NULL));
    assert_int_equal(fake_flushes(f) - before, 2);
    assert_transcript_from(f, mark,
                           "RSET\r\nMAIL FROM:<s@x>\r\nRCPT TO:<nosuch@x>\r\nRCPT TO:<alice@x>\r\n"
                           "RCPT TO:<full@x>\r\nDATA\r\nm\r\n.\r\n");
    assert_result(h, 0, "nosuch@x", LMTP_RESULT_PERMFAIL, LMTP_STAGE_RCPT, 550, NULL, NULL, 550, NULL);
    assert_result(h, 1, "alice@x", LMTP_RESULT_OK, LMTP_STAGE_DATA, 250, NULL, NULL, 250, NULL);
    assert_result(h, 2, "full@x", LMTP_RESULT_PERMFAIL, LMTP_STAGE_DATA, 552, NULL, NULL, 250, NULL);
    assert_int_equal(fake_lockstep_violations(f), 0);
}

/* Without PIPELINING: one command at a time, nothing sent before the reply it waits for. */
static void lockstep_without_pipelining(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    const char *rcpts[] = {"alice@x", "nosuch@x", "temp@x"};
    const char *msg = "Subject: lockstep\n\n.dot\n";
    size_t before;

    test_fake_config(&c);
    c.pipelining = 0;
    c.reply_delay_ms = 30;
    f = fx_fake(x, &c);
    h = fx_connect(x, f, NULL);
    assert_int_equal(lmtp_supports(h, "PIPELINING"), 0);
    before = fake_flushes(f);
    assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 3, msg, strlen(msg), NULL, NULL));
    /* MAIL, 3 x RCPT, DATA, the final replies. */
    assert_int_equal(fake_flushes(f) - before, 6);
    assert_int_equal(fake_lockstep_violations(f), 0);
    assert_transcript(f, LHLO_LINE
                      "MAIL FROM:<s@x>\r\n"
                      "RCPT TO:<alice@x>\r\n"
                      "RCPT TO:<nosuch@x>\r\n"
                      "RCPT TO:<temp@x>\r\n"
                      "DATA\r\n"
                      "Subject: lockstep\r\n\r\n..dot\r\n.\r\n");
    assert_message(f, 0, "Subject: lockstep\r\n\r\n.dot\r\n");
    assert_result(h, 0, "alice@x", LMTP_RESULT_OK, LMTP_STAGE_DATA, 250, "2.0.0", "<alice@x> Saved", 250,
                  "<alice@x> OK");
    assert_result(h, 1, "nosuch@x", LMTP_RESULT_PERMFAIL, LMTP_STAGE_RCPT, 550, "5.1.1",
                  "<nosuch@x> User doesn't exist", 550, "<nosuch@x> User doesn't exist");
    assert_result(h, 2, "temp@x", LMTP_RESULT_TEMPFAIL, LMTP_STAGE_DATA, 452, "4.2.2",
                  "<temp@x> Mailbox is full, try again later", 250, "<temp@x> OK");
}

/* ---- several transactions on one connection ----------------------------------------------- */

static void several_transactions(int pipelining, void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    const char *one[] = {"alice@x"};
    const char *refused[] = {"nosuch@x", "deny-rcpt@x"};
    const char *two[] = {"bob@x", "carol@x"};
    size_t mark;

    test_fake_config(&c);
    c.pipelining = pipelining;
    c.reply_delay_ms = pipelining ? 0 : 20; /* makes a client that does not wait visible */
    c.rules = "nosuch@x=550;deny-rcpt@x=450";
    f = fx_fake(x, &c);
    h = fx_connect(x, f, NULL);

    mark = transcript_len(f);
    assert_ok(h, lmtp_deliver(h, "a@x", one, 1, "first\n", 6, NULL, NULL));
    assert_transcript_from(f, mark, "MAIL FROM:<a@x>\r\nRCPT TO:<alice@x>\r\nDATA\r\nfirst\r\n.\r\n");
    assert_int_equal(lmtp_result_count(h), 1);
    assert_int_equal(fake_lockstep_violations(f), 0);

    /* Every recipient refused: a verdict for each, LMTP_OK, nothing delivered. */
    mark = transcript_len(f);
    assert_ok(h, lmtp_deliver(h, "b@x", refused, 2, "second\n", 7, NULL, NULL));
    assert_int_equal(lmtp_result_count(h), 2);
    assert_result(h, 0, "nosuch@x", LMTP_RESULT_PERMFAIL, LMTP_STAGE_RCPT, 550, "5.1.1", NULL, 550, NULL);
    assert_result(h, 1, "deny-rcpt@x", LMTP_RESULT_TEMPFAIL, LMTP_STAGE_RCPT, 450, "4.2.1", NULL, 450, NULL);
    if (pipelining)
        assert_transcript_from(f, mark, "MAIL FROM:<b@x>\r\nRCPT TO:<nosuch@x>\r\nRCPT TO:<deny-rcpt@x>\r\nDATA\r\n");
    else /* no DATA when nobody was accepted */
        assert_transcript_from(f, mark, "MAIL FROM:<b@x>\r\nRCPT TO:<nosuch@x>\r\nRCPT TO:<deny-rcpt@x>\r\n");
    assert_int_equal(fake_lockstep_violations(f), 0);

    /* The transaction is still open at the server: RSET first. */
    mark = transcript_len(f);
    assert_ok(h, lmtp_deliver(h, "c@x", two, 2, "third\n", 6, NULL, NULL));
    assert_transcript_from(f, mark,
                           "RSET\r\nMAIL FROM:<c@x>\r\nRCPT TO:<bob@x>\r\nRCPT TO:<carol@x>\r\nDATA\r\nthird\r\n.\r\n");
    assert_int_equal(lmtp_result_count(h), 2);
    assert_result(h, 0, "bob@x", LMTP_RESULT_OK, LMTP_STAGE_DATA, 250, "2.0.0", "<bob@x> Saved", 250, NULL);
    assert_result(h, 1, "carol@x", LMTP_RESULT_OK, LMTP_STAGE_DATA, 250, "2.0.0", "<carol@x> Saved", 250, NULL);
    /* Without PIPELINING, MAIL must wait for the reply to RSET (RFC 2920 / RFC 5321 lockstep). */
    assert_int_equal(fake_lockstep_violations(f), 0);

    /* After a completed delivery no RSET is needed. */
    mark = transcript_len(f);
    assert_ok(h, lmtp_deliver(h, "d@x", one, 1, "fourth\n", 7, NULL, NULL));
    assert_transcript_from(f, mark, "MAIL FROM:<d@x>\r\nRCPT TO:<alice@x>\r\nDATA\r\nfourth\r\n.\r\n");

    assert_int_equal(fake_message_count(f), 3);
    assert_message(f, 0, "first\r\n");
    assert_message(f, 1, "third\r\n");
    assert_message(f, 2, "fourth\r\n");
    assert_int_equal(fake_connections(f), 1);
    assert_int_equal(fake_lockstep_violations(f), 0);
}

static void several_transactions_pipelined(void **state) { several_transactions(1, state); }
static void several_transactions_lockstep(void **state) { several_transactions(0, state); }

/* ---- lmtp_deliver_stream ------------------------------------------------------------------ */

/* A message source handing out a buffer in odd-sized pieces. */
typedef struct source {
    const char *data;
    size_t len, pos;
    size_t calls;
    size_t fail_at; /* return -1 once pos >= fail_at (0: never) */
    int failed;
    size_t max_cap_seen;
} source;

static long source_read(void *user, void *buf, size_t cap) {
    static const size_t pieces[] = {1, 7, 4093, 2, 65537, 13, 999, 31337, 3};
    source *s = user;
    size_t want = pieces[s->calls % (sizeof pieces / sizeof pieces[0])];
    size_t n;
    s->calls++;
    if (cap > s->max_cap_seen) s->max_cap_seen = cap;
    if (s->fail_at && s->pos >= s->fail_at) {
        s->failed = 1;
        return -1;
    }
    n = s->len - s->pos;
    if (n > want) n = want;
    if (n > cap) n = cap;
    memcpy(buf, s->data + s->pos, n);
    s->pos += n;
    return (long)n;
}

/* Builds a 5 MB message with every kind of line end and leading dots; *expected gets what the server
   must store (each line end as CRLF, a final CRLF). */
static char *make_big_message(fx *x, size_t target, size_t *len, char **expected, size_t *expected_len) {
    static const char *const ends[] = {"\n", "\r\n", "\r"};
    char *m = fx_alloc(x, target + 200);
    char *e = fx_alloc(x, 2 * target + 400);
    size_t n = 0, en = 0;
    unsigned long line = 0;
    while (n < target) {
        char text[160];
        const char *end = ends[line % 3];
        size_t tl, k;
        int lead_dots = (int)(line % 5 == 0) + (int)(line % 15 == 0);
        tl = 0;
        for (k = 0; k < (size_t)lead_dots; k++) text[tl++] = '.';
        tl += (size_t)snprintf(text + tl, sizeof text - tl, "line %lu %.*s", line, (int)(line % 97),
                               "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789"
                               "abcdefghijklmnopqrstuvwxyz");
        memcpy(m + n, text, tl);
        n += tl;
        memcpy(m + n, end, strlen(end));
        n += strlen(end);
        memcpy(e + en, text, tl);
        en += tl;
        memcpy(e + en, "\r\n", 2);
        en += 2;
        line++;
    }
    /* No line end at the very end: the library adds the final CRLF. */
    memcpy(m + n, "tail", 4);
    n += 4;
    memcpy(e + en, "tail\r\n", 6);
    en += 6;
    *len = n;
    *expected = e;
    *expected_len = en;
    return m;
}

static void deliver_stream_five_megabytes(void **state) {
    fx *x = *state;
    fake_lmtp *f = x->fake[0];
    lmtp_t *h = x->h[0];
    const char *rcpts[] = {"alice@x", "full@x"};
    char *expected;
    size_t len, expected_len, stored_len = 0;
    source s;
    const char *stored;

    memset(&s, 0, sizeof s);
    s.data = make_big_message(x, 5u * 1024 * 1024, &len, &expected, &expected_len);
    s.len = len;
    assert_ok(h, lmtp_deliver_stream(h, "s@x", rcpts, 2, source_read, &s, NULL, NULL));
    assert_int_equal(s.pos, len);
    assert_true(s.calls > 100);
    assert_result(h, 0, "alice@x", LMTP_RESULT_OK, LMTP_STAGE_DATA, 250, "2.0.0", "<alice@x> Saved", 250, NULL);
    assert_result(h, 1, "full@x", LMTP_RESULT_PERMFAIL, LMTP_STAGE_DATA, 552, "5.2.2", NULL, 250, NULL);
    assert_int_equal(fake_message_count(f), 1);
    stored = fake_message(f, 0, &stored_len);
    assert_bytes(stored, stored_len, expected, expected_len);
}

/* The source fails mid-message: ABORTED, connection closed, no final dot, nothing stored. */
static void deliver_stream_source_failure_aborts(void **state) {
    fx *x = *state;
    fake_lmtp *f = x->fake[0];
    lmtp_t *h = x->h[0];
    const char *rcpts[] = {"alice@x", "bob@x"};
    char *expected;
    size_t len, expected_len, tlen = 0, mark, data_at;
    source s;
    const char *t;

    memset(&s, 0, sizeof s);
    s.data = make_big_message(x, 300000, &len, &expected, &expected_len);
    s.len = len;
    s.fail_at = 150000;
    mark = transcript_len(f);
    assert_status(h, lmtp_deliver_stream(h, "s@x", rcpts, 2, source_read, &s, NULL, NULL), LMTP_ERR_ABORTED);
    assert_true(s.failed);
    assert_int_equal(lmtp_errcode(h), LMTP_ERR_ABORTED);
    assert_true(strlen(lmtp_errmsg(h)) > 0);
    assert_int_equal(lmtp_is_connected(h), 0);
    assert_int_equal(lmtp_result_count(h), 2);
    assert_result(h, 0, "alice@x", LMTP_RESULT_UNKNOWN, LMTP_STAGE_NONE, 0, "", "", 250, "<alice@x> OK");
    assert_result(h, 1, "bob@x", LMTP_RESULT_UNKNOWN, LMTP_STAGE_NONE, 0, "", "", 250, "<bob@x> OK");

    /* The server saw the connection end without the final dot and stored nothing. */
    assert_true(fake_wait_idle(f, 1, 2000));
    assert_int_equal(fake_message_count(f), 0);
    t = fake_transcript(f, &tlen);
    assert_true(contains(t + mark, tlen - mark, "DATA\r\n"));
    for (data_at = mark; data_at + 6 <= tlen && memcmp(t + data_at, "DATA\r\n", 6) != 0; data_at++) {
    }
    assert_false(contains(t + data_at, tlen - data_at, "\r\n.\r\n"));
    assert_false(contains(t + data_at, tlen - data_at, "QUIT"));

    /* Calls now say so; the handle connects again and works. */
    assert_status(h, lmtp_noop(h), LMTP_ERR_NOT_CONNECTED);
    assert_ok(h, lmtp_connect(h, fake_host(f), fake_port(f)));
    assert_int_equal(lmtp_is_connected(h), 1);
    assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 1, "again\n", 6, NULL, NULL));
    assert_int_equal(lmtp_result_status(h, 0), LMTP_RESULT_OK);
    assert_int_equal(fake_message_count(f), 1);
    assert_message(f, 0, "again\r\n");
}

/* A source that fails before giving a byte: nothing after DATA at all. */
static long failing_read(void *user, void *buf, size_t cap) {
    (void)buf;
    (void)cap;
    ++*(int *)user;
    return -1;
}

static void deliver_stream_immediate_failure(void **state) {
    fx *x = *state;
    fake_lmtp *f = x->fake[0];
    lmtp_t *h = x->h[0];
    const char *rcpts[] = {"alice@x"};
    int calls = 0;
    size_t mark = transcript_len(f);

    assert_status(h, lmtp_deliver_stream(h, "s@x", rcpts, 1, failing_read, &calls, NULL, NULL), LMTP_ERR_ABORTED);
    assert_int_equal(calls, 1);
    assert_int_equal(lmtp_is_connected(h), 0);
    assert_int_equal(lmtp_result_status(h, 0), LMTP_RESULT_UNKNOWN);
    assert_true(fake_wait_idle(f, 1, 2000));
    assert_transcript_from(f, mark, "MAIL FROM:<s@x>\r\nRCPT TO:<alice@x>\r\nDATA\r\n");
    assert_int_equal(fake_message_count(f), 0);
}

/* An empty source is an empty message. */
static long empty_read(void *user, void *buf, size_t cap) {
    (void)user;
    (void)buf;
    (void)cap;
    return 0;
}

static void deliver_stream_empty_message(void **state) {
    fx *x = *state;
    fake_lmtp *f = x->fake[0];
    lmtp_t *h = x->h[0];
    const char *rcpts[] = {"alice@x"};
    size_t mark = transcript_len(f);

    assert_ok(h, lmtp_deliver_stream(h, "s@x", rcpts, 1, empty_read, NULL, NULL, NULL));
    assert_transcript_from(f, mark, "MAIL FROM:<s@x>\r\nRCPT TO:<alice@x>\r\nDATA\r\n.\r\n");
    assert_message(f, 0, "");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(deliver_gives_each_recipient_its_verdict, fx_setup_default, fx_teardown),
        cmocka_unit_test_setup_teardown(result_strings_are_independent, fx_setup_default, fx_teardown),
        cmocka_unit_test_setup_teardown(multiline_and_custom_final_replies, fx_setup_default, fx_teardown),
        cmocka_unit_test_setup_teardown(mail_refusal_is_every_recipients_verdict, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(data_refusal_is_every_accepted_recipients_verdict, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(deliver_after_an_open_transaction, fx_setup_default, fx_teardown),
        cmocka_unit_test_setup_teardown(lockstep_mail_refused, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(message_over_the_servers_size, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(body_is_encoded_and_decoded_exactly, fx_setup_default, fx_teardown),
        cmocka_unit_test_setup_teardown(body_with_nul_bytes, fx_setup_default, fx_teardown),
        cmocka_unit_test_setup_teardown(null_sender, fx_setup_default, fx_teardown),
        cmocka_unit_test_setup_teardown(pipelined_delivery_costs_two_round_trips, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(pipelined_round_trips_with_refusals_and_rset, fx_setup_default, fx_teardown),
        cmocka_unit_test_setup_teardown(lockstep_without_pipelining, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(several_transactions_pipelined, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(several_transactions_lockstep, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(deliver_stream_five_megabytes, fx_setup_default, fx_teardown),
        cmocka_unit_test_setup_teardown(deliver_stream_source_failure_aborts, fx_setup_default, fx_teardown),
        cmocka_unit_test_setup_teardown(deliver_stream_immediate_failure, fx_setup_default, fx_teardown),
        cmocka_unit_test_setup_teardown(deliver_stream_empty_message, fx_setup_default, fx_teardown),
    };
    return cmocka_run_group_tests_name("capi_delivery", tests, NULL, NULL);
}
