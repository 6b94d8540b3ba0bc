"""Training augmentations (albumentations 2.0.8) for both tasks, plus lane-aware crops.

Levels: ``none``, ``light``, ``medium``, ``heavy``. Ensemble members differ in level, so the
level is a config value, never hard-coded in the loop.

- roadwork (street level): flips, small rotations/zoom/perspective, colour, weather (rain, fog,
  shadow, sun flare), sensor noise, JPEG and blur - the NATIX validator applies the last group
  to its queries, so training sees it too.
- lanes (aerial, orientation-free): the 8 square symmetries (a lane class does not depend on
  the tile's rotation), colour, cast shadows, haze and noise. No free rotation: nearest
  resampling breaks 1-3 px lines.

Appearance groups (``APPEARANCE``, issue 13): on top of any level, ``appearance=("colour",
"style", "noise", "blur", "jpeg")`` adds strong appearance changes that a model trained on one
renderer must learn to ignore: white balance, gamma and channel swaps; style and texture
(posterize, equalize, tone curve, emboss, sharpen, plasma-textured shade, greyscale, sepia);
corruption-style sensor noise; defocus, motion and zoom blur; JPEG at any quality and
down-and-up resampling. Each group can be switched alone (the cross-domain benchmark measures
each). Lanes get milder blur and resampling: their lines are 1-3 px wide.

Reproducibility: every call takes an explicit ``seed`` (the dataset derives it from the run
seed, the epoch and the sample index). The result depends only on that seed, not on a global
RNG, so a resumed run sees exactly the augmentations the uninterrupted run would have seen.
Argument names are albumentations 2.x ones (``std_range``, ``fog_coef_range``, ``fill``...).
"""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np

from roadvision.errors import UserError

__all__ = [
    "LEVELS",
    "APPEARANCE",
    "build_augment",
    "appearance_transforms",
    "check_appearance",
    "build_view_augment",
    "apply_augment",
    "augment_views",
    "lane_crop",
]

LEVELS = ("none", "light", "medium", "heavy")
#: Strong appearance augmentation groups (any subset, on top of a level).
APPEARANCE = ("colour", "style", "noise", "blur", "jpeg")

# level -> strength multiplier and per-transform probability scale
_STRENGTH = {"light": 0.5, "medium": 1.0, "heavy": 1.5}


def _check_level(level: str) -> None:
    if level not in LEVELS:
        raise UserError(f"augment level {level!r} is not one of {LEVELS}")


