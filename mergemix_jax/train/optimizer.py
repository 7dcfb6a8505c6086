"""AdamW with constant, cosine or warmup-stable-decay learning rates, and global-norm clipping."""

from __future__ import annotations

import optax

from mergemix_jax.config import OptimConfig


def learning_rate_schedule(cfg: OptimConfig, total_steps: int) -> optax.Schedule:
    """The learning rate at each step.

    constant: linear warmup then flat (MergeMix-style experts); cosine: warmup then cosine to
    `min_lr_ratio * lr`; wsd: warmup, flat, then linear decay over the last `decay_fraction`.
    """
    peak, warmup = cfg.learning_rate, cfg.warmup_steps
    floor = peak * cfg.min_lr_ratio
    if cfg.schedule == "constant":
        return optax.warmup_constant_schedule(0.0, peak, warmup) if warmup else optax.constant_schedule(peak)
    if cfg.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, max(total_steps, warmup + 1), end_value=floor)
    if cfg.schedule == "wsd":
        decay_steps = max(1, round(total_steps * cfg.decay_fraction))
        stable_steps = max(0, total_steps - warmup - decay_steps)
        return optax.join_schedules(
            [
                optax.linear_schedule(0.0, peak, warmup),
                optax.constant_schedule(peak),
                optax.linear_schedule(peak, floor, decay_steps),
            ],
            boundaries=[warmup, warmup + stable_steps],
        )
    raise ValueError(f"unknown optim.schedule {cfg.schedule!r}; use constant, cosine or wsd")


def make_optimizer(cfg: OptimConfig, total_steps: int) -> optax.GradientTransformation:
    """Clip by global norm (if set), then AdamW with the configured schedule."""
    adamw = optax.adamw(
        learning_rate=learning_rate_schedule(cfg, total_steps),
        b1=cfg.beta1,
        b2=cfg.beta2,
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
    )
    if cfg.grad_clip_norm > 0:
        return optax.chain(optax.clip_by_global_norm(cfg.grad_clip_norm), adamw)
    return adamw
