"""``gateway.workers``: N gateway processes serving one port, sharing nothing but the store and
Redis, as replicas on N hosts do (issue 17).

The parent listens, then starts N workers (``atrium.gateway.worker``), each a whole gateway
that inherits the listening socket: one accept queue, from which whichever worker is free takes
the next connection (a pre-fork). Not ``SO_REUSEPORT``, a socket per worker: the kernel then
hashes each connection to one worker's own queue, so what waits in the queue of a worker that
dies is reset, and a busy worker's queue waits while another idles. With one shared queue a
crash loses no connection not yet accepted, and the port stays open while a worker restarts.

What a lone gateway keeps in its memory for security (rate-limit counters, the DPoP ``jti``
replay cache, the sign-in and registration throttles) would be N separate sets here, each
allowing what one should: so more than one worker needs ``redis.url`` (``worker_count``), where
they are shared exactly as between replicas. Revocations and keys are reloaded by every worker:
``atrium admin`` asks the supervisor, which asks the pool (``reload_auth``), and a worker that
changed them itself (the OAuth endpoints, the console) has the parent tell the others.
``/metrics`` merges every worker's counts (``atrium.gateway.worker_metrics``).

A worker that exits is started again (after 0.5 s, backing off to 5 s while they keep
failing). ``stop`` sends each SIGTERM: each drains as a lone gateway does
(``gateway.shutdown_grace_s``), and is killed if it has not ended a while after that.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import shutil
import signal
import socket
import sys
import time
from typing import Any, Protocol

import orjson

from atrium.errors import AtriumError, ConfigError, Problem
from atrium.gateway.metrics import default_replica
from atrium.gateway.serve import UVICORN_GRACE_MARGIN_S, GatewayServer
from atrium.gateway.worker import LogPlan, WorkerSetup
from atrium.runstate import run_dir
from atrium.serving import listening_socket
from atrium.settings import Settings
from atrium.store import Store

logger = logging.getLogger(__name__)

RESTART_S = (0.5, 1.0, 2.0, 5.0)
STABLE_S = 10.0  # a worker that served this long starts its back-off afresh
START_DEADLINE_S = 120.0  # N interpreters importing at once, on a busy machine
REPLY_S = 10.0
KILL_MARGIN_S = 5.0  # past the workers' own grace periods
FOLDER_PREFIX = "gateway-"


class GatewayFront(Protocol):
    """What serves the gateway's port: one ``GatewayServer``, or a ``WorkerPool``."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def reload_auth(self) -> None: ...


def worker_count(settings: Settings) -> int:
    """``gateway.workers`` resolved (``auto``: the CPUs this process may run on); more than
    one without ``redis.url`` is refused (module docstring)."""
    wanted = settings.gateway_workers
    count = len(os.sched_getaffinity(0)) if wanted == "auto" else wanted
    if count > 1 and settings.redis.url is None:
        why = (
            f"{count} workers{' (auto)' if wanted == 'auto' else ''} need redis.url"
            " (ATRIUM_REDIS_URL): each worker would otherwise keep its own rate-limit counters,"
            " DPoP replay cache and sign-in throttles, allowing N times each limit;"
            " set redis.url, or run one worker"
        )
        raise ConfigError([Problem("settings", why, key_path="gateway.workers")])
    return count


def gateway_front(settings: Settings, store: Store) -> GatewayFront:
    """The gateway as ``gateway.workers`` says: in this process, or in N of its own."""
    count = worker_count(settings)
    return GatewayServer(settings, store) if count == 1 else WorkerPool(settings, count)


