"""lmtp-send against a real Dovecot LMTP (tests/support/dovecot.sh): verdicts, exit codes,
Maildir and mbox bulk runs landing in the Maildirs, and Ctrl-C delivering only whole messages."""
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile

import pytest

from clitest import DOVECOT, SEND, lines, run, wait_for

STRICT = os.environ.get("LMTP_TEST_STRICT") == "1"


@pytest.fixture(scope="module")
def dovecot():
    if not DOVECOT or not os.access("/usr/sbin/dovecot", os.X_OK):
        if STRICT:
            pytest.fail("Dovecot is needed (apt-get install dovecot-core dovecot-lmtpd)")
        pytest.skip("no Dovecot")
    base = tempfile.mkdtemp(prefix="lmtp-cli-dovecot.")
    d = os.path.join(base, "server")
    out = subprocess.run([DOVECOT, "start", d], check=True, capture_output=True, text=True).stdout
    env = dict(l.split("=", 1) for l in out.splitlines() if "=" in l)
    yield env
    subprocess.run([DOVECOT, "stop", d], check=False)
    shutil.rmtree(base, ignore_errors=True)


def landed(env, user):
    d = os.path.join(env["LMTP_DIR"], "mail", user, "Maildir", "new")
    return sorted(os.path.join(d, f) for f in os.listdir(d)) if os.path.isdir(d) else []


def message_ids(paths):
    ids = set()
    for p in paths:
        with open(p, "rb") as f:
            m = re.search(rb"^Message-ID: <([^@>]+)@test>", f.read(), re.M)
            if m:
                ids.add(m.group(1).decode())
    return ids


def deliver(env, *args, to, server=None):
    rcpts = [a for t in to for a in ("--to", t)]
    return run("--server", server or f"127.0.0.1:{env['LMTP_PORT']}", "--from", "sender@example.org",
               *rcpts, *args)


def write_message(path, tag):
    path.write_bytes(f"From: sender@example.org\nSubject: {tag}\nMessage-ID: <{tag}@test>\n\n"
                     f"Body of {tag}.\n.leading dot\n".encode())


def test_one_message_four_recipients(dovecot, tmp_path):
    msg = tmp_path / "m.eml"
    write_message(msg, "single")
    before = {u: len(landed(dovecot, u)) for u in ("alice", "bob", "full")}
    r = deliver(dovecot, msg, to=["alice@example.org", "bob@example.org", "full@example.org",
                                  "nosuch@example.org"])
    assert r.returncode == 65, r.stderr
    out = lines(r.stdout)
    assert len(out) == 4
    assert re.fullmatch(r"alice@example\.org ok 250 2\.0\.0 <alice@example\.org> \S+ Saved", out[0])
    assert re.fullmatch(r"bob@example\.org ok 250 2\.0\.0 <bob@example\.org> \S+ Saved", out[1])
    assert re.fullmatch(r"full@example\.org permfail 552 5\.2\.2 <full@example\.org> Quota exceeded.*", out[2])
    assert re.fullmatch(r"nosuch@example\.org permfail 550 5\.1\.1 <nosuch@example\.org> User doesn't exist.*",
                        out[3])
    after = {u: landed(dovecot, u) for u in ("alice", "bob", "full")}
    assert len(after["alice"]) == before["alice"] + 1 and len(after["bob"]) == before["bob"] + 1
    assert len(after["full"]) == before["full"]
    assert "single" in message_ids(after["alice"]) and "single" in message_ids(after["bob"])
    with open(after["bob"][-1], "rb") as f:
        assert f.read().endswith(b"Body of single.\n.leading dot\n")


def test_exit_codes_over_the_unix_socket(dovecot, tmp_path):
    msg = tmp_path / "m.eml"
    write_message(msg, "unix")
    sock = dovecot["LMTP_SOCKET"]
    assert deliver(dovecot, msg, to=["alice@example.org", "bob@example.org"], server=sock).returncode == 0
    r = deliver(dovecot, msg, to=["alice@example.org", "tempfull@example.org"], server=sock)
    assert r.returncode == 75
    assert lines(r.stdout)[1].startswith("tempfull@example.org tempfail 452 4.2.2 ")
    r = deliver(dovecot, msg, "--json", to=["full@example.org"], server=sock)
    assert r.returncode == 65
    doc = json.loads(r.stdout)
    assert doc["recipients"][0]["code"] == 552 and doc["recipients"][0]["stage"] == "data"


def make_maildir(root, count, prefix):
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True)
    for i in range(count):
        write_message(root / ("new" if i % 3 else "cur") / f"{1700000000 + i}.M{i}.host", f"{prefix}-{i:03d}")
    return {f"{prefix}-{i:03d}" for i in range(count)}


