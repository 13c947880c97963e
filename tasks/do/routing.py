"""Do: routing by tier — which channel a customer is sent on.

Tier from credit score and the segment's propensity (its trailing application rate),
then the tier's first channel the campaign uses; tier B alternates between its first two
by customer hash so both stay measured; tier C gets half the frequency cap.
"""

from __future__ import annotations

from tasks.common.campaigns import CampaignSpec

TIER_A_SCORE = 720
"""Tier A: score ≥ 720 and a segment propensity at least the campaign's average."""
TIER_B_SCORE = 660
"""Tier B: score ≥ 660 (or a tier-A score in a below-average segment)."""
TIER_CHANNELS = {
    "A": ("phone", "sms", "im"),
    "B": ("sms", "im", "app_push", "email"),
    "C": ("app_push", "email", "sms"),
}
"""Each tier's channels in order of preference; the first ones the campaign uses win.
Tier B alternates between its first two (by customer hash) so both stay measured."""


def usable_channels(spec: CampaignSpec) -> dict[str, list[str]]:
    """Each tier's channels that the campaign uses, in order of preference."""
    return {
        tier: [channel for channel in channels if channel in spec.channels]
        for tier, channels in TIER_CHANNELS.items()
    }


def low_frequency_cap(spec: CampaignSpec) -> int:
    """Tier C's cap on contacts in 7 days: half the campaign's ("lower frequency")."""
    return max(1, spec.contact_policy.max_touches_per_7d // 2)
