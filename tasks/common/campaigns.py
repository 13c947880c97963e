"""Campaign specs: read a YAML spec, validate every field, and apply it to the database.

The spec is the campaign's source of truth (see the contract's "Campaign spec"). A spec
that does not validate is refused with *every* problem listed, each named by its dotted
field path, so that a user fixes the file in one pass instead of one error per run. The
CLI validates before it opens a transaction, so an invalid spec writes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, core_schema
from sqlalchemy import Connection, insert, select, update

from pdca.errors import SpecError, UserError
from pdca.models import CHANNELS, AuditEntry, Campaign, Product
from pdca.settings import PROJECT_ROOT
from tasks.common.bounds import INT32_MAX, has_control

SHARE_TOLERANCE = 1e-6
"""How far the experiment's shares may sum away from 1 (YAML floats are not exact)."""

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
"""A deliberately simple address check: catches typos, leaves real validation to the MTA."""

MINUTES_PER_DAY = 24 * 60

MAX_AMOUNT = 1e15
"""Most any money field of a spec may say (a budget of a thousand trillion is a typo)."""

TEMPLATE_DIR = PROJECT_ROOT / "templates"
TEMPLATE_RULE = "a template must be a file under the project's templates/ folder"

SPEC_CONFIG = ConfigDict(extra="forbid", allow_inf_nan=False)
"""Every part of a spec: unknown keys refused, and no `.inf` or `.nan` for any number."""


# --- time ranges ------------------------------------------------------------------------


@dataclass(frozen=True)
class TimeRange:
    """A daily time range "HH:MM-HH:MM", half-open [start, end); it wraps past midnight
    when end < start (quiet hours "21:00-09:00" run overnight)."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> TimeRange:
        """Read "HH:MM-HH:MM"; a zero-length range is refused because it says nothing."""
        match = re.fullmatch(r"\s*(\d{2}):(\d{2})\s*-\s*(\d{2}):(\d{2})\s*", text)
        if match is None:
            raise ValueError(f"expected 'HH:MM-HH:MM', got {text!r}")
        hours_start, minutes_start, hours_end, minutes_end = (int(g) for g in match.groups())
        try:
            start, end = time(hours_start, minutes_start), time(hours_end, minutes_end)
        except ValueError:
            raise ValueError(f"{text!r} is not a time of day (00:00 to 23:59)") from None
        if start == end:
            raise ValueError(f"{text!r} is empty: start and end are the same")
        return cls(start, end)

    @property
    def wraps(self) -> bool:
        """True when the range runs past midnight."""
        return self.end < self.start

    def contains(self, moment: time) -> bool:
        """Whether `moment` falls inside the range (start included, end excluded)."""
        if self.wraps:
            return moment >= self.start or moment < self.end
        return self.start <= moment < self.end

    def overlaps(self, other: TimeRange) -> bool:
        """Whether the two ranges share any minute; touching ends do not overlap."""
        return any(
            start < other_end and other_start < end
            for start, end in self._segments()
            for other_start, other_end in other._segments()
        )

    def _segments(self) -> list[tuple[int, int]]:
        """The range as minute-of-day intervals that do not wrap (one, or two if it wraps)."""
        start = self.start.hour * 60 + self.start.minute
        end = self.end.hour * 60 + self.end.minute
        if self.wraps:
            return [(start, MINUTES_PER_DAY), (0, end)]
        return [(start, end)]

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    @classmethod
    def __get_pydantic_core_schema__(
        cls, _source: type[Any], _handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        """Validate from the spec's string and dump back to it, so the stored spec (JSON)
        reads exactly like the YAML the user wrote."""
        return core_schema.no_info_plain_validator_function(
            cls._coerce, serialization=core_schema.plain_serializer_function_ser_schema(str)
        )

    @classmethod
    def _coerce(cls, value: Any) -> TimeRange:
        """A parsed range passes through; anything else must be the spec's text."""
        if isinstance(value, cls):
            return value
        if not isinstance(value, str):
            raise ValueError(f"expected 'HH:MM-HH:MM', got {value!r}")
        return cls.parse(value)


# --- field checks -----------------------------------------------------------------------


def _check_timezone(name: str) -> str:
    """Reject names zoneinfo cannot load: feed timestamps without offset are read in it."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone (e.g. Asia/Shanghai)") from None
    return name


def _check_channel(channel: str) -> str:
    """Only the contract's channels can be routed, budgeted and reported."""
    if channel not in CHANNELS:
        raise ValueError(f"{channel!r} is not a channel; expected one of {', '.join(CHANNELS)}")
    return channel


