"""STARTTLS, AUTH and BDAT (CHUNKING): starttls() and login() as smtplib has them,
deliver()/sendmail() by BDAT when the server offers CHUNKING. Against the fake server
with the test certificates of make-test-certs, and against a real Dovecot with STARTTLS."""
import base64
import email.parser
import json
import logging
import smtplib
import ssl
import time
import uuid

import pytest

import lmtp

from conftest import PEAK_KB, RULES, run_child, tls_args

USER = "tester"
PASSWORD = "Xq7-s3cret!pw"
AUTH_ARGS = ("--auth-user", USER, "--auth-password", PASSWORD)
OK_235 = (235, b"2.7.0 Authentication successful")
BAD_CREDENTIALS = (535, b"5.7.8 Authentication credentials invalid")
MSG = b"Subject: tls\r\n\r\nbody\r\n"


def connect(fake, **kw):
    return lmtp.LMTP(*fake.address, timeout=10, **kw)


def lhlo(s):
    return b"LHLO %s\r\n" % s.local_hostname.encode()


def ca_context(certs):
    return ssl.create_default_context(cafile=str(certs / "ca.pem"))


def assert_closed(s):
    with pytest.raises(smtplib.SMTPServerDisconnected):
        s.noop()


# ---------------------------------------------------------------------------
# STARTTLS

def test_starttls_with_a_context_from_the_test_ca(fake_server, tls_certs):
    f = fake_server(*tls_args(tls_certs), "--cap", "CHUNKING", "--auth", "PLAIN", "--auth-after-tls")
    s = connect(f)
    assert s.ehlo()[0] == 250
    assert "starttls" in s.esmtp_features and "auth" not in s.esmtp_features
    assert s.starttls(context=ca_context(tls_certs)) == (220, b"2.0.0 ready")
    # What the server offered in plain text is forgotten; the LHLO over TLS counts.
    assert "starttls" not in s.esmtp_features
    assert s.esmtp_features.get("auth") == "PLAIN"
    assert s.has_extn("chunking") and s.does_esmtp
    assert b"STARTTLS" not in s.ehlo_resp
    [r] = s.deliver("me@x", ["alice@x"], b"Subject: inside\n\nsecret body\n")
    assert (r.code, r.ok) == (250, True)
    assert s.quit()[0] == 221
    stats = f.stop()
    assert stats["TLS_SESSIONS"] == 1
    assert f.transcript() == (lhlo(s) + b"STARTTLS\r\n" + lhlo(s) + b"MAIL FROM:<me@x>\r\nRCPT TO:<alice@x>\r\n"
                              b"BDAT 32 LAST\r\nSubject: inside\r\n\r\nsecret body\r\nQUIT\r\n")
    events = f.events()
    assert events[0].startswith("TLS ") and "client_cert=none" in events[0]
    assert events[1].startswith("MESSAGE 0 tls=1 ")


def test_starttls_with_cafile_and_a_client_certificate(fake_server, tls_certs):
    f = fake_server(*tls_args(tls_certs), "--tls-verify-client", "require", "--tls-client-ca", tls_certs / "ca.pem")
    s = connect(f)
    assert s.starttls(cafile=str(tls_certs / "ca.pem"), certfile=str(tls_certs / "client.pem"),
                      keyfile=str(tls_certs / "client.key")) == (220, b"2.0.0 ready")
    assert s.noop() == (250, b"2.0.0 OK")
    s.quit()
    f.stop()
    assert "client_cert=verified cn=client.example" in f.events()[0]


@pytest.mark.parametrize("how", ["no arguments", "ssl.create_default_context()"])
def test_the_system_cas_refuse_the_test_ca(fake_server, tls_certs, how):
    f = fake_server(*tls_args(tls_certs))
    s = connect(f)
    with pytest.raises(lmtp.LMTPCertificateError) as info:
        if how == "no arguments":
            s.starttls()
        else:
            s.starttls(context=ssl.create_default_context())
    err = info.value
    assert isinstance(err, ssl.SSLError)
    assert isinstance(err, ssl.SSLCertVerificationError)
    assert isinstance(err, smtplib.SMTPServerDisconnected)
    assert "unable to get local issuer certificate" in str(err)
    assert_closed(s)
    assert f.transcript() == lhlo(s) + b"STARTTLS\r\n"
    assert f.stop()["TLS_SESSIONS"] == 0


