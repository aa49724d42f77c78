"""Bad input is refused before anything is sent; a dead or silent server gives
smtplib's exceptions (and a TimeoutError for a deadline), never a hang or a crash."""
import smtplib
import socket
import time

import pytest

import lmtp

MSG = b"Subject: x\r\n\r\nbody\r\n"


def sync(s):
    assert s.noop()[0] == 250


def grew(fake, before):
    """What the client sent since `before`, after a NOOP round trip to be sure it all arrived."""
    return fake.transcript()[len(before):]


BAD_ADDRESSES = ["a\r\nRSET@x", "a@x\r\n", "a@x\nRSET", "a@x\rRSET", "a\0@x", "<a@x>\r\nDATA"]


@pytest.mark.parametrize("bad", BAD_ADDRESSES)
@pytest.mark.parametrize("where", ["sender", "first-rcpt", "last-rcpt", "mail", "rcpt", "send_message-from",
                                   "send_message-to"])
def test_line_breaks_and_nul_in_addresses(bad, where, fake):
    import email.message
    s = lmtp.LMTP(*fake.address)
    if where == "rcpt":
        s.mail("me@x")
    sync(s)
    before = fake.transcript()
    with pytest.raises(ValueError):
        if where == "sender":
            s.sendmail(bad, ["alice@x"], MSG)
        elif where == "first-rcpt":
            s.sendmail("me@x", [bad, "alice@x"], MSG)
        elif where == "last-rcpt":
            s.sendmail("me@x", ["alice@x", "bob@x", bad], MSG)
        elif where == "mail":
            s.mail(bad)
        elif where == "rcpt":
            s.rcpt(bad)
        else:
            m = email.message.Message()
            m["Subject"] = "x"
            m.set_payload("x\n")
            if where == "send_message-from":
                s.send_message(m, from_addr=bad, to_addrs=["alice@x"])
            else:
                s.send_message(m, from_addr="me@x", to_addrs=["alice@x", bad])
    sync(s)
    assert grew(fake, before) == b"NOOP\r\n"  # nothing of it went out, and the session is fine
    s.quit()
    assert fake.messages() == []


@pytest.mark.parametrize("kind, options", [
    ("mail", ["SIZE=10\r\nRSET"]), ("mail", ["X-A=b\nc"]), ("mail", ["X-A=b\0"]), ("mail", ["X\r\n"]),
    ("mail", ["ENVID=ab\rcd"]), ("mail", ["TRANSID=<a\n@x>"]),
    ("rcpt", ["NOTIFY=SUCCESS\r\nRSET"]), ("rcpt", ["ORCPT=rfc822;a@x\r\nRSET"]), ("rcpt", ["X-B=1\n"]),
    ("rcpt", ["X-B=\0"]),
])
def test_line_breaks_and_nul_in_options(kind, options, fake_server):
    f = fake_server("--cap", "DSN", "--cap", "X-A", "--cap", "X-B")
    s = lmtp.LMTP(*f.address)
    sync(s)
    before = f.transcript()
    with pytest.raises(ValueError):
        if kind == "mail":
            s.sendmail("me@x", ["alice@x"], MSG, mail_options=options)
        else:
            s.sendmail("me@x", ["alice@x"], MSG, rcpt_options=options)
    with pytest.raises(ValueError):
        if kind == "mail":
            s.mail("me@x", options)
        else:
            s.rcpt("alice@x", options)
    sync(s)
    assert grew(f, before) == b"NOOP\r\n"
    s.quit()


@pytest.mark.parametrize("cmd, args", [
    ("NOOP\r\nRSET", ""), ("NOOP", "x\r\nRSET"), ("NOOP\n", ""), ("NOOP\r", ""), ("NOOP\0", ""),
    ("NOOP", "a\0b"), ("VRFY", "a@x\nRSET"),
])
@pytest.mark.parametrize("how", ["docmd", "putcmd", "vrfy", "expn", "help", "ehlo"])
def test_line_breaks_and_nul_in_commands(cmd, args, how, fake):
    s = lmtp.LMTP(*fake.address)
    sync(s)
    before = fake.transcript()
    bad = cmd + (" " + args if args else "")
    with pytest.raises(ValueError):
        if how == "docmd":
            s.docmd(cmd, args)
        elif how == "putcmd":
            s.putcmd(cmd, args)
        else:
            getattr(s, how)(bad)
    sync(s)
    assert grew(fake, before) == b"NOOP\r\n"
    s.quit()


def test_smtplib_also_refuses_line_breaks_in_commands(fake):
    s = smtplib.LMTP(*fake.address)
    with pytest.raises(ValueError):
        s.docmd("NOOP\r\nRSET")
    with pytest.raises(ValueError):
        s.putcmd("NOOP", "x\nRSET")
    s.close()


# ---------------------------------------------------------------------------
# a dead server

@pytest.mark.parametrize("cls", [smtplib.LMTP, lmtp.LMTP], ids=["smtplib", "lmtp"])
@pytest.mark.parametrize("action", ["close", "reset"])
def test_server_closes_at_data(cls, action, fake_server):
    f = fake_server("--fault-on", "DATA", "--fault-action", action)
    s = cls(*f.address)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        s.sendmail("me@x", ["alice@x"], MSG)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        s.noop()
    assert f.stop()["MESSAGES"] == 0


def test_server_closes_at_data_results(fake_server):
    f = fake_server("--fault-on", "DATA", "--fault-action", "close")
    s = lmtp.LMTP(*f.address)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        s.deliver("me@x", ["alice@x", "bob@x"], MSG)
    assert [(r.address, r.unknown, r.ok) for r in s.last_results] == [("alice@x", True, False),
                                                                     ("bob@x", True, False)]


