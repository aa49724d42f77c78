/*
 * test_capi_bdat.c - CHUNKING (RFC 3030) through the C API against the fake server: lmtp_deliver*
 * with BDAT (one round trip with PIPELINING, per-recipient replies after BDAT LAST as RFC 2033 4.3
 * wants, a 50 MB stream in bounded memory), the choice of DATA or BDAT, canonical bodies, no
 * accepted recipient, a refused chunk, the step-by-step lmtp_bdat, and lockstep without PIPELINING.
 */
#include "capi_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define LHLO_LINE "LHLO " TEST_HELLO "\r\n"

/* The default fake plus CHUNKING. */
static void chunking_config(fake_config *c) {
    test_fake_config(c);
    c->extra_caps = "CHUNKING";
}

static lmtp_t *connect_chunk_size(fx *x, fake_lmtp *f, size_t chunk) {
    lmtp_options o;
    test_options(&o);
    o.bdat_chunk_size = chunk;
    return fx_connect(x, f, &o);
}

/* ---- one chunk ------------------------------------------------------------------------------------ */

/* PIPELINING + CHUNKING: MAIL, every RCPT and BDAT LAST with the message in one write, one round
   trip; one final reply per accepted recipient, duplicates included. */
static void small_message_in_one_round_trip(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    const char *rcpts[] = {"alice@x", "temp@x", "full@x", "nosuch@x", "alice@x"};
    const char *msg = "Subject: chunked\n\n.dot stays\nhello\n";
    size_t before;

    chunking_config(&c);
    c.reply_delay_ms = 10;
    f = fx_fake(x, &c);
    h = fx_connect(x, f, NULL);
    assert_int_equal(lmtp_supports(h, "CHUNKING"), 1);
    before = fake_flushes(f);
    assert_ok(h, lmtp_deliver(h, "sender@x", rcpts, 5, msg, strlen(msg), NULL, NULL));
    assert_int_equal(fake_flushes(f) - before, 1);
    assert_transcript(f, LHLO_LINE
                      "MAIL FROM:<sender@x>\r\n"
                      "RCPT TO:<alice@x>\r\n"
                      "RCPT TO:<temp@x>\r\n"
                      "RCPT TO:<full@x>\r\n"
                      "RCPT TO:<nosuch@x>\r\n"
                      "RCPT TO:<alice@x>\r\n"
                      "BDAT 39 LAST\r\n"
                      "Subject: chunked\r\n\r\n.dot stays\r\nhello\r\n");
    assert_int_equal(lmtp_result_count(h), 5);
    assert_result(h, 0, "alice@x", LMTP_RESULT_OK, LMTP_STAGE_DATA, 250, "2.0.0", "<alice@x> Saved", 250,
                  "<alice@x> OK");
    assert_result(h, 1, "temp@x", LMTP_RESULT_TEMPFAIL, LMTP_STAGE_DATA, 452, "4.2.2",
                  "<temp@x> Mailbox is full, try again later", 250, "<temp@x> OK");
    assert_result(h, 2, "full@x", LMTP_RESULT_PERMFAIL, LMTP_STAGE_DATA, 552, "5.2.2", "<full@x> Quota exceeded",
                  250, "<full@x> OK");
    assert_result(h, 3, "nosuch@x", LMTP_RESULT_PERMFAIL, LMTP_STAGE_RCPT, 550, "5.1.1",
                  "<nosuch@x> User doesn't exist", 550, "<nosuch@x> User doesn't exist");
    assert_result(h, 4, "alice@x", LMTP_RESULT_OK, LMTP_STAGE_DATA, 250, "2.0.0", "<alice@x> Saved", 250,
                  "<alice@x> OK");
    assert_int_equal(fake_message_count(f), 1);
    assert_message(f, 0, "Subject: chunked\r\n\r\n.dot stays\r\nhello\r\n");
    assert_int_equal(fake_lockstep_violations(f), 0);
    /* In step: the next command gets its own reply, the next delivery needs no RSET. */
    assert_ok(h, lmtp_noop(h));
    assert_int_equal(lmtp_code(h), 250);
    before = transcript_len(f);
    assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 1, "again", 5, NULL, NULL));
    assert_transcript_from(f, before, "MAIL FROM:<s@x>\r\nRCPT TO:<alice@x>\r\nBDAT 7 LAST\r\nagain\r\n");
    assert_message(f, 1, "again\r\n");
}

/* ---- the stored message is the same whichever way it went --------------------------------------------- */

struct body_case {
    const char *name;
    const char *in;
    size_t in_len;
    const char *decoded;
    size_t decoded_len;
};
#define BODY(name, in, decoded) {name, in, sizeof(in) - 1, decoded, sizeof(decoded) - 1}

static const struct body_case body_cases[] = {
    BODY("LF to CRLF", "a\nb\n", "a\r\nb\r\n"),
    BODY("CRLF kept", "a\r\nb\r\n", "a\r\nb\r\n"),
    BODY("bare CR to CRLF", "a\rb\r", "a\r\nb\r\n"),
    BODY("final CRLF added", "no newline at the end", "no newline at the end\r\n"),
    BODY("leading dots", ".one\n..two\n.\n", ".one\r\n..two\r\n.\r\n"),
    BODY("CRLF.CRLF inside", "a\r\n.\r\n.\r\nb", "a\r\n.\r\n.\r\nb\r\n"),
    BODY("empty lines", "\n\n\r\n", "\r\n\r\n\r\n"),
    BODY("mixed line ends", "a\r\rb\n\rc", "a\r\n\r\nb\r\n\r\nc\r\n"),
    BODY("CR LF pairs everywhere", "\r\n\r\nxy\r\n\r", "\r\n\r\nxy\r\n\r\n"),
    BODY("8-bit and NUL", "caf\xc3\xa9\0\xff\n", "caf\xc3\xa9\0\xff\r\n"),
};

/* Every body, with BDAT chunks of 1, 2, 3, 5 and the default size, and with DATA: the server stores
   the same message, and every chunk is announced with its exact size. */
