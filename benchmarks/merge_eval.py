"""Batched merged-model evaluation vs one forward pass, vs the papers' one-at-a-time way, vs the quadratic proxy.

The experts are real: a base trained on the uniform mixture of the four demo domains, then one
expert per domain trained further on that domain alone (the demo recipe at this model size;
checkpoints are cached in --workdir so reruns skip training). The eval suite is held-out text of
each domain. The printed relative task-vector norm |expert - base| / |base| says how far they moved.

Prints, all timed in ONE process back to back (ratios are what to compare; absolute times vary
30-60% on shared machines): forward, merge, batched time per mixture, efficiency = (forward +
merge) / batched-per-mixture; peak RSS of fresh processes scoring B=16 and B mixtures; the speedup
over merge -> orbax save -> load -> evaluate per mixture; the quadratic proxy's mixtures/s over
exact (per mixture, excluding the one-off fit, and amortised including fits and exact checks at B
and at 10,000 mixtures) and its Spearman rank correlation with the exact merged losses.

  python benchmarks/merge_eval.py              # ~10M params, K=4, B=256 (many minutes on 2 cores)
  python benchmarks/merge_eval.py --small      # a tiny model, B=32
  python benchmarks/merge_eval.py --smoke      # tinier still, 2 experts, B=8: checks it runs (seconds to a minute)
  python benchmarks/merge_eval.py --widths 1,2,4,8   # only: time per mixture and peak RSS per vmap width
                                                     # (eval.mixtures_per_step), each width in a fresh process
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from smoke import add_smoke_flag, apply_smoke  # benchmarks/smoke.py

ROOT = Path(__file__).resolve().parent.parent
DOMAINS = ("prose", "code", "math", "dialogue")
SIZES = {
    "full": ["model.d_model=384", "model.n_layers=6", "model.n_heads=6", "model.n_kv_heads=6", "model.d_ff=1024"],
    "small": ["model.d_model=64", "model.n_layers=2", "model.n_heads=4", "model.n_kv_heads=4", "model.d_ff=128"],
    "demo": [],  # configs/demo.yaml's model as it is (0.63M params)
}


def demo_config(args, *overrides: str):
    """configs/demo.yaml at the benchmark's model size and sequence length, plus overrides. The suite is
    held-out text only (rows / K sequences of seq_len per domain): the demo's tasks are dropped, which also
    keeps their 128-token rows from exceeding a shorter benchmark context."""
    from mergemix_jax.config import load_config

    shape = [f"model.max_seq_len={args.seq_len}", f"train.seq_len={args.seq_len}", "train.batch_size=8", "train.progress=false"]
    suite = ["eval.task_dir=", "pipeline.utility={loss/mean: 1}", "eval.tasks=[]", "eval.choice_as_answer=[]", f"eval.seq_len={args.seq_len}", f"eval.heldout_sequences={max(1, args.rows // args.k)}"]
    return load_config(ROOT / "configs" / "demo.yaml", [*SIZES[args.size], *shape, *suite, "mesh.fsdp=1", *overrides])


def train_experts(args) -> Path:
    """Train (once; cached in the workdir) the base and one expert per demo domain."""
    from mergemix_jax.train import is_finished, train

    root = Path(args.workdir).resolve() / f"{args.size}-b{args.base_steps}-e{args.expert_steps}-s{args.seq_len}"
    if not is_finished(root / "base"):
        base = [f"train.steps={args.base_steps}", f"optim.warmup_steps={min(20, args.base_steps)}", f"train.output_dir={root / 'base'}"]
        train(demo_config(args, *base, f"train.checkpoint_every={args.base_steps}"))
    for domain in DOMAINS[: args.k]:
        if not is_finished(root / domain):
            expert = [f"train.steps={args.expert_steps}", f"optim.warmup_steps={min(20, args.expert_steps)}", f"train.output_dir={root / domain}", f"train.init_from={root / 'base'}"]
            train(demo_config(args, *expert, f"train.mixture.{domain}=1", f"train.checkpoint_every={args.expert_steps}"))
    return root


def build(args):
    """(model config, expert stack, suite of held-out text: rows/K sequences of seq_len per expert's domain),
    loaded by the pipeline's Engine on one device, as every command loads them."""
    from mergemix_jax.pipeline import with_overrides
    from mergemix_jax.runkit.engine import Engine

    root = train_experts(args)
    domains = DOMAINS[: args.k]
    config = demo_config(args)
    config = with_overrides(config, data={"domains": [d for d in config.data.domains if d.name in domains]}, pipeline={"utility": {"loss/mean": 1.0}})
    engine = Engine.from_checkpoints(config, root / "base", [root / d for d in domains], mesh=None)
    return engine.model_cfg, engine.stack, engine.suite


def relative_norms(stack) -> list[float]:
    """|expert_k - base| / |base| over all parameters, per expert."""
    import jax

    base = [np.asarray(x, np.float64) for x in jax.tree.leaves(stack.base)]
    experts = [np.asarray(x, np.float64) for x in jax.tree.leaves(stack.experts)]
    base_norm = np.sqrt(sum(np.sum(b**2) for b in base))
    return [float(np.sqrt(sum(np.sum((e[k] - b) ** 2) for e, b in zip(experts, base, strict=True))) / base_norm) for k in range(stack.num_experts)]


def mixtures(count: int, num_experts: int, seed: int = 3) -> np.ndarray:
    from mergemix_jax.merge import sample_dirichlet

    return sample_dirichlet(count, num_experts, seed=seed)


def timed(fn, repeats: int) -> float:
    """Median seconds of `fn()` (which must block) after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def child_peak_memory(args) -> None:
    """In a fresh process: score B mixtures batched; print the peak RSS."""
    from mergemix_jax.eval import make_chunk_scorer, score_mixtures

    cfg, stack, suite = build(args)
    scorer = make_chunk_scorer(cfg)
    scores = score_mixtures(cfg, stack, mixtures(args.child_b, args.k), suite, mixtures_per_device=args.per_chunk, scorer=scorer)
    print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "scored": len(scores["loss/mean"])}))


def child_width(args) -> None:
    """In a fresh process: score B mixtures `--child-width` at a time per device (vmapped) in chunks of
    `--per-chunk`; print the time per mixture (after a compile call) and the peak RSS."""
    from mergemix_jax.eval import make_chunk_scorer, score_mixtures

    cfg, stack, suite = build(args)
    width, weights = args.child_width, mixtures(args.b, args.k)
    scorer = make_chunk_scorer(cfg, mixtures_per_step=width)
    score_mixtures(cfg, stack, weights[: args.per_chunk], suite, mixtures_per_device=args.per_chunk, scorer=scorer)  # compile
    start = time.perf_counter()
    score_mixtures(cfg, stack, weights, suite, mixtures_per_device=args.per_chunk, scorer=scorer)
    per_mixture = (time.perf_counter() - start) / len(weights)
    print(json.dumps({"width": width, "per_mixture_ms": per_mixture * 1e3, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def width_sweep(args, widths: list[int]) -> None:
    """Time per mixture and peak memory at each vmap width, each in a fresh process (chunk = --per-chunk)."""
    train_experts(args)  # once, before the children
    print(f"vmap width sweep: B={args.b} mixtures, {args.per_chunk} per chunk, model size {args.size}, K={args.k}, {args.rows}x{args.seq_len} tokens per mixture")
    print(f"{'width':>5} {'ms/mixture':>11} {'peak RSS MB':>12}")
    for width in widths:
        command = [sys.executable, __file__, "--child-width", str(width), "--b", str(args.b), *forwarded(args)]
        row = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        print(f"{width:>5} {row['per_mixture_ms']:>11.2f} {row['peak_rss_mb']:>12.0f}", flush=True)


def run_child(args, count: int) -> dict:
    command = [sys.executable, __file__, "--child-b", str(count), *forwarded(args)]
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def forwarded(args) -> list[str]:
    names = ("size", "k", "rows", "seq_len", "per_chunk", "workdir", "base_steps", "expert_steps")  # --smoke is applied by the parent
    return [part for name in names for part in (f"--{name.replace('_', '-')}", str(getattr(args, name)))]


def papers_way(cfg, stack, suite, weights, workdir: str) -> float:
    """Seconds per mixture: merge, write the merged checkpoint with orbax, read it back, evaluate."""
    import jax
    import orbax.checkpoint as ocp

    from mergemix_jax.eval import evaluate
    from mergemix_jax.merge import linear_merge

    merge = jax.jit(linear_merge)
    score = jax.jit(lambda p, s: evaluate(cfg, p, s))
    checkpointer = ocp.StandardCheckpointer()

    def one(i, w):
        path = os.path.join(workdir, f"merged_{i}")
        checkpointer.save(path, merge(stack, w))
        checkpointer.wait_until_finished()
        params = checkpointer.restore(path)
        return float(score(params, suite)["loss/mean"])

    one(-1, weights[0])  # compile
    start = time.perf_counter()
    for i, w in enumerate(weights):
        one(i, w)
    return (time.perf_counter() - start) / len(weights)


def metrics_fn(cfg, names, weights_K, stack, suite):
    """The proxy's target: the named metrics [M] of the model merged with weights [K]."""
    import jax.numpy as jnp

    from mergemix_jax.eval import score_one

    scores = score_one(cfg, stack, weights_K, suite)
    return jnp.stack([scores[n] for n in names])


def trust_region_row(fn, stack, suite, weights, exact, objective, args, radius: float) -> dict:
    """The guarded quadratic proxy at one trust radius on the benchmark's mixtures: rank and error vs exact, cost."""
    from scipy.stats import spearmanr

    from mergemix_jax.eval import quadratic_scores

    start = time.perf_counter()
    result = quadratic_scores(fn, weights, objective=objective, tol=args.proxy_tol, max_centres=args.proxy_centres, args=(stack, suite), radius=radius)
    seconds = time.perf_counter() - start
    predicted = result.predictions[:, objective]
    return {
        "radius": radius, "rho": float(spearmanr(predicted, exact).statistic), "max_error": float(np.abs(predicted - exact).max()),
        "exact_share": len(result.exact) / len(weights), "checks": len(result.checks), "radii": [round(r, 3) for r in result.radii],
        "rate": len(weights) / seconds,
    }  # fmt: skip


def regression_quadratic(weights, exact, fit: int) -> dict:
    """A Scheffe quadratic sum_k b_k w_k + sum_{k<l} b_kl w_k w_l fitted by least squares on the first
    `fit` exact scores; its Spearman and max error on the rest."""
    from scipy.stats import spearmanr

    k = weights.shape[1]
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    features = np.hstack([weights, np.stack([weights[:, i] * weights[:, j] for i, j in pairs], axis=1)]).astype(np.float64)
    coef, *_ = np.linalg.lstsq(features[:fit], exact[:fit], rcond=None)
    predicted = features[fit:] @ coef
    return {"rho": float(spearmanr(predicted, exact[fit:]).statistic), "max_error": float(np.abs(predicted - exact[fit:]).max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_const", const="small", dest="size", default="full", help="tiny model, quick smoke run")
    parser.add_argument("--size", choices=sorted(SIZES), default=None)
    parser.add_argument("--k", type=int, default=4, choices=range(1, 5), help="experts (one per demo domain)")
    parser.add_argument("--b", type=int, default=0, help="mixtures (default 256, 32 with --small)")
    parser.add_argument("--rows", type=int, default=8, help="eval sequences per mixture (split over the domains)")
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--per-chunk", type=int, default=4, help="mixtures per compiled chunk (lax.map)")
    parser.add_argument("--papers-mixtures", type=int, default=8, help="mixtures timed the papers' way")
    parser.add_argument("--base-steps", type=int, default=60, help="training steps of the base (demo mixture)")
    parser.add_argument("--expert-steps", type=int, default=20, help="further steps of each domain expert")
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "mergemix-bench-merge-eval"), help="cache of trained checkpoints")
    parser.add_argument("--proxy-b", type=int, default=10_000, help="second, larger mixture count for the proxy's amortised rate")
    parser.add_argument("--proxy-tol", type=float, default=0.002, help="relative loss gap that adds a proxy centre")
    parser.add_argument("--proxy-centres", type=int, default=4, help="most expansion centres of the proxy")
    parser.add_argument("--proxy-radii", type=lambda v: [float(x) for x in v.split(",")], default=[0.4, 0.2, 0.1], help="trust radii to measure, comma-separated")
    parser.add_argument("--fit-mixtures", type=int, default=32, help="exact mixtures the regression quadratic is fitted on")
    parser.add_argument("--widths", default="", help="only the vmap-width sweep, e.g. 1,2,4,8 (eval.mixtures_per_step)")
    parser.add_argument("--child-b", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--child-width", type=int, default=0, help=argparse.SUPPRESS)
    add_smoke_flag(parser)
    args = parser.parse_args()
    args.size = args.size or "full"
    apply_smoke(
        args, size="small", k=2, b=8, rows=4, seq_len=32, per_chunk=4, papers_mixtures=2, base_steps=2, expert_steps=2,
        proxy_b=32, proxy_centres=2, proxy_radii=[0.2], fit_mixtures=4,
    )  # fmt: skip
    if args.child_b:
        return child_peak_memory(args)
    b = args.b or (32 if args.size == "small" else 256)
    if args.child_width:
        args.b = b
        return child_width(args)
    if args.widths:
        args.b = b
        return width_sweep(args, [int(w) for w in args.widths.split(",")])

    import jax
    from scipy.stats import spearmanr

    from mergemix_jax.eval import evaluate, make_chunk_scorer, quadratic_scores, score_mixtures, smooth_metric_names
    from mergemix_jax.merge import linear_merge, num_params

    cfg, stack, suite = build(args)
    weights = mixtures(b, args.k)
    norms = relative_norms(stack)
    print(f"model {num_params(stack) / 1e6:.1f}M params, K={args.k}, B={b}, {args.rows}x{args.seq_len} held-out tokens per mixture, {jax.device_count()} device(s)")
    print(f"experts: base {args.base_steps} steps on the demo mixture, each expert {args.expert_steps} more on its domain; "
          f"|expert-base|/|base| = {', '.join(f'{n:.3f}' for n in norms)}")

    # Forward, merge and batched scoring in this one process, back to back; forward and merge are
    # measured before and after the batched run and averaged, so load drift affects all three alike.
    score = jax.jit(lambda p, s: evaluate(cfg, p, s))
    merge = jax.jit(linear_merge)
    scorer = make_chunk_scorer(cfg)
    rotation = iter(range(10**9))
    forward_once = lambda: jax.block_until_ready(score(stack.base, suite))  # noqa: E731
    merge_once = lambda: jax.block_until_ready(merge(stack, weights[next(rotation) % b]))  # noqa: E731
    score_mixtures(cfg, stack, weights[: args.per_chunk], suite, mixtures_per_device=args.per_chunk, scorer=scorer)  # compile
    forward_s, merge_s = [timed(forward_once, 5)], [timed(merge_once, 5)]
    start = time.perf_counter()
    exact_scores = score_mixtures(cfg, stack, weights, suite, mixtures_per_device=args.per_chunk, scorer=scorer)
    batched_s = (time.perf_counter() - start) / b
    forward_s.append(timed(forward_once, 5))
    merge_s.append(timed(merge_once, 5))
    forward_s, merge_s = float(np.mean(forward_s)), float(np.mean(merge_s))

    # Nothing hoisted: every mixture's merged model is different and its score is the one a single
    # merge + evaluate gives.
    exact = exact_scores["loss/mean"]
    assert len(np.unique(exact)) == b, "batched losses repeat: the mixtures' merged params are not all used"
    for row in (0, b // 2, b - 1):
        single = float(score(merge(stack, weights[row]), suite)["loss/mean"])
        assert abs(single - exact[row]) <= 1e-4 * abs(single), (row, single, exact[row])

    with tempfile.TemporaryDirectory() as workdir:
        papers_s = papers_way(cfg, stack, suite, weights[: args.papers_mixtures], workdir)

    # Quadratic proxy with re-centring on every smooth metric, checked on loss/mean. One warm-up call
    # compiles the fit and the exact check; the timed calls then measure fits, checks and predictions.
    names = smooth_metric_names(suite)
    fn = functools.partial(metrics_fn, cfg, tuple(names))
    objective = names.index("loss/mean")

    def proxy(w):
        return quadratic_scores(fn, w, objective=objective, tol=args.proxy_tol, max_centres=args.proxy_centres, args=(stack, suite))

    proxy(weights[:2])
    start = time.perf_counter()
    result = proxy(weights)
    proxy_b_s = time.perf_counter() - start
    centres, checks = len(result.centres), len(result.checks)
    many = mixtures(args.proxy_b, args.k, seed=4)
    start = time.perf_counter()
    result_many = proxy(many)
    proxy_many_s = time.perf_counter() - start
    predicted = result.predictions[:, objective]
    rho = spearmanr(predicted, exact).statistic

    from mergemix_jax.eval import fit_quadratic  # per-mixture cost: the predict step of one fitted expansion

    fitted = jax.jit(lambda c, s, e: fit_quadratic(lambda w: fn(w, s, e), c))(weights.mean(0), stack, suite)
    fitted.predict(many[:8])
    start = time.perf_counter()
    fitted.predict(many)
    predict_per_mixture = (time.perf_counter() - start) / len(many)
    guarded = [trust_region_row(fn, stack, suite, weights, exact, objective, args, radius) for radius in args.proxy_radii]
    regression = regression_quadratic(weights, exact, args.fit_mixtures)

    exact_rate = 1 / batched_s
    print(f"forward (one model, all eval tokens): {forward_s * 1e3:9.1f} ms")
    print(f"merge (one mixture):                  {merge_s * 1e3:9.1f} ms")
    print(f"batched, per mixture (B={b}):        {batched_s * 1e3:9.1f} ms")
    print(f"efficiency (forward+merge)/batched:   {(forward_s + merge_s) / batched_s:9.2f}   (goal >= 0.9; all three timed in this process)")
    small, large = run_child(args, min(16, b)), run_child(args, b)
    print(f"peak RSS B={min(16, b)}: {small['peak_rss_mb']:.0f} MB, B={b}: {large['peak_rss_mb']:.0f} MB, ratio {large['peak_rss_mb'] / small['peak_rss_mb']:.3f}   (goal <= 1.10; fresh processes)")
    print(f"papers' way (merge, orbax save, load, eval) per mixture: {papers_s * 1e3:.1f} ms -> speedup of batched: {papers_s / batched_s:.2f}x")
    print(f"quadratic proxy ({len(names)} smooth metrics, re-centring tol {args.proxy_tol}, <= {args.proxy_centres} centres):")
    print(f"  per mixture, excluding the one-off fit: {predict_per_mixture * 1e6:.2f} us -> {1 / predict_per_mixture:,.0f} mixtures/s "
          f"vs exact {exact_rate:.2f}/s = {1 / predict_per_mixture / exact_rate:,.0f}x   (goal >= 100x)")
    for count, seconds, res in ((b, proxy_b_s, result), (args.proxy_b, proxy_many_s, result_many)):
        rate = count / seconds
        print(f"  amortised at B={count:,} incl. {len(res.centres)} fit(s) + {len(res.checks)} exact check(s): {seconds:.2f} s -> "
              f"{rate:,.1f} mixtures/s = {rate / exact_rate:,.1f}x exact (exact at B={count:,}: {count * batched_s:.0f} s{'' if count == b else ', extrapolated'})")
    print(f"  Spearman(proxy, exact loss/mean) over {b} mixtures: {rho:.4f}   (goal >= 0.95); max |error| {np.abs(predicted - exact).max():.2e} "
          f"(exact spread {np.ptp(exact):.2e}); {centres} centre(s), {checks} check(s)")
    print(f"  trust region (exact fallback outside radius r of every centre; L2 in weight space), same {b} mixtures:")
    for row in guarded:
        print(f"    r={row['radius']:<5} Spearman {row['rho']:7.4f}, max |error| {row['max_error']:.2e}, {row['exact_share']:6.1%} scored exactly, "
              f"{row['checks']} check(s), radii {row['radii']}: {row['rate']:.2f} mixtures/s = {row['rate'] * batched_s:.2f}x exact")
    print(f"  regression quadratic (Scheffe, fitted on {args.fit_mixtures} exact mixtures, ranked on the other {b - args.fit_mixtures}): "
          f"Spearman {regression['rho']:.4f}, max |error| {regression['max_error']:.2e} (exact proxy's Spearman on the same rows {spearmanr(predicted[args.fit_mixtures:], exact[args.fit_mixtures:]).statistic:.4f})")


if __name__ == "__main__":
    main()
