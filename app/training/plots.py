"""Matplotlib figures for the reports. ``Figure`` objects, not pyplot: no GUI backend, no global
state, safe to draw from any thread."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
from matplotlib import colormaps
from matplotlib.figure import Figure

from app.training.reliability import Reliability


def _short(name: str, width: int = 28) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def confusion_png(
    rows: list[str], columns: list[str], matrix: npt.NDArray[np.int64], out: Path, *, title: str
) -> None:
    """Rows: the truth; columns: the answer. Colour is the share of the row, so a rare species'
    errors show as clearly as a common one's; the counts are printed in the cells."""
    totals = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, totals, out=np.zeros(matrix.shape, dtype=float), where=totals > 0)
    size = max(5.0, 0.45 * len(columns) + 2.5)
    fig = Figure(figsize=(size + 1.5, max(4.0, 0.45 * len(rows) + 2.5)))
    ax = fig.subplots()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(columns)), [_short(n) for n in columns], rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), [_short(n) for n in rows], fontsize=8)
    ax.set_xlabel("answer")
    ax.set_ylabel("truth")
    ax.set_title(title, fontsize=10)
    if len(columns) <= 40:
        for (i, j), count in np.ndenumerate(matrix):
            if count:
                colour = "white" if share[i, j] > 0.5 else "black"
                ax.text(j, i, str(count), ha="center", va="center", fontsize=7, color=colour)
    fig.colorbar(image, ax=ax, fraction=0.04, label="share of the true species' photos")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def scatter_png(
    panels: list[tuple[str, npt.NDArray[np.float32]]], labels: list[str], out: Path, *, title: str
) -> None:
    """2-D projections side by side, one colour per species."""
    names = sorted(set(labels))
    colours = colormaps["tab20" if len(names) > 10 else "tab10"]
    index = np.array([names.index(n) for n in labels])
    fig = Figure(figsize=(6 * len(panels) + 2, 5.6))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (name, points) in zip(axes[0], panels, strict=True):
        for k, species in enumerate(names):
            mine = index == k
            ax.scatter(
                points[mine, 0], points[mine, 1], s=14, color=colours(k % colours.N), label=_short(species)
            )
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
    if len(names) <= 20:
        axes[0][-1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def reliability_png(panels: list[Reliability], out: Path, *, title: str) -> None:
    """One reliability diagram per set of scores: each bin's accuracy as a bar over its
    confidence range, its photo count above it, its mean confidence as a dot, and the diagonal
    a calibrated model would follow; ECE and MCE in the panel's title."""
    fig = Figure(figsize=(4.6 * len(panels) + 0.4, 4.8))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, measured in zip(axes, panels, strict=True):
        full = [b for b in measured.bins if b.count]
        width = measured.bins[0].upper - measured.bins[0].lower
        ax.bar(
            [b.lower for b in full], [b.accuracy or 0.0 for b in full], width=width, align="edge",
            color="#4c72b0", edgecolor="white", label="accuracy",
        )  # fmt: skip
        ax.scatter(
            [(b.lower + b.upper) / 2 for b in full], [b.confidence or 0.0 for b in full],
            color="#dd8452", zorder=3, s=16, label="mean confidence",
        )  # fmt: skip
        for b in full:
            ax.text((b.lower + b.upper) / 2, min((b.accuracy or 0.0) + 0.02, 1.0), str(b.count),
                    ha="center", va="bottom", fontsize=7)  # fmt: skip
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="calibrated")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.08)
        ax.set_xlabel("top-1 confidence")
        ax.set_ylabel("top-1 accuracy")
        ax.set_title(
            f"{_short(measured.scores.split(' (')[0], 48)}\nECE {measured.ece:.3f}, MCE {measured.mce:.3f} "
            f"({measured.photos} photos)",
            fontsize=9,
        )
        ax.legend(loc="upper left", fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
