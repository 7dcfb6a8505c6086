"""The predictor fitted on real runs and the acquisition that picks each next run (verify/predictor.py,
verify/acquisition.py), on synthetic problems with a known optimum and known noise."""

import json

import numpy as np
import pytest

from mergemix_jax.verify.acquire_stage import around_natural
from mergemix_jax.verify.acquisition import acquire, proxy_fidelity, proxy_reliance
from mergemix_jax.verify.predictor import FeatureScale, Hyper, expected_improvement, fit_predictor

K = 4
OPTIMUM = np.array([0.4, 0.3, 0.2, 0.1])


def utility(w_NxK: np.ndarray) -> np.ndarray:
    """A concave utility with its maximum at OPTIMUM (regret of a mixture = utility(OPTIMUM) - utility(w))."""
    return -3.0 * ((np.asarray(w_NxK) - OPTIMUM) ** 2).sum(-1)


def pool_and_proxy(seed: int, fidelity: float, n: int = 64):
    rng = np.random.default_rng(seed)
    pool = np.concatenate([OPTIMUM[None], rng.dirichlet(np.full(K, 2.0), n - 1)])
    proxy = fidelity * utility(pool) * 0.5 + rng.normal(0, 0.03, n)
    return pool, proxy[:, None], rng


def test_uncertainty_shrinks_at_trained_points():
    """With the hyperparameters fixed, a run shrinks the posterior sd at its mixture, below the sd of the
    untrained mixtures and further with replicates on other seeds."""
    pool, proxy, rng = pool_and_proxy(0, 0.0)
    scale = FeatureScale.of(proxy)
    hyper = Hyper(1.0, 0.2, 0.1, 1.0, 1.0)
    trained = [3, 10, 20, 30, 40]
    y = utility(pool[trained]) + rng.normal(0, 0.02, len(trained))
    before = fit_predictor(pool[trained[:1]], proxy[trained[:1]], np.zeros(1), y[:1], scale, 1.0, hyper).predict(pool[trained], proxy[trained])[1]
    predictor = fit_predictor(pool[trained], proxy[trained], np.zeros(len(trained)), y, scale, 1.0, hyper)
    _, sd = predictor.predict(pool, proxy)
    assert np.all(sd[trained[1:]] < before[1:])
    untrained = np.setdiff1d(np.arange(len(pool)), trained)
    assert sd[trained].max() < np.median(sd[untrained])
    replicated = fit_predictor(pool[trained * 3], proxy[trained * 3], np.repeat([0, 1, 2], len(trained)), np.tile(y, 3), scale, 1.0, hyper)
    assert np.all(replicated.predict(pool[trained], proxy[trained])[1] < sd[trained])


def test_predictor_follows_a_faithful_proxy_and_learns_its_weight():
    pool, proxy, rng = pool_and_proxy(1, 1.0)
    runs = [5, 15, 25, 35, 45, 55]
    y = utility(pool[runs]) + rng.normal(0, 0.01, len(runs))
    predictor = fit_predictor(pool[runs], proxy[runs], np.zeros(len(runs)), y, FeatureScale.of(proxy), 1.0)
    mean, _ = predictor.predict(pool, proxy)
    assert np.corrcoef(mean, utility(pool))[0, 1] > 0.9
    assert predictor.coefficients()[0] > 0


def test_seed_offsets_do_not_bias_the_means():
    """Every mixture on seed 0, two of them also on a seed that costs every mixture 0.3: the posterior mean
    of a mixture is its seed-0 value, not pulled down by the hard seed."""
    pool, proxy, rng = pool_and_proxy(2, 0.0)
    idx = np.array([1, 2, 3, 4, 1, 2])
    seeds = np.array([0, 0, 0, 0, 1, 1])
    y = utility(pool[idx]) - 0.3 * seeds + rng.normal(0, 0.005, len(idx))
    predictor = fit_predictor(pool[idx], proxy[idx], seeds, y, FeatureScale.of(proxy), 1.0)
    mean, _ = predictor.predict(pool[[1, 2]], proxy[[1, 2]])
    np.testing.assert_allclose(mean, utility(pool[[1, 2]]), atol=0.05)


