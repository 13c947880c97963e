"""The demo history: contract-shaped feeds, deterministic by seed, honest about its bad rows.

One history of 20,000 customers (three blocks) is generated per module and read back as
text, the way an import would see it; the byte-level and memory tests make their own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pdca.synthetic.demo_history import (
    BAD_ROWS,
    CAMPAIGN_ID,
    FUTURE_WEEKS,
    DemoFiles,
    assign_variant,
    summarise,
    write_demo_feeds,
)
from tasks.common.campaigns import load_spec

ROOT = Path(__file__).resolve().parents[3]
START = date(2026, 3, 2)
WEEKS = 8
END = START + timedelta(days=WEEKS * 7 - 1)

CONTRACT_COLUMNS = {
    "customers": "customer_id, segment, region, credit_score, monthly_income, debt_ratio, "
    "industry, phone, email, marketing_consent, do_not_contact, created_at",
    "touches": "touch_id, campaign_id, customer_id, channel, variant, sent_at, delivered, "
    "responded, cost",
    "applications": "application_id, customer_id, campaign_id, channel, applied_at, "
    "product_code, amount_requested",
    "decisions": "application_id, decided_at, decision, reject_reason, approved_amount, apr",
    "loans": "loan_id, application_id, disbursed_at, amount, apr, term_months",
    "repayments": "loan_id, as_of, dpd, outstanding",
    "complaints": "complaint_id, customer_id, campaign_id, received_at, category",
    "surveys": "survey_id, customer_id, campaign_id, answered_at, score, comment",
}
"""Copied from CONTRACT.md's feed table, key first."""
FEEDS = tuple(CONTRACT_COLUMNS)
CHANNELS = {"phone", "sms", "im", "app_push", "email", "branch", "partner"}
BOOLEANS = {"true", "false", "1", "0"}
KEYS = {"repayments": ["loan_id", "as_of"]}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoFiles:
    out = tmp_path_factory.mktemp("demo")
    return write_demo_feeds(out, customers=20_000, weeks=WEEKS, start=START, block_size=7_000)


@pytest.fixture(scope="module")
def feeds(demo: DemoFiles) -> dict[str, pd.DataFrame]:
    """Every feed as text, exactly as written (empty fields stay empty strings)."""
    return {feed: pd.read_csv(demo.feed(feed), dtype=str, keep_default_na=False) for feed in FEEDS}


@pytest.fixture(scope="module")
def faults(feeds: dict[str, pd.DataFrame]) -> dict[str, pd.Series]:
    """Per feed, which rows an import must quarantine (True = bad)."""
    return _faults(feeds)


@pytest.fixture(scope="module")
def good(feeds: dict[str, pd.DataFrame], faults: dict[str, pd.Series]) -> dict[str, pd.DataFrame]:
    return {feed: frame[~faults[feed]] for feed, frame in feeds.items()}


# --- assertion helpers --------------------------------------------------------------------


def _timestamps(text: pd.Series) -> pd.Series:
    return pd.to_datetime(text, format="%Y-%m-%dT%H:%M:%S%z", errors="coerce")


def _number(text: pd.Series) -> pd.Series:
    return pd.to_numeric(text, errors="coerce")


def _local(text: pd.Series) -> pd.Series:
    """A timestamp column as naive Asia/Shanghai wall-clock time (all offsets are +08:00)."""
    assert text.str.endswith("+08:00").all(), "every timestamp carries the +08:00 offset"
    return pd.to_datetime(text.str[:19], format="%Y-%m-%dT%H:%M:%S")


def _assert_none(mask: pd.Series, frame: pd.DataFrame, what: str) -> None:
    """No row of `frame` is selected by `mask`; the message shows the first offenders."""
    _assert_empty(frame[mask], what)


def _assert_empty(rows: pd.DataFrame, what: str) -> None:
    assert rows.empty, f"{len(rows)} rows {what}, e.g.\n{rows.head().to_string()}"


