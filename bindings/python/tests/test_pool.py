"""lmtp.Pool: many messages over K connections, against the fake server (and Dovecot)."""
import ast
import email.message
import inspect
import io
import logging
import os
import socket
import ssl
import subprocess
import threading
import time
import uuid

import pytest

import lmtp

from conftest import RULES, Dovecot, _program, tls_args, unavailable
from test_stubs import STUB_DIRS, class_members, stub_class, stub_tree

FIELDS = ("address", "stage", "code", "enhanced", "text", "message", "rcpt_code", "outcome", "attempts")


def fields(results):
    return [[tuple(getattr(r, f) for f in FIELDS) for r in message] for message in results]


def pool_for(fake, **kw):
    kw.setdefault("retry_delay", 0.05)
    kw.setdefault("retry_delay_max", 0.2)
    if fake.path:
        return lmtp.Pool(fake.path, **kw)
    return lmtp.Pool(fake.host, fake.port, **kw)


def body(i, size=100):
    return b"Subject: message %d\r\n\r\n%s\r\n" % (i, b"x" * size)


def mixed_messages():
    """One of each verdict, in each form a message takes."""
    m = email.message.EmailMessage()
    m["Subject"] = "an email.message.Message"
    m["From"] = "s@x"
    m.set_content("Hello\nFrom here on\n")
    return [
        ("s@x", ["alice@x", "bob@x"], body(0)),
        ("s@x", ["nosuch@x", "alice@x"], "Subject: a str\r\n\r\nhi\r\n"),
        ("s@x", "full@x", m),
        ("s@x", ["temp@x", "bob@x", "nosuch@x"], io.BytesIO(body(3, 70000))),
        ("s@x", ["bob@x"], [b"Subject: pieces\r\n", b"\r\n", b"an iterable\r\n"]),
        ("<s@x>", ["Alice <alice@x>"], bytearray(body(5))),
    ]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------------------
# the same results as LMTP.deliver_many

@pytest.mark.parametrize("connections", [1, 3])
def test_results_equal_lmtp_deliver_many(fake, connections):
    with lmtp.LMTP(*fake.address) as one:
        expected = one.deliver_many(mixed_messages())
    with pool_for(fake, connections=connections, retries=0) as pool:
        got = pool.deliver_many(mixed_messages())
    assert fields(got) == fields(expected)
    assert [[r.outcome for r in m] for m in got] == [
        ["ok", "ok"], ["permanent", "ok"], ["permanent"], ["temporary", "ok", "permanent"], ["ok"], ["ok"]]
    assert all(r.attempts == 1 for m in got for r in m)
    assert len(fake.messages()) == 2 * 6  # each message once per call (full@x is refused after DATA)


def test_options_and_transfer_as_lmtp(fake_server):
    f = fake_server("--rules", RULES, "--size", "100000", "--cap", "CHUNKING", "--cap", "DSN")
    msgs = [("s@x", ["alice@x"], body(i)) for i in range(3)] + [("s@x", ["bob@x"], body(9, 200000))]
    for transfer in ("data", "bdat"):
        with lmtp.LMTP(*f.address) as one:
            expected = one.deliver_many(msgs, ["BODY=8BITMIME"], ["NOTIFY=NEVER"], transfer=transfer)
        with pool_for(f, connections=2) as pool:
            got = pool.deliver_many(msgs, ["BODY=8BITMIME"], ["NOTIFY=NEVER"], transfer=transfer)
        # Over the server's SIZE: the core declares SIZE for both and refuses the message before
        # sending it (the pool says no attempt was made: attempts 0).
        assert fields(got[:3]) == fields(expected[:3])
        for one in (expected[3][0], got[3][0]):
            assert one.unknown and one.code == 0 and "exceeds the server's SIZE limit" in one.text
        assert got[3][0].attempts == 0
    sent = f.transcript()
    assert sent.count(b"BODY=8BITMIME") == 2 * (3 + 3)  # the one over SIZE never goes out
    assert sent.count(b"MAIL FROM:<s@x> SIZE=") == 2 * (3 + 3)
    assert sent.count(b"RCPT TO:<alice@x> NOTIFY=NEVER") == 2 * (3 + 3)
    assert b"BDAT" in sent


