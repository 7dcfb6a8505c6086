"""The one settings hash: a short, stable name for a dict of settings (a config, a scoring setup).

`config_hash` names run folders (`runkit.run_dir`, 8 hex), validate folders and evaluation-suite
caches (8 hex), the mixture file's provenance (16 hex), the settings recorded beside a results CSV
and the ensemble's log-probability cache (16 hex, `compact=False`: json's default separators,
kept so that files written before still match).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def config_hash(settings: Any, length: int = 16, *, compact: bool = True) -> str:
    """sha256 (first `length` hex digits) of the canonical JSON of `settings`: keys sorted, values
    JSON cannot hold written as str. The same settings in any key order give the same hash."""
    separators = (",", ":") if compact else None
    blob = json.dumps(settings, sort_keys=True, separators=separators, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]
