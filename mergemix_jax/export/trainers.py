"""A run's mixture as the weighted data mixture of other trainers' configs.

Each renderer turns an ExportPlan into the text of one config, written against that project's
config schema as read at these commits (check again when a trainer's version differs):

- MaxText (AI-Hypercomputer/maxtext @ e591f30, 2026-08-22): src/maxtext/configs/base.yml and
  docs/guides/data_input_pipeline/data_input_grain.md: `dataset_type: grain`, and a blend as
  `grain_train_files: "<glob>,<weight>;<glob>,<weight>"` (weights normalised by MaxText);
  src/maxtext/input_pipeline/grain_data_processing.py blends ArrayRecord sources only.
- levanter (stanford-crfm/levanter @ 9263f81, 2025-09-26): src/levanter/data/text.py
  LMMixtureDatasetConfig (`configs:` of UrlDatasetSourceConfig with `train_urls` and
  `format: {type: text, text_key}`, `train_weights:` name -> weight), config/gpt2_nano_mixture.yaml;
  URL sources read .jsonl/.json/.txt/.parquet (src/levanter/data/sharded_datasource.py).
- OLMo-core (allenai/OLMo-core @ fa6c501, 2026-06-22): src/olmo_core/data/source_mixture.py
  SourceMixtureConfig(source_name, target_ratio, paths, max_repetition_ratio) in a
  SourceMixtureList inside SourceMixtureDatasetConfig(requested_tokens, global_batch_size);
  docs/source/guides/data_mixing.rst. Sources are pre-tokenized .npy files.
- torchtitan (pytorch/torchtitan @ b5bcd76, 2026-08-21): torchtitan/components/data/README.md and
  dataset.py: DatasetMixConfig(datasets=(WeightedDataset(dataset, weight), ...)) of
  SingleDatasetConfig(source=IndexedJsonlSource | HuggingFaceRandomAccessSource, processor=
  TextProcessor.Config(text_fn=...)); each child packed before mixing so weights count tokens.
"""

from __future__ import annotations

import json

import yaml

from mergemix_jax.export.plan import DomainPlan, ExportPlan

MAXTEXT_FILE_TYPE = "arrayrecord"


def header(plan: ExportPlan, prefix: str = "# ") -> str:
    """Comment lines: where the mixture comes from, epochs at the target, warnings, dropped domains."""
    lines = [f"mixture of mergemix run {plan.run} (search method {plan.method}); weights sum to 1"]
    if plan.target_tokens is not None:
        lines.append(f"at {plan.target_tokens:,} training tokens (data.max_epochs = {plan.max_epochs:g}):")
        lines += [f"  {d.name}: weight {d.weight:.4f}, {d.train_tokens:,} tokens, {d.epochs:.2f} epochs" for d in plan.domains]
    lines += [f"WARNING: {w}" for w in plan.warnings]
    if plan.dropped:
        lines.append(f"left out (weight ~0): {', '.join(plan.dropped)}")
    return "".join(f"{prefix}{line}\n" for line in lines)


def notes(lines: list[str], prefix: str = "# ") -> str:
    """`lines` as comment lines."""
    return "".join(f"{prefix}{line}\n" for line in lines)


def _yaml(data: dict) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=1000)


def render_maxtext(plan: ExportPlan) -> str:
    """MaxText config overrides (YAML): dataset_type grain and the blend in grain_train_files, one
    source per configured path (a domain of several paths splits its weight by their bytes)."""
    sources = [(path, d.weight * share) for d in plan.domains for path, share in zip(d.paths, d.path_shares, strict=True)]
    bad = [path for path, _ in sources if "," in path or ";" in path]
    if bad:
        raise ValueError(f"MaxText separates blended sources with ';' and weights with ',': rename paths {bad}")
    fields = sorted({d.text_field for d in plan.domains})
    extra = []
    not_array_record = [d.name for d in plan.domains if d.format != "array_record"]
    if not_array_record:
        extra.append(f"MaxText blends ArrayRecord files only: convert domains {not_array_record} to ArrayRecord and point their globs there")
    if len(fields) > 1:
        extra.append(f"MaxText reads one text column (train_data_columns) for all sources; the domains use {fields}")
    config = {
        "dataset_type": "grain",
        "grain_file_type": MAXTEXT_FILE_TYPE,
        "grain_train_files": ";".join(f"{path},{weight:.6g}" for path, weight in sources),
        "train_data_columns": fields[:1],
    }
    return header(plan) + notes(extra) + _yaml(config)


LEVANTER_SUFFIXES = (".jsonl", ".json", ".txt", ".parquet")


def render_levanter(plan: ExportPlan) -> str:
    """A levanter `data:` section: LMMixtureDatasetConfig with `configs` and `train_weights`."""
    unsupported = [d.name for d in plan.domains if d.format in ("arrow", "hf_disk", "array_record")]
    extra = [f"levanter URL sources read .jsonl/.json/.txt/.parquet (compressed too): export domains {unsupported} to one of them"] if unsupported else []
    if any(d.format == "text" for d in plan.domains):
        extra.append("levanter reads a .txt file one line per document; mergemix's text domains make one document per file or paragraph")
    configs = {d.name: {"train_urls": list(d.paths), "format": {"type": "text", "text_key": d.text_field}} for d in plan.domains}
    return header(plan) + notes(extra) + _yaml({"data": {"configs": configs, "train_weights": plan.weights}})


