"""Threads: the network waits run without the GIL, and one connection refuses to be
used by two threads at once."""
import threading
import time

import pytest

import lmtp

DELAY_MS = 100
NOOPS = 3


def session(address):
    """connect (the greeting; LHLO waits until needed, as in smtplib) and NOOPS round
    trips: 1 + NOOPS delayed flushes."""
    s = lmtp.LMTP(*address)
    for _ in range(NOOPS):
        assert s.noop()[0] == 250
    s.close()


def test_threads_run_in_parallel(fake_server):
    f = fake_server("--reply-delay", DELAY_MS)
    t0 = time.monotonic()
    session(f.address)
    one = time.monotonic() - t0
    assert one >= (1 + NOOPS) * DELAY_MS / 1000 * 0.9  # the delay is real

    n = 8
    errors = []
    start = threading.Barrier(n + 1)

    def worker():
        try:
            start.wait(timeout=10)
            session(f.address)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    start.wait(timeout=10)
    t0 = time.monotonic()
    for t in threads:
        t.join(30)
    eight = time.monotonic() - t0
    assert not errors, errors
    # with the GIL held while waiting this would take n * one; in parallel about one
    assert eight < 2.5 * one, "8 threads took %.2fs, one took %.2fs" % (eight, one)
    assert f.stop()["CONNECTIONS"] == n + 1


def spin(seconds):
    """Pure Python work for `seconds`; returns the number of iterations done."""
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        n += 1
    return n


def test_python_runs_while_a_call_waits(fake_server):
    f = fake_server("--reply-delay", 300)
    s = lmtp.LMTP(*f.address)
    alone = spin(0.1) / 0.1  # iterations per second with nobody else around
    done = threading.Event()
    t = threading.Thread(target=lambda: (s.noop(), done.set()))
    t0 = time.monotonic()
    t.start()
    ticks = 0
    while not done.is_set():
        ticks += spin(0.01)
    waited = time.monotonic() - t0
    t.join()
    assert waited >= 0.25
    # with the GIL held during the 300 ms wait, this thread would get only its switch-interval slices
    assert ticks >= 0.5 * alone * waited, (ticks, alone, waited)
    s.close()


def test_one_connection_two_threads_is_a_runtime_error(fake):
    s = lmtp.LMTP(*fake.address)
    inside = threading.Event()
    release = threading.Event()
    out = {}

    def slow_source():
        yield b"Subject: slow\r\n\r\n"
        inside.set()
        release.wait(10)  # the first thread is in the middle of a delivery
        yield b"the rest\r\n"

    def first():
        try:
            out["refused"] = s.sendmail("me@x", ["alice@x"], slow_source())
        except BaseException as e:
            out["error"] = e

    t = threading.Thread(target=first)
    t.start()
    assert inside.wait(10)
    try:
        for call in (s.noop, lambda: s.sendmail("me@x", ["bob@x"], b"x\r\n"), lambda: s.mail("me@x"), s.quit):
            with pytest.raises(RuntimeError):
                call()
    finally:
        release.set()
        t.join(10)
    assert out == {"refused": {}}  # the first thread's delivery was not disturbed
    assert s.noop()[0] == 250
    s.quit()
    assert fake.messages() == [b"Subject: slow\r\n\r\nthe rest\r\n"]


def test_one_connection_two_threads_waiting_for_a_reply(fake_server):
    f = fake_server("--reply-delay", 250)
    s = lmtp.LMTP(*f.address)
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("noop", s.noop()))
    t.start()
    time.sleep(0.1)  # the thread is waiting for the delayed reply
    with pytest.raises(RuntimeError):
        s.rset()
    t.join(10)
    assert out["noop"][0] == 250
    s.close()


def test_separate_connections_do_not_interfere(fake):
    results = {}

    def worker(k):
        with lmtp.LMTP(*fake.address) as s:
            results[k] = s.sendmail("me@x", ["alice@x", "full@x"], b"Subject: %d\r\n\r\nx\r\n" % k)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == {k: {"full@x": (552, b"5.2.2 <full@x> Quota exceeded")} for k in range(6)}
    assert sorted(fake.messages()) == sorted(b"Subject: %d\r\n\r\nx\r\n" % k for k in range(6))
