"""Output folders that lose nothing: refuse foreign data, write aside, swap in whole.

Every command that writes a data set, a run or a report goes through :class:`OutputFolder`:

* **No silent overwrite.** A non-empty ``--out`` is replaced only when it is the same
  command's earlier output for the same inputs (a retry: ``data ingest`` run twice, a
  re-tried pipeline step) or when the user passes ``--overwrite``. Each output carries a
  stamp file (:data:`STAMP`) naming the command and a hash of its inputs, which is how an
  earlier output is recognised.
* **Atomic.** The command writes into a temporary sibling folder; only when it has finished is
  that folder swapped with ``--out`` (``renameat2(RENAME_EXCHANGE)`` where Linux offers it,
  else two renames). A command killed midway leaves the old folder whole and a hidden
  ``.NAME.tmp-*`` sibling behind; no reader ever sees half a data set.
* **Cheap retries.** Before the swap, files whose bytes equal the earlier output's are
  replaced by hard links to the old files, so a retry leaves unchanged files (and their
  modification times) as they were.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

from roadvision.errors import UserError

__all__ = ["STAMP", "OutputFolder", "is_empty", "read_stamp"]

STAMP = ".roadvision-output.json"


def read_stamp(folder: str | Path) -> dict[str, Any] | None:
    """The stamp of an earlier output, or None (no stamp, a link, or unreadable)."""
    path = Path(folder) / STAMP
    if path.is_symlink() or not path.is_file():
        return None
    try:
        stamp = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def is_empty(folder: Path) -> bool:
    return not folder.exists() or (folder.is_dir() and not any(folder.iterdir()))


def _key(command: str, inputs: dict[str, Any]) -> str:
    text = json.dumps({"command": command, "inputs": inputs}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _describe(out: Path, stamp: dict[str, Any] | None) -> str:
    if stamp and stamp.get("command"):
        return f"it holds the output of `roadvision {stamp['command']}` with other inputs"
    if (out / "dataset.json").exists() or (out / "manifest.parquet").exists():
        return "it holds a data set not written by this command"
    names = sorted(p.name for p in out.iterdir())
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    return f"it holds {len(names)} other entr{'y' if len(names) == 1 else 'ies'} ({shown})"


class OutputFolder:
    """Context manager: ``with OutputFolder(out, command=..., inputs=...) as tmp:`` write into
    ``tmp``; on a clean exit it replaces ``out`` whole. On an exception nothing changes, unless
    :meth:`commit` was called first (e.g. to publish a quarantine report with the error).

    Args:
        out: the folder the user named.
        command: the command's name as typed (``"data synth"``), recorded in the stamp.
        inputs: everything that determines the output (JSON-able); equal inputs = a retry.
        overwrite: replace whatever ``out`` holds (``--overwrite``).
        option: the flag that named ``out``, for messages.
    """

    def __init__(self, out: str | Path, *, command: str, inputs: dict[str, Any],
                 overwrite: bool = False, option: str = "--out") -> None:
        self.out = Path(out)
        self.command = command
        self.inputs = json.loads(json.dumps(inputs, sort_keys=True, default=str))
        self.key = _key(command, self.inputs)
        self.option = option
        if self.out.is_symlink() and not self.out.exists():
            raise UserError(f"{option} {self.out}: a dangling symbolic link")
        if self.out.exists() and not self.out.is_dir():
            raise UserError(f"{option} {self.out}: exists and is not a folder")
        stamp = read_stamp(self.out) if self.out.is_dir() else None
        self.previous = (self.out if stamp is not None and stamp.get("key") == self.key
                         else None)
        if not overwrite and self.previous is None and not is_empty(self.out):
            raise UserError(f"{option} {self.out}: not empty and not an earlier output of "
                            f"`roadvision {command}` with these inputs "
                            f"({_describe(self.out, stamp)}); pass --overwrite to replace it, "
                            "or choose another folder")
        #: True when ``out`` held something before this command (kept if the command fails).
        self.had_data = not is_empty(self.out)
        self.path: Path | None = None
        self.committed = False

    def __enter__(self) -> Path:
        real = Path(os.path.abspath(self.out))  # so that ``--out .`` has a parent and a name
        real.parent.mkdir(parents=True, exist_ok=True)
        self.path = real.parent / f".{real.name}.tmp-{uuid.uuid4().hex[:8]}"
        self.path.mkdir()
        return self.path

    def commit(self) -> Path:
        """Swap the temporary folder in for ``out`` now; returns ``out``."""
        assert self.path is not None, "commit() outside the with block"
        if self.committed:
            return self.out
        (self.path / STAMP).write_text(json.dumps(
            {"command": self.command, "key": self.key, "inputs": self.inputs},
            indent=2, sort_keys=True) + "\n")
        if self.previous is not None:
            _adopt_unchanged(self.path, self.previous)
        _swap_in(self.path, Path(os.path.abspath(self.out)))
        self.committed = True
        return self.out

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if kind is None:
            self.commit()
        if self.path is not None and self.path.exists():
            shutil.rmtree(self.path, ignore_errors=True)


def _same_bytes(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            chunk = fa.read(1 << 20)
            if chunk != fb.read(1 << 20):
                return False
            if not chunk:
                return True


def _adopt_unchanged(new: Path, old: Path) -> None:
    """Replace files in ``new`` that equal their counterpart in ``old`` by hard links to it."""
    for path in new.rglob("*"):
        if path.is_symlink() or not path.is_file() or path.name == STAMP:
            continue
        twin = old / path.relative_to(new)
        if twin.is_symlink() or not twin.is_file() or not _same_bytes(path, twin):
            continue
        link = path.with_name(path.name + ".link")
        try:
            os.link(twin, link, follow_symlinks=False)
        except OSError:
            continue  # another file system: keep the fresh copy
        os.replace(link, path)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with renameat2(RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return result == 0


def _swap_in(new: Path, out: Path) -> None:
    """Put ``new`` at ``out``; the old ``out`` (if any) is deleted only once ``new`` is there."""
    if not out.exists():
        os.rename(new, out)
        return
    if _exchange(new, out):
        shutil.rmtree(new, ignore_errors=True)  # ``new`` now names the old folder
        return
    old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
    os.rename(out, old)
    try:
        os.rename(new, out)
    except OSError:
        with contextlib.suppress(OSError):
            os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)
