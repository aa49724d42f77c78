"""lmtp.AsyncLMTP, the asyncio client, against the fake server (and one Dovecot test):
per-recipient results, deliver_many and sendmail as LMTP has them, tasks pipelined on one
connection, STARTTLS and AUTH, unix sockets, deadlines from the loop's timer, cancellation
before and after a message's bytes went out, a server that hangs up mid-message, and no fd,
task or timer left behind. The core tests run on asyncio's loop and on uvloop's."""
import asyncio
import os
import random
import smtplib
import ssl
import time
import uuid

import pytest

import lmtp
from conftest import FULL, NOSUCH, RULES, STRICT, TEMP, saved, tls_args

try:
    import uvloop
except ImportError:  # (packaging/setup.sh installs python3-uvloop)
    uvloop = None

USER = "tester"
PASSWORD = "Xq7-s3cret!pw"
MSG = b"Subject: aio\r\n\r\nbody\r\n"


def loop_factories():
    yield pytest.param(asyncio.new_event_loop, id="asyncio")
    yield pytest.param(uvloop.new_event_loop if uvloop else None, id="uvloop")


@pytest.fixture(params=list(loop_factories()))
def run(request):
    """run(coroutine function, *args): on a fresh loop of each kind (uvloop's when installed)."""
    factory = request.param
    if factory is None:
        if STRICT:
            pytest.fail("uvloop is not importable (apt-get install python3-uvloop)", pytrace=False)
        pytest.skip("uvloop is not installed")

    def runner(fn, *args):
        loop = factory()
        try:
            return loop.run_until_complete(fn(*args))
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    return runner


def arun(fn, *args):
    """The tests that need only one loop: asyncio's own."""
    return asyncio.run(fn(*args))


def client(fake, **kw):
    kw.setdefault("timeout", 10)
    return lmtp.AsyncLMTP(*fake.address, **kw)


def open_fds():
    return len(os.listdir("/proc/self/fd"))


async def fds_after_warm_up(fake):
    """This process's open fds once the loop has made one connection and closed it (a loop opens
    some of its own lazily, uvloop's on the first connection)."""
    async with client(fake) as s:
        await s.deliver("me@x", ["alice@x"], MSG)
    await asyncio.sleep(0.05)
    return open_fds()


async def transcript_shows(fake, predicate, timeout=5.0):
    """Waits, the loop running, until predicate(the fake's transcript) holds; fails if it never does."""
    deadline = time.monotonic() + timeout
    while not predicate(fake.transcript()):
        if time.monotonic() > deadline:
            pytest.fail("the transcript never showed it: %r" % fake.transcript()[-500:])
        await asyncio.sleep(0.01)


def fields(results):
    return [(r.address, r.stage, r.code, r.enhanced, r.text, r.message, r.rcpt_code, r.outcome) for r in results]


def live_timers(loop):
    """Timers still scheduled on an asyncio loop (its private list: none other says)."""
    return [h for h in getattr(loop, "_scheduled", []) if not h.cancelled()]


# ---------------------------------------------------------------------------
# results

def test_per_recipient_results_as_lmtp_gives_them(fake_server, run):
    f = fake_server("--rules", RULES)
    rcpts = ["alice@x", "full@x", "temp@x", "nosuch@x", "bob@x"]

    async def main():
        async with client(f) as s:
            assert s.has_extn("pipelining") and s.alive and s.idle
            return await s.deliver("me@x", rcpts, b"Subject: one\n\nbody\n")

    got = run(main)
    assert [(r.address, r.stage, (r.code, r.message)) for r in got] == [
        ("alice@x", "data", saved("alice@x")), ("full@x", "data", FULL), ("temp@x", "data", TEMP),
        ("nosuch@x", "rcpt", NOSUCH), ("bob@x", "data", saved("bob@x"))]
    assert [r.outcome for r in got] == ["ok", "permanent", "temporary", "permanent", "ok"]
    with lmtp.LMTP(*f.address, timeout=10) as s:  # the blocking client says the same, field for field
        want = s.deliver("me@x", rcpts, b"Subject: one\n\nbody\n")
    assert fields(got) == fields(want)
    assert f.messages() == [b"Subject: one\r\n\r\nbody\r\n"] * 2
    t = f.transcript()
    assert t.count(b"MAIL FROM:<me@x>\r\n") == 2 and t.endswith(b"QUIT\r\n")


