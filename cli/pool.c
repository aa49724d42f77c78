/* lmtp-send: a bulk run over a pool of connections (--connections K, lmtp_pool_*).
 *
 * Messages are read whole into memory (the pool sends a message again after a 4xx, which a
 * streamed one cannot be), submitted without blocking, and driven by a poll() loop. Results come
 * in any order; each waits in its slot of a window until those before it are printed, so the
 * report keeps the order of the input. The window bounds memory: at most WINDOW_PER_CONNECTION
 * messages per connection, and WINDOW_BYTES of them (one message at least), are held at once;
 * the next message is read only when the oldest one is reported. */
#define _POSIX_C_SOURCE 200809L
#include "lmtp-send.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

enum { WINDOW_PER_CONNECTION = 4, WINDOW_MIN = 16 };
#define WINDOW_BYTES (64ull << 20)

typedef enum { SLOT_FREE, SLOT_SENT, SLOT_DONE, SLOT_UNREADABLE } slot_state;

struct pool_run;

/* One message of the window, from its reading to its report. */
typedef struct slot {
    slot_state state;
    struct pool_run *run;
    char *label;
    char *data; /* the message, until its callback */
    size_t len;
    unsigned long index; /* from 1, in the order of the input */
    int err;             /* SLOT_UNREADABLE: errno */
    report rep;          /* SLOT_DONE */
} slot;

typedef struct pool_run {
    bulk *b;
    lmtp_pool *pool;
    const maildir_list *list; /* a Maildir, or */
    input *mbox;              /* an mbox */
    slot *ring;
    size_t window;
    unsigned long head, next;  /* the next message to report, the next to read (0-based) */
    unsigned long long held;   /* octets of the messages in memory */
    int input_done;            /* no message left to read (or reading stopped) */
    char *gave_up;             /* the pool could not connect: why */
    int *fds, *wants, *ready_fds, *ready_events;
    struct pollfd *pfds;
    size_t cap;
} pool_run;

/* The pool's callback: keeps the message's report until its turn. */
static void message_done(void *user, lmtp_pool *p, size_t index, lmtp_t *r, int status) {
    slot *s = user;
    pool_run *run = s->run;
    config *c = run->b->c;
    (void)p;
    (void)index;
    report_capture(&s->rep, r, status, c->rcpts, c->nrcpts);
    s->rep.aborted = status == LMTP_ERR_CLOSED && interrupted >= 2;
    /* Nothing sent and no server to send it to: the rest of the input would fare the same. */
    int code = exit_for_status(status);
    if (lmtp_result_count(r) == 0 && (code == EXIT_UNAVAILABLE || code == EXIT_NOPERM) && !run->gave_up)
        run->gave_up = xalloc(strdup(lmtp_errmsg(r)));
    free(s->data);
    s->data = NULL;
    run->held -= s->len;
    s->state = SLOT_DONE;
}

/* The whole current message of `in` into s->data; 0, or -1 (errno, or a second Ctrl-C). */
static int read_whole(input *in, slot *s) {
    size_t cap = input_file_size(in) && input_file_size(in) < ((size_t)-1) / 2 ? (size_t)input_file_size(in) + 1 : 65536;
    s->data = xalloc(malloc(cap));
    s->len = 0;
    for (;;) {
        if (s->len == cap) {
            if (cap > ((size_t)-1) / 2) {
                errno = EFBIG;
                return -1;
            }
            cap *= 2;
            s->data = xalloc(realloc(s->data, cap));
        }
        long n = input_read(in, s->data + s->len, cap - s->len);
        if (n < 0) {
            if (!input_aborted(in)) errno = input_error(in);
            return -1;
        }
        if (n == 0) return 0;
        s->len += (size_t)n;
    }
}

static slot *new_slot(pool_run *run, const char *label) {
    slot *s = &run->ring[run->next % run->window];
    memset(s, 0, sizeof *s);
    s->run = run;
    s->label = xalloc(strdup(label));
    s->index = run->next + 1;
    run->next++;
    return s;
}

