/*
 * test_dovecot.c - the C API against a real Dovecot LMTP server that this program starts itself
 * (tests/support/dovecot.sh, STARTTLS with certificates made by make-test-certs): what the client
 * reports for each recipient, and what Dovecot stored in the Maildirs, byte for byte.
 *
 *   test_dovecot MAKE_TEST_CERTS [DOVECOT_SH]      (DOVECOT_SH: by default $LMTP_DOVECOT)
 *
 * The server and its directory are removed when the program ends, however it ends: the group
 * teardown and atexit stop it, and a watchdog process (outside this process's group and tree, so
 * that a killed test run cannot take it along) stops it when this process is gone.
 * LMTP_KEEP_DIR=1 keeps the directory (dovecot.log, the Maildirs) for a look afterwards.
 *
 * What Dovecot 2.3 stores (Maildir/new/<name>,S=<size>,W=<size with CRLF>): the message with LF
 * line ends, after headers of its own:
 *     Return-Path: <FROM>
 *     Delivered-To: RCPT                                  (only with one recipient)
 *     Received: from HELLO ([127.0.0.1])                  ([::1] over IPv6; no address over unix)
 *     \t(using TLSv1.3 with cipher ...)                   (only after STARTTLS)
 *     \tby DOMAIN with LMTP                               (DOMAIN: the banner's first word; LMTPS after STARTTLS)
 *     \tid ID                                             (the id in the 250 reply, without ":R<n>")
 *     \t(envelope-from <FROM>)
 *     \tfor <RCPT>; DATE                                  (several recipients: "(envelope-from <FROM>); DATE")
 * With several recipients the file is written once and hard-linked into each Maildir.
 */
#include "capi_test.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define HELLO "client.test"
#define SENDER "sender@example.org"
#define TIMEOUT_MS 20000
/* How Dovecot's Received header names a peer on 127.0.0.1. */
#define V4 " ([127.0.0.1])"
/* What Dovecot adds to its Received header after a STARTTLS: the protocol and the cipher the two
 * OpenSSLs agreed on, e.g. "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))". */
#define TLS_USED_PREFIX "\t(using TLSv1."
#define TLS_USED_SUFFIX " bits))"

/* ---- the server --------------------------------------------------------------------------- */

static struct {
    const char *script;  /* dovecot.sh */
    const char *certgen; /* make-test-certs */
    char top[64];        /* the temporary directory: certs/ and server/ */
    char dir[256];       /* LMTP_DIR */
    char socket[320];    /* LMTP_SOCKET */
    unsigned port;       /* LMTP_PORT: on 127.0.0.1 and ::1 */
    char domain[128];    /* the first word of the banner */
    int watchdog_fd;     /* write end of the watchdog's pipe; -1 when none */
    int running;
} srv = {NULL, NULL, "", "", "", 0, "", -1, 0};

/* Runs argv (argv[0] a path) with its stdout into out (NUL-terminated, at most cap - 1 bytes);
 * stderr is inherited. Returns the exit status, or -1. */
