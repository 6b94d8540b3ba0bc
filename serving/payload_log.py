"""Payload logging: a sample of requests and answers, written off the request path as parquet.

``postprocess`` hands each sampled request to :meth:`PayloadLogger.offer`, which only puts a
reference to it on a bounded queue (``put_nowait``: when the queue is full the request is
dropped and counted in ``roadvision_payload_log_dropped_total``, never waited for). One writer
thread per served model builds the rows (``roadvision.monitoring.records`` is the format:
content hash, image bytes if asked, metadata with GPS rounded or dropped, prediction, model
identity, latency, cache state) and writes a parquet file every ``batch_rows`` rows or
``flush_s`` seconds, to a folder or an ``s3://`` prefix (boto3's credential chain; the endpoint
from ``AWS_ENDPOINT_URL``, as for the data steps). A failed write drops that batch, counted with
reason ``write_error``; the server keeps answering.

With KServe's own logger (``spec.predictor.logger``, CloudEvents to an HTTP sink) both can run:
that one records the raw HTTP exchange for audit at the InferenceService level; this one records
decoded, sampled, privacy-trimmed rows in the format the drift check and the pseudo-label branch
read, without a sink service to run.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import queue
import random
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import Counter

from roadvision.errors import UserError
from roadvision.monitoring.records import (
    COLUMNS,
    FIELDS,
    GPS_MODES,
    partition_path,
    sanitize_metadata,
)

log = logging.getLogger("roadvision.serving")

LOGGED = Counter("roadvision_payload_log_records_total",
                 "Instances written to the payload log.", ["model"])
DROPPED = Counter("roadvision_payload_log_dropped_total",
                  "Sampled instances not logged: queue_full (the writer fell behind) or "
                  "write_error (the store refused the batch).", ["model", "reason"])


@dataclass(frozen=True)
class PayloadLogConfig:
    """Where and what to log (the ``payload_log_*`` fields of ``ServingConfig``)."""

    uri: str  # folder or s3://bucket/prefix
    sample_rate: float = 0.1  # share of requests logged, 0..1
    fields: tuple[str, ...] = FIELDS  # optional parts: image bytes, metadata, prediction
    gps: str = "round"  # keep | round (2 decimals, ~1 km) | drop
    queue_size: int = 1024  # requests waiting for the writer; more are dropped
    batch_rows: int = 512  # rows per parquet file
    flush_s: float = 60.0  # a partial batch is written after this long

    def __post_init__(self) -> None:
        if not 0.0 <= self.sample_rate <= 1.0:
            raise UserError(f"payload log sample rate must be in [0, 1], got {self.sample_rate}")
        unknown = set(self.fields) - set(FIELDS)
        if unknown:
            raise UserError(f"payload log fields {sorted(unknown)} unknown; valid: "
                            f"{', '.join(FIELDS)}")
        if self.gps not in GPS_MODES:
            raise UserError(f"payload log GPS mode {self.gps!r} is not one of {GPS_MODES}")
        if self.queue_size < 1 or self.batch_rows < 1 or not self.flush_s > 0:
            raise UserError("payload log queue_size and batch_rows must be >= 1, flush_s > 0")


class PayloadLogger:
    """Sampled, asynchronous, bounded payload logging for one served model."""

    def __init__(self, cfg: PayloadLogConfig, model: str, *, seed: int | None = None) -> None:
        self.cfg, self.model = cfg, model
        self._random = random.Random(seed)
        self._queue: queue.Queue = queue.Queue(maxsize=cfg.queue_size)
        self._sink = _sink_for(cfg.uri)
        self._thread = threading.Thread(target=self._run, name=f"payload-log-{model}",
                                        daemon=True)
        self._thread.start()

    def offer(self, job: Any, latency_s: float, *, sampled: bool | None = None) -> bool:
        """Queue ``job`` (a predictor ``Job``) if sampled; True if queued. Never blocks.
        ``sampled``: the caller's own sampling decision (a canary logs both arms of a request
        or neither)."""
        if not (self._random.random() < self.cfg.sample_rate if sampled is None else sampled):
            return False
        try:
            self._queue.put_nowait((time.time(), job, latency_s))
        except queue.Full:
            DROPPED.labels(self.model, "queue_full").inc(len(job.items))
            return False
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued and stop the writer (called when the model stops)."""
        if self._thread.is_alive():
            self._queue.put(None)  # blocks only if full: the writer is draining it
            self._thread.join(timeout_s)

    # -- the writer thread ------------------------------------------------------------------
    def _run(self) -> None:
        rows: list[dict[str, Any]] = []
        first = 0.0
        while True:
            wait = self.cfg.flush_s - (time.monotonic() - first) if rows else None
            try:
                entry = self._queue.get(timeout=max(wait, 0.001) if wait is not None else None)
            except queue.Empty:
                entry = ()
            if entry is None:
                self._write(rows)
                return
            if entry:
                if not rows:
                    first = time.monotonic()
                rows.extend(self._rows(*entry))
            if rows and (len(rows) >= self.cfg.batch_rows
                         or time.monotonic() - first >= self.cfg.flush_s):
                self._write(rows)
                rows = []

    def _rows(self, ts: float, job: Any, latency_s: float) -> list[dict[str, Any]]:
        fields = self.cfg.fields
        identity = job.loaded.identity
        request_id = getattr(job, "request_id", None) or (
            job.request.id if job.request is not None and job.request.id else uuid.uuid4().hex)
        rows = []
        for index, item in enumerate(job.items):
            image, result = item.instance.image, item.result or {}
            row = dict.fromkeys(COLUMNS)
            row.update(
                ts=ts, request_id=request_id, instance=index, model=self.model,
                model_version=job.loaded.version, task=job.loaded.task, protocol=job.protocol,
                tta=item.instance.tta, image_sha256=hashlib.sha256(image).hexdigest(),
                image_bytes=len(image), cached=item.cached, cache_state=job.cache_state,
                latency_ms=round(latency_s * 1000.0, 3), arm=getattr(job, "arm", None))
            if identity is not None:
                row.update(registry_name=identity.registry_name,
                           registry_version=identity.registry_version,
                           registry_alias=identity.registry_alias)
            if "image" in fields:
                row["image"] = image
            if "metadata" in fields and item.instance.metadata:
                row["metadata"] = json.dumps(
                    sanitize_metadata(item.instance.metadata, self.cfg.gps), sort_keys=True)
            if "prediction" in fields:
                row["probability"] = result.get("probability")
                row["label"] = result.get("label")
                if "class_shares" in result:
                    row["class_shares"] = json.dumps(result["class_shares"], sort_keys=True)
            rows.append(row)
        return rows

    def _write(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(rows[0]["ts"]))
        name = f"{stamp}-{uuid.uuid4().hex[:8]}"
        try:
            table = pa.Table.from_pylist(rows, schema=_SCHEMA)
            buffer = io.BytesIO()
            pq.write_table(table, buffer, compression="zstd")
            self._sink.put(partition_path(self.model, rows[0]["ts"], name), buffer.getvalue())
        except Exception as exc:  # noqa: BLE001 - the log must never take the server down
            log.warning("payload log: %d rows for %s not written to %s: %s", len(rows),
                        self.model, self.cfg.uri, exc)
            DROPPED.labels(self.model, "write_error").inc(len(rows))
            return
        LOGGED.labels(self.model).inc(len(rows))


