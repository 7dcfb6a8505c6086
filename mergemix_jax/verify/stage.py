"""The verification stage of `mergemix run`: real short runs of the best proxy candidates.

Every run uses the reference recipe (validate's: `pipeline.expert_steps` from the base at a
constant LR) with `pipeline.verify_seeds` data seeds (candidates may be screened with
`pipeline.verify_screen_seeds` first: the leader is brought to the full seeds before it can win,
verify.decide). First the baselines uniform and natural are
trained, and the calibration (mergemix_jax.calibrate: per domain loss and per utility metric) is
fitted on them and the vertices (a one-hot reference is the expert itself, unless the experts follow
another recipe, e.g. DeMix's diluted components: then the vertices are left out). Round 1 then
trains the top `pipeline.verify_candidates` mixtures of the pooled candidates (every search method's pick, the probe table, a Dirichlet pool,
natural-without-one-domain), slots taken in turn from the calibrated merged proxy, the output-space
ensemble and the raw merged proxy, each at least `pipeline.verify_min_distance` (total variation)
from the others. After each round the calibration is refitted on every real run so far; rounds
2.. `pipeline.verify_rounds` train the best candidate by calibrated utility not yet covered. Then
screened leaders are confirmed and a sequential test (`settle_leader`: up to
`pipeline.verify_extra_rounds` rounds of `pipeline.verify_extra_seeds` more seeds of a leader inside
the margin and of the baselines it has not cleared) settles close calls; the recommendation follows
verify.decide. Every run is cached in
its own folder (verify/runs/<hash>-s<seed>), so a rerun or a killed job resumes.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mergemix_jax.calibrate import Calibration, fit_calibration, save_calibration
from mergemix_jax.runkit import training
from mergemix_jax.runkit.run_dir import verification_key, write_json_atomic
from mergemix_jax.verify.candidates import Candidate, pool_from_tables, select_diverse, tv_distance
from mergemix_jax.verify.decide import (
    BASELINES,
    Decision,
    decide,
    decision_margin,
    fit_seed_blocks,
    next_to_confirm,
)

log = logging.getLogger(__name__)
VERIFICATION_FILE = Path("verify") / "verification.json"
SAME_MIXTURE_TV = 0.01  # natural proportions this close to uniform are measured by uniform's runs


@dataclass
class Verified:
    """A candidate with its real runs: per-seed utilities and metrics."""

    candidate: Candidate
    real_metrics: list[dict[str, float]]
    real_utility: list[float]
    round: int
    measured_as: str = ""
    predicted_utility: float | None = None  # calibrated prediction made before this run was trained (rounds >= 2)


MoreSeeds = Callable[[Verified, list[int]], None]  # train a verified candidate on more data seeds, in place


def run_key(weights_K: np.ndarray) -> str:
    """A short stable hash of a mixture (rounded), naming its run folders."""
    return hashlib.sha256(np.round(np.asarray(weights_K, np.float64), 6).tobytes()).hexdigest()[:10]


def proxy_utilities(engine: Any, candidates: list[Candidate], calibration: Calibration | None = None) -> np.ndarray:
    """Utility [N] of each candidate's proxy metrics, calibrated when a calibration is given (the
    run's utility: the same normalisation the searches optimised, engine.utility)."""
    names = list(candidates[0].proxy_metrics)
    table = {m: np.asarray([c.proxy_metrics[m] for c in candidates]) for m in names}
    if calibration is not None:
        table = calibration.apply(table)
    return engine.utility(table)