static int run(char *const argv[], char *out, size_t cap) {
    int fds[2], status = 0;
    size_t n = 0;
    pid_t pid;
    if (pipe(fds) != 0) return -1;
    pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    for (;;) {
        char buf[512];
        ssize_t r = read(fds[0], buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        if (out && n + 1 < cap) {
            size_t k = (size_t)r < cap - 1 - n ? (size_t)r : cap - 1 - n;
            memcpy(out + n, buf, k);
            n += k;
        }
    }
    if (out && cap) out[n] = '\0';
    close(fds[0]);
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* A process that waits for the end of its stdin (the end of this process, whatever kills it), then
 * stops the server and removes the directory. Started twice forked and in its own session. */
static int start_watchdog(void) {
    static const char script[] =
        "while read -r _; do :; done; \"$1\" stop \"$2\" >/dev/null 2>&1; "
        "[ -n \"${LMTP_KEEP_DIR:-}\" ] || rm -rf \"$3\"";
    int fds[2], status;
    char server_dir[128];
    pid_t pid;
    snprintf(server_dir, sizeof server_dir, "%s/server", srv.top);
    if (pipe(fds) != 0) return -1;
    /* Neither end may leak into the server (started later by exec): its stdin would keep this open. */
    fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    fcntl(fds[1], F_SETFD, FD_CLOEXEC);
    pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        setsid();
        if (fork() != 0) _exit(0);
        dup2(fds[0], 0);
        dup2(null, 1);
        dup2(null, 2);
        execl("/bin/sh", "sh", "-c", script, "sh", srv.script, server_dir, srv.top, (char *)NULL);
        _exit(127);
    }
    close(fds[0]);
    waitpid(pid, &status, 0);
    srv.watchdog_fd = fds[1];
    return 0;
}

/* Stops the server and removes the directory now, then lets the watchdog go (it finds nothing left). */
static void stop_server(void) {
    char server_dir[128];
    char *stop[] = {(char *)srv.script, "stop", server_dir, NULL};
    char *rm[] = {"/bin/rm", "-rf", srv.top, NULL};
    if (srv.running) {
        snprintf(server_dir, sizeof server_dir, "%s/server", srv.top);
        run(stop, NULL, 0);
        srv.running = 0;
    }
    if (srv.watchdog_fd >= 0) {
        const char *keep = getenv("LMTP_KEEP_DIR");
        if (!keep || !*keep) run(rm, NULL, 0);
        close(srv.watchdog_fd);
        srv.watchdog_fd = -1;
    }
}

/* The value of "NAME=value" in the lines of `out`, copied into dst; 0 if absent. */
static int assignment(const char *out, const char *name, char *dst, size_t cap) {
    size_t n = strlen(name), len;
    const char *p = out;
    while (p && *p) {
        if (strncmp(p, name, n) == 0 && p[n] == '=') {
            p += n + 1;
            len = strcspn(p, "\n");
            if (len == 0 || len >= cap) return 0;
            memcpy(dst, p, len);
            dst[len] = '\0';
            return 1;
        }
        p = strchr(p, '\n');
        if (p) p++;
    }
    return 0;
}

static int start_server(void **state) {
    char certs[128], cert[160], key[160], server_dir[128], port[16], out[2048];
    char *mkcerts[] = {(char *)srv.certgen, certs, NULL};
    char *start[] = {(char *)srv.script, "start", server_dir, cert, key, NULL};
    lmtp_options o;
    lmtp_t *h = NULL;
    (void)state;

    snprintf(srv.top, sizeof srv.top, "/tmp/lmtp-dovecot-c.XXXXXX");
    if (!mkdtemp(srv.top) || chmod(srv.top, 0755) != 0) {
        print_error("mkdtemp: %s\n", strerror(errno));
        return -1;
    }
    if (start_watchdog() != 0) return -1;
    snprintf(certs, sizeof certs, "%s/certs", srv.top);
    snprintf(cert, sizeof cert, "%s/server.pem", certs);
    snprintf(key, sizeof key, "%s/server.key", certs);
    snprintf(server_dir, sizeof server_dir, "%s/server", srv.top);
    if (run(mkcerts, NULL, 0) != 0) {
        print_error("%s %s failed\n", srv.certgen, certs);
        return -1;
    }
    srv.running = 1; /* from here on, stop it whatever happens */
    if (run(start, out, sizeof out) != 0 || !assignment(out, "LMTP_DIR", srv.dir, sizeof srv.dir) ||
        !assignment(out, "LMTP_SOCKET", srv.socket, sizeof srv.socket) ||
        !assignment(out, "LMTP_PORT", port, sizeof port)) {
        print_error("%s start %s did not start a server; it printed:\n%s\n", srv.script, server_dir, out);
        return -1;
    }
    srv.port = (unsigned)strtoul(port, NULL, 10);

    /* The name Dovecot gives itself, which it writes in its Received headers. */
    test_options(&o);
    o.hello = HELLO;
    if (lmtp_new(&h, "127.0.0.1", srv.port, &o) != LMTP_OK) {
        print_error("lmtp_new 127.0.0.1:%u: %s\n", srv.port, h ? lmtp_errmsg(h) : "");
        lmtp_free(h);
        return -1;
    }
    snprintf(srv.domain, sizeof srv.domain, "%s", lmtp_domain(h));
    lmtp_quit(h);
    lmtp_free(h);
    return 0;
}

static int stop_server_teardown(void **state) {
    (void)state;
    stop_server();
    return 0;
}

/* ---- per test: handles, a clean Maildir ------------------------------------------------------- */

static lmtp_t *handles[8];
static int nhandles;

/* Removes every delivered message of every user, so that each test sees only its own. */
static int clear_maildirs(void **state) {
    char path[1024];
    DIR *users;
    struct dirent *u;
    (void)state;
    snprintf(path, sizeof path, "%s/mail", srv.dir);
    users = opendir(path);
    if (!users) return 0; /* nothing delivered yet */
    while ((u = readdir(users)) != NULL) {
        DIR *d;
        struct dirent *e;
        if (u->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/mail/%s/Maildir/new", srv.dir, u->d_name);
        d = opendir(path);
        if (!d) continue;
        while ((e = readdir(d)) != NULL) {
            char file[1400];
            if (e->d_name[0] == '.') continue;
            snprintf(file, sizeof file, "%s/%s", path, e->d_name);
            unlink(file);
        }
        closedir(d);
    }
    closedir(users);
    return 0;
}

static int free_handles(void **state) {
    (void)state;
    while (nhandles > 0) lmtp_free(handles[--nhandles]);
    return 0;
}

static void default_options(lmtp_options *o) {
    test_options(o);
    o->timeout_ms = TIMEOUT_MS;
    o->hello = HELLO;
}

/* A connected handle (asserted), freed after the test. o NULL: default_options. */
static lmtp_t *open_handle(const char *host, unsigned port, const lmtp_options *o) {
    lmtp_options def;
    lmtp_t *h = NULL;
    int st;
    if (!o) {
        default_options(&def);
        o = &def;
    }
    assert_true(nhandles < (int)(sizeof handles / sizeof *handles));
    st = lmtp_new(&h, host, port, o);
    if (h) handles[nhandles++] = h;
    if (st != LMTP_OK) {
        print_error("lmtp_new(%s, %u) = %d: %s\n", host, port, st, h ? lmtp_errmsg(h) : "(no handle)");
        fail();
    }
    return h;
}

/* Records only the command lines sent ("S|..." lines), not the message. */
static void record_commands(void *user, int direction, const char *line, size_t len) {
    if (direction == LMTP_TRACE_SEND) trace_record(user, direction, line, len);
}

/* ---- what landed ----------------------------------------------------------------------------- */

typedef struct file_list {
    char **paths; /* sorted */
    size_t count;
} file_list;

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The files in mail/<user>/Maildir/new (none when the directory does not exist). */
static file_list maildir_files(const char *user) {
    file_list l = {NULL, 0};
    size_t cap = 0;
    char path[1024];
    DIR *d;
    struct dirent *e;
    snprintf(path, sizeof path, "%s/mail/%s/Maildir/new", srv.dir, user);
    d = opendir(path);
    if (!d) return l;
    while ((e = readdir(d)) != NULL) {
        size_t n;
        if (e->d_name[0] == '.') continue;
        if (l.count == cap) {
            cap = cap ? cap * 2 : 16;
            l.paths = realloc(l.paths, cap * sizeof *l.paths);
            assert_non_null(l.paths);
        }
        n = strlen(path) + strlen(e->d_name) + 2;
        l.paths[l.count] = malloc(n);
        assert_non_null(l.paths[l.count]);
        snprintf(l.paths[l.count], n, "%s/%s", path, e->d_name);
        l.count++;
    }
    closedir(d);
    if (l.count) qsort(l.paths, l.count, sizeof *l.paths, by_name);
    return l;
}

static void free_files(file_list *l) {
    size_t i;
    for (i = 0; i < l->count; i++) free(l->paths[i]);
    free(l->paths);
    l->paths = NULL;
    l->count = 0;
}

static size_t count_files(const char *user) {
    file_list l = maildir_files(user);
    size_t n = l.count;
    free_files(&l);
    return n;
}

/* The whole file (malloc'd, NUL-terminated); asserts it can be read. */
static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;
    if (!f) {
        print_error("%s: %s\n", path, strerror(errno));
        fail();
    }
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    buf[n] = '\0';
    *len = (size_t)n;
    return buf;
}

/* What one stored file must hold. */
typedef struct landing {
    const char *rcpt; /* the only recipient (Delivered-To, "for"); NULL when there were several */
    const char *peer; /* " ([127.0.0.1])", " ([::1])", or "" over the unix socket */
    int tls;          /* 1: delivered over TLS (Dovecot says how, and "with LMTPS") */
    const char *id;   /* the id of the 250 reply */
    const char *msg;  /* the message after Dovecot's headers, LF line ends */
    size_t len;
} landing;

/* The id in a reply text "<rcpt> ID Saved" (copied into id); asserts the form. */
static void saved_id(const char *text, const char *rcpt, char *id, size_t cap) {
    size_t n = strlen(rcpt), len;
    const char *p = text;
    if (!(p[0] == '<' && strncmp(p + 1, rcpt, n) == 0 && strncmp(p + 1 + n, "> ", 2) == 0)) {
        print_error("reply text \"%s\" does not start with \"<%s> \"\n", text, rcpt);
        fail();
    }
    p += n + 3;
    len = strcspn(p, " ");
    if (len == 0 || len >= cap || strcmp(p + len, " Saved") != 0) {
        print_error("reply text \"%s\" is not \"<%s> ID Saved\"\n", text, rcpt);
        fail();
    }
    memcpy(id, p, len);
    id[len] = '\0';
}

/* "Www, D Mmm YYYY HH:MM:SS +ZZZZ" up to the end of the line: returns the line's end, or NULL. */
static const char *rfc5322_date(const char *p, const char *end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    char wday[4], mon[4], zone[6];
    int day, year, hh, mm, ss, used = 0;
    char tmp[64];
    size_t n;
    if (!nl || (n = (size_t)(nl - p)) >= sizeof tmp) return NULL;
    memcpy(tmp, p, n);
    tmp[n] = '\0';
    if (sscanf(tmp, "%3[A-Za-z], %d %3[A-Za-z] %d %d:%d:%d %5[-+0-9]%n", wday, &day, mon, &year, &hh, &mm, &ss, zone,
               &used) != 8 ||
        (size_t)used != n || strlen(zone) != 5)
        return NULL;
    return nl + 1;
}

/* The file at `path` holds exactly Dovecot's headers for `e` and then e->msg. */
static void assert_stored_(const char *path, const landing *e, const char *file, int line) {
    char want[1024], id[128], sizes[64], *r;
    size_t n, len, lf = 0, i;
    char *got = slurp(path, &n);
    const char *end = got + n, *p;

    /* ":R<n>" names the recipient in the reply; the stored id is the transaction's (":T<n>" kept). */
    snprintf(id, sizeof id, "%s", e->id);
    r = strstr(id, ":R");
    if (r) *r = '\0';
    len = (size_t)snprintf(want, sizeof want, "Return-Path: <" SENDER ">\n");
    if (e->rcpt) len += (size_t)snprintf(want + len, sizeof want - len, "Delivered-To: %s\n", e->rcpt);
    len += (size_t)snprintf(want + len, sizeof want - len, "Received: from " HELLO "%s\n", e->peer);
    if (e->tls) {
        /* The TLS line is taken from the file once it has the expected shape. */
        const char *t = len < n ? got + len : end, *t_end = memchr(t, '\n', (size_t)(end - t));
        size_t tn = t_end ? (size_t)(t_end - t) : 0, pre = strlen(TLS_USED_PREFIX), suf = strlen(TLS_USED_SUFFIX);
        if (!t_end || tn < pre + suf || memcmp(t, TLS_USED_PREFIX, pre) != 0 ||
            memcmp(t + tn - suf, TLS_USED_SUFFIX, suf) != 0 || tn + 2 > sizeof want - len) {
            print_error("%s:%d: %s: no \"" TLS_USED_PREFIX "..." TLS_USED_SUFFIX "\" line after Received\n", file, line,
                        path);
            free(got);
            _fail(file, line);
        }
        memcpy(want + len, t, tn + 1);
        len += tn + 1;
    }
    len += (size_t)snprintf(want + len, sizeof want - len, "\tby %s with LMTP%s\n\tid %s\n", srv.domain,
                            e->tls ? "S" : "", id);
    if (e->rcpt)
        len += (size_t)snprintf(want + len, sizeof want - len, "\t(envelope-from <" SENDER ">)\n\tfor <%s>; ", e->rcpt);
    else
        len += (size_t)snprintf(want + len, sizeof want - len, "\t(envelope-from <" SENDER ">); ");
    assert_bytes_(got, n < len ? n : len, want, len, path, file, line);
    p = rfc5322_date(got + len, end);
    if (!p) {
        print_error("%s:%d: %s: no date after \"%s\"\n", file, line, path, want);
        free(got);
        _fail(file, line);
    }
    assert_bytes_(p, (size_t)(end - p), e->msg, e->len, path, file, line);
    /* The name says the size: S= as stored, W= with CRLF line ends. */
    for (i = 0; i < n; i++) lf += got[i] == '\n';
    free(got);
    snprintf(sizes, sizeof sizes, ",S=%lu,W=%lu", (unsigned long)n, (unsigned long)(n + lf));
    assert_has(path, sizes);
}
#define assert_stored(path, e) assert_stored_((path), (e), __FILE__, __LINE__)

/* The only file of `user`'s Maildir holds `e`. */
static void assert_only_message_(const char *user, const landing *e, const char *file, int line) {
    file_list l = maildir_files(user);
    if (l.count != 1) {
        print_error("%s:%d: %s has %lu messages, want 1\n", file, line, user, (unsigned long)l.count);
        free_files(&l);
        _fail(file, line);
    }
    assert_stored_(l.paths[0], e, file, line);
    free_files(&l);
}
#define assert_only_message(user, e) assert_only_message_((user), (e), __FILE__, __LINE__)

/* ---- what the client reports ------------------------------------------------------------------ */

/* Recipient i was delivered (250 2.0.0 "<addr> ID Saved", accepted by "250 2.1.5 OK"); its id into id. */
static void assert_saved_(lmtp_t *h, size_t i, const char *addr, char *id, size_t cap, const char *file, int line) {
    assert_result_(h, i, addr, LMTP_RESULT_OK, LMTP_STAGE_DATA, 250, "2.0.0", NULL, 250, "OK", file, line);
    saved_id(lmtp_result_text(h, i), addr, id, cap);
}
#define assert_saved(h, i, addr, id) assert_saved_((h), (i), (addr), (id), sizeof(id), __FILE__, __LINE__)

/* One message to alice over IPv4, by `transfer`; checks the commands sent, the verdict and the file. */
static void deliver_to_alice(lmtp_t *h, const char *msg, size_t len, int transfer, int body, const char *stored_msg,
                             size_t stored_len) {
    const char *rcpts[] = {"alice@example.org"};
    lmtp_mail_options m = LMTP_MAIL_OPTIONS_INIT;
    trace_log t = {NULL, 0, 0, 0, 0};
    char want[256], id[128];
    size_t wire = 0, i;

    m.transfer = transfer;
    m.body = body;
    assert_ok(h, lmtp_set_trace(h, record_commands, &t));
    assert_ok(h, lmtp_deliver(h, SENDER, rcpts, 1, msg, len, &m, NULL));
    lmtp_set_trace(h, NULL, NULL);

    /* CRLF on the wire: one more octet per line than stored. */
    for (i = 0; i < stored_len; i++) wire += stored_msg[i] == '\n' ? 2 : 1;
    /* AUTO is BDAT too: Dovecot offers CHUNKING. But an empty message goes by DATA whatever the
     * transfer asked for (the library's choice: its lone dot says it without ambiguity). */
    if (transfer != LMTP_TRANSFER_DATA && len > 0)
        snprintf(want, sizeof want, "S|MAIL FROM:<" SENDER ">%s\nS|RCPT TO:<alice@example.org>\nS|BDAT %lu LAST\n",
                 body == LMTP_BODY_8BITMIME ? " BODY=8BITMIME" : "", (unsigned long)wire);
    else
        snprintf(want, sizeof want, "S|MAIL FROM:<" SENDER ">%s\nS|RCPT TO:<alice@example.org>\nS|DATA\n",
                 body == LMTP_BODY_8BITMIME ? " BODY=8BITMIME" : "");
    assert_bytes(t.buf, t.len, want, strlen(want));
    trace_log_free(&t);

    assert_int_equal(lmtp_result_count(h), 1);
    assert_saved(h, 0, "alice@example.org", id);
    {
        landing e = {"alice@example.org", V4, 0, id, stored_msg, stored_len};
        assert_only_message("alice", &e);
    }
}

/* ---- cases ------------------------------------------------------------------------------------- */

/* What Dovecot offers, and one message to one recipient. */
static void one_recipient(void **state) {
    static const char *const offered[] = {"PIPELINING", "CHUNKING", "8BITMIME", "ENHANCEDSTATUSCODES", "STARTTLS"};
    size_t i;
    lmtp_t *h = open_handle("127.0.0.1", srv.port, NULL);
    const char *msg = "From: sender@example.org\nSubject: one\n\nhello alice\n";
    (void)state;
    assert_string_equal(lmtp_domain(h), srv.domain);
    for (i = 0; i < sizeof offered / sizeof *offered; i++) {
        if (!lmtp_supports(h, offered[i])) print_error("%s is not offered\n", offered[i]);
        assert_int_equal(lmtp_supports(h, offered[i]), 1);
    }
    /* Not offered: SIZE (no limit), DSN, SMTPUTF8, BINARYMIME. */
    assert_int_equal(lmtp_supports(h, "SIZE") + lmtp_supports(h, "DSN") + lmtp_supports(h, "SMTPUTF8") +
                         lmtp_supports(h, "BINARYMIME"),
                     0);
    assert_int_equal(lmtp_size_limit(h), 0);
    /* AUTO: BDAT, since CHUNKING is offered. */
    deliver_to_alice(h, msg, strlen(msg), LMTP_TRANSFER_AUTO, LMTP_BODY_NONE, msg, strlen(msg));
    assert_int_equal(count_files("bob"), 0);
    assert_ok(h, lmtp_quit(h));
}

/* Every outcome Dovecot gives, in one transaction, each recipient's exactly. */
static void several_recipients(void **state) {
    const int transfer = *(const int *)*state;
    static const char *const rcpts[] = {"alice@example.org",  "full@example.org",     "bob@example.org",
                                        "nosuch@example.org", "tempfull@example.org", "broken@example.org",
                                        "alice@example.org"};
    static const char *const quota = " Quota exceeded (mailbox for user is full)";
    /* Then the date and time, and "]". */
    static const char *const broken =
        "<broken@example.org> Internal error occurred. Refer to server log for more information. [";
    const char *msg = "Subject: several\n\nto every kind of recipient\n";
    lmtp_t *h = open_handle("127.0.0.1", srv.port, NULL);
    lmtp_mail_options m = LMTP_MAIL_OPTIONS_INIT;
    char id_alice[128], id_bob[128], id_again[128];
    trace_log t = {NULL, 0, 0, 0, 0};
    file_list a, b;
    struct stat sa, sb;

    m.transfer = transfer;
    assert_ok(h, lmtp_deliver(h, SENDER, rcpts, 7, msg, strlen(msg), &m, NULL));
    assert_int_equal(lmtp_result_count(h), 7);
    assert_saved(h, 0, "alice@example.org", id_alice);
    assert_result(h, 1, "full@example.org", LMTP_RESULT_PERMFAIL, LMTP_STAGE_DATA, 552, "5.2.2", NULL, 250, "OK");
    {
        char want[128];
        snprintf(want, sizeof want, "<full@example.org>%s", quota);
        assert_string_equal(lmtp_result_text(h, 1), want);
        snprintf(want, sizeof want, "<tempfull@example.org>%s", quota);
        assert_result(h, 4, "tempfull@example.org", LMTP_RESULT_TEMPFAIL, LMTP_STAGE_DATA, 452, "4.2.2", want, 250,
                      "OK");
    }
    assert_saved(h, 2, "bob@example.org", id_bob);
    assert_result(h, 3, "nosuch@example.org", LMTP_RESULT_PERMFAIL, LMTP_STAGE_RCPT, 550, "5.1.1",
                  "<nosuch@example.org> User doesn't exist: nosuch@example.org", 550,
                  "<nosuch@example.org> User doesn't exist: nosuch@example.org");
    assert_result(h, 5, "broken@example.org", LMTP_RESULT_TEMPFAIL, LMTP_STAGE_DATA, 451, "4.2.0", NULL, 250, "OK");
    assert_true(strncmp(lmtp_result_text(h, 5), broken, strlen(broken)) == 0);
    /* The duplicate has its own reply: the same delivery as the first. */
    assert_saved(h, 6, "alice@example.org", id_again);
    assert_string_equal(id_again, id_alice);
    /* The last reply read is the last recipient's. */
    assert_int_equal(lmtp_code(h), 250);

    /* Stored once per mailbox, one file hard-linked into both; nothing for the others. */
    {
        landing e = {NULL, V4, 0, id_alice, msg, strlen(msg)};
        assert_only_message("alice", &e);
        e.id = id_bob;
        assert_only_message("bob", &e);
    }
    a = maildir_files("alice");
    b = maildir_files("bob");
    assert_int_equal(stat(a.paths[0], &sa), 0);
    assert_int_equal(stat(b.paths[0], &sb), 0);
    free_files(&a);
    free_files(&b);
    assert_true(sa.st_ino == sb.st_ino);
    assert_int_equal(sa.st_nlink, 2);
    assert_int_equal(count_files("full"), 0);
    assert_int_equal(count_files("tempfull"), 0);
    assert_int_equal(count_files("broken"), 0);
    assert_int_equal(count_files("nosuch"), 0);

    /* No recipient accepted: Dovecot refuses the DATA or BDAT LAST that went with the RCPT (503
     * 5.5.0 No valid recipients) and keeps the transaction, so the next delivery starts with RSET. */
    assert_ok(h, lmtp_deliver(h, SENDER, rcpts + 3, 1, msg, strlen(msg), &m, NULL));
    assert_int_equal(lmtp_result_count(h), 1);
    assert_result(h, 0, "nosuch@example.org", LMTP_RESULT_PERMFAIL, LMTP_STAGE_RCPT, 550, "5.1.1", NULL, 550, NULL);
    assert_ok(h, lmtp_set_trace(h, record_commands, &t));
    assert_ok(h, lmtp_deliver(h, SENDER, rcpts + 2, 1, msg, strlen(msg), &m, NULL));
    lmtp_set_trace(h, NULL, NULL);
    {
        static const char rset_first[] = "S|RSET\nS|MAIL FROM:<" SENDER ">\nS|RCPT TO:<bob@example.org>\n";
        assert_bytes(t.buf, t.len < sizeof rset_first - 1 ? t.len : sizeof rset_first - 1, rset_first,
                     sizeof rset_first - 1);
    }
    trace_log_free(&t);
    assert_saved(h, 0, "bob@example.org", id_bob);
    assert_int_equal(count_files("bob"), 2);
    assert_ok(h, lmtp_noop(h));
    assert_int_equal(lmtp_code(h), 250);
    assert_ok(h, lmtp_quit(h));
}

/* ---- message content, by DATA and by BDAT ------------------------------------------------------ */

typedef struct content {
    int body;  /* LMTP_BODY_* announced with MAIL */
    char *msg; /* as given to lmtp_deliver */
    size_t len;
    char *stored; /* what Dovecot keeps after its headers */
    size_t stored_len;
} content;

enum { DOTS, LONG_LINES, NO_FINAL_NEWLINE, EIGHT_BIT, EMPTY, CRLF_AND_CR, NCONTENTS };
static content contents[NCONTENTS];

typedef struct content_job {
    const content *c;
    int transfer;
} content_job;

static char *dup_bytes(const char *p, size_t n) {
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, p, n);
        d[n] = '\0';
    }
    return d;
}

