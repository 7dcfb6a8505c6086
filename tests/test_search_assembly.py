"""One problem assembly: `mergemix search` solves the problem `mergemix run` solved, from one config."""

import json

import pytest

from mergemix_jax.cli.main import main
from mergemix_jax.export import read_mixture
from mergemix_jax.search.hierarchical import clusters_from_similarity
from tests.pipeline_helpers import finished_tiny_run


@pytest.mark.slow
@pytest.mark.parametrize("method", ["subsets", "surrogate"])
def test_search_on_a_run_folder_writes_the_pipelines_mixture(tmp_path, method):
    """subsets: caps and token union; surrogate: the probe table as observations and the utility."""
    run = finished_tiny_run()
    out = tmp_path / f"{method}.json"
    assert main(["search", "--run", str(run.run_dir), "--method", method, "--out", str(out), "--no-progress"]) == 0
    ours, pipeline = read_mixture(out), read_mixture(run.run_dir / "search" / f"{method}.json")
    assert ours.weights == pytest.approx(pipeline.weights, abs=1e-9)
    assert ours.provenance["settings"]["inputs"] == pipeline.provenance["settings"]["inputs"]  # caps, budget, observed rows, utility


@pytest.mark.slow
def test_search_on_checkpoints_is_the_same_problem_without_the_probe_table(tmp_path):
    run = finished_tiny_run()
    experts = [str(run.run_dir / "experts" / name) for name in ("prose", "code", "math")]
    out = tmp_path / "subsets.json"
    argv = ["search", "--config", str(run.run_dir / "config.yaml"), "--base", str(run.run_dir / "base"), "--experts", *experts]
    assert main([*argv, "--method", "subsets", "--out", str(out), "--no-progress"]) == 0
    pipeline = read_mixture(run.run_dir / "search" / "subsets.json")
    assert read_mixture(out).weights == pytest.approx(pipeline.weights, abs=1e-9)
    inputs = read_mixture(out).provenance["settings"]["inputs"]
    assert inputs["caps"] == pipeline.provenance["settings"]["inputs"]["caps"] and inputs["observed_mixtures"] == 0


def test_a_run_folder_excludes_other_sources_of_experts(tmp_path, capsys):
    (tmp_path / "config.yaml").write_text("{}\n")
    assert main(["search", "--run", str(tmp_path), "--method", "subsets", "--base", "b"]) == 2
    assert "drop --base" in capsys.readouterr().err
    assert main(["search", "--run", str(tmp_path), "--method", "subsets", "eval.merge=ties"]) == 2
    assert "['eval.merge=ties'] would change the run's problem" in capsys.readouterr().err
    assert main(["search", "--run", str(tmp_path / "nowhere"), "--method", "subsets"]) == 2
    assert "no config.yaml" in capsys.readouterr().err



def test_checkpoints_cannot_normalise_without_a_probe_table(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("search: {normalise: rank}\n")
    assert main(["search", "--config", str(tmp_path / "c.yaml"), "--method", "subsets", "--base", "b", "--experts", "e"]) == 2
    assert "search.normalise=rank" in (err := capsys.readouterr().err) and "give --run RUN" in err


@pytest.mark.slow
def test_hierarchical_search_on_a_run_folder_clusters_by_the_runs_task_vector_cosines(tmp_path):
    run = finished_tiny_run()
    out = tmp_path / "h.json"
    argv = ["search", "--run", str(run.run_dir), "--method", "hierarchical", "--inner", "cmaes", "--generations", "2", "--population-size", "4"]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    cosine = json.loads((run.run_dir / "diagnostics.json").read_text())["cosine"]
    expected = clusters_from_similarity(("prose", "code", "math"), cosine)
    mixture = read_mixture(out)
    assert mixture.provenance["settings"]["clusters"] == expected and mixture.method.startswith("hierarchical/cmaes")
