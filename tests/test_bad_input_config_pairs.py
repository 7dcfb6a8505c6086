"""No silent wrong answers from config, data and training input (issue 20): dict overrides replace,
domains are named and formatted safely, every key checked against the keys it depends on, and a
diverging, unfinished or mismatched training run is stopped or refused with a message naming the key."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import yaml

from mergemix_jax.config import ConfigError, load_config
from mergemix_jax.data import DataError, load_tasks
from mergemix_jax.train import TrainingDiverged, train
from tests.helpers import random_dataset, tiny_config
from tests.test_bad_input_cli import assert_one_clear_line, run_cli

DOMAINS = [{"name": "web", "paths": ["web.jsonl"], "format": "jsonl"}, {"name": "code", "paths": ["code.jsonl"], "format": "jsonl"}]


def job(tmp_path, **sections) -> str:
    """A config file with two (unread) domains; `sections` update its raw dict section by section."""
    raw = {"data": {"domains": json.loads(json.dumps(DOMAINS))}, "model": {"max_seq_len": 128}}
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


# (sections of the file, overrides, text the ConfigError must hold): one row per pair of keys that
# depend on each other; "new" rows were unchecked before issue 20
PAIRS = [
    # new
    ({"model": {"max_seq_len": 64}}, ["eval.seq_len=128"], "'eval.seq_len' (128) exceeds 'model.max_seq_len' (64)"),
    ({}, ["model.vocab_size=128"], "'model.vocab_size' (128) is smaller than the byte tokenizer's 259"),
    ({"mesh": {"data": 4, "fsdp": 1, "tensor": 1}}, ["train.batch_size=6"], "'train.batch_size' (6) must be divisible by mesh.data x mesh.fsdp (4)"),
    ({}, ["train.divergence_factor=0.5"], "'train.divergence_factor'"),
    ({}, ["pipeline.utility={accuracy/x: 1}"], "family one of"),
    ({}, ["pipeline.utility={loss/prose: 1}"], "no domain is called 'prose'"),
    ({}, ["pipeline.utility={answer_nll/qa: 1}"], "'eval.task_dir' is empty"),
    ({"eval": {"task_dir": "tasks", "tasks": ["qa"]}}, ["pipeline.utility={acc/other: 1}"], "does not score task 'other'"),
    ({}, ["eval.objective=mean"], "'eval.objective'"),
    ({}, ["pipeline.methods=[gradient, gradient]"], "'pipeline.methods' lists ['gradient'] more than once"),
    ({}, ["search.gradient.chunk=600", "search.gradient.steps=500"], "'search.gradient.chunk' (600) exceeds"),
    ({}, ["search.surrogate.top_k=50", "search.surrogate.n_candidates=20"], "'search.surrogate.top_k' (50) exceeds"),
    ({}, ["search.hierarchical.n_clusters=3"], "'search.hierarchical.n_clusters' (3) exceeds the 2 domains"),
    ({}, ["data.domains.web.split_by=blank_line"], "'data.domains[0].split_by'"),
    ({}, ["data.domains.web.format=text", "data.domains.web.text_field=body"], "'data.domains[0].text_field'"),
    ({}, ["pipeline.verify_candidates=0"], "set pipeline.verify_budget=0 for no verification"),
    # checked before issue 20 (kept here so the table lists every pair)
    ({}, ["model.n_heads=4", "model.n_kv_heads=3"], "'model.n_heads' (4) must be a multiple of 'model.n_kv_heads' (3)"),
    ({}, ["model.d_model=130", "model.n_heads=4", "model.n_kv_heads=4"], "'model.d_model' (130) must be divisible by 'model.n_heads'"),
    ({}, ["train.seq_len=256"], "'train.seq_len' (256) exceeds 'model.max_seq_len' (128)"),
    ({"eval": {"task_dir": "tasks"}}, ["eval.task_max_len=256"], "'eval.task_max_len' (256) exceeds"),
    ({}, ["mesh.tensor=3"], "must be divisible by 'mesh.tensor' (3)"),
    ({}, ["optim.warmup_steps=200", "train.steps=100"], "'optim.warmup_steps'"),
    ({}, ["pipeline.expert_checkpoint_step=90", "pipeline.expert_steps=80"], "'pipeline.expert_checkpoint_step'"),
    ({}, ["pipeline.verify_screen_seeds=3", "pipeline.verify_seeds=2"], "'pipeline.verify_screen_seeds'"),
    ({}, ["train.mixture={nope: 1}"], "'train.mixture.nope' names no domain"),
    ({}, ["search.hierarchical.clusters={a: [web]}"], "leaves ['code'] in no cluster"),
    ({"eval": {"task_dir": "tasks", "tasks": ["qa"]}}, ["eval.choice_as_answer=[other]"], "'eval.choice_as_answer'"),
]


@pytest.mark.parametrize("sections, overrides, needle", PAIRS, ids=[p[2][:40] for p in PAIRS])
def test_a_key_inconsistent_with_another_is_refused_naming_both(tmp_path, sections, overrides, needle):
    with pytest.raises(ConfigError) as err:
        load_config(job(tmp_path, **sections), overrides)
    assert needle in str(err.value)


@pytest.mark.parametrize(
    "name", ["..", ".hidden", "web/prose", "a b", "mean", "x" * 65, "w,x"],
)
def test_a_domain_name_that_breaks_paths_or_metrics_is_refused(tmp_path, name):
    with pytest.raises(ConfigError, match=r"data\.domains\[0\]\.name.*letters, digits"):
        load_config(job(tmp_path), [f"data.domains=[{{name: '{name}', paths: [a.jsonl]}}]"])


def test_duplicate_domain_names_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"names \['web'\] more than once"):
        load_config(job(tmp_path), ["data.domains.code.name=web"])


# ---------------------------------------------------------------- overrides replace; += merges; domains by name


def test_a_dict_override_replaces_the_files_dict(tmp_path):
    path = job(tmp_path, pipeline={"utility": {"loss/web": 1.0, "loss/code": 2.0}}, train={"mixture": {"web": 1.0, "code": 1.0}})
    config = load_config(path, ["pipeline.utility={loss/mean: 1}", "train.mixture={code: 1}"])
    assert config.pipeline.utility == {"loss/mean": 1} and config.train.mixture == {"code": 1}
    assert load_config(path, ["pipeline.utility={}"]).pipeline.utility == {}  # {} = the default utility, loss/mean


def test_plus_equals_merges_and_appends(tmp_path):
    path = job(tmp_path, pipeline={"utility": {"loss/web": 1.0}, "methods": ["gradient"]})
    config = load_config(path, ["pipeline.utility+={loss/mean: 2}", "pipeline.methods+=[cmaes]"])
    assert config.pipeline.utility == {"loss/web": 1.0, "loss/mean": 2} and config.pipeline.methods == ["gradient", "cmaes"]
    with pytest.raises(ConfigError, match=r"'\+=' merges"):
        load_config(path, ["train.steps+=3"])


def test_a_section_override_changes_only_its_keys(tmp_path):
    config = load_config(job(tmp_path, model={"max_seq_len": 256, "d_model": 64}), ["model={n_layers: 3}"])
    assert (config.model.max_seq_len, config.model.d_model, config.model.n_layers) == (256, 64, 3)


def test_a_domain_field_is_overridden_by_name_and_an_unknown_name_lists_the_names(tmp_path):
    config = load_config(job(tmp_path), ["data.domains.code.text_field=body"])
    assert [d.text_field for d in config.data.domains] == ["text", "body"]
    with pytest.raises(ConfigError, match=r"no domain named 'math' in data\.domains \(known: \['web', 'code'\]\)"):
        load_config(job(tmp_path), ["data.domains.math.text_field=body"])


# ---------------------------------------------------------------- domain formats and documents


@pytest.mark.parametrize(
    "paths, expected",
    [(["a.jsonl"], "jsonl"), (["d/**/*.parquet"], "parquet"), (["a.txt", "b.md"], "text"), (["a.json"], ".json; set format: jsonl"), (["a.jsonl", "b.txt"], "one format per domain")],
)
def test_a_domain_without_format_takes_it_from_the_extension_or_is_refused(tmp_path, paths, expected):
    override = f"data.domains=[{{name: web, paths: {paths}}}]"
    if expected.isalpha():
        assert load_config(job(tmp_path), [override]).data.domains[0].format == expected
    else:
        with pytest.raises(ConfigError, match="domain 'web'") as err:
            load_config(job(tmp_path), [override])
        assert expected in str(err.value)


def test_a_one_document_domain_warns_and_its_missing_heldout_names_the_format(tmp_path, caplog):
    from mergemix_jax.config.schema import DataConfig, DomainConfig
    from mergemix_jax.data import heldout_batches

    path = tmp_path / "web.jsonl"
    path.write_text("".join(json.dumps({"text": f"document {i}"}) + "\n" for i in range(5)))
    data = DataConfig(domains=[DomainConfig(name="web", paths=[str(path)], format="text")], heldout_fraction=0.2)
    with caplog.at_level(logging.WARNING), pytest.raises(DataError) as err:
        heldout_batches(data, "web", seq_len=8, n_sequences=1, batch_size=1)
    assert "holds 1 document(s) (format text, split_by file: one document per file)" in str(err.value) and "format: jsonl" in str(err.value)
    assert "heldout_fraction" not in str(err.value)
    assert "trains on that one document" in caplog.text and "as plain text" in caplog.text


def test_a_task_file_mixing_item_kinds_names_the_file_and_line(tmp_path):
    path = tmp_path / "qa.jsonl"
    items = [{"id": "a", "context": "1+1=", "answer": "2"}, {"id": "b", "context": "2+2=", "choices": ["3", "4"], "answer": 1}]
    path.write_text("".join(json.dumps(i) + "\n" for i in items))
    with pytest.raises(DataError, match=r"qa\.jsonl line 2 is a multiple-choice item .* but line 1 is an exact-answer item"):
        load_tasks(path)


# ---------------------------------------------------------------- training: vocab, divergence, resume


def test_a_tokenizer_larger_than_the_model_vocab_is_refused_before_training(tmp_path):
    from mergemix_jax.data import train_bpe

    tokenizer = train_bpe(["the nation and the people of the union"] * 20, 300, str(tmp_path / "tok.json"))
    corpus = tmp_path / "web.txt"
    corpus.write_text("the union\n")
    cfg = tiny_config(str(tmp_path / "run"), model={"vocab_size": 280}, eval={"seq_len": 16}, data={"tokenizer": str(tmp_path / "tok.json"), "domains": [{"name": "web", "paths": [str(corpus)]}]})
    with pytest.raises(DataError, match=rf"model\.vocab_size \(280\) is smaller than the tokenizer's vocabulary \({tokenizer.vocab_size}"):
        train(cfg)
    assert not (tmp_path / "run").exists()


def test_a_diverging_loss_stops_without_done_and_keeps_the_checkpoint_before_it(tmp_path):
    runaway = {"learning_rate": 50.0, "grad_clip_norm": 0.0}  # Adam moves every weight by ~50 per step
    cfg = tiny_config(str(tmp_path / "run"), train={"steps": 6, "checkpoint_every": 1}, optim=runaway)
    with pytest.raises(TrainingDiverged, match=r"at step \d+ exceeds train\.divergence_factor = 3 x its best") as err:
        train(cfg, dataset=random_dataset(64, 8, 16))
    tripped = int(str(err.value).split(" at step ")[1].split()[0])
    kept = sorted(int(p.name) for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.isdigit())
    assert kept and max(kept) < tripped and not (tmp_path / "run" / "done.json").exists()
    off = tiny_config(str(tmp_path / "off"), train={"steps": 3, "checkpoint_every": 3, "divergence_factor": 0}, optim=runaway)
    assert np.isfinite(train(off, dataset=random_dataset(64, 8, 16)).final_loss)  # 0 = off: the same run finishes


def test_a_resume_with_changed_settings_or_past_its_steps_is_refused(tmp_path):
    out = str(tmp_path / "run")
    train(tiny_config(out, train={"steps": 2, "checkpoint_every": 2}), dataset=random_dataset(64, 8, 16))
    with pytest.raises(ConfigError, match=r"optim\.learning_rate: 0\.003 -> 0\.01.*new folder"):
        train(tiny_config(out, train={"steps": 4, "checkpoint_every": 2}, optim={"learning_rate": 0.01}), dataset=random_dataset(64, 8, 16))
    with pytest.raises(ConfigError, match=r"newest checkpoint is at step 2, past train\.steps = 1"):
        train(tiny_config(out, train={"steps": 1, "checkpoint_every": 1}), dataset=random_dataset(64, 8, 16))
    done = json.loads((tmp_path / "run" / "done.json").read_text())
    assert done["steps"] == 2 and np.isfinite(done["final_loss"])  # untouched by the refused runs
    assert train(tiny_config(out, train={"steps": 4, "checkpoint_every": 2}), dataset=random_dataset(64, 8, 16)).resumed_from == 2  # constant LR: more steps resume


def test_an_unfinished_expert_is_not_scored(tmp_path):
    from mergemix_jax.runkit.training import check_scorable
    from mergemix_jax.train.checkpoint import CheckpointError

    expert = tmp_path / "code"
    expert.mkdir()
    (expert / "metrics.jsonl").write_text('{"step": 1, "loss": 3.0}\n')
    config = tiny_config(model={"vocab_size": 320})
    with pytest.raises(CheckpointError, match=r"code is an unfinished training run \(no done\.json"):
        check_scorable(config, [expert])
    (expert / "done.json").write_text('{"steps": 1}')
    check_scorable(config, [expert])


def test_a_utility_metric_the_suite_does_not_produce_lists_the_families():
    from mergemix_jax.runkit.problem import utility_weights

    with pytest.raises(ConfigError, match=r"\['acc/qa'\] .* families \['answer_nll/', 'loss/'\]"):
        utility_weights({"acc/qa": 1.0}, ["loss/web", "loss/mean", "answer_nll/qa"])


# ---------------------------------------------------------------- the CLI: exit 2, one line


@pytest.mark.parametrize(
    "override, fragment",
    [("model.vocab_size=128", "model.vocab_size"), ("data.domains.web.text_field=x", "no domain named 'web'"), ("eval.seq_len=64", "eval.seq_len")],
)
def test_the_cli_refuses_a_bad_pair_in_one_line(tmp_path, monkeypatch, capsys, override, fragment):
    from tests.pipeline_helpers import tiny_pipeline_raw, write_config

    monkeypatch.chdir(tmp_path)
    config = write_config(tmp_path, tiny_pipeline_raw(tmp_path))
    code, _, err = run_cli(capsys, "train", "--config", config, override, "train.output_dir=out")
    assert_one_clear_line(code, err, fragment)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_pipeline_stops_at_a_diverging_expert_and_merges_nothing(tmp_path):
    from mergemix_jax.pipeline.stages import run_pipeline
    from tests.pipeline_helpers import tiny_pipeline_raw, write_config

    raw = tiny_pipeline_raw(tmp_path, expert_learning_rate=50.0, base_steps=2)
    raw["optim"]["grad_clip_norm"] = 0.0
    path = write_config(tmp_path, raw)
    with pytest.raises(TrainingDiverged, match=r"train\.divergence_factor"):
        run_pipeline(load_config(path), path)
    (run_dir,) = (tmp_path / "runs").glob("tiny-*")
    assert (run_dir / "base" / "done.json").is_file()  # the base trained at the normal rate
    assert not list((run_dir / "experts").glob("*/done.json")) and not (run_dir / "eval").exists()
