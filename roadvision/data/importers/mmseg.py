"""MMSegmentation ``img_dir``/``ann_dir`` folders -> a lanes data set.

Layout (MMSegmentation's ``CustomDataset``/``BaseSegDataset`` convention)::

    SRC/img_dir/train/0001.jpg    SRC/ann_dir/train/0001.png
    SRC/img_dir/val/0002.jpg      SRC/ann_dir/val/0002.png

Images and annotations pair up by file stem (``seg_map_suffix`` such as ``_labelTrainIds`` is
stripped). The sub-folder becomes the ``split`` column (``training``/``validation`` as in ADE20K
map to ``train``/``val``); a flat ``img_dir`` gives no split.

Labels. Our contract has no ignore class (every pixel is a class id < ``num_classes``), so:

* ``reduce_zero_label=True`` follows MMSegmentation: annotation 0 means "ignore" and every other
  id k becomes k-1. The ignore pixels are then mapped to background (0).
* 255, MMSegmentation's ``ignore_index``, is likewise mapped to background.

Both mappings are counted in ``dataset.json`` (``extra.mmseg.ignore_pixels_to_background``) so
the choice is visible. Any other id >= ``num_classes`` quarantines the sample
(``mask_out_of_range``): it is a taxonomy mismatch, not something to guess about.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from roadvision.data.confine import PathRefused, read_confined
from roadvision.data.contract import classes_for
from roadvision.data.images import IMAGE_FORMATS, ImageError, decode_mask
from roadvision.data.importers import register_importer
from roadvision.data.importers._common import DatasetWriter, ImportReport, require_source
from roadvision.errors import UserError

IGNORE_INDEX = 255
_SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "validation": "val",
                "valid": "val", "test": "test", "testing": "test"}
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


@register_importer("mmseg")
def import_mmseg(src: str | Path, out: str | Path, *, reduce_zero_label: bool = False,
                 num_classes: int = 4, seg_map_suffix: str = ".png",
                 max_pixels: int | None = None, overwrite: bool = False) -> ImportReport:
    """Import an MMSegmentation folder (see the module docstring).

    Image and annotation files are read through ``data.confine``: a symbolic link (or a file
    under a linked folder) is quarantined as ``outside_root`` and never read.
    """
    root = require_source(src)
    img_dir, ann_dir = root / "img_dir", root / "ann_dir"
    if not img_dir.is_dir() or not ann_dir.is_dir():
        raise UserError(f"{root}: not an MMSegmentation folder (expected img_dir/ and ann_dir/)")
    images = sorted(p for p in img_dir.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)
    if not images:
        raise UserError(f"{img_dir}: no images ({', '.join(_IMAGE_SUFFIXES)})")
    inputs = {"source": str(root.resolve()), "reduce_zero_label": reduce_zero_label,
              "num_classes": num_classes, "seg_map_suffix": seg_map_suffix}
    with DatasetWriter(out, task="lanes", classes=classes_for("lanes", num_classes),
                       source="mmseg", inputs=inputs, overwrite=overwrite,
                       **({"max_pixels": max_pixels} if max_pixels else {})) as writer:
        remapped = 0
        for path in images:
            remapped += _import_one(writer, root, img_dir, path, seg_map_suffix,
                                    reduce_zero_label)
        return writer.finish("mmseg", extra={"mmseg": {
            "reduce_zero_label": reduce_zero_label,
            "ignore_pixels_to_background": remapped,
            "rule": "ignore (255, or 0 with reduce_zero_label) -> background 0",
            "image_formats": list(IMAGE_FORMATS),
        }})


def _import_one(writer: DatasetWriter, root: Path, img_dir: Path, path: Path,
                seg_map_suffix: str, reduce_zero_label: bool) -> int:
    """Stage one image/annotation pair; returns the number of ignore pixels remapped."""
    rel = path.relative_to(img_dir)
    sub = rel.parent.as_posix()
    sample_id = (rel.with_suffix("")).as_posix()
    file = f"img_dir/{rel.as_posix()}"
    ann_rel = f"ann_dir/{(rel.parent / (path.stem + seg_map_suffix)).as_posix()}"
    try:
        image = read_confined(root, file)
        ann_bytes = read_confined(root, ann_rel) if image is not None else None
    except PathRefused as exc:
        writer.reject_path(sample_id, exc)
        return 0
    if image is None:
        writer.reject(sample_id, "missing_file", f"{file} is not readable", file=file)
        return 0
    if ann_bytes is None:
        writer.reject(sample_id, "missing_mask", f"no annotation {ann_rel}", file=file)
        return 0
    try:
        # Decode with room for 255 (ignore); the class-id check happens after remapping.
        raw = decode_mask(ann_bytes, 256)
    except ImageError as exc:
        writer.reject(sample_id, exc.reason, str(exc), file=ann_rel, data=ann_bytes)
        return 0
    mask, ignored = _remap(raw, reduce_zero_label)
    split = _SPLIT_NAMES.get(sub.split("/")[0].lower()) if sub != "." else None
    writer.add(id=sample_id, image=image, file=file, mask=mask, mask_file=ann_rel,
               meta={"split": split})
    return ignored


def _remap(raw: np.ndarray, reduce_zero_label: bool) -> tuple[np.ndarray, int]:
    """Apply reduce_zero_label and map ignore pixels to background; returns (mask, #ignored)."""
    mask = raw.astype(np.int32)
    if reduce_zero_label:
        ignore = (mask == 0) | (mask == IGNORE_INDEX)
        mask = mask - 1
    else:
        ignore = mask == IGNORE_INDEX
    mask[ignore] = 0
    return mask, int(ignore.sum())
