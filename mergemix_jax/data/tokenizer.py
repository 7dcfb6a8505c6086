"""Tokenizers: a file-free byte tokenizer (the default) and local sentencepiece / HF `tokenizers` files.

Every tokenizer has `vocab_size`, `pad_id`, `eos_id`, `bos_id` (None when it has none),
`encode(str) -> list[int]`, `encode_array(str) -> int32 [n]` and `decode(list[int]) -> str`.
A training document is encoded as `[bos] + tokens + [eos]` (no bos when `bos_id` is None), and
evaluation contexts start with the same bos; padding (`pad_id`) never carries loss.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Protocol

import numpy as np

from mergemix_jax.config.schema import DataConfig, ModelConfig
from mergemix_jax.data.errors import DataError
from mergemix_jax.reliability.atomic import atomic_write_text

EOS_NAMES = ("<eos>", "</s>", "<|endoftext|>", "<|end_of_text|>", "<|im_end|>")
PAD_NAMES = ("<pad>", "<|pad|>", "[PAD]")
BOS_NAMES = ("<bos>", "<s>", "<|begin_of_text|>")
BPE_SPECIAL_TOKENS = ("<pad>", "<eos>", "<bos>")  # ids 0, 1, 2 in tokenizers trained here


class Tokenizer(Protocol):
    """What the data pipeline and the evaluators need from a tokenizer."""

    vocab_size: int
    pad_id: int
    eos_id: int
    bos_id: int | None

    def encode(self, text: str) -> list[int]: ...

    def encode_array(self, text: str) -> np.ndarray: ...

    def decode(self, ids: Sequence[int]) -> str: ...


class ByteTokenizer:
    """UTF-8 bytes shifted by 3: 0 = pad, 1 = eos, 2 = bos, 3..258 = bytes. Vocabulary 259."""

    pad_id, eos_id, bos_id, offset = 0, 1, 2, 3
    vocab_size = 259

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` (no eos)."""
        return self.encode_array(text).tolist()

    def encode_array(self, text: str) -> np.ndarray:
        """Token ids of `text` as int32 [n] (no eos)."""
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int32) + self.offset

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`; special ids are dropped, broken UTF-8 becomes U+FFFD."""
        return bytes(int(i) - self.offset for i in ids if self.offset <= int(i) < self.vocab_size).decode("utf-8", errors="replace")

    def __repr__(self) -> str:
        return "ByteTokenizer(vocab_size=259)"


class HFTokenizer:
    """A HF `tokenizers` JSON file; eos/pad are looked up by their usual names."""

    def __init__(self, path: str):
        import tokenizers

        try:
            self._tok = tokenizers.Tokenizer.from_file(path)
        except Exception as err:
            raise DataError(f"data.tokenizer: {path} is not a readable `tokenizers` JSON file ({err})") from None
        self.path = path
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
        eos = _first_id(self._tok.token_to_id, EOS_NAMES)
        if eos is None:
            raise DataError(f"data.tokenizer: {path} has none of the end-of-text tokens {EOS_NAMES}; add one as a special token")
        self.eos_id = eos
        pad = _first_id(self._tok.token_to_id, PAD_NAMES)
        self.pad_id = 0 if pad is None else pad
        self.bos_id = _first_id(self._tok.token_to_id, BOS_NAMES)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` (no special tokens added)."""
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_array(self, text: str) -> np.ndarray:
        """Token ids of `text` as int32 [n]."""
        return np.asarray(self.encode(text), dtype=np.int32)

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`, special tokens dropped."""
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=True)

    def __repr__(self) -> str:
        return f"HFTokenizer({self.path!r}, vocab_size={self.vocab_size})"


class SentencePieceTokenizer:
    """A sentencepiece `.model` file (needs the `sentencepiece` extra)."""

    def __init__(self, path: str):
        try:
            import sentencepiece
        except ImportError:
            raise DataError("data.tokenizer: reading a .model file needs sentencepiece: pip install 'mergemix-jax[sentencepiece]'") from None
        try:
            self._sp = sentencepiece.SentencePieceProcessor(model_file=path)
        except Exception as err:
            raise DataError(f"data.tokenizer: {path} is not a readable sentencepiece model ({err})") from None
        self.path = path
        self.vocab_size = int(self._sp.get_piece_size())
        if self._sp.eos_id() < 0:
            raise DataError(f"data.tokenizer: {path} defines no eos piece; retrain it with --eos_id set")
        self.eos_id = int(self._sp.eos_id())
        self.pad_id = max(int(self._sp.pad_id()), 0)
        self.bos_id = int(self._sp.bos_id()) if self._sp.bos_id() >= 0 else None

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` (no bos/eos)."""
        return list(self._sp.encode(text))

    def encode_array(self, text: str) -> np.ndarray:
        """Token ids of `text` as int32 [n]."""
        return np.asarray(self._sp.encode(text), dtype=np.int32)

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`."""
        return self._sp.decode([int(i) for i in ids])

    def __repr__(self) -> str:
        return f"SentencePieceTokenizer({self.path!r}, vocab_size={self.vocab_size})"


def load_tokenizer(data_cfg: DataConfig) -> Tokenizer:
    """The tokenizer named by `data.tokenizer`: "byte", a `.json` (tokenizers) or a `.model` (sentencepiece)."""
    spec = data_cfg.tokenizer
    if spec in ("byte", ""):
        return ByteTokenizer()
    if not os.path.isfile(spec):
        raise DataError(f"data.tokenizer: file {spec} does not exist; use 'byte' or train one with `mergemix data train-tokenizer`")
    if spec.endswith(".json"):
        return HFTokenizer(spec)
    if spec.endswith(".model"):
        return SentencePieceTokenizer(spec)
    raise DataError(f"data.tokenizer: {spec} must end in .json (HF tokenizers) or .model (sentencepiece)")


def check_vocab(tokenizer: Tokenizer, model_cfg: ModelConfig) -> None:
    """Fail early when the model's embedding table is smaller than the tokenizer's vocabulary."""
    if model_cfg.vocab_size < tokenizer.vocab_size:
        raise DataError(
            f"model.vocab_size ({model_cfg.vocab_size}) is smaller than the tokenizer's vocabulary "
            f"({tokenizer.vocab_size}, {tokenizer!r}); set model.vocab_size >= {tokenizer.vocab_size}"
        )


def train_bpe(texts: Iterable[str], vocab_size: int, out_path: str) -> HFTokenizer:
    """Train a byte-level BPE on `texts` (streamed) and write it atomically to `out_path` (.json).

    Ids 0, 1, 2 are `<pad>`, `<eos>`, `<bos>`; the 256 byte symbols are always in the vocabulary, so
    any text encodes without unknown tokens.
    """
    from tokenizers import Tokenizer as HFTok
    from tokenizers import decoders, models, pre_tokenizers, trainers

    if not out_path.endswith(".json"):
        raise DataError(f"--out {out_path}: a trained tokenizer is saved as a .json file")
    min_size = len(BPE_SPECIAL_TOKENS) + 256
    if vocab_size < min_size:
        raise DataError(f"--vocab-size {vocab_size} is too small: byte-level BPE needs at least {min_size}")
    tok = HFTok(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(BPE_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    atomic_write_text(out_path, tok.to_str(pretty=True))
    return HFTokenizer(out_path)


def _first_id(lookup, names: Sequence[str]) -> int | None:
    for name in names:
        found = lookup(name)
        if found is not None:
            return int(found)
    return None