static void submit(pool_run *run, slot *s) {
    config *c = run->b->c;
    struct lmtp_message m;
    lmtp_message_init(&m);
    m.from = c->from;
    m.rcpts = c->rcpts;
    m.nrcpts = c->nrcpts;
    m.data = s->data;
    m.len = s->len;
    m.mail = &c->mopts;
    m.rcpt = &c->ropts;
    s->state = SLOT_SENT;
    run->held += s->len;
    if (lmtp_pool_submit(run->pool, &m, message_done, s, NULL) != LMTP_OK) {
        /* Unusable as given: no callback comes; it is reported with the pool's reason. */
        free(s->data);
        s->data = NULL;
        run->held -= s->len;
        report_unsent(&s->rep, lmtp_pool_errcode(run->pool), lmtp_pool_errmsg(run->pool), c->rcpts, c->nrcpts);
        s->state = SLOT_DONE;
    }
}

/* The next message's label ("(if any)" when an mbox may hold no more), for "not sent". */
static void stop_reading(pool_run *run, const char *why) {
    bulk *b = run->b;
    char label[4096];
    run->input_done = 1;
    if (run->list) {
        bulk_stop(b, run->next < run->list->count ? run->list->paths[run->next] : NULL, why);
        return;
    }
    snprintf(label, sizeof label, "%s#%lu", b->c->mbox, run->next + 1);
    bulk_stop(b, input_next_message(run->mbox) > 0 ? label : NULL, why);
}

/* Reads and submits messages while the window has room. */
static void fill(pool_run *run) {
    char label[4096];
    while (!run->input_done && run->next - run->head < run->window &&
           (run->held < WINDOW_BYTES || run->next == run->head)) {
        if (run->gave_up) {
            stop_reading(run, run->gave_up);
            return;
        }
        if (interrupted) {
            stop_reading(run, "interrupted");
            return;
        }
        input *in;
        if (run->list) {
            if (run->next >= run->list->count) {
                run->input_done = 1;
                return;
            }
            const char *path = run->list->paths[run->next];
            slot *s = new_slot(run, path);
            if ((in = input_open(path, 0)) == NULL) {
                s->err = errno;
                s->state = SLOT_UNREADABLE;
                continue;
            }
            if (read_whole(in, s) != 0) {
                s->err = errno;
                s->state = SLOT_UNREADABLE;
                free(s->data);
                s->data = NULL;
            } else {
                submit(run, s);
            }
            input_close(in);
            continue;
        }
        in = run->mbox;
        snprintf(label, sizeof label, "%s#%lu", run->b->c->mbox, run->next + 1);
        int more = input_next_message(in);
        if (more == 0) {
            run->input_done = 1;
            return;
        }
        if (more > 0 && interrupted) {
            run->input_done = 1;
            bulk_stop(run->b, label, "interrupted");
            return;
        }
        slot *s = new_slot(run, label);
        if (more < 0 || read_whole(in, s) != 0) {
            s->err = input_error(in) ? input_error(in) : errno;
            free(s->data);
            s->data = NULL;
            run->input_done = 1;
            if (input_aborted(in)) {  // a second Ctrl-C while reading it: never sent
                free(s->label);
                run->next--;
                bulk_stop(run->b, label, "interrupted");
                return;
            }
            s->state = SLOT_UNREADABLE;
            bulk_stop(run->b, label, strerror(s->err ? s->err : EIO));
            return;
        }
        submit(run, s);
    }
}

/* Reports the messages whose turn it is, in the order of the input. */
static void flush(pool_run *run) {
    bulk *b = run->b;
    while (run->head < run->next) {
        slot *s = &run->ring[run->head % run->window];
        if (s->state == SLOT_UNREADABLE) {
            bulk_unreadable(b, s->label, s->err ? s->err : EIO);
        } else if (s->state == SLOT_DONE) {
            b->prog.bytes += s->len;
            bulk_report(b, &s->rep, s->label, s->index, s->len);
            report_free(&s->rep);
        } else {
            return;
        }
        free(s->label);
        s->state = SLOT_FREE;
        run->head++;
    }
}

