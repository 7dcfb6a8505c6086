"""The shipped corpora configs (corpus B, demo + off-target domain): they load and validate, every
domain file is JSONL with a text field, and every domain has training and held-out documents."""

import json
from pathlib import Path

import pytest

from mergemix_jax.config import load_config
from mergemix_jax.data.sources import index_domain

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
NEW_CONFIGS = ["corpus_b.yaml", "demo_offtarget.yaml"]
DEMO_DOMAINS = ["prose", "code", "math", "dialogue"]


@pytest.mark.parametrize("name", NEW_CONFIGS)
def test_config_loads_and_every_domain_has_both_splits(name):
    config = load_config(CONFIGS / name)  # raises ConfigError on any validation problem
    for domain in config.data.domains:
        index = index_domain(domain, config.data.heldout_fraction, config.data.split_seed)
        assert len(index.doc_ids("train")) >= 20, domain.name  # demo prose: 33 addresses
        assert len(index.doc_ids("heldout")) >= 3, domain.name  # demo prose: 4


@pytest.mark.parametrize("name", NEW_CONFIGS)
def test_domain_files_are_jsonl_with_text(name):
    config = load_config(CONFIGS / name)
    for domain in config.data.domains:
        (path,) = domain.paths
        lines = Path(path).read_text(encoding="utf-8").rstrip("\n").split("\n")  # one record per newline, as the loader reads
        records = [json.loads(line) for line in lines]
        assert all(isinstance(r.get(domain.text_field), str) and r[domain.text_field].strip() for r in records), path
        assert 900_000 <= sum(len(r[domain.text_field].encode()) for r in records) <= 1_700_000, path


def test_corpus_b_shares_no_domain_with_the_demo():
    demo, corpus_b = load_config(CONFIGS / "demo.yaml"), load_config(CONFIGS / "corpus_b.yaml")
    assert len(corpus_b.data.domains) == 4
    assert not {d.name for d in demo.data.domains} & {d.name for d in corpus_b.data.domains}
    assert not {p for d in demo.data.domains for p in d.paths} & {p for d in corpus_b.data.domains for p in d.paths}


def test_offtarget_rewards_only_the_demo_domains():
    config = load_config(CONFIGS / "demo_offtarget.yaml")
    names = [d.name for d in config.data.domains]
    assert names[:4] == DEMO_DOMAINS and len(names) == 5
    assert config.pipeline.utility == {f"loss/{d}": 0.25 for d in DEMO_DOMAINS}


@pytest.mark.parametrize("name", NEW_CONFIGS)
def test_pipeline_and_model_match_the_demo(name):
    """Same model, training, search and validation settings as the demo; only data and the utility
    differ: the demo's utility is its own domains' benchmarks (eval task fields, search.normalise),
    the others' held-out loss."""
    demo, config = load_config(CONFIGS / "demo.yaml"), load_config(CONFIGS / name)
    fix = f"copy the section from configs/demo.yaml into configs/{name}"
    for section in ("model", "optim", "validate"):
        assert getattr(config, section) == getattr(demo, section), f"{section} differs: {fix}"
    utility_fields = {
        "eval": ("task_dir", "tasks", "choice_as_answer", "task_max_items", "task_max_len", "task_truncate"),
        "search": ("normalise",),
        "pipeline": ("utility", "base_dir"),  # the demo ships its base; the other corpora train theirs
    }
    for section, fields in utility_fields.items():
        same = {k: v for k, v in getattr(demo, section).__dict__.items() if k not in fields}
        assert same == {k: v for k, v in getattr(config, section).__dict__.items() if k not in fields}, f"{section} differs: {fix}"
