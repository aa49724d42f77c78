/*
 * LMTP.xs - the thin layer between Net::LMTP (lib/Net/LMTP.pm) and liblmtp's
 * C API. Each function maps one lmtp.h call and returns its status; what a
 * Perl caller sees (true/false, code, message, $@, carp) is decided in the
 * .pm. Nothing here croaks on a server's answer; only misuse croaks.
 */
#define PERL_NO_GET_CONTEXT
#include "EXTERN.h"
#include "perl.h"
#include "XSUB.h"

#include <lmtp.h>
#include <string.h>

/* Where the Debug dialogue goes: the prefix ("Net::LMTP=GLOB(0x...)") of each line, NULL when
 * not tracing. */
typedef struct {
    SV *prefix;
#ifdef USE_ITHREADS
    PerlInterpreter *perl;
#endif
} trace_target;

/* The handle, and its trace. */
typedef struct {
    lmtp_t *h;
    trace_target t;
} net_lmtp_xs;
typedef net_lmtp_xs *Net_LMTP_XS;

/* A delivery pool (Net::LMTP::Pool), and the trace of its connections. */
typedef struct {
    lmtp_pool *p;
    trace_target t;
} net_lmtp_pool;
typedef net_lmtp_pool *Net_LMTP_XS_Pool;

/* Prints the dialogue the way Net::Cmd's debug_print does: commands end in
 * CRLF (Net::Cmd prints the line it sends), replies and data lines in LF. */
static void trace_to_stderr(void *user, int direction, const char *line, size_t len) {
    trace_target *x = (trace_target *)user;
#ifdef USE_ITHREADS
    PerlInterpreter *my_perl = x->perl;
#else
    dTHX;
#endif
    const char *arrow;
    const char *end = "\n";
    STRLEN plen;
    const char *prefix;
    if (!x->prefix || direction == LMTP_TRACE_INFO) return;
    prefix = SvPV(x->prefix, plen);
    if (direction == LMTP_TRACE_RECEIVE) {
        arrow = "<<< ";
    } else {
        arrow = ">>> ";
        if (direction == LMTP_TRACE_SEND) end = "\r\n";
    }
    PerlIO_write(PerlIO_stderr(), prefix, plen);
    PerlIO_write(PerlIO_stderr(), arrow, 4);
    PerlIO_write(PerlIO_stderr(), line, len);
    PerlIO_write(PerlIO_stderr(), end, strlen(end));
    PerlIO_flush(PerlIO_stderr());
}

/* A byte string for the C API: NULL for undef. Strings with NUL bytes are
 * refused by the .pm before they get here; croak if one slips through. */
static const char *bytes_or_null(pTHX_ SV *sv, const char *what) {
    STRLEN len;
    const char *p;
    if (!SvOK(sv)) return NULL;
    p = SvPVbyte(sv, len);
    if (memchr(p, '\0', len)) croak("Net::LMTP: %s contains a NUL byte", what);
    return p;
}

static SV *string_or_undef(pTHX_ const char *s) {
    return s ? newSVpv(s, 0) : newSV(0);
}

/* The fields of lmtp_options that Net::LMTP->new and Net::LMTP::Pool->new both set
 * (Net::LMTP::_connection_options makes their values). */
static void base_options(pTHX_ lmtp_options *o, unsigned timeout_ms, SV *hello, SV *local_address,
                         unsigned local_port, unsigned flags) {
    o->timeout_ms = timeout_ms;
    o->hello = bytes_or_null(aTHX_ hello, "Hello");
    o->local_address = bytes_or_null(aTHX_ local_address, "LocalAddr");
    o->local_port = local_port;
    o->flags = flags;
}

/* The TLS fields, from IO::Socket::SSL's options (Net::LMTP::_tls_options). */
static void tls_options(pTHX_ lmtp_options *o, SV *ca_file, SV *ca_dir, SV *cert_file, SV *key_file,
                        SV *server_name, int min_version) {
    o->tls_ca_file = bytes_or_null(aTHX_ ca_file, "SSL_ca_file");
    o->tls_ca_dir = bytes_or_null(aTHX_ ca_dir, "SSL_ca_path");
    o->tls_cert_file = bytes_or_null(aTHX_ cert_file, "SSL_cert_file");
    o->tls_key_file = bytes_or_null(aTHX_ key_file, "SSL_key_file");
    o->tls_server_name = bytes_or_null(aTHX_ server_name, "SSL_hostname");
    o->tls_min_version = min_version;
}

