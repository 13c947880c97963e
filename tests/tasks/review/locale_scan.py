"""What a Chinese reader would still see in English: the catalog's messages left untranslated
in a rendered page or text.

A message is found when one of its literal parts (the text between its `%(name)s`
placeholders, with at least two letters) appears in the text as words, unless that part is
kept in its own translation too (`ROI` in `投资回报 ROI`). Used by the unit tests on the
hand-built world and by the flow test on the demo's review.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from tasks.common.i18n import catalog_path, read_po

PLACEHOLDER = re.compile(r"%\(\w+\)s|%%")


class _Text(HTMLParser):
    """The text a reader sees: text nodes and images' alternative text, without <style>,
    <script> and <code> (commands to type, not words to read)."""

    SKIP = frozenset({"style", "script", "code", "title"})

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self.skipping += 1
        for name, value in attrs:
            if tag == "img" and name == "alt" and value:
                self.parts.append(value)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP and self.skipping:
            self.skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def page_text(html: str) -> str:
    """The words of an HTML page, as a reader sees them."""
    parser = _Text()
    parser.feed(html)
    return " ".join(" ".join(parser.parts).split())


def english_left(text: str, locale: str = "zh-CN") -> list[str]:
    """The catalog's messages some literal part of which still appears in `text`."""
    catalog = read_po(catalog_path(locale))
    text = " ".join(text.split())
    found = []
    for message, translation in catalog.messages.items():
        for part in PLACEHOLDER.split(message):
            words = " ".join(part.split()).strip(" .,:;()[]·-—…*`")
            if not re.search(r"[A-Za-z]{2}", words) or words in translation:
                continue
            if re.search(rf"(?<![A-Za-z0-9_-]){re.escape(words)}(?![A-Za-z0-9_-])", text):
                found.append(message)
                break
    return sorted(found)
