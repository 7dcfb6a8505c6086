"""Train configs of the pipeline's models, derived from one Config, and a train-unless-finished helper.

Base: `pipeline.base_steps` on the uniform mixture from scratch. Every reference:
`pipeline.expert_steps` (or `validate.reference_steps`) from the base at a constant learning rate,
on the reference's mixture. Expert k: the same steps from the base, by default on domain k alone at
a constant LR (the merged proxy ranks mixtures best with constant-LR, short-horizon experts; see
docs/results.md); DeMix's component recipe is a switch: `pipeline.expert_general_share`
of general data (the base's own mixture), `pipeline.expert_schedule: cosine` to
`pipeline.expert_lr_floor`, and `pipeline.expert_checkpoint_step` to merge an earlier checkpoint.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path

import numpy as np

from mergemix_jax.config import Config
from mergemix_jax.merge.dilution import Dilution, effective_proportions, make_dilution
from mergemix_jax.merge.stack import ExpertStack

log = logging.getLogger(__name__)


def derive_train_config(
    config: Config,
    *,
    steps: int,
    output_dir: str | Path,
    mixture: dict[str, float] | None = None,
    init_from: str | Path = "",
    learning_rate: float = 0.0,
    constant_lr: bool = False,
    data_seed: int | None = None,
) -> Config:
    """A copy of `config` whose train/optim sections describe one pipeline model."""
    optim = config.optim
    warmup = min(optim.warmup_steps, steps // 5)
    optim = dataclasses.replace(optim, learning_rate=learning_rate or optim.learning_rate, warmup_steps=warmup)
    if constant_lr:
        optim = dataclasses.replace(optim, schedule="constant")
    train = dataclasses.replace(
        config.train,
        steps=steps,
        output_dir=str(output_dir),
        mixture=dict(mixture or {}),
        init_from=str(init_from),
        checkpoint_every=min(config.train.checkpoint_every, steps),
        data_seed=config.train.data_seed if data_seed is None else data_seed,
    )
    return dataclasses.replace(config, optim=optim, train=train)


def base_config(config: Config, run_dir: Path) -> Config:
    """The base model: uniform mixture, trained from scratch with the configured schedule."""
    return derive_train_config(config, steps=config.pipeline.base_steps, output_dir=run_dir / "base")


def base_dir(config: Config, run_dir: Path) -> Path:
    """Where the base lives: `pipeline.base_dir` when given, else <run>/base."""
    return Path(config.pipeline.base_dir) if config.pipeline.base_dir else run_dir / "base"


def short_run_config(config: Config, run_dir: Path, out: Path, mixture: dict[str, float], steps: int = 0, data_seed: int | None = None) -> Config:
    """An expert (one-hot mixture) or reference model: constant LR from the base for `steps` steps."""
    p = config.pipeline
    return derive_train_config(
        config,
        steps=steps or p.expert_steps,
        output_dir=out,
        mixture=mixture,
        init_from=base_dir(config, run_dir),
        learning_rate=p.expert_learning_rate,
        constant_lr=True,
        data_seed=data_seed,
    )


def check_base_split(config: Config) -> None:
    """Refuse a reused base (`pipeline.base_dir`) that trained on another held-out split of one of this
    config's domains: its training may hold documents this config scores as held-out, and every
    held-out score would be silently optimistic. Bases that record no split (imported models, older
    runs) are allowed with a warning. Raises ConfigError naming the domains and the fix."""
    from mergemix_jax.config import ConfigError
    from mergemix_jax.data.sources import split_signature
    from mergemix_jax.reliability.lineage import newest_metadata

    recorded = newest_metadata(config.pipeline.base_dir).get("data_split")
    if recorded is None:
        log.warning("pipeline.base_dir %s records no data split: it cannot be checked for training on this config's held-out documents", config.pipeline.base_dir)
        return
    current = split_signature(config.data)
    differ = [name for name in current if name in recorded and recorded[name] != current[name]]
    if differ:
        raise ConfigError(
            f"pipeline.base_dir {config.pipeline.base_dir} was trained on domain(s) {differ} with other files or another held-out split "
            f"(data.heldout_fraction / data.split_seed / the domain's files) than this config: it may have trained on documents this config holds out. "
            "Set pipeline.base_dir: '' to train the base from this config, or point it at a base trained on these exact domain files and split"
        )


def general_mixture(config: Config) -> dict[str, float]:
    """The "general" data of diluted experts: the base's own training mixture, as proportions over
    data.domains. The pipeline's base trains on the uniform mixture; a base from `pipeline.base_dir`
    on the mixture its checkpoint records, or, when it records none (an imported model), on the
    domains' natural proportions (each one's share of the training tokens)."""
    from mergemix_jax.data.pipeline import normalize_mixture

    names = [d.name for d in config.data.domains]
    if config.pipeline.base_dir:
        from mergemix_jax.reliability.lineage import newest_metadata

        meta = newest_metadata(config.pipeline.base_dir)
        if "mixture" not in meta:
            from mergemix_jax.runkit.mixtures import natural_prior

            log.info("%s records no training mixture: diluted experts draw their general data in natural proportions", config.pipeline.base_dir)
            return dict(zip(names, natural_prior(config).tolist(), strict=True))
        recorded = meta["mixture"]
    else:
        recorded = base_config(config, Path(".")).train.mixture  # {} = uniform
    proportions = normalize_mixture(config.data, recorded)
    return {name: proportions.get(name, 0.0) for name in names}


def expert_dilution(config: Config) -> Dilution | None:
    """The experts' dilution (share, general proportions in data.domains order); None for pure-domain experts."""
    share = config.pipeline.expert_general_share
    return make_dilution(share, list(general_mixture(config).values())) if share > 0 else None


