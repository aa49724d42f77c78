"""lmtp.LMTP is a drop-in for smtplib.LMTP.

Each test body here runs twice, once with smtplib.LMTP and once with
lmtp.LMTP (the LMTP fixture), against the fake server, with ONE recipient per
transaction (where smtplib is right), and checks the same return values,
exceptions, stored messages and (case-insensitively: smtplib sends "mail",
"rcpt", ... in lower case) the same commands on the wire.

Known, deliberate differences are asserted separately at the end of the file.
"""
import email.message
import errno
import re
import smtplib
import socket

import pytest

import lmtp
from conftest import BANNER, FEATURES, FULL, LHLO_REPLY, MAIL_OK, NOSUCH, rcpt_ok, saved

MSG = b"From: me@x\r\nTo: alice@x\r\nSubject: hello\r\n\r\nHello Alice.\r\n.A line with a dot.\r\n"
MSG_ON_WIRE = b"From: me@x\r\nTo: alice@x\r\nSubject: hello\r\n\r\nHello Alice.\r\n..A line with a dot.\r\n.\r\n"


VERBS = {b"LHLO", b"HELO", b"EHLO", b"MAIL", b"RCPT", b"DATA", b"RSET", b"NOOP", b"VRFY", b"EXPN", b"HELP",
         b"ETRN", b"QUIT"}


def lines_ci(transcript):
    """The lines of a transcript, command verbs upper-cased (smtplib sends them in lower case)."""
    out = []
    for line in transcript.split(b"\r\n"):
        verb, sp, rest = line.partition(b" ")
        out.append(verb.upper() + sp + rest if verb.upper() in VERBS else line)
    return out


def barrier(server):
    """A NOOP round trip: everything sent before it has reached the fake's transcript."""
    assert server.noop()[0] == 250


# ---------------------------------------------------------------------------
# whole transactions

def test_sendmail_success(LMTP, fake):
    s = LMTP(*fake.address)
    assert s.sendmail("me@x", "alice@x", MSG) == {}
    assert s.sendmail("me@x", ["bob@x"], MSG) == {}
    assert s.quit()[0] == 221
    assert fake.messages() == [MSG, MSG]
    t = fake.transcript()
    assert MSG_ON_WIRE in t
    lines = lines_ci(t)
    assert lines[0].startswith(b"LHLO ")
    assert lines[1:4] == [b"MAIL FROM:<me@x>", b"RCPT TO:<alice@x>", b"DATA"]
    assert lines[-2:] == [b"QUIT", b""]
    stats = fake.stop()
    assert stats["MESSAGES"] == 2 and stats["CONNECTIONS"] == 1


def test_recipient_refused_at_rcpt(LMTP, fake):
    s = LMTP(*fake.address)
    with pytest.raises(smtplib.SMTPRecipientsRefused) as exc:
        s.sendmail("me@x", ["nosuch@x"], MSG)
    assert exc.value.recipients == {"nosuch@x": NOSUCH}
    # the session is still in step: the next command gets its own reply
    assert s.noop() == (250, b"2.0.0 OK")
    assert s.sendmail("me@x", ["alice@x"], MSG) == {}
    s.quit()
    assert fake.messages() == [MSG]
    # the body went out once, for alice (ours may pipeline DATA, which the server refuses with 503)
    assert fake.transcript().count(b"Hello Alice.") == 1


def test_recipient_refused_at_data(LMTP, fake):
    s = LMTP(*fake.address)
    with pytest.raises(smtplib.SMTPDataError) as exc:
        s.sendmail("me@x", ["full@x"], MSG)
    assert (exc.value.smtp_code, exc.value.smtp_error) == FULL
    assert exc.value.args == FULL
    assert s.noop() == (250, b"2.0.0 OK")
    s.quit()
    assert fake.messages() == [MSG]  # the fake stores it, then refuses it


def test_temporary_failure_at_data(LMTP, fake):
    s = LMTP(*fake.address)
    with pytest.raises(smtplib.SMTPDataError) as exc:
        s.sendmail("me@x", ["temp@x"], MSG)
    assert exc.value.smtp_code == 452
    assert exc.value.smtp_error == b"4.2.2 <temp@x> Mailbox is full, try again later"
    assert s.noop()[0] == 250
    s.close()


