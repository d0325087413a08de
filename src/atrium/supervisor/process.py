"""One server process: spawn it in its own process group, wait until healthy, stop it.

Each server runs in a new session (``setsid``), so a signal to its process group reaches the
children it started (npx → node, the bridge → its stdio server) and nothing leaks when it is
stopped. Output goes to ``logs/mcp-<name>.log``, appended, so a crash's traceback is kept.

A built-in server is forked by the zygote (``atrium.supervisor.zygote``) when one runs; any
other program is started through ``atrium/deathsig.py``, which makes it die with the supervisor
and then ``exec``s it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time

import aiohttp

from atrium import deathsig
from atrium.serving import ensure_port_free
from atrium.supervisor.logs import log_tail
from atrium.supervisor.spec import LaunchError, LaunchSpec
from atrium.supervisor.zygote import Child, Zygote, ZygoteUnavailable

logger = logging.getLogger(__name__)

STOP_GRACE_S = 10.0
LOG_TAIL_LINES = 20


class ManagedProcess:
    def __init__(self, spec: LaunchSpec) -> None:
        self.spec = spec
        self.process: Child | None = None
        self.started_at: float | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    async def spawn(self, zygote: Zygote | None = None) -> None:
        """Start the server: forked by ``zygote`` when it is a built-in one and a zygote runs."""
        ensure_port_free(self.spec.port, f"server '{self.spec.name}'", host=self.spec.host)
        self.spec.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.spec.log_file.open("ab") as log:
            log.write(f"--- atrium: starting {' '.join(self.spec.argv)}\n".encode())
        if zygote is not None and self.spec.builtin:
            try:
                self.process = await zygote.spawn(self.spec)
            except ZygoteUnavailable as exc:
                logger.warning("server %s: starting it without the zygote: %s", self.spec.name, exc)
            else:
                self.started_at = time.time()
                return
        await self._exec()

    async def _exec(self) -> None:
        program = self.spec.argv[0]
        if not os.access(program, os.X_OK) and "/" in program:
            raise LaunchError(f"server '{self.spec.name}': cannot run {program}: not executable")
        guard = (sys.executable, "-S", "-I", deathsig.__file__, str(os.getpid()))
        with self.spec.log_file.open("ab") as log:
            try:
                self.process = await asyncio.create_subprocess_exec(
                    *guard,
                    *self.spec.argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    env=self.spec.env,
                    cwd=self.spec.cwd,
                    start_new_session=True,
                )
            except OSError as exc:
                raise LaunchError(
                    f"server '{self.spec.name}': cannot run {self.spec.argv[0]}: {exc.strerror}"
                ) from None
        self.started_at = time.time()

    async def wait_healthy(self, deadline_s: float) -> None:
        """Return once ``/health`` answers; raise ``LaunchError`` with the log tail otherwise."""
        assert self.process is not None
        deadline = time.monotonic() + deadline_s
        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while time.monotonic() < deadline:
                if self.process.returncode is not None:
                    raise self._failure(
                        f"exited with code {self.process.returncode} before it was healthy"
                    )
                if await _healthy(http, self.spec.health_url):
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.process.wait(), 0.1)
        raise self._failure(f"was not healthy within {deadline_s:g} s")

    def _failure(self, what: str) -> LaunchError:
        tail = log_tail(self.spec.log_file, LOG_TAIL_LINES)
        lines = "\n".join(f"    {line}" for line in tail) or "    (the log is empty)"
        return LaunchError(
            f"server '{self.spec.name}' {what}; last lines of {self.spec.log_file}:\n{lines}"
        )

    async def stop(self, grace_s: float = STOP_GRACE_S) -> int | None:
        """SIGTERM the process group, SIGKILL it after ``grace_s``; return the exit code."""
        process = self.process
        if process is None:
            return None
        if process.returncode is None:
            _signal_group(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), grace_s)
            except TimeoutError:
                logger.warning(
                    "server %s ignored SIGTERM for %.0f s; killing it", self.spec.name, grace_s
                )
        # Whatever the leader did, leave no member of its group behind.
        _signal_group(process.pid, signal.SIGKILL)
        return await process.wait()


async def _healthy(http: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with http.get(url) as response:
            # A third-party HTTP server without /health answers 404: it is up all the same.
            return response.status == 200 or response.status == 404
    except (aiohttp.ClientError, TimeoutError, OSError):
        return False


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)
