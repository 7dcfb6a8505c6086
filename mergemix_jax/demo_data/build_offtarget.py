"""Rebuild the off-target domain of configs/demo_offtarget.yaml: character-shuffled raw spam e-mail.

The demo's four domains plus this fifth one make a problem where the uniform mixture is clearly
wrong: the utility rewards only the four demo domains' held-out loss, and this domain is
machine-scrambled noise built from real text: complete RFC-822 spam messages from the SpamAssassin
public corpus (spam-1, spam-2; headers, HTML and encoded parts as delivered, bytes decoded as UTF-8
else Latin-1, CRLF -> LF), each with its characters randomly permuted (seeded by the message's file
name). The character statistics of raw e-mail stay; every word, line and structure is destroyed.
Raw spam left intact was tried first: uniform over five trained only 0.011 nats worse than uniform
over the four rewarded domains, too close to the seed noise to demand a search.

    python3 mergemix_jax/demo_data/build_offtarget.py --out mergemix_jax/demo_data

It calls `npm pack` and only needs the standard library. Selection is by a fixed hash order of the
file names, so a rerun writes identical files. Output: --out/offtarget/spam_shuffled.jsonl.
"""

from __future__ import annotations

import argparse
import glob
import os
import random
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from build_corpus_b import SPAM, npm_unpack, to_docs  # a sibling script (sys.path above)
from build_demo_data import stable_hash, write_jsonl

MAX_MESSAGE_BYTES = 50_000  # a few giant attachments would otherwise fill the domain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the demo_data folder")
    parser.add_argument("--work", default="", help="scratch folder for downloads (default: a temp folder)")
    args = parser.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="offtarget-build-")
    out = os.path.join(args.out, "offtarget")
    os.makedirs(out, exist_ok=True)
    docs = [shuffle_characters(d) for d in build_spam_raw(work)]
    write_jsonl(os.path.join(out, "spam_shuffled.jsonl"), docs)
    print(f"offtarget/spam_shuffled.jsonl: {len(docs)} documents, {sum(len(d['text'].encode()) for d in docs):,} bytes")


def decode(raw: bytes) -> str:
    """Message bytes as text: UTF-8 when valid, else Latin-1 (every byte kept); CRLF -> LF."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return text.replace("\r\n", "\n").strip()


def shuffle_characters(doc: dict) -> dict:
    """The document with its characters in a random order seeded by its source name (same multiset)."""
    chars = list(doc["text"])
    random.Random(stable_hash(doc["source"])).shuffle(chars)
    return {"text": "".join(chars), "source": f"{doc['source']} (characters shuffled)"}


def build_spam_raw(work: str) -> list[dict]:
    """One document per raw spam message (spam-1, spam-2) of at most MAX_MESSAGE_BYTES."""
    root = npm_unpack(SPAM, work)
    messages = []
    for group in ("spam-1", "spam-2"):
        for path in sorted(glob.glob(os.path.join(root, "data", group, "*.txt"))):
            with open(path, "rb") as f:
                text = decode(f.read())
            if len(text.encode()) <= MAX_MESSAGE_BYTES:
                messages.append((f"{group}/{os.path.basename(path)}", text))
    return to_docs(messages, "SpamAssassin")


if __name__ == "__main__":
    main()
