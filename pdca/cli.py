"""The `pdca` command line (see CONTRACT.md): thin commands over tasks and flows.

Exit codes: 0 success; 1 the work ran but found a problem the user must see; 2 bad usage
or bad input, with one line on stderr naming the file, line and field at fault.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.exc import OperationalError

from pdca.db import make_engine, upgrade
from pdca.errors import UserError
from pdca.settings import get_settings
from tasks.feeds import FEED_NAMES

# Offline machines: telemetry look-ups fail and cost seconds at every start; the embedded
# Prefect API migrates its database on first use, which can exceed the default 20 s.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Plan-Do-Check-Act orchestration of credit-product marketing campaigns.",
)
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
campaign_app = typer.Typer(no_args_is_help=True, help="Campaign specs.")
app.add_typer(db_app, name="db")
app.add_typer(campaign_app, name="campaign")


def _ready_engine():
    """The configured database, migrated to the current schema (cheap when it already is)."""
    url = get_settings().database_url
    upgrade(url)
    return make_engine(url)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema (Alembic)."""
    url = get_settings().database_url
    upgrade(url)
    typer.echo(f"schema is current: {_display_url(url)}")


@app.command("import")
def import_command(
    feed: Annotated[str, typer.Argument(help=f"One of: {', '.join(FEED_NAMES)}.")],
    file: Annotated[Path, typer.Argument(help="The CSV file.")],
) -> None:
    """Load a feed; bad rows go to quarantine with file, line, field and reason."""
    from tasks.importing import import_feed
    from tasks.uci import import_uci_bank

    if feed not in FEED_NAMES:
        raise UserError(f"unknown feed {feed!r}; expected one of {', '.join(FEED_NAMES)}")
    settings = get_settings()
    engine = _ready_engine()
    with engine.connect() as conn:
        if feed == "uci-bank":
            result = import_uci_bank(conn, file, chunk_rows=settings.import_chunk_rows)
        else:
            result = import_feed(
                conn,
                feed,
                file,
                chunk_rows=settings.import_chunk_rows,
                default_timezone=settings.timezone,
            )
    typer.echo(result.summary())
    for reason, count in sorted(result.reasons.items(), key=lambda item: -item[1])[:10]:
        typer.echo(f"  quarantined {count:>8}  {reason}", err=True)
    if result.rows and result.quarantined / result.rows > settings.quarantine_max_share:
        typer.echo(
            f"{file}: {result.quarantined / result.rows:.1%} of rows quarantined, above the "
            f"{settings.quarantine_max_share:.1%} data-quality limit; see the quarantine table",
            err=True,
        )
        raise typer.Exit(1)


@campaign_app.command("apply")
def campaign_apply(spec: Annotated[Path, typer.Argument(help="The campaign spec (YAML).")]) -> None:
    """Create or update a campaign from its spec; nothing is written when it is invalid."""
    from tasks.campaigns import apply_spec, load_spec

    parsed = load_spec(spec)
    engine = _ready_engine()
    with engine.begin() as conn:
        outcome = apply_spec(conn, parsed)
    typer.echo(f"campaign {parsed.id}: {outcome}")


@app.command()
def demo(
    customers: Annotated[int, typer.Option(min=100, help="Synthetic customers.")] = 50_000,
    weeks: Annotated[int, typer.Option(min=1, max=52, help="Weeks of history.")] = 8,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same data.")] = 7,
) -> None:
    """Fresh demo database with synthetic history, loaded through the feed importers."""
    from flows.demo import demo_flow

    summary = demo_flow(customers=customers, weeks=weeks, seed=seed)
    typer.echo(summary)


def _display_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2.

    Typer's standalone mode already turns usage errors into a message and exit code 2.
    """
    try:
        app()
    except UserError as error:
        print(f"pdca: error: {error}", file=sys.stderr)
        sys.exit(2)
    except OperationalError as error:
        url = _display_url(get_settings().database_url)
        reason = str(error.orig).strip().splitlines()[0]
        print(f"pdca: error: database {url}: {reason}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
