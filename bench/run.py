#!/usr/bin/python3
"""The benchmark runner (bench/run.sh builds and installs what it needs, then
calls this). Runs every client against lmtp-sink in every scenario, several
runs taken in alternation, and writes the table of medians (markdown), the
raw numbers (JSON) and the chart (PNG, with gnuplot).

    run.py [--quick] [--runs N] [--build-dir DIR] [--out DIR] [--only a,b,...]

Each client run: a fresh sink, the client(s) started and waited for (READY),
a go line, then the clients' own RESULT lines, the sink's STATS line, and the
peak RSS of each client process (bench-spawn). A run counts only when every message
was delivered to every recipient, the sink verified every body, and nothing
failed; otherwise the run fails and so does the whole command.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CLIENTS_DIR = os.path.join(HERE, "clients")
PYTHON = "/usr/bin/python3"  # the interpreter the lmtp package is built for, and smtplib's

# ---- scenarios ------------------------------------------------------------------------------

SCENARIOS = [
    # key, title, messages, size, recipients, processes, rtt_us, new connection each, stream
    dict(key="a", title="2,000 messages of 2 KB, 1 recipient, one connection",
         messages=2000, size=2048, rcpts=1, procs=1, rtt_us=0, reconnect=False, stream=False),
    dict(key="b", title="200 messages of 2 KB, 20 recipients, one connection",
         messages=200, size=2048, rcpts=20, procs=1, rtt_us=0, reconnect=False, stream=False),
    dict(key="c", title="10 messages of 10 MB, 1 recipient, a new connection each, streamed from a file",
         messages=10, size=10 * 1024 * 1024, rcpts=1, procs=1, rtt_us=0, reconnect=True, stream=True),
    dict(key="d", title="(a) with a simulated round trip of 200 µs before every reply flush",
         messages=2000, size=2048, rcpts=1, procs=1, rtt_us=200, reconnect=False, stream=False),
    dict(key="e", title="(a) on 8 concurrent connections (8 processes)",
         messages=2000, size=2048, rcpts=1, procs=8, rtt_us=0, reconnect=False, stream=False),
]
QUICK = {"a": dict(messages=20), "b": dict(messages=5), "c": dict(messages=2, size=256 * 1024),
         "d": dict(messages=20), "e": dict(messages=20, procs=2)}
# Not timed: proves every client counts refusals (550 at RCPT) and failures after the message
# (452 from the sink for that recipient).
CHECK = dict(key="check", title="refusals: 1 recipient delivered, 1 refused at RCPT, 1 deferred after the message",
             messages=5, size=2048, rcpts=0, procs=1, rtt_us=0, reconnect=False, stream=False,
             to=["ok-1@bench.example", "refuse-1@bench.example", "defer-1@bench.example"], expect_ok=1)


def recipients(sc):
    return sc.get("to") or ["rcpt%d@bench.example" % i for i in range(1, sc["rcpts"] + 1)]


# ---- clients ------------------------------------------------------------------------------

class Client:
    def __init__(self, name, kind, argv, env=None, batch=False, only=None, missing=None):
        self.name, self.kind, self.argv, self.env = name, kind, argv, env or {}
        self.batch, self.only, self.missing = batch, only, missing

    def applies(self, sc):
        if self.only is not None:
            return sc["key"] in self.only
        if self.batch and sc["reconnect"]:
            return False  # one message per connection: nothing to batch
        return True


def make_clients(o):
    perl_blib = o.perl_blib
    py_path = o.python_path
    have_perl = os.path.exists(os.path.join(perl_blib, "blib", "arch", "auto", "Net", "LMTP"))
    have_py = os.path.isdir(os.path.join(py_path, "lmtp"))
    have_node = shutil.which("node") and os.path.isdir(os.path.join(HERE, "node_modules", "nodemailer"))
    perl_ours = ["perl", "-Mblib=" + perl_blib, os.path.join(CLIENTS_DIR, "lmtp_perl.pl")]
    py_ours = [PYTHON, os.path.join(CLIENTS_DIR, "lmtp_python.py")]
    py_env = {"PYTHONPATH": py_path, "PYTHONDONTWRITEBYTECODE": "1"}
    no_perl = None if have_perl else "Net::LMTP not built (%s)" % perl_blib
    no_py = None if have_py else "the lmtp package not built (%s)" % py_path
    no_node = None if have_node else "nodemailer not installed in bench/node_modules (bench/run.sh installs it)"
    return [
        Client("C", "ours", [o.bench_c]),
        Client("C batch", "ours", [o.bench_c, "--batch"], batch=True),
        Client("Perl", "ours", perl_ours, missing=no_perl),
        Client("Perl in memory", "ours", perl_ours + ["--memory"], only={"c"}, missing=no_perl),
        Client("Perl datasend", "ours", perl_ours + ["--datasend"], only={"a", "c"}, missing=no_perl),
        Client("Perl batch", "ours", perl_ours + ["--batch"], batch=True, missing=no_perl),
        Client("Python", "ours", py_ours, env=py_env, missing=no_py),
        Client("Python in memory", "ours", py_ours + ["--memory"], env=py_env, only={"c"}, missing=no_py),
        Client("Python str", "ours", py_ours + ["--as-str"], env=py_env, only={"a", "c"}, missing=no_py),
        Client("Python batch", "ours", py_ours + ["--batch"], env=py_env, batch=True, missing=no_py),
        Client("smtplib", "peer", [PYTHON, os.path.join(CLIENTS_DIR, "peer_smtplib.py")],
               env={"PYTHONDONTWRITEBYTECODE": "1"}),
        Client("Net::SMTP", "peer", ["perl", os.path.join(CLIENTS_DIR, "peer_netsmtp.pl")]),
        Client("nodemailer", "peer", ["node", os.path.join(CLIENTS_DIR, "peer_nodemailer.js")], missing=no_node),
        Client("raw writer", "reference", [o.bench_raw], only={"c"}),
    ]


# ---- one run ------------------------------------------------------------------------------

class RunError(Exception):
    pass


def parse_kv(line):
    return {k: v for k, v in (f.split("=", 1) for f in line.split()[1:] if "=" in f)}


def start_sink(o, sc):
    argv = [o.sink, "--exit-on-eof", "--rtt-us", str(sc["rtt_us"])]
    if sc["key"] == "check":
        argv += ["--refuse", "refuse-", "--defer", "defer-"]
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if not line.startswith("PORT "):
        p.kill()
        raise RunError("the sink did not start: %r" % line)
    return p, int(line.split()[1])


def stop_sink(p):
    p.stdin.close()
    out = p.stdout.read()
    p.wait(timeout=30)
    for line in out.splitlines():
        if line.startswith("STATS "):
            return {k: int(v) for k, v in parse_kv(line).items()}
    raise RunError("the sink printed no STATS")


def run_once(o, sc, client, body, tmp):
    """One run of `client` in scenario `sc`: a dict of figures, or {"unsupported": why}."""
    sink, port = start_sink(o, sc)
    procs = []
    timer = None
    try:
        args = ["--host", "127.0.0.1", "--port", str(port), "--messages", str(sc["messages"]), "--body", body]
        for r in recipients(sc):
            args += ["--to", r]
        if sc["reconnect"]:
            args.append("--reconnect")
        if sc["stream"]:
            args.append("--stream")
        env = dict(os.environ, **client.env)
        rss_files = []
        for i in range(sc["procs"]):
            err = open(os.path.join(tmp, "stderr-%d" % i), "w+")
            rss_files.append(os.path.join(tmp, "rss-%d" % i))
            if os.path.exists(rss_files[-1]):
                os.unlink(rss_files[-1])
            p = subprocess.Popen([o.bench_spawn, rss_files[-1]] + client.argv + args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                 text=True, env=env)
            procs.append((p, err))
        for p, err in procs:
            line = p.stdout.readline()
            if line.startswith("UNSUPPORTED"):
                return {"unsupported": line.split(None, 1)[1].strip()}
            if line.strip() != "READY":
                err.seek(0)
                raise RunError("%s did not start: %r %s" % (client.name, line, err.read()[-2000:]))
        for p, _ in procs:  # go, all at once
            p.stdin.write("go\n")
            p.stdin.flush()
        results, rss = [], []
        timed_out = []

        def kill_all():  # a client that hangs must not hang the benchmark
            timed_out.append(True)
            for p, _ in procs:
                if p.poll() is None:
                    p.kill()
        timer = threading.Timer(o.timeout, kill_all)
        timer.start()
        for (p, err), rss_file in zip(procs, rss_files):
            out = p.stdout.read()
            p.wait()
            try:
                with open(rss_file) as f:
                    rss.append(int(f.read()) / 1024.0)  # MB (bench-spawn writes KB)
            except (OSError, ValueError):
                rss.append(float("nan"))
            line = next((l for l in out.splitlines() if l.startswith("RESULT ")), None)
            err.seek(0)
            if timed_out:
                raise RunError("%s: over the time limit of %.0f s" % (client.name, o.timeout))
            if p.returncode != 0 or line is None:
                raise RunError("%s failed (exit %s): %s" % (client.name, p.returncode, err.read()[-2000:]))
            results.append({k: float(v) for k, v in parse_kv(line).items()})
        timer.cancel()
        stats = stop_sink(sink)
        sink = None
    finally:
        if timer is not None:
            timer.cancel()
        for p, err in procs:
            if p.returncode is None:
                p.kill()
                p.wait()
            err.close()
        if sink is not None:
            sink.kill()
            sink.wait()

    n = sc["messages"] * sc["procs"]
    nto = len(recipients(sc))
    want_ok = n * sc.get("expect_ok", nto)
    got = {k: int(sum(r[k] for r in results)) for k in ("messages", "rcpt_ok", "rcpt_failed", "errors")}
    problems = []
    if got["messages"] != n or got["errors"]:
        problems.append("client: %d of %d messages, %d errors" % (got["messages"], n, got["errors"]))
    if got["rcpt_ok"] != want_ok or got["rcpt_failed"] != n * nto - want_ok:
        problems.append("client counted %d delivered, %d failed; expected %d and %d"
                        % (got["rcpt_ok"], got["rcpt_failed"], want_ok, n * nto - want_ok))
    if stats["verified"] != n or stats["bad_bodies"] or stats["messages"] != n:
        problems.append("sink: %d messages, %d verified, %d bad bodies (expected %d)"
                        % (stats["messages"], stats["verified"], stats["bad_bodies"], n))
    if stats["rcpt_delivered"] != want_ok:
        problems.append("sink delivered to %d recipients, expected %d" % (stats["rcpt_delivered"], want_ok))
    if problems:
        raise RunError("%s, scenario %s: %s" % (client.name, sc["key"], "; ".join(problems)))
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    wall = max(wall, 1e-6)
    return {
        "seconds": wall,
        "msgs_per_s": n / wall,
        "mb_per_s": n * sc["size"] / wall / 1e6,
        "rt_per_msg": stats["message_flushes"] / max(stats["messages"], 1),
        "flushes_per_msg": stats.get("txn_flushes", 0) / max(stats["messages"], 1),
        "rss_mb": max(rss),
        "flushes": stats["flushes"],
        "verified": stats["verified"],
        "rcpt_ok": got["rcpt_ok"],
        "rcpt_failed": got["rcpt_failed"],
    }


# ---- the encoder microbenchmark ---------------------------------------------------------------

def run_encoder(o):
    if not o.bench_encoder or not os.path.exists(o.bench_encoder):
        return None
    argv = [o.bench_encoder, "--benchmark_format=json"]
    if o.quick:
        argv += ["--benchmark_filter=/1024$", "--benchmark_min_time=0.01"]
    else:
        argv += ["--benchmark_min_time=0.2", "--benchmark_repetitions=3", "--benchmark_report_aggregates_only=true"]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    rows = []
    for b in json.loads(out)["benchmarks"]:
        if o.quick or b.get("aggregate_name") == "median":
            name = b.get("run_name", b["name"])  # BM_Encode/text/1024
            _, kind, size = name.split("/")[:3]
            rows.append({"input": kind, "size": int(size), "gb_per_s": b["bytes_per_second"] / 1e9,
                         "wire_per_input": b.get("wire_per_input")})  # none for the scan alone
    return rows


# ---- output ---------------------------------------------------------------------------------

def human_size(n):
    for unit, f in (("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= f and n % f == 0:
            return "%d %s" % (n // f, unit)
    return "%d B" % n


def fmt(v, digits):
    if v is None:
        return "n/a"
    if v >= 100 and digits < 2:
        return "{:,.0f}".format(v)
    return "{:,.{d}f}".format(v, d=digits)


def medians(runs):
    if not runs:
        return None
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def best_peer(rows):
    peers = [r["median"]["msgs_per_s"] for r in rows if r["kind"] == "peer" and r["median"]]
    return max(peers) if peers else None


def markdown(o, report):
    L = []
    L.append("# liblmtp benchmark results%s" % (" (quick mode: tiny sizes, 1 run)" if o.quick else ""))
    L.append("")
    env = report["environment"]
    L.append("%s. %s; %d run(s) per client, medians, taken in alternation; the full run took %s."
             % (env["date"], env["machine"], report["runs"], env["duration"]))
    L.append("Versions: %s." % env["versions"])
    L.append("")
    L.append("msgs/s and MB/s: messages (of the size given, counted once whatever the number of recipients) "
             "over the wall time from the first client's start to the last one's end. RT/msg: reply flushes "
             "of the sink that carried a reply of the message (round trips the client waited for), averaged. "
             "flushes/msg: all the sink's reply flushes that carried some message's reply, over the messages "
             "(below 1 when messages share round trips, as a batch does). "
             "RSS: peak resident set of the client process (the largest of them in (e)). vs best peer: "
             "msgs/s over the best peer's in the same scenario. Every run checked: every recipient got every "
             "message (the client's own count of final replies), and the sink verified every body (length "
             "and hash). See bench/README.md.")
    for sc in report["scenarios"]:
        L.append("")
        L.append("## (%s) %s" % (sc["key"], sc["title"]))
        L.append("")
        L.append("| client | msgs/s | MB/s | RT/msg | flushes/msg | peak RSS (MB) | vs best peer |")
        L.append("|---|---:|---:|---:|---:|---:|---:|")
        best = best_peer(sc["rows"])
        for r in sc["rows"]:
            m = r["median"]
            if m is None:
                L.append("| %s | n/a | n/a | n/a | n/a | n/a | n/a |" % r["name"])
                continue
            ratio = "%.2f×" % (m["msgs_per_s"] / best) if best else "n/a"
            if r["kind"] == "ours":
                ratio = "**%s**" % ratio
            L.append("| %s | %s | %s | %s | %s | %s | %s |" % (
                r["name"], fmt(m["msgs_per_s"], 0), fmt(m["mb_per_s"], 1), fmt(m["rt_per_msg"], 2),
                fmt(m.get("flushes_per_msg"), 2), fmt(m["rss_mb"], 1), ratio))
        notes = [(r["name"], r["note"]) for r in sc["rows"] if r.get("note")]
        if notes:
            L.append("")
            for name, note in notes:
                L.append("- %s: %s" % (name, note))
    if report.get("check"):
        L.append("")
        L.append("## Refusals counted (not timed)")
        L.append("")
        L.append(CHECK["title"] + ", %d messages: " % CHECK["messages"] + ", ".join(
            "%s %s" % (name, res) for name, res in report["check"]))
    enc = report.get("encoder")
    if enc:
        L.append("")
        L.append("## Body encoder (lmtp::BodyEncoder, Google Benchmark, GB/s of input)")
        L.append("")
        sizes = sorted({e["size"] for e in enc})
        kinds = []
        for e in enc:
            if e["input"] not in kinds:
                kinds.append(e["input"])
        L.append("| input | " + " | ".join(human_size(s) for s in sizes) + " | wire/input |")
        L.append("|---|" + "---:|" * (len(sizes) + 1))
        for k in kinds:
            cells = []
            wire = None
            for s in sizes:
                e = next((e for e in enc if e["input"] == k and e["size"] == s), None)
                cells.append("%.2f" % e["gb_per_s"] if e else "")
                if e:
                    wire = e["wire_per_input"]
            L.append("| %s | %s | %s |" % (k, " | ".join(cells), "" if wire is None else "%.2f" % wire))
        L.append("")
        L.append("Fed in 64 KiB pieces (as a client streams a message) in DATA mode (dot-stuffing), "
                 "text_canonical in BDAT mode. wire/input: output octets per input octet. "
                 "scan_*: the encoder's scan alone (where bytes are added, nothing written); "
                 "scan_text_scalar a byte at a time.")
    L.append("")
    return "\n".join(L)


def chart(o, report, png):
    gnuplot = shutil.which("gnuplot")
    if not gnuplot:
        return "gnuplot not installed: no chart (apt-get install gnuplot-nox)"
    names = []
    for sc in report["scenarios"]:
        for r in sc["rows"]:
            if r["name"] not in names:
                names.append(r["name"])
    tmpd = tempfile.mkdtemp(prefix="lmtp-bench-chart.")
    try:
        dat = os.path.join(tmpd, "ratio.dat")
        dat2 = os.path.join(tmpd, "rate.dat")
        with open(dat, "w") as f, open(dat2, "w") as g:
            f.write("scenario " + " ".join('"%s"' % n for n in names) + "\n")
            g.write("scenario " + " ".join('"%s"' % n for n in names) + "\n")
            for sc in report["scenarios"]:
                best = best_peer(sc["rows"])
                row, row2 = ['"(%s)"' % sc["key"]], ['"(%s)"' % sc["key"]]
                for n in names:
                    r = next((r for r in sc["rows"] if r["name"] == n), None)
                    m = r["median"] if r else None
                    row.append("%.4g" % (m["msgs_per_s"] / best) if m and best else "-")
                    row2.append("%.4g" % m["mb_per_s"] if m else "-")
                f.write(" ".join(row) + "\n")
                g.write(" ".join(row2) + "\n")
        ncol = len(names) + 1
        palette = {"C": "#1f4e9c", "C batch": "#6d9eeb", "Perl": "#2e7d32", "Perl in memory": "#1b5e20",
                   "Perl datasend": "#66bb6a", "Perl batch": "#9ccc65", "Python": "#6a1b9a",
                   "Python in memory": "#4a148c", "Python str": "#ab47bc", "Python batch": "#ce93d8",
                   "smtplib": "#e65100", "Net::SMTP": "#c62828", "nodemailer": "#f9a825", "raw writer": "#424242"}
        colors = " ".join(palette.get(n, "#808080") for n in names)
        script = """
