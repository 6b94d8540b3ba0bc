"""Model figures: parameter counts, offline ImageNet check, student speed-up, TTA cost.

    python -m benchmarks.bench_models [--repeats 5] [--batch 2]

Latencies are CPU wall-clock medians measured in the same run, interleaved so that load from
other processes hits every model alike. The student takes its own inputs (5 views of 160 px)
and the teacher its own (12 views of 224 px), as in deployment.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from roadvision.models import collate, create_model, list_models, prepare_sample, run_tta


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _gflops(model: torch.nn.Module) -> float:
    """Forward GFLOPs for one input at the model's nominal size (lanes: one input_size tile;
    roadwork: a large image, i.e. num_views views of view_size)."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = model.cfg
    if cfg.task == "lanes":
        batch = {"image": torch.randn(1, 3, cfg.input_size, cfg.input_size)}
    else:
        batch = {"views": torch.randn(1, cfg.num_views, 3, cfg.view_size, cfg.view_size)}
    model.eval()
    with FlopCounterMode(display=False) as counter:  # (not under no_grad: MHA hooks need grads)
        model(batch)
    return counter.get_total_flops() / 1e9


def _imagenet_check() -> None:
    import skimage.data
    import timm
    from PIL import Image

    from roadvision.models.config import IMAGENET_MEAN, IMAGENET_STD
    from roadvision.models.encoders import lite0_imagenet_state_dict

    model = timm.create_model("efficientnet_lite0")
    model.load_state_dict(lite0_imagenet_state_dict())
    model.eval()
    for name in ("chelsea", "coffee"):
        image = np.asarray(Image.fromarray(getattr(skimage.data, name)()).resize(
            (224, 224), Image.BICUBIC))
        x = torch.from_numpy(image.astype(np.float32) / 255).permute(2, 0, 1)
        x = (x - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None,
                                                                                         None]
        with torch.no_grad():
            p = model(x[None]).softmax(-1)[0]
        top = p.topk(3)
        print(f"  skimage {name}: top-3 ImageNet classes {top.indices.tolist()} "
              f"(p={[round(v, 3) for v in top.values.tolist()]})")


def _latency(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 = least disturbed by a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device cpu")
    print("presets: parameters, forward GFLOPs per input at nominal size:")
    flops = {}
    for name in list_models():
        model = create_model(name, encoder_weights="random")
        flops[name] = _gflops(model)
        print(f"  {name:18s} {_params(model):>10,d} params {flops[name]:8.2f} GFLOPs")
    print(f"  student/teacher FLOP ratio: "
          f"{flops['roadwork_small'] / flops['roadwork_student']:.2f}x fewer")

    print("offline EfficientNet-Lite0 ImageNet weights:")
    _imagenet_check()

    # A large street image becomes cfg.num_views views of cfg.view_size; the batch is built at
    # that nominal geometry so the figure does not depend on the view extractor's choices.
    models = {n: create_model(n).eval() for n in ("roadwork_small", "roadwork_student")}
    small_image = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    batches = {}
    for n, m in models.items():
        sample = prepare_sample(m.cfg, small_image, None)
        sample["views"] = torch.randn(m.cfg.num_views, 3, m.cfg.view_size, m.cfg.view_size)
        sample["view_mask"] = torch.ones(m.cfg.num_views, dtype=torch.bool)
        batches[n] = collate([sample] * args.batch)
    for n, b in batches.items():
        print(f"  {n}: input views {tuple(b['views'].shape)}")
    times: dict[str, list[float]] = {n: [] for n in models}
    with torch.inference_mode():
        for n, m in models.items():  # warm-up
            m(batches[n])
        for _ in range(args.repeats):
            for n, m in models.items():
                times[n] += _latency(lambda m=m, n=n: m(batches[n]), 1)
    med = {n: statistics.median(t) for n, t in times.items()}
    print(f"roadwork forward, batch {args.batch} large images (median of {args.repeats}):")
    for n, t in med.items():
        print(f"  {n:18s} {1000 * t:8.1f} ms/batch")
    print(f"  student speed-up: {med['roadwork_small'] / med['roadwork_student']:.2f}x")

    print("TTA cost on roadwork_student (one batched forward per call):")
    student, batch = models["roadwork_student"], batches["roadwork_student"]
    for mode in ("none", "flip", "full"):
        t = statistics.median(_latency(lambda mode=mode: run_tta(student, batch, mode),
                                       args.repeats))
        print(f"  tta={mode:5s} {1000 * t:8.1f} ms/batch")

    lanes = create_model("lanes_small").eval()
    print("lanes_small (input_size 256):")
    for size in (256, 512):
        tile = {"image": torch.randn(1, 3, size, size)}
        t = statistics.median(_latency(lambda tile=tile: run_tta(lanes, tile, "none"),
                                       args.repeats))
        print(f"  {size}x{size} tile, sliding window, tta=none: {1000 * t:8.1f} ms")


if __name__ == "__main__":
    main()
