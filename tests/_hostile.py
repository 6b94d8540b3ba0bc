"""Hostile data, as an attacker would hand it to the data tools: links out of the data folder,
linked folders, importer paths that are absolute or climb out, decompression bombs and files
whose name or header lies. Each maker writes real files; the tests in test_hostile_data.py
(and elsewhere) check that no command reads or copies a byte of what lies outside.

The "outside" world is a sibling folder of the data set holding a secret: a valid JPEG (which
the old code imported as a good sample) and a text file (which it copied into quarantine/).
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from tests._fixtures import encode, jpeg, png_header, rgb

#: A marker no generated image contains; outside text files hold it.
SECRET_TEXT = b"root:x:0:0:TOP-SECRET-MARKER:/root:/bin/bash\n"


@dataclass
class Outside:
    """Files outside every data folder: ``jpeg`` (a valid image) and ``text`` (not an image)."""

    root: Path
    jpeg: Path
    text: Path

    @property
    def secrets(self) -> list[bytes]:
        return [self.jpeg.read_bytes(), self.text.read_bytes()]


def make_outside(tmp_path: Path) -> Outside:
    root = tmp_path / "outside"
    root.mkdir(parents=True, exist_ok=True)
    secret_jpeg = root / "secret.jpg"
    secret_jpeg.write_bytes(jpeg(seed=4242, height=24, width=32))
    text = root / "passwd"
    text.write_bytes(SECRET_TEXT)
    return Outside(root, secret_jpeg, text)


def link(path: Path, target: Path) -> Path:
    """Replace ``path`` (a file or folder) by a symbolic link to ``target``."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        for child in sorted(path.rglob("*"), reverse=True):
            child.rmdir() if child.is_dir() and not child.is_symlink() else child.unlink()
        path.rmdir()
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)
    return path


def files_holding(folder: Path, secrets: list[bytes]) -> list[Path]:
    """Every regular file under ``folder`` whose bytes contain one of ``secrets``."""
    hits = []
    for path in Path(folder).rglob("*"):
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        if any(secret in data for secret in secrets):
            hits.append(path)
    return hits


def assert_nothing_from_outside(folder: Path, outside: Outside) -> None:
    hits = files_holding(folder, outside.secrets)
    assert not hits, f"outside bytes copied into {folder}: {hits}"


# -- bombs and lying files ---------------------------------------------------------------------
def header_bomb() -> bytes:
    """A valid 60,000 x 60,000 PNG header with no pixel data: 3.6 G pixels announced."""
    return png_header(60_000, 60_000)


def deflate_bomb(side: int = 4900) -> bytes:
    """A real, tiny (few KB) 1-bit PNG of ``side`` x ``side`` zeros that inflates to ``side**2``
    pixels: under a large ``max_pixels`` it is a legal image, under a small one a bomb."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))
    row = b"\x00" + b"\x00" * ((side + 7) // 8)
    idat = zlib.compress(row * side, 9)
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def text_named_jpeg() -> bytes:
    """What a ``.jpg`` holding an HTML error page looks like."""
    return b"<html><body>403 Forbidden</body></html>\n"


def gif_named_png() -> bytes:
    """A real GIF (a format we do not accept) saved under a ``.png`` name."""
    return encode(rgb(24, 32, 7), "GIF")


def png_claiming_jpeg() -> bytes:
    """JPEG magic bytes followed by a PNG: the header lies about the format."""
    return b"\xff\xd8\xff" + encode(rgb(24, 32, 8), "PNG")
