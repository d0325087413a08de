"""A supervised server stops when its supervisor dies, even by SIGKILL.

The supervisor stops its servers on SIGTERM and SIGINT, but nothing can catch a SIGKILL (or the
OOM killer): its servers would run on, holding their ports, and the next ``atrium start``
would find every port taken. A server started by the supervisor (which marks it with
``ATRIUM_SUPERVISOR``) therefore watches its parent: once the parent is gone (the process was
reparented, so ``getppid()`` changed) it sends itself SIGTERM and shuts down as it always does.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

from atrium.deathsig import expected_parent

logger = logging.getLogger(__name__)


def watch_parent(interval_s: float = 1.0) -> threading.Thread:
    """Start the watch in a daemon thread; it ends with the process."""
    # The supervisor's pid as it said it, when it did: this process may be its orphan already.
    parent = expected_parent() or os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval_s)
        logger.warning("the supervisor (pid %d) is gone: stopping", parent)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="atrium-lifeline", daemon=True)
    thread.start()
    return thread
