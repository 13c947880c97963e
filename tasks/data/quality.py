"""Great Expectations: the suites in `expectations/` and what they say about a frame.

One suite per dataset, stored as JSON in the repository. The importer runs a feed's suite
on each chunk and quarantines the rows a critical expectation names; the check stage runs
the same suites on a period's data. GE is imported lazily: it costs 3–4 s to import.
"""

from __future__ import annotations

import copy
import json
import keyword
import os
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from pdca.settings import PROJECT_ROOT

if TYPE_CHECKING:
    import great_expectations as gx

EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"
CARRIED_PREFIX = "source_carries_"
"""Row conditions on these flags (`tasks.common.feeds.with_carried_flags`) exempt the rows
of a feed that cannot carry the field."""


@dataclass
class SuiteOutcome:
    """One suite's verdict on one frame, in the shape `pdca check --json` reports."""

    name: str
    success: bool
    evaluated: int
    failed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    row_failures: dict[Any, list[str]] = field(default_factory=dict)
    """Index label of each failing row → descriptions of the critical rules it broke."""


def suite_path(name: str) -> Path:
    return EXPECTATIONS_DIR / f"{name}.json"


GX_LOCK = threading.RLock()
"""Held around every use of the context. It is one per process and not thread-safe: two
checks of a backfill in threads registered the same suite twice ("touches-touches already
exists") and shared one batch cache. Validation is Python under the GIL anyway, so
holding it costs the other threads nothing they could have had; their SQL runs meanwhile."""


@cache
def _context() -> gx.data_context.AbstractDataContext:
    """An ephemeral GE context with progress bars and analytics off (they cost seconds)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return context


@cache
def load_suite(name: str) -> gx.ExpectationSuite:
    """The suite `expectations/<name>.json`, registered with the context once."""
    import great_expectations as gx

    document = copy.deepcopy(_suite_document(name))  # GE's suite takes its parts over
    document.pop("id", None)
    return _context().suites.add(gx.ExpectationSuite(**document))


@cache
def _frame_batch_definition():
    source = _context().data_sources.add_pandas("frames")
    return source.add_dataframe_asset("frame").add_batch_definition_whole_dataframe("whole")


def describe(config) -> str:
    """A short human name for an expectation: its type and column, e.g. `cost between`."""
    kwargs = config.kwargs
    column = kwargs.get("column") or "+".join(kwargs.get("column_list", []))
    rule = config.type.removeprefix("expect_column_values_to_").removeprefix("expect_")
    rule = "must " + rule.replace("_", " ")
    bounds = ""
    if "value_set" in kwargs:
        bounds = f" {sorted(map(str, kwargs['value_set']))}"
    elif "min_value" in kwargs or "max_value" in kwargs:
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        low_bracket = "(" if kwargs.get("strict_min") else "["
        high_bracket = ")" if kwargs.get("strict_max") else "]"
        bounds = f" {low_bracket}{'' if low is None else low}, {'' if high is None else high}"
        bounds += high_bracket
    elif "regex" in kwargs:
        bounds = f" /{kwargs['regex']}/"
    condition = kwargs.get("row_condition")
    when = ""
    if condition:
        text = condition_label(condition)
        # "where the row's feed can carry the field" (feeds.NOT_CARRIED) is not a rule a
        # user breaks: a row it exempts never fails, so the name leaves it out
        when = "" if text.startswith(CARRIED_PREFIX) else f" when {text}"
    return f"{column}: {rule}{bounds}{when}"


# --- row conditions: GE's Condition objects, as the suites' JSON holds them -------------
#
# A rule that applies to some rows only says so with a `row_condition` in GE's Condition
# form (`{"type": "comparison", "column": {"name": "decision"}, "operator": "==",
# "parameter": "approved"}`; also "nullity", "and", "or"): GE 1.9 deprecated condition
# strings and their `condition_parser`, and GE 2 removes them. The import path evaluates
# the same conditions without importing GE, so they are read here as plain JSON.


def condition_label(condition: dict[str, Any] | str) -> str:
    """A row condition as the rules' names show it, e.g. `decision=="approved"`,
    `delivered==False` (the wording of the reasons users see in quarantine and checks)."""
    return _render(condition, _label_leaf)


def condition_query(condition: dict[str, Any] | str) -> str:
    """A row condition as the `DataFrame.query` text GE's pandas engine filters the rows
    with (`PandasExecutionEngine.condition_to_filter_clause`), so the import path keeps
    exactly the rows GE's validation would."""
    return _render(condition, _query_leaf)


