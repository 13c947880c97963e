"""The import path's vectorised `row_failures` says what Great Expectations says.

`row_failures` re-implements the suites' column-map expectations as pandas masks (GE is
too slow for the import path). These tests hold it to GE's own verdict: a property test
on generated frames for the touches and decisions suites (the ones with row conditions,
booleans and strict bounds), and one plain example per expectation type.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.common.feeds import FEEDS
from tasks.data import quality
from tasks.data.quality import row_failures, validate_frame

T0 = datetime(2026, 3, 2, 4, 0)

# --- frames typed the way the importer types them (tasks.data.import_parsing.parse_chunk) ----


def typed_frame(feed: str, rows: list[dict[str, Any]], index: list[int] | None = None):
    """A frame of `feed`'s columns with the importer's dtypes: str, Int64, float, boolean,
    datetime64[us]; None is a missing value."""
    columns = {}
    for column in FEEDS[feed].columns:
        values = [row.get(column.name) for row in rows]
        if column.kind in ("str", "date", "phone", "email"):
            columns[column.name] = pd.Series(values, dtype="str")
        elif column.kind == "int":
            columns[column.name] = pd.Series(pd.array(values, dtype="Int64"))
        elif column.kind == "float":
            columns[column.name] = pd.Series(
                [np.nan if v is None else float(v) for v in values], dtype="float64"
            )
        elif column.kind == "bool":
            columns[column.name] = pd.Series(pd.array(values, dtype="boolean"))
        else:
            columns[column.name] = pd.Series(pd.to_datetime(values)).astype("datetime64[us]")
    frame = pd.DataFrame(columns)
    if index is not None:
        frame.index = index
    return frame


VALID = {
    "customers": {
        "customer_id": "c1",
        "segment": "sme",
        "region": "north",
        "credit_score": 650,
        "monthly_income": 5000.0,
        "debt_ratio": 0.3,
        "industry": "retail",
        "phone": None,
        "email": "a@b.cn",
        "marketing_consent": True,
        "do_not_contact": False,
        "created_at": T0,
    },
    "touches": {
        "touch_id": "t1",
        "campaign_id": "sme-spring-2026",
        "customer_id": "c1",
        "channel": "sms",
        "variant": "A",
        "sent_at": T0,
        "delivered": True,
        "responded": False,
        "cost": 0.5,
    },
    "decisions": {
        "application_id": "a1",
        "decided_at": T0,
        "decision": "approved",
        "reject_reason": None,
        "approved_amount": 10000.0,
        "apr": 12.5,
    },
    "repayments": {"loan_id": "l1", "as_of": "2026-03-02", "dpd": 0, "outstanding": 100.0},
}


def rows_with(feed: str, *changes: dict[str, Any]) -> list[dict[str, Any]]:
    """One valid row of `feed` per change, each with distinct keys and `change` applied."""
    rows = []
    for number, change in enumerate(changes, 1):
        row = dict(VALID[feed])
        for key in FEEDS[feed].key:
            if isinstance(row[key], str) and key != "as_of":
                row[key] = f"{row[key]}-{number}"
        row.update(change)
        rows.append(row)
    return rows


def failing_rows(outcome: dict[Any, list[str]]) -> dict[Any, set[str]]:
    return {index: set(rules) for index, rules in outcome.items()}


def assert_same_verdict(name: str, frame: pd.DataFrame) -> None:
    """`row_failures` and GE name the same rows, each for the same critical rules."""
    ours = failing_rows(row_failures(name, frame))
    theirs = failing_rows(validate_frame(name, frame).row_failures)
    only_ours = sorted(set(ours) - set(theirs), key=str)
    only_ge = sorted(set(theirs) - set(ours), key=str)
    assert not only_ours and not only_ge, (
        f"suite {name}: rows failing only in row_failures {only_ours}, only in GE {only_ge}\n"
        f"row_failures: {ours}\nGE: {theirs}\nframe:\n{frame.to_string()}"
    )
    differing = {i: (ours[i], theirs[i]) for i in ours if ours[i] != theirs[i]}
    assert not differing, (
        f"suite {name}: same rows, different rules (row_failures, GE): {differing}\n"
        f"frame:\n{frame.to_string()}"
    )


def assert_fails(name: str, frame: pd.DataFrame, expected: dict[Any, str]) -> None:
    """Exactly the rows of `expected` fail, each naming the rule given by a fragment."""
    found = row_failures(name, frame)
    assert set(found) == set(expected), (
        f"suite {name}: expected failing rows {sorted(expected)}, got {found}"
    )
    for index, fragment in expected.items():
        assert any(fragment in rule for rule in found[index]), (
            f"suite {name}: row {index} should fail a rule mentioning {fragment!r}, "
            f"got {found[index]}"
        )


# --- the property: both engines agree on generated frames --------------------------------

POOLS: dict[str, dict[str, list[Any]]] = {
    "touches": {
        "touch_id": ["t1", "t2", "t3", "T-4.x:y", "-bad", "x" * 70, None],
        "campaign_id": ["sme-spring-2026", "other", None],
        "customer_id": ["c1", "c2", None],
        "channel": ["phone", "sms", "im", "app_push", "email", "branch", "partner", "fax", None],
        "variant": ["A", "B", "holdout", "Holdout", "two words", "v" * 33, None],
        "sent_at": [T0, datetime(2026, 5, 31, 23, 59), None],
        "delivered": [True, False, None],
        "responded": [True, False, None],
        "cost": [0.0, 0.5, 12.0, -0.01, -3.0, None],
    },
    "decisions": {
        "application_id": ["a1", "a2", "a3", "a_4", ".bad", "", None],
        "decided_at": [T0, None],
        "decision": ["approved", "rejected", "Approved", "pending", None],
        "reject_reason": ["low_score", "industry", None],
        "approved_amount": [0.0, 0.01, 5000.0, -1.0, None],
        "apr": [0.0, 12.5, 24.0, 100.0, 100.01, -0.5, None],
    },
}


@st.composite
def frames(draw: st.DrawFn, feed: str) -> pd.DataFrame:
    """0–30 rows drawn from each column's pool, under a shuffled non-default index."""
    size = draw(st.integers(min_value=0, max_value=30))
    rows = [
        {column: draw(st.sampled_from(pool)) for column, pool in POOLS[feed].items()}
        for _ in range(size)
    ]
    labels = draw(st.permutations(range(100, 100 + size)))
    return typed_frame(feed, rows, index=list(labels))


