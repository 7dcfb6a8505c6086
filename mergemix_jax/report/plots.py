"""The report's figures (matplotlib, Agg backend), each written to a PNG and returned as its path."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import matplotlib.tri as mtri
import numpy as np

_CORNERS = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, np.sqrt(3) / 2]])


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)
    return path


def weights_bars(weights: Mapping[str, Sequence[float]], domains: Sequence[str], path: Path) -> Path:
    """Grouped bars: the mixture each method (or baseline) found, one group per domain."""
    fig, ax = plt.subplots(figsize=(max(5, 1.4 * len(domains) + 2), 3.2))
    width = 0.8 / max(len(weights), 1)
    x = np.arange(len(domains))
    for i, (name, w) in enumerate(weights.items()):
        ax.bar(x + (i - (len(weights) - 1) / 2) * width, w, width, label=name)
    ax.set_xticks(x, domains)
    ax.set_ylabel("weight")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, ncol=2)
    ax.set_title("Mixture weights per method")
    return _save(fig, path)


def simplex_heatmaps(faces: Sequence[tuple[Sequence[str], np.ndarray, np.ndarray]], marks: Sequence[Mapping[str, np.ndarray]], path: Path) -> Path:
    """One triangle per face: (three domain names, barycentric points [P, 3], utility [P]).

    marks[f] (name -> [3] barycentric) are the mixtures drawn on face f (those lying on it)."""
    fig, axes = plt.subplots(1, len(faces), figsize=(4.2 * len(faces), 3.9), squeeze=False)
    lo = min(float(np.min(u)) for _, _, u in faces)
    hi = max(float(np.max(u)) for _, _, u in faces)
    colours = {}
    for ax, (names, bary, util), face_marks in zip(axes[0], faces, marks, strict=True):
        xy = bary @ _CORNERS
        image = ax.tripcolor(mtri.Triangulation(xy[:, 0], xy[:, 1]), util, shading="gouraud", cmap="viridis", vmin=lo, vmax=hi)
        for label, mark in face_marks.items():
            p = np.asarray(mark) @ _CORNERS
            colours.setdefault(label, f"C{len(colours)}")
            ax.plot(p[0], p[1], "o", ms=7, mec="white", color=colours[label], label=label)
        for corner, name in zip(_CORNERS, names, strict=True):
            ax.annotate(name, corner, ha="center", va="top" if corner[1] == 0 else "bottom", fontsize=9)
        ax.set_aspect("equal")
        ax.axis("off")
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="proxy utility (higher is better)")
    if colours:
        handles = [plt.Line2D([], [], marker="o", ls="", color=c, mec="white", ms=7) for c in colours.values()]
        fig.legend(handles, list(colours), loc="lower center", ncol=len(colours), fontsize=8)
    fig.suptitle("Proxy utility of merged mixtures on simplex faces")
    return _save(fig, path)


def search_traces(traces: Mapping[str, np.ndarray], path: Path) -> Path:
    """Best objective so far (lower is better) against the trace index, per method."""
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for name, trace in traces.items():
        trace = np.asarray(trace, np.float64).ravel()
        if trace.size:
            ax.plot(np.arange(1, trace.size + 1), trace, label=name)
    ax.set_xlabel("step / evaluation batch")
    ax.set_ylabel("best objective so far")
    ax.legend(fontsize=8)
    ax.set_title("Search traces")
    return _save(fig, path)


def matrices(named: Mapping[str, np.ndarray], labels: Sequence[str], path: Path) -> Path:
    """Annotated heatmaps of K x K matrices (cosines, curvature ratios), side by side."""
    fig, axes = plt.subplots(1, len(named), figsize=(4.4 * len(named), 3.8), squeeze=False)
    for ax, (title, m) in zip(axes[0], named.items(), strict=True):
        m = np.asarray(m, np.float64)
        image = ax.imshow(m, cmap="magma")
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="cyan", fontsize=8)
        ax.set_xticks(range(len(labels)), labels, rotation=45, fontsize=8)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_title(title, fontsize=9)
        fig.colorbar(image, ax=ax, shrink=0.8)
    return _save(fig, path)


def proxy_scatter(panels: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]], path: Path) -> Path:
    """Proxy (x) vs reference (y) per panel: (title with the rank correlations, proxy [N], reference [N], interior mask [N])."""
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows), squeeze=False)
    for ax, (title, proxy, ref, interior) in zip(axes.ravel(), panels, strict=False):
        interior = np.asarray(interior, bool)
        ax.scatter(proxy[interior], ref[interior], s=18, label="interior")
        ax.scatter(proxy[~interior], ref[~interior], s=18, marker="s", label="vertex")
        ax.set_xlabel("merged proxy")
        ax.set_ylabel("reference (trained)")
        ax.set_title(title, fontsize=8)
    for ax in axes.ravel()[len(panels) :]:
        ax.axis("off")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)
