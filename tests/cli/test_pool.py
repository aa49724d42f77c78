"""lmtp-send --connections K (a bulk run over lmtp_pool) against fake-lmtp: the report in the order
of the input, re-sends after a 4xx, the JSON shape, a connection killed, refused connections, speed."""
import json
import os
import re
import resource
import signal
import subprocess
import time

from clitest import SEND, crlf, lines, run, wait_for
from test_bulk import make_maildir


def pool(fake, *args, to=("alice@x",), server=None):
    rcpts = [a for t in to for a in ("--to", t)]
    return run("--server", server or fake.server, "--from", "me@x", *rcpts, *args)


def docs_of(r):
    docs = [json.loads(l) for l in lines(r.stdout)]
    return docs[:-1], docs[-1]["summary"]


def subject(body):
    return re.search(rb"^Subject: (.*?)\r?$", body, re.M).group(1).decode()


def test_report_keeps_the_input_order_when_messages_finish_out_of_order(fakes, tmp_path):
    bodies, names = make_maildir(tmp_path / "Maildir", 40)
    # The first 6 final replies to temp@x are 451: those messages go again after the others.
    f = fakes("--reply-delay", "5", "--rules", "temp@x=250,451*6")
    # (No mailbox limit: each message goes whole, to both, in one transaction.)
    r = pool(f, "--maildir", tmp_path / "Maildir", "--connections", "4", "--retry-delay", "0.2", "--json",
             "--mailbox-concurrency", "0", to=["alice@x", "temp@x"])
    assert r.returncode == 0, r.stderr
    msgs, summary = docs_of(r)
    assert [d["index"] for d in msgs] == list(range(1, 41))
    assert [os.path.basename(d["message"]) for d in msgs] == names
    assert all(d["exit"] == 0 and [x["status"] for x in d["recipients"]] == ["ok", "ok"] for d in msgs)
    # Out of order on the server: the re-sent ones were stored after later messages.
    stored = [subject(m) for m in f.messages()]
    assert len(stored) == 46
    assert stored != sorted(stored, key=lambda s: int(s.split()[1]))
    assert summary["messages"] == 40 and summary["delivered"] == 40 and summary["exit"] == 0
    assert f.stop()["CONNECTIONS"] == 4


def test_human_report_in_order_and_summary(fakes, tmp_path):
    bodies, names = make_maildir(tmp_path / "Maildir", 12)
    f = fakes("--rules", "full@x=250,552")
    r = pool(f, "--maildir", tmp_path / "Maildir", "--connections", "4", to=["alice@x", "full@x"])
    assert r.returncode == 65
    out = lines(r.stdout)
    assert [l.split(": ")[0] for l in out[:12]] == [str(p) for p in
                                                   sorted((tmp_path / "Maildir").glob("*/17*"),
                                                          key=os.path.basename)]
    assert all(l.endswith(" full@x permfail 552 5.2.2 <full@x> Quota exceeded") for l in out[:12])
    assert re.fullmatch(r"summary: 12 messages sent \(\d+ B\) in \d+\.\d s: 0 delivered to every recipient, "
                        r"12 with failures", out[12])
    assert sorted(f.messages()) == sorted(crlf(b) for b in bodies)


def test_retries_send_only_the_4xx_recipients_again(fakes, tmp_path):
    make_maildir(tmp_path / "Maildir", 10)
    f = fakes("--rules", "temp@x=250,451*3;rtemp@x=451*2")
    r = pool(f, "--maildir", tmp_path / "Maildir", "--connections", "4", "--retries", "5",
             "--retry-delay", "0.05", "--json", to=["alice@x", "temp@x", "rtemp@x"])
    assert r.returncode == 0, r.stderr
    msgs, summary = docs_of(r)
    attempts = {a: [d["recipients"][i]["attempts"] for d in msgs]
                for i, a in enumerate(["alice@x", "temp@x", "rtemp@x"])}
    assert attempts["alice@x"] == [1] * 10  # never in a re-send: it had its 250
    assert sum(a - 1 for a in attempts["temp@x"]) == 3  # one re-send per 451 after the message
    assert sum(a - 1 for a in attempts["rtemp@x"]) == 2  # and per 451 to RCPT
    assert all(x["status"] == "ok" for d in msgs for x in d["recipients"])
    sent = f.sent()
    assert sent.count(b"RCPT TO:<alice@x>") == 10 and sent.count(b"RCPT TO:<temp@x>") == 13
    assert sent.count(b"RCPT TO:<rtemp@x>") == 12


