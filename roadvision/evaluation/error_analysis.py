"""Error analysis: every failure with its metadata, confidence and image, and an HTML report.

The report is one self-contained HTML file, ``error_analysis.html`` (plots embedded as base64
PNG), titled with the model it describes, with sections: summary (a table), sliced metrics
(weather, daytime, scene, city, confidence bin), reliability diagram (roadwork) or per-class IoU
(lanes), confusion matrix, and a gallery of the worst cases (lanes: true and predicted masks
overlaid on the tile, with a colour legend). A banner says so when the data set is synthetic
(its ``dataset.json``), so that nobody reads its scores as real-world figures. ``failures.csv``
lists every failure.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from roadvision.evaluation.evaluate import evaluate

__all__ = ["error_analysis", "failures", "retitle", "model_label", "LANE_FAILURE_IOU", "REPORT"]

LANE_FAILURE_IOU = 0.5  # an image whose lane mIoU is below this counts as a failure
REPORT = "error_analysis.html"
NA = "n/a"  # what a table cell or a bar says for an undefined number (MCC of a one-class slice)
# overlay colours per lane class id (background transparent)
_LANE_COLOURS = np.array([[0, 0, 0], [255, 60, 60], [60, 160, 255], [255, 220, 0]] +
                         [[200, 0, 200]] * 8, np.uint8)


def failures(preds: pd.DataFrame, task: str) -> pd.DataFrame:
    """The failed rows, worst first: roadwork wrong labels by confidence; lanes low IoU."""
    if task == "roadwork":
        return preds[~preds["correct"].astype(bool)].sort_values("confidence", ascending=False)
    iou = preds["iou"].astype("Float64")
    failed = (iou < LANE_FAILURE_IOU).fillna(False) | (iou.isna() & (preds["lane_pixels_pred"] > 0))
    return preds[failed.to_numpy(dtype=bool)].sort_values("iou", na_position="first")


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _img(b64: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}"/>'


def _slice_plots(result: dict) -> list[str]:
    import matplotlib.pyplot as plt

    metric = "mcc" if result["task"] == "roadwork" else "miou_no_bg"
    out = []
    for field, groups in result["slices"].items():
        if field == "confidence":
            continue
        names = list(groups)
        raw = [_number(groups[k].get(metric)) for k in names]
        values = [0.0 if v is None else v for v in raw]
        fig, ax = plt.subplots(figsize=(max(3, 0.8 * len(names) + 1.5), 2.6))
        # An undefined value (MCC of a slice with one class only) would be an invisible bar:
        # it gets a hatched grey stub and says "n/a" instead.
        bars = ax.bar(names, [0.03 if v is None else v for v in raw],
                      color=["#cccccc" if v is None else "#4c72b0" for v in raw])
        for bar, k, v in zip(bars, names, raw, strict=True):
            if v is None:
                bar.set_hatch("///")
            label = f"n={int(groups[k]['n'])}" + ("" if v is not None else f"\n{metric} {NA}")
            ax.annotate(label, (bar.get_x() + bar.get_width() / 2, max(bar.get_height(), 0)),
                        ha="center", va="bottom", fontsize=7)
        ax.set_title(f"{metric} by {field}")
        ax.set_ylim(min(0.0, min(values)) - 0.05, 1.15)
        ax.tick_params(axis="x", labelrotation=30)
        undefined = [k for k, v in zip(names, raw, strict=True) if v is None]
        out.append(_img(_png(fig), f"{metric} by {field}" +
                        (f"; {NA}: {', '.join(undefined)}" if undefined else "")))
    return out


def _reliability_plot(result: dict) -> str:
    import matplotlib.pyplot as plt

    bins = [b for b in result["reliability"] if b["n"]]
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    ax.plot([0.5, 1], [0.5, 1], "--", color="grey", label="perfect")
    ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o-", label="model")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability (ECE {result['metrics']['ece']:.3f})")
    ax.legend(fontsize=7)
    return _img(_png(fig), "reliability diagram")


def _iou_plot(result: dict) -> str:
    import matplotlib.pyplot as plt

    per = result["metrics"]["per_class_iou"]
    fig, ax = plt.subplots(figsize=(4, 2.6))
    ax.bar(list(per), [_number(v) or 0.0 for v in per.values()], color="#55a868")
    ax.set_ylim(0, 1.05)
    ax.set_title("IoU per class")
    ax.tick_params(axis="x", labelrotation=30)
    return _img(_png(fig), "per-class IoU")


def _confusion_plot(cm: list[list[int]], names: list[str]) -> str:
    import matplotlib.pyplot as plt

    arr = np.asarray(cm, dtype=np.float64)
    norm = arr / np.maximum(arr.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 * len(names) + 1.5, 1.0 * len(names) + 1))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{int(arr[i, j])}", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(names)), names, rotation=30, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    return _img(_png(fig), "confusion matrix")


def _overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = image.copy()
    sel = mask > 0
    out[sel] = (0.3 * out[sel] + 0.7 * _LANE_COLOURS[mask[sel]]).astype(np.uint8)
    return out


def _gallery(bundle_dir, data_dir, result: dict, worst: pd.DataFrame) -> list[str]:
    import matplotlib.pyplot as plt

    from roadvision.runtime.readers import read_image

    items = []
    if result["task"] == "roadwork":
        for _, row in worst.iterrows():
            fig, ax = plt.subplots(figsize=(2.4, 2.4))
            ax.imshow(read_image(data_dir, row["image"]))
            ax.axis("off")
            ax.set_title(f"label {row['label']}  p={row['prob']:.2f}\n{row['city']} / "
                         f"{row['weather']} / {row['daytime']}", fontsize=7)
            items.append(_img(_png(fig), str(row["id"])))
        return items
    from roadvision.runtime.dataset import ManifestDataset
    from roadvision.runtime.inference import load_for_inference, predict_dataset
    from roadvision.runtime.readers import load_rows

    model = load_for_inference(bundle_dir)
    rows = load_rows(data_dir, None)
    rows = rows.set_index(rows["id"].astype(str)).loc[worst["id"].astype(str)].reset_index(
        drop=True)
    ds = ManifestDataset(data_dir, rows, model.cfg)
    for (_, row), res in zip(rows.iterrows(), predict_dataset(model, ds, batch_size=4),
                             strict=True):
        image = read_image(data_dir, row["image"])
        fig, axes = plt.subplots(1, 3, figsize=(6.6, 2.4))
        for ax, (title, img) in zip(axes, [("tile", image), ("true", _overlay(image, res["mask"])),
                                           ("predicted", _overlay(image, res["pred"]))],
                                    strict=True):
            ax.imshow(img)
            ax.set_title(title, fontsize=7)
            ax.axis("off")
        iou = worst.loc[worst["id"].astype(str) == str(row["id"]), "iou"].iloc[0]
        fig.suptitle(f"{row['id']}  lane IoU={'n/a' if pd.isna(iou) else f'{iou:.2f}'}",
                     fontsize=8)
        items.append(_img(_png(fig), str(row["id"])))
    return items


def _number(value) -> float | None:
    """``value`` as a finite float, None when it is missing or undefined (None, NaN, pd.NA)."""
    if value is None or value is pd.NA or isinstance(value, bool | str):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _fmt(value, integer: bool = False) -> str:
    """One cell as people read it: counts as integers, other numbers with 3 decimals, text as
    it is, anything undefined as "n/a"."""
    if isinstance(value, bool | np.bool_):
        return str(bool(value)).lower()
    if isinstance(value, str):
        return value
    number = _number(value)
    if number is None:
        return NA
    if integer or isinstance(value, int | np.integer):
        return str(int(round(number)))
    return f"{number:.3f}"


def _integer_columns(df: pd.DataFrame) -> set[str]:
    """Columns that hold counts or ids: integer dtypes, ``n``/``n_*``, and float columns whose
    values are all whole numbers above 1 (a count stored as float after a NULL crept in)."""
    out = set()
    for col in df.columns:
        values = pd.to_numeric(df[col], errors="coerce").dropna()
        if pd.api.types.is_bool_dtype(df[col]) or values.empty:
            continue
        if pd.api.types.is_integer_dtype(df[col]) or col == "n" or str(col).startswith("n_") or \
                (len(values) == df[col].notna().sum() and (values % 1 == 0).all()
                 and values.abs().max() > 1):
            out.add(col)
    return out


def _table(df: pd.DataFrame, limit: int = 200) -> str:
    whole = _integer_columns(df)
    text = df.head(limit).astype(object).apply(
        lambda col: [_fmt(v, integer=col.name in whole) for v in col])
    return text.to_html(index=False, border=0, classes="tbl", escape=True)


def _summary(result: dict, split: str | None, tta: str, protocol: str | None,
             n_failures: int) -> str:
    """The run's settings and every scalar metric as a two-column table."""
    rows = [("task", result["task"]), ("split", split or "all"), ("tta", tta),
            ("protocol", protocol or "default"), ("images", int(result["n"])),
            (f"headline ({result['headline_name']})", result["headline"]),
            ("failures", int(n_failures))]
    rows += [(k, v) for k, v in result["metrics"].items() if not isinstance(v, list | dict)]
    cells = "".join(f"<tr><th>{html.escape(str(k))}</th><td>"
                    f"{html.escape(_fmt(v, integer=k in ('n', 'images', 'failures')))}</td></tr>"
                    for k, v in rows)
    return f'<table class="tbl summary" id="summary-table">{cells}</table>'