/* Sets (or with an undef prefix, clears) where the trace goes. */
static void trace_init(pTHX_ trace_target *t, SV *prefix) {
#ifdef USE_ITHREADS
    t->perl = my_perl;
#endif
    if (t->prefix) SvREFCNT_dec(t->prefix);
    t->prefix = prefix && SvOK(prefix) ? newSVsv(prefix) : NULL;
}

static const char *const result_status[] = {"pending", "ok", "tempfail", "permfail", "unknown"};
static const char *const result_stage[] = {"none", "mail", "rcpt", "data"};

/* Recipient i of the handle's results, as a hash; with its attempts for a pool's message. */
static SV *result_hash(pTHX_ lmtp_t *h, size_t i, int with_attempts) {
    HV *r = newHV();
    int status = lmtp_result_status(h, i);
    int stage = lmtp_result_stage(h, i);
    (void)hv_stores(r, "address", newSVpv(lmtp_result_address(h, i), 0));
    (void)hv_stores(r, "status", newSVpv(result_status[status >= 0 && status <= 4 ? status : 4], 0));
    (void)hv_stores(r, "stage", newSVpv(result_stage[stage >= 0 && stage <= 3 ? stage : 0], 0));
    (void)hv_stores(r, "code", newSViv(lmtp_result_code(h, i)));
    (void)hv_stores(r, "enhanced", newSVpv(lmtp_result_enhanced(h, i), 0));
    (void)hv_stores(r, "text", newSVpv(lmtp_result_text(h, i), 0));
    (void)hv_stores(r, "rcpt_code", newSViv(lmtp_result_rcpt_code(h, i)));
    (void)hv_stores(r, "rcpt_text", newSVpv(lmtp_result_rcpt_text(h, i), 0));
    if (with_attempts) (void)hv_stores(r, "attempts", newSViv(lmtp_result_attempts(h, i)));
    return newRV_noinc((SV *)r);
}

/* Options from parameters as on the wire (undef: none), parsed by liblmtp, and a raw
 * ENVID or ORCPT address given apart (undef: none). */
static int mail_options(pTHX_ lmtp_t *h, lmtp_mail_options *o, SV *wire, SV *envid) {
    int st = SvOK(wire) ? lmtp_mail_options_parse(h, o, bytes_or_null(aTHX_ wire, "option")) : LMTP_OK;
    if (st == LMTP_OK && SvOK(envid)) o->envid = bytes_or_null(aTHX_ envid, "Envelope");
    return st;
}

static int rcpt_options(pTHX_ lmtp_t *h, lmtp_rcpt_options *o, SV *wire, SV *orcpt) {
    int st = SvOK(wire) ? lmtp_rcpt_options_parse(h, o, bytes_or_null(aTHX_ wire, "option")) : LMTP_OK;
    if (st == LMTP_OK && SvOK(orcpt)) o->orcpt = bytes_or_null(aTHX_ orcpt, "ORcpt");
    return st;
}

/* A message's outcome as the callbacks of lmtp_deliver_batch and lmtp_pool_deliver see it on `h`:
 * [status, error, [results...]]. Only builds Perl data (nothing here can croak). */
static SV *message_entry(pTHX_ lmtp_t *h, int status, int with_attempts) {
    AV *one = newAV();
    AV *results = newAV();
    size_t i, n = lmtp_result_count(h);
    for (i = 0; i < n; i++) av_push(results, result_hash(aTHX_ h, i, with_attempts));
    av_push(one, newSViv(status));
    av_push(one, newSVpv(status ? lmtp_errmsg(h) : "", 0));
    av_push(one, newRV_noinc((SV *)results));
    return newRV_noinc((SV *)one);
}

/* lmtp_deliver_batch's callback: the entries in order. */
typedef struct {
    lmtp_t *h;
    AV *out;
} batch_out;

static int batch_done(void *user, size_t index, int status) {
    dTHX;
    batch_out *b = user;
    (void)index;
    av_push(b->out, message_entry(aTHX_ b->h, status, 0));
    return 0;
}

/* lmtp_pool_deliver's callback: each entry at its message's position, whatever the order. */
static void pool_done(void *user, lmtp_pool *p, size_t index, lmtp_t *r, int status) {
    dTHX;
    (void)p;
    (void)av_store((AV *)user, (SSize_t)index, message_entry(aTHX_ r, status, 1));
}

