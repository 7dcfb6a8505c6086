"""Domain sources: streaming readers, the seeded train/held-out split, and errors on bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from mergemix_jax.config.schema import DataConfig, DomainConfig
from mergemix_jax.data import DataError, index_all, index_domain, iter_documents, normalize_mixture


def write_jsonl(path, texts, field="text"):
    path.write_text("".join(json.dumps({field: t, "id": i}) + "\n" for i, t in enumerate(texts)), encoding="utf-8")
    return str(path)


def three_format_config(tmp_path) -> tuple[DataConfig, dict[str, list[str]]]:
    """One domain per format, every document text unique, returning the texts written."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    texts = {
        "notes": [f"note {i}: " + "x" * (i % 7 + 1) for i in range(60)],
        "paras": [f"paragraph {i}\nsecond line {i}" for i in range(40)],
        "code": [f"def f{i}():\n    return {i}\n" for i in range(25)],
    }
    write_jsonl(tmp_path / "notes.jsonl", texts["notes"])
    (tmp_path / "paras.txt").write_text("\n\n\n".join(texts["paras"]) + "\n", encoding="utf-8")
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    for i, t in enumerate(texts["code"]):
        (tmp_path / "src" / ("pkg" if i % 2 else "") / f"m{i}.py").write_text(t, encoding="utf-8")
    cfg = DataConfig(
        domains=[
            DomainConfig("notes", [str(tmp_path / "notes.jsonl")], "jsonl"),
            DomainConfig("paras", [str(tmp_path / "paras.txt")], "text", split_by="blank_line"),
            DomainConfig("code", [str(tmp_path / "src" / "**" / "*.py")], "source"),
        ],
        heldout_fraction=0.2,
        split_seed=3,
    )
    return cfg, texts


def test_readers_stream_every_document_once_and_splits_are_disjoint(tmp_path):
    cfg, texts = three_format_config(tmp_path)
    for name, index in index_all(cfg).items():
        train, heldout = list(iter_documents(index, "train")), list(iter_documents(index, "heldout"))
        expected = [t.strip() if name == "paras" else t for t in texts[name]]
        assert sorted(train + heldout) == sorted(expected), name
        assert not set(train) & set(heldout), name
        assert len(heldout) == round(0.2 * len(expected)), name


def test_split_is_deterministic_seeded_and_survives_moving_the_corpus(tmp_path):
    cfg, _ = three_format_config(tmp_path / "a")
    first = {n: list(iter_documents(i, "heldout")) for n, i in index_all(cfg).items()}
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    moved = DataConfig(domains=[DomainConfig(d.name, [p.replace("/a/", "/b/") for p in d.paths], d.format, split_by=d.split_by) for d in cfg.domains], heldout_fraction=0.2, split_seed=3)
    assert {n: list(iter_documents(i, "heldout")) for n, i in index_all(moved).items()} == first
    reseeded = DataConfig(domains=cfg.domains, heldout_fraction=0.2, split_seed=4)
    assert {n: list(iter_documents(i, "heldout")) for n, i in index_all(reseeded).items()} != first


def test_one_document_domain_keeps_it_for_training(tmp_path):
    path = write_jsonl(tmp_path / "one.jsonl", ["only document"])
    index = index_domain(DomainConfig("one", [path], "jsonl"), 0.5, 0)
    assert list(iter_documents(index, "train")) == ["only document"]
    assert not list(iter_documents(index, "heldout"))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: DomainConfig("gone", [str(p / "missing.jsonl")], "jsonl"), r"domain 'gone': file .*missing.jsonl does not exist"),
        (lambda p: DomainConfig("noglob", [str(p / "*.nothing")], "text"), r"domain 'noglob': the glob .*\*\.nothing.* matches no files"),
        (lambda p: DomainConfig("dir", [str(p)], "text"), r"domain 'dir': .* is a directory"),
        (lambda p: DomainConfig("nopaths", [], "text"), r"domain 'nopaths' lists no paths"),
    ],
)
def test_missing_domain_files_are_named(tmp_path, make, message):
    with pytest.raises(DataError, match=message):
        index_domain(make(tmp_path), 0.1, 0)


def test_empty_domain_is_named(tmp_path):
    (tmp_path / "blank.txt").write_text("  \n\n \n", encoding="utf-8")
    (tmp_path / "empty.jsonl").write_text(json.dumps({"text": ""}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"domain 'blank' has no documents"):
        index_domain(DomainConfig("blank", [str(tmp_path / "blank.txt")], "text", split_by="blank_line"), 0.1, 0)
    with pytest.raises(DataError, match=r"domain 'empty' has no documents"):
        index_domain(DomainConfig("empty", [str(tmp_path / "empty.jsonl")], "jsonl"), 0.1, 0)
    with pytest.raises(DataError, match=r"data\.domains is empty"):
        index_all(DataConfig(domains=[]))


@pytest.mark.parametrize(("fmt", "split_by"), [("jsonl", "file"), ("text", "blank_line"), ("text", "file"), ("source", "file")])
def test_non_utf8_bytes_name_file_and_line(tmp_path, fmt, split_by):
    path = tmp_path / "bad.txt"
    good = json.dumps({"text": "fine"}).encode() if fmt == "jsonl" else b"fine"
    path.write_bytes(good + b"\n" + good + b"\ncaf\xe9 au lait\n")
    with pytest.raises(DataError, match=r"domain 'latin': .*bad.txt line 3 .*not valid UTF-8.*re-encode"):
        index_domain(DomainConfig("latin", [str(path)], fmt, split_by=split_by), 0.1, 0)


def test_jsonl_line_without_the_text_field_is_named(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text(json.dumps({"text": "a"}) + "\n\n" + json.dumps({"body": "b"}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"domain 'd': .*docs.jsonl line 3 has no field 'text' \(found \['body'\]\)"):
        index_domain(DomainConfig("d", [str(path)], "jsonl"), 0.1, 0)
    path.write_text(json.dumps({"text": "a"}) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"docs.jsonl line 2 is not valid JSON"):
        index_domain(DomainConfig("d", [str(path)], "jsonl"), 0.1, 0)
    path.write_text(json.dumps({"text": 5}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"line 1: field 'text' must be a string"):
        index_domain(DomainConfig("d", [str(path)], "jsonl"), 0.1, 0)


def test_mixture_weights_are_validated_by_domain(tmp_path):
    cfg, _ = three_format_config(tmp_path)
    assert normalize_mixture(cfg, {}) == pytest.approx({"notes": 1 / 3, "paras": 1 / 3, "code": 1 / 3})
    assert normalize_mixture(cfg, {"notes": 3, "paras": 1, "code": 0}) == pytest.approx({"notes": 0.75, "paras": 0.25})
    with pytest.raises(DataError, match=r"domain 'paras' must be finite and >= 0, got -1"):
        normalize_mixture(cfg, {"notes": 1, "paras": -1})
    with pytest.raises(DataError, match=r"domain 'code' must be finite and >= 0, got nan"):
        normalize_mixture(cfg, {"notes": 1, "code": float("nan")})
    with pytest.raises(DataError, match="all zero"):
        normalize_mixture(cfg, {"notes": 0, "code": 0.0})
    with pytest.raises(DataError, match=r"domain 'poetry', which is not in data.domains"):
        normalize_mixture(cfg, {"poetry": 1})
    assert np.isclose(sum(normalize_mixture(cfg, {"notes": 1e-9, "paras": 2e-9}).values()), 1)
