"""`mergemix export-mergekit`: the chosen merge as a mergekit YAML, equal to our merge by construction."""

import numpy as np
import pytest
import yaml

from mergemix_jax.cli.main import main
from mergemix_jax.config import load_config, save_config
from mergemix_jax.config.schema import EvalConfig
from mergemix_jax.export import MixtureFile, write_mixture
from mergemix_jax.export.mergekit import mergekit_config
from mergemix_jax.merge import build_expert_stack
from mergemix_jax.merge.operators import linear_merge

WEIGHTS = {"web": 0.5, "code": 0.3, "math": 0.2, "books": 0.0}
PATHS = {name: f"hf/{name}" for name in WEIGHTS}


def test_each_merge_maps_to_its_mergekit_method_and_zero_weights_are_left_out():
    linear = mergekit_config(WEIGHTS, "hf/base", PATHS, EvalConfig(merge="linear", merge_scale=0.8))
    assert linear["merge_method"] == "task_arithmetic" and linear["parameters"] == {"normalize": False, "lambda": 0.8}
    assert [(m["model"], m["parameters"]["weight"]) for m in linear["models"]] == [("hf/web", 0.5), ("hf/code", 0.3), ("hf/math", 0.2)]
    ties = mergekit_config(WEIGHTS, "hf/base", PATHS, EvalConfig(merge="ties", ties_density=0.3))
    assert ties["merge_method"] == "ties" and ties["parameters"] == {"normalize": True}
    assert {m["parameters"]["density"] for m in ties["models"]} == {0.3}
    dare = mergekit_config(WEIGHTS, "hf/base", PATHS, EvalConfig(merge="dare", dare_drop_rate=0.9))
    assert dare["merge_method"] == "dare_linear" and {m["parameters"]["density"] for m in dare["models"]} == {0.1}
    with pytest.raises(ValueError, match="no expert model folder"):
        mergekit_config({"web": 1.0, "wiki": 0.0}, "hf/base", {"web": "hf/web"}, EvalConfig())


def test_task_arithmetic_of_the_yaml_equals_our_linear_merge():
    rng = np.random.default_rng(0)
    base = {"w": rng.normal(size=(3, 4)).astype(np.float32)}
    experts = [{"w": base["w"] + rng.normal(size=(3, 4)).astype(np.float32)} for _ in WEIGHTS]
    stack = build_expert_stack(base, experts, list(WEIGHTS))
    merge = mergekit_config(WEIGHTS, "base", {n: n for n in WEIGHTS}, EvalConfig(merge_scale=0.7))
    params = dict(zip(WEIGHTS, experts, strict=True))
    # mergekit task_arithmetic: base + lambda * sum_k weight_k (model_k - base)
    theirs = base["w"] + merge["parameters"]["lambda"] * sum(m["parameters"]["weight"] * (params[m["model"]]["w"] - base["w"]) for m in merge["models"])
    ours = linear_merge(stack, np.asarray(list(WEIGHTS.values()), np.float32), 0.7)["w"]
    np.testing.assert_allclose(np.asarray(ours), theirs, atol=1e-5)


def test_cli_writes_the_yaml_of_a_run_and_the_export_hf_commands(tmp_path, capsys):
    domains = [{"name": n, "paths": [str(tmp_path / f"{n}.txt")]} for n in ("web", "code")]
    config = load_config(None, [f"data.domains={yaml.safe_dump(domains, default_flow_style=True).strip()}", "eval.merge=ties"])
    run = tmp_path / "run"
    run.mkdir()
    save_config(config, run / "config.yaml")
    write_mixture(MixtureFile(weights={"web": 0.75, "code": 0.25}, method="cmaes", objective=1.0), run / "mixture.json")
    assert main(["export-mergekit", str(run), "--out", str(tmp_path / "merge.yaml"), "--dtype", "bfloat16"]) == 0
    text = (tmp_path / "merge.yaml").read_text()
    merge = yaml.safe_load(text)
    assert merge["merge_method"] == "ties" and merge["base_model"] == str(run / "hf" / "base") and merge["dtype"] == "bfloat16"
    assert [m["parameters"]["weight"] for m in merge["models"]] == [0.75, 0.25]
    out = capsys.readouterr().out
    assert f"mergemix export-hf {run / 'experts' / 'code'} --out {run / 'hf' / 'code'} --dtype bfloat16" in out and "# write the model folders first" in text
    assert main(["export-mergekit", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
