"""The Check stage's judgements: variance against plan, weekly anomalies, the bottleneck.

Plain functions over frames and dicts the caller has already computed (the funnel comes
from `tasks.common.metrics`, the targets from `tasks.plan.plan`); none touches a database,
Prefect or the settings: every threshold is a parameter, so a test can judge any case by hand.
Every output is JSON-ready: plain Python floats, ints and strings, `None` where a number
cannot be known, never NaN or ±inf.

- `variance`: each plan target against its actual, with the contract's status bands and
  the direction of "good" per metric (`LOWER_IS_BETTER`).
- `anomalies`: a week whose metric is ≥ z sample standard deviations from the same
  scope's trailing weeks, with minimum volumes so that small counts raise nothing.
- `bottleneck`: the funnel stage furthest below its reference (plan or baseline), with a
  diagnosis of where to look: the approval stage points at targeting (who is contacted),
  the response and application stages at the message, delivery at contact data; beside
  it `beyond_funnel.beyond_funnel` weighs asset quality and customer value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from tasks.common.jsonable import jsonable
from tasks.common.metrics import LOWER_IS_BETTER
from tasks.common.scopes import format_scope

EPSILON = 1e-9
"""Slack on band and threshold boundaries, so that a shortfall of exactly 5 % computed in
floating point (0.05000000000000002) still counts as within a 5 % band."""

Status = Literal["on_track", "at_risk", "off_track", "no_data"]
STATUSES: tuple[Status, ...] = ("on_track", "at_risk", "off_track", "no_data")
"""From good to bad; `no_data` means no judgement was possible."""

DEFAULT_TOLERANCE = (0.05, 0.15)
"""The contract's default bands, for target rows that carry none of their own."""

SCOPE_COLUMNS = {"channel": "scope_channel", "segment": "scope_segment"}
"""Target key → the `actuals` column that holds it (missing/NaN = all)."""


# --- variance ---------------------------------------------------------------------------


def variance(
    targets: Sequence[Mapping[str, Any]],
    actuals: pd.DataFrame,
    *,
    tolerance: tuple[float, float] = DEFAULT_TOLERANCE,
) -> list[dict[str, Any]]:
    """Each plan target against its actual: variance, variance_pct and a status.

    `targets`: plan target rows (`tasks.plan.targets.targets_from`): metric, channel, segment
    (None = all), target, tolerance_warn, tolerance_fail, lower_is_better; a row without
    bands uses `tolerance` (warn, fail), one without lower_is_better uses
    `LOWER_IS_BETTER`. `actuals`: one row per scope, columns `scope_channel` and
    `scope_segment` (None/NaN = all; a missing column = all) and one column per metric.
    A target matches the row whose two scope columns equal its channel and segment.

    Returns one dict per target, in order: metric, scope {"channel", "segment"}, target,
    actual, variance (actual − target), variance_pct (variance / target), status,
    lower_is_better, note (why there is no judgement, else None).

    Status: the shortfall is how far the actual falls short of the target in the bad
    direction, relative to |target| (so a negative roi target is judged the right way
    round; variance_pct keeps the contract's plain variance / target). shortfall ≤ warn →
    `on_track` (beating the target is on track), ≤ fail → `at_risk`, else `off_track`;
    both bands include their boundary. A target of 0 has no relative variance
    (variance_pct None): any step in the bad direction is `off_track`, none is
    `on_track`. No actual (no row for the scope, no column, or NaN such as cac without
    disbursements) or no finite target → `no_data`.
    """
    index = _actuals_by_scope(actuals)
    results = []
    for row in targets:
        metric = str(row["metric"])
        scope = {key: _scope_value(row.get(key)) for key in SCOPE_COLUMNS}
        lower_is_better = bool(row.get("lower_is_better", metric in LOWER_IS_BETTER))
        warn = _band(row.get("tolerance_warn"), tolerance[0])
        fail = _band(row.get("tolerance_fail"), tolerance[1])
        target = finite_number(row.get("target"))
        found = index.get((scope["channel"], scope["segment"]))
        actual = finite_number(found.get(metric)) if found is not None else None
        result = {
            "metric": metric,
            "scope": scope,
            "target": target,
            "actual": actual,
            "variance": None,
            "variance_pct": None,
            "status": "no_data",
            "lower_is_better": lower_is_better,
            "note": None,
        }
        if target is None:
            result["note"] = "the target is missing or not a finite number"
        elif found is None:
            result["note"] = f"no actuals for the scope {_scope_label(scope)}"
        elif actual is None:
            result["note"] = f"{metric} has no value for {_scope_label(scope)}"
        else:
            gap = actual - target
            result["variance"] = finite_number(gap)
            result["variance_pct"] = finite_number(gap / target) if target != 0 else None
            result["status"] = variance_status(
                actual, target, lower_is_better=lower_is_better, warn=warn, fail=fail
            )
        results.append(result)
    return results