/* The messages [FROM, [TO...], DATA] (already checked and made bytes by Net::LMTP) as the C API
 * takes them; *n gets their number. The arrays are freed when the XSUB's scope ends; the strings
 * are the SVs' own. */
static lmtp_message_t *messages_from_av(pTHX_ AV *messages, SSize_t *count) {
    lmtp_message_t *msgs;
    SSize_t i, j, n = av_len(messages) + 1;
    Newxz(msgs, n > 0 ? n : 1, lmtp_message_t);
    SAVEFREEPV(msgs);
    for (i = 0; i < n; i++) {
        SV **m = av_fetch(messages, i, 0);
        SV **f, **t, **d;
        AV *one, *to;
        const char **list;
        SSize_t nto;
        STRLEN len;
        if (!m || !SvROK(*m) || SvTYPE(SvRV(*m)) != SVt_PVAV) croak("Net::LMTP: a message is [FROM, [TO...], DATA]");
        one = (AV *)SvRV(*m);
        f = av_fetch(one, 0, 0);
        t = av_fetch(one, 1, 0);
        d = av_fetch(one, 2, 0);
        if (!f || !t || !d || !SvROK(*t) || SvTYPE(SvRV(*t)) != SVt_PVAV)
            croak("Net::LMTP: a message is [FROM, [TO...], DATA]");
        to = (AV *)SvRV(*t);
        nto = av_len(to) + 1;
        Newx(list, nto > 0 ? nto : 1, const char *);
        SAVEFREEPV(list);
        for (j = 0; j < nto; j++) {
            SV **e = av_fetch(to, j, 0);
            list[j] = e ? bytes_or_null(aTHX_ *e, "address") : NULL;
            if (!list[j]) list[j] = "";
        }
        lmtp_message_init(&msgs[i]);
        msgs[i].from = bytes_or_null(aTHX_ *f, "address");
        msgs[i].rcpts = list;
        msgs[i].nrcpts = (size_t)nto;
        msgs[i].data = SvPVbyte(*d, len);
        msgs[i].len = len;
    }
    *count = n;
    return msgs;
}

MODULE = Net::LMTP  PACKAGE = Net::LMTP::XS  PREFIX = xs_

PROTOTYPES: DISABLE

Net_LMTP_XS
xs_create(class, timeout_ms, hello, local_address, local_port, flags)
    const char *class
    unsigned timeout_ms
    SV *hello
    SV *local_address
    unsigned local_port
    unsigned flags
  PREINIT:
    lmtp_options o = LMTP_OPTIONS_INIT;
    net_lmtp_xs *x;
  CODE:
    PERL_UNUSED_VAR(class);
    base_options(aTHX_ &o, timeout_ms, hello, local_address, local_port, flags);
    Newxz(x, 1, net_lmtp_xs);
    trace_init(aTHX_ &x->t, NULL);
    if (lmtp_create(&x->h, &o) == LMTP_ERR_NO_MEMORY || !x->h) {
        Safefree(x);
        croak("Net::LMTP: out of memory");
    }
    RETVAL = x;
  OUTPUT:
    RETVAL

void
xs_DESTROY(x)
    Net_LMTP_XS x
  CODE:
    /* lmtp_free never sends QUIT: safe in a forked child. */
    lmtp_free(x->h);
    trace_init(aTHX_ &x->t, NULL);
    Safefree(x);

int
xs_connect(x, host, port)
    Net_LMTP_XS x
    SV *host
    unsigned port
  CODE:
    RETVAL = lmtp_connect(x->h, bytes_or_null(aTHX_ host, "host"), port);
  OUTPUT:
    RETVAL

void
xs_set_debug(x, prefix)
    Net_LMTP_XS x
    SV *prefix
  CODE:
    trace_init(aTHX_ &x->t, prefix);
    if (x->t.prefix) {
        lmtp_set_trace(x->h, trace_to_stderr, &x->t);
    } else {
        lmtp_set_trace(x->h, NULL, NULL);
    }

int
xs_set_timeout(x, ms)
    Net_LMTP_XS x
    unsigned ms
  CODE:
    RETVAL = lmtp_set_timeout(x->h, ms);
  OUTPUT:
    RETVAL

int
xs_is_connected(x)
    Net_LMTP_XS x
  CODE:
    RETVAL = lmtp_is_connected(x->h);
  OUTPUT:
    RETVAL

