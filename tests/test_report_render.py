"""The report renders: valid HTML, every referenced image exists and is non-empty, the verdict box first
(green when the proxy's pick is confirmed, red when it lost to a baseline), relative paths, readable files."""

from __future__ import annotations

import html.parser
import json
import math
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import yaml

from mergemix_jax.report import render_report
from mergemix_jax.report.verdict import verdict_of
from tests.pipeline_helpers import finished_tiny_run

DOMAINS = ("prose", "code", "math")


class _Collector(html.parser.HTMLParser):
    VOID: ClassVar[set[str]] = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self):
        super().__init__()
        self.images, self.headings, self.stack, self.errors = [], [], [], []
        self._in_h2 = False

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        if tag not in self.VOID:
            self.stack.append(tag)
        self._in_h2 = tag == "h2"

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
        else:
            self.stack.pop()

    def handle_data(self, data):
        if self._in_h2:
            self.headings.append(data)
            self._in_h2 = False


def _parse(text: str) -> _Collector:
    parser = _Collector()
    parser.feed(text)
    parser.close()
    assert parser.errors == [] and parser.stack == []
    return parser


@pytest.mark.slow  # a tiny pipeline end to end
def test_report_is_well_formed_and_every_image_exists():
    run = finished_tiny_run()
    page = render_report(run.run_dir)
    text = page.read_text()
    parser = _parse(text)
    assert {"weights.png", "heatmap.png", "diagnostics.png", "traces.png"} <= {Path(src).name for src in parser.images}
    for src in parser.images:
        image = page.parent / src
        assert image.is_file() and image.stat().st_size > 1000, src
        assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert image.stat().st_mode & 0o777 == 0o644, src
    assert page.stat().st_mode & 0o777 == 0o644
    assert parser.headings[:8] == ["Recommendation", "Benchmark scores", "Real runs: predicted vs real", "Mixtures found", "Proxy loss over the simplex", "Interference diagnostics", "Proxy vs real mixture training", "Glossary"]
    assert "class='verdict verdict-" in text and "mixture.grain.yaml" in text and "Recommended mixture" in text
    assert "mergemix run --config ../../tiny.yaml" in text  # paths relative to the run folder
    assert str(run.run_dir.parent.parent) not in text  # no absolute path of this machine
    assert "expert_steps: 3" in text  # the exact config
    assert "utility (higher" not in text and "exact utility" not in text  # one sign convention: losses


def _candidate(name: str, weights: tuple[float, ...], real: list[float], proxy: float) -> dict:
    return {"name": name, "sources": ["cmaes"] if name.startswith("c") else ["baseline"], "weights": dict(zip(DOMAINS, weights, strict=True)),
            "proxy_utility": proxy, "calibrated_utility": None, "real_utility": real, "real_mean": float(np.mean(real)), "real_metrics": []}  # fmt: skip


def _mixture(pick_real: list[float], verdict: str, chosen: str) -> dict:
    """A mixture.json dict as `mergemix run` writes it (the verification block of the contract)."""
    candidates = [
        _candidate("uniform", (1 / 3, 1 / 3, 1 / 3), [-4.60, -4.61], -4.70),
        _candidate("natural", (0.5, 0.3, 0.2), [-4.62, -4.63], -4.72),
        _candidate("c1", (0.0, 0.4, 0.6), pick_real, -4.50),
    ]
    weights = next(c["weights"] for c in candidates if c["name"] == chosen)
    verification = {"candidates": candidates, "chosen": chosen, "proxy_pick": "c1", "noise": 0.007, "margin": 0.009, "verdict": verdict,
                    "message": f"verdict {verdict}", "indistinguishable": [], "seeds": [0, 1], "steps": 50, "real_steps_total": 300}  # fmt: skip
    return {"format": "mergemix.mixture/v1", "weights": weights, "method": f"verified:{chosen}", "objective": 4.6, "metrics": {}, "verification": verification}


