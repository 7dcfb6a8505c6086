"""Rebuild the demo's base model, mergemix_jax/demo_data/base (configs/demo.yaml `pipeline.base_dir`).

MergeMix and DeMix start from an existing base model; the demo ships one so that `mergemix run`
spends its time on what the product does (experts, merging, search, verification), like a user who
brings their own base. It is exactly the base `mergemix run` trains when `pipeline.base_dir` is
empty: `pipeline.base_steps` steps on the uniform mixture of the demo's training split, from
scratch, with the config's optimizer and `train.seed` (runkit/training.py `base_config`). Only the
final parameters are kept (no optimizer state), with the checkpoint metadata a trained base records:
its training mixture, the held-out split signature of every domain (checked whenever a base is
reused: runkit/training.py `check_base_split`) and its parameter fingerprint (checked against the
experts' lineage).

    python3 mergemix_jax/demo_data/build_demo_base.py [--config configs/demo.yaml] [--out mergemix_jax/demo_data/base]

About 80 s on 2 CPU cores; a rerun on the same machine and library versions writes the same
parameters (tests/test_demo_base.py checks that the shipped base matches configs/demo.yaml).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def build(config_path: Path, out: Path) -> Path:
    """Train the pipeline's base recipe of `config_path` and write its final parameters to `out`."""
    from mergemix_jax.config import load_config
    from mergemix_jax.reliability.atomic import atomic_write_json
    from mergemix_jax.reliability.lineage import newest_metadata
    from mergemix_jax.runkit import training
    from mergemix_jax.train import load_params
    from mergemix_jax.train.checkpoint import save_params

    config = load_config(config_path, ["pipeline.base_dir="])
    with tempfile.TemporaryDirectory() as tmp:
        cfg = training.base_config(config, Path(tmp))
        training.train_unless_finished(cfg)
        trained = Path(cfg.train.output_dir)
        params, model_cfg = load_params(trained, config.model)
        meta = newest_metadata(trained)
        done = json.loads((trained / "done.json").read_text())
        staging = out.with_name(out.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        recipe = {"steps": cfg.train.steps, "seed": cfg.train.seed, "batch_size": cfg.train.batch_size, "seq_len": cfg.train.seq_len, "optim": vars(cfg.optim)}
        metadata = {"mixture": meta["mixture"], "data_split": meta["data_split"], "init_from": "", "built_by": "mergemix_jax/demo_data/build_demo_base.py", "recipe": recipe}
        save_params(staging, params, model_cfg, step=cfg.train.steps, metadata=metadata)
        for marker in staging.rglob("commit_success.txt"):  # orbax writes the absolute path of this machine there
            marker.write_text("Checkpoint commit was successful\n")
        atomic_write_json(staging / "done.json", {"steps": done["steps"], "final_loss": done["final_loss"], "built_by": metadata["built_by"]})
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "demo.yaml")
    parser.add_argument("--out", type=Path, default=REPO / "mergemix_jax" / "demo_data" / "base")
    args = parser.parse_args()
    print(f"demo base: {build(args.config, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
