"""lmtp.AsyncPool, the pool for asyncio, against the fake server: the same results as lmtp.Pool
and LMTP.deliver, thousands of tasks at once with random cancellations (each result once, no
message stored twice, no fd, task or timer left behind), retries, breaks, refused connections
(back-off without spinning), unix sockets, closing, and the time K connections save. The core
tests run on asyncio's loop and on uvloop's (test_aio.py's `run`)."""
import asyncio
import collections
import random
import ssl
import time

import pytest

import lmtp
from conftest import RULES, tls_args
from test_aio import live_timers, open_fds, run  # noqa: F401  (run: the fixture, one loop of each kind)
from test_pool import body, fields, free_port, mixed_messages, print_timing


def apool_for(fake, **kw):
    kw.setdefault("retry_delay", 0.05)
    kw.setdefault("retry_delay_max", 0.2)
    kw.setdefault("timeout", 10)
    if fake.path:
        return lmtp.AsyncPool(fake.path, **kw)
    return lmtp.AsyncPool(fake.host, fake.port, **kw)


async def sent_already(fake, what, timeout=5):
    """Once the server got `what` (the loop runs meanwhile)."""
    deadline = time.monotonic() + timeout
    while what not in fake.transcript():
        assert time.monotonic() < deadline, "the server never got %r" % what
        await asyncio.sleep(0.005)


def quiet(loop=None):
    """What a pool may leave behind once closed: tasks other than this one, live timers."""
    loop = loop or asyncio.get_running_loop()
    tasks = [t for t in asyncio.all_tasks(loop) if t is not asyncio.current_task(loop)]
    return tasks, live_timers(loop)


# ---------------------------------------------------------------------------
# the same results as lmtp.Pool and LMTP.deliver

@pytest.mark.parametrize("connections", [1, 3])
def test_results_equal_pool_and_lmtp(fake, run, connections):
    with lmtp.Pool(*fake.address, connections=connections, retries=0) as pool:
        expected = pool.deliver_many(mixed_messages())
    with lmtp.LMTP(*fake.address) as one:
        single = [one.deliver(*m) for m in mixed_messages()]

    async def main():
        async with apool_for(fake, connections=connections, retries=0) as pool:
            many = await pool.deliver_many(mixed_messages())
            each = await asyncio.gather(*(pool.deliver(*m) for m in mixed_messages()))
            return many, each

    many, each = run(main)
    assert fields(many) == fields(expected)
    assert fields(each) == fields(expected)
    # LMTP.deliver's fields, but attempts (1 there too: retries=0)
    assert fields(each) == fields(single)
    assert [[r.outcome for r in m] for m in each] == [
        ["ok", "ok"], ["permanent", "ok"], ["permanent"], ["temporary", "ok", "permanent"], ["ok"], ["ok"]]
    assert len(fake.messages()) == 4 * 6  # each way stored each message once


def test_options_and_transfer_as_pool(fake_server, run):
    f = fake_server("--rules", RULES, "--size", "100000", "--cap", "CHUNKING", "--cap", "DSN")
    msgs = [("s@x", ["alice@x"], body(i)) for i in range(3)] + [("s@x", ["bob@x"], body(9, 200000))]
    for transfer in ("data", "bdat"):
        with lmtp.Pool(*f.address, connections=2) as pool:
            expected = pool.deliver_many(msgs, ["BODY=8BITMIME"], ["NOTIFY=NEVER"], transfer=transfer)

        async def main():
            async with apool_for(f, connections=2) as pool:
                return await pool.deliver_many(msgs, ["BODY=8BITMIME"], ["NOTIFY=NEVER"], transfer=transfer)

        got = run(main)
        # Over the server's SIZE too: the core refuses it before sending it, in every face.
        assert fields(got) == fields(expected)
        (big,) = got[3]
        assert (big.outcome, big.code, big.attempts) == ("unknown", 0, 0) and "SIZE" in big.text
    sent = f.transcript()
    assert sent.count(b"RCPT TO:<alice@x> NOTIFY=NEVER") == 2 * 2 * 3
    assert sent.count(b"RCPT TO:<bob@x>") == 0  # the one over SIZE never went out
    assert b"BDAT" in sent


