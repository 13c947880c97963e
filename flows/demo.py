"""Demo: a fresh database with a synthetic campaign history, loaded the way real data is.

The synthetic feeds are written as CSV files and go through the same importers, suites
and quarantine as any user's feeds (including a few deliberately bad rows), so the demo
shows the product's real path end to end. Later stages extend it into a full PDCA cycle.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact

from pdca.db import make_engine, reset_database
from pdca.settings import get_settings
from tasks.campaigns import apply_spec, load_spec
from tasks.demo_data import DemoFiles, write_demo_feeds
from tasks.importing import ImportResult, import_feed

FEED_ORDER = (
    "customers",
    "touches",
    "applications",
    "decisions",
    "loans",
    "repayments",
    "complaints",
)
"""Referenced tables first: a touch needs its customer, a loan its application."""


@task
def reset_demo_database(database_url: str) -> None:
    """Start from an empty schema at the current migration."""
    reset_database(database_url)


@task
def generate_feeds(out_dir: Path, customers: int, weeks: int, seed: int) -> DemoFiles:
    """Write the synthetic history as feed files (deterministic by seed)."""
    return write_demo_feeds(out_dir, customers=customers, weeks=weeks, seed=seed)


@task
def apply_campaign(database_url: str, spec_path: Path) -> str:
    """Create the demo campaign from its spec."""
    engine = make_engine(database_url)
    with engine.begin() as conn:
        return apply_spec(conn, load_spec(spec_path), actor="demo")


@task
def import_feed_file(database_url: str, feed: str, path: Path, chunk_rows: int) -> ImportResult:
    """Load one feed file; bad rows go to quarantine."""
    engine = make_engine(database_url)
    with engine.connect() as conn:
        result = import_feed(conn, feed, path, chunk_rows=chunk_rows, actor="demo")
    get_run_logger().info(result.summary())
    return result


@flow(name="demo", flow_run_name="demo {customers} customers × {weeks} weeks, seed {seed}")
def demo_flow(customers: int = 50_000, weeks: int = 8, seed: int = 7) -> str:
    """Build the demo database and return a summary that says where it is."""
    settings = get_settings()
    reset_demo_database(settings.database_url)
    files = generate_feeds(settings.output_dir / "demo" / "feeds", customers, weeks, seed)
    apply_campaign(settings.database_url, files.spec)
    results = [
        import_feed_file(settings.database_url, feed, files.feed(feed), settings.import_chunk_rows)
        for feed in FEED_ORDER
    ]
    create_table_artifact(
        key="demo-import",
        table=[
            {"feed": r.feed, "rows": r.rows, "loaded": r.loaded, "quarantined": r.quarantined}
            for r in results
        ],
        description="Demo feeds loaded; the quarantined rows are the deliberately bad ones.",
    )
    return demo_summary(settings.database_url, results)


def demo_summary(database_url: str, results: list[ImportResult]) -> str:
    from sqlalchemy.engine import make_url

    lines = [f"  {r.summary()}" for r in results]
    url = make_url(database_url)
    where = (
        str(Path(url.database).resolve())
        if url.get_backend_name() == "sqlite"
        else url.render_as_string(hide_password=True)
    )
    return "\n".join(["demo history loaded:", *lines, f"database: {where}"])


if __name__ == "__main__":
    print(demo_flow(customers=5_000, weeks=4))
