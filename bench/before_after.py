#!/usr/bin/python3
"""Two builds of liblmtp side by side: the C benchmark client (bench-c, per message and with
lmtp_deliver_batch) of each against the same sink, runs alternated, medians and the ratio
(after / before, in messages per second: above 1 is faster).

    bench/before_after.py --before OLD_BUILD_DIR --after NEW_BUILD_DIR [--runs 5]

Each build dir holds bench/bench-c (and the after one bench/lmtp-sink). Scenarios as in
bench/README.md: (a) 2,000 messages of 2 KB, one recipient; (b) 200 messages, 20 recipients;
(d) (a) with the sink waiting 200 us before each flush of replies.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

from nonblocking import start_sink

SCENARIOS = [("a", 2000, 1, 0), ("b", 200, 20, 0), ("d", 2000, 1, 200)]


def run_client(argv):
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    if not p.stdout.readline().startswith("READY"):
        sys.exit("%s did not start" % argv[0])
    p.stdin.write("go\n")
    p.stdin.flush()
    out, _ = p.communicate(timeout=600)
    for line in out.splitlines():
        if line.startswith("RESULT "):
            kv = dict(f.split("=", 1) for f in line.split()[1:])
            if int(kv["errors"]) or int(kv["rcpt_failed"]):
                sys.exit("%s: %s" % (argv[0], line))
            return int(kv["messages"]) / (float(kv["end"]) - float(kv["start"]))
    sys.exit("%s: no result" % argv[0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True)
    ap.add_argument("--after", required=True)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    builds = {"before": os.path.join(a.before, "bench", "bench-c"), "after": os.path.join(a.after, "bench", "bench-c")}
    sink = os.path.join(a.after, "bench", "lmtp-sink")
    tmp = tempfile.mkdtemp()
    body = os.path.join(tmp, "body")
    subprocess.run([sink, "--make-body", "2048", body], check=True)
    rows = []
    try:
        for name, n, rcpts, rtt in SCENARIOS:
            p, port = start_sink(sink, rtt)
            to = []
            for i in range(rcpts):
                to += ["--to", "r%d@example.org" % i]
            rates = {}
            try:
                for _ in range(a.runs):
                    for mode in ("per message", "batch"):
                        for which, exe in builds.items():
                            argv = [exe, "--host", "127.0.0.1", "--port", str(port), "--messages", str(n),
                                    "--from", "s@example.org", "--body", body] + to
                            if mode == "batch":
                                argv.append("--batch")
                            rates.setdefault((mode, which), []).append(run_client(argv))
            finally:
                p.stdin.close()
                p.wait(timeout=30)
            for mode in ("per message", "batch"):
                b = statistics.median(rates[(mode, "before")])
                f = statistics.median(rates[(mode, "after")])
                rows.append((name, mode, b, f, f / b))
    finally:
        shutil.rmtree(tmp)
    print("median messages/s over %d alternated runs" % a.runs)
    print("%-3s %-12s %12s %12s %8s" % ("", "C client", "before", "after", "ratio"))
    for name, mode, b, f, r in rows:
        print("(%s) %-12s %12.0f %12.0f %8.2f" % (name, mode, b, f, r))


if __name__ == "__main__":
    main()
