"""`render_report(run_dir)`: one self-contained HTML page (plus PNGs beside it) from a run folder.

It reads only files the pipeline and `mergemix validate` wrote: config.yaml, commands.txt,
stages.jsonl, timings.json, eval/*.csv, search/*.json, mixture.json, mixture.grain.yaml,
diagnostics.json and validate-*/validation.json, so it can be re-rendered at any time. It opens with
the verdict (report/verdict.py). Every number derived from the utility is shown in one unit and
direction (report/units.py): a loss in nats, lower is better, when the utility is minus a held-out
loss; else utility points, higher is better. Paths on this machine are shown relative to the run folder.
"""

from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path

import numpy as np
import yaml

from mergemix_jax.reliability.atomic import atomic_write_text
from mergemix_jax.report import plots
from mergemix_jax.report.real_runs import real_runs_section
from mergemix_jax.report.units import Scale, configured_utility, scale_of_run
from mergemix_jax.report.verdict import render_verdict, verdict_of
from mergemix_jax.runkit.stats import format_with_interval

STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}pre{background:#f6f6f6;padding:.8em;overflow:auto;font-size:.8em}
img{max-width:100%}.note{color:#555;font-size:.9em}"""


def _table(header: list[str], rows: list[list], fmt: str = "{:.4f}") -> str:
    def cell(v):
        if isinstance(v, (bool, np.bool_)):
            return "yes" if v else "no"
        if isinstance(v, (int, np.integer)):
            return str(int(v))
        if isinstance(v, (float, np.floating)):
            return "–" if not np.isfinite(v) else fmt.format(float(v))
        return "–" if v is None else html.escape(str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(path: Path, root: Path, alt: str) -> str:
    return f'<p><img src="{html.escape(os.path.relpath(path, root))}" alt="{html.escape(alt)}"></p>'


def _load_json(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def _smooth_objective_methods(config: dict) -> set[str]:
    """Methods whose search trace is the gradient search's differentiable objective, not -utility."""
    inner = config.get("search", {}).get("hierarchical", {}).get("inner", "gradient")
    return {"gradient", *(["hierarchical"] if inner == "gradient" else [])}


def _methods_section(run_dir: Path, out: Path, domains: list[str], scale: Scale, config: dict) -> tuple[str, dict]:
    searches = {p.stem: json.loads(p.read_text()) for p in sorted((run_dir / "search").glob("*.json")) if p.stem != "selected"}  # selected = the pick, not a method
    if not searches:
        return "<p>No search results yet.</p>", {}
    chosen = _load_json(run_dir / "mixture.json") or {}
    compared = chosen.get("search", {}).get("compared", {})
    rows = []
    for name, s in searches.items():
        search = s.get("search", {})
        rows.append([name, *[s["weights"][d] for d in domains], scale.show(-float(compared.get(name, np.nan))), float(search.get("wall_time_s", np.nan)), search.get("n_evaluations", "")])
    header = ["method", *domains, scale.label("exact-merge proxy"), "time (s)", "evaluations"]
    weights = {name: [s["weights"][d] for d in domains] for name, s in searches.items()}
    parts = [_table(header, rows), _img(plots.weights_bars(weights, domains, out / "weights.png"), out, "weights per method")]
    traces = {name: np.asarray(s.get("search", {}).get("trace") or [], np.float64) for name, s in searches.items()}
    if any(t.size for t in traces.values()):
        smooth = _smooth_objective_methods(config)
        utilities = {name: [scale.show(float(x)) for x in t] for name, t in traces.items() if name not in smooth}
        objectives = {name: t for name, t in traces.items() if name in smooth}
        parts.append(_img(plots.search_traces(utilities, objectives, scale.label("best proxy"), out / "traces.png"), out, "search traces"))
        if objectives:
            parts.append(
                f"<p class='note'>Search traces: {', '.join(sorted(objectives))} minimise{'s' if len(objectives) == 1 else ''} a differentiable stand-in "
                "of the utility (its own scale, right panel), not comparable in value with the other methods' utilities (left panel).</p>"
            )
    if chosen:
        parts.insert(0, f"<p><b>Recommended mixture</b> ({html.escape(chosen['method'])}): " + ", ".join(f"{d} {chosen['weights'][d]:.3f}" for d in domains) + "</p>")
    marks = {name: np.asarray(w) for name, w in weights.items()}
    return "\n".join(parts), marks


def _heatmap_section(run_dir: Path, out: Path, domains: list[str], utility: dict, marks: dict, scale: Scale) -> str:
    from mergemix_jax.eval.results import read_table
    from mergemix_jax.runkit.mixtures import face_grid, row_lookup
    from mergemix_jax.runkit.problem import utility_of
    from mergemix_jax.runkit.utility import read_run_utility

    layout = _load_json(run_dir / "eval" / "probe.done.json")
    if not layout or not layout.get("faces"):
        return "<p>No simplex heatmap (needs K >= 3 and the probe stage).</p>"
    table = read_table(run_dir / "eval" / "probe.csv", tuple(domains))
    saved = read_run_utility(run_dir)
    util = saved(table["metrics"]) if saved is not None else utility_of(utility, table["metrics"])
    faces, face_marks = [], []
    k = len(domains)
    for face in layout["faces"]:
        grid = face_grid(k, tuple(face), layout["resolution"])
        faces.append(([domains[i] for i in face], grid[:, face], scale.show(-util[row_lookup(table["weights"], grid)])))
        face_marks.append({name: w[face] for name, w in marks.items() if abs(w[face].sum() - 1) < 1e-3})
    note = "" if k == 3 else f"<p class='note'>K = {k}: 2-D slices, the faces spanned by three domains (the others at 0); a method's mixture is marked on the faces it lies on.</p>"
    image = plots.simplex_heatmaps(faces, face_marks, out / "heatmap.png", scale.label("proxy"), higher_is_better=not scale.is_loss)
    return note + _img(image, out, "simplex heatmap")


BENCHMARK_COLUMNS = ("recommended", "uniform", "natural")


def _benchmark_rows(run_dir: Path, domains: list[str]) -> tuple[dict[str, dict[str, float]], str]:
    """{mixture: {metric: value}} for the recommended mixture, uniform and natural, and where the
    numbers come from: the verification runs' real metrics (mean over seeds) when the run was verified,
    else the merged proxy (mixture.json for the pick, the probe table's centre for uniform)."""
    from mergemix_jax.eval.results import read_table

    mixture = _load_json(run_dir / "mixture.json") or {}
    ver = mixture.get("verification") or {}
    if ver.get("candidates"):
        cands = {c["name"]: c for c in ver["candidates"]}
        names = {"recommended": ver.get("chosen"), "uniform": "uniform", "natural": "natural"}
        out = {}
        for label, name in names.items():
            c = cands.get(name)
            if c and c.get("real_metrics"):
                runs = c["real_metrics"]
                out[label] = {m: float(np.mean([r[m] for r in runs])) for m in runs[0]}
        return out, "real training (verification runs, mean over data seeds)"
    out = {}
    if mixture.get("metrics"):
        out["recommended"] = {k: float(v) for k, v in mixture["metrics"].items() if k != "utility"}
    probe = run_dir / "eval" / "probe.csv"
    if probe.is_file():
        table = read_table(probe, tuple(domains))
        centre = np.flatnonzero(np.all(np.abs(table["weights"] - 1.0 / len(domains)) < 1e-6, axis=1))
        if centre.size:
            out["uniform"] = {m: float(v[centre[0]]) for m, v in table["metrics"].items()}
    return out, "the merged proxy (not verified by real training)"


def _benchmark_section(run_dir: Path, domains: list[str]) -> str:
    """Per-benchmark scores of the recommended mixture, uniform and natural: each utility metric raw and
    normalised by the run's fixed maps (eval/utility.json), the utility, and held-out loss for reference."""
    from mergemix_jax.runkit.utility import read_run_utility

    utility = read_run_utility(run_dir)
    if utility is None:
        return "<p>No utility yet (written after the probe stage).</p>"
    rows_by, source = _benchmark_rows(run_dir, domains)
    if not rows_by:
        return "<p>No scored recommendation yet.</p>"
    cols = [c for c in BENCHMARK_COLUMNS if c in rows_by]
    header = ["metric", "weight", *[f"{c} {part}" for c in cols for part in ("raw", "normalised")]]
    rows = []
    for m, w in utility.weights.items():
        cells = []
        for c in cols:
            raw = rows_by[c].get(m)
            norm = None if raw is None or m not in utility.maps else float(utility.maps[m](np.asarray([raw]))[0])
            cells += [raw, norm]
        rows.append([m, w, *cells])
    util_cells = []
    for c in cols:
        have = all(m in rows_by[c] for m in utility.weights)
        util_cells += [None, utility.of_record(rows_by[c]) if have else None]
    rows.append(["utility (weighted mean of the normalised scores)" if utility.kind != "none" else "utility (weighted sum)", None, *util_cells])
    if "loss/mean" not in utility.weights:
        rows.append(["held-out loss loss/mean (reported, not optimised)", None, *[x for c in cols for x in (rows_by[c].get("loss/mean"), None)]])
    note = (
        f"<p class='note'>{html.escape(utility.describe())}. Raw: the metric as scored (losses and NLLs in nats, lower is better; "
        f"accuracies higher is better); normalised: its fixed {html.escape(utility.kind)} map, higher is better, the same map for the "
        f"searches' proxies and for real runs. Numbers from {html.escape(source)}.</p>"
    )
    return note + _table(header, rows)


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


def _latest_validation(run_dir: Path) -> dict | None:
    found = sorted(run_dir.glob("validate-*/validation.json"), key=lambda p: p.stat().st_mtime)
    return json.loads(found[-1].read_text()) if found else None


RANK_COLUMNS = (
    ("spearman", "proxy Spearman [90%]"),
    ("calibrated_spearman", "calibrated proxy [90%]"),
    ("kendall", "Kendall"),
    ("reliability", "reliability r [90%]"),
    ("bound", "bound for a perfect predictor [90%]"),
    ("loss_interp_spearman", "loss interpolation [90%]"),
    ("output_space_spearman", "output-space [90%]"),
)


DISPLAY = {"utility": "loss (= -utility)", "utility (normalised)": "normalised loss"}  # loss runs; rank statistics do not depend on the sign


def _reference_target(v: dict, metric: str) -> np.ndarray:
    runs = [np.asarray(r[metric], np.float64) for r in (v["reference"], v.get("reference_seed2")) if r]
    return np.mean(runs, axis=0)


def _scatter(v: dict, out: Path) -> str:
    interior = np.asarray([kind != "vertex" for kind in v["kinds"]])
    overall = {x["metric"]: x for x in v["table"] if x["subset"] == "all"}
    panels = []
    for metric in [m for m in v["scatter_metrics"] if m in overall and m in v["proxy"]]:
        r = overall[metric]
        marks = {name: (b["proxy_metrics"][metric], b["real_metrics"][metric]) for name, b in v.get("baselines", {}).items() if metric in b.get("proxy_metrics", {})}
        title = f"{metric}: Spearman {format_with_interval(r, 'spearman')}"
        panels.append({"title": title, "proxy": v["proxy"][metric], "real": _reference_target(v, metric), "interior": interior, "marks": marks})
    return _img(plots.proxy_scatter(panels, out / "scatter.png"), out, "proxy vs real loss") if panels else ""


def _validation_section(v: dict | None, out: Path, scale: Scale) -> str:
    if v is None:
        return "<p>Not validated yet: run <code>mergemix validate --config ...</code> to train reference mixtures.</p>"
    display = DISPLAY if scale.is_loss else {}
    rows = [[display.get(r["metric"], r["metric"]), r["subset"], r["n"], *[format_with_interval(r, key) if key != "kendall" else r["kendall"] for key, _ in RANK_COLUMNS]] for r in v["table"]]
    header = ["metric", "mixtures", "n", *[name for _, name in RANK_COLUMNS]]
    suite = v.get("suite", {})
    split = (
        f"held-out sequences disjoint from the ones the search optimised (eval.heldout_offset = {suite['heldout_offset']})"
        if suite.get("heldout_offset") else "the same held-out sequences the search optimised"
    )  # fmt: skip
    if suite.get("task_offset"):
        split += f" and task items after the {suite['task_offset']} per task the search scored (eval.task_offset)"
    target = "the mean of two training runs per mixture (two data seeds)" if v.get("reference_seed2") else "one training run per mixture"
    note = (
        f"<p class='note'>{len(v['kinds'])} reference mixtures, each trained for real from the base; proxies and references scored on {split}. "
        f"Every Spearman compares a predictor with {target}; a perfect predictor would reach about the bound, not the reliability r. "
        "Intervals: 90%, paired bootstrap over mixtures. See the glossary below.</p>"
    )
    summary = _table(["quantity", "value"], [[k, val] for k, val in v["summary"].items()])
    return note + summary + _table(header, rows, "{:.3f}") + _scatter(v, out)


GLOSSARY = (
    ("merged proxy", "a mixture's score predicted without training: the base plus the weighted sum of the per-domain experts' changes, evaluated on held-out text."),
    ("real loss / reference", "the loss of a model actually trained on that mixture from the same base with the same steps as one expert."),
    ("vertex / interior", "vertex: a one-domain mixture (there the proxy is the expert itself); interior: every other reference mixture."),
    ("Spearman / Kendall", "rank correlations between a predictor and the real losses over the reference mixtures: 1 = same order, 0 = unrelated."),
    ("replicate / reliability r", "the same mixtures trained again with another data seed; r is the Spearman between the two runs (test-retest), how reproducible the real ranking itself is."),
    ("bound for a perfect predictor", "about the highest Spearman any predictor of the expected loss can reach against the target: sqrt(r) against one run, sqrt(2r/(1+r)) against the mean of two."),
    ("90% interval", "the range of the statistic over bootstrap resamples of the mixtures (or of the seed noise for regret); with ~12 mixtures a Spearman of 0.5 can be anywhere in ~[0, 0.8]."),
    ("seed noise", "the standard deviation of one run's real loss across data seeds, estimated from the replicate differences."),
    ("indistinguishable from the best", "reference mixtures whose real loss is within the noise margin (one-sided 90%) of the best one's."),
    ("rank / regret", "rank: position among the reference mixtures by real loss (1 = best). Regret: real loss minus the best reference's; below 0 beats them all."),
    ("recommended / proxy pick", "recommended: mixture.json's weights (after verification by real training); proxy pick: the raw proxy's best candidate before that check."),
    ("uniform / natural", "the two baselines: equal weights, and each domain's share of the training tokens."),
    ("calibrated proxy", "the proxy with each domain's loss and each utility metric passed through a monotone map fitted on real runs (verify/calibration.json: the vertices, when the experts are the one-hot references, and the verification runs, which include uniform = the centre), so judge it on the interior rows."),
    ("loss interpolation / output-space", "non-merging predictors: the weighted average of the experts' losses, and the loss of the weighted average of their next-token probabilities."),
)


def _glossary(scale: Scale) -> str:
    if scale.is_loss:
        first = ("loss", "held-out cross-entropy in nats per token; lower is better. This run's utility is minus this loss, so the report shows every utility as a loss.")
    else:
        first = ("utility", "the score the search maximises (see the benchmark scores), in utility points; higher is better. Held-out losses are in nats per token, lower is better.")
    items = "".join(f"<dt><b>{html.escape(term)}</b></dt><dd>{html.escape(text)}</dd>" for term, text in (first, *GLOSSARY))
    return f"<dl>{items}</dl>"


_ABSOLUTE = re.compile(r"(?<![\w.:/~-])/[\w.+@%-]+(?:/[\w.+@%-]+)*/?")


def relative_paths(text: str, root: Path) -> str:
    """`text` with every absolute path that exists on this machine rewritten relative to `root`."""

    def swap(match: re.Match) -> str:
        path = match.group(0)
        return os.path.relpath(path, root) if os.path.exists(path) else path

    return _ABSOLUTE.sub(swap, text)


def _verdict_section(run_dir: Path, domains: list[str], validation: dict | None, scale: Scale) -> str:
    mixture = _load_json(run_dir / "mixture.json")
    if not mixture:
        return "<p>No recommendation yet: `mergemix run` has not reached the mixture file.</p>"
    grain = run_dir / "mixture.grain.yaml"
    box = render_verdict(verdict_of(mixture, validation, scale), domains, grain.read_text() if grain.is_file() else "", scale)
    from mergemix_jax.runkit.utility import read_run_utility

    utility = read_run_utility(run_dir)
    if utility is not None and not utility.is_loss:
        box += (
            f"<p class='note'>This run's utility is a benchmark score: {html.escape(utility.describe())}. The report shows it in "
            "utility points, higher is better; held-out losses are in nats, lower is better. The benchmark scores follow.</p>"
        )
    return box


def render_report(run_dir: str | os.PathLike) -> Path:
    """Write <run_dir>/report/index.html and its PNGs (readable by others); returns the HTML path."""
    run_dir = Path(run_dir)
    out = run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    config_text = (run_dir / "config.yaml").read_text()
    config = yaml.safe_load(config_text)
    domains = [d["name"] for d in config["data"]["domains"]]
    validation = _latest_validation(run_dir)
    scale = scale_of_run(run_dir, config)
    methods_html, marks = _methods_section(run_dir, out, domains, scale, config)
    commands = relative_paths((run_dir / "commands.txt").read_text(), run_dir) if (run_dir / "commands.txt").is_file() else ""
    stages = relative_paths((run_dir / "stages.jsonl").read_text(), run_dir) if (run_dir / "stages.jsonl").is_file() else ""
    timings = _load_json(run_dir / "timings.json") or {}
    sections = [
        ("Recommendation", _verdict_section(run_dir, domains, validation, scale)),
        ("Benchmark scores", _benchmark_section(run_dir, domains)),
        ("Real runs: predicted vs real", real_runs_section((_load_json(run_dir / "mixture.json") or {}).get("verification"), "minus the loss in nats, higher is better" if scale.is_loss else "utility points, higher is better")),
        ("Mixtures found", methods_html),
        (f"Proxy {scale.quantity} over the simplex", _heatmap_section(run_dir, out, domains, configured_utility(config), marks, scale)),
        ("Interference diagnostics", _diagnostics_section(run_dir, out)),
        ("Proxy vs real mixture training", _validation_section(validation, out, scale)),
        ("Glossary", _glossary(scale)),
        ("Cost plan (written before the run)", f"<pre>{html.escape(relative_paths((run_dir / 'plan.md').read_text(), run_dir))}</pre>" if (run_dir / "plan.md").is_file() else "<p>none (run folder older than mergemix plan)</p>"),
        ("Training time", _table(["model", "steps", "seconds"], [[k, t["steps"], float(t["seconds"])] for k, t in timings.items()], "{:.1f}")),
        ("Commands", f"<pre>{html.escape(commands)}</pre>"),
        ("Config", f"<pre>{html.escape(relative_paths(config_text, run_dir))}</pre>"),
        ("Stage log", f"<pre>{html.escape(stages)}</pre>"),
    ]
    body = "\n".join(f"<h2>{html.escape(t)}</h2>\n{content}" for t, content in sections)
    page = f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>mergemix report: {html.escape(run_dir.name)}</title><style>{STYLE}</style></head>\n<body><h1>mergemix report: {html.escape(run_dir.name)}</h1>\n{body}\n</body></html>\n"
    path = atomic_write_text(out / "index.html", page)
    for written in [path, *out.glob("*.png")]:
        written.chmod(0o644)
    return path