def test_tasks_on_one_connection_are_pipelined_each_with_its_own_results(fake_server, run):
    f = fake_server("--rules", RULES, "--reply-delay", "20", "--cap", "CHUNKING")
    n = 40

    async def one(s, i):
        rcpt = ["alice@x", "full@x", "nosuch@x", "bob@x"][i % 4]
        results = await s.deliver("me@x", [rcpt], b"Subject: m%d\n\nbody %d\n" % (i, i))
        return i, rcpt, results

    async def main():
        async with client(f) as s:
            return await asyncio.gather(*(one(s, i) for i in range(n)))

    started = time.monotonic()
    done = run(main)
    elapsed = time.monotonic() - started
    for i, rcpt, results in done:
        [r] = results
        assert r.address == rcpt
        assert r.code == {"alice@x": 250, "full@x": 552, "nosuch@x": 550, "bob@x": 250}[rcpt], i
    stats = f.stop()
    assert stats["CONNECTIONS"] == 1
    assert stats["MESSAGES"] == 30  # the 10 for nosuch@x had no recipient: no DATA
    # Pipelined by BDAT: far fewer round trips (each costs the server's 20 ms delay) than messages.
    assert stats["FLUSHES"] < n / 2, stats
    assert elapsed < n * 0.02 * 3, elapsed
    stored = {m.split(b"\r\n")[0] for m in f.messages()}
    assert stored == {b"Subject: m%d" % i for i in range(n) if i % 4 != 2}


def many():
    return [("me@x", "alice@x", b"Subject: a\n\n1\n"),
            ("me@x", ["nosuch@x", "bob@x"], "Subject: b\n\n2\n"),
            ("me@x", ["full@x"], b"Subject: c\n\n" + b"x" * 2000),
            ("me@x", ["temp@x"], iter([b"Subject: d\n\n", b"4\n"]))]  # (an iterable streams)


def test_deliver_many_as_lmtp(fake_server, run):
    f = fake_server("--rules", RULES)

    async def main():
        async with client(f) as s:
            got = await s.deliver_many(many())
            assert fields(s.last_results) == fields(got[-1])
            return got

    got = run(main)
    with lmtp.LMTP(*f.address, timeout=10) as s:
        want = s.deliver_many(many())
    assert [fields(m) for m in got] == [fields(m) for m in want]
    assert [[r.code for r in m] for m in got] == [[250], [550, 250], [552], [452]]
    assert f.stop()["MESSAGES"] == 8  # (four each; full@x and temp@x refused the message after it came)


def test_deliver_many_refused_before_sending_as_lmtp(fake_server):
    f = fake_server("--rules", RULES, "--size", "1000")
    messages = [("me@x", "alice@x", b"x" * 2000), ("me@x", ["bob@x"], b"Subject: small\n\n.\n")]

    async def main():
        async with client(f) as s:
            return await s.deliver_many(messages)

    got = arun(main)
    assert [[r.outcome for r in m] for m in got] == [["unknown"], ["ok"]]
    assert "exceeds the server's SIZE limit of 1000 octets" in got[0][0].text
    assert f.transcript().count(b"MAIL FROM") == 1  # the one over the limit never went out
    with lmtp.LMTP(*f.address, timeout=10) as s:
        want = s.deliver_many(messages)
    assert [fields(m) for m in got] == [fields(m) for m in want]