def candidate_pool(engine: Any) -> list[Candidate]:
    """Every method's pick, the probe table and a Dirichlet pool, scored by the merged proxy (no
    vertices; with diluted experts, only mixtures their merge reaches)."""
    from mergemix_jax.eval.results import read_table
    from mergemix_jax.export import read_mixture

    run_dir, domains = engine.run_dir, engine.domains
    tables = []
    methods = engine.config.pipeline.methods
    scored = read_table(run_dir / "eval" / "methods.csv", domains)
    for method in methods:
        w = read_mixture(run_dir / "search" / f"{method}.json").mixture.vector(domains)
        row = int(np.argmin(np.abs(scored["weights"] - w).sum(1)))
        tables.append((method, scored["weights"][row : row + 1], {k: v[row : row + 1] for k, v in scored["metrics"].items()}))
    probe = read_table(run_dir / "eval" / "probe.csv", domains)
    tables.append(("probe", probe["weights"], probe["metrics"]))
    pool = engine.score_table(dirichlet_pool(engine), run_dir / "eval" / "verify_pool.csv")
    tables.append(("pool", pool["weights"], pool["metrics"]))
    drop_one = engine.score_table(drop_one_mixtures(engine), run_dir / "eval" / "verify_drop_one.csv")
    tables.append(("drop-one", drop_one["weights"], drop_one["metrics"]))
    return [c for c in pool_from_tables(tables) if c.weights_K.max() < 1.0 - 1e-6 and reachable(engine, c.weights_K)]


def reachable(engine: Any, weights_K: np.ndarray) -> bool:
    """Whether a merge of the run's experts stands for this mixture exactly: always for pure-domain
    experts; for diluted ones (pipeline.expert_general_share) only when every w_k >= share * general_k,
    since outside that the clipped merge cannot tell the mixture from the region's edge (merge/dilution.py)."""
    from mergemix_jax.merge.dilution import unreachable_rows
    from mergemix_jax.runkit.training import expert_dilution

    return not unreachable_rows(weights_K, expert_dilution(engine.config))[0]


def dirichlet_pool(engine: Any) -> np.ndarray:
    """`pipeline.verify_pool` Dirichlet(1) mixtures (seeded by pipeline.search_seed): interior points to re-rank."""
    rng = np.random.default_rng(engine.config.pipeline.search_seed + 7919)
    return rng.dirichlet(np.ones(len(engine.domains)), size=engine.config.pipeline.verify_pool)


def drop_one_mixtures(engine: Any) -> np.ndarray:
    """[K, K]: natural proportions with one domain left out (renormalised), one row per domain: the
    candidates that answer "would we do better without this domain?"."""
    from mergemix_jax.runkit.mixtures import natural_prior

    natural = natural_prior(engine.config)
    rows = np.tile(natural, (len(natural), 1)) * (1.0 - np.eye(len(natural)))
    return rows / rows.sum(axis=1, keepdims=True)


def ensemble_utilities(engine: Any, candidates: list[Candidate]) -> np.ndarray | None:
    """The output-space ensemble's utility [N] of each candidate, or None when it is unavailable."""
    try:
        from mergemix_jax.eval.ensemble import ensemble_metric_names, ensemble_metrics
    except ImportError:
        return None
    if any(m not in ensemble_metric_names(engine.suite) for m in engine.weights):
        return None  # a utility metric the ensemble does not define (module doc of eval/ensemble.py)
    metrics = ensemble_metrics(engine.model_cfg, engine.stack, engine.suite, np.stack([c.weights_K for c in candidates]), cache_dir=engine.run_dir / "eval" / "ensemble")
    return engine.utility(metrics)


def first_round(engine: Any, pool: list[Candidate], baselines: list[Candidate], calibration: Calibration) -> list[Candidate]:
    """The top `verify_candidates` diverse candidates, slots taken in turn from three rankings: the merged
    proxy calibrated on the vertices and the baselines' real runs (anywhere on the simplex), the
    output-space ensemble and the raw merged proxy (both inside the search trust region)."""
    from mergemix_jax.search.trust import in_region

    if not pool:  # e.g. diluted experts reaching no candidate but the baselines
        return []
    p = engine.config.pipeline
    weights = np.stack([c.weights_K for c in pool])
    avoid = np.stack([b.weights_K for b in baselines])
    # Merge-to-Mix's subset pick sits on a face by design (a dropped domain): it is its own proxy, not the merge's optimism
    trusted = in_region(weights, engine.problem.prior, engine.config.search.trust_floor) | np.asarray(["subsets" in c.sources for c in pool])
    rankings = [proxy_utilities(engine, pool, calibration)]
    ensemble = ensemble_utilities(engine, pool)
    if ensemble is not None:
        rankings.append(np.where(trusted, ensemble, -np.inf))
        for c, u in zip(pool, ensemble, strict=True):
            c.proxy_metrics["ensemble_utility"] = float(u)
    rankings.append(np.where(trusted, proxy_utilities(engine, pool), -np.inf))
    picked: list[int] = []
    while len(picked) < p.verify_candidates:
        before = len(picked)
        for scores in rankings:
            if len(picked) == p.verify_candidates:
                break
            taken = np.concatenate([avoid, weights[picked]]) if picked else avoid
            nxt = select_diverse(weights, scores, 1, p.verify_min_distance, taken)
            picked += nxt
        if len(picked) == before:
            break  # the pool has no more mixtures far enough from the ones taken
    return [pool[i] for i in picked]


