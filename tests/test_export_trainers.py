"""`mergemix export-mixture`: a run folder's mixture in every trainer format, parsed back."""

import ast
import json

import pytest
import yaml

from mergemix_jax.cli.main import main
from mergemix_jax.config import load_config, save_config
from mergemix_jax.export.formats import FORMATS, render
from mergemix_jax.export.mixture_file import MixtureFile, write_mixture
from mergemix_jax.export.plan import export_plan
from tests.pipeline_helpers import write_corpus

WEIGHTS = {"prose": 0.5, "code": 0.3, "math": 0.2}


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    """A finished run's folder as the exporters read it: config.yaml (full config) and mixture.json."""
    monkeypatch.setenv("MERGEMIX_CACHE_DIR", str(tmp_path / "cache"))
    domains = write_corpus(tmp_path / "corpus", docs=20)
    domains[2]["paths"].append(str(tmp_path / "corpus" / "prose.jsonl"))  # a domain of two files (bytes split the weight in MaxText)
    config = load_config(None, [f"data.domains={json.dumps(domains)}", "data.max_epochs=2"])
    folder = tmp_path / "runs" / "demo-0000"
    folder.mkdir(parents=True)
    save_config(config, folder / "config.yaml")
    write_mixture(MixtureFile(weights=WEIGHTS, method="surrogate", objective=1.0), folder / "mixture.json")
    return folder


def paths_of(run_dir) -> dict[str, list[str]]:
    return {d.name: list(d.paths) for d in load_config(run_dir / "config.yaml").data.domains}


def test_maxtext_blend_carries_each_path_with_weights_summing_to_one(run_dir):
    config = yaml.safe_load(render(export_plan(run_dir), "maxtext"))
    assert config["dataset_type"] == "grain" and config["grain_file_type"] == "arrayrecord" and config["train_data_columns"] == ["text"]
    sources = [part.rsplit(",", 1) for part in config["grain_train_files"].split(";")]
    weights = {}
    for path, weight in sources:
        weights[path] = weights.get(path, 0.0) + float(weight)
    assert sum(weights.values()) == pytest.approx(1.0, abs=1e-5)
    math_paths = paths_of(run_dir)["math"]
    assert weights[math_paths[0]] + float(sources[-1][1]) == pytest.approx(0.2, abs=1e-5)  # math's two files share its weight
    assert 0 < float(sources[-1][1]) < 0.2 and sources[-1][0] == math_paths[1]


def test_levanter_data_section_has_configs_and_train_weights(run_dir):
    data = yaml.safe_load(render(export_plan(run_dir), "levanter"))["data"]
    assert data["train_weights"] == pytest.approx(WEIGHTS) and sum(data["train_weights"].values()) == pytest.approx(1.0)
    assert {name: c["train_urls"] for name, c in data["configs"].items()} == paths_of(run_dir)
    assert all(c["format"] == {"type": "text", "text_key": "text"} for c in data["configs"].values())


def call_keywords(source: str, function: str) -> list[dict]:
    """The literal keyword arguments of every call of `function` in Python `source`."""
    calls = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call) and getattr(n.func, "id", getattr(n.func, "attr", "")) == function]
    return [{k.arg: ast.literal_eval(k.value) for k in call.keywords if isinstance(k.value, (ast.Constant, ast.List, ast.Tuple, ast.Dict))} for call in calls]


def test_olmo_core_source_mixture_ratios_and_paths(run_dir):
    sources = call_keywords(render(export_plan(run_dir, target_tokens=10_000), "olmo-core"), "SourceMixtureConfig")
    assert {s["source_name"]: s["target_ratio"] for s in sources} == pytest.approx(WEIGHTS)
    assert {s["source_name"]: s["paths"] for s in sources} == paths_of(run_dir)
    assert {s["max_repetition_ratio"] for s in sources} == {2.0}  # data.max_epochs
    assert call_keywords(render(export_plan(run_dir, target_tokens=10_000), "olmo-core"), "SourceMixtureDatasetConfig")[0]["requested_tokens"] == 10_000


