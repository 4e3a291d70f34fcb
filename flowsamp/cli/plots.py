"""Plots written by ``flowsamp run`` (matplotlib, Agg backend, PNG files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def samples_over_density(
    path: str | Path,
    samples: np.ndarray,
    log_prob_grid: Any | None = None,
    title: str = "",
    max_points: int = 20_000,
) -> Path:
    """Scatter of samples (first two coordinates) over contours of the log-density.

    ``log_prob_grid(xx, yy) -> zz`` evaluates the log-density on a 2-D grid; if ``None``
    (or the target is not 2-D) only the samples are drawn.
    """
    plt = _pyplot()
    pts = np.asarray(samples).reshape(-1, np.asarray(samples).shape[-1])
    if pts.shape[0] > max_points:
        pts = pts[np.random.default_rng(0).choice(pts.shape[0], max_points, replace=False)]
    fig, ax = plt.subplots(figsize=(6, 5))
    if pts.shape[1] >= 2:
        lo = np.percentile(pts[:, :2], 0.1, axis=0)
        hi = np.percentile(pts[:, :2], 99.9, axis=0)
        pad = 0.15 * (hi - lo) + 1e-6
        lo, hi = lo - pad, hi + pad
        if log_prob_grid is not None:
            xx, yy = np.meshgrid(np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200))
            zz = np.asarray(log_prob_grid(xx, yy))
            zz = np.where(np.isfinite(zz), zz, np.nan)
            top = np.nanmax(zz)
            levels = np.sort(top - np.array([30.0, 20.0, 12.0, 8.0, 5.0, 3.0, 2.0, 1.0, 0.5]))
            ax.contour(xx, yy, zz, levels=levels, cmap="viridis", linewidths=0.8)
        ax.scatter(pts[:, 0], pts[:, 1], s=1, alpha=0.3, color="crimson", rasterized=True)
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_xlabel("$x_1$")
        ax.set_ylabel("$x_2$")
    else:
        ax.hist(pts[:, 0], bins=100, density=True, color="crimson", alpha=0.7)
        ax.set_xlabel("$x$")
    ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def series(
    path: str | Path,
    curves: dict[str, Sequence[float]],
    xlabel: str,
    ylabel: str,
    title: str = "",
    reference: dict[str, float] | None = None,
) -> Path:
    """Line plot of named curves (e.g. mode weights or acceptance over loops)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (name, ys) in enumerate(curves.items()):
        line = ax.plot(np.arange(len(ys)), ys, label=name)[0]
        if reference and name in reference:
            ax.axhline(reference[name], color=line.get_color(), ls="--", lw=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
