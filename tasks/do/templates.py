"""Do: message templates — read only from the project's templates folder, rendered sandboxed.

A campaign spec names its templates (`templates: {sms: templates/sms.j2}`), and a spec is
input: it could name any file (`/etc/passwd`, `../x`) or a template that reaches into
Python (`{{ ''.__class__.__mro__ }}`). So a template is a file inside `templates/`, named
by its path from the project root (or by its absolute path there); anything else is
refused before it is read, the refusal quoting the rule, never the file. Templates import
one another by the same names (`{% from "templates/_disclosures.j2" import … %}`), and
render in Jinja's `SandboxedEnvironment`, where attributes such as `__class__` or
`__globals__` are refused.
"""

from __future__ import annotations

import re
from decimal import Decimal
from functools import cache
from pathlib import Path

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from pdca.errors import UserError
from pdca.models import CHANNELS
from pdca.settings import PROJECT_ROOT

TEMPLATES_DIR = PROJECT_ROOT / "templates"
"""The only folder templates are read from."""

PREFIX = "templates"
"""How template names start: the folder's name as seen from the project root."""

RULE = (
    "a template must be a file inside the project's templates folder, named by its path "
    "from the project root (such as templates/sms.j2)"
)
"""What a refusal quotes."""

DEFAULT_TEMPLATES: dict[str, str] = {channel: f"templates/{channel}.j2" for channel in CHANNELS}
DEFAULT_TEMPLATES["email"] = "templates/email.html.j2"
"""Channel → template path (relative to the project root) when the spec names none."""


def default_template(channel: str) -> str:
    """The template path a channel uses when the spec's `templates` map names none."""
    if channel not in DEFAULT_TEMPLATES:
        raise UserError(f"{channel!r} is not a channel; expected one of {', '.join(CHANNELS)}")
    return DEFAULT_TEMPLATES[channel]


def template_name(name: str) -> str:
    """The loader's name (`templates/<path in the folder>`) of the template a spec names;
    a UserError quoting the rule for any path that resolves outside the folder (symbolic
    links followed), without reading it."""
    folder = TEMPLATES_DIR.resolve()
    path = Path(name)
    if not path.is_absolute():
        path = TEMPLATES_DIR.parent / path
    resolved = path.resolve()
    if resolved == folder or not resolved.is_relative_to(folder):
        raise UserError(f"{name}: template refused: {RULE} ({TEMPLATES_DIR})")
    return f"{PREFIX}/{resolved.relative_to(folder).as_posix()}"


def load_template(name: str) -> jinja2.Template:
    """The template a spec names (see `template_name`), compiled in the sandbox."""
    lookup = template_name(name)
    try:
        return _environment(TEMPLATES_DIR).get_template(lookup)
    except jinja2.TemplateNotFound as error:
        missing = name if error.name == lookup else error.name
        raise UserError(
            f"{name}: no such template ({missing}; looked in {TEMPLATES_DIR})"
        ) from None
    except jinja2.TemplateSyntaxError as error:
        raise UserError(f"{error.filename or name}, line {error.lineno}: {error.message}") from None


class FolderLoader(jinja2.FileSystemLoader):
    """Templates named `templates/<path>`, from `folder` only: other names, `..` and
    symbolic links that lead out of the folder are not found."""

    def __init__(self, folder: Path) -> None:
        super().__init__(str(folder))
        self.folder = folder.resolve()

    def get_source(self, environment: jinja2.Environment, template: str):
        prefix, _, rest = template.partition("/")
        if prefix != PREFIX or not rest:
            raise jinja2.TemplateNotFound(template)
        source, filename, uptodate = super().get_source(environment, rest)
        if not Path(filename).resolve().is_relative_to(self.folder):
            raise jinja2.TemplateNotFound(template)
        return source, filename, uptodate


@cache
def _environment(folder: Path) -> SandboxedEnvironment:
    """The sandboxed environment reading `folder`; `.html` and `.html.j2` autoescaped,
    undefined variables errors."""
    environment = SandboxedEnvironment(
        loader=FolderLoader(folder),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html", "html.j2"), default_for_string=False, default=False
        ),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(percent=percent, money=money, label=label)
    return environment


def percent(value: float | int | Decimal) -> str:
    """14.5 → "14.5%", 24.0 → "24%": the rate exactly as given, never rounded down."""
    return f"{Decimal(str(value)).normalize():f}%"


def money(value: float | int) -> str:
    """500000 → "500,000"; cents only when there are some."""
    return f"{value:,.2f}".removesuffix(".00")


def label(code: str) -> str:
    """A product code as words: "sme-revolving" → "SME revolving"."""
    words = re.split(r"[-_\s]+", code.strip())
    return " ".join(word.upper() if word.lower() in {"sme", "apr"} else word for word in words)
