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
static char g_where[200]; /* which table case (and exchange) is running, for failure messages */

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        ++checks;                                                                        \
        if (!(cond)) {                                                                   \
            ++failures;                                                                  \
            fprintf(stderr, "%s:%d: %s: %sCHECK failed: %s\n", __FILE__, __LINE__, __func__, g_where, #cond); \
        }                                                                                \
    } while (0)

/* Fatal for the current test: no point going on. */
#define REQUIRE(cond)                                                                    \
    do {                                                                                 \
        ++checks;                                                                        \
        if (!(cond)) {                                                                   \
            ++failures;                                                                  \
            fprintf(stderr, "%s:%d: %s: %sREQUIRE failed: %s\n", __FILE__, __LINE__, __func__, g_where, #cond); \
            return;                                                                      \
        }                                                                                \
    } while (0)

#define CHECK_STR(got, want) CHECK_STR_(got, want, __LINE__)
static void CHECK_STR_(const char *got, const char *want, int line) {
    ++checks;
    if (!got || strcmp(got, want) != 0) {
        ++failures;
        fprintf(stderr, "%s:%d: %sgot  \"%s\"\n%s:%d: want \"%s\"\n", __FILE__, line, g_where, got ? got : "(null)",
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

/* ---- dialogues: a table of cases run by one driver ---------------------------------------- */

/* What a case checks on the server, after an exchange or at its end. */
enum {
    X_NONE = 0,
    X_MESSAGES,          /* fake_message_count == n */
    X_MESSAGE,           /* message n is text, exactly */
    X_NO_MESSAGE,        /* there is no message n */
    X_VIOLATIONS,        /* fake_lockstep_violations == n */
    X_FLUSHES,           /* fake_flushes == n */
    X_CONNECTIONS,       /* fake_connections == n */
    X_TRANSCRIPT,        /* the transcript is text: its length, then its bytes */
    X_TRANSCRIPT_TAIL,   /* the transcript ends with text */
    X_SENT,              /* fake_sent is text: its length, then its bytes */
    X_SENT_PREFIX,       /* fake_sent starts with text */
    X_AUTH_SUCCESSES,    /* fake_auth_successes == n */
    X_AUTH_FAILURES,     /* fake_auth_failures == n */
    X_AUTH_USER,         /* fake_auth_user is text */
    X_AUTH_MECH,         /* fake_auth_mechanism is text */
    X_MESSAGE_AUTH_USER, /* fake_message_auth_user(n) is text */
    X_MESSAGE_TLS,       /* fake_message_tls(n) == v */
    X_SCRIPT_ERROR,      /* fake_script_error is text, exactly */
    X_SCRIPT_DONE        /* fake_script_done == n */
};

typedef struct outcome {
    int what;
    long n;
    const char *text;
    long v;
} outcome;

#define NOTHING {.what = X_NONE}
#define MESSAGES(count) {.what = X_MESSAGES, .n = (count)}
#define MESSAGE(i, bytes) {.what = X_MESSAGE, .n = (i), .text = (bytes)}
#define NO_MESSAGE(i) {.what = X_NO_MESSAGE, .n = (i)}
#define VIOLATIONS(count) {.what = X_VIOLATIONS, .n = (count)}
#define FLUSHES(count) {.what = X_FLUSHES, .n = (count)}
#define CONNECTIONS(count) {.what = X_CONNECTIONS, .n = (count)}
#define TRANSCRIPT(bytes) {.what = X_TRANSCRIPT, .text = (bytes)}
#define TRANSCRIPT_TAIL(bytes) {.what = X_TRANSCRIPT_TAIL, .text = (bytes)}
#define SENT(bytes) {.what = X_SENT, .text = (bytes)}
#define SENT_PREFIX(bytes) {.what = X_SENT_PREFIX, .text = (bytes)}
#define AUTH_SUCCESSES(count) {.what = X_AUTH_SUCCESSES, .n = (count)}
#define AUTH_FAILURES(count) {.what = X_AUTH_FAILURES, .n = (count)}
#define AUTH_USER(name) {.what = X_AUTH_USER, .text = (name)}
#define AUTH_MECH(name) {.what = X_AUTH_MECH, .text = (name)}
#define MESSAGE_AUTH_USER(i, name) {.what = X_MESSAGE_AUTH_USER, .n = (i), .text = (name)}
#define MESSAGE_TLS(i, yes) {.what = X_MESSAGE_TLS, .n = (i), .v = (yes)}
#define SCRIPT_ERROR(text_) {.what = X_SCRIPT_ERROR, .text = (text_)}
#define SCRIPT_DONE(count) {.what = X_SCRIPT_DONE, .n = (count)}

/* How an exchange ends, after its replies. */
enum {
    END_NONE = 0,
    END_EOF,    /* the server closes (cl_eof: whatever else it sent is skipped) */
    END_CLOSED, /* the server closes, with nothing before the end (cl_reply returns 0) */
    END_RESET,  /* an RST */
    END_QUIET   /* no reply within quiet_ms */
};

/* One exchange: in this order, each part optional. */
typedef struct exchange {
    int hangup;              /* close the client and wait until the server saw every connection end */
    int connect;             /* (close the client and) connect a new one */
    const char *send;        /* then send send, fill_len copies of fill and tail, in one write */
    size_t send_len;         /* 0: strlen(send) */
    char fill;
    size_t fill_len;
    const char *tail;
    int pause_ms;            /* then sleep */
    const char *replies[10]; /* then read these replies, each exactly */
    int end;                 /* then END_... */
    int quiet_ms;
    outcome now[2];          /* then check these */
} exchange;

typedef struct dialogue {
    const char *name;
    void (*setup)(fake_config *cfg, long arg); /* after fake_config_init (NULL: the defaults) */
    long arg;
    exchange x[40];                            /* up to the first empty one; x[0] runs connected */
    outcome after[10];                         /* once the client closed and the server is idle */
} dialogue;

static int exchange_empty(const exchange *x) {
    return !x->hangup && !x->connect && !x->send && !x->fill_len && !x->tail && !x->pause_ms && !x->replies[0] &&
           !x->end && !x->now[0].what;
}

static void check_outcome(fake_lmtp *f, const outcome *o) {
    size_t len = 0, want_len = o->text ? strlen(o->text) : 0;
    const char *s;
    switch (o->what) {
    case X_NONE: break;
    case X_MESSAGES: CHECK(fake_message_count(f) == (size_t)o->n); break;
    case X_MESSAGE:
        s = fake_message(f, (size_t)o->n, &len);
        CHECK(s != NULL && len == want_len && memcmp(s, o->text, len) == 0);
        break;
    case X_NO_MESSAGE: CHECK(fake_message(f, (size_t)o->n, &len) == NULL); break;
    case X_VIOLATIONS: CHECK(fake_lockstep_violations(f) == (int)o->n); break;
    case X_FLUSHES: CHECK(fake_flushes(f) == (size_t)o->n); break;
    case X_CONNECTIONS: CHECK(fake_connections(f) == (size_t)o->n); break;
    case X_TRANSCRIPT:
        s = fake_transcript(f, &len);
        CHECK(len == want_len);
        CHECK_STR(s, o->text);
        break;
    case X_TRANSCRIPT_TAIL:
        s = fake_transcript(f, &len);
        CHECK(len > want_len && memcmp(s + len - want_len, o->text, want_len) == 0);
        break;
    case X_SENT:
        s = fake_sent(f, &len);
        CHECK(len == want_len);
        CHECK_STR(s, o->text);
        break;
    case X_SENT_PREFIX: CHECK(strncmp(fake_sent(f, &len), o->text, want_len) == 0); break;
    case X_AUTH_SUCCESSES: CHECK(fake_auth_successes(f) == (size_t)o->n); break;
    case X_AUTH_FAILURES: CHECK(fake_auth_failures(f) == (size_t)o->n); break;
    case X_AUTH_USER: CHECK_STR(fake_auth_user(f), o->text); break;
    case X_AUTH_MECH: CHECK_STR(fake_auth_mechanism(f), o->text); break;
    case X_MESSAGE_AUTH_USER: CHECK_STR(fake_message_auth_user(f, (size_t)o->n), o->text); break;
    case X_MESSAGE_TLS: CHECK(fake_message_tls(f, (size_t)o->n) == (int)o->v); break;
    case X_SCRIPT_ERROR: CHECK_STR(fake_script_error(f), o->text); break;
    case X_SCRIPT_DONE: CHECK(fake_script_done(f) == (size_t)o->n); break;
    default: CHECK(!"unknown outcome"); break;
    }
}

static void send_exchange(client *c, const exchange *x) {
    size_t n = x->send ? (x->send_len ? x->send_len : strlen(x->send)) : 0;
    size_t t = x->tail ? strlen(x->tail) : 0;
    char *buf = malloc(n + x->fill_len + t + 1);
    if (!buf) return;
    if (n) memcpy(buf, x->send, n);
    memset(buf + n, x->fill, x->fill_len);
    if (t) memcpy(buf + n + x->fill_len, x->tail, t);
    cl_send_n(c, buf, n + x->fill_len + t);
    free(buf);
}

/* Run one case: start the server, play every exchange, check, stop. */
static void run_dialogue(const dialogue *d) {
    fake_config cfg;
    fake_lmtp *f;
    client c;
    size_t i, r, connections = 1;
    char got[256];
    fake_config_init(&cfg);
    if (d->setup) d->setup(&cfg, d->arg);
    snprintf(g_where, sizeof g_where, "[%s] ", d->name);
    f = start(&cfg);
    REQUIRE(f != NULL);
    REQUIRE(cl_connect(&c, f) == 0);
    for (i = 0; i < sizeof d->x / sizeof d->x[0] && !exchange_empty(&d->x[i]); ++i) {
        const exchange *x = &d->x[i];
        snprintf(g_where, sizeof g_where, "[%s x[%d]] ", d->name, (int)i);
        if (x->hangup) {
            cl_close(&c);
            CHECK(fake_wait_idle(f, connections, 2000) == 1);
        }
        if (x->connect) {
            cl_close(&c);
            REQUIRE(cl_connect(&c, f) == 0);
            ++connections;
        }
        if (x->send || x->fill_len || x->tail) send_exchange(&c, x);
        if (x->pause_ms) sleep_ms(x->pause_ms);
        for (r = 0; r < sizeof x->replies / sizeof x->replies[0] && x->replies[r]; ++r) EXPECT_REPLY(&c, x->replies[r]);
        if (x->end == END_EOF) CHECK(cl_eof(&c, 2000));
        if (x->end == END_CLOSED) CHECK(cl_reply(&c, got, sizeof got, 2000) == 0);
        if (x->end == END_RESET) CHECK(cl_reset(&c));
        if (x->end == END_QUIET) CHECK(cl_reply(&c, got, sizeof got, x->quiet_ms) == -1);
        for (r = 0; r < 2; ++r) check_outcome(f, &x->now[r]);
    }
    snprintf(g_where, sizeof g_where, "[%s after] ", d->name);
    cl_close(&c);
    CHECK(fake_wait_idle(f, connections, 3000) == 1);
    for (i = 0; i < sizeof d->after / sizeof d->after[0]; ++i) check_outcome(f, &d->after[i]);
    fake_stop(f);
    g_where[0] = '\0';
}

/* A configuration fake_start() must refuse, and why. */
typedef struct refusal {
    const char *name;
    void (*setup)(fake_config *cfg, long arg);
    long arg;
    const char *why; /* a part of fake_start_error() */
} refusal;

static void run_refusal(const refusal *r) {
    fake_config cfg;
    fake_lmtp *f;
    fake_config_init(&cfg);
    r->setup(&cfg, r->arg);
    snprintf(g_where, sizeof g_where, "[%s] ", r->name);
    f = fake_start(&cfg);
    CHECK(f == NULL);
    CHECK(strstr(fake_start_error(), r->why) != NULL);
    if (f) fake_stop(f);
    g_where[0] = '\0';
}

#define GREETING "220 fake.example LMTP ready\r\n"
#define CAPS_HEAD "250-fake.example\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n"
#define CAPS CAPS_HEAD "250 8BITMIME\r\n"
#define CAPS_CHUNKING CAPS_HEAD "250-8BITMIME\r\n250 CHUNKING\r\n"
#define CAPS_AUTH_PLAIN CAPS_HEAD "250-8BITMIME\r\n250 AUTH PLAIN\r\n"
#define BYE "221 2.0.0 fake.example closing connection\r\n"
#define OK_MAIL "250 2.1.0 OK\r\n"
#define OK_250 "250 2.0.0 OK\r\n"
#define GO "354 go ahead\r\n"
#define R_AUTH_OK "235 2.7.0 Authentication successful\r\n"
#define R_AUTH_BAD "535 5.7.8 Authentication credentials invalid\r\n"
#define PLAIN_USER_PENCIL "AUTH PLAIN AHVzZXIAcGVuY2ls\r\n" /* \0user\0pencil */
#define GREET {.replies = {GREETING}}
#define LHLO_A {.send = "LHLO a\r\n", .replies = {CAPS}}

#define PT_LHLO "LHLO client.example\r\n"
#define PT_BATCH                                                                                       \
    "MAIL FROM:<sender@x> BODY=8BITMIME\r\nRCPT TO:<alice@x>\r\nRCPT TO:<full@x>\r\nRCPT TO:<nosuch@x>\r\n" \
    "RCPT TO:<temp@x>\r\nRCPT TO:<ALICE@x>\r\nDATA\r\n"
#define PT_BODY "Subject: dots\r\n\r\n..leading dot\r\n..\r\n...\r\na.b\r\n.\r\n"
#define AUTH_SCRIPT                                                                                     \
    "LHLO a\r\nAUTH PLAIN\r\ndXNlcgB1c2VyAHdyb25n\r\nAUTH PLAIN b3RoZXIAdXNlcgBwZW5jaWw=\r\n"                  \
    "AUTH PLAIN dXNlcnBlbmNpbA==\r\nAUTH PLAIN !!!!\r\nAUTH PLAIN =\r\nAUTH CRAM-MD5\r\nAUTH\r\n"             \
    "AUTH LOGIN\r\n*\r\nauth login\r\ndXNlcg==\r\ncGVuY2lM\r\nMAIL FROM:<s@x>\r\nAUTH LOGIN\r\n"             \
    "RSET\r\nAUTH EXTERNAL =\r\nAUTH LOGIN dXNlcg==\r\ncGVuY2ls\r\nQUIT\r\n"

static void setup_rules_size_caps(fake_config *cfg, long arg) {
    (void)arg;
    cfg->rules = kRules;
    cfg->size = 1000000;
    cfg->extra_caps = "DSN\nSMTPUTF8";
}
static void setup_size(fake_config *cfg, long arg) { cfg->size = (unsigned long)arg; }
static void setup_plain_old(fake_config *cfg, long arg) {
    (void)arg;
    cfg->enhanced = 0;
    cfg->eightbitmime = 0;
    cfg->pipelining = 0;
    cfg->hostname = "mx.test";
    cfg->rules = "a@x=250:Fine by me,451:first line|second line;b@x=550:5.7.1 go away";
}
static void setup_rules(fake_config *cfg, long arg) {
    static const char *const rules[] = {"a@x=250,451:first line|second line", "a@x=25"};
    cfg->rules = rules[arg];
}
static void setup_lockstep(fake_config *cfg, long arg) {
    (void)arg;
    cfg->pipelining = 0;
    cfg->reply_delay_ms = 30;
}
static void setup_chunking(fake_config *cfg, long arg) {
    cfg->extra_caps = "CHUNKING";
    cfg->rules = arg == 1 ? "b@x=250,554" : arg == 2 ? "b@x=250,554;n@x=550" : NULL;
    if (arg == 3) cfg->bdat_fail_chunk = 2;
}
/* The faults of the table, by arg. */
static void setup_fault(fake_config *cfg, long arg) {
    switch (arg) {
    case 0: /* 421 banner, then close */
        cfg->fault_on = "";
        cfg->fault_reply = "421 4.3.2 go away\r\n";
        cfg->fault_action = FAKE_CLOSE;
        break;
    case 1: /* a 554 banner only on the first connection (fault_times), then normal */
        cfg->fault_on = "";
        cfg->fault_reply = "554 5.3.2 not now\r\n";
        cfg->fault_action = FAKE_CLOSE;
        cfg->fault_times = 1;
        break;
    case 2: /* garbage instead of the reply to MAIL */
        cfg->fault_on = "mail from:";
        cfg->fault_reply = "hello\r\n";
        break;
    case 3: /* an extra reply after the per-recipient ones */
        cfg->fault_on = ".";
        cfg->fault_reply = "250 2.0.0 <ghost@x> Saved\r\n";
        cfg->fault_keep = 1;
        break;
    case 4: /* fault_skip + fault_times: only the second RCPT fails */
        cfg->fault_on = "RCPT";
        cfg->fault_reply = "451 4.3.0 try later\r\n";
        cfg->fault_skip = 1;
        cfg->fault_times = 1;
        break;
    case 5: /* close at DATA, without a reply */
        cfg->fault_on = "DATA";
        cfg->fault_action = FAKE_CLOSE;
        break;
    case 6: /* fewer replies than recipients after the final dot, then silence */
        cfg->fault_on = ".";
        cfg->fault_reply = "250 2.0.0 <r1@x> Saved\r\n";
        cfg->fault_action = FAKE_HANG;
        break;
    case 7: /* RST at RCPT */
        cfg->fault_on = "RCPT";
        cfg->fault_action = FAKE_RESET;
        break;
    default: /* not a fault action */
        cfg->fault_action = 42;
        break;
    }
}
/* AUTH: arg 0 = all four mechanisms; 1 = PLAIN; 2 = PLAIN, auth_require; 400..599 = PLAIN LOGIN
   with that auth_fail_code (PLAIN alone if out of range). */
static void setup_auth(fake_config *cfg, long arg) {
    cfg->auth_mechanisms = arg == 0 ? "plain, LOGIN SCRAM-SHA-256 external" : arg < 100 ? "PLAIN" : "PLAIN LOGIN";
    cfg->auth_user = "user";
    cfg->auth_password = "pencil";
    cfg->auth_require = arg == 2;
    if (arg >= 100) cfg->auth_fail_code = (int)arg;
    if (arg >= 100 && (arg < 400 || arg > 599)) cfg->auth_mechanisms = "PLAIN";
}
static void setup_broken_caps(fake_config *cfg, long arg) {
    (void)arg;
    cfg->extra_caps = "STARTTLS\nAUTH PLAIN";
}

/* Script mode: a transaction and the departures from a script. */
static const fake_step kScriptTransaction[] = {
    {.reply = "220 s.example ready\r\n"},
    {.expect = "LHLO a\r\n", .reply = "250 s.example\r\n"},
    {.expect = "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n", .reply = "250 ok\r\n250 ok\r\n354 go\r\n"},
    {.expect = "x\r\n.\r\n", .reply = "250 saved\r\n"},
    {.expect = "QUIT\r\n", .reply = "221 bye\r\n", .then = FAKE_CLOSE},
};
static const fake_step kScriptLockstep[] = {
    {.reply = "220 s\r\n"},
    {.expect = "LHLO a\r\n", .reply = "250 s\r\n"},
    {.expect = "MAIL FROM:<a@b>\r\n", .reply = "250 ok\r\n"},
    {.expect = "RCPT TO:<c@d>\r\n", .reply = "250 ok\r\n"},
};
static const fake_step kScriptEarlyAllowed[] = {
    {.reply = "220 s\r\n"},
    {.expect = "LHLO a\r\n", .reply = "250 s\r\n"},
    {.expect = "MAIL FROM:<a@b>\r\n", .reply = "250 ok\r\n", .allow_early = 1},
    {.expect = "RCPT TO:<c@d>\r\n", .reply = "250 ok\r\n"},
};
static const fake_step kScriptBadThen[] = {{.reply = "220 s\r\n", .then = FAKE_CLOSE}, {.expect = "QUIT\r\n"}};
static const fake_step kScriptDripNoDelay[] = {{.reply = "250-x\r\n", .then = FAKE_DRIP}};
static const fake_step kScriptThen99[] = {{.reply = "220 s\r\n", .then = 99}};
static const fake_step kScriptHang[] = {{.reply = "220 h\r\n"}, {.expect = "LHLO a\r\n", .then = FAKE_HANG}};
static void setup_script(fake_config *cfg, long arg) {
    switch (arg) {
    case 0: cfg->script = kScriptTransaction, cfg->script_len = sizeof kScriptTransaction / sizeof kScriptTransaction[0]; break;
    case 1: cfg->script = kScriptLockstep, cfg->script_len = sizeof kScriptLockstep / sizeof kScriptLockstep[0]; break;
    case 2: cfg->script = kScriptEarlyAllowed, cfg->script_len = sizeof kScriptEarlyAllowed / sizeof kScriptEarlyAllowed[0]; break;
    case 3: cfg->script = kScriptBadThen, cfg->script_len = 2; break;
    case 4: cfg->script = kScriptDripNoDelay, cfg->script_len = 1; break;
    case 5: cfg->script = kScriptThen99, cfg->script_len = 1; break;
    case 6: cfg->script = NULL, cfg->script_len = 3; break;
    case 8: cfg->script = kScriptHang, cfg->script_len = 2; break;
    case 7: /* a script and rules: the script alone speaks */
        cfg->script = kScriptLockstep, cfg->script_len = 4;
        cfg->rules = "a@x=550";
        break;
    default: break;
    }
}

static const dialogue kDialogues[] = {
    {"pipelined transaction", setup_rules_size_caps, 0,
     {GREET,
      {.send = PT_LHLO, .replies = {CAPS_HEAD "250-8BITMIME\r\n250-SIZE 1000000\r\n250-DSN\r\n250 SMTPUTF8\r\n"}},
      /* one write: the server must answer with one flush */
      {.send = PT_BATCH,
       .replies = {OK_MAIL, "250 2.1.5 <alice@x> OK\r\n", "250 2.1.5 <full@x> OK\r\n",
                   "550 5.1.1 <nosuch@x> User doesn't exist\r\n", "250 2.1.5 <temp@x> OK\r\n",
                   "250 2.1.5 <ALICE@x> OK\r\n", GO}},
      /* one reply per accepted recipient, in RCPT order, the duplicate included */
      {.send = PT_BODY,
       .replies = {"250 2.0.0 <alice@x> Saved\r\n", "552 5.2.2 <full@x> Quota exceeded\r\n",
                   "452 4.2.2 <temp@x> Mailbox is full, try again later\r\n", "250 2.0.0 <ALICE@x> Saved\r\n"}},
      {.send = "QUIT\r\n", .replies = {BYE}, .end = END_EOF}},
     {MESSAGES(1),
      MESSAGE(0, "Subject: dots\r\n\r\n.leading dot\r\n.\r\n..\r\na.b\r\n"),
      NO_MESSAGE(1),
      TRANSCRIPT(PT_LHLO PT_BATCH PT_BODY "QUIT\r\n"),
      SENT_PREFIX(GREETING "250-fake.example\r\n"),
      FLUSHES(5), /* greeting, LHLO, the MAIL..DATA batch, the body, QUIT */
      VIOLATIONS(0),
      CONNECTIONS(1)}},

    /* The body arrives cut at every awkward place: the decoder keeps its state across reads. */
    {"body split",
     NULL,
     0,
     {GREET,
      LHLO_A,
      {.send = "MAIL FROM:<>\r\nRCPT TO:<bob@y>\r\nDATA\r\n", .replies = {OK_MAIL, "250 2.1.5 <bob@y> OK\r\n", GO}},
      {.send = "line one\r", .pause_ms = 15},
      {.send = "\n.", .pause_ms = 15},
      {.send = ".two\r\n.", .pause_ms = 15},
      {.send = "\rx\r\n", .pause_ms = 15},
      {.send = "end\r\n", .pause_ms = 15},
      {.send = ".", .pause_ms = 15},
      {.send = "\r", .pause_ms = 15},
      {.send = "\n", .pause_ms = 15, .replies = {"250 2.0.0 <bob@y> Saved\r\n"}},
      /* An empty message: "." right after 354. */
      {.send = "MAIL FROM:<a@b>\r\nRCPT TO:<bob@y>\r\nDATA\r\n", .replies = {OK_MAIL, "250 2.1.5 <bob@y> OK\r\n", GO}},
      {.send = ".\r\n", .replies = {"250 2.0.0 <bob@y> Saved\r\n"}},
      /* A bare LF does not start a line: "\n.\r\n" is not the end. */
      {.send = "MAIL FROM:<a@b>\r\nRCPT TO:<bob@y>\r\nDATA\r\n", .replies = {OK_MAIL, "250 2.1.5 <bob@y> OK\r\n", GO}},
      {.send = "a\n.\r\nb\r\n.\r\n", .replies = {"250 2.0.0 <bob@y> Saved\r\n"}}},
     {MESSAGES(3),
      /* ".\rx" is not the end: the dot is dropped (it starts a line), the CR kept */
      MESSAGE(0, "line one\r\n.two\r\n\rx\r\nend\r\n"),
      MESSAGE(1, ""),
      MESSAGE(2, "a\n.\r\nb\r\n")}},

    {"errors",
     setup_size,
     100,
     {GREET,
      {.send = "MAIL FROM:<a@b>\r\n", .replies = {"503 5.5.1 LHLO first\r\n"}},
      {.send = "EHLO a\r\n", .replies = {"500 5.5.1 Use LHLO\r\n"}},
      {.send = "HELO a\r\n", .replies = {"500 5.5.1 Use LHLO\r\n"}},
      {.send = "LHLO\r\n", .replies = {"501 5.5.4 Syntax: LHLO hostname\r\n"}},
      {.send = "lhlo a\r\n", .replies = {CAPS_HEAD "250-8BITMIME\r\n250 SIZE 100\r\n"}},
      {.send = "RCPT TO:<a@b>\r\n", .replies = {"503 5.5.1 MAIL needed first\r\n"}},
      {.send = "DATA\r\n", .replies = {"503 5.5.1 MAIL needed first\r\n"}},
      {.send = "MAIL FROM: <a@b>\r\n", .replies = {"501 5.5.4 Syntax: MAIL FROM:<address> [parameters]\r\n"}},
      {.send = "MAIL FROM:<a@b> RET=FULL\r\n", .replies = {"555 5.5.4 Unsupported parameter RET\r\n"}}, /* no DSN */
      {.send = "MAIL FROM:<a@b> SIZE=101\r\n",
       .replies = {"552 5.3.4 Message size exceeds fixed maximum message size\r\n"}},
      {.send = "MAIL FROM:<\xc3\xa9@b>\r\n", .replies = {"553 5.6.7 Non-ASCII address needs SMTPUTF8\r\n"}},
      {.send = "mail FROM:<a@b> SIZE=50\r\n", .replies = {OK_MAIL}},
      {.send = "MAIL FROM:<a@b>\r\n", .replies = {"503 5.5.1 MAIL already given\r\n"}},
      {.send = "DATA\r\n", .replies = {"503 5.5.1 No valid recipients\r\n"}},
      {.send = "RCPT TO:<>\r\n", .replies = {"501 5.1.3 Empty recipient\r\n"}},
      {.send = "RCPT TO:<a@b> NOTIFY=NEVER\r\n", .replies = {"555 5.5.4 Unsupported parameter NOTIFY\r\n"}},
      {.send = "rcpt to:<a@b>\r\n", .replies = {"250 2.1.5 <a@b> OK\r\n"}},
      {.send = "DATA\r\n", .replies = {GO}},
      /* 152 bytes > SIZE 100 */
      {.fill = 'z', .fill_len = 150, .tail = "\r\n.\r\n", .replies = {"552 5.3.4 <a@b> Message too big\r\n"}},
      {.send = "VRFY x\r\n", .replies = {"252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery\r\n"}},
      {.send = "EXPN list\r\n",
       .replies = {"250-2.1.5 alpha <alpha@fake.example>\r\n250-2.1.5 beta <beta@fake.example>\r\n"
                   "250 2.1.5 gamma <gamma@fake.example>\r\n"}},
      {.send = "HELP\r\n",
       .replies = {"214-2.0.0 fake LMTP server, commands:\r\n"
                   "214-2.0.0 LHLO MAIL RCPT DATA BDAT RSET NOOP VRFY EXPN HELP ETRN QUIT\r\n"
                   "214 2.0.0 End of HELP\r\n"}},
      {.send = "ETRN x\r\nNOOP\r\nRSET\r\nSTARTTLS\r\nFOO bar\r\n\r\n",
       .replies = {"250 2.0.0 Queuing started\r\n", OK_250, OK_250, "502 5.5.1 Not implemented\r\n",
                   "500 5.5.2 Unknown command\r\n", "500 5.5.2 Syntax error\r\n"}},
      /* A 1500-byte line, then garbage with NULs and high bytes: answered, never fatal. */
      {.fill = 'A', .fill_len = 1500, .tail = "\r\n", .replies = {"500 5.5.2 Line too long\r\n"}},
      /* exactly 1000 bytes with CRLF is fine (998 + CRLF = 1000); 1001 is not */
      {.send = "NOOP ", .fill = 'a', .fill_len = 993, .tail = "\r\n", .replies = {OK_250}},
      {.send = "NOOP ", .fill = 'a', .fill_len = 994, .tail = "\r\n", .replies = {"500 5.5.2 Line too long\r\n"}},
      {.send = "\x00\xff\x01garbage\r\n", .send_len = 12, .replies = {"500 5.5.2 Unknown command\r\n"}},
      {.send = "QUIT\r\n", .replies = {BYE}}},
     {MESSAGES(1)}},

    {"no enhanced codes, custom texts",
     setup_plain_old,
     0,
     {{.replies = {"220 mx.test LMTP ready\r\n"}},
      {.send = "LHLO a\r\n", .replies = {"250 mx.test\r\n"}},
      {.send = "MAIL FROM:<s@x>\r\n", .replies = {"250 OK\r\n"}},
      {.send = "RCPT TO:<a@x>\r\n", .replies = {"250 Fine by me\r\n"}},
      {.send = "RCPT TO:<b@x>\r\n", .replies = {"550 5.7.1 go away\r\n"}},
      {.send = "DATA\r\n", .replies = {GO}},
      {.send = "hi\r\n.\r\n", .replies = {"451-first line\r\n451 second line\r\n"}}},
     {VIOLATIONS(0)}},

    /* the same text with enhanced codes on: the derived code goes on every line */
    {"custom multi-line text with enhanced codes",
     setup_rules,
     0,
     {GREET,
      LHLO_A,
      {.send = "MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nDATA\r\n", .replies = {OK_MAIL, "250 2.1.5 <a@x> OK\r\n", GO}},
      {.send = "hi\r\n.\r\n", .replies = {"451-4.3.0 first line\r\n451 4.3.0 second line\r\n"}}},
     {NOTHING}},

    {"lockstep without PIPELINING",
     setup_lockstep,
     0,
     {/* a client that waits for every reply: no violation */
      GREET,
      {.send = "LHLO a\r\n", .replies = {"250-fake.example\r\n250-ENHANCEDSTATUSCODES\r\n250 8BITMIME\r\n"}},
      {.send = "MAIL FROM:<a@b>\r\n", .replies = {OK_MAIL}},
      {.send = "RCPT TO:<c@d>\r\n", .replies = {"250 2.1.5 <c@d> OK\r\n"}},
      {.send = "DATA\r\n", .replies = {GO}},
      {.send = "x\r\n.\r\n", .replies = {"250 2.0.0 <c@d> Saved\r\n"}},
      {.send = "QUIT\r\n", .replies = {BYE}},
      {.hangup = 1, .now = {VIOLATIONS(0), FLUSHES(7)}},
      /* a client that pipelines without PIPELINING: caught in the same read */
      {.connect = 1, .replies = {GREETING}},
      {.send = "LHLO a\r\n", .replies = {"250-fake.example\r\n250-ENHANCEDSTATUSCODES\r\n250 8BITMIME\r\n"}},
      {.send = "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n",
       .replies = {OK_MAIL, "250 2.1.5 <c@d> OK\r\n"},
       .now = {VIOLATIONS(1)}},
      /* ... or during the reply delay */
      {.send = "RSET\r\n", .pause_ms = 5},
      {.send = "NOOP\r\n", .replies = {OK_250, OK_250}, .now = {VIOLATIONS(2)}}},
     {NOTHING}},

    /* with PIPELINING: a batch is fine, but not bytes after DATA before 354 */
    {"lockstep with PIPELINING",
     NULL,
     0,
     {GREET,
      LHLO_A,
      {.send = "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nDATA\r\n",
       .replies = {OK_MAIL, "250 2.1.5 <c@d> OK\r\n", "250 2.1.5 <e@f> OK\r\n", GO},
       .now = {VIOLATIONS(0)}},
      {.send = "x\r\n.\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\ny\r\n.\r\nQUIT\r\n",
       .replies = {"250 2.0.0 <c@d> Saved\r\n", "250 2.0.0 <e@f> Saved\r\n", OK_MAIL, "250 2.1.5 <c@d> OK\r\n", GO,
                   "250 2.0.0 <c@d> Saved\r\n", BYE},
       .now = {VIOLATIONS(1), MESSAGES(2)}}},
     {NOTHING}},

    {"BDAT",
     setup_chunking,
     1,
     {GREET,
      {.send = "LHLO a\r\n", .replies = {CAPS_CHUNKING}},
      /* BDAT without a transaction still swallows its bytes */
      {.send = "BDAT 6\r\nQUIT\r\n", .replies = {"503 5.5.1 MAIL needed first\r\n"}},
      {.send = "MAIL FROM:<a@x>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\nBDAT 7\r\n.x\r\nQUI",
       .replies = {OK_MAIL, "250 2.1.5 <a@x> OK\r\n", "250 2.1.5 <b@x> OK\r\n", "250 2.0.0 7 octets received\r\n"}},
      {.send = "BDAT 3 LAST\r\nT\r\n", .replies = {"250 2.0.0 <a@x> Saved\r\n", "554 5.6.0 <b@x> Message rejected\r\n"}},
      {.send = "MAIL FROM:<a@x>\r\nRCPT TO:<a@x>\r\nBDAT 0 LAST\r\n",
       .replies = {OK_MAIL, "250 2.1.5 <a@x> OK\r\n", "250 2.0.0 <a@x> Saved\r\n"}}},
     {MESSAGES(2),
      MESSAGE(0, ".x\r\nQUIT\r\n"), /* no unstuffing in BDAT */
      MESSAGE(1, ""),
      VIOLATIONS(0)}},

    /* RFC 2033 4.3 with BDAT: one reply per accepted recipient after LAST, none without one. */
    {"BDAT reply rules",
     setup_chunking,
     2,
     {GREET,
      {.send = "LHLO a\r\n", .replies = {CAPS_CHUNKING}},
      /* no accepted recipient: BDAT n LAST gets no reply at all; the next reply is NOOP's */
      {.send = "MAIL FROM:<s@x>\r\nRCPT TO:<n@x>\r\nBDAT 5 LAST\r\nhelloNOOP\r\n",
       .replies = {OK_MAIL, "550 5.1.1 <n@x> User doesn't exist\r\n", OK_250},
       .end = END_QUIET,
       .quiet_ms = 200},
      /* ... and the transaction is over */
      {.send = "RCPT TO:<a@x>\r\n", .replies = {"503 5.5.1 MAIL needed first\r\n"}},
      /* a non-LAST chunk without recipients: one 503; then LAST (0 bytes too): nothing */
      {.send = "MAIL FROM:<s@x>\r\nRCPT TO:<n@x>\r\nBDAT 3\r\nabcBDAT 0 LAST\r\nNOOP\r\n",
       .replies = {OK_MAIL, "550 5.1.1 <n@x> User doesn't exist\r\n", "503 5.5.1 No valid recipients\r\n", OK_250},
       .end = END_QUIET,
       .quiet_ms = 200},
      /* BDAT LAST without MAIL: one 503 */
      {.send = "BDAT 2 LAST\r\nxyNOOP\r\n", .replies = {"503 5.5.1 MAIL needed first\r\n", OK_250}},
      /* three recipients, one refused: two replies after LAST, in order */
      {.send = "MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nRCPT TO:<n@x>\r\nRCPT TO:<b@x>\r\n"
               "BDAT 4\r\nab\r\nBDAT 4 LAST\r\ncd\r\nNOOP\r\n",
       .replies = {OK_MAIL, "250 2.1.5 <a@x> OK\r\n", "550 5.1.1 <n@x> User doesn't exist\r\n",
                   "250 2.1.5 <b@x> OK\r\n", "250 2.0.0 4 octets received\r\n", "250 2.0.0 <a@x> Saved\r\n",
                   "554 5.6.0 <b@x> Message rejected\r\n", OK_250}}},
     {MESSAGES(1), MESSAGE(0, "ab\r\ncd\r\n"), VIOLATIONS(0)}},

    /* bdat_fail_chunk 2: the second chunk is rejected, the rest discarded */
    {"BDAT chunk rejected",
     setup_chunking,
     3,
     {GREET,
      {.send = "LHLO a\r\n", .replies = {CAPS_CHUNKING}},
      {.send = "MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\nBDAT 3\r\nabcBDAT 3\r\ndefBDAT 3 LAST\r\nghiNOOP\r\n",
       .replies = {OK_MAIL, "250 2.1.5 <a@x> OK\r\n", "250 2.1.5 <b@x> OK\r\n", "250 2.0.0 3 octets received\r\n",
                   "552 5.3.4 Message too big for system\r\n", "503 5.5.1 Transaction failed, chunk discarded\r\n",
                   OK_250},
       .end = END_QUIET,
       .quiet_ms = 200},
      /* a new transaction works; a LAST second chunk is rejected once per recipient */
      {.send = "MAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nBDAT 2 LAST\r\nokMAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\n"
               "RCPT TO:<b@x>\r\nBDAT 1\r\nxBDAT 1 LAST\r\ny",
       .replies = {OK_MAIL, "250 2.1.5 <a@x> OK\r\n", "250 2.0.0 <a@x> Saved\r\n", OK_MAIL, "250 2.1.5 <a@x> OK\r\n",
                   "250 2.1.5 <b@x> OK\r\n", "250 2.0.0 1 octets received\r\n",
                   "552 5.3.4 <a@x> Message too big for system\r\n", "552 5.3.4 <b@x> Message too big for system\r\n"}},
      {.send = "MAIL FROM:<s@x>\r\n", .replies = {OK_MAIL}}},
     {MESSAGES(1), MESSAGE(0, "ok")}},

    {"fault: 421 banner, then close", setup_fault, 0, {{.replies = {"421 4.3.2 go away\r\n"}, .end = END_EOF}}, {NOTHING}},

    {"fault: a 554 banner on the first connection only",
     setup_fault,
     1,
     {{.replies = {"554 5.3.2 not now\r\n"}, .end = END_EOF}, {.connect = 1, .replies = {GREETING}}, LHLO_A},
     {CONNECTIONS(2)}},

    /* MAIL is not executed: RCPT finds no transaction */
    {"fault: garbage instead of a reply",
     setup_fault,
     2,
     {GREET,
      LHLO_A,
      {.send = "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n", .replies = {"hello\r\n", "503 5.5.1 MAIL needed first\r\n"}}},
     {NOTHING}},

    {"fault: an extra reply after the per-recipient ones (fault_keep)",
     setup_fault,
     3,
     {GREET,
      LHLO_A,
      {.send = "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n", .replies = {OK_MAIL, "250 2.1.5 <c@d> OK\r\n", GO}},
      {.send = "x\r\n.\r\n", .replies = {"250 2.0.0 <c@d> Saved\r\n", "250 2.0.0 <ghost@x> Saved\r\n"}}},
     {NOTHING}},

    {"fault: fault_skip and fault_times",
     setup_fault,
     4,
     {GREET,
      LHLO_A,
      {.send = "MAIL FROM:<a@b>\r\nRCPT TO:<r1@x>\r\nRCPT TO:<r2@x>\r\nRCPT TO:<r3@x>\r\nDATA\r\n",
       .replies = {OK_MAIL, "250 2.1.5 <r1@x> OK\r\n", "451 4.3.0 try later\r\n", "250 2.1.5 <r3@x> OK\r\n", GO}},
      {.send = ".\r\n", .replies = {"250 2.0.0 <r1@x> Saved\r\n", "250 2.0.0 <r3@x> Saved\r\n"}}},
     {NOTHING}},

    {"fault: close at DATA",
     setup_fault,
     5,
     {GREET,
      LHLO_A,
      {.send = "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n",
       .replies = {OK_MAIL, "250 2.1.5 <c@d> OK\r\n"},
       .end = END_CLOSED}},
     {MESSAGES(0)}},

    {"fault: fewer final replies, then silence",
     setup_fault,
     6,
     {GREET,
      LHLO_A,
      {.send = "MAIL FROM:<a@b>\r\nRCPT TO:<r1@x>\r\nRCPT TO:<r2@x>\r\nDATA\r\n",
       .replies = {OK_MAIL, "250 2.1.5 <r1@x> OK\r\n", "250 2.1.5 <r2@x> OK\r\n", GO}},
      {.send = "body\r\n.\r\n",
       .replies = {"250 2.0.0 <r1@x> Saved\r\n"},
       .end = END_QUIET,
       .quiet_ms = 300,
       .now = {MESSAGES(1), MESSAGE(0, "body\r\n")}},
      {.send = "QUIT\r\n"}}, /* still read and recorded while hanging */
     {TRANSCRIPT_TAIL("QUIT\r\n")}},

    {"fault: RST at RCPT",
     setup_fault,
     7,
     {GREET, LHLO_A, {.send = "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n", .replies = {OK_MAIL}, .end = END_RESET}},
     {NOTHING}},

    /* PLAIN with an initial response; a second AUTH is refused; the message knows the user */
    {"AUTH PLAIN",
     setup_auth,
     0,
     {GREET,
      {.send = PLAIN_USER_PENCIL, .replies = {"503 5.5.1 LHLO first\r\n"}},
      {.send = "LHLO a\r\n", .replies = {CAPS_HEAD "250-8BITMIME\r\n250 AUTH PLAIN LOGIN SCRAM-SHA-256 EXTERNAL\r\n"}},
      {.send = PLAIN_USER_PENCIL, .replies = {R_AUTH_OK}},
      {.send = PLAIN_USER_PENCIL, .replies = {"503 5.5.1 Already authenticated\r\n"}},
      {.send = "MAIL FROM:<s@x> AUTH=<>\r\nRCPT TO:<a@x>\r\nDATA\r\n", .replies = {OK_MAIL, "250 2.1.5 <a@x> OK\r\n", GO}},
      {.send = "x\r\n.\r\n", .replies = {"250 2.0.0 <a@x> Saved\r\n"}}},
     {AUTH_USER("user"),
      AUTH_MECH("PLAIN"),
      MESSAGE_AUTH_USER(0, "user"),
      MESSAGE_TLS(0, 0),
      AUTH_SUCCESSES(1),
      AUTH_FAILURES(2)}}, /* the 503s */

    /* everything else on one connection, each exchange failing or not */
    {"AUTH exchanges",
     setup_auth,
     0,
     {GREET,
      {.send = "LHLO a\r\n", .replies = {CAPS_HEAD "250-8BITMIME\r\n250 AUTH PLAIN LOGIN SCRAM-SHA-256 EXTERNAL\r\n"}},
      /* PLAIN without initial response, authzid = user */
      {.send = "AUTH PLAIN\r\n", .replies = {"334 \r\n"}},
      {.send = "dXNlcgB1c2VyAHdyb25n\r\n", .replies = {R_AUTH_BAD}}, /* user\0user\0wrong */
      {.send = "AUTH PLAIN b3RoZXIAdXNlcgBwZW5jaWw=\r\n", .replies = {R_AUTH_BAD}}, /* authzid mismatch */
      {.send = "AUTH PLAIN dXNlcnBlbmNpbA==\r\n", .replies = {"501 5.5.2 Malformed PLAIN response\r\n"}}, /* no NULs */
      {.send = "AUTH PLAIN !!!!\r\n", .replies = {"501 5.5.2 Invalid base64 data\r\n"}},
      {.send = "AUTH PLAIN =\r\n", .replies = {"501 5.5.2 Malformed PLAIN response\r\n"}}, /* empty response */
      {.send = "AUTH CRAM-MD5\r\n", .replies = {"504 5.5.4 Unrecognized authentication type\r\n"}},
      {.send = "AUTH\r\n", .replies = {"501 5.5.4 Syntax: AUTH mechanism [initial-response]\r\n"}},
      /* LOGIN: cancel, wrong password, initial response */
      {.send = "AUTH LOGIN\r\n", .replies = {"334 VXNlcm5hbWU6\r\n"}},
      {.send = "*\r\n", .replies = {"501 5.7.0 Authentication canceled\r\n"}},
      {.send = "auth login\r\n", .replies = {"334 VXNlcm5hbWU6\r\n"}},
      {.send = "dXNlcg==\r\n", .replies = {"334 UGFzc3dvcmQ6\r\n"}},
      {.send = "cGVuY2lM\r\n", .replies = {R_AUTH_BAD}}, /* penciL */
      /* inside a transaction */
      {.send = "MAIL FROM:<s@x>\r\n", .replies = {OK_MAIL}},
      {.send = "AUTH LOGIN\r\n", .replies = {"503 5.5.1 AUTH not permitted during a mail transaction\r\n"}},
      {.send = "RSET\r\n", .replies = {OK_250}},
      /* EXTERNAL without TLS */
      {.send = "AUTH EXTERNAL =\r\n", .replies = {R_AUTH_BAD}},
      {.send = "AUTH LOGIN dXNlcg==\r\n", .replies = {"334 UGFzc3dvcmQ6\r\n"}},
      {.send = "cGVuY2ls\r\n", .replies = {R_AUTH_OK}},
      {.send = "QUIT\r\n", .replies = {BYE}}},
     {AUTH_SUCCESSES(1),
      AUTH_FAILURES(11),
      AUTH_MECH("LOGIN"),
      AUTH_USER("user"),
      TRANSCRIPT(AUTH_SCRIPT), /* exactly what the client sent, secrets included */
      VIOLATIONS(0)}},

    /* AUTH PLAIN with an initial response may be followed at once (RFC 4954 4), a bare AUTH may not */
    {"AUTH and pipelining",
     setup_auth,
     1,
     {GREET,
      {.send = "LHLO a\r\n", .replies = {CAPS_AUTH_PLAIN}},
      {.send = "AUTH PLAIN AHVzZXIAcGVuY2ls\r\nMAIL FROM:<s@x>\r\n",
       .replies = {R_AUTH_OK, OK_MAIL},
       .now = {VIOLATIONS(0)}},
      {.connect = 1, .replies = {GREETING}},
      {.send = "LHLO a\r\n", .replies = {CAPS_AUTH_PLAIN}},
      {.send = "AUTH PLAIN\r\nAHVzZXIAcGVuY2ls\r\n", .replies = {"334 \r\n", R_AUTH_OK}, .now = {VIOLATIONS(1)}}},
     {NOTHING}},

    {"auth_require: MAIL before AUTH gets 530",
     setup_auth,
     2,
     {GREET,
      {.send = "LHLO a\r\n", .replies = {CAPS_AUTH_PLAIN}},
      {.send = "MAIL FROM:<s@x>\r\n", .replies = {"530 5.7.0 Authentication required\r\n"}},
      {.send = PLAIN_USER_PENCIL, .replies = {R_AUTH_OK}},
      {.send = "MAIL FROM:<s@x>\r\nRCPT TO:<r@x>\r\nDATA\r\n", .replies = {OK_MAIL, "250 2.1.5 <r@x> OK\r\n", GO}},
      {.send = "y\r\n.\r\n", .replies = {"250 2.0.0 <r@x> Saved\r\n"}}},
     {NOTHING}},

#define FORCED_AUTH_FAILURE(code, reply)                                                              \
    {"auth_fail_code " #code ": the code at once, no 334",                                            \
     setup_auth,                                                                                      \
     code,                                                                                            \
     {GREET,                                                                                          \
      {.send = "LHLO a\r\n", .replies = {CAPS_HEAD "250-8BITMIME\r\n250 AUTH PLAIN LOGIN\r\n"}},       \
      {.send = "AUTH LOGIN\r\n", .replies = {reply}},                                                 \
      {.send = PLAIN_USER_PENCIL, .replies = {reply}}},                                               \
     {AUTH_FAILURES(2)}}
    FORCED_AUTH_FAILURE(454, "454 4.7.0 Temporary authentication failure\r\n"),
    FORCED_AUTH_FAILURE(534, "534 5.7.9 Authentication mechanism is too weak\r\n"),
    FORCED_AUTH_FAILURE(538, "538 5.7.11 Encryption required for requested authentication mechanism\r\n"),

    /* advertised in extra_caps only: still 502 (an "advertised but broken" server) */
    {"STARTTLS and AUTH advertised but not implemented",
     setup_broken_caps,
     0,
     {GREET,
      {.send = "LHLO a\r\n", .replies = {CAPS_HEAD "250-8BITMIME\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n"}},
      {.send = "STARTTLS\r\n", .replies = {"502 5.5.1 Not implemented\r\n"}},
      {.send = PLAIN_USER_PENCIL, .replies = {"502 5.5.1 Not implemented\r\n"}}},
     {NOTHING}},

    /* Script mode: the exact bytes, the replies, one flush per reply, then the close it says */
    {"script: a transaction",
     setup_script,
     0,
     {{.replies = {"220 s.example ready\r\n"}},
      {.send = "LHLO a\r\n", .replies = {"250 s.example\r\n"}},
      {.send = "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n", .replies = {"250 ok\r\n", "250 ok\r\n", "354 go\r\n"}},
      {.send = "x\r\n.\r\n", .replies = {"250 saved\r\n"}},
      {.send = "QUIT\r\n", .replies = {"221 bye\r\n"}, .end = END_CLOSED}},
     {SCRIPT_ERROR(""),
      SCRIPT_DONE(1),
      FLUSHES(5),
      VIOLATIONS(0),
      MESSAGES(0), /* no parser: nothing is stored */
      TRANSCRIPT("LHLO a\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n"),
      SENT("220 s.example ready\r\n250 s.example\r\n250 ok\r\n250 ok\r\n354 go\r\n250 saved\r\n221 bye\r\n")}},

    /* A departure: the first byte that differs; no reply, the rest is recorded. */
    {"script: other bytes than expected",
     setup_script,
     1,
     {{.replies = {"220 s\r\n"}},
      {.send = "LHLO a\r\n", .replies = {"250 s\r\n"}},
      {.send = "MAIL FROM:<x@b>\r\n", .end = END_QUIET, .quiet_ms = 200},
      {.send = "NOOP\r\n", .end = END_QUIET, .quiet_ms = 50}},
     {SCRIPT_ERROR("connection 0, script[2] of 4: expected \"MAIL FROM:<a@b>\\r\\n\" but received "
                   "\"MAIL FROM:<x@b>\\r\\n\""),
      SCRIPT_DONE(0),
      TRANSCRIPT("LHLO a\r\nMAIL FROM:<x@b>\r\nNOOP\r\n")}},

    /* Lockstep: RCPT came before the reply to MAIL; reported, counted, and the script goes on. */
    {"script: bytes before the reply",
     setup_script,
     1,
     {{.replies = {"220 s\r\n"}},
      {.send = "LHLO a\r\n", .replies = {"250 s\r\n"}},
      {.send = "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n", .replies = {"250 ok\r\n", "250 ok\r\n"}}},
     {SCRIPT_ERROR("connection 0, script[2] of 4: the client sent \"RCPT TO:<c@d>\\r\\n\" before it had "
                   "the reply to \"MAIL FROM:<a@b>\\r\\n\" (lockstep)"),
      VIOLATIONS(1),
      SCRIPT_DONE(1)}},

    {"script: allow_early",
     setup_script,
     2,
     {{.replies = {"220 s\r\n"}},
      {.send = "LHLO a\r\n", .replies = {"250 s\r\n"}},
      {.send = "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n", .replies = {"250 ok\r\n", "250 ok\r\n"}}},
     {SCRIPT_ERROR(""), VIOLATIONS(0), SCRIPT_DONE(1)}},

    /* The client leaves in the middle of a step: said, with what had come. */
    {"script: the client leaves early",
     setup_script,
     1,
     {{.replies = {"220 s\r\n"}}, {.send = "LHLO a\r\n", .replies = {"250 s\r\n"}}, {.send = "MAIL FROM"}},
     {SCRIPT_ERROR("connection 0, script[2] of 4: the client closed the connection after sending \"MAIL "
                   "FROM\" of the expected \"MAIL FROM:<a@b>\\r\\n\""),
      SCRIPT_DONE(0)}},

    /* FAKE_HANG: no answer, but what the client still sends is recorded */
    {"script: FAKE_HANG",
     setup_script,
     8,
     {{.replies = {"220 h\r\n"}},
      {.send = "LHLO a\r\n", .end = END_QUIET, .quiet_ms = 200},
      {.send = "NOOP\r\n", .pause_ms = 20}},
     {SCRIPT_ERROR(""), SCRIPT_DONE(1), TRANSCRIPT("LHLO a\r\nNOOP\r\n"), FLUSHES(1)}},
};

static const refusal kRefusals[] = {
    {"bad rules", setup_rules, 1, "bad rule"},
    {"bad fault_action", setup_fault, 99, "bad fault_action"},
    {"auth_fail_code out of range", setup_auth, 250, "bad auth_fail_code"},
    {"script: an action before the last step", setup_script, 3, "script[0]: only the last step may end the script"},
    {"script: FAKE_DRIP without a delay", setup_script, 4, "script[0]: FAKE_DRIP needs a reply and delay_ms > 0"},
    {"script: a bad then", setup_script, 5, "script[0]: bad then 99"},
    {"script: NULL with a length", setup_script, 6, "script is NULL but script_len is 3"},
    {"script: with rules", setup_script, 7, "script mode: the server says only what the script says"},
};

static void test_tables(void) {
    size_t i;
    for (i = 0; i < sizeof kDialogues / sizeof kDialogues[0]; ++i) run_dialogue(&kDialogues[i]);
    for (i = 0; i < sizeof kRefusals / sizeof kRefusals[0]; ++i) run_refusal(&kRefusals[i]);
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

/* A server that stopped reading: the client's writes soon block (well before 8 MiB); fake_stop is
   still prompt. Closes the client and stops f. */
static void writes_block_then_stop(client *c, fake_lmtp *f) {
    static char chunk[65536];
    size_t sent = 0;
    int blocked = 0;
    long t0;
    memset(chunk, 'a', sizeof chunk);
    while (sent < (64u << 20)) {
        ssize_t n = send(c->fd, chunk, sizeof chunk, MSG_DONTWAIT | MSG_NOSIGNAL);
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
    cl_close(c);
}

static void test_fault_stop_reading(void) {
    fake_config cfg;
    fake_lmtp *f;
    client c;
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
    writes_block_then_stop(&c, f);
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
    fake_config cfg;
    fake_lmtp *f;
    client c;
    SSL_CTX *ctx = client_ctx("ca.pem", NULL, NULL);
    REQUIRE(ctx != NULL);

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

    SSL_CTX_free(ctx);
}

/* ---- script mode beyond a dialogue ------------------------------------------------------- */

/* A reply byte by byte, a delay, a reply that never ends (FAKE_DRIP), over fake_socketpair(). */
static const fake_step kScriptSlow[] = {
    {.reply = "220 slow\r\n", .byte_delay_ms = 2},
    {.expect = "NOOP\r\n", .reply = "250 late\r\n", .delay_ms = 150},
    {.expect = "DRIP\r\n", .reply = "250-more\r\n", .then = FAKE_DRIP, .delay_ms = 10},
};
static const fake_step kScriptReset[] = {{.reply = "220 r\r\n"}, {.expect = "QUIT\r\n", .then = FAKE_RESET}};
static const fake_step kScriptStopReading[] = {
    {.reply = "220 s\r\n"},
    {.expect = "DATA\r\n", .reply = "354 go\r\n", .then = FAKE_STOP_READING},
};

static void test_script_special(void) {
    fake_config cfg;
    fake_lmtp *f;
    client c;
    long t0;
    static char expect[303], sent_body[303];
    fake_step long_step[2];
    int sndbuf = 16384;
    const char *e;

    fake_config_init(&cfg);
    cfg.script = kScriptSlow;
    cfg.script_len = 3;
    f = start(&cfg);
    REQUIRE(f != NULL);
    memset(&c, 0, sizeof c);
    c.fd = fake_socketpair(f);
    REQUIRE(c.fd >= 0);
    EXPECT_REPLY(&c, "220 slow\r\n");
    CHECK(c.reads > 3); /* 10 bytes, 2 ms apart: in pieces */
    t0 = now_ms();
    cl_send(&c, "NOOP\r\n");
    EXPECT_REPLY(&c, "250 late\r\n");
    CHECK(now_ms() - t0 >= 140);
    cl_send(&c, "DRIP\r\n");
    t0 = now_ms();
    c.len = 0;
    while (c.len < 50 && now_ms() - t0 < 3000) cl_fill(&c, 500);
    CHECK(strncmp(c.buf, "250-more\r\n250-more\r\n250-more\r\n250-more\r\n250-more\r\n", 50) == 0);
    CHECK(now_ms() - t0 >= 35); /* 10 ms between repeats */
    CHECK(fake_script_done(f) == 1);
    cl_close(&c);
    CHECK(fake_wait_idle(f, 1, 2000) == 1); /* the drip ends when the client goes */
    CHECK_STR(fake_script_error(f), "");
    CHECK(fake_flushes(f) >= 2 + 5);
    CHECK_STR(fake_peer_address(f, 0), ""); /* a socketpair */
    CHECK(fake_peer_address(f, 1) == NULL);
    CHECK(fake_connections(f) == 1);
    fake_stop(f);

    /* Every connection plays the script; FAKE_RESET; a departure names its connection. */
    fake_config_init(&cfg);
    cfg.script = kScriptReset;
    cfg.script_len = 2;
    f = start(&cfg);
    REQUIRE(f != NULL);
    REQUIRE(cl_connect(&c, f) == 0);
    EXPECT_REPLY(&c, "220 r\r\n");
    cl_send(&c, "QUIT\r\n");
    CHECK(cl_reset(&c));
    cl_close(&c);
    REQUIRE(cl_connect(&c, f) == 0);
    EXPECT_REPLY(&c, "220 r\r\n");
    cl_send(&c, "QUIX\r\n");
    sleep_ms(50);
    cl_close(&c);
    CHECK(fake_wait_idle(f, 2, 2000) == 1);
    CHECK_STR(fake_script_error(f), "connection 1, script[1] of 2: expected \"QUIT\\r\\n\" but received \"QUIX\\r\\n\"");
    CHECK(fake_script_done(f) == 1);
    CHECK_STR(fake_peer_address(f, 0), "127.0.0.1");
    CHECK_STR(fake_peer_address(f, 1), "127.0.0.1");
    fake_clear(f);
    CHECK_STR(fake_script_error(f), "");
    CHECK(fake_script_done(f) == 0);
    CHECK(fake_peer_address(f, 0) == NULL);
    fake_stop(f);

    /* FAKE_STOP_READING: the client's writes block; fake_stop is still prompt. */
    fake_config_init(&cfg);
    cfg.script = kScriptStopReading;
    cfg.script_len = 2;
    cfg.rcvbuf = 4096;
    f = start(&cfg);
    REQUIRE(f != NULL);
    memset(&c, 0, sizeof c);
    c.fd = fake_socketpair(f);
    REQUIRE(c.fd >= 0);
    setsockopt(c.fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    EXPECT_REPLY(&c, "220 s\r\n");
    cl_send(&c, "DATA\r\n");
    EXPECT_REPLY(&c, "354 go\r\n");
    writes_block_then_stop(&c, f);

    /* A long expect: the error gives the offset of the first difference and the bytes around it. */
    memset(expect, 'a', 300);
    memcpy(expect + 300, "\r\n", 3);
    memcpy(sent_body, expect, sizeof expect);
    sent_body[150] = 'b';
    memset(long_step, 0, sizeof long_step);
    long_step[0].reply = "220 l\r\n";
    long_step[1].expect = expect;
    long_step[1].reply = "250 ok\r\n";
    fake_config_init(&cfg);
    cfg.script = long_step;
    cfg.script_len = 2;
    f = start(&cfg);
    REQUIRE(f != NULL);
    expect[0] = 'X'; /* fake_start copied the script: changing it now changes nothing */
    REQUIRE(cl_connect(&c, f) == 0);
    EXPECT_REPLY(&c, "220 l\r\n");
    cl_send(&c, sent_body);
    sleep_ms(50);
    cl_close(&c);
    CHECK(fake_wait_idle(f, 1, 2000) == 1);
    e = fake_script_error(f);
    CHECK(strstr(e, "connection 0, script[1] of 2: expected 302 bytes, received bytes differ at byte 150: "
                    "expected ...\"aaaa") == e);
#define A10 "aaaaaaaaaa"
    CHECK(strstr(e, A10 "\"... but received ...\"" A10 A10 A10 A10 "b" A10) != NULL);
#undef A10
    CHECK(fake_script_done(f) == 0);
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
    test_tables();
    test_script_special();
    test_fault_banner();
    test_fault_oversized();
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
    test_auth_scram();
    printf("fake_selftest: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
