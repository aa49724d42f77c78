/* lmtp-send: delivers a message (a file or stdin), or every message of a
 * Maildir or an mbox, to an LMTP server, and reports each recipient's verdict.
 * Written against the public C API (lmtp.h) only. */
#define _POSIX_C_SOURCE 200809L
#include "lmtp-send.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_PORT 24u
#define MAX_CONNECTIONS 1000

volatile sig_atomic_t interrupted = 0;

#define STR_(x) #x
#define STR(x) STR_(x)

static const char usage_text[] =
    "usage: lmtp-send [options] --server SERVER --from ADDR --to ADDR [--to ADDR...] [FILE|-]\n"
    "       lmtp-send [options] --server SERVER --from ADDR --to ADDR... --maildir DIR\n"
    "       lmtp-send [options] --server SERVER --from ADDR --to ADDR... --mbox FILE\n"
    "Delivers one message (FILE, or stdin when FILE is - or absent), or every message of a\n"
    "Maildir (cur/ and new/) or an mbox (mboxrd), over one LMTP connection (or a pool:\n"
    "--connections), and prints each recipient's verdict:\n"
    "ADDRESS ok|tempfail|permfail|unknown CODE ENHANCED TEXT.\n"
    "\n"
    "  -s, --server SERVER        HOST[:PORT], [IPv6]:PORT, IPv6 or /path/to/unix/socket\n"
    "                             (the port defaults to 24)\n"
    "  -f, --from ADDR            envelope sender (\"\" for the null sender <>)\n"
    "  -t, --to ADDR              recipient (repeatable)\n"
    "      --starttls             use STARTTLS when the server offers it\n"
    "      --tls-required         use STARTTLS; fail if the server does not offer it\n"
    "      --ca FILE|DIR          trusted CA certificates (default: the system's)\n"
    "      --cert FILE            client certificate (PEM)\n"
    "      --key FILE             its private key (default: in --cert)\n"
    "      --tls-name NAME        name to verify in the server's certificate (default: the host)\n"
    "      --insecure             do not verify the server's certificate at all\n"
    "      --auth-user USER       authenticate (AUTH) as USER; the password comes from\n"
    "      --auth-password-file F   the first line of F, or else the LMTP_PASSWORD variable\n"
    "      --auth-mech MECH       SCRAM-SHA-256, PLAIN, LOGIN or EXTERNAL (default: the strongest)\n"
    "      --auth-allow-plaintext allow PLAIN and LOGIN over unencrypted TCP\n"
    "      --timeout SECONDS      deadline for each reply and each write (default " STR(LMTP_DEFAULT_TIMEOUT_S) ")\n"
    "      --hello NAME           LHLO name (default: this host's name)\n"
    "      --strict-replies       never read the reply after the message as one line per\n"
    "                             recipient (as Net::Server::Mail::LMTP answers)\n"
    "      --chunking on|off|auto BDAT (on), DATA (off), or BDAT when offered (auto, default)\n"
    "      --notify LIST          DSN NOTIFY: never, or success,failure,delay\n"
    "      --ret full|hdrs        DSN RET\n"
    "      --envid ID             DSN ENVID\n"
    "      --8bitmime             BODY=8BITMIME\n"
    "      --smtputf8             SMTPUTF8\n"
    "      --maildir DIR          deliver every message of a Maildir\n"
    "      --mbox FILE            deliver every message of an mbox (\"From \" lines, mboxrd)\n"
    "      --progress-interval S  bulk progress on stderr every S seconds when it is not a\n"
    "                             terminal (default 10; 0: no progress)\n"
    "      --connections K        bulk: deliver over a pool of up to K connections at once\n"
    "                             (1 to " STR(MAX_CONNECTIONS) "), reported in the order of the input\n"
    "                             (without it: one connection; the run stops if it breaks)\n"
    "      --retries N            with --connections: send a recipient again up to N times\n"
    "                             after a 4xx (default 3; 0: never)\n"
    "      --retry-delay S        wait before the first re-send, doubled for each (default 1)\n"
    "      --retry-delay-max S    the longest wait between re-sends (default 60)\n"
    "      --mailbox-concurrency N  with --connections: messages in flight at once to one\n"
    "                             recipient (default 2; 0: no limit)\n"
    "  -v, --verbose              protocol trace on stderr (twice: the message too)\n"
    "      --json                 results as JSON on stdout (one object per message)\n"
    "  -h, --help                 this text\n"
    "  -V, --version              versions of lmtp-send and liblmtp\n";

