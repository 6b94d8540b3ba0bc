"""Payload logging: sampled, bounded, asynchronous parquet batches to a folder or S3 (moto).

The logger runs here on real predictor ``Job`` objects (the dataclasses postprocess hands it);
the end-to-end path through a real server is in tests/test_drift.py.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import boto3
import pandas as pd
import pytest

from roadvision.errors import UserError
from roadvision.monitoring.records import read_logged, sanitize_metadata
from roadvision.serving import payload_log
from roadvision.serving.config import ServingConfig
from roadvision.serving.payload_log import DROPPED, LOGGED, PayloadLogConfig, PayloadLogger
from roadvision.serving.predictor import Item, Job, LoadedModel, ModelIdentity
from roadvision.serving.validation import Instance
from tests._serving import jpeg

META = {"lat": 40.712776, "lon": -74.005974, "weather": "foggy"}


def _job(n: int = 2, seed: int = 0) -> Job:
    identity = ModelIdentity("abc123def456", "models:/roadwork@champion", "roadwork", "3",
                             "champion")
    loaded = LoadedModel(cfg=None, version="abc123def456", task="roadwork", classes=[],
                         source="x", batcher=None, identity=identity)
    items = [Item(Instance(jpeg(seed + i), dict(META), "none"), f"k{i}", f"instances[{i}]",
                  result={"probability": 0.25 * (i + 1), "label": int(i > 0)}, cached=i == 0)
             for i in range(n)]
    return Job("v1", loaded, items, "partial")


def _counter(counter, *labels) -> float:
    return counter.labels(*labels)._value.get()


def test_rows_land_in_a_folder_with_every_field(tmp_path):
    logger = PayloadLogger(PayloadLogConfig(str(tmp_path / "log"), sample_rate=1.0), "rw-a",
                           seed=0)
    before = _counter(LOGGED, "rw-a")
    job = _job()
    assert logger.offer(job, 0.0123)
    logger.close()
    files = list((tmp_path / "log").rglob("*.parquet"))
    assert len(files) == 1 and files[0].parent.parent.name == "model=rw-a"
    assert files[0].parent.name.startswith("date=")
    df = read_logged(tmp_path / "log")
    assert len(df) == 2 and _counter(LOGGED, "rw-a") - before == 2
    row = df.iloc[1]
    assert bytes(row["image"]) == job.items[1].instance.image
    assert row["image_sha256"] == __import__("hashlib").sha256(row["image"]).hexdigest()
    assert row["probability"] == 0.5 and row["label"] == 1 and not row["cached"]
    assert df.iloc[0]["cached"] and row["cache_state"] == "partial"
    assert row["model_version"] == "abc123def456" and row["registry_version"] == "3"
    assert row["registry_alias"] == "champion" and row["latency_ms"] == pytest.approx(12.3)
    meta = json.loads(row["metadata"])
    assert meta == {"lat": 40.71, "lon": -74.01, "weather": "foggy"}  # rounded by default
    assert df["request_id"].nunique() == 1 and list(df["instance"]) == [0, 1]


def test_hash_only_and_gps_dropped(tmp_path):
    cfg = PayloadLogConfig(str(tmp_path), sample_rate=1.0, fields=("metadata",), gps="drop")
    logger = PayloadLogger(cfg, "rw-b")
    logger.offer(_job(1), 0.001)
    logger.close()
    row = read_logged(tmp_path).iloc[0]
    assert row["image"] is None and len(row["image_sha256"]) == 64
    assert row["image_bytes"] > 0
    assert json.loads(row["metadata"]) == {"weather": "foggy"}
    assert pd.isna(row["probability"]) and pd.isna(row["class_shares"])  # prediction not asked


def test_lanes_answers_log_their_class_shares(tmp_path):
    job = _job(1)
    job.loaded.task = "lanes"
    job.items[0].result = {"mask_png_b64": "...", "class_shares": {"background": 0.9,
                                                                    "lane": 0.1}}
    logger = PayloadLogger(PayloadLogConfig(str(tmp_path), sample_rate=1.0), "lanes-a")
    logger.offer(job, 0.0)
    logger.close()
    row = read_logged(tmp_path).iloc[0]
    assert json.loads(row["class_shares"]) == {"background": 0.9, "lane": 0.1}
    assert row["task"] == "lanes" and pd.isna(row["probability"])


def test_sampling_rate_is_honoured(tmp_path):
    logger = PayloadLogger(PayloadLogConfig(str(tmp_path), sample_rate=0.3), "rw-c", seed=1)
    job = _job(1)
    queued = sum(logger.offer(job, 0.0) for _ in range(400))
    logger.close()
    assert 80 < queued < 160  # 0.3 of 400 = 120
    assert len(read_logged(tmp_path)) == queued
    off = PayloadLogger(PayloadLogConfig(str(tmp_path / "off"), sample_rate=0.0), "rw-c")
    assert not any(off.offer(job, 0.0) for _ in range(50))
    off.close()
    assert not (tmp_path / "off").exists()


class _GatedSink(payload_log._FolderSink):
    """A real folder sink whose writes wait for ``gate``: a store that has fallen behind."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.gate, self.entered = threading.Event(), threading.Event()

    def put(self, rel: str, data: bytes) -> None:
        self.entered.set()
        assert self.gate.wait(10)
        super().put(rel, data)


