"""Does the merged proxy rank data mixtures like real mixture training? (issue 6; ~30-90 min on 2 CPU cores)

Runs `mergemix validate` on the demo corpus: >= 16 reference mixtures (the 4 vertices, the centre,
Dirichlet(1) draws), each trained from the base with the same steps as one expert, scored on the
same held-out tokens as their merged proxies. Prints, for the utility (raw and per-domain
normalised) and per domain, on all / interior / top-quartile mixtures: Spearman and Kendall of the
proxy, the noise ceiling (references re-trained with another data seed), the loss-interpolation and
output-space baselines; then the searched mixture's rank, regret, baselines and compute, and the
issue's goals as PASS/MISS. The table is printed twice: first without the noise ceiling (as soon
as the first references exist), then complete.

  python benchmarks/fidelity.py --config configs/demo.yaml [key=value ...]
  # the evaluation-tokens lever: re-score the same trained models on 4x the held-out tokens
  python benchmarks/fidelity.py --config configs/demo.yaml --run-dir runs/demo-<hash> eval.heldout_sequences=64
  python benchmarks/fidelity.py --smoke   # the whole validation on a tiny demo run (a minute or two): checks it runs
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from smoke import DEMO_CONFIG, add_smoke_flag, tiny_run_overrides  # benchmarks/smoke.py


def goals(result: dict) -> list[tuple[str, bool | None, str]]:
    """The issue's targets as (goal, met or None when not measured, measured value)."""
    rows = {(r["metric"], r["subset"]): r for r in result["table"]}
    s = result["summary"]
    util_all, util_int = rows[("utility", "all")], rows[("utility", "interior")]
    out = [("Spearman >= 0.9 on all mixtures (utility)", util_all["spearman"] >= 0.9, f"{util_all['spearman']:.3f}")]
    ceiling = util_int["ceiling_spearman"]
    out.append(
        (
            "interior Spearman within 0.05 of the noise ceiling",
            None if not np.isfinite(ceiling) else util_int["spearman"] >= ceiling - 0.05,
            f"{util_int['spearman']:.3f} vs ceiling {ceiling:.3f}",
        )
    )
    beats = util_all["spearman"] > max(util_all["loss_interp_spearman"], util_all["output_space_spearman"])
    out.append(("merging beats both baselines (utility, all)", bool(beats), f"{util_all['spearman']:.3f} vs interp {util_all['loss_interp_spearman']:.3f}, output-space {util_all['output_space_spearman']:.3f}"))
    if "searched percentile (share of references it beats)" in s:
        pct = s["searched percentile (share of references it beats)"]
        out.append(("searched mixture in the top 10% of references", pct >= 0.9, f"beats {pct:.0%} ({s['searched rank among references']})"))
        better = s["searched reference utility"] > max(s["uniform (centre) reference utility"], s.get("natural reference utility", -np.inf))
        out.append(("searched better than uniform and natural", bool(better), f"{s['searched reference utility']:.4f} vs uniform {s['uniform (centre) reference utility']:.4f}, natural {s.get('natural reference utility', float('nan')):.4f}"))
    ratio = s["proxy train steps / reference train steps"]
    out.append(("proxy compute <= 1/4 of the references'", ratio <= 0.25 + 1e-9, f"{ratio:.3f} (train steps)"))
    return out


def print_result(result: dict, title: str) -> None:
    from mergemix_jax.validate.stats import format_table

    print(f"\n=== {title} ===", flush=True)
    print(format_table(result["table"]))
    for key, value in result["summary"].items():
        print(f"- {key}: {value:.4f}" if isinstance(value, float) else f"- {key}: {value}")
    for goal, met, value in goals(result):
        print(f"[{'PASS' if met else 'MISS' if met is not None else 'n/a '}] {goal}: {value}")
    print(f"validation: {result['dir']}/validation.json\nreport: {result['report']}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--run-dir", default="", help="validate this finished run folder (e.g. re-score it with eval.heldout_sequences=64)")
    parser.add_argument("overrides", nargs="*")
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:
        args.config = str(DEMO_CONFIG)
        args.overrides = [*tiny_run_overrides(tempfile.mkdtemp(prefix="mergemix-smoke-")), *args.overrides]

    from mergemix_jax.cli.run import enable_compilation_cache
    from mergemix_jax.config import load_config
    from mergemix_jax.pipeline import with_overrides
    from mergemix_jax.validate.run import run_validation

    config = with_overrides(load_config(args.config, args.overrides), train={"progress": False})
    enable_compilation_cache(config.pipeline.output_root)
    command = "python benchmarks/fidelity.py --config " + args.config + "".join(f" {o}" for o in args.overrides)
    run_dir = Path(args.run_dir) if args.run_dir else None
    start = time.perf_counter()
    if config.validate.noise_ceiling and run_dir is None:
        partial = run_validation(with_overrides(config, validate={"noise_ceiling": False}), args.config, command=command)
        print_result(partial, f"without the noise ceiling ({time.perf_counter() - start:.0f} s)")
    result = run_validation(config, args.config, command=command, run_dir=run_dir)
    print_result(result, f"complete ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