int
xs_close(x)
    Net_LMTP_XS x
  CODE:
    RETVAL = lmtp_close(x->h);
  OUTPUT:
    RETVAL

SV *
xs_banner(x)
    Net_LMTP_XS x
  CODE:
    RETVAL = newSVpv(lmtp_banner(x->h), 0);
  OUTPUT:
    RETVAL

SV *
xs_domain(x)
    Net_LMTP_XS x
  CODE:
    RETVAL = newSVpv(lmtp_domain(x->h), 0);
  OUTPUT:
    RETVAL

SV *
xs_capability(x, keyword)
    Net_LMTP_XS x
    const char *keyword
  CODE:
    RETVAL = string_or_undef(aTHX_ lmtp_capability(x->h, keyword));
  OUTPUT:
    RETVAL

int
xs_code(x)
    Net_LMTP_XS x
  CODE:
    RETVAL = lmtp_code(x->h);
  OUTPUT:
    RETVAL

void
xs_message_lines(x)
    Net_LMTP_XS x
  PREINIT:
    size_t i, n;
  PPCODE:
    n = lmtp_message_count(x->h);
    EXTEND(SP, (SSize_t)n);
    for (i = 0; i < n; i++) PUSHs(sv_2mortal(newSVpv(lmtp_message_line(x->h, i), 0)));

int
xs_errcode(x)
    Net_LMTP_XS x
  CODE:
    RETVAL = lmtp_errcode(x->h);
  OUTPUT:
    RETVAL

SV *
xs_errmsg(x)
    Net_LMTP_XS x
  CODE:
    RETVAL = newSVpv(lmtp_errmsg(x->h), 0);
  OUTPUT:
    RETVAL

int
xs_hello(x, domain)
    Net_LMTP_XS x
    SV *domain
  CODE:
    RETVAL = lmtp_hello(x->h, bytes_or_null(aTHX_ domain, "domain"));
  OUTPUT:
    RETVAL

int
xs_mail(x, verb, from, wire, envid, force)
    Net_LMTP_XS x
    const char *verb
    SV *from
    SV *wire
    SV *envid
    int force
  PREINIT:
    lmtp_mail_options o = LMTP_MAIL_OPTIONS_INIT;
    const char *addr;
  CODE:
    /* MAIL's parameters as on the wire, parsed by liblmtp; `envid` a raw ENVID (Envelope). */
    addr = bytes_or_null(aTHX_ from, "address");
    if (strcmp(verb, "MAIL") == 0) {
        RETVAL = mail_options(aTHX_ x->h, &o, wire, envid);
        if (RETVAL == LMTP_OK) {
            o.flags = force ? LMTP_FORCE : 0;
            RETVAL = lmtp_mail(x->h, addr, &o);
        }
    } else if (strcmp(verb, "SEND") == 0) {
        RETVAL = lmtp_send(x->h, addr);
    } else if (strcmp(verb, "SOML") == 0) {
        RETVAL = lmtp_send_or_mail(x->h, addr);
    } else {
        RETVAL = lmtp_send_and_mail(x->h, addr);
    }
  OUTPUT:
    RETVAL

void
xs_mail_check(x, wire, envid)
    Net_LMTP_XS x
    SV *wire
    SV *envid
  PREINIT:
    lmtp_mail_options o = LMTP_MAIL_OPTIONS_INIT;
    const char *missing = NULL;
    int st;
  PPCODE:
    /* (status, the extension the server lacks or undef) for these parameters. */
    st = mail_options(aTHX_ x->h, &o, wire, envid);
    if (st == LMTP_OK) st = lmtp_mail_options_check(x->h, &o, &missing);
    EXTEND(SP, 2);
    PUSHs(sv_2mortal(newSViv(st)));
    PUSHs(sv_2mortal(string_or_undef(aTHX_ missing)));

int
xs_rcpt(x, to, wire, orcpt, force)
    Net_LMTP_XS x
    SV *to
    SV *wire
    SV *orcpt
    int force
  PREINIT:
    lmtp_rcpt_options o = LMTP_RCPT_OPTIONS_INIT;
  CODE:
    /* RCPT's parameters as on the wire; `orcpt` a raw rfc822 ORCPT address. */
    RETVAL = rcpt_options(aTHX_ x->h, &o, wire, orcpt);
    if (RETVAL == LMTP_OK) {
        o.flags = force ? LMTP_FORCE : 0;
        RETVAL = lmtp_recipient(x->h, bytes_or_null(aTHX_ to, "address"), &o);
    }
  OUTPUT:
    RETVAL