@pytest.mark.parametrize("cls", [smtplib.LMTP, lmtp.LMTP], ids=["smtplib", "lmtp"])
def test_server_gone_before_a_command(cls, fake):
    s = cls(*fake.address)
    assert s.noop()[0] == 250
    fake.stop()  # SIGTERM: the server and its connections go away
    with pytest.raises(smtplib.SMTPServerDisconnected):
        s.noop()
    with pytest.raises(smtplib.SMTPServerDisconnected):
        s.noop()  # and stays disconnected
    s.close()


@pytest.mark.parametrize("cls", [smtplib.LMTP, lmtp.LMTP], ids=["smtplib", "lmtp"])
def test_server_closes_after_the_message(cls, fake_server):
    f = fake_server("--fault-on", ".", "--fault-action", "close")
    s = cls(*f.address)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        s.sendmail("me@x", ["alice@x"], MSG)
    f.stop()


def test_connection_refused_in_connect():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    s = lmtp.LMTP()
    with pytest.raises(ConnectionRefusedError):
        s.connect("127.0.0.1", port)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        s.noop()


def test_unknown_host():
    with pytest.raises(OSError):  # socket.gaierror, as socket.create_connection raises
        lmtp.LMTP("no-such-host.invalid", 2003, timeout=5)


@pytest.mark.parametrize("cls", [smtplib.LMTP, lmtp.LMTP], ids=["smtplib", "lmtp"])
def test_garbage_reply(cls, fake_server):
    f = fake_server("--fault-on", "NOOP", "--fault-reply", r"hello there\r\n")
    s = cls(*f.address)
    if cls is smtplib.LMTP:
        assert s.noop() == (-1, b"o there")  # smtplib's way of saying "not a reply"
    else:
        with pytest.raises(smtplib.SMTPServerDisconnected) as exc:  # LMTPProtocolError
            s.noop()
        assert isinstance(exc.value, lmtp.LMTPProtocolError)
        with pytest.raises(smtplib.SMTPServerDisconnected):
            s.noop()
    s.close()


def test_endless_multiline_reply_is_bounded(fake_server):
    # smtplib loops forever on this (its getreply has no bound on the number of lines)
    f = fake_server("--fault-on", "NOOP", "--fault-fill", r"250-more\r\n", "--fault-repeat", "-1")
    s = lmtp.LMTP(*f.address, timeout=5)
    t0 = time.monotonic()
    with pytest.raises(smtplib.SMTPServerDisconnected):
        s.noop()
    assert time.monotonic() - t0 < 5


# ---------------------------------------------------------------------------
# a server that never answers

@pytest.mark.parametrize("fault_on, call", [
    ("", "connect"),
    ("NOOP", "noop"),
    ("MAIL", "sendmail"),
    ("DATA", "sendmail"),
    (".", "sendmail"),
    (".", "deliver"),
    ("QUIT", "quit"),
])
def test_silent_server_times_out(fault_on, call, fake_server):
    f = fake_server("--fault-on", fault_on, "--fault-action", "hang")
    timeout = 0.3
    t0 = time.monotonic()
    with pytest.raises(TimeoutError) as exc:
        s = None
        if call == "connect":
            lmtp.LMTP(*f.address, timeout=timeout)
        else:
            s = lmtp.LMTP(*f.address, timeout=timeout)
            t0 = time.monotonic()
            if call == "noop":
                s.noop()
            elif call == "quit":
                s.quit()
            else:
                getattr(s, call)("me@x", ["alice@x", "bob@x"], MSG)
    elapsed = time.monotonic() - t0
    assert 0.25 <= elapsed < 1.0, elapsed
    assert isinstance(exc.value, smtplib.SMTPServerDisconnected)  # what smtplib raises on a socket timeout
    assert isinstance(exc.value, lmtp.LMTPTimeoutError)
    if s is not None:
        with pytest.raises(smtplib.SMTPServerDisconnected):  # the connection was closed
            s.noop()


def test_smtplib_timeout_for_comparison(fake_server):
    f = fake_server("--fault-on", "NOOP", "--fault-action", "hang")
    s = smtplib.LMTP(*f.address, timeout=0.3)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        s.noop()


def test_timeout_with_a_stalled_reader(fake_server):
    # the server stops reading: writing the message blocks, and the deadline applies to writes too
    f = fake_server("--fault-on", "DATA", "--fault-keep", "--fault-action", "stop-reading", "--rcvbuf", "4096")
    s = lmtp.LMTP(*f.address, timeout=0.3)
    big = b"Subject: big\r\n\r\n" + b"x" * 78 + b"\r\n" * 1
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        s.sendmail("me@x", ["alice@x"], (big * 200000 for _ in range(1)))
    # 0.3 s per write, not the default 120 s; the margin is for a loaded machine (16 MB to build).
    assert time.monotonic() - t0 < 5.0


def test_invalid_timeouts(fake):
    with pytest.raises(ValueError):
        lmtp.LMTP(*fake.address, timeout=0)  # smtplib: "Non-blocking socket (timeout=0) is not supported"
    with pytest.raises(ValueError):
        smtplib.LMTP(*fake.address, timeout=0)
    s = lmtp.LMTP(*fake.address, timeout=None)  # no deadline, as smtplib
    assert s.noop()[0] == 250
    s.quit()


def test_socket_default_timeout_is_used(fake_server):
    f = fake_server("--fault-on", "NOOP", "--fault-action", "hang")
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(0.3)
    try:
        s = lmtp.LMTP(*f.address)
    finally:
        socket.setdefaulttimeout(old)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        s.noop()
    assert time.monotonic() - t0 < 1.0
