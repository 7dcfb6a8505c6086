"""Batched merged-model evaluation vs one forward pass, vs the papers' one-at-a-time way, vs the quadratic proxy.

Prints in one run (ratios are what to compare; absolute times vary 30-60% on shared machines):
  forward, merge, batched time per mixture, efficiency = (forward + merge) / batched-per-mixture,
  peak RSS of fresh processes scoring B=16 and B=B mixtures, speedup over merge -> orbax save ->
  load -> evaluate per mixture, quadratic-proxy mixtures/s over exact and its Spearman rank
  correlation with the exact merged losses.

  python benchmarks/merge_eval.py              # ~10M params, K=4, B=256 (several minutes on 2 cores)
  python benchmarks/merge_eval.py --small      # seconds: a tiny model, B=32
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

SIZES = {
    "full": {"vocab_size": 320, "d_model": 384, "n_layers": 6, "n_heads": 6, "n_kv_heads": 6, "d_ff": 1024},
    "small": {"vocab_size": 320, "d_model": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 4, "d_ff": 128},
}


def build(size: str, num_experts: int, rows: int, seq_len: int):
    """Model config, expert stack (base + K noisy experts) and a one-domain suite of rows x seq_len tokens."""
    import jax
    import jax.numpy as jnp

    from mergemix_jax.config import ModelConfig
    from mergemix_jax.eval import make_suite
    from mergemix_jax.merge import build_expert_stack
    from mergemix_jax.model import init_params

    cfg = ModelConfig(**SIZES[size], max_seq_len=seq_len)
    base = init_params(cfg, 0)
    rng = np.random.default_rng(1)
    experts = [jax.tree.map(lambda b: b + jnp.asarray(0.01 * rng.standard_normal(b.shape), b.dtype), base) for _ in range(num_experts)]
    stack = build_expert_stack(base, experts, [f"d{k}" for k in range(num_experts)])
    tokens = np.random.default_rng(2).integers(1, cfg.vocab_size, (rows, seq_len + 1)).astype(np.int32)
    batch = {
        "inputs": tokens[:, :-1],
        "targets": tokens[:, 1:],
        "positions": np.tile(np.arange(seq_len, dtype=np.int32), (rows, 1)),
        "segment_ids": np.ones((rows, seq_len), np.int32),
        "loss_mask": np.ones((rows, seq_len), np.float32),
    }
    return cfg, stack, make_suite({"heldout": batch})


def mixtures(count: int, num_experts: int) -> np.ndarray:
    from mergemix_jax.merge import sample_dirichlet

    return sample_dirichlet(count, num_experts, seed=3)


def timed(fn, repeats: int) -> float:
    """Median seconds of `fn()` (which must block) after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def child_batched(args) -> None:
    """In a fresh process: score B mixtures batched; print seconds per mixture, peak RSS and losses."""
    from mergemix_jax.eval import make_chunk_scorer, score_mixtures

    cfg, stack, suite = build(args.size, args.k, args.rows, args.seq_len)
    weights = mixtures(args.child_b, args.k)
    scorer = make_chunk_scorer(cfg)
    score_mixtures(cfg, stack, weights[: args.per_chunk], suite, mixtures_per_device=args.per_chunk, scorer=scorer)  # compile
    start = time.perf_counter()
    scores = score_mixtures(cfg, stack, weights, suite, mixtures_per_device=args.per_chunk, scorer=scorer)
    seconds = time.perf_counter() - start
    print(json.dumps({"per_mixture": seconds / len(weights), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "loss": scores["loss/mean"].tolist()}))


def run_child(args, count: int) -> dict:
    command = [sys.executable, __file__, "--child-b", str(count), *forwarded(args)]
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def forwarded(args) -> list[str]:
    return ["--size", args.size, "--k", str(args.k), "--rows", str(args.rows), "--seq-len", str(args.seq_len), "--per-chunk", str(args.per_chunk)]


