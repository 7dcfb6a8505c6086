"""The typed `search:` section: one registry of methods, options shared by YAML and CLI flags, errors naming keys."""

import dataclasses
import importlib
import pkgutil

import pytest

from mergemix_jax import search
from mergemix_jax.cli.main import main
from mergemix_jax.config import ConfigError, load_config, schema
from mergemix_jax.config import validation as checks
from mergemix_jax.config.schema import SearchConfig
from mergemix_jax.export import read_mixture
from mergemix_jax.search import regressors
from mergemix_jax.search.registry import METHODS, follows_objective, method_options, section_types


def test_each_method_s_options_are_its_config_section_s_class():
    """Declared once: the registry's options class IS the schema's section class, one per method."""
    assert set(METHODS) == set(checks.SEARCH_METHODS) == set(section_types())
    config = SearchConfig(seed=3)
    for method, entry in METHODS.items():
        assert entry.options is section_types()[method]
        options = method_options(method, config, clusters={"a": ["d0"], "b": ["d1"]})
        assert type(options) is entry.options
        if method != "hierarchical":
            assert options is getattr(config, method)


def test_no_search_module_declares_a_second_options_dataclass():
    """No dataclass in search/ repeats most fields of a config section (the old *Options classes did)."""
    sections = {name: {f.name for f in dataclasses.fields(kind)} for name, kind in vars(schema).items() if isinstance(kind, type) and dataclasses.is_dataclass(kind) and name.endswith("SearchConfig")}
    for info in pkgutil.iter_modules(search.__path__):
        module = importlib.import_module(f"mergemix_jax.search.{info.name}")
        for name, kind in vars(module).items():
            if not (isinstance(kind, type) and dataclasses.is_dataclass(kind)) or kind.__module__ != module.__name__:
                continue
            own = {f.name for f in dataclasses.fields(kind)}
            for section, section_fields in sections.items():
                assert len(own & section_fields) < max(3, 0.8 * len(own)), f"search/{info.name}.py:{name} repeats config/schema.py:{section}"


def test_method_traits_decide_the_region_and_the_objective():
    assert not METHODS["subsets"].trust_region and all(METHODS[m].trust_region for m in ("gradient", "surrogate", "cmaes", "hierarchical"))
    assert follows_objective("gradient", SearchConfig()) and not follows_objective("cmaes", SearchConfig())
    assert follows_objective("hierarchical", SearchConfig()) and not follows_objective("hierarchical", load_config(None, ["search.hierarchical.inner=cmaes"]).search)


def test_choice_tuples_are_the_schema_s_and_match_the_search_modules():
    assert checks.PARAMETRISATIONS is schema.PARAMETRISATIONS and checks.INNER_METHODS is schema.INNER_METHODS
    assert tuple(regressors.PRESETS) == schema.LIGHTGBM_PRESETS
    assert set(schema.INNER_METHODS) < set(METHODS)


def test_yaml_search_section_reaches_the_options_and_unknown_options_are_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("search:\n  seed: 5\n  surrogate: {preset: regmix, top_k: 3}\n  gradient: {kl_weight: 0.5}\n")
    config = load_config(path)
    surrogate = method_options("surrogate", config.search)
    assert (surrogate.preset, surrogate.top_k, config.search.seed) == ("regmix", 3, 5)
    assert method_options("gradient", config.search).kl_weight == 0.5
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
