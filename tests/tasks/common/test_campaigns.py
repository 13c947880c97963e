"""Campaign specs: validation names every problem by its field path; apply is idempotent."""

from __future__ import annotations

import copy
from datetime import date, time
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine, func, select

from pdca.errors import SpecError, UserError
from pdca.models import AuditEntry, Campaign, Product
from tasks.common.campaigns import (
    CampaignSpec,
    TimeRange,
    apply_spec,
    get_campaign_spec,
    load_spec,
    parse_spec,
)

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "sme-spring-2026.yaml"
EXAMPLE_DOC: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))

DELETE = object()
"""A marker for `spec_text`: remove the field instead of setting it."""


def spec_text(**changes: Any) -> str:
    """The example spec as YAML with fields changed; keys are dotted paths
    written with "__" (risk__apr_cap=240), values DELETE to drop the field."""
    document = copy.deepcopy(EXAMPLE_DOC)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = document
        for parent in parents:
            node = node[parent]
        if value is DELETE:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return yaml.safe_dump(document, sort_keys=False)


def spec(**changes: Any) -> CampaignSpec:
    return parse_spec(spec_text(**changes), "test.yaml")


def problems_of(text: str) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as caught:
        parse_spec(text, "test.yaml")
    assert caught.value.source == "test.yaml"
    return caught.value.problems


def assert_paths(problems: list[tuple[str, str]], expected: set[str]) -> None:
    paths = {path for path, _ in problems}
    assert paths == expected, (
        f"expected problems at {sorted(expected)}, got {sorted(paths)}; all problems: {problems}"
    )


# --- validation -------------------------------------------------------------------------


class TestExample:
    def test_example_validates(self):
        loaded = load_spec(EXAMPLE)
        assert loaded.id == "sme-spring-2026"
        assert loaded.start == date(2026, 3, 2)
        assert loaded.channels == ["phone", "sms", "im", "app_push"]
        assert loaded.risk.apr_cap == 24.0
        assert loaded.experiment.variants == {"A": 0.45, "B": 0.45}
        assert loaded.growth == 1.0

    def test_dump_reads_like_the_yaml(self):
        dumped = load_spec(EXAMPLE).model_dump(mode="json")
        assert dumped["contact_policy"]["quiet_hours"] == "21:00-09:00"
        assert dumped["contact_policy"]["windows"] == {
            "noon": "12:00-13:30",
            "evening": "19:00-21:00",
        }
        assert dumped["start"] == "2026-03-02"

    def test_dump_validates_again(self):
        loaded = load_spec(EXAMPLE)
        assert CampaignSpec.model_validate(loaded.model_dump(mode="json")) == loaded


class TestDefaults:
    @pytest.mark.parametrize(
        "field, read, default",
        [
            ("growth", lambda s: s.growth, 1.0),
            ("templates", lambda s: s.templates, {}),
            ("experiment__metric", lambda s: s.experiment.metric, "application_rate"),
            ("risk__excluded_industries", lambda s: s.risk.excluded_industries, []),
        ],
    )
    def test_optional_field_defaults(self, field, read, default):
        assert read(spec(**{field: DELETE})) == default

    def test_growth_is_read(self):
        assert spec(growth=1.2).growth == 1.2


class TestTopLevelFields:
    @pytest.mark.parametrize(
        "changes, path",
        [
            ({"id": "SME_Spring"}, "id"),
            ({"id": ""}, "id"),
            ({"name": "  "}, "name"),
            ({"start": "2026-02-30"}, "start"),
            ({"end": "2026-03-01"}, "end"),
            ({"timezone": "Mars/Olympus"}, "timezone"),
            ({"timezone": "../etc/passwd"}, "timezone"),
            ({"budget_total": 0}, "budget_total"),
            ({"budget_total": -5}, "budget_total"),
            ({"budget_total": "lots"}, "budget_total"),
            ({"growth": 0}, "growth"),
            ({"recipients": ["ops-lead"]}, "recipients.0"),
            ({"recipients": ["a@example.com", "b at example.com"]}, "recipients.1"),
            ({"unknown_key": 1}, "unknown_key"),
            ({"name": DELETE}, "name"),
        ],
    )
    def test_bad_field_is_named(self, changes, path):
        assert_paths(problems_of(spec_text(**changes)), {path})

    def test_end_equal_to_start_is_fine(self):
        assert spec(end=EXAMPLE_DOC["start"]).end == date(2026, 3, 2)

    def test_unknown_key_reason(self):
        (problem,) = problems_of(spec_text(budget=100))
        assert problem == ("budget", "Extra inputs are not permitted")

    def test_reason_shows_the_value(self):
        (problem,) = problems_of(spec_text(budget_total=-5))
        assert "-5" in problem[1]


