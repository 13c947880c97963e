"""The Great Expectations side of the check's data quality: one run's validations of the
period's datasets, their tallies per suite, and the Data Docs of the run.

`tasks.check.data_quality` decides what is validated and what the verdict is; this module
is how GE is driven: on the shared ephemeral context of `tasks.data.quality` (under its
lock), one validation definition per suite, with the frames' fingerprints switched off
(what that costs and why is in docs/check.md).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from tasks.common.jsonable import jsonable
from tasks.data.quality import GX_LOCK, _context, _suite_document, describe, load_suite

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuiteValidationResult

DATASETS: dict[str, tuple[str, ...]] = {
    "touches": ("touches",),
    "touch_timing": ("touch_timing",),
    "applications": ("applications",),
    "decisions": ("decisions", "campaign_decisions"),
    "loans": ("loans", "campaign_loans"),
    "repayments": ("repayments",),
    "complaints": ("complaints",),
    "funnel_consistency": ("funnel_consistency",),
}
"""Each dataset the check validates → the suites run on it, in report order."""

KEYS = {
    "touches": ["touch_id"],
    "touch_timing": ["touch_id"],
    "applications": ["application_id"],
    "decisions": ["application_id"],
    "loans": ["loan_id"],
    "repayments": ["loan_id", "as_of"],
    "complaints": ["complaint_id"],
    "funnel_consistency": ["week", "channel"],
}
"""The key columns of each dataset: failing rows are named by them (`examples`)."""

EXAMPLES = 5
"""How many failing rows' keys an expectation names."""


@dataclass
class Tally:
    """One suite's results, summed over the frames (chunks of weeks) it ran on."""

    name: str
    evaluated: int = 0
    rows_in: int = 0
    failed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    unexpected: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list] = field(default_factory=dict)

    def add(self, result: ExpectationSuiteValidationResult, rows: int, keys: list[str]) -> None:
        self.evaluated = max(self.evaluated, len(result.results))
        self.rows_in += rows
        for item in result.results:
            if item.success:
                continue
            config = item.expectation_config
            label = expectation_name(config)
            if _raised(item.exception_info):
                label += " (could not run)"  # e.g. a column is missing
            critical = str(getattr(config.severity, "value", config.severity)) == "critical"
            target = self.failed if critical else self.warnings
            if label not in target:
                target.append(label)
            details = item.result or {}
            self.unexpected[label] = self.unexpected.get(label, 0) + int(
                details.get("unexpected_count") or 0
            )
            found = self.examples.setdefault(label, [])
            for index in details.get("partial_unexpected_index_list") or []:
                if len(found) < EXAMPLES and isinstance(index, dict):
                    key = {column: jsonable(index.get(column)) for column in keys}
                    found.append(key[keys[0]] if len(keys) == 1 else key)

    def add_passed(self, expectations: int) -> None:
        """A frame without rows: each of the suite's `expectations` evaluated and passed."""
        self.evaluated = max(self.evaluated, expectations)

    def to_json(self, rows_quarantined: int) -> dict[str, Any]:
        return {
            "name": self.name,
            "success": not self.failed,  # GE's own verdict fails on warnings too
            "evaluated": self.evaluated,
            "failed": self.failed,
            "warnings": self.warnings,
            "rows_in": self.rows_in,
            "rows_quarantined": rows_quarantined,
            "unexpected": self.unexpected,
            "examples": self.examples,
        }


def _raised(info: Any) -> bool:
    """Whether GE's exception_info (flat, or one entry per metric) reports an error."""
    if not isinstance(info, dict):
        return False
    if info.get("raised_exception"):
        return True
    return any(isinstance(v, dict) and v.get("raised_exception") for v in info.values())


def expectation_name(config) -> str:
    """`describe`'s short name, also for the column-pair rules of funnel_consistency
    (e.g. `touches: must be >= delivered`)."""
    kwargs = config.kwargs
    if "column_A" in kwargs:
        relation = ">=" if kwargs.get("or_equal") else ">"
        return f"{kwargs['column_A']}: must be {relation} {kwargs['column_B']}"
    return describe(config)


