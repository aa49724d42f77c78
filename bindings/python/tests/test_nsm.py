"""Against a real Net::Server::Mail::LMTP (tests/support/nsm-lmtp.pl, $LMTP_NSM_SERVER).

That server answers every recipient after the message in ONE multi-line reply, a line each
("250-Ok", "550-<address> Failed", "250 Ok"). Each line is read as its recipient's verdict, at
once, by sendmail, deliver, deliver_many and data()/getreply(), for two and three recipients,
all accepted and mixed; with strict_replies=True the reply is read as RFC 2033 says.
"""
import os
import subprocess
import time
from pathlib import Path

import pytest

import lmtp
from conftest import unavailable

MSG = b"Subject: nsm\r\n\r\nOne reply, a line per recipient.\r\n"


class NsmServer:
    def __init__(self, script, workdir):
        self.dir = Path(workdir) / "stored"
        self.dir.mkdir()
        self.proc = subprocess.Popen(["perl", script, "--messages-dir", str(self.dir), "--exit-on-eof"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        first = self.proc.stdout.readline().split()
        if len(first) != 2 or first[0] != "PORT":
            self.stop()
            raise RuntimeError("nsm-lmtp.pl did not start: %r" % (first,))
        self.port = int(first[1])

    def stored(self, address):
        """How many messages the server stored for address."""
        return len([p for p in self.dir.iterdir() if p.name.startswith(address + ".") and not p.name.endswith(".tmp")])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()  # --exit-on-eof: it stops its children and exits
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        return self.proc.returncode


@pytest.fixture
def nsm(tmp_path):
    script = os.environ.get("LMTP_NSM_SERVER")
    if not script or not os.path.exists(script):
        unavailable("LMTP_NSM_SERVER is not set (tests/support/nsm-lmtp.pl)")
    server = NsmServer(script, tmp_path)
    yield server
    assert server.stop() == 0, "nsm-lmtp.pl did not stop cleanly"


CASES = [
    (["a@x", "b@x"], {}),
    (["a@x", "b@x", "c@x"], {}),
    (["fail@x", "b@x"], {"fail@x": (550, b"fail@x Failed")}),
    (["a@x", "fail@x", "temp@x"], {"fail@x": (550, b"fail@x Failed"), "temp@x": (452, b"temp@x try again later")}),
]


@pytest.mark.parametrize("rcpts,refused", CASES, ids=["two ok", "three ok", "two mixed", "three mixed"])
def test_sendmail_and_deliver(nsm, rcpts, refused):
    with lmtp.LMTP("127.0.0.1", nsm.port, timeout=10) as s:
        t0 = time.monotonic()
        assert s.sendmail("s@x", rcpts, MSG) == refused
        results = s.deliver("s@x", rcpts, MSG)
        assert time.monotonic() - t0 < 3, "no waiting for replies that never come"
        assert [r.address for r in results] == rcpts
        for r in results:
            if r.address in refused:
                assert (r.code, r.message) == refused[r.address]
                assert r.permanent if r.code >= 500 else r.temporary
            else:
                assert (r.code, r.text, r.ok, r.stage) == (250, "Ok", True, "data")
        assert s.noop()[0] == 250  # in step: NOOP gets its own reply
    for a in rcpts:
        assert nsm.stored(a) == (0 if a in refused else 2), a


def test_data_and_getreply(nsm):
    with lmtp.LMTP("127.0.0.1", nsm.port, timeout=10) as s:
        s.ehlo()
        s.mail("s@x")
        for a in ("a@x", "fail@x", "temp@x"):
            assert s.rcpt(a)[0] == 250
        assert s.data(MSG) == (250, b"Ok")
        assert s.getreply() == (550, b"fail@x Failed")
        assert s.getreply() == (452, b"temp@x try again later")
        assert [r.code for r in s.last_results] == [250, 550, 452]


def test_deliver_many(nsm):
    batch = [("s@x", ["a@x", "fail@x", "temp@x"], MSG), ("s@x", ["a@x", "b@x"], MSG), ("s@x", ["fail@x", "b@x"], MSG)]
    with lmtp.LMTP("127.0.0.1", nsm.port, timeout=10) as s:
        done = s.deliver_many(batch)
    assert [[(r.address, r.code) for r in m] for m in done] == [
        [("a@x", 250), ("fail@x", 550), ("temp@x", 452)], [("a@x", 250), ("b@x", 250)], [("fail@x", 550), ("b@x", 250)]]
    assert nsm.stored("a@x") == 2 and nsm.stored("b@x") == 2


def test_strict_replies(nsm):
    with lmtp.LMTP("127.0.0.1", nsm.port, timeout=10, strict_replies=True) as s:
        with pytest.raises(lmtp.LMTPProtocolError, match="changed within a multi-line reply") as err:
            s.deliver("s@x", ["fail@x", "b@x"], MSG)
        assert [r.outcome for r in err.value.results] == ["unknown", "unknown"]
    # The same code on every line: read strictly it is the first recipient's reply; the second's
    # never comes.
    s = lmtp.LMTP("127.0.0.1", nsm.port, timeout=0.7, strict_replies=True)
    t0 = time.monotonic()
    with pytest.raises(lmtp.LMTPTimeoutError) as err:
        s.deliver("s@x", ["a@x", "b@x"], MSG)
    assert time.monotonic() - t0 >= 0.6
    assert [r.outcome for r in err.value.results] == ["ok", "unknown"]
    s.close()
