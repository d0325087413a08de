"""Caller assertions: CPU per forwarded request, against the budget of 0.1 ms per call.

    .venv/bin/python bench/assertion.py [--calls 20000]

The gateway signs one assertion per request it forwards (``AssertionSigner.sign``) and the
backend verifies it (``AssertionVerifier.verify``); both are timed here in process CPU time,
in one run, and printed with their ratio to the budget (below 1.00 meets it).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

from atrium.auth.assertion import PUBLIC_FILE, AssertionSigner, AssertionVerifier

BUDGET_MS = 0.1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    calls = parser.parse_args().calls
    with tempfile.TemporaryDirectory() as folder:
        state = Path(folder)
        signer = AssertionSigner.load(state, "http://localhost:8080")
        verifier = AssertionVerifier.load(state / PUBLIC_FILE, "bench")
        ids = [uuid.uuid4().hex for _ in range(calls)]
        scopes = frozenset({"tools:read", "tools:write"})
        started = time.process_time()
        signed = [
            signer.sign(
                server="bench",
                subject="user-1",
                client_id="client-1",
                scopes=scopes,
                origin="external",
                request_id=request_id,
            )
            for request_id in ids
        ]
        sign_ms = (time.process_time() - started) * 1000 / calls
        started = time.process_time()
        for assertion in signed:
            verifier.verify(assertion)
        verify_ms = (time.process_time() - started) * 1000 / calls
    print(f"caller assertion, {calls} calls, CPU per call (budget {BUDGET_MS} ms)")
    print(f"  gateway signs    {sign_ms:.4f} ms   ratio to budget {sign_ms / BUDGET_MS:.2f}")
    print(f"  backend verifies {verify_ms:.4f} ms   ratio to budget {verify_ms / BUDGET_MS:.2f}")


if __name__ == "__main__":
    main()
