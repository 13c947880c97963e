"""Message wording for the dispatch stage: render each channel's template, check it, send.

DESIGN.md, "Compliance before send": every rendered message passes the wording checks
(annual rate disclosed as an annual percentage, the "borrow rationally" risk warning, no
forbidden promise, no rate above the campaign's `risk.apr_cap`), or the batch does not go.

- Templates are Jinja2 files under `templates/`, one per channel (`templates/<channel>.j2`,
  e-mail `templates/email.html.j2`) unless the spec's `templates` map names another file
  there; they are read only from that folder and rendered in Jinja's sandbox
  (`tasks.do.templates`). A/B wording differs inside one file through
  `{% if variant == "B" %}`. Undefined variables are errors; `.html` and `.html.j2`
  templates are autoescaped. An e-mail's subject line is the template's
  `{% block subject %}` (the shipped e-mail keeps it in `<title>`).
- The rules live in the reviewed file `templates/compliance.yaml` (its comments define
  each rule); `load_rules` validates it, so a broken rules file is a clear error.
- Messages do not vary per customer (no name, phone or e-mail in the context), so
  `preflight` renders each (channel, variant, segment) once, however large the batch, and
  refuses the whole batch if any message breaks a rule.
"""

from __future__ import annotations

import html
import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Annotated, Any

import jinja2
import yaml
from jinja2.exceptions import SecurityError
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PositiveInt,
    StringConstraints,
    ValidationError,
    model_validator,
)

from pdca.errors import UserError
from pdca.models import CHANNELS
from pdca.settings import PROJECT_ROOT
from tasks.common.campaigns import CampaignSpec, _problem, _UniqueKeyLoader
from tasks.do.templates import RULE, default_template, load_template, percent

RULES_PATH = PROJECT_ROOT / "templates" / "compliance.yaml"
"""The reviewed wording rules."""

OPT_OUT: dict[str, str] = {
    "sms": "Reply TD to unsubscribe.",
    "im": "Reply TD to stop these messages.",
    "app_push": "Turn off offers in Settings > Notifications.",
    "email": "To stop these e-mails, reply UNSUBSCRIBE.",
    "phone": "If the customer asks not to be called again, record do-not-contact and end "
    "the call politely.",
}
"""How the customer stops further messages, per channel (the template's `opt_out`)."""

DEFAULT_OPT_OUT = "Reply TD to unsubscribe."

PRIVATE_KEYS = frozenset({"phone", "email", "customer_id"})
"""Context keys render refuses: messages never carry who they go to (privacy), and do not
vary per customer (so a batch renders a handful of messages)."""

HTML_SUFFIXES = (".html", ".html.j2")
"""Template names that are autoescaped and read as HTML by the checker."""

HOLDOUT = "holdout"
"""The control group's variant: never sent anything, so never rendered."""

PERCENT = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s?(?:%|％|per\s?cent\b)", re.IGNORECASE)
"""A percentage as written in a message: "14.5%", "14.5 %", "14.5 percent"."""

CLAUSE_END = re.compile(r"[,;!?]|\.(?=\s|$)")
"""Where a clause ends, for deciding whether rate wording belongs to a percentage."""

EXCERPT_WORDS = 6
"""Words quoted each side of an offending rate."""

SENTENCE_END = re.compile(r"[.!?](?=\s|$)")
"""Where a sentence ends, for a forbidden promise's `unless` condition."""


# --- messages ---------------------------------------------------------------------------


@dataclass
class Message:
    """One rendered message; the same for every customer of its (channel, variant, segment).

    `body` is plain text (for an HTML e-mail: its text content, the text/plain alternative);
    `html` is the rendered HTML for HTML templates, else None; `subject` is the template's
    subject block (plain text), None when it has none."""

    channel: str
    variant: str
    template: str
    subject: str | None
    body: str
    html: str | None