/* Apart: C99 promises string literals of 4095 characters only. */
static const char usage_exits[] =
    "\n"
    "Exit status (sysexits.h):\n"
    "   0  every recipient got the message (bulk: every message)\n"
    "  64  bad arguments                      65  a recipient refused permanently (5xx),\n"
    "  66  an input file could not be read        or the message is over the server's SIZE\n"
    "  69  no server to deliver to: connect, greeting, TLS or a needed extension failed\n"
    "  74  the connection broke (timeout, reset, closed) or reading the message failed;\n"
    "      with --connections: a recipient is unknown (its message's connection broke)\n"
    "  75  a recipient refused temporarily (4xx), none permanently\n"
    "  76  the server broke the protocol      77  authentication failed\n"
    " 130  bulk run interrupted (Ctrl-C): finishes the current message; twice: abandons it\n";



static void die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die_usage(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("lmtp-send: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n(lmtp-send --help for usage)\n", stderr);
    exit(EXIT_USAGE);
}

void *xalloc(void *p) {
    if (!p) {
        fputs("lmtp-send: out of memory\n", stderr);
        exit(EXIT_OSERR);
    }
    return p;
}

/* ---- arguments ------------------------------------------------------------------ */

static unsigned parse_port(const char *s, const char *server) {
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (!*s || *end || errno || v == 0 || v > 65535 || *s == '-' || *s == '+')
        die_usage("bad port in --server %s", server);
    return (unsigned)v;
}

/* HOST, HOST:PORT, [IPv6], [IPv6]:PORT, a bare IPv6 literal (two colons or
 * more: no port can be given that way), or a path starting with "/". */
static void parse_server(config *c) {
    const char *s = c->server;
    c->port = DEFAULT_PORT;
    if (!*s) die_usage("empty --server");
    if (s[0] == '/') {
        c->host = xalloc(strdup(s));
        c->port = 0;
        return;
    }
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close == s + 1 || (close[1] && close[1] != ':')) die_usage("bad --server %s", s);
        c->host = xalloc(strndup(s + 1, (size_t)(close - s - 1)));
        if (close[1] == ':') c->port = parse_port(close + 2, s);
        return;
    }
    const char *colon = strchr(s, ':');
    if (colon && strchr(colon + 1, ':')) {
        c->host = xalloc(strdup(s));
        return;
    }
    if (colon) {
        if (colon == s) die_usage("bad --server %s", s);
        c->port = parse_port(colon + 1, s);
        c->host = xalloc(strndup(s, (size_t)(colon - s)));
        return;
    }
    c->host = xalloc(strdup(s));
}

/* --notify LIST and --ret WHAT are NOTIFY=LIST and RET=WHAT on the wire: liblmtp parses them,
 * on a handle of its own (*scratch, made the first time), and a value it refuses ends the
 * program with its reason. */
static void dsn_option(config *c, lmtp_t **scratch, const char *option, const char *value) {
    const int notify = strcmp(option, "--notify") == 0;
    char wire[512];
    lmtp_mail_options m;
    lmtp_rcpt_options r;
    int st, alone;
    if ((size_t)snprintf(wire, sizeof wire, "%s=%s", notify ? "NOTIFY" : "RET", value) >= sizeof wire)
        die_usage("bad %s %s: too long", option, value);
    if (!*scratch && lmtp_create(scratch, NULL) != LMTP_OK) {
        fputs("lmtp-send: out of memory\n", stderr);
        exit(EXIT_OSERR);
    }
    lmtp_mail_options_init(&m);
    lmtp_rcpt_options_init(&r);
    st = notify ? lmtp_rcpt_options_parse(*scratch, &r, wire) : lmtp_mail_options_parse(*scratch, &m, wire);
    if (st != LMTP_OK) die_usage("bad %s %s: %s", option, value, lmtp_errmsg(*scratch));
    /* The one parameter, nothing more ("success XFOO" would be two). */
    alone = notify ? r.notify && !r.orcpt && !r.extra
                   : m.ret && !m.size && !m.body && !m.smtputf8 && !m.envid && !m.transid && !m.extra;
    if (!alone) die_usage("bad %s %s (%s)", option, value, notify ? "never, or success,failure,delay" : "full or hdrs");
    if (notify)
        c->ropts.notify = r.notify;
    else
        c->mopts.ret = m.ret;
}

