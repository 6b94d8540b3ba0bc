"""Multi-view extraction: shapes, the small-image path, and that each view shows its region."""

from __future__ import annotations

import numpy as np
import pytest

from roadvision.data.multiview import extract_views, view_boxes, view_count


def _gradient_image(width: int, height: int) -> np.ndarray:
    """Red grows left->right and green top->bottom, so a view's mean colour locates it."""
    xs = np.linspace(0, 255, width, dtype=np.float32)[None, :].repeat(height, 0)
    ys = np.linspace(0, 255, height, dtype=np.float32)[:, None].repeat(width, 1)
    return np.stack([xs, ys, np.full_like(xs, 128)], axis=-1).astype(np.uint8)


def test_large_image_gives_twelve_views_of_the_requested_size() -> None:
    views = extract_views(_gradient_image(4032, 3024), view_size=224)
    assert views.shape == (12, 224, 224, 3) and views.dtype == np.uint8


def test_small_image_gives_only_the_global_view() -> None:
    views = extract_views(_gradient_image(224, 224), view_size=224)
    assert views.shape == (1, 224, 224, 3)


def test_num_views_caps_the_stack() -> None:
    assert extract_views(_gradient_image(1600, 1200), view_size=160, num_views=5).shape[0] == 5


def test_each_view_shows_its_region() -> None:
    image = _gradient_image(2000, 1500)
    views = extract_views(image, view_size=128)
    for view, (x0, y0, x1, y1) in zip(views, view_boxes(2000, 1500), strict=True):
        expected = image[y0:y1, x0:x1].reshape(-1, 3).mean(0)
        assert np.abs(view.reshape(-1, 3).mean(0) - expected).max() < 3.0


def test_tiles_cover_the_image_with_overlap() -> None:
    boxes = view_boxes(4032, 3024)
    tiles = boxes[1:10]
    covered = np.zeros((3024, 4032), dtype=bool)
    for x0, y0, x1, y1 in tiles:
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    (ax0, _, ax1, _), (bx0, _, _, _) = tiles[0], tiles[1]
    assert (ax1 - bx0) / (ax1 - ax0) == pytest.approx(0.25, abs=0.01)


def test_deterministic() -> None:
    image = np.random.default_rng(0).integers(0, 255, (900, 1200, 3), dtype=np.uint8)
    assert np.array_equal(extract_views(image, 128), extract_views(image, 128))


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        extract_views(np.zeros((10, 10), dtype=np.uint8), 8)
    with pytest.raises(ValueError, match="num_views"):
        extract_views(np.zeros((10, 10, 3), dtype=np.uint8), 8, num_views=13)


@pytest.mark.parametrize(("width", "height", "view_size", "num_views"),
                         [(320, 240, 160, 12), (321, 240, 160, 12), (320, 240, 64, 10),
                          (4032, 3024, 224, 5)])
def test_view_count_predicts_extract_views(width, height, view_size, num_views) -> None:
    image = np.zeros((height, width, 3), np.uint8)
    expected = len(extract_views(image, view_size, num_views))
    assert view_count(width, height, view_size, num_views) == expected