@pytest.mark.parametrize("cert, ca, reason", [
    ("wrong-name", "ca", "mismatch"),
    ("expired", "ca", "certificate has expired"),
    ("self-signed", "ca", "self-signed certificate"),
    ("server", "other-ca", "unable to get local issuer certificate"),
])
def test_certificate_refused(fake_server, tls_certs, cert, ca, reason):
    f = fake_server(*tls_args(tls_certs, cert))
    s = connect(f)
    with pytest.raises(ssl.SSLCertVerificationError) as info:  # as a caller of smtplib catches it
        s.starttls(cafile=str(tls_certs / (ca + ".pem")))
    assert isinstance(info.value, lmtp.LMTPCertificateError)
    assert reason in str(info.value)
    assert_closed(s)
    assert f.transcript() == lhlo(s) + b"STARTTLS\r\n"


def test_check_hostname_false_accepts_the_wrong_name_but_still_verifies(fake_server, tls_certs):
    ctx = ca_context(tls_certs)
    ctx.check_hostname = False
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    f = fake_server(*tls_args(tls_certs, "wrong-name"))
    s = connect(f)
    assert s.starttls(context=ctx) == (220, b"2.0.0 ready")
    assert s.noop()[0] == 250
    for bad in ("self-signed", "expired"):
        g = fake_server(*tls_args(tls_certs, bad))
        s = connect(g)
        with pytest.raises(lmtp.LMTPCertificateError):
            s.starttls(context=ctx)
        assert g.stop()["TLS_SESSIONS"] == 0


def test_server_hostname(fake_server, tls_certs):
    f = fake_server(*tls_args(tls_certs, "wrong-name"))
    s = connect(f)
    assert s.starttls(cafile=str(tls_certs / "ca.pem"), server_hostname="other.example")[0] == 220
    g = fake_server(*tls_args(tls_certs))
    s = connect(g)
    with pytest.raises(lmtp.LMTPCertificateError) as info:
        s.starttls(cafile=str(tls_certs / "ca.pem"), server_hostname="other.example")
    assert "mismatch" in str(info.value)


@pytest.mark.parametrize("cert", ["self-signed", "expired", "wrong-name"])
def test_cert_none_accepts_anything(fake_server, tls_certs, cert):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    f = fake_server(*tls_args(tls_certs, cert))
    s = connect(f)
    assert s.starttls(context=ctx) == (220, b"2.0.0 ready")
    assert s.noop()[0] == 250
    s2 = connect(f)
    assert s2.starttls(insecure=True)[0] == 220
    assert f.stop()["TLS_SESSIONS"] == 2


def test_minimum_version_from_the_context(fake_server, tls_certs):
    f = fake_server(*tls_args(tls_certs), "--tls-max-version", "1.2")
    ctx = ca_context(tls_certs)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    s = connect(f)
    with pytest.raises(lmtp.LMTPTLSError) as info:
        s.starttls(context=ctx)
    assert not isinstance(info.value, ssl.SSLCertVerificationError)
    assert_closed(s)
    s = connect(f)
    assert s.starttls(context=ca_context(tls_certs))[0] == 220
    f.stop()
    assert "version=TLSv1.2" in [e for e in f.events() if e.startswith("TLS ")][0]


def test_starttls_not_offered(fake_server, LMTP):
    f = fake_server()
    s = LMTP(*f.address, timeout=10)
    with pytest.raises(smtplib.SMTPNotSupportedError):
        s.starttls()
    assert s.noop()[0] == 250
    s.close()
    assert f.transcript().upper() == lhlo(s) + b"NOOP\r\n"  # (smtplib sends its verbs in lower case)


def test_starttls_refused_with_454(fake_server, tls_certs, LMTP):
    f = fake_server(*tls_args(tls_certs), "--fault-on", "STARTTLS", "--fault-reply",
                    r"454 4.7.0 TLS not available now\r\n")
    s = LMTP(*f.address, timeout=10)
    with pytest.raises(smtplib.SMTPResponseException) as info:
        s.starttls(context=ca_context(tls_certs))
    assert (info.value.smtp_code, info.value.smtp_error) == (454, b"4.7.0 TLS not available now")
    assert s.noop() == (250, b"2.0.0 OK")  # still in plain text, in step
    assert "starttls" in s.esmtp_features
    s.quit()
    assert f.stop()["TLS_SESSIONS"] == 0


