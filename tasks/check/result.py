"""The check result as typed objects: what the Check stage hands to Act, the review, the CLI,
events, the demo and the templates.

A check is built once (`assemble`, in the check flow) from the measurements' JSON-ready
rows and read by attribute everywhere after that. Its JSON — what `pdca check --json`
prints and `check_results.result` stores — is `CheckResult.to_json()`, the contract's
shape key for key and in the same order; `CheckResult.from_json` reads a stored one back
(a hand-written or older result may lack fields: they read as None or empty).

`summarise` is the one summary of a check (totals, trust, what is off track, what was
found) that the check's artifact, the CLI, the demo and the review all print from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tasks.common.jsonable import jsonable
from tasks.common.records import Record as _Record

OFF_TRACK = ("off_track", "at_risk")
"""The KPI statuses a manager must look at."""

FUNNEL_TOTALS = ("touches", "delivered", "applications", "approved")
"""The funnel counts a one-line summary of a check names."""


# --- data quality -----------------------------------------------------------------------


@dataclass(frozen=True)
class SuiteResult(_Record):
    """One Great Expectations suite on the period's data (`tasks.check.data_quality`)."""

    name: str
    success: bool = True
    evaluated: int | None = None
    failed: list[str] = field(default_factory=list)
    """The critical expectations that failed: these make the data untrusted."""
    warnings: list[str] = field(default_factory=list)
    rows_in: int | None = None
    rows_quarantined: int | None = None
    unexpected: dict[str, int] = field(default_factory=dict)
    """Expectation → failing rows."""
    examples: dict[str, list] = field(default_factory=dict)
    """Expectation → the first failing rows' keys (may be customer data: never shown)."""


@dataclass(frozen=True)
class QuarantineShare(_Record):
    """One feed's quarantined rows of the period against its rows, and the limit."""

    feed: str
    rows_in: int | None = None
    rows_quarantined: int | None = None
    share: float | None = None
    max_share: float | None = None
    success: bool = True


@dataclass(frozen=True)
class DataQualityOutcome(_Record):
    """May the period's data be trusted, and why not."""

    _nested: ClassVar = {"suites": SuiteResult, "quarantine": QuarantineShare}

    trusted: bool = False
    suites: list[SuiteResult] = field(default_factory=list)
    quarantine: list[QuarantineShare] = field(default_factory=list)
    docs_path: str | None = None
    """The Data Docs index.html of the run, when docs were written."""
    status: str | None = None
    """`trusted`, `untrusted` or `no_data` (the period has no row at all); None in results
    stored before it was recorded."""

    @property
    def no_data(self) -> bool:
        return self.status == "no_data"

    @property
    def failed_suites(self) -> list[SuiteResult]:
        return [suite for suite in self.suites if not suite.success]

    @property
    def failed_quarantine(self) -> list[QuarantineShare]:
        return [entry for entry in self.quarantine if not entry.success]


# --- the funnel and the KPIs ------------------------------------------------------------


@dataclass(frozen=True)
class FunnelRow(_Record):
    """The period's funnel at channel × segment × variant: counts, then rates
    (`tasks.common.metrics.COUNTS` and `RATES`, in their order)."""

    channel: str | None = None
    segment: str | None = None
    variant: str | None = None
    touches: int = 0
    delivered: int = 0
    responded: int = 0
    applications: int = 0
    decided: int | None = None
    """Applications with a decision; None in a result stored before it was counted."""
    approved: int = 0
    disbursements: int = 0
    disbursed_amount: float = 0.0
    cost: float = 0.0
    net_interest: float = 0.0
    expected_loss: float = 0.0
    reach_rate: float | None = None
    response_rate: float | None = None
    application_rate: float | None = None
    approval_rate: float | None = None
    cac: float | None = None
    roi: float | None = None


@dataclass(frozen=True)
class Kpi(_Record):
    """One KPI at one scope against the plan's target (`tasks.check.findings.variance`);
    without a plan, the actual alone with status `no_target`."""

    metric: str
    scope: dict[str, str | None] = field(default_factory=dict)
    target: float | None = None
    actual: float | None = None
    variance: float | None = None
    variance_pct: float | None = None
    status: str = "no_data"
    lower_is_better: bool | None = None
    note: str | None = None
    """Why there is no judgement, when there is none."""

    def to_json(self) -> dict[str, Any]:
        """A KPI without a target carries no judgement: its JSON has no lower_is_better
        and no note (as the contract has always printed it)."""
        document = super().to_json()
        if self.status == "no_target":
            del document["lower_is_better"], document["note"]
        return document

    @property
    def is_campaign_wide(self) -> bool:
        """Whether the KPI is about the campaign as a whole (no channel, no segment)."""
        return not any(self.scope.values())

    @property
    def off_track(self) -> bool:
        """Off track or at risk: a manager should look at it."""
        return self.status in OFF_TRACK


