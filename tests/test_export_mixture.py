"""Mixture file, grain config and seqio exports round-trip; bad files fail with the field named."""

import json

import numpy as np
import pytest
import yaml

from mergemix_jax.config.loading import config_from_dict, deep_merge, parse_overrides
from mergemix_jax.export import (
    config_hash,
    mixture_from_result,
    mixture_overrides,
    read_grain_mixture,
    read_mixture,
    write_grain_mixture,
    write_mixture,
)
from mergemix_jax.search.ratios import weights_to_ratios
from mergemix_jax.search.types import SearchResult

DOMAINS = ("web", "code", "math")


def result(weights=(0.5, 0.3, 0.2)) -> SearchResult:
    return SearchResult(
        method="gradient/softmax",
        domains=DOMAINS,
        weights=np.asarray(weights),
        objective=1.25,
        wall_time_s=0.5,
        n_evaluations=40,
        trace=np.array([2.0, 1.5, 1.25]),
        metrics={"loss": np.float32(1.25)},
        extras={"restart_losses": np.array([1.25, 1.3])},
    )


def test_mixture_file_round_trips_with_provenance(tmp_path):
    settings = {"method": "gradient", "steps": 40}
    path = write_mixture(mixture_from_result(result(), settings), tmp_path / "out" / "mixture.json")
    back = read_mixture(path)
    assert back.weights == pytest.approx({"web": 0.5, "code": 0.3, "math": 0.2})
    assert back.method == "gradient/softmax" and back.objective == 1.25 and back.metrics == {"loss": 1.25}
    assert back.search["trace"] == [2.0, 1.5, 1.25]
    assert back.provenance["config_hash"] == config_hash(settings) and "jax" in back.provenance["versions"]
    assert [p.name for p in path.parent.iterdir()] == ["mixture.json"]  # no temp file left behind


def test_config_hash_depends_on_settings_not_key_order():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1}) != config_hash({"a": 2, "b": [1, 2]})


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("method"), "field 'method' is missing"),
        (lambda d: d["weights"].update(web=0.9), "sums to"),
        (lambda d: d["weights"].update(web=-0.1), "field 'weights.web' must be a finite number >= 0"),
        (lambda d: d.update(format="other"), "field 'format'"),
        (lambda d: d.update(colour="red"), r"unknown field\(s\) \['colour'\]"),
    ],
)
def test_bad_mixture_files_name_the_field(tmp_path, edit, message):
    path = write_mixture(mixture_from_result(result(), {}), tmp_path / "m.json")
    raw = json.loads(path.read_text())
    edit(raw)
    path.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match=message):
        read_mixture(path)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_grain_mixture_round_trips_and_loads_as_a_config(tmp_path, suffix):
    weights = {"web": 0.5, "code": 0.5 - 1e-9, "math": 1e-9}  # math is below grain's zero-weight floor
    path = write_grain_mixture(weights, tmp_path / f"mixture{suffix}")
    back = read_grain_mixture(path)
    assert back == pytest.approx({"web": 0.5, "code": 0.5}, abs=1e-8) and "math" not in back
    base = {"data": {"domains": [{"name": n, "paths": ["x"]} for n in DOMAINS]}}
    config = config_from_dict(deep_merge(base, yaml.safe_load(path.read_text())))  # merges as train.mixture
    assert config.train.mixture == pytest.approx(back)


def test_grain_mixture_loads_into_a_config_with_those_domains(tmp_path):
    pytest.importorskip("grain")
    from mergemix_jax.config.schema import DataConfig, DomainConfig
    from mergemix_jax.data import normalize_mixture

    data = DataConfig(domains=[DomainConfig(name=n, paths=["x"]) for n in DOMAINS])
    back = read_grain_mixture(write_grain_mixture(result().weights_by_domain(), tmp_path / "m.yaml"))
    assert normalize_mixture(data, back) == pytest.approx({"web": 0.5, "code": 0.3, "math": 0.2})


def test_mixture_overrides_parse_back_to_the_mixture():
    overrides = mixture_overrides({"web": 0.25, "code": 0.75})
    assert parse_overrides(overrides) == {"train": {"mixture": {"web": 0.25, "code": 0.75}}}


def test_grain_export_rejects_an_unknown_suffix(tmp_path):
    with pytest.raises(ValueError, match=r"use a \.yaml, \.yml or \.json name"):
        write_grain_mixture({"web": 1.0}, tmp_path / "m.txt")


def test_ratios_are_the_weights_unless_availability_correction_clamps_them():
    w = np.array([0.6, 0.3, 0.1])
    tokens = np.array([1_000.0, 10_000.0, 10_000.0])
    plain = weights_to_ratios(w, DOMAINS, tokens, token_budget=4_000.0, max_epochs=1.0)
    np.testing.assert_allclose(plain.ratios, w)
    np.testing.assert_allclose(plain.epochs, [2.4, 0.12, 0.04])  # web would be repeated 2.4 times
    fixed = weights_to_ratios(w, DOMAINS, tokens, token_budget=4_000.0, max_epochs=1.0, correct=True)
    np.testing.assert_allclose(fixed.ratios, [0.25, 0.5625, 0.1875], atol=1e-6)  # web at its cap, rest x1.875
    assert fixed.capped == ("web",) and fixed.epochs.max() <= 1.0 + 1e-6
    assert fixed.max_abs_change == pytest.approx(0.35, abs=1e-6)


def test_seqio_mixture_has_the_rates():
    seqio = pytest.importorskip("seqio")
    from mergemix_jax.export import to_seqio_mixture

    def dataset_fn(split, shuffle_files):
        import tensorflow as tf

        return tf.data.Dataset.from_tensors({"targets": "x"})

    for name in DOMAINS:
        seqio.TaskRegistry.remove(f"mm_test_{name}")
        seqio.TaskRegistry.add(
            f"mm_test_{name}",
            source=seqio.FunctionDataSource(dataset_fn, splits=["train"]),
            output_features={"targets": seqio.Feature(seqio.PassThroughVocabulary(1), dtype="string")},
        )
    mixture = to_seqio_mixture("mm_test_mixture", result().weights_by_domain(), {n: f"mm_test_{n}" for n in DOMAINS})
    rates = {task.name: mixture.get_rate(task) for task in mixture.tasks}
    assert rates == pytest.approx({"mm_test_web": 0.5, "mm_test_code": 0.3, "mm_test_math": 0.2})


def test_grain_mixture_is_written_with_six_significant_digits(tmp_path):
    weights = dict(zip(("web", "code", "math"), np.random.default_rng(0).dirichlet(np.ones(3)).tolist(), strict=True))
    path = write_grain_mixture(weights, tmp_path / "mixture.yaml")
    numbers = [line.split(": ")[1] for line in path.read_text().splitlines() if line.startswith("    ")]
    assert len(numbers) == 3 and all(len(n.lstrip("0.").replace(".", "")) <= 6 for n in numbers), numbers
    back = read_grain_mixture(path)
    assert abs(sum(back.values()) - 1) < 3 * 5e-7 and back == pytest.approx(weights, abs=5e-7)
