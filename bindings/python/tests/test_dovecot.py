"""Against a real Dovecot LMTP (tests/support/dovecot.sh): what the client reports
for each recipient is what landed in the Maildirs."""
import email.parser
import json
import smtplib
import threading
import uuid

import pytest

import lmtp
from conftest import PEAK_KB, run_child

D = "@example.org"
SENDER = "sender" + D


def unique(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:12])


def message(subject, body=b"Hello from the tests.\r\n.dot line\r\n"):
    return b"From: " + SENDER.encode() + b"\r\nSubject: " + subject.encode() + b"\r\n\r\n" + body


def stored_with_subject(dovecot, user, subject):
    """The raw files in user's Maildir whose Subject is `subject` (headers parsed from the first 64 KiB)."""
    out = []
    for path in dovecot.message_files(user):
        with open(path, "rb") as f:
            head = f.read(65536)
        h = email.parser.BytesParser().parsebytes(head, headersonly=True)
        if h["Subject"] == subject:
            out.append(path)
    return out


def test_per_recipient_results_match_the_maildirs(dovecot):
    subject = unique("per-recipient")
    users = ["alice", "full", "bob", "tempfull", "broken", "nosuch"]
    with lmtp.LMTP("127.0.0.1", dovecot.port) as s:
        results = s.deliver(SENDER, [u + D for u in users], message(subject))
    got = [(r.address, r.stage, r.code, r.enhanced, r.ok, r.temporary, r.permanent) for r in results]
    assert got == [
        ("alice" + D, "data", 250, (2, 0, 0), True, False, False),
        ("full" + D, "data", 552, (5, 2, 2), False, False, True),
        ("bob" + D, "data", 250, (2, 0, 0), True, False, False),
        ("tempfull" + D, "data", 452, (4, 2, 2), False, True, False),
        ("broken" + D, "data", 451, (4, 2, 0), False, True, False),
        ("nosuch" + D, "rcpt", 550, (5, 1, 1), False, False, True),
    ], dovecot.log()[-2000:]
    assert "Quota exceeded" in results[1].text
    assert results[0].text.startswith("<alice" + D + ">") and results[0].text.endswith("Saved")
    # what the server says is what it did
    for user, n in [("alice", 1), ("bob", 1), ("full", 0), ("tempfull", 0), ("broken", 0), ("nosuch", 0)]:
        assert len(stored_with_subject(dovecot, user, subject)) == n, user
    [m] = dovecot.messages("alice", subject)
    assert m.get_payload() == "Hello from the tests.\n.dot line\n"
    assert m["From"] == SENDER


def test_sendmail_reports_refusals_after_data(dovecot):
    subject = unique("sendmail")
    s = lmtp.LMTP("127.0.0.1", dovecot.port)
    refused = s.sendmail(SENDER, ["alice" + D, "full" + D, "tempfull" + D, "broken" + D, "nosuch" + D],
                         message(subject))
    assert {a: c for a, (c, m) in refused.items()} == {"full" + D: 552, "tempfull" + D: 452, "broken" + D: 451,
                                                       "nosuch" + D: 550}
    assert refused["full" + D][1].startswith(b"5.2.2 ")
    assert refused["nosuch" + D][1].startswith(b"5.1.1 ")
    assert s.noop()[0] == 250  # in step
    with pytest.raises(smtplib.SMTPDataError) as exc:
        s.sendmail(SENDER, ["full" + D], message(subject))
    assert exc.value.smtp_code == 552
    with pytest.raises(smtplib.SMTPRecipientsRefused) as exc:
        s.sendmail(SENDER, ["nosuch" + D], message(subject))
    assert exc.value.recipients["nosuch" + D][0] == 550
    assert s.quit()[0] == 221
    assert len(stored_with_subject(dovecot, "alice", subject)) == 1


def test_smtplib_against_dovecot_falls_behind(dovecot):
    """The contrast with the real server: smtplib misses full's 552 and reads it later."""
    s = smtplib.LMTP("127.0.0.1", dovecot.port)
    assert s.sendmail(SENDER, ["alice" + D, "full" + D], message(unique("smtplib"))) == {}
    code, msg = s.noop()
    assert code == 552 and msg.startswith(b"5.2.2 ")
    s.close()


@pytest.mark.parametrize("cls", [smtplib.LMTP, lmtp.LMTP], ids=["smtplib", "lmtp"])
def test_unix_socket(cls, dovecot):
    subject = unique("unix")
    s = cls(dovecot.socket)
    assert s.sendmail(SENDER, ["bob" + D], message(subject)) == {}
    assert s.quit()[0] == 221
    [m] = dovecot.messages("bob", subject)
    assert m.get_payload() == "Hello from the tests.\n.dot line\n"
    assert m["Delivered-To"] == "bob" + D


def test_send_message_to_dovecot(dovecot):
    import email.message
    subject = unique("send-message")
    m = email.message.EmailMessage()
    m["From"] = SENDER
    m["To"] = "alice" + D
    m["Bcc"] = "bob" + D
    m["Subject"] = subject
    m.set_content("caf\u00e9\n")  # 8-bit body: the policy picks a transfer encoding
    with lmtp.LMTP(dovecot.socket) as s:
        assert s.send_message(m) == {}
    [a] = dovecot.messages("alice", subject)
    [b] = dovecot.messages("bob", subject)
    assert a["Bcc"] is None and b["Bcc"] is None
    assert a.get_payload(decode=True).decode(a.get_content_charset()) == "caf\u00e9\n"


