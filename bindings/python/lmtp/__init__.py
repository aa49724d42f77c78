"""An LMTP client (RFC 2033) that reads every recipient's reply.

``lmtp.LMTP`` is a drop-in for ``smtplib.LMTP``: the same methods, arguments,
return values and exceptions (smtplib's own classes, or subclasses of them).
Unlike it, it reads the one reply per recipient that an LMTP server sends after
the message, so the session never falls a reply behind, and ``sendmail``
reports the recipients refused after the message too.

    import lmtp
    with lmtp.LMTP("/run/dovecot/lmtp") as server:
        refused = server.sendmail("me@example.org", ["alice@example.org", "bob@example.org"], msg)
        for r in server.deliver("me@example.org", ["carol@example.org"], open("big.eml", "rb")):
            print(r.address, r.code, r.enhanced, r.text, r.ok)

Messages may be ``bytes``, ``str`` (ASCII, as smtplib), an
``email.message.Message``, a binary file object or an iterable of ``bytes``;
files and iterables stream in bounded memory. Every line end becomes CRLF.
The protocol work runs without the GIL: one connection per thread scales.

When the connection breaks after the message went out, no verdict the server
gave is lost: ``sendmail`` returns (the recipients without a verdict in its
dict as ``(421, why)``: retry them) unless nobody is known to have the message;
``deliver`` and ``deliver_many`` raise the break with ``results`` (those without
a verdict "unknown"); ``data``/``getreply`` give each recipient's reply or
``(421, why)``.

``lmtp.AsyncLMTP`` is the same client for asyncio (``lmtp/aio.py``): ``async with
lmtp.AsyncLMTP(host) as s: await s.deliver(...)``, many tasks pipelined on one
connection, no thread (an ``asyncio.Protocol`` over the engine's bytes-only mode).

``lmtp.Pool`` delivers many messages over up to K connections (a list of
servers, 4xx retried with a doubling delay, a break before a message's end sent
again, after it reported ``unknown``); ``lmtp.AsyncPool`` is the same pool for
asyncio (``lmtp/apool.py``): ``async with lmtp.AsyncPool(host, connections=8) as
pool: await pool.deliver(...)`` from any number of tasks at once. Both follow the
core's pool planner, so their policy is the same.

Servers that answer every recipient after the message in one multi-line reply,
a line each (Net::Server::Mail::LMTP), are read a line per recipient when the
lines carry different codes or the banner names Net::Server::Mail; a conforming
server is never read so. ``LMTP(..., strict_replies=True)`` turns that off.
"""

import copy
import email.generator
import email.message
import email.policy
import email.utils
import enum
import io
import logging
import re
import socket
import smtplib
import ssl
import sys
import time
import weakref

from . import _lmtp

__all__ = [
    "LMTP", "LMTP_SSL", "AsyncLMTP", "Pool", "AsyncPool", "Result", "LMTP_PORT", "Status",
    "LMTPTimeoutError", "LMTPProtocolError", "LMTPDataError", "LMTPTLSError", "LMTPCertificateError",
    "LMTPInsecureError", "SMTPAuthenticationError",
    "SMTPException", "SMTPNotSupportedError", "SMTPServerDisconnected", "SMTPResponseException",
    "SMTPSenderRefused", "SMTPRecipientsRefused", "SMTPDataError", "SMTPConnectError", "SMTPHeloError",
]

__version__ = _lmtp.library_version

#: liblmtp's statuses, the numbers of lmtp.h's lmtp_status (``Status.TIMEOUT == 8``), made
#: from the library's one status table. The errors raised name them in their message.
Status = enum.IntEnum("Status", [(name.upper(), value) for name, value, _code, _text in _lmtp.statuses],
                      module=__name__)

#: The port smtplib.LMTP uses by default (LMTP has no assigned port of its own).
LMTP_PORT = 2003

# smtplib's exceptions, so that `except smtplib.X` and `except lmtp.X` are the same.
SMTPException = smtplib.SMTPException
SMTPNotSupportedError = smtplib.SMTPNotSupportedError
SMTPServerDisconnected = smtplib.SMTPServerDisconnected
SMTPResponseException = smtplib.SMTPResponseException
SMTPSenderRefused = smtplib.SMTPSenderRefused
SMTPRecipientsRefused = smtplib.SMTPRecipientsRefused
SMTPDataError = smtplib.SMTPDataError
SMTPConnectError = smtplib.SMTPConnectError
SMTPHeloError = smtplib.SMTPHeloError
SMTPAuthenticationError = smtplib.SMTPAuthenticationError

# For a refusal liblmtp makes before anything is sent, the code a server would have answered with.
_LOCAL_CODE = {name: code for name, _value, code, _text in _lmtp.statuses if code}

log = logging.getLogger("lmtp")
_DEFAULT_TIMEOUT = _lmtp.default_timeout  # seconds: the library's default deadline
_LONGEST_TIMEOUT = 4294967.0  # seconds: the longest deadline the library holds


class LMTPTimeoutError(smtplib.SMTPServerDisconnected, TimeoutError):
    """A deadline passed while waiting for the server. The connection is closed.

    Both a ``TimeoutError`` (as smtplib's socket timeouts are) and an
    ``SMTPServerDisconnected``.
    """


class LMTPProtocolError(smtplib.SMTPServerDisconnected):
    """The server sent something that is not a valid reply where one was due.

    The connection is closed: it cannot be trusted to be in step any more.
    """


class LMTPDataError(smtplib.SMTPDataError):
    """No recipient got the message; at least one refused it after DATA.

    ``smtp_code``/``smtp_error`` are the first such refusal (what smtplib
    reports); ``recipients`` maps every recipient to its ``(code, message)``.
    """

    def __init__(self, code, msg, recipients):
        super().__init__(code, msg)
        self.recipients = recipients