def render(
    channel: str, variant: str, context: dict[str, Any], template_path: str | None = None
) -> Message:
    """Render the channel's template (or `template_path`) for one variant.

    `context` carries campaign_name, product, apr (annual %), max_amount (or None),
    segment and opt_out; `variant` is added to it. Template problems (missing file,
    syntax error, undefined variable, a path outside `templates/`, what the sandbox
    refuses) are UserErrors naming the template."""
    private = sorted(PRIVATE_KEYS & context.keys())
    if private:
        raise ValueError(f"message context may not carry customer data: {', '.join(private)}")
    name = template_path or default_template(channel)
    template = load_template(name)
    values = {**context, "channel": channel, "variant": variant}
    is_html = _is_html(name)
    try:
        rendered = template.render(values)
        subject = _render_subject(template, values, is_html)
    except SecurityError as error:
        raise UserError(f"{name}: refused by the template sandbox: {error}") from None
    except jinja2.TemplateNotFound as error:
        raise UserError(f"{name}: no such template to include ({error.name}): {RULE}") from None
    except jinja2.UndefinedError as error:
        raise UserError(f"{name}: {error.message}") from None
    except jinja2.TemplateError as error:
        raise UserError(f"{name}: {error}") from None
    if channel == "email" and not subject:
        raise UserError(f"{name}: an e-mail template needs a subject ({{% block subject %}})")
    if is_html:
        return Message(channel, variant, name, subject, text_of_html(rendered), rendered)
    return Message(channel, variant, name, subject, _tidy(rendered), None)


def message_context(spec: CampaignSpec, channel: str, variant: str, segment: str) -> dict:
    """What a template may say: campaign facts, never customer data."""
    return {
        "campaign_name": spec.name,
        "product": spec.product,
        "apr": spec.offer_apr,
        "max_amount": spec.offer.max_amount if spec.offer else None,
        "variant": variant,
        "segment": segment,
        "opt_out": OPT_OUT.get(channel, DEFAULT_OPT_OUT),
    }


def _is_html(name: str) -> bool:
    return name.lower().endswith(HTML_SUFFIXES)


def _render_subject(template: jinja2.Template, values: dict, is_html: bool) -> str | None:
    """The template's `subject` block as one line of plain text, or None without one."""
    block = template.blocks.get("subject")
    if block is None:
        return None
    text = "".join(block(template.new_context(values)))
    if is_html:
        text = html.unescape(text)
    return " ".join(text.split()) or None


def _tidy(text: str) -> str:
    """Rendered plain text without trailing spaces or runs of blank lines."""
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines))


# --- HTML as text -----------------------------------------------------------------------