void
xs_rcpt_check(x, wire, orcpt)
    Net_LMTP_XS x
    SV *wire
    SV *orcpt
  PREINIT:
    lmtp_rcpt_options o = LMTP_RCPT_OPTIONS_INIT;
    const char *missing = NULL;
    int st;
  PPCODE:
    st = rcpt_options(aTHX_ x->h, &o, wire, orcpt);
    if (st == LMTP_OK) st = lmtp_rcpt_options_check(x->h, &o, &missing);
    EXTEND(SP, 2);
    PUSHs(sv_2mortal(newSViv(st)));
    PUSHs(sv_2mortal(string_or_undef(aTHX_ missing)));

int
xs_reply_class(x)
    Net_LMTP_XS x
  CODE:
    RETVAL = lmtp_reply_class(x->h);
  OUTPUT:
    RETVAL

int
xs_simple(x, what, arg)
    Net_LMTP_XS x
    const char *what
    SV *arg
  PREINIT:
    const char *a;
  CODE:
    a = bytes_or_null(aTHX_ arg, what);
    if (strcmp(what, "RSET") == 0) RETVAL = lmtp_reset(x->h);
    else if (strcmp(what, "NOOP") == 0) RETVAL = lmtp_noop(x->h);
    else if (strcmp(what, "VRFY") == 0) RETVAL = lmtp_verify(x->h, a);
    else if (strcmp(what, "EXPN") == 0) RETVAL = lmtp_expand(x->h, a);
    else if (strcmp(what, "HELP") == 0) RETVAL = lmtp_help(x->h, a);
    else if (strcmp(what, "ETRN") == 0) RETVAL = lmtp_etrn(x->h, a);
    else if (strcmp(what, "QUIT") == 0) RETVAL = lmtp_quit(x->h);
    else if (strcmp(what, "DATA") == 0) RETVAL = lmtp_data_start(x->h);
    else if (strcmp(what, "END") == 0) RETVAL = lmtp_data_end(x->h);
    else if (strcmp(what, "RESPONSE") == 0) RETVAL = lmtp_response(x->h);
    else croak("Net::LMTP::XS::simple: unknown command %s", what);
  OUTPUT:
    RETVAL

int
xs_set_tls(x, flags, ca_file, ca_dir, cert_file, key_file, server_name, min_version)
    Net_LMTP_XS x
    unsigned flags
    SV *ca_file
    SV *ca_dir
    SV *cert_file
    SV *key_file
    SV *server_name
    int min_version
  PREINIT:
    lmtp_options o = LMTP_OPTIONS_INIT;
  CODE:
    o.flags = flags;
    tls_options(aTHX_ &o, ca_file, ca_dir, cert_file, key_file, server_name, min_version);
    RETVAL = lmtp_set_tls(x->h, &o);
  OUTPUT:
    RETVAL

int
xs_starttls(x)
    Net_LMTP_XS x
  CODE:
    RETVAL = lmtp_starttls(x->h);
  OUTPUT:
    RETVAL

int
xs_tls_active(x)
    Net_LMTP_XS x
  CODE:
    RETVAL = lmtp_tls_active(x->h);
  OUTPUT:
    RETVAL

int
xs_auth(x, user, password, mechanism, flags)
    Net_LMTP_XS x
    SV *user
    SV *password
    SV *mechanism
    unsigned flags
  CODE:
    RETVAL = lmtp_auth(x->h, bytes_or_null(aTHX_ user, "user"), bytes_or_null(aTHX_ password, "password"),
                       bytes_or_null(aTHX_ mechanism, "mechanism"), flags);
  OUTPUT:
    RETVAL

int
xs_bdat(x, data, last)
    Net_LMTP_XS x
    SV *data
    int last
  PREINIT:
    STRLEN len;
    const char *p;
  CODE:
    p = SvPVbyte(data, len);
    RETVAL = lmtp_bdat(x->h, p, len, last);
  OUTPUT:
    RETVAL

int
xs_data_write(x, data)
    Net_LMTP_XS x
    SV *data
  PREINIT:
    STRLEN len;
    const char *p;
  CODE:
    p = SvPVbyte(data, len);
    RETVAL = lmtp_data_write(x->h, p, len);
  OUTPUT:
    RETVAL

