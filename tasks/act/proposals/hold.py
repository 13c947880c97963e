"""`hold`: the check's data are untrusted, so nothing else is proposed.

Every other rule would act on numbers nobody can vouch for; the rationale names what failed.
"""

from __future__ import annotations

from tasks.act.proposals.text import pct, proposal
from tasks.act.types import Proposal
from tasks.check.findings import finite_number
from tasks.check.result import CheckResult, DataQualityOutcome


def hold_proposal(check: CheckResult) -> Proposal:
    """No change: the period's data failed their checks, so any adjustment would be
    built on numbers that may be wrong. The rationale names what failed."""
    failures = failed_checks(check)
    where = f"{check.campaign} {check.period or ''}".strip()
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


def failed_checks(check: CheckResult) -> list[str]:
    """The failed suites (with their failed expectations) and quarantine shares; none when
    the check carries no data-quality verdict."""
    quality = check.data_quality or DataQualityOutcome()
    found = []
    for suite in quality.failed_suites:
        failed = ", ".join(str(name) for name in suite.failed or [])
        found.append(f"suite {suite.name}" + (f" ({failed})" if failed else ""))
    for entry in quality.failed_quarantine:
        share, limit = finite_number(entry.share), finite_number(entry.max_share)
        found.append(
            f"quarantine of {entry.feed}: {entry.rows_quarantined} of "
            f"{entry.rows_in} rows ({pct(share)} > {pct(limit)})"
        )
    return found
