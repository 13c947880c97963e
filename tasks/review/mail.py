"""The weekly review as an e-mail: built, then sent over SMTP or written to the outbox.

The message is what every mail client shows well:

    multipart/alternative
    ├── text/plain                  the review as text
    └── multipart/related
        ├── text/html               the review, its images as `cid:` references
        └── image/png …             one inline part per chart, with its Content-ID

so the charts show with no external link (many clients block remote images and `data:`
URIs). Without an SMTP host (the embedded default) the same bytes are written as an
`.eml` file to the outbox folder, which any mail client opens.

Sending is retried only on faults that may pass — the server unreachable or hanging up,
a timeout, a 4xx reply — never on a 5xx reply or refused credentials, which would fail
the same way again. The password is used for AUTH and nowhere else: no log line,
exception or audit entry carries it.
"""

from __future__ import annotations

import secrets
import smtplib
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

from pdca.errors import UserError
from tasks.review.charts import Chart

CID_DOMAIN = "pdca.local"


@dataclass(frozen=True)
class SmtpConfig:
    """Where and how to send: the `smtp_*` settings, the password already unwrapped."""

    host: str
    port: int = 25
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = False
    timeout: float = 30.0
    allow_plain_auth: bool = False
    """Log in over a connection without STARTTLS: only when the settings say so."""

    @classmethod
    def from_settings(cls, settings: Any) -> SmtpConfig | None:
        """The settings' SMTP server, or None when no host is set (write to the outbox)."""
        if not settings.smtp_host:
            return None
        password = settings.smtp_password
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            user=settings.smtp_user,
            password=password.get_secret_value() if password is not None else None,
            starttls=settings.smtp_starttls,
            allow_plain_auth=getattr(settings, "smtp_allow_plain_auth", False),
        )


@dataclass(frozen=True)
class Delivery:
    """What became of a message: sent to a server, or written to the outbox."""

    transport: str
    """`smtp` or `outbox`."""
    recipients: list[str]
    message_id: str
    refused: dict[str, str] = field(default_factory=dict)
    """Recipients the server refused (address → reply) while it accepted others."""
    path: Path | None = None
    """The `.eml` file, for the outbox."""
    server: str | None = None
    """host:port, for SMTP."""

    def audit_detail(self) -> dict[str, Any]:
        """The audit entry's detail: where it went and to whom (staff addresses, never a
        customer's), never a credential."""
        return {
            "transport": self.transport,
            "recipients": self.recipients,
            "refused": self.refused,
            "message_id": self.message_id,
            "path": None if self.path is None else str(self.path),
            "server": self.server,
        }


def content_ids(names: Sequence[str], domain: str = CID_DOMAIN) -> dict[str, str]:
    """A fresh, unique Content-ID (without angle brackets) per image name, as the HTML part
    refers to it: `<img src="cid:...">`. Short, so its header line needs no folding."""
    return {name: f"{name}.{secrets.token_hex(8)}@{domain}" for name in names}


def build_message(
    *,
    subject: str,
    sender: str,
    recipients: Sequence[str],
    text: str,
    html: str,
    images: Mapping[str, Chart],
    pdf: tuple[str, bytes] | None = None,
) -> EmailMessage:
    """The multipart/alternative message: `text`, then `html` related to its `images`
    (Content-ID without brackets → chart), each an inline PNG part; with `pdf` (file name,
    bytes) the message is multipart/mixed, the alternative first, the PDF attached."""
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(idstring="weekly-review", domain=CID_DOMAIN)
    message.set_content(text, subtype="plain", cte="quoted-printable")
    message.add_alternative(html, subtype="html", cte="quoted-printable")
    html_part = message.get_payload()[1]
    for content_id, image in images.items():
        html_part.add_related(
            image.png,
            maintype="image",
            subtype="png",
            cid=f"<{content_id}>",
            disposition="inline",
            filename=f"{image.name}.png",
        )
    if pdf is not None:
        message.add_attachment(pdf[1], maintype="application", subtype="pdf", filename=pdf[0])
    return message