def train_candidate(engine: Any, candidate: Candidate, round_: int, score, seeds: list[int] | None = None) -> Verified:
    """Train `candidate` for real with every verification seed, or `seeds` (cached per seed)."""
    from mergemix_jax.runkit.references import suite_key, train_and_score

    cfg, key = engine.config, run_key(candidate.weights_K)
    seeds = seeds or verification_seeds(cfg)
    records = [
        train_and_score(cfg, engine.run_dir, engine.run_dir / "verify" / "runs" / f"{key}-s{s}", candidate.weights_K, s, score, suite_key(cfg))
        for s in seeds
    ]
    metrics = [r["metrics"] for r in records]
    utility = [engine.utility.of_record(r) for r in metrics]  # the trained model's suite metrics through the same fitted maps
    log.info("verified %s %s: real utility %s", candidate.name, np.round(candidate.weights_K, 3).tolist(), np.round(utility, 4).tolist())
    return Verified(candidate, metrics, utility, round_)


def utility_unit(engine: Any) -> str:
    """How the verification message names utility differences: nats for a held-out loss utility."""
    return "nats" if engine.utility.is_loss else f"utility points ({engine.config.search.normalise}-normalised benchmark scale)"


def verification_seeds(config: Any) -> list[int]:
    """Data seeds of the verification runs: train.data_seed, +1, ... (`pipeline.verify_seeds` of them)."""
    return [config.train.data_seed + i for i in range(config.pipeline.verify_seeds)]


def screening_seeds(config: Any) -> list[int]:
    """The first `pipeline.verify_screen_seeds` verification seeds (0 = all): what a candidate trains first."""
    n = config.pipeline.verify_screen_seeds or config.pipeline.verify_seeds
    return verification_seeds(config)[:n]


def confirm_leaders(p: Any, data_seed: int, verified: list[Verified], more_seeds: MoreSeeds) -> None:
    """Bring screened candidates to their full seeds (in place) while the best by mean real utility
    has fewer seeds than `p.verify_seeds` (p: the pipeline config) and beats the best baseline
    (verify.decide.next_to_confirm)."""
    for _ in range(len(verified)):
        name = next_to_confirm([v.candidate.name for v in verified], [v.real_utility for v in verified], p.verify_seeds)
        if name is None:
            return
        v = next(v for v in verified if v.candidate.name == name)
        log.info("%s leads the baselines after %d seed(s): training its other seeds", name, len(v.real_utility))
        more_seeds(v, [data_seed + i for i in range(len(v.real_utility), p.verify_seeds)])


def vertex_metrics(engine: Any) -> dict[str, np.ndarray]:
    """The probe table's one-domain rows {metric: [V]}: real runs for free when the experts are the
    references (same recipe as a verification run), else empty rows."""
    from mergemix_jax.eval.results import read_table

    probe = read_table(engine.run_dir / "eval" / "probe.csv", engine.domains)
    rows = [i for i, w in enumerate(probe["weights"]) if w.max() > 1.0 - 1e-6] if training.experts_are_references(engine.config) else []
    return {m: v[rows] for m, v in probe["metrics"].items()}


