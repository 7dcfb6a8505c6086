"""`mergemix search` end to end on a synthetic problem with a known optimum."""

import json

import pytest

from mergemix_jax.cli.main import main
from mergemix_jax.export import read_grain_mixture, read_mixture


def test_search_cli_writes_mixture_and_grain_files(tmp_path, capsys):
    out = tmp_path / "mix.json"
    code = main(
        ["search", "--method", "gradient", "--synthetic", "quadratic:4:face", "--parametrisation", "projected",
         "--steps", "100", "--out", str(out), "--grain-out", str(tmp_path / "mix.yaml"), "--no-progress"]
    )  # fmt: skip
    assert code == 0
    mixture = read_mixture(out)
    assert mixture.method == "gradient/projected"
    assert mixture.provenance["settings"]["problem"]["optimum"] == "face"
    assert read_grain_mixture(tmp_path / "mix.yaml") == pytest.approx(
        {k: v for k, v in mixture.weights.items() if v >= 1e-6}, abs=1e-6
    )
    table = capsys.readouterr().out
    assert "known optimum w*" in table and "gradient/projected" in table


def test_search_cli_runs_several_methods_with_caps_and_reports_ratios(tmp_path, capsys):
    out = tmp_path / "mix.json"
    code = main(
        ["search", "--method", "subsets,surrogate", "--synthetic", "quadratic:3", "--n-seeds", "12", "--rounds", "1",
         "--tokens", "100,100,100", "--token-budget", "200", "--max-epochs", "1", "--out", str(out), "--no-progress"]
    )  # fmt: skip
    assert code == 0
    for method in ("subsets", "surrogate"):
        mixture = read_mixture(tmp_path / f"mix.{method}.json")
        assert max(mixture.weights.values()) <= 0.5 + 1e-6  # cap = 1 epoch x 100 / 200 tokens
        assert set(mixture.ratios["ratios"]) == {"d0", "d1", "d2"}
        assert json.loads((tmp_path / f"mix.{method}.json").read_text())["format"] == "mergemix.mixture/v1"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--method", "annealing", "--synthetic", "quadratic:3"], "--method: unknown method(s) ['annealing']"),
        (["--method", "gradient"], "--config, --base and --experts are required"),
        (["--method", "gradient", "--synthetic", "cubic:3"], "--synthetic 'cubic:3': expected quadratic:K"),
    ],
)
def test_search_cli_explains_bad_input(capsys, argv, message):
    assert main(["search", *argv]) == 2
    assert message in capsys.readouterr().err
