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


def simplex_heatmaps(
    faces: Sequence[tuple[Sequence[str], np.ndarray, np.ndarray]], marks: Sequence[Mapping[str, np.ndarray]], path: Path, label: str, higher_is_better: bool = False
) -> Path:
    """One triangle per face: (three domain names, barycentric points [P, 3], proxy value [P]); `label`
    names the value's unit and direction; the better end is bright either way.

    marks[f] (name -> [3] barycentric) are the mixtures drawn on face f (those lying on it)."""
    fig, axes = plt.subplots(1, len(faces), figsize=(4.2 * len(faces), 3.9), squeeze=False)
    lo = min(float(np.min(u)) for _, _, u in faces)
    hi = max(float(np.max(u)) for _, _, u in faces)
    colours = {}
    for ax, (names, bary, loss), face_marks in zip(axes[0], faces, marks, strict=True):
        xy = bary @ _CORNERS
        image = ax.tripcolor(mtri.Triangulation(xy[:, 0], xy[:, 1]), loss, shading="gouraud", cmap="viridis" if higher_is_better else "viridis_r", vmin=lo, vmax=hi)
        for label, mark in face_marks.items():
            p = np.asarray(mark) @ _CORNERS
            colours.setdefault(label, f"C{len(colours)}")
            ax.plot(p[0], p[1], "o", ms=7, mec="white", color=colours[label], label=label)
        for corner, name in zip(_CORNERS, names, strict=True):
            ax.annotate(name, corner, ha="center", va="top" if corner[1] == 0 else "bottom", fontsize=9)
        ax.set_aspect("equal")
        ax.axis("off")
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label=label)
    if colours:
        handles = [plt.Line2D([], [], marker="o", ls="", color=c, mec="white", ms=7) for c in colours.values()]
        fig.legend(handles, list(colours), loc="lower center", ncol=len(colours), fontsize=8)
    fig.suptitle(f"{label.split(' (')[0].capitalize()} of merged mixtures on simplex faces")
    return _save(fig, path)


def search_traces(utilities: Mapping[str, Sequence[float]], objectives: Mapping[str, Sequence[float]], label: str, path: Path) -> Path:
    """Best value so far against the trace index, per method: the black-box methods' utility (`label`
    names its unit and direction) on the left; the gradient search's differentiable objective, a
    stand-in on its own scale, in a panel of its own on the right (when any)."""
    panels = [(utilities, label), (objectives, "best differentiable objective so far (lower is better)")]
    panels = [(traces, title) for traces, title in panels if any(len(t) for t in traces.values())]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 3.4), squeeze=False)
    for ax, (traces, title) in zip(axes[0], panels, strict=True):
        for name, trace in traces.items():
            trace = np.asarray(trace, np.float64).ravel()
            if trace.size:
                ax.plot(np.arange(1, trace.size + 1), trace, label=name)
        ax.set_xlabel("step / evaluation batch")
        ax.set_ylabel(title, fontsize=8)
        ax.legend(fontsize=8)
    fig.suptitle("Search traces")
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


MARK_STYLES = {"recommended": ("*", "C3", 14), "proxy pick": ("X", "C1", 10), "uniform": ("D", "C2", 8), "natural": ("P", "C4", 10)}


def _scatter_panel(ax, panel: Mapping, zoom: bool) -> None:
    """One proxy-vs-real panel: references (interior dots, vertex squares), y = x, the marked mixtures."""
    proxy, real = np.asarray(panel["proxy"], np.float64), np.asarray(panel["real"], np.float64)
    interior = np.asarray(panel["interior"], bool)
    shown = interior if zoom else np.ones_like(interior)
    ax.scatter(proxy[interior], real[interior], s=18, color="C0", label="interior reference")
    if not zoom:
        ax.scatter(proxy[~interior], real[~interior], s=18, marker="s", color="C7", label="vertex reference")
    xs, ys = list(proxy[shown]), list(real[shown])
    for name, (x, y) in panel.get("marks", {}).items():
        marker, colour, size = MARK_STYLES.get(name, ("o", "k", 8))
        ax.plot(x, y, marker, color=colour, ms=size, mec="black", mew=0.5, ls="", label=name)
        xs.append(x)
        ys.append(y)
    lo, hi = min(xs + ys), max(xs + ys)
    pad = 0.05 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "--", color="grey", lw=0.8, label="y = x")
    if zoom:
        ax.set_xlim(min(xs) - pad, max(xs) + pad)
        ax.set_ylim(min(ys) - pad, max(ys) + pad)
    ax.set_xlabel("merged proxy loss (nats, lower is better)", fontsize=8)
    ax.set_ylabel("real loss, trained (nats, lower is better)", fontsize=8)
    ax.set_title(panel["title"] + (" — interior, zoomed" if zoom else ""), fontsize=8)


def proxy_scatter(panels: Sequence[Mapping], path: Path) -> Path:
    """Proxy (x) vs real (y) loss, one panel per metric, plus a zoomed interior panel of the first.

    Each panel: {"title", "proxy": [N], "real": [N], "interior": [N] bool, "marks": {name: (proxy, real)}}."""
    views = [(panels[0], True), *[(p, False) for p in panels]] if panels else []
    cols = min(3, len(views))
    rows = -(-len(views) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.8 * rows), squeeze=False)
    for ax, (panel, zoom) in zip(axes.ravel(), views, strict=False):
        _scatter_panel(ax, panel, zoom)
    for ax in axes.ravel()[len(views) :]:
        ax.axis("off")
    handles, labels = axes.ravel()[min(1, len(views) - 1)].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 7), fontsize=7)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return _save(fig, path)
