"""Every form a message may take, and what goes on the wire for it.

Whatever the form, every line end goes out as CRLF, lines starting with "."
are dot-stuffed, and the message ends with CRLF "." CRLF; a source that fails
half-way stops the delivery: the caller's exception, a closed connection, and
nothing stored.
"""
import email.generator
import email.message
import email.policy
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


def big_mixed_body():
    """~600 KB of every kind of line end and leading dots, with some of each at the edges of the
    256 KiB pieces a whole message is sent in."""
    unit = b"plain line\n.dot line\r\nlone CR\r..two\n.\r\nx\r"
    body = bytearray(b"Subject: big\n\n" + unit * (600000 // len(unit)))
    for edge in (256 * 1024, 512 * 1024):
        body[edge - 2:edge + 3] = b"\r\n.\r\n"[:5]
        body[edge - 40:edge - 38] = b"\r\n"
    return bytes(body) + b"no final newline"


@pytest.mark.parametrize("transfer", ["data", "bdat"])
def test_str_and_bytes_give_the_same_bytes_on_the_wire(transfer, fake_server):
    """A str message goes from its own buffer (no Python pass, no copy): the same bytes as its
    bytes, through sendmail, deliver, deliver_many and the step API, small and large."""
    caps = ["--cap", "CHUNKING"] if transfer == "bdat" else []
    for body in (RAW, big_mixed_body()):
        wire = {}
        for form in (bytes, str):
            f = fake_server(*caps)
            msg = body if form is bytes else body.decode("ascii")
            s = lmtp.LMTP(*f.address)
            assert s.sendmail("me@x", ["alice@x"], msg) == {}
            assert [r.ok for r in s.deliver("me@x", ["bob@x"], msg, transfer=transfer)] == [True]
            done = s.deliver_many([("me@x", ["alice@x"], msg), ("me@x", ["bob@x"], msg)], transfer=transfer)
            assert [[r.ok for r in m] for m in done] == [[True], [True]]
            s.mail("me@x")
            s.rcpt("bob@x")
            assert s.data(msg)[0] == 250
            s.quit()
            f.stop()
            wire[form] = f.transcript()
            canonical = re.sub(rb"\r\n|\r|\n", b"\r\n", body) + b"\r\n"
            assert f.messages() == [canonical] * 5
        assert wire[str] == wire[bytes]
        assert not BARE_LF.search(wire[str]) and not BARE_CR.search(wire[str])


def test_str_message_must_be_ascii_and_nothing_is_sent(fake):
    s = lmtp.LMTP(*fake.address)
    for call in (lambda: s.sendmail("me@x", ["alice@x"], "caf\u00e9\n"),
                 lambda: s.deliver("me@x", ["alice@x"], "caf\u00e9\n"),
                 lambda: s.deliver_many([("me@x", ["alice@x"], "caf\u00e9\n")])):
        with pytest.raises(UnicodeEncodeError):
            call()
    s.noop()
    s.quit()
    assert b"MAIL" not in fake.transcript()


def messages_to_flatten():
    simple = email.message_from_string("From: a@x\nTo: b@x\nSubject: " + "long words " * 20 +
                                       "\n\nFrom the start\nline\n.dot\nFrom here\r\nx\rFrom y\nlast")
    modern = email.message.EmailMessage()
    modern["Subject"] = "modern " * 30
    modern["To"] = "b@x"
    modern.set_content("hello\nFrom me\n.dot\n" + "a long line of text\n" * 20000)
    multi = email.message.EmailMessage()
    multi["Subject"] = "two parts"
    multi.set_content("text part\n")
    multi.add_attachment(b"\x00\x01binary", maintype="application", subtype="octet-stream", filename="b.bin")
    empty = email.message.Message()
    empty["Subject"] = "no body"
    eight = email.message_from_bytes(b"Subject: 8bit\nContent-Type: text/plain; charset=utf-8\n\ncaf\xc3\xa9\n")
    return {"simple": simple, "modern, 400 KB": modern, "multipart": multi, "no body": empty, "8bit": eight}


@pytest.mark.parametrize("name", list(messages_to_flatten()))
def test_send_message_sends_what_smtplib_would(name, fake_server):
    """send_message flattens as smtplib does (BytesGenerator, CRLF); a one-part ASCII message goes
    as its folded header block and its body as it is, without a pass over its lines: the same bytes."""
    m = messages_to_flatten()[name]
    out = io.BytesIO()
    email.generator.BytesGenerator(out).flatten(m, linesep="\r\n")
    wire = {}
    for how in ("send_message", "bytes"):
        f = fake_server("--size", "10000000")  # SIZE offered: the size declared must be the same too
        s = lmtp.LMTP(*f.address)
        if how == "send_message":
            assert s.send_message(m, "me@x", ["alice@x"]) == {}
        else:
            assert s.sendmail("me@x", ["alice@x"], out.getvalue()) == {}
        s.quit()
        f.stop()
        wire[how] = f.transcript()
    assert wire["send_message"] == wire["bytes"]
    assert b" SIZE=" in wire["bytes"]


def test_simple_flatten_gives_the_generators_bytes():
    """The header block of a one-part message as BytesGenerator folds it (compat32 and the modern
    policy), for many random headers: short ones (taken as they are), long ones, odd whitespace."""
    import random
    rng = random.Random(3)
    chars = [chr(c) for c in range(32, 127)] + ["\t"] * 3 + [" "] * 12
    for i in range(300):
        raw = "".join("%s: %s\n" % (rng.choice(["Subject", "X-A", "Received", "Comments"]),
                                     "".join(rng.choice(chars) for _ in range(rng.randint(0, 120))).strip())
                      for _ in range(rng.randint(1, 6)))
        for m in (email.message_from_string(raw + "\nbody\nFrom x\n"),
                  email.message_from_string(raw + "\nbody\n", policy=email.policy.default)):
            out = io.BytesIO()
            email.generator.BytesGenerator(out).flatten(m, linesep="\r\n")
            pieces = lmtp._flatten(m)
            assert isinstance(pieces, tuple)
            joined = pieces[0] + re.sub(r"\r\n|\r|\n", "\r\n", pieces[1]).encode()
            assert joined == out.getvalue(), raw


def test_has_from_line_agrees_with_a_plain_search():
    """The check before send_message's "From " mangling, 16 octets at a time, at every offset."""
    import random
    rng = random.Random(5)
    cases = ["", "From ", "From", "x\nFrom ", "x\nFrom", "\rFrom x", "xFrom ", "\nFro", "a\nfrom x"]
    for n in (15, 16, 17, 31, 32, 33, 100, 1000):
        for at in (0, 1, 14, 15, 16, 17, n - 6, n - 5, n - 1):
            body = list("x" * n)
            if 0 <= at < n:
                body[at] = "\n"
            cases.append("".join(body)[:at + 1] + "From " + "".join(body)[at + 1:])
            cases.append("".join(body) + "\nFrom"[: max(0, n - at)])
        cases.extend("".join(rng.choice("\nFrom x\r") for _ in range(n)) for _ in range(50))
    for text in cases:
        want = text.startswith("From ") or "\nFrom " in text
        assert lmtp._lmtp.has_from_line(text) is want, repr(text)
        assert lmtp._lmtp.has_from_line(text.encode()) is want, repr(text)


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
