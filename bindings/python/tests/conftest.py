"""Fixtures for the lmtp tests: the fake LMTP server (tests/support/fake-lmtp) and
a throwaway Dovecot LMTP (tests/support/dovecot.sh).

Both come from the environment (LMTP_FAKE_SERVER, LMTP_DOVECOT), as ctest sets
them. Without them the tests that need them are skipped, unless
LMTP_TEST_STRICT is set: then a missing server is a failure, not a skip.
Every server a fixture starts is stopped when the test (or the session) ends,
whether the test passed or not.
"""
import mailbox
import os
import re
import shlex
import signal
import smtplib
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import lmtp

STRICT = bool(os.environ.get("LMTP_TEST_STRICT"))


def unavailable(reason):
    """Skip, or fail in strict mode (ctest), when a server the test needs is missing."""
    if STRICT:
        pytest.fail(reason + " (LMTP_TEST_STRICT is set, so this is a failure)", pytrace=False)
    pytest.skip(reason)


def _program(variable):
    path = os.environ.get(variable)
    if not path:
        unavailable("%s is not set" % variable)
    if not os.access(path, os.X_OK):
        unavailable("%s=%s is not an executable file" % (variable, path))
    return path


# ---------------------------------------------------------------------------
# the fake server

class Fake:
    """One fake-lmtp process. ``host``/``port`` (TCP) or ``path`` (unix socket)."""

    def __init__(self, program, workdir, args, unix=False):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.transcript_path = self.workdir / "transcript.bin"
        self.sent_path = self.workdir / "sent.bin"
        self.messages_dir = self.workdir / "messages"
        self.messages_dir.mkdir(exist_ok=True)
        self.events_path = self.workdir / "events.txt"
        cmd = [program, "--transcript", str(self.transcript_path), "--sent", str(self.sent_path),
               "--messages-dir", str(self.messages_dir), "--events", str(self.events_path), *args]
        if unix:
            cmd += ["--unix", ""]  # a fresh short path in $TMPDIR (sun_path is 108 bytes)
        self.args = cmd
        self.stats = None
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, text=True)
        first = self.proc.stdout.readline().split()
        self.host, self.port, self.path = "127.0.0.1", None, None
        if len(first) == 2 and first[0] == "PORT":
            self.port = int(first[1])
        elif len(first) == 2 and first[0] == "UNIX":
            self.path = first[1]
        else:
            self.stop()
            raise RuntimeError("fake-lmtp did not start: %r %r" % (first, self.proc.stderr.read()))

    @property
    def address(self):
        """What the constructors take: (host, port) or (path,)."""
        return (self.path,) if self.path else (self.host, self.port)

    def transcript(self):
        """Every byte the clients sent so far."""
        try:
            return self.transcript_path.read_bytes()
        except FileNotFoundError:
            return b""

    def wait_transcript(self, predicate, timeout=3.0):
        """The transcript once predicate(transcript) holds (bytes may still be in flight)."""
        deadline = time.monotonic() + timeout
        while True:
            t = self.transcript()
            if predicate(t) or time.monotonic() > deadline:
                return t
            time.sleep(0.01)

    def events(self):
        """The --events lines so far (TLS handshakes, AUTH outcomes, messages), as str."""
        try:
            return self.events_path.read_text().splitlines()
        except FileNotFoundError:
            return []

    def commands(self):
        """The transcript as lines (CRLF or bare LF split, as the server reads them)."""
        return re.split(rb"\r?\n", self.transcript())

    def messages(self):
        """The messages the server stored, in order, as bytes."""
        files = sorted(self.messages_dir.glob("*.eml"), key=lambda p: int(p.stem))
        return [p.read_bytes() for p in files]

    def stop(self):
        """SIGTERM, wait, and return the counters it printed (once; later calls repeat them)."""
        if self.stats is not None:
            return self.stats
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        stats = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                stats[parts[0]] = int(parts[1])
        self.stats = stats
        self.stderr = err
        return stats


@pytest.fixture(scope="session")
def fake_program():
    return _program("LMTP_FAKE_SERVER")


@pytest.fixture(scope="session")
def tls_certs(fake_program, tmp_path_factory):
    """A directory with the test certificates of make-test-certs (next to fake-lmtp): ca.pem,
    server.pem/.key (localhost, 127.0.0.1, ::1), wrong-name, expired, self-signed, other-ca and
    client.pem/.key, each .pem with its .key."""
    program = Path(fake_program).resolve().parent / "make-test-certs"
    if not os.access(str(program), os.X_OK):
        unavailable("make-test-certs not found next to LMTP_FAKE_SERVER (%s)" % program)
    directory = tmp_path_factory.mktemp("certs")
    subprocess.run([str(program), str(directory)], check=True, timeout=60)
    for name in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key"):
        assert (directory / name).is_file(), "make-test-certs wrote no " + name
    return directory


@pytest.fixture
def fake_server(fake_program, tmp_path):
    """A factory: fake_server(*options, unix=False) starts a fake-lmtp; all are stopped at the end."""
    started = []

    def start(*args, unix=False):
        f = Fake(fake_program, tmp_path / ("fake%d" % len(started)), [str(a) for a in args], unix=unix)
        started.append(f)
        return f

    yield start
    for f in started:
        f.stop()


