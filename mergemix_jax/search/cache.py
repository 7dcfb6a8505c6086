"""A scorer that remembers: every scored mixture is appended to a JSONL file, and a rerun asks the
real scorer only for mixtures it has not seen. The searches are deterministic for a seed, so an
interrupted search rerun with the same settings replays its mixtures from the file and resumes.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from mergemix_jax.merge.weights import weights_hash
from mergemix_jax.reliability.atomic import atomic_write_text
from mergemix_jax.search.types import Scorer

log = logging.getLogger(__name__)


class ScoreCacheError(ValueError):
    """A score cache that is corrupt or was filled under other settings; the message says what to do."""


# what each recorded setting of a search stands for, in the words of the option that changes it
SEARCH_SETTING_SOURCES = {
    "problem": "the search problem (--metrics, --groups, the experts' names)",
    "base": "the base parameters (--base)",
    "experts": "the expert parameters (--experts)",
    "data": "the evaluation data (data.*)",
    "eval": "the evaluation settings (eval.*: merge, suite, proxy)",
    "synthetic": "--synthetic",
    "seed": "search.seed (synthetic problems)",
}

_SPEED_ONLY = ("mixtures_per_device", "mixtures_per_step", "micro_batch", "shard_experts")  # change speed, not scores


def search_settings(config, problem_description: dict, base_dir: str = "", expert_dirs: list[str] | None = None, synthetic: str = "") -> dict:
    """Everything besides the weights that determines a search's scores (recorded in its cache)."""
    import dataclasses

    from mergemix_jax.reliability.lineage import run_identity

    if synthetic:
        return {"synthetic": synthetic, "seed": config.search.seed, "problem": problem_description}
    return {
        "problem": problem_description,
        "base": run_identity(base_dir),
        "experts": [run_identity(d) for d in expert_dirs or []],
        "data": {k: v for k, v in dataclasses.asdict(config.data).items() if k != "cache_dir"},  # where counts are cached changes no score
        "eval": {k: v for k, v in dataclasses.asdict(config.eval).items() if k not in _SPEED_ONLY},
    }


class CachedScorer:
    """Wraps `score` (weights [B, K] -> {metric: [B]}) with an append-only JSONL cache at `path`.

    With `settings` (e.g. `search_settings`), the cache's first line records them; a cache filled
    under other settings is refused (its scores are not this problem's), naming what differs.
    """

    def __init__(self, score: Scorer, path: str | os.PathLike, settings: dict | None = None):
        self.score, self.path = score, Path(path)
        self.settings = json.loads(json.dumps(settings, default=str)) if settings is not None else None
        self.cache: dict[str, dict[str, float]] = {}
        self.hits = self.misses = 0
        if self.path.is_dir():
            raise ScoreCacheError(f"{self.path} is a folder; --cache must name a file (e.g. {self.path / 'scores.jsonl'})")
        if self.path.exists():
            self._load()
        if self.settings is not None and not self.path.exists():
            self._append([json.dumps({"settings": self.settings})])

    def _load(self) -> None:
        lines = self.path.read_text().splitlines()
        recorded = None
        for number, line in enumerate(lines, 1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                if number == len(lines):  # a line cut short by an interruption: drop it (and from the file)
                    atomic_write_text(self.path, "".join(f"{kept}\n" for kept in lines[:-1]))
                    continue
                raise ScoreCacheError(f"{self.path}: line {number} is not JSON; delete the file to rescore") from None
            if "settings" in row:
                recorded = row["settings"]
                continue
            self.cache[row["hash"]] = row["metrics"]
        self._check(recorded)

    def _check(self, recorded: dict | None) -> None:
        from mergemix_jax.eval.results import settings_differences

        if self.settings is None:
            return
        if recorded is None:
            if self.cache:
                log.warning("%s records no settings (written by an older mergemix); its scores cannot be checked against this search", self.path)
            return
        differences = settings_differences(recorded, self.settings, SEARCH_SETTING_SOURCES)
        if differences:
            raise ScoreCacheError(
                f"{self.path} holds scores of another search, which cannot be mixed with this one's: " + "; ".join(differences)
                + "; pass a new --cache file or delete this one"
            )

    def _append(self, lines: list[str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write("\n".join(lines) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

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
            self._append(lines)
        names = self.cache[keys[0]].keys()
        return {name: np.asarray([self.cache[k][name] for k in keys], np.float64) for name in names}
