"""lmtp-send --maildir / --mbox against fake-lmtp: one connection, reports, progress, Ctrl-C."""
import json
import os
import pty
import re
import signal
import subprocess
import time

import pytest

from clitest import SEND, crlf, lines, run, wait_for

RULES = "alice@x=250,250;full@x=250,552;temp@x=250,452"


def make_maildir(root, count):
    """A Maildir with `count` messages split over cur/ and new/, plus things to leave out."""
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True)
    bodies = {}
    for i in range(count):
        sub = "cur" if i % 2 else "new"
        name = f"{1700000000 + i}.M{i}P1.host" + (":2,S" if sub == "cur" else "")
        body = f"Subject: message {i}\nMessage-ID: <{i}@x>\n\nbody of {i}\n.\n".encode()
        (root / sub / name).write_bytes(body)
        bodies[name] = body
    (root / "new" / ".hidden").write_bytes(b"not a message\n")
    (root / "tmp" / "1800000000.partial").write_bytes(b"being written\n")
    (root / "cur" / "subdir").mkdir()
    return [bodies[n] for n in sorted(bodies)], sorted(bodies)


def bulk(fake, *args, to=("alice@x",), prefix=()):
    rcpts = [a for t in to for a in ("--to", t)]
    return run("--server", fake.server, "--from", "me@x", *rcpts, *args, prefix=prefix)


def test_maildir_every_message_one_connection(fakes, tmp_path):
    bodies, names = make_maildir(tmp_path / "Maildir", 7)
    f = fakes()
    r = bulk(f, "--maildir", tmp_path / "Maildir")
    assert r.returncode == 0, r.stderr
    assert f.messages() == [crlf(b) for b in bodies]  # in name order, cur/ and new/ together
    out = lines(r.stdout)
    assert re.fullmatch(r"summary: 7 messages sent \(\d+ B\) in \d+\.\d s: 7 delivered to every recipient, "
                        r"0 with failures", out[-1]), out
    stats = f.stop()
    assert stats["CONNECTIONS"] == 1 and stats["MESSAGES"] == 7
    assert f.sent().count(b"LHLO") == 1 and f.sent().count(b"MAIL FROM:<me@x>") == 7


def test_maildir_messages_declare_their_size_on_the_wire(fakes, tmp_path):
    bodies, _ = make_maildir(tmp_path / "Maildir", 3)
    f = fakes("--size", "100000")
    r = bulk(f, "--maildir", tmp_path / "Maildir")
    assert r.returncode == 0, r.stderr
    mails = [l for l in f.sent().split(b"\r\n") if l.startswith(b"MAIL ")]
    assert mails == [b"MAIL FROM:<me@x> SIZE=%d" % len(crlf(b)) for b in bodies]


def test_maildir_failures_reported_per_message_and_recipient(fakes, tmp_path):
    bodies, names = make_maildir(tmp_path / "Maildir", 3)
    f = fakes("--rules", RULES)
    r = bulk(f, "--maildir", tmp_path / "Maildir", to=["alice@x", "full@x"])
    assert r.returncode == 65
    out = lines(r.stdout)
    paths = sorted(str(p) for p in (tmp_path / "Maildir").glob("*/17*"))
    paths.sort(key=os.path.basename)
    assert out[:3] == [f"{p}: full@x permfail 552 5.2.2 <full@x> Quota exceeded" for p in paths]
    assert "0 delivered to every recipient, 3 with failures" in out[3]


def test_worst_verdict_wins(fakes, tmp_path):
    make_maildir(tmp_path / "Maildir", 2)
    f = fakes("--rules", RULES)
    assert bulk(f, "--maildir", tmp_path / "Maildir", to=["alice@x", "temp@x"]).returncode == 75
    assert bulk(f, "--maildir", tmp_path / "Maildir", to=["temp@x", "full@x"]).returncode == 65


MBOX = (b"From alice@x Thu Jan  1 00:00:00 2024\n"
        b"Subject: one\n\nplain line\n>From the start (was From)\n>>From twice (was >From)\n"
        b"From: a header line, not a separator\n"
        b"\n"
        b"From bob@x Thu Jan  1 00:00:01 2024\n"
        b"Subject: two\n\n>not from\n\n\n"
        b"From carol@x Thu Jan  1 00:00:02 2024\r\n"
        b"Subject: three\r\n\r\nlast, with no empty line at the end\r\n")


