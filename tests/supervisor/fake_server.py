"""A stand-in MCP server process for supervisor tests: /health, and ways to misbehave.

python fake_server.py --port P [--host H] [--crash-after S] [--never-healthy] [--grandchild FILE]
"""

from __future__ import annotations

import argparse
import http.server
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path


class Health(http.server.BaseHTTPRequestHandler):
    healthy = True

    def do_GET(self) -> None:
        ok = self.path == "/health" and Health.healthy
        self.send_response(200 if ok else 503)
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}' if ok else b"{}")

    def log_message(self, format: str, *args: object) -> None:
        print(format % args, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--project")
    parser.add_argument("--crash-after", type=float)
    parser.add_argument("--never-healthy", action="store_true")
    parser.add_argument("--grandchild", type=Path)
    args = parser.parse_args()
    Health.healthy = not args.never_healthy
    if args.grandchild:
        child = subprocess.Popen(["sleep", "300"], start_new_session=True)
        args.grandchild.write_text(str(child.pid))
    if args.crash_after is not None:
        threading.Timer(args.crash_after, lambda: os._exit(3)).start()
    server = http.server.ThreadingHTTPServer((args.host, args.port), Health)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(
        f"fake server on {args.port} pid {os.getpid()} env SECRET={os.environ.get('SECRET')}",
        flush=True,
    )
    server.serve_forever()


if __name__ == "__main__":
    main()
