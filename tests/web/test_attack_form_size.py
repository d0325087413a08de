"""The console's POST forms are read no further than ``MAX_FORM_BYTES`` (issue 18, "Faults and
bad input" 7): even a signed-in user cannot make the gateway hold a body of any size."""

from __future__ import annotations

import httpx2

from atrium.web.guard import MAX_FORM_BYTES
from tests.gateway.chunked_client import post_in_chunks
from tests.web.conftest import Console, csrf_of

FORM = "application/x-www-form-urlencoded"


def cookie_header(http: httpx2.AsyncClient) -> str:
    return "; ".join(f"{name}={value}" for name, value in http.cookies.items())


async def test_a_form_past_the_limit_is_refused_before_the_browser_has_sent_it(
    console: Console,
) -> None:
    async with console.browser("admin") as http:
        headers = {"Content-Type": FORM, "Cookie": cookie_header(http)}

        # Fields within Starlette's own limits (1 MiB each, 1000 of them): only a cap on the
        # whole body stops this one.
        field = b"note=" + b"a" * (512 * 1024) + b"&"
        answered = await post_in_chunks(f"{console.base}/admin/users", headers, filler=field)

    assert answered.status == 413
    # Socket buffers hold a few MiB in flight; a server that read on would take all 64.
    assert answered.sent < answered.total // 4, answered


async def test_a_form_past_the_limit_with_its_length_is_refused_unread(console: Console) -> None:
    async with console.browser("admin") as http:
        csrf = csrf_of(await http.get("/admin/users"))
        body = f"csrf={csrf}&username=ann&note=" + "a" * MAX_FORM_BYTES

        answer = await http.post("/admin/users", content=body, headers={"Content-Type": FORM})

    assert answer.status_code == 413
    assert 'data-error="too_large"' in answer.text


async def test_a_form_within_the_limit_still_reaches_its_handler(console: Console) -> None:
    async with console.browser("admin") as http:
        csrf = csrf_of(await http.get("/admin/users"))
        fields = {"csrf": csrf, "username": "ann", "role": "user", "password": "x" * 12}

        answer = await http.post("/admin/users", data=fields)

    assert answer.status_code == 201, answer.text
    assert await console.gateway.store.users.by_username("ann") is not None


async def test_without_a_session_a_large_form_is_not_read_at_all(console: Console) -> None:
    answered = await post_in_chunks(f"{console.base}/admin/users", {"Content-Type": FORM})

    assert answered.status == 401
    assert answered.sent < answered.total // 4, answered