static double parse_seconds(const char *s, const char *option, int zero_ok) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !(v >= 0) || v > 4000000.0 || (!zero_ok && v <= 0))
        die_usage("bad %s %s (seconds)", option, s);
    return v;
}

static unsigned parse_count(const char *s, const char *option, unsigned min, unsigned max) {
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (!*s || *end || errno || *s == '-' || *s == '+' || v < min || v > max)
        die_usage("bad %s %s (a whole number from %u to %u)", option, s, min, max);
    return (unsigned)v;
}

/* Seconds, fractions allowed, as milliseconds (at least 1). */
static unsigned parse_ms(const char *s, const char *option) {
    unsigned ms = (unsigned)(parse_seconds(s, option, 0) * 1000 + 0.5);
    return ms ? ms : 1;
}

static void require_readable(const char *path) {
    if (access(path, R_OK) != 0) {
        fprintf(stderr, "lmtp-send: %s: %s\n", path, strerror(errno));
        exit(EXIT_NOINPUT);
    }
}

/* The first line of the password file, without its line end. */
static char *read_password(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "lmtp-send: %s: %s\n", path, strerror(errno));
        exit(EXIT_NOINPUT);
    }
    char buf[1024];
    if (!fgets(buf, sizeof buf, f)) buf[0] = '\0';
    fclose(f);
    buf[strcspn(buf, "\r\n")] = '\0';
    return xalloc(strdup(buf));
}

enum {
    OPT_STARTTLS = 256, OPT_TLS_REQUIRED, OPT_CA, OPT_CERT, OPT_KEY, OPT_TLS_NAME, OPT_INSECURE,
    OPT_AUTH_USER, OPT_AUTH_PASSWORD_FILE, OPT_AUTH_MECH, OPT_AUTH_PLAINTEXT, OPT_TIMEOUT, OPT_HELLO,
    OPT_CHUNKING, OPT_NOTIFY, OPT_RET, OPT_ENVID, OPT_8BITMIME, OPT_SMTPUTF8, OPT_MAILDIR, OPT_MBOX,
    OPT_PROGRESS, OPT_JSON, OPT_STRICT_REPLIES, OPT_CONNECTIONS, OPT_RETRIES, OPT_RETRY_DELAY,
    OPT_RETRY_DELAY_MAX, OPT_MAILBOX_CONCURRENCY
};

static const struct option long_options[] = {
    {"server", required_argument, NULL, 's'},
    {"from", required_argument, NULL, 'f'},
    {"to", required_argument, NULL, 't'},
    {"starttls", no_argument, NULL, OPT_STARTTLS},
    {"tls-required", no_argument, NULL, OPT_TLS_REQUIRED},
    {"ca", required_argument, NULL, OPT_CA},
    {"cert", required_argument, NULL, OPT_CERT},
    {"key", required_argument, NULL, OPT_KEY},
    {"tls-name", required_argument, NULL, OPT_TLS_NAME},
    {"insecure", no_argument, NULL, OPT_INSECURE},
    {"auth-user", required_argument, NULL, OPT_AUTH_USER},
    {"auth-password-file", required_argument, NULL, OPT_AUTH_PASSWORD_FILE},
    {"auth-mech", required_argument, NULL, OPT_AUTH_MECH},
    {"auth-allow-plaintext", no_argument, NULL, OPT_AUTH_PLAINTEXT},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"hello", required_argument, NULL, OPT_HELLO},
    {"strict-replies", no_argument, NULL, OPT_STRICT_REPLIES},
    {"chunking", required_argument, NULL, OPT_CHUNKING},
    {"notify", required_argument, NULL, OPT_NOTIFY},
    {"ret", required_argument, NULL, OPT_RET},
    {"envid", required_argument, NULL, OPT_ENVID},
    {"8bitmime", no_argument, NULL, OPT_8BITMIME},
    {"smtputf8", no_argument, NULL, OPT_SMTPUTF8},
    {"maildir", required_argument, NULL, OPT_MAILDIR},
    {"mbox", required_argument, NULL, OPT_MBOX},
    {"progress-interval", required_argument, NULL, OPT_PROGRESS},
    {"connections", required_argument, NULL, OPT_CONNECTIONS},
    {"retries", required_argument, NULL, OPT_RETRIES},
    {"retry-delay", required_argument, NULL, OPT_RETRY_DELAY},
    {"retry-delay-max", required_argument, NULL, OPT_RETRY_DELAY_MAX},
    {"mailbox-concurrency", required_argument, NULL, OPT_MAILBOX_CONCURRENCY},
    {"verbose", no_argument, NULL, 'v'},
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