# ---------------------------------------------------------------------------
# a 20 MB message from a file, in bounded memory

# The peak resident size of THIS process: VmHWM belongs to the address space made by exec,
# while ru_maxrss also carries the peak of the (big) pytest process the child was forked from.
CHILD = PEAK_KB + r"""
import json, sys
import lmtp

path, port, sender, rcpt = sys.argv[1:]
s = lmtp.LMTP("127.0.0.1", int(port))
# warm up the same code path with a small file-like message
import io
assert s.sendmail(sender, [rcpt], io.BytesIO(b"Subject: warm-up\n\nwarm\n" * 1000)) == {}
before = peak_kb()
with open(path, "rb") as f:
    results = s.deliver(sender, [rcpt], f)
after = peak_kb()
s.quit()
print(json.dumps({"before_kb": before, "after_kb": after,
                  "results": [(r.address, r.code, r.ok) for r in results]}))
"""


def test_20mb_message_streamed_from_a_file(dovecot, tmp_path):
    subject = unique("big")
    line = b"The quick brown fox jumps over the lazy dog 0123456789 abcdefghijklmnopqrstuvw\n"  # 80 bytes
    body_lines = []
    size = 0
    i = 0
    while size < 20 * 1024 * 1024:
        l = (b"." if i % 1000 == 0 else b"") + b"%08d " % i + line  # some lines need dot-stuffing
        body_lines.append(l)
        size += len(l)
        i += 1
    body = b"".join(body_lines)
    del body_lines
    path = tmp_path / "big.eml"
    path.write_bytes(b"From: " + SENDER.encode() + b"\nSubject: " + subject.encode() + b"\n\n" + body)
    r = run_child(CHILD, path, dovecot.port, SENDER, "alice" + D)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert report["results"] == [["alice" + D, 250, True]]
    growth_kb = report["after_kb"] - report["before_kb"]
    print("peak RSS %d KiB before, %d KiB after" % (report["before_kb"], report["after_kb"]))
    assert growth_kb < 4 * 1024, "peak memory grew by %d KiB for a %d KiB message" % (growth_kb, size // 1024)

    [stored] = stored_with_subject(dovecot, "alice", subject)
    data = stored.read_bytes()
    head, sep, stored_body = data.partition(b"\n\n")
    assert sep
    assert len(stored_body) == len(body)
    assert stored_body == body
    path.unlink()


# ---------------------------------------------------------------------------
# threads

def test_eight_threads_each_with_its_own_connection(dovecot):
    run = unique("threads")
    n_threads, per_thread = 8, 5
    errors, results = [], {}
    barrier = threading.Barrier(n_threads)

    def worker(k):
        try:
            with lmtp.LMTP("127.0.0.1", dovecot.port) as s:
                barrier.wait(timeout=10)
                for j in range(per_thread):
                    rs = s.deliver(SENDER, ["alice" + D, "bob" + D], message("%s-%d-%d" % (run, k, j)))
                    results[(k, j)] = [(r.address, r.code) for r in rs]
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(results) == n_threads * per_thread
    for rs in results.values():
        assert rs == [("alice" + D, 250), ("bob" + D, 250)]
    for user in ("alice", "bob"):
        subjects = set()
        for path in dovecot.message_files(user):
            with open(path, "rb") as f:
                h = email.parser.BytesParser().parsebytes(f.read(65536), headersonly=True)
            if h["Subject"] and h["Subject"].startswith(run + "-"):
                subjects.add(h["Subject"])
        assert subjects == {"%s-%d-%d" % (run, k, j) for k in range(n_threads) for j in range(per_thread)}


@pytest.mark.parametrize("transfer", ["bdat", "data"])
def test_deliver_many_every_message_lands(dovecot, transfer):
    """A batch pipelined back to back; messages whose only recipient is refused in between (to
    which Dovecot answers BDAT LAST with 503 and keeps the transaction) desynchronise nothing."""
    subjects = [unique("batch-%s-%d" % (transfer, i)) for i in range(60)]
    batch = []
    for i, subject in enumerate(subjects):
        rcpts = ["nosuch" + D] if i % 10 == 3 else ["alice" + D, "bob" + D]
        batch.append((SENDER, rcpts, message(subject, b"message %d\r\n" % i)))
    with lmtp.LMTP("127.0.0.1", dovecot.port) as s:
        s.ehlo()
        if transfer == "bdat" and not s.has_extn("chunking"):
            pytest.skip("this Dovecot does not offer CHUNKING")
        results = s.deliver_many(batch, transfer=transfer)
        assert s.noop()[0] == 250  # the session is in step after the batch
    assert len(results) == len(batch)
    # Each mailbox read once (it holds every test's messages), by Subject.
    stored = {}
    for user in ("alice", "bob"):
        for m in dovecot.messages(user):
            stored.setdefault((user, m["Subject"]), []).append(m)
    for i, (subject, rs) in enumerate(zip(subjects, results)):
        if i % 10 == 3:
            assert [(r.stage, r.code) for r in rs] == [("rcpt", 550)], dovecot.log()[-2000:]
            assert ("alice", subject) not in stored
        else:
            assert [r.ok for r in rs] == [True, True], (i, rs, dovecot.log()[-2000:])
            for user in ("alice", "bob"):
                [m] = stored[(user, subject)]
                assert m.get_payload() == "message %d\n" % i
