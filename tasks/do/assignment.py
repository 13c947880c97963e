"""Do: assignment by a stable hash — variants, hold-out, windows and tier-B alternation.

The hash of a key is the first 60 bits of sha256("<salt>:<key>"). A customer's variant
is drawn from the hash of (campaign, customer) against the spec's cumulative shares
(`variant_cuts`), the hold-out above the last cut; their window of the day and their
tier-B channel come from the same hash under other salts. PostgreSQL computes the hash
natively and SQLite through a function registered on the connection (`bucket`), so both
back ends draw groups identical to the Python rule (`hash_bits`).
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Callable, Sequence
from fractions import Fraction

import numpy as np
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Integer,
    String,
    cast,
    func,
    literal,
    literal_column,
)
from sqlalchemy.dialects import postgresql

from tasks.common.campaigns import CampaignSpec

HOLDOUT = "holdout"
"""The group of the customers drawn above every variant: assigned, never sent."""


HASH_BITS = 60
"""A key's hash: the first 60 bits of sha256("<salt>:<key>"), an integer in [0, 2**60).
Sixty bits are fifteen hex digits, so PostgreSQL's `bit(60)::bigint` stays positive."""
HASH_SPAN = 1 << HASH_BITS
HALF = HASH_SPAN // 2


def hash_bits(salt: str, key: str) -> int:
    """The hash of one key under `salt` (the same number `bucket` draws in SQL)."""
    return int.from_bytes(hashlib.sha256(f"{salt}:{key}".encode()).digest()[:8], "big") >> 4


def cut(share: float) -> int:
    """The hash below which a key falls in the first `share` of the span: for every hash h,
    `h < cut(share)` exactly when `h / 2**60 < share` (computed without rounding)."""
    return min(math.ceil(Fraction(share) * HASH_SPAN), HASH_SPAN)


def variant_cuts(spec: CampaignSpec) -> list[tuple[str, int]]:
    """Each variant with the cut it is drawn below, in the spec's order; the hold-out is
    drawn above the last cut (the hold-out share is what the variants leave)."""
    variants = spec.experiment.variants
    edges = np.cumsum(list(variants.values()))
    return [(name, cut(float(edge))) for name, edge in zip(variants, edges, strict=True)]


def window_cuts(windows: int) -> list[int]:
    """The cuts that split the span evenly into `windows` windows (window k lies between
    cut k-1 and cut k): the k-th is ceil(k · 2**60 / windows)."""
    return [-(-k * HASH_SPAN // windows) for k in range(1, windows)]


def _bucket_function(salt: str, cuts: Sequence[int]) -> Callable[[str], int]:
    """`key → how many of the ascending cuts its hash reaches`, for one salt: what SQLite
    calls per row (the salt and the cuts bound in, the hash inlined: it runs a million
    times)."""
    salted, bounds = hashlib.sha256(f"{salt}:".encode()), tuple(cuts)
    from_bytes, reached = int.from_bytes, bisect.bisect_right

    def bucket_of(key: str) -> int:
        digest = salted.copy()  # sha256 with the salt already in
        digest.update(key.encode())
        return reached(bounds, from_bytes(digest.digest()[:8], "big") >> 4)

    return bucket_of


def bucket(conn: Connection, salt: str, key: ColumnElement, cuts: Sequence[int]) -> ColumnElement:
    """SQL for how many of the ascending `cuts` the hash of `key` under `salt` reaches
    (`hash_bits`), evaluated once per row however many groups it decides between.

    PostgreSQL computes the hash itself (`sha256`, then `width_bucket` over the cuts);
    SQLite calls a function registered on this connection for this salt and these cuts.
    Either way the expression yields exactly what the Python rule yields.
    """
    if conn.dialect.name == "postgresql":
        digest = func.sha256(func.convert_to(literal(f"{salt}:") + key, literal_column("'UTF8'")))
        hex_digest = func.encode(digest, literal_column("'hex'"), type_=String)
        prefix = literal_column("'x'", String) + func.left(hex_digest, 15, type_=String)
        hashed = cast(cast(prefix, postgresql.BIT(HASH_BITS)), BigInteger)
        bounds = postgresql.array([literal(c, BigInteger) for c in cuts])
        return func.width_bucket(hashed, bounds, type_=Integer)
    name = "pdca_bucket_" + hashlib.sha256(repr((salt, list(cuts))).encode()).hexdigest()[:16]
    raw = conn.connection.driver_connection
    raw.create_function(name, 1, _bucket_function(salt, cuts), deterministic=True)
    return getattr(func, name)(key, type_=Integer)