def test_mbox_mboxrd(fakes, tmp_path):
    mbox = tmp_path / "mbox"
    mbox.write_bytes(MBOX)
    f = fakes()
    r = bulk(f, "--mbox", mbox)
    assert r.returncode == 0, r.stderr
    assert f.messages() == [
        b"Subject: one\r\n\r\nplain line\r\nFrom the start (was From)\r\n>From twice (was >From)\r\n"
        b"From: a header line, not a separator\r\n",
        b"Subject: two\r\n\r\n>not from\r\n\r\n",
        b"Subject: three\r\n\r\nlast, with no empty line at the end\r\n",
    ]
    assert "summary: 3 messages sent" in r.stdout


def test_mbox_not_an_mbox_is_66(fakes, tmp_path):
    bad = tmp_path / "mail.eml"
    bad.write_bytes(b"Subject: not an mbox\n\nhello\n")
    f = fakes()
    r = bulk(f, "--mbox", bad)
    assert r.returncode == 66
    assert f"{bad}#1: unreadable" in r.stdout
    assert f.stop()["MESSAGES"] == 0


def test_missing_sources_are_66(fakes, tmp_path):
    f = fakes()
    assert bulk(f, "--maildir", tmp_path / "none").returncode == 66
    assert bulk(f, "--mbox", tmp_path / "none").returncode == 66
    (tmp_path / "half" / "cur").mkdir(parents=True)
    assert bulk(f, "--maildir", tmp_path / "half").returncode == 66  # no new/
    assert f.stop()["CONNECTIONS"] == 0


def test_unreadable_maildir_message_is_skipped_and_66(fakes, tmp_path):
    bodies, names = make_maildir(tmp_path / "Maildir", 3)
    victim = next((tmp_path / "Maildir").glob("*/" + names[1]))
    victim.chmod(0)
    # Root reads any file unless it runs without the capabilities that let it.
    prefix = ("setpriv", "--bounding-set", "-dac_override,-dac_read_search") if os.geteuid() == 0 else ()
    f = fakes()
    r = bulk(f, "--maildir", tmp_path / "Maildir", prefix=prefix)
    assert r.returncode == 66
    assert f"{victim}: unreadable" in r.stdout
    assert f.stop()["MESSAGES"] == 2


def test_connection_lost_mid_run_stops_and_says_what_was_not_sent(fakes, tmp_path):
    bodies, names = make_maildir(tmp_path / "Maildir", 5)
    paths = sorted((str(p) for p in (tmp_path / "Maildir").glob("*/17*")), key=os.path.basename)
    f = fakes("--fault-on", "MAIL", "--fault-skip", "2", "--fault-action", "close")
    r = bulk(f, "--maildir", tmp_path / "Maildir")
    assert r.returncode == 74
    out = lines(r.stdout)
    assert out[0].startswith(f"{paths[2]}: alice@x unknown - - ")
    assert "summary: 3 messages sent" in out[1] and "2 delivered to every recipient, 1 with failures" in out[1]
    assert out[2].startswith("stopped: ")
    assert out[3] == f"not sent: {paths[3]} and every message after it"
    assert f.stop()["MESSAGES"] == 2


def test_json_lines_and_summary(fakes, tmp_path):
    bodies, names = make_maildir(tmp_path / "Maildir", 3)
    f = fakes("--rules", RULES)
    r = bulk(f, "--maildir", tmp_path / "Maildir", "--json", to=["alice@x", "temp@x"])
    assert r.returncode == 75
    docs = [json.loads(l) for l in lines(r.stdout)]
    assert len(docs) == 4
    for i, d in enumerate(docs[:3]):
        assert d["index"] == i + 1 and os.path.basename(d["message"]) == names[i]
        assert d["bytes"] == len(bodies[i]) and d["exit"] == 75
        assert [x["status"] for x in d["recipients"]] == ["ok", "tempfail"]
    s = docs[3]["summary"]
    assert (s["messages"], s["delivered"], s["failed"], s["unreadable"], s["interrupted"], s["exit"]) == \
        (3, 0, 3, 0, 0, 75)
    assert s["bytes"] == sum(len(b) for b in bodies) and s["stopped_before"] is None and s["error"] is None


def test_connect_failure_in_bulk(tmp_path):
    make_maildir(tmp_path / "Maildir", 1)
    r = run("--server", "127.0.0.1:1", "--from", "a@x", "--to", "b@x", "--maildir", tmp_path / "Maildir", "--json")
    assert r.returncode == 69
    s = json.loads(r.stdout)["summary"]
    assert s["messages"] == 0 and "Connection refused" in s["error"] and s["exit"] == 69