static void same_message_whichever_transfer(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    static const size_t chunk_sizes[] = {1, 2, 3, 5, 0};
    const char *rcpts[] = {"bob@x"};
    size_t k, s, stored = 0, empty_chunks = 0;

    chunking_config(&c);
    f = fx_fake(x, &c);
    for (s = 0; s < sizeof chunk_sizes / sizeof chunk_sizes[0]; s++) {
        lmtp_t *h = connect_chunk_size(x, f, chunk_sizes[s]);
        for (k = 0; k < sizeof body_cases / sizeof body_cases[0]; k++) {
            const struct body_case *b = &body_cases[k];
            lmtp_mail_options m = LMTP_MAIL_OPTIONS_INIT;
            size_t mark = transcript_len(f), n = 0, pos, bdats = 0, sum = 0;
            const char *t;
            print_message("chunk size %lu: %s\n", (unsigned long)chunk_sizes[s], b->name);
            assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 1, b->in, b->in_len, NULL, NULL));
            assert_int_equal(lmtp_result_status(h, 0), LMTP_RESULT_OK);
            assert_int_equal(fake_message_count(f), stored + 1);
            assert_message_(f, stored, b->decoded, b->decoded_len, __FILE__, __LINE__);
            stored++;
            /* Walk the BDAT commands: each size is what follows it, the last says LAST. */
            t = fake_transcript(f, &n);
            pos = mark + strlen("MAIL FROM:<s@x>\r\nRCPT TO:<bob@x>\r\n");
            assert_true(n > pos);
            assert_true(memcmp(t + mark, "MAIL FROM:<s@x>\r\nRCPT TO:<bob@x>\r\n", pos - mark) == 0);
            for (;;) {
                unsigned long size = 0;
                char *end;
                int last;
                assert_true(n - pos > 5 && memcmp(t + pos, "BDAT ", 5) == 0);
                size = strtoul(t + pos + 5, &end, 10);
                last = strncmp(end, " LAST\r\n", 7) == 0;
                assert_true(last || strncmp(end, "\r\n", 2) == 0);
                /* A chunk without any byte that is not the last is legal but pointless. */
                if (!last && size == 0) empty_chunks++;
                pos = (size_t)(end - t) + (last ? 7 : 2) + size;
                assert_true(pos <= n);
                bdats++;
                sum += size;
                if (last) break;
            }
            assert_int_equal(pos, n); /* nothing after BDAT LAST */
            assert_int_equal(sum, b->decoded_len);
            if (chunk_sizes[s] == 0) assert_int_equal(bdats, 1);

            /* And by DATA: the same message stored. */
            m.transfer = LMTP_TRANSFER_DATA;
            mark = transcript_len(f);
            assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 1, b->in, b->in_len, &m, NULL));
            t = fake_transcript(f, &n);
            {
                static const char head[] = "MAIL FROM:<s@x>\r\nRCPT TO:<bob@x>\r\nDATA\r\n";
                assert_true(n - mark > sizeof head - 1);
                assert_bytes(t + mark, sizeof head - 1, head, sizeof head - 1);
            }
            assert_message_(f, stored, b->decoded, b->decoded_len, __FILE__, __LINE__);
            stored++;
        }
        assert_int_equal(fake_lockstep_violations(f), 0);
        fx_free(x, h);
    }
    print_message("%lu empty BDAT chunks that were not the last\n", (unsigned long)empty_chunks);
}

/* ---- transfer choice and canonical bodies ---------------------------------------------------------------- */

static void transfer_choice(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f, *plain;
    lmtp_t *h, *hp;
    lmtp_mail_options m = LMTP_MAIL_OPTIONS_INIT;
    const char *rcpts[] = {"alice@x"};
    size_t mark;

    chunking_config(&c);
    f = fx_fake(x, &c);
    h = fx_connect(x, f, NULL);
    test_fake_config(&c);
    plain = fx_fake(x, &c);
    hp = fx_connect(x, plain, NULL);
    assert_int_equal(lmtp_supports(hp, "CHUNKING"), 0);

    /* DATA asked for: DATA even with CHUNKING. */
    m.transfer = LMTP_TRANSFER_DATA;
    mark = transcript_len(f);
    assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 1, ".x\n", 3, &m, NULL));
    assert_transcript_from(f, mark, "MAIL FROM:<s@x>\r\nRCPT TO:<alice@x>\r\nDATA\r\n..x\r\n.\r\n");
    assert_message(f, 0, ".x\r\n");

    /* BDAT asked for, and offered. */
    m.transfer = LMTP_TRANSFER_BDAT;
    mark = transcript_len(f);
    assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 1, ".x\n", 3, &m, NULL));
    assert_transcript_from(f, mark, "MAIL FROM:<s@x>\r\nRCPT TO:<alice@x>\r\nBDAT 4 LAST\r\n.x\r\n");
    assert_message(f, 1, ".x\r\n");

    /* BDAT asked for, not offered: NOT_ADVERTISED, nothing sent, the session fine. */
    mark = transcript_len(plain);
    assert_status(hp, lmtp_deliver(hp, "s@x", rcpts, 1, ".x\n", 3, &m, NULL), LMTP_ERR_NOT_ADVERTISED);
    assert_has(lmtp_errmsg(hp), "CHUNKING");
    assert_transcript_from(plain, mark, "");
    assert_int_equal(lmtp_is_connected(hp), 1);

    /* AUTO without CHUNKING: DATA. */
    m.transfer = LMTP_TRANSFER_AUTO;
    assert_ok(hp, lmtp_deliver(hp, "s@x", rcpts, 1, ".x\n", 3, &m, NULL));
    assert_transcript_from(plain, mark, "MAIL FROM:<s@x>\r\nRCPT TO:<alice@x>\r\nDATA\r\n..x\r\n.\r\n");
    assert_int_equal(lmtp_result_status(hp, 0), LMTP_RESULT_OK);
    assert_ok(hp, lmtp_deliver(hp, "s@x", rcpts, 1, ".x\n", 3, NULL, NULL)); /* NULL options: AUTO */
    assert_int_equal(fake_message_count(plain), 2);

    /* An unknown transfer value is an invalid argument; nothing sent. */
    m.transfer = 7;
    mark = transcript_len(f);
    assert_status(h, lmtp_deliver(h, "s@x", rcpts, 1, "x", 1, &m, NULL), LMTP_ERR_INVALID_ARGUMENT);
    assert_transcript_from(f, mark, "");
}

