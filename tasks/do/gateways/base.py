"""Gateways: the protocol every provider kind implements, its messages, receipts and errors.

The design — the outbox before the gateway, idempotency keys, what a receipt and an
exception mean, privacy — is in `docs/gateways.md`.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

log = logging.getLogger("tasks.do.gateways")

SEND_CHANNELS = ("phone", "sms", "im", "app_push", "email")
"""The channels dispatch sends on (`branch` and `partner` touches come from feeds)."""

WEBHOOK_CHANNELS = ("sms", "im", "app_push")
"""The channels that go to an HTTP provider when a webhook URL is configured for them."""

MAX_KEY_LENGTH = 200
"""An idempotency key's maximum length: campaign, day, window, customer and channel fit."""

KEY_PATTERN = re.compile(rf"[^\s\x00-\x1f\x7f]{{1,{MAX_KEY_LENGTH}}}")
"""Keys have no whitespace or control characters (they are logged and sent as they are)."""

NOT_IN_KEYS = re.compile(r"[\s\x00-\x1f\x7f]")
"""The characters a key never has."""

NOT_IN_KEYS_CHARACTERS = "".join(
    character for character in map(chr, range(1, 0x3001)) if NOT_IN_KEYS.match(character)
)
"""Each of them but NUL (which no database text holds), for SQL character classes."""

GATEWAY_REF_LENGTH = 128
"""The outbox's `gateway_ref` column width: every gateway's references fit it."""

MAX_ERROR_LENGTH = 300
"""Error texts in receipts and exceptions are cut here (they end up in the outbox)."""


def masked(address: str) -> str:
    """`address` with most of it hidden, for logs, artifacts and reports.

    E-mail: the first character of the local part and the domain (`a***@example.com`).
    Phone number: the country code when written apart (`+86 ...`), then at most the first
    three digits and the last four, hiding at least four (`+86 138****0001`; ten digits
    keep two in front, `+1 41****0100`; an unseparated international number counts as
    one, `+861****0001`). Anything else (a device token, an IM id) keeps its first two and
    last two characters. The stars never tell the length.
    """
    text = address.strip()
    if "@" in text:
        local, _, domain = text.rpartition("@")
        return f"{local[:1]}***@{domain}" if local else f"***@{domain}"
    digits = re.sub(r"\D", "", text)
    if re.fullmatch(r"\+?[\d\s().-]+", text) and len(digits) >= 7:
        separated = re.match(r"(\+\d{1,3})[\s.-]+(.*)", text)
        if separated:
            prefix, national = separated.group(1) + " ", re.sub(r"\D", "", separated.group(2))
        else:
            prefix, national = ("+" if text.startswith("+") else ""), digits
        if len(national) < 8:
            return f"{prefix}****{national[-2:]}"
        head = min(3, len(national) - 8)
        return f"{prefix}{national[:head]}****{national[-4:]}"
    if len(text) <= 6:
        return "****"
    return f"{text[:2]}****{text[-2:]}"


@dataclass(frozen=True, repr=False)
class OutboundMessage:
    """One intended send, as written to the outbox.

    `idempotency_key` identifies the send across retries and reruns (unique per outbox
    row); `to` is the phone number, e-mail address or device/IM id, `None` when the
    customer has none (the gateway refuses it). The repr masks `to` and shows only the
    length of the texts.
    """

    idempotency_key: str
    channel: str
    customer_id: str
    to: str | None
    subject: str | None
    body: str
    html: str | None
    variant: str

    def __post_init__(self) -> None:
        if not KEY_PATTERN.fullmatch(self.idempotency_key):
            raise ValueError(
                f"idempotency key {self.idempotency_key[:MAX_KEY_LENGTH]!r}: expected 1 to "
                f"{MAX_KEY_LENGTH} characters without whitespace or control characters"
            )

    @property
    def masked_to(self) -> str | None:
        """The address as logs may show it."""
        return None if self.to is None else masked(self.to)

    def __repr__(self) -> str:
        html = "None" if self.html is None else f"<{len(self.html)} chars>"
        return (
            f"OutboundMessage(idempotency_key={self.idempotency_key!r}, "
            f"channel={self.channel!r}, customer_id={self.customer_id!r}, "
            f"to={self.masked_to!r}, subject={self.subject!r}, "
            f"body=<{len(self.body)} chars>, html={html}, variant={self.variant!r})"
        )