static void parse_args(config *c, int argc, char **argv) {
    lmtp_options_init(&c->opts);
    lmtp_mail_options_init(&c->mopts);
    lmtp_rcpt_options_init(&c->ropts);
    c->progress_interval = 10;
    c->retries = -1;
    c->mailbox_concurrency = -1;
    c->rcpts = xalloc(calloc((size_t)argc, sizeof *c->rcpts));
    lmtp_t *scratch = NULL; /* parses --notify and --ret */
    int ch;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":s:f:t:vhV", long_options, NULL)) != -1) {
        switch (ch) {
            case 's': c->server = optarg; break;
            case 'f': c->from = optarg; break;
            case 't': c->rcpts[c->nrcpts++] = optarg; break;
            case OPT_STARTTLS: c->opts.starttls = LMTP_STARTTLS_OPPORTUNISTIC; break;
            case OPT_TLS_REQUIRED: c->opts.starttls = LMTP_STARTTLS_REQUIRED; break;
            case OPT_CA: c->opts.tls_ca_file = optarg; break;
            case OPT_CERT: c->opts.tls_cert_file = optarg; break;
            case OPT_KEY: c->opts.tls_key_file = optarg; break;
            case OPT_TLS_NAME: c->opts.tls_server_name = optarg; break;
            case OPT_INSECURE: c->opts.flags |= LMTP_OPT_TLS_INSECURE_SKIP_VERIFY; break;
            case OPT_AUTH_USER: c->opts.auth_user = optarg; break;
            case OPT_AUTH_PASSWORD_FILE: c->password_file = optarg; break;
            case OPT_AUTH_MECH: c->opts.auth_mechanism = optarg; break;
            case OPT_AUTH_PLAINTEXT: c->opts.flags |= LMTP_OPT_AUTH_ALLOW_PLAINTEXT; break;
            case OPT_STRICT_REPLIES: c->opts.flags |= LMTP_OPT_STRICT_REPLIES; break;
            case OPT_TIMEOUT:
                c->opts.timeout_ms = (unsigned)(parse_seconds(optarg, "--timeout", 0) * 1000 + 0.5);
                if (!c->opts.timeout_ms) c->opts.timeout_ms = 1;
                break;
            case OPT_HELLO: c->opts.hello = optarg; break;
            case OPT_CHUNKING:
                if (strcmp(optarg, "on") == 0) c->mopts.transfer = LMTP_TRANSFER_BDAT;
                else if (strcmp(optarg, "off") == 0) c->mopts.transfer = LMTP_TRANSFER_DATA;
                else if (strcmp(optarg, "auto") == 0) c->mopts.transfer = LMTP_TRANSFER_AUTO;
                else die_usage("bad --chunking %s (on, off or auto)", optarg);
                break;
            case OPT_NOTIFY: dsn_option(c, &scratch, "--notify", optarg); break;
            case OPT_RET: dsn_option(c, &scratch, "--ret", optarg); break;
            case OPT_ENVID: c->mopts.envid = optarg; break;
            case OPT_8BITMIME: c->mopts.body = LMTP_BODY_8BITMIME; break;
            case OPT_SMTPUTF8: c->mopts.smtputf8 = 1; break;
            case OPT_MAILDIR: c->maildir = optarg; break;
            case OPT_MBOX: c->mbox = optarg; break;
            case OPT_PROGRESS: c->progress_interval = parse_seconds(optarg, "--progress-interval", 1); break;
            case OPT_CONNECTIONS: c->connections = parse_count(optarg, "--connections", 1, (unsigned)MAX_CONNECTIONS); break;
            case OPT_RETRIES: c->retries = (int)parse_count(optarg, "--retries", 0, 1000); break;
            case OPT_RETRY_DELAY: c->retry_delay_ms = parse_ms(optarg, "--retry-delay"); break;
            case OPT_RETRY_DELAY_MAX: c->retry_delay_max_ms = parse_ms(optarg, "--retry-delay-max"); break;
            case OPT_MAILBOX_CONCURRENCY:
                c->mailbox_concurrency = (int)parse_count(optarg, "--mailbox-concurrency", 0, 100000);
                break;
            case 'v': c->verbose++; break;
            case OPT_JSON: c->json = 1; break;
            case 'h':
                fputs(usage_text, stdout);
                fputs(usage_exits, stdout);
                exit(EXIT_DELIVERED);
            case 'V':
                printf("lmtp-send %s (liblmtp %s)\n", LMTP_SEND_VERSION, lmtp_version());
                exit(EXIT_DELIVERED);
            case ':': die_usage("%s needs an argument", argv[optind - 1]); break;
            default: die_usage("unknown option %s", argv[optind - 1]); break;
        }
    }
    lmtp_free(scratch);
    if (optind < argc) c->file = argv[optind++];
    if (optind < argc) die_usage("more than one message file (%s)", argv[optind]);
    if (!c->server) die_usage("--server is required");
    if (!c->from) die_usage("--from is required (\"\" for the null sender)");
    if (!c->nrcpts) die_usage("at least one --to is required");
    if ((c->maildir != NULL) + (c->mbox != NULL) + (c->file != NULL) > 1)
        die_usage("give one of FILE, --maildir and --mbox");
    if (c->connections && !c->maildir && !c->mbox) die_usage("--connections is for --maildir and --mbox");
    if (!c->connections && (c->retries >= 0 || c->retry_delay_ms || c->retry_delay_max_ms || c->mailbox_concurrency >= 0))
        die_usage("--retries, --retry-delay, --retry-delay-max and --mailbox-concurrency need --connections");
    if (c->opts.tls_key_file && !c->opts.tls_cert_file) die_usage("--key needs --cert");
    if ((c->password_file || c->opts.auth_mechanism) && !c->opts.auth_user)
        die_usage("--auth-password-file and --auth-mech need --auth-user");
    parse_server(c);
    if (c->opts.tls_ca_file) {
        require_readable(c->opts.tls_ca_file);
        struct stat st;
        if (stat(c->opts.tls_ca_file, &st) == 0 && S_ISDIR(st.st_mode)) {  // hashed certificates
            c->opts.tls_ca_dir = c->opts.tls_ca_file;
            c->opts.tls_ca_file = NULL;
        }
    }
    if (c->opts.tls_cert_file) require_readable(c->opts.tls_cert_file);
    if (c->opts.tls_key_file) require_readable(c->opts.tls_key_file);
    if (c->opts.auth_user) {
        if (c->password_file) {
            c->password = read_password(c->password_file);
        } else if (getenv("LMTP_PASSWORD")) {
            c->password = xalloc(strdup(getenv("LMTP_PASSWORD")));
        } else if (!c->opts.auth_mechanism || strcmp(c->opts.auth_mechanism, "EXTERNAL") != 0) {
            die_usage("--auth-user needs --auth-password-file or LMTP_PASSWORD");
        }
        c->opts.auth_password = c->password;
    }
}

