"""The output-space ensemble proxy vs exact merged evaluation: mixtures/s and rank agreement.

Experts are real (benchmarks/merge_eval.py trains and caches them: a base on the uniform demo mixture,
one expert per domain on top). In ONE process, back to back: exact merged evaluation of B mixtures
(the compiled chunk scorer, compile excluded), then the ensemble on the same mixtures from scratch
(the K forward passes, uncached, plus scoring), then the ensemble's scoring alone at N mixtures with
the numpy (float64) and the jitted jax (float32) backends; and Spearman between the ensemble's and the
exact merge's utility (= -loss/mean) and per-domain losses over the same B mixtures.

  python benchmarks/ensemble_eval.py           # demo-size model (configs/demo.yaml), K=4, B=128
  python benchmarks/ensemble_eval.py --smoke   # a tiny model, 2 experts, B=8: checks it runs
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import merge_eval  # benchmarks/merge_eval.py: the trained experts and the suite
import numpy as np
from smoke import add_smoke_flag, apply_smoke  # benchmarks/smoke.py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(merge_eval.SIZES), default="demo")
    parser.add_argument("--k", type=int, default=4, choices=range(2, 5))
    parser.add_argument("--b", type=int, default=128, help="mixtures scored both ways")
    parser.add_argument("--n", type=int, default=100_000, help="mixtures for the ensemble's scoring rate")
    parser.add_argument("--rows", type=int, default=64, help="held-out sequences, split over the domains")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--per-chunk", type=int, default=4, help="exact: mixtures per compiled chunk")
    parser.add_argument("--base-steps", type=int, default=300)
    parser.add_argument("--expert-steps", type=int, default=50)
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "mergemix-bench-merge-eval"))
    add_smoke_flag(parser)
    args = apply_smoke(parser.parse_args(), size="small", k=2, b=8, n=2000, rows=4, seq_len=32, base_steps=2, expert_steps=2)

    import jax
    from scipy.stats import spearmanr

    from mergemix_jax.eval import make_chunk_scorer, score_mixtures
    from mergemix_jax.eval.ensemble import expert_logprobs
    from mergemix_jax.merge import num_params

    cfg, stack, suite = merge_eval.build(args)
    weights = merge_eval.mixtures(args.b, args.k)
    tokens = sum(int(np.asarray(b["loss_mask"]).sum()) for b in suite.heldout.values())
    print(f"model {num_params(stack) / 1e6:.2f}M params, K={args.k}, B={args.b}, {tokens} held-out tokens, {jax.device_count()} device(s)")

    scorer = make_chunk_scorer(cfg)
    score_mixtures(cfg, stack, weights[: args.per_chunk], suite, mixtures_per_device=args.per_chunk, scorer=scorer)  # compile
    start = time.perf_counter()
    exact = score_mixtures(cfg, stack, weights, suite, mixtures_per_device=args.per_chunk, scorer=scorer)
    exact_s = time.perf_counter() - start

    start = time.perf_counter()
    cached = expert_logprobs(cfg, stack, suite)  # K forward passes (compile included: a one-off either way)
    forward_s = time.perf_counter() - start
    start = time.perf_counter()
    approx = cached.losses(weights)
    ensemble_b_s = time.perf_counter() - start

    many = merge_eval.mixtures(args.n, args.k, seed=4)
    rates = {}
    for backend in ("numpy", "jax"):
        cached.losses(many[:1000], backend=backend)  # warm-up / compile
        start = time.perf_counter()
        cached.losses(many, backend=backend)
        rates[backend] = args.n / (time.perf_counter() - start)

    exact_rate = args.b / exact_s
    print(f"exact merged evaluation: {exact_s:.1f} s for {args.b} mixtures -> {exact_rate:.2f} mixtures/s")
    print(f"ensemble: K={args.k} forward passes {forward_s:.2f} s (once; cached on disk afterwards), then {args.b} mixtures in {ensemble_b_s * 1e3:.1f} ms")
    print(f"  incl. the forward passes at B={args.b}: {args.b / (forward_s + ensemble_b_s):,.1f} mixtures/s = {args.b / (forward_s + ensemble_b_s) / exact_rate:,.1f}x exact")
    for backend, rate in rates.items():
        print(f"  scoring only, {backend} at N={args.n:,}: {rate:,.0f} mixtures/s = {rate / exact_rate:,.0f}x exact")
    rho = spearmanr(-approx["loss/mean"], -exact["loss/mean"]).statistic
    per_domain = ", ".join(f"{n.split('/')[1]} {spearmanr(approx[n], exact[n]).statistic:.3f}" for n in exact if n.startswith("loss/") and n != "loss/mean")
    print(f"Spearman(ensemble, exact merged) over the same {args.b} mixtures: utility {rho:.3f}; per domain {per_domain}")
    print(f"  mean loss: ensemble {approx['loss/mean'].mean():.3f} (spread {np.ptp(approx['loss/mean']):.3f}), exact {exact['loss/mean'].mean():.3f} (spread {np.ptp(exact['loss/mean']):.3f})")


if __name__ == "__main__":
    main()