def test_bad_input_raises_before_anything_is_sent(fake):
    async def main():
        async with apool_for(fake) as pool:
            with pytest.raises(ValueError):
                await pool.deliver("s@x", ["bad\r\n@x"], body(1))
            with pytest.raises(ValueError):
                await pool.deliver_many([("s@x", ["alice@x"], body(0)), ("s@x", ["bad\n@x"], body(1))])
            with pytest.raises(ValueError):
                await pool.deliver("s@x", ["alice@x"], body(0), ["SIZE=huge"])
            with pytest.raises(ValueError):
                await pool.deliver("s@x", ["alice@x"], body(0), transfer="carrier-pigeon")
            with pytest.raises(UnicodeEncodeError):
                await pool.deliver("s@x", ["b\u00f6b@x"], body(1))
            with pytest.raises(TypeError):
                await pool.deliver("s@x", ["alice@x"], 42)
            assert pool.connections == 0
            assert await pool.deliver_many([]) == []
            assert await pool.deliver("s@x", [], body(0)) == []

    asyncio.run(main())
    assert fake.transcript() == b""
    with pytest.raises(ValueError):
        lmtp.AsyncPool()
    with pytest.raises(ValueError):
        lmtp.AsyncPool("127.0.0.1", 1, connections=0)
    with pytest.raises(ValueError):
        lmtp.AsyncPool("127.0.0.1", 1, retry_delay=2, retry_delay_max=1)


# ---------------------------------------------------------------------------
# many tasks at once

def test_a_thousand_tasks_with_random_cancellations(fake_server, run):
    f = fake_server("--reply-delay", "1")
    n = 1000
    rng = random.Random(16)
    # Within the first 0.1 s: the run outlasts it however fast the loop (1,000 messages take 0.1 to
    # 0.4 s here), so most of the ~250 cancellations find their task queued or on the wire.
    cancel_at = {i: rng.uniform(0, 0.1) for i in range(n) if rng.random() < 0.25}

    async def one(pool, i):
        return i, await pool.deliver("s@x", ["u%d@x" % i], body(i, 50))

    async def main():
        loop = asyncio.get_running_loop()
        async with apool_for(f, connections=4) as warm:  # the loop's own fds, made on first use
            await warm.deliver("s@x", ["warm@x"], body(-1))
        await asyncio.sleep(0.05)
        fds = open_fds()
        async with apool_for(f, connections=4) as pool:
            tasks = [loop.create_task(one(pool, i)) for i in range(n)]
            handles = [loop.call_later(at, tasks[i].cancel) for i, at in cancel_at.items()]
            done = await asyncio.gather(*tasks, return_exceptions=True)
            for h in handles:
                h.cancel()
            assert pool._jobs == {}
            peak = pool.connections
        await asyncio.sleep(0.05)
        return done, [t.cancelled() for t in tasks], peak, open_fds() - fds, quiet()

    done, cancelled, peak, fd_delta, (tasks_left, timers_left) = run(main)
    got = {}
    for i, (d, c) in enumerate(zip(done, cancelled)):
        if c:
            assert isinstance(d, asyncio.CancelledError)
            continue
        j, results = d
        assert j == i and j not in got
        got[j] = results
        assert [(r.address, r.outcome, r.code, r.attempts) for r in results] == [("u%d@x" % i, "ok", 250, 1)], i
    ncancelled = sum(cancelled)
    assert 50 < ncancelled < 400 and len(got) == n - ncancelled
    stored = collections.Counter(f.messages())
    assert max(stored.values()) == 1  # no message twice
    for i in got:
        assert stored[body(i, 50)] == 1, i
    # A cancelled one is stored only if its bytes had gone out: then it was left to finish.
    late = sum(1 for i in range(n) if cancelled[i] and stored[body(i, 50)])
    assert len(stored) == 1 + len(got) + late
    assert peak <= 4
    assert fd_delta == 0
    assert tasks_left == [] and timers_left == []
    print("\n%d tasks, %d cancelled (%d of those already on the wire, delivered)" % (n, ncancelled, late))


