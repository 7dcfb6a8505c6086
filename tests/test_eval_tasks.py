"""Task tokenisation and metrics: masks cover exactly the continuation, scores match a direct computation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mergemix_jax.config import ModelConfig
from mergemix_jax.data import batch_from_sequences
from mergemix_jax.eval import evaluate, make_suite, metric_names, tokenize_task
from mergemix_jax.eval.metrics import choice_metrics
from mergemix_jax.model import forward, init_params
from tests.helpers import TINY_MODEL

CFG = ModelConfig(**TINY_MODEL)


class TinyByteTokenizer:
    """Bytes folded into a 64-token vocabulary: 0 = pad, 1 = bos, 3..63 = bytes mod 61."""

    pad_id, bos_id = 0, 1

    def encode(self, text: str) -> list[int]:
        return [3 + b % 61 for b in text.encode()]


TOK = TinyByteTokenizer()
MC = [
    {"id": "q1", "context": "2+2=", "choices": ["4", "five", "22"], "answer": 0},
    {"id": "q2", "context": "The sky is", "choices": [" blue", " green"], "answer": 1},
]
QA = [{"id": "a1", "context": "Capital of France:", "answer": " Paris"}, {"id": "a2", "context": "1+1=", "answer": "2"}]


def test_rows_mask_exactly_the_continuation_tokens():
    task = tokenize_task(MC, TOK, "mc")
    batch = task.batch
    assert batch["inputs"].shape[0] == 2 * 3 and task.choice_mask.tolist() == [[True, True, True], [True, True, False]]
    for row, (item, choice) in enumerate([(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]):
        context, cont = [TOK.bos_id, *TOK.encode(MC[item]["context"])], TOK.encode(MC[item]["choices"][choice])
        masked = batch["targets"][row][batch["loss_mask"][row] == 1]
        assert masked.tolist() == cont
        span = len(context) + len(cont) - 1
        assert batch["inputs"][row, :span].tolist() == (context + cont)[:-1]
        assert (batch["segment_ids"][row, :span] == 1).all() and (batch["segment_ids"][row, span:] == 0).all()
    assert batch["loss_mask"][5].sum() == 0  # padding choice of the two-choice item


def test_max_len_drops_oldest_context_and_rejects_oversized_answers():
    task = tokenize_task(QA, TOK, "qa", max_len=8)
    assert task.batch["inputs"].shape[1] == 8
    assert task.batch["targets"][0][task.batch["loss_mask"][0] == 1].tolist() == TOK.encode(" Paris")
    with pytest.raises(ValueError, match="continuation of 6 tokens exceeds max_len=4"):
        tokenize_task(QA, TOK, "qa", max_len=4)


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([{"id": "x", "context": "c", "choices": ["a", "b"], "answer": 2}], "item 'x'.*'answer' must be an int index into its 2 choices"),
        ([{"id": "x", "context": "c", "choices": ["a"], "answer": 0}], "at least two non-empty strings"),
        ([{"id": "x", "context": 3, "answer": "a"}], "'context' must be a string"),
        ([MC[0], QA[0]], "mixes multiple-choice items"),
        ([], "has no items"),
    ],
)
def test_bad_items_are_clear_errors(items, message):
    with pytest.raises(ValueError, match=message):
        tokenize_task(items, TOK, "t")


def test_suite_scores_equal_a_direct_computation():
    params = init_params(CFG, 0)
    mc, qa = tokenize_task(MC, TOK, "mc"), tokenize_task(QA, TOK, "qa")
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 64, (3, 11)).astype(np.int32)
    heldout = batch_from_sequences(tokens, loss_mask_BxL=rng.random((3, 10)) > 0.3)
    suite = make_suite({"web": heldout}, {"mc": mc, "qa": qa}, micro_batch=2)
    scores = jax.jit(lambda p, s: evaluate(CFG, p, s))(params, suite)
    assert list(scores) == sorted(metric_names(suite))

    padded_logits = jax.jit(lambda ids: forward(CFG, params, ids))  # causal: right padding changes nothing before it

    def continuation_ll(context: str, cont: str) -> tuple[float, int, bool]:
        ids = [TOK.bos_id, *TOK.encode(context), *TOK.encode(cont)]
        logp = jax.nn.log_softmax(padded_logits(jnp.array([ids[:-1] + [0] * (32 - len(ids))]))[0])
        n = len(TOK.encode(cont))
        picks = [float(logp[len(ids) - 1 - n + i, ids[len(ids) - n + i]]) for i in range(n)]
        greedy = all(int(jnp.argmax(logp[len(ids) - 1 - n + i])) == ids[len(ids) - n + i] for i in range(n))
        return sum(picks), n, greedy

    rows = [padded_logits(jnp.array([list(row) + [0] * (32 - len(row))]))[0, : len(row)] for row in tokens[:, :-1]]
    logp = jax.nn.log_softmax(jnp.stack(rows))
    nll = -np.take_along_axis(np.asarray(logp), tokens[:, 1:, None], axis=-1)[..., 0]
    np.testing.assert_allclose(scores["loss/web"], (nll * heldout["loss_mask"]).sum() / heldout["loss_mask"].sum(), rtol=1e-5)
    lls = [[continuation_ll(it["context"], c) for c in it["choices"]] for it in MC]
    acc = np.mean([int(np.argmax([x[0] for x in row])) == it["answer"] for row, it in zip(lls, MC, strict=True)])
    acc_norm = np.mean([int(np.argmax([x[0] / x[1] for x in row])) == it["answer"] for row, it in zip(lls, MC, strict=True)])
    ce = np.mean([-(row[it["answer"]][0] - np.logaddexp.reduce([x[0] for x in row])) for row, it in zip(lls, MC, strict=True)])
    assert float(scores["acc/mc"]) == acc and float(scores["acc_norm/mc"]) == acc_norm
    np.testing.assert_allclose(scores["ce/mc"], ce, rtol=1e-5)
    answers = [continuation_ll(it["context"], it["answer"]) for it in QA]
    np.testing.assert_allclose(scores["answer_nll/qa"], np.mean([-ll / n for ll, n, _ in answers]), rtol=1e-5)
    assert float(scores["exact/qa"]) == np.mean([g for _, _, g in answers])


def test_choice_metrics_accuracy_and_smooth_form():
    ll = jnp.array([[-1.0, -2.0, -9.0], [-3.0, -1.0, -1.5]])
    lengths = jnp.array([[1.0, 1.0, 1.0], [1.0, 1.0, 4.0]])
    mask = jnp.array([[True, True, False], [True, True, True]])
    m = choice_metrics(ll, lengths, mask, jnp.array([0, 2]))
    assert float(m["acc"]) == 0.5 and float(m["acc_norm"]) == 1.0  # item 1: -1.5/4 beats -1/1
    expected_ce = np.mean([np.log1p(np.exp(-1.0)), -(-1.5 - np.logaddexp.reduce([-3.0, -1.0, -1.5]))])
    np.testing.assert_allclose(m["ce"], expected_ce, rtol=1e-6)
    grad = jax.grad(lambda x: choice_metrics(x, lengths, mask, jnp.array([0, 2]))["ce"])(ll)
    assert float(grad[0, 2]) == 0.0 and float(grad[0, 0]) < 0 and float(grad[1, 2]) < 0
