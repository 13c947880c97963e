"""Chinese and English: the message catalogs every fixed text of pdca's output goes through.

Reports, the SOP, the e-mail and the CLI's summaries say their fixed text in English in the
source (`_("…")` in Python, `{% trans %}` and `_()` in the templates, Jinja2's `i18n`
extension) and are translated by the gettext catalog of the reader's locale:
`reports/locale/<locale>/LC_MESSAGES/pdca.po`, with `reports/locale/pdca.pot` the template
listing every message. English is the source language and needs no catalog.

The catalogs are Babel's: `make messages` runs `pybabel extract` (Babel's Python extractor,
Jinja2's `babel_extract` for the templates; the settings are `[tool.babel]` in
`pyproject.toml`) and `pybabel update`, and `python -m tasks.common.i18n` lists the
messages a catalog still misses. The `.po` file is read at run time (`read_po`) and
compiled in memory, so there is no `.mo` file to build or keep in step: a fresh clone runs
as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from io import BytesIO
from pathlib import Path

from babel import Locale
from babel.messages.catalog import Catalog, Message
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

from pdca.settings import PROJECT_ROOT

LOCALES = ("en", "zh-CN")
"""What a spec's `locale` and the setting `PDCA_LOCALE` may say."""
DEFAULT_LOCALE = "en"
SOURCE_LOCALE = "en"
"""The language the messages are written in: it has no catalog."""
DOMAIN = "pdca"
LOCALE_DIR = PROJECT_ROOT / "reports" / "locale"
TEMPLATE = LOCALE_DIR / f"{DOMAIN}.pot"
"""The catalog template `pybabel extract` writes (`[tool.babel.extract_messages]`)."""


def check_locale(value: str | None) -> str:
    """`value` when it is a supported locale; else a ValueError naming the choices."""
    if value not in LOCALES:
        raise ValueError(f"unsupported locale {value!r}: use one of {', '.join(LOCALES)}")
    return value


@lru_cache
def babel_locale(locale: str) -> Locale:
    """The CLDR locale Babel formats `locale`'s figures and dates by (`zh-CN` → zh_Hans_CN)."""
    return Locale.parse(check_locale(locale), sep="-")


def catalog_path(locale: str) -> Path:
    """The `.po` file of a locale (`zh-CN` → `reports/locale/zh_CN/LC_MESSAGES/pdca.po`)."""
    return LOCALE_DIR / locale.replace("-", "_") / "LC_MESSAGES" / f"{DOMAIN}.po"


def read_catalog(path: Path) -> Catalog:
    """A `.po` (or `.pot`) file as Babel's catalog: its messages, flags and plural rule."""
    with path.open("rb") as file:
        return read_po(file, domain=DOMAIN)


def load_translations(path: Path) -> Translations:
    """A `.po` file as gettext's interface has it (what Jinja2's `install_gettext_translations`
    and Python's `_()` call): compiled in memory, fuzzy and empty translations left out, so
    such a message stays in English rather than going blank."""
    compiled = BytesIO()
    write_mo(compiled, read_catalog(path))
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


@lru_cache
def translations(locale: str) -> NullTranslations:
    """The locale's catalog; English (the source) needs none."""
    check_locale(locale)
    if locale == SOURCE_LOCALE:
        return NullTranslations()
    return load_translations(catalog_path(locale))


def translator(locale: str) -> Callable[[str], str]:
    """`_` for `locale`: `_ = translator(locale); _("Weekly review")`."""
    return translations(locale).gettext


def N_(message: str) -> str:
    """Marks a message for the catalog where it is defined; it is translated where shown."""
    return message


def is_translated(message: Message) -> bool:
    """A message a reader sees translated: every form filled in, not flagged fuzzy."""
    forms = message.string if isinstance(message.string, tuple) else (message.string,)
    return not message.fuzzy and all(forms)


def untranslated(locale: str, template: Path = TEMPLATE) -> list[str]:
    """The template's messages the locale's catalog has no translation for (the singular of
    a plural message)."""
    catalog = read_catalog(catalog_path(locale))
    missing = []
    for message in read_catalog(template):
        if not message.id:
            continue  # the header
        known = catalog.get(message.id, message.context)
        if known is None or not is_translated(known):
            missing.append(message.id[0] if isinstance(message.id, tuple) else message.id)
    return sorted(missing)


if __name__ == "__main__":
    for name in LOCALES:
        if name != SOURCE_LOCALE:
            for text in untranslated(name):
                print(f"{name}: untranslated: {text!r}")
