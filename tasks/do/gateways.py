"""Channel gateways: one interface for every way dispatch sends a message.

The dispatch stage writes each intended send to the `outbox` table *before* it calls a
gateway, and marks the row with the receipt afterwards (exactly-once dispatch, see
DESIGN.md). This module is the sending half only; it never touches the outbox (the
simulated gateway's own journal, `JournaledGateway`, is the one table it writes):

- `OutboundMessage` — one send, carrying an **idempotency key** (unique per outbox row,
  stable across reruns). Every gateway hands the key to the provider — the SMTP
  `Message-ID`, the webhook's `Idempotency-Key` header and per-message `idempotency_key`
  field — so a request retried after a timeout is recognisable as the same send.
- `Gateway.send_batch(messages)` — one `SendReceipt` per message, in the same order.
  Per-message problems (a refused address, a provider's per-message refusal) come back as
  receipts with `accepted=False`; `retryable=True` marks those worth sending again
  (temporary refusals, and the rest of a batch cut short after part of it was accepted).
  A call raises `TransientGatewayError` (timeouts, connection errors, 5xx, 429) or
  `PermanentGatewayError` (bad credentials, other 4xx) only when *nothing* of the batch
  was accepted, so an exception never hides an accepted send.
- Gateways: `SimulatedGateway` (the default; accepts everything and, in the demo, draws
  delivery and response deterministically), `CallListGateway` (the phone channel:
  relationship managers call from the exported call list), `SmtpGateway` (e-mail),
  `WebhookGateway` (SMS, IM and app-push providers over HTTP), and `RateLimitedGateway`
  (a per-channel token bucket around any of them). `gateway_for(channel, settings)`
  picks one per channel.
- Bulk: `JournaledGateway.send_selected(channel, selection)` takes sends already in the
  database as one SQL selection and journals them set-based — what dispatch uses for
  the simulated gateways, where a million messages would only be Python objects. Real
  providers always go through `send_batch`.
- Retries: in a flow, wrap `send_batch` in a task that retries only transient failures::

      @task(retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=1),
            retry_condition_fn=retry_on_transient)
      def send_messages(...): ...

  (a plain Prefect retry would also retry a `PermanentGatewayError`). Outside Prefect,
  `send_with_retries` does the same with exponential backoff, and also resends the
  messages whose receipts say `retryable`.

Privacy: a message's address (`to`) is never logged nor put in an exception; `masked()`
shortens it (`+86 138****0001`, `a***@example.com`) and `OutboundMessage`'s repr uses it.
Passwords and tokens appear in no repr, log line or exception.

The webhook contract a provider (or the adapter in front of one) implements:
``POST <url>`` with ``Authorization: Bearer <token>`` (when a token is set),
``Idempotency-Key: batch-<hash of the message keys>`` and the JSON body
``{"channel": "sms", "messages": [{"idempotency_key", "to", "subject", "body", "html"}]}``
(no customer id or variant: the provider gets only what it needs to deliver). It answers
2xx with ``{"receipts": [{"idempotency_key", "accepted", "gateway_ref", "error",
"retryable"}]}`` (or the bare list; receipts are matched by key, in any order; an empty
2xx body accepts the whole request), 429/5xx when it cannot take the request now, and
another 4xx when the request is wrong.
"""

from __future__ import annotations

import email.utils
import hashlib
import logging
import math
import re
import smtplib
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

import httpx

log = logging.getLogger(__name__)

SEND_CHANNELS = ("phone", "sms", "im", "app_push", "email")
"""The channels dispatch sends on (`branch` and `partner` touches come from feeds)."""

WEBHOOK_CHANNELS = ("sms", "im", "app_push")
"""The channels that go to an HTTP provider when a webhook URL is configured for them."""

MAX_KEY_LENGTH = 200
"""An idempotency key's maximum length: campaign, day, window, customer and channel fit."""

KEY_PATTERN = re.compile(rf"[^\s\x00-\x1f\x7f]{{1,{MAX_KEY_LENGTH}}}")
"""Keys have no whitespace or control characters (they are logged and sent as they are)."""

