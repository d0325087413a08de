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
each other and with the floor. ``bench/gateway.py --pin`` gives the profiled process a CPU of
its own, which removes most of that (the run prints the seconds sampled against the CPU
seconds). And where ``perf`` recorded the same run (``<name>.perf.data`` and ``.perf.pid``
beside each profile), a second table splits each process's CPU per call by what ``perf``
counts, time on a CPU only: by thread (the event loop's, the audit writer's) and by library
(the interpreter, the kernel, uvloop, httptools, orjson, SQLite, the C library).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
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


# (library, markers of its shared object's name), for the CPU-true split of ``perf``.
LIBRARIES: list[tuple[str, tuple[str, ...]]] = [
    ("the interpreter (libpython)", ("libpython", "/bin/python")),
    ("the kernel (system calls, TCP, scheduling)", ("[kernel",)),
    ("uvloop (libuv)", ("loop.cpython",)),
    ("httptools (llhttp)", ("parser.cpython", "url_parser.cpython")),
    ("orjson", ("orjson",)),
    ("SQLite", ("libsqlite3", "_sqlite3")),
    ("the C library (malloc, memcpy)", ("libc.so", "libm.so")),
]


def perf_split(profile: Path) -> tuple[collections.Counter[str], collections.Counter[str]] | None:
    """Samples of the profiled process by library and by thread (``main``: the event loop's,
    the one whose id is the process's), from ``perf`` data recorded beside ``profile``."""
    data, pid_file = profile.with_suffix(".perf.data"), profile.with_suffix(".perf.pid")
    if not data.exists() or not pid_file.exists() or shutil.which("perf") is None:
        return None
    pid = pid_file.read_text().strip()
    lines = subprocess.run(
        ["perf", "script", "-i", str(data), "-F", "pid,tid,ip,dso", "--pid", pid],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    libraries: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    thread: str | None = None  # a sample's thread, until its innermost frame's library
    for line in lines:
        first, _, _ = line.strip().partition(" ")
        if "/" in first and first.replace("/", "").isdigit():
            main = first.partition("/")[2] == pid
            thread = "the event loop's thread" if main else "other threads (the audit writer's)"
            threads[thread] += 1
        if thread is not None and "(" in line:  # the sample's line, or its stack's first
            libraries[_library(line.rpartition("(")[2])] += 1
            thread = None
    return libraries, threads


def _library(dso: str) -> str:
    for name, markers in LIBRARIES:
        if any(marker in dso for marker in markers):
            return name
    return "other"


def print_perf(gateway: Path, floor: Path, gateway_ms: float, floor_ms: float) -> None:
    splits = perf_split(gateway), perf_split(floor)
    if splits[0] is None:
        return
    print("\nCPU-true (perf, cpu-clock): the same runs by thread and by library, µs per call")
    print("| where | gateway µs/call | floor µs/call |")
    print("|---|---|---|")
    for index in (1, 0):
        names: list[str] = []
        for split in splits:
            if split is not None:
                names += [n for n, _ in split[index].most_common() if n not in names]
        for name in names:
            cells = []
            for split, ms in zip(splits, (gateway_ms, floor_ms), strict=True):
                if split is None:
                    cells.append("-")
                    continue
                counts = split[index]
                cells.append(f"{counts[name] / max(1, sum(counts.values())) * ms * 1000:.0f}")
            print(f"| {name} | {cells[0]} | {cells[1]} |")


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
    print_perf(args.gateway, floor_path, args.gateway_ms, args.floor_ms)


if __name__ == "__main__":
    main()
