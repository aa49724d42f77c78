/* lmtp-send: shared declarations of the command-line deliverer. */
#ifndef LMTP_SEND_H
#define LMTP_SEND_H

#include <lmtp.h>
#include <signal.h>
#include <stdio.h>

/* Exit codes, from sysexits.h (the values are spelled out: they are part of
 * the program's interface and documented in lmtp-send.1). */
enum {
    EXIT_DELIVERED = 0,    /* every recipient has the message */
    EXIT_USAGE = 64,       /* EX_USAGE: bad arguments */
    EXIT_PERMFAIL = 65,    /* EX_DATAERR: some recipient refused permanently (5xx), or the message too big */
    EXIT_NOINPUT = 66,     /* EX_NOINPUT: a message, CA, key or password file could not be read */
    EXIT_UNAVAILABLE = 69, /* EX_UNAVAILABLE: no server to deliver to (connect, greeting, TLS, extension) */
    EXIT_SOFTWARE = 70,    /* EX_SOFTWARE: a bug */
    EXIT_OSERR = 71,       /* EX_OSERR: out of memory */
    EXIT_IOERR = 74,       /* EX_IOERR: the connection broke (timeout, reset, closed) or the input failed */
    EXIT_TEMPFAIL = 75,    /* EX_TEMPFAIL: some recipient refused temporarily (4xx), none permanently */
    EXIT_PROTOCOL = 76,    /* EX_PROTOCOL: the server broke the protocol */
    EXIT_NOPERM = 77,      /* EX_NOPERM: authentication failed or was refused as insecure */
    EXIT_INTERRUPTED = 130 /* 128 + SIGINT: a bulk run stopped by Ctrl-C */
};

/* Ctrl-C count, set by the signal handler: 1 = stop after the current
 * transaction, 2 = abandon it (nothing delivered) and stop. */
extern volatile sig_atomic_t interrupted;

/* ---- message sources (input.c) ------------------------------------------------ */

/* One open input: a plain file (one message) or an mbox (many). Reads go
 * through a bounded buffer; memory does not grow with the message. */
typedef struct input input;

/* Opens `path` ("-" is stdin). On failure returns NULL with errno set. */
input *input_open(const char *path, int is_mbox);
void input_close(input *in);
/* mbox: moves to the next message, past its "From " line. Returns 1 when
 * there is one, 0 at the end of the file, -1 when the file is not an mbox
 * (no "From " line where a message starts) or a read failed (errno). */
int input_next_message(input *in);
/* The lmtp_read_fn for lmtp_deliver_stream: the current message's bytes.
 * Returns -1 (abandon the transaction) on a read error or a second Ctrl-C. */
long input_read(void *in, void *buf, size_t cap);
/* The errno of a failed read, else 0. */
int input_error(const input *in);
/* 1 when the last failure of input_read was a second Ctrl-C. */
int input_aborted(const input *in);
/* Octets of the file consumed so far, and of the current message given to the library. */
unsigned long long input_offset(const input *in);
unsigned long long input_message_bytes(const input *in);
/* Called by input_read with each piece given to the library (for progress). */
void input_set_progress(input *in, void (*fn)(void *user, size_t n), void *user);
/* The size of a regular file, or 0 when it is not one (a pipe, a terminal). */
unsigned long long input_file_size(const input *in);
/* The message's size on the wire (line ends made CRLF), what SIZE declares: counted by
 * liblmtp over the rest of a regular file, read apart from the message's own reads. 0 when
 * it cannot be known beforehand: a pipe, an mbox, a read that failed, a second Ctrl-C. */
unsigned long long input_canonical_size(const input *in);

/* A Maildir's messages: the files of DIR/cur and DIR/new (dot files and
 * anything that is not a regular file left out), sorted by name. */
typedef struct maildir_list {
    char **paths;
    size_t count;
    unsigned long long bytes; /* their total size */
} maildir_list;
/* Returns 0, or -1 with errno set when DIR/cur or DIR/new cannot be read. */
int maildir_scan(const char *dir, maildir_list *out);
void maildir_free(maildir_list *list);

/* ---- output (report.c) ------------------------------------------------------ */

/* "ok", "tempfail", "permfail", "unknown" (and "pending"). */
const char *status_name(int status);
/* One recipient's verdict, copied out of the library's results. */
typedef struct verdict {
    char *address;
    int status, stage, code, rcpt_code;
    int attempts; /* transactions that included it (a pool's re-sends); 0 when nothing was sent */
    char *enhanced, *text, *rcpt_text;
} verdict;
/* One message's verdicts, kept apart from the handle (a pool's result lives only during its
 * callback, and a message that finished early waits for those before it to be printed). */
