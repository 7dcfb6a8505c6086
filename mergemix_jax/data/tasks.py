"""Evaluation task files: JSONL, one item per line, validated on load.

Multiple choice:  {"id": str, "context": str, "choices": [str, ...], "answer": int}
Exact answer:     {"id": str, "context": str, "answer": str}

A file is named `<task>.jsonl`. A scorer concatenates context + continuation tokens and scores
the log-likelihood of the continuation tokens only: for multiple choice the item is right when the
correct choice has the highest log-likelihood; for an exact answer the log-likelihood of the
answer (and whether greedy decoding reproduces it) is the score. Extra keys are allowed and kept
in `meta`. See mergemix_jax/demo_data/README.md.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from mergemix_jax.data.errors import DataError


@dataclass(frozen=True)
class TaskItem:
    """One evaluation item; `choices` is None for an exact-answer item."""

    id: str
    context: str
    answer: int | str
    choices: tuple[str, ...] | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def is_multiple_choice(self) -> bool:
        return self.choices is not None

    @property
    def continuations(self) -> tuple[str, ...]:
        """The strings to score after `context`: every choice, or the single exact answer."""
        return self.choices if self.choices is not None else (str(self.answer),)

    @property
    def correct_index(self) -> int:
        """Index of the right continuation in `continuations`."""
        return int(self.answer) if self.choices is not None else 0


def task_name(path: str | os.PathLike) -> str:
    """The task name of a task file: its file name without `.jsonl`."""
    return os.path.basename(os.fspath(path)).removesuffix(".jsonl")


def load_tasks(path: str | os.PathLike) -> list[TaskItem]:
    """Read and validate a task file; any bad line raises `DataError` naming the file and line."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"task file {path} does not exist")
    items: list[TaskItem] = []
    seen: dict[str, int] = {}
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            where = f"task file {path} line {line_no}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataError(f"{where} is not valid UTF-8 ({err.reason})") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{where} is not valid JSON ({err.msg})") from None
            item = _parse_item(record, where)
            if item.id in seen:
                raise DataError(f"{where}: id {item.id!r} already used on line {seen[item.id]}; ids must be unique")
            if items and item.is_multiple_choice != items[0].is_multiple_choice:
                kinds = [_kind(items[0]), _kind(item)]
                raise DataError(f"{where} is {kinds[1]} but line {seen[items[0].id]} is {kinds[0]}; one task file holds one kind of item: split it into two files")
            seen[item.id] = line_no
            items.append(item)
    if not items:
        raise DataError(f"task file {path} holds no items")
    return items


def load_task_dir(folder: str | os.PathLike) -> dict[str, list[TaskItem]]:
    """Every `<task>.jsonl` in `folder`, by task name (sorted)."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise DataError(f"task folder {folder} does not exist")
    files = sorted(f for f in os.listdir(folder) if f.endswith(".jsonl"))
    if not files:
        raise DataError(f"task folder {folder} holds no .jsonl task files")
    return {task_name(f): load_tasks(os.path.join(folder, f)) for f in files}


def _kind(item: TaskItem) -> str:
    return "a multiple-choice item (with 'choices')" if item.is_multiple_choice else "an exact-answer item (no 'choices')"


def _parse_item(record: Any, where: str) -> TaskItem:
    if not isinstance(record, dict):
        raise DataError(f"{where}: each line must be a JSON object, got {type(record).__name__}")
    missing = [k for k in ("id", "context", "answer") if k not in record]
    if missing:
        raise DataError(f"{where}: missing field(s) {missing}; an item needs id, context, answer (and choices for multiple choice)")
    item_id, context, answer = record["id"], record["context"], record["answer"]
    if not isinstance(item_id, str) or not item_id:
        raise DataError(f"{where}: field 'id' must be a non-empty string, got {item_id!r}")
    if not isinstance(context, str):
        raise DataError(f"{where}: field 'context' must be a string, got {type(context).__name__}")
    meta = {k: v for k, v in record.items() if k not in ("id", "context", "answer", "choices")}
    if "choices" not in record:
        if not isinstance(answer, str) or not answer:
            raise DataError(f"{where}: an exact-answer item needs 'answer' as a non-empty string, got {answer!r} (add 'choices' for multiple choice)")
        return TaskItem(item_id, context, answer, None, meta)
    choices = record["choices"]
    if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) and c for c in choices):
        raise DataError(f"{where}: field 'choices' must be a list of at least 2 non-empty strings")
    if isinstance(answer, bool) or not isinstance(answer, int):
        raise DataError(f"{where}: field 'answer' of a multiple-choice item must be an integer index, got {answer!r}")
    if not 0 <= answer < len(choices):
        raise DataError(f"{where}: answer index {answer} is out of range for {len(choices)} choices (0..{len(choices) - 1})")
    return TaskItem(item_id, context, answer, tuple(choices), meta)