def test_starttls_plaintext_injection(fake_server, tls_certs):
    f = fake_server(*tls_args(tls_certs), "--tls-plain-after-220", r"250 2.0.0 injected\r\n")
    s = connect(f)
    with pytest.raises(lmtp.LMTPProtocolError):
        s.starttls(cafile=str(tls_certs / "ca.pem"))
    assert_closed(s)
    assert f.transcript() == lhlo(s) + b"STARTTLS\r\n"
    assert f.stop()["TLS_SESSIONS"] == 0


def test_handshake_garbage(fake_server, tls_certs):
    f = fake_server(*tls_args(tls_certs), "--tls-fail-handshake", "garbage")
    s = connect(f)
    with pytest.raises(lmtp.LMTPTLSError) as info:
        s.starttls(cafile=str(tls_certs / "ca.pem"))
    assert isinstance(info.value, ssl.SSLError) and isinstance(info.value, smtplib.SMTPServerDisconnected)
    assert not isinstance(info.value, ssl.SSLCertVerificationError)
    assert_closed(s)


@pytest.mark.parametrize("case", ["unix socket, no server_hostname", "missing cafile", "key not matching"])
def test_unusable_tls_settings_refused_before_starttls(fake_server, tls_certs, case):
    # The caller's mistake, found before anything is sent: ValueError, and the session goes on.
    f = fake_server(*tls_args(tls_certs), unix=case.startswith("unix"))
    kw = {"cafile": str(tls_certs / "ca.pem")}
    if case == "missing cafile":
        kw["cafile"] = str(tls_certs / "no-such-ca.pem")
    elif case == "key not matching":
        kw.update(certfile=str(tls_certs / "client.pem"), keyfile=str(tls_certs / "server.key"))
    s = connect(f)
    s.ehlo()
    with pytest.raises(ValueError):
        s.starttls(**kw)
    assert s.noop() == (250, b"2.0.0 OK")
    s.quit()
    assert f.transcript() == lhlo(s) + b"NOOP\r\nQUIT\r\n"  # no STARTTLS went out


def test_unix_socket_starttls_with_server_hostname(fake_server, tls_certs):
    f = fake_server(*tls_args(tls_certs), unix=True)
    s = connect(f)
    assert s.starttls(cafile=str(tls_certs / "ca.pem"), server_hostname="localhost")[0] == 220
    assert s.noop()[0] == 250
    s.quit()
    assert f.stop()["TLS_SESSIONS"] == 1


# ---------------------------------------------------------------------------
# Implicit TLS: LMTP_SSL, as smtplib.SMTP_SSL

def test_lmtp_ssl_delivers_inside_tls_from_the_first_byte(fake_server, tls_certs):
    f = fake_server(*tls_args(tls_certs), "--tls-implicit", "--cap", "CHUNKING")
    with lmtp.LMTP_SSL(*f.address, timeout=10, context=ca_context(tls_certs)) as s:
        assert isinstance(s, lmtp.LMTP)
        assert s.ehlo()[0] == 250
        assert "starttls" not in s.esmtp_features and s.has_extn("chunking")
        [r] = s.deliver("me@x", ["alice@x"], b"Subject: implicit\n\nbody\n")
        assert (r.code, r.ok) == (250, True)
    assert f.stop()["TLS_SESSIONS"] == 1
    assert f.transcript() == (lhlo(s) + b"MAIL FROM:<me@x>\r\nRCPT TO:<alice@x>\r\n"
                              b"BDAT 27 LAST\r\nSubject: implicit\r\n\r\nbody\r\nQUIT\r\n")
    assert f.events()[0].startswith("TLS ")


def test_lmtp_ssl_with_a_client_certificate_over_a_unix_socket(fake_server, tls_certs):
    f = fake_server(*tls_args(tls_certs), "--tls-implicit", "--tls-verify-client", "require",
                    "--tls-client-ca", tls_certs / "ca.pem", unix=True)
    s = lmtp.LMTP_SSL(*f.address, timeout=10, keyfile=str(tls_certs / "client.key"),
                      certfile=str(tls_certs / "client.pem"), cafile=str(tls_certs / "ca.pem"),
                      server_hostname="localhost")
    assert s.noop() == (250, b"2.0.0 OK")
    s.quit()
    assert f.stop()["TLS_SESSIONS"] == 1


