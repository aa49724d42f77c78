/*
 * lmtp.h - the stable C interface of liblmtp, an LMTP (RFC 2033) client.
 *
 * Rules of this interface
 *  1. Handles are opaque (lmtp_t). One handle is used by one thread at a
 *     time; different handles may be used by different threads at once. The
 *     library keeps no global mutable state and installs no signal handler.
 *  2. Every function that can fail returns an int status: LMTP_OK (0) or a
 *     positive lmtp_status code. The handle keeps the detail
 *     of the last call: lmtp_errmsg() (a sentence), and for server answers
 *     lmtp_code(), lmtp_enhanced(), lmtp_message().
 *  3. A server refusal (4xx/5xx) makes a call return LMTP_ERR_REJECTED; the
 *     reply is in lmtp_code()/lmtp_message(). Local and network failures have
 *     their own codes; lmtp_strerror() names each. The calls that end a
 *     message (lmtp_data, lmtp_data_end, lmtp_deliver*) are the exception:
 *     they return LMTP_OK once every recipient has the server's verdict,
 *     whatever it is; the per-recipient results say who got the message.
 *  4. Strings passed in are NUL-terminated and only read during the call;
 *     none may contain CR or LF (nothing a caller passes can add a line to
 *     the protocol: such a call fails with LMTP_ERR_BAD_INPUT and sends
 *     nothing). Messages are byte buffers with a length.
 *  5. Strings returned are owned by the handle; never free them. They stay
 *     valid until the next call that talks to the server (or lmtp_close,
 *     lmtp_free) and, for getters that build their string, until the next
 *     call of the same getter. Getters return "" rather than NULL (only
 *     lmtp_capability returns NULL, for "not offered").
 *  6. NULL where a handle is expected: status functions return
 *     LMTP_ERR_INVALID_ARGUMENT, getters return 0 or "" (lmtp_errcode
 *     returns LMTP_ERR_INVALID_ARGUMENT, lmtp_result_status
 *     LMTP_RESULT_UNKNOWN, lmtp_capability NULL). An empty string where a
 *     value is needed (a recipient, a domain, a command line) is
 *     LMTP_ERR_INVALID_ARGUMENT too.
 *  7. Option structs start with struct_size: initialise them with their
 *     *_INIT macro or *_init() function, so a program built against this
 *     header keeps working with later versions of the library. A zero field
 *     means "the default".
 *  8. Status codes are only ever appended; none is renumbered or removed.
 *  9. Every wait has a deadline (lmtp_options.timeout_ms); a call never
 *     blocks longer than that per reply or per write. SIGPIPE is never raised.
 * 10. After a timeout, an I/O error or a protocol error the connection is
 *     closed and the recipients still waiting for a verdict are marked
 *     LMTP_RESULT_UNKNOWN; the handle can connect again.
 */
#ifndef LMTP_H
#define LMTP_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LMTP_VERSION_MAJOR 1
#define LMTP_VERSION_MINOR 2
#define LMTP_VERSION_PATCH 0
#define LMTP_VERSION_NUM ((LMTP_VERSION_MAJOR * 65536u) + (LMTP_VERSION_MINOR * 256u) + LMTP_VERSION_PATCH)

#if defined(LMTP_BUILDING) && defined(__GNUC__)
#define LMTP_API __attribute__((visibility("default")))
#else
#define LMTP_API
#endif

typedef struct lmtp_handle lmtp_t;

/* Status codes. Append only: the numbers never change. Each has a short name
 * (lmtp_status_name) and a sentence (lmtp_strerror). The list is made from
 * liblmtp's one status table (core/include/lmtp/status_table.h in the source). */
/* -- status table: made from core/include/lmtp/status_table.h by capi/gen-status.py -- */
typedef enum lmtp_status {
    LMTP_OK = 0,                   /* success */
    LMTP_ERR_INVALID_ARGUMENT = 1, /* a value passed is unusable (NULL, empty, out of range) */
    LMTP_ERR_BAD_INPUT = 2,        /* CR, LF, NUL or bad syntax in an address or parameter */
    LMTP_ERR_LINE_TOO_LONG = 3,    /* the command line would exceed its limit */
    LMTP_ERR_NOT_ADVERTISED = 4,   /* the server did not offer the extension a parameter needs */
    LMTP_ERR_BAD_SEQUENCE = 5,     /* the call does not fit the state of the session */
    LMTP_ERR_RESOLVE = 6,          /* the host name could not be resolved */
    LMTP_ERR_CONNECT = 7,          /* no address of the host accepted the connection */
    LMTP_ERR_TIMEOUT = 8,          /* a deadline passed while waiting for the server */
    LMTP_ERR_IO = 9,               /* reading or writing the connection failed */
    LMTP_ERR_CLOSED = 10,          /* the server closed the connection */
    LMTP_ERR_PROTOCOL = 11,        /* the server sent something that is not a valid reply here */
    LMTP_ERR_REJECTED = 12,        /* the server answered 4xx or 5xx: see lmtp_code() */
    LMTP_ERR_NO_MEMORY = 13,       /* out of memory */
    LMTP_ERR_TOO_BIG = 14,         /* the message exceeds the server's SIZE limit */
    LMTP_ERR_NO_RECIPIENTS = 15,   /* no recipient was accepted: nothing to send */
    LMTP_ERR_ABORTED = 16,         /* the message source failed; the transaction was abandoned */
    LMTP_ERR_NOT_CONNECTED = 17,   /* there is no connection */
    LMTP_ERR_INTERNAL = 18,        /* a bug in liblmtp */
    LMTP_ERR_TLS = 19,             /* the TLS handshake or a TLS record failed */
    LMTP_ERR_CERTIFICATE = 20,     /* the server's certificate could not be verified */
    LMTP_ERR_AUTH = 21,            /* authentication failed: see lmtp_code() (535, 534, 538...) */
    LMTP_ERR_INSECURE = 22         /* refused to send a password over unencrypted TCP */
} lmtp_status;
/* -- end of the status table -- */

/* "1.2.0": the version of the library actually loaded. */
LMTP_API const char *lmtp_version(void);
/* LMTP_VERSION_NUM of the library actually loaded. */
LMTP_API unsigned lmtp_version_num(void);
/* A short sentence for a status code; never NULL. */
LMTP_API const char *lmtp_strerror(int status);
/* Since 1.1. The status's short name, as the enumerator without LMTP_ERR_, in lower case:
 * "ok", "timeout", "rejected"...; NULL for a number that is no status (so a program can list
 * every status: 0, 1, 2... up to the first NULL). */
LMTP_API const char *lmtp_status_name(int status);
/* Since 1.1. For a refusal liblmtp makes before sending anything, the code a server would
 * have answered with: 501 (LMTP_ERR_INVALID_ARGUMENT, _BAD_INPUT), 500 (_LINE_TOO_LONG), 555
 * (_NOT_ADVERTISED), 503 (_BAD_SEQUENCE), 552 (_TOO_BIG), 554 (_NO_RECIPIENTS), 535 (_AUTH),
 * 538 (_INSECURE); 0 for every other status, and for a number that is no status. */
LMTP_API int lmtp_status_reply_code(int status);

/* ---- options ---------------------------------------------------------- */

/* Directions seen by the trace callback. */
enum {
    LMTP_TRACE_SEND = 0,    /* a command line sent (no CRLF) */
    LMTP_TRACE_RECEIVE = 1, /* a reply line received (no CRLF) */
    LMTP_TRACE_DATA = 2,    /* message body as given, piece by piece between LFs (a CR
                               before the LF kept, empty pieces at the end of a write
                               left out, as Net::Cmd shows them), and the final "." */
    LMTP_TRACE_INFO = 3     /* a note from the library */
};
/* `line` is not NUL-terminated; use `len` (it is never NULL, even when `len` is 0). Called on the
   thread making the call. */
