"""Does a trust region make the searches' picks train better? (issue 11 item 3; minutes on 2 CPU cores)

On a finished `mergemix run` + `mergemix validate` folder: runs gradient search and CMA-ES on the
merged proxy with the trust-region floor w >= floor * prior (mergemix_jax.search.trust) for each
floor given, trains every pick for real with the verification recipe (the references' steps and
LR from the base, `pipeline.verify_seeds` data seeds, cached under verify/runs/), and prints each
pick's real utility (as mean held-out loss, lower is better), its rank among the validation's
reference mixtures and its regret against the best reference.

  python benchmarks/trust_region.py --config configs/demo.yaml --floors 0 0.25 0.5 [--run-dir RUN] [key=value ...]
  python benchmarks/trust_region.py --smoke   # a tiny demo run up to the probe, gradient at floors 0 and 0.5: checks it runs
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from smoke import add_smoke_flag, apply_smoke, tiny_run  # benchmarks/smoke.py

from mergemix_jax.reliability.atomic import atomic_write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="the run's config (required unless --smoke)")
    parser.add_argument("--floors", type=float, nargs="+", default=[0.0, 0.25, 0.5])
    parser.add_argument("--methods", nargs="+", default=["gradient", "cmaes"])
    parser.add_argument("--run-dir", default="", help="a finished run folder (default: the config's own)")
    parser.add_argument("overrides", nargs="*")
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:
        config_path, overrides, run_dir = tiny_run("probe")
        apply_smoke(args, config=config_path, overrides=overrides, run_dir=str(run_dir), floors=[0.0, 0.5], methods=["gradient"])
    elif not args.config:
        parser.error("--config is required (or --smoke)")

    from mergemix_jax.config import load_config
    from mergemix_jax.pipeline.assembly import search_problem
    from mergemix_jax.pipeline.stages import Engine
    from mergemix_jax.runkit.references import make_model_scorer
    from mergemix_jax.runkit.run_dir import run_dir_for
    from mergemix_jax.search.registry import run_search
    from mergemix_jax.search.trust import floor_region, lift_result
    from mergemix_jax.verify.candidates import Candidate
    from mergemix_jax.verify.stage import train_candidate

    config = load_config(args.config, args.overrides)
    run_dir = Path(args.run_dir) if args.run_dir else run_dir_for(config, args.config)
    engine = Engine(config, run_dir)
    validation = sorted(run_dir.glob("validate-*/validation.json"))
    refs = None
    if validation:
        v = json.loads(validation[-1].read_text())
        refs = np.asarray(v["reference"]["loss/mean"])
    score = make_model_scorer(config, engine.suite)
    problem, _ = search_problem(engine)  # the pipeline's own problem: caps, probe table, utility
    rows = []
    for floor in args.floors:
        sub, to_weights = floor_region(problem, floor)
        for method in args.methods:
            result = lift_result(run_search(sub, method, config.search), to_weights)
            verified = train_candidate(engine, Candidate(f"{method}@{floor}", result.weights, [method]), 0, score)
            loss = [m["loss/mean"] for m in verified.real_metrics]
            row = {"floor": floor, "method": method, "weights": np.round(result.weights, 3).tolist(), "real_loss": float(np.mean(loss)), "seeds": loss}
            if refs is not None:
                row["rank"] = f"{1 + int(np.sum(refs < row['real_loss']))} of {len(refs) + 1}"
                row["regret"] = float(row["real_loss"] - refs.min())
            rows.append(row)
            print(json.dumps(row), flush=True)
    out = Path(run_dir) / "trust_region.json"
    atomic_write_json(out, rows, allow_nan=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
