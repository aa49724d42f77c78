/* lmtp-send: what it prints. Per-recipient lines, JSON, and the progress of a bulk run. */
#define _POSIX_C_SOURCE 200809L
#include "lmtp-send.h"

#include <stdlib.h>
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

static char *copy(const char *s) { return xalloc(strdup(s ? s : "")); }

void report_unsent(report *out, int st, const char *why, const char *const *rcpts, size_t nrcpts) {
    memset(out, 0, sizeof *out);
    out->status = st;
    out->error = st == LMTP_OK ? NULL : copy(why);
    out->nrcpts = nrcpts;
    out->v = xalloc(calloc(nrcpts ? nrcpts : 1, sizeof *out->v));
    for (size_t i = 0; i < nrcpts; i++) {
        verdict *v = &out->v[i];
        v->address = copy(rcpts[i]);
        v->status = LMTP_RESULT_UNKNOWN;
        v->stage = LMTP_STAGE_NONE;
        v->enhanced = copy("");
        v->text = copy(st == LMTP_OK ? "" : why);
        v->rcpt_text = copy("");
    }
}

void report_capture(report *out, lmtp_t *h, int st, const char *const *rcpts, size_t nrcpts) {
    memset(out, 0, sizeof *out);
    out->status = st;
    out->error = st == LMTP_OK ? NULL : copy(lmtp_errmsg(h));
    out->nrcpts = nrcpts;
    out->v = xalloc(calloc(nrcpts ? nrcpts : 1, sizeof *out->v));
    if (lmtp_result_count(h) == 0) {  // refused before anything was sent: no results kept
        free(out->v);
        free(out->error);
        report_unsent(out, st, lmtp_errmsg(h), rcpts, nrcpts);
        return;
    }
    for (size_t i = 0; i < nrcpts; i++) {
        verdict *v = &out->v[i];
        const char *text = lmtp_result_text(h, i);
        v->address = copy(lmtp_result_address(h, i));
        v->status = lmtp_result_status(h, i);
        v->stage = lmtp_result_stage(h, i);
        v->code = lmtp_result_code(h, i);
        v->enhanced = copy(lmtp_result_enhanced(h, i));
        v->rcpt_code = lmtp_result_rcpt_code(h, i);
        v->rcpt_text = copy(lmtp_result_rcpt_text(h, i));
        v->attempts = lmtp_result_attempts(h, i);
        if (v->status == LMTP_RESULT_UNKNOWN && !*text)
            text = out->error ? out->error : "the connection broke after the message was sent: it may have been delivered";
        v->text = copy(text);
    }
}

void report_free(report *r) {
    for (size_t i = 0; r->v && i < r->nrcpts; i++) {
        free(r->v[i].address);
        free(r->v[i].enhanced);
        free(r->v[i].text);
        free(r->v[i].rcpt_text);
    }
    free(r->v);
    free(r->error);
    memset(r, 0, sizeof *r);
}

outcome outcome_of(const report *r) {
    outcome o = {0, 0, 0, 0};
    for (size_t i = 0; i < r->nrcpts; i++) {
        switch (r->v[i].status) {
            case LMTP_RESULT_OK: o.delivered++; break;
            case LMTP_RESULT_TEMPFAIL: o.tempfailed++; break;
            case LMTP_RESULT_PERMFAIL: o.permfailed++; break;
            default: o.unknown++; break;
        }
    }
    return o;
}

/* Reply text on one line: the lines of a multi-line reply joined by " ". */
static void print_one_line(FILE *out, const char *s) {
    for (; *s; s++) fputc(*s == '\n' || *s == '\r' ? ' ' : *s, out);
}

void print_results(FILE *out, const report *r, const char *prefix, int failures_only) {
    for (size_t i = 0; i < r->nrcpts; i++) {
        const verdict *v = &r->v[i];
        if (failures_only && v->status == LMTP_RESULT_OK) continue;
        if (prefix) fprintf(out, "%s: ", prefix);
        fprintf(out, "%s %s ", v->address, status_name(v->status));
        if (v->code)
            fprintf(out, "%d ", v->code);
        else
            fputs("- ", out);
        fprintf(out, "%s ", *v->enhanced ? v->enhanced : "-");
        print_one_line(out, v->text);
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

void print_json_message(FILE *out, const report *r, const char *source, unsigned long index, unsigned long long bytes,
                        int exit_code, int attempts) {
    fputc('{', out);
    if (source) {
        fputs("\"message\":", out);
        print_json_string(out, source);
        fputc(',', out);
    }
    if (index) fprintf(out, "\"index\":%lu,", index);
    fprintf(out, "\"bytes\":%llu,\"exit\":%d,\"error\":", bytes, exit_code);
    if (r->error)
        print_json_string(out, r->error);
    else
        fputs("null", out);
    fputs(",\"recipients\":[", out);
    for (size_t i = 0; i < r->nrcpts; i++) {
        const verdict *v = &r->v[i];
        fputs(i ? ",{\"address\":" : "{\"address\":", out);
        print_json_string(out, v->address);
        fprintf(out, ",\"status\":\"%s\",\"stage\":\"%s\",\"code\":%d,\"enhanced\":", status_name(v->status),
                stage_name(v->stage), v->code);
        print_json_string(out, v->enhanced);
        fputs(",\"text\":", out);
        print_json_string(out, v->text);
        fprintf(out, ",\"rcpt_code\":%d,\"rcpt_text\":", v->rcpt_code);
        print_json_string(out, v->rcpt_text);
        if (attempts) fprintf(out, ",\"attempts\":%d", v->attempts);
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
