"""Every form a message may take, and what goes on the wire for it.

Whatever the form, every line end goes out as CRLF, lines starting with "."
are dot-stuffed, and the message ends with CRLF "." CRLF; a source that fails
half-way stops the delivery: the caller's exception, a closed connection, and
nothing stored.
"""
import email.message
import io
import re
import smtplib

import pytest

import lmtp

# bare LF, CRLF, a lone CR, lines starting with dots, a "." line, no final newline
RAW = b"Subject: forms\nX-Test: yes\r\n\n.starts with a dot\r\nbare LF\nlone CR\r..two dots\n.\nmid.dle\nlast line"
CANON = (b"Subject: forms\r\nX-Test: yes\r\n\r\n.starts with a dot\r\nbare LF\r\nlone CR\r\n..two dots\r\n.\r\n"
         b"mid.dle\r\nlast line\r\n")
ON_WIRE = (b"DATA\r\nSubject: forms\r\nX-Test: yes\r\n\r\n..starts with a dot\r\nbare LF\r\nlone CR\r\n"
           b"...two dots\r\n..\r\nmid.dle\r\nlast line\r\n.\r\n")

BARE_LF = re.compile(rb"(?<!\r)\n")
BARE_CR = re.compile(rb"\r(?!\n)")


def chunked(data, sizes):
    """data cut at the given sizes (cycled), so CRLF pairs and dots fall across chunks."""
    i = k = 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        yield data[i:i + n]
        i += n
        k += 1


def email_message():
    m = email.message.Message()
    m["Subject"] = "forms"
    m["X-Test"] = "yes"
    m.set_payload(".starts with a dot\nbare LF\nlone CR\n..two dots\n.\nmid.dle\nlast line")
    return m


FORMS = {
    "bytes": lambda tmp: RAW,
    "bytearray": lambda tmp: bytearray(RAW),
    "memoryview": lambda tmp: memoryview(RAW),
    "str": lambda tmp: RAW.decode("ascii"),
    "BytesIO": lambda tmp: io.BytesIO(RAW),
    "file": lambda tmp: open_file(tmp, RAW),
    "BufferedReader-unbuffered": lambda tmp: open_file(tmp, RAW, buffering=0),
    "generator-1byte": lambda tmp: chunked(RAW, [1]),
    "generator-odd": lambda tmp: chunked(RAW, [3, 1, 7, 2]),
    "list": lambda tmp: [RAW[:20], b"", RAW[20:]],
    "iterator-mixed-types": lambda tmp: iter([bytearray(RAW[:15]), memoryview(RAW[15:40]), RAW[40:]]),
}

_files = []


def open_file(tmp, data, buffering=-1):
    path = tmp / "message.eml"
    path.write_bytes(data)
    f = open(path, "rb", buffering=buffering)
    _files.append(f)
    return f


@pytest.fixture(autouse=True)
def _close_files():
    yield
    while _files:
        _files.pop().close()


@pytest.mark.parametrize("form", list(FORMS))
def test_message_forms_sendmail(form, fake, tmp_path):
    s = lmtp.LMTP(*fake.address)
    assert s.sendmail("me@x", ["alice@x"], FORMS[form](tmp_path)) == {}
    s.quit()
    assert fake.messages() == [CANON]
    t = fake.transcript()
    assert ON_WIRE in t
    assert not BARE_LF.search(t) and not BARE_CR.search(t)


@pytest.mark.parametrize("form", ["bytes", "str", "BytesIO", "file", "generator-odd"])
def test_message_forms_deliver_and_data(form, fake, tmp_path):
    s = lmtp.LMTP(*fake.address)
    assert [r.ok for r in s.deliver("me@x", ["alice@x", "bob@x"], FORMS[form](tmp_path))] == [True, True]
    s.mail("me@x")
    s.rcpt("bob@x")
    assert s.data(FORMS[form](tmp_path))[0] == 250
    s.quit()
    assert fake.messages() == [CANON, CANON]
    t = fake.transcript()
    assert t.count(ON_WIRE) == 2
    assert not BARE_LF.search(t) and not BARE_CR.search(t)


