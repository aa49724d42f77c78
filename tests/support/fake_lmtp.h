/*
 * fake_lmtp.h - a scriptable, fault-injecting LMTP server (RFC 2033) for tests.
 *
 * The server runs on background threads inside the test process: fake_start() returns once it is
 * listening; each accepted connection is served by its own thread; fake_stop() ends everything.
 * It shares no code with liblmtp (it has its own line reader and its own dot-unstuffing), so that
 * a bug in the client's parser or encoder is not hidden by the same bug in the server.
 *
 * Rules of this header
 *  - Valid C99. Every handle is opaque. Strings in fake_config are copied by fake_start(); the
 *    caller may free them as soon as it returns. A NULL string means "the default".
 *  - Accessors (fake_transcript, fake_sent, fake_message, counters) are thread-safe: they take a
 *    snapshot under the server's lock while connections are being served.
 *  - Pointers returned by fake_transcript() / fake_sent() point into a per-function buffer owned by
 *    the handle: valid until the next call of the SAME function on the same handle, fake_clear()
 *    or fake_stop(). Pointers from fake_message() stay valid until fake_clear() or fake_stop().
 *    Returned byte strings are also NUL-terminated, for convenience (they may contain NULs).
 *  - The server never installs signal handlers and never prints; writes use MSG_NOSIGNAL.
 *  - Linux (uses poll() with POLLRDHUP).
 *
 * Default behaviour (a well-behaved LMTP server)
 *  - On connect: greeting "220 fake.example LMTP ready\r\n".
 *  - LHLO x -> "250-fake.example", then one line per capability: PIPELINING (if pipelining),
 *    ENHANCEDSTATUSCODES (if enhanced), 8BITMIME (if eightbitmime), "SIZE n" (if size), then each
 *    extra_caps line; the last line uses "250 ". LHLO without argument -> 501.
 *    EHLO/HELO -> "500 5.5.1 Use LHLO" (like Dovecot).
 *  - MAIL FROM:<path> [params] -> 250 2.1.0 (503 before LHLO or inside a transaction, 501 on bad
 *    syntax: "FROM:<" is required, no space). SEND/SOML/SAML FROM behave like MAIL.
 *    RCPT TO:<addr> [params] -> as decided by `rules` (503 without MAIL, 501 on bad syntax).
 *    Parameters are accepted only if the matching extension is advertised: SIZE= (SIZE),
 *    BODY=7BIT|8BITMIME (8BITMIME), BODY=BINARYMIME (BINARYMIME), RET=/ENVID=/NOTIFY=/ORCPT= (DSN),
 *    SMTPUTF8 (SMTPUTF8), AUTH= (AUTH); others -> 555 5.5.4. MAIL SIZE=n over `size` -> 552 5.3.4.
 *    A non-ASCII address without SMTPUTF8 on MAIL -> 553 5.6.7.
 *  - DATA -> 503 5.5.1 if no recipient was accepted, else "354 go ahead"; the dot-stuffed body is
 *    read up to CRLF "." CRLF (or "." CRLF at the very start); a line start is only after CRLF.
 *    The decoded message (dots unstuffed, the CRLF before the final "." kept) is stored, then ONE
 *    reply per accepted recipient is sent, in RCPT order, duplicates included, decided by `rules`.
 *    A message larger than `size` (if set) gets "552 5.3.4" for every recipient.
 *  - BDAT n [LAST] (only if CHUNKING is in extra_caps): exactly n bytes follow; a non-LAST chunk
 *    gets "250 2.0.0 n octets received"; LAST ends the message like the "." of DATA. BDAT without
 *    MAIL/RCPT still swallows the n bytes, then replies 503.
 *  - RSET/NOOP/ETRN -> 250, VRFY -> 252, EXPN x -> multi-line 250 listing members, HELP ->
 *    multi-line 214, QUIT -> 221 then close, STARTTLS/AUTH/TURN -> 502, other verbs -> 500 5.5.2.
 *    Verbs are case-insensitive. A line longer than 1000 bytes (CRLF included) -> 500 5.5.2.
 *  - Bare LF ends a command line too (the transcript shows what was really sent).
 *  - Enhanced status codes x.y.z appear in replies only if `enhanced` (not in 354, LHLO, greeting).
 *
 * Batching, flushes and lockstep
 *  - Like a real pipelining server, a connection reads everything available (up to 256 KiB), handles
 *    every complete command in it, and writes all the replies at once (one "flush") when the input
 *    is drained. fake_flushes() counts these writes (the greeting is one): the round trips seen.
 *  - A lockstep violation is counted when the client sent bytes before it could have seen a reply
 *    it had to wait for: with pipelining off, any reply; with pipelining on, the greeting, the LHLO
 *    reply and the reply to DATA (RFC 2920: these end a command group; the body must wait for 354).
 *    Detected when the bytes come in the same read as the command, or arrive during reply_delay_ms;
 *    so a test that wants to catch a racy client reliably sets reply_delay_ms (e.g. 50). The server
 *    ACKs at once (TCP_QUICKACK) so that a client's Nagle does not hide its early bytes. BDAT chunk
 *    bytes legitimately follow BDAT at once.
 *
 * Rules (`rules`): entries separated by ';', each  ADDRESS=RCPTCODE[:text][,DATACODE[:text]]
 *    e.g. "alice@x=250,250;full@x=250,552;temp@x=250,452;nosuch@x=550:No such user here"
 *  - ADDRESS is compared case-insensitively with what is inside <> in RCPT TO. Unlisted addresses,
 *    and a missing DATACODE, mean 250.
 *  - Default texts include the address, like Dovecot: "250 2.1.5 <alice@x> OK",
 *    "550 5.1.1 <nosuch@x> User doesn't exist", "250 2.0.0 <alice@x> Saved",
 *    "552 5.2.2 <full@x> Quota exceeded", "452 4.2.2 <temp@x> Mailbox is full, try again later".
 *  - A custom text replaces the default text (address included); '|' in it starts a new line of
 *    a multi-line reply ("250,451:first|second" -> "451-4.3.0 first\r\n451 4.3.0 second\r\n").
 *    The enhanced code derived from the reply code is put in front of each line when `enhanced`
 *    is on, unless the text already starts with one ("550:5.7.1 denied"). The RCPT text ends at
 *    ',' and the DATA text at ';'.
 *
 * Fault injection (one fault per server)
 *  - Trigger: fault_on is matched case-insensitively against the start of each command line;
 *    ""  = at connect, instead of the greeting;
 *    "." = at the end of a message (DATA's final "." or BDAT LAST), instead of the per-recipient
 *          replies (the message is still stored and the transaction ends).
 *    The first fault_skip matches (over all connections) are let through; then the fault fires
 *    fault_times times (0 = every time).
 *  - Output: fault_reply once, then fault_fill repeated fault_repeat times (fault_repeat < 0:
 *    forever, until the client disconnects or fake_stop), then fault_tail once. All raw bytes, each
 *    may be NULL. E.g. a 1 MiB reply line: reply "250 ", fill "x", repeat 1<<20, tail "\r\n";
 *    an endless multi-line reply: fill "250-more\r\n", repeat -1.
 *  - By default the output REPLACES the normal reply and the command is not executed (the state
 *    does not change; except "." as said above; BDAT still swallows its chunk). With fault_keep the
 *    command is executed normally and the fault output is sent AFTER its normal reply (extra replies).
 *  - Then fault_action (the pending replies, fault output included, are flushed first):
 *      FAKE_CONTINUE      go on serving;
 *      FAKE_CLOSE         close the connection;
 *      FAKE_HANG          never answer again, but keep reading (transcript) until the client closes;
 *      FAKE_RESET         close with SO_LINGER 0 (the client gets an RST; whether the bytes just
 *                         written reach it first is up to the kernel);
 *      FAKE_STOP_READING  never read again (the client's writes eventually block), until the client
 *                         closes or fake_stop.
 *  - Examples: banner never sent: fault_on "", reply NULL, FAKE_HANG.  Banner 421: fault_on "",
 *    reply "421 4.3.2 go away\r\n", FAKE_CLOSE.  Fewer replies after DATA: fault_on ".", reply with
 *    only some replies, FAKE_HANG.  Close mid-transaction: fault_on "DATA", FAKE_CLOSE.
 */
