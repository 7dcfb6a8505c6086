"""One CSV results file per job, appended chunk by chunk and safe to resume.

Columns: `row` (index into the job's weight table), `weights_hash` (see `weights_hash`), one
`w/<expert>` column per expert, then one column per metric. The header is written atomically
(temp file + os.replace); each chunk's rows are appended and fsync'ed. A job killed mid-append
leaves at most one partial last line, which `open_results` cuts off; any other malformed line is
reported as corruption rather than guessed at.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mergemix_jax.reliability.atomic import atomic_write_text

log = logging.getLogger(__name__)


class ResultsFileError(ValueError):
    """A results file that does not belong to this job or is corrupt; the message says what to do."""


def result_columns(expert_names: Sequence[str], metric_names: Sequence[str]) -> list[str]:
    """The header of a results file."""
    return ["row", "weights_hash", *[f"w/{n}" for n in expert_names], *metric_names]


def _csv_line(values: Sequence) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue()


def open_results(path: str | os.PathLike, columns: Sequence[str]) -> dict[int, str]:
    """Create `path` with `columns` as header, or check an existing one; return {row: weights_hash} already scored."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, _csv_line(columns))
        return {}
    raw = path.read_text()
    if raw and not raw.endswith("\n"):
        complete = raw[: raw.rfind("\n") + 1]
        log.warning("%s: dropping a partial last line left by an interrupted write (%d bytes)", path, len(raw) - len(complete))
        atomic_write_text(path, complete)
        raw = complete
    lines = list(csv.reader(io.StringIO(raw)))
    if not lines:
        atomic_write_text(path, _csv_line(columns))
        return {}
    if lines[0] != list(columns):
        raise ResultsFileError(
            f"{path}: its columns {lines[0]} differ from this job's {list(columns)} (other experts, metrics or suite); "
            "write to a new --out file or delete this one"
        )
    done: dict[int, str] = {}
    for number, fields in enumerate(lines[1:], start=2):
        if len(fields) != len(columns):
            raise ResultsFileError(f"{path} line {number}: {len(fields)} fields, expected {len(columns)}; the file is corrupt, delete it to rescore")
        try:
            row = int(fields[0])
            [float(x) for x in fields[2:]]
        except ValueError:
            raise ResultsFileError(f"{path} line {number}: non-numeric value; the file is corrupt, delete it to rescore") from None
        if row in done:
            raise ResultsFileError(f"{path} line {number}: row {row} appears twice; the file is corrupt, delete it to rescore")
        done[row] = fields[1]
    return done


def append_results(path: str | os.PathLike, rows: Sequence[int], hashes: Sequence[str], weights_CxK: np.ndarray, metrics: dict[str, np.ndarray], metric_names: Sequence[str]) -> None:
    """Append one chunk of scored mixtures and fsync, so a crash loses at most this chunk."""
    text = "".join(
        _csv_line([int(row), h, *[repr(float(x)) for x in weights_CxK[i]], *[repr(float(metrics[m][i])) for m in metric_names]])
        for i, (row, h) in enumerate(zip(rows, hashes, strict=True))
    )
    with open(path, "a", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def read_results(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A results file as {column: array} sorted by row (hashes as strings, the rest as float/int)."""
    with open(path, newline="") as f:
        lines = list(csv.reader(f))
    if not lines:
        raise ResultsFileError(f"{path} is empty")
    header, body = lines[0], sorted(lines[1:], key=lambda r: int(r[0]))
    out: dict[str, np.ndarray] = {}
    for j, name in enumerate(header):
        column = [r[j] for r in body]
        out[name] = np.array(column) if name == "weights_hash" else np.array(column, dtype=np.int64 if name == "row" else np.float64)
    return out