set terminal pngcairo size 1500,1000 font "DejaVu Sans,10" noenhanced
set output '{png}'
set datafile missing '-'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set key outside right top vertical
set grid ytics
set logscale y 2
set multiplot layout 2,1 title "liblmtp benchmark ({when}): medians of {runs} run(s)"
set title "messages/s relative to the best peer (log scale; 1 = best peer)"
set ylabel "× best peer"
colors = "{colors}"
plot for [i=2:{ncol}] '{dat}' using i:xtic(1) title columnheader(i) lc rgb word(colors, i-1)
set title "MB/s (log scale)"
set ylabel "MB/s"
set logscale y 10
plot for [i=2:{ncol}] '{dat2}' using i:xtic(1) title columnheader(i) lc rgb word(colors, i-1)
unset multiplot
""".format(png=png, when=report["environment"]["date"], runs=report["runs"], ncol=ncol, dat=dat, dat2=dat2, colors=colors)
        r = subprocess.run([gnuplot], input=script, capture_output=True, text=True)
        if r.returncode != 0 or not os.path.exists(png):
            return "gnuplot failed: " + r.stderr[-500:]
        return None
    finally:
        shutil.rmtree(tmpd, ignore_errors=True)


def versions(o):
    v = []
    try:
        out = subprocess.run(["perl", "-MNet::SMTP", "-e", "print $Net::SMTP::VERSION"], capture_output=True,
                             text=True).stdout
        v.append("Net::SMTP " + out.strip())
    except OSError:
        pass
    v.append("Python %s" % subprocess.run([PYTHON, "-c", "import platform; print(platform.python_version())"],
                                          capture_output=True, text=True).stdout.strip())
    try:
        with open(os.path.join(HERE, "node_modules", "nodemailer", "package.json")) as f:
            v.append("nodemailer " + json.load(f)["version"])
        v.append("node " + subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip())
    except (OSError, ValueError):
        pass
    return ", ".join(v)


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "%s, %d CPU(s), Linux %s, load %.2f at the start" % (cpu, os.cpu_count() or 0, platform.release(),
                                                                 os.getloadavg()[0])


# ---- main -----------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, 1 run (the bench_smoke test)")
    ap.add_argument("--runs", type=int, default=None, help="runs per client and scenario (default 7; quick: 1)")
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build", "bench"),
                    help="the project's build tree (liblmtp, Net::LMTP, the lmtp package)")
    ap.add_argument("--bin-dir", help="where the kit's programs are (default BUILD/bench)")
    ap.add_argument("--out", default=None, help="where the results go (default bench/results; quick: a temp dir)")
    ap.add_argument("--only", default=None, help="scenarios to run, e.g. a,c")
    ap.add_argument("--clients", default=None, help="client names to run, comma separated")
    ap.add_argument("--sink"), ap.add_argument("--bench-c"), ap.add_argument("--bench-raw")
    ap.add_argument("--bench-encoder"), ap.add_argument("--bench-spawn"), ap.add_argument("--perl-blib"), ap.add_argument("--python-path")
    ap.add_argument("--require", action="append", default=[], choices=["perl", "python", "nodemailer"],
                    help="fail when this face or peer is missing instead of leaving it out")
    ap.add_argument("--no-encoder", action="store_true")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds allowed to one client run")
    o = ap.parse_args()
    b = o.build_dir
    # the kit's programs, built with the project
    bin_dir = o.bin_dir or os.path.join(b, "bench")
    o.sink = o.sink or os.path.join(bin_dir, "lmtp-sink")
    o.bench_c = o.bench_c or os.path.join(bin_dir, "bench-c")
    o.bench_raw = o.bench_raw or os.path.join(bin_dir, "bench-raw")
    o.bench_encoder = o.bench_encoder or os.path.join(bin_dir, "bench-encoder")
    o.bench_spawn = o.bench_spawn or os.path.join(bin_dir, "bench-spawn")
    o.perl_blib = o.perl_blib or os.path.join(b, "bindings", "perl")
    o.python_path = o.python_path or os.path.join(b, "bindings", "python")
    runs = o.runs or (1 if o.quick else 7)
    for exe in (o.sink, o.bench_c, o.bench_raw, o.bench_spawn):
        if not os.access(exe, os.X_OK):
            sys.exit("run.py: %s is missing: build the bench targets first (bench/run.sh does)" % exe)

    clients = make_clients(o)
    required = {"perl": "Perl", "python": "Python", "nodemailer": "nodemailer"}
    for req in o.require:
        c = next(c for c in clients if c.name == required[req])
        if c.missing:
            sys.exit("run.py: required but missing: " + c.missing)
    if o.clients:
        wanted = set(o.clients.split(","))
        clients = [c for c in clients if c.name in wanted]
    scenarios = [dict(sc) for sc in SCENARIOS]
    if o.quick:
        for sc in scenarios:
            sc.update(QUICK[sc["key"]])
    if o.only:
        keys = set(o.only.split(","))
        scenarios = [sc for sc in scenarios if sc["key"] in keys]

    out = o.out or (tempfile.mkdtemp(prefix="lmtp-bench.") if o.quick else os.path.join(HERE, "results"))
    os.makedirs(out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="lmtp-bench-run.")
    t0 = time.time()
    report = {"runs": runs, "quick": o.quick, "scenarios": [], "environment": {
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "machine": machine(), "versions": versions(o)}}
    failures = []
    try:
        bodies = {}
        for sc in scenarios + [CHECK]:
            if sc["size"] not in bodies:
                path = os.path.join(tmp, "body-%d.eml" % sc["size"])
                subprocess.run([o.sink, "--make-body", str(sc["size"]), path], check=True)
                bodies[sc["size"]] = path

        # every client counts refusals and failures after the message
        check = []
        for c in clients:
            if c.missing or c.kind == "reference":
                continue
            try:
                r = run_once(o, CHECK, c, bodies[CHECK["size"]], tmp)
                check.append((c.name, "n/a" if "unsupported" in r else "ok"))
            except RunError as e:
                failures.append(str(e))
                check.append((c.name, "FAILED"))
        report["check"] = check
        print("refusal check: " + ", ".join("%s %s" % x for x in check), flush=True)

        for sc in scenarios:
            rows = [{"name": c.name, "kind": c.kind, "runs": [], "note": c.missing, "client": c}
                    for c in clients if c.applies(sc)]
            print("(%s) %s" % (sc["key"], sc["title"]), flush=True)
            for run in range(runs):
                for row in rows:
                    c = row["client"]
                    if c.missing or row.get("unsupported"):
                        continue
                    try:
                        r = run_once(o, sc, c, bodies[sc["size"]], tmp)
                    except RunError as e:
                        failures.append(str(e))
                        print("   FAILED %s" % e, flush=True)
                        continue
                    if "unsupported" in r:
                        row["unsupported"] = row["note"] = r["unsupported"]
                        continue
                    row["runs"].append(r)
                    print("   run %d %-12s %10.0f msgs/s %8.1f MB/s %6.2f RT/msg %6.3f flushes/msg %7.1f MB RSS"
                          % (run + 1, c.name, r["msgs_per_s"], r["mb_per_s"], r["rt_per_msg"],
                             r["flushes_per_msg"], r["rss_mb"]), flush=True)
            for row in rows:
                row["median"] = medians(row["runs"])
                del row["client"]
            report["scenarios"].append({"key": sc["key"], "title": sc["title"], "rows": rows,
                                        "messages": sc["messages"], "size": sc["size"],
                                        "recipients": len(recipients(sc)), "processes": sc["procs"]})
        if not o.no_encoder:
            report["encoder"] = run_encoder(o)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    secs = time.time() - t0
    report["environment"]["duration"] = "%d min %02d s" % (secs // 60, secs % 60)
    md = markdown(o, report)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(md)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(report, f, indent=1)
    problem = chart(o, report, os.path.join(out, "results.png"))
    print()
    print(md)
    print("written: %s/results.md, results.json%s" % (out, "" if problem else ", results.png"))
    if problem:
        print("chart: " + problem)
    if failures:
        print("\n%d run(s) FAILED:" % len(failures))
        for f in failures:
            print("  " + f)
        sys.exit(1)


if __name__ == "__main__":
    main()
