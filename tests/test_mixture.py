"""The Mixture type: one place that turns {domain: weight} into a weight vector in a given order and back."""

import numpy as np
import pytest

from mergemix_jax.export import mixture_from_result, read_mixture, write_mixture
from mergemix_jax.mixture import Mixture
from mergemix_jax.search.types import SearchResult


def test_dict_and_vector_views_agree():
    m = Mixture(("web", "code", "math"), np.array([0.5, 0.3, 0.2], np.float32))
    assert m.as_dict() == {"web": float(np.float32(0.5)), "code": float(np.float32(0.3)), "math": float(np.float32(0.2))}
    assert m.vector(["math", "web", "code"]).tolist() == [float(np.float32(0.2)), 0.5, float(np.float32(0.3))]
    assert Mixture.from_dict(m.as_dict()) == m and hash(m) == hash(Mixture.from_dict(m.as_dict()))
    assert Mixture(("a", "b", "c"), [0.7, 1e-12, 0.3]).as_dict(min_weight=1e-9) == {"a": 0.7, "c": 0.3}
    with pytest.raises(KeyError):
        m.vector(["web", "prose"])
    with pytest.raises(ValueError, match="one weight per domain"):
        Mixture(("a", "b"), [1.0])
    with pytest.raises(ValueError, match="unique"):
        Mixture(("a", "a"), [0.5, 0.5])


def test_search_result_and_mixture_file_share_it(tmp_path):
    result = SearchResult("gradient", ("web", "code"), np.array([0.25, 0.75]), 1.0, 0.1, 3)
    assert result.mixture == Mixture(("web", "code"), [0.25, 0.75]) and result.weights_by_domain() == {"web": 0.25, "code": 0.75}
    back = read_mixture(write_mixture(mixture_from_result(result, {"method": "gradient"}), tmp_path / "m.json"))
    assert back.mixture.vector(["code", "web"]).tolist() == [0.75, 0.25]
