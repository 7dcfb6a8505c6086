"""One CSV results file per job, appended chunk by chunk and safe to resume.

Columns: `row` (index into the job's weight table), `weights_hash` (see `weights_hash`), one
`w/<expert>` column per expert, then one column per metric. The header is written atomically
(temp file + os.replace); each chunk's rows are appended and fsync'ed. A job killed mid-append
leaves at most one partial last line, which `open_results` cuts off; any other malformed line is
reported as corruption rather than guessed at. Beside it, `<file>.settings.json` records everything
else that determines a score (`score_settings`); a rerun with other settings is refused rather than
appended to the same table.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mergemix_jax.config.hashing import config_hash
from mergemix_jax.merge.operators import MERGE_OPERATORS
from mergemix_jax.reliability.atomic import atomic_write_json, atomic_write_text

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


# what each recorded setting stands for, in the words of the option that changes it
SETTING_SOURCES = {
    "experts": "the expert names (--experts folders)",
    "base": "the base parameters (--base)",
    "expert_params": "the expert parameters (--experts)",
    "suite": "the evaluation data (data.*, eval.heldout_sequences, eval.seq_len, eval.heldout_offset, eval.task_dir, eval.task_max_len, eval.task_max_items, eval.task_offset)",
    "compute_dtype": "model.compute_dtype",
    "merge": "eval.merge",
    "merge_scale": "eval.merge_scale",
    **{name: f"eval.{name}" for operator in MERGE_OPERATORS.values() for name in operator.settings},  # e.g. ties_density
    "proxy": "--proxy",
    "objective": "eval.objective",
    "quadratic_tol": "eval.quadratic_tol",
    "quadratic_max_centres": "eval.quadratic_max_centres",
    "quadratic_radius": "eval.quadratic_radius",
}


def score_settings(model_cfg, stack, suite, eval_cfg, proxy: str) -> dict:
    """Everything that determines a score besides the weights: which parameters are merged, how, on what, by which proxy.

    Parameters and the suite enter by content (reliability/lineage.py), so a folder trained again
    or an evaluation set cut differently is a different setting even under the same names.
    """
    from mergemix_jax.reliability.lineage import params_fingerprint

    settings = {
        "experts": list(stack.names),
        "base": params_fingerprint(stack.base),
        "expert_params": params_fingerprint(stack.experts),
        "suite": params_fingerprint(suite, samples_per_leaf=None),
        "compute_dtype": model_cfg.compute_dtype,
        "merge": eval_cfg.merge,
        "merge_scale": eval_cfg.merge_scale,
        "proxy": proxy,
    }
    if stack.dilution is not None:  # diluted experts: the mixtures are merged with corrected weights
        settings["dilution"] = {"share": stack.dilution.share, "general": list(stack.dilution.general)}
    operator = MERGE_OPERATORS.get(eval_cfg.merge)
    settings.update({name: getattr(eval_cfg, name) for name in (operator.settings if operator else ())})  # e.g. ties_density
    if proxy == "quadratic":
        settings.update(objective=eval_cfg.objective, quadratic_tol=eval_cfg.quadratic_tol, quadratic_max_centres=eval_cfg.quadratic_max_centres, quadratic_radius=eval_cfg.quadratic_radius)
    return settings


def settings_differences(recorded: dict, current: dict, sources: dict[str, str] | None = None) -> list[str]:
    """'merge (eval.merge): 'linear' in the file, 'ties' now' for every setting that differs."""
    sources = SETTING_SOURCES if sources is None else sources
    keys = sorted(set(recorded) | set(current), key=lambda k: (list(sources).index(k) if k in sources else len(sources), k))
    return [
        f"{key}{f' ({sources[key]})' if key in sources else ''}: {recorded.get(key, '(not set)')!r} in the file, {current.get(key, '(not set)')!r} now"
        for key in keys
        if recorded.get(key) != current.get(key)
    ]


def settings_path(path: str | os.PathLike) -> Path:
    """The file beside a results file that records its score settings."""
    return Path(f"{path}.settings.json")


def _check_settings(path: Path, settings: dict, has_rows: bool) -> None:
    """Refuse to continue a results file begun with other settings; record them for a new (or older) file."""
    recorded_path = settings_path(path)
    if recorded_path.is_file():
        try:
            recorded = json.loads(recorded_path.read_text())["settings"]
        except (OSError, ValueError, KeyError, TypeError):
            raise ResultsFileError(f"{recorded_path} is unreadable; delete it together with {path} to rescore") from None
        differences = settings_differences(recorded, settings)
        if differences:
            raise ResultsFileError(
                f"{path} was begun with other evaluation settings, so its scores cannot be mixed with this job's: "
                + "; ".join(differences)
                + "; write to a new --out file or delete this one (and its .settings.json)"
            )
        return
    if has_rows:
        log.warning("%s records no evaluation settings (written by an older mergemix); it cannot be checked against this job's, recording them now", path)
    atomic_write_json(recorded_path, {"settings_hash": config_hash(settings, compact=False), "settings": settings})


def _start_settings(path: Path, settings: dict | None) -> None:
    """Record `settings` for a results file about to be (re)started, replacing a stale record."""
    if settings is not None:
        settings_path(path).unlink(missing_ok=True)
        _check_settings(path, settings, has_rows=False)


def open_results(path: str | os.PathLike, columns: Sequence[str], settings: dict | None = None) -> dict[int, str]:
    """Create `path` with `columns` as header, or check an existing one; return {row: weights_hash} already scored.

    With `settings` (see `score_settings`), they are recorded beside a new file and an existing file
    begun with other settings is refused, naming each setting that differs.
    """
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        _start_settings(path, settings)
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
        _start_settings(path, settings)
        atomic_write_text(path, _csv_line(columns))
        return {}
    if lines[0] != list(columns):
        raise ResultsFileError(
            f"{path}: its columns {lines[0]} differ from this job's {list(columns)} (other experts, metrics or suite); "
            "write to a new --out file or delete this one"
        )
    if settings is not None:
        _check_settings(path, settings, has_rows=len(lines) > 1)
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


def read_table(path: str | os.PathLike, domains: Sequence[str]) -> dict:
    """{"weights": [B, K], "metrics": {name: [B]}} from a results CSV, in row order (K = `domains`)."""
    columns = read_results(path)
    skip = {"row", "weights_hash", *[f"w/{d}" for d in domains]}
    weights = np.stack([columns[f"w/{d}"] for d in domains], axis=1) if len(columns["row"]) else np.zeros((0, len(domains)))
    return {"weights": weights, "metrics": {k: v for k, v in columns.items() if k not in skip}}


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
