"""Row-oriented domain formats: Parquet, Arrow IPC, Hugging Face `save_to_disk` folders, ArrayRecord.

A document is one row (one record); its text is the `text_field` column (Parquet, Arrow, HF) or
the record itself (ArrayRecord: UTF-8 text, or a JSON object holding `text_field`). Files are
scanned by record batch (only the text column is read) to validate them and find the non-empty
rows; a document is read back by row number: Arrow files through a memory map (zero copy),
Parquet by the one row group that holds the row, ArrayRecord by its random-access index. Nothing
holds a whole file in memory beyond one row group or the operating system's page cache.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator

import numpy as np

from mergemix_jax.config.schema import DomainConfig
from mergemix_jax.data.errors import DataError
from mergemix_jax.data.paths import is_dir, is_file, is_url, join, open_binary, read_version

ROW_FORMATS = ("parquet", "arrow", "hf_disk", "array_record")


def hf_disk_files(folder: str, domain: str) -> list[str]:
    """The Arrow files of a `Dataset.save_to_disk` folder, in order (from its state.json)."""
    state = join(folder, "state.json")
    if is_file(join(folder, "dataset_dict.json")):
        with open_binary(join(folder, "dataset_dict.json")) as handle:
            splits = json.load(handle).get("splits", [])
        raise DataError(
            f"domain '{domain}': {folder} is a DatasetDict with splits {splits}; point data.domains[].paths at one split folder, "
            f"e.g. {join(folder, splits[0] if splits else 'train')}"
        )
    if not is_file(state):
        raise DataError(f"domain '{domain}': {folder} has no state.json; format hf_disk reads folders written by datasets' save_to_disk")
    with open_binary(state) as handle:
        files = [join(folder, entry["filename"]) for entry in json.load(handle).get("_data_files", [])]
    missing = [f for f in files if not is_file(f)]
    if not files or missing:
        raise DataError(f"domain '{domain}': {folder}/state.json lists no data files or missing ones {missing}; re-save the dataset")
    return files


def _open_arrow(path: str):
    """A reader over an Arrow IPC file or stream (datasets writes streams), memory-mapped (a URL:
    read through fsspec)."""
    import pyarrow as pa

    source = pa.PythonFile(open_binary(path), mode="r") if is_url(path) else pa.memory_map(path)
    try:
        return pa.ipc.open_file(source)
    except pa.ArrowInvalid:
        source.seek(0)
        return pa.ipc.open_stream(source)


def _arrow_batches(path: str) -> Iterator:
    reader = _open_arrow(path)
    if hasattr(reader, "num_record_batches"):
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i)
    else:
        yield from reader


def _text_batches(domain: DomainConfig, path: str) -> Iterator[list]:
    """The text column of `path` one record batch at a time, as Python values (checked to be strings)."""
    if domain.format == "array_record":
        from array_record.python.array_record_module import ArrayRecordReader

        reader = ArrayRecordReader(path)
        for start in range(0, reader.num_records(), 1024):
            yield [_record_text(domain, path, start + i, r) for i, r in enumerate(reader.read(start, min(start + 1024, reader.num_records())))]
        return
    if domain.format == "parquet":
        handle = _parquet_file(path)
        _check_column(domain, path, handle.schema_arrow)
        batches = handle.iter_batches(batch_size=4096, columns=[domain.text_field])
    else:
        batches = _arrow_batches(path)
    for batch in batches:
        _check_column(domain, path, batch.schema)
        yield batch.column(domain.text_field).to_pylist()


def _check_column(domain: DomainConfig, path: str, schema) -> None:
    import pyarrow as pa

    if domain.text_field not in schema.names:
        raise DataError(f"domain '{domain.name}': {path} has no column '{domain.text_field}' (columns {schema.names}); set data.domains[].text_field")
    kind = schema.field(domain.text_field).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise DataError(f"domain '{domain.name}': {path} column '{domain.text_field}' must hold strings, it holds {kind}")


def _record_text(domain: DomainConfig, path: str, row: int, record: bytes) -> str:
    try:
        text = record.decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"domain '{domain.name}': {path} record {row} is not UTF-8 text (tf.Example records are not supported); store text or JSON") from None
    if text.startswith("{"):
        try:
            value = json.loads(text).get(domain.text_field)
        except (json.JSONDecodeError, AttributeError):
            return text
        if not isinstance(value, str):
            raise DataError(f"domain '{domain.name}': {path} record {row} is JSON without a string field '{domain.text_field}'; set data.domains[].text_field")
        return value
    return text


def _parquet_file(path: str):
    """A pyarrow ParquetFile of a local path or a URL (through an fsspec file: footer and row groups by range reads)."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(open_binary(path) if is_url(path) else path)


