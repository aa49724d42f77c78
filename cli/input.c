/* lmtp-send: message sources. A plain file or stdin is one message, read as
 * it is. An mbox holds many: each starts with a "From " line (not part of
 * the message), lines ">From ", ">>From "... lose one ">" (mboxrd), and the
 * empty line before the next "From " line belongs to the mbox, not to the
 * message. Everything streams through one fixed buffer. */
#define _POSIX_C_SOURCE 200809L
#include "lmtp-send.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { BUF_SIZE = 65536, LOOKAHEAD = 1024 };

struct input {
    int fd;
    int is_mbox;
    int err;     /* errno of a failed read */
    int aborted; /* a second Ctrl-C abandoned the message */
    int eof;
    char buf[BUF_SIZE];
    size_t pos, len;
    unsigned long long offset;    /* octets of the file consumed */
    unsigned long long msg_bytes; /* octets of the message given out */
    unsigned long long file_size;
    /* mbox state */
    int at_line_start;
    int msg_end;
    char held[2]; /* an empty line held back: dropped if the message ends after it */
    size_t held_len, held_off;
    void (*progress)(void *, size_t);
    void *progress_user;
};

input *input_open(const char *path, int is_mbox) {
    input *in = calloc(1, sizeof *in);
    if (!in) return NULL;
    if (strcmp(path, "-") == 0) {
        in->fd = STDIN_FILENO;
    } else {
        in->fd = open(path, O_RDONLY);
        if (in->fd < 0) {
            int e = errno;
            free(in);
            errno = e;
            return NULL;
        }
    }
    struct stat st;
    if (fstat(in->fd, &st) == 0 && S_ISREG(st.st_mode)) in->file_size = (unsigned long long)st.st_size;
    if (fstat(in->fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        input_close(in);
        errno = EISDIR;
        return NULL;
    }
    in->is_mbox = is_mbox;
    in->at_line_start = 1;
    return in;
}

void input_close(input *in) {
    if (!in) return;
    if (in->fd != STDIN_FILENO) close(in->fd);
    free(in);
}

int input_error(const input *in) { return in->err; }
int input_aborted(const input *in) { return in->aborted; }
unsigned long long input_offset(const input *in) { return in->offset; }
unsigned long long input_message_bytes(const input *in) { return in->msg_bytes; }
unsigned long long input_file_size(const input *in) { return in->file_size; }

/* A regular file read from an offset of its own, for lmtp_canonical_length_stream. */
typedef struct file_reader {
    int fd;
    off_t at;
} file_reader;

static long read_at(void *user, void *buf, size_t cap) {
    file_reader *r = user;
    for (;;) {
        if (interrupted >= 2) return -1;
        ssize_t n = pread(r->fd, buf, cap, r->at);
        if (n >= 0) {
            r->at += n;
            return (long)n;
        }
        if (errno != EINTR) return -1;
    }
}

unsigned long long input_canonical_size(const input *in) {
    if (in->is_mbox || !in->file_size) return 0;
    off_t at = lseek(in->fd, 0, SEEK_CUR);  // past what the buffer holds, not given out yet
    if (at < 0) return 0;
    file_reader r = {in->fd, at - (off_t)(in->len - in->pos)};
    unsigned long long size = 0;
    return lmtp_canonical_length_stream(read_at, &r, &size) == LMTP_OK ? size : 0;
}

void input_set_progress(input *in, void (*fn)(void *user, size_t n), void *user) {
    in->progress = fn;
    in->progress_user = user;
}

/* read(2) that goes on after a signal unless a second Ctrl-C asks to stop.
 * Returns the count, 0 at the end, -1 on failure (in->err or in->aborted set). */
static long read_some(input *in, char *buf, size_t cap) {
    for (;;) {
        if (interrupted >= 2) {
            in->aborted = 1;
            return -1;
        }
        ssize_t n = read(in->fd, buf, cap);
        if (n >= 0 && interrupted >= 2) continue;  // abandoned all the same
        if (n >= 0) return (long)n;
        if (errno != EINTR) {
            in->err = errno;
            return -1;
        }
    }
}

/* Makes at least `want` bytes available from pos (fewer only at the end of
 * the file). Returns what is available, or -1 on a failed read. */
static long ensure(input *in, size_t want) {
    while (in->len - in->pos < want && !in->eof) {
        if (in->pos > 0) {
            memmove(in->buf, in->buf + in->pos, in->len - in->pos);
            in->len -= in->pos;
            in->pos = 0;
        }
        long n = read_some(in, in->buf + in->len, BUF_SIZE - in->len);
        if (n < 0) return -1;
        if (n == 0) in->eof = 1;
        in->len += (size_t)n;
    }
    return (long)(in->len - in->pos);
}

/* At a line start: makes the whole line available, or LOOKAHEAD bytes of it
 * (enough to tell a "From " or ">From " line), without waiting for more
 * than that on a pipe. Returns what is available, or -1 on a failed read. */
static long ensure_line(input *in) {
    for (size_t want = 1;; want = in->len - in->pos + 1) {
        long avail = ensure(in, want);
        if (avail <= 0 || (size_t)avail >= LOOKAHEAD || in->eof || memchr(in->buf + in->pos, '\n', (size_t)avail))
            return avail;
    }
}

static void consume(input *in, size_t n) {
    in->pos += n;
    in->offset += n;
}

static int starts_with(const char *p, size_t avail, const char *prefix) {
    size_t n = strlen(prefix);
    return avail >= n && memcmp(p, prefix, n) == 0;
}

/* Skips the rest of the current line, its LF included. 0, or -1 on a failed read. */
static int skip_line(input *in) {
    for (;;) {
        long avail = ensure(in, 1);
        if (avail <= 0) return (int)avail;
        const char *nl = memchr(in->buf + in->pos, '\n', (size_t)avail);
        if (nl) {
            consume(in, (size_t)(nl - (in->buf + in->pos)) + 1);
            return 0;
        }
        consume(in, (size_t)avail);
    }
}

static int blank_line(const char *p, size_t avail) {
    return starts_with(p, avail, "\n") ? 1 : starts_with(p, avail, "\r\n") ? 2 : 0;
}

int input_next_message(input *in) {
    in->msg_bytes = 0;
    in->msg_end = 0;
    in->held_len = in->held_off = 0;
    in->at_line_start = 1;
    for (;;) {  // empty lines before the first "From " line are tolerated
        long avail = ensure_line(in);
        if (avail < 0) return -1;
        if (avail == 0) return 0;
        const char *p = in->buf + in->pos;
        if (starts_with(p, (size_t)avail, "From ")) return skip_line(in) < 0 ? -1 : 1;
        int blank = blank_line(p, (size_t)avail);
        if (!blank) {
            in->err = 0;
            errno = EINVAL;
            return -1;
        }
        consume(in, (size_t)blank);
    }
}

/* Copies the held empty line out as far as room allows; 1 when all of it went. */
static int flush_held(input *in, char *out, size_t cap, size_t *n) {
    while (in->held_off < in->held_len && *n < cap) out[(*n)++] = in->held[in->held_off++];
    if (in->held_off < in->held_len) return 0;
    in->held_len = in->held_off = 0;
    return 1;
}

/* The mbox form of input_read: up to the next "From " line. */
static long mbox_read(input *in, char *out, size_t cap) {
    size_t n = 0;
    while (n < cap && !in->msg_end) {
        if (in->at_line_start) {
            long avail = ensure_line(in);
            if (avail < 0) return -1;
            const char *p = in->buf + in->pos;
            if (avail == 0 || starts_with(p, (size_t)avail, "From ")) {
                in->msg_end = 1;  // the held empty line separated messages
                break;
            }
            if (!flush_held(in, out, cap, &n)) break;
            int blank = blank_line(p, (size_t)avail);
            if (blank) {
                memcpy(in->held, p, (size_t)blank);
                in->held_len = (size_t)blank;
                consume(in, (size_t)blank);
                continue;
            }
            size_t gt = 0;
            while (gt < (size_t)avail && p[gt] == '>') gt++;
            if (gt > 0 && starts_with(p + gt, (size_t)avail - gt, "From ")) consume(in, 1);
            in->at_line_start = 0;
        }
        long avail = ensure(in, 1);
        if (avail < 0) return -1;
        if (avail == 0) {
            in->msg_end = 1;
            break;
        }
        size_t take = (size_t)avail < cap - n ? (size_t)avail : cap - n;
        const char *p = in->buf + in->pos;
        const char *nl = memchr(p, '\n', take);
        if (nl) {
            take = (size_t)(nl - p) + 1;
            in->at_line_start = 1;
        }
        memcpy(out + n, p, take);
        consume(in, take);
        n += take;
    }
    return (long)n;
}

long input_read(void *user, void *buf, size_t cap) {
    input *in = user;
    long n;
    if (in->is_mbox) {
        n = mbox_read(in, buf, cap);
    } else if (in->pos < in->len) {
        n = (long)(in->len - in->pos < cap ? in->len - in->pos : cap);
        memcpy(buf, in->buf + in->pos, (size_t)n);
        in->pos += (size_t)n;
    } else {
        n = read_some(in, buf, cap);
    }
    if (n < 0) return -1;
    if (!in->is_mbox) in->offset += (unsigned long long)n;
    in->msg_bytes += (unsigned long long)n;
    if (n > 0 && in->progress) in->progress(in->progress_user, (size_t)n);
    return n;
}

/* ---- Maildir -------------------------------------------------------------------- */

static int by_name(const void *a, const void *b) {
    const char *x = strrchr(*(char *const *)a, '/');
    const char *y = strrchr(*(char *const *)b, '/');
    return strcmp(x, y);
}

static int scan_subdir(const char *dir, const char *sub, maildir_list *out, size_t *cap) {
    size_t base = strlen(dir) + strlen(sub) + 2;
    char *path = malloc(base);
    if (!path) return -1;
    snprintf(path, base, "%s/%s", dir, sub);
    DIR *d = opendir(path);
    if (!d) {
        int e = errno;
        free(path);
        errno = e;
        return -1;
    }
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        size_t len = base + strlen(e->d_name) + 1;
        char *file = malloc(len);
        struct stat st;
        if (!file) {
            rc = -1;
            break;
        }
        snprintf(file, len, "%s/%s", path, e->d_name);
        if (stat(file, &st) != 0 || !S_ISREG(st.st_mode)) {
            free(file);
            continue;
        }
        if (out->count == *cap) {
            size_t ncap = *cap ? *cap * 2 : 64;
            char **np = realloc(out->paths, ncap * sizeof *np);
            if (!np) {
                free(file);
                rc = -1;
                break;
            }
            out->paths = np;
            *cap = ncap;
        }
        out->paths[out->count++] = file;
        out->bytes += (unsigned long long)st.st_size;
    }
    closedir(d);
    free(path);
    if (rc != 0) errno = ENOMEM;
    return rc;
}

int maildir_scan(const char *dir, maildir_list *out) {
    size_t cap = 0;
    memset(out, 0, sizeof *out);
    if (scan_subdir(dir, "cur", out, &cap) != 0 || scan_subdir(dir, "new", out, &cap) != 0) {
        int e = errno;
        maildir_free(out);
        errno = e;
        return -1;
    }
    if (out->count > 1) qsort(out->paths, out->count, sizeof *out->paths, by_name);
    return 0;
}

void maildir_free(maildir_list *list) {
    for (size_t i = 0; i < list->count; i++) free(list->paths[i]);
    free(list->paths);
    memset(list, 0, sizeof *list);
}
