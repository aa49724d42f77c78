#!/usr/bin/python3
"""N messages over K connections from one thread (the non-blocking API, bench-nb) against the
sink with a reply delay D, for K = 1, 8, 64, and the same N over one blocking connection: the
median time of each over the runs (alternated), the ideal N*D/K beside it, and their ratio.

    bench/nonblocking.py --sink build/bench/lmtp-sink --bench-nb build/bench/bench-nb [--messages 640]
                         [--delay-us 5000] [--runs 5] [--connections 1,8,64]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile


def start_sink(sink, delay_us, prefix=()):
    """The sink on a free port, `prefix` before its command (taskset, say): (process, port)."""
    p = subprocess.Popen(list(prefix) + [sink, "--port", "0", "--rtt-us", str(delay_us), "--exit-on-eof"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if not line.startswith("PORT "):
        p.kill()
        sys.exit("the sink did not start: %r" % line)
    return p, int(line.split()[1])


def result_seconds(argv, n, what):
    """Runs a bench client (bench-nb, bench-pool) that prints "RESULT ok=N ... seconds=S": its
    seconds, or the script ends saying `what` failed when not all n messages were delivered."""
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    fields = dict(f.split("=") for f in out.stdout.split()[1:]) if out.stdout.startswith("RESULT") else {}
    if out.returncode != 0 or int(fields.get("ok", -1)) != n:
        sys.exit("%s failed: %s %s" % (what, out.stdout, out.stderr))
    return float(fields["seconds"])


def run(bench, port, n, k, mode, body):
    return result_seconds([bench, "127.0.0.1", str(port), str(n), str(k), mode, body], n,
                          "bench-nb %s K=%d" % (mode, k))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sink", required=True)
    ap.add_argument("--bench-nb", required=True)
    ap.add_argument("--messages", type=int, default=640)
    ap.add_argument("--delay-us", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--connections", default="1,8,64")
    a = ap.parse_args()
    ks = [int(k) for k in a.connections.split(",")]
    tmp = tempfile.mkdtemp()
    body = os.path.join(tmp, "body")
    subprocess.run([a.sink, "--make-body", "2048", body], check=True)
    sink, port = start_sink(a.sink, a.delay_us)
    cases = [("blocking", 1)] + [("nb", k) for k in ks]
    times = {c: [] for c in cases}
    try:
        for _ in range(a.runs):
            for mode, k in cases:
                times[(mode, k)].append(run(a.bench_nb, port, a.messages, k, mode, body))
    finally:
        sink.stdin.close()
        sink.wait(timeout=30)
        shutil.rmtree(tmp)
    d = a.delay_us / 1e6
    print("N = %d messages of 2 KB, reply delay D = %.1f ms, %d runs (median), one message in flight per connection"
          % (a.messages, d * 1000, a.runs))
    print("%-32s %10s %12s %8s %10s" % ("client", "median s", "N*D/K s", "ratio", "msgs/s"))
    for mode, k in cases:
        med = statistics.median(times[(mode, k)])
        ideal = a.messages * d / k
        name = "one blocking connection" if mode == "blocking" else "non-blocking, K = %d" % k
        print("%-32s %10.3f %12.3f %8.2f %10.0f" % (name, med, ideal, med / ideal, a.messages / med))


if __name__ == "__main__":
    main()
