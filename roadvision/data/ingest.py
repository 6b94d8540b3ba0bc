"""Ingest: copy a data set in from a folder or ``s3://bucket/prefix``, checking every file.

This is the pipeline's first step and its gate against bad data. Every row's image (and mask)
is fetched, its sha256 checked against the manifest (computed when the manifest has none),
decoded with the same code the server uses, and its size, label, GPS and metadata checked.
Rows that fail are *quarantined*, not fatal: listed in ``<out>/quarantine.json`` with a reason
code and their bytes kept under ``<out>/quarantine/``. Ingest fails only when the source does
not exist or nothing at all is usable.

Re-running is idempotent: the output is byte-for-byte the same and files that already hold the
right bytes are not rewritten (so a retried pipeline step is cheap).

S3: credentials come from boto3's usual chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
profiles, instance roles); ``endpoint_url`` (or ``AWS_ENDPOINT_URL``) points at MinIO or any
other S3-compatible store.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from roadvision.data import contract
from roadvision.data.confine import PathRefused, read_confined, split_s3_uri
from roadvision.data.contract import INFO, MANIFEST, VOCABULARIES, DatasetInfo
from roadvision.data.fileops import check_out_dir, safe_relpath, write_if_changed
from roadvision.data.images import DEFAULT_MAX_PIXELS, ImageError, decode_image, decode_mask
from roadvision.data.output import OutputFolder
from roadvision.data.quarantine import QuarantineEntry, QuarantineLog
from roadvision.data.validate import SPLITS
from roadvision.errors import UserError
from roadvision.progress import track

__all__ = ["IngestReport", "ingest"]


@dataclass
class IngestReport:
    """The outcome: how many rows made it, and which did not and why."""

    out: Path
    info: DatasetInfo
    accepted: int
    quarantined: list[QuarantineEntry] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"ingested {self.accepted} of {self.accepted + len(self.quarantined)} rows into "
                 f"{self.out}; {len(self.quarantined)} quarantined"]
        if self.quarantined:
            reasons: dict[str, int] = {}
            for entry in self.quarantined:
                reasons[entry.reason] = reasons.get(entry.reason, 0) + 1
            lines.append("quarantine: " + ", ".join(f"{k} x{v}" for k, v in sorted(reasons.items()))
                         + f" (details in {self.out / 'quarantine.json'})")
            lines += [f"  {e}" for e in self.quarantined[:5]]
        return "\n".join(lines)


# -- sources -------------------------------------------------------------------------------------
class _LocalSource:
    def __init__(self, root: Path) -> None:
        self.root = root

    def read(self, rel: str) -> bytes | None:
        """The file's bytes, None if missing; PathRefused for links and non-files."""
        return read_confined(self.root, rel)


class _S3Source:
    def __init__(self, uri: str, endpoint_url: str | None) -> None:
        import boto3
        from botocore.config import Config

        bucket, prefix = split_s3_uri(uri)
        self.uri, self.bucket, self.prefix = uri, bucket, prefix
        self.client = boto3.client("s3", endpoint_url=endpoint_url,
                                   config=Config(retries={"max_attempts": 3, "mode": "standard"},
                                                 max_pool_connections=16))

    def read(self, rel: str) -> bytes | None:
        from botocore.exceptions import BotoCoreError, ClientError

        key = f"{self.prefix}/{rel}" if self.prefix else rel
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                return None
            if code == "NoSuchBucket":
                raise UserError(f"{self.uri}: bucket {self.bucket!r} does not exist") from exc
            raise UserError(f"{self.uri}: cannot read {key} ({code or exc})") from exc
        except BotoCoreError as exc:  # no credentials, endpoint unreachable, ...
            raise UserError(f"{self.uri}: {exc}") from exc


def _open_source(src: str | Path, endpoint_url: str | None) -> _LocalSource | _S3Source:
    text = str(src)
    if text.startswith("s3://"):
        return _S3Source(text, endpoint_url)
    root = Path(src)
    if not root.exists():
        raise UserError(f"{root}: no such folder")
    if not root.is_dir():
        raise UserError(f"{root}: not a folder (ingest reads a data set folder or s3:// prefix)")
    if not any(root.iterdir()):
        raise UserError(f"{root}: the folder is empty, nothing to ingest")
    return _LocalSource(root)


# -- checks --------------------------------------------------------------------------------------
@dataclass
class _Outcome:
    row: dict[str, Any] | None = None
    files: dict[str, bytes] = field(default_factory=dict)  # rel path -> bytes to write
    reason: str = ""
    message: str = ""
    file: str | None = None
    data: bytes | None = None  # bytes to keep in quarantine


class _Refused(Exception):
    def __init__(self, reason: str, message: str, file: str | None = None,
                 data: bytes | None = None) -> None:
        super().__init__(message)
        self.reason, self.message, self.file, self.data = reason, message, file, data


