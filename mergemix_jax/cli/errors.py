"""Turn the errors a user can cause (bad config, missing or foreign checkpoint, unwritable output)
into one line naming the thing and the fix; anything else is a bug and keeps its traceback."""

from __future__ import annotations

import argparse
import errno
import importlib
import os
from pathlib import Path

# (module, class) of every error whose message already names the thing and the fix
USER_ERRORS = (
    ("mergemix_jax.config.loading", "ConfigError"),
    ("mergemix_jax.train.checkpoint", "CheckpointError"),
    ("mergemix_jax.train.loop", "TrainingDiverged"),
    ("mergemix_jax.interop.llama_layout", "InteropError"),
    ("mergemix_jax.eval.results", "ResultsFileError"),
    ("mergemix_jax.eval.weights_file", "WeightsFileError"),
    ("mergemix_jax.search.cache", "ScoreCacheError"),
    ("mergemix_jax.reliability.resources", "DiskFullError"),
    ("mergemix_jax.reliability.resources", "OutOfMemoryError"),
)


def _user_error_types() -> tuple[type, ...]:
    """The USER_ERRORS classes (imported only now: `mergemix --help` stays free of jax and orbax)."""
    return tuple(getattr(importlib.import_module(module), name) for module, name in USER_ERRORS)


def user_error_message(err: BaseException, args: argparse.Namespace | None = None) -> str | None:
    """One line for an error the user can fix, or None for a bug (which keeps its traceback)."""
    if isinstance(err, _user_error_types()):
        config = type(err).__name__ in ("ConfigError", "DataError")
        return f"{'config error: ' if config else ''}{err}"
    if isinstance(err, OSError):
        return os_error_message(err, args)
    return None


def os_error_message(err: OSError, args: argparse.Namespace | None = None) -> str:
    """`err` as what went wrong with which path, which option set that path, and what to do."""
    path = err.filename if err.filename is not None else ""
    option = _option_naming(str(path), args) if path else ""
    where = f" (from {option})" if option else ""
    code = err.errno
    if code == errno.ENOTDIR or (code == errno.EEXIST and Path(path).is_file()):
        blocker = _file_in_the_way(Path(path))
        fix = f"{blocker} is a file, not a folder; choose another path or move that file away"
        return f"cannot create {path}{where}: {fix}"
    if code == errno.EISDIR:
        return f"{path}{where} is a folder, but a file is needed here; give a file name (e.g. {Path(path) / 'results.csv'})"
    if code in (errno.EACCES, errno.EPERM):
        return f"permission denied for {path}{where}; choose a folder you can write to, or change its permissions"
    if code == errno.EROFS:
        return f"{path}{where} is on a read-only file system; choose another output folder"
    if code == errno.ENOENT:
        return f"{path}{where} does not exist; check the path"
    if code == errno.ENOSPC:
        return f"disk full while writing {path}{where}; free space on that disk or write elsewhere"
    return f"{err.strerror or err} for {path}{where}" if path else str(err)


def _file_in_the_way(path: Path) -> Path:
    """The nearest existing ancestor of `path` (or `path` itself) that is a regular file."""
    for candidate in (path, *path.parents):
        if candidate.is_file():
            return candidate
    return path


def _option_naming(path: str, args: argparse.Namespace | None) -> str:
    """The command-line option (`--out`) or config override (`train.output_dir`) whose value `path` lies under."""
    if args is None:
        return ""
    target = os.path.abspath(path)
    candidates = [(f"--{name.replace('_', '-')}", value) for name, value in vars(args).items() if isinstance(value, str) and name not in ("command", "config")]
    candidates += [tuple(item.split("=", 1)) for item in getattr(args, "overrides", None) or [] if "=" in item]
    for name, value in candidates:
        given = os.path.abspath(value) if value else ""
        if given and (target == given or target.startswith(given + os.sep) or given.startswith(target + os.sep)):
            return name
    return ""
