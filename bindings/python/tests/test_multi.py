"""Several recipients in one transaction: where smtplib.LMTP is wrong and lmtp.LMTP right.

After the message an LMTP server sends one reply per accepted recipient
(RFC 2033 section 4.2). smtplib reads only the first one, so it misses later
refusals and the next command reads a stale reply.
"""
import smtplib

import pytest

import lmtp
from conftest import FULL, NOSUCH, TEMP, saved

MSG = b"From: me@x\r\nSubject: several\r\n\r\nFor all of you.\r\n"
RCPTS = ["alice@x", "full@x", "bob@x"]


def test_smtplib_falls_a_reply_behind(fake):
    """What smtplib.LMTP does (the bug this package exists for); documents the contrast."""
    s = smtplib.LMTP(*fake.address)
    assert s.sendmail("me@x", RCPTS, MSG) == {}  # full@x's 552 went unnoticed
    assert s.noop() == FULL  # ...and is read as the reply to NOOP
    assert s.noop() == saved("bob@x")
    s.close()


def test_lmtp_reads_every_reply(fake):
    s = lmtp.LMTP(*fake.address)
    assert s.sendmail("me@x", RCPTS, MSG) == {"full@x": FULL}
    assert s.noop() == (250, b"2.0.0 OK")  # its own reply
    assert s.sendmail("me@x", ["bob@x", "nosuch@x", "temp@x"], MSG) == {"nosuch@x": NOSUCH, "temp@x": TEMP}
    assert s.noop() == (250, b"2.0.0 OK")
    assert s.quit()[0] == 221
    assert fake.messages() == [MSG, MSG]
    assert fake.stop()["LOCKSTEP_VIOLATIONS"] == 0


def test_sendmail_nobody_got_it(fake):
    s = lmtp.LMTP(*fake.address)
    with pytest.raises(smtplib.SMTPDataError) as exc:
        s.sendmail("me@x", ["full@x", "nosuch@x", "temp@x"], MSG)
    e = exc.value
    assert isinstance(e, lmtp.LMTPDataError)
    assert (e.smtp_code, e.smtp_error) == FULL  # the first refusal after DATA, as smtplib reports it
    assert e.recipients == {"full@x": FULL, "nosuch@x": NOSUCH, "temp@x": TEMP}
    assert s.noop() == (250, b"2.0.0 OK")
    with pytest.raises(smtplib.SMTPRecipientsRefused) as exc:
        s.sendmail("me@x", ["nosuch@x", "nosuch@x"], MSG)
    assert exc.value.recipients == {"nosuch@x": NOSUCH}
    assert s.noop() == (250, b"2.0.0 OK")
    s.quit()


def test_deliver_results(fake_server):
    f = fake_server("--rules", "alice@x=250,250;full@x=250,552;temp@x=250,452;nosuch@x=550;"
                               "multi@x=250,451:first|second", "--reply-delay", "20")
    s = lmtp.LMTP(*f.address)
    rcpts = ["alice@x", "nosuch@x", "full@x", "alice@x", "temp@x", "multi@x", "Bob <bob@x>"]
    results = s.deliver("me@x", rcpts, MSG)
    assert isinstance(results, list) and all(isinstance(r, lmtp.Result) for r in results)
    assert [r.address for r in results] == ["alice@x", "nosuch@x", "full@x", "alice@x", "temp@x", "multi@x", "bob@x"]
    assert [r.stage for r in results] == ["data", "rcpt", "data", "data", "data", "data", "data"]
    assert [r.code for r in results] == [250, 550, 552, 250, 452, 451, 250]
    assert [r.enhanced for r in results] == [(2, 0, 0), (5, 1, 1), (5, 2, 2), (2, 0, 0), (4, 2, 2), (4, 3, 0),
                                             (2, 0, 0)]
    assert [r.text for r in results] == [
        "<alice@x> Saved", "<nosuch@x> User doesn't exist", "<full@x> Quota exceeded", "<alice@x> Saved",
        "<temp@x> Mailbox is full, try again later", "first\nsecond", "<bob@x> Saved"]
    assert results[5].message == b"4.3.0 first\n4.3.0 second"
    assert results[1].message == NOSUCH[1]
    assert [r.ok for r in results] == [True, False, False, True, False, False, True]
    assert [r.temporary for r in results] == [False, False, False, False, True, True, False]
    assert [r.permanent for r in results] == [False, True, True, False, False, False, False]
    assert not any(r.unknown for r in results)
    assert [r.rcpt_code for r in results] == [250, 550, 250, 250, 250, 250, 250]
    assert [(r.address, r.code) for r in s.last_results] == [(r.address, r.code) for r in results]
    assert "alice@x" in repr(results[0])
    s.close()
    lines = f.transcript().split(b"\r\n")
    assert lines[1:10] == [b"MAIL FROM:<me@x>", b"RCPT TO:<alice@x>", b"RCPT TO:<nosuch@x>", b"RCPT TO:<full@x>",
                           b"RCPT TO:<alice@x>", b"RCPT TO:<temp@x>", b"RCPT TO:<multi@x>", b"RCPT TO:<bob@x>",
                           b"DATA"]
    stats = f.stop()
    assert stats["MESSAGES"] == 1
    # greeting + LHLO + (MAIL..DATA in one go) + (body, then every reply at once)
    assert stats["FLUSHES"] == 4
    assert stats["LOCKSTEP_VIOLATIONS"] == 0


