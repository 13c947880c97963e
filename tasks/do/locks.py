"""Do: the campaign's dispatch lock — two dispatches of a campaign never send together."""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, insert, select

from pdca.errors import UserError
from pdca.models import DispatchLock

LOCK_LEASE = timedelta(minutes=30)
"""A dispatch lock older than this, whose holder is gone, may be taken over."""


def acquire_lock(conn: Connection, campaign_id: str, now: datetime) -> str:
    """Take the campaign's dispatch lock or refuse: two dispatches never send together.

    A lock older than LOCK_LEASE is taken over (its holder crashed). Committed at once,
    so that other processes see it.
    """
    holder = f"{socket.gethostname()}:{os.getpid()}:{now.isoformat()}"
    stale_before = now - LOCK_LEASE
    conn.execute(
        delete(DispatchLock).where(
            DispatchLock.campaign_id == campaign_id, DispatchLock.acquired_at < stale_before
        )
    )
    current = conn.execute(
        select(DispatchLock.holder).where(DispatchLock.campaign_id == campaign_id)
    ).scalar()
    if current is not None and _holder_is_gone(current):
        conn.execute(
            delete(DispatchLock).where(
                DispatchLock.campaign_id == campaign_id, DispatchLock.holder == current
            )
        )
    taken = conn.execute(
        select(DispatchLock.holder, DispatchLock.acquired_at).where(
            DispatchLock.campaign_id == campaign_id
        )
    ).first()
    if taken is None:
        try:
            conn.execute(
                insert(DispatchLock).values(campaign_id=campaign_id, holder=holder, acquired_at=now)
            )
            conn.commit()
            return holder
        except Exception:  # another process inserted first
            conn.rollback()
            taken = conn.execute(
                select(DispatchLock.holder, DispatchLock.acquired_at).where(
                    DispatchLock.campaign_id == campaign_id
                )
            ).first()
    conn.rollback()
    raise DispatchBusy(
        f"campaign {campaign_id!r}: another dispatch is running ({taken[0]}, since "
        f"{taken[1]:%Y-%m-%d %H:%M:%S} UTC); it was not started again"
    )


def _holder_is_gone(holder: str) -> bool:
    """A holder on this host whose process no longer exists (it crashed or was killed)."""
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def release_lock(conn: Connection, campaign_id: str, holder: str) -> None:
    conn.execute(
        delete(DispatchLock).where(
            DispatchLock.campaign_id == campaign_id, DispatchLock.holder == holder
        )
    )
    conn.commit()


class DispatchBusy(UserError):
    """A second dispatch of the same campaign while one runs: refused, nothing sent."""
