"""Augmentation pipelines: shapes, determinism per seed, masks kept aligned, lane-aware crops."""

from __future__ import annotations

import numpy as np
import pytest

from roadvision.data import augment as aug
from roadvision.errors import UserError


def _image(size: int = 48, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (size, size, 3), dtype=np.uint8)


@pytest.mark.parametrize("task", ["lanes", "roadwork"])
@pytest.mark.parametrize("level", ["light", "medium", "heavy"])
def test_pipelines_keep_shape_and_are_seeded(task, level):
    pipe = aug.build_augment(task, level, image_size=48)
    img = _image()
    mask = np.zeros((48, 48), np.uint8)
    mask[:, 20:22] = 1
    a1, m1 = aug.apply_augment(pipe, img, mask, seed=7)
    a2, m2 = aug.apply_augment(pipe, img, mask, seed=7)
    assert a1.shape == img.shape and a1.dtype == np.uint8
    assert np.array_equal(a1, a2) and np.array_equal(m1, m2)  # same seed, same result
    outs = {aug.apply_augment(pipe, img, mask, seed=s)[0].tobytes() for s in range(6)}
    assert len(outs) > 1  # different seeds differ
    assert set(np.unique(m1)) <= {0, 1}  # masks stay class ids (nearest resampling)


def test_lane_mask_follows_geometry():
    # a vertical line becomes horizontal under a 90 degree rotation: image and mask move together
    pipe = aug.build_augment("lanes", "medium")
    img = np.zeros((32, 32, 3), np.uint8)
    mask = np.zeros((32, 32), np.uint8)
    img[:, 10:12] = 255
    mask[:, 10:12] = 1
    for seed in range(10):
        a, m = aug.apply_augment(pipe, img, mask, seed=seed)
        bright = a.mean(-1) > 128
        assert (bright[m == 1]).mean() > 0.8


def test_none_level_is_identity_and_bad_level_is_rejected():
    assert aug.build_augment("roadwork", "none") is None
    img = _image()
    out, mask = aug.apply_augment(None, img, None, seed=0)
    assert out is img and mask is None
    with pytest.raises(UserError, match="augment level"):
        aug.build_augment("roadwork", "extreme")


def test_views_get_different_augmentations():
    pipe = aug.build_view_augment("heavy")
    views = np.stack([_image(16, 0)] * 4)
    out = aug.augment_views(pipe, views, seed=3)
    assert out.shape == views.shape
    assert len({v.tobytes() for v in out}) > 1


def test_lane_crop_contains_lane_pixels():
    rng = np.random.default_rng(0)
    mask = np.zeros((128, 128), np.uint8)
    mask[100:102, 5:60] = 2  # a thin line in one corner region
    img = _image(128)
    hits = 0
    for _ in range(50):
        ci, cm = aug.lane_crop(img, mask, 32, rng, p_lane=1.0)
        assert ci.shape == (32, 32, 3) and cm.shape == (32, 32)
        hits += bool((cm > 0).any())
    assert hits == 50
    # uniform crops (p_lane=0) miss the line most of the time: the lane-aware crop matters
    misses = sum(not (aug.lane_crop(img, mask, 32, rng, p_lane=0.0)[1] > 0).any()
                 for _ in range(50))
    assert misses > 25


def test_lane_crop_pads_small_images():
    rng = np.random.default_rng(0)
    ci, cm = aug.lane_crop(_image(20), np.ones((20, 20), np.uint8), 32, rng)
    assert ci.shape == (32, 32, 3) and cm.shape == (32, 32)
    assert cm[:20, :20].all() and not cm[20:, :].any()


@pytest.mark.parametrize("group", aug.APPEARANCE)
def test_each_appearance_group_changes_pixels_not_labels(group):
    # Alone, on top of no level: seeded, shape-keeping, pixel-only (a lane mask never moves).
    for task in ("lanes", "roadwork"):
        pipe = aug.build_augment(task, "none", image_size=48, appearance=[group])
        img = np.full((48, 48, 3), 90, np.uint8)
        img[:, 20:23] = 230
        img[10:14] = (40, 120, 200)
        mask = np.zeros((48, 48), np.uint8)
        mask[:, 20:23] = 1
        changed = 0
        for seed in range(12):
            a, m = aug.apply_augment(pipe, img, mask, seed=seed)
            assert a.shape == img.shape and a.dtype == np.uint8 and np.array_equal(m, mask)
            assert np.array_equal(a, aug.apply_augment(pipe, img, mask, seed=seed)[0])
            changed += int(np.abs(a.astype(int) - img).mean() > 1.0)
        assert changed >= 4, (task, group)


def test_appearance_groups_are_validated_and_ordered():
    assert aug.check_appearance("jpeg,colour") == ("colour", "jpeg")
    assert aug.check_appearance("all") == aug.APPEARANCE
    assert aug.check_appearance(()) == ()
    with pytest.raises(UserError, match="unknown appearance augmentation.*valid: colour"):
        aug.check_appearance(["cartoon"])
    # the level's pipeline plus the groups: longer than the level alone
    base = aug.build_augment("roadwork", "light")
    strong = aug.build_augment("roadwork", "light", appearance=aug.APPEARANCE)
    assert len(strong.transforms) > len(base.transforms)
