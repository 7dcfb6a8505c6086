"""Turn the errors a user can cause (bad config, missing or foreign checkpoint, unwritable output,
a wrong command-line option) into one line naming the thing and the fix; anything else is a bug and
keeps its traceback. `mergemix --debug COMMAND` shows the traceback of user errors too.

Commands raise `UsageError` for a wrong option; they never print a user error themselves or
raise SystemExit, so every command ends the same way: one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
from pathlib import Path


class UsageError(ValueError):
    """A wrong or missing command-line option or argument; the message names it and the fix."""


# (module, class) of every error whose message already names the thing and the fix
USER_ERRORS = (
    ("mergemix_jax.cli.errors", "UsageError"),
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
    if isinstance(err, ValueError):  # a value the command refused; --debug tells an unforeseen one (a bug) by its traceback
        return f"{err or type(err).__name__} (`mergemix --debug ...` shows where)"
    return None


def is_shutdown_noise(unraisable) -> bool:
    """True for the "Event loop is closed" errors TensorStore's callbacks raise after orbax has given
    up on a damaged checkpoint: dozens of tracebacks that say nothing beyond the one-line error."""
    value = getattr(unraisable, "exc_value", None)
    return isinstance(value, RuntimeError) and "Event loop is closed" in str(value)


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
    """The command-line option (`--out`) or config override (`train.output_dir`) that set `path`: the
    one naming `path` itself, else the one whose folder holds it, else one naming a path inside it."""
    if args is None:
        return ""
    target = os.path.abspath(path)
    candidates = [(f"--{name.replace('_', '-')}", value) for name, value in vars(args).items() if isinstance(value, str) and name not in ("command", "config")]
    candidates += [tuple(item.split("=", 1)) for item in getattr(args, "overrides", None) or [] if "=" in item]
    given = [(name, os.path.abspath(value)) for name, value in candidates if value]
    for matches in (
        lambda g: target == g,
        lambda g: target.startswith(g + os.sep),
        lambda g: g.startswith(target + os.sep),
    ):
        for name, value in given:
            if matches(value):
                return name
    return ""