typedef void (*lmtp_trace_fn)(void *user, int direction, const char *line, size_t len);

/* Option flags. */
enum {
    LMTP_OPT_ACCEPT_BARE_LF = 1u,          /* accept reply lines ended by a bare LF */
    LMTP_OPT_NO_HELLO = 2u,                /* connect reads the banner only; call lmtp_hello yourself
                                              (and STARTTLS/AUTH: the options below are then ignored) */
    LMTP_OPT_IMPLICIT_TLS = 4u,            /* TLS from the first byte (no STARTTLS) */
    LMTP_OPT_TLS_INSECURE_SKIP_VERIFY = 8u, /* no certificate or name check at all: for tests, or a
                                              channel already trusted. Never the default. */
    LMTP_OPT_AUTH_ALLOW_PLAINTEXT = 16u,   /* allow PLAIN/LOGIN over unencrypted TCP */
    LMTP_OPT_STRICT_REPLIES = 32u          /* never read the reply after a message as one line per
                                              recipient (see "Servers that answer on one line per
                                              recipient" below): every reply is read as RFC 2033 says */
};

/* When lmtp_connect upgrades to TLS with STARTTLS (RFC 3207). */
enum {
    LMTP_STARTTLS_OFF = 0,           /* never on its own (lmtp_starttls still works) */
    LMTP_STARTTLS_OPPORTUNISTIC = 1, /* when the server offers it */
    LMTP_STARTTLS_REQUIRED = 2       /* always: the connection fails if the server does not offer it */
};

/* The deadline for each reply and each write when none is set: 120 seconds. */
#define LMTP_DEFAULT_TIMEOUT_S 120
#define LMTP_DEFAULT_TIMEOUT_MS (LMTP_DEFAULT_TIMEOUT_S * 1000u)

typedef struct lmtp_options {
    size_t struct_size;          /* sizeof(lmtp_options) */
    unsigned timeout_ms;         /* per reply and per write; 0: LMTP_DEFAULT_TIMEOUT_MS */
    unsigned connect_timeout_ms; /* per address tried; 0: timeout_ms */
    const char *hello;           /* LHLO argument; NULL: this host's name */
    const char *local_address;   /* bind to this IP before connecting; NULL: any */
    unsigned local_port;         /* bind to this port; 0: any */
    size_t max_reply_line;       /* octets, CRLF included; 0: 8192 */
    size_t max_reply_size;       /* octets of a whole reply; 0: 262144 */
    size_t max_command_line;     /* octets, CRLF included, before RFC extension allowances; 0: 512 */
    lmtp_trace_fn trace;         /* NULL: no trace */
    void *trace_user;
    unsigned flags;              /* LMTP_OPT_* */
    /* TLS. The certificate chain and the server's name are verified: the name is
     * the host given to lmtp_connect, or tls_server_name (needed over a unix
     * socket, whose path is never used as a name). */
    int starttls;                /* LMTP_STARTTLS_*; 0: off */
    const char *tls_ca_file;     /* trusted CAs (PEM); NULL with tls_ca_dir NULL: the system's */
    const char *tls_ca_dir;      /* directory of hashed CA certificates */
    const char *tls_cert_file;   /* client certificate (PEM), for EXTERNAL or servers that ask */
    const char *tls_key_file;    /* its key (PEM); NULL: in tls_cert_file */
    const char *tls_server_name; /* name sent (SNI) and verified; NULL: the host */
    int tls_min_version;         /* 0 or 0x0303: TLS 1.2; 0x0304: TLS 1.3 */
    /* AUTH, done by lmtp_connect after LHLO (and STARTTLS) when auth_user is set. */
    const char *auth_user;
    const char *auth_password;
    const char *auth_mechanism;  /* NULL: the strongest offered that can be used */
    size_t bdat_chunk_size;      /* message bytes read per BDAT chunk; 0: 262144 */
    size_t max_in_flight;        /* lmtp_deliver_batch: octets sent ahead of their replies; 0: 1 MiB */
} lmtp_options;
#define LMTP_OPTIONS_INIT \
    { sizeof(lmtp_options), 0, 0, NULL, NULL, 0, 0, 0, 0, NULL, NULL, 0, 0, NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL, NULL, 0, 0 }
LMTP_API void lmtp_options_init(lmtp_options *opts);

/* ---- handles and connections ---------------------------------------------- */

/* A handle, not connected. `opts` may be NULL. If the options are unusable
 * (struct_size not set, a value out of range) the call returns
 * LMTP_ERR_INVALID_ARGUMENT but still sets *out to a handle whose
 * lmtp_errmsg() says which option; free it with lmtp_free(). */
LMTP_API int lmtp_create(lmtp_t **out, const lmtp_options *opts);
/* Connects, reads the banner, sends LHLO. `host` is a name, an IPv4 or IPv6
 * literal ("::1" or "[::1]"), or a unix socket path starting with "/" (then
 * `port` is ignored). A refused banner or LHLO gives LMTP_ERR_REJECTED. */
LMTP_API int lmtp_connect(lmtp_t *h, const char *host, unsigned port);
/* lmtp_create + lmtp_connect. On failure *out is still set (unless out is
 * NULL or memory ran out) so that lmtp_errmsg() can tell why; free it with
 * lmtp_free(). A failed connect leaves the handle not connected: nothing is
 * half open. The Hello name is checked before connecting. */
LMTP_API int lmtp_new(lmtp_t **out, const char *host, unsigned port, const lmtp_options *opts);
/* Closes the connection without QUIT (safe in a forked child) and frees. */
LMTP_API void lmtp_free(lmtp_t *h);
/* Drops the connection without QUIT, abandoning any transaction. */
LMTP_API int lmtp_close(lmtp_t *h);
/* 1 when connected, else 0. */
LMTP_API int lmtp_is_connected(const lmtp_t *h);

/* 0 is LMTP_ERR_INVALID_ARGUMENT: every wait has a deadline. */
LMTP_API int lmtp_set_timeout(lmtp_t *h, unsigned timeout_ms);
LMTP_API unsigned lmtp_timeout(const lmtp_t *h);
LMTP_API int lmtp_set_trace(lmtp_t *h, lmtp_trace_fn trace, void *user);
/* lmtp_options.max_in_flight for the next lmtp_deliver_batch; 0: the default (1 MiB). */
LMTP_API int lmtp_set_max_in_flight(lmtp_t *h, size_t octets);

/* ---- what the server said about itself -------------------------------------- */

/* The banner's text (all lines, joined by "\n"). */
LMTP_API const char *lmtp_banner(lmtp_t *h);
/* The first word of the banner: the name the server gave itself. */
LMTP_API const char *lmtp_domain(lmtp_t *h);
/* 1 if the LHLO reply offered `keyword` (case-insensitive), else 0. */
LMTP_API int lmtp_supports(lmtp_t *h, const char *keyword);
/* The parameters after a keyword in the LHLO reply ("" if none), or NULL
 * when the keyword was not offered. */
LMTP_API const char *lmtp_capability(lmtp_t *h, const char *keyword);
/* The SIZE limit in octets; 0 if none was announced. */
LMTP_API unsigned long long lmtp_size_limit(lmtp_t *h);

/* ---- the last reply -------------------------------------------------------- */

/* Its code (e.g. 250), or 0 when the last call got no reply (a local error,
 * a connection that failed, lmtp_command, lmtp_data_write). After
 * lmtp_deliver it is the last reply read; the results say more. */