def test_sender_refused(LMTP, fake_server):
    f = fake_server("--fault-on", "MAIL", "--fault-reply", r"550 5.7.1 sender denied\r\n", "--fault-times", "1")
    s = LMTP(*f.address)
    with pytest.raises(smtplib.SMTPSenderRefused) as exc:
        s.sendmail("me@x", ["alice@x"], MSG)
    assert exc.value.smtp_code == 550
    assert exc.value.smtp_error == b"5.7.1 sender denied"
    assert exc.value.sender == "me@x"
    assert exc.value.args == (550, b"5.7.1 sender denied", "me@x")
    # in step afterwards; the fault fired once, so this one goes through
    assert s.noop() == (250, b"2.0.0 OK")
    assert s.sendmail("me@x", ["alice@x"], MSG) == {}
    s.quit()
    assert f.messages() == [MSG]


def test_sender_refused_421_closes(LMTP, fake_server):
    f = fake_server("--fault-on", "MAIL", "--fault-reply", r"421 4.3.2 shutting down\r\n", "--fault-action", "close")
    s = LMTP(*f.address)
    with pytest.raises(smtplib.SMTPSenderRefused) as exc:
        s.sendmail("me@x", ["alice@x"], MSG)
    assert (exc.value.smtp_code, exc.value.smtp_error) == (421, b"4.3.2 shutting down")
    with pytest.raises(smtplib.SMTPServerDisconnected):
        s.noop()


def test_421_after_data_closes(LMTP, fake_server):
    f = fake_server("--fault-on", ".", "--fault-reply", r"421 4.3.2 shutting down\r\n", "--fault-action", "close")
    s = LMTP(*f.address)
    with pytest.raises(smtplib.SMTPDataError) as exc:
        s.sendmail("me@x", ["alice@x"], MSG)
    assert (exc.value.smtp_code, exc.value.smtp_error) == (421, b"4.3.2 shutting down")
    with pytest.raises(smtplib.SMTPServerDisconnected):
        s.noop()


def test_data_command_refused(LMTP, fake_server):
    f = fake_server("--fault-on", "DATA", "--fault-reply", r"554 5.3.0 no DATA today\r\n", "--fault-times", "1")
    s = LMTP(*f.address)
    with pytest.raises(smtplib.SMTPDataError) as exc:
        s.sendmail("me@x", ["alice@x"], MSG)
    assert (exc.value.smtp_code, exc.value.smtp_error) == (554, b"5.3.0 no DATA today")
    # smtplib leaves the transaction open when DATA itself is refused: a caller resets it
    assert s.rset() == (250, b"2.0.0 OK")
    assert s.sendmail("me@x", ["alice@x"], MSG) == {}
    s.quit()
    assert f.messages() == [MSG]


def test_size_option(LMTP, fake_server):
    f = fake_server("--size", "100000")
    s = LMTP(*f.address)
    s.ehlo()
    assert s.esmtp_features["size"] == "100000"
    assert s.sendmail("me@x", ["alice@x"], MSG) == {}
    s.quit()
    mail = [l for l in lines_ci(f.transcript()) if l.startswith(b"MAIL ")]
    assert [l.upper() for l in mail] == [b"MAIL FROM:<ME@X> SIZE=%d" % len(MSG)]


def test_mail_and_rcpt_options(LMTP, fake_server):
    f = fake_server("--cap", "DSN")
    s = LMTP(*f.address)
    assert s.sendmail("me@x", ["alice@x"], MSG, mail_options=["BODY=8BITMIME", "RET=HDRS"],
                      rcpt_options=["NOTIFY=SUCCESS,FAILURE"]) == {}
    s.quit()
    lines = lines_ci(f.transcript())
    mail = [l for l in lines if l.startswith(b"MAIL ")][0]
    rcpt = [l for l in lines if l.startswith(b"RCPT ")][0]
    assert mail.startswith(b"MAIL FROM:<me@x> ")
    assert sorted(mail.split()[2:]) == [b"BODY=8BITMIME", b"RET=HDRS"]
    assert rcpt == b"RCPT TO:<alice@x> NOTIFY=SUCCESS,FAILURE"


def test_unsupported_option_is_the_servers_business(LMTP, fake):
    # smtplib sends options as given; the server refuses what it does not know
    s = LMTP(*fake.address)
    with pytest.raises(smtplib.SMTPSenderRefused) as exc:
        s.sendmail("me@x", ["alice@x"], MSG, mail_options=["X-FOO=bar"])
    assert exc.value.smtp_code == 555
    with pytest.raises(smtplib.SMTPRecipientsRefused) as exc:
        s.sendmail("me@x", ["alice@x"], MSG, rcpt_options=["NOTIFY=SUCCESS"])
    assert exc.value.recipients == {"alice@x": (555, b"5.5.4 Unsupported parameter NOTIFY")}
    assert s.noop()[0] == 250
    s.quit()
    assert fake.messages() == []


