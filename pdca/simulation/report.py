"""The season's HTML report: the verdict for people, with a chart per headline KPI.

One self-contained page (inline CSS and SVG, no scripts): the truths and when the loop
found them, the regret, the invariants, a small chart per KPI of its actual against its
target week by week, and every action with the week it was proposed and its decision.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from jinja2 import Environment
from markupsafe import Markup

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Season simulation: {{ v.world }} world, {{ v.weeks }} weeks</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem;color:#1f2933;max-width:1100px}
h1{font-size:1.5rem} h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border-bottom:1px solid #e4e7eb;padding:.35rem .5rem;text-align:left;vertical-align:top}
.ok{color:#0b7a3e;font-weight:600} .no{color:#b42318;font-weight:600}
.cards{display:grid;grid-template-columns:repeat(3,1fr);gap:1rem}
.card{border:1px solid #e4e7eb;border-radius:6px;padding:.6rem}
.card h3{font-size:.9rem;margin:0 0 .3rem} .legend{font-size:.75rem;color:#52606d}
</style></head><body>
<h1>Season simulation — {{ v.world }} world, {{ v.weeks }} weeks,
{{ "{:,}".format(v.customers) }} customers (seed {{ v.seed }}, approvals {{ v.approve }})</h1>
<h2>Truths</h2>
<table><tr><th>truth</th><th>scope</th><th>holds from week</th><th>found</th>
<th>week found</th><th>action</th></tr>
{% for t in v.truths %}<tr><td>{{ t.name }}</td><td>{{ t.scope }}</td><td>{{ t.from_week }}</td>
<td class="{{ 'ok' if t.found else 'no' }}">{{ 'found' if t.found else 'not found' }}</td>
<td>{{ t.week_found or '—' }}</td><td>{{ t.action_id or '—' }}</td></tr>{% endfor %}
</table>
<h2>Regret against an oracle</h2>
<p>Expected applications {{ v.regret.applications_expected }}; an oracle that knew the
truths from day one: {{ v.regret.oracle_applications }}; lost
<b>{{ v.regret.applications_lost }}</b>
{% if v.regret.share_lost is not none %}
({{ "%.1f"|format(100 * v.regret.share_lost) }} %){% endif %}.
{% if v.regret.net_return_lost is not none %}Expected net return
{{ "{:,.0f}".format(v.regret.net_return_expected) }} against the oracle's
{{ "{:,.0f}".format(v.regret.oracle_net_return) }}: lost
<b>{{ "{:,.0f}".format(v.regret.net_return_lost) }}</b>.{% endif %}</p>
<h2>Invariants</h2>
<table><tr><th>invariant</th><th>held</th><th>checked</th><th>violations</th></tr>
{% for i in v.invariants %}<tr><td>{{ i.name }}</td>
<td class="{{ 'ok' if i.held else 'no' }}">{{ 'held' if i.held else 'broken' }}</td>
<td>{{ "{:,}".format(i.checked) }}</td><td>{{ i.violations }}</td></tr>{% endfor %}
</table>
<h2>KPIs week by week</h2>
<p class="legend">solid: actual; dashed: target</p>
<div class="cards">{% for name, svg in charts %}<div class="card"><h3>{{ name }}</h3>{{ svg }}</div>
{% endfor %}</div>
<h2>Actions</h2>
<table><tr><th>id</th><th>week proposed</th><th>type</th><th>scope</th><th>status</th>
<th>decided by</th></tr>
{% for a in v.actions %}<tr><td>{{ a.action_id }}</td><td>{{ a.week_proposed or '—' }}</td>
<td>{{ a.type }}</td><td>{{ a.scope|scope }}</td><td>{{ a.status }}</td>
<td>{{ a.decided_by or '—' }}</td></tr>{% endfor %}
</table>
</body></html>
"""


def chart(points: list[tuple[int, float | None, float | None]]) -> str:
    """A small SVG of actual (solid) and target (dashed) over the weeks."""
    width, height, pad = 300, 110, 8
    values = [v for _, a, t in points for v in (a, t) if v is not None]
    if not values:
        return "<p class='legend'>no data</p>"
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    last = max(week for week, _, _ in points) or 1
    first = min(week for week, _, _ in points)

    def xy(week: int, value: float) -> str:
        x = pad + (week - first) / max(last - first, 1) * (width - 2 * pad)
        y = height - pad - (value - low) / span * (height - 2 * pad)
        return f"{x:.1f},{y:.1f}"

    def line(index: int, dash: str) -> str:
        coords = " ".join(xy(p[0], p[index]) for p in points if p[index] is not None)
        return f'<polyline fill="none" stroke="#2563eb" stroke-width="2" {dash} points="{coords}"/>'

    actual, target = line(1, ""), line(2, 'stroke-dasharray="4 3" stroke-opacity="0.6"')
    high_text, low_text = escape(figure(high)), escape(figure(low))
    return (
        f'<svg viewBox="0 0 {width} {height}" width="100%" role="img">{actual}{target}'
        f'<text x="{pad}" y="12" font-size="10">{high_text}</text>'
        f'<text x="{pad}" y="{height - 1}" font-size="10">{low_text}</text></svg>'
    )


def figure(value: float) -> str:
    """An axis figure: whole numbers with separators from 100 up, else 3 significant digits."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def scope_text(scope: dict[str, Any]) -> str:
    """`channel=app_push`, or `campaign` for the campaign as a whole."""
    return ", ".join(f"{key}={value}" for key, value in scope.items() if value) or "campaign"


def write_report(verdict: dict[str, Any], path: Path) -> Path:
    """Write the report page to `path` and return it."""
    metrics: dict[str, list] = {}
    for week in verdict["kpis_by_week"]:
        for metric, kpi in week["kpis"].items():
            metrics.setdefault(metric, []).append((week["week"], kpi["actual"], kpi["target"]))
    charts = [(metric, Markup(chart(points))) for metric, points in metrics.items()]
    environment = Environment(autoescape=True)
    environment.filters["scope"] = scope_text
    html = environment.from_string(PAGE).render(v=verdict, charts=charts)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path
