/* bench-c: the benchmark client over the C API (liblmtp.so.1, lmtp.h only).
 * Arguments and output: clients/args.h. Per message: lmtp_deliver (the body
 * from memory) or lmtp_deliver_stream (--stream: read from the file, so
 * memory stays bounded whatever the size). --batch: one lmtp_deliver_batch
 * call per connection, when the library has it. Every recipient's final
 * verdict is counted. */
#include "args.h"

#include <lmtp.h>

#if defined(LMTP_MESSAGE_INIT) || defined(LMTP_HAVE_DELIVER_BATCH)
#define BENCH_HAVE_BATCH 1
#endif

typedef struct file_source {
    const char *path;
    FILE *f;
    int done;
} file_source;

static long read_file(void *user, void *buf, size_t cap) {
    file_source *s = user;
    if (s->done) return 0;
    if (!s->f && !(s->f = fopen(s->path, "rb"))) return -1;
    size_t n = fread(buf, 1, cap, s->f);
    if (n == 0) {
        int err = ferror(s->f);
        fclose(s->f);
        s->f = NULL;
        s->done = 1;
        return err ? -1 : 0;
    }
    return (long)n;
}

typedef struct tally {
    long ok, failed, errors;
} tally;

/* The verdicts of the transaction the handle describes. */
static void count_results(lmtp_t *h, int status, size_t nto, tally *t) {
    size_t n = lmtp_result_count(h);
    long ok = 0;
    for (size_t i = 0; i < n; i++)
        if (lmtp_result_status(h, i) == LMTP_RESULT_OK) ok++;
    t->ok += ok;
    t->failed += (long)nto - ok; /* refused, deferred, or no verdict */
    if (status != LMTP_OK) t->errors++;
}

static lmtp_t *open_connection(const bench_args *a) {
    lmtp_options opts = LMTP_OPTIONS_INIT;
    opts.timeout_ms = 60000;
    opts.hello = "bench.example.org";
    lmtp_t *h = NULL;
    if (lmtp_new(&h, a->host, a->port, &opts) != LMTP_OK) {
        fprintf(stderr, "bench-c: connect: %s\n", h ? lmtp_errmsg(h) : "out of memory");
        lmtp_free(h);
        return NULL;
    }
    return h;
}

#ifdef BENCH_HAVE_BATCH
typedef struct batch_state {
    size_t nto;
    tally *t;
    lmtp_t *h;
} batch_state;

static int on_message(void *user, size_t index, int status) {
    batch_state *b = user;
    (void)index;
    count_results(b->h, status, b->nto, b->t);
    return 0;
}

/* `count` messages in one call over `h`. */
static int send_batch(lmtp_t *h, const bench_args *a, const char *data, size_t len, long count, tally *t) {
    struct lmtp_message *msgs = calloc((size_t)count, sizeof *msgs);
    file_source *src = a->stream ? calloc((size_t)count, sizeof *src) : NULL;
    if (!msgs || (a->stream && !src)) return -1;
    for (long i = 0; i < count; i++) {
        struct lmtp_message *m = &msgs[i];
        m->struct_size = sizeof *m;
        m->from = a->from;
        m->rcpts = a->to;
        m->nrcpts = a->nto;
        if (a->stream) {
            src[i].path = a->body;
            m->read = read_file;
            m->read_user = &src[i];
        } else {
            m->data = data;
            m->len = len;
        }
    }
    batch_state b = {a->nto, t, h};
    tally before = *t;
    int st = lmtp_deliver_batch(h, msgs, (size_t)count, on_message, &b);
    /* messages the call never reached count as failed for every recipient */
    long reached = (t->ok + t->failed - before.ok - before.failed) / (long)a->nto;
    if (reached < count) {
        t->failed += (count - reached) * (long)a->nto;
        t->errors += count - reached;
    }
    if (st != LMTP_OK) fprintf(stderr, "bench-c: batch: %s\n", lmtp_errmsg(h));
    if (src)
        for (long i = 0; i < count; i++)
            if (src[i].f) fclose(src[i].f);
    free(src);
    free(msgs);
    return 0;
}
#endif

int main(int argc, char **argv) {
    bench_args a;
    if (bench_parse(&a, argc, argv) != 0) return 64;
#ifndef BENCH_HAVE_BATCH
    if (a.batch) {
        printf("UNSUPPORTED this liblmtp has no lmtp_deliver_batch\n");
        return 3;
    }
#endif
    size_t len = 0;
    char *data = NULL;
    if (!a.stream && !(data = bench_slurp(a.body, &len))) return 66;

    bench_ready();
    double start = bench_now();
    tally t = {0, 0, 0};
    lmtp_t *h = NULL;
    long sent = 0;
    while (sent < a.messages) {
        if (!h && !(h = open_connection(&a))) {
            t.errors++;
            t.failed += (long)a.nto;
            sent++;
            continue;
        }
        long count = a.reconnect ? 1 : a.messages - sent;
#ifdef BENCH_HAVE_BATCH
        if (a.batch) {
            send_batch(h, &a, data, len, count, &t);
            sent += count;
        } else
#endif
        {
            for (long i = 0; i < count; i++) {
                int st;
                if (a.stream) {
                    file_source src = {a.body, NULL, 0};
                    st = lmtp_deliver_stream(h, a.from, a.to, a.nto, read_file, &src, NULL, NULL);
                    if (src.f) fclose(src.f);
                } else {
                    st = lmtp_deliver(h, a.from, a.to, a.nto, data, len, NULL, NULL);
                }
                if (st != LMTP_OK) fprintf(stderr, "bench-c: deliver: %s\n", lmtp_errmsg(h));
                count_results(h, st, a.nto, &t);
                sent++;
                if (!lmtp_is_connected(h)) break;
            }
        }
        if (a.reconnect || !lmtp_is_connected(h)) {
            if (lmtp_is_connected(h)) lmtp_quit(h);
            lmtp_free(h);
            h = NULL;
        }
    }
    if (h) {
        lmtp_quit(h);
        lmtp_free(h);
    }
    double end = bench_now();
    bench_result(start, end, sent, t.ok, t.failed, t.errors);
    free(data);
    return 0;
}
