/* lmtp-send: what it prints. Per-recipient lines, JSON, and the progress of a bulk run. */
#define _POSIX_C_SOURCE 200809L
#include "lmtp-send.h"

#include <string.h>
#include <time.h>

const char *status_name(int status) {
    switch (status) {
        case LMTP_RESULT_PENDING: return "pending";
        case LMTP_RESULT_OK: return "ok";
        case LMTP_RESULT_TEMPFAIL: return "tempfail";
        case LMTP_RESULT_PERMFAIL: return "permfail";
        default: return "unknown";
    }
}

static const char *stage_name(int stage) {
    switch (stage) {
        case LMTP_STAGE_MAIL: return "mail";
        case LMTP_STAGE_RCPT: return "rcpt";
        case LMTP_STAGE_DATA: return "data";
        default: return "none";
    }
}

/* One recipient's verdict, whether the library kept results or not. */
typedef struct verdict {
    const char *address;
    int status, stage, code, rcpt_code;
    const char *enhanced, *text, *rcpt_text;
} verdict;

static verdict verdict_of(lmtp_t *h, int st, const char *const *rcpts, size_t i) {
    verdict v;
    if (lmtp_result_count(h) == 0) {
        /* Refused before anything was sent: the library keeps no results. */
        v.address = rcpts[i];
        v.status = LMTP_RESULT_UNKNOWN;
        v.stage = LMTP_STAGE_NONE;
        v.code = v.rcpt_code = 0;
        v.enhanced = v.rcpt_text = "";
        v.text = st == LMTP_OK ? "" : lmtp_errmsg(h);
        return v;
    }
    v.address = lmtp_result_address(h, i);
    v.status = lmtp_result_status(h, i);
    v.stage = lmtp_result_stage(h, i);
    v.code = lmtp_result_code(h, i);
    v.enhanced = lmtp_result_enhanced(h, i);
    v.text = lmtp_result_text(h, i);
    v.rcpt_code = lmtp_result_rcpt_code(h, i);
    v.rcpt_text = lmtp_result_rcpt_text(h, i);
    if (v.status == LMTP_RESULT_UNKNOWN && !*v.text && st != LMTP_OK) v.text = lmtp_errmsg(h);
    return v;
}

outcome outcome_of(lmtp_t *h, int st, size_t nrcpts) {
    outcome o = {0, 0, 0, 0};
    size_t n = lmtp_result_count(h);
    if (n == 0) {
        o.unknown = (int)nrcpts;
        return o;
    }
    for (size_t i = 0; i < n; i++) {
        switch (lmtp_result_status(h, i)) {
            case LMTP_RESULT_OK: o.delivered++; break;
            case LMTP_RESULT_TEMPFAIL: o.tempfailed++; break;
            case LMTP_RESULT_PERMFAIL: o.permfailed++; break;
            default: o.unknown++; break;
        }
    }
    (void)st;
    return o;
}

/* Reply text on one line: the lines of a multi-line reply joined by " ". */
static void print_one_line(FILE *out, const char *s) {
    for (; *s; s++) fputc(*s == '\n' || *s == '\r' ? ' ' : *s, out);
}

void print_results(FILE *out, lmtp_t *h, int st, const char *const *rcpts, size_t nrcpts, const char *prefix,
                   int failures_only) {
    for (size_t i = 0; i < nrcpts; i++) {
        verdict v = verdict_of(h, st, rcpts, i);
        if (failures_only && v.status == LMTP_RESULT_OK) continue;
        if (prefix) fprintf(out, "%s: ", prefix);
        fprintf(out, "%s %s ", v.address, status_name(v.status));
        if (v.code)
            fprintf(out, "%d ", v.code);
        else
            fputs("- ", out);
        fprintf(out, "%s ", *v.enhanced ? v.enhanced : "-");
        print_one_line(out, v.text);
        fputc('\n', out);
    }
}

/* Length of the valid UTF-8 sequence at s, or 0 if it is not one. */
static size_t utf8_len(const unsigned char *s) {
    size_t n;
    unsigned min;
    unsigned cp;
    if (s[0] < 0x80) return 1;
    if ((s[0] & 0xE0) == 0xC0) n = 2, min = 0x80, cp = s[0] & 0x1Fu;
    else if ((s[0] & 0xF0) == 0xE0) n = 3, min = 0x800, cp = s[0] & 0x0Fu;
    else if ((s[0] & 0xF8) == 0xF0) n = 4, min = 0x10000, cp = s[0] & 0x07u;
    else return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3Fu);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return n;
}

