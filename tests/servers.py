"""Real local servers for tests: an SMTP server (aiosmtpd) and an HTTP server (stdlib).

Both listen on 127.0.0.1 on a free port, run in a background thread, record what they
receive so a test can read it back, and stop when their `with` block ends::

    with smtp_server() as server:
        send_something(host=server.host, port=server.port)
    assert server.messages[0].message["Subject"] == "Weekly review"

    with http_server(lambda request: json_response({"ok": True})) as server:
        httpx.post(server.url, json={})
    assert server.requests[0].json() == {}
"""

from __future__ import annotations

import contextlib
import datetime
import email
import email.policy
import ipaddress
import json
import socket
import ssl
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of asking)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


# --- SMTP -------------------------------------------------------------------------------


@dataclass
class ReceivedMail:
    """One message as the SMTP server received it."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    peer: tuple[str, int]
    """The client's address and port: one value per SMTP connection."""
    login: str | None
    """The user the client authenticated as, if it did."""

    @property
    def message(self) -> EmailMessage:
        """The parsed message (modern policy: `get_body`, `iter_parts`, decoded headers)."""
        return email.message_from_bytes(self.data, policy=email.policy.default)


@dataclass
class SmtpServer:
    """A running aiosmtpd server and what it received."""

    host: str
    port: int
    messages: list[ReceivedMail] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    """(user, password) of every AUTH attempt, successful or not."""
    client_context: ssl.SSLContext | None = None
    """With `tls`: a client context that trusts the server's self-signed certificate."""


def self_signed_contexts(host: str = HOST) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) TLS contexts for a fresh self-signed certificate for `host`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(host)), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certificate_pem = certificate.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as folder:
        certificate_file, key_file = Path(folder, "cert.pem"), Path(folder, "key.pem")
        certificate_file.write_bytes(certificate_pem)
        key_file.write_bytes(key_pem)
        server.load_cert_chain(certificate_file, key_file)
    client = ssl.create_default_context(cadata=certificate_pem.decode())
    return server, client


class _Recorder:
    def __init__(
        self, server: SmtpServer, refuse: set[str], refuse_code: str, drop: set[str]
    ) -> None:
        self.server = server
        self.refuse = refuse
        self.refuse_code = refuse_code
        self.drop = drop

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.drop:
            server.transport.close()
            return "421 4.3.2 going away"  # never arrives: the connection is closed
        if address in self.refuse:
            return f"{self.refuse_code} <{address}>: Recipient address rejected"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        login = session.auth_data.login.decode() if session.authenticated else None
        self.server.messages.append(
            ReceivedMail(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                data=envelope.original_content or envelope.content,
                peer=tuple(session.peer),
                login=login,
            )
        )
        return "250 Message accepted for delivery"


@contextlib.contextmanager
def smtp_server(
    *,
    refuse: Iterable[str] = (),
    refuse_code: str = "550 5.1.1",
    credentials: tuple[str, str] | None = None,
    drop: Iterable[str] = (),
    tls: bool = False,
) -> Iterator[SmtpServer]:
    """An SMTP server on a free loopback port, for the `with` block.

    `refuse`: recipient addresses answered with `refuse_code` (a 4xx code for a temporary
    refusal). `drop`: recipient addresses at which the server hangs up without answering
    (a crash mid-batch). `credentials`: (user, password) the server accepts with AUTH
    PLAIN/LOGIN (over the plain connection unless `tls`); without, AUTH is not offered.
    `tls`: the server offers STARTTLS with a self-signed certificate, requires it before
    anything else, and `server.client_context` trusts it.
    """
    server = SmtpServer(HOST, 0)
    kwargs: dict[str, Any] = {}
    if credentials is not None:

        def authenticate(smtp, session, envelope, mechanism, auth_data):
            assert isinstance(auth_data, LoginPassword)
            user, password = auth_data.login.decode(), auth_data.password.decode()
            server.logins.append((user, password))
            ok = (user, password) == credentials
            # handled=False: aiosmtpd answers the failure (535) itself
            return AuthResult(success=ok, handled=ok, auth_data=auth_data)

        kwargs.update(authenticator=authenticate, auth_require_tls=tls)
    if tls:
        kwargs["tls_context"], server.client_context = self_signed_contexts()
        kwargs["require_starttls"] = True
    for _ in range(5):  # the port may be taken between asking and binding
        server.port = free_port()
        controller = Controller(
            _Recorder(server, set(refuse), refuse_code, set(drop)),
            hostname=HOST,
            port=server.port,
            ready_timeout=10,
            **kwargs,
        )
        try:
            controller.start()
        except OSError:
            continue
        break
    else:
        raise RuntimeError("no free port for the SMTP server")
    try:
        yield server
    finally:
        controller.stop()


# --- HTTP -------------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    """One request as the HTTP server received it; header names in lower case."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Reply = tuple[int, dict[str, str], bytes]
"""(status, headers, body) of a response."""


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    """A JSON reply for a responder to return."""
    body = json.dumps(payload).encode()
    return status, {"Content-Type": "application/json", **(headers or {})}, body


def text_response(text: str, status: int, headers: dict[str, str] | None = None) -> Reply:
    """A plain-text reply for a responder to return."""
    return status, {"Content-Type": "text/plain", **(headers or {})}, text.encode()


@dataclass
class HttpServer:
    """A running HTTP server: its base URL and the requests it received, in order.

    `release` is set when the server stops; a responder that simulates a hanging
    provider waits on it (`server.release.wait(5)`) so the test ends promptly.
    """

    url: str
    requests: list[RecordedRequest] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


@contextlib.contextmanager
def http_server(responder: Callable[[RecordedRequest], Reply]) -> Iterator[HttpServer]:
    """A threading HTTP server on a free loopback port that records every request and
    answers with `responder(request)`, for the `with` block."""
    state: HttpServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            request = RecordedRequest(
                method=self.command,
                path=self.path,
                headers={name.lower(): value for name, value in self.headers.items()},
                body=self.rfile.read(length) if length else b"",
            )
            state.requests.append(request)
            status, headers, body = responder(request)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = _handle

        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request, client_address) -> None:
            pass  # a client that gave up (timeout test) leaves a broken pipe: expected

    httpd = Server((HOST, 0), Handler)
    state = HttpServer(url=f"http://{HOST}:{httpd.server_address[1]}")
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
