"""The report templates in `reports/`: one Jinja2 environment, rendering and writing.

HTML templates (`*.html.j2`) are autoescaped, so campaign names, reasons and comments are
shown as text whatever they contain; Markdown and text templates are not (there is no
markup to escape). Undefined variables raise instead of rendering empty: a report with a
silently blank cell would be a wrong report.

There is one environment per locale (`en`, `zh-CN`): its `_()`, `{% trans %}` and
`ngettext` translate by that locale's catalog (`tasks.common.i18n`, Jinja2's `i18n`
extension, new-style gettext so translations are escaped like any value), and its `fmt`
and `metric_text` write figures the locale's way (`tasks.common.formatting`).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from sqlalchemy import Connection, delete, insert

from pdca.models import Report
from pdca.settings import PROJECT_ROOT
from tasks.common import formatting, i18n
from tasks.common.scopes import format_scope

TEMPLATES = PROJECT_ROOT / "reports"


@lru_cache
def environment(locale: str = i18n.DEFAULT_LOCALE) -> Environment:
    """The environment the reports of `locale` render with (templates are read once); the
    filter `scope_text` writes a scope as every stage does (`tasks.common.scopes.format_scope`);
    `metric_text` and `fmt` write figures in their units (`tasks.common.formatting`), `term`
    translates a value the code names (a metric, a status, an action type: `terms.py`)."""
    from tasks.common.terms import diagnosis_words, scope_words, term

    formatter = formatting.Formatter(locale)
    env = Environment(
        extensions=["jinja2.ext.i18n"],
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(enabled_extensions=("html.j2", "html")),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.policies["ext.i18n.trimmed"] = True  # a message's line breaks are not part of it
    env.install_gettext_translations(i18n.translations(locale), newstyle=True)
    env.filters["scope_text"] = format_scope
    env.filters["term"] = lambda value: term(value, locale)
    env.filters["scope_words"] = lambda value: scope_words(str(value), locale)
    env.globals["diagnosis_words"] = lambda stage, text: diagnosis_words(stage, text, locale)
    env.filters["day"] = formatter.day
    env.globals["metric_text"] = formatter.metric
    env.globals["fmt"] = formatter
    env.globals["locale"] = locale
    env.globals["html_lang"] = "zh-CN" if locale == "zh-CN" else "en"
    env.tests["integer_valued"] = _integer_valued
    return env


def _integer_valued(value: Any) -> bool:
    """A float that is a whole number (a count read back as `74.0`)."""
    return isinstance(value, float) and value.is_integer()


def render(template_name: str, locale: str = i18n.DEFAULT_LOCALE, **context: Any) -> str:
    """The named template of `reports/` rendered with `context`, in `locale`."""
    return environment(locale).get_template(template_name).render(**context)


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
