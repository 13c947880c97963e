"""Do: the campaign's named send windows on a weekday, in its time zone, as UTC bounds.

A batch belongs to one `Slot` (campaign, local day, window); a window that has closed
sends nothing late (dispatch holds its sends for `next_slot`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from tasks.common.campaigns import CampaignSpec


@dataclass(frozen=True)
class Slot:
    """One named send window on one local day, with its UTC bounds."""

    window: str
    day: date
    starts_at: datetime
    ends_at: datetime


def slots_for(spec: CampaignSpec, day: date) -> list[Slot]:
    """The day's send windows in time order; none on weekends or outside the campaign."""
    if day.weekday() >= 5 or not spec.start <= day <= spec.end:
        return []
    zone = ZoneInfo(spec.timezone)
    slots = []
    for name, window in spec.contact_policy.windows.items():
        start = datetime.combine(day, window.start, tzinfo=zone)
        end = datetime.combine(day, window.end, tzinfo=zone)
        slots.append(Slot(name, day, _utc(start), _utc(end)))
    return sorted(slots, key=lambda slot: slot.starts_at)


def next_slot(spec: CampaignSpec, after: datetime) -> Slot | None:
    """The first window that opens at or after `after` (UTC), within the campaign."""
    local_day = after.replace(tzinfo=UTC).astimezone(ZoneInfo(spec.timezone)).date()
    for offset in range(0, 15):
        for slot in slots_for(spec, local_day + timedelta(days=offset)):
            if slot.starts_at >= after:
                return slot
    return None


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)
