"""A featured image from the project's image model (``ai.images`` in ``services/ai/config.yaml``,
issue 14): the prompt made from the post, the model's picture (``atrium.ai.images``)
cover-cropped to the title card's 1200×630, and its failures as tool errors.

The model is used when it is configured, unless the caller asks for the title card
(``use_model: false``). Once configured, a failure is the tool's error, never a title card in
its place, even when the caller left ``use_model`` unset: they configured the model to get its
picture, and a card they did not ask for would hide that the model is broken (no key,
unreachable, a refused prompt) until someone looks at the images. The soul server treats a
broken text model the same way (``atrium.servers.soul.asking``).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import anyio.to_thread
from mcp.server.mcpserver.exceptions import ToolError
from PIL import Image, ImageOps

from atrium.ai.config import AI_CONFIG_FILE
from atrium.ai.images import GeneratedImage, NoImagesConfigured, generate_image
from atrium.ai.providers.provider import ProviderError, ProviderSetupError
from atrium.errors import ConfigError
from atrium.servers.builtin import about_api_key, key_hint
from atrium.servers.content_manager.title_card import HEIGHT, WIDTH, Style
from atrium.settings import Settings

logger = logging.getLogger(__name__)

# The title card's styles, as a look the model can paint without writing anything.
LOOKS: dict[Style, str] = {
    "gradient": "soft, smooth colour gradients",
    "solid": "a calm, minimal composition dominated by one colour",
    "stripes": "bold diagonal lines and stripes",
}

NOT_CONFIGURED = (
    f"use_model is true but no image model is configured: add ai.images (provider, model) to"
    f" {AI_CONFIG_FILE}, or leave use_model out for a title card"
)

KEY_HINT = "\n" + key_hint("content-manager")


@dataclass(frozen=True)
class ModelPicture:
    """The model's picture at 1200×630, as PNG, and which model made it from which prompt."""

    png: bytes
    provider: str
    model: str
    prompt: str
    revised_prompt: str | None


def picture_prompt(title: str, slug: str | None, style: Style) -> str:
    """What the image model is asked for: a picture for the post, without any text (a model's
    lettering is often misspelt, and link previews show the title next to the image)."""
    named = f' (its URL slug: "{slug}")' if slug else ""
    return (
        f'A featured image for a blog post titled "{title}"{named}. Visual style:'
        f" {LOOKS[style]}. A wide landscape composition with the subject near the centre, as"
        f" the edges are cropped to {WIDTH}×{HEIGHT}. No text, letters, numbers, captions,"
        " signatures or logos anywhere in the image."
    )


async def model_picture(
    settings: Settings, title: str, slug: str | None, style: Style, *, required: bool
) -> ModelPicture | None:
    """The model's picture for the post; None when no image model is configured and the caller
    did not insist on one (``required``). Every other failure is a ``ToolError``."""
    prompt = picture_prompt(title, slug, style)
    try:
        generated = await generate_image(settings, prompt)
    except NoImagesConfigured:
        if required:
            raise ToolError(NOT_CONFIGURED) from None
        return None
    except ConfigError as exc:
        raise ToolError(str(exc) + (KEY_HINT if about_api_key(exc) else "")) from None
    except ProviderSetupError as exc:
        raise ToolError(str(exc)) from None
    except ProviderError as exc:
        logger.warning("the image model made no picture: %s", exc)
        raise ToolError(
            f"the image model made no picture: {exc} (use_model: false draws a title card)"
        ) from None
    png = await anyio.to_thread.run_sync(cover_crop, generated.png)
    return _picture(generated, png, prompt)


def _picture(generated: GeneratedImage, png: bytes, prompt: str) -> ModelPicture:
    return ModelPicture(png, generated.provider, generated.model, prompt, generated.revised_prompt)


def cover_crop(png: bytes) -> bytes:
    """``png`` scaled to cover 1200×630 and cropped to it around its centre, as PNG; a
    transparent picture is laid on white (link previews show no transparency)."""
    with Image.open(io.BytesIO(png)) as image:
        image.load()
        flat = _on_white(image)
    fitted = ImageOps.fit(flat, (WIDTH, HEIGHT), method=Image.Resampling.LANCZOS)
    out = io.BytesIO()
    fitted.save(out, format="PNG")
    return out.getvalue()


def _on_white(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        white.alpha_composite(image.convert("RGBA"))
        return white.convert("RGB")
    return image.convert("RGB")
