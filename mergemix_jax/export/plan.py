"""What every trainer export is built from: a run's configured domains (paths, format, text field),
the mixture's weights and, at a target token count, the epochs each domain makes.

`export_plan(run_dir)` reads the run's config.yaml and mixture.json; the weights are the grain
mixture's (domains below `min_weight` dropped, the rest renormalised to sum 1), since every
trainer's mixer rejects or wastes zero weights.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from mergemix_jax.config import ConfigError, load_config
from mergemix_jax.config.schema import Config, DomainConfig
from mergemix_jax.data.paths import file_size
from mergemix_jax.data.sources import domain_files
from mergemix_jax.export.grain_config import grain_mixture
from mergemix_jax.export.mixture_file import read_mixture


@dataclass(frozen=True)
class DomainPlan:
    """One exported domain: where its documents are and its share of the training tokens."""

    name: str
    paths: tuple[str, ...]
    format: str  # data.domains[].format: jsonl | text | parquet | arrow | hf_disk | array_record
    text_field: str
    split_by: str
    weight: float  # share of the training tokens; the plan's weights sum to 1
    path_shares: tuple[float, ...]  # each path's share of the domain's bytes (for one-pattern-per-source trainers)
    train_tokens: int | None = None  # training tokens of the domain (with --target-tokens)
    epochs: float | None = None  # passes over them a run of target_tokens makes


@dataclass(frozen=True)
class ExportPlan:
    """A run's mixture with its domains, ready to render in a trainer's config format."""

    run: str  # the run folder's name
    domains: tuple[DomainPlan, ...]
    method: str  # the search method that chose the mixture
    seq_len: int  # train.seq_len of the run
    batch_size: int  # train.batch_size of the run (sequences)
    run_tokens: int  # train.steps x batch_size x seq_len: the tokens of the run's configured training
    max_epochs: float  # data.max_epochs: more passes than this are flagged
    target_tokens: int | None = None
    dropped: tuple[str, ...] = ()  # domains whose weight was below min_weight
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def weights(self) -> dict[str, float]:
        """{domain: weight}, summing to 1."""
        return {d.name: d.weight for d in self.domains}


def load_run(run_dir: str | os.PathLike, mixture_file: str | os.PathLike | None = None) -> tuple[Config, dict[str, float], str]:
    """(config, weights, method) of a finished `mergemix run` folder (weights from `mixture_file`,
    default <run>/mixture.json); a ConfigError names what is missing."""
    run_dir = Path(run_dir)
    config_file, mixture_file = run_dir / "config.yaml", Path(mixture_file or run_dir / "mixture.json")
    for path in (config_file, mixture_file):
        if not path.is_file():
            raise ConfigError(f"{path} does not exist; give the folder of a finished `mergemix run` (config.yaml and mixture.json)")
    try:
        mixture = read_mixture(mixture_file)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return load_config(config_file), mixture.weights, mixture.method


def path_shares(domain: DomainConfig) -> tuple[float, ...]:
    """Each configured path's share of `domain`'s bytes: (1.0,) for one path; several are stat-ed
    (globs and folders expanded as data.sources does)."""
    if len(domain.paths) == 1:
        return (1.0,)
    sizes = [sum(file_size(f) for f in domain_files(dataclasses.replace(domain, paths=[p]))) for p in domain.paths]
    total = sum(sizes)
    return tuple(s / total if total else 1.0 / len(sizes) for s in sizes)


def export_plan(
    run_dir: str | os.PathLike,
    target_tokens: int | None = None,
    min_weight: float = 1e-6,
    counts: dict[str, dict[str, int]] | None = None,
    mixture_file: str | os.PathLike | None = None,
) -> ExportPlan:
    """The ExportPlan of a run folder. With `target_tokens`, each domain's training tokens come from
    `counts` (default: the data accounting, cached per data version) and a warning is added for each
    domain the run would repeat more than data.max_epochs times. `mixture_file` (default
    <run>/mixture.json) may be any mixture file of the run, e.g. search/selected.json."""
    config, weights, method = load_run(run_dir, mixture_file)
    known = {d.name: d for d in config.data.domains}
    unknown = sorted(set(weights) - set(known))
    if unknown:
        raise ConfigError(f"{mixture_file or Path(run_dir) / 'mixture.json'} weighs domains {unknown} that its config.yaml does not configure (known: {sorted(known)})")
    if target_tokens is not None and target_tokens <= 0:
        raise ConfigError(f"--target-tokens must be > 0, got {target_tokens}")
    kept = grain_mixture(weights, min_weight)
    epochs, tokens, warnings = {}, {}, []
    if target_tokens is not None:
        from mergemix_jax.data.accounting import check_token_budget, epochs_per_domain, token_counts

        counts = token_counts(config.data) if counts is None else counts
        tokens = {name: counts[name]["train"] for name in kept}
        epochs = epochs_per_domain(kept, target_tokens, counts)
        warnings = check_token_budget(config.data, kept, target_tokens, counts)
    domains = tuple(
        DomainPlan(
            name=name,
            paths=tuple(p if "://" in p else os.path.normpath(p) for p in known[name].paths),
            format=known[name].format,
            text_field=known[name].text_field,
            split_by=known[name].split_by,
            weight=weight,
            path_shares=path_shares(known[name]),
            train_tokens=tokens.get(name),
            epochs=epochs.get(name),
        )
        for name, weight in kept.items()
    )
    return ExportPlan(
        run=Path(run_dir).resolve().name,
        domains=domains,
        method=method,
        seq_len=config.train.seq_len,
        batch_size=config.train.batch_size,
        run_tokens=config.train.steps * config.train.batch_size * config.train.seq_len,
        max_epochs=config.data.max_epochs,
        target_tokens=target_tokens,
        dropped=tuple(sorted(set(weights) - set(kept))),
        warnings=tuple(warnings),
    )