GATEWAY_REF_LENGTH = 128
"""The outbox's `gateway_ref` column width: every gateway's references fit it."""

MAX_ERROR_LENGTH = 300
"""Error texts in receipts and exceptions are cut here (they end up in the outbox)."""


# --- messages and receipts ------------------------------------------------------------


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


# --- simulated gateways ---------------------------------------------------------------


class SimulatedGateway(_Closing):
    """The default gateway: accepts every message (`gateway_ref` = `sim-<key>`).

    With `outcomes` (channel → (delivery_rate, response_rate)), it also draws whether
    each message of those channels is delivered and, if delivered, responded
    (response_rate = responded / delivered, as in the metrics contract). The draw is a
    hash of (seed, idempotency key): a rerun, a retry or another batching of the same
    sends draws the same outcomes. `sent` lists the keys sent when `record` is true (about
    90 bytes a message: pass `record=False` for millions); `counts` always holds the
    (channel, "sent" | "delivered" | "responded") totals.
    """

    name = "simulated"
    ref_prefix = "sim"

    def __init__(
        self,
        seed: int | None = None,
        outcomes: Mapping[str, tuple[float, float]] | None = None,
        *,
        record: bool = True,
    ) -> None:
        for channel, rates in (outcomes or {}).items():
            if len(rates) != 2 or not all(0.0 <= rate <= 1.0 for rate in rates):
                raise ValueError(
                    f"outcomes[{channel!r}]: expected (delivery_rate, response_rate) "
                    f"between 0 and 1, got {rates!r}"
                )
        self.seed = seed
        self.outcomes = dict(outcomes or {})
        self.record = record
        self.sent: list[str] = []
        self.counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def draw(self, message: OutboundMessage) -> tuple[bool | None, bool | None]:
        """(delivered, responded) for `message`; (None, None) for a channel without rates."""
        return self.draw_key(message.channel, message.idempotency_key)

    def draw_key(self, channel: str, idempotency_key: str) -> tuple[bool | None, bool | None]:
        """(delivered, responded) of the send with this key on `channel`."""
        rates = self.outcomes.get(channel)
        if rates is None:
            return None, None
        delivery_rate, response_rate = rates
        digest = hashlib.blake2b(
            f"{self.seed}\x1f{idempotency_key}".encode(), digest_size=16
        ).digest()
        first = int.from_bytes(digest[:8], "big") / 2**64
        second = int.from_bytes(digest[8:], "big") / 2**64
        delivered = first < delivery_rate
        return delivered, delivered and second < response_rate

    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[SendReceipt]:
        receipts = []
        counts: Counter[tuple[str, str]] = Counter()
        for message in messages:
            delivered, responded = self.draw(message)
            receipts.append(
                SendReceipt(
                    message.idempotency_key,
                    True,
                    _reference(self.ref_prefix, message.idempotency_key),
                    delivered=delivered,
                    responded=responded,
                )
            )
            counts[message.channel, "sent"] += 1
            counts[message.channel, "delivered"] += bool(delivered)
            counts[message.channel, "responded"] += bool(responded)
        with self._lock:
            self.counts.update(counts)
            if self.record:
                self.sent.extend(message.idempotency_key for message in messages)
        log.debug("%s: %d messages accepted", self.name, len(messages))
        return receipts


class CallListGateway(SimulatedGateway):
    """The phone channel: nothing is sent; the customer goes on the call list that
    relationship managers work through (`pdca export touches`). Accepted means listed
    (`gateway_ref` = `call-<key>`); call outcomes come back in the touches feed, or are
    drawn in the demo like the simulated gateway's."""

    name = "call-list"
    ref_prefix = "call"


# --- SMTP -------------------------------------------------------------------------------

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
    checked against the system's CAs, or `ssl_context` (a private CA).
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
        if self._local_hostname is None:
            self._local_hostname = socket.getfqdn()
        where = f"SMTP server {self.host}:{self.port}"
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


# --- HTTP webhook ------------------------------------------------------------------------

