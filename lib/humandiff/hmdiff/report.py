"""HMDiff's report (the ``report_hmdiff`` stage's logic): Tables 1, 3, 4, 5 and 6 in the paper's
layout with the paper's numbers beside ours (``paper.yaml``), the findings checked, and the pictures.

Inputs: the rows ``eval_hmdiff@<run>`` wrote (``<run>.json``: MPVE, MPJPE, PA-MPJPE in mm, steps;
``<run>.npz``: per-image errors, figure meshes, samples, the R_k history). No wall-clock figure
is read (no stage may depend on one): the FPS of Table 6 is measured by ``eval_hmdiff`` into
``reports/metrics/hmdiff_speed/`` and by ``benchmarks/bench_hmdiff.py``; the report gives each
row's compute instead (multiply-accumulates per image, :func:`humandiff.hmdiff.model.forward_macs`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import cv2
import numpy as np
import yaml

from humandiff.eval.report import format_value, line_plot, markdown_table
from humandiff.imaging.draw import contact_sheet, label
from humandiff.io.artifacts import ArtifactError, load_npz

PAPER_FILE = "paper.yaml"
METRICS = ("mpve_mm", "mpjpe_mm", "pa_mpjpe_mm")
#: Table rows: (run name, label).
TABLE3 = (("baseline_a", "Baseline A (one pass)"), ("baseline_b", "Baseline B (stacked)"), ("hmdiff", "Ours (HMDiff, DAT)"))
TABLE4 = (("no_dat_image", "Image Feature"), ("no_dat_pose", "Pose Feature"), ("no_dat_both", "Both Features"),
          ("hmdiff", "Ours (with DAT)"))
TABLE5 = (("start_from_pose", "Ours w/ H_U"), ("direct_l2", "Direct L_2"), ("single_pose", "Ours w/ u_c"),
          ("no_activation", "Ours w/o AS"), ("paper_literal", "Ours, DAT as Alg. 1 literally (x_t step, every level)"),
          ("hmdiff", "Ours"))
TABLE1 = (("regression_head", "HMR-style regression head (perception network)"), ("baseline_a", "Baseline A"),
          ("hmdiff", "Ours (HMDiff)"))
#: Where ScoreHMR's row will come from once its stages exist (not read until then: see docs/hmdiff.md).
SCOREHMR_ROW = "scorehmr"


def paper_numbers() -> dict[str, Any]:
    """The paper's tables as quoted in :data:`PAPER_FILE`; a malformed file is a one-line error."""
    path = Path(__file__).parent / PAPER_FILE
    try:
        data = yaml.safe_load(path.read_text())
        for key in ("table1", "table3", "table4", "table5", "table6"):
            data[key]  # noqa: B018 - presence check
        return data
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{path}: cannot read the paper's numbers ({type(exc).__name__}: {exc})") from None


@dataclass
class Row:
    """One evaluated run: its JSON summary and NPZ arrays."""

    summary: dict[str, Any]
    arrays: dict[str, np.ndarray]


def load_rows(eval_dir: str | Path, names: Sequence[str]) -> dict[str, Row]:
    """Every run's files; a missing or malformed one is a one-line error naming it (a report is never
    built on missing inputs)."""
    rows = {}
    for name in names:
        path = Path(eval_dir) / f"{name}.json"
        if not path.is_file():
            raise ArtifactError(f"{path}: file not found (run eval_hmdiff@{name})")
        try:
            summary = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"{path}: not valid JSON ({type(exc).__name__})") from None
        # a row whose chains diverged in any image has null metrics (run.evaluate_run); its share is > 0
        diverged = isinstance(summary, dict) and isinstance(summary.get("diverged"), (int, float)) \
            and summary["diverged"] > 0 and all(summary.get(m) is None for m in METRICS)
        if not isinstance(summary, dict) or (not diverged and any(not isinstance(summary.get(m), (int, float)) for m in METRICS)):
            raise ArtifactError(f"{path}: missing field(s) {', '.join(METRICS)}")
        arrays = load_npz(Path(eval_dir) / f"{name}.npz", {"vertices": (-1, -1, 3)}, finite=not diverged)
        rows[name] = Row(summary, arrays)
    return rows