@pytest.mark.parametrize("cert, reason", [("wrong-name", "mismatch"), ("expired", "certificate has expired"),
                                          ("self-signed", "self-signed certificate")])
def test_lmtp_ssl_refuses_a_bad_certificate(fake_server, tls_certs, cert, reason):
    f = fake_server(*tls_args(tls_certs, cert), "--tls-implicit")
    with pytest.raises(lmtp.LMTPCertificateError) as info:
        lmtp.LMTP_SSL(*f.address, timeout=10, cafile=str(tls_certs / "ca.pem"))
    assert reason in str(info.value)
    # Named as such, the opt-out connects to the same server.
    s = lmtp.LMTP_SSL(*f.address, timeout=10, insecure=True)
    assert s.noop()[0] == 250
    s.quit()
    assert f.stop()["TLS_SESSIONS"] == 1


def test_lmtp_ssl_to_a_plain_text_server_fails_at_once(fake_server, tls_certs):
    f = fake_server()
    t0 = time.monotonic()
    with pytest.raises(lmtp.LMTPTLSError):
        lmtp.LMTP_SSL(*f.address, timeout=10, cafile=str(tls_certs / "ca.pem"))
    assert time.monotonic() - t0 < 5  # the banner is not a TLS record: no waiting for the timeout
    # No LMTP command went in plain text: at most a TLS ClientHello (a handshake record; the
    # server may not have read it before the client gave up and reset the connection).
    f.stop()
    sent = f.transcript()
    assert sent == b"" or sent.startswith(b"\x16\x03")
    assert b"LHLO" not in sent


def test_lmtp_ssl_unusable_settings(fake_server, tls_certs):
    f = fake_server(*tls_args(tls_certs), "--tls-implicit")
    with pytest.raises(ValueError):
        lmtp.LMTP_SSL(*f.address, timeout=10, cafile=str(tls_certs / "no-such-ca.pem"))
    assert f.stop()["TLS_SESSIONS"] == 0


# ---------------------------------------------------------------------------
# AUTH

def plain_response(user=USER, password=PASSWORD):
    return base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode())


def test_login_plain_over_tls(fake_server, tls_certs):
    f = fake_server(*tls_args(tls_certs), "--auth", "PLAIN LOGIN", *AUTH_ARGS)
    s = connect(f)
    s.starttls(cafile=str(tls_certs / "ca.pem"))
    assert s.login(USER, PASSWORD) == OK_235
    assert s.mail("me@x") == (250, b"2.1.0 OK")
    s.quit()
    f.stop()
    assert f.transcript() == (lhlo(s) + b"STARTTLS\r\n" + lhlo(s) + b"AUTH PLAIN " + plain_response() + b"\r\n"
                              b"MAIL FROM:<me@x>\r\nQUIT\r\n")
    assert [e for e in f.events() if e.startswith("AUTH")] == ["AUTH_OK 235 PLAIN " + USER]


def test_login_wrong_password(fake_server, tls_certs):
    f = fake_server(*tls_args(tls_certs), "--auth", "PLAIN", *AUTH_ARGS)
    s = connect(f)
    s.starttls(cafile=str(tls_certs / "ca.pem"))
    with pytest.raises(smtplib.SMTPAuthenticationError) as info:
        s.login(USER, "wrong")
    assert (info.value.smtp_code, info.value.smtp_error) == BAD_CREDENTIALS
    assert s.login(USER, PASSWORD) == OK_235  # the connection stays, as with smtplib
    s.quit()
    f.stop()
    assert [e for e in f.events() if e.startswith("AUTH")] == ["AUTH_FAILED 535 PLAIN " + USER,
                                                               "AUTH_OK 235 PLAIN " + USER]