LMTP_API int lmtp_code(lmtp_t *h);
/* Its enhanced status code ("2.1.5"), or "" when it had none. */
LMTP_API const char *lmtp_enhanced(lmtp_t *h);
/* The same as numbers, stored where the pointers are not NULL (0 when
 * absent); returns 1 if the reply had one, else 0. */
LMTP_API int lmtp_enhanced_parts(lmtp_t *h, int *klass, int *subject, int *detail);
/* Its text as sent after the code, lines joined by "\n" (enhanced codes kept). */
LMTP_API const char *lmtp_message(lmtp_t *h);
/* Its text without enhanced codes, lines joined by "\n". */
LMTP_API const char *lmtp_text(lmtp_t *h);
/* Its lines one by one (as in lmtp_message). */
LMTP_API size_t lmtp_message_count(lmtp_t *h);
LMTP_API const char *lmtp_message_line(lmtp_t *h, size_t i);

/* ---- the last error ---------------------------------------------------------- */

/* The status of the last call (LMTP_OK if it succeeded). */
LMTP_API int lmtp_errcode(lmtp_t *h);
/* A sentence about the last failure ("" after a success). */
LMTP_API const char *lmtp_errmsg(lmtp_t *h);
/* The errno behind the last failure when the system reported one (a refused
 * connection: ECONNREFUSED; a missing unix socket: ENOENT; a deadline:
 * ETIMEDOUT), else 0. */
LMTP_API int lmtp_os_error(lmtp_t *h);

/* ---- commands, one reply each (the Net::LMTP methods) -------------------------- */

/* Parameters of MAIL FROM. A parameter the server did not offer makes the
 * call fail with LMTP_ERR_NOT_ADVERTISED unless LMTP_FORCE is set. */
enum { LMTP_BODY_NONE = 0, LMTP_BODY_7BIT = 1, LMTP_BODY_8BITMIME = 2, LMTP_BODY_BINARYMIME = 3 };
enum { LMTP_RET_NONE = 0, LMTP_RET_FULL = 1, LMTP_RET_HDRS = 2 };
enum {
    LMTP_FORCE = 1u,         /* send parameters even if the server did not offer them */
    LMTP_BODY_CANONICAL = 2u /* lmtp_deliver*: the message already has CRLF line ends: send it as it is
                                (BDAT only; needed for BODY=BINARYMIME) */
};
/* How lmtp_deliver* sends the message: DATA, or BDAT chunks (RFC 3030). */
enum { LMTP_TRANSFER_AUTO = 0, LMTP_TRANSFER_DATA = 1, LMTP_TRANSFER_BDAT = 2 };

typedef struct lmtp_mail_options {
    size_t struct_size;
    unsigned long long size; /* SIZE= (RFC 1870); 0: not sent by lmtp_mail. Since 1.1, 0 lets
                                lmtp_deliver, lmtp_deliver_batch and lmtp_submit declare the
                                length of a message given in memory (data/len, CRLF line ends
                                counted) when the server offers SIZE and the message is within its
                                limit (over it, the server's own refusal stays the verdict) */
    int body;                /* LMTP_BODY_*: BODY= (RFC 6152) */
    int smtputf8;            /* non-zero: SMTPUTF8 (RFC 6531) */
    int ret;                 /* LMTP_RET_*: RET= (RFC 3461) */
    const char *envid;       /* ENVID= (RFC 3461), raw: xtext-encoded by the library */
    const char *transid;     /* TRANSID= (RFC 1845 CHECKPOINT), an address */
    const char *extra;       /* more parameters, "KEY=VALUE KEY2", each checked */
    unsigned flags;          /* LMTP_FORCE, LMTP_BODY_CANONICAL */
    int transfer;            /* LMTP_TRANSFER_*: for lmtp_deliver*; AUTO: BDAT when CHUNKING is offered
                                (an empty message always goes by DATA) */
} lmtp_mail_options;
#define LMTP_MAIL_OPTIONS_INIT { sizeof(lmtp_mail_options), 0, 0, 0, 0, NULL, NULL, NULL, 0, 0 }
LMTP_API void lmtp_mail_options_init(lmtp_mail_options *opts);

enum { LMTP_NOTIFY_NEVER = 1u, LMTP_NOTIFY_SUCCESS = 2u, LMTP_NOTIFY_FAILURE = 4u, LMTP_NOTIFY_DELAY = 8u };

typedef struct lmtp_rcpt_options {
    size_t struct_size;
    unsigned notify;        /* LMTP_NOTIFY_* (RFC 3461); 0: not sent */
    const char *orcpt;      /* ORCPT= original recipient, raw: xtext-encoded by the library */
    const char *orcpt_type; /* its address type; NULL: "rfc822" */
    const char *extra;      /* more parameters, "KEY=VALUE KEY2", each checked */
    unsigned flags;         /* LMTP_FORCE */
} lmtp_rcpt_options;
#define LMTP_RCPT_OPTIONS_INIT { sizeof(lmtp_rcpt_options), 0, NULL, NULL, NULL, 0 }
LMTP_API void lmtp_rcpt_options_init(lmtp_rcpt_options *opts);

/* LHLO again (normally done by lmtp_connect). */
LMTP_API int lmtp_hello(lmtp_t *h, const char *domain);
/* MAIL FROM:<from>; `opts` may be NULL. "" is the null sender <>. */
LMTP_API int lmtp_mail(lmtp_t *h, const char *from, const lmtp_mail_options *opts);
/* SEND FROM, SOML FROM and SAML FROM (old RFC 821 commands). */
LMTP_API int lmtp_send(lmtp_t *h, const char *from);
LMTP_API int lmtp_send_or_mail(lmtp_t *h, const char *from);
LMTP_API int lmtp_send_and_mail(lmtp_t *h, const char *from);
/* RCPT TO:<to>; `opts` may be NULL. The reply is also kept as a recipient
 * result (see lmtp_result_*). lmtp_to is the same call. */
LMTP_API int lmtp_recipient(lmtp_t *h, const char *to, const lmtp_rcpt_options *opts);
LMTP_API int lmtp_to(lmtp_t *h, const char *to, const lmtp_rcpt_options *opts);
LMTP_API int lmtp_reset(lmtp_t *h);
LMTP_API int lmtp_noop(lmtp_t *h);
LMTP_API int lmtp_verify(lmtp_t *h, const char *address);
LMTP_API int lmtp_expand(lmtp_t *h, const char *list);
/* HELP [topic]; `topic` may be NULL. */
LMTP_API int lmtp_help(lmtp_t *h, const char *topic);
LMTP_API int lmtp_etrn(lmtp_t *h, const char *domain);
/* QUIT, its reply, and close. */
LMTP_API int lmtp_quit(lmtp_t *h);

/* ---- the message ---------------------------------------------------------------- */

/* Bodies are sent as given, with two changes: every line end (LF, CR or
 * CRLF) becomes CRLF, and a "." starting a line is doubled. The library adds
 * the final ".". */

/* DATA, the whole message, the end, and one reply per accepted recipient.
 * LMTP_OK once every accepted recipient has its final reply (look at the
 * results: some may have failed); the last reply is the first recipient's. */
