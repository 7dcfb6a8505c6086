"""A scorer that remembers: every scored mixture is appended to a JSONL file, and a rerun asks the
real scorer only for mixtures it has not seen. The searches are deterministic for a seed, so an
interrupted search rerun with the same settings replays its mixtures from the file and resumes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from mergemix_jax.merge.weights import weights_hash
from mergemix_jax.search.types import Scorer


class CachedScorer:
    """Wraps `score` (weights [B, K] -> {metric: [B]}) with an append-only JSONL cache at `path`."""

    def __init__(self, score: Scorer, path: str | os.PathLike):
        self.score, self.path = score, Path(path)
        self.cache: dict[str, dict[str, float]] = {}
        self.hits = self.misses = 0
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        lines = self.path.read_text().splitlines()
        for number, line in enumerate(lines, 1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                if number == len(lines):  # a line cut short by an interruption: drop it
                    continue
                raise ValueError(f"{self.path}: line {number} is not JSON; delete the file to rescore") from None
            self.cache[row["hash"]] = row["metrics"]

    def __call__(self, weights_BxK: np.ndarray) -> dict[str, np.ndarray]:
        weights = np.asarray(weights_BxK, np.float32)
        keys = [weights_hash(w) for w in weights]
        first_row: dict[str, int] = {}  # each unseen mixture scored once, even if repeated in the batch
        for i, key in enumerate(keys):
            if key not in self.cache:
                first_row.setdefault(key, i)
        todo = list(first_row.values())
        self.hits += len(keys) - len(todo)
        self.misses += len(todo)
        if todo:
            fresh = self.score(weights[todo])
            lines = []
            for j, i in enumerate(todo):
                metrics = {name: float(np.asarray(values)[j]) for name, values in fresh.items()}
                self.cache[keys[i]] = metrics
                lines.append(json.dumps({"hash": keys[i], "weights": weights[i].tolist(), "metrics": metrics}))
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as handle:
                handle.write("\n".join(lines) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
        names = self.cache[keys[0]].keys()
        return {name: np.asarray([self.cache[k][name] for k in keys], np.float64) for name in names}