@dataclass(frozen=True)
class Anomaly(_Record):
    """A week whose metric broke from its own trailing baseline (`findings.anomalies`)."""

    metric: str
    scope: dict[str, str | None] = field(default_factory=dict)
    week: str | None = None
    value: float | None = None
    baseline_mean: float | None = None
    baseline_std: float | None = None
    baseline_weeks: int | None = None
    z: float | None = None
    """None for a break from a flat baseline (see `note`)."""
    volume: float | None = None
    direction: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class ExperimentResult(_Record):
    """One comparison of the A/B test (`tasks.check.experiments.judge`)."""

    metric: str | None = None
    control: str | None = None
    treatment: str | None = None
    control_n: int | None = None
    control_rate: float | None = None
    treatment_n: int | None = None
    treatment_rate: float | None = None
    lift: float | None = None
    lift_relative: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    p_value_adjusted: float | None = None
    srm_p_value: float | None = None
    min_sample: int | None = None
    decision: str | None = None
    decision_basis: str | None = None
    """What the decision rests on: the sequential test (docs/experiments.md)."""
    sequential_p_value: float | None = None
    sequential_p_value_adjusted: float | None = None
    cs_low: float | None = None
    cs_high: float | None = None
    """The always-valid confidence sequence of the difference."""
    planned_sample: int | None = None
    control_assigned: int | None = None
    treatment_assigned: int | None = None
    control_pending: int | None = None
    treatment_pending: int | None = None
    """Assigned members whose attribution window is still open: not yet in the rates."""
    cuped: dict[str, Any] | None = None
    cohort: dict[str, Any] | None = None
    """The period's own cohort, reported beside the cumulative members."""


@dataclass(frozen=True)
class StageEvidence(_Record):
    """One funnel stage's rate against its reference."""

    stage: str
    metric: str | None = None
    actual: float | None = None
    reference: float | None = None
    gap_pct: float | None = None


@dataclass(frozen=True)
class KpiEvidence(_Record):
    """One KPI beyond the funnel against its reference (gap_pct in its good direction)."""

    metric: str
    family: str | None = None
    actual: float | None = None
    reference: float | None = None
    gap_pct: float | None = None


@dataclass(frozen=True)
class BeyondFunnel(_Record):
    """The asset-quality or customer-value KPI furthest on its bad side of its reference
    (`findings.beyond_funnel`), reported beside the funnel's bottleneck stage; `metric`
    None when none is worse (`note` says so)."""

    _nested: ClassVar = {"evidence": KpiEvidence}

    metric: str | None = None
    family: str | None = None
    actual: float | None = None
    reference: float | None = None
    reference_kind: str | None = None
    gap_pct: float | None = None
    diagnosis: str | None = None
    note: str | None = None
    evidence: list[KpiEvidence] = field(default_factory=list)


FOUND_ORDER = (
    "stage",
    "metric",
    "actual",
    "reference",
    "gap_pct",
    "reference_kind",
    "diagnosis",
    "note",
    "evidence",
    "beyond_funnel",
)
"""A found bottleneck's keys, in the order `findings.bottleneck` has always written them
(the stage's evidence first, then what it was compared with)."""


@dataclass(frozen=True)
class Bottleneck(_Record):
    """The funnel stage furthest below its reference (`findings.bottleneck`); `stage` is
    None when no stage is below it (`note` says so)."""

    _nested: ClassVar = {"evidence": StageEvidence, "beyond_funnel": BeyondFunnel}

    stage: str | None = None
    metric: str | None = None
    actual: float | None = None
    reference: float | None = None
    reference_kind: str | None = None
    gap_pct: float | None = None
    diagnosis: str | None = None
    note: str | None = None
    evidence: list[StageEvidence] = field(default_factory=list)
    beyond_funnel: BeyondFunnel | None = None
    """The new KPIs' diagnosis: the contract's bottleneck is a funnel stage, so asset
    quality and customer value are weighed beside it, not instead of it."""

    def to_json(self) -> dict[str, Any]:
        document = super().to_json()
        if self.beyond_funnel is None:  # as results were before it: no such key
            del document["beyond_funnel"]
        if self.stage is None:
            return document
        return {key: document[key] for key in FOUND_ORDER if key in document}


@dataclass(frozen=True)
class RejectReason(_Record):
    """A top reject reason of the period, overall (channel None) or of one channel."""

    channel: str | None = None
    reason: str | None = None
    count: int | None = None
    share: float | None = None


# --- the whole result -------------------------------------------------------------------