class TestChannels:
    @pytest.mark.parametrize(
        "channels, path",
        [
            (["phone", "fax"], "channels.1"),
            (["phone", "sms", "carrier-pigeon"], "channels.2"),
            ([], "channels"),
            (["sms", "phone", "sms"], "channels"),
            ("sms", "channels"),
        ],
    )
    def test_bad_channels(self, channels, path):
        assert_paths(problems_of(spec_text(channels=channels)), {path})

    def test_unknown_channel_reason_lists_the_channels(self):
        (problem,) = problems_of(spec_text(channels=["fax"]))
        assert "'fax' is not a channel" in problem[1]
        assert "app_push" in problem[1]

    def test_duplicate_reason_names_the_channel(self):
        (problem,) = problems_of(spec_text(channels=["sms", "sms"]))
        assert problem == ("channels", "listed more than once: sms")

    @pytest.mark.parametrize(
        "templates", [{"sms": "templates/a.j2"}, {"email": "templates/e.html.j2"}, {}]
    )
    def test_templates_for_any_contract_channel(self, templates):
        assert spec(templates=templates).templates == templates

    def test_template_for_unknown_channel(self):
        assert_paths(problems_of(spec_text(templates={"fax": "f.j2"})), {"templates.fax"})


class TestRisk:
    @pytest.mark.parametrize(
        "field, value",
        [
            ("max_overdue_rate_30", 0),
            ("max_overdue_rate_30", 1.5),
            ("min_credit_score", 299),
            ("min_credit_score", 901),
            ("min_credit_score", 600.5),
            ("apr_cap", 0),
            ("apr_cap", 240),
            ("excluded_industries", "crypto"),
        ],
    )
    def test_bad_risk_field(self, field, value):
        assert_paths(problems_of(spec_text(**{f"risk__{field}": value})), {f"risk.{field}"})

    @pytest.mark.parametrize(
        "field, value",
        [("max_overdue_rate_30", 1), ("min_credit_score", 300), ("apr_cap", 100)],
    )
    def test_bounds_are_inclusive(self, field, value):
        # without the example's hard limit, which a ceiling of 1 would be above
        changed = spec(**{f"risk__{field}": value, "risk__hard_overdue_rate_30": DELETE})
        assert getattr(changed.risk, field) == value

    def test_missing_risk_field(self):
        assert_paths(problems_of(spec_text(risk__apr_cap=DELETE)), {"risk.apr_cap"})


class TestGuardrails:
    def test_the_example_sets_both_hard_limits(self):
        risk = load_spec(EXAMPLE).risk
        assert (risk.hard_overdue_rate_30, risk.hard_complaint_rate) == (0.06, 10.0)

    def test_both_are_optional(self):
        risk = spec(risk__hard_overdue_rate_30=DELETE, risk__hard_complaint_rate=DELETE).risk
        assert risk.hard_overdue_rate_30 is None and risk.hard_complaint_rate is None

    @pytest.mark.parametrize(
        "field, value",
        [
            ("hard_overdue_rate_30", 0),
            ("hard_overdue_rate_30", 1.2),
            ("hard_overdue_rate_30", "high"),
            ("hard_complaint_rate", 0),
            ("hard_complaint_rate", -3),
            ("hard_complaint_rate", 1001),
        ],
    )
    def test_out_of_range_is_refused_at_its_path(self, field, value):
        assert_paths(problems_of(spec_text(**{f"risk__{field}": value})), {f"risk.{field}"})

    def test_hard_overdue_limit_below_the_soft_ceiling_is_refused_with_why(self):
        problems = problems_of(spec_text(risk__hard_overdue_rate_30=0.02))
        assert_paths(problems, {"risk.hard_overdue_rate_30"})
        assert "below max_overdue_rate_30 0.03" in problems[0][1]

    def test_hard_limit_equal_to_the_soft_ceiling_is_fine(self):
        assert spec(risk__hard_overdue_rate_30=0.03).risk.hard_overdue_rate_30 == 0.03


