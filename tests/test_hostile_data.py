"""The attack suite on the data tools: every reader (ingest, validate, each importer, split,
weights, the training datasets, the bundle loader) refuses links and paths out of the data
folder, quarantines the row as ``outside_root`` and never reads or copies the outside bytes;
bombs and lying files are refused with their reason while the good rows survive.

Before confinement, each attack below put the outside bytes into the output (a linked JPEG as
a good sample under images/, a linked text file under quarantine/).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from roadvision.data.contract import ContractError, read_info, read_manifest
from roadvision.data.importers import import_dataset
from roadvision.data.ingest import ingest
from roadvision.data.split import split_dataset
from roadvision.data.validate import validate_dataset
from roadvision.data.weights import gps_weights
from roadvision.errors import UserError
from tests._fixtures import jpeg, lane_mask, make_dataset, mask_png, sha, write_mmseg, write_natix
from tests._hostile import (
    assert_nothing_from_outside,
    deflate_bomb,
    gif_named_png,
    header_bomb,
    link,
    make_outside,
    png_claiming_jpeg,
    text_named_jpeg,
)


def _reasons(out: Path) -> dict[str, str]:
    entries = json.loads((out / "quarantine.json").read_text())["entries"]
    return {e["id"]: e["reason"] for e in entries}


@pytest.fixture()
def outside(tmp_path):
    return make_outside(tmp_path)


def _linked_dataset(root: Path, outside, task: str = "roadwork", n: int = 4) -> Path:
    """A data set whose row 1 links to an outside JPEG (manifest sha256 and size match it, so
    only the link gives it away) and row 2 to an outside text file."""
    make_dataset(root, task, n=n, rows=[{}, {"sha256": sha(outside.jpeg.read_bytes())}])
    link(root / "images" / "s001.jpg", outside.jpeg)
    link(root / "images" / "s002.jpg", outside.text)
    return root


# -- the helper itself ---------------------------------------------------------------------
def test_helper_refuses_links_climbs_and_absolute_paths(tmp_path, outside):
    from roadvision.data.confine import (
        OutsideRoot,
        check_confined,
        confined_relpath,
        read_confined,
    )

    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "ok.bin").write_bytes(b"ok")
    link(root / "file-link", outside.text)
    link(root / "dir-link", outside.root)
    link(root / "inner-link", root / "sub" / "ok.bin")  # even a link that stays inside
    assert read_confined(root, "sub/ok.bin") == b"ok"
    assert read_confined(root, "sub/missing") is None
    for rel in ("file-link", "dir-link/secret.jpg", "inner-link", "../outside/secret.jpg",
                str(outside.jpeg), "sub/../../outside/passwd"):
        with pytest.raises(OutsideRoot):
            read_confined(root, rel)
    with pytest.raises(OutsideRoot):
        confined_relpath("C:/Windows/win.ini")
    os.mkfifo(root / "fifo")  # would block a plain open() forever
    with pytest.raises(ValueError, match="not a regular file"):
        check_confined(root, "fifo")


# -- ingest --------------------------------------------------------------------------------
def test_ingest_quarantines_links_without_reading_them(tmp_path, outside):
    src = _linked_dataset(tmp_path / "src", outside)
    report = ingest(src, tmp_path / "out")
    assert _reasons(tmp_path / "out") == {"s001": "outside_root", "s002": "outside_root"}
    assert report.accepted == 2
    assert_nothing_from_outside(tmp_path / "out", outside)
    assert validate_dataset(tmp_path / "out").ok


def test_ingest_refuses_a_linked_image_folder_and_manifest(tmp_path, outside):
    src = tmp_path / "src"
    make_dataset(src, n=3)
    (outside.root / "images").mkdir()
    for i in range(3):  # the outside folder holds exactly the files the manifest names
        (outside.root / "images" / f"s{i:03d}.jpg").write_bytes((src / "images" /
                                                                 f"s{i:03d}.jpg").read_bytes())
    link(src / "images", outside.root / "images")
    with pytest.raises(UserError, match="no usable rows.*outside_root"):
        ingest(src, tmp_path / "out")
    assert set(_reasons(tmp_path / "out").values()) == {"outside_root"}
    assert not (tmp_path / "out" / "images").exists()

    other = tmp_path / "other"
    make_dataset(other, n=2)
    (outside.root / "manifest.parquet").write_bytes((other / "manifest.parquet").read_bytes())
    link(other / "manifest.parquet", outside.root / "manifest.parquet")
    with pytest.raises(UserError, match="symbolic link"):
        ingest(other, tmp_path / "out2")


# -- validate ------------------------------------------------------------------------------
def test_validate_reports_links_and_does_not_vouch_for_them(tmp_path, outside):
    root = tmp_path / "data"
    make_dataset(root, n=3, rows=[{}, {"sha256": sha(outside.jpeg.read_bytes())}])
    link(root / "images" / "s001.jpg", outside.jpeg)
    report = validate_dataset(root)
    assert not report.ok  # the old code read the outside JPEG, found it matched: "ok"
    assert [(p.row, p.column) for p in report.problems] == [(1, "image")]
    assert "outside_root" in str(report.problems[0])
    link(root / "dataset.json", outside.text)
    with pytest.raises(ContractError, match="symbolic link"):
        read_info(root)


# -- importers -----------------------------------------------------------------------------
def test_mmseg_image_and_annotation_links_are_quarantined(tmp_path, outside):
    src = write_mmseg(tmp_path / "mm", {f"train/{k}": {"image": jpeg(i), "mask": lane_mask()}
                                        for i, k in enumerate("abc")})
    link(src / "img_dir" / "train" / "b.jpg", outside.jpeg)
    (outside.root / "c.png").write_bytes(mask_png(lane_mask(), mode="P"))
    link(src / "ann_dir" / "train" / "c.png", outside.root / "c.png")
    report = import_dataset("mmseg", src, tmp_path / "out")
    assert report.imported == 1
    assert _reasons(tmp_path / "out") == {"train/b": "outside_root", "train/c": "outside_root"}
    assert_nothing_from_outside(tmp_path / "out", outside)


def test_mmseg_linked_image_folder_is_refused(tmp_path, outside):
    src = write_mmseg(tmp_path / "mm", {"train/a": {"image": jpeg(1), "mask": lane_mask()}})
    (outside.root / "train").mkdir()
    (outside.root / "train" / "a.jpg").write_bytes(outside.jpeg.read_bytes())
    link(src / "img_dir", outside.root)
    with pytest.raises(UserError, match="no usable samples.*outside_root"):
        import_dataset("mmseg", src, tmp_path / "out")
    assert_nothing_from_outside(tmp_path / "out", outside)


def test_natix_absolute_and_climbing_image_paths_are_quarantined(tmp_path, outside):
    folder = tmp_path / "natix"
    folder.mkdir()
    (folder / "here.jpg").write_bytes(jpeg(seed=9))
    records = [
        {"id": "good", "image": jpeg(1), "label": 1},
        {"id": "absolute", "image": {"bytes": None, "path": str(outside.jpeg)}, "label": 0},
        {"id": "climbing", "image": {"bytes": None, "path": "../outside/secret.jpg"}, "label": 1},
        {"id": "relative", "image": {"bytes": None, "path": "here.jpg"}, "label": 0},
    ]
    rows = [{**r, "image": r["image"] if isinstance(r["image"], dict) else
             {"bytes": r["image"], "path": None}} for r in records]
    write_natix(folder / "part.parquet", rows, image_as_dict=False)
    report = import_dataset("natix", folder, tmp_path / "out")
    assert report.imported == 2  # "good" (bytes) and "relative" (a file inside the folder)
    assert _reasons(tmp_path / "out") == {"absolute": "outside_root", "climbing": "outside_root"}
    assert_nothing_from_outside(tmp_path / "out", outside)


def test_natix_linked_parquet_is_refused(tmp_path, outside):
    folder = tmp_path / "natix"
    write_natix(folder / "a.parquet", [{"id": "a", "image": jpeg(1), "label": 1}])
    write_natix(outside.root / "b.parquet", [{"id": "b", "image": outside.jpeg.read_bytes(),
                                              "label": 1}])
    link(folder / "b.parquet", outside.root / "b.parquet")
    report = import_dataset("natix", folder, tmp_path / "out")
    assert report.imported == 1 and _reasons(tmp_path / "out") == {"b": "outside_root"}
    assert_nothing_from_outside(tmp_path / "out", outside)


def test_coco_and_ael_paths_out_of_the_folder_are_quarantined(tmp_path, outside):
    from tests._fixtures import write_ael, write_coco

    coco = write_coco(tmp_path / "coco", [
        {"id": 1, "file_name": "a.jpg", "bytes": jpeg(1)},
        {"id": 2, "file_name": str(outside.jpeg)},
        {"id": 3, "file_name": "linked.jpg"},
    ], [(1, "Cone")])
    link(tmp_path / "coco" / "linked.jpg", outside.jpeg)
    import_dataset("roadwork-coco", coco, tmp_path / "out-coco")
    assert _reasons(tmp_path / "out-coco") == {"secret": "outside_root",
                                               "linked": "outside_root"}
    assert_nothing_from_outside(tmp_path / "out-coco", outside)

    lanes = [{"class": "white_solid", "points": [[0, 5], [31, 5]]}]
    write_ael(tmp_path / "ael", "t1", jpeg(1), lanes)
    write_ael(tmp_path / "ael", "t2", jpeg(2), lanes)
    link(tmp_path / "ael" / "t2.jpg", outside.jpeg)
    report = import_dataset("ael", tmp_path / "ael", tmp_path / "out-ael")
    assert report.imported == 1 and _reasons(tmp_path / "out-ael") == {"t2": "outside_root"}
    assert_nothing_from_outside(tmp_path / "out-ael", outside)


# -- split and weights ---------------------------------------------------------------------
@pytest.mark.parametrize("step", ["split", "weights"])
def test_split_and_weights_never_carry_outside_files(tmp_path, outside, step):
    src = tmp_path / "src"
    make_dataset(src, n=6, rows=[{}, {"sha256": sha(outside.jpeg.read_bytes())}])
    link(src / "images" / "s001.jpg", outside.jpeg)
    out = tmp_path / "out"
    if step == "split":
        split_dataset(src, out, min_distance_m=0, val_fraction=0.2, test_fraction=0.2)
    else:
        gps_weights(src, out, targets=[(40.0, -80.0)])
    assert "s001" not in read_manifest(out)["id"].tolist()
    assert _reasons(out) == {"s001": "outside_root"}
    assert_nothing_from_outside(out, outside)


# -- training datasets and bundles ---------------------------------------------------------
def test_training_reader_and_bundle_loader_refuse_links(tmp_path, outside):
    from roadvision.models import create_model
    from roadvision.models.bundle import WEIGHTS_FILE, load_bundle, save_bundle
    from roadvision.runtime.readers import read_image

    root = tmp_path / "data"
    make_dataset(root, n=2)
    assert read_image(root, "images/s000.jpg").shape == (24, 32, 3)
    link(root / "images" / "s001.jpg", outside.jpeg)
    with pytest.raises(ContractError, match="outside_root"):
        read_image(root, "images/s001.jpg")

    other = save_bundle(create_model("roadwork_tiny"), outside.root / "bundle")
    bundle = save_bundle(create_model("roadwork_tiny"), tmp_path / "bundle")
    link(bundle / WEIGHTS_FILE, other / WEIGHTS_FILE)
    with pytest.raises(UserError, match="symbolic link"):
        load_bundle(bundle)


# -- bombs and lying files -----------------------------------------------------------------
def test_bombs_and_lying_files_are_quarantined_and_good_rows_survive(tmp_path):
    src = tmp_path / "src"
    make_dataset(src, n=6, rows=[
        {},
        {"image_bytes": header_bomb(), "width": 60_000, "height": 60_000},
        {"image_bytes": deflate_bomb(), "width": 4900, "height": 4900},
        {"image_bytes": text_named_jpeg()},
        {"image_bytes": gif_named_png()},
        {"image_bytes": png_claiming_jpeg()},
    ])
    report = ingest(src, tmp_path / "out", max_pixels=1_000_000)
    assert {e.id: e.reason for e in report.quarantined} == {
        "s001": "too_many_pixels", "s002": "too_many_pixels", "s003": "unsupported_format",
        "s004": "unsupported_format", "s005": "corrupt"}
    assert read_manifest(tmp_path / "out")["id"].tolist() == ["s000"]
    problems = validate_dataset(src, max_pixels=1_000_000).problems
    assert {p.row for p in problems if p.column == "image"} == {1, 2, 3, 4, 5}
    # under the default limit the 4900 px deflate bomb is a real (if empty) image
    assert "s002" not in {e.id for e in ingest(src, tmp_path / "out2").quarantined}


def test_natix_bomb_rows_are_quarantined(tmp_path):
    src = write_natix(tmp_path / "n.parquet", [
        {"id": "ok", "image": jpeg(1), "label": 1},
        {"id": "bomb", "image": header_bomb(), "label": 0},
        {"id": "lie", "image": text_named_jpeg(), "label": 0},
    ])
    report = import_dataset("natix", src, tmp_path / "out")
    assert report.imported == 1
    assert _reasons(tmp_path / "out") == {"bomb": "too_many_pixels", "lie": "unsupported_format"}
    assert np.asarray(read_manifest(tmp_path / "out")["id"]).tolist() == ["ok"]
