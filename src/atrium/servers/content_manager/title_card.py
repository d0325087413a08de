"""A blog post's featured image drawn as a title card: 1200×630, the size link previews use
(Open Graph, X and LinkedIn cards all crop to about 1.91:1), as PNG, with Pillow.

Three things make it a design rather than text on a rectangle, and each is checked, not hoped:

* **The title fits.** ``fit_title`` finds the largest font size at which the wrapped title
  fits the title box in at most ``MAX_LINES`` lines, measured on the glyphs' ink
  (``getbbox``), not on the nominal size: accents and descenders count. A title that does not
  fit even at ``MIN_SIZE`` keeps its first lines and ends with "…". A word wider than the box
  (a URL, or Chinese or Japanese, written without spaces) is broken between characters.
* **The palette belongs to the post.** ``palette_for`` derives the hues from a SHA-256 of the
  post's slug (else its title): the same post always gets the same card, two posts almost
  never the same one, and no state is kept to achieve it.
* **The text is readable.** Every colour the background uses under the text (each step of a
  gradient, both stripes) has a WCAG 2.x contrast ratio of at least ``TARGET_CONTRAST``
  with the text colour (https://www.w3.org/TR/WCAG21/#contrast-minimum asks 4.5:1; the
  margin absorbs Pillow's rounding when it blends). The derivation darkens or lightens the
  palette step by step until it holds.

The typeface is DejaVu Sans Bold where the system has it (Debian's ``fonts-dejavu-core``:
Latin, Greek, Cyrillic, Arabic, Hebrew...), else the Aileron face bundled in Pillow (≥ 10.1,
scalable), so the card never depends on a font the project does not ship. Glyphs a face lacks
are drawn as its empty box; nothing fails.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import threading
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 1200, 630
MARGIN = 72
TITLE_BOX = (MARGIN, 120, WIDTH - MARGIN, 478)
CAPTION_BOX = (MARGIN, 506, WIDTH - MARGIN, HEIGHT - MARGIN)
ACCENT_BAR = (MARGIN, MARGIN, MARGIN + 120, MARGIN + 10)
MAX_SIZE, MIN_SIZE, SIZE_STEP = 112, 48, 2
CAPTION_SIZE = 30
MAX_LINES = 4
LINE_PITCH = 1.18
ELLIPSIS = "…"
TARGET_CONTRAST = 5.0

Style = Literal["gradient", "solid", "stripes"]
STYLES: tuple[Style, ...] = ("gradient", "solid", "stripes")
RGB = tuple[int, int, int]
Box = tuple[int, int, int, int]

DEJAVU_BOLD = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")

# One card at a time per process: the cached fonts are shared, and a FreeType face may be used
# by one thread at a time only (FreeType's FT_Face docs; Pillow locks it itself only in the
# free-threaded build). A card takes tens of milliseconds; cards are not made by the thousand.
_DRAWING = threading.Lock()


@dataclass(frozen=True)
class Typeface:
    """A scalable face: a TrueType file, or Pillow's bundled default when ``path`` is None."""

    path: Path | None

    @classmethod
    def default(cls) -> Typeface:
        return cls(DEJAVU_BOLD if DEJAVU_BOLD.is_file() else None)

    def at(self, size: int) -> ImageFont.FreeTypeFont:
        return _font(self.path, size)


@lru_cache(maxsize=128)
def _font(path: Path | None, size: int) -> ImageFont.FreeTypeFont:
    if path is not None:
        return ImageFont.truetype(str(path), size)
    font = ImageFont.load_default(size)
    if not isinstance(font, ImageFont.FreeTypeFont):
        # Only a Pillow built without FreeType does this; its one bitmap size cannot be fitted.
        raise RuntimeError("Pillow has no FreeType support: install a standard Pillow wheel")
    return font


# --- palette ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Palette:
    """``background`` and ``second`` fill the field (the gradient's ends, the two stripes);
    ``accent`` is decoration only, never under text."""

    background: RGB
    second: RGB
    text: RGB
    accent: RGB


