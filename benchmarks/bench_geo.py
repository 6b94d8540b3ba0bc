"""Orthophoto mapping figures: km^2 per minute, peak memory against raster size, polyline F1.

    python -m benchmarks.bench_geo [--quick] [--model BUNDLE] [--threads 2]

1. **Throughput**: a generated GeoTIFF mosaic (tiles of the generator edge to edge, 10 cm/px)
   through ``roadvision.mapping.map_raster`` (windowed read, sliding-window inference with
   overlap blending, class GeoTIFF, vectorisation), torch on ``--threads`` CPU threads:
   km^2 per minute. Without ``--model`` the model is a random-init ``lanes_small`` (the
   architecture sets the speed, not the weights).
2. **Peak memory against raster size**: each mosaic size mapped in a fresh process, its peak
   RSS (``ru_maxrss``) reported beside the raster's pixel count; the goal is flat.
3. **Polyline F1** per class at 0.5 m and 1 m on a held-out city (``--city``, default oslo),
   against the generator's exact ground-truth vectors. With ``--model`` it scores that model;
   always it also scores the *vectoriser ceiling*: the renderer's own label mask traced into
   lines (what the vectoriser loses when the segmentation is perfect). Synthetic figures.

``--quick``: a 512 px and a 1024 px mosaic in 512 px blocks (one block, then four), 4 tiles
of 512 px for F1 (a few minutes on 2 cores). The full run: 2048, 4096 and 8192 px mosaics
(0.04 to 0.67 km^2) in 1024 px blocks, 24 tiles.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from affine import Affine

from roadvision.data.contract import classes_for
from roadvision.data.synth import sample_rng
from roadvision.data.synth.geotiff import city_named, tile_truth, write_mosaic
from roadvision.data.synth.lanes import render_lanes
from roadvision.geo.features import build_features, trace_block
from roadvision.geo.metrics import add_lengths, polyline_lengths, scores_from_lengths

GSD = 0.1
CLASSES = classes_for("lanes")


def _child_map(image: str, bundle: str, threads: int, block: int) -> None:
    """Map one raster in this (fresh) process; print seconds, km^2 and peak RSS as JSON."""
    import torch

    from roadvision.mapping import MappingConfig, map_raster
    from roadvision.models.bundle import load_bundle

    torch.set_num_threads(threads)
    model = load_bundle(bundle)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory() as tmp:
        result = map_raster(model, image, MappingConfig(gsd=GSD, block=block),
                            Path(tmp) / "classes.tif")
    print(json.dumps({"seconds": result.seconds, "km2": result.area_km2,
                      "features": len(result.features), "rss_before_mb": rss_before / 1024,
                      "timings": result.timings,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def _bundle(model: str | None, tmp: Path) -> str:
    if model:
        return model
    import torch

    from roadvision.models import create_model
    from roadvision.models.bundle import save_bundle, update_bundle_config

    torch.manual_seed(0)
    path = save_bundle(create_model("lanes_small"), tmp / "bundle")
    update_bundle_config(path, extra={"gsd_m": GSD})
    return str(path)


def throughput_and_memory(sizes: list[int], bundle: str, threads: int, block: int,
                          tmp: Path) -> list[dict]:
    rows = []
    for px in sizes:
        tiles = max(1, px // 1024)
        tile_px = px // tiles
        image = tmp / f"mosaic-{px}.tif"
        write_mosaic(image, tmp / f"mosaic-{px}.truth.gpkg", tiles, tiles, tile_px, GSD, seed=0,
                     city="berlin")
        out = subprocess.run([sys.executable, "-m", "benchmarks.bench_geo", "_map", str(image),
                              bundle, str(threads), str(block)], capture_output=True, text=True,
                             env={**os.environ, "ROADVISION_QUIET": "1"})
        if out.returncode != 0:
            raise SystemExit(out.stderr[-2000:])
        row = json.loads(out.stdout.strip().splitlines()[-1])
        row.update(px=px, megapixels=px * px / 1e6,
                   km2_per_min=row["km2"] / row["seconds"] * 60)
        rows.append(row)
        print(f"  {px:5d} px ({row['km2']:.3f} km^2): {row['seconds']:7.1f} s, "
              f"{row['km2_per_min']:.4f} km^2/min, peak RSS {row['peak_rss_mb']:.0f} MB "
              f"(after loading: {row['rss_before_mb']:.0f} MB), {row['features']} features; "
              f"seconds {row['timings']}",
              flush=True)
    return rows


def polyline_f1(n: int, city: str, tile_px: int, bundle: str | None, threads: int) -> dict:
    """Per-class scores of the vectoriser ceiling (and the model, given one) on ``n`` tiles."""
    model = None
    if bundle:
        import torch

        from roadvision.models.bundle import load_bundle
        from roadvision.models.preprocess import prepare_sample
        from roadvision.runtime.inference import predict_proba

        torch.set_num_threads(threads)
        model = load_bundle(bundle)
    totals: dict[str, dict] = {"ceiling": {}, "model": {}}
    t = Affine(GSD, 0, 0, 0, -GSD, 0)
    for i in range(n):
        rng = sample_rng(7, "lanes", i)
        sample = render_lanes(rng, city_named(city, rng), tile_px, tile_px, gsd_m=GSD)
        truth = [(f["class"], f["geometry"])
                 for f in tile_truth(sample.meta, tile_px, tile_px, t, GSD)]
        masks = {"ceiling": (sample.meta["mask4"], np.ones((tile_px, tile_px), np.float32))}
        if model is not None:
            probs = predict_proba(model, [prepare_sample(model.cfg, sample.image)])[0]
            conf, ids = probs.max(dim=0)
            masks["model"] = (ids.numpy().astype(np.uint8), conf.numpy())
        for name, (mask, conf) in masks.items():
            feats = build_features(trace_block(mask, conf, t, GSD, len(CLASSES)), CLASSES)
            add_lengths(totals[name], polyline_lengths(
                [(f["class"], f["painted"]) for f in feats], truth, CLASSES[1:]))
    return {name: scores_from_lengths(v) for name, v in totals.items() if v}


def main(argv: list[str]) -> int:
    if argv and argv[0] == "_map":
        _child_map(argv[1], argv[2], int(argv[3]), int(argv[4]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--model", help="a lanes bundle (default: random-init lanes_small)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--block", type=int, default=None,
                        help="block side in px (default: 512 with --quick, else 1024)")
    parser.add_argument("--city", default="oslo", help="held-out city for polyline F1")
    args = parser.parse_args(argv)
    sizes = [512, 1024] if args.quick else [2048, 4096, 8192]
    # Memory is flat once a raster holds more than one block: --quick maps 1 and 4 blocks.
    args.block = args.block or (512 if args.quick else 1024)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        bundle = _bundle(args.model, Path(tmp))
        which = f"--model {args.model}" if args.model else "random-init lanes_small"
        print(f"throughput and peak memory ({which}, {args.threads} threads, "
              f"block {args.block} px, {GSD} m/px):", flush=True)
        rows = throughput_and_memory(sizes, bundle, args.threads, args.block, Path(tmp))
        print(f"polyline F1 on held-out city {args.city} (synthetic):", flush=True)
        scores = polyline_f1(4 if args.quick else 24, args.city, 512, args.model, args.threads)
        for name, per_class in scores.items():
            label = "vectoriser ceiling (true mask)" if name == "ceiling" else "model"
            for cls, s in per_class.items():
                f = [s[k]["f1"] for k in ("0.5m", "1m")]
                shown = ["  -  " if v is None else f"{v:.3f}" for v in f]
                print(f"  {label:32s} {cls:13s} F1@0.5m {shown[0]}  F1@1m {shown[1]}  "
                      f"(true {s['true_length_m']:.0f} m, predicted {s['pred_length_m']:.0f} m)")
        print(json.dumps({"mapping": rows, "polyline": scores,
                          "seconds": round(time.perf_counter() - start, 1)}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