def _minimal_run(folder: Path, mixture: dict) -> Path:
    """A run folder with only what the verdict needs: config.yaml, mixture.json, mixture.grain.yaml."""
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump({"data": {"domains": [{"name": d} for d in DOMAINS]}}))
    (folder / "mixture.json").write_text(json.dumps(mixture))
    (folder / "mixture.grain.yaml").write_text(yaml.safe_dump({"train": {"mixture": mixture["weights"]}}, sort_keys=False))
    return folder


def _verdict_box(text: str) -> str:
    start = text.index("<h2>Recommendation</h2>")
    return text[start : text.index("<h2>", start + 5)]


def test_verdict_box_green_when_the_proxy_pick_is_confirmed(tmp_path):
    mixture = _mixture([-4.55, -4.56], "proxy_pick_confirmed", "c1")
    verdict = verdict_of(mixture)
    assert verdict.colour == "green" and verdict.source == "verification"
    rows = {r.name: r for r in verdict.rows}
    assert rows["recommended (c1)"].real_loss == rows["proxy pick (c1)"].real_loss == 4.555
    assert rows["recommended (c1)"].rank == "1 of 3" and rows["recommended (c1)"].regret == 0.0
    assert rows["uniform"].rank == "2 of 3" and math.isclose(rows["uniform"].regret, 0.05)
    box = _verdict_box(render_report(_minimal_run(tmp_path / "run", mixture)).read_text())
    assert "verdict-green" in box and "confirmed by real training" in box
    assert "c1" in box and "4.5550" in box and "2 of 3" in box
    assert "train:\n  mixture:\n    prose: 0.0\n    code: 0.4\n    math: 0.6" in box  # the ready-to-paste grain file


def test_verdict_box_red_when_the_proxy_pick_lost_to_a_baseline(tmp_path):
    mixture = _mixture([-4.66, -4.67], "baseline_kept", "uniform")
    verdict = verdict_of(mixture)
    assert verdict.colour == "red" and "uniform and natural" in verdict.headline
    box = _verdict_box(render_report(_minimal_run(tmp_path / "run", mixture)).read_text())
    assert "verdict-red" in box and "worse than uniform and natural" in box and "verdict baseline_kept" in box
    within_noise = verdict_of(_mixture([-4.603, -4.613], "baseline_kept", "uniform"))
    assert within_noise.colour == "amber"  # lost to uniform by less than the noise: a tie, not a loss
    unverified = verdict_of({"weights": dict(zip(DOMAINS, (0.2, 0.3, 0.5), strict=True)), "verification": {"skipped": True, "message": "Not verified"}})
    assert unverified.colour == "amber" and unverified.rows[0].real_loss is None


def test_verdict_uses_validation_regret_intervals_when_validated():
    def entry(loss, rank, regret, runs=1):
        return {"weights": dict(zip(DOMAINS, (1 / 3, 1 / 3, 1 / 3), strict=True)), "real_loss": loss, "real_runs": runs, "rank": rank, "of": 6,
                "regret": regret, "regret_lo": regret - 0.01, "regret_hi": regret + 0.01}  # fmt: skip

    validation = {
        "kinds": ["vertex"] * 3 + ["centre", "dirichlet"], "noise": 0.003, "indistinguishable": ["m03 (centre)"],
        "best": {"name": "m03 (centre)", "real_loss": 4.60}, "suite": {"heldout_offset": 16},
        "baselines": {"recommended": entry(4.60, 1, 0.0), "proxy pick": entry(4.70, 5, 0.10), "uniform": entry(4.60, 1, 0.0, 2), "natural": entry(4.62, 2, 0.02)},
    }  # fmt: skip
    verdict = verdict_of(_mixture([-4.66, -4.67], "baseline_kept", "uniform"), validation)
    assert verdict.source == "validation" and verdict.colour == "red"
    rows = {r.name: r for r in verdict.rows}
    assert rows["proxy pick"].interval == pytest.approx((0.09, 0.11)) and rows["proxy pick"].rank == "5 of 6"
    assert "never saw" in verdict.sentences[-1]
    other = _mixture([-4.55, -4.56], "proxy_pick_confirmed", "c1")  # a later run recommends another mixture
    stale = verdict_of(other, validation)
    assert stale.source == "verification" and stale.colour == "green" and "earlier recommendation" in stale.sentences[-1]