def _faults(feeds: dict[str, pd.DataFrame]) -> dict[str, pd.Series]:
    """The contract's validation rules, applied feed by feed in the order of loading."""
    c, t, a, d, lo, r, q, s = (feeds[feed] for feed in FEEDS)
    found = {}

    def duplicated(feed: str, frame: pd.DataFrame) -> pd.Series:
        return frame.duplicated(KEYS.get(feed, [frame.columns[0]]), keep="first")

    score = _number(c.credit_score)
    found["customers"] = (
        (c.customer_id == "")
        | (c.segment == "")
        | ~score.between(300, 900)
        | (score != score.round())
        | (_number(c.monthly_income) < 0)
        | (_number(c.debt_ratio) < 0)
        | ~c.marketing_consent.isin(BOOLEANS)
        | ~c.do_not_contact.isin(BOOLEANS)
        | (_timestamps(c.created_at).isna() & (c.created_at != ""))
        | duplicated("customers", c)
    )
    customers = set(c.customer_id[~found["customers"]])
    found["touches"] = (
        (t.campaign_id != CAMPAIGN_ID)
        | ~t.customer_id.isin(customers)
        | ~t.channel.isin(CHANNELS)
        | ~t.variant.isin({"A", "B", "holdout"})
        | _timestamps(t.sent_at).isna()
        | ~t.delivered.isin(BOOLEANS)
        | ~t.responded.isin(BOOLEANS)
        | ~(_number(t.cost) >= 0)
        | duplicated("touches", t)
    )
    found["applications"] = (
        ~a.customer_id.isin(customers)
        | ~a.campaign_id.isin({"", CAMPAIGN_ID})
        | ~a.channel.isin(CHANNELS)
        | _timestamps(a.applied_at).isna()
        | (a.product_code == "")
        | ~(_number(a.amount_requested) > 0)
        | duplicated("applications", a)
    )
    applications = set(a.application_id[~found["applications"]])
    found["decisions"] = (
        ~d.application_id.isin(applications)
        | _timestamps(d.decided_at).isna()
        | ~d.decision.isin({"approved", "rejected"})
        | ((d.decision == "rejected") & (d.reject_reason == ""))
        | (_number(d.apr).isna() & (d.apr != ""))
        | (_number(d.approved_amount).isna() & (d.approved_amount != ""))
        | duplicated("decisions", d)
    )
    term = _number(lo.term_months)
    found["loans"] = (
        ~lo.application_id.isin(applications)
        | _timestamps(lo.disbursed_at).isna()
        | ~(_number(lo.amount) > 0)
        | _number(lo.apr).isna()
        | ~(term > 0)
        | (term != term.round())
        | duplicated("loans", lo)
    )
    loans = set(lo.loan_id[~found["loans"]])
    found["repayments"] = (
        ~r.loan_id.isin(loans)
        | pd.to_datetime(r.as_of, format="%Y-%m-%d", errors="coerce").isna()
        | ~(_number(r.dpd) >= 0)
        | ~(_number(r.outstanding) >= 0)
        | duplicated("repayments", r)
    )
    found["complaints"] = (
        ~q.customer_id.isin(customers)
        | ~q.campaign_id.isin({"", CAMPAIGN_ID})
        | _timestamps(q.received_at).isna()
        | (q.category == "")
        | duplicated("complaints", q)
    )
    answer = _number(s.score)
    found["surveys"] = (
        ~s.customer_id.isin(customers)
        | ~s.campaign_id.isin({"", CAMPAIGN_ID})
        | _timestamps(s.answered_at).isna()
        | ~answer.between(0, 10)
        | (answer != answer.round())
        | duplicated("surveys", s)
    )
    return found


# --- the files ----------------------------------------------------------------------------


