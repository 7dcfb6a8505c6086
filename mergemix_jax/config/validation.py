"""Checks that a config can run; each problem names the key and says what would fix it."""

from __future__ import annotations

import dataclasses
import math
import re

from mergemix_jax.config.registries import MERGE_METHODS, TASK_METRICS
from mergemix_jax.config.schema import (
    INNER_METHODS,
    LIGHTGBM_PRESETS,
    MAPPINGS,
    NORMALISATIONS,
    PARAMETRISATIONS,
    REGRESSORS,
    SUBSET_EXPORTS,
    Config,
    SearchConfig,
)

SCHEDULES = ("constant", "cosine", "wsd")
DTYPES = ("float32", "bfloat16")
DOMAIN_FORMATS = ("text", "jsonl", "source", "parquet", "arrow", "hf_disk", "array_record")  # the last four: data/rows.py
SPLIT_MODES = ("file", "blank_line")
# a domain name is a folder name (<run>/experts/<name>) and part of metric and CSV column names
# (loss/<name>, w/<name>): letters, digits, _ . - and not starting with a dot
DOMAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
DOMAIN_NAME_RULE = "letters, digits, '_', '.', '-', starting with a letter or digit, at most 64 characters"
RESERVED_DOMAIN_NAMES = ("mean",)  # loss/mean is the average over domains
# a domain without `format:` takes its format from its files' extension (config/loading.py)
FORMAT_BY_EXTENSION = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".arrow": "arrow", ".array_record": "array_record"}
AMBIGUOUS_EXTENSIONS = {".json": "set format: jsonl if each line is one JSON object, or convert a JSON array file to JSON lines"}
FIELD_FORMATS = ("jsonl", "parquet", "arrow", "hf_disk", "array_record")  # formats that read DomainConfig.text_field
BYTE_VOCAB = 259  # data/tokenizer.py ByteTokenizer.vocab_size
REMAT_POLICIES = ("full", "dots_saveable", "dots_with_no_batch_dims_saveable")  # full: keep a block's input only; else jax.checkpoint_policies.<name>


def validate(config: Config) -> list[str]:
    """Return every problem found in `config` (empty when it is valid)."""
    return [*_model_problems(config), *_mesh_problems(config), *_optim_problems(config), *_data_problems(config), *_train_problems(config), *_eval_problems(config), *_pipeline_problems(config), *_search_problems(config), *_verify_problems(config)]


def _positive(values: dict[str, float]) -> list[str]:
    return [f"key '{key}' must be > 0, got {value}" for key, value in values.items() if not value > 0]


