"""`mergemix plan`: the run's cost follows the config (steps, seeds, reused experts, target tokens),
verification has a best and a worst case, pod configs fit, and bad input is one line, exit 2."""

import dataclasses
import json
from pathlib import Path

import pytest

from mergemix_jax.cli.main import main
from mergemix_jax.config import load_config
from mergemix_jax.parallel.estimates import flops_per_token
from mergemix_jax.runkit.plan import format_plan, job_plan, record_plan, verification_runs

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(scope="module")
def demo():
    return load_config(CONFIGS / "demo.yaml")


def rows(plan: dict) -> dict:
    return {r["stage"]: r for r in plan["rows"]}


def with_pipeline(config, **values):
    return dataclasses.replace(config, pipeline=dataclasses.replace(config.pipeline, **values))


def test_training_stages_cost_6n_per_token_and_follow_the_steps(demo):
    plan = job_plan(demo, "v5p-8")
    experts = rows(plan)["experts"]
    t = demo.train
    assert experts["runs_worst"] == len(demo.data.domains)
    assert experts["flops_worst"] == pytest.approx(experts["tokens"] * flops_per_token(demo.model, t.seq_len))
    assert experts["tokens"] == len(demo.data.domains) * demo.pipeline.expert_steps * t.batch_size * t.seq_len
    doubled = rows(job_plan(with_pipeline(demo, expert_steps=2 * demo.pipeline.expert_steps), "v5p-8"))
    assert doubled["experts"]["flops_worst"] == pytest.approx(2 * experts["flops_worst"])
    assert doubled["verification"]["flops_worst"] == pytest.approx(2 * rows(plan)["verification"]["flops_worst"])
    assert rows(plan)["base"]["runs_worst"] == 0  # the demo reuses its shipped base
    assert rows(job_plan(with_pipeline(demo, base_dir=""), "v5p-8"))["base"]["runs_worst"] == 1


def test_verification_best_and_worst_case_follow_the_verify_keys(demo):
    demo = with_pipeline(demo, verify_strategy="rounds")
    best, worst = verification_runs(demo)
    assert 0 < best < worst
    more_seeds = with_pipeline(demo, verify_extra_rounds=demo.pipeline.verify_extra_rounds + 1)
    assert verification_runs(more_seeds)[1] > worst and verification_runs(more_seeds)[0] == best
    assert verification_runs(with_pipeline(demo, verify_candidates=0)) == (0, 0)
    plan = job_plan(with_pipeline(demo, verify_candidates=0), "cpu")
    assert rows(plan)["verification"]["flops_worst"] == 0 and rows(plan)["verify pool"]["runs_worst"] == 0


def test_reused_experts_cost_nothing_and_the_target_scales_the_ratio(demo):
    reused = rows(job_plan(demo, "cpu", expert_dirs_given=True))["experts"]
    assert reused["flops_worst"] == 0 and "expert_dirs" in reused["note"]
    small, big = job_plan(demo, "cpu", target_tokens=1e6), job_plan(demo, "cpu", target_tokens=1e8)
    assert small["target"]["job_over_target_worst"] == pytest.approx(100 * big["target"]["job_over_target_worst"])
    assert small["total"]["chip_hours_worst"] >= small["total"]["chip_hours_best"] > 0


def test_chip_hours_follow_the_mfu_and_the_table_says_which(demo):
    slow, fast = job_plan(demo, "v6e-8", mfu=0.2), job_plan(demo, "v6e-8", mfu=0.4, mfu_measured=True)
    assert slow["total"]["chip_hours_worst"] == pytest.approx(2 * fast["total"]["chip_hours_worst"])
    assert "MFU 0.2 (assumed)" in format_plan(slow) and "MFU 0.4 (measured)" in format_plan(fast)
    assert "(analytic)" in format_plan(slow)


@pytest.mark.parametrize(("name", "accelerator"), [("llama_1b_v5p", "v5p-64"), ("llama_8b_v6e", "v6e-64")])
def test_pod_configs_fit_their_chips(name, accelerator):
    plan = job_plan(load_config(CONFIGS / f"{name}.yaml"), accelerator, target_tokens=1e11)
    assert plan["total"]["fits"], [(r["stage"], r["memory_gib"]) for r in plan["rows"]]
    assert plan["target"]["chip_hours"] > 0 and "fits: yes" in format_plan(plan)


def test_record_plan_writes_json_and_markdown(demo, tmp_path):
    plan = record_plan(demo, tmp_path, "demo")
    assert json.loads((tmp_path / "plan.json").read_text())["total"] == pytest.approx(plan["total"])
    assert "| experts |" in (tmp_path / "plan.md").read_text()
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    record_plan(demo, tmp_path, "demo")  # a resumed run rewrites nothing
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == stamps


def test_cli_prints_the_table_and_refuses_a_bad_accelerator(capsys):
    assert main(["plan", "--config", str(CONFIGS / "demo.yaml"), "--accelerator", "v5p-8", "--target-tokens", "1e9"]) == 0
    out = capsys.readouterr().out
    assert "| verification |" in out and "x the target run" in out
    assert main(["plan", "--config", str(CONFIGS / "demo.yaml"), "--accelerator", "v9-8"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "v9-8" in err and "v5p-64" in err


def test_suite_tokens_count_held_out_rows_and_task_items(demo, tmp_path):
    from mergemix_jax.runkit.plan import suite_tokens

    (tmp_path / "qa.jsonl").write_text('{"q": 1}\n{"q": 2}\n\n{"q": 3}\n')
    e = dataclasses.replace(demo.eval, task_dir=str(tmp_path), tasks=[], task_max_items=0, task_offset=1)
    held_out = len(demo.data.domains) * e.heldout_sequences * e.seq_len
    assert suite_tokens(dataclasses.replace(demo, eval=e)) == held_out + 2 * e.task_max_len  # 3 items, 1 skipped
    capped = dataclasses.replace(e, task_max_items=1)
    assert suite_tokens(dataclasses.replace(demo, eval=capped)) == held_out + e.task_max_len


def test_acquisition_plans_exactly_its_budget_and_its_pool(demo):
    acquisition = with_pipeline(demo, verify_strategy="acquisition", verify_budget=5, verify_stop_ratio=0.0)
    assert verification_runs(acquisition) == (5, 5)
    assert verification_runs(with_pipeline(acquisition, verify_stop_ratio=0.5)) == (1, 5)
    assert verification_runs(with_pipeline(acquisition, verify_budget=0)) == (0, 0)
    plan, rounds = rows(job_plan(acquisition, "cpu")), rows(job_plan(with_pipeline(demo, verify_strategy="rounds"), "cpu"))
    k = len(demo.data.domains)
    assert plan["verification"]["runs_worst"] == 5 and "verify_budget" in plan["verification"]["note"]
    assert plan["verify pool"]["runs_worst"] == rounds["verify pool"]["runs_worst"] + demo.pipeline.verify_pool + k
    assert rows(job_plan(with_pipeline(acquisition, verify_budget=0), "cpu"))["verify pool"]["runs_worst"] == 0
