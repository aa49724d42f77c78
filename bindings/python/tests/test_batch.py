"""deliver_many: many messages over one connection, pipelined back to back, each
with its own per-recipient results (the core's Client::deliver_batch)."""
import smtplib

import pytest

import lmtp
from conftest import RULES


def msg(i):
    return b"Subject: batch %d\r\n\r\nbody %d\r\n" % (i, i)


def test_many_small_messages_share_round_trips(fake_server):
    f = fake_server("--rules", RULES, "--cap", "CHUNKING")
    who = ["alice@x", "nosuch@x", "full@x", "temp@x"]
    with lmtp.LMTP(*f.address) as s:
        results = s.deliver_many((("me@x", [who[i % 4], "bob@x"], msg(i)) for i in range(200)))
    assert len(results) == 200
    for i, rs in enumerate(results):
        assert [r.address for r in rs] == [who[i % 4], "bob@x"]
        assert rs[1].ok
        first = rs[0]
        if who[i % 4] == "alice@x":
            assert first.ok and first.stage == "data"
        elif who[i % 4] == "nosuch@x":
            assert first.permanent and first.stage == "rcpt" and first.code == 550
        elif who[i % 4] == "full@x":
            assert first.permanent and first.stage == "data" and first.code == 552
        else:
            assert first.temporary and first.code == 452
    assert s.last_results == results[-1]
    stats = f.stop()
    assert stats["LOCKSTEP_VIOLATIONS"] == 0
    assert stats["FLUSHES"] < 20  # 200 messages: a handful of round trips (greeting and LHLO included)
    assert len(f.messages()) == 200
    assert f.messages()[7] == msg(7)


def test_by_data_one_round_trip_per_message(fake):
    s = lmtp.LMTP(*fake.address)
    s.ehlo()
    results = s.deliver_many([("me@x", "alice@x", "line\n.dot\n") for _ in range(10)], transfer="data")
    assert all(rs[0].ok for rs in results)
    s.quit()
    stats = fake.stop()
    assert stats["FLUSHES"] == 2 + 10 + 1 + 1  # greeting, LHLO; one per message and the first group; QUIT
    assert stats["LOCKSTEP_VIOLATIONS"] == 0
    assert fake.messages()[0] == b"line\r\n.dot\r\n"


def test_messages_in_any_form_and_options(fake_server, tmp_path):
    f = fake_server("--rules", RULES, "--cap", "CHUNKING", "--cap", "DSN", "--size", "100000")
    path = tmp_path / "m.eml"
    path.write_bytes(b"Subject: file\r\n\r\nfrom a file\r\n")
    import email.message
    m = email.message.EmailMessage()
    m["Subject"] = "object"
    m.set_content("from an object\n")
    with lmtp.LMTP(*f.address) as s, open(path, "rb") as fp:
        results = s.deliver_many([("me@x", ["alice@x"], b"bytes\r\n"), ("me@x", ["alice@x"], fp),
                                  ("me@x", ["alice@x"], m), ("me@x", ["alice@x"], iter([b"it", b"er\r\n"]))],
                                 ["RET=HDRS"], ["NOTIFY=FAILURE"])
    assert [rs[0].ok for rs in results] == [True] * 4
    got = f.messages()
    assert got[0] == b"bytes\r\n" and got[1] == path.read_bytes() and got[3] == b"iter\r\n"
    assert b"from an object" in got[2]
    commands = f.commands()
    assert b"MAIL FROM:<me@x> SIZE=7 RET=HDRS" in commands  # each message its own SIZE
    assert commands.count(b"RCPT TO:<alice@x> NOTIFY=FAILURE") == 4


def test_bad_input_raises_before_anything_is_sent(fake):
    s = lmtp.LMTP(*fake.address)
    s.ehlo()
    before = fake.transcript()
    with pytest.raises(ValueError):
        s.deliver_many([("me@x", ["alice@x"], b"m"), ("me@x", ["a\r\nRSET@x"], b"m")])
    assert fake.transcript() == before
    s.quit()


def test_a_message_refused_locally_fails_alone(fake_server):
    f = fake_server("--rules", RULES, "--size", "10")
    with lmtp.LMTP(*f.address) as s:
        results = s.deliver_many([("me@x", ["alice@x", "bob@x"], b"over the SIZE limit\r\n"),
                                  ("me@x", ["bob@x"], b"small\r\n")])
    assert [[r.outcome for r in rs] for rs in results] == [["unknown", "unknown"], ["ok"]]
    assert [r.address for r in results[0]] == ["alice@x", "bob@x"]
    assert "SIZE" in results[0][0].text and results[0][0].code == 0
    assert f.messages() == [b"small\r\n"]


def test_a_failing_source_before_its_first_chunk_fails_that_message_alone(fake_server):
    f = fake_server("--rules", RULES, "--cap", "CHUNKING")

    class Broken:
        def read(self, n):
            raise OSError("disk on fire")

    broken = Broken()
    with lmtp.LMTP(*f.address) as s:
        results = s.deliver_many([("me@x", ["alice@x"], b"one\r\n"), ("me@x", ["bob@x"], broken),
                                  ("me@x", ["bob@x"], b"three\r\n")])
    assert [rs[0].outcome for rs in results] == ["ok", "unknown", "ok"]
    assert "disk on fire" in results[1][0].text
    assert f.messages() == [b"one\r\n", b"three\r\n"]


def test_the_session_breaking_carries_the_results(fake_server):
    f = fake_server("--rules", RULES, "--cap", "CHUNKING", "--fault-on", "MAIL FROM:<third@x>",
                    "--fault-reply", "421 4.3.2 going down\\r\\n", "--fault-action", "close")
    s = lmtp.LMTP(*f.address)
    s.ehlo()
    with pytest.raises(smtplib.SMTPServerDisconnected) as exc:
        s.deliver_many([(sender, ["alice@x"], b"m\r\n") for sender in ("me@x", "me@x", "third@x", "me@x")])
    results = exc.value.results
    assert [rs[0].outcome for rs in results] == ["ok", "ok", "temporary", "unknown"]
    assert results[2][0].code == 421 and results[2][0].stage == "mail"
