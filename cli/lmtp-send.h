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
/* One message's per-recipient verdicts after lmtp_deliver_stream returned `st`.
 * When the library refused the transaction before sending anything (it then
 * keeps no results), every recipient is reported "unknown" with the reason. */
typedef struct outcome {
    int delivered, tempfailed, permfailed, unknown;
} outcome;
outcome outcome_of(lmtp_t *h, int st, size_t nrcpts);
/* Human lines "ADDRESS STATUS CODE ENHANCED TEXT", each after `prefix`
 * (NULL: none); only the failed ones when `failures_only`. */
void print_results(FILE *out, lmtp_t *h, int st, const char *const *rcpts, size_t nrcpts, const char *prefix,
                   int failures_only);
/* One JSON object (one line) for a message; `source` may be NULL, `index` 0 for none. */
void print_json_message(FILE *out, lmtp_t *h, int st, const char *const *rcpts, size_t nrcpts, const char *source,
                        unsigned long index, unsigned long long bytes, int exit_code);
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

#endif
