"""Model registry, presets and module contracts (timm test_models.py style: every preset)."""

from __future__ import annotations

import pytest
import torch
from _models import lanes_batch, roadwork_batch

from roadvision.errors import UserError
from roadvision.models import (
    LaneSegmenter,
    ModelConfig,
    RoadworkClassifier,
    create_model,
    list_models,
)
from roadvision.models.layers import (
    GatedAttention,
    GatedAttentionBlock,
    GatedViewFusion,
    MetadataEncoder,
    ViewPruning,
    gps_features,
)

REQUIRED = {"lanes_tiny", "lanes_small", "roadwork_tiny", "roadwork_small", "roadwork_student"}


def _finite_grads(model: torch.nn.Module) -> None:
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert grads, "no parameter received a gradient"
    assert all(torch.isfinite(g).all() for g in grads)


def test_registry_lists_required_presets():
    assert set(list_models()) >= REQUIRED
    assert set(list_models("lanes_*")) == {n for n in list_models() if n.startswith("lanes_")}


def test_unknown_model_lists_valid_names():
    with pytest.raises(UserError, match="roadwork_tiny"):
        create_model("roadwork_huge")


def test_overrides_apply_and_none_is_dropped():
    model = create_model("roadwork_tiny", use_metadata=False, prune_k=None)
    assert model.cfg.use_metadata is False and model.metadata is None
    assert model.cfg.prune_k == create_model("roadwork_tiny").cfg.prune_k
    with pytest.raises(UserError, match="unknown model config key"):
        create_model("roadwork_tiny", not_a_field=1)


@pytest.mark.parametrize("name", sorted(REQUIRED | set(list_models())))
def test_preset_forward_backward(name):
    # Tiny inputs whatever the preset's nominal size: convs and global pooling take any size.
    torch.manual_seed(0)
    model = create_model(name, encoder_weights="random")
    assert isinstance(model.cfg, ModelConfig) and model.cfg.preset == name
    if model.cfg.task == "lanes":
        batch = lanes_batch(b=2, size=64)
        out = model(batch)
        assert out["logits"].shape == (2, model.cfg.num_classes, 64, 64)
        out["logits"].mean().backward()
    else:
        batch = roadwork_batch(b=2, v=3, size=32)
        out = model(batch)
        kept = min(3, model.cfg.prune_k) if model.cfg.view_pruning else 3
        assert out["logits"].shape == (2,)
        assert out["view_logits"].shape == (2, kept)
        assert out["weather_logits"].shape == (2, 5)
        (out["logits"].sum() + out["view_logits"].sum() + out["weather_logits"].sum()).backward()
    _finite_grads(model)


def test_lanes_12_classes_and_odd_size():
    model = create_model("lanes_tiny", num_classes=12)
    assert model.cfg.num_classes == 12 and model.cfg.classes[8] == "crosswalk"
    out = model({"image": torch.randn(1, 3, 50, 70)})
    assert out["logits"].shape == (1, 12, 50, 70)
    assert isinstance(model, LaneSegmenter)


@pytest.mark.parametrize(
    "switches",
    [{}, {"view_pruning": False}, {"gated_attention": False}, {"gated_fusion": False},
     {"use_metadata": False}, {"num_attn_layers": 0}, {"use_text": True}],
)
def test_roadwork_ablation_switches(switches):
    model = create_model("roadwork_tiny", **switches)
    assert isinstance(model, RoadworkClassifier)
    out = model(roadwork_batch())
    out["logits"].sum().backward()
    assert torch.isfinite(out["logits"]).all()
    _finite_grads(model)