def test_smtputf8_not_supported(LMTP, fake):
    s = LMTP(*fake.address)
    s.ehlo()
    with pytest.raises(smtplib.SMTPNotSupportedError):
        s.sendmail("me@x", ["alice@x"], MSG, mail_options=["SMTPUTF8"])
    with pytest.raises(smtplib.SMTPNotSupportedError):
        s.mail("me@x", ["SMTPUTF8"])
    s.close()


# ---------------------------------------------------------------------------
# connecting

def test_unix_socket(LMTP, fake_server):
    f = fake_server("--rules", "nosuch@x=550", unix=True)
    assert f.path and f.path.startswith("/")
    s = LMTP(f.path)
    assert s.sendmail("me@x", ["alice@x"], MSG) == {}
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        s.sendmail("me@x", ["nosuch@x"], MSG)
    assert s.quit()[0] == 221
    s2 = LMTP()
    assert s2.connect(f.path) == BANNER
    s2.close()
    assert f.messages() == [MSG]
    assert f.stop()["CONNECTIONS"] == 2


def test_constructor_and_connect(LMTP, fake):
    s = LMTP(fake.host, fake.port)
    assert s.noop() == (250, b"2.0.0 OK")
    s.close()
    s = LMTP()  # no host: not connected
    with pytest.raises(smtplib.SMTPServerDisconnected):
        s.noop()
    assert s.connect(fake.host, fake.port) == BANNER
    assert s.noop()[0] == 250
    s.close()
    assert s.connect("%s:%d" % (fake.host, fake.port)) == BANNER  # host:port in one string
    s.close()
    s = LMTP(host=fake.host, port=fake.port, local_hostname="client.example", timeout=5)
    assert s.local_hostname == "client.example"
    assert s.timeout == 5
    assert s.ehlo() == LHLO_REPLY
    s.close()
    assert b"LHLO client.example" in lines_ci(fake.wait_transcript(lambda t: b"client.example\r\n" in t))
    with pytest.raises(OSError, match="nonnumeric port"):
        LMTP().connect("%s:port" % fake.host)
    assert fake.stop()["CONNECTIONS"] == 4


def test_class_attributes(LMTP):
    assert smtplib.LMTP_PORT == lmtp.LMTP_PORT == 2003
    assert LMTP.ehlo_msg == "lhlo"
    s = LMTP()
    assert s.debuglevel == 0
    assert s.esmtp_features == {}
    assert s.does_esmtp is False or s.does_esmtp == 0
    assert s.ehlo_resp is None and s.helo_resp is None
    assert s.command_encoding == "ascii"
    assert s.timeout is socket._GLOBAL_DEFAULT_TIMEOUT
    # which means the library's own deadline, 120 s (LMTP_DEFAULT_TIMEOUT_MS)
    assert lmtp._lmtp.default_timeout == 120.0


def test_connect_refused(LMTP):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ConnectionRefusedError) as exc:
        LMTP("127.0.0.1", port)
    assert exc.value.errno == errno.ECONNREFUSED


def test_connect_missing_unix_socket(LMTP, tmp_path):
    with pytest.raises(OSError) as exc:
        LMTP(str(tmp_path / "no-such.sock"))
    assert exc.value.errno == errno.ENOENT
    assert isinstance(exc.value, FileNotFoundError)


def test_banner_refused(LMTP, fake_server):
    f = fake_server("--fault-on", "", "--fault-reply", r"554 5.3.2 not now\r\n", "--fault-action", "close")
    with pytest.raises(smtplib.SMTPConnectError) as exc:
        LMTP(*f.address)
    assert (exc.value.smtp_code, exc.value.smtp_error) == (554, b"5.3.2 not now")


# ---------------------------------------------------------------------------
# LHLO and the extensions

