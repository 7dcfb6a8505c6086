"""Every bad input at a boundary raises its exact error class with a message naming the file/key/row and the fix.

Boundaries: configs, domain files, tokenizer files, expert checkpoints, weight files, task files,
results files, disk space, device memory. Each case is (builder, error class, message regex).
"""

import dataclasses
import errno
import json
import logging
import os
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from mergemix_jax.config import ConfigError, DataConfig, DomainConfig, ModelConfig, config_from_dict, load_config
from mergemix_jax.data import ByteTokenizer, DataError, check_vocab, index_all, load_tasks, load_tokenizer
from mergemix_jax.eval import load_expert_stack
from mergemix_jax.eval.results import ResultsFileError, open_results, result_columns
from mergemix_jax.merge import build_expert_stack, read_weights_csv
from mergemix_jax.model import init_params
from mergemix_jax.reliability import (
    DiskFullError,
    OutOfMemoryError,
    atomic_write_json,
    atomic_write_text,
    check_free_space,
    oom_hint,
)
from mergemix_jax.train.checkpoint import CheckpointError, make_manager
from tests.helpers import TINY_MODEL

CFG = ModelConfig(**TINY_MODEL)


def write(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


# ---------------------------------------------------------------- configs


def bad_yaml(tmp):
    load_config(write(tmp / "bad.yaml", "train: {steps: [1,"))


CONFIG_CASES = {
    "unknown key": (lambda tmp: config_from_dict({"train": {"stepz": 3}}, "job.yaml"), ConfigError, r"job.yaml: unknown key\(s\) .*stepz.*check the spelling"),
    "wrong type": (lambda tmp: config_from_dict({"train": {"steps": "many"}}, "job.yaml"), ConfigError, r"key 'train.steps' should be int, got 'many'"),
    "zero steps": (lambda tmp: config_from_dict({"train": {"steps": 0}}, "job.yaml"), ConfigError, r"key 'train.steps' must be > 0, got 0"),
    "mixture names unknown domain": (
        lambda tmp: config_from_dict({"train": {"mixture": {"web": 1.0}}}, "job.yaml"),
        ConfigError,
        r"key 'train.mixture.web' names no domain in data.domains",
    ),
    "negative mixture weight": (
        lambda tmp: config_from_dict({"data": {"domains": [{"name": "a", "paths": ["x"]}]}, "train": {"mixture": {"a": -1.0}}}, "job.yaml"),
        ConfigError,
        r"key 'train.mixture.a' must be a finite weight >= 0, got -1.0",
    ),
    "config file missing": (lambda tmp: load_config(tmp / "nope.yaml"), ConfigError, r"config file .*nope.yaml does not exist"),
    "config not YAML": (bad_yaml, ConfigError, r"bad.yaml: not valid YAML"),
}


# ---------------------------------------------------------------- domain files and tokenizers


def domain(tmp, name, content, fmt="jsonl", filename="d.jsonl"):
    path = write(tmp / filename, content) if content is not None else tmp / filename
    index_all(DataConfig(domains=[DomainConfig(name=name, paths=[str(path)], format=fmt)]))


DATA_CASES = {
    "domain file missing": (lambda tmp: domain(tmp, "web", None), DataError, r"domain 'web': file .*d.jsonl does not exist; fix data.domains paths"),
    "domain line not JSON": (lambda tmp: domain(tmp, "web", '{"text": "ok"}\n{"text": \n'), DataError, r"d.jsonl line 2 is not valid JSON"),
    "domain line lacks text field": (lambda tmp: domain(tmp, "web", '{"body": "x"}\n'), DataError, r"d.jsonl line 1 has no field 'text' .*set data.domains\[\].text_field"),
    "domain file not UTF-8": (lambda tmp: domain(tmp, "web", b"fine\n\xff\xfe broken\n", "text", "d.txt"), DataError, r"domain 'web'.*d.txt.*UTF-8"),
    "domain only empty text": (lambda tmp: domain(tmp, "web", "\n\n", "text", "d.txt"), DataError, r"domain 'web' has no documents"),
    "tokenizer file missing": (
        lambda tmp: load_tokenizer(DataConfig(tokenizer=str(tmp / "tok.json"))),
        DataError,
        r"data.tokenizer: file .*tok.json does not exist; use 'byte' or train one",
    ),
    "tokenizer file garbage": (
        lambda tmp: load_tokenizer(DataConfig(tokenizer=str(write(tmp / "tok.json", "{not json")))),
        DataError,
        r"data.tokenizer: .*tok.json is not a readable `tokenizers` JSON file",
    ),
    "tokenizer wrong kind": (
        lambda tmp: load_tokenizer(DataConfig(tokenizer=str(write(tmp / "tok.txt", "a b c")))),
        DataError,
        r"must end in .json \(HF tokenizers\) or .model \(sentencepiece\)",
    ),
    "tokenizer larger than model vocabulary": (
        lambda tmp: check_vocab(ByteTokenizer(), CFG),
        DataError,
        r"model.vocab_size \(64\) is smaller than the tokenizer's vocabulary \(259.*set model.vocab_size >= 259",
    ),
}


# ---------------------------------------------------------------- expert checkpoints


def mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def save_run(run_dir: Path, params, cfg: ModelConfig, **meta) -> Path:
    """A run folder like training writes (params + meta items), with chosen metadata."""
    manager = make_manager(run_dir, keep=1)
    payload = {"model": dataclasses.asdict(cfg), **meta}
    manager.save(1, args=ocp.args.Composite(params=ocp.args.StandardSave(params), meta=ocp.args.JsonSave(payload)), force=True)
    manager.wait_until_finished()
    manager.close()
    return run_dir


@pytest.fixture(scope="module")
def base_params():
    return jax.device_get(init_params(CFG, 0))


def stack_with(base, change):
    expert = jax.tree.map(np.array, base)
    change(expert)
    build_expert_stack(base, [base, expert], ["code", "web"])


def drop_leaf(p):
    p.pop("final_norm_D", None) if "final_norm_D" in p else p.pop(next(iter(p)))


def two_runs(tmp, base_params, expert_cfg=CFG, **expert_meta):
    base = save_run(tmp / "base", base_params, CFG, init_from="")
    expert_params = base_params if expert_cfg == CFG else jax.device_get(init_params(expert_cfg, 0))
    expert = save_run(tmp / "code", expert_params, expert_cfg, **expert_meta)
    load_expert_stack(base, [expert], CFG)


EXPERT_CASES = {
    "expert lacks a parameter": (lambda tmp, b: stack_with(b, drop_leaf), ValueError, r"expert 'web' has a different parameter tree from the base: missing"),
    "expert leaf shape differs": (
        lambda tmp, b: stack_with(b, lambda p: p.update(embed_VxD=np.zeros((65, 32), np.float32))),
        ValueError,
        r"expert 'web' leaf \['embed_VxD'\] has shape \(65, 32\), the base has \(64, 32\)",
    ),
    "expert leaf dtype differs": (
        lambda tmp, b: stack_with(b, lambda p: p.update(embed_VxD=p["embed_VxD"].astype(np.float16))),
        ValueError,
        r"expert 'web' leaf \['embed_VxD'\] has dtype float16, the base has float32; cast the expert",
    ),
    "expert architecture differs": (
        lambda tmp, b: two_runs(tmp, b, dataclasses.replace(CFG, d_model=64, d_ff=128), init_from=str(tmp / "base")),
        CheckpointError,
        r"code: model architecture differs from the expected one \(saved, expected\): .*d_model",
    ),
    "expert from a different base": (
        lambda tmp, b: two_runs(tmp, b, init_from=str(tmp / "other_base")),
        CheckpointError,
        r"expert .*code was fine-tuned from .*other_base, not from the base .*base: experts from different bases cannot be merged",
    ),
    "expert trained from scratch": (
        lambda tmp, b: two_runs(tmp, b, init_from=""),
        CheckpointError,
        r"expert .*code was trained from scratch .*retrain it with train.init_from=",
    ),
    "expert folder without checkpoint": (
        lambda tmp, b: load_expert_stack(save_run(tmp / "base", b, CFG), [mkdir(tmp / "empty")], CFG),
        CheckpointError,
        r"empty holds no finished checkpoint under checkpoints/; train it first",
    ),
}


# ---------------------------------------------------------------- weight files, task files


def weights(tmp, text):
    read_weights_csv(write(tmp / "w.csv", text), ["code", "web"])


WEIGHT_CASES = {
    "weight NaN": (lambda tmp: weights(tmp, "code,web\n0.5,0.5\nnan,1\n"), ValueError, r"w.csv: row 1 has a NaN or infinite weight"),
    "weight negative": (lambda tmp: weights(tmp, "code,web\n-0.5,1.5\n"), ValueError, r"w.csv: row 0 has a negative weight.*weights must be >= 0"),
    "weight row wrong length": (lambda tmp: weights(tmp, "0.5,0.25,0.25\n"), ValueError, r"w.csv: rows have \[3\] columns but there are 2 experts .*add a header"),
    "weight row all zero": (lambda tmp: weights(tmp, "code,web\n0,0\n"), ValueError, r"w.csv: row 0 is all zeros; at least one expert needs a positive weight"),
    "weight header lacks an expert": (lambda tmp: weights(tmp, "code,math\n1,0\n"), ValueError, r"header \['code', 'math'\] lacks columns for experts \['web'\]"),
    "weight not a number": (lambda tmp: weights(tmp, "code,web\n0.5,half\n"), ValueError, r"w.csv line 2: expected numbers in the expert columns"),
}

MC = {"id": "q1", "context": "2+2=", "choices": ["4", "5"], "answer": 0}


def task_file(tmp, *records):
    load_tasks(write(tmp / "arith.jsonl", "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n"))


TASK_CASES = {
    "task item missing field": (lambda tmp: task_file(tmp, {"id": "q1", "choices": ["a", "b"], "answer": 0}), DataError, r"arith.jsonl line 1: missing field\(s\) \['context'\]"),
    "task answer out of range": (
        lambda tmp: task_file(tmp, MC, {**MC, "id": "q2", "answer": 2}),
        DataError,
        r"arith.jsonl line 2: answer index 2 is out of range for 2 choices \(0..1\)",
    ),
    "task answer not an index": (lambda tmp: task_file(tmp, {**MC, "answer": "4"}), DataError, r"line 1: field 'answer' of a multiple-choice item must be an integer index"),
    "task id repeated": (lambda tmp: task_file(tmp, MC, MC), DataError, r"line 2: id 'q1' already used on line 1; ids must be unique"),
    "task line not JSON": (lambda tmp: task_file(tmp, MC, "{oops"), DataError, r"arith.jsonl line 2 is not valid JSON"),
    "task file empty": (lambda tmp: task_file(tmp, ""), DataError, r"task file .*arith.jsonl holds no items"),
}


# ---------------------------------------------------------------- results files, disk, memory

COLUMNS = result_columns(["code", "web"], ["loss/mean"])
GOOD_ROWS = "row,weights_hash,w/code,w/web,loss/mean\n0,aa,0.5,0.5,2.0\n1,bb,1.0,0.0,2.5\n"


def results(tmp, text, columns=COLUMNS):
    open_results(write(tmp / "res.csv", text), columns)


def enospc_write(tmp):
    target = write(tmp / "mixture.json", '{"old": true}\n')

    def full_disk(fd):  # a full disk surfaces when buffered data is forced out
        raise OSError(errno.ENOSPC, "No space left on device")

    real_fsync = os.fsync
    os.fsync = full_disk
    try:
        atomic_write_text(target, "x" * 100_000)
    finally:
        os.fsync = real_fsync


def oom_in_scoring(tmp):
    with oom_hint("scoring 8 mixture(s) per device per chunk", "lower eval.mixtures_per_device (now 8)"):
        raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 17179869184 bytes.")


OTHER_CASES = {
    "results line corrupt mid-file": (
        lambda tmp: results(tmp, GOOD_ROWS.replace("1,bb,1.0,0.0,2.5", "1,bb,1.0")),
        ResultsFileError,
        r"res.csv line 3: 3 fields, expected 5; the file is corrupt, delete it to rescore",
    ),
    "results of another job": (lambda tmp: results(tmp, GOOD_ROWS, result_columns(["code", "math"], ["loss/mean"])), ResultsFileError, r"differ from this job's .*write to a new --out file or delete this one"),
    "results row twice": (lambda tmp: results(tmp, GOOD_ROWS + "1,bb,1.0,0.0,2.5\n"), ResultsFileError, r"line 4: row 1 appears twice"),
    "disk too small for the job": (
        lambda tmp: check_free_space(tmp, 1 << 60, "keeping 2 checkpoint(s)"),
        DiskFullError,
        r"keeping 2 checkpoint\(s\) needs about .* TB in .* free; free some space or choose another output folder",
    ),
    "disk fills during a write": (enospc_write, DiskFullError, r"disk full while writing .*mixture.json \(100,000 bytes\); free space on that disk or write elsewhere"),
    "device out of memory": (oom_in_scoring, OutOfMemoryError, r"scoring 8 mixture\(s\) per device per chunk ran out of memory \(RESOURCE_EXHAUSTED.*lower eval.mixtures_per_device \(now 8\)"),
}

PLAIN_CASES = {**CONFIG_CASES, **DATA_CASES, **WEIGHT_CASES, **TASK_CASES, **OTHER_CASES}


@pytest.mark.parametrize("case", list(PLAIN_CASES))
def test_bad_input_raises_exact_error(case, tmp_path):
    build, error, pattern = PLAIN_CASES[case]
    with pytest.raises(error, match=pattern) as excinfo:
        build(tmp_path)
    assert type(excinfo.value) is error


@pytest.mark.parametrize("case", list(EXPERT_CASES))
def test_bad_expert_raises_exact_error(case, tmp_path, base_params):
    build, error, pattern = EXPERT_CASES[case]
    with pytest.raises(error, match=pattern) as excinfo:
        build(tmp_path, base_params)
    assert type(excinfo.value) is error


def test_failed_atomic_write_keeps_the_old_file_and_no_temporary(tmp_path):
    with pytest.raises(DiskFullError):
        enospc_write(tmp_path)
    assert (tmp_path / "mixture.json").read_text() == '{"old": true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mixture.json"]
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        atomic_write_json(tmp_path / "mixture.json", {"loss": float("nan")})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mixture.json"]


def test_oom_hint_lets_other_errors_through():
    with pytest.raises(KeyError, match="loss"), oom_hint("scoring", "lower eval.mixtures_per_device"):
        raise KeyError("loss")


def test_truncated_results_line_is_dropped_and_rescored(tmp_path, caplog):
    path = write(tmp_path / "res.csv", GOOD_ROWS + "2,cc,0.0,1.")  # killed mid-append
    with caplog.at_level(logging.WARNING):
        done = open_results(path, COLUMNS)
    assert done == {0: "aa", 1: "bb"}  # row 2 is scored again on resume; nothing half-written is kept
    assert "dropping a partial last line" in caplog.text
    assert path.read_text() == GOOD_ROWS


def test_case_count():
    """The closing note reports this number; keep it honest."""
    assert len(PLAIN_CASES) + len(EXPERT_CASES) == 7 + 9 + 6 + 6 + 6 + 7