def test_email_message_object(fake):
    s = lmtp.LMTP(*fake.address)
    m = email_message()
    assert s.sendmail("me@x", ["alice@x"], m) == {}
    m2 = email.message.EmailMessage()
    m2["Subject"] = "modern"
    m2.set_content("line\n.dot\n")
    assert s.sendmail("me@x", ["alice@x"], m2) == {}
    s.quit()
    assert fake.messages() == [CANON, m2.as_bytes(policy=m2.policy.clone(linesep="\r\n"))]
    assert not BARE_LF.search(fake.transcript())


def test_smtplib_sends_bare_lf_but_lmtp_never(fake):
    """smtplib sends a bytes message as it is (its docs: "transmitted as is"), bare LFs and
    all, which RFC 5321 section 2.3.8 forbids; ours always sends CRLF."""
    s = smtplib.LMTP(*fake.address)
    s.sendmail("me@x", ["alice@x"], b"Subject: lf\n\nbare\n.dot\nend\n")
    s.quit()
    assert b"Subject: lf\n\nbare\n..dot\nend\n\r\n.\r\n" in fake.transcript()
    assert BARE_LF.search(fake.transcript())

    t0 = len(fake.transcript())
    s = lmtp.LMTP(*fake.address)
    s.sendmail("me@x", ["alice@x"], b"Subject: lf\n\nbare\n.dot\nend\n")
    s.quit()
    ours = fake.transcript()[t0:]
    assert b"Subject: lf\r\n\r\nbare\r\n..dot\r\nend\r\n.\r\n" in ours
    assert not BARE_LF.search(ours)
    assert fake.messages()[1] == b"Subject: lf\r\n\r\nbare\r\n.dot\r\nend\r\n"


@pytest.mark.parametrize("body, stored, wire", [
    (b"", b"", b"DATA\r\n.\r\n"),
    (b"\r\n", b"\r\n", b"DATA\r\n\r\n.\r\n"),
    (b".", b".\r\n", b"DATA\r\n..\r\n.\r\n"),
    (b"\n.\n", b"\r\n.\r\n", b"DATA\r\n\r\n..\r\n.\r\n"),
    (b"a\r\n.\r\n", b"a\r\n.\r\n", b"DATA\r\na\r\n..\r\n.\r\n"),
    (b"x" * 998 + b"\r\n", b"x" * 998 + b"\r\n", b"DATA\r\n" + b"x" * 998 + b"\r\n.\r\n"),
    (b"end with CR\r", b"end with CR\r\n", b"DATA\r\nend with CR\r\n.\r\n"),
], ids=["empty", "crlf", "dot", "lf-dot-lf", "dot-line", "998", "final-cr"])
def test_edge_bodies(body, stored, wire, fake):
    s = lmtp.LMTP(*fake.address)
    assert s.sendmail("me@x", ["alice@x"], body) == {}
    assert s.sendmail("me@x", ["alice@x"], chunked(body, [1])) == {}
    s.quit()
    assert fake.messages() == [stored, stored]
    assert fake.transcript().count(wire) == 2


def test_dot_stuffing_across_chunks(fake):
    chunks = [b"Subject: c\r", b"\n\r\n", b".", b"dot\r\nx\r\n.", b"\r", b"\n", b".", b".", b"\r\nend"]
    s = lmtp.LMTP(*fake.address)
    assert s.sendmail("me@x", ["alice@x"], iter(chunks)) == {}
    s.quit()
    assert fake.messages() == [b"Subject: c\r\n\r\n.dot\r\nx\r\n.\r\n..\r\nend\r\n"]
    assert b"DATA\r\nSubject: c\r\n\r\n..dot\r\nx\r\n..\r\n...\r\nend\r\n.\r\n" in fake.transcript()


