"""Reading and writing the user's YAML files with positions and comments kept.

ruamel.yaml's round-trip loader remembers where each key and item came from, which lets an
error name the line and column of the offending value, and lets ``cloud sync --direction
to-disk`` rewrite a file without losing the user's comments.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from atrium.errors import Problem

Loc = Sequence[int | str]


class YamlSyntaxError(Exception):
    """The file is not well-formed YAML; ``problem`` says where."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        super().__init__(str(problem))


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 100
    return yaml


def load(path: Path, shown_as: str) -> Any:
    """Parse ``path``; a syntax error becomes ``YamlSyntaxError`` with line and column."""
    text = path.read_text(encoding="utf-8")
    return loads(text, shown_as)


def loads(text: str, shown_as: str) -> Any:
    try:
        return _yaml().load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        column = mark.column + 1 if mark is not None else None
        what = exc.problem or exc.context or "malformed YAML"
        raise YamlSyntaxError(
            Problem(shown_as, f"malformed YAML: {what}", line=line, column=column)
        ) from exc
    except YAMLError as exc:
        raise YamlSyntaxError(Problem(shown_as, f"malformed YAML: {exc}")) from exc


def dumps(data: Any) -> str:
    stream = io.StringIO()
    _yaml().dump(data, stream)
    return stream.getvalue()


def position(data: Any, loc: Loc) -> tuple[int, int] | None:
    """Line and column (1-based) of the deepest node of ``loc`` that exists in ``data``."""
    found: tuple[int, int] | None = None
    node = data
    for part in loc:
        if isinstance(node, CommentedMap) and isinstance(part, str) and part in node:
            line, col = node.lc.key(part)
            found = (line + 1, col + 1)
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
            line, col = node.lc.item(part)
            found = (line + 1, col + 1)
            node = node[part]
        else:
            break
    return found


def key_path(loc: Loc) -> str:
    """``("mcp_servers", "x", "tools", "denied", 0)`` -> ``mcp_servers.x.tools.denied[0]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def merge_into(target: Any, new: Any) -> Any:
    """Update ``target`` in place to equal ``new``, keeping comments and key order of ``target``.

    Returns the node to store: ``target`` itself when it could be updated in place.
    """
    if isinstance(target, CommentedMap) and isinstance(new, Mapping):
        for key in [k for k in target if k not in new]:
            del target[key]
        for key, value in new.items():
            target[key] = merge_into(target[key], value) if key in target else _plain(value)
        return target
    if isinstance(target, CommentedSeq) and isinstance(new, list):
        del target[len(new) :]
        for index, value in enumerate(new):
            if index < len(target):
                target[index] = merge_into(target[index], value)
            else:
                target.append(_plain(value))
        return target
    return _plain(new)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        out = CommentedMap()
        for key, item in value.items():
            out[key] = _plain(item)
        return out
    if isinstance(value, list):
        return CommentedSeq([_plain(item) for item in value])
    return value