def inline_css(html: str) -> str:
    """The HTML with its stylesheet copied into `style` attributes: Gmail, Outlook and most
    webmail drop or ignore `<style>`. The `<style>` element stays for the clients that do
    honour it (`:nth-child`, which no attribute can carry). Uses the maintained
    `css-inline` package (no remote stylesheet is ever fetched)."""
    import css_inline

    inliner = css_inline.CSSInliner(keep_style_tags=True, load_remote_stylesheets=False)
    return inliner.inline(html)


def send_message(
    message: EmailMessage,
    recipients: Sequence[str],
    config: SmtpConfig,
    *,
    ssl_context: ssl.SSLContext | None = None,
) -> Delivery:
    """Send over SMTP (STARTTLS and AUTH when configured); the recipients the server
    refused while accepting others are reported, not raised. `ssl_context` defaults to
    the system's trusted certificates. A login without STARTTLS is refused (a UserError,
    before connecting) unless `config.allow_plain_auth`: the password would cross the
    network in clear."""
    if config.user and not config.starttls and not config.allow_plain_auth:
        raise UserError(
            f"SMTP server {config.host}:{config.port}: refusing to send the password over a "
            "plain connection: set PDCA_SMTP_STARTTLS=true (or PDCA_SMTP_ALLOW_PLAIN_AUTH=true "
            "to allow it)"
        )
    with smtplib.SMTP(config.host, config.port, timeout=config.timeout) as client:
        client.ehlo()
        if config.starttls:
            client.starttls(context=ssl_context or ssl.create_default_context())
            client.ehlo()
        if config.user:
            client.login(config.user, config.password or "")
        refused = client.send_message(message, to_addrs=list(recipients))
    return Delivery(
        transport="smtp",
        recipients=list(recipients),
        message_id=str(message["Message-ID"]),
        refused={address: _reply(reply) for address, reply in refused.items()},
        server=f"{config.host}:{config.port}",
    )


def write_eml_file(message: EmailMessage, folder: Path, stem: str) -> Delivery:
    """Write the message as `<folder>/<stem>-<UTC time>.eml` (a new file per send: each
    is a message of its own), as a mail client would save it."""
    folder.mkdir(parents=True, exist_ok=True)
    moment = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = folder / f"{stem}-{moment}.eml"
    path.write_bytes(message.as_bytes(policy=SMTP))
    return Delivery(
        transport="outbox",
        recipients=[address.strip() for address in str(message["To"]).split(",") if address],
        message_id=str(message["Message-ID"]),
        path=path.resolve(),
    )


def is_transient(error: BaseException) -> bool:
    """Whether a send that failed with `error` may succeed if tried again.

    Transient: no connection (refused, reset, unreachable), the server hanging up, a
    timeout, a 4xx reply (also when every recipient got one). Permanent: a 5xx reply,
    refused credentials, a certificate that does not verify.
    """
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [_code(reply) for reply in error.recipients.values()]
        return bool(codes) and all(400 <= code < 500 for code in codes)
    if isinstance(error, smtplib.SMTPResponseException):
        return 400 <= error.smtp_code < 500
    if isinstance(error, smtplib.SMTPServerDisconnected):
        return True
    if isinstance(error, ssl.SSLCertVerificationError):
        return False
    return isinstance(error, OSError)  # connection refused/reset, timeouts, unreachable


def retry_on_transient(task: object, task_run: object, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry the send only when its fault may pass."""
    try:
        state.result()
    except Exception as error:
        return is_transient(error)
    return False


def _code(reply: Any) -> int:
    try:
        return int(reply[0])
    except (TypeError, ValueError, IndexError):
        return 0


def _reply(reply: Any) -> str:
    code, text = reply if isinstance(reply, tuple) else (0, reply)
    text = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
    return f"{code} {text}".strip()
