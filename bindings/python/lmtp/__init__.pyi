import email.message
import enum
import smtplib
import ssl
from types import TracebackType
from typing import IO, Iterable, Literal, Optional, Sequence, Tuple, Type, Union

__version__: str
LMTP_PORT: int

class Status(enum.IntEnum):
    """liblmtp's statuses (lmtp.h's lmtp_status); the members (OK, TIMEOUT, REJECTED...) are
    made from the library's status table when the module loads."""

Message = Union[bytes, bytearray, memoryview, str, email.message.Message, IO[bytes], Iterable[bytes]]
Reply = Tuple[int, bytes]

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

class LMTPTimeoutError(smtplib.SMTPServerDisconnected, TimeoutError): ...
class LMTPProtocolError(smtplib.SMTPServerDisconnected): ...
class LMTPTLSError(smtplib.SMTPServerDisconnected, ssl.SSLError): ...
class LMTPCertificateError(LMTPTLSError, ssl.SSLCertVerificationError): ...
class LMTPInsecureError(smtplib.SMTPException): ...

class LMTPDataError(smtplib.SMTPDataError):
    recipients: dict[str, Reply]
    def __init__(self, code: int, msg: bytes, recipients: dict[str, Reply]) -> None: ...

class Result:
    address: str
    stage: Optional[Literal["mail", "rcpt", "data"]]
    code: int
    enhanced: Optional[Tuple[int, int, int]]
    text: str
    message: bytes
    rcpt_code: int
    outcome: Literal["pending", "ok", "temporary", "permanent", "unknown"]
    attempts: int
    @property
    def ok(self) -> bool: ...
    @property
    def temporary(self) -> bool: ...
    @property
    def permanent(self) -> bool: ...
    @property
    def unknown(self) -> bool: ...

class Pool:
    timeout: Optional[float]
    local_hostname: str
    def __init__(
        self,
        host: Optional[str] = ...,
        port: int = ...,
        connections: int = ...,
        retries: int = ...,
        *,
        retry_delay: float = ...,
        retry_delay_max: float = ...,
        max_messages_per_connection: Optional[int] = ...,
        max_connection_age: Optional[float] = ...,
        idle_timeout: Optional[float] = ...,
        mailbox_concurrency: Optional[int] = ...,
        resend_unknown: bool = ...,
        hosts: Optional[Sequence[Union[str, Tuple[str, int]]]] = ...,
        local_hostname: Optional[str] = ...,
        source_address: Optional[Tuple[str, int]] = ...,
        timeout: Optional[float] = ...,
        strict_replies: bool = ...,
        starttls: Union[bool, Literal["opportunistic"]] = ...,
        implicit_tls: bool = ...,
        context: Optional[ssl.SSLContext] = ...,
        keyfile: Optional[str] = ...,
        certfile: Optional[str] = ...,
        cafile: Optional[str] = ...,
        capath: Optional[str] = ...,
        server_hostname: Optional[str] = ...,
        insecure: bool = ...,
        user: Optional[str] = ...,
        password: Optional[str] = ...,
        allow_plaintext: bool = ...,
    ) -> None: ...
    def __enter__(self) -> "Pool": ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...
    def close(self) -> None: ...
    def deliver_many(
        self,
        messages: Iterable[Tuple[str, Union[str, Sequence[str]], Message]],
        mail_options: Sequence[str] = ...,
        rcpt_options: Sequence[str] = ...,
        *,
        transfer: Literal["auto", "data", "bdat"] = ...,
    ) -> list[list[Result]]: ...