def test_login_over_plain_tcp_refused_unless_allowed(fake_server):
    f = fake_server("--auth", "PLAIN LOGIN", *AUTH_ARGS)
    s = connect(f)
    with pytest.raises(lmtp.LMTPInsecureError) as info:
        s.login(USER, PASSWORD)
    assert isinstance(info.value, smtplib.SMTPException)
    assert s.noop()[0] == 250  # nothing was sent; the session goes on
    assert f.transcript() == lhlo(s) + b"NOOP\r\n"
    assert s.login(USER, PASSWORD, allow_plaintext=True) == OK_235
    s.quit()
    s = connect(f)
    s.allow_plaintext_auth = True
    assert s.login(USER, PASSWORD) == OK_235
    s.quit()
    assert f.stop()["AUTH_SUCCESSES"] == 2
    assert b"AUTH PLAIN " + plain_response() + b"\r\n" in f.transcript()


def test_login_plain_over_a_unix_socket(fake_server):
    f = fake_server("--auth", "PLAIN", *AUTH_ARGS, unix=True)
    s = connect(f)
    assert s.login(USER, PASSWORD) == OK_235  # not a network: no TLS needed
    s.quit()
    assert f.stop()["AUTH_SUCCESSES"] == 1


def test_login_scram_over_plain_tcp(fake_server):
    f = fake_server("--auth", "PLAIN LOGIN SCRAM-SHA-256", *AUTH_ARGS)
    s = connect(f)
    assert s.login(USER, PASSWORD) == OK_235  # SCRAM never reveals the password: fine without TLS
    s.quit()
    s = connect(f)
    with pytest.raises(smtplib.SMTPAuthenticationError) as info:
        s.login(USER, "wrong")
    assert (info.value.smtp_code, info.value.smtp_error) == BAD_CREDENTIALS
    s.close()
    f.stop()
    assert [e for e in f.events() if e.startswith("AUTH")] == ["AUTH_OK 235 SCRAM-SHA-256 " + USER,
                                                               "AUTH_FAILED 535 SCRAM-SHA-256 " + USER]
    assert PASSWORD.encode() not in f.transcript()


def test_login_scram_server_without_proof(fake_server):
    f = fake_server("--auth", "SCRAM-SHA-256", *AUTH_ARGS, "--scram-bad-server-signature")
    s = connect(f)
    with pytest.raises(smtplib.SMTPAuthenticationError):
        s.login(USER, PASSWORD)
    assert f.stop().get("AUTH_SUCCESSES", 0) == 0


def test_login_without_auth(fake_server, LMTP):
    f = fake_server()
    s = LMTP(*f.address, timeout=10)
    with pytest.raises(smtplib.SMTPNotSupportedError):
        s.login(USER, PASSWORD)
    s.close()
    assert f.transcript().upper() == lhlo(s)  # nothing but LHLO (smtplib: "lhlo")


def test_logging_never_shows_the_password(fake_server, tls_certs, caplog):
    caplog.set_level(logging.DEBUG, logger="lmtp")
    plain = fake_server(*tls_args(tls_certs), "--auth", "PLAIN", *AUTH_ARGS)
    login = fake_server(*tls_args(tls_certs), "--auth", "LOGIN", *AUTH_ARGS)
    scram = fake_server("--auth", "SCRAM-SHA-256", *AUTH_ARGS)
    for f in (plain, login, scram):
        s = connect(f)
        if f is not scram:
            s.starttls(cafile=str(tls_certs / "ca.pem"))
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.login(USER, "wrong" + PASSWORD)
        assert s.login(USER, PASSWORD) == OK_235
        s.quit()
    s = connect(plain)  # and PLAIN over plain TCP, allowed
    assert s.login(USER, PASSWORD, allow_plaintext=True) == OK_235
    s.quit()
    assert [f.stop()["AUTH_SUCCESSES"] for f in (plain, login, scram)] == [2, 1, 1]
    text = "\n".join(r.getMessage() for r in caplog.records if r.name == "lmtp")
    for mech in ("PLAIN", "LOGIN", "SCRAM-SHA-256"):
        assert "send: 'AUTH %s" % mech in text
    assert PASSWORD not in text
    for secret in (b"\0" + USER.encode() + b"\0" + PASSWORD.encode(), PASSWORD.encode(),
                   b"\0" + USER.encode() + b"\0wrong" + PASSWORD.encode(), b"wrong" + PASSWORD.encode()):
        b64 = base64.b64encode(secret).decode().rstrip("=")[:-2]
        assert b64 not in text


