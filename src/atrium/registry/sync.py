"""``cloud sync local mcp``: the server YAML on disk and the servers in the store, both ways.

A sync is planned first (a list of changes that can be shown as a diff) and applied second, so
``--direction ... `` without ``-y`` shows exactly what ``-y`` would do and changes nothing.

to-db upserts every server of the YAML and disables, never deletes, a stored server that is gone
from disk (its row keeps its history and the audit trail keeps its name). to-disk writes each
stored server back to its file, or ``<name>.yaml`` for a new one, merging into the existing
YAML so that the user's comments and key order survive.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from ruamel.yaml.comments import CommentedMap

from atrium import yamlio
from atrium.errors import display_path
from atrium.registry.loader import Registry
from atrium.registry.schema import ServerConfig, default_form, port_of
from atrium.store import Store
from atrium.store.servers import ServerRecord

ChangeKind = Literal["add", "update", "disable"]
REMOVED_FROM_DISK = "removed from disk"

# Written even when they hold their default value: they are what a reader looks for first.
_ALWAYS_WRITTEN = ("binary", "package", "port", "enabled", "description")


@dataclass(frozen=True)
class DbChange:
    name: str
    kind: ChangeKind
    record: ServerRecord
    fields: tuple[tuple[str, Any, Any], ...] = ()  # (key path, before, after)


@dataclass(frozen=True)
class FileChange:
    path: Path
    shown: str
    before: str | None
    after: str

    def diff(self) -> str:
        return "".join(self._diff_lines())

    def counts(self) -> tuple[int, int]:
        """Lines (added, removed) by the write."""
        changed = [line for line in self._diff_lines() if not line.startswith(("+++", "---"))]
        added = sum(line.startswith("+") for line in changed)
        return added, sum(line.startswith("-") for line in changed)

    def _diff_lines(self) -> list[str]:
        old = (self.before or "").splitlines(keepends=True)
        new = self.after.splitlines(keepends=True)
        label = self.shown if self.before is not None else "/dev/null"
        return list(difflib.unified_diff(old, new, label, self.shown))


@dataclass(frozen=True)
class SyncStatus:
    """What each direction of a sync would change now: ``cloud status``."""

    to_db: list[DbChange]
    to_disk: list[FileChange]


async def sync_status(
    store: Store, registry: Registry, directory: Path, project_dir: Path
) -> SyncStatus:
    """Both plans against one reading of the store; nothing is written."""
    stored = await store.servers.list()
    return SyncStatus(plan_to_db(registry, stored), plan_to_disk(stored, directory, project_dir))


def record_for(name: str, config: ServerConfig, source: str | None) -> ServerRecord:
    return ServerRecord(
        name=name,
        config=config.to_json(),
        enabled=config.enabled,
        transport=config.transport,
        port=port_of(config),
        source=source,
    )


def plan_to_db(registry: Registry, stored: Sequence[ServerRecord]) -> list[DbChange]:
    """The changes that make the store match ``registry``."""
    current = {record.name: record for record in stored}
    changes = []
    for entry in registry:
        wanted = record_for(entry.name, entry.config, entry.source)
        before = current.get(entry.name)
        if before is None:
            changes.append(DbChange(entry.name, "add", wanted))
        elif _differs(before, wanted):
            fields = tuple(_field_changes(before.config, wanted.config))
            changes.append(DbChange(entry.name, "update", wanted, fields))
    for name, record in current.items():
        if name not in registry.servers and record.disabled_reason != REMOVED_FROM_DISK:
            config = {**record.config, "enabled": False}
            disabled = replace(
                record, config=config, enabled=False, disabled_reason=REMOVED_FROM_DISK
            )
            fields = (("enabled", record.enabled, False),) if record.enabled else ()
            changes.append(DbChange(name, "disable", disabled, fields))
    return changes


def _differs(before: ServerRecord, wanted: ServerRecord) -> bool:
    return (
        before.config != wanted.config
        or before.source != wanted.source
        or before.disabled_reason is not None
    )


def _field_changes(before: Any, after: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        out = []
        for key in [*before, *(k for k in after if k not in before)]:
            sub = f"{path}.{key}" if path else str(key)
            out += _field_changes(before.get(key), after.get(key), sub)
        return out
    return [] if before == after else [(path, before, after)]


def plan_to_disk(
    records: Sequence[ServerRecord], directory: Path, project_dir: Path
) -> list[FileChange]:
    """The file writes that put every stored server into ``directory`` as YAML."""
    by_file: dict[Path, list[ServerRecord]] = {}
    for record in records:
        by_file.setdefault(_file_for(record, directory, project_dir), []).append(record)
    changes = []
    for path, group in sorted(by_file.items()):
        before = path.read_text(encoding="utf-8") if path.exists() else None
        shown = display_path(path, project_dir)
        document = yamlio.loads(before, shown) if before else None
        if not isinstance(document, CommentedMap) or not isinstance(
            document.get("mcp_servers"), CommentedMap
        ):
            document = CommentedMap(mcp_servers=CommentedMap())
        servers = document["mcp_servers"]
        for record in sorted(group, key=lambda r: r.name):
            existing = servers.get(record.name)
            servers[record.name] = yamlio.merge_into(
                existing if existing is not None else CommentedMap(),
                yaml_form(record.config, existing),
            )
        after = yamlio.dumps(document)
        if after != before:
            changes.append(FileChange(path, shown, before, after))
    return changes


def _file_for(record: ServerRecord, directory: Path, project_dir: Path) -> Path:
    if record.source:
        source = (project_dir / record.source).resolve()
        if source.parent == directory.resolve():
            return source
    return directory / f"{record.name}.yaml"


def yaml_form(config: Mapping[str, Any], existing: Any = None) -> dict[str, Any]:
    """``config`` without the defaults a user would not write, unless the file already has them.

    A new entry also gets the seed's headline keys (``_ALWAYS_WRITTEN``); an existing entry gets
    only what it needs, so a file that already says the same thing is left byte for byte.
    """
    defaults = default_form(str(config.get("transport", "http")))
    headline = _ALWAYS_WRITTEN if existing is None else ()
    return _tidy(config, defaults, existing, headline)


def _tidy(
    config: Mapping[str, Any], defaults: Any, existing: Any, headline: tuple[str, ...] = ()
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    present = existing if isinstance(existing, Mapping) else {}
    base = defaults if isinstance(defaults, Mapping) else {}
    for key, value in config.items():
        default = base.get(key)
        if isinstance(value, Mapping) and isinstance(default, Mapping) and value:
            nested = _tidy(value, default, present.get(key))
            if nested or key in present:
                out[key] = nested
        elif value != default or key in present or (key in headline and value is not None):
            out[key] = value
    return out


def write_files(changes: Sequence[FileChange]) -> None:
    """Write each file atomically: a crash leaves the old file or the new one, never half."""
    for change in changes:
        change.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = change.path.with_name(f".{change.path.name}.tmp")
        temporary.write_text(change.after, encoding="utf-8")
        os.replace(temporary, change.path)


async def sync_to_store(store: Store, registry: Registry) -> list[DbChange]:
    """Apply to-db: make the store match ``registry``; return what changed."""
    changes = plan_to_db(registry, await store.servers.list())
    if changes:
        await store.servers.save([change.record for change in changes])
    return changes