def refit_calibration(engine: Any, vertices: dict, verified: list[Verified]) -> tuple[Calibration, dict]:
    """Fit the per-domain loss maps, and one per utility metric, on the vertices (proxy = real) plus
    the mean real metrics of each run."""
    utility_metrics = [m for m in engine.utility.weights if m != "loss/mean"]
    names = list(dict.fromkeys([f"loss/{d}" for d in engine.domains] + utility_metrics))
    proxy = {m: list(vertices[m]) for m in names}
    real = {m: list(vertices[m]) for m in names}
    for v in verified:
        for m in names:
            proxy[m].append(v.candidate.proxy_metrics[m])
            real[m].append(float(np.mean([r[m] for r in v.real_metrics])))
    proxy = {m: np.asarray(x) for m, x in proxy.items()}
    real = {m: np.asarray(x) for m, x in real.items()}
    return fit_calibration(proxy, real, engine.domains, utility_metrics), {"proxy": proxy, "real": real, "n_vertices": len(vertices[names[0]])}


def run_verification(engine: Any) -> dict:
    """Run (or resume) verification; returns the `verification` block of mixture.json (see contract)."""
    from mergemix_jax.runkit.mixtures import natural_prior
    from mergemix_jax.runkit.references import make_model_scorer

    cfg, p, k = engine.config, engine.config.pipeline, len(engine.domains)
    score = make_model_scorer(cfg, engine.suite)
    pool = candidate_pool(engine)
    for i, c in enumerate(pool):
        c.name = f"pool{i}"
    vertices = vertex_metrics(engine)
    baselines = baseline_candidates(engine, natural_prior(cfg), k)
    verified = [train_candidate(engine, b, 0, score) for b in baselines if b.name != "natural" or tv_distance(b.weights_K, baselines[0].weights_K) >= SAME_MIXTURE_TV]
    if len(verified) < len(baselines):
        verified.append(Verified(baselines[1], verified[0].real_metrics, verified[0].real_utility, 0, measured_as="uniform"))
    calibration, points = refit_calibration(engine, vertices, verified)
    for j, c in enumerate(first_round(engine, pool, baselines, calibration), start=1):
        c.name = f"c{j}"
        verified.append(train_predicted(engine, c, 1, score, calibration))
    calibration, points = refit_calibration(engine, vertices, verified)
    for r in range(2, p.verify_rounds + 1):
        nxt = next_calibrated(engine, pool, verified, calibration)
        if nxt is None or not worth_training(engine, nxt, verified, calibration):
            break
        nxt.name = f"c{sum(v.candidate.name.startswith('c') for v in verified) + 1}"
        verified.append(train_predicted(engine, nxt, r, score, calibration))
        calibration, points = refit_calibration(engine, vertices, verified)
    extra_rounds = settle_leader(p, cfg.train.data_seed, verified, seed_trainer(engine, score), utility_unit(engine))
    save_calibration(calibration, engine.run_dir, points)
    return verification_block(engine, verified, calibration, extra_rounds)


def train_predicted(engine: Any, candidate: Candidate, round_: int, score, calibration: Calibration) -> Verified:
    """`train_candidate` on the screening seeds, recording the calibrated prediction made before the
    runs (out of sample)."""
    predicted = float(proxy_utilities(engine, [candidate], calibration)[0])
    verified = train_candidate(engine, candidate, round_, score, seeds=screening_seeds(engine.config))
    verified.predicted_utility = predicted
    return verified


def resolve_leader(p: Any, data_seed: int, verified: list[Verified], more_seeds: MoreSeeds, unit: str = "nats") -> bool:
    """One round of the sequential test: when the best candidate (on its full seeds) leads the best
    baseline by less than the decision margin, train `p.verify_extra_seeds` more data seeds of it and
    of every baseline it does not yet beat by the pairwise margin (in place), so the margins, which
    shrink with the seeds, can settle it; both baselines, since the best one by mean can change as
    seeds are added. Returns whether it trained; nothing happens when a baseline leads or the
    decision is already made."""
    names = [v.candidate.name for v in verified]
    decision = decide(names, [v.real_utility for v in verified], [0.0] * len(verified), p.verify_confidence, unit, min_seeds=p.verify_seeds)
    means = decision.means
    others = [v.candidate.name for v in verified if v.candidate.name not in BASELINES and len(v.real_utility) >= p.verify_seeds]
    if p.verify_extra_seeds == 0 or decision.verdict != "baseline_kept" or not others:
        return False
    leader = max(others, key=means.get)
    if means[leader] <= means[decision.chosen]:
        return False
    by_name = {v.candidate.name: v for v in verified}

    def cleared(b: str) -> bool:
        return decision.noise is not None and means[leader] - means[b] > decision.blocks.margin(names.index(leader), names.index(b), p.verify_confidence)

    group = [by_name[leader], *(by_name[by_name[b].measured_as or b] for b in BASELINES if b in by_name and not cleared(b))]
    group = list({id(v): v for v in group}.values())  # natural measured as uniform: one set of runs
    log.info("%s leads %s by %.4f %s, inside the margin %.4f: %d more seeds of %s", leader, decision.chosen, means[leader] - means[decision.chosen], unit, decision.margin, p.verify_extra_seeds, ", ".join(v.candidate.name for v in group))
    for v in group:
        n = len(v.real_utility)
        more_seeds(v, [data_seed + i for i in range(n, n + p.verify_extra_seeds)])
    return True