def test_cancelled_while_queued_or_on_the_wire(fake_server):
    f = fake_server("--reply-delay", "100")

    async def main():
        async with apool_for(f, connections=1, mailbox_concurrency=0) as pool:
            a = asyncio.ensure_future(pool.deliver("s@x", ["a@x"], body(0)))
            b = asyncio.ensure_future(pool.deliver("s@x", ["b@x"], body(1)))
            await sent_already(f, b"MAIL FROM:<s@x>")  # a is on the connection, b queued
            b.cancel()
            a.cancel()
            with pytest.raises(asyncio.CancelledError):
                await a
            with pytest.raises(asyncio.CancelledError):
                await b
            c = await pool.deliver("s@x", ["c@x"], body(2))  # after a, on the same connection
            return c

    (c,) = asyncio.run(main())
    assert c.ok and c.attempts == 1
    sent = f.transcript()
    assert b"RCPT TO:<b@x>" not in sent  # taken back: nothing of it was sent
    assert f.messages() == [body(0), body(2)]  # a was left to finish
    assert f.stop()["CONNECTIONS"] == 1  # and its connection was not closed for it


# ---------------------------------------------------------------------------
# retries and breaks

def test_temporary_failures_are_retried_with_attempts(fake_server, run):
    f = fake_server("--rules", "t2@x=250,451*2;t9@x=250,451*9;r1@x=450*1;alice@x=250,250")

    async def main():
        async with apool_for(f, connections=2, retries=3, retry_delay=0.05, retry_delay_max=0.1) as pool:
            start = time.monotonic()
            results = await asyncio.gather(pool.deliver("s@x", ["alice@x", "t2@x"], body(0)),
                                           pool.deliver("s@x", ["r1@x"], body(1)),
                                           pool.deliver("s@x", ["t9@x"], body(2)))
            return results, time.monotonic() - start

    ((alice, t2), (r1,), (t9,)), elapsed = run(main)
    assert (alice.outcome, alice.attempts) == ("ok", 1)
    assert (t2.outcome, t2.code, t2.attempts) == ("ok", 250, 3)
    assert (r1.outcome, r1.attempts) == ("ok", 2)
    assert (t9.outcome, t9.code, t9.stage, t9.attempts) == ("temporary", 451, "data", 4)
    assert f.transcript().count(b"RCPT TO:<alice@x>") == 1  # the re-sends hold only the 4xx ones
    assert 0.05 + 0.1 + 0.1 <= elapsed < 5


def test_killed_connection_after_the_end(fake_server, run):
    # The third message's end: no replies, the connection closed (the message is stored).
    f = fake_server("--fault-on", ".", "--fault-skip", "2", "--fault-times", "1", "--fault-action", "close")
    n = 8

    async def main():
        async with apool_for(f, connections=2) as pool:
            return await asyncio.gather(*(pool.deliver("s@x", ["a%d@x" % i, "b%d@x" % i], body(i))
                                          for i in range(n)))

    results = run(main)
    unknown = [i for i, m in enumerate(results) if any(r.unknown for r in m)]
    assert len(unknown) == 1, fields(results)
    assert all(r.unknown and r.code == 0 and r.attempts == 1 and r.text for r in results[unknown[0]])
    assert all(r.ok for i, m in enumerate(results) if i != unknown[0] for r in m)
    assert len(f.messages()) == n  # the unknown one was not sent again


def test_a_stalled_server_times_out_on_the_loops_timer(fake_server, run):
    # The second message's end gets no reply: the engine's deadline (a loop timer) ends that
    # connection; its message is unknown, the others go on over a new one.
    fault = ("--fault-on", ".", "--fault-skip", "1", "--fault-times", "1", "--fault-action", "hang")
    msgs = [("s@x", ["a%d@x" % i], body(i)) for i in range(4)]
    with lmtp.Pool(*fake_server(*fault).address, connections=1, timeout=0.3) as pool:
        expected = pool.deliver_many(msgs)
    f = fake_server(*fault)

    async def main():
        async with apool_for(f, connections=1, timeout=0.3) as pool:
            start = time.monotonic()
            results = await pool.deliver_many(msgs)
            return results, time.monotonic() - start

    results, elapsed = run(main)
    assert [m[0].outcome for m in results] == ["ok", "unknown", "ok", "ok"]
    assert fields(results) == fields(expected)
    assert 0.3 <= elapsed < 3
    assert f.stop()["CONNECTIONS"] == 2


