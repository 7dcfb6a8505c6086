"""Issue 14, case 1: an expert is merged only with the base whose parameters it was fine-tuned from.

Every pipeline base is a folder named `base`, so lineage is checked by content (parameter
fingerprints recorded at save and at `train.init_from` time), not by folder name.
"""

from __future__ import annotations

import json
import logging

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from mergemix_jax.config import ModelConfig
from mergemix_jax.eval import load_expert_stack
from mergemix_jax.model import init_params
from mergemix_jax.reliability import params_fingerprint
from mergemix_jax.reliability.lineage import newest_metadata
from mergemix_jax.train import train
from mergemix_jax.train.checkpoint import CheckpointError, save_params
from tests.helpers import TINY_MODEL, random_dataset, tiny_config

CFG = ModelConfig(**TINY_MODEL)


@pytest.fixture(scope="module")
def two_bases_and_an_expert(tmp_path_factory):
    """a/base and b/base (different parameters, same folder name) and an expert trained from b/base, then resumed."""
    folder = tmp_path_factory.mktemp("lineage")
    for parent, seed in (("a", 0), ("b", 1)):
        save_params(folder / parent / "base", jax.device_get(init_params(CFG, seed)), CFG)
    train_cfg = {"steps": 1, "checkpoint_every": 1, "init_from": str(folder / "b" / "base")}
    train(tiny_config(str(folder / "expert"), train=train_cfg), dataset=random_dataset(64, 8, 16))
    train(tiny_config(str(folder / "expert"), train={**train_cfg, "steps": 2}), dataset=random_dataset(64, 8, 16))  # resumed
    return folder


@pytest.mark.slow  # its module fixture trains two bases and an expert
def test_training_records_the_fingerprint_of_its_base(two_bases_and_an_expert):
    folder = two_bases_and_an_expert
    expected = params_fingerprint(jax.device_get(init_params(CFG, 1)))
    meta = newest_metadata(folder / "expert")
    assert meta["step"] == 2  # the resumed run carried the record over
    assert meta["base_fingerprint"] == expected == newest_metadata(folder / "b" / "base")["params_fingerprint"]
    assert json.loads((folder / "expert" / "done.json").read_text())["base_fingerprint"] == expected


@pytest.mark.slow  # its module fixture trains two bases and an expert
def test_expert_of_another_base_with_the_same_folder_name_is_refused(two_bases_and_an_expert):
    folder = two_bases_and_an_expert
    with pytest.raises(CheckpointError, match=r"fine-tuned from other parameters than the base .*a/base holds .*pass the expert's own base with --base"):
        load_expert_stack(folder / "a" / "base", [folder / "expert"], CFG)
    stack, _ = load_expert_stack(folder / "b" / "base", [folder / "expert"], CFG)  # its own base merges
    assert stack.names == ("expert",)


def test_runs_without_fingerprints_fall_back_to_the_folder_name_with_a_warning(tmp_path, caplog):
    params = jax.device_get(init_params(CFG, 0))
    save_params(tmp_path / "base", params, CFG)
    save_params(tmp_path / "old_expert", params, CFG, metadata={"init_from": str(tmp_path / "elsewhere" / "base")})  # an older mergemix's record
    with caplog.at_level(logging.WARNING):
        stack, _ = load_expert_stack(tmp_path / "base", [tmp_path / "old_expert"], CFG)
    assert "old_expert: no parameter fingerprint recorded" in caplog.text and "retrain the run" in caplog.text
    assert stack.num_experts == 1


def test_fingerprint_is_content_not_placement():
    params = init_params(CFG, 0)
    mesh = jax.make_mesh((jax.device_count(),), ("data",))
    replicated = jax.device_put(params, NamedSharding(mesh, PartitionSpec()))
    on_host = jax.device_get(params)
    assert params_fingerprint(replicated) == params_fingerprint(on_host) == params_fingerprint(params)
    changed = jax.tree.map(np.array, on_host)
    changed["embed_VxD"][5, 7] += 1e-3  # one value off the sampled grid may go unseen, so change a sampled one too
    changed["embed_VxD"][0, 0] += 1e-3
    assert params_fingerprint(changed) != params_fingerprint(on_host)
    assert params_fingerprint(changed, samples_per_leaf=None) != params_fingerprint(on_host, samples_per_leaf=None)
