#!/usr/bin/python3
"""Two builds of liblmtp side by side: the benchmark clients of each against the same sink, runs
alternated, medians and the ratio (after / before, in messages per second: above 1 is faster).

    bench/before_after.py --before OLD_BUILD_DIR --after NEW_BUILD_DIR [--runs 5] [--pin]
                          [--faces] [--only a,b,d]

Each build dir holds bench/bench-c (and the after one bench/lmtp-sink). The C client per message
(lmtp_deliver) and with lmtp_deliver_batch; with --faces also the Perl and Python clients of
bench/clients (Net::LMTP->deliver and deliver_many, lmtp.LMTP.deliver and deliver_many), each
build's own Net::LMTP (BUILD/bindings/perl, by -Mblib) and lmtp package (BUILD/bindings/python):
configure both with the faces on. Scenarios as in bench/README.md: (a) 2,000 messages of 2 KB,
one recipient; (b) 200 messages, 20 recipients; (d) (a) with the sink waiting 200 us before
each flush of replies.

Which build goes first changes from run to run. Besides the ratio of the medians, "paired" is
the median of each run's own ratio (the two clients of a run meet the same machine: less
noise). --pin puts the clients on CPU 0 and the sink on CPU 1 (taskset): on a small virtual
machine where they wander between two CPUs the spread of a run is several percent. The last
columns are the client's CPU time per message (user and system, its start-up included), and
their ratio after / before (below 1: less work).
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

from nonblocking import start_sink

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENTS = os.path.join(HERE, "clients")
SCENARIOS = [("a", 2000, 1, 0), ("b", 200, 20, 0), ("d", 2000, 1, 200)]


def run_client(argv, env):
    """Messages per second of one client run, and the client's CPU seconds (user and system,
    start-up included) per message."""
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    if not p.stdout.readline().startswith("READY"):
        sys.exit("%s did not start" % " ".join(argv))
    p.stdin.write("go\n")
    p.stdin.close()
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    for line in out.splitlines():
        if line.startswith("RESULT "):
            kv = dict(f.split("=", 1) for f in line.split()[1:])
            if int(kv["errors"]) or int(kv["rcpt_failed"]) or p.returncode:
                sys.exit("%s: %s" % (" ".join(argv), line))
            n = int(kv["messages"])
            return n / (float(kv["end"]) - float(kv["start"])), (usage.ru_utime + usage.ru_stime) / n
    sys.exit("%s: no result" % " ".join(argv))


def clients(build, faces):
    """(row, argv, extra environment) of each client of one build."""
    c = os.path.join(build, "bench", "bench-c")
    rows = [("C", [c], {}), ("C batch", [c, "--batch"], {})]
    if faces:
        perl = ["perl", "-Mblib=" + os.path.join(build, "bindings", "perl"), os.path.join(CLIENTS, "lmtp_perl.pl")]
        py = ["/usr/bin/python3", os.path.join(CLIENTS, "lmtp_python.py")]
        py_env = {"PYTHONPATH": os.path.join(build, "bindings", "python"), "PYTHONDONTWRITEBYTECODE": "1"}
        rows += [("Perl", perl, {}), ("Perl batch", perl + ["--batch"], {}),
                 ("Python", py, py_env), ("Python batch", py + ["--batch"], py_env)]
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True)
    ap.add_argument("--after", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--pin", action="store_true", help="clients on CPU 0, the sink on CPU 1")
    ap.add_argument("--faces", action="store_true", help="the Perl and Python clients too")
    ap.add_argument("--only", default="a,b,d", help="scenarios, e.g. a,d")
    a = ap.parse_args()
    client_prefix, sink_prefix = (["taskset", "-c", "0"], ["taskset", "-c", "1"]) if a.pin else ([], [])
    builds = {"before": clients(a.before, a.faces), "after": clients(a.after, a.faces)}
    names = [row for row, _, _ in builds["after"]]
    sink = os.path.join(a.after, "bench", "lmtp-sink")
    tmp = tempfile.mkdtemp()
    body = os.path.join(tmp, "body")
    subprocess.run([sink, "--make-body", "2048", body], check=True)
    only = set(a.only.split(","))
    rows = []
    try:
        for name, n, rcpts, rtt in SCENARIOS:
            if name not in only:
                continue
            p, port = start_sink(sink, rtt, sink_prefix)
            to = []
            for i in range(rcpts):
                to += ["--to", "r%d@example.org" % i]
            common = ["--host", "127.0.0.1", "--port", str(port), "--messages", str(n), "--from", "s@example.org",
                      "--body", body] + to
            rates = {}
            try:
                for run in range(a.runs):
                    for k, row in enumerate(names):
                        order = ["before", "after"] if run % 2 == 0 else ["after", "before"]
                        for which in order:
                            _, argv, extra = builds[which][k]
                            env = dict(os.environ, **extra)
                            rates.setdefault((row, which), []).append(run_client(client_prefix + argv + common, env))
            finally:
                p.stdin.close()
                p.wait(timeout=30)
            for row in names:
                before, after = rates[(row, "before")], rates[(row, "after")]
                b = statistics.median(r for r, _ in before)
                f = statistics.median(r for r, _ in after)
                paired = statistics.median(x[0] / y[0] for x, y in zip(after, before))
                cpu_b = statistics.median(c for _, c in before) * 1e6
                cpu_f = statistics.median(c for _, c in after) * 1e6
                rows.append((name, row, b, f, f / b, paired, cpu_b, cpu_f))
    finally:
        shutil.rmtree(tmp)
    print("median messages/s over %d alternated runs%s; the client's CPU time (user + system) per message"
          % (a.runs, " (pinned)" if a.pin else ""))
    print("%-3s %-14s %10s %10s %7s %7s %11s %11s %7s" % ("", "client", "before", "after", "ratio", "paired",
                                                        "CPU us bef", "CPU us aft", "CPU"))
    for name, row, b, f, r, paired, cpu_b, cpu_f in rows:
        print("(%s) %-14s %10.0f %10.0f %7.2f %7.2f %11.1f %11.1f %7.2f"
              % (name, row, b, f, r, paired, cpu_b, cpu_f, cpu_f / cpu_b))


if __name__ == "__main__":
    main()
