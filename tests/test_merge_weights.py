"""Weight vectors: row-level errors for bad input, Dirichlet sampling, CSV reading."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mergemix_jax.merge import read_weights_csv, sample_dirichlet, validate_weights, weights_hash


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ([[0.5, 0.5, 0.0], [0.2, float("nan"), 0.8]], "row 1 has a NaN"),
        ([[0.5, 0.5, 0.0], [0.2, float("inf"), 0.8]], "row 1 has a NaN or infinite"),
        ([[0.5, -0.1, 0.6]], "row 0 has a negative weight"),
        ([[0.5, 0.5, 0.0], [0.0, 0.0, 0.0]], "row 1 is all zeros"),
        ([[0.5, 0.5]], "needs 3 entries .one per expert., got 2"),
        (np.zeros((0, 3)), "no weight vectors given .empty."),
        ([], "no weight vectors given"),
    ],
)
def test_bad_weights_are_clear_errors(weights, message):
    with pytest.raises(ValueError, match=message):
        validate_weights(weights, 3)


def test_zero_rows_allowed_when_asked():
    assert validate_weights([0.0, 0.0], 2, allow_zero=True).shape == (1, 2)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 50), k=st.integers(1, 8), seed=st.integers(0, 1000))
def test_dirichlet_samples_lie_on_the_simplex_and_are_seeded(n, k, seed):
    w = sample_dirichlet(n, k, seed=seed)
    assert w.shape == (n, k) and (w >= 0).all()
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(w, sample_dirichlet(n, k, seed=seed))
    validate_weights(w, k)


def test_weights_hash_tells_vectors_apart():
    assert weights_hash([0.5, 0.5]) == weights_hash(np.array([0.5, 0.5], np.float64))
    assert weights_hash([0.5, 0.5]) != weights_hash([0.5, 0.50001])


def test_weights_csv_by_header_or_position(tmp_path):
    named = tmp_path / "named.csv"
    named.write_text("web,code,note\n0.25,0.75,x\n1,0,y\n")
    np.testing.assert_array_equal(read_weights_csv(named, ["code", "web"]), [[0.75, 0.25], [0.0, 1.0]])
    bare = tmp_path / "bare.csv"
    bare.write_text("0.1,0.9\n0.5,0.5\n")
    assert read_weights_csv(bare, ["code", "web"]).shape == (2, 2)
    with pytest.raises(ValueError, match="lacks columns for experts \\['code'\\]"):
        read_weights_csv(_write(tmp_path, "web,math\n1,0\n"), ["code", "web"])
    with pytest.raises(ValueError, match="line 3: expected numbers"):
        read_weights_csv(_write(tmp_path, "code,web\n1,0\nx,0\n"), ["code", "web"])
    with pytest.raises(ValueError, match="row 0 has a negative"):
        read_weights_csv(_write(tmp_path, "code,web\n-1,2\n"), ["code", "web"])


def _write(tmp_path, text):
    path = tmp_path / "w.csv"
    path.write_text(text)
    return path