def _ours(rows: Mapping[str, Row], name: str) -> list[str]:
    if name not in rows:
        return ["(not run)"] * 3
    if rows[name].summary[METRICS[0]] is None:
        return ["diverged (NaN)"] * 3
    return [format_value(rows[name].summary[m], 1) for m in METRICS]


def _paper(values: Sequence[float | None] | None, count: int = 3) -> list[str]:
    if values is None:
        return ["-"] * count
    return ["-" if v is None else format_value(float(v), 1) for v in list(values)[:count]]


def tables(rows: Mapping[str, Row], paper: Mapping[str, Any], compute: Mapping[str, float], images: int) -> str:
    """Tables 1, 3, 4, 5 and 6 as markdown (ours on our test subset; the paper's on 3DPW / Human3.6M)."""
    head = ["method", "MPVE", "MPJPE", "PA-MPJPE"]
    parts = [f"### Table 1: comparison (ours: our rendered single-view test set, first {images} images; paper: 3DPW, Human3.6M)\n",
             markdown_table(["method (ours)", "MPVE", "MPJPE", "PA-MPJPE"],
                            [[label_, *_ours(rows, name)] for name, label_ in TABLE1]
                            + [["ScoreHMR refinement", "(hook: not yet run)", "", ""]]),
             "\nThe paper's Table 1, as printed:\n",
             markdown_table(["method (paper)", "3DPW MPVE", "3DPW MPJPE", "3DPW PA-MPJPE", "H36M MPJPE", "H36M PA-MPJPE"],
                            [[r["method"], *_paper(r["pw3d"]), *_paper(r["h36m"], 2)] for r in paper["table1"]])]
    parts += ["\n### Table 3: the diffusion pipeline\n",
              markdown_table(head + ["paper MPVE", "paper MPJPE", "paper PA-MPJPE"],
                             [[lab, *_ours(rows, n), *_paper(paper["table3"].get(n))] for n, lab in TABLE3])]
    table4 = []
    for name, lab in TABLE4:
        steps = rows[name].summary.get("steps") if name in rows else None
        sweep = ", ".join(f"{s['steps']}: {'diverged' if s['mpjpe_mm'] is None else format_value(s['mpjpe_mm'], 1)}" for s in rows[name].summary.get("sweep", [])) \
            if name in rows else ""
        p = paper["table4"].get(name)
        table4.append([lab, *_ours(rows, name), str(steps), sweep, *_paper(p), "-" if p is None else str(p[3])])
    parts += ["\n### Table 4: the impact of DAT (each no-DAT row at its best DDIM step count of the sweep)\n",
              markdown_table(head + ["steps", "sweep (steps: MPJPE)", "paper MPVE", "paper MPJPE", "paper PA-MPJPE",
                                     "paper steps"], table4)]
    parts += ["\n### Table 5: DAT's components\n",
              markdown_table(head + ["paper MPVE", "paper MPJPE", "paper PA-MPJPE"],
                             [[lab, *_ours(rows, n), *_paper(paper["table5"].get(n))] for n, lab in TABLE5])]
    speed_rows = [[lab, _ours(rows, n)[1], str(rows[n].summary.get("steps")) if n in rows else "-",
                   format_value(compute.get(n), 1) if n in compute else "-", f"reports/metrics/hmdiff_speed/{n}.json"]
                  for n, lab in (("baseline_a", "Baseline A (one step)"), ("baseline_b", "Baseline B"),
                                 ("hmdiff", "Ours (HMDiff, DAT)"))]
    parts += ["\n### Table 6: inference speed\n",
              "Paper (one RTX 3090): FastMETRO "
              f"{paper['table6']['fastmetro'][0]} mm / {paper['table6']['fastmetro'][1]} FPS, HMDiff "
              f"{paper['table6']['hmdiff'][0]} mm / {paper['table6']['hmdiff'][1]} FPS (Human3.6M MPJPE).\n",
              markdown_table(["method (ours)", "MPJPE", "steps", "GMACs / image", "FPS (wall clock)"], speed_rows),
              "\nOur FPS is wall clock and lives outside this report (no stage may depend on a timing): each "
              "`eval_hmdiff` stage writes its own to the file named, and `benchmarks/bench_hmdiff.py` measures "
              "images/s on 2 cores, batched and at batch 1, beside the machine's matmul peak.\n"]
    return "\n".join(parts)