def test_large_streamed_body(fake, tmp_path):
    line = b"0123456789" * 7 + b"\n"
    body = b"Subject: big\n\n" + line * 40000 + b".x\n"  # ~2.8 MB, bare LFs
    path = tmp_path / "big.eml"
    path.write_bytes(body)
    s = lmtp.LMTP(*fake.address)
    with open(path, "rb") as f:
        assert s.sendmail("me@x", ["alice@x"], f) == {}
    s.quit()
    assert fake.messages() == [body.replace(b"\n", b"\r\n")]


# ---------------------------------------------------------------------------
# a source that fails half-way

class Boom(Exception):
    pass


def failing_generator(after):
    yield b"Subject: fails\r\n\r\n"
    for _ in range(after):
        yield b"a line of the message\r\n" * 100
    raise Boom("the source broke")


class FailingFile:
    def __init__(self, after):
        self.calls = 0
        self.after = after

    def read(self, n=-1):
        self.calls += 1
        if self.calls > self.after:
            raise Boom("read failed")
        return (b"Subject: fails\r\n\r\n" if self.calls == 1 else b"x" * 70 + b"\r\n")[:n]


@pytest.mark.parametrize("source", [
    lambda: failing_generator(0), lambda: failing_generator(50), lambda: FailingFile(1), lambda: FailingFile(30)],
    ids=["generator-at-once", "generator-later", "file-at-once", "file-later"])
@pytest.mark.parametrize("how", ["sendmail", "deliver", "data"])
def test_source_raises(source, how, fake):
    s = lmtp.LMTP(*fake.address)
    with pytest.raises(Boom):
        if how == "data":
            s.ehlo()  # raw commands need LHLO first, as with smtplib
            s.mail("me@x")
            s.rcpt("alice@x")
            s.data(source())
        else:
            getattr(s, how)("me@x", ["alice@x", "bob@x"], source())
    with pytest.raises(smtplib.SMTPServerDisconnected):
        s.noop()  # the connection is closed: the server never saw the end of the message
    t = fake.wait_transcript(lambda t: False, timeout=0.2)
    assert not t.endswith(b"\r\n.\r\n")
    stats = fake.stop()
    assert stats["MESSAGES"] == 0
    assert fake.messages() == []
    assert stats["CONNECTIONS"] == 1


def test_source_raises_keeps_the_exception_object(fake):
    err = Boom("this one")

    def gen():
        yield b"Subject: x\r\n\r\n"
        raise err

    s = lmtp.LMTP(*fake.address)
    with pytest.raises(Boom) as exc:
        s.sendmail("me@x", ["alice@x"], gen())
    assert exc.value is err
    assert all(r.unknown for r in s.last_results)
    # a new connection on the same object works
    s.connect(*fake.address)
    assert s.sendmail("me@x", ["alice@x"], b"ok\r\n") == {}
    s.quit()
    assert fake.messages() == [b"ok\r\n"]


def test_data_with_non_ascii_str(fake):
    # smtplib.data() sends DATA, then fails to encode and leaves the server waiting for the
    # body; ours must not leave the session stuck half-way: usable, or closed
    s = lmtp.LMTP(*fake.address)
    s.mail("me@x")
    s.rcpt("alice@x")
    with pytest.raises(UnicodeEncodeError):
        s.data("Subject: caf\u00e9\r\n\r\n\u00e9\r\n")
    try:
        assert s.noop()[0] == 250
    except smtplib.SMTPServerDisconnected:
        pass
    s.close()
    assert fake.stop()["MESSAGES"] == 0


@pytest.mark.parametrize("bad", [["str chunk"], [b"ok", 42]], ids=["str", "int"])
def test_source_gives_wrong_type(bad, fake):
    s = lmtp.LMTP(*fake.address)
    with pytest.raises(TypeError):
        s.sendmail("me@x", ["alice@x"], iter(bad))
    s.close()
    assert fake.stop()["MESSAGES"] == 0


def test_not_a_message(fake):
    s = lmtp.LMTP(*fake.address)
    s.noop()
    before = fake.transcript()
    with pytest.raises(TypeError):
        s.sendmail("me@x", ["alice@x"], 12345)
    s.noop()
    assert fake.transcript()[len(before):] == b"NOOP\r\n"
    s.quit()