def test_retries_zero_keeps_the_4xx(fakes, tmp_path):
    make_maildir(tmp_path / "Maildir", 6)
    f = fakes("--rules", "temp@x=250,451*2")
    r = pool(f, "--maildir", tmp_path / "Maildir", "--connections", "2", "--retries", "0", "--json",
             to=["temp@x"])
    assert r.returncode == 75
    msgs, summary = docs_of(r)
    verdicts = [(d["recipients"][0]["status"], d["recipients"][0]["attempts"]) for d in msgs]
    assert sorted(verdicts) == [("ok", 1)] * 4 + [("tempfail", 1)] * 2
    assert summary["failed"] == 2 and summary["exit"] == 75
    assert f.stop()["MESSAGES"] == 6


def test_retries_spent_keep_the_last_4xx(fakes, tmp_path):
    make_maildir(tmp_path / "Maildir", 2)
    f = fakes("--rules", "temp@x=250,452")
    start = time.monotonic()
    r = pool(f, "--maildir", tmp_path / "Maildir", "--connections", "2", "--retries", "2",
             "--retry-delay", "0.1", "--json", to=["alice@x", "temp@x"])
    took = time.monotonic() - start
    assert r.returncode == 75
    msgs, _ = docs_of(r)
    for d in msgs:
        assert [(x["status"], x["attempts"]) for x in d["recipients"]] == [("ok", 1), ("tempfail", 3)]
        assert d["recipients"][1]["code"] == 452
    assert took >= 0.3  # 0.1 s, then 0.2 s before the re-sends


def test_json_shape_is_the_one_connection_shape_plus_attempts(fakes, tmp_path):
    make_maildir(tmp_path / "Maildir", 3)
    f = fakes("--rules", "temp@x=250,452")
    one = pool(f, "--maildir", tmp_path / "Maildir", "--json", to=["alice@x", "temp@x"])
    many = pool(f, "--maildir", tmp_path / "Maildir", "--json", "--connections", "3", "--retries", "0",
                to=["alice@x", "temp@x"])
    assert one.returncode == many.returncode == 75
    (m1, s1), (m2, s2) = docs_of(one), docs_of(many)
    assert len(m1) == len(m2) == 3
    for a, b in zip(m1, m2):
        assert set(b) == set(a)
        for ra, rb in zip(a["recipients"], b["recipients"]):
            assert set(rb) == set(ra) | {"attempts"} and "attempts" not in ra
            assert {k: v for k, v in rb.items() if k != "attempts"} == ra
        assert {k: v for k, v in b.items() if k != "recipients"} == {k: v for k, v in a.items() if k != "recipients"}
    assert set(s2) == set(s1)
    assert (s2["messages"], s2["failed"], s2["exit"]) == (s1["messages"], s1["failed"], s1["exit"])


def test_connection_killed_after_the_end_leaves_that_message_unknown(fakes, tmp_path):
    bodies, names = make_maildir(tmp_path / "Maildir", 12)
    # The 6th message's end: stored, then the connection closes before any verdict.
    f = fakes("--fault-on", ".", "--fault-skip", "5", "--fault-times", "1", "--fault-action", "close")
    r = pool(f, "--maildir", tmp_path / "Maildir", "--connections", "4", "--json", to=["alice@x", "bob@x"])
    assert r.returncode == 74, r.stderr
    msgs, summary = docs_of(r)
    unknown = [d for d in msgs if d["exit"] != 0]
    assert len(unknown) == 1
    assert [x["status"] for x in unknown[0]["recipients"]] == ["unknown", "unknown"]
    # As over one connection: the break is the message's error, its recipients unknown.
    assert unknown[0]["recipients"][0]["attempts"] == 1
    assert "closed the connection" in unknown[0]["error"]
    assert all([x["status"] for x in d["recipients"]] == ["ok", "ok"] for d in msgs if d is not unknown[0])
    assert summary["messages"] == 12 and summary["delivered"] == 11 and summary["exit"] == 74
    # Never sent again: each message stored once (the unknown one too: the server had it).
    assert sorted(f.messages()) == sorted(crlf(b) for b in bodies)
    # The human report says the same.
    f2 = fakes("--fault-on", ".", "--fault-skip", "2", "--fault-times", "1", "--fault-action", "close")
    h = pool(f2, "--maildir", tmp_path / "Maildir", "--connections", "4", to=["alice@x"])
    assert h.returncode == 74
    out = lines(h.stdout)
    assert len(out) == 2 and re.fullmatch(r"\S+: alice@x unknown - - the server closed the connection while we "
                                          r"waited for the final reply for <alice@x>", out[0]), out
    assert "11 delivered to every recipient, 1 with failures" in out[1]


