"""A real server dying in the middle of a delivery: the Dovecot lmtp worker of the connection (not
the master) is killed with SIGKILL while it works through the recipients of one message. Whatever
the moment, what the client reports must be what the Maildirs hold: no recipient reported
delivered that has not got the message, none that has it reported failed; a recipient without a
verdict is "unknown".
"""
import logging
import os
import re
import signal
import socket
import threading
import time
import uuid

import pytest

import lmtp
from conftest import Dovecot, _program, unavailable
from test_dovecot import SENDER, message, stored_with_subject

D = "@example.org"
# Each user's verdict when the worker lives: delivered, 452, 552, delivered, 451, and a duplicate.
USERS = ["alice", "tempfull", "full", "bob", "broken", "alice"]


def start_dovecot():
    """A Dovecot of this test's own: its workers get killed."""
    d = Dovecot(_program("LMTP_DOVECOT"), "dovecot-kill")
    try:
        d.start()
    except Exception as e:  # noqa: BLE001 - any failure to start is "unavailable"
        d.stop()
        unavailable("cannot start Dovecot: %s" % e)
    return d


def socket_inode(local_port, remote_port):
    """The inode of the server's end of a loopback TCP connection (/proc/net/tcp)."""
    want_local = "0100007F:%04X" % local_port
    want_remote = "0100007F:%04X" % remote_port
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[1] == want_local and fields[2] == want_remote:
                return fields[9]
    return None


def owner_of(inode, master):
    """The PID (other than the master) with that socket open."""
    link = "socket:[%s]" % inode
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == master:
            continue
        try:
            for fd in os.listdir("/proc/%s/fd" % pid):
                if os.readlink("/proc/%s/fd/%s" % (pid, fd)) == link:
                    return int(pid)
        except OSError:
            continue
    return None


def gone(pid):
    """True once pid has exited (a zombie counts as gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2] == "Z"


class KillAt(logging.Handler):
    """Kills `pid` when the trace shows `trigger` (the final dot of the message, or the first final
    reply), after `delay` seconds, from another thread, while the client goes on reading."""

    def __init__(self, pid, trigger, delay):
        super().__init__(logging.DEBUG)
        self.pid, self.trigger, self.delay = pid, trigger, delay
        self.fired = None

    def emit(self, record):
        if self.fired is None and re.search(self.trigger, record.getMessage()):
            self.fired = threading.Timer(self.delay, os.kill, (self.pid, signal.SIGKILL))
            self.fired.start()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# A final reply names its recipient: "250 2.0.0 <alice@example.org> ... Saved", "452 4.2.2 <tempfull@...".
FINAL_REPLY = r"reply: b'\d{3} \d\.\d+\.\d+ <"

# The moments: when the first recipient's final reply arrives, right after the message's final dot
# (or last chunk) is queued, and a little later. Dovecot 2.3 saves for every recipient and then
# sends all the final replies at once: a kill lands before any reply, possibly after some
# recipients were saved (they must then be "unknown", never failed), or after all of them. A
# worker killed while it holds a mailbox lock leaves it to go stale, which holds up the next
# deliveries to that mailbox for a while: the final-reply moment, which needs the server to
# answer, comes first, on a Dovecot nobody has killed anything of yet (a fresh one per transfer).
MOMENTS = [(FINAL_REPLY, 0.0)] + [(re.escape("data: b'.'"), ms / 1000) for ms in (0, 2, 5, 10, 20, 40, 80)]


def kill_during_deliveries(dovecot, transfer, seen):
    master = int(dovecot.env["LMTP_PGID"])
    log = logging.getLogger("lmtp")
    body = (b"x" * 998 + b"\r\n") * 1024  # ~1 MB: Dovecot takes a moment per recipient
    for trigger, delay in MOMENTS:
        if trigger != FINAL_REPLY and transfer == "bdat":
            trigger = " LAST"  # the last chunk's command line: BDAT n LAST
        subject = "kill-%s-%s" % (transfer, uuid.uuid4().hex[:12])
        local = free_port()
        s = lmtp.LMTP("127.0.0.1", dovecot.port, source_address=("127.0.0.1", local), timeout=10)
        s.ehlo()
        inode = socket_inode(dovecot.port, local)
        assert inode, "no server socket for our connection"
        worker = owner_of(inode, master)
        assert worker and worker != master, "the lmtp worker of the connection"
        killer = KillAt(worker, trigger, delay)
        why = None
        log.addHandler(killer)
        try:
            try:
                results = s.deliver(SENDER, [u + D for u in USERS], message(subject, body), transfer=transfer)
            except lmtp.SMTPServerDisconnected as e:
                results = e.results
                why = str(e)
        finally:
            log.removeHandler(killer)
            if killer.fired is not None:
                killer.fired.join()
            s.close()
        assert killer.fired is not None, "the trigger %r never showed: %s %s" % (trigger, why, dovecot.log()[-1500:])
        deadline = time.monotonic() + 5
        while not gone(worker) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert gone(worker), "the worker %d did not die" % worker
        assert not gone(master), "the master must live on"
        outcomes = [r.outcome for r in results]
        for user, r in zip(USERS, results):
            stored = len(stored_with_subject(dovecot, user, subject))
            if r.ok:
                assert stored == 1, "%s reported delivered but not in its Maildir (%s)" % (user, outcomes)
            elif not r.unknown:
                assert stored == 0, "%s has it but was reported %s %d (%s)" % (user, r.outcome, r.code, outcomes)
            else:
                assert r.code == 0 and r.text, "an unknown recipient says why"
        known = sum(1 for o in outcomes if o != "unknown")
        if known == 0 and any(stored_with_subject(dovecot, u, subject) for u in USERS):
            seen["saved for some, no reply"] += 1
        seen["all answered" if known == len(USERS) else "none answered" if known == 0 else "mixed"] += 1
    # The master goes on: a new connection gets a new worker, which greets and answers LHLO.
    with lmtp.LMTP("127.0.0.1", dovecot.port, timeout=10) as s:
        assert s.ehlo()[0] == 250


@pytest.mark.parametrize("transfer", ["data", "bdat"])
def test_killing_the_lmtp_worker_mid_delivery_loses_no_verdict(transfer):
    seen = {"mixed": 0, "all answered": 0, "none answered": 0, "saved for some, no reply": 0}
    dovecot = start_dovecot()  # skips when there is no Dovecot
    log = logging.getLogger("lmtp")
    level = log.level
    log.setLevel(logging.DEBUG)
    try:
        kill_during_deliveries(dovecot, transfer, seen)
    finally:
        dovecot.stop()
        log.setLevel(level)
    print("kill moments (%s):" % transfer, seen)
