"""Gateways: the simulated provider's durable journal of accepted keys (crash-safe resends)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from tasks.do.gateways.base import (
    OutboundMessage,
    SendReceipt,
    _Closing,
    _key_hash,
    _reference,
    log,
)
from tasks.do.gateways.simulated import SimulatedGateway


def journal_key(key: str, length: int) -> str:
    """The journal's name for `key`: the key itself when it fits the journal's `length`,
    else its start and a hash of the whole (so a long key is recognised on a resend, on
    PostgreSQL as on SQLite, which does not enforce the width)."""
    if len(key) <= length:
        return key
    return f"{key[: length - 41]}~{_key_hash(key, 40)}"


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

        length = SimulatedSend.__table__.c.idempotency_key.type.length
        journal_keys = {m.idempotency_key: journal_key(m.idempotency_key, length) for m in messages}
        with self.engine.begin() as conn:
            found = {
                key: (delivered, responded)
                for key, delivered, responded in conn.execute(
                    select(
                        SimulatedSend.idempotency_key,
                        SimulatedSend.delivered,
                        SimulatedSend.responded,
                    ).where(SimulatedSend.idempotency_key.in_(list(journal_keys.values())))
                )
            }
            known = {key: found[kept] for key, kept in journal_keys.items() if kept in found}
            fresh = [message for message in messages if message.idempotency_key not in known]
            fresh_receipts = {
                receipt.idempotency_key: receipt
                for receipt in (self.inner.send_batch(fresh) if fresh else [])
            }
            now = datetime.now(UTC).replace(tzinfo=None)
            accepted = [
                {
                    "idempotency_key": journal_keys[message.idempotency_key],
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
                    [{"key": journal_keys[key]} for key in known],
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
