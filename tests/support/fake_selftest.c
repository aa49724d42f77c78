/* fake_selftest.c - checks the fake LMTP server with a small hand-written C client.
 *
 * Every test starts a server with fake_start(), talks to it over a real socket and asserts the
 * exact replies, the transcript, the decoded messages and the counters. Exit status 0 = all good.
 */
#define _POSIX_C_SOURCE 200809L

#include "fake_lmtp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int failures;
static int checks;

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        ++checks;                                                                        \
        if (!(cond)) {                                                                   \
            ++failures;                                                                  \
            fprintf(stderr, "%s:%d: %s: CHECK failed: %s\n", __FILE__, __LINE__, __func__, #cond); \
        }                                                                                \
    } while (0)

/* Fatal for the current test: no point going on. */
#define REQUIRE(cond)                                                                    \
    do {                                                                                 \
        ++checks;                                                                        \
        if (!(cond)) {                                                                   \
            ++failures;                                                                  \
            fprintf(stderr, "%s:%d: %s: REQUIRE failed: %s\n", __FILE__, __LINE__, __func__, #cond); \
            return;                                                                      \
        }                                                                                \
    } while (0)

#define CHECK_STR(got, want) CHECK_STR_(got, want, __LINE__)
static void CHECK_STR_(const char *got, const char *want, int line) {
    ++checks;
    if (!got || strcmp(got, want) != 0) {
        ++failures;
        fprintf(stderr, "%s:%d: got  \"%s\"\n%s:%d: want \"%s\"\n", __FILE__, line, got ? got : "(null)",
                __FILE__, line, want);
    }
}

static long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms) {
    struct timespec ts;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    nanosleep(&ts, NULL);
}

/* ---- a tiny client ---------------------------------------------------------------------- */

typedef struct client {
    int fd;
    char buf[65536];
    size_t len;
    int reads; /* recv() calls that returned data */
} client;

static int cl_connect(client *c, fake_lmtp *f) {
    const char *host = fake_host(f);
    memset(c, 0, sizeof *c);
    c->fd = -1;
    if (host[0] == '/') {
        struct sockaddr_un a;
        memset(&a, 0, sizeof a);
        a.sun_family = AF_UNIX;
        strncpy(a.sun_path, host, sizeof a.sun_path - 1);
        c->fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&a, sizeof a) != 0) return -1;
    } else if (strchr(host, ':')) {
        struct sockaddr_in6 a;
        memset(&a, 0, sizeof a);
        a.sin6_family = AF_INET6;
        a.sin6_port = htons((unsigned short)fake_port(f));
        inet_pton(AF_INET6, host, &a.sin6_addr);
        c->fd = socket(AF_INET6, SOCK_STREAM, 0);
        if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&a, sizeof a) != 0) return -1;
    } else {
        struct sockaddr_in a;
        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_port = htons((unsigned short)fake_port(f));
        inet_pton(AF_INET, host, &a.sin_addr);
        c->fd = socket(AF_INET, SOCK_STREAM, 0);
        if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&a, sizeof a) != 0) return -1;
    }
    return 0;
}

static void cl_close(client *c) {
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
}

