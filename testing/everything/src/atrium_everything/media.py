"""The binary fixtures the conformance scenarios ask for, built here rather than pasted in.

``tools-call-image``, ``resources-read-binary`` and ``prompts-get-with-image`` want "a minimal
test image" (a PNG), ``tools-call-audio`` "a minimal test audio file" (a WAV). Both are encoded
from their format definitions, so anyone can see what the bytes are: one red pixel (PNG,
RFC 2083 / ISO 15948) and a few milliseconds of silence (RIFF WAVE, 16-bit PCM mono).
"""

from __future__ import annotations

import base64
import struct
import zlib

PNG_MIME_TYPE = "image/png"
WAV_MIME_TYPE = "audio/wav"

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def red_pixel_png() -> bytes:
    """A 1x1 8-bit RGB PNG holding one red pixel."""
    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # width, height, depth, RGB, ...
    scanline = b"\x00" + b"\xff\x00\x00"  # filter type 0, then one RGB pixel
    return (
        _PNG_SIGNATURE
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(scanline))
        + _png_chunk(b"IEND", b"")
    )


def silent_wav(*, sample_rate: int = 8000, samples: int = 8) -> bytes:
    """A mono 16-bit PCM WAVE file of ``samples`` silent samples."""
    data = b"\x00\x00" * samples
    block_align = 2
    fmt = struct.pack(
        "<HHIIHH", 1, 1, sample_rate, sample_rate * block_align, block_align, 16
    )  # PCM, mono, rate, byte rate, block align, bits per sample
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def base64_text(data: bytes) -> str:
    """``data`` as the base64 text MCP carries in ``data`` and ``blob`` fields."""
    return base64.b64encode(data).decode("ascii")


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)
