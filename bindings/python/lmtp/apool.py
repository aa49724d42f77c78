"""lmtp.AsyncPool: lmtp.Pool for asyncio.

    async with lmtp.AsyncPool("/run/dovecot/lmtp", connections=8) as pool:
        results = await pool.deliver("me@example.org", ["alice@example.org"], msg)
        many = await asyncio.gather(*(pool.deliver(s, r, m) for s, r, m in queue))

The policy (which message goes to which connection with which recipients, 4xx
retries, what a break means, reuse limits, idle close, connect back-off over the
servers) is liblmtp's pool planner (lmtp::PoolPlanner, bound as _lmtp._Planner),
the same one lmtp.Pool and the C pool run. This module only carries out its
decisions with lmtp/aio.py's connections (an asyncio.Protocol over the engine's
bytes-only mode, one message in flight on each) and tells it what happened;
the engine's report of each message goes to the planner inside the extension.
No thread: everything runs in the loop's thread, driven by callbacks (the
connections' futures, a loop.call_at timer for the planner's next decision).
"""

import asyncio
import logging
import os
import socket

from . import _lmtp
from . import (LMTP, LMTPTimeoutError, SMTPServerDisconnected, _apply_tls, _batch, _check_encoding,
               _default_hostname, _params, _source, log)
from .aio import _Connection, _Timer, _log_trace, _starttls_mode
from .pool import _pool_results, _servers

__all__ = ["AsyncPool"]

_TRANSFERS = ("auto", "data", "bdat")
_CLOSED = "the pool was closed"


def _guarded(method):
    """A callback of the loop's into the pool: should it fail (a fault of the pool's own), every
    delivery waiting ends now ("closed", recipients as far as known) rather than never, and the
    error goes on to the loop's exception handler."""
    def call(self, *args):
        try:
            return method(self, *args)
        except Exception:
            self._abort()
            raise
    call.__name__ = method.__name__
    call.__doc__ = method.__doc__
    return call


class _Job:
    """One message given to the pool, until its report."""

    __slots__ = ("id", "sender", "rcpts", "source", "to_addrs", "params", "transfer", "future", "slot", "cancelled")

    def __init__(self, sender, rcpts, source, to_addrs, params, transfer, future):
        self.id = None
        self.sender = sender
        self.rcpts = rcpts
        self.source = source
        self.to_addrs = to_addrs
        self.params = params
        self.transfer = transfer
        self.future = future  # the caller's: its list of Result
        self.slot = None  # the connection it is on, while it is
        self.cancelled = False


class _Slot:
    """One connection of the planner's: opening (task), then open (connection)."""

    __slots__ = ("id", "engine", "connection", "task", "token", "job", "gone")

    def __init__(self, conn_id):
        self.id = conn_id
        self.engine = None  # its _lmtp._Conn
        self.connection = None  # its _Connection once open
        self.task = None  # the task opening it
        self.token = None  # the message in flight: its engine token and job
        self.job = None
        self.gone = False  # the planner was told it ended