def test_ehlo_and_features(LMTP, fake):
    s = LMTP(*fake.address)
    assert s.ehlo() == LHLO_REPLY
    assert s.ehlo_resp == LHLO_REPLY[1]
    assert s.does_esmtp
    assert s.esmtp_features == FEATURES
    assert s.has_extn("pipelining") and s.has_extn("PIPELINING") and s.has_extn("8BitMime")
    assert not s.has_extn("size") and not s.has_extn("smtputf8")
    assert s.ehlo("named.example") == LHLO_REPLY
    s.ehlo_or_helo_if_needed()  # already done: sends nothing
    s.quit()
    lines = lines_ci(fake.transcript())
    assert b"LHLO named.example" in lines
    assert lines[-2:] == [b"QUIT", b""]
    assert s.esmtp_features == {} and not s.does_esmtp  # quit forgets them, as smtplib


def test_features_with_parameters(LMTP, fake_server):
    f = fake_server("--size", "12345", "--cap", "DSN", "--cap", "AUTH PLAIN LOGIN", "--no-8bitmime")
    s = LMTP(*f.address)
    code, msg = s.ehlo()
    assert code == 250
    features = dict(s.esmtp_features)
    # smtplib keeps a leading space in "auth" (it concatenates); login() splits it anyway
    assert features.pop("auth").split() == ["PLAIN", "LOGIN"]
    assert features == {"pipelining": "", "enhancedstatuscodes": "", "size": "12345", "dsn": ""}
    s.close()


# ---------------------------------------------------------------------------
# the commands one by one

def test_command_return_values(LMTP, fake):
    s = LMTP(*fake.address)
    assert s.ehlo() == LHLO_REPLY
    assert s.mail("me@x") == MAIL_OK
    assert s.mail("me@x")[0] == 503  # inside a transaction
    assert s.rset() == (250, b"2.0.0 OK")
    assert s.mail("<me@x>") == MAIL_OK
    assert s.rcpt("alice@x") == rcpt_ok("alice@x")
    assert s.rcpt("nosuch@x") == NOSUCH  # rcpt() returns refusals, it does not raise
    assert s.data(MSG) == saved("alice@x")
    assert s.rset() == (250, b"2.0.0 OK")
    assert s.noop() == (250, b"2.0.0 OK")
    assert s.vrfy("alice@x") == (252, b"2.0.0 Cannot VRFY user, but will accept message and attempt delivery")
    assert s.verify("alice@x")[0] == 252
    assert s.expn("list@x") == (250, b"2.1.5 alpha <alpha@fake.example>\n2.1.5 beta <beta@fake.example>\n"
                                     b"2.1.5 gamma <gamma@fake.example>")
    assert s.help() == (b"2.0.0 fake LMTP server, commands:\n"
                        b"2.0.0 LHLO MAIL RCPT DATA BDAT RSET NOOP VRFY EXPN HELP ETRN QUIT\n2.0.0 End of HELP")
    assert s.help("DATA").startswith(b"2.0.0 ")
    assert s.docmd("NOOP") == (250, b"2.0.0 OK")
    assert s.docmd("FOO", "bar") == (500, b"5.5.2 Unknown command")
    assert s.docmd("ETRN", "x")[0] == 250
    assert s.putcmd("NOOP") is None
    assert s.getreply() == (250, b"2.0.0 OK")
    assert s.quit() == (221, b"2.0.0 fake.example closing connection")
    assert s.close() is None
    assert s.close() is None  # twice is fine
    with pytest.raises(smtplib.SMTPServerDisconnected):
        s.noop()
    assert fake.messages() == [MSG]
    lines = [l for l in lines_ci(fake.transcript()) if not l.startswith(b"LHLO ")]
    assert lines == [
        b"MAIL FROM:<me@x>", b"MAIL FROM:<me@x>", b"RSET", b"MAIL FROM:<me@x>", b"RCPT TO:<alice@x>",
        b"RCPT TO:<nosuch@x>", b"DATA", *MSG_ON_WIRE.split(b"\r\n")[:-1], b"RSET", b"NOOP", b"VRFY alice@x",
        b"VRFY alice@x", b"EXPN list@x", b"HELP", b"HELP DATA", b"NOOP", b"FOO bar", b"ETRN x", b"NOOP", b"QUIT", b""]


def test_mail_twice_and_data_without_rcpt(LMTP, fake):
    s = LMTP(*fake.address)
    s.ehlo()
    assert s.mail("me@x") == MAIL_OK
    code, msg = s.mail("me@x")
    assert code == 503
    with pytest.raises(smtplib.SMTPDataError) as exc:
        s.data(MSG)  # no recipient: DATA refused
    assert exc.value.smtp_code == 503
    assert s.rset()[0] == 250
    assert s.noop()[0] == 250
    s.quit()
    assert fake.messages() == []


