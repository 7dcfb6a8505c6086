"""Corrupt or partial checkpoints: detected, reported with the way out, and training falls back to the
previous step and still ends bit for bit where an undamaged run ends."""

import json
import os
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

from mergemix_jax.config import ConfigError
from mergemix_jax.reliability import step_problem
from mergemix_jax.train import load_params, train
from mergemix_jax.train.checkpoint import CheckpointError
from mergemix_jax.train.metrics import read_metrics
from tests.helpers import random_dataset, tiny_config

TRAIN = {"steps": 6, "checkpoint_every": 2, "keep_checkpoints": 3}


def run(run_dir: Path, **train_overrides):
    return train(tiny_config(str(run_dir), train={**TRAIN, **train_overrides}), dataset=random_dataset(64, 8, 16))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An undamaged 6-step run with checkpoints at steps 2, 4 and 6."""
    run_dir = tmp_path_factory.mktemp("faults") / "reference"
    run(run_dir)
    return run_dir


def copy_run(reference: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(reference, target)
    return target


def same_params(a: Path, b: Path) -> bool:
    pa, pb = load_params(a)[0], load_params(b)[0]
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(pa), jax.tree.leaves(pb), strict=True))


def truncate_largest(folder: Path) -> None:
    """Cut the biggest file of `folder` (or `folder` itself) to half, as a write killed midway would."""
    files = [folder] if folder.is_file() else [p for p in folder.rglob("*") if p.is_file() and p.name != "commit_success.txt"]
    biggest = max(files, key=lambda p: p.stat().st_size)
    with open(biggest, "r+b") as handle:
        handle.truncate(biggest.stat().st_size // 2)


def truncate_arrays(item: Path) -> None:
    """Cut every array data file of an orbax item to half (OCDBT keeps data under `d/` folders)."""
    for path in item.rglob("*"):
        if path.is_file() and path.parent.name == "d":
            with open(path, "r+b") as handle:
                handle.truncate(path.stat().st_size // 2)


def remove(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() else path.unlink()


def garble(path: Path) -> None:
    path.write_text('{"model": ')


# name -> (damage done to the newest step (6) of a copied run, whether reading the params alone notices,
#          whether the test also resumes training and compares the result; the others share a code path)
CORRUPTIONS = {
    "params array file truncated": (lambda c: truncate_arrays(c / "6" / "params"), True, True),
    "half-written step (no opt_state, no meta)": (lambda c: [remove(c / "6" / "opt_state"), remove(c / "6" / "meta")], True, True),
    "opt_state array file truncated": (lambda c: truncate_arrays(c / "6" / "opt_state"), False, True),
    "data-iterator state garbled": (lambda c: garble(c / "6" / "data" / "process_0-of-1.json"), False, True),
    "params manifest truncated": (lambda c: truncate_largest(c / "6" / "params" / "manifest.ocdbt"), True, False),
    "step commit_success deleted": (lambda c: remove(c / "6" / "commit_success.txt"), True, False),
    "params commit_success deleted": (lambda c: remove(c / "6" / "params" / "commit_success.txt"), True, False),
    "metadata garbled": (lambda c: garble(c / "6" / "meta" / "metadata"), True, False),
}


@pytest.mark.parametrize("damage", list(CORRUPTIONS), ids=lambda d: d.replace(" ", "-"))
def test_corrupt_newest_step_is_detected_and_training_falls_back(reference, tmp_path, damage, caplog):
    damaged = copy_run(reference, tmp_path)
    corrupt, breaks_params, resume = CORRUPTIONS[damage]
    corrupt(damaged / "checkpoints")

    if breaks_params:
        with pytest.raises(CheckpointError) as excinfo:
            load_params(damaged)
        message = str(excinfo.value)
        assert "checkpoints/6" in message and "use the previous checkpoint (step 4)" in message and len(message) < 800
    else:  # the merge engine reads params only: they are intact and still load
        assert same_params(reference, damaged)
    if not resume:
        return

    result = run(damaged)  # resume: step 6 cannot be restored, so training redoes steps 5..6 from step 4
    assert result.resumed_from == 4
    assert "moved it to" in caplog.text and "resuming from step 4" in caplog.text
    assert [p.name.split("-")[0] for p in (damaged / "corrupt_checkpoints").iterdir()] == ["6"]
    assert same_params(reference, damaged)
    assert [r["step"] for r in read_metrics(damaged / "metrics.jsonl")] == list(range(1, 7))
    assert step_problem(damaged / "checkpoints" / "6") is None


def test_previous_step_is_readable_directly(reference, tmp_path):
    damaged = copy_run(reference, tmp_path)
    truncate_arrays(damaged / "checkpoints" / "6" / "params")
    params, _ = load_params(damaged, step=4)
    assert np.isfinite(np.asarray(params["embed_VxD"])).all()


def test_orbax_temporary_folder_of_an_interrupted_save_is_ignored(reference, tmp_path):
    damaged = copy_run(reference, tmp_path)
    checkpoints = damaged / "checkpoints"
    os.replace(checkpoints / "6", checkpoints / "6.orbax-checkpoint-tmp-1700000000")  # killed before the rename
    truncate_arrays(checkpoints / "6.orbax-checkpoint-tmp-1700000000" / "params")
    assert run(damaged).resumed_from == 4
    assert same_params(reference, damaged)


def test_only_step_corrupt_is_an_error_that_moves_nothing(reference, tmp_path):
    damaged = copy_run(reference, tmp_path)
    for step in ("2", "4"):
        shutil.rmtree(damaged / "checkpoints" / step)
    remove(damaged / "checkpoints" / "6" / "params" / "commit_success.txt")
    with pytest.raises(CheckpointError, match=r"no earlier checkpoint exists: delete .*checkpoints/6 and train again \(mergemix train --no-resume\)"):
        run(damaged)
    assert (damaged / "checkpoints" / "6").is_dir() and not (damaged / "corrupt_checkpoints").exists()


def test_architecture_change_on_resume_is_not_mistaken_for_corruption(reference, tmp_path):
    """A wider model on resume: an error naming the changed key (the run's config.yaml; without it, every
    step fails to restore), and no good checkpoint is moved away."""
    damaged = copy_run(reference, tmp_path)
    wider = tiny_config(str(damaged), model={"d_model": 64}, train=TRAIN)
    with pytest.raises(ConfigError, match=r"cannot resume: model\.d_model: 32 -> 64"):
        train(wider, dataset=random_dataset(64, 8, 16))
    (damaged / "config.yaml").unlink()
    with pytest.raises(CheckpointError, match=r"the config no longer matches the run folder .*model\.d_model=\d+ .*The checkpoints are intact: start a new run") as excinfo:
        train(wider, dataset=random_dataset(64, 8, 16))
    assert "delete" not in str(excinfo.value) and excinfo.value.damaged is None
    assert sorted(p.name for p in (damaged / "checkpoints").iterdir()) == ["2", "4", "6"]
    assert json.loads((damaged / "checkpoints" / "6" / "meta" / "metadata").read_text())["step"] == 6