def test_connection_killed_before_the_end_is_sent_again(fakes, tmp_path):
    bodies, names = make_maildir(tmp_path / "Maildir", 8)
    f = fakes("--fault-on", "DATA", "--fault-skip", "3", "--fault-times", "1", "--fault-action", "close")
    r = pool(f, "--maildir", tmp_path / "Maildir", "--connections", "4", "--json")
    assert r.returncode == 0, r.stderr
    msgs, summary = docs_of(r)
    assert all(d["recipients"][0]["status"] == "ok" for d in msgs) and summary["delivered"] == 8
    assert sorted(f.messages()) == sorted(crlf(b) for b in bodies)
    assert f.sent().count(b"DATA\r\n") == 9  # that one twice: the server could not have it


def test_mbox_over_a_pool(fakes, tmp_path):
    mbox = tmp_path / "mbox"
    with open(mbox, "wb") as out:
        for i in range(30):
            out.write(b"From x Thu Jan  1 00:00:00 2024\nSubject: m %d\n\n>From body %d\n\n" % (i, i))
    f = fakes("--reply-delay", "2", "--rules", "temp@x=250,451*4")
    r = pool(f, "--mbox", mbox, "--connections", "4", "--retry-delay", "0.05", "--json", to=["temp@x"])
    assert r.returncode == 0, r.stderr
    msgs, summary = docs_of(r)
    assert [d["message"] for d in msgs] == [f"{mbox}#{i}" for i in range(1, 31)]
    stored = f.messages()
    assert len(stored) == 34  # 4 of them twice: the 451 after the message, then the 250
    assert sorted(set(stored)) == sorted(b"Subject: m %d\r\n\r\nFrom body %d\r\n" % (i, i) for i in range(30))
    assert summary["bytes"] == sum(d["bytes"] for d in msgs)


def test_many_connections_are_faster_with_a_reply_delay(fakes, tmp_path):
    make_maildir(tmp_path / "Maildir", 32)
    f = fakes("--reply-delay", "40")
    times = {}
    for k in (1, 8):
        start = time.monotonic()
        r = pool(f, "--maildir", tmp_path / "Maildir", "--connections", str(k), "--mailbox-concurrency", "0")
        times[k] = time.monotonic() - start
        assert r.returncode == 0, r.stderr
    # 32 messages, 2 delayed flushes each: about 2.6 s over one connection, 0.35 s over 8.
    assert times[1] > 2.5 and times[8] < times[1] / 3, times


def test_mailbox_concurrency_bounds_the_messages_in_flight_to_one_recipient(fakes, tmp_path):
    make_maildir(tmp_path / "Maildir", 16)
    f = fakes("--reply-delay", "40")
    start = time.monotonic()
    r = pool(f, "--maildir", tmp_path / "Maildir", "--connections", "8")  # default: 2 at once to alice@x
    took = time.monotonic() - start
    assert r.returncode == 0
    assert took > 16 * 0.08 / 2 * 0.9, took
    assert f.stop()["CONNECTIONS"] <= 8


def test_progress_line_shows_messages_per_second(fakes, tmp_path):
    make_maildir(tmp_path / "Maildir", 8)
    f = fakes("--reply-delay", "20")
    r = pool(f, "--maildir", tmp_path / "Maildir", "--connections", "4", "--progress-interval", "0.05")
    assert r.returncode == 0
    progress = [l for l in r.stderr.splitlines() if l.startswith("lmtp-send: ")]
    assert progress, r.stderr
    for l in progress:
        assert re.fullmatch(r"lmtp-send: \d/8 messages, \d+ B of \d+ B, [\d.]+ \S+/s, [\d.]+ msg/s(, ETA \d+:\d\d)?",
                            l), l
    assert float(re.search(r"([\d.]+) msg/s", progress[-1]).group(1)) > 0


