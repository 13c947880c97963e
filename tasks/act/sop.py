"""The campaign's SOP: a versioned Markdown document of the rules in force.

The body is rendered from `reports/sop.md.j2` with `tasks.common.rules.rules_in_force`, so the
document says exactly what dispatch and plan apply. Version 1 states the spec (with any
adjustments approved before the first SOP); each approved action applied afterwards makes
one new version, whose changelog entry names the version, date, action and reason. Old
versions stay in `sop_versions` and can be shown or compared (`sop_diff`). Which actions
make a version and which budget moves the SOP lists is `tasks.common.rules`' to decide
(`changes_rules`, `budget_moves`), like the rules themselves; an approval that leaves them
as they were (the same change approved twice, a step from a setting since changed) makes
no version.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, insert, select

from pdca.errors import UserError
from pdca.models import SopVersion
from tasks.act.types import StoredAction
from tasks.common.campaigns import CampaignSpec
from tasks.common.reports import render
from tasks.common.rules import budget_moves, changes_rules, rules_in_force
from tasks.common.scopes import format_scope

TEMPLATE = "sop.md.j2"


@dataclass(frozen=True)
class SopRecord:
    """One stored version of a campaign's SOP."""

    campaign_id: str
    version: int
    created_at: datetime | None
    body: str
    changelog: list[dict[str, Any]]

    def changes(self) -> list[dict[str, Any]]:
        """The changelog entries this version added."""
        return [entry for entry in self.changelog if entry["version"] == self.version]


def sop_versions(conn: Connection, campaign_id: str) -> list[SopRecord]:
    """Every stored version, oldest first."""
    rows = conn.execute(
        select(SopVersion.version, SopVersion.created_at, SopVersion.body, SopVersion.changelog)
        .where(SopVersion.campaign_id == campaign_id)
        .order_by(SopVersion.version)
    )
    return [
        SopRecord(campaign_id, version, created_at, body, list(changelog or []))
        for version, created_at, body, changelog in rows
    ]


def sop_version(conn: Connection, campaign_id: str, version: int | None = None) -> SopRecord:
    """The named version (the latest when None); a clear error when there is none."""
    versions = sop_versions(conn, campaign_id)
    if not versions:
        raise UserError(f"campaign {campaign_id!r} has no SOP yet: run `pdca act` first")
    if version is None:
        return versions[-1]
    for record in versions:
        if record.version == version:
            return record
    raise UserError(
        f"campaign {campaign_id!r}: no SOP version {version} (versions 1 to {versions[-1].version})"
    )


def update_sop(
    conn: Connection,
    spec: CampaignSpec,
    approved: Sequence[StoredAction | Mapping[str, Any]],
    applied_now: Sequence[StoredAction | Mapping[str, Any]],
    *,
    today: date,
    default_locale: str = "en",
) -> list[SopRecord]:
    """Store the versions `applied_now` makes (and version 1 if there is none yet), written
    in the spec's `locale`, else in `default_locale` (the setting `PDCA_LOCALE`).

    `approved`: every approved action of the campaign, oldest first (`rules.approved_actions`),
    `applied_now` among them; returns the new versions, oldest first.
    """
    now = [StoredAction.of(action) for action in applied_now]
    new_ids = {action.action_id for action in now}
    in_force = [
        action for action in map(StoredAction.of, approved) if action.action_id not in new_ids
    ]
    latest = sop_versions(conn, spec.id)
    changelog = list(latest[-1].changelog) if latest else []
    version = latest[-1].version if latest else 0
    created: list[SopRecord] = []
    if not latest:
        version = 1
        changelog.append(
            {
                "version": 1,
                "date": today.isoformat(),
                "action": "initial",
                "reason": "the campaign spec as applied"
                + (f", with {len(in_force)} approved adjustment(s)" if in_force else ""),
            }
        )
        created.append(_store(conn, spec, in_force, version, today, changelog, default_locale))
    for action in now:
        if not changes_rules(action.type) or not alters(spec, in_force, action):
            continue  # e.g. hold, or a change already in force: no new version
        in_force.append(action)
        version += 1
        changelog.append(
            {
                "version": version,
                "date": today.isoformat(),
                "action": action_label(action),
                "reason": action.rationale,
            }
        )
        created.append(_store(conn, spec, in_force, version, today, changelog, default_locale))
    return created