@dataclass(frozen=True)
class CheckResult(_Record):
    """Everything the check found for one campaign period (`pdca check --json`)."""

    _nested: ClassVar = {
        "data_quality": DataQualityOutcome,
        "funnel": FunnelRow,
        "kpis": Kpi,
        "anomalies": Anomaly,
        "experiments": ExperimentResult,
        "bottleneck": Bottleneck,
        "reject_reasons": RejectReason,
    }

    campaign: str
    period: str
    trusted: bool = False
    data_quality: DataQualityOutcome = field(default_factory=DataQualityOutcome)
    funnel: list[FunnelRow] = field(default_factory=list)
    kpis: list[Kpi] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)
    experiments: list[ExperimentResult] = field(default_factory=list)
    bottleneck: Bottleneck | None = None
    reject_reasons: list[RejectReason] = field(default_factory=list)

    @property
    def campaign_kpis(self) -> list[Kpi]:
        """The KPIs of the campaign as a whole (no channel or segment in their scope)."""
        return [kpi for kpi in self.kpis if kpi.is_campaign_wide]

    @property
    def bottleneck_stage(self) -> str | None:
        """The stage found, or None (none below its reference, or none compared)."""
        return self.bottleneck.stage if self.bottleneck else None

    @property
    def overall_reject_reasons(self) -> list[RejectReason]:
        """The reasons over every channel (the per-channel ones left out)."""
        return [row for row in self.reject_reasons if row.channel is None]


def assemble(
    campaign: str,
    period: str,
    quality: Mapping[str, Any],
    *,
    funnel: Sequence[Mapping[str, Any]],
    kpis: Sequence[Mapping[str, Any]],
    anomalies: Sequence[Mapping[str, Any]],
    experiments: Sequence[Mapping[str, Any]],
    bottleneck: Mapping[str, Any] | None,
    reject_reasons: Sequence[Mapping[str, Any]],
) -> CheckResult:
    """The typed result from the measurements' rows, every value made JSON-ready first
    (numpy numbers as Python's, NaN and ±inf as None): the one place a check is built."""
    document = {
        "campaign": campaign,
        "period": period,
        "trusted": quality["trusted"],
        "data_quality": quality,
        "funnel": funnel,
        "kpis": kpis,
        "anomalies": anomalies,
        "experiments": experiments,
        "bottleneck": bottleneck,
        "reject_reasons": reject_reasons,
    }
    return CheckResult.from_json(jsonable(document))


# --- the summary ------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckSummary:
    """What every short account of a check says: trust and why, the funnel's size, the
    KPIs to look at, the anomalies, the test's decisions and the bottleneck."""

    campaign: str
    period: str
    trusted: bool
    totals: dict[str, int]
    """FUNNEL_TOTALS summed over the funnel rows."""
    failed_suites: list[SuiteResult]
    failed_quarantine: list[QuarantineShare]
    off_track: list[Kpi]
    """Every KPI off track or at risk, in the check's order."""
    status_counts: dict[str, int]
    """Campaign-wide KPIs on track, at risk, off track."""
    anomalies: list[Anomaly]
    experiments: list[ExperimentResult]
    bottleneck: Bottleneck | None

    no_data: bool = False
    """The period has no row in any feed (`no_data`: not trusted, nothing to judge)."""

    @property
    def trust_word(self) -> str:
        return "no data" if self.no_data else ("trusted" if self.trusted else "untrusted")

    @property
    def bottleneck_stage(self) -> str:
        """The bottleneck's stage, or 'none'."""
        return (self.bottleneck.stage if self.bottleneck else None) or "none"

    @property
    def decisions(self) -> list[str]:
        """'B vs holdout treatment_wins', one per comparison."""
        return [f"{t.treatment} vs {t.control} {t.decision}" for t in self.experiments]


def summarise(check: CheckResult) -> CheckSummary:
    """The one summary of a check, which every presenter formats its own way."""
    totals = {key: sum(getattr(row, key) for row in check.funnel) for key in FUNNEL_TOTALS}
    counts = dict.fromkeys(("on_track", "at_risk", "off_track"), 0)
    for kpi in check.campaign_kpis:
        if kpi.status in counts:
            counts[kpi.status] += 1
    return CheckSummary(
        campaign=check.campaign,
        period=check.period,
        trusted=check.trusted,
        totals=totals,
        failed_suites=check.data_quality.failed_suites,
        failed_quarantine=check.data_quality.failed_quarantine,
        off_track=[kpi for kpi in check.kpis if kpi.off_track],
        status_counts=counts,
        anomalies=list(check.anomalies),
        experiments=list(check.experiments),
        bottleneck=check.bottleneck,
        no_data=check.data_quality.no_data,
    )
