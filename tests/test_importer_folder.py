"""``--format folder``: a plain folder of images plus a CSV/parquet label table imports into a
valid data set; every bad row is quarantined with its reason and nothing outside the folder is
read."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from roadvision.data.contract import read_info, read_manifest
from roadvision.data.images import decode_mask
from roadvision.data.importers import import_dataset
from roadvision.data.validate import validate_dataset
from roadvision.errors import UserError
from tests._cli import one_line_error, run_main
from tests._fixtures import corrupt_jpeg, jpeg, lane_mask, mask_png, png


def _valid(out):
    report = validate_dataset(out)
    assert report.ok, [str(p) for p in report.problems]
    return read_manifest(out).set_index("id")


def _quarantine(out):
    entries = json.loads((out / "quarantine.json").read_text())["entries"]
    return {e["id"]: e["reason"] for e in entries}


def _write(root, files):
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


@pytest.fixture()
def roadwork_src(tmp_path):
    """Good rows in every label spelling, plus one of each bad row; a secret outside."""
    (tmp_path / "secret.jpg").write_bytes(jpeg(99))
    src = _write(tmp_path / "src", {
        "img/a.jpg": jpeg(1), "img/b.png": png(2), "img/c.jpg": jpeg(3), "img/d.jpg": jpeg(4),
        "img/e.jpg": jpeg(5), "img/broken.jpg": corrupt_jpeg(), "img/oddlabel.jpg": jpeg(6),
        "img/stray.jpg": jpeg(7), "img/badgps.jpg": jpeg(8),
    })
    os.symlink(tmp_path / "secret.jpg", src / "img" / "link.jpg")
    (src / "labels.csv").write_text(
        "File,Label,City,Weather,Time_of_day,gps,camera\n"
        "img/a.jpg,1,pittsburgh,Partly Cloudy,Light,\"[40.44, -79.99]\",iphone\n"
        "img/b.png,no,,,,,\n"
        "img/c.jpg,yes,boston,\"['Cloudy', 'Rainy']\",night,,\n"
        "img/d.jpg,false,,Volcanic ash,,,\n"
        "img/e.jpg,TRUE,,,,,\n"
        "img/missing.jpg,1,,,,,\n"
        "img/broken.jpg,0,,,,,\n"
        "img/oddlabel.jpg,maybe,,,,,\n"
        "img/link.jpg,1,,,,,\n"
        "../secret.jpg,1,,,,,\n"
        "img/badgps.jpg,1,,,,\"[95, 0]\",\n")
    return src


def test_roadwork_folder_round_trip_and_quarantine(roadwork_src, tmp_path):
    out = tmp_path / "out"
    report = import_dataset("folder", roadwork_src, out)
    df = _valid(out)
    assert df["label"].to_dict() == {"img/a": 1, "img/b": 0, "img/c": 1, "img/d": 0, "img/e": 1}
    assert _quarantine(out) == {"img/missing": "missing_file", "img/broken": "corrupt",
                                "img/oddlabel": "bad_label", "img/link": "outside_root",
                                "../secret.jpg": "outside_root", "img/badgps": "bad_gps"}
    a = df.loc["img/a"]
    assert (a["city"], a["weather"], a["daytime"], a["lat"]) == \
        ("pittsburgh", "cloudy", "day", 40.44)
    assert (df.loc["img/c", "weather"], df.loc["img/c", "daytime"]) == ("rainy", "night")
    assert pd.isna(df.loc["img/d", "weather"])
    assert report.unmapped == {"weather": {"Volcanic ash": 1}}
    assert report.info.extra["folder"]["ignored_columns"] == ["camera"]
    assert report.info.extra["folder"]["unlabelled_images"] == 1  # img/stray.jpg
    summary = report.summary()
    assert "imported 5 roadwork samples" in summary and "6 quarantined" in summary
    assert "'Volcanic ash' x1" in summary and "camera" in summary
    # The original bytes were copied, and the secret never was (not even into the quarantine).
    assert (out / df.loc["img/b", "image"]).read_bytes() == png(2)
    secret = jpeg(99)
    assert not any(p.is_file() and p.read_bytes() == secret for p in out.rglob("*"))


def test_lanes_folder_with_parquet_table(tmp_path):
    bad_ids = lane_mask(cls=1)
    bad_ids[0, 0] = 9
    src = _write(tmp_path / "src", {
        "tiles/t1.jpg": jpeg(1), "masks/t1.png": mask_png(lane_mask(cls=2)),
        "tiles/t2.jpg": jpeg(2), "masks/t2.png": mask_png(bad_ids),
        "tiles/t3.jpg": jpeg(3), "masks/t3.png": mask_png(lane_mask(height=12)),
        "tiles/t4.jpg": jpeg(4),
    })
    pd.DataFrame({
        "image": ["tiles/t1.jpg", "tiles/t2.jpg", "tiles/t3.jpg", "tiles/t4.jpg"],
        "mask": ["masks/t1.png", "masks/t2.png", "masks/t3.png", None],
        "id": ["t1", "t2", "t3", "t4"], "lat": [48.1, None, None, None],
        "lon": [11.5, None, None, None], "split": ["train", None, None, None],
    }).to_parquet(src / "labels.parquet")
    report = import_dataset("folder", src, tmp_path / "out")
    df = _valid(tmp_path / "out")
    assert report.info.task == "lanes" and list(df.index) == ["t1"]
    assert _quarantine(tmp_path / "out") == {"t2": "mask_out_of_range", "t3": "size_mismatch",
                                             "t4": "missing_mask"}
    mask = decode_mask((tmp_path / "out" / df.loc["t1", "mask"]).read_bytes(), 4)
    assert np.array_equal(mask, lane_mask(cls=2))
    assert (df.loc["t1", "lat"], df.loc["t1", "split"]) == (48.1, "train")


def test_table_errors_are_one_line(tmp_path, capsys):
    src = _write(tmp_path / "src", {"a.jpg": jpeg(1)})
    with pytest.raises(UserError, match="labels.csv or labels.parquet"):
        import_dataset("folder", src, tmp_path / "out")
    (src / "labels.csv").write_text("picture,label\na.jpg,1\n")
    with pytest.raises(UserError, match="no image file column"):
        import_dataset("folder", src, tmp_path / "out")
    (src / "labels.csv").write_text("file\na.jpg\n")
    with pytest.raises(UserError, match="needs a 'label' column"):
        import_dataset("folder", src, tmp_path / "out")
    (tmp_path / "outside.csv").write_text("file,label\na.jpg,1\n")
    code, _, err = run_main(capsys, "data", "import", "--format", "folder", src,
                            "--out", tmp_path / "out", "--labels", "../outside.csv")
    assert "inside" in one_line_error(code, err)


def test_spreadsheet_exports_semicolons_and_bom(tmp_path):
    src = _write(tmp_path / "src", {"a.jpg": jpeg(1), "b.jpg": jpeg(2)})
    (src / "labels.csv").write_bytes("\ufeffFile;Label;Weather\na.jpg;1;Overcast\nb.jpg;0;\n"
                                     .encode())
    import_dataset("folder", src, tmp_path / "out")
    df = _valid(tmp_path / "out")
    assert df["label"].to_dict() == {"a": 1, "b": 0} and df.loc["a", "weather"] == "cloudy"


def test_a_linked_label_table_is_refused(tmp_path):
    src = _write(tmp_path / "src", {"a.jpg": jpeg(1)})
    (tmp_path / "elsewhere.csv").write_text("file,label\na.jpg,1\n")
    os.symlink(tmp_path / "elsewhere.csv", src / "labels.csv")
    with pytest.raises(UserError, match="symbolic link"):
        import_dataset("folder", src, tmp_path / "out")


def test_cli_folder_import(roadwork_src, tmp_path, capsys):
    code, out, _ = run_main(capsys, "data", "import", "--format", "folder", roadwork_src,
                            "--out", tmp_path / "out")
    assert code == 0 and "imported 5 roadwork samples" in out
    assert read_info(tmp_path / "out").extra["unmapped_tags"] == {"weather": {"Volcanic ash": 1}}
