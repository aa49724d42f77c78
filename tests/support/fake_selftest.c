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
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
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
    SSL *ssl; /* after cl_tls(): everything goes through TLS */
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
    if (c->ssl) SSL_free(c->ssl);
    c->ssl = NULL;
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
}

static int cl_send_n(client *c, const char *s, size_t n) {
    while (n > 0 && c->ssl) {
        size_t w = 0;
        if (SSL_write_ex(c->ssl, s, n, &w) != 1) {
            ERR_clear_error();
            return -1;
        }
        s += w;
        n -= w;
    }
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
    if (c->ssl) {
        size_t got = 0;
        if (SSL_pending(c->ssl) <= 0 && poll(&p, 1, timeout_ms) <= 0) return -1;
        if (SSL_read_ex(c->ssl, c->buf + c->len, sizeof c->buf - 1 - c->len, &got) != 1) {
            int e = SSL_get_error(c->ssl, 0);
            ERR_clear_error();
            if (e == SSL_ERROR_WANT_READ) return -1; /* SO_RCVTIMEO, or only part of a record */
            return e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL ? 0 : -2;
        }
        c->len += got;
        c->buf[c->len] = '\0';
        c->reads++;
        return (int)got;
    }
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

/* Wait for an RST from the server (1 if the next read fails with ECONNRESET). */
static int cl_reset(client *c) {
    ssize_t n;
    char b[64];
    struct pollfd p;
    p.fd = c->fd;
    p.events = POLLIN;
    poll(&p, 1, 2000);
    n = recv(c->fd, b, sizeof b, 0);
    return n < 0 && errno == ECONNRESET;
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
    CHECK(cl_reset(&c));
    cl_close(&c);
    fake_stop(f);
}

/* fault_body_bytes: the fault fires in the middle of a message, not at its end. */
static void test_fault_body_bytes(void) {
    fake_config cfg;
    fake_lmtp *f;
    client c;
    char buf[256];
    static char body[4096];

    /* DATA: after 1000 bytes of body, a 421 and close; the rest of the message is never answered */
    fake_config_init(&cfg);
    cfg.fault_on = ".";
    cfg.fault_body_bytes = 1000;
    cfg.fault_reply = "421 4.3.2 enough\r\n";
    cfg.fault_action = FAKE_CLOSE;
    cfg.extra_caps = "CHUNKING";
    f = start(&cfg);
    REQUIRE(f != NULL);
    REQUIRE(cl_connect(&c, f) == 0);
    EXPECT_REPLY(&c, "220 fake.example LMTP ready\r\n");
    cl_send(&c, "LHLO a\r\n");
    EXPECT_REPLY(&c, "250-fake.example\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n"
                     "250 CHUNKING\r\n");
    cl_send(&c, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
    EXPECT_REPLY(&c, "250 2.1.0 OK\r\n");
    EXPECT_REPLY(&c, "250 2.1.5 <c@d> OK\r\n");
    EXPECT_REPLY(&c, "354 go ahead\r\n");
    memset(body, 'b', sizeof body);
    body[sizeof body - 2] = '\r';
    body[sizeof body - 1] = '\n';
    cl_send_n(&c, body, sizeof body);
    EXPECT_REPLY(&c, "421 4.3.2 enough\r\n");
    CHECK(cl_eof(&c, 2000));
    cl_close(&c);
    CHECK(fake_wait_idle(f, 1, 3000) == 1);
    CHECK(fake_message_count(f) == 0);

    /* BDAT: counted over the chunks; the second chunk reaches it: RST, no reply */
    fake_stop(f);
    cfg.fault_reply = NULL;
    cfg.fault_body_bytes = 6000;
    cfg.fault_action = FAKE_RESET;
    f = start(&cfg);
    REQUIRE(f != NULL);
    REQUIRE(cl_connect(&c, f) == 0);
    EXPECT_REPLY(&c, "220 fake.example LMTP ready\r\n");
    cl_send(&c, "LHLO a\r\n");
    cl_reply(&c, buf, sizeof buf, 2000);
    cl_send(&c, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 4096\r\n");
    cl_send_n(&c, body, sizeof body);
    EXPECT_REPLY(&c, "250 2.1.0 OK\r\n");
    EXPECT_REPLY(&c, "250 2.1.5 <c@d> OK\r\n");
    EXPECT_REPLY(&c, "250 2.0.0 4096 octets received\r\n");
    cl_send(&c, "BDAT 4096 LAST\r\n");
    cl_send_n(&c, body, sizeof body);
    CHECK(cl_reset(&c));
    cl_close(&c);
    CHECK(fake_message_count(f) == 0);
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

/* ---- TLS, AUTH, CHUNKING ------------------------------------------------------------------ */

static char g_certs[256]; /* the directory of the test certificates (made by main) */

/* "<g_certs>/<name>", in one of a few rotating buffers. */
static const char *cpath(const char *name) {
    static char bufs[8][512];
    static unsigned next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%s", g_certs, name);
    return b;
}

static X509 *load_cert(const char *name) {
    X509 *x = NULL;
    FILE *fp = fopen(cpath(name), "r");
    if (!fp) return NULL;
    x = PEM_read_X509(fp, NULL, NULL, NULL);
    fclose(fp);
    return x;
}

static EVP_PKEY *load_key(const char *name) {
    EVP_PKEY *k = NULL;
    FILE *fp = fopen(cpath(name), "r");
    if (!fp) return NULL;
    k = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
    fclose(fp);
    return k;
}

/* Verify cert against the CA file ca (chain only, no host): X509_V_OK or the error. */
static int verify_against(X509 *cert, const char *ca) {
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    int err = -1;
    if (store && ctx && X509_STORE_load_file(store, cpath(ca)) == 1 &&
        X509_STORE_CTX_init(ctx, store, cert, NULL) == 1) {
        X509_verify_cert(ctx);
        err = X509_STORE_CTX_get_error(ctx);
    }
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    ERR_clear_error();
    return err;
}

static void cn_of(X509 *x, char *out, int cap) {
    out[0] = '\0';
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, out, cap);
}

static void test_certs(void) {
    static const char *const pairs[] = {"ca", "server", "wrong-name", "expired", "self-signed", "other-ca", "client"};
    X509 *ca, *server, *wrong, *expired, *self, *other, *cl;
    char cn[128];
    size_t i;

    CHECK(fake_make_test_certs(NULL) == -1);
    CHECK(strstr(fake_start_error(), "NULL") != NULL);
    CHECK(fake_make_test_certs("/proc/no/such/dir") == -1);
    CHECK(fake_start_error()[0] != '\0');

    /* every pair exists, the key matches, EC P-256 and ECDSA-SHA256 */
    for (i = 0; i < sizeof pairs / sizeof pairs[0]; ++i) {
        char name[64];
        X509 *x;
        EVP_PKEY *k;
        snprintf(name, sizeof name, "%s.pem", pairs[i]);
        x = load_cert(name);
        snprintf(name, sizeof name, "%s.key", pairs[i]);
        k = load_key(name);
        CHECK(x != NULL && k != NULL);
        if (x && k) {
            CHECK(X509_check_private_key(x, k) == 1);
            CHECK(EVP_PKEY_get_base_id(k) == EVP_PKEY_EC && EVP_PKEY_get_bits(k) == 256);
            CHECK(X509_get_signature_nid(x) == NID_ecdsa_with_SHA256);
        }
        X509_free(x);
        EVP_PKEY_free(k);
    }

    ca = load_cert("ca.pem");
    server = load_cert("server.pem");
    wrong = load_cert("wrong-name.pem");
    expired = load_cert("expired.pem");
    self = load_cert("self-signed.pem");
    other = load_cert("other-ca.pem");
    cl = load_cert("client.pem");
    REQUIRE(ca && server && wrong && expired && self && other && cl);

    CHECK(X509_check_ca(ca) >= 1);
    CHECK(X509_check_ca(other) >= 1);
    CHECK(X509_check_ca(server) == 0);
    CHECK(verify_against(ca, "ca.pem") == X509_V_OK);
    /* server.pem: chain ok, and good for localhost, 127.0.0.1 and ::1 */
    CHECK(verify_against(server, "ca.pem") == X509_V_OK);
    CHECK(X509_check_host(server, "localhost", 0, 0, NULL) == 1);
    CHECK(X509_check_ip_asc(server, "127.0.0.1", 0) == 1);
    CHECK(X509_check_ip_asc(server, "::1", 0) == 1);
    CHECK(X509_check_purpose(server, X509_PURPOSE_SSL_SERVER, 0) == 1);
    cn_of(server, cn, (int)sizeof cn);
    CHECK_STR(cn, "localhost");
    CHECK(X509_cmp_current_time(X509_get0_notBefore(server)) < 0);
    CHECK(X509_cmp_current_time(X509_get0_notAfter(server)) > 0);
    /* ... but not from the other CA */
    CHECK(verify_against(server, "other-ca.pem") == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
    /* wrong-name: chain ok, host check fails for localhost */
    CHECK(verify_against(wrong, "ca.pem") == X509_V_OK);
    CHECK(X509_check_host(wrong, "localhost", 0, 0, NULL) != 1);
    CHECK(X509_check_ip_asc(wrong, "127.0.0.1", 0) != 1);
    CHECK(X509_check_host(wrong, "other.example", 0, 0, NULL) == 1);
    /* expired */
    CHECK(verify_against(expired, "ca.pem") == X509_V_ERR_CERT_HAS_EXPIRED);
    CHECK(X509_check_host(expired, "localhost", 0, 0, NULL) == 1);
    CHECK(X509_cmp_current_time(X509_get0_notAfter(expired)) < 0);
    /* self-signed */
    CHECK(verify_against(self, "ca.pem") == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT);
    CHECK(X509_check_host(self, "localhost", 0, 0, NULL) == 1);
    /* client */
    CHECK(verify_against(cl, "ca.pem") == X509_V_OK);
    CHECK(X509_check_purpose(cl, X509_PURPOSE_SSL_CLIENT, 0) == 1);
    cn_of(cl, cn, (int)sizeof cn);
    CHECK_STR(cn, "client.example");

    X509_free(ca);
    X509_free(server);
    X509_free(wrong);
    X509_free(expired);
    X509_free(self);
    X509_free(other);
    X509_free(cl);
}

/* A TLS client context trusting ca (NULL: no verification), with an optional client certificate. */
static SSL_CTX *client_ctx(const char *ca, const char *cert, const char *key) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF); /* a close without close_notify: EOF */
    if (ca) {
        if (SSL_CTX_load_verify_locations(ctx, cpath(ca), NULL) != 1) fprintf(stderr, "cannot load %s\n", ca);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    if (cert && (SSL_CTX_use_certificate_file(ctx, cpath(cert), SSL_FILETYPE_PEM) != 1 ||
                 SSL_CTX_use_PrivateKey_file(ctx, cpath(key), SSL_FILETYPE_PEM) != 1))
        fprintf(stderr, "cannot load %s\n", cert);
    return ctx;
}

/* TLS handshake on c's socket (verifying the name "localhost" if ctx verifies). 1 on success.
   *verify (if not NULL) gets the certificate verification result. */
static int cl_tls(client *c, SSL_CTX *ctx, long *verify) {
    struct timeval tv;
    SSL *ssl;
    int r;
    tv.tv_sec = 3; /* a server that never answers must not hang the test */
    tv.tv_usec = 0;
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ssl = SSL_new(ctx);
    if (!ssl) return 0;
    SSL_set_fd(ssl, c->fd);
    SSL_set1_host(ssl, "localhost");
    r = SSL_connect(ssl);
    if (verify) *verify = SSL_get_verify_result(ssl);
    ERR_clear_error();
    if (r != 1) {
        SSL_free(ssl);
        return 0;
    }
    c->ssl = ssl;
    return 1;
}

static void tls_config(fake_config *cfg) {
    fake_config_init(cfg);
    cfg->tls_cert = cpath("server.pem");
    cfg->tls_key = cpath("server.key");
}

static const char *kCapsTls = "250-fake.example\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n"
                              "250 STARTTLS\r\n";
static const char *kCapsPlain = "250-fake.example\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250 8BITMIME\r\n";

/* Greeting and LHLO on a server with STARTTLS (before TLS). */
static void lhlo_tls(client *c) {
    EXPECT_REPLY(c, "220 fake.example LMTP ready\r\n");
    cl_send(c, "LHLO a\r\n");
    EXPECT_REPLY(c, kCapsTls);
}

/* Send one transaction with a wait for every reply and check it. */
static void deliver(client *c, const char *rcpt, const char *body) {
    char want[256];
    snprintf(want, sizeof want, "MAIL FROM:<s@x>\r\nRCPT TO:<%s>\r\nDATA\r\n", rcpt);
    cl_send(c, want);
    EXPECT_REPLY(c, "250 2.1.0 OK\r\n");
    snprintf(want, sizeof want, "250 2.1.5 <%s> OK\r\n", rcpt);
    EXPECT_REPLY(c, want);
    EXPECT_REPLY(c, "354 go ahead\r\n");
    cl_send(c, body);
    snprintf(want, sizeof want, "250 2.0.0 <%s> Saved\r\n", rcpt);
    EXPECT_REPLY(c, want);
}

static void test_starttls(void) {
    fake_config cfg;
    fake_lmtp *f;
    client c;
    SSL_CTX *ctx;
    long verify = -1;
    size_t len;
    const char *t;
    const char *plain = "LHLO a\r\nSTARTTLS x\r\nSTARTTLS\r\n";
    const char *inside = "MAIL FROM:<s@x>\r\nLHLO b\r\nSTARTTLS\r\n"
                         "MAIL FROM:<s@x>\r\nRCPT TO:<t@x>\r\nDATA\r\nsecret\r\n.\r\nQUIT\r\n";

    tls_config(&cfg);
    f = start(&cfg);
    REQUIRE(f != NULL);
    ctx = client_ctx("ca.pem", NULL, NULL);
    REQUIRE(ctx != NULL);
    REQUIRE(cl_connect(&c, f) == 0);
    EXPECT_REPLY(&c, "220 fake.example LMTP ready\r\n");
    cl_send(&c, "LHLO a\r\n");
    EXPECT_REPLY(&c, kCapsTls);
    cl_send(&c, "STARTTLS x\r\n");
    EXPECT_REPLY(&c, "501 5.5.4 Syntax: STARTTLS\r\n");
    cl_send(&c, "STARTTLS\r\n");
    EXPECT_REPLY(&c, "220 2.0.0 ready\r\n");
    CHECK(c.len == 0);
    REQUIRE(cl_tls(&c, ctx, &verify));
    CHECK(verify == X509_V_OK);
    /* the state is forgotten: LHLO again first; STARTTLS neither advertised nor accepted */
    cl_send(&c, "MAIL FROM:<s@x>\r\n");
    EXPECT_REPLY(&c, "503 5.5.1 LHLO first\r\n");
    cl_send(&c, "LHLO b\r\n");
    EXPECT_REPLY(&c, kCapsPlain);
    cl_send(&c, "STARTTLS\r\n");
    EXPECT_REPLY(&c, "503 5.5.1 TLS already active\r\n");
    deliver(&c, "t@x", "secret\r\n.\r\n");
    cl_send(&c, "QUIT\r\n");
    EXPECT_REPLY(&c, "221 2.0.0 fake.example closing connection\r\n");
    CHECK(cl_eof(&c, 2000)); /* close_notify, then FIN */
    cl_close(&c);
    CHECK(fake_wait_idle(f, 1, 2000) == 1);

    CHECK(fake_tls_sessions(f) == 1);
    CHECK(fake_tls_failures(f) == 0);
    CHECK(fake_tls_offset(f) == (long)strlen(plain));
    CHECK(fake_tls_offset_at(f, 0) == (long)strlen(plain));
    CHECK(fake_tls_offset_at(f, 1) == -1);
    CHECK(fake_tls_version(f) != NULL && strncmp(fake_tls_version(f), "TLSv1.", 6) == 0);
    CHECK(fake_tls_client_cn(f) == NULL);
    CHECK(fake_tls_client_verified(f) == 0);
    /* the transcript: plaintext, then the decrypted commands */
    t = fake_transcript(f, &len);
    CHECK(len == strlen(plain) + strlen(inside));
    CHECK(strncmp(t, plain, strlen(plain)) == 0);
    CHECK_STR(t + strlen(plain), inside);
    CHECK(fake_message_count(f) == 1);
    CHECK_STR(fake_message(f, 0, &len), "secret\r\n");
    CHECK(fake_message_tls(f, 0) == 1);
    CHECK(fake_message_tls(f, 1) == 0);
    CHECK(fake_message_auth_user(f, 0) == NULL);
    t = fake_sent(f, &len);
    CHECK(strstr(t, "220 2.0.0 ready\r\n503 5.5.1 LHLO first\r\n") != NULL); /* plaintext recorded */
    CHECK(fake_lockstep_violations(f) == 0);

    /* a plain connection to the same server: not TLS */
    REQUIRE(cl_connect(&c, f) == 0);
    lhlo_tls(&c);
    deliver(&c, "plain@x", "p\r\n.\r\n");
    cl_close(&c);
    CHECK(fake_wait_idle(f, 2, 2000) == 1);
    CHECK(fake_message_count(f) == 2);
    CHECK(fake_message_tls(f, 1) == 0);
    CHECK(fake_tls_sessions(f) == 1);
    fake_clear(f);
    CHECK(fake_tls_sessions(f) == 0);
    CHECK(fake_tls_offset(f) == -1);
    CHECK(fake_tls_version(f) == NULL);
    fake_stop(f);

    /* tls_max_version 12 */
    tls_config(&cfg);
    cfg.tls_max_version = 12;
    f = start(&cfg);
    REQUIRE(f != NULL);
    REQUIRE(cl_connect(&c, f) == 0);
    EXPECT_REPLY(&c, "220 fake.example LMTP ready\r\n");
    cl_send(&c, "LHLO a\r\nSTARTTLS\r\n"); /* LHLO ends a group: one violation */
    EXPECT_REPLY(&c, kCapsTls);
    EXPECT_REPLY(&c, "220 2.0.0 ready\r\n");
    REQUIRE(cl_tls(&c, ctx, NULL));
    CHECK_STR(SSL_get_version(c.ssl), "TLSv1.2");
    cl_send(&c, "LHLO a\r\n");
    EXPECT_REPLY(&c, kCapsPlain);
    cl_close(&c);
    CHECK(fake_wait_idle(f, 1, 2000) == 1);
    CHECK_STR(fake_tls_version(f), "TLSv1.2");
    CHECK(fake_lockstep_violations(f) == 1);
    fake_stop(f);

    /* bad configurations are refused with a reason */
    tls_config(&cfg);
    cfg.tls_cert = "/no/such/cert.pem";
    CHECK(fake_start(&cfg) == NULL);
    CHECK(strstr(fake_start_error(), "tls_cert") != NULL);
    tls_config(&cfg);
    cfg.tls_key = cpath("client.key"); /* not server.pem's key */
    CHECK(fake_start(&cfg) == NULL);
    fake_config_init(&cfg);
    cfg.tls_implicit = 1;
    CHECK(fake_start(&cfg) == NULL);
    tls_config(&cfg);
    cfg.tls_verify_client = 1; /* without tls_client_ca */
    CHECK(fake_start(&cfg) == NULL);
    SSL_CTX_free(ctx);
}

/* Plaintext pipelined after STARTTLS is discarded, not executed inside TLS (RFC 3207 5). */
static void test_starttls_pipelined_plaintext(void) {
    fake_config cfg;
    fake_lmtp *f;
    client c;
    SSL_CTX *ctx = client_ctx("ca.pem", NULL, NULL);
    char buf[256];
    size_t len;
    const char *t;
    tls_config(&cfg);
    f = start(&cfg);
    REQUIRE(f != NULL && ctx != NULL);
    REQUIRE(cl_connect(&c, f) == 0);
    EXPECT_REPLY(&c, "220 fake.example LMTP ready\r\n");
    cl_send(&c, "LHLO a\r\n");
    EXPECT_REPLY(&c, kCapsTls);
    cl_send(&c, "STARTTLS\r\nMAIL FROM:<evil@x>\r\n");
    EXPECT_REPLY(&c, "220 2.0.0 ready\r\n");
    REQUIRE(cl_tls(&c, ctx, NULL));
    CHECK(cl_reply(&c, buf, sizeof buf, 200) == -1); /* no reply to the injected MAIL */
    cl_send(&c, "LHLO a\r\n");
    EXPECT_REPLY(&c, kCapsPlain);
    cl_send(&c, "RCPT TO:<x@y>\r\n");
    EXPECT_REPLY(&c, "503 5.5.1 MAIL needed first\r\n"); /* the MAIL really was dropped */
    cl_close(&c);
    CHECK(fake_wait_idle(f, 1, 2000) == 1);
    CHECK(fake_lockstep_violations(f) == 1);
    t = fake_transcript(f, &len);
    CHECK(fake_tls_offset(f) == (long)strlen("LHLO a\r\nSTARTTLS\r\nMAIL FROM:<evil@x>\r\n"));
    CHECK(len > 8 && strstr(t, "MAIL FROM:<evil@x>\r\nLHLO a\r\n") != NULL);
    fake_stop(f);
    SSL_CTX_free(ctx);
}

static void test_implicit_tls(void) {
    fake_config cfg;
    fake_lmtp *f;
    client c;
    SSL_CTX *ctx = client_ctx("ca.pem", NULL, NULL);
    long verify = -1;
    size_t len;
    tls_config(&cfg);
    cfg.tls_implicit = 1;
    f = start(&cfg);
    REQUIRE(f != NULL && ctx != NULL);
    REQUIRE(cl_connect(&c, f) == 0);
    REQUIRE(cl_tls(&c, ctx, &verify));
    CHECK(verify == X509_V_OK);
    EXPECT_REPLY(&c, "220 fake.example LMTP ready\r\n"); /* inside TLS */
    cl_send(&c, "LHLO a\r\n");
    EXPECT_REPLY(&c, kCapsPlain);
    cl_send(&c, "STARTTLS\r\n");
    EXPECT_REPLY(&c, "503 5.5.1 TLS already active\r\n");
    deliver(&c, "i@x", "implicit\r\n.\r\n");
    cl_send(&c, "QUIT\r\n");
    EXPECT_REPLY(&c, "221 2.0.0 fake.example closing connection\r\n");
    CHECK(cl_eof(&c, 2000));
    cl_close(&c);
    CHECK(fake_wait_idle(f, 1, 2000) == 1);
    CHECK(fake_tls_sessions(f) == 1);
    CHECK(fake_tls_offset(f) == 0);
    CHECK(fake_message_tls(f, 0) == 1);
    CHECK_STR(fake_message(f, 0, &len), "implicit\r\n");
    {
        const char *t = fake_transcript(f, &len);
        CHECK(len > 8 && strncmp(t, "LHLO a\r\nSTARTTLS\r\n", 18) == 0);
    }

    /* a plaintext client: no greeting, the handshake fails, the server survives */
    REQUIRE(cl_connect(&c, f) == 0);
    cl_send(&c, "LHLO plain\r\n");
    CHECK(cl_eof(&c, 3000));
    cl_close(&c);
    CHECK(fake_wait_idle(f, 2, 2000) == 1);
    CHECK(fake_tls_failures(f) == 1);
    CHECK(fake_tls_sessions(f) == 1);
    fake_stop(f);

    /* the fault at connect goes inside TLS */
    tls_config(&cfg);
    cfg.tls_implicit = 1;
    cfg.fault_on = "";
    cfg.fault_reply = "421 4.3.2 busy\r\n";
    cfg.fault_action = FAKE_CLOSE;
    f = start(&cfg);
    REQUIRE(f != NULL);
    REQUIRE(cl_connect(&c, f) == 0);
    REQUIRE(cl_tls(&c, ctx, NULL));
    EXPECT_REPLY(&c, "421 4.3.2 busy\r\n");
    CHECK(cl_eof(&c, 2000));
    cl_close(&c);
    fake_stop(f);
    SSL_CTX_free(ctx);
}

/* The server's certificate is wrong: the client's verification fails (what the lead's tests do). */
static void test_bad_server_certs(void) {
    static const struct {
        const char *base;
        long want;
    } cases[] = {
        {"wrong-name", X509_V_ERR_HOSTNAME_MISMATCH},
        {"expired", X509_V_ERR_CERT_HAS_EXPIRED},
        {"self-signed", X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT},
    };
    SSL_CTX *ctx = client_ctx("ca.pem", NULL, NULL);
    size_t i;
    REQUIRE(ctx != NULL);
    for (i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
        fake_config cfg;
        fake_lmtp *f;
        client c;
        long verify = -1;
        char cert[64], key[64];
        snprintf(cert, sizeof cert, "%s.pem", cases[i].base);
        snprintf(key, sizeof key, "%s.key", cases[i].base);
        fake_config_init(&cfg);
        cfg.tls_cert = cpath(cert);
        cfg.tls_key = cpath(key);
        cfg.tls_implicit = 1;
        f = start(&cfg);
        REQUIRE(f != NULL);
        REQUIRE(cl_connect(&c, f) == 0);
        CHECK(cl_tls(&c, ctx, &verify) == 0);
        CHECK(verify == cases[i].want);
        cl_close(&c);
        CHECK(fake_wait_idle(f, 1, 2000) == 1);
        CHECK(fake_tls_failures(f) == 1);
        fake_stop(f);
    }
    /* and a client trusting only the other CA refuses the good certificate */
    SSL_CTX_free(ctx);
    ctx = client_ctx("other-ca.pem", NULL, NULL);
    {
        fake_config cfg;
        fake_lmtp *f;
        client c;
        long verify = -1;
        tls_config(&cfg);
        cfg.tls_implicit = 1;
        f = start(&cfg);
        REQUIRE(f != NULL);
        REQUIRE(cl_connect(&c, f) == 0);
        CHECK(cl_tls(&c, ctx, &verify) == 0);
        CHECK(verify == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
        cl_close(&c);
        fake_stop(f);
    }
    SSL_CTX_free(ctx);
}

/* Read whatever comes within ms into c->buf (appending). */
static void cl_gather(client *c, int ms) {
    long deadline = now_ms() + ms;
    while (now_ms() < deadline) {
        int r = cl_fill(c, (int)(deadline - now_ms()));
        if (r == 0 || r == -2) break;
    }
}

static void test_tls_faults(void) {
    fake_config cfg;
    fake_lmtp *f;
    client c;
    SSL_CTX *ctx = client_ctx("ca.pem", NULL, NULL);
    size_t len;
    long t0;
    int mode;
    REQUIRE(ctx != NULL);

    /* advertises STARTTLS, says 220, then garbage (1) or a close (2) instead of a handshake */
    for (mode = 1; mode <= 2; ++mode) {
        tls_config(&cfg);
        cfg.tls_fail_handshake = mode;
        f = start(&cfg);
        REQUIRE(f != NULL);
        REQUIRE(cl_connect(&c, f) == 0);
        lhlo_tls(&c);
        cl_send(&c, "STARTTLS\r\n");
        EXPECT_REPLY(&c, "220 2.0.0 ready\r\n");
        t0 = now_ms();
        CHECK(cl_tls(&c, ctx, NULL) == 0);
        CHECK(now_ms() - t0 < 2500);
        cl_close(&c);
        CHECK(fake_wait_idle(f, 1, 3000) == 1);
        CHECK(fake_tls_failures(f) == 1);
        CHECK(fake_tls_sessions(f) == 0);
        {
            const char *s = fake_sent(f, &len);
            CHECK((strstr(s, "garbage: this is not a TLS handshake\r\n") != NULL) == (mode == 1));
            s = fake_transcript(f, &len); /* the ClientHello is not recorded */
            CHECK(len == strlen("LHLO a\r\nSTARTTLS\r\n"));
        }
        fake_stop(f);
    }

    /* implicit TLS with a failing handshake */
    tls_config(&cfg);
    cfg.tls_implicit = 1;
    cfg.tls_fail_handshake = 1;
    f = start(&cfg);
    REQUIRE(f != NULL);
    REQUIRE(cl_connect(&c, f) == 0);
    CHECK(cl_tls(&c, ctx, NULL) == 0);
    cl_close(&c);
    CHECK(fake_wait_idle(f, 1, 3000) == 1);
    CHECK(fake_tls_failures(f) == 1);
    fake_stop(f);

    /* plaintext injected right after the 220, in the same write */
    tls_config(&cfg);
    cfg.tls_plain_after_220 = "250 2.0.0 injected\r\n";
    f = start(&cfg);
    REQUIRE(f != NULL);
    REQUIRE(cl_connect(&c, f) == 0);
    lhlo_tls(&c);
    cl_send(&c, "STARTTLS\r\n");
    c.len = 0;
    c.buf[0] = '\0';
    c.reads = 0;
    cl_gather(&c, 300);
    CHECK_STR(c.buf, "220 2.0.0 ready\r\n250 2.0.0 injected\r\n");
    CHECK(c.reads == 1); /* one write, one read */
    {
        const char *s = fake_sent(f, &len);
        CHECK(strstr(s, "220 2.0.0 ready\r\n250 2.0.0 injected\r\n") != NULL);
    }
    cl_close(&c); /* a correct client gives up here */
    CHECK(fake_wait_idle(f, 1, 2000) == 1);
    CHECK(fake_tls_failures(f) == 1);
    /* a client that ignores the extra bytes still gets its handshake */
    REQUIRE(cl_connect(&c, f) == 0);
    lhlo_tls(&c);
    cl_send(&c, "STARTTLS\r\n");
    c.len = 0;
    cl_gather(&c, 300);
    c.len = 0;
    CHECK(cl_tls(&c, ctx, NULL) == 1);
    cl_send(&c, "LHLO a\r\n");
    EXPECT_REPLY(&c, kCapsPlain);
    cl_close(&c);
    fake_stop(f);

    /* fault_on STARTTLS: raw bytes instead of the 220; nothing changes */
    tls_config(&cfg);
    cfg.fault_on = "STARTTLS";
    cfg.fault_reply = "xyz\r\n";
    f = start(&cfg);
    REQUIRE(f != NULL);
    REQUIRE(cl_connect(&c, f) == 0);
    lhlo_tls(&c);
    cl_send(&c, "STARTTLS\r\nNOOP\r\n");
    c.len = 0;
    c.buf[0] = '\0';
    {
        long deadline = now_ms() + 2000;
        while (strstr(c.buf, "250 2.0.0 OK\r\n") == NULL && now_ms() < deadline) cl_fill(&c, 100);
    }
    CHECK_STR(c.buf, "xyz\r\n250 2.0.0 OK\r\n");
    cl_close(&c);
    CHECK(fake_wait_idle(f, 1, 2000) == 1);
    CHECK(fake_tls_sessions(f) == 0);
    CHECK(fake_tls_failures(f) == 0);
    fake_stop(f);

    /* "220 ready", then the connection drops */
    tls_config(&cfg);
    cfg.fault_on = "STARTTLS";
    cfg.fault_reply = "220 2.0.0 ready\r\n";
    cfg.fault_action = FAKE_CLOSE;
    f = start(&cfg);
    REQUIRE(f != NULL);
    REQUIRE(cl_connect(&c, f) == 0);
    lhlo_tls(&c);
    cl_send(&c, "STARTTLS\r\n");
    EXPECT_REPLY(&c, "220 2.0.0 ready\r\n");
    CHECK(cl_tls(&c, ctx, NULL) == 0);
    cl_close(&c);
    CHECK(fake_wait_idle(f, 1, 2000) == 1);
    CHECK(fake_tls_sessions(f) == 0);
    fake_stop(f);

    /* clients that give up in the middle of the handshake: no crash, counted; and fake_stop is
       prompt with one still connected mid-handshake */
    tls_config(&cfg);
    f = start(&cfg);
    REQUIRE(f != NULL);
    REQUIRE(cl_connect(&c, f) == 0);
    lhlo_tls(&c);
    cl_send(&c, "STARTTLS\r\n");
    EXPECT_REPLY(&c, "220 2.0.0 ready\r\n");
    cl_send_n(&c, "\x16\x03\x01\x02\x00\x01\x00\x01", 8); /* the start of a ClientHello */
    cl_close(&c);
    CHECK(fake_wait_idle(f, 1, 2000) == 1);
    CHECK(fake_tls_failures(f) == 1);
    REQUIRE(cl_connect(&c, f) == 0);
    lhlo_tls(&c);
    cl_send(&c, "STARTTLS\r\n");
    EXPECT_REPLY(&c, "220 2.0.0 ready\r\n");
    {
        struct linger l;
        l.l_onoff = 1;
        l.l_linger = 0;
        setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    }
    cl_send_n(&c, "\x16\x03\x01\x02\x00", 5);
    cl_close(&c); /* RST */
    CHECK(fake_wait_idle(f, 2, 2000) == 1);
    CHECK(fake_tls_failures(f) == 2);
    REQUIRE(cl_connect(&c, f) == 0);
    lhlo_tls(&c);
    cl_send(&c, "STARTTLS\r\n");
    EXPECT_REPLY(&c, "220 2.0.0 ready\r\n");
    cl_send_n(&c, "\x16\x03\x01", 3);
    sleep_ms(50);
    t0 = now_ms();
    fake_stop(f);
    CHECK(now_ms() - t0 < 1000);
    cl_close(&c);

    /* fake_stop is prompt with a TLS connection open, too */
    tls_config(&cfg);
    cfg.tls_implicit = 1;
    f = start(&cfg);
    REQUIRE(f != NULL);
    REQUIRE(cl_connect(&c, f) == 0);
    REQUIRE(cl_tls(&c, ctx, NULL));
    EXPECT_REPLY(&c, "220 fake.example LMTP ready\r\n");
    t0 = now_ms();
    fake_stop(f);
    CHECK(now_ms() - t0 < 1000);
    CHECK(cl_eof(&c, 1000));
    cl_close(&c);
    SSL_CTX_free(ctx);
}

static void test_tls_require(void) {
    fake_config cfg;
    fake_lmtp *f;
    client c;
    SSL_CTX *ctx = client_ctx("ca.pem", NULL, NULL);
    tls_config(&cfg);
    cfg.tls_require = 1;
    cfg.extra_caps = "CHUNKING";
    cfg.auth_mechanisms = "PLAIN";
    cfg.auth_user = "user";
    cfg.auth_password = "pencil";
    f = start(&cfg);
    REQUIRE(f != NULL && ctx != NULL);
    REQUIRE(cl_connect(&c, f) == 0);
    EXPECT_REPLY(&c, "220 fake.example LMTP ready\r\n");
    cl_send(&c, "LHLO a\r\n");
    EXPECT_REPLY(&c, "250-fake.example\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n"
                     "250-CHUNKING\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n");
    cl_send(&c, "MAIL FROM:<s@x>\r\n");
    EXPECT_REPLY(&c, "530 5.7.0 Must issue a STARTTLS command first\r\n");
    cl_send(&c, "AUTH PLAIN AHVzZXIAcGVuY2ls\r\n");
    EXPECT_REPLY(&c, "530 5.7.0 Must issue a STARTTLS command first\r\n");
    cl_send(&c, "BDAT 4 LAST\r\nQUIT"); /* swallowed all the same */
    EXPECT_REPLY(&c, "530 5.7.0 Must issue a STARTTLS command first\r\n");
    cl_send(&c, "VRFY x\r\n");
    EXPECT_REPLY(&c, "530 5.7.0 Must issue a STARTTLS command first\r\n");
    cl_send(&c, "NOOP\r\n");
    EXPECT_REPLY(&c, "250 2.0.0 OK\r\n");
    cl_send(&c, "RSET\r\n");
    EXPECT_REPLY(&c, "250 2.0.0 OK\r\n");
    cl_send(&c, "STARTTLS\r\n");
    EXPECT_REPLY(&c, "220 2.0.0 ready\r\n");
    REQUIRE(cl_tls(&c, ctx, NULL));
    cl_send(&c, "LHLO a\r\n");
    EXPECT_REPLY(&c, "250-fake.example\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n"
                     "250-CHUNKING\r\n250 AUTH PLAIN\r\n");
    deliver(&c, "r@x", "x\r\n.\r\n");
    cl_send(&c, "QUIT\r\n");
    EXPECT_REPLY(&c, "221 2.0.0 fake.example closing connection\r\n");
    cl_close(&c);
    CHECK(fake_wait_idle(f, 1, 2000) == 1);
    CHECK(fake_message_count(f) == 1);
    CHECK(fake_message_tls(f, 0) == 1);
    CHECK(fake_auth_failures(f) == 0); /* the 530 is not an AUTH failure */
    fake_stop(f);
    SSL_CTX_free(ctx);
}

static void test_client_certs(void) {
    fake_config cfg;
    fake_lmtp *f;
    client c;
    SSL_CTX *with_cert = client_ctx("ca.pem", "client.pem", "client.key");
    SSL_CTX *without = client_ctx("ca.pem", NULL, NULL);
    SSL_CTX *self_cert = client_ctx("ca.pem", "self-signed.pem", "self-signed.key");
    char buf[256];
    REQUIRE(with_cert && without && self_cert);

    tls_config(&cfg);
    cfg.tls_implicit = 1;
    cfg.tls_verify_client = 1;
    cfg.tls_client_ca = cpath("ca.pem");
    cfg.auth_mechanisms = "EXTERNAL PLAIN";
    f = start(&cfg);
    REQUIRE(f != NULL);

    /* a good client certificate: recorded, and EXTERNAL works (authzid "=": derived) */
    REQUIRE(cl_connect(&c, f) == 0);
    REQUIRE(cl_tls(&c, with_cert, NULL));
    EXPECT_REPLY(&c, "220 fake.example LMTP ready\r\n");
    CHECK(fake_tls_sessions(f) == 1);
    CHECK_STR(fake_tls_client_cn(f), "client.example");
    CHECK(fake_tls_client_verified(f) == 1);
    cl_send(&c, "LHLO a\r\n");
    EXPECT_REPLY(&c, "250-fake.example\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n"
                     "250 AUTH EXTERNAL PLAIN\r\n");
    cl_send(&c, "AUTH EXTERNAL =\r\n");
    EXPECT_REPLY(&c, "235 2.7.0 Authentication successful\r\n");
    CHECK_STR(fake_auth_user(f), "client.example");
    CHECK_STR(fake_auth_mechanism(f), "EXTERNAL");
    deliver(&c, "e@x", "ext\r\n.\r\n");
    cl_close(&c);
    CHECK(fake_wait_idle(f, 1, 2000) == 1);
    CHECK_STR(fake_message_auth_user(f, 0), "client.example");
    CHECK(fake_message_tls(f, 0) == 1);

    /* EXTERNAL without initial response, authzid = the CN; then a wrong authzid */
    REQUIRE(cl_connect(&c, f) == 0);
    REQUIRE(cl_tls(&c, with_cert, NULL));
    EXPECT_REPLY(&c, "220 fake.example LMTP ready\r\n");
    cl_send(&c, "LHLO a\r\n");
    cl_reply(&c, buf, sizeof buf, 3000);
    cl_send(&c, "AUTH EXTERNAL\r\n");
    EXPECT_REPLY(&c, "334 \r\n");
    cl_send(&c, "Y2xpZW50LmV4YW1wbGU=\r\n"); /* "client.example" */
    EXPECT_REPLY(&c, "235 2.7.0 Authentication successful\r\n");
    cl_close(&c);
    REQUIRE(cl_connect(&c, f) == 0);
    REQUIRE(cl_tls(&c, with_cert, NULL));
    EXPECT_REPLY(&c, "220 fake.example LMTP ready\r\n");
    cl_send(&c, "LHLO a\r\n");
    cl_reply(&c, buf, sizeof buf, 3000);
    cl_send(&c, "AUTH EXTERNAL\r\n");
    EXPECT_REPLY(&c, "334 \r\n");
    cl_send(&c, "\r\n"); /* an empty response: derived */
    EXPECT_REPLY(&c, "235 2.7.0 Authentication successful\r\n");
    cl_close(&c);
    REQUIRE(cl_connect(&c, f) == 0);
    REQUIRE(cl_tls(&c, with_cert, NULL));
    EXPECT_REPLY(&c, "220 fake.example LMTP ready\r\n");
    cl_send(&c, "LHLO a\r\n");
    cl_reply(&c, buf, sizeof buf, 3000);
    cl_send(&c, "AUTH EXTERNAL c29tZW9uZQ==\r\n"); /* "someone" */
    EXPECT_REPLY(&c, "535 5.7.8 Authentication credentials invalid\r\n");
    cl_close(&c);

    /* no client certificate: the handshake still succeeds, EXTERNAL fails */
    REQUIRE(cl_connect(&c, f) == 0);
    REQUIRE(cl_tls(&c, without, NULL));
    EXPECT_REPLY(&c, "220 fake.example LMTP ready\r\n");
    CHECK(fake_tls_client_cn(f) == NULL);
    CHECK(fake_tls_client_verified(f) == 0);
    cl_send(&c, "LHLO a\r\n");
    cl_reply(&c, buf, sizeof buf, 3000);
    cl_send(&c, "AUTH EXTERNAL =\r\n");
    EXPECT_REPLY(&c, "535 5.7.8 Authentication credentials invalid\r\n");
    cl_close(&c);

    /* a certificate not from the CA: recorded as unverified, EXTERNAL fails */
    REQUIRE(cl_connect(&c, f) == 0);
    REQUIRE(cl_tls(&c, self_cert, NULL));
    EXPECT_REPLY(&c, "220 fake.example LMTP ready\r\n");
    CHECK_STR(fake_tls_client_cn(f), "localhost");
    CHECK(fake_tls_client_verified(f) == 0);
    cl_send(&c, "LHLO a\r\n");
    cl_reply(&c, buf, sizeof buf, 3000);
    cl_send(&c, "AUTH EXTERNAL =\r\n");
    EXPECT_REPLY(&c, "535 5.7.8 Authentication credentials invalid\r\n");
    cl_close(&c);
    CHECK(fake_wait_idle(f, 6, 2000) == 1);
    CHECK(fake_auth_successes(f) == 3);
    CHECK(fake_auth_failures(f) == 3);
    CHECK(fake_tls_sessions(f) == 6);
    fake_stop(f);

    /* tls_verify_client 2: no certificate, no session (TLS 1.3: the client may only notice on read) */
    tls_config(&cfg);
    cfg.tls_verify_client = 2;
    cfg.tls_client_ca = cpath("ca.pem");
    f = start(&cfg);
    REQUIRE(f != NULL);
    REQUIRE(cl_connect(&c, f) == 0);
    lhlo_tls(&c);
    cl_send(&c, "STARTTLS\r\n");
    EXPECT_REPLY(&c, "220 2.0.0 ready\r\n");
    if (cl_tls(&c, without, NULL)) {
        cl_send(&c, "LHLO a\r\n");
        CHECK(cl_reply(&c, buf, sizeof buf, 2000) <= 0);
    }
    cl_close(&c);
    REQUIRE(cl_connect(&c, f) == 0);
    lhlo_tls(&c);
    cl_send(&c, "STARTTLS\r\n");
    EXPECT_REPLY(&c, "220 2.0.0 ready\r\n");
    REQUIRE(cl_tls(&c, with_cert, NULL));
    cl_send(&c, "LHLO a\r\n");
    EXPECT_REPLY(&c, kCapsPlain);
    cl_close(&c);
    CHECK(fake_wait_idle(f, 2, 2000) == 1);
    CHECK(fake_tls_failures(f) == 1);
    CHECK(fake_tls_sessions(f) == 1);
    CHECK_STR(fake_tls_client_cn(f), "client.example");
    CHECK(fake_tls_client_verified(f) == 1);
    fake_stop(f);
    SSL_CTX_free(with_cert);
    SSL_CTX_free(without);
    SSL_CTX_free(self_cert);
}

/* base64 of n bytes into out (NUL-terminated). */
static void b64(const void *data, size_t n, char *out) {
    EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)data, (int)n);
}

/* "AUTH PLAIN" style helper: "334 <b64>\r\n" -> decoded text (NUL-terminated) */
static int unb64_reply(const char *reply, char *out, size_t cap) {
    char text[1024];
    size_t n, pad = 0;
    int r;
    if (strncmp(reply, "334 ", 4) != 0) return -1;
    snprintf(text, sizeof text, "%s", reply + 4);
    n = strcspn(text, "\r\n");
    text[n] = '\0';
    if (n % 4 || n / 4 * 3 >= cap) return -1;
    if (n && text[n - 1] == '=') ++pad;
    if (n > 1 && text[n - 2] == '=') ++pad;
    r = EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)text, (int)n);
    if (r < 0) return -1;
    out[(size_t)r - pad] = '\0';
    return r - (int)pad;
}