/* LMTP_BODY_CANONICAL: the bytes go untouched (a bare LF stays, no final CRLF added). */
static void canonical_body_is_sent_untouched(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    lmtp_mail_options m = LMTP_MAIL_OPTIONS_INIT;
    const char *rcpts[] = {"alice@x"};
    static const char msg[] = "a\nb\r\n.c\rd\0e";
    size_t mark;

    chunking_config(&c);
    f = fx_fake(x, &c);
    h = fx_connect(x, f, NULL);
    m.flags = LMTP_BODY_CANONICAL;
    mark = transcript_len(f);
    assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 1, msg, sizeof msg - 1, &m, NULL));
    {
        static const char want[] = "MAIL FROM:<s@x>\r\nRCPT TO:<alice@x>\r\nBDAT 11 LAST\r\na\nb\r\n.c\rd\0e";
        size_t n = 0;
        const char *t = fake_transcript(f, &n);
        assert_bytes(t + mark, n - mark, want, sizeof want - 1);
    }
    assert_message_(f, 0, msg, sizeof msg - 1, __FILE__, __LINE__);
    assert_int_equal(lmtp_result_status(h, 0), LMTP_RESULT_OK);

    /* In several chunks too. */
    fx_free(x, h);
    h = connect_chunk_size(x, f, 4);
    mark = transcript_len(f);
    assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 1, msg, sizeof msg - 1, &m, NULL));
    {
        static const char want[] =
            "MAIL FROM:<s@x>\r\nRCPT TO:<alice@x>\r\nBDAT 4\r\na\nb\rBDAT 4\r\n\n.c\rBDAT 3 LAST\r\nd\0e";
        size_t n = 0;
        const char *t = fake_transcript(f, &n);
        assert_bytes(t + mark, n - mark, want, sizeof want - 1);
    }
    assert_message_(f, 1, msg, sizeof msg - 1, __FILE__, __LINE__);

    /* BODY=BINARYMIME goes by BDAT (with the extension offered). */
    fx_free(x, h);
    fx_stop(x, f);
    chunking_config(&c);
    c.extra_caps = "CHUNKING\nBINARYMIME";
    f = fx_fake(x, &c);
    h = fx_connect(x, f, NULL);
    m.body = LMTP_BODY_BINARYMIME;
    mark = transcript_len(f);
    assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 1, "\x01\n\x02", 3, &m, NULL));
    {
        static const char want[] = "MAIL FROM:<s@x> BODY=BINARYMIME\r\nRCPT TO:<alice@x>\r\nBDAT 3 LAST\r\n\x01\n\x02";
        size_t n = 0;
        const char *t = fake_transcript(f, &n);
        assert_bytes(t + mark, n - mark, want, sizeof want - 1);
    }
    assert_message_(f, 0, "\x01\n\x02", 3, __FILE__, __LINE__);
}

/* ---- nobody accepted, empty messages ------------------------------------------------------------------ */

static void no_accepted_recipient(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    const char *refused[] = {"nosuch@x", "nosuch@x"};
    const char *ok[] = {"bob@x"};
    size_t mark, n;
    const char *t;

    chunking_config(&c);
    c.reply_delay_ms = 5;
    f = fx_fake(x, &c);
    h = fx_connect(x, f, NULL);
    mark = transcript_len(f);
    assert_ok(h, lmtp_deliver(h, "s@x", refused, 2, "m\n", 2, NULL, NULL));
    assert_int_equal(lmtp_result_count(h), 2);
    assert_result(h, 0, "nosuch@x", LMTP_RESULT_PERMFAIL, LMTP_STAGE_RCPT, 550, "5.1.1",
                  "<nosuch@x> User doesn't exist", 550, NULL);
    assert_result(h, 1, "nosuch@x", LMTP_RESULT_PERMFAIL, LMTP_STAGE_RCPT, 550, "5.1.1", NULL, 550, NULL);
    assert_int_equal(fake_message_count(f), 0);
    t = fake_transcript(f, &n);
    print_message("transcript: %.*s\n", (int)(n - mark), t + mark);
    assert_true(n - mark >= 62);
    assert_true(memcmp(t + mark, "MAIL FROM:<s@x>\r\nRCPT TO:<nosuch@x>\r\nRCPT TO:<nosuch@x>\r\n", 56) == 0);

    /* In step: the next command gets its own reply (not one owed to the message). */
    mark = transcript_len(f);
    assert_ok(h, lmtp_noop(h));
    assert_int_equal(lmtp_code(h), 250);
    assert_transcript_from(f, mark, "NOOP\r\n");
    assert_status(h, lmtp_response(h), LMTP_ERR_BAD_SEQUENCE);
    assert_ok(h, lmtp_deliver(h, "s@x", ok, 1, "m\n", 2, NULL, NULL));
    assert_result(h, 0, "bob@x", LMTP_RESULT_OK, LMTP_STAGE_DATA, 250, "2.0.0", "<bob@x> Saved", 250, NULL);
    assert_int_equal(fake_message_count(f), 1);
    assert_int_equal(fake_lockstep_violations(f), 0);
    assert_ok(h, lmtp_noop(h));
    assert_int_equal(lmtp_code(h), 250);
}

/* The same with a message of several chunks: the first one is refused (no valid recipients). */
static void no_accepted_recipient_several_chunks(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    const char *refused[] = {"nosuch@x"};
    const char *ok[] = {"bob@x"};
    char msg[200];
    size_t mark, n;
    const char *t;

    memset(msg, 'q', sizeof msg);
    chunking_config(&c);
    f = fx_fake(x, &c);
    h = connect_chunk_size(x, f, 50);
    mark = transcript_len(f);
    assert_ok(h, lmtp_deliver(h, "s@x", refused, 1, msg, sizeof msg, NULL, NULL));
    assert_result(h, 0, "nosuch@x", LMTP_RESULT_PERMFAIL, LMTP_STAGE_RCPT, 550, "5.1.1", NULL, 550, NULL);
    assert_int_equal(fake_message_count(f), 0);
    t = fake_transcript(f, &n);
    assert_false(contains(t + mark, n - mark, " LAST"));
    assert_ok(h, lmtp_noop(h));
    assert_int_equal(lmtp_code(h), 250);
    mark = transcript_len(f);
    assert_ok(h, lmtp_deliver(h, "s@x", ok, 1, "m\n", 2, NULL, NULL));
    assert_int_equal(lmtp_result_status(h, 0), LMTP_RESULT_OK);
    t = fake_transcript(f, &n);
    assert_true(n > mark);
    assert_message(f, 0, "m\r\n");
    assert_ok(h, lmtp_noop(h));
    assert_int_equal(lmtp_code(h), 250);
}

/* An empty message with CHUNKING goes by DATA (a lone dot says it without ambiguity). */
static long empty_read(void *user, void *buf, size_t cap) {
    (void)user;
    (void)buf;
    (void)cap;
    return 0;
}

