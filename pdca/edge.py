"""The command line's arguments, checked before Prefect starts.

Starting Prefect costs seconds (its embedded API, or a round trip to a server). A mistyped
campaign, period or date is bad usage and must be refused at once: exit code 2 and one
line, in well under a second. So every stage command parses its period and looks its
campaign up here first; the flows check again (they also run from deployments).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from pdca.db import contents_besides, make_engine
from pdca.errors import UserError
from tasks.common.campaigns import CampaignSpec, get_campaign_spec


def known_campaign(database_url: str, campaign_id: str) -> CampaignSpec:
    """The campaign's spec as applied, or a UserError naming the campaigns there are.

    Reads the campaign table as it is, without migrating: a database without it holds
    no campaign yet. The command migrates afterwards, when it does the work.
    """
    from sqlalchemy import select
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from pdca.models import Campaign

    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            try:
                return get_campaign_spec(conn, campaign_id)
            except UserError:
                known = conn.execute(select(Campaign.campaign_id)).scalars().all()
            except (OperationalError, ProgrammingError):  # no schema yet
                known = []
    finally:
        engine.dispose()
    listed = ", ".join(sorted(known)[:10]) or "none yet: pdca campaign apply SPEC.yaml"
    raise UserError(f"unknown campaign {campaign_id!r} (campaigns: {listed})")


def parse_day(option: str, value: str) -> date:
    """A YYYY-MM-DD option as a date, or a UserError naming the option."""
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UserError(f"{option} {value!r}: expected a date YYYY-MM-DD") from None


def days_in_campaign(spec: CampaignSpec, days: Iterable[date]) -> list[date]:
    """The days, all inside the campaign's dates; else a UserError saying which is not."""
    days = list(days)
    outside = [day for day in days if not spec.start <= day <= spec.end]
    if outside:
        raise UserError(
            f"campaign {spec.id} runs {spec.start} to {spec.end}: "
            f"{outside[0]} is outside it, nothing would be sent"
        )
    return days


def refuse_foreign_database(database_url: str, force: bool) -> None:
    """A UserError naming the database when it holds more than an earlier demo: the demo
    replaces the whole database, and a user's campaign must not vanish silently."""
    from sqlalchemy.engine import make_url

    from pdca.synthetic.demo_history import CAMPAIGN_ID

    held = None if force else contents_besides(database_url, {CAMPAIGN_ID})
    if held:
        shown = make_url(database_url).render_as_string(hide_password=True)
        raise UserError(
            f"{shown} holds {held}, not only an earlier demo: the demo replaces the whole "
            "database; point PDCA_DATABASE_URL elsewhere, or use --force to replace it"
        )
