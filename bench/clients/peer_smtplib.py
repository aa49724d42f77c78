"""bench-smtplib: the peer client over CPython's smtplib.LMTP (stdlib).

smtplib.LMTP reads only ONE reply after the final dot, and sendmail() sends
RSET as soon as that first reply is not 250, which the server then answers
with the next recipient's verdict. To stay correct this peer does what
sendmail() does (MAIL with SIZE, one RCPT at a time, DATA) with the lower
level calls, then reads the other accepted recipients' replies itself with
getreply(). smtplib has no pipelining and no BDAT. Arguments and output: args.h
(--stream: smtplib needs the message in memory, read from the file each time;
--batch is unsupported).
"""
import smtplib
import sys

from bench_common import load_body, parse_args, ready, result, unsupported


def deliver(conn, sender, rcpts, msg):
    """One transaction; returns the number of recipients that got the message."""
    opts = ["size=%d" % len(msg)] if conn.has_extn("size") else []
    code, resp = conn.mail(sender, opts)
    if code != 250:
        conn.rset()
        return 0
    accepted = 0
    for r in rcpts:
        code, resp = conn.rcpt(r)
        if code in (250, 251):
            accepted += 1
    if not accepted:
        conn.rset()
        return 0
    code, resp = conn.data(msg)       # the first accepted recipient's final reply
    ok = 1 if code == 250 else 0
    for _ in range(accepted - 1):     # help: the others, which smtplib never reads
        code, resp = conn.getreply()
        if code == 250:
            ok += 1
    return ok


def main():
    a = parse_args(__doc__)
    if a.batch:
        unsupported("smtplib has no batch call")
    data = load_body(a)
    start = ready()
    ok = failed = errors = sent = 0
    conn = None
    while sent < a.messages:
        sent += 1
        try:
            if conn is None:
                conn = smtplib.LMTP(a.host, a.port, local_hostname="bench.example.org")
                conn.ehlo_or_helo_if_needed()
            if a.stream:
                with open(a.body, "rb") as f:
                    msg = f.read()
            else:
                msg = data
            good = deliver(conn, a.sender, a.to, msg)
            ok += good
            failed += len(a.to) - good
        except (smtplib.SMTPException, OSError) as e:
            print("bench-smtplib: %s" % e, file=sys.stderr)
            errors += 1
            failed += len(a.to)
            conn = None
            continue
        if a.reconnect:
            conn.quit()
            conn = None
    if conn is not None:
        conn.quit()
    result(start, sent, ok, failed, errors)


main()