def _render(condition: dict[str, Any] | str, leaf: Callable[[dict[str, Any]], str]) -> str:
    """The condition's text, its comparisons and nullity tests written by `leaf`. A
    condition string (GE's deprecated form, which a suite edited by hand may still hold)
    and GE's pass-through condition are already pandas text."""
    if isinstance(condition, str):
        return condition
    kind = condition["type"]
    if kind in ("and", "or"):
        return "(" + f" {kind} ".join(_render(part, leaf) for part in condition["conditions"]) + ")"
    if kind == "pass_through":
        return condition["pass_through_filter"]
    if kind in ("comparison", "nullity"):
        return leaf(condition)
    raise ValueError(f"unknown row condition type {kind!r}: {condition}")


def _label_leaf(condition: dict[str, Any]) -> str:
    name = condition["column"]["name"]
    if condition["type"] == "nullity":
        return f"{name} is {'' if condition['is_null'] else 'not '}null"
    operator, value = condition["operator"], condition["parameter"]
    if operator in IN_OPERATORS:
        return f"{name} {IN_OPERATORS[operator]} [{', '.join(map(_label_value, value))}]"
    return f"{name}{operator}{_label_value(value)}"


def _query_leaf(condition: dict[str, Any]) -> str:
    column = _query_column(condition["column"]["name"])
    if condition["type"] == "nullity":
        return f"{column}.isnull()" if condition["is_null"] else f"~{column}.isnull()"
    operator, value = condition["operator"], condition["parameter"]
    if operator in IN_OPERATORS:
        return f"{column} {IN_OPERATORS[operator]} [{', '.join(map(repr, value))}]"
    return f"{column} {operator} {value!r}"


IN_OPERATORS = {"IN": "in", "NOT_IN": "not in"}
"""GE's set operators, as pandas' query (and the rules' names) write them."""