def alters(spec: CampaignSpec, in_force: Sequence[StoredAction], action: StoredAction) -> bool:
    """Whether approving `action` on top of `in_force` changes the rules or the budget
    moves the SOP states."""
    before = [item.rule_record() for item in in_force]
    after = [*before, action.rule_record()]
    return _rules_text(spec, before) != _rules_text(spec, after)


def _rules_text(spec: CampaignSpec, records: Sequence[Mapping[str, Any]]) -> str:
    """The SOP's body for `records`, without its version, date and changelog."""
    return render(
        TEMPLATE,
        spec=spec,
        rules=rules_in_force(spec, records),
        version=0,
        dated="",
        changelog=[],
        reallocations=budget_moves(records),
    )


def render_sop(
    spec: CampaignSpec,
    approved: Sequence[StoredAction | Mapping[str, Any]],
    version: int,
    dated: date,
    changelog: Sequence[Mapping[str, Any]],
    default_locale: str = "en",
) -> str:
    """The SOP's Markdown for the rules `approved` puts in force, in the spec's `locale`
    (else `default_locale`)."""
    records = [StoredAction.of(action).rule_record() for action in approved]
    return render(
        TEMPLATE,
        spec.locale or default_locale,
        spec=spec,
        rules=rules_in_force(spec, records),
        version=version,
        dated=dated.isoformat(),
        changelog=changelog,
        reallocations=budget_moves(records),
    )


def sop_diff(older: SopRecord, newer: SopRecord) -> str:
    """A unified diff between two versions, labelled with their numbers."""
    return "".join(
        difflib.unified_diff(
            older.body.splitlines(keepends=True),
            newer.body.splitlines(keepends=True),
            fromfile=f"{older.campaign_id} SOP v{older.version}",
            tofile=f"{newer.campaign_id} SOP v{newer.version}",
        )
    )


def sop_path(output_dir: Path, campaign_id: str, version: int) -> Path:
    """Where a version's Markdown is written for people to open."""
    return output_dir / "sop" / campaign_id / f"sop-v{version}.md"


def write_sop_files(output_dir: Path, records: Sequence[SopRecord]) -> list[Path]:
    """Write the versions' Markdown (a rewrite of an existing version writes the same text)."""
    paths = []
    for record in records:
        path = sop_path(output_dir, record.campaign_id, record.version)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(record.body, encoding="utf-8")
        paths.append(path)
    return paths


def action_label(action: StoredAction | Mapping[str, Any]) -> str:
    """'tighten_admission (segment=farmer): min_credit_score=640, action 12'."""
    action = StoredAction.of(action)
    params = ", ".join(
        f"{key}={_short(value)}" for key, value in action.params.items() if key != "from_budget"
    )
    return (
        f"{action.type} ({format_scope(action.scope)})"
        + (f": {params}" if params else "")
        + f", action {action.action_id}"
    )


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "/".join(str(item) for item in value)
    return str(value)


def _store(
    conn: Connection,
    spec: CampaignSpec,
    in_force: Sequence[StoredAction],
    version: int,
    today: date,
    changelog: list[dict[str, Any]],
    default_locale: str = "en",
) -> SopRecord:
    body = render_sop(spec, in_force, version, today, changelog, default_locale)
    entries = [dict(entry) for entry in changelog]
    conn.execute(
        insert(SopVersion).values(
            campaign_id=spec.id, version=version, body=body, changelog=entries
        )
    )
    return SopRecord(spec.id, version, None, body, entries)
