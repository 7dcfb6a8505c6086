"""grain pipelines: mixture frequencies, exact resume, packing masks, held-out batches, sharding."""

from __future__ import annotations

import json

import grain
import numpy as np
import pytest

from mergemix_jax.config.schema import DataConfig, DomainConfig
from mergemix_jax.data import (
    BATCH_KEYS,
    ByteTokenizer,
    check_token_budget,
    heldout_batches,
    index_all,
    iter_documents,
    make_sequence_dataset,
    make_train_dataset,
    token_counts,
)
from mergemix_jax.model.attention import document_mask

LETTERS = "abcdefghijklmnopqrstuvwxyz"
TOK = ByteTokenizer()


def letter_domains(tmp_path, n_domains=4, docs_per_domain=(40, 40, 40, 6), shuffle_buffer=64) -> DataConfig:
    """Domain d holds documents made of one repeated letter each, unique per (domain, doc), of
    varied lengths (some longer than a sequence), so a token says which document it came from."""
    rng = np.random.default_rng(0)
    domains = []
    for d in range(n_domains):
        path = tmp_path / f"dom{d}.jsonl"
        with open(path, "w") as f:
            for i in range(docs_per_domain[d]):
                letter = LETTERS[(d * 7 + i) % 26]
                f.write(json.dumps({"text": f"{d}{i:03d}" + letter * int(rng.integers(1, 90))}) + "\n")
        domains.append(DomainConfig(f"dom{d}", [str(path)], "jsonl"))
    return DataConfig(domains=domains, heldout_fraction=0.2, split_seed=1, shuffle_buffer=shuffle_buffer)


def doc_of_row(inputs_L: np.ndarray, segment_ids_L: np.ndarray) -> list[str]:
    """The text of each segment of one packed row."""
    return [TOK.decode(inputs_L[segment_ids_L == s].tolist()) for s in np.unique(segment_ids_L[segment_ids_L > 0])]


def doc_ids_of_batch(batch: dict[str, np.ndarray]) -> set[str]:
    """Ids (the 4-digit prefix) of the documents whose start is in `batch`."""
    texts = [t for b in range(len(batch["inputs"])) for t in doc_of_row(batch["inputs"][b], batch["segment_ids"][b])]
    return {t[:4] for t in texts if len(t) >= 5 and t[:4].isdigit()}  # a whole prefix (rows may cut it)


def doc_ids(texts) -> set[str]:
    return {t[:4] for t in texts}


@pytest.mark.slow  # a long data stream
def test_mixture_frequencies_match_weights_over_a_long_stream(tmp_path):
    cfg = letter_domains(tmp_path)
    weights = {"dom0": 0.5, "dom1": 0.3, "dom2": 0.0, "dom3": 0.2}  # dom3 has few documents: must repeat
    stream = make_sequence_dataset(cfg, weights, seq_len=16, seed=0)
    n = 3000
    domains = np.array([int(s["domain"]) for s, _ in zip(stream, range(n), strict=False)])
    assert len(domains) == n
    for d, w in enumerate(weights.values()):
        observed = np.mean(domains == d)
        assert abs(observed - w) <= 4 * np.sqrt(w * (1 - w) / n) + 1e-9, (d, observed, w)
    dom3_tokens = token_counts(cfg)["dom3"]["train"]
    assert np.sum(domains == 3) * 16 > 3 * dom3_tokens  # a small domain repeats instead of ending the mix


def test_empty_mixture_is_uniform(tmp_path):
    cfg = letter_domains(tmp_path, shuffle_buffer=0)
    stream = make_sequence_dataset(cfg, {}, seq_len=16, seed=0)
    domains = np.array([int(s["domain"]) for s, _ in zip(stream, range(400), strict=False)])
    np.testing.assert_allclose(np.bincount(domains, minlength=4) / 400, 0.25, atol=0.02)


def test_resume_from_saved_state_continues_the_identical_stream(tmp_path):
    cfg = letter_domains(tmp_path, shuffle_buffer=8)
    ds = make_train_dataset(cfg, {"dom0": 2, "dom1": 1, "dom3": 1}, seq_len=24, global_batch_size=4, seed=5)
    it = iter(ds)
    for _ in range(7):
        next(it)
    state = json.loads(json.dumps(it.get_state()))  # grain.checkpoint stores states as JSON
    expected = [next(it) for _ in range(12)]
    resumed = iter(ds)
    resumed.set_state(state)
    for want, got in zip(expected, (next(resumed) for _ in range(12)), strict=True):
        for key in BATCH_KEYS:
            np.testing.assert_array_equal(want[key], got[key])


def test_resume_through_grain_checkpoint_handler(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "ckpt").mkdir()  # orbax creates the step folder before calling the handler
    cfg = letter_domains(tmp_path / "data", shuffle_buffer=8)
    ds = make_train_dataset(cfg, {}, seq_len=24, global_batch_size=2, seed=0)
    it = iter(ds)
    for _ in range(5):
        next(it)
    handler = grain.checkpoint.CheckpointHandler()
    handler.save(tmp_path / "ckpt", args=grain.checkpoint.CheckpointSave(it))
    expected = [next(it) for _ in range(6)]
    resumed = iter(ds)
    handler.restore(tmp_path / "ckpt", args=grain.checkpoint.CheckpointRestore(resumed))
    for want, got in zip(expected, (next(resumed) for _ in range(6)), strict=True):
        np.testing.assert_array_equal(want["inputs"], got["inputs"])


