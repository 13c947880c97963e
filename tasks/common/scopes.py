"""A scope — which part of a campaign a number is about — written out for people.

A scope is a mapping such as {"channel": "sms", "segment": None}: a key with no value
(None) spans all of that dimension, and an empty scope is the whole campaign. Every stage
writes one the same way: `channel=sms, segment=sme`, or `campaign` for the whole. The
check's notes read as a sentence instead (`channel sms, segment sme`, `the campaign`):
the same formatter with `separator=" "` and `whole="the campaign"`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def format_scope(
    scope: Mapping[str, Any] | None, *, separator: str = "=", whole: str = "campaign"
) -> str:
    """`scope` as `key=value, ...` in its own key order, skipping keys with no value;
    `whole` when nothing is left (the campaign as a whole)."""
    named = (scope or {}).items()
    parts = [f"{key}{separator}{value}" for key, value in named if value is not None]
    return ", ".join(parts) if parts else whole


def scope_without_gaps(scope: Mapping[str, Any] | None) -> dict[str, Any]:
    """The scope without its keys that have no value: {} is the whole campaign."""
    return {key: value for key, value in (scope or {}).items() if value is not None}
