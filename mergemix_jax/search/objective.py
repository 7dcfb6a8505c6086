"""An objective bound to its data: f(w, data) with `data` (expert stack, evaluation suite) passed to
jitted code as an argument, so a compiled search step does not bake K+1 models in as constants."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax


@dataclass(frozen=True, eq=False)
class DataObjective:
    """objective(w) = fn(w, data); gradient search jits `fn` with `data` as an argument."""

    fn: Callable[[jax.Array, Any], jax.Array]
    data: Any

    def __call__(self, w: jax.Array) -> jax.Array:
        return self.fn(w, self.data)


def split_objective(objective: Callable) -> tuple[Callable[[jax.Array, Any], jax.Array], Any]:
    """(fn(w, data), data) of an objective; a plain callable gets data None (nothing to pass)."""
    if isinstance(objective, DataObjective):
        return objective.fn, objective.data
    return (lambda w, _: objective(w)), None
