/*
 * poll_many - many LMTP connections delivering at once from one thread, with poll().
 *
 *   poll_many HOST PORT CONNECTIONS MESSAGES RECIPIENT [RCPT_COUNT]
 *
 * Opens CONNECTIONS connections to HOST:PORT without blocking (HOST an IP address or a unix
 * socket path: a host name would block in its lookup), submits MESSAGES messages on each at once
 * (they go pipelined back to back), and runs every connection from one poll() loop until each
 * message has its callback. Each message goes to RCPT_COUNT recipients (default 1): RECIPIENT
 * with its '#' replaced by a running number (user#@example.org: user0@, user1@...). Prints one line per message that
 * did not reach every recipient, then a summary; exits 0 when every recipient of every message
 * got the message, 1 otherwise, 2 on bad arguments.
 */
#define _POSIX_C_SOURCE 200809L
#include <lmtp.h>

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct job {
    char body[256];
    char rcpt_text[8][128];
    const char *rcpts[8];
    struct lmtp_message msg;
    int done;
};

struct tally {
    unsigned long messages, delivered, failed_recipients, failed_messages;
};

static struct tally tally;

/* `pattern` with its first '#' replaced by n. */
static void recipient(char *out, size_t cap, const char *pattern, int n) {
    const char *hash = strchr(pattern, '#');
    if (!hash)
        snprintf(out, cap, "%s", pattern);
    else
        snprintf(out, cap, "%.*s%d%s", (int)(hash - pattern), pattern, n, hash + 1);
}

/* Called once per message (lmtp.h, rule N7): its recipients' verdicts are in the result getters. */
static void done(void *user, lmtp_t *h, int status) {
    struct job *j = user;
    size_t i, n = lmtp_result_count(h), ok = 0;
    j->done = 1;
    tally.messages++;
    for (i = 0; i < n; i++) {
        if (lmtp_result_status(h, i) == LMTP_RESULT_OK) {
            ok++;
        } else {
            tally.failed_recipients++;
            printf("%s: %d %s\n", lmtp_result_address(h, i), lmtp_result_code(h, i), lmtp_result_text(h, i));
        }
    }
    if (status != LMTP_OK || ok != j->msg.nrcpts) {
        tally.failed_messages++;
        if (status != LMTP_OK) printf("message failed: %s: %s\n", lmtp_status_name(status), lmtp_errmsg(h));
    } else {
        tally.delivered++;
    }
}

int main(int argc, char **argv) {
    const char *host, *fmt;
    unsigned port;
    int conns, per, nrcpt, c, k, r, number = 0;
    lmtp_t **h;
    struct job *jobs;
    struct pollfd *fds;
    lmtp_options o = LMTP_OPTIONS_INIT;

    if (argc < 6) {
        fprintf(stderr, "usage: %s HOST PORT CONNECTIONS MESSAGES RECIPIENT [RCPT_COUNT]\n", argv[0]);
        return 2;
    }
    host = argv[1];
    port = (unsigned)strtoul(argv[2], NULL, 10);
    conns = atoi(argv[3]);
    per = atoi(argv[4]);
    fmt = argv[5];
    nrcpt = argc > 6 ? atoi(argv[6]) : 1;
    if (conns < 1 || per < 1 || nrcpt < 1 || nrcpt > 8) {
        fprintf(stderr, "%s: CONNECTIONS and MESSAGES must be at least 1, RCPT_COUNT 1 to 8\n", argv[0]);
        return 2;
    }
    h = calloc((size_t)conns, sizeof *h);
    fds = calloc((size_t)conns, sizeof *fds);
    jobs = calloc((size_t)conns * (size_t)per, sizeof *jobs);
    if (!h || !fds || !jobs) return 2;
    o.timeout_ms = 30000;

    for (c = 0; c < conns; c++) {
        if (lmtp_create(&h[c], &o) != LMTP_OK || lmtp_connect_start(h[c], host, port) != LMTP_OK) {
            fprintf(stderr, "connection %d: %s\n", c, lmtp_errmsg(h[c]));
            return 1;
        }
        /* Submitted at once: they wait for the banner and LHLO, then go back to back. */
        for (k = 0; k < per; k++) {
            struct job *j = &jobs[c * per + k];
            lmtp_message_init(&j->msg);
            for (r = 0; r < nrcpt; r++) {
                recipient(j->rcpt_text[r], sizeof j->rcpt_text[r], fmt, number++);
                j->rcpts[r] = j->rcpt_text[r];
            }
            snprintf(j->body, sizeof j->body,
                     "From: poll_many@example.org\r\nSubject: connection %d message %d\r\n\r\nHello.\r\n", c, k);
            j->msg.from = "poll_many@example.org";
            j->msg.rcpts = j->rcpts;
            j->msg.nrcpts = (size_t)nrcpt;
            j->msg.data = j->body;
            j->msg.len = strlen(j->body);
            if (lmtp_submit(h[c], &j->msg, done, j) != LMTP_OK) {
                fprintf(stderr, "submit: %s\n", lmtp_errmsg(h[c]));
                return 1;
            }
        }
    }

    for (;;) {
        int timeout = -1, active = 0;
        for (c = 0; c < conns; c++) {
            int w = lmtp_pending(h[c]) ? lmtp_want(h[c]) : 0, t = lmtp_timeout_ms(h[c]);
            fds[c].fd = w ? lmtp_fd(h[c]) : -1; /* (the fd may change while connecting: read it each time) */
            fds[c].events = (short)((w & LMTP_IO_READ ? POLLIN : 0) | (w & LMTP_IO_WRITE ? POLLOUT : 0));
            fds[c].revents = 0;
            if (!lmtp_pending(h[c])) continue;
            active++;
            if (t >= 0 && (timeout < 0 || t < timeout)) timeout = t;
        }
        if (!active) break;
        if (poll(fds, (nfds_t)conns, timeout) < 0) {
            perror("poll");
            return 1;
        }
        for (c = 0; c < conns; c++) {
            int ev = 0;
            if (!lmtp_pending(h[c])) continue;
            if (fds[c].revents & (POLLIN | POLLHUP | POLLERR)) ev |= LMTP_IO_READ;
            if (fds[c].revents & POLLOUT) ev |= LMTP_IO_WRITE;
            if (ev || lmtp_timeout_ms(h[c]) == 0)
                lmtp_process(h[c], ev); /* errors reach each message's callback */
        }
    }
    for (c = 0; c < conns; c++) lmtp_free(h[c]);
    printf("%lu messages over %d connections: %lu delivered to every recipient, %lu not (%lu recipients)\n",
           tally.messages, conns, tally.delivered, tally.failed_messages, tally.failed_recipients);
    free(h);
    free(fds);
    free(jobs);
    return tally.delivered == (unsigned long)conns * (unsigned long)per ? 0 : 1;
}
