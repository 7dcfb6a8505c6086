"""The typed `search:` section: one registry of methods, options shared by YAML and CLI flags, errors naming keys."""

import dataclasses

import pytest

from mergemix_jax.cli.main import main
from mergemix_jax.config import ConfigError, load_config
from mergemix_jax.config import validation as checks
from mergemix_jax.config.schema import SearchConfig
from mergemix_jax.export import read_mixture
from mergemix_jax.search import cmaes, gradient, regressors, subsets
from mergemix_jax.search.run import METHODS, make_options


def test_the_registry_has_one_config_section_per_method_and_every_section_field_is_an_option():
    assert set(METHODS) == set(checks.SEARCH_METHODS)
    config = SearchConfig(seed=3)
    for method in METHODS:
        section = dataclasses.asdict(getattr(config, method))
        options = make_options(method, config, clusters={"a": ["d0"], "b": ["d1"]})
        assert {k: getattr(options, k) for k in section if k != "clusters"} == {k: v for k, v in section.items() if k != "clusters"}
        if hasattr(options, "seed"):
            assert options.seed == 3


def test_validation_choices_match_the_search_modules():
    assert checks.PARAMETRISATIONS == gradient.PARAMETRISATIONS
    assert checks.REGRESSORS == regressors.REGRESSORS
    assert tuple(regressors.PRESETS) == checks.LIGHTGBM_PRESETS
    assert checks.MAPPINGS == cmaes.MAPPINGS
    assert checks.SUBSET_EXPORTS == subsets.EXPORTS


def test_yaml_search_section_reaches_the_options_and_unknown_options_are_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("search:\n  seed: 5\n  surrogate: {preset: regmix, top_k: 3}\n  gradient: {kl_weight: 0.5}\n")
    config = load_config(path)
    surrogate = make_options("surrogate", config.search)
    assert (surrogate.preset, surrogate.top_k, surrogate.seed) == ("regmix", 3, 5)
    assert make_options("gradient", config.search).kl_weight == 0.5
    path.write_text("search:\n  gradient: {stepz: 3}\n")
    with pytest.raises(ConfigError, match="stepz"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"search\.surrogate\.preset"):
        load_config(None, ["search.surrogate.preset=lgbm"])
    with pytest.raises(ConfigError, match=r"search\.hierarchical\.inner"):
        load_config(None, ["search.hierarchical.inner=subsets"])


def test_cluster_config_is_checked_against_the_domains(tmp_path):
    domains = [{"name": n, "paths": [str(tmp_path / f"{n}.txt")]} for n in ("a", "b", "c")]
    raw = {"data": {"domains": domains}, "search": {"hierarchical": {"clusters": {"x": ["a", "zz"], "y": ["a"]}}}}
    from mergemix_jax.config.loading import config_from_dict

    with pytest.raises(ConfigError) as err:
        config_from_dict(raw)
    text = str(err.value)
    assert "unknown domain(s) ['zz']" in text and "more than one cluster" in text and "['b', 'c'] in no cluster" in text


def test_cli_flags_override_the_config_section(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("search:\n  gradient: {steps: 40, restarts: 3, chunk: 10}\n")
    out = tmp_path / "m.json"
    argv = ["search", "--method", "gradient", "--synthetic", "quadratic:3", "--config", str(path), "--restarts", "2", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    settings = read_mixture(out).provenance["settings"]["settings"]
    assert settings["gradient"]["steps"] == 40 and settings["gradient"]["restarts"] == 2
    mixture = read_mixture(out)
    assert len(mixture.search["trace"]) <= 40


def test_a_swarm_csv_in_the_yaml_is_found_next_to_the_config(tmp_path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "c.yaml"
    path.write_text("search:\n  surrogate: {swarm_csv: swarm.csv}\n")
    assert load_config(path).search.surrogate.swarm_csv == str(tmp_path / "sub" / "swarm.csv")
