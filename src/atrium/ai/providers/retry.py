"""How long to wait before trying a request again, for SDKs without a retry that honours
``Retry-After`` (google-genai's own retry only backs off exponentially).

The rules follow the ``anthropic`` and ``openai`` SDKs so every provider behaves alike: retry
408, 409, 429 and 5xx; wait what ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP
date, RFC 9110 §10.2.3) says when it says up to two minutes, else back off exponentially with
jitter; a server that asks for a longer wait is not retried.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Mapping

RETRYABLE_STATUSES = frozenset({408, 409, 429})
MAX_RETRY_AFTER_S = 120.0
_INITIAL_DELAY_S = 0.5
_MAX_DELAY_S = 8.0


def should_retry(status: int | None) -> bool:
    return status is not None and (status in RETRYABLE_STATUSES or status >= 500)


def retry_after_s(headers: Mapping[str, str] | None) -> float | None:
    """The wait the server asked for, in seconds, if it asked."""
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        seconds: float | None
        try:
            seconds = float(value) / scale
        except ValueError:
            seconds = _from_date(value)
        if seconds is not None and math.isfinite(seconds):
            return max(seconds, 0.0)
    return None


def _from_date(value: str) -> float | None:
    parsed = email.utils.parsedate_tz(value)
    if parsed is None:
        return None
    return float(email.utils.mktime_tz(parsed)) - time.time()


def delay_s(attempt: int, headers: Mapping[str, str] | None) -> float | None:
    """The wait before retry number ``attempt`` (0 for the first), or None not to retry."""
    asked = retry_after_s(headers)
    if asked is not None:
        return asked if asked <= MAX_RETRY_AFTER_S else None
    backoff = min(_INITIAL_DELAY_S * 2.0**attempt, _MAX_DELAY_S)
    return backoff * (1 - 0.25 * random.random())  # jitter, not a secret
