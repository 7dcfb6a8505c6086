"""`run_pipeline`: base -> experts -> merged probe evaluation -> diagnostics -> search -> mixture -> report.

Every stage leaves a file (or a finished train folder) that marks it done; a rerun with the same
config finds the same run folder (see runkit/run_dir.py) and reuses what is there, logging "reused".
A killed training stage resumes from its last checkpoint; a killed evaluation resumes its CSV.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mergemix_jax.config import Config
from mergemix_jax.config.loading import config_to_yaml
from mergemix_jax.parallel.mesh import maybe_initialize_distributed
from mergemix_jax.parallel.multihost import is_writer, sync, write_once
from mergemix_jax.reliability.atomic import atomic_write_text
from mergemix_jax.runkit import mixtures, training
from mergemix_jax.runkit.engine import Engine, natural_prior, read_table  # noqa: F401 (re-exported)
from mergemix_jax.runkit.mixtures import probe_weights  # noqa: F401 (re-exported)
from mergemix_jax.runkit.plan import record_plan
from mergemix_jax.runkit.problem import utility_weights
from mergemix_jax.runkit.run_dir import log_stage, run_dir_for, run_stage, write_json_atomic

log = logging.getLogger(__name__)
STAGES = ("base", "experts", "probe", "diagnostics", "search", "select", "verify", "report")


@dataclass
class PipelineResult:
    run_dir: Path
    mixture_path: Path
    report_path: Path
    weights: dict[str, float]
    method: str


def prepare_run_dir(config: Config, config_path: str | os.PathLike | None, command: str = "") -> Path:
    """Create the run folder, write config.yaml (the full config) and remember the command."""
    run_dir = run_dir_for(config, config_path)
    run_dir.mkdir(parents=True, exist_ok=True)
    text, target = config_to_yaml(config), run_dir / "config.yaml"
    if not (target.is_file() and target.read_text() == text):  # unchanged: keep the first run's file and time
        atomic_write_text(target, text)
    if command and is_writer():
        commands = run_dir / "commands.txt"
        seen = commands.read_text().splitlines() if commands.is_file() else []
        if command not in seen:
            with open(commands, "a") as handle:
                handle.write(command + "\n")
    return run_dir


def check_reused_base(config: Config) -> None:
    """Errors for a `pipeline.base_dir` that is neither a finished train run nor an imported base
    (`mergemix import-base`), was trained on another held-out split (runkit/training.py
    check_base_split) or carries another tokenizer than data.tokenizer, and for `pipeline.expert_dirs`
    not finished or not from that base; nothing to check when the run trains its own base."""
    from mergemix_jax.train import is_finished
    from mergemix_jax.train.base_tokenizer import check_base_tokenizer, is_imported_base
    from mergemix_jax.train.checkpoint import check_loadable

    base = config.pipeline.base_dir
    if base:
        if not is_finished(base) and not is_imported_base(base):
            raise FileNotFoundError(f"pipeline.base_dir {base} is not a finished train run (no done.json) nor a base written by `mergemix import-base`")
        check_loadable(base, config.model)  # another architecture fails here, before any training
        check_base_tokenizer(base, config.data.tokenizer, "pipeline.base_dir")
        training.check_base_split(config)
        training.check_given_experts(config)  # pipeline.expert_dirs: finished, from this base


def stage_base(config: Config, run_dir: Path) -> None:
    """Train the base on the uniform mixture (skipped when `pipeline.base_dir` names one, which
    run_pipeline has checked with `check_reused_base` before the run folder existed)."""
    from mergemix_jax.train import is_finished

    if config.pipeline.base_dir:
        log_stage(run_dir, "base", "reused", 0.0, base_dir=config.pipeline.base_dir)
        return
    cfg = training.base_config(config, run_dir)
    run_stage(run_dir, "base", lambda: is_finished(cfg.train.output_dir), lambda: _timed_train(cfg, run_dir, "base"))


def stage_experts(config: Config, run_dir: Path) -> None:
    """Train one expert per domain from the base (`pipeline.expert_steps`; the expert recipe of
    runkit/training.py: constant LR on the domain alone by default, or DeMix's components)."""
    from mergemix_jax.train import is_finished

    for domain, out in zip(config.data.domains, training.expert_dirs(config, run_dir), strict=True):
        cfg = training.expert_config(config, run_dir, out, domain.name)
        run_stage(run_dir, f"expert:{domain.name}", lambda c=cfg: is_finished(c.train.output_dir), lambda c=cfg, d=domain.name: _timed_train(c, run_dir, f"expert:{d}"))


def _timed_train(cfg: Config, run_dir: Path, name: str) -> None:
    seconds = training.train_unless_finished(cfg)
    timings = run_dir / "timings.json"
    record = json.loads(timings.read_text()) if timings.is_file() else {}
    record[name] = {"seconds": seconds, "steps": cfg.train.steps, "tokens": cfg.train.steps * cfg.train.batch_size * cfg.train.seq_len}
    write_json_atomic(timings, record)


def stage_probe(engine: Engine) -> None:
    """Score the probe mixtures exactly (resumable CSV eval/probe.csv)."""
    out = engine.run_dir / "eval" / "probe.csv"
    weights, layout = mixtures.probe_weights(engine.config, len(engine.domains))
    marker = engine.run_dir / "eval" / "probe.done.json"

    def work():
        start = time.perf_counter()
        engine.score_table(weights, out)
        write_json_atomic(marker, {**layout, "n": len(weights), "seconds": time.perf_counter() - start})

    run_stage(engine.run_dir, "probe", marker.is_file, work)
    log.info("%s", engine.utility.describe())  # fits the normalisation on the probe table once (eval/utility.json)


def stage_diagnostics(engine: Engine) -> None:
    """Task-vector cosines and curvature ratios into diagnostics.json."""
    from mergemix_jax.diagnostics import diagnostics

    out = engine.run_dir / "diagnostics.json"
    if not engine.config.pipeline.diagnostics:
        return

    def work():
        start = time.perf_counter()
        write_json_atomic(out, {**diagnostics(engine.model_cfg, engine.stack, engine.suite), "seconds": time.perf_counter() - start})

    run_stage(engine.run_dir, "diagnostics", out.is_file, work)


def stage_search(engine: Engine) -> None:
    """Run each configured method on the config's one search assembly (pipeline/assembly.py, shared
    with `mergemix search --run`); search/<method>.json is a mixture file with the trace and timing."""
    from mergemix_jax.export import mixture_from_result, write_mixture
    from mergemix_jax.pipeline.assembly import search_assembly

    settings = dataclasses.asdict(engine.config.search)
    assembly = search_assembly(engine)
    for method in engine.config.pipeline.methods:
        out = engine.run_dir / "search" / f"{method}.json"

        def work(method=method, out=out):
            result = assembly.run(method, engine.config.search)
            job = {"method": method, "problem": assembly.problem.description, "settings": settings, "inputs": assembly.note, "clusters": assembly.clusters}
            write_mixture(mixture_from_result(result, job), out)

        run_stage(engine.run_dir, f"search:{method}", out.is_file, work)


def stage_select(engine: Engine) -> Path:
    """Score every method's mixture exactly and keep the best by proxy utility in search/selected.json."""
    from mergemix_jax.export import read_mixture, write_mixture

    out = engine.run_dir / "search" / "selected.json"

    def work():
        methods = engine.config.pipeline.methods
        files = {m: read_mixture(engine.run_dir / "search" / f"{m}.json") for m in methods}
        weights = np.asarray([files[m].mixture.vector(engine.domains) for m in methods])
        table = engine.score_table(weights, engine.run_dir / "eval" / "methods.csv")
        utilities = engine.utility(table["metrics"])
        best = int(np.argmax(utilities))
        chosen = files[methods[best]]
        chosen.metrics = {k: float(v[best]) for k, v in table["metrics"].items()} | {"utility": float(utilities[best])}
        chosen.search = {**chosen.search, "compared": {m: float(u) for m, u in zip(methods, utilities, strict=True)}}
        write_mixture(chosen, out)

    run_stage(engine.run_dir, "select", out.is_file, work)
    return out


def verification_off_key(config: Config) -> str:
    """'' when the verify stage trains anything, else the setting that turned it off (for messages)."""
    p = config.pipeline
    if p.verify_strategy == "acquisition":
        return "" if p.verify_budget else "pipeline.verify_budget is 0"
    return "" if p.verify_candidates else "pipeline.verify_candidates is 0 (verify_strategy rounds)"


def stage_verify(engine: Engine) -> Path | None:
    """Train mixtures for real (the acquisition's runs, or the rounds strategy's candidates and baselines);
    verify/verification.json (None when off)."""
    from mergemix_jax.verify.acquire_stage import run_acquisition
    from mergemix_jax.verify.stage import (
        VERIFICATION_FILE,
        run_verification,
        verification_is_current,
        write_verification,
    )

    if verification_off_key(engine.config):
        return None
    out = engine.run_dir / VERIFICATION_FILE
    run_stage(engine.run_dir, "verify", lambda: verification_is_current(engine), lambda: write_verification(engine, run_acquisition if engine.config.pipeline.verify_strategy == "acquisition" else run_verification))
    return out


def write_recommendation(engine: Engine, verification: Path | None) -> Path:
    """mixture.json + mixture.grain.yaml: the verified choice, or the proxy's pick with a warning when
    verification is off (always rewritten: cheap, and follows the latest verification)."""
    from mergemix_jax.export import read_mixture, write_grain_mixture, write_mixture
    from mergemix_jax.verify.stage import read_verification

    out = engine.run_dir / "mixture.json"
    block = None if verification is None else read_verification(engine.run_dir)
    if out.is_file() and (engine.run_dir / "mixture.grain.yaml").is_file():
        written = read_mixture(out).verification or {}
        if (block is None and written.get("skipped")) or (block is not None and written == block):
            return out  # already written from this verification
    chosen = read_mixture(engine.run_dir / "search" / "selected.json")
    if verification is None:
        off = verification_off_key(engine.config)
        log.warning("%s: the recommendation is the proxy's pick, NOT checked by real training", off)
        chosen.verification = {"skipped": True, "message": f"Not verified: {off}, so this is the merged proxy's pick, unchecked by real training."}
    else:
        entry = next(c for c in block["candidates"] if c["name"] == block["chosen"])
        chosen.method = f"verified:{entry['name']} ({', '.join(entry['sources'])})"
        chosen.weights = entry["weights"]
        chosen.metrics = {**entry["proxy_metrics"], "utility": entry["proxy_utility"]}
        chosen.objective = -entry["proxy_utility"]
        chosen.verification = block
        log.info("%s", block["message"])
    write_grain_mixture(chosen.weights, engine.run_dir / "mixture.grain.yaml")
    write_mixture(chosen, out)
    sync("mixture.json written")
    return out


def stage_report(config: Config, run_dir: Path) -> Path:
    """Render report/index.html (always re-rendered: cheap, and picks up validation results)."""
    from mergemix_jax.report import render_report

    start = time.perf_counter()
    write_once(lambda: render_report(run_dir), "report rendered")  # reads files only: process 0 renders it
    log_stage(run_dir, "report", "done", time.perf_counter() - start)
    return run_dir / "report" / "index.html"


def run_pipeline(config: Config, config_path: str | os.PathLike | None = None, command: str = "", stop_after: str = "") -> PipelineResult | Path:
    """Run (or resume) every stage; `stop_after` ends after the named stage (returns the run folder).

    A base or expert of this run folder found damaged on the way (a truncated or missing checkpoint
    behind a done.json) is set aside and retrained, once per folder (see `heal_train_stage`)."""
    from mergemix_jax.train import CheckpointError

    if stop_after and stop_after not in STAGES:
        raise ValueError(f"stop_after must be one of {STAGES}, got {stop_after!r}")
    maybe_initialize_distributed()  # a multi-host job joins before anything starts jax's backend
    check_utility(config)
    check_reused_base(config)  # before the run folder exists: a refused base leaves nothing behind
    run_dir = prepare_run_dir(config, config_path, command)
    log.info("run folder: %s", run_dir)
    record_plan(config, run_dir, Path(config_path).name if config_path else "mergemix run")  # plan.md / plan.json: the cost before it is spent
    healed: set[Path] = set()
    while True:
        try:
            return _run_stages(config, run_dir, stop_after)
        except CheckpointError as err:
            if not heal_train_stage(config, run_dir, err, healed):
                raise


def _run_stages(config: Config, run_dir: Path, stop_after: str) -> PipelineResult | Path:
    from mergemix_jax.export import read_mixture

    stage_base(config, run_dir)
    if stop_after == "base":
        return run_dir
    stage_experts(config, run_dir)
    if stop_after == "experts":
        return run_dir
    engine = Engine(config, run_dir)
    for name, fn in (("probe", stage_probe), ("diagnostics", stage_diagnostics), ("search", stage_search)):
        fn(engine)
        if stop_after == name:
            return run_dir
    stage_select(engine)
    if stop_after == "select":
        return run_dir
    mixture_path = write_recommendation(engine, stage_verify(engine))
    if stop_after == "verify":
        return run_dir
    report = stage_report(config, run_dir)
    chosen = read_mixture(mixture_path)
    return PipelineResult(run_dir, mixture_path, report, chosen.weights, chosen.method)


def heal_train_stage(config: Config, run_dir: Path, err: Exception, healed: set[Path]) -> bool:
    """Set aside the damaged output of one of this run's train stages so the rerun retrains it.

    True when `err` (a CheckpointError) names a damaged base or expert folder of this run folder
    (not a `pipeline.base_dir` of the user's) not healed before: its newest checkpoint step and its
    done.json move to <folder>/corrupt_checkpoints/, so the stage counts as unfinished and training
    resumes from the newest intact step (or starts over), replaying the same batches. Single-process
    jobs only; False otherwise (the error then stands)."""
    import jax

    from mergemix_jax.reliability.checkpoints import quarantine_done_marker, quarantine_step
    from mergemix_jax.train.checkpoint import checkpoint_dir, latest_step
    from mergemix_jax.train.loop import DONE_FILE

    damaged = getattr(err, "damaged", None)
    own = [*([] if config.pipeline.base_dir else [training.base_dir(config, run_dir)]), *training.expert_dirs(config, run_dir)]
    folder = next((f for f in own if damaged is not None and f.resolve() == damaged.resolve()), None)
    if folder is None or folder.resolve() in healed or jax.process_count() > 1:
        return False
    healed.add(folder.resolve())
    step = latest_step(folder)
    moved = [quarantine_step(checkpoint_dir(folder), step)] if step is not None else []
    moved += [m for m in [quarantine_done_marker(folder, DONE_FILE)] if m is not None]
    log.warning("%s: its saved output is damaged (%s); moved %s aside and retraining it", folder, str(err).split("; ")[0], ", ".join(map(str, moved)) or "nothing")
    return True


def check_utility(config: Config) -> None:
    """Fail before any training when pipeline.utility names a metric the suite cannot produce."""
    from mergemix_jax.eval import build_suite, metric_names

    utility_weights(config.pipeline.utility, metric_names(build_suite(config)))


def with_overrides(config: Config, **sections) -> Config:
    """`config` with fields of its sections replaced, e.g. with_overrides(c, pipeline={"base_steps": 5})."""
    return dataclasses.replace(config, **{name: dataclasses.replace(getattr(config, name), **values) for name, values in sections.items()})
