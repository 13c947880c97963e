"""Gateways: e-mail through an SMTP server."""

from __future__ import annotations

import email.utils
import re
import smtplib
import socket
import ssl
from collections.abc import Sequence
from email.message import EmailMessage

from tasks.do.gateways.base import (
    GATEWAY_REF_LENGTH,
    OutboundMessage,
    PermanentGatewayError,
    SendReceipt,
    TransientGatewayError,
    UnusableGatewayError,
    _Closing,
    _finish_after_failure,
    _key_hash,
    _refused,
    _scrub,
    log,
)

_NOT_ATEXT = re.compile(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+")
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


class SmtpGateway(_Closing):
    """E-mail through an SMTP server: one connection per batch, one MIME message each.

    The message is text/plain, or multipart/alternative (text, then HTML) when the
    message has HTML. Its `Message-ID` is derived from the idempotency key
    (`<key@sender-domain>`, or a hash of the key when the key is not a valid Message-ID
    part), so a resent message is recognisable; it is also the receipt's `gateway_ref`.
    A refused recipient or message fails that message's receipt (retryable on a 4xx
    reply); a connection that cannot be opened raises `TransientGatewayError`, refused
    credentials `PermanentGatewayError`. With `starttls`, the server's certificate is
    checked against the system's CAs, or `ssl_context` (a private CA). Without it, a login
    (a `user` set) is refused — `UnusableGatewayError`, nothing sent — unless
    `allow_plain_auth`: the password would cross the network in clear.
    """

    name = "smtp"

    def __init__(
        self,
        host: str,
        port: int = 25,
        user: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        sender: str = "pdca@localhost",
        timeout: float = 10,
        *,
        local_hostname: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        allow_plain_auth: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.user = user
        self._password = password
        self.starttls = starttls
        self.sender = sender
        self.timeout = timeout
        self._local_hostname = local_hostname
        self._ssl_context = ssl_context
        self.allow_plain_auth = allow_plain_auth
        self._sender_address = email.utils.parseaddr(sender)[1] or sender
        domain = self._sender_address.rpartition("@")[2]
        self._domain = domain if _DOT_ATOM.fullmatch(domain or "") else "pdca.localhost"

    def __repr__(self) -> str:
        return f"SmtpGateway(host={self.host!r}, port={self.port}, user={self.user!r})"

    def message_id(self, idempotency_key: str) -> str:
        """The Message-ID of the send with `idempotency_key`, the same on every resend:
        `<key@sender-domain>` when the key is a short dot-atom, else the key's characters
        that may stand there (at most 40) and a hash of the whole key."""
        left = idempotency_key
        if len(left) > 64 or not _DOT_ATOM.fullmatch(left):
            readable = ".".join(_NOT_ATEXT.split(idempotency_key))
            readable = re.sub(r"\.+", ".", readable)[:40].strip(".")
            left = ".".join(filter(None, [readable, _key_hash(idempotency_key, 16)]))
        return f"<{left}@{self._domain}>"

    def build(self, message: OutboundMessage) -> EmailMessage:
        """The MIME message for `message` (`to` must be set)."""
        mime = EmailMessage()
        mime["From"] = self.sender
        mime["To"] = message.to
        mime["Subject"] = message.subject or ""
        mime["Date"] = email.utils.formatdate(usegmt=True)
        mime["Message-ID"] = self.message_id(message.idempotency_key)
        mime.set_content(message.body)
        if message.html is not None:
            mime.add_alternative(message.html, subtype="html")
        return mime

    def _connect(self) -> smtplib.SMTP:
        where = f"SMTP server {self.host}:{self.port}"
        if self.user and not self.starttls and not self.allow_plain_auth:
            raise UnusableGatewayError(
                f"{where}: refusing to send the password over a plain connection: set "
                "PDCA_SMTP_STARTTLS=true (or PDCA_SMTP_ALLOW_PLAIN_AUTH=true to allow it)"
            )
        if self._local_hostname is None:
            self._local_hostname = socket.getfqdn()
        try:
            smtp = smtplib.SMTP(
                self.host, self.port, local_hostname=self._local_hostname, timeout=self.timeout
            )
        except (OSError, smtplib.SMTPException) as exc:
            raise TransientGatewayError(f"{where}: cannot connect ({exc})") from exc
        try:
            if self.starttls:
                smtp.starttls(context=self._ssl_context or ssl.create_default_context())
            if self.user:
                smtp.login(self.user, self._password or "")
        except smtplib.SMTPAuthenticationError as exc:
            smtp.close()
            raise PermanentGatewayError(f"{where}: login refused ({exc.smtp_code})") from None
        except (smtplib.SMTPNotSupportedError, ssl.SSLError) as exc:
            smtp.close()
            raise PermanentGatewayError(f"{where}: {type(exc).__name__}: {exc}") from None
        except (OSError, smtplib.SMTPException) as exc:
            smtp.close()
            raise TransientGatewayError(f"{where}: {type(exc).__name__} during setup") from None
        return smtp

    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[SendReceipt]:
        if not messages:
            return []
        smtp = self._connect()
        receipts: list[SendReceipt] = []
        try:
            for message in messages:
                if not message.to:
                    receipts.append(_refused(message, "no e-mail address"))
                    continue
                try:
                    mime = self.build(message)
                    smtp.send_message(mime, from_addr=self._sender_address, to_addrs=[message.to])
                except smtplib.SMTPRecipientsRefused as exc:
                    code, reply = next(iter(exc.recipients.values()))
                    receipts.append(self._reply_failure(message, "recipient refused", code, reply))
                except smtplib.SMTPDataError as exc:
                    receipts.append(
                        self._reply_failure(
                            message, "message refused", exc.smtp_code, exc.smtp_error
                        )
                    )
                except smtplib.SMTPSenderRefused as exc:
                    error_type = (
                        TransientGatewayError
                        if 400 <= exc.smtp_code < 500
                        else PermanentGatewayError
                    )
                    reply = exc.smtp_error.decode("utf-8", "replace")
                    failure = error_type(
                        f"SMTP server refused the sender: {exc.smtp_code} {_scrub(reply)}"
                    )
                    return _finish_after_failure(receipts, messages, failure)
                except (ValueError, UnicodeError, smtplib.SMTPNotSupportedError) as exc:
                    receipts.append(_refused(message, f"cannot send: {_scrub(str(exc))}"))
                except (OSError, smtplib.SMTPException) as exc:
                    failure = TransientGatewayError(
                        f"SMTP connection lost ({type(exc).__name__}); the message in flight "
                        "may have been sent"
                    )
                    return _finish_after_failure(receipts, messages, failure)
                else:
                    reference = mime["Message-ID"][:GATEWAY_REF_LENGTH]
                    receipts.append(SendReceipt(message.idempotency_key, True, reference))
        finally:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()
        log.debug(
            "smtp: %d of %d messages accepted",
            sum(receipt.accepted for receipt in receipts),
            len(receipts),
        )
        return receipts

    @staticmethod
    def _reply_failure(
        message: OutboundMessage, what: str, code: int, reply: bytes | str
    ) -> SendReceipt:
        text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
        return _refused(message, f"{what}: {code} {_scrub(text)}", retryable=400 <= code < 500)
