"""Each importer round-trips a fixture in its real format into a valid data set; bad samples
are quarantined with a reason while every good sample survives."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from roadvision.data.contract import read_info, read_manifest
from roadvision.data.images import decode_mask
from roadvision.data.importers import FORMATS, import_dataset
from roadvision.data.validate import validate_dataset
from roadvision.errors import UserError
from tests._fixtures import (
    corrupt_jpeg,
    jpeg,
    lane_mask,
    png,
    truncated_png,
    write_ael,
    write_coco,
    write_mmseg,
    write_natix,
)


def _assert_valid(out):
    report = validate_dataset(out)
    assert report.ok, [str(p) for p in report.problems]
    return read_manifest(out)


def _quarantine(out):
    entries = json.loads((out / "quarantine.json").read_text())["entries"]
    return {e["id"]: e["reason"] for e in entries}


# -- MMSegmentation -------------------------------------------------------------------------
def test_mmseg_round_trip_keeps_splits_and_quarantines_bad_masks(tmp_path):
    out_of_range = lane_mask(cls=2)
    out_of_range[0, :3] = 7
    with_ignore = lane_mask(cls=3)
    with_ignore[20:, :] = 255
    src = write_mmseg(tmp_path / "src", {
        "train/a": {"image": jpeg(1), "mask": lane_mask(cls=1)},
        "train/b": {"image": jpeg(2), "mask": with_ignore},
        "train/bad": {"image": jpeg(3), "mask": out_of_range},
        "train/nomask": {"image": jpeg(4), "mask": None},
        "val/c": {"image": jpeg(5), "mask": lane_mask(cls=2)},
    })
    report = import_dataset("mmseg", src, tmp_path / "out")
    df = _assert_valid(tmp_path / "out")
    assert dict(zip(df["id"], df["split"], strict=True)) == {"train/a": "train", "train/b": "train",
                                                             "val/c": "val"}
    assert _quarantine(tmp_path / "out") == {"train/bad": "mask_out_of_range",
                                             "train/nomask": "missing_mask"}
    assert report.imported == 3 and len(report.quarantined) == 2
    assert (tmp_path / "out" / "quarantine" / "ann_dir/train/bad.png").is_file()
    row = df.set_index("id").loc["train/b"]
    mask = decode_mask((tmp_path / "out" / row["mask"]).read_bytes(), 4)
    assert mask[20:].max() == 0 and mask[10, 0] == 3  # 255 (ignore) -> background
    assert read_info(tmp_path / "out").extra["mmseg"]["ignore_pixels_to_background"] == 4 * 32


def test_mmseg_reduce_zero_label(tmp_path):
    raw = lane_mask(cls=2)  # 0 = ignore, 2 -> class 1 after reduction
    raw[0, :] = 1  # 1 -> background 0
    src = write_mmseg(tmp_path / "src", {"train/a": {"image": jpeg(1), "mask": raw}})
    import_dataset("mmseg", src, tmp_path / "out", reduce_zero_label=True)
    df = _assert_valid(tmp_path / "out")
    mask = decode_mask((tmp_path / "out" / df["mask"][0]).read_bytes(), 4)
    assert set(np.unique(mask)) == {0, 1} and mask[10, 0] == 1 and mask[0, 0] == 0


# -- NATIX / ROADWork parquet ---------------------------------------------------------------
def _natix_records():
    return [
        {"id": "n1", "image": jpeg(1), "label": 1, "gps": "[40.44, -79.99]", "width": 32,
         "height": 24, "city_name": "Pittsburgh", "scene_description": "cones on the right",
         "scene_level_tags.weather": "['Cloudy']", "scene_level_tags.daytime": "['Light']",
         "scene_level_tags.scene_environment": "['Urban']",
         "scene_level_tags.travel_alteration": "['Lane Closure']"},
        {"id": "n2", "image": png(2), "label": 0, "gps": None, "width": 32, "height": 24,
         "city_name": None, "scene_description": None, "scene_level_tags.weather": "[]",
         "scene_level_tags.daytime": "[]", "scene_level_tags.scene_environment": "[]",
         "scene_level_tags.travel_alteration": "[]"},
        {"id": "n3", "image": corrupt_jpeg(), "label": 1, "gps": None},
        {"id": "n4", "image": jpeg(4), "label": 1, "gps": "[95.0, 10.0]"},
        {"id": "n5", "image": jpeg(5), "label": 2, "gps": None},
        {"id": "n6", "image": jpeg(6), "label": 0, "gps": "[40.45, -79.98]",
         "scene_level_tags.weather": "['Volcanic ash']"},
    ]


def test_natix_round_trip_and_quarantine(tmp_path):
    src = write_natix(tmp_path / "natix" / "train-00000.parquet", _natix_records())
    report = import_dataset("natix", src.parent, tmp_path / "out")
    df = _assert_valid(tmp_path / "out").set_index("id")
    assert sorted(df.index) == ["n1", "n2", "n6"]
    assert _quarantine(tmp_path / "out") == {"n3": "corrupt", "n4": "bad_gps", "n5": "bad_label"}
    n1 = df.loc["n1"]
    assert (n1["lat"], n1["lon"], n1["city"]) == (40.44, -79.99, "Pittsburgh")
    assert (n1["weather"], n1["daytime"], n1["scene"]) == ("cloudy", "day", "urban")
    assert n1["text"] == "cones on the right" and n1["label"] == 1
    n2 = df.loc["n2"]
    assert pd.isna(n2["lat"]) and pd.isna(n2["weather"]) and pd.isna(n2["city"])
    assert pd.isna(df.loc["n6", "weather"])  # unknown tag -> NULL, with a warning
    assert any("weather" in w for w in report.warnings)
    assert "out of range" in str(next(e for e in report.quarantined if e.id == "n4"))


def test_natix_roadwork_copy_plain_strings_int_ids_raw_bytes_and_nested_tags(tmp_path):
    records = [{"id": 7, "image": jpeg(1), "label": 1, "gps": "[40.0, -80.0]",
                "scene_level_tags.daytime": "Light", "scene_level_tags.scene_environment":
                "Highway", "scene_level_tags.weather": "Sunny"}]
    src = write_natix(tmp_path / "a.parquet", records, image_as_dict=False, nested_tags=True)
    import_dataset("natix", src, tmp_path / "out")
    row = _assert_valid(tmp_path / "out").iloc[0]
    assert (row["id"], row["daytime"], row["scene"], row["weather"]) == \
        ("7", "day", "highway", "clear")


def test_natix_tag_vocabulary_maps_completely_and_lists_what_it_cannot(tmp_path):
    tags = [  # (weather, daytime, scene_environment) as the NATIX and ROADWork copies spell them
        ("['Partly Cloudy']", "['Light']", "['Suburban']"),
        ("['Overcast']", "Dark", "Highway"),
        ("['Cloudy', 'Rainy']", "['Twilight']", "['Rural']"),
        ("['Snow']", "Dawn", "['Urban']"),
        ("['Fog']", "['Night']", "['Industrial']"),
        ("['Sunny', 'Volcanic ash']", "['Light']", "['Moon base']"),
        ("['Volcanic ash']", "[]", "['Moon base']"),
    ]
    records = [{"id": f"t{i}", "image": jpeg(i), "label": i % 2, "gps": None,
                "scene_level_tags.weather": w, "scene_level_tags.daytime": d,
                "scene_level_tags.scene_environment": s} for i, (w, d, s) in enumerate(tags)]
    src = write_natix(tmp_path / "tags.parquet", records)
    report = import_dataset("natix", src, tmp_path / "out")
    df = _assert_valid(tmp_path / "out").set_index("id")
    got = [tuple(None if pd.isna(v) else v for v in df.loc[f"t{i}", ["weather", "daytime",
                                                                     "scene"]])
           for i in range(len(tags))]
    assert got == [("cloudy", "day", "residential"), ("cloudy", "night", "highway"),
                   ("rainy", "dusk", "rural"), ("snowy", "dusk", "urban"),
                   ("foggy", "night", "industrial"), ("clear", "day", None), (None, None, None)]
    assert report.unmapped == {"weather": {"Volcanic ash": 2}, "scene": {"Moon base": 2}}
    assert read_info(tmp_path / "out").extra["unmapped_tags"] == report.unmapped
    assert "unmapped weather values (no contract value): 'Volcanic ash' x2" in report.summary()
    # A row loses a field only when nothing in the cell maps; it is never lost itself.
    assert any(w.startswith("weather set to NULL (unmapped value): 1") for w in report.warnings)


# -- ROADWork COCO ---------------------------------------------------------------------------
def test_roadwork_coco_labels_from_workzone_objects(tmp_path):
    images = [{"id": 1, "file_name": "a.jpg", "bytes": jpeg(1)},
              {"id": 2, "file_name": "b.jpg", "bytes": jpeg(2)},
              {"id": 3, "file_name": "c.jpg", "bytes": jpeg(3), "city": "boston"},
              {"id": 4, "file_name": "gone.jpg", "bytes": None},
              {"id": 5, "file_name": "t.png", "bytes": truncated_png()}]
    path = write_coco(tmp_path / "coco", images,
                      [(1, "Cone"), (1, "Arrow Board"), (2, "car"), (4, "Drum"), (5, "Worker")])
    report = import_dataset("roadwork-coco", path, tmp_path / "out")
    df = _assert_valid(tmp_path / "out").set_index("id")
    assert df["label"].to_dict() == {"a": 1, "b": 0, "c": 0}
    assert df.loc["c", "city"] == "boston"
    assert _quarantine(tmp_path / "out") == {"gone": "missing_file", "t": "truncated"}
    extra = report.info.extra["roadwork_coco"]
    assert extra["ignored_categories"] == {"car": 1}
    assert extra["positive_objects"]["arrow_board"] == 1


# -- AEL polylines ---------------------------------------------------------------------------
def test_ael_rasterises_at_the_given_line_width(tmp_path):
    src = tmp_path / "ael"
    write_ael(src, "t1", jpeg(1), [{"class": "white_dashed", "points": [[2, 10], [29, 10]]},
                                   {"class": "yellow_solid", "points": [[5, 0], [5, 23]]}],
              lat=48.1, lon=11.5, city="munich")
    write_ael(src, "t2", jpeg(2), [{"class": "solid_white", "points": [[0, 5.5], [31, 5.5]]}])
    write_ael(src, "t3", jpeg(3), [{"class": "zebra", "points": [[0, 1], [3, 4]]}])
    write_ael(src, "t4", jpeg(4), [{"class": "white_solid", "points": [[0, 1]]}])
    masks = {}
    for width in (1, 2, 3):
        out = tmp_path / f"out{width}"
        report = import_dataset("ael", src, out, line_width=width)
        df = _assert_valid(out).set_index("id")
        assert sorted(df.index) == ["t1", "t2"]
        assert _quarantine(out) == {"t3": "bad_annotation", "t4": "bad_annotation"}
        assert report.info.extra["ael"]["line_width_px"] == width
        assert df.loc["t1", "city"] == "munich" and df.loc["t1", "lat"] == 48.1
        masks[width] = {i: decode_mask((out / df.loc[i, "mask"]).read_bytes(), 4)
                        for i in ("t1", "t2")}
    # Horizontal line at y=10 (integer): odd widths are exact.
    assert np.flatnonzero(masks[1]["t1"][:, 15] == 2).tolist() == [10]
    assert np.flatnonzero(masks[3]["t1"][:, 15] == 2).tolist() == [9, 10, 11]
    # Vertical yellow line at x=5, drawn later, wins where the lines cross.
    assert np.flatnonzero(masks[3]["t1"][15] == 3).tolist() == [4, 5, 6]
    assert masks[1]["t1"][10, 5] == 3
    # Line at y=5.5 (half-integer): even width 2 covers exactly rows 5 and 6.
    assert np.flatnonzero(masks[2]["t2"][:, 15] == 1).tolist() == [5, 6]


def test_ael_mean_width_equals_line_width():
    from roadvision.data.importers.ael import rasterise

    classes = ["background", "white_solid", "white_dashed", "yellow_solid"]
    for width in (1.0, 2.0, 3.0, 1.5):
        covered = []
        for offset in np.linspace(0, 1, 16, endpoint=False):  # sub-pixel positions
            lanes = [{"class": "white_solid", "points": [[0, 20 + offset], [99, 30 + offset]]}]
            mask = rasterise(lanes, (60, 100), classes, width)
            covered.append((mask[:, 10:90] == 1).sum() / 80)  # pixels per column
        slope = np.hypot(99, 10) / 99  # a slanted line covers width / cos(angle) per column
        assert abs(np.mean(covered) - width * slope) < 0.1, (width, np.mean(covered))


# -- errors ----------------------------------------------------------------------------------
def test_unknown_format_lists_the_valid_ones(tmp_path):
    with pytest.raises(UserError) as info:
        import_dataset("kitti", tmp_path, tmp_path / "out")
    assert "kitti" in str(info.value)
    for name in ("mmseg", "natix", "roadwork-coco", "ael"):
        assert name in str(info.value) and name in FORMATS


@pytest.mark.parametrize("fmt", ["mmseg", "natix", "roadwork-coco", "ael"])
def test_empty_or_missing_source(tmp_path, fmt):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="empty"):
        import_dataset(fmt, tmp_path / "empty", tmp_path / "out")
    with pytest.raises(UserError, match="no such"):
        import_dataset(fmt, tmp_path / "missing", tmp_path / "out")


def test_nothing_usable_is_an_error_but_the_quarantine_is_written(tmp_path):
    src = write_natix(tmp_path / "bad.parquet", [{"id": "x", "image": corrupt_jpeg(), "label": 1}])
    with pytest.raises(UserError, match="no usable samples.*corrupt"):
        import_dataset("natix", src, tmp_path / "out")
    assert _quarantine(tmp_path / "out") == {"x": "corrupt"}


def test_reimport_is_idempotent(tmp_path):
    src = write_natix(tmp_path / "n.parquet", _natix_records()[:2])
    first = import_dataset("natix", src, tmp_path / "out").info.content_hash
    before = (tmp_path / "out" / "dataset.json").read_bytes()
    assert import_dataset("natix", src, tmp_path / "out").info.content_hash == first
    assert (tmp_path / "out" / "dataset.json").read_bytes() == before