int
xs_command(x, line)
    Net_LMTP_XS x
    SV *line
  CODE:
    RETVAL = lmtp_command(x->h, bytes_or_null(aTHX_ line, "command"));
  OUTPUT:
    RETVAL

int
xs_deliver(x, from, rcpts, data)
    Net_LMTP_XS x
    SV *from
    AV *rcpts
    SV *data
  PREINIT:
    const char **list;
    SSize_t i, n;
    STRLEN len;
    const char *msg;
  CODE:
    n = av_len(rcpts) + 1;
    Newx(list, n > 0 ? n : 1, const char *);
    SAVEFREEPV(list);
    for (i = 0; i < n; i++) {
        SV **e = av_fetch(rcpts, i, 0);
        list[i] = e ? bytes_or_null(aTHX_ *e, "address") : NULL;
        if (!list[i]) list[i] = "";
    }
    msg = SvPVbyte(data, len);
    RETVAL = lmtp_deliver(x->h, bytes_or_null(aTHX_ from, "address"), list, (size_t)n, msg, len, NULL, NULL);
  OUTPUT:
    RETVAL

void
xs_results(x)
    Net_LMTP_XS x
  PREINIT:
    size_t i, n;
  PPCODE:
    n = lmtp_result_count(x->h);
    EXTEND(SP, (SSize_t)n);
    for (i = 0; i < n; i++) PUSHs(sv_2mortal(result_hash(aTHX_ x->h, i, 0)));

void
xs_deliver_batch(x, messages)
    Net_LMTP_XS x
    AV *messages
  PREINIT:
    lmtp_message_t *msgs;
    batch_out out;
    SSize_t i, n;
    int st;
  PPCODE:
    msgs = messages_from_av(aTHX_ messages, &n);
    out.h = x->h;
    out.out = (AV *)sv_2mortal((SV *)newAV());
    st = lmtp_deliver_batch(x->h, msgs, (size_t)n, batch_done, &out);
    EXTEND(SP, 1 + av_len(out.out) + 1);
    PUSHs(sv_2mortal(newSViv(st)));
    for (i = 0; i <= av_len(out.out); i++) PUSHs(sv_2mortal(newSVsv(*av_fetch(out.out, i, 0))));

SV *
xs_strerror(status)
    int status
  CODE:
    RETVAL = newSVpv(lmtp_strerror(status), 0);
  OUTPUT:
    RETVAL

SV *
xs_status_name(status)
    int status
  CODE:
    {
        const char *name = lmtp_status_name(status);
        RETVAL = name ? newSVpv(name, 0) : newSV(0);
    }
  OUTPUT:
    RETVAL

int
xs_status_reply_code(status)
    int status
  CODE:
    RETVAL = lmtp_status_reply_code(status);
  OUTPUT:
    RETVAL

unsigned
xs_default_timeout_ms()
  CODE:
    RETVAL = LMTP_DEFAULT_TIMEOUT_MS;
  OUTPUT:
    RETVAL

SV *
xs_library_version()
  CODE:
    RETVAL = newSVpv(lmtp_version(), 0);
  OUTPUT:
    RETVAL

MODULE = Net::LMTP  PACKAGE = Net::LMTP::XS::Pool  PREFIX = xs_pool_

void
xs_pool_create(class, timeout_ms, hello, local_address, local_port, flags, tls, starttls, auth, prefix, popts)
    const char *class
    unsigned timeout_ms
    SV *hello
    SV *local_address
    unsigned local_port
    unsigned flags
    AV *tls
    int starttls
    AV *auth
    SV *prefix
    HV *popts
  PREINIT:
    lmtp_options o = LMTP_OPTIONS_INIT;
    lmtp_pool_options po = LMTP_POOL_OPTIONS_INIT;
    net_lmtp_pool *x;
    SV *obj;
    int st;
  PPCODE:
    /* Each connection's options as Net::LMTP->new sets them (the same values, from
     * Net::LMTP::_connection_options): base and TLS fields, STARTTLS and AUTH; the pool's limits
     * from `popts`, keyed by lmtp_pool_options' field names. Returns (pool, status, error): the
     * pool is made even when the options are unusable, as lmtp_pool_new does. */
