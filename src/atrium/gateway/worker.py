"""One worker of a gateway that runs as several processes (``gateway.workers``).

``WorkerPool`` (``atrium.gateway.workers``) starts each as
``python -m atrium.gateway.worker <parent pid> <listening fd> <link fd>``: a fresh interpreter
(the parent runs an event loop, threads and maybe a supervisor: nothing safe to fork), which
inherits the socket the parent listens on and one end of a socket pair, its link to the parent.
The parent first sends the ``WorkerSetup`` over the link (its own ``Settings``, pickled: a
private pipe between two processes of one user); then both speak JSON lines:

- worker to parent: ``{"ready": pid}`` once it serves; ``{"changed": "auth"}`` when it has
  revoked a token or changed a user or client (``Siblings.changed``), for the others to reload;
  ``{"done": n}`` when it has done what request ``n`` asked.
- parent to worker: ``{"reload": "auth", "id": n}``: reload the revocation list and the keys
  now (``atrium admin`` asked the supervisor, or another worker changed them).

Each worker is a whole gateway: its own store connection, change feed, audit writer and
counters. It dies with its parent (``deathsig``: SIGTERM when the parent dies, even by SIGKILL),
and stops gracefully on SIGTERM or SIGINT as a lone gateway does, or when the link closes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import signal
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from logging.handlers import WatchedFileHandler
from pathlib import Path
from types import MappingProxyType
from typing import Any

import orjson

from atrium.deathsig import die_with_parent
from atrium.errors import AtriumError
from atrium.gateway.metrics import BackendRestarts, Metrics
from atrium.gateway.serve import GatewayServer
from atrium.gateway.worker_metrics import SNAPSHOT_S, WorkerMetrics
from atrium.settings import Settings
from atrium.store import Store
from atrium.store.changes import Change

logger = logging.getLogger(__name__)

SETUP_LENGTH_BYTES = 4


@dataclass(frozen=True)
class LogPlan:
    """Where the parent logs (its root handlers: stderr, files), for a worker to log alike."""

    level: int
    stderr: bool
    files: tuple[Path, ...]
    formatter: logging.Formatter | None

    @classmethod
    def of_this_process(cls) -> LogPlan:
        root = logging.getLogger()
        files = tuple(
            Path(h.baseFilename) for h in root.handlers if isinstance(h, logging.FileHandler)
        )
        stderr = any(
            type(h) is logging.StreamHandler and h.stream is sys.stderr for h in root.handlers
        )
        formatter = next((h.formatter for h in root.handlers if h.formatter), None)
        return cls(root.level, stderr, files, formatter if _picklable(formatter) else None)

    def apply(self) -> None:
        handlers: list[logging.Handler] = [
            WatchedFileHandler(p, encoding="utf-8") for p in self.files
        ]
        if self.stderr:
            handlers.append(logging.StreamHandler())
        for handler in handlers:
            handler.setFormatter(self.formatter)
        logging.basicConfig(level=self.level, handlers=handlers, force=True)


def _picklable(value: object) -> bool:
    """A formatter of the CLI's own is; one that holds a terminal (a test runner's) is not."""
    try:
        pickle.dumps(value)
    except (TypeError, AttributeError, pickle.PicklingError):
        return False
    return True


@dataclass(frozen=True)
class WorkerSetup:
    """What the parent tells worker ``index`` of ``count``; ``folder`` holds their metrics."""

    settings: Settings
    index: int
    count: int
    folder: Path
    replica: str  # the pool's: each worker's label is ``<replica>/<index>``
    logs: LogPlan

    def dump(self) -> bytes:
        # A mapping proxy does not pickle; the worker puts it back (``worker_settings``).
        settings = replace(self.settings, environ=dict(self.settings.environ))
        data = pickle.dumps(replace(self, settings=settings))
        return len(data).to_bytes(SETUP_LENGTH_BYTES, "big") + data

    def worker_settings(self) -> Settings:
        environ: Mapping[str, str] = MappingProxyType(dict(self.settings.environ))
        return replace(self.settings, environ=environ, replica_id=f"{self.replica}/{self.index}")


class ParentLink:
    """The worker's end of the link: ``Siblings`` for its gateway app."""

    def __init__(self, writer: asyncio.StreamWriter, metrics: WorkerMetrics) -> None:
        self._writer = writer
        self.metrics = metrics

    def send(self, message: dict[str, Any]) -> None:
        if not self._writer.is_closing():
            self._writer.write(orjson.dumps(message) + b"\n")

    def changed(self, change: Change) -> None:
        self.send({"changed": change})

    def exposition(self, own: Metrics) -> bytes:
        return self.metrics.exposition(own)