#ifndef FAKE_LMTP_H
#define FAKE_LMTP_H

#include <stddef.h>
#include <sys/socket.h> /* AF_INET, AF_INET6, AF_UNIX */

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fake_lmtp fake_lmtp;

/* fault_action values */
#define FAKE_CONTINUE 0
#define FAKE_CLOSE 1
#define FAKE_HANG 2
#define FAKE_RESET 3
#define FAKE_STOP_READING 4

typedef struct fake_config {
    /* Where to listen. */
    int family;             /* AF_INET (default: 127.0.0.1), AF_INET6 (::1) or AF_UNIX */
    const char *unix_path;  /* AF_UNIX: socket path (NULL: a fresh path under $TMPDIR or /tmp);
                               an existing socket file there is replaced; removed by fake_stop */
    unsigned port;          /* TCP port, 0 (default) = any free port, see fake_port() */
    int rcvbuf;             /* if > 0: SO_RCVBUF of the connections (to make client writes block) */

    /* What the server says. */
    const char *hostname;   /* NULL: "fake.example" (first line of the LHLO reply) */
    const char *greeting;   /* raw greeting bytes; NULL: "220 <hostname> LMTP ready\r\n" */
    int pipelining;         /* advertise PIPELINING (default 1); see "lockstep" above */
    int enhanced;           /* advertise ENHANCEDSTATUSCODES, x.y.z in replies (default 1) */
    int eightbitmime;       /* advertise 8BITMIME (default 1) */
    unsigned long size;     /* if nonzero: advertise "SIZE n" and enforce it (default 0) */
    const char *extra_caps; /* more capability lines separated by '\n', e.g. "DSN\nCHUNKING" */
    const char *rules;      /* per-recipient replies, see "Rules" above (NULL: all 250) */

    /* Fault injection, see above. fault_on NULL (default) = no fault. */
    const char *fault_on;
    const char *fault_reply;
    const char *fault_fill;
    long fault_repeat;      /* times fault_fill is sent; < 0 = forever (default 0) */
    const char *fault_tail;
    int fault_action;       /* FAKE_CONTINUE (default) ... FAKE_STOP_READING */
    int fault_keep;         /* 1: execute the command and send the fault output after its reply */
    unsigned long fault_skip;  /* let this many matches through first (default 0) */
    unsigned long fault_times; /* fire this many times, 0 = always (default 0) */

    /* Timing. */
    int reply_delay_ms;     /* wait this long before each flush (greeting included) */
    int byte_delay_ms;      /* if > 0: write replies one byte at a time, this long between bytes */

    /* Memory: at most this many bytes are kept of the transcript and of each message; more is
       received and counted as usual but not stored (0 = keep everything, the default). */
    size_t record_limit;
} fake_config;