def test_expected_improvement_matches_monte_carlo():
    rng = np.random.default_rng(0)
    mean, sd, best = np.array([0.1, -0.2, 0.0]), np.array([0.3, 0.5, 0.0]), 0.05
    draws = mean[:, None] + sd[:, None] * rng.standard_normal((3, 400_000))
    np.testing.assert_allclose(expected_improvement(mean, sd, best), np.maximum(draws - best, 0).mean(1), atol=2e-3)


@pytest.mark.parametrize("fidelity", [1.0, 0.0, -1.0])
def test_acquisition_finds_the_known_optimum(fidelity):
    """With a faithful, a useless or an inverted proxy, 12 noisy runs end within the noise of the optimum
    (which is in the pool), on average over seeds; with a faithful proxy the first pick is already close."""
    noise, regrets, first = 0.02, [], []
    for seed in range(4):
        pool, proxy, rng = pool_and_proxy(seed, fidelity)
        result = acquire(pool, proxy, lambda i, s, rng=rng, pool=pool: float(utility(pool[i:i + 1])[0] + rng.normal(0, noise)), 12, seeds=[0])
        regrets.append(float(utility(OPTIMUM[None])[0] - utility(pool[result.chosen][None])[0]))
        first.append(float(utility(OPTIMUM[None])[0] - utility(pool[result.trajectory[0].chosen][None])[0]))
        assert len(result.runs) == 12 and len({r.index for r in result.runs}) == 12  # one run per mixture, none repeated
        assert [s.runs for s in result.trajectory] == list(range(13))
    assert np.mean(regrets) < 2 * noise
    if fidelity > 0:
        assert np.mean(first) < 3 * noise  # the proxy itself carries noise (sd 0.03 at half the scale)


def test_acquisition_beats_random_search_with_a_faithful_proxy_and_keeps_up_without_one():
    """Mean regret after B runs against random search's best-measured of B draws from the same pool."""
    noise, budget = 0.02, 8
    for fidelity, slack in ((1.0, 0.0), (0.0, 0.05)):
        acq, rand = [], []
        for seed in range(6):
            pool, proxy, rng = pool_and_proxy(seed + 10, fidelity)
            result = acquire(pool, proxy, lambda i, s, rng=rng, pool=pool: float(utility(pool[i:i + 1])[0] + rng.normal(0, noise)), budget, seeds=[0])
            acq.append(utility(OPTIMUM[None])[0] - utility(pool[result.chosen][None])[0])
            picks = rng.choice(len(pool), budget, replace=False)
            measured = utility(pool[picks]) + rng.normal(0, noise, budget)
            rand.append(utility(OPTIMUM[None])[0] - utility(pool[picks[np.argmax(measured)]][None])[0])
        assert np.mean(acq) <= np.mean(rand) + slack, (fidelity, np.mean(acq), np.mean(rand))


def test_stop_ratio_ends_early_and_budget_is_respected():
    pool, proxy, _rng = pool_and_proxy(3, 1.0)
    train = lambda i, s: float(utility(pool[i:i + 1])[0])  # noiseless  # noqa: E731
    assert len(acquire(pool, proxy, train, 5, seeds=[0]).runs) == 5
    stopped = acquire(pool, proxy, train, 30, seeds=[0], stop_ratio=1e6)
    assert len(stopped.runs) == 1 and "expected improvement" in stopped.stopped


def test_proxy_fidelity_reports_rank_and_interval():
    real = np.arange(10.0)
    good = proxy_fidelity(real + 100, real)
    assert good["spearman"] == pytest.approx(1.0) and good["rmse_centred"] == pytest.approx(0.0)
    bad = proxy_fidelity(-real, real)
    assert bad["spearman"] == pytest.approx(-1.0) and bad["spearman_hi"] <= -0.9
    assert proxy_fidelity(real[:2], real[:2])["spearman"] is None


def test_around_natural_is_centred_on_natural():
    natural = np.array([0.5, 0.3, 0.15, 0.05])
    draws = around_natural(natural, 4000, 0)
    np.testing.assert_allclose(draws.mean(0), natural, atol=0.01)
    np.testing.assert_allclose(draws.sum(1), 1.0)


