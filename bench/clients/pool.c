/* bench-pool: N messages over a pool of K connections (lmtp_pool_deliver, blocking).
 *
 *   bench-pool HOST PORT MESSAGES CONNECTIONS BODY_FILE [PREFIX USERS]
 *
 * (BODY_FILE: the message, e.g. made by lmtp-sink --make-body, which checks every body.)
 * The pool keeps one message in flight per connection, so that against a server waiting D before
 * each flush of replies K connections should take about N * D / K. Every message has its own
 * recipient (no per-mailbox limit is met): bench<i>@example.org, or PREFIX<i modulo USERS>@example.org
 * (e.g. "user" 64 for a Dovecot started with LMTP_USERS=64).
 * Prints "RESULT seconds=S ok=N failed=N". */
#define _POSIX_C_SOURCE 200809L
#include <lmtp.h>

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

static void done(void *user, lmtp_pool *p, size_t index, lmtp_t *r, int status) {
    size_t i, n = lmtp_result_count(r);
    long ok = 0;
    (void)user;
    (void)p;
    (void)index;
    for (i = 0; i < n; i++) ok += lmtp_result_status(r, i) == LMTP_RESULT_OK;
    ok_count += ok;
    failed_count += (status == LMTP_OK && n) ? (long)n - ok : 1;
}

int main(int argc, char **argv) {
    lmtp_pool_options po = LMTP_POOL_OPTIONS_INIT;
    lmtp_pool *pool = NULL;
    struct lmtp_message *msgs;
    char (*addr)[48];
    const char **rcpts;
    const char *prefix = argc > 7 ? argv[6] : "bench";
    long users = argc > 7 ? atol(argv[7]) : 0;
    long n, k, i;
    size_t size = 0;
    char *body;
    FILE *bf;
    double t0;
    int st;
    if (argc < 6) {
        fprintf(stderr, "usage: bench-pool HOST PORT MESSAGES CONNECTIONS BODY_FILE\n");
        return 64;
    }
    n = atol(argv[3]);
    k = atol(argv[4]);
    bf = fopen(argv[5], "rb");
    if (!bf || n <= 0 || k <= 0 || (argc > 7 && users <= 0)) {
        fprintf(stderr, "bench-pool: bad arguments\n");
        return 64;
    }
    body = malloc(1 << 20);
    if (body) size = fread(body, 1, 1 << 20, bf);
    fclose(bf);
    msgs = calloc((size_t)n, sizeof *msgs);
    addr = calloc((size_t)n, sizeof *addr);
    rcpts = calloc((size_t)n, sizeof *rcpts);
    if (!body || !msgs || !addr || !rcpts) return 70;
    for (i = 0; i < n; i++) {
        snprintf(addr[i], sizeof addr[i], "%.8s%ld@example.org", prefix, users ? i % users : i);
        rcpts[i] = addr[i];
        lmtp_message_init(&msgs[i]);
        msgs[i].from = "sender@example.org";
        msgs[i].rcpts = &rcpts[i];
        msgs[i].nrcpts = 1;
        msgs[i].data = body;
        msgs[i].len = size;
    }
    po.connections = (unsigned)k;
    po.flags = LMTP_POOL_NO_MESSAGE_LIMIT;
    if (lmtp_pool_new(&pool, NULL, &po) != LMTP_OK ||
        lmtp_pool_add_server(pool, argv[1], (unsigned)strtoul(argv[2], NULL, 10)) != LMTP_OK) {
        fprintf(stderr, "bench-pool: %s\n", lmtp_pool_errmsg(pool));
        lmtp_pool_free(pool);
        return 1;
    }
    t0 = now_s();
    st = lmtp_pool_deliver(pool, msgs, (size_t)n, done, NULL);
    printf("RESULT seconds=%.6f ok=%ld failed=%ld\n", now_s() - t0, ok_count, failed_count);
    if (st != LMTP_OK) fprintf(stderr, "bench-pool: %s\n", lmtp_pool_errmsg(pool));
    lmtp_pool_free(pool);
    free(body);
    free(msgs);
    free(addr);
    free((void *)rcpts);
    return st == LMTP_OK && failed_count == 0 ? 0 : 1;
}