def papers_way(cfg, stack, suite, weights, workdir: str) -> float:
    """Seconds per mixture: merge, write the merged checkpoint with orbax, read it back, evaluate."""
    import jax
    import orbax.checkpoint as ocp

    from mergemix_jax.eval import evaluate
    from mergemix_jax.merge import linear_merge

    merge = jax.jit(linear_merge)
    score = jax.jit(lambda p: evaluate(cfg, p, suite))
    checkpointer = ocp.StandardCheckpointer()

    def one(i, w):
        path = os.path.join(workdir, f"merged_{i}")
        checkpointer.save(path, merge(stack, w))
        checkpointer.wait_until_finished()
        params = checkpointer.restore(path)
        return float(score(params)["loss/mean"])

    one(-1, weights[0])  # compile
    start = time.perf_counter()
    for i, w in enumerate(weights):
        one(i, w)
    return (time.perf_counter() - start) / len(weights)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_const", const="small", dest="size", default="full", help="tiny model, quick smoke run")
    parser.add_argument("--size", choices=sorted(SIZES), default=None)
    parser.add_argument("--k", type=int, default=4, help="experts")
    parser.add_argument("--b", type=int, default=0, help="mixtures (default 256, 32 with --small)")
    parser.add_argument("--rows", type=int, default=8, help="eval sequences per mixture")
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--per-chunk", type=int, default=4, help="mixtures per compiled chunk (lax.map)")
    parser.add_argument("--papers-mixtures", type=int, default=8, help="mixtures timed the papers' way")
    parser.add_argument("--child-b", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_b:
        return child_batched(args)
    b = args.b or (32 if args.size == "small" else 256)

    import jax
    from scipy.stats import spearmanr

    from mergemix_jax.eval import evaluate, fit_quadratic
    from mergemix_jax.eval.batched import score_one
    from mergemix_jax.merge import linear_merge, num_params

    cfg, stack, suite = build(args.size, args.k, args.rows, args.seq_len)
    weights = mixtures(b, args.k)
    print(f"model {num_params(stack) / 1e6:.1f}M params, K={args.k}, B={b}, {args.rows}x{args.seq_len} eval tokens per mixture, {jax.device_count()} device(s)")

    score = jax.jit(lambda p: evaluate(cfg, p, suite))
    merge = jax.jit(linear_merge)
    forward_s = timed(lambda: jax.block_until_ready(score(stack.base)), 5)
    cycle = iter(range(10**9))
    merge_s = timed(lambda: jax.block_until_ready(merge(stack, weights[next(cycle) % b])), 5)

    small, large = run_child(args, min(16, b)), run_child(args, b)
    batched_s = large["per_mixture"]
    with tempfile.TemporaryDirectory() as workdir:
        papers_s = papers_way(cfg, stack, suite, weights[: args.papers_mixtures], workdir)

    names = ["loss/mean"]
    fn = lambda w: jax.numpy.stack([score_one(cfg, stack, w, suite)[n] for n in names])  # noqa: E731
    fit = jax.jit(lambda c: fit_quadratic(fn, c))
    centre = weights.mean(axis=0)
    fit_s = timed(lambda: jax.block_until_ready(fit(centre)), 1)
    model = fit(centre)
    predict_s = timed(lambda: model.predict(weights), 3)
    proxy = model.predict(weights)[:, 0]
    exact = np.asarray(large["loss"])
    rho = spearmanr(proxy, exact).statistic

    print(f"forward (one model, all eval tokens): {forward_s * 1e3:9.1f} ms")
    print(f"merge (one mixture):                  {merge_s * 1e3:9.1f} ms")
    print(f"batched, per mixture (B={b}):        {batched_s * 1e3:9.1f} ms")
    print(f"efficiency (forward+merge)/batched:   {(forward_s + merge_s) / batched_s:9.2f}   (goal >= 0.9)")
    print(f"peak RSS B={min(16, b)}: {small['peak_rss_mb']:.0f} MB, B={b}: {large['peak_rss_mb']:.0f} MB, ratio {large['peak_rss_mb'] / small['peak_rss_mb']:.3f}   (goal <= 1.10)")
    print(f"papers' way (merge, orbax save, load, eval) per mixture: {papers_s * 1e3:.1f} ms -> speedup of batched: {papers_s / batched_s:.2f}x")
    exact_rate, proxy_rate = 1 / batched_s, b / (fit_s + predict_s)
    print(f"quadratic proxy: fit {fit_s * 1e3:.0f} ms once, {predict_s / b * 1e6:.2f} us per mixture")
    print(f"  mixtures/s incl. fit: {proxy_rate:.1f} vs exact {exact_rate:.2f} -> {proxy_rate / exact_rate:.1f}x (goal >= 100x); excl. fit {b / predict_s / exact_rate:.0f}x")
    print(f"  Spearman(proxy, exact loss) over {b} mixtures: {rho:.4f}   (goal >= 0.95); max |error| {np.abs(proxy - exact).max():.2e} (exact spread {np.ptp(exact):.2e})")


if __name__ == "__main__":
    main()
