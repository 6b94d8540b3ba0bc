"""ingest: bad files are quarantined with a reason, every good row survives, re-runs are
idempotent, and S3 sources work through real boto3 against an S3-compatible server (moto)."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from roadvision.data.contract import read_manifest
from roadvision.data.ingest import ingest
from roadvision.data.validate import validate_dataset
from roadvision.errors import UserError
from tests._fixtures import corrupt_jpeg, jpeg, lane_mask, make_dataset, mask_png, truncated_png

BAD_ROADWORK = {
    1: ({"image_bytes": corrupt_jpeg(), "width": 64, "height": 64}, "corrupt"),
    2: ({"image_bytes": truncated_png(), "width": 64, "height": 64}, "truncated"),
    3: ({"label": 5}, "bad_label"),
    4: ({"lat": 95.0}, "bad_gps"),
    5: ({"width": 99}, "size_mismatch"),
}


def _roadwork_with_bad_rows(root: Path, n: int = 10):
    rows = [BAD_ROADWORK.get(i, ({}, None))[0] for i in range(n)]
    df = make_dataset(root, "roadwork", n=n, rows=rows)
    (root / "images" / "s006.jpg").unlink()  # a manifest row whose file is missing
    (root / "images" / "s007.jpg").write_bytes(jpeg(seed=12345))  # bytes differ from sha256
    expected = {f"s{i:03d}": reason for i, (_, reason) in BAD_ROADWORK.items()}
    expected.update({"s006": "missing_file", "s007": "sha256_mismatch"})
    return df, expected


def _quarantine(out: Path) -> dict[str, str]:
    entries = json.loads((out / "quarantine.json").read_text())["entries"]
    return {e["id"]: e["reason"] for e in entries}


def test_bad_files_are_quarantined_and_good_rows_all_survive(tmp_path):
    src_df, expected = _roadwork_with_bad_rows(tmp_path / "src")
    report = ingest(tmp_path / "src", tmp_path / "out")
    assert _quarantine(tmp_path / "out") == expected
    assert {e.id: e.reason for e in report.quarantined} == expected
    good = src_df[~src_df["id"].isin(expected)]
    out_df = read_manifest(tmp_path / "out")
    assert out_df["id"].tolist() == good["id"].tolist()
    assert out_df["sha256"].tolist() == good["sha256"].tolist()
    for rel, digest in zip(out_df["image"], out_df["sha256"], strict=True):
        assert (tmp_path / "out" / rel).read_bytes() == (tmp_path / "src" / rel).read_bytes()
        assert len(digest) == 64
    assert validate_dataset(tmp_path / "out").ok
    # The refused bytes are kept for inspection; a missing file has nothing to keep.
    assert (tmp_path / "out" / "quarantine" / "images" / "s001.jpg").read_bytes() == corrupt_jpeg()
    assert not (tmp_path / "out" / "quarantine" / "images" / "s006.jpg").exists()
    assert report.accepted == len(good) and "7 quarantined" in report.summary()


def test_rerun_is_idempotent_and_skips_good_copies(tmp_path):
    _roadwork_with_bad_rows(tmp_path / "src")
    ingest(tmp_path / "src", tmp_path / "out")
    out = tmp_path / "out"

    def snapshot():
        # manifest.parquet/dataset.json are rewritten (same bytes); data files are not touched.
        return {p: (p.read_bytes(), None if p.suffix in (".parquet", ".json")
                    else p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()}

    before = snapshot()
    ingest(tmp_path / "src", out)
    assert snapshot() == before


def test_lanes_mask_out_of_range_and_missing_mask(tmp_path):
    bad = lane_mask()
    bad[3, 3] = 4
    make_dataset(tmp_path / "src", "lanes", n=4, rows=[{}, {"mask_bytes": mask_png(bad)},
                                                       {"mask": None}])
    report = ingest(tmp_path / "src", tmp_path / "out")
    assert {e.id: e.reason for e in report.quarantined} == {"s001": "mask_out_of_range",
                                                            "s002": "missing_mask"}
    assert "class id(s) 4" in str(report.quarantined[0])
    assert read_manifest(tmp_path / "out")["id"].tolist() == ["s000", "s003"]
    assert validate_dataset(tmp_path / "out").ok


def test_missing_sha256_is_computed(tmp_path):
    make_dataset(tmp_path / "src", n=2, rows=[{"sha256": None}])
    ingest(tmp_path / "src", tmp_path / "out")
    df = read_manifest(tmp_path / "out")
    assert df["sha256"].notna().all() and validate_dataset(tmp_path / "out").ok


def test_oversized_image_is_quarantined(tmp_path):
    big = jpeg(seed=3, height=60, width=80)
    make_dataset(tmp_path / "src", n=3, rows=[{"image_bytes": big, "width": 80, "height": 60}])
    report = ingest(tmp_path / "src", tmp_path / "out", max_pixels=24 * 32)
    assert [(e.id, e.reason) for e in report.quarantined] == [("s000", "too_many_pixels")]


def test_source_errors(tmp_path):
    with pytest.raises(UserError, match="no such folder"):
        ingest(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="empty"):
        ingest(tmp_path / "empty", tmp_path / "out")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("hi")
    with pytest.raises(UserError, match="no manifest.parquet"):
        ingest(tmp_path / "other", tmp_path / "out")


def test_nothing_usable_is_an_error_with_the_report_written(tmp_path):
    make_dataset(tmp_path / "src", n=2, rows=[{"label": 7}, {"label": 8}])
    with pytest.raises(UserError, match="no usable rows.*bad_label"):
        ingest(tmp_path / "src", tmp_path / "out")
    assert _quarantine(tmp_path / "out") == {"s000": "bad_label", "s001": "bad_label"}


# -- S3 (moto's S3-compatible server, the same protocol MinIO speaks) -------------------------
def test_ingest_from_s3(tmp_path, s3_endpoint):
    _, expected = _roadwork_with_bad_rows(tmp_path / "src")
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket="roads")
    for path in (tmp_path / "src").rglob("*"):
        if path.is_file():
            client.upload_file(str(path), "roads", f"raw/v1/{path.relative_to(tmp_path / 'src')}")
    report = ingest("s3://roads/raw/v1", tmp_path / "out", endpoint_url=s3_endpoint)
    local = ingest(tmp_path / "src", tmp_path / "local")
    assert {e.id: e.reason for e in report.quarantined} == expected
    assert report.info.content_hash == local.info.content_hash  # same rows, same bytes
    assert validate_dataset(tmp_path / "out").ok
    with pytest.raises(UserError, match="does not exist"):
        ingest("s3://no-such-bucket/x", tmp_path / "o2", endpoint_url=s3_endpoint)
    with pytest.raises(UserError, match="no manifest.parquet"):
        ingest("s3://roads/raw/v2", tmp_path / "o3", endpoint_url=s3_endpoint)


def test_s3_keys_and_prefixes_cannot_climb(tmp_path, s3_endpoint):
    make_dataset(tmp_path / "src", n=4, rows=[{}, {"image": "../secret.jpg"},
                                              {"image": "/raw/secret.jpg"}])
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket="roads")
    client.put_object(Bucket="roads", Key="raw/secret.jpg", Body=b"TOP-SECRET-MARKER")
    for path in (tmp_path / "src").rglob("*"):
        if path.is_file():
            client.upload_file(str(path), "roads", f"raw/v1/{path.relative_to(tmp_path / 'src')}")
    report = ingest("s3://roads/raw/v1", tmp_path / "out", endpoint_url=s3_endpoint)
    assert {e.id: e.reason for e in report.quarantined} == {"s001": "bad_path",
                                                            "s002": "bad_path"}
    assert not [p for p in (tmp_path / "out").rglob("*")
                if p.is_file() and b"TOP-SECRET-MARKER" in p.read_bytes()]
    for prefix in ("raw/v1/..", "raw/./v1", "raw//v1"):
        with pytest.raises(UserError, match="segment"):
            ingest(f"s3://roads/{prefix}", tmp_path / "o2", endpoint_url=s3_endpoint)


def test_rerun_into_a_foreign_folder_is_refused_and_overwrite_replaces_it(tmp_path):
    make_dataset(tmp_path / "src", n=3)
    make_dataset(tmp_path / "other", n=5, seed=7)
    before = sorted(p.name for p in (tmp_path / "other" / "images").iterdir())
    with pytest.raises(UserError, match="not empty"):
        ingest(tmp_path / "src", tmp_path / "other")
    assert sorted(p.name for p in (tmp_path / "other" / "images").iterdir()) == before
    ingest(tmp_path / "src", tmp_path / "other", overwrite=True)
    assert len(list((tmp_path / "other" / "images").iterdir())) == 3  # nothing stale
    assert validate_dataset(tmp_path / "other").ok
