"""The world file: the hidden truths a simulated season holds, read and validated.

A truth is a scope (any of channel, segment, variant, send window), the weeks it holds
(`from_week`, `until_week`, counted from 1 at the season's first Monday) and what is true
there: multipliers on the chance of delivery, response, application, approval and
complaints, or the overdue rate its loans drift to. `found_by` names the action types
that count as the loop having found it. The approval policy says how the simulated
manager decides proposals. A file that does not validate is refused with every problem
listed by field path and reason, the way a campaign spec is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pdca.errors import UserError
from pdca.synthetic.campaign import CHANNELS, EXPERIMENT_VARIANTS, WINDOWS
from pdca.synthetic.world import SEGMENTS
from tasks.common.campaigns import _problem, _read_yaml

ACTION_TYPES = (
    "reallocate_budget",
    "tighten_admission",
    "shift_window",
    "promote_variant",
    "retire_channel",
    "revise_targeting",
    "hold",
    "pause",
    "resume",
)
"""The contract's action types, the ones a truth may be found by."""

EFFECTS = ("delivery", "response", "application", "approval", "complaints")
"""The chances a truth may multiply (each at a stage of the funnel)."""

Channel = Literal["phone", "sms", "im", "app_push", "email"]
Segment = Literal["sme", "salaried", "farmer", "student"]
Window = Literal["noon", "evening"]
Variant = Literal["A", "B", "holdout"]
ActionType = Literal[
    "reallocate_budget",
    "tighten_admission",
    "shift_window",
    "promote_variant",
    "retire_channel",
    "revise_targeting",
    "hold",
    "pause",
    "resume",
]

assert set(Channel.__args__) == set(CHANNELS)  # the literals follow the demo campaign
assert set(Segment.__args__) == set(SEGMENTS)
assert set(Window.__args__) == set(WINDOWS)
assert set(Variant.__args__) == {*EXPERIMENT_VARIANTS, "holdout"}


class WorldError(UserError):
    """A world file that does not validate; carries every problem, not just the first."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        listed = "; ".join(f"{path}: {reason}" for path, reason in problems)
        super().__init__(f"{source}: invalid world file ({len(problems)} problems): {listed}")


class Scope(BaseModel):
    """Where a truth holds: every field left out matches everything."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: Channel | None = None
    segment: Segment | None = None
    variant: Variant | None = None
    window: Window | None = None

    def label(self) -> str:
        """`channel=im, segment=sme`, or `everywhere`."""
        parts = [f"{name}={value}" for name, value in self.model_dump().items() if value]
        return ", ".join(parts) or "everywhere"


class Truth(BaseModel):
    """One hidden fact of the world, and the actions that count as finding it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=120)
    scope: Scope = Scope()
    from_week: int = Field(1, ge=1)
    until_week: int | None = Field(None, ge=1)
    delivery: float | None = Field(None, ge=0, le=10)
    response: float | None = Field(None, ge=0, le=10)
    application: float | None = Field(None, ge=0, le=10)
    approval: float | None = Field(None, ge=0, le=10)
    complaints: float | None = Field(None, ge=0, le=100)
    overdue_rate_30: float | None = Field(None, ge=0, le=1)
    found_by: tuple[ActionType, ...] = ()

    @model_validator(mode="after")
    def _says_something(self) -> Truth:
        """A truth with no effect would be found by nothing and change nothing."""
        if all(getattr(self, name) is None for name in (*EFFECTS, "overdue_rate_30")):
            raise ValueError(
                f"states no effect: give at least one of {', '.join(EFFECTS)}, overdue_rate_30"
            )
        if self.until_week is not None and self.until_week < self.from_week:
            raise ValueError(f"until_week {self.until_week} is before from_week {self.from_week}")
        return self

    def holds(self, week: int) -> bool:
        """Whether the truth is in force in season week `week` (1-based)."""
        return week >= self.from_week and (self.until_week is None or week <= self.until_week)


class Veto(BaseModel):
    """One rule of the simulated manager: reject proposals of `type` past a size."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: ActionType
    max_share: float | None = Field(None, gt=0, le=1)
    """Reject a budget move larger than this share of the source channel's budget;
    without it every proposal of `type` is rejected."""


class ApprovalPolicy(BaseModel):
    """How proposals are decided when the season runs with `--approve policy`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    decided_by: str = Field("simulated-manager", min_length=1, max_length=64)
    reject: tuple[Veto, ...] = ()


class WorldFile(BaseModel):
    """A world file: its truths and, optionally, the manager's approval policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("world", min_length=1, max_length=120)
    truths: tuple[Truth, ...] = ()
    approval: ApprovalPolicy = ApprovalPolicy()

    @model_validator(mode="after")
    def _names_unique(self) -> WorldFile:
        """The verdict reports truths by name: two with one name would be one line."""
        names = [truth.name for truth in self.truths]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"truth names given more than once: {', '.join(repeated)}")
        return self


DEFAULT_WORLD: dict = {
    "name": "default",
    "truths": [
        {
            "name": "B lifts applications by 20 %",
            "scope": {"variant": "B"},
            "application": 1.2,
            "found_by": ["promote_variant"],
        },
        {
            "name": "im's overdue rate climbs to 9 % from week 5",
            "scope": {"channel": "im"},
            "from_week": 5,
            "overdue_rate_30": 0.09,
            "found_by": ["tighten_admission", "pause"],
        },
        {
            "name": "the evening window responds half as well as noon",
            "scope": {"window": "evening"},
            "response": 0.5,
            "found_by": ["shift_window"],
        },
        {
            "name": "app push never pays",
            "scope": {"channel": "app_push"},
            "application": 0.0,
            "found_by": ["retire_channel", "reallocate_budget"],
        },
    ],
}
"""The world `pdca simulate` runs without `--world`: a few clear truths to find."""


def default_world() -> WorldFile:
    """The default world's truths (see `DEFAULT_WORLD`)."""
    return parse_world(DEFAULT_WORLD, "default world")


def load_world(path: Path) -> WorldFile:
    """Read and validate the world file at `path`; every problem in one `WorldError`."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected a world file") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise WorldError(str(path), [(f"line {line}", "not UTF-8 text")]) from None
    try:
        document = _read_yaml(text, str(path))
    except UserError as error:
        problems = getattr(error, "problems", [("document", str(error))])
        raise WorldError(str(path), problems) from None
    if not isinstance(document, dict):
        found = "nothing" if document is None else type(document).__name__
        raise WorldError(str(path), [("document", f"expected a mapping of fields, got {found}")])
    return parse_world(document, str(path))


def parse_world(document: dict, source: str) -> WorldFile:
    """Validate a world file's fields; `source` names it in the error."""
    try:
        return WorldFile.model_validate(document)
    except ValidationError as error:
        raise WorldError(source, [_problem(detail) for detail in error.errors()]) from None
