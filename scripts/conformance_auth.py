"""The conformance suite's ``authorization`` scenarios against Atrium's authorization server.

The suite plays an OAuth client: it reads the metadata, prints an authorization URL for a
person to open, waits for the redirect on ``http://127.0.0.1:<port>/callback`` and exchanges
the code. Here the person is played too: a user is created with the CLI, a client registered
dynamically (RFC 7591), and the sign-in and consent forms are filled in over HTTP.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import httpx2

USER = "conformance"
DEADLINE_S = 60.0


def run_authorization(
    node: Path, suite: Path, results: Path, base_url: str, resource: str, project: Path
) -> tuple[bool, str]:
    """Run both scenarios; (all passed, the suite's summary line)."""
    password = secrets.token_urlsafe(16)
    _create_user(project, password)
    port = _free_port()
    client_id = _register(base_url, f"http://127.0.0.1:{port}/callback")
    argv = [str(node), str(suite / "dist" / "index.js"), "authorization", "--url", base_url]
    argv += ["--client-id", client_id, "--port", str(port), "--resource", resource]
    argv += ["--output-dir", str(results / "authorization")]
    log_path = results / "authorization.log"
    print(f"conformance: running the authorization scenarios (log: {log_path})", flush=True)
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + DEADLINE_S
    for line in process.stdout:
        lines.append(line)
        if line.startswith(f"{base_url}/api/v1/core/oauth/authorize?"):
            _sign_in_and_consent(line.strip(), password)
        if time.monotonic() > deadline:
            process.kill()
            break
    process.wait()
    log_path.write_text("".join(lines))
    total = next((line.strip() for line in reversed(lines) if line.startswith("Total:")), "")
    return process.returncode == 0 and " 0 failed" in total, total or "no summary (see the log)"


def _create_user(project: Path, password: str) -> None:
    argv = [sys.executable, "-m", "atrium", "--project", str(project), "admin", "users"]
    argv += ["create", USER, "--role", "user", "--password-stdin"]
    subprocess.run(argv, input=password + "\n", text=True, check=True, capture_output=True)


def _register(base_url: str, redirect_uri: str) -> str:
    body = {
        "redirect_uris": [redirect_uri],
        "application_type": "native",
        "token_endpoint_auth_method": "none",
        "client_name": "MCP conformance suite",
    }
    request = urllib.request.Request(
        f"{base_url}/api/v1/core/oauth/register",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(json.loads(response.read())["client_id"])


def _sign_in_and_consent(url: str, password: str) -> None:
    """What a person does in the browser: sign in, allow, follow the redirect back."""
    with httpx2.Client(timeout=10, follow_redirects=False) as browser:
        page = browser.get(url)
        page = _submit(browser, page, {"username": USER, "password": password})
        back = _submit(browser, page, {"decision": "approve"})
        location = back.headers.get("location")
        if back.status_code != 303 or not location:
            sys.exit(f"conformance: the consent did not redirect back:\n{back.text}")
        browser.get(location)


def _submit(
    browser: httpx2.Client, page: httpx2.Response, values: dict[str, str]
) -> httpx2.Response:
    action = re.search(r'<form method="post" action="([^"]+)"', page.text)
    if page.status_code != 200 or action is None:
        sys.exit(f"conformance: expected a form, got HTTP {page.status_code}:\n{page.text}")
    fields = {}
    for tag in re.findall(r"<input[^>]*>", page.text):
        name, value = re.search(r'name="([^"]+)"', tag), re.search(r'value="([^"]*)"', tag)
        if name:
            fields[name[1]] = value[1].replace("&#34;", '"').replace("&amp;", "&") if value else ""
    fields.update(values)
    return browser.post(str(page.url.join(action[1])), data=fields)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
