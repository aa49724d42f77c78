"""The connection breaks after the message went out, after k of the n per-recipient
final replies (RFC 2033: one per accepted recipient, in RCPT order): no verdict the
server gave may be lost, and every recipient without one is reported as such.

A matrix over transfer (DATA, BDAT) x action (close: EOF, reset: RST) x n recipients
(1..4) x k replies before the break (0..n), for each face: sendmail, deliver, the
smtplib step API (mail/rcpt/data/getreply; DATA only) and deliver_many (the break at
the end of the second of three messages).

The fake (tests/support/fake-lmtp) stores each message before it answers (or breaks),
and --fault-replies k makes it send the first k final replies, then the fault. The
rules give r0..r3 the final codes 250, 552, 452, 250.
"""
import smtplib

import pytest

import lmtp
from conftest import Fake

RULES = "r0@x=250,250;r1@x=250,552;r2@x=250,452;r3@x=250,250"

# What the fake sends after the message for r0..r3, as (code, message) the faces report it.
FINAL = [
    (250, b"2.0.0 <r0@x> Saved"),
    (552, b"5.2.2 <r1@x> Quota exceeded"),
    (452, b"4.2.2 <r2@x> Mailbox is full, try again later"),
    (250, b"2.0.0 <r3@x> Saved"),
]
OUTCOME = {2: "ok", 4: "temporary", 5: "permanent"}

TRANSFERS = ["data", "bdat"]
ACTIONS = ["close", "reset"]
CELLS = [(n, k) for n in range(1, 5) for k in range(0, n + 1)]
TIMEOUT = 10  # seconds; a break must be noticed at once, never by a deadline


def cells(transfers=TRANSFERS):
    return [pytest.param(t, a, n, k, id="%s-%s-n%d-k%d" % (t, a, n, k))
            for t in transfers for a in ACTIONS for n, k in CELLS]


def rcpts(n):
    return ["r%d@x" % i for i in range(n)]


def body(tag):
    return b"Subject: %s\r\n\r\nthe body of %s\r\n" % (tag.encode(), tag.encode())


def fault_args(transfer, action, k):
    caps = ["--cap", "CHUNKING"] if transfer == "bdat" else []
    return ["--rules", RULES, *caps, "--fault-on", ".", "--fault-replies", str(k), "--fault-action", action]


def final_line(i):
    code, message = FINAL[i]
    return b"%d %s\r\n" % (code, message)


def sent(fake):
    try:
        return fake.sent_path.read_bytes()
    except FileNotFoundError:
        return b""


def fields(results):
    return [(r.address, r.stage, r.code, r.enhanced, r.text, r.message, r.rcpt_code, r.outcome) for r in results]


# ---------------------------------------------------------------------------
# one fake per (transfer, action, k) for the single-message faces; the fault fires at the
# end of every message (fault_times 0), each call connects anew

@pytest.fixture(scope="module")
def faulty(fake_program, tmp_path_factory):
    started = {}

    def get(transfer, action, k):
        key = (transfer, action, k)
        if key not in started:
            directory = tmp_path_factory.mktemp("breaks-%s-%s-k%d" % key)
            started[key] = Fake(fake_program, directory, fault_args(transfer, action, k))
        return started[key]

    yield get
    for f in started.values():
        f.stop()


class Call:
    """What one call did on a shared fake: the bytes the client sent, the messages stored."""

    def __init__(self, fake):
        self.fake = fake
        self.transcript = len(fake.transcript())
        self.messages = len(fake.messages())

    def check(self, transfer, msg):
        fake = self.fake
        got = fake.messages()
        assert len(got) == self.messages + 1, "the server stored the message once"
        assert got[-1] == msg
        wire = fake.transcript()[self.transcript:]
        if transfer == "bdat":
            assert b"BDAT " in wire and b"\r\nDATA\r\n" not in wire
        else:
            assert b"\r\nDATA\r\n" in wire and b"BDAT" not in wire


def check_sent(fake, n, k):
    """On a fake with --fault-replies k the final replies of r0..r{k-1} went out, never the others."""
    out = sent(fake)
    for i in range(n):
        assert (final_line(i) in out) == (i < k), (i, k)


