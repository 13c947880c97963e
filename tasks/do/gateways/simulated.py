"""Gateways: the simulated provider — accepts everything, draws outcomes in the demo."""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Mapping, Sequence

from tasks.do.gateways.base import OutboundMessage, SendReceipt, _Closing, _reference, log


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
