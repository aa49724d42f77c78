"""smtplib-style option strings as liblmtp reads them: the strings go to the library joined by
spaces, as smtplib puts them on the wire, and the library parses and checks them (xtext, NOTIFY's
keywords, numbers); a malformed one is a ValueError before anything is sent."""
import smtplib

import pytest

import lmtp

MSG = b"Subject: options\r\n\r\nbody\r\n"


def mail_and_rcpt(transcript):
    lines = transcript.split(b"\r\n")
    return [l for l in lines if l.startswith(b"MAIL ")], [l for l in lines if l.startswith(b"RCPT ")]


def test_options_go_as_the_library_writes_them(fake_server):
    f = fake_server("--cap", "DSN", "--size", "100000")
    with lmtp.LMTP(*f.address) as s:
        assert s.sendmail("me@x", ["alice@x"], MSG,
                          mail_options=["size=40", "ret=hdrs", "ENVID=id+2B1+20x"],
                          rcpt_options=["notify=delay,Success", "ORCPT=rfc822;orig+2Btag@x"]) == {}
    mail, rcpt = mail_and_rcpt(f.transcript())
    assert mail == [b"MAIL FROM:<me@x> SIZE=40 RET=HDRS ENVID=id+2B1+20x"]
    assert rcpt == [b"RCPT TO:<alice@x> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;orig+2Btag@x"]


def test_one_option_string_may_hold_several_words(fake_server):
    # smtplib joins the strings with spaces: "RET=HDRS ENVID=x" is two parameters to it, and here.
    f = fake_server("--cap", "DSN")
    with lmtp.LMTP(*f.address) as s:
        s.ehlo()
        assert s.mail("me@x", ["RET=HDRS ENVID=x"])[0] == 250
        assert s.rcpt("alice@x", ["NOTIFY=NEVER"])[0] == 250
    mail, rcpt = mail_and_rcpt(f.transcript())
    assert mail == [b"MAIL FROM:<me@x> RET=HDRS ENVID=x"]
    assert rcpt == [b"RCPT TO:<alice@x> NOTIFY=NEVER"]


@pytest.mark.parametrize("kind, option, says", [
    ("mail", "SIZE=12x", "'SIZE=12x'"),
    ("mail", "BODY=9BIT", "7BIT, 8BITMIME or BINARYMIME"),
    ("mail", "RET=BODY", "RET is FULL or HDRS"),
    ("mail", "ENVID=a+ZZ", "'+XX'"),
    ("mail", "SMTPUTF8=yes", "SMTPUTF8 takes no value"),
    ("mail", "X_KEY=1", "not a valid keyword"),
    ("rcpt", "NOTIFY=SOMETIMES", "'SOMETIMES' is not a NOTIFY keyword"),
    ("rcpt", "NOTIFY=NEVER,SUCCESS", "NEVER cannot be combined"),
    ("rcpt", "ORCPT=a@x", "an address type"),
])
@pytest.mark.parametrize("how", ["sendmail", "deliver_many", "command"])
def test_malformed_options_are_value_errors_and_nothing_is_sent(fake_server, kind, option, says, how):
    f = fake_server("--cap", "DSN")
    s = lmtp.LMTP(*f.address)
    s.noop()
    before = f.transcript()
    mail_options, rcpt_options = ([option], []) if kind == "mail" else ([], [option])
    with pytest.raises(ValueError) as exc:
        if how == "sendmail":
            s.sendmail("me@x", ["alice@x"], MSG, mail_options, rcpt_options)
        elif how == "deliver_many":
            s.deliver_many([("me@x", ["alice@x"], MSG)], mail_options, rcpt_options)
        elif kind == "mail":
            s.mail("me@x", mail_options)
        else:
            s.mail("me@x")
            before = f.transcript()
            s.rcpt("alice@x", rcpt_options)
    assert says in str(exc.value)
    assert s.noop()[0] == 250
    assert f.transcript() == before + b"NOOP\r\n"
    s.close()


def test_an_option_that_is_no_string_is_a_type_error(fake):
    s = lmtp.LMTP(*fake.address)
    with pytest.raises(TypeError):
        s.mail("me@x", [b"SIZE=1"])
    with pytest.raises(TypeError):
        s.sendmail("me@x", ["alice@x"], MSG, rcpt_options=[7])
    s.close()


def test_smtputf8_refused_when_the_library_finds_it_not_offered(fake_server):
    for caps, refused in [((), True), (("--cap", "SMTPUTF8"), False)]:
        f = fake_server(*caps)
        s = lmtp.LMTP(*f.address)
        s.ehlo()
        if refused:
            with pytest.raises(smtplib.SMTPNotSupportedError):
                s.mail("me@x", ["SMTPUTF8"])
        else:
            assert s.mail("j\u00f6rg@x", ["SMTPUTF8"])[0] == 250
        s.close()


def test_a_refused_data_raises_smtp_data_error(fake_server):
    f = fake_server("--fault-on", "DATA", "--fault-reply", r"451 4.3.0 not now\r\n")
    s = lmtp.LMTP(*f.address)
    s.mail("me@x")
    s.rcpt("alice@x")
    with pytest.raises(smtplib.SMTPDataError) as exc:
        s.data(MSG)
    assert (exc.value.smtp_code, exc.value.smtp_error) == (451, b"4.3.0 not now")
    s.close()


def test_a_refusal_over_the_size_limit_has_the_librarys_code(fake_server):
    f = fake_server("--size", "10")
    s = lmtp.LMTP(*f.address)
    with pytest.raises(smtplib.SMTPSenderRefused) as exc:
        s.sendmail("me@x", ["alice@x"], MSG, mail_options=["SIZE=5000"])
    assert exc.value.smtp_code == dict((n, c) for n, _v, c, _t in lmtp._lmtp.statuses)["too_big"] == 552
    s.close()
