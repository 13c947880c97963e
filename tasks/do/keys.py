"""Do: idempotency keys — one name per intended send, the same on every resend.

A key is `<campaign>:<day>:<window>:<customer>:<channel>`; gateways hand it to the
provider (docs/gateways.md), the simulated provider journals it. Keys carry no whitespace
or control characters: a customer id with some stands in the key as `key_part` writes it.
"""

from __future__ import annotations

import hashlib
from datetime import date

from sqlalchemy import ColumnElement

from tasks.do.gateways.base import NOT_IN_KEYS, NOT_IN_KEYS_CHARACTERS

__all__ = ["has_unkeyable", "idempotency_key", "key_part"]


def idempotency_key(
    campaign_id: str, slot_day: date, window: str, customer_id: str, channel: str
) -> str:
    """One intended send, named so that any resend of it carries the same key. A customer
    id with whitespace or control characters (which keys never carry) stands in it as
    `key_part` writes it."""
    return f"{campaign_id}:{slot_day:%Y%m%d}:{window}:{key_part(customer_id)}:{channel}"


def key_part(text: str) -> str:
    """`text` as a key carries it: itself, unless it has whitespace or control characters;
    then those as `_`, cut to 24 characters, and a hash of the whole text (two ids that
    differ only there never share a key). Only the per-message path meets such ids
    (`ChunkPart.plain_ids`): the bulk path writes keys in SQL with the ids as they are."""
    if not NOT_IN_KEYS.search(text):
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return f"{NOT_IN_KEYS.sub('_', text)[:24]}~{digest}"


def has_unkeyable(column: ColumnElement[str], dialect: str) -> ColumnElement[bool]:
    """Whether `column` holds a character no key carries (SQLite: GLOB; PostgreSQL: a
    regular expression; both natively, so a chunk of any size is judged in the database)."""
    if dialect == "sqlite":
        return column.op("GLOB")(f"*[{NOT_IN_KEYS_CHARACTERS}]*")
    return column.op("~")(f"[{NOT_IN_KEYS_CHARACTERS}]")
