"""Domain sources: find a domain's files, index its documents, split them into train/held-out.

A domain's documents are indexed once by byte span (file, start, end); the text itself is read
back one document at a time, so nothing ever holds a whole corpus in memory. Indexing is also
where bad input is caught: undecodable bytes, broken JSONL, a missing text field, no documents.
"""

from __future__ import annotations

import codecs
import functools
import glob
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mergemix_jax.config.schema import DataConfig, DomainConfig
from mergemix_jax.data.cache import cache_root, dump_arrays, entry_key, load_arrays, shared
from mergemix_jax.data.errors import DataError
from mergemix_jax.data.paths import (
    expand_glob,
    file_size,
    file_stamp,
    is_dir,
    is_file,
    normalize,
    open_binary,
    read_range,
    relative_names,
)
from mergemix_jax.data.rows import ROW_FORMATS, expand_row_paths, read_row, scan_rows

log = logging.getLogger(__name__)
SPLITS = ("train", "heldout")
_CHUNK_BYTES = 1 << 20
_INDEX_CACHE: dict[tuple, DomainIndex] = {}
_SIGNATURE_CACHE: dict[tuple, str] = {}


@dataclass(frozen=True)
class DomainIndex:
    """Byte spans of every document of one domain, and which ones are held out.

    Arrays have one entry per document [n_docs]; `file_idx` points into `files`.
    """

    domain: DomainConfig
    files: tuple[str, ...]
    file_idx: np.ndarray  # [n_docs] int32
    start: np.ndarray  # [n_docs] int64 byte offset
    end: np.ndarray  # [n_docs] int64 byte offset (exclusive)
    heldout: np.ndarray  # [n_docs] bool
    version: str = ""  # hash of the file stamps, fields and split settings: the key of the disk caches

    def doc_ids(self, split: str) -> np.ndarray:
        """Indices (into the span arrays) of the documents in `split`, in file order."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return np.flatnonzero(self.heldout if split == "heldout" else ~self.heldout)

    def read(self, doc: int) -> str:
        """The text of document `doc` (one small read; the file is not kept open)."""
        if self.domain.format in ROW_FORMATS:  # start = row number (see data/rows.py)
            return read_row(self.domain, self.files[self.file_idx[doc]], int(self.start[doc]))
        raw = read_range(self.files[self.file_idx[doc]], int(self.start[doc]), int(self.end[doc]))
        text = raw.decode("utf-8")
        if self.domain.format == "jsonl":
            return json.loads(text)[self.domain.text_field]
        if self.domain.format == "text" and self.domain.split_by == "blank_line":
            return text.rstrip("\r\n")  # the line break before the blank line is a separator
        return text


class DocumentSource:
    """Random-access view of one split of a domain: `len()` and `[i] -> str` (a grain source)."""

    def __init__(self, index: DomainIndex, split: str):
        self.index = index
        self.split = split
        self._docs = index.doc_ids(split)

    def __len__(self) -> int:
        return len(self._docs)

    def __getitem__(self, i: int) -> str:
        return self.index.read(int(self._docs[i]))

    def __repr__(self) -> str:
        return f"DocumentSource(domain={self.index.domain.name!r}, split={self.split!r}, n_docs={len(self)})"


def find_domain(data_cfg: DataConfig, name: str) -> DomainConfig:
    """The domain called `name`, or an error listing the known names."""
    for domain in data_cfg.domains:
        if domain.name == name:
            return domain
    raise DataError(f"no domain named {name!r} in data.domains (known: {[d.name for d in data_cfg.domains]})")


def domain_files(domain: DomainConfig) -> list[str]:
    """The files of `domain`: each path is a file or a glob (`**` recurses), local or a URL
    (data/paths.py), in sorted order."""
    files: list[str] = []
    for pattern in domain.paths:
        if domain.format == "hf_disk":  # paths are save_to_disk folders (globs allowed)
            folders = expand_glob(pattern, folders=True) if glob.has_magic(pattern) else [pattern]
            files += [f for folder in folders for f in expand_row_paths(domain, folder)]
        elif glob.has_magic(pattern):
            matches = expand_glob(pattern)
            if not matches:
                raise DataError(f"domain '{domain.name}': the glob {pattern!r} matches no files; fix data.domains paths")
            files += matches
        elif is_dir(pattern):
            raise DataError(f"domain '{domain.name}': {pattern} is a directory; use a glob such as '{pattern}/**/*.txt'")
        elif not is_file(pattern):
            raise DataError(f"domain '{domain.name}': file {pattern} does not exist; fix data.domains paths")
        else:
            files.append(pattern)
    if not files:
        raise DataError(f"domain '{domain.name}' lists no paths; give it files or globs under data.domains[].paths")
    return list(dict.fromkeys(normalize(f) for f in files))


def split_signature(data_cfg: DataConfig, edge_bytes: int = 4096) -> dict[str, str]:
    """{domain: short hash of what decides its held-out split}: its files (path relative to the
    domain's folder, size, first and last `edge_bytes`), its parsing fields, data.heldout_fraction and
    data.split_seed. Every training run records it, so a reused base can be checked against a
    config's held-out split without reading whole corpora (pipeline/stages.py). Cached like
    `index_domain` (per file sizes and mtimes), so a job's many runs read each file's edges once."""
    signature = {}
    for domain in data_cfg.domains:
        files = domain_files(domain)
        fields = {k: v for k, v in vars(domain).items() if k not in ("name", "paths")}
        settings = json.dumps([data_cfg.heldout_fraction, data_cfg.split_seed, fields], sort_keys=True, default=str)
        key = (settings, edge_bytes, _file_stamps(files))
        signature[domain.name] = _bounded_cache(_SIGNATURE_CACHE, key, functools.partial(_domain_signature, files, settings, edge_bytes))
    return signature


def _domain_signature(files: list[str], settings: str, edge_bytes: int) -> str:
    digest = hashlib.sha256(settings.encode())
    for path, name in zip(files, relative_names(files), strict=True):
        size = file_size(path)
        digest.update(f"{name}|{size}|".encode())
        with open_binary(path) as handle:
            digest.update(handle.read(edge_bytes))
            handle.seek(max(size - edge_bytes, 0))
            digest.update(handle.read(edge_bytes))
    return digest.hexdigest()[:16]


def index_domain(domain: DomainConfig, heldout_fraction: float, split_seed: int, cache_dir: str | os.PathLike | None = None) -> DomainIndex:
    """Scan `domain`'s files once (streaming), validate them and split documents by a seeded hash.

    Cached per (domain, split settings, file sizes and mtimes), so repeated calls are free; with
    `cache_dir`, also on disk there, written by process 0 and read by every other (data/cache.py).
    """
    files = domain_files(domain)
    stamps = _file_stamps(files)
    key = (domain.name, tuple(domain.paths), domain.format, domain.text_field, domain.split_by, stamps, heldout_fraction, split_seed)
    version = entry_key({k: v for k, v in vars(domain).items() if k != "name"}, stamps, float(heldout_fraction), int(split_seed))

    def build() -> DomainIndex:
        scan = functools.partial(_build_index, domain, files, float(heldout_fraction), int(split_seed), version)
        if cache_dir is None:
            return scan()
        arrays = shared(Path(cache_dir) / "index" / f"{version}.npz", lambda: _index_arrays(scan()), dump_arrays, load_arrays)
        return DomainIndex(domain=domain, files=tuple(files), version=version, **arrays)

    return _bounded_cache(_INDEX_CACHE, key, build)


def _index_arrays(index: DomainIndex) -> dict[str, np.ndarray]:
    return {"file_idx": index.file_idx, "start": index.start, "end": index.end, "heldout": index.heldout}


def domain_index(data_cfg: DataConfig, name: str) -> DomainIndex:
    """The index of domain `name` of `data_cfg`, cached on disk under the data cache (data/cache.py)."""
    return index_domain(find_domain(data_cfg, name), data_cfg.heldout_fraction, data_cfg.split_seed, cache_root(data_cfg))


def _file_stamps(files: list[str]) -> tuple:
    """(path, size, mtime_ns or remote version) of each file: a cache key that changes when a file does."""
    return tuple(file_stamp(f) for f in files)


def _bounded_cache(cache: dict, key: tuple, build):
    """cache[key], built on a miss; the oldest entry goes once the cache holds 64."""
    if key not in cache:
        if len(cache) >= 64:
            cache.pop(next(iter(cache)))
        cache[key] = build()
    return cache[key]


def index_all(data_cfg: DataConfig) -> dict[str, DomainIndex]:
    """`index_domain` for every configured domain, by name."""
    if not data_cfg.domains:
        raise DataError("data.domains is empty; configure at least one domain")
    return {d.name: domain_index(data_cfg, d.name) for d in data_cfg.domains}


def iter_documents(index: DomainIndex, split: str) -> Iterator[str]:
    """Stream the texts of one split in file order, one document in memory at a time."""
    for doc in index.doc_ids(split):
        yield index.read(int(doc))


def document_rule(domain: DomainConfig) -> str:
    """How `domain`'s files are cut into documents, e.g. "format text, split_by file: one document per file"."""
    if domain.format == "text":
        per = "blank-line-separated block" if domain.split_by == "blank_line" else "file"
        return f"format text, split_by {domain.split_by}: one document per {per}"
    per = {"source": "file", "jsonl": "line"}.get(domain.format, "row")
    return f"format {domain.format}: one document per {per}"


def few_documents_hint(domain: DomainConfig, n_docs: int) -> str:
    """"holds N document(s) (how its files are read); fix": why a domain has so few documents and
    what to change (usually its format, not the held-out share)."""
    files = [f for f in domain.paths if os.path.splitext(f)[1].lower() in STRUCTURED_EXTENSIONS]
    fix = f"set data.domains[].format for {files} (e.g. format: jsonl)" if files and domain.format in ("text", "source") else "add documents, or cut its files into more documents (format / split_by)"
    return f"holds {n_docs} document(s) ({document_rule(domain)}); {fix}"


STRUCTURED_EXTENSIONS = (".jsonl", ".ndjson", ".json", ".parquet", ".arrow", ".array_record")


def _build_index(domain: DomainConfig, files: list[str], heldout_fraction: float, split_seed: int, version: str = "") -> DomainIndex:
    spans: list[tuple[int, int, int]] = []
    for i, path in enumerate(files):
        spans += [(i, s, e) for s, e in _scan_file(domain, path)]
    if not spans:
        raise DataError(f"domain '{domain.name}' has no documents: its {len(files)} file(s) hold only empty text")
    structured = [f for f in files if os.path.splitext(f)[1].lower() in STRUCTURED_EXTENSIONS]
    if structured and domain.format in ("text", "source"):
        log.warning("domain '%s' reads %s as plain text (format %s) although the name says otherwise; set its format (e.g. jsonl) unless that is meant", domain.name, structured[0], domain.format)
    if len(spans) == 1:
        log.warning("domain '%s' %s: it trains on that one document and holds none out for its held-out loss", domain.name, few_documents_hint(domain, 1))
    span_arr = np.asarray(spans, dtype=np.int64)
    names = relative_names(files)
    ordinal = _ordinal_within_file(span_arr[:, 0])
    keys = [f"{names[i]}#{k}" for i, k in zip(span_arr[:, 0], ordinal, strict=True)]
    return DomainIndex(
        domain=domain,
        files=tuple(files),
        file_idx=span_arr[:, 0].astype(np.int32),
        start=span_arr[:, 1],
        end=span_arr[:, 2],
        heldout=_heldout_mask(keys, heldout_fraction, split_seed),
        version=version,
    )


def _heldout_mask(keys: list[str], fraction: float, seed: int) -> np.ndarray:
    """Hold out the round(fraction * n) documents with the smallest seeded hash of their key.

    Keys are (path relative to the domain's folder, ordinal in file), so the split survives moving
    the corpus. At least one document is held out when fraction > 0 and n >= 2, never all of them.
    """
    n = len(keys)
    n_heldout = min(max(round(fraction * n), 1 if fraction > 0 else 0), max(n - 1, 0))
    hashes = np.array([int.from_bytes(hashlib.blake2b(f"{seed}\0{k}".encode(), digest_size=8).digest(), "little") for k in keys], dtype=np.uint64)
    mask = np.zeros(n, dtype=bool)
    mask[np.argsort(hashes, kind="stable")[:n_heldout]] = True
    return mask


def _ordinal_within_file(file_idx: np.ndarray) -> np.ndarray:
    starts = np.r_[0, np.flatnonzero(np.diff(file_idx)) + 1]
    counts = np.diff(np.r_[starts, len(file_idx)])
    return np.arange(len(file_idx)) - np.repeat(starts, counts)


def _scan_file(domain: DomainConfig, path: str) -> list[tuple[int, int]]:
    if domain.format in ROW_FORMATS:
        return scan_rows(domain, path)
    if domain.format == "jsonl":
        return _scan_jsonl(domain, path)
    if domain.format == "text" and domain.split_by == "blank_line":
        return _scan_paragraphs(domain, path)
    return _scan_whole_file(domain, path)


def _utf8_error(domain: DomainConfig, path: str, line: int, err: UnicodeDecodeError, offset: int) -> DataError:
    return DataError(
        f"domain '{domain.name}': {path} line {line} (byte {offset + err.start}) is not valid UTF-8 ({err.reason}); "
        f"re-encode the file as UTF-8, e.g. `iconv -f latin1 -t utf-8`"
    )


def _scan_whole_file(domain: DomainConfig, path: str) -> list[tuple[int, int]]:
    """One document per file; validated in 1 MB chunks with an incremental decoder."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    size, has_text, line = 0, False, 1
    with open_binary(path) as f:
        while chunk := f.read(_CHUNK_BYTES):
            try:
                text = decoder.decode(chunk)
            except UnicodeDecodeError as err:
                bad_line = line + chunk[: err.start].count(b"\n")
                raise _utf8_error(domain, path, bad_line, err, size) from None
            has_text = has_text or bool(text.strip())
            line += chunk.count(b"\n")
            size += len(chunk)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as err:
        raise _utf8_error(domain, path, line, err, size) from None
    return [(0, size)] if has_text else []


def _scan_paragraphs(domain: DomainConfig, path: str) -> list[tuple[int, int]]:
    """One document per block of non-blank lines."""
    spans: list[tuple[int, int]] = []
    offset, block_start = 0, None
    with open_binary(path) as f:
        for line_no, raw in enumerate(f, start=1):
            try:
                blank = not raw.decode("utf-8").strip()
            except UnicodeDecodeError as err:
                raise _utf8_error(domain, path, line_no, err, offset) from None
            if blank and block_start is not None:
                spans.append((block_start, offset))
                block_start = None
            elif not blank and block_start is None:
                block_start = offset
            offset += len(raw)
    if block_start is not None:
        spans.append((block_start, offset))
    return spans


def _scan_jsonl(domain: DomainConfig, path: str) -> list[tuple[int, int]]:
    """One document per JSON line, whose `text_field` must be a string."""
    spans: list[tuple[int, int]] = []
    offset = 0
    field_name = domain.text_field
    with open_binary(path) as f:
        for line_no, raw in enumerate(f, start=1):
            where = f"domain '{domain.name}': {path} line {line_no}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise _utf8_error(domain, path, line_no, err, offset) from None
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise DataError(f"{where} is not valid JSON ({err.msg}); each line must be one JSON object") from None
                if not isinstance(record, dict) or field_name not in record:
                    keys = sorted(record) if isinstance(record, dict) else type(record).__name__
                    raise DataError(f"{where} has no field '{field_name}' (found {keys}); set data.domains[].text_field")
                if not isinstance(record[field_name], str):
                    raise DataError(f"{where}: field '{field_name}' must be a string, got {type(record[field_name]).__name__}")
                if record[field_name].strip():
                    spans.append((offset, offset + len(raw)))
            offset += len(raw)
    return spans