def _model_problems(config: Config) -> list[str]:
    m = config.model
    problems = _positive({f"model.{k}": getattr(m, k) for k in ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff", "max_seq_len", "rope_theta", "norm_eps", "init_std")})
    if m.n_heads > 0 and m.n_kv_heads > 0 and m.n_heads % m.n_kv_heads:
        problems.append(f"key 'model.n_heads' ({m.n_heads}) must be a multiple of 'model.n_kv_heads' ({m.n_kv_heads})")
    if m.head_dim == 0 and m.n_heads > 0 and m.d_model % m.n_heads:
        problems.append(f"key 'model.d_model' ({m.d_model}) must be divisible by 'model.n_heads' ({m.n_heads}), or set 'model.head_dim'")
    if m.head_dim < 0 or m.head_dim % 2:
        problems.append(f"key 'model.head_dim' must be 0 (auto) or a positive even number, got {m.head_dim}")
    elif m.n_heads > 0 and m.resolved_head_dim % 2:
        problems.append(f"rotary embeddings need an even head size; d_model/n_heads = {m.resolved_head_dim}")
    if m.compute_dtype not in DTYPES:
        problems.append(f"key 'model.compute_dtype' must be one of {DTYPES}, got {m.compute_dtype!r}")
    return problems + _rope_scaling_problems(m.rope_scaling) + _memory_problems(config)


def _rope_scaling_problems(r) -> list[str]:
    if r is None:
        return []
    problems = [] if r.rope_type == "llama3" else [f"key 'model.rope_scaling.rope_type' must be 'llama3' (the only scaling supported), got {r.rope_type!r}"]
    problems += _positive({f"model.rope_scaling.{k}": getattr(r, k) for k in ("factor", "low_freq_factor", "original_max_position_embeddings")})
    if not r.high_freq_factor > r.low_freq_factor:
        problems.append(f"key 'model.rope_scaling.high_freq_factor' ({r.high_freq_factor}) must exceed 'model.rope_scaling.low_freq_factor' ({r.low_freq_factor})")
    return problems


def _memory_problems(config: Config) -> list[str]:
    """model.remat_policy, model.attention_block, train.grad_accum_steps (the memory knobs)."""
    m, t = config.model, config.train
    problems = []
    if m.remat_policy not in REMAT_POLICIES:
        problems.append(f"key 'model.remat_policy' must be one of {tuple(REMAT_POLICIES)}, got {m.remat_policy!r}")
    if m.attention_block < 0:
        problems.append(f"key 'model.attention_block' must be >= 0 (0 = whole sequence), got {m.attention_block}")
    if t.grad_accum_steps < 1 or (t.batch_size > 0 and t.batch_size % t.grad_accum_steps):
        problems.append(f"key 'train.grad_accum_steps' must be >= 1 and divide train.batch_size ({t.batch_size}), got {t.grad_accum_steps}")
    return problems


def _mesh_problems(config: Config) -> list[str]:
    sizes = {"mesh.data": config.mesh.data, "mesh.fsdp": config.mesh.fsdp, "mesh.tensor": config.mesh.tensor}
    problems = [f"key '{k}' must be a positive integer or -1 (fill), got {v}" for k, v in sizes.items() if v == 0 or v < -1]
    if sum(v == -1 for v in sizes.values()) > 1:
        problems.append("at most one of mesh.data, mesh.fsdp, mesh.tensor may be -1")
    m, tensor = config.model, config.mesh.tensor
    if tensor > 1:
        for key in ("n_heads", "n_kv_heads", "d_ff", "vocab_size"):
            if getattr(m, key) % tensor:
                problems.append(f"key 'model.{key}' ({getattr(m, key)}) must be divisible by 'mesh.tensor' ({tensor})")
    if config.mesh.fsdp > 1 and m.d_model % config.mesh.fsdp:
        problems.append(f"key 'model.d_model' ({m.d_model}) must be divisible by 'mesh.fsdp' ({config.mesh.fsdp})")
    return problems


def _optim_problems(config: Config) -> list[str]:
    o = config.optim
    problems = _positive({"optim.learning_rate": o.learning_rate})
    if o.schedule not in SCHEDULES:
        problems.append(f"key 'optim.schedule' must be one of {SCHEDULES}, got {o.schedule!r}")
    if not 0 <= o.decay_fraction <= 1:
        problems.append(f"key 'optim.decay_fraction' must be in [0, 1], got {o.decay_fraction}")
    if not 0 <= o.min_lr_ratio <= 1:
        problems.append(f"key 'optim.min_lr_ratio' must be in [0, 1], got {o.min_lr_ratio}")
    if o.warmup_steps < 0 or o.warmup_steps > config.train.steps:
        problems.append(f"key 'optim.warmup_steps' must be in [0, train.steps={config.train.steps}], got {o.warmup_steps}")
    if o.grad_clip_norm < 0 or o.weight_decay < 0:
        problems.append("keys 'optim.grad_clip_norm' and 'optim.weight_decay' must be >= 0")
    return problems


def _data_problems(config: Config) -> list[str]:
    d = config.data
    problems = []
    names = [dom.name for dom in d.domains]
    for i, dom in enumerate(d.domains):
        where = f"data.domains[{i}]"
        if not dom.name:
            problems.append(f"key '{where}.name' is empty; give every domain a name")
        elif not DOMAIN_NAME.fullmatch(dom.name) or dom.name in RESERVED_DOMAIN_NAMES:
            why = f"'{dom.name}' is reserved (loss/{dom.name} is a metric)" if dom.name in RESERVED_DOMAIN_NAMES else f"{dom.name!r} is not a valid name"
            problems.append(f"key '{where}.name': {why}; a domain name is a folder and metric name: {DOMAIN_NAME_RULE}")
        if dom.split_by != "file" and dom.format != "text":
            problems.append(f"key '{where}.split_by' ({dom.split_by!r}) applies to format text only, but domain '{dom.name}' has format {dom.format!r}; drop split_by")
        if dom.text_field != "text" and dom.format not in FIELD_FORMATS:
            problems.append(f"key '{where}.text_field' ({dom.text_field!r}) is read by formats {FIELD_FORMATS} only, but domain '{dom.name}' has format {dom.format!r}; set its format (e.g. jsonl) or drop text_field")
        if not dom.paths:
            problems.append(f"key '{where}.paths' of domain '{dom.name}' lists no files")
        problems += [f"key '{where}.paths' of domain '{dom.name}': {problem}" for problem in _url_problems(dom.paths, dom.format)]
        if dom.format not in DOMAIN_FORMATS:
            problems.append(f"key '{where}.format' must be one of {DOMAIN_FORMATS}, got {dom.format!r}")
        if dom.split_by not in SPLIT_MODES:
            problems.append(f"key '{where}.split_by' must be one of {SPLIT_MODES}, got {dom.split_by!r}")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        problems.append(f"key 'data.domains' names {duplicates} more than once; every domain needs its own name")
    if d.domains and d.tokenizer in ("byte", "") and config.model.vocab_size < BYTE_VOCAB:
        problems.append(f"key 'model.vocab_size' ({config.model.vocab_size}) is smaller than the byte tokenizer's {BYTE_VOCAB} ids (data.tokenizer: byte); set model.vocab_size >= {BYTE_VOCAB}")
    if not 0 <= d.heldout_fraction < 1:
        problems.append(f"key 'data.heldout_fraction' must be in [0, 1), got {d.heldout_fraction}")
    problems += _positive({"data.max_epochs": d.max_epochs})
    if "://" in d.cache_dir:
        problems.append(f"key 'data.cache_dir' is a URL ({d.cache_dir}); the data cache is a local folder: {REMOTE_HINT}")
    for name, weight in config.train.mixture.items():
        if name not in names:
            problems.append(f"key 'train.mixture.{name}' names no domain in data.domains (known: {names})")
        if not (isinstance(weight, (int, float)) and math.isfinite(weight) and weight >= 0):
            problems.append(f"key 'train.mixture.{name}' must be a finite weight >= 0, got {weight}")
    if config.train.mixture and not sum(config.train.mixture.values()) > 0:
        problems.append("key 'train.mixture' has weights that sum to 0; give at least one domain a positive weight")
    return problems


def _url_problems(paths: list[str], fmt: str) -> list[str]:
    """Why URL paths (gs://, s3://, ...) of a domain cannot be read here (data/paths.py reads them through fsspec)."""
    from mergemix_jax.config.remote import url_problem

    remote = [p for p in paths if "://" in p]
    if remote and fmt == "array_record":
        return [f"URLs {remote}: ArrayRecord is read from local files only; {REMOTE_HINT}"]
    return [problem for problem in map(url_problem, remote) if problem]


REMOTE_HINT = "use a local path, or mount the bucket with gcsfuse (Cloud TPU VMs: e.g. /gcs/<bucket>/...) and use that path"


def _train_problems(config: Config) -> list[str]:
    t = config.train
    problems = _positive({f"train.{k}": getattr(t, k) for k in ("steps", "batch_size", "seq_len", "log_every", "checkpoint_every", "keep_checkpoints")})
    for key in ("output_dir", "init_from"):
        if "://" in getattr(t, key):
            problems.append(f"key 'train.{key}' is a URL ({getattr(t, key)}); {REMOTE_HINT}")
    if t.seq_len > config.model.max_seq_len:
        problems.append(f"key 'train.seq_len' ({t.seq_len}) exceeds 'model.max_seq_len' ({config.model.max_seq_len})")
    batch_axes = config.mesh.data * config.mesh.fsdp  # batches split over both (train/step.py batch_sharding)
    if config.mesh.data > 0 and config.mesh.fsdp > 0 and t.batch_size > 0 and t.batch_size % batch_axes:
        problems.append(f"key 'train.batch_size' ({t.batch_size}) must be divisible by mesh.data x mesh.fsdp ({batch_axes}), the devices a batch is split over")
    if t.divergence_factor != 0 and not t.divergence_factor > 1:
        problems.append(f"key 'train.divergence_factor' must be 0 (off) or > 1 (stop when the smoothed loss exceeds this many times its best), got {t.divergence_factor}")
    return problems


EVAL_PROXIES = ("merged", "ensemble")


def _eval_problems(config: Config) -> list[str]:
    e = config.eval
    problems = _positive({f"eval.{k}": getattr(e, k) for k in ("task_max_len", "heldout_sequences", "seq_len", "mixtures_per_device", "mixtures_per_step", "quadratic_max_centres")})
    problems += [f"key 'eval.{k}' must be >= 0, got {getattr(e, k)}" for k in ("task_max_items", "task_offset", "micro_batch", "quadratic_tol", "heldout_offset") if getattr(e, k) < 0]
    if e.merge not in MERGE_METHODS:
        problems.append(f"key 'eval.merge' must be one of {MERGE_METHODS}, got {e.merge!r}")
    if not 0 < e.ties_density <= 1:
        problems.append(f"key 'eval.ties_density' must be in (0, 1], got {e.ties_density}")
    if not 0 <= e.dare_drop_rate < 1:
        problems.append(f"key 'eval.dare_drop_rate' must be in [0, 1), got {e.dare_drop_rate}")
    task_only = [k for k in ("tasks", "choice_as_answer") if getattr(e, k)]
    if task_only and not e.task_dir:
        problems.append(f"key(s) {['eval.' + k for k in task_only]} name tasks, but 'eval.task_dir' is empty: set eval.task_dir to the folder of <task>.jsonl files")
    unknown_choice = sorted(set(e.choice_as_answer) - set(e.tasks)) if e.tasks else []
    if unknown_choice:
        problems.append(f"key 'eval.choice_as_answer' names {unknown_choice}, which 'eval.tasks' {list(e.tasks)} does not score; add them to eval.tasks or drop them")
    if e.task_dir and e.task_max_len > config.model.max_seq_len:
        problems.append(
            f"key 'eval.task_max_len' ({e.task_max_len}) exceeds 'model.max_seq_len' ({config.model.max_seq_len}): task rows would be longer "
            f"than the model's context; set eval.task_max_len <= {config.model.max_seq_len}"
        )
    if config.data.domains and e.seq_len > config.model.max_seq_len:
        problems.append(
            f"key 'eval.seq_len' ({e.seq_len}) exceeds 'model.max_seq_len' ({config.model.max_seq_len}): held-out rows would be longer "
            f"than the model's context and their losses would change; set eval.seq_len <= {config.model.max_seq_len}"
        )
    problems += _metric_problems(config, "eval.objective", [e.objective])
    if not e.quadratic_radius > 0:
        problems.append(f"key 'eval.quadratic_radius' must be > 0 (inf = no trust region), got {e.quadratic_radius}")
    if e.proxy not in EVAL_PROXIES:
        problems.append(f"key 'eval.proxy' must be one of {EVAL_PROXIES}, got {e.proxy!r}")
    undefined = [m for m in config.pipeline.utility if not m.startswith(("loss/", "answer_nll/"))]
    if e.proxy == "ensemble" and undefined:
        problems.append(
            f"key 'eval.proxy' is 'ensemble', which scores held-out losses and exact-answer NLLs only, but 'pipeline.utility' uses {undefined}; "
            "use eval.proxy=merged or a utility of loss/ and answer_nll/ metrics"
        )
    return problems


VERIFY_STRATEGIES = ("rounds", "acquisition")
VERIFY_FEATURES = ("merged", "calibrated", "ensemble")


def _verify_problems(config: Config) -> list[str]:
    p = config.pipeline
    problems = [f"key 'pipeline.{k}' must be >= 0, got {getattr(p, k)}" for k in ("verify_candidates", "verify_pool", "verify_extra_seeds", "verify_extra_rounds") if getattr(p, k) < 0]
    problems += _positive({"pipeline.verify_seeds": p.verify_seeds, "pipeline.verify_rounds": p.verify_rounds})
    if not 0 <= p.verify_screen_seeds <= p.verify_seeds:
        problems.append(f"key 'pipeline.verify_screen_seeds' must be between 0 (off) and pipeline.verify_seeds ({p.verify_seeds}), got {p.verify_screen_seeds}")
    if p.verify_strategy not in VERIFY_STRATEGIES:
        problems.append(f"key 'pipeline.verify_strategy' must be one of {list(VERIFY_STRATEGIES)}, got {p.verify_strategy!r}")
    if p.verify_strategy == "acquisition" and p.verify_candidates == 0 and p.verify_budget > 0:
        problems.append(
            "key 'pipeline.verify_candidates' is 0, which turns verification off only under pipeline.verify_strategy=rounds; "
            "under acquisition (the default) set pipeline.verify_budget=0 for no verification, or pipeline.verify_strategy=rounds"
        )
    unknown = [f for f in p.verify_features if f not in VERIFY_FEATURES]
    if unknown or not p.verify_features or len(set(p.verify_features)) < len(p.verify_features):
        problems.append(f"key 'pipeline.verify_features' must list distinct features of {list(VERIFY_FEATURES)} (at least one), got {p.verify_features}")
    if p.verify_budget < 0 or p.verify_stop_ratio < 0:
        problems.append(f"keys 'pipeline.verify_budget' and 'pipeline.verify_stop_ratio' must be >= 0, got {p.verify_budget} and {p.verify_stop_ratio}")
    if not 0 <= p.verify_min_distance < 1:
        problems.append(f"key 'pipeline.verify_min_distance' is a total-variation distance in [0, 1), got {p.verify_min_distance}")
    if not 0 <= config.search.trust_floor < 1:
        problems.append(f"key 'search.trust_floor' must be in [0, 1) (share of the prior every mixture keeps; 0 = whole simplex), got {config.search.trust_floor}")
    if not 0.5 <= p.verify_confidence < 1:
        problems.append(f"key 'pipeline.verify_confidence' must be in [0.5, 1) (0.9: a candidate must beat uniform/natural at 90%), got {p.verify_confidence}")
    return problems


# one options section per search method in SearchConfig; search/registry.py METHODS is the registry (a test ties them)
SEARCH_METHODS = tuple(f.name for f in dataclasses.fields(SearchConfig) if str(f.type).endswith("SearchConfig"))


def _pipeline_problems(config: Config) -> list[str]:
    p, v = config.pipeline, config.validate
    keys = ("base_steps", "expert_steps", "heatmap_resolution")
    problems = _positive({f"pipeline.{k}": getattr(p, k) for k in keys})
    problems += _positive({"validate.dirichlet_alpha": v.dirichlet_alpha})
    problems += [f"key '{k}' must be >= 0, got {val}" for k, val in (("pipeline.expert_learning_rate", p.expert_learning_rate), ("pipeline.probe_mixtures", p.probe_mixtures), ("validate.n_dirichlet", v.n_dirichlet), ("validate.reference_steps", v.reference_steps)) if val < 0]
    unknown = [m for m in p.methods if m not in SEARCH_METHODS]
    if unknown or not p.methods:
        problems.append(f"key 'pipeline.methods' must list one or more of {SEARCH_METHODS}, got {p.methods}")
    twice = sorted({m for m in p.methods if p.methods.count(m) > 1})
    if twice:
        problems.append(f"key 'pipeline.methods' lists {twice} more than once; list each method once")
    bad = {m: w for m, w in p.utility.items() if not (isinstance(w, (int, float)) and math.isfinite(w))}
    if bad:
        problems.append(f"key 'pipeline.utility' needs a finite weight per metric, got {bad}")
    problems += _metric_problems(config, "pipeline.utility", list(p.utility))
    return problems + _expert_recipe_problems(p) + _expert_dirs_problems(config)


def _expert_dirs_problems(config: Config) -> list[str]:
    """pipeline.expert_dirs: one folder per domain of data.domains, with the base they started from."""
    given, names = config.pipeline.expert_dirs, [d.name for d in config.data.domains]
    if not given:
        return []
    problems = []
    if set(given) != set(names):
        problems.append(f"key 'pipeline.expert_dirs' must name every domain of data.domains {names} once, got {sorted(given)}")
    if not config.pipeline.base_dir:
        problems.append("key 'pipeline.expert_dirs' needs 'pipeline.base_dir': the base the experts started from (their task vectors are expert - base)")
    problems += [f"key 'pipeline.expert_dirs.{name}' is a URL ({path}); {REMOTE_HINT}" for name, path in given.items() if "://" in str(path)]
    return problems


def metric_families() -> tuple[str, ...]:
    """The metric families the evaluation suite produces: loss/<domain|mean> and <kind metric>/<task>."""
    return ("loss", *(m for metrics in TASK_METRICS.values() for m in metrics))


def _metric_problems(config: Config, key: str, metrics: list[str]) -> list[str]:
    """Metric names the configured suite cannot produce: an unknown family, loss/ of no domain, a
    task metric without eval.task_dir or of a task eval.tasks leaves out (task kinds need the files:
    runkit/problem.py checks those against the built suite)."""
    families, names, e = metric_families(), [d.name for d in config.data.domains], config.eval
    problems = []
    for metric in metrics:
        family, _, target = str(metric).partition("/")
        if family not in families or not target:
            problems.append(f"key '{key}' names metric {metric!r}; metrics are <family>/<domain or task> with family one of {families} (e.g. loss/mean, answer_nll/<task>)")
        elif family == "loss" and names and target not in ("mean", *names):
            problems.append(f"key '{key}' names {metric!r}, but no domain is called {target!r}; use loss/mean or loss/<domain> with a domain of {names}")
        elif family != "loss" and not e.task_dir:
            problems.append(f"key '{key}' names the task metric {metric!r}, but 'eval.task_dir' is empty; set eval.task_dir to the folder holding {target}.jsonl")
        elif family != "loss" and e.tasks and target not in e.tasks:
            problems.append(f"key '{key}' names {metric!r}, but 'eval.tasks' {list(e.tasks)} does not score task {target!r}; add it to eval.tasks")
    return problems


EXPERT_SCHEDULES = ("constant", "cosine")


def _expert_recipe_problems(p) -> list[str]:
    """The experts' recipe: general-data share, LR schedule and floor, and which checkpoint is merged."""
    problems = _choice("pipeline.expert_schedule", p.expert_schedule, EXPERT_SCHEDULES)
    if not 0.0 <= p.expert_general_share < 1.0:
        problems.append(f"key 'pipeline.expert_general_share' is the share of each expert's data drawn from the general mixture, in [0, 1) (0 = pure domain, 0.5 = DeMix), got {p.expert_general_share}")
    if not 0.0 < p.expert_lr_floor <= 1.0:
        problems.append(f"key 'pipeline.expert_lr_floor' is the cosine schedule's final LR as a fraction of the peak, in (0, 1] (DeMix: 0.2), got {p.expert_lr_floor}")
    if p.expert_checkpoint_step < 0:
        problems.append(f"key 'pipeline.expert_checkpoint_step' must be >= 0 (0 = each expert's final checkpoint), got {p.expert_checkpoint_step}")
    elif p.expert_checkpoint_step > p.expert_steps > 0:
        problems.append(f"key 'pipeline.expert_checkpoint_step' is {p.expert_checkpoint_step}, past the experts' last step (pipeline.expert_steps = {p.expert_steps})")
    return problems


def _choice(key: str, value: str, choices: tuple[str, ...]) -> list[str]:
    return [] if value in choices else [f"key '{key}' must be one of {choices}, got {value!r}"]


def _search_problems(config: Config) -> list[str]:
    s = config.search
    g, r, c, h = s.gradient, s.surrogate, s.cmaes, s.hierarchical
    problems = _positive({f"search.gradient.{k}": getattr(g, k) for k in ("learning_rate", "steps", "chunk", "restarts")})
    problems += _positive({f"search.surrogate.{k}": getattr(r, k) for k in ("top_k", "n_candidates", "strength_min", "strength_max", "strength_steps", "local_concentration", "batch_size")})
    problems += _positive({f"search.cmaes.{k}": getattr(c, k) for k in ("generations", "patience", "batch_size")})
    problems += _positive({"search.subsets.batch_size": s.subsets.batch_size, "search.hierarchical.sweeps": h.sweeps})
    non_negative = {"search.token_budget": s.token_budget, "search.gradient.kl_weight": g.kl_weight, "search.gradient.rel_tol": g.rel_tol, "search.surrogate.rounds": r.rounds,
                    "search.surrogate.learning_rate": r.learning_rate, "search.surrogate.n_estimators": r.n_estimators, "search.surrogate.prior_power": r.prior_power,
                    "search.cmaes.std_init": c.std_init, "search.cmaes.penalty": c.penalty, "search.hierarchical.n_clusters": h.n_clusters}  # fmt: skip
    problems += [f"key '{k}' must be >= 0, got {v}" for k, v in non_negative.items() if v < 0]
    problems += _choice("search.gradient.parametrisation", g.parametrisation, PARAMETRISATIONS)
    problems += _choice("search.surrogate.regressor", r.regressor, REGRESSORS)
    problems += _choice("search.surrogate.preset", r.preset, LIGHTGBM_PRESETS)
    problems += _choice("search.cmaes.mapping", c.mapping, MAPPINGS)
    problems += _choice("search.hierarchical.inner", h.inner, INNER_METHODS)
    problems += _choice("search.subsets.export", s.subsets.export, SUBSET_EXPORTS)
    problems += _choice("search.normalise", s.normalise, NORMALISATIONS)
    if r.n_seeds < 3:
        problems.append(f"key 'search.surrogate.n_seeds' must be >= 3 (a surrogate needs 3 scored mixtures), got {r.n_seeds}")
    if not 0 <= r.grid_fraction <= 1:
        problems.append(f"key 'search.surrogate.grid_fraction' must be in [0, 1], got {r.grid_fraction}")
    if r.strength_min > r.strength_max:
        problems.append(f"key 'search.surrogate.strength_min' ({r.strength_min}) exceeds 'search.surrogate.strength_max' ({r.strength_max})")
    if r.num_leaves == 1 or r.num_leaves < 0:
        problems.append(f"key 'search.surrogate.num_leaves' must be 0 (the preset's) or >= 2, got {r.num_leaves}")
    if c.population_size < 2:
        problems.append(f"key 'search.cmaes.population_size' must be >= 2, got {c.population_size}")
    if h.n_clusters == 1:
        problems.append("key 'search.hierarchical.n_clusters' must be 0 (automatic) or >= 2; one cluster is a flat search")
    n_domains = len(config.data.domains)
    if n_domains and h.n_clusters > n_domains:
        problems.append(f"key 'search.hierarchical.n_clusters' ({h.n_clusters}) exceeds the {n_domains} domains of data.domains; use at most {n_domains} (0 = automatic)")
    if g.chunk > g.steps > 0:
        problems.append(f"key 'search.gradient.chunk' ({g.chunk}) exceeds 'search.gradient.steps' ({g.steps}): one chunk would run {g.chunk} steps; set chunk <= steps")
    if r.top_k > r.n_candidates > 0:
        problems.append(f"key 'search.surrogate.top_k' ({r.top_k}) exceeds 'search.surrogate.n_candidates' ({r.n_candidates}), the pool it is taken from")
    return problems + _cluster_problems(config)


def _cluster_problems(config: Config) -> list[str]:
    clusters, names = config.search.hierarchical.clusters, [d.name for d in config.data.domains]
    if not clusters or not names:
        return []
    listed = [d for members in clusters.values() for d in members]
    problems = [f"key 'search.hierarchical.clusters.{c}' names unknown domain(s) {sorted(set(m) - set(names))}; known: {names}" for c, m in clusters.items() if set(m) - set(names)]
    twice = sorted({d for d in listed if listed.count(d) > 1})
    missing = [d for d in names if d not in listed]
    if twice:
        problems.append(f"key 'search.hierarchical.clusters' puts {twice} in more than one cluster; put each domain in one")
    if missing:
        problems.append(f"key 'search.hierarchical.clusters' leaves {missing} in no cluster; every domain needs one (or set clusters: {{}} for automatic ones)")
    return problems