class _TextOf(HTMLParser):
    """The text a reader sees: <head>, <title>, <script> and <style> skipped, block
    elements on their own lines, entities unescaped (convert_charrefs)."""

    SKIP = frozenset({"head", "title", "script", "style", "template"})
    BLOCKS = frozenset(
        {"p", "div", "br", "li", "ul", "ol", "tr", "table", "hr", "blockquote", "section"}
        | {"header", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "body", "html"}
    )
    CELLS = frozenset({"td", "th"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in self.SKIP:
            self.skipping += 1
        self._separate(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self.skipping = max(0, self.skipping - 1)
        self._separate(tag)

    def handle_data(self, data: str) -> None:
        """Line breaks in the source are only spaces; block elements make the lines."""
        if not self.skipping:
            self.parts.append(re.sub(r"\s+", " ", data))

    def _separate(self, tag: str) -> None:
        if tag in self.BLOCKS:
            self.parts.append("\n")
        elif tag in self.CELLS:
            self.parts.append(" ")


def text_of_html(markup: str) -> str:
    """The visible text of an HTML document, one block element per line."""
    parser = _TextOf()
    parser.feed(markup)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return "\n".join(line for line in lines if line)


# --- the rules file ---------------------------------------------------------------------


def _compile(value: Any) -> re.Pattern:
    """A rules-file pattern, matched case-insensitively."""
    if isinstance(value, re.Pattern):
        return value
    if not isinstance(value, str) or not value:
        raise ValueError("expected a regular expression (a non-empty string)")
    try:
        return re.compile(value, re.IGNORECASE)
    except re.error as error:
        raise ValueError(f"not a valid regular expression: {error}") from None


def _check_channel(channel: str) -> str:
    if channel not in CHANNELS:
        raise ValueError(f"{channel!r} is not a channel; expected one of {', '.join(CHANNELS)}")
    return channel


Regex = Annotated[re.Pattern, BeforeValidator(_compile)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class _Rules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RateDisclosure(_Rules):
    """The annual rate disclosure that must appear at least once."""

    pattern: Regex
    example: Text

    @model_validator(mode="after")
    def _example_matches(self) -> RateDisclosure:
        """The example is what error messages quote: it must itself pass."""
        if not self.pattern.search(self.example):
            raise ValueError(f"example {self.example!r} does not match the pattern")
        return self


class RiskWarning(_Rules):
    """The "borrow rationally" warning: one of these phrases, word for word."""

    phrases: list[Text] = Field(min_length=1)


class RateWording(_Rules):
    """How a percentage is recognised as a rate (see compliance.yaml, `rates`)."""

    rate_words: Regex
    not_a_rate: Regex


class ForbiddenPromise(_Rules):
    """A promise no message may make, unless `unless` matches in the same sentence."""

    id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]+$")]
    pattern: Regex
    unless: Regex | None = None
    reason: Text


class ComplianceRules(_Rules):
    """The reviewed wording rules, as read from templates/compliance.yaml."""

    reviewed_by: Text
    reviewed_at: date
    rate_disclosure: RateDisclosure
    risk_warning: RiskWarning
    rates: RateWording
    forbidden: list[ForbiddenPromise] = Field(min_length=1)
    max_length: dict[Annotated[str, AfterValidator(_check_channel)], PositiveInt] = Field(
        default_factory=dict
    )

    @model_validator(mode="after")
    def _ids_unique(self) -> ComplianceRules:
        ids = [promise.id for promise in self.forbidden]
        repeated = sorted({rule_id for rule_id in ids if ids.count(rule_id) > 1})
        if repeated:
            raise ValueError(f"forbidden ids listed more than once: {', '.join(repeated)}")
        return self


def load_rules(path: Path = RULES_PATH) -> ComplianceRules:
    """Read and validate the rules file; any problem is a UserError naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    try:
        document = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: safe
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f", line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"{path}{where}: invalid YAML: {error.problem or error}") from None
    except yaml.YAMLError as error:
        raise UserError(f"{path}: invalid YAML: {error}") from None
    if not isinstance(document, dict):
        raise UserError(f"{path}: invalid compliance rules: expected a mapping of fields")
    try:
        return ComplianceRules.model_validate(document)
    except ValidationError as error:
        problems = [_problem(detail) for detail in error.errors()]
        listed = "; ".join(f"{field}: {reason}" for field, reason in problems)
        raise UserError(
            f"{path}: invalid compliance rules ({len(problems)} problems): {listed}"
        ) from None


# --- the checks -------------------------------------------------------------------------


@dataclass(frozen=True)
class Violation:
    """One broken rule in one template; prints as "<template>: <rule>: <offending text>",
    followed by what the rule expects in parentheses when there is more to say."""

    template: str
    rule: str
    offending_text: str
    detail: str = ""

    def __str__(self) -> str:
        text = f"{self.template}: {self.rule}: {self.offending_text}"
        return f"{text} ({self.detail})" if self.detail else text


class ComplianceError(UserError):
    """Rendered messages broke wording rules: the batch does not go."""

    def __init__(self, violations: list[Violation]) -> None:
        self.violations = violations
        listed = "; ".join(str(violation) for violation in violations)
        super().__init__(
            f"wording check failed, batch not sent ({len(violations)} violations): {listed}"
        )


@dataclass(frozen=True)
class Rate:
    """A percentage presented as a rate, with the words around it that make it one."""

    value: Decimal
    text: str


def check(message: Message, apr_cap: float, rules: ComplianceRules) -> list[Violation]:
    """Every rule the message breaks, in the order of compliance.yaml; [] when it passes.

    The body is read as the customer sees it (HTML: tags stripped, entities unescaped);
    the subject, when there is one, is checked for forbidden promises and rates too."""
    body = _flat(text_of_html(message.html) if message.html is not None else message.body)
    texts = [body] + ([_flat(message.subject)] if message.subject else [])
    template = message.template
    violations = [
        *_check_disclosure(template, body, rules),
        *_check_warning(template, body, rules),
    ]
    for text in texts:
        violations += _check_forbidden(template, text, rules)
    for text in texts:
        violations += _check_cap(template, text, apr_cap, rules)
    violations += _check_length(message, rules)
    return violations


def find_rates(text: str, rules: ComplianceRules) -> list[Rate]:
    """The percentages in `text` presented as rates (compliance.yaml, `rates`): rate
    wording in the same clause, and not directly followed by `not_a_rate` wording
    ("0% down payment")."""
    flat = _flat(text)
    wording = rules.rates
    rates = []
    for match in PERCENT.finditer(flat):
        start, end = _clause_start(flat, match.start()), _clause_end(flat, match.end())
        if wording.not_a_rate.search(flat[match.end() : end].strip()):
            continue
        if wording.rate_words.search(flat[start:end]):
            rates.append(Rate(Decimal(match.group(1)), _excerpt(flat, start, match, end)))
    return rates


def _excerpt(text: str, start: int, match: re.Match, end: int, words: int = EXCERPT_WORDS) -> str:
    """The clause around a match, cut to `words` words each side."""
    before, after = text[start : match.start()].split(), text[match.end() : end].split()
    head = ["…"] if len(before) > words else []
    tail = ["…"] if len(after) > words else []
    kept = [*head, *before[-words:], match.group(0), *after[:words], *tail]
    return " ".join(kept).replace(" …", "…").replace("… ", "…")


def _check_disclosure(template: str, body: str, rules: ComplianceRules) -> list[Violation]:
    """The annual rate disclosed as an annual percentage, at least once."""
    disclosure = rules.rate_disclosure
    if disclosure.pattern.search(body):
        return []
    shown = find_rates(body, rules)
    offending = shown[0].text if shown else "(no rate shown)"
    detail = f'the annual rate must read like "{disclosure.example}"'
    return [Violation(template, "rate-disclosure", offending, detail)]


def _check_warning(template: str, body: str, rules: ComplianceRules) -> list[Violation]:
    """One of the risk-warning phrases, word for word (case and spacing aside)."""
    folded = body.casefold()
    phrases = rules.risk_warning.phrases
    if any(_flat(phrase).casefold() in folded for phrase in phrases):
        return []
    expected = " or ".join(f'"{phrase}"' for phrase in phrases)
    return [Violation(template, "risk-warning", "(no risk warning)", f"expected {expected}")]


def _check_forbidden(template: str, text: str, rules: ComplianceRules) -> list[Violation]:
    """Each forbidden promise found, unless its condition stands in the same sentence."""
    violations = []
    for promise in rules.forbidden:
        for match in promise.pattern.finditer(text):
            sentence = text[_sentence_start(text, match.start()) : _sentence_end(text, match.end())]
            if promise.unless is not None and promise.unless.search(sentence):
                continue
            violations.append(
                Violation(template, f"forbidden/{promise.id}", match.group(0), promise.reason)
            )
    return violations


def _check_cap(template: str, text: str, apr_cap: float, rules: ComplianceRules) -> list[Violation]:
    """Every rate shown at most the campaign's apr_cap."""
    cap = Decimal(str(apr_cap))
    return [
        Violation(template, "apr-cap", rate.text, f"above the apr_cap of {percent(cap)}")
        for rate in find_rates(text, rules)
        if rate.value > cap
    ]


def _check_length(message: Message, rules: ComplianceRules) -> list[Violation]:
    """The channel's length limit, counted on the plain-text body."""
    limit = rules.max_length.get(message.channel)
    if limit is None or len(message.body) <= limit:
        return []
    start = _flat(message.body)[:40]
    detail = f"{len(message.body)} characters, {message.channel} allows {limit}"
    return [Violation(message.template, "max-length", f"{start}…", detail)]


def _flat(text: str) -> str:
    """Any run of whitespace (line breaks included) as one space."""
    return " ".join(text.split())


def _clause_start(text: str, position: int) -> int:
    ends = [match.end() for match in CLAUSE_END.finditer(text, 0, position)]
    return ends[-1] if ends else 0


def _clause_end(text: str, position: int) -> int:
    match = CLAUSE_END.search(text, position)
    return match.start() if match else len(text)


def _sentence_start(text: str, position: int) -> int:
    ends = [match.end() for match in SENTENCE_END.finditer(text, 0, position)]
    return ends[-1] if ends else 0


def _sentence_end(text: str, position: int) -> int:
    match = SENTENCE_END.search(text, position)
    return match.end() if match else len(text)


# --- the batch --------------------------------------------------------------------------


def preflight(
    spec: CampaignSpec,
    channels: list[str],
    variants: list[str],
    segments: list[str],
    rules: ComplianceRules | None = None,
) -> dict[tuple[str, str, str], Message]:
    """Render every distinct (channel, variant, segment) once and check each message.

    Returns the messages by (channel, variant, segment), ready to send; raises
    ComplianceError listing every violation (each once) when any message fails, so the
    whole batch stays unsent. The hold-out group is never sent anything: not rendered."""
    rules = rules if rules is not None else load_rules()
    messages: dict[tuple[str, str, str], Message] = {}
    violations: dict[Violation, None] = {}
    sent_variants = [variant for variant in _distinct(variants) if variant != HOLDOUT]
    for key in itertools.product(_distinct(channels), sent_variants, _distinct(segments)):
        channel, variant, segment = key
        context = message_context(spec, channel, variant, segment)
        message = render(channel, variant, context, spec.templates.get(channel))
        messages[key] = message
        violations.update(dict.fromkeys(check(message, spec.risk.apr_cap, rules)))
    if violations:
        raise ComplianceError(list(violations))
    return messages


def _distinct(values: Iterable[str]) -> Iterator[str]:
    """Each value once, in first-seen order."""
    return iter(dict.fromkeys(values))