class TestFiles:
    @pytest.mark.parametrize("feed", FEEDS)
    def test_header_is_the_contract_columns_in_order(self, demo: DemoFiles, feed: str) -> None:
        header = demo.feed(feed).read_text(encoding="utf-8").split("\n", 1)[0]
        assert header == CONTRACT_COLUMNS[feed].replace(" ", "")

    @pytest.mark.parametrize("feed", FEEDS)
    def test_every_row_has_every_field(self, demo: DemoFiles, feed: str) -> None:
        lines = demo.feed(feed).read_text(encoding="utf-8").splitlines()
        fields = {line.count(",") + 1 for line in lines}
        assert fields == {len(CONTRACT_COLUMNS[feed].split(","))}
        assert len(lines) - 1 == demo.rows[feed], "rows counts data lines, not the header"

    def test_same_seed_same_bytes_other_seed_other_bytes(self, tmp_path: Path) -> None:
        def run(name: str, seed: int) -> DemoFiles:
            return write_demo_feeds(tmp_path / name, customers=3_000, seed=seed, block_size=1_000)

        first, again, other = run("first", 7), run("again", 7), run("other", 8)
        for feed in (*FEEDS, "spec"):
            assert first.feed(feed).read_bytes() == again.feed(feed).read_bytes(), feed
        for feed in FEEDS:
            assert first.feed(feed).read_bytes() != other.feed(feed).read_bytes(), feed

    @pytest.mark.parametrize(("customers", "weeks"), [(1, 1), (60, 1), (300, 3)])
    def test_tiny_histories_are_still_well_formed(
        self, tmp_path: Path, customers: int, weeks: int
    ) -> None:
        files = write_demo_feeds(tmp_path, customers=customers, weeks=weeks)
        feeds = {
            feed: pd.read_csv(files.feed(feed), dtype=str, keep_default_na=False) for feed in FEEDS
        }
        assert {feed: list(frame.columns) for feed, frame in feeds.items()} == {
            feed: CONTRACT_COLUMNS[feed].split(", ") for feed in FEEDS
        }
        assert {feed: len(frame) for feed, frame in feeds.items()} == files.rows
        found = {feed: int(mask.sum()) for feed, mask in _faults(feeds).items()}
        assert found == files.bad_rows

    def test_keys_have_readable_prefixes(self, good: dict[str, pd.DataFrame]) -> None:
        for feed, column, pattern in (
            ("customers", "customer_id", r"c\d{7}"),
            ("touches", "touch_id", r"t\d{9}"),
            ("applications", "application_id", r"a\d{8}"),
            ("loans", "loan_id", r"l\d{8}"),
            ("complaints", "complaint_id", r"q\d{7}"),
        ):
            keys = good[feed][column]
            assert keys.str.fullmatch(pattern).all(), f"{feed}.{column} not like {pattern}"
            assert keys.is_unique, f"{feed}.{column} repeats"

    def test_summary_names_every_feed_and_the_bad_rows(self, demo: DemoFiles) -> None:
        text = summarise(demo)
        for feed in FEEDS:
            assert f"{demo.rows[feed]:,} rows" in text and feed in text
        assert f"{sum(demo.bad_rows.values())} bad rows" in text


class TestSpec:
    def test_spec_validates_and_matches_the_history(
        self, demo: DemoFiles, good: dict[str, pd.DataFrame]
    ) -> None:
        spec = load_spec(demo.spec)
        assert (spec.id, spec.product, spec.timezone) == (
            CAMPAIGN_ID,
            "sme-revolving",
            "Asia/Shanghai",
        )
        future = FUTURE_WEEKS * 7
        assert (spec.start, spec.end) == (START, END + timedelta(days=future))
        assert spec.channels == ["phone", "sms", "im", "app_push", "email"]
        cost = _number(good["touches"].cost).sum()
        weeks = WEEKS + FUTURE_WEEKS
        assert spec.budget_total == pytest.approx(cost * 1.2 * weeks / WEEKS, abs=1.0)
        assert spec.daily_capacity["phone"] >= 20
        assert spec.offer is not None and spec.offer.apr <= spec.risk.apr_cap

    def test_spec_is_the_briefed_policy(self, demo: DemoFiles) -> None:
        document = yaml.safe_load(demo.spec.read_text(encoding="utf-8"))
        assert document["risk"] == {
            "max_overdue_rate_30": 0.03,
            "min_credit_score": 600,
            "apr_cap": 24.0,
            "excluded_industries": ["p2p-lending", "crypto"],
        }
        assert document["contact_policy"] == {
            "max_touches_per_7d": 2,
            "quiet_hours": "21:00-09:00",
            "windows": {"noon": "12:00-13:30", "evening": "19:00-21:00"},
        }
        assert document["experiment"] == {
            "metric": "application_rate",
            "variants": {"A": 0.45, "B": 0.45},
            "holdout": 0.10,
        }
        assert document["recipients"] == ["ops-lead@example.com"]


