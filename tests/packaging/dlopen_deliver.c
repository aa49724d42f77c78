/*
 * dlopen_deliver: a C program that does not link liblmtp, loads
 * liblmtp.so.1 with dlopen() as a plugin host would, and delivers one message
 * to two recipients through lmtp_deliver(). The server is a tiny LMTP
 * responder on a thread of this program (127.0.0.1, a port of the kernel's
 * choosing). It answers the second recipient 552 after the message, so the
 * per-recipient results must come out as 250/OK and 552/PERMFAIL.
 *
 * The responder handles pipelining the way a real server must: it reads what
 * is available and answers every complete line, in order.
 */
#include <lmtp.h>

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <unistd.h>

/* "liblmtp.so.1": the soname follows the header's major version. */
#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)
#define LMTP_SONAME "liblmtp.so." STRINGIFY(LMTP_VERSION_MAJOR)

static int failures;

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                  \
            failures++;                                                      \
        }                                                                    \
    } while (0)

#define CHECK_INT(actual, expected)                                                   \
    do {                                                                              \
        long long a_ = (long long)(actual), e_ = (long long)(expected);               \
        if (a_ != e_) {                                                               \
            fprintf(stderr, "%s:%d: %s is %lld, expected %lld\n", __FILE__, __LINE__, \
                    #actual, a_, e_);                                                 \
            failures++;                                                               \
        }                                                                             \
    } while (0)

#define CHECK_STR(actual, expected)                                                 \
    do {                                                                            \
        const char *a_ = (actual), *e_ = (expected);                                \
        if (a_ == NULL || strcmp(a_, e_) != 0) {                                    \
            fprintf(stderr, "%s:%d: %s is \"%s\", expected \"%s\"\n", __FILE__,     \
                    __LINE__, #actual, a_ ? a_ : "(null)", e_);                     \
            failures++;                                                             \
        }                                                                           \
    } while (0)

#ifdef __GNUC__
static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
#endif
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("dlopen_deliver: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

/* ---- the responder -------------------------------------------------------- */

#define SENDER "sender@example.org"
#define RCPT_OK "alice@example.org"
#define RCPT_FULL "bob@example.org"

struct server {
    int listen_fd;
    unsigned short port;
    /* What the client sent, kept for the checks after the session. */
    char commands[4096]; /* command lines, each followed by "\n" */
    char body[4096];     /* the message as received, dot-stuffing undone */
    size_t body_len;
    int rcpts;           /* RCPTs answered 250 in the transaction */
    int finals;          /* final replies sent after the message */
    int batched;         /* most complete lines seen in one read */
    int saw_quit;
    char error[256];     /* "" unless the responder met something unexpected */
};

static void append(char *buf, size_t cap, const char *s, size_t len)
{
    size_t used = strlen(buf);
    if (used + len + 1 > cap)
        len = cap - used - 1;
    memcpy(buf + used, s, len);
    buf[used + len] = '\0';
}

static int say(int fd, const char *reply)
{
    size_t len = strlen(reply), off = 0;
    while (off < len) {
        ssize_t n = send(fd, reply + off, len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        off += (size_t)n;
    }
    return 0;
}

/* One complete line (without CRLF). Returns -1 to end the session. */
static int on_line(struct server *s, int fd, int *in_data, const char *line, size_t len)
{
    if (*in_data) {
        if (len == 1 && line[0] == '.') {
            *in_data = 0;
            /* LMTP: one reply per accepted recipient, in RCPT order. */
            if (s->rcpts >= 1 && say(fd, "250 2.0.0 <" RCPT_OK "> delivered\r\n") < 0)
                return -1;
            if (s->rcpts >= 2 && say(fd, "552 5.2.2 <" RCPT_FULL "> mailbox full\r\n") < 0)
                return -1;
            s->finals += s->rcpts;
            s->rcpts = 0;
            return 0;
        }
        if (len > 0 && line[0] == '.') { /* undo dot-stuffing */
            line++;
            len--;
        }
        if (s->body_len + len + 2 < sizeof s->body) {
            memcpy(s->body + s->body_len, line, len);
            memcpy(s->body + s->body_len + len, "\r\n", 2);
            s->body_len += len + 2;
        }
        return 0;
    }

    append(s->commands, sizeof s->commands, line, len);
    append(s->commands, sizeof s->commands, "\n", 1);
    if (len >= 5 && strncmp(line, "LHLO ", 5) == 0)
        return say(fd, "250-localhost\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n"
                       "250 8BITMIME\r\n");
    if (len >= 10 && strncmp(line, "MAIL FROM:", 10) == 0)
        return say(fd, "250 2.1.0 OK\r\n");
    if (len >= 8 && strncmp(line, "RCPT TO:", 8) == 0) {
        s->rcpts++;
        return say(fd, "250 2.1.5 OK\r\n");
    }
    if (len == 4 && strncmp(line, "DATA", 4) == 0) {
        *in_data = 1;
        return say(fd, "354 End data with <CR><LF>.<CR><LF>\r\n");
    }
    if (len == 4 && strncmp(line, "RSET", 4) == 0) {
        s->rcpts = 0;
        return say(fd, "250 2.0.0 OK\r\n");
    }
    if (len == 4 && strncmp(line, "NOOP", 4) == 0)
        return say(fd, "250 2.0.0 OK\r\n");
    if (len == 4 && strncmp(line, "QUIT", 4) == 0) {
        s->saw_quit = 1;
        say(fd, "221 2.0.0 Bye\r\n");
        return -1;
    }
    snprintf(s->error, sizeof s->error, "unexpected command: %.*s", (int)len, line);
    say(fd, "500 5.5.1 Unknown command\r\n");
    return 0;
}

static void *serve(void *arg)
{
    struct server *s = arg;
    char buf[8192];
    size_t have = 0;
    int in_data = 0;
    struct timeval tv = {10, 0};
    int fd = accept(s->listen_fd, NULL, NULL);

    if (fd < 0) {
        snprintf(s->error, sizeof s->error, "accept: %s", strerror(errno));
        return NULL;
    }
    /* Never hang the test: a silent client ends the session. */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (say(fd, "220 localhost LMTP test responder ready\r\n") < 0)
        goto out;

    for (;;) {
        size_t start = 0, i, lines = 0;
        ssize_t n = recv(fd, buf + have, sizeof buf - have, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(s->error, sizeof s->error, "recv: %s", strerror(errno));
            break;
        }
        if (n == 0)
            break;
        have += (size_t)n;
        /* Answer every complete line of what arrived. */
        for (i = 0; i + 1 < have; i++) {
            if (buf[i] == '\r' && buf[i + 1] == '\n') {
                lines++;
                if (on_line(s, fd, &in_data, buf + start, i - start) < 0)
                    goto out;
                start = i + 2;
                i++;
            }
        }
        if (!in_data && (int)lines > s->batched)
            s->batched = (int)lines;
        memmove(buf, buf + start, have - start);
        have -= start;
        if (have == sizeof buf) {
            snprintf(s->error, sizeof s->error, "line too long");
            break;
        }
    }
out:
    close(fd);
    return NULL;
}

static void server_start(struct server *s, pthread_t *thread)
{
    struct sockaddr_in addr;
    socklen_t addr_len = sizeof addr;

    memset(s, 0, sizeof *s);
    s->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (s->listen_fd < 0)
        die("socket: %s", strerror(errno));
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    if (bind(s->listen_fd, (struct sockaddr *)&addr, sizeof addr) < 0)
        die("bind: %s", strerror(errno));
    if (listen(s->listen_fd, 1) < 0)
        die("listen: %s", strerror(errno));
    if (getsockname(s->listen_fd, (struct sockaddr *)&addr, &addr_len) < 0)
        die("getsockname: %s", strerror(errno));
    s->port = ntohs(addr.sin_port);
    if (pthread_create(thread, NULL, serve, s) != 0)
        die("pthread_create failed");
}

/* ---- the C API, resolved at run time ----------------------------------------------- */

/* Each pointer has the exact type of the header's declaration. */
#define API(name) static __typeof__(name) *p_##name
API(lmtp_version);
API(lmtp_version_num);
API(lmtp_strerror);
API(lmtp_options_init);
API(lmtp_new);
API(lmtp_deliver);
API(lmtp_result_count);
API(lmtp_result_address);
API(lmtp_result_code);
API(lmtp_result_enhanced);
API(lmtp_result_status);
API(lmtp_result_stage);
API(lmtp_result_rcpt_code);
API(lmtp_errmsg);
API(lmtp_quit);
API(lmtp_free);

static void *resolve(void *lib, const char *name)
{
    void *sym;
    dlerror();
    sym = dlsym(lib, name);
    if (sym == NULL)
        die("dlsym(%s): %s", name, dlerror());
    return sym;
}

/* POSIX lets a data pointer from dlsym be copied into a function pointer;
 * memcpy does so without the cast ISO C frowns upon. */
#define RESOLVE(lib, name)                                   \
    do {                                                     \
        void *sym_ = resolve((lib), #name);                  \
        memcpy(&p_##name, &sym_, sizeof p_##name);           \
    } while (0)

int main(void)
{
    static const char msg[] =
        "From: " SENDER "\r\n"
        "To: " RCPT_OK ", " RCPT_FULL "\r\n"
        "Subject: dlopen test\r\n"
        "\r\n"
        "Hello from a program that never linked liblmtp.\r\n"
        ".a line starting with a dot\r\n"
        "..and one with two\r\n"
        "last line\r\n";
    const char *rcpts[] = {RCPT_OK, RCPT_FULL};
    char expected_version[64];
    struct server srv;
    pthread_t thread;
    lmtp_options opts = LMTP_OPTIONS_INIT;
    lmtp_t *h = NULL;
    void *lib;
    int rc;

    alarm(60); /* a last resort against a hang; ctest has its own timeout too */

    /* The program must not have liblmtp already: dlopen is what loads it. */
    if (dlsym(RTLD_DEFAULT, "lmtp_version") != NULL)
        die("lmtp_version is already resolvable before dlopen: was liblmtp linked?");

    lib = dlopen(LMTP_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL)
        die("dlopen(%s): %s", LMTP_SONAME, dlerror());

    RESOLVE(lib, lmtp_version);
    RESOLVE(lib, lmtp_version_num);
    RESOLVE(lib, lmtp_strerror);
    RESOLVE(lib, lmtp_options_init);
    RESOLVE(lib, lmtp_new);
    RESOLVE(lib, lmtp_deliver);
    RESOLVE(lib, lmtp_result_count);
    RESOLVE(lib, lmtp_result_address);
    RESOLVE(lib, lmtp_result_code);
    RESOLVE(lib, lmtp_result_enhanced);
    RESOLVE(lib, lmtp_result_status);
    RESOLVE(lib, lmtp_result_stage);
    RESOLVE(lib, lmtp_result_rcpt_code);
    RESOLVE(lib, lmtp_errmsg);
    RESOLVE(lib, lmtp_quit);
    RESOLVE(lib, lmtp_free);

    /* The library loaded is the one this program was compiled against. */
    snprintf(expected_version, sizeof expected_version, "%d.%d.%d", LMTP_VERSION_MAJOR,
             LMTP_VERSION_MINOR, LMTP_VERSION_PATCH);
    CHECK_STR(p_lmtp_version(), expected_version);
    CHECK_INT(p_lmtp_version_num(), LMTP_VERSION_NUM);
    CHECK(p_lmtp_strerror(LMTP_ERR_REJECTED) != NULL && p_lmtp_strerror(LMTP_ERR_REJECTED)[0]);

    /* The options struct through the library's own initialiser, too. */
    p_lmtp_options_init(&opts);
    CHECK_INT(opts.struct_size, sizeof(lmtp_options));
    opts.timeout_ms = 10000;
    opts.hello = "client.example.org";

    server_start(&srv, &thread);
    rc = p_lmtp_new(&h, "127.0.0.1", srv.port, &opts);
    if (rc != LMTP_OK)
        die("lmtp_new: %s (%s)", p_lmtp_strerror(rc), h ? p_lmtp_errmsg(h) : "no handle");

    rc = p_lmtp_deliver(h, SENDER, rcpts, 2, msg, sizeof msg - 1, NULL, NULL);
    if (rc != LMTP_OK)
        fprintf(stderr, "lmtp_deliver: %s: %s\n", p_lmtp_strerror(rc), p_lmtp_errmsg(h));
    CHECK_INT(rc, LMTP_OK);

    CHECK_INT(p_lmtp_result_count(h), 2);
    if (p_lmtp_result_count(h) == 2) {
        CHECK_STR(p_lmtp_result_address(h, 0), RCPT_OK);
        CHECK_INT(p_lmtp_result_code(h, 0), 250);
        CHECK_INT(p_lmtp_result_status(h, 0), LMTP_RESULT_OK);
        CHECK_INT(p_lmtp_result_stage(h, 0), LMTP_STAGE_DATA);
        CHECK_INT(p_lmtp_result_rcpt_code(h, 0), 250);
        CHECK_STR(p_lmtp_result_enhanced(h, 0), "2.0.0");

        CHECK_STR(p_lmtp_result_address(h, 1), RCPT_FULL);
        CHECK_INT(p_lmtp_result_code(h, 1), 552);
        CHECK_INT(p_lmtp_result_status(h, 1), LMTP_RESULT_PERMFAIL);
        CHECK_INT(p_lmtp_result_stage(h, 1), LMTP_STAGE_DATA);
        CHECK_INT(p_lmtp_result_rcpt_code(h, 1), 250);
        CHECK_STR(p_lmtp_result_enhanced(h, 1), "5.2.2");
    }

    rc = p_lmtp_quit(h);
    if (rc != LMTP_OK)
        fprintf(stderr, "lmtp_quit: %s: %s\n", p_lmtp_strerror(rc), p_lmtp_errmsg(h));
    CHECK_INT(rc, LMTP_OK);
    p_lmtp_free(h);

    pthread_join(thread, NULL);
    close(srv.listen_fd);

    /* What the server saw. */
    if (srv.error[0]) {
        fprintf(stderr, "responder: %s\n", srv.error);
        failures++;
    }
    CHECK_STR(srv.commands, "LHLO client.example.org\n"
                            "MAIL FROM:<" SENDER ">\n"
                            "RCPT TO:<" RCPT_OK ">\n"
                            "RCPT TO:<" RCPT_FULL ">\n"
                            "DATA\n"
                            "QUIT\n");
    CHECK_INT(srv.body_len, sizeof msg - 1);
    CHECK(srv.body_len == sizeof msg - 1 && memcmp(srv.body, msg, srv.body_len) == 0);
    CHECK_INT(srv.finals, 2);
    CHECK(srv.saw_quit);
    /* The server offered PIPELINING: MAIL, both RCPTs and DATA came as one batch. */
    if (srv.batched < 4)
        fprintf(stderr, "note: the client sent at most %d commands in one batch\n", srv.batched);

    dlclose(lib);
    if (failures) {
        fprintf(stderr, "dlopen_deliver: %d check(s) failed\n", failures);
        return 1;
    }
    printf("dlopen_deliver: delivered through dlopen(%s) %s: 250 OK, 552 PERMFAIL\n",
           LMTP_SONAME, expected_version);
    return 0;
}
