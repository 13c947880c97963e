"""The Data Docs views with templates compiled once per process write GE's own pages."""

from __future__ import annotations

import re

from great_expectations.render.renderer import ExpectationSuitePageRenderer
from great_expectations.render.view import DefaultJinjaPageView

from tasks.check.docs_views import PageView
from tasks.data.quality import load_suite

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_STAMP = re.compile(r"\d{8}T\d{6}\.\d+Z")


def page(view) -> str:
    """The `touches` suite's page (a fresh document each time: rendering changes it),
    without the element ids and time stamps that differ from one render to the next."""
    html = view.render(ExpectationSuitePageRenderer().render(load_suite("touches")))
    return _STAMP.sub("T", _UUID.sub("U", html))


def test_the_same_page_as_great_expectations_own_view() -> None:
    stock = page(DefaultJinjaPageView())
    assert "values must belong to this set" in stock
    assert page(PageView()) == stock
    assert page(PageView()) == stock


def compiled_templates(view) -> list[str]:
    """The templates `view` compiles while it renders the page."""
    compiled: list[str] = []
    compile_source = view.env.compile

    def counting(source, name=None, filename=None, raw=False, defer_init=False):
        compiled.append(name)
        return compile_source(source, name, filename, raw, defer_init)

    view.env.compile = counting
    page(view)
    return compiled


def test_a_second_view_compiles_no_template() -> None:
    page(PageView())
    assert compiled_templates(PageView()) == []
    assert compiled_templates(DefaultJinjaPageView())  # GE's own compiles them every time
