"""The shared checks of user-given dicts and JSON text, and the benchmarks' shared main() tail.

``refuse_unknown_keys`` (``roadvision.errors``) is the one unknown-key check of ``TrainConfig``
and ``SearchSpace``; ``parse_json_object`` (``roadvision.training.config``) the one parser of a
sweep trial's ``overrides`` and of a search space; ``benchmarks._runner.run_and_report`` the
tail of the training benchmarks.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks._runner import add_common_arguments, bench_parser, run_and_report
from roadvision.components.train import train_config
from roadvision.errors import UserError, refuse_unknown_keys
from roadvision.training import TrainConfig
from roadvision.training.config import parse_json_object
from roadvision.training.sweep import SearchSpace


def test_unknown_keys_are_named_with_every_valid_one():
    refuse_unknown_keys({"a": 1}, ["a", "b"], "thing")  # known keys pass
    with pytest.raises(UserError) as caught:
        refuse_unknown_keys({"z": 1, "a": 2, "y": 3}, ["a", "b"], "thing")
    assert str(caught.value) == "unknown thing key(s) ['y', 'z']; valid keys: ['a', 'b']"
    # both dataclasses read from user dicts refuse alike, naming themselves
    with pytest.raises(UserError, match=r"unknown train config key\(s\) \['lrr'\]; valid keys: "
                                        r"\['task', 'preset'"):
        TrainConfig.from_dict({"lrr": 0.1})
    with pytest.raises(UserError, match=r"unknown search space key\(s\) \['wd'\]; valid keys: "
                                        r"\['lr', 'weight_decay'"):
        SearchSpace.from_dict({"wd": [0.1, 0.2]})


def test_json_object_text_blank_bad_and_not_an_object():
    assert parse_json_object("  \n", "x", "fields") == {}
    assert parse_json_object('{"lr": 0.01}', "x", "fields") == {"lr": 0.01}
    with pytest.raises(UserError, match=r"^x: not JSON \(Expecting .* at 1\)$"):
        parse_json_object("{", "x", "fields")
    with pytest.raises(UserError, match="^x: expected a JSON object of fields$"):
        parse_json_object("[1]", "x", "fields")
    # its two users: a trial's overrides and a search space
    assert SearchSpace.from_json("") == SearchSpace()
    with pytest.raises(UserError, match="^search space: expected a JSON object of ranges$"):
        SearchSpace.from_json("3")
    options = {"task": "roadwork", "training_profile": "tiny", "model_preset": "", "epochs": 2,
               "batch_size": 8, "max_steps_per_epoch": 0, "seed": 1}
    plain = train_config(**options)
    assert train_config(**options, overrides=" ") == plain
    assert train_config(**options, overrides='{"lr": 0.02}') == plain.replace(lr=0.02)
    with pytest.raises(UserError, match="^overrides: not JSON"):
        train_config(**options, overrides="{lr: 1}")
    with pytest.raises(UserError, match="^overrides: expected a JSON object of TrainConfig"):
        train_config(**options, overrides='"lr"')
    with pytest.raises(UserError, match=r"unknown train config key\(s\) \['lrr'\]"):
        train_config(**options, overrides='{"lrr": 1}')


def test_bench_runner_runs_in_a_work_folder_and_writes_the_rows(tmp_path, capsys,
                                                                monkeypatch):
    parser = bench_parser("bench_x", "the doc")
    parser.add_argument("--own", type=int, default=7)
    add_common_arguments(parser, samples_help="samples", jobs=False, threads_default=2)
    assert parser.prog == "python -m benchmarks.bench_x"
    monkeypatch.chdir(tmp_path)
    args = parser.parse_args(["--work", "rel/work", "--json", "rows.json", "--n", "5"])
    assert not hasattr(args, "jobs") and args.threads == 2 and args.seed == 0

    def run(a):
        (a.work / "made").write_text("x")  # the folder exists, absolute, while run runs
        return [{"own": a.own, "n": a.n, "absolute": a.work.is_absolute()}]

    printed = []
    rows = run_and_report("bench_x", args, run, printed.append)
    assert rows == [{"own": 7, "n": 5, "absolute": True}] and printed == [rows]
    assert (tmp_path / "rel" / "work" / "made").is_file()  # --work is kept
    assert json.loads(Path("rows.json").read_text()) == rows
    assert "(bench_x took " in capsys.readouterr().out
    # without --work: a temporary folder, gone afterwards
    args = parser.parse_args([])
    rows = run_and_report("bench_x", args, lambda a: [{"work": str(a.work)}], lambda r: None)
    assert not Path(rows[0]["work"]).exists()
