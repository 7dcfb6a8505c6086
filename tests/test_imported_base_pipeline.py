"""A user's own Hugging Face base, end to end: import-base, then `mergemix run` / `validate` / the Python API on it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("safetensors", reason="needs the 'interop' extra: pip install -e .[interop]")

import mergemix_jax as mm
from mergemix_jax.cli.main import main
from mergemix_jax.config import ConfigError
from mergemix_jax.data.tokenizer import train_bpe
from mergemix_jax.pipeline import PipelineResult, read_stage_log
from tests.interop_reference import random_llama
from tests.pipeline_helpers import tiny_pipeline_raw, write_config, write_corpus
from tests.test_interop_hf import write_checkpoint

HF_CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 320, "hidden_size": 32,
    "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "hidden_act": "silu", "max_position_embeddings": 32, "rope_theta": 10000.0, "rms_norm_eps": 1e-5,
    "tie_word_embeddings": False, "torch_dtype": "float32",
    "rope_scaling": {"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
}  # fmt: skip


def _tiny_hf_base(folder, corpus: list[dict]) -> None:
    """config.json + model.safetensors (small random weights) + a BPE tokenizer.json trained on the corpus."""
    tensors = {k: v * 0.25 for k, v in random_llama(HF_CONFIG, seed=7).items()}
    write_checkpoint(folder, HF_CONFIG, tensors)
    texts = [json.loads(line)["text"] for d in corpus for line in Path(d["paths"][0]).read_text().splitlines()]
    train_bpe(texts, 300, str(folder / "tokenizer.json"))


@pytest.mark.slow
def test_an_imported_hf_base_runs_the_pipeline_and_validate_through_cli_and_api(tmp_path, capsys):
    raw = tiny_pipeline_raw(tmp_path, expert_steps=2, methods=["subsets"], verify_candidates=0, diagnostics=False, heatmap_resolution=2)
    raw["data"]["domains"] = write_corpus(tmp_path / "corpus2", ("prose", "code"), docs=20)
    raw["model"] = {"vocab_size": 320, "d_model": 32, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "d_ff": 64, "max_seq_len": 32,
                    "tie_embeddings": False, "norm_eps": 1e-5, "rope_scaling": HF_CONFIG["rope_scaling"]}  # fmt: skip
    raw["validate"] = {"n_dirichlet": 0, "noise_ceiling": False, "baselines": False}
    _tiny_hf_base(tmp_path / "hf", raw["data"]["domains"])
    assert main(["import-base", str(tmp_path / "hf"), "--out", str(tmp_path / "base")]) == 0
    raw["pipeline"]["base_dir"] = str(tmp_path / "base")
    raw["data"]["tokenizer"] = str(tmp_path / "base" / "tokenizer.json")
    path = write_config(tmp_path, raw)
    capsys.readouterr()

    # another tokenizer than the base's is refused in one line, before anything is written
    assert main(["run", "--config", str(path), "data.tokenizer=byte"]) == 2
    err = capsys.readouterr().err
    assert "carries its own tokenizer" in err and "set data.tokenizer=" in err and len(err.strip().splitlines()) == 1
    assert not list((tmp_path / "runs").glob("tiny-*"))  # no run folder (only the compilation cache)
    with pytest.raises(ConfigError, match="carries its own tokenizer"):
        mm.run(path, {"data.tokenizer": "byte"})

    # the Python API runs the whole pipeline on the imported base
    result = mm.run(path, progress=False)
    assert isinstance(result, PipelineResult) and set(result.weights) == {"prose", "code"}
    assert np.isclose(sum(result.weights.values()), 1.0) and result.report_path.is_file()
    events = read_stage_log(result.run_dir)
    assert events[0] == {**events[0], "stage": "base", "status": "reused", "base_dir": str(tmp_path / "base")}
    trained = {e["stage"] for e in events if e["status"] == "done"}
    assert {"expert:prose", "expert:code", "probe", "search:subsets", "select"} <= trained
    for domain in ("prose", "code"):  # experts were fine-tuned from the imported base, with finite losses
        done = json.loads((result.run_dir / "experts" / domain / "done.json").read_text())
        assert np.isfinite(done["final_loss"]) and done["base_fingerprint"]

    # the command line finds the same run folder and reuses every stage
    assert main(["run", "--config", str(path), "--no-progress"]) == 0
    assert f"mixture file: {result.mixture_path}" in capsys.readouterr().out
    again = read_stage_log(result.run_dir)[len(events):]
    assert again and all(e["status"] == "reused" for e in again if e["stage"] != "report")
    assert (result.run_dir / "commands.txt").read_text().splitlines() == [f"mergemix run --config {path}"]

    # validate accepts the imported base too (references trained from it)
    out = mm.validate(path, progress=False)
    assert (Path(out["dir"]) / "validation.json").is_file() and Path(out["dir"]).parent == result.run_dir
    assert len(out["table"]) >= 3  # two vertices and the centre
