"""Domains given as URLs (gs://...) read through fsspec, against a local stand-in for the bucket:
the `gs` protocol is registered, for the test only, as a folder under tmp_path."""

import json

import pytest
import yaml

from mergemix_jax.cli.main import main
from mergemix_jax.config import ConfigError, load_config
from mergemix_jax.data import DocumentSource, index_domain, token_counts
from mergemix_jax.data.paths import relative_names

fsspec = pytest.importorskip("fsspec")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

DOCS = [f"document {i}: " + "words " * (i % 7 + 1) for i in range(30)]


@pytest.fixture
def bucket(tmp_path, monkeypatch):
    """gs://<anything> maps to tmp_path/gcs/<anything> for this test; returns that folder."""
    from fsspec.implementations.dirfs import DirFileSystem
    from fsspec.implementations.local import LocalFileSystem

    root = tmp_path / "gcs"
    root.mkdir()

    class LocalBucket(DirFileSystem):
        protocol = "gs"
        cachable = False

        def __init__(self, **kwargs):
            super().__init__(path=str(root), fs=LocalFileSystem(), **kwargs)

    import sys

    monkeypatch.setitem(sys.modules["fsspec.registry"]._registry, "gs", LocalBucket)
    monkeypatch.setenv("MERGEMIX_CACHE_DIR", str(tmp_path / "cache"))
    return root


def parquet_shards(folder, docs=DOCS, shards=3):
    folder.mkdir(parents=True)
    per = -(-len(docs) // shards)
    for i in range(shards):
        pq.write_table(pa.table({"text": docs[i * per : (i + 1) * per]}), folder / f"part-{i}.parquet", row_group_size=4)


def data_config(path: str, fmt: str = "parquet"):
    return load_config(None, [f"data.domains=[{{name: web, paths: [{json.dumps(path)}], format: {fmt}}}]", "data.heldout_fraction=0.2"]).data


def test_parquet_domain_in_a_gs_url_reads_like_the_local_copy(bucket):
    parquet_shards(bucket / "corpus" / "web")
    remote, local = data_config("gs://corpus/web/*.parquet"), data_config(str(bucket / "corpus" / "web" / "*.parquet"))
    r_index = index_domain(remote.domains[0], remote.heldout_fraction, remote.split_seed)
    l_index = index_domain(local.domains[0], local.heldout_fraction, local.split_seed)
    assert r_index.files == tuple(f"gs://corpus/web/part-{i}.parquet" for i in range(3))
    for split in ("train", "heldout"):  # same documents, same held-out split: keys are paths relative to the domain's folder
        r_docs, l_docs = DocumentSource(r_index, split), DocumentSource(l_index, split)
        assert [r_docs[i] for i in range(len(r_docs))] == [l_docs[i] for i in range(len(l_docs))]
    assert len(DocumentSource(r_index, "heldout")) == 6
    assert token_counts(remote) == token_counts(local)


def test_data_stats_on_a_gs_parquet_domain(bucket, tmp_path, capsys):
    parquet_shards(bucket / "b" / "web")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"data": {"domains": [{"name": "web", "paths": ["gs://b/web/*.parquet"], "format": "parquet"}]}}))
    assert main(["data", "stats", "--config", str(config)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("web "))
    tokens = sum(len(d.encode()) + 2 for d in DOCS)  # byte tokenizer: bytes + BOS/EOS
    train, heldout = (int(x.replace(",", "")) for x in row.split()[3:5])
    assert train + heldout == tokens and heldout > 0


def test_jsonl_domain_in_a_gs_url_reads_by_byte_span(bucket):
    (bucket / "b").mkdir()
    (bucket / "b" / "d.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCS))
    cfg = data_config("gs://b/d.jsonl", "jsonl")
    index = index_domain(cfg.domains[0], cfg.heldout_fraction, cfg.split_seed)
    docs = [index.read(i) for i in range(len(index.start))]
    assert docs == DOCS


def test_urls_that_cannot_be_read_are_refused_naming_the_key(bucket):
    with pytest.raises(ConfigError, match=r"data\.domains\[0\]\.paths.*fsspec knows no filesystem for nope://"):
        data_config("nope://b/x.parquet")
    with pytest.raises(ConfigError, match=r"ArrayRecord is read from local files only.*gcsfuse"):
        data_config("gs://b/x.array_record", "array_record")
    with pytest.raises(ConfigError, match=r"data\.cache_dir"):
        load_config(None, ["data.cache_dir=gs://b/cache"])


def test_relative_names_of_urls_drop_the_protocol_and_common_folder():
    assert relative_names(["gs://b/x/a.parquet", "gs://b/x/sub/c.parquet"]) == ["a.parquet", "sub/c.parquet"]
    assert relative_names(["/data/x/a.parquet", "/data/x/sub/c.parquet"]) == ["a.parquet", "sub/c.parquet"]
