"""Export a mixture as a seqio Mixture with rates (optional extra `seqio`; imported lazily, since
it brings TensorFlow)."""

from __future__ import annotations

from collections.abc import Mapping


def seqio_rates(weights: Mapping[str, float], task_names: Mapping[str, str] | None = None, min_weight: float = 1e-6) -> list[tuple[str, float]]:
    """[(seqio task name, rate)] for domains with weight >= min_weight; task name = domain unless mapped."""
    task_names = dict(task_names or {})
    rates = [(task_names.get(name, name), float(w)) for name, w in weights.items() if w >= min_weight]
    if not rates:
        raise ValueError(f"no domain has a weight >= {min_weight}: {dict(weights)}")
    return rates


def seqio_mixture_source(name: str, weights: Mapping[str, float], task_names: Mapping[str, str] | None = None, min_weight: float = 1e-6) -> str:
    """Python source that registers `seqio.Mixture(name, [(task, rate), ...])` (the tasks must be registered first)."""
    rates = "\n".join(f"        ({task!r}, {rate!r})," for task, rate in seqio_rates(weights, task_names, min_weight))
    return f"import seqio\n\nseqio.MixtureRegistry.add(\n    {name!r},\n    [\n{rates}\n    ],\n)\n"


def to_seqio_mixture(
    name: str, weights: Mapping[str, float], task_names: Mapping[str, str] | None = None, min_weight: float = 1e-6
):
    """Register and return `seqio.Mixture(name, [(task, rate), ...])`; the tasks must be registered.

    Raises ImportError with the install command when seqio is missing, and ValueError naming any
    task seqio does not know.
    """
    try:
        import seqio
    except ImportError as err:
        raise ImportError("the seqio exporter needs the optional extra: pip install 'mergemix-jax[seqio]'") from err
    rates = seqio_rates(weights, task_names, min_weight)
    unknown = [task for task, _ in rates if task not in seqio.TaskRegistry.names()]
    if unknown:
        raise ValueError(f"seqio tasks {unknown} are not registered; register them or map domains with task_names")
    seqio.MixtureRegistry.remove(name)
    return seqio.MixtureRegistry.add(name, rates)
