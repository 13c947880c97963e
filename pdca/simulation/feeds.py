"""The back office's daily files: the ledger's due rows as the contract's feeds, loaded
through the same importer, suites and quarantine as `pdca import`.

Each simulated day the rows that became known are written as CSV (one file per feed, in
the contract's columns and formats) and imported in load order. Each feed's first file
with enough rows gets the demo's deliberately bad rows (`pdca.synthetic.bad_rows`), so
the quarantine has work to do while staying below the data-quality limit. The sends the
world answers are read back from pdca's own tables (`sql/simulation_sends.sql`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import ClassVar
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from sqlalchemy import Connection

from pdca.settings import Settings
from pdca.simulation.backoffice import BackOffice
from pdca.synthetic.bad_rows import spoil
from pdca.synthetic.campaign import TIMEZONE
from pdca.synthetic.columns import booleans, dates, decimals, text_frame, timestamps
from pdca.synthetic.world import DAY
from tasks.common.bounds import Bounds
from tasks.common.feeds import LOAD_ORDER
from tasks.common.sqlfiles import query
from tasks.data.importing import ImportResult, import_feed

ZONE = ZoneInfo(TIMEZONE)

SPOIL_MIN_ROWS = 1_000
"""A feed's bad rows go into its first daily file of at least this many rows: a handful
of bad rows among them stays well below the 1 % quarantine limit of a week's data."""


def season_midnight(start: date) -> datetime:
    """The season's first day at 00:00 local, as naive UTC (how pdca stores times)."""
    return datetime.combine(start, time(0), tzinfo=ZONE).astimezone(UTC).replace(tzinfo=None)


def read_sends(conn: Connection, campaign_id: str, start: date, day: int) -> pd.DataFrame:
    """The touches pdca recorded on season day `day`, with `t` in local season seconds."""
    origin = season_midnight(start)
    rows = conn.execute(
        query("simulation_sends", conn.dialect.name),
        {
            "campaign_id": campaign_id,
            "starts_at": origin + timedelta(days=day),
            "ends_at": origin + timedelta(days=day + 1),
            # the day's batches, and a day either side for a send that crossed midnight
            "start_date": start + timedelta(days=day - 1),
            "end_date": start + timedelta(days=day + 1),
        },
    ).all()
    frame = pd.DataFrame(  # in time order, then by key: the order the world draws in
        rows,
        columns=[
            "touch_id",
            "customer_id",
            "channel",
            "variant",
            "sent_at",
            "cost",
            "window",
        ],
    )
    frame["sent_at"] = pd.to_datetime(frame["sent_at"])
    frame["t"] = ((frame["sent_at"] - origin).dt.total_seconds()).astype(np.int64)
    return frame.sort_values(["sent_at", "touch_id"], kind="stable", ignore_index=True)


