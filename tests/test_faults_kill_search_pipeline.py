"""SIGKILL the mixture search and the whole pipeline at seeded points: the resumed result is unchanged.

Search resumes from its score cache (`--cache`), the pipeline from its finished stages and the
checkpoints inside the unfinished one. MERGEMIX_FAULT_KILLS / MERGEMIX_FAULT_SEED enlarge the sweep
(benchmarks/fault_sweep.py runs bigger ones); the CI default is small.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mergemix_jax.config import load_config
from mergemix_jax.runkit.run_dir import run_dir_for
from tests.fault_injection import job_env, kill_points, mergemix, run_and_kill, run_to_end
from tests.pipeline_helpers import tiny_pipeline_raw, write_config

pytestmark = pytest.mark.slow  # pipelines as subprocesses, killed and resumed

KILLS = int(os.environ.get("MERGEMIX_FAULT_KILLS", "2"))
SEED = int(os.environ.get("MERGEMIX_FAULT_SEED", "0"))


def chosen_weights(mixture_file: Path) -> dict:
    return json.loads(mixture_file.read_text())["weights"]


def test_surrogate_search_killed_at_seeded_points_resumes_to_the_same_mixture(tmp_path):
    env = job_env(devices=1)

    def argv(folder: Path) -> list[str]:
        args = ["search", "--method", "surrogate", "--synthetic", "quadratic:4", "--n-seeds", "32", "--rounds", "2"]
        return mergemix([*args, "--regressor", "ridge", "--cache", str(folder / "cache.jsonl"), "--out", str(folder / "mixture.json"), "--no-progress"])

    (tmp_path / "reference").mkdir()
    (tmp_path / "killed").mkdir()
    run_to_end(argv(tmp_path / "reference"), env)
    cache = tmp_path / "killed" / "cache.jsonl"
    points = kill_points(SEED, KILLS, max_lines=40, max_delay_ms=300)
    killed = [run_and_kill(argv(tmp_path / "killed"), cache, p, env) for p in points]
    run_to_end(argv(tmp_path / "killed"), env)
    print(f"search kill points: {[f'{p} killed={k}' for p, k in zip(points, killed, strict=True)]}")
    assert any(killed), f"no kill point landed before the search finished: {[str(p) for p in points]}"
    assert chosen_weights(tmp_path / "killed" / "mixture.json") == chosen_weights(tmp_path / "reference" / "mixture.json")


def test_pipeline_killed_at_a_seeded_point_resumes_to_the_same_mixture(tmp_path):
    env = job_env(devices=1)
    configs = {}
    for name in ("reference", "killed"):
        (tmp_path / name).mkdir()
        configs[name] = write_config(tmp_path / name, tiny_pipeline_raw(tmp_path / name))
    run_to_end(mergemix(["run", "--config", str(configs["reference"])]), env, timeout=600)
    stage_log = run_dir_for(load_config(configs["killed"]), configs["killed"]) / "stages.jsonl"
    points = kill_points(SEED, max(KILLS - 1, 1), max_lines=6, max_delay_ms=2000)
    killed = [run_and_kill(mergemix(["run", "--config", str(configs["killed"])]), stage_log, p, env, timeout=600) for p in points]
    run_to_end(mergemix(["run", "--config", str(configs["killed"])]), env, timeout=600)
    print(f"pipeline kill points: {[f'{p} killed={k}' for p, k in zip(points, killed, strict=True)]}")
    assert any(killed), f"no kill point landed before the pipeline finished: {[str(p) for p in points]}"
    runs = {name: run_dir_for(load_config(path), path) for name, path in configs.items()}
    assert chosen_weights(runs["killed"] / "mixture.json") == chosen_weights(runs["reference"] / "mixture.json")
    assert (runs["killed"] / "report" / "index.html").is_file()