static void lhlo_auth(client *c, const char *caps) {
    EXPECT_REPLY(c, "220 fake.example LMTP ready\r\n");
    cl_send(c, "LHLO a\r\n");
    EXPECT_REPLY(c, caps);
}

static const char *kCapsAuth = "250-fake.example\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n"
                               "250 AUTH PLAIN LOGIN SCRAM-SHA-256 EXTERNAL\r\n";

static void test_auth_plain_login(void) {
    fake_config cfg;
    fake_lmtp *f;
    client c;
    size_t len;
    const char *t;
    const char *script;
    fake_config_init(&cfg);
    cfg.auth_mechanisms = "plain, LOGIN SCRAM-SHA-256 external";
    cfg.auth_user = "user";
    cfg.auth_password = "pencil";
    f = start(&cfg);
    REQUIRE(f != NULL);

    /* PLAIN with an initial response; a second AUTH is refused; the message knows the user */
    REQUIRE(cl_connect(&c, f) == 0);
    EXPECT_REPLY(&c, "220 fake.example LMTP ready\r\n");
    cl_send(&c, "AUTH PLAIN AHVzZXIAcGVuY2ls\r\n");
    EXPECT_REPLY(&c, "503 5.5.1 LHLO first\r\n");
    cl_send(&c, "LHLO a\r\n");
    EXPECT_REPLY(&c, kCapsAuth);
    cl_send(&c, "AUTH PLAIN AHVzZXIAcGVuY2ls\r\n"); /* \0user\0pencil */
    EXPECT_REPLY(&c, "235 2.7.0 Authentication successful\r\n");
    cl_send(&c, "AUTH PLAIN AHVzZXIAcGVuY2ls\r\n");
    EXPECT_REPLY(&c, "503 5.5.1 Already authenticated\r\n");
    cl_send(&c, "MAIL FROM:<s@x> AUTH=<>\r\nRCPT TO:<a@x>\r\nDATA\r\n");
    EXPECT_REPLY(&c, "250 2.1.0 OK\r\n");
    EXPECT_REPLY(&c, "250 2.1.5 <a@x> OK\r\n");
    EXPECT_REPLY(&c, "354 go ahead\r\n");
    cl_send(&c, "x\r\n.\r\n");
    EXPECT_REPLY(&c, "250 2.0.0 <a@x> Saved\r\n");
    cl_close(&c);
    CHECK(fake_wait_idle(f, 1, 2000) == 1);
    CHECK_STR(fake_auth_user(f), "user");
    CHECK_STR(fake_auth_mechanism(f), "PLAIN");
    CHECK_STR(fake_message_auth_user(f, 0), "user");
    CHECK(fake_message_tls(f, 0) == 0);
    CHECK(fake_auth_successes(f) == 1);
    CHECK(fake_auth_failures(f) == 2); /* the 503s */
    fake_clear(f);

    /* everything else on one connection, each exchange failing or not */
    REQUIRE(cl_connect(&c, f) == 0);
    lhlo_auth(&c, kCapsAuth);
    /* PLAIN without initial response, authzid = user */
    cl_send(&c, "AUTH PLAIN\r\n");
    EXPECT_REPLY(&c, "334 \r\n");
    cl_send(&c, "dXNlcgB1c2VyAHdyb25n\r\n"); /* user\0user\0wrong */
    EXPECT_REPLY(&c, "535 5.7.8 Authentication credentials invalid\r\n");
    cl_send(&c, "AUTH PLAIN b3RoZXIAdXNlcgBwZW5jaWw=\r\n"); /* other\0user\0pencil: authzid mismatch */
    EXPECT_REPLY(&c, "535 5.7.8 Authentication credentials invalid\r\n");
    cl_send(&c, "AUTH PLAIN dXNlcnBlbmNpbA==\r\n"); /* no NULs */
    EXPECT_REPLY(&c, "501 5.5.2 Malformed PLAIN response\r\n");
    cl_send(&c, "AUTH PLAIN !!!!\r\n");
    EXPECT_REPLY(&c, "501 5.5.2 Invalid base64 data\r\n");
    cl_send(&c, "AUTH PLAIN =\r\n"); /* empty initial response */
    EXPECT_REPLY(&c, "501 5.5.2 Malformed PLAIN response\r\n");
    cl_send(&c, "AUTH CRAM-MD5\r\n");
    EXPECT_REPLY(&c, "504 5.5.4 Unrecognized authentication type\r\n");
    cl_send(&c, "AUTH\r\n");
    EXPECT_REPLY(&c, "501 5.5.4 Syntax: AUTH mechanism [initial-response]\r\n");
    /* LOGIN: cancel, wrong password, initial response */
    cl_send(&c, "AUTH LOGIN\r\n");
    EXPECT_REPLY(&c, "334 VXNlcm5hbWU6\r\n");
    cl_send(&c, "*\r\n");
    EXPECT_REPLY(&c, "501 5.7.0 Authentication canceled\r\n");
    cl_send(&c, "auth login\r\n");
    EXPECT_REPLY(&c, "334 VXNlcm5hbWU6\r\n");
    cl_send(&c, "dXNlcg==\r\n");
    EXPECT_REPLY(&c, "334 UGFzc3dvcmQ6\r\n");
    cl_send(&c, "cGVuY2lM\r\n"); /* penciL */
    EXPECT_REPLY(&c, "535 5.7.8 Authentication credentials invalid\r\n");
    /* inside a transaction */
    cl_send(&c, "MAIL FROM:<s@x>\r\n");
    EXPECT_REPLY(&c, "250 2.1.0 OK\r\n");
    cl_send(&c, "AUTH LOGIN\r\n");
    EXPECT_REPLY(&c, "503 5.5.1 AUTH not permitted during a mail transaction\r\n");
    cl_send(&c, "RSET\r\n");
    EXPECT_REPLY(&c, "250 2.0.0 OK\r\n");
    /* EXTERNAL without TLS */
    cl_send(&c, "AUTH EXTERNAL =\r\n");
    EXPECT_REPLY(&c, "535 5.7.8 Authentication credentials invalid\r\n");
    cl_send(&c, "AUTH LOGIN dXNlcg==\r\n");
    EXPECT_REPLY(&c, "334 UGFzc3dvcmQ6\r\n");
    cl_send(&c, "cGVuY2ls\r\n");
    EXPECT_REPLY(&c, "235 2.7.0 Authentication successful\r\n");
    cl_send(&c, "QUIT\r\n");
    EXPECT_REPLY(&c, "221 2.0.0 fake.example closing connection\r\n");
    cl_close(&c);
    CHECK(fake_wait_idle(f, 1, 2000) == 1);
    CHECK(fake_auth_successes(f) == 1);
    CHECK(fake_auth_failures(f) == 11);
    CHECK_STR(fake_auth_mechanism(f), "LOGIN");
    CHECK_STR(fake_auth_user(f), "user");
    /* the transcript is exactly what the client sent, secrets included */
    script = "LHLO a\r\nAUTH PLAIN\r\ndXNlcgB1c2VyAHdyb25n\r\nAUTH PLAIN b3RoZXIAdXNlcgBwZW5jaWw=\r\n"
             "AUTH PLAIN dXNlcnBlbmNpbA==\r\nAUTH PLAIN !!!!\r\nAUTH PLAIN =\r\nAUTH CRAM-MD5\r\nAUTH\r\n"
             "AUTH LOGIN\r\n*\r\nauth login\r\ndXNlcg==\r\ncGVuY2lM\r\nMAIL FROM:<s@x>\r\nAUTH LOGIN\r\n"
             "RSET\r\nAUTH EXTERNAL =\r\nAUTH LOGIN dXNlcg==\r\ncGVuY2ls\r\nQUIT\r\n";
    t = fake_transcript(f, &len);
    CHECK(len == strlen(script));
    CHECK_STR(t, script);
    CHECK(fake_lockstep_violations(f) == 0);
    fake_stop(f);

    /* pipelining: AUTH PLAIN with an initial response may be followed at once (RFC 4954 4), a
       bare AUTH may not */
    fake_config_init(&cfg);
    cfg.auth_mechanisms = "PLAIN";
    cfg.auth_user = "user";
    cfg.auth_password = "pencil";
    f = start(&cfg);
    REQUIRE(f != NULL);
    REQUIRE(cl_connect(&c, f) == 0);
    lhlo_auth(&c, "250-fake.example\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n"
                  "250 AUTH PLAIN\r\n");
    cl_send(&c, "AUTH PLAIN AHVzZXIAcGVuY2ls\r\nMAIL FROM:<s@x>\r\n");
    EXPECT_REPLY(&c, "235 2.7.0 Authentication successful\r\n");
    EXPECT_REPLY(&c, "250 2.1.0 OK\r\n");
    CHECK(fake_lockstep_violations(f) == 0);
    cl_close(&c);
    REQUIRE(cl_connect(&c, f) == 0);
    lhlo_auth(&c, "250-fake.example\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n"
                  "250 AUTH PLAIN\r\n");
    cl_send(&c, "AUTH PLAIN\r\nAHVzZXIAcGVuY2ls\r\n");
    EXPECT_REPLY(&c, "334 \r\n");
    EXPECT_REPLY(&c, "235 2.7.0 Authentication successful\r\n");
    CHECK(fake_lockstep_violations(f) == 1);
    cl_close(&c);
    fake_stop(f);
}