class TestTimeRange:
    @pytest.mark.parametrize(
        "text, moment, inside",
        [
            ("12:00-13:30", time(12, 0), True),
            ("12:00-13:30", time(13, 29), True),
            ("12:00-13:30", time(13, 30), False),
            ("12:00-13:30", time(11, 59), False),
            ("21:00-09:00", time(23, 0), True),
            ("21:00-09:00", time(0, 0), True),
            ("21:00-09:00", time(8, 59), True),
            ("21:00-09:00", time(9, 0), False),
            ("21:00-09:00", time(20, 59), False),
        ],
    )
    def test_contains(self, text, moment, inside):
        assert TimeRange.parse(text).contains(moment) is inside

    @pytest.mark.parametrize(
        "first, second, overlap",
        [
            ("19:00-21:00", "21:00-09:00", False),
            ("09:00-10:00", "21:00-09:00", False),
            ("19:00-21:30", "21:00-09:00", True),
            ("08:30-10:00", "21:00-09:00", True),
            ("01:00-02:00", "21:00-09:00", True),
            ("12:00-13:00", "22:00-06:00", False),
            ("12:00-13:00", "12:30-12:45", True),
        ],
    )
    def test_overlaps(self, first, second, overlap):
        a, b = TimeRange.parse(first), TimeRange.parse(second)
        assert a.overlaps(b) is overlap
        assert b.overlaps(a) is overlap

    @pytest.mark.parametrize("text", ["12:00", "12-13", "25:00-26:00", "12:60-13:00", "9:00-10:00"])
    def test_bad_format(self, text):
        with pytest.raises(ValueError):
            TimeRange.parse(text)

    def test_empty_range(self):
        with pytest.raises(ValueError, match="empty"):
            TimeRange.parse("09:00-09:00")

    def test_round_trip(self):
        assert str(TimeRange.parse("21:00-09:00")) == "21:00-09:00"


class TestContactPolicy:
    @pytest.mark.parametrize(
        "windows, path",
        [
            ({"noon": "12:00-13:30", "evening": "19:00-21:30"}, "contact_policy.windows.evening"),
            ({"early": "08:00-10:00"}, "contact_policy.windows.early"),
            ({"night": "23:00-01:00"}, "contact_policy.windows.night"),
            ({"noon": "noon"}, "contact_policy.windows.noon"),
            ({"bad name": "12:00-13:00"}, "contact_policy.windows.bad name"),
            ({}, "contact_policy.windows"),
        ],
    )
    def test_bad_windows(self, windows, path):
        assert_paths(problems_of(spec_text(contact_policy__windows=windows)), {path})

    def test_every_overlapping_window_is_listed(self):
        windows = {"dawn": "07:00-10:00", "noon": "12:00-13:00", "late": "20:00-22:00"}
        problems = problems_of(spec_text(contact_policy__windows=windows))
        assert_paths(problems, {"contact_policy.windows.dawn", "contact_policy.windows.late"})
        assert (
            "overlaps the quiet hours 21:00-09:00" in dict(problems)["contact_policy.windows.late"]
        )

    @pytest.mark.parametrize(
        "quiet, windows",
        [
            ("21:00-09:00", {"evening": "19:00-21:00", "morning": "09:00-10:00"}),
            ("22:00-07:00", {"late": "21:00-22:00"}),
            ("00:00-08:00", {"day": "08:00-20:00"}),
        ],
    )
    def test_windows_touching_quiet_hours_are_fine(self, quiet, windows):
        parsed = spec(contact_policy__quiet_hours=quiet, contact_policy__windows=windows)
        assert set(parsed.contact_policy.windows) == set(windows)

    @pytest.mark.parametrize(
        "field, value",
        [
            ("max_touches_per_7d", 0),
            ("quiet_hours", "21:00"),
            ("quiet_hours", "09:00-09:00"),
            ("quiet_hours", 900),
        ],
    )
    def test_bad_policy_field(self, field, value):
        problems = problems_of(spec_text(**{f"contact_policy__{field}": value}))
        assert_paths(problems, {f"contact_policy.{field}"})