class TestAgreesWithGreatExpectations:
    @settings(
        max_examples=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        derandomize=True,
    )
    @given(frame=frames("touches"))
    def test_touches(self, frame: pd.DataFrame) -> None:
        assert_same_verdict("touches", frame)

    @settings(
        max_examples=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        derandomize=True,
    )
    @given(frame=frames("decisions"))
    def test_decisions(self, frame: pd.DataFrame) -> None:
        assert_same_verdict("decisions", frame)

    @pytest.mark.parametrize("feed", ["customers", "touches", "decisions", "repayments"])
    def test_valid_rows_fail_nothing(self, feed: str) -> None:
        frame = typed_frame(feed, rows_with(feed, {}, {}, {}))
        assert row_failures(feed, frame) == {}
        assert_same_verdict(feed, frame)

    @pytest.mark.parametrize("feed", ["customers", "touches", "decisions", "repayments"])
    def test_empty_frame_fails_nothing(self, feed: str) -> None:
        assert row_failures(feed, typed_frame(feed, [])) == {}


# --- one example per expectation type ---------------------------------------------------


class TestNotNull:
    def test_success(self) -> None:
        assert_fails("customers", typed_frame("customers", rows_with("customers", {})), {})

    @pytest.mark.parametrize(
        ("column", "value"),
        [("segment", None), ("credit_score", None), ("marketing_consent", None)],
    )
    def test_failure(self, column: str, value: Any) -> None:
        frame = typed_frame("customers", rows_with("customers", {}, {column: value}))
        assert_fails("customers", frame, {1: f"{column}: must not be null"})
        assert_same_verdict("customers", frame)

    def test_optional_column_may_be_null(self) -> None:
        frame = typed_frame("customers", rows_with("customers", {"region": None, "email": None}))
        assert_fails("customers", frame, {})


