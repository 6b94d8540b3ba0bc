"""The ``roadvision data`` commands on bad input: non-zero exit, one readable line on stderr,
no traceback; and quarantining commands lose nothing good.

Four cases run the real command in a subprocess (``python -m roadvision.cli``) so that the
exit code and stderr are exactly what a user sees; the rest call ``main()`` in-process
(same code path, minus a ~2 s interpreter start each).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from roadvision.data.contract import read_manifest
from tests._cli import one_line_error, run_main
from tests._fixtures import (
    corrupt_jpeg,
    jpeg,
    lane_mask,
    make_dataset,
    mask_png,
    truncated_png,
    write_natix,
)

REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "roadvision.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=REPO, timeout=120,
                          env={**__import__("os").environ, "ROADVISION_QUIET": "1",
                               "COLUMNS": "200"})




@pytest.fixture()
def bad_lanes(tmp_path):
    """A lanes data set with one of each must-show problem (rows 1-5) among good rows."""
    oob = lane_mask()
    oob[0, 0] = 9
    make_dataset(tmp_path / "bad", "lanes", n=8, rows=[
        {},
        {"image_bytes": corrupt_jpeg(), "width": 64, "height": 64},
        {"image_bytes": truncated_png(), "width": 64, "height": 64},
        {"mask_bytes": mask_png(oob)},
        {},
        {"lat": 95.0},
    ])
    (tmp_path / "bad" / "images" / "s004.jpg").unlink()
    return tmp_path / "bad"


def test_unknown_format(tmp_path):
    result = _cli("data", "import", "--format", "kitti", tmp_path, "--out", tmp_path / "o")
    line = one_line_error(result.returncode, result.stderr)
    assert "unknown --format 'kitti'" in line and "mmseg, natix, roadwork-coco" in line


def test_empty_folder(tmp_path):
    result = _cli("data", "validate", tmp_path)
    line = one_line_error(result.returncode, result.stderr)
    assert "is empty" in line and "manifest.parquet" in line


def test_validate_names_every_problem_by_row_and_column(bad_lanes):
    result = _cli("data", "validate", bad_lanes)
    line = one_line_error(result.returncode, result.stderr)
    assert "5 problem(s)" in line
    out = result.stdout
    assert "row 1 (id 's001'), column 'image'" in out and "corrupt" in out
    assert "row 2 (id 's002'), column 'image'" in out and "truncated" in out
    assert "row 3 (id 's003'), column 'mask'" in out and "mask_out_of_range" in out
    assert "row 4 (id 's004'), column 'image': file images/s004.jpg does not exist" in out
    assert "row 5 (id 's005'), column 'lat': 95.0 out of range -90..90" in out
    assert "s000" not in out and "s006" not in out  # good rows are not reported


def test_ingest_quarantines_each_bad_row_and_keeps_every_good_one(bad_lanes, tmp_path):
    result = _cli("data", "ingest", bad_lanes, "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "ingested 3 of 8 rows" in result.stdout
    reasons = {e["id"]: e["reason"] for e in
               json.loads((tmp_path / "out" / "quarantine.json").read_text())["entries"]}
    assert reasons == {"s001": "corrupt", "s002": "truncated", "s003": "mask_out_of_range",
                       "s004": "missing_file", "s005": "bad_gps"}
    assert read_manifest(tmp_path / "out")["id"].tolist() == ["s000", "s006", "s007"]


def test_import_round_trip_then_validate(tmp_path, capsys):
    src = write_natix(tmp_path / "n.parquet", [
        {"id": "a", "image": jpeg(1), "label": 1, "gps": "[40.44, -79.99]"},
        {"id": "b", "image": corrupt_jpeg(), "label": 0, "gps": None}])
    code, out, err = run_main(capsys, "data", "import", "--format", "natix", src, "--out",
                          tmp_path / "o")
    assert code == 0, err
    assert "imported 1 roadwork samples" in out and "corrupt" in out
    code, out, err = run_main(capsys, "data", "validate", tmp_path / "o")
    assert code == 0 and "no problems" in out


@pytest.mark.parametrize("args, needle", [
    (("data", "ingest", "{tmp}/missing", "--out", "{tmp}/o"), "no such folder"),
    (("data", "import", "--format", "mmseg", "{tmp}/missing", "--out", "{tmp}/o"), "no such"),
    (("data", "weights", "{ds}", "--targets", "40.4,-79.9;95,1", "--out", "{tmp}/o"),
     "entry 2: '95,1': latitude 95.0 out of range"),
    (("data", "split", "{ds}", "--out", "{tmp}/o", "--holdout-cities", "atlantis"),
     "atlantis not in the data set"),
    (("data", "import", "--format", "ael", "{tmp}", "--out", "{tmp}/o", "--line-width", "0"),
     "--line-width 0.0"),
])
def test_bad_arguments_give_one_line(tmp_path, capsys, args, needle):
    make_dataset(tmp_path / "ds", n=3, size=(8, 8))
    filled = [a.format(tmp=tmp_path, ds=tmp_path / "ds") for a in args]
    code, _, err = run_main(capsys, *filled)
    assert needle in one_line_error(code, err)


def test_split_and_weights_commands(tmp_path, capsys):
    make_dataset(tmp_path / "ds", n=12, size=(8, 8))
    code, out, err = run_main(capsys, "data", "split", tmp_path / "ds", "--out", tmp_path / "s")
    assert code == 0, err
    code, out, err = run_main(capsys, "data", "weights", tmp_path / "s", "--targets",
                          "40.0,-80.0", "--out", tmp_path / "w")
    assert code == 0, err
    df = read_manifest(tmp_path / "w")
    assert df["split"].notna().all() and df["weight"].notna().all()