/* ---- exit codes ------------------------------------------------------------------ */

/* The exit code for a call that failed with `st`. */
int exit_for_status(int st) {
    switch (st) {
        case LMTP_OK: return EXIT_DELIVERED;
        case LMTP_ERR_INVALID_ARGUMENT:
        case LMTP_ERR_BAD_INPUT:
        case LMTP_ERR_LINE_TOO_LONG: return EXIT_USAGE;
        case LMTP_ERR_TOO_BIG: return EXIT_PERMFAIL;
        case LMTP_ERR_RESOLVE:
        case LMTP_ERR_CONNECT:
        case LMTP_ERR_REJECTED:
        case LMTP_ERR_NOT_ADVERTISED:
        case LMTP_ERR_TLS:
        case LMTP_ERR_CERTIFICATE: return EXIT_UNAVAILABLE;
        case LMTP_ERR_TIMEOUT:
        case LMTP_ERR_IO:
        case LMTP_ERR_CLOSED:
        case LMTP_ERR_NOT_CONNECTED:
        case LMTP_ERR_ABORTED: return EXIT_IOERR;
        case LMTP_ERR_PROTOCOL: return EXIT_PROTOCOL;
        case LMTP_ERR_AUTH:
        case LMTP_ERR_INSECURE: return EXIT_NOPERM;
        case LMTP_ERR_NO_MEMORY: return EXIT_OSERR;
        default: return EXIT_SOFTWARE;
    }
}

