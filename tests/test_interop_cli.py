"""`mergemix import-base` / `mergemix export-hf`: a base in, a run directory, the same weights out."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

pytest.importorskip("safetensors", reason="needs the 'interop' extra: pip install -e .[interop]")

from mergemix_jax.cli.main import main
from mergemix_jax.config import ModelConfig, load_config
from mergemix_jax.interop import import_hf_safetensors
from mergemix_jax.train.checkpoint import load_params
from tests.interop_reference import random_llama, tiny_hf_config
from tests.test_interop_hf import write_checkpoint


@pytest.fixture
def hf_dir(tmp_path):
    hf = tiny_hf_config()
    write_checkpoint(tmp_path / "hf", hf, random_llama(hf, seed=21))
    from mergemix_jax.data.tokenizer import train_bpe

    train_bpe(["the quick brown fox jumps over the lazy dog"] * 4, 262, str(tmp_path / "hf" / "tokenizer.json"))
    return tmp_path / "hf"


def test_import_then_export_gives_back_the_same_checkpoint(tmp_path, hf_dir, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(
        "model: {vocab_size: 96, d_model: 32, n_layers: 2, n_heads: 4, n_kv_heads: 2, d_ff: 48, max_seq_len: 64,"
        " rope_theta: 500.0, tie_embeddings: false, compute_dtype: bfloat16, remat: true}\ntrain: {seq_len: 32}\n"
    )
    assert main(["import-base", str(hf_dir), "--out", str(tmp_path / "base"), "--config", str(config)]) == 0
    assert "imported" in capsys.readouterr().out
    # train.init_from reads it with the training config's model section (bfloat16, remat) as is
    params, cfg = load_params(tmp_path / "base", load_config(config).model)
    assert cfg.compute_dtype == "bfloat16" and (tmp_path / "base" / "tokenizer.json").is_file()
    assert main(["export-hf", str(tmp_path / "base"), "--out", str(tmp_path / "out")]) == 0
    _, again = import_hf_safetensors(tmp_path / "out")
    _, original = import_hf_safetensors(hf_dir)
    jax.tree.map(np.testing.assert_array_equal, again, original)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), b), params, original)
    assert (tmp_path / "out" / "tokenizer.json").read_bytes() == (hf_dir / "tokenizer.json").read_bytes()
    assert json.loads((tmp_path / "out" / "config.json").read_text())["eos_token_id"] == 1  # the tokenizer's <eos>


def test_import_refuses_a_config_of_another_architecture(tmp_path, hf_dir, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("model: {vocab_size: 96, d_model: 32, n_layers: 3, n_heads: 4, n_kv_heads: 2, d_ff: 48}\n")
    assert main(["import-base", str(hf_dir), "--out", str(tmp_path / "base"), "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "does not match model.*" in err and "'n_layers': (2, 3)" in err and "'rope_theta': (500.0, 10000.0)" in err
    assert not (tmp_path / "base").exists()


def test_import_into_an_existing_run_and_export_of_an_empty_run_are_refused(tmp_path, hf_dir, capsys):
    assert main(["import-base", str(hf_dir), "--out", str(tmp_path / "base")]) == 0
    assert main(["import-base", str(hf_dir), "--out", str(tmp_path / "base")]) == 2
    assert "already holds checkpoints" in capsys.readouterr().err
    assert main(["export-hf", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")]) == 2
    assert "holds no finished checkpoint" in capsys.readouterr().err
    assert load_params(tmp_path / "base")[1] == ModelConfig(**{**ModelConfig().__dict__, **_hf_fields()})


def _hf_fields() -> dict:
    return dict(vocab_size=96, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=48, max_seq_len=64,
                rope_theta=500.0, norm_eps=1e-5, tie_embeddings=False)  # fmt: skip


def test_import_of_a_gguf_writes_its_tokenizer_beside_the_run(tmp_path):
    gguf = pytest.importorskip("gguf")
    from tokenizers import Tokenizer

    from tests.test_interop_gguf import VOCAB, write_gguf

    hf = tiny_hf_config()
    write_gguf(tmp_path / "m.gguf", hf, random_llama(hf, seed=22), gguf.GGMLQuantizationType.F32)
    assert main(["import-base", str(tmp_path / "m.gguf"), "--out", str(tmp_path / "run")]) == 0
    tok = Tokenizer.from_file(str(tmp_path / "run" / "tokenizer.json"))
    assert tok.encode("a to").ids == [VOCAB.index("a"), VOCAB.index("Ġt"), VOCAB.index("o")]
    assert load_params(tmp_path / "run")[1].n_kv_heads == 2


def _one_line(err: str) -> str:
    assert err.strip() and "\n" not in err.strip() and "Traceback" not in err, err
    return err


def test_import_refuses_two_unindexed_safetensors_and_reads_an_indexed_shard_set(tmp_path, hf_dir, capsys):
    (hf_dir / "other.safetensors").write_bytes((hf_dir / "model.safetensors").read_bytes())
    assert main(["import-base", str(hf_dir), "--out", str(tmp_path / "base")]) == 2
    err = _one_line(capsys.readouterr().err)
    assert "2 .safetensors files (model.safetensors, other.safetensors)" in err and "model.safetensors.index.json" in err
    assert not (tmp_path / "base").exists()
    assert main(["import-base", str(hf_dir / "other.safetensors"), "--out", str(tmp_path / "base")]) == 0  # a file names itself
    capsys.readouterr()
    hf = tiny_hf_config()
    write_checkpoint(tmp_path / "sharded", hf, random_llama(hf, seed=21), shards=3)
    _, sharded = import_hf_safetensors(tmp_path / "sharded")
    jax.tree.map(np.testing.assert_array_equal, sharded, import_hf_safetensors(hf_dir / "other.safetensors")[1])
    (tmp_path / "sharded" / "model-00002-of-00003.safetensors").unlink()
    assert main(["import-base", str(tmp_path / "sharded"), "--out", str(tmp_path / "b2")]) == 2
    assert "lists shard(s) ['model-00002-of-00003.safetensors']" in _one_line(capsys.readouterr().err)


def test_export_into_a_non_empty_folder_needs_overwrite_and_then_leaves_no_stale_file(tmp_path, hf_dir, capsys):
    base, out = tmp_path / "base", tmp_path / "out"
    assert main(["import-base", str(hf_dir), "--out", str(base)]) == 0
    assert "the tokenizer has 262 ids but the model only 96 embeddings" in capsys.readouterr().err  # a warning
    out.mkdir()
    (out / "model-00001-of-00002.safetensors").write_text("stale")
    assert main(["export-hf", str(base), "--out", str(out)]) == 2
    assert "--overwrite" in _one_line(capsys.readouterr().err) and (out / "model-00001-of-00002.safetensors").is_file()
    assert main(["export-hf", str(base), "--out", str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base", "hf", "out"]  # no staging folder left
    assert main(["export-hf", str(base), "--out", str(base), "--overwrite"]) == 2  # never the run itself
    assert "being exported" in _one_line(capsys.readouterr().err) and load_params(base)[1].n_layers == 2


def _sentencepiece_model(folder) -> None:
    spm = pytest.importorskip("sentencepiece")
    text = ["the quick brown fox jumps over the lazy dog", "a stitch in time saves nine", "all that glitters is not gold"] * 20
    spm.SentencePieceTrainer.train(sentence_iterator=iter(text), model_prefix=str(folder / "tokenizer"), vocab_size=40, minloglevel=2)
    (folder / "tokenizer.vocab").unlink()


def test_import_takes_the_tokenizer_only_from_the_checkpoint_folder_and_says_which(tmp_path, capsys):
    from mergemix_jax.interop.run_dir import run_tokenizer

    hf = tiny_hf_config()
    write_checkpoint(tmp_path / "ckpt", hf, random_llama(hf, seed=23))
    (tmp_path / "tokenizer.json").write_text('{"version": "1.0"}')  # beside the folder, not in it: not taken
    assert main(["import-base", str(tmp_path / "ckpt"), "--out", str(tmp_path / "a")]) == 0
    assert "has no tokenizer.json or tokenizer.model, so the base has no tokenizer" in capsys.readouterr().err
    assert not (tmp_path / "a" / "tokenizer.json").exists()
    _sentencepiece_model(tmp_path / "ckpt")  # a checkpoint with tokenizer.model (sentencepiece) only
    assert main(["import-base", str(tmp_path / "ckpt" / "model.safetensors"), "--out", str(tmp_path / "b")]) == 0
    captured = capsys.readouterr()
    assert f"tokenizer: {tmp_path / 'b' / 'tokenizer.model'} (copied from {tmp_path / 'ckpt'})" in captured.out and not captured.err
    tokenizer, _ = run_tokenizer(tmp_path / "b")
    assert tokenizer.vocab_size == 40 and tokenizer.decode(tokenizer.encode("the lazy fox")) == "the lazy fox"


def test_data_tokenizer_must_be_the_imported_bases_own(tmp_path, hf_dir):
    from mergemix_jax.config import ConfigError
    from mergemix_jax.train.base_tokenizer import check_base_tokenizer

    assert main(["import-base", str(hf_dir), "--out", str(tmp_path / "base")]) == 0
    with pytest.raises(ConfigError, match=r"pipeline\.base_dir .* carries its own tokenizer .* data\.tokenizer is 'byte'.*set data\.tokenizer="):
        check_base_tokenizer(tmp_path / "base", "byte", "pipeline.base_dir")
    other = tmp_path / "other.json"
    other.write_text((hf_dir / "tokenizer.json").read_text().replace("<eos>", "<eot>"))
    with pytest.raises(ConfigError, match=r"train\.init_from"):
        check_base_tokenizer(tmp_path / "base", str(other), "train.init_from")
    check_base_tokenizer(tmp_path / "base", str(tmp_path / "base" / "tokenizer.json"), "train.init_from")  # the copy
    check_base_tokenizer(tmp_path / "base", str(hf_dir / "tokenizer.json"), "train.init_from")  # or the original


def test_import_of_a_sentencepiece_gguf_warns_that_the_base_has_no_tokenizer(tmp_path, capsys):
    gguf = pytest.importorskip("gguf")
    from tests.test_interop_gguf import write_gguf

    hf = tiny_hf_config()
    write_gguf(tmp_path / "m.gguf", hf, random_llama(hf, seed=24), gguf.GGMLQuantizationType.F32, tokenizer_model="llama")
    assert main(["import-base", str(tmp_path / "m.gguf"), "--out", str(tmp_path / "run")]) == 0
    assert "tokenizer (type 'llama') cannot be converted" in capsys.readouterr().err
    assert not list((tmp_path / "run").glob("tokenizer*"))


def test_training_from_an_imported_base_with_another_tokenizer_is_refused_before_anything_is_written(tmp_path, hf_dir, capsys):
    from mergemix_jax.config import ConfigError
    from mergemix_jax.train import train
    from tests.pipeline_helpers import tiny_pipeline_raw, write_config

    assert main(["import-base", str(hf_dir), "--out", str(tmp_path / "base")]) == 0
    raw = tiny_pipeline_raw(tmp_path)
    raw["train"] |= {"init_from": str(tmp_path / "base"), "output_dir": str(tmp_path / "expert"), "steps": 2}
    with pytest.raises(ConfigError, match=r"train\.init_from .* carries its own tokenizer"):
        train(load_config(write_config(tmp_path, raw)))
    assert not (tmp_path / "expert").exists()
