"""Orthophoto mapping figures: km^2 per minute, peak memory against raster size, polyline F1.

    python -m benchmarks.bench_geo [--quick] [--model BUNDLE] [--threads 2] [--device auto]

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
   The city is held out only when the model was trained without it (``roadvision data split
   --holdout-cities oslo``); ``--tiles N`` sets the tile count, ``--f1-only`` skips 1 and 2.

``--quick``: a 512 px and a 1024 px mosaic in 512 px blocks (one block, then four), 4 tiles
of 512 px for F1 (a few minutes on 2 cores). The full run: 2048, 4096 and 8192 px mosaics
(0.04 to 0.67 km^2) in 1024 px blocks, 96 tiles for F1 (the first 24 hold about 80 m of dashed
truth, too little: two models' dashed F1 ranked the other way round there than on 96).

``--areas``: analysis by coordinates instead (``POST /v1/areas:analyze``), through a real
server (``python -m roadvision.serving`` on loopback, ``--forward_workers 0``, a real
``redis-server``) over a catalogue of two COGs side by side, a bbox spanning both: the uncached
answer's wall time (seeds' goal < 2 s for 1 km^2) and the cached answers' p50 (goal < 200 ms).
Full: two COGs of 6144 x 11264 px (614 m x 1126 m), a 1 km^2 bbox. ``--quick``: two 512 px
COGs, a 0.003 km^2 bbox; its seconds per km^2 are an extrapolation and say so.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
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
from roadvision.geo.metrics import (
    add_lengths,
    line_confusion,
    polyline_lengths,
    scores_from_lengths,
)

GSD = 0.1
CLASSES = classes_for("lanes")


def _child_map(image: str, bundle: str, threads: int, block: int, device: str) -> None:
    """Map one raster in this (fresh) process; print seconds, km^2 and peak RSS as JSON."""
    import torch

    from roadvision.mapping import MappingConfig, map_raster
    from roadvision.runtime.device import resolve_device
    from roadvision.runtime.inference import load_for_inference

    torch.set_num_threads(threads)
    # as `roadvision predict` loads it: BatchNorm folded, on the device asked for
    model = load_for_inference(bundle, device=resolve_device(device))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory() as tmp:
        result = map_raster(model, image, MappingConfig(gsd=GSD, block=block),
                            Path(tmp) / "classes.tif")
    print(json.dumps({"seconds": result.seconds, "km2": result.area_km2,
                      "device": str(next(model.parameters()).device),
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
                          tmp: Path, device: str = "auto") -> list[dict]:
    rows = []
    for px in sizes:
        tiles = max(1, px // 1024)
        tile_px = px // tiles
        image = tmp / f"mosaic-{px}.tif"
        write_mosaic(image, tmp / f"mosaic-{px}.truth.gpkg", tiles, tiles, tile_px, GSD, seed=0,
                     city="berlin")
        out = subprocess.run([sys.executable, "-m", "benchmarks.bench_geo", "_map", str(image),
                              bundle, str(threads), str(block), device], capture_output=True,
                             text=True,
                             env={**os.environ, "ROADVISION_QUIET": "1"})
        if out.returncode != 0:
            raise SystemExit(out.stderr[-2000:])
        row = json.loads(out.stdout.strip().splitlines()[-1])
        row.update(px=px, megapixels=px * px / 1e6,
                   km2_per_min=row["km2"] / row["seconds"] * 60)
        rows.append(row)
        print(f"  {px:5d} px ({row['km2']:.3f} km^2): {row['seconds']:7.1f} s, "
              f"{row['km2_per_min']:.4f} km^2/min, peak RSS {row['peak_rss_mb']:.0f} MB "
              f"(after loading: {row['rss_before_mb']:.0f} MB), {row['features']} features "
              f"on {row['device']}; seconds {row['timings']}", flush=True)
    return rows


def polyline_f1(n: int, city: str, tile_px: int, bundle: str | None, threads: int,
                tta: str = "none", device: str = "auto") -> tuple[dict, dict]:
    """Per-class scores of the vectoriser ceiling (and the model, given one) on ``n`` tiles,
    and where each true class's length went (``line_confusion`` summed over the tiles).

    The model's mask comes from the product's own block path (``mapping.segment_block``: the
    folded model, the bundle's decision biases and short-piece removal), as ``roadvision
    predict`` and the areas route make it."""
    model = None
    if bundle:
        import torch

        from roadvision.mapping.orthophoto import segment_block
        from roadvision.runtime.device import resolve_device
        from roadvision.runtime.inference import load_for_inference

        torch.set_num_threads(threads)
        model = load_for_inference(bundle, device=resolve_device(device))
    totals: dict[str, dict] = {"ceiling": {}, "model": {}}
    confusion: dict[str, dict] = {"ceiling": {}, "model": {}}
    t = Affine(GSD, 0, 0, 0, -GSD, 0)
    for i in range(n):
        rng = sample_rng(7, "lanes", i)
        sample = render_lanes(rng, city_named(city, rng), tile_px, tile_px, gsd_m=GSD)
        truth = [(f["class"], f["geometry"])
                 for f in tile_truth(sample.meta, tile_px, tile_px, t, GSD)]
        masks = {"ceiling": (sample.meta["mask4"], np.ones((tile_px, tile_px), np.float32))}
        if model is not None:
            masks["model"] = segment_block(model, sample.image, (0, 0, tile_px, tile_px), tta)
        for name, (mask, conf) in masks.items():
            feats = build_features(trace_block(mask, conf, t, GSD, len(CLASSES)), CLASSES)
            lines = [(f["class"], f["painted"]) for f in feats]
            add_lengths(totals[name], polyline_lengths(lines, truth, CLASSES[1:]))
            add_lengths(confusion[name], line_confusion(lines, truth, CLASSES[1:]))
    scores = {name: scores_from_lengths(v) for name, v in totals.items() if v}
    return scores, {name: v for name, v in confusion.items() if v}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(url: str, process: subprocess.Popen, timeout: float = 600.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/v2/models/lanes/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"the server was not ready after {timeout:.0f} s")


def _area_imagery(tmp: Path, quick: bool) -> tuple[Path, tuple[float, ...]]:
    """Two COGs edge to edge (west, east) in one catalogue; a WGS84 bbox spanning both."""
    import rasterio
    from pyproj import Transformer
    from shapely import box

    from roadvision.geo.catalogue import index_folder, write_catalogue

    folder = tmp / "imagery"
    folder.mkdir()
    # quick: 512 px squares; full: 6144 px wide, 11264 px high each (614 m x 1126 m). The
    # WGS84 bbox of a 1 km square in UTM is wider than the square (grid convergence: 1.3 deg
    # in Berlin, ~22 m a side), so the imagery leaves it 50 m or more on every side.
    tiles_x, tiles_y, tile_px = (1, 1, 512) if quick else (6, 11, 1024)
    west = write_mosaic(folder / "west.tif", tmp / "west.truth.gpkg", tiles_x, tiles_y,
                        tile_px, GSD, seed=0, city="berlin")
    east = write_mosaic(folder / "east.tif", tmp / "east.truth.gpkg", tiles_x, tiles_y,
                        tile_px, GSD, seed=1, city="berlin")
    left, bottom, right, top = west.bounds
    with rasterio.open(east.image, "r+") as ds:  # shift east of the west one, edge to edge
        ds.transform = Affine(GSD, 0, right, 0, -GSD, top)
        ds.update_tags(imagery_id="synth-mosaic-berlin-east")
    with rasterio.open(west.image, "r+") as ds:
        ds.update_tags(imagery_id="synth-mosaic-berlin-west")
    catalogue = write_catalogue(folder / "catalogue.json", index_folder(folder))
    if quick:  # 80 m x 40 m across the seam
        area = box(right - 40, top - 45, right + 40, top - 5)
    else:  # 1000 m x 1000 m across the seam
        middle = (bottom + top) / 2
        area = box(right - 500, middle - 500, right + 500, middle + 500)
    to_wgs = Transformer.from_crs(west.epsg, 4326, always_xy=True)
    return catalogue, to_wgs.transform_bounds(*area.bounds)


def areas_figures(bundle: str, threads: int, quick: bool, tmp: Path, cached_calls: int = 20,
                  device: str = "auto") -> dict:
    """Uncached and cached ``POST /v1/areas:analyze`` through a real server and Redis."""
    import httpx

    catalogue, bbox = _area_imagery(tmp, quick)
    binary = shutil.which("redis-server")
    redis_port, port = _free_port(), _free_port()
    env = {**os.environ, "ROADVISION_QUIET": "1", "OMP_NUM_THREADS": str(threads)}
    processes = []
    try:
        redis_args = []
        if binary:
            processes.append(subprocess.Popen(
                [binary, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(tmp)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            redis_args = ["--redis", f"redis://127.0.0.1:{redis_port}/0"]
        log_file = open(tmp / "server.log", "wb")  # noqa: SIM115 - closed below
        server = subprocess.Popen(
            [sys.executable, "-m", "roadvision.serving", "--model", f"lanes={bundle}",
             "--http_port", str(port), "--forward_workers", "0", "--imagery-catalogue",
             str(catalogue), "--max-area-km2", "2", "--areas-rate-limit", "off",
             "--areas-timeout-s", "3600", *redis_args,
             *([] if device == "auto" else ["--device", device])],
            stdout=log_file, stderr=subprocess.STDOUT, env=env)
        processes.append(server)
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, server)
        body = {"bbox": list(bbox)}
        with httpx.Client(base_url=url, timeout=3600) as client:
            start = time.perf_counter()
            first = client.post("/v1/areas:analyze", json=body)
            uncached = time.perf_counter() - start
            if first.status_code != 200:
                raise SystemExit(f"areas answered {first.status_code}: {first.text[:500]}")
            facts = first.json()["roadvision"]
            times = []
            for _ in range(cached_calls if binary else 0):
                start = time.perf_counter()
                again = client.post("/v1/areas:analyze", json=body)
                times.append(time.perf_counter() - start)
                assert again.headers["x-roadvision-cache"] == "hit", again.headers
    finally:
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    # the area the server analysed: the WGS84 bbox, a little more than the UTM square asked
    km2 = facts["area_km2"]
    row = {"area_km2": km2,
           "features": len(first.json()["features"]),
           "uncached_s": round(uncached, 3), "mapping_s": facts["seconds"],
           "uncached_s_per_km2": round(uncached / km2, 1),
           "answer_bytes": len(first.content),
           "imagery": [i["id"] for i in facts["imagery"]], "extrapolated": quick}
    if times:
        row.update(cached_p50_ms=round(float(np.percentile(times, 50)) * 1000, 1),
                   cached_p90_ms=round(float(np.percentile(times, 90)) * 1000, 1),
                   cached_calls=len(times))
    return row


def main(argv: list[str]) -> int:
    if argv and argv[0] == "_map":
        _child_map(argv[1], argv[2], int(argv[3]), int(argv[4]), argv[5])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--model", help="a lanes bundle (default: random-init lanes_small)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto",
                        help="auto (CUDA when present, else CPU), cpu, cuda, cuda:1")
    parser.add_argument("--block", type=int, default=None,
                        help="block side in px (default: 512 with --quick, else 1024)")
    parser.add_argument("--city", default="oslo", help="held-out city for polyline F1")
    parser.add_argument("--tiles", type=int, default=None,
                        help="tiles of 512 px for polyline F1 (default: 4 with --quick, else 96)")
    parser.add_argument("--tta", default="none", choices=("none", "flip", "full"),
                        help="test-time augmentation of the model's masks for polyline F1")
    parser.add_argument("--f1-only", action="store_true",
                        help="polyline F1 only (no throughput or memory runs)")
    parser.add_argument("--areas", action="store_true",
                        help="POST /v1/areas:analyze timings instead (uncached, cached p50)")
    args = parser.parse_args(argv)
    if args.areas:
        with tempfile.TemporaryDirectory() as tmp:
            bundle = _bundle(args.model, Path(tmp))
            which = f"--model {args.model}" if args.model else "random-init lanes_small"
            row = areas_figures(bundle, args.threads, args.quick, Path(tmp),
                                device=args.device)
            scale = " (extrapolated from the quick area)" if args.quick else ""
            print(f"areas ({which}, {args.threads} threads, {GSD} m/px): "
                  f"{row['area_km2']} km^2 uncached {row['uncached_s']} s "
                  f"(mapping {row['mapping_s']} s), {row['uncached_s_per_km2']} s per km^2"
                  f"{scale}; cached p50 {row.get('cached_p50_ms', '-')} ms, "
                  f"p90 {row.get('cached_p90_ms', '-')} ms over {row.get('cached_calls', 0)} "
                  f"calls; {row['features']} features, {row['answer_bytes']} bytes", flush=True)
            print(json.dumps({"areas": row}))
        return 0
    sizes = [512, 1024] if args.quick else [2048, 4096, 8192]
    # Memory is flat once a raster holds more than one block: --quick maps 1 and 4 blocks.
    args.block = args.block or (512 if args.quick else 1024)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        bundle = _bundle(args.model, Path(tmp))
        which = f"--model {args.model}" if args.model else "random-init lanes_small"
        rows = []
        if not args.f1_only:
            print(f"throughput and peak memory ({which}, {args.threads} threads, "
                  f"block {args.block} px, {GSD} m/px):", flush=True)
            rows = throughput_and_memory(sizes, bundle, args.threads, args.block, Path(tmp),
                                         args.device)
        tiles = args.tiles or (4 if args.quick else 96)
        print(f"polyline F1 on {tiles} tiles of city {args.city} (synthetic; held out only if "
              f"the model was trained without it; TTA {args.tta}):", flush=True)
        scores, confusion = polyline_f1(tiles, args.city, 512, args.model, args.threads,
                                        args.tta, args.device)
        for name, per_class in scores.items():
            label = "vectoriser ceiling (true mask)" if name == "ceiling" else "model"
            for cls, s in per_class.items():
                f = [s[k]["f1"] for k in ("0.5m", "1m")]
                shown = ["  -  " if v is None else f"{v:.3f}" for v in f]
                precision = s["0.5m"]["precision"]
                print(f"  {label:32s} {cls:13s} F1@0.5m {shown[0]}  F1@1m {shown[1]}  "
                      f"precision@0.5m {'  -  ' if precision is None else f'{precision:.3f}'}  "
                      f"(true {s['true_length_m']:.0f} m, predicted {s['pred_length_m']:.0f} m)")
        print("  where the true lines went (metres within 0.5 m of a line of each predicted "
              "class; a stretch near two classes counts under both):")
        for name, table in confusion.items():
            for cls, row in sorted(table.items(), key=lambda kv: kv[0] == "none"):
                called = ", ".join(f"{k} {v:.0f}" for k, v in row.items())
                truth = "(no line)" if cls == "none" else cls
                print(f"  {name:8s} true {truth:13s} -> {called}")
        print(json.dumps({"mapping": rows, "polyline": scores, "confusion": confusion,
                          "seconds": round(time.perf_counter() - start, 1)}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
