"""Gateways: SMS, IM and app push through a provider's HTTP endpoint.

The webhook contract a provider (or the adapter in front of one) implements is in
`docs/gateways.md`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

from tasks.do.gateways.base import (
    GATEWAY_REF_LENGTH,
    GatewayError,
    OutboundMessage,
    PermanentGatewayError,
    SendReceipt,
    TransientGatewayError,
    _Closing,
    _finish_after_failure,
    _refused,
    _scrub,
    log,
)

TRANSIENT_STATUS = frozenset({408, 425, 429})
"""4xx answers that mean "not now" rather than "not like this" (besides every 5xx)."""


class WebhookGateway(_Closing):
    """SMS, IM or app push through a provider's HTTP endpoint (the contract is in
    docs/gateways.md). Batches of at most `max_batch` messages go in one POST each; a
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
