"""Hiding secrets from what Atrium shows or keeps: the audit trail's tool arguments, and a
server's configuration as ``atrium plugins mcp show`` prints it.

A secret is recognised by the key it sits under (``SECRET_KEY``): ``api_key``, ``DB_PASSWORD``,
``Authorization``, ``credentials``. Whatever such a key holds goes, whatever its type: a numeric
PIN or a nested ``{"user": ..., "pass": ...}`` is as secret as a string.

Some arguments are secrets under a plain key: ``SECRET_ARGUMENTS`` names them per tool (the
``value`` that the marketplace's ``manage_secrets`` stores). And an error a server answers may
quote the arguments it refused (pydantic's ``input_value=...``), so the audit keeps its text
``scrubbed`` of whatever the redaction hid.

No JSON value makes these functions raise: what nests deeper than ``MAX_DEPTH`` levels is shown
as ``TOO_DEEP`` (and its secrets are still scrubbed), and nothing recurses without a bound.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

SECRET_KEY = re.compile(r"(?i)(secret|token|password|passwd|api[_-]?key|auth|credential|private)")
SHOWN = "***"
REFERENCE_KEYS = frozenset({"$env", "$file", "$secret"})
# Matched by tool name on any server: hiding an argument too many costs nothing.
SECRET_ARGUMENTS: Mapping[str, frozenset[str]] = {"manage_secrets": frozenset({"value"})}
# Shorter hidden strings are not scrubbed from error texts: they would mask every "1" or "no".
MIN_SCRUBBED = 4
_QUOTED_INPUT = re.compile(r"input_value=.*, input_type=(?=\w+\])")
# Levels of objects and arrays shown; deeper, a value is ``TOO_DEEP``. The gateway forwards no
# params nested deeper than this (``atrium.gateway.jsonrpc.MAX_DEPTH``), so no record of a
# forwarded call is cut; the bound keeps recursion (three frames a level) far from Python's
# limit, and what the audit keeps within orjson's (254 levels).
MAX_DEPTH = 64
TOO_DEEP = "*** nested too deep ***"


def redacted(value: Any, *, config: bool = False) -> Any:
    """``value`` with whatever sits under a secret-looking key shown as ``***``, at any depth
    (up to ``MAX_DEPTH`` levels: deeper, ``TOO_DEEP``).

    ``config=True`` reads ``value`` as a validated server configuration, in which two things
    under such a key are not secrets: a reference (``{"$env": NAME}``, ``{"$file": PATH}``) names
    where a secret is, not its value; and a block of the schema (``oauth:``, which looks like
    "auth") is redacted key by key. Tool arguments are no schema: there both go whole.
    """
    return _redacted(value, config, MAX_DEPTH)


def _redacted(value: Any, config: bool, room: int) -> Any:
    """``redacted`` with ``room`` levels left to show."""
    if not isinstance(value, dict | list):
        return value
    if room <= 0:
        return TOO_DEEP
    if isinstance(value, dict):
        return {key: _under(key, item, config, room - 1) for key, item in value.items()}
    return [_redacted(item, config, room - 1) for item in value]


def _under(key: Any, value: Any, config: bool, room: int) -> Any:
    if config and key in REFERENCE_KEYS:
        return _redacted(value, config, room)  # the name of a variable, a file or a secret
    if not (isinstance(key, str) and SECRET_KEY.search(key)):
        return _redacted(value, config, room)
    if config and isinstance(value, dict):
        # References shown, the rest of a schema block key by key: ``redacted``.
        return _redacted(value, True, room)
    return SHOWN


def redacted_arguments(arguments: Any, tool: str | None) -> Any:
    """A tool call's arguments as the audit keeps them: ``redacted``, and those that
    ``SECRET_ARGUMENTS`` names for ``tool`` hidden whatever they hold."""
    safe = redacted(arguments)
    names = SECRET_ARGUMENTS.get(tool or "", frozenset())
    if names and isinstance(safe, dict):
        safe = {key: SHOWN if key in names else item for key, item in safe.items()}
    return safe


def scrubbed(text: str | None, arguments: Any, tool: str | None) -> str | None:
    """``text`` (what a server answered to a call with ``arguments``) without any string that
    ``redacted_arguments`` hides from them, in the forms an error quotes it: as is, escaped
    for JSON or Python, cut at the end of the text, or inside pydantic's ``input_value=``."""
    if text is None:
        return None
    hidden = _hidden(arguments, redacted_arguments(arguments, tool))
    forms = {form for value in hidden for form in _quoted(value) if len(form) >= MIN_SCRUBBED}
    if not forms:
        return text
    text = _QUOTED_INPUT.sub(f"input_value={SHOWN}, input_type=", text)
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, SHOWN)
        # A text cut short (the audit keeps its head) may end with a value's beginning.
        for size in range(min(len(form) - 1, len(text)), MIN_SCRUBBED - 1, -1):
            if text.endswith(form[:size]):
                text = text[:-size] + SHOWN
                break
    return text


def _hidden(original: Any, shown: Any) -> Iterator[str]:
    """The strings in ``original`` that ``shown`` (its redacted form) replaced by ``SHOWN``, and
    those of its secrets below where ``shown`` stops (``TOO_DEEP``)."""
    if shown == SHOWN and original != SHOWN:
        yield from _strings(original)
    elif shown == TOO_DEEP and original != TOO_DEEP:
        yield from _secrets_within(original)
    elif isinstance(original, dict) and isinstance(shown, dict):
        for key, item in original.items():
            yield from _hidden(item, shown.get(key))
    elif isinstance(original, list) and isinstance(shown, list):
        for item, shown_item in zip(original, shown, strict=False):
            yield from _hidden(item, shown_item)


def _secrets_within(value: Any) -> Iterator[str]:
    """The strings of whatever sits under a secret-looking key in ``value``, at any depth."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            for key, inner in item.items():
                if isinstance(key, str) and SECRET_KEY.search(key):
                    yield from _strings(inner)
                else:
                    pending.append(inner)
        elif isinstance(item, list):
            pending.extend(item)


def _strings(value: Any) -> Iterator[str]:
    """Every scalar of ``value`` as text (``None`` and booleans aside), at any depth."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(reversed(item.values()))
        elif isinstance(item, list):
            pending.extend(reversed(item))
        elif item is not None and not isinstance(item, bool):
            yield str(item)


def _quoted(value: str) -> set[str]:
    return {value, json.dumps(value)[1:-1], repr(value)[1:-1]}