/* The message is given in its stored form, or stored (non-NULL) says otherwise. */
static int set_content(content *c, int body, const char *msg, size_t len, const char *stored, size_t stored_len) {
    c->body = body;
    c->msg = dup_bytes(msg, len);
    c->len = len;
    c->stored = stored ? dup_bytes(stored, stored_len) : dup_bytes(msg, len);
    c->stored_len = stored ? stored_len : len;
    return c->msg && c->stored ? 0 : -1;
}

static int make_contents(void) {
    static const char dots[] = "Subject: dots\n\n.leading dot\n..two dots\n...\n.\nafter a line that is a dot\n. \n.";
    static const char dots_stored[] =
        "Subject: dots\n\n.leading dot\n..two dots\n...\n.\nafter a line that is a dot\n. \n.\n";
    static const char unterminated[] = "Subject: no final newline\n\nfirst line\nlast line, no newline";
    static const char crlf[] = "Subject: CRLF and CR\r\n\r\nline one\r\nline two\rline three\nline four\r\n";
    static const char crlf_stored[] = "Subject: CRLF and CR\n\nline one\nline two\nline three\nline four\n";
    char buf[4096];
    size_t n = 0, i;
    int rc = 0;

    rc |= set_content(&contents[DOTS], LMTP_BODY_NONE, dots, sizeof dots - 1, dots_stored, sizeof dots_stored - 1);

    /* A header line and body lines of exactly 998 octets (RFC 5322 2.1.1), one of them starting with a dot. */
    n = (size_t)snprintf(buf, sizeof buf, "Subject: lines of 998 octets\nX-Long: ");
    while (n < 28 + 998) buf[n++] = 'h';
    buf[n++] = '\n';
    buf[n++] = '\n';
    for (i = 0; i < 998; i++) buf[n++] = 'a';
    buf[n++] = '\n';
    buf[n++] = '.';
    for (i = 1; i < 998; i++) buf[n++] = 'b';
    buf[n++] = '\n';
    for (i = 0; i < 998; i++) buf[n++] = (char)('0' + i % 10);
    buf[n++] = '\n';
    rc |= set_content(&contents[LONG_LINES], LMTP_BODY_NONE, buf, n, NULL, 0);

    /* The stored message gains the line end the client adds. */
    n = sizeof unterminated - 1;
    memcpy(buf, unterminated, n);
    buf[n] = '\n';
    rc |= set_content(&contents[NO_FINAL_NEWLINE], LMTP_BODY_NONE, unterminated, n, buf, n + 1);

    /* Every octet from 0x80 to 0xFF, 16 a line, and UTF-8; sent with BODY=8BITMIME. */
    n = (size_t)snprintf(buf, sizeof buf,
                         "Subject: 8bit\nMIME-Version: 1.0\nContent-Type: text/plain; charset=ISO-8859-1\n"
                         "Content-Transfer-Encoding: 8bit\n\n");
    for (i = 0x80; i <= 0xFF; i++) {
        buf[n++] = (char)i;
        if (i % 16 == 15) buf[n++] = '\n';
    }
    n += (size_t)snprintf(buf + n, sizeof buf - n,
                          "Gr\xc3\xbc\xc3\x9f"
                          "e \xe2\x82\xac \xf0\x9f\x93\xa8\n");
    rc |= set_content(&contents[EIGHT_BIT], LMTP_BODY_8BITMIME, buf, n, NULL, 0);

    rc |= set_content(&contents[EMPTY], LMTP_BODY_NONE, "", 0, NULL, 0);
    rc |=
        set_content(&contents[CRLF_AND_CR], LMTP_BODY_NONE, crlf, sizeof crlf - 1, crlf_stored, sizeof crlf_stored - 1);
    return rc;
}

