"""Images per second of the numpy renderer at 128 and 256 px.

Uses the embedded body model (data/body/anny_smpl_neutral.npz, in an A-pose) when present,
otherwise the procedural mannequin (~1.4k vertices, ~2.8k triangles). Two figures per size:
``mesh`` = rasterise + shade (render_mesh), ``person`` = the full random scene
(render_person: background, clothing, light, occluders, noise, joint visibility).
``--workers 2`` runs that many processes (one per core) and reports their combined wall-clock
rate; the per-CPU-second rate shows what one uncontended core does on a shared machine.

    PYTHONPATH=lib python benchmarks/bench_render.py [--images 120] [--workers 1]
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np

from humandiff.render import framing_camera, mannequin, render_mesh, render_person

BODY_FILE = Path(__file__).resolve().parents[1] / "data" / "body" / "anny_smpl_neutral.npz"


@lru_cache(maxsize=1)
def load_body() -> tuple[str, dict[str, np.ndarray]]:
    """(description, {vertices, faces, weights, joints}) of the body to benchmark."""
    if BODY_FILE.is_file():
        import torch

        from humandiff.body import load_body_model, posed_body

        model = load_body_model(BODY_FILE)
        pose = torch.zeros(1, 69)
        pose[0, 15 * 3 + 2], pose[0, 16 * 3 + 2] = -1.1, 1.1  # shoulders down: an A-pose
        with torch.no_grad():
            vertices, joints = posed_body(
                model, torch.zeros(1, 3), pose, torch.zeros(1, model.num_betas), torch.zeros(1, 3)
            )
        return f"{BODY_FILE.name} (A-pose)", {
            "vertices": vertices[0].numpy(),
            "faces": np.asarray(model.faces, dtype=np.int64),
            "weights": model.lbs_weights.numpy(),
            "joints": joints[0].numpy(),
        }
    return "procedural mannequin", mannequin()


def run(size: int, kind: str, images: int, seed: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) rendering ``images`` images of ``kind`` at ``size`` px."""
    _, body = load_body()
    cameras = [
        framing_camera(body["vertices"], size, size, azimuth_deg=azimuth, elevation_deg=10.0, fill=0.85)
        for azimuth in range(0, 360, 30)
    ]
    rng = np.random.default_rng(seed)
    start, start_cpu = time.perf_counter(), time.process_time()
    for index in range(images):
        camera = cameras[index % len(cameras)]
        if kind == "mesh":
            render_mesh(body["vertices"], body["faces"], camera)
        else:
            render_person(body["vertices"], body["faces"], body["weights"], camera, rng, joints=body["joints"])
    return time.perf_counter() - start, time.process_time() - start_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=120, help="images per measurement and worker")
    parser.add_argument("--workers", type=int, default=1, help="processes rendering in parallel")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per setting; the best is kept")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    description, body = load_body()
    print(
        f"body: {description}, {len(body['vertices'])} vertices, {len(body['faces'])} triangles; "
        f"{args.workers} worker(s), best of {args.repeats} x {args.images} images per worker"
    )
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for size in (128, 256):
            for kind in ("mesh", "person"):
                rates, cpu_rates = [], []
                for repeat in range(args.repeats):
                    # Timed inside the workers (which run at the same time), without process start-up.
                    timings = list(
                        pool.map(
                            run,
                            [size] * args.workers,
                            [kind] * args.workers,
                            [args.images] * args.workers,
                            range(repeat * args.workers, (repeat + 1) * args.workers),
                        )
                    )
                    rates.append(args.workers * args.images / max(wall for wall, _ in timings))
                    cpu_rates.append(args.images / max(cpu for _, cpu in timings))
                # On a shared machine the wall-clock rate drops with the load; the CPU-time rate is
                # what one core left to itself would do.
                print(
                    f"{size:4d} px  {kind:6s}  {max(rates):7.1f} images/s wall   "
                    f"{max(cpu_rates):7.1f} images/s per CPU-second (one worker)"
                )


if __name__ == "__main__":
    main()