class TestInSet:
    @pytest.mark.parametrize("channel", ["phone", "partner"])
    def test_success(self, channel: str) -> None:
        frame = typed_frame("touches", rows_with("touches", {"channel": channel}))
        assert_fails("touches", frame, {})

    @pytest.mark.parametrize("channel", ["fax", "SMS", "sms "])
    def test_failure(self, channel: str) -> None:
        frame = typed_frame("touches", rows_with("touches", {}, {"channel": channel}))
        assert_fails("touches", frame, {1: "channel: must be in set"})
        assert_same_verdict("touches", frame)

    def test_null_is_only_a_not_null_failure(self) -> None:
        frame = typed_frame("touches", rows_with("touches", {"channel": None}))
        assert row_failures("touches", frame) == {0: ["channel: must not be null"]}


class TestBetween:
    @pytest.mark.parametrize("score", [300, 650, 900])
    def test_success_bounds_inclusive(self, score: int) -> None:
        frame = typed_frame("customers", rows_with("customers", {"credit_score": score}))
        assert_fails("customers", frame, {})

    @pytest.mark.parametrize("score", [299, 901, 1200, -5])
    def test_failure(self, score: int) -> None:
        frame = typed_frame("customers", rows_with("customers", {}, {"credit_score": score}))
        assert_fails("customers", frame, {1: "credit_score: must be between [300.0, 900.0]"})
        assert_same_verdict("customers", frame)

    @pytest.mark.parametrize(("amount", "fails"), [(0.0, True), (0.01, False), (-1.0, True)])
    def test_strict_min(self, amount: float, fails: bool) -> None:
        frame = typed_frame("decisions", rows_with("decisions", {"approved_amount": amount}))
        assert_fails(
            "decisions", frame, {0: "approved_amount: must be between (0.0, ]"} if fails else {}
        )
        assert_same_verdict("decisions", frame)

    def test_warning_never_fails_a_row(self) -> None:
        frame = typed_frame("customers", rows_with("customers", {"debt_ratio": 9.0}))
        assert_fails("customers", frame, {})


class TestMatchRegex:
    @pytest.mark.parametrize("touch_id", ["t1", "T-1.a:b_c", "9" * 64])
    def test_success(self, touch_id: str) -> None:
        frame = typed_frame("touches", rows_with("touches", {"touch_id": touch_id}))
        assert_fails("touches", frame, {})

    @pytest.mark.parametrize("touch_id", ["-t1", "t 1", "9" * 65, "t/1"])
    def test_failure(self, touch_id: str) -> None:
        frame = typed_frame("touches", rows_with("touches", {}, {"touch_id": touch_id}))
        assert_fails("touches", frame, {1: "touch_id: must match regex"})
        assert_same_verdict("touches", frame)

    def test_regex_searches_like_ge(self) -> None:
        """The email rule has no anchors in effect beyond its own: GE searches."""
        frame = typed_frame("customers", rows_with("customers", {}, {"email": "not-an-email"}))
        assert_fails("customers", frame, {1: "email: must match regex"})
        assert_same_verdict("customers", frame)


