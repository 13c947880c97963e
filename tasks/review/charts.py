"""The weekly review's charts, drawn with matplotlib's Agg renderer as PNG bytes.

Each chart is a standalone `Figure` drawn on its own Agg canvas, never through pyplot:
pyplot keeps global state and picks a GUI backend when one is around, while a flow may
draw from several threads on a headless worker. The PNG bytes go into the report twice —
as `data:` URIs in the HTML file (so it stands alone) and as inline `cid:` parts of the
e-mail (so mail clients show them with no external link) — so a chart is only bytes
plus the name and title the report refers to it by.

Sizes are fixed (inches × `DPI`, no tight bounding box), so the report can state the
images' width and height and a test can check them.

Text is drawn in DejaVu Sans (matplotlib's own), falling back glyph by glyph to a CJK font
when one is installed (`.ci/system-packages.sh` installs Debian's `fonts-wqy-zenhei`):
Chinese titles, campaign names and labels then show as characters, not boxes. Labels are
said in the chart's locale (`tasks.common.i18n`).
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache, wraps
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd
from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from tasks.check.result import Anomaly
from tasks.common import formatting
from tasks.common.i18n import translator
from tasks.common.terms import term

DPI = 100
FUNNEL_SIZE = (8.0, 3.6)
TREND_SIZE = (10.0, 5.6)
CHANNEL_SIZE = (9.0, 3.6)
"""Figure sizes in inches: at `DPI`, 800×360, 1000×560 and 900×360 pixels."""

BLUE, RED, GREY, GREEN = "#0b3d91", "#cf222e", "#8c959f", "#1a7f37"

TREND_METRICS = (
    "touches",
    "reach_rate",
    "response_rate",
    "applications",
    "application_rate",
    "approval_rate",
)
"""The weekly metrics the check watches for anomalies, one panel each."""

LATIN_FONT = "DejaVu Sans"
CJK_FONT_FILES = (
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
)
"""Where Debian's CJK fonts are (fonts-wqy-zenhei, fonts-wqy-microhei, fonts-noto-cjk,
fonts-droid-fallback), the first found preferred."""
CJK_FAMILIES = (
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Noto Sans CJK SC",
    "Droid Sans Fallback",
)


@dataclass(frozen=True)
class Chart:
    """One chart of a report: `name` is unique in the report ([a-z0-9-], also its file and
    content-id stem), `title` its alternative text, `png` the image."""

    name: str
    title: str
    png: bytes
    width: int
    height: int

    def data_uri(self) -> str:
        """The image as a `data:` URI, for an HTML file that must stand alone."""
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


@lru_cache
def cjk_families() -> tuple[str, ...]:
    """The CJK-capable font families matplotlib can use here. A font installed after
    matplotlib built its font cache is not in it: the known files are added by path."""
    known = {entry.name for entry in font_manager.fontManager.ttflist}
    for path in CJK_FONT_FILES:
        if Path(path).exists():
            name = font_manager.FontProperties(fname=path).get_name()
            if name not in known:
                font_manager.fontManager.addfont(path)
                known.add(name)
    return tuple(name for name in CJK_FAMILIES if name in known)


def font_families() -> list[str]:
    """DejaVu Sans first (Latin text looks as it always has), then the CJK fonts found:
    matplotlib takes each glyph from the first family that has it."""
    return [LATIN_FONT, *cjk_families()]


@contextmanager
def _fonts() -> Iterator[None]:
    with matplotlib.rc_context({"font.family": font_families()}):
        yield


def _with_fonts(draw: Callable[..., bytes]) -> Callable[..., bytes]:
    """Draw (create the texts and render them) with `font_families`."""

    @wraps(draw)
    def drawn(*args: Any, **kwargs: Any) -> bytes:
        with _fonts():
            return draw(*args, **kwargs)

    return drawn


@_with_fonts
def funnel_chart(stages: Sequence[Mapping[str, Any]], title: str, locale: str = "en") -> bytes:
    """Horizontal bars of the funnel's counts, top stage first, each labelled with its count
    and its conversion from the stage before. A linear axis: a log axis makes 74
    disbursements look like half of 40,000 touches; the labels carry the small counts."""
    _ = translator(locale)
    fmt = formatting.Formatter(locale)
    figure = _figure(FUNNEL_SIZE)
    axes = figure.add_subplot()
    labels = [term(stage["label"], locale) for stage in stages]
    counts = [float(stage["count"] or 0) for stage in stages]
    positions = list(range(len(stages)))[::-1]
    axes.barh(positions, counts, color=BLUE, height=0.6)
    axes.set_yticks(positions, labels)
    top = max([*counts, 10.0])
    axes.set_xlim(0, top * 1.6)  # room for the labels
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: formatting.count(value)))
    for position, stage, count in zip(positions, stages, counts, strict=True):
        rate = stage.get("rate")
        text = fmt.count(count)
        if _finite(rate):
            text += "  " + _("(%(rate)s of previous)") % {"rate": fmt.percent(rate)}
        axes.text(count + top * 0.01, position, text, va="center", fontsize=9)
    axes.set_xlabel(_("count in the period"))
    axes.set_title(_literal_text(title), fontsize=11, loc="left")
    axes.spines[["top", "right"]].set_visible(False)
    figure.subplots_adjust(left=0.16, right=0.97, top=0.88, bottom=0.16)
    return _png(figure)


@_with_fonts
def trend_chart(
    weeks: pd.DataFrame,
    anomalies: Sequence[Anomaly],
    title: str,
    *,
    period_weeks: Sequence[str] = (),
    metrics: Sequence[str] = TREND_METRICS,
    locale: str = "en",
) -> bytes:
    """One panel per metric: its weekly values (trailing weeks, then the period's weeks,
    shaded), with the check's anomalies of the campaign total ringed in red."""
    _ = translator(locale)
    figure = _figure(TREND_SIZE)
    columns = 3
    rows = math.ceil(len(metrics) / columns)
    names = [str(week) for week in weeks["week"]] if not weeks.empty else []
    flagged = {(item.metric, item.week): item for item in anomalies if not any(item.scope.values())}
    for index, metric in enumerate(metrics):
        axes = figure.add_subplot(rows, columns, index + 1)
        column = weeks[metric] if metric in weeks.columns else [math.nan] * len(names)
        values = [_number(value) for value in column]
        positions = list(range(len(names)))
        for position, name in enumerate(names):
            if name in period_weeks:
                axes.axvspan(position - 0.5, position + 0.5, color="#eaeef2", zorder=0)
        axes.plot(positions, values, color=BLUE, marker="o", markersize=3, linewidth=1.5)
        marked = [
            (position, values[position])
            for position, name in enumerate(names)
            if (metric, name) in flagged and _finite(values[position])
        ]
        if marked:
            axes.scatter(
                [x for x, _ in marked],
                [y for _, y in marked],
                s=90,
                facecolors="none",
                edgecolors=RED,
                linewidths=2,
                zorder=3,
                label=_("anomaly"),
            )
            axes.legend(loc="best", fontsize=7, frameon=False)
        axes.set_title(term(metric, locale), fontsize=9, loc="left")
        axes.yaxis.set_major_formatter(_unit_formatter(metric, locale))
        axes.set_xticks(positions, [name[-3:] for name in names], fontsize=7)
        axes.tick_params(axis="y", labelsize=7)
        axes.spines[["top", "right"]].set_visible(False)
        if not names:
            axes.text(0.5, 0.5, _("no weeks"), ha="center", va="center", transform=axes.transAxes)
    figure.suptitle(_literal_text(title), fontsize=11, x=0.01, ha="left")
    figure.subplots_adjust(left=0.06, right=0.98, top=0.88, bottom=0.08, hspace=0.45, wspace=0.25)
    return _png(figure)