LMTP_API int lmtp_data(lmtp_t *h, const void *msg, size_t len);
/* The same in steps, for messages of any size: DATA, then any number of
 * writes, then the end. lmtp_data_start returns LMTP_OK only when the server
 * answered 354 (it waits for the message); a refusal is LMTP_ERR_REJECTED. lmtp_data_end reads every per-recipient
 * reply before it returns; the first is the last reply, and lmtp_response()
 * then yields the others one by one (as Net::LMTP scripts read them).
 *
 * When the connection breaks after the message went out (lmtp_data,
 * lmtp_data_end and lmtp_bdat with `last` return the status that ended the
 * session: LMTP_ERR_CLOSED, _IO, _TIMEOUT, _PROTOCOL, _TLS), no verdict the
 * server gave is lost: the results hold each recipient's (LMTP_RESULT_UNKNOWN
 * for those without one), lmtp_code()/lmtp_message() are the first recipient's
 * final reply if it came (lmtp_code() 0 if not), and lmtp_response() still
 * yields each further recipient in turn: LMTP_OK or LMTP_ERR_REJECTED with its
 * reply when it came, else the status that ended the session, with
 * lmtp_code() 0 and lmtp_errmsg() naming the recipient. A recipient without a
 * verdict may or may not have the message: treat it as a temporary failure.
 *
 * Servers that answer on one line per recipient: Net::Server::Mail::LMTP
 * answers every recipient after the message at once, as ONE multi-line reply
 * with a line per recipient ("250-Ok", "550-<b@x> Failed", "250 Ok"). That
 * reply is read as each recipient's own verdict, in RCPT order, when two or
 * more recipients were accepted, it has exactly one line for each, and either
 * its lines carry different codes (no conforming reply does) or the server's
 * banner names Net::Server::Mail. Any other multi-line reply is the first
 * recipient's, as RFC 2033 says: a conforming server is never misread.
 * LMTP_OPT_STRICT_REPLIES turns the recognition off. */
LMTP_API int lmtp_data_start(lmtp_t *h);
LMTP_API int lmtp_data_write(lmtp_t *h, const void *buf, size_t len);
LMTP_API int lmtp_data_end(lmtp_t *h);

/* BDAT (CHUNKING, RFC 3030), step by step: `len` bytes sent exactly as given
 * after "BDAT len [LAST]". After the LAST chunk every accepted recipient's
 * reply is read, as after lmtp_data_end (results, lmtp_response). With no
 * recipient accepted: LMTP_ERR_NO_RECIPIENTS. lmtp_deliver* use BDAT by
 * themselves when the server offers CHUNKING (see lmtp_mail_options.transfer). */
LMTP_API int lmtp_bdat(lmtp_t *h, const void *buf, size_t len, int last);

/* ---- TLS and authentication ------------------------------------------------------- */

/* STARTTLS, the TLS handshake, and LHLO again (what the server offered before
 * TLS is forgotten). LMTP_ERR_REJECTED when the server refuses STARTTLS (the
 * session stays as it was); LMTP_ERR_CERTIFICATE when its certificate is
 * refused, with the reason in lmtp_errmsg() (expired, hostname mismatch,
 * unable to get local issuer certificate...); LMTP_ERR_TLS for other handshake
 * failures. After a failed handshake the connection is closed. */
LMTP_API int lmtp_starttls(lmtp_t *h);
/* 1 when the connection is encrypted. */
LMTP_API int lmtp_tls_active(lmtp_t *h);
/* Takes the TLS settings of `opts` (the tls_* fields and the flags
 * LMTP_OPT_TLS_INSECURE_SKIP_VERIFY and LMTP_OPT_IMPLICIT_TLS) for what comes
 * next: a later lmtp_starttls or lmtp_connect. A bad value (tls_min_version
 * other than 0, 0x0303 or 0x0304) gives LMTP_ERR_INVALID_ARGUMENT and changes
 * nothing. */
LMTP_API int lmtp_set_tls(lmtp_t *h, const lmtp_options *opts);
/* AUTH (RFC 4954) with `mechanism` ("SCRAM-SHA-256", "PLAIN", "LOGIN",
 * "EXTERNAL"), or NULL for the strongest the server offers that can be used.
 * PLAIN and LOGIN send the password itself: LMTP_ERR_INSECURE over unencrypted
 * TCP unless flags has LMTP_OPT_AUTH_ALLOW_PLAINTEXT. LMTP_ERR_AUTH when the
 * server refuses (lmtp_code: 535 bad credentials, 534 mechanism too weak, 538
 * encryption needed, 454 temporary) or the exchange goes wrong (a SCRAM server
 * that cannot prove it knows the password); LMTP_ERR_NOT_ADVERTISED when the
 * server offers no AUTH or no usable mechanism. The trace shows that AUTH
 * happened, never the credentials. */
LMTP_API int lmtp_auth(lmtp_t *h, const char *user, const char *password, const char *mechanism, unsigned flags);

/* ---- a caller's own command ------------------------------------------------------ */

/* Sends one command line (no CRLF; checked like every other line). Its reply
 * is read by lmtp_response(); a later call reads it if the caller does not. */
LMTP_API int lmtp_command(lmtp_t *h, const char *line);
/* Reads the next reply owed: to an lmtp_command() not yet answered, else the
 * next per-recipient reply left by lmtp_data_end() (those are owed until the
 * next command). LMTP_ERR_BAD_SEQUENCE when none is owed (LMTP_ERR_NOT_CONNECTED
 * when the connection is gone as well); otherwise LMTP_OK
 * or LMTP_ERR_REJECTED by its code, or for a recipient whose reply never came
 * because the connection broke, the status that ended the session (see
 * lmtp_data_end). */
LMTP_API int lmtp_response(lmtp_t *h);

/* ---- one call: a whole transaction --------------------------------------------------- */

/* MAIL, each RCPT, the message, and every recipient's final reply; pipelined
 * when the server offers PIPELINING (RSET first if a transaction was left
 * open). Returns LMTP_OK when every recipient has a verdict from the server
 * (delivered or refused: look at the results); an error when the session
 * broke (the recipients without a verdict are then LMTP_RESULT_UNKNOWN).
 * `mopts`, `ropts` may be NULL; `ropts` applies to every recipient. */
LMTP_API int lmtp_deliver(lmtp_t *h, const char *from, const char *const *rcpts, size_t nrcpts,
                          const void *msg, size_t len, const lmtp_mail_options *mopts,
                          const lmtp_rcpt_options *ropts);
/* The same with the message read through `read`: it fills up to `cap` bytes
 * and returns how many, 0 at the end, or a negative number to abandon the
 * transaction (the connection is then closed, nothing is delivered, and the
 * call returns LMTP_ERR_ABORTED). */
typedef long (*lmtp_read_fn)(void *user, void *buf, size_t cap);
LMTP_API int lmtp_deliver_stream(lmtp_t *h, const char *from, const char *const *rcpts,
                                 size_t nrcpts, lmtp_read_fn read, void *user,
                                 const lmtp_mail_options *mopts, const lmtp_rcpt_options *ropts);

/* ---- many messages over one connection --------------------------------------------------- */

/* One message of lmtp_deliver_batch. Initialise with LMTP_MESSAGE_INIT or lmtp_message_init.
   The plain name lmtp_message is taken by the function lmtp_message() (the last reply's text):
   the type is `struct lmtp_message`, or lmtp_message_t. */
typedef struct lmtp_message {
    size_t struct_size;              /* sizeof(struct lmtp_message) */
    const char *from;
    const char *const *rcpts;
    size_t nrcpts;
    const void *data;                /* the message (any line ends), len octets; or NULL and `read` */
    size_t len;
    lmtp_read_fn read;               /* a streamed message when data is NULL (see lmtp_deliver_stream) */
    void *read_user;
    const lmtp_mail_options *mail;   /* NULL: defaults */
    const lmtp_rcpt_options *rcpt;   /* NULL: defaults */
} lmtp_message_t;
#define LMTP_MESSAGE_INIT { sizeof(struct lmtp_message), NULL, NULL, 0, NULL, 0, NULL, NULL, NULL, NULL }
LMTP_API void lmtp_message_init(struct lmtp_message *msg);