class TestExperiment:
    @pytest.mark.parametrize(
        "changes, path",
        [
            ({"experiment__variants": {"A": 0.5, "B": 0.5}}, "experiment"),
            ({"experiment__holdout": 0.2}, "experiment"),
            ({"experiment__holdout": 1.0}, "experiment.holdout"),
            ({"experiment__holdout": -0.1}, "experiment.holdout"),
            ({"experiment__variants": {"A": 0.9, "holdout": 0.0}}, "experiment.variants.holdout"),
            ({"experiment__variants": {"A-1": 0.9}}, "experiment.variants.A-1"),
            ({"experiment__variants": {}}, "experiment.variants"),
            ({"experiment__metric": "conv"}, "experiment.metric"),
        ],
    )
    def test_bad_experiment(self, changes, path):
        assert_paths(problems_of(spec_text(**changes)), {path})

    def test_shares_sum_reason(self):
        (problem,) = problems_of(spec_text(experiment__holdout=0.2))
        assert problem == ("experiment", "variant shares plus holdout sum to 1.1, not 1")

    @pytest.mark.parametrize(
        "variants, holdout",
        [
            ({"A": 0.1, "B": 0.2, "C": 0.7}, 0.0),
            ({"A": 1 / 3, "B": 1 / 3}, 1 / 3),
            ({"treatment_1": 0.8}, 0.2),
        ],
    )
    def test_good_splits(self, variants, holdout):
        parsed = spec(experiment__variants=variants, experiment__holdout=holdout)
        assert parsed.experiment.variants == variants

    @pytest.mark.parametrize("metric", ["application_rate", "response_rate", "approval_rate"])
    def test_metrics(self, metric):
        assert spec(experiment__metric=metric).experiment.metric == metric


class TestAllProblemsAtOnce:
    def test_every_problem_is_listed(self):
        text = spec_text(
            id="Bad ID",
            channels=["phone", "fax"],
            risk__apr_cap=240,
            contact_policy__windows={"evening": "19:00-22:00"},
            experiment__holdout=0.5,
            unknown_key=True,
        )
        assert_paths(
            problems_of(text),
            {
                "id",
                "channels.1",
                "risk.apr_cap",
                "contact_policy.windows.evening",
                "experiment",
                "unknown_key",
            },
        )

    def test_message_counts_and_names_them(self):
        with pytest.raises(SpecError) as caught:
            parse_spec(spec_text(budget_total=0, risk__apr_cap=0), "specs/x.yaml")
        message = str(caught.value)
        assert message.startswith("specs/x.yaml: invalid campaign spec (2 problems)")
        assert "budget_total:" in message
        assert "risk.apr_cap:" in message


class TestDocument:
    @pytest.mark.parametrize(
        "text, line",
        [
            ("id: x\nname: [unclosed\nproduct: y\n", None),
            ("id: x\n  name: bad indent\n", "line 2"),
            ("id: x\nrisk:\n  apr_cap: 1\n\tmin: 2\n", "line 4"),
        ],
    )
    def test_syntax_error_names_a_line(self, text, line):
        (problem,) = problems_of(text)
        assert problem[0].startswith("line ")
        if line is not None:
            assert problem[0] == line

    def test_duplicate_key_is_an_error(self):
        example = EXAMPLE.read_text(encoding="utf-8")
        (problem,) = problems_of(example + "budget_total: 1\n")
        line = len(example.splitlines()) + 1  # the line added after the example
        assert problem == (f"line {line}", "key 'budget_total' is given twice")

    @pytest.mark.parametrize(
        "text, found", [("", "nothing"), ("- a\n- b\n", "list"), ("just text\n", "str")]
    )
    def test_not_a_mapping(self, text, found):
        assert problems_of(text) == [("document", f"expected a mapping of fields, got {found}")]

    def test_missing_file(self, tmp_path):
        with pytest.raises(UserError, match=r"nope\.yaml: no such file"):
            load_spec(tmp_path / "nope.yaml")

    def test_load_error_names_the_file(self, tmp_path):
        path = tmp_path / "bad.yaml"
        path.write_text(spec_text(budget_total=0), encoding="utf-8")
        with pytest.raises(SpecError) as caught:
            load_spec(path)
        assert caught.value.source == str(path)