class ValidationRun:
    """This run's validations: their tallies by suite, and (for Data Docs) their ids."""

    def __init__(self, run_name: str) -> None:
        self.run_name = run_name
        self.started = dt.datetime.now(dt.UTC)
        self.tallies: dict[str, Tally] = {
            suite: Tally(suite) for suites in DATASETS.values() for suite in suites
        }
        self.stored: list = []

    def validate(self, dataset: str, frame: pd.DataFrame, part: str | None = None) -> None:
        """Run each suite of `dataset` on `frame` (`part` names the weeks of a chunk).

        A frame without rows is not handed to GE: every expectation of pdca's suites passes
        on one (none is about the row count; TestEmptyDatasets holds GE's own verdict on
        each empty dataset to that), and a GE run costs a fixed ~0.1-0.2 s whatever the
        rows. A period without decisions, loans or complaints is common, and each
        `pdca check` (a flow-run process of a worker too) would pay those runs again."""
        if frame.empty:
            for suite in DATASETS[dataset]:
                self.tallies[suite].add_passed(len(_suite_document(suite)["expectations"]))
            return
        name = self.run_name if part is None else f"{self.run_name}.{part}"
        with GX_LOCK:  # its first use imports GE, which two threads must not do at once
            from great_expectations.core.run_identifier import RunIdentifier

            run_id = RunIdentifier(run_name=name, run_time=self.started)
            for suite in DATASETS[dataset]:
                result = validate_suite(dataset, suite, frame, run_id)
                self.tallies[suite].add(result, len(frame), KEYS[dataset])
                self.stored.append(_result_identifier(result, run_id))

    def write_docs(self, docs_dir: Path) -> Path:
        """One Data Docs build of this run's results (and their suites' pages)."""
        docs_dir = docs_dir.resolve()
        docs_dir.mkdir(parents=True, exist_ok=True)
        with GX_LOCK:
            from great_expectations.data_context.types.resource_identifiers import (
                ExpectationSuiteIdentifier,
            )

            suites = [ExpectationSuiteIdentifier(name=name) for name in self.tallies]
            site = _docs_site(docs_dir)
            _context().build_data_docs(
                site_names=[site], resource_identifiers=[*suites, *self.stored]
            )
        return docs_dir / "index.html"

    def forget(self) -> None:
        """Drop this run's results from the (in-memory) validation results store, and its
        frames from the execution engine's cache (which keeps each asset's last one)."""
        with GX_LOCK:
            store = _context().validation_results_store
            for identifier in self.stored:
                if store.has_key(identifier):
                    store.remove_key(identifier)
            self.stored = []
            batches = _datasource().get_execution_engine().batch_manager
            batches.batch_data_cache.clear()
            batches.reset_batch_cache()


def validate_suite(
    dataset: str, suite: str, frame: pd.DataFrame, run_id
) -> ExpectationSuiteValidationResult:
    """Suite `suite` on `frame` through its validation definition, which stores the result
    in the context's validation results store (where Data Docs read it).

    First in GE's BASIC format, which has everything a passing suite shows (the observed
    values, the unexpected counts and percentages: its Data Docs page is the same as in
    SUMMARY), without the failing rows' keys that SUMMARY looks up for every rule. Only a
    suite that failed (a warning included) runs again in SUMMARY, which names its failing
    rows by their keys; that result replaces the first in the store (the same key). On
    clean data, most checks, that is a third of the suite's time on a small period (the
    touches suite on 3,000 rows: 0.21 s → 0.13 s) and a tenth on the 10 M benchmark's
    week (0.97 s → 0.86 s)."""
    result = _run(dataset, suite, frame, run_id, {"result_format": "BASIC"})
    if result.success:
        return result
    detailed = {"result_format": "SUMMARY", "unexpected_index_column_names": KEYS[dataset]}
    return _run(dataset, suite, frame, run_id, detailed)


def _run(
    dataset: str, suite: str, frame: pd.DataFrame, run_id, result_format: dict[str, Any]
) -> ExpectationSuiteValidationResult:
    """One run of the suite's validation definition on `frame` in `result_format`."""
    result_format = result_format | {"partial_unexpected_count": EXAMPLES}
    with _no_fingerprint():
        return _definition(dataset, suite).run(
            batch_parameters={"dataframe": frame}, result_format=result_format, run_id=run_id
        )


@cache
def _definition(dataset: str, suite: str):
    """The validation definition of `suite` on the dataframe asset `dataset`."""
    import great_expectations as gx

    context = _context()
    asset = _datasource().add_dataframe_asset(f"{dataset}-{suite}")
    batch = asset.add_batch_definition_whole_dataframe("period")
    definition = gx.ValidationDefinition(name=f"dq-{suite}", data=batch, suite=load_suite(suite))
    return context.validation_definitions.add(definition)


@cache
def _datasource():
    return _context().data_sources.add_pandas("dq")


def _result_identifier(result: ExpectationSuiteValidationResult, run_id):
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    return ValidationResultIdentifier(
        expectation_suite_identifier=ExpectationSuiteIdentifier(name=result.suite_name),
        run_id=run_id,
        batch_identifier=result.batch_id,
    )


def _docs_site(docs_dir: Path) -> str:
    """The context's Data Docs site writing to `docs_dir`, added on first use, with GE's
    views whose templates compile once per process (tasks/check/docs_views.py)."""
    context = _context()
    name = "dq-" + hashlib.sha1(str(docs_dir).encode(), usedforsecurity=False).hexdigest()[:12]
    if name not in context.list_data_docs_sites():
        from tasks.check.docs_views import VIEWS

        page = {"view": {**VIEWS, "class_name": "PageView"}}
        context.add_data_docs_site(
            site_name=name,
            site_config={
                "class_name": "SiteBuilder",
                "site_index_builder": {
                    "class_name": "DefaultSiteIndexBuilder",
                    "view": {**VIEWS, "class_name": "IndexPageView"},
                },
                "site_section_builders": {"expectations": page, "validations": page},
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_dir),
                },
            },
        )
    return name


@contextmanager
def _no_fingerprint() -> Iterator[None]:
    """GE's pandas engine md5-fingerprints frames below HASH_THRESHOLD bytes; a
    fingerprint only labels the batch, and costs ~1 s per 830,000 touches."""
    from great_expectations.execution_engine import pandas_execution_engine as engine

    threshold = engine.HASH_THRESHOLD
    engine.HASH_THRESHOLD = 0
    try:
        yield
    finally:
        engine.HASH_THRESHOLD = threshold
