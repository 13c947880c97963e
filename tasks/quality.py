"""Great Expectations: the suites in `expectations/` and what they say about a frame.

One suite per dataset, stored as JSON in the repository. The importer runs a feed's suite
on each chunk and quarantines the rows a critical expectation names; the check stage runs
the same suites on a period's data. GE is imported lazily: it costs 3–4 s to import.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from pdca.settings import PROJECT_ROOT

if TYPE_CHECKING:
    import great_expectations as gx

EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"


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

    document = json.loads(suite_path(name).read_text())
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
        text = condition.get("pass_through_filter") if isinstance(condition, dict) else condition
        when = f" when {text}"
    return f"{column}: {rule}{bounds}{when}"


def validate_frame(name: str, frame: pd.DataFrame) -> SuiteOutcome:
    """Run suite `name` on `frame`; critical failures name their rows by index label."""
    suite = load_suite(name)
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


def expectation_columns(name: str) -> dict[str, list[str]]:
    """Column → the rules that guard it; used to name the field at fault in quarantine."""
    document = json.loads(suite_path(name).read_text())
    columns: dict[str, list[str]] = defaultdict(list)
    for item in document["expectations"]:
        column = item["kwargs"].get("column") or "+".join(item["kwargs"].get("column_list", []))
        columns[column].append(item["type"])
    return dict(columns)
