"""Chinese and English: the message catalogs every fixed text of pdca's output goes through.

Reports, the SOP, the e-mail and the CLI's summaries say their fixed text in English in the
source (`_("…")` in Python, `{% trans %}` and `_()` in the templates, Jinja2's `i18n`
extension) and are translated by the gettext catalog of the reader's locale:
`reports/locale/<locale>/LC_MESSAGES/pdca.po`, with `reports/locale/pdca.pot` the template
listing every message. English is the source language and needs no catalog.

The `.po` file is read at run time (`read_po`), so there is no compiled `.mo` file to build
or keep in step: a fresh clone runs as it is. `python -m tasks.common.i18n` rewrites the
`.pot` from the sources, adds the new messages to each `.po` (untranslated) and lists the
messages the catalogs miss.
"""

from __future__ import annotations

import ast
import gettext
import re
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path

from pdca.settings import PROJECT_ROOT

LOCALES = ("en", "zh-CN")
"""What a spec's `locale` and the setting `PDCA_LOCALE` may say."""
DEFAULT_LOCALE = "en"
SOURCE_LOCALE = "en"
"""The language the messages are written in: it has no catalog."""
DOMAIN = "pdca"
LOCALE_DIR = PROJECT_ROOT / "reports" / "locale"
TEMPLATES = PROJECT_ROOT / "reports"
PYTHON_SOURCES = ("tasks/common", "tasks/review", "tasks/act", "pdca")
"""Where `_()` calls are looked for when the catalog template is extracted."""

_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\", "r": "\r"}


def catalog_path(locale: str) -> Path:
    """The `.po` file of a locale (`zh-CN` → `reports/locale/zh_CN/LC_MESSAGES/pdca.po`)."""
    return LOCALE_DIR / locale.replace("-", "_") / "LC_MESSAGES" / f"{DOMAIN}.po"


class Catalog(gettext.NullTranslations):
    """A locale's translations as gettext's interface has them (what Jinja2's
    `install_gettext_translations` and Python's `_()` call); a message without a
    translation stays in English rather than going blank."""

    def __init__(self, messages: dict[str, str], plurals: dict[str, list[str]]) -> None:
        super().__init__()
        self.messages = messages
        self.plurals = plurals

    def gettext(self, message: str) -> str:
        return self.messages.get(message) or message

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        forms = [form for form in self.plurals.get(singular, []) if form]
        if forms:  # the catalogs here are of languages with one form (nplurals=1)
            return forms[0]
        return singular if n == 1 else plural

    def pgettext(self, context: str, message: str) -> str:
        return self.gettext(message)

    def npgettext(self, context: str, singular: str, plural: str, n: int) -> str:
        return self.ngettext(singular, plural, n)


def read_po(path: Path) -> Catalog:
    """A `.po` file's translations: msgid → msgstr (the header entry and fuzzy entries
    left out), and msgid → its plural forms."""
    messages: dict[str, str] = {}
    plurals: dict[str, list[str]] = {}
    for entry in po_entries(path.read_text(encoding="utf-8")):
        msgid = entry.get("msgid", "")
        if not msgid or entry.get("fuzzy"):
            continue
        if "msgid_plural" in entry:
            plurals[msgid] = [entry[key] for key in sorted(entry) if key.startswith("msgstr[")]
        else:
            messages[msgid] = entry.get("msgstr", "")
    return Catalog(messages, plurals)


def po_entries(text: str) -> Iterator[dict[str, str]]:
    """The entries of a `.po` file's text: keyword → string (`msgid`, `msgstr`,
    `msgid_plural`, `msgstr[0]` …), `fuzzy` when flagged so."""
    entry: dict[str, str] = {}
    key = None
    for line in [*text.splitlines(), ""]:
        line = line.strip()
        if not line:
            if entry:
                yield entry
            entry, key = {}, None
        elif line.startswith("#,") and "fuzzy" in line:
            entry["fuzzy"] = "1"
        elif line.startswith("#"):
            continue
        elif line.startswith('"'):
            if key is not None:
                entry[key] += _unquote(line)
        else:
            keyword, _, rest = line.partition(" ")
            if keyword == "msgid" and "msgid" in entry and "msgstr" in entry:
                yield entry  # entries not separated by a blank line
                entry = {}
            key = keyword
            entry[key] = _unquote(rest.strip())


def _unquote(quoted: str) -> str:
    body = quoted[1:-1] if len(quoted) >= 2 and quoted[0] == quoted[-1] == '"' else quoted
    return re.sub(r"\\(.)", lambda match: _ESCAPES.get(match.group(1), match.group(1)), body)


