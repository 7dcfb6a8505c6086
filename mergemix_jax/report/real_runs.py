"""The report's "Real runs: predicted vs real" section, read from mixture.json's verification block only.

For every real run the job trained (acquisition: one per mixture, in order; rounds: one row per
candidate, mean over its seeds): the mixture, what was predicted for it before it trained (the
predictor's posterior mean with the acquisition, the calibrated proxy in rounds >= 2), the raw merged
proxy's and the ensemble's utility, and the real utility. Then how well each proxy ranked the runs
(Spearman with a 90% interval over runs) and what the fitted predictor leans on.
"""

from __future__ import annotations

import html
from collections.abc import Mapping

import numpy as np


def _fmt(value) -> str:
    return "–" if value is None or (isinstance(value, float) and not np.isfinite(value)) else f"{value:.4f}"


def _mixture(weights: Mapping[str, float]) -> str:
    return ", ".join(f"{d} {w:.2f}" for d, w in weights.items())


def real_runs_section(verification: Mapping | None, unit: str) -> str:
    """HTML of the section (empty string when the run was not verified). `unit`: how utility differences
    are named (e.g. "utility points, higher is better")."""
    if not verification or not verification.get("candidates"):
        return ""
    rows = []
    for c in verification["candidates"]:
        real = c.get("real_utility") or []
        rows.append(
            "<tr>" + "".join(f"<td>{html.escape(str(x))}</td>" for x in (c["name"], _mixture(c["weights"]), len(real)))
            + "".join(f"<td>{_fmt(x)}</td>" for x in (c.get("predicted_utility"), c.get("proxy_utility"), c.get("ensemble_utility"), float(np.mean(real)) if real else None))
            + "</tr>"
        )  # fmt: skip
    header = "".join(f"<th>{h}</th>" for h in ("run", "mixture", "seeds", "predicted before training", "merged proxy", "ensemble proxy", "real (mean over seeds)"))
    parts = [
        f"<p>Every mixture trained for real by this job, in the order trained; utilities in {html.escape(unit)}. "
        "'Predicted before training' is out of sample: the predictor's posterior mean (acquisition) or the calibrated proxy (rounds), "
        "made before that run existed; proxies and real runs differ by a constant offset, so compare orderings.</p>",
        f"<table><tr>{header}</tr>{''.join(rows)}</table>",
    ]
    fidelity = verification.get("fidelity") or {}
    if fidelity:
        cells = []
        for name, f in fidelity.items():
            rho = "–" if f.get("spearman") is None else f"{f['spearman']:.2f} [{f['spearman_lo']:.2f}, {f['spearman_hi']:.2f}]"
            cells.append(f"<tr><td>{html.escape(name)}</td><td>{f.get('n', 0)}</td><td>{rho}</td></tr>")
        parts.append("<p>How well each predictor ranked these runs (Spearman, 90% bootstrap interval over runs; fewer than 3 runs: –):</p>")
        parts.append(f"<table><tr><th>predictor</th><th>runs</th><th>Spearman</th></tr>{''.join(cells)}</table>")
    predictor = verification.get("predictor") or {}
    if predictor.get("coefficients"):
        lean = ", ".join(f"{name} {value:+.4f}" for name, value in predictor["coefficients"].items())
        parts.append(f"<p>The fitted predictor's weight on each proxy (utility per proxy standard deviation; near 0 = not trusted): {html.escape(lean)}.</p>")
    return "\n".join(parts)
