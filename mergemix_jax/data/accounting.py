"""Token accounting: how many tokens each domain holds, and whether a mixture over-repeats one."""

from __future__ import annotations

from mergemix_jax.config.schema import DataConfig
from mergemix_jax.data.cache import cache_root, dump_json, entry_key, file_digest, load_json, shared
from mergemix_jax.data.pipeline import normalize_mixture
from mergemix_jax.data.sources import SPLITS, few_documents_hint, index_all, iter_documents
from mergemix_jax.data.tokenizer import load_tokenizer


def token_counts(data_cfg: DataConfig) -> dict[str, dict[str, int]]:
    """{domain: {"train": n, "heldout": n}}: tokens per split, each document counted with its bos/eos.

    Streams every document once through the configured tokenizer, once per data version: the
    counts are cached under the data cache (data.cache_dir), keyed by the domain's index version
    and the tokenizer's bytes, written by process 0 and read by the others (data/cache.py).
    """
    tokenizer = load_tokenizer(data_cfg)
    extra = 1 + (tokenizer.bos_id is not None)
    fingerprint = tokenizer_fingerprint(data_cfg)
    root = cache_root(data_cfg)
    counts = {}
    for name, index in index_all(data_cfg).items():

        def count(index=index) -> dict[str, int]:
            return {split: sum(len(tokenizer.encode_array(t)) + extra for t in iter_documents(index, split)) for split in SPLITS}

        path = root / "token_counts" / f"{entry_key(index.version, fingerprint, extra)}.json"
        counts[name] = {split: int(n) for split, n in shared(path, count, dump_json, load_json).items()}
    return counts


def tokenizer_fingerprint(data_cfg: DataConfig) -> str:
    """What identifies data.tokenizer: "byte", or a hash of the tokenizer file's bytes."""
    spec = data_cfg.tokenizer
    return "byte" if spec in ("byte", "") else file_digest(spec)


def document_counts(data_cfg: DataConfig) -> dict[str, dict[str, int]]:
    """{domain: {"train": n, "heldout": n}}: documents per split (no tokenizing)."""
    return {name: {split: len(index.doc_ids(split)) for split in SPLITS} for name, index in index_all(data_cfg).items()}


def heldout_warnings(data_cfg: DataConfig, counts: dict[str, dict[str, int]]) -> list[str]:
    """A warning for each domain with no held-out document (its held-out loss cannot be measured),
    naming the cause: data.heldout_fraction = 0, or too few documents for the way its files are read."""
    domains = {d.name: d for d in data_cfg.domains}
    warnings = []
    for name, docs in counts.items():
        if docs["heldout"]:
            continue
        if data_cfg.heldout_fraction == 0:
            warnings.append(f"domain '{name}' has 0 held-out documents because data.heldout_fraction is 0: its held-out loss cannot be measured")
        else:
            warnings.append(f"domain '{name}' has 0 held-out documents, so its held-out loss cannot be measured: it {few_documents_hint(domains[name], docs['train'])}")
    return warnings


def epochs_per_domain(mixture: dict[str, float], total_tokens: int, counts: dict[str, dict[str, int]]) -> dict[str, float]:
    """How many passes over each domain's training tokens a run of `total_tokens` makes.

    `mixture` must already be normalized (`normalize_mixture`).
    """
    return {name: weight * total_tokens / max(counts[name]["train"], 1) for name, weight in mixture.items()}


def check_token_budget(
    data_cfg: DataConfig, mixture: dict[str, float], total_tokens: int, counts: dict[str, dict[str, int]] | None = None
) -> list[str]:
    """Warnings for every domain a run of `total_tokens` on `mixture` repeats more than
    `data.max_epochs` times (empty when the budget fits). Pass `counts` to skip recounting."""
    weights = normalize_mixture(data_cfg, mixture)
    counts = token_counts(data_cfg) if counts is None else counts
    return [
        f"domain '{name}': {total_tokens:,} tokens at weight {weights[name]:.3f} make {epochs:.1f} epochs over its "
        f"{counts[name]['train']:,} training tokens (data.max_epochs = {data_cfg.max_epochs}); lower its weight, "
        f"train fewer tokens or add data"
        for name, epochs in epochs_per_domain(weights, total_tokens, counts).items()
        if epochs > data_cfg.max_epochs
    ]
