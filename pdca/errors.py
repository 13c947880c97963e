"""Errors a user can fix: the CLI prints them as one line and exits 2, never a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad usage or bad input; the message names the file, line and field at fault."""


class SpecError(UserError):
    """A campaign spec that does not validate; carries every problem, not just the first."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        listed = "; ".join(f"{path}: {reason}" for path, reason in problems)
        super().__init__(f"{source}: invalid campaign spec ({len(problems)} problems): {listed}")
