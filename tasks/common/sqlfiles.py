"""The queries in `sql/`, rendered for one database dialect and ready to execute.

Each `sql/<name>.sql` holds one query, jaffle-shop style (STYLE.md). Where SQLite and
PostgreSQL differ, the file calls a Jinja macro from `sql/macros/dialect.sql` — the dbt
way — and `query(name, dialect)` renders it for that dialect, then wraps it in
`sqlalchemy.text()`; sqlfluff lints the PostgreSQL rendering of the same macros
(pyproject's `[tool.sqlfluff.templater.jinja]`). Besides the macros (`add_days`,
`to_date`), one function is available in templates:

- `ref("other")` inlines `sql/other.sql` as a parenthesised subquery (dbt's ephemeral
  model), so a rule such as attribution is written once and used by several queries;
  sqlfluff's dbt built-in renders it as the bare name, so lint sees a table. Keyword
  arguments become template variables of the inlined query (`ref("x", loans_only=true)`),
  for a narrowing the referencing query needs pushed down into it.

Values are never formatted into the SQL: they are `:name` bind parameters. A parameter
whose name ends in `_at` is bound as a timestamp and one ending in `_date` as a date, so
that SQLite receives exactly the text format it stores ('YYYY-MM-DD HH:MM:SS.ffffff',
'YYYY-MM-DD') and text comparison stays exact. SQL comments are stripped before `text()`:
the header comments name the parameters, and a `:name` in a comment would otherwise
become a bind parameter.
"""

from __future__ import annotations

import re
import threading
from functools import cache

import jinja2
from sqlalchemy import Date, DateTime, TextClause, bindparam, text
from sqlalchemy.types import TypeEngine

from pdca.settings import PROJECT_ROOT

SQL_DIR = PROJECT_ROOT / "sql"
MACROS = "macros/dialect.sql"
DIALECTS = ("sqlite", "postgresql")
"""The back ends the macros know, named as SQLAlchemy's `dialect.name` names them."""

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_COMMENT_OR_QUOTED = re.compile(r"('(?:[^']|'')*'|\"[^\"]*\")|--[^\n]*|/\*.*?\*/", re.DOTALL)
PARAMETER_TYPES: tuple[tuple[str, type[TypeEngine]], ...] = (("_at", DateTime), ("_date", Date))
"""Bind-parameter types by name suffix (the models' column suffixes mean the same)."""


def names() -> list[str]:
    """Every query in `sql/`, by name (the macros folder holds no query)."""
    return sorted(path.stem for path in SQL_DIR.glob("*.sql"))


@cache
def render(name: str, dialect: str, options: tuple[tuple[str, object], ...] = ()) -> str:
    """The SQL of `sql/<name>.sql` for `dialect`, macros expanded, comments stripped.

    `options` are template variables a referencing query passes through `ref` (e.g.
    `ref("attributed_events", loans_only=true)`), as sorted (name, value) pairs.
    """
    if not _NAME.match(name) or not (SQL_DIR / f"{name}.sql").is_file():
        raise ValueError(f"no query {name!r} in {SQL_DIR}")
    with _rendering:  # `ref` keeps a stack; flows may render from several threads
        template = _environment(dialect).get_template(f"{name}.sql")
        return strip_comments(template.render(dict(options)))


@cache
def query(name: str, dialect: str) -> TextClause:
    """`sql/<name>.sql` rendered for `dialect` as a `text()` clause with typed parameters."""
    clause = text(render(name, dialect))
    typed = [
        bindparam(parameter, type_=kind())
        for parameter in clause.compile().params
        for suffix, kind in PARAMETER_TYPES
        if parameter.endswith(suffix)
    ]
    return clause.bindparams(*typed) if typed else clause


def strip_comments(sql: str) -> str:
    """`sql` without `--` and `/* */` comments (quoted text kept as it is) or blank lines."""
    bare = _COMMENT_OR_QUOTED.sub(lambda match: match.group(1) or "", sql)
    return "\n".join(line.rstrip() for line in bare.splitlines() if line.strip()) + "\n"


@cache
def _environment(dialect: str) -> jinja2.Environment:
    """A Jinja environment whose globals are the dialect's macros and `ref`."""
    if dialect not in DIALECTS:
        raise ValueError(f"unknown SQL dialect {dialect!r}; expected one of {DIALECTS}")
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(SQL_DIR),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # SQL, not HTML; values are bind parameters, never rendered
        keep_trailing_newline=True,
    )
    environment.globals["dialect"] = dialect
    macros = environment.get_template(MACROS).make_module({"dialect": dialect})
    for attribute, value in vars(macros).items():
        if isinstance(value, jinja2.runtime.Macro):
            environment.globals[attribute] = value
    environment.globals["ref"] = lambda other, **options: _ref(other, dialect, **options)
    return environment


_rendering = threading.RLock()
_referencing: list[str] = []
"""The queries being rendered through `ref`, innermost last (to refuse a cycle)."""


def _ref(name: str, dialect: str, **options: object) -> str:
    """`sql/<name>.sql` as a parenthesised subquery, for `{{ ref("name", option=…) }}`."""
    if name in _referencing:
        raise ValueError(f"ref cycle: {' -> '.join([*_referencing, name])}")
    _referencing.append(name)
    try:
        return f"(\n{render(name, dialect, tuple(sorted(options.items())))})"
    finally:
        _referencing.pop()
