"""What every command shares: the settings (built once, on first use) and the consoles."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console

from atrium.settings import Settings, load_settings

if TYPE_CHECKING:  # the registry (pydantic's models) and the store (SQLAlchemy) load only for
    # the commands that use them
    from atrium.registry.loader import Registry
    from atrium.store import Store

T = TypeVar("T")


@dataclass
class CliState:
    project_option: Path | None = None
    out: Console = field(default_factory=lambda: Console(width=_width()))
    err: Console = field(default_factory=lambda: Console(stderr=True, soft_wrap=True))

    @cached_property
    def settings(self) -> Settings:
        return load_settings(self.project_option)

    def registry(self, directory: Path | None = None) -> Registry:
        """The validated registry; warnings (unset ``$env`` variables) go to stderr."""
        from atrium.registry.loader import load_registry

        registry = load_registry(self.settings, directory)
        for warning in registry.warnings:
            self.err.print(f"[yellow]warning:[/] {warning}", highlight=False, markup=True)
        return registry

    def with_store(self, work: Callable[[Store], Awaitable[T]]) -> T:
        from atrium.store import Store

        async def run() -> T:
            store = await Store.open(self.settings)
            try:
                return await work(store)
            finally:
                await store.close()

        return asyncio.run(run())

    def print_json(self, data: Any) -> None:
        # Plain print: Rich would wrap or colour the text and break `| jq`.
        print(json.dumps(data, indent=2, sort_keys=False))


def _width() -> int | None:
    # A pipe has no width; Rich would assume 80 and wrap every row of a table.
    return None if sys.stdout.isatty() else 160


def state(ctx: typer.Context) -> CliState:
    obj = ctx.find_root().obj
    if not isinstance(obj, CliState):
        obj = ctx.find_root().obj = CliState()
    return obj
