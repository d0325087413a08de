"""Hiding secrets from what Atrium shows or keeps: the audit trail's tool arguments, and a
server's configuration as ``atrium plugins mcp show`` prints it.

A secret is recognised by the key it sits under (``SECRET_KEY``): ``api_key``, ``DB_PASSWORD``,
``Authorization``, ``credentials``. Whatever such a key holds goes, whatever its type: a numeric
PIN or a nested ``{"user": ..., "pass": ...}`` is as secret as a string.
"""

from __future__ import annotations

import re
from typing import Any

SECRET_KEY = re.compile(r"(?i)(secret|token|password|passwd|api[_-]?key|auth|credential|private)")
SHOWN = "***"
REFERENCE_KEYS = frozenset({"$env", "$file"})


def redacted(value: Any, *, config: bool = False) -> Any:
    """``value`` with whatever sits under a secret-looking key shown as ``***``, at any depth.

    ``config=True`` reads ``value`` as a validated server configuration, in which two things
    under such a key are not secrets: a reference (``{"$env": NAME}``, ``{"$file": PATH}``) names
    where a secret is, not its value; and a block of the schema (``oauth:``, which looks like
    "auth") is redacted key by key. Tool arguments are no schema: there both go whole.
    """
    if isinstance(value, dict):
        return {key: _under(key, item, config) for key, item in value.items()}
    if isinstance(value, list):
        return [redacted(item, config=config) for item in value]
    return value


def _under(key: Any, value: Any, config: bool) -> Any:
    if not (isinstance(key, str) and SECRET_KEY.search(key)):
        return redacted(value, config=config)
    if config and isinstance(value, dict):
        return value if value.keys() <= REFERENCE_KEYS else redacted(value, config=True)
    return SHOWN
