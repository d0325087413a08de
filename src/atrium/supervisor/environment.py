"""What of the environment a program Atrium starts may see: what programs need to run.

A server process (and a build, and the zygote) gets PATH, HOME, locale, proxies and CA bundles,
plus what its own ``env:`` names, never the rest of the gateway's environment, which holds its
secrets (database URL, signing keys, provider keys). Kept apart from ``spec`` so that starting
the zygote early (``atrium.supervisor.zygote``) imports nothing heavy.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Mapping

from atrium.deathsig import SUPERVISOR_PID_VARIABLE
from atrium.settings import SUPERVISOR_VARIABLE

# Programs need these to run at all; everything else must be named in the server's env:.
_ALLOWED = re.compile(
    r"^(PATH|HOME|USER|LOGNAME|SHELL|LANG|LANGUAGE|LC_[A-Z]+|TZ|TMPDIR|TEMP|TMP|TERM"
    r"|XDG_[A-Z_]+|SSL_CERT_FILE|SSL_CERT_DIR|REQUESTS_CA_BUNDLE|NODE_EXTRA_CA_CERTS"
    r"|(?i:https?_proxy|no_proxy|all_proxy)|NPM_CONFIG_[A-Z_]+|npm_config_[a-z_]+|UV_[A-Z_]+)$"
)


def allowed_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """What of ``environ`` a program Atrium starts may see: what programs need to run."""
    return {k: v for k, v in environ.items() if _ALLOWED.match(k)}


def new_marker() -> str:
    """``ATRIUM_SUPERVISOR=<random>``: what tells an orphan of this supervisor (``reaper``)."""
    return f"{SUPERVISOR_VARIABLE}={uuid.uuid4().hex}"


def marks(marker: str) -> dict[str, str]:
    """What every process this supervisor starts carries: its marker and its pid (the parent it
    must die with: ``atrium.deathsig``)."""
    name, _, value = marker.partition("=")
    return {name: value, SUPERVISOR_PID_VARIABLE: str(os.getpid())}