static void free_contents(void) {
    int i;
    for (i = 0; i < NCONTENTS; i++) {
        free(contents[i].msg);
        free(contents[i].stored);
    }
}

static void content_case(void **state) {
    const content_job *j = *state;
    lmtp_t *h = open_handle("127.0.0.1", srv.port, NULL);
    deliver_to_alice(h, j->c->msg, j->c->len, j->transfer, j->c->body, j->c->stored, j->c->stored_len);
    /* And again on the same connection: the session is where it should be. */
    clear_maildirs(NULL);
    deliver_to_alice(h, j->c->msg, j->c->len, j->transfer, j->c->body, j->c->stored, j->c->stored_len);
    assert_ok(h, lmtp_quit(h));
}

/* clang-format off */
static const content_job jobs[2 * NCONTENTS] = {
#define JOBS(i) {&contents[i], LMTP_TRANSFER_DATA}, {&contents[i], LMTP_TRANSFER_BDAT}
    JOBS(DOTS), JOBS(LONG_LINES), JOBS(NO_FINAL_NEWLINE), JOBS(EIGHT_BIT), JOBS(EMPTY), JOBS(CRLF_AND_CR)
#undef JOBS
};
/* clang-format on */

/* ---- 20 MB, streamed --------------------------------------------------------------------------- */

