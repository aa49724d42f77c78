"""The asyncio LMTP client: ``lmtp.AsyncLMTP``.

The same engine as ``lmtp.LMTP``, driven by the event loop instead of a
blocking socket: an ``asyncio.Protocol`` over the loop's own transport feeds
the engine what the server sends and writes what the engine gives, and the
engine's deadline is a timer of the loop. No thread is involved, so it runs on
any loop (uvloop's too).

    async with lmtp.AsyncLMTP("/run/dovecot/lmtp") as s:
        results = await s.deliver("me@example.org", ["alice@example.org"], msg)
        refused = await s.sendmail("me@example.org", ["bob@example.org"], msg)

Deliveries awaited by several tasks at once on one connection are queued on
the engine and pipelined, each with its own results. A task cancelled while it
awaits ``deliver`` takes its message back if none of it went out yet;
once some of it did, the only way to abandon it is to close the connection:
the other deliveries in flight on it then end as the connection's break
(``SMTPServerDisconnected``, their recipients ``unknown``).
"""

import asyncio
import logging
import socket

from . import _lmtp
from . import (LMTPTimeoutError, SMTPAuthenticationError, SMTPConnectError, SMTPException, SMTPHeloError,
               SMTPNotSupportedError, SMTPResponseException, SMTPServerDisconnected, _BROKEN, _DEFAULT_TIMEOUT,
               _LONGEST_TIMEOUT, _apply_tls, _batch, _check_encoding, _default_hostname, _delivered, _error, _pair, _params, _quoteaddr,
               _results, _sendmail_broken, _sendmail_recipients, _sendmail_refused, _source, _trace_text, _unsent, log)

__all__ = ["AsyncLMTP"]

#: The port AsyncLMTP connects to by default (24: LMTP's usual port, as Dovecot's).
AIO_PORT = 24

# A timer that fires before the engine's deadline only costs a look: it fires a little after.
_TIMER_SLACK = 0.001


class _Timer:
    """One ``loop.call_at`` timer for a deadline given in seconds from now (the core's clock
    never crosses over: only the time left does). Kept at the earliest moment asked for: an
    earlier deadline replaces it, a later one waits for it to fire (its callback sets the next).
    It holds its callback only while set (no reference cycle with its owner)."""

    __slots__ = ("_loop", "_handle", "_at")

    def __init__(self, loop):
        self._loop = loop
        self._handle = None
        self._at = None

    def set(self, left, fire):
        """``fire()`` ``left`` seconds from now (a little after); ``left`` None: no timer."""
        if left is None:
            self.cancel()
            return
        when = self._loop.time() + left + _TIMER_SLACK
        if self._handle is not None:
            if self._at <= when:
                return  # it fires first, and sets the next one then
            self._handle.cancel()
        self._at = when
        self._handle = self._loop.call_at(when, self._on_time, fire)

    def cancel(self):
        if self._handle is not None:
            self._handle.cancel()
            self._handle = self._at = None

    def _on_time(self, fire):
        self._handle = self._at = None
        fire()