def _check_email(address: str) -> str:
    if not EMAIL.match(address):
        raise ValueError(f"{address!r} is not an e-mail address")
    return address


def _check_one_line(text: str) -> str:
    """A name is shown in reports, mail subjects and logs: one line, no control characters."""
    if has_control(text):
        raise ValueError("must be one line without control characters (CR, LF, tab, NUL…)")
    return text


def _check_template(path: str, info: ValidationInfo) -> str:
    """Templates come from the project's `templates/` folder only, so that a spec cannot
    make pdca read (and echo) any file. Checked for specs read from a file (the context
    `from_file`); the refusal states the rule and never opens the file."""
    _check_one_line(path)
    if (info.context or {}).get("from_file"):
        candidate = Path(path) if Path(path).is_absolute() else PROJECT_ROOT / path
        if not candidate.resolve().is_relative_to(TEMPLATE_DIR.resolve()):
            raise ValueError(f"{TEMPLATE_RULE} (e.g. templates/sms.j2)")
    return path


def _check_variant_name(name: str) -> str:
    """The name "holdout" labels the control group in `touches`; no variant may take it."""
    if name == "holdout":
        raise ValueError("'holdout' is reserved for the control group; use experiment.holdout")
    return name


def _check_window(window: TimeRange, info: ValidationInfo) -> TimeRange:
    """A send window must lie within one day and outside the quiet hours, since dispatch
    sends at the window's times on the date it is given."""
    if window.wraps:
        raise ValueError(f"window {window} runs past midnight; split it into two windows")
    quiet = info.data.get("quiet_hours")
    if quiet is not None and window.overlaps(quiet):
        raise ValueError(f"window {window} overlaps the quiet hours {quiet}")
    return window


Identifier = Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]+$", max_length=64)]
Text = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(_check_one_line),
]
Count = Annotated[int, Field(gt=0, le=INT32_MAX)]
Amount = Annotated[float, Field(gt=0, le=MAX_AMOUNT)]
TemplatePath = Annotated[str, StringConstraints(max_length=500), AfterValidator(_check_template)]
ChannelName = Annotated[str, AfterValidator(_check_channel)]
EmailAddress = Annotated[str, AfterValidator(_check_email)]
WindowName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]+$", max_length=32)]
Window = Annotated[TimeRange, AfterValidator(_check_window)]
VariantName = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9_]+$", max_length=32),
    AfterValidator(_check_variant_name),
]
Share = Annotated[float, Field(gt=0, le=1)]


# --- the spec ---------------------------------------------------------------------------


class RiskPolicy(BaseModel):
    """The asset-quality half of the campaign's dual targets."""

    model_config = SPEC_CONFIG

    max_overdue_rate_30: float = Field(gt=0, le=1)
    min_credit_score: int = Field(ge=300, le=900)
    apr_cap: float = Field(gt=0, le=100)
    """Annual %, e.g. 24.0; no offer or message may exceed it."""
    excluded_industries: list[Text] = Field(default_factory=list)
    max_debt_ratio: float = Field(default=0.7, gt=0, le=100)
    """Beyond the contract: debt ratio above which a customer is not contacted."""
    hard_overdue_rate_30: float | None = Field(default=None, gt=0, le=1)
    """Optional guardrail: a channel or segment whose overdue_rate_30 passes it is paused
    at once (docs/act.md, Guardrails); at least `max_overdue_rate_30`, the soft ceiling."""
    hard_complaint_rate: float | None = Field(default=None, gt=0, le=1000)
    """Optional guardrail: complaints per 1,000 delivered past which a scope is paused."""

    @field_validator("hard_overdue_rate_30")
    @classmethod
    def _hard_not_below_soft(cls, hard: float | None, info: ValidationInfo) -> float | None:
        """A hard limit below the soft ceiling would pause a scope before the ceiling's
        gentler answer (tighten_admission) ever had a chance."""
        soft = info.data.get("max_overdue_rate_30")
        if hard is not None and soft is not None and hard < soft:
            raise ValueError(
                f"hard limit {hard:g} is below max_overdue_rate_30 {soft:g}; "
                "it must be at least that"
            )
        return hard


class ContactPolicy(BaseModel):
    """How often and when a customer may be contacted."""

    model_config = SPEC_CONFIG

    max_touches_per_7d: Count
    quiet_hours: TimeRange
    windows: dict[WindowName, Window] = Field(min_length=1)


