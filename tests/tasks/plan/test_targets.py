"""The units of the plan's targets: each scope from its own history cells, the fallback to
the campaign's below the minimums, and the channels the campaign does not touch through.

Histories are built by hand per channel × segment cell (what `gather_history` sums from the
funnel), so every expected figure is arithmetic on the cells below.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from tasks.common.campaigns import CampaignSpec
from tasks.common.metrics import COUNTS, rollup
from tasks.common.periods import Period
from tasks.plan.plan import History, HistorySource
from tasks.plan.targets import Minimums, fallback_notes, targets_from
from tests.scenario import spec_dict
from tests.tasks.plan.test_plan import allocation

TOLERANCE = (0.05, 0.15)
SOURCE = HistorySource("c", Period.parse("2026-W02"), "the campaign's own trailing weeks")


def cell(channel: str, segment: str, touches: int = 0, **counts: float) -> dict:
    """A history cell: touches all delivered at 0.1 each unless `counts` says otherwise."""
    row = dict.fromkeys(COUNTS, 0.0)
    row.update(channel=channel, segment=segment, touches=touches, delivered=touches)
    row["cost"] = 0.1 * touches
    row.update(counts)
    return row


def loans(count: int, amount: float) -> dict:
    """`count` approved applications, each a loan of `amount` earning 10 % net."""
    return {
        "applications": count,
        "approved": count,
        "disbursements": count,
        "disbursed_amount": count * amount,
        "net_interest": count * amount * 0.1,
    }


def history(
    cells: list[dict] | tuple[dict, ...],
    overdue: list[tuple[str, str, int, int]] = (),
    complaints: list[tuple[str, str, int]] = (),
) -> History:
    """A History from its cells; `overdue`: (channel, segment, seasoned, overdue);
    `complaints`: (channel, segment, complaints), delivered from the cells."""
    frame = pd.DataFrame(cells).assign(week="2026-W02", variant="A")
    overdue_cells = pd.DataFrame(
        overdue or [("sms", "sme", 0, 0)],
        columns=["channel", "segment", "seasoned_loans", "overdue_loans"],
    )
    counted = {(c, s): n for c, s, n in complaints}
    complaint_cells = pd.DataFrame(
        [
            (row["channel"], row["segment"], counted.get((row["channel"], row["segment"]), 0))
            for row in cells
        ],
        columns=["channel", "segment", "complaints"],
    ).assign(delivered=[row["delivered"] for row in cells])
    seasoned = overdue_cells["seasoned_loans"].sum()
    delivered = complaint_cells["delivered"].sum()
    return History(
        [SOURCE],
        rollup(frame, ["channel"]).set_index("channel"),
        rollup(frame, ["segment"]).set_index("segment"),
        rollup(frame, []).iloc[0],
        {},
        overdue_cells["overdue_loans"].sum() / seasoned if seasoned else float("nan"),
        1000 * complaint_cells["complaints"].sum() / delivered if delivered else float("nan"),
        cells=rollup(frame, ["channel", "segment"]),
        overdue_cells=overdue_cells,
        complaint_cells=complaint_cells,
    )


def spec(channels=("sms", "phone"), growth: float = 1.0, cap: float = 0.03) -> CampaignSpec:
    risk = dict(spec_dict()["risk"], max_overdue_rate_30=cap)
    return CampaignSpec.model_validate(
        spec_dict(channels=list(channels), growth=growth, risk=risk, start=str(date(2026, 1, 5)))
    )


def scoped(rows: list[dict]) -> dict[tuple, dict[str, dict]]:
    scopes: dict[tuple, dict[str, dict]] = {}
    for row in rows:
        scopes.setdefault((row["channel"], row["segment"]), {})[row["metric"]] = row
    return scopes


TWO_SEGMENTS = [
    cell("sms", "sme", 600, **loans(60, 50_000)),
    cell("sms", "student", 400, **loans(4, 5_000)),
    cell("phone", "sme", 100, cost=800.0, **loans(20, 50_000)),
    cell("phone", "student", 300, cost=2_400.0, **loans(6, 5_000)),
    cell("branch", "sme", **loans(10, 50_000)),
    cell("partner", "student", **loans(2, 5_000)),
]
"""SME and students on both channels in different mixes; branch and partner applications."""


class TestOwnHistory:
    def test_each_segment_sums_its_own_cells(self):
        rows = targets_from(
            spec(growth=1.5),
            history(TWO_SEGMENTS),
            allocation({"sms": 2_000.0, "phone": 200.0}),
            TOLERANCE,
        )
        scopes = scoped(rows)
        # sms's 2,000 touches go 60:40 to sme and student, phone's 200 go 25:75
        sme, student = scopes[(None, "sme")], scopes[(None, "student")]
        assert sme["touches"]["target"] == pytest.approx(1_200 + 50)
        assert student["touches"]["target"] == pytest.approx(800 + 150)
        sme_loans = 2_000 * 60 / 1_000 + 200 * 20 / 400 + 2_200 * 10 / 1_400
        assert sme["disbursements"]["target"] == pytest.approx(1.5 * sme_loans)
        student_amount = 5_000 * (2_000 * 4 / 1_000 + 200 * 6 / 400 + 2_200 * 2 / 1_400)
        assert student["disbursed_amount"]["target"] == pytest.approx(1.5 * student_amount)
        student_cost = 0.1 * 800 + 8 * 150
        assert student["cac"]["target"] == pytest.approx(
            student_cost / student["disbursements"]["target"]
        )
        assert {sme["cac"]["evidence"]["basis"], student["roi"]["evidence"]["basis"]} == {"own"}

    def test_segments_and_channels_add_up_to_the_campaign(self):
        rows = targets_from(
            spec(), history(TWO_SEGMENTS), allocation({"sms": 700.0, "phone": 90.0}), TOLERANCE
        )
        scopes = scoped(rows)
        campaign = scopes[(None, None)]
        for metric in ("touches", "applications", "disbursements", "disbursed_amount"):
            segments = sum(scopes[(None, s)][metric]["target"] for s in ("sme", "student"))
            assert segments == pytest.approx(campaign[metric]["target"]), metric
        channels = sum(scopes[(c, None)]["applications"]["target"] for c in ("sms", "phone"))
        other = 790 * 12 / 1_400
        assert campaign["applications"]["target"] == pytest.approx(channels + other)
        assert campaign["applications"]["evidence"]["other_channels"] == ["branch", "partner"]

    def test_a_channel_dropped_from_the_spec_is_not_an_other_channel(self):
        cells = [*TWO_SEGMENTS, cell("email", "sme", 400, **loans(40, 50_000))]
        rows = targets_from(
            spec(), history(cells), allocation({"sms": 700.0, "phone": 90.0}), TOLERANCE
        )
        campaign = scoped(rows)[(None, None)]
        assert campaign["applications"]["evidence"]["other_channels"] == ["branch", "partner"]
        assert ("email", None) not in scoped(rows)

    def test_approval_rate_follows_the_planned_mix(self):
        cells = [
            cell("sms", "sme", 1_000, applications=100, approved=80),
            cell("phone", "sme", 1_000, applications=100, approved=20),
        ]
        rows = targets_from(
            spec(), history(cells), allocation({"sms": 300.0, "phone": 100.0}), TOLERANCE
        )
        scopes = scoped(rows)
        assert scopes[("sms", None)]["approval_rate"]["target"] == pytest.approx(0.8)
        assert scopes[(None, None)]["approval_rate"]["target"] == pytest.approx(0.65)


class TestFallback:
    @pytest.mark.parametrize(("touches", "own"), [(200, True), (199, False)])
    def test_a_segment_below_the_minimum_takes_the_campaigns_rates(self, touches, own):
        cells = [
            cell("sms", "sme", 1_000, **loans(100, 50_000)),
            cell("sms", "retiree", touches, **loans(1, 900_000)),
        ]
        rows = targets_from(spec(), history(cells), allocation({"sms": 600.0}), TOLERANCE)
        scopes = scoped(rows)
        retiree, campaign = scopes[(None, "retiree")], scopes[(None, None)]
        per_touch = retiree["disbursed_amount"]["target"] / retiree["touches"]["target"]
        if own:
            assert per_touch == pytest.approx(900_000 / touches)
            assert retiree["disbursed_amount"]["evidence"]["basis"] == "own"
        else:
            campaign_per_touch = campaign["disbursed_amount"]["target"] / 600
            assert per_touch == pytest.approx(campaign_per_touch)
            evidence = retiree["disbursed_amount"]["evidence"]
            assert evidence["basis"] == "campaign"
            assert evidence["fallback"] == (
                "199 touches in the history window, fewer than plan_min_history_touches (200)"
            )
            assert evidence["history"]["disbursed_amount"] == 900_000

    def test_the_minimum_is_a_setting(self):
        cells = [cell("sms", "sme", 1_000, **loans(100, 50_000))]
        rows = targets_from(
            spec(), history(cells), allocation({"sms": 10.0}), TOLERANCE, Minimums(touches=5_000)
        )
        sme = scoped(rows)[(None, "sme")]
        assert sme["touches"]["evidence"]["fallback"].endswith("plan_min_history_touches (5000)")

    def test_a_channel_without_history_takes_the_pooled_rates_and_says_so(self):
        rows = targets_from(
            spec(channels=("sms", "phone", "im")),
            history(TWO_SEGMENTS),
            allocation({"sms": 700.0, "phone": 90.0, "im": 100.0}),
            TOLERANCE,
        )
        scopes = scoped(rows)
        im = scopes[("im", None)]
        touched_loans = 60 + 4 + 20 + 6
        assert im["disbursements"]["target"] == pytest.approx(100 * touched_loans / 1_400)
        assert im["disbursements"]["evidence"]["basis"] == "campaign"
        assert im["disbursements"]["evidence"]["fallback"].startswith("0 touches")
        campaign = scopes[(None, None)]
        channels = sum(scopes[(c, None)]["disbursements"]["target"] for c in ("sms", "phone", "im"))
        assert campaign["disbursements"]["target"] == pytest.approx(channels + 890 * 12 / 1_400)
        segments = sum(scopes[(None, s)]["disbursements"]["target"] for s in ("sme", "student"))
        assert segments == pytest.approx(campaign["disbursements"]["target"])

    def test_fallback_notes_name_the_scope_metrics_and_reason(self):
        cells = [
            cell("sms", "sme", 1_000, **loans(100, 50_000)),
            cell("sms", "retiree", 10, **loans(1, 900_000)),
        ]
        rows = targets_from(spec(("sms",)), history(cells), allocation({"sms": 60.0}), TOLERANCE)
        notes = fallback_notes(rows)
        assert (
            "segment retiree: touches, delivered, applications, disbursements, "
            "disbursed_amount, approval_rate, cac, roi from the campaign's history (10 touches "
            "in the history window, fewer than plan_min_history_touches (200))"
        ) in notes
        assert (
            "segment retiree: complaint_rate from the campaign's history (10 delivered "
            "touches in the history window, fewer than plan_min_history_delivered (2000))"
        ) in notes
        assert not [n for n in notes if n.startswith("segment sme: touches")], notes

    def test_a_zero_minimum_still_needs_some_history(self):
        rows = targets_from(
            spec(channels=("sms", "im")),
            history([cell("sms", "sme", 1_000, **loans(100, 50_000))]),
            allocation({"sms": 100.0, "im": 10.0}),
            TOLERANCE,
            Minimums(touches=0, loans=0, delivered=0),
        )
        im = scoped(rows)[("im", None)]
        assert im["disbursements"]["target"] == pytest.approx(1.0)
        assert im["disbursements"]["evidence"]["basis"] == "campaign"
        assert all(np.isfinite(row["target"]) for row in rows)


class TestAssetQuality:
    CELLS = (
        cell("sms", "sme", 1_000, **loans(100, 50_000)),
        cell("phone", "student", 1_000, **loans(10, 5_000)),
    )

    def test_own_overdue_with_enough_seasoned_loans_capped_at_the_spec(self):
        overdue = [("sms", "sme", 40, 4), ("phone", "student", 50, 1)]
        rows = targets_from(
            spec(cap=0.05),
            history(self.CELLS, overdue=overdue),
            allocation({"sms": 100.0, "phone": 100.0}),
            TOLERANCE,
        )
        scopes = scoped(rows)
        sme = scopes[(None, "sme")]["overdue_rate_30"]
        assert sme["target"] == pytest.approx(0.05) and sme["evidence"]["history_value"] == 0.1
        assert sme["evidence"]["basis"] == "own" and sme["evidence"]["cap"] == 0.05
        assert scopes[("phone", None)]["overdue_rate_30"]["target"] == pytest.approx(0.02)
        campaign = scopes[(None, None)]["overdue_rate_30"]
        assert campaign["target"] == 0.05 and campaign["evidence"]["history_value"] == 5 / 90

    def test_too_few_seasoned_loans_take_the_campaigns_overdue(self):
        overdue = [("sms", "sme", 200, 4), ("phone", "student", 29, 0)]
        rows = targets_from(
            spec(),
            history(self.CELLS, overdue=overdue),
            allocation({"sms": 100.0, "phone": 100.0}),
            TOLERANCE,
        )
        student = scoped(rows)[(None, "student")]["overdue_rate_30"]
        assert student["target"] == pytest.approx(4 / 229)
        assert student["evidence"]["history_value"] == 0
        assert student["evidence"]["fallback"] == (
            "29 seasoned loans in the history window, fewer than plan_min_history_loans (30)"
        )

    def test_complaint_rate_per_channel_and_segment(self):
        rows = targets_from(
            spec(),
            history(self.CELLS, complaints=[("sms", "sme", 7), ("phone", "student", 1)]),
            allocation({"sms": 100.0, "phone": 100.0}),
            TOLERANCE,
            Minimums(delivered=1_000),
        )
        scopes = scoped(rows)
        assert scopes[("sms", None)]["complaint_rate"]["target"] == pytest.approx(7.0)
        assert scopes[(None, "student")]["complaint_rate"]["target"] == pytest.approx(1.0)
        assert scopes[(None, None)]["complaint_rate"]["target"] == pytest.approx(4.0)
        assert scopes[("sms", None)]["complaint_rate"]["lower_is_better"]

    @pytest.mark.parametrize(("minimum", "own"), [(1_000, True), (1_001, False)])
    def test_complaint_rate_needs_the_delivered_minimum(self, minimum, own):
        rows = targets_from(
            spec(),
            history(self.CELLS, complaints=[("sms", "sme", 7), ("phone", "student", 1)]),
            allocation({"sms": 100.0, "phone": 100.0}),
            TOLERANCE,
            Minimums(delivered=minimum),
        )
        sms = scoped(rows)[("sms", None)]["complaint_rate"]
        assert sms["target"] == pytest.approx(7.0 if own else 4.0)
        assert sms["evidence"]["basis"] == ("own" if own else "campaign")
        if not own:
            assert sms["evidence"]["fallback"] == (
                "1,000 delivered touches in the history window, fewer than "
                "plan_min_history_delivered (1001)"
            )

    def test_no_delivered_history_no_complaint_target(self):
        cells = [cell("sms", "sme", 1_000, delivered=0, **loans(100, 50_000))]
        rows = targets_from(spec(("sms",)), history(cells), allocation({"sms": 10.0}), TOLERANCE)
        assert not [r for r in rows if r["metric"] == "complaint_rate"]


class TestArtifact:
    def test_the_targets_table_says_each_targets_basis(self):
        from tasks.plan.artifacts import target_table
        from tasks.plan.result import Target

        rows = targets_from(
            spec(channels=("sms", "im")),
            history([cell("sms", "sme", 1_000, **loans(100, 50_000))]),
            allocation({"sms": 100.0, "im": 10.0}),
            TOLERANCE,
        )
        targets = [Target(**row) for row in rows]
        table = {(r["metric"], r["channel"]): r["basis"] for r in target_table(targets)}
        assert table[("touches", "sms")] == "own"
        assert table[("touches", "im")] == (
            "campaign: 0 touches in the history window, fewer than plan_min_history_touches (200)"
        )
        assert ("touches", "(all)") in table
