"""Which commands a CLI run for a caller may run at all (``atrium.auth.operator``).

The ``atrium`` server's tool runs the CLI for its callers. Whatever the operator's
``ATRIUM_ALLOWED_COMMANDS`` says, a run for a caller is refused unless its command is one of
these, checked before anything else happens: deny by default, so a command added to the CLI
later is never a caller's by accident. The commands here act as the caller themselves (tokens
with the caller's scopes, the caller's own audit records). Raw logs hold every caller's traces:
they are for admin callers only. Nothing here mints tokens for others, starts or stops
servers, writes files or changes the store.
"""

from __future__ import annotations

from collections.abc import Sequence

from atrium.auth.roles import ADMIN
from atrium.errors import AtriumError

FOR_CALLERS: tuple[tuple[str, ...], ...] = (
    ("plugins", "mcp", "list"),
    ("plugins", "mcp", "status"),
    ("plugins", "mcp", "show"),
    ("plugins", "mcp", "tools"),
    ("plugins", "mcp", "call"),
    ("plugins", "mcp", "validate"),
    ("plugins", "mcp", "test"),
    ("infra", "logs", "request", "list"),
    ("infra", "logs", "audit"),
    ("infra", "usage"),
)
FOR_ADMIN_CALLERS: tuple[tuple[str, ...], ...] = (
    ("infra", "logs", "view"),
    ("plugins", "mcp", "logs"),
)
# The root's own options that take a value (``atrium --project DIR plugins ...``).
_ROOT_VALUES = frozenset({"--project", "-p"})


def check_command(argv: Sequence[str], acting: str | None) -> None:
    """Refuse ``argv`` when it runs for a caller (``acting``) and is not a caller's command."""
    if acting is None:
        return
    from atrium.auth.operator import parse_acting_caller  # tokens' code, for a caller's run only

    caller = parse_acting_caller(acting)
    words = command_words(argv)
    allowed = FOR_CALLERS + (FOR_ADMIN_CALLERS if ADMIN in caller.scopes else ())
    if not any(tuple(words[: len(path)]) == path for path in allowed):
        shown = " ".join(words) or "(none)"
        raise AtriumError(f"'{shown}' is not available to a command run for a caller")


def command_words(argv: Sequence[str]) -> list[str]:
    """The command path: the words after the root's options, up to the first option."""
    words: list[str] = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        if not words and arg in _ROOT_VALUES:
            index += 2
            continue
        if arg.startswith("-"):
            if words:
                break
            index += 1  # --project=DIR, -pDIR, --version: the root's, before the command
            continue
        words.append(arg)
        index += 1
    return words