def test_smtputf8_not_offered_raises_as_lmtp(fake_server):
    f = fake_server("--rules", RULES)

    async def main():
        async with client(f) as s:
            with pytest.raises(lmtp.SMTPNotSupportedError) as info:
                await s.deliver("me@x", ["alice@x"], MSG, ["SMTPUTF8"])
            assert str(info.value) == "SMTPUTF8 not supported by server"
            with pytest.raises(UnicodeEncodeError):
                await s.deliver("mé@x", ["alice@x"], MSG)
            assert s.alive and s.idle

    arun(main)
    assert b"MAIL" not in f.transcript()


# ---------------------------------------------------------------------------
# sendmail: what smtplib's callers expect, exactly as LMTP.sendmail

def outcome(call):
    """What a sendmail call gave: ("returned", value) or (exception type, its args and extras)."""
    try:
        return ("returned", call())
    except smtplib.SMTPException as e:
        return (type(e).__name__, e.args, getattr(e, "recipients", None))


@pytest.mark.parametrize("rcpts, fault, kind", [
    (["alice@x", "nosuch@x", "full@x"], (), "returned"),
    (["nosuch@x"], (), "SMTPRecipientsRefused"),
    (["nosuch@x", "nosuch@x"], (), "SMTPRecipientsRefused"),
    (["full@x", "temp@x", "nosuch@x"], (), "LMTPDataError"),
    ([], (), "SMTPRecipientsRefused"),
    (["alice@x"], ("--fault-on", "MAIL", "--fault-reply", "553 5.1.8 bad sender\\r\\n"), "SMTPSenderRefused"),
], ids=["some-refused", "rcpt-refused", "all-rcpt-refused", "refused-after-data", "nobody", "mail-refused"])
def test_sendmail_as_lmtp(fake_server, rcpts, fault, kind):
    f = fake_server("--rules", RULES, *fault)

    async def main():
        async with client(f) as s:
            try:
                return ("returned", await s.sendmail("me@x", rcpts, "Subject: s\n\nbody\n"))
            except smtplib.SMTPException as e:
                return (type(e).__name__, e.args, getattr(e, "recipients", None))

    got = arun(main)
    with lmtp.LMTP(*f.address, timeout=10) as s:
        want = outcome(lambda: s.sendmail("me@x", rcpts, "Subject: s\n\nbody\n"))
    assert got == want
    assert got[0] == kind


def test_sendmail_returns_when_some_got_it_before_the_break(fake_server):
    # The first final reply comes, then the server hangs up: bob has no verdict.
    f = fake_server("--rules", RULES, "--fault-on", ".", "--fault-replies", "1", "--fault-action", "close")

    async def main():
        async with client(f) as s:
            refused = await s.sendmail("me@x", ["alice@x", "bob@x"], MSG)
            assert not s.alive
            return refused

    refused = arun(main)
    assert list(refused) == ["bob@x"]
    assert refused["bob@x"][0] == 421


# ---------------------------------------------------------------------------
# connections: unix socket, STARTTLS, AUTH, refusals

def test_unix_socket(fake_server, run):
    f = fake_server("--rules", RULES, unix=True)

    async def main():
        async with lmtp.AsyncLMTP(f.path, timeout=10) as s:
            [r] = await s.deliver("me@x", ["alice@x"], MSG)
            return r

    r = run(main)
    assert (r.code, r.ok) == (250, True)
    assert f.messages() == [MSG]