class _Connection(asyncio.Protocol):
    """One LMTP connection: the engine (``_lmtp._Conn``) over the loop's transport.

    The piece the smtplib-shaped ``AsyncLMTP`` (and a pool) is made of: ``open`` connects and
    waits for the set-up, ``deliver_one`` submits one message and awaits its report,
    ``alive`` and ``idle`` say what it can take.
    """

    def __init__(self, conn, loop, tls_name, local):
        self._conn = conn
        self._loop = loop
        self._tls_name = tls_name
        self._local = local
        self._transport = None
        self._paused = False
        self._waiters = {}  # token -> future of (status, why, records)
        self._job = None  # future of the set-up, STARTTLS, AUTH or QUIT under way: its _lmtp.Error or None
        self._job_done = None  # () -> bool: the job has ended
        self._timer = _Timer(loop)
        self._closed = False
        self._why = None  # why it ended (an _lmtp.Error), once it has
        #: Called (soon, from the loop, once) when the connection has ended, after the futures of
        #: the deliveries it ended were given their reports.
        self.on_closed = None

    # --- opening ---------------------------------------------------------------------------

    @classmethod
    async def open(cls, conn, host, port, *, timeout, source_address=None, tls_name=None):
        """Connect (TCP, or a unix socket for a host starting with "/") and wait for the set-up
        (banner, LHLO, STARTTLS and AUTH as ``conn``'s options say). Raises ``_lmtp.Error``
        for a set-up that failed (the connection is closed), OSError and LMTPTimeoutError for a
        connection that could not be made."""
        loop = asyncio.get_running_loop()
        local = host.startswith("/")
        if tls_name is None:
            tls_name = "" if local else host
        self = cls(conn, loop, tls_name, local)
        self._begin_job(lambda: not self._conn.busy)
        job = self._job
        try:
            if local:
                made = loop.create_unix_connection(lambda: self, host)
            else:
                made = loop.create_connection(lambda: self, host, port, local_addr=source_address)
            try:
                await asyncio.wait_for(made, timeout)
            except asyncio.TimeoutError:
                raise LMTPTimeoutError("connecting to %s timed out after %g s" % (
                    host if local else "%s:%s" % (host, port), timeout)) from None
            error = await job
        except BaseException:
            self.close("the connection was abandoned while it opened")
            raise
        if error is not None:
            self.close()
            raise error
        return self

    # --- what it can take --------------------------------------------------------------------

    @property
    def alive(self):
        """True while the connection is open and has not failed (it takes deliveries)."""
        return not self._closed and self._conn.is_open

    @property
    def idle(self):
        """True when it is alive with nothing under way (no delivery, no job)."""
        return self.alive and not self._waiters and self._job is None and not self._conn.pending

    @property
    def pending(self):
        """Deliveries submitted and not yet reported."""
        return len(self._waiters)

    @property
    def why(self):
        """The ``_lmtp.Error`` that ended the connection, or None."""
        return self._why

    # --- deliveries ------------------------------------------------------------------------------

    def submit(self, sender, rcpts, source, params=None, transfer="auto", canonical=False, keep=False):
        """Queue one message on the engine; returns (token, future of (status, why, records)).
        Its first bytes go out now when the engine can start it. ``keep``: the engine's report is
        kept for a pool's planner (``records`` is None)."""
        if not self.alive:
            raise self._disconnected()
        token = self._conn.submit(sender, rcpts, source, params, transfer, canonical, keep)
        future = self._loop.create_future()
        self._waiters[token] = future
        self._run(self._conn.process)
        return token, future

    async def wait(self, token, future):
        """The report of a message submitted: (status, why, records). Cancelled, the message is
        withdrawn if none of it went out, else the connection is closed."""
        try:
            return await future
        except asyncio.CancelledError:
            self.cancel(token)
            raise

    async def deliver_one(self, sender, rcpts, source, params=None, transfer="auto", canonical=False):
        """Deliver one message: its (status, why, records) as the core reports them ("ok" and a
        record per recipient; else the status that ended it)."""
        return await self.wait(*self.submit(sender, rcpts, source, params, transfer, canonical))

    def cancel(self, token):
        """Abandon a message submitted: withdrawn when none of it went out, else the connection
        is closed (the others in flight on it end as its break). Nothing for one reported."""
        if self._waiters.pop(token, None) is None:
            return
        if not self._conn.withdraw(token):
            self.close("the connection was closed: a delivery was cancelled after it began")

    def withdraw(self, token):
        """Take back a message submitted none of which went out: True, and it is forgotten
        (its future is never done). False when some of it went out: it goes on."""
        if token not in self._waiters or not self._conn.withdraw(token):
            return False
        del self._waiters[token]
        self._arm()
        return True

    async def drain(self):
        """Wait until every delivery submitted so far is reported."""
        while self._waiters:
            await asyncio.wait(list(self._waiters.values()))

    # --- jobs: the set-up, STARTTLS, AUTH, QUIT ------------------------------------------------

    def _begin_job(self, done):
        self._job = self._loop.create_future()
        self._job_done = done

    async def job(self, start, done=None):
        """Start a job (``start()`` may raise ``_lmtp.Error``: nothing was sent) and await its
        end: None, or the ``_lmtp.Error`` it ended with."""
        if not self.alive:
            raise self._disconnected()
        await self.drain()
        start()
        self._begin_job(done or (lambda: not self._conn.busy))
        job = self._job
        self._run(None)
        return await job

    def _check_job(self):
        job = self._job
        if job is None:
            return
        if job.done():  # (its awaiter was cancelled)
            self._job = None
            return
        error = None
        if self._why is not None or self._closed:
            error = self._why
            if error is None:
                error = _lmtp.Error("closed", "the connection was closed", 0)
        elif self._transport is None or not self._job_done():
            return
        else:
            args = self._conn.take_job_error()
            error = _lmtp.Error(*args) if args is not None else None
        self._job = None
        job.set_result(error)

    # --- closing --------------------------------------------------------------------------------

    def close(self, why="the connection was closed"):
        """Drop the connection without QUIT: what was in flight ends with ``why`` (recipients
        unknown). Safe to call more than once."""
        if not self._closed:
            self._closed = True
            if self._why is None and self._conn.is_open:
                self._why = _lmtp.Error("closed", why, 0)
            self._conn.close(why)
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.abort()
        self._settle()

    def _disconnected(self):
        why = self._why.args[1] if self._why is not None else "please run connect() first"
        return SMTPServerDisconnected(why)

    # --- asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport):
        if self._closed:
            transport.abort()
            return
        self._transport = transport
        self._run(self._conn.open, self._tls_name, self._local)

    def data_received(self, data):
        self._run(self._conn.feed, data)

    def eof_received(self):
        self._run(self._conn.feed, b"")
        return False  # the transport closes itself

    def connection_lost(self, exc):
        self._transport = None
        if self._conn.is_open:  # the engine says what was lost, and what it was waiting for
            self._run(self._conn.feed, b"")
        self.close("the connection was lost")

    def pause_writing(self):
        self._paused = True

    def resume_writing(self):
        self._paused = False
        self._run(None)

    # --- the engine's turn ------------------------------------------------------------------------

    def _run(self, call, *args):
        """One call into the engine, then what follows from it: its output written, the
        deliveries it finished reported, the job checked, the timer set."""
        try:
            if call is not None:
                call(*args)
            self._flush()
        except _lmtp.Error as err:
            self._broke(err)
        self._settle()

    def _flush(self):
        while not self._paused and self._transport is not None:
            out = self._conn.output()
            if not out:
                return
            self._transport.write(out)  # (may pause_writing)
            self._conn.output_done(len(out))

    def _broke(self, err):
        if self._why is None:
            self._why = err
        if self._conn.is_open:
            self._conn.close(err.args[1])
        self._closed = True
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.abort()

    def _settle(self):
        for token, status, why, records in self._conn.take_done():
            future = self._waiters.pop(token, None)
            if future is not None and not future.done():
                future.set_result((status, why, records))
        self._check_job()
        self._arm()
        if self._closed and self.on_closed is not None:
            callback, self.on_closed = self.on_closed, None
            self._loop.call_soon(callback)

    def _arm(self):
        self._timer.set(None if self._closed else self._conn.deadline_in(), self._on_timer)

    def _on_timer(self):
        self._run(self._conn.process)