# ---------------------------------------------------------------------------
# BDAT

CHUNKING = ("--cap", "CHUNKING", "--rules", RULES)


def test_deliver_by_bdat_in_one_round_trip(fake_server):
    f = fake_server(*CHUNKING)
    s = connect(f)
    s.ehlo()
    assert s.has_extn("chunking")
    [r] = s.deliver("me@x", ["alice@x"], b"Subject: x\n\nhi\n")
    assert (r.address, r.stage, r.code, r.ok) == ("alice@x", "data", 250, True)
    s.close()
    stats = f.stop()
    assert f.transcript() == lhlo(s) + b"MAIL FROM:<me@x>\r\nRCPT TO:<alice@x>\r\nBDAT 18 LAST\r\nSubject: x\r\n\r\nhi\r\n"
    # the greeting, LHLO's reply, and one for MAIL, RCPT and the message together
    assert stats["FLUSHES"] == 3
    assert stats["LOCKSTEP_VIOLATIONS"] == 0
    assert f.messages() == [b"Subject: x\r\n\r\nhi\r\n"]

    g = fake_server(*CHUNKING)
    s = connect(g)
    s.ehlo()
    [r] = s.deliver("me@x", ["alice@x"], b"Subject: x\n\nhi\n", transfer="data")
    assert r.ok
    s.close()
    assert g.stop()["FLUSHES"] == 4  # DATA costs a round trip more
    assert g.transcript() == (lhlo(s) + b"MAIL FROM:<me@x>\r\nRCPT TO:<alice@x>\r\nDATA\r\n"
                              b"Subject: x\r\n\r\nhi\r\n.\r\n")


def test_sendmail_by_bdat(fake_server):
    f = fake_server(*CHUNKING)
    s = connect(f)
    assert s.sendmail("me@x", ["alice@x", "full@x"], "Subject: s\n\n.dot\n") == \
        {"full@x": (552, b"5.2.2 <full@x> Quota exceeded")}
    s.quit()
    f.stop()
    assert b"RCPT TO:<full@x>\r\nBDAT 20 LAST\r\nSubject: s\r\n\r\n.dot\r\nQUIT\r\n" in f.transcript()
    assert b"DATA" not in f.transcript()
    assert f.messages() == [b"Subject: s\r\n\r\n.dot\r\n"]  # no dot-stuffing with BDAT


def test_canonical_sends_the_bytes_untouched(fake_server):
    raw = b"Subject: c\r\n\r\nbare\nLF, lone\rCR\r\n.\r\n..two\r\nno end"
    f = fake_server(*CHUNKING)
    s = connect(f)
    [r] = s.deliver("me@x", ["alice@x"], raw, canonical=True)
    assert r.ok
    [r] = s.deliver("me@x", ["alice@x"], raw)
    assert r.ok
    s.quit()
    f.stop()
    fixed = b"Subject: c\r\n\r\nbare\r\nLF, lone\r\nCR\r\n.\r\n..two\r\nno end\r\n"
    t = f.transcript()
    assert b"BDAT %d LAST\r\n%s" % (len(raw), raw) in t
    assert b"BDAT %d LAST\r\n%s" % (len(fixed), fixed) in t
    assert f.messages() == [raw, fixed]


def test_transfer_bdat_needs_chunking(fake_server):
    f = fake_server()
    s = connect(f)
    s.ehlo()
    with pytest.raises(smtplib.SMTPNotSupportedError):
        s.deliver("me@x", ["alice@x"], MSG, transfer="bdat")
    assert s.noop() == (250, b"2.0.0 OK")
    s.quit()
    assert f.transcript() == lhlo(s) + b"NOOP\r\nQUIT\r\n"  # no BDAT to a server that did not offer it


