"""The forward in worker processes: shared-memory transport, N workers, crash and restart,
reload, and the in-process thread path (``--forward_workers 0``) giving the same answers."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from _serving import jpeg, make_bundle, v1_body

from roadvision.errors import UserError
from roadvision.serving.config import ServingConfig
from roadvision.serving.errors import ForwardWorkerCrashed
from roadvision.serving.forward_workers import ForwardPool
from roadvision.serving.predictor import RoadvisionModel
from roadvision.serving.tensor_arena import create_arena_file, map_arena, pack, unpack


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bundles")
    return {"roadwork": make_bundle("roadwork_tiny", root / "roadwork", 0),
            "lanes": make_bundle("lanes_tiny", root / "lanes", 0)}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_arena_round_trip_keeps_dtypes_shapes_and_scalars():
    size = 1 << 20
    fd = create_arena_file(size)
    arena = map_arena(fd, size)
    try:
        samples = [{"views": torch.randn(2, 3, 8, 8), "view_mask": torch.ones(2, dtype=torch.bool),
                    "scalar": torch.tensor(3.5), "ids": torch.arange(5)[::2]},  # not contiguous
                   {"views": torch.randn(1, 3, 8, 8), "view_mask": torch.zeros(1, dtype=torch.bool),
                    "scalar": torch.tensor(-1.0), "ids": torch.arange(3)}]
        layout = pack(arena, samples)
        back = unpack(arena, layout)
        for sent, got in zip(samples, back, strict=True):
            assert set(sent) == set(got)
            for key in sent:
                assert got[key].dtype == sent[key].dtype and got[key].shape == sent[key].shape
                assert torch.equal(got[key], sent[key])
        assert pack(arena, [{"big": torch.zeros(size)}]) is None  # does not fit: sent inline
    finally:
        del back
        arena.close()
        os.close(fd)


def _run(model: RoadvisionModel, payload):
    async def go():
        job = await model.preprocess(payload, {})
        return await model.postprocess(await model.predict(job, {}, {}), {}, {})
    return go()


@pytest.mark.parametrize("task", ["roadwork", "lanes"])
def test_worker_processes_answer_like_the_in_process_thread(bundles, task):
    """Shared memory carries the samples exactly: the same bytes in, the same answer out."""
    body = v1_body(jpeg(3, width=80, height=48), {"weather": "rainy"} if task == "roadwork"
                   else None, "flip")
    answers = {}
    for workers in (0, 1):
        model = RoadvisionModel(task, str(bundles[task]), ServingConfig(forward_workers=workers))
        model.load()
        try:
            answers[workers] = asyncio.run(_run(model, body))["predictions"]
        finally:
            model.stop()
    assert answers[0] == answers[1]


def test_two_workers_compute_concurrent_batches(bundles):
    pool = ForwardPool(bundles["roadwork"], workers=2, threads=1, name="roadwork")
    pool.start()
    try:
        from roadvision.models.bundle import read_bundle_config
        from roadvision.models.config import ModelConfig
        from roadvision.models.preprocess import prepare_sample

        cfg = ModelConfig.from_dict(read_bundle_config(bundles["roadwork"])["model_config"])
        samples = [prepare_sample(cfg, np.full((64, 96, 3), i * 40, np.uint8)) for i in range(4)]
        assert len(set(pool.pids())) == 2

        async def go():
            return await asyncio.gather(pool.run([(samples[0], "none"), (samples[1], "none")]),
                                        pool.run([(samples[2], "none"), (samples[3], "none")]))

        first, second = asyncio.run(go())
        alone = pool.call_each([(s, "none") for s in samples])
        assert alone[0] == alone[1] == first + second  # every worker, same model, same answers
    finally:
        pool.close()
    assert pool.pids() == []


def test_a_crashed_worker_fails_its_batch_with_503_and_is_restarted(bundles):
    model = RoadvisionModel("roadwork", str(bundles["roadwork"]), ServingConfig(forward_workers=1))
    model.load()
    pool = model.loaded.batcher.runner
    assert isinstance(pool, ForwardPool)
    body = v1_body(jpeg(5))

    async def go():
        healthy = await _run(model, body)
        (old_pid,) = pool.pids()
        os.kill(old_pid, signal.SIGKILL)
        pool._workers[0].process.wait()  # dead before the next batch is sent
        with pytest.raises(ForwardWorkerCrashed) as crash:
            await _run(model, body)
        assert crash.value.status == 503 and crash.value.code == "forward_worker_crashed"
        assert "restarted" in crash.value.message and "Traceback" not in crash.value.message
        for _ in range(6000):  # the restart loads the bundle in a new process
            if pool.restarts:
                break
            await asyncio.sleep(0.02)
        assert pool.restarts == 1
        (new_pid,) = pool.pids()
        assert new_pid != old_pid
        assert await _run(model, body) == healthy  # the replica recovered, same answer
        return old_pid

    try:
        old_pid = asyncio.run(go())
        assert not _alive(old_pid)
    finally:
        model.stop()


def test_reload_starts_new_workers_before_stopping_the_old(bundles, tmp_path):
    import shutil

    served = tmp_path / "served"
    shutil.copytree(bundles["roadwork"], served)
    model = RoadvisionModel("roadwork", str(served), ServingConfig(forward_workers=1))
    model.load()
    old_pool = model.loaded.batcher.runner
    (old_pid,) = old_pool.pids()
    make_bundle("roadwork_tiny", tmp_path / "next", seed=7)
    for name in ("config.json", "weights.safetensors"):
        shutil.copy(tmp_path / "next" / name, served / name)
    broken = RoadvisionModel("roadwork", str(tmp_path / "missing"), ServingConfig())
    with pytest.raises(UserError):
        broken.load()
    model.load()
    try:
        assert model.loaded.batcher.runner is not old_pool
        assert old_pool.pids() == [] and not _alive(old_pid)  # retired once the new one warmed
        body = asyncio.run(_run(model, v1_body(jpeg(0))))
        assert body["predictions"][0]["model_version"] == model.loaded.version
    finally:
        model.stop()


def test_forward_workers_option():
    from roadvision.runtime.cores import usable_cores
    from roadvision.serving.config import auto_forward_workers

    # auto: the forward in a thread on CPU nodes of up to 2 usable cores, else one process
    assert ServingConfig(device="cpu").forward_workers == (0 if usable_cores() <= 2 else 1)
    assert [auto_forward_workers("cpu", cores) for cores in (1, 2, 3, 16)] == [0, 0, 1, 1]
    assert auto_forward_workers("cuda:0", 2) == 1
    assert ServingConfig.from_env({"ROADVISION_FORWARD_WORKERS": "0"}).forward_workers == 0
    assert ServingConfig.from_env({"ROADVISION_FORWARD_WORKERS": "2"}).forward_workers == 2
    assert ServingConfig.from_env({"ROADVISION_FORWARD_WORKERS": "AUTO"},
                                  device="cpu").forward_workers in (0, 1)
    with pytest.raises(UserError, match="forward_workers"):
        ServingConfig(forward_workers=-1)
    with pytest.raises(UserError, match="forward_workers 'many'"):
        ServingConfig(forward_workers="many")
    from roadvision.serving.__main__ import build_parser

    assert build_parser().parse_args(["--forward_workers", "3"]).forward_workers == "3"
    assert ServingConfig(forward_workers="3").forward_workers == 3


def test_usable_cores_reads_the_cgroup_quota(tmp_path):
    from roadvision.runtime.cores import cgroup_cpu_limit, usable_cores

    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")  # a 1.5-core limit
    assert cgroup_cpu_limit(v2) == 1.5
    assert usable_cores(v2) == min(2, len(os.sched_getaffinity(0)))
    (v2 / "cpu.max").write_text("max 100000\n")  # no limit
    assert cgroup_cpu_limit(v2) is None
    v1 = tmp_path / "v1" / "cpu"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("100000")
    (v1 / "cpu.cfs_period_us").write_text("100000")
    assert cgroup_cpu_limit(tmp_path / "v1") == 1.0 and usable_cores(tmp_path / "v1") == 1
    (v1 / "cpu.cfs_quota_us").write_text("-1")  # v1's "no limit"
    assert cgroup_cpu_limit(tmp_path / "v1") is None
    assert cgroup_cpu_limit(tmp_path / "none") is None


def test_server_sizes_torch_threads_to_the_usable_cores():
    import torch

    from roadvision.runtime.cores import usable_cores
    from roadvision.serving.__main__ import set_torch_threads

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(7)
        assert set_torch_threads({"OMP_NUM_THREADS": "3"}) == 7  # the operator's choice stands
        assert set_torch_threads({}) == usable_cores()
    finally:
        torch.set_num_threads(before)
