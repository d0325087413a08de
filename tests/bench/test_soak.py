"""``bench/soak.py`` runs: seconds of its whole load (every kind of client, a token renewal, a
backend killed under load) through a real ``atrium start``, so the ten-minute soak cannot rot
between its runs. Its figures are not judged here (benchmarks are never timed assertions)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).resolve().parents[2] / "bench/soak.py"


def test_a_short_soak_drives_every_client_through_a_backend_restart(tmp_path: Path) -> None:
    figures = tmp_path / "soak.json"
    argv = [sys.executable, str(SOAK), "--minutes", "0.15", "--clients", "4"]
    argv += ["--restart-every", "4", "--sample-every", "1", "--json", str(figures)]
    # Three calls a minute: a slow machine's first four calls are enough for a 429.
    argv += ["--limit", "3/minute"]

    done = subprocess.run(argv, capture_output=True, text=True, timeout=150)

    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    result = json.loads(figures.read_text())
    assert set(result["requests"]) == {"bearer", "dpop", "session", "limited", "oauth"}
    assert result["unexpected"] == []
    assert result["expected"]["rate limited (429)"] > 0
    assert result["restarts"]["kill"] >= 1
    assert {"gateway", "limited"} <= set(result["processes"])  # everything: maybe restarting
