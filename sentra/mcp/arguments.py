"""A tool's arguments, declared once: each Param gives both the JSON Schema an assistant reads in tools/list and the
check its value gets in tools/call (a BadRequest that names the argument, which the assistant sees and can fix)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sentra.errors import BadRequest

_JSON_TYPES = {"string": (str,), "integer": (int,), "number": (int, float)}


@dataclass(frozen=True, slots=True)
class Param:
    """One argument of a tool: its JSON type ("string", "integer" or "number"), what it means, and its bounds."""

    name: str
    kind: str
    description: str
    required: bool = False
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    enum: tuple[str, ...] | None = None
    pattern: str | None = None  # anchored, so JSON Schema's search and Python's agree
    min_length: int | None = None

    def schema(self) -> dict[str, Any]:
        """The argument as JSON Schema."""
        schema: dict[str, Any] = {"type": self.kind, "description": self.description}
        for key, value in (
            ("default", self.default),
            ("minimum", self.minimum),
            ("maximum", self.maximum),
            ("enum", list(self.enum) if self.enum else None),
            ("pattern", self.pattern),
            ("minLength", self.min_length),
        ):
            if value is not None:
                schema[key] = value
        return schema

    def read(self, value: Any) -> Any:
        """`value` if it fits the schema; BadRequest saying what was wrong otherwise."""
        if self.kind == "integer" and isinstance(value, float) and value.is_integer():
            value = int(value)  # JSON Schema counts 5.0 as an integer, and so does JSON
        if isinstance(value, bool) or not isinstance(value, _JSON_TYPES[self.kind]):
            wanted = "an integer" if self.kind == "integer" else f"a {self.kind}"
            raise BadRequest(f"argument {self.name!r} must be {wanted}, not {_shown(value)}")
        self._check_bounds(value)
        return value

    def _check_bounds(self, value: Any) -> None:
        """BadRequest if a value of the right type is outside the argument's bounds (JSON has no NaN to slip by)."""
        if self.minimum is not None and value < self.minimum:
            raise BadRequest(f"argument {self.name!r} must be at least {_number(self.minimum)}, not {value}")
        if self.maximum is not None and value > self.maximum:
            raise BadRequest(f"argument {self.name!r} must be at most {_number(self.maximum)}, not {value}")
        if self.enum is not None and value not in self.enum:
            raise BadRequest(f"argument {self.name!r} must be one of {', '.join(self.enum)}, not {_shown(value)}")
        if self.min_length is not None and len(value) < self.min_length:
            raise BadRequest(f"argument {self.name!r} must not be empty")
        if self.pattern is not None and not re.search(self.pattern, value):
            raise BadRequest(f"argument {self.name!r} must match {self.pattern}, not {_shown(value)}")


def input_schema(params: tuple[Param, ...]) -> dict[str, Any]:
    """The JSON Schema of a tool's arguments object: these properties and no others."""
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {param.name: param.schema() for param in params},
        "additionalProperties": False,
    }
    required = [param.name for param in params if param.required]
    if required:
        schema["required"] = required
    return schema


def read_arguments(params: tuple[Param, ...], arguments: dict[str, Any]) -> dict[str, Any]:
    """Every argument by name, checked, with its default (None when it has none) where it was left out."""
    known = {param.name for param in params}
    unknown = sorted(name for name in arguments if name not in known)
    if unknown:
        expected = ", ".join(param.name for param in params)
        raise BadRequest(f"unknown argument {unknown[0]!r}; this tool takes {expected}")
    values: dict[str, Any] = {}
    for param in params:
        value = arguments.get(param.name)
        if value is None:
            if param.required:
                raise BadRequest(f"argument {param.name!r} is required")
            values[param.name] = param.default
        else:
            values[param.name] = param.read(value)
    return values


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
