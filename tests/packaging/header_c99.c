/*
 * Compiled, never run, by check_header.sh: as C99 and as C++, with warnings
 * as errors. lmtp.h must stand alone (it comes first), survive a second
 * inclusion, give complete *_INIT initialisers (-Wmissing-field-initializers
 * is part of -Wextra) and declare the functions with the types below.
 */
#include <lmtp.h>
#include <lmtp.h>

#ifdef __cplusplus
/* Redeclaring with C linkage is an error unless lmtp.h declared them so. */
extern "C" const char *lmtp_version(void);
extern "C" void lmtp_free(lmtp_t *h);
#endif

/* Version macros are integer constant expressions usable by the preprocessor. */
#if !defined(LMTP_VERSION_MAJOR) || !defined(LMTP_VERSION_MINOR) || !defined(LMTP_VERSION_PATCH)
#error "lmtp.h lacks a version macro"
#endif
#if LMTP_VERSION_NUM != ((LMTP_VERSION_MAJOR << 16) | (LMTP_VERSION_MINOR << 8) | LMTP_VERSION_PATCH)
#error "LMTP_VERSION_NUM disagrees with LMTP_VERSION_MAJOR/MINOR/PATCH"
#endif

/* Status codes never move (rule 8): a few fixed points. */
typedef char lmtp_check_ok[LMTP_OK == 0 ? 1 : -1];
typedef char lmtp_check_rejected[LMTP_ERR_REJECTED == 12 ? 1 : -1];
typedef char lmtp_check_internal[LMTP_ERR_INTERNAL == 18 ? 1 : -1];
typedef char lmtp_check_insecure[LMTP_ERR_INSECURE == 22 ? 1 : -1];

/* Since 1.1: the default deadline, usable by the preprocessor, in seconds and milliseconds. */
#if !defined(LMTP_DEFAULT_TIMEOUT_S) || LMTP_DEFAULT_TIMEOUT_MS != LMTP_DEFAULT_TIMEOUT_S * 1000
#error "lmtp.h lacks LMTP_DEFAULT_TIMEOUT_S/_MS, or they disagree"
#endif

static void trace(void *user, int direction, const char *line, size_t len)
{
    (void)user;
    (void)direction;
    (void)line;
    (void)len;
}

static long read_none(void *user, void *buf, size_t cap)
{
    (void)user;
    (void)buf;
    (void)cap;
    return 0;
}