def settle_leader(p: Any, data_seed: int, verified: list[Verified], more_seeds: MoreSeeds, unit: str = "nats") -> int:
    """Confirm screened leaders (`confirm_leaders`), then run up to `p.verify_extra_rounds` rounds of
    the sequential test (`resolve_leader`), confirming again after each (another screened candidate
    may then lead). Returns the rounds run. Each look tests at the same one-sided level, so a leader
    that stays inside the margin for every round is not recommended (docs/verification.md, Limits)."""
    confirm_leaders(p, data_seed, verified, more_seeds)
    for done in range(p.verify_extra_rounds):
        if not resolve_leader(p, data_seed, verified, more_seeds, unit):
            return done
        confirm_leaders(p, data_seed, verified, more_seeds)
    return p.verify_extra_rounds


def seed_trainer(engine: Any, score) -> MoreSeeds:
    """`more_seeds` for the stage: train a verified candidate on the given data seeds (cached runs,
    `train_candidate`) and append them to it."""

    def more_seeds(v: Verified, seeds: list[int]) -> None:
        extra = train_candidate(engine, v.candidate, v.round, score, seeds=seeds)
        v.real_metrics.extend(extra.real_metrics)
        v.real_utility.extend(extra.real_utility)

    return more_seeds


def baseline_candidates(engine: Any, natural_K: np.ndarray, k: int) -> list[Candidate]:
    """uniform and natural, with their merged proxy metrics (scored into eval/baselines.csv)."""
    weights = np.stack([np.full(k, 1.0 / k), natural_K])
    table = engine.score_table(weights, engine.run_dir / "eval" / "baselines.csv")
    return [Candidate(name, weights[i], ["baseline"], {m: float(v[i]) for m, v in table["metrics"].items()}) for i, name in enumerate(("uniform", "natural"))]


def next_calibrated(engine: Any, pool: list[Candidate], verified: list[Verified], calibration: Calibration) -> Candidate | None:
    """The best pool mixture by calibrated utility, at least verify_min_distance from every trained one."""
    if not pool:
        return None
    scores = proxy_utilities(engine, pool, calibration)
    trained = np.stack([v.candidate.weights_K for v in verified])
    picked = select_diverse(np.stack([c.weights_K for c in pool]), scores, 1, engine.config.pipeline.verify_min_distance, trained)
    return pool[picked[0]] if picked else None


def worth_training(engine: Any, candidate: Candidate, verified: list[Verified], calibration: Calibration) -> bool:
    """False when the calibrated proxy predicts `candidate` to lose to the best real run by more than
    the decision margin (then another round cannot change the recommendation)."""
    predicted = float(proxy_utilities(engine, [candidate], calibration)[0])
    blocks = fit_seed_blocks([v.real_utility for v in verified])
    best = float(np.max(blocks.means))
    p = engine.config.pipeline
    margin = decision_margin(blocks.noise, p.verify_seeds, p.verify_confidence, dof=blocks.dof or None)
    if predicted < best - margin:
        log.info("verification stops: the best calibrated candidate is predicted %.4f %s below the best real run", best - predicted, utility_unit(engine))
        return False
    return True


