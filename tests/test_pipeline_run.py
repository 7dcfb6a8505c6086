"""`mergemix run` end to end on a tiny config, stage-by-stage resume, and the config-hash run folder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mergemix_jax.config import config_from_dict, load_config
from mergemix_jax.export import read_mixture
from mergemix_jax.pipeline import read_stage_log, run_dir_for, run_pipeline
from tests.pipeline_helpers import file_mtimes, finished_tiny_run, tiny_pipeline_raw, write_config


@pytest.mark.slow  # a tiny pipeline end to end, in two goes
def test_interrupted_run_resumes_without_redoing_finished_stages():
    run = finished_tiny_run()  # stopped after the experts (as if killed), then finished by `mergemix run`
    run_dir = run.run_dir
    assert f"report: {run_dir / 'report' / 'index.html'}" in run.cli_output
    assert file_mtimes(run_dir / "base") | file_mtimes(run_dir / "experts") == run.trained_mtimes
    log = read_stage_log(run_dir)
    first, second = log[: run.first_go_events], log[run.first_go_events :]
    trained = {"base", "expert:prose", "expert:code", "expert:math"}
    assert {e["stage"]: e["status"] for e in first} == dict.fromkeys(trained, "done")
    assert {e["stage"]: e["status"] for e in second if e["stage"] in trained} == dict.fromkeys(trained, "reused")
    assert {e["stage"] for e in second if e["status"] == "done"} == {"probe", "diagnostics", "search:subsets", "search:surrogate", "select", "verify", "report"}

    selected = read_mixture(run_dir / "search" / "selected.json")  # the proxy's own pick
    assert selected.method in ("subsets", "surrogate")
    assert selected.metrics["utility"] == pytest.approx(max(selected.search["compared"].values()))
    mixture = read_mixture(run_dir / "mixture.json")
    assert set(mixture.weights) == {"prose", "code", "math"}
    v = mixture.verification
    names = [c["name"] for c in v["candidates"]]
    assert names[:2] == ["uniform", "natural"] and len(names) >= 3 and v["chosen"] in names
    chosen = next(c for c in v["candidates"] if c["name"] == v["chosen"])
    assert mixture.weights == pytest.approx(chosen["weights"]) and mixture.method.startswith(f"verified:{v['chosen']}")
    means = {c["name"]: np.mean(c["real_utility"]) for c in v["candidates"]}
    assert all(len(c["real_utility"]) == 2 for c in v["candidates"])  # verify_seeds = 2
    assert means[v["chosen"]] >= max(means["uniform"], means["natural"])  # never worse than a baseline
    assert (run_dir / "verify" / "calibration.json").is_file()

    before = file_mtimes(run_dir)
    run_pipeline(load_config(run.config_path), run.config_path)  # a third go redoes nothing but the report
    after = file_mtimes(run_dir)
    changed = {p for p in after if before.get(p) != after[p]}
    assert all("/report/" in p or p.endswith("stages.jsonl") for p in changed), changed
    third = read_stage_log(run_dir)[len(log) :]
    assert {e["status"] for e in third if e["stage"] != "report"} == {"reused"}


def test_run_folder_is_named_by_a_hash_of_the_results_relevant_config(tmp_path):
    raw = tiny_pipeline_raw(tmp_path)
    config = config_from_dict(raw)
    same = config_from_dict({**raw, "validate": {"n_dirichlet": 7}, "train": {**raw["train"], "progress": True}})
    other = config_from_dict({**raw, "pipeline": {**raw["pipeline"], "expert_steps": 5}})
    moved = config_from_dict({**raw, "pipeline": {**raw["pipeline"], "output_root": str(tmp_path / "elsewhere")}})
    assert run_dir_for(config, "a/tiny.yaml") == run_dir_for(same, "b/tiny.yaml")
    assert run_dir_for(config, "tiny.yaml").name.startswith("tiny-")
    assert run_dir_for(config, "tiny.yaml") != run_dir_for(other, "tiny.yaml")
    assert run_dir_for(moved, "tiny.yaml").name == run_dir_for(config, "tiny.yaml").name


@pytest.mark.slow  # a tiny pipeline end to end
def test_finished_run_outputs_are_consistent():
    run_dir = finished_tiny_run().run_dir
    probe = (run_dir / "eval" / "probe.csv").read_text().splitlines()
    header = probe[0].split(",")
    assert header[:5] == ["row", "weights_hash", "w/prose", "w/code", "w/math"]
    weights = np.asarray([[float(x) for x in line.split(",")[2:5]] for line in probe[1:]])
    np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-6)
    assert len(weights) == len(np.unique(weights.round(6), axis=0))  # no mixture scored twice
    diag = json.loads((run_dir / "diagnostics.json").read_text())
    np.testing.assert_allclose(np.diag(diag["gamma"]), 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.diag(diag["cosine"]), 1.0, atol=1e-5)
    grain = (run_dir / "mixture.grain.yaml").read_text()
    assert "prose" in grain or "code" in grain or "math" in grain


def test_bad_utility_metric_is_named(tmp_path):
    path = write_config(tmp_path, tiny_pipeline_raw(tmp_path, utility={"loss/nope": 1.0}, base_steps=2, expert_steps=1))
    with pytest.raises(ValueError, match=r"'pipeline.utility' names 'loss/nope', but no domain is called 'nope'"):
        run_pipeline(load_config(path), path)
