"""Score many mixtures through a batched scorer in fixed-size calls, with one progress bar."""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from mergemix_jax.search.types import Scorer


def score_batches(score: Scorer, weights_BxK: np.ndarray, batch_size: int, progress: bool = False, desc: str = "score") -> dict[str, np.ndarray]:
    """score(weights) in calls of at most `batch_size` rows, concatenated: {metric: [B]}.

    Checks that every call returns the same metrics with one value per row, naming the metric.
    """
    weights_BxK = np.asarray(weights_BxK, np.float64)
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}")
    parts: dict[str, list[np.ndarray]] = {}
    with tqdm(total=len(weights_BxK), desc=desc, disable=not progress, leave=False) as bar:
        for lo in range(0, len(weights_BxK), batch_size):
            chunk = weights_BxK[lo : lo + batch_size]
            metrics = score(chunk)
            if parts and set(metrics) != set(parts):
                raise ValueError(f"the scorer returned metrics {sorted(metrics)}, earlier {sorted(parts)}")
            for name, values in metrics.items():
                values = np.asarray(values, np.float64).reshape(-1)
                if values.shape != (len(chunk),):
                    raise ValueError(f"the scorer's metric {name!r} has {values.size} values for {len(chunk)} mixtures")
                parts.setdefault(name, []).append(values)
            bar.update(len(chunk))
    return {name: np.concatenate(values) for name, values in parts.items()}