def test_starttls_and_auth_in_the_set_up(fake_server, tls_certs, run):
    f = fake_server(*tls_args(tls_certs), "--rules", RULES, "--auth", "PLAIN SCRAM-SHA-256", "--auth-after-tls",
                    "--auth-require", "--auth-user", USER, "--auth-password", PASSWORD, "--cap", "CHUNKING")

    async def main():
        async with client(f, starttls=True, cafile=str(tls_certs / "ca.pem"), user=USER, password=PASSWORD) as s:
            assert s.has_extn("auth") and not s.has_extn("starttls")  # the LHLO over TLS
            return await s.deliver("me@x", ["alice@x"], b"Subject: inside\n\nsecret\n")

    [r] = run(main)
    assert r.ok
    stats = f.stop()
    assert (stats["TLS_SESSIONS"], stats["AUTH_SUCCESSES"]) == (1, 1)
    events = f.events()
    assert any(e.startswith("AUTH_OK 235 SCRAM-SHA-256 " + USER) for e in events), events
    assert "MESSAGE 0 tls=1 auth=SCRAM-SHA-256:" + USER in events
    assert f.messages() == [b"Subject: inside\r\n\r\nsecret\r\n"]


def test_starttls_then_login_after_connecting(fake_server, tls_certs):
    f = fake_server(*tls_args(tls_certs), "--rules", RULES, "--auth", "PLAIN", "--auth-after-tls",
                    "--auth-user", USER, "--auth-password", PASSWORD)

    async def main():
        async with client(f) as s:
            assert s.has_extn("starttls") and not s.has_extn("auth")
            assert await s.starttls(context=ssl.create_default_context(cafile=str(tls_certs / "ca.pem"))) == (
                220, b"2.0.0 ready")
            assert s.has_extn("auth")
            with pytest.raises(lmtp.SMTPAuthenticationError) as info:
                await s.login(USER, "wrong")
            assert info.value.smtp_code == 535
            assert await s.login(USER, PASSWORD) == (235, b"2.7.0 Authentication successful")
            [r] = await s.deliver("me@x", "alice@x", MSG)
            return r

    assert arun(main).ok
    assert "MESSAGE 0 tls=1 auth=PLAIN:" + USER in f.events()


def test_login_without_tls_is_refused_before_sending(fake_server):
    f = fake_server("--auth", "PLAIN", "--auth-user", USER, "--auth-password", PASSWORD)

    async def main():
        async with client(f) as s:
            with pytest.raises(lmtp.LMTPInsecureError):
                await s.login(USER, PASSWORD)
            assert s.alive

    arun(main)
    assert b"AUTH" not in f.transcript()


def test_certificate_refused_in_the_set_up(fake_server, tls_certs):
    f = fake_server(*tls_args(tls_certs))

    async def main():
        with pytest.raises(lmtp.LMTPCertificateError) as info:
            async with client(f, starttls=True):  # the system CAs do not know the test CA
                pass
        return str(info.value)

    assert "unable to get local issuer certificate" in arun(main)


def test_refusals_at_connect(fake_server, run):
    banner = fake_server("--greeting", "554 5.3.2 not today\\r\\n")
    lhlo = fake_server("--fault-on", "LHLO", "--fault-reply", "500 5.5.1 what\\r\\n")

    async def main():
        with pytest.raises(lmtp.SMTPConnectError) as info:
            await client(banner).connect()
        assert (info.value.smtp_code, info.value.smtp_error) == (554, b"5.3.2 not today")
        with pytest.raises(lmtp.SMTPHeloError) as info:
            await client(lhlo).connect()
        assert info.value.smtp_code == 500
        s = lmtp.AsyncLMTP("127.0.0.1", 1, timeout=5)  # nothing listens on port 1
        with pytest.raises(ConnectionRefusedError):
            await s.connect()
        with pytest.raises(lmtp.SMTPServerDisconnected) as info:
            await s.deliver("me@x", ["alice@x"], MSG)
        assert [r.outcome for r in info.value.results] == ["unknown"]

    run(main)