def test_order_kept_over_many_connections(fake_server):
    f = fake_server("--reply-delay", "5")
    n = 60
    msgs = [("s@x", ["u%d@x" % i, "v%d@x" % i], body(i)) for i in range(n)]
    with pool_for(f, connections=8) as pool:
        results = pool.deliver_many(msgs)
    assert [[r.address for r in m] for m in results] == [["u%d@x" % i, "v%d@x" % i] for i in range(n)]
    assert all(r.ok and r.code == 250 for m in results for r in m)
    stored = f.messages()
    assert len(stored) == n
    assert sorted(stored) == sorted(body(i) for i in range(n))
    assert f.stop()["CONNECTIONS"] <= 8


def test_bad_input_raises_before_anything_is_sent(fake):
    with pool_for(fake) as pool:
        good = ("s@x", ["alice@x"], body(0))
        with pytest.raises(ValueError):
            pool.deliver_many([good, ("s@x", ["bad\r\n@x"], body(1))])
        with pytest.raises(ValueError):
            pool.deliver_many([good], ["SIZE=huge"])
        with pytest.raises(ValueError):
            pool.deliver_many([good], transfer="carrier-pigeon")
        with pytest.raises(UnicodeEncodeError):
            pool.deliver_many([good, ("s@x", ["alice@x"], "Subject: caf\u00e9\r\n\r\n")])
        with pytest.raises(UnicodeEncodeError):
            pool.deliver_many([good, ("s@x", ["b\u00f6b@x"], body(1))])
        with pytest.raises(TypeError):
            pool.deliver_many([good, ("s@x", ["alice@x"], 42)])
        assert fake.transcript() == b""
        assert pool.deliver_many([]) == []
        assert pool.deliver_many([("s@x", [], body(0))]) == [[]]
    with pytest.raises(ValueError):
        lmtp.Pool()
    with pytest.raises(ValueError):
        lmtp.Pool("127.0.0.1", 1, connections=0)
    with pytest.raises(ValueError):
        lmtp.Pool("127.0.0.1", 1, retry_delay=2, retry_delay_max=1)


# ---------------------------------------------------------------------------
# retries

def test_temporary_failures_are_retried_with_attempts(fake_server):
    f = fake_server("--rules", "t2@x=250,451*2;t9@x=250,451*9;r1@x=450*1;alice@x=250,250")
    msgs = [("s@x", ["alice@x", "t2@x"], body(0)), ("s@x", ["r1@x"], body(1)), ("s@x", ["t9@x"], body(2))]
    start = time.monotonic()
    with pool_for(f, connections=2, retries=3, retry_delay=0.05, retry_delay_max=0.1) as pool:
        results = pool.deliver_many(msgs)
    elapsed = time.monotonic() - start
    (alice, t2), (r1,), (t9,) = results
    assert (alice.outcome, alice.attempts) == ("ok", 1)
    assert (t2.outcome, t2.code, t2.attempts) == ("ok", 250, 3)
    assert (r1.outcome, r1.attempts) == ("ok", 2)
    assert (t9.outcome, t9.code, t9.stage, t9.attempts) == ("temporary", 451, "data", 4)
    assert t9.enhanced == (4, 3, 0) or t9.enhanced[0] == 4
    # The re-sends hold only the recipients that got the 4xx.
    sent = f.transcript()
    assert sent.count(b"RCPT TO:<alice@x>") == 1
    assert sent.count(b"RCPT TO:<t2@x>") == 3
    assert sent.count(b"RCPT TO:<t9@x>") == 4
    assert 0.05 + 0.1 + 0.1 <= elapsed < 5  # t9 waited 0.05, 0.1, 0.1 (doubling, capped)


def test_no_retries(fake_server):
    f = fake_server("--rules", "t2@x=250,451*2")
    with pool_for(f, retries=0) as pool:
        (r,), = pool.deliver_many([("s@x", ["t2@x"], body(0))])
    assert (r.outcome, r.attempts) == ("temporary", 1)


