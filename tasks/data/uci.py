"""The `uci-bank` feed: the UCI Bank Marketing contact log as pdca history.

Each valid row of `bank-full.csv` (`;`-separated) becomes customer `uci-<n>` (n = the data
line number, 1 for the first row after the header; segment = job), one delivered `phone`
touch on the row's reconstructed date in campaign `uci-<year>`, and — when `y` is `yes` —
one application the same day. The file has no year: rows are in date order from May 2008,
so the year starts at 2008 and rolls over wherever the month goes backwards.

Assumptions the data cannot tell us, stated once here:
- the contact time is not recorded: touches are stamped 12:00 Lisbon time;
- a touch counts as `responded` when the call lasted at least `RESPONSE_SECONDS`;
- its cost is the number of calls made to the client in the campaign × `CALL_COST`;
- the product is a term deposit, so applications carry no requested amount: the feed
  says so (`tasks.common.feeds.NOT_CARRIED`) and its rows record their source, so the
  check does not count the missing amounts as a data-quality failure.

Two passes over the file: the first finds each row's year (and each year's dates and
cost, for the campaign specs, which must exist before touches reference them); the
second loads. Both validate with `expectations/uci-bank.json`, so they agree on the rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Connection

from pdca.errors import UserError
from tasks.common.campaigns import CampaignSpec, apply_spec
from tasks.common.feeds import FEEDS, Column, Feed
from tasks.data.import_ledger import (
    ImportResult,
    count_rows,
    fail_import,
    finish_import,
    record_progress,
    start_import,
)
from tasks.data.import_parsing import LINE, validate_chunk
from tasks.data.import_reading import open_feed_file, read_chunks
from tasks.data.import_staging import StagedLoader
from tasks.data.quarantine import QuarantineWriter, Rejected, csv_line

FIRST_YEAR = 2008
TIMEZONE = "Europe/Lisbon"
CALL_COST = 5.0
RESPONSE_SECONDS = 60
PRODUCT = "term-deposit"
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")

UCI_FEED = Feed(
    name="uci-bank",
    table="",
    key=(),
    columns=(
        Column("age", "int"),
        Column("job"),
        Column("marital", required=False),
        Column("education", required=False),
        Column("default", required=False),
        Column("balance", "float", required=False),
        Column("housing", required=False),
        Column("loan", required=False),
        Column("contact", required=False),
        Column("day", "int"),
        Column("month"),
        Column("duration", "int"),
        Column("campaign", "int"),
        Column("pdays", "int", required=False),
        Column("previous", "int", required=False),
        Column("poutcome", required=False),
        Column("y"),
    ),
)


def _valid_chunks(
    path: Path, chunk_rows: int
) -> Iterator[tuple[list[list[str]], pd.DataFrame, list[Rejected]]]:
    """The file's chunks: raw rows, the valid rows typed and dated, and the rejects.

    A row whose day does not exist in its month (31 jun) is rejected here; it still
    counts for the year rollover, since its month is real.
    """
    state = {"year": FIRST_YEAR, "month": 0}
    handle = open_feed_file(path, UCI_FEED.column_names, delimiter=";")
    with handle:
        for rows, lines, rejected in read_chunks(
            handle, len(handle.header), chunk_rows, delimiter=";"
        ):
            typed, invalid = validate_chunk(
                UCI_FEED, rows, lines, handle.header, {}, "UTC", delimiter=";"
            )
            typed["date"] = _dates(typed, state)
            impossible = typed["date"].isna()
            invalid += [
                Rejected(
                    int(line),
                    "day",
                    f"day: {day} {month} is not a date",
                    csv_line(rows[lines.index(int(line))], ";"),
                )
                for line, day, month in typed.loc[impossible, [LINE, "day", "month"]].itertuples(
                    index=False
                )
            ]
            yield rows, typed[~impossible], rejected + invalid


def _dates(typed: pd.DataFrame, state: dict[str, int]) -> pd.Series:
    """Calendar dates of the rows, rolling the year over where the month goes backwards."""
    months = typed["month"].map({name: number for number, name in enumerate(MONTHS, 1)})
    month_values = months.to_numpy()
    previous = np.concatenate(([state["month"]], month_values[:-1]))
    years = state["year"] + np.cumsum(month_values < previous)
    if len(month_values):
        state["month"], state["year"] = int(month_values[-1]), int(years[-1])
    frame = pd.DataFrame({"year": years, "month": month_values, "day": typed["day"].to_numpy()})
    dates = pd.to_datetime(frame, errors="coerce")
    return pd.Series(dates.to_numpy(), index=typed.index)


def _year_spans(path: Path, chunk_rows: int) -> dict[int, tuple[date, date, float]]:
    """First pass: each year's first and last date and the cost of its calls."""
    spans: dict[int, tuple[date, date, float]] = {}
    for _rows, typed, _rejected in _valid_chunks(path, chunk_rows):
        dates = typed["date"]
        cost = typed["campaign"].astype(float) * CALL_COST
        for year, group in dates.groupby(dates.dt.year):
            first, last, spent = spans.get(int(year), (date.max, date.min, 0.0))
            spans[int(year)] = (
                min(first, group.min().date()),
                max(last, group.max().date()),
                spent + float(cost[group.index].sum()),
            )
    return spans