def relative_luminance(colour: RGB) -> float:
    """WCAG 2.x relative luminance of an sRGB colour."""

    def linear(channel: int) -> float:
        c = channel / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(channel) for channel in colour)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(first: RGB, second: RGB) -> float:
    """WCAG 2.x contrast ratio, from 1 (same luminance) to 21 (black on white)."""
    light, dark = sorted((relative_luminance(first), relative_luminance(second)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def field_colours(palette: Palette, style: Style) -> list[RGB]:
    """Every colour the background can have under the text, for the contrast check."""
    if style == "solid":
        return [palette.background]
    if style == "stripes":
        return [palette.background, palette.second]
    return [_mix(palette.background, palette.second, step / 255) for step in range(256)]


def palette_for(seed: str, style: Style) -> Palette:
    """The palette of the post ``seed`` names (its slug, else its title), readable in ``style``."""
    digest = hashlib.sha256(seed.strip().casefold().encode()).digest()
    hue = int.from_bytes(digest[0:2], "big") / 65536
    turn = (0.06 + digest[2] / 255 * 0.12) * (1 if digest[3] & 1 else -1)
    saturation = 0.45 + digest[4] / 255 * 0.35
    dark = digest[5] % 3 != 0  # two cards in three are dark: they read better in feeds
    lights = (0.30, 0.40) if dark else (0.92, 0.82)
    text_light = 0.97 if dark else 0.16
    for _ in range(60):
        palette = Palette(
            background=_hls(hue, lights[0], saturation),
            second=_hls(hue + turn, lights[1], saturation)
            if style == "gradient"
            # Stripes stay in one hue, a shade apart: a pattern under the title, not a flag.
            else _hls(hue, (lights[0] + lights[1]) / 2, saturation),
            text=_hls(hue, text_light, 0.35 if dark else 0.6),
            accent=_hls(hue + 0.5, 0.62 if dark else 0.42, 0.85),
        )
        if min(contrast_ratio(palette.text, c) for c in field_colours(palette, style)) >= (
            TARGET_CONTRAST
        ):
            return palette
        if dark:
            lights = (max(lights[0] - 0.02, 0.0), max(lights[1] - 0.02, 0.0))
        else:
            text_light = max(text_light - 0.02, 0.0)
    raise AssertionError(f"no readable palette for {seed!r}")  # pure black/white always is


def _hls(hue: float, lightness: float, saturation: float) -> RGB:
    r, g, b = colorsys.hls_to_rgb(hue % 1.0, lightness, saturation)
    return round(r * 255), round(g * 255), round(b * 255)


def _mix(first: RGB, second: RGB, t: float) -> RGB:
    r, g, b = (round(a + (b - a) * t) for a, b in zip(first, second, strict=True))
    return r, g, b


def hex_colour(colour: RGB) -> str:
    return "#{:02x}{:02x}{:02x}".format(*colour)


# --- fitting the title -----------------------------------------------------------------------


@dataclass(frozen=True)
class TitleLayout:
    """The title as drawn: its lines, their font size, whether "…" cut it short, and where
    each line's origin (left, ascender) is, so that its ink stays inside ``TITLE_BOX``."""

    lines: tuple[str, ...]
    size: int
    truncated: bool
    origins: tuple[tuple[int, int], ...]


def clean_title(title: str) -> str:
    """The title on one line: control characters (newlines, tabs...) become spaces, runs of
    spaces one space."""
    spaced = "".join(" " if unicodedata.category(c) == "Cc" else c for c in title)
    return " ".join(spaced.split())


def fit_title(title: str, typeface: Typeface, box: Box = TITLE_BOX) -> TitleLayout:
    """The largest size at which ``title`` (already ``clean_title``) fits ``box`` in at most
    ``MAX_LINES`` lines; else ``MIN_SIZE`` with the lines that fit and an ellipsis.

    A binary search over the sizes: a smaller size never needs more lines, so the sizes that
    fit are the low ones, and six measurements of the title find the largest instead of 33."""
    words = title.split(" ")
    width, height = box[2] - box[0], box[3] - box[1]
    sizes = range(MIN_SIZE, MAX_SIZE + 1, SIZE_STEP)
    low, high = 0, len(sizes) - 1
    best: tuple[ImageFont.FreeTypeFont, list[str]] | None = None
    while low <= high:
        middle = (low + high) // 2
        font = typeface.at(sizes[middle])
        lines = _wrap(words, font, width, MAX_LINES + 1)
        if len(lines) <= MAX_LINES and _block_height(lines, font) <= height:
            best, low = (font, lines), middle + 1
        else:
            high = middle - 1
    if best is not None:
        return _placed(best[1], best[0], box, truncated=False)
    font = typeface.at(MIN_SIZE)
    lines = _wrap(words, font, width, MAX_LINES + 1)[:MAX_LINES]
    while len(lines) > 1 and _block_height(lines, font) > height:
        lines.pop()
    lines[-1] = ellipsize(lines[-1], font, width, always=True)
    return _placed(lines, font, box, truncated=True)


def ink_width(font: ImageFont.FreeTypeFont, text: str) -> int:
    """How wide ``text`` is drawn from its origin, counting a glyph that overhangs the left."""
    left, _, right, _ = font.getbbox(text)
    return int(right - min(left, 0))


def ellipsize(text: str, font: ImageFont.FreeTypeFont, width: int, *, always: bool) -> str:
    """``text`` cut so that it and a trailing "…" fit ``width``: at a space when one is left,
    else between characters. ``always`` adds "…" even when ``text`` fits (more text follows)."""
    if not always and ink_width(font, text) <= width:
        return text
    while text:
        shorter = text.rsplit(" ", 1)[0] if " " in text else text[:-1]
        candidate = text.rstrip(" .,;:-–—") + ELLIPSIS
        if ink_width(font, candidate) <= width:
            return candidate
        text = shorter
    return ELLIPSIS


def _wrap(words: list[str], font: ImageFont.FreeTypeFont, width: int, limit: int) -> list[str]:
    """Greedy wrapping, stopping once ``limit`` lines are made (the size is too big by then)."""
    lines: list[str] = []
    current = ""
    for word in words:
        candidate = f"{current} {word}" if current else word
        if ink_width(font, candidate) <= width:
            current = candidate
            continue
        if current:
            lines.append(current)
        pieces = _break(word, font, width)
        lines.extend(pieces[:-1])
        current = pieces[-1]
        if len(lines) >= limit:
            return lines
    return [*lines, current] if current else lines


def _break(word: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    """``word`` in pieces that each fit ``width`` (one piece when it fits whole); each break
    found by bisection, so a 300-character URL costs a few dozen measurements, not 300."""
    pieces = []
    rest = word
    while len(rest) > 1 and ink_width(font, rest) > width:
        fits, too_wide = 1, len(rest)
        while too_wide - fits > 1:
            middle = (fits + too_wide) // 2
            if ink_width(font, rest[:middle]) <= width:
                fits = middle
            else:
                too_wide = middle
        pieces.append(rest[:fits])
        rest = rest[fits:]
    return [*pieces, rest]


def _pitch(font: ImageFont.FreeTypeFont) -> int:
    return round(float(font.size) * LINE_PITCH)


def _ink_rows(lines: list[str], font: ImageFont.FreeTypeFont) -> tuple[int, int]:
    """Top and bottom of the lines' ink, from the first line's ascender line."""
    pitch = _pitch(font)
    boxes = [font.getbbox(line) for line in lines]
    top = min(int(b[1]) + i * pitch for i, b in enumerate(boxes))
    bottom = max(int(b[3]) + i * pitch for i, b in enumerate(boxes))
    return top, bottom


def _block_height(lines: list[str], font: ImageFont.FreeTypeFont) -> int:
    top, bottom = _ink_rows(lines, font)
    return bottom - top


def _placed(
    lines: list[str], font: ImageFont.FreeTypeFont, box: Box, *, truncated: bool
) -> TitleLayout:
    """Lines left-aligned in ``box``, the block's ink centred vertically."""
    top, bottom = _ink_rows(lines, font)
    y = box[1] + (box[3] - box[1] - (bottom - top)) // 2 - top
    origins = []
    for i, line in enumerate(lines):
        left = int(font.getbbox(line)[0])
        origins.append((box[0] - min(left, 0), y + i * _pitch(font)))
    return TitleLayout(tuple(lines), int(font.size), truncated, tuple(origins))


# --- drawing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TitleCard:
    png: bytes
    palette: Palette
    layout: TitleLayout


def draw_field(palette: Palette, style: Style) -> Image.Image:
    """The background alone: what the text is drawn on."""
    if style == "gradient":
        # A diagonal ramp: the mean of a horizontal and a vertical one, 256 steps.
        vertical = Image.linear_gradient("L").resize((WIDTH, HEIGHT))
        horizontal = Image.linear_gradient("L").rotate(90).resize((WIDTH, HEIGHT))
        mask = Image.blend(horizontal, vertical, 0.4)
        first = Image.new("RGB", (WIDTH, HEIGHT), palette.background)
        second = Image.new("RGB", (WIDTH, HEIGHT), palette.second)
        return Image.composite(second, first, mask)
    field = Image.new("RGB", (WIDTH, HEIGHT), palette.background)
    if style == "stripes":
        draw = ImageDraw.Draw(field)
        band, period = 44, 132
        for x in range(-HEIGHT, WIDTH + period, period):
            corners = [(x, HEIGHT), (x + band, HEIGHT), (x + band + HEIGHT, 0), (x + HEIGHT, 0)]
            draw.polygon(corners, fill=palette.second)
    return field


def render_title_card(
    title: str,
    *,
    seed: str,
    style: Style,
    caption: str | None = None,
    typeface: Typeface | None = None,
) -> TitleCard:
    """The card of ``title`` (already ``clean_title``, not empty), palette from ``seed``, with
    ``caption`` (the slug) small under it; PNG bytes, palette and layout."""
    typeface = typeface or Typeface.default()
    palette = palette_for(seed, style)
    image = draw_field(palette, style)
    draw = ImageDraw.Draw(image)
    draw.rectangle(ACCENT_BAR, fill=palette.accent)
    with _DRAWING:
        layout = fit_title(title, typeface)
        font = typeface.at(layout.size)
        for line, origin in zip(layout.lines, layout.origins, strict=True):
            draw.text(origin, line, font=font, fill=palette.text)
        if caption:
            _draw_caption(draw, caption, palette, typeface)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return TitleCard(buffer.getvalue(), palette, layout)


def _draw_caption(
    draw: ImageDraw.ImageDraw, caption: str, palette: Palette, typeface: Typeface
) -> None:
    font = typeface.at(CAPTION_SIZE)
    left, top, right, bottom = CAPTION_BOX
    text = ellipsize(caption, font, right - left, always=False)
    ink_left, ink_top, _, ink_bottom = font.getbbox(text)
    y = top + (bottom - top - int(ink_bottom - ink_top)) // 2 - int(ink_top)
    draw.text((left - min(int(ink_left), 0), y), text, font=font, fill=palette.text)
