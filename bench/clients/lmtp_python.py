"""bench-python: the benchmark client over the lmtp package (our Python face).

Per message: LMTP.deliver(), the body as bytes, or (--stream) the open file,
which the library reads in bounded memory; --as-str: the body as a str (what
msg.as_string() gives smtplib users), in memory; --memory: bytes in memory even
where the scenario streams. --batch: LMTP.deliver_many() over all the messages
of a connection, when the package has it. Every recipient's verdict is
counted. Arguments and output: args.h.
"""
import sys

import lmtp

from bench_common import load_body, parse_args, ready, result, unsupported


def main():
    a = parse_args(__doc__)
    if a.batch and not hasattr(lmtp.LMTP, "deliver_many"):
        unsupported("this lmtp package has no LMTP.deliver_many")
    data = load_body(a)
    start = ready()
    ok = failed = errors = sent = 0
    conn = None

    def tally(results):
        nonlocal ok, failed
        good = sum(1 for r in results if r.ok)
        ok += good
        failed += len(a.to) - good

    while sent < a.messages:
        count = 1 if a.reconnect else a.messages - sent
        done = 0  # messages of this connection with their verdicts counted
        try:
            if conn is None:
                conn = lmtp.LMTP(a.host, a.port, local_hostname="bench.example.org", timeout=60)
            if a.batch:
                def messages():
                    for _ in range(count):
                        yield (a.sender, a.to, open(a.body, "rb") if a.stream else data)
                for results in conn.deliver_many(messages()):
                    tally(results)
                    done += 1
            else:
                for _ in range(count):
                    if a.stream:
                        with open(a.body, "rb") as f:
                            tally(conn.deliver(a.sender, a.to, f))
                    else:
                        tally(conn.deliver(a.sender, a.to, data))
                    done += 1
            if a.reconnect:
                conn.quit()
                conn = None
        except Exception as e:  # the session broke: the message under way failed
            print("bench-python: %s" % e, file=sys.stderr)
            conn = None
            count = done + 1 if not a.batch else count
        missing = count - done
        errors += missing
        failed += missing * len(a.to)
        sent += count
    if conn is not None:
        conn.quit()
    result(start, sent, ok, failed, errors)


main()
