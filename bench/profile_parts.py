"""Where a proxied call's CPU goes: two py-spy profiles (collapsed stacks) split into the parts
of a call, in microseconds per call (issue 17).

    .venv/bin/python bench/gateway.py --profile bench/profiles/run.txt ...
    .venv/bin/python bench/profile_parts.py bench/profiles/run.txt --gateway-ms 0.47 \\
        --floor-ms 0.15

The first profile is the gateway's, the second (default: ``<name>-floor.txt``, which
``bench/gateway.py --profile`` records beside it) the floor relay's: the same HTTP stack doing
nothing of Atrium's. Each sample goes to the part of its innermost frame that names one (a
sample with no frame of any part, the event loop's C code, system calls and the interpreter's
own work between frames, goes to "event loop and sockets"); a part's share of the samples
times the process's CPU per call (``--gateway-ms``, ``--floor-ms``: the figures
``bench/gateway.py`` printed for the same run) is its CPU per call. py-spy samples every thread
of the process: the audit writer's database thread is its own part.

A caveat: py-spy samples a thread that is running or waiting for a CPU alike. On a saturated
machine (clients, gateway and backend on two cores) a gateway woken by the event loop often
waits for a core, and is sampled in the loop meanwhile: "event loop and sockets" is overstated
and every other part understated by the same factor, in both profiles. Compare the parts with
each other and with the floor; ``perf record -p PID`` counts only time on a CPU (by library:
the interpreter, the kernel, uvloop, SQLite, orjson) where Python's frames are not needed.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

# (part, markers): a frame belongs to the first part one of whose markers it contains. Order
# matters where markers overlap: the audit record is built in ``exchange.py``.
PARTS: list[tuple[str, tuple[str, ...]]] = [
    ("audit: store writes (SQLite thread)", ("audit_sqlite.py", "sqlalchemy", "aiosqlite")),
    ("audit: journal write", ("gateway/journal.py",)),
    (
        "audit: records (building, redaction, queue)",
        ("events_once", "Exchange.events", "gateway/audit.py", "redaction.py", "store/audit"),
    ),
    ("authentication (token, DPoP, credentials)", ("atrium/auth/",)),
    ("JSON-RPC parse and Mcp-* header checks", ("jsonrpc.py", "header_codec.py")),
    ("answer inspection (outcome, tools/list)", ("exchange.py", "gateway/sse.py")),
    ("tool access and policy", ("access.py", "lookup.py", "policy.py")),
    ("metrics", ("gateway/metrics.py", "prometheus_client")),
    (
        "request flow (ids, headers, in-flight, sessions, limits)",
        (
            "gateway/proxy.py",
            "upstream.py",
            "inflight.py",
            "tasks.py",
            "sessions.py",
            "guard.py",
            "cancellation.py",
            "directory.py",
            "oneshot.py",
            "ratelimit.py",
            "gateway/app.py",
            "uuid.py",
        ),
    ),
    ("the floor relay's own app", ("floor_proxy.py",)),
    ("upstream HTTP client", ("http1.py", "origins.py")),
    ("HTTP server (uvicorn)", ("uvicorn", "serving.py", "starlette")),
]
LOOP = "event loop and sockets (no frame of a part)"
RUNNER = "Runner.run ("


def parts_of(path: Path) -> tuple[collections.Counter[str], int]:
    """Samples per part in a py-spy ``--format raw`` profile, and the samples in all."""
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack or not number.isdigit():
            continue
        samples = int(number)
        total += samples
        counts[_part(stack.split(";"))] += samples
    return counts, total


def _part(frames: list[str]) -> str:
    # What runs the event loop (``asyncio.run``, under uvicorn's or atrium's own entry) is
    # not a part: only the frames the loop calls are.
    loop = [n for n, frame in enumerate(frames) if frame.startswith(RUNNER)]
    for frame in reversed(frames[loop[-1] + 1 :] if loop else frames):
        for part, markers in PARTS:
            if any(marker in frame for marker in markers):
                return part
    return LOOP


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gateway", type=Path, help="the gateway's profile (collapsed stacks)")
    parser.add_argument("floor", type=Path, nargs="?", help="the floor relay's profile")
    parser.add_argument("--gateway-ms", type=float, required=True, help="gateway CPU per call")
    parser.add_argument("--floor-ms", type=float, required=True, help="floor CPU per call")
    args = parser.parse_args()
    floor_path = args.floor or args.gateway.with_name(f"{args.gateway.stem}-floor.txt")
    gateway, gateway_total = parts_of(args.gateway)
    floor, floor_total = parts_of(floor_path)
    print(f"samples: gateway {gateway_total}, floor {floor_total}")
    print("| part of a call | gateway µs/call | floor µs/call | Atrium's own µs/call |")
    print("|---|---|---|---|")
    own_total = 0.0
    for part in [*(name for name, _ in PARTS), LOOP]:
        mine = gateway[part] / gateway_total * args.gateway_ms * 1000
        bare = floor[part] / floor_total * args.floor_ms * 1000
        if not mine and not bare:
            continue
        own_total += mine - bare
        print(f"| {part} | {mine:.0f} | {bare:.0f} | {mine - bare:+.0f} |")
    print(f"| all | {args.gateway_ms * 1000:.0f} | {args.floor_ms * 1000:.0f} | {own_total:+.0f} |")


if __name__ == "__main__":
    main()