static void empty_message_goes_by_data(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    const char *rcpts[] = {"alice@x", "full@x"};
    size_t mark, before;

    chunking_config(&c);
    f = fx_fake(x, &c);
    h = fx_connect(x, f, NULL);
    mark = transcript_len(f);
    before = fake_flushes(f);
    assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 2, "", 0, NULL, NULL));
    assert_transcript_from(f, mark, "MAIL FROM:<s@x>\r\nRCPT TO:<alice@x>\r\nRCPT TO:<full@x>\r\nDATA\r\n.\r\n");
    assert_int_equal(fake_flushes(f) - before, 2);
    assert_message(f, 0, "");
    assert_result(h, 0, "alice@x", LMTP_RESULT_OK, LMTP_STAGE_DATA, 250, NULL, NULL, 250, NULL);
    assert_result(h, 1, "full@x", LMTP_RESULT_PERMFAIL, LMTP_STAGE_DATA, 552, NULL, NULL, 250, NULL);

    mark = transcript_len(f);
    assert_ok(h, lmtp_deliver_stream(h, "s@x", rcpts, 1, empty_read, NULL, NULL, NULL));
    assert_transcript_from(f, mark, "MAIL FROM:<s@x>\r\nRCPT TO:<alice@x>\r\nDATA\r\n.\r\n");
    assert_message(f, 1, "");
    assert_int_equal(fake_lockstep_violations(f), 0);
}

/* ---- a refused chunk ---------------------------------------------------------------------------------- */

static void refused_chunk(unsigned long which, void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    const char *rcpts[] = {"alice@x", "nosuch@x", "bob@x"};
    lmtp_mail_options m = LMTP_MAIL_OPTIONS_INIT;
    char msg[300];
    size_t mark, n;
    const char *t;

    memset(msg, 'z', sizeof msg);
    chunking_config(&c);
    c.bdat_fail_chunk = which;
    f = fx_fake(x, &c);
    h = connect_chunk_size(x, f, 64);
    mark = transcript_len(f);
    assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 3, msg, sizeof msg, NULL, NULL));
    assert_int_equal(lmtp_result_count(h), 3);
    assert_result(h, 0, "alice@x", LMTP_RESULT_PERMFAIL, LMTP_STAGE_DATA, 552, "5.3.4", "Message too big for system",
                  250, "<alice@x> OK");
    assert_result(h, 1, "nosuch@x", LMTP_RESULT_PERMFAIL, LMTP_STAGE_RCPT, 550, "5.1.1", NULL, 550, NULL);
    assert_result(h, 2, "bob@x", LMTP_RESULT_PERMFAIL, LMTP_STAGE_DATA, 552, "5.3.4", "Message too big for system",
                  250, "<bob@x> OK");
    assert_int_equal(fake_message_count(f), 0);
    /* No BDAT LAST after the refusal: the message must not be completed. */
    t = fake_transcript(f, &n);
    assert_false(contains(t + mark, n - mark, " LAST\r\n"));
    print_message("chunk %lu refused; %lu bytes sent after MAIL\n", which, (unsigned long)(n - mark));
    assert_int_equal(lmtp_is_connected(h), 1);

    /* The next delivery works; the server may still hold the transaction: RSET first. (The fake
       refuses chunk `which` of every transaction: with which == 1 the next message goes by DATA.) */
    mark = transcript_len(f);
    m.transfer = which == 1 ? LMTP_TRANSFER_DATA : LMTP_TRANSFER_AUTO;
    assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 1, "ok\n", 3, &m, NULL));
    assert_transcript_from(f, mark,
                           which == 1 ? "RSET\r\nMAIL FROM:<s@x>\r\nRCPT TO:<alice@x>\r\nDATA\r\nok\r\n.\r\n"
                                      : "RSET\r\nMAIL FROM:<s@x>\r\nRCPT TO:<alice@x>\r\nBDAT 4 LAST\r\nok\r\n");
    assert_result(h, 0, "alice@x", LMTP_RESULT_OK, LMTP_STAGE_DATA, 250, "2.0.0", "<alice@x> Saved", 250, NULL);
    assert_int_equal(lmtp_result_count(h), 1);
    assert_int_equal(fake_message_count(f), 1);
    assert_message(f, 0, "ok\r\n");
    assert_ok(h, lmtp_noop(h));
    assert_int_equal(lmtp_code(h), 250);
}

static void first_chunk_refused(void **state) { refused_chunk(1, state); }
static void second_chunk_refused(void **state) { refused_chunk(2, state); }

/* The LAST chunk refused: one refusal per accepted recipient, like the replies after DATA's dot. */
static void last_chunk_refused(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    const char *rcpts[] = {"alice@x", "nosuch@x", "bob@x"};

    chunking_config(&c);
    c.bdat_fail_chunk = 1;
    f = fx_fake(x, &c);
    h = fx_connect(x, f, NULL);
    assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 3, "small\n", 6, NULL, NULL));
    assert_result(h, 0, "alice@x", LMTP_RESULT_PERMFAIL, LMTP_STAGE_DATA, 552, "5.3.4",
                  "<alice@x> Message too big for system", 250, NULL);
    assert_result(h, 1, "nosuch@x", LMTP_RESULT_PERMFAIL, LMTP_STAGE_RCPT, 550, NULL, NULL, 550, NULL);
    assert_result(h, 2, "bob@x", LMTP_RESULT_PERMFAIL, LMTP_STAGE_DATA, 552, "5.3.4",
                  "<bob@x> Message too big for system", 250, NULL);
    assert_ok(h, lmtp_noop(h));
    assert_int_equal(lmtp_code(h), 250);
}

/* ---- the step-by-step lmtp_bdat ---------------------------------------------------------------------- */

