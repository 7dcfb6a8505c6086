"""How the report shows a number derived from the run's utility: its unit and its direction.

A run whose utility is minus a held-out loss (pipeline.utility of loss/ metrics, search.normalise
none) reads best as a loss: nats per token, lower is better. Any other utility (benchmark scores,
normalised metrics) is shown as the utility itself: utility points, higher is better. The run
records hold `-utility` ("real_loss", search traces, `objective`); `Scale.show` turns such a
value into the number the reader sees.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Scale:
    """The reader's view of a utility: a loss (nats, lower is better) or utility points (higher is better)."""

    is_loss: bool = True

    @property
    def quantity(self) -> str:
        """"loss" or "utility"."""
        return "loss" if self.is_loss else "utility"

    @property
    def unit(self) -> str:
        """"nats" or "utility points"."""
        return "nats" if self.is_loss else "utility points"

    @property
    def direction(self) -> str:
        """"lower is better" or "higher is better"."""
        return "lower is better" if self.is_loss else "higher is better"

    def label(self, prefix: str) -> str:
        """A column or axis title, e.g. label("real") == "real loss (nats, lower is better)"."""
        return f"{prefix} {self.quantity} ({self.unit}, {self.direction})".strip()

    def show(self, neg_utility: float | None) -> float | None:
        """The displayed value of a recorded `-utility`: itself as a loss, its negation as a utility."""
        if neg_utility is None:
            return None
        return neg_utility if self.is_loss else -neg_utility


LOSS = Scale(True)
UTILITY = Scale(False)


def configured_utility(config: dict) -> dict[str, float]:
    """config.yaml's pipeline.utility {metric: weight} (held-out loss/mean when empty)."""
    return dict(config.get("pipeline", {}).get("utility") or {}) or {"loss/mean": 1.0}


def scale_of_run(run_dir: str | os.PathLike, config: dict) -> Scale:
    """The run's Scale: from its saved utility (eval/utility.json), else from config.yaml's
    pipeline.utility and search.normalise (before the probe stage)."""
    from mergemix_jax.runkit.utility import read_run_utility

    saved = read_run_utility(Path(run_dir))
    if saved is not None:
        return Scale(saved.is_loss)
    weights = configured_utility(config)
    normalise = config.get("search", {}).get("normalise", "none")
    return Scale(normalise == "none" and all(m.startswith("loss/") for m in weights))
