"""The run report: one self-contained HTML page with PNG figures, rendered from a run folder."""

from mergemix_jax.report.html import render_report

__all__ = ["render_report"]