def _legend(class_names: list[str]) -> str:
    """The colour of each lane class in the overlays (background is left transparent)."""
    items = " ".join(
        f'<span class="swatch" style="background:rgb{tuple(int(c) for c in _LANE_COLOURS[i])}">'
        f'</span> {html.escape(name)}' for i, name in enumerate(class_names) if i > 0)
    return f'<p class="legend" id="legend">Overlay colours: {items}</p>'


def _dataset_banner(data_dir: str | Path) -> str:
    """A visible "synthetic data" label when the data contract says the data is synthetic."""
    from roadvision.data.contract import read_info

    try:
        info = read_info(data_dir)
    except Exception:  # noqa: BLE001 (no contract, no banner: the evaluation read the rows)
        return ""
    if not info.synthetic:
        return ""
    source = f" (source: {html.escape(info.source)})" if info.source else ""
    return ('<p class="synthetic" id="synthetic"><b>Synthetic data</b>' + source +
            ": these scores measure the model on generated images, not on real-world ones."
            "</p>")


def model_label(model_name: str, version: str | int) -> str:
    """How a report names a registered model version: ``roadwork v3``."""
    return f"{model_name} v{version}"


def _bundle_label(bundle_dir: str | Path) -> str:
    """How a report names a bundle that is not (yet) registered: its preset and content id."""
    from roadvision.models.bundle import bundle_version, read_bundle_config

    config = read_bundle_config(bundle_dir)
    return f"{config.get('preset', 'model')} bundle {bundle_version(bundle_dir)} (not registered)"


