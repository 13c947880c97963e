"""The report templates in `reports/`: one Jinja2 environment, rendering and writing.

HTML templates (`*.html.j2`) are autoescaped, so campaign names, reasons and comments are
shown as text whatever they contain; Markdown and text templates are not (there is no
markup to escape). Undefined variables raise instead of rendering empty: a report with a
silently blank cell would be a wrong report.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from sqlalchemy import Connection, delete, insert

from pdca.models import Report
from pdca.settings import PROJECT_ROOT
from tasks.common import formatting
from tasks.common.scopes import format_scope

TEMPLATES = PROJECT_ROOT / "reports"


@lru_cache
def environment() -> Environment:
    """The environment every report renders with (templates are read once); the filter
    `scope_text` writes a scope as every stage does (`tasks.common.scopes.format_scope`);
    `metric_text` and `fmt` write figures in their units (`tasks.common.formatting`)."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(enabled_extensions=("html.j2", "html")),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["scope_text"] = format_scope
    env.globals["metric_text"] = formatting.metric
    env.globals["fmt"] = formatting
    env.tests["integer_valued"] = _integer_valued
    return env


def _integer_valued(value: Any) -> bool:
    """A float that is a whole number (a count read back as `74.0`)."""
    return isinstance(value, float) and value.is_integer()


def render(template_name: str, **context: Any) -> str:
    """The named template of `reports/` rendered with `context`."""
    return environment().get_template(template_name).render(**context)


def write_report(path: Path, text: str) -> Path:
    """Write a rendered report (replacing an earlier rendering of the same report)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def record_report(
    conn: Connection, kind: str, campaign_id: str | None, period: str, path: Path
) -> None:
    """One `reports` row per (kind, campaign, period): a rerun replaces it."""
    match = (
        Report.campaign_id.is_(None) if campaign_id is None else Report.campaign_id == campaign_id
    )
    conn.execute(delete(Report).where(Report.kind == kind, Report.period == period, match))
    conn.execute(
        insert(Report).values(kind=kind, campaign_id=campaign_id, period=period, path=str(path))
    )
