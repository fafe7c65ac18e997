"""Writes the committed fuzz corpus (tests/fuzz/corpus: tiny valid images of each format
and flavour) and the regression inputs (tests/fuzz/regressions: hostile files the decoder
must refuse, each once a finding). Deterministic; run from anywhere:

    .venv/bin/python tests/fuzz/make_corpus.py

The images are drawn here (gradients and noise), not taken from any data set.
"""
import io
import os
import struct
import zlib

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))


def image(w, h, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) * 127 // max(w + h - 2, 1)], -1)
    return Image.fromarray(np.clip(base + rng.integers(-20, 20, base.shape), 0, 255).astype(np.uint8))


def encode(img, fmt, **kw):
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def corpus():
    im = image(16, 12)
    return {
        "rgb.png": encode(im, "PNG"),
        "gray.png": encode(im.convert("L"), "PNG"),
        "palette.png": encode(im.convert("P"), "PNG"),
        "rgba.png": encode(im.convert("RGBA"), "PNG"),
        "baseline.jpg": encode(im, "JPEG", quality=90),
        "progressive.jpg": encode(image(24, 20, 1), "JPEG", quality=80, progressive=True),
        "gray.jpg": encode(im.convert("L"), "JPEG"),
        "subsampled.jpg": encode(image(33, 17, 2), "JPEG", subsampling=2),
        "restart.jpg": encode(image(40, 40, 3), "JPEG", restart_marker_blocks=1) if _has_restart() else encode(image(40, 40, 3), "JPEG"),
        "rgb.bmp": encode(im, "BMP"),
        "gray.bmp": encode(im.convert("L"), "BMP"),
        "image.gif": encode(im.convert("P"), "GIF"),
    }


def _has_restart():
    try:
        encode(image(8, 8), "JPEG", restart_marker_blocks=1)
        return True
    except Exception:  # noqa: BLE001 - older Pillow: no restart markers
        return False


def regressions():
    out = {}
    # A 35-byte GIF: 16384 x 16384 logical screen, an image descriptor, no LZW data.
    gif = b"GIF89a" + struct.pack("<HHBBB", 16384, 16384, 0, 0, 0)
    gif += b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x00" + b"\x3b"
    out["gif_no_pixel_data.gif"] = gif + b"\x00" * (35 - len(gif))
    # A small JPEG whose frame header claims 16384 x 16384.
    jpg = bytearray(encode(image(16, 16), "JPEG", quality=50))
    sof = jpg.index(b"\xff\xc0")
    jpg[sof + 5:sof + 9] = struct.pack(">HH", 16384, 16384)
    out["jpeg_edited_header.jpg"] = bytes(jpg)
    # Half a JPEG with an end marker appended.
    full = encode(image(96, 64, 5), "JPEG", quality=95)
    out["jpeg_half_with_eoi.jpg"] = full[: len(full) // 2] + b"\xff\xd9"
    out["jpeg_half_no_eoi.jpg"] = full[: len(full) // 2]
    # A PNG whose first image-data chunk is empty (stb: memcpy(NULL, ..., 0)).
    png = encode(image(8, 8), "PNG")
    idat = png.index(b"IDAT") - 4
    out["png_empty_first_idat.png"] = png[:idat] + png_chunk(b"IDAT", b"") + png[idat:]
    # A PNG header declaring 16384 x 16384 over a few bytes of data.
    raw = zlib.compress(b"\x00" * 8)
    ihdr = struct.pack(">IIBBBBB", 16384, 16384, 8, 2, 0, 0, 0)
    out["png_bomb_header.png"] = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", raw) + png_chunk(b"IEND", b"")
    # A JPEG with a frame header and no scan.
    eoi = full.index(b"\xff\xda")
    out["jpeg_no_scan.jpg"] = full[:eoi] + b"\xff\xd9"
    # A truncated BMP.
    bmp = encode(image(32, 32), "BMP")
    out["bmp_truncated.bmp"] = bmp[: len(bmp) // 2]
    return out


def write(folder, files):
    path = os.path.join(HERE, folder)
    os.makedirs(path, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(path, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    write("corpus", corpus())
    write("regressions", regressions())
    print("wrote", len(corpus()), "corpus files and", len(regressions()), "regression inputs")