def findings(rows: Mapping[str, Row]) -> list[dict[str, Any]]:
    """The paper's claims checked on MPJPE (mm): DAT@40 beats each no-DAT run at its best steps; HMDiff
    beats Baselines A and B; the full method beats each Table 5 ablation."""
    out = []
    if "hmdiff" not in rows:
        return out
    ours = rows["hmdiff"].summary["mpjpe_mm"]
    if ours is None:
        raise ArtifactError("report_hmdiff: the 'hmdiff' run diverged (data/hmdiff/eval/hmdiff.json); no finding can be checked")
    groups = [("Table 4", [n for n, _ in TABLE4[:3]]), ("Table 3", ["baseline_a", "baseline_b"]),
              ("Table 5", [n for n, _ in TABLE5[:4]])]
    for table, names in groups:
        for name in names:
            if name in rows:
                other = rows[name].summary["mpjpe_mm"]
                out.append({"table": table, "claim": f"hmdiff beats {name} (MPJPE)", "holds": bool(other is None or ours < other),
                            "hmdiff_mpjpe_mm": ours, "other_mpjpe_mm": other})
    return out


def metrics_json(rows: Mapping[str, Row], found: list[dict[str, Any]], images: int) -> dict[str, Any]:
    """``reports/metrics/hmdiff.json``: one entry per table row and ``findings``."""
    entries = {}
    for table, members in (("table1", TABLE1), ("table3", TABLE3), ("table4", TABLE4), ("table5", TABLE5)):
        for name, _ in members:
            if name in rows:
                entries[f"{table}/{name}"] = {**{m: rows[name].summary[m] for m in METRICS},
                                              "steps": rows[name].summary.get("steps"), "fps": None,
                                              "diverged": rows[name].summary.get("diverged", 0.0)}
    return {"images": images, "rows": entries, "findings": found,
            "fps_source": "reports/metrics/hmdiff_speed/<run>.json and benchmarks/bench_hmdiff.py (wall clock, kept out)"}


# ------------------------------------------------------------------------------------- pictures
def project(points: np.ndarray, pelvis: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """Pelvis-relative camera-frame points (P, 3) placed at ``pelvis`` (3,) -> pixels (P, 2)."""
    cam = points + pelvis
    fx, fy, cx, cy = intrinsics
    return np.stack([fx * cam[:, 0] / cam[:, 2] + cx, fy * cam[:, 1] / cam[:, 2] + cy], -1)


def draw_points(image: np.ndarray, pixels: np.ndarray, colour: tuple[int, int, int], scale: int) -> np.ndarray:
    out = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST) if scale != 1 else image.copy()
    for x, y in pixels * scale:
        if np.isfinite(x) and np.isfinite(y):
            cv2.circle(out, (int(round(x)), int(round(y))), 1, colour, -1)
    return out


def mesh_sheet(images: np.ndarray, truth: np.ndarray, pelvis: np.ndarray, intrinsics: np.ndarray,
               predictions: Mapping[str, np.ndarray], scale: int = 2) -> np.ndarray:
    """Rows of tiles per test image: the truth, then each method's mesh vertices over the image (BGR).
    ``images`` (F, S, S, 3) RGB; meshes (F, V, 3) pelvis-relative, drawn at ``pelvis`` (F, 3)."""
    tiles = []
    for i in range(len(images)):
        bgr = np.ascontiguousarray(images[i][..., ::-1])
        tiles.append(label(draw_points(bgr, project(truth[i], pelvis[i], intrinsics[i]), (0, 200, 0), scale), "truth"))
        for name, meshes in predictions.items():
            tiles.append(label(draw_points(bgr, project(meshes[i], pelvis[i], intrinsics[i]), (0, 0, 230), scale), name))
    return contact_sheet(tiles, 1 + len(predictions))