/* Called once per message, in order, when each of its recipients has a verdict (or the message
   could not be sent): during the call the lmtp_result_* getters describe THAT message's
   transaction and lmtp_errcode/lmtp_errmsg its error if status != LMTP_OK. Return 0 to go on,
   non-zero to stop after the messages already sent (their callbacks still come). */
typedef int (*lmtp_batch_fn)(void *user, size_t index, int status);

/* Delivers msgs[0..n-1] over this connection, each as its own transaction with its own results.
 * With PIPELINING a message's MAIL follows the end of the one before in the same write (RFC 2920),
 * up to lmtp_options.max_in_flight octets ahead of their replies (always at least one message):
 * with CHUNKING many small messages share each round trip (every BDAT LAST is followed by RSET,
 * which also settles a server that answers a BDAT LAST with no recipient accepted, as Dovecot
 * does, and one that does not, as RFC 2033 says); by DATA each message costs one round trip (its
 * body waits for the 354, then goes in one write with the next message's MAIL, RCPT and DATA).
 * Without PIPELINING the messages go one after the other. A large message still streams in
 * chunks; `data` and `read` are read as the message is sent.
 *
 * `done` (which may be NULL) is called for each message as said above, with status:
 *   LMTP_OK       every recipient has the server's verdict (look at the results);
 *   a local error the message was refused before anything of it was sent (LMTP_ERR_BAD_INPUT,
 *                 LMTP_ERR_INVALID_ARGUMENT, LMTP_ERR_NOT_ADVERTISED, LMTP_ERR_TOO_BIG,
 *                 LMTP_ERR_LINE_TOO_LONG; LMTP_ERR_ABORTED when `read` failed before the first
 *                 chunk went out): it has no results, and the batch goes on;
 *   the error that ended the session (LMTP_ERR_CLOSED, _IO, _TIMEOUT, _PROTOCOL; _ABORTED when
 *                 `read` failed in the middle of a message, which closes the connection): the
 *                 recipients without a verdict are LMTP_RESULT_UNKNOWN, and every later message
 *                 gets the same status with all its recipients UNKNOWN.
 * In the callback only the getters may be used on the handle.
 * Returns LMTP_OK when every message had its callback; the error that ended the session
 * otherwise; LMTP_ERR_ABORTED when `done` asked to stop (the messages not yet sent then get no
 * callback). Afterwards the lmtp_result_* getters describe the last message the server answered. */
LMTP_API int lmtp_deliver_batch(lmtp_t *h, const struct lmtp_message *msgs, size_t n, lmtp_batch_fn done,
                                void *user);

/* ---- parameters as written on the wire; what a reply says; the size of a message ---------- */

/* Parameters written as on the wire after the address of MAIL FROM or RCPT TO: words separated
 * by spaces, each KEYWORD or KEYWORD=VALUE. Keywords, and the values of BODY, RET and NOTIFY,
 * may be in any case; ENVID and ORCPT's address are xtext (RFC 3461) and are stored decoded;
 * TRANSID loses its brackets; any other word goes to `extra`, in order; a keyword given twice
 * counts once, the last. A parameter the words do not give is set to its default (SIZE=0 too:
 * in the struct 0 means no SIZE); struct_size, flags and transfer are left as they are, and so
 * is any field past struct_size. A malformed word is LMTP_ERR_BAD_INPUT, lmtp_errmsg() naming
 * it and why (a size that is no number, a BODY, RET or NOTIFY keyword that does not exist,
 * NEVER with another NOTIFY keyword, malformed xtext, a known keyword without its value or
 * SMTPUTF8 with one, a word that is no esmtp-param, a CR, LF, NUL or other control character),
 * and the struct is then unchanged; a NULL struct or string, or a struct_size not set, is
 * LMTP_ERR_INVALID_ARGUMENT. Nothing is sent: the handle need not be connected. */

/* Since 1.1. Sets size, body, smtputf8, ret, envid, transid and extra of `opts` from MAIL FROM
 * parameters ("SIZE=1234 BODY=8BITMIME RET=HDRS ENVID=QQ+2B1"). The strings `opts` then points
 * to are kept in the handle until the next lmtp_mail_options_parse on it, or lmtp_free. */
LMTP_API int lmtp_mail_options_parse(lmtp_t *h, lmtp_mail_options *opts, const char *wire);
/* Since 1.1. Sets notify, orcpt, orcpt_type and extra of `opts` from RCPT TO parameters
 * ("NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+2Bb@example.org"). The strings are kept in the
 * handle until the next lmtp_rcpt_options_parse on it, or lmtp_free. */
LMTP_API int lmtp_rcpt_options_parse(lmtp_t *h, lmtp_rcpt_options *opts, const char *wire);

/* Whether the server, by its last LHLO reply, offered what the parameters of an options struct
 * need (a NULL struct has none; LMTP_FORCE changes nothing here). LMTP_OK; or
 * LMTP_ERR_NOT_ADVERTISED, lmtp_errmsg() saying which, and `*missing` (when `missing` is not
 * NULL) the first extension lacking: "SIZE", "8BITMIME", "BINARYMIME", "CHUNKING" (for
 * BODY=BINARYMIME, whose message can only go by BDAT), "SMTPUTF8", "DSN", "CHECKPOINT", or an
 * extra parameter's own keyword, upper-cased. `*missing` is NULL otherwise; the string lives
 * until the next call of the same function on the handle. Parameters that cannot be sent to any
 * server give the status lmtp_mail or lmtp_recipient would, first (LMTP_ERR_INVALID_ARGUMENT,
 * LMTP_ERR_BAD_INPUT: an unknown BODY value, a CR in ENVID, a malformed `extra`...). Nothing is
 * sent. */

/* Since 1.1. For MAIL FROM parameters. */
LMTP_API int lmtp_mail_options_check(lmtp_t *h, const lmtp_mail_options *opts, const char **missing);
/* Since 1.1. For RCPT TO parameters ("DSN" for NOTIFY and ORCPT). */
LMTP_API int lmtp_rcpt_options_check(lmtp_t *h, const lmtp_rcpt_options *opts, const char **missing);

/* What a reply says, by its code (RFC 5321 4.2.1). The numbers are the code's first digit. */
enum {
    LMTP_REPLY_NONE = 0,         /* no reply: lmtp_code() is 0 */
    LMTP_REPLY_COMPLETION = 2,   /* 2xx: done */
    LMTP_REPLY_INTERMEDIATE = 3, /* 3xx: the server waits for more (354 after DATA, 334 in AUTH) */
    LMTP_REPLY_TRANSIENT = 4,    /* 4xx: refused for now; trying again later may work */
    LMTP_REPLY_PERMANENT = 5     /* 5xx: refused */
};
/* Since 1.1. The class of the last reply (the one lmtp_code() gives): LMTP_REPLY_*. */
LMTP_API int lmtp_reply_class(lmtp_t *h);

/* Since 1.1. The size of a message on the wire: every line end (LF, CR or CRLF) made CRLF and
 * a final CRLF added when it ends without one, before dot-stuffing; what SIZE declares (RFC
 * 1870). `msg` may be NULL when `len` is 0. */
LMTP_API unsigned long long lmtp_canonical_length(const void *msg, size_t len);
/* Since 1.1. The same for a message read through `read`, as lmtp_deliver_stream reads it, to its
 * end: LMTP_OK with the size in `*size`; LMTP_ERR_ABORTED (and `*size` untouched) when `read`
 * returned a negative number; LMTP_ERR_INVALID_ARGUMENT for a NULL `read` or `size`. Needs no
 * handle: the status is the only word on a failure. */
