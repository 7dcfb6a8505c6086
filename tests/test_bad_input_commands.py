"""Bad input at every command (issue 20): one error path, exit code 2 and one line naming the option or
file and the fix; `--debug` shows the traceback; weights files as spreadsheets save them."""

from __future__ import annotations

import codecs
import logging
import shutil

import numpy as np
import pytest

from mergemix_jax.cli.main import main
from mergemix_jax.eval.weights_file import WeightsFileError, read_weights_file
from tests.test_bad_input_cli import assert_one_clear_line, project, run_cli, runs  # noqa: F401 (fixtures)

EXPERTS = ["code", "web"]


@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["run", "--config", "x.yaml", "--stop-after", "expert"], ["--stop-after 'expert' is not a stage", "base, experts, probe"]),
        (["search", "--method", "gradient", "--base", "b", "--experts", "e"], ["--config is required"]),
        (["search", "--method", "annealing", "--synthetic", "quadratic:3"], ["--method", "annealing"]),
        (["search", "--method", "gradient", "--synthetic", "quadratic:3", "--tokens", "1,x,3", "--token-budget", "9"], ["--tokens '1,x,3'"]),
        (["search", "--method", "gradient", "--synthetic", "quadratic:3", "--tokens", "1,2,3"], ["--token-budget > 0"]),
        (["search", "--method", "hierarchical", "--synthetic", "quadratic:3", "--clusters", "a"], ["--clusters"]),
        (["export-mergekit", "nowhere", "--out", "m.yaml"], ["nowhere/config.yaml does not exist"]),
        (["tensorboard", "nowhere"], ["RUN nowhere is not a folder"]),
        (["tensorboard", "."], ["no metrics.jsonl or search/*.json under ."]),
        *[
            (["eval-mixtures", "--config", "x.yaml", "--base", "b", "--experts", "e", "--out", "r.csv", "--sample", spec], [f"--sample {spec!r}", why])
            for spec, why in [("dirichlet:abc", "expected dirichlet:N"), ("dirichlet:0", "N >= 1"), ("dirichlet:5:-1", "ALPHA > 0"), ("uniform:5", "unknown sampler 'uniform'")]
        ],
    ],
)
def test_command_line_mistakes_are_one_line(tmp_path, monkeypatch, capsys, argv, fragments):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, *argv)
    assert_one_clear_line(code, err, f"mergemix {argv[0]}:", *fragments)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_debug_shows_the_traceback_of_a_user_error(tmp_path, capsys):
    code, _, err = run_cli(capsys, "--debug", "run", "--config", "x.yaml", "--stop-after", "expert")
    assert code == 2 and "Traceback" in err and "UsageError" in err
    assert err.strip().splitlines()[-1].startswith("mergemix run: --stop-after 'expert'")


