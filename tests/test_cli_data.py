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
from roadvision.data.validate import validate_dataset
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


# -- no data loss: a non-empty --out is refused unless it is the command's own earlier output --
def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_synth_over_an_existing_data_set_refuses_and_keeps_it(tmp_path, capsys):
    make_dataset(tmp_path / "ds", n=5)
    before = _snapshot(tmp_path / "ds")
    code, _, err = run_main(capsys, "data", "synth", "--task", "roadwork", "--n", "2",
                            "--size", "tiny", "--out", tmp_path / "ds")
    line = one_line_error(code, err)
    assert code == 2 and "--overwrite" in line and "not empty" in line
    assert _snapshot(tmp_path / "ds") == before  # not one byte changed

    # an earlier synth with other options is not "its own output" either
    args = ("data", "synth", "--task", "roadwork", "--size", "tiny", "--out", tmp_path / "s")
    assert run_main(capsys, *args, "--n", "4")[0] == 0
    synth_before = _snapshot(tmp_path / "s")
    code, _, err = run_main(capsys, *args, "--n", "2", "--seed", "3")
    assert "other inputs" in one_line_error(code, err)
    assert _snapshot(tmp_path / "s") == synth_before
    assert run_main(capsys, *args, "--n", "4")[0] == 0  # the same command again: a retry
    assert _snapshot(tmp_path / "s") == synth_before


def test_synth_overwrite_replaces_the_data_set_wholly(tmp_path, capsys):
    make_dataset(tmp_path / "ds", n=5)
    code, _, err = run_main(capsys, "data", "synth", "--task", "roadwork", "--n", "2",
                            "--size", "tiny", "--out", tmp_path / "ds", "--overwrite")
    assert code == 0, err
    images = sorted(p.name for p in (tmp_path / "ds" / "images").iterdir())
    assert images == sorted(Path(p).name for p in read_manifest(tmp_path / "ds")["image"])
    assert len(images) == 2  # no stale image of the old data set is left behind
    code, out, _ = run_main(capsys, "data", "validate", tmp_path / "ds")
    assert code == 0 and "no problems" in out
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ds.")]  # no temp left


def test_a_write_that_fails_midway_leaves_the_old_data_whole(tmp_path, monkeypatch):
    import roadvision.data.synth as synth

    synth.generate("roadwork", 3, 0, tmp_path / "ds", size="tiny")
    before = _snapshot(tmp_path / "ds")
    real = synth.write_dataset

    def crash(out, df, info):
        real(out, df, info)  # the new manifest is complete in the temporary folder...
        raise OSError("disk full")  # ...and then the writer dies

    monkeypatch.setattr(synth, "write_dataset", crash)
    with pytest.raises(OSError, match="disk full"):
        synth.generate("roadwork", 6, 1, tmp_path / "ds", size="tiny", overwrite=True)
    assert _snapshot(tmp_path / "ds") == before
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]  # the temporary folder is gone


def test_a_killed_synth_leaves_the_old_data_whole(tmp_path):
    import signal
    import time

    make_dataset(tmp_path / "ds", n=4)
    before = _snapshot(tmp_path / "ds")
    proc = subprocess.Popen(
        [sys.executable, "-m", "roadvision.cli", "data", "synth", "--task", "roadwork",
         "--n", "5000", "--size", "tiny", "--out", str(tmp_path / "ds"), "--overwrite"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**__import__("os").environ, "ROADVISION_QUIET": "1"})
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # kill it once it is writing images
            temps = [p for p in tmp_path.iterdir() if p.name.startswith(".ds.tmp-")]
            if temps and len(list((temps[0] / "images").glob("*.jpg"))) >= 20:
                break
            time.sleep(0.05)
        else:
            pytest.fail("synth never started writing")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert _snapshot(tmp_path / "ds") == before
    assert validate_dataset(tmp_path / "ds").ok


@pytest.mark.parametrize("command", ["ingest", "import", "split", "weights"])
def test_data_commands_refuse_a_foreign_output_folder(tmp_path, capsys, command):
    make_dataset(tmp_path / "ds", n=6, size=(8, 8))
    src = tmp_path / "ds"
    out = tmp_path / "notes"
    out.mkdir()
    (out / "thesis.txt").write_text("three years of work")
    natix = write_natix(tmp_path / "n.parquet", [{"id": "a", "image": jpeg(1), "label": 1}])
    args = {"ingest": ("data", "ingest", src), "import": ("data", "import", "--format", "natix",
                                                         natix),
            "split": ("data", "split", src), "weights": ("data", "weights", src, "--targets",
                                                         "40,-80")}[command]
    code, _, err = run_main(capsys, *args, "--out", out)
    assert "thesis.txt" in one_line_error(code, err) and code == 2
    assert [p.name for p in out.iterdir()] == ["thesis.txt"]
    code, _, err = run_main(capsys, *args, "--out", out)  # still refused the second time
    assert code == 2
    assert run_main(capsys, *args, "--out", tmp_path / "fresh")[0] == 0
    assert run_main(capsys, *args, "--out", tmp_path / "fresh")[0] == 0  # a re-run: fine
    code, _, err = run_main(capsys, *args, "--out", out, "--overwrite")
    assert code == 0, err
    assert not (out / "thesis.txt").exists() and validate_dataset(out).ok


# -- one readable line where a traceback was -------------------------------------------------
@pytest.mark.parametrize(("rows", "needle"), [
    ([{}, {}, {"lat": float("inf")}], "row 2 (id 's002'), column 'lat': inf"),
    ([{}, {"lon": float("-inf")}], "row 1 (id 's001'), column 'lon': -inf"),
    ([{}, {}, {}, {"label": "yes"}], "row 3 (id 's003'), column 'label': 'yes'"),
])
def test_split_of_a_bad_manifest_is_one_line(tmp_path, capsys, rows, needle):
    from roadvision.data.contract import DatasetInfo, classes_for

    make_dataset(tmp_path / "ds", n=5, size=(8, 8))
    df = read_manifest(tmp_path / "ds")
    df["label"] = df["label"].astype(str)  # a string column, as CSV-made manifests have
    for i, row in enumerate(rows):
        for key, value in row.items():
            df.loc[i, key] = value
    df.to_parquet(tmp_path / "ds" / "manifest.parquet")  # as a hand edit would leave it
    (tmp_path / "ds" / "dataset.json").write_text(
        DatasetInfo(task="roadwork", classes=classes_for("roadwork")).to_json())
    code, _, err = run_main(capsys, "data", "split", tmp_path / "ds", "--out", tmp_path / "o")
    line = one_line_error(code, err)
    assert code == 2 and needle in line and "manifest.parquet" in line
    assert not (tmp_path / "o").exists()