def test_verdict_margin_counts_each_rows_runs_and_the_noise_degrees_of_freedom():
    # the proxy's pick was screened on one seed and trails uniform by 0.0135: beyond a normal margin on
    # 2 runs each (0.009) but inside the Student-t margin on 2 dof for 1 run against 2 (0.016)
    mixture = _mixture([-4.6185], "baseline_kept", "uniform")
    mixture["verification"]["noise_dof"] = 2
    assert verdict_of(mixture).colour == "amber"
    mixture["verification"]["noise_dof"] = 200  # a well-measured noise: the margin is about the normal one, 0.011
    assert verdict_of(mixture).colour == "red"


# ---------------------------------------------------------------- issue 20: every number states its unit and direction


def _benchmark_mixture() -> dict:
    """A verified run whose utility is a benchmark score (positive, higher is better)."""
    mixture = _mixture([0.88, 0.87], "proxy_pick_confirmed", "c1")
    for c, real in zip(mixture["verification"]["candidates"], ([0.80, 0.81], [0.79, 0.80], [0.88, 0.87]), strict=True):
        c.update(real_utility=real, real_mean=float(np.mean(real)))
    return mixture


@pytest.mark.parametrize(
    "utility, mixture, shown, hidden",
    [
        ({"loss/mean": 1.0}, _mixture([-4.55, -4.56], "proxy_pick_confirmed", "c1"),
         ["real loss (nats, lower is better)", "4.5550", "regret (nats behind the best; no interval until `mergemix validate`)"], ["-4.5550", "utility points"]),
        ({"acc/arith": 1.0}, _benchmark_mixture(),
         ["real utility (utility points, higher is better)", "<td>0.8750</td>", "<td>0.8050</td>", "regret (utility points behind the best; no interval until `mergemix validate`)"],
         ["-0.8750", "real loss", "nats"]),
    ],
)  # fmt: skip
def test_verdict_box_states_the_unit_and_direction_of_the_utility(tmp_path, utility, mixture, shown, hidden):
    run = _minimal_run(tmp_path / "run", mixture)
    (run / "config.yaml").write_text(yaml.safe_dump({"data": {"domains": [{"name": d} for d in DOMAINS]}, "pipeline": {"utility": utility}}))
    box = _verdict_box(render_report(run).read_text())
    for text in shown:
        assert text in box, text
    for text in hidden:
        assert text not in box.split("<table>")[1].split("</table>")[0], text  # the table itself


def test_search_traces_keep_the_gradient_objective_off_the_utility_axis(tmp_path, monkeypatch):
    from mergemix_jax.export import MixtureFile, write_mixture
    from mergemix_jax.report import html as report_html

    run = _minimal_run(tmp_path / "run", _benchmark_mixture())
    (run / "config.yaml").write_text(yaml.safe_dump({"data": {"domains": [{"name": d} for d in DOMAINS]}, "pipeline": {"utility": {"acc/arith": 1.0}}}))
    weights = dict(zip(DOMAINS, (0.2, 0.3, 0.5), strict=True))
    for method, trace in (("gradient", [7.9, 7.8]), ("cmaes", [-0.80, -0.86])):
        write_mixture(MixtureFile(weights, method, trace[-1], search={"trace": trace}), run / "search" / f"{method}.json")
    seen = {}
    monkeypatch.setattr(report_html.plots, "search_traces", lambda utilities, objectives, label, path: seen.update(u=utilities, o=objectives, label=label) or path)
    text = render_report(run).read_text()
    assert seen["u"] == {"cmaes": [0.80, 0.86]} and seen["label"] == "best proxy utility (utility points, higher is better)"
    assert list(seen["o"]) == ["gradient"] and "differentiable stand-in" in text
