"""grain pipelines: tokenize, pack, mix domains by weight, shuffle, batch, shard per process.

Each domain is packed on its own, so every sequence belongs to one domain and a mixture weight is
the share of *sequences* (hence of tokens) drawn from that domain. A document is encoded as
`[bos] + tokens + [eos]` and turned into (inputs, targets) = (ids[:-1], ids[1:]) *before* packing, so no
target ever crosses a document boundary; the packer adds segment ids and positions.

Batch format (data/batches.py; per process, B = global_batch_size // process_count):
  inputs, targets, positions, segment_ids: int32 [B, L]; loss_mask: float32 [B, L].
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import logging
import math

import grain
import numpy as np

from mergemix_jax.config.schema import DataConfig
from mergemix_jax.data.batches import BATCH_KEYS
from mergemix_jax.data.errors import DataError
from mergemix_jax.data.sources import (
    DocumentSource,
    DomainIndex,
    domain_index,
    few_documents_hint,
)
from mergemix_jax.data.tokenizer import Tokenizer, load_tokenizer

log = logging.getLogger(__name__)
# documents are small local reads: reader threads only add GIL contention on a few cores
_READ = grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)


class JsonStateIterDataset(grain.IterDataset):
    """Pass-through whose iterator accepts its state back after a JSON round trip.

    grain.checkpoint stores iterator states as JSON, which turns tuples into lists; grain's
    concat-then-split packer compares its saved slices with a tuple sentinel and would then
    restore a phantom remainder. Turning lists back into tuples restores the exact stream.
    """

    def __iter__(self) -> grain.DatasetIterator:
        return _JsonStateIterator(self._parent.__iter__())


class _JsonStateIterator(grain.DatasetIterator):
    def __next__(self):
        return next(self._parent)

    def get_state(self) -> dict:
        return self._parent.get_state()

    def set_state(self, state: dict) -> None:
        self._parent.set_state(_lists_to_tuples(state))


def _lists_to_tuples(tree):
    if isinstance(tree, dict):
        return {k: _lists_to_tuples(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return tuple(_lists_to_tuples(v) for v in tree)
    return tree


def normalize_mixture(data_cfg: DataConfig, mixture: dict[str, float]) -> dict[str, float]:
    """Validate `mixture` and return it summing to 1 without weight-0 domains.

    An empty mixture means uniform over all domains. Unknown names and weights that are negative,
    NaN, infinite or all zero raise `DataError` naming the domain.
    """
    names = [d.name for d in data_cfg.domains]
    if not names:
        raise DataError("data.domains is empty; configure at least one domain")
    if not mixture:
        return {name: 1.0 / len(names) for name in names}
    for name, weight in mixture.items():
        if name not in names:
            raise DataError(f"mixture names domain {name!r}, which is not in data.domains (known: {names})")
        if isinstance(weight, bool) or not isinstance(weight, (int, float, np.floating, np.integer)):
            raise DataError(f"mixture weight of domain {name!r} must be a number, got {weight!r}")
        if not math.isfinite(weight) or weight < 0:
            raise DataError(f"mixture weight of domain {name!r} must be finite and >= 0, got {weight}")
    total = float(sum(mixture.values()))
    if not total > 0:
        raise DataError(f"mixture weights are all zero ({mixture}); give at least one domain a positive weight")
    return {name: float(w) / total for name, w in mixture.items() if w > 0}


def make_train_dataset(
    data_cfg: DataConfig,
    mixture: dict[str, float],
    *,
    seq_len: int,
    global_batch_size: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
) -> grain.IterDataset:
    """An endless, checkpointable stream of this process's training batches of the mixture.

    Every domain's training documents are split between processes (process p owns documents
    p, p + process_count, ...), shuffled (reshuffled each epoch), repeated forever, tokenized and packed to `seq_len`; the domains are interleaved by weight
    (grain mix), window-shuffled (`data.shuffle_buffer` sequences) and batched. The iterator's
    `get_state()`/`set_state()` resume the identical stream.
    """
    if global_batch_size % process_count:
        raise DataError(f"global batch size {global_batch_size} is not divisible by the process count {process_count}")
    sequences = make_sequence_dataset(
        data_cfg, mixture, seq_len=seq_len, seed=seed, process_index=process_index, process_count=process_count
    )
    return sequences.map(_drop_domain).batch(global_batch_size // process_count, drop_remainder=True)


def make_sequence_dataset(
    data_cfg: DataConfig,
    mixture: dict[str, float],
    *,
    seq_len: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
) -> grain.IterDataset:
    """The unbatched stream behind `make_train_dataset`: one packed sequence per element, plus
    `domain` (int32 scalar: the domain's position in `data.domains`), for tests and diagnostics."""
    if not 0 <= process_index < process_count:
        raise DataError(f"process_index {process_index} must be in [0, process_count={process_count})")
    weights = normalize_mixture(data_cfg, mixture)
    tokenizer = load_tokenizer(data_cfg)
    positions = {d.name: i for i, d in enumerate(data_cfg.domains)}
    streams = {}
    for name in weights:
        index = domain_index(data_cfg, name)
        source = DocumentSource(index, "train")
        if len(source) < process_count:
            raise DataError(f"domain '{name}' has {len(source)} training documents, fewer than the {process_count} processes")
        docs = grain.MapDataset.source(source)[process_index::process_count]  # each process owns a fixed share
        docs = docs.shuffle(seed=_stable_seed(seed, name)).repeat(None).map(functools.partial(_encode_document, tokenizer))
        packed = grain.experimental.ConcatThenSplitIterDataset(docs.to_iter_dataset(_READ), length_struct={"inputs": seq_len, "targets": seq_len})
        streams[name] = packed.map(functools.partial(_to_sequence, domain=positions[name]))
    mixed = grain.IterDataset.mix(streams, weights)
    if data_cfg.shuffle_buffer > 1:
        mixed = grain.experimental.WindowShuffleIterDataset(mixed, window_size=data_cfg.shuffle_buffer, seed=_stable_seed(seed, "window"))
    return JsonStateIterDataset(mixed)


def heldout_batches(data_cfg: DataConfig, domain: str, *, seq_len: int, n_sequences: int, batch_size: int, skip: int = 0) -> list[dict[str, np.ndarray]]:
    """Fixed evaluation batches from `domain`'s held-out documents: the same for every call.

    The held-out documents are packed in file order and `n_sequences` packed sequences are drawn
    by a reservoir sample seeded with `data.split_seed` (so long documents do not crowd out the
    rest), kept in stream order. With fewer held-out sequences, all are used (with a warning).
    The last batch is padded with empty rows (segment_ids 0, loss_mask 0) to `batch_size`.
    `skip` > 0 draws a disjoint split: the `skip` sequences a call with `n_sequences=skip` (and no
    skip) returns are excluded and `n_sequences` are drawn uniformly from the rest.
    """
    if n_sequences <= 0 or batch_size <= 0:
        raise DataError(f"n_sequences ({n_sequences}) and batch_size ({batch_size}) must be > 0")
    index = domain_index(data_cfg, domain)
    source = DocumentSource(index, "heldout")
    if len(source) == 0:
        raise DataError(_no_heldout_message(data_cfg, index))
    tokenizer = load_tokenizer(data_cfg)
    docs = grain.MapDataset.source(source).map(functools.partial(_encode_document, tokenizer)).to_iter_dataset(_READ)
    packed = grain.experimental.ConcatThenSplitIterDataset(docs, length_struct={"inputs": seq_len, "targets": seq_len})
    stream = map(_drop_domain, map(functools.partial(_to_sequence, domain=0), packed))
    rows = _reservoir_excluding(stream, n_sequences, skip, data_cfg.split_seed) if skip else _reservoir(stream, n_sequences, data_cfg.split_seed)
    if len(rows) < n_sequences:
        log.warning("domain '%s' holds %d held-out sequences of length %d; asked for %d", domain, len(rows), seq_len, n_sequences)
    batches = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        chunk += [{k: np.zeros_like(v) for k, v in rows[0].items()}] * (batch_size - len(chunk))
        batches.append({k: np.stack([row[k] for row in chunk]) for k in BATCH_KEYS})
    return batches


def _no_heldout_message(data_cfg: DataConfig, index: DomainIndex) -> str:
    """Why a domain has no held-out documents: data.heldout_fraction = 0, or too few documents (then the format is the usual cause)."""
    name = index.domain.name
    if data_cfg.heldout_fraction == 0:
        return f"domain '{name}' has no held-out documents because data.heldout_fraction is 0; set it > 0 (e.g. 0.1)"
    return f"domain '{name}' has no held-out documents: a split needs at least 2, and it {few_documents_hint(index.domain, len(index.heldout))}"


def _reservoir(stream, n: int, seed: int) -> list[dict[str, np.ndarray]]:
    """Deterministic uniform sample of `n` elements of `stream` (Algorithm R), in stream order."""
    rng = np.random.default_rng(seed)
    kept: list[tuple[int, dict]] = []
    for i, item in enumerate(stream):
        if i < n:
            kept.append((i, item))
        else:
            j = int(rng.integers(0, i + 1))
            if j < n:
                kept[j] = (i, item)
    return [item for _, item in sorted(kept, key=lambda pair: pair[0])]


def _reservoir_excluding(stream, n: int, skip: int, seed: int) -> list[dict[str, np.ndarray]]:
    """Uniform sample of `n` elements of `stream` outside `_reservoir(stream, skip, seed)`, in stream order.

    One pass: Algorithm R of size `skip` is replayed on indices (the same draws as `_reservoir`), and
    the `n + skip` elements with the smallest random keys are kept; at most `skip` of them are
    excluded, so the `n` smallest keys outside the excluded set are among them.
    """
    rng_r, rng_key = np.random.default_rng(seed), np.random.default_rng([seed, 1])
    excluded: list[int] = []
    heap: list[tuple[float, int, dict]] = []  # max-heap on the key (negated) of the n + skip smallest
    for i, item in enumerate(stream):
        if i < skip:
            excluded.append(i)
        else:
            j = int(rng_r.integers(0, i + 1))
            if j < skip:
                excluded[j] = i
        entry = (-float(rng_key.random()), i, item)
        if len(heap) < n + skip:
            heapq.heappush(heap, entry)
        elif entry[0] > heap[0][0]:
            heapq.heapreplace(heap, entry)
    gone = set(excluded)
    kept = sorted((e for e in heap if e[1] not in gone), key=lambda e: -e[0])[:n]
    return [item for _, _, item in sorted(kept, key=lambda e: e[1])]


def document_ids(tokenizer: Tokenizer, text: str) -> np.ndarray:
    """int32 [n]: `[bos] + tokens + [eos]` (no bos when the tokenizer has none)."""
    bos = [] if tokenizer.bos_id is None else [tokenizer.bos_id]
    return np.concatenate([np.asarray(bos, np.int32), tokenizer.encode_array(text), [np.int32(tokenizer.eos_id)]]).astype(np.int32)


def _encode_document(tokenizer: Tokenizer, text: str) -> dict[str, np.ndarray]:
    ids = document_ids(tokenizer, text)
    return {"inputs": ids[:-1], "targets": ids[1:]}


def _to_sequence(packed: dict[str, np.ndarray], domain: int) -> dict[str, np.ndarray]:
    segment_ids = packed["inputs_segment_ids"].astype(np.int32)
    return {
        "inputs": packed["inputs"].astype(np.int32),
        "targets": packed["targets"].astype(np.int32),
        "positions": packed["inputs_positions"].astype(np.int32),
        "segment_ids": segment_ids,
        "loss_mask": (segment_ids > 0).astype(np.float32),
        "domain": np.int32(domain),
    }


def _drop_domain(sequence: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: sequence[k] for k in BATCH_KEYS}


def _stable_seed(seed: int, name: str) -> int:
    """A 31-bit seed derived from (seed, name), identical on every host and Python run."""
    return int.from_bytes(hashlib.blake2b(f"{seed}\0{name}".encode(), digest_size=4).digest(), "little") >> 1

