/* bench-nb: N messages over K connections from one thread through the non-blocking API
 * (lmtp_connect_start, lmtp_submit, one poll() loop), or over one blocking connection
 * (lmtp_deliver per message) for comparison.
 *
 *   bench-nb HOST PORT MESSAGES CONNECTIONS nb|blocking BODY_FILE
 *
 * (BODY_FILE: the message, e.g. made by lmtp-sink --make-body, which checks every body.)
 * Each connection keeps one message in flight (lmtp_options.max_in_flight = 1): a message costs
 * it one round trip, so that K connections should take about N * D / K against a server that
 * waits D before each flush of replies. Prints "RESULT seconds=S ok=N failed=N". */
#define _POSIX_C_SOURCE 200809L
#include <lmtp.h>

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long ok_count, failed_count;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void count(lmtp_t *h, int status) {
    size_t i, n = lmtp_result_count(h);
    long ok = 0;
    for (i = 0; i < n; i++) ok += lmtp_result_status(h, i) == LMTP_RESULT_OK;
    ok_count += ok;
    failed_count += (status == LMTP_OK && n) ? (long)n - ok : 1;
}

static void done(void *user, lmtp_t *h, int status) {
    (void)user;
    count(h, status);
}

int main(int argc, char **argv) {
    static const char *rcpts[] = {"bench@example.org"};
    lmtp_options o = LMTP_OPTIONS_INIT;
    const char *host;
    unsigned port;
    long n, k, i;
    size_t size = 0;
    int blocking;
    char *body;
    FILE *bf;
    struct lmtp_message msg;
    double t0;
    if (argc < 7) {
        fprintf(stderr, "usage: bench-nb HOST PORT MESSAGES CONNECTIONS nb|blocking BODY_FILE\n");
        return 64;
    }
    host = argv[1];
    port = (unsigned)strtoul(argv[2], NULL, 10);
    n = atol(argv[3]);
    k = atol(argv[4]);
    blocking = strcmp(argv[5], "blocking") == 0;
    if (n < 1 || k < 1) return 64;
    if (!(bf = fopen(argv[6], "rb"))) {
        perror(argv[6]);
        return 66;
    }
    fseek(bf, 0, SEEK_END);
    size = (size_t)ftell(bf);
    rewind(bf);
    body = malloc(size + 1);
    if (!body || fread(body, 1, size, bf) != size) return 66;
    fclose(bf);
    lmtp_message_init(&msg);
    msg.from = "sender@example.org";
    msg.rcpts = rcpts;
    msg.nrcpts = 1;
    msg.data = body;
    msg.len = size;
    o.timeout_ms = 60000;
    o.hello = "bench.example.org";
    o.max_in_flight = 1;

    t0 = now_s();
    if (blocking) {
        lmtp_t *h = NULL;
        if (lmtp_new(&h, host, port, &o) != LMTP_OK) {
            fprintf(stderr, "bench-nb: %s\n", h ? lmtp_errmsg(h) : "out of memory");
            return 1;
        }
        for (i = 0; i < n; i++) count(h, lmtp_deliver(h, msg.from, rcpts, 1, body, size, NULL, NULL));
        lmtp_quit(h);
        lmtp_free(h);
    } else {
        lmtp_t **h = calloc((size_t)k, sizeof *h);
        struct pollfd *p = calloc((size_t)k, sizeof *p);
        if (!h || !p) return 70;
        for (i = 0; i < k; i++) {
            long j;
            if (lmtp_create(&h[i], &o) != LMTP_OK || lmtp_connect_start(h[i], host, port) != LMTP_OK) {
                fprintf(stderr, "bench-nb: %s\n", lmtp_errmsg(h[i]));
                return 1;
            }
            for (j = i; j < n; j += k) lmtp_submit(h[i], &msg, done, NULL); /* message j on connection j % k */
        }
        for (;;) {
            int active = 0, timeout = -1;
            for (i = 0; i < k; i++) {
                int w = lmtp_want(h[i]), t = lmtp_timeout_ms(h[i]);
                p[i].fd = lmtp_pending(h[i]) ? lmtp_fd(h[i]) : -1;
                p[i].events = (short)((w & LMTP_IO_READ ? POLLIN : 0) | (w & LMTP_IO_WRITE ? POLLOUT : 0));
                p[i].revents = 0;
                if (!lmtp_pending(h[i])) continue;
                active++;
                if (t >= 0 && (timeout < 0 || t < timeout)) timeout = t;
            }
            if (!active) break;
            poll(p, (nfds_t)k, timeout);
            for (i = 0; i < k; i++) {
                int ev = 0;
                if (!lmtp_pending(h[i])) continue;
                if (p[i].revents & (POLLIN | POLLHUP | POLLERR)) ev |= LMTP_IO_READ;
                if (p[i].revents & POLLOUT) ev |= LMTP_IO_WRITE;
                if (ev || lmtp_timeout_ms(h[i]) == 0) lmtp_process(h[i], ev);
            }
        }
        for (i = 0; i < k; i++) lmtp_free(h[i]);
        free(h);
        free(p);
    }
    printf("RESULT seconds=%.6f ok=%ld failed=%ld\n", now_s() - t0, ok_count, failed_count);
    free(body);
    return failed_count ? 1 : 0;
}