_TITLE = re.compile(r"<title>.*?</title>|<h1 id=\"title\">.*?</h1>", re.S)


def retitle(page: str, label: str) -> str:
    """The report ``page`` titled for ``label`` (the registered name and version, known only
    after the report was written)."""
    text = f"Error analysis: {html.escape(label)}"
    return _TITLE.sub(lambda m: f"<title>{text}</title>" if m[0].startswith("<title>")
                      else f'<h1 id="title">{text}</h1>', page)


_STYLE = ("body{font-family:sans-serif;margin:1.5em}img{margin:4px}"
          ".tbl{font-size:12px;border-collapse:collapse}.tbl td,.tbl th{padding:2px 6px;"
          "border-bottom:1px solid #ddd;text-align:left}.summary th{font-weight:normal;"
          "color:#444}.synthetic{background:#fff3cd;border:1px solid #e0c36c;padding:6px 10px}"
          ".swatch{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;"
          "vertical-align:middle;border:1px solid #888}")


def error_analysis(bundle_dir: str | Path, data_dir: str | Path, out_dir: str | Path,
                   split: str | None = "test", tta: str = "none", protocol: str | None = None,
                   max_gallery: int = 12, label: str | None = None) -> Path:
    """Evaluate, list every failure, and write ``out_dir/error_analysis.html``; returns its path.

    ``label`` names the model in the title (:func:`model_label`: ``roadwork v3``); without it
    the title names the bundle's preset and content id.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    out = Path(out_dir)
    result = evaluate(bundle_dir, data_dir, split=split, tta=tta, protocol=protocol, out_dir=out)
    preds = pd.read_parquet(out / "predictions.parquet")
    task = result["task"]
    fails = failures(preds, task)
    fails = fails.assign(image_path=[str(Path(data_dir) / p) for p in fails["image"]])
    fails.to_csv(out / "failures.csv", index=False)
    names = (["no_roadwork", "roadwork"] if task == "roadwork"
             else list(result["metrics"]["per_class_iou"]))
    worst = fails.head(max_gallery) if protocol is None else fails.head(0)

    sections: list[tuple[str, str, str]] = []
    sections.append(("summary", "Summary", _summary(result, split, tta, protocol, len(fails))))
    sections.append(("slices", "Sliced metrics", "".join(_slice_plots(result))))
    if task == "roadwork":
        conf = pd.DataFrame(result["slices"]["confidence"]).T.reset_index(names="confidence bin")
        sections.append(("reliability", "Reliability diagram",
                         _reliability_plot(result) + _table(conf)))
    else:
        sections.append(("per-class", "Per-class IoU", _iou_plot(result)))
    sections.append(("confusion", "Confusion matrix",
                     _confusion_plot(result["metrics"]["confusion_matrix"], names)))
    gallery = "".join(_gallery(bundle_dir, data_dir, result, worst)) or "<p>none</p>"
    if task == "lanes":
        gallery = _legend(names) + gallery
    sections.append(("gallery", "Worst cases", gallery))
    sections.append(("failures", f"Failures ({len(fails)}; all in failures.csv)",
                     _table(fails.drop(columns=["image_path"]))))
    body = "\n".join(f'<section id="{sid}"><h2>{html.escape(title)}</h2>{content}</section>'
                     for sid, title, content in sections)
    title = f"Error analysis: {html.escape(label or _bundle_label(bundle_dir))}"
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
            f"<style>{_STYLE}</style></head><body><h1 id=\"title\">{title}</h1>"
            f"{_dataset_banner(data_dir)}{body}</body></html>")
    path = out / REPORT
    path.write_text(page)
    return path
