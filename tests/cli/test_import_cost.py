"""The ``atrium`` command loads what a command needs, when it needs it: every CLI process (and
the test suite starts hundreds) would otherwise pay ~1 s of CPU importing the store, Alembic,
jsonschema and the JOSE library before parsing its arguments."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("sqlalchemy", "alembic", "jsonschema", "referencing", "joserfc", "aiohttp", "mcp")


def test_the_command_line_loads_no_heavy_library_before_a_command_needs_it() -> None:
    probe = f"import sys, atrium.cli.main;print(sorted(m for m in {HEAVY!r} if m in sys.modules))"

    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )

    assert done.stdout.strip() == "[]", done.stdout
