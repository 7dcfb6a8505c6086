"""Typed configs: YAML + overrides load, and every impossible value is a clear error."""

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from mergemix_jax.config import Config, ConfigError, MeshConfig, load_config, parse_overrides, save_config
from mergemix_jax.parallel.mesh import resolve_mesh_shape


def write(tmp_path, raw) -> str:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def test_yaml_and_overrides(tmp_path):
    path = write(tmp_path, {"model": {"d_model": 64}, "train": {"steps": 7}})
    cfg = load_config(path, ["train.steps=9", "optim.schedule=cosine", "model.tie_embeddings=false"])
    assert cfg.model.d_model == 64 and cfg.train.steps == 9 and cfg.optim.schedule == "cosine"
    assert cfg.model.tie_embeddings is False
    assert load_config(None, ["optim.learning_rate=3e-4"]).optim.learning_rate == pytest.approx(3e-4)


def test_round_trip(tmp_path):
    cfg = load_config(write(tmp_path, {"model": {"d_model": 64, "n_layers": 3}, "optim": {"schedule": "wsd"}}))
    save_config(cfg, tmp_path / "again.yaml")
    assert load_config(tmp_path / "again.yaml") == cfg


@pytest.mark.parametrize(
    "raw, needle",
    [
        ({"model": {"d_modle": 64}}, "d_modle"),
        ({"modle": {}}, "modle"),
        ({"model": {"d_model": "wide"}}, "model.d_model"),
        ({"model": {"n_heads": 4, "n_kv_heads": 3}}, "model.n_kv_heads"),
        ({"model": {"n_layers": 0}}, "model.n_layers"),
        ({"optim": {"schedule": "linear"}}, "optim.schedule"),
        ({"mesh": {"tensor": 3}}, "mesh.tensor"),
        ({"mesh": {"data": -1, "fsdp": -1}}, "-1"),
        ({"train": {"seq_len": 4096}}, "train.seq_len"),
        ({"train": {"mixture": {"nope": 1.0}}}, "train.mixture.nope"),
        ({"data": {"domains": [{"name": "a", "paths": ["x.txt"]}]}, "train": {"mixture": {"a": -1.0}}}, "train.mixture.a"),
        ({"data": {"domains": [{"name": "a", "paths": ["x.txt"]}]}, "train": {"mixture": {"a": 0.0}}}, "sum to 0"),
        ({"data": {"domains": [{"name": "a", "paths": []}]}}, "lists no files"),
        ({"train": {"output_dir": "gs://bucket/run"}}, "gcsfuse"),
        ({"data": {"domains": [{"name": "a", "paths": ["gs://bucket/a.ar"], "format": "array_record"}]}}, "gcsfuse"),
        ({"data": {"domains": [{"name": "a", "paths": ["nope://bucket/a.txt"]}]}}, "data.domains[0].paths"),
        ({"eval": {"tasks": ["arithmetic"]}}, "eval.task_dir"),
        ({"pipeline": {"verify_seeds": 2, "verify_screen_seeds": 3}}, "pipeline.verify_screen_seeds"),
        ({"pipeline": {"verify_extra_rounds": -1}}, "pipeline.verify_extra_rounds"),
        ({"pipeline": {"verify_features": ["merged", "nope"]}}, "pipeline.verify_features"),
        ({"pipeline": {"verify_features": []}}, "pipeline.verify_features"),
        ({"eval": {"task_offset": -4}}, "eval.task_offset"),
        ({"eval": {"task_dir": "tasks", "tasks": ["arithmetic"], "choice_as_answer": ["sotu"]}}, "eval.choice_as_answer"),
    ],
)
def test_bad_values_name_the_key_and_file(tmp_path, raw, needle):
    path = write(tmp_path, raw)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert needle in str(err.value) and "job.yaml" in str(err.value)


def test_bad_override_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"key\.sub=value"):
        load_config(None, ["train.steps"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match=r"train\.steps"):
        load_config(None, ["train.steps=-3"])


def test_mesh_must_fit_the_devices():
    assert resolve_mesh_shape(MeshConfig(2, -1, 2), 8) == (2, 2, 2)
    assert resolve_mesh_shape(MeshConfig(1, -1, 1), 1) == (1, 1, 1)
    with pytest.raises(ConfigError, match="does not divide"):
        resolve_mesh_shape(MeshConfig(3, -1, 1), 8, "job.yaml")
    with pytest.raises(ConfigError, match=r"job\.yaml"):
        resolve_mesh_shape(MeshConfig(2, 2, 1), 8, "job.yaml")


@given(st.dictionaries(st.sampled_from(["steps", "batch_size", "seq_len"]), st.integers(1, 64), min_size=1))
def test_overrides_parse_to_nested_values(values):
    parsed = parse_overrides([f"train.{k}={v}" for k, v in values.items()])
    assert parsed == {"train": values}
    assert load_config(None, [f"train.{k}={v}" for k, v in values.items()]).train == Config().train.__class__(
        **{**Config().train.__dict__, **values}
    )


def test_config_registries_name_the_merge_operators_and_task_kinds():
    """config/registries.py lists, for the config check, the merge operators and task metrics the
    higher packages register: adding an operator or task kind without listing it here fails."""
    from mergemix_jax.config.registries import MERGE_METHODS, TASK_METRICS
    from mergemix_jax.eval.tasks import TASK_KINDS
    from mergemix_jax.merge.operators import MERGE_OPERATORS

    assert tuple(MERGE_OPERATORS) == MERGE_METHODS
    assert {name: kind.metrics for name, kind in TASK_KINDS.items()} == TASK_METRICS