def test_data_returns_the_reply_after_the_message(LMTP, fake):
    s = LMTP(*fake.address)
    s.ehlo()
    s.mail("me@x")
    s.rcpt("full@x")
    assert s.data(MSG) == FULL  # data() returns it, sendmail() raises
    assert s.noop()[0] == 250
    s.quit()


def test_context_manager_sends_quit(LMTP, fake):
    with LMTP(*fake.address) as s:
        assert s.noop()[0] == 250
    assert lines_ci(fake.transcript())[-2:] == [b"QUIT", b""]
    with pytest.raises(smtplib.SMTPServerDisconnected):
        s.noop()
    with pytest.raises(KeyError):
        with LMTP(*fake.address) as s:
            raise KeyError("the body's exception wins")
    assert fake.stop()["CONNECTIONS"] == 2
    assert fake.transcript().upper().count(b"QUIT\r\n") == 2


def test_context_manager_when_server_is_gone(LMTP, fake_server):
    f = fake_server("--fault-on", "NOOP", "--fault-action", "close")
    with LMTP(*f.address) as s:
        with pytest.raises(smtplib.SMTPServerDisconnected):
            s.noop()
    # __exit__ swallowed the disconnect


# ---------------------------------------------------------------------------
# send_message

def _email():
    m = email.message.EmailMessage()
    m["From"] = "Me <me@x>"
    m["To"] = "Alice <alice@x>, bob@x"
    m["Cc"] = "Carol <carol@x>"
    m["Bcc"] = "dave@x"
    m["Subject"] = "send_message"
    m.set_content("Hello all.\n.dot line\n")
    return m


def test_send_message_headers(LMTP, fake_server):
    f = fake_server()
    s = LMTP(*f.address)
    m = _email()
    assert s.send_message(m) == {}
    s.close()  # smtplib fell behind with 4 recipients: no QUIT through it
    lines = lines_ci(f.wait_transcript(lambda t: t.endswith(b"\r\n.\r\n")))
    assert [l for l in lines if l.startswith((b"MAIL", b"RCPT"))] == [
        b"MAIL FROM:<me@x>", b"RCPT TO:<alice@x>", b"RCPT TO:<bob@x>", b"RCPT TO:<dave@x>", b"RCPT TO:<carol@x>"]
    [stored] = f.messages()
    assert b"\nBcc:" not in stored and b"dave@x" not in stored
    assert b"To: Alice <alice@x>, bob@x\r\n" in stored
    assert b"Cc: Carol <carol@x>\r\n" in stored
    assert b"\r\n..dot line\r\n" not in stored and b"\r\n.dot line\r\n" in stored
    assert m["Bcc"] == "dave@x"  # the caller's message is not changed
    expected = m.as_bytes(policy=m.policy.clone(linesep="\r\n")).replace(b"Bcc: dave@x\r\n", b"")
    assert stored == expected


def test_send_message_sender_and_explicit_addresses(LMTP, fake_server):
    f = fake_server()
    s = LMTP(*f.address)
    m = _email()
    m["Sender"] = "Secretary <sec@x>"
    assert s.send_message(m, to_addrs=["zed@x"]) == {}
    assert s.send_message(m, from_addr="other@x", to_addrs="yan@x") == {}
    s.quit()
    lines = [l for l in lines_ci(f.transcript()) if l.startswith((b"MAIL", b"RCPT"))]
    assert lines == [b"MAIL FROM:<sec@x>", b"RCPT TO:<zed@x>", b"MAIL FROM:<other@x>", b"RCPT TO:<yan@x>"]
    for stored in f.messages():
        assert b"Bcc" not in stored  # removed even when to_addrs is given


def test_send_message_resent(LMTP, fake_server):
    f = fake_server()
    s = LMTP(*f.address)
    m = _email()
    m["Resent-Date"] = "Mon, 1 Jan 2024 00:00:00 +0000"
    m["Resent-From"] = "Forwarder <fwd@x>"
    m["Resent-To"] = "erin@x"
    m["Resent-Bcc"] = "frank@x"
    assert s.send_message(m) == {}
    s.close()
    lines = lines_ci(f.wait_transcript(lambda t: t.endswith(b"\r\n.\r\n")))
    assert [l for l in lines if l.startswith((b"MAIL", b"RCPT"))] == [
        b"MAIL FROM:<fwd@x>", b"RCPT TO:<erin@x>", b"RCPT TO:<frank@x>"]
    [stored] = f.messages()
    assert b"Resent-Bcc" not in stored and b"frank@x" not in stored
    assert b"\r\nBcc:" not in stored
    assert b"Resent-To: erin@x\r\n" in stored and b"To: Alice <alice@x>, bob@x\r\n" in stored

    m["Resent-Date"] = "Tue, 2 Jan 2024 00:00:00 +0000"  # a second Resent- block
    s = LMTP(*f.address)
    with pytest.raises(ValueError):
        s.send_message(m)
    s.close()


