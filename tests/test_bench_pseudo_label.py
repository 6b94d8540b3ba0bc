"""``benchmarks.bench_pseudo_label --teacher/--data``: a reused teacher is paired only with the
data it was split from (task, held-out family, training-data hash), and the pool confidence
summary counts what each threshold keeps."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

# benchmarks/ is not an installed package (it runs as ``python -m benchmarks...`` from the
# repository root), so the root goes on the path for this module's imports
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import bench_pseudo_label as bench  # noqa: E402
from benchmarks.bench_cross_domain import split_holdout  # noqa: E402
from roadvision.data.contract import read_info, read_manifest  # noqa: E402
from roadvision.training.pseudo_label import PoolPrediction  # noqa: E402


@pytest.fixture(scope="module")
def lanes(tmp_path_factory) -> dict[str, Path]:
    """An all-families lanes data set, its camera split, and an (untrained) teacher bundle
    that records the split's in-family hash as its training data, as ``train`` does."""
    from roadvision.data.synth import generate
    from roadvision.models import create_model
    from roadvision.models.bundle import save_bundle

    root = tmp_path_factory.mktemp("pl_bench")
    raw = root / "lanes_all"
    generate("lanes", 20, 0, raw, size="tiny", family="all")
    inside, _ = split_holdout(raw, "camera", root / "split", 0)
    teacher = save_bundle(create_model("lanes_tiny"), root / "teacher", extra={
        "dataset": {"content_hash": read_info(inside).content_hash}})
    roadwork = root / "roadwork_all"
    generate("roadwork", 10, 0, roadwork, size="tiny", family="all")
    return {"raw": raw, "split": root / "split", "teacher": Path(teacher), "roadwork": roadwork}


def test_the_teachers_own_data_splits_again_to_its_held_out_family(lanes, tmp_path):
    task, inside, held = bench.teacher_data(lanes["teacher"], lanes["raw"], "camera",
                                            tmp_path, 0)
    assert task == "lanes" and inside.parent.parent == tmp_path  # split in the work folder
    assert set(read_manifest(held)["family"]) == {"camera"}
    assert "camera" not in set(read_manifest(inside)["family"])
    # the split folder itself is accepted as it is
    task, inside, held = bench.teacher_data(lanes["teacher"], lanes["split"], "camera",
                                            tmp_path / "unused", 0)
    assert inside == lanes["split"] / "in" and not (tmp_path / "unused").exists()


def test_a_wrong_pair_is_refused_with_the_reason(lanes, tmp_path):
    with pytest.raises(SystemExit, match="is a lanes model; data .* is roadwork"):
        bench.teacher_data(lanes["teacher"], lanes["roadwork"], "camera", tmp_path, 0)
    assert not any(tmp_path.iterdir())  # refused before writing a split
    # another seed moves rows between the families' splits: not the teacher's training data
    with pytest.raises(SystemExit, match="was trained on data .* would not be held out"):
        bench.teacher_data(lanes["teacher"], lanes["raw"], "camera", tmp_path, 1)
    # another held-out family: the teacher saw this one
    with pytest.raises(SystemExit, match="was trained on data"):
        bench.teacher_data(lanes["teacher"], lanes["raw"], "degraded", tmp_path, 0)
    with pytest.raises(SystemExit, match=r"held-out rows are \['camera'\], not --holdout"):
        bench.teacher_data(lanes["teacher"], lanes["split"], "degraded", tmp_path, 0)
    with pytest.raises(SystemExit, match="neither a data set"):
        bench.teacher_data(lanes["teacher"], tmp_path, "camera", tmp_path, 0)


def test_the_command_line_says_a_wrong_pair_in_one_line(lanes, tmp_path, capsys):
    for argv, expected in (
            (["--data", str(lanes["raw"])], "--teacher and --data go together"),
            (["--teacher", str(lanes["teacher"]), "--data", str(lanes["raw"]), "--task",
              "roadwork"], "the teacher .* is a lanes model"),
            (["--teacher", str(lanes["teacher"]), "--data", str(lanes["roadwork"]), "--work",
              str(tmp_path)], "is a lanes model; data .* is roadwork"),
            (["--teacher", str(tmp_path / "nothing"), "--data", str(lanes["raw"])],
             "--teacher: ")):
        with pytest.raises(SystemExit) as exc:
            bench.main(argv)
        err = capsys.readouterr().err
        text = str(exc.value.code) if exc.value.code not in (None, 2) else err.strip()
        assert exc.value.code != 0 and "Traceback" not in err
        # argparse's usage lines, then one error line; or our one line
        assert len(text.splitlines()) == 1 or "error:" in text.splitlines()[-1]
        assert re.search(expected, text.splitlines()[-1]), text


def test_confidence_summary_counts_what_each_threshold_keeps():
    preds = [PoolPrediction(i, c, g, label=g) for i, (c, g) in enumerate([
        (0.99, 1), (0.97, 1), (0.93, 1), (0.96, 0), (0.6, 0)])]
    out = bench.confidence_summary(preds, [0.9, 0.95, 0.98], 1.0, (0, 1))
    assert out["n"] == 5
    assert out["quantiles"]["q00"] == pytest.approx(0.6)
    assert out["quantiles"]["q100"] == pytest.approx(0.99)
    assert out["quantiles"]["q50"] == pytest.approx(float(np.median([0.99, 0.97, 0.93, 0.96,
                                                                       0.6])))
    # 0.9: four confident, positives capped at the one confident negative
    assert out["thresholds"]["0.9"] == {"confident": 4, "kept": 2, "kept_groups": {0: 1, 1: 1}}
    assert out["thresholds"]["0.95"]["kept"] == 2
    # 0.98: one confident positive and no negative: the guard keeps nothing
    assert out["thresholds"]["0.98"] == {"confident": 1, "kept": 0, "kept_groups": {}}
