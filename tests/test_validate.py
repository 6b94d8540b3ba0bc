"""validate_dataset: every problem named by row and column, and nothing else reported."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from roadvision.data.contract import MANIFEST, DatasetInfo, write_dataset
from roadvision.data.validate import validate_dataset
from roadvision.errors import UserError
from tests._fixtures import corrupt_jpeg, jpeg, lane_mask, make_dataset, mask_png, sha


@pytest.mark.parametrize("task", ["roadwork", "lanes"])
def test_valid_dataset_passes(tmp_path, task):
    make_dataset(tmp_path, task, n=4)
    report = validate_dataset(tmp_path)
    assert report.ok, [str(p) for p in report.problems]
    assert report.num_rows == 4


def _only(report):
    assert not report.ok
    assert len(report.problems) == 1, [str(p) for p in report.problems]
    return report.problems[0]


def test_gps_out_of_range_names_row_and_column(tmp_path):
    make_dataset(tmp_path, n=4, rows=[{}, {}, {"lat": 95.0}])
    problem = _only(validate_dataset(tmp_path))
    assert (problem.row, problem.column) == (2, "lat")
    assert str(problem) == "row 2 (id 's002'), column 'lat': 95.0 out of range -90..90"


def test_half_a_coordinate_is_a_problem(tmp_path):
    make_dataset(tmp_path, n=3, rows=[{}, {"lon": None}])
    problem = _only(validate_dataset(tmp_path))
    assert (problem.row, problem.column) == (1, "lon") and "both or neither" in problem.message


def test_missing_file(tmp_path):
    make_dataset(tmp_path, n=4)
    (tmp_path / "images" / "s001.jpg").unlink()
    problem = _only(validate_dataset(tmp_path))
    assert (problem.row, problem.column) == (1, "image")
    assert "images/s001.jpg does not exist" in str(problem)


def test_corrupt_image_and_wrong_sha(tmp_path):
    bad = corrupt_jpeg()
    make_dataset(tmp_path, n=3, rows=[{}, {"image_bytes": bad, "width": 64, "height": 64}])
    problem = _only(validate_dataset(tmp_path))
    assert (problem.row, problem.column) == (1, "image") and "corrupt" in str(problem)
    (tmp_path / "images" / "s002.jpg").write_bytes(jpeg(seed=99))
    problems = validate_dataset(tmp_path).problems
    assert any(p.row == 2 and p.column == "sha256" for p in problems)


def test_size_mismatch(tmp_path):
    make_dataset(tmp_path, n=2, rows=[{"width": 33}])
    problem = _only(validate_dataset(tmp_path))
    assert (problem.row, problem.column) == (0, "width") and "32" in problem.message


def test_mask_out_of_range_and_wrong_size(tmp_path):
    bad = lane_mask(cls=1)
    bad[0, 0] = 9
    make_dataset(tmp_path, "lanes", n=3, rows=[{}, {"mask_bytes": mask_png(bad)},
                                              {"mask_bytes": mask_png(np.zeros((5, 5)))}])
    problems = validate_dataset(tmp_path).problems
    assert [(p.row, p.column) for p in problems] == [(1, "mask"), (2, "mask")]
    assert "mask_out_of_range" in str(problems[0]) and "9" in str(problems[0])
    assert "5x5" in str(problems[1])


def test_row_value_problems(tmp_path):
    make_dataset(tmp_path, n=6, rows=[{"label": 3}, {"weather": "sunny-ish"},
                                      {"id": "s000"}, {"split": "holdout"}, {"weight": -1.0},
                                      {"label": None}])
    found = {(p.row, p.column) for p in validate_dataset(tmp_path).problems}
    assert found == {(0, "label"), (1, "weather"), (2, "id"), (3, "split"), (4, "weight"),
                     (5, "label")}


def test_wrong_dtype_names_the_row(tmp_path):
    df = make_dataset(tmp_path, n=3)
    df["lat"] = ["40.0", "north", "40.02"]  # stored as strings, one not a number
    df.to_parquet(tmp_path / MANIFEST, index=False)
    problems = validate_dataset(tmp_path).problems
    assert any(p.row == 1 and p.column == "lat" and "'north'" in p.message for p in problems)


def test_hand_edited_manifest_breaks_the_content_hash(tmp_path):
    make_dataset(tmp_path, n=3)
    df = pd.read_parquet(tmp_path / MANIFEST)
    df["text"] = "edited"
    df.to_parquet(tmp_path / MANIFEST, index=False)
    problem = _only(validate_dataset(tmp_path))
    assert problem.row is None and "content_hash" in problem.message


def test_missing_column_and_bad_info(tmp_path):
    make_dataset(tmp_path, n=2)
    df = pd.read_parquet(tmp_path / MANIFEST).drop(columns=["sha256"])
    df.to_parquet(tmp_path / MANIFEST, index=False)
    (tmp_path / "dataset.json").write_text("{not json")
    messages = [str(p) for p in validate_dataset(tmp_path).problems]
    assert any("not valid JSON" in m for m in messages)
    assert any("column 'sha256': required column is missing" in m for m in messages)


def test_empty_folder_and_empty_manifest(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    problem = _only(validate_dataset(empty))
    assert "is empty" in problem.message and "manifest.parquet" in problem.message
    write_dataset(tmp_path / "none", pd.DataFrame({"id": []}),
                  DatasetInfo(task="roadwork", classes=["no_roadwork", "roadwork"]))
    assert "has no rows" in _only(validate_dataset(tmp_path / "none")).message


def test_missing_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such folder"):
        validate_dataset(tmp_path / "nope")


def test_check_files_false_skips_decoding(tmp_path):
    make_dataset(tmp_path, n=2)
    (tmp_path / "images" / "s000.jpg").write_bytes(b"garbage")
    assert validate_dataset(tmp_path, check_files=False).ok
    assert not validate_dataset(tmp_path).ok


def test_path_escaping_the_folder_is_refused(tmp_path):
    data = jpeg()
    make_dataset(tmp_path, n=2, rows=[{"image": "../outside.jpg", "sha256": sha(data)}])
    problem = _only(validate_dataset(tmp_path))
    assert problem.column == "image" and ".." in problem.message
    assert json.loads((tmp_path / "dataset.json").read_text())["num_samples"] == 2