def test_send_message_legacy_message_class(LMTP, fake_server):
    f = fake_server()
    s = LMTP(*f.address)
    m = email.message.Message()
    m["From"] = "me@x"
    m["To"] = "alice@x"
    m["Subject"] = "compat32"
    m.set_payload("Body\n")
    assert s.send_message(m) == {}
    s.quit()
    assert f.messages() == [b"From: me@x\r\nTo: alice@x\r\nSubject: compat32\r\n\r\nBody\r\n"]


def test_send_message_non_ascii_address_needs_smtputf8(LMTP, fake):
    s = LMTP(*fake.address)
    m = _email()
    del m["To"]
    m["To"] = "jos\u00e9@x"
    with pytest.raises(smtplib.SMTPNotSupportedError):
        s.send_message(m)
    barrier(s)
    s.quit()
    assert b"MAIL" not in fake.transcript().upper()


# ---------------------------------------------------------------------------
# str and bytes messages

def test_str_message_ascii(LMTP, fake):
    s = LMTP(*fake.address)
    text = "Subject: str\n\nline one\r\n.dot\rlast"
    assert s.sendmail("me@x", ["alice@x"], text) == {}
    s.quit()
    assert fake.messages() == [b"Subject: str\r\n\r\nline one\r\n.dot\r\nlast\r\n"]
    assert b"\r\n..dot\r\nlast\r\n.\r\n" in fake.transcript()


def test_str_message_non_ascii(LMTP, fake):
    s = LMTP(*fake.address)
    s.ehlo()
    barrier(s)
    before = fake.transcript()
    with pytest.raises(UnicodeEncodeError):
        s.sendmail("me@x", ["alice@x"], "Subject: caf\u00e9\n\ncaf\u00e9\n")
    barrier(s)  # still usable, and nothing of the transaction was sent
    assert lines_ci(fake.transcript()[len(before):]) == [b"NOOP", b""]
    s.quit()
    assert fake.messages() == []


def test_bytes_message_8bit(LMTP, fake):
    s = LMTP(*fake.address)
    body = "Subject: 8bit\r\n\r\ncaf\u00e9 \u00fcber\r\n".encode("utf-8")
    assert s.sendmail("me@x", ["alice@x"], body) == {}
    s.quit()
    assert fake.messages() == [body]


def test_message_without_final_newline(LMTP, fake):
    s = LMTP(*fake.address)
    assert s.sendmail("me@x", ["alice@x"], b"Subject: x\r\n\r\nno newline") == {}
    s.quit()
    assert fake.messages() == [b"Subject: x\r\n\r\nno newline\r\n"]
    assert lines_ci(fake.transcript())[-4:] == [b"no newline", b".", b"QUIT", b""]


# ---------------------------------------------------------------------------
# debug output

def _debug_session(LMTP, fake):
    s = LMTP()
    s.set_debuglevel(1)
    assert s.debuglevel == 1
    s.connect(*fake.address)
    s.sendmail("me@x", ["alice@x"], MSG)
    s.quit()


def test_debuglevel_output(LMTP, fake, capsys):
    _debug_session(LMTP, fake)
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert lines[0].startswith("connect: ")
    assert "send: 'mail FROM:<me@x>\\r\\n'" in lines or "send: 'MAIL FROM:<me@x>\\r\\n'" in lines
    assert "reply: b'250 2.1.0 OK\\r\\n'" in lines
    assert "reply: b'250-fake.example\\r\\n'" in lines
    assert "reply: b'250 8BITMIME\\r\\n'" in lines
    assert "reply: b'250 2.0.0 <alice@x> Saved\\r\\n'" in lines
    assert "reply: b'221 2.0.0 fake.example closing connection\\r\\n'" in lines
    sends = [l for l in lines if l.startswith("send: ")]
    assert [l.upper() for l in sends if "'" in l][-1] == "SEND: 'QUIT\\R\\N'"
    for line in lines:
        # lmtp.LMTP adds "note: ..." lines (e.g. "note: connected to 127.0.0.1 port 1234")
        assert re.match(r"(connect|send|reply|data|note): ", line), line