def check_disconnected(exc):
    assert isinstance(exc, smtplib.SMTPServerDisconnected)
    assert isinstance(exc, lmtp.SMTPServerDisconnected)
    assert not isinstance(exc, lmtp.LMTPTimeoutError), "the break was noticed only by a deadline"
    assert str(exc)


def check_results(results, n, k, rcpt_code=250):
    """r0..r{k-1} have the server's verdicts, the others none (unknown, with a reason)."""
    assert [r.address for r in results] == rcpts(n)
    for i, r in enumerate(results):
        if rcpt_code is not None:
            assert r.rcpt_code == rcpt_code, r
        if i < k:
            code, message = FINAL[i]
            assert (r.code, r.message, r.stage) == (code, message, "data"), r
            assert r.outcome == OUTCOME[code // 100], r
            assert r.enhanced == tuple(int(x) for x in message.split()[0].split(b"."))
            assert r.text == message.split(b" ", 1)[1].decode()
            assert (r.ok, r.temporary, r.permanent, r.unknown) == (code == 250, code == 452, code == 552, False)
        else:
            assert (r.code, r.stage, r.outcome) == (0, None, "unknown"), r
            assert (r.ok, r.temporary, r.permanent, r.unknown) == (False, False, False, True)
            assert isinstance(r.text, str) and r.text.strip(), r
            assert r.message == r.text.encode("utf-8", "replace")


def check_reply(reply, i, k):
    """data()/getreply()/a sendmail dict entry: the server's reply, or (421, why) when none came."""
    code, message = reply
    assert isinstance(message, bytes)
    if i < k:
        assert (code, message) == FINAL[i]
    else:
        assert code == 421 and message.strip(), reply


def check_refused(refused, n, k):
    """sendmail's dict: every recipient that did not get it (refused, or no verdict)."""
    want = [a for i, a in enumerate(rcpts(n)) if i >= k or FINAL[i][0] != 250]
    assert sorted(refused) == want
    for i, address in enumerate(rcpts(n)):
        if address in refused:
            check_reply(refused[address], i, k)


def check_unusable(s, fake):
    """After the break the connection is gone: a further deliver raises, nothing more is stored."""
    stored = len(fake.messages())
    with pytest.raises(smtplib.SMTPServerDisconnected) as exc:
        s.deliver("me@x", ["r0@x"], b"after the break\r\n")
    check_disconnected(exc.value)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        s.noop()
    assert len(fake.messages()) == stored


# ---------------------------------------------------------------------------
# sendmail

@pytest.mark.parametrize("transfer, action, n, k", cells())
def test_sendmail(transfer, action, n, k, faulty):
    fake = faulty(transfer, action, k)
    msg = body("sendmail-%s-%s-n%d-k%d" % (transfer, action, n, k))
    call = Call(fake)
    s = lmtp.LMTP(*fake.address, timeout=TIMEOUT)
    try:
        if k == 0:  # nobody is known to have it: the break is raised, carrying every recipient
            with pytest.raises(smtplib.SMTPServerDisconnected) as exc:
                s.sendmail("me@x", rcpts(n), msg)
            check_disconnected(exc.value)
            assert sorted(exc.value.recipients) == rcpts(n)
            check_refused(exc.value.recipients, n, k)
            check_results(exc.value.results, n, k)
        else:  # r0 got it (250): the call returns, no verdict lost
            refused = s.sendmail("me@x", rcpts(n), msg)
            check_refused(refused, n, k)
        check_results(s.last_results, n, k)
    finally:
        s.close()
    call.check(transfer, msg)
    check_sent(fake, n, k)


# ---------------------------------------------------------------------------
# deliver

@pytest.mark.parametrize("transfer, action, n, k", cells())
def test_deliver(transfer, action, n, k, faulty):
    fake = faulty(transfer, action, k)
    msg = body("deliver-%s-%s-n%d-k%d" % (transfer, action, n, k))
    call = Call(fake)
    s = lmtp.LMTP(*fake.address, timeout=TIMEOUT)
    try:
        if k < n:  # someone has no verdict: the break is raised with the results
            with pytest.raises(smtplib.SMTPServerDisconnected) as exc:
                s.deliver("me@x", rcpts(n), msg, transfer=transfer)
            check_disconnected(exc.value)
            results = exc.value.results
        else:  # every verdict came before the break: returned as usual
            results = s.deliver("me@x", rcpts(n), msg, transfer=transfer)
        check_results(results, n, k)
        assert fields(s.last_results) == fields(results)
        call.check(transfer, msg)
        check_unusable(s, fake)
    finally:
        s.close()
    check_sent(fake, n, k)


# ---------------------------------------------------------------------------
# the smtplib step API: data() gives the first recipient's final reply, getreply() each next

@pytest.mark.parametrize("transfer, action, n, k", cells(["data"]))
def test_data_and_getreply(transfer, action, n, k, faulty):
    fake = faulty(transfer, action, k)
    msg = body("steps-%s-%s-n%d-k%d" % (transfer, action, n, k))
    call = Call(fake)
    s = lmtp.LMTP(*fake.address, timeout=TIMEOUT)
    try:
        assert s.ehlo()[0] == 250
        assert s.mail("me@x") == (250, b"2.1.0 OK")
        for address in rcpts(n):
            assert s.rcpt(address) == (250, b"2.1.5 <%s> OK" % address.encode())
        replies = [s.data(msg)]  # no exception, whatever k
        check_results(s.last_results, n, k)
        replies += [s.getreply() for _ in range(n - 1)]
        assert len(replies) == n
        for i, reply in enumerate(replies):
            check_reply(reply, i, k)
        call.check(transfer, msg)
        with pytest.raises(smtplib.SMTPServerDisconnected) as exc:
            s.mail("me@x")
        check_disconnected(exc.value)
        with pytest.raises(smtplib.SMTPServerDisconnected):
            s.noop()
    finally:
        s.close()
    assert len(fake.messages()) == call.messages + 1
    check_sent(fake, n, k)


# ---------------------------------------------------------------------------
# deliver_many: three messages to the same n recipients, the break at the end of the second

@pytest.mark.parametrize("transfer, action, n, k", cells())
def test_deliver_many(transfer, action, n, k, fake_server):
    fake = fake_server(*fault_args(transfer, action, k), "--fault-skip", "1", "--fault-times", "1")
    msgs = [body("batch%d-%s-%s-n%d-k%d" % (j, transfer, action, n, k)) for j in range(3)]
    s = lmtp.LMTP(*fake.address, timeout=TIMEOUT)
    try:
        with pytest.raises(smtplib.SMTPServerDisconnected) as exc:
            s.deliver_many([("me@x", rcpts(n), m) for m in msgs], transfer=transfer)
        check_disconnected(exc.value)
        results = exc.value.results
        assert len(results) == 3
        check_results(results[0], n, n)  # answered before the break: every verdict
        check_results(results[1], n, k)  # the broken one: k verdicts, then unknown
        check_results(results[2], n, 0, rcpt_code=None)  # after the break: nobody knows
        assert fields(s.last_results) == fields(results[-1])
        check_unusable(s, fake)
    finally:
        s.close()
    assert fake.messages() == msgs[:2]  # the third one never reached its end
    wire = fake.transcript()
    if transfer == "bdat":
        assert b"BDAT " in wire and b"\r\nDATA\r\n" not in wire
    else:
        assert b"\r\nDATA\r\n" in wire and b"BDAT" not in wire
    out = sent(fake)
    for i in range(n):  # message 0 got every reply, message 1 the first k
        assert out.count(final_line(i)) == 1 + (i < k), (i, k)
    stats = fake.stop()
    assert stats["MESSAGES"] == 2 and stats["CONNECTIONS"] == 1


# ---------------------------------------------------------------------------
# smtplib's own class and lmtp's are one

def test_the_exception_classes_are_smtplibs():
    assert lmtp.SMTPServerDisconnected is smtplib.SMTPServerDisconnected
    assert issubclass(lmtp.LMTPTimeoutError, smtplib.SMTPServerDisconnected)
    assert issubclass(lmtp.LMTPProtocolError, smtplib.SMTPServerDisconnected)
