"""The simulated world: its file is validated like a campaign spec, its truths hold where
they say and nowhere else, and it is the same world for the same seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pdca.errors import UserError
from pdca.simulation.truths import WorldError, default_world, load_world
from pdca.simulation.world import Sends, World

GOOD = """\
name: rehearsal
truths:
  - name: B lifts applications by 20 %
    scope: {variant: B}
    application: 1.2
    found_by: [promote_variant]
  - name: im's overdue rate climbs to 9 % from week 5
    scope: {channel: im}
    from_week: 5
    overdue_rate_30: 0.09
    found_by: [tighten_admission]
  - name: evening responds half as well as noon
    scope: {window: evening}
    response: 0.5
  - name: app push never pays
    scope: {channel: app_push}
    application: 0
approval:
  decided_by: cautious-manager
  reject:
    - {type: reallocate_budget, max_share: 0.2}
"""


@pytest.fixture(scope="module")
def world() -> World:
    return World.build(3_000, seed=11)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "world.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_world_file_states_truths_and_an_approval_policy(tmp_path: Path) -> None:
    world_file = load_world(_write(tmp_path, GOOD))
    assert [truth.name for truth in world_file.truths][:2] == [
        "B lifts applications by 20 %",
        "im's overdue rate climbs to 9 % from week 5",
    ]
    assert world_file.truths[1].from_week == 5
    assert world_file.truths[3].application == 0
    assert world_file.approval.decided_by == "cautious-manager"
    assert world_file.approval.reject[0].max_share == 0.2


def test_a_bad_world_file_is_refused_with_every_problem_by_field(tmp_path: Path) -> None:
    text = """\
truths:
  - name: fax works
    scope: {channel: fax}
    response: 2
  - name: says nothing
    scope: {variant: B}
  - name: backwards
    from_week: 6
    until_week: 3
    application: 1.1
  - name: unknown field
    application: 1.1
    lift: 3
    found_by: [guess]