def _label_value(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else repr(value)


def _query_column(name: str) -> str:
    """A column as `DataFrame.query` reads it: backquoted unless a plain identifier."""
    return name if name.isidentifier() and not keyword.iskeyword(name) else f"`{name}`"


def validate_frame(name: str, frame: pd.DataFrame) -> SuiteOutcome:
    """Run suite `name` on `frame` with GE; critical failures name their rows by index label."""
    with GX_LOCK:
        return _validate(load_suite(name), frame)


def _validate(suite, frame: pd.DataFrame) -> SuiteOutcome:
    name = suite.name
    batch = _frame_batch_definition().get_batch(batch_parameters={"dataframe": frame})
    result = batch.validate(suite, result_format={"result_format": "COMPLETE"})
    outcome = SuiteOutcome(name=name, success=True, evaluated=len(result.results))
    rows: dict[Any, list[str]] = defaultdict(list)
    for item in result.results:
        if item.success:
            continue
        config = item.expectation_config
        label = describe(config)
        if str(getattr(config.severity, "value", config.severity)) == "critical":
            outcome.success = False
            outcome.failed.append(label)
            for index in item.result.get("unexpected_index_list") or []:
                rows[index].append(label)
        else:
            outcome.warnings.append(label)
    outcome.row_failures = dict(rows)
    return outcome


# --- row rules: the suite's column-map expectations, vectorised for the import path ------
#
# GE costs ~8 s per million rows for a feed's suite (plus a fixed ~0.3 s per call to build
# its metric graph): more than the whole import budget. The import path therefore
# evaluates the common column-map expectations of the same suite as pandas masks, with
# GE's semantics (nulls pass every rule except not-null; regexes search; `row_condition`
# filters, `condition_query`), and hands any other expectation type to GE itself.
# tests/tasks/data/test_quality.py checks on generated frames that both name the same rows.


def _between(values: pd.Series, kwargs: dict) -> pd.Series:
    failing = pd.Series(False, index=values.index)
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    if low is not None:
        failing |= (values <= low) if kwargs.get("strict_min") else (values < low)
    if high is not None:
        failing |= (values >= high) if kwargs.get("strict_max") else (values > high)
    return failing.fillna(False) & values.notna()


def _in_set(values: pd.Series, kwargs: dict) -> pd.Series:
    return values.notna() & ~values.isin(kwargs["value_set"])


def _regex(values: pd.Series, kwargs: dict) -> pd.Series:
    return values.notna() & ~values.astype("str").str.contains(kwargs["regex"], regex=True)


def _unique(values: pd.Series, _kwargs: dict) -> pd.Series:
    return values.notna() & values.duplicated(keep=False)


COLUMN_RULES = {
    "expect_column_values_to_not_be_null": lambda values, _kwargs: values.isna(),
    "expect_column_values_to_be_in_set": _in_set,
    "expect_column_values_to_be_between": _between,
    "expect_column_values_to_match_regex": _regex,
    "expect_column_values_to_be_unique": _unique,
}


@cache
def _suite_document(name: str) -> dict:
    return json.loads(suite_path(name).read_text())


def row_failures(
    name: str, frame: pd.DataFrame, keys: tuple[str, ...] = ()
) -> dict[Any, list[str]]:
    """Index label → the critical rules of suite `name` that the row breaks.

    Warnings never quarantine a row. Expectations this function cannot evaluate as a
    column mask (another type, or a `mostly` threshold) are run through GE. Uniqueness of
    `keys` is skipped: the importer enforces it as "the first valid occurrence wins",
    where the rule would reject every occurrence.
    """
    rows: dict[Any, list[str]] = defaultdict(list)
    leftovers = []
    for item in _suite_document(name)["expectations"]:
        if item.get("severity", "critical") != "critical" or _is_key_uniqueness(item, keys):
            continue
        kwargs = item["kwargs"]
        rule = COLUMN_RULES.get(item["type"])
        if rule is None or "mostly" in kwargs or kwargs.get("column") not in frame:
            if item["type"] == "expect_compound_columns_to_be_unique":
                failing = frame.duplicated(kwargs["column_list"], keep=False)
                failing &= frame[kwargs["column_list"]].notna().all(axis=1)
            else:
                leftovers.append(item)
                continue
        else:
            failing = rule(frame[kwargs["column"]], kwargs)
        condition = kwargs.get("row_condition")
        if condition:
            failing &= frame.eval(condition_query(condition)).fillna(False).astype(bool)
        label = describe(_Config(item))
        for index in frame.index[failing.to_numpy(dtype=bool)]:
            rows[index].append(label)
    if leftovers:
        import great_expectations as gx

        suite = gx.ExpectationSuite(name=f"{name}-rest", expectations=leftovers)
        for index, labels in _validate(suite, frame).row_failures.items():
            rows[index].extend(labels)
    return dict(rows)


def _is_key_uniqueness(item: dict, keys: tuple[str, ...]) -> bool:
    kwargs = item["kwargs"]
    return bool(keys) and (
        (item["type"] == "expect_column_values_to_be_unique" and (kwargs["column"],) == keys)
        or (
            item["type"] == "expect_compound_columns_to_be_unique"
            and tuple(kwargs["column_list"]) == keys
        )
    )


@dataclass
class _Config:
    """The two attributes of a GE expectation config that `describe` reads, from JSON."""

    type: str
    kwargs: dict

    def __init__(self, item: dict) -> None:
        self.type, self.kwargs = item["type"], item["kwargs"]
