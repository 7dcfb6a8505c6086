"""`render_report(run_dir)`: one self-contained HTML page (plus PNGs beside it) from a run folder.

It reads only files the pipeline and `mergemix validate` wrote: config.yaml, commands.txt,
stages.jsonl, timings.json, eval/*.csv, search/*.json, mixture.json, diagnostics.json and
validate-*/validation.json, so it can be re-rendered at any time.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

import numpy as np
import yaml

from mergemix_jax.reliability.atomic import atomic_write_text
from mergemix_jax.report import plots

STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}pre{background:#f6f6f6;padding:.8em;overflow:auto;font-size:.8em}
img{max-width:100%}.note{color:#555;font-size:.9em}"""


def _table(header: list[str], rows: list[list], fmt: str = "{:.4f}") -> str:
    def cell(v):
        if isinstance(v, float):
            return "–" if not np.isfinite(v) else fmt.format(v)
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(path: Path, root: Path, alt: str) -> str:
    return f'<p><img src="{html.escape(os.path.relpath(path, root))}" alt="{html.escape(alt)}"></p>'


def _load_json(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def _utility_weights(config: dict) -> dict[str, float]:
    return dict(config.get("pipeline", {}).get("utility") or {}) or {"loss/mean": 1.0}


def _methods_section(run_dir: Path, out: Path, domains: list[str]) -> tuple[str, dict]:
    searches = {p.stem: json.loads(p.read_text()) for p in sorted((run_dir / "search").glob("*.json"))}
    if not searches:
        return "<p>No search results yet.</p>", {}
    chosen = _load_json(run_dir / "mixture.json") or {}
    compared = chosen.get("search", {}).get("compared", {})
    rows = []
    for name, s in searches.items():
        search = s.get("search", {})
        rows.append([name, *[s["weights"][d] for d in domains], float(compared.get(name, np.nan)), float(search.get("wall_time_s", np.nan)), search.get("n_evaluations", "")])
    header = ["method", *domains, "exact utility", "time (s)", "evaluations"]
    weights = {name: [s["weights"][d] for d in domains] for name, s in searches.items()}
    parts = [_table(header, rows), _img(plots.weights_bars(weights, domains, out / "weights.png"), out, "weights per method")]
    traces = {name: np.asarray(s.get("search", {}).get("trace") or [], np.float64) for name, s in searches.items()}
    if any(t.size for t in traces.values()):
        parts.append(_img(plots.search_traces(traces, out / "traces.png"), out, "search traces"))
    if chosen:
        parts.insert(0, f"<p><b>Chosen mixture</b> ({html.escape(chosen['method'])}): " + ", ".join(f"{d} {chosen['weights'][d]:.3f}" for d in domains) + "</p>")
    marks = {name: np.asarray(w) for name, w in weights.items()}
    return "\n".join(parts), marks


def _heatmap_section(run_dir: Path, out: Path, domains: list[str], utility: dict, marks: dict) -> str:
    from mergemix_jax.pipeline.mixtures import face_grid, row_lookup
    from mergemix_jax.pipeline.problem import utility_of
    from mergemix_jax.pipeline.stages import read_table

    layout = _load_json(run_dir / "eval" / "probe.done.json")
    if not layout or not layout.get("faces"):
        return "<p>No simplex heatmap (needs K >= 3 and the probe stage).</p>"
    table = read_table(run_dir / "eval" / "probe.csv", tuple(domains))
    util = utility_of(utility, table["metrics"])
    faces, face_marks = [], []
    k = len(domains)
    for face in layout["faces"]:
        grid = face_grid(k, tuple(face), layout["resolution"])
        faces.append(([domains[i] for i in face], grid[:, face], util[row_lookup(table["weights"], grid)]))
        face_marks.append({name: w[face] for name, w in marks.items() if abs(w[face].sum() - 1) < 1e-3})
    note = "" if k == 3 else f"<p class='note'>K = {k}: 2-D slices, the faces spanned by three domains (the others at 0); a method's mixture is marked on the faces it lies on.</p>"
    return note + _img(plots.simplex_heatmaps(faces, face_marks, out / "heatmap.png"), out, "simplex heatmap")


def _diagnostics_section(run_dir: Path, out: Path) -> str:
    diag = _load_json(run_dir / "diagnostics.json")
    if not diag:
        return "<p>Diagnostics not computed (pipeline.diagnostics: false).</p>"
    names = diag["names"]
    image = plots.matrices({"task-vector cosine": diag["cosine"], "curvature ratio gamma[k, j]": diag["gamma"]}, names, out / "diagnostics.png")
    gamma = np.asarray(diag["gamma"])
    off = gamma[~np.eye(len(names), dtype=bool)]
    text = (
        f"<p class='note'>{html.escape(diag['definition'])}. Rows k: the domain whose loss curvature is measured; columns j: the expert. "
        f"Off-diagonal gamma: median {np.median(off):.2f}, max {off.max():.2f} (small means little cross-domain interference).</p>"
    )
    return text + _img(image, out, "diagnostics")


def _validation_section(run_dir: Path, out: Path) -> str:
    found = sorted(run_dir.glob("validate-*/validation.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        return "<p>Not validated yet: run <code>mergemix validate --config ...</code> to train reference mixtures.</p>"
    v = json.loads(found[-1].read_text())
    rows = [[r["metric"], r["subset"], r["n"], r["spearman"], r["kendall"], r["ceiling_spearman"], r["loss_interp_spearman"], r["output_space_spearman"]] for r in v["table"]]
    header = ["metric", "mixtures", "n", "Spearman", "Kendall", "noise ceiling (Spearman)", "loss interpolation", "output-space"]
    interior = np.asarray([kind != "vertex" for kind in v["kinds"]])
    panels = []
    overall = {x["metric"]: x for x in v["table"] if x["subset"] == "all"}
    for metric in [m for m in v["scatter_metrics"] if m in overall and m in v["proxy"]]:
        r = overall[metric]
        panels.append((f"{metric}: Spearman {r['spearman']:.2f}, Kendall {r['kendall']:.2f}", np.asarray(v["proxy"][metric]), np.asarray(v["reference"][metric]), interior))
    summary = _table(["quantity", "value"], [[k, val if isinstance(val, str) else float(val)] for k, val in v["summary"].items()])
    return summary + _table(header, rows, "{:.3f}") + _img(plots.proxy_scatter(panels, out / "scatter.png"), out, "proxy vs reference")


def render_report(run_dir: str | os.PathLike) -> Path:
    """Write <run_dir>/report/index.html and its PNGs; returns the HTML path."""
    run_dir = Path(run_dir)
    out = run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    config_text = (run_dir / "config.yaml").read_text()
    config = yaml.safe_load(config_text)
    domains = [d["name"] for d in config["data"]["domains"]]
    methods_html, marks = _methods_section(run_dir, out, domains)
    commands = (run_dir / "commands.txt").read_text() if (run_dir / "commands.txt").is_file() else ""
    stages = (run_dir / "stages.jsonl").read_text() if (run_dir / "stages.jsonl").is_file() else ""
    timings = _load_json(run_dir / "timings.json") or {}
    sections = [
        ("Mixtures found", methods_html),
        ("Proxy utility over the simplex", _heatmap_section(run_dir, out, domains, _utility_weights(config), marks)),
        ("Interference diagnostics", _diagnostics_section(run_dir, out)),
        ("Proxy vs real mixture training", _validation_section(run_dir, out)),
        ("Training time", _table(["model", "steps", "seconds"], [[k, t["steps"], float(t["seconds"])] for k, t in timings.items()], "{:.1f}")),
        ("Commands", f"<pre>{html.escape(commands)}</pre>"),
        ("Config", f"<pre>{html.escape(config_text)}</pre>"),
        ("Stage log", f"<pre>{html.escape(stages)}</pre>"),
    ]
    body = "\n".join(f"<h2>{html.escape(t)}</h2>\n{content}" for t, content in sections)
    page = f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>mergemix report: {html.escape(run_dir.name)}</title><style>{STYLE}</style></head>\n<body><h1>mergemix report: {html.escape(run_dir.name)}</h1>\n{body}\n</body></html>\n"
    return atomic_write_text(out / "index.html", page)