/* The exit code for one message: the session's failure, else the worst verdict (a recipient
 * left unknown by a connection that broke after the message's end is the break's: 74). */
int exit_for_message(const report *r) {
    if (r->aborted) return EXIT_INTERRUPTED;
    if (r->status != LMTP_OK) return exit_for_status(r->status);
    outcome o = outcome_of(r);
    if (o.unknown) return EXIT_IOERR;
    if (o.permfailed) return EXIT_PERMFAIL;
    if (o.tempfailed) return EXIT_TEMPFAIL;
    return EXIT_DELIVERED;
}

/* How serious an exit code is, to keep the worst of a bulk run. */
static int severity(int code) {
    switch (code) {
        case EXIT_DELIVERED: return 0;
        case EXIT_TEMPFAIL: return 1;
        case EXIT_NOINPUT: return 2;
        case EXIT_PERMFAIL: return 3;
        case EXIT_INTERRUPTED: return 4;
        default: return 5;
    }
}

int worse(int a, int b) { return severity(b) > severity(a) ? b : a; }

/* ---- the session ------------------------------------------------------------------ */

static void on_sigint(int sig) {
    static const char first[] = "\nlmtp-send: interrupted: finishing the current message (Ctrl-C again abandons it)\n";
    static const char second[] = "\nlmtp-send: interrupted again: abandoning the current message\n";
    (void)sig;
    if (interrupted < 2) interrupted++;
    if (interrupted == 1) {
        if (write(STDERR_FILENO, first, sizeof first - 1) < 0) return;
    } else {
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigaction(SIGINT, &dfl, NULL);  // a third Ctrl-C ends the program at once
        if (write(STDERR_FILENO, second, sizeof second - 1) < 0) return;
    }
}

static void install_sigint(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: a blocked read of the message returns to look at the count
    sigaction(SIGINT, &sa, NULL);
}

void trace(void *user, int direction, const char *line, size_t len) {
    const trace_ctx *t = user;
    const char *prefix = direction == LMTP_TRACE_SEND ? ">>> " : direction == LMTP_TRACE_RECEIVE ? "<<< "
                         : direction == LMTP_TRACE_DATA ? ">>> " : "*** ";
    if (direction == LMTP_TRACE_DATA && t->verbose < 2) return;
    progress_clear(t->prog);
    fputs(prefix, stderr);
    if (len) fwrite(line, 1, len, stderr);  // an empty line may come as NULL
    fputc('\n', stderr);
}

/* Connects; on failure says why on stderr and returns the status (the handle
 * may still be set, to tell the recipients why). */
static int connect_server(config *c, lmtp_t **h, trace_ctx *tctx) {
    if (c->verbose) {
        c->opts.trace = trace;
        c->opts.trace_user = tctx;
    }
    int st = lmtp_new(h, c->host, c->port, &c->opts);
    if (st != LMTP_OK) {
        fprintf(stderr, "lmtp-send: %s: %s\n", c->server, *h ? lmtp_errmsg(*h) : lmtp_strerror(st));
        if (!*h) exit(exit_for_status(st));
    }
    return st;
}

/* Delivers the current message of `in`; returns the library's status. When the server
 * offers SIZE, the message declares its size on the wire, line ends made CRLF, which
 * liblmtp counts over the file (when it can be read twice: a regular file). */
static int deliver_one(config *c, lmtp_t *h, input *in) {
    lmtp_mail_options mopts = c->mopts;
    if (lmtp_supports(h, "SIZE")) mopts.size = input_canonical_size(in);
    return lmtp_deliver_stream(h, c->from, c->rcpts, c->nrcpts, input_read, in, &mopts, &c->ropts);
}

static int run_single(config *c) {
    const char *path = c->file ? c->file : "-";
    input *in = input_open(path, 0);
    if (!in) {
        fprintf(stderr, "lmtp-send: %s: %s\n", path, strerror(errno));
        return EXIT_NOINPUT;
    }
    progress none;
    progress_start(&none, 0, 0, 0, 0);
    trace_ctx tctx = {c->verbose, &none};
    lmtp_t *h = NULL;
    int st = connect_server(c, &h, &tctx);
    int code;
    if (st == LMTP_OK && interrupted) {
        code = EXIT_INTERRUPTED;
    } else {
        if (st == LMTP_OK) {
            st = deliver_one(c, h, in);
            if (st != LMTP_OK) fprintf(stderr, "lmtp-send: %s\n", lmtp_errmsg(h));
        }
        report rep;
        report_capture(&rep, h, st, c->rcpts, c->nrcpts);
        rep.aborted = st == LMTP_ERR_ABORTED && input_aborted(in);
        code = exit_for_message(&rep);
        if (c->json)
            print_json_message(stdout, &rep, path, 0, input_message_bytes(in), code, 0);
        else
            print_results(stdout, &rep, NULL, 0);
        report_free(&rep);
    }
    if (lmtp_is_connected(h)) lmtp_quit(h);
    lmtp_free(h);
    input_close(in);
    return code;
}

