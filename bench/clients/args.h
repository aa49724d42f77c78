/* The arguments every benchmark client takes (ours and the peers), parsed for
 * the C programs. See bench/README.md.
 *
 *   --host H --port P          the sink
 *   --messages N               how many messages
 *   --to ADDR                  a recipient (repeat for more)
 *   --from ADDR                the sender (default bench@example.org)
 *   --body FILE                the message, sent as it is (made by lmtp-sink --make-body)
 *   --reconnect                a new connection for each message
 *   --stream                   read the message from FILE for each message instead of memory
 *   --batch                    one batch call for all the messages of a connection
 *
 * Each client prints "READY", waits for a line on stdin, runs, and prints
 *   RESULT start=EPOCH end=EPOCH messages=N rcpt_ok=N rcpt_failed=N errors=N
 * (errors: messages the client could not complete); "UNSUPPORTED why" and
 * exit status 3 when it cannot do what was asked (a batch call it lacks).
 */
#ifndef BENCH_ARGS_H
#define BENCH_ARGS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

typedef struct bench_args {
    const char *host;
    unsigned port;
    long messages;
    const char *to[256];
    size_t nto;
    const char *from;
    const char *body;
    int reconnect, stream, batch;
} bench_args;

static int bench_parse(bench_args *a, int argc, char **argv) {
    memset(a, 0, sizeof *a);
    a->host = "127.0.0.1";
    a->messages = 1;
    a->from = "bench@example.org";
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(k, "--reconnect")) { a->reconnect = 1; continue; }
        if (!strcmp(k, "--stream")) { a->stream = 1; continue; }
        if (!strcmp(k, "--batch")) { a->batch = 1; continue; }
        if (!v) { fprintf(stderr, "%s: %s needs a value\n", argv[0], k); return -1; }
        i++;
        if (!strcmp(k, "--host")) a->host = v;
        else if (!strcmp(k, "--port")) a->port = (unsigned)atoi(v);
        else if (!strcmp(k, "--messages")) a->messages = atol(v);
        else if (!strcmp(k, "--from")) a->from = v;
        else if (!strcmp(k, "--body")) a->body = v;
        else if (!strcmp(k, "--to") && a->nto < sizeof a->to / sizeof a->to[0]) a->to[a->nto++] = v;
        else { fprintf(stderr, "%s: unknown argument %s\n", argv[0], k); return -1; }
    }
    if (!a->port || !a->body || !a->nto || a->messages < 1) {
        fprintf(stderr, "usage: %s --host H --port P --messages N --to ADDR... --body FILE "
                        "[--from ADDR] [--reconnect] [--stream] [--batch]\n", argv[0]);
        return -1;
    }
    return 0;
}

static double bench_now(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* READY, then wait for the go line. The peak resident size counts from here
 * (Linux: "5" in /proc/self/clear_refs resets it): what a client holds to
 * deliver counts, what it took to load the message from the file does not. */
static void bench_ready(void) {
    char line[64];
    FILE *refs = fopen("/proc/self/clear_refs", "w");
    if (refs) {
        fputs("5", refs);
        fclose(refs);
    }
    printf("READY\n");
    fflush(stdout);
    if (!fgets(line, sizeof line, stdin)) exit(2);
}

static void bench_result(double start, double end, long messages, long ok, long failed, long errors) {
    printf("RESULT start=%.6f end=%.6f messages=%ld rcpt_ok=%ld rcpt_failed=%ld errors=%ld\n", start, end, messages,
           ok, failed, errors);
    fflush(stdout);
}

/* The whole file in memory (malloc'd), its size in *len. */
static char *bench_slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); return NULL; }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        perror(path);
        fclose(f);
        free(buf);
        return NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

#endif