async def serve(setup: WorkerSetup, listener: socket.socket, link_socket: socket.socket) -> None:
    """Serve ``listener`` until SIGTERM, SIGINT or the parent's end of the link closes."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    reader, writer = await asyncio.open_unix_connection(sock=link_socket)
    settings = setup.worker_settings()
    restarts = BackendRestarts(settings.state_dir, setup.replica, supervisor=os.getppid())
    link = ParentLink(writer, WorkerMetrics(setup.folder, setup.index, setup.count, restarts))
    async with await Store.open(settings) as store:
        front = GatewayServer(settings, store, listener=listener, siblings=link)
        await front.start()
        metrics = front.app.parts.metrics
        link.metrics.snapshot(metrics)
        link.send({"ready": os.getpid()})
        tasks = [
            asyncio.create_task(_follow(reader, front, link, stop), name="parent-link"),
            asyncio.create_task(_snapshots(link.metrics, metrics), name="metrics-snapshots"),
        ]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await front.stop()
            writer.close()


async def _follow(
    reader: asyncio.StreamReader, front: GatewayServer, link: ParentLink, stop: asyncio.Event
) -> None:
    """Do what the parent asks; stop when it is gone (the link closed)."""
    while line := await reader.readline():
        message = orjson.loads(line)
        if message.get("reload") == "auth":
            try:
                await front.reload_auth()
            except Exception:  # the top of a task: the poll will try again
                logger.exception("reloading revocations and keys failed")
        if "id" in message:
            link.send({"done": message["id"]})
    stop.set()


async def _snapshots(worker: WorkerMetrics, metrics: Metrics) -> None:
    while True:
        await asyncio.sleep(SNAPSHOT_S)
        try:
            worker.snapshot(metrics)
        except OSError as exc:  # the run folder gone (the pool stopping): nothing to tell
            logger.debug("cannot write the metrics snapshot: %s", exc)


def _receive_setup(link: socket.socket) -> WorkerSetup:
    size = int.from_bytes(_exactly(link, SETUP_LENGTH_BYTES), "big")
    setup = pickle.loads(_exactly(link, size))  # our parent's, on a private socket pair
    if not isinstance(setup, WorkerSetup):
        raise SystemExit("atrium: gateway worker: the parent sent no setup")
    return setup


def _exactly(link: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = link.recv(size - len(data))
        if not chunk:
            raise SystemExit("atrium: gateway worker: the parent went away while starting")
        data += chunk
    return bytes(data)


def main(argv: list[str]) -> None:
    import uvloop

    parent, listening, linked = (int(arg) for arg in argv)
    die_with_parent(parent)
    link = socket.socket(fileno=linked)
    setup = _receive_setup(link)
    setup.logs.apply()
    listener = socket.socket(fileno=listening)
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve(setup, listener, link))
    except AtriumError as exc:
        raise SystemExit(f"atrium: gateway worker {setup.index}: {exc}") from None


if __name__ == "__main__":
    # Through the module's importable name: the setup unpickles as its classes, not __main__'s.
    from atrium.gateway.worker import main as worker_main

    worker_main(sys.argv[1:])