class LMTPTLSError(smtplib.SMTPServerDisconnected, ssl.SSLError):
    """The TLS handshake (or a TLS record) failed. The connection is closed.

    An ``ssl.SSLError``, as smtplib's STARTTLS failures are, and an
    ``SMTPServerDisconnected``.
    """

    def __str__(self):
        return self.args[0] if self.args else ""


class LMTPCertificateError(LMTPTLSError, ssl.SSLCertVerificationError):
    """The server's certificate was refused; the message says why (expired,
    hostname mismatch, unable to get local issuer certificate...)."""


class LMTPInsecureError(smtplib.SMTPException):
    """A password would have gone over unencrypted TCP (PLAIN or LOGIN without
    TLS or a unix socket). Nothing was sent. Use ``starttls()`` first, or pass
    ``allow_plaintext=True`` to ``login()`` if the channel is trusted."""


class Result:
    """One recipient's outcome in a transaction.

    ``stage`` says where the verdict came from: ``"rcpt"`` (refused at RCPT),
    ``"data"`` (the reply after the message, or DATA's refusal), ``"mail"``
    (MAIL was refused, so nobody got it) or ``None`` (no verdict: the session
    broke first). ``code`` is the reply code (0 without a verdict),
    ``enhanced`` the enhanced status code as ``(class, subject, detail)`` or
    ``None``, ``text`` the reply text without it, ``message`` the reply text as
    smtplib gives it (bytes, lines joined by ``b"\\n"``). Without a verdict
    (``outcome`` "unknown") ``text`` and ``message`` say why the session ended
    when it broke under the call: such a recipient may or may not have the
    message; treat it as a temporary failure (retrying may deliver it twice,
    which is better than never). ``attempts``: how many transactions included
    the recipient (1 from ``LMTP``; ``Pool`` retries).
    """

    __slots__ = ("address", "stage", "code", "enhanced", "text", "message", "rcpt_code", "outcome", "attempts")

    def __init__(self, address, stage, code, enhanced, text, message, rcpt_code, outcome, attempts=1):
        self.address = address
        self.stage = stage
        self.code = code
        self.enhanced = enhanced
        self.text = text
        self.message = message
        self.rcpt_code = rcpt_code
        self.outcome = outcome
        self.attempts = attempts

    @property
    def ok(self):
        """True when the recipient got the message."""
        return self.outcome == "ok"

    @property
    def temporary(self):
        """True for a temporary failure (4xx): trying again later may work."""
        return self.outcome == "temporary"

    @property
    def permanent(self):
        """True for a permanent failure (5xx)."""
        return self.outcome == "permanent"

    @property
    def unknown(self):
        """True when the session broke before the server gave a verdict."""
        return self.outcome == "unknown"

    def __repr__(self):
        return "Result(%r, %s, %d, %r, %r)" % (self.address, self.stage, self.code, self.enhanced, self.text)


# ---------------------------------------------------------------------------
# errors from the library, as Python callers expect them

def _error(err, sender=None):
    """The exception a Python caller expects for an error of the library."""
    status, message, os_error = err.args
    if status == "timeout":
        return LMTPTimeoutError(message)
    if status in ("closed", "io", "not_connected", "aborted"):
        return SMTPServerDisconnected(message)
    if status == "protocol":
        return LMTPProtocolError(message)
    if status in ("bad_input", "line_too_long", "invalid_argument"):
        return ValueError(message)
    if status == "not_advertised":
        return SMTPNotSupportedError(message)
    if status == "too_big":
        return SMTPSenderRefused(_LOCAL_CODE[status], message.encode(), sender)
    if status == "resolve":
        return socket.gaierror(message)
    if status == "certificate":
        return LMTPCertificateError(message)
    if status == "tls":
        return LMTPTLSError(message)
    if status == "insecure":
        return LMTPInsecureError(message)
    if status == "connect":
        # OSError(errno, text) is ConnectionRefusedError, FileNotFoundError... as sockets raise them.
        return OSError(os_error, message) if os_error else OSError(message)
    return SMTPException(message)


def _raise(err, sender=None):
    raise _error(err, sender) from None


# The statuses of a session that ended under a call: the connection is gone.
_BROKEN = ("closed", "io", "timeout", "protocol", "tls")


def _results(records, why=None):
    """``Result`` objects from the core's; with ``why`` (the session broke), each
    recipient without a verdict has it as its text."""
    out = [Result(*r) for r in records]
    if why:
        for r in out:
            if r.outcome == "unknown":
                r.text = why
                r.message = why.encode("utf-8", "replace")
    return out


def _unsent(addresses, why):
    """The results of a call that could send nothing (there was no connection): every recipient
    without a verdict, the reason as its text."""
    return [Result(_quoteaddr(a), None, 0, None, why, why.encode("utf-8", "replace"), 0, "unknown") for a in addresses]


def _check_encoding(sender, rcpts, params, encoding):
    """UnicodeEncodeError, as smtplib, for an address that must be ASCII and is not (``encoding``
    unless the parameters ask for SMTPUTF8)."""
    if params is not None and params.smtputf8:
        encoding = "utf-8"
    for address in (sender, *rcpts):
        if not address.isascii():
            address.encode(encoding)


def _batch(messages):
    """deliver_many's messages checked: (sender, recipients, message, the caller's recipients)."""
    batch = []
    for from_addr, to_addrs, msg in messages:
        if isinstance(to_addrs, str):
            to_addrs = [to_addrs]
        batch.append((_quoteaddr(from_addr), [_quoteaddr(a) for a in to_addrs], msg, to_addrs))
    return batch


def _delivered(status, why, records, to_addrs):
    """One message's ``Result`` list from the core's report (status, why, records)."""
    if records or status == "ok":  # verdicts, or what the session knew when it ended
        return _results(records, why if status in _BROKEN else None)
    return _unsent(to_addrs, why)  # refused before anything of it was sent


