"""``--detach``: a supervisor started in the background, waited for until its servers settle.

Apart from ``atrium.host`` (which imports the gateway, the store and the supervisor: over a
second of CPU), so that the command that only starts the background process and reads its
state file pays for none of that.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from atrium.errors import AtriumError
from atrium.runstate import AlreadyRunning, RuntimeState, read_state, running_supervisor
from atrium.settings import Settings


def start_detached(settings: Settings, argv: list[str], deadline_s: float = 120.0) -> RuntimeState:
    """Run ``atrium <argv>`` as a background supervisor and wait until its servers settle."""
    if (pid := running_supervisor(settings.state_dir)) is not None:
        raise AlreadyRunning(pid)
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.logs_dir / "supervisor.log"
    with log_path.open("ab") as log:
        written = log.tell()
        process = subprocess.Popen(
            [sys.executable, "-m", "atrium", "--project", str(settings.project_dir), *argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AtriumError(
                f"the supervisor exited with code {process.returncode}"
                f"{_last_words(log_path, written)}; see {log_path}"
            )
        state = read_state(settings.state_dir)
        if state is not None and state.ready:
            return state
        time.sleep(0.1)
    raise AtriumError(
        f"the servers did not settle within {deadline_s:g} s; see logs/supervisor.log"
    )


def _last_words(log: Path, offset: int) -> str:
    """The last line a process wrote to ``log`` from ``offset`` on, as ``: <line>``."""
    try:
        with log.open("rb") as file:
            file.seek(offset)
            lines = file.read()[-4096:].decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    said = [line.strip() for line in lines if line.strip()]
    return f": {said[-1]}" if said else ""