def test_debuglevel_2_timestamps(LMTP, fake, capsys):
    s = LMTP()
    s.set_debuglevel(2)
    s.connect(*fake.address)
    s.noop()
    s.close()
    lines = capsys.readouterr().err.splitlines()
    assert lines
    for line in lines:
        assert re.match(r"\d\d:\d\d:\d\d(\.\d+)? (connect|send|reply|data|note): ", line), line


def test_debuglevel_0_is_silent(LMTP, fake, capsys):
    s = LMTP(*fake.address)
    s.sendmail("me@x", ["alice@x"], MSG)
    s.set_debuglevel(1)
    s.set_debuglevel(0)
    s.quit()
    assert capsys.readouterr() == ("", "")


# ---------------------------------------------------------------------------
# where lmtp.LMTP deliberately differs from smtplib.LMTP (documented in lmtp/__init__.py)

def test_lhlo_goes_when_first_needed(LMTP, fake):
    # As smtplib: connect reads the banner only; LHLO goes before the first MAIL.
    s = LMTP(*fake.address)
    assert s.esmtp_features == {}
    assert s.ehlo_resp is None
    s.sendmail("me@x", ["alice@x"], MSG)
    assert s.esmtp_features == FEATURES
    assert s.ehlo_resp == LHLO_REPLY[1]
    s.quit()
    assert fake.wait_transcript(lambda t: t).lower().startswith(b"lhlo ")


def test_lmtp_helo_and_lhlo_send_lhlo(fake):
    s = lmtp.LMTP(*fake.address)
    assert s.lhlo() == LHLO_REPLY
    assert s.helo("h.example") == LHLO_REPLY  # smtplib.LMTP sends "helo" and gets 500
    assert s.helo_resp == LHLO_REPLY[1]
    s.quit()
    assert b"LHLO h.example\r\n" in fake.transcript()
    assert b"HELO" not in fake.transcript().upper()


# ---------------------------------------------------------------------------
# servers that refuse or leave at awkward moments

def test_lhlo_refused_sendmail(LMTP, fake_server):
    f = fake_server("--fault-on", "LHLO", "--fault-reply", r"550 5.7.0 go away\r\n")
    s = LMTP(*f.address)
    with pytest.raises(smtplib.SMTPHeloError) as exc:
        s.sendmail("me@x", ["alice@x"], MSG)
    # smtplib then tries "helo", which the fake refuses with 500; ours reports LHLO's refusal
    assert exc.value.smtp_code == (500 if LMTP is smtplib.LMTP else 550)
    s.close()
    assert f.messages() == []


def test_lhlo_refused_ehlo(LMTP, fake_server):
    f = fake_server("--fault-on", "LHLO", "--fault-reply", r"550 5.7.0 go away\r\n")
    s = LMTP(*f.address)
    assert s.ehlo() == (550, b"5.7.0 go away")  # the refusal is a reply, not a disconnect
    assert s.ehlo_resp == b"5.7.0 go away"
    assert s.noop() == (250, b"2.0.0 OK")  # and the connection stays open
    s.close()
    assert f.messages() == []


def test_rcpt_421_and_close(LMTP, fake_server):
    f = fake_server("--fault-on", "RCPT", "--fault-reply", r"421 4.3.2 bye\r\n", "--fault-action", "close")
    s = LMTP(*f.address)
    with pytest.raises(smtplib.SMTPRecipientsRefused) as exc:
        s.sendmail("me@x", ["alice@x"], MSG)
    assert exc.value.recipients == {"alice@x": (421, b"4.3.2 bye")}
    with pytest.raises(smtplib.SMTPServerDisconnected):
        s.noop()


def test_quit_without_reply(LMTP, fake_server):
    f = fake_server("--fault-on", "QUIT", "--fault-action", "close")
    s = LMTP(*f.address)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        s.quit()
    s.close()


def test_context_manager_quit_without_reply(LMTP, fake_server):
    f = fake_server("--fault-on", "QUIT", "--fault-action", "close")
    with LMTP(*f.address) as s:  # __exit__ swallows the disconnect, as for any other dead server
        assert s.noop()[0] == 250