def _refusal(result):
    """A recipient that did not get the message, as sendmail's dict says it:
    ``(code, message)``; one without a verdict (the connection broke before the
    server gave it) is a temporary failure, 421, as smtplib reports a closed
    connection: trying again may deliver it twice, but never loses it."""
    return (result.code, result.message) if result.code else (421, result.message)


def _pair(reply):
    return reply.code, reply.message


# ---------------------------------------------------------------------------
# sendmail's verdict from the results, for LMTP and AsyncLMTP alike

def _sendmail_recipients(from_addr, to_addrs, mail_options, rcpt_options):
    """The recipients as a list; SMTPRecipientsRefused({}) (nothing sent) for none."""
    if isinstance(to_addrs, str):
        to_addrs = [to_addrs]
    if not to_addrs:
        _check_inputs([from_addr], mail_options, rcpt_options)
        raise SMTPRecipientsRefused({})  # nobody to send to: nothing is sent
    return to_addrs


def _sendmail_broken(err):
    """sendmail when the session broke under the delivery (``err`` carries ``results``): the
    refused recipients when someone got the message, else the break raised."""
    results = getattr(err, "results", None)
    if not results:  # nothing was attempted (no connection)
        raise err
    refused = {r.address: _refusal(r) for r in results if not r.ok}
    if any(r.ok for r in results):
        return refused  # who got it did; the others are each a temporary failure
    # A RCPT answered with the server closing the connection (421) ends the session:
    # smtplib calls that a refusal of the recipients.
    if any(_lmtp.closes_connection(r.code) for r in results if r.stage == "rcpt"):
        raise SMTPRecipientsRefused(refused) from err
    err.recipients = refused
    raise err


def _sendmail_refused(results, from_addr, reset):
    """sendmail's dict of refused recipients, or the exception smtplib raises when nobody got
    the message (``reset()`` first, as smtplib sends RSET then)."""
    refused = {r.address: _refusal(r) for r in results if not r.ok}
    if any(r.ok for r in results):
        return refused
    first = results[0]
    if first.stage == "mail":
        raise SMTPSenderRefused(first.code, first.message, from_addr)  # (a 421 has closed the connection)
    after_data = [r for r in results if r.stage == "data"]
    reset()
    if not after_data:
        raise SMTPRecipientsRefused(refused)
    raise LMTPDataError(after_data[0].code, after_data[0].message, refused)


# ---------------------------------------------------------------------------
# ESMTP options given as smtplib's strings ("SIZE=100", "NOTIFY=SUCCESS,DELAY"): smtplib puts
# them on the wire joined by spaces, and liblmtp parses and checks that.

def _wire(options):
    for option in options:
        if not isinstance(option, str):
            raise TypeError("ESMTP options are strings, not %s" % type(option).__name__)
    return " ".join(options)


def _check_inputs(addresses, mail_options, rcpt_options):
    """Raise ValueError for a line break or NUL in any address, or a malformed option, before
    anything is sent."""
    for address in addresses:
        _quoteaddr(address)
    _params(mail_options, rcpt_options)


# The core's parameters for a set of option strings, made once.
_PARAMS = {}


def _params(mail_options, rcpt_options):
    """The core's MAIL and RCPT parameters for smtplib-style option strings (None: none at all),
    made once per set of options; ValueError for a malformed one."""
    if not mail_options and not rcpt_options:
        return None
    try:
        key = (tuple(mail_options), tuple(rcpt_options))
        made = _PARAMS.get(key)
    except TypeError:  # an option that is no string: parsing it says so
        key = made = None
    if made is None:
        try:
            made = _lmtp.Params(_wire(mail_options), _wire(rcpt_options), True)
        except _lmtp.Error as err:
            _raise(err)
        if key is not None and len(_PARAMS) < 256:
            _PARAMS[key] = made
    return made


# A dot-atom "@" a domain of letters, digits and hyphens: what parseaddr gives back unchanged, so
# the common address needs no parsing (parseaddr costs more than delivering the message).
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
                            r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\Z")


def _quoteaddr(address):
    """The address inside <...>, as smtplib's quoteaddr finds it (without the brackets)."""
    if type(address) is str:
        if _PLAIN_ADDRESS.match(address):
            return address
    elif hasattr(address, "addr_spec"):  # email.headerregistry.Address
        address = address.addr_spec
    # email.utils.parseaddr would quietly drop a CR or LF: refuse them first.
    if "\r" in address or "\n" in address or "\0" in address:
        raise ValueError("address contains a line break or a NUL: %r" % (address,))
    name, addr = email.utils.parseaddr(address)
    if (name, addr) == ("", ""):
        address = address.strip()
        return address[1:-1] if address.startswith("<") and address.endswith(">") else address
    return addr


# ---------------------------------------------------------------------------
# messages, in any of the forms callers have them

_CHUNK = 64 * 1024


class _Pieces(tuple):
    """A message as pieces the library reads one after the other, in place: bytes or ASCII str."""


# Generator's "From " mangling (mangle_from_, on when it is given no policy, as smtplib does).
_FROM = re.compile(r"^From ", re.MULTILINE)
_CRLF_POLICIES = {}
_COMPAT32 = type(email.policy.compat32)
_PLAIN_HEADER = re.compile(r"[\t\x20-\x7e]*\Z")


def _flatten(message, international=False):
    """The message as smtplib's send_message sends it (BytesGenerator, linesep CRLF)."""
    if not international:
        pieces = _simple_flatten(message)
        if pieces is not None:
            return pieces
    with io.BytesIO() as out:
        policy = message.policy.clone(utf8=True) if international else None
        gen = email.generator.BytesGenerator(out, policy=policy) if policy else email.generator.BytesGenerator(out)
        gen.flatten(message, linesep="\r\n")
        return out.getvalue()