def variance_status(
    actual: float, target: float, *, lower_is_better: bool, warn: float, fail: float
) -> Status:
    """`on_track`, `at_risk` or `off_track` for finite numbers (see `variance`)."""
    worse = (actual - target) if lower_is_better else (target - actual)
    if target == 0:
        return "off_track" if worse > 0 else "on_track"
    shortfall = worse / abs(target)
    if shortfall <= warn + EPSILON:
        return "on_track"
    if shortfall <= fail + EPSILON:
        return "at_risk"
    return "off_track"


def _actuals_by_scope(actuals: pd.DataFrame) -> dict[tuple[str | None, str | None], dict]:
    """(channel, segment) → that row's values; a scope given twice is an error, not a
    silent pick."""
    records = actuals.to_dict("records")
    index: dict[tuple[str | None, str | None], dict] = {}
    for record in records:
        key = tuple(_scope_value(record.get(column)) for column in SCOPE_COLUMNS.values())
        if key in index:
            raise ValueError(f"actuals has more than one row for the scope {key}")
        index[key] = record
    return index


def _scope_value(value: Any) -> str | None:
    if value is None:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def _scope_label(scope: Mapping[str, Any]) -> str:
    """The scope in a sentence: 'channel sms, segment sme', or 'the campaign'."""
    return format_scope(scope, separator=" ", whole="the campaign")


def _band(value: Any, default: float) -> float:
    number = finite_number(value)
    return default if number is None else number


# --- anomalies --------------------------------------------------------------------------