/* Fill *c with the defaults given above. Always call it first, then set what you need. */
void fake_config_init(fake_config *c);

/* Start a server; it is listening when this returns. NULL on failure (bad rules, bad fault_action,
   bind error...): fake_start_error() then says why. c may be NULL (all defaults). */
fake_lmtp *fake_start(const fake_config *c);
/* Why the last fake_start() of the calling thread failed ("" if it did not). */
const char *fake_start_error(void);

unsigned fake_port(const fake_lmtp *f);     /* TCP port (0 for AF_UNIX) */
const char *fake_host(const fake_lmtp *f);  /* "127.0.0.1", "::1" or the unix socket path */

/* Everything the clients sent, byte for byte, over all connections so far (concurrent connections
   are interleaved read by read). *len (if len != NULL) gets the length. */
const char *fake_transcript(fake_lmtp *f, size_t *len);
/* Everything the server wrote, over all connections (only the first 1 MiB of each fault output). */
const char *fake_sent(fake_lmtp *f, size_t *len);

size_t fake_message_count(fake_lmtp *f);  /* messages completed (final "." or BDAT LAST seen) */
/* Message i (0-based, in completion order), decoded: dots unstuffed, BDAT chunks joined. NULL if
   i is out of range. */
const char *fake_message(fake_lmtp *f, size_t i, size_t *len);

size_t fake_flushes(fake_lmtp *f);          /* writes of replies so far = round trips seen */
int fake_lockstep_violations(fake_lmtp *f); /* see "lockstep" above */
size_t fake_connections(fake_lmtp *f);      /* connections accepted so far */

/* Wait until at least min_connections connections were accepted and all of them have ended
   (the client closed, or the server closed after QUIT or a fault). Use it before checking the
   transcript of a client that may not have waited for the server. Returns 1 when that holds,
   0 after timeout_ms (< 0: wait forever). */
int fake_wait_idle(fake_lmtp *f, size_t min_connections, int timeout_ms);

/* Forget the transcript, the sent bytes, the messages and the counters (not the fault counters). */
void fake_clear(fake_lmtp *f);

/* Stop: closes the listener and every connection (even hanging ones), joins all threads, removes the
   unix socket file, frees f. Returns promptly. f may be NULL. */
void fake_stop(fake_lmtp *f);

#ifdef __cplusplus
}
#endif

#endif /* FAKE_LMTP_H */