class AsyncPool:
    """lmtp.Pool for asyncio (lmtp/apool.py): the core's pool planner over AsyncLMTP's connections."""
    timeout: Optional[float]
    local_hostname: str
    def __init__(
        self,
        host: Optional[str] = ...,
        port: int = ...,
        connections: int = ...,
        retries: int = ...,
        *,
        retry_delay: float = ...,
        retry_delay_max: float = ...,
        max_messages_per_connection: Optional[int] = ...,
        max_connection_age: Optional[float] = ...,
        idle_timeout: Optional[float] = ...,
        mailbox_concurrency: Optional[int] = ...,
        resend_unknown: bool = ...,
        hosts: Optional[Sequence[Union[str, Tuple[str, int]]]] = ...,
        local_hostname: Optional[str] = ...,
        source_address: Optional[Tuple[str, int]] = ...,
        timeout: Optional[float] = ...,
        strict_replies: bool = ...,
        starttls: Union[bool, Literal["opportunistic", "required"]] = ...,
        implicit_tls: bool = ...,
        context: Optional[ssl.SSLContext] = ...,
        keyfile: Optional[str] = ...,
        certfile: Optional[str] = ...,
        cafile: Optional[str] = ...,
        capath: Optional[str] = ...,
        server_hostname: Optional[str] = ...,
        insecure: bool = ...,
        user: Optional[str] = ...,
        password: Optional[str] = ...,
        allow_plaintext: bool = ...,
    ) -> None: ...
    async def __aenter__(self) -> "AsyncPool": ...
    async def __aexit__(
        self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None: ...
    async def deliver(
        self,
        from_addr: str,
        to_addrs: Union[str, Sequence[str]],
        msg: Message,
        mail_options: Sequence[str] = ...,
        rcpt_options: Sequence[str] = ...,
        *,
        transfer: Literal["auto", "data", "bdat"] = ...,
    ) -> list[Result]: ...
    async def deliver_many(
        self,
        messages: Iterable[Tuple[str, Union[str, Sequence[str]], Message]],
        mail_options: Sequence[str] = ...,
        rcpt_options: Sequence[str] = ...,
        *,
        transfer: Literal["auto", "data", "bdat"] = ...,
    ) -> list[list[Result]]: ...
    async def close(self) -> None: ...
    @property
    def connections(self) -> int: ...

class LMTP:
    debuglevel: int
    default_port: int
    ehlo_msg: str
    timeout: Optional[float]
    esmtp_features: dict[str, str]
    command_encoding: str
    source_address: Optional[Tuple[str, int]]
    does_esmtp: bool
    ehlo_resp: Optional[bytes]
    helo_resp: Optional[bytes]
    local_hostname: str
    last_results: list[Result]
    allow_plaintext_auth: bool
    strict_replies: bool
    def __init__(
        self,
        host: str = ...,
        port: int = ...,
        local_hostname: Optional[str] = ...,
        source_address: Optional[Tuple[str, int]] = ...,
        timeout: Optional[float] = ...,
        *,
        strict_replies: Optional[bool] = ...,
    ) -> None: ...
    def __enter__(self) -> "LMTP": ...
    def __exit__(
        self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None: ...
    def set_debuglevel(self, debuglevel: int) -> None: ...
    def connect(self, host: str = ..., port: int = ..., source_address: Optional[Tuple[str, int]] = ...) -> Reply: ...
    def close(self) -> None: ...
    def quit(self) -> Reply: ...
    def ehlo(self, name: str = ...) -> Reply: ...
    def lhlo(self, name: str = ...) -> Reply: ...
    def helo(self, name: str = ...) -> Reply: ...
    def ehlo_or_helo_if_needed(self) -> None: ...
    def has_extn(self, opt: str) -> bool: ...
    def starttls(
        self,
        keyfile: Optional[str] = ...,
        certfile: Optional[str] = ...,
        context: Optional[ssl.SSLContext] = ...,
        *,
        cafile: Optional[str] = ...,
        capath: Optional[str] = ...,
        server_hostname: Optional[str] = ...,
        insecure: bool = ...,
    ) -> Reply: ...
    def login(
        self, user: str, password: str, *, initial_response_ok: bool = ..., allow_plaintext: Optional[bool] = ...
    ) -> Reply: ...
    def mail(self, sender: str, options: Sequence[str] = ...) -> Reply: ...
    def rcpt(self, recip: str, options: Sequence[str] = ...) -> Reply: ...
    def data(self, msg: Message) -> Reply: ...
    def rset(self) -> Reply: ...
    def noop(self) -> Reply: ...
    def vrfy(self, address: str) -> Reply: ...
    def verify(self, address: str) -> Reply: ...
    def expn(self, address: str) -> Reply: ...
    def help(self, args: str = ...) -> bytes: ...
    def putcmd(self, cmd: str, args: str = ...) -> None: ...
    def getreply(self) -> Reply: ...
    def docmd(self, cmd: str, args: str = ...) -> Reply: ...
    def deliver_many(
        self,
        messages: Iterable[Tuple[str, Union[str, Sequence[str]], Message]],
        mail_options: Sequence[str] = ...,
        rcpt_options: Sequence[str] = ...,
        *,
        transfer: Literal["auto", "data", "bdat"] = ...,
    ) -> list[list[Result]]: ...
    def deliver(
        self,
        from_addr: str,
        to_addrs: Union[str, Sequence[str]],
        msg: Message,
        mail_options: Sequence[str] = ...,
        rcpt_options: Sequence[str] = ...,
        *,
        transfer: Literal["auto", "data", "bdat"] = ...,
        canonical: bool = ...,
    ) -> list[Result]: ...
    def sendmail(
        self,
        from_addr: str,
        to_addrs: Union[str, Sequence[str]],
        msg: Message,
        mail_options: Sequence[str] = ...,
        rcpt_options: Sequence[str] = ...,
    ) -> dict[str, Reply]: ...
    def send_message(
        self,
        msg: email.message.Message,
        from_addr: Optional[str] = ...,
        to_addrs: Optional[Union[str, Sequence[str]]] = ...,
        mail_options: Sequence[str] = ...,
        rcpt_options: Sequence[str] = ...,
    ) -> dict[str, Reply]: ...

class LMTP_SSL(LMTP):
    def __init__(
        self,
        host: str = ...,
        port: int = ...,
        local_hostname: Optional[str] = ...,
        keyfile: Optional[str] = ...,
        certfile: Optional[str] = ...,
        timeout: Optional[float] = ...,
        source_address: Optional[Tuple[str, int]] = ...,
        context: Optional[ssl.SSLContext] = ...,
        *,
        cafile: Optional[str] = ...,
        capath: Optional[str] = ...,
        server_hostname: Optional[str] = ...,
        insecure: bool = ...,
        strict_replies: Optional[bool] = ...,
    ) -> None: ...

class AsyncLMTP:
    """The asyncio client (lmtp/aio.py): LMTP's deliveries awaited, pipelined across tasks."""
    host: str
    port: int
    local_hostname: str
    timeout: Optional[float]
    source_address: Optional[Tuple[str, int]]
    esmtp_features: dict[str, str]
    ehlo_resp: Optional[bytes]
    last_results: list[Result]
    allow_plaintext_auth: bool
    strict_replies: bool
    def __init__(
        self,
        host: str = ...,
        port: int = ...,
        *,
        local_hostname: Optional[str] = ...,
        timeout: Optional[float] = ...,
        source_address: Optional[Tuple[str, int]] = ...,
        starttls: Union[bool, Literal["off", "opportunistic", "required"]] = ...,
        context: Optional[ssl.SSLContext] = ...,
        cafile: Optional[str] = ...,
        capath: Optional[str] = ...,
        certfile: Optional[str] = ...,
        keyfile: Optional[str] = ...,
        server_hostname: Optional[str] = ...,
        insecure: bool = ...,
        user: Optional[str] = ...,
        password: Optional[str] = ...,
        auth_mechanism: Optional[str] = ...,
        allow_plaintext: bool = ...,
        implicit_tls: bool = ...,
        strict_replies: bool = ...,
        max_in_flight: int = ...,
    ) -> None: ...
    async def __aenter__(self) -> "AsyncLMTP": ...
    async def __aexit__(
        self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None: ...
    @property
    def alive(self) -> bool: ...
    @property
    def idle(self) -> bool: ...
    async def connect(self, host: Optional[str] = ..., port: Optional[int] = ...) -> Reply: ...
    def has_extn(self, opt: str) -> bool: ...
    def close(self) -> None: ...
    async def quit(self) -> Reply: ...
    async def starttls(
        self,
        keyfile: Optional[str] = ...,
        certfile: Optional[str] = ...,
        context: Optional[ssl.SSLContext] = ...,
        *,
        cafile: Optional[str] = ...,
        capath: Optional[str] = ...,
        server_hostname: Optional[str] = ...,
        insecure: bool = ...,
    ) -> Reply: ...
    async def login(
        self, user: str, password: str, *, initial_response_ok: bool = ..., allow_plaintext: Optional[bool] = ...
    ) -> Reply: ...
    async def deliver(
        self,
        from_addr: str,
        to_addrs: Union[str, Sequence[str]],
        msg: Message,
        mail_options: Sequence[str] = ...,
        rcpt_options: Sequence[str] = ...,
        *,
        transfer: Literal["auto", "data", "bdat"] = ...,
        canonical: bool = ...,
    ) -> list[Result]: ...
    async def deliver_many(
        self,
        messages: Iterable[Tuple[str, Union[str, Sequence[str]], Message]],
        mail_options: Sequence[str] = ...,
        rcpt_options: Sequence[str] = ...,
        *,
        transfer: Literal["auto", "data", "bdat"] = ...,
    ) -> list[list[Result]]: ...
    async def sendmail(
        self,
        from_addr: str,
        to_addrs: Union[str, Sequence[str]],
        msg: Message,
        mail_options: Sequence[str] = ...,
        rcpt_options: Sequence[str] = ...,
    ) -> dict[str, Reply]: ...
