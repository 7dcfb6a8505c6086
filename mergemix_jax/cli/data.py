"""`mergemix data`: inspect the configured domains (`stats`) and train a BPE tokenizer on them."""

from __future__ import annotations

import argparse

from mergemix_jax.cli.main import add_config_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="domain statistics and tokenizer training")
    commands = parser.add_subparsers(dest="data_command", required=True)
    stats = commands.add_parser(
        "stats",
        help="documents and tokens per domain and split, and the epochs the train.mixture budget makes",
        description="Example:\n  mergemix data stats --config configs/demo.yaml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_arguments(stats)
    stats.set_defaults(func=run_stats)
    tok = commands.add_parser(
        "train-tokenizer",
        help="train a byte-level BPE (HF tokenizers JSON) on the training split of the domains",
        description="Example:\n  mergemix data train-tokenizer --config configs/demo.yaml --vocab-size 2048 --out tok.json\n"
        "then set data.tokenizer=tok.json and model.vocab_size >= the vocabulary size.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_arguments(tok)
    tok.add_argument("--vocab-size", type=int, required=True, help="vocabulary size including <pad>, <eos> and 256 bytes")
    tok.add_argument("--out", required=True, help="output .json file (written atomically)")
    tok.add_argument("--max-chars-per-domain", type=int, default=0, help="train on at most this many characters per domain (0 = all)")
    tok.set_defaults(func=run_train_tokenizer)


def run_stats(args: argparse.Namespace) -> int:
    from mergemix_jax.config import load_config
    from mergemix_jax.data import (
        check_token_budget,
        document_counts,
        epochs_per_domain,
        heldout_warnings,
        load_tokenizer,
        normalize_mixture,
        token_counts,
    )

    config = load_config(args.config, args.overrides)
    tokenizer = load_tokenizer(config.data)
    docs, tokens = document_counts(config.data), token_counts(config.data)
    print(f"tokenizer: {tokenizer!r}")
    header = f"{'domain':<16} {'docs train':>11} {'docs heldout':>13} {'tokens train':>14} {'tokens heldout':>15}"
    print(header)
    print("-" * len(header))
    for name in tokens:
        print(f"{name:<16} {docs[name]['train']:>11,} {docs[name]['heldout']:>13,} {tokens[name]['train']:>14,} {tokens[name]['heldout']:>15,}")
    total = {split: sum(t[split] for t in tokens.values()) for split in ("train", "heldout")}
    print(f"{'total':<16} {'':>11} {'':>13} {total['train']:>14,} {total['heldout']:>15,}")
    budget = config.train.steps * config.train.batch_size * config.train.seq_len
    weights = normalize_mixture(config.data, config.train.mixture)
    epochs = epochs_per_domain(weights, budget, tokens)
    print(f"\ntrain budget {budget:,} tokens (train.steps x batch_size x seq_len); mixture "
          + ", ".join(f"{n}={w:.3f} ({epochs[n]:.2f} epochs)" for n, w in weights.items()))
    for warning in [*heldout_warnings(config.data, docs), *check_token_budget(config.data, config.train.mixture, budget, tokens)]:
        print(f"WARNING: {warning}")
    return 0


def run_train_tokenizer(args: argparse.Namespace) -> int:
    from mergemix_jax.config import load_config
    from mergemix_jax.data import index_all, iter_documents, train_bpe

    config = load_config(args.config, args.overrides)
    indices = index_all(config.data)

    def texts():
        for index in indices.values():
            used = 0
            for text in iter_documents(index, "train"):
                if args.max_chars_per_domain and used >= args.max_chars_per_domain:
                    break
                used += len(text)
                yield text

    tokenizer = train_bpe(texts(), args.vocab_size, args.out)
    print(f"wrote {args.out}: vocabulary {tokenizer.vocab_size} (pad={tokenizer.pad_id}, eos={tokenizer.eos_id}); "
          f"set data.tokenizer={args.out} and model.vocab_size >= {tokenizer.vocab_size}")
    return 0
