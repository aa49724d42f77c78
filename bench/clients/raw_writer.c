/* bench-raw: the "physical limit" reference. Writes the LMTP dialogue from
 * bytes built beforehand (the whole message in memory, sent as one BDAT LAST
 * chunk in a single writev with MAIL and RCPT) and reads the replies with the
 * least possible work. No checks beyond the reply codes: it is what any
 * client's cost is measured against, not a client. Arguments and output:
 * clients/args.h (--stream and --batch are ignored). */
#define _GNU_SOURCE
#include "args.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static char rbuf[65536];
static size_t rlen, rpos;

/* The code of the next reply (its last line), or -1. */
static int read_reply(int fd) {
    for (;;) {
        char *nl = memchr(rbuf + rpos, '\n', rlen - rpos);
        if (nl) {
            char *line = rbuf + rpos;
            rpos = (size_t)(nl - rbuf) + 1;
            if (nl - line >= 4 && line[3] == ' ') return atoi(line);
            continue;
        }
        if (rpos > 0) {
            memmove(rbuf, rbuf + rpos, rlen - rpos);
            rlen -= rpos;
            rpos = 0;
        }
        if (rlen == sizeof rbuf) return -1;
        ssize_t n = recv(fd, rbuf + rlen, sizeof rbuf - rlen, 0);
        if (n <= 0) return -1;
        rlen += (size_t)n;
    }
}

static int write_all(int fd, struct iovec *iov, int n) {
    while (n > 0) {
        ssize_t w = writev(fd, iov, n);
        if (w < 0) return -1;
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

static int dial(const bench_args *a) {
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons((unsigned short)a->port);
    if (inet_pton(AF_INET, a->host, &sin.sin_addr) != 1) return -1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&sin, sizeof sin) != 0) {
        close(fd);
        return -1;
    }
    rlen = rpos = 0;
    static char lhlo[] = "LHLO bench.example.org\r\n";
    struct iovec iov = {lhlo, sizeof lhlo - 1};
    if (read_reply(fd) != 220 || write_all(fd, &iov, 1) != 0 || read_reply(fd) != 250) {
        close(fd);
        return -1;
    }
    return fd;
}

int main(int argc, char **argv) {
    bench_args a;
    if (bench_parse(&a, argc, argv) != 0) return 64;
    size_t len = 0;
    char *body = bench_slurp(a.body, &len);
    if (!body) return 66;
    /* the envelope and the BDAT line, built once */
    size_t cap = 256 + a.nto * 300;
    char *env = malloc(cap);
    size_t el = (size_t)snprintf(env, cap, "MAIL FROM:<%s>\r\n", a.from);
    for (size_t i = 0; i < a.nto; i++) el += (size_t)snprintf(env + el, cap - el, "RCPT TO:<%s>\r\n", a.to[i]);
    el += (size_t)snprintf(env + el, cap - el, "BDAT %zu LAST\r\n", len);

    bench_ready();
    double start = bench_now();
    long ok = 0, failed = 0, errors = 0, sent = 0;
    int fd = -1;
    for (; sent < a.messages; sent++) {
        if (fd < 0 && (fd = dial(&a)) < 0) {
            errors++;
            failed += (long)a.nto;
            continue;
        }
        struct iovec iov[2] = {{env, el}, {body, len}};
        int good = write_all(fd, iov, 2) == 0 && read_reply(fd) == 250;
        long accepted = 0;
        for (size_t i = 0; good && i < a.nto; i++) {
            int c = read_reply(fd);
            if (c < 0) good = 0;
            else if (c / 100 == 2) accepted++;
        }
        long delivered = 0;
        if (good && accepted == 0 && read_reply(fd) < 0) good = 0; /* the sink's 503 to BDAT LAST */
        for (long i = 0; good && i < accepted; i++) {
            int c = read_reply(fd);
            if (c < 0) good = 0;
            else if (c / 100 == 2) delivered++;
        }
        ok += delivered;
        failed += (long)a.nto - delivered;
        if (!good) errors++;
        if (!good || a.reconnect) {
            static char quit[] = "QUIT\r\n";
            struct iovec q = {quit, sizeof quit - 1};
            if (good && write_all(fd, &q, 1) == 0) read_reply(fd);
            close(fd);
            fd = -1;
        }
    }
    if (fd >= 0) {
        static char quit[] = "QUIT\r\n";
        struct iovec q = {quit, sizeof quit - 1};
        if (write_all(fd, &q, 1) == 0) read_reply(fd);
        close(fd);
    }
    double end = bench_now();
    bench_result(start, end, sent, ok, failed, errors);
    free(env);
    free(body);
    return 0;
}