@_with_fonts
def channel_chart(channels: Sequence[Mapping[str, Any]], title: str, locale: str = "en") -> bytes:
    """CAC (cost per disbursement) and ROI per channel, side by side, axis and bar labels in
    the same unit (money; ROI as a multiple); a channel whose figure cannot be known (no
    touches, no disbursement, no cost) gets a grey '—'."""
    _ = translator(locale)
    figure = _figure(CHANNEL_SIZE)
    names = [str(row["channel"]) for row in channels]
    for index, (metric, label) in enumerate((("cac", _("CAC")), ("roi", _("ROI")))):
        axes = figure.add_subplot(1, 2, index + 1)
        values = [
            _number(row.get(metric)) if _number(row.get("touches", 1)) else math.nan
            for row in channels
        ]
        heights = [value if _finite(value) else 0.0 for value in values]
        colours = [
            GREY if not _finite(value) else (RED if metric == "roi" and value < 0 else BLUE)
            for value in values
        ]
        axes.bar(range(len(names)), heights, color=colours)
        axes.set_xticks(range(len(names)), names, fontsize=8)
        axes.axhline(0, color=GREY, linewidth=0.8)
        for position, value in enumerate(values):
            text = "—" if not _finite(value) else formatting.metric(metric, value, locale=locale)
            axes.text(position, heights[position], text, ha="center", va="bottom", fontsize=8)
        axes.yaxis.set_major_formatter(_unit_formatter(metric, locale))
        axes.set_title(label, fontsize=10, loc="left")
        axes.tick_params(axis="y", labelsize=7)
        axes.spines[["top", "right"]].set_visible(False)
        if not names:
            axes.text(
                0.5, 0.5, _("no channels"), ha="center", va="center", transform=axes.transAxes
            )
    figure.suptitle(_literal_text(title), fontsize=11, x=0.01, ha="left")
    figure.subplots_adjust(left=0.08, right=0.98, top=0.82, bottom=0.12, wspace=0.25)
    return _png(figure)


def _unit_formatter(metric: str, locale: str = "en") -> FuncFormatter:
    """Axis ticks in the metric's unit (`tasks.common.formatting`), as its labels are."""
    return FuncFormatter(lambda value, _: formatting.metric(metric, value, locale=locale))


def chart(name: str, title: str, png: bytes, size: tuple[float, float]) -> Chart:
    """A `Chart` for drawn bytes of a figure of `size` inches."""
    return Chart(name, title, png, round(size[0] * DPI), round(size[1] * DPI))


# --- drawing --------------------------------------------------------------------------


def _figure(size: tuple[float, float]) -> Figure:
    figure = Figure(figsize=size, dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Figure) -> bytes:
    """The figure as PNG bytes at its own size (no tight box: the size stays known)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _literal_text(text: str) -> str:
    """`text` as literal characters: matplotlib reads `$…$` as mathematics."""
    return text.replace("$", r"\$")


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)
