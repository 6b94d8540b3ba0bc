"""The payload record: one logged instance (request + answer), and reading logged parquet back.

The predictor (``serving/payload_log.py``) writes these rows in parquet batches under a folder or
an ``s3://`` prefix, partitioned as ``model=NAME/date=YYYY-MM-DD/<time>-<id>.parquet`` (Hive
style, so DuckDB, Spark or pandas read the tree as one table). ``roadvision monitor drift`` and
the pseudo-label branch read them with :func:`read_logged`.

``image`` holds the request's image bytes only when the server logs images (``fields`` has
``image``); ``image_sha256`` is always there, a content reference to the bytes a client sent
(the Redis cache keys on the same bytes). ``metadata`` is the request metadata as JSON, its GPS
rounded or dropped as the server was told (:func:`sanitize_metadata`). Logs written before a
column was added (``arm``) lack it; :func:`read_logged` gives their rows null there.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from roadvision.data.confine import PathRefused, read_confined, split_s3_uri
from roadvision.errors import UserError

__all__ = ["COLUMNS", "FIELDS", "GPS_MODES", "sanitize_metadata", "read_logged",
           "partition_path"]

#: Every column of a record, in file order (the parquet schema; see the module docstring).
COLUMNS = (
    "ts",  # float, Unix seconds when the answer was ready
    "request_id", "instance",  # one row per instance of a request
    "model", "model_version", "registry_name", "registry_version", "registry_alias",
    "task", "protocol", "tta",
    "image_sha256", "image_bytes", "image",  # content reference, size, bytes (or null)
    "metadata",  # JSON text (GPS rounded or dropped) or null
    "probability", "label", "class_shares",  # roadwork; lanes: class_shares JSON
    "cached", "cache_state", "latency_ms",
    "arm",  # champion or challenger when a canary answered (serving/canary.py), else null
)
#: Optional parts of a record a server can leave out (``--payload_log_fields``).
FIELDS = ("image", "metadata", "prediction")
#: What happens to a request's GPS: kept as sent, rounded to ``gps_decimals``, or dropped.
GPS_MODES = ("keep", "round", "drop")
_GPS_KEYS = ("lat", "lon", "gps")


def sanitize_metadata(metadata: dict[str, Any], gps: str, decimals: int = 2) -> dict[str, Any]:
    """``metadata`` with its GPS as ``gps`` says; 2 decimals is about 1 km, a city block."""
    if gps == "keep":
        return dict(metadata)
    out = {k: v for k, v in metadata.items() if k not in _GPS_KEYS}
    if gps == "drop":
        return out
    for key in _GPS_KEYS:
        value = metadata.get(key)
        if isinstance(value, list | tuple):
            out[key] = [_round(v, decimals) for v in value]
        elif value is not None:
            out[key] = _round(value, decimals)
    return out


def _round(value: Any, decimals: int) -> Any:
    if isinstance(value, int | float) and math.isfinite(value):
        return round(float(value), decimals)
    return None


def partition_path(model: str, ts: float, name: str) -> str:
    """Where one batch goes under the prefix (``model=NAME/date=YYYY-MM-DD/NAME.parquet``)."""
    import time

    return f"model={model}/date={time.strftime('%Y-%m-%d', time.gmtime(ts))}/{name}.parquet"


# -- reading --------------------------------------------------------------------------------
def read_logged(uri: str | Path, *, model: str | None = None, endpoint_url: str | None = None,
                limit: int | None = None) -> pd.DataFrame:
    """Every logged row under a folder or ``s3://bucket/prefix`` (newest files last).

    ``model`` keeps one served model's rows; ``limit`` keeps the newest ``limit`` rows. A UserError
    when nothing is there: drift on zero rows means a wrong URI, not a quiet week.
    """
    frames = [pd.read_parquet(io.BytesIO(data)) for data in _iter_files(str(uri), endpoint_url)]
    if not frames:
        raise UserError(f"{uri}: no logged payload files (*.parquet) there")
    df = pd.concat(frames, ignore_index=True).sort_values("ts", kind="stable")
    if model is not None:
        df = df[df["model"] == model]
        if df.empty:
            raise UserError(f"{uri}: no logged rows for model {model!r}")
    if limit is not None:
        df = df.tail(limit)
    return df.reset_index(drop=True)


def _iter_files(uri: str, endpoint_url: str | None) -> Iterator[bytes]:
    if uri.startswith("s3://"):
        yield from _iter_s3(uri, endpoint_url)
        return
    root = Path(uri)
    if not root.is_dir():
        raise UserError(f"{root}: no such folder of logged payloads")
    # Walked without following links, and every file opened through the confinement rules:
    # a link in the log folder never makes us read outside it.
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            if not name.endswith(".parquet"):
                continue
            rel = os.path.relpath(os.path.join(folder, name), root)
            try:
                data = read_confined(root, rel)
            except PathRefused:
                continue
            if data is not None:
                yield data


def _iter_s3(uri: str, endpoint_url: str | None) -> Iterator[bytes]:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = split_s3_uri(uri)
    client = boto3.client("s3", endpoint_url=endpoint_url)
    try:
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=f"{prefix}/" if prefix else "")
        keys = sorted(obj["Key"] for page in pages for obj in page.get("Contents", [])
                      if obj["Key"].endswith(".parquet"))
        for key in keys:
            yield client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        raise UserError(f"{uri}: cannot read logged payloads ({code or exc})") from exc
    except BotoCoreError as exc:
        raise UserError(f"{uri}: {exc}") from exc


def metadata_of(row: pd.Series) -> dict[str, Any]:
    """A logged row's metadata as a dict ({} when not logged)."""
    text = row.get("metadata")
    return json.loads(text) if isinstance(text, str) and text else {}
