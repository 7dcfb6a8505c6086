"""The compiled scale plan of the real-scale configs: lower and compile (never run) the train step and
the merged-evaluation chunk on a fake CPU mesh of the target's device count and print per-device
memory, FLOPs per step and the HBM headroom (the work is in mergemix_jax.runkit.compiled.py).

  python benchmarks/scale_plan.py                       # both real configs (a few minutes)
  python benchmarks/scale_plan.py --config configs/llama_1b_v5p.yaml --accelerator v5p-64
  python benchmarks/scale_plan.py --programs train,eval,eval_sharded   # both evaluation modes

By default each config compiles the programs its run executes: the train step and the evaluation
chunk of its `eval.shard_experts` mode.
"""

from __future__ import annotations

import os
import sys

MAX_DEVICES = 64
if "jax" not in sys.modules:  # fake CPU devices must be requested before jax starts
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={MAX_DEVICES}").strip()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mergemix_jax.config import load_config  # noqa: E402
from mergemix_jax.parallel.estimates import parse_accelerator_type  # noqa: E402
from mergemix_jax.runkit.compiled import default_programs, format_rows, plan  # noqa: E402 (plan: tests)

TARGETS = (("configs/llama_1b_v5p.yaml", "v5p-64"), ("configs/llama_8b_v6e.yaml", "v6e-64"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="", help="one config (default: both real-scale configs)")
    parser.add_argument("--accelerator", default="", help="Cloud TPU type of --config, e.g. v5p-64")
    parser.add_argument("--programs", default="", help="comma list of train, eval, eval_sharded (default: the train step and the config's evaluation mode)")
    args = parser.parse_args(argv)
    targets = [(args.config, args.accelerator)] if args.config else [(str(ROOT / c), a) for c, a in TARGETS]
    for path, accelerator in targets:
        acc, chips = parse_accelerator_type(accelerator)
        config = load_config(path)
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, tokenizer=""))
        programs = tuple(args.programs.split(",")) if args.programs else default_programs(config)
        rows = plan(config, chips, acc.hbm_bytes, programs)
        print(format_rows(f"{Path(path).name} on {accelerator} ({chips} devices)", rows, acc.hbm_bytes), flush=True)
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
