"""A test oracle: the contract's customer and value KPIs recounted in pandas from the feeds.

new_customers, loan_balance, npl_rate, ltv, ltv_cac, nps and churn_rate restated from
CONTRACT.md's metric section over the demo's CSV files (the rows an import keeps: see
`Feeds`), with none of pdca's SQL; the tests hold `tasks.check.check.kpi_actuals` to it at
the campaign, channel and segment scopes. It is not used by the product.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd

FTP_RATE = 0.03
LGD = 0.6
WINDOW = pd.Timedelta(days=14)
SCOPES = ((), ("channel",), ("segment",))


@dataclass(frozen=True)
class Window:
    """The checked week: UTC bounds of its local days, and those days as dates."""

    starts_at: datetime
    ends_at: datetime
    start: date
    end: date


def _utc(column: pd.Series) -> pd.Series:
    return pd.to_datetime(column, utc=True, format="ISO8601").dt.tz_localize(None)


@dataclass
class Feeds:
    """The feeds' good rows, typed: timestamps naive UTC, numbers as numbers."""

    customers: pd.DataFrame
    touches: pd.DataFrame
    applications: pd.DataFrame
    decisions: pd.DataFrame
    loans: pd.DataFrame
    repayments: pd.DataFrame
    surveys: pd.DataFrame

    @classmethod
    def from_text(cls, text: dict[str, pd.DataFrame], bad: dict[str, pd.Series]) -> Feeds:
        """`text`: each feed as read (str), `bad`: each feed's rows an import quarantines."""
        good = {feed: frame[~bad[feed]].copy() for feed, frame in text.items()}
        t, a, lo, r, s = (
            good[f] for f in ("touches", "applications", "loans", "repayments", "surveys")
        )
        t["sent_at"] = _utc(t.sent_at)
        t["delivered"] = t.delivered.isin({"true", "1"})
        t["cost"] = t.cost.astype(float)
        a["applied_at"] = _utc(a.applied_at)
        lo["disbursed_at"] = _utc(lo.disbursed_at)
        for column in ("amount", "apr"):
            lo[column] = lo[column].astype(float)
        lo["term_months"] = lo.term_months.astype(float)
        r["as_of"] = pd.to_datetime(r.as_of).dt.date
        r["dpd"] = r.dpd.astype(float)
        r["outstanding"] = r.outstanding.astype(float)
        s["answered_at"] = _utc(s.answered_at)
        s["score"] = s.score.astype(float)
        return cls(good["customers"], t, a, good["decisions"], lo, r, s)