@pytest.mark.slow
def test_acquisition_stage_end_to_end_reuses_the_run_folder(tmp_path):
    """`pipeline.verify_strategy=acquisition` on a finished tiny run: same run folder (verification settings
    are not in its hash), experts/probe/searches reused, `verify_budget` real runs each counted once, a
    trajectory entry per run; switching back to the rounds rule reruns only the verify stage."""
    from mergemix_jax.config import load_config
    from mergemix_jax.pipeline import read_stage_log, run_pipeline
    from mergemix_jax.verify.stage import read_verification
    from tests.pipeline_helpers import tiny_pipeline_raw, write_config

    path = write_config(tmp_path, tiny_pipeline_raw(tmp_path))
    run_dir = run_pipeline(load_config(path), path, stop_after="verify")
    rounds = read_verification(run_dir)
    events = len(read_stage_log(run_dir))
    acquisition = ["pipeline.verify_strategy=acquisition", "pipeline.verify_budget=3"]
    assert run_pipeline(load_config(path, acquisition), path, stop_after="verify") == run_dir
    new = read_stage_log(run_dir)[events:]
    assert {e["stage"] for e in new if e["status"] == "done"} == {"verify"}
    v = read_verification(run_dir)
    assert v["strategy"] == "acquisition" and v["real_runs"] == 3 == len(v["candidates"])
    assert [t["runs"] for t in v["trajectory"]] == [0, 1, 2, 3] and v["trajectory"][-1]["chosen"] == v["chosen"]
    assert len({json.dumps(c["weights"], sort_keys=True) for c in v["candidates"]}) == 3  # no mixture trained twice
    assert all(c["predicted_utility"] is not None and len(c["real_utility"]) == 1 for c in v["candidates"])
    assert set(v["fidelity"]) >= {"merged", "predictor (before each run)"}
    mixture = json.loads((run_dir / "mixture.json").read_text())
    chosen = next(c for c in v["candidates"] if c["name"] == v["chosen"])
    assert mixture["weights"] == pytest.approx(chosen["weights"])
    calibrated = [*acquisition[:2], "pipeline.verify_features=[calibrated,ensemble]", "pipeline.verify_baselines_first=true"]
    run_pipeline(load_config(path, calibrated), path, stop_after="verify")
    v = read_verification(run_dir)
    assert [c["name"] for c in v["candidates"]][:2] == ["uniform", "natural"] and v["predictor"]["features"] == ["calibrated", "ensemble"]
    assert all(c["calibrated_utility"] is not None for c in v["candidates"]) and "calibrated" in v["fidelity"]
    assert run_pipeline(load_config(path), path, stop_after="verify") == run_dir  # back to rounds: verify reruns from cached runs
    assert read_verification(run_dir)["candidates"][0]["real_utility"] == rounds["candidates"][0]["real_utility"]


def test_report_shows_predicted_vs_real_for_every_run():
    from mergemix_jax.report.real_runs import real_runs_section

    block = {
        "candidates": [
            {"name": "a3", "weights": {"x": 0.25, "y": 0.75}, "real_utility": [0.5], "predicted_utility": 0.41, "proxy_utility": 0.9, "ensemble_utility": 0.7},
            {"name": "uniform", "weights": {"x": 0.5, "y": 0.5}, "real_utility": [0.3, 0.5], "predicted_utility": None, "proxy_utility": 0.8, "ensemble_utility": None},
        ],
        "fidelity": {"merged": {"n": 2, "spearman": None}, "ensemble": {"n": 5, "spearman": 0.5, "spearman_lo": -0.2, "spearman_hi": 0.9}},
        "predictor": {"coefficients": {"merged": -0.01, "ensemble": 0.02}},
    }
    out = real_runs_section(block, "utility points, higher is better")
    assert out.count("<tr>") == 3 + 3  # header + 2 runs, header + 2 fidelity rows
    assert "0.4100" in out and "0.4000" in out and "x 0.25, y 0.75" in out  # prediction, real mean over seeds, mixture
    assert "0.50 [-0.20, 0.90]" in out and "ensemble +0.0200" in out
    assert real_runs_section({"skipped": True}, "nats") == ""


