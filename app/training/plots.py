"""Matplotlib figures for the reports. ``Figure`` objects, not pyplot: no GUI backend, no global
state, safe to draw from any thread."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
from matplotlib import colormaps
from matplotlib.figure import Figure


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