static void step_by_step_bdat(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    size_t mark;

    chunking_config(&c);
    f = fx_fake(x, &c);
    h = fx_connect(x, f, NULL);
    mark = transcript_len(f);
    assert_ok(h, lmtp_mail(h, "s@x", NULL));
    assert_ok(h, lmtp_to(h, "alice@x", NULL));
    assert_status(h, lmtp_to(h, "nosuch@x", NULL), LMTP_ERR_REJECTED);
    assert_ok(h, lmtp_to(h, "full@x", NULL));
    assert_ok(h, lmtp_to(h, "bob@x", NULL));
    /* Exact bytes: no line-end conversion, no dot handling. */
    assert_ok(h, lmtp_bdat(h, "a\nb", 3, 0));
    assert_int_equal(lmtp_code(h), 250);
    assert_has(lmtp_message(h), "3 octets");
    assert_ok(h, lmtp_bdat(h, ".c\r\n", 4, 1));
    /* The first accepted recipient's reply, then the others from lmtp_response. */
    assert_int_equal(lmtp_code(h), 250);
    assert_string_equal(lmtp_message(h), "2.0.0 <alice@x> Saved");
    assert_status(h, lmtp_response(h), LMTP_ERR_REJECTED);
    assert_int_equal(lmtp_code(h), 552);
    assert_string_equal(lmtp_message(h), "5.2.2 <full@x> Quota exceeded");
    assert_ok(h, lmtp_response(h));
    assert_int_equal(lmtp_code(h), 250);
    assert_string_equal(lmtp_message(h), "2.0.0 <bob@x> Saved");
    assert_status(h, lmtp_response(h), LMTP_ERR_BAD_SEQUENCE);
    assert_transcript_from(f, mark,
                           "MAIL FROM:<s@x>\r\nRCPT TO:<alice@x>\r\nRCPT TO:<nosuch@x>\r\nRCPT TO:<full@x>\r\n"
                           "RCPT TO:<bob@x>\r\nBDAT 3\r\na\nbBDAT 4 LAST\r\n.c\r\n");
    assert_message(f, 0, "a\nb.c\r\n");
    assert_int_equal(lmtp_result_count(h), 4);
    assert_result(h, 0, "alice@x", LMTP_RESULT_OK, LMTP_STAGE_DATA, 250, "2.0.0", "<alice@x> Saved", 250, NULL);
    assert_result(h, 1, "nosuch@x", LMTP_RESULT_PERMFAIL, LMTP_STAGE_RCPT, 550, NULL, NULL, 550, NULL);
    assert_result(h, 2, "full@x", LMTP_RESULT_PERMFAIL, LMTP_STAGE_DATA, 552, "5.2.2", NULL, 250, NULL);
    assert_result(h, 3, "bob@x", LMTP_RESULT_OK, LMTP_STAGE_DATA, 250, "2.0.0", NULL, 250, NULL);

    /* A whole message in one LAST chunk, and an empty LAST chunk after data chunks. */
    mark = transcript_len(f);
    assert_ok(h, lmtp_mail(h, "s@x", NULL));
    assert_ok(h, lmtp_to(h, "bob@x", NULL));
    assert_ok(h, lmtp_bdat(h, "xy", 2, 0));
    assert_ok(h, lmtp_bdat(h, NULL, 0, 1));
    assert_int_equal(lmtp_code(h), 250);
    assert_transcript_from(f, mark, "MAIL FROM:<s@x>\r\nRCPT TO:<bob@x>\r\nBDAT 2\r\nxyBDAT 0 LAST\r\n");
    assert_message(f, 1, "xy");
    assert_status(h, lmtp_bdat(h, NULL, 3, 1), LMTP_ERR_INVALID_ARGUMENT);
    assert_ok(h, lmtp_noop(h));
}

static void step_by_step_bdat_without_recipients(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    size_t mark;

    chunking_config(&c);
    c.reply_delay_ms = 5;
    f = fx_fake(x, &c);
    h = fx_connect(x, f, NULL);
    assert_ok(h, lmtp_mail(h, "s@x", NULL));
    assert_status(h, lmtp_to(h, "nosuch@x", NULL), LMTP_ERR_REJECTED);
    assert_status(h, lmtp_bdat(h, "hello\r\n", 7, 1), LMTP_ERR_NO_RECIPIENTS);
    assert_int_equal(lmtp_errcode(h), LMTP_ERR_NO_RECIPIENTS);
    assert_int_equal(lmtp_is_connected(h), 1);
    assert_int_equal(fake_message_count(f), 0);
    assert_int_equal(lmtp_result_count(h), 1);
    assert_result(h, 0, "nosuch@x", LMTP_RESULT_PERMFAIL, LMTP_STAGE_RCPT, 550, NULL, NULL, 550, NULL);
    /* In step afterwards. */
    mark = transcript_len(f);
    assert_ok(h, lmtp_noop(h));
    assert_int_equal(lmtp_code(h), 250);
    assert_status(h, lmtp_response(h), LMTP_ERR_BAD_SEQUENCE);
    assert_ok(h, lmtp_mail(h, "s@x", NULL));
    assert_int_equal(lmtp_code(h), 250);
    assert_ok(h, lmtp_to(h, "bob@x", NULL));
    assert_ok(h, lmtp_bdat(h, "ok\r\n", 4, 1));
    assert_int_equal(lmtp_code(h), 250);
    assert_message(f, 0, "ok\r\n");
    {
        size_t n = 0;
        const char *t = fake_transcript(f, &n);
        assert_true(contains(t + mark, n - mark, "NOOP\r\n"));
    }
    assert_int_equal(fake_lockstep_violations(f), 0);
}

/* ---- without PIPELINING ----------------------------------------------------------------------------- */

static void lockstep_chunks_without_pipelining(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    const char *rcpts[] = {"alice@x", "nosuch@x", "full@x"};
    char msg[1000], want[2000];
    size_t i, w, before, mark;

    /* 10 lines of 98 bytes + CRLF = 1000 bytes, already canonical: chunks of exactly 100 bytes. */
    for (i = 0; i < 10; i++) {
        memset(msg + i * 100, 'a' + (int)i, 98);
        msg[i * 100 + 98] = '\r';
        msg[i * 100 + 99] = '\n';
    }
    chunking_config(&c);
    c.pipelining = 0;
    c.reply_delay_ms = 20;
    f = fx_fake(x, &c);
    h = connect_chunk_size(x, f, 100);
    assert_int_equal(lmtp_supports(h, "PIPELINING"), 0);
    mark = transcript_len(f);
    before = fake_flushes(f);
    assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 3, msg, sizeof msg, NULL, NULL));
    print_message("%lu round trips, %d lockstep violations\n", (unsigned long)(fake_flushes(f) - before),
                  fake_lockstep_violations(f));
    w = (size_t)snprintf(want, sizeof want, "MAIL FROM:<s@x>\r\nRCPT TO:<alice@x>\r\nRCPT TO:<nosuch@x>\r\nRCPT TO:<full@x>\r\n");
    for (i = 0; i < 10; i++) {
        w += (size_t)snprintf(want + w, sizeof want - w, i == 9 ? "BDAT 100 LAST\r\n" : "BDAT 100\r\n");
        memcpy(want + w, msg + i * 100, 100);
        w += 100;
    }
    want[w] = '\0';
    assert_transcript_from(f, mark, want);
    assert_message_(f, 0, msg, sizeof msg, __FILE__, __LINE__);
    assert_result(h, 0, "alice@x", LMTP_RESULT_OK, LMTP_STAGE_DATA, 250, "2.0.0", NULL, 250, NULL);
    assert_result(h, 1, "nosuch@x", LMTP_RESULT_PERMFAIL, LMTP_STAGE_RCPT, 550, NULL, NULL, 550, NULL);
    assert_result(h, 2, "full@x", LMTP_RESULT_PERMFAIL, LMTP_STAGE_DATA, 552, "5.2.2", NULL, 250, NULL);
    /* Each chunk waits for the reply to the one before (RFC 2920: no PIPELINING, no pipelining). */
    assert_int_equal(fake_lockstep_violations(f), 0);
    /* MAIL, 3 RCPT, 9 chunks, the LAST chunk's replies. */
    assert_int_equal(fake_flushes(f) - before, 14);

    /* A single-chunk message: MAIL, RCPT, BDAT LAST one by one. */
    before = fake_flushes(f);
    assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 1, "m\n", 2, NULL, NULL));
    assert_int_equal(fake_flushes(f) - before, 3);
    assert_int_equal(fake_lockstep_violations(f), 0);
}