def test_a_csv_given_as_the_mixture_file(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("eval: {merge: linear}\n")
    (tmp_path / "mix.csv").write_text("code,web\n0.5,0.5\n")
    code, _, err = run_cli(capsys, "export-mergekit", run, "--mixture", tmp_path / "mix.csv", "--out", tmp_path / "m.yaml")
    assert_one_clear_line(code, err, f"--mixture {tmp_path / 'mix.csv'} is not a mixture file", "not valid JSON", "mergemix search --out")
    assert not (tmp_path / "m.yaml").exists()


def test_a_spreadsheet_csv_with_a_byte_order_mark_reads_right(tmp_path):
    path = tmp_path / "w.csv"
    path.write_bytes(codecs.BOM_UTF8 + b"web,code\r\n0.25,0.75\r\n")
    np.testing.assert_allclose(read_weights_file(path, EXPERTS), [[0.75, 0.25]])


@pytest.mark.parametrize("data", [codecs.BOM_UTF16_LE + "code,web\n0.5,0.5\n".encode("utf-16-le"), "code,web\n0.5,0.5\n".encode("utf-16-le")])
def test_a_utf16_weights_file_names_the_file_and_the_fix(tmp_path, data):
    path = tmp_path / "w.csv"
    path.write_bytes(data)
    with pytest.raises(WeightsFileError, match=rf"{path} .*save it as CSV UTF-8"):
        read_weights_file(path, EXPERTS)


def test_an_out_folder_holding_the_weights_is_blamed_on_out(project, runs, capsys):  # noqa: F811
    folder, config = project
    (folder / "mixes").mkdir()
    (folder / "mixes" / "w.csv").write_text("code\n1\n")
    argv = ["eval-mixtures", "--config", config, "--base", runs / "base", "--experts", runs / "code", "--weights", "mixes/w.csv", "--out", "mixes", "--no-progress"]
    code, _, err = run_cli(capsys, *argv)
    assert_one_clear_line(code, err, "mixes (from --out) is a folder")


# ---------------------------------------------------------------- a damaged stage output heals on the rerun


@pytest.fixture(scope="module")
def experts_run(tmp_path_factory):
    """A tiny pipeline run stopped after its experts: (config path, output root)."""
    from mergemix_jax.config import load_config
    from mergemix_jax.pipeline import run_pipeline
    from tests.pipeline_helpers import tiny_pipeline_raw, write_config

    folder = tmp_path_factory.mktemp("heal")
    config = write_config(folder, tiny_pipeline_raw(folder, methods=["subsets"]))
    run_pipeline(load_config(config), config, stop_after="experts")
    return config, folder / "runs"


def _truncate_params(expert):
    for path in (expert / "checkpoints").glob("*/params/**/d/*"):
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _delete_steps(expert):  # what the old message advised: delete the checkpoint (done.json stays)
    for step in (expert / "checkpoints").iterdir():
        shutil.rmtree(step)


@pytest.mark.slow
@pytest.mark.parametrize("damage", [_truncate_params, _delete_steps])
def test_a_damaged_expert_is_retrained_by_the_rerun(experts_run, tmp_path, capsys, caplog, damage):
    import jax

    from mergemix_jax.pipeline import read_stage_log
    from mergemix_jax.train import load_params

    config, output_root = experts_run
    root = shutil.copytree(output_root, tmp_path / "runs")
    run_dir = next(root.glob("tiny-*"))
    damage(run_dir / "experts" / "code")
    with caplog.at_level(logging.WARNING):
        code, _, err = run_cli(capsys, "run", "--config", config, f"pipeline.output_root={root}", "--stop-after", "probe", "--no-progress")
    assert code == 0, err
    assert "experts/code: its saved output is damaged" in caplog.text and "retraining it" in caplog.text
    assert (run_dir / "experts" / "code" / "done.json").is_file() and (run_dir / "experts" / "code" / "corrupt_checkpoints").is_dir()
    events = [(e["stage"], e["status"]) for e in read_stage_log(run_dir)]
    last_code = max(i for i, (stage, _) in enumerate(events) if stage == "expert:code")
    assert events[last_code][1] == "done" and events[-1] == ("probe", "done")  # retrained, then the probe ran on it
    retrained, original = (load_params(r / run_dir.name / "experts" / "code")[0] for r in (root, output_root))
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(retrained), jax.tree.leaves(original), strict=True))  # the same expert again


@pytest.mark.parametrize(
    "argv, fragment",
    [(["run"], "mergemix run: the following arguments are required: --config"), (["runn"], "invalid choice: 'runn'")],
)
def test_argument_errors_are_one_line_too(capsys, argv, fragment):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1 and fragment in err and "--help" in err


def test_a_utility_metric_the_suite_does_not_produce_is_one_line(project, capsys):  # noqa: F811
    folder, config = project
    code, _, err = run_cli(capsys, "run", "--config", config, "pipeline.utility={loss/nope: 1}")
    assert_one_clear_line(code, err, "mergemix run:", "'loss/nope'", "no domain is called 'nope'")
    assert list((folder / "runs").glob("tiny-*")) == []  # no run folder (only jax's compilation cache)


def test_only_the_libraries_clean_up_noise_is_dropped(monkeypatch):
    import sys
    from types import SimpleNamespace

    from mergemix_jax.cli.main import quiet_unraisable

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: seen.append(unraisable.exc_value))
    noise, other = RuntimeError("Event loop is closed"), RuntimeError("something else")
    with quiet_unraisable():
        sys.unraisablehook(SimpleNamespace(exc_value=noise))
        sys.unraisablehook(SimpleNamespace(exc_value=other))
    sys.unraisablehook(SimpleNamespace(exc_value=noise))  # restored after the command
    assert seen == [other, noise]
