"""``roadvision train | calibrate | evaluate | analyze | distill`` on tiny data (the tiny
training profile): each writes what it says, and bad input gets one readable line, never a
traceback."""

from __future__ import annotations

import json

import pytest

from roadvision.models.bundle import load_bundle
from tests._cli import one_line_error, run_main
from tests._training import make_lanes, make_roadwork


@pytest.fixture(scope="module")
def roadwork_data(tmp_path_factory):
    return make_roadwork(tmp_path_factory.mktemp("rw") / "data", n=32)


def test_train_evaluate_analyze_distill_roadwork(roadwork_data, tmp_path, capsys):
    run = tmp_path / "run"
    code, out, err = run_main(capsys, "train", roadwork_data, run, "--training-profile", "tiny",
                              "--set", "augment=none", "--set", 'model_overrides={"dropout": 0}')
    assert code == 0, err
    bundle = run / "bundle"
    assert f"bundle: {bundle}" in out and "calibrated on val" in out
    model = load_bundle(bundle)
    assert model.cfg.dropout == 0  # --set merged into the model preset's config
    saved = json.loads((run / "train_config.json").read_text())
    assert saved["augment"] == "none" and saved["epochs"] == 2  # the tiny training profile's epochs
    assert "calibration" in json.loads((bundle / "config.json").read_text())["extra"]

    code, out, err = run_main(capsys, "evaluate", bundle, roadwork_data, "--json")
    assert code == 0, err
    metrics = json.loads(out)
    assert {"mcc", "accuracy", "auroc", "ece"} <= set(metrics)
    assert -1.0 <= metrics["mcc"] <= 1.0

    report_dir = tmp_path / "report"
    code, out, err = run_main(capsys, "analyze", bundle, roadwork_data, "--out", report_dir)
    assert code == 0, err
    assert (report_dir / "error_analysis.html").is_file()
    assert (report_dir / "failures.csv").is_file()
    assert "failures listed" in out

    student = tmp_path / "student"
    code, out, err = run_main(capsys, "distill", roadwork_data, student, "--teacher", bundle,
                              "--training-profile", "tiny", "--model-preset", "roadwork_tiny",
                              "--set", 'model_overrides={"embed_dim": 16, "num_heads": 2}')
    assert code == 0, err
    student_model = load_bundle(student / "bundle")
    assert student_model.cfg.embed_dim == 16
    extra = json.loads((student / "bundle" / "config.json").read_text())["extra"]
    assert extra["distillation"]["teachers"] == ["bundle"]


def test_train_and_evaluate_lanes_with_tta(tmp_path, capsys):
    data = make_lanes(tmp_path / "lanes", n=10)
    code, out, err = run_main(capsys, "train", data, tmp_path / "run", "--training-profile",
                              "tiny", "--epochs", "1", "--no-calibrate")
    assert code == 0, err
    assert "calibrated" not in out
    code, out, err = run_main(capsys, "evaluate", tmp_path / "run" / "bundle", data, "--tta",
                              "flip", "--out", tmp_path / "eval")
    assert code == 0, err
    assert "mIoU without background" in out and "per_class_iou" in out
    assert (tmp_path / "eval" / "predictions.parquet").is_file()


@pytest.mark.parametrize(("args", "needle"), [
    (["--set", "colour=red"], "--set colour: unknown training option"),
    (["--set", "epochs"], "expected KEY=VALUE"),
    (["--set", "epochs=many"], "--set:"),
    (["--training-profile", "huge"], "'huge' is not one of 'tiny', 'bench', 'demo', 'full'"),
])
def test_train_bad_options_give_one_line(roadwork_data, tmp_path, capsys, args, needle):
    code, _, err = run_main(capsys, "train", roadwork_data, tmp_path / "run", *args)
    assert needle in one_line_error(code, err)
    assert not (tmp_path / "run").exists()  # nothing started


