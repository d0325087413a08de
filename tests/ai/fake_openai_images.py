"""The OpenAI Images API on loopback: ``POST /v1/images/generations``, for the image model of
``ai.images`` (``atrium.ai.images``) through the official ``openai`` SDK (``base_url`` is
``<url>/v1``).

It answers as the API does: ``{"created", "data": [{"b64_json", "revised_prompt"}], ...}``,
with ``usage`` and the output's ``size``/``quality``/``output_format`` for the GPT image models.
Like the API, it refuses ``response_format`` from a GPT image model (400, OpenAI's error body)
and answers a DALL·E model with a ``url`` unless asked for ``b64_json``. Each request is
recorded (``tests.ai.fake_script.Recorded``), GETs of any other path too, so a test can tell
that nobody fetched a URL the fake named.

Script items, one per request: ``Picture`` (bytes sent as ``b64_json``, or ``raw_b64`` as is),
``Link`` (a ``url`` instead of the image), ``tests.ai.fake_script.Failure`` (an HTTP error in
OpenAI's format, with ``Retry-After`` if scripted). A request past the script gets a 400.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import uvicorn
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.ai.fake_openai_chat import openai_error
from tests.ai.fake_script import Failure, Recorded
from tests.ai.project import KEY_VARIABLE
from tests.polling import wait_until

GPT_IMAGE = ("gpt-image", "chatgpt-image")


@dataclass(frozen=True)
class Picture:
    """An image: ``data`` base64-encoded into ``b64_json``, or ``raw_b64`` sent as it is."""

    data: bytes = b""
    revised_prompt: str | None = None
    raw_b64: str | None = None


@dataclass(frozen=True)
class Link:
    """A ``url`` where the image would be, instead of the image; a path (``/x.png``) is on
    the fake itself, which records a GET of it."""

    url: str


ScriptItem = Picture | Link | Failure


def solid_png(colour: tuple[int, int, int], size: tuple[int, int] = (1024, 1024)) -> bytes:
    """A PNG of one colour, the picture a test can recognise in any crop of it."""
    return encoded(Image.new("RGB", size, colour), "PNG")


def encoded(image: Image.Image, format: str) -> bytes:
    out = io.BytesIO()
    image.save(out, format=format)
    return out.getvalue()


def write_images_config(
    project: Path,
    fake: OpenAIImagesFake,
    *,
    model: str = "gpt-image-2",
    kind: str = "openai",
    size: str | None = None,
    key: bool = True,
) -> Path:
    """``services/ai/config.yaml`` with one provider, ``images``, at ``fake``, and ``ai.images``
    on it; its key is ``$env`` ``ATRIUM_TEST_MODEL_KEY`` unless ``key`` is false. JSON, which is
    YAML too."""
    provider: dict[str, Any] = {"type": kind, "base_url": fake.base_url, "max_retries": 2}
    if key:
        provider["api_key"] = {"$env": KEY_VARIABLE}
    images: dict[str, Any] = {"provider": "images", "model": model}
    if size is not None:
        images["size"] = size
    document = {"ai": {"providers": {"images": provider}, "images": images}}
    path = project / "services/ai/config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


class OpenAIImagesFake:
    """The Images API playing ``script``; use it as a context manager."""

    def __init__(self, script: Iterable[ScriptItem]) -> None:
        self._script: deque[ScriptItem] = deque(script)
        self._lock = threading.Lock()
        self.requests: list[Recorded] = []
        self.url = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._listener: socket.socket | None = None

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    @property
    def generations(self) -> list[Recorded]:
        """The image requests, without the GETs of other paths."""
        return [r for r in self.requests if r.path == "/v1/images/generations"]

    async def generate(self, request: Request) -> Response:
        body = json.loads(await request.body() or b"null")
        with self._lock:
            self.requests.append(_record(request, body))
            item = self._script.popleft() if self._script else None
        if item is None:
            return _error(400, f"fake: no scripted reply for request {len(self.requests)}")
        if isinstance(item, Failure):
            headers = {"retry-after": item.retry_after} if item.retry_after is not None else {}
            return _error(item.status, item.message, headers)
        model = str(body.get("model") or "")
        gpt_image = model.startswith(GPT_IMAGE)
        if gpt_image and "response_format" in body:
            return _error(400, "Unknown parameter: 'response_format'.")
        if isinstance(item, Link) or (not gpt_image and body.get("response_format") != "b64_json"):
            url = item.url if isinstance(item, Link) else "/images/img-1.png"
            url = self.url + url if url.startswith("/") else url
            return JSONResponse({"created": int(time.time()), "data": [{"url": url}]})
        return JSONResponse(_generated(item, gpt_image, body))

    async def elsewhere(self, request: Request) -> Response:
        with self._lock:
            self.requests.append(_record(request, None))
        return Response(b"", 404)

    def __enter__(self) -> Self:
        routes = [
            Route("/v1/images/generations", self.generate, methods=["POST"]),
            Route("/{path:path}", self.elsewhere, methods=["GET"]),
        ]
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        config = uvicorn.Config(
            Starlette(routes=routes),
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        self._server = server = uvicorn.Server(config)
        self._thread = thread = threading.Thread(
            target=server.run, kwargs={"sockets": [listener]}, daemon=True
        )
        thread.start()
        wait_until(lambda: server.started or not thread.is_alive(), what="the images fake")
        assert server.started, "the images fake stopped before it started"
        self.url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        self._listener = listener
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._server is not None
        assert self._thread is not None
        self._server.should_exit = True
        self._thread.join(timeout=10)
        if self._listener is not None:
            self._listener.close()


def _generated(picture: Picture, gpt_image: bool, body: Any) -> dict[str, Any]:
    data = picture.raw_b64
    if data is None:
        data = base64.b64encode(picture.data).decode("ascii")
    item: dict[str, Any] = {"b64_json": data}
    if picture.revised_prompt is not None:
        item["revised_prompt"] = picture.revised_prompt
    answer: dict[str, Any] = {"created": int(time.time()), "data": [item]}
    if gpt_image:
        answer |= {
            "background": "opaque",
            "output_format": "png",
            "quality": "high",
            "size": body.get("size") or "1024x1024",
            "usage": {
                "input_tokens": 50,
                "input_tokens_details": {"image_tokens": 0, "text_tokens": 50},
                "output_tokens": 4160,
                "total_tokens": 4210,
            },
        }
    return answer


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(openai_error(status, message), status, headers)


def _record(request: Request, body: Any) -> Recorded:
    return Recorded(
        method=request.method,
        path=request.url.path,
        query=dict(request.query_params),
        headers={name.lower(): value for name, value in request.headers.items()},
        body=body,
    )
