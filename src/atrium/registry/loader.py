"""Loading and validating the server registry from ``services/mcp/*.yaml``.

All files are read and every problem is collected before anything is returned, so a caller
either gets a whole, valid ``Registry`` or a ``ConfigError`` listing every problem (file, line,
server, key path) and applies nothing. Checks that span files live here: the port range from
the settings, one name and one port per server, extension manifests.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from atrium import yamlio
from atrium.errors import ConfigError, NotFoundError, Problem, display_path
from atrium.registry.schema import (
    TRANSPORTS,
    ExtensionSpec,
    ManifestFile,
    ServerConfig,
    ServersFile,
    port_of,
)
from atrium.settings import Settings

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class ServerEntry:
    """A validated server and the file it came from (relative to the project)."""

    name: str
    config: ServerConfig
    source: str


@dataclass(frozen=True)
class Extension:
    """A validated ``extensions/mcp/<name>/manifest.yaml``."""

    name: str
    binary: str
    description: str
    port: int | None
    build_type: str
    enabled: bool
    source: str
    build_command: tuple[str, ...] = ()


@dataclass(frozen=True)
class Registry:
    servers: Mapping[str, ServerEntry] = field(default_factory=lambda: MappingProxyType({}))
    extensions: Mapping[str, Extension] = field(default_factory=lambda: MappingProxyType({}))
    warnings: tuple[Problem, ...] = ()

    def get(self, name: str) -> ServerEntry:
        try:
            return self.servers[name]
        except KeyError:
            raise NotFoundError("server", name, list(self.servers)) from None

    def __iter__(self) -> Iterator[ServerEntry]:
        return iter(self.servers.values())


def server_files(settings: Settings) -> list[Path]:
    if not settings.mcp_dir.is_dir():
        return []
    return sorted([*settings.mcp_dir.glob("*.yaml"), *settings.mcp_dir.glob("*.yml")])


def load_registry(settings: Settings, directory: Path | None = None) -> Registry:
    """Read every server file (of ``directory``, default ``services/mcp``) and the manifests."""
    problems: list[Problem] = []
    entries: list[tuple[ServerEntry, Any]] = []
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]) if directory else None
    for path in files if files is not None else server_files(settings):
        shown = display_path(path, settings.project_dir)
        parsed = _parse(path, shown, ServersFile, problems)
        if parsed is not None:
            model, document = parsed
            for name, config in model.mcp_servers.items():
                entries.append((ServerEntry(name, config, shown), document))
    problems += _range_problems(entries, settings.port_range)
    problems += _duplicate_problems(entries)
    extensions = _load_extensions(settings, problems)
    if problems:
        raise ConfigError(sorted(problems, key=_reading_order))
    servers = {entry.name: entry for entry, _ in sorted(entries, key=lambda e: e[0].name)}
    return Registry(
        servers=MappingProxyType(servers),
        extensions=MappingProxyType(extensions),
        warnings=(
            *_unset_env_warnings(servers.values(), settings),
            *_dev_mode_warnings(servers.values()),
        ),
    )


def _parse(path: Path, shown: str, model: type[M], problems: list[Problem]) -> tuple[M, Any] | None:
    try:
        document = yamlio.load(path, shown)
    except yamlio.YamlSyntaxError as exc:
        problems.append(exc.problem)
        return None
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(shown, f"cannot read the file: {exc}"))
        return None
    if document is None:
        problems.append(Problem(shown, f"the file is empty; expected {_top_key(model)}:"))
        return None
    try:
        return model.model_validate(document), document
    except ValidationError as exc:
        problems.extend(validation_problems(exc, shown, document))
        return None


def _reading_order(problem: Problem) -> tuple[str, int, int]:
    return (problem.source, problem.line or 0, problem.column or 0)


def _top_key(model: type[BaseModel]) -> str:
    return next(iter(model.model_fields))


def validation_problems(exc: ValidationError, shown: str, document: Any) -> list[Problem]:
    """One ``Problem`` per pydantic error, with the server name, key path and line."""
    problems = []
    for error in exc.errors():
        loc = _document_loc(error["loc"])
        server = str(loc[1]) if len(loc) > 1 and loc[0] == "mcp_servers" else None
        where = yamlio.position(document, loc)
        problems.append(
            Problem(
                shown,
                _message(error),
                key_path=yamlio.key_path(loc),
                server=server,
                line=where[0] if where else None,
                column=where[1] if where else None,
            )
        )
    return problems


_TAGS = ("literal", "$env", "$file")


def _document_loc(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    # pydantic adds "[key]" for a bad mapping key and the tag of a tagged union before the
    # field ("$env", "$env"); the user's document has neither, so drop them.
    out: list[int | str] = []
    if loc and loc[-1] == "literal":
        loc = loc[:-1]  # the tag of a literal value, added last
    for index, part in enumerate(loc):
        if part == "[key]":
            continue
        if part in _TAGS and index + 1 < len(loc) and loc[index + 1] == part:
            continue
        if index == 2 and loc[0] == "mcp_servers" and part in TRANSPORTS:
            continue  # the model of a transport, picked by ``transport``
        out.append(part)
    return tuple(out)


def _message(error: Any) -> str:
    message = str(error["msg"])
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    elif error["type"] == "missing":
        message = "required key is missing"
    elif error["type"] in ("tuple_type", "list_type"):
        message = "should be a list"
    elif error["type"] == "dict_type":
        message = "should be a mapping"
    return message


def _range_problems(
    entries: list[tuple[ServerEntry, Any]], port_range: tuple[int, int]
) -> list[Problem]:
    low, high = port_range
    problems = []
    for entry, document in entries:
        port = port_of(entry.config)
        if port is not None and not low <= port <= high:
            loc = ("mcp_servers", entry.name, "port")
            problems.append(
                _located(
                    entry,
                    document,
                    loc,
                    f"port {port} is outside the configured range {low}-{high}",
                )
            )
    return problems


def _duplicate_problems(entries: list[tuple[ServerEntry, Any]]) -> list[Problem]:
    problems = []
    by_name: dict[str, ServerEntry] = {}
    by_port: dict[int, ServerEntry] = {}
    for entry, document in entries:
        first = by_name.setdefault(entry.name, entry)
        if first is not entry:
            problems.append(
                _located(
                    entry,
                    document,
                    ("mcp_servers", entry.name),
                    f"server '{entry.name}' is also defined in {first.source}",
                )
            )
            continue
        port = port_of(entry.config)
        if port is None:
            continue
        owner = by_port.setdefault(port, entry)
        if owner is not entry:
            problems.append(
                _located(
                    entry,
                    document,
                    ("mcp_servers", entry.name, "port"),
                    f"port {port} is already used by server '{owner.name}' in {owner.source}",
                )
            )
    return problems


def _located(entry: ServerEntry, document: Any, loc: tuple[str, ...], message: str) -> Problem:
    where = yamlio.position(document, loc)
    return Problem(
        entry.source,
        message,
        key_path=yamlio.key_path(loc),
        server=entry.name,
        line=where[0] if where else None,
        column=where[1] if where else None,
    )


def _load_extensions(settings: Settings, problems: list[Problem]) -> dict[str, Extension]:
    found: dict[str, Extension] = {}
    root = settings.extensions_dir
    manifests = sorted(root.glob("*/manifest.yaml")) if root.is_dir() else []
    for path in manifests:
        shown = display_path(path, settings.project_dir)
        parsed = _parse(path, shown, ManifestFile, problems)
        if parsed is None:
            continue
        spec = parsed[0].extension
        folder = path.parent.name
        if spec.name != folder:
            where = yamlio.position(parsed[1], ("extension", "name"))
            problems.append(
                Problem(
                    shown,
                    f"name '{spec.name}' must match its folder '{folder}'",
                    key_path="extension.name",
                    line=where[0] if where else None,
                    column=where[1] if where else None,
                )
            )
            continue
        if (spec.build_type == "external") != bool(spec.build_command):
            problems.append(_build_command_problem(spec, shown, parsed[1]))
            continue
        found[spec.name] = Extension(
            spec.name,
            spec.binary,
            spec.description,
            spec.port,
            spec.build_type,
            spec.enabled,
            shown,
            build_command=spec.build_command or (),
        )
    return found


def load_extensions(settings: Settings) -> Mapping[str, Extension]:
    """Only the manifests under ``extensions/mcp/`` (``atrium build mcp`` needs no server file
    to be valid), or a ``ConfigError`` listing every problem in them."""
    problems: list[Problem] = []
    found = _load_extensions(settings, problems)
    if problems:
        raise ConfigError(sorted(problems, key=_reading_order))
    return MappingProxyType(found)


def _build_command_problem(spec: ExtensionSpec, shown: str, document: Any) -> Problem:
    """``build_command`` is what an ``external`` build runs, and only that build."""
    if spec.build_type == "external":
        loc = ("extension", "build_type")
        message = (
            "build_type 'external' needs build_command: the program and its arguments,"
            " e.g. [make, install]"
        )
    else:
        loc = ("extension", "build_command")
        message = f"build_command is for build_type 'external', not '{spec.build_type}'"
    where = yamlio.position(document, loc)
    return Problem(
        shown,
        message,
        key_path="extension.build_command",
        line=where[0] if where else None,
        column=where[1] if where else None,
    )


def _unset_env_warnings(entries: Any, settings: Settings) -> Iterator[Problem]:
    for entry in entries:
        for key, variable in entry.config.env_references():
            if variable not in settings.environ:
                yield Problem(
                    entry.source,
                    f"environment variable {variable} is not set (needed when the server starts)",
                    key_path=f"mcp_servers.{entry.name}.{key}",
                    server=entry.name,
                )


def _dev_mode_warnings(entries: Any) -> Iterator[Problem]:
    """Every server that opts into ``oauth.dev_mode`` (atrium.gateway.access), loudly."""
    for entry in entries:
        if entry.config.oauth.dev_mode:
            yield Problem(
                entry.source,
                "DEV MODE: callers without a token may call every tool this server allows"
                " (tools.public, when set, still narrows them); local development only",
                key_path=f"mcp_servers.{entry.name}.oauth.dev_mode",
                server=entry.name,
            )