def _schema():
    import pyarrow as pa

    types = {"ts": pa.float64(), "instance": pa.int32(), "image_bytes": pa.int64(),
             "image": pa.binary(), "probability": pa.float64(), "label": pa.int8(),
             "cached": pa.bool_(), "latency_ms": pa.float64()}
    return pa.schema([(name, types.get(name, pa.string())) for name in COLUMNS])


_SCHEMA = _schema()


# -- where batches go ---------------------------------------------------------------------------
class _FolderSink:
    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, rel: str, data: bytes) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")  # readers see whole files only (they read *.parquet)
        tmp.write_bytes(data)
        tmp.replace(path)


class _S3Sink:
    def __init__(self, uri: str) -> None:
        import boto3
        from botocore.config import Config

        from roadvision.data.confine import split_s3_uri

        self.bucket, self.prefix = split_s3_uri(uri, "payload log URI")
        self.client = boto3.client("s3", config=Config(retries={"max_attempts": 3,
                                                                "mode": "standard"}))

    def put(self, rel: str, data: bytes) -> None:
        key = f"{self.prefix}/{rel}" if self.prefix else rel
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data)


def _sink_for(uri: str) -> _FolderSink | _S3Sink:
    if uri.startswith("s3://"):
        return _S3Sink(uri)
    if "://" in uri:
        raise UserError(f"payload log URI {uri!r}: expected a folder or s3://bucket/prefix")
    return _FolderSink(Path(uri))


def from_serving_config(config: Any, model: str) -> PayloadLogger | None:
    """The logger ``config`` (a ``ServingConfig``) asks for, or None when logging is off."""
    if not config.payload_log_uri:
        return None
    fields = tuple(f.strip() for f in config.payload_log_fields.split(",") if f.strip())
    return PayloadLogger(PayloadLogConfig(
        uri=config.payload_log_uri, sample_rate=config.payload_log_sample_rate, fields=fields,
        gps=config.payload_log_gps, queue_size=config.payload_log_queue_size,
        flush_s=config.payload_log_flush_s), model)
