"""The domain index and token counts are computed once per data version and read back by every
later process (a new process is simulated by clearing the in-process index cache)."""

import dataclasses
import json
import os
import shutil

import pytest

from mergemix_jax.config import load_config
from mergemix_jax.data import sources, token_counts
from mergemix_jax.data.tokenizer import ByteTokenizer
from mergemix_jax.parallel import multihost


@pytest.fixture
def data_cfg(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("a", "b"):
        (corpus / f"{name}.jsonl").write_text("".join(json.dumps({"text": f"{name} doc {i} " * (i + 1)}) + "\n" for i in range(12)))
    domains = [{"name": n, "paths": [str(corpus / f"{n}.jsonl")], "format": "jsonl"} for n in ("a", "b")]
    return load_config(None, [f"data.domains={json.dumps(domains)}", f"data.cache_dir={tmp_path / 'cache'}"]).data


@pytest.fixture
def calls(monkeypatch):
    """Counts of tokenizer calls and file scans since the test began."""
    seen = {"encode": 0, "scan": 0}
    encode, scan = ByteTokenizer.encode_array, sources._scan_file

    def counting_encode(self, text):
        seen["encode"] += 1
        return encode(self, text)

    def counting_scan(domain, path):
        seen["scan"] += 1
        return scan(domain, path)

    monkeypatch.setattr(ByteTokenizer, "encode_array", counting_encode)
    monkeypatch.setattr(sources, "_scan_file", counting_scan)
    return seen


def new_process(seen):
    """Forget what this process computed (as a fresh process would) and reset the counters."""
    sources._INDEX_CACHE.clear()
    seen.update(encode=0, scan=0)


def test_second_count_reads_the_cache_without_tokenizing_or_scanning(data_cfg, calls):
    first = token_counts(data_cfg)
    assert calls == {"encode": 24, "scan": 2}
    new_process(calls)
    assert token_counts(data_cfg) == first
    assert calls == {"encode": 0, "scan": 0}
    index = sources.index_all(data_cfg)["a"]
    assert len(index.doc_ids("train")) + len(index.doc_ids("heldout")) == 12 and index.version


def test_another_process_reads_what_process_0_wrote(data_cfg, calls, monkeypatch):
    first = token_counts(data_cfg)
    new_process(calls)
    monkeypatch.setattr(multihost, "is_writer", lambda: False)
    assert token_counts(data_cfg) == first and calls == {"encode": 0, "scan": 0}


def test_a_process_whose_cache_is_not_shared_computes_for_itself(data_cfg, calls, monkeypatch, tmp_path):
    monkeypatch.setattr(multihost, "is_writer", lambda: False)
    counts = token_counts(data_cfg)
    assert calls["encode"] == 24 and not (tmp_path / "cache" / "token_counts").exists()  # only process 0 writes
    assert counts["a"]["train"] + counts["a"]["heldout"] > 0


def test_a_changed_file_or_tokenizer_is_a_new_data_version(data_cfg, calls, tmp_path):
    first = token_counts(data_cfg)
    path = tmp_path / "corpus" / "a.jsonl"
    path.write_text(path.read_text() + json.dumps({"text": "one more document"}) + "\n")
    new_process(calls)
    second = token_counts(data_cfg)
    assert calls["encode"] == 13 and calls["scan"] == 1  # only domain a: recounted
    assert second["b"] == first["b"] and sum(second["a"].values()) == sum(first["a"].values()) + len("one more document") + 2
    new_process(calls)
    (tmp_path / "corpus" / "b.jsonl").write_text((tmp_path / "corpus" / "b.jsonl").read_text().replace("b doc", "B doc"))  # same size
    os.utime(tmp_path / "corpus" / "b.jsonl", ns=(0, 1))  # mtime changes (it would anyway on a real rewrite)
    token_counts(data_cfg)
    assert calls["scan"] == 1


def test_an_unreadable_cache_entry_is_rebuilt(data_cfg, calls, tmp_path):
    first = token_counts(data_cfg)
    for entry in (tmp_path / "cache" / "token_counts").iterdir():
        entry.write_text("{truncated")
    new_process(calls)
    assert token_counts(data_cfg) == first and calls["encode"] == 24


def test_the_cache_folder_changes_neither_the_run_folder_nor_the_search_settings(tmp_path):
    from mergemix_jax.runkit.run_dir import run_dir_for
    from mergemix_jax.search.cache import search_settings

    plain, cached = load_config(None), load_config(None, [f"data.cache_dir={tmp_path}"])
    assert run_dir_for(plain) == run_dir_for(cached)
    assert search_settings(plain, {}, synthetic="") == search_settings(cached, {}, synthetic="")


class FakeCoordinator:
    """jax.distributed's key-value store, as the cache uses it: process 0 posts, the others wait."""

    def __init__(self, on_wait=None):
        self.posted, self.waited, self.on_wait = set(), [], on_wait

    def key_value_set(self, key, value):
        if key in self.posted:
            raise RuntimeError(f"{key} already exists")
        self.posted.add(key)

    def blocking_key_value_get(self, key, timeout_ms):
        self.waited.append(key)
        if self.on_wait:  # process 0 finishes meanwhile
            self.on_wait(key)
        assert key in self.posted, "a process waited for an entry process 0 never posted"
        return "1"


def test_in_a_multi_host_job_process_0_posts_and_the_others_wait_then_read(data_cfg, calls, monkeypatch):
    coordinator = FakeCoordinator()
    monkeypatch.setattr(multihost, "is_multiprocess", lambda: True)
    monkeypatch.setattr(multihost, "_client", lambda: coordinator)
    monkeypatch.setattr(multihost, "is_writer", lambda: True)
    first = token_counts(data_cfg)
    assert len(coordinator.posted) == 4  # an index and a count per domain
    new_process(calls)
    monkeypatch.setattr(multihost, "is_writer", lambda: False)
    assert token_counts(data_cfg) == first and calls == {"encode": 0, "scan": 0}
    assert coordinator.waited == []  # the files were there: nobody waited


def test_a_process_that_arrives_first_waits_for_process_0s_entry(data_cfg, calls, monkeypatch, tmp_path):
    first = token_counts(dataclasses.replace(data_cfg, cache_dir=str(tmp_path / "elsewhere")))  # what process 0 will write

    def process_0_finishes(key):
        shutil.copytree(tmp_path / "elsewhere", tmp_path / "cache", dirs_exist_ok=True)
        coordinator.posted.add(key)

    coordinator = FakeCoordinator(process_0_finishes)
    monkeypatch.setattr(multihost, "is_multiprocess", lambda: True)
    monkeypatch.setattr(multihost, "_client", lambda: coordinator)
    monkeypatch.setattr(multihost, "is_writer", lambda: False)
    new_process(calls)
    assert token_counts(data_cfg) == first and calls == {"encode": 0, "scan": 0} and len(coordinator.waited) == 1  # for the first entry; process 0 had written the rest by then
