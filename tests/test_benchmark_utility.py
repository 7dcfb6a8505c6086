"""Benchmark utility end to end (issue 13): the run's utility is fitted once on the probe table, saved,
and every stage (search, select, verification of real runs, validate, report) scores through it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mergemix_jax.runkit.utility import UTILITY_FILE, RunUtility, fit_run_utility, read_run_utility, run_utility

REPO = Path(__file__).resolve().parents[1]
REFERENCE = {"answer_nll/sums": np.asarray([1.0, 1.5, 2.0, 3.0]), "acc/words": np.asarray([0.25, 0.5, 0.5, 0.75]), "loss/mean": np.asarray([2.0, 2.2, 2.1, 2.4])}


@pytest.mark.parametrize("kind", ["minmax", "rank", "zscore", "none"])
def test_saved_utility_scores_proxies_and_real_runs_alike(tmp_path, kind):
    weights = {"answer_nll/sums": 1.0, "acc/words": 2.0}
    fitted = fit_run_utility(weights, kind, REFERENCE)
    restored = RunUtility.from_json(json.loads(json.dumps(fitted.to_json())))
    batch = {"answer_nll/sums": np.asarray([1.2, 2.8]), "acc/words": np.asarray([0.7, 0.3]), "loss/mean": np.asarray([9.0, 9.0])}
    np.testing.assert_allclose(restored(batch), fitted(batch))
    # a real run's metrics (one record) get the value its proxy row gets in a table: the map is fixed, not refitted on the batch
    assert restored.of_record({k: float(v[1]) for k, v in batch.items()}) == pytest.approx(fitted(batch)[1])
    assert fitted(batch)[0] > fitted(batch)[1]  # lower NLL and higher accuracy are better
    if kind == "none":
        assert fitted(batch)[0] == pytest.approx(-1.2 + 2 * 0.7)  # the plain weighted sum, as before
    else:
        normalised = fitted.normalised(batch)
        assert set(normalised) == set(weights)
        assert fitted(batch)[0] == pytest.approx((normalised["answer_nll/sums"][0] + 2 * normalised["acc/words"][0]) / 3)


def test_run_utility_is_fitted_once_and_reused(tmp_path):
    from mergemix_jax.config import load_config

    config = load_config(None, ["search.normalise=rank"])
    weights = {"answer_nll/sums": 1.0}
    (tmp_path / "eval").mkdir()
    saved = fit_run_utility(weights, "rank", REFERENCE)
    (tmp_path / UTILITY_FILE).write_text(json.dumps(saved.to_json()))
    # no probe table is read: the saved maps are reused (validation and verification score with the search's maps)
    loaded = run_utility(config, tmp_path, weights)
    assert loaded.kind == "rank" and loaded.maps["answer_nll/sums"].sorted_reference.tolist() == sorted((-REFERENCE["answer_nll/sums"]).tolist())
    assert read_run_utility(tmp_path).to_json() == saved.to_json()
    with pytest.raises(ValueError, match="probe table"):
        run_utility(config, tmp_path, {"acc/words": 1.0})  # other metrics, and no probe table to refit on
    assert run_utility(load_config(None, []), None, {"loss/mean": 1.0}).is_loss


def test_validate_rankings_put_the_utility_beside_held_out_loss():
    from mergemix_jax.validate.run import _rankings_summary, rankings

    table = [
        {"metric": m, "subset": s, "spearman": rho, "spearman_lo": rho - 0.2, "spearman_hi": min(rho + 0.1, 1.0)}
        for m, rho in (("utility", 0.6), ("loss/mean", 0.3))
        for s in ("all", "interior")
    ]
    ranks = rankings(table, fit_run_utility({"acc/words": 1.0}, "rank", REFERENCE))
    assert ranks["utility"]["all"]["spearman"] == 0.6 and ranks["held-out loss"]["interior"]["spearman"] == 0.3
    lines = _rankings_summary(ranks)
    (utility_line,) = [k for k in lines if k.startswith("ranking by the utility")]
    assert "rank-normalised" in utility_line and lines[utility_line] == "all 0.600 [0.40, 0.70], interior 0.600 [0.40, 0.70]"
    assert lines["ranking by held-out loss (loss/mean): proxy Spearman [90%]"] == "all 0.300 [0.10, 0.40], interior 0.300 [0.10, 0.40]"


def test_demo_config_scores_the_embedded_tasks():
    from mergemix_jax.config import load_config
    from mergemix_jax.eval import build_suite, metric_names

    config = load_config(str(REPO / "configs" / "demo.yaml"))
    task_dir = Path(config.eval.task_dir)
    assert task_dir.is_absolute() and task_dir.resolve() == (REPO / "mergemix_jax" / "demo_data" / "tasks").resolve()
    assert config.search.normalise in ("minmax", "rank", "zscore")
    assert not any(m.startswith("loss/") for m in config.pipeline.utility)  # benchmarks only; held-out loss is reported
    names = metric_names(build_suite(config))
    assert set(config.pipeline.utility) <= set(names) and "loss/mean" in names
    assert {n.split("/", 1)[1] for n in names if not n.startswith("loss/")} == set(config.eval.tasks)


def test_report_shows_each_benchmark_raw_and_normalised(tmp_path):
    import yaml

    from mergemix_jax.report import render_report

    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"data": {"domains": [{"name": d} for d in ("a", "b")]}}))
    utility = fit_run_utility({"answer_nll/sums": 1.0, "acc/words": 1.0}, "minmax", REFERENCE)
    (run / UTILITY_FILE).write_text(json.dumps(utility.to_json()))

    def candidate(name, nll, acc):
        runs = [{"answer_nll/sums": nll + d, "acc/words": acc, "loss/mean": 2.0 + d} for d in (-0.1, 0.1)]
        return {"name": name, "sources": ["baseline"], "weights": {"a": 0.5, "b": 0.5}, "proxy_utility": 0.0, "calibrated_utility": None,
                "real_utility": [utility.of_record(r) for r in runs], "real_mean": 0.0, "real_metrics": runs}  # fmt: skip

    cands = [candidate("uniform", 2.0, 0.5), candidate("natural", 2.5, 0.25), candidate("c1", 1.5, 0.75)]
    verification = {"candidates": cands, "chosen": "c1", "proxy_pick": "c1", "noise": 0.01, "margin": 0.02, "verdict": "proxy_pick_confirmed",
                    "message": "", "indistinguishable": [], "seeds": [0, 1], "steps": 5, "real_steps_total": 30}  # fmt: skip
    mixture = {"format": "mergemix.mixture/v1", "weights": {"a": 0.5, "b": 0.5}, "method": "verified:c1", "objective": 0.0, "metrics": {}, "verification": verification}
    (run / "mixture.json").write_text(json.dumps(mixture))
    text = render_report(run).read_text()
    section = text[text.index("<h2>Benchmark scores</h2>") : text.index("<h2>", text.index("<h2>Benchmark scores</h2>") + 5)]
    for header in ("recommended raw", "recommended normalised", "uniform raw", "uniform normalised", "natural raw", "natural normalised"):
        assert f"<th>{header}</th>" in section
    # answer_nll 1.5 (mean of the two seeds) on the minmax map fitted on the probe table [1.0, 3.0] (lower is better): 0.75
    assert "<td>answer_nll/sums</td><td>1.0000</td><td>1.5000</td><td>0.7500</td><td>2.0000</td><td>0.5000</td><td>2.5000</td><td>0.2500</td>" in section
    assert "<td>acc/words</td><td>1.0000</td><td>0.7500</td><td>1.0000</td>" in section
    assert "held-out loss loss/mean (reported, not optimised)" in section and "real training" in section


def test_long_continuations_are_cut_to_fit_when_asked():
    from mergemix_jax.data.errors import DataError
    from mergemix_jax.eval.tasks import tokenize_task

    class Bytes:
        pad_id = 0

        def encode(self, text):
            return list(text.encode())

    items = [{"id": "a", "context": "c" * 40, "answer": "x" * 50}]
    with pytest.raises(DataError, match=r"eval\.task_max_len"):
        tokenize_task(items, Bytes(), "t", max_len=32)
    cut = tokenize_task(items, Bytes(), "t", max_len=32, truncate=True)
    assert cut.batch["inputs"].shape[1] <= 32 and int(cut.batch["loss_mask"].sum()) == 32 + 1 - 8  # context keeps 32 // 4 tokens


@pytest.mark.slow  # a pipeline end to end and its validation
def test_pipeline_verifies_with_the_searches_normalised_benchmark_utility(tmp_path):
    """A tiny run whose utility is a task NLL, rank-normalised: the verification stage's real utilities
    are the saved maps applied to the trained models' task scores (not a refit, not the raw sum)."""
    from mergemix_jax.config import load_config
    from mergemix_jax.pipeline import run_pipeline
    from tests.pipeline_helpers import tiny_pipeline_raw, write_config

    tasks = tmp_path / "tasks"
    tasks.mkdir()
    rows = [{"id": f"s{i}", "context": f"{i}+{i + 1}=", "answer": str(2 * i + 1)} for i in range(8)]
    rows_mc = [{"id": f"m{i}", "context": "the nation", "choices": [" people", " 7+3=10"], "answer": i % 2} for i in range(4)]
    (tasks / "sums.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tasks / "words.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows_mc))
    raw = tiny_pipeline_raw(tmp_path, methods=["subsets"], verify_seeds=1, verify_rounds=1, verify_extra_seeds=0, utility={"answer_nll/sums": 1.0, "answer_nll/words": 1.0})
    raw["eval"].update(task_dir=str(tasks), choice_as_answer=["words"], task_max_len=32)
    raw["search"]["normalise"] = "rank"
    raw["validate"] = {"n_dirichlet": 1, "noise_ceiling": False, "baselines": False}
    config_path = write_config(tmp_path, raw)
    result = run_pipeline(load_config(config_path), config_path)
    utility = read_run_utility(result.run_dir)
    assert utility.kind == "rank" and set(utility.maps) == {"answer_nll/sums", "answer_nll/words"} and utility.fitted_on > 4
    ver = json.loads((result.run_dir / "mixture.json").read_text())["verification"]
    assert "rank-normalised" in ver["utility"]
    for cand in ver["candidates"]:
        assert "loss/mean" in cand["real_metrics"][0]  # held-out loss still scored on every real run
        assert cand["real_utility"] == pytest.approx([utility.of_record(r) for r in cand["real_metrics"]])
        assert cand["proxy_utility"] == pytest.approx(utility.of_record(cand["proxy_metrics"]))
        assert all(0.0 <= u <= 1.0 for u in cand["real_utility"])  # rank percentiles, not nats
    text = result.report_path.read_text()
    assert "<h2>Benchmark scores</h2>" in text and "answer_nll/words" in text
    # validate ranks the references by the same saved utility, beside held-out loss
    from mergemix_jax.validate.run import run_validation

    v = run_validation(load_config(config_path), config_path)
    assert v["utility"]["kind"] == "rank" and not v["utility"]["is_loss"]
    assert set(v["rankings"]) >= {"utility", "held-out loss"} and "all" in v["rankings"]["held-out loss"]
    refs = [{m: v["reference"][m][i] for m in v["reference"]} for i in range(len(v["kinds"]))]
    assert v["real_loss"] == pytest.approx([-utility.of_record(r) for r in refs])  # "loss" = -utility through the saved maps
    assert any(k.startswith("ranking by the utility") for k in v["summary"]) and "best reference (real -utility, lower is better)" in v["summary"]