def _null(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _check(source: _LocalSource | _S3Source, row: dict[str, Any], info: DatasetInfo,
           max_pixels: int) -> _Outcome:
    try:
        return _check_row(source, row, info, max_pixels)
    except _Refused as refused:
        return _Outcome(reason=refused.reason, message=refused.message, file=refused.file,
                        data=refused.data)


def _fetch(source: _LocalSource | _S3Source, value: Any, column: str) -> tuple[str, bytes]:
    if _null(value):
        raise _Refused("missing_mask" if column == "mask" else "missing_file",
                       f"no {column} path in the manifest")
    try:
        rel = safe_relpath(value)
    except ValueError as exc:
        raise _Refused("bad_path", str(exc), str(value)) from exc
    try:
        data = source.read(rel)
    except PathRefused as exc:  # a link or a non-file: refused unread, nothing kept
        raise _Refused(exc.reason, f"{column} {exc}", rel) from exc
    if data is None:
        raise _Refused("missing_file", f"{column} file {rel} does not exist", rel)
    return rel, data


def _check_row(source: _LocalSource | _S3Source, row: dict[str, Any], info: DatasetInfo,
               max_pixels: int) -> _Outcome:
    rel, data = _fetch(source, row["image"], "image")
    actual = hashlib.sha256(data).hexdigest()
    if not _null(row["sha256"]) and row["sha256"] != actual:
        raise _Refused("sha256_mismatch", f"{rel}: sha256 is {actual[:12]}..., manifest says "
                                          f"{str(row['sha256'])[:12]}...", rel, data)
    try:
        height, width = decode_image(data, max_pixels=max_pixels).shape[:2]
    except ImageError as exc:
        raise _Refused(exc.reason, f"{rel}: {exc}", rel, data) from exc
    for name, value in (("width", width), ("height", height)):
        if not _null(row[name]) and int(row[name]) != value:
            raise _Refused("size_mismatch", f"{rel}: manifest {name} {row[name]}, image has "
                                            f"{value}", rel, data)
    out = dict(row, image=rel, sha256=actual, width=width, height=height)
    files = {rel: data}
    if info.task == "roadwork" and (_null(row["label"]) or int(row["label"]) not in (0, 1)):
        raise _Refused("bad_label", f"label {row['label']!r} is not 0 or 1", rel, data)
    if info.task == "lanes":
        mask_rel, mask_data = _fetch(source, row["mask"], "mask")
        try:
            mask = decode_mask(mask_data, len(info.classes), max_pixels=max_pixels)
        except ImageError as exc:
            raise _Refused(exc.reason, f"{mask_rel}: {exc}", mask_rel, mask_data) from exc
        if mask.shape != (height, width):
            raise _Refused("size_mismatch", f"{mask_rel} is {mask.shape[1]}x{mask.shape[0]}, "
                                            f"image is {width}x{height}", mask_rel, mask_data)
        out["mask"] = mask_rel
        files[mask_rel] = mask_data
    _check_metadata(row)
    return _Outcome(row=out, files=files)


def _check_metadata(row: dict[str, Any]) -> None:
    lat, lon = row["lat"], row["lon"]
    if _null(lat) != _null(lon):
        raise _Refused("bad_gps", f"lat {lat} / lon {lon}: both or neither must be set")
    if not _null(lat) and not (-90 <= float(lat) <= 90 and -180 <= float(lon) <= 180):
        raise _Refused("bad_gps", f"({lat}, {lon}) out of range (lat -90..90, lon -180..180)")
    for name, vocab in VOCABULARIES.items():
        if not _null(row[name]) and row[name] not in vocab:
            raise _Refused("bad_metadata", f"{name} {row[name]!r} is not one of {vocab}")
    if not _null(row.get("split")) and row["split"] not in SPLITS:
        raise _Refused("bad_metadata", f"split {row['split']!r} is not one of {SPLITS}")
    weight = row.get("weight")
    if not _null(weight) and not (math.isfinite(float(weight)) and float(weight) >= 0):
        raise _Refused("bad_metadata", f"weight {weight} must be a finite number >= 0")


# -- entry point ---------------------------------------------------------------------------------
def ingest(src: str | Path, out: str | Path, *, endpoint_url: str | None = None,
           max_pixels: int = DEFAULT_MAX_PIXELS, workers: int = 8,
           overwrite: bool = False) -> IngestReport:
    """Copy and check the data set at ``src`` into the folder ``out`` (see module docstring).

    A non-empty ``out`` is refused unless it is an earlier ingest of the same source (a re-run,
    idempotent) or ``overwrite`` is set; the output is written aside and swapped in whole.

    Raises:
        UserError: the source does not exist / is empty / is the output, or no row is usable.
        ContractError: the source's manifest or dataset.json is not in the contract.
    """
    source = _open_source(src, endpoint_url)
    out = check_out_dir(out)
    if isinstance(source, _LocalSource) and source.root.resolve() == out.resolve():
        raise UserError(f"--out {out}: must differ from the source folder")
    try:
        info_bytes, manifest_bytes = source.read(INFO), source.read(MANIFEST)
    except PathRefused as exc:
        raise UserError(f"{src}: {exc}") from None
    if manifest_bytes is None or info_bytes is None:
        missing = " and ".join(n for n, b in ((MANIFEST, manifest_bytes), (INFO, info_bytes))
                               if b is None)
        raise UserError(f"{src}: no {missing} (is this a roadvision data set? "
                        "other formats go through `roadvision data import`)")
    try:
        info = DatasetInfo.from_dict(json.loads(info_bytes))
    except json.JSONDecodeError as exc:
        raise contract.ContractError(f"{src}/{INFO}: not valid JSON ({exc.msg})") from exc
    df = _read_manifest(manifest_bytes, src)
    if df.empty:
        raise UserError(f"{src}/{MANIFEST}: has no rows, nothing to ingest")

    identity = str(src) if isinstance(source, _S3Source) else str(source.root.resolve())
    folder = OutputFolder(out, command="data ingest", overwrite=overwrite,
                          inputs={"source": identity, "max_pixels": max_pixels})
    with folder as tmp:
        quarantine, accepted = _ingest_rows(source, df, info, tmp, max_pixels, workers)
        quarantine.write()
        if not accepted:
            if not folder.had_data:
                folder.commit()  # publish the report: it says why nothing was usable
            kept = "" if not folder.had_data else f"; the earlier data in {out} is kept"
            first = quarantine.entries[0] if quarantine.entries else "(none)"
            raise UserError(f"{src}: no usable rows ({len(quarantine.entries)} quarantined; "
                            f"first: {first}; see {out / 'quarantine.json'}){kept}")
        info.extra = {**info.extra, "ingest": {
            "source": str(src), "accepted": len(accepted),
            "quarantined": len(quarantine.entries),
            "reasons": dict(sorted(quarantine.reasons().items()))}}
        info = contract.write_dataset(tmp, pd.DataFrame(accepted, columns=df.columns), info)
    return IngestReport(out=out, info=info, accepted=len(accepted),
                        quarantined=list(quarantine.entries))


def _ingest_rows(source: _LocalSource | _S3Source, df: pd.DataFrame, info: DatasetInfo,
                 out: Path, max_pixels: int, workers: int
                 ) -> tuple[QuarantineLog, list[dict[str, Any]]]:
    """Check every row, write the good files under ``out``; (quarantine, accepted rows)."""
    quarantine = QuarantineLog(out)
    rows = df.to_dict("records")
    accepted: list[dict[str, Any]] = []
    seen: set[str] = set()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        outcomes = _bounded_map(pool, lambda r: _check(source, r, info, max_pixels), rows,
                                window=4 * max(1, workers))
        for index, (row, outcome) in enumerate(
                zip(rows, track(outcomes, "ingest", total=len(rows)), strict=True)):
            sample_id = None if _null(row["id"]) else str(row["id"])
            if outcome.row is not None and sample_id is None:
                outcome = _Outcome(reason="bad_metadata", message="row has no id",
                                   file=outcome.row["image"])
            elif outcome.row is not None and sample_id in seen:
                outcome = _Outcome(reason="duplicate_id", message=f"id {sample_id!r} repeats "
                                   "an earlier row", file=outcome.row["image"])
            if outcome.row is None:
                quarantine.add(id=sample_id, reason=outcome.reason, message=outcome.message,
                               file=outcome.file, row=index, data=outcome.data)
                continue
            seen.add(sample_id)
            for rel, data in outcome.files.items():
                write_if_changed(out / rel, data)
            accepted.append(outcome.row)
    return quarantine, accepted


def _bounded_map(pool: ThreadPoolExecutor, fn: Any, items: list[Any], window: int) -> Any:
    """Like pool.map, in order, but with at most ``window`` results in flight: only a few
    images' bytes are in memory at once, however large the data set."""
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _read_manifest(data: bytes, src: str | Path) -> pd.DataFrame:
    try:
        df = pd.read_parquet(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        raise contract.ContractError(f"{src}/{MANIFEST}: unreadable parquet ({exc})") from exc
    missing = [c for c in contract.COLUMNS if c not in df.columns]
    if missing:
        raise contract.ContractError(f"{src}/{MANIFEST}: missing column(s) {missing}")
    return contract.coerce_manifest(df, f"{src}/{MANIFEST}")
