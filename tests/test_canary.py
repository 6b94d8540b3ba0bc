"""Canary and shadow rollout: one served name, two arms, real servers, a real MLflow store.

Two real ``python -m roadvision.serving`` processes on loopback ports, started together:

* **split** serves a champion and a challenger from folders, 30 % to the challenger, with the
  payload log on: the share, the per-request stability, the arm header, the metrics by arm,
  the logged arm; then the challenger's folder gets a bundle that cannot answer what the
  champion answers (9 views per image against the server's budget of 6), the server reloads,
  and ``roadvision model canary`` decides rollback.
* **shadow** serves ``models:/rw@champion`` and mirrors every request to ``@challenger``: the
  answer is always the champion's, the challenger is counted and compared. An agreeing
  challenger (another seed, the same labels) is promoted with ``--apply``; a disagreeing one
  (a seed whose untrained head says roadwork everywhere) is rolled back: ``@challenger``
  removed, with the figures in the audit entry; after a reload the champion serves alone.
"""

from __future__ import annotations

import json
import shutil
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from _canary import registered_arms, store_env, tiny_roadwork
from _cli import one_line_error, run_main
from _pipeline import _empty_mlflow_db  # noqa: F401 (fixture)
from _serving import ServingServer, jpeg, metric_value, v1_body

from roadvision import registry
from roadvision.models import bundle_version
from roadvision.monitoring.canary import Thresholds, figures_from_log
from roadvision.monitoring.records import read_logged
from roadvision.serving.canary import ARM_HEADER, TrafficSplit, routing_key

PERCENT = 30.0


@pytest.fixture(scope="module")
def servers(tmp_path_factory, _empty_mlflow_db):  # noqa: F811
    root = tmp_path_factory.mktemp("canary")
    shutil.copyfile(_empty_mlflow_db, root / "mlflow.db")
    env = store_env(root)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        v1, v2 = registered_arms(root, "rw", champion_seed=1, challenger_seed=2)
        v3 = registry.register_bundle(tiny_roadwork(root / "rw-disagree", 3), "rw",
                                      {"task": "roadwork"}, validate_example=False)
        registry.set_alias("rw", "challenger", v2, reason="canary test: agreeing first")
        champion_dir = tiny_roadwork(root / "champion", 1)
        challenger_dir = tiny_roadwork(root / "challenger", 2)
        common = ["--forward_workers", "0", "--allow_model_control",
                  "--payload_log_sample_rate", "1", "--payload_log_flush_s", "0.2"]
        split = ServingServer(
            args=["--model", f"rw={champion_dir}", "--challenger", str(challenger_dir),
                  "--canary-percent", f"{PERCENT:g}", "--max_windows", "6",
                  "--payload_log_uri", str(root / "split-log"), *common],
            log_path=root / "split.log", env=env)
        shadow = ServingServer(
            args=["--model", "rw=models:/rw@champion", "--shadow",
                  "--payload_log_uri", str(root / "shadow-log"), *common],
            log_path=root / "shadow.log", env=env)
        errors: list[BaseException] = []

        def start(server):
            try:
                server.start(timeout=300, ready_models=("rw",))
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(s,)) for s in (split, shadow)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        try:
            if errors:
                raise errors[0]
            yield {"root": root, "split": split, "shadow": shadow, "v1": v1, "v2": v2,
                   "v3": v3, "champion_dir": champion_dir, "challenger_dir": challenger_dir}
        finally:
            for server in (split, shadow):  # both stop at once: each takes seconds to drain
                if server.process is not None and server.process.poll() is None:
                    server.process.send_signal(signal.SIGTERM)
            split.stop()
            shadow.stop()


def _post(server: ServingServer, body: dict) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/models/rw:predict", json=body, timeout=60)


def _post_all(server: ServingServer, bodies: list[dict]) -> list[httpx.Response]:
    """The answers to ``bodies`` (in order), four requests in flight at a time."""
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda body: _post(server, body), bodies))


def _metrics(server: ServingServer) -> str:
    return httpx.get(f"{server.url}/metrics", timeout=30).text


def _count(text: str, arm: str, outcome: str = "ok") -> float:
    return metric_value(text, "roadvision_canary_requests_total", model="rw", arm=arm,
                        outcome=outcome)


def _wait_for(server: ServingServer, arm: str, n: int, timeout: float = 60.0) -> str:
    """The metrics text once ``arm`` has ``n`` requests counted (the shadow runs behind)."""
    deadline = time.monotonic() + timeout
    while True:
        text = _metrics(server)
        done = sum(_count(text, arm, o) for o in ("ok", "rejected", "error"))
        if done >= n or time.monotonic() > deadline:
            return text
        time.sleep(0.1)