def test_killed_connection_before_the_end_is_resent(fake_server):
    f = fake_server("--fault-on", "DATA", "--fault-skip", "1", "--fault-times", "1", "--fault-action", "close")

    async def main():
        async with apool_for(f, connections=1) as pool:
            return await pool.deliver_many([("s@x", ["a%d@x" % i], body(i)) for i in range(4)])

    results = asyncio.run(main())
    assert all(r.ok for m in results for r in m)
    assert [m[0].attempts for m in results] == [1, 2, 1, 1]
    assert len(f.messages()) == 4


def test_a_poison_message_is_given_up(fake_server):
    f = fake_server("--fault-on", "DATA", "--fault-action", "close")

    async def main():
        async with apool_for(f, retries=2) as pool:
            return await pool.deliver("s@x", ["a@x", "b@x"], body(0))

    for r in asyncio.run(main()):
        assert (r.outcome, r.code, r.attempts) == ("unknown", 0, 3)
        assert r.text and r.message == r.text.encode()
    assert f.messages() == []


def test_refused_connections_back_off_without_spinning(run):
    port = free_port()
    calls = []

    async def main():
        pool = lmtp.AsyncPool("127.0.0.1", port, retries=2, retry_delay=0.1, retry_delay_max=1)
        decide = pool._decide

        def counted():
            calls.append(time.monotonic())
            decide()

        pool._decide = counted
        async with pool:
            start, cpu = time.monotonic(), time.process_time()
            results = await asyncio.gather(*(pool.deliver("s@x", ["a%d@x" % i, "b@x"], body(i)) for i in range(3)))
            return results, time.monotonic() - start, time.process_time() - cpu

    results, elapsed, cpu = run(main)
    for r in (r for m in results for r in m):
        assert (r.outcome, r.code, r.stage, r.attempts) == ("unknown", 0, None, 0)
        assert "refused" in r.text.lower() and r.message == r.text.encode()
    # 3 rounds of connects: back-off 0.1 then 0.2 s between them, and nothing between.
    assert 0.3 <= elapsed < 3
    assert len(calls) < 30, len(calls)
    assert cpu < 0.25 * elapsed + 0.05, (cpu, elapsed)


def test_hosts_first_down(fake):
    async def main():
        async with lmtp.AsyncPool("127.0.0.1", free_port(), hosts=[fake.address], retry_delay=0.05) as pool:
            return await asyncio.gather(*(pool.deliver("s@x", ["alice@x"], body(i)) for i in range(5)))

    assert all(r.ok for m in asyncio.run(main()) for r in m)
    assert len(fake.messages()) == 5


def test_unix_socket(fake_server, run):
    f = fake_server("--rules", RULES, unix=True)

    async def main():
        async with lmtp.AsyncPool(hosts=[f.path], connections=3) as pool:
            results = await asyncio.gather(*(pool.deliver("s@x", ["alice@x", "nosuch@x"], body(i))
                                             for i in range(10)))
            again = await pool.deliver("s@x", ["bob@x"], body(10))  # connections reused
            return results, again

    results, again = run(main)
    assert [[r.outcome for r in m] for m in results] == [["ok", "permanent"]] * 10
    assert again[0].ok
    assert len(f.messages()) == 11
    assert f.stop()["CONNECTIONS"] <= 3


def test_starttls_and_auth_on_every_connection(fake_server, tls_certs, run):
    f = fake_server(*tls_args(tls_certs), "--auth", "PLAIN", "--auth-after-tls", "--auth-require", "--auth-user",
                    "u", "--auth-password", "p", "--reply-delay", "20")
    context = ssl.create_default_context(cafile=str(tls_certs / "ca.pem"))

    async def main():
        async with apool_for(f, connections=3, starttls=True, context=context, user="u", password="p") as pool:
            return await asyncio.gather(*(pool.deliver("s@x", ["a%d@x" % i], body(i)) for i in range(9)))

    results = run(main)
    assert all(r.ok for m in results for r in m), fields(results)
    stats = f.stop()
    assert stats["TLS_SESSIONS"] == stats["CONNECTIONS"] == stats["AUTH_SUCCESSES"] >= 2
    assert all(e.split()[2:4] == ["tls=1", "auth=PLAIN:u"] for e in f.events() if e.startswith("MESSAGE"))


