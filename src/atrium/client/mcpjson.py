"""``.mcp.json`` files in the form Claude Code reads (seed 004), loaded into connection specs.

``{"mcpServers": {name: {command, args, env, cwd} | {type: http|sse, url, headers}}}``. A stdio
entry may say ``"type": "stdio"``; ``streamable-http`` is accepted as another name for ``http``.
A plugin's ``.mcp.json`` lies in the plugin's folder, which ``${ATRIUM_PLUGIN_ROOT}`` (and, for
files written for Claude Code, ``${CLAUDE_PLUGIN_ROOT}``) names; its servers are namespaced by
the plugin too (``mcp__plugin_<plugin>_<server>__<tool>``).

``${VAR}`` and ``${VAR:-default}`` are expanded in ``command``, ``args``, ``env``, ``cwd``,
``url`` and ``headers``, from the environment the caller hands over (never ``os.environ``
directly). A variable that is unset and has no default is an error naming the file, the server
and the key: a literal ``${TOKEN}`` is never passed on to a server. Every problem of a file is
reported at once, each with the file and key path, as the YAML registry does.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from atrium.errors import ConfigError, Problem, each_checked

PLUGIN_ROOT_VARIABLES = ("ATRIUM_PLUGIN_ROOT", "CLAUDE_PLUGIN_ROOT")
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SERVER_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_TYPES = ("stdio", "http", "sse", "streamable-http")


@dataclass(frozen=True)
class StdioTarget:
    """A server run as a child process speaking MCP on stdin/stdout."""

    command: str
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None


@dataclass(frozen=True)
class HttpTarget:
    """A server reached over HTTP: Streamable HTTP (``http``) or the legacy HTTP+SSE (``sse``)."""

    url: str
    transport: Literal["http", "sse"] = "http"
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ServerSpec:
    """One server a client connects to, wherever it was declared."""

    name: str
    target: StdioTarget | HttpTarget
    plugin: str | None = None
    source: str = "(code)"
    # Atrium's own registry servers (through the gateway): their token is Atrium's to add.
    registry: bool = False


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class _StdioEntry(_Entry):
    type: Literal["stdio"] = "stdio"
    command: str = Field(min_length=1)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None


class _HttpEntry(_Entry):
    type: Literal["http", "sse", "streamable-http"]
    url: str = Field(min_length=1)
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        # Checked after expansion too; here only what is certainly wrong as written.
        if "${" not in url and not re.match(r"^https?://[^\s/]+", url):
            raise ValueError("must be an http:// or https:// URL")
        return url


class _File(_Entry):
    mcpServers: dict[str, dict[str, Any]]  # the file's own key


def load_mcp_json(
    path: Path,
    environ: Mapping[str, str],
    *,
    plugin: str | None = None,
    shown: str | None = None,
) -> list[ServerSpec]:
    """Every server of ``path``; raises ``ConfigError`` listing every problem found."""
    source = shown or str(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([Problem(source, "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(source, f"cannot be read: {exc}")]) from None
    except json.JSONDecodeError as exc:
        problem = Problem(source, f"not valid JSON: {exc.msg}", line=exc.lineno, column=exc.colno)
        raise ConfigError([problem]) from None
    return parse_mcp_json(document, environ, source=source, plugin=plugin, folder=path.parent)


def load_plugin(folder: Path, environ: Mapping[str, str]) -> list[ServerSpec]:
    """A plugin folder's ``.mcp.json``: its servers, with ``${..._PLUGIN_ROOT}`` the folder and
    the plugin named after the folder."""
    plugin = folder.resolve().name
    root = str(folder.resolve())
    scoped = {**environ, **dict.fromkeys(PLUGIN_ROOT_VARIABLES, root)}
    return load_mcp_json(folder / ".mcp.json", scoped, plugin=plugin)


def parse_mcp_json(
    document: Any,
    environ: Mapping[str, str],
    *,
    source: str = "(code)",
    plugin: str | None = None,
    folder: Path | None = None,
) -> list[ServerSpec]:
    """The servers of a parsed ``.mcp.json`` document (see ``load_mcp_json``)."""
    try:
        parsed = _File.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(_problems(exc, source, None, "")) from None
    return each_checked(
        functools.partial(_server, name, raw, environ, source, plugin, folder)
        for name, raw in parsed.mcpServers.items()
    )


def _server(
    name: str,
    raw: dict[str, Any],
    environ: Mapping[str, str],
    source: str,
    plugin: str | None,
    folder: Path | None,
) -> ServerSpec:
    prefix = f"mcpServers.{name}"
    if not _SERVER_NAME.match(name):
        message = "a server name is 1-64 letters, digits, '_', '-' or '.'"
        raise ConfigError([Problem(source, message, key_path=prefix, server=name)])
    kind = raw.get("type", "stdio")
    if kind not in _TYPES:
        message = f"type must be one of {', '.join(map(repr, _TYPES))}, not {kind!r}"
        raise ConfigError([Problem(source, message, key_path=f"{prefix}.type", server=name)])
    model: type[_StdioEntry] | type[_HttpEntry] = _StdioEntry if kind == "stdio" else _HttpEntry
    if model is _StdioEntry and "command" not in raw and "url" in raw:
        message = 'has \'url\' but no \'type\': say "type": "http" (or "sse")'
        raise ConfigError([Problem(source, message, key_path=prefix, server=name)])
    try:
        entry = model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_problems(exc, source, name, prefix)) from None
    expand = _Expander(environ, source, name, prefix)
    target = _target(entry, expand, folder)
    expand.raise_problems()
    return ServerSpec(name, target, plugin=plugin, source=source)


def _target(
    entry: _StdioEntry | _HttpEntry, expand: _Expander, folder: Path | None
) -> StdioTarget | HttpTarget:
    if isinstance(entry, _StdioEntry):
        cwd = expand(entry.cwd, "cwd") if entry.cwd is not None else None
        where = Path(cwd) if cwd else None
        if where is not None and not where.is_absolute() and folder is not None:
            where = folder / where
        return StdioTarget(
            command=expand(entry.command, "command"),
            args=tuple(expand(arg, f"args[{i}]") for i, arg in enumerate(entry.args)),
            env={k: expand(v, f"env.{k}") for k, v in entry.env.items()},
            cwd=where,
        )
    url = expand(entry.url, "url")
    if url and not re.match(r"^https?://[^\s/]+", url):
        expand.problem("url", f"must be an http:// or https:// URL once expanded, not {url!r}")
    return HttpTarget(
        url=url,
        transport="sse" if entry.type == "sse" else "http",
        headers={k: expand(v, f"headers.{k}") for k, v in entry.headers.items()},
    )


class _Expander:
    """``${VAR}`` / ``${VAR:-default}`` expansion that keeps every unset variable as a problem."""

    def __init__(self, environ: Mapping[str, str], source: str, server: str, prefix: str) -> None:
        self._environ = environ
        self._source, self._server, self._prefix = source, server, prefix
        self._problems: list[Problem] = []

    def __call__(self, text: str, key: str) -> str:
        def value(match: re.Match[str]) -> str:
            variable, default = match.group(1), match.group(2)
            found = self._environ.get(variable)
            if found is not None and (found or default is None):
                return found
            if default is not None:
                return default  # ${VAR:-x}: unset or empty takes the default, as in a shell
            self.problem(key, f"${{{variable}}} is not set (give it a value or a default)")
            return ""

        return _REFERENCE.sub(value, text)

    def problem(self, key: str, message: str) -> None:
        path = f"{self._prefix}.{key}"
        self._problems.append(Problem(self._source, message, key_path=path, server=self._server))

    def raise_problems(self) -> None:
        if self._problems:
            raise ConfigError(self._problems)


def _problems(exc: ValidationError, source: str, server: str | None, prefix: str) -> list[Problem]:
    problems = []
    for error in exc.errors():
        loc = ".".join(str(part) for part in error["loc"])
        path = ".".join(part for part in (prefix, loc) if part)
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        problems.append(Problem(source, message, key_path=path, server=server))
    return problems