class Experiment(BaseModel):
    """The split of the audience into variants and a hold-out control group."""

    model_config = SPEC_CONFIG

    metric: Literal["application_rate", "response_rate", "approval_rate"] = "application_rate"
    variants: dict[VariantName, Share] = Field(min_length=1)
    holdout: float = Field(default=0.0, ge=0, lt=1)

    @model_validator(mode="after")
    def _shares_sum_to_one(self) -> Self:
        """Every audience member lands in exactly one group, so the shares must add up."""
        total = sum(self.variants.values()) + self.holdout
        if abs(total - 1) > SHARE_TOLERANCE:
            raise ValueError(f"variant shares plus holdout sum to {total:g}, not 1")
        return self


class Offer(BaseModel):
    """What the messages quote: the annual rate (disclosed in every message) and amount."""

    model_config = SPEC_CONFIG

    apr: float = Field(gt=0, le=100)
    """Annual %, shown as such; may not exceed `risk.apr_cap`."""
    max_amount: Amount | None = None


class CampaignSpec(BaseModel):
    """A campaign as the user writes it in YAML; field order matters, since later fields'
    checks (end, windows) read the earlier ones."""

    model_config = SPEC_CONFIG

    id: Identifier
    name: Text
    product: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=64),
        AfterValidator(_check_one_line),
    ]
    start: date
    end: date
    timezone: Annotated[str, AfterValidator(_check_timezone)]
    channels: list[ChannelName] = Field(min_length=1)
    budget_total: Amount
    risk: RiskPolicy
    contact_policy: ContactPolicy
    experiment: Experiment
    templates: dict[ChannelName, TemplatePath] = Field(default_factory=dict)
    """Channel → template path. Any contract channel, not only the campaign's: the
    contract's own example carries an `email` template beside channels without email."""
    recipients: list[EmailAddress] = Field(default_factory=list)
    locale: Literal["zh-CN", "en"] | None = None
    """The language of the campaign's reports, SOP and e-mail, and of the weekly review its
    recipients receive; unset: the setting `PDCA_LOCALE`'s."""
    growth: float = Field(default=1.0, gt=0, le=1000)
    """The multiplier the plan applies to history (1.0 = repeat history)."""
    daily_capacity: dict[ChannelName, Count] = Field(default_factory=dict)
    """Beyond the contract: most touches a channel can take per day (e.g. the relationship
    managers' calls); channels not named are limited by budget only."""
    offer: Offer | None = None
    """Beyond the contract: the rate and amount messages quote (default: the APR cap)."""

    @field_validator("offer")
    @classmethod
    def _offer_within_cap(cls, offer: Offer | None, info: ValidationInfo) -> Offer | None:
        risk = info.data.get("risk")
        if offer is not None and risk is not None and offer.apr > risk.apr_cap:
            raise ValueError(f"offer apr {offer.apr:g}% is above the apr_cap {risk.apr_cap:g}%")
        return offer

    @property
    def offer_apr(self) -> float:
        """The annual % messages quote: the offer's, else the cap (never above it)."""
        return self.offer.apr if self.offer else self.risk.apr_cap

    @field_validator("end")
    @classmethod
    def _end_not_before_start(cls, end: date, info: ValidationInfo) -> date:
        start = info.data.get("start")
        if start is not None and end < start:
            raise ValueError(f"end {end} is before start {start}")
        return end

    @field_validator("channels")
    @classmethod
    def _channels_unique(cls, channels: list[str]) -> list[str]:
        """A channel listed twice would get its budget twice."""
        repeated = sorted({channel for channel in channels if channels.count(channel) > 1})
        if repeated:
            raise ValueError(f"listed more than once: {', '.join(repeated)}")
        return channels


# --- reading a spec ---------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice: YAML would silently keep the last one,
    and a second `risk:` block quietly replacing the first is exactly what a spec check
    is for."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _UniqueKeyLoader.construct_mapping
)


def load_spec(path: Path) -> CampaignSpec:
    """Read and validate the spec file at `path`."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected a spec file") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        reason = f"not UTF-8 text (byte 0x{data[error.start]:02x}); save the file as UTF-8"
        raise SpecError(str(path), [(f"line {line}", reason)]) from None
    return parse_spec(text, str(path))


def parse_spec(text: str, source: str) -> CampaignSpec:
    """Validate a spec's YAML text; `source` names it in the error (usually its path).

    A spec read here comes from a user's file, so its templates must lie in the project's
    template folder (`_check_template`)."""
    document = _read_yaml(text, source)
    if not isinstance(document, dict):
        found = "nothing" if document is None else type(document).__name__
        raise SpecError(source, [("document", f"expected a mapping of fields, got {found}")])
    return _validate(document, source, from_file=True)


def _read_yaml(text: str, source: str) -> Any:
    """YAML → Python, with a syntax error reported by its line."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: safe
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}" if mark is not None else "document"
        raise SpecError(source, [(where, _yaml_reason(error))]) from None
    except yaml.YAMLError as error:
        raise SpecError(source, [("document", str(error))]) from None