#define BIG_SIZE (20u << 20)
static char *big;

/* 20 MiB of LF lines of 0 to 998 octets, 8-bit, an eighth of them starting with a dot. */
static const char *big_message(void) {
    static const char head[] = "Subject: 20 MiB\nMIME-Version: 1.0\nContent-Transfer-Encoding: 8bit\n\n";
    unsigned long long r = 0x9E3779B97F4A7C15ull;
    size_t n = sizeof head - 1;
    if (big) return big;
    big = malloc(BIG_SIZE);
    assert_non_null(big);
    memcpy(big, head, n);
    while (n < BIG_SIZE) {
        size_t len, i;
        r ^= r << 13;
        r ^= r >> 7;
        r ^= r << 17;
        len = (size_t)(r % 999);
        if (len > BIG_SIZE - n - 1) len = BIG_SIZE - n - 1;
        for (i = 0; i < len; i++) {
            unsigned char c = (unsigned char)(0x20 + (r >> (i % 40)) % 0xE0);
            big[n + i] = (char)(c == 0x7F ? '~' : c);
        }
        if (len && (r >> 50) % 8 == 0) big[n] = '.';
        n += len;
        big[n++] = '\n';
    }
    return big;
}

typedef struct source {
    const char *p;
    size_t len, pos;
    unsigned turn;
} source;

