#!/usr/bin/python3
"""N messages over a delivery pool of K connections (lmtp_pool_deliver, bench-pool) against the
sink with a reply delay D, for K = 1, 2, 4, 8, 32: the median time of each over the runs
(alternated), the ideal N*D/K beside it, and their ratio.

    bench/pool.py --sink build/bench/lmtp-sink --bench-pool build/bench/bench-pool [--messages 640]
                  [--delay-us 5000] [--runs 3] [--connections 1,2,4,8,32]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import tempfile

from nonblocking import result_seconds, start_sink


def run(bench, port, n, k, body):
    return result_seconds([bench, "127.0.0.1", str(port), str(n), str(k), body], n, "bench-pool K=%d" % k)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sink", required=True)
    ap.add_argument("--bench-pool", required=True)
    ap.add_argument("--messages", type=int, default=640)
    ap.add_argument("--delay-us", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--connections", default="1,2,4,8,32")
    a = ap.parse_args()
    ks = [int(k) for k in a.connections.split(",")]
    tmp = tempfile.mkdtemp()
    body = os.path.join(tmp, "body")
    subprocess.run([a.sink, "--make-body", "2048", body], check=True)
    sink, port = start_sink(a.sink, a.delay_us)
    times = {k: [] for k in ks}
    try:
        for _ in range(a.runs):
            for k in ks:
                times[k].append(run(a.bench_pool, port, a.messages, k, body))
    finally:
        sink.stdin.close()
        sink.wait(timeout=30)
        shutil.rmtree(tmp)
    d = a.delay_us / 1e6
    print("N = %d messages of 2 KB, reply delay D = %.1f ms, %d runs (median), lmtp_pool_deliver"
          % (a.messages, d * 1000, a.runs))
    print("%-20s %10s %12s %8s %10s" % ("pool", "median s", "N*D/K s", "ratio", "msgs/s"))
    for k in ks:
        med = statistics.median(times[k])
        ideal = a.messages * d / k
        print("%-20s %10.3f %12.3f %8.2f %10.0f" % ("K = %d" % k, med, ideal, med / ideal, a.messages / med))


if __name__ == "__main__":
    main()
