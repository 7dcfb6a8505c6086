"""`mergemix validate` on the tiny run: references trained, identities between proxies and references hold."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mergemix_jax.cli.main import main
from tests.pipeline_helpers import finished_tiny_run


def test_validate_trains_references_and_reports_rank_statistics(capsys):
    run = finished_tiny_run()
    assert main(["validate", "--config", str(run.config_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "| utility | all |" in out and "regret of the searched mixture" in out
    (path,) = run.run_dir.glob("validate-*/validation.json")
    v = json.loads(path.read_text())
    assert v["kinds"] == ["vertex"] * 3 + ["centre", "dirichlet"]
    # a reference on a vertex is trained exactly like that domain's expert, which is the merge at the vertex
    for metric, proxy in v["proxy"].items():
        np.testing.assert_allclose(v["reference"][metric][:3], proxy[:3], rtol=1e-5, err_msg=metric)
    rows = {(r["metric"], r["subset"]): r for r in v["table"]}
    assert rows[("utility", "all")]["n"] == 5 and rows[("utility", "interior")]["n"] == 2
    assert -1.0 <= rows[("utility", "all")]["spearman"] <= 1.0
    assert np.isfinite(rows[("utility", "all")]["ceiling_spearman"])
    assert v["reference_seed2"]["loss/mean"] != v["reference"]["loss/mean"]  # another data order
    s = v["summary"]
    assert s["proxy train steps / reference train steps"] == pytest.approx(3 / 5)
    assert s["regret of the searched mixture (best reference - searched)"] == pytest.approx(s["best reference utility"] - s["searched reference utility"])
    html = (run.run_dir / "report" / "index.html").read_text()
    assert "scatter.png" in html and (run.run_dir / "report" / "scatter.png").stat().st_size > 0
