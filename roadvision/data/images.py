"""Decode untrusted image and mask bytes safely, with a reason code for every refusal.

Ingest, the importers, the validator and the serving predictor all read images through this
module, so one set of rules decides what counts as an image:

* the format is sniffed from the bytes (never from a file name) and must be in an allow-list;
* the pixel count is read from the header *before* any pixel is decoded, so a small file that
  claims to be 100,000 x 100,000 px (a "decompression bomb") costs nothing;
* truncated files are refused: Pillow's ``ImageFile.LOAD_TRUNCATED_IMAGES`` stays ``False`` and
  PNGs must carry their ``IEND`` chunk (Pillow otherwise accepts a PNG cut just before it);
* PNG chunk checksums are verified, so flipped bytes in a mask are caught;
* EXIF orientation is applied, so the array is what a viewer shows (phone photos).

Every refusal is an :class:`ImageError` with a short machine-readable ``reason`` (quarantine
reports, HTTP 4xx bodies and Prometheus rejection labels use it) and a human message.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_FORMATS",
    "REASONS",
    "ImageError",
    "decode_image",
    "decode_mask",
    "encode_jpeg",
    "encode_png",
    "extension_for",
    "probe_image",
    "sniff_format",
]

# Keep Pillow strict: a truncated JPEG must raise, not come back with grey rows at the bottom.
ImageFile.LOAD_TRUNCATED_IMAGES = False

#: Twice a 12 MP phone photo (4032 x 3024): the largest image the project expects, with margin.
DEFAULT_MAX_PIXELS = 4032 * 3024 * 2

IMAGE_FORMATS = ("JPEG", "PNG", "WEBP")

#: Reason codes an ImageError can carry (documented here so reports and metrics agree).
REASONS = {
    "empty": "no bytes at all",
    "unsupported_format": "not one of the accepted image formats",
    "too_many_pixels": "the header announces more pixels than allowed",
    "corrupt": "the header or pixel data cannot be decoded",
    "truncated": "the file ends before the image data does",
    "mask_not_single_channel": "a mask must be a single-channel image of class ids",
    "mask_out_of_range": "a mask holds class ids >= the number of classes",
}

# Magic numbers of the formats we accept; used to tell "damaged JPEG" from "not an image".
_MAGIC = {
    "JPEG": (b"\xff\xd8\xff",),
    "PNG": (b"\x89PNG\r\n\x1a\n",),
    "WEBP": (b"RIFF",),  # plus b"WEBP" at offset 8, checked below
}
_PNG_IEND = b"IEND\xaeB`\x82"
_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}


class ImageError(ValueError):
    """An image (or mask) was refused; ``reason`` is a code from :data:`REASONS`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        return self.message


def sniff_format(data: bytes) -> str | None:
    """The format named by the leading magic bytes (JPEG, PNG, WEBP), or None."""
    for fmt, prefixes in _MAGIC.items():
        if any(data.startswith(p) for p in prefixes):
            if fmt == "WEBP" and data[8:12] != b"WEBP":
                continue
            return fmt
    return None


def extension_for(fmt: str) -> str:
    """File extension (with dot) for a Pillow format name."""
    return _EXTENSIONS.get(fmt.upper(), "." + fmt.lower())


def _open(data: bytes, max_pixels: int, allowed: Sequence[str]) -> Image.Image:
    """Open lazily (header only) and enforce format and pixel limits before decoding."""
    if not data:
        raise ImageError("empty", "empty file: 0 bytes")
    allowed = tuple(f.upper() for f in allowed)
    magic = sniff_format(data)
    if magic is not None and magic not in allowed:
        raise ImageError("unsupported_format",
                         f"{magic} is not accepted here; expected one of {', '.join(allowed)}")
    try:
        with warnings.catch_warnings():
            # Our own max_pixels is the limit; Pillow's bomb warning would only add noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageError("too_many_pixels", f"image too large to open safely ({exc})") from exc
    except UnidentifiedImageError as exc:
        if magic is not None:
            raise ImageError("corrupt", f"{magic} header cannot be read "
                                        f"(damaged or truncated, {len(data)} bytes)") from exc
        raise ImageError("unsupported_format",
                         f"not an image in an accepted format ({', '.join(allowed)})") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError("corrupt", f"cannot read image header: {exc}") from exc
    fmt = (image.format or "").upper()
    if fmt not in allowed:
        raise ImageError("unsupported_format",
                         f"{fmt or 'unknown format'} is not accepted; "
                         f"expected one of {', '.join(allowed)}")
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageError("corrupt", f"header announces an empty image ({width}x{height})")
    if width * height > max_pixels:
        raise ImageError("too_many_pixels",
                         f"{width}x{height} = {width * height:,} pixels exceeds the limit "
                         f"of {max_pixels:,}")
    return image