def test_mixed_results_after_bdat_last(fake_server):
    f = fake_server(*CHUNKING)
    s = connect(f)
    rs = s.deliver("me@x", ["alice@x", "temp@x", "full@x", "nosuch@x", "bob@x"], MSG)
    assert [(r.address, r.stage, r.code, r.enhanced, r.outcome) for r in rs] == [
        ("alice@x", "data", 250, (2, 0, 0), "ok"),
        ("temp@x", "data", 452, (4, 2, 2), "temporary"),
        ("full@x", "data", 552, (5, 2, 2), "permanent"),
        ("nosuch@x", "rcpt", 550, (5, 1, 1), "permanent"),
        ("bob@x", "data", 250, (2, 0, 0), "ok"),
    ]
    assert [r.message for r in rs] == [b"2.0.0 <alice@x> Saved", b"4.2.2 <temp@x> Mailbox is full, try again later",
                                       b"5.2.2 <full@x> Quota exceeded", b"5.1.1 <nosuch@x> User doesn't exist",
                                       b"2.0.0 <bob@x> Saved"]
    assert [r.code for r in s.last_results] == [250, 452, 552, 550, 250]
    assert s.sendmail("me@x", ["temp@x", "alice@x"], MSG) == {
        "temp@x": (452, b"4.2.2 <temp@x> Mailbox is full, try again later")}
    assert s.noop() == (250, b"2.0.0 OK")
    s.quit()
    assert f.stop()["MESSAGES"] == 2
    assert b"DATA" not in f.transcript()


