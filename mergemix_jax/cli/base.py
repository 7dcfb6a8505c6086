"""`mergemix import-base` (HF safetensors / GGUF -> run directory) and `mergemix export-hf` (run -> HF)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mergemix_jax.cli.main import add_config_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    imp = subparsers.add_parser(
        "import-base",
        help="turn a Hugging Face Llama checkpoint or a GGUF file into a base run (for pipeline.base_dir, train.init_from)",
        description="Examples:\n"
        "  mergemix import-base Meta-Llama-3-8B/ --out runs/base-8b --config configs/llama_8b_v6e.yaml\n"
        "  mergemix import-base SmolLM2-135M-Instruct.Q4_1.gguf --out runs/smollm2\n"
        "The checkpoint folder's own tokenizer.json (else sentencepiece tokenizer.model) is copied beside the base;\n"
        "configs using the base must set data.tokenizer to it (docs/bring-your-own-base.md).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    imp.add_argument("source", help="HF folder (config.json + model.safetensors, or shards + model.safetensors.index.json), a .safetensors file, or a .gguf file")
    imp.add_argument("--out", required=True, help="new run directory to write")
    add_config_arguments(imp, required=False)
    imp.set_defaults(func=run_import)
    exp = subparsers.add_parser(
        "export-hf",
        help="write a run's parameters as a Hugging Face LlamaForCausalLM folder",
        description="Example:\n  mergemix export-hf runs/experts/code --out hf/code --dtype bfloat16",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    exp.add_argument("run", help="run directory with checkpoints (a base, an expert or a merged model)")
    exp.add_argument("--out", required=True, help="output folder (config.json + model.safetensors)")
    exp.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    exp.add_argument("--step", type=int, default=None, help="checkpoint step (default: the newest)")
    exp.add_argument("--overwrite", action="store_true", help="replace --out when it is not empty (all its files)")
    exp.set_defaults(func=run_export)


def run_import(args: argparse.Namespace) -> int:
    from mergemix_jax.config import load_config
    from mergemix_jax.interop import InteropError, import_gguf, import_hf_safetensors
    from mergemix_jax.interop.run_dir import save_base
    from mergemix_jax.model.architecture import architecture_differences

    source, out = Path(args.source), Path(args.out)
    try:
        if source.suffix == ".gguf":
            cfg, params, tok = import_gguf(source)
        else:
            cfg, params = import_hf_safetensors(source)
            tok = None
        if args.config:
            wanted = load_config(args.config, args.overrides).model
            diff = architecture_differences(cfg, wanted)
            if diff:
                raise InteropError(f"{source} does not match model.* of {args.config} (imported, config): {diff}")
            cfg = wanted  # keep the config's compute_dtype, remat, max_seq_len for training
        save_base(params, cfg, out, str(source))
    except InteropError as err:
        print(f"mergemix import-base: {err}", file=sys.stderr)
        return 2
    print(f"imported {source} -> {out} ({cfg.n_layers} layers, d_model {cfg.d_model}, vocab {cfg.vocab_size})")
    _import_tokenizer(source, out, tok, cfg.vocab_size)
    return 0


def _import_tokenizer(source: Path, out: Path, gguf_tok, vocab_size: int) -> None:
    """Put the source's own tokenizer beside the base and say which (or warn that there is none)."""
    from mergemix_jax.config import DataConfig
    from mergemix_jax.data import DataError, load_tokenizer
    from mergemix_jax.interop.run_dir import copy_tokenizer

    if gguf_tok is None:
        folder = source if source.is_dir() else source.parent  # the checkpoint folder: it holds config.json
        tokenizer = copy_tokenizer(folder, out)
        origin, missing = f"copied from {folder}", f"{folder} has no tokenizer.json or tokenizer.model"
    else:
        tokenizer = out / "tokenizer.json" if gguf_tok.tokenizer is not None else None
        if tokenizer is not None:
            gguf_tok.tokenizer.save(str(tokenizer))
        origin, missing = f"converted from {source}", f"{source}'s tokenizer (type {gguf_tok.model!r}) cannot be converted (only 'gpt2' byte-level BPE is)"
    if tokenizer is None:
        print(f"mergemix import-base: WARNING: {missing}, so the base has no tokenizer; set data.tokenizer to the one it was trained with", file=sys.stderr)
        return
    print(f"tokenizer: {tokenizer} ({origin}); use data.tokenizer={tokenizer} with this base")
    try:
        loaded = load_tokenizer(DataConfig(tokenizer=str(tokenizer)))
    except DataError as err:
        print(f"mergemix import-base: WARNING: {err}", file=sys.stderr)
        return
    if loaded.vocab_size > vocab_size:
        print(f"mergemix import-base: WARNING: the tokenizer has {loaded.vocab_size} ids but the model only {vocab_size} embeddings", file=sys.stderr)


def run_export(args: argparse.Namespace) -> int:
    from mergemix_jax.interop import export_hf_safetensors
    from mergemix_jax.interop.hf import tokenizer_token_ids
    from mergemix_jax.interop.run_dir import base_tokenizer_file, replacing_folder, run_tokenizer
    from mergemix_jax.train.checkpoint import load_params

    params, cfg = load_params(args.run, step=args.step)  # a CheckpointError ends as one line (cli/main.py)
    tokenizer, why_not = run_tokenizer(args.run)
    token_ids = tokenizer_token_ids(tokenizer) if tokenizer is not None else None
    with replacing_folder(args.out, args.overwrite, keep=args.run) as staging:  # an InteropError ends as one line
        if tokenizer is None:
            print(f"mergemix export-hf: WARNING: {why_not}; config.json gets no bos/eos/pad ids, so transformers will assume Llama's", file=sys.stderr)
        export_hf_safetensors(params, cfg, staging, dtype=args.dtype, token_ids=token_ids)
        tokenizer_file = base_tokenizer_file(args.run)
        if tokenizer_file is not None:
            (staging / tokenizer_file.name).write_bytes(tokenizer_file.read_bytes())
    ids = "" if token_ids is None else " (" + ", ".join(f"{k}={v}" for k, v in token_ids.items()) + ")"
    print(f"exported {args.run} -> {args.out}{ids}")
    return 0
