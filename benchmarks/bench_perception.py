"""Throughput of the image pipeline: rendering (images/s, 2 worker processes) and extraction
(images/s through the perception network and its decoding).

Rendering uses the stage's own path (humandiff.imaging.render_units: posing, camera, scene,
ground truth) on random poses of the embedded body model at the default 128 px. Extraction runs
``data/models/perception.pt`` when it exists, else a randomly initialised network of the default
architecture (the speed does not depend on the weights). The machine may be shared: the
per-CPU-second rate of one worker shows what an uncontended core does.

    PYTHONPATH=lib python benchmarks/bench_perception.py [--images 200] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from humandiff.body import DEFAULT_BODY_MODEL, load_body_model
from humandiff.imaging import BodyAssets, RenderSettings, RenderUnit, render_unit, render_units
from humandiff.perception.model import PerceptionNet, load_perception, predict

REPO = Path(__file__).resolve().parents[1]


def random_units(count: int, seed: int = 0) -> list[RenderUnit]:
    """Single-image units of random poses (body pose ~ N(0, 0.3^2) per axis, random heading and shape)."""
    rng = np.random.default_rng(seed)
    return [
        RenderUnit("test", "single", "bench", np.array([i]), 1, -1, (seed, 2, i),
                   global_orient=np.array([[0.0, rng.uniform(-np.pi, np.pi), 0.0]], np.float32),
                   body_pose=rng.normal(0.0, 0.3, (1, 69)).astype(np.float32), transl=np.zeros((1, 3), np.float32),
                   betas=rng.normal(0.0, 1.0, 10).astype(np.float32))
        for i in range(count)
    ]


def bench_render(images: int, workers: int, size: int) -> dict[str, float]:
    settings = RenderSettings(image_size=size)
    units = random_units(images)
    body = BodyAssets.from_model(load_body_model(DEFAULT_BODY_MODEL))
    render_unit(units[0], body, settings)  # warm-up (imports, caches)
    start, cpu = time.perf_counter(), time.process_time()
    for unit in units[: max(images // 4, 1)]:
        render_unit(unit, body, settings)
    single_cpu = (time.process_time() - cpu) / max(images // 4, 1)
    single_wall = (time.perf_counter() - start) / max(images // 4, 1)
    start = time.perf_counter()
    for _ in render_units(units, str(DEFAULT_BODY_MODEL), settings, workers):
        pass
    wall = time.perf_counter() - start
    return {"render_images_per_s": images / wall, "workers": workers, "render_images_per_cpu_s_one_process": 1.0 / single_cpu,
            "render_images_per_s_one_process": 1.0 / single_wall, "image_size": size}


def bench_extract(images: int, threads: int, size: int) -> dict[str, float]:
    torch.set_num_threads(threads)
    model_file = REPO / "data/models/perception.pt"
    model = load_perception(model_file)[0] if model_file.is_file() else PerceptionNet()
    model = model.fast_layout().eval()
    size = model.config.image_size
    rng = np.random.default_rng(0)
    pictures = rng.integers(0, 256, (images, size, size, 3), dtype=np.uint8)
    intrinsics = np.tile([1.5 * size, 1.5 * size, (size - 1) / 2, (size - 1) / 2], (images, 1))
    body_model = load_body_model(DEFAULT_BODY_MODEL)
    predict(model, pictures[:8], intrinsics[:8], body_model, 8)  # warm-up
    start, cpu = time.perf_counter(), time.process_time()
    predict(model, pictures, intrinsics, body_model, 128)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"extract_images_per_s": images / wall, "extract_images_per_cpu_s": images / cpu, "threads": threads,
            "trained_model": model_file.is_file()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200, help="images per measurement")
    parser.add_argument("--workers", type=int, default=2, help="render processes")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for extraction")
    parser.add_argument("--size", type=int, default=128, help="image size (px)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    results = {"load_average_1min": os.getloadavg()[0], "cpus": os.cpu_count()}
    results.update(bench_render(args.images, args.workers, args.size))
    results.update(bench_extract(2 * args.images, args.threads, args.size))
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in results.items()}, indent=2))


if __name__ == "__main__":
    main()