def test_two_round_trips_per_delivery(fake_server):
    f = fake_server("--reply-delay", "10")
    s = lmtp.LMTP(*f.address)
    for i in range(5):
        results = s.deliver("me@x", ["a%d@x" % i, "b@x", "c@x"], MSG)
        assert [r.ok for r in results] == [True, True, True]
    s.close()
    stats = f.stop()
    assert stats["MESSAGES"] == 5
    assert stats["FLUSHES"] == 2 + 2 * 5
    assert stats["LOCKSTEP_VIOLATIONS"] == 0


def test_without_pipelining_lockstep(fake_server):
    f = fake_server("--no-pipelining", "--rules", "nosuch@x=550;full@x=250,552", "--reply-delay", "10")
    s = lmtp.LMTP(*f.address)
    assert not s.has_extn("pipelining")
    assert s.sendmail("me@x", ["alice@x", "nosuch@x", "full@x"], MSG) == {"nosuch@x": NOSUCH, "full@x": FULL}
    s.quit()
    stats = f.stop()
    assert stats["LOCKSTEP_VIOLATIONS"] == 0
    assert stats["MESSAGES"] == 1


def test_deliver_mail_refused(fake_server):
    f = fake_server("--fault-on", "MAIL", "--fault-reply", r"451 4.3.0 try later\r\n", "--fault-times", "1")
    s = lmtp.LMTP(*f.address)
    results = s.deliver("me@x", ["alice@x", "bob@x"], MSG)
    assert [(r.address, r.stage, r.code, r.enhanced, r.temporary) for r in results] == [
        ("alice@x", "mail", 451, (4, 3, 0), True), ("bob@x", "mail", 451, (4, 3, 0), True)]
    assert s.noop() == (250, b"2.0.0 OK")
    assert [r.ok for r in s.deliver("me@x", ["alice@x", "bob@x"], MSG)] == [True, True]
    s.quit()
    assert f.messages() == [MSG]


def test_data_method_reads_every_reply(fake):
    s = lmtp.LMTP(*fake.address)
    s.ehlo()
    assert s.mail("me@x")[0] == 250
    for r in RCPTS:
        assert s.rcpt(r)[0] == 250
    assert s.data(MSG) == saved("alice@x")  # the first recipient's, as smtplib returns
    assert [(r.address, r.code) for r in s.last_results] == [("alice@x", 250), ("full@x", 552), ("bob@x", 250)]
    assert s.noop() == (250, b"2.0.0 OK")
    s.quit()


def test_fewer_replies_than_recipients(fake_server):
    # the server answers for the first recipient only, then goes silent: a timeout, and the
    # recipients without a verdict are "unknown"
    f = fake_server("--fault-on", ".", "--fault-reply", r"250 2.0.0 <alice@x> Saved\r\n", "--fault-action", "hang")
    s = lmtp.LMTP(*f.address, timeout=0.3)
    with pytest.raises(TimeoutError):
        s.deliver("me@x", ["alice@x", "bob@x"], MSG)
    assert [(r.address, r.ok, r.unknown) for r in s.last_results] == [("alice@x", True, False),
                                                                     ("bob@x", False, True)]
    with pytest.raises(smtplib.SMTPServerDisconnected):
        s.noop()


def test_many_recipients_do_not_deadlock(fake_server):
    # pipelining thousands of RCPTs: the client must read replies while it writes (RFC 2920,
    # section 3.1), or both sides block on full socket buffers
    f = fake_server("--rcvbuf", "4096", "--rules", "r00007@x=550;r19999@x=250,452")
    s = lmtp.LMTP(*f.address, timeout=10)
    rcpts = ["r%05d@x" % i for i in range(20000)]
    results = s.deliver("me@x", rcpts, MSG)
    assert len(results) == 20000
    assert [r.address for r in results] == rcpts
    assert [(r.address, r.code) for r in results if not r.ok] == [("r00007@x", 550), ("r19999@x", 452)]
    assert s.noop() == (250, b"2.0.0 OK")
    s.close()
    assert f.stop()["MESSAGES"] == 1