def test_a_full_queue_drops_and_counts_instead_of_waiting(tmp_path):
    cfg = PayloadLogConfig(str(tmp_path), sample_rate=1.0, queue_size=2, batch_rows=1)
    logger = PayloadLogger(cfg, "rw-d")
    sink = logger._sink = _GatedSink(tmp_path)
    dropped = _counter(DROPPED, "rw-d", "queue_full")
    job = _job(2)
    assert logger.offer(job, 0.0)  # the writer takes it and blocks in put()
    assert sink.entered.wait(10)
    results = [logger.offer(job, 0.0) for _ in range(5)]  # 2 fit in the queue, 3 do not
    assert results == [True, True, False, False, False]
    assert _counter(DROPPED, "rw-d", "queue_full") - dropped == 3 * len(job.items)
    sink.gate.set()
    logger.close()
    assert len(read_logged(tmp_path)) == 3 * len(job.items)


def test_a_failing_store_is_counted_and_the_logger_keeps_going(tmp_path):
    (tmp_path / "model=rw-e").write_text("a file where the logger wants a folder")
    logger = PayloadLogger(PayloadLogConfig(str(tmp_path), sample_rate=1.0), "rw-e")
    before = _counter(DROPPED, "rw-e", "write_error")
    logger.offer(_job(2), 0.0)
    logger.close()
    assert _counter(DROPPED, "rw-e", "write_error") - before == 2


def test_batches_go_to_an_s3_prefix(s3_endpoint):
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket="logs")
    cfg = PayloadLogConfig("s3://logs/payloads/prod", sample_rate=1.0, batch_rows=2)
    logger = PayloadLogger(cfg, "rw-f")
    for seed in range(3):
        logger.offer(_job(2, seed), 0.0)
    logger.close()
    keys = [o["Key"] for o in boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(
        Bucket="logs")["Contents"]]
    assert len(keys) == 3 and all(k.startswith("payloads/prod/model=rw-f/date=") for k in keys)
    df = read_logged("s3://logs/payloads/prod", endpoint_url=s3_endpoint)
    assert len(df) == 6 and df["image_sha256"].nunique() == 4
    with pytest.raises(UserError, match="no logged payload files"):
        read_logged("s3://logs/elsewhere", endpoint_url=s3_endpoint)


def test_bad_settings_are_refused_with_their_name(tmp_path):
    with pytest.raises(UserError, match="sample rate"):
        PayloadLogConfig(str(tmp_path), sample_rate=1.5)
    with pytest.raises(UserError, match="fields"):
        PayloadLogConfig(str(tmp_path), fields=("image", "pixels"))
    with pytest.raises(UserError, match="GPS mode"):
        PayloadLogConfig(str(tmp_path), gps="blur")
    with pytest.raises(UserError, match="expected a folder or s3"):
        PayloadLogger(PayloadLogConfig("gs://bucket/x"), "m")
    with pytest.raises(UserError, match="ROADVISION_PAYLOAD_LOG_SAMPLE_RATE"):
        ServingConfig.from_env({"ROADVISION_PAYLOAD_LOG_SAMPLE_RATE": "half"})
    cfg = ServingConfig.from_env({"ROADVISION_PAYLOAD_LOG_URI": str(tmp_path),
                                  "ROADVISION_PAYLOAD_LOG_GPS": "drop"})
    logger = payload_log.from_serving_config(cfg, "m")
    assert logger.cfg.gps == "drop" and logger.cfg.sample_rate == 0.1
    logger.close()
    assert payload_log.from_serving_config(ServingConfig(), "m") is None  # off by default


def test_gps_rounding_keeps_other_fields_and_handles_pairs():
    assert sanitize_metadata({"gps": [1.23456, 2.34567], "scene": "urban"}, "round") == \
        {"gps": [1.23, 2.35], "scene": "urban"}
    assert sanitize_metadata({"lat": float("nan")}, "round") == {"lat": None}
    assert sanitize_metadata(META, "keep") == META


def test_the_chart_sets_the_payload_log_only_when_enabled():
    import helm_python
    from _deploy import find, render_chart, values_file

    def env(values: dict) -> dict:
        container = find(render_chart(values), "InferenceService")["spec"]["predictor"][
            "containers"][0]
        return {e["name"]: e.get("value") for e in container["env"]}

    prod = values_file("prod")
    assert not any(k.startswith("ROADVISION_PAYLOAD_LOG") for k in env(prod))
    prod["predictor"]["payloadLog"] = {"enabled": True, "uri": "s3://logs/roadwork",
                                       "sampleRate": 0.05, "gps": "drop"}
    prod["s3"] = {**prod.get("s3", {}), "endpoint": "minio.storage:9000", "useHttps": False}
    on = env(prod)
    assert on["ROADVISION_PAYLOAD_LOG_URI"] == "s3://logs/roadwork"
    assert on["ROADVISION_PAYLOAD_LOG_SAMPLE_RATE"] == "0.05"
    assert on["ROADVISION_PAYLOAD_LOG_GPS"] == "drop"
    assert on["AWS_ENDPOINT_URL"] == "http://minio.storage:9000"
    cfg = ServingConfig.from_env({k: v for k, v in on.items() if k.startswith("ROADVISION_PAY")})
    assert cfg.payload_log_uri == "s3://logs/roadwork" and cfg.payload_log_sample_rate == 0.05
    prod["predictor"]["payloadLog"] = {"enabled": True}
    with pytest.raises(helm_python.HelmError, match="payloadLog.uri is required"):
        render_chart(prod)