def render_olmo_core(plan: ExportPlan) -> str:
    """A Python module building OLMo-core's SourceMixtureDatasetConfig; max_repetition_ratio is data.max_epochs."""
    requested = plan.target_tokens or plan.run_tokens
    sources = "\n".join(
        f"        SourceMixtureConfig(\n"
        f"            source_name={d.name!r},\n"
        f"            target_ratio={d.weight!r},\n"
        f"            paths={list(d.paths)!r},  # replace with this domain's tokenized .npy files\n"
        f"            max_repetition_ratio={float(plan.max_epochs)!r},\n"
        f"        ),"
        for d in plan.domains
    )
    lines = [
        "OLMo-core mixes pre-tokenized .npy token files: tokenize each domain's files (e.g. with dolma) and",
        "replace `paths` below with the .npy files; the ratios are shares of tokens, as in mergemix.",
    ]
    body = (
        "from olmo_core.data.source_mixture import SourceMixtureConfig, SourceMixtureDatasetConfig, SourceMixtureList\n\n"
        f"SEQUENCE_LENGTH = {plan.seq_len}  # train.seq_len of the run: set your target run's\n"
        f"GLOBAL_BATCH_SIZE = SEQUENCE_LENGTH * {plan.batch_size}  # tokens per optimizer step\n\n"
        "mix_config = SourceMixtureDatasetConfig(\n"
        "    source_list=SourceMixtureList(sources=[\n"
        f"{sources}\n"
        "    ]),\n"
        f"    requested_tokens={requested},  # {'--target-tokens' if plan.target_tokens else 'the run: train.steps x batch_size x seq_len'}\n"
        "    global_batch_size=GLOBAL_BATCH_SIZE,\n"
        ")\n"
    )
    return header(plan) + notes(lines) + body


def _torchtitan_source(d: DomainPlan) -> str:
    """The torchtitan source config expression of one domain."""
    if d.format == "jsonl":
        return f"IndexedJsonlSource.Config(patterns={tuple(d.paths)!r})"
    if d.format == "text":
        sample_by = "paragraph" if d.split_by == "blank_line" else "document"
        kwargs = {"data_files": list(d.paths), "sample_by": sample_by}
        return f"HuggingFaceRandomAccessSource.Config(path='text', split='train', load_dataset_kwargs={kwargs!r})"
    if d.format in ("parquet", "arrow", "hf_disk"):
        loader = "parquet" if d.format == "parquet" else "arrow"
        return f"HuggingFaceRandomAccessSource.Config(path={loader!r}, split='train', load_dataset_kwargs={{'data_files': {list(d.paths)!r}}})"
    return "None  # no torchtitan source reads ArrayRecord: export this domain as JSONL or Parquet"


def render_torchtitan(plan: ExportPlan) -> str:
    """A Python module building torchtitan's DatasetMixConfig of packed per-domain datasets."""
    lines = [
        "torchtitan mixes with DatasetMixConfig(WeightedDataset(...)); each domain is packed before mixing,",
        "so the weights count tokens as mergemix's do. Assign `mixture` to config.dataloader's dataset.",
    ]
    if any(d.format == "hf_disk" for d in plan.domains):
        lines.append("hf_disk paths are save_to_disk folders: list their data-*.arrow files in data_files")
    datasets = "\n".join(
        f"    {d.name!r}: SingleDatasetConfig(\n"
        f"        source={_torchtitan_source(d)},\n"
        f"        processor=TextProcessor.Config(text_fn=lambda row: row[{('text' if d.format == 'text' else d.text_field)!r}]),\n"
        f"        post_filters=(lambda sample: sample is not None,),\n"
        f"    ),"
        for d in plan.domains
    )
    weights = "\n".join(f"        WeightedDataset(dataset=ConcatThenSplitPackingConfig(dataset=domains[{d.name!r}]), weight={d.weight!r})," for d in plan.domains)
    body = (
        "from torchtitan.components.data import (\n"
        "    ConcatThenSplitPackingConfig,\n    DatasetMixConfig,\n    HuggingFaceRandomAccessSource,\n"
        "    IndexedJsonlSource,\n    SingleDatasetConfig,\n    WeightedDataset,\n)\n"
        "from torchtitan.hf_datasets.text_datasets import TextProcessor\n\n"
        f"domains = {{\n{datasets}\n}}\n\n"
        f"mixture = DatasetMixConfig(\n    datasets=(\n{weights}\n    ),\n)\n"
    )
    return header(plan) + notes(lines) + body


def render_json(plan: ExportPlan) -> str:
    """The plan as one JSON document (mergemix.export/v1): domains with paths, format, weight, tokens, epochs."""
    domains = {
        d.name: {"paths": list(d.paths), "format": d.format, "text_field": d.text_field, "weight": d.weight, "train_tokens": d.train_tokens, "epochs": d.epochs}
        for d in plan.domains
    }
    document = {
        "format": "mergemix.export/v1",
        "run": plan.run,
        "method": plan.method,
        "target_tokens": plan.target_tokens,
        "max_epochs": plan.max_epochs,
        "domains": domains,
        "dropped": list(plan.dropped),
        "warnings": list(plan.warnings),
    }
    return json.dumps(document, indent=2) + "\n"