def _reload(server: ServingServer) -> None:
    r = httpx.post(f"{server.url}/v2/repository/models/rw/load", timeout=120)
    assert r.status_code == 200, r.text


def _canary_cli(capsys, server: ServingServer, *args: str) -> tuple[int, str, str]:
    return run_main(capsys, "model", "canary", "rw", "--metrics-url",
                    f"{server.url}/metrics", *args)


def _last_audit() -> dict:
    return registry.audit_log("rw")[-1]


# -- split -------------------------------------------------------------------------------------
def test_split_sends_a_stable_hashed_share_to_the_challenger(servers):
    server = servers["split"]
    versions = {"champion": bundle_version(servers["champion_dir"]),
                "challenger": bundle_version(servers["challenger_dir"])}
    bodies = [v1_body(jpeg(i)) for i in range(100)]
    arms = []
    for r in _post_all(server, bodies):
        assert r.status_code == 200, r.text
        arm = r.headers[ARM_HEADER]
        assert r.json()["predictions"][0]["model_version"] == versions[arm]
        assert r.headers["x-roadvision-model-version"] == versions[arm]
        arms.append(arm)
    # the server's choice is the split's hash of the images, request by request ...
    split = TrafficSplit("split", PERCENT)
    assert arms == [split.arm_for(routing_key(body)) for body in bodies]
    # ... which gives the share asked for (3 binomial sigmas: 30 +- 14 of 100)
    assert 16 <= arms.count("challenger") <= 44
    # a retry meets the same arm
    for body, arm in zip(bodies[:10], arms[:10], strict=True):
        assert _post(server, body).headers[ARM_HEADER] == arm
    arms += arms[:10]
    text = _metrics(server)
    for arm in ("champion", "challenger"):
        assert _count(text, arm) == arms.count(arm)
        assert metric_value(text, "roadvision_canary_latency_seconds_count", model="rw",
                            arm=arm) == arms.count(arm)
        assert metric_value(text, "roadvision_canary_arm_info", model="rw", arm=arm,
                            version=versions[arm]) == 1
    assert metric_value(text, "roadvision_canary_challenger_percent", model="rw",
                        mode="split") == PERCENT
    # the payload log names the arm of every row
    deadline = time.monotonic() + 30
    while True:
        try:
            rows = read_logged(servers["root"] / "split-log")
        except Exception:  # noqa: BLE001 - nothing flushed yet
            rows = None
        if rows is not None and len(rows) >= len(arms) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert rows["arm"].value_counts().to_dict() == {a: arms.count(a) for a in set(arms)}
    assert set(rows.loc[rows["arm"] == "challenger", "model_version"]) == {versions["challenger"]}
    logged = figures_from_log(rows)
    assert logged.mode == "split" and logged.agreement is None
    assert logged.positive_rate_p == pytest.approx(1.0)  # seeds 1 and 2 both answer label 0


def test_split_rolls_back_a_challenger_that_cannot_answer(servers, capsys):
    server, folder = servers["split"], servers["challenger_dir"]
    shutil.rmtree(folder)
    tiny_roadwork(folder, 2, num_views=9)  # 9 views per image > --max_windows 6
    _reload(server)
    text = _metrics(server)
    assert _count(text, "challenger") == 0  # a new version's figures start from zero
    for r in _post_all(server, [v1_body(jpeg(i)) for i in range(200, 260)]):
        assert r.status_code in (200, 413), r.text
    text = _metrics(server)
    assert _count(text, "challenger", "rejected") >= 10 and _count(text, "challenger") == 0
    code, out, err = _canary_cli(capsys, server, "--served-name", "rw", "--min-requests", "10",
                                 "--json")
    assert code == 0, err
    decision = json.loads(out)
    assert decision["action"] == "rollback", decision
    assert "failure rate increase" in decision["reason"]
    assert decision["figures"]["challenger"]["failure_rate"] == 1.0
    # a canary served from folders has no alias to move: one line, nothing changed
    code, _, err = _canary_cli(capsys, server, "--served-name", "rw", "--min-requests", "10",
                               "--apply")
    assert "not served from the registry" in one_line_error(code, err)


