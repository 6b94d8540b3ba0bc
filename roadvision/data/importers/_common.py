"""What every importer shares: a writer that checks each sample and quarantines bad ones.

An importer's only job is to walk its format and hand samples to :class:`DatasetWriter`.
The writer decodes every image (and mask), refuses what is broken with a reason code, writes
files under ``images/`` and ``masks/`` and finally the manifest, ``dataset.json`` and
``quarantine.json``. One bad sample never costs the others.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from roadvision.data import contract
from roadvision.data.confine import PathRefused
from roadvision.data.contract import DatasetInfo
from roadvision.data.fileops import check_out_dir, safe_name, write_if_changed
from roadvision.data.images import (
    DEFAULT_MAX_PIXELS,
    ImageError,
    check_mask_ids,
    decode_image,
    encode_png,
    extension_for,
    sniff_format,
)
from roadvision.data.importers._tags import map_tag
from roadvision.data.output import OutputFolder
from roadvision.data.quarantine import QuarantineEntry, QuarantineLog
from roadvision.errors import UserError

__all__ = ["DatasetWriter", "ImportReport", "require_source"]


@dataclass
class ImportReport:
    """What an import produced: the data set info, the refusals and the warnings."""

    format: str
    out: Path
    info: DatasetInfo
    imported: int
    quarantined: list[QuarantineEntry] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: field -> raw tag value -> rows: tags with no contract value (listed, never silent).
    unmapped: dict[str, dict[str, int]] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"imported {self.imported} {self.info.task} samples ({self.format}) into "
                 f"{self.out}; {len(self.quarantined)} quarantined"]
        if self.quarantined:
            reasons = Counter(e.reason for e in self.quarantined)
            lines.append("quarantine: " + ", ".join(f"{k} x{v}" for k, v in sorted(reasons.items()))
                         + f" (details in {self.out / 'quarantine.json'})")
            lines += [f"  {e}" for e in self.quarantined[:5]]
        for name, counts in sorted(self.unmapped.items()):
            listed = ", ".join(f"{raw!r} x{n}" for raw, n in counts.items())
            lines.append(f"unmapped {name} values (no contract value): {listed}")
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def require_source(src: str | Path, *, kind: str = "folder") -> Path:
    """The source path, or a UserError that says what is wrong with it."""
    path = Path(src)
    if not path.exists():
        raise UserError(f"{path}: no such {kind}")
    if kind == "folder" and not path.is_dir():
        raise UserError(f"{path}: expected a folder")
    if path.is_dir() and not any(path.iterdir()):
        raise UserError(f"{path}: the folder is empty, nothing to import")
    return path


class DatasetWriter:
    """Collects checked samples for one output data set.

    Use it as a context manager: files go to a temporary sibling of ``out`` that
    :meth:`finish` swaps in whole (``data.output``); an importer that fails midway leaves
    ``out`` as it was. ``inputs`` (source and options) identify a re-import, which may replace
    its own earlier output; anything else in a non-empty ``out`` needs ``overwrite``.
    """

    def __init__(self, out: str | Path, *, task: str, classes: list[str], source: str,
                 max_pixels: int = DEFAULT_MAX_PIXELS, inputs: dict[str, Any] | None = None,
                 overwrite: bool = False) -> None:
        self.out = check_out_dir(out)
        self._folder = OutputFolder(self.out, command="data import", overwrite=overwrite,
                                    inputs={"format": source, "max_pixels": max_pixels,
                                            **(inputs or {})})
        self.dir = self._folder.__enter__()  # where files are written until finish()
        self.task = task
        self.classes = list(classes)
        self.source = source
        self.max_pixels = max_pixels
        self.rows: list[dict[str, Any]] = []
        self.quarantine = QuarantineLog(self.dir)
        self._ids: set[str] = set()
        self._warnings: Counter = Counter()
        self._warning_examples: dict[str, str] = {}
        self._unmapped: dict[str, Counter] = {}

    # -- refusals and warnings ----------------------------------------------------------------
    def reject(self, id: Any, reason: str, message: str, *, file: str | None = None,
               data: bytes | None = None) -> None:
        self.quarantine.add(id=None if id is None else str(id), reason=reason, message=message,
                            file=file, data=data)

    def warn(self, kind: str, example: str) -> None:
        """Count a non-fatal oddity (e.g. an unknown weather tag set to NULL)."""
        self._warnings[kind] += 1
        self._warning_examples.setdefault(kind, example)

    def tag(self, field_name: str, value: Any, id: Any) -> str | None:
        """The contract value of a tag cell (``_tags.map_tag``). A value with no mapping is
        counted for the report; when nothing in the cell maps, the field is NULL with a
        warning, never a lost sample."""
        mapped, unmapped = map_tag(field_name, value)
        for raw in unmapped:
            self._unmapped.setdefault(field_name, Counter())[raw] += 1
        if unmapped and mapped is None:
            self.warn(f"{field_name} set to NULL (unmapped value)",
                      f"id {id}: {', '.join(map(repr, unmapped))}")
        return mapped

    # -- samples ------------------------------------------------------------------------------
    def add(self, *, id: Any, image: bytes, file: str | None = None,
            mask: np.ndarray | None = None, mask_file: str | None = None,
            label: Any = None, meta: dict[str, Any] | None = None) -> bool:
        """Check one sample and stage it; False (and a quarantine entry) when refused."""
        sample_id = str(id).strip() if id is not None else ""
        if not sample_id:
            self.reject(None, "bad_metadata", "sample has no id", file=file, data=image)
            return False
        if sample_id in self._ids:
            self.reject(sample_id, "duplicate_id", f"id {sample_id!r} appears more than once",
                        file=file)
            return False
        try:
            pixels = decode_image(image, max_pixels=self.max_pixels)
        except ImageError as exc:
            self.reject(sample_id, exc.reason, str(exc), file=file, data=image)
            return False
        height, width = pixels.shape[:2]
        row: dict[str, Any] = {"id": sample_id, "width": width, "height": height,
                               "source": self.source, **(meta or {})}
        if self.task == "roadwork":
            value = _as_label(label)
            if value is None:
                self.reject(sample_id, "bad_label", f"label {label!r} is not 0 or 1", file=file,
                            data=image)
                return False
            row["label"] = value
        if self.task == "lanes":
            if mask is None:
                self.reject(sample_id, "missing_mask", "no mask for this image", file=file)
                return False
            if mask.shape != (height, width):
                self.reject(sample_id, "size_mismatch",
                            f"mask is {mask.shape[1]}x{mask.shape[0]}, image is {width}x{height}",
                            file=mask_file or file)
                return False
            try:
                mask = check_mask_ids(mask, len(self.classes))
            except ImageError as exc:
                self.reject(sample_id, exc.reason, str(exc), file=mask_file or file,
                            data=encode_png(np.clip(mask, 0, 255).astype(np.uint8)))
                return False
            mask_rel = f"masks/{safe_name(sample_id)}.png"
            write_if_changed(self.dir / mask_rel, encode_png(mask))
            row["mask"] = mask_rel
        fmt = sniff_format(image) or "JPEG"
        image_rel = f"images/{safe_name(sample_id)}{extension_for(fmt)}"
        write_if_changed(self.dir / image_rel, image)  # original bytes: no re-encoding loss
        row["image"] = image_rel
        row["sha256"] = hashlib.sha256(image).hexdigest()
        self.rows.append(row)
        self._ids.add(sample_id)
        return True

    # -- output -------------------------------------------------------------------------------
    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        """Drop the temporary folder unless finish() swapped it in."""
        if not self._folder.committed:
            self._folder.__exit__(RuntimeError, None, None)

    def reject_path(self, id: Any, exc: PathRefused, *, file: str | None = None) -> None:
        """Quarantine a sample whose file is a link or outside the source; nothing is read."""
        self.reject(id, exc.reason, str(exc), file=file or exc.rel)

    def finish(self, fmt: str, extra: dict[str, Any] | None = None) -> ImportReport:
        """Write manifest, dataset.json and quarantine.json and swap the folder in; UserError
        if nothing was usable (the report is published only where it replaces nothing)."""
        self.quarantine.write()
        if not self.rows:
            first = self.quarantine.entries[0] if self.quarantine.entries else None
            detail = f"; first refusal: {first}" if first else ""
            if not self._folder.had_data:
                self._folder.commit()
            kept = f"; the earlier data in {self.out} is kept" if self._folder.had_data else ""
            raise UserError(f"{fmt}: no usable samples found ({len(self.quarantine.entries)} "
                            f"quarantined, see {self.out / 'quarantine.json'}){detail}{kept}")
        df = pd.DataFrame(self.rows)
        warnings = [f"{kind}: {n} (e.g. {self._warning_examples[kind]})"
                    for kind, n in sorted(self._warnings.items())]
        unmapped = {name: dict(counts.most_common())
                    for name, counts in sorted(self._unmapped.items())}
        info = DatasetInfo(task=self.task, classes=self.classes, source=fmt, synthetic=False,
                           extra={"importer": fmt, "quarantined": len(self.quarantine.entries),
                                  "warnings": warnings, "unmapped_tags": unmapped,
                                  **(extra or {})})
        info = contract.write_dataset(self.dir, df, info)
        self._folder.commit()
        return ImportReport(format=fmt, out=self.out, info=info, imported=len(df),
                            quarantined=list(self.quarantine.entries), warnings=warnings,
                            unmapped=unmapped)


def _as_label(value: Any) -> int | None:
    if value is None or value is pd.NA:
        return None
    if isinstance(value, bool | np.bool_):
        return int(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        text = str(value).strip().lower()
        return {"true": 1, "false": 0, "yes": 1, "no": 0, "roadwork": 1,
                "no_roadwork": 0}.get(text)
    return int(number) if number in (0.0, 1.0) else None
