"""The one registry of mixture export formats: name -> (renderer of an ExportPlan, what it writes).

`mergemix export-mixture RUN --format NAME` renders the run's ExportPlan with FORMATS[NAME]; the
trainers' schemas and the commits they were checked at are in export/trainers.py.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mergemix_jax.export.plan import ExportPlan


@dataclass(frozen=True)
class ExportFormat:
    """How one format is written (the renderer is imported when used: listing formats stays light)."""

    renderer: str  # "module:function" under mergemix_jax.export, taking an ExportPlan, returning text
    summary: str  # one line for --help

    def render(self, plan: ExportPlan) -> str:
        """The text of `plan` in this format."""
        module, function = self.renderer.split(":")
        return getattr(importlib.import_module(f"mergemix_jax.export.{module}"), function)(plan)


def render_grain(plan: ExportPlan) -> str:
    """mergemix's own `train.mixture` fragment, with the plan's header."""
    from mergemix_jax.export.grain_config import grain_mixture_yaml
    from mergemix_jax.export.trainers import header

    return header(plan) + grain_mixture_yaml(plan.weights)


def render_seqio(plan: ExportPlan) -> str:
    """Python source registering a seqio Mixture of one task per domain."""
    from mergemix_jax.export.seqio_mixture import seqio_mixture_source
    from mergemix_jax.export.trainers import header, notes

    return header(plan) + notes(["register one seqio Task per domain (named as the domain) before this runs"]) + seqio_mixture_source(plan.run, plan.weights)


FORMATS: dict[str, ExportFormat] = {
    "maxtext": ExportFormat("trainers:render_maxtext", "MaxText config overrides: dataset_type grain, grain_train_files blend"),
    "levanter": ExportFormat("trainers:render_levanter", "levanter data section: LMMixtureDatasetConfig configs + train_weights"),
    "olmo-core": ExportFormat("trainers:render_olmo_core", "OLMo-core SourceMixtureDatasetConfig (Python)"),
    "torchtitan": ExportFormat("trainers:render_torchtitan", "torchtitan DatasetMixConfig of WeightedDataset (Python)"),
    "grain": ExportFormat("formats:render_grain", "mergemix's own train.mixture fragment (grain pipeline)"),
    "seqio": ExportFormat("formats:render_seqio", "seqio MixtureRegistry.add with rates (Python)"),
    "json": ExportFormat("trainers:render_json", "domains with paths, format, weight, tokens and epochs (JSON)"),
}


def render(plan: ExportPlan, name: str) -> str:
    """The text of `plan` in format `name`; a ValueError names the valid formats."""
    if name not in FORMATS:
        raise ValueError(f"unknown export format {name!r}; choose one of {', '.join(FORMATS)}")
    return FORMATS[name].render(plan)
