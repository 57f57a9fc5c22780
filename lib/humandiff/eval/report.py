"""Report helpers: Markdown tables, value +- interval cells, CSV curves and PNG line plots (OpenCV).

No plotting library ships with the project; the curves are written as CSV (which ``dvc plots``
renders) and drawn as a small PNG with OpenCV for a person opening ``reports/plots/``.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Mapping, Sequence

import cv2
import numpy as np

from humandiff.io import ArtifactError, atomic_path

_PALETTE = ((200, 90, 30), (40, 40, 200), (40, 150, 40), (150, 60, 150), (30, 150, 200))  # BGR


def format_value(value: float | None, digits: int = 3) -> str:
    """A number with ``digits`` decimals; ``None`` or NaN as an en dash (not measured)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def format_interval(value: float | None, interval: float | None, digits: int = 3) -> str:
    """``value ± interval`` (the papers' a^{±b} cells); the value alone when there is no interval."""
    if interval is None or value is None:
        return format_value(value, digits)
    return f"{format_value(value, digits)} ± {format_value(interval, digits)}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None) -> str:
    """A GitHub Markdown table; ``align`` one char per column ('l', 'r' or 'c'), default left then right."""
    if any(len(row) != len(headers) for row in rows):
        raise ArtifactError(f"markdown_table: every row needs {len(headers)} cells")
    align = align or ("l" + "r" * (len(headers) - 1))
    if len(align) != len(headers) or set(align) - set("lrc"):
        raise ArtifactError(f"markdown_table: align {align!r} must give l/r/c for each of {len(headers)} columns")
    rule = {"l": ":---", "r": "---:", "c": ":---:"}

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(headers), line([rule[a] for a in align]), *[line(r) for r in rows]]) + "\n"


def write_curves_csv(path: str | Path, columns: Mapping[str, Sequence[float]], index_name: str = "epoch") -> None:
    """Columns of equal length as CSV with a 1-based index column, atomically."""
    lengths = {len(v) for v in columns.values()}
    if len(lengths) != 1:
        raise ArtifactError(f"{path}: curves have unequal lengths {sorted(lengths)}")
    with atomic_path(path, suffix=".csv") as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow([index_name, *columns])
            for i, values in enumerate(zip(*columns.values()), start=1):
                writer.writerow([i, *(f"{v:.6g}" for v in values)])


def write_loss_curves(plots_dir: str | Path, name: str, train_loss: Sequence[float], val_loss: Sequence[float],
                      title: str | None = None) -> None:
    """``<name>_loss.csv`` in ``plots_dir`` (train and val loss per epoch, for ``dvc plots``) and, with
    a ``title``, the same curves drawn as ``<name>_loss.png``."""
    plots = Path(plots_dir)
    write_curves_csv(plots / f"{name}_loss.csv", {"train_loss": train_loss, "val_loss": val_loss})
    if title is not None:
        write_png(plots / f"{name}_loss.png", line_plot({"train loss": train_loss, "val loss": val_loss}, title))


def line_plot(series: Mapping[str, Sequence[float]], title: str, xlabel: str = "epoch",
              size: tuple[int, int] = (640, 400)) -> np.ndarray:
    """A BGR image (H, W, 3) uint8 of one or more curves over 1..n with axes, ticks and a legend."""
    width, height = size
    left, right, top, bottom = 64, 16, 34, 44
    image = np.full((height, width, 3), 255, np.uint8)
    finite = [v for values in series.values() for v in values if np.isfinite(v)]
    if not finite:
        raise ArtifactError(f"line_plot '{title}': no finite values")
    low, high = min(finite), max(finite)
    if high - low < 1e-12:
        low, high = low - 0.5, high + 0.5
    count = max(len(v) for v in series.values())

    def to_pixel(i: int, value: float) -> tuple[int, int]:
        x = left + (width - left - right) * (i / max(count - 1, 1))
        y = top + (height - top - bottom) * (1.0 - (value - low) / (high - low))
        return int(round(x)), int(round(y))

    cv2.rectangle(image, (left, top), (width - right, height - bottom), (120, 120, 120), 1)
    for k in range(5):
        value = low + (high - low) * k / 4
        _, y = to_pixel(0, value)
        cv2.line(image, (left - 4, y), (left, y), (120, 120, 120), 1)
        cv2.putText(image, f"{value:.3g}", (4, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (60, 60, 60), 1, cv2.LINE_AA)
    for i in sorted({0, count - 1, (count - 1) // 2}):
        x, _ = to_pixel(i, low)
        cv2.putText(image, str(i + 1), (x - 4, height - bottom + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (60, 60, 60), 1,
                    cv2.LINE_AA)
    cv2.putText(image, xlabel, (width // 2 - 20, height - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (60, 60, 60), 1, cv2.LINE_AA)
    cv2.putText(image, title, (left, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (20, 20, 20), 1, cv2.LINE_AA)
    for k, (name, values) in enumerate(series.items()):
        colour = _PALETTE[k % len(_PALETTE)]
        points = [to_pixel(i, v) for i, v in enumerate(values) if np.isfinite(v)]
        if len(points) > 1:
            cv2.polylines(image, [np.array(points, np.int32)], False, colour, 2, cv2.LINE_AA)
        for point in points:
            cv2.circle(image, point, 3, colour, -1, cv2.LINE_AA)
        cv2.putText(image, name, (width - right - 150, top + 18 + 16 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.42, colour, 1,
                    cv2.LINE_AA)
    return image


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Write a PNG atomically."""
    with atomic_path(path, suffix=".png") as tmp:
        if not cv2.imwrite(str(tmp), image):
            raise ArtifactError(f"{path}: OpenCV could not write the image")
