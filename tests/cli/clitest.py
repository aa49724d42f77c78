"""Shared helpers of the lmtp-send tests: run the program, run fake-lmtp."""
import os
import pathlib
import signal
import subprocess
import time

SEND = os.environ.get("LMTP_SEND", "lmtp-send")
FAKE = os.environ.get("LMTP_FAKE_SERVER", "fake-lmtp")
DOVECOT = os.environ.get("LMTP_DOVECOT", "")


def run(*args, stdin=None, env=None, timeout=60, prefix=()):
    """lmtp-send with ARGS (after the PREFIX command, if any); returns the CompletedProcess (text output)."""
    full_env = dict(os.environ)
    full_env.pop("LMTP_PASSWORD", None)
    full_env.update(env or {})
    return subprocess.run([*prefix, SEND, *[str(a) for a in args]], input=stdin, capture_output=True,
                          env=full_env, timeout=timeout, text=isinstance(stdin, str) or stdin is None)


def lines(out):
    return [l for l in out.splitlines() if l]


class Fake:
    """fake-lmtp on loopback (or a unix socket), recording what clients send."""

    def __init__(self, tmp, *args, inet6=False, unix=False):
        tmp = pathlib.Path(tmp)
        tmp.mkdir(parents=True, exist_ok=True)
        (tmp / "messages").mkdir(exist_ok=True)
        self.transcript = tmp / "transcript.bin"
        self.messages_dir = tmp / "messages"
        self.events = tmp / "events"
        cmd = [FAKE, "--transcript", self.transcript, "--messages-dir", self.messages_dir,
               "--events", self.events, *args]
        if inet6:
            cmd.append("--inet6")
        if unix:
            cmd += ["--unix", ""]
        self.proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, text=True)
        kind, where = self.proc.stdout.readline().split()
        if kind == "UNIX":
            self.server = where
        else:
            self.port = int(where)
            self.server = f"[::1]:{where}" if inet6 else f"127.0.0.1:{where}"
        self.stats = None

    def stop(self):
        if self.stats is None:
            self.proc.send_signal(signal.SIGTERM)
            out = self.proc.communicate(timeout=30)[0]
            self.stats = {k: int(v) for k, v in (l.split() for l in out.splitlines()) if k != "PORT" and k != "UNIX"}
        return self.stats

    def sent(self):
        return self.transcript.read_bytes() if self.transcript.exists() else b""

    def messages(self):
        """The decoded messages received, in order."""
        if not self.messages_dir.exists():
            return []
        files = sorted(self.messages_dir.glob("*.eml"), key=lambda p: int(p.stem))
        return [f.read_bytes() for f in files]

    def event_lines(self):
        return self.events.read_text().splitlines() if self.events.exists() else []


def wait_for(predicate, seconds=20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def crlf(data):
    """What a message becomes on the wire: every line end CRLF."""
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