/* The SCRAM-SHA-256 client side, on OpenSSL primitives (RFC 5802 3). */
static void scram_client(const char *password, const unsigned char *salt, size_t salt_len, int iterations,
                         const char *auth_message, char *proof_b64, char *server_sig_b64) {
    unsigned char salted[32], client_key[32], stored_key[32], client_sig[32], server_key[32], server_sig[32];
    unsigned char proof[32];
    unsigned int n = 0;
    size_t i;
    PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, (int)salt_len, iterations, EVP_sha256(),
                      (int)sizeof salted, salted);
    HMAC(EVP_sha256(), salted, (int)sizeof salted, (const unsigned char *)"Client Key", 10, client_key, &n);
    SHA256(client_key, sizeof client_key, stored_key);
    HMAC(EVP_sha256(), stored_key, (int)sizeof stored_key, (const unsigned char *)auth_message,
         strlen(auth_message), client_sig, &n);
    for (i = 0; i < sizeof proof; ++i) proof[i] = (unsigned char)(client_key[i] ^ client_sig[i]);
    HMAC(EVP_sha256(), salted, (int)sizeof salted, (const unsigned char *)"Server Key", 10, server_key, &n);
    HMAC(EVP_sha256(), server_key, (int)sizeof server_key, (const unsigned char *)auth_message,
         strlen(auth_message), server_sig, &n);
    b64(proof, sizeof proof, proof_b64);
    b64(server_sig, sizeof server_sig, server_sig_b64);
}

