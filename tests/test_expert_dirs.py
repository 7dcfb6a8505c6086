"""pipeline.expert_dirs: experts trained elsewhere are reused by `mergemix run` (nothing retrained, the
plan counts no expert runs); a folder that is unfinished or not fine-tuned from pipeline.base_dir is
refused naming it, before a run folder exists; the key's shape is validated."""

import copy

import pytest

from mergemix_jax.cli.main import main
from mergemix_jax.config import ConfigError, load_config
from mergemix_jax.pipeline import read_stage_log, run_pipeline
from mergemix_jax.train.checkpoint import CheckpointError
from tests.helpers import tiny_config
from tests.pipeline_helpers import file_mtimes, tiny_pipeline_raw, write_config

DOMAINS = ("prose", "code", "math")


def test_expert_dirs_must_name_every_domain_and_come_with_a_base():
    domains = {"data": {"domains": [{"name": n, "paths": [f"{n}.jsonl"]} for n in ("a", "b")]}}
    with pytest.raises(ConfigError, match=r"pipeline\.expert_dirs' must name every domain"):
        tiny_config(**domains, pipeline={"base_dir": "/b", "expert_dirs": {"a": "/x"}})
    with pytest.raises(ConfigError, match=r"pipeline\.expert_dirs' needs 'pipeline\.base_dir'"):
        tiny_config(**domains, pipeline={"expert_dirs": {"a": "/x", "b": "/y"}})


@pytest.mark.slow
def test_reused_experts_train_nothing_and_a_wrong_folder_is_refused(tmp_path, capsys):
    raw = tiny_pipeline_raw(tmp_path)
    first = run_pipeline(load_config(write_config(tmp_path, raw)), "tiny.yaml", stop_after="experts")
    reuse = copy.deepcopy(raw)
    reuse["pipeline"] |= {"output_root": str(tmp_path / "second"), "base_dir": str(first / "base"), "expert_dirs": {d: str(first / "experts" / d) for d in DOMAINS}}
    before = file_mtimes(first / "experts")
    run_dir = run_pipeline(load_config(write_config(tmp_path, reuse, "reuse.yaml")), "reuse.yaml", stop_after="experts")
    assert file_mtimes(first / "experts") == before and not (run_dir / "experts").exists()
    expert_events = [e for e in read_stage_log(run_dir) if e["stage"].startswith("expert:")]
    assert len(expert_events) == 3 and {e["status"] for e in expert_events} == {"reused"}
    assert "reused (pipeline.expert_dirs)" in (run_dir / "plan.md").read_text()

    scratch = copy.deepcopy(reuse)
    scratch["pipeline"] |= {"output_root": str(tmp_path / "third")}
    scratch["pipeline"]["expert_dirs"]["code"] = str(first / "base")  # trained from scratch, not from the base
    with pytest.raises(CheckpointError, match=rf"pipeline\.expert_dirs does not match pipeline\.base_dir: expert {first / 'base'}"):
        run_pipeline(load_config(write_config(tmp_path, scratch, "scratch.yaml")), "scratch.yaml")
    (tmp_path / "empty").mkdir()
    scratch["pipeline"]["expert_dirs"]["code"] = str(tmp_path / "empty")
    assert main(["run", "--config", str(write_config(tmp_path, scratch, "empty.yaml"))]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"pipeline.expert_dirs.code: {tmp_path / 'empty'} is not a finished train run" in err
    assert not (tmp_path / "third").exists()  # refused before a run folder was made