def test_commands_name_a_missing_bundle_or_data_set(roadwork_data, tmp_path, capsys):
    code, _, err = run_main(capsys, "evaluate", tmp_path, roadwork_data)
    assert "is not a model bundle" in one_line_error(code, err)
    code, _, err = run_main(capsys, "train", tmp_path / "nope", tmp_path / "run")
    assert "data set" in one_line_error(code, err) and "nope" in err
    code, _, err = run_main(capsys, "distill", roadwork_data, tmp_path / "s", "--teacher",
                            tmp_path / "missing")
    assert "missing is not a directory" in one_line_error(code, err)
    code, _, err = run_main(capsys, "calibrate", tmp_path, roadwork_data)
    assert "is not a model bundle" in one_line_error(code, err)


def test_train_and_reports_refuse_a_foreign_folder(roadwork_data, tmp_path, capsys):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "thesis.txt").write_text("three years of work")
    code, _, err = run_main(capsys, "train", roadwork_data, notes, "--training-profile", "tiny")
    line = one_line_error(code, err)
    assert code == 2 and "holds no earlier run" in line and "--overwrite" in line
    for command in ("evaluate", "analyze"):
        code, _, err = run_main(capsys, command, tmp_path / "any-bundle", roadwork_data,
                                "--out", notes)
        assert "thesis.txt" in one_line_error(code, err)
    assert [p.name for p in notes.iterdir()] == ["thesis.txt"]


def test_train_overwrite_trains_aside_and_swaps_in(roadwork_data, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "stale.txt").write_text("old")
    code, out, err = run_main(capsys, "train", roadwork_data, run, "--training-profile", "tiny",
                              "--epochs", "1", "--no-calibrate", "--overwrite")
    assert code == 0, err
    assert f"bundle: {run / 'bundle'}" in out
    assert not (run / "stale.txt").exists() and (run / "bundle" / "config.json").is_file()
    load_bundle(run / "bundle")


def test_calibrate_lanes_prints_the_class_biases_and_the_iou_they_bought(tmp_path, capsys):
    data = make_lanes(tmp_path / "lanes", n=80, size=32)  # >= 40 in train
    run = tmp_path / "run"
    code, _, err = run_main(capsys, "train", data, run, "--training-profile", "tiny",
                            "--epochs", "1", "--no-calibrate")
    assert code == 0, err
    code, out, err = run_main(capsys, "calibrate", run / "bundle", data, "--split", "train")
    assert code == 0, err
    line = " ".join(out.split())  # rich wraps long lines
    assert "calibrated on train" in line and "lane class biases" in line
    assert "lane IoU on those pixels" in line and "->" in line
    saved = json.loads((run / "bundle" / "config.json").read_text())
    bias = saved["model_config"].get("class_bias")
    shown = line.split("lane class biases (iou) ")[1]
    # the line names the biases stored in the bundle, or says that none was kept
    assert (shown.startswith("none") if not any(bias or []) else
            shown.startswith(", ".join(f"{b:+.2f}" for b in bias[1:])))

    code, out, err = run_main(capsys, "calibrate", run / "bundle", data, "--split", "train",
                              "--bias-objective", "lines")
    assert code == 0, err
    assert "lane class biases (lines)" in " ".join(out.split()) and "line F1" in out
    report = json.loads((run / "bundle" / "config.json").read_text())["extra"]["calibration"]
    assert report["bias_objective"] == "lines" and report["line_tolerance_m"] == 0.5
    assert len(report["line_f1_before"]) == len(report["line_f1_after"]) == 3
    assert report["class_bias"] == json.loads(
        (run / "bundle" / "config.json").read_text())["model_config"]["class_bias"]


def test_train_calibrates_lanes_for_lines_when_the_config_says_so(tmp_path, capsys):
    data = make_lanes(tmp_path / "lanes", n=200, size=32)  # 40 val images: enough to fit
    run = tmp_path / "run"
    code, out, err = run_main(capsys, "train", data, run, "--training-profile", "tiny",
                              "--epochs", "1", "--set", "lane_bias_objective=lines")
    assert code == 0, err
    assert "lane class biases (lines)" in " ".join(out.split())
    report = json.loads((run / "bundle" / "config.json").read_text())["extra"]["calibration"]
    assert report["bias_objective"] == "lines" and report["split"] == "val"
    code, _, err = run_main(capsys, "train", data, tmp_path / "bad", "--training-profile",
                            "tiny", "--set", "lane_bias_objective=area")
    assert code != 0 and "lane_bias_objective 'area' is not one of" in err
