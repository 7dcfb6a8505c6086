"""The report's verdict box: the recommended mixture beside uniform and natural, measured by real training.

`verdict_of(mixture, validation)` is pure: it reads the mixture.json dict (its `verification` block)
and, when `mergemix validate` ran, validation.json (its `baselines`), and returns a `Verdict`:
green when the proxy's pick was confirmed by real training, red when the proxy's pick trained worse
than uniform or natural by more than the seed noise, amber otherwise (a tie within noise, another
candidate chosen, or nothing verified). The rows hold `-utility` (lower is better); `render_verdict`
shows them in the run's unit and direction (report/units.py): nats of loss, or utility points.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from mergemix_jax.report.units import LOSS, Scale

ROWS = ("recommended", "proxy pick", "uniform", "natural")
COLOURS = {"green": ("#1a7f37", "#e9f7ee"), "red": ("#c62828", "#fdecea"), "amber": ("#9a6700", "#fff8e1")}


@dataclass
class VerdictRow:
    """One mixture of the box: its weights and what real training measured (None = not measured)."""

    name: str
    weights: dict[str, float]
    real_loss: float | None = None  # -utility of the real runs (a loss in nats for a loss utility): lower is better
    rank: str = ""  # "3 of 17"
    regret: float | None = None  # how far behind the best compared mixture, in the utility's unit (0 = the best)
    interval: tuple[float, float] | None = None  # 90% interval of the regret


@dataclass
class Verdict:
    """colour (green | red | amber), a headline, plain sentences, the rows and where the numbers come from."""

    colour: str
    headline: str
    sentences: list[str] = field(default_factory=list)
    rows: list[VerdictRow] = field(default_factory=list)
    source: str = "none"  # validation | verification | none


def _margin(noise: float | None, runs_a: int, runs_b: int, z: float) -> float:
    return 0.0 if noise is None or not np.isfinite(noise) else z * noise * float(np.sqrt(1 / runs_a + 1 / runs_b))


def _from_validation(v: Mapping) -> tuple[list[VerdictRow], dict[str, float], float]:
    """Rows, real losses by name, and the noise-margin test's noise, from validation.json."""
    rows, losses = [], {}
    for name in ROWS:
        b = v["baselines"].get(name)
        if b is None:
            continue
        interval = (b["regret_lo"], b["regret_hi"]) if np.isfinite(b.get("regret_lo", np.nan)) else None
        rows.append(VerdictRow(name, b["weights"], b["real_loss"], f"{b['rank']} of {b['of']}", b["regret"], interval))
        losses[name] = b["real_loss"]
    return rows, losses, v.get("noise")


def _row_names(ver: Mapping) -> dict[str, str | None]:
    """{row of the box (ROWS): the verification candidate it shows}."""
    return {"recommended": ver.get("chosen"), "proxy pick": ver.get("proxy_pick"), "uniform": "uniform", "natural": "natural"}


def _from_verification(ver: Mapping) -> tuple[list[VerdictRow], dict[str, float]]:
    """Rows and real mean losses by name from mixture.json's verification block (ranked among its candidates;
    the seed-adjusted means the decision compared, when the block has them)."""
    cands = {c["name"]: c for c in ver.get("candidates", [])}
    means = {name: -float(c.get("adjusted_mean", c["real_mean"])) for name, c in cands.items()}
    best = min(means.values())
    pool = np.asarray(list(means.values()))
    rows, losses = [], {}
    for label, name in _row_names(ver).items():
        if name not in cands:
            continue
        loss = means[name]
        title = label if label in ("uniform", "natural") or name == label else f"{label} ({name})"
        rows.append(VerdictRow(title, cands[name]["weights"], loss, f"{1 + int(np.sum(pool < loss))} of {len(pool)}", loss - best))
        losses[label] = loss
    return rows, losses


def _runs_by_row(ver: Mapping) -> dict[str, int]:
    """Real runs behind each row of the box, from the verification block (screened candidates have fewer)."""
    runs = {c["name"]: len(c["real_utility"]) for c in ver.get("candidates", [])}
    return {row: runs[name] for row, name in _row_names(ver).items() if name in runs}


def _same_weights(a: Mapping[str, float], b: Mapping[str, float]) -> bool:
    return set(a) == set(b) and all(abs(a[d] - b[d]) < 1e-6 for d in a)


