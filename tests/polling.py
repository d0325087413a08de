"""Waiting on a condition with a deadline, the one way the tests wait (never a bare sleep).

``wait_until`` blocks (tests of subprocesses, synchronous helpers); ``until`` is its async twin,
for a condition that is a plain function or a coroutine function. Both return the condition's
first truthy value, so a wait can also fetch what it waited for::

    records = await until(lambda: stored(count), what="the audit records")

and fail with ``AssertionError: timed out after 10 s waiting for the audit records``. A
condition that sees waiting is hopeless (the process exited) raises at once; ``detail`` adds
what helps to read a timeout (a log), read only when it happens.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")

TIMEOUT_S = 10.0
INTERVAL_S = 0.05


def wait_until(
    condition: Callable[[], T | None],
    *,
    what: str,
    timeout_s: float = TIMEOUT_S,
    interval: float = INTERVAL_S,
    detail: Callable[[], str] | None = None,
) -> T:
    """Call ``condition`` every ``interval`` s until it returns a truthy value; return it."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(_timed_out(what, timeout_s, detail))
        time.sleep(interval)
    return value


@overload
async def until(
    condition: Callable[[], Awaitable[T | None]],
    *,
    what: str,
    timeout_s: float = ...,
    interval: float = ...,
    detail: Callable[[], str] | None = ...,
) -> T: ...


@overload
async def until(
    condition: Callable[[], T | None],
    *,
    what: str,
    timeout_s: float = ...,
    interval: float = ...,
    detail: Callable[[], str] | None = ...,
) -> T: ...


async def until(
    condition: Callable[[], Any],
    *,
    what: str,
    timeout_s: float = TIMEOUT_S,
    interval: float = INTERVAL_S,
    detail: Callable[[], str] | None = None,
) -> Any:
    """``wait_until`` for a test's event loop: ``condition`` may be a coroutine function."""
    deadline = time.monotonic() + timeout_s
    while not (value := await _result(condition)):
        if time.monotonic() > deadline:
            raise AssertionError(_timed_out(what, timeout_s, detail))
        await asyncio.sleep(interval)
    return value


async def _result(condition: Callable[[], Any]) -> Any:
    value = condition()
    if inspect.isawaitable(value):
        return await value
    return value


def _timed_out(what: str, timeout_s: float, detail: Callable[[], str] | None) -> str:
    message = f"timed out after {timeout_s:g} s waiting for {what}"
    return message if detail is None else f"{message}:\n{detail()}"