def verification_block(engine: Any, verified: list[Verified], calibration: Calibration, extra_rounds: int = 0) -> dict:
    """The JSON block of mixture.json (names, weights, proxy / calibrated / real utilities, decision)."""
    cands = [v.candidate for v in verified]
    raw = proxy_utilities(engine, cands)
    calibrated = proxy_utilities(engine, cands, calibration)
    p = engine.config.pipeline
    decision: Decision = decide([c.name for c in cands], [v.real_utility for v in verified], raw, p.verify_confidence, utility_unit(engine), min_seeds=p.verify_seeds)
    seeds = verification_seeds(engine.config)
    runs = sum(len(v.real_utility) for v in verified if not v.measured_as)
    entries = []
    for v, u_raw, u_cal in zip(verified, raw, calibrated, strict=True):
        entries.append(
            {
                "name": v.candidate.name,
                "sources": v.candidate.sources,
                "weights": dict(zip(engine.domains, v.candidate.weights_K.tolist(), strict=True)),
                "proxy_utility": float(u_raw),
                "calibrated_utility": float(u_cal),
                "ensemble_utility": v.candidate.proxy_metrics.get("ensemble_utility"),
                "real_utility": v.real_utility,
                "real_mean": float(np.mean(v.real_utility)),
                "adjusted_mean": decision.means[v.candidate.name],  # seed-adjusted: what the decision compared
                "real_metrics": v.real_metrics,
                "proxy_metrics": {m: x for m, x in v.candidate.proxy_metrics.items() if m != "ensemble_utility"},
                "round": v.round,
                "seeds": len(v.real_utility),
                "predicted_utility": v.predicted_utility,
                **({"measured_as": v.measured_as} if v.measured_as else {}),
            }
        )
    return {
        "candidates": entries,
        "chosen": decision.chosen,
        "proxy_pick": decision.proxy_pick,
        "noise": decision.noise,
        "noise_dof": decision.noise_dof,
        "margin": decision.margin,
        "verdict": decision.verdict,
        "message": decision.message,
        "indistinguishable": decision.indistinguishable,
        "seeds": seeds,
        "steps": engine.config.validate.reference_steps or engine.config.pipeline.expert_steps,
        "real_steps_total": runs * (engine.config.validate.reference_steps or engine.config.pipeline.expert_steps),
        "confidence": engine.config.pipeline.verify_confidence,
        "utility": engine.utility.describe(),
        "extra_seeds_used": any(len(v.real_utility) > len(seeds) for v in verified),
        "extra_rounds": extra_rounds,
        "screen_seeds": len(screening_seeds(engine.config)),
    }


def write_verification(engine: Any, run: Callable[[Any], dict] | None = None) -> Path:
    """Run verification (`run`, default this module's rounds rule) and write its record, stamped with the
    verification settings' hash, as verify/verification-<hash>.json and as verify/verification.json (the
    latest, which mixture.json and the report follow)."""
    block = (run or run_verification)(engine)
    block["settings_key"] = verification_key(engine.config)
    write_json_atomic(keyed_verification_file(engine.run_dir, engine.config), block)
    path = engine.run_dir / VERIFICATION_FILE
    write_json_atomic(path, block)
    return path


def keyed_verification_file(run_dir: Path, config: Any) -> Path:
    """verify/verification-<hash of the verification settings>.json: one record per settings, so switching
    strategies back and forth on one run folder recomputes nothing."""
    return Path(run_dir) / VERIFICATION_FILE.parent / f"verification-{verification_key(config)}.json"


def verification_is_current(engine: Any) -> bool:
    """Whether verify/verification.json holds the current settings' record; when another settings' record
    is there but this one's keyed copy exists, it is restored as the latest (True)."""
    path, keyed = engine.run_dir / VERIFICATION_FILE, keyed_verification_file(engine.run_dir, engine.config)
    latest = read_verification(engine.run_dir) if path.is_file() else {}
    if latest.get("settings_key") == verification_key(engine.config):
        if not keyed.is_file():  # written before records were kept per settings
            write_json_atomic(keyed, latest)
        return True
    if keyed.is_file():
        write_json_atomic(path, json.loads(keyed.read_text()))
        return True
    return False


def read_verification(run_dir: Path) -> dict:
    """The verification block written by `write_verification`."""
    return json.loads((Path(run_dir) / VERIFICATION_FILE).read_text())
