"""Bad input at the command line (issue 14): one line on stderr naming the thing and the fix, exit code 2,
no traceback, and nothing written; legitimate input gets the right result."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import stat
from pathlib import Path

import jax
import pytest

from mergemix_jax.cli.errors import os_error_message
from mergemix_jax.cli.main import main, package_version
from mergemix_jax.config import ModelConfig, load_config
from mergemix_jax.model import init_params
from mergemix_jax.reliability import atomic_write_text
from mergemix_jax.train.checkpoint import save_params
from tests.pipeline_helpers import tiny_pipeline_raw, write_config

MODEL = {"vocab_size": 320, "d_model": 32, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "d_ff": 64, "max_seq_len": 32}


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A tiny corpus + config in tmp_path (the working folder) and a regular file `afile` to be in the way."""
    monkeypatch.chdir(tmp_path)
    raw = tiny_pipeline_raw(tmp_path)
    raw["pipeline"]["output_root"] = "runs"
    config = write_config(tmp_path, raw)
    (tmp_path / "afile").write_text("I am a file\n")
    return tmp_path, config


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A base run and an expert fine-tuned from it (params only, as checkpoints record them)."""
    folder = tmp_path_factory.mktemp("runs")
    cfg = ModelConfig(**MODEL)
    params = jax.device_get(init_params(cfg, 0))
    save_params(folder / "base", params, cfg)
    meta = json.loads(next((folder / "base" / "checkpoints").glob("*/meta/metadata")).read_text())
    save_params(folder / "code", params, cfg, metadata={"init_from": str(folder / "base"), "base_fingerprint": meta["params_fingerprint"]})
    return folder


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_clear_line(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip() and " WARNING " not in line]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


# ---------------------------------------------------------------- case 4: output paths that cannot be written


def test_train_output_under_a_regular_file(project, capsys):
    _folder, config = project
    code, _, err = run_cli(capsys, "train", "--config", config, "train.output_dir=afile/sub", "train.steps=1")
    assert_one_clear_line(code, err, "afile/sub", "(from train.output_dir)", "afile is a file, not a folder")


def test_pipeline_output_root_under_a_regular_file(project, capsys):
    _folder, config = project
    code, _, err = run_cli(capsys, "run", "--config", config, "pipeline.output_root=afile/runs")
    assert_one_clear_line(code, err, "(from pipeline.output_root)", "afile is a file, not a folder")


def test_tokenizer_out_under_a_regular_file(project, capsys):
    _folder, config = project
    code, _, err = run_cli(capsys, "data", "train-tokenizer", "--config", config, "--vocab-size", 300, "--out", "afile/t.json")
    assert_one_clear_line(code, err, "mergemix data train-tokenizer:", "(from --out)", "afile is a file, not a folder")


@pytest.mark.parametrize("out", ["afile/x.csv", "existing_folder"])
def test_eval_mixtures_out_that_cannot_be_a_results_file(project, runs, capsys, out):
    folder, config = project
    (folder / "existing_folder").mkdir()
    argv = ["eval-mixtures", "--config", config, "--base", runs / "base", "--experts", runs / "code", "--sample", "dirichlet:2", "--out", out, "--no-progress"]
    code, _, err = run_cli(capsys, *argv)
    expected = "is a file, not a folder" if out.startswith("afile") else "is a folder, but a file is needed here"
    assert_one_clear_line(code, err, "(from --out)", expected)


def test_os_errors_name_the_path_and_the_fix(tmp_path):
    assert "permission denied for /srv/out" in os_error_message(PermissionError(errno.EACCES, "Permission denied", "/srv/out"))
    assert "read-only file system" in os_error_message(OSError(errno.EROFS, "Read-only file system", "/mnt/x"))
    assert "does not exist; check the path" in os_error_message(FileNotFoundError(errno.ENOENT, "No such file", "nope"))


# ---------------------------------------------------------------- case 5 and 10: nothing written on a config error


def test_init_from_with_another_architecture_writes_nothing(project, runs, capsys):
    folder, config = project
    code, _, err = run_cli(capsys, "train", "--config", config, f"train.init_from={runs / 'base'}", "model.d_model=64", "train.output_dir=expert")
    assert_one_clear_line(code, err, "model architecture differs", "d_model", "model.d_model=32")
    assert not (folder / "expert").exists()


@pytest.mark.parametrize("override", ["mesh.data=3", "data.heldout_fraction=2"])
def test_config_errors_leave_no_output_folder(project, capsys, override):
    folder, config = project
    code, _, err = run_cli(capsys, "train", "--config", config, "train.output_dir=out/base", override)
    assert_one_clear_line(code, err, "config error")
    assert not (folder / "out").exists()


def test_missing_domain_file_leaves_no_run_folder(project, capsys):
    folder, config = project
    (folder / "corpus" / "code.jsonl").unlink()
    code, _, err = run_cli(capsys, "run", "--config", config)
    assert_one_clear_line(code, err, "code.jsonl does not exist")
    assert not (folder / "runs").exists()


# ---------------------------------------------------------------- case 6: a truncated base checkpoint


def test_truncated_checkpoint_is_one_line_with_a_cli_fix(tmp_path, runs, capsys):
    run = shutil.copytree(runs / "base", tmp_path / "base")
    biggest = max((p for p in (run / "checkpoints").rglob("*") if p.is_file() and "params" in p.parts), key=lambda p: p.stat().st_size)
    biggest.write_bytes(biggest.read_bytes()[: biggest.stat().st_size // 2])
    code, _, err = run_cli(capsys, "export-hf", run, "--out", tmp_path / "hf")
    assert_one_clear_line(code, err, "cannot be read", "mergemix train --no-resume")
    assert "load_params(" not in err


# ---------------------------------------------------------------- case 7: config parsing


@pytest.mark.parametrize(
    "text, overrides, fragment",
    [
        ("train: {steps: 3}\n", ["train.mixture.code=[1"], "override 'train.mixture.code=[1': the value is not valid YAML"),
        ("- a\n- b\n", [], "the top level must be a mapping of sections"),
        ("data:\n  domains:\n    - {name: web, paths: file.jsonl}\n", [], "key 'data.domains[0].paths' should be a list, got the single string 'file.jsonl'"),
        ("train: {stepz: 3}\n", [], "unknown key(s) train.stepz"),
        ("train: 3\n", [], "key 'train' is a section of keys"),
    ],
)
def test_config_parse_errors_are_one_line(tmp_path, capsys, text, overrides, fragment):
    path = tmp_path / "job.yaml"
    path.write_text(text)
    code, _, err = run_cli(capsys, "train", "--config", path, *overrides)
    assert_one_clear_line(code, err, "config error", fragment)


# ---------------------------------------------------------------- case 8: wrong or thin messages


def test_mistyped_base_is_named_as_missing(project, runs, capsys):
    _, config = project
    argv = ["eval-mixtures", "--config", config, "--base", runs / "bsae", "--experts", runs / "code", "--sample", "dirichlet:2", "--out", "r.csv"]
    code, _, err = run_cli(capsys, *argv)
    assert_one_clear_line(code, err, "bsae does not exist; check --base")
    assert "different bases" not in err


def test_data_stats_warns_about_a_domain_without_heldout_documents(project, capsys):
    _, config = project
    code, out, _ = run_cli(capsys, "data", "stats", "--config", config, "data.heldout_fraction=0")
    assert code == 0
    assert "WARNING: domain 'prose' has 0 held-out documents because data.heldout_fraction is 0" in out


def test_task_max_len_above_the_model_context_is_a_config_error(project):
    folder, config = project
    (folder / "tasks").mkdir()
    with pytest.raises(ValueError, match=r"'eval.task_max_len' \(256\) exceeds 'model.max_seq_len' \(32\).*set eval.task_max_len <= 32"):
        load_config(config, ["eval.task_dir=tasks"])


def test_task_longer_than_task_max_len_names_file_and_key():
    from mergemix_jax.data import ByteTokenizer, DataError
    from mergemix_jax.eval.tasks import tokenize_task

    item = {"id": "q1", "context": "2+2=", "choices": ["a long continuation", "b"], "answer": 0}
    with pytest.raises(DataError, match=r"task 'arith' \(arith.jsonl in eval.task_dir\) item 'q1'.*exceeds max_len=8 \(eval.task_max_len\); raise eval.task_max_len"):
        tokenize_task([item], ByteTokenizer(), "arith", max_len=8)


# ---------------------------------------------------------------- case 9: file permissions follow the umask


def test_atomic_writes_get_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "mixture.json", "{}\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    path.chmod(0o640)
    atomic_write_text(path, "{}\n")  # an existing file keeps its mode
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


# ---------------------------------------------------------------- case 14 and 15: export-hf token ids, --version, quiet jax


def test_export_hf_writes_the_tokenizer_token_ids(tmp_path, runs, capsys):
    run = shutil.copytree(runs / "base", tmp_path / "run")
    (run / "config.yaml").write_text("data: {tokenizer: byte}\n")
    code, out, _ = run_cli(capsys, "export-hf", run, "--out", tmp_path / "hf")
    assert code == 0, out
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert (config["bos_token_id"], config["eos_token_id"], config["pad_token_id"]) == (2, 1, 0)  # the byte tokenizer's


def test_version_and_no_tpu_probe_noise(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"mergemix {package_version()}"
    assert package_version()[0].isdigit()
    assert main(["train", "--config", "no-such-config.yaml"]) == 2  # any command sets up logging first
    assert logging.getLogger("jax._src.xla_bridge").getEffectiveLevel() >= logging.WARNING


def test_bugs_keep_their_traceback(monkeypatch):
    import mergemix_jax.cli.train as train_cli

    monkeypatch.setattr(train_cli, "run", lambda args: 1 / 0)
    parser_args = ["train", "--config", "x.yaml"]
    with pytest.raises(ZeroDivisionError):
        main(parser_args)


# ---------------------------------------------------------------- case 12: the README's commands are what CI runs


def test_readme_install_and_test_commands_are_what_ci_runs():
    import re

    root = Path(__file__).resolve().parents[1]
    readme, ci = (root / "README.md").read_text(), (root / ".ci" / "run").read_text()
    install = r'pip install (?:--quiet )?-e "\.\[([a-z,]+)\]"'
    assert re.findall(install, readme)[0] == re.findall(install, ci)[0] == "dev,seqio"
    test_command = ".venv/bin/python -m pytest -q -n 2 --dist loadfile"
    assert test_command in readme and test_command in ci
    assert re.search(r"^\.venv/bin/ruff check ", ci, re.M)


# ---------------------------------------------------------------- case 13: no paths of the machines it was built on


def test_package_configs_and_scripts_name_no_machine_paths():
    root = Path(__file__).resolve().parents[1]
    files = [p for folder in ("mergemix_jax", "configs", "tpu_scripts", "benchmarks") for p in (root / folder).rglob("*") if p.suffix in (".py", ".yaml", ".sh", ".md")]
    machine_roots = tuple(f"/{name}/" for name in ("work", "root"))  # the build machines' home folders, spelled so this file names none
    offenders = [f"{p.relative_to(root)}:{n}" for p in files for n, line in enumerate(p.read_text().splitlines(), 1) if any(m in line for m in machine_roots)]
    assert offenders == []
