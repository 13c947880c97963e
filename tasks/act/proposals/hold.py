"""`hold`: the check's data are untrusted, so nothing else is proposed.

Every other rule would act on numbers nobody can vouch for; the rationale names what failed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tasks.act.proposals.text import pct, proposal
from tasks.act.types import Proposal
from tasks.check.findings import finite_number


def hold_proposal(check: Mapping[str, Any]) -> Proposal:
    """No change: the period's data failed their checks, so any adjustment would be
    built on numbers that may be wrong. The rationale names what failed."""
    failures = failed_checks(check)
    where = f"{check.get('campaign', 'the campaign')} {check.get('period', '')}".strip()
    named = "; ".join(failures) if failures else "the check's data-quality verdict is missing"
    return proposal(
        "hold",
        {},
        {},
        f"Data quality failed for {where}: {named}. No adjustment is proposed on untrusted "
        "numbers.",
        f"No change: 0 adjustments until the {len(failures) or 1} failed "
        f"check{'s pass' if len(failures) > 1 else ' passes'} and the period is checked again.",
    )


def failed_checks(check: Mapping[str, Any]) -> list[str]:
    """The failed suites (with their failed expectations) and quarantine shares."""
    quality = check.get("data_quality") or {}
    found = []
    for suite in quality.get("suites") or []:
        if not suite.get("success", True):
            failed = ", ".join(str(name) for name in suite.get("failed") or [])
            found.append(f"suite {suite.get('name')}" + (f" ({failed})" if failed else ""))
    for entry in quality.get("quarantine") or []:
        if not entry.get("success", True):
            share, limit = finite_number(entry.get("share")), finite_number(entry.get("max_share"))
            found.append(
                f"quarantine of {entry.get('feed')}: {entry.get('rows_quarantined')} of "
                f"{entry.get('rows_in')} rows ({pct(share)} > {pct(limit)})"
            )
    return found