def test_quit_waits_for_the_deliveries_and_an_exception_skips_it(fake_server):
    f = fake_server("--rules", RULES, "--reply-delay", "50")

    async def main():
        s = client(f)
        assert await s.connect() == (220, b"fake.example LMTP ready")
        pending = asyncio.ensure_future(s.deliver("me@x", ["alice@x"], MSG))
        await asyncio.sleep(0)
        assert await s.quit() == (221, b"2.0.0 fake.example closing connection")
        assert (await pending)[0].ok  # QUIT went after it
        assert not s.alive
        with pytest.raises(RuntimeError):
            async with client(f):
                raise RuntimeError("the caller's")

    arun(main)
    t = f.transcript()
    assert t.count(b"QUIT\r\n") == 1 and t.index(b"QUIT") > t.index(b"RCPT TO:<alice@x>")


def test_the_dialogue_goes_to_the_logger(fake_server, caplog):
    f = fake_server("--rules", RULES)

    async def main():
        async with client(f) as s:
            await s.deliver("me@x", ["alice@x"], MSG)

    with caplog.at_level("DEBUG", logger="lmtp"):
        arun(main)
    lines = [r.getMessage() for r in caplog.records if r.name == "lmtp"]
    assert "send: 'MAIL FROM:<me@x>\\r\\n'" in lines, lines
    assert any(line.startswith("reply: b'250 2.0.0 <alice@x> Saved") for line in lines), lines


# ---------------------------------------------------------------------------
# deadlines: the loop's timer

def test_a_stalled_server_times_out_by_the_loop_timer(fake_server, run):
    f = fake_server("--rules", RULES, "--fault-on", "MAIL", "--fault-action", "hang")

    async def main():
        async with client(f, timeout=0.4) as s:
            started = time.monotonic()
            with pytest.raises(lmtp.LMTPTimeoutError) as info:
                await s.deliver("me@x", ["alice@x", "bob@x"], MSG)
            elapsed = time.monotonic() - started
            assert not s.alive
            return info.value, elapsed

    err, elapsed = run(main)
    assert isinstance(err, TimeoutError) and isinstance(err, smtplib.SMTPServerDisconnected)
    assert 0.35 < elapsed < 2.0, elapsed
    assert [r.outcome for r in err.results] == ["unknown", "unknown"]


def test_a_silent_banner_times_out(fake_server):
    f = fake_server("--fault-on", "", "--fault-action", "hang")

    async def main():
        started = time.monotonic()
        with pytest.raises(lmtp.LMTPTimeoutError):
            await client(f, timeout=0.3).connect()
        return time.monotonic() - started

    assert 0.25 < arun(main) < 2.0


# ---------------------------------------------------------------------------
# cancellation

def test_cancelled_before_its_bytes_went_out_nothing_is_sent(fake_server, run):
    # Without PIPELINING the second message waits for the first one's verdicts.
    f = fake_server("--rules", RULES, "--no-pipelining", "--reply-delay", "100")

    async def main():
        async with client(f) as s:
            first = asyncio.ensure_future(s.deliver("me@x", ["alice@x"], b"Subject: first\n\n1\n"))
            second = asyncio.ensure_future(s.deliver("me@x", ["bob@x"], b"Subject: second\n\n2\n"))
            await asyncio.sleep(0.05)
            second.cancel()
            [r] = await first
            assert r.ok
            with pytest.raises(asyncio.CancelledError):
                await second
            assert s.alive  # the connection goes on
            [r] = await s.deliver("me@x", ["bob@x"], b"Subject: third\n\n3\n")
            assert r.ok

    run(main)
    assert [m.split(b"\r\n")[0] for m in f.messages()] == [b"Subject: first", b"Subject: third"]
    assert b"second" not in f.transcript()
    assert f.transcript().count(b"MAIL FROM") == 2