# --- the bad rows -------------------------------------------------------------------------


class TestBadRows:
    def test_bad_row_counts_match_what_a_validator_finds(
        self, demo: DemoFiles, faults: dict[str, pd.Series]
    ) -> None:
        found = {feed: int(mask.sum()) for feed, mask in faults.items()}
        assert found == demo.bad_rows
        assert demo.bad_rows == {feed: len(reasons) for feed, reasons in BAD_ROWS.items()}

    def test_every_feed_has_a_few_bad_rows(self, demo: DemoFiles) -> None:
        assert all(3 <= count <= 10 for count in demo.bad_rows.values()), demo.bad_rows

    def test_bad_rows_are_mixed_in_not_appended(
        self, feeds: dict[str, pd.DataFrame], faults: dict[str, pd.Series]
    ) -> None:
        for feed, mask in faults.items():
            positions = mask.to_numpy().nonzero()[0]
            assert positions.max() < len(feeds[feed]) - 1 or len(feeds[feed]) < 50, feed

    def test_the_named_faults_are_there(self, feeds: dict[str, pd.DataFrame]) -> None:
        assert (feeds["customers"].credit_score == "1200").sum() == 1
        assert (feeds["touches"].channel == "fax").sum() == 1
        assert (_number(feeds["touches"].cost) < 0).sum() == 1
        assert (feeds["touches"].sent_at == "not-a-date").sum() == 1
        assert feeds["touches"].touch_id.duplicated().sum() == 1
        assert (_number(feeds["loans"].amount) == 0).sum() == 1
        decisions = feeds["decisions"]
        assert ((decisions.decision == "rejected") & (decisions.reject_reason == "")).sum() == 1
        assert feeds["repayments"].duplicated(["loan_id", "as_of"]).sum() == 1
        assert (feeds["complaints"].customer_id == "c0000000").sum() == 1


# --- the campaign's rules -----------------------------------------------------------------


