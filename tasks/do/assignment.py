"""Do: assignment by a stable hash — variants, hold-out, windows and tier-B alternation.

The hash of a key is the first 60 bits of sha256("<salt>:<key>"). A customer's variant
is drawn from the hash of (campaign, customer) against the spec's cumulative shares
(`variant_cuts`), the hold-out above the last cut; their window of the day and their
tier-B channel come from the same hash under other salts. PostgreSQL computes the hash
natively and SQLite through a function registered on the connection (`hash_binds`), so both
back ends draw groups identical to the Python rule (`hash_bits`).
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction

import numpy as np
from sqlalchemy import Connection

from tasks.common.campaigns import CampaignSpec

HOLDOUT = "holdout"
"""The group of the customers drawn above every variant: assigned, never sent."""


HASH_BITS = 60
"""A key's hash: the first 60 bits of sha256("<salt>:<key>"), an integer in [0, 2**60).
Sixty bits are fifteen hex digits, so PostgreSQL's `bit(60)::bigint` stays positive."""
HASH_SPAN = 1 << HASH_BITS
HALF = HASH_SPAN // 2


def hash_bits(salt: str, key: str) -> int:
    """The hash of one key under `salt` (the number the `bucket` SQL macro draws)."""
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


def hash_binds(conn: Connection, hashes: Mapping[str, tuple[str, Sequence[int]]]) -> dict:
    """Make the hashes `role → (salt, ascending cuts)` ready for a query on `conn` that
    calls the `bucket(role, key)` macro (sql/macros/dialect.sql), which yields how many
    of the cuts the hash of `key` reaches (`hash_bits`), once per row however many groups
    it decides between. Returns the bind parameters the query needs for them.

    PostgreSQL computes the hash itself (`sha256`, then `width_bucket` over the cuts),
    from the binds returned; SQLite calls `pdca_bucket_<role>`, registered here on this
    connection with the salt and the cuts bound in (no binds). Either way the query
    yields exactly what the Python rule yields.
    """
    if conn.dialect.name == "postgresql":
        return hash_parameters(hashes)
    raw = conn.connection.driver_connection
    for role, (salt, cuts) in hashes.items():
        function = _bucket_function(salt, cuts)
        raw.create_function(f"pdca_bucket_{role}", 1, function, deterministic=True)
    return {}


def hash_parameters(hashes: Mapping[str, tuple[str, Sequence[int]]]) -> dict[str, str]:
    """The `bucket` macro's bind parameters on PostgreSQL: per role, `<role>_salt` (the
    salt and its separator, '<salt>:') and `<role>_cuts` (an array literal, '{c1,c2}')."""
    binds = {}
    for role, (salt, cuts) in hashes.items():
        binds[f"{role}_salt"] = f"{salt}:"
        binds[f"{role}_cuts"] = "{" + ",".join(str(c) for c in cuts) + "}"
    return binds