def verdict_of(mixture: Mapping, validation: Mapping | None = None, scale: Scale = LOSS) -> Verdict:
    """The verdict box's content (see module doc). The noise margin is one-sided at the verification's
    confidence (0.9 when absent): q * noise * sqrt(1/runs_a + 1/runs_b), q the normal quantile for
    validation's replicate noise and the Student-t one for the verification runs' residual noise (its dof).
    `scale` only words the sentences (their unit)."""
    from mergemix_jax.runkit.stats import one_sided_quantile

    ver = mixture.get("verification") or {}
    weights = dict(mixture.get("weights", {}))
    confidence = ver.get("confidence") or 0.9
    z = one_sided_quantile(confidence)
    stale = bool(validation and validation.get("baselines")) and not _same_weights(validation["baselines"].get("recommended", {}).get("weights", {}), weights)
    if stale:
        validation = None  # validated an earlier recommendation: its numbers are not this mixture's
    if validation and validation.get("baselines"):
        rows, losses, noise = _from_validation(validation)
        runs = {name: b.get("real_runs", 1) for name, b in validation["baselines"].items()}
        source = "validation"
    elif ver.get("candidates"):
        rows, losses = _from_verification(ver)
        noise, source = ver.get("noise"), "verification"
        runs = _runs_by_row(ver)
        z = one_sided_quantile(confidence, ver.get("noise_dof") or None)
    else:
        message = ver.get("message") or "Not verified: this is the merged proxy's pick, unchecked by real training."
        return Verdict("amber", "Not verified by real training", [message], [VerdictRow("recommended", weights)])
    pick, baselines = losses.get("proxy pick"), {n: losses[n] for n in ("uniform", "natural") if n in losses}

    def gap(name: str) -> float:  # the noise margin between the proxy pick and baseline `name`
        return _margin(noise, runs.get("proxy pick", 1), runs.get(name, 1), z)

    lost_to = [n for n, loss in baselines.items() if pick is not None and pick - loss > gap(n)]
    beats_all = pick is not None and bool(baselines) and all(loss - pick > gap(n) for n, loss in baselines.items())
    confirmed = ver.get("verdict") == "proxy_pick_confirmed" if ver.get("verdict") else beats_all
    if lost_to:
        colour, headline = "red", f"The proxy's pick trained worse than {' and '.join(lost_to)}"
    elif confirmed and (source == "verification" or beats_all):
        colour, headline = "green", "The proxy's pick is confirmed by real training: it beats uniform and natural"
    elif ver.get("verdict") == "acquisition" and source == "verification":
        colour = "amber"
        headline = f"Chosen by the predictor after {ver.get('real_runs', len(ver.get('candidates', [])))} real runs: the best posterior mean among the trained mixtures (not a significance test)"
    elif ver.get("verdict") == "other_candidate":
        colour, headline = "amber", "A verified candidate other than the proxy's pick was recommended"
    else:
        colour, headline = "amber", "No measurable win of the proxy's pick over uniform and natural"
    sentences = [ver["message"]] if ver.get("message") else []
    if stale:
        sentences.append("The last `mergemix validate` checked an earlier recommendation; rerun it to validate this one.")
    if source == "validation":
        sentences.append(_validation_sentence(validation, scale))
    return Verdict(colour, headline, sentences, rows, source)


def _validation_sentence(v: Mapping, scale: Scale = LOSS) -> str:
    n = len(v.get("kinds", []))
    noise = v.get("noise")
    noise_text = f"seed noise {noise:.4f} {scale.unit} per run" if noise is not None else "no replicate, so no noise estimate"
    suite = v.get("suite") or {}
    split = "on held-out sequences the search never saw" if suite.get("heldout_offset") else "on the search's own held-out sequences"
    if suite.get("task_offset"):
        split += " and task items it never scored"
    best = scale.show(v["best"]["real_loss"])
    return (
        f"Validation: every mixture trained for real and scored {split}; rank among {n} reference mixtures, "
        f"regret = how far the mixture's real {scale.quantity} is behind the best reference's ({v['best']['name']}, {best:.4f} {scale.unit}); {noise_text}; "
        f"references indistinguishable from the best: {', '.join(v.get('indistinguishable', [])) or '–'}."
    )


def _fmt(value: float | None, digits: int = 4) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def regret_header(verdict: Verdict, scale: Scale) -> str:
    """The regret column's title: its unit, and its interval or why there is none."""
    if any(r.interval for r in verdict.rows):
        return f"regret ({scale.unit} behind the best) [90% interval]"
    why = "no interval until `mergemix validate`" if verdict.source != "validation" else "no interval: no seed replicate"
    return f"regret ({scale.unit} behind the best; {why})"


def render_verdict(verdict: Verdict, domains: Sequence[str], grain_yaml: str, scale: Scale = LOSS) -> str:
    """The box as HTML: coloured border, headline, sentences, the table (in `scale`'s unit and
    direction) and the ready-to-paste grain file."""
    border, background = COLOURS[verdict.colour]
    head = ["mixture", *domains, scale.label("real"), "rank (1 = best)", regret_header(verdict, scale)]
    body = []
    for r in verdict.rows:
        regret = _fmt(r.regret) + (f" [{_fmt(r.interval[0])}, {_fmt(r.interval[1])}]" if r.interval else "")
        cells = [r.name, *[f"{r.weights.get(d, 0.0):.3f}" for d in domains], _fmt(scale.show(r.real_loss)), r.rank or "–", regret if r.real_loss is not None else "–"]
        body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    table = "<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>" + "".join(body) + "</table>"
    real = f"real {scale.quantity}"
    source = {
        "validation": f"Numbers from `mergemix validate`: rank among the reference mixtures (1 = best); regret = how far the {real} is behind the best reference's ({scale.unit}), below 0 beats them all",
        "verification": f"Numbers from the verification runs of `mergemix run` (mean over data seeds): rank among the verified candidates (1 = best); regret = how far the {real} is behind the best verified candidate's ({scale.unit}); `mergemix validate` adds reference mixtures and intervals",
        "none": "No real training yet",
    }[verdict.source]
    sentences = "".join(f"<p>{html.escape(s)}</p>" for s in verdict.sentences)
    grain = f"<p><b>mixture.grain.yaml</b> (paste into a training config):</p><pre>{html.escape(grain_yaml)}</pre>" if grain_yaml else ""
    return (
        f"<div class='verdict verdict-{verdict.colour}' style='border:3px solid {border};background:{background};padding:.4em 1em;margin:1em 0'>"
        f"<p style='color:{border};font-size:1.2em'><b>{html.escape(verdict.headline)}</b></p>{sentences}{table}"
        f"<p class='note'>{html.escape(source)}.</p>{grain}</div>"
    )