def test_cancelled_after_its_bytes_went_out_closes_the_connection(fake_server, run):
    f = fake_server("--rules", RULES, "--reply-delay", "300")

    async def main():
        before = await fds_after_warm_up(f)
        s = client(f)
        await s.connect()
        first = asyncio.ensure_future(s.deliver("me@x", ["alice@x"], b"Subject: first\n\n1\n"))
        second = asyncio.ensure_future(s.deliver("me@x", ["bob@x", "full@x"], b"Subject: second\n\n2\n"))
        await transcript_shows(f, lambda t: b"RCPT TO:<bob@x>" in t)  # both went out, pipelined
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        with pytest.raises(lmtp.SMTPServerDisconnected) as info:
            await second
        assert not s.alive and not s.idle
        assert "cancelled" in str(info.value)
        assert [(r.address, r.outcome, r.code) for r in info.value.results] == [
            ("bob@x", "unknown", 0), ("full@x", "unknown", 0)]
        with pytest.raises(lmtp.SMTPServerDisconnected):
            await s.deliver("me@x", ["alice@x"], MSG)
        s.close()
        await asyncio.sleep(0.05)
        assert open_fds() == before
        assert asyncio.all_tasks() == {asyncio.current_task()}
        assert not live_timers(asyncio.get_running_loop())

    run(main)


def test_cancelling_deliver_many_takes_back_what_was_not_sent(fake_server):
    f = fake_server("--rules", RULES, "--no-pipelining", "--reply-delay", "100")

    async def main():
        async with client(f) as s:
            batch = asyncio.ensure_future(s.deliver_many([("me@x", "alice@x", b"Subject: m%d\n\n.\n" % i)
                                                          for i in range(5)]))
            await asyncio.sleep(0.05)  # the first is under way, the others wait
            batch.cancel()
            with pytest.raises(asyncio.CancelledError):
                await batch
            assert not s.alive  # the first had gone out: the connection was closed

    arun(main)
    assert f.transcript().count(b"MAIL FROM") == 1


def test_thousand_tasks_on_four_connections_with_random_cancellations(fake_server, run):
    f = fake_server("--rules", RULES, "--reply-delay", "1")
    rng = random.Random(20240611)
    n, conns = 1000, 4
    tag = uuid.uuid4().hex[:8]

    async def main():
        loop = asyncio.get_running_loop()
        fds = await fds_after_warm_up(f)
        clients = [client(f, max_in_flight=2000) for _ in range(conns)]  # most messages wait their turn
        for c in clients:
            await c.connect()
        outcomes = {}

        async def one(i):
            c = clients[i % conns]
            body = b"Subject: %s-%d\n\n" % (tag.encode(), i) + b"x" * rng.randrange(10, 400) + b"\n"
            try:
                results = await c.deliver("me@x", ["alice@x", "bob@x"], body)
            except lmtp.SMTPServerDisconnected as e:
                assert i not in outcomes
                outcomes[i] = ("broken", [r.outcome for r in e.results])
                return
            assert i not in outcomes
            outcomes[i] = ("ok", [r.code for r in results])

        tasks = [asyncio.ensure_future(one(i)) for i in range(n)]
        chosen = rng.sample(range(n), 60)
        for k, i in enumerate(chosen):
            await asyncio.sleep(rng.random() * 0.004)
            tasks[i].cancel()
            if k == len(chosen) // 2:
                # And one under way: the oldest unfinished on the first connection (unless its
                # results came just before: a task that had them is not cancelled, and then the next).
                for _ in range(20):
                    if not clients[0].alive:
                        break
                    tasks[next(j for j in range(0, n, conns) if not tasks[j].done())].cancel()
                    await asyncio.sleep(0)
                assert not clients[0].alive
        await asyncio.wait(tasks)
        cancelled = {i for i, t in enumerate(tasks) if t.cancelled()}
        for i, t in enumerate(tasks):
            if i not in cancelled:
                assert t.exception() is None, (i, t.exception())
                assert i in outcomes, i  # every task that was not cancelled had its outcome, once
            else:
                assert i not in outcomes
        for c in clients:
            c.close()
        await asyncio.sleep(0.05)
        assert open_fds() == fds
        assert asyncio.all_tasks() == {asyncio.current_task()}
        assert not live_timers(loop)
        return outcomes, cancelled

    outcomes, cancelled = run(main)
    assert cancelled
    ok = {i for i, (how, _) in outcomes.items() if how == "ok"}
    broken = {i for i, (how, _) in outcomes.items() if how == "broken"}
    assert ok, "no delivery went through"
    assert broken, "the cancellation after the bytes went out broke no other delivery"
    assert len(ok) + len(broken) + len(cancelled) == n
    assert len(cancelled) < 100
    assert all(outcomes[i][1] == [250, 250] for i in ok)
    assert all(outcomes[i][1] == ["unknown", "unknown"] for i in broken)
    stored = [m.split(b"\r\n")[0].decode() for m in f.messages()]
    stored = [subject for subject in stored if tag in subject]  # (not the warm-up's)
    subjects = ["Subject: %s-%d" % (tag, i) for i in ok]
    assert len(stored) == len(set(stored)), "a message was stored twice"
    assert set(subjects) <= set(stored)  # every delivery reported ok is there
    # Stored but not reported ok: only those whose connection went down (or were cancelled) after
    # the message was whole at the server.
    assert set(stored) - set(subjects) <= {"Subject: %s-%d" % (tag, i) for i in broken | cancelled}