def test_no_recipients(LMTP, fake):
    s = LMTP(*fake.address)
    with pytest.raises(smtplib.SMTPRecipientsRefused) as exc:
        s.sendmail("me@x", [], MSG)
    assert exc.value.recipients == {}
    m = email.message.EmailMessage()
    m["From"] = "me@x"
    m["Subject"] = "nobody"
    m.set_content("x\n")
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        s.send_message(m)
    assert s.noop()[0] == 250
    s.quit()
    assert fake.messages() == []


def test_non_ascii_address_without_smtputf8(LMTP, fake):
    s = LMTP(*fake.address)
    with pytest.raises(UnicodeEncodeError):
        s.sendmail("me@x", ["jos\u00e9@x"], MSG)
    s.close()
    assert fake.messages() == []


def test_send_message_smtputf8(LMTP, fake_server):
    f = fake_server("--cap", "SMTPUTF8")
    s = LMTP(*f.address)
    m = email.message.EmailMessage()
    m["From"] = "me@x"
    m["To"] = "Jos\u00e9 <jos\u00e9@x>"
    m["Subject"] = "caf\u00e9"
    m.set_content("caf\u00e9\n")
    assert s.send_message(m) == {}
    s.quit()
    lines = lines_ci(f.transcript())
    mail = [l for l in lines if l.startswith(b"MAIL ")][0]
    assert mail.startswith(b"MAIL FROM:<me@x> ") and sorted(mail.split()[2:]) == [b"BODY=8BITMIME", b"SMTPUTF8"]
    assert "RCPT TO:<jos\u00e9@x>".encode("utf-8") in lines
    [stored] = f.messages()
    assert stored == m.as_bytes(policy=m.policy.clone(utf8=True, linesep="\r\n"))


def test_source_address(LMTP, fake):
    s = LMTP(fake.host, fake.port, source_address=("127.0.0.1", 0))
    assert s.source_address == ("127.0.0.1", 0)
    assert s.noop()[0] == 250
    s.quit()


def test_not_connected(LMTP):
    s = LMTP()
    for call in (lambda: s.sendmail("me@x", ["alice@x"], MSG), s.noop, s.quit, lambda: s.mail("me@x"),
                 lambda: s.docmd("NOOP")):
        with pytest.raises(smtplib.SMTPServerDisconnected):
            call()
    s.close()


def test_multiline_banner_and_replies_byte_by_byte(LMTP, fake_server):
    f = fake_server("--greeting", r"220-first line\r\n220 second line\r\n", "--byte-delay", "1")
    s = LMTP()
    assert s.connect(*f.address) == (220, b"first line\nsecond line")
    assert s.expn("list@x") == (250, b"2.1.5 alpha <alpha@fake.example>\n2.1.5 beta <beta@fake.example>\n"
                                     b"2.1.5 gamma <gamma@fake.example>")
    assert s.sendmail("me@x", ["alice@x"], MSG) == {}
    s.close()


def test_ipv6(LMTP, fake_server):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no ::1 here")
    f = fake_server("--inet6")
    s = LMTP("::1", f.port)
    assert s.sendmail("me@x", ["alice@x"], MSG) == {}
    s.quit()
    assert f.messages() == [MSG]


def test_reply_line_too_long(LMTP, fake_server):
    f = fake_server("--fault-on", "NOOP", "--fault-reply", "250 ", "--fault-fill", "x", "--fault-repeat",
                    str(1 << 20), "--fault-tail", r"\r\n")
    s = LMTP(*f.address)
    # smtplib: SMTPResponseException(500, "Line too long."); ours: LMTPProtocolError, an
    # SMTPServerDisconnected. Both close the connection.
    with pytest.raises(smtplib.SMTPException):
        s.noop()
    with pytest.raises(smtplib.SMTPServerDisconnected):
        s.noop()


@pytest.mark.parametrize("address", [
    "alice@example.org", "a.b+tag@x", "o'hara@ex-ample.org", "x!#$%&'*/=?^_`{|}~-@y",  # the fast path
    "Alice <alice@example.org>", "<alice@example.org>", " alice@example.org ", "alice@[127.0.0.1]",
    "\"a b\"@example.org", "a..b@x", ".a@x", "a.@x", "a@x.", "a@-x", "alice", "", "<>", "a@b@c",
    "alice@example.org (Alice)", "Ålice@example.org", "alice@exämple.org",
])
def test_addresses_are_read_as_smtplib_reads_them(address):
    # What goes between < and > is smtplib.quoteaddr's choice, whichever way it is found.
    assert "<%s>" % lmtp._quoteaddr(address) == smtplib.quoteaddr(address)