def expert_mixture(config: Config, domain: str) -> dict[str, float]:
    """Expert `domain`'s training mixture: domain alone, or (1 - share) x domain + share x general."""
    dilution = expert_dilution(config)
    if dilution is None:
        return {domain: 1.0}
    names = [d.name for d in config.data.domains]
    proportions = effective_proportions(np.asarray([float(n == domain) for n in names]), dilution.share, dilution.general)
    return {n: float(w) for n, w in zip(names, proportions, strict=True) if w > 0}


def experts_are_references(config: Config) -> bool:
    """True when expert k is the one-hot reference of domain k (the reference recipe: pure domain,
    constant LR, final checkpoint, the same steps), so a vertex of the probe table is a real run."""
    p = config.pipeline
    steps = config.validate.reference_steps or p.expert_steps
    return p.expert_general_share == 0 and p.expert_schedule == "constant" and p.expert_checkpoint_step in (0, p.expert_steps) and steps == p.expert_steps


def expert_config(config: Config, run_dir: Path, out: Path, domain: str) -> Config:
    """Expert `domain`'s train config: the reference recipe from the base on `expert_mixture`, with
    the expert schedule (cosine to `pipeline.expert_lr_floor` x the peak) and, when an intermediate
    checkpoint is merged, checkpoints every gcd(step, steps) steps, all kept."""
    p = config.pipeline
    cfg = short_run_config(config, run_dir, out, expert_mixture(config, domain))
    if p.expert_schedule == "cosine":
        cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, schedule="cosine", min_lr_ratio=p.expert_lr_floor))
    if 0 < p.expert_checkpoint_step < cfg.train.steps:
        every = math.gcd(p.expert_checkpoint_step, cfg.train.steps)
        keep = max(cfg.train.keep_checkpoints, cfg.train.steps // every)
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, checkpoint_every=every, keep_checkpoints=keep))
    return cfg


def dilute_stack(config: Config, stack: ExpertStack) -> ExpertStack:
    """`stack` marked with the experts' dilution (pipeline.expert_general_share > 0), so every merge
    corrects its weights (merge/dilution.py); unchanged for pure-domain experts."""
    dilution = expert_dilution(config)
    if dilution is None:
        return stack
    names = tuple(d.name for d in config.data.domains)
    if stack.names != names:
        raise ValueError(f"pipeline.expert_general_share={dilution.share} corrects merge weights per domain: the experts must be named after data.domains {list(names)} in that order, got {list(stack.names)}")
    return dataclasses.replace(stack, dilution=dilution)