/* One SCRAM-SHA-256 exchange on c up to the server's v= (returned in v, decoded), with password.
   Returns the reply code to the client-final-message (334 when the proof was accepted).
   Sizes: server_first 512, client_final 2048, v 256, expected_v 128. */
static int scram_exchange(client *c, const char *cnonce, const char *password, char *server_first,
                          char *client_final, char *v, char *expected_v) {
    char line[4096], reply_buf[1024], bare[256], auth_message[4096], proof[64], sig[64], sf[512];
    char *r, *salt_b64, *iter_s;
    unsigned char salt[64];
    int salt_len, code;
    snprintf(bare, sizeof bare, "n=user,r=%s", cnonce);
    snprintf(auth_message, sizeof auth_message, "n,,%s", bare);
    b64(auth_message, strlen(auth_message), line);
    strcat(line, "\r\n");
    cl_send(c, "AUTH SCRAM-SHA-256 ");
    cl_send(c, line);
    if (cl_reply(c, reply_buf, sizeof reply_buf, 3000) != 334) return -1;
    if (unb64_reply(reply_buf, server_first, 512) < 0) return -1;
    /* r=...,s=...,i=... */
    snprintf(sf, sizeof sf, "%s", server_first);
    r = sf + 2;
    salt_b64 = strstr(sf, ",s=");
    iter_s = strstr(sf, ",i=");
    if (strncmp(sf, "r=", 2) != 0 || !salt_b64 || !iter_s) return -1;
    *salt_b64 = '\0';
    salt_b64 += 3;
    *iter_s = '\0';
    iter_s += 3;
    salt_len = EVP_DecodeBlock(salt, (const unsigned char *)salt_b64, (int)strlen(salt_b64));
    if (salt_len < 0) return -1;
    if (strlen(salt_b64) >= 2 && salt_b64[strlen(salt_b64) - 1] == '=') --salt_len;
    if (strlen(salt_b64) >= 2 && salt_b64[strlen(salt_b64) - 2] == '=') --salt_len;
    snprintf(client_final, 2048, "c=biws,r=%s", r);
    snprintf(auth_message, sizeof auth_message, "%s,%s,%s", bare, server_first, client_final);
    scram_client(password, salt, (size_t)salt_len, atoi(iter_s), auth_message, proof, sig);
    strcat(client_final, ",p=");
    strcat(client_final, proof);
    snprintf(expected_v, 128, "v=%s", sig);
    b64(client_final, strlen(client_final), line);
    strcat(line, "\r\n");
    cl_send(c, line);
    code = cl_reply(c, reply_buf, sizeof reply_buf, 3000);
    if (code == 334 && unb64_reply(reply_buf, v, 256) < 0) return -1;
    return code;
}

