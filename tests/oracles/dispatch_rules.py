"""A test oracle: the dispatch rules restated on DataFrames, independently of the SQL.

Dispatch applies its rules in the database (`sql/dispatch_stage.sql` through
`tasks.do.audience.stage_audience`, then `apply_capacity_in_stage`); this module states
the same rules row by row in pandas — variants, windows, routing and capacity — and the
tests hold the SQL to it on SQLite and PostgreSQL. It is not used by the product. The
tiers and their channels are written out again here, from the documented rules, so that
a change to the product's routing shows up as a difference; only the hash and its cuts
(`tasks.do.assignment`, tested against sha256 on their own) are shared. It states the
spec only: the reference for a campaign with no approved actions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from tasks.common.campaigns import CampaignSpec
from tasks.do.assignment import HALF, HASH_SPAN, HOLDOUT, hash_bits, variant_cuts, window_cuts

TIER_A_SCORE = 720
"""Tier A: a score of at least 720 in a segment at least as responsive as the average."""
TIER_B_SCORE = 660
"""Tier B: a score of at least 660 (or a tier-A score in a below-average segment)."""
TIER_CHANNELS = {
    "A": ("phone", "sms", "im"),
    "B": ("sms", "im", "app_push", "email"),
    "C": ("app_push", "email", "sms"),
}
"""Each tier's channels by preference; tier B alternates between its first two."""


def usable_channels(spec: CampaignSpec) -> dict[str, list[str]]:
    """Each tier's channels that the campaign uses, in order of preference."""
    return {
        tier: [channel for channel in channels if channel in spec.channels]
        for tier, channels in TIER_CHANNELS.items()
    }


def low_frequency_cap(spec: CampaignSpec) -> int:
    """Tier C's cap on contacts in 7 days: half the campaign's, at least one."""
    return max(1, spec.contact_policy.max_touches_per_7d // 2)


def _hash_bits(salt: str, keys: Sequence[str] | pd.Series) -> np.ndarray:
    return np.fromiter((hash_bits(salt, key) for key in keys), dtype=np.int64, count=len(keys))


def _hash_unit(salt: str, keys: Sequence[str] | pd.Series) -> np.ndarray:
    """A stable uniform number in [0, 1) per key: its hash over the hash's span."""
    return _hash_bits(salt, keys) / HASH_SPAN


def assign_variants(campaign_id: str, spec: CampaignSpec, frame: pd.DataFrame) -> pd.Series:
    """Each customer's variant: the one they already have in the campaign, else by hash.

    The hash of (campaign, customer) falls into the spec's shares in their written order,
    the hold-out last, so a customer's group never changes across days and reruns.
    """
    cuts = variant_cuts(spec)
    names = np.asarray([*(name for name, _ in cuts), HOLDOUT], dtype=object)
    bits = _hash_bits(campaign_id, frame["customer_id"])
    position = np.searchsorted(np.asarray([c for _, c in cuts], dtype=np.int64), bits, "right")
    drawn = pd.Series(names[position], index=frame.index)
    return frame["assigned_variant"].where(frame["assigned_variant"].notna(), drawn)


def window_share(campaign_id: str, frame: pd.DataFrame, windows: Sequence[str]) -> pd.Series:
    """Which of the day's windows each customer belongs to (stable; one send a day)."""
    bits = _hash_bits(f"{campaign_id}:window", frame["customer_id"])
    index = np.searchsorted(np.asarray(window_cuts(len(windows)), dtype=np.int64), bits, "right")
    return pd.Series(np.asarray(windows, dtype=object)[index], index=frame.index)


def route(frame: pd.DataFrame, spec: CampaignSpec, propensity: dict[str, float]) -> pd.DataFrame:
    """Tier and channel per customer (see TIER_CHANNELS); `channel` is None if none fits.

    Propensity is the segment's trailing application rate; a segment without history
    counts as average. Tier C customers get half the frequency cap ("lower frequency").
    """
    average = float(np.mean(list(propensity.values()))) if propensity else 0.0
    segment_rate = frame["segment"].map(propensity).fillna(average)
    score = frame["credit_score"].astype(float)
    tier = np.where(
        (score >= TIER_A_SCORE) & (segment_rate >= average),
        "A",
        np.where(score >= TIER_B_SCORE, "B", "C"),
    )
    usable = usable_channels(spec)
    channel = np.full(len(frame), None, dtype=object)
    for tier_name, channels in usable.items():
        if channels:
            channel[tier == tier_name] = channels[0]
    if len(usable["B"]) > 1:
        flip = _hash_bits(f"{spec.id}:channel", frame["customer_id"]) < HALF
        channel[(tier == "B") & flip] = usable["B"][1]
    routed = frame.assign(tier=tier, propensity=segment_rate, channel=channel)
    over = (
        (routed["tier"] == "C")
        & (routed["contacts_7d"] >= low_frequency_cap(spec))
        & routed["exclusion_reason"].isna()
    )
    return routed.assign(
        exclusion_reason=routed["exclusion_reason"].where(~over, "tier_c_frequency")
    )


def apply_capacity(routed: pd.DataFrame, quotas: dict[str, int]) -> pd.DataFrame:
    """Keep each channel's best eligible customers up to its quota; the rest of the
    eligible are `over_capacity` (or `no_channel`); an earlier exclusion is kept.

    Best = highest segment propensity, then highest credit score, then customer id (so
    the choice is stable across reruns). Excluded customers take no place.
    """
    reason = routed["exclusion_reason"].copy()
    open_ = reason.isna()
    reason[open_ & routed["channel"].isna()] = "no_channel"
    ranked = routed[open_ & routed["channel"].notna()].sort_values(
        ["channel", "propensity", "credit_score", "customer_id"],
        ascending=[True, False, False, True],
    )
    rank = ranked.groupby("channel").cumcount().to_numpy()
    quota = np.array([quotas.get(channel, 0) for channel in ranked["channel"].tolist()])
    reason[ranked.index[rank >= quota]] = "over_capacity"
    return routed.assign(exclusion_reason=reason)