class TestContactRules:
    def test_holdout_members_have_one_unsent_row_and_nothing_else(
        self, good: dict[str, pd.DataFrame]
    ) -> None:
        touches = good["touches"]
        holdout = touches[touches.variant == "holdout"]
        assert not holdout.empty
        assert (holdout.delivered == "false").all() and (holdout.responded == "false").all()
        assert (_number(holdout.cost) == 0).all()
        members = set(holdout.customer_id)
        assert holdout.customer_id.is_unique, "one assignment row per hold-out member"
        others = touches[touches.customer_id.isin(members) & (touches.variant != "holdout")]
        _assert_empty(others, "touch a hold-out member")
        applications = good["applications"]
        theirs = applications[applications.customer_id.isin(members)]
        _assert_none(theirs.campaign_id != "", theirs, "of hold-out members carry the campaign")

    def test_assignment_is_the_stable_hash_with_the_configured_split(
        self, good: dict[str, pd.DataFrame]
    ) -> None:
        arms = good["touches"].groupby("customer_id").variant.agg(["first", "nunique"])
        assert (arms["nunique"] == 1).all(), "a customer stays in one arm"
        expected = [assign_variant(CAMPAIGN_ID, customer) for customer in arms.index]
        assert arms["first"].tolist() == expected
        share = arms["first"].value_counts(normalize=True)
        assert share["A"] == pytest.approx(0.45, abs=0.02)
        assert share["B"] == pytest.approx(0.45, abs=0.02)
        assert share["holdout"] == pytest.approx(0.10, abs=0.015)

    def test_sends_only_in_weekday_windows_inside_the_campaign(
        self, good: dict[str, pd.DataFrame]
    ) -> None:
        touches = good["touches"]
        sent = _local(touches.sent_at)
        minute = sent.dt.hour * 60 + sent.dt.minute
        noon = minute.between(12 * 60, 13 * 60 + 29)
        evening = minute.between(19 * 60, 20 * 60 + 59)
        quiet = (minute >= 21 * 60) | (minute < 9 * 60)
        _assert_none(~(noon | evening), touches, "sent outside the noon and evening windows")
        _assert_none(quiet, touches, "sent in quiet hours")
        _assert_none(sent.dt.day_of_week >= 5, touches, "sent at a weekend")
        in_campaign = sent.dt.date.between(START, END)
        _assert_none(~in_campaign, touches, "sent outside the campaign")

    def test_no_customer_gets_more_than_two_touches_in_seven_days(
        self, good: dict[str, pd.DataFrame]
    ) -> None:
        touches = good["touches"].assign(sent=_local(good["touches"].sent_at))
        touches = touches.sort_values(["customer_id", "sent"])
        third = touches.groupby("customer_id").sent.shift(-2)
        _assert_none(third - touches.sent < pd.Timedelta(days=7), touches, "start a third in 7d")

    def test_tiers_route_channels_and_the_audience_is_admissible(
        self, good: dict[str, pd.DataFrame]
    ) -> None:
        customers = good["customers"].set_index("customer_id")
        touches = good["touches"].join(customers, on="customer_id")
        score = _number(touches.credit_score)
        tier = pd.cut(score, [0, 639, 719, 900], labels=["C", "B", "A"])
        routes = touches.groupby(tier, observed=True).channel.agg(set).to_dict()
        assert routes == {"A": {"phone"}, "B": {"sms", "im"}, "C": {"app_push", "email"}}
        _assert_none(score < 600, touches, "below the score floor")
        _assert_none(touches.marketing_consent != "true", touches, "without consent")
        _assert_none(touches.do_not_contact != "false", touches, "on do-not-contact")
        excluded = touches.industry.isin({"p2p-lending", "crypto"})
        _assert_none(excluded, touches, "in an excluded industry")