TRANSIENT_STATUS = frozenset({408, 425, 429})
"""4xx answers that mean "not now" rather than "not like this" (besides every 5xx)."""


class WebhookGateway(_Closing):
    """SMS, IM or app push through a provider's HTTP endpoint (the contract is in the
    module docstring). Batches of at most `max_batch` messages go in one POST each; a
    retried POST carries the same `Idempotency-Key`. The token and the URL's query are
    never shown: errors name the endpoint by scheme, host and path."""

    def __init__(
        self,
        url: str,
        channel: str,
        timeout: float = 5.0,
        token: str | None = None,
        max_batch: int = 500,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.url = url
        self.channel = channel
        self.timeout = timeout
        self.max_batch = max_batch
        self.name = f"webhook-{channel}"
        parts = urlsplit(url)
        self._secrets = [token, parts.query, parts.password]
        self.endpoint = (
            f"{parts.scheme}://{parts.hostname}"
            + (f":{parts.port}" if parts.port else "")
            + parts.path
        )
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(timeout=timeout, headers=headers, transport=transport)

    def __repr__(self) -> str:
        return f"WebhookGateway(endpoint={self.endpoint!r}, channel={self.channel!r})"

    def close(self) -> None:
        self._client.close()

    @staticmethod
    def batch_key(messages: Sequence[OutboundMessage]) -> str:
        """The request's `Idempotency-Key`: a hash of its messages' keys, so the same
        batch always carries the same key."""
        keys = "\n".join(message.idempotency_key for message in messages)
        return "batch-" + hashlib.sha256(keys.encode()).hexdigest()[:32]

    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[SendReceipt]:
        receipts: list[SendReceipt] = []
        for start in range(0, len(messages), self.max_batch):
            chunk = messages[start : start + self.max_batch]
            try:
                receipts.extend(self._post(chunk))
            except GatewayError as exc:
                return _finish_after_failure(receipts, messages, exc)
        log.debug(
            "%s: %d of %d messages accepted",
            self.name,
            sum(receipt.accepted for receipt in receipts),
            len(receipts),
        )
        return receipts

    def _post(self, chunk: Sequence[OutboundMessage]) -> list[SendReceipt]:
        sendable = [message for message in chunk if message.to]
        by_key = {
            message.idempotency_key: _refused(message, "no address")
            for message in chunk
            if not message.to
        }
        if sendable:
            by_key.update(self._receipts(sendable, self._request(sendable)))
        return [by_key[message.idempotency_key] for message in chunk]

    def _request(self, messages: Sequence[OutboundMessage]) -> httpx.Response:
        payload: dict[str, Any] = {
            "channel": self.channel,
            "messages": [
                {
                    "idempotency_key": message.idempotency_key,
                    "to": message.to,
                    "subject": message.subject,
                    "body": message.body,
                    "html": message.html,
                }
                for message in messages
            ],
        }
        where = f"{self.name} {self.endpoint}"
        try:
            response = self._client.post(
                self.url, json=payload, headers={"Idempotency-Key": self.batch_key(messages)}
            )
        except httpx.TimeoutException as exc:
            raise TransientGatewayError(
                f"{where}: no answer within {self.timeout} s ({type(exc).__name__})"
            ) from None
        except httpx.TransportError as exc:
            raise TransientGatewayError(
                f"{where}: {type(exc).__name__}: {_scrub(str(exc), self._secrets)}"
            ) from None
        status = response.status_code
        if 200 <= status < 300:
            return response
        detail = _scrub(response.text, self._secrets)
        message = f"{where}: HTTP {status}" + (f": {detail}" if detail else "")
        if status >= 500 or status in TRANSIENT_STATUS:
            raise TransientGatewayError(message, _retry_after(response))
        raise PermanentGatewayError(message)

    def _receipts(
        self, messages: Sequence[OutboundMessage], response: httpx.Response
    ) -> dict[str, SendReceipt]:
        if not response.content.strip():
            return {m.idempotency_key: SendReceipt(m.idempotency_key, True, None) for m in messages}
        try:
            data = response.json()
        except ValueError:
            raise PermanentGatewayError(
                f"{self.name} {self.endpoint}: HTTP {response.status_code} but the body is "
                "not JSON; the provider may have accepted the batch"
            ) from None
        items = data.get("receipts") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise PermanentGatewayError(
                f"{self.name} {self.endpoint}: HTTP {response.status_code} without a "
                "receipts list; the provider may have accepted the batch"
            )
        answered = {
            item["idempotency_key"]: item
            for item in items
            if isinstance(item, dict) and isinstance(item.get("idempotency_key"), str)
        }
        receipts = {}
        for message in messages:
            key = message.idempotency_key
            item = answered.get(key)
            if item is None:
                receipts[key] = _refused(message, "missing from the provider's receipts", True)
                continue
            accepted = item.get("accepted") is True
            reference = item.get("gateway_ref")
            receipts[key] = SendReceipt(
                key,
                accepted,
                None if reference is None else str(reference)[:GATEWAY_REF_LENGTH],
                error=None
                if accepted
                else _scrub(str(item.get("error") or "refused by the provider"), self._secrets),
                retryable=not accepted and item.get("retryable") is True,
            )
        return receipts


def _retry_after(response: httpx.Response) -> float | None:
    """The `Retry-After` header in seconds (the HTTP-date form is ignored)."""
    try:
        return max(0.0, float(response.headers["Retry-After"]))
    except (KeyError, ValueError):
        return None


# --- rate limiting ---------------------------------------------------------------------


class Limiter(Protocol):
    """Anything that blocks until `n` sends are allowed."""

    def acquire(self, n: int = 1) -> object: ...


class RateLimiter:
    """A thread-safe token bucket: `per_second` tokens a second, at most `burst` saved up.

    `acquire(n)` takes `n` tokens, sleeping until they have accrued; `n` may exceed
    `burst` (the bucket goes into debt and the caller waits it off). Waiters are served in
    the order they called. This limits one process. Across workers on a Prefect server, use
    a global concurrency limit with slot decay instead (PLATFORM-NOTES; `rate_limit` warns
    and proceeds when the limit does not exist, so pass `strict=True`)::

        prefect gcl create gateway-sms --limit 50 --slot-decay-per-second 50

        from prefect.concurrency.sync import rate_limit

        class PrefectRateLimit:
            burst = 50                   # at most the limit: a bigger `occupy` never fits
            def acquire(self, n: int = 1) -> None:
                rate_limit("gateway-sms", occupy=n, strict=True)

        gateway = RateLimitedGateway(inner, PrefectRateLimit())
    """

    def __init__(
        self,
        per_second: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not per_second > 0:
            raise ValueError(f"per_second must be positive, got {per_second}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        self.per_second = float(per_second)
        self.burst = int(burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._updated = clock()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RateLimiter(per_second={self.per_second}, burst={self.burst})"

    def acquire(self, n: int = 1) -> float:
        """Take `n` tokens; returns the seconds slept."""
        if n < 0:
            raise ValueError(f"cannot acquire {n} tokens")
        if n == 0:
            return 0.0
        with self._lock:
            now = self._clock()
            elapsed = max(0.0, now - self._updated)
            self._tokens = min(float(self.burst), self._tokens + elapsed * self.per_second)
            self._updated = now
            self._tokens -= n
            wait = -self._tokens / self.per_second if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait


class RateLimitedGateway(_Closing):
    """`inner` at the pace `limiter` allows, counted per message: the batch goes out in
    slices of `chunk_size` (default: the limiter's burst), each after its tokens."""

    def __init__(self, inner: Gateway, limiter: Limiter, chunk_size: int | None = None) -> None:
        self.inner = inner
        self.limiter = limiter
        self.chunk_size = max(1, chunk_size or int(getattr(limiter, "burst", 1)))
        self.name = inner.name

    def __repr__(self) -> str:
        return f"RateLimitedGateway({self.inner!r}, {self.limiter!r})"

    def close(self) -> None:
        self.inner.close()

    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[SendReceipt]:
        receipts: list[SendReceipt] = []
        for start in range(0, len(messages), self.chunk_size):
            chunk = messages[start : start + self.chunk_size]
            self.limiter.acquire(len(chunk))
            try:
                receipts.extend(self.inner.send_batch(chunk))
            except GatewayError as exc:
                return _finish_after_failure(receipts, messages, exc)
        return receipts


# --- retries ---------------------------------------------------------------------------


def send_with_retries(
    gateway: Gateway,
    messages: Sequence[OutboundMessage],
    attempts: int = 3,
    base_delay: float = 0.5,
    *,
    max_delay: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> list[SendReceipt]:
    """`gateway.send_batch(messages)`, tried up to `attempts` times in all.

    Retried: a `TransientGatewayError` (the whole batch again), and the messages whose
    receipts are `retryable` (only those). The wait before try k+1 is `base_delay · 2^(k-1)`
    seconds, at least the provider's `Retry-After`, at most `max_delay`. A
    `PermanentGatewayError` is raised at once. When the tries run out, the last
    `TransientGatewayError` is raised if nothing was accepted; otherwise the messages still
    unsent get failed, retryable receipts. One receipt per message, in order.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {attempts}")
    keys = [message.idempotency_key for message in messages]
    if len(set(keys)) != len(keys):
        raise ValueError("idempotency keys repeat within the batch")
    final: dict[str, SendReceipt] = {}
    pending = list(messages)
    for attempt in range(1, attempts + 1):
        delay = min(max_delay, base_delay * 2 ** (attempt - 1))
        try:
            receipts = gateway.send_batch(pending)
        except TransientGatewayError as exc:
            if attempt == attempts:
                if not any(receipt.accepted for receipt in final.values()):
                    raise
                for message in pending:
                    final[message.idempotency_key] = _refused(message, str(exc), True)
                break
            if exc.retry_after is not None:
                delay = max(delay, min(exc.retry_after, max_delay))
            log.warning(
                "%s: try %d of %d failed (%s); retrying %d messages in %.2f s",
                gateway.name,
                attempt,
                attempts,
                exc,
                len(pending),
                delay,
            )
            sleep(delay)
            continue
        if [receipt.idempotency_key for receipt in receipts] != [
            message.idempotency_key for message in pending
        ]:
            raise RuntimeError(f"{gateway.name}: receipts do not match the messages sent")
        final.update((receipt.idempotency_key, receipt) for receipt in receipts)
        pending = [
            message
            for message, receipt in zip(pending, receipts, strict=True)
            if not receipt.accepted and receipt.retryable
        ]
        if not pending or attempt == attempts:
            break
        log.warning(
            "%s: %d messages refused for now; retrying them in %.2f s",
            gateway.name,
            len(pending),
            delay,
        )
        sleep(delay)
    return [final[key] for key in keys]


def retry_on_transient(task: object, task_run: object, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry the task only on a `TransientGatewayError`."""
    try:
        state.result()
    except TransientGatewayError:
        return True
    except Exception:
        return False
    return False


# --- choosing a gateway ------------------------------------------------------------------


def _secret(value: Any) -> Any:
    """A pydantic `SecretStr` unwrapped; anything else as it is."""
    return value.get_secret_value() if hasattr(value, "get_secret_value") else value


def _configured(
    mapping: Mapping[str, Any] | None, settings: object, name: str, channel: str
) -> Any:
    """A per-channel value: `mapping[channel]`, `mapping["PDCA_<NAME>_<CHANNEL>"]`, else the
    setting `<name>_<channel>` if `settings` has it; `None` when unset or empty."""
    value = None
    if mapping is not None and not isinstance(mapping, Mapping):
        raise TypeError(f"per-channel {name} values: expected a mapping, got {type(mapping)}")
    if mapping is not None:
        value = mapping.get(channel)
        if value is None:
            value = mapping.get(f"PDCA_{name.upper()}_{channel.upper()}")
    if value is None:
        value = getattr(settings, f"{name}_{channel}", None)
    value = _secret(value)
    return None if value is None or value == "" else value


def gateway_for(
    channel: str,
    settings: Any,
    webhook_urls: Mapping[str, str] | None = None,
    *,
    webhook_tokens: Mapping[str, str] | None = None,
    rate_limits: Mapping[str, float | str] | None = None,
    seed: int | None = None,
    outcomes: Mapping[str, tuple[float, float]] | None = None,
) -> Gateway:
    """The gateway for `channel`, from pdca's `Settings` and the per-channel mappings.

    - `email`: `SmtpGateway` when `settings.smtp_host` is set, else simulated;
    - `sms`, `im`, `app_push`: `WebhookGateway` when a URL is configured for the channel,
      else simulated;
    - `phone`: `CallListGateway`.

    Per-channel values (webhook URL, bearer token, rate limit in messages per second) are
    looked up by channel (`{"sms": url}`) or by environment name (`{"PDCA_WEBHOOK_URL_SMS":
    url}`), then in `settings.webhook_url_sms` and the like when those settings exist. A
    rate limit wraps a real gateway in `RateLimitedGateway` (burst: one second's worth);
    simulated gateways are never slowed down. They draw `outcomes` with `seed` and do not
    record keys (the outbox is the record).
    """
    if channel not in SEND_CHANNELS:
        raise ValueError(
            f"pdca sends nothing on channel {channel!r}; gateways exist for "
            + ", ".join(SEND_CHANNELS)
        )
    gateway: Gateway
    if channel == "phone":
        return CallListGateway(seed, outcomes, record=False)
    if channel == "email" and settings.smtp_host:
        gateway = SmtpGateway(
            settings.smtp_host,
            settings.smtp_port,
            user=settings.smtp_user,
            password=_secret(settings.smtp_password),
            starttls=settings.smtp_starttls,
            sender=settings.smtp_sender,
        )
    elif channel in WEBHOOK_CHANNELS and (
        url := _configured(webhook_urls, settings, "webhook_url", channel)
    ):
        gateway = WebhookGateway(
            url,
            channel,
            timeout=float(getattr(settings, "webhook_timeout", None) or 5.0),
            token=_configured(webhook_tokens, settings, "webhook_token", channel),
        )
    else:
        return SimulatedGateway(seed, outcomes, record=False)
    rate = _configured(rate_limits, settings, "rate_limit", channel)
    if rate is not None:
        per_second = float(rate)
        gateway = RateLimitedGateway(gateway, RateLimiter(per_second, math.ceil(per_second)))
    return gateway


class JournaledGateway(_Closing):
    """A simulated gateway that remembers, in the database, every key it accepted.

    A real provider recognises a resent idempotency key and does not send twice; an
    in-memory simulation forgets everything when the process dies. This wrapper keeps the
    simulation honest across crashes: keys already in `simulated_sends` are answered from
    there (their attempts counted), only new keys reach the inner gateway.

    Two ways in: `send_batch` (messages, like every gateway) and `send_selected` (a
    selection of sends already in the database: the bulk path, set-based, for dispatch).
    """

    def __init__(self, inner: SimulatedGateway, engine: Any) -> None:
        self.inner = inner
        self.engine = engine
        self.name = f"journaled-{inner.name}"

    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[SendReceipt]:
        from sqlalchemy import bindparam, insert, select, update

        from pdca.models import SimulatedSend

        keys = [message.idempotency_key for message in messages]
        with self.engine.begin() as conn:
            known = {
                key: (delivered, responded)
                for key, delivered, responded in conn.execute(
                    select(
                        SimulatedSend.idempotency_key,
                        SimulatedSend.delivered,
                        SimulatedSend.responded,
                    ).where(SimulatedSend.idempotency_key.in_(keys))
                )
            }
            fresh = [message for message in messages if message.idempotency_key not in known]
            fresh_receipts = {
                receipt.idempotency_key: receipt
                for receipt in (self.inner.send_batch(fresh) if fresh else [])
            }
            now = datetime.now(UTC).replace(tzinfo=None)
            accepted = [
                {
                    "idempotency_key": message.idempotency_key,
                    "channel": message.channel,
                    "customer_id": message.customer_id,
                    "accepted_at": now,
                    "delivered": fresh_receipts[message.idempotency_key].delivered,
                    "responded": fresh_receipts[message.idempotency_key].responded,
                    "attempts": 1,
                }
                for message in fresh
                if fresh_receipts[message.idempotency_key].accepted
            ]
            if accepted:
                conn.execute(insert(SimulatedSend), accepted)
            if known:
                conn.execute(
                    update(SimulatedSend)
                    .where(SimulatedSend.idempotency_key == bindparam("key"))
                    .values(attempts=SimulatedSend.attempts + 1),
                    [{"key": key} for key in known],
                )
        receipts = []
        for message in messages:
            key = message.idempotency_key
            if key in known:
                delivered, responded = known[key]
                receipts.append(
                    SendReceipt(
                        key, True, _reference(self.inner.ref_prefix, key), delivered, responded
                    )
                )
            else:
                receipts.append(fresh_receipts[key])
        return receipts

    def draws_outcomes(self, channel: str) -> bool:
        """Whether new sends on `channel` get drawn outcomes (else delivered and responded
        stay unknown, None)."""
        return channel in self.inner.outcomes

    def send_selected(self, channel: str, selection: Any) -> int:
        """Accept every send on `channel` that `selection` (a SQLAlchemy select of the
        columns `idempotency_key`, `channel` and `customer_id`) yields, in a transaction
        of its own, as a provider would: new keys are journaled (with drawn outcomes when
        the channel has rates), known keys count one more attempt. Returns how many.

        Set-based: one `insert … select … on conflict`; only outcome rates (or `record`)
        make it read the keys, to draw each send's outcome. The inner gateway's `counts`
        and `sent` grow by every send accepted here, resends included (`send_batch`
        leaves resends out of them: it answers those from the journal alone).
        """
        from sqlalchemy import literal, null, select
        from sqlalchemy.dialects import postgresql, sqlite

        from pdca.models import SimulatedSend

        table = SimulatedSend.__table__
        picked = selection.subquery("picked")
        now = datetime.now(UTC).replace(tzinfo=None)
        counts: Counter[tuple[str, str]] = Counter()
        keys: list[str] = []
        with self.engine.begin() as conn:
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            journal = dialect.insert(table)
            rows: list[dict] | None = None
            if self.draws_outcomes(channel) or self.inner.record:
                rows = []
                for key, customer_id in conn.execute(
                    select(picked.c.idempotency_key, picked.c.customer_id)
                ):
                    delivered, responded = self.inner.draw_key(channel, key)
                    rows.append(
                        {
                            "idempotency_key": key,
                            "channel": channel,
                            "customer_id": customer_id,
                            "accepted_at": now,
                            "delivered": delivered,
                            "responded": responded,
                            "attempts": 1,
                        }
                    )
                    counts[channel, "delivered"] += bool(delivered)
                    counts[channel, "responded"] += bool(responded)
                    keys.append(key)
            else:
                columns = ("idempotency_key", "channel", "customer_id")
                source = select(
                    *(picked.c[name] for name in columns),
                    literal(now, table.c.accepted_at.type),
                    null(),
                    null(),
                    literal(1),
                ).where(picked.c.idempotency_key.is_not(None))  # a WHERE: SQLite's upsert
                journal = journal.from_select(
                    [*columns, "accepted_at", "delivered", "responded", "attempts"], source
                )
            journal = journal.on_conflict_do_update(
                index_elements=[table.c.idempotency_key],
                set_={"attempts": table.c.attempts + 1},
            )
            if rows is None:  # each selected key is inserted or counted again: one row each
                accepted = conn.execute(journal.execution_options(preserve_rowcount=True)).rowcount
            else:
                accepted = len(rows)
                if rows:
                    conn.execute(journal, rows)
        counts[channel, "sent"] += accepted
        with self.inner._lock:
            self.inner.counts.update(counts)
            if self.inner.record:
                self.inner.sent.extend(keys)
        log.debug("%s: %d messages accepted", self.name, accepted)
        return accepted