def _starttls_mode(starttls):
    if starttls is False or starttls is None:
        return "off"
    if starttls is True:
        return "required"
    if starttls in ("off", "opportunistic", "required"):
        return starttls
    raise ValueError("starttls is True, False, 'opportunistic' or 'required', not %r" % (starttls,))


class AsyncLMTP:
    """An LMTP connection for asyncio, shaped like ``lmtp.LMTP``.

    ``host`` is a name or address (TCP) or a unix socket path starting with
    "/". ``async with`` connects (banner, LHLO, and STARTTLS and AUTH when
    asked: ``starttls=True`` requires it, ``"opportunistic"`` uses it when
    offered; ``user``/``password`` authenticate) and sends QUIT at the end.
    ``timeout`` is in seconds, for connecting, for each reply and each write;
    ``None`` means the longest the library holds. The TLS settings
    (``context``, ``cafile``, ``capath``, ``certfile``, ``keyfile``,
    ``server_hostname``, ``insecure``) are those of ``LMTP.starttls``.

    ``deliver``, ``deliver_many`` and ``sendmail`` return and raise what
    ``LMTP``'s do; several tasks may await them at once on one connection.
    """

    def __init__(self, host="", port=AIO_PORT, *, local_hostname=None, timeout=socket._GLOBAL_DEFAULT_TIMEOUT,
                 source_address=None, starttls=False, context=None, cafile=None, capath=None, certfile=None,
                 keyfile=None, server_hostname=None, insecure=False, user=None, password=None,
                 auth_mechanism=None, allow_plaintext=False, implicit_tls=False, strict_replies=False,
                 max_in_flight=0):
        self.host = host
        self.port = port
        self.local_hostname = local_hostname if local_hostname is not None else _default_hostname()
        self.timeout = timeout
        self.source_address = source_address
        self.esmtp_features = {}
        self.ehlo_resp = None
        #: The results of the last ``deliver`` or ``sendmail`` that finished.
        self.last_results = []
        self._starttls = _starttls_mode(starttls)
        self._tls = (keyfile, certfile, context, cafile, capath, server_hostname, insecure)
        self._user = user
        self._password = password
        self._mechanism = auth_mechanism or ""
        #: Let a password go with PLAIN or LOGIN over unencrypted TCP (``login()`` and ``user=``).
        self.allow_plaintext_auth = bool(allow_plaintext)
        self._implicit_tls = implicit_tls
        self.strict_replies = bool(strict_replies)
        self._max_in_flight = max_in_flight
        self._connection = None
        self._conn = None

    # --- context manager ----------------------------------------------------------------------

    async def __aenter__(self):
        if self.host and self._connection is None:
            await self.connect()
        return self

    async def __aexit__(self, exc_type, exc, tb):
        try:
            if exc_type is None and self.alive:
                code, message = await self.quit()
                if not 200 <= code < 300:
                    raise SMTPResponseException(code, message)
        except SMTPServerDisconnected:
            pass
        finally:
            self.close()

    # --- connection -----------------------------------------------------------------------------

    def _timeout_seconds(self):
        t = self.timeout
        if t is socket._GLOBAL_DEFAULT_TIMEOUT:
            t = socket.getdefaulttimeout()
            return _DEFAULT_TIMEOUT if t is None else t
        return _LONGEST_TIMEOUT if t is None else t

    @property
    def alive(self):
        """True while connected and not broken."""
        return self._connection is not None and self._connection.alive

    @property
    def idle(self):
        """True when connected with nothing under way."""
        return self._connection is not None and self._connection.idle

    async def connect(self, host=None, port=None):
        """Connect and wait for the set-up; returns the banner as ``(code, message)``.

        Raises what ``LMTP`` raises: SMTPConnectError for a refused banner,
        SMTPHeloError for a refused LHLO, OSError when the connection cannot
        be made, LMTPTimeoutError, LMTPTLSError / LMTPCertificateError for
        STARTTLS, SMTPAuthenticationError for refused credentials.
        """
        if host is not None:
            self.host = host
        if not self.host:
            self.host = "localhost"
        if port is not None:
            self.port = port
        self.close()
        conn = _lmtp._Conn(self.local_hostname, self._timeout_seconds(), implicit_tls=self._implicit_tls,
                           strict_replies=self.strict_replies, starttls=self._starttls,
                           auth_user=self._user or "", auth_password=self._password or "",
                           auth_mechanism=self._mechanism, auth_allow_plaintext=self.allow_plaintext_auth,
                           max_in_flight=self._max_in_flight)
        _apply_tls(conn, *self._tls)
        if log.isEnabledFor(logging.DEBUG):
            conn.set_trace(_log_trace)
        self._conn = conn
        try:
            self._connection = await _Connection.open(conn, self.host, int(self.port or AIO_PORT),
                                                      timeout=self._timeout_seconds(),
                                                      source_address=self.source_address)
        except _lmtp.Error as err:
            raise self._setup_error(err) from None
        self._hello_done()
        return _pair(conn.banner)

    def _setup_error(self, err):
        conn = self._conn
        status = err.args[0]
        if status == "rejected":
            if not conn.banner.completion:
                return SMTPConnectError(conn.banner.code, conn.banner.message)
            return SMTPHeloError(conn.last_reply.code, conn.last_reply.message)
        if status == "auth" and conn.last_reply.code:
            return SMTPAuthenticationError(conn.last_reply.code, conn.last_reply.message)
        return _error(err)

    def _hello_done(self):
        conn = self._conn
        self.ehlo_resp = conn.last_reply.message if conn.last_reply.code else None
        self.esmtp_features = {keyword.lower(): params for keyword, params in conn.capabilities}

    def has_extn(self, opt):
        """True if the server offered the extension ``opt`` (case-insensitive)."""
        return opt.lower() in self.esmtp_features

    def close(self):
        """Close the connection without QUIT; deliveries in flight end as a break."""
        if self._connection is not None:
            self._connection.close()

    async def quit(self):
        """Wait for the deliveries under way, send QUIT, close; returns its reply as ``(code, message)``."""
        connection = self._live()
        try:
            error = await connection.job(self._conn.start_quit, lambda: not self._conn.is_open)
        except _lmtp.Error as err:
            error = err
        reply = self._conn.last_reply
        self.esmtp_features = {}
        self.close()
        if error is not None and error.args[0] != "closed":
            raise _error(error)
        if not reply.code:  # it hung up without a word, which smtplib reports so
            raise SMTPServerDisconnected("Connection unexpectedly closed")
        return _pair(reply)

    def _live(self):
        if self._connection is None or not self._connection.alive:
            if self._connection is not None and self._connection.why is not None:
                raise _error(self._connection.why)
            raise SMTPServerDisconnected("please run connect() first")
        return self._connection

    # --- TLS and authentication -------------------------------------------------------------------

    async def starttls(self, keyfile=None, certfile=None, context=None, *, cafile=None, capath=None,
                       server_hostname=None, insecure=False):
        """STARTTLS, the handshake, and LHLO again, as ``LMTP.starttls`` (after the deliveries
        under way). Returns the reply to STARTTLS as ``(code, message)``."""
        connection = self._live()
        if not self.has_extn("starttls"):
            raise SMTPNotSupportedError("STARTTLS extension not supported by server.")
        _apply_tls(self._conn, keyfile, certfile, context, cafile, capath, server_hostname, insecure)
        try:
            error = await connection.job(self._conn.start_starttls)
        except _lmtp.Error as err:
            error = err
        if error is not None:
            raise _error(error)
        reply = self._conn.last_reply
        if not self._conn.tls_active:
            raise SMTPResponseException(reply.code, reply.message)
        self.ehlo_resp = None
        self.esmtp_features = {}
        if reply.completion:
            self._hello_done()
        return _pair(self._conn.starttls_reply)

    async def login(self, user, password, *, initial_response_ok=True, allow_plaintext=None):
        """AUTH as ``LMTP.login`` (after the deliveries under way); returns ``(235, message)``."""
        connection = self._live()
        if not self.has_extn("auth"):
            raise SMTPNotSupportedError("SMTP AUTH extension not supported by server.")
        if allow_plaintext is None:
            allow_plaintext = self.allow_plaintext_auth
        try:
            error = await connection.job(lambda: self._conn.start_auth(user, password, "", allow_plaintext))
        except _lmtp.Error as err:
            error = err
        if error is not None:
            if error.args[0] == "auth" and self._conn.last_reply.code:
                refused = self._conn.last_reply
                raise SMTPAuthenticationError(refused.code, refused.message)
            if error.args[0] == "not_advertised":
                raise SMTPException("No suitable authentication method found.")
            raise _error(error)
        return _pair(self._conn.last_reply)

    # --- deliveries --------------------------------------------------------------------------------

    def _prepare(self, from_addr, to_addrs, msg, mail_options, rcpt_options):
        if isinstance(to_addrs, str):
            to_addrs = [to_addrs]
        sender = _quoteaddr(from_addr)
        rcpts = [_quoteaddr(a) for a in to_addrs]
        return to_addrs, sender, rcpts, _params(mail_options, rcpt_options), _source(msg)

    def _refuse_smtputf8(self, params):
        """SMTPNotSupportedError, as LMTP (and smtplib) raise it before anything is sent, when
        SMTPUTF8 is asked for and not offered (the other options are the engine's to refuse)."""
        if params is not None and params.smtputf8 and not self.has_extn("smtputf8"):
            raise SMTPNotSupportedError("SMTPUTF8 not supported by server")

    async def deliver(self, from_addr, to_addrs, msg, mail_options=(), rcpt_options=(), *, transfer="auto",
                      canonical=False):
        """Deliver ``msg``; every recipient's ``Result``, in order, as ``LMTP.deliver``.

        When the session breaks the exception carries ``results`` (those
        without a verdict ``unknown``). Other tasks may deliver on the same
        connection meanwhile: the messages are pipelined.
        """
        to_addrs, sender, rcpts, params, source = self._prepare(from_addr, to_addrs, msg, mail_options,
                                                                rcpt_options)
        try:
            connection = self._live()
        except SMTPServerDisconnected as err:  # no connection: nothing was sent
            self.last_results = _unsent(to_addrs, str(err))
            err.results = list(self.last_results)
            raise
        self._refuse_smtputf8(params)
        _check_encoding(sender, rcpts, params, "ascii")
        status, why, records = await connection.deliver_one(sender, rcpts, source, params, transfer, canonical)
        if status == "ok":
            results = self.last_results = _results(records)
            return list(results)
        results = self.last_results = _delivered(status, why, records, to_addrs)
        exc = _error(_lmtp.Error(status, why, 0), from_addr)
        exc.results = list(results)
        raise exc

    async def deliver_many(self, messages, mail_options=(), rcpt_options=(), *, transfer="auto"):
        """Deliver many messages, pipelined; per message the list of its ``Result``, as
        ``LMTP.deliver_many`` (a message refused before it was sent gets ``unknown`` results;
        a break raises with ``results``)."""
        batch = _batch(messages)
        params = _params(mail_options, rcpt_options)
        try:
            connection = self._live()
        except SMTPServerDisconnected as err:  # no connection: nothing was sent
            err.results = [_unsent(t, str(err)) for _, _, _, t in batch]
            if err.results:
                self.last_results = list(err.results[-1])
            raise
        self._refuse_smtputf8(params)
        sources = []
        for sender, rcpts, m, _ in batch:
            _check_encoding(sender, rcpts, params, "ascii")
            sources.append(_source(m))
        submitted = []
        try:
            for (sender, rcpts, _, _), source in zip(batch, sources):
                submitted.append(connection.submit(sender, rcpts, source, params, transfer))
            done = [await future for _, future in submitted]
        except BaseException:
            for token, _ in submitted:
                connection.cancel(token)
            raise
        results = [_delivered(status, why, records, to_addrs)
                   for (status, why, records), (_, _, _, to_addrs) in zip(done, batch)]
        if results:
            self.last_results = list(results[-1])
        broken = [(status, why) for status, why, _ in done if status in _BROKEN]
        if broken:
            exc = _error(_lmtp.Error(broken[0][0], broken[0][1], 0))
            exc.results = results
            raise exc
        return results

    async def sendmail(self, from_addr, to_addrs, msg, mail_options=(), rcpt_options=()):
        """smtplib's sendmail, as ``LMTP.sendmail``: the dict of the recipients that did not get
        the message; SMTPSenderRefused, SMTPRecipientsRefused or LMTPDataError when nobody did."""
        to_addrs = _sendmail_recipients(from_addr, to_addrs, mail_options, rcpt_options)
        try:
            results = await self.deliver(from_addr, to_addrs, msg, mail_options, rcpt_options)
        except SMTPServerDisconnected as err:
            return _sendmail_broken(err)
        return _sendmail_refused(results, from_addr, lambda: None)


def _log_trace(direction, line):
    log.debug("%s", _trace_text(direction, line))


AsyncLMTP.__module__ = "lmtp"  # documented and re-exported as lmtp.AsyncLMTP