/* ---- 50 MB streamed in odd-sized reads, in bounded memory ---------------------------------------------- */

/* A deterministic message, line by line; raw (as the source gives it, line ends LF, CRLF or CR) or
   canonical (every line end CRLF: what the server must store). Lines start with dots now and then
   (BDAT does no dot-stuffing). */
typedef struct gen {
    int canonical;
    unsigned long line;
    unsigned long long raw_total, target;
    char buf[256];
    size_t len, pos;
    int done;
} gen;

static void gen_init(gen *g, unsigned long long target, int canonical) {
    memset(g, 0, sizeof *g);
    g->target = target;
    g->canonical = canonical;
}

static void gen_next_line(gen *g) {
    static const char *const ends[] = {"\n", "\r\n", "\r", "\n"};
    const char *end = ends[g->line % 4];
    size_t tl = 0, raw_len;
    int dots = (int)(g->line % 7 == 0) + (int)(g->line % 21 == 0);
    while (dots-- > 0) g->buf[tl++] = '.';
    tl += (size_t)snprintf(g->buf + tl, sizeof g->buf - tl, "line %lu %.*s", g->line, (int)(g->line % 101),
                           "The quick brown fox jumps over the lazy dog; 0123456789 abcdefghijklmnopqrstuvwxyz "
                           "ABCDEFGHIJKLMNOPQRSTUVWXYZ.");
    raw_len = tl + strlen(end);
    if (g->canonical) {
        memcpy(g->buf + tl, "\r\n", 2);
        g->len = tl + 2;
    } else {
        memcpy(g->buf + tl, end, strlen(end));
        g->len = raw_len;
    }
    g->pos = 0;
    g->raw_total += raw_len;
    g->line++;
}

/* Up to cap bytes; 0 at the end. */
static size_t gen_read(gen *g, char *out, size_t cap) {
    size_t n = 0;
    while (n < cap) {
        size_t k;
        if (g->pos == g->len) {
            if (g->done || g->raw_total >= g->target) {
                g->done = 1;
                break;
            }
            gen_next_line(g);
        }
        k = g->len - g->pos;
        if (k > cap - n) k = cap - n;
        memcpy(out + n, g->buf + g->pos, k);
        g->pos += k;
        n += k;
    }
    return n;
}

typedef struct odd_source {
    gen g;
    unsigned long calls;
    unsigned long long given;
} odd_source;

static long odd_read(void *user, void *buf, size_t cap) {
    static const size_t pieces[] = {1, 7, 4093, 2, 65537, 13, 999, 31337, 3, 262144, 100003, 1};
    odd_source *s = user;
    size_t want = pieces[s->calls % (sizeof pieces / sizeof pieces[0])];
    size_t n;
    s->calls++;
    if (want > cap) want = cap;
    n = gen_read(&s->g, buf, want);
    s->given += n;
    return (long)n;
}

/* Peak resident set (kB) of this process, VmHWM in /proc/self/status; -1 if unknown. */
static long vm_hwm_kb(void) {
    FILE *fp = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    if (!fp) return -1;
    while (fgets(line, sizeof line, fp))
        if (strncmp(line, "VmHWM:", 6) == 0) kb = strtol(line + 6, NULL, 10);
    fclose(fp);
    return kb;
}

/* Resets the peak to the current RSS (Linux >= 4.0); 0 on success. */
static int reset_hwm(void) {
    FILE *fp = fopen("/proc/self/clear_refs", "w");
    int ok;
    if (!fp) return -1;
    ok = fputs("5", fp) >= 0;
    return fclose(fp) == 0 && ok ? 0 : -1;
}

/* The server runs in a child process (so that the 50 MB it stores do not count in the client's
   memory); it reports what it stored. */
struct server_addr {
    unsigned port;
    char host[256];
    char error[256];
};

struct server_report {
    size_t count;        /* messages stored */
    size_t stored_len;   /* length of message 0 */
    long mismatch_at;    /* first byte that differs from the expected message, -1 if none */
    size_t bdats;        /* BDAT commands in the transcript */
    int lockstep;        /* lockstep violations */
};

static void server_child(unsigned long long target, int in_fd, int out_fd) {
    fake_config c;
    fake_lmtp *f;
    struct server_addr a;
    struct server_report r;
    char go;
    ssize_t rc;

    memset(&a, 0, sizeof a);
    memset(&r, 0, sizeof r);
    chunking_config(&c);
    f = fake_start(&c);
    if (f) {
        a.port = fake_port(f);
        snprintf(a.host, sizeof a.host, "%s", fake_host(f));
    } else {
        snprintf(a.error, sizeof a.error, "%s", fake_start_error());
    }
    rc = write(out_fd, &a, sizeof a);
    if (!f || rc != (ssize_t)sizeof a) _exit(2);
    /* The parent says when the delivery is over (or closes the pipe). */
    rc = read(in_fd, &go, 1);
    (void)rc;
    fake_wait_idle(f, 1, 5000);
    r.count = fake_message_count(f);
    r.mismatch_at = -1;
    if (r.count >= 1) {
        const char *stored = fake_message(f, 0, &r.stored_len);
        static char buf[1 << 16];
        gen expect;
        size_t off = 0, n, tlen = 0, i;
        const char *t;
        gen_init(&expect, target, 1);
        while (r.mismatch_at < 0 && (n = gen_read(&expect, buf, sizeof buf)) > 0) {
            for (i = 0; i < n; i++) {
                if (off + i >= r.stored_len || stored[off + i] != buf[i]) {
                    r.mismatch_at = (long)(off + i);
                    break;
                }
            }
            off += n;
        }
        if (r.mismatch_at < 0 && off != r.stored_len) r.mismatch_at = (long)off;
        t = fake_transcript(f, &tlen);
        for (i = 0; i + 5 <= tlen; i++)
            if (t[i] == 'B' && memcmp(t + i, "BDAT ", 5) == 0) r.bdats++;
    }
    r.lockstep = fake_lockstep_violations(f);
    fake_stop(f);
    rc = write(out_fd, &r, sizeof r);
    _exit(rc == (ssize_t)sizeof r ? 0 : 3);
}