class TestHostileSpec:
    """The spec gets the bounds of the feeds: refused with exit 2 and the field path."""

    @pytest.mark.parametrize(
        ("text", "path", "fragment"),
        [
            (spec_text().replace("budget_total: 500000", "budget_total: .inf"), "budget_total",
             "finite number"),
            (spec_text().replace("budget_total: 500000", "budget_total: .nan"), "budget_total",
             "finite number"),
            (spec_text(budget_total=1e300), "budget_total", "less than or equal"),
            (spec_text(contact_policy__max_touches_per_7d=99999999999999999999999999),
             "contact_policy.max_touches_per_7d", "less than or equal to 2147483647"),
            (spec_text(daily_capacity={"phone": 2**40}), "daily_capacity.phone",
             "less than or equal"),
            (spec_text(name="Spring\r\nBcc: everyone@example.com"), "name", "one line"),
            (spec_text(product="sme\x00"), "product", "one line"),
            (spec_text(risk__excluded_industries=["ok", "bad\nline"]),
             "risk.excluded_industries.1", "one line"),
            (spec_text(templates={"sms": "/etc/passwd"}), "templates.sms",
             "a template must be a file under the project's templates/ folder"),
            (spec_text(templates={"sms": "templates/../pyproject.toml"}), "templates.sms",
             "templates/ folder"),
            (spec_text(templates={"sms": "../../etc/passwd"}), "templates.sms",
             "templates/ folder"),
        ],
        ids=["inf", "nan", "huge budget", "huge count", "huge capacity", "CR/LF name",
             "NUL product", "line break in a list", "absolute template", "dot-dot template",
             "relative escape"],
    )  # fmt: skip
    def test_failure(self, text: str, path: str, fragment: str):
        problems = problems_of(text)
        assert [p for p, _ in problems] == [path], problems
        assert fragment in problems[0][1], problems

    def test_failure_template_refusal_never_quotes_the_file(self):
        (problem,) = problems_of(spec_text(templates={"sms": "/etc/passwd"}))
        assert "root" not in problem[1] and "/etc/passwd" not in problem[1]

    def test_success_template_in_the_folder(self):
        assert spec(templates={"sms": "templates/sms.j2"}).templates == {"sms": "templates/sms.j2"}

    def test_failure_not_utf8_file(self, tmp_path: Path):
        path = tmp_path / "latin1.yaml"
        text = spec_text(name="Campana").replace("Campana", "Campa\u00f1a")
        path.write_bytes(text.encode("latin-1"))
        with pytest.raises(SpecError) as caught:
            load_spec(path)
        assert caught.value.problems[0][0].startswith("line ")
        assert "not UTF-8 text (byte 0xf1)" in caught.value.problems[0][1]

    def test_failure_directory(self, tmp_path: Path):
        with pytest.raises(UserError, match="is a directory"):
            load_spec(tmp_path)


# --- the database -----------------------------------------------------------------------


def count(conn, model) -> int:
    return conn.execute(select(func.count()).select_from(model)).scalar_one()


def audit_details(conn) -> list[dict]:
    rows = conn.execute(select(AuditEntry).order_by(AuditEntry.audit_id)).all()
    assert all(row.action == "campaign.apply" for row in rows)
    return [row.detail for row in rows]