/* Pieces of changing sizes, so that they end anywhere: in a line, right after LF, after a dot. */
static long read_source(void *user, void *buf, size_t cap) {
    static const size_t sizes[] = {1, 3, 4093, 65521, 1000003, 2};
    source *s = user;
    size_t n = sizes[s->turn++ % (sizeof sizes / sizeof *sizes)];
    if (n > cap) n = cap;
    if (n > s->len - s->pos) n = s->len - s->pos;
    memcpy(buf, s->p + s->pos, n);
    s->pos += n;
    return (long)n;
}

static void stream_20mb(void **state) {
    const int transfer = *(const int *)*state;
    const char *rcpts[] = {"bob@example.org"};
    const char *msg = big_message();
    lmtp_t *h = open_handle("127.0.0.1", srv.port, NULL);
    lmtp_mail_options m = LMTP_MAIL_OPTIONS_INIT;
    trace_log t = {NULL, 0, 0, 0, 0};
    source src = {NULL, 0, 0, 0};
    unsigned long long chunked = 0, wire = 0;
    size_t i, chunks = 0;
    char id[128];
    const char *p;

    src.p = msg;
    src.len = BIG_SIZE;
    m.transfer = transfer;
    m.body = LMTP_BODY_8BITMIME;
    assert_ok(h, lmtp_set_trace(h, record_commands, &t));
    assert_ok(h, lmtp_deliver_stream(h, SENDER, rcpts, 1, read_source, &src, &m, NULL));
    lmtp_set_trace(h, NULL, NULL);
    assert_int_equal(src.pos, BIG_SIZE);
    assert_saved(h, 0, "bob@example.org", id);

    /* DATA, or BDAT chunks whose sizes add up to the message with CRLF line ends, the last one LAST. */
    for (i = 0; i < BIG_SIZE; i++) wire += msg[i] == '\n' ? 2 : 1;
    for (p = t.buf; p && (p = strstr(p, "S|BDAT ")) != NULL; p++) {
        chunked += strtoull(p + 7, NULL, 10);
        chunks++;
    }
    if (transfer == LMTP_TRANSFER_DATA) {
        assert_int_equal(chunks, 0);
        assert_has(t.buf, "\nS|DATA\n");
    } else {
        assert_true(chunks > 1);
        assert_int_equal(chunked, wire);
        assert_has(t.buf, " LAST\n");
        assert_int_equal(strstr(t.buf, " LAST\n") - t.buf + 6, (long)t.len);
    }
    trace_log_free(&t);

    {
        landing e = {"bob@example.org", V4, 0, id, msg, BIG_SIZE};
        assert_only_message("bob", &e);
    }
    assert_ok(h, lmtp_quit(h));
}

