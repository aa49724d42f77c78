"""lmtp.Pool: many messages over up to K connections, temporary failures retried.

    import lmtp
    with lmtp.Pool("/run/dovecot/lmtp", connections=8) as pool:
        for results in pool.deliver_many((sender, [rcpt], msg) for sender, rcpt, msg in queue):
            for r in results:
                print(r.address, r.outcome, r.code, r.text, r.attempts)

The work is liblmtp's delivery pool (lmtp.h, "a delivery pool", rules P1-P9),
run without the GIL from the first connect to the last verdict.
"""

import logging
import socket

from . import _lmtp
from . import (LMTP, _apply_tls, _batch, _check_encoding, _default_hostname, _delivered, _params, _source,
               _trace_text, _weak_trace, log)

#: The text of a recipient without a verdict when the pool has no other to give: its
#: connection broke after the message's end was written (it may have been delivered).
_NO_VERDICT = "the connection broke after the message was sent: no verdict came (it may have been delivered)"


class Pool:
    """Delivers messages over up to ``connections`` connections to a server, in parallel.

    ``host``/``port`` name the server (a ``host`` starting with ``/`` is a unix
    socket); ``hosts``, a list of ``(host, port)`` pairs or socket paths, are
    tried after it, in order, when it cannot be connected. No connection is made
    before ``deliver_many``; connections stay open between calls (each closes
    after ``max_messages_per_connection`` messages, ``max_connection_age``
    seconds, or ``idle_timeout`` seconds without work; 0 or None: no such limit)
    until ``close()`` or the end of a ``with`` block.

    Each connection carries one message at a time. A recipient refused with a
    4xx is sent again, in a new transaction with only such recipients, up to
    ``retries`` times, after ``retry_delay`` seconds doubled at each re-send (at
    most ``retry_delay_max``); then it keeps its last 4xx. When a connection
    breaks, only its message is touched: before the message's end was written
    the server cannot have it and it goes again on another connection (a message
    that broke ``retries + 1`` connections in a row is given up, its recipients
    unknown); after, its recipients without a verdict are ``unknown`` and are not
    sent again (``resend_unknown=True`` sends them again: that may deliver twice).
    At most ``mailbox_concurrency`` messages are in flight at once to one
    address (Dovecot's lmtp_user_concurrency_limit; 0 or None: no limit).

    The connection settings are those of ``lmtp.LMTP``: ``local_hostname``
    (LHLO), ``source_address``, ``timeout`` (seconds, for each reply and each
    write), ``strict_replies``; ``starttls=True`` requires STARTTLS on every
    connection (``"opportunistic"``: when offered), ``implicit_tls=True`` speaks
    TLS from the first byte (as ``LMTP_SSL``), both verified with ``context``,
    ``cafile``, ``capath``, ``keyfile``/``certfile``, ``server_hostname``,
    ``insecure`` as ``LMTP.starttls`` takes them; ``user``/``password`` log in
    on every connection as ``LMTP.login`` does (``allow_plaintext`` as there).

    A Pool is used by one thread at a time: a second thread calling it meanwhile
    gets ``RuntimeError``. The connections' dialogue goes to the ``logging``
    logger ``"lmtp"`` at DEBUG, as ``LMTP``'s does.
    """

    # The connection timeout as LMTP reads it (its `timeout` attribute).
    _timeout_seconds = LMTP._timeout_seconds

    def __init__(self, host=None, port=24, connections=4, retries=3, *, retry_delay=1.0, retry_delay_max=60.0,
                 max_messages_per_connection=100, max_connection_age=300.0, idle_timeout=10.0,
                 mailbox_concurrency=2, resend_unknown=False, hosts=None, local_hostname=None,
                 source_address=None, timeout=socket._GLOBAL_DEFAULT_TIMEOUT, strict_replies=False,
                 starttls=False, implicit_tls=False, context=None, keyfile=None, certfile=None, cafile=None,
                 capath=None, server_hostname=None, insecure=False, user=None, password=None,
                 allow_plaintext=False):
        servers = _servers(host, port, hosts, "lmtp.Pool")
        self.timeout = timeout
        self.local_hostname = local_hostname if local_hostname is not None else _default_hostname()
        local = source_address or ("", 0)
        self._core = _lmtp.Pool(self.local_hostname, self._timeout_seconds(), None, local[0] or "",
                                int(local[1] or 0), implicit_tls=bool(implicit_tls),
                                strict_replies=bool(strict_replies), connections=connections, retries=retries,
                                retry_delay=retry_delay, retry_delay_max=retry_delay_max,
                                max_messages_per_connection=max_messages_per_connection or 0,
                                max_connection_age=max_connection_age or 0, idle_timeout=idle_timeout or 0,
                                mailbox_concurrency=mailbox_concurrency or 0, resend_unknown=bool(resend_unknown))
        for server_host, server_port in servers:
            path = server_host.startswith("/")
            self._core.add_server(server_host, 0 if path else int(server_port))
        if starttls or implicit_tls or context is not None or cafile or capath or certfile:
            _apply_tls(self._core, keyfile, certfile, context, cafile, capath, server_hostname, insecure)
        if starttls:
            self._core.set_starttls(starttls != "opportunistic")
        if user is not None:
            self._core.set_auth(user, password or "", "", bool(allow_plaintext))
        self._tracing = False

    def __enter__(self):
        return self

    def __exit__(self, *args):
        self.close()

    def close(self):
        """Close every connection (without QUIT). A later ``deliver_many`` opens new ones."""
        self._core.close()

    def _trace(self, direction, line):
        log.debug("%s", _trace_text(direction, line))

    def _sync_trace(self):
        want = log.isEnabledFor(logging.DEBUG)
        if want != self._tracing:
            self._core.set_trace(_weak_trace(self) if want else None)
            self._tracing = want

    def deliver_many(self, messages, mail_options=(), rcpt_options=(), *, transfer="auto"):
        """Deliver every message; return, per message in the order given, the list
        of its recipients' ``Result`` (in the order given), as
        ``LMTP.deliver_many`` does. Each ``Result`` also says in ``attempts``
        how many transactions included the recipient (0: it was never sent).

        ``messages`` is an iterable of ``(from_addr, to_addrs, msg)``, ``msg``
        in any form ``LMTP.deliver`` takes; ``mail_options``, ``rcpt_options``
        and ``transfer`` apply to every message (SIZE is each message's own when
        the server offers SIZE). Messages in memory (bytes, str, an
        ``email.message.Message``) are read in place and can be sent again for
        a retry; one given as a file or an iterable is read once, with the GIL,
        and is not retried (its 4xx recipients keep their 4xx).

        Bad input in any message raises ValueError (or TypeError,
        UnicodeEncodeError, as ``LMTP.deliver_many``) before anything is sent.
        Nothing else raises: a message the library refuses to send (an option a
        server does not offer, over its SIZE) and, when no server can be
        connected (after ``retries + 1`` rounds over the servers, waiting
        ``retry_delay`` doubled between rounds), every message not sent get one
        ``Result`` per recipient with ``outcome`` "unknown", code 0, attempts 0
        and the reason (the connect error) as ``text``: nothing of them was
        sent, trying again later is safe.
        """
        batch = _batch(messages)
        params = _params(mail_options, rcpt_options)
        wire = []
        for sender, rcpts, msg, _ in batch:
            _check_encoding(sender, rcpts, params, "ascii")
            wire.append((sender, rcpts, _source(msg)))
        self._sync_trace()
        done = self._core.deliver_many(wire, params, transfer)
        return [_pool_results(status, why, records, attempts, to_addrs)
                for (status, why, records, attempts), (_, _, _, to_addrs) in zip(done, batch)]


def _servers(host, port, hosts, who):
    """The (host, port) list of a pool: ``host`` first, then ``hosts`` (pairs or socket paths)."""
    servers = [(host, port)] if host else []
    for server in hosts or ():
        servers.append((server, 0) if isinstance(server, str) else tuple(server))
    if not servers:
        raise ValueError("%s needs a server: host, or hosts" % who)
    return servers


def _pool_results(status, why, records, attempts, to_addrs):
    """One message's ``Result`` list from a pool's report, ``attempts`` set (0: never sent)."""
    results = _delivered(status, why, records, to_addrs)
    for r, n in zip(results, attempts if records else [0] * len(results)):
        r.attempts = n
        if r.unknown and not r.text:
            r.text = why or _NO_VERDICT
            r.message = r.text.encode("utf-8", "replace")
    return results