@pytest.fixture
def fake(fake_server):
    """A well-behaved fake with a few rules: alice/bob 250, full 552 at DATA, temp 452 at DATA,
    nosuch 550 at RCPT."""
    return fake_server("--rules", RULES)


RULES = "alice@x=250,250;bob@x=250,250;full@x=250,552;temp@x=250,452;nosuch@x=550"

# The replies of the fake (tests/support/fake_lmtp.h) for the rules above.
BANNER = (220, b"fake.example LMTP ready")
LHLO_REPLY = (250, b"fake.example\nPIPELINING\nENHANCEDSTATUSCODES\n8BITMIME")
FEATURES = {"pipelining": "", "enhancedstatuscodes": "", "8bitmime": ""}
MAIL_OK = (250, b"2.1.0 OK")
NOSUCH = (550, b"5.1.1 <nosuch@x> User doesn't exist")
FULL = (552, b"5.2.2 <full@x> Quota exceeded")
TEMP = (452, b"4.2.2 <temp@x> Mailbox is full, try again later")


def rcpt_ok(addr):
    return (250, b"2.1.5 <%s> OK" % addr.encode())


# The fake server's TLS options for a certificate of the tls_certs fixture ("server", or another name).
def tls_args(certs, name="server"):
    return ("--tls-cert", certs / (name + ".pem"), "--tls-key", certs / (name + ".key"))


def saved(addr):
    return (250, b"2.0.0 <%s> Saved" % addr.encode())


# ---------------------------------------------------------------------------
# Dovecot

class Dovecot:
    def __init__(self, script, name="dovecot"):
        self.script = script
        # A directory of its own, not under pytest's base directory: another pytest run starting
        # meanwhile makes /tmp/pytest-of-<user> private again (0700), and the server, which runs
        # as another user when the tests run as root, could no longer reach its mail. Short, too:
        # the server's unix sockets live in it. Removed by stop().
        self.dir = Path(tempfile.mkdtemp(prefix="lmtp-%s-" % name))
        self.env = {}

    def start(self, cert=None, key=None):
        """Start it; with a certificate and its key (PEM files) it offers STARTTLS."""
        tls = [str(cert), str(key)] if cert is not None else []
        r = subprocess.run([self.script, "start", str(self.dir), *tls], capture_output=True, text=True,
                           timeout=30)
        if r.returncode != 0:
            raise RuntimeError("dovecot.sh start failed (%d): %s" % (r.returncode, r.stderr.strip()))
        for line in r.stdout.splitlines():
            key, _, value = line.partition("=")
            self.env[key] = shlex.split(value)[0] if value else ""
        self.port = int(self.env["LMTP_PORT"])
        self.socket = self.env["LMTP_SOCKET"]
        self.home = Path(self.env["LMTP_DIR"])

    def stop(self):
        subprocess.run([self.script, "stop", str(self.dir)], capture_output=True, timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)

    def maildir(self, user):
        return self.home / "mail" / user / "Maildir"

    def messages(self, user, subject=None):
        """The messages in user's Maildir (new/ and cur/), optionally only those with that Subject."""
        path = self.maildir(user)
        if not path.is_dir():
            return []
        box = mailbox.Maildir(str(path), factory=None, create=False)
        out = [box.get_message(key) for key in box.keys()]
        if subject is not None:
            out = [m for m in out if m["Subject"] == subject]
        return out

    def message_files(self, user):
        new = self.maildir(user) / "new"
        return sorted(new.iterdir()) if new.is_dir() else []

    def log(self):
        try:
            return (self.home / "dovecot.log").read_text(errors="replace")
        except OSError:
            return ""


@pytest.fixture(scope="session")
def dovecot():
    """One throwaway Dovecot LMTP for the session (users alice, bob, full, tempfull, broken)."""
    script = _program("LMTP_DOVECOT")
    d = Dovecot(script)
    try:
        d.start()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        d.stop()
        unavailable("cannot start Dovecot: %s" % e)
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture(scope="session")
def dovecot_tls(tls_certs):
    """One throwaway Dovecot LMTP offering STARTTLS with the test server certificate."""
    script = _program("LMTP_DOVECOT")
    d = Dovecot(script, "dovecot-tls")
    try:
        d.start(tls_certs / "server.pem", tls_certs / "server.key")
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        d.stop()
        unavailable("cannot start Dovecot with STARTTLS: %s" % e)
    try:
        yield d
    finally:
        d.stop()


# ---------------------------------------------------------------------------
# the two implementations, for the tests that must behave the same with both

@pytest.fixture(params=[smtplib.LMTP, lmtp.LMTP], ids=["smtplib", "lmtp"])
def LMTP(request):
    return request.param


# For memory measurements in a child process: its peak resident size. VmHWM
# belongs to the address space made by exec; ru_maxrss would also carry the
# peak of the (big) pytest process the child was forked from.
PEAK_KB = r"""
import resource

def peak_kb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
"""


def run_child(code, *args, timeout=120):
    """Runs `code` in a fresh interpreter that imports this lmtp; returns the CompletedProcess."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [os.path.dirname(os.path.dirname(lmtp.__file__)),
                                                    env.get("PYTHONPATH", "")] if p)
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)