def probe_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                allowed_formats: Sequence[str] = IMAGE_FORMATS) -> tuple[str, int, int]:
    """(format, width, height) from the header alone; raises ImageError like decode_image."""
    image = _open(data, max_pixels, allowed_formats)
    return image.format.upper(), image.size[0], image.size[1]


def _load(image: Image.Image, data: bytes) -> Image.Image:
    """Decode the pixels, translating Pillow's many exception types into reason codes."""
    fmt = image.format.upper()
    if fmt == "PNG" and _PNG_IEND not in data:
        raise ImageError("truncated", f"PNG is truncated: no IEND chunk in {len(data)} bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if fmt == "PNG":
                # verify() checks every chunk CRC; it consumes the image, so reopen afterwards.
                Image.open(io.BytesIO(data)).verify()
            image.load()
    except Image.DecompressionBombError as exc:
        raise ImageError("too_many_pixels", f"image too large to decode safely ({exc})") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        text = str(exc)
        if "truncated" in text.lower() or isinstance(exc, EOFError):
            raise ImageError("truncated", f"{fmt} is truncated: {text}") from exc
        raise ImageError("corrupt", f"{fmt} pixel data is damaged: {text}") from exc
    return image


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                 allowed_formats: Sequence[str] = IMAGE_FORMATS) -> np.ndarray:
    """Decode image bytes into an RGB ``uint8`` array of shape (H, W, 3).

    Raises:
        ImageError: ``empty``, ``unsupported_format``, ``too_many_pixels`` (from the header,
            before decoding), ``corrupt`` or ``truncated``.
    """
    image = _load(_open(data, max_pixels, allowed_formats), data)
    with contextlib.suppress(Exception):  # a broken EXIF block must not cost a good image
        image = ImageOps.exif_transpose(image)
    if image.mode != "RGB":
        has_alpha = image.mode in ("RGBA", "LA", "PA")
        if has_alpha or (image.mode == "P" and "transparency" in image.info):
            # Composite on black: what a model would see if the alpha were simply dropped,
            # but without Pillow's palette-transparency warning.
            image = image.convert("RGBA")
            background = Image.new("RGBA", image.size, (0, 0, 0, 255))
            image = Image.alpha_composite(background, image)
        elif image.mode.startswith("I;16") or image.mode == "I":
            array = np.asarray(image, dtype=np.float32)
            scale = 255.0 / max(float(array.max()), 1.0)
            image = Image.fromarray((array * scale).astype(np.uint8))
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8).copy()


def decode_mask(data: bytes, num_classes: int, *,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a single-channel PNG of class ids into a ``uint8`` (H, W) array.

    Palette ("P") PNGs, as MMSegmentation writes them, are read as their palette indices.

    Raises:
        ImageError: the decode_image reasons, ``mask_not_single_channel``, or
            ``mask_out_of_range`` when an id is >= ``num_classes``.
    """
    image = _load(_open(data, max_pixels, ("PNG",)), data)
    if image.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L", "1"):
        raise ImageError("mask_not_single_channel",
                         f"mask has mode {image.mode} ({len(image.getbands())} channels); "
                         "expected a single-channel PNG of class ids")
    array = np.asarray(image)
    if array.ndim != 2:
        raise ImageError("mask_not_single_channel", f"mask has shape {array.shape}; expected HxW")
    return check_mask_ids(array, num_classes)


def check_mask_ids(array: np.ndarray, num_classes: int) -> np.ndarray:
    """Return the mask as uint8 if every id is < num_classes, else raise mask_out_of_range."""
    top = int(array.max()) if array.size else 0
    if top >= num_classes or (array.size and int(array.min()) < 0):
        values = np.unique(array)
        bad = [int(v) for v in values if v >= num_classes or v < 0]
        count = int(np.isin(array, bad).sum())
        shown = ", ".join(str(v) for v in bad[:8]) + (" ..." if len(bad) > 8 else "")
        raise ImageError("mask_out_of_range",
                         f"mask holds class id(s) {shown} ({count} pixels); "
                         f"valid ids are 0..{num_classes - 1}")
    return array.astype(np.uint8, copy=False)


def encode_png(array: np.ndarray) -> bytes:
    """Lossless PNG bytes of an (H, W) uint8 mask or (H, W, 3) uint8 image."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def encode_jpeg(array: np.ndarray, quality: int = 95) -> bytes:
    """JPEG bytes of an (H, W, 3) uint8 image."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).convert("RGB").save(
        buffer, "JPEG", quality=quality)
    return buffer.getvalue()