@dataclass
class DailyFiles:
    """Writes the back office's files day by day, remembering what it already handed over."""

    office: BackOffice
    folder: Path
    known_until: int = 0
    """Local season seconds up to which every due row has been written."""
    snapshots_until: int = -1
    """The last season day whose repayment snapshots have been written."""
    bad_rows: dict[str, int] = field(default_factory=dict)
    """Feed → deliberately bad rows written so far (each feed gets them once)."""

    def write_day(self, day: int) -> dict[str, Path]:
        """The files of everything that became known by the end of season day `day`."""
        until = (day + 1) * DAY
        folder = self.folder / f"day-{day:03d}"
        office, after = self.office, self.known_until
        due = {
            feed: office.due(feed, after, until)
            for feed in ("touches", "applications", "decisions", "loans")
        }
        due["repayments"] = office.snapshots(self.snapshots_until, day)
        due |= {feed: office.due(feed, after, until) for feed in ("complaints", "surveys")}
        frames = {feed: self._TEXT[feed](self, rows) for feed, rows in due.items() if len(rows)}
        self.known_until, self.snapshots_until = until, day
        return {feed: self._write(feed, frame, folder) for feed, frame in frames.items()}

    def _write(self, feed: str, frame: pd.DataFrame, folder: Path) -> Path:
        if feed not in self.bad_rows and len(frame) >= SPOIL_MIN_ROWS:
            rng = np.random.default_rng([self.office.world.seed, 99, len(self.bad_rows)])
            frame, self.bad_rows[feed] = spoil(
                feed, frame.reset_index(drop=True), rng, self.office.world.size, self.office.keys
            )
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{feed}.csv"
        frame.to_csv(path, index=False, lineterminator="\n")
        return path

    # --- the rows as the contract writes them -------------------------------------------

    @property
    def _start(self) -> date:
        return self.office.world.start

    def _ids(self, who: pd.Series) -> np.ndarray:
        return self.office.world.people["id"][who.to_numpy(dtype=np.int64)]

    def _touches(self, rows: pd.DataFrame) -> pd.DataFrame:
        """The provider's report: dispatch's touches with their outcome (same key, time)."""
        sent_at = rows["sent_at"].map(lambda moment: moment.isoformat() + "+00:00")
        return text_frame(
            "touches",
            touch_id=rows["touch_id"].to_numpy(),
            campaign_id=np.full(len(rows), self.office.campaign_id),
            customer_id=rows["customer_id"].to_numpy(),
            channel=rows["channel"].to_numpy(),
            variant=rows["variant"].to_numpy(),
            sent_at=sent_at.to_numpy(dtype=str),
            delivered=booleans(rows["delivered"].to_numpy()),
            responded=booleans(rows["responded"].to_numpy()),
            cost=decimals(rows["cost"].to_numpy(), 4),
        )

    def _applications(self, rows: pd.DataFrame) -> pd.DataFrame:
        return text_frame(
            "applications",
            application_id=rows["application_id"].to_numpy(),
            customer_id=self._ids(rows["who"]),
            campaign_id=rows["campaign_id"].to_numpy(),
            channel=rows["channel"].to_numpy(),
            applied_at=timestamps(rows["t"].to_numpy(), self._start),
            product_code=np.full(len(rows), self.office.product),
            amount_requested=decimals(rows["amount"].to_numpy(), 2),
        )

    def _decisions(self, rows: pd.DataFrame) -> pd.DataFrame:
        approved = rows["approved"].to_numpy(dtype=bool)
        return text_frame(
            "decisions",
            application_id=rows["application_id"].to_numpy(),
            decided_at=timestamps(rows["t"].to_numpy(), self._start),
            decision=np.where(approved, "approved", "rejected"),
            reject_reason=rows["reason"].to_numpy(),
            approved_amount=np.where(approved, decimals(rows["amount"].to_numpy(), 2), ""),
            apr=np.where(approved, decimals(rows["apr"].to_numpy(), 2), ""),
        )

    def _loans(self, rows: pd.DataFrame) -> pd.DataFrame:
        return text_frame(
            "loans",
            loan_id=rows["loan_id"].to_numpy(),
            application_id=rows["application_id"].to_numpy(),
            disbursed_at=timestamps(rows["t"].to_numpy(), self._start),
            amount=decimals(rows["amount"].to_numpy(), 2),
            apr=decimals(rows["apr"].to_numpy(), 2),
            term_months=rows["term"].to_numpy().astype(str),
        )

    def _repayments(self, rows: pd.DataFrame) -> pd.DataFrame:
        return text_frame(
            "repayments",
            loan_id=rows["loan_id"].to_numpy(dtype=str),
            as_of=dates(rows["day"].to_numpy(dtype=np.int64), self._start),
            dpd=rows["dpd"].to_numpy(dtype=np.int64).astype(str),
            outstanding=decimals(rows["outstanding"].to_numpy(dtype=float), 2),
        )

    def _complaints(self, rows: pd.DataFrame) -> pd.DataFrame:
        return text_frame(
            "complaints",
            complaint_id=rows["complaint_id"].to_numpy(),
            customer_id=self._ids(rows["who"]),
            campaign_id=np.where(rows["named"].to_numpy(dtype=bool), self.office.campaign_id, ""),
            received_at=timestamps(rows["t"].to_numpy(), self._start),
            category=rows["category"].to_numpy(),
        )

    def _surveys(self, rows: pd.DataFrame) -> pd.DataFrame:
        score = rows["score"].to_numpy(dtype=np.int64)
        return text_frame(
            "surveys",
            survey_id=rows["survey_id"].to_numpy(),
            customer_id=self._ids(rows["who"]),
            campaign_id=np.where(rows["named"].to_numpy(dtype=bool), self.office.campaign_id, ""),
            answered_at=timestamps(rows["t"].to_numpy(), self._start),
            score=score.astype(str),
            comment=np.where(score <= 3, "too many messages", ""),
        )

    _TEXT: ClassVar[dict] = {
        "touches": _touches,
        "applications": _applications,
        "decisions": _decisions,
        "loans": _loans,
        "repayments": _repayments,
        "complaints": _complaints,
        "surveys": _surveys,
    }
    """Each feed's text from the ledger's due rows."""


def load_files(
    conn: Connection, files: dict[str, Path], settings: Settings, actor: str = "simulation"
) -> list[ImportResult]:
    """Import the day's files in load order, exactly as `pdca import` imports a file."""
    return [
        import_feed(
            conn,
            feed,
            files[feed],
            chunk_rows=settings.import_chunk_rows,
            default_timezone=settings.timezone,
            bounds=Bounds.of_days(
                settings.timestamp_min, settings.timestamp_max, settings.import_max_field_chars
            ),
            actor=actor,
        )
        for feed in LOAD_ORDER
        if feed in files
    ]