def test_a_stream_is_sent_once(fake_server):
    f = fake_server("--rules", "t2@x=250,451*2")
    with pool_for(f, retries=3) as pool:
        (r,), = pool.deliver_many([("s@x", ["t2@x"], io.BytesIO(body(0)))])
    assert (r.outcome, r.attempts) == ("temporary", 1)


# ---------------------------------------------------------------------------
# breaks

def test_killed_connection_after_the_end(fake_server):
    # The third message's end: no replies, the connection closed (the message is stored).
    f = fake_server("--fault-on", ".", "--fault-skip", "2", "--fault-times", "1", "--fault-action", "close")
    n = 8
    with pool_for(f, connections=2) as pool:
        results = pool.deliver_many([("s@x", ["a%d@x" % i, "b%d@x" % i], body(i)) for i in range(n)])
    unknown = [i for i, m in enumerate(results) if any(r.unknown for r in m)]
    assert len(unknown) == 1, fields(results)
    broken = results[unknown[0]]
    assert all(r.unknown and r.code == 0 and r.attempts == 1 and r.text for r in broken)
    assert all(r.ok for i, m in enumerate(results) if i != unknown[0] for r in m)
    assert len(f.messages()) == n  # the unknown one was not sent again


def test_killed_connection_before_the_end_is_resent(fake_server):
    f = fake_server("--fault-on", "DATA", "--fault-skip", "1", "--fault-times", "1", "--fault-action", "close")
    with pool_for(f, connections=1) as pool:
        results = pool.deliver_many([("s@x", ["a%d@x" % i], body(i)) for i in range(4)])
    assert all(r.ok for m in results for r in m)
    assert [m[0].attempts for m in results] == [1, 2, 1, 1]
    assert len(f.messages()) == 4


def test_resend_unknown(fake_server):
    f = fake_server("--fault-on", ".", "--fault-times", "1", "--fault-action", "close")
    with pool_for(f, resend_unknown=True) as pool:
        (r,), = pool.deliver_many([("s@x", ["a@x"], body(0))])
    assert (r.outcome, r.attempts) == ("ok", 2)
    assert len(f.messages()) == 2  # delivered twice: what resend_unknown accepts


def test_refused_connections_give_unknown_results(fake_server):
    port = free_port()
    start = time.monotonic()
    with lmtp.Pool("127.0.0.1", port, retries=1, retry_delay=0.05) as pool:
        results = pool.deliver_many([("s@x", ["a@x", "b@x"], body(0)), ("s@x", ["c@x"], body(1))])
    elapsed = time.monotonic() - start
    assert [[r.address for r in m] for m in results] == [["a@x", "b@x"], ["c@x"]]
    for r in (r for m in results for r in m):
        assert (r.outcome, r.code, r.stage, r.attempts) == ("unknown", 0, None, 0)
        assert "refused" in r.text.lower() and r.message == r.text.encode()
    assert 0.05 <= elapsed < 3


def test_hosts_first_down(fake):
    with lmtp.Pool("127.0.0.1", free_port(), hosts=[fake.address], retry_delay=0.05) as pool:
        results = pool.deliver_many([("s@x", ["alice@x"], body(i)) for i in range(5)])
    assert all(r.ok for m in results for r in m)
    assert len(fake.messages()) == 5


def test_unix_socket(fake_server):
    f = fake_server("--rules", RULES, unix=True)
    with lmtp.Pool(hosts=[f.path], connections=3) as pool:
        results = pool.deliver_many([("s@x", ["alice@x", "nosuch@x"], body(i)) for i in range(10)])
        assert pool.deliver_many([("s@x", ["bob@x"], body(10))])[0][0].ok  # connections reused
    assert [[r.outcome for r in m] for m in results] == [["ok", "permanent"]] * 10
    assert len(f.messages()) == 11


def test_close_and_deliver_again(fake_server):
    f = fake_server()
    pool = pool_for(f, connections=2)
    assert pool.deliver_many([("s@x", ["a@x"], body(0))])[0][0].ok
    pool.close()
    assert pool.deliver_many([("s@x", ["a@x"], body(1))])[0][0].ok
    pool.close()
    pool.close()
    assert f.stop()["CONNECTIONS"] == 2


