"""Domain sources in the formats users bring: Parquet, Arrow IPC, save_to_disk folders, ArrayRecord.

Every test writes its small files itself and reads them back through the ordinary domain index."""

import json

import pytest

from mergemix_jax.config import load_config
from mergemix_jax.data import DataError, DocumentSource, index_domain, token_counts

pa = pytest.importorskip("pyarrow")  # the `formats` extra
pq = pytest.importorskip("pyarrow.parquet")

DOCS = [f"document {i}: " + "words " * (i % 5 + 1) for i in range(40)]


def domain_config(tmp_path, fmt, paths, text_field="text"):
    spec = f"data.domains=[{{name: d, paths: {json.dumps([str(p) for p in paths])}, format: {fmt}, text_field: {text_field}}}]"
    return load_config(None, [spec, "data.heldout_fraction=0.25"]).data


def read_all(data_cfg) -> list[str]:
    index = index_domain(data_cfg.domains[0], data_cfg.heldout_fraction, data_cfg.split_seed)
    train, heldout = DocumentSource(index, "train"), DocumentSource(index, "heldout")
    assert len(heldout) == 10 and len(train) == 30
    return sorted([train[i] for i in range(len(train))] + [heldout[i] for i in range(len(heldout))])


def table(docs=DOCS):
    return pa.table({"id": list(range(len(docs))), "text": docs})


def test_parquet_streams_row_groups_and_skips_empty_rows(tmp_path):
    path = tmp_path / "d.parquet"
    pq.write_table(table([*DOCS[:20], "   ", *DOCS[20:]]), path, row_group_size=7)  # 6 row groups, one blank row
    data_cfg = domain_config(tmp_path, "parquet", [path])
    assert read_all(data_cfg) == sorted(DOCS)
    assert token_counts(data_cfg)["d"]["train"] + token_counts(data_cfg)["d"]["heldout"] == sum(len(d.encode()) + 2 for d in DOCS)  # bytes + BOS/EOS


@pytest.mark.parametrize("kind", ["file", "stream"])
def test_arrow_ipc_files_and_streams(tmp_path, kind):
    path = tmp_path / f"d.{kind}.arrow"
    data = table()
    with pa.OSFile(str(path), "wb") as sink:
        writer = pa.ipc.new_file(sink, data.schema) if kind == "file" else pa.ipc.new_stream(sink, data.schema)
        for batch in data.to_batches(max_chunksize=9):
            writer.write_batch(batch)
        writer.close()
    assert read_all(domain_config(tmp_path, "arrow", [path])) == sorted(DOCS)


def save_to_disk_layout(folder, docs, shards=2):
    """The folder `datasets.Dataset.save_to_disk` writes: Arrow stream shards, state.json, dataset_info.json."""
    folder.mkdir(parents=True)
    names = [f"data-{i:05d}-of-{shards:05d}.arrow" for i in range(shards)]
    per = -(-len(docs) // shards)
    for i, name in enumerate(names):
        part = pa.table({"content": docs[i * per : (i + 1) * per]})
        with pa.OSFile(str(folder / name), "wb") as sink, pa.ipc.new_stream(sink, part.schema) as writer:
            writer.write_table(part)
    (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": n} for n in names], "_fingerprint": "x", "_format_type": None}))
    (folder / "dataset_info.json").write_text(json.dumps({"features": {"content": {"dtype": "string", "_type": "Value"}}}))


def test_hf_save_to_disk_folders_and_a_clear_error_for_a_dataset_dict(tmp_path):
    save_to_disk_layout(tmp_path / "corpus" / "train", DOCS)
    (tmp_path / "corpus" / "dataset_dict.json").write_text(json.dumps({"splits": ["train"]}))
    assert read_all(domain_config(tmp_path, "hf_disk", [tmp_path / "corpus" / "train"], text_field="content")) == sorted(DOCS)
    with pytest.raises(DataError, match="is a DatasetDict with splits \\['train'\\]"):
        index_domain(domain_config(tmp_path, "hf_disk", [tmp_path / "corpus"], "content").domains[0], 0.25, 0)


def test_array_record_text_and_json_records(tmp_path):
    from array_record.python.array_record_module import ArrayRecordWriter

    for name, encode in (("plain", lambda d: d.encode()), ("json", lambda d: json.dumps({"body": d}).encode())):
        writer = ArrayRecordWriter(str(tmp_path / f"{name}.array_record"), "group_size:4")
        for doc in DOCS:
            writer.write(encode(doc))
        writer.close()
    assert read_all(domain_config(tmp_path, "array_record", [tmp_path / "plain.array_record"])) == sorted(DOCS)
    assert read_all(domain_config(tmp_path, "array_record", [tmp_path / "json.array_record"], text_field="body")) == sorted(DOCS)


def test_bad_columnar_input_names_the_file_and_the_fix(tmp_path):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"body": DOCS}), path)
    with pytest.raises(DataError, match=r"has no column 'text'.*set data\.domains\[\]\.text_field"):
        index_domain(domain_config(tmp_path, "parquet", [path]).domains[0], 0.25, 0)
    pq.write_table(pa.table({"text": list(range(40))}), path)
    with pytest.raises(DataError, match="must hold strings"):
        index_domain(domain_config(tmp_path, "parquet", [path]).domains[0], 0.25, 0)
    (tmp_path / "fake.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="cannot be read as parquet"):
        index_domain(domain_config(tmp_path, "parquet", [tmp_path / "fake.parquet"]).domains[0], 0.25, 0)