def require_reader(domain: DomainConfig, path: str = "") -> None:
    """A clear error when the library a row format needs is not installed, or cannot read `path`."""
    if domain.format == "array_record" and is_url(path):
        raise DataError(f"domain '{domain.name}': ArrayRecord is read from local files only, not {path}; mount the bucket with gcsfuse and use the local path")
    module, extra = ("array_record", "grain") if domain.format == "array_record" else ("pyarrow", "mergemix-jax[formats]")
    try:
        __import__(module)
    except ImportError:
        raise DataError(f"domain '{domain.name}': format {domain.format} needs {module}; pip install {extra}") from None


def scan_rows(domain: DomainConfig, path: str) -> list[tuple[int, int]]:
    """(row, row + 1) spans of the rows of `path` whose text is not empty, streamed by record batch."""
    require_reader(domain, path)
    rows: list[int] = []
    offset = 0
    try:
        for texts in _text_batches(domain, path):
            rows += [offset + i for i, t in enumerate(texts) if t is not None and t.strip()]
            offset += len(texts)
    except DataError:
        raise
    except Exception as err:  # pyarrow / array_record errors on a broken or mislabelled file
        raise DataError(f"domain '{domain.name}': {path} cannot be read as {domain.format} ({type(err).__name__}: {err}); check data.domains[].format") from None
    return [(r, r + 1) for r in rows]


@functools.lru_cache(maxsize=16)
def _arrow_table(path: str, mtime_ns: int):
    return _open_arrow(path).read_all()  # memory-mapped: pages are read on access


@functools.lru_cache(maxsize=4)
def _parquet_group(path: str, mtime_ns: int, group: int, column: str):
    return _parquet_file(path).read_row_group(group, columns=[column]).column(column)


@functools.lru_cache(maxsize=16)
def _parquet_group_starts(path: str, mtime_ns: int) -> np.ndarray:
    meta = _parquet_file(path).metadata
    return np.cumsum([0] + [meta.row_group(i).num_rows for i in range(meta.num_row_groups)])


@functools.lru_cache(maxsize=16)
def _array_record_reader(path: str, mtime_ns: int):
    from array_record.python.array_record_module import ArrayRecordReader

    return ArrayRecordReader(path)


def read_row(domain: DomainConfig, path: str, row: int) -> str:
    """The text of row `row` of `path` (open files and row groups are cached per path and mtime)."""
    mtime = read_version(path)
    if domain.format == "array_record":
        return _record_text(domain, path, row, _array_record_reader(path, mtime).read([row])[0])
    if domain.format == "parquet":
        starts = _parquet_group_starts(path, mtime)
        group = int(np.searchsorted(starts, row, side="right") - 1)
        return _parquet_group(path, mtime, group, domain.text_field)[row - int(starts[group])].as_py()
    return _arrow_table(path, mtime).column(domain.text_field)[row].as_py()


def expand_row_paths(domain: DomainConfig, path: str) -> list[str]:
    """Files behind one configured path: an hf_disk folder's Arrow files, else the path itself."""
    if domain.format == "hf_disk":
        if not is_dir(path):
            raise DataError(f"domain '{domain.name}': {path} is not a folder; format hf_disk reads a save_to_disk folder")
        return hf_disk_files(path, domain.name)
    return [path]
