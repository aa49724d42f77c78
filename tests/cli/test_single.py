"""lmtp-send, one message, against fake-lmtp: every option, every exit code, the exact bytes sent."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from clitest import SEND, crlf, lines, run, wait_for

MAKE_CERTS = os.environ.get("LMTP_MAKE_CERTS", "make-test-certs")
RULES = "alice@x=250,250;bob@x=250,250;full@x=250,552;temp@x=250,452;nosuch@x=550"
MSG = b"Subject: hi\n\n.leading dot\nbody\n"


@pytest.fixture
def msg(tmp_path):
    p = tmp_path / "m.eml"
    p.write_bytes(MSG)
    return p


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    subprocess.run([MAKE_CERTS, str(d)], check=True, capture_output=True)
    return d


def send(fake, *args, to=("alice@x",), stdin=None, env=None):
    rcpts = [a for t in to for a in ("--to", t)]
    return run("--server", fake.server, "--from", "me@x", *rcpts, *args, stdin=stdin, env=env)


# ---- verdicts and exit codes ---------------------------------------------------------

def test_every_recipient_delivered_exit_0(fakes, msg):
    f = fakes("--rules", RULES)
    r = send(f, msg, to=["alice@x", "bob@x"])
    assert r.returncode == 0, r.stderr
    assert lines(r.stdout) == ["alice@x ok 250 2.0.0 <alice@x> Saved", "bob@x ok 250 2.0.0 <bob@x> Saved"]
    assert f.messages() == [crlf(MSG)]
    sent = f.sent()
    assert b"MAIL FROM:<me@x>\r\nRCPT TO:<alice@x>\r\nRCPT TO:<bob@x>\r\nDATA\r\n" in sent
    assert b"\r\n..leading dot\r\nbody\r\n.\r\nQUIT\r\n" in sent
    assert f.stop()["MESSAGES"] == 1


def test_a_permanent_failure_is_65_whatever_else(fakes, msg):
    f = fakes("--rules", RULES)
    r = send(f, msg, to=["alice@x", "full@x", "temp@x", "nosuch@x"])
    assert r.returncode == 65
    assert lines(r.stdout) == [
        "alice@x ok 250 2.0.0 <alice@x> Saved",
        "full@x permfail 552 5.2.2 <full@x> Quota exceeded",
        "temp@x tempfail 452 4.2.2 <temp@x> Mailbox is full, try again later",
        "nosuch@x permfail 550 5.1.1 <nosuch@x> User doesn't exist",
    ]


def test_temporary_failures_only_are_75(fakes, msg):
    f = fakes("--rules", RULES)
    r = send(f, msg, to=["alice@x", "temp@x"])
    assert r.returncode == 75
    assert lines(r.stdout)[1].startswith("temp@x tempfail 452 4.2.2 ")


def test_every_recipient_refused_at_rcpt(fakes, msg):
    f = fakes("--rules", RULES)
    r = send(f, msg, to=["nosuch@x"])
    assert r.returncode == 65
    assert lines(r.stdout) == ["nosuch@x permfail 550 5.1.1 <nosuch@x> User doesn't exist"]
    assert f.stop()["MESSAGES"] == 0


def test_multiline_reply_text_on_one_line(fakes, msg):
    f = fakes("--rules", "odd@x=250,451:first|second")
    r = send(f, msg, to=["odd@x"])
    assert r.returncode == 75
    assert lines(r.stdout) == ["odd@x tempfail 451 4.3.0 first second"]


def test_reply_without_enhanced_code_prints_a_dash(fakes, msg):
    f = fakes("--no-enhanced", "--rules", RULES)
    r = send(f, msg, to=["full@x"])
    assert r.returncode == 65
    assert lines(r.stdout) == ["full@x permfail 552 - <full@x> Quota exceeded"]


def test_stdin_dash_and_no_file(fakes):
    f = fakes()
    assert send(f, "-", stdin=b"one\n").returncode == 0
    assert send(f, stdin=b"two\r\n").returncode == 0
    assert f.messages() == [b"one\r\n", b"two\r\n"]


def test_large_message_streams(fakes, tmp_path):
    big = tmp_path / "big.eml"
    body = b"Subject: big\n\n" + b"".join(b"line %07d .\n.x\n" % i for i in range(200000))
    big.write_bytes(body)
    f = fakes()
    r = send(f, big)
    assert r.returncode == 0, r.stderr
    assert f.messages() == [crlf(body)]


# ---- input and usage errors ----------------------------------------------------------------

def test_unreadable_file_is_66(fakes, tmp_path):
    f = fakes()
    r = send(f, tmp_path / "missing.eml")
    assert r.returncode == 66 and "missing.eml" in r.stderr
    r = send(f, tmp_path)  # a directory
    assert r.returncode == 66
    assert f.stop()["CONNECTIONS"] == 0  # the input is checked before connecting


@pytest.mark.parametrize("args", [
    [],                                                        # nothing
    ["--from", "a@x", "--to", "b@x"],                          # no --server
    ["--server", "127.0.0.1:1", "--to", "b@x"],                # no --from
    ["--server", "127.0.0.1:1", "--from", "a@x"],              # no --to
    ["--server", "127.0.0.1:0", "--from", "a", "--to", "b"],  # port 0
    ["--server", "127.0.0.1:99999", "--from", "a", "--to", "b"],
    ["--server", "127.0.0.1:x", "--from", "a", "--to", "b"],
    ["--server", "[::1", "--from", "a", "--to", "b"],
    ["--server", "[::1]x", "--from", "a", "--to", "b"],
    ["--server", "", "--from", "a", "--to", "b"],
    ["--server", "h", "--from", "a", "--to", "b", "--chunking", "maybe"],
    ["--server", "h", "--from", "a", "--to", "b", "--notify", "sometimes"],
    ["--server", "h", "--from", "a", "--to", "b", "--notify", "never,success"],
    ["--server", "h", "--from", "a", "--to", "b", "--ret", "body"],
    ["--server", "h", "--from", "a", "--to", "b", "--timeout", "0"],
    ["--server", "h", "--from", "a", "--to", "b", "--timeout", "soon"],
    ["--server", "h", "--from", "a", "--to", "b", "--progress-interval", "-1"],
    ["--server", "h", "--from", "a", "--to", "b", "--bogus"],
    ["--server", "h", "--from", "a", "--to"],
    ["--server", "h", "--from", "a", "--to", "b", "one.eml", "two.eml"],
    ["--server", "h", "--from", "a", "--to", "b", "one.eml", "--maildir", "d"],
    ["--server", "h", "--from", "a", "--to", "b", "--mbox", "m", "--maildir", "d"],
    ["--server", "h", "--from", "a", "--to", "b", "--key", "k.pem"],
    ["--server", "h", "--from", "a", "--to", "b", "--auth-mech", "PLAIN"],
    ["--server", "h", "--from", "a", "--to", "b", "--auth-user", "u"],  # no password anywhere
])
def test_bad_arguments_are_64(args):
    r = run(*args)
    assert r.returncode == 64, (args, r.stderr)
    assert r.stderr.startswith("lmtp-send: ") and "--help" in r.stderr
    assert r.stdout == ""


def test_bad_address_refused_locally_is_64(fakes, msg):
    f = fakes()
    r = send(f, msg, to=["a b@x>"])
    assert r.returncode == 64
    assert lines(r.stdout)[0].startswith("a b@x> unknown - - ")
    assert b"RCPT" not in f.sent()


def test_bad_hello_is_64(fakes, msg):
    f = fakes()
    assert send(f, msg, "--hello", "two words").returncode == 64


def test_help_and_version():
    r = run("--help")
    assert r.returncode == 0
    assert r.stdout.startswith("usage: lmtp-send ")
    for option in ["--server", "--starttls", "--tls-required", "--ca", "--insecure", "--timeout", "--hello",
                   "--chunking", "--notify", "--ret", "--envid", "--8bitmime", "--smtputf8", "--json",
                   "--maildir", "--mbox", "--auth-user", "--auth-password-file", "--progress-interval"]:
        assert option in r.stdout, option
    for code in ["64", "65", "66", "69", "74", "75", "76", "77", "130"]:
        assert re.search(rf"^ *{code}  ", r.stdout, re.M) or f" {code}  " in r.stdout, code
    r = run("-V")
    assert r.returncode == 0 and re.fullmatch(r"lmtp-send \d+\.\d+\.\d+ \(liblmtp \d+\.\d+\.\d+\)\n", r.stdout)


# ---- where the server is -------------------------------------------------------------------

def test_ipv6_in_brackets(fakes, msg):
    f = fakes(inet6=True)
    assert f.server.startswith("[::1]:")
    assert send(f, msg).returncode == 0
    assert f.stop()["MESSAGES"] == 1


def test_bare_ipv6_takes_the_default_port(msg):
    r = run("--server", "::1", "--from", "a@x", "--to", "b@x", msg)
    assert r.returncode == 69
    assert "port 24" in r.stderr


def test_unix_socket(fakes, msg):
    f = fakes(unix=True)
    assert f.server.startswith("/")
    r = send(f, msg)
    assert r.returncode == 0, r.stderr
    assert f.stop()["MESSAGES"] == 1


def test_default_port_is_24(fakes, msg):
    probe = socket.socket()
    try:
        probe.bind(("127.0.0.1", 24))
    except OSError:
        r = run("--server", "127.0.0.1", "--from", "a@x", "--to", "b@x", msg)
        assert "port 24" in r.stderr  # something else holds the port: the message names it
        return
    probe.close()
    f = fakes("--port", "24")
    r = run("--server", "127.0.0.1", "--from", "me@x", "--to", "alice@x", msg)
    assert r.returncode == 0, r.stderr
    assert f.stop()["MESSAGES"] == 1


# ---- could not deliver at all ------------------------------------------------------------

def test_connection_refused_is_69(msg):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    r = run("--server", f"127.0.0.1:{port}", "--from", "a@x", "--to", "b@x", "--to", "c@x", msg)
    assert r.returncode == 69
    assert lines(r.stdout) == [f"b@x unknown - - cannot connect to 127.0.0.1 port {port}: Connection refused",
                               f"c@x unknown - - cannot connect to 127.0.0.1 port {port}: Connection refused"]
    assert f"lmtp-send: 127.0.0.1:{port}: " in r.stderr


def test_unknown_host_is_69(msg):
    r = run("--server", "no-such-host.invalid", "--from", "a@x", "--to", "b@x", msg)
    assert r.returncode == 69 and "no-such-host.invalid" in r.stderr


def test_greeting_421_is_69(fakes, msg):
    f = fakes("--fault-on", "", "--fault-reply", r"421 4.3.2 go away\r\n", "--fault-action", "close")
    r = send(f, msg)
    assert r.returncode == 69
    assert "421" in r.stderr and "go away" in r.stderr


def test_connection_closed_at_data_is_74(fakes, msg):
    f = fakes("--fault-on", "DATA", "--fault-action", "close")
    r = send(f, msg, to=["alice@x", "bob@x"])
    assert r.returncode == 74
    out = lines(r.stdout)
    assert len(out) == 2 and all(" unknown - - " in l for l in out)
    assert f.stop()["MESSAGES"] == 0


def test_timeout_is_74(fakes, msg):
    f = fakes("--fault-on", ".", "--fault-action", "hang")
    r = send(f, msg, "--timeout", "0.5")
    assert r.returncode == 74
    assert lines(r.stdout)[0].startswith("alice@x unknown - - ")
    assert "time" in r.stderr.lower()


BROKEN_VERDICTS = ["alice@x ok 250 2.0.0 <alice@x> Saved", "full@x permfail 552 5.2.2 <full@x> Quota exceeded",
                   "temp@x tempfail 452 4.2.2 <temp@x> Mailbox is full, try again later"]


@pytest.mark.parametrize("k", [0, 1, 2, 3])
@pytest.mark.parametrize("action", ["close", "reset"])
@pytest.mark.parametrize("chunking", ["off", "on"])
def test_connection_broken_after_k_verdicts_keeps_them(fakes, msg, chunking, action, k):
    caps = ("--cap", "CHUNKING") if chunking == "on" else ()
    f = fakes("--rules", RULES, *caps, "--fault-on", ".", "--fault-replies", str(k), "--fault-action", action)
    r = send(f, msg, "--chunking", chunking, to=["alice@x", "full@x", "temp@x"])
    out = lines(r.stdout)
    assert out[:k] == BROKEN_VERDICTS[:k], r.stderr
    for line, address in zip(out[k:], ["alice@x", "full@x", "temp@x"][k:]):
        assert line.startswith(address + " unknown - - "), line
    assert len(out) == 3
    # every verdict came: the break goes unnoticed (65: full@x refused); else the connection broke (74)
    assert r.returncode == (65 if k == 3 else 74), r.stderr


def test_net_server_mail_lmtp_answers_a_line_per_recipient(msg, tmp_path):
    """A real Net::Server::Mail::LMTP: one multi-line reply with a line per recipient after the message."""
    script = os.environ.get("LMTP_NSM_SERVER", "")
    if not os.path.exists(script):
        if os.environ.get("LMTP_TEST_STRICT"):
            pytest.fail("LMTP_NSM_SERVER is not set (tests/support/nsm-lmtp.pl)")
        pytest.skip("LMTP_NSM_SERVER is not set")
    server = subprocess.Popen(["perl", script, "--exit-on-eof"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        where = "127.0.0.1:" + server.stdout.readline().split()[1]
        r = run("--server", where, "--from", "me@x", "--to", "a@x", "--to", "fail@x", "--to", "temp@x", msg,
                "--timeout", "10")
        assert r.returncode == 65, r.stderr
        assert lines(r.stdout) == ["a@x ok 250 - Ok", "fail@x permfail 550 - fail@x Failed",
                                   "temp@x tempfail 452 - temp@x try again later"]
        r = run("--server", where, "--from", "me@x", "--to", "a@x", "--to", "b@x", msg, "--timeout", "10")
        assert r.returncode == 0, r.stderr
        assert lines(r.stdout) == ["a@x ok 250 - Ok", "b@x ok 250 - Ok"]
        r = run("--server", where, "--from", "me@x", "--to", "fail@x", "--to", "b@x", msg, "--strict-replies")
        assert r.returncode == 76, r.stderr  # read strictly, mixed codes in one reply are no reply at all
    finally:
        server.stdin.close()
        assert server.wait(timeout=10) == 0
        server.stdout.close()


def test_garbage_reply_is_76(fakes, msg):
    f = fakes("--fault-on", ".", "--fault-reply", r"hello there\r\n", "--fault-action", "continue")
    r = send(f, msg)
    assert r.returncode == 76, r.stderr


# ---- message parameters: the bytes on the wire ------------------------------------------------

def test_dsn_parameters(fakes, msg):
    f = fakes("--cap", "DSN")
    r = send(f, msg, "--notify", "success,delay", "--ret", "hdrs", "--envid", "id+1 x", to=["alice@x", "bob@x"])
    assert r.returncode == 0, r.stderr
    sent = f.sent()
    assert b"MAIL FROM:<me@x> RET=HDRS ENVID=id+2B1+20x\r\n" in sent
    assert b"RCPT TO:<alice@x> NOTIFY=SUCCESS,DELAY\r\nRCPT TO:<bob@x> NOTIFY=SUCCESS,DELAY\r\n" in sent
    f2 = fakes("--cap", "DSN")
    assert send(f2, msg, "--notify", "never", "--ret", "full").returncode == 0
    assert b"MAIL FROM:<me@x> RET=FULL\r\nRCPT TO:<alice@x> NOTIFY=NEVER\r\n" in f2.sent()


def test_dsn_not_offered_is_69_and_nothing_sent(fakes, msg):
    f = fakes()
    r = send(f, msg, "--notify", "failure")
    assert r.returncode == 69
    assert "DSN" in r.stderr
    assert b"MAIL" not in f.sent()


def test_8bitmime_and_smtputf8(fakes, msg):
    f = fakes("--cap", "SMTPUTF8")
    r = send(f, msg, "--8bitmime", "--smtputf8")
    assert r.returncode == 0, r.stderr
    assert re.search(rb"MAIL FROM:<me@x> (BODY=8BITMIME SMTPUTF8|SMTPUTF8 BODY=8BITMIME)\r\n", f.sent())


def test_8bitmime_not_offered_is_69(fakes, msg):
    f = fakes("--no-8bitmime")
    assert send(f, msg, "--8bitmime").returncode == 69
    assert send(f, msg, "--smtputf8").returncode == 69


def test_null_sender(fakes, msg):
    f = fakes()
    r = run("--server", f.server, "--from", "", "--to", "alice@x", msg)
    assert r.returncode == 0, r.stderr
    assert b"MAIL FROM:<>\r\n" in f.sent()


def test_size_declared_for_a_file_and_too_big_is_65(fakes, msg, tmp_path):
    f = fakes("--size", "1000")
    assert send(f, msg).returncode == 0
    # The size on the wire: every LF of the file becomes CRLF.
    assert f"MAIL FROM:<me@x> SIZE={len(crlf(MSG))}\r\n".encode() in f.sent()
    big = tmp_path / "big.eml"
    big.write_bytes(b"x" * 2000 + b"\n")
    r = send(f, big, to=["alice@x", "bob@x"])
    assert r.returncode == 65
    out = lines(r.stdout)
    assert len(out) == 2 and out[0].startswith("alice@x unknown - - ") and "SIZE" in out[0]
    assert f.stop()["MESSAGES"] == 1


@pytest.mark.parametrize("body", [
    b"Subject: lf\n\nline\n.dot\n",            # LF line ends: each one more octet on the wire
    b"Subject: crlf\r\n\r\nline\r\n",         # already CRLF: the file's own size
    b"Subject: cr\r\rmixed\r\nends\n",         # a bare CR, CRLF and LF
    b"Subject: open\n\nno final line end",      # the final CRLF the library adds counts too
    b"",
])
def test_size_is_the_size_on_the_wire(fakes, tmp_path, body):
    f = fakes("--size", "100000")
    path = tmp_path / "m.eml"
    path.write_bytes(body)
    r = send(f, path)
    assert r.returncode == 0, r.stderr
    [mail] = [l for l in f.sent().split(b"\r\n") if l.startswith(b"MAIL ")]
    if body:
        [stored] = f.messages()
        assert mail == b"MAIL FROM:<me@x> SIZE=%d" % len(stored), (mail, stored)
    else:
        assert mail == b"MAIL FROM:<me@x>"  # an empty file declares nothing, as before


def test_size_counts_line_ends_against_the_limit(fakes, tmp_path):
    # 990 octets in the file, 1089 on the wire: over a limit of 1000, refused before MAIL.
    path = tmp_path / "m.eml"
    path.write_bytes(b"xxxxxxxxx\n" * 99)
    assert path.stat().st_size == 990
    f = fakes("--size", "1000")
    r = send(f, path)
    assert r.returncode == 65, r.stderr
    assert "1089 octets" in r.stdout + r.stderr
    assert b"MAIL" not in f.sent()


def test_size_not_declared_for_a_pipe(fakes):
    f = fakes("--size", "100000")
    r = send(f, "-", stdin=b"Subject: piped\n\nbody\n")
    assert r.returncode == 0, r.stderr
    assert b"MAIL FROM:<me@x>\r\n" in f.sent()


def test_notify_and_ret_are_read_by_the_library(fakes, msg):
    f = fakes("--cap", "DSN")
    assert send(f, msg, "--notify", "Delay,SUCCESS", "--ret", "HDRS").returncode == 0
    assert b"MAIL FROM:<me@x> RET=HDRS\r\nRCPT TO:<alice@x> NOTIFY=SUCCESS,DELAY\r\n" in f.sent()
    for args, says in [(["--notify", "success,sometimes"], "'SOMETIMES' is not a NOTIFY keyword"),
                       (["--notify", "never,delay"], "NEVER cannot be combined"),
                       (["--notify", "success XFOO"], "--notify"),
                       (["--notify", ""], "--notify"),
                       (["--ret", "full SIZE=1"], "--ret"),
                       (["--ret", "body"], "RET is FULL or HDRS")]:
        r = send(f, msg, *args)
        assert r.returncode == 64, (args, r.stderr)
        assert says in r.stderr, (args, r.stderr)


@pytest.mark.parametrize("mode,caps,verb,code", [
    ("on", ["--cap", "CHUNKING"], b"BDAT", 0),
    ("auto", ["--cap", "CHUNKING"], b"BDAT", 0),
    ("off", ["--cap", "CHUNKING"], b"DATA", 0),
    ("auto", [], b"DATA", 0),
    ("on", [], None, 69),
])
def test_chunking(fakes, msg, mode, caps, verb, code):
    f = fakes(*caps)
    r = send(f, msg, "--chunking", mode)
    assert r.returncode == code, r.stderr
    sent = f.sent()
    if verb == b"BDAT":
        assert f"BDAT {len(crlf(MSG))} LAST\r\n".encode() + crlf(MSG) in sent
        assert b"DATA" not in sent
    elif verb == b"DATA":
        assert b"DATA\r\n" in sent and b"BDAT" not in sent
    else:
        assert b"MAIL" not in sent and "CHUNKING" in r.stderr


def test_hello_name(fakes, msg):
    f = fakes()
    assert send(f, msg, "--hello", "client.example").returncode == 0
    assert f.sent().startswith(b"LHLO client.example\r\n")


# ---- trace and JSON -----------------------------------------------------------------------

def test_verbose_trace(fakes, msg):
    f = fakes()
    r = send(f, msg, "-v")
    assert r.returncode == 0
    err = r.stderr.splitlines()
    assert "<<< 220 fake.example LMTP ready" in err
    assert ">>> MAIL FROM:<me@x>" in err and ">>> DATA" in err and "<<< 354 go ahead" in err
    assert ">>> .leading dot" not in err  # the message only with -vv
    assert lines(r.stdout) == ["alice@x ok 250 2.0.0 <alice@x> Saved"]  # stdout untouched
    r = send(f, msg, "-vv")
    assert ">>> .leading dot" in r.stderr.splitlines()


def test_json(fakes, msg):
    f = fakes("--rules", RULES)
    r = send(f, msg, "--json", to=["alice@x", "nosuch@x", "temp@x"])
    assert r.returncode == 65
    out = lines(r.stdout)
    assert len(out) == 1
    doc = json.loads(out[0])
    assert doc["message"] == str(msg) and doc["bytes"] == len(MSG) and doc["exit"] == 65 and doc["error"] is None
    a, n, t = doc["recipients"]
    assert a == {"address": "alice@x", "status": "ok", "stage": "data", "code": 250, "enhanced": "2.0.0",
                 "text": "<alice@x> Saved", "rcpt_code": 250, "rcpt_text": "<alice@x> OK"}
    assert (n["status"], n["stage"], n["code"], n["enhanced"]) == ("permfail", "rcpt", 550, "5.1.1")
    assert (t["status"], t["stage"], t["code"]) == ("tempfail", "data", 452)


def test_json_escapes_and_errors(fakes, msg):
    f = fakes("--rules", 'q@x=250,452:say "hi"\\ \udcff')  # a raw 0xFF byte
    r = run("--server", f.server, "--from", "me@x", "--to", "q@x", "--json", msg)
    doc = json.loads(r.stdout)
    assert doc["recipients"][0]["text"] == 'say "hi"\\ \ufffd'
    r = run("--server", "127.0.0.1:1", "--from", "me@x", "--to", "q@x", "--json", msg)
    doc = json.loads(r.stdout)
    assert r.returncode == 69 and doc["exit"] == 69 and "Connection refused" in doc["error"]
    assert doc["recipients"][0]["status"] == "unknown"


# ---- TLS ----------------------------------------------------------------------------------

def test_starttls_verified(fakes, msg, certs):
    f = fakes("--make-test-certs", certs)
    r = send(f, msg, "--starttls", "--ca", certs / "ca.pem")
    assert r.returncode == 0, r.stderr
    assert any(l.startswith("MESSAGE 0 tls=1") for l in f.event_lines())
    assert f.stop()["TLS_SESSIONS"] == 1


def test_ca_directory(fakes, msg, certs, tmp_path):
    f = fakes("--make-test-certs", certs)  # (re)writes the certificates: hash the CA after
    # A CA directory needs hashed names; OpenSSL's "c_rehash" naming: <hash>.0
    h = subprocess.run(["openssl", "x509", "-hash", "-noout", "-in", certs / "ca.pem"], capture_output=True,
                       text=True)
    assert h.returncode == 0, h.stderr  # setup.sh installs openssl
    d = tmp_path / "cadir"
    d.mkdir()
    (d / (h.stdout.strip() + ".0")).write_bytes((certs / "ca.pem").read_bytes())
    assert send(f, msg, "--tls-required", "--ca", d).returncode == 0


def test_starttls_opportunistic_without_tls_goes_plain(fakes, msg, certs):
    f = fakes()
    assert send(f, msg, "--starttls", "--ca", certs / "ca.pem").returncode == 0
    assert f.stop()["TLS_SESSIONS"] == 0


def test_tls_required_not_offered_is_69(fakes, msg, certs):
    f = fakes()
    r = send(f, msg, "--tls-required", "--ca", certs / "ca.pem")
    assert r.returncode == 69
    assert b"MAIL" not in f.sent()


def test_untrusted_certificate_is_69_and_insecure_skips(fakes, msg, certs):
    f = fakes("--make-test-certs", certs)
    r = send(f, msg, "--tls-required")  # the system's CAs do not know the test CA
    assert r.returncode == 69
    assert "certificate" in r.stderr
    r = send(f, msg, "--tls-required", "--insecure")
    assert r.returncode == 0, r.stderr
    assert f.stop()["MESSAGES"] == 1


def test_tls_name_over_unix_socket(fakes, msg, certs):
    f = fakes("--make-test-certs", certs, unix=True)
    r = send(f, msg, "--tls-required", "--ca", certs / "ca.pem", "--tls-name", "other.example")
    assert r.returncode == 69  # the certificate is for localhost
    r = send(f, msg, "--tls-required", "--ca", certs / "ca.pem", "--tls-name", "localhost")
    assert r.returncode == 0, r.stderr


def test_client_certificate(fakes, msg, certs):
    f = fakes("--make-test-certs", certs, "--tls-verify-client", "require")
    r = send(f, msg, "--tls-required", "--ca", certs / "ca.pem", "--cert", certs / "client.pem",
             "--key", certs / "client.key")
    assert r.returncode == 0, r.stderr
    assert any("client_cert=verified" in l for l in f.event_lines())


def test_missing_ca_or_cert_file_is_66(fakes, msg, tmp_path):
    f = fakes()
    assert send(f, msg, "--starttls", "--ca", tmp_path / "nope.pem").returncode == 66
    assert send(f, msg, "--starttls", "--cert", tmp_path / "nope.pem").returncode == 66
    assert f.stop()["CONNECTIONS"] == 0


# ---- AUTH ---------------------------------------------------------------------------------

AUTH = ["--auth", "PLAIN LOGIN SCRAM-SHA-256", "--auth-user", "user", "--auth-password", "pencil"]


@pytest.fixture
def pwfile(tmp_path):
    p = tmp_path / "pw"
    p.write_text("pencil\n")
    return p


def test_auth_scram_from_password_file(fakes, msg, pwfile):
    f = fakes(*AUTH)
    r = send(f, msg, "--auth-user", "user", "--auth-password-file", pwfile, "-v")
    assert r.returncode == 0, r.stderr
    assert "AUTH_OK 235 SCRAM-SHA-256 user" in f.event_lines()
    assert "pencil" not in r.stderr


def test_auth_password_from_environment(fakes, msg):
    f = fakes(*AUTH)
    r = send(f, msg, "--auth-user", "user", env={"LMTP_PASSWORD": "pencil"})
    assert r.returncode == 0, r.stderr
    assert f.stop()["AUTH_SUCCESSES"] == 1


def test_auth_wrong_password_is_77(fakes, msg, tmp_path):
    f = fakes(*AUTH)
    bad = tmp_path / "bad"
    bad.write_text("wrong\n")
    r = send(f, msg, "--auth-user", "user", "--auth-password-file", bad)
    assert r.returncode == 77
    assert f.stop()["MESSAGES"] == 0


def test_auth_plain_needs_allow_plaintext_over_tcp(fakes, msg, pwfile):
    f = fakes(*AUTH)
    r = send(f, msg, "--auth-user", "user", "--auth-password-file", pwfile, "--auth-mech", "PLAIN")
    assert r.returncode == 77
    assert b"AUTH" not in f.sent()
    r = send(f, msg, "--auth-user", "user", "--auth-password-file", pwfile, "--auth-mech", "PLAIN",
             "--auth-allow-plaintext")
    assert r.returncode == 0, r.stderr
    assert "AUTH_OK 235 PLAIN user" in f.event_lines()


def test_auth_password_file_missing_is_66(fakes, msg, tmp_path):
    f = fakes(*AUTH)
    r = send(f, msg, "--auth-user", "user", "--auth-password-file", tmp_path / "none")
    assert r.returncode == 66
    assert f.stop()["CONNECTIONS"] == 0


# ---- Ctrl-C in single mode -----------------------------------------------------------------

def test_ctrl_c_twice_abandons_the_message(fakes):
    f = fakes()
    p = subprocess.Popen([SEND, "--server", f.server, "--from", "me@x", "--to", "alice@x", "-"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdin.write(b"Subject: half\n\nfirst half\n")
    p.stdin.flush()
    assert wait_for(lambda: b"DATA\r\n" in f.sent())
    time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    p.wait(timeout=30)  # with stdin still open: the message can only end by being abandoned
    out, err = p.communicate(timeout=30)
    assert p.returncode == 130, err
    assert out.decode().startswith("alice@x unknown - - ")
    assert f.stop()["MESSAGES"] == 0
    assert not f.sent().endswith(b"\r\n.\r\n") and b"QUIT" not in f.sent()


def test_man_page_documents_every_option():
    page = os.path.join(os.path.dirname(__file__), "..", "..", "cli", "lmtp-send.1")
    text = open(page).read().replace("\\-", "-")
    for option in re.findall(r"--[a-z0-9-]+", run("--help").stdout):
        assert option in text, option
    for code in ["64", "65", "66", "69", "70", "71", "74", "75", "76", "77", "130"]:
        assert f".B {code}\n" in text, code
    if shutil.which("groff"):
        groff = subprocess.run(["groff", "-man", "-ww", "-z", page], capture_output=True, text=True)
        assert groff.returncode == 0 and groff.stderr == "", groff.stderr