typedef struct report {
    int status;   /* the library's status for the message */
    char *error;  /* its sentence, NULL when status is LMTP_OK */
    int aborted;  /* abandoned by a second Ctrl-C */
    size_t nrcpts;
    verdict *v;   /* in the order given */
} report;
/* Copies what `h` says of the message that ended with `st`. When the library refused it before
 * anything was sent (it then keeps no results), every recipient is "unknown" with the reason. */
void report_capture(report *out, lmtp_t *h, int st, const char *const *rcpts, size_t nrcpts);
/* A message nothing of which was sent, with `st` and its sentence: every recipient "unknown". */
void report_unsent(report *out, int st, const char *why, const char *const *rcpts, size_t nrcpts);
void report_free(report *r);
typedef struct outcome {
    int delivered, tempfailed, permfailed, unknown;
} outcome;
outcome outcome_of(const report *r);
/* Human lines "ADDRESS STATUS CODE ENHANCED TEXT", each after `prefix`
 * (NULL: none); only the failed ones when `failures_only`. */
void print_results(FILE *out, const report *r, const char *prefix, int failures_only);
/* One JSON object (one line) for a message; `source` may be NULL, `index` 0 for none;
 * `attempts`: each recipient gets an "attempts" field (pool runs). */
void print_json_message(FILE *out, const report *r, const char *source, unsigned long index, unsigned long long bytes,
                        int exit_code, int attempts);
/* A JSON string literal of `s` (invalid UTF-8 becomes U+FFFD). */
void print_json_string(FILE *out, const char *s);

/* Progress of a bulk run, on stderr: redrawn in place on a terminal, plain
 * lines every `interval` seconds otherwise (interval <= 0: none). */
typedef struct progress {
    int tty;
    double interval;
    unsigned long total_messages; /* 0: not known */
    unsigned long long total_bytes;
    unsigned long messages;
    unsigned long long bytes;
    double start, last;
    int shown; /* a progress line is on the terminal */
} progress;
void progress_start(progress *p, int tty, double interval, unsigned long total_messages,
                    unsigned long long total_bytes);
void progress_bytes(void *p, size_t n);
void progress_message_done(progress *p);
/* Clears the redrawn line (before other output on stderr). */
void progress_clear(progress *p);
double now_seconds(void);
/* "1.5 MiB" into buf. */
const char *human_bytes(char *buf, size_t cap, double n);

/* ---- the run (main.c) ---------------------------------------------------------- */

typedef struct config {
    const char *server;
    char *host; /* parsed from server */
    unsigned port;
    const char *from;
    const char **rcpts;
    size_t nrcpts;
    const char *file;
    const char *maildir;
    const char *mbox;
    const char *password_file;
    char *password;
    int verbose;
    int json;
    double progress_interval;
    lmtp_options opts;
    lmtp_mail_options mopts;
    lmtp_rcpt_options ropts;
    /* --connections K: a bulk run over a pool of K connections (0: one connection, no pool) */
    unsigned connections;
    int retries;                /* -1: the pool's default */
    unsigned retry_delay_ms, retry_delay_max_ms; /* 0: the pool's defaults */
    int mailbox_concurrency;    /* -1: the pool's default; 0: no limit */
} config;


/* What the trace callback needs. */
typedef struct trace_ctx {
    int verbose;
    progress *prog;
} trace_ctx;

/* A bulk run (--maildir, --mbox). */
typedef struct bulk {
    config *c;
    lmtp_t *h;
    progress prog;
    int code;
    unsigned long attempted, delivered, failed, unreadable;
    int stopped;         /* the session broke or Ctrl-C: no more messages */
    char *stopped_before; /* the first message not sent, if known */
    char *error;          /* why the session stopped */
} bulk;


/* Exits with EXIT_OSERR when p is NULL; returns p. */
void *xalloc(void *p);
/* The exit code for a call that failed with `st`, and for one message. */
int exit_for_status(int st);
int exit_for_message(const report *r);
/* The more serious of two exit codes (the order of lmtp-send.1). */
int worse(int a, int b);
/* The lmtp_trace_fn of --verbose (user: a trace_ctx). */
void trace(void *user, int direction, const char *line, size_t len);
/* No more messages: `next` is the first not sent (if known), `why` the reason (if any). */
void bulk_stop(bulk *b, const char *next, const char *why);
/* Prints one message's report and counts it (index from 1; bytes: its size as read). */
void bulk_report(bulk *b, const report *r, const char *label, unsigned long index, unsigned long long bytes);
/* A message that could not be read: reported, counted, skipped. */
void bulk_unreadable(bulk *b, const char *label, int err);

/* ---- a bulk run over a pool of connections (pool.c) ---------------------------- */

/* Delivers the messages of `list` (a Maildir) or of `in` (an mbox) over lmtp_pool with
 * c->connections connections, reporting them in the order of the input. */
void run_pool(bulk *b, const maildir_list *list, input *in);

#endif