def expert_step(config: Config, expert_dirs: list[Path] | list[str]) -> int | None:
    """The checkpoint step merged from every expert (None = each one's newest); an error naming
    `pipeline.expert_checkpoint_step` and the saved steps when an expert lacks it."""
    step = config.pipeline.expert_checkpoint_step
    if step == 0:
        return None
    from mergemix_jax.train.checkpoint import CheckpointError, checkpoint_dir

    for folder in expert_dirs:
        directory = checkpoint_dir(folder)
        saved = sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit()) if directory.is_dir() else []
        if step not in saved:
            raise CheckpointError(f"pipeline.expert_checkpoint_step={step}: expert {folder} has no checkpoint at step {step}; its saved steps are {saved}")
    return step


def check_scorable(config: Config, expert_dirs: list[Path] | list[str]) -> None:
    """Before experts are merged and scored: each expert folder that is a training run must be finished
    (done.json: an interrupted or diverged run is never merged), and the tokenizer's ids must fit
    model.vocab_size. Raises CheckpointError / DataError naming the folder or key and the fix."""
    from mergemix_jax.data.tokenizer import check_vocab, load_tokenizer
    from mergemix_jax.train import is_finished, latest_step
    from mergemix_jax.train.checkpoint import CheckpointError

    for folder in map(Path, expert_dirs):
        if (folder / "metrics.jsonl").is_file() and not is_finished(folder):  # a train run that did not finish
            raise CheckpointError(
                f"expert {folder} is an unfinished training run (no done.json; newest checkpoint step {latest_step(folder)}): it was interrupted "
                f"or diverged, and is not merged. Finish it (`mergemix train --config {folder / 'config.yaml'}` resumes it) or train it again"
            )
    if config.data.domains or config.eval.task_dir:  # the suite is tokenised: its ids must fit the embedding table
        check_vocab(load_tokenizer(config.data), config.model)


def expert_dirs(config: Config, run_dir: Path) -> list[Path]:
    """<run>/experts/<domain> in the order of data.domains, or the folders `pipeline.expert_dirs` names."""
    given = config.pipeline.expert_dirs
    if given:
        return [Path(given[d.name]) for d in config.data.domains]
    return [run_dir / "experts" / d.name for d in config.data.domains]


def check_given_experts(config: Config) -> None:
    """Refuse `pipeline.expert_dirs` (experts trained elsewhere) unless every folder is a finished run
    fine-tuned from `pipeline.base_dir` (reliability/lineage.py); the error names the domain's folder.
    Called before the run folder exists, so a refusal leaves nothing behind."""
    from mergemix_jax.reliability.checkpoints import CheckpointError
    from mergemix_jax.reliability.lineage import check_experts_share_base
    from mergemix_jax.train import is_finished

    given = config.pipeline.expert_dirs
    for name, folder in given.items():
        if not is_finished(folder):
            raise CheckpointError(
                f"pipeline.expert_dirs.{name}: {folder} is not a finished train run (no done.json); finish it (tpu_scripts/experts.sh --resume) "
                "or remove pipeline.expert_dirs to let the run train its experts"
            )
    if given:
        try:
            check_experts_share_base(config.pipeline.base_dir, [given[d.name] for d in config.data.domains])
        except CheckpointError as err:
            raise CheckpointError(f"pipeline.expert_dirs does not match pipeline.base_dir: {err}") from None


def train_unless_finished(config: Config) -> float:
    """Train (resuming a partial run) unless the run folder is finished; returns seconds spent.
    Multi-host: process 0's answer holds for all (call it on every process)."""
    from mergemix_jax.parallel.multihost import agree
    from mergemix_jax.train import is_finished, train

    if agree(is_finished(config.train.output_dir)):
        return 0.0
    start = time.perf_counter()
    train(config, resume=True, config_source=f"pipeline model {config.train.output_dir}")
    return time.perf_counter() - start