int lmtp_header_check(void);
int lmtp_header_check(void)
{
    lmtp_options opts = LMTP_OPTIONS_INIT;
    lmtp_mail_options mopts = LMTP_MAIL_OPTIONS_INIT;
    lmtp_rcpt_options ropts = LMTP_RCPT_OPTIONS_INIT;
    lmtp_status status = LMTP_OK;
    lmtp_trace_fn trace_fn = trace;
    lmtp_read_fn read_fn = read_none;

    /* The declarations have the types a caller relies on. */
    const char *(*version)(void) = lmtp_version;
    unsigned (*version_num)(void) = lmtp_version_num;
    const char *(*strerror_fn)(int) = lmtp_strerror;
    /* Since 1.1 (symbol version LMTP_1.1). */
    const char *(*status_name)(int) = lmtp_status_name;
    int (*status_reply_code)(int) = lmtp_status_reply_code;
    int (*mail_options_parse)(lmtp_t *, lmtp_mail_options *, const char *) = lmtp_mail_options_parse;
    int (*rcpt_options_parse)(lmtp_t *, lmtp_rcpt_options *, const char *) = lmtp_rcpt_options_parse;
    int (*mail_options_check)(lmtp_t *, const lmtp_mail_options *, const char **) = lmtp_mail_options_check;
    int (*rcpt_options_check)(lmtp_t *, const lmtp_rcpt_options *, const char **) = lmtp_rcpt_options_check;
    int (*reply_class)(lmtp_t *) = lmtp_reply_class;
    unsigned long long (*canonical_length)(const void *, size_t) = lmtp_canonical_length;
    int (*canonical_length_stream)(lmtp_read_fn, void *, unsigned long long *) = lmtp_canonical_length_stream;
    int (*connect_start)(lmtp_t *, const char *, unsigned) = lmtp_connect_start;
    int (*adopt_fd)(lmtp_t *, int, const char *) = lmtp_adopt_fd;
    int (*fd_fn)(const lmtp_t *) = lmtp_fd;
    int (*want)(const lmtp_t *) = lmtp_want;
    int (*timeout_ms)(const lmtp_t *) = lmtp_timeout_ms;
    int (*process)(lmtp_t *, int) = lmtp_process;
    int (*submit)(lmtp_t *, const struct lmtp_message *, lmtp_done_fn, void *) = lmtp_submit;
    size_t (*pending)(const lmtp_t *) = lmtp_pending;
    int (*open_bytes)(lmtp_t *, const char *, int) = lmtp_open_bytes;
    int (*feed)(lmtp_t *, const void *, size_t) = lmtp_feed;
    size_t (*output)(lmtp_t *, const void **) = lmtp_output;
    int (*output_done)(lmtp_t *, size_t) = lmtp_output_done;
    /* Since 1.2 (symbol version LMTP_1.2). */
    lmtp_pool_options popts = LMTP_POOL_OPTIONS_INIT;
    lmtp_pool_done_fn pool_done = 0;
    void (*pool_options_init)(lmtp_pool_options *) = lmtp_pool_options_init;
    int (*pool_new)(lmtp_pool **, const lmtp_options *, const lmtp_pool_options *) = lmtp_pool_new;
    int (*pool_add_server)(lmtp_pool *, const char *, unsigned) = lmtp_pool_add_server;
    void (*pool_free)(lmtp_pool *) = lmtp_pool_free;
    const char *(*pool_errmsg)(const lmtp_pool *) = lmtp_pool_errmsg;
    int (*pool_errcode)(const lmtp_pool *) = lmtp_pool_errcode;
    int (*pool_deliver)(lmtp_pool *, const struct lmtp_message *, size_t, lmtp_pool_done_fn, void *) =
        lmtp_pool_deliver;
    int (*pool_submit)(lmtp_pool *, const struct lmtp_message *, lmtp_pool_done_fn, void *, size_t *) =
        lmtp_pool_submit;
    size_t (*pool_pending)(const lmtp_pool *) = lmtp_pool_pending;
    size_t (*pool_fds)(const lmtp_pool *, int *, int *, size_t) = lmtp_pool_fds;
    int (*pool_timeout_ms)(const lmtp_pool *) = lmtp_pool_timeout_ms;
    int (*pool_process)(lmtp_pool *, const int *, const int *, size_t) = lmtp_pool_process;
    int (*result_attempts)(lmtp_t *, size_t) = lmtp_result_attempts;
    void (*options_init)(lmtp_options *) = lmtp_options_init;
    int (*create)(lmtp_t **, const lmtp_options *) = lmtp_create;
    int (*new_fn)(lmtp_t **, const char *, unsigned, const lmtp_options *) = lmtp_new;
    void (*free_fn)(lmtp_t *) = lmtp_free;
    int (*deliver)(lmtp_t *, const char *, const char *const *, size_t, const void *, size_t,
                   const lmtp_mail_options *, const lmtp_rcpt_options *) = lmtp_deliver;
    int (*deliver_stream)(lmtp_t *, const char *, const char *const *, size_t, lmtp_read_fn,
                          void *, const lmtp_mail_options *, const lmtp_rcpt_options *) =
        lmtp_deliver_stream;
    size_t (*result_count)(lmtp_t *) = lmtp_result_count;
    int (*result_code)(lmtp_t *, size_t) = lmtp_result_code;
    const char *(*result_address)(lmtp_t *, size_t) = lmtp_result_address;
    int (*is_connected)(const lmtp_t *) = lmtp_is_connected;
    unsigned long long (*size_limit)(lmtp_t *) = lmtp_size_limit;

    opts.trace = trace_fn;
    opts.flags = LMTP_OPT_ACCEPT_BARE_LF;
    mopts.body = LMTP_BODY_8BITMIME;
    mopts.ret = LMTP_RET_HDRS;
    mopts.flags = LMTP_FORCE;
    ropts.notify = LMTP_NOTIFY_SUCCESS | LMTP_NOTIFY_FAILURE;

    return (status == LMTP_OK) + (opts.struct_size == sizeof(lmtp_options)) +
           (mopts.struct_size == sizeof(lmtp_mail_options)) +
           (ropts.struct_size == sizeof(lmtp_rcpt_options)) + (read_fn != 0) + (version != 0) +
           (version_num != 0) + (strerror_fn != 0) + (status_name != 0) + (status_reply_code != 0) +
           (mail_options_parse != 0) + (rcpt_options_parse != 0) + (mail_options_check != 0) +
           (rcpt_options_check != 0) + (reply_class != 0) + (canonical_length != 0) +
           (canonical_length_stream != 0) + LMTP_REPLY_COMPLETION + (connect_start != 0) + (adopt_fd != 0) +
           (fd_fn != 0) + (want != 0) + (timeout_ms != 0) + (process != 0) + (submit != 0) + (pending != 0) +
           (open_bytes != 0) + (feed != 0) + (output != 0) + (output_done != 0) + LMTP_IO_READ + LMTP_IO_WRITE + (options_init != 0) + (create != 0) +
           (new_fn != 0) + (free_fn != 0) + (deliver != 0) + (deliver_stream != 0) +
           (result_count != 0) + (result_code != 0) + (result_address != 0) +
           (is_connected != 0) + (size_limit != 0) + LMTP_TRACE_INFO + LMTP_STAGE_DATA +
           LMTP_RESULT_UNKNOWN + (popts.struct_size == sizeof(lmtp_pool_options)) + (pool_done == 0) +
           (pool_options_init != 0) + (pool_new != 0) + (pool_add_server != 0) + (pool_free != 0) +
           (pool_errmsg != 0) + (pool_errcode != 0) + (pool_deliver != 0) + (pool_submit != 0) +
           (pool_pending != 0) + (pool_fds != 0) + (pool_timeout_ms != 0) + (pool_process != 0) +
           (result_attempts != 0) + LMTP_POOL_RESEND_UNKNOWN + LMTP_POOL_NO_IDLE_TIMEOUT;
}
