"""Read the mixtures a user asks to score (`eval-mixtures --weights FILE`) and refuse anything ambiguous.

A weights file is a CSV with one mixture per row. With a header, columns are matched by expert
name (or `w/<expert>`, the layout of a results file, whose other columns are then ignored); without
one, each row holds exactly K numbers in expert order. Other named columns (a `note`) are ignored
with a warning, but a row with more values than the header names, or a header naming a column
twice, is refused. Rows must lie on the simplex (>= 0, sum 1):
a row such as `5,5,5,5` is refused rather than scored as an extrapolated model, unless the caller
asks for `normalize=True`, which divides each row by its sum and says so in the log.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence

import numpy as np

from mergemix_jax.merge.weights import validate_weights

log = logging.getLogger(__name__)

SUM_TOLERANCE = 1e-3  # weights written with 3-4 decimals still count as summing to 1


class WeightsFileError(ValueError):
    """A weights file that cannot be read without guessing; the message names the line and the fix."""


def read_weights_file(path: str | os.PathLike, expert_names: Sequence[str], normalize: bool = False) -> np.ndarray:
    """[B, K] float32 mixtures from `path` (see the module doc); K = len(expert_names)."""
    lines = _read_lines(path)
    header = None if _numeric(lines[0][1]) else [cell.strip() for cell in lines[0][1]]
    body = lines if header is None else lines[1:]
    columns = _columns(path, header, list(expert_names))
    width = len(expert_names) if header is None else len(header)
    rows = []
    for number, cells in body:
        if len(cells) != width:
            what = f"the header names {width} columns" if header is not None else f"there are {width} experts {list(expert_names)}"
            raise WeightsFileError(f"{path} line {number}: {len(cells)} values, but {what}; give every row one value per column")
        try:
            rows.append([float(cells[c]) for c in columns])
        except ValueError:
            raise WeightsFileError(f"{path} line {number}: expected numbers in the expert columns, got {cells}") from None
    if not rows:
        raise WeightsFileError(f"{path}: a header but no weight rows; add one row per mixture")
    try:
        weights = validate_weights(np.asarray(rows, np.float64), len(expert_names), source=str(path)).astype(np.float64)
    except ValueError as err:
        raise WeightsFileError(str(err)) from None
    return _on_simplex(path, weights, [number for number, _ in body], normalize).astype(np.float32)


def _read_lines(path: str | os.PathLike) -> list[tuple[int, list[str]]]:
    """The non-blank CSV rows of `path` with their line numbers; UTF-8 with or without the byte-order
    mark a spreadsheet writes ("utf-8-sig"); any other encoding is refused naming the file."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            lines = [(number, row) for number, row in enumerate(csv.reader(handle), start=1) if row and any(cell.strip() for cell in row)]
    except UnicodeDecodeError as err:
        raise WeightsFileError(
            f"{path} is not UTF-8 text (byte {err.start}: {err.reason}; a UTF-16 export?); save it as CSV UTF-8 (in a spreadsheet: "
            "'CSV UTF-8 (comma delimited)') and run again"
        ) from None
    if any("\x00" in cell for _, row in lines for cell in row):
        raise WeightsFileError(f"{path} holds NUL characters (a UTF-16 or binary file?); save it as CSV UTF-8 and run again")
    if not lines:
        raise WeightsFileError(f"{path}: no weight rows; write one mixture per row (a header naming the experts first)")
    return lines


def _numeric(cells: Sequence[str]) -> bool:
    try:
        [float(cell) for cell in cells]
    except ValueError:
        return False
    return True


def _columns(path, header: list[str] | None, names: list[str]) -> list[int]:
    """Column index of each expert; checks the header names each expert once and nothing unknown."""
    if header is None:
        return list(range(len(names)))
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise WeightsFileError(f"{path}: the header names {repeated} more than once; keep one column per expert")
    results_layout = any(h.startswith("w/") for h in header)
    keys = [f"w/{n}" if results_layout else n for n in names]
    missing = [n for n, key in zip(names, keys, strict=True) if key not in header]
    if missing:
        raise WeightsFileError(f"{path}: header {header} lacks columns for experts {missing}; name one column per expert ({names})")
    unknown = [h for h in header if h not in keys]
    if unknown and not results_layout:  # labels such as a `note` column; their values are never read as weights
        log.warning("%s: columns %s name no expert (experts: %s) and are ignored", path, unknown, names)
    return [header.index(key) for key in keys]


def _on_simplex(path, weights_BxK: np.ndarray, line_numbers: list[int], normalize: bool) -> np.ndarray:
    sums = weights_BxK.sum(axis=1)
    off = np.flatnonzero(np.abs(sums - 1.0) > SUM_TOLERANCE)
    if len(off) == 0:
        return weights_BxK
    if not normalize:
        i = int(off[0])
        raise WeightsFileError(
            f"{path} line {line_numbers[i]}: the weights {weights_BxK[i].tolist()} sum to {sums[i]:g}, not 1 ({len(off)} such row(s)); "
            "a mixture lies on the simplex: divide each row by its sum, or pass --normalize-weights to have that done"
        )
    log.warning("%s: %d row(s) did not sum to 1 (e.g. line %d sums to %g); divided each by its sum (--normalize-weights)", path, len(off), line_numbers[int(off[0])], sums[int(off[0])])
    return weights_BxK / sums[:, None]