def anomalies(
    weekly: pd.DataFrame,
    *,
    weeks: Sequence[str],
    metrics: Mapping[str, str | None],
    z: float,
    min_volume: float,
    window: int = 8,
    min_weeks: int = 4,
    scope: Sequence[str],
) -> list[dict[str, Any]]:
    """Weeks of `weeks` whose metric is ≥ `z` sample standard deviations from its baseline.

    `weekly`: one row per `week` (ISO name such as '2026-W12'; names sort in time order)
    × the `scope` columns (e.g. ['channel']; [] = campaign total), with the metric and
    volume columns. `metrics` maps a metric to its volume column, the denominator of the
    rate (application_rate → delivered, approval_rate → applications); None means the
    metric is a count and its own volume.

    Baseline of a week: among the `window` weeks of the same scope that come right before
    it in `weekly` (strictly earlier; never the week itself or a later one; a week without
    a row is simply absent, gaps are not filled), those with volume ≥ `min_volume` and a
    finite value. With fewer than `min_weeks` of them there is no judgement. Its mean and
    sample standard deviation (ddof=1) give z = (value − mean) / std, and the week is an
    anomaly when its own volume ≥ `min_volume` and |z| ≥ `z`.

    A flat baseline (std 0: the same value every week) has no z. The week is then an
    anomaly only if its value differs from that constant, reported with z None and a
    `note`: there is no spread to measure against, and any change from a metric that has
    never moved is worth a look. Such findings sort first (their |z| is unbounded), the
    rest by |z| descending, ties by metric, scope and week.

    Returns dicts: metric, scope ({column: value}, {} for the total), week, value,
    baseline_mean, baseline_std, baseline_weeks, z, volume, direction ('up'/'down'), note.
    """
    keys = list(scope)
    frame = _weekly_frame(weekly, keys, metrics, window=window, min_weeks=min_weeks)
    group = (
        frame.groupby(keys, sort=False, dropna=False).ngroup().to_numpy()
        if keys
        else np.zeros(len(frame), dtype=int)
    )
    checked = frame["week"].isin([str(week) for week in weeks]).to_numpy()
    found = []
    for metric, volume_column in metrics.items():
        value = _numbers(frame[metric])
        volume = value if volume_column is None else _numbers(frame[volume_column])
        usable = np.where((volume >= min_volume) & np.isfinite(value), value, np.nan)
        mean, std, count = _trailing_stats(usable, group, window)
        judged = checked & (count >= min_weeks) & np.isfinite(value) & (volume >= min_volume)
        flat = std <= EPSILON * np.maximum(np.abs(mean), 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            scores = np.where(flat, np.nan, (value - mean) / std)
        moved = ~np.isclose(value, mean, rtol=EPSILON, atol=EPSILON * 1e-3)
        hit = judged & np.where(flat, moved, np.abs(scores) >= z - EPSILON)
        found += [
            _anomaly(
                metric,
                scope={key: jsonable(frame.at[i, key]) for key in keys},
                week=frame.at[i, "week"],
                value=float(value[i]),
                mean=float(mean[i]),
                std=None if flat[i] else float(std[i]),
                score=None if flat[i] else float(scores[i]),
                count=int(count[i]),
                volume=float(volume[i]),
            )
            for i in np.flatnonzero(hit)
        ]
    found.sort(key=_strongest_first)
    return found


def _weekly_frame(
    weekly: pd.DataFrame,
    keys: list[str],
    metrics: Mapping[str, str | None],
    *,
    window: int,
    min_weeks: int,
) -> pd.DataFrame:
    """`weekly` checked (every column there, one row per week × scope, a window that can
    hold min_weeks) and sorted by scope, then week."""
    if min_weeks < 2:
        raise ValueError(f"min_weeks must be at least 2 for a sample std, got {min_weeks}")
    if window < min_weeks:
        raise ValueError(f"window ({window}) is shorter than min_weeks ({min_weeks})")
    volumes = [column for column in metrics.values() if column is not None]
    missing = [c for c in dict.fromkeys(["week", *keys, *metrics, *volumes]) if c not in weekly]
    if missing:
        raise ValueError(f"weekly has no column {missing}; it has {list(weekly.columns)}")
    frame = weekly.assign(week=weekly["week"].astype(str))
    frame = frame.sort_values([*keys, "week"], kind="stable").reset_index(drop=True)
    if frame.duplicated([*keys, "week"]).any():
        raise ValueError(f"weekly has more than one row per week × {keys}")
    return frame


def _anomaly(
    metric: str,
    *,
    scope: dict[str, Any],
    week: str,
    value: float,
    mean: float,
    std: float | None,
    score: float | None,
    count: int,
    volume: float,
) -> dict[str, Any]:
    """One finding in the contract's shape; `std` and `score` (z) None for a flat
    baseline."""
    flat = std is None
    return {
        "metric": metric,
        "scope": scope,
        "week": week,
        "value": value,
        "baseline_mean": mean,
        "baseline_std": 0.0 if flat else std,
        "baseline_weeks": count,
        "z": score,
        "volume": volume,
        "direction": "up" if value > mean else "down",
        "note": (
            f"flat baseline: {metric} was {mean:.6g} in each of the "
            f"{count} weeks before, so any change stands out (no z)"
        )
        if flat
        else None,
    }


def _strongest_first(found: Mapping[str, Any]) -> tuple:
    """Flat-baseline breaks first, then by |z| descending; ties by metric, scope, week."""
    return (
        found["z"] is not None,
        -abs(found["z"] or 0.0),
        found["metric"],
        [(key, str(value)) for key, value in sorted(found["scope"].items())],
        found["week"],
    )


def _trailing_stats(
    values: np.ndarray, group: np.ndarray, window: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: mean, sample std and count of the finite values among the `window` rows
    before it in the same group (rows are sorted by group, then time).

    Two passes over a (rows × window) matrix of lagged values: exact, not a running sum.
    """
    n = len(values)
    lagged = np.full((n, window), np.nan)
    positions = np.arange(n)
    for lag in range(1, window + 1):
        source = positions - lag
        same = (source >= 0) & (group[np.maximum(source, 0)] == group)
        lagged[same, lag - 1] = values[source[same]]
    present = np.isfinite(lagged)
    count = present.sum(axis=1)
    filled = np.where(present, lagged, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = filled.sum(axis=1) / count
        squares = np.where(present, (lagged - mean[:, None]) ** 2, 0.0).sum(axis=1)
        std = np.sqrt(squares / (count - 1))
    return mean, std, count


def _numbers(column: pd.Series) -> np.ndarray:
    return pd.to_numeric(column, errors="coerce").astype("float64").to_numpy()


# --- bottleneck -------------------------------------------------------------------------


STAGES: tuple[tuple[str, str], ...] = (
    ("delivery", "reach_rate"),
    ("response", "response_rate"),
    ("application", "application_rate"),
    ("approval", "approval_rate"),
    ("disbursement", "disbursement_rate"),
)
"""The funnel's stages in order, each with the rate that measures it."""

DIAGNOSES = {
    "delivery": (
        "Few touches reach the customer: look at the contact data (stale or wrong numbers "
        "and addresses, opt-outs) or at the channel itself (provider failures, filtering), "
        "not at the message."
    ),
    "response": (
        "Messages arrive but few customers respond: the message, the offer or the timing "
        "(send window) is not landing, so test copy, offer and window."
    ),
    "application": (
        "Customers receive the message but few apply: the message, the offer or its timing "
        "fails to convert, so test copy, offer and send window before widening the audience."
    ),
    "approval": (
        "Many applications but a low approval rate point at targeting (who is contacted: "
        "score floor, segments, industries), not at the message: the campaign persuades "
        "people who do not qualify."
    ),
    "disbursement": (
        "Approved applicants do not take the loan: look at the offer terms (amount, rate, "
        "tenor) or at fulfilment (signing, documents, time to disburse)."
    ),
}
"""One sentence per stage: where a shortfall there points."""

REFERENCE_KINDS = ("target", "baseline")


def bottleneck(
    actual: Mapping[str, float],
    reference: Mapping[str, float],
    reference_kind: str,
) -> dict[str, Any] | None:
    """The funnel stage furthest below its reference, in relative terms.

    `actual` and `reference` map stage rates (reach_rate, response_rate,
    application_rate, approval_rate, disbursement_rate; see `stage_rates`) to values;
    `reference_kind` says where the reference came from: 'target' (the plan, via
    `stage_references_from_targets`) or 'baseline' (trailing weeks). A stage whose
    reference or actual is missing or not finite, or whose reference is ≤ 0 (no relative
    gap), is not compared. gap_pct = actual / reference − 1; the bottleneck has the most
    negative gap (ties: the earlier stage, upstream problems mask downstream ones).

    Relative, not absolute, because rates of different stages live on different scales
    (reach ~0.9, application ~0.02): a 0.01 drop means little for one, a lot for the other.

    Returns stage, metric, actual, reference, reference_kind, gap_pct, diagnosis, note,
    and evidence (every stage in order: stage, metric, actual, reference, gap_pct, None
    where unknown). When no stage is below its reference: stage, metric, actual,
    reference, gap_pct and diagnosis None and a note saying so. None when no stage could
    be compared at all.
    """
    if reference_kind not in REFERENCE_KINDS:
        raise ValueError(f"reference_kind must be one of {REFERENCE_KINDS}, got {reference_kind!r}")
    evidence = []
    for stage, metric in STAGES:
        value, basis = finite_number(actual.get(metric)), finite_number(reference.get(metric))
        comparable = value is not None and basis is not None and basis > 0
        # a tiny basis could overflow
        gap = finite_number(value / basis - 1) if comparable else None
        evidence.append(
            {"stage": stage, "metric": metric, "actual": value, "reference": basis, "gap_pct": gap}
        )
    compared = [row for row in evidence if row["gap_pct"] is not None]
    if not compared:
        return None
    worst = min(compared, key=lambda row: row["gap_pct"])  # min keeps the first of ties
    if worst["gap_pct"] >= -EPSILON:
        return {
            "stage": None,
            "metric": None,
            "actual": None,
            "reference": None,
            "reference_kind": reference_kind,
            "gap_pct": None,
            "diagnosis": None,
            "note": f"no stage is below its {reference_kind}",
            "evidence": evidence,
        }
    return {
        **worst,
        "reference_kind": reference_kind,
        "diagnosis": DIAGNOSES[worst["stage"]],
        "note": None,
        "evidence": evidence,
    }


def stage_rates(counts: Mapping[str, float] | pd.Series) -> dict[str, float]:
    """The five stage rates from the funnel's counts (touches, delivered, responded,
    applications, decided, approved, disbursements); NaN where a count is missing or a
    denominator is zero, never an error or ±inf, and approval_rate NaN when none of the
    applications has a decision yet (no data, not a 0 % approval: `metrics.undecided`)."""

    def count(name: str) -> float:
        number = finite_number(counts.get(name))
        return math.nan if number is None else number

    approval = _divide(count("approved"), count("applications"))
    if count("decided") == 0:
        approval = math.nan
    return {
        "reach_rate": _divide(count("delivered"), count("touches")),
        "response_rate": _divide(count("responded"), count("delivered")),
        "application_rate": _divide(count("applications"), count("delivered")),
        "approval_rate": approval,
        "disbursement_rate": _divide(count("disbursements"), count("approved")),
    }


def stage_references_from_targets(targets: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Campaign-scope stage rates implied by the plan's targets.

    reach_rate = delivered / touches, application_rate = applications / delivered,
    approval_rate = its own target, disbursement_rate = disbursements / (applications ×
    approval_rate). The plan sets no response target, so response_rate is absent; a rate
    whose inputs are missing or whose denominator is zero is absent too.
    """
    campaign: dict[str, float] = {}
    for row in targets:
        if _scope_value(row.get("channel")) is None and _scope_value(row.get("segment")) is None:
            metric = str(row["metric"])
            if metric in campaign:
                raise ValueError(f"more than one campaign-scope target for {metric}")
            value = finite_number(row.get("target"))
            if value is not None:
                campaign[metric] = value

    def get(name: str) -> float:
        return campaign.get(name, math.nan)

    approved = get("applications") * get("approval_rate")
    rates = {
        "reach_rate": _divide(get("delivered"), get("touches")),
        "application_rate": _divide(get("applications"), get("delivered")),
        "approval_rate": get("approval_rate"),
        "disbursement_rate": _divide(get("disbursements"), approved),
    }
    return {name: value for name, value in rates.items() if math.isfinite(value)}


# --- numbers ----------------------------------------------------------------------------


def _divide(numerator: float, denominator: float) -> float:
    if not (math.isfinite(numerator) and math.isfinite(denominator)) or denominator == 0:
        return math.nan
    quotient = numerator / denominator
    return quotient if math.isfinite(quotient) else math.nan


def finite_number(value: Any) -> float | None:
    """`value` as a plain float, None when missing, not a number, NaN or ±inf."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