class Recount:
    """The KPIs of one campaign and week, from `Feeds`."""

    def __init__(self, feeds: Feeds, campaign_id: str, window: Window) -> None:
        self.f, self.campaign, self.w = feeds, campaign_id, window
        touches = feeds.touches
        mine = touches[touches.campaign_id == campaign_id]
        first = mine.sort_values(["sent_at", "touch_id"]).drop_duplicates("customer_id")
        self.variant = first.set_index("customer_id")["variant"]
        self.segment = feeds.customers.set_index("customer_id")["segment"]
        delivered = touches[touches.delivered].sort_values(["sent_at", "touch_id"])
        self.delivered = delivered

    # --- attribution ----------------------------------------------------------------

    def _last_delivered(self, who: str, at: pd.Timestamp, campaign: str | None) -> pd.Series | None:
        rows = self.delivered[(self.delivered.customer_id == who) & (self.delivered.sent_at <= at)]
        if campaign is None:
            rows = rows[rows.sent_at >= at - WINDOW]
        else:
            rows = rows[rows.campaign_id == campaign]
        return None if rows.empty else rows.iloc[-1]

    def _attributed(self, frame: pd.DataFrame, at: str) -> pd.Series:
        """Rows of `frame` credited to the campaign: own campaign_id, else the customer's
        last delivered touch within the window; hold-out members never."""

        def credited(row: pd.Series) -> bool:
            if row.campaign_id == self.campaign:
                return True
            if row.campaign_id:
                return False
            last = self._last_delivered(row.customer_id, row[at], None)
            return last is not None and last.campaign_id == self.campaign

        keep = frame.apply(credited, axis=1) if len(frame) else pd.Series(dtype=bool)
        holdout = frame.customer_id.map(self.variant).eq("holdout")
        return keep.astype(bool) & ~holdout

    def applications(self, since: datetime | None = None) -> pd.DataFrame:
        """Attributed applications applied in [since or the week's start, the week's end)."""
        a = self.f.applications
        a = a[(a.applied_at >= (since or self.w.starts_at)) & (a.applied_at < self.w.ends_at)]
        a = a[self._attributed(a, "applied_at")].copy()
        a["segment"] = a.customer_id.map(self.segment).fillna("unknown")
        return a

    # --- the loan book --------------------------------------------------------------

    def _latest(self, loans: pd.DataFrame) -> pd.DataFrame:
        r = self.f.repayments
        r = r[r.loan_id.isin(loans.loan_id) & (r.as_of < self.w.end)]
        return r.sort_values("as_of").drop_duplicates("loan_id", keep="last").set_index("loan_id")

    def campaign_loans(self) -> pd.DataFrame:
        apps = self.applications(since=datetime(1900, 1, 1))
        lo = self.f.loans.merge(apps[["application_id", "customer_id", "channel", "segment"]])
        return lo[lo.disbursed_at < self.w.ends_at]

    def book(self) -> pd.DataFrame:
        """Per campaign loan: outstanding (0 without snapshot), has_snapshot, is_npl."""
        lo = self.campaign_loans().copy()
        latest = self._latest(lo)
        lo["outstanding"] = lo.loan_id.map(latest["outstanding"]).fillna(0.0)
        lo["has_snapshot"] = lo.loan_id.isin(latest.index)
        lo["is_npl"] = lo.loan_id.map(latest["dpd"]).fillna(0) >= 90
        return lo

    def week_loans(self) -> pd.DataFrame:
        """The loans of the week's attributed applications, with their value and whether
        they are their customer's first loan ever."""
        apps = self.applications()
        lo = self.f.loans.merge(apps[["application_id", "customer_id", "channel", "segment"]])
        every = self.f.loans.merge(self.f.applications[["application_id", "customer_id"]])
        firsts = set(
            every.sort_values(["disbursed_at", "loan_id"]).drop_duplicates("customer_id").loan_id
        )
        latest = self._latest(lo)
        loss = np.where(lo.loan_id.map(latest["dpd"]).fillna(0) >= 90, 1.0, 0.0) * LGD
        lo["value"] = lo.amount * (
            lo.apr / 100 - FTP_RATE
        ) * lo.term_months / 12 - loss * lo.loan_id.map(latest["outstanding"]).fillna(0.0)
        lo["is_first"] = lo.loan_id.isin(firsts)
        return lo

    # --- surveys and churn ----------------------------------------------------------

    def answers(self) -> pd.DataFrame:
        s = self.f.surveys
        s = s[(s.answered_at >= self.w.starts_at) & (s.answered_at < self.w.ends_at)]
        s = s[self._attributed(s, "answered_at")].copy()

        def channel(row: pd.Series) -> str:
            last = self._last_delivered(row.customer_id, row.answered_at, self.campaign)
            return "unknown" if last is None else last.channel

        s["channel"] = s.apply(channel, axis=1) if len(s) else pd.Series(dtype=str)
        s["segment"] = s.customer_id.map(self.segment).fillna("unknown")
        return s

    def closing_borrowers(self) -> pd.DataFrame:
        """Per borrower with a campaign loan first at outstanding 0 in the week: the loan
        that closed last, and whether the borrower churned."""
        lo = self.campaign_loans()
        r = self.f.repayments
        r = r[r.loan_id.isin(lo.loan_id) & (r.as_of < self.w.end)]
        closed_on = r[r.outstanding == 0].groupby("loan_id")["as_of"].min()
        latest = r.sort_values("as_of").drop_duplicates("loan_id", keep="last").set_index("loan_id")
        lo = lo.assign(
            closed_on=lo.loan_id.map(closed_on),
            open=lo.loan_id.map(latest["outstanding"]).fillna(1.0) > 0,
        )
        closing = lo[lo.closed_on.notna()]
        closing = closing[closing.closed_on >= self.w.start]
        closing = closing.sort_values(["closed_on", "loan_id"]).drop_duplicates(
            "customer_id", keep="last"
        )
        open_borrowers = set(lo.customer_id[lo.open])
        a = self.f.applications

        def churned(row: pd.Series) -> bool:
            since = pd.Timestamp(row.closed_on)
            mine = a[(a.customer_id == row.customer_id) & (a.applied_at >= since)]
            return (
                row.customer_id not in open_borrowers
                and not (mine.applied_at < since + WINDOW).any()
            )

        closing = closing.copy()
        closing["churned"] = (
            closing.apply(churned, axis=1) if len(closing) else pd.Series(dtype=bool)
        )
        return closing

    # --- the KPIs -------------------------------------------------------------------

    def kpis(self) -> pd.DataFrame:
        """One row per scope (channel, segment: None where it spans them) with the seven."""
        book, loans, answers = self.book(), self.week_loans(), self.answers()
        closing, apps = self.closing_borrowers(), self.applications()
        decided = apps.application_id.isin(self.f.decisions.application_id)
        apps = apps.assign(decided=decided)
        t = self.f.touches
        t = t[
            (t.campaign_id == self.campaign)
            & (t.sent_at >= self.w.starts_at)
            & (t.sent_at < self.w.ends_at)
        ]
        t = t[t.variant != "holdout"].assign(
            segment=lambda x: x.customer_id.map(self.segment).fillna("unknown")
        )
        rows = []
        for scope in SCOPES:
            keys = (
                sorted(
                    set().union(
                        *(
                            set(map(tuple, f[list(scope)].to_numpy()))
                            for f in (t, apps, book, loans, answers, closing)
                        )
                    )
                )
                if scope
                else [()]
            )
            for key in keys:
                pick = dict(zip(scope, key, strict=True))
                b, lo, s, c, ap, tt = (
                    _part(f, pick) for f in (book, loans, answers, closing, apps, t)
                )
                pending = len(ap) > 0 and not ap.decided.any()
                cost, n = tt.cost.sum(), len(lo)
                ltv = lo.value.sum() / n if n else np.nan
                cac = cost / n if n else np.nan
                rows.append(
                    {
                        "channel": pick.get("channel"),
                        "segment": pick.get("segment"),
                        "new_customers": np.nan if pending else float(lo.is_first.sum()),
                        "loan_balance": b.outstanding.sum() if len(b) else np.nan,
                        "npl_rate": b.is_npl.sum() / b.has_snapshot.sum()
                        if b.has_snapshot.any()
                        else np.nan,
                        "ltv": ltv,
                        "ltv_cac": ltv / cac if cac and np.isfinite(cac) else np.nan,
                        "nps": 100 * ((s.score >= 9).sum() - (s.score <= 6).sum()) / len(s)
                        if len(s)
                        else np.nan,
                        "churn_rate": c.churned.sum() / len(c) if len(c) else np.nan,
                    }
                )
        return pd.DataFrame(rows)


def _part(frame: pd.DataFrame, pick: dict[str, str]) -> pd.DataFrame:
    """The rows of `frame` in the scope `pick` (column → value)."""
    for column, value in pick.items():
        frame = frame[frame[column] == value]
    return frame


def week_window(start: date, timezone: str) -> Window:
    """The ISO week starting `start` (a Monday), in naive UTC bounds of local midnights."""
    from zoneinfo import ZoneInfo

    def midnight(day: date) -> datetime:
        local = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(timezone))
        return local.astimezone(ZoneInfo("UTC")).replace(tzinfo=None)

    end = start + timedelta(days=7)
    return Window(midnight(start), midnight(end), start, end)