class TestUnique:
    def test_success(self) -> None:
        frame = typed_frame("touches", rows_with("touches", {}, {}))
        assert_fails("touches", frame, {})

    def test_failure_names_every_copy(self) -> None:
        frame = typed_frame("touches", rows_with("touches", {}, {"touch_id": "t1-1"}, {}))
        assert_fails("touches", frame, {0: "must be unique", 1: "must be unique"})
        assert_same_verdict("touches", frame)

    def test_nulls_are_not_duplicates(self) -> None:
        frame = typed_frame("touches", rows_with("touches", {"touch_id": None}, {"touch_id": None}))
        assert_fails("touches", frame, {0: "must not be null", 1: "must not be null"})
        assert all(
            "unique" not in " ".join(rules) for rules in row_failures("touches", frame).values()
        )

    @pytest.mark.parametrize(
        ("suite", "keys", "change", "amount"),
        [
            ("touches", ("touch_id",), {"touch_id": "t1-1"}, "cost"),
            ("repayments", ("loan_id", "as_of"), {"loan_id": "l1-1"}, "outstanding"),
        ],
    )
    def test_key_uniqueness_is_left_to_the_importer(
        self, suite: str, keys: tuple[str, ...], change: dict[str, Any], amount: str
    ) -> None:
        """With `keys`, repeats of the key are not a rule failure (the importer keeps the
        first valid occurrence); every other rule still applies."""
        frame = typed_frame(suite, rows_with(suite, {}, change))
        assert set(row_failures(suite, frame)) == {0, 1}
        assert row_failures(suite, frame, keys=keys) == {}
        broken = typed_frame(suite, rows_with(suite, {}, change | {amount: -1.0}))
        assert list(row_failures(suite, broken, keys=keys)) == [1]


class TestCompoundUnique:
    def test_success_same_loan_other_day(self) -> None:
        frame = typed_frame(
            "repayments", rows_with("repayments", {}, {"loan_id": "l1-1", "as_of": "2026-03-03"})
        )
        assert_fails("repayments", frame, {})

    def test_failure(self) -> None:
        frame = typed_frame("repayments", rows_with("repayments", {}, {"loan_id": "l1-1"}))
        assert_fails("repayments", frame, {0: "loan_id+as_of", 1: "loan_id+as_of"})
        assert_same_verdict("repayments", frame)


class TestRowCondition:
    @pytest.mark.parametrize(
        ("change", "fragment"),
        [
            ({"variant": "holdout", "delivered": True, "cost": 0.0}, 'when variant=="holdout"'),
            (
                {"variant": "holdout", "delivered": False, "cost": 1.0},
                "cost: must be between [0.0, 0.0]",
            ),
            ({"delivered": False, "responded": True}, "when delivered==False"),
        ],
    )
    def test_failure_touches(self, change: dict[str, Any], fragment: str) -> None:
        frame = typed_frame("touches", rows_with("touches", {}, change))
        assert_fails("touches", frame, {1: fragment})
        assert_same_verdict("touches", frame)

    def test_success_holdout_assignment(self) -> None:
        change = {"variant": "holdout", "delivered": False, "responded": False, "cost": 0.0}
        assert_fails("touches", typed_frame("touches", rows_with("touches", change)), {})

    @pytest.mark.parametrize(
        ("change", "fragment"),
        [
            ({"decision": "rejected", "reject_reason": None}, "reject_reason: must not be null"),
            ({"decision": "approved", "apr": None}, "apr: must not be null"),
            (
                {"decision": "approved", "approved_amount": None},
                "approved_amount: must not be null",
            ),
        ],
    )
    def test_failure_decisions(self, change: dict[str, Any], fragment: str) -> None:
        frame = typed_frame("decisions", rows_with("decisions", {}, change))
        assert_fails("decisions", frame, {1: fragment})
        assert_same_verdict("decisions", frame)

    def test_condition_false_exempts_the_row(self) -> None:
        change = {"decision": "rejected", "reject_reason": "low_score", "apr": None}
        frame = typed_frame("decisions", rows_with("decisions", change | {"approved_amount": None}))
        assert_fails("decisions", frame, {})


def comparison(column: str, operator: str, parameter: Any) -> dict[str, Any]:
    return {
        "type": "comparison",
        "column": {"name": column},
        "operator": operator,
        "parameter": parameter,
    }


