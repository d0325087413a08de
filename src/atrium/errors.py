"""Errors every part of Atrium shares, and how the CLI shows them.

``AtriumError`` is the root: it carries the exit code the CLI uses. ``ConfigError`` collects
every ``Problem`` found in the user's files (YAML, environment) so that one run reports all of
them at once, each naming the file, the line, the server and the key path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

EXIT_NOT_FOUND = 1
EXIT_CONFIG = 2


class AtriumError(Exception):
    """An error the user can act on; ``str(error)`` is the whole message."""

    exit_code: int = 1


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a configuration source, located as precisely as we can."""

    source: str
    message: str
    key_path: str = ""
    server: str | None = None
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        where = self.source
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        parts = [where]
        if self.server is not None:
            parts.append(f"server '{self.server}'")
        if self.key_path:
            parts.append(self.key_path)
        return ": ".join([*parts, self.message])


class ConfigError(AtriumError):
    """The configuration is invalid; nothing was applied."""

    exit_code = EXIT_CONFIG

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = tuple(problems)
        count = len(problems)
        head = "invalid configuration" if count == 1 else f"invalid configuration ({count} errors)"
        super().__init__("\n".join([head + ":", *(f"  {p}" for p in problems)]))


def each_checked(work: Iterable[Callable[[], T]]) -> list[T]:
    """Every result of ``work``; the problems of every ``ConfigError`` raised on the way are
    raised together at the end, so one run reports all of them."""
    results: list[T] = []
    problems: list[Problem] = []
    for step in work:
        try:
            results.append(step())
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return results


class UsageError(AtriumError):
    """A command-line argument is wrong; the message says which and why."""

    exit_code = EXIT_CONFIG


class NotFoundError(AtriumError):
    """A name the user gave does not exist."""

    exit_code = EXIT_NOT_FOUND

    def __init__(self, kind: str, name: str, known: list[str]) -> None:
        self.kind = kind
        self.name = name
        self.known = tuple(known)
        listing = ", ".join(sorted(known)) if known else "(none)"
        super().__init__(f"{kind} '{name}' not found; known: {listing}")


def display_path(path: Path, root: Path) -> str:
    """The path relative to the project folder when it lies inside it."""
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)