# ---------------------------------------------------------------------------
# breaks

def test_a_server_that_closes_mid_message(fake_server, run):
    f = fake_server("--rules", RULES, "--fault-on", ".", "--fault-body-bytes", "100", "--fault-action", "close")
    body = b"Subject: long\n\n" + b"line of the body\n" * 2000

    async def main():
        async with client(f) as s:
            with pytest.raises(lmtp.SMTPServerDisconnected) as info:
                await s.deliver("me@x", ["alice@x", "bob@x"], body)
            err = info.value
            assert not isinstance(err, lmtp.LMTPTimeoutError)
            assert [(r.address, r.outcome, r.code) for r in err.results] == [
                ("alice@x", "unknown", 0), ("bob@x", "unknown", 0)]
            assert err.results[0].text == str(err)
            assert not s.alive
        s2 = client(f)
        await s2.connect()
        with pytest.raises(lmtp.SMTPServerDisconnected) as info:
            await s2.sendmail("me@x", ["alice@x"], body)
        s2.close()
        return info.value

    err = run(main)
    assert err.recipients == {"alice@x": (421, err.results[0].message)}
    assert f.messages() == []


def test_a_large_message_streams_under_flow_control(fake_server):
    # A small receive buffer and slow replies: the transport's buffer fills, writing pauses.
    f = fake_server("--rules", RULES, "--rcvbuf", "4096")
    body = b"Subject: big\r\n\r\n" + b"".join(b"%07d .........................................\r\n" % i
                                              for i in range(100000))

    async def main():
        async with client(f) as s:
            [r] = await s.deliver("me@x", ["alice@x"], body)
            return r

    assert arun(main).ok
    assert f.messages() == [body]


# ---------------------------------------------------------------------------
# a real server

def test_against_dovecot(dovecot, run):
    subject = "aio-" + uuid.uuid4().hex[:12]
    users = ["alice", "full", "bob", "nosuch"]
    msg = b"From: sender@example.org\r\nSubject: " + subject.encode() + b"\r\n\r\nHello.\r\n"

    async def main():
        async with lmtp.AsyncLMTP("127.0.0.1", dovecot.port, timeout=30) as s:
            return await asyncio.gather(*(s.deliver("sender@example.org", [u + "@example.org" for u in users], msg)
                                          for _ in range(3)))

    for results in run(main):
        assert [(r.address, r.stage, r.code) for r in results] == [
            ("alice@example.org", "data", 250), ("full@example.org", "data", 552),
            ("bob@example.org", "data", 250), ("nosuch@example.org", "rcpt", 550)], dovecot.log()[-2000:]
    assert len(dovecot.messages("alice", subject)) == 3
    assert len(dovecot.messages("bob", subject)) == 3
    assert dovecot.messages("full", subject) == []