def _yaml_reason(error: yaml.MarkedYAMLError) -> str:
    """PyYAML's message without its multi-line mark excerpts (the line is in the path)."""
    parts = [error.context, error.problem]
    return ", ".join(part for part in parts if part) or "invalid YAML"


def _validate(document: dict[str, Any], source: str, from_file: bool = False) -> CampaignSpec:
    try:
        return CampaignSpec.model_validate(document, context={"from_file": from_file})
    except ValidationError as error:
        raise SpecError(source, [_problem(detail) for detail in error.errors()]) from None


def _problem(detail: ErrorDetails) -> tuple[str, str]:
    """One pydantic error as (dotted field path, reason)."""
    return _field_path(detail["loc"]), _reason(detail)


def _field_path(loc: tuple[int | str, ...]) -> str:
    """("risk", "apr_cap") → "risk.apr_cap"; a dict key's own error drops pydantic's
    "[key]" marker, so a bad key reads as "templates.fax"."""
    parts = [str(part) for part in loc if part != "[key]"]
    return ".".join(parts) or "document"


def _reason(detail: ErrorDetails) -> str:
    """Our own checks' message as written; pydantic's with the offending value appended."""
    if detail["type"] == "value_error":
        return str(detail.get("ctx", {}).get("error", detail["msg"]))
    value = detail.get("input")
    if detail["type"] in {"missing", "extra_forbidden"} or not _is_scalar(value):
        return detail["msg"]
    return f"{detail['msg']} (got {value!r})"


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool | date)


# --- the database -----------------------------------------------------------------------


def apply_spec(conn: Connection, spec: CampaignSpec, actor: str = "cli") -> str:
    """Create or update the campaign from `spec`; returns "created", "updated" or
    "unchanged". Does not commit: the caller owns the transaction."""
    stored = spec.model_dump(mode="json")
    current = conn.execute(
        select(Campaign.spec, Campaign.spec_version).where(Campaign.campaign_id == spec.id)
    ).first()
    _ensure_product(conn, spec.product)
    if current is None:
        version, result = 1, "created"
        now = _utcnow()
        conn.execute(
            insert(Campaign).values(
                **_campaign_row(spec, stored), spec_version=1, created_at=now, updated_at=now
            )
        )
    elif current.spec == stored:
        return "unchanged"
    else:
        version, result = current.spec_version + 1, "updated"
        conn.execute(
            update(Campaign)
            .where(Campaign.campaign_id == spec.id)
            .values(**_campaign_row(spec, stored), spec_version=version, updated_at=_utcnow())
        )
    _audit(conn, actor, spec.id, {"result": result, "version": version})
    return result


def get_campaign_spec(conn: Connection, campaign_id: str) -> CampaignSpec:
    """The campaign's spec as last applied."""
    stored = conn.execute(
        select(Campaign.spec).where(Campaign.campaign_id == campaign_id)
    ).scalar_one_or_none()
    if stored is None:
        raise UserError(f"unknown campaign {campaign_id!r}")
    return _validate(stored, f"campaign {campaign_id!r} (stored spec)")


def _campaign_row(spec: CampaignSpec, stored: dict[str, Any]) -> dict[str, Any]:
    """The columns copied out of the spec, so that SQL can filter without parsing JSON."""
    return {
        "campaign_id": spec.id,
        "name": spec.name,
        "product_code": spec.product,
        "start_date": spec.start,
        "end_date": spec.end,
        "timezone": spec.timezone,
        "budget_total": spec.budget_total,
        "spec": stored,
    }


def _ensure_product(conn: Connection, product_code: str) -> None:
    """A campaign creates the product it names; an existing product's name is kept."""
    exists = conn.execute(
        select(Product.product_code).where(Product.product_code == product_code)
    ).first()
    if exists is None:
        conn.execute(insert(Product).values(product_code=product_code, name=product_code))


def _audit(conn: Connection, actor: str, campaign_id: str, detail: dict[str, Any]) -> None:
    conn.execute(
        insert(AuditEntry).values(
            at=_utcnow(), actor=actor, action="campaign.apply", subject=campaign_id, detail=detail
        )
    )


def _utcnow() -> datetime:
    """Now as naive UTC, the way every timestamp is stored."""
    return datetime.now(UTC).replace(tzinfo=None)
