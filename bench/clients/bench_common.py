"""The arguments and output every benchmark client shares (see args.h)."""
import argparse
import sys
import time


def parse_args(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--messages", type=int, default=1)
    p.add_argument("--to", action="append", required=True)
    p.add_argument("--from", dest="sender", default="bench@example.org")
    p.add_argument("--body", required=True)
    p.add_argument("--reconnect", action="store_true")
    p.add_argument("--stream", action="store_true")
    p.add_argument("--batch", action="store_true")
    # Ours only: the message in memory whatever the scenario says (--memory), as a str (--as-str).
    p.add_argument("--memory", action="store_true")
    p.add_argument("--as-str", action="store_true")
    a = p.parse_args()
    if a.memory or a.as_str:
        a.stream = False
    return a


def load_body(a):
    """The message in memory (bytes, or with --as-str an ASCII str), or None with --stream (read from
    the file for each message)."""
    if a.stream:
        return None
    if getattr(a, "as_str", False):  # decoded as it is read: no bytes copy of it on the side
        with open(a.body, encoding="ascii", newline="") as f:
            return f.read()
    with open(a.body, "rb") as f:
        return f.read()


def ready():
    """READY, then wait for the go line; returns the start time. The peak resident size counts
    from here ("5" in /proc/self/clear_refs resets it): loading the message is not delivering it."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        pass
    print("READY", flush=True)
    if not sys.stdin.readline():
        sys.exit(2)
    return time.time()


def result(start, messages, ok, failed, errors):
    print("RESULT start=%.6f end=%.6f messages=%d rcpt_ok=%d rcpt_failed=%d errors=%d"
          % (start, time.time(), messages, ok, failed, errors), flush=True)


def unsupported(why):
    print("UNSUPPORTED " + why, flush=True)
    sys.exit(3)
