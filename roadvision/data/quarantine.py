"""The quarantine: where bad samples go instead of crashing a whole import or ingest.

A quarantined sample is written to ``<out>/quarantine.json`` (row id, file, reason code,
message) and, when its bytes could be read, copied to ``<out>/quarantine/<file>`` so that a
person can open exactly what was refused. Reason codes are the :mod:`roadvision.data.images`
codes plus the data-level ones below.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from roadvision.data.fileops import safe_name, safe_relpath, unconfined_rows, write_if_changed
from roadvision.errors import UserError

__all__ = ["QUARANTINE_DIR", "QUARANTINE_FILE", "ROW_REASONS", "QuarantineEntry", "QuarantineLog",
           "drop_unconfined"]

QUARANTINE_FILE = "quarantine.json"
QUARANTINE_DIR = "quarantine"

#: Data-level reason codes (image-level ones live in roadvision.data.images.REASONS).
ROW_REASONS = {
    "missing_file": "the row points at a file that does not exist",
    "bad_path": "the path is absolute or leaves the data set folder",
    "outside_root": "the file is a symbolic link, or under a linked folder, or outside the data "
                    "folder (an importer path that is absolute or climbs out); never read",
    "sha256_mismatch": "the file's bytes differ from the manifest's sha256",
    "size_mismatch": "decoded width/height differ from the manifest (or image vs mask)",
    "bad_label": "label missing or not 0/1",
    "bad_gps": "GPS unparseable or out of range",
    "bad_metadata": "a metadata value outside the contract vocabulary",
    "duplicate_id": "the id was already used by an earlier row",
    "missing_mask": "a lanes sample without a mask",
    "bad_annotation": "an annotation file that cannot be read or rasterised",
}


@dataclass
class QuarantineEntry:
    """One refused sample."""

    id: str | None
    reason: str  # machine-readable code
    message: str  # what a person should know
    file: str | None = None  # path (relative to the source) of the offending file
    row: int | None = None  # row number in the source manifest, when there is one

    def __str__(self) -> str:
        where = f"id {self.id!r}" if self.id is not None else f"file {self.file!r}"
        return f"{where}: {self.reason}: {self.message}"


class QuarantineLog:
    """Collects refused samples and writes them out; re-running gives identical output."""

    def __init__(self, out_dir: str | Path) -> None:
        self.out = Path(out_dir)
        self.entries: list[QuarantineEntry] = []

    def add(self, *, id: str | None, reason: str, message: str, file: str | None = None,
            row: int | None = None, data: bytes | None = None) -> QuarantineEntry:
        """Record a refusal; ``data`` (the offending bytes) is kept under quarantine/."""
        entry = QuarantineEntry(id=id, reason=reason, message=message, file=file, row=row)
        self.entries.append(entry)
        if data is not None:
            self._keep(entry, data)
        return entry

    def _keep(self, entry: QuarantineEntry, data: bytes) -> None:
        try:
            rel = safe_relpath(entry.file) if entry.file else None
        except ValueError:
            rel = None
        if rel is None:
            digest = hashlib.sha256(data).hexdigest()[:12]
            rel = f"{safe_name(entry.id or 'unnamed')}-{digest}"
        write_if_changed(self.out / QUARANTINE_DIR / rel, data)

    def reasons(self) -> Counter:
        return Counter(e.reason for e in self.entries)

    def write(self) -> Path:
        """Write quarantine.json (always, so a clean re-run replaces a stale report)."""
        path = self.out / QUARANTINE_FILE
        self.out.mkdir(parents=True, exist_ok=True)
        payload = {
            "count": len(self.entries),
            "reasons": dict(sorted(self.reasons().items())),
            "entries": [asdict(e) for e in self.entries],
        }
        write_if_changed(path, (json.dumps(payload, indent=2) + "\n").encode())
        return path

    def describe(self, limit: int = 10) -> list[str]:
        """Human lines: one per entry, up to ``limit``, then a count of the rest."""
        lines = [str(e) for e in self.entries[:limit]]
        if len(self.entries) > limit:
            lines.append(f"... and {len(self.entries) - limit} more (see {QUARANTINE_FILE})")
        return lines


def drop_unconfined(root: str | Path, df: pd.DataFrame) -> tuple[pd.DataFrame, QuarantineLog]:
    """``df`` without the rows whose files are links or outside ``root``, and a log of them
    (reason ``outside_root``; no bytes kept). Steps that only add a column (split, weights)
    use it; set the log's ``out`` before writing it."""
    log = QuarantineLog(root)
    bad = unconfined_rows(root, df)
    for row, file, exc in bad:
        rid = df["id"].iloc[row]
        log.add(id=None if rid is pd.NA or rid is None else str(rid), reason=exc.reason,
                message=str(exc), file=file, row=row)
    if not bad:
        return df, log
    keep = np.ones(len(df), dtype=bool)
    keep[[row for row, _, _ in bad]] = False
    if not keep.any():
        raise UserError(f"{root}: every row's file is a link or outside the folder; first: "
                        f"{log.entries[0]}")
    return df[keep].reset_index(drop=True), log
