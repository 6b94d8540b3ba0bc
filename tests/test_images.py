"""decode_image / decode_mask: what is accepted, and the reason code for every refusal."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageFile

from roadvision.data.images import (
    ImageError,
    decode_image,
    decode_mask,
    encode_png,
    probe_image,
)
from tests._fixtures import corrupt_jpeg, encode, mask_png, png_header, rgb, truncated_png

MP = 10_000_000


def _reason(data: bytes, **kwargs) -> ImageError:
    with pytest.raises(ImageError) as info:
        decode_image(data, max_pixels=kwargs.pop("max_pixels", MP), **kwargs)
    return info.value


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_decodes_accepted_formats_to_rgb_uint8(fmt):
    array = rgb(20, 30, seed=1)
    out = decode_image(encode(array, fmt, **({"lossless": True} if fmt == "WEBP" else {})),
                       max_pixels=MP)
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    if fmt != "JPEG":  # lossless formats round-trip exactly
        np.testing.assert_array_equal(out, array)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_other_modes_become_rgb(mode):
    image = Image.fromarray(rgb(8, 9)).convert(mode)
    out = decode_image(encode(np.asarray(image)) if mode == "L" else _save(image), max_pixels=MP)
    assert out.shape == (8, 9, 3)


def _save(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_exif_orientation_is_applied():
    image = Image.fromarray(rgb(10, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: a viewer shows it 10 wide, 20 tall
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif.tobytes())
    assert decode_image(buffer.getvalue(), max_pixels=MP).shape == (20, 10, 3)


def test_empty_bytes():
    assert _reason(b"").reason == "empty"


@pytest.mark.parametrize("data", [b"hello, not an image at all", encode(rgb(4, 4), "GIF"),
                                  encode(rgb(4, 4), "BMP")])
def test_unsupported_formats(data):
    error = _reason(data)
    assert error.reason == "unsupported_format"
    assert "JPEG" in str(error)  # the message lists what is accepted


def test_allow_list_is_respected():
    assert _reason(encode(rgb(4, 4), "PNG"), allowed_formats=("JPEG",)).reason == \
        "unsupported_format"


def test_too_many_pixels_is_refused_from_the_header_before_decoding(monkeypatch):
    data = encode(np.zeros((100, 120, 3), np.uint8), "PNG")
    monkeypatch.setattr(ImageFile.ImageFile, "load",
                        lambda self: pytest.fail("pixels decoded before the size check"))
    error = _reason(data, max_pixels=100 * 119)
    assert error.reason == "too_many_pixels" and "12,000" in str(error)
    with pytest.raises(ImageError) as probe:
        probe_image(data, max_pixels=100)
    assert probe.value.reason == "too_many_pixels"


def test_decompression_bomb_header_costs_nothing():
    # 100,000 x 100,000 px claimed in a 60-byte file: Pillow's own bomb guard fires in open().
    error = _reason(png_header(100_000, 100_000), max_pixels=10**12)
    assert error.reason == "too_many_pixels"
    assert _reason(png_header(5000, 5000), max_pixels=MP).reason == "too_many_pixels"


def test_corrupt_jpeg():
    error = _reason(corrupt_jpeg())
    assert error.reason == "corrupt" and "JPEG" in str(error)


def test_truncated_jpeg_and_png():
    data = encode(rgb(64, 64), "JPEG")
    assert _reason(data[: len(data) // 2]).reason == "truncated"
    assert _reason(truncated_png()).reason == "truncated"
    assert not ImageFile.LOAD_TRUNCATED_IMAGES


def test_png_cut_just_before_its_end_marker_is_truncated():
    # Pillow decodes this without complaint; we still refuse it.
    data = encode(rgb(16, 16), "PNG")
    assert _reason(data[:-12]).reason == "truncated"


def test_png_with_flipped_bytes_is_corrupt():
    data = bytearray(encode(rgb(32, 32), "PNG"))
    data[60] ^= 0xFF  # inside IDAT: the chunk CRC no longer matches
    assert _reason(bytes(data)).reason in ("corrupt", "truncated")


def test_header_only_magic_is_corrupt_not_unsupported():
    assert _reason(encode(rgb(8, 8), "PNG")[:20]).reason == "corrupt"


def test_decode_mask_reads_class_ids_from_l_and_palette_pngs():
    mask = np.array([[0, 1, 2], [3, 0, 1]], dtype=np.uint8)
    for mode in ("L", "P"):
        np.testing.assert_array_equal(decode_mask(mask_png(mask, mode), 4), mask)


def test_decode_mask_out_of_range_names_the_ids():
    mask = np.array([[0, 1, 7], [9, 9, 1]], dtype=np.uint8)
    with pytest.raises(ImageError) as info:
        decode_mask(mask_png(mask), 4)
    assert info.value.reason == "mask_out_of_range"
    assert "7, 9" in str(info.value) and "3 pixels" in str(info.value) and "0..3" in str(info.value)


def test_decode_mask_refuses_rgb_and_jpeg():
    with pytest.raises(ImageError) as info:
        decode_mask(encode_png(rgb(4, 4)), 4)
    assert info.value.reason == "mask_not_single_channel"
    with pytest.raises(ImageError) as info:
        decode_mask(encode(rgb(4, 4), "JPEG"), 4)
    assert info.value.reason == "unsupported_format"
