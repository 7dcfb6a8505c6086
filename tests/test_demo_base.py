"""The shipped demo base (mergemix_jax/demo_data/base) and the held-out split check of any reused base."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest

from mergemix_jax.config import ConfigError, config_from_dict, load_config
from mergemix_jax.data.sources import split_signature
from mergemix_jax.model import init_params
from mergemix_jax.reliability.lineage import newest_metadata, params_fingerprint
from mergemix_jax.runkit import training
from mergemix_jax.train import is_finished, load_params
from mergemix_jax.train.checkpoint import save_params
from tests.pipeline_helpers import tiny_pipeline_raw

DEMO = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def test_shipped_base_is_the_base_demo_yaml_would_train():
    """Fails when configs/demo.yaml's model, data split, optimizer or base recipe changes without
    rebuilding the base (python3 mergemix_jax/demo_data/build_demo_base.py)."""
    config = load_config(DEMO)
    base = Path(config.pipeline.base_dir)
    assert base.name == "base" and base.parent.name == "demo_data" and is_finished(base)
    params, _ = load_params(base, config.model)  # the architecture must match
    meta = newest_metadata(base)
    assert meta["params_fingerprint"] == params_fingerprint(params)
    assert meta["data_split"] == split_signature(config.data)
    assert meta["mixture"] == {}  # uniform, as the pipeline's base
    recipe = training.base_config(dataclasses.replace(config, pipeline=dataclasses.replace(config.pipeline, base_dir="")), Path("."))
    assert meta["step"] == recipe.train.steps == config.pipeline.base_steps
    assert meta["recipe"]["seed"] == recipe.train.seed and meta["recipe"]["batch_size"] == recipe.train.batch_size
    assert meta["recipe"]["optim"] == json.loads(json.dumps(vars(recipe.optim)))
    training.check_base_split(config)


def _base_with(folder: Path, config, metadata: dict) -> Path:
    save_params(folder, init_params(config.model, 0), config.model, step=1, metadata=metadata)
    (folder / "done.json").write_text("{}")
    return folder


def test_a_base_trained_on_another_heldout_split_is_refused(tmp_path):
    config = config_from_dict(tiny_pipeline_raw(tmp_path))
    base = _base_with(tmp_path / "base", config, {"mixture": {}, "data_split": split_signature(config.data)})
    same = dataclasses.replace(config, pipeline=dataclasses.replace(config.pipeline, base_dir=str(base)))
    training.check_base_split(same)
    moved = dataclasses.replace(same, data=dataclasses.replace(same.data, split_seed=1))
    with pytest.raises(ConfigError, match=r"pipeline\.base_dir .*\['prose', 'code', 'math'\].*held-out split"):
        training.check_base_split(moved)
    fewer = dataclasses.replace(moved, data=dataclasses.replace(moved.data, domains=moved.data.domains[:0]))
    training.check_base_split(fewer)  # no domain of the config was in the base's training data


def test_a_base_without_a_recorded_split_is_allowed_with_a_warning(tmp_path, caplog):
    config = config_from_dict(tiny_pipeline_raw(tmp_path))
    base = _base_with(tmp_path / "imported", config, {"imported_from": "hf"})
    with caplog.at_level(logging.WARNING):
        training.check_base_split(dataclasses.replace(config, pipeline=dataclasses.replace(config.pipeline, base_dir=str(base))))
    assert "records no data split" in caplog.text


def test_split_signature_follows_the_split_not_the_folder(tmp_path):
    a = config_from_dict(tiny_pipeline_raw(tmp_path / "a")).data
    b = config_from_dict(tiny_pipeline_raw(tmp_path / "b")).data  # the same files written elsewhere
    assert split_signature(a) == split_signature(b)
    assert split_signature(dataclasses.replace(a, heldout_fraction=0.3)) != split_signature(a)
    first = Path(a.domains[0].paths[0])
    first.write_text(first.read_text() + '{"text": "one more document"}\n')
    changed = split_signature(a)
    assert changed[a.domains[0].name] != split_signature(b)[a.domains[0].name]
    assert {k: v for k, v in changed.items() if k != a.domains[0].name} == {k: v for k, v in split_signature(b).items() if k != a.domains[0].name}


def test_mergemix_run_refuses_the_shipped_base_for_another_split_and_writes_nothing(tmp_path, capsys):
    from mergemix_jax.cli.main import main as cli_main

    out = tmp_path / "runs"
    code = cli_main(["run", "--config", str(DEMO), "data.split_seed=1", f"pipeline.output_root={out}"])
    err = capsys.readouterr().err
    assert code != 0 and "pipeline.base_dir" in err and "data.split_seed" in err and "Traceback" not in err
    assert not out.exists() or not any(out.rglob("*"))
