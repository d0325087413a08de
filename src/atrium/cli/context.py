"""What every command shares: the settings (built once, on first use) and the consoles."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine
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

        return run_interruptible(run())

    def print_json(self, data: Any) -> None:
        # Plain print: Rich would wrap or colour the text and break `| jq`.
        print(json.dumps(data, indent=2, sort_keys=False))


def run_interruptible(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``, where a Ctrl-C cancels ``main`` and, once it has unwound, raises
    ``KeyboardInterrupt`` (a second Ctrl-C raises it at once), whichever thread takes SIGINT.

    ``asyncio.run`` does the same with a Python signal handler, and Python runs one only when
    the main thread next executes bytecode. The kernel gives a signal sent to the process to
    any of its threads that does not block it at that moment (aiosqlite's, an executor worker),
    not always the main one; then the main thread sleeps on in ``select()``, and a command
    waiting on a stalled model stream never hears of the Ctrl-C. ``loop.add_signal_handler``
    also sets the wakeup fd, which the C-level handler writes to from whichever thread took
    the signal: the loop wakes and calls the handler.
    """
    interrupted = False

    async def interruptible() -> T:
        task = asyncio.current_task()
        if task is None or threading.current_thread() is not threading.main_thread():
            # Only the main thread's loop gets signals (tests run commands in threads too).
            return await main

        def interrupt() -> None:
            nonlocal interrupted
            if interrupted:
                raise KeyboardInterrupt
            interrupted = True
            task.cancel()

        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, interrupt)
        try:
            return await main
        finally:
            loop.remove_signal_handler(signal.SIGINT)

    try:
        return asyncio.run(interruptible())
    except asyncio.CancelledError:
        if interrupted:
            raise KeyboardInterrupt from None
        raise


def _width() -> int | None:
    # A pipe has no width; Rich would assume 80 and wrap every row of a table.
    return None if sys.stdout.isatty() else 160


def state(ctx: typer.Context) -> CliState:
    obj = ctx.find_root().obj
    if not isinstance(obj, CliState):
        obj = ctx.find_root().obj = CliState()
    return obj