def test_tls_failure_gives_unknown_results(fake_server, tls_certs):
    f = fake_server(*tls_args(tls_certs))

    async def main():
        async with apool_for(f, retries=0, starttls=True) as pool:  # the system's CAs: not the test CA
            return await pool.deliver("s@x", ["a@x"], body(0))

    (r,) = asyncio.run(main())
    assert (r.outcome, r.code, r.attempts) == ("unknown", 0, 0)
    assert "certificate" in r.text
    assert f.messages() == []


def test_a_fault_of_the_pool_ends_the_waiting_deliveries(fake):
    class Faulty:
        def __init__(self, planner):
            self._planner = planner

        def __getattr__(self, name):
            return getattr(self._planner, name)

        def finished(self, *args):
            raise RuntimeError("a fault in the pool")

    async def main():
        errors = []
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: errors.append(context))
        async with apool_for(fake) as pool:
            pool._planner = Faulty(pool._planner)
            results = await asyncio.wait_for(pool.deliver("s@x", ["alice@x"], body(0)), 5)
            again = await pool.deliver("s@x", ["bob@x"], body(1))  # the pool goes on afterwards
        return results, again, errors

    (r,), (again,), errors = asyncio.run(main())
    assert (r.outcome, r.code) == ("unknown", 0) and r.text == "the pool was closed"
    assert again.ok
    assert [str(e["exception"]) for e in errors] == ["a fault in the pool"]


# ---------------------------------------------------------------------------
# closing, idle connections

def test_close_lets_the_messages_on_the_wire_finish_and_ends_the_others(fake_server):
    f = fake_server("--reply-delay", "100")

    async def main():
        pool = apool_for(f, connections=1, mailbox_concurrency=0)
        tasks = [asyncio.ensure_future(pool.deliver("s@x", ["r%d@x" % i], body(i))) for i in range(3)]
        await sent_already(f, b"MAIL FROM:<s@x>")  # the first is on the connection, the others queued
        closing = asyncio.ensure_future(pool.close())
        await asyncio.sleep(0)
        with pytest.raises(lmtp.SMTPServerDisconnected):  # while it closes
            await pool.deliver("s@x", ["late@x"], body(9))
        await closing
        done = [t.result() for t in tasks]
        again = await pool.deliver("s@x", ["after@x"], body(5))  # a new connection
        await pool.close()
        return done, again, quiet()

    done, again, (tasks_left, timers_left) = asyncio.run(main())
    assert [(r.outcome, r.attempts) for r in done[0]] == [("ok", 1)]
    for m in done[1:]:
        assert [(r.outcome, r.code, r.attempts, r.text) for r in m] == [("unknown", 0, 0, "the pool was closed")]
    assert again[0].ok
    assert f.messages() == [body(0), body(5)]
    assert f.transcript().count(b"QUIT\r\n") == 2
    assert tasks_left == [] and timers_left == []


def test_idle_connections_are_closed(fake_server):
    f = fake_server()

    async def main():
        async with apool_for(f, connections=2, idle_timeout=0.1) as pool:
            await asyncio.gather(*(pool.deliver("s@x", ["a%d@x" % i], body(i)) for i in range(4)))
            busy = pool.connections
            await asyncio.sleep(0.4)
            return busy, pool.connections

    busy, idle = asyncio.run(main())
    assert busy >= 1 and idle == 0
    assert f.transcript().count(b"QUIT\r\n") == f.stop()["CONNECTIONS"]


# ---------------------------------------------------------------------------
# timing: N messages with a reply delay D over K connections take about N*2D/K

def test_timing_over_k_connections(fake_server, run):
    delay = 0.02
    f = fake_server("--reply-delay", str(int(delay * 1000)))
    n = 64
    msgs = [("s@x", ["u%d@x" % i], body(i)) for i in range(n)]

    async def timed(k):
        async with apool_for(f, connections=k, mailbox_concurrency=0) as pool:
            start = time.monotonic()
            results = await asyncio.gather(*(pool.deliver(*m) for m in msgs))
            elapsed = time.monotonic() - start
        assert all(r.ok for m in results for r in m)
        return elapsed

    async def main():
        return {k: await timed(k) for k in (1, 2, 4, 8, 32)}

    times = run(main)
    print_timing(times, n, delay)
    assert times[32] <= times[8] * 1.5, times

