"""``roadvision serve`` and ``python -m roadvision.serving``: one readable line for bad flags.

Each of these gave a traceback or argparse usage naming internal flags (``--max_tta``) before.
"""

from __future__ import annotations

import pytest
from _cli import one_line_error, run_main


@pytest.mark.parametrize(("args", "words"), [
    (["--port", "99999"], ("--port 99999", "65535")),
    (["--port", "0"], ("--port 0",)),
    (["--max-tta", "huge"], ("--max-tta 'huge'", "none, flip, full")),
    (["--rate-limit-on-outage", "maybe"], ("--rate-limit-on-outage", "open, closed")),
    (["--forward-workers", "-1"], ("--forward-workers -1", "0 (a thread)")),
])
def test_bad_serve_options_are_one_line(capsys, tmp_path, args, words):
    code, _, err = run_main(capsys, "serve", "--model", str(tmp_path / "bundle"), *args)
    line = one_line_error(code, err)
    assert code == 2
    assert "usage" not in err.lower() and "max_tta" not in err
    for word in words:
        assert word in line, line


def test_redis_none_means_no_cache(capsys, tmp_path):
    """``--redis none`` is accepted (the help says "none = no cache"): the command gets as far
    as loading the model, whose absence is the error."""
    code, _, err = run_main(capsys, "serve", "--model", str(tmp_path / "bundle"),
                            "--redis", "none")
    line = one_line_error(code, err)
    assert code == 2 and "no such directory" in line and "Redis URL" not in line


def test_a_bad_redis_url_is_one_line(capsys, tmp_path):
    code, _, err = run_main(capsys, "serve", "--model", str(tmp_path / "bundle"),
                            "--redis", "localhost:6379")
    assert "redis://" in one_line_error(code, err) and code == 2


@pytest.mark.parametrize(("argv", "words"), [
    (["--max_tta", "huge"], ("invalid choice", "huge")),
    (["--http_port", "99999"], ("99999", "65535")),
    (["--max_windows", "many"], ("max_windows", "many")),
])
def test_entry_point_flag_errors_are_one_line(capsys, argv, words):
    from roadvision.serving.__main__ import main

    with pytest.raises(SystemExit) as info:
        main(["--model", "/nonexistent", *argv])
    err = capsys.readouterr().err
    line = one_line_error(info.value.code, err)
    assert info.value.code == 2 and "usage:" not in err
    for word in words:
        assert word in line, line


def test_entry_point_options_reach_the_config(monkeypatch):
    import roadvision.serving.__main__ as entry

    seen = {}

    def fake_build(args, config, redis, model_cls):
        seen["config"], seen["redis"] = config, redis
        raise entry.UserError("stop here")

    monkeypatch.setattr(entry, "build_models", fake_build)
    with pytest.raises(SystemExit):
        entry.main(["--model", "/m", "--host", "0.0.0.0", "--allow_model_control",
                    "--max_windows", "99", "--request_timeout_s", "7.5",
                    "--ratelimit_on_outage", "closed", "--redis", "none",
                    "--forward_workers", "3"])
    config = seen["config"]
    assert (config.host, config.allow_model_control, config.max_windows,
            config.request_timeout_s, config.ratelimit_on_outage) == ("0.0.0.0", True, 99, 7.5,
                                                                      "closed")
    assert config.redis_url is None and seen["redis"] is None
    assert config.forward_workers == 3


def test_tracking_uri_after_serve_reaches_the_registry_probe(capsys, monkeypatch):
    """``serve --tracking-uri`` (as ``model list --tracking-uri``) names the store that
    ``models:/`` URIs resolve in; an unreachable one stops the start with one line."""
    from conftest import free_port

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")  # restored after: the option sets it
    url = f"http://127.0.0.1:{free_port()}"
    code, _, err = run_main(capsys, "serve", "--model", "models:/roadwork@champion",
                            "--tracking-uri", url)
    line = one_line_error(code, err)
    assert code == 2 and f"{url} is unreachable" in line