static void fifty_megabytes_in_bounded_memory(void **state) {
    fx *x = *state;
    unsigned long long target = 50ull * 1024 * 1024;
    const char *env = getenv("LMTP_TEST_BDAT_MB");
    int to_child[2], from_child[2], wstatus = 0, st, reset_ok;
    struct server_addr a;
    struct server_report r;
    pid_t pid;
    lmtp_options o;
    lmtp_t *h;
    odd_source *s;
    const char *rcpts[] = {"alice@x", "full@x"};
    long hwm_before, hwm_after, growth_kb;
    long t0, elapsed;

    if (env && atoi(env) > 0) target = (unsigned long long)atoi(env) * 1024 * 1024;
    assert_int_equal(pipe(to_child), 0);
    assert_int_equal(pipe(from_child), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(to_child[1]);
        close(from_child[0]);
        server_child(target, to_child[0], from_child[1]);
    }
    close(to_child[0]);
    close(from_child[1]);
    assert_int_equal(read(from_child[0], &a, sizeof a), (ssize_t)sizeof a);
    if (a.error[0]) fail_msg("fake_start in the child: %s", a.error);

    test_options(&o);
    o.timeout_ms = 30000;
    h = NULL;
    st = lmtp_new(&h, a.host, a.port, &o);
    fx_keep(x, h);
    assert_status(h, st, LMTP_OK);
    s = fx_alloc(x, sizeof *s);
    memset(s, 0, sizeof *s);
    gen_init(&s->g, target, 0);

    reset_ok = reset_hwm() == 0;
    hwm_before = vm_hwm_kb();
    t0 = now_ms();
    st = lmtp_deliver_stream(h, "s@x", rcpts, 2, odd_read, s, NULL, NULL);
    elapsed = now_ms() - t0;
    hwm_after = vm_hwm_kb();
    assert_status(h, st, LMTP_OK);
    assert_int_equal(lmtp_result_status(h, 0), LMTP_RESULT_OK);
    assert_int_equal(lmtp_result_status(h, 1), LMTP_RESULT_PERMFAIL);
    assert_int_equal(lmtp_result_code(h, 1), 552);
    assert_true(s->given >= target);
    assert_ok(h, lmtp_quit(h));

    assert_int_equal(write(to_child[1], "g", 1), 1);
    close(to_child[1]);
    memset(&r, 0, sizeof r);
    assert_int_equal(read(from_child[0], &r, sizeof r), (ssize_t)sizeof r);
    close(from_child[0]);
    assert_int_equal(waitpid(pid, &wstatus, 0), pid);
    assert_true(WIFEXITED(wstatus));
    assert_int_equal(WEXITSTATUS(wstatus), 0);

    growth_kb = hwm_after - hwm_before;
    print_message("%llu bytes in %lu reads, %ld ms; peak RSS %ld kB -> %ld kB (+%ld kB; reset %s); "
                  "%lu BDAT commands; stored %lu bytes\n",
                  s->given, s->calls, elapsed, hwm_before, hwm_after, growth_kb, reset_ok ? "ok" : "not available",
                  (unsigned long)r.bdats, (unsigned long)r.stored_len);
    /* The client's memory does not grow with the message. */
    assert_true(hwm_before > 0 && hwm_after > 0);
    assert_true(growth_kb < 16 * 1024);
    /* The server stored exactly the input with every line end as CRLF. */
    assert_int_equal(r.count, 1);
    if (r.mismatch_at >= 0)
        fail_msg("the stored message (%lu bytes) differs from the expected one at byte %ld",
                 (unsigned long)r.stored_len, r.mismatch_at);
    assert_true(r.stored_len > target);
    assert_int_equal(r.lockstep, 0);
}

/* ---- streams ----------------------------------------------------------------------------------------- */

/* A source that gives a few bytes per read (as a pipe or a socket would). */
typedef struct trickle {
    const char *data;
    size_t len, pos, calls;
    size_t fail_at; /* return -1 once pos >= fail_at (0: never) */
} trickle;

static long trickle_read(void *user, void *buf, size_t cap) {
    trickle *t = user;
    size_t n = 1 + t->calls % 7;
    t->calls++;
    if (t->fail_at && t->pos >= t->fail_at) return -1;
    if (n > cap) n = cap;
    if (n > t->len - t->pos) n = t->len - t->pos;
    memcpy(buf, t->data + t->pos, n);
    t->pos += n;
    return (long)n;
}

/* Counts the BDAT commands in the transcript from `from`, checking each size against what follows;
   stores the sizes (up to max). */
static size_t bdat_sizes(fake_lmtp *f, size_t from, unsigned long *sizes, size_t max) {
    size_t n = 0, pos = from, k = 0;
    const char *t = fake_transcript(f, &n);
    while (pos < n) {
        char *end;
        unsigned long size;
        int last;
        if (n - pos < 5 || memcmp(t + pos, "BDAT ", 5) != 0) {
            /* a command line: skip it */
            const char *e = memchr(t + pos, '\n', n - pos);
            if (!e) break;
            pos = (size_t)(e - t) + 1;
            continue;
        }
        size = strtoul(t + pos + 5, &end, 10);
        last = strncmp(end, " LAST\r\n", 7) == 0;
        if (k < max) sizes[k] = size;
        k++;
        pos = (size_t)(end - t) + (last ? 7 : 2) + size;
    }
    return k;
}

/* bdat_chunk_size is the number of message bytes per chunk, however few bytes each read gives. */
static void small_reads_fill_whole_chunks(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    const char *rcpts[] = {"alice@x"};
    char *msg = fx_alloc(x, 20000);
    trickle t;
    unsigned long sizes[8000];
    size_t i, count, mark;

    /* 20000 bytes, lines of 98 + CRLF: already canonical, so no chunk grows. */
    for (i = 0; i < 20000; i++) msg[i] = (char)(i % 100 == 98 ? '\r' : i % 100 == 99 ? '\n' : 'a' + (int)(i % 26));
    chunking_config(&c);
    f = fx_fake(x, &c);

    /* The default chunk (256 KiB): the whole message is one BDAT LAST. */
    h = fx_connect(x, f, NULL);
    memset(&t, 0, sizeof t);
    t.data = msg;
    t.len = 20000;
    mark = transcript_len(f);
    assert_ok(h, lmtp_deliver_stream(h, "s@x", rcpts, 1, trickle_read, &t, NULL, NULL));
    assert_int_equal(lmtp_result_status(h, 0), LMTP_RESULT_OK);
    assert_message_(f, 0, msg, 20000, __FILE__, __LINE__);
    count = bdat_sizes(f, mark, sizes, 8000);
    print_message("%lu reads, %lu BDAT commands (first sizes %lu %lu %lu)\n", (unsigned long)t.calls,
                  (unsigned long)count, sizes[0], count > 1 ? sizes[1] : 0, count > 2 ? sizes[2] : 0);
    assert_int_equal(count, 1);
    assert_int_equal(sizes[0], 20000);
    fx_free(x, h);

    /* 4096-byte chunks: 4 of them, then the rest with LAST. */
    h = connect_chunk_size(x, f, 4096);
    memset(&t, 0, sizeof t);
    t.data = msg;
    t.len = 20000;
    mark = transcript_len(f);
    assert_ok(h, lmtp_deliver_stream(h, "s@x", rcpts, 1, trickle_read, &t, NULL, NULL));
    assert_message_(f, 1, msg, 20000, __FILE__, __LINE__);
    count = bdat_sizes(f, mark, sizes, 8000);
    print_message("%lu reads, %lu BDAT commands\n", (unsigned long)t.calls, (unsigned long)count);
    assert_int_equal(count, 5);
    for (i = 0; i < 4; i++) assert_int_equal(sizes[i], 4096);
    assert_int_equal(sizes[4], 20000 - 4 * 4096);
}