approval: {reject: [{type: reallocate_budget, max_share: 1.5}]}
"""
    with pytest.raises(WorldError) as raised:
        load_world(_write(tmp_path, text))
    problems = dict(raised.value.problems)
    message = str(raised.value)
    assert message.startswith(f"{tmp_path / 'world.yaml'}: invalid world file (")
    assert "truths.0.scope.channel" in problems
    assert "fax" in problems["truths.0.scope.channel"]
    assert "states no effect" in problems["truths.1"]
    assert "until_week 3 is before from_week 6" in problems["truths.2"]
    assert "truths.3.found_by.0" in problems
    assert "truths.3.lift" in problems
    assert "approval.reject.0.max_share" in problems


@pytest.mark.parametrize(
    ("text", "where", "reason"),
    [
        ("truths: [\n", "line 2", "expected"),
        ("- just a list\n", "document", "expected a mapping of fields, got list"),
        ("name: a\nname: b\n", "line 2", "given twice"),
        (
            "truths:\n  - {name: x, application: 1.1}\n  - {name: x, response: 1.1}\n",
            "document",
            "truth names given more than once: x",
        ),
    ],
)
def test_a_world_file_that_is_no_world_is_refused(
    tmp_path: Path, text: str, where: str, reason: str
) -> None:
    with pytest.raises(WorldError) as raised:
        load_world(_write(tmp_path, text))
    [(path, why)] = raised.value.problems
    assert path == where
    assert reason in why


def test_a_missing_world_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file"):
        load_world(tmp_path / "nowhere.yaml")


def test_the_default_world_holds_a_few_clear_truths() -> None:
    truths = default_world().truths
    assert len(truths) >= 3
    assert all(truth.found_by for truth in truths)


def test_the_same_seed_is_the_same_world() -> None:
    first, again, other = World.build(500, seed=4), World.build(500, seed=4), World.build(500, 5)
    for name in ("id", "segment", "score", "debt_ratio", "consent", "dnc", "tier", "variant"):
        assert np.array_equal(first.people[name], again.people[name])
    assert not np.array_equal(first.people["score"], other.people["score"])
    assert first.customers_feed().equals(again.customers_feed())


def test_the_customers_are_the_demo_population(world: World) -> None:
    people, feed = world.people, world.customers_feed()
    assert len(feed) == world.size == 3_000
    assert set(feed["segment"]) == {"sme", "salaried", "farmer", "student"}
    assert 0.85 < people["consent"].mean() < 0.95
    assert 0 < people["dnc"].sum() < 0.05 * world.size
    assert set(np.unique(people["tier"])) <= {0, 1, 2, 3}
    assert people["debt_ratio"].min() >= 0
    assert list(world.index(["c0000001", "c0003000"])) == [0, 2_999]


def _sends(world: World, n: int, **fixed) -> Sends:
    """`n` sends to the first customers, every attribute fixed or defaulted."""
    columns = {"channel": "sms", "variant": "A", "window": "noon", "week": 1} | fixed
    return Sends.of(
        np.arange(n) % world.size,
        [columns["channel"]] * n,
        [columns["variant"]] * n,
        [columns["window"]] * n,
        [columns["week"]] * n,
    )


def test_variant_b_lifts_applications_by_what_the_truth_says(world: World) -> None:
    responded = np.ones(100, dtype=bool)
    a = world.application_chance(_sends(world, 100, variant="A"), responded)
    b = world.application_chance(_sends(world, 100, variant="B"), responded)
    assert np.allclose(b, a * 1.2)
    assert (world.response_chance(_sends(world, 100, variant="B")) > 0).all()


def test_app_push_never_pays_and_evening_responds_half_as_well(world: World) -> None:
    push = _sends(world, 100, channel="app_push")
    assert (world.application_chance(push, np.ones(100, dtype=bool)) == 0).all()
    assert (world.delivery_chance(push) > 0.5).all()  # it is delivered, it just never pays
    noon = world.response_chance(_sends(world, 100, window="noon"))
    evening = world.response_chance(_sends(world, 100, window="evening"))
    assert np.allclose(evening, noon * 0.5)


def test_ims_overdue_rate_climbs_from_week_five_only(world: World) -> None:
    before = world.overdue_chance(_sends(world, 100, channel="im", week=4))
    after = world.overdue_chance(_sends(world, 100, channel="im", week=5))
    sms = world.overdue_chance(_sends(world, 100, channel="sms", week=5))
    assert (after == 0.09).all()
    assert np.array_equal(before, sms)
    assert len(np.unique(before)) > 10  # the credit model: weaker borrowers drift more


def test_a_truth_ends_with_its_until_week(tmp_path: Path) -> None:
    text = "truths:\n  - {name: sale, scope: {segment: sme}, until_week: 2, application: 2}\n"
    world = World.build(400, seed=1, truths=load_world(_write(tmp_path, text)))
    sme = np.flatnonzero(world.segment(np.arange(world.size)) == "sme")[:50]
    responded = np.ones(50, dtype=bool)

    def chance(week: int) -> np.ndarray:
        sends = Sends.of(sme, ["sms"] * 50, ["A"] * 50, ["noon"] * 50, [week] * 50)
        return world.application_chance(sends, responded)

    assert np.allclose(chance(2), chance(3) * 2)


def test_complaints_grow_with_contact_pressure(world: World) -> None:
    sends = _sends(world, 3)
    chance = world.complaint_chance(sends, np.array([1, 2, 3]))
    assert chance[0] < chance[1] < chance[2]
    assert np.isclose(chance[2], chance[0] * 1.8)


def test_approval_follows_the_credit_model(world: World) -> None:
    sends = _sends(world, world.size)
    chance = world.approval_chance(sends)
    score = world.people["score"]
    assert chance[score >= 760].mean() > chance[score < 640].mean() + 0.3


def test_the_back_office_draws_the_same_answers_for_the_same_sends() -> None:
    import pandas as pd

    from pdca.simulation.backoffice import BackOffice

    world = World.build(2_000, seed=9)
    ids = world.people["id"][:600]
    sends = pd.DataFrame(
        {
            "touch_id": [f"d{i:06d}" for i in range(600)],
            "customer_id": ids,
            "channel": np.array(["sms", "im", "phone", "app_push"])[np.arange(600) % 4],
            "variant": np.array(["A", "B", "holdout"])[np.arange(600) % 3],
            "sent_at": pd.Timestamp("2026-03-02 04:05"),
            "cost": 0.05,
            "window": "noon",
            "t": 12 * 3600 + 300,
        }
    )
    offices = [BackOffice(World.build(2_000, seed=9), "s", "p") for _ in range(2)]
    offices[0].observe(sends, 0)
    offices[1].observe(sends.iloc[::-1], 0)  # another order of the same sends
    offices[1].observe(sends, 0)  # a second reading adds nothing
    for office in offices:
        office.organic(0)
    for table in ("touches", "applications", "decisions", "loans", "complaints", "surveys"):
        first, second = offices[0].table(table), offices[1].table(table)
        pd.testing.assert_frame_equal(
            first.reset_index(drop=True), second.reset_index(drop=True), check_like=True
        )
    touches = offices[0].table("touches")
    assert len(touches) == 400  # the hold-out's rows are assignments, not sends
    assert world.size == 2_000


def test_a_feeds_first_large_daily_file_carries_the_demos_bad_rows(tmp_path: Path) -> None:
    import pandas as pd

    from pdca.simulation.backoffice import BackOffice
    from pdca.simulation.feeds import SPOIL_MIN_ROWS, DailyFiles
    from pdca.synthetic.bad_rows import BAD_ROWS

    world = World.build(3_000, seed=4)
    n = SPOIL_MIN_ROWS + 200
    sends = pd.DataFrame(
        {
            "touch_id": [f"d{i:06d}" for i in range(n)],
            "customer_id": world.people["id"][np.arange(n) % world.size],
            "channel": "sms",
            "variant": "A",
            "sent_at": pd.Timestamp("2026-03-02 04:05"),
            "cost": 0.05,
            "window": "noon",
            "t": 12 * 3600 + 300,
        }
    )
    office = BackOffice(world, "season", "sme-revolving")
    office.observe(sends, 0)
    files = DailyFiles(office, tmp_path)
    written = files.write_day(0)
    touches = pd.read_csv(written["touches"], dtype=str, keep_default_na=False)
    assert files.bad_rows["touches"] == len(BAD_ROWS["touches"])
    assert len(touches) == n + files.bad_rows["touches"]
    assert set(sends["touch_id"]) <= set(touches["touch_id"])
    assert "touches" not in files.write_day(1)  # every report was handed over on day 0
    assert files.bad_rows["touches"] == len(BAD_ROWS["touches"])  # once per feed


def test_the_same_seed_writes_the_same_daily_files_byte_for_byte(tmp_path: Path) -> None:
    """The season's determinism where it is cheap to see: the same world and the same
    sends give the same back-office files, day after day (a whole season twice would cost
    minutes; the flows on the other side are pdca's own, deterministic given their input)."""
    import pandas as pd

    from pdca.simulation.backoffice import BackOffice
    from pdca.simulation.feeds import SPOIL_MIN_ROWS, DailyFiles

    n = SPOIL_MIN_ROWS + 300
    written = []
    for run in ("first", "second"):
        world = World.build(3_000, seed=11)
        office = BackOffice(world, "season", "sme-revolving")
        files = DailyFiles(office, tmp_path / run)
        days = []
        for day in range(10):
            sends = pd.DataFrame(
                {
                    "touch_id": [f"d{day:02d}{i:05d}" for i in range(n)],
                    "customer_id": world.people["id"][(np.arange(n) * 7 + day * 31) % world.size],
                    "channel": np.array(["sms", "im", "phone", "app_push"])[np.arange(n) % 4],
                    "variant": np.array(["A", "B", "holdout"])[np.arange(n) % 3],
                    "sent_at": pd.Timestamp("2026-03-02 04:05") + pd.Timedelta(days=day),
                    "cost": 0.05,
                    "window": "noon",
                    "t": day * 86_400 + 12 * 3600 + 300,
                }
            )
            office.observe(sends, day)
            office.organic(day)
            days.append({feed: path.read_bytes() for feed, path in files.write_day(day).items()})
        written.append(days)
    assert written[0] == written[1]
    assert {"touches", "applications", "decisions", "loans", "repayments"} <= {
        feed for day in written[0] for feed in day
    }