/* ---- 1,000 messages on one connection ------------------------------------------------------------ */

#define MANY 1000

/* Message i: distinct subject and sequence number, 0 to 4 more lines, a dotted line every third. */
static size_t many_message(int i, char *buf, size_t cap) {
    size_t n = (size_t)snprintf(buf, cap, "Subject: message %d of %d\nX-Seq: %d\n\n", i, MANY, i);
    int k;
    for (k = 0; k < i % 5; k++) n += (size_t)snprintf(buf + n, cap - n, "line %d of message %d\n", k, i);
    if (i % 3 == 0) n += (size_t)snprintf(buf + n, cap - n, ".dot %d\n", i);
    return n;
}

static void thousand_messages(void **state) {
    static char ids[MANY][64];
    const char *rcpts[] = {"alice@example.org"};
    lmtp_t *h = open_handle("127.0.0.1", srv.port, NULL);
    lmtp_mail_options m = LMTP_MAIL_OPTIONS_INIT;
    unsigned char seen[MANY];
    char msg[512];
    file_list l;
    size_t i;
    long t0 = now_ms();
    (void)state;

    for (i = 0; i < MANY; i++) {
        size_t n = many_message((int)i, msg, sizeof msg);
        m.transfer = i % 2 ? LMTP_TRANSFER_BDAT : LMTP_TRANSFER_DATA;
        assert_ok(h, lmtp_deliver(h, SENDER, rcpts, 1, msg, n, &m, NULL));
        assert_int_equal(lmtp_result_count(h), 1);
        assert_saved(h, 0, "alice@example.org", ids[i]);
    }
    assert_ok(h, lmtp_quit(h));
    print_message("%d deliveries in %ld ms\n", MANY, now_ms() - t0);

    /* Every one landed once, as sent, under the id of its own reply. */
    memset(seen, 0, sizeof seen);
    l = maildir_files("alice");
    assert_int_equal(l.count, MANY);
    for (i = 0; i < l.count; i++) {
        size_t len;
        char *file = slurp(l.paths[i], &len);
        const char *seq = strstr(file, "\nX-Seq: ");
        int k = seq ? atoi(seq + 8) : -1;
        free(file);
        assert_true(k >= 0 && k < MANY);
        assert_int_equal(seen[k], 0);
        seen[k] = 1;
        {
            landing e = {"alice@example.org", V4, 0, ids[k], msg, 0};
            e.len = many_message(k, msg, sizeof msg);
            assert_stored(l.paths[i], &e);
        }
    }
    free_files(&l);
}

/* ---- IPv4, IPv6, unix socket ----------------------------------------------------------------------- */