def test_maildir_bulk(dovecot, tmp_path):
    ids = make_maildir(tmp_path / "Maildir", 50, "md")
    before = len(landed(dovecot, "alice"))
    r = deliver(dovecot, "--maildir", tmp_path / "Maildir", to=["alice@example.org", "bob@example.org"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "summary: 50 messages sent" in r.stdout and "50 delivered to every recipient, 0 with failures" in r.stdout
    assert len(landed(dovecot, "alice")) == before + 50
    assert ids <= message_ids(landed(dovecot, "alice")) and ids <= message_ids(landed(dovecot, "bob"))


def test_mbox_bulk(dovecot, tmp_path):
    mbox = tmp_path / "mbox"
    with open(mbox, "wb") as f:
        for i in range(50):
            f.write(f"From sender@example.org Mon Jan  1 00:00:{i % 60:02d} 2024\n"
                    f"Subject: mb-{i:03d}\nMessage-ID: <mb-{i:03d}@test>\n\n"
                    f">From the body of {i}\n>>From quoted\nend\n\n".encode())
    before = len(landed(dovecot, "alice"))
    r = deliver(dovecot, "--mbox", mbox, to=["alice@example.org", "full@example.org"])
    assert r.returncode == 65
    out = lines(r.stdout)
    assert len([l for l in out if " full@example.org permfail 552 5.2.2 " in l]) == 50
    assert out[50].startswith("summary: 50 messages sent") and "0 delivered to every recipient, 50 with" in out[50]
    after = landed(dovecot, "alice")
    assert len(after) == before + 50
    ids = message_ids(after)
    assert {f"mb-{i:03d}" for i in range(50)} <= ids
    for p in after:
        with open(p, "rb") as f:
            data = f.read()
        if b"Message-ID: <mb-007@test>" in data:
            assert data.endswith(b"\n\nFrom the body of 7\n>From quoted\nend\n")


def test_ctrl_c_during_a_bulk_run_delivers_whole_messages_only(dovecot, tmp_path):
    ids = make_maildir(tmp_path / "Maildir", 400, "int")
    before = set(landed(dovecot, "bob"))
    p = subprocess.Popen([SEND, "--server", f"127.0.0.1:{dovecot['LMTP_PORT']}", "--from", "s@example.org",
                          "--to", "bob@example.org", "--maildir", str(tmp_path / "Maildir"), "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = p.stdout.readline()
    assert json.loads(first)["recipients"][0]["status"] == "ok"
    p.send_signal(signal.SIGINT)
    rest, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    docs = [json.loads(first)] + [json.loads(l) for l in rest.decode().splitlines()]
    summary = docs.pop()["summary"]
    reported = {os.path.basename(d["message"]).split(".")[0] for d in docs
                if d["recipients"][0]["status"] == "ok"}
    assert summary["interrupted"] == 1 and summary["messages"] == len(docs) == summary["delivered"]
    assert 0 < len(docs) < 400, "the run should have been stopped early"
    assert summary["stopped_before"]
    new = sorted(set(landed(dovecot, "bob")) - before)
    assert len(new) == len(docs)  # exactly the messages reported, each whole
    got = message_ids(new)
    assert got <= ids and len(got) == len(docs)
    for path in new:
        with open(path, "rb") as f:
            assert f.read().endswith(b".\n.leading dot\n")  # whole: the message's last line is there
    assert len(reported) == len(docs)


def test_ctrl_c_twice_abandons_a_message_dovecot_never_stores(dovecot):
    before = len(landed(dovecot, "alice"))
    p = subprocess.Popen([SEND, "--server", f"127.0.0.1:{dovecot['LMTP_PORT']}", "--from", "s@example.org",
                          "--to", "alice@example.org", "--mbox", "/dev/stdin", "-v"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdin.write(b"From a\nSubject: kept\nMessage-ID: <kept@test>\n\nwhole\n\n"
                  b"From b\nSubject: abandoned\nMessage-ID: <abandoned@test>\n\nhalf of it\n")
    p.stdin.flush()
    while True:  # the trace shows message 1's verdict: message 2 is being read (its first chunk
        line = p.stderr.readline()  # goes with its MAIL and RCPT, so nothing of it is sent yet)
        assert line, "lmtp-send ended early"
        if line.startswith(b"<<< 250 2.0.0 <alice@example.org>"):
            break
    assert wait_for(lambda: len(landed(dovecot, "alice")) == before + 1)
    wait_for(lambda: False, 0.3)
    p.send_signal(signal.SIGINT)
    wait_for(lambda: False, 0.2)
    p.send_signal(signal.SIGINT)
    p.wait(timeout=30)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 130, err
    out = lines(out.decode())
    assert out[0].startswith("/dev/stdin#2: alice@example.org unknown - - ")
    assert out[1] == "/dev/stdin#2: abandoned by Ctrl-C: delivered to no one"
    assert "summary: 2 messages sent" in out[2] and "1 delivered to every recipient, 1 with failures" in out[2]
    wait_for(lambda: False, 0.3)
    after = landed(dovecot, "alice")
    assert len(after) == before + 1
    ids = message_ids(after)
    assert "kept" in ids and "abandoned" not in ids
