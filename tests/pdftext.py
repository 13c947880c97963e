"""The text of a PDF that headless Chromium printed, for tests that read it back.

Chromium (Skia) writes plain objects (no object streams, no encryption), Flate-compressed
content streams, and Type0 fonts with a ToUnicode CMap: enough to read each page's text
by following each page's fonts to their CMaps and decoding the hex strings its content
shows. Not a general PDF reader: a test of Chromium's PDFs needs no more than this.
"""

from __future__ import annotations

import re
import zlib

_OBJECT = re.compile(rb"(\d+) 0 obj\s*(.*?)endobj", re.S)
_STREAM = re.compile(rb"stream\r?\n")
_LENGTH = re.compile(rb"/Length\s+(\d+)\b(?!\s+\d+\s+R)")
_SHOW = re.compile(rb"/(\w+)\s+[\d.]+\s+Tf|<([0-9A-Fa-f]*)>|(T[Jj\*]|ET)")
"""A font switch (name), a shown hex string, or the end of a text object."""


def pdf_text(data: bytes) -> list[str]:
    """Each page's text, in the order the pages' objects are written."""
    objects = {int(m.group(1)): m.group(2) for m in _OBJECT.finditer(data)}

    def stream(number: int) -> bytes:
        body = objects[number]
        # The dictionary's /Length, not the `endstream` keyword, ends the data: compressed
        # bytes may themselves end in a line break, which a pattern would cut off.
        start = _STREAM.search(body).end()
        raw = body[start : start + int(_LENGTH.search(body).group(1))]
        return zlib.decompress(raw) if b"/FlateDecode" in body else raw

    def cmap(number: int) -> dict[int, str]:
        table = {}
        text = stream(number)
        for block in re.findall(rb"beginbfchar(.*?)endbfchar", text, re.S):
            for src, dst in re.findall(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
                table[int(src, 16)] = bytes.fromhex(dst.decode()).decode("utf-16-be")
        for block in re.findall(rb"beginbfrange(.*?)endbfrange", text, re.S):
            for lo, hi, dst in re.findall(
                rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block
            ):
                start = int(dst, 16)
                for offset, code in enumerate(range(int(lo, 16), int(hi, 16) + 1)):
                    table[code] = chr(start + offset)
        return table

    pages = []
    for body in objects.values():
        if not re.search(rb"/Type\s*/Page\b(?!s)", body):
            continue
        fonts = {}
        font_dict = re.search(rb"/Font\s*<<(.*?)>>", body, re.S)
        names = font_dict.group(1) if font_dict else b""
        for name, number in re.findall(rb"/(\w+)\s+(\d+) 0 R", names):
            unicode_ref = re.search(rb"/ToUnicode\s+(\d+) 0 R", objects[int(number)])
            fonts[name] = cmap(int(unicode_ref.group(1))) if unicode_ref else {}
        contents = re.search(rb"/Contents\s+(\d+) 0 R", body)
        content = stream(int(contents.group(1)))
        table: dict[int, str] = {}
        out: list[str] = []
        for match in _SHOW.finditer(content):
            if match.group(1):
                table = fonts.get(match.group(1), {})
            elif match.group(2) is not None:
                hexa = match.group(2).decode()
                codes = (int(hexa[i : i + 4], 16) for i in range(0, len(hexa), 4))
                out.extend(table.get(code, "") for code in codes)
            elif match.group(3) == b"ET":
                out.append(" ")
        pages.append("".join(out))
    return pages