def _weather(s: float, image_size: int) -> list[A.BasicTransform]:
    """Rain, fog, shadows and sun flare: the conditions the error analysis slices by."""
    radius = max(4, image_size // 6)
    return [
        A.OneOf(
            [
                A.RandomRain(slant_range=(-10, 10), drop_width=1, blur_value=3,
                             brightness_coefficient=0.8, p=1.0),
                A.RandomFog(fog_coef_range=(0.1, min(0.3 * s, 0.5)), alpha_coef=0.08, p=1.0),
                A.RandomShadow(shadow_roi=(0, 0.4, 1, 1), num_shadows_limit=(1, 2),
                               shadow_intensity_range=(0.3, 0.6), p=1.0),
                A.RandomSunFlare(flare_roi=(0, 0, 1, 0.5), src_radius=radius,
                                 num_flare_circles_range=(2, 4), p=1.0),
            ],
            p=min(0.3 * s, 0.6),
        )
    ]


def _sensor(s: float) -> list[A.BasicTransform]:
    """Noise, blur and JPEG: the NATIX protocol's second stage."""
    return [
        A.GaussNoise(std_range=(0.01, 0.04 * s), p=min(0.2 * s, 0.5)),
        A.OneOf([A.GaussianBlur(blur_limit=(3, 3), sigma_limit=(0.1, 1.0 * s), p=1.0),
                 A.MotionBlur(blur_limit=(3, 5), p=1.0)], p=min(0.15 * s, 0.4)),
        A.ImageCompression(quality_range=(max(30, int(95 - 40 * s)), 95), p=min(0.3 * s, 0.6)),
    ]


def check_appearance(groups) -> tuple[str, ...]:
    """Validated appearance groups (a list, tuple or comma string) in canonical order."""
    names = [g.strip() for g in (groups.split(",") if isinstance(groups, str) else groups or ())]
    names = [g for g in names if g]
    if names == ["all"]:
        return APPEARANCE
    unknown = [g for g in names if g not in APPEARANCE]
    if unknown:
        raise UserError(f"unknown appearance augmentation {unknown}; valid: "
                        f"{', '.join(APPEARANCE)} or all")
    return tuple(g for g in APPEARANCE if g in names)


def appearance_transforms(task: str, groups) -> list[A.BasicTransform]:
    """The strong appearance transforms of ``groups`` (see the module docstring)."""
    thin = task == "lanes"  # 1-3 px lines: no blur or resampling that erases them
    out: list[A.BasicTransform] = []
    for group in check_appearance(groups):
        if group == "colour":
            out += [
                A.PlanckianJitter(mode="blackbody", p=0.4),
                A.RandomGamma(gamma_limit=(60, 160), p=0.4),
                A.OneOf([A.RGBShift(r_shift_limit=30, g_shift_limit=30, b_shift_limit=30),
                         A.ChannelShuffle(),
                         A.HueSaturationValue(hue_shift_limit=25, sat_shift_limit=50,
                                              val_shift_limit=30)], p=0.6),
                A.RandomBrightnessContrast(brightness_limit=0.35, contrast_limit=0.4, p=0.5),
            ]
        elif group == "style":
            out += [
                A.OneOf([A.Posterize(num_bits=(3, 6)), A.Equalize(),
                         A.RandomToneCurve(scale=0.3), A.ToGray(), A.ToSepia()], p=0.4),
                A.OneOf([A.Emboss(alpha=(0.2, 0.5)), A.Sharpen(alpha=(0.2, 0.5)),
                         A.PlasmaShadow()], p=0.4),
            ]
        elif group == "noise":
            out.append(A.OneOf([A.GaussNoise(std_range=(0.02, 0.1)),
                                A.ISONoise(color_shift=(0.01, 0.06), intensity=(0.1, 0.6)),
                                A.MultiplicativeNoise(multiplier=(0.85, 1.15), per_channel=True,
                                                      elementwise=True)], p=0.5))
        elif group == "blur":
            if thin:
                out.append(A.OneOf([A.GaussianBlur(blur_limit=(3, 3), sigma_limit=(0.3, 0.9)),
                                    A.MotionBlur(blur_limit=(3, 3))], p=0.3))
            else:
                out.append(A.OneOf([A.Defocus(radius=(1, 3)), A.MotionBlur(blur_limit=(3, 9)),
                                    A.ZoomBlur(max_factor=(1.0, 1.05)),
                                    A.GaussianBlur(blur_limit=(3, 7))], p=0.4))
        elif group == "jpeg":
            low = 40 if thin else 15
            out += [A.Downscale(scale_range=(0.6 if thin else 0.35, 0.9), p=0.3),
                    A.ImageCompression(quality_range=(low, 95), p=0.6)]
    return out


def build_augment(task: str, level: str = "medium", image_size: int = 224,
                  appearance=()) -> A.Compose | None:
    """The whole-image pipeline for ``task`` at ``level`` (None for ``none`` without
    ``appearance`` groups), with the strong ``appearance`` groups appended.

    ``image_size`` is the typical input side; it scales size-dependent parameters (sun flare
    radius, dropout holes) so tiny test images and full-size photos get comparable effects.
    """
    _check_level(level)
    if task not in ("lanes", "roadwork"):
        raise UserError(f"unknown task {task!r}; expected 'lanes' or 'roadwork'")
    strong = appearance_transforms(task, appearance)
    if level == "none":
        return A.Compose(strong) if strong else None
    s = _STRENGTH[level]
    colour = A.OneOf(
        [
            A.RandomBrightnessContrast(brightness_limit=0.2 * s, contrast_limit=0.2 * s, p=1.0),
            A.HueSaturationValue(hue_shift_limit=int(10 * s), sat_shift_limit=int(15 * s),
                                 val_shift_limit=int(10 * s), p=1.0),
            A.ColorJitter(brightness=0.2 * s, contrast=0.2 * s, saturation=0.15 * s,
                          hue=0.03 * s, p=1.0),
        ],
        p=min(0.5 * s, 0.8),
    )
    if task == "roadwork":
        geometric: list[A.BasicTransform] = [
            A.HorizontalFlip(p=0.5),
            A.Affine(rotate=(-15 * s, 15 * s), scale=(1 - 0.15 * s, 1 + 0.15 * s),
                     border_mode=cv2.BORDER_REFLECT_101, p=min(0.3 * s, 0.6)),
        ]
        if level != "light":
            geometric.append(A.Perspective(scale=(0.02, 0.05 * s), p=0.2))
        extra: list[A.BasicTransform] = []
        if level == "heavy":
            hole = (0.05, 0.15)
            extra.append(A.CoarseDropout(num_holes_range=(1, 3), hole_height_range=hole,
                                         hole_width_range=hole, fill=0, p=0.2))
        transforms = geometric + [colour] + _weather(s, image_size) + _sensor(s) + extra
    else:
        geometric = [A.SquareSymmetry(p=1.0)] if level != "light" else [A.HorizontalFlip(p=0.5),
                                                                       A.VerticalFlip(p=0.5)]
        if level == "heavy":
            # scale only (no rotation); nearest-neighbour masks keep thin lines intact at 0.9-1.1x
            geometric.append(A.Affine(scale=(0.9, 1.1), border_mode=cv2.BORDER_REFLECT_101,
                                      mask_interpolation=cv2.INTER_NEAREST, p=0.3))
        aerial_weather = [
            A.RandomShadow(shadow_roi=(0, 0, 1, 1), num_shadows_limit=(1, 2),
                           shadow_intensity_range=(0.2, 0.5), p=min(0.2 * s, 0.4)),
            A.RandomFog(fog_coef_range=(0.05, 0.2 * s), alpha_coef=0.05, p=min(0.1 * s, 0.2)),
        ]
        transforms = geometric + [colour] + aerial_weather + [
            A.GaussNoise(std_range=(0.01, 0.03 * s), p=min(0.2 * s, 0.4)),
        ]
    return A.Compose(transforms + strong)


def build_view_augment(level: str = "medium") -> A.Compose | None:
    """A photometric-only pipeline applied to each extracted view with its own seed.

    Views of one image then differ in colour and noise, which is what the multi-view
    consistency loss needs to learn invariance from; geometry stays shared so view positions
    still mean what the view extractor says.
    """
    _check_level(level)
    if level in ("none", "light"):
        return None
    s = _STRENGTH[level]
    return A.Compose([
        A.RandomBrightnessContrast(brightness_limit=0.1 * s, contrast_limit=0.1 * s, p=0.5),
        A.GaussNoise(std_range=(0.01, 0.03 * s), p=0.3),
    ])


def apply_augment(
    pipeline: A.Compose | None, image: np.ndarray, mask: np.ndarray | None = None, *, seed: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Run ``pipeline`` with a fixed seed; returns (image, mask), unchanged when no pipeline."""
    if pipeline is None:
        return image, mask
    pipeline.set_random_seed(int(seed) % (2**32))
    if mask is None:
        return pipeline(image=image)["image"], None
    out = pipeline(image=image, mask=mask)
    return out["image"], out["mask"]


def augment_views(pipeline: A.Compose | None, views: np.ndarray, *, seed: int) -> np.ndarray:
    """Augment each view of ``views`` [V,H,W,3] uint8 differently (seed + view index)."""
    if pipeline is None:
        return views
    return np.stack([apply_augment(pipeline, v, seed=seed * 131 + i)[0]
                     for i, v in enumerate(views)])


def lane_crop(
    image: np.ndarray,
    mask: np.ndarray,
    size: int,
    rng: np.random.Generator,
    p_lane: float = 0.8,
) -> tuple[np.ndarray, np.ndarray]:
    """A ``size`` x ``size`` crop that contains lane pixels with probability ``p_lane``.

    Lane pixels are ~0.3% of a tile: uniform random crops are mostly background and the lane
    classes starve. We centre the crop on a random lane pixel (jittered inside the crop) when
    there is one; the remaining share of crops stays uniform so background statistics are
    still learnt. Images smaller than ``size`` are reflect-padded (mask padded with 0).
    """
    h, w = mask.shape[:2]
    if h < size or w < size:
        ph, pw = max(0, size - h), max(0, size - w)
        image = np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="reflect")
        mask = np.pad(mask, ((0, ph), (0, pw)), mode="constant")
        h, w = mask.shape[:2]
    ys, xs = np.nonzero(mask)
    if ys.size and rng.random() < p_lane:
        k = int(rng.integers(ys.size))
        cy, cx = int(ys[k]), int(xs[k])
        y0 = int(np.clip(cy - rng.integers(0, size), 0, h - size))
        x0 = int(np.clip(cx - rng.integers(0, size), 0, w - size))
    else:
        y0 = int(rng.integers(0, h - size + 1))
        x0 = int(rng.integers(0, w - size + 1))
    return (np.ascontiguousarray(image[y0:y0 + size, x0:x0 + size]),
            np.ascontiguousarray(mask[y0:y0 + size, x0:x0 + size]))
