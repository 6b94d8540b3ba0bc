"""Path confinement: the one place data readers open files, so that no step follows a symbolic
link or reads a byte from outside the folder the user named (the *data root*).

A data folder is data from outside, like a manifest. A link ``images/x.jpg -> /etc/shadow``, a
linked folder ``img_dir -> /home/me``, or an importer row whose path is absolute or climbs out
(``../outside/secret.jpg``) must be refused without opening the target, not copied into the
output as a sample or a quarantine exhibit. The rules, for a path ``rel`` under ``root``:

* ``rel`` is relative and has no ``..`` (:func:`confined_relpath`);
* no component from ``root`` down is a symbolic link, the file itself included;
* the file is a regular file (a FIFO or device could block or never end).

Files are opened by walking the path one component at a time with ``O_NOFOLLOW`` relative to
the previous folder's descriptor (``openat``), so a link swapped in between the check and the
read is refused as well: there is no check-then-open race. ``root`` itself may be a link: the
user named it. Hard links cannot be told apart from ordinary files (and the split and weights
steps make them on purpose); a data root should not share a file system with secrets anyway.

Refusals raise :class:`OutsideRoot` (quarantine reason ``outside_root``) or :class:`NotAFile`
(reason ``missing_file``); both are :class:`PathRefused`, a ``ValueError`` with a ``reason``.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path, PurePosixPath

from roadvision.errors import UserError

__all__ = ["NotAFile", "OutsideRoot", "PathRefused", "check_confined", "confined_relpath",
           "open_confined", "read_confined", "safe_s3_prefix", "split_s3_uri"]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


class PathRefused(ValueError):
    """A path a reader will not open; ``reason`` is a quarantine reason code."""

    reason = "outside_root"

    def __init__(self, rel: str, message: str) -> None:
        super().__init__(f"{rel}: {message}")
        self.rel = rel


class OutsideRoot(PathRefused):
    """The path is absolute, climbs out, or runs through a symbolic link."""

    reason = "outside_root"


class NotAFile(PathRefused):
    """The path names a folder, FIFO, socket or device rather than a regular file."""

    reason = "missing_file"


def confined_relpath(value: object) -> str:
    """``value`` as a normalised POSIX path inside the root; OutsideRoot when it is not."""
    text = str(value).replace("\\", "/").strip()
    path = PurePosixPath(text)
    if not text or path.is_absolute() or re.match(r"^[A-Za-z]:", text):
        raise OutsideRoot(str(value), "absolute path; paths must be relative to the data folder")
    if any(part == ".." for part in path.parts):
        raise OutsideRoot(str(value), "climbs out of the data folder ('..')")
    if str(path) in ("", "."):
        raise OutsideRoot(str(value), "names the data folder itself, not a file")
    return str(path)


def safe_s3_prefix(prefix: str) -> str:
    """An S3 key prefix with no ``.``/``..``/empty segments (some S3-compatible stores
    normalise them, which would let a prefix or key climb to another one)."""
    parts = [p for p in prefix.strip("/").split("/")]
    if prefix.strip("/") and any(p in ("", ".", "..") for p in parts):
        raise OutsideRoot(prefix, "S3 prefix with an empty, '.' or '..' segment")
    return prefix.strip("/")


def split_s3_uri(uri: str, what: str = "") -> tuple[str, str]:
    """``s3://bucket/prefix`` -> ``(bucket, prefix)`` with the prefix checked by
    :func:`safe_s3_prefix`; a UserError naming ``what`` (e.g. "payload log URI") otherwise."""
    label = f"{what} {uri!r}" if what else uri
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not bucket:
        raise UserError(f"{label}: expected s3://bucket/prefix")
    try:
        return bucket, safe_s3_prefix(prefix)
    except PathRefused as exc:
        raise UserError(f"{label}: {exc}") from None


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode)
    except OSError:
        return False


def open_confined(root: str | Path, rel: object) -> int | None:
    """A read-only descriptor of ``root/rel`` under the rules above; None when it does not exist.

    The caller owns (and must close) the descriptor.
    """
    rel = confined_relpath(rel)
    parts = PurePosixPath(rel).parts
    try:
        dir_fd = os.open(root, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            flags = os.O_RDONLY | _NOFOLLOW | _CLOEXEC | (_NONBLOCK if last else _DIRECTORY)
            try:
                fd = os.open(part, flags, dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno == errno.ELOOP or _is_link(part, dir_fd):
                    what = "file" if last else f"folder {'/'.join(parts[:depth + 1])}"
                    raise OutsideRoot(rel, f"the {what} is a symbolic link; links are not "
                                           "followed out of (or within) the data folder") from exc
                if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                    return None
                raise
            os.close(dir_fd)
            dir_fd = fd
        mode = os.fstat(dir_fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotAFile(rel, "not a regular file")
        fd, dir_fd = dir_fd, -1
        return fd
    finally:
        if dir_fd >= 0:
            os.close(dir_fd)


def read_confined(root: str | Path, rel: object) -> bytes | None:
    """The bytes of ``root/rel`` (see :func:`open_confined`); None when it does not exist."""
    fd = open_confined(root, rel)
    if fd is None:
        return None
    os.set_blocking(fd, True)
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def check_confined(root: str | Path, rel: object) -> Path | None:
    """``root/rel`` when it is a confined regular file, None when missing; raises like
    :func:`open_confined`. Opens and closes the file, reading nothing."""
    fd = open_confined(root, rel)
    if fd is None:
        return None
    os.close(fd)
    return Path(root) / confined_relpath(rel)
