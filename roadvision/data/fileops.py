"""Small file helpers shared by the data steps: safe paths, idempotent writes, linking.

Steps that only add a column (split, weights) write a new data set folder whose image and mask
files are hard links to the source's (a copy where links are impossible, e.g. across devices),
so each step's output is a complete data set without doubling the disk use.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

__all__ = ["carry_files", "check_out_dir", "link_or_copy", "safe_name", "safe_relpath",
           "unconfined_rows", "write_if_changed"]


def safe_relpath(value: str) -> str:
    """Normalise a manifest path to POSIX form; refuse absolute paths and ``..``.

    A manifest is data from outside; a path like ``../../etc/passwd`` must not make a step read
    or write outside its folder.
    """
    text = str(value).replace("\\", "/").strip()
    path = PurePosixPath(text)
    if not text or path.is_absolute() or re.match(r"^[A-Za-z]:", text):
        raise ValueError(f"path {value!r} must be relative to the data set folder")
    if any(part == ".." for part in path.parts):
        raise ValueError(f"path {value!r} leaves the data set folder ('..')")
    return str(path)


def check_out_dir(out: str | Path) -> Path:
    """The output folder, or a UserError when the path exists and is not a folder."""
    from roadvision.errors import UserError

    path = Path(out)
    if path.exists() and not path.is_dir():
        raise UserError(f"--out {path}: exists and is not a folder")
    return path


def safe_name(value: str, max_len: int = 80) -> str:
    """A file-name-safe version of an id; a short hash keeps distinct ids distinct."""
    text = str(value)
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:max_len] or "sample"
    if cleaned != text:
        cleaned += "-" + hashlib.sha1(text.encode()).hexdigest()[:8]
    return cleaned


def write_if_changed(path: Path, data: bytes) -> bool:
    """Write ``data`` unless the file already holds exactly these bytes; True if written.

    This is what makes re-running an import or ingest idempotent and cheap.
    """
    path = Path(path)
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)  # atomic: a crash never leaves a half-written file behind
    return True


def link_or_copy(src: Path, dst: Path) -> None:
    """Make ``dst`` hold ``src``'s bytes: a hard link if possible, else a copy.

    ``src`` must already be known to be confined (see :func:`carry_files`); a link is never
    followed here.
    """
    src, dst = Path(src), Path(dst)
    if dst.exists() or dst.is_symlink():
        if not dst.is_symlink() and os.path.samefile(src, dst):
            return
        dst.unlink()
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)


def _carry_one(src_dir: Path, rel: str, dst: Path) -> None:
    """Link (or copy) ``src_dir/rel`` to ``dst`` through a confined descriptor: the file that
    was checked is the file that lands in the output, even if a link is swapped in meanwhile."""
    from roadvision.data.confine import open_confined

    fd = open_confined(src_dir, rel)
    if fd is None:
        return
    try:
        want = os.fstat(fd)
        if dst.exists() or dst.is_symlink():
            dst.unlink()
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src_dir / rel, dst, follow_symlinks=False)
            got = os.lstat(dst)
            if (got.st_ino, got.st_dev) == (want.st_ino, want.st_dev):
                return
            dst.unlink()  # the path changed under us: copy the checked file instead
        except OSError:
            pass
        os.set_blocking(fd, True)
        with os.fdopen(os.dup(fd), "rb") as source, open(dst, "wb") as target:
            shutil.copyfileobj(source, target)
    finally:
        os.close(fd)


def carry_files(src_dir: str | Path, out_dir: str | Path, df: pd.DataFrame,
                columns: Iterable[str] = ("image", "mask")) -> None:
    """Link every file named in ``columns`` from ``src_dir`` into ``out_dir`` (no-op if same).

    Files are opened through ``data.confine``: a symbolic link (or a linked folder) raises
    ``PathRefused`` instead of carrying outside bytes into the output; drop such rows first
    with :func:`unconfined_rows`.
    """
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    if src_dir.resolve() == out_dir.resolve():
        return
    for column in columns:
        if column not in df.columns:
            continue
        for value in df[column].dropna().unique():
            rel = safe_relpath(value)
            _carry_one(src_dir, rel, out_dir / rel)


def unconfined_rows(root: str | Path, df: pd.DataFrame,
                    columns: Iterable[str] = ("image", "mask")) -> list[tuple[int, str, Any]]:
    """``(row, file, PathRefused)`` for every row whose file is a link or lies outside ``root``
    (quarantine reason ``outside_root``). Missing files are not listed: validation reports them.
    """
    from roadvision.data.confine import OutsideRoot, check_confined, confined_relpath

    refused: list[tuple[int, str, Any]] = []
    for column in columns:
        if column not in df.columns:
            continue
        for row, value in enumerate(df[column].tolist()):
            if value is None or value is pd.NA:
                continue
            try:
                check_confined(root, confined_relpath(value))
            except OutsideRoot as exc:
                refused.append((row, str(value), exc))
            except ValueError:
                continue  # not a regular file: for validate to report
    return sorted(refused, key=lambda r: r[0])
