"""Engines and schema migrations, for SQLite (the embedded default) and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
PAGE_CACHE_MIB = 256
"""SQLite's page cache per connection by default: bulk upserts touch many index pages."""


def make_engine(
    url: str, *, page_cache_mib: int = PAGE_CACHE_MIB, temp_store: str = "memory"
) -> Engine:
    """An engine for `url`; SQLite gets WAL, a busy timeout, a page cache of
    `page_cache_mib` per connection, temporary tables and sorts in `temp_store`
    ("memory" or "file") and its parent folder created.

    A reader that opens several connections at once (the check) passes a smaller cache,
    since each connection fills its own, and temp_store="file": SQLite's in-memory sorts
    of connections working at once serialise on its allocator (the check's four
    measurements on 2 cores: 5.9–6.5 s with sorts in memory, 4.8–4.9 s in temporary
    files, which the OS page cache keeps; each alone runs as fast either way).

    PostgreSQL sessions start with `POSTGRES_OPTIONS` (after any `options` of the URL).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        postgres = parsed.get_backend_name() == "postgresql"
        session = {"options": postgres_options(parsed)} if postgres else {}
        return create_engine(url, pool_pre_ping=True, connect_args=session)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 60})
    event.listen(
        engine,
        "connect",
        lambda connection, record: _tune_sqlite(connection, record, page_cache_mib, temp_store),
    )
    return engine


POSTGRES_OPTIONS = "-c jit=off"
"""pdca's PostgreSQL sessions compile no query to machine code. The planner's estimates
for the check's queries pass PostgreSQL's JIT thresholds, and compiling them costs more
than running them: the loan book of a 2,000,000-touch history (sql/loan_book.sql) took
1.55–1.59 s, of which 1.10 s was compiling its 183 functions, and 0.66–0.69 s with JIT
off; the same for the other queries of a check."""


def postgres_options(url: URL) -> str:
    """`POSTGRES_OPTIONS` after the URL's own `options` (libpq's session settings)."""
    own = url.query.get("options", "")
    own = " ".join(own) if isinstance(own, tuple) else own
    return f"{own} {POSTGRES_OPTIONS}".strip()


def set_page_cache(conn: Connection, mib: int) -> None:
    """Give this SQLite connection a page cache of `mib` (for its lifetime in the pool);
    other databases size their buffers server-side, so elsewhere this does nothing."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(f"pragma cache_size=-{int(mib) * 1024}")


def _tune_sqlite(
    dbapi_connection, _record, page_cache_mib: int = PAGE_CACHE_MIB, temp_store: str = "memory"
) -> None:
    """WAL lets readers run beside a writer (the check reads on several connections at
    once); NORMAL sync is safe under WAL and much faster; a large page cache keeps index
    maintenance of bulk loads in memory, and so do temporary tables (the import's staging)
    unless `temp_store` is "file" (see `make_engine`)."""
    if temp_store not in ("memory", "file"):
        raise ValueError(f"temp_store must be 'memory' or 'file', not {temp_store!r}")
    cursor = dbapi_connection.cursor()
    cursor.execute("pragma journal_mode=wal")
    cursor.execute("pragma synchronous=normal")
    cursor.execute(f"pragma temp_store={temp_store}")
    cursor.execute(f"pragma cache_size=-{int(page_cache_mib) * 1024}")
    cursor.execute("pragma foreign_keys=on")
    cursor.close()


def alembic_config(url: str) -> Config:
    """An Alembic config for `url` that needs no alembic.ini in the working directory."""
    from alembic.config import Config  # imported when used: the CLI refuses bad usage first

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Create or migrate the schema to `revision`."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def contents_besides(url: str, campaign_ids: set[str]) -> str | None:
    """What the database at `url` holds besides the campaigns `campaign_ids` (and their
    data), in a few words; None when it is empty, new or holds only those.

    `pdca demo` replaces the whole database: it must not silently drop a user's campaign.
    """
    from sqlalchemy import func, inspect, select

    from pdca.models import Campaign, Customer

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            if Campaign.__tablename__ not in tables:
                return f"{len(tables)} tables" if tables else None
            others = sorted(
                set(conn.execute(select(Campaign.campaign_id)).scalars()) - campaign_ids
            )
            if others:
                return f"campaign(s) {', '.join(others[:5])}"
            if not campaign_ids & set(conn.execute(select(Campaign.campaign_id)).scalars()):
                customers = conn.execute(select(func.count()).select_from(Customer)).scalar()
                return f"{customers:,} customers and no demo campaign" if customers else None
            return None
    finally:
        engine.dispose()


def reset_database(url: str) -> None:
    """Drop everything pdca owns in the database at `url`, then migrate to head.

    Used by `pdca demo`, which promises a fresh database: a SQLite file is deleted, a
    server database loses pdca's tables (and only those).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        for suffix in ("", "-wal", "-shm"):
            Path(parsed.database + suffix).unlink(missing_ok=True)
    else:
        from pdca.models import Base

        engine = make_engine(url)
        with engine.begin() as conn:
            Base.metadata.drop_all(conn)
            conn.exec_driver_sql("drop table if exists alembic_version")
        engine.dispose()
    upgrade(url)


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"
