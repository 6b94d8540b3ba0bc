"""Error analysis: every failure with its metadata, confidence and image, and an HTML report.

The report is one self-contained HTML file (plots embedded as base64 PNG) with sections:
summary, sliced metrics (weather, daytime, scene, city, confidence bin), reliability diagram
(roadwork) or per-class IoU (lanes), confusion matrix, and a gallery of the worst cases (lanes:
true and predicted masks overlaid on the tile). ``failures.csv`` lists every failure.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from roadvision.evaluation.evaluate import evaluate

__all__ = ["error_analysis", "failures", "LANE_FAILURE_IOU"]

LANE_FAILURE_IOU = 0.5  # an image whose lane mIoU is below this counts as a failure
REPORT = "report.html"
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
        values = [groups[k].get(metric) or 0.0 for k in names]
        fig, ax = plt.subplots(figsize=(max(3, 0.8 * len(names) + 1.5), 2.6))
        bars = ax.bar(names, values, color="#4c72b0")
        for bar, k in zip(bars, names, strict=True):
            ax.annotate(f"n={groups[k]['n']}", (bar.get_x() + bar.get_width() / 2,
                                                bar.get_height()), ha="center", fontsize=7)
        ax.set_title(f"{metric} by {field}")
        ax.set_ylim(min(0.0, min(values)) - 0.05, 1.05)
        ax.tick_params(axis="x", labelrotation=30)
        out.append(_img(_png(fig), f"{metric} by {field}"))
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
    ax.bar(list(per), [v or 0.0 for v in per.values()], color="#55a868")
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
    from roadvision.models.bundle import load_bundle
    from roadvision.runtime.dataset import ManifestDataset
    from roadvision.runtime.inference import predict_dataset
    from roadvision.runtime.readers import load_rows

    model = load_bundle(bundle_dir)
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


def _table(df: pd.DataFrame, limit: int = 200) -> str:
    return df.head(limit).to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="NULL",
                                  border=0, classes="tbl")


def error_analysis(bundle_dir: str | Path, data_dir: str | Path, out_dir: str | Path,
                   split: str | None = "test", tta: str = "none", protocol: str | None = None,
                   max_gallery: int = 12) -> Path:
    """Evaluate, list every failure, and write ``out_dir/report.html``; returns its path."""
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
    summary = {k: v for k, v in result["metrics"].items() if not isinstance(v, list | dict)}
    summary_html = (f"<p>task <b>{task}</b>, split <b>{split}</b>, tta <b>{tta}</b>, protocol "
                    f"<b>{protocol or 'default'}</b>, n = {result['n']}, headline "
                    f"{result['headline_name']} = <b>{result['headline']:.4f}</b>, failures "
                    f"{len(fails)}</p><pre>{html.escape(json.dumps(summary, indent=1))}</pre>")
    sections.append(("summary", "Summary", summary_html))
    sections.append(("slices", "Sliced metrics", "".join(_slice_plots(result))))
    if task == "roadwork":
        conf = pd.DataFrame(result["slices"]["confidence"]).T.reset_index(names="confidence bin")
        sections.append(("reliability", "Reliability diagram",
                         _reliability_plot(result) + _table(conf)))
    else:
        sections.append(("per-class", "Per-class IoU", _iou_plot(result)))
    sections.append(("confusion", "Confusion matrix",
                     _confusion_plot(result["metrics"]["confusion_matrix"], names)))
    sections.append(("gallery", "Worst cases",
                     "".join(_gallery(bundle_dir, data_dir, result, worst)) or "<p>none</p>"))
    sections.append(("failures", f"Failures ({len(fails)}; all in failures.csv)",
                     _table(fails.drop(columns=["image_path"]))))
    body = "\n".join(f'<section id="{sid}"><h2>{html.escape(title)}</h2>{content}</section>'
                     for sid, title, content in sections)
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>roadvision error analysis"
            "</title><style>body{font-family:sans-serif;margin:1.5em}img{margin:4px}"
            ".tbl{font-size:12px;border-collapse:collapse}.tbl td,.tbl th{padding:2px 6px;"
            "border-bottom:1px solid #ddd}</style></head><body>"
            f"<h1>Error analysis: {html.escape(Path(bundle_dir).name)}</h1>{body}</body></html>")
    path = out / REPORT
    path.write_text(page)
    return path
