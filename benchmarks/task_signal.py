"""Do the evaluation tasks carry signal about the mixture at this model size? (issue 13, ~5-10 min on 2 CPU cores)

For every metric of every task in a task folder (default: the embedded demo tasks), on a finished
`mergemix run` folder (its base and experts):

- merged proxy: the metric's spread (sd) over interior merged mixtures (centre, natural, Dirichlet
  draws) against its item-sampling noise (the standard error of the paired per-item difference to
  the centre, RMS over those mixtures): `proxy snr` = spread / noise. The experts (vertices) are
  shown too, and accuracy at chance is flagged.
- real training (`--real-mixtures` mixtures x `--seeds` data seeds, the reference recipe:
  pipeline.expert_steps from the base): the spread (sd) of the seed means across mixtures against the
  seed noise of a mean (pooled within-mixture sd / sqrt(seeds)): `real snr`.
- seconds per model to score each task (after compilation), which is what it costs per mixture.

A metric is worth optimising when both snr are well above 1 (below ~2 a ranking by it is mostly noise).

  python benchmarks/task_signal.py --config configs/demo.yaml --run-dir RUN [--out /tmp/task_signal] [key=value ...]
  (eval.task_max_items=N scores the first N items of each task; eval.task_truncate=true for the demo tasks at 128 tokens;
  eval.choice_as_answer=[...] scores multiple-choice tasks by the NLL of their correct choice; the real runs are reused)
  python benchmarks/task_signal.py --smoke   # a tiny demo run (base + experts) made on the spot; checks it runs

The experts are loaded by the pipeline's Engine, so a run with diluted experts (DeMix components,
pipeline.expert_general_share > 0) is merged with the dilution-corrected weights, an earlier
checkpoint (pipeline.expert_checkpoint_step) is the one merged, and eval.merge is honoured.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
from smoke import add_smoke_flag, apply_smoke, tiny_run  # benchmarks/smoke.py

from mergemix_jax.reliability.atomic import atomic_write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="the run's config (required unless --smoke)")
    parser.add_argument("--run-dir", help="a finished `mergemix run` folder (base + experts; required unless --smoke)")
    parser.add_argument("--task-dir", default=str(Path(__file__).resolve().parents[1] / "mergemix_jax" / "demo_data" / "tasks"))
    parser.add_argument("--out", default="/tmp/task_signal")
    parser.add_argument("--dirichlet", type=int, default=6, help="interior merged mixtures besides centre and natural")
    parser.add_argument("--real-mixtures", type=int, default=4, help="mixtures trained for real (centre, natural, Dirichlet draws); 0 = none")
    parser.add_argument("--seeds", type=int, default=2, help="data seeds per real mixture")
    parser.add_argument("overrides", nargs="*")
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:
        args.config, args.overrides, args.run_dir = tiny_run("experts")
        apply_smoke(args, dirichlet=2, real_mixtures=2, seeds=2, out=str(Path(args.run_dir) / "task_signal"))
    elif not (args.config and args.run_dir):
        parser.error("--config and --run-dir are required (or --smoke)")

    import jax

    from mergemix_jax.config import load_config
    from mergemix_jax.pipeline import with_overrides
    from mergemix_jax.runkit.engine import Engine, warn_unreachable
    from mergemix_jax.runkit.mixtures import natural_prior
    from mergemix_jax.runkit.references import train_and_score
    from mergemix_jax.runkit.run_dir import config_hash

    config = load_config(args.config, args.overrides)
    config = with_overrides(config, eval={"task_dir": args.task_dir, "task_max_len": config.model.max_seq_len}, train={"progress": False})
    run_dir, out = Path(args.run_dir), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    engine = Engine(config, run_dir, mesh=None)  # the run's experts as the pipeline merges them (dilution, checkpoint step)
    stack, model_cfg, suite = engine.stack, engine.model_cfg, engine.suite
    k = len(stack.names)
    natural = natural_prior(config)
    rng = np.random.default_rng(0)
    interior = np.concatenate([np.full((1, k), 1 / k), natural[None], rng.dirichlet(np.ones(k), size=args.dirichlet)])
    merged_w = np.concatenate([np.eye(k), interior])
    warn_unreachable(stack, merged_w, "task_signal's merged mixtures")

    scores = jax.jit(lambda p, t: _jit_scores(model_cfg, p, t))
    score = {name: scores for name in suite.tasks}
    merge = jax.jit(engine.merge_fn)
    seconds = {}
    merged: dict[str, dict[str, list[np.ndarray]]] = {t: {} for t in suite.tasks}  # task -> metric -> [per-mixture item arrays]
    for i, w in enumerate(merged_w):
        params = merge(stack, jax.numpy.asarray(w, jax.numpy.float32))
        for name, task in suite.tasks.items():
            start = time.perf_counter()
            values = jax.device_get(score[name](params, task))
            if i == 1:
                seconds[name] = time.perf_counter() - start
            for m, v in _finish(values, task).items():
                merged[name].setdefault(m, []).append(v)
        print(f"merged {i + 1}/{len(merged_w)} {np.round(w, 3).tolist()}", flush=True)

    real: dict[str, dict[str, np.ndarray]] = {}
    if args.real_mixtures:
        real_w = interior[: args.real_mixtures]
        table: dict[str, list[list[float]]] = {}
        suite_key = "task_signal-" + config_hash(dataclasses.asdict(config.eval))  # other task options re-score the same trained models

        def scorer(params):
            row = {}
            for name, task in suite.tasks.items():
                for m, v in _finish(jax.device_get(score[name](params, task)), task).items():
                    row[f"{m}/{name}"] = float(np.mean(v))
            return row

        for i, w in enumerate(real_w):
            for s in range(args.seeds):
                rec = train_and_score(config, run_dir, out / "real" / f"m{i}-s{s}", w, config.train.data_seed + s, scorer, suite_key)
                for m, v in rec["metrics"].items():
                    table.setdefault(m, [[] for _ in real_w])[i].append(v)
                print(f"real m{i} seed {s} done", flush=True)
        real = {m: np.asarray(v) for m, v in table.items()}  # [mixtures, seeds]

    rows = []
    for name, task in suite.tasks.items():
        chance = float(np.mean(1.0 / task.choice_mask.sum(1))) if task.kind == "choice" else 0.0
        for m, arrays in merged[name].items():
            a = np.stack(arrays)  # [mixtures, items]
            means = a.mean(1)
            inter = a[k:]
            diffs = inter[1:] - inter[0]
            se = float(np.sqrt(np.mean(diffs.var(1, ddof=1) / a.shape[1])))
            spread = float(inter.mean(1).std(ddof=1))
            row = {
                "metric": f"{m}/{name}", "items": a.shape[1], "chance": chance if m.startswith("acc") else None,
                "experts": means[:k].round(4).tolist(), "interior_mean": float(inter.mean()),
                "proxy_spread": spread, "proxy_item_se": se, "proxy_snr": spread / se if se > 0 else float("nan"),
                "seconds_per_model": seconds[name],
            }  # fmt: skip
            key = f"{m}/{name}"
            if key in real:
                r = real[key]
                within = float(np.sqrt(np.mean(r.var(1, ddof=1))))
                between = float(r.mean(1).std(ddof=1))
                row.update(real_means=r.mean(1).round(4).tolist(), real_spread=between, real_seed_sd=within, real_snr=between / (within / np.sqrt(r.shape[1])) if within > 0 else float("nan"))
            rows.append(row)
    atomic_write_json(out / "task_signal.json", {"rows": rows, "domains": list(stack.names), "merged_weights": merged_w.tolist()}, indent=1, allow_nan=True)
    print(f"\n| metric | items | chance | experts ({', '.join(stack.names)}) | proxy spread / item se = snr | real spread / seed se = snr | s/model |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        chance = "" if r["chance"] is None else f"{r['chance']:.2f}"
        real_text = f"{r['real_spread']:.4f} / {r['real_seed_sd'] / np.sqrt(args.seeds):.4f} = {r['real_snr']:.1f}" if "real_snr" in r else "–"
        experts = " ".join(f"{x:.3f}" for x in r["experts"])
        print(f"| {r['metric']} | {r['items']} | {chance} | {experts} | {r['proxy_spread']:.4f} / {r['proxy_item_se']:.4f} = {r['proxy_snr']:.1f} | {real_text} | {r['seconds_per_model']:.2f} |")
    print(f"\nwritten {out / 'task_signal.json'}")


def _jit_scores(cfg, params, task):
    """Raw per-row arrays (NLL sum, token count, greedy ok) of a task; the per-item metrics follow on the host."""
    from mergemix_jax.eval.metrics import sequence_nll

    return sequence_nll(cfg, params, task.batch, 16)


def _finish(values, task) -> dict[str, np.ndarray]:
    nll, count, ok = (np.asarray(v, np.float64) for v in values)
    if task.kind == "answer":
        return {"answer_nll": nll / np.maximum(count, 1.0), "exact": ok}
    shape = task.choice_mask.shape
    mask, answer = np.asarray(task.choice_mask), np.asarray(task.answer)
    out = {}
    for suffix, ll in (("", -nll.reshape(shape)), ("_norm", -nll.reshape(shape) / np.maximum(count.reshape(shape), 1.0))):
        masked = np.where(mask, ll, -np.inf)
        out[f"acc{suffix}"] = (np.argmax(masked, axis=1) == answer).astype(np.float64)
        top = masked.max(1, keepdims=True)
        logp = masked - top - np.log(np.exp(masked - top).sum(1, keepdims=True))
        out[f"ce{suffix}"] = -np.take_along_axis(logp, answer[:, None], axis=1)[:, 0]
    return out


if __name__ == "__main__":
    main()
