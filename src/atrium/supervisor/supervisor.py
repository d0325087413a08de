"""The supervisor: runs every enabled hosted server and keeps it up.

A server that exits unexpectedly is restarted after an exponential backoff; one that crashes
``max_crashes`` times within ``window_s`` is marked ``failed`` and left alone until an operator
restarts it. Every change of state is written to the runtime state file at once.

On Linux the supervisor makes itself a child subreaper (prctl PR_SET_CHILD_SUBREAPER), so a
grandchild orphaned by a crashed server (the stdio server behind a killed bridge) is reparented
to us rather than to init, and is found and reaped instead of running on.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace

from atrium.errors import AtriumError
from atrium.registry.loader import Registry, ServerEntry
from atrium.registry.schema import RemoteServer, ServerConfig, port_of
from atrium.registry.secrets import stored_secrets
from atrium.runstate import RuntimeState, ServerStatus, run_dir, write_state
from atrium.settings import Settings
from atrium.supervisor.environment import marks, new_marker
from atrium.supervisor.placement import elsewhere, listen_address
from atrium.supervisor.process import ManagedProcess
from atrium.supervisor.reaper import reap_orphans
from atrium.supervisor.spec import LaunchError, LaunchSpec, launch_spec
from atrium.supervisor.zygote import Zygote, start_zygote

logger = logging.getLogger(__name__)

PR_SET_CHILD_SUBREAPER = 36


@dataclass(frozen=True)
class RestartPolicy:
    max_crashes: int = 5
    window_s: float = 60.0
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    health_deadline_s: float = 60.0

    def backoff(self, crashes: int) -> float:
        return float(min(self.backoff_base_s * 2 ** max(crashes - 1, 0), self.backoff_max_s))


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        policy: RestartPolicy | None = None,
        *,
        load_registry: Callable[[], Awaitable[Registry]] | None = None,
        marker: str | None = None,
        zygote: Zygote | None = None,
    ) -> None:
        """``marker`` and ``zygote``: a zygote started early with that marker (``atrium
        start`` starts one before it imports the gateway), which this supervisor then owns."""
        self.settings = settings
        self.registry = registry
        self.policy = policy or RestartPolicy()
        self._load_registry = load_registry
        self.state = RuntimeState(os.getpid(), time.time())
        self._processes: dict[str, ManagedProcess] = {}
        # Every process we spawned and the event loop has not reaped yet: never an orphan to
        # reap, even while it is being stopped (reaping it would steal its exit status).
        self._spawned: list[ManagedProcess] = []
        # A child being spawned is ours before we know its pid: no reaping meanwhile.
        self._spawning = 0
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._crashes: dict[str, deque[float]] = {}
        self._closing = False
        self.marker = marker or new_marker()
        self._subreaper = False
        # Forks the built-in servers (``atrium.supervisor.zygote``); started when first needed.
        self._zygote = zygote
        self._zygote_lock = asyncio.Lock()
        for entry in registry:
            if _here(entry):
                self.state.servers[entry.name] = _status(entry)

    def hosted(self, names: Iterable[str] | None = None) -> list[ServerEntry]:
        """The servers to run: the named ones, or every enabled hosted server of this host."""
        if names is None:
            return [e for e in self.registry if _runs(e)]
        entries = [self.registry.get(name) for name in names]
        for entry in entries:
            if isinstance(entry.config, RemoteServer):
                raise LaunchError(f"server '{entry.name}' is remote: there is no process to start")
            if (host := elsewhere(entry.config)) is not None:
                raise LaunchError(
                    f"server '{entry.name}' runs on {host} (backend.host in {entry.source}):"
                    " the supervisor of that host starts it"
                )
            if not entry.config.enabled:
                raise LaunchError(
                    f"server '{entry.name}' is disabled (enabled: false in {entry.source})"
                )
        return entries

    async def start(self, names: Iterable[str] | None = None) -> dict[str, str | None]:
        """Start servers concurrently; return each one's error, or ``None`` when it runs."""
        self._subreaper = self._subreaper or _become_subreaper()
        run_dir(self.settings.state_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
        entries = [e for e in self.hosted(names) if e.name not in self._running()]
        results = await asyncio.gather(*(self._start_one(e) for e in entries))
        return {entry.name: error for entry, error in zip(entries, results, strict=True)}

    def _running(self) -> set[str]:
        return {
            n
            for n, s in self.state.servers.items()
            if s.state in ("starting", "running", "backoff")
        }

    async def _start_one(self, entry: ServerEntry) -> str | None:
        """First start: a failure is reported at once and the server is left ``failed``."""
        outcome = await self._launch(entry)
        if isinstance(outcome, str):
            return outcome
        self._watchers[entry.name] = asyncio.create_task(self._watch(entry.name, outcome))
        return None

    async def _launch(self, entry: ServerEntry) -> ManagedProcess | str:
        """Spawn and wait until healthy; the process, or the error (state ``failed``)."""
        status = self.state.servers.setdefault(entry.name, _status(entry))
        try:
            secrets = await stored_secrets(entry, self.settings)
            spec = launch_spec(entry, self.settings, secrets)
        except AtriumError as exc:
            self._set(status, state="failed", last_error=str(exc), pid=None, started_at=None)
            return str(exc)
        spec = replace(spec, env={**spec.env, **self._marks()})
        status.binary, status.version = spec.binary_path, spec.version
        process = ManagedProcess(spec)
        self._processes[entry.name] = process
        self._spawned.append(process)
        self._set(status, state="starting", last_error=None)
        try:
            self._spawning += 1
            try:
                await process.spawn(await self._zygote_for(spec))
            finally:
                self._spawning -= 1
            self._set(status, pid=process.pid, started_at=process.started_at)
            await process.wait_healthy(self.policy.health_deadline_s)
        except AtriumError as exc:
            await process.stop(grace_s=2)
            self._processes.pop(entry.name, None)
            self._set(status, state="failed", last_error=str(exc), pid=None, started_at=None)
            return str(exc)
        self._set(status, state="running")
        logger.info("server %s running on port %s (pid %s)", entry.name, spec.port, process.pid)
        return process

    def _marks(self) -> dict[str, str]:
        return marks(self.marker)

    async def _zygote_for(self, spec: LaunchSpec) -> Zygote | None:
        """The zygote to fork ``spec``'s server from, started when first needed; None when the
        server is not a built-in one or forking cannot work here (no subreaper, no pidfd)."""
        if not (spec.builtin and self._subreaper and hasattr(os, "pidfd_open")):
            return None
        async with self._zygote_lock:
            if self._closing:
                return None
            if self._zygote is None or not self._zygote.alive:
                if self._zygote is not None:
                    await self._zygote.close()  # reap it, close its pipes
                try:
                    self._zygote = start_zygote(self.settings, self._marks())
                except OSError as exc:
                    logger.warning("cannot start the zygote (%s): servers start one by one", exc)
                    return None
            return self._zygote

    async def _watch(self, name: str, process: ManagedProcess) -> None:
        """Restart ``name`` whenever it dies, with backoff, until it crashes too often."""
        status = self.state.servers[name]
        crashes = self._crashes.setdefault(name, deque())
        while True:
            assert process.process is not None
            code = await process.process.wait()
            self._reap()
            if self._closing or status.state == "stopping":
                return
            error = f"exited unexpectedly with code {code}"
            while True:
                logger.warning("server %s %s", name, error)
                if not await self._backoff(status, crashes, error):
                    return
                status.restarts += 1
                outcome = await self._launch(self.registry.get(name))
                if not isinstance(outcome, str):
                    process = outcome
                    break
                error = outcome

    async def _backoff(self, status: ServerStatus, crashes: deque[float], error: str) -> bool:
        """Record a crash; wait before the next try, or give up (``failed``) and say so."""
        now = time.monotonic()
        crashes.append(now)
        while crashes and now - crashes[0] > self.policy.window_s:
            crashes.popleft()
        if len(crashes) >= self.policy.max_crashes:
            window = f"{self.policy.window_s:g} s"
            last = f"{error}; {len(crashes)} crashes in {window}"
            self._set(status, state="failed", pid=None, started_at=None, last_error=last)
            return False
        self._set(status, state="backoff", pid=None, started_at=None, last_error=error)
        await asyncio.sleep(self.policy.backoff(len(crashes)))
        return not self._closing and status.state == "backoff"

    def mark_ready(self) -> None:
        self.state.ready = True
        write_state(self.settings.state_dir, self.state)

    async def stop(self, names: Iterable[str] | None = None) -> None:
        targets = (
            list(self._processes) if names is None else [self.registry.get(n).name for n in names]
        )
        await asyncio.gather(*(self._stop_one(name) for name in targets))

    async def _stop_one(self, name: str) -> None:
        status = self.state.servers.get(name)
        process = self._processes.pop(name, None)
        watcher = self._watchers.get(name)
        # A server between two tries (backoff) has no process, only its watcher to cancel.
        if status is None or (process is None and (watcher is None or watcher.done())):
            return
        self._set(status, state="stopping")
        watcher = self._watchers.pop(name, None)
        if process is not None:
            await process.stop()
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        # The watcher may have been restarting the server when it was cancelled.
        if (restarted := self._processes.pop(name, None)) is not None:
            await restarted.stop()
        self._set(status, state="stopped", pid=None, started_at=None)

    async def reload(self) -> Reloaded:
        """Read the registry as it is now and stop what left it.

        An invalid registry raises before anything changes. A server removed from it, disabled,
        turned remote or moved to another host stops; all but a disabled one leave the state,
        so ``status`` no longer shows them. Running servers whose configuration changed are
        only named: the caller restarts them (``restart(..., also=changed)``).
        """
        if self._load_registry is None:
            return Reloaded()
        new = await self._load_registry()
        old, running = self.registry, self._running()
        gone = [name for name in self.state.servers if not _runs(new.servers.get(name))]
        await asyncio.gather(*(self._stop_one(name) for name in gone))
        self.registry = new
        for name in gone:
            if name not in new.servers or not _here(new.servers[name]):
                del self.state.servers[name]
                self._crashes.pop(name, None)
        changed = [n for n in running if n not in gone and _config(new, n) != _config(old, n)]
        for name in changed:
            fresh = _status(new.servers[name])
            self._set(self.state.servers[name], port=fresh.port, transport=fresh.transport)
        write_state(self.settings.state_dir, self.state)
        return Reloaded(tuple(n for n in gone if n in running), tuple(changed))

    async def restart(
        self, names: Iterable[str] | None = None, *, also: Iterable[str] = ()
    ) -> dict[str, str | None]:
        """Stop and start again ``names`` (or every enabled server) and the servers ``also``
        names; their crash counts start over."""
        targets = list(dict.fromkeys([*(e.name for e in self.hosted(names)), *also]))
        await self.stop(targets)
        for name in targets:
            self._crashes.pop(name, None)
        return await self.start(targets)

    async def close(self) -> None:
        self._closing = True
        await self.stop()
        async with self._zygote_lock:
            if self._zygote is not None:
                await self._zygote.close()
        self._reap()

    def _reap(self) -> None:
        """Reap orphans of ours, but never a process we spawned and the loop has not reaped."""
        if self._spawning:
            return  # the next exit, or close(), reaps them
        self._spawned = [p for p in self._spawned if p.process and p.process.returncode is None]
        ours = {p.process.pid for p in self._spawned if p.process}
        if self._zygote is not None and self._zygote.alive:
            ours.add(self._zygote.pid)
        reap_orphans(self.marker, exclude=ours)

    def _set(self, status: ServerStatus, **changes: object) -> None:
        for key, value in changes.items():
            setattr(status, key, value)
        write_state(self.settings.state_dir, self.state)


@dataclass(frozen=True)
class Reloaded:
    """What reading the registry again changed: running servers it stopped (removed or
    disabled), and running servers whose configuration changed (to restart)."""

    stopped: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()


def _config(registry: Registry, name: str) -> ServerConfig | None:
    entry = registry.servers.get(name)
    return None if entry is None else entry.config


def _runs(entry: ServerEntry | None) -> bool:
    """Whether the supervisor may run ``entry``: it exists, is enabled and runs here."""
    return entry is not None and entry.config.enabled and _here(entry)


def _here(entry: ServerEntry) -> bool:
    """Whether ``entry`` is a hosted server of this host (not remote, not another host's)."""
    config = entry.config
    return not isinstance(config, RemoteServer) and listen_address(config) is not None


def _status(entry: ServerEntry) -> ServerStatus:
    config = entry.config
    return ServerStatus(name=entry.name, transport=config.transport, port=port_of(config))


def _become_subreaper() -> bool:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    return False


def install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