def test_verdict_box_names_an_acquisition_answer_for_what_it_is():
    from mergemix_jax.report.verdict import verdict_of

    cand = {"name": "a3", "weights": {"x": 0.3, "y": 0.7}, "real_utility": [0.5], "real_mean": 0.5, "adjusted_mean": 0.52}
    mixture = {"weights": cand["weights"], "verification": {"verdict": "acquisition", "chosen": "a3", "proxy_pick": None, "real_runs": 6, "candidates": [cand], "message": "m"}}
    box = verdict_of(mixture)
    assert box.colour == "amber" and "after 6 real runs" in box.headline and "not a significance test" in box.headline


def test_the_off_switch_is_the_strategys_own_key_and_messages_name_it():
    """acquisition (the default) is off with verify_budget=0, rounds with verify_candidates=0; the
    unverified answer's message names the key that turned verification off."""
    import dataclasses
    from pathlib import Path

    from mergemix_jax.config import load_config
    from mergemix_jax.pipeline.stages import verification_off_key

    demo = load_config(Path(__file__).resolve().parents[1] / "configs" / "demo.yaml")

    def with_(**values):
        return dataclasses.replace(demo, pipeline=dataclasses.replace(demo.pipeline, **values))

    assert demo.pipeline.verify_strategy == "acquisition" and verification_off_key(demo) == ""
    assert verification_off_key(with_(verify_budget=0)) == "pipeline.verify_budget is 0"
    assert verification_off_key(with_(verify_strategy="rounds", verify_budget=0)) == ""
    assert "verify_candidates is 0" in verification_off_key(with_(verify_strategy="rounds", verify_candidates=0))


def test_the_answer_says_whether_it_leans_on_a_proxy_or_on_the_runs_alone():
    rng = np.random.default_rng(0)
    real = rng.normal(size=12)
    faithful = {"merged": proxy_fidelity(real + 0.1 * rng.normal(size=12), real), "ensemble": proxy_fidelity(rng.normal(size=12), real)}
    text = proxy_reliance(faithful, ["merged", "ensemble"])
    assert "merged 0.9" in text and "ensemble" not in text and "12 real runs" in text
    useless = {"merged": proxy_fidelity(rng.normal(size=12), real)}
    assert "rests on the real runs themselves" in proxy_reliance(useless, ["merged", "ensemble"])
    assert "Too few real runs" in proxy_reliance({"merged": proxy_fidelity(real[:2], real[:2])}, ["merged"])


def test_refeature_runs_after_every_run_and_each_run_keeps_the_features_it_was_chosen_with():
    """A proxy recalibrated on the runs (pipeline.verify_features: calibrated) changes the features after
    every run; each run records the features it had before it trained (its out-of-sample prediction)."""
    pool, proxy, rng = pool_and_proxy(0, 1.0, n=32)
    calls = []

    def refeature(runs):
        calls.append(len(runs))
        return proxy + len(runs)  # a shift per run makes the features each run saw identifiable

    result = acquire(pool, proxy, lambda i, s: float(utility(pool[i : i + 1])[0] + rng.normal(0, 0.01)), 4, seeds=[0], refeature=refeature)
    assert calls == [1, 2, 3, 4]
    assert [r.features[0] - proxy[r.index, 0] for r in result.runs] == pytest.approx([0, 1, 2, 3])
    assert result.features == pytest.approx(proxy + 4)


def test_the_opening_runs_train_first_then_expected_improvement_takes_over():
    pool, proxy, rng = pool_and_proxy(1, 1.0, n=32)
    result = acquire(pool, proxy, lambda i, s: float(utility(pool[i : i + 1])[0] + rng.normal(0, 0.01)), 5, seeds=[0], first=[7, 3, 7])
    assert [r.index for r in result.runs][:2] == [7, 3] and len(result.runs) == 5
    assert len({r.index for r in result.runs}) == 5  # no mixture trained twice on one seed
    assert result.trajectory[0].chosen == int(np.argmax(proxy[:, 0]))  # before any run: the proxies' favourite