def campaign_spec(year: int, first: date, last: date, cost: float) -> CampaignSpec:
    """The spec of campaign `uci-<year>`: one phone channel, no experiment."""
    return CampaignSpec.model_validate(
        {
            "id": f"uci-{year}",
            "name": f"UCI Bank Marketing {year} (term deposit, phone)",
            "product": PRODUCT,
            "start": first,
            "end": last,
            "timezone": TIMEZONE,
            "channels": ["phone"],
            "budget_total": round(max(cost, 1.0), 2),
            "risk": {
                "max_overdue_rate_30": 0.03,
                "min_credit_score": 300,
                "apr_cap": 24.0,
                "excluded_industries": [],
            },
            "contact_policy": {
                "max_touches_per_7d": 7,
                "quiet_hours": "21:00-09:00",
                "windows": {"day": "09:00-21:00"},
            },
            "experiment": {"metric": "application_rate", "variants": {"A": 1.0}, "holdout": 0.0},
            "recipients": [],
        }
    )


def derived_frames(typed: pd.DataFrame, dates: pd.Series) -> dict[str, pd.DataFrame]:
    """The customers, touches and applications rows that the valid UCI rows stand for."""
    ids = "uci-" + (typed[LINE] - 1).astype("str")
    local_noon = (dates + pd.Timedelta(hours=12)).dt.tz_localize(TIMEZONE)
    sent_at = local_noon.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[us]")
    campaign = "uci-" + dates.dt.year.astype("str")
    customers = pd.DataFrame(
        {
            "customer_id": ids,
            "segment": typed["job"],
            "region": None,
            "credit_score": pd.array([pd.NA] * len(typed), dtype="Int64"),
            "monthly_income": np.nan,
            "debt_ratio": np.nan,
            "industry": None,
            "phone": None,
            "email": None,
            "marketing_consent": True,
            "do_not_contact": False,
            "created_at": pd.Series(pd.NaT, index=typed.index, dtype="datetime64[us]"),
            LINE: typed[LINE],
        }
    )
    touches = pd.DataFrame(
        {
            "touch_id": ids,
            "campaign_id": campaign,
            "customer_id": ids,
            "channel": "phone",
            "variant": "A",
            "sent_at": sent_at,
            "delivered": True,
            "responded": typed["duration"] >= RESPONSE_SECONDS,
            "cost": typed["campaign"].astype(float) * CALL_COST,
            LINE: typed[LINE],
        }
    )
    converted = typed["y"] == "yes"
    applications = pd.DataFrame(
        {
            "application_id": ids[converted],
            "customer_id": ids[converted],
            "campaign_id": campaign[converted],
            "channel": "phone",
            "applied_at": sent_at[converted],
            "product_code": PRODUCT,
            "amount_requested": np.nan,
            LINE: typed.loc[converted, LINE],
        }
    )
    return {"customers": customers, "touches": touches, "applications": applications}


def import_uci_bank(
    conn: Connection, path: Path, *, chunk_rows: int = 100_000, actor: str = "cli"
) -> ImportResult:
    """Import the UCI file: campaigns first, then customers, touches and applications."""
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    spans = _year_spans(path, chunk_rows)
    file = str(path.resolve())  # one file, one ledger: however its path was spelled
    result = ImportResult(
        feed="uci-bank",
        file=str(path),
        import_id=start_import(conn, "uci-bank", file),
        stored_file=file,
    )
    try:
        for year, (first, last, cost) in sorted(spans.items()):
            apply_spec(conn, campaign_spec(year, first, last, cost), actor=actor)
        loaders = {
            name: StagedLoader(conn, FEEDS[name], source="uci-bank")
            for name in ("customers", "touches", "applications")
        }
        quarantine = QuarantineWriter(conn, "uci-bank", file, result.import_id)
        for rows, typed, rejected in _valid_chunks(path, chunk_rows):
            frames = derived_frames(typed, typed["date"])
            for name, loader in loaders.items():
                refused = loader.load(loader.rows_of(frames[name]))
                if refused:  # derived rows reference each other; nothing should be refused
                    raise RuntimeError(f"uci-bank: {name} refused {refused[0].reason}")
            quarantine.write(rejected)
            count_rows(result, len(rows) + sum(r.field == "(row)" for r in rejected), rejected)
            record_progress(conn, result)
            conn.commit()
        for loader in loaders.values():
            loader.close()
        finish_import(conn, result, actor)
    except Exception as error:
        fail_import(conn, result, f"{type(error).__name__}: {error}")
        raise
    return result