def _simple_flatten(message):
    """The same for a message of one part whose body is an ASCII str (most messages), without a
    pass of Python over its lines: the header block as the generator folds it, then the body as
    it is (the library makes its line ends CRLF, as the generator does); None for any other."""
    payload = message._payload
    if not isinstance(payload, str) or not payload.isascii() or message.get_content_maintype() in (
            "multipart", "message"):
        return None
    policy = _CRLF_POLICIES.get(id(message.policy))
    if policy is None or policy[0] is not message.policy:
        policy = (message.policy, message.policy.clone(linesep="\r\n"))
        if len(_CRLF_POLICIES) < 64:
            _CRLF_POLICIES[id(message.policy)] = policy
    fold = policy[1].fold_binary
    if type(message.policy) is _COMPAT32:
        # compat32 leaves a header of printable ASCII that fits on its line as it is (checked over
        # every such value in the tests): no need for its Header machinery (~6 us a header).
        head = b"".join([("%s: %s\r\n" % (h, v)).encode("ascii")
                         if type(v) is str and len(h) + len(v) < 76 and _PLAIN_HEADER.match(v) and h.isascii()
                         else fold(h, v) for h, v in message.raw_items()]) + b"\r\n"
    else:
        head = b"".join([fold(h, v) for h, v in message.raw_items()]) + b"\r\n"
    if _lmtp.has_from_line(payload):  # (16 octets at a time; "in" would be the slowest part)
        payload = _FROM.sub(">From ", payload)
    return _Pieces((head, payload))


def _source(msg):
    """The message as the library takes it: bytes or an ASCII str (both read in place, no copy; the
    library makes every line end CRLF), _Pieces of them, or a callable read(n) -> bytes."""
    if type(msg) is _Pieces:
        return msg
    if isinstance(msg, str):
        if not msg.isascii():  # (a flag of the str: no pass over it)
            msg.encode("ascii")  # UnicodeEncodeError, as smtplib: a str message must be ASCII
        return msg
    if isinstance(msg, (bytes, bytearray, memoryview)):
        return bytes(msg)
    if isinstance(msg, email.message.Message):
        return _flatten(msg)
    read = getattr(msg, "read", None)
    if callable(read):
        return read
    try:
        chunks = iter(msg)
    except TypeError:
        raise TypeError("a message is bytes, str, an email.message.Message, a binary file "
                        "or an iterable of bytes, not %s" % type(msg).__name__) from None

    pending = bytearray()

    def read_chunks(n):
        while len(pending) < n:
            chunk = next(chunks, None)
            if chunk is None:
                break
            if not isinstance(chunk, (bytes, bytearray, memoryview)):
                raise TypeError("the message iterable gave %s, not bytes" % type(chunk).__name__)
            pending.extend(chunk)
        out = bytes(pending[:n])
        del pending[:n]
        return out

    return read_chunks


# ---------------------------------------------------------------------------

def _weak_trace(obj):
    # The compiled client holds the callback; a weak reference keeps that from
    # making a cycle the garbage collector cannot see through.
    ref = weakref.ref(obj)

    def trace(direction, line):
        target = ref()
        if target is not None:
            target._trace(direction, line)

    return trace


def _default_hostname():
    """The LHLO name smtplib uses by default: this machine's FQDN, else its address in brackets."""
    fqdn = socket.getfqdn()
    if "." in fqdn:
        return fqdn
    try:
        addr = socket.gethostbyname(socket.gethostname())
    except socket.gaierror:
        addr = "127.0.0.1"
    return "[%s]" % addr


def _trace_text(direction, line):
    """A line of the core's trace as smtplib's debug output says it."""
    if direction == 0:
        return "send: %r" % (line.decode("latin-1") + "\r\n")
    if direction == 1:
        return "reply: %r" % (line + b"\r\n")
    if direction == 2:
        return "data: %r" % line
    return "note: %s" % line.decode("utf-8", "replace")


def _apply_tls(client, keyfile, certfile, context, cafile, capath, server_hostname, insecure):
    """Hands the TLS settings to the core; what an ``ssl.SSLContext`` holds that can be
    read back (its CA certificates, verify_mode, check_hostname, minimum_version) counts."""
    ca_pem = b""
    min_version = 0
    verify_name = True
    if context is not None:
        if context.verify_mode == ssl.CERT_NONE:
            insecure = True
        verify_name = context.check_hostname
        if context.minimum_version == ssl.TLSVersion.TLSv1_3:
            min_version = 0x0304
        ca_pem = "".join(ssl.DER_cert_to_PEM_cert(der)
                         for der in context.get_ca_certs(binary_form=True)).encode("ascii")
    client.set_tls(cafile or "", capath or "", ca_pem, certfile or "", keyfile or "", server_hostname or "",
                   min_version, verify_name, insecure)


