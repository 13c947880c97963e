"""`pdca simulate`: the season run from the command line, its verdict printed.

Registered by `pdca.cli`; the body lives here so that the CLI module stays a list of
thin commands. Refuses (exit 2) a database that holds anything but an earlier demo or
simulation, unless --force, before Prefect starts.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from pdca.settings import get_settings


def simulate(
    weeks: Annotated[int, typer.Option(min=1, max=52, help="Weeks of the season.")] = 13,
    customers: Annotated[int, typer.Option(min=100, help="Customers of the world.")] = 50_000,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same world.")] = 7,
    world: Annotated[
        Path | None, typer.Option(help="A world file (YAML) of truths; default: a few clear ones.")
    ] = None,
    approve: Annotated[
        str, typer.Option(help="auto: approve every proposal; policy: the world file's manager.")
    ] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdict as JSON.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replace a database that holds more than a demo.")
    ] = False,
) -> None:
    """The whole loop over a simulated season against a world with a hidden truth; prints
    the verdict (truths found and when, regret, invariants held) and the report's path."""
    from pdca.simulation.season import SeasonOptions, refuse_foreign_database
    from pdca.simulation.truths import load_world

    options = SeasonOptions(weeks, customers, seed, world, approve, force)
    if world is not None:
        load_world(world)  # a bad world file is refused before anything is replaced
    refuse_foreign_database(get_settings().database_url, force)  # before Prefect starts
    from pdca.simulation.report import write_report
    from pdca.simulation.season import run_season
    from pdca.simulation.verdict import verdict

    season = run_season(options, progress=lambda line: print(line, file=sys.stderr, flush=True))
    path = season.folder / "season-report.html"
    document = verdict(season, report=str(path.resolve()))
    write_report(document, path)
    if as_json:
        sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")
    else:
        typer.echo(summary(document))
    if not all(invariant["held"] for invariant in document["invariants"]):
        raise typer.Exit(1)


def summary(document: dict[str, Any]) -> str:
    """The verdict in a few lines."""
    lines = [f"season of {document['weeks']} weeks on the {document['world']} world:"]
    for truth in document["truths"]:
        when = f"found in week {truth['week_found']}" if truth["found"] else "not found"
        lines.append(f"  truth  {truth['name']}: {when}")
    regret = document["regret"]
    lines.append(
        f"  regret {regret['applications_lost']} of {regret['oracle_applications']} "
        f"expected applications and {regret.get('net_return_lost', 0):,.0f} of net return "
        "lost against the oracle"
    )
    for invariant in document["invariants"]:
        state = "held" if invariant["held"] else f"BROKEN ({invariant['violations']})"
        lines.append(f"  invariant {invariant['name']}: {state}, {invariant['checked']:,} checked")
    lines.append(f"report: {document['report']}")
    return "\n".join(lines)