/* One message to bob over host:port; Dovecot's Received header names the peer it saw. */
static void deliver_over(const char *host, unsigned port, const lmtp_options *o, const char *peer, int tls) {
    const char *rcpts[] = {"bob@example.org"};
    char msg[256], id[128];
    lmtp_t *h = open_handle(host, port, o);
    snprintf(msg, sizeof msg, "Subject: over %s\n\nsent to %s, TLS %s\n", host, host, tls ? "on" : "off");
    assert_int_equal(lmtp_tls_active(h), tls);
    /* STARTTLS is offered before TLS only. */
    assert_int_equal(lmtp_supports(h, "STARTTLS"), !tls);
    assert_string_equal(lmtp_domain(h), srv.domain);
    assert_ok(h, lmtp_deliver(h, SENDER, rcpts, 1, msg, strlen(msg), NULL, NULL));
    assert_int_equal(lmtp_result_count(h), 1);
    assert_saved(h, 0, "bob@example.org", id);
    {
        landing e = {"bob@example.org", peer, tls, id, msg, strlen(msg)};
        assert_only_message("bob", &e);
    }
    assert_ok(h, lmtp_quit(h));
    assert_int_equal(lmtp_is_connected(h), 0);
}

static void over_ipv4(void **state) {
    (void)state;
    deliver_over("127.0.0.1", srv.port, NULL, V4, 0);
}

static void over_ipv6(void **state) {
    (void)state;
    deliver_over("::1", srv.port, NULL, " ([::1])", 0);
}

static void over_unix_socket(void **state) {
    (void)state;
    deliver_over(srv.socket, 0, NULL, "", 0);
}

/* ---- STARTTLS -------------------------------------------------------------------------------------- */

static char ca_file[128];

static void tls_options(lmtp_options *o, const char *ca) {
    default_options(o);
    snprintf(ca_file, sizeof ca_file, "%s/certs/%s", srv.top, ca);
    o->starttls = LMTP_STARTTLS_REQUIRED;
    o->tls_ca_file = ca_file;
}

static void starttls_with_own_ca(void **state) {
    lmtp_options o;
    (void)state;
    tls_options(&o, "ca.pem");
    deliver_over("127.0.0.1", srv.port, &o, V4, 1);
    clear_maildirs(NULL);
    deliver_over("::1", srv.port, &o, " ([::1])", 1);
    clear_maildirs(NULL);
    /* Over the unix socket the name to verify must be given. */
    o.tls_server_name = "localhost";
    deliver_over(srv.socket, 0, &o, "", 1);
}

/* A certificate the client cannot trust: no connection, a status and a sentence that say why. */
static void assert_refused(const lmtp_options *o, const char *host, const char *why) {
    lmtp_t *h = NULL;
    int st = lmtp_new(&h, host, srv.port, o);
    assert_non_null(h);
    handles[nhandles++] = h;
    assert_status(h, st, LMTP_ERR_CERTIFICATE);
    assert_int_equal(lmtp_errcode(h), LMTP_ERR_CERTIFICATE);
    assert_has(lmtp_errmsg(h), why);
    assert_int_equal(lmtp_is_connected(h), 0);
    assert_int_equal(lmtp_tls_active(h), 0);
}

static void starttls_refuses_what_it_cannot_trust(void **state) {
    lmtp_options o;
    (void)state;
    tls_options(&o, "other-ca.pem");
    assert_refused(&o, "127.0.0.1", "unable to get local issuer certificate");
    tls_options(&o, "ca.pem");
    o.tls_server_name = "other.example";
    assert_refused(&o, "127.0.0.1", "hostname mismatch");
    assert_int_equal(count_files("alice") + count_files("bob"), 0);
}

/* ---- the program ------------------------------------------------------------------------------------ */

#define CASE(f) cmocka_unit_test_setup_teardown(f, clear_maildirs, free_handles)
/* A case run by DATA and by BDAT: *state points to the transfer. */
static const int by_data = LMTP_TRANSFER_DATA, by_bdat = LMTP_TRANSFER_BDAT;
/* clang-format off */
#define BOTH(f)                                                                    \
    {#f "_by_data", f, clear_maildirs, free_handles, (void *)&by_data},            \
        {#f "_by_bdat", f, clear_maildirs, free_handles, (void *)&by_bdat}
#define CONTENT(name, i)                                                                                \
    {"content_" name "_by_data", content_case, clear_maildirs, free_handles, (void *)&jobs[2 * (i)]}, \
        {"content_" name "_by_bdat", content_case, clear_maildirs, free_handles, (void *)&jobs[2 * (i) + 1]}
/* clang-format on */

int main(int argc, char **argv) {
    static const struct CMUnitTest tests[] = {
        CASE(one_recipient),
        BOTH(several_recipients),
        CONTENT("dots", DOTS),
        CONTENT("998_octet_lines", LONG_LINES),
        CONTENT("no_final_newline", NO_FINAL_NEWLINE),
        CONTENT("8bit", EIGHT_BIT),
        CONTENT("empty", EMPTY),
        CONTENT("crlf_and_cr", CRLF_AND_CR),
        BOTH(stream_20mb),
        CASE(thousand_messages),
        CASE(over_ipv4),
        CASE(over_ipv6),
        CASE(over_unix_socket),
        CASE(starttls_with_own_ca),
        CASE(starttls_refuses_what_it_cannot_trust),
    };
    int failed;
    srv.certgen = argc > 1 ? argv[1] : NULL;
    srv.script = argc > 2 ? argv[2] : getenv("LMTP_DOVECOT");
    if (!srv.script || !srv.certgen) {
        fprintf(stderr, "usage: %s MAKE_TEST_CERTS [DOVECOT_SH] (by default $LMTP_DOVECOT)\n", argv[0]);
        return 2;
    }
    if (make_contents() != 0) return 1;
    atexit(stop_server);
    failed = cmocka_run_group_tests_name("dovecot", tests, start_server, stop_server_teardown);
    free_contents();
    free(big);
    return failed;
}
