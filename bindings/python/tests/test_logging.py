"""Tracing goes to the logging logger "lmtp" at DEBUG, only while someone listens."""
import logging

import lmtp

MSG = b"Subject: log\r\n\r\nbody\r\n.dot\r\n"


def lmtp_records(caplog):
    return [r for r in caplog.records if r.name == "lmtp"]


def test_dialogue_is_logged(fake, caplog, capsys):
    caplog.set_level(logging.DEBUG, logger="lmtp")
    s = lmtp.LMTP(*fake.address)
    assert s.sendmail("me@x", ["alice@x", "full@x"], MSG) == {"full@x": (552, b"5.2.2 <full@x> Quota exceeded")}
    s.quit()
    records = lmtp_records(caplog)
    assert records and all(r.levelno == logging.DEBUG for r in records)
    msgs = [r.getMessage() for r in records]
    wanted = [
        "reply: b'220 fake.example LMTP ready\\r\\n'",
        "send: 'LHLO %s\\r\\n'" % s.local_hostname,
        "reply: b'250 8BITMIME\\r\\n'",
        "send: 'MAIL FROM:<me@x>\\r\\n'",
        "send: 'RCPT TO:<alice@x>\\r\\n'",
        "send: 'RCPT TO:<full@x>\\r\\n'",
        "send: 'DATA\\r\\n'",
        "reply: b'250 2.1.0 OK\\r\\n'",
        "reply: b'354 go ahead\\r\\n'",
        "reply: b'250 2.0.0 <alice@x> Saved\\r\\n'",
        "reply: b'552 5.2.2 <full@x> Quota exceeded\\r\\n'",
        "send: 'QUIT\\r\\n'",
        "reply: b'221 2.0.0 fake.example closing connection\\r\\n'",
    ]
    positions = [msgs.index(w) for w in wanted]  # each is there...
    assert positions == sorted(positions)  # ...in the order of the dialogue
    assert capsys.readouterr() == ("", "")  # logging only: nothing printed by the library itself


def test_logged_body_lines(fake, caplog):
    caplog.set_level(logging.DEBUG, logger="lmtp")
    s = lmtp.LMTP(*fake.address)
    s.sendmail("me@x", ["alice@x"], MSG)
    s.close()
    data = [r.getMessage() for r in lmtp_records(caplog) if r.getMessage().startswith("data: ")]
    # the message as the caller gave it, piece by piece between LFs (the core's TraceDir::data,
    # shaped after Perl's Net::Cmd: a CR before the LF is kept), then the final "."
    assert data == ["data: b'Subject: log\\r'", "data: b'\\r'", "data: b'body\\r'", "data: b'.dot\\r'",
                    "data: b'.'"]


def control(caplog):
    """Make sure the capture handler itself takes DEBUG records (so an empty list means something)."""
    logging.getLogger("tests.control").debug("control record")
    assert [r.getMessage() for r in caplog.records if r.name == "tests.control"] == ["control record"]


def test_nothing_traced_without_debug(fake, caplog, capsys):
    caplog.set_level(logging.DEBUG, logger="tests.control")  # the handler takes everything...
    caplog.set_level(logging.DEBUG, logger="lmtp")
    logging.getLogger("lmtp").setLevel(logging.INFO)  # ...but "lmtp" is not at DEBUG
    control(caplog)
    s = lmtp.LMTP(*fake.address)
    s.sendmail("me@x", ["alice@x"], MSG)
    s.quit()
    assert lmtp_records(caplog) == []
    assert capsys.readouterr() == ("", "")


def test_default_configuration_is_silent(fake, caplog, capsys):
    # no level set on "lmtp": it inherits the root's (WARNING by default)
    caplog.set_level(logging.DEBUG, logger="tests.control")
    assert logging.getLogger("lmtp").level == logging.NOTSET
    assert not logging.getLogger("lmtp").isEnabledFor(logging.DEBUG)
    control(caplog)
    s = lmtp.LMTP(*fake.address)
    s.sendmail("me@x", ["alice@x"], MSG)
    s.quit()
    assert lmtp_records(caplog) == []
    assert capsys.readouterr() == ("", "")


def test_switching_logging_on_and_off_mid_session(fake, caplog):
    log = logging.getLogger("lmtp")
    caplog.set_level(logging.DEBUG, logger="lmtp")  # the handler at DEBUG; restored afterwards
    log.setLevel(logging.INFO)
    s = lmtp.LMTP(*fake.address)
    s.noop()
    assert lmtp_records(caplog) == []
    log.setLevel(logging.DEBUG)
    s.rset()
    msgs = [r.getMessage() for r in lmtp_records(caplog)]
    assert msgs == ["send: 'RSET\\r\\n'", "reply: b'250 2.0.0 OK\\r\\n'"]
    log.setLevel(logging.INFO)
    caplog.clear()
    s.noop()
    s.quit()
    assert lmtp_records(caplog) == []


def test_debuglevel_also_logs(fake, caplog, capsys):
    caplog.set_level(logging.DEBUG, logger="lmtp")
    s = lmtp.LMTP(*fake.address)
    caplog.clear()
    s.set_debuglevel(1)
    s.noop()
    s.close()
    err = capsys.readouterr().err.splitlines()
    msgs = [r.getMessage() for r in lmtp_records(caplog)]
    assert "send: 'NOOP\\r\\n'" in err and "send: 'NOOP\\r\\n'" in msgs
    assert "reply: b'250 2.0.0 OK\\r\\n'" in err and "reply: b'250 2.0.0 OK\\r\\n'" in msgs
