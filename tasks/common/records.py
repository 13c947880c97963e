"""JSON in and out for the typed hand-offs between stages (the check result, the plan).

A stage builds its result once as frozen dataclasses and the next stage reads it by
attribute; what crosses a process boundary (a flow's return value, a stored row, `--json`)
is the record's dict, in the contract's key order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, ClassVar, Self


class Record:
    """JSON in and out for a dataclass: its fields in declaration order (the contract's key
    order); a field listed in `_nested` holds records (or a list of them) of that class."""

    _nested: ClassVar[dict[str, type[Record]]] = {}

    def to_json(self) -> dict[str, Any]:
        """The record as the contract's dict: fields in order, nested records as dicts."""
        return {item.name: _json_value(getattr(self, item.name)) for item in fields(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        """The record from its dict; a missing field takes its default (None or empty),
        a key that is no field is ignored."""
        values = {}
        for item in fields(cls):
            if item.name not in data:
                continue
            value = data[item.name]
            nested = cls._nested.get(item.name)
            if nested is not None and value is not None:
                is_list = isinstance(value, list)
                value = [nested.from_json(v) for v in value] if is_list else nested.from_json(value)
            values[item.name] = value
        return cls(**values)


def _json_value(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, list):
        return [_json_value(item) for item in value]
    return value