class TestRealism:
    def test_volumes_are_in_the_briefed_range(self, demo: DemoFiles) -> None:
        per_customer = demo.rows["touches"] / demo.rows["customers"]
        assert 1.5 <= per_customer <= 2.5
        complaints_per_1000 = demo.rows["complaints"] / demo.rows["touches"] * 1000
        assert 1 <= complaints_per_1000 <= 10

    def test_channels_differ_in_cost_and_conversion(self, good: dict[str, pd.DataFrame]) -> None:
        sent = good["touches"][good["touches"].variant != "holdout"]
        by_channel = sent.assign(cost=_number(sent.cost)).groupby("channel").cost.mean()
        assert by_channel["phone"] == pytest.approx(8.0, abs=0.5)
        assert by_channel[["sms", "im", "app_push", "email"]].tolist() == [0.05, 0.03, 0.01, 0.02]
        delivered = sent[sent.delivered == "true"].groupby("channel").size()
        applications = good["applications"].groupby("channel").size()
        rate = (applications / delivered).dropna()
        assert rate.idxmax() == "phone"

    def test_variant_b_lifts_the_application_rate(self, good: dict[str, pd.DataFrame]) -> None:
        arms = good["touches"].groupby("customer_id").variant.first()
        applied = arms.index.isin(good["applications"].customer_id)
        rate = pd.Series(applied, index=arms.index).groupby(arms).mean()
        assert rate["B"] > rate["A"] > 5 * rate["holdout"]

    def test_applications_follow_a_delivered_touch_within_the_window(
        self, good: dict[str, pd.DataFrame]
    ) -> None:
        applications = good["applications"]
        driven = applications[~applications.channel.isin({"branch", "partner"})]
        assert (driven.campaign_id == "").any(), "some need attribution"
        touches = good["touches"][good["touches"].delivered == "true"]
        pairs = driven.merge(touches, on=["customer_id", "channel"], suffixes=("", "_touch"))
        lag = _local(pairs.applied_at) - _local(pairs.sent_at)
        pairs = pairs[(lag > pd.Timedelta(0)) & (lag < pd.Timedelta(days=14))]
        missing = driven[~driven.application_id.isin(pairs.application_id)]
        _assert_empty(missing, "follow no delivered touch")
        assert (_number(driven.amount_requested) > 0).all()
        assert (applications.product_code == "sme-revolving").all()

    def test_decisions_loans_and_repayments_hang_together(
        self, good: dict[str, pd.DataFrame]
    ) -> None:
        decisions = good["decisions"]
        approved = decisions[decisions.decision == "approved"]
        apr = _number(approved.apr)
        assert apr.between(8.0, 23.9).all() and (_number(approved.approved_amount) > 0).all()
        rejected = decisions[decisions.decision == "rejected"]
        assert (rejected[["approved_amount", "apr"]] == "").all().all()
        assert {"low_score", "high_debt_ratio", "incomplete_documents", "fraud_check"} <= set(
            rejected.reject_reason
        )
        loans = good["loans"]
        assert set(loans.term_months) <= {"6", "12", "24", "36"}
        assert loans.application_id.isin(approved.application_id).all()
        repayments = good["repayments"].merge(loans, on="loan_id")
        as_of = pd.to_datetime(repayments.as_of)
        assert (as_of > _local(repayments.disbursed_at)).all()
        assert (as_of.dt.date <= END).all()
        assert (_number(repayments.outstanding) <= _number(repayments.amount)).all()
        latest = good["repayments"].groupby("loan_id").dpd.last().astype(int)
        assert (latest == 0).mean() > 0.85 and (latest >= 30).any()

    def test_every_event_is_inside_the_history(self, good: dict[str, pd.DataFrame]) -> None:
        for feed, column in (
            ("applications", "applied_at"),
            ("decisions", "decided_at"),
            ("loans", "disbursed_at"),
            ("complaints", "received_at"),
        ):
            when = _local(good[feed][column]).dt.date
            assert when.between(START, END).all(), feed
        assert (_local(good["customers"].created_at).dt.date < START).all()


# --- memory -------------------------------------------------------------------------------


@pytest.mark.slow  # 220,000 customers of history
def test_memory_is_bounded_by_the_block_not_the_population(tmp_path: Path) -> None:
    """200,000 customers in blocks of 20,000 peak no higher than one block does (± slack)."""
    script = textwrap.dedent(
        f"""
        import json, resource, sys
        from pathlib import Path
        from pdca.synthetic.demo_history import write_demo_feeds

        def peak():
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        out = Path({str(tmp_path)!r})
        write_demo_feeds(out / "one", customers=20_000, weeks=4, block_size=20_000)
        one_block = peak()
        files = write_demo_feeds(out / "ten", customers=200_000, weeks=4, block_size=20_000)
        print(json.dumps({{"one_block": one_block, "ten_blocks": peak(),
                          "touches": files.rows["touches"]}}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    measured = json.loads(result.stdout)
    assert measured["touches"] > 200_000, "the big run really made ten blocks of history"
    growth = measured["ten_blocks"] - measured["one_block"]
    assert growth < 40, f"peak RSS grew {growth:.0f} MB from 1 to 10 blocks: {measured}"