@pytest.mark.parametrize("size", [100, 1024 * 1024], ids=["last-chunk", "first-of-many"])
def test_refused_chunk(fake_server, size):
    f = fake_server(*CHUNKING, "--bdat-fail-chunk", "1")
    s = connect(f)
    body = b"Subject: big\r\n\r\n" + b"x" * 78 + b"\r\n"
    body = body * (size // len(body) + 1)
    rs = s.deliver("me@x", ["alice@x", "nosuch@x", "bob@x"], body)
    assert [(r.address, r.stage, r.code, r.outcome) for r in rs] == [
        ("alice@x", "data", 552, "permanent"), ("nosuch@x", "rcpt", 550, "permanent"),
        ("bob@x", "data", 552, "permanent")]
    assert rs[0].enhanced == (5, 3, 4) and rs[2].enhanced == (5, 3, 4)
    assert s.noop() == (250, b"2.0.0 OK")  # in step
    # the next delivery works (DATA: this server refuses the first chunk of every transaction)
    rs = s.deliver("me@x", ["alice@x", "bob@x"], b"Subject: next\r\n\r\nok\r\n", transfer="data")
    assert [(r.code, r.ok) for r in rs] == [(250, True), (250, True)]
    # and by BDAT again: the same verdicts, still in step
    rs = s.deliver("me@x", ["alice@x"], body)
    assert [(r.stage, r.code) for r in rs] == [("data", 552)]
    assert s.noop() == (250, b"2.0.0 OK")
    s.quit()
    stats = f.stop()
    assert f.messages() == [b"Subject: next\r\n\r\nok\r\n"]
    assert stats["LOCKSTEP_VIOLATIONS"] == 0


def test_nobody_accepted_stays_in_step(fake_server):
    f = fake_server(*CHUNKING)
    s = connect(f)
    rs = s.deliver("me@x", ["nosuch@x"], MSG)
    assert [(r.stage, r.code) for r in rs] == [("rcpt", 550)]
    assert s.noop() == (250, b"2.0.0 OK")
    with pytest.raises(smtplib.SMTPRecipientsRefused) as info:
        s.sendmail("me@x", ["nosuch@x"], MSG)
    assert info.value.recipients == {"nosuch@x": (550, b"5.1.1 <nosuch@x> User doesn't exist")}
    [r] = s.deliver("me@x", ["alice@x"], MSG)
    assert (r.code, r.message) == (250, b"2.0.0 <alice@x> Saved")
    assert s.rset() == (250, b"2.0.0 OK")
    assert s.quit()[0] == 221
    assert f.messages() == [MSG]


# A 50 MB message from a file, by BDAT, in bounded memory: measured in a child process
# (VmHWM: the peak of the address space made by exec, not the pytest process it was forked from).
CHILD = PEAK_KB + r"""
import io, json, sys
import lmtp

path, port = sys.argv[1:]
s = lmtp.LMTP("127.0.0.1", int(port), timeout=60)
# warm up the same code path with a small file-like message of several chunks
assert s.sendmail("me@x", ["alice@x"], io.BytesIO(b"Subject: warm-up\r\n\r\n" + b"w" * 78 * 10000 + b"\r\n")) == {}
before = peak_kb()
with open(path, "rb") as f:
    results = s.deliver("me@x", ["alice@x"], f)
after = peak_kb()
s.quit()
print(json.dumps({"before_kb": before, "after_kb": after,
                  "results": [(r.address, r.code, r.ok) for r in results]}))
"""


def test_50mb_message_from_a_file_by_bdat(fake_server, tmp_path):
    line = b"0123456789 the quick brown fox jumps over the lazy dog abcdefghijklmnopqrstu\r\n"  # 80 bytes
    path = tmp_path / "big.eml"
    with open(path, "wb") as out:
        out.write(b"Subject: fifty megabytes\r\n\r\n")
        block = b"".join(b"%07d " % i + line + (b".dot line\r\n" if i % 997 == 0 else b"") for i in range(8192))
        written = 0
        while written < 50 * 1024 * 1024:
            out.write(block)
            written += len(block)
    size = path.stat().st_size
    f = fake_server("--cap", "CHUNKING")
    r = run_child(CHILD, path, f.port)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert report["results"] == [["alice@x", 250, True]]
    growth_kb = report["after_kb"] - report["before_kb"]
    print("peak RSS %d KiB before, %d KiB after" % (report["before_kb"], report["after_kb"]))
    assert growth_kb < 8 * 1024, "peak memory grew by %d KiB for a %d KiB message" % (growth_kb, size // 1024)
    stats = f.stop()
    assert stats["MESSAGES"] == 2
    t = f.transcript()
    assert b"\r\nDATA\r\n" not in t
    big = t[t.index(b"MAIL FROM:<me@x>", t.index(b"Subject: warm-up")):]
    header_end = big.index(b"\r\n", big.index(b"BDAT "))
    first = big[big.index(b"BDAT "):header_end]
    assert first.split()[0] == b"BDAT" and first.split()[1].isdigit() and b"LAST" not in first  # many chunks
    assert big.count(b"BDAT ") > 100  # (the message itself has no "BDAT" in it)
    with open(path, "rb") as src:
        original = src.read()
    stored = (f.messages_dir / "1.eml").read_bytes()
    assert len(stored) == size
    assert stored == original
    path.unlink()


# ---------------------------------------------------------------------------
# a real server

def test_dovecot_starttls_and_bdat(dovecot_tls, tls_certs, caplog):
    caplog.set_level(logging.DEBUG, logger="lmtp")
    subject = "tls-bdat-%s" % uuid.uuid4().hex[:12]
    msg = b"From: sender@example.org\r\nSubject: " + subject.encode() + b"\r\n\r\n.a dot line\r\nlast line\r\n"
    s = lmtp.LMTP("127.0.0.1", dovecot_tls.port, timeout=30)
    s.ehlo()
    assert s.has_extn("starttls")
    assert s.starttls(cafile=str(tls_certs / "ca.pem"))[0] == 220
    assert not s.has_extn("starttls") and s.has_extn("chunking")
    rcpts = ["%s@example.org" % u for u in ("alice", "nosuch", "full", "tempfull", "bob")]
    rs = s.deliver("sender@example.org", rcpts, msg)
    assert [(r.address, r.stage, r.code, r.outcome) for r in rs] == [
        ("alice@example.org", "data", 250, "ok"), ("nosuch@example.org", "rcpt", 550, "permanent"),
        ("full@example.org", "data", 552, "permanent"), ("tempfull@example.org", "data", 452, "temporary"),
        ("bob@example.org", "data", 250, "ok")]
    assert s.quit()[0] == 221
    sent = [r.getMessage() for r in caplog.records if r.name == "lmtp" and r.getMessage().startswith("send: ")]
    assert "send: 'BDAT %d LAST\\r\\n'" % len(msg) in sent
    assert "send: 'DATA\\r\\n'" not in sent
    for user in ("alice", "bob"):
        found = []
        for p in dovecot_tls.message_files(user):
            data = p.read_bytes()
            head = email.parser.BytesParser().parsebytes(data, headersonly=True)
            if head["Subject"] == subject:
                found.append(data)
        assert len(found) == 1, user
        head, _, body = found[0].partition(b"\n\n")
        assert body == b".a dot line\nlast line\n"
        assert b"using TLSv1." in head  # Dovecot's Received: says it came over TLS
    for user in ("full", "tempfull"):
        assert not dovecot_tls.messages(user, subject)