def test_a_poison_message_is_given_up(fake_server):
    # Every DATA closes the connection: the message never gets to its end.
    f = fake_server("--fault-on", "DATA", "--fault-action", "close")
    with pool_for(f, retries=2) as pool:
        (a, b), = pool.deliver_many([("s@x", ["a@x", "b@x"], body(0))])
    for r in (a, b):
        assert (r.outcome, r.code, r.attempts) == ("unknown", 0, 3)
        assert r.text and r.message == r.text.encode()
    assert f.messages() == []


# ---------------------------------------------------------------------------
# TLS, AUTH, the trace

def test_starttls_and_auth_on_every_connection(fake_server, tls_certs):
    f = fake_server(*tls_args(tls_certs), "--auth", "PLAIN", "--auth-after-tls", "--auth-require", "--auth-user",
                    "u", "--auth-password", "p", "--reply-delay", "20")
    context = ssl.create_default_context(cafile=str(tls_certs / "ca.pem"))
    with pool_for(f, connections=3, starttls=True, context=context, user="u", password="p") as pool:
        results = pool.deliver_many([("s@x", ["a%d@x" % i], body(i)) for i in range(9)])
    assert all(r.ok for m in results for r in m), fields(results)
    stats = f.stop()
    assert stats["TLS_SESSIONS"] == stats["CONNECTIONS"] == stats["AUTH_SUCCESSES"] >= 2
    assert all(e.split()[2:4] == ["tls=1", "auth=PLAIN:u"] for e in f.events() if e.startswith("MESSAGE"))


def test_tls_failure_gives_unknown_results(fake_server, tls_certs):
    f = fake_server(*tls_args(tls_certs))
    with pool_for(f, retries=0, starttls=True) as pool:  # the system's CAs: the test CA is not one
        (r,), = pool.deliver_many([("s@x", ["a@x"], body(0))])
    assert (r.outcome, r.code, r.attempts) == ("unknown", 0, 0)
    assert "certificate" in r.text
    assert f.messages() == []


def test_trace_goes_to_logging(fake, caplog):
    with caplog.at_level(logging.DEBUG, logger="lmtp"):
        with pool_for(fake) as pool:
            assert pool.deliver_many([("s@x", ["alice@x"], body(0))])[0][0].ok
    lines = [r.getMessage() for r in caplog.records if r.name == "lmtp"]
    assert "send: 'MAIL FROM:<s@x>\\r\\n'" in lines, lines
    assert any(line.startswith("reply: b'250 2.0.0 <alice@x> Saved") for line in lines), lines


# ---------------------------------------------------------------------------
# threads

def test_gil_released_during_delivery(fake_server):
    f = fake_server("--reply-delay", "100")
    ticks = []
    stop = threading.Event()

    def tick():
        while not stop.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.005)

    t = threading.Thread(target=tick)
    with pool_for(f, connections=1) as pool:
        t.start()
        try:
            start = time.monotonic()
            results = pool.deliver_many([("s@x", ["a@x"], body(i)) for i in range(4)])
            end = time.monotonic()
        finally:
            stop.set()
            t.join()
    assert all(r.ok for m in results for r in m)
    assert end - start >= 0.8  # banner, LHLO, then two flushes per message, 100 ms each
    during = [x for x in ticks if start <= x <= end]
    assert len(during) >= 0.5 * (end - start) / 0.005 * 0.5, (len(during), end - start)


def test_one_delivery_at_a_time(fake_server):
    f = fake_server("--reply-delay", "200")
    pool = pool_for(f)
    errors = []

    def second():
        time.sleep(0.2)
        try:
            pool.deliver_many([("s@x", ["b@x"], body(1))])
        except RuntimeError as e:
            errors.append(str(e))

    t = threading.Thread(target=second)
    t.start()
    assert pool.deliver_many([("s@x", ["a@x"], body(0))])[0][0].ok
    t.join()
    pool.close()
    assert errors and "another thread" in errors[0]


# ---------------------------------------------------------------------------
# timing: N messages with a reply delay D over K connections take about N*D*2/K
# (two flushes of replies per message: MAIL/RCPT/DATA, then the final replies)

