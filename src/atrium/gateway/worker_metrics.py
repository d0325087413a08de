"""``GET /metrics`` of a gateway that runs as several workers (``gateway.workers``).

A scrape reaches one worker, whichever accepted its connection, and must still count every
request the port served. So each worker keeps its counters in its own memory, as a lone gateway
does, writes them every ``SNAPSHOT_S`` (when they changed) to a file of the pool's run folder,
and answers a scrape with its own counts, live, and every other worker's latest file. Each
worker's series carry a ``replica`` label of their own (``<replica>/<worker index>``,
``WorkerPool``), so a sum over the label counts each request once, whichever worker served
it, at most ``SNAPSHOT_S`` late.

Files rather than asking the others at scrape time: a scrape costs no round trip to processes
that may be busy or restarting, and a worker that died keeps its last counts until its
successor (the same index, so the same label) starts again from zero, which Prometheus reads
as a counter reset. Backend restarts, the supervisor's facts, are added once by the worker
that answers (its parent is the supervisor under ``atrium start``), never written to a file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from atrium.gateway.metrics import BackendRestarts, Metrics

logger = logging.getLogger(__name__)

SNAPSHOT_S = 0.5


def snapshot_path(folder: Path, index: int) -> Path:
    return folder / f"worker-{index}.prom"


class WorkerMetrics:
    """The metrics of worker ``index`` of ``count``, which share ``folder``."""

    def __init__(
        self, folder: Path, index: int, count: int, restarts: BackendRestarts | None
    ) -> None:
        self._folder = folder
        self._index = index
        self._count = count
        self._restarts = restarts
        self._written = b""

    def exposition(self, own: Metrics) -> bytes:
        """This worker's counts and the others' latest, one family each, in the text format."""
        parts: list[Iterable[Metric]] = [own.registry.collect()]
        parts += [self._read(index) for index in range(self._count) if index != self._index]
        if self._restarts is not None:
            parts.append(self._restarts.collect())
        return generate_latest(_Merged(parts))

    def snapshot(self, own: Metrics) -> None:
        """Write this worker's counts for the others, when they changed (atomically: a reader
        sees the old file or the new one)."""
        text = generate_latest(own.registry)
        if text == self._written:
            return
        path = snapshot_path(self._folder, self._index)
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        temporary.write_bytes(text)
        os.replace(temporary, path)
        self._written = text

    def _read(self, index: int) -> list[Metric]:
        path = snapshot_path(self._folder, index)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []  # not started yet
        try:
            return list(text_string_to_metric_families(text))
        except ValueError as exc:  # written by our own generate_latest: not expected
            logger.warning("cannot read the metrics of gateway worker %d: %s", index, exc)
            return []


class _Merged:
    """A collector of families merged by name: each name once, as the text format requires."""

    def __init__(self, parts: Iterable[Iterable[Metric]]) -> None:
        self._parts = parts

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for part in self._parts:
            for family in part:
                into = merged.get(family.name)
                if into is None:
                    into = merged[family.name] = Metric(
                        family.name, family.documentation, family.type, family.unit
                    )
                into.samples.extend(family.samples)
        return iter(merged.values())
