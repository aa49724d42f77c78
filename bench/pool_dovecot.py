#!/usr/bin/python3
"""N messages over a delivery pool of K connections (lmtp_pool_deliver, bench-pool) against a real
Dovecot LMTP (tests/support/dovecot.sh, one mailbox per user, message i to user i mod USERS), for
K = 1, 2, 4, 8, 16: the median messages/s over the runs (alternated), and the CPU seconds the client
and the server (every process of Dovecot's process group) spent, to tell what the curve runs into.

    bench/pool_dovecot.py --bench-pool build/bench/bench/bench-pool --sink build/bench/bench/lmtp-sink
                          [--messages 400] [--users 64] [--runs 3] [--connections 1,2,4,8,16]
"""
import argparse
import os
import resource
import shutil
import statistics
import subprocess
import tempfile

from nonblocking import result_seconds

HERE = os.path.dirname(os.path.abspath(__file__))
DOVECOT = os.path.join(HERE, "..", "tests", "support", "dovecot.sh")
TICK = os.sysconf("SC_CLK_TCK")


def group_cpu(pgid):
    """CPU seconds of the processes in process group `pgid`, their reaped children included."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields[0] is the state: pgrp is the 5th field of stat
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total / TICK


def client_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(bench, port, n, k, body, users, pgid):
    c0, s0 = client_cpu(), group_cpu(pgid)
    seconds = result_seconds([bench, "127.0.0.1", str(port), str(n), str(k), body, "user", str(users)], n,
                             "bench-pool K=%d" % k)
    c1, s1 = client_cpu(), group_cpu(pgid)
    return seconds, c1 - c0, s1 - s0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench-pool", required=True)
    ap.add_argument("--sink", required=True, help="lmtp-sink, to make the message (--make-body)")
    ap.add_argument("--messages", type=int, default=400)
    ap.add_argument("--users", type=int, default=64)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--connections", default="1,2,4,8,16")
    a = ap.parse_args()
    ks = [int(k) for k in a.connections.split(",")]
    tmp = tempfile.mkdtemp(prefix="lmtp-bench-dovecot.")
    body = os.path.join(tmp, "body")
    subprocess.run([a.sink, "--make-body", str(a.size), body], check=True, stdout=subprocess.DEVNULL)
    server = os.path.join(tmp, "server")
    env = dict(os.environ, LMTP_USERS=str(a.users))
    out = subprocess.run([DOVECOT, "start", server], env=env, check=True, capture_output=True, text=True).stdout
    conf = dict(l.split("=", 1) for l in out.splitlines() if "=" in l)
    port, pgid = int(conf["LMTP_PORT"]), int(conf["LMTP_PGID"])
    res = {k: [] for k in ks}
    try:
        run(a.bench_pool, port, min(a.messages, 50), max(ks), body, a.users, pgid)  # workers forked, warm
        for _ in range(a.runs):
            for k in ks:
                res[k].append(run(a.bench_pool, port, a.messages, k, body, a.users, pgid))
    finally:
        subprocess.run([DOVECOT, "stop", server], check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    cores = os.cpu_count()
    print("Dovecot %s LMTP, %d messages of %d B, message i to user(i mod %d), %d runs (median), "
          "lmtp_pool_deliver; nproc = %d"
          % (subprocess.run(["/usr/sbin/dovecot", "--version"], capture_output=True, text=True).stdout.split()[0],
             a.messages, a.size, a.users, a.runs, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
             else cores))
    print("%-8s %9s %8s %9s %12s %12s %12s" % ("pool", "median s", "msgs/s", "vs K=1", "client CPU s",
                                               "server CPU s", "cores busy"))
    base = None
    for k in ks:
        med = statistics.median(r[0] for r in res[k])
        cli = statistics.median(r[1] for r in res[k])
        srv = statistics.median(r[2] for r in res[k])
        base = base or med
        print("%-8s %9.3f %8.0f %8.2fx %12.2f %12.2f %12.2f"
              % ("K = %d" % k, med, a.messages / med, base / med, cli, srv, (cli + srv) / med))


if __name__ == "__main__":
    main()
