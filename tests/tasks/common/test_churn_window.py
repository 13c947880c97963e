"""churn_rate's window, on a hand-made world where borrowers pay off and apply again.

The contract: churn_rate = borrowers of the campaign whose loans all reached outstanding 0
in the period and who applied for nothing within the attribution window after /
borrowers with a loan reaching 0 in the period. The demo's customers never apply again
after paying off, so the recount cannot tell a 13-day window from a 15-day one, or a
window that ends a day late; here four borrowers of the spring-test campaign close a loan
on Wednesday 2026-03-25 (2026-W13):

- `back-13`: applies again 13 days later (2026-04-07 12:00 UTC): inside a 14-day window
  [closed_on, closed_on + 14), outside a 13-day one;
- `back-14`: applies again 14 days later: outside a 14-day window, inside a 15-day one;
- `gone`: never applies again;
- `still-owes`: another loan of the campaign is still open: not churned, whatever the
  window.

The same world is recounted by the test oracle (pandas, 14-day window) too.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pandas as pd
import pytest
from sqlalchemy import Engine, insert

from pdca.models import Application, Customer, Decision, Loan, Repayment
from tasks.common.periods import Period
from tasks.common.value_metrics import family_counts
from tests.oracles.kpi_families import Feeds, Recount, week_window
from tests.scenario import CAMPAIGN_ID, TIMEZONE, apply, customer, spec_dict, touch

WEEK = Period.parse("2026-W13")
CLOSED_ON = date(2026, 3, 25)
BORROWERS = ("back-13", "back-14", "gone", "still-owes")
AGAIN = {"back-13": 13, "back-14": 14}
"""Days after closing each returning borrower applies again (at 12:00 UTC)."""


def rows() -> dict[str, list[dict]]:
    """The world's rows by feed: one paid-off loan each, a second open one for
    `still-owes`, and the applications after payoff (no campaign: any counts)."""
    applications, decisions, loans, repayments = [], [], [], []

    def lend(name: str, loan_id: str, disbursed: datetime, closes: bool) -> None:
        application_id = f"a-{loan_id}"
        applications.append(
            {
                "application_id": application_id,
                "customer_id": name,
                "campaign_id": CAMPAIGN_ID,
                "channel": "sms",
                "applied_at": disbursed - timedelta(days=1),
                "product_code": "sme-revolving",
                "amount_requested": 1000.0,
            }
        )
        decisions.append(
            {
                "application_id": application_id,
                "decided_at": disbursed - timedelta(hours=12),
                "decision": "approved",
                "reject_reason": None,
                "approved_amount": 1000.0,
                "apr": 12.0,
            }
        )
        loans.append(
            {
                "loan_id": loan_id,
                "application_id": application_id,
                "disbursed_at": disbursed,
                "amount": 1000.0,
                "apr": 12.0,
                "term_months": 12,
            }
        )
        repayments.append(
            {"loan_id": loan_id, "as_of": date(2026, 3, 10), "dpd": 0, "outstanding": 900.0}
        )
        last = 0.0 if closes else 500.0
        repayments.append({"loan_id": loan_id, "as_of": CLOSED_ON, "dpd": 0, "outstanding": last})

    for name in BORROWERS:
        lend(name, f"l-{name}", datetime(2026, 3, 3, 2), closes=True)
    lend("still-owes", "l-still-owes-2", datetime(2026, 3, 5, 2), closes=False)
    for name, days in AGAIN.items():
        applications.append(
            {
                "application_id": f"again-{name}",
                "customer_id": name,
                "campaign_id": None,
                "channel": "app_push",
                "applied_at": datetime.combine(CLOSED_ON, datetime.min.time())
                + timedelta(days=days, hours=12),
                "product_code": "sme-revolving",
                "amount_requested": 2000.0,
            }
        )
    return {
        "customers": [customer(name) for name in BORROWERS],
        "applications": applications,
        "decisions": decisions,
        "loans": loans,
        "repayments": repayments,
    }


@pytest.fixture
def world(engine: Engine) -> Engine:
    data = rows()
    with engine.begin() as conn:
        apply(conn, spec_dict())
        for model, feed in (
            (Customer, "customers"),
            (Application, "applications"),
            (Decision, "decisions"),
            (Loan, "loans"),
            (Repayment, "repayments"),
        ):
            conn.execute(insert(model), data[feed])
    return engine


@pytest.mark.parametrize(
    ("days", "churned"),
    [
        (13, 3),  # back-13 applied on day 13: outside [closed_on, closed_on + 13)
        (14, 2),  # the setting's default: back-13 stays, back-14 left
        (15, 1),  # back-14's application on day 14 is inside too
    ],
)
def test_the_churn_window_is_the_attribution_window(world: Engine, days: int, churned: int) -> None:
    with world.connect() as conn:
        counts = family_counts(conn, CAMPAIGN_ID, WEEK, [], attribution_days=days).iloc[0]
    assert counts["closing_borrowers"] == 4, "still-owes closed a loan in the week too"
    assert counts["churned_borrowers"] == churned


def test_the_oracle_recounts_the_same_churn() -> None:
    """The pandas recount (14-day window) agrees on who left: gone and back-14."""
    data = {feed: pd.DataFrame(frame) for feed, frame in rows().items()}
    other = touch("t-other", "gone", datetime(2026, 1, 5, 4), campaign_id="other-campaign")
    empty = {
        "touches": pd.DataFrame([other]),  # one of another campaign, long before
        "surveys": pd.DataFrame(
            columns=["survey_id", "customer_id", "campaign_id", "answered_at", "score"]
        ),
    }
    feeds = Feeds(**data, **empty)
    closing = Recount(feeds, CAMPAIGN_ID, week_window(WEEK.start, TIMEZONE)).closing_borrowers()
    assert sorted(closing.loc[closing["churned"], "customer_id"]) == ["back-14", "gone"]
    assert len(closing) == 4