class LMTP:
    """An LMTP connection, used like ``smtplib.LMTP``.

    A ``host`` starting with ``/`` is a unix socket. With a host, the
    constructor connects (and sends LHLO, which smtplib leaves to the first
    command that needs it). ``timeout`` is in seconds, for each reply and
    each write; ``None`` means the longest deadline the library can hold.
    """

    debuglevel = 0
    default_port = LMTP_PORT
    ehlo_msg = "lhlo"
    #: Never read the reply after a message as one line per recipient (see the
    #: module's documentation: servers that answer on one line per recipient).
    strict_replies = False

    def __init__(self, host="", port=LMTP_PORT, local_hostname=None, source_address=None,
                 timeout=socket._GLOBAL_DEFAULT_TIMEOUT, *, strict_replies=None):
        if strict_replies is not None:
            self.strict_replies = bool(strict_replies)
        self.timeout = timeout
        self.esmtp_features = {}
        self.command_encoding = "ascii"
        self.source_address = source_address
        self.does_esmtp = False
        self.ehlo_resp = None
        self.helo_resp = None
        #: The results of the last transaction (``deliver``, ``sendmail``, ``data``).
        self.last_results = []
        self._client = None
        self._tracing = False
        self.local_hostname = local_hostname if local_hostname is not None else _default_hostname()
        if host:
            code, msg = self.connect(host, port)
            if not self._client.banner.completion:  # the greeting refused the connection
                self.close()
                raise SMTPConnectError(code, msg)

    # --- context manager ---------------------------------------------------

    def __enter__(self):
        return self

    def __exit__(self, *args):
        try:
            reply = self._quit()
            if not reply.completion:
                raise SMTPResponseException(*_pair(reply))
        except SMTPServerDisconnected:
            pass
        finally:
            self.close()

    # --- debug ---------------------------------------------------------------

    def set_debuglevel(self, debuglevel):
        """1 prints the dialogue on stderr as smtplib does; 2 adds timestamps.

        The same lines always go to the ``logging`` logger ``"lmtp"`` at DEBUG.
        """
        self.debuglevel = debuglevel
        self._sync_trace()

    def _print_debug(self, *args):
        if self.debuglevel > 1:
            print(time.strftime("%H:%M:%S"), *args, file=sys.stderr)
        else:
            print(*args, file=sys.stderr)

    def _trace(self, direction, line):
        text = _trace_text(direction, line)
        if self.debuglevel > 0 and direction != 2:
            self._print_debug(text)
        log.debug("%s", text)

    def _sync_trace(self):
        # The trace costs a trip into Python per line: only while someone looks.
        want = self.debuglevel > 0 or log.isEnabledFor(logging.DEBUG)
        if self._client is not None and want != self._tracing:
            self._client.set_trace(_weak_trace(self) if want else None)
            self._tracing = want

    # --- connection ----------------------------------------------------------------

    def _timeout_seconds(self):
        t = self.timeout
        if t is socket._GLOBAL_DEFAULT_TIMEOUT:
            t = socket.getdefaulttimeout()
            return _DEFAULT_TIMEOUT if t is None else t
        return _LONGEST_TIMEOUT if t is None else t

    def connect(self, host="localhost", port=0, source_address=None):
        """Connect (TCP, or a unix socket for a host starting with "/").

        Returns the banner as ``(code, message)``; sends LHLO as well.
        """
        if source_address:
            self.source_address = source_address
        if not port and not host.startswith("/") and host.count(":") == 1:
            host, _, port_text = host.partition(":")
            try:
                port = int(port_text)
            except ValueError:
                raise OSError("nonnumeric port") from None
        if not port:
            port = self.default_port
        if self.debuglevel > 0:
            self._print_debug("connect:", (host, port))
        sys.audit("smtplib.connect", self, host, port)
        self.close()
        local = self.source_address or ("", 0)
        # As smtplib: connect reads the banner; LHLO goes when first needed.
        self._client = self._new_client(local)
        self._tracing = False
        self._sync_trace()
        self.ehlo_resp = self.helo_resp = None
        self.esmtp_features = {}
        self.does_esmtp = False
        try:
            self._client.connect(host, 0 if host.startswith("/") else int(port))
        except _lmtp.Error as err:
            if err.args[0] != "rejected":
                self._client = None
                _raise(err)
        return _pair(self._client.banner)  # the constructor raises SMTPConnectError unless 220

    def _new_client(self, local):
        return _lmtp.Client(self.local_hostname, self._timeout_seconds(), None, local[0] or "",
                            int(local[1] or 0), send_hello=False, strict_replies=self.strict_replies)

    def _hello_done(self, reply):
        self.ehlo_resp = reply.message
        self.does_esmtp = True
        self.esmtp_features = {}
        for keyword, params in self._client.capabilities:
            self.esmtp_features[keyword.lower()] = params

    def _live(self):
        if self._client is None or not self._client.connected:
            raise SMTPServerDisconnected("please run connect() first")
        self._sync_trace()
        return self._client

    def _call(self, method, *args, sender=None, **kwargs):
        try:
            return method(*args, **kwargs)
        except _lmtp.Error as err:
            _raise(err, sender)

    def close(self):
        """Close the connection without QUIT."""
        if self._client is not None:
            self._client.close()

    def quit(self):
        """Send QUIT, close, and return its reply as ``(code, message)``."""
        return _pair(self._quit())

    def _quit(self):
        client = self._live()
        reply = self._call(client.quit)
        self.ehlo_resp = self.helo_resp = None
        self.esmtp_features = {}
        self.does_esmtp = False
        self.close()
        if not reply.code:  # it hung up without a word, which smtplib reports so
            raise SMTPServerDisconnected("Connection unexpectedly closed")
        return reply

    # --- LHLO ----------------------------------------------------------------------------

    def ehlo(self, name=""):
        """Send LHLO (LMTP's EHLO) and record the extensions offered."""
        client = self._live()
        reply = self._call(client.hello, name or self.local_hostname)
        self.ehlo_resp = reply.message
        if reply.completion:
            self._hello_done(reply)
        return _pair(reply)

    lhlo = ehlo

    def helo(self, name=""):
        """LMTP has no HELO: this sends LHLO too."""
        code, msg = self.ehlo(name)
        self.helo_resp = msg
        return code, msg

    def ehlo_or_helo_if_needed(self):
        """Send LHLO if it was not sent yet; SMTPHeloError if the server refuses it."""
        if self.helo_resp is None and self.ehlo_resp is None:
            code, resp = self.ehlo()
            if not self._client.last_reply.completion:
                raise SMTPHeloError(code, resp)

    def has_extn(self, opt):
        """True if the server offered the extension ``opt`` (case-insensitive)."""
        return opt.lower() in self.esmtp_features

    # --- TLS and authentication ------------------------------------------------------------

    #: Let ``login()`` send a password with PLAIN or LOGIN over unencrypted TCP.
    allow_plaintext_auth = False

    def starttls(self, keyfile=None, certfile=None, context=None, *, cafile=None, capath=None,
                 server_hostname=None, insecure=False):
        """STARTTLS, the TLS handshake, and LHLO again (RFC 3207).

        The certificate chain and the server's name (the host connected to, or
        ``server_hostname``; a unix socket needs one) are verified. From an
        ``ssl.SSLContext`` the CA certificates it holds, ``verify_mode``,
        ``check_hostname`` and ``minimum_version`` are honoured (a client
        certificate in the context cannot be read back: pass ``certfile`` and
        ``keyfile``). Returns the reply to STARTTLS as ``(code, message)``.
        """
        self.ehlo_or_helo_if_needed()
        if not self.has_extn("starttls"):
            raise SMTPNotSupportedError("STARTTLS extension not supported by server.")
        client = self._live()
        _apply_tls(client, keyfile, certfile, context, cafile, capath, server_hostname, insecure)
        reply = self._call(client.starttls)
        if not client.tls_active:
            raise SMTPResponseException(reply.code, reply.message)
        # What the server offered in plain text is forgotten; this is the LHLO over TLS.
        self.ehlo_resp = self.helo_resp = None
        self.esmtp_features = {}
        self.does_esmtp = False
        if reply.completion:
            self._hello_done(reply)
        return _pair(client.starttls_reply)

    def login(self, user, password, *, initial_response_ok=True, allow_plaintext=None):
        """AUTH with the strongest mechanism the server offers that can be used
        (SCRAM-SHA-256, then PLAIN, LOGIN). Returns ``(235, message)``.

        Raises SMTPAuthenticationError when the server refuses (535, 534,
        538...), SMTPNotSupportedError when it offers no AUTH or nothing
        usable, LMTPInsecureError before a password would go over unencrypted
        TCP (unless ``allow_plaintext`` or ``allow_plaintext_auth``).
        """
        self.ehlo_or_helo_if_needed()
        if not self.has_extn("auth"):
            raise SMTPNotSupportedError("SMTP AUTH extension not supported by server.")
        if allow_plaintext is None:
            allow_plaintext = self.allow_plaintext_auth
        client = self._live()
        try:
            reply = client.auth(user, password, "", allow_plaintext)
        except _lmtp.Error as err:
            if err.args[0] == "auth" and client.last_reply.code:
                refused = client.last_reply
                raise SMTPAuthenticationError(refused.code, refused.message) from None
            if err.args[0] == "not_advertised":
                raise SMTPException("No suitable authentication method found.") from None
            _raise(err)
        return _pair(reply)

    # --- commands --------------------------------------------------------------------------

    def _encode_address(self, address):
        addr = _quoteaddr(address)
        addr.encode(self.command_encoding)  # UnicodeEncodeError, as smtplib, when it must be ASCII
        return addr

    def mail(self, sender, options=()):
        """MAIL FROM:<sender> with smtplib-style option strings; returns ``(code, message)``."""
        params = _params(options, ())
        if params is not None and params.smtputf8:
            self._refuse_smtputf8(params)
            self.command_encoding = "utf-8"
        client = self._live()
        reply = self._call(client.mail, "MAIL", self._encode_address(sender), params, True, sender=sender)
        return _pair(reply)

    def rcpt(self, recip, options=()):
        """RCPT TO:<recip> with smtplib-style option strings; returns ``(code, message)``."""
        params = _params((), options)
        client = self._live()
        reply = self._call(client.rcpt, self._encode_address(recip), params, True)
        return _pair(reply)

    def data(self, msg):
        """Send the message; returns the first recipient's final reply as ``(code, message)``.

        Every recipient's reply is read (they are in ``last_results``; ``getreply()``
        gives the others one by one); raises SMTPDataError if the server refuses
        DATA itself. When the connection breaks after the message went out, the
        verdicts that came still count: this returns the first recipient's reply
        if it came, else ``(421, why)``, and ``getreply()`` does the same for each
        further recipient (the connection is then closed).
        """
        source = _source(msg)  # a str that is not ASCII fails here, before DATA
        client = self._live()
        reply = self._call(client.data_start)
        if not client.data_accepted:
            raise SMTPDataError(reply.code, reply.message)
        try:
            if isinstance(source, (bytes, str)):
                self._call(client.data_write, source)  # the library sends it in pieces
            elif type(source) is _Pieces:
                for piece in source:
                    self._call(client.data_write, piece)
            else:
                while True:
                    chunk = source(_CHUNK)
                    if not chunk:
                        break
                    self._call(client.data_write, bytes(chunk))
        except BaseException:
            # The message cannot be finished: without its final dot the server
            # delivers nothing, and only closing ends DATA.
            self.close()
            raise
        try:
            reply = client.data_end()
        except _lmtp.Error as err:
            if err.args[0] not in _BROKEN:
                _raise(err)
            # The message went out and the connection broke: no verdict that came is lost.
            self.last_results = _results(client.results, err.args[1])
            first = client.last_reply
            return _pair(first) if first.code else (421, err.args[1].encode("utf-8", "replace"))
        self.last_results = _results(client.results)
        return _pair(reply)

    def rset(self):
        """RSET; returns ``(code, message)``."""
        return _pair(self._call(self._live().rset))

    def noop(self):
        """NOOP; returns ``(code, message)``."""
        return _pair(self._call(self._live().noop))

    def vrfy(self, address):
        """VRFY; returns ``(code, message)``."""
        return _pair(self._call(self._live().verify, _quoteaddr(address)))

    verify = vrfy

    def expn(self, address):
        """EXPN; returns ``(code, message)``."""
        return _pair(self._call(self._live().expand, _quoteaddr(address)))

    def help(self, args=""):
        """HELP [args]; returns the reply's message (bytes)."""
        return self._call(self._live().help, args).message

    def putcmd(self, cmd, args=""):
        """Send a command line of your own (checked: no CR or LF)."""
        line = "%s %s" % (cmd, args) if args else "%s" % cmd
        if "\r" in line or "\n" in line:
            line = line.replace("\n", "\\n").replace("\r", "\\r")
            raise ValueError("command and arguments contain prohibited newline characters: %s" % line)
        self._call(self._live().command, line)

    def getreply(self):
        """The next reply owed, as ``(code, message)``: to a ``putcmd`` not yet
        answered, else the next recipient's final reply after ``data()``; for a
        recipient whose reply never came because the connection broke,
        ``(421, why)``."""
        client = self._client
        if client is not None and client.finals_owed:
            try:
                return _pair(client.response())
            except _lmtp.Error as err:
                if err.args[0] not in _BROKEN:
                    raise
                return 421, err.args[1].encode("utf-8", "replace")
        return _pair(self._call(self._live().response))

    def docmd(self, cmd, args=""):
        """``putcmd`` then ``getreply``."""
        self.putcmd(cmd, args)
        return self.getreply()

    # --- whole transactions ------------------------------------------------------------------------

    def deliver(self, from_addr, to_addrs, msg, mail_options=(), rcpt_options=(), *, transfer="auto",
                canonical=False):
        """Deliver ``msg`` and return every recipient's ``Result``, in order.

        MAIL, every RCPT and the message go in one pipelined exchange when the
        server allows; with CHUNKING the message goes as BDAT chunks, so that a
        small message costs one round trip (``transfer``: "auto", "data" or
        "bdat"; ``canonical``: the message already has CRLF line ends and goes
        as it is, for BODY=BINARYMIME). Raises only for bad input or an option
        the server does not offer (nothing sent), and when the session breaks:
        then the exception (``SMTPServerDisconnected``, ``LMTPTimeoutError``...)
        carries ``results``, the list as it would have been returned: the
        verdicts the server gave before the break, and ``unknown`` (text: why)
        for the recipients without one, which may or may not have the message.
        ``last_results`` holds the same. ``deliver_many`` does the same.
        """
        return self._deliver(from_addr, to_addrs, msg, mail_options, rcpt_options, transfer, canonical)

    def _deliver(self, from_addr, to_addrs, msg, mail_options, rcpt_options, transfer="auto", canonical=False):
        if isinstance(to_addrs, str):
            to_addrs = [to_addrs]
        # Everything the caller gave is checked before LHLO or anything else goes out.
        sender = _quoteaddr(from_addr)
        rcpts = [_quoteaddr(a) for a in to_addrs]
        params = _params(mail_options, rcpt_options)
        source = _source(msg)
        try:
            self.ehlo_or_helo_if_needed()
            self._refuse_smtputf8(params)
            client = self._live()
        except SMTPServerDisconnected as err:  # no connection: nothing was sent
            self.last_results = _unsent(to_addrs, str(err))
            err.results = list(self.last_results)
            raise
        try:
            self._check_encoding(sender, rcpts, params)
            # SIZE (when offered and not given) is the message's size with CRLF line ends, as on the wire.
            fields = client.deliver(sender, rcpts, source, params, transfer, canonical)
        except _lmtp.Error as err:
            self.last_results = _results(client.results, err.args[1] if err.args[0] in _BROKEN else None)
            exc = _error(err, from_addr)
            exc.results = list(self.last_results)
            raise exc from None
        finally:
            self.command_encoding = "ascii"
        results = self.last_results = [Result(*f) for f in fields]
        return list(results)

    def _refuse_smtputf8(self, params):
        """SMTPNotSupportedError, as smtplib raises it, when the parameters ask for SMTPUTF8 and
        liblmtp finds it not offered (smtplib sends every other option as given)."""
        if params is not None and params.smtputf8 and (
                self._client is None or "SMTPUTF8" in self._client.unoffered(params)):
            raise SMTPNotSupportedError("SMTPUTF8 not supported by server")

    def _check_encoding(self, sender, rcpts, params):
        _check_encoding(sender, rcpts, params, self.command_encoding)

    def deliver_many(self, messages, mail_options=(), rcpt_options=(), *, transfer="auto"):
        """Deliver many messages over this connection; return, per message, the
        list of its recipients' ``Result`` (as ``deliver`` returns it), in order.

        ``messages`` is an iterable of ``(from_addr, to_addrs, msg)`` tuples,
        ``msg`` in any form ``deliver`` takes. With PIPELINING each message's
        MAIL follows the end of the one before without waiting for its replies,
        so that with CHUNKING many small messages share each round trip (by DATA
        each message costs one: its body waits for the 354). ``mail_options``
        and ``rcpt_options`` apply to every message (SIZE is each message's own
        when the server offers SIZE).

        Bad input in any message raises ValueError before anything is sent. A
        message the library refuses to send (an option the server does not
        offer, over its SIZE, a source that fails before its first byte went
        out) gets one ``Result`` per recipient with ``outcome`` "unknown", code
        0 and the reason as ``text``; the other messages go on. When the session
        breaks, the exception (``SMTPServerDisconnected``...) carries
        ``results``: the list as it would have been returned, the messages
        without a verdict ``unknown``.
        """
        batch = _batch(messages)
        params = _params(mail_options, rcpt_options)
        try:
            self.ehlo_or_helo_if_needed()
            self._refuse_smtputf8(params)
            client = self._live()
        except SMTPServerDisconnected as err:  # no connection: nothing was sent
            err.results = [_unsent(t, str(err)) for _, _, _, t in batch]
            if err.results:
                self.last_results = list(err.results[-1])
            raise
        try:
            wire = []
            for sender, rcpts, m, _ in batch:
                self._check_encoding(sender, rcpts, params)
                wire.append((sender, rcpts, _source(m)))
        finally:
            self.command_encoding = "ascii"
        done, ended = client.deliver_many(wire, params, transfer)
        results = [_delivered(status, why, recipients, to_addrs)
                   for (status, why, recipients), (_, _, _, to_addrs) in zip(done, batch)]
        if results:
            self.last_results = list(results[-1])
        if ended is not None:
            exc = _error(Exception(*ended))
            exc.results = results
            raise exc
        return results

    def sendmail(self, from_addr, to_addrs, msg, mail_options=(), rcpt_options=()):
        """smtplib's sendmail, with every recipient's reply taken into account.

        Returns a dict of the recipients that did not get the message, each
        with its ``(code, message)``: refused at RCPT, or (what smtplib misses)
        refused after the message. Raises SMTPSenderRefused when MAIL is
        refused, SMTPRecipientsRefused when every RCPT is, and SMTPDataError
        (an ``LMTPDataError``, with ``recipients``) when nobody got the message
        and someone refused it after DATA.

        When the connection breaks after some recipients got the message, the
        call still returns: those are not in the dict, and each recipient whose
        verdict never came is, as ``(421, why)`` (a temporary failure: retry it;
        it may or may not have the message). When nobody is known to have got
        it, the break is raised (``SMTPServerDisconnected``, or its subclasses
        ``LMTPTimeoutError``...) with ``recipients``, that same dict, and
        ``results``.
        """
        to_addrs = _sendmail_recipients(from_addr, to_addrs, mail_options, rcpt_options)
        try:
            results = self._deliver(from_addr, to_addrs, msg, mail_options, rcpt_options)
        except SMTPServerDisconnected as err:
            return _sendmail_broken(err)
        return _sendmail_refused(results, from_addr, self._rset_quietly)

    def _rset_quietly(self):
        if self._client is not None and self._client.connected:
            try:
                self.rset()
            except SMTPException:
                pass

    def send_message(self, msg, from_addr=None, to_addrs=None, mail_options=(), rcpt_options=()):
        """smtplib's send_message: addresses from the headers (Resent-* when
        present), Bcc removed, SMTPUTF8 and BODY=8BITMIME when an address needs
        them; then ``sendmail``."""
        resent = msg.get_all("Resent-Date")
        if resent is None:
            prefix = ""
        elif len(resent) == 1:
            prefix = "Resent-"
        else:
            raise ValueError("message has more than one 'Resent-' header block")
        if from_addr is None:
            from_addr = msg[prefix + "Sender"] if (prefix + "Sender") in msg else msg[prefix + "From"]
            from_addr = email.utils.getaddresses([from_addr])[0][1]
        if to_addrs is None:
            fields = [f for f in (msg[prefix + "To"], msg[prefix + "Bcc"], msg[prefix + "Cc"]) if f is not None]
            to_addrs = [a[1] for a in email.utils.getaddresses(fields)]
        if isinstance(to_addrs, str):
            to_addrs = [to_addrs]
        _check_inputs([from_addr, *to_addrs], mail_options, rcpt_options)
        self.ehlo_or_helo_if_needed()
        copy_ = copy.copy(msg)
        del copy_["Bcc"]
        del copy_["Resent-Bcc"]
        international = False
        try:
            "".join([from_addr, *to_addrs]).encode("ascii")
        except UnicodeEncodeError:
            if not self.has_extn("smtputf8"):
                raise SMTPNotSupportedError(
                    "One or more source or delivery addresses require internationalized email support, "
                    "but the server does not advertise the required SMTPUTF8 capability")
            international = True
        if international:
            mail_options = (*mail_options, "SMTPUTF8", "BODY=8BITMIME")
        return self.sendmail(from_addr, to_addrs, _flatten(copy_, international), mail_options, rcpt_options)