# -- shadow ------------------------------------------------------------------------------------
def test_shadow_answers_with_the_champion_and_promotes_an_agreeing_challenger(servers, capsys):
    server, n = servers["shadow"], 30
    for r in _post_all(server, [v1_body(jpeg(1000 + i)) for i in range(n)]):
        assert r.status_code == 200, r.text
        assert r.headers[ARM_HEADER] == "champion"
        assert r.json()["model"]["registry_version"] == servers["v1"]
    text = _wait_for(server, "challenger", n)
    assert _count(text, "challenger") == n and _count(text, "champion") == n
    assert metric_value(text, "roadvision_canary_agreement_total", model="rw",
                        result="agree") == n
    # the payload log holds both answers of each request, under one request id
    deadline = time.monotonic() + 30
    while True:
        rows = read_logged(servers["root"] / "shadow-log") if (
            servers["root"] / "shadow-log").exists() else None
        if rows is not None and len(rows) >= 2 * n or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert (rows.groupby("request_id")["arm"].nunique() == 2).sum() == n
    # the decision without --apply changes nothing
    code, out, err = _canary_cli(capsys, server, "--logged", str(servers["root"] / "shadow-log"),
                                 "--min-requests", str(n))
    assert code == 0, err
    assert "decision: promote" in out and "--apply" in out
    assert registry.champion("rw").version == servers["v1"]
    code, out, err = _canary_cli(capsys, server, "--min-requests", str(n), "--apply")
    assert code == 0, err
    assert registry.champion("rw").version == servers["v2"]
    entry = _last_audit()
    assert entry["action"] == "promote" and entry["version"] == servers["v2"]
    assert f"agreement 100.0% of {n}" in entry["reason"]
    assert f"requests {n}/{n}" in entry["reason"]


def test_shadow_rolls_back_a_disagreeing_challenger(servers, capsys):
    server, n = servers["shadow"], 30
    registry.set_alias("rw", "challenger", servers["v3"], reason="canary test: disagreeing")
    _reload(server)  # champion v2 (promoted above), challenger v3
    code, out, err = _canary_cli(capsys, server, "--min-requests", str(n))
    assert "decision: wait" in out  # no request on these versions yet
    for r in _post_all(server, [v1_body(jpeg(2000 + i)) for i in range(n)]):
        assert r.status_code == 200 and r.headers[ARM_HEADER] == "champion"
        assert r.json()["predictions"][0]["label"] == 0  # the champion's answer, not v3's
    text = _wait_for(server, "challenger", n)
    assert metric_value(text, "roadvision_canary_agreement_total", model="rw",
                        result="disagree") == n
    code, out, err = _canary_cli(capsys, server, "--min-requests", str(n), "--apply")
    assert code == 0, err
    assert "decision: rollback" in out and "prediction agreement 0" in out
    assert "challenger" not in registry.get_version("rw@champion").aliases
    assert registry.champion("rw").version == servers["v2"]  # the champion did not move
    entry = _last_audit()
    assert entry["action"] == "canary_rollback" and entry["previous"] == servers["v3"]
    assert f"agreement 0.0% of {n}" in entry["reason"]
    # reloaded without @challenger, the champion serves alone
    _reload(server)
    text = _metrics(server)
    assert metric_value(text, "roadvision_canary_challenger_percent", model="rw",
                        mode="shadow") == 0
    r = _post(server, v1_body(jpeg(3000)))
    assert r.status_code == 200 and r.headers[ARM_HEADER] == "champion"


# -- the decision and its inputs ------------------------------------------------------------------
def test_the_traffic_split_is_deterministic_and_bounded():
    split = TrafficSplit("split", 12.5)
    keys = [i.to_bytes(4, "big") for i in range(4000)]
    share = sum(split.takes(k) for k in keys) / len(keys)
    assert abs(share - 0.125) < 3 * (0.125 * 0.875 / len(keys)) ** 0.5
    assert [split.takes(k) for k in keys[:50]] == [split.takes(k) for k in keys[:50]]
    assert not any(TrafficSplit("split", 0).takes(k) for k in keys[:200])
    assert all(TrafficSplit("split", 100).takes(k) for k in keys[:200])
    assert TrafficSplit("shadow", 100).arm_for(keys[0]) == "champion"
    assert routing_key({"instances": [{"nope": 1}]}) is None
    for bad, message in ((dict(mode="half"), "canary mode"), (dict(mode="split", percent=101),
                                                              "canary percent")):
        with pytest.raises(Exception, match=message):
            TrafficSplit(**bad)


def test_thresholds_refuse_nonsense_and_the_cli_needs_a_source(capsys):
    with pytest.raises(Exception, match="--min-agreement"):
        Thresholds(min_agreement=1.5)
    code, _, err = run_main(capsys, "model", "canary", "rw")
    assert "--metrics-url" in one_line_error(code, err)
    code, _, err = run_main(capsys, "model", "canary", "rw", "--metrics-url", "ftp://x/metrics")
    assert "expected http(s)" in one_line_error(code, err)
