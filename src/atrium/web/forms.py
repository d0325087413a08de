"""The **try it** form of a tool, generated from its input schema, and the arguments read back
from what was posted.

A property of a simple type gets a field of its own: a text box (a select for an ``enum``), a
number box, a checkbox; anything else (objects, arrays, unions) a text area that takes JSON.
Posted values are converted by the same schema, and a value that does not convert is named in
the error, field by field. The gateway and the server check the arguments again: the form is
a convenience, never the guard.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from starlette.datastructures import FormData

Kind = Literal["text", "number", "integer", "boolean", "select", "json"]
FIELD_PREFIX = "arg."
MAX_FIELDS = 50


@dataclass(frozen=True)
class Field:
    name: str
    kind: Kind
    required: bool
    description: str
    choices: tuple[str, ...] = ()
    default: str = ""

    @property
    def input_name(self) -> str:
        return FIELD_PREFIX + self.name


class FormProblem(ValueError):
    """The posted values that do not fit the schema, each naming its field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def fields(schema: Any) -> list[Field]:
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict):
        return []
    required = schema.get("required")
    needed = set(required) if isinstance(required, list) else set()
    return [
        _field(str(name), spec if isinstance(spec, dict) else {}, str(name) in needed)
        for name, spec in list(properties.items())[:MAX_FIELDS]
    ]


def _field(name: str, spec: dict[str, Any], required: bool) -> Field:
    kind: Kind
    enum = spec.get("enum")
    declared = spec.get("type")
    choices: tuple[str, ...] = ()
    if isinstance(enum, list) and enum and all(isinstance(v, str) for v in enum):
        kind, choices = "select", tuple(enum)
    elif declared in ("string", "number", "integer", "boolean"):
        kind = "text" if declared == "string" else declared
    else:
        kind = "json"
    default = spec.get("default")
    shown = "" if default is None else default if isinstance(default, str) else json.dumps(default)
    description = str(spec.get("description") or spec.get("title") or "")
    return Field(name, kind, required, description, choices, shown)


def arguments(schema: Any, form: FormData) -> dict[str, Any]:
    """The arguments of the call; ``FormProblem`` naming each field that does not convert.
    An empty optional field is left out, so the tool's own default applies."""
    found: dict[str, Any] = {}
    problems: list[str] = []
    for field in fields(schema):
        raw = form.get(field.input_name)
        text = raw if isinstance(raw, str) else ""
        if field.kind == "boolean":
            found[field.name] = text == "on"
            continue
        if not text.strip():
            if field.required:
                problems.append(f"{field.name}: is required")
            continue
        try:
            found[field.name] = _converted(field, text)
        except ValueError as exc:
            problems.append(f"{field.name}: {exc}")
    if problems:
        raise FormProblem(problems)
    return found


def _converted(field: Field, text: str) -> Any:
    if field.kind in ("text", "select"):
        return text
    if field.kind == "integer":
        try:
            return int(text.strip())
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number") from None
    if field.kind == "number":
        try:
            return float(text.strip())
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValueError(f"is not JSON ({exc})") from None