class AsyncPool:
    """Delivers messages over up to ``connections`` connections, for asyncio.

    It takes the arguments of ``lmtp.Pool`` and follows its policy (the
    core's), with the connections of ``lmtp.AsyncLMTP``: one message in flight
    on each; a 4xx sent again ``retries`` times after ``retry_delay`` seconds
    doubled (capped at ``retry_delay_max``); a break before a message's end
    sends it again, after its end leaves its recipients without a verdict
    ``unknown`` (never sent again unless ``resend_unknown``); connections
    closed (QUIT) after ``max_messages_per_connection`` messages,
    ``max_connection_age`` or ``idle_timeout`` seconds; at most
    ``mailbox_concurrency`` messages in flight to one address; the servers
    (``host``, then ``hosts``) tried in order with a back-off.

    ``deliver`` and ``deliver_many`` may be awaited by any number of tasks at
    once; each call gets its own results. Nothing raises but bad input
    (ValueError, TypeError, UnicodeEncodeError, before anything is sent):
    when no server can be connected every recipient is ``unknown`` with the
    connect error as its text and ``attempts`` 0.

    A task cancelled while it awaits ``deliver``: its message is taken back
    when none of it was written yet (still queued, or on a connection that did
    not start it); once some of it was written, it is left to finish on its
    connection and its results are dropped (closing the connection would make
    no other message safer: each connection carries one). A message waiting
    for a retry is taken back.

    ``close()`` (and the end of ``async with``) lets the messages on a
    connection finish, then ends every other message not reported: its
    ``deliver`` returns its results as far as known, the recipients never
    sent ``unknown`` with the text "the pool was closed" (nothing of them was
    sent: trying again is safe), then sends QUIT on every connection. A
    ``deliver`` called while it closes raises ``SMTPServerDisconnected``; one
    called after it opens new connections.
    """

    _timeout_seconds = LMTP._timeout_seconds

    def __init__(self, host=None, port=24, connections=4, retries=3, *, retry_delay=1.0, retry_delay_max=60.0,
                 max_messages_per_connection=100, max_connection_age=300.0, idle_timeout=10.0,
                 mailbox_concurrency=2, resend_unknown=False, hosts=None, local_hostname=None,
                 source_address=None, timeout=socket._GLOBAL_DEFAULT_TIMEOUT, strict_replies=False,
                 starttls=False, implicit_tls=False, context=None, keyfile=None, certfile=None, cafile=None,
                 capath=None, server_hostname=None, insecure=False, user=None, password=None,
                 allow_plaintext=False):
        self._servers = [(h, 0 if h.startswith("/") else int(p or 0))
                         for h, p in _servers(host, port, hosts, "lmtp.AsyncPool")]
        self._options = (connections, retries, retry_delay, retry_delay_max, max_messages_per_connection or 0,
                         max_connection_age or 0, idle_timeout or 0, mailbox_concurrency or 0, bool(resend_unknown))
        self._planner = self._new_planner()  # (checks the options now)
        self.timeout = timeout
        self.local_hostname = local_hostname if local_hostname is not None else _default_hostname()
        self._source_address = source_address
        self._strict_replies = bool(strict_replies)
        self._starttls = _starttls_mode(starttls)
        self._implicit_tls = bool(implicit_tls)
        self._tls = (keyfile, certfile, context, cafile, capath, server_hostname, insecure)
        self._auth = (user or "", password or "", bool(allow_plaintext))
        self._loop = None
        self._jobs = {}  # planner id -> _Job
        self._slots = {}  # planner connection id -> _Slot
        self._tasks = set()  # connects and QUITs under way
        self._timer = None  # for the planner's next decision in time (made with the loop)
        self._soon = None  # the decisions' turn, when one is due
        self._closing = False

    def _new_planner(self):
        planner = _lmtp._Planner(*self._options)
        for _ in self._servers:
            planner.add_server()
        return planner

    async def __aenter__(self):
        return self

    async def __aexit__(self, exc_type, exc, tb):
        await self.close()

    # --- deliveries ----------------------------------------------------------------------------

    async def deliver(self, from_addr, to_addrs, msg, mail_options=(), rcpt_options=(), *, transfer="auto"):
        """Deliver one message; every recipient's ``Result`` in the order given (``attempts``:
        the transactions that included it), as ``lmtp.Pool.deliver_many`` gives them."""
        return (await self.deliver_many([(from_addr, to_addrs, msg)], mail_options, rcpt_options,
                                        transfer=transfer))[0]

    async def deliver_many(self, messages, mail_options=(), rcpt_options=(), *, transfer="auto"):
        """Deliver every message; per message in the order given, the list of its ``Result``,
        as ``lmtp.Pool.deliver_many``. Messages in memory can be sent again for a retry; a file
        or an iterable is read once (its 4xx recipients keep their 4xx)."""
        jobs = self._enqueue(messages, mail_options, rcpt_options, transfer)
        try:
            return [(await job.future) if job is not None else [] for job in jobs]
        except asyncio.CancelledError:
            for job in jobs:
                if job is not None:
                    self._cancel(job)
            raise

    def _enqueue(self, messages, mail_options, rcpt_options, transfer):
        # Everything checked before anything is queued: bad input raises with nothing sent.
        batch = _batch(messages)
        params = _params(mail_options, rcpt_options)
        if transfer not in _TRANSFERS:
            raise ValueError("transfer is 'auto', 'data' or 'bdat', not %r" % (transfer,))
        sources = []
        for sender, rcpts, msg, _ in batch:
            _check_encoding(sender, rcpts, params, "ascii")
            sources.append(_source(msg))
        loop = asyncio.get_running_loop()
        if self._closing:
            raise SMTPServerDisconnected("the lmtp.AsyncPool is closing")
        if self._loop is not loop:
            if self._loop is not None and (self._jobs or self._slots or self._tasks):
                raise RuntimeError("this lmtp.AsyncPool is in use by another event loop")
            self._loop = loop
            self._timer = _Timer(loop)
        jobs = []
        for (sender, rcpts, _, to_addrs), source in zip(batch, sources):
            if not rcpts:
                jobs.append(None)  # nothing to send: no results
                continue
            job = _Job(sender, rcpts, source, to_addrs, params, transfer, loop.create_future())
            job.id = self._planner.add(rcpts, not callable(source))
            self._jobs[job.id] = job
            jobs.append(job)
        self._schedule()
        return jobs

    def _cancel(self, job):
        """The caller stopped waiting for ``job``: take it back if none of it was written."""
        if job.cancelled:
            return
        job.cancelled = True
        if not job.future.done():
            job.future.cancel()
        if self._jobs.get(job.id) is not job:
            return  # reported already
        slot = job.slot
        if slot is None:
            self._planner.withdraw(job.id)  # queued (or waiting for a retry): nothing of it on the way
        elif slot.connection.withdraw(slot.token):  # on a connection that had not started it
            slot.token = slot.job = job.slot = None
            self._planner.withdraw(job.id)
        else:
            return  # on its way: it finishes, and its report is dropped (_finished)
        del self._jobs[job.id]
        self._schedule()

    # --- the planner's decisions -----------------------------------------------------------------

    def _schedule(self):
        """The decisions' turn, soon (once however many events ask for it)."""
        if self._soon is None and self._loop is not None:
            self._soon = self._loop.call_soon(self._decide)

    @_guarded
    def _decide(self):
        self._soon = None
        if not self._closing:
            planner = self._planner
            while True:
                conn = planner.next_quit()
                if conn is not None:
                    self._quit(conn)
                    continue
                send = planner.next_send()
                if send is not None:
                    self._send(*send)
                    continue
                start = planner.next_open()
                if start is not None:
                    self._open(*start)
                    continue
                break
        self._report()
        self._arm()

    def _report(self):
        for report_id, status, why, records, attempts in self._planner.take_reports():
            job = self._jobs.pop(report_id, None)
            if job is not None and not job.future.done():
                job.future.set_result(_pool_results(status, why, records, attempts, job.to_addrs))

    def _arm(self):
        self._timer.set(None if self._closing else self._planner.wake_in(), self._decide)

    def _spawn(self, coro):
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- connections ------------------------------------------------------------------------------

    def _engine(self):
        engine = _lmtp._Conn(self.local_hostname, self._timeout_seconds(), implicit_tls=self._implicit_tls,
                             strict_replies=self._strict_replies, starttls=self._starttls,
                             auth_user=self._auth[0], auth_password=self._auth[1],
                             auth_allow_plaintext=self._auth[2])
        _apply_tls(engine, *self._tls)
        if log.isEnabledFor(logging.DEBUG):
            engine.set_trace(_log_trace)
        return engine

    def _open(self, conn_id, server):
        slot = _Slot(conn_id)
        self._slots[conn_id] = slot
        slot.task = self._spawn(self._connect(slot, *self._servers[server]))

    async def _connect(self, slot, host, port):
        slot.engine = self._engine()
        try:
            connection = await _Connection.open(slot.engine, host, port, timeout=self._timeout_seconds(),
                                                source_address=self._source_address, tls_name=self._tls[5])
        except _lmtp.Error as err:  # the set-up failed: banner, LHLO, STARTTLS, AUTH
            status, why = err.args[0], err.args[1]
        except LMTPTimeoutError as err:
            status, why = "timeout", str(err)
        except socket.gaierror as err:
            status, why = "resolve", "cannot resolve %s: %s" % (host, err.strerror or err)
        except OSError as err:
            status, why = "connect", _connect_error(host, port, err)
        except Exception as err:  # (a port out of range...): this server cannot be reached
            status, why = "connect", "cannot connect to %s port %s: %s" % (host, port, err)
        else:
            slot.task = None
            if slot.gone:
                connection.close(_CLOSED)
                return
            slot.connection = connection
            connection.on_closed = lambda: self._lost(slot)
            self._planner.opened(slot.id)
            if not connection.alive:
                self._lost(slot)
            self._schedule()
            return
        slot.task = None
        if not slot.gone:
            slot.gone = True
            del self._slots[slot.id]
            self._planner.closed(slot.id, status, why)
            self._schedule()

    def _send(self, conn_id, message_id, indexes):
        slot = self._slots.get(conn_id)
        job = self._jobs[message_id]
        if slot is None or slot.connection is None or not slot.connection.alive:
            # It ended and the planner has not heard yet: the message goes back (nothing was sent).
            if slot is not None:
                slot.gone = True
                del self._slots[conn_id]
            self._planner.closed(conn_id, "closed", "the connection was closed")
            return
        rcpts = [job.rcpts[i] for i in indexes]
        try:
            token, future = slot.connection.submit(job.sender, rcpts, job.source, job.params, job.transfer,
                                                   keep=True)
        except _lmtp.Error as err:  # refused before anything was sent (an extension not offered...)
            self._planner.refused(conn_id, err.args[0], err.args[1])
            return
        except (TypeError, ValueError) as err:  # (what the checks in _enqueue did not see)
            self._planner.refused(conn_id, "invalid_argument", str(err))
            return
        slot.token, slot.job, job.slot = token, job, slot
        future.add_done_callback(lambda _, slot=slot, token=token: self._finished(slot, token))

    @_guarded
    def _finished(self, slot, token):
        """The engine reported the message in flight on ``slot``: to the planner."""
        if slot.gone or slot.token != token:
            return
        job = slot.job
        slot.token = slot.job = None
        if job is not None:
            job.slot = None
        self._planner.finished(slot.id, slot.engine, token)
        if job is not None and job.cancelled and self._planner.withdraw(job.id):
            self._jobs.pop(job.id, None)  # (a retry of a message nobody waits for)
        self._schedule()

    @_guarded
    def _lost(self, slot):
        """``slot``'s connection ended (a break, the end of QUIT): to the planner."""
        if slot.gone:
            return
        if slot.token is not None:
            self._finished(slot, slot.token)  # its report first (the engine gave it when it ended)
        slot.gone = True
        self._slots.pop(slot.id, None)
        why = slot.connection.why if slot.connection is not None else None
        if why is not None:
            self._planner.closed(slot.id, why.args[0], why.args[1])
        else:
            self._planner.closed(slot.id, "closed", "the connection was closed")
        self._schedule()

    def _quit(self, conn_id):
        slot = self._slots.get(conn_id)
        if slot is None or slot.connection is None:
            self._planner.closed(conn_id, "closed", "the connection was closed")
            return
        self._spawn(_goodbye(slot.connection))

    # --- closing ---------------------------------------------------------------------------------

    async def close(self):
        """Let the messages on a connection finish, end the others (results as far as known,
        the rest ``unknown``: "the pool was closed"), QUIT every connection and wait for it.
        The pool can be used again afterwards (new connections)."""
        if self._loop is None or self._closing:
            return
        self._closing = True
        try:
            for slot in list(self._slots.values()):
                if slot.task is not None:
                    slot.task.cancel()  # (its connection closes: opening, it carries nothing)
            while True:
                flying = [slot.connection.drain() for slot in self._slots.values()
                          if slot.token is not None and not slot.gone]
                if not flying:
                    break
                await asyncio.gather(*flying)
                await asyncio.sleep(0)  # their reports' callbacks
            self._planner.abandon("closed", _CLOSED)
            self._report()
            quits = [self._spawn(_goodbye(slot.connection)) for slot in self._slots.values()
                     if slot.connection is not None and slot.connection.alive]
            if quits:
                await asyncio.wait(quits, timeout=self._timeout_seconds())
        finally:
            ending = self._abort()
        if ending:
            await asyncio.wait(ending)  # (cancelled: they end at once)

    def _abort(self):
        """Everything ends now: connections dropped, every message not reported ends as closed."""
        for slot in self._slots.values():
            slot.gone = True
            if slot.task is not None:
                slot.task.cancel()
            if slot.connection is not None:
                slot.connection.close(_CLOSED)
        self._slots.clear()
        ending = list(self._tasks)
        for task in ending:
            task.cancel()
        self._planner.abandon("closed", _CLOSED)
        self._report()
        for job in self._jobs.values():  # (none: the planner reported each)
            if not job.future.done():
                job.future.set_result(_pool_results("closed", _CLOSED, [], [], job.to_addrs))
        self._jobs.clear()
        self._planner = self._new_planner()
        if self._soon is not None:
            self._soon.cancel()
            self._soon = None
        if self._timer is not None:
            self._timer.cancel()
        self._closing = False
        return ending

    @property
    def connections(self):
        """Connections open or opening now."""
        return len(self._slots)


async def _goodbye(connection):
    """QUIT, its reply, and the connection closed."""
    engine = connection._conn
    try:
        await connection.job(engine.start_quit, lambda: not engine.is_open)
    except (_lmtp.Error, SMTPServerDisconnected):
        pass
    finally:
        connection.close("the connection was closed after QUIT")


def _connect_error(host, port, err):
    text = os.strerror(err.errno) if err.errno else str(err)
    if host.startswith("/"):
        return "cannot connect to unix socket %s: %s" % (host, text)
    return "cannot connect to %s port %s: %s" % (host, port, text)


AsyncPool.__module__ = "lmtp"  # documented and re-exported as lmtp.AsyncPool