LMTP_API int lmtp_canonical_length_stream(lmtp_read_fn read, void *user, unsigned long long *size);

/* ---- per-recipient results of the current (or last) transaction ------------------------- */

/* Where a recipient's verdict came from (NONE while pending or unknown). */
enum { LMTP_STAGE_NONE = 0, LMTP_STAGE_MAIL = 1, LMTP_STAGE_RCPT = 2, LMTP_STAGE_DATA = 3 };
/* The verdict. */
enum {
    LMTP_RESULT_PENDING = 0,   /* no verdict yet (accepted at RCPT, message not ended) */
    LMTP_RESULT_OK = 1,        /* delivered */
    LMTP_RESULT_TEMPFAIL = 2,  /* refused with 4xx: try again later */
    LMTP_RESULT_PERMFAIL = 3,  /* refused with 5xx */
    LMTP_RESULT_UNKNOWN = 4    /* the session ended before the server said */
};

/* One entry per RCPT of the transaction, in order (duplicates included).
 * A delivery refused before anything was sent (bad input, an extension not offered, too big)
 * leaves none: an earlier transaction's results never pass for this one's.
 * For an index out of range the getters return 0, "" or LMTP_RESULT_UNKNOWN. */
LMTP_API size_t lmtp_result_count(lmtp_t *h);
LMTP_API const char *lmtp_result_address(lmtp_t *h, size_t i);
LMTP_API int lmtp_result_status(lmtp_t *h, size_t i);
LMTP_API int lmtp_result_stage(lmtp_t *h, size_t i);
/* The verdict's reply: final reply after the message, or the refusal. */
LMTP_API int lmtp_result_code(lmtp_t *h, size_t i);
LMTP_API const char *lmtp_result_enhanced(lmtp_t *h, size_t i);
LMTP_API const char *lmtp_result_text(lmtp_t *h, size_t i);
/* The reply to the recipient's RCPT (0 / "" if none came). */
LMTP_API int lmtp_result_rcpt_code(lmtp_t *h, size_t i);
LMTP_API const char *lmtp_result_rcpt_text(lmtp_t *h, size_t i);

/* ---- non-blocking use: the caller's event loop drives the handle ------------------------------
 *
 * The calls above block until their answer is in. A program that runs many connections from one
 * thread, or inside an event loop, drives handles instead (Since 1.1.):
 *
 *     lmtp_connect_start(h, "127.0.0.1", 24);     (or lmtp_adopt_fd, or lmtp_open_bytes)
 *     lmtp_submit(h, &msg, done, user);           (any number, at any time)
 *     while (lmtp_pending(h) > 0) {
 *         struct pollfd p = {lmtp_fd(h), 0, 0};
 *         int w = lmtp_want(h), ev = 0;
 *         if (w & LMTP_IO_READ) p.events |= POLLIN;
 *         if (w & LMTP_IO_WRITE) p.events |= POLLOUT;
 *         if (poll(&p, 1, lmtp_timeout_ms(h)) > 0) {
 *             if (p.revents & (POLLIN | POLLHUP | POLLERR)) ev |= LMTP_IO_READ;
 *             if (p.revents & POLLOUT) ev |= LMTP_IO_WRITE;
 *         }
 *         lmtp_process(h, ev);                    (0 when the wait timed out)
 *     }
 *
 * Rules of the non-blocking calls
 *  N1. lmtp_process, lmtp_submit, lmtp_feed and lmtp_output_done never block. lmtp_connect_start
 *      may, for one thing only: a host NAME is looked up with getaddrinfo(), which blocks. An IP
 *      address or a unix socket path ("/...") needs no lookup; or connect the socket yourself
 *      and hand it over with lmtp_adopt_fd.
 *  N2. lmtp_fd may change while connecting (each address tried is a new socket; the new one is
 *      opened before the old one is closed, so the number differs): read it again after every
 *      call that can process. The handle owns the socket and closes it; -1 when there is none.
 *  N3. lmtp_want: what to wait for, LMTP_IO_READ and/or LMTP_IO_WRITE; 0 when the handle has no
 *      connection. A connection with nothing to do still wants LMTP_IO_READ: the server may
 *      close it, and lmtp_process then says so.
 *  N4. lmtp_timeout_ms: how long the wait may last, -1 for no limit, 0 when the deadline has
 *      passed. When the wait ends by time, call lmtp_process(h, 0): it reads what is already
 *      readable before it declares the deadline passed (LMTP_ERR_TIMEOUT).
 *  N5. The set-up (banner, LHLO, and STARTTLS and AUTH as lmtp_options ask) runs inside
 *      lmtp_process. Messages may be submitted at once, before the server's banner came: they
 *      wait for the set-up, then go pipelined back to back as lmtp_deliver_batch sends them
 *      (with PIPELINING; without it, one after the other).
 *  N6. Callbacks (lmtp_done_fn) run only at the end of lmtp_process, lmtp_feed,
 *      lmtp_output_done, lmtp_close and lmtp_free, never in the middle of the library's work.
 *      Inside one, the handle allows only its getters (lmtp_result_*, lmtp_code, lmtp_errmsg,
 *      lmtp_fd, lmtp_want, lmtp_pending...), lmtp_submit, lmtp_close and lmtp_free; close and
 *      free take effect when the callback returns. Any other call returns
 *      LMTP_ERR_BAD_SEQUENCE and does nothing.
 *  N7. Every message submitted gets exactly one callback, with LMTP_OK and its results, or with
 *      the error that kept it from being sent or ended the connection under it (recipients
 *      without a verdict are LMTP_RESULT_UNKNOWN), LMTP_ERR_CLOSED when lmtp_close or
 *      lmtp_free dropped it. After lmtp_process returned an error, lmtp_want is 0.
 *  N8. While a handle is driven this way the blocking calls (lmtp_hello ... lmtp_deliver_batch,
 *      lmtp_connect) return LMTP_ERR_BAD_SEQUENCE; lmtp_close ends the mode.
 */
#define LMTP_IO_READ 1
#define LMTP_IO_WRITE 2

/* Called once for each submitted message (rule N7). During the call the lmtp_result_* getters
 * describe that message's transaction and lmtp_errcode/lmtp_errmsg its error when status is
 * not LMTP_OK. Since 1.1. */
typedef void (*lmtp_done_fn)(void *user, lmtp_t *h, int status);

/* Starts connecting to host (a name, an IP address, or a unix socket path) without waiting for
 * the connection: wait for lmtp_want() on lmtp_fd(). Rule N1 says when it blocks. Since 1.1. */
LMTP_API int lmtp_connect_start(lmtp_t *h, const char *host, unsigned port);
/* A stream socket the caller connected, handed over (made non-blocking, closed by the handle from
 * now on, even when this call fails). tls_name: the name TLS verifies (NULL: none; STARTTLS then
 * needs lmtp_options.tls_server_name or verification turned off). Since 1.1. */
LMTP_API int lmtp_adopt_fd(lmtp_t *h, int fd, const char *tls_name);
/* The socket to wait on, or -1 (rule N2). Since 1.1. */
LMTP_API int lmtp_fd(const lmtp_t *h);
/* LMTP_IO_READ | LMTP_IO_WRITE, or 0 (rule N3). Since 1.1. */
LMTP_API int lmtp_want(const lmtp_t *h);
/* Milliseconds until the deadline, -1 none, 0 passed (rule N4). Since 1.1. */
LMTP_API int lmtp_timeout_ms(const lmtp_t *h);
/* Does what the events (LMTP_IO_READ | LMTP_IO_WRITE, or 0 after a timeout) allow, then runs the
 * callbacks due. Returns LMTP_OK, or the error that ended the connection (lmtp_errmsg). Since 1.1. */
