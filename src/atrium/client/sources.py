"""Where a client's servers come from: ``.mcp.json`` files, plugin folders, Atrium's registry.

A ``--config`` path that is a folder is a plugin: its ``.mcp.json``, with the folder as
``${ATRIUM_PLUGIN_ROOT}`` and its servers namespaced by the plugin. The registry's servers are
reached as any client reaches them, through the gateway, with a token Atrium mints for each
(``token_for``; the CLI's is the operator's, or the acting caller's).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from atrium.client.connect import gateway_url
from atrium.client.mcpjson import HttpTarget, ServerSpec, load_mcp_json, load_plugin
from atrium.errors import each_checked
from atrium.registry.loader import ServerEntry
from atrium.settings import Settings

TokenFor = Callable[[str], str | None]


def file_specs(paths: Sequence[Path], environ: Mapping[str, str]) -> list[ServerSpec]:
    """Every server of the given ``.mcp.json`` files and plugin folders; all problems at once."""
    loaded = each_checked(functools.partial(_load, path, environ) for path in paths)
    return [spec for specs in loaded for spec in specs]


def _load(path: Path, environ: Mapping[str, str]) -> list[ServerSpec]:
    return load_plugin(path, environ) if path.is_dir() else load_mcp_json(path, environ)


def registry_specs(
    settings: Settings, entries: Iterable[ServerEntry], token_for: TokenFor
) -> list[ServerSpec]:
    """The enabled servers of Atrium's registry, each through the gateway with its own token."""
    specs = []
    for entry in entries:
        if not entry.config.enabled:
            continue
        token = token_for(entry.name)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        target = HttpTarget(gateway_url(settings, entry.name), "http", headers)
        specs.append(ServerSpec(entry.name, target, source=entry.source, registry=True))
    return specs