static int cl_send_n(client *c, const char *s, size_t n) {
    while (n > 0) {
        ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);
        if (w <= 0) return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

static int cl_send(client *c, const char *s) { return cl_send_n(c, s, strlen(s)); }

/* Read more into the buffer. >0 bytes, 0 EOF, -1 timeout, -2 error (errno set). */
static int cl_fill(client *c, int timeout_ms) {
    struct pollfd p;
    ssize_t n;
    p.fd = c->fd;
    p.events = POLLIN;
    p.revents = 0;
    if (c->len >= sizeof c->buf - 1) return -2;
    if (poll(&p, 1, timeout_ms) <= 0) return -1;
    n = recv(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len, 0);
    if (n < 0) return -2;
    if (n == 0) return 0;
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    c->reads++;
    return (int)n;
}

/* One complete (possibly multi-line) reply into out (NUL-terminated); returns its code,
   0 on EOF, -1 on timeout or error. */
static int cl_reply(client *c, char *out, size_t cap, int timeout_ms) {
    size_t scan = 0;
    long deadline = now_ms() + timeout_ms;
    out[0] = '\0';
    for (;;) {
        /* Look for a complete last line: "ddd " ... CRLF. */
        while (scan < c->len) {
            char *nl = memchr(c->buf + scan, '\n', c->len - scan);
            size_t line_len;
            if (!nl) break;
            line_len = (size_t)(nl - (c->buf + scan)) + 1;
            if (line_len >= 4 && c->buf[scan + 3] != '-') {
                size_t total = scan + line_len;
                int code = atoi(c->buf);
                size_t copy = total < cap - 1 ? total : cap - 1;
                memcpy(out, c->buf, copy);
                out[copy] = '\0';
                memmove(c->buf, c->buf + total, c->len - total);
                c->len -= total;
                c->buf[c->len] = '\0';
                return code > 0 ? code : -1;
            }
            scan += line_len;
        }
        {
            long left = deadline - now_ms();
            int r;
            if (left <= 0) return -1;
            r = cl_fill(c, (int)left);
            if (r == 0) return 0;
            if (r < 0) return -1;
        }
    }
}

/* Expect one reply equal to want. */
#define EXPECT_REPLY(c, want)                                                            \
    do {                                                                                 \
        char got_[8192];                                                                 \
        cl_reply((c), got_, sizeof got_, 3000);                                          \
        CHECK_STR_(got_, (want), __LINE__);                                              \
    } while (0)

/* Wait for EOF from the server (1 on EOF, 0 otherwise). */
static int cl_eof(client *c, int timeout_ms) {
    long deadline = now_ms() + timeout_ms;
    for (;;) {
        long left = deadline - now_ms();
        int r;
        if (left <= 0) return 0;
        c->len = 0;
        r = cl_fill(c, (int)left);
        if (r == 0) return 1;
        if (r < 0) return 0;
    }
}

static fake_lmtp *start(const fake_config *cfg) {
    fake_lmtp *f = fake_start(cfg);
    if (!f) fprintf(stderr, "fake_start failed: %s\n", fake_start_error());
    return f;
}

/* ---- tests ------------------------------------------------------------------------------ */

static const char *kRules = "alice@x=250,250;full@x=250,552;temp@x=250,452;nosuch@x=550";

static void test_pipelined_transaction(void) {
    fake_config cfg;
    fake_lmtp *f;
    client c;
    size_t len;
    const char *t, *m;
    char expected[4096];
    const char *lhlo = "LHLO client.example\r\n";
    const char *batch =
        "MAIL FROM:<sender@x> BODY=8BITMIME\r\n"
        "RCPT TO:<alice@x>\r\n"
        "RCPT TO:<full@x>\r\n"
        "RCPT TO:<nosuch@x>\r\n"
        "RCPT TO:<temp@x>\r\n"
        "RCPT TO:<ALICE@x>\r\n"
        "DATA\r\n";
    const char *body =
        "Subject: dots\r\n"
        "\r\n"
        "..leading dot\r\n"
        "..\r\n"
        "...\r\n"
        "a.b\r\n"
        ".\r\n";
    const char *quit = "QUIT\r\n";

    fake_config_init(&cfg);
    cfg.rules = kRules;
    cfg.size = 1000000;
    cfg.extra_caps = "DSN\nSMTPUTF8";
    f = start(&cfg);
    REQUIRE(f != NULL);
    REQUIRE(cl_connect(&c, f) == 0);

    EXPECT_REPLY(&c, "220 fake.example LMTP ready\r\n");
    cl_send(&c, lhlo);
    EXPECT_REPLY(&c,
                 "250-fake.example\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n"
                 "250-SIZE 1000000\r\n250-DSN\r\n250 SMTPUTF8\r\n");
    cl_send(&c, batch); /* one write: the server must answer with one flush */
    EXPECT_REPLY(&c, "250 2.1.0 OK\r\n");
    EXPECT_REPLY(&c, "250 2.1.5 <alice@x> OK\r\n");
    EXPECT_REPLY(&c, "250 2.1.5 <full@x> OK\r\n");
    EXPECT_REPLY(&c, "550 5.1.1 <nosuch@x> User doesn't exist\r\n");
    EXPECT_REPLY(&c, "250 2.1.5 <temp@x> OK\r\n");
    EXPECT_REPLY(&c, "250 2.1.5 <ALICE@x> OK\r\n");
    EXPECT_REPLY(&c, "354 go ahead\r\n");
    cl_send(&c, body);
    /* one reply per accepted recipient, in RCPT order, the duplicate included */
    EXPECT_REPLY(&c, "250 2.0.0 <alice@x> Saved\r\n");
    EXPECT_REPLY(&c, "552 5.2.2 <full@x> Quota exceeded\r\n");
    EXPECT_REPLY(&c, "452 4.2.2 <temp@x> Mailbox is full, try again later\r\n");
    EXPECT_REPLY(&c, "250 2.0.0 <ALICE@x> Saved\r\n");
    cl_send(&c, quit);
    EXPECT_REPLY(&c, "221 2.0.0 fake.example closing connection\r\n");
    CHECK(cl_eof(&c, 2000));
    cl_close(&c);
    CHECK(fake_wait_idle(f, 1, 2000) == 1);

    CHECK(fake_message_count(f) == 1);
    m = fake_message(f, 0, &len);
    CHECK_STR(m, "Subject: dots\r\n\r\n.leading dot\r\n.\r\n..\r\na.b\r\n");
    CHECK(fake_message(f, 1, &len) == NULL);

    snprintf(expected, sizeof expected, "%s%s%s%s", lhlo, batch, body, quit);
    t = fake_transcript(f, &len);
    CHECK(len == strlen(expected));
    CHECK_STR(t, expected);
    t = fake_sent(f, &len);
    CHECK(strncmp(t, "220 fake.example LMTP ready\r\n250-fake.example\r\n", 46) == 0);
    /* greeting, LHLO, the MAIL..DATA batch, the body, QUIT */
    CHECK(fake_flushes(f) == 5);
    CHECK(fake_lockstep_violations(f) == 0);
    CHECK(fake_connections(f) == 1);
    fake_stop(f);
}

/* The body arrives cut at every awkward place: the decoder must keep its state across reads. */
static void test_body_split(void) {
    static const char *pieces[] = {"line one\r", "\n.", ".two\r\n.", "\rx\r\n", "end\r\n", ".", "\r", "\n"};
    fake_lmtp *f = start(NULL);
    client c;
    size_t i, len;
    const char *m;
    REQUIRE(f != NULL);
    REQUIRE(cl_connect(&c, f) == 0);
    EXPECT_REPLY(&c, "220 fake.example LMTP ready\r\n");
    cl_send(&c, "LHLO a\r\n");
    EXPECT_REPLY(&c, "250-fake.example\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250 8BITMIME\r\n");
    cl_send(&c, "MAIL FROM:<>\r\nRCPT TO:<bob@y>\r\nDATA\r\n");
    EXPECT_REPLY(&c, "250 2.1.0 OK\r\n");
    EXPECT_REPLY(&c, "250 2.1.5 <bob@y> OK\r\n");
    EXPECT_REPLY(&c, "354 go ahead\r\n");
    for (i = 0; i < sizeof pieces / sizeof pieces[0]; ++i) {
        cl_send(&c, pieces[i]);
        sleep_ms(15);
    }
    EXPECT_REPLY(&c, "250 2.0.0 <bob@y> Saved\r\n");
    /* An empty message: "." right after 354. And a body whose final line lacks nothing. */
    cl_send(&c, "MAIL FROM:<a@b>\r\nRCPT TO:<bob@y>\r\nDATA\r\n");
    EXPECT_REPLY(&c, "250 2.1.0 OK\r\n");
    EXPECT_REPLY(&c, "250 2.1.5 <bob@y> OK\r\n");
    EXPECT_REPLY(&c, "354 go ahead\r\n");
    cl_send(&c, ".\r\n");
    EXPECT_REPLY(&c, "250 2.0.0 <bob@y> Saved\r\n");
    /* A bare LF does not start a line: "\n.\r\n" is not the end. */
    cl_send(&c, "MAIL FROM:<a@b>\r\nRCPT TO:<bob@y>\r\nDATA\r\n");
    EXPECT_REPLY(&c, "250 2.1.0 OK\r\n");
    EXPECT_REPLY(&c, "250 2.1.5 <bob@y> OK\r\n");
    EXPECT_REPLY(&c, "354 go ahead\r\n");
    cl_send(&c, "a\n.\r\nb\r\n.\r\n");
    EXPECT_REPLY(&c, "250 2.0.0 <bob@y> Saved\r\n");
    cl_close(&c);
    CHECK(fake_wait_idle(f, 1, 2000) == 1);
    REQUIRE(fake_message_count(f) == 3);
    m = fake_message(f, 0, &len);
    /* ".\rx" is not the end: the dot is dropped (it starts a line), the CR kept */
    CHECK_STR(m, "line one\r\n.two\r\n\rx\r\nend\r\n");
    m = fake_message(f, 1, &len);
    CHECK(len == 0 && m && m[0] == '\0');
    m = fake_message(f, 2, &len);
    CHECK_STR(m, "a\n.\r\nb\r\n");
    fake_stop(f);
}

static void test_errors(void) {
    fake_config cfg;
    fake_lmtp *f;
    client c;
    char line[1600];
    fake_config_init(&cfg);
    cfg.size = 100;
    f = start(&cfg);
    REQUIRE(f != NULL);
    REQUIRE(cl_connect(&c, f) == 0);
    EXPECT_REPLY(&c, "220 fake.example LMTP ready\r\n");
    cl_send(&c, "MAIL FROM:<a@b>\r\n");
    EXPECT_REPLY(&c, "503 5.5.1 LHLO first\r\n");
    cl_send(&c, "EHLO a\r\n");
    EXPECT_REPLY(&c, "500 5.5.1 Use LHLO\r\n");
    cl_send(&c, "HELO a\r\n");
    EXPECT_REPLY(&c, "500 5.5.1 Use LHLO\r\n");
    cl_send(&c, "LHLO\r\n");
    EXPECT_REPLY(&c, "501 5.5.4 Syntax: LHLO hostname\r\n");
    cl_send(&c, "lhlo a\r\n");
    EXPECT_REPLY(&c, "250-fake.example\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n"
                     "250 SIZE 100\r\n");
    cl_send(&c, "RCPT TO:<a@b>\r\n");
    EXPECT_REPLY(&c, "503 5.5.1 MAIL needed first\r\n");
    cl_send(&c, "DATA\r\n");
    EXPECT_REPLY(&c, "503 5.5.1 MAIL needed first\r\n");
    cl_send(&c, "MAIL FROM: <a@b>\r\n");
    EXPECT_REPLY(&c, "501 5.5.4 Syntax: MAIL FROM:<address> [parameters]\r\n");
    cl_send(&c, "MAIL FROM:<a@b> RET=FULL\r\n"); /* DSN not advertised */
    EXPECT_REPLY(&c, "555 5.5.4 Unsupported parameter RET\r\n");
    cl_send(&c, "MAIL FROM:<a@b> SIZE=101\r\n");
    EXPECT_REPLY(&c, "552 5.3.4 Message size exceeds fixed maximum message size\r\n");
    cl_send(&c, "MAIL FROM:<\xc3\xa9@b>\r\n");
    EXPECT_REPLY(&c, "553 5.6.7 Non-ASCII address needs SMTPUTF8\r\n");
    cl_send(&c, "mail FROM:<a@b> SIZE=50\r\n");
    EXPECT_REPLY(&c, "250 2.1.0 OK\r\n");
    cl_send(&c, "MAIL FROM:<a@b>\r\n");
    EXPECT_REPLY(&c, "503 5.5.1 MAIL already given\r\n");
    cl_send(&c, "DATA\r\n");
    EXPECT_REPLY(&c, "503 5.5.1 No valid recipients\r\n");
    cl_send(&c, "RCPT TO:<>\r\n");
    EXPECT_REPLY(&c, "501 5.1.3 Empty recipient\r\n");
    cl_send(&c, "RCPT TO:<a@b> NOTIFY=NEVER\r\n");
    EXPECT_REPLY(&c, "555 5.5.4 Unsupported parameter NOTIFY\r\n");
    cl_send(&c, "rcpt to:<a@b>\r\n");
    EXPECT_REPLY(&c, "250 2.1.5 <a@b> OK\r\n");
    cl_send(&c, "DATA\r\n");
    EXPECT_REPLY(&c, "354 go ahead\r\n");
    memset(line, 'z', 150);
    memcpy(line + 150, "\r\n.\r\n", 6);
    cl_send(&c, line); /* 152 bytes > SIZE 100 */
    EXPECT_REPLY(&c, "552 5.3.4 <a@b> Message too big\r\n");
    cl_send(&c, "VRFY x\r\n");
    EXPECT_REPLY(&c, "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery\r\n");
    cl_send(&c, "EXPN list\r\n");
    EXPECT_REPLY(&c, "250-2.1.5 alpha <alpha@fake.example>\r\n250-2.1.5 beta <beta@fake.example>\r\n"
                     "250 2.1.5 gamma <gamma@fake.example>\r\n");
    cl_send(&c, "HELP\r\n");
    EXPECT_REPLY(&c, "214-2.0.0 fake LMTP server, commands:\r\n"
                     "214-2.0.0 LHLO MAIL RCPT DATA BDAT RSET NOOP VRFY EXPN HELP ETRN QUIT\r\n"
                     "214 2.0.0 End of HELP\r\n");
    cl_send(&c, "ETRN x\r\nNOOP\r\nRSET\r\nSTARTTLS\r\nFOO bar\r\n\r\n");
    EXPECT_REPLY(&c, "250 2.0.0 Queuing started\r\n");
    EXPECT_REPLY(&c, "250 2.0.0 OK\r\n");
    EXPECT_REPLY(&c, "250 2.0.0 OK\r\n");
    EXPECT_REPLY(&c, "502 5.5.1 Not implemented\r\n");
    EXPECT_REPLY(&c, "500 5.5.2 Unknown command\r\n");
    EXPECT_REPLY(&c, "500 5.5.2 Syntax error\r\n");
    /* A 1500-byte line, then garbage with NULs and high bytes: answered, never fatal. */
    memset(line, 'A', 1500);
    memcpy(line + 1500, "\r\n", 3);
    cl_send(&c, line);
    EXPECT_REPLY(&c, "500 5.5.2 Line too long\r\n");
    /* exactly 1000 bytes with CRLF is fine (998 + CRLF = 1000) */
    memcpy(line, "NOOP ", 5);
    memset(line + 5, 'a', 993);
    memcpy(line + 998, "\r\n", 3);
    cl_send(&c, line);
    EXPECT_REPLY(&c, "250 2.0.0 OK\r\n");
    memset(line + 5, 'a', 994);
    memcpy(line + 999, "\r\n", 3); /* 1001 bytes */
    cl_send(&c, line);
    EXPECT_REPLY(&c, "500 5.5.2 Line too long\r\n");
    cl_send_n(&c, "\x00\xff\x01garbage\r\n", 12);
    EXPECT_REPLY(&c, "500 5.5.2 Unknown command\r\n");
    cl_send(&c, "QUIT\r\n");
    EXPECT_REPLY(&c, "221 2.0.0 fake.example closing connection\r\n");
    cl_close(&c);
    CHECK(fake_message_count(f) == 1);
    fake_stop(f);
}

static void test_no_enhanced_custom_text(void) {
    fake_config cfg;
    fake_lmtp *f;
    client c;
    fake_config_init(&cfg);
    cfg.enhanced = 0;
    cfg.eightbitmime = 0;
    cfg.pipelining = 0;
    cfg.hostname = "mx.test";
    cfg.rules = "a@x=250:Fine by me,451:first line|second line;b@x=550:5.7.1 go away";
    f = start(&cfg);
    REQUIRE(f != NULL);
    REQUIRE(cl_connect(&c, f) == 0);
    EXPECT_REPLY(&c, "220 mx.test LMTP ready\r\n");
    cl_send(&c, "LHLO a\r\n");
    EXPECT_REPLY(&c, "250 mx.test\r\n");
    cl_send(&c, "MAIL FROM:<s@x>\r\n");
    EXPECT_REPLY(&c, "250 OK\r\n");
    cl_send(&c, "RCPT TO:<a@x>\r\n");
    EXPECT_REPLY(&c, "250 Fine by me\r\n");
    cl_send(&c, "RCPT TO:<b@x>\r\n");
    EXPECT_REPLY(&c, "550 5.7.1 go away\r\n");
    cl_send(&c, "DATA\r\n");
    EXPECT_REPLY(&c, "354 go ahead\r\n");
    cl_send(&c, "hi\r\n.\r\n");
    EXPECT_REPLY(&c, "451-first line\r\n451 second line\r\n");
    cl_close(&c);
    CHECK(fake_wait_idle(f, 1, 2000) == 1);
    CHECK(fake_lockstep_violations(f) == 0);
    fake_stop(f);

    /* same text with enhanced codes on: the derived code goes on every line */
    fake_config_init(&cfg);
    cfg.rules = "a@x=250,451:first line|second line";
    f = start(&cfg);
    REQUIRE(f != NULL);
    REQUIRE(cl_connect(&c, f) == 0);
    EXPECT_REPLY(&c, "220 fake.example LMTP ready\r\n");
    cl_send(&c, "LHLO a\r\n");
    EXPECT_REPLY(&c, "250-fake.example\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250 8BITMIME\r\n");
    cl_send(&c, "MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nDATA\r\n");
    EXPECT_REPLY(&c, "250 2.1.0 OK\r\n");
    EXPECT_REPLY(&c, "250 2.1.5 <a@x> OK\r\n");
    EXPECT_REPLY(&c, "354 go ahead\r\n");
    cl_send(&c, "hi\r\n.\r\n");
    EXPECT_REPLY(&c, "451-4.3.0 first line\r\n451 4.3.0 second line\r\n");
    cl_close(&c);
    fake_stop(f);

    /* bad rules are refused with a reason */
    fake_config_init(&cfg);
    cfg.rules = "a@x=25";
    CHECK(fake_start(&cfg) == NULL);
    CHECK(strstr(fake_start_error(), "bad rule") != NULL);
    fake_config_init(&cfg);
    cfg.fault_action = 42;
    CHECK(fake_start(&cfg) == NULL);
}

static void test_lockstep(void) {
    fake_config cfg;
    fake_lmtp *f;
    client c;
    fake_config_init(&cfg);
    cfg.pipelining = 0;
    cfg.reply_delay_ms = 30;
    f = start(&cfg);
    REQUIRE(f != NULL);

    /* a client that waits for every reply: no violation */
    REQUIRE(cl_connect(&c, f) == 0);
    EXPECT_REPLY(&c, "220 fake.example LMTP ready\r\n");
    cl_send(&c, "LHLO a\r\n");
    EXPECT_REPLY(&c, "250-fake.example\r\n250-ENHANCEDSTATUSCODES\r\n250 8BITMIME\r\n");
    cl_send(&c, "MAIL FROM:<a@b>\r\n");
    EXPECT_REPLY(&c, "250 2.1.0 OK\r\n");
    cl_send(&c, "RCPT TO:<c@d>\r\n");
    EXPECT_REPLY(&c, "250 2.1.5 <c@d> OK\r\n");
    cl_send(&c, "DATA\r\n");
    EXPECT_REPLY(&c, "354 go ahead\r\n");
    cl_send(&c, "x\r\n.\r\n");
    EXPECT_REPLY(&c, "250 2.0.0 <c@d> Saved\r\n");
    cl_send(&c, "QUIT\r\n");
    EXPECT_REPLY(&c, "221 2.0.0 fake.example closing connection\r\n");
    cl_close(&c);
    CHECK(fake_wait_idle(f, 1, 2000) == 1);
    CHECK(fake_lockstep_violations(f) == 0);
    CHECK(fake_flushes(f) == 7);

    /* a client that pipelines without PIPELINING: caught in the same read */
    REQUIRE(cl_connect(&c, f) == 0);
    EXPECT_REPLY(&c, "220 fake.example LMTP ready\r\n");
    cl_send(&c, "LHLO a\r\n");
    EXPECT_REPLY(&c, "250-fake.example\r\n250-ENHANCEDSTATUSCODES\r\n250 8BITMIME\r\n");
    cl_send(&c, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n");
    EXPECT_REPLY(&c, "250 2.1.0 OK\r\n");
    EXPECT_REPLY(&c, "250 2.1.5 <c@d> OK\r\n");
    CHECK(fake_lockstep_violations(f) == 1);
    /* ... or during the reply delay */
    cl_send(&c, "RSET\r\n");
    sleep_ms(5);
    cl_send(&c, "NOOP\r\n");
    EXPECT_REPLY(&c, "250 2.0.0 OK\r\n");
    EXPECT_REPLY(&c, "250 2.0.0 OK\r\n");
    CHECK(fake_lockstep_violations(f) == 2);
    cl_close(&c);
    CHECK(fake_wait_idle(f, 2, 2000) == 1);
    fake_stop(f);

    /* with PIPELINING: a batch is fine, but not bytes after DATA before 354 */
    fake_config_init(&cfg);
    f = start(&cfg);
    REQUIRE(f != NULL);
    REQUIRE(cl_connect(&c, f) == 0);
    EXPECT_REPLY(&c, "220 fake.example LMTP ready\r\n");
    cl_send(&c, "LHLO a\r\n");
    EXPECT_REPLY(&c, "250-fake.example\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250 8BITMIME\r\n");
    cl_send(&c, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nDATA\r\n");
    EXPECT_REPLY(&c, "250 2.1.0 OK\r\n");
    EXPECT_REPLY(&c, "250 2.1.5 <c@d> OK\r\n");
    EXPECT_REPLY(&c, "250 2.1.5 <e@f> OK\r\n");
    EXPECT_REPLY(&c, "354 go ahead\r\n");
    CHECK(fake_lockstep_violations(f) == 0);
    cl_send(&c, "x\r\n.\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\ny\r\n.\r\nQUIT\r\n");
    EXPECT_REPLY(&c, "250 2.0.0 <c@d> Saved\r\n");
    EXPECT_REPLY(&c, "250 2.0.0 <e@f> Saved\r\n");
    EXPECT_REPLY(&c, "250 2.1.0 OK\r\n");
    EXPECT_REPLY(&c, "250 2.1.5 <c@d> OK\r\n");
    EXPECT_REPLY(&c, "354 go ahead\r\n");
    EXPECT_REPLY(&c, "250 2.0.0 <c@d> Saved\r\n");
    EXPECT_REPLY(&c, "221 2.0.0 fake.example closing connection\r\n");
    CHECK(fake_lockstep_violations(f) == 1);
    CHECK(fake_message_count(f) == 2);
    cl_close(&c);
    fake_stop(f);
}

static void test_bdat(void) {
    fake_config cfg;
    fake_lmtp *f;
    client c;
    size_t len;
    const char *m;
    fake_config_init(&cfg);
    cfg.extra_caps = "CHUNKING";
    cfg.rules = "b@x=250,554";
    f = start(&cfg);
    REQUIRE(f != NULL);
    REQUIRE(cl_connect(&c, f) == 0);
    EXPECT_REPLY(&c, "220 fake.example LMTP ready\r\n");
    cl_send(&c, "LHLO a\r\n");
    EXPECT_REPLY(&c, "250-fake.example\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n"
                     "250 CHUNKING\r\n");
    /* BDAT without a transaction still swallows its bytes */
    cl_send(&c, "BDAT 6\r\nQUIT\r\n");
    EXPECT_REPLY(&c, "503 5.5.1 MAIL needed first\r\n");
    cl_send(&c, "MAIL FROM:<a@x>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\nBDAT 7\r\n.x\r\nQUI");
    EXPECT_REPLY(&c, "250 2.1.0 OK\r\n");
    EXPECT_REPLY(&c, "250 2.1.5 <a@x> OK\r\n");
    EXPECT_REPLY(&c, "250 2.1.5 <b@x> OK\r\n");
    EXPECT_REPLY(&c, "250 2.0.0 7 octets received\r\n");
    cl_send(&c, "BDAT 3 LAST\r\nT\r\n");
    EXPECT_REPLY(&c, "250 2.0.0 <a@x> Saved\r\n");
    EXPECT_REPLY(&c, "554 5.6.0 <b@x> Message rejected\r\n");
    cl_send(&c, "MAIL FROM:<a@x>\r\nRCPT TO:<a@x>\r\nBDAT 0 LAST\r\n");
    EXPECT_REPLY(&c, "250 2.1.0 OK\r\n");
    EXPECT_REPLY(&c, "250 2.1.5 <a@x> OK\r\n");
    EXPECT_REPLY(&c, "250 2.0.0 <a@x> Saved\r\n");
    cl_close(&c);
    CHECK(fake_wait_idle(f, 1, 2000) == 1);
    REQUIRE(fake_message_count(f) == 2);
    m = fake_message(f, 0, &len);
    CHECK(len == 10 && memcmp(m, ".x\r\nQUIT\r\n", 10) == 0); /* no unstuffing in BDAT */
    m = fake_message(f, 1, &len);
    CHECK(len == 0);
    CHECK(fake_lockstep_violations(f) == 0);
    fake_stop(f);
}

/* A transaction up to the replies to RCPT; used by fault tests. */
static void lhlo(client *c) {
    EXPECT_REPLY(c, "220 fake.example LMTP ready\r\n");
    cl_send(c, "LHLO a\r\n");
    EXPECT_REPLY(c, "250-fake.example\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250 8BITMIME\r\n");
}

static void test_fault_banner(void) {
    fake_config cfg;
    fake_lmtp *f;
    client c;
    char buf[256];
    long t0;

    /* no banner at all, and fake_stop is prompt with the client still connected */
    fake_config_init(&cfg);
    cfg.fault_on = "";
    cfg.fault_action = FAKE_HANG;
    f = start(&cfg);
    REQUIRE(f != NULL);
    REQUIRE(cl_connect(&c, f) == 0);
    CHECK(cl_reply(&c, buf, sizeof buf, 300) == -1);
    CHECK(c.len == 0);
    cl_send(&c, "LHLO impatient\r\n");
    sleep_ms(50);
    t0 = now_ms();
    fake_stop(f);
    CHECK(now_ms() - t0 < 1000);
    CHECK(cl_eof(&c, 1000));
    cl_close(&c);

    /* 421 banner, then close */
    fake_config_init(&cfg);
    cfg.fault_on = "";
    cfg.fault_reply = "421 4.3.2 go away\r\n";
    cfg.fault_action = FAKE_CLOSE;
    f = start(&cfg);
    REQUIRE(f != NULL);
    REQUIRE(cl_connect(&c, f) == 0);
    EXPECT_REPLY(&c, "421 4.3.2 go away\r\n");
    CHECK(cl_eof(&c, 2000));
    cl_close(&c);
    CHECK(fake_wait_idle(f, 1, 2000) == 1);
    fake_stop(f);

    /* a 554 banner only on the first connection (fault_times), then normal */
    fake_config_init(&cfg);
    cfg.fault_on = "";
    cfg.fault_reply = "554 5.3.2 not now\r\n";
    cfg.fault_action = FAKE_CLOSE;
    cfg.fault_times = 1;
    f = start(&cfg);
    REQUIRE(f != NULL);
    REQUIRE(cl_connect(&c, f) == 0);
    EXPECT_REPLY(&c, "554 5.3.2 not now\r\n");
    CHECK(cl_eof(&c, 2000));
    cl_close(&c);
    REQUIRE(cl_connect(&c, f) == 0);
    lhlo(&c);
    cl_close(&c);
    CHECK(fake_wait_idle(f, 2, 2000) == 1);
    CHECK(fake_connections(f) == 2);
    fake_stop(f);
}

static void test_fault_garbage_and_extra(void) {
    fake_config cfg;
    fake_lmtp *f;
    client c;

    /* garbage instead of the reply to MAIL; MAIL is not executed */
    fake_config_init(&cfg);
    cfg.fault_on = "mail from:";
    cfg.fault_reply = "hello\r\n";
    f = start(&cfg);
    REQUIRE(f != NULL);
    REQUIRE(cl_connect(&c, f) == 0);
    lhlo(&c);
    cl_send(&c, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n");
    c.len = 0;
    c.buf[0] = '\0';
    {
        long deadline = now_ms() + 2000;
        while (strstr(c.buf, "503") == NULL && now_ms() < deadline) cl_fill(&c, 100);
    }
    CHECK_STR(c.buf, "hello\r\n503 5.5.1 MAIL needed first\r\n");
    cl_close(&c);
    fake_stop(f);

    /* extra replies after the per-recipient replies (fault_keep) */
    fake_config_init(&cfg);
    cfg.fault_on = ".";
    cfg.fault_reply = "250 2.0.0 <ghost@x> Saved\r\n";
    cfg.fault_keep = 1;
    f = start(&cfg);
    REQUIRE(f != NULL);
    REQUIRE(cl_connect(&c, f) == 0);
    lhlo(&c);
    cl_send(&c, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
    EXPECT_REPLY(&c, "250 2.1.0 OK\r\n");
    EXPECT_REPLY(&c, "250 2.1.5 <c@d> OK\r\n");
    EXPECT_REPLY(&c, "354 go ahead\r\n");
    cl_send(&c, "x\r\n.\r\n");
    EXPECT_REPLY(&c, "250 2.0.0 <c@d> Saved\r\n");
    EXPECT_REPLY(&c, "250 2.0.0 <ghost@x> Saved\r\n");
    cl_close(&c);
    fake_stop(f);

    /* fault_skip + fault_times: only the second RCPT fails */
    fake_config_init(&cfg);
    cfg.fault_on = "RCPT";
    cfg.fault_reply = "451 4.3.0 try later\r\n";
    cfg.fault_skip = 1;
    cfg.fault_times = 1;
    f = start(&cfg);
    REQUIRE(f != NULL);
    REQUIRE(cl_connect(&c, f) == 0);
    lhlo(&c);
    cl_send(&c, "MAIL FROM:<a@b>\r\nRCPT TO:<r1@x>\r\nRCPT TO:<r2@x>\r\nRCPT TO:<r3@x>\r\nDATA\r\n");
    EXPECT_REPLY(&c, "250 2.1.0 OK\r\n");
    EXPECT_REPLY(&c, "250 2.1.5 <r1@x> OK\r\n");
    EXPECT_REPLY(&c, "451 4.3.0 try later\r\n");
    EXPECT_REPLY(&c, "250 2.1.5 <r3@x> OK\r\n");
    EXPECT_REPLY(&c, "354 go ahead\r\n");
    cl_send(&c, ".\r\n");
    EXPECT_REPLY(&c, "250 2.0.0 <r1@x> Saved\r\n");
    EXPECT_REPLY(&c, "250 2.0.0 <r3@x> Saved\r\n");
    cl_close(&c);
    fake_stop(f);
}

static void test_fault_oversized(void) {
    fake_config cfg;
    fake_lmtp *f;
    client c;
    size_t total = 0, i;
    int ok = 1;
    char buf[65536];
    long t0;

    /* one 1 MiB reply line, then close */
    fake_config_init(&cfg);
    cfg.fault_on = "LHLO";
    cfg.fault_reply = "250 ";
    cfg.fault_fill = "x";
    cfg.fault_repeat = 1L << 20;
    cfg.fault_tail = "\r\n";
    cfg.fault_action = FAKE_CLOSE;
    f = start(&cfg);
    REQUIRE(f != NULL);
    REQUIRE(cl_connect(&c, f) == 0);
    EXPECT_REPLY(&c, "220 fake.example LMTP ready\r\n");
    cl_send(&c, "LHLO a\r\n");
    for (;;) {
        ssize_t n = recv(c.fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        for (i = 0; i < (size_t)n; ++i) {
            size_t at = total + i;
            char want = at < 4 ? "250 "[at] : at < 4 + (1u << 20) ? 'x' : at == 4 + (1u << 20) ? '\r' : '\n';
            if (buf[i] != want) ok = 0;
        }
        total += (size_t)n;
    }
    CHECK(ok);
    CHECK(total == 4 + (1u << 20) + 2);
    cl_close(&c);
    fake_stop(f);

    /* an endless multi-line reply: the client reads 4 MiB and hangs up; then a client that stops
       reading; fake_stop must still be prompt */
    fake_config_init(&cfg);
    cfg.fault_on = "LHLO";
    cfg.fault_fill = "250-more\r\n";
    cfg.fault_repeat = -1;
    f = start(&cfg);
    REQUIRE(f != NULL);
    REQUIRE(cl_connect(&c, f) == 0);
    EXPECT_REPLY(&c, "220 fake.example LMTP ready\r\n");
    cl_send(&c, "LHLO a\r\n");
    total = 0;
    ok = 1;
    while (total < 4u << 20) {
        ssize_t n = recv(c.fd, buf, sizeof buf, 0);
        if (n <= 0) {
            ok = 0;
            break;
        }
        for (i = 0; i < (size_t)n; ++i)
            if (buf[i] != "250-more\r\n"[(total + i) % 10]) ok = 0;
        total += (size_t)n;
    }
    CHECK(ok);
    cl_close(&c);
    REQUIRE(cl_connect(&c, f) == 0);
    EXPECT_REPLY(&c, "220 fake.example LMTP ready\r\n");
    cl_send(&c, "LHLO a\r\n");
    sleep_ms(100); /* the server fills the socket buffers and blocks */
    t0 = now_ms();
    fake_stop(f);
    CHECK(now_ms() - t0 < 1000);
    cl_close(&c);
}

static void test_fault_mid_transaction(void) {
    fake_config cfg;
    fake_lmtp *f;
    client c;
    char buf[256];
    size_t len;

    /* close at DATA, without a reply */
    fake_config_init(&cfg);
    cfg.fault_on = "DATA";
    cfg.fault_action = FAKE_CLOSE;
    f = start(&cfg);
    REQUIRE(f != NULL);
    REQUIRE(cl_connect(&c, f) == 0);
    lhlo(&c);
    cl_send(&c, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
    EXPECT_REPLY(&c, "250 2.1.0 OK\r\n");
    EXPECT_REPLY(&c, "250 2.1.5 <c@d> OK\r\n");
    CHECK(cl_reply(&c, buf, sizeof buf, 2000) == 0); /* EOF */
    cl_close(&c);
    CHECK(fake_wait_idle(f, 1, 2000) == 1);
    CHECK(fake_message_count(f) == 0);
    fake_stop(f);

    /* fewer replies than recipients after the final dot, then silence */
    fake_config_init(&cfg);
    cfg.fault_on = ".";
    cfg.fault_reply = "250 2.0.0 <r1@x> Saved\r\n";
    cfg.fault_action = FAKE_HANG;
    f = start(&cfg);
    REQUIRE(f != NULL);
    REQUIRE(cl_connect(&c, f) == 0);
    lhlo(&c);
    cl_send(&c, "MAIL FROM:<a@b>\r\nRCPT TO:<r1@x>\r\nRCPT TO:<r2@x>\r\nDATA\r\n");
    EXPECT_REPLY(&c, "250 2.1.0 OK\r\n");
    EXPECT_REPLY(&c, "250 2.1.5 <r1@x> OK\r\n");
    EXPECT_REPLY(&c, "250 2.1.5 <r2@x> OK\r\n");
    EXPECT_REPLY(&c, "354 go ahead\r\n");
    cl_send(&c, "body\r\n.\r\n");
    EXPECT_REPLY(&c, "250 2.0.0 <r1@x> Saved\r\n");
    CHECK(cl_reply(&c, buf, sizeof buf, 300) == -1); /* nothing more */
    CHECK(fake_message_count(f) == 1);
    CHECK_STR(fake_message(f, 0, &len), "body\r\n");
    cl_send(&c, "QUIT\r\n"); /* still read and recorded while hanging */
    cl_close(&c);
    CHECK(fake_wait_idle(f, 1, 2000) == 1);
    {
        const char *t = fake_transcript(f, &len);
        CHECK(len > 6 && memcmp(t + len - 6, "QUIT\r\n", 6) == 0);
    }
    fake_stop(f);

    /* RST at RCPT */
    fake_config_init(&cfg);
    cfg.fault_on = "RCPT";
    cfg.fault_action = FAKE_RESET;
    f = start(&cfg);
    REQUIRE(f != NULL);
    REQUIRE(cl_connect(&c, f) == 0);
    lhlo(&c);
    cl_send(&c, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n");
    EXPECT_REPLY(&c, "250 2.1.0 OK\r\n");
    {
        ssize_t n;
        char b[64];
        struct pollfd p;
        p.fd = c.fd;
        p.events = POLLIN;
        poll(&p, 1, 2000);
        n = recv(c.fd, b, sizeof b, 0);
        CHECK(n < 0 && errno == ECONNRESET);
    }
    cl_close(&c);
    fake_stop(f);
}

static void test_fault_stop_reading(void) {
    fake_config cfg;
    fake_lmtp *f;
    client c;
    static char chunk[65536];
    size_t sent = 0;
    int blocked = 0;
    long t0;
    int sndbuf = 16384;

    fake_config_init(&cfg);
    cfg.fault_on = "DATA";
    cfg.fault_reply = "354 go ahead\r\n";
    cfg.fault_action = FAKE_STOP_READING;
    cfg.rcvbuf = 4096;
    f = start(&cfg);
    REQUIRE(f != NULL);
    REQUIRE(cl_connect(&c, f) == 0);
    setsockopt(c.fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    lhlo(&c);
    cl_send(&c, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
    EXPECT_REPLY(&c, "250 2.1.0 OK\r\n");
    EXPECT_REPLY(&c, "250 2.1.5 <c@d> OK\r\n");
    EXPECT_REPLY(&c, "354 go ahead\r\n");
    memset(chunk, 'a', sizeof chunk);
    while (sent < (64u << 20)) {
        ssize_t n = send(c.fd, chunk, sizeof chunk, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0) {
            blocked = errno == EAGAIN || errno == EWOULDBLOCK;
            break;
        }
        sent += (size_t)n;
    }
    CHECK(blocked);
    CHECK(sent < (8u << 20));
    t0 = now_ms();
    fake_stop(f);
    CHECK(now_ms() - t0 < 1000);
    cl_close(&c);
}

static void test_byte_delay(void) {
    fake_config cfg;
    fake_lmtp *f;
    client c;
    fake_config_init(&cfg);
    cfg.byte_delay_ms = 2;
    f = start(&cfg);
    REQUIRE(f != NULL);
    REQUIRE(cl_connect(&c, f) == 0);
    EXPECT_REPLY(&c, "220 fake.example LMTP ready\r\n");
    CHECK(c.reads > 10); /* arrived in pieces */
    cl_send(&c, "QUIT\r\n");
    EXPECT_REPLY(&c, "221 2.0.0 fake.example closing connection\r\n");
    cl_close(&c);
    CHECK(fake_wait_idle(f, 1, 3000) == 1);
    CHECK(fake_flushes(f) == 2);
    fake_stop(f);
}

static void one_message(fake_lmtp *f, const char *rcpt) {
    client c;
    char want[128];
    REQUIRE(cl_connect(&c, f) == 0);
    lhlo(&c);
    snprintf(want, sizeof want, "MAIL FROM:<a@b>\r\nRCPT TO:<%s>\r\nDATA\r\n", rcpt);
    cl_send(&c, want);
    EXPECT_REPLY(&c, "250 2.1.0 OK\r\n");
    snprintf(want, sizeof want, "250 2.1.5 <%s> OK\r\n", rcpt);
    EXPECT_REPLY(&c, want);
    EXPECT_REPLY(&c, "354 go ahead\r\n");
    cl_send(&c, "Subject: hi\r\n\r\nhello\r\n.\r\nQUIT\r\n");
    snprintf(want, sizeof want, "250 2.0.0 <%s> Saved\r\n", rcpt);
    EXPECT_REPLY(&c, want);
    EXPECT_REPLY(&c, "221 2.0.0 fake.example closing connection\r\n");
    CHECK(cl_eof(&c, 2000));
    cl_close(&c);
}

static void test_families(void) {
    fake_config cfg;
    fake_lmtp *f;
    char path[128];
    struct stat st;
    size_t len;

    /* unix socket at a generated path, removed by fake_stop */
    fake_config_init(&cfg);
    cfg.family = AF_UNIX;
    f = start(&cfg);
    REQUIRE(f != NULL);
    CHECK(fake_host(f)[0] == '/');
    CHECK(fake_port(f) == 0);
    snprintf(path, sizeof path, "%s", fake_host(f));
    CHECK(stat(path, &st) == 0 && S_ISSOCK(st.st_mode));
    one_message(f, "u@x");
    CHECK(fake_message_count(f) == 1);
    CHECK_STR(fake_message(f, 0, &len), "Subject: hi\r\n\r\nhello\r\n");
    fake_stop(f);
    CHECK(stat(path, &st) != 0);

    /* unix socket at a given path */
    snprintf(path, sizeof path, "/tmp/fake-selftest-%d.sock", (int)getpid());
    fake_config_init(&cfg);
    cfg.family = AF_UNIX;
    cfg.unix_path = path;
    f = start(&cfg);
    REQUIRE(f != NULL);
    CHECK_STR(fake_host(f), path);
    one_message(f, "u2@x");
    fake_stop(f);
    CHECK(stat(path, &st) != 0);

    /* IPv6 loopback */
    fake_config_init(&cfg);
    cfg.family = AF_INET6;
    f = start(&cfg);
    if (!f) {
        fprintf(stderr, "note: no IPv6 loopback here, skipping the ::1 test\n");
        return;
    }
    CHECK_STR(fake_host(f), "::1");
    CHECK(fake_port(f) != 0);
    one_message(f, "v6@x");
    CHECK(fake_wait_idle(f, 1, 2000) == 1);
    CHECK(fake_message_count(f) == 1);
    CHECK(fake_flushes(f) == 4);
    fake_stop(f);
}

static void test_sequential_and_concurrent(void) {
    fake_lmtp *f = start(NULL);
    client a, b;
    size_t len;
    REQUIRE(f != NULL);
    one_message(f, "one@x");
    one_message(f, "two@x");
    one_message(f, "three@x");
    CHECK(fake_wait_idle(f, 3, 2000) == 1);
    CHECK(fake_connections(f) == 3);
    CHECK(fake_message_count(f) == 3);
    CHECK(fake_flushes(f) == 12);

    /* two connections open at the same time are both served */
    REQUIRE(cl_connect(&a, f) == 0);
    REQUIRE(cl_connect(&b, f) == 0);
    lhlo(&b);
    lhlo(&a);
    cl_send(&a, "NOOP\r\n");
    cl_send(&b, "NOOP\r\n");
    EXPECT_REPLY(&b, "250 2.0.0 OK\r\n");
    EXPECT_REPLY(&a, "250 2.0.0 OK\r\n");
    CHECK(fake_wait_idle(f, 5, 100) == 0); /* both still open */
    cl_close(&a);
    cl_close(&b);
    CHECK(fake_wait_idle(f, 5, 2000) == 1);

    fake_clear(f);
    CHECK(fake_message_count(f) == 0);
    CHECK(fake_flushes(f) == 0);
    CHECK(fake_connections(f) == 0);
    fake_transcript(f, &len);
    CHECK(len == 0);
    one_message(f, "after@x");
    CHECK(fake_message_count(f) == 1);
    fake_stop(f);
    fake_stop(NULL);
}

static void test_record_limit(void) {
    fake_config cfg;
    fake_lmtp *f;
    size_t len;
    fake_config_init(&cfg);
    cfg.record_limit = 10;
    f = start(&cfg);
    REQUIRE(f != NULL);
    one_message(f, "r@x");
    CHECK(fake_wait_idle(f, 1, 2000) == 1);
    fake_transcript(f, &len);
    CHECK(len == 10);
    CHECK_STR(fake_message(f, 0, &len), "Subject: h");
    fake_stop(f);
}

int main(void) {
    test_pipelined_transaction();
    test_body_split();
    test_errors();
    test_no_enhanced_custom_text();
    test_lockstep();
    test_bdat();
    test_fault_banner();
    test_fault_garbage_and_extra();
    test_fault_oversized();
    test_fault_mid_transaction();
    test_fault_stop_reading();
    test_byte_delay();
    test_families();
    test_sequential_and_concurrent();
    test_record_limit();
    printf("fake_selftest: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
