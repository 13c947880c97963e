"""The weekly review's charts: real PNG bytes of the stated size, whatever the data."""

from __future__ import annotations

import base64
import io
import math
from dataclasses import replace

import pandas as pd
import pytest
from PIL import Image

from tasks.check.result import Anomaly
from tasks.review.charts import (
    CHANNEL_SIZE,
    DPI,
    FUNNEL_SIZE,
    TREND_SIZE,
    channel_chart,
    chart,
    funnel_chart,
    trend_chart,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

STAGES = [
    {"label": "touches", "count": 10_000, "rate": None},
    {"label": "delivered", "count": 9_000, "rate": 0.9},
    {"label": "responded", "count": 900, "rate": 0.1},
    {"label": "applications", "count": 90, "rate": 0.01},
    {"label": "approved", "count": 45, "rate": 0.5},
    {"label": "disbursements", "count": 0, "rate": 0.0},
]
WEEKS = pd.DataFrame(
    {
        "week": [f"2026-W{n:02d}" for n in range(3, 13)],
        "touches": [1000 + 10 * n for n in range(10)],
        "application_rate": [0.02] * 9 + [0.08],
    }
)
ANOMALY = Anomaly(metric="application_rate", week="2026-W12", scope={}, z=9.0)


def decoded(png: bytes) -> Image.Image:
    assert png.startswith(PNG_SIGNATURE), "not a PNG"
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


def pixels(size: tuple[float, float]) -> tuple[int, int]:
    return round(size[0] * DPI), round(size[1] * DPI)


class TestFunnelChart:
    def test_png_of_the_stated_size(self) -> None:
        image = decoded(funnel_chart(STAGES, "Funnel 2026-W12"))
        assert image.format == "PNG"
        assert image.size == pixels(FUNNEL_SIZE) == (800, 360)

    def test_empty_and_missing_counts(self) -> None:
        stages = [{"label": "touches", "count": 0, "rate": None}, {"label": "x", "count": None}]
        assert decoded(funnel_chart(stages, "empty")).size == pixels(FUNNEL_SIZE)


class TestTrendChart:
    def test_png_of_the_stated_size_with_an_anomaly(self) -> None:
        png = trend_chart(WEEKS, [ANOMALY], "Trend", period_weeks=["2026-W12"])
        assert decoded(png).size == pixels(TREND_SIZE) == (1000, 560)

    def test_the_anomaly_ring_is_drawn(self) -> None:
        """The same data with and without the anomaly differ only by the red ring."""
        plain = decoded(trend_chart(WEEKS, [], "Trend")).convert("RGB")
        ringed = decoded(trend_chart(WEEKS, [ANOMALY], "Trend")).convert("RGB")
        red = (0xCF, 0x22, 0x2E)

        def reds(image: Image.Image) -> int:
            near = [
                all(abs(a - b) < 40 for a, b in zip(pixel, red, strict=True))
                for pixel in image.getdata()
            ]
            return sum(near)

        assert reds(ringed) > reds(plain) + 20

    def test_a_channel_anomaly_is_not_ringed_on_the_campaign_total(self) -> None:
        channel = replace(ANOMALY, scope={"channel": "sms"})
        assert trend_chart(WEEKS, [channel], "Trend") == trend_chart(WEEKS, [], "Trend")

    @pytest.mark.parametrize(
        "weeks",
        [
            pd.DataFrame({"week": []}),
            pd.DataFrame({"week": ["2026-W12"], "touches": [math.nan]}),
        ],
        ids=["no weeks", "no values"],
    )
    def test_nothing_to_draw_still_draws(self, weeks: pd.DataFrame) -> None:
        assert decoded(trend_chart(weeks, [], "Trend")).size == pixels(TREND_SIZE)


class TestChannelChart:
    def test_png_of_the_stated_size(self) -> None:
        channels = [
            {"channel": "sms", "cac": 120.5, "roi": -0.2},
            {"channel": "phone", "cac": None, "roi": 1.5},
            {"channel": "im", "cac": math.nan, "roi": None},
        ]
        assert decoded(channel_chart(channels, "Channels")).size == pixels(CHANNEL_SIZE)

    def test_no_channels(self) -> None:
        assert decoded(channel_chart([], "Channels")).size == pixels(CHANNEL_SIZE)


class TestTitles:
    @pytest.mark.parametrize(
        "title", ["$5 off $10", "<script>alert(1)</script>", "Crédit agricole – 50%"]
    )
    def test_any_campaign_name_draws(self, title: str) -> None:
        """A `$` would be mathematics to matplotlib: titles are drawn as plain text."""
        assert decoded(funnel_chart(STAGES, title)).size == pixels(FUNNEL_SIZE)


class TestChart:
    def test_data_uri_decodes_to_the_png(self) -> None:
        png = funnel_chart(STAGES, "Funnel")
        item = chart("funnel-demo", "Funnel", png, FUNNEL_SIZE)
        assert (item.width, item.height) == (800, 360)
        prefix = "data:image/png;base64,"
        assert item.data_uri().startswith(prefix)
        assert base64.b64decode(item.data_uri()[len(prefix) :]) == png

    def test_same_data_same_bytes(self) -> None:
        """Deterministic output: a rerun of the review draws the same images."""
        assert funnel_chart(STAGES, "Funnel") == funnel_chart(STAGES, "Funnel")
