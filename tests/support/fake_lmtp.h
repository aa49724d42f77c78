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
 *    extra_caps line, then STARTTLS (if tls_cert and TLS is not active yet), then
 *    "AUTH <auth_mechanisms>" (if set; with auth_after_tls only once TLS is active); the last line
 *    uses "250 ". LHLO without argument -> 501.
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
 *  - BDAT n [LAST] (only if CHUNKING is in extra_caps): exactly n bytes follow, always swallowed
 *    (no dot-unstuffing); a non-LAST chunk gets "250 2.0.0 n octets received"; LAST ends the message
 *    like the "." of DATA: ONE reply per accepted recipient, in RCPT order (RFC 2033 4.3).
 *    Without MAIL: one "503 5.5.1 MAIL needed first" per BDAT (LAST too). After MAIL but with no
 *    accepted recipient: a non-LAST chunk gets one "503 5.5.1 No valid recipients"; a LAST chunk
 *    (any n, 0 too) gets NO reply at all (zero recipients, zero replies; Dovecot does the same),
 *    and ends the transaction without storing a message.
 *    bdat_fail_chunk N: the Nth chunk of every transaction (1-based) is rejected and the message
 *    dropped: a non-LAST chunk gets one "552 5.3.4 Message too big for system", the transaction
 *    ends, and every later BDAT (already pipelined; LAST too) gets one "503 5.5.1 Transaction
 *    failed, chunk discarded" until MAIL, RSET or LHLO; a rejected LAST chunk gets one
 *    "552 5.3.4 <rcpt> Message too big for system" per accepted recipient.
 *  - RSET/NOOP/ETRN -> 250, VRFY -> 252, EXPN x -> multi-line 250 listing members, HELP ->
 *    multi-line 214, QUIT -> 221 then close, TURN -> 502, other verbs -> 500 5.5.2. STARTTLS and
 *    AUTH -> 502 unless configured (see "TLS" and "AUTH" below; advertising them in extra_caps alone
 *    still gives 502, for "advertised but broken" tests).
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
 *    bytes legitimately follow BDAT at once. STARTTLS also ends a group (RFC 3207), and so does AUTH
 *    and each 334 challenge, except AUTH PLAIN/EXTERNAL with an initial response (RFC 4954 4).
 *
 * Rules (`rules`): entries separated by ';', each  ADDRESS=RCPTCODE[:text][,DATACODE[:text]]
 *    e.g. "alice@x=250,250;full@x=250,552;temp@x=250,452;nosuch@x=550:No such user here"
 *  - ADDRESS is compared case-insensitively with what is inside <> in RCPT TO. Unlisted addresses,
 *    and a missing DATACODE, mean 250.
 *  - CODE*N (either code): that code the first N times this address gets that reply, counted over
 *    all connections of the server (fake_clear does not reset it), then 250 with its default text:
 *    "temp@x=250,451*2" answers 451 after the first two messages to temp@x, 250 after the third.
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
 *  - fault_replies n (with fault_on ".", n >= 0; default -1): the first n per-recipient replies
 *    are sent, then the fault output and action, e.g. FAKE_CLOSE after 2 of 4 replies: "the
 *    connection broke after 2 verdicts". With FAKE_RESET the RST waits (up to 1 s) until the
 *    client acknowledged those replies, so that they reach it before the reset.
 *  - fault_body_bytes n (with fault_on "."): the fault fires in the middle of the message instead,
 *    once n bytes of it have been read (DATA: the bytes after the 354 as sent, dot-stuffed; BDAT:
 *    chunk bytes, counted over all chunks of the transaction). It is checked per read, so it fires
 *    with the read that reaches n (up to 256 KiB later). No reply is due there and the message is not
 *    stored. It fires at most once per message; the end of the message is then not a trigger.
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
 *    STARTTLS answered with garbage: fault_on "STARTTLS", reply "xyz\r\n".  "220 ready" then the
 *    connection drops: fault_on "STARTTLS", reply "220 2.0.0 ready\r\n", FAKE_CLOSE (no handshake).
 *    With fault_keep on STARTTLS the fault bytes follow the real 220 in the same write and, with
 *    FAKE_CONTINUE, the handshake then happens as usual.  With implicit TLS the fault at connect
 *    ("") is sent inside TLS, after the handshake.  Close while the client is writing a big body:
 *    fault_on ".", fault_body_bytes 1 MiB, FAKE_CLOSE (or FAKE_RESET for an RST instead of a FIN).
 *
 * TLS (STARTTLS, RFC 3207; OpenSSL, TLS 1.2 minimum)
 *  - tls_cert (+ tls_key; NULL = the key is in tls_cert's file) turns it on: STARTTLS is advertised
 *    and "STARTTLS" -> "220 2.0.0 ready", then the server-side handshake. Everything the client sent
 *    after STARTTLS in plaintext is discarded (and is a lockstep violation). After the handshake the
 *    session is reset (RFC 3207 4.2): no greeting is sent, LHLO is needed again (MAIL before it ->
 *    "503 5.5.1 LHLO first"), an earlier AUTH is forgotten, STARTTLS is no longer advertised and
 *    another STARTTLS -> "503 5.5.1 TLS already active". STARTTLS with an argument -> 501, inside a
 *    transaction -> 503; before LHLO it is accepted. A failed handshake (bad client, client gone, 30 s without progress, or
 *    fake_stop) just ends the connection, quietly; it is counted by fake_tls_failures().
 *  - tls_implicit: TLS from the first byte (port-465 style); the greeting is sent inside TLS and
 *    STARTTLS is neither advertised nor accepted (503).
 *  - tls_require: before TLS every command but LHLO, NOOP, RSET, QUIT and STARTTLS (MAIL, AUTH,
 *    BDAT... included) -> "530 5.7.0 Must issue a STARTTLS command first".
 *  - tls_verify_client: 1 = ask for a client certificate (CAs from tls_client_ca); the handshake
 *    succeeds with or without one, and whether it verified against tls_client_ca is recorded;
 *    2 = require one that verifies, else the handshake fails.
 *  - tls_max_version: 0 = any (TLS 1.2 or 1.3), 12 = at most TLS 1.2, 13.
 *  - tls_fail_handshake (faults): 1 = after "220 ready" (or at connect with tls_implicit) read what
 *    the client sends first (its ClientHello), answer "garbage: this is not a TLS handshake\r\n",
 *    close; 2 = the same without the garbage: just close. Those raw bytes are not recorded.
 *  - tls_plain_after_220: raw bytes appended to "220 2.0.0 ready\r\n" in the same write, e.g.
 *    "250 2.0.0 injected\r\n"; the server then does the handshake as usual (if the client goes on).
 *    A correct client must not take them as said inside TLS (it should fail, RFC 3207 5).
 *  - The transcript records the client's bytes as the server reads them, i.e. DECRYPTED inside TLS
 *    (handshake records are not in it). fake_tls_offset() says where TLS began. fake_sent() records
 *    the server's plaintext likewise. fake_flushes() does not count handshake writes.
 *
 * AUTH (RFC 4954)
 *  - auth_mechanisms, e.g. "PLAIN LOGIN SCRAM-SHA-256 EXTERNAL" (spaces or commas; case-insensitive),
 *    advertised as "AUTH PLAIN LOGIN SCRAM-SHA-256 EXTERNAL" in that order; with auth_after_tls only
 *    once TLS is active (AUTH before it -> "538 5.7.11 Encryption required for requested
 *    authentication mechanism"). Other names may be advertised; using them -> 504.
 *  - One valid account: auth_user / auth_password (NULL user: none; every attempt fails except
 *    EXTERNAL). Compared byte for byte: no SASLprep.
 *  - Mechanisms: PLAIN (initial response or "334 " then the response; authzid empty or = user);
 *    LOGIN ("334 VXNlcm5hbWU6", "334 UGFzc3dvcmQ6"; an initial response is the user name);
 *    EXTERNAL (needs a verified client certificate, see tls_verify_client; the identity is its
 *    subject CN; authzid empty, "=", or that CN); SCRAM-SHA-256 (RFC 5802/7677, no channel binding:
 *    gs2 "n" or "y"; "p=" -> 535): server-first "r=<client nonce><server nonce>,s=<salt>,i=<n>",
 *    then after a valid proof "334 " base64("v=<ServerSignature>"), then the client's empty line ->
 *    235. scram_salt (base64; NULL = random per server), scram_iterations (0 = 4096) and
 *    scram_server_nonce (NULL = 24 random base64 characters per exchange) make it reproducible
 *    (RFC 7677's example: salt "W22ZaJ0SNY7soEsUEjb6gQ==", nonce "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
 *    user "user", password "pencil"); scram_bad_server_signature sends a wrong v=.
 *  - Replies: "235 2.7.0 Authentication successful"; wrong credentials (or bad SCRAM proof, nonce
 *    or channel-binding data) -> "535 5.7.8 Authentication credentials invalid"; "*" from the client
 *    -> "501 5.7.0 Authentication canceled"; bad base64 -> "501 5.5.2 Invalid base64 data"; a line
 *    over 12288 bytes -> "500 5.5.6 ..."; unknown or unadvertised mechanism -> "504 5.5.4
 *    Unrecognized authentication type"; AUTH before LHLO, after a successful AUTH, or inside a
 *    transaction -> 503 5.5.1. An initial response "=" is empty. 334 lines carry no enhanced code.
 *  - auth_fail_code (400..599): every AUTH with an advertised, implemented mechanism gets this code
 *    at once (no 334), with the RFC 4954 text: 432 4.7.12 A password transition is needed, 454
 *    4.7.0 Temporary authentication failure, 534 5.7.9 Authentication mechanism is too weak, 535,
 *    538 5.7.11 ..., others "4.7.0 Temporary authentication failure" / "5.7.0 Authentication failed".
 *  - auth_require: MAIL before a successful AUTH -> "530 5.7.0 Authentication required" (like Cyrus).
 *  - MAIL's AUTH= parameter is accepted when AUTH is advertised (now).
 *  - The transcript keeps exactly what the client sent, credentials included (fake_auth_* below tell
 *    the outcome). fault_on matches the AUTH command line, never the exchange's response lines.
 *
 * Script mode (an exact, scripted peer)
 *  - script / script_len: an array of steps; every connection then plays them in order and does
 *    nothing else (no greeting, no parser: the bytes are the test). Each step:
 *      expect    the bytes the client must send next, exactly (NULL or "" = none: e.g. step 0,
 *                whose reply is the greeting). They are compared as they arrive: the first byte
 *                that differs is a departure at once; the step waits (without a limit) until all
 *                of them came, the client closes, or fake_stop.
 *      reply     then written back, in one write (one flush; NULL or "" = nothing);
 *                byte_delay_ms > 0: one byte at a time, this long between bytes.
 *      delay_ms  waited before the reply (the client's bytes are read and recorded meanwhile).
 *      allow_early  0 (default): lockstep check: nothing more may come before the reply: bytes
 *                that came with `expect` in the same read, or within 5 ms (or delay_ms if longer)
 *                after it, are a departure (and a lockstep violation); the script still goes on,
 *                those bytes count towards the next step. 1: no check (a pipelined group sent in
 *                several writes, a large body).
 *      then      after the reply: FAKE_CONTINUE (the next step); only the LAST step may say
 *                FAKE_CLOSE (close the socket at once: the client's later writes meet a closed
 *                socket), FAKE_RESET (close with an RST), FAKE_HANG (never answer again, record
 *                until the client closes), FAKE_STOP_READING (never read again, until the client
 *                closes or fake_stop) or FAKE_DRIP (send the reply again every delay_ms, forever:
 *                a reply that never ends; needs a reply and delay_ms > 0).
 *    After the last step (FAKE_CONTINUE) or a departure the server only records what the client
 *    sends, until it closes. Lengths: expect_len / reply_len, 0 = strlen.
 *  - fake_script_error() gives the first departure over all connections ("" if none) with where
 *    and what, e.g.  connection 0, script[3] of 7: expected "RCPT TO:<a@x>\r\n" but received
 *    "RCPT TO:<b@x>\r\n"  (a long `expect` shows the offset of the first difference and the
 *    bytes around it); also "the client closed the connection; expected ...", "the client sent
 *    ... before it had the reply to ... (lockstep)". fake_script_done() counts the connections
 *    that reached the last step's reply. A client that leaves before the end of the script is a
 *    departure, so: close the client, fake_wait_idle(), then check fake_script_error().
 *  - The transcript, fake_sent(), fake_flushes() (one per step reply; per repeat with FAKE_DRIP),
 *    fake_lockstep_violations(), fake_connections() and fake_wait_idle() work as usual. What the
 *    server says comes only from the script: with a script, fake_start() refuses greeting, rules,
 *    size, extra_caps, the fault options, reply_delay_ms, byte_delay_ms, TLS, AUTH and
 *    bdat_fail_chunk. The listening options (family, port, unix_path, rcvbuf) and record_limit apply.
 *  - fake_socketpair(f) hands the caller one end of a new connection without any listening
 *    socket (an AF_UNIX socketpair served like an accepted connection), in script mode or not.
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
#define FAKE_DRIP 5 /* script steps only (see "Script mode") */

/* One step of a script, see "Script mode" above. Zero-initialised = expect nothing, reply nothing,
   FAKE_CONTINUE, no delay, lockstep check on. */
typedef struct fake_step {
    const char *expect;  /* bytes the client must send next (NULL: none) */
    size_t expect_len;   /* 0: strlen(expect) */
    const char *reply;   /* bytes written back (NULL: none) */
    size_t reply_len;    /* 0: strlen(reply) */
    int then;            /* FAKE_CONTINUE; on the last step also FAKE_CLOSE, FAKE_RESET, FAKE_HANG,
                            FAKE_STOP_READING or FAKE_DRIP */
    int delay_ms;        /* wait before the reply (FAKE_DRIP: between repeats) */
    int byte_delay_ms;   /* > 0: write the reply one byte at a time, this long between bytes */
    int allow_early;     /* 1: no lockstep check (more may come before the reply) */
} fake_step;

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
    unsigned long fault_body_bytes; /* with fault_on ".": fire inside the message, see above (0 = at its end) */
    long fault_replies;     /* with fault_on ".": send the first N final replies, then the fault
                               (default -1: none), see above */

    /* Timing. */
    int reply_delay_ms;     /* wait this long before each flush (greeting included) */
    int byte_delay_ms;      /* if > 0: write replies one byte at a time, this long between bytes */

    /* Memory: at most this many bytes are kept of the transcript and of each message; more is
       received and counted as usual but not stored (0 = keep everything, the default). */
    size_t record_limit;

    /* TLS, see "TLS" above. All off by default. */
    const char *tls_cert;      /* PEM certificate (chain) file: enables STARTTLS */
    const char *tls_key;       /* PEM private key file (NULL: in tls_cert) */
    int tls_implicit;          /* TLS from the first byte */
    int tls_require;           /* 530 before STARTTLS */
    int tls_verify_client;     /* 0 no, 1 ask (and record), 2 require a valid client certificate */
    const char *tls_client_ca; /* PEM CA file for client certificates (needed by tls_verify_client) */
    int tls_max_version;       /* 0 any, 12 = TLS 1.2 at most, 13 */
    int tls_fail_handshake;    /* 0 no, 1 garbage then close, 2 close, instead of the handshake */
    const char *tls_plain_after_220; /* raw bytes sent right after "220 2.0.0 ready\r\n" */

    /* AUTH, see "AUTH" above. */
    const char *auth_mechanisms;  /* e.g. "PLAIN LOGIN SCRAM-SHA-256 EXTERNAL"; NULL: no AUTH (502) */
    int auth_after_tls;           /* advertise/accept AUTH only inside TLS */
    int auth_require;             /* 530 5.7.0 for MAIL before a successful AUTH */
    const char *auth_user;        /* the one valid account (NULL: none) */
    const char *auth_password;
    int auth_fail_code;           /* if nonzero: every AUTH gets this code (e.g. 454, 534, 538) */
    const char *scram_salt;       /* base64; NULL: random */
    unsigned scram_iterations;    /* 0: 4096 */
    const char *scram_server_nonce; /* NULL: random per exchange; no ',' */
    int scram_bad_server_signature; /* send a wrong v= */

    /* CHUNKING: reject the Nth BDAT chunk of each transaction (1-based, 0 = never), see above. */
    unsigned long bdat_fail_chunk;

    /* Script mode, see above: script_len steps (copied by fake_start); NULL / 0 = off. */
    const fake_step *script;
    size_t script_len;
} fake_config;

/* Fill *c with the defaults given above. Always call it first, then set what you need. */
void fake_config_init(fake_config *c);

/* Start a server; it is listening when this returns. NULL on failure (bad rules, bad fault_action,
   bind error, unreadable certificate or key...): fake_start_error() then says why. c may be NULL
   (all defaults). */
fake_lmtp *fake_start(const fake_config *c);
/* Why the last fake_start() or fake_make_test_certs() of the calling thread failed ("" if it did
   not). */
const char *fake_start_error(void);

/* Write the test certificates into dir (created if missing; files replaced atomically), as the
   program make-test-certs does. PEM, EC P-256 keys, SHA-256 signatures, fresh keys every call:
     ca.pem ca.key                 the test CA (CN "liblmtp test CA")
     server.pem server.key         CN=localhost, SAN DNS:localhost IP:127.0.0.1 IP:::1, by the CA,
                                   valid from an hour ago for 10 years, EKU serverAuth
     wrong-name.pem wrong-name.key SAN DNS:other.example only, by the CA
     expired.pem expired.key       localhost SANs, by the CA, notAfter yesterday
     self-signed.pem .key          localhost SANs, self-signed (not from the CA)
     other-ca.pem other-ca.key     an unrelated CA
     client.pem client.key         CN=client.example, EKU clientAuth, by the CA
   0 on success, -1 on failure (fake_start_error() says why). Takes ~10 ms. */
int fake_make_test_certs(const char *dir);

/* A new connection to f without a listening socket: one end of an AF_UNIX socketpair is served
   like an accepted connection (counted by fake_connections; fake_peer_address gives ""), the other
   end is returned to the caller, who closes it (blocking, close-on-exec). -1 (errno set) on
   failure. */
int fake_socketpair(fake_lmtp *f);

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
/* The client's IP address of connection i (0-based, in accept order): "127.0.0.1", "::1"; "" for
   a unix socket or fake_socketpair(); NULL if i is out of range. Valid until the next call of
   this function, fake_clear() or fake_stop(). */
const char *fake_peer_address(fake_lmtp *f, size_t i);

/* Script mode: the first departure from the script over all connections, "" if none (see
   "Script mode"); connections that reached the last step. The string is valid until the next
   call of this function, fake_clear() or fake_stop(). */
const char *fake_script_error(fake_lmtp *f);
size_t fake_script_done(fake_lmtp *f);

/* Per message i (as fake_message): 1 if it was received inside TLS, else 0 (also out of range). */
int fake_message_tls(fake_lmtp *f, size_t i);
/* Per message i: the user authenticated on its connection when it was received, or NULL (none,
   or i out of range). Valid until fake_clear() or fake_stop(). */
const char *fake_message_auth_user(fake_lmtp *f, size_t i);

/* TLS: handshakes completed, and failed (including tls_fail_handshake and clients that gave up). */
size_t fake_tls_sessions(fake_lmtp *f);
size_t fake_tls_failures(fake_lmtp *f);
/* Transcript offset at which the first TLS session began (what follows in the transcript was sent
   inside TLS, when there is one connection), or -1 if none. fake_tls_offset_at: of session i. */
long fake_tls_offset(fake_lmtp *f);
long fake_tls_offset_at(fake_lmtp *f, size_t i);
/* Of the LAST TLS session: its protocol ("TLSv1.3", NULL if none); the subject CN of the client
   certificate it presented (NULL if none); whether that certificate verified against tls_client_ca
   (1) or not (0; also when there was none). Strings valid until the next call of the same function,
   fake_clear() or fake_stop(). */
const char *fake_tls_version(fake_lmtp *f);
const char *fake_tls_client_cn(fake_lmtp *f);
int fake_tls_client_verified(fake_lmtp *f);

/* AUTH: successful exchanges; failed ones (every AUTH answered with 4xx/5xx, cancels included,
   but not the 530 of tls_require); the mechanism and user of the LAST successful one (NULL if none).
   Strings valid until the next call of the same function, fake_clear() or fake_stop(). */
size_t fake_auth_successes(fake_lmtp *f);
size_t fake_auth_failures(fake_lmtp *f);
const char *fake_auth_mechanism(fake_lmtp *f);
const char *fake_auth_user(fake_lmtp *f);

/* Wait until at least min_connections connections were accepted and all of them have ended
   (the client closed, or the server closed after QUIT or a fault). Use it before checking the
   transcript of a client that may not have waited for the server. Returns 1 when that holds,
   0 after timeout_ms (< 0: wait forever). */
int fake_wait_idle(fake_lmtp *f, size_t min_connections, int timeout_ms);

/* Forget the transcript, the sent bytes, the messages and the counters, TLS and AUTH ones included
   (not the fault counters), the peer addresses and the script's error and done count. */
void fake_clear(fake_lmtp *f);

/* Stop: closes the listener and every connection (even hanging ones), joins all threads, removes the
   unix socket file, frees f. Returns promptly. f may be NULL. */
void fake_stop(fake_lmtp *f);

#ifdef __cplusplus
}
#endif

#endif /* FAKE_LMTP_H */