#define NET_LMTP_AV_ARG(av, i) (av_fetch((av), (i), 0) ? *av_fetch((av), (i), 0) : &PL_sv_undef)
#define NET_LMTP_POOL_FIELD(field)                                     \
    do {                                                               \
        SV **v = hv_fetchs(popts, #field, 0);                          \
        if (v && SvOK(*v)) po.field = (unsigned)SvUV(*v);              \
    } while (0)
    PERL_UNUSED_VAR(class);
    base_options(aTHX_ &o, timeout_ms, hello, local_address, local_port, flags);
    tls_options(aTHX_ &o, NET_LMTP_AV_ARG(tls, 0), NET_LMTP_AV_ARG(tls, 1), NET_LMTP_AV_ARG(tls, 2),
                NET_LMTP_AV_ARG(tls, 3), NET_LMTP_AV_ARG(tls, 4), (int)SvIV(NET_LMTP_AV_ARG(tls, 5)));
    o.starttls = starttls;
    o.auth_user = bytes_or_null(aTHX_ NET_LMTP_AV_ARG(auth, 0), "user");
    o.auth_password = bytes_or_null(aTHX_ NET_LMTP_AV_ARG(auth, 1), "password");
    o.auth_mechanism = bytes_or_null(aTHX_ NET_LMTP_AV_ARG(auth, 2), "mechanism");
    NET_LMTP_POOL_FIELD(connections);
    NET_LMTP_POOL_FIELD(retries);
    NET_LMTP_POOL_FIELD(retry_delay_ms);
    NET_LMTP_POOL_FIELD(retry_delay_max_ms);
    NET_LMTP_POOL_FIELD(max_messages_per_connection);
    NET_LMTP_POOL_FIELD(max_connection_age_ms);
    NET_LMTP_POOL_FIELD(idle_timeout_ms);
    NET_LMTP_POOL_FIELD(mailbox_concurrency);
    NET_LMTP_POOL_FIELD(flags);
#undef NET_LMTP_POOL_FIELD
#undef NET_LMTP_AV_ARG
    Newxz(x, 1, net_lmtp_pool);
    trace_init(aTHX_ &x->t, prefix);
    if (x->t.prefix) {
        o.trace = trace_to_stderr;
        o.trace_user = &x->t;
    }
    st = lmtp_pool_new(&x->p, &o, &po);
    if (!x->p) {
        trace_init(aTHX_ &x->t, NULL);
        Safefree(x);
        croak("Net::LMTP::Pool: out of memory");
    }
    obj = sv_newmortal();
    sv_setref_pv(obj, "Net::LMTP::XS::Pool", (void *)x);
    EXTEND(SP, 3);
    PUSHs(obj);
    PUSHs(sv_2mortal(newSViv(st)));
    PUSHs(sv_2mortal(newSVpv(lmtp_pool_errmsg(x->p), 0)));

void
xs_pool_DESTROY(x)
    Net_LMTP_XS_Pool x
  CODE:
    /* Nothing is pending between calls (deliver waits for every message). */
    lmtp_pool_free(x->p);
    trace_init(aTHX_ &x->t, NULL);
    Safefree(x);

int
xs_pool_add_server(x, host, port)
    Net_LMTP_XS_Pool x
    SV *host
    unsigned port
  CODE:
    RETVAL = lmtp_pool_add_server(x->p, bytes_or_null(aTHX_ host, "host"), port);
  OUTPUT:
    RETVAL

SV *
xs_pool_errmsg(x)
    Net_LMTP_XS_Pool x
  CODE:
    RETVAL = newSVpv(lmtp_pool_errmsg(x->p), 0);
  OUTPUT:
    RETVAL

void
xs_pool_deliver(x, messages)
    Net_LMTP_XS_Pool x
    AV *messages
  PREINIT:
    lmtp_message_t *msgs;
    AV *out;
    SSize_t i, n;
    int st;
  PPCODE:
    /* (status, then per message in the order given [status, error, [results...]]). The callback
     * only stores each entry at its message's place; what the caller sees is the .pm's. */
    msgs = messages_from_av(aTHX_ messages, &n);
    out = (AV *)sv_2mortal((SV *)newAV());
    if (n > 0) av_extend(out, n - 1);
    st = lmtp_pool_deliver(x->p, msgs, (size_t)n, pool_done, out);
    EXTEND(SP, 1 + n);
    PUSHs(sv_2mortal(newSViv(st)));
    if (st == LMTP_OK) {
        for (i = 0; i < n; i++) {
            SV **e = av_fetch(out, i, 0);
            PUSHs(e ? sv_2mortal(newSVsv(*e)) : &PL_sv_undef);
        }
    }