LMTP_API int lmtp_process(lmtp_t *h, int events);
/* Queues a message (struct lmtp_message, as for lmtp_deliver_batch) behind those submitted
 * before. from, rcpts and the options are copied; the message's data (or its read callback and
 * read_user) must stay valid until its callback, and a read callback must not block. Returns
 * LMTP_OK when it is queued (done is then called once, later); an error, and no callback, for a
 * message unusable as given or a handle with no connection started. Since 1.1. */
LMTP_API int lmtp_submit(lmtp_t *h, const struct lmtp_message *msg, lmtp_done_fn done, void *user);
/* Messages submitted whose callback has not come yet. Since 1.1. */
LMTP_API size_t lmtp_pending(const lmtp_t *h);

/* The bytes-only mode, for a caller that owns the connection (an asyncio transport, a TLS or
 * proxy layer of its own): the handle reads and writes nothing. tls_name as for lmtp_adopt_fd;
 * local: the peer is on this machine (as a unix socket: AUTH PLAIN without TLS allowed). Then,
 * whenever bytes come, lmtp_feed them (len 0: the end of the stream); after every call, write
 * what lmtp_output gives and report it with lmtp_output_done; on lmtp_timeout_ms, call
 * lmtp_process(h, 0). lmtp_fd is -1. Since 1.1. */
LMTP_API int lmtp_open_bytes(lmtp_t *h, const char *tls_name, int local);
LMTP_API int lmtp_feed(lmtp_t *h, const void *buf, size_t len);
/* The bytes to send (*ptr, valid until the next call on the handle) and their count; 0 when
 * there are none. Since 1.1. */
LMTP_API size_t lmtp_output(lmtp_t *h, const void **ptr);
/* n of those bytes were sent. Since 1.1. */
LMTP_API int lmtp_output_done(lmtp_t *h, size_t n);

/* ---- a delivery pool: many messages over up to K connections --------------------------------
 *
 * A pool delivers messages over up to K connections to a list of servers, each message in a
 * transaction of its own, retrying temporary failures, and says once per message what became of
 * each recipient. It has a blocking face (lmtp_pool_deliver) and a non-blocking one driven by the
 * caller's loop, like a handle's (Since 1.2.):
 *
 *     lmtp_pool *p;
 *     lmtp_pool_new(&p, &opts, &popts);           (both may be NULL)
 *     lmtp_pool_add_server(p, "/run/dovecot/lmtp", 0);
 *     lmtp_pool_deliver(p, msgs, n, done, user);  (blocking: every message's callback, then returns)
 *   or
 *     lmtp_pool_submit(p, &msg, done, user, NULL);
 *     while (lmtp_pool_pending(p) > 0) {
 *         n = lmtp_pool_fds(p, fds, wants, cap);  (then poll on them, as for lmtp_fd/lmtp_want)
 *         poll(..., lmtp_pool_timeout_ms(p));
 *         lmtp_pool_process(p, ready_fds, ready_events, k);    (k 0 after a timeout)
 *     }
 *     lmtp_pool_free(p);
 *
 * Rules of the pool
 *  P1. Connections open as messages wait for one, up to lmtp_pool_options.connections. Each
 *      carries one message at a time (MAIL ... its final replies), so a break leaves at most one
 *      message's recipients uncertain. A connection ends politely (QUIT) after
 *      max_messages_per_connection messages, once it is max_connection_age_ms old (after its
 *      message), or after idle_timeout_ms without work. LHLO is always sent (LMTP_OPT_NO_HELLO is
 *      ignored); STARTTLS, AUTH and every other lmtp_options field apply to each connection.
 *  P2. Servers are tried in the order added. One that fails to connect or to set up (banner or
 *      LHLO refused, TLS failure, a deadline) is skipped for the back-off and the next is tried;
 *      when all have failed the back-off doubles from retry_delay_ms up to retry_delay_max_ms
 *      (lmtp_pool_timeout_ms waits for it: never 0 in a loop). Until one connection is set up,
 *      one connect is under way at a time. After retries + 1 such rounds in a row, every message
 *      not on a connection gets its callback with the connect error (LMTP_ERR_CONNECT, _TIMEOUT,
 *      _REJECTED...) and NO results: nothing of it was sent, trying again later is safe.
 *  P3. A recipient refused with 4xx (at RCPT, or its final reply; or the whole message at MAIL or
 *      DATA) is sent again, up to `retries` times, after retry_delay_ms doubled at each re-send of
 *      that message (capped at retry_delay_max_ms): a new transaction with only the recipients
 *      that got the 4xx. Retries spent, it keeps its last 4xx (LMTP_RESULT_TEMPFAIL). 2xx and
 *      5xx are final. lmtp_result_attempts says how many transactions included a recipient.
 *  P4. A connection that breaks (a deadline, the server gone, a protocol violation) is dropped
 *      and replaced; only the message on it is touched. If its end (the final "." or BDAT LAST)
 *      was written, its recipients without a verdict are LMTP_RESULT_UNKNOWN (the server may
 *      have delivered it) and are never sent again, unless LMTP_POOL_RESEND_UNKNOWN (a re-send
 *      may deliver twice; it then counts as a retry). If the break came before the end, the
 *      server cannot have it: those recipients go again at once; a message that breaks
 *      retries + 1 connections in a row before its end gets its callback with the break's status,
 *      those recipients UNKNOWN.
 *  P5. mailbox_concurrency: at most that many messages in flight at once to one address (the
 *      domain compared without case, the local part as it is), as Dovecot's
 *      lmtp_user_concurrency_limit wants. A message goes with those of its recipients whose
 *      mailbox is free, the others in a later transaction; later messages may pass one that waits,
 *      and the oldest that can go goes first.
 *  P6. Each message gets exactly one callback. Its status: LMTP_OK when every recipient has the
 *      server's verdict (OK, TEMPFAIL, PERMFAIL: look at the results); the error of the break
 *      (P4: LMTP_ERR_CLOSED, _IO, _TIMEOUT, _PROTOCOL; lmtp_errmsg(r) says what happened) when
 *      a recipient is UNKNOWN because the connection broke after the message's end went out,
 *      the other recipients' verdicts kept, as lmtp_deliver_batch reports a session that ended
 *      under a message; otherwise the error that kept the rest from being sent: a refusal made
 *      before anything was sent (LMTP_ERR_BAD_INPUT, _TOO_BIG, _NOT_ADVERTISED...; no results),
 *      the connect error (P2), the break of P4, LMTP_ERR_CLOSED when lmtp_pool_free dropped it. The
 *      results, when there are any, have one entry per recipient IN THE ORDER GIVEN; a recipient
 *      never sent (a message given up after a break) is LMTP_RESULT_PENDING.
 *  P7. The message's data (or its read callback and read_user) must stay valid until its
 *      callback: a retry sends it again. A message given by a read callback is sent once: its
 *      4xx recipients stay TEMPFAIL (attempts 1), and a break before its end leaves them UNKNOWN
 *      with the break's status; give the data in memory to have it retried.
 *  P8. Callbacks run only at the end of lmtp_pool_process, lmtp_pool_deliver (between its waits)
 *      and lmtp_pool_free, never in the middle of the pool's work. Inside one, `r` and the pool
 *      allow only the getters (lmtp_result_*, lmtp_errcode, lmtp_errmsg on `r`; lmtp_pool_pending,
 *      lmtp_pool_errmsg...), lmtp_pool_submit and lmtp_pool_free (which takes effect when the
 *      callbacks are done; the messages still pending then get theirs, with LMTP_ERR_CLOSED).
 *      Any other pool call returns LMTP_ERR_BAD_SEQUENCE; `r` is valid during the call only and
 *      is never to be freed.
 *  P9. One pool is used by one thread at a time. A server given by host NAME is looked up with
 *      getaddrinfo() (blocking) each time a connection to it starts: give IP addresses or unix
 *      socket paths to a non-blocking pool.
 */