/* ---- bulk ------------------------------------------------------------------------ */

void bulk_stop(bulk *b, const char *next, const char *why) {
    b->stopped = 1;
    if (next && !b->stopped_before) b->stopped_before = xalloc(strdup(next));
    if (why && !b->error) b->error = xalloc(strdup(why));
}

void bulk_report(bulk *b, const report *r, const char *label, unsigned long index, unsigned long long bytes) {
    config *c = b->c;
    int code = exit_for_message(r);
    outcome o = outcome_of(r);
    b->attempted++;
    b->code = worse(b->code, code);
    if (code == EXIT_DELIVERED)
        b->delivered++;
    else
        b->failed++;
    progress_clear(&b->prog);
    if (c->json) {
        print_json_message(stdout, r, label, index, bytes, code, c->connections > 0);
    } else if (code != EXIT_DELIVERED) {
        print_results(stdout, r, label, 1);
        if (o.delivered == 0 && r->aborted && r->status == LMTP_ERR_ABORTED)
            printf("%s: abandoned by Ctrl-C: delivered to no one\n", label);
    }
    fflush(stdout);
    progress_message_done(&b->prog);
}

/* Delivers one message of a bulk run over the one connection and reports it. */
static void bulk_message(bulk *b, input *in, const char *label, unsigned long index) {
    config *c = b->c;
    int st = deliver_one(c, b->h, in);
    report rep;
    report_capture(&rep, b->h, st, c->rcpts, c->nrcpts);
    rep.aborted = st == LMTP_ERR_ABORTED && input_aborted(in);
    bulk_report(b, &rep, label, index, input_message_bytes(in));
    report_free(&rep);
    if (st != LMTP_OK) {
        const char *why = input_aborted(in) ? "interrupted" : lmtp_errmsg(b->h);
        if (!c->json) fprintf(stderr, "lmtp-send: %s: %s\n", label, why);
        bulk_stop(b, NULL, why);
    } else if (!lmtp_is_connected(b->h)) {
        bulk_stop(b, NULL, "the server closed the connection");
        b->code = worse(b->code, EXIT_IOERR);
    }
}

void bulk_unreadable(bulk *b, const char *label, int err) {
    progress_clear(&b->prog);
    fprintf(stderr, "lmtp-send: %s: %s\n", label, strerror(err));
    if (b->c->json) {
        fputs("{\"message\":", stdout);
        print_json_string(stdout, label);
        fputs(",\"error\":", stdout);
        print_json_string(stdout, strerror(err));
        printf(",\"exit\":%d,\"recipients\":[]}\n", EXIT_NOINPUT);
    } else {
        printf("%s: unreadable: %s\n", label, strerror(err));
    }
    b->unreadable++;
    b->code = worse(b->code, EXIT_NOINPUT);
}

static void run_maildir(bulk *b, const maildir_list *list) {
    for (size_t i = 0; i < list->count && !b->stopped; i++) {
        const char *path = list->paths[i];
        if (interrupted) {
            bulk_stop(b, path, "interrupted");
            break;
        }
        input *in = input_open(path, 0);
        if (!in) {
            bulk_unreadable(b, path, errno);
            continue;
        }
        input_set_progress(in, progress_bytes, &b->prog);
        bulk_message(b, in, path, (unsigned long)i + 1);
        if (b->stopped && i + 1 < list->count) bulk_stop(b, list->paths[i + 1], NULL);
        input_close(in);
    }
}

