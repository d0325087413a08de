"""Header values as 2026-07-28 carries them ("HTTP headers"): printable ASCII without edge
whitespace as it is, anything else as ``=?base64?<UTF-8 in base64>?=``.

The same rules as the SDK's ``mcp.shared.inbound`` codec, which backends use, kept here so that
the gateway does not import the ``mcp`` package (about half a second of CPU for its protocol
types) to serve a request: the SDK's helpers for ``x-mcp-header`` schemas are imported only when
a tool declares such headers (``access``, ``jsonrpc``).
"""

from __future__ import annotations

import base64
import binascii
import re

_SAFE = re.compile(r"[\x20-\x7e]*")
_SENTINEL = re.compile(r"=\?base64\?(?P<payload>.*)\?=")


def encode(value: str) -> str:
    if _SAFE.fullmatch(value) and value == value.strip() and not _SENTINEL.fullmatch(value):
        return value
    return f"=?base64?{base64.b64encode(value.encode('utf-8')).decode('ascii')}?="


def decode(value: str | None) -> str | None:
    """The value the client meant; ``None`` for a malformed (or non-canonical) sentinel, so a
    corrupt header never matches a body value by accident."""
    if value is None:
        return None
    match = _SENTINEL.fullmatch(value)
    if match is None:
        return value
    payload = match["payload"]
    try:
        decoded = base64.b64decode(payload, validate=True)
        if base64.b64encode(decoded).decode("ascii") != payload:
            return None
        return decoded.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