@dataclass
class SendReceipt:
    """The gateway's answer for one message.

    `accepted`: the gateway took the message (the outbox row is marked sent, with
    `gateway_ref`). `delivered`/`responded`: known only to the simulated gateway (`None`
    otherwise; real outcomes arrive later in the touches feed). `retryable`: a message
    not accepted that is worth sending again with the same key.
    """

    idempotency_key: str
    accepted: bool
    gateway_ref: str | None
    delivered: bool | None = None
    responded: bool | None = None
    error: str | None = None
    retryable: bool = False


class GatewayError(Exception):
    """A gateway call failed as a whole: none of the batch was accepted."""


class TransientGatewayError(GatewayError):
    """Worth retrying: a timeout, a connection error, a 5xx or 429 answer.

    `retry_after`: seconds the provider asked to wait (HTTP `Retry-After`), if any.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentGatewayError(GatewayError):
    """Not worth retrying as it stands: bad credentials, a 4xx answer, a bad request."""


class UnusableGatewayError(GatewayError):
    """The gateway cannot be used as configured (say, a password it would send over a
    plain connection): nothing was sent and no retry helps until the settings change.
    Dispatch leaves the channel's sends for the next run rather than failing them: the
    messages are fine, the configuration is not."""


@runtime_checkable
class Gateway(Protocol):
    """What dispatch needs from a channel gateway."""

    name: str

    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[SendReceipt]:
        """Send `messages`; one receipt per message, in the same order."""
        ...

    def close(self) -> None:
        """Release connections; the gateway is not used afterwards."""
        ...


class _Closing:
    """Context-manager support: `with gateway_for(...) as gateway: ...`."""

    def close(self) -> None:
        """Nothing to release by default."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _refused(message: OutboundMessage, error: str, retryable: bool = False) -> SendReceipt:
    return SendReceipt(message.idempotency_key, False, None, error=error, retryable=retryable)


def _key_hash(key: str, length: int) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:length]


def _reference(prefix: str, key: str) -> str:
    """`<prefix>-<key>`, or `<prefix>-<hash of key>` when that would not fit the outbox."""
    reference = f"{prefix}-{key}"
    return reference if len(reference) <= GATEWAY_REF_LENGTH else f"{prefix}-{_key_hash(key, 40)}"


def _finish_after_failure(
    receipts: list[SendReceipt], messages: Sequence[OutboundMessage], exc: GatewayError
) -> list[SendReceipt]:
    """A batch cut short by `exc` after `receipts`: raise when nothing was accepted (the
    caller may retry everything), otherwise fail the rest in their receipts."""
    if not any(receipt.accepted for receipt in receipts):
        raise exc
    retryable = isinstance(exc, TransientGatewayError)
    rest = messages[len(receipts) :]
    log.warning("%d of %d messages not sent: %s", len(rest), len(messages), exc)
    return receipts + [_refused(message, str(exc), retryable) for message in rest]


_EMAIL_IN_TEXT = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE_IN_TEXT = re.compile(r"\+?\d[\d\s-]{5,}\d")


def _scrub(text: str, secrets: Sequence[str | None] = ()) -> str:
    """Provider text made safe for logs and the outbox: secrets removed, addresses masked,
    whitespace collapsed, length capped."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = _EMAIL_IN_TEXT.sub(lambda match: masked(match.group()), text)
    text = _PHONE_IN_TEXT.sub(lambda match: masked(match.group()), text)
    text = " ".join(text.split())
    return text if len(text) <= MAX_ERROR_LENGTH else text[: MAX_ERROR_LENGTH - 1] + "…"
