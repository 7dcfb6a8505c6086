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
    (tmp_path / "hf" / "tokenizer.json").write_text('{"version": "1.0"}')
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
    assert json.loads((tmp_path / "out" / "tokenizer.json").read_text()) == {"version": "1.0"}


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