def test_torchtitan_weighted_datasets_of_jsonl_sources(run_dir):
    source = render(export_plan(run_dir), "torchtitan")
    weights = [kw["weight"] for kw in call_keywords(source, "WeightedDataset")]
    assert sum(weights) == pytest.approx(1.0) and sorted(weights) == sorted(WEIGHTS.values())
    assert [list(kw["patterns"]) for kw in call_keywords(source, "Config") if "patterns" in kw] == list(paths_of(run_dir).values())


def test_grain_seqio_and_json(run_dir):
    plan = export_plan(run_dir)
    assert yaml.safe_load(render(plan, "grain"))["train"]["mixture"] == pytest.approx(WEIGHTS)
    seqio_call = next(n for n in ast.walk(ast.parse(render(plan, "seqio"))) if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "add")
    assert dict(ast.literal_eval(seqio_call.args[1])) == pytest.approx(WEIGHTS)
    document = json.loads(render(plan, "json"))
    assert {n: d["weight"] for n, d in document["domains"].items()} == pytest.approx(WEIGHTS)
    assert {n: d["paths"] for n, d in document["domains"].items()} == paths_of(run_dir)


def test_target_tokens_give_epochs_and_warn_beyond_max_epochs(run_dir, capsys):
    from mergemix_jax.data import token_counts

    counts = token_counts(load_config(run_dir / "config.yaml").data)
    target = int(3 * counts["prose"]["train"] / WEIGHTS["prose"])  # prose: 3 epochs > data.max_epochs = 2
    assert main(["export-mixture", str(run_dir), "--format", "json", "--target-tokens", str(target)]) == 0
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert document["domains"]["prose"]["epochs"] == pytest.approx(3.0, rel=1e-3)
    assert document["domains"]["code"]["epochs"] == pytest.approx(0.3 * target / counts["code"]["train"])
    assert "domain 'prose'" in captured.err and "data.max_epochs = 2" in captured.err
    assert any("prose" in w for w in document["warnings"])


def test_zero_weight_domains_are_left_out_and_the_rest_renormalised(run_dir):
    write_mixture(MixtureFile(weights={"prose": 0.6, "code": 0.4, "math": 0.0}, method="x", objective=0.0), run_dir / "mixture.json")
    data = yaml.safe_load(render(export_plan(run_dir), "levanter"))["data"]
    assert data["train_weights"] == pytest.approx({"prose": 0.6, "code": 0.4}) and "math" not in data["configs"]


def test_cli_writes_out_file_and_refuses_bad_input(run_dir, tmp_path, capsys):
    out = tmp_path / "mix.yaml"
    assert main(["export-mixture", str(run_dir), "--format", "levanter", "--out", str(out)]) == 0
    assert yaml.safe_load(out.read_text())["data"]["train_weights"] == pytest.approx(WEIGHTS)
    with pytest.raises(SystemExit) as exit_info:
        main(["export-mixture", str(run_dir), "--format", "megatron"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and all(name in err for name in FORMATS)
    assert main(["export-mixture", str(tmp_path), "--format", "json"]) == 2
    assert "config.yaml does not exist" in capsys.readouterr().err
    write_mixture(MixtureFile(weights={"prose": 0.25, "code": 0.75}, method="x", objective=0.0), tmp_path / "selected.json")
    assert main(["export-mixture", str(run_dir), "--format", "json", "--mixture", str(tmp_path / "selected.json")]) == 0
    assert {n: d["weight"] for n, d in json.loads(capsys.readouterr().out)["domains"].items()} == {"prose": 0.25, "code": 0.75}
    write_mixture(MixtureFile(weights={"web": 1.0}, method="x", objective=0.0), tmp_path / "foreign.json")
    assert main(["export-mixture", str(run_dir), "--format", "json", "--mixture", str(tmp_path / "foreign.json")]) == 2
    assert "weighs domains ['web']" in capsys.readouterr().err
    with pytest.raises(ValueError, match="choose one of maxtext"):
        render(export_plan(run_dir), "megatron")