def test_timing_over_k_connections(fake_server):
    delay = 0.02
    f = fake_server("--reply-delay", str(int(delay * 1000)))
    n = 64
    msgs = [("s@x", ["u%d@x" % i], body(i)) for i in range(n)]
    times = {}
    for k in (1, 2, 4, 8, 32):
        with pool_for(f, connections=k, mailbox_concurrency=0) as pool:
            start = time.monotonic()
            results = pool.deliver_many(msgs)
            times[k] = time.monotonic() - start
        assert all(r.ok for m in results for r in m)
    print_timing(times, n, delay)
    assert times[32] <= times[8], times


def print_timing(times, n, delay):
    """The table of the times for each K, against N*2D/K; asserts what any pool must do:
    one connection takes N*2D, eight at least three times less."""
    print("\nN = %d messages, reply delay D = %.0f ms (2 flushes a message)" % (n, delay * 1000))
    print("%-8s %10s %12s %8s" % ("K", "seconds", "N*2D/K", "ratio"))
    for k, t in times.items():
        ideal = n * 2 * delay / k
        print("%-8d %10.3f %12.3f %8.2f" % (k, t, ideal, t / ideal))
    assert times[1] >= n * 2 * delay * 0.9
    assert times[8] * 3 <= times[1], times


# ---------------------------------------------------------------------------
# the stubs describe lmtp.Pool

@pytest.mark.parametrize("stub_dir", STUB_DIRS, ids=[str(d) for d in STUB_DIRS])
def test_stubs_describe_pool(stub_dir):
    members = class_members(stub_class(stub_tree(stub_dir), "Pool"))
    assert "__enter__" in members and "__exit__" in members
    for name in ("__init__", "close", "deliver_many"):
        node = members[name]
        stub = [a.arg for a in node.args.args + node.args.kwonlyargs]
        assert stub == list(inspect.signature(getattr(lmtp.Pool, name)).parameters), name
    assert "attempts" in class_members(stub_class(stub_tree(stub_dir), "Result"))
    assert isinstance(ast.parse((stub_dir / "__init__.pyi").read_text()), ast.Module)


# ---------------------------------------------------------------------------
# Dovecot: many mailboxes over a pool

@pytest.fixture(scope="module")
def dovecot_users():
    """A Dovecot of its own with 40 more users, user0 ... user39 (dovecot.sh LMTP_USERS)."""
    script = _program("LMTP_DOVECOT")
    d = Dovecot(script, "dovecot-pool")
    old = os.environ.get("LMTP_USERS")
    os.environ["LMTP_USERS"] = "40"
    try:
        d.start()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        d.stop()
        unavailable("cannot start Dovecot: %s" % e)
    finally:
        if old is None:
            del os.environ["LMTP_USERS"]
        else:
            os.environ["LMTP_USERS"] = old
    try:
        yield d
    finally:
        d.stop()


def test_dovecot_many_users(dovecot_users):
    subject = "pool %s" % uuid.uuid4()
    users = ["user%d" % u for u in range(40)]
    msgs = [("s@example.org", [users[i % 40], users[(i * 7 + 1) % 40] + "@example.org"],
             "Subject: %s %d\r\n\r\nhello\r\n" % (subject, i)) for i in range(200)]
    with lmtp.Pool(dovecot_users.socket, connections=8) as pool:
        results = pool.deliver_many(msgs + [("s@example.org", ["nosuch@example.org", "user0"], "Subject: x\r\n\r\n")])
    assert all(r.ok and r.code == 250 for m in results[:-1] for r in m), fields(results)
    assert [r.outcome for r in results[-1]] == ["permanent", "ok"]
    want = {}
    for i, (_, rcpts, _) in enumerate(msgs):
        for rcpt in rcpts:
            want.setdefault(rcpt.split("@")[0], []).append("%s %d" % (subject, i))
    for user, subjects in want.items():
        got = [m["Subject"] for m in dovecot_users.messages(user) if m["Subject"].startswith(subject)]
        assert sorted(got) == sorted(subjects), user