/* One wait on the pool's sockets (or its timer), then what it found. */
static void wait_once(pool_run *run) {
    size_t n;
    while ((n = lmtp_pool_fds(run->pool, run->fds, run->wants, run->cap)) > run->cap) {
        run->cap = n * 2;
        run->fds = xalloc(realloc(run->fds, run->cap * sizeof *run->fds));
        run->wants = xalloc(realloc(run->wants, run->cap * sizeof *run->wants));
        run->ready_fds = xalloc(realloc(run->ready_fds, run->cap * sizeof *run->ready_fds));
        run->ready_events = xalloc(realloc(run->ready_events, run->cap * sizeof *run->ready_events));
        run->pfds = xalloc(realloc(run->pfds, run->cap * sizeof *run->pfds));
    }
    for (size_t i = 0; i < n; i++) {
        run->pfds[i].fd = run->fds[i];
        run->pfds[i].events = (short)(((run->wants[i] & LMTP_IO_READ) ? POLLIN : 0) |
                                      ((run->wants[i] & LMTP_IO_WRITE) ? POLLOUT : 0));
        run->pfds[i].revents = 0;
    }
    int timeout = lmtp_pool_timeout_ms(run->pool);
    const progress *p = &run->b->prog;
    if (p->interval > 0) {  // wake up for the progress line too
        int tick = p->tty ? 100 : (int)(p->interval * 1000 < 1000 ? p->interval * 1000 + 1 : 1000);
        if (timeout < 0 || timeout > tick) timeout = tick;
    }
    int rc = poll(run->pfds, (nfds_t)n, timeout);
    if (rc < 0) return;  // EINTR (Ctrl-C): the caller looks at it
    size_t k = 0;
    for (size_t i = 0; i < n && rc > 0; i++) {
        short ev = run->pfds[i].revents;
        if (!ev) continue;
        run->ready_fds[k] = run->pfds[i].fd;
        run->ready_events[k] = ((ev & (POLLIN | POLLHUP | POLLERR)) ? LMTP_IO_READ : 0) | ((ev & POLLOUT) ? LMTP_IO_WRITE : 0);
        k++;
    }
    lmtp_pool_process(run->pool, run->ready_fds, run->ready_events, k);
}

void run_pool(bulk *b, const maildir_list *list, input *in) {
    config *c = b->c;
    pool_run run;
    memset(&run, 0, sizeof run);
    run.b = b;
    run.list = c->maildir ? list : NULL;
    run.mbox = c->maildir ? NULL : in;
    run.window = c->connections * WINDOW_PER_CONNECTION < WINDOW_MIN ? WINDOW_MIN : c->connections * WINDOW_PER_CONNECTION;
    run.ring = xalloc(calloc(run.window, sizeof *run.ring));

    lmtp_pool_options po;
    lmtp_pool_options_init(&po);
    po.connections = c->connections;
    if (c->retries == 0)
        po.flags |= LMTP_POOL_NO_RETRIES;
    else if (c->retries > 0)
        po.retries = (unsigned)c->retries;
    po.retry_delay_ms = c->retry_delay_ms;
    po.retry_delay_max_ms = c->retry_delay_max_ms;
    if (c->mailbox_concurrency == 0)
        po.flags |= LMTP_POOL_NO_MAILBOX_LIMIT;
    else if (c->mailbox_concurrency > 0)
        po.mailbox_concurrency = (unsigned)c->mailbox_concurrency;
    int st = lmtp_pool_new(&run.pool, &c->opts, &po);
    if (st == LMTP_OK) st = lmtp_pool_add_server(run.pool, c->host, c->port);
    if (st != LMTP_OK) {
        const char *why = run.pool ? lmtp_pool_errmsg(run.pool) : lmtp_strerror(st);
        fprintf(stderr, "lmtp-send: %s\n", why);
        b->code = worse(b->code, exit_for_status(st));
        bulk_stop(b, NULL, why);
        lmtp_pool_free(run.pool);
        free(run.ring);
        return;
    }
    for (;;) {
        fill(&run);
        flush(&run);
        if (run.head == run.next && run.input_done) break;
        if (interrupted >= 2 && run.pool) {
            /* Abandon what is under way: each message still pending gets its callback
             * (LMTP_ERR_CLOSED; the recipients of one whose end went out UNKNOWN). */
            if (!run.input_done) stop_reading(&run, "interrupted");
            lmtp_pool_free(run.pool);
            run.pool = NULL;
            continue;
        }
        if (run.pool && lmtp_pool_pending(run.pool) > 0) {
            wait_once(&run);
            progress_bytes(&b->prog, 0);  // the progress line, when it is time
        }
    }
    if (run.gave_up && !c->json) fprintf(stderr, "lmtp-send: %s\n", run.gave_up);
    lmtp_pool_free(run.pool);
    free(run.gave_up);
    free(run.ring);
    free(run.fds);
    free(run.wants);
    free(run.ready_fds);
    free(run.ready_events);
    free(run.pfds);
}
