"""`mergemix eval-mixtures` end to end: a tiny base and two experts trained to checkpoints on real
demo text, scored from the command line (Dirichlet sample and weights file, exact and quadratic),
with the table checked against a direct computation and a rerun that scores nothing."""

import json
from importlib import resources

import jax
import numpy as np
import pytest
import yaml

import mergemix_jax.eval.api as api
from mergemix_jax.cli.main import main
from mergemix_jax.config import load_config
from mergemix_jax.eval import build_suite, load_expert_stack, read_results, score_one, smooth_metric_names
from mergemix_jax.merge import sample_dirichlet
from mergemix_jax.train import train
from tests.helpers import TINY_MODEL

DOMAINS = ("math", "dialogue")
TASKS = {"arithmetic": 3, "word_problems": 2}  # an exact-answer and a multiple-choice task


def _write_corpus(root):
    """A few real demo documents per domain (capped in length) and two small task files."""
    demo = resources.files("mergemix_jax.demo_data")
    for domain in DOMAINS:
        lines = demo.joinpath(f"corpus/{domain}.jsonl").read_text().splitlines()[:40]
        docs = [json.dumps({"text": json.loads(line)["text"][:1500]}) for line in lines]
        (root / f"{domain}.jsonl").write_text("\n".join(docs) + "\n")
    (root / "tasks").mkdir()
    for task, n in TASKS.items():
        items = demo.joinpath(f"tasks/{task}.jsonl").read_text().splitlines()[:n]
        (root / "tasks" / f"{task}.jsonl").write_text("\n".join(items) + "\n")


pytestmark = pytest.mark.slow  # the module fixture trains a base and experts; the CLI scores, resumes and fits proxies


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(config path, base run, expert runs): base 3 steps on both domains, each expert 2 more on its own
    at a fine-tuning learning rate."""
    root = tmp_path_factory.mktemp("eval_cli")
    _write_corpus(root)
    raw = {
        "data": {"domains": [{"name": d, "paths": [f"{d}.jsonl"], "format": "jsonl"} for d in DOMAINS], "heldout_fraction": 0.2},
        "model": {**TINY_MODEL, "vocab_size": 320},  # byte tokenizer: 259 ids
        "mesh": {"data": 1, "fsdp": -1, "tensor": 1},  # all 8 test devices: sharded training and scoring
        "train": {"steps": 3, "batch_size": 8, "seq_len": 16, "checkpoint_every": 100, "progress": False, "log_every": 1},
        "eval": {"task_dir": "tasks", "task_max_len": 48, "heldout_sequences": 2, "seq_len": 16, "micro_batch": 0, "mixtures_per_device": 2},
    }
    config_path = root / "config.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    base = root / "base"
    train(load_config(config_path, [f"train.output_dir={base}"]))
    experts = []
    for domain in DOMAINS:
        overrides = [f"train.output_dir={root / domain}", f"train.init_from={base}", f"train.mixture.{domain}=1", "train.steps=2", "optim.learning_rate=0.0003"]
        train(load_config(config_path, overrides))
        experts.append(root / domain)
    return config_path, base, experts


def _cli(config_path, base, experts, *args) -> int:
    return main(["eval-mixtures", "--config", str(config_path), "--base", str(base), "--experts", *map(str, experts), "--no-progress", *args])


def _direct_scores(config_path, base, experts, weights) -> list[dict]:
    config = load_config(config_path, [f"eval.task_dir={config_path.parent / 'tasks'}"])
    stack, model_cfg = load_expert_stack(base, experts, config.model)
    suite = build_suite(config)
    score = jax.jit(lambda w: score_one(model_cfg, stack, w, suite))
    return [jax.device_get(score(w)) for w in weights]


def test_dirichlet_sample_scores_a_full_table_and_a_rerun_resumes(runs, tmp_path, monkeypatch, capsys):
    config_path, base, experts = runs
    out = tmp_path / "mixtures.csv"
    assert _cli(config_path, base, experts, "--sample", "dirichlet:5", "--out", str(out)) == 0
    table = read_results(out)
    tasks = ("acc/word_problems", "ce/word_problems", "acc_norm/word_problems", "ce_norm/word_problems")
    assert list(table) == [
        "row", "weights_hash", "w/math", "w/dialogue", "loss/math", "loss/dialogue", "loss/mean",
        "answer_nll/arithmetic", "exact/arithmetic", *tasks,
    ]  # fmt: skip
    weights = sample_dirichlet(5, 2, seed=0)
    assert table["row"].tolist() == list(range(5))
    np.testing.assert_allclose(np.stack([table["w/math"], table["w/dialogue"]], 1), weights, rtol=1e-6)
    for row, direct in enumerate(_direct_scores(config_path, base, experts, weights)):
        for name, value in direct.items():
            np.testing.assert_allclose(table[name][row], value, rtol=1e-5, atol=1e-6, err_msg=f"{name} row {row}")
    assert len(set(np.round(table["loss/mean"], 7))) == 5  # the experts differ, so the mixtures do

    before = out.read_text()
    scored = []
    real_iter = api.iter_scores
    monkeypatch.setattr(api, "iter_scores", lambda *a, **k: (scored.append(k["rows"]), real_iter(*a, **k))[1])
    capsys.readouterr()
    assert _cli(config_path, base, experts, "--sample", "dirichlet:5", "--out", str(out)) == 0
    assert scored == [] and out.read_text() == before
    assert "0 mixtures scored, 5 already in" in capsys.readouterr().out


def test_weights_file_exact_and_quadratic_proxy(runs, tmp_path, capsys):
    config_path, base, experts = runs
    weights_csv = tmp_path / "weights.csv"
    weights_csv.write_text("dialogue,math,note\n0.5,0.5,even\n0,1,math only\n0.8,0.2,mostly dialogue\n")
    exact_out, proxy_out = tmp_path / "exact.csv", tmp_path / "proxy.csv"
    assert _cli(config_path, base, experts, "--weights", str(weights_csv), "--out", str(exact_out)) == 0
    one_centre = "eval.quadratic_max_centres=1"  # no re-centring, so no mixture is scored exactly
    assert _cli(config_path, base, experts, "--weights", str(weights_csv), "--proxy", "quadratic", "--out", str(proxy_out), one_centre) == 0
    exact, proxy = read_results(exact_out), read_results(proxy_out)
    np.testing.assert_array_equal(exact["w/math"], np.float32([0.5, 1.0, 0.2]))
    config = load_config(config_path, [f"eval.task_dir={config_path.parent / 'tasks'}"])
    smooth = smooth_metric_names(build_suite(config))
    assert list(proxy) == ["row", "weights_hash", "w/math", "w/dialogue", *smooth]
    assert proxy["weights_hash"].tolist() == exact["weights_hash"].tolist()
    for name in smooth:  # experts a few steps from the base: the second-order proxy is close
        np.testing.assert_allclose(proxy[name], exact[name], rtol=5e-3, err_msg=name)
    assert _cli(config_path, base, experts, "--weights", str(weights_csv), "--proxy", "quadratic", "--out", str(proxy_out), one_centre) == 0
    assert "0 mixtures scored, 3 already in" in capsys.readouterr().out
    assert len(read_results(proxy_out)["row"]) == 3


def test_missing_expert_checkpoint_is_a_clear_error(runs, tmp_path, capsys):
    config_path, base, experts = runs
    assert _cli(config_path, base, [experts[0], tmp_path / "nowhere"], "--sample", "dirichlet:2", "--out", str(tmp_path / "x.csv")) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "not exist" in err and "check --experts" in err