def test_plain_progress_lines_when_not_a_terminal(fakes, tmp_path):
    make_maildir(tmp_path / "Maildir", 4)
    f = fakes()
    r = bulk(f, "--maildir", tmp_path / "Maildir", "--progress-interval", "0.000001")
    assert r.returncode == 0
    progress = [l for l in r.stderr.splitlines() if l.startswith("lmtp-send: ")]
    assert progress, r.stderr
    assert re.fullmatch(r"lmtp-send: 4/4 messages, \d+ B of \d+ B, [\d.]+ \S+/s, [\d.]+ msg/s", progress[-1])
    assert "\r" not in r.stderr and "\x1b" not in r.stderr
    quiet = bulk(f, "--maildir", tmp_path / "Maildir", "--progress-interval", "0")
    assert quiet.stderr == ""
    default = bulk(f, "--maildir", tmp_path / "Maildir")  # every 10 s: a fast run shows none
    assert default.stderr == ""


def test_progress_redrawn_on_a_terminal(fakes, tmp_path):
    make_maildir(tmp_path / "Maildir", 4)
    f = fakes("--reply-delay", "120")
    master, slave = pty.openpty()
    p = subprocess.Popen([SEND, "--server", f.server, "--from", "me@x", "--to", "alice@x",
                          "--maildir", str(tmp_path / "Maildir")],
                         stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    out = p.communicate(timeout=60)[0].decode()
    err = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        err += chunk
    os.close(master)
    assert p.returncode == 0
    assert b"\r\x1b[K" in err and re.search(rb"\d/4 messages, .* of .*, .*/s, .* msg/s", err)
    assert err.endswith(b"\r\x1b[K")  # the line is cleared before the summary
    assert "summary: 4 messages sent" in out


# ---- Ctrl-C: an mbox fed through a pipe, so that the test decides where the run is ---------

def start_piped(fake, tmp_path, *args):
    return subprocess.Popen([SEND, "--server", fake.server, "--from", "me@x", "--to", "alice@x",
                             "--mbox", "/dev/stdin", *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_ctrl_c_finishes_the_current_message_then_stops(fakes, tmp_path):
    f = fakes()
    p = start_piped(f, tmp_path)
    p.stdin.write(b"From a\nSubject: 1\n\none\n\nFrom b\nSubject: 2\n\ntwo, first half\n")
    p.stdin.flush()
    # Message 1 ended at message 2's From line; message 2 is under way once its MAIL is sent.
    assert wait_for(lambda: len(f.messages()) == 1 and f.sent().count(b"MAIL FROM") == 2)
    p.send_signal(signal.SIGINT)
    time.sleep(0.2)
    out, err = p.communicate(b"two, second half\n\nFrom c\nSubject: 3\n\nthree\n", timeout=30)
    assert p.returncode == 130, err
    assert f.messages() == [b"Subject: 1\r\n\r\none\r\n",
                            b"Subject: 2\r\n\r\ntwo, first half\r\ntwo, second half\r\n"]
    out = lines(out.decode())
    assert "summary: 2 messages sent" in out[0] and "2 delivered to every recipient" in out[0]
    assert out[1] == "interrupted by Ctrl-C"
    assert out[2] == "not sent: /dev/stdin#3 and every message after it"


def test_ctrl_c_twice_abandons_the_current_message(fakes, tmp_path):
    f = fakes()
    p = start_piped(f, tmp_path, "--json")
    p.stdin.write(b"From a\nSubject: 1\n\none\n\nFrom b\nSubject: 2\n\ntwo, first half\n")
    p.stdin.flush()
    assert wait_for(lambda: len(f.messages()) == 1 and f.sent().count(b"MAIL FROM") == 2)
    p.send_signal(signal.SIGINT)
    time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    p.wait(timeout=30)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 130, err
    docs = [json.loads(l) for l in lines(out.decode())]
    assert [d["recipients"][0]["status"] for d in docs[:2]] == ["ok", "unknown"]
    assert docs[1]["exit"] == 130 and docs[1]["message"] == "/dev/stdin#2"
    s = docs[2]["summary"]
    assert (s["messages"], s["delivered"], s["failed"], s["interrupted"], s["exit"]) == (2, 1, 1, 2, 130)
    assert s["stopped_before"] == "/dev/stdin#3 (if any)"
    assert f.stop()["MESSAGES"] == 1