@pytest.mark.parametrize("use_text", [False, True])
def test_all_null_metadata_gives_finite_outputs_and_grads(use_text):
    torch.manual_seed(0)
    model = create_model("roadwork_tiny", use_text=use_text)
    model.train()
    batch = roadwork_batch(b=3, null_metadata=True)
    out = model(batch)
    for value in out.values():
        if value.is_floating_point():
            assert torch.isfinite(value).all()
    (out["logits"].sum() + out["view_logits"].sum()).backward()
    _finite_grads(model)
    # The learnt NULL embeddings are actually used (they receive gradient).
    enc = model.metadata
    assert enc.gps_null.grad is not None and enc.gps_null.grad.abs().sum() > 0
    null_row = enc.embeddings["weather"].weight.grad[-1]
    assert null_row.abs().sum() > 0


def test_null_and_known_metadata_differ():
    torch.manual_seed(0)
    model = create_model("roadwork_tiny", metadata_dropout=0.0).eval()
    known = roadwork_batch(b=2)
    null = {**known, **{k: v for k, v in roadwork_batch(b=2, null_metadata=True).items()
                        if k not in ("views", "view_mask")}}
    with torch.no_grad():
        assert not torch.allclose(model(known)["logits"], model(null)["logits"])


def test_single_view_works_with_pruning():
    model = create_model("roadwork_tiny", prune_k=3)
    out = model(roadwork_batch(b=2, v=1))
    assert out["view_logits"].shape == (2, 1)
    out["logits"].sum().backward()
    _finite_grads(model)


def test_padded_views_do_not_change_prediction():
    """A sample padded with garbage views (view_mask False) predicts as if alone."""
    torch.manual_seed(0)
    model = create_model("roadwork_tiny", prune_k=5).eval()
    batch = roadwork_batch(b=1, v=2)
    padded = dict(batch)
    padded["views"] = torch.cat([batch["views"], 100 * torch.randn(1, 3, 3, 32, 32)], dim=1)
    padded["view_mask"] = torch.tensor([[True, True, False, False, False]])
    with torch.no_grad():
        a, b = model(batch)["logits"], model(padded)["logits"]
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_view_pruning_keeps_top_k_and_global():
    pruning = ViewPruning(dim=4, k=2, keep_global=True).eval()
    with torch.no_grad():
        pruning.scorer[0].weight.fill_(1.0)
        pruning.scorer[0].bias.zero_()
        pruning.scorer[1].weight.zero_()
        pruning.scorer[1].bias.zero_()
        pruning.scorer[1].weight[0, 0] = 1.0  # score = normalised first feature
    tokens = torch.zeros(1, 5, 4)
    tokens[0, :, 0] = torch.tensor([-3.0, 1.0, 5.0, 2.0, -1.0])  # best non-global: view 2
    kept, mask, index, scores = pruning(tokens.requires_grad_(), torch.ones(1, 5, dtype=torch.bool))
    assert index.tolist() == [[0, 2]]
    assert kept.shape == (1, 2, 4) and mask.all()
    kept.sum().backward()
    assert pruning.scorer[1].weight.grad.abs().sum() > 0  # the scorer learns through the gate

    no_global = ViewPruning(dim=4, k=2, keep_global=False).eval()
    no_global.load_state_dict(pruning.state_dict())
    assert no_global(tokens, torch.ones(1, 5, dtype=torch.bool))[2].tolist() == [[2, 3]]
    # k >= V keeps every view
    assert ViewPruning(4, k=8)(tokens, torch.ones(1, 5, dtype=torch.bool))[0].shape[1] == 5


def test_view_pruning_samples_views_in_training_and_is_exact_in_eval():
    torch.manual_seed(0)
    pruning = ViewPruning(dim=8, k=2, keep_global=True)
    tokens, mask = torch.randn(1, 6, 8), torch.ones(1, 6, dtype=torch.bool)
    with torch.no_grad():
        scores = pruning.scorer(tokens).squeeze(-1)[0, 1:]
    seen = {tuple(pruning(tokens, mask)[2][0].tolist()) for _ in range(300)}
    assert all(index[0] == 0 for index in seen)  # the global view is always kept
    assert {index[1] for index in seen} == {1, 2, 3, 4, 5}  # every view gets its chance
    pruning.eval()
    best = int(scores.argmax()) + 1
    assert {tuple(pruning(tokens, mask)[2][0].tolist()) for _ in range(20)} == {(0, best)}