def test_refused_connections_back_off_then_fail_each_message_without_spinning(tmp_path):
    bodies, names = make_maildir(tmp_path / "Maildir", 20)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    r = run("--server", "127.0.0.1:1", "--from", "a@x", "--to", "b@x", "--maildir", tmp_path / "Maildir",
            "--connections", "4", "--retries", "3", "--retry-delay", "0.1", "--json")
    took = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert r.returncode == 69
    msgs, summary = docs_of(r)
    # The messages read when the pool gave up (a window of 16) each say why; the rest were not sent.
    assert len(msgs) == 16 and summary["messages"] == 16
    for d in msgs:
        assert d["exit"] == 69 and "Connection refused" in d["error"]
        assert [(x["status"], x["attempts"]) for x in d["recipients"]] == [("unknown", 0)]
    assert os.path.basename(summary["stopped_before"]) == names[16]
    assert "Connection refused" in summary["error"]
    assert took >= 0.1 + 0.2 + 0.4 - 0.05  # four rounds, waits doubling in between
    assert cpu < 0.5, cpu


def test_refused_for_a_while_then_delivered(fakes, tmp_path):
    make_maildir(tmp_path / "Maildir", 6)
    sock = tmp_path / "later.sock"
    f = fakes(unix=True)
    p = subprocess.Popen([SEND, "--server", str(sock), "--from", "a@x", "--to", "b@x", "--maildir",
                          str(tmp_path / "Maildir"), "--connections", "2", "--retries", "8", "--retry-delay",
                          "0.05", "--retry-delay-max", "0.2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    time.sleep(0.6)
    assert p.poll() is None
    os.symlink(f.server, sock)  # the server appears
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, out + err
    assert "6 delivered to every recipient" in out
    assert f.stop()["MESSAGES"] == 6


def test_ctrl_c_stops_reading_and_finishes_what_was_read(fakes, tmp_path):
    bodies, names = make_maildir(tmp_path / "Maildir", 40)
    paths = sorted((str(p) for p in (tmp_path / "Maildir").glob("*/17*")), key=os.path.basename)
    f = fakes("--reply-delay", "50")
    p = subprocess.Popen([SEND, "--server", f.server, "--from", "me@x", "--to", "alice@x", "--maildir",
                          str(tmp_path / "Maildir"), "--connections", "2", "--mailbox-concurrency", "0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # The window (16 messages for 2 connections) is read before anything is sent.
    assert wait_for(lambda: f.sent().count(b"MAIL FROM") >= 1)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 130, err
    assert sorted(f.messages()) == sorted(crlf(b) for b in bodies[:16])
    out = lines(out)
    assert "summary: 16 messages sent" in out[0] and "16 delivered to every recipient" in out[0]
    assert out[1] == "interrupted by Ctrl-C"
    assert out[2] == f"not sent: {paths[16]} and every message after it"


def test_pool_options_need_a_bulk_run_and_sane_values(fakes, tmp_path):
    make_maildir(tmp_path / "Maildir", 1)
    msg = tmp_path / "m.eml"
    msg.write_bytes(b"Subject: x\n\nx\n")
    base = ["--server", "127.0.0.1:1", "--from", "a@x", "--to", "b@x"]
    assert run(*base, "--connections", "2", msg).returncode == 64
    for bad in (["--connections", "0"], ["--connections", "1001"], ["--connections", "x"],
                ["--connections", "2", "--retries", "-1"], ["--connections", "2", "--retry-delay", "0"]):
        r = run(*base, "--maildir", tmp_path / "Maildir", *bad)
        assert r.returncode == 64 and "bad --" in r.stderr, bad
    for alone in (["--retries", "1"], ["--retry-delay", "1"], ["--retry-delay-max", "1"],
                  ["--mailbox-concurrency", "1"]):
        r = run(*base, "--maildir", tmp_path / "Maildir", *alone)
        assert r.returncode == 64 and "need --connections" in r.stderr, alone
