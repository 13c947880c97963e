"""The SOP: the rules in force as Markdown, one version per applied action, readable diffs."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import Engine

from pdca.errors import UserError
from tasks.act.sop import (
    action_label,
    render_sop,
    sop_diff,
    sop_path,
    sop_version,
    sop_versions,
    update_sop,
    write_sop_files,
)
from tasks.common.campaigns import CampaignSpec
from tests.scenario import CAMPAIGN_ID, apply, spec_dict

SPEC = CampaignSpec.model_validate(spec_dict())
DAY = date(2026, 4, 6)
FLOOR = {
    "action_id": 7,
    "period": "2026-03",
    "type": "tighten_admission",
    "scope": {"segment": "farmer"},
    "params": {"min_credit_score": 640},
    "rationale": "overdue_rate_30 of segment farmer is 6.0 % against the ceiling 3.0 %",
}
SHIFT = {
    "action_id": 9,
    "period": "2026-03",
    "type": "shift_window",
    "scope": {"window": "evening"},
    "params": {"window": "evening", "from": "19:00-21:00", "to": "18:30-20:30"},
    "rationale": "evening responds worse than noon",
}
HOLD = {
    "action_id": 11,
    "period": "2026-04",
    "type": "hold",
    "scope": {},
    "params": {},
    "rationale": "data untrusted",
}


def body(*approved: dict) -> str:
    return render_sop(SPEC, list(approved), 1, DAY, [])


class TestRender:
    def test_the_spec_alone(self):
        text = body()
        assert text.startswith("# Standard operating procedure: SME spring test\n")
        assert "Credit score at least **600**." in text
        assert "Send window `evening`: **19:00-21:00**, weekdays." in text
        assert "Variant A: 45% of the audience." in text
        assert "hold-out 10%" in text

    def test_a_segment_floor(self):
        assert "- Segment `farmer`: credit score at least **640**." in body(FLOOR)

    def test_a_campaign_floor_says_where_it_came_from(self):
        raised = {**FLOOR, "scope": {}}
        assert "Credit score at least **640** (raised from 600 in the spec)." in body(raised)

    def test_a_shifted_window(self):
        assert "Send window `evening`: **18:30-20:30** (moved from 19:00-21:00), weekdays." in body(
            SHIFT
        )

    def test_a_promotion_and_a_retirement(self):
        promoted = {**HOLD, "type": "promote_variant", "params": {"winner": "B", "loser": "A"}}
        retired = {**HOLD, "type": "retire_channel", "params": {"channel": "im"}}
        text = body(promoted, retired)
        assert "Variant B: 90% of the audience." in text
        assert "Variant A retired: B won" in text
        assert "Retired (no budget, no sends): im." in text
        assert "Channels in use: phone, sms, app_push." in text

    def test_changelog_cells_cannot_break_the_table(self):
        log = [{"version": 1, "date": "2026-04-06", "action": "initial", "reason": "a | b\nc"}]
        text = render_sop(SPEC, [], 1, DAY, log)
        assert "| 1 | 2026-04-06 | initial | a / b c |" in text


@pytest.fixture
def campaign(engine: Engine) -> Engine:
    with engine.begin() as conn:
        apply(conn, spec_dict())
    return engine


class TestVersions:
    def test_an_approval_that_changes_nothing_makes_no_version(self, campaign):
        """The same floor approved again from another period, and a lower one: the rules
        stay as they were, so no version (a different floor still makes one)."""
        again = {**FLOOR, "action_id": 12, "period": "2026-04"}
        lower = {**FLOOR, "action_id": 13, "params": {"min_credit_score": 620}}
        higher = {**FLOOR, "action_id": 14, "params": {"min_credit_score": 660}}
        with campaign.begin() as conn:
            update_sop(conn, SPEC, [FLOOR], [FLOOR], today=DAY)
            nothing = update_sop(conn, SPEC, [FLOOR, again, lower], [again, lower], today=DAY)
            raised = update_sop(conn, SPEC, [FLOOR, again, lower, higher], [higher], today=DAY)
        assert nothing == []
        assert [r.version for r in raised] == [3]

    def test_first_version_then_one_per_applied_action(self, campaign):
        with campaign.begin() as conn:
            first = update_sop(conn, SPEC, [], [], today=DAY)
            later = update_sop(conn, SPEC, [FLOOR, SHIFT], [FLOOR, SHIFT], today=DAY)
            stored = sop_versions(conn, CAMPAIGN_ID)
        assert [r.version for r in first] == [1]
        assert [r.version for r in later] == [2, 3]
        assert [r.version for r in stored] == [1, 2, 3]
        assert stored[2].changes() == [
            {
                "version": 3,
                "date": "2026-04-06",
                "action": "shift_window (window=evening): window=evening, from=19:00-21:00, "
                "to=18:30-20:30, action 9",
                "reason": "evening responds worse than noon",
            }
        ]
        assert [entry["version"] for entry in stored[2].changelog] == [1, 2, 3]
        assert "Segment `farmer`" not in stored[0].body
        assert "Segment `farmer`" in stored[1].body and "18:30-20:30" not in stored[1].body
        assert "18:30-20:30" in stored[2].body

    def test_earlier_approvals_are_in_version_one(self, campaign):
        with campaign.begin() as conn:
            (first, second) = update_sop(conn, SPEC, [FLOOR, SHIFT], [SHIFT], today=DAY)
        assert "Segment `farmer`" in first.body
        assert first.changelog[0]["reason"].endswith("with 1 approved adjustment(s)")
        assert second.version == 2

    def test_hold_makes_no_version(self, campaign):
        with campaign.begin() as conn:
            created = update_sop(conn, SPEC, [HOLD], [HOLD], today=DAY)
        assert [r.version for r in created] == [1]

    def test_the_diff_shows_only_the_change(self, campaign):
        with campaign.begin() as conn:
            update_sop(conn, SPEC, [SHIFT], [SHIFT], today=DAY)
            diff = sop_diff(sop_version(conn, CAMPAIGN_ID, 1), sop_version(conn, CAMPAIGN_ID))
        removed = [line for line in diff.splitlines() if line.startswith("-")][1:]
        added = [line for line in diff.splitlines() if line.startswith("+")][1:]
        assert diff.startswith(f"--- {CAMPAIGN_ID} SOP v1\n+++ {CAMPAIGN_ID} SOP v2\n")
        assert removed == [
            "-(Asia/Shanghai) · **version 1**, 2026-04-06",
            "-- Send window `evening`: **19:00-21:00**, weekdays.",
        ]
        assert added[:2] == [
            "+(Asia/Shanghai) · **version 2**, 2026-04-06",
            "+- Send window `evening`: **18:30-20:30** (moved from 19:00-21:00), weekdays.",
        ]
        assert added[2].startswith("+| 2 | 2026-04-06 | shift_window")

    def test_old_versions_can_be_read(self, campaign):
        with campaign.begin() as conn:
            update_sop(conn, SPEC, [SHIFT], [SHIFT], today=DAY)
            assert sop_version(conn, CAMPAIGN_ID, 1).version == 1
            with pytest.raises(UserError, match="no SOP version 5 \\(versions 1 to 2\\)"):
                sop_version(conn, CAMPAIGN_ID, 5)

    def test_no_sop_yet(self, campaign):
        with campaign.connect() as conn, pytest.raises(UserError, match="no SOP yet"):
            sop_version(conn, CAMPAIGN_ID)

    def test_files_per_version(self, campaign, tmp_path):
        with campaign.begin() as conn:
            update_sop(conn, SPEC, [SHIFT], [SHIFT], today=DAY)
            paths = write_sop_files(tmp_path, sop_versions(conn, CAMPAIGN_ID))
        assert paths == [sop_path(tmp_path, CAMPAIGN_ID, 1), sop_path(tmp_path, CAMPAIGN_ID, 2)]
        assert "**version 2**" in paths[1].read_text()


def test_action_label_names_type_scope_params_and_id():
    assert action_label(FLOOR) == (
        "tighten_admission (segment=farmer): min_credit_score=640, action 7"
    )
    reallocation = {
        "action_id": 3,
        "type": "reallocate_budget",
        "scope": {"channel": "sms"},
        "params": {"from_channel": "sms", "to_channel": "phone", "share": 0.1, "from_budget": 3e3},
    }
    assert action_label(reallocation) == (
        "reallocate_budget (channel=sms): from_channel=sms, to_channel=phone, share=0.1, action 3"
    )