def test_gated_attention_gate_in_unit_interval_and_switchable():
    torch.manual_seed(0)
    attn = GatedAttention(16, num_heads=2, gated=True)
    torch.nn.init.normal_(attn.gate.weight, std=3.0)
    x = torch.randn(2, 5, 16)
    out = attn(x)
    assert out.shape == x.shape
    gate = attn.last_gate
    assert gate.shape == (2, 5, 16) and gate.min() >= 0 and gate.max() <= 1
    assert gate.std() > 0  # input-dependent, not a constant
    plain = GatedAttention(16, num_heads=2, gated=False)
    assert plain.gate is None and plain(x).shape == x.shape
    block = GatedAttentionBlock(16, 2)
    mask = torch.tensor([[True, True, False, False, False]] * 2)
    y = block(x, mask)
    # Masked tokens cannot influence the valid ones.
    x2 = x.clone()
    x2[:, 2:] = 50.0
    torch.testing.assert_close(block(x2, mask)[:, :2], y[:, :2])


def test_gated_fusion_gates_and_masking():
    torch.manual_seed(0)
    fusion = GatedViewFusion(16, num_heads=2, gated=True)
    tokens = torch.randn(2, 4, 16)
    mask = torch.tensor([[True, True, True, True], [True, False, False, False]])
    out = fusion(tokens, mask)
    assert out.shape == (2, 16)
    assert fusion.last_gate.min() >= 0 and fusion.last_gate.max() <= 1
    assert (fusion.last_gate[1, 1:] == 0).all()
    mean = GatedViewFusion(16, 2, gated=False)(tokens, mask)
    torch.testing.assert_close(mean[1], tokens[1, 0])


def test_metadata_encoder_shapes_and_gps_features():
    enc = MetadataEncoder(dim=8, num_frequencies=4)
    out = enc({}, batch_size=3)  # nothing given = everything NULL
    assert out.shape == (3, 8) and torch.isfinite(out).all()
    feats = gps_features(torch.tensor([[0.0, 0.0], [90.0, 180.0]]), 4)
    assert feats.shape == (2, 16)
    per_coord = feats.view(2, 2, 2, 4)  # [B, (lat, lon), (sin, cos), frequency]
    assert torch.allclose(per_coord[0, :, 0], torch.zeros(2, 4))  # sin(0) = 0
    assert torch.allclose(per_coord[0, :, 1], torch.ones(2, 4))  # cos(0) = 1
    assert torch.allclose(per_coord[1, 0, 0, 0], torch.tensor(1.0))  # sin(90 deg) = 1


def test_model_config_validates():
    with pytest.raises(UserError, match="task"):
        ModelConfig(task="detection")
    with pytest.raises(UserError, match="temperature"):
        ModelConfig(task="roadwork", temperature=0.0)
    cfg = ModelConfig(task="lanes")
    assert cfg.classes[0] == "background" and ModelConfig.from_dict(cfg.to_dict()) == cfg


def test_logit_ensemble_averages_and_checks_members():
    from roadvision.models import LogitEnsemble

    torch.manual_seed(0)
    a, b = create_model("roadwork_tiny").eval(), create_model("roadwork_tiny").eval()
    batch = roadwork_batch()
    with torch.no_grad():
        la, lb = a(batch)["logits"], b(batch)["logits"]
        ens = LogitEnsemble([a, b], weights=[3, 1]).eval()
        torch.testing.assert_close(ens(batch)["logits"], 0.75 * la + 0.25 * lb)
    assert ens.cfg.task == "roadwork"
    with pytest.raises(UserError, match="view_size"):
        LogitEnsemble([a, create_model("roadwork_tiny", view_size=64)])
    with pytest.raises(UserError, match="weights"):
        LogitEnsemble([a, b], weights=[1])
