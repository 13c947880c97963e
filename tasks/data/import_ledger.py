"""The import ledger: one `Import` row per file import, its progress, and the audit entry.

An import starts (committed at once, so a crash leaves a `running` or `failed` row to see),
records its counts after every chunk, and ends `loaded` with an audit entry or `failed`
with the error's message. A `running` row names its process ("running in process 123 on
host"); when the next import starts and that process is gone (killed, machine crashed),
the row is marked `interrupted`, so that no row says `running` forever.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Connection, insert, select, update

from pdca.models import AuditEntry, Campaign, Import
from tasks.data.quarantine import Rejected


@dataclass
class ImportResult:
    """The counts of one file import, kept in step with its `Import` row."""

    feed: str
    file: str
    import_id: int
    rows: int = 0
    loaded: int = 0
    quarantined: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    stored_file: str = ""
    """The file's resolved path, as the ledger, the quarantine and the audit name it."""

    def summary(self) -> str:
        return (
            f"{self.feed}: {self.rows} rows in {self.file}: {self.loaded} loaded, "
            f"{self.quarantined} quarantined"
        )


def campaign_timezones(conn: Connection) -> dict[str, str]:
    return dict(conn.execute(select(Campaign.campaign_id, Campaign.timezone)).all())


RUNNING = re.compile(r"^running in process (\d+) on (\S+)$")


def start_import(conn: Connection, feed: str, file: str) -> int:
    mark_interrupted(conn)
    import_id = conn.execute(
        insert(Import)
        .values(
            feed=feed,
            file=file,
            started_at=_now(),
            status="running",
            message=f"running in process {os.getpid()} on {socket.gethostname()}",
        )
        .returning(Import.import_id)
    ).scalar_one()
    conn.commit()
    return import_id


def mark_interrupted(conn: Connection) -> list[int]:
    """Mark `interrupted` the `running` imports of this machine whose process is gone.

    Only this machine's processes can be looked up; a row of another host, or one whose
    process still lives (an import running in parallel), is left as it is.
    """
    host = socket.gethostname()
    running = conn.execute(
        select(Import.import_id, Import.message).where(Import.status == "running")
    ).all()
    dead = [
        import_id
        for import_id, message in running
        if (match := RUNNING.match(message or ""))
        and match[2] == host
        and not _process_alive(int(match[1]))
    ]
    if dead:
        conn.execute(
            update(Import)
            .where(Import.import_id.in_(dead))
            .values(
                status="interrupted",
                finished_at=_now(),
                message="interrupted: its process ended before the import finished",
            )
        )
    return dead


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    except OverflowError:
        return False
    return True


def record_progress(conn: Connection, result: ImportResult, status: str = "running") -> None:
    conn.execute(
        update(Import)
        .where(Import.import_id == result.import_id)
        .values(
            rows_in=result.rows,
            rows_loaded=result.loaded,
            rows_quarantined=result.quarantined,
            status=status,
            finished_at=None if status == "running" else _now(),
        )
    )


def finish_import(conn: Connection, result: ImportResult, actor: str) -> None:
    record_progress(conn, result, status="loaded")
    conn.execute(update(Import).where(Import.import_id == result.import_id).values(message=None))
    conn.execute(
        insert(AuditEntry).values(
            actor=actor,
            action="feed.import",
            subject=f"{result.feed}:{result.stored_file or result.file}",
            detail={
                "rows": result.rows,
                "loaded": result.loaded,
                "quarantined": result.quarantined,
                "import_id": result.import_id,
            },
        )
    )
    conn.commit()


def fail_import(conn: Connection, result: ImportResult, message: str) -> None:
    conn.rollback()
    record_progress(conn, result, status="failed")
    conn.execute(update(Import).where(Import.import_id == result.import_id).values(message=message))
    conn.commit()


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def count_rows(result: ImportResult, rows: int, rejected: list[Rejected]) -> None:
    """Add a chunk's rows to the result, with its rejections counted by reason."""
    result.rows += rows
    result.quarantined += len(rejected)
    result.loaded += rows - len(rejected)
    for row in rejected:
        reason = re.sub(r"line \d+|'[^']*'", "…", row.reason.split("; ")[0])
        result.reasons[reason] = result.reasons.get(reason, 0) + 1