class LMTP_SSL(LMTP):
    """LMTP inside TLS from the first byte (implicit TLS), as ``smtplib.SMTP_SSL``.

    The certificate chain and the server's name (the host connected to, or
    ``server_hostname``; a unix socket needs one) are verified unless the
    context says ``CERT_NONE`` or ``insecure=True``. The settings are those of
    ``starttls()``. A handshake or verification failure raises
    ``LMTPTLSError`` / ``LMTPCertificateError`` saying why.
    """

    def __init__(self, host="", port=LMTP_PORT, local_hostname=None, keyfile=None, certfile=None,
                 timeout=socket._GLOBAL_DEFAULT_TIMEOUT, source_address=None, context=None, *,
                 cafile=None, capath=None, server_hostname=None, insecure=False, strict_replies=None):
        self._tls = (keyfile, certfile, context, cafile, capath, server_hostname, insecure)
        super().__init__(host, port, local_hostname, source_address, timeout, strict_replies=strict_replies)

    def _new_client(self, local):
        client = _lmtp.Client(self.local_hostname, self._timeout_seconds(), None, local[0] or "",
                              int(local[1] or 0), send_hello=False, implicit_tls=True,
                              strict_replies=self.strict_replies)
        _apply_tls(client, *self._tls)
        return client


from .pool import Pool  # noqa: E402  (it builds on what is above)


def __getattr__(name):
    # The asyncio faces (lmtp/aio.py, lmtp/apool.py) load asyncio, which doubles the time
    # `import lmtp` takes: they are loaded when first asked for.
    if name == "AsyncLMTP":
        from .aio import AsyncLMTP
        return AsyncLMTP
    if name == "AsyncPool":
        from .apool import AsyncPool
        return AsyncPool
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


def __dir__():
    return sorted(set(globals()) | {"AsyncLMTP", "AsyncPool"})
