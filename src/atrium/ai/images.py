"""Pictures from an image model: ``ai.images`` of ``services/ai/config.yaml``, through the
official ``openai`` SDK and the OpenAI Images API (``POST /v1/images/generations``), spoken by
OpenAI itself and by compatible servers (``base_url``).

``generate_image`` asks for one picture and returns it as PNG bytes, whatever format the model
sent, after checking it:

* **Base64 only.** The GPT image models always answer with ``b64_json`` and refuse a
  ``response_format``; the DALL·E models and most compatible servers answer with a ``url``
  unless asked for ``b64_json``, so it is asked for from every model but the GPT image ones.
  An answer with a ``url`` all the same is refused: Atrium never fetches a URL a model API
  names (it could point anywhere, the loopback and the cloud's metadata service included).
* **Bounded.** At most ``MAX_IMAGE_BYTES`` of image and ``MAX_PIXELS`` pixels, checked before
  anything is decoded.
* **An image.** Pillow must open and decode it; anything else is the API's failure.

Errors, in the order they can happen:

* ``NoImagesConfigured`` (a ``ConfigError``): ``ai.images`` is absent. Callers with another
  way to make a picture (the content-manager's title card) catch exactly this one.
* ``ConfigError``: the file is invalid, or the key's reference cannot be read.
* ``ProviderSetupError``: the ``openai`` SDK is not installed, or the provider has no key.
* ``ProviderError``: the API refused or failed the request (after the SDK's retries on
  408/409/429/5xx), or its answer is not a picture as above.
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio.to_thread
from PIL import Image

from atrium.ai.config import AI_CONFIG_FILE, AiConfig, load_ai_config, resolve_api_key
from atrium.ai.providers.provider import ProviderError, ProviderKind, ProviderSetupError
from atrium.errors import ConfigError, Problem
from atrium.settings import Settings

if TYPE_CHECKING:
    from openai import AsyncOpenAI
    from openai.types import ImagesResponse

__all__ = ["GeneratedImage", "NoImagesConfigured", "generate_image"]

MAX_IMAGE_BYTES = 20 * 1024 * 1024
# 3840×2160, the largest size the GPT image models make, is 8.3 million; this leaves room and
# keeps a decompression bomb (a small file of huge dimensions) from being decoded.
MAX_PIXELS = 40_000_000
# What a local OpenAI-compatible server gets when it needs no key (the SDK insists on one).
_NO_KEY = "no-key"
_GPT_IMAGE_MODELS = ("gpt-image", "chatgpt-image")


@dataclass(frozen=True)
class GeneratedImage:
    """The model's picture as PNG; ``revised_prompt`` is the prompt as the model rewrote it,
    when it says (DALL·E 3 does; the GPT image models do not)."""

    png: bytes
    width: int
    height: int
    provider: str
    model: str
    revised_prompt: str | None = None


class NoImagesConfigured(ConfigError):
    """``services/ai/config.yaml`` configures no image model (or does not exist)."""

    def __init__(self) -> None:
        super().__init__(
            [
                Problem(
                    AI_CONFIG_FILE,
                    "no image model is configured: add ai.images with the provider (of type"
                    " openai or openai-chat) and the model, e.g. images: {provider: openai,"
                    " model: gpt-image-2}",
                    key_path="ai.images",
                )
            ]
        )


async def generate_image(settings: Settings, prompt: str) -> GeneratedImage:
    """One picture of ``prompt`` from the configured image model."""
    config = load_ai_config(settings)
    if config.images is None:
        raise NoImagesConfigured()
    name, model = config.images.provider, config.images.model
    kind = config.providers[name].type  # openai or openai-chat: load_ai_config checks it
    client = _client(settings, config, name, kind)
    try:
        response = await _generate(client, kind, model, prompt, config.images.size)
    finally:
        await client.close()
    encoded, revised = _picture_of(response, kind)
    png, width, height = await anyio.to_thread.run_sync(_checked_png, encoded, kind)
    return GeneratedImage(png, width, height, name, model, revised)


def _client(settings: Settings, config: AiConfig, name: str, kind: ProviderKind) -> AsyncOpenAI:
    """The SDK's client for provider ``name``, with the messages the chat providers use when it
    cannot be made (``atrium.ai.providers.create_provider``)."""
    provider = config.providers[name]
    api_key = resolve_api_key(config, name, settings)
    label = f"AI provider '{name}' ({kind})"
    if not api_key and not (kind == "openai-chat" and provider.base_url):
        where = f"ai.providers.{name}.api_key in {AI_CONFIG_FILE}"
        raise ProviderSetupError(
            f"{label} has no API key: set {where}, e.g. api_key: {{$env: OPENAI_API_KEY}}"
        )
    try:
        import openai  # the ``ai`` extra: imported on demand, as the chat providers do
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "openai":
            raise
        raise ProviderSetupError(
            f"{label} needs the openai package: pip install 'atrium[ai]'"
        ) from None
    return openai.AsyncOpenAI(
        api_key=api_key or _NO_KEY,
        base_url=provider.base_url,
        timeout=config.timeout_for(name),
        max_retries=provider.max_retries,
    )


async def _generate(
    client: AsyncOpenAI, kind: ProviderKind, model: str, prompt: str, size: str | None
) -> ImagesResponse:
    from openai import omit

    from atrium.ai.providers.openai_common import translated_errors

    gpt_image = model.startswith(_GPT_IMAGE_MODELS)
    async with translated_errors(kind):
        return await client.images.generate(
            model=model,
            prompt=prompt,
            n=1,
            response_format=omit if gpt_image else "b64_json",
            size=omit if size is None else size,
        )


def _picture_of(response: ImagesResponse, kind: ProviderKind) -> tuple[str, str | None]:
    """The base64 of the one picture asked for, and the revised prompt if any."""
    if not response.data:
        raise ProviderError(kind, "the image model answered with no image")
    picture = response.data[0]
    if picture.b64_json:
        return picture.b64_json, picture.revised_prompt or None
    if picture.url:
        raise ProviderError(
            kind,
            "the image model answered with a URL instead of the image; Atrium does not fetch"
            " URLs a model API names: use a model or server that returns b64_json",
        )
    raise ProviderError(kind, "the image model's answer holds neither b64_json nor a URL")


def _checked_png(encoded: str, kind: ProviderKind) -> tuple[bytes, int, int]:
    """The decoded picture as PNG with its size; CPU work, run in a thread."""
    # Four base64 characters carry three bytes: refuse an oversized image before decoding it.
    if len(encoded) > (MAX_IMAGE_BYTES + 2) // 3 * 4:
        raise ProviderError(kind, _too_big(len(encoded) // 4 * 3))
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ProviderError(kind, "the image model's b64_json is not valid base64") from None
    if len(raw) > MAX_IMAGE_BYTES:
        raise ProviderError(kind, _too_big(len(raw)))
    try:
        with Image.open(io.BytesIO(raw)) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ProviderError(
                    kind,
                    f"the image model sent a {width}×{height} image: more than"
                    f" {MAX_PIXELS:,} pixels",
                )
            image.load()
            if image.format == "PNG":
                return raw, width, height
            out = io.BytesIO()
            image.convert("RGBA" if _has_alpha(image) else "RGB").save(out, format="PNG")
            return out.getvalue(), width, height
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
        # Pillow raises one of these for what is no image, or a truncated or malformed one.
        raise ProviderError(
            kind, "the image model sent data that is not an image Pillow can read"
        ) from None


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info


def _too_big(size: int) -> str:
    limit = MAX_IMAGE_BYTES // (1024 * 1024)
    return f"the image model sent an image of {size:,} bytes: at most {limit} MiB are accepted"
