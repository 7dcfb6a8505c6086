"""`mergemix validate` on the tiny run: references trained on a held-out split the search never saw,
identities between proxies and references, intervals, baselines with regret."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mergemix_jax.cli.main import main
from mergemix_jax.pipeline.stages import read_table
from tests.pipeline_helpers import finished_tiny_run


@pytest.mark.slow  # a tiny pipeline end to end and its validation
def test_validate_trains_references_and_reports_rank_statistics(capsys):
    run = finished_tiny_run()
    assert main(["validate", "--config", str(run.config_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "| utility | all |" in out and "recommended: real loss / rank / regret" in out
    # the ranking by the run's utility beside the ranking by held-out loss, each with its interval
    assert "ranking by the utility (utility = 1 x loss/mean" in out and "ranking by held-out loss (loss/mean): proxy Spearman [90%]: all " in out
    (path,) = run.run_dir.glob("validate-*/validation.json")
    v = json.loads(path.read_text())
    assert v["kinds"] == ["vertex"] * 3 + ["centre", "dirichlet"]
    # a reference on a vertex is trained exactly like that domain's expert, which is the merge at the vertex
    for metric, proxy in v["proxy"].items():
        np.testing.assert_allclose(v["reference"][metric][:3], proxy[:3], rtol=1e-5, err_msg=metric)
    # scored on held-out sequences disjoint from the search's: the centre's proxy differs from the probe table's
    assert v["suite"]["heldout_offset"] == 2
    probe = read_table(run.run_dir / "eval" / "probe.csv", tuple(v["domains"]))
    centre = int(np.argmin(np.abs(probe["weights"] - 1 / 3).sum(axis=1)))
    assert abs(probe["metrics"]["loss/mean"][centre] - v["proxy"]["loss/mean"][3]) > 1e-4
    rows = {(r["metric"], r["subset"]): r for r in v["table"]}
    util = rows[("utility", "all")]
    assert util["n"] == 5 and rows[("utility", "interior")]["n"] == 2 and util["replicates"] == 2
    assert util["spearman_lo"] <= util["spearman"] <= util["spearman_hi"]
    assert np.isfinite(util["reliability"]) and util["bound"] == pytest.approx(np.sqrt(max(2 * util["reliability"] / (1 + util["reliability"]), 0)))
    assert v["reference_seed2"]["loss/mean"] != v["reference"]["loss/mean"]  # another data order
    # the run's calibration (fitted by verification) is applied to the proxy
    assert v["calibrated"] is not None and np.isfinite(rows[("loss/mean", "all")]["calibrated_spearman"])
    b = v["baselines"]
    assert set(b) == {"recommended", "proxy pick", "uniform", "natural"}
    mixture = json.loads((run.run_dir / "mixture.json").read_text())
    assert b["recommended"]["weights"] == pytest.approx(mixture["weights"])
    best = v["best"]["real_loss"]
    assert best == pytest.approx(min(v["real_loss"]))
    for name, entry in b.items():
        assert entry["regret"] == pytest.approx(entry["real_loss"] - best), name
        assert entry["regret_lo"] <= entry["regret_hi"], name
    assert b["uniform"]["real_loss"] == pytest.approx(v["real_loss"][3])  # the centre, mean of its two runs
    # the verification stage's runs (same recipe, both seeds) are re-scored instead of trained again
    assert b["proxy pick"]["real_runs"] == b["natural"]["real_runs"] == 2 and not (path.parent / "baselines").exists()
    assert v["best"]["name"] in v["indistinguishable"]
    s = v["summary"]
    assert s["proxy train steps / reference train steps"] == pytest.approx(3 / 5)
    html = (run.run_dir / "report" / "index.html").read_text()
    assert "scatter.png" in html and (run.run_dir / "report" / "scatter.png").stat().st_size > 0


def test_disjoint_heldout_split_excludes_the_search_sequences(tmp_path):
    from mergemix_jax.config.loading import config_from_dict
    from mergemix_jax.data import heldout_batches
    from mergemix_jax.pipeline.stages import with_overrides
    from mergemix_jax.validate.run import scoring_config
    from tests.pipeline_helpers import tiny_pipeline_raw

    config = config_from_dict(tiny_pipeline_raw(tmp_path))
    rows = {}
    for skip in (0, 4):
        (batch,) = heldout_batches(config.data, "prose", seq_len=32, n_sequences=4, batch_size=4, skip=skip)
        rows[skip] = {row.tobytes() for row in batch["inputs"]}
    assert len(rows[0]) == len(rows[4]) == 4 and not rows[0] & rows[4]
    (again,) = heldout_batches(config.data, "prose", seq_len=32, n_sequences=4, batch_size=4, skip=4)
    assert {row.tobytes() for row in again["inputs"]} == rows[4]  # fixed, like the default split
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("eval: {heldout_sequences: 7}\n")  # what the search scored
    assert scoring_config(config, run_dir).eval.heldout_offset == 7
    old = with_overrides(config, validate={"disjoint_heldout": False})
    assert scoring_config(old, run_dir).eval.heldout_offset == 0  # the old behaviour: the search's own sequences


def test_validation_scores_task_items_the_search_never_saw(tmp_path, caplog):
    import json

    from mergemix_jax.config.loading import config_from_dict
    from mergemix_jax.data.errors import DataError
    from mergemix_jax.eval.api import task_items
    from mergemix_jax.pipeline.stages import with_overrides
    from mergemix_jax.validate.run import scoring_config
    from tests.pipeline_helpers import tiny_pipeline_raw

    tasks = tmp_path / "tasks"
    tasks.mkdir()
    for name, n in (("sums", 10), ("more", 6)):
        (tasks / f"{name}.jsonl").write_text("".join(json.dumps({"id": f"{name}{i}", "context": f"{i}+1=", "answer": str(i + 1)}) + "\n" for i in range(n)))
    raw = tiny_pipeline_raw(tmp_path)
    raw["eval"].update(task_dir=str(tasks), task_max_items=4, task_max_len=32)
    config = config_from_dict(raw)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("eval: {heldout_sequences: 7, task_max_items: 4}\n")  # what the search scored
    scoring = scoring_config(config, run_dir)
    assert (scoring.eval.heldout_offset, scoring.eval.task_offset, scoring.eval.task_max_items) == (7, 4, 4)
    items = list(range(10))
    assert task_items("sums", items, 4, 4) == [4, 5, 6, 7] and not set(task_items("sums", items, 4, 4)) & set(task_items("sums", items, 0, 4))
    assert task_items("sums", items, 8, 4) == [8, 9]  # fewer left than asked: the rest
    with pytest.raises(DataError, match=r"task 'sums'.*eval\.task_offset"):
        task_items("sums", items, 10, 4)
    # a search that scored every item of a task leaves nothing unseen: the same items, said plainly
    (run_dir / "config.yaml").write_text("eval: {heldout_sequences: 7, task_max_items: 6}\n")
    with caplog.at_level("WARNING"):
        assert scoring_config(with_overrides(config, eval={"task_max_items": 6}), run_dir).eval.task_offset == 0
    assert "not out of sample" in caplog.text


def test_eval_task_offset_names_a_new_run_folder_only_when_set(tmp_path):
    from mergemix_jax.config.loading import config_from_dict
    from mergemix_jax.pipeline.stages import with_overrides
    from mergemix_jax.runkit.run_dir import hashed_settings, run_dir_for
    from tests.pipeline_helpers import tiny_pipeline_raw

    config = config_from_dict(tiny_pipeline_raw(tmp_path))
    assert "task_offset" not in hashed_settings(config)["eval"]  # folders named before the key existed keep their names
    assert run_dir_for(with_overrides(config, eval={"task_offset": 3})) != run_dir_for(config)