CONDITIONS = {
    "equal text": comparison("decision", "==", "approved"),
    "equal flag": comparison("flag", "==", False),
    "not equal": comparison("decision", "!=", "approved"),
    "less than": comparison("score", "<", 600),
    "at least": comparison("score", ">=", 600),
    "in": comparison("decision", "IN", ["approved", "pending"]),
    "not in": comparison("decision", "NOT_IN", ["approved"]),
    "null": {"type": "nullity", "column": {"name": "score"}, "is_null": True},
    "not null": {"type": "nullity", "column": {"name": "score"}, "is_null": False},
    "and": {
        "type": "and",
        "conditions": [comparison("decision", "==", "approved"), comparison("flag", "==", True)],
    },
    "or": {
        "type": "or",
        "conditions": [comparison("decision", "==", "rejected"), comparison("score", ">", 700)],
    },
}


class TestRowConditionObjects:
    """Rules for some rows only are written as GE's Condition objects (GE 1.9 deprecated
    condition strings; GE 2 removes them). The import path keeps the rows GE keeps."""

    def test_no_suite_uses_a_condition_string(self) -> None:
        for path in sorted(quality.EXPECTATIONS_DIR.glob("*.json")):
            for item in quality._suite_document(path.stem)["expectations"]:
                kwargs = item["kwargs"]
                assert "condition_parser" not in kwargs, (path.name, item)
                condition = kwargs.get("row_condition")
                assert condition is None or isinstance(condition, dict), (path.name, item)

    def test_every_suite_loads_without_a_deprecation_warning(self) -> None:
        import warnings

        for path in sorted(quality.EXPECTATIONS_DIR.glob("*.json")):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                quality.load_suite(path.stem)
            deprecations = [w for w in caught if issubclass(w.category, DeprecationWarning)]
            assert not deprecations, (path.name, [str(w.message) for w in deprecations])

    @pytest.mark.parametrize("name", CONDITIONS)
    def test_the_rows_a_condition_keeps_are_the_ones_ge_keeps(self, name: str) -> None:
        import great_expectations as gx

        condition = CONDITIONS[name]
        frame = pd.DataFrame(
            {
                "decision": pd.Series(
                    ["approved", "rejected", "pending", None, "approved", "rejected"], dtype="str"
                ),
                "flag": pd.array([True, False, None, False, False, True], dtype="boolean"),
                "score": [650.0, None, 720.0, 580.0, 600.0, 710.0],
                "apr": [None] * 6,
            },
            index=[10, 11, 12, 13, 14, 15],
        )
        rule = {
            "type": "expect_column_values_to_not_be_null",
            "kwargs": {"column": "apr", "row_condition": condition},
            "meta": {},
            "severity": "critical",
        }
        by_ge = quality._validate(
            gx.ExpectationSuite(name=f"condition-{name}", expectations=[rule]), frame
        )
        kept = frame.eval(quality.condition_query(condition)).fillna(False).astype(bool)
        assert sorted(by_ge.row_failures) == list(frame.index[kept.to_numpy(dtype=bool)])

    def test_labels_read_as_before(self) -> None:
        assert quality.condition_label(CONDITIONS["equal text"]) == 'decision=="approved"'
        assert quality.condition_label(CONDITIONS["equal flag"]) == "flag==False"
        assert quality.condition_label(CONDITIONS["in"]) == 'decision in ["approved", "pending"]'
        assert quality.condition_label(CONDITIONS["null"]) == "score is null"


class TestOtherExpectationTypes:
    """A type `row_failures` has no mask for is handed to GE, with the same result shape."""

    def test_failure_goes_through_ge(self, monkeypatch: pytest.MonkeyPatch) -> None:
        document = {
            "name": "touches",
            "expectations": [
                {
                    "type": "expect_column_value_lengths_to_be_between",
                    "kwargs": {"column": "variant", "min_value": 1, "max_value": 2},
                    "meta": {},
                    "severity": "critical",
                }
            ],
        }
        monkeypatch.setattr(quality, "_suite_document", lambda _name: document)
        frame = typed_frame("touches", rows_with("touches", {}, {"variant": "long"}), index=[7, 9])
        assert list(row_failures("touches", frame)) == [9]
