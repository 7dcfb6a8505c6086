"""Tokenizers (byte, trained BPE, sentencepiece), task files, the demo corpus and `mergemix data`."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mergemix_jax.cli.main import main as cli_main
from mergemix_jax.config import ModelConfig, load_config
from mergemix_jax.config.schema import DataConfig
from mergemix_jax.data import (
    ByteTokenizer,
    DataError,
    check_vocab,
    document_counts,
    load_task_dir,
    load_tasks,
    load_tokenizer,
    train_bpe,
)
from mergemix_jax.demo_data import DEMO_DATA_DIR, TASKS_DIR

TEXTS = ["def add(a, b):\n    return a + b\n", "The state of the Union is strong.", "Question: 2 + 3?\nAnswer: 5", "¿Qué tal? 日本語 🙂"] * 30


@settings(max_examples=60, deadline=None)
@given(st.text())
def test_byte_tokenizer_round_trips_any_text(text):
    tok = ByteTokenizer()
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert all(tok.eos_id < i < tok.vocab_size for i in ids) and tok.pad_id == 0


def test_check_vocab_names_both_sizes():
    check_vocab(ByteTokenizer(), ModelConfig())  # the default 320 fits 259
    with pytest.raises(DataError, match=r"model.vocab_size \(200\) is smaller than the tokenizer's vocabulary \(259"):
        check_vocab(ByteTokenizer(), ModelConfig(vocab_size=200))


def test_trained_bpe_loads_from_its_json_and_round_trips(tmp_path):
    out = str(tmp_path / "tok" / "bpe.json")
    trained = train_bpe(iter(TEXTS), vocab_size=300, out_path=out)
    tok = load_tokenizer(DataConfig(tokenizer=out))
    assert (tok.vocab_size, tok.pad_id, tok.eos_id, tok.bos_id) == (trained.vocab_size, 0, 1, 2) and tok.vocab_size <= 300
    for text in set(TEXTS) | {"unseen ✓ text"}:
        assert tok.decode(tok.encode(text)) == text
    assert len(tok.encode(TEXTS[0])) < len(TEXTS[0].encode())  # merges were learned
    assert [p.name for p in (tmp_path / "tok").iterdir()] == ["bpe.json"]  # no temp file left behind
    with pytest.raises(DataError, match="too small"):
        train_bpe(iter(TEXTS), vocab_size=100, out_path=out)


def test_sentencepiece_model_loads(tmp_path):
    spm = pytest.importorskip("sentencepiece")
    (tmp_path / "corpus.txt").write_text("\n".join(TEXTS), encoding="utf-8")
    prefix = str(tmp_path / "sp")
    spm.SentencePieceTrainer.train(input=str(tmp_path / "corpus.txt"), model_prefix=prefix, vocab_size=320, model_type="bpe", byte_fallback=True, minloglevel=2)
    tok = load_tokenizer(DataConfig(tokenizer=prefix + ".model"))
    assert tok.vocab_size == 320 and tok.eos_id >= 0
    assert tok.decode(tok.encode("The state of the Union")) == "The state of the Union"


@pytest.mark.parametrize(
    ("name", "message"),
    [("missing.json", "does not exist"), ("tok.bin", r"must end in \.json .* or \.model"), ("broken.json", "not a readable `tokenizers` JSON")],
)
def test_bad_tokenizer_files_are_named(tmp_path, name, message):
    if name != "missing.json":
        (tmp_path / name).write_text("{not a tokenizer")
    with pytest.raises(DataError, match=rf"data.tokenizer: .*{message}"):
        load_tokenizer(DataConfig(tokenizer=str(tmp_path / name)))


def write_lines(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


def test_task_items_parse_both_kinds(tmp_path):
    choice = {"id": "a", "context": "2 + 3 =", "choices": [" 4", " 5"], "answer": 1, "source": "x"}
    answer = {"id": "b", "context": "7 * 6 =", "answer": " 42"}
    (mc,) = load_tasks(write_lines(tmp_path / "quiz.jsonl", [choice, ""]))
    (exact,) = load_tasks(write_lines(tmp_path / "sums.jsonl", [answer]))
    assert mc.is_multiple_choice and mc.continuations == (" 4", " 5") and mc.correct_index == 1 and mc.meta == {"source": "x"}
    assert not exact.is_multiple_choice and exact.continuations == (" 42",) and exact.correct_index == 0
    assert list(load_task_dir(tmp_path)) == ["quiz", "sums"]
    with pytest.raises(DataError, match=r"mixed\.jsonl line 3 is an exact-answer item .* but line 1 is a multiple-choice item"):
        load_tasks(write_lines(tmp_path / "mixed.jsonl", [choice, "", answer]))  # one file, one kind


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"id": "a", "choices": ["x", "y"], "answer": 0}, r"missing field\(s\) \['context'\]"),
        ({"id": "a", "context": "c", "choices": ["x", "y"], "answer": 2}, r"answer index 2 is out of range for 2 choices"),
        ({"id": "a", "context": "c", "choices": ["x", "y"], "answer": -1}, "out of range"),
        ({"id": "a", "context": "c", "choices": ["x", "y"], "answer": "0"}, "must be an integer index"),
        ({"id": "a", "context": "c", "choices": ["x"], "answer": 0}, "at least 2 non-empty strings"),
        ({"id": "a", "context": "c", "answer": 3}, "exact-answer item needs 'answer' as a non-empty string"),
        ({"id": "", "context": "c", "answer": "x"}, "'id' must be a non-empty string"),
        ("{oops", "is not valid JSON"),
    ],
)
def test_bad_task_lines_name_file_and_line(tmp_path, record, message):
    path = write_lines(tmp_path / "bad.jsonl", [{"id": "ok", "context": "c", "answer": "x"}, record])
    with pytest.raises(DataError, match=rf"task file .*bad.jsonl line 2.*{message}"):
        load_tasks(path)


def test_duplicate_ids_and_empty_files(tmp_path):
    path = write_lines(tmp_path / "dup.jsonl", [{"id": "q", "context": "c", "answer": "x"}] * 2)
    with pytest.raises(DataError, match=r"dup.jsonl line 2: id 'q' already used on line 1"):
        load_tasks(path)
    with pytest.raises(DataError, match="holds no items"):
        load_tasks(write_lines(tmp_path / "empty.jsonl", [""]))


def test_demo_tasks_and_corpus_are_valid():
    tasks = load_task_dir(TASKS_DIR)
    assert {"arithmetic", "word_problems", "code_next_line", "sotu_next_sentence", "shakespeare_next_line"} <= set(tasks)
    assert all(len(items) >= 100 for items in tasks.values())
    demo_bytes = sum(p.stat().st_size for sub in ("corpus", "tasks") for p in (DEMO_DATA_DIR / sub).rglob("*") if p.is_file())
    assert demo_bytes < 8_000_000  # the demo's own corpus and tasks
    base_bytes = sum(p.stat().st_size for p in (DEMO_DATA_DIR / "base").rglob("*") if p.is_file())
    assert base_bytes < 3_000_000  # the shipped 0.63M-parameter base: float32 parameters, no optimizer state
    total_bytes = sum(p.stat().st_size for p in DEMO_DATA_DIR.rglob("*") if p.is_file())
    assert total_bytes - base_bytes < 16_000_000  # with corpus B and the off-target domain, still a small download
    config = load_config(DEMO_DATA_DIR.parent.parent / "configs" / "demo.yaml")
    docs = document_counts(config.data)
    assert len(docs) >= 4 and all(d["train"] > 0 and d["heldout"] > 0 for d in docs.values())


def test_cli_data_stats_prints_tokens_per_domain_and_split(tmp_path, capsys):
    write_lines(tmp_path / "a.jsonl", [{"text": "x" * (i + 1)} for i in range(10)])
    (tmp_path / "cfg.yaml").write_text("data:\n  heldout_fraction: 0.2\n  domains:\n    - {name: ax, paths: [a.jsonl], format: jsonl}\n")
    assert cli_main(["data", "stats", "--config", str(tmp_path / "cfg.yaml")]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("ax"))
    # 10 docs of 1..10 bytes (+ bos + eos each) = 75 tokens, 2 held out
    numbers = [int(x.replace(",", "")) for x in row.split()[1:]]
    assert numbers[:2] == [8, 2] and sum(numbers[2:]) == 75