void print_json_string(FILE *out, const char *str) {
    const unsigned char *s = (const unsigned char *)str;
    fputc('"', out);
    while (*s) {
        size_t n = utf8_len(s);
        if (n == 0) {
            fputs("\\ufffd", out);
            s++;
        } else if (*s == '"' || *s == '\\') {
            fprintf(out, "\\%c", *s++);
        } else if (*s < 0x20) {
            fprintf(out, "\\u%04x", *s++);
        } else {
            fwrite(s, 1, n, out);
            s += n;
        }
    }
    fputc('"', out);
}

void print_json_message(FILE *out, lmtp_t *h, int st, const char *const *rcpts, size_t nrcpts, const char *source,
                        unsigned long index, unsigned long long bytes, int exit_code) {
    fputc('{', out);
    if (source) {
        fputs("\"message\":", out);
        print_json_string(out, source);
        fputc(',', out);
    }
    if (index) fprintf(out, "\"index\":%lu,", index);
    fprintf(out, "\"bytes\":%llu,\"exit\":%d,\"error\":", bytes, exit_code);
    if (st == LMTP_OK) {
        fputs("null", out);
    } else {
        print_json_string(out, lmtp_errmsg(h));
    }
    fputs(",\"recipients\":[", out);
    for (size_t i = 0; i < nrcpts; i++) {
        verdict v = verdict_of(h, st, rcpts, i);
        fputs(i ? ",{\"address\":" : "{\"address\":", out);
        print_json_string(out, v.address);
        fprintf(out, ",\"status\":\"%s\",\"stage\":\"%s\",\"code\":%d,\"enhanced\":", status_name(v.status),
                stage_name(v.stage), v.code);
        print_json_string(out, v.enhanced);
        fputs(",\"text\":", out);
        print_json_string(out, v.text);
        fprintf(out, ",\"rcpt_code\":%d,\"rcpt_text\":", v.rcpt_code);
        print_json_string(out, v.rcpt_text);
        fputc('}', out);
    }
    fputs("]}\n", out);
}

/* ---- progress ------------------------------------------------------------------ */

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

const char *human_bytes(char *buf, size_t cap, double n) {
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    size_t u = 0;
    while (n >= 1024 && u + 1 < sizeof units / sizeof *units) {
        n /= 1024;
        u++;
    }
    snprintf(buf, cap, u ? "%.1f %s" : "%.0f %s", n, units[u]);
    return buf;
}

void progress_start(progress *p, int tty, double interval, unsigned long total_messages,
                    unsigned long long total_bytes) {
    memset(p, 0, sizeof *p);
    p->tty = tty;
    p->interval = interval;
    p->total_messages = total_messages;
    p->total_bytes = total_bytes;
    p->start = p->last = now_seconds();
}

static void progress_draw(progress *p, double t) {
    char done[32], total[32], rate[32], eta[32] = "";
    double elapsed = t - p->start;
    double bps = elapsed > 0 ? (double)p->bytes / elapsed : 0;
    human_bytes(done, sizeof done, (double)p->bytes);
    human_bytes(total, sizeof total, (double)p->total_bytes);
    human_bytes(rate, sizeof rate, bps);
    if (bps > 0 && p->total_bytes > p->bytes) {
        unsigned long left = (unsigned long)((double)(p->total_bytes - p->bytes) / bps + 0.5);
        snprintf(eta, sizeof eta, ", ETA %lu:%02lu", left / 60, left % 60);
    }
    fprintf(stderr, "%s%lu", p->tty ? "\r\033[K" : "lmtp-send: ", p->messages);
    if (p->total_messages) fprintf(stderr, "/%lu", p->total_messages);
    fprintf(stderr, " messages, %s", done);
    if (p->total_bytes) fprintf(stderr, " of %s", total);
    fprintf(stderr, ", %s/s, %.1f msg/s%s", rate, elapsed > 0 ? (double)p->messages / elapsed : 0.0, eta);
    if (p->tty) {
        p->shown = 1;
    } else {
        fputc('\n', stderr);
    }
    fflush(stderr);
    p->last = t;
}

static void progress_tick(progress *p) {
    if (p->interval <= 0) return;
    double t = now_seconds();
    if (t - p->last >= (p->tty ? 0.1 : p->interval)) progress_draw(p, t);
}

void progress_bytes(void *user, size_t n) {
    progress *p = user;
    p->bytes += n;
    progress_tick(p);
}

void progress_message_done(progress *p) {
    p->messages++;
    progress_tick(p);
}

void progress_clear(progress *p) {
    if (!p || !p->shown) return;
    fputs("\r\033[K", stderr);
    fflush(stderr);
    p->shown = 0;
}
