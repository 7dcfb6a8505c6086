"""Contamination check: no evaluation item's text may appear in a training split.

An item is flagged when one of its long lines (context or correct continuation, whitespace
collapsed, at least `min_chars` characters, so boilerplate such as "Answer:" or a short code line
never matches by chance) occurs verbatim in a training document of any domain. Training text is
streamed one document at a time and scanned in ~8 MB blocks; at most `max_bytes` per domain are
read (a sample on very large corpora, said in the result). Results are cached per corpus and task set.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mergemix_jax.config.schema import DataConfig
from mergemix_jax.data.sources import index_all, iter_documents
from mergemix_jax.data.tasks import TaskItem

log = logging.getLogger(__name__)
_SPACE = re.compile(r"\s+")
_BLOCK_CHARS = 8 << 20
_CACHE: dict[str, ContaminationReport] = {}


@dataclass(frozen=True)
class ContaminationReport:
    """Flagged items as (task, item id, domain, the matching text), and how much text was read."""

    hits: tuple[tuple[str, str, str, str], ...]
    checked_items: int
    bytes_read: dict[str, int]
    truncated: tuple[str, ...]  # domains read only up to max_bytes

    def message(self) -> str:
        """One paragraph for the log."""
        if not self.hits:
            return f"contamination check: none of {self.checked_items} task items' text occurs in a training split"
        tasks = sorted({h[0] for h in self.hits})
        shown = "; ".join(f"{t}/{i} in {d}: {text[:60]!r}" for t, i, d, text in self.hits[:5])
        return (
            f"contamination check: {len(self.hits)} of {self.checked_items} task items occur verbatim in a training split "
            f"(tasks {tasks}): {shown}. Their scores reward memorisation; remove them from the task files or the corpus"
        )


def normalise_text(text: str) -> str:
    """Lower-case text with every whitespace run collapsed to one space."""
    return _SPACE.sub(" ", text).strip().lower()


def item_needles(item: TaskItem, min_chars: int = 50) -> list[str]:
    """The item's lines (context and correct continuation) long enough to identify it."""
    text = item.context + item.continuations[item.correct_index]
    lines = (normalise_text(line) for line in text.splitlines())
    return sorted({line for line in lines if len(line) >= min_chars})


def _blocks(data_cfg: DataConfig, domain: str, index, max_bytes: int):
    """Normalised training text of one domain in blocks; yields (block, bytes so far, truncated)."""
    parts, size, total = [], 0, 0
    for doc in iter_documents(index, "train"):
        text = normalise_text(doc)
        parts.append(text)
        size += len(text)
        total += len(text)
        if size >= _BLOCK_CHARS or total >= max_bytes:
            yield "\0".join(parts), total, total >= max_bytes
            parts, size = [], 0
            if total >= max_bytes:
                return
    if parts:
        yield "\0".join(parts), total, False


def check_contamination(
    data_cfg: DataConfig, tasks: Mapping[str, Sequence[TaskItem]], min_chars: int = 50, max_bytes: int = 256 << 20
) -> ContaminationReport:
    """Scan every domain's training split for every item's long lines (see module doc)."""
    needles = {(task, item.id): item_needles(item, min_chars) for task, items in tasks.items() for item in items}
    key = hashlib.sha256(repr((data_cfg, sorted(needles.items()), min_chars, max_bytes)).encode()).hexdigest()
    if key in _CACHE:
        return _CACHE[key]
    hits: dict[tuple[str, str], tuple[str, str]] = {}
    read, truncated = {}, []
    for domain, index in index_all(data_cfg).items():
        read[domain] = 0
        for block, total, cut in _blocks(data_cfg, domain, index, max_bytes):
            read[domain] = total
            for item_key, lines in needles.items():
                if item_key not in hits:
                    found = next((line for line in lines if line in block), None)
                    if found is not None:
                        hits[item_key] = (domain, found)
            if cut:
                truncated.append(domain)
    report = ContaminationReport(
        hits=tuple((t, i, d, text) for (t, i), (d, text) in sorted(hits.items())),
        checked_items=len(needles),
        bytes_read=read,
        truncated=tuple(truncated),
    )
    _CACHE[key] = report
    return report


def warn_contamination(data_cfg: DataConfig, tasks: Mapping[str, Sequence[TaskItem]]) -> ContaminationReport:
    """Run the check and log its result (a warning when any item is flagged)."""
    report = check_contamination(data_cfg, tasks)
    (log.warning if report.hits else log.info)("%s", report.message())
    if report.truncated:
        log.warning("contamination check read only the first %d MB of domain(s) %s", 256, list(report.truncated))
    return report