def check_locale(value: str | None) -> str:
    """`value` when it is a supported locale; else a ValueError naming the choices."""
    if value not in LOCALES:
        raise ValueError(f"unsupported locale {value!r}: use one of {', '.join(LOCALES)}")
    return value


@lru_cache
def translations(locale: str) -> gettext.NullTranslations:
    """The locale's catalog; English (the source) needs none."""
    check_locale(locale)
    if locale == SOURCE_LOCALE:
        return gettext.NullTranslations()
    return read_po(catalog_path(locale))


def translator(locale: str) -> Callable[[str], str]:
    """`_` for `locale`: `_ = translator(locale); _("Weekly review")`."""
    return translations(locale).gettext


def N_(message: str) -> str:
    """Marks a message for the catalog where it is defined; it is translated where shown."""
    return message


# --- the catalog template ---------------------------------------------------------------------


def template_messages() -> dict[str, list[str]]:
    """msgid → where it is used, for every message of the report templates (Jinja2's own
    extraction, the `i18n` extension's `{% trans %}` blocks and `_()` calls)."""
    from tasks.common.reports import environment

    env = environment(DEFAULT_LOCALE)
    found: dict[str, list[str]] = {}
    for path in sorted(TEMPLATES.glob("*.j2")):
        source = path.read_text(encoding="utf-8")
        for line, _function, message in env.extract_translations(source):
            for text in (message,) if isinstance(message, str) else message:
                if text:
                    found.setdefault(text, []).append(f"reports/{path.name}:{line}")
    return found


def python_messages() -> dict[str, list[str]]:
    """msgid → where it is used, for every `_("…")`, `N_("…")` and `ngettext("…", "…", n)`
    with literal strings in the Python sources."""
    found: dict[str, list[str]] = {}
    for folder in PYTHON_SOURCES:
        for path in sorted((PROJECT_ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
                    continue
                if node.func.id not in ("_", "N_", "ngettext"):
                    continue
                limit = 2 if node.func.id == "ngettext" else 1
                for argument in node.args[:limit]:
                    if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                        where = f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}"
                        found.setdefault(argument.value, []).append(where)
    return found


def all_messages() -> dict[str, list[str]]:
    """Every message of the templates and the Python sources, with where it is used."""
    found = template_messages()
    for message, places in python_messages().items():
        found.setdefault(message, []).extend(places)
    return found


def write_pot(path: Path | None = None) -> Path:
    """The catalog template (`reports/locale/pdca.pot`) from the sources, sorted by msgid."""
    path = path or LOCALE_DIR / f"{DOMAIN}.pot"
    lines = [
        "# pdca's messages: reports, SOP, e-mail and CLI summaries.",
        "# Rewritten by `python -m tasks.common.i18n`; translations in <locale>/LC_MESSAGES.",
        'msgid ""',
        'msgstr ""',
        '"Content-Type: text/plain; charset=UTF-8\\n"',
        "",
    ]
    for message, places in sorted(all_messages().items()):
        lines.append("#: " + " ".join(sorted(set(places))[:4]))
        lines.append(f"msgid {_quote(message)}")
        lines.append('msgstr ""')
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def update_po(locale: str, translated: dict[str, str] | None = None) -> Path:
    """Rewrite the locale's `.po` with every source message, sorted, keeping its header and
    translations (and taking `translated`'s); a new message gets an empty translation."""
    path = catalog_path(locale)
    text = path.read_text(encoding="utf-8")
    entries = list(po_entries(text))
    header = next(entry for entry in entries if entry.get("msgid") == "")
    known = {entry["msgid"]: entry.get("msgstr", "") for entry in entries if entry.get("msgid")}
    known.update(translated or {})
    comments = [line for line in text.splitlines() if line.startswith("# ")][:2]
    lines = [*comments, 'msgid ""', 'msgstr ""']
    lines += [_quote(line + "\n") for line in header["msgstr"].splitlines()]
    lines.append("")
    for message, places in sorted(all_messages().items()):
        lines.append("#: " + " ".join(sorted(set(places))[:4]))
        lines.append(f"msgid {_quote(message)}")
        lines.append(f"msgstr {_quote(known.get(message, ''))}")
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def untranslated(locale: str) -> list[str]:
    """The source messages the locale's catalog has no translation for."""
    catalog = read_po(catalog_path(locale))
    return sorted(
        message
        for message in all_messages()
        if not (catalog.messages.get(message) or catalog.plurals.get(message))
    )


if __name__ == "__main__":
    print(f"wrote {write_pot()}")
    for locale in LOCALES:
        if locale != SOURCE_LOCALE:
            print(f"wrote {update_po(locale)}")
            for message in untranslated(locale):
                print(f"{locale}: untranslated: {message!r}")