static void run_mbox(bulk *b, input *in) {
    char label[4096];
    input_set_progress(in, progress_bytes, &b->prog);
    for (unsigned long i = 1; !b->stopped; i++) {
        snprintf(label, sizeof label, "%s#%lu", b->c->mbox, i);
        int more = input_next_message(in);
        if (more == 0) break;
        if (more < 0) {
            int err = input_error(in) ? input_error(in) : errno;
            bulk_unreadable(b, label, err);
            bulk_stop(b, label, strerror(err));
            break;
        }
        if (interrupted) {
            bulk_stop(b, label, "interrupted");
            break;
        }
        bulk_message(b, in, label, i);
        if (b->stopped) {
            /* After an abandoned message the rest of it is unread: whether
             * another follows is not known, and it is said so. */
            int aborted = input_aborted(in);
            snprintf(label, sizeof label, "%s#%lu%s", b->c->mbox, i + 1, aborted ? " (if any)" : "");
            if (aborted || input_next_message(in) > 0) bulk_stop(b, label, NULL);
        }
    }
}

static void print_summary(bulk *b, double seconds, unsigned long long bytes) {
    if (b->c->json) {
        printf("{\"summary\":{\"messages\":%lu,\"delivered\":%lu,\"failed\":%lu,\"unreadable\":%lu,"
               "\"bytes\":%llu,\"seconds\":%.3f,\"interrupted\":%d,\"stopped_before\":",
               b->attempted, b->delivered, b->failed, b->unreadable, bytes, seconds, (int)interrupted);
        if (b->stopped_before)
            print_json_string(stdout, b->stopped_before);
        else
            fputs("null", stdout);
        fputs(",\"error\":", stdout);
        if (b->error)
            print_json_string(stdout, b->error);
        else
            fputs("null", stdout);
        printf(",\"exit\":%d}}\n", b->code);
        return;
    }
    char size[32];
    printf("summary: %lu message%s sent (%s) in %.1f s: %lu delivered to every recipient, %lu with failures",
           b->attempted, b->attempted == 1 ? "" : "s", human_bytes(size, sizeof size, (double)bytes), seconds,
           b->delivered, b->failed);
    if (b->unreadable) printf(", %lu unreadable", b->unreadable);
    putchar('\n');
    if (interrupted) printf("interrupted by Ctrl-C%s\n", interrupted >= 2 ? " twice: the last message was abandoned" : "");
    if (b->error && !interrupted) printf("stopped: %s\n", b->error);
    if (b->stopped_before) printf("not sent: %s and every message after it\n", b->stopped_before);
}

static int run_bulk(config *c) {
    bulk b;
    memset(&b, 0, sizeof b);
    b.c = c;
    maildir_list list = {NULL, 0, 0};
    input *in = NULL;
    const char *source = c->maildir ? c->maildir : c->mbox;
    int st;
    if (c->maildir ? maildir_scan(c->maildir, &list) != 0 : (in = input_open(c->mbox, 1)) == NULL) {
        fprintf(stderr, "lmtp-send: %s: %s\n", source, strerror(errno));
        return EXIT_NOINPUT;
    }
    unsigned long long total = c->maildir ? list.bytes : input_file_size(in);
    progress_start(&b.prog, isatty(STDERR_FILENO), c->progress_interval, (unsigned long)list.count, total);
    trace_ctx tctx = {c->verbose, &b.prog};
    if (c->connections) {
        if (c->verbose) {
            c->opts.trace = trace;
            c->opts.trace_user = &tctx;
        }
        run_pool(&b, &list, in);
    } else if ((st = connect_server(c, &b.h, &tctx)) != LMTP_OK) {
        b.code = exit_for_status(st);
        bulk_stop(&b, NULL, lmtp_errmsg(b.h));
    } else if (c->maildir) {
        run_maildir(&b, &list);
    } else {
        run_mbox(&b, in);
    }
    if (interrupted) b.code = worse(b.code, EXIT_INTERRUPTED);
    progress_clear(&b.prog);
    print_summary(&b, now_seconds() - b.prog.start, b.prog.bytes);
    if (lmtp_is_connected(b.h)) lmtp_quit(b.h);
    lmtp_free(b.h);
    input_close(in);
    maildir_free(&list);
    free(b.stopped_before);
    free(b.error);
    return b.code;
}

int main(int argc, char **argv) {
    config c;
    memset(&c, 0, sizeof c);
    parse_args(&c, argc, argv);
    install_sigint();
    int code = c.maildir || c.mbox ? run_bulk(&c) : run_single(&c);
    fflush(stdout);
    free(c.host);
    free(c.password);
    free((void *)c.rcpts);
    return code;
}