typedef struct lmtp_pool lmtp_pool;

/* lmtp_pool_options.flags. Since 1.2. */
enum {
    LMTP_POOL_RESEND_UNKNOWN = 1u,   /* send again the recipients UNKNOWN after the end (P4): may deliver twice */
    LMTP_POOL_NO_RETRIES = 2u,       /* no re-send after a 4xx (retries 0); one connect round (P2) */
    LMTP_POOL_NO_MESSAGE_LIMIT = 4u, /* no max_messages_per_connection */
    LMTP_POOL_NO_AGE_LIMIT = 8u,     /* no max_connection_age_ms */
    LMTP_POOL_NO_MAILBOX_LIMIT = 16u, /* no mailbox_concurrency */
    LMTP_POOL_NO_IDLE_TIMEOUT = 32u  /* idle connections stay open until the server closes them */
};

/* The pool's limits (P1-P5); a zero field means its default. Since 1.2. */
typedef struct lmtp_pool_options {
    size_t struct_size;                   /* sizeof(lmtp_pool_options) */
    unsigned connections;                 /* K; 0: 4 */
    unsigned retries;                     /* re-sends after a 4xx; 0: 3 (LMTP_POOL_NO_RETRIES for none) */
    unsigned retry_delay_ms;              /* before the first re-send, doubling; 0: 1000 */
    unsigned retry_delay_max_ms;          /* 0: 60000 */
    unsigned max_messages_per_connection; /* then QUIT; 0: 100 (LMTP_POOL_NO_MESSAGE_LIMIT) */
    unsigned max_connection_age_ms;       /* then QUIT after its message; 0: 300000 (LMTP_POOL_NO_AGE_LIMIT) */
    unsigned idle_timeout_ms;             /* then QUIT; 0: 10000 (LMTP_POOL_NO_IDLE_TIMEOUT) */
    unsigned mailbox_concurrency;         /* messages in flight per address; 0: 2 (LMTP_POOL_NO_MAILBOX_LIMIT) */
    unsigned flags;                       /* LMTP_POOL_* */
} lmtp_pool_options;
#define LMTP_POOL_OPTIONS_INIT { sizeof(lmtp_pool_options), 0, 0, 0, 0, 0, 0, 0, 0, 0 }
/* Since 1.2. */
LMTP_API void lmtp_pool_options_init(lmtp_pool_options *popts);

/* A pool without servers. `opts`: each connection's options (as lmtp_create takes them; copied,
 * the strings too), may be NULL; `popts` may be NULL. As lmtp_create, *out is set even when the
 * options are unusable (LMTP_ERR_INVALID_ARGUMENT; lmtp_pool_errmsg says which): free it with
 * lmtp_pool_free. Since 1.2. */
LMTP_API int lmtp_pool_new(lmtp_pool **out, const lmtp_options *opts, const lmtp_pool_options *popts);
/* Adds a server, tried after those added before (P2): host as for lmtp_connect (a unix socket
 * path: port ignored). Nothing is connected yet. Since 1.2. */
LMTP_API int lmtp_pool_add_server(lmtp_pool *p, const char *host, unsigned port);
/* Drops every connection (without QUIT, as lmtp_free) and frees the pool. Each message still
 * pending first gets its callback, with LMTP_ERR_CLOSED (its recipients on a connection then
 * UNKNOWN). Inside a callback: when the callbacks are done (P8). NULL is allowed. Since 1.2. */
LMTP_API void lmtp_pool_free(lmtp_pool *p);
/* The last pool call's status and a sentence about it ("" after a success); for NULL,
 * LMTP_ERR_INVALID_ARGUMENT and "". Since 1.2. */
LMTP_API const char *lmtp_pool_errmsg(const lmtp_pool *p);
LMTP_API int lmtp_pool_errcode(const lmtp_pool *p);

/* Called once per message (P6, P8). `index`: its position in lmtp_pool_deliver's array, or the
 * number lmtp_pool_submit gave it. `r` describes that message: lmtp_result_count, _address,
 * _status, _stage, _code, _enhanced, _text, _rcpt_code, _rcpt_text, lmtp_result_attempts;
 * lmtp_errcode(r) is `status`, lmtp_errmsg(r) its sentence. Since 1.2. */
typedef void (*lmtp_pool_done_fn)(void *user, lmtp_pool *p, size_t index, lmtp_t *r, int status);

/* Delivers msgs[0..n-1] (struct lmtp_message, as lmtp_deliver_batch takes them) and waits: `done`
 * (may be NULL) is called for each as it finishes, in any order. A message unusable as given gets
 * its callback with the error (LMTP_ERR_INVALID_ARGUMENT...) and no results. Returns LMTP_OK once
 * every one had its callback, whatever the verdicts; an error, and no callback, for an unusable
 * call (NULL msgs with n > 0, no server added, inside a callback). Messages submitted before
 * progress too (their callbacks come as they finish). Since 1.2. */
LMTP_API int lmtp_pool_deliver(lmtp_pool *p, const struct lmtp_message *msgs, size_t n,
                               lmtp_pool_done_fn done, void *user);
/* Queues one message without waiting (connections start now when needed: rule P9). `*index`
 * (when `index` is not NULL) gets its number, 0, 1, 2... in the order submitted, which its
 * callback gets. LMTP_OK: done is called once, later; an error and no callback for a message
 * unusable as given (no recipient, a NULL field) or a pool without servers. Allowed inside a
 * callback. Since 1.2. */
LMTP_API int lmtp_pool_submit(lmtp_pool *p, const struct lmtp_message *msg, lmtp_pool_done_fn done,
                              void *user, size_t *index);
/* Messages queued (by either call) whose callback has not come yet. Since 1.2. */
LMTP_API size_t lmtp_pool_pending(const lmtp_pool *p);
/* The sockets to wait on: up to `cap` of them in fds[i] with what to wait for in wants[i]
 * (LMTP_IO_READ | LMTP_IO_WRITE); returns how many there are (more than `cap`: call again with
 * bigger arrays). The set changes after every call that processes: ask again each time. fds and
 * wants may be NULL when cap is 0. Since 1.2. */
LMTP_API size_t lmtp_pool_fds(const lmtp_pool *p, int *fds, int *wants, size_t cap);
/* Milliseconds the wait may last: -1 no limit, 0 call lmtp_pool_process now. Includes each
 * connection's deadline, retries due and the connect back-off (P2). Since 1.2. */
LMTP_API int lmtp_pool_timeout_ms(const lmtp_pool *p);
/* What the wait found: n pairs (fds[i], events[i] LMTP_IO_READ | LMTP_IO_WRITE; POLLHUP and
 * POLLERR count as LMTP_IO_READ), n 0 after a timeout. Never blocks (but rule P9); then runs the
 * callbacks due (P8). A connection's failure is not this call's: it goes to its message (P4).
 * LMTP_OK, or LMTP_ERR_INVALID_ARGUMENT / _BAD_SEQUENCE for an unusable call. Since 1.2. */
LMTP_API int lmtp_pool_process(lmtp_pool *p, const int *fds, const int *events, size_t n);
/* In a lmtp_pool_done_fn: how many transactions included recipient i (P3); on other handles 1
 * for each recipient of the results; 0 for an index out of range. Since 1.2. */
LMTP_API int lmtp_result_attempts(lmtp_t *h, size_t i);

#ifdef __cplusplus
}
#endif

#endif /* LMTP_H */