class _Worker:
    """Slot ``index`` of the pool, and the process that fills it now, if any."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.process: asyncio.subprocess.Process | None = None
        self.serving = False  # this process said it is ready
        self.ready = asyncio.Event()  # some process of this slot was ready once
        self._writer: asyncio.StreamWriter | None = None
        self._asked: dict[int, asyncio.Future[None]] = {}

    def attach(self, process: asyncio.subprocess.Process, writer: asyncio.StreamWriter) -> None:
        self.process, self._writer = process, writer

    def detach(self) -> None:
        self.process, self._writer, self.serving = None, None, False
        for asked in self._asked.values():  # its successor loads everything as it starts
            if not asked.done():
                asked.set_result(None)
        self._asked.clear()

    def send(self, message: dict[str, Any]) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(orjson.dumps(message) + b"\n")

    def ask(self, message: dict[str, Any], number: int) -> asyncio.Future[None]:
        asked = self._asked[number] = asyncio.get_running_loop().create_future()
        self.send({**message, "id": number})
        return asked

    def answered(self, number: object) -> None:
        asked = self._asked.pop(number, None) if isinstance(number, int) else None
        if asked is not None and not asked.done():
            asked.set_result(None)

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)


class WorkerPool:
    """``count`` gateway workers on the settings' port (module docstring)."""

    def __init__(self, settings: Settings, count: int) -> None:
        self.settings = settings
        self.count = count
        port = settings.gateway_port
        self.folder = run_dir(settings.state_dir) / f"{FOLDER_PREFIX}{os.getpid()}-{port}"
        self._workers = [_Worker(index) for index in range(count)]
        self._listener: socket.socket | None = None
        self._keepers: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self._numbers = itertools.count(1)

    @property
    def pids(self) -> list[int]:
        """The workers' processes now (a slot being restarted has none)."""
        return [w.process.pid for w in self._workers if w.process is not None]

    @property
    def serving(self) -> int:
        """How many workers serve now."""
        return sum(w.serving for w in self._workers)

    async def start(self, deadline_s: float = START_DEADLINE_S) -> None:
        """Listen, start every worker; return once each serves. A worker that exits while
        starting stops them all, and its error (on stderr, in logs/gateway.log) is the cause."""
        settings = self.settings
        self._listener = listening_socket(
            settings.gateway_port, "the gateway", host=settings.gateway_host
        )
        try:
            self._prepare()
            self._keepers = [
                asyncio.create_task(self._keep(w), name=f"gateway-worker-{w.index}")
                for w in self._workers
            ]
            async with asyncio.timeout(deadline_s):
                for worker, keeper in zip(self._workers, self._keepers, strict=True):
                    await _ready(worker, keeper)
        except BaseException:
            await self.stop()
            raise
        logger.info(
            "gateway listening on http://%s:%s with %d workers",
            settings.gateway_host,
            settings.gateway_port,
            self.count,
        )

    def _prepare(self) -> None:
        """The folder of the workers' metrics (and none left by a pool that was killed).
        Workers starting together share keys as replicas do: the first stores them."""
        for folder in self.folder.parent.glob(f"{FOLDER_PREFIX}*"):
            pid = folder.name.removeprefix(FOLDER_PREFIX).partition("-")[0]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(folder, ignore_errors=True)
        self.folder.mkdir(parents=True, exist_ok=True)

    async def stop(self) -> None:
        """SIGTERM every worker, which drains; SIGKILL what is left after the grace period."""
        self._stopping.set()
        if self._listener is not None:
            self._listener.close()  # each worker holds its own copy until it stops
        for worker in self._workers:
            worker.signal(signal.SIGTERM)
        if self._keepers:
            settings = self.settings
            grace_s = (
                settings.drain_s
                + settings.shutdown_grace_s
                + UVICORN_GRACE_MARGIN_S
                + KILL_MARGIN_S
            )
            _, late = await asyncio.wait(self._keepers, timeout=grace_s)
            if late:
                logger.warning("%d gateway workers did not stop in time; killing them", len(late))
                for worker in self._workers:
                    worker.signal(signal.SIGKILL)
                await asyncio.wait(late)
            for keeper in self._keepers:  # a failure at start was raised there already
                if not keeper.cancelled():
                    keeper.exception()
        shutil.rmtree(self.folder, ignore_errors=True)

    async def reload_auth(self) -> None:
        """Have every serving worker reload its revocations and keys; return once each has."""
        asked = [w.ask({"reload": "auth"}, next(self._numbers)) for w in self._workers if w.serving]
        if not asked:
            return
        _, late = await asyncio.wait(asked, timeout=REPLY_S)
        if late:
            logger.warning("%d gateway workers did not reload within %g s", len(late), REPLY_S)

    async def _keep(self, worker: _Worker) -> None:
        """Run slot ``worker`` until the pool stops, starting its process again as it exits."""
        failures = 0
        while not self._stopping.is_set():
            began = time.monotonic()
            code = await self._run(worker)
            if self._stopping.is_set():
                return
            if not worker.ready.is_set():
                raise AtriumError(
                    f"gateway worker {worker.index} exited with code {code} while starting;"
                    f" see its messages above, or {self.settings.logs_dir / 'gateway.log'}"
                )
            failures = 0 if time.monotonic() - began >= STABLE_S else failures + 1
            delay = RESTART_S[min(failures, len(RESTART_S) - 1)]
            logger.warning(
                "gateway worker %d exited with code %s; starting it again in %g s",
                worker.index,
                code,
                delay,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    async def _run(self, worker: _Worker) -> int | None:
        """One process in slot ``worker``, from its start to its exit code."""
        assert self._listener is not None
        listening = self._listener.fileno()
        setup = self._setup(worker.index).dump()
        ours, theirs = socket.socketpair()
        try:
            with theirs:
                process = await asyncio.create_subprocess_exec(
                    *(sys.executable, "-m", "atrium.gateway.worker"),
                    *(str(os.getpid()), str(listening), str(theirs.fileno())),
                    stdin=asyncio.subprocess.DEVNULL,
                    pass_fds=(listening, theirs.fileno()),
                    start_new_session=True,  # Ctrl-C reaches the parent, which stops them
                )
            reader, writer = await asyncio.open_unix_connection(sock=ours)
        except OSError as exc:
            ours.close()
            logger.error("cannot start gateway worker %d: %s", worker.index, exc)
            return None
        worker.attach(process, writer)
        reading = asyncio.create_task(self._read(worker, reader), name="gateway-worker-link")
        try:
            if self._stopping.is_set():  # stop() signalled the slot before it had this process
                worker.signal(signal.SIGTERM)
            writer.write(setup)
            return await process.wait()
        finally:
            worker.detach()
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading
            writer.close()

    def _setup(self, index: int) -> WorkerSetup:
        replica = self.settings.replica_id or default_replica()
        logs = LogPlan.of_this_process()
        return WorkerSetup(self.settings, index, self.count, self.folder, replica, logs)

    async def _read(self, worker: _Worker, reader: asyncio.StreamReader) -> None:
        while line := await reader.readline():
            try:
                message = orjson.loads(line)
            except orjson.JSONDecodeError:
                logger.warning("gateway worker %d sent an unreadable line", worker.index)
                continue
            if "ready" in message:
                worker.serving = True
                worker.ready.set()
            elif message.get("changed") == "auth":
                for other in self._workers:
                    if other is not worker:
                        other.send({"reload": "auth"})
            elif "done" in message:
                worker.answered(message["done"])


async def _ready(worker: _Worker, keeper: asyncio.Task[None]) -> None:
    """Return once ``worker`` serves; raise what ended its keeper first."""
    waiting = asyncio.create_task(worker.ready.wait())
    try:
        await asyncio.wait({waiting, keeper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
    if not worker.ready.is_set():
        keeper.result()  # the worker's failure
        raise AtriumError(f"gateway worker {worker.index} stopped while starting")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
