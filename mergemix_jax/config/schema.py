"""Typed configuration: one dataclass per stage, composed into `Config`.

Every field has a default so a YAML file only states what differs. Field comments say what a
value means; `validate` (in `validation.py`) says which combinations are impossible.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RopeScaling:
    """Llama-3 rotary frequency scaling (Hugging Face config.json `rope_scaling` with rope_type llama3)."""

    rope_type: str = "llama3"  # llama3 (the only scaling supported)
    factor: float = 8.0  # low frequencies (wavelength > original_max_position_embeddings / low_freq_factor) are divided by this
    low_freq_factor: float = 1.0  # wavelengths between the two bounds are interpolated smoothly
    high_freq_factor: float = 4.0  # high frequencies (wavelength < original / high_freq_factor) are kept
    original_max_position_embeddings: int = 8192  # the context length the unscaled model was trained at


@dataclass(frozen=True)
class ModelConfig:
    """A Llama-style decoder-only transformer (frozen: hashable, so usable as a jit static)."""

    vocab_size: int = 320  # >= the tokenizer's vocabulary; a multiple of the tensor axis size
    d_model: int = 128  # residual width
    n_layers: int = 2
    n_heads: int = 4  # query heads
    n_kv_heads: int = 4  # key/value heads (grouped-query attention when < n_heads)
    head_dim: int = 0  # 0 means d_model // n_heads
    d_ff: int = 384  # SwiGLU hidden width
    max_seq_len: int = 2048
    rope_theta: float = 10_000.0
    rope_scaling: RopeScaling | None = None  # Llama-3 rotary frequency scaling; null = plain rotary
    norm_eps: float = 1e-5
    tie_embeddings: bool = True  # share the input embedding with the output projection
    compute_dtype: str = "float32"  # float32 | bfloat16 (parameters stay float32)
    remat: bool = False  # rematerialise each block in the backward pass (saves memory)
    remat_policy: str = "full"  # with remat: what a block keeps, full (its input only) | dots_saveable | dots_with_no_batch_dims_saveable (also matmul outputs: less recompute, more memory)
    attention_block: int = 0  # > 0: attend this many queries at a time (divides every seq_len; bounds the [H, L, L] scores); 0 = whole sequence
    init_std: float = 0.02

    def __post_init__(self):
        if isinstance(self.rope_scaling, dict):  # from dataclasses.asdict (checkpoint metadata): keep it hashable
            object.__setattr__(self, "rope_scaling", RopeScaling(**self.rope_scaling))

    @property
    def resolved_head_dim(self) -> int:
        return self.head_dim or self.d_model // self.n_heads


@dataclass
class MeshConfig:
    """Device mesh shape; -1 on one axis means "all remaining devices"."""

    data: int = 1
    fsdp: int = -1
    tensor: int = 1


@dataclass
class OptimConfig:
    """AdamW with a learning-rate schedule and global-norm clipping."""

    learning_rate: float = 3e-3
    schedule: str = "constant"  # constant | cosine | wsd (warmup-stable-decay)
    warmup_steps: int = 0
    decay_fraction: float = 0.2  # wsd: share of steps spent decaying at the end
    min_lr_ratio: float = 0.1  # cosine / wsd: final LR as a fraction of the peak
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip_norm: float = 1.0  # 0 disables clipping


@dataclass
class DomainConfig:
    """A named set of files (local, or URLs such as gs://) forming one candidate data domain."""

    name: str = ""
    paths: list[str] = field(default_factory=list)  # files or globs, relative to the config file, or fsspec URLs (gs://b/web/*.parquet)
    format: str = "text"  # text | jsonl | source (one document per file) | parquet | arrow | hf_disk (a save_to_disk folder) | array_record
    text_field: str = "text"  # jsonl, parquet, arrow, hf_disk (and JSON array_record records): which field holds the document
    split_by: str = "file"  # text: file (one doc per file) | blank_line (paragraph blocks)


@dataclass
class DataConfig:
    """Where documents come from and how they become token sequences."""

    domains: list[DomainConfig] = field(default_factory=list)
    tokenizer: str = "byte"  # byte | path to a sentencepiece .model or tokenizers .json
    heldout_fraction: float = 0.1  # share of documents held out per domain
    split_seed: int = 0
    max_epochs: float = 4.0  # a mixture repeating a domain more often is flagged
    shuffle_buffer: int = 1024
    # multi-host training: each process reads its own share of the documents (scales to many hosts, but
    # the data order depends on the process count); false: every process reads the whole global batch and
    # keeps its devices' rows, so any number of processes trains on the one-process stream
    split_by_process: bool = True
    # folder for the domain index and token counts, cached per data version (data/cache.py); "" =
    # $MERGEMIX_CACHE_DIR or ~/.cache/mergemix. On a pod, a folder every host shares (NFS, gcsfuse mount)
    cache_dir: str = ""


@dataclass
class TrainConfig:
    """One training run: a base, a domain expert or a reference model on a mixture."""

    steps: int = 100
    batch_size: int = 16  # global batch, sequences
    seq_len: int = 128
    seed: int = 0  # parameter init
    grad_accum_steps: int = 1  # micro-batches per step (gradients summed, then one update: the same step as the whole batch, in less memory)
    data_seed: int = 0  # data order
    mixture: dict[str, float] = field(default_factory=dict)  # domain -> weight; {} = uniform
    init_from: str = ""  # checkpoint directory of a base model; "" trains from scratch
    output_dir: str = "runs/train"
    log_every: int = 10
    checkpoint_every: int = 50
    keep_checkpoints: int = 2
    progress: bool = True
    divergence_factor: float = 3.0  # stop (no done.json, last good checkpoint kept) when the smoothed loss exceeds this x its best so far; 0 = off


@dataclass
class EvalConfig:
    """Scoring merged mixtures (`mergemix eval-mixtures`): the fixed evaluation suite and the merge."""

    task_dir: str = ""  # folder of <task>.jsonl files, relative to the config file ("" = held-out loss only)
    task_max_items: int = 0  # first N items of each task (0 = all)
    task_offset: int = 0  # skip this many items of each task first (validation scores items the search never saw)
    task_max_len: int = 256  # tokens per context+continuation row; older context tokens are dropped
    tasks: list[str] = field(default_factory=list)  # task names (files <name>.jsonl in task_dir) to score; [] = every file
    task_truncate: bool = False  # a continuation longer than fits: score its first tokens (context keeps >= task_max_len // 4) instead of an error
    choice_as_answer: list[str] = field(default_factory=list)  # multiple-choice tasks scored on their correct choice only, as exact-answer tasks (answer_nll: 1 row per item, not one per choice)
    heldout_sequences: int = 16  # held-out sequences per domain, the same tokens for every mixture
    heldout_offset: int = 0  # > 0: skip the sequences a suite of this many draws and draw from the rest (a disjoint split)
    seq_len: int = 128  # length of each held-out sequence
    micro_batch: int = 16  # rows per forward pass (0 = all rows of a domain/task at once)
    mixtures_per_device: int = 4  # mixtures each device scores per compiled chunk
    mixtures_per_step: int = 1  # mixtures merged and scored at once (vmapped) within a chunk; 1 = one at a time
    shard_experts: bool = False  # experts too big for one device: FSDP/tensor-shard them, mixtures in turn
    merge: str = "linear"  # linear | ties | dare
    merge_scale: float = 1.0  # task-arithmetic coefficient: base + scale * sum_k w_k (expert_k - base)
    ties_density: float = 0.2  # TIES: share of each task vector kept (largest magnitudes)
    dare_drop_rate: float = 0.9  # DARE: share of task-vector entries dropped
    merge_seed: int = 0  # DARE drop mask seed
    proxy: str = "merged"  # merged (merge the experts, evaluate) | ensemble (average the experts' next-token probabilities: held-out losses and exact-answer NLLs, no forward pass per mixture)
    objective: str = "loss/mean"  # metric the quadratic proxy checks against exact scores
    quadratic_tol: float = 0.01  # relative proxy-vs-exact gap on `objective` that adds a new centre
    quadratic_max_centres: int = 4  # 1 = a single expansion, no re-centring
    quadratic_radius: float = 0.2  # trust region: mixtures farther (L2 in weight space) from every centre are scored exactly; inf = unguarded


@dataclass
class PipelineConfig:
    """`mergemix run`: base -> K experts -> merged evaluation -> search -> mixture file -> report."""

    output_root: str = "runs"  # the run folder is <output_root>/<name>-<hash8 of the config>
    name: str = ""  # "" = the config file's stem
    base_dir: str = ""  # reuse a finished base run folder instead of training one
    expert_dirs: dict[str, str] = field(default_factory=dict)  # domain -> finished run folder of its expert trained elsewhere (tpu_scripts/experts.sh), every domain, from pipeline.base_dir; {} = train them
    base_steps: int = 300  # steps of the base, trained on the uniform mixture
    expert_steps: int = 80  # steps of each domain expert (and of each reference in `validate`)
    expert_learning_rate: float = 0.0  # 0 = optim.learning_rate (experts' peak LR; references always train at a constant LR)
    expert_general_share: float = 0.0  # [0, 1): share of each expert's data drawn from the base's own mixture (0 = pure domain; 0.5 = DeMix)
    expert_schedule: str = "constant"  # constant | cosine (decays to expert_lr_floor x the peak; DeMix: cosine to 20%)
    expert_lr_floor: float = 0.2  # (0, 1]: cosine experts' final LR as a fraction of the peak
    expert_checkpoint_step: int = 0  # merge each expert's checkpoint at this step (0 = the final one); <= expert_steps
    methods: list[str] = field(default_factory=lambda: ["gradient", "surrogate", "subsets", "cmaes"])
    utility: dict[str, float] = field(default_factory=dict)  # metric -> weight; {} = {"loss/mean": 1}
    search_seed: int = 0  # seed of the probe and verification mixtures (the searches use search.seed)
    probe_mixtures: int = 8  # Dirichlet draws scored besides vertices and centre (report, diagnostics)
    heatmap_resolution: int = 8  # simplex grid steps per side for the utility heatmap
    diagnostics: bool = True  # task-vector cosines and curvature ratios (Hessian-vector products)
    verify_strategy: str = "acquisition"  # acquisition (a predictor on every real run picks each next run; docs/budget.md) | rounds (top candidates + sequential test)
    verify_budget: int = 8  # acquisition: real runs (one expert's size each) after the experts; 0 = no verification
    verify_stop_ratio: float = 0.0  # acquisition: stop early when no candidate's expected improvement reaches this x the noise of one run
    verify_features: list[str] = field(default_factory=lambda: ["merged", "ensemble"])  # acquisition: the predictor's proxy features: merged | calibrated (the merge calibrated on every real run, vertices included) | ensemble
    verify_baselines_first: bool = False  # acquisition: train uniform and natural first (2 of the budget), then expected improvement
    verify_pool: int = 64  # Dirichlet mixtures scored by the proxy as extra candidates (acquisition: as many again around natural)
    verify_min_distance: float = 0.1  # total-variation distance between verified mixtures
    # the rounds strategy's keys (verify_strategy: rounds)
    verify_candidates: int = 3  # rounds: top proxy candidates trained for real besides uniform and natural (0 = no verification)
    verify_seeds: int = 2  # data seeds per verification run (2+ measures the seed noise)
    verify_screen_seeds: int = 0  # 1..verify_seeds: candidates train this many seeds first, the leader gets the rest before it can win (0 = all at once)
    verify_rounds: int = 2  # 1 + rounds that train the best candidate by calibrated utility
    verify_confidence: float = 0.9  # a candidate replaces the best baseline only if better at this one-sided level
    verify_extra_seeds: int = 2  # a candidate leading the best baseline inside the margin: this many more seeds of both
    verify_extra_rounds: int = 2  # at most this many such rounds (the sequential test's budget; 0 = none)


# the values a search option may take, declared once: config/validation.py checks them, search/ uses them
PARAMETRISATIONS = ("softmax", "mirror", "projected")  # search.gradient.parametrisation
REGRESSORS = ("auto", "lightgbm", "ridge", "gp")  # search.surrogate.regressor
LIGHTGBM_PRESETS = ("demix", "regmix")  # search.surrogate.preset (hyperparameters in search/regressors.py PRESETS)
MAPPINGS = ("project", "softmax")  # search.cmaes.mapping
SUBSET_EXPORTS = ("union", "uniform")  # search.subsets.export
INNER_METHODS = ("gradient", "surrogate", "cmaes")  # search.hierarchical.inner: the methods that solve a hierarchical stage
NORMALISATIONS = ("none", "minmax", "zscore", "rank")  # search.normalise


@dataclass
class GradientSearchConfig:
    """Gradient search over merge weights: the options of search/gradient.py gradient_search."""

    parametrisation: str = "softmax"  # softmax | mirror | projected
    optimizer: str = ""  # optax optimiser name; "" = adam (softmax) or sgd (mirror, projected)
    learning_rate: float = 0.1
    steps: int = 500  # upper bound per restart; early stopping may end sooner
    chunk: int = 25  # steps per jitted chunk (early-stopping granularity)
    rel_tol: float = 1e-6  # stop when a chunk improves the best loss by less than this, relatively
    restarts: int = 4  # starting points searched at once (the prior + Dirichlet draws)
    kl_weight: float = 0.0  # pull toward the prior mixture


@dataclass
class SurrogateSearchConfig:
    """MergeMix/DeMix/RegMix surrogate search: the options of search/surrogate.py surrogate_search."""

    n_seeds: int = 64  # n0: mixtures scored in round 0; refinement round r scores n0 / 2^r
    rounds: int = 2  # refinement rounds after the seeds: 2 = DeMix's n0, n0/2, n0/4
    grid_fraction: float = 0.25  # share of the seeds taken from a regular simplex grid
    regressor: str = "auto"  # auto | lightgbm | ridge | gp (auto: LightGBM from min_lightgbm_samples rows)
    preset: str = "demix"  # LightGBM hyperparameters: demix (lr 0.01, 300 trees) | regmix (lr 0.01, 1000 iterations, early stopping)
    learning_rate: float = 0.0  # overrides the preset's when > 0
    n_estimators: int = 0  # trees / boosting iterations; overrides the preset's when > 0
    num_leaves: int = 0  # overrides the preset's when > 0
    min_lightgbm_samples: int = 64  # auto: fewer scored mixtures than this fit ridge instead (a tree ensemble is too coarse)
    use_observed: bool = True  # also fit on mixtures already scored (the pipeline's probe table, an imported swarm)
    swarm_csv: str = ""  # CSV of trained-proxy results (w/<domain> or <domain> columns + metrics) added to the fit
    top_k: int = 8  # predicted-best candidates averaged into the answer (RegMix: 128 of 100k)
    n_candidates: int = 20_000  # candidate pool on which the surrogate is maximised
    prior_power: float = 0.5  # pool: Dirichlet(prior^p * s); p < 1 flattens a skewed prior (RegMix: 0.5)
    strength_min: float = 0.1  # pool: smallest concentration s (sparse mixtures near faces)
    strength_max: float = 5.0  # pool: largest concentration s (mixtures near the prior)
    strength_steps: int = 15  # pool: log-spaced values of s between the two
    local_concentration: float = 50.0  # refinement draws: Dirichlet concentration around a top prediction
    batch_size: int = 64  # mixtures per scorer call


@dataclass
class SubsetSearchConfig:
    """Merge-to-Mix subset search: the options of search/subsets.py subset_search."""

    batch_size: int = 256  # mixtures per scorer call
    respect_caps: bool = True  # skip subsets whose uniform weights exceed a domain's repetition cap
    export: str = "union"  # union: the chosen subset's data pooled, weights by tokens (Merge to Mix) | uniform: the merge weights scored


@dataclass
class CMAESSearchConfig:
    """CMA-ES over the simplex: the options of search/cmaes.py cmaes_search."""

    mapping: str = "project"  # project | softmax
    population_size: int = 16
    generations: int = 60
    std_init: float = 0.0  # 0 = 0.2 (project) or 1.0 (softmax)
    penalty: float = 1.0  # project: weight of ||x - project(x)||^2
    patience: int = 15  # stop after this many generations without improving the best
    batch_size: int = 256  # mixtures per scorer call


@dataclass
class HierarchicalSearchConfig:
    """MergeMix top-down search (search/hierarchical.py): cluster weights first, then each cluster's split."""

    inner: str = "gradient"  # method solving each stage: gradient | surrogate | cmaes
    sweeps: int = 1  # top-down passes
    clusters: dict[str, list[str]] = field(default_factory=dict)  # {name: [domains]}; {} = from task-vector cosines
    n_clusters: int = 0  # clusters cut from the cosine tree when `clusters` is {}; 0 = about sqrt(K)


@dataclass
class SearchConfig:
    """Options of every search method, shared by `mergemix run` and `mergemix search` (flags override).

    Each `<method>` section IS that method's options dataclass (search/registry.py METHODS); `seed` and
    `progress` are passed to every method alongside it."""

    seed: int = 0  # sampling seed of every search method
    progress: bool = False  # progress bars inside the searches
    caps: bool = True  # repetition caps: no domain repeated beyond data.max_epochs over the token budget
    token_budget: float = 0.0  # tokens of the final training run the caps are computed for; 0 = train.steps x batch x seq_len
    trust_floor: float = 0.0  # trust region: every method but subsets searches w >= trust_floor * prior (0 = whole simplex; docs/results.md: measured no gain)
    normalise: str = "none"  # utility = weighted mean of per-metric scores normalised on the probe table: none | minmax | zscore | rank (DeMix rank percentile)
    gradient: GradientSearchConfig = field(default_factory=GradientSearchConfig)
    surrogate: SurrogateSearchConfig = field(default_factory=SurrogateSearchConfig)
    subsets: SubsetSearchConfig = field(default_factory=SubsetSearchConfig)
    cmaes: CMAESSearchConfig = field(default_factory=CMAESSearchConfig)
    hierarchical: HierarchicalSearchConfig = field(default_factory=HierarchicalSearchConfig)


@dataclass
class ValidateConfig:
    """`mergemix validate`: reference models trained on sampled mixtures, compared with their proxies."""

    n_dirichlet: int = 11  # Dirichlet draws; the vertices and the centre are always added
    dirichlet_alpha: float = 1.0
    seed: int = 0  # mixture sampling seed
    reference_steps: int = 0  # 0 = pipeline.expert_steps (the same token budget as one expert)
    noise_ceiling: bool = True  # re-train every reference with another data seed
    baselines: bool = True  # also train the recommended mixture, the raw proxy pick and natural proportions for real
    disjoint_heldout: bool = True  # score references and proxies on held-out sequences the search never saw; false = the search's own


@dataclass
class Config:
    """Everything one `mergemix` job needs."""

    model: ModelConfig = field(default_factory=ModelConfig)
    mesh: MeshConfig = field(default_factory=MeshConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    validate: ValidateConfig = field(default_factory=ValidateConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
