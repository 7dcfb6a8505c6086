"""SIGKILL at seeded points of each long job, then resume: the result equals an uninterrupted run.

Training: final params bit for bit, every metrics step exactly once with the same values.
Batched evaluation: the results CSV holds exactly the uninterrupted run's rows, byte for byte.
MERGEMIX_FAULT_KILLS=N raises the number of kill points per job (the CI default is small).
"""

import csv
import json
import os
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

from mergemix_jax.train import load_params
from mergemix_jax.train.metrics import read_metrics
from tests.fault_injection import job_env, kill_points, mergemix, run_and_kill, run_to_end

pytestmark = pytest.mark.slow  # CLI jobs as subprocesses, killed and resumed

KILLS = int(os.environ.get("MERGEMIX_FAULT_KILLS", "3"))
SEED = int(os.environ.get("MERGEMIX_FAULT_SEED", "0"))
STEPS = 10
MIXTURES = 12


def write_job_config(folder: Path) -> Path:
    """Two small text domains (real prose and code), a tiny byte-level model, a 10-step run."""
    prose = "\n\n".join(f"Paragraph {i}: the union is strong and the people are free to choose their future." for i in range(40))
    code = "\n\n".join(f"def f{i}(x):\n    return x * {i} + {i % 7}" for i in range(40))
    (folder / "prose.txt").write_text(prose)
    (folder / "code.txt").write_text(code)
    config = folder / "job.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
            data:
              domains:
                - {{name: prose, paths: [prose.txt], format: text, split_by: blank_line}}
                - {{name: code, paths: [code.txt], format: text, split_by: blank_line}}
              shuffle_buffer: 8
            model: {{vocab_size: 320, d_model: 32, n_layers: 2, n_heads: 4, n_kv_heads: 2, d_ff: 64, max_seq_len: 64}}
            mesh: {{data: 1, fsdp: -1, tensor: 1}}
            train: {{steps: {STEPS}, batch_size: 4, seq_len: 16, log_every: 1, checkpoint_every: 2, keep_checkpoints: 2, progress: false}}
            eval: {{heldout_sequences: 2, seq_len: 16, micro_batch: 0, mixtures_per_device: 1}}
            """
        )
    )
    return config


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    folder = tmp_path_factory.mktemp("killjob")
    return folder, write_job_config(folder), job_env(devices=2)


def train_argv(config: Path, out: Path) -> list[str]:
    return mergemix(["train", "--config", str(config), f"train.output_dir={out}"])


def params_equal(a: Path, b: Path) -> bool:
    pa, pb = load_params(a)[0], load_params(b)[0]
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(pa), jax.tree.leaves(pb), strict=True))


@pytest.fixture(scope="module")
def trained(job):
    """The uninterrupted reference run (also the base of the evaluation test)."""
    folder, config, env = job
    run_to_end(train_argv(config, folder / "reference"), env)
    return folder / "reference"


def test_training_killed_at_seeded_points_resumes_bit_for_bit(job, trained):
    folder, config, env = job
    out = folder / "killed"
    points = kill_points(SEED, KILLS, max_lines=STEPS)
    killed = [run_and_kill(train_argv(config, out), out / "metrics.jsonl", p, env) for p in points]
    run_to_end(train_argv(config, out), env)
    print(f"training kill points: {[f'{p} killed={k}' for p, k in zip(points, killed, strict=True)]}")
    assert any(killed), f"no kill point landed before the job finished: {[str(p) for p in points]}"
    assert params_equal(trained, out), f"params differ after kills at {[str(p) for p in points]}"
    reference_log, resumed_log = read_metrics(trained / "metrics.jsonl"), read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in resumed_log] == list(range(1, STEPS + 1))
    assert [r["loss"] for r in resumed_log] == [r["loss"] for r in reference_log]
    assert json.loads((out / "done.json").read_text())["steps"] == STEPS
    assert not list(out.glob("**/*.tmp")), "a temporary file was left behind"


def make_experts(base: Path, folder: Path) -> list[Path]:
    """Two experts: the base with seeded perturbations, saved as run folders (step 0)."""
    from mergemix_jax.interop.run_dir import save_base

    params, cfg = load_params(base)
    experts = []
    for k in range(2):
        rng = np.random.default_rng(k)
        shifted = jax.tree.map(lambda x, r=rng: np.asarray(x) + 0.05 * r.standard_normal(x.shape).astype(np.float32), params)
        experts.append(save_base(shifted, cfg, folder / f"expert{k}", source="test"))
    return experts


def test_batched_evaluation_killed_at_seeded_points_keeps_identical_rows(job, trained):
    folder, config, env = job
    experts = make_experts(trained, folder)

    def argv(out):
        args = ["eval-mixtures", "--config", str(config), "--base", str(trained), "--experts", *map(str, experts)]
        return mergemix([*args, "--sample", f"dirichlet:{MIXTURES}", "--seed", "3", "--out", str(out), "--no-progress"])

    run_to_end(argv(folder / "reference.csv"), env)
    out = folder / "killed.csv"
    points = kill_points(SEED + 1, KILLS, max_lines=MIXTURES // 2, max_delay_ms=150)
    killed = [run_and_kill(argv(out), out, p, env) for p in points]
    run_to_end(argv(out), env)
    print(f"evaluation kill points: {[f'{p} killed={k}' for p, k in zip(points, killed, strict=True)]}")
    assert any(killed), f"no kill point landed before the job finished: {[str(p) for p in points]}"

    def rows(path):
        with open(path, newline="") as f:
            header, *body = list(csv.reader(f))
        return header, sorted(body, key=lambda r: int(r[0]))

    assert rows(out) == rows(folder / "reference.csv"), f"rows differ after kills at {[str(p) for p in points]}"
    assert len(rows(out)[1]) == MIXTURES