class TestApply:
    def test_creates(self, engine: Engine):
        with engine.begin() as conn:
            assert apply_spec(conn, spec(), actor="alice") == "created"
        with engine.connect() as conn:
            row = conn.execute(select(Campaign)).one()
            assert row.campaign_id == "sme-spring-2026"
            assert row.product_code == "sme-revolving"
            assert (row.start_date, row.end_date) == (date(2026, 3, 2), date(2026, 5, 31))
            assert row.timezone == "Asia/Shanghai"
            assert row.budget_total == 500000
            assert row.spec_version == 1
            assert row.spec == spec().model_dump(mode="json")
            product = conn.execute(select(Product)).one()
            assert (product.product_code, product.name) == ("sme-revolving", "sme-revolving")
            entry = conn.execute(select(AuditEntry)).one()
            assert (entry.actor, entry.subject) == ("alice", "sme-spring-2026")
            assert entry.detail == {"result": "created", "version": 1}

    def test_reapply_is_unchanged(self, engine: Engine):
        with engine.begin() as conn:
            apply_spec(conn, spec())
        with engine.begin() as conn:
            assert apply_spec(conn, load_spec(EXAMPLE)) == "unchanged"
        with engine.connect() as conn:
            assert conn.execute(select(Campaign.spec_version)).scalar_one() == 1
            assert audit_details(conn) == [{"result": "created", "version": 1}]

    def test_change_updates_and_bumps_version(self, engine: Engine):
        with engine.begin() as conn:
            apply_spec(conn, spec())
            created_at = conn.execute(select(Campaign.created_at)).scalar_one()
        with engine.begin() as conn:
            assert apply_spec(conn, spec(budget_total=600000)) == "updated"
        with engine.begin() as conn:
            assert apply_spec(conn, spec(budget_total=600000)) == "unchanged"
            assert (
                apply_spec(conn, spec(budget_total=600000, risk__apr_cap=20.0, product="sme-term"))
                == "updated"
            )
        with engine.connect() as conn:
            row = conn.execute(select(Campaign)).one()
            assert row.spec_version == 3
            assert row.budget_total == 600000
            assert row.product_code == "sme-term"
            assert row.created_at == created_at
            assert row.updated_at >= created_at
            assert get_campaign_spec(conn, "sme-spring-2026").risk.apr_cap == 20.0
            assert count(conn, Product) == 2
            assert audit_details(conn) == [
                {"result": "created", "version": 1},
                {"result": "updated", "version": 2},
                {"result": "updated", "version": 3},
            ]

    def test_existing_product_name_is_kept(self, engine: Engine):
        with engine.begin() as conn:
            conn.execute(
                Product.__table__.insert().values(product_code="sme-revolving", name="SME")
            )
            apply_spec(conn, spec())
        with engine.connect() as conn:
            assert conn.execute(select(Product.name)).scalar_one() == "SME"

    def test_does_not_commit(self, engine: Engine):
        with engine.connect() as conn:
            apply_spec(conn, spec())
            conn.rollback()
        with engine.connect() as conn:
            assert count(conn, Campaign) == 0

    def test_invalid_spec_fails_before_anything_is_written(self, engine: Engine):
        with pytest.raises(SpecError), engine.begin() as conn:
            apply_spec(conn, parse_spec(spec_text(budget_total=0), "bad.yaml"))
        with engine.connect() as conn:
            assert (count(conn, Campaign), count(conn, Product), count(conn, AuditEntry)) == (
                0,
                0,
                0,
            )


class TestGetCampaignSpec:
    def test_reads_back_what_was_applied(self, engine: Engine):
        applied = spec(growth=1.1)
        with engine.begin() as conn:
            apply_spec(conn, applied)
        with engine.connect() as conn:
            read = get_campaign_spec(conn, "sme-spring-2026")
        assert read == applied
        assert read.contact_policy.windows["noon"] == TimeRange(time(12, 0), time(13, 30))

    def test_unknown_campaign(self, engine: Engine):
        with engine.connect() as conn, pytest.raises(UserError, match="unknown campaign 'nope'"):
            get_campaign_spec(conn, "nope")
