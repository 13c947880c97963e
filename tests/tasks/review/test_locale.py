"""Chinese and English: the catalogs, figures by locale, the review, charts, SOP and CLI.

The review is the hand-built world of `test_review` (its fixtures imported), rendered in
zh-CN: what a Chinese manager reads must hold no fixed English text of the catalog. The
data itself (campaign names, rationales the act stage wrote, channel names) is data: the
tests give it Chinese words, so that what is left in English can only be fixed text.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from datetime import date, datetime
from typing import ClassVar

import pytest
from sqlalchemy import Engine

from pdca.errors import SpecError
from pdca.settings import Settings, get_settings
from tasks.check.findings import DIAGNOSES
from tasks.common import formatting, i18n
from tasks.common.campaigns import parse_spec
from tasks.common.terms import TERMS, scope_words, term
from tasks.review.artifacts import summary_markdown
from tasks.review.charts import channel_chart, font_families, funnel_chart, trend_chart
from tasks.review.locales import recipients_by_locale
from tasks.review.review import (
    Review,
    ReviewedCampaign,
    draw_campaign_charts,
    measured_lines,
    render_review,
    trend_week_names,
)
from tests.tasks.review.locale_scan import english_left, page_text
from tests.tasks.review.test_review import PERIOD, gathered, world  # noqa: F401  (fixture)

ZH = "zh-CN"
CHINESE_NAME = "小微企业春季信贷"


# --- catalogs ---------------------------------------------------------------------------------


class TestCatalog:
    def test_every_message_of_the_sources_is_translated(self) -> None:
        assert i18n.untranslated(ZH) == []

    def test_the_template_lists_every_message(self) -> None:
        """`reports/locale/pdca.pot` has the messages `python -m tasks.common.i18n` finds now
        (the references to lines may lag: they are only hints)."""
        text = (i18n.LOCALE_DIR / "pdca.pot").read_text(encoding="utf-8")
        listed = {entry["msgid"] for entry in i18n.po_entries(text) if entry.get("msgid")}
        assert listed == set(i18n.all_messages())

    def test_no_compiled_catalog_is_kept(self) -> None:
        assert not list(i18n.LOCALE_DIR.rglob("*.mo"))

    def test_po_reader(self, tmp_path) -> None:
        path = tmp_path / "x.po"
        path.write_text(
            'msgid ""\nmsgstr "Language: zh_CN\\n"\n\n'
            '#: a.py:1\nmsgid "a \\"quoted\\" "\n"line\\n"\nmsgstr "引号"\n"换行"\n\n'
            '#, fuzzy\nmsgid "fuzzy"\nmsgstr "不用"\n\n'
            'msgid "one file"\nmsgid_plural "%(n)s files"\nmsgstr[0] "%(n)s 个文件"\n\n'
            'msgid "untranslated"\nmsgstr ""\n',
            encoding="utf-8",
        )
        catalog = i18n.read_po(path)
        assert catalog.gettext('a "quoted" line\n') == "引号换行"
        assert catalog.gettext("fuzzy") == "fuzzy"
        assert catalog.gettext("untranslated") == "untranslated"
        assert catalog.ngettext("one file", "%(n)s files", 3) == "%(n)s 个文件"
        assert catalog.ngettext("x", "xs", 2) == "xs"

    def test_terms_translate_and_stay_as_they_are_in_english(self) -> None:
        assert term("disbursements", ZH) == "放款笔数"
        assert term("overdue_rate_30", ZH) == "30天+逾期率"
        assert term("proposed", ZH) == "待审批"
        assert term("holdout", ZH) == "留出组"
        assert term("sms", ZH) == "sms", "a channel is data"
        assert all(term(value, "en") == value for value in TERMS)
        assert scope_words("channel=sms, segment=sme", ZH) == "渠道=sms, 客群=sme"
        assert scope_words("campaign", "en") == "campaign"

    def test_an_unknown_locale_is_an_error(self) -> None:
        with pytest.raises(ValueError, match="zh-CN"):
            i18n.translations("fr")
        with pytest.raises(ValueError, match="zh-CN"):
            formatting.money(1.0, "CNY", "fr")


# --- figures ----------------------------------------------------------------------------------


class TestFigures:
    def test_english_is_as_it_was(self) -> None:
        assert formatting.money(1_681_234.4, "CNY") == "1,681,234 CNY"
        assert formatting.percent(0.0523) == "5.2 %"
        assert formatting.per_mille(3.421) == "3.42 ‰"
        assert formatting.multiple(31.47) == "31.5×"
        assert formatting.count(74.0) == "74"
        assert formatting.signed_percent(-0.03) == "−3.0 %"
        assert formatting.number(None) == "n/a"
        assert formatting.day(date(2026, 3, 23)) == "2026-03-23"

    def test_chinese(self) -> None:
        fmt = formatting.Formatter(ZH)
        assert fmt.money(1_681_234.4, "CNY") == "¥1,681,234"
        assert fmt.money(-12.5, "CNY") == "-¥12.50"
        assert fmt.money(500.0, "USD") == "500 USD"
        assert fmt.percent(0.0523) == "5.2%"
        assert fmt.per_mille(3.421) == "3.42‰"
        assert fmt.multiple(31.47) == "31.5×", "ROI stays a multiple"
        assert fmt.count(74.0) == "74"
        assert fmt.metric("complaint_rate", 0.5) == "0.50‰"
        assert fmt.metric("approval_rate", 0.5) == "50.0%"
        assert fmt.signed_percent(0.125) == "+12.5%"
        assert fmt.number(float("nan")) == "暂无"
        assert fmt.day(date(2026, 3, 23)) == "2026年3月23日"
        assert fmt.moment(datetime(2026, 3, 23, 9, 5)) == "2026年3月23日 09:05"
        assert fmt.MONEY is formatting.MONEY


# --- settings and spec ------------------------------------------------------------------------


class TestLocaleSetting:
    def test_default_is_english(self, monkeypatch) -> None:
        monkeypatch.delenv("PDCA_LOCALE", raising=False)
        assert Settings().locale == "en"

    def test_pdca_locale(self, monkeypatch) -> None:
        monkeypatch.setenv("PDCA_LOCALE", "zh-CN")
        assert Settings().locale == "zh-CN"
        monkeypatch.setenv("PDCA_LOCALE", "zh")
        with pytest.raises(ValueError, match="zh-CN"):
            Settings()

    def test_spec_locale_is_validated_with_its_field_named(self) -> None:
        import yaml

        from tests.scenario import spec_dict

        assert parse_spec(yaml.safe_dump(spec_dict(locale="zh-CN")), "s.yaml").locale == ZH
        assert parse_spec(yaml.safe_dump(spec_dict()), "s.yaml").locale is None
        with pytest.raises(SpecError, match=r"locale: Input should be 'zh-CN' or 'en'"):
            parse_spec(yaml.safe_dump(spec_dict(locale="zh_CN")), "s.yaml")


class TestRecipientsByLocale:
    def campaign(self, campaign_id: str, recipients: tuple[str, ...], locale: str | None):
        day = date(2026, 3, 2)
        return ReviewedCampaign(campaign_id, campaign_id, day, day, "UTC", recipients, 0.03, locale)

    def test_each_list_in_its_campaigns_locale(self) -> None:
        campaigns = [
            self.campaign("a", ("ops@x.com", "Risk@x.com"), None),
            self.campaign("b", ("risk@x.com", "cn@x.com"), "zh-CN"),
            self.campaign("c", ("Zhang@x.com",), "zh-CN"),
        ]
        assert recipients_by_locale(campaigns, "en") == {
            "en": ["ops@x.com", "Risk@x.com"],
            "zh-CN": ["cn@x.com", "Zhang@x.com"],
        }, "risk@ follows lists in both: the setting's locale wins"
        assert recipients_by_locale(campaigns, "zh-CN") == {
            "zh-CN": ["cn@x.com", "ops@x.com", "Risk@x.com", "Zhang@x.com"],
        }, "a list without a locale reads the setting's"
        campaigns[0] = replace(campaigns[0], locale="en")
        assert recipients_by_locale(campaigns, "zh-CN") == {
            "en": ["ops@x.com"],
            "zh-CN": ["cn@x.com", "Risk@x.com", "Zhang@x.com"],
        }


# --- the review in Chinese --------------------------------------------------------------------


def chinese_data(review: Review) -> Review:
    """The review with its data in Chinese words (names, the act stage's rationales, SOP
    entries, the check's diagnosis as the check stage writes it), so that any English left
    in the rendering is fixed text."""
    parts = []
    for part in review.campaigns:
        part = replace(part, campaign=replace(part.campaign, name=CHINESE_NAME))
        part.actions = [
            {**action, "rationale": "渠道回报偏低", "expected_impact": "每周多放款约4笔"}
            | ({"comment": "同意"} if action.get("comment") else {})
            for action in part.actions
        ]
        part.sop_changes = [{**sop, "changes": ["第2版：调整预算分配"]} for sop in part.sop_changes]
        if part.bottleneck and part.bottleneck.stage:
            diagnosis = " ".join(DIAGNOSES[part.bottleneck.stage].split())
            part.bottleneck = replace(part.bottleneck, diagnosis=diagnosis)
        part.data_quality = {
            **part.data_quality,
            "suites_failed": [
                {**suite, "failed": "拒绝原因不得为空"}
                for suite in part.data_quality.get("suites_failed", [])
            ],
        }
        part.reject_reasons = [replace(reason, reason="评分过低") for reason in part.reject_reasons]
        parts.append(part)
    return replace(review, campaigns=parts, locale=ZH)


@pytest.fixture
def review(engine: Engine, world) -> Review:  # noqa: F811  (world: the imported fixture)
    with engine.connect() as conn:
        return Review(
            PERIOD,
            gathered(conn),
            trend_week_names(PERIOD, 8),
            datetime(2026, 3, 23, 9, 30),
            currency="CNY",
        )


class TestChineseReview:
    def test_no_fixed_english_is_left_in_the_page(self, review: Review) -> None:
        chinese = chinese_data(review)
        charts = [
            item for part in chinese.campaigns for item in draw_campaign_charts(part, PERIOD, ZH)
        ]
        measured = measured_lines(PERIOD, Settings(), ZH)
        page = render_review(
            chinese, charts, {c.name: c.data_uri() for c in charts}, measured=measured
        )
        text = page_text(page)
        assert english_left(text) == []
        assert '<html lang="zh-CN">' in page
        for words in ("经营周报 2026-W12", "待您决策", "异常事项", "业务", "风险", "计量口径"):
            assert words in text, words
        assert "¥" in text and "2026年3月16日至2026年3月22日" in text

    def test_the_check_would_find_english(self, review: Review) -> None:
        """The scan is not blind: the same page in English is full of the catalog."""
        english = replace(chinese_data(review), locale="en")
        page = render_review(english, [], {}, measured=measured_lines(PERIOD, Settings()))
        left = english_left(page_text(page))
        assert {
            "Decisions waiting for you",
            "Target",
            "Exceptions, by what they cost or risk",
        } <= set(left)

    def test_text_part_and_artifact(self, review: Review, tmp_path) -> None:
        chinese = chinese_data(review)
        measured = measured_lines(PERIOD, Settings(), ZH)
        text = render_review(chinese, [], {}, measured=measured, template="weekly_review.txt.j2")
        decisions = chinese.summary().decisions
        assert decisions, "the world has a proposal waiting"
        for decision in decisions:  # commands to type, as the HTML's <code>
            assert decision.approve in text and decision.reject in text
            text = text.replace(decision.approve, "").replace(decision.reject, "")
        assert english_left(text) == []
        assert "经营概况" in text and "上周以来的变化" in text
        markdown = summary_markdown(chinese, tmp_path / "r.html")
        for decision in decisions:
            markdown = markdown.replace(decision.approve, "").replace(decision.reject, "")
        assert english_left(markdown.replace(str(tmp_path), "")) == []
        assert "# 经营周报 2026-W12" in markdown

    def test_english_is_unchanged_by_the_catalog(self, review: Review) -> None:
        page = render_review(review, [], {}, measured=measured_lines(PERIOD, Settings()))
        assert '<html lang="en">' in page
        assert "Decisions waiting for you" in page and "Weekly review 2026-W12" in page


# --- charts -----------------------------------------------------------------------------------


class TestChineseCharts:
    STAGES: ClassVar[list[dict]] = [
        {"label": "touches", "count": 1100, "rate": None},
        {"label": "delivered", "count": 980, "rate": 0.89},
    ]

    def draw_all(self, title: str, locale: str) -> None:
        import pandas as pd

        weeks = pd.DataFrame({"week": ["2026-W11", "2026-W12"], "touches": [10, 20]})
        funnel_chart(self.STAGES, title, locale)
        trend_chart(weeks, [], title, metrics=("touches",), locale=locale)
        channel_chart([{"channel": "短信", "cac": 12.0, "roi": 3.1, "touches": 5}], title, locale)

    def test_no_missing_glyph_with_chinese_titles(self) -> None:
        assert len(font_families()) > 1, "no CJK font: run .ci/system-packages.sh"
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # matplotlib warns "Glyph … missing from font(s)"
            self.draw_all(f"转化漏斗 2026-W12：{CHINESE_NAME}", ZH)

    def test_without_a_cjk_font_the_glyphs_would_be_missing(self, monkeypatch) -> None:
        """The check above can fail: with DejaVu Sans alone, Chinese is boxes and warned."""
        from tasks.review import charts

        monkeypatch.setattr(charts, "font_families", lambda: [charts.LATIN_FONT])
        with pytest.warns(UserWarning, match="missing from font"):
            funnel_chart(self.STAGES, f"转化漏斗：{CHINESE_NAME}", ZH)


# --- SOP, adjustment report, CLI --------------------------------------------------------------


class TestChineseSopAndCli:
    def test_sop_in_the_campaigns_locale(self) -> None:
        import yaml

        from tasks.act.sop import render_sop
        from tests.scenario import spec_dict

        spec = parse_spec(yaml.safe_dump(spec_dict(locale="zh-CN", name=CHINESE_NAME)), "s.yaml")
        body = render_sop(spec, [], 2, date(2026, 3, 23), [])
        assert body.startswith(f"# 标准作业流程：{CHINESE_NAME}")
        assert english_left(body.replace("`hold`", "")) == []
        english = parse_spec(yaml.safe_dump(spec_dict()), "s.yaml")
        assert render_sop(english, [], 2, date(2026, 3, 23), []).startswith(
            "# Standard operating procedure: SME spring test"
        )
        assert "标准作业流程" in render_sop(english, [], 2, date(2026, 3, 23), [], "zh-CN")

    def test_check_summary_in_pdca_locale(self, monkeypatch, capsys) -> None:
        from pdca.cli import _print_check
        from tests.tasks.review.test_review import CHECK

        monkeypatch.setenv("PDCA_LOCALE", "zh-CN")
        get_settings.cache_clear()
        try:
            _print_check(CHECK)
        finally:
            get_settings.cache_clear()
        out = capsys.readouterr().out
        assert out.startswith("检查 spring-test 2026-W12：不可信；触达 1,100，送达 980")
        assert "30天+逾期率" in out and "瓶颈：审批" in out
        assert english_left(out) == []

    def test_adjustment_report_in_the_campaigns_locale(self) -> None:
        """The act stage's report of a zh-CN campaign: fixed text in Chinese, the action's
        type and status translated, its rationale (data) as written."""
        import yaml

        from tasks.act.artifacts import adjustment_report_html
        from tasks.act.sop import SopRecord
        from tasks.act.types import StoredAction
        from tests.scenario import spec_dict
        from tests.tasks.review.test_review import CHECK

        spec = parse_spec(yaml.safe_dump(spec_dict(locale="zh-CN", name=CHINESE_NAME)), "s.yaml")
        actions = [
            StoredAction(
                1,
                "tighten_admission",
                {"segment": "sme"},
                {"min_credit_score": 620},
                "逾期率高于上限",
                "逾期率下降约0.8个百分点",
                "approved",
                "ops-lead",
                "2026-03-23T09:00:00",
                "同意",
            ),
            StoredAction(2, "hold", {}, {}, "数据不可信", "", "proposed"),
        ]
        first = SopRecord(
            spec.id,
            1,
            None,
            "# 第1版\n",
            [{"version": 1, "date": "2026-03-02", "action": "初始版本", "reason": "活动配置"}],
        )
        second = SopRecord(
            spec.id,
            2,
            None,
            "# 第2版\n",
            [
                *first.changelog,
                {"version": 2, "date": "2026-03-23", "action": "收紧准入", "reason": "逾期率高"},
            ],
        )
        neck = replace(CHECK.bottleneck, diagnosis=" ".join(DIAGNOSES["approval"].split()))
        check = replace(CHECK, bottleneck=neck)
        page = adjustment_report_html(spec, PERIOD, check, actions, [first, second], [second])
        text = page_text(page)
        assert english_left(text) == []
        assert f"调整报告：{CHINESE_NAME}" in text and "收紧准入" in text and "待审批" in text
        english = parse_spec(yaml.safe_dump(spec_dict()), "s.yaml")
        page = adjustment_report_html(english, PERIOD, check, actions, [first, second], [second])
        assert "Adjustment report: SME spring test" in page and "Awaiting a manager" in page
