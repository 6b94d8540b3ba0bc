"""The runtime floor: one precision policy and one inference path for every caller.

What the gate scores must be what serving and batch prediction answer: the evaluator, the
pyfunc model and ``predict`` (serving's forward) all take their precision from
``PrecisionPolicy.for_device`` and their probabilities from the same ``forward_batch``.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from _models import random_image
from _training import make_roadwork

from roadvision.errors import UserError
from roadvision.models import create_model, prepare_sample, save_bundle
from roadvision.runtime.dataset import ManifestDataset
from roadvision.runtime.inference import iter_batches, predict, predict_dataset, predict_proba
from roadvision.runtime.precision import PrecisionPolicy
from roadvision.runtime.readers import load_rows

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rw():
    torch.manual_seed(0)
    return create_model("roadwork_tiny").eval()


@pytest.fixture(scope="module")
def lanes():
    torch.manual_seed(0)
    return create_model("lanes_tiny", input_size=32).eval()


# --- the precision policy ------------------------------------------------------------------

def test_cpu_policy_is_fp32_and_contiguous(lanes):
    policy = PrecisionPolicy.for_device(torch.device("cpu"))
    assert policy == PrecisionPolicy.for_device("cpu") == PrecisionPolicy.for_model(lanes)
    assert policy.autocast_dtype is None and not policy.channels_last
    with policy.autocast():
        assert not torch.is_autocast_enabled("cpu")
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    policy.prepare_model(lanes)
    conv = next(p for p in lanes.parameters() if p.dim() == 4 and p.shape[1] > 1)
    assert conv.is_contiguous() and not conv.is_contiguous(memory_format=torch.channels_last)


def test_cuda_policy_is_bf16_and_channels_last_without_a_gpu():
    for device in (torch.device("cuda"), torch.device("cuda:1"), "cuda"):
        policy = PrecisionPolicy.for_device(device)
        assert policy.autocast_dtype == torch.bfloat16 and policy.channels_last
        assert policy.device.type == "cuda"
    # the policy is a value: equal inputs give equal, immutable policies
    assert PrecisionPolicy.for_device("cuda") == PrecisionPolicy.for_device(torch.device("cuda"))
    with pytest.raises(AttributeError):
        PrecisionPolicy.for_device("cuda").channels_last = False  # type: ignore[misc]


def test_channels_last_layout_of_weights_and_images():
    """The layout half of the CUDA policy, checked on CPU tensors (layout is device-free)."""
    import dataclasses

    torch.manual_seed(0)
    model = create_model("lanes_tiny", input_size=32)
    policy = dataclasses.replace(PrecisionPolicy.for_device("cuda"), device=torch.device("cpu"))
    assert policy.prepare_model(model) is model
    convs = [p for p in model.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    before = [p.data_ptr() for p in convs]
    policy.prepare_model(model)  # already done: nothing is copied again
    assert [p.data_ptr() for p in model.parameters() if p.dim() == 4] == before

    batch = {"image": torch.randn(2, 3, 8, 8), "mask": torch.zeros(2, 8, 8, dtype=torch.long),
             "_teachers": [{"image": torch.randn(2, 3, 8, 8)}]}
    out = policy.prepare_batch(batch)
    assert out["image"].is_contiguous(memory_format=torch.channels_last)
    assert not out["image"].is_contiguous()
    assert out["_teachers"][0]["image"].is_contiguous(memory_format=torch.channels_last)
    assert out["mask"].is_contiguous()  # only images change layout
    assert torch.equal(out["image"], batch["image"])


def test_evaluator_and_batch_prediction_take_the_same_policy(tmp_path, monkeypatch, rw):
    """The gate's evaluator and the pyfunc batch prediction both ask ``for_device`` for the
    policy of the model's device and run their forward inside that policy's autocast; on this
    CPU machine that is the fp32 policy, and they give the same probability per image."""
    from roadvision.evaluation import evaluate
    from roadvision.models.bundle import BUNDLE_ARTIFACT
    from roadvision.pyfunc_model import RoadvisionBundleModel

    data = make_roadwork(tmp_path / "data", n=20)
    bundle = save_bundle(rw, tmp_path / "bundle")
    chosen: dict[str, list[PrecisionPolicy]] = {}
    entered: dict[str, list[PrecisionPolicy]] = {}
    caller = ["none"]
    original_for_device = PrecisionPolicy.for_device.__func__
    original_autocast = PrecisionPolicy.autocast

    def for_device(cls, device):
        policy = original_for_device(cls, device)
        chosen.setdefault(caller[0], []).append(policy)
        return policy

    def autocast(self):
        entered.setdefault(caller[0], []).append(self)
        return original_autocast(self)

    monkeypatch.setattr(PrecisionPolicy, "for_device", classmethod(for_device))
    monkeypatch.setattr(PrecisionPolicy, "autocast", autocast)

    caller[0] = "evaluator"
    result = evaluate(bundle, data, split="test", out_dir=tmp_path / "eval", device="cpu")
    caller[0] = "batch prediction"
    pyfunc = RoadvisionBundleModel()
    pyfunc.load_context(SimpleNamespace(artifacts={BUNDLE_ARTIFACT: str(bundle)}))
    rows = load_rows(data, ["test"])
    frame = pd.DataFrame({"image": [(data / name).read_bytes() for name in rows["image"]],
                          **{k: rows[k] for k in ("lat", "lon", "weather", "daytime", "scene")}})
    answers = pyfunc.predict(None, frame)

    cpu = PrecisionPolicy.for_device("cpu")
    assert cpu.autocast_dtype is None and not cpu.channels_last
    for path in ("evaluator", "batch prediction"):
        assert chosen.get(path) and set(chosen[path]) == {cpu}, path
        assert entered.get(path) and set(entered[path]) == {cpu}, path
    scored = pd.read_parquet(tmp_path / "eval" / "predictions.parquet")["prob"].to_numpy()
    assert result["n"] == len(answers) == len(scored) > 0
    np.testing.assert_allclose(answers["probability"].to_numpy(), scored, rtol=0, atol=1e-6)


def test_no_precision_decision_outside_the_policy():
    """Autocast and memory format are decided in one module; a second decision anywhere (a
    serving-only autocast, a loader's own channels-last) fails here."""
    pattern = re.compile(r"torch\.autocast\(|channels_last|torch\.bfloat16|\.half\(\)")
    policy_file = REPO / "roadvision" / "runtime" / "precision.py"
    offenders = []
    for folder in ("roadvision", "models", "serving", "components", "pipelines"):
        for path in (REPO / folder).rglob("*.py"):
            if path != policy_file and pattern.search(path.read_text()):
                offenders.append(str(path.relative_to(REPO)))
    assert not offenders, offenders


# --- one forward path ----------------------------------------------------------------------

class _Samples:
    """A map-style dataset over prepared samples (what ``predict_dataset`` reads)."""

    def __init__(self, samples):
        self.samples = samples

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        return dict(self.samples[i])


@pytest.mark.parametrize("tta", ["none", "flip"])
def test_predict_and_predict_dataset_agree_roadwork(tmp_path, rw, tta):
    data = make_roadwork(tmp_path / "data", n=12, size=48)
    ds = ManifestDataset(data, load_rows(data, None), rw.cfg)
    samples = [ds[i] for i in range(len(ds))]
    served = torch.stack(predict_proba(rw, samples, tta=tta, batch_size=5)).numpy()
    scored = [r for r in predict_dataset(rw, ds, batch_size=5, mode=tta)]
    assert [r["index"] for r in scored] == list(range(len(ds)))
    np.testing.assert_allclose(served, [r["prob"] for r in scored], rtol=0, atol=1e-6)
    assert [r["label"] for r in scored] == load_rows(data, None)["label"].tolist()
    labels = [r["label"] for r in predict(rw, samples, tta=tta, batch_size=5)]
    assert labels == [int(p >= rw.cfg.threshold) for p in served]


def test_predict_and_predict_dataset_agree_lanes(lanes):
    # interleaved tile sizes: smaller than the window (padded), equal, larger (sliding windows)
    heights = (24, 70, 32, 24, 70)
    samples = [prepare_sample(lanes.cfg, random_image(h, 40, seed=i),
                              mask=np.zeros((h, 40), np.uint8)) for i, h in enumerate(heights)]
    probs = predict_proba(lanes, samples, tta="flip", batch_size=2)
    served = predict(lanes, samples, tta="flip", batch_size=2)
    scored = list(predict_dataset(lanes, _Samples(samples), batch_size=2, mode="flip"))
    assert [p.shape[-2:] for p in probs] == [(h, 40) for h in heights]
    for p, s, r in zip(probs, served, scored, strict=True):
        np.testing.assert_array_equal(s["mask"], r["pred"])
        assert r["confidence"] == pytest.approx(float(p.max(0).values.mean()), abs=1e-6)

    # the raw-logits mode is the same forward: on a tile within one window (padded to it),
    # softmax(logits / T) is the "none" probability (a 64 px window: at 32 px this tiny
    # encoder's deepest features would be 1x1, too few for its norm layers)
    torch.manual_seed(0)
    model = create_model("lanes_tiny", input_size=64).eval()
    small = [prepare_sample(model.cfg, random_image(48, 60, seed=9))]
    plain = predict_proba(model, small, tta="none")[0]
    (logit_res,) = predict_dataset(model, _Samples(small), mode="logits")
    assert logit_res["logits"].shape == (model.cfg.num_classes, 48, 60)
    from_logits = torch.from_numpy(logit_res["logits"]).div(model.cfg.temperature).softmax(0)
    np.testing.assert_allclose(from_logits.numpy(), plain.numpy(), rtol=0, atol=1e-6)


def test_inference_restores_training_mode_and_checks_its_arguments(rw):
    rw.train()
    try:
        samples = [prepare_sample(rw.cfg, random_image(32, 32, seed=i), None) for i in range(2)]
        predict(rw, samples)
        list(predict_dataset(rw, _Samples(samples)))
        assert rw.training
    finally:
        rw.eval()
    assert predict(rw, []) == []
    with pytest.raises(UserError, match="batch_size"):
        predict(rw, samples, batch_size=0)
    with pytest.raises(UserError, match="mode"):
        list(predict_dataset(rw, _Samples(samples), mode="sideways"))


def test_inference_leaves_a_model_in_eval_mode_unwalked(rw, monkeypatch):
    """eval() and train() walk every module (milliseconds per call on a CPU): a served model,
    loaded in eval mode, must not pay for them on every forward."""
    calls = []
    monkeypatch.setattr(rw, "train", lambda mode=True: calls.append(mode) or rw)
    rw.training = False
    samples = [prepare_sample(rw.cfg, random_image(32, 32, seed=i), None) for i in range(2)]
    predict(rw, samples)
    list(predict_dataset(rw, _Samples(samples)))
    assert calls == []


def test_iter_batches_never_mixes_shapes_and_keeps_order(lanes):
    heights = (24, 24, 40, 24, 24, 24)
    samples = [prepare_sample(lanes.cfg, random_image(h, 16, seed=i)) for i, h in
               enumerate(heights)]
    batches = list(iter_batches(_Samples(samples), batch_size=2))
    assert [idx for idx, _ in batches] == [[0, 1], [2], [3, 4], [5]]
    assert all(b["image"].shape[-2] == heights[idx[0]] for idx, b in batches)
    regrouped = list(iter_batches(_Samples(samples), batch_size=8, order=[0, 1, 3, 4, 5, 2]))
    assert [idx for idx, _ in regrouped] == [[0, 1, 3, 4, 5], [2]]