static void test_auth_scram(void) {
    fake_config cfg;
    fake_lmtp *f;
    client c;
    char server_first[512], client_final[2048], v[256], expected_v[128];
    size_t len;

    /* RFC 7677 section 3's example, byte for byte */
    fake_config_init(&cfg);
    cfg.auth_mechanisms = "PLAIN LOGIN SCRAM-SHA-256 EXTERNAL";
    cfg.auth_user = "user";
    cfg.auth_password = "pencil";
    cfg.scram_salt = "W22ZaJ0SNY7soEsUEjb6gQ==";
    cfg.scram_server_nonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    cfg.scram_iterations = 4096;
    f = start(&cfg);
    REQUIRE(f != NULL);
    REQUIRE(cl_connect(&c, f) == 0);
    lhlo_auth(&c, kCapsAuth);
    CHECK(scram_exchange(&c, "rOprNGfwEbeRWgbNEkqO", "pencil", server_first, client_final, v, expected_v) == 334);
    CHECK_STR(server_first, "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
    CHECK_STR(client_final, "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                            "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
    CHECK_STR(v, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    CHECK_STR(expected_v, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    cl_send(&c, "\r\n");
    EXPECT_REPLY(&c, "235 2.7.0 Authentication successful\r\n");
    deliver(&c, "s@x", "scram\r\n.\r\n");
    cl_close(&c);
    CHECK(fake_wait_idle(f, 1, 2000) == 1);
    CHECK_STR(fake_auth_mechanism(f), "SCRAM-SHA-256");
    CHECK_STR(fake_auth_user(f), "user");
    CHECK_STR(fake_message_auth_user(f, 0), "user");
    {
        /* the transcript holds the client's messages as sent */
        const char *t = fake_transcript(f, &len);
        CHECK(strstr(t, "AUTH SCRAM-SHA-256 biwsbj11c2VyLHI9ck9wck5HZndFYmVSV2diTkVrcU8=\r\n") != NULL);
    }

    /* wrong password: 535 after the proof; a wrong nonce too */
    REQUIRE(cl_connect(&c, f) == 0);
    lhlo_auth(&c, kCapsAuth);
    CHECK(scram_exchange(&c, "abc", "crayon", server_first, client_final, v, expected_v) == 535);
    {
        char line[512], enc[700];
        cl_send(&c, "AUTH SCRAM-SHA-256 biwsbj11c2VyLHI9YWJj\r\n"); /* n,,n=user,r=abc */
        EXPECT_REPLY(&c, "334 cj1hYmMlaHZZRHBXVWEyUmFUQ0FmdXhGSWxqKWhObEYkazAscz1XMjJaYUowU05ZN3NvRXNVRWpiNmdRPT0saT00MDk2\r\n");
        snprintf(line, sizeof line, "c=biws,r=abcWRONG,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
        b64(line, strlen(line), enc);
        strcat(enc, "\r\n");
        cl_send(&c, enc);
        EXPECT_REPLY(&c, "535 5.7.8 Authentication credentials invalid\r\n");
    }
    /* cancel after the server-first-message; a mandatory extension; channel binding */
    cl_send(&c, "AUTH SCRAM-SHA-256\r\n");
    EXPECT_REPLY(&c, "334 \r\n");
    cl_send(&c, "biwsbj11c2VyLHI9YWJj\r\n");
    CHECK(cl_reply(&c, v, sizeof v, 3000) == 334);
    cl_send(&c, "*\r\n");
    EXPECT_REPLY(&c, "501 5.7.0 Authentication canceled\r\n");
    cl_send(&c, "AUTH SCRAM-SHA-256 biwsbT14LG49dXNlcixyPWFiYw==\r\n"); /* n,,m=x,n=user,r=abc */
    EXPECT_REPLY(&c, "501 5.5.2 Malformed SCRAM client-first-message\r\n");
    cl_send(&c, "AUTH SCRAM-SHA-256 cD10bHMtdW5pcXVlLCxuPXVzZXIscj1hYmM=\r\n"); /* p=tls-unique,,... */
    EXPECT_REPLY(&c, "535 5.7.8 Channel binding not supported\r\n");
    cl_close(&c);
    CHECK(fake_wait_idle(f, 2, 2000) == 1);
    CHECK(fake_auth_successes(f) == 1);
    CHECK(fake_auth_failures(f) == 5);
    fake_stop(f);

    /* a random nonce and salt; and a server that sends a wrong v= */
    fake_config_init(&cfg);
    cfg.auth_mechanisms = "SCRAM-SHA-256";
    cfg.auth_user = "user";
    cfg.auth_password = "pencil";
    cfg.scram_bad_server_signature = 1;
    f = start(&cfg);
    REQUIRE(f != NULL);
    REQUIRE(cl_connect(&c, f) == 0);
    lhlo_auth(&c, "250-fake.example\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n"
                  "250 AUTH SCRAM-SHA-256\r\n");
    CHECK(scram_exchange(&c, "fyko+d2lbbFgONRv9qkxdawL", "pencil", server_first, client_final, v, expected_v) == 334);
    CHECK(strncmp(server_first, "r=fyko+d2lbbFgONRv9qkxdawL", 26) == 0);
    CHECK(strlen(server_first) > 26 + 20 && strstr(server_first, ",i=4096") != NULL);
    CHECK(strncmp(v, "v=", 2) == 0 && strlen(v) == strlen(expected_v));
    CHECK(strcmp(v, expected_v) != 0); /* a client must notice this and not accept */
    cl_send(&c, "*\r\n");
    EXPECT_REPLY(&c, "501 5.7.0 Authentication canceled\r\n");
    cl_close(&c);
    CHECK(fake_wait_idle(f, 1, 2000) == 1);
    CHECK(fake_auth_successes(f) == 0);
    CHECK(fake_auth_user(f) == NULL);
    fake_stop(f);

    /* a bad scram_salt is refused */
    fake_config_init(&cfg);
    cfg.auth_mechanisms = "SCRAM-SHA-256";
    cfg.scram_salt = "not base64!";
    CHECK(fake_start(&cfg) == NULL);
    CHECK(strstr(fake_start_error(), "scram_salt") != NULL);
}

static void test_auth_policies(void) {
    static const struct {
        int code;
        const char *want;
    } forced[] = {
        {454, "454 4.7.0 Temporary authentication failure\r\n"},
        {534, "534 5.7.9 Authentication mechanism is too weak\r\n"},
        {538, "538 5.7.11 Encryption required for requested authentication mechanism\r\n"},
    };
    fake_config cfg;
    fake_lmtp *f;
    client c;
    SSL_CTX *ctx = client_ctx("ca.pem", NULL, NULL);
    size_t i;
    REQUIRE(ctx != NULL);

    /* auth_require: MAIL before AUTH -> 530 */
    fake_config_init(&cfg);
    cfg.auth_mechanisms = "PLAIN";
    cfg.auth_user = "user";
    cfg.auth_password = "pencil";
    cfg.auth_require = 1;
    f = start(&cfg);
    REQUIRE(f != NULL);
    REQUIRE(cl_connect(&c, f) == 0);
    lhlo_auth(&c, "250-fake.example\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n"
                  "250 AUTH PLAIN\r\n");
    cl_send(&c, "MAIL FROM:<s@x>\r\n");
    EXPECT_REPLY(&c, "530 5.7.0 Authentication required\r\n");
    cl_send(&c, "AUTH PLAIN AHVzZXIAcGVuY2ls\r\n");
    EXPECT_REPLY(&c, "235 2.7.0 Authentication successful\r\n");
    deliver(&c, "r@x", "y\r\n.\r\n");
    cl_close(&c);
    fake_stop(f);

    /* auth_fail_code: the code at once, no 334 */
    for (i = 0; i < sizeof forced / sizeof forced[0]; ++i) {
        fake_config_init(&cfg);
        cfg.auth_mechanisms = "PLAIN LOGIN";
        cfg.auth_user = "user";
        cfg.auth_password = "pencil";
        cfg.auth_fail_code = forced[i].code;
        f = start(&cfg);
        REQUIRE(f != NULL);
        REQUIRE(cl_connect(&c, f) == 0);
        lhlo_auth(&c, "250-fake.example\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n"
                      "250 AUTH PLAIN LOGIN\r\n");
        cl_send(&c, "AUTH LOGIN\r\n");
        EXPECT_REPLY(&c, forced[i].want);
        cl_send(&c, "AUTH PLAIN AHVzZXIAcGVuY2ls\r\n");
        EXPECT_REPLY(&c, forced[i].want);
        cl_close(&c);
        CHECK(fake_wait_idle(f, 1, 2000) == 1);
        CHECK(fake_auth_failures(f) == 2);
        fake_stop(f);
    }
    fake_config_init(&cfg);
    cfg.auth_mechanisms = "PLAIN";
    cfg.auth_fail_code = 250;
    CHECK(fake_start(&cfg) == NULL);

    /* auth_after_tls: not advertised before TLS, 538 if tried; works inside */
    tls_config(&cfg);
    cfg.auth_mechanisms = "PLAIN";
    cfg.auth_user = "user";
    cfg.auth_password = "pencil";
    cfg.auth_after_tls = 1;
    f = start(&cfg);
    REQUIRE(f != NULL);
    REQUIRE(cl_connect(&c, f) == 0);
    lhlo_tls(&c);
    cl_send(&c, "AUTH PLAIN AHVzZXIAcGVuY2ls\r\n");
    EXPECT_REPLY(&c, "538 5.7.11 Encryption required for requested authentication mechanism\r\n");
    cl_send(&c, "STARTTLS\r\n");
    EXPECT_REPLY(&c, "220 2.0.0 ready\r\n");
    REQUIRE(cl_tls(&c, ctx, NULL));
    cl_send(&c, "LHLO a\r\n");
    EXPECT_REPLY(&c, "250-fake.example\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n"
                     "250 AUTH PLAIN\r\n");
    cl_send(&c, "AUTH PLAIN AHVzZXIAcGVuY2ls\r\n");
    EXPECT_REPLY(&c, "235 2.7.0 Authentication successful\r\n");
    cl_close(&c);
    fake_stop(f);

    /* AUTH before STARTTLS is forgotten by it (RFC 3207 4.2) */
    tls_config(&cfg);
    cfg.auth_mechanisms = "PLAIN";
    cfg.auth_user = "user";
    cfg.auth_password = "pencil";
    cfg.auth_require = 1;
    f = start(&cfg);
    REQUIRE(f != NULL);
    REQUIRE(cl_connect(&c, f) == 0);
    EXPECT_REPLY(&c, "220 fake.example LMTP ready\r\n");
    cl_send(&c, "LHLO a\r\n");
    EXPECT_REPLY(&c, "250-fake.example\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n"
                     "250-STARTTLS\r\n250 AUTH PLAIN\r\n");
    cl_send(&c, "AUTH PLAIN AHVzZXIAcGVuY2ls\r\n");
    EXPECT_REPLY(&c, "235 2.7.0 Authentication successful\r\n");
    cl_send(&c, "STARTTLS\r\n");
    EXPECT_REPLY(&c, "220 2.0.0 ready\r\n");
    REQUIRE(cl_tls(&c, ctx, NULL));
    cl_send(&c, "LHLO a\r\n");
    EXPECT_REPLY(&c, "250-fake.example\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n"
                     "250 AUTH PLAIN\r\n");
    cl_send(&c, "MAIL FROM:<s@x>\r\n");
    EXPECT_REPLY(&c, "530 5.7.0 Authentication required\r\n");
    cl_send(&c, "AUTH PLAIN AHVzZXIAcGVuY2ls\r\n");
    EXPECT_REPLY(&c, "235 2.7.0 Authentication successful\r\n");
    cl_close(&c);
    CHECK(fake_wait_idle(f, 1, 2000) == 1);
    CHECK(fake_auth_successes(f) == 2);
    fake_stop(f);

    /* advertised in extra_caps only: still 502 (an "advertised but broken" server) */
    fake_config_init(&cfg);
    cfg.extra_caps = "STARTTLS\nAUTH PLAIN";
    f = start(&cfg);
    REQUIRE(f != NULL);
    REQUIRE(cl_connect(&c, f) == 0);
    EXPECT_REPLY(&c, "220 fake.example LMTP ready\r\n");
    cl_send(&c, "LHLO a\r\n");
    EXPECT_REPLY(&c, "250-fake.example\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n"
                     "250-STARTTLS\r\n250 AUTH PLAIN\r\n");
    cl_send(&c, "STARTTLS\r\n");
    EXPECT_REPLY(&c, "502 5.5.1 Not implemented\r\n");
    cl_send(&c, "AUTH PLAIN AHVzZXIAcGVuY2ls\r\n");
    EXPECT_REPLY(&c, "502 5.5.1 Not implemented\r\n");
    cl_close(&c);
    fake_stop(f);
    SSL_CTX_free(ctx);
}

/* RFC 2033 4.3 with BDAT: one reply per accepted recipient after LAST, none without one. */
static void test_bdat_rules(void) {
    fake_config cfg;
    fake_lmtp *f;
    client c;
    char buf[256];
    size_t len;
    fake_config_init(&cfg);
    cfg.extra_caps = "CHUNKING";
    cfg.rules = "b@x=250,554;n@x=550";
    f = start(&cfg);
    REQUIRE(f != NULL);
    REQUIRE(cl_connect(&c, f) == 0);
    EXPECT_REPLY(&c, "220 fake.example LMTP ready\r\n");
    cl_send(&c, "LHLO a\r\n");
    EXPECT_REPLY(&c, "250-fake.example\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n"
                     "250 CHUNKING\r\n");
    /* no accepted recipient: BDAT n LAST gets no reply at all; the next reply is NOOP's */
    cl_send(&c, "MAIL FROM:<s@x>\r\nRCPT TO:<n@x>\r\nBDAT 5 LAST\r\nhelloNOOP\r\n");
    EXPECT_REPLY(&c, "250 2.1.0 OK\r\n");
    EXPECT_REPLY(&c, "550 5.1.1 <n@x> User doesn't exist\r\n");
    EXPECT_REPLY(&c, "250 2.0.0 OK\r\n");
    CHECK(cl_reply(&c, buf, sizeof buf, 200) == -1);
    /* ... and the transaction is over */
    cl_send(&c, "RCPT TO:<a@x>\r\n");
    EXPECT_REPLY(&c, "503 5.5.1 MAIL needed first\r\n");
    /* a non-LAST chunk without recipients: one 503; then LAST (0 bytes too): nothing */
    cl_send(&c, "MAIL FROM:<s@x>\r\nRCPT TO:<n@x>\r\nBDAT 3\r\nabcBDAT 0 LAST\r\nNOOP\r\n");
    EXPECT_REPLY(&c, "250 2.1.0 OK\r\n");
    EXPECT_REPLY(&c, "550 5.1.1 <n@x> User doesn't exist\r\n");
    EXPECT_REPLY(&c, "503 5.5.1 No valid recipients\r\n");
    EXPECT_REPLY(&c, "250 2.0.0 OK\r\n");
    CHECK(cl_reply(&c, buf, sizeof buf, 200) == -1);
    /* BDAT LAST without MAIL: one 503 */
    cl_send(&c, "BDAT 2 LAST\r\nxyNOOP\r\n");
    EXPECT_REPLY(&c, "503 5.5.1 MAIL needed first\r\n");
    EXPECT_REPLY(&c, "250 2.0.0 OK\r\n");
    /* three recipients, one refused: two replies after LAST, in order */
    cl_send(&c, "MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nRCPT TO:<n@x>\r\nRCPT TO:<b@x>\r\n"
                "BDAT 4\r\nab\r\nBDAT 4 LAST\r\ncd\r\nNOOP\r\n");
    EXPECT_REPLY(&c, "250 2.1.0 OK\r\n");
    EXPECT_REPLY(&c, "250 2.1.5 <a@x> OK\r\n");
    EXPECT_REPLY(&c, "550 5.1.1 <n@x> User doesn't exist\r\n");
    EXPECT_REPLY(&c, "250 2.1.5 <b@x> OK\r\n");
    EXPECT_REPLY(&c, "250 2.0.0 4 octets received\r\n");
    EXPECT_REPLY(&c, "250 2.0.0 <a@x> Saved\r\n");
    EXPECT_REPLY(&c, "554 5.6.0 <b@x> Message rejected\r\n");
    EXPECT_REPLY(&c, "250 2.0.0 OK\r\n");
    cl_close(&c);
    CHECK(fake_wait_idle(f, 1, 2000) == 1);
    REQUIRE(fake_message_count(f) == 1);
    CHECK_STR(fake_message(f, 0, &len), "ab\r\ncd\r\n");
    CHECK(fake_lockstep_violations(f) == 0);
    fake_stop(f);

    /* bdat_fail_chunk 2: the second chunk is rejected, the rest discarded */
    fake_config_init(&cfg);
    cfg.extra_caps = "CHUNKING";
    cfg.bdat_fail_chunk = 2;
    f = start(&cfg);
    REQUIRE(f != NULL);
    REQUIRE(cl_connect(&c, f) == 0);
    EXPECT_REPLY(&c, "220 fake.example LMTP ready\r\n");
    cl_send(&c, "LHLO a\r\n");
    cl_reply(&c, buf, sizeof buf, 3000);
    cl_send(&c, "MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\n"
                "BDAT 3\r\nabcBDAT 3\r\ndefBDAT 3 LAST\r\nghiNOOP\r\n");
    EXPECT_REPLY(&c, "250 2.1.0 OK\r\n");
    EXPECT_REPLY(&c, "250 2.1.5 <a@x> OK\r\n");
    EXPECT_REPLY(&c, "250 2.1.5 <b@x> OK\r\n");
    EXPECT_REPLY(&c, "250 2.0.0 3 octets received\r\n");
    EXPECT_REPLY(&c, "552 5.3.4 Message too big for system\r\n");
    EXPECT_REPLY(&c, "503 5.5.1 Transaction failed, chunk discarded\r\n");
    EXPECT_REPLY(&c, "250 2.0.0 OK\r\n");
    CHECK(cl_reply(&c, buf, sizeof buf, 200) == -1);
    /* a new transaction works; a LAST second chunk is rejected once per recipient */
    cl_send(&c, "MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nBDAT 2 LAST\r\nokMAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\n"
                "RCPT TO:<b@x>\r\nBDAT 1\r\nxBDAT 1 LAST\r\ny");
    EXPECT_REPLY(&c, "250 2.1.0 OK\r\n");
    EXPECT_REPLY(&c, "250 2.1.5 <a@x> OK\r\n");
    EXPECT_REPLY(&c, "250 2.0.0 <a@x> Saved\r\n");
    EXPECT_REPLY(&c, "250 2.1.0 OK\r\n");
    EXPECT_REPLY(&c, "250 2.1.5 <a@x> OK\r\n");
    EXPECT_REPLY(&c, "250 2.1.5 <b@x> OK\r\n");
    EXPECT_REPLY(&c, "250 2.0.0 1 octets received\r\n");
    EXPECT_REPLY(&c, "552 5.3.4 <a@x> Message too big for system\r\n");
    EXPECT_REPLY(&c, "552 5.3.4 <b@x> Message too big for system\r\n");
    cl_send(&c, "MAIL FROM:<s@x>\r\n");
    EXPECT_REPLY(&c, "250 2.1.0 OK\r\n");
    cl_close(&c);
    CHECK(fake_wait_idle(f, 1, 2000) == 1);
    REQUIRE(fake_message_count(f) == 1);
    CHECK_STR(fake_message(f, 0, &len), "ok");
    fake_stop(f);
}

/* Certificates for the tests, in a fresh directory; removed at the end. */
static int make_certs_dir(void) {
    const char *tmp = getenv("TMPDIR");
    snprintf(g_certs, sizeof g_certs, "%s/fake-selftest-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(g_certs)) return -1;
    if (fake_make_test_certs(g_certs) != 0) {
        fprintf(stderr, "fake_make_test_certs: %s\n", fake_start_error());
        return -1;
    }
    return 0;
}

static void remove_certs_dir(void) {
    static const char *const names[] = {"ca", "server", "wrong-name", "expired", "self-signed", "other-ca", "client"};
    size_t i;
    char p[600];
    for (i = 0; i < sizeof names / sizeof names[0]; ++i) {
        snprintf(p, sizeof p, "%s/%s.pem", g_certs, names[i]);
        unlink(p);
        snprintf(p, sizeof p, "%s/%s.key", g_certs, names[i]);
        unlink(p);
    }
    rmdir(g_certs);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN); /* the test's TLS client writes with write(); the server never needs it */
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
    test_fault_body_bytes();
    test_fault_stop_reading();
    test_byte_delay();
    test_families();
    test_sequential_and_concurrent();
    test_record_limit();
    if (make_certs_dir() != 0) {
        ++failures;
        fprintf(stderr, "cannot make the test certificates in %s\n", g_certs);
    } else {
        test_certs();
        test_starttls();
        test_starttls_pipelined_plaintext();
        test_implicit_tls();
        test_bad_server_certs();
        test_tls_faults();
        test_tls_require();
        test_client_certs();
        test_auth_policies();
        remove_certs_dir();
    }
    test_auth_plain_login();
    test_auth_scram();
    test_bdat_rules();
    printf("fake_selftest: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
