"""No closure constants: the gradient step takes the expert stack and the suite as jit arguments, so
its lowered program does not grow with the parameter count (closed-over arrays would be baked into
the program text as dense constants, K+1 models of them)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mergemix_jax.config import ModelConfig
from mergemix_jax.config.schema import GradientSearchConfig
from mergemix_jax.data import batch_from_sequences
from mergemix_jax.eval import make_suite
from mergemix_jax.merge import build_expert_stack, num_params
from mergemix_jax.model import init_params
from mergemix_jax.search.gradient import make_chunk
from mergemix_jax.search.merged import merged_problem

K = 3


def _lowered_step_text(d_model: int) -> tuple[int, int]:
    """(parameters of one model, characters of the lowered gradient chunk) for a model of width d_model."""
    cfg = ModelConfig(vocab_size=64, d_model=d_model, n_layers=1, n_heads=4, n_kv_heads=2, d_ff=2 * d_model, max_seq_len=32)
    base = init_params(cfg, seed=0)
    rng = np.random.default_rng(0)
    experts = [jax.tree.map(lambda b: b + 0.01 * rng.standard_normal(b.shape).astype(np.float32), base) for _ in range(K)]
    stack = build_expert_stack(base, experts, ["a", "b", "c"])
    suite = make_suite({d: batch_from_sequences(rng.integers(1, 64, (2, 9))) for d in ("a", "b", "c")})
    problem = merged_problem(cfg, stack, suite, {"loss/mean": 1.0})
    options = GradientSearchConfig(steps=2, chunk=2, restarts=2)
    chunk_fn, tx, data = make_chunk(problem, options)
    params = jnp.log(jnp.full((2, K), 1.0 / K))
    text = chunk_fn.lower(params, jax.vmap(tx.init)(params), data).as_text()
    return num_params(stack), len(text)


@pytest.mark.slow  # lowers gradient steps at several model sizes: large compiles
def test_lowered_gradient_step_does_not_grow_with_the_parameter_count():
    small_params, small_text = _lowered_step_text(16)
    large_params, large_text = _lowered_step_text(64)
    assert large_params > 8 * small_params
    # only shape annotations differ; a baked-in stack would add ~(K+1) * 4 bytes * 2 chars per parameter
    assert large_text < 1.1 * small_text, (small_text, large_text)
    assert large_text - small_text < (K + 1) * (large_params - small_params)