/* The source fails half-way through a message going by BDAT: ABORTED, closed, no LAST, nothing stored. */
static void source_failure_in_the_middle(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    const char *rcpts[] = {"alice@x", "bob@x"};
    char *msg = fx_alloc(x, 5000);
    trickle t;
    size_t mark, n;
    const char *tr;

    memset(msg, 'k', 5000);
    chunking_config(&c);
    f = fx_fake(x, &c);
    h = connect_chunk_size(x, f, 500);
    memset(&t, 0, sizeof t);
    t.data = msg;
    t.len = 5000;
    t.fail_at = 2600;
    mark = transcript_len(f);
    assert_status(h, lmtp_deliver_stream(h, "s@x", rcpts, 2, trickle_read, &t, NULL, NULL), LMTP_ERR_ABORTED);
    assert_int_equal(lmtp_is_connected(h), 0);
    assert_int_equal(lmtp_result_count(h), 2);
    assert_int_equal(lmtp_result_status(h, 0), LMTP_RESULT_UNKNOWN);
    assert_int_equal(lmtp_result_status(h, 1), LMTP_RESULT_UNKNOWN);
    assert_true(fake_wait_idle(f, 1, 2000));
    assert_int_equal(fake_message_count(f), 0);
    tr = fake_transcript(f, &n);
    assert_true(contains(tr + mark, n - mark, "BDAT "));
    assert_false(contains(tr + mark, n - mark, " LAST\r\n"));
    /* The handle connects again and delivers. */
    assert_ok(h, lmtp_connect(h, fake_host(f), fake_port(f)));
    assert_ok(h, lmtp_deliver(h, "s@x", rcpts, 1, "again\n", 6, NULL, NULL));
    assert_message(f, 0, "again\r\n");
}

/* The source fails before its first chunk: the chunk is read before anything of the message is
   queued, so not even MAIL goes out; ABORTED, closed as for any failing source, every recipient
   UNKNOWN, with or without PIPELINING. */
static long refusing_read(void *user, void *buf, size_t cap) {
    (void)buf;
    (void)cap;
    ++*(int *)user;
    return -1;
}

static void source_failure_before_the_first_chunk(void **state) {
    fx *x = *state;
    const char *rcpts[] = {"alice@x", "bob@x"};
    int pipelining;

    for (pipelining = 0; pipelining < 2; pipelining++) {
        fake_config c;
        fake_lmtp *f;
        lmtp_t *h;
        int calls = 0;
        size_t mark, n;

        chunking_config(&c);
        c.pipelining = pipelining;
        f = fx_fake(x, &c);
        h = connect_chunk_size(x, f, 500);
        assert_ok(h, lmtp_noop(h));
        mark = transcript_len(f);
        assert_status(h, lmtp_deliver_stream(h, "s@x", rcpts, 2, refusing_read, &calls, NULL, NULL), LMTP_ERR_ABORTED);
        assert_int_equal(calls, 1);
        assert_int_equal(lmtp_is_connected(h), 0);
        assert_int_equal(lmtp_result_count(h), 2);
        assert_int_equal(lmtp_result_status(h, 0), LMTP_RESULT_UNKNOWN);
        assert_int_equal(lmtp_result_status(h, 1), LMTP_RESULT_UNKNOWN);
        assert_true(fake_wait_idle(f, 1, 2000));
        fake_transcript(f, &n);
        assert_int_equal(n, mark);  /* nothing after the NOOP */
        assert_int_equal(fake_message_count(f), 0);
    }
}

/* The server answers BDAT LAST for only one of two recipients, then closes: the first has its
   verdict, the second is UNKNOWN, the call says the session broke. */
static void connection_lost_after_bdat_last(void **state) {
    fx *x = *state;
    fake_config c;
    fake_lmtp *f;
    lmtp_t *h;
    const char *rcpts[] = {"alice@x", "bob@x"};
    int st;

    chunking_config(&c);
    c.fault_on = ".";
    c.fault_reply = "250 2.0.0 <alice@x> Saved\r\n";
    c.fault_action = FAKE_CLOSE;
    f = fx_fake(x, &c);
    h = fx_connect(x, f, NULL);
    st = lmtp_deliver(h, "s@x", rcpts, 2, "m\n", 2, NULL, NULL);
    assert_true(st == LMTP_ERR_CLOSED || st == LMTP_ERR_IO);
    assert_int_equal(lmtp_is_connected(h), 0);
    assert_result(h, 0, "alice@x", LMTP_RESULT_OK, LMTP_STAGE_DATA, 250, "2.0.0", "<alice@x> Saved", 250, NULL);
    assert_result(h, 1, "bob@x", LMTP_RESULT_UNKNOWN, LMTP_STAGE_NONE, 0, "", "", 250, NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(small_message_in_one_round_trip, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(same_message_whichever_transfer, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(transfer_choice, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(canonical_body_is_sent_untouched, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(no_accepted_recipient, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(no_accepted_recipient_several_chunks, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(empty_message_goes_by_data, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(first_chunk_refused, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(second_chunk_refused, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(last_chunk_refused, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(step_by_step_bdat, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(step_by_step_bdat_without_recipients, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(lockstep_chunks_without_pipelining, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(fifty_megabytes_in_bounded_memory, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(small_reads_fill_whole_chunks, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(source_failure_in_the_middle, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(source_failure_before_the_first_chunk, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(connection_lost_after_bdat_last, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests_name("capi_bdat", tests, NULL, NULL);
}