def spread_sheet(images: np.ndarray, samples: np.ndarray, regressor: np.ndarray, pelvis: np.ndarray,
                 intrinsics: np.ndarray, scale: int = 3) -> np.ndarray:
    """The N samples' joints f(h) (one colour per sample) over each image: the samples' spread (BGR)."""
    tiles = []
    for i in range(len(images)):
        out = np.ascontiguousarray(cv2.resize(images[i][..., ::-1], None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST))
        for n, sample in enumerate(samples[i]):
            hue = int(180 * n / max(len(samples[i]), 1))
            colour = cv2.cvtColor(np.uint8([[[hue, 220, 230]]]), cv2.COLOR_HSV2BGR)[0, 0].tolist()
            for x, y in project(regressor @ sample, pelvis[i], intrinsics[i]) * scale:
                if np.isfinite(x) and np.isfinite(y):
                    cv2.circle(out, (int(round(x)), int(round(y))), 1, colour, -1)
        tiles.append(label(out, f"{len(samples[i])} samples"))
    return contact_sheet(tiles, len(tiles))


def ratio_plot(history_ratio: np.ndarray, history_dat: np.ndarray, threshold: float) -> np.ndarray:
    """log10 R_k (median over chains and images), log10 r, and the share of chains with DAT on, over the DDIM steps."""
    steps = len(history_ratio)
    ratio = np.median(history_ratio.reshape(steps, -1), 1)
    return line_plot({"log10 R_k (median)": list(np.log10(np.maximum(ratio, 1e-12))),
                      f"log10 r (r = {threshold})": [float(np.log10(threshold))] * steps,
                      "DAT on (share of chains)": list(history_dat.reshape(steps, -1).mean(1))},
                     "HMDiff: R_k over the reverse steps; DAT off for good once R_k < r", xlabel="DDIM step")


@dataclass
class Report:
    markdown: str
    metrics: dict[str, Any]


def compute_per_image(summary: Mapping[str, Any], macs_per_pass: int, num_samples: int) -> float:
    """GMACs of the network per image: one pass for a regression, N chains x steps for a diffusion run
    (forward passes only; each DAT step adds a backward pass through the denoiser, about two more)."""
    passes = 1 if summary.get("kind") != "diffusion" else num_samples * int(summary["steps"])
    return passes * macs_per_pass / 1e9


def protocol(images: int, sizes: Sequence[int], num_samples: int, threshold: float, gamma: float, steps: Any = 40) -> str:
    return (
        "## Protocol\n\n"
        f"- Data: the first {images} images of the rendered single-view test set (`data/images`, set `test`; a fixed "
        "subset, the same for every row, sized to the CPU budget: docs/hmdiff.md). The paper's numbers are on 3DPW and "
        "Human3.6M and are quoted beside ours, labelled; they are not comparable in value, only in ordering.\n"
        "- Inputs: the frozen perception network's outputs (`data/extract/test.npz`): the spatial tokens (image feature "
        "f_I), the xy and depth heatmaps (U), the regression's pelvis depth.\n"
        f"- Meshes: the body model's own hierarchy {' -> '.join(str(s) for s in sizes)} vertices; the diffusion runs on "
        f"the {sizes[-1]}-vertex mesh, up-sampled (learned linear map to {sizes[1]}, then fixed) to the full mesh.\n"
        f"- HMDiff: N = {num_samples} samples, DDIM {steps} steps (paper: N = 25, 40 steps), r = {threshold}, gamma = {gamma}; the prediction is the "
        "centre (mean) of the N samples. Table 4's no-DAT rows each take the step count of their sweep with the lowest "
        "MPJPE on this same subset (as the paper tunes them).\n"
        "- Frame: camera frame, metres, both meshes translated so that their pelvis is at the origin.\n"
        "- MPVE: mean distance over all vertices of the full mesh. Joints: the body model's `J_regressor` on the "
        "predicted mesh against the true skeleton's joints. MPJPE: pelvis-aligned, over the 14 LSP joints of the 3DPW "
        "protocol (`SMPL_TO_LSP14`). PA-MPJPE: the same joints after the similarity (scale, rotation, translation) "
        "Procrustes alignment per image. All in mm.\n"
    )


