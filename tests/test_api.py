"""The Python API at the package root: load_config / run / validate, overrides as a dict or keywords."""

from __future__ import annotations

import subprocess
import sys

import pytest

import mergemix_jax as mm
from mergemix_jax.config import Config, ConfigError


def test_overrides_as_a_dict_keywords_or_command_line_strings_give_one_config():
    from_dict = mm.load_config(None, {"train.steps": 7, "pipeline.methods": ["subsets"]}, **{"pipeline.name": "my run"})
    from_strings = mm.load_config(None, ["train.steps=7", "pipeline.methods=[subsets]", "pipeline.name=my run"])
    assert from_dict == from_strings
    assert (from_dict.train.steps, from_dict.pipeline.methods, from_dict.pipeline.name) == (7, ["subsets"], "my run")
    assert mm.load_config(None, {"data.tokenizer": "yes"}).data.tokenizer == "yes"  # a string stays a string (not YAML's true)


def test_bad_overrides_name_the_key():
    with pytest.raises(ConfigError, match=r"train\.stepz"):
        mm.load_config(None, {"train.stepz": 1})
    with pytest.raises(ConfigError, match="keyword 'steps' is not a config override"):
        mm.load_config(None, steps=1)
    with pytest.raises(ConfigError, match="overrides must be a dict"):
        mm.load_config(None, "train.steps=1")


def test_run_refuses_an_unknown_stage_before_anything_is_written(tmp_path):
    config = mm.load_config(None, {"pipeline.output_root": str(tmp_path / "runs")})
    assert isinstance(config, Config)
    with pytest.raises(ConfigError, match=r"stop_after .* must be one of base, experts"):
        mm.run(config, stop_after="expert")
    assert not (tmp_path / "runs").exists()


def test_importing_the_package_is_cheap_and_documents_the_api():
    code = (
        "import sys, mergemix_jax as m; assert 'jax' not in sys.modules, 'jax imported';"
        "import mergemix_jax.validate.run; assert callable(m.validate) and m.validate.__module__ == 'mergemix_jax.api';"
        "assert 'Example' in m.run.__doc__ and 'Example' in m.validate.__doc__ and 'Example' in m.load_config.__doc__"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
