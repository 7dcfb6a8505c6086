"""Tokenise evaluation task items into fixed padded arrays in the batch format.

Every (item, choice) pair becomes one row: inputs/targets are context+continuation tokens shifted
by one, and `loss_mask` is 1 exactly on the targets that are continuation tokens, so a masked sum
of token NLLs is the continuation's negative log-likelihood. The arrays are built once and reused
for every mixture (common random numbers).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import jax
import numpy as np

from mergemix_jax.config.registries import TASK_METRICS
from mergemix_jax.data.errors import DataError
from mergemix_jax.data.tokenizer import Tokenizer
from mergemix_jax.eval.metrics import answer_metrics, choice_metrics

CHOICE, ANSWER = "choice", "answer"


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class TaskArrays:
    """One task as arrays. batch: the batch-format dict, [N*C, L] per key (item-major, C choices
    per item, padded); choice_mask [N, C] (True where item n has choice c); answer [N] int32
    (index of the correct choice; 0 for exact-answer tasks, which have C = 1)."""

    batch: dict
    choice_mask: np.ndarray
    answer: np.ndarray
    name: str = field(default="", metadata={"static": True})
    kind: str = field(default=CHOICE, metadata={"static": True})


def task_kind(items: Sequence[Mapping], task: str) -> str:
    """The registered kind (TASK_KINDS) of a task's items: the first kind each item matches, e.g.
    "choice" when items carry `choices`, "answer" otherwise; mixed kinds are an error."""
    if not items:
        raise ValueError(f"task {task!r} has no items")
    kinds = {next(name for name, kind in TASK_KINDS.items() if kind.matches(item)) for item in items}
    if len(kinds) > 1:
        raise DataError(f"task {task!r} mixes multiple-choice items (with 'choices') and exact-answer items ({sorted(kinds)}); split it in two files")
    return kinds.pop()


def _continuations(item: Mapping, kind: str, task: str, index: int) -> tuple[list[str], int]:
    where = f"task {task!r} item {item.get('id', index)!r} (line {index + 1})"
    if not isinstance(item.get("context"), str):
        raise ValueError(f"{where}: 'context' must be a string")
    return TASK_KINDS[kind].continuations(item, where)


def _answer_continuations(item: Mapping, where: str) -> tuple[list[str], int]:
    answer = item.get("answer")
    if not isinstance(answer, str) or not answer:
        raise ValueError(f"{where}: exact-answer items need a non-empty string 'answer'")
    return [answer], 0


def _choice_continuations(item: Mapping, where: str) -> tuple[list[str], int]:
    answer, choices = item.get("answer"), item.get("choices")
    if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) and c for c in choices):
        raise ValueError(f"{where}: 'choices' must be a list of at least two non-empty strings")
    if not isinstance(answer, int) or isinstance(answer, bool) or not 0 <= answer < len(choices):
        raise ValueError(f"{where}: 'answer' must be an int index into its {len(choices)} choices, got {answer!r}")
    return choices, answer


def as_mapping(item) -> Mapping:
    """A task item as a dict: JSON dicts pass through; objects with id/context/answer/choices
    attributes (mergemix_jax.data.TaskItem) are converted."""
    if isinstance(item, Mapping):
        return item
    out = {"id": item.id, "context": item.context, "answer": item.answer}
    if getattr(item, "choices", None) is not None:
        out["choices"] = list(item.choices)
    return out


def tokenize_task(items: Sequence, tokenizer: Tokenizer, task: str = "task", max_len: int = 0, truncate: bool = False) -> TaskArrays:
    """Arrays for one task's items (see module doc). `max_len` > 0 caps the row length by dropping
    the oldest context tokens; a continuation that alone does not fit is an error, unless `truncate`:
    then only its first tokens are scored, as many as fit beside the last max(1, max_len // 4)
    context tokens (every choice of an item cut to the same budget)."""
    items = [as_mapping(item) for item in items]
    kind = task_kind(items, task)
    bos = getattr(tokenizer, "bos_id", None)
    rows: list[tuple[list[int], int]] = []  # (tokens, number of continuation tokens)
    parsed = [_continuations(item, kind, task, i) for i, item in enumerate(items)]
    num_choices = max(len(c) for c, _ in parsed)
    for index, (item, (conts, _)) in enumerate(zip(items, parsed, strict=True)):
        context = ([bos] if bos is not None else []) + list(tokenizer.encode(item["context"]))
        for cont in conts:
            cont_ids = list(tokenizer.encode(cont))
            if not cont_ids:
                raise ValueError(f"task {task!r} item {item.get('id', index)!r}: continuation {cont!r} encodes to no tokens")
            if truncate and max_len:
                cont_ids = cont_ids[: max_len + 1 - min(len(context), max(1, max_len // 4))]
            if not context:
                raise ValueError(
                    f"task {task!r} item {item.get('id', index)!r}: empty context and the tokenizer has no bos_id, "
                    "so the first continuation token cannot be scored; give a context"
                )
            tokens = context + cont_ids
            if max_len and len(tokens) - 1 > max_len:
                if len(cont_ids) > max_len:
                    raise DataError(
                        f"task {task!r} ({task}.jsonl in eval.task_dir) item {item.get('id', index)!r}: continuation of {len(cont_ids)} tokens "
                        f"exceeds max_len={max_len} (eval.task_max_len); raise eval.task_max_len (up to model.max_seq_len) or shorten that item"
                    )
                tokens = tokens[len(tokens) - 1 - max_len :]
            rows.append((tokens, len(cont_ids)))
        rows.extend(([tokenizer.pad_id, tokenizer.pad_id], 0) for _ in range(num_choices - len(conts)))
    length = max(len(tokens) - 1 for tokens, _ in rows)
    batch = _rows_to_batch(rows, length, tokenizer.pad_id)
    choice_mask = np.array([[c < len(conts) for c in range(num_choices)] for conts, _ in parsed], dtype=bool)
    answer = np.array([a for _, a in parsed], dtype=np.int32)
    return TaskArrays(batch=batch, choice_mask=choice_mask, answer=answer, name=task, kind=kind)


def _rows_to_batch(rows: list[tuple[list[int], int]], length: int, pad_id: int) -> dict:
    n = len(rows)
    inputs = np.full((n, length), pad_id, np.int32)
    targets = np.full((n, length), pad_id, np.int32)
    segment_ids = np.zeros((n, length), np.int32)
    loss_mask = np.zeros((n, length), np.float32)
    for r, (tokens, n_cont) in enumerate(rows):
        span = len(tokens) - 1
        inputs[r, :span] = tokens[:-1]
        targets[r, :span] = tokens[1:]
        if n_cont:
            segment_ids[r, :span] = 1
            loss_mask[r, span - n_cont : span] = 1.0
    positions = np.broadcast_to(np.arange(length, dtype=np.int32), (n, length)).copy()
    return {"inputs": inputs, "targets": targets, "positions": positions, "segment_ids": segment_ids, "loss_mask": loss_mask}


def _choice_scores(nll_R: jax.Array, count_R: jax.Array, greedy_ok_R: jax.Array, task: TaskArrays) -> dict:
    shape = task.choice_mask.shape
    return choice_metrics(-nll_R.reshape(shape), count_R.reshape(shape), task.choice_mask, task.answer)


def _answer_scores(nll_R: jax.Array, count_R: jax.Array, greedy_ok_R: jax.Array, task: TaskArrays) -> dict:
    return answer_metrics(nll_R, count_R, greedy_ok_R)


@dataclass(frozen=True)
class TaskKind:
    """One kind of evaluation task: which items it takes, their continuations (strings, index of the
    correct one), the metric prefixes it yields and how they are scored from per-row NLLs [R]
    (rows item-major, `task.choice_mask.shape[1]` per item)."""

    matches: Callable[[Mapping], bool]
    continuations: Callable[[Mapping, str], tuple[list[str], int]]
    metrics: tuple[str, ...]
    score: Callable[[jax.Array, jax.Array, jax.Array, TaskArrays], dict]


# The one registry of task kinds; adding a kind = its functions + one entry (the first match wins).
TASK_KINDS: dict[str, TaskKind] = {
    CHOICE: TaskKind(lambda item: "choices" in item, _choice_continuations, TASK_METRICS[CHOICE], _choice_scores),
    ANSWER: TaskKind(lambda item: "choices" not in item, _answer_continuations, TASK_METRICS[ANSWER], _answer_scores),
}