def build_report(rows: Mapping[str, Row], compute: Mapping[str, float], images: int, sizes: Sequence[int],
                 num_samples: int, threshold: float, gamma: float, figures: Mapping[str, np.ndarray],
                 report_dir: str | Path, report_file: str | Path, write_png, write_dir: str | Path | None = None) -> Report:
    """The markdown, the metrics JSON and the pictures (written by ``write_png(path, bgr)``).

    ``figures``: ``images`` (F, S, S, 3) RGB, ``truth`` (F, V, 3), ``pelvis`` (F, 3) camera-frame, ``intrinsics`` (F, 4),
    ``regressor`` (J, V_c), for the first F test images. Pictures go to ``write_dir`` (default
    ``report_dir``: e.g. the temporary folder of an atomic directory), links name ``report_dir``."""
    paper = paper_numbers()
    found = findings(rows)
    report_dir = Path(report_dir)
    out = Path(write_dir) if write_dir is not None else report_dir
    link = lambda name: Path(report_dir / name).relative_to(Path(report_file).parent).as_posix()  # noqa: E731
    count = len(figures["images"])
    shown = {label_: rows[name].arrays["vertices"][:count] for name, label_ in
             (("hmdiff", "HMDiff"), ("baseline_a", "Baseline A"), ("baseline_b", "Baseline B"),
              ("regression_head", "regression head")) if name in rows and len(rows[name].arrays["vertices"]) >= count}
    write_png(out / "meshes.png", mesh_sheet(figures["images"], figures["truth"], figures["pelvis"],
                                                    figures["intrinsics"], shown))
    pictures = [f"![meshes over test images]({link('meshes.png')})"]
    if "hmdiff" in rows and "samples" in rows["hmdiff"].arrays:
        arrays = rows["hmdiff"].arrays
        spread = min(count, len(arrays["samples"]), int(figures.get("spread_images", count)))
        write_png(out / "samples.png", spread_sheet(figures["images"][:spread], arrays["samples"][:spread],
                                                           figures["regressor"], figures["pelvis"], figures["intrinsics"]))
        write_png(out / "ratio.png", ratio_plot(arrays["history_ratio"], arrays["history_dat"], threshold))
        pictures += [f"![the N samples' joints]({link('samples.png')})", f"![R_k over the steps]({link('ratio.png')})"]
    lines = ["# HMDiff: distribution-aligned diffusion for human mesh recovery (Foo et al., ICCV 2023)", "",
             "Ours on our data beside the paper's numbers (3DPW, Human3.6M), each labelled. Regenerate with "
             "`dvc repro report_hmdiff`; how the rows are made: docs/hmdiff.md.", "",
             protocol(images, sizes, num_samples, threshold, gamma,
                      rows["hmdiff"].summary.get("steps") if "hmdiff" in rows else 40), "## Tables", "",
             tables(rows, paper, compute, images), "", "## Findings (MPJPE)", ""]
    lines += [f"- {f['table']}: {f['claim']}: {'holds' if f['holds'] else 'does NOT hold'} "
              f"({format_value(f['hmdiff_mpjpe_mm'], 1)} vs {format_value(f['other_mpjpe_mm'], 1)} mm)" for f in found]
    lines += ["", "## Pictures", "",
              "Meshes (vertices) over the test images, each placed at the true pelvis (the metrics are pelvis-relative): "
              "truth in green, predictions in red; the N samples' joints f(h), one colour per sample; log10 R_k (median "
              "over chains) against log10 r, with the share of chains still under DAT.", "", *pictures, ""]
    return Report("\n".join(lines), metrics_json(rows, found, images))
