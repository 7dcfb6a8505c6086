"""Domain paths that are local files or URLs (gs://, s3://, hf://, memory://, ...), read through fsspec.

A path with "://" is a URL: fsspec finds its filesystem by protocol (gs:// needs gcsfs, s3:// s3fs;
`pip install 'mergemix-jax[gcs]'`). Everything else is a local path and goes through `os`, as before.
Remote objects are taken as immutable while a process runs: reads are keyed by path, while the
index and token-count caches key on each object's size and fsspec `ukey` (its metadata hash), so a
rewritten object is indexed again by the next job.
"""

from __future__ import annotations

import glob
import os
import posixpath
from typing import IO

from mergemix_jax.config.remote import url_problem
from mergemix_jax.data.errors import DataError


def is_url(path: str) -> bool:
    """True for `protocol://...` paths (read through fsspec)."""
    return "://" in path


def _fs(url: str):
    """(filesystem, path without protocol) of a URL; a DataError when it cannot be read here."""
    problem = url_problem(url)
    if problem:
        raise DataError(problem)
    from fsspec.core import url_to_fs

    return url_to_fs(url)


def normalize(path: str) -> str:
    """Absolute local path, or the URL unchanged."""
    return path if is_url(path) else os.path.abspath(path)


def expand_glob(pattern: str, folders: bool = False) -> list[str]:
    """The files (or, with `folders`, the folders) matching `pattern` (`**` recurses), sorted; URLs
    keep their protocol."""
    if not is_url(pattern):
        return sorted(p for p in glob.glob(pattern, recursive=True) if (os.path.isdir if folders else os.path.isfile)(p))
    fs, path = _fs(pattern)
    return sorted(fs.unstrip_protocol(p) for p in fs.glob(path) if (fs.isdir if folders else fs.isfile)(p))


def is_file(path: str) -> bool:
    """True when `path` is an existing file (or object)."""
    if not is_url(path):
        return os.path.isfile(path)
    fs, stripped = _fs(path)
    return fs.isfile(stripped)


def is_dir(path: str) -> bool:
    """True when `path` is an existing folder (or object prefix)."""
    if not is_url(path):
        return os.path.isdir(path)
    fs, stripped = _fs(path)
    return fs.isdir(stripped)


def file_size(path: str) -> int:
    """Size of a file in bytes."""
    if not is_url(path):
        return os.path.getsize(path)
    fs, stripped = _fs(path)
    return int(fs.size(stripped))


def file_stamp(path: str) -> tuple:
    """(path, size, version) of a file: a cache key that changes when the file does (local: mtime_ns;
    URL: fsspec's ukey, a hash of the object's metadata)."""
    if not is_url(path):
        st = os.stat(path)
        return (path, st.st_size, st.st_mtime_ns)
    fs, stripped = _fs(path)
    return (path, int(fs.size(stripped)), fs.ukey(stripped))


def read_version(path: str) -> int:
    """What keys the per-file reader caches: a local file's mtime_ns; 0 for a URL (immutable while running)."""
    return 0 if is_url(path) else os.stat(path).st_mtime_ns


def open_binary(path: str) -> IO[bytes]:
    """`path` opened for reading bytes (seekable; fsspec reads URLs in ranged blocks)."""
    if not is_url(path):
        return open(path, "rb")
    fs, stripped = _fs(path)
    return fs.open(stripped, "rb")


def read_range(path: str, start: int, end: int) -> bytes:
    """Bytes [start, end) of a file (a URL: one ranged request, no read-ahead)."""
    if not is_url(path):
        with open(path, "rb") as handle:
            handle.seek(start)
            return handle.read(end - start)
    fs, stripped = _fs(path)
    return fs.cat_file(stripped, start=start, end=end)


def join(folder: str, name: str) -> str:
    """`folder`/`name` for a local folder or a URL."""
    return posixpath.join(folder, name) if is_url(folder) else os.path.join(folder, name)


def relative_names(files: list[str]) -> list[str]:
    """Each file's path relative to the files' common folder (URLs: after the protocol), so keys
    derived from them survive moving a corpus, e.g. from a local folder to a bucket."""
    if not any(is_url(f) for f in files):
        root = os.path.commonpath([os.path.dirname(f) for f in files])
        return [os.path.relpath(f, root) for f in files]
    bare = [f.split("://", 1)[-1] for f in files]
    root = posixpath.commonpath([posixpath.dirname(f) for f in bare])
    return [posixpath.relpath(f, root) for f in bare]