def test_batches_have_the_batch_format_and_packing_never_crosses_documents(tmp_path):
    cfg = letter_domains(tmp_path)
    train_docs = {t for i in index_all(cfg).values() for t in iter_documents(i, "train")}
    ds = make_train_dataset(cfg, {}, seq_len=32, global_batch_size=8, seed=3)
    for batch, _ in zip(ds, range(20), strict=False):
        assert {k: (v.shape, v.dtype) for k, v in batch.items()} == {
            **{k: ((8, 32), np.int32) for k in ("inputs", "targets", "positions", "segment_ids")},
            "loss_mask": ((8, 32), np.float32),
        }
        np.testing.assert_array_equal(batch["loss_mask"], batch["segment_ids"] > 0)
        mask = np.asarray(document_mask(batch["segment_ids"], batch["segment_ids"]))[:, 0] & np.tril(np.ones((32, 32), bool))  # what attention sees
        letters = np.where(batch["inputs"] >= TOK.offset + ord("a"), batch["inputs"], -1)  # drop the digit prefix
        for b in range(8):
            seg = batch["segment_ids"][b]
            same_seg = seg[:, None] == seg[None, :]
            assert not (mask[b] & ~same_seg).any()
            # every attended pair of letters belongs to one document (one letter per document)
            i, j = np.nonzero(mask[b] & (letters[b][:, None] >= 0) & (letters[b][None, :] >= 0))
            assert (letters[b][i] == letters[b][j]).all()
            for s in np.unique(seg[seg > 0]):
                where = np.flatnonzero(seg == s)
                assert (np.diff(where) == 1).all()  # a segment is contiguous
                assert (np.diff(batch["positions"][b][where]) == 1).all()  # positions count up within it
                inputs, targets = batch["inputs"][b][where], batch["targets"][b][where]
                np.testing.assert_array_equal(targets[:-1], inputs[1:])  # targets are the next token
                assert (inputs[1:] != TOK.bos_id).all()  # a bos (document start) only opens a segment
                assert targets[-1] == TOK.eos_id or (where[-1] == 31)  # a document ends in eos unless cut by the row end
            for text in doc_of_row(batch["inputs"][b], seg):
                assert any(text in doc for doc in train_docs), text  # only training documents
        assert doc_ids_of_batch(batch) <= doc_ids(train_docs)


def test_heldout_batches_are_fixed_padded_and_from_heldout_documents_only(tmp_path):
    cfg = letter_domains(tmp_path)
    index = index_all(cfg)["dom0"]
    heldout, train = set(iter_documents(index, "heldout")), set(iter_documents(index, "train"))
    first = heldout_batches(cfg, "dom0", seq_len=16, n_sequences=10, batch_size=4)
    again = heldout_batches(cfg, "dom0", seq_len=16, n_sequences=10, batch_size=4)
    assert len(first) == 3
    for a, b in zip(first, again, strict=True):
        for key in BATCH_KEYS:
            np.testing.assert_array_equal(a[key], b[key])
    assert not first[-1]["loss_mask"][2:].any() and first[-1]["loss_mask"][:2].any()  # 10 = 4 + 4 + 2 real rows
    for batch in first:
        np.testing.assert_array_equal(batch["loss_mask"], batch["segment_ids"] > 0)
        for row in range(4):
            for text in doc_of_row(batch["inputs"][row], batch["segment_ids"][row]):
                assert any(text in doc for doc in heldout), text
    # asking for more sequences than exist returns them all, in order: exactly the held-out documents
    everything = heldout_batches(cfg, "dom0", seq_len=16, n_sequences=10_000, batch_size=4)
    inputs = np.concatenate([b["inputs"][b["segment_ids"] > 0] for b in everything])
    assert TOK.decode(inputs.tolist()) == "".join(iter_documents(index, "heldout"))
    assert not doc_ids(heldout) & doc_ids(train)


def test_processes_read_disjoint_documents_and_get_their_share_of_the_batch(tmp_path):
    cfg = letter_domains(tmp_path, shuffle_buffer=0)
    seen = [set(), set()]
    for p in range(2):
        ds = make_train_dataset(cfg, {"dom0": 1}, seq_len=200, global_batch_size=4, seed=0, process_index=p, process_count=2)
        for batch, _ in zip(ds, range(6), strict=False):  # several epochs of this process's documents
            assert batch["inputs"].shape == (2, 200)
            seen[p] |= doc_ids_of_batch(batch)
    assert not seen[0] & seen[1]
    assert seen[0] | seen[1] == doc_ids(iter_documents(index_all(cfg)["dom0"], "train"))


def test_token_counts_and_budget_check(tmp_path):
    cfg = letter_domains(tmp_path)
    counts = token_counts(cfg)
    for name, index in index_all(cfg).items():
        for split in ("train", "heldout"):
            assert counts[name][split] == sum(len(t.encode()) + 2 for t in iter_documents(index, split))  # + bos + eos
    small = counts["dom3"]["train"]
    assert check_token_budget(cfg, {"dom3": 1}, int(small * cfg.max_epochs), counts) == []
    warnings = check_token_budget(cfg, {"dom0": 1, "dom3": 1}, int(small * 2 * cfg.max_epochs * 1.5), counts)
    assert len(warnings) == 1 and "domain 'dom3'" in warnings[0] and "6.0 epochs" in warnings[0]


def test_bad_mixture_fails_before_reading(tmp_path):
    cfg = letter_domains(tmp_path)
    with pytest.raises(ValueError, match=r"domain 'dom1' must be finite and >= 0, got -0.5"):
        make_train_dataset(cfg, {"dom0": 1, "dom1": -0.5}, seq_len=8, global_batch_size=2, seed=0)
    with pytest.raises(ValueError, match="not divisible by the process count"):
        make_train_dataset(cfg, {}, seq_len=8, global_batch_size=3, seed=0, process_count=2)
