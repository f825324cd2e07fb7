"""fdsl's pnoise1 against the ``noise`` package that RCDB's official make_rcdb.py calls."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from fdsl.generators.kernels import perlin

# Computed with noise 1.2.2 (``noise.pnoise1(x)``, C build with gcc on x86-64), so the test
# pins the package's values where it is not installed.
PINNED = [
    (0.5, 0.699999988079071), (1.25, 0.12070312350988388), (17.3, 0.13685397803783417),
    (255.9, -0.30186882615089417), (256.1, 0.3141975998878479), (1023.75, -0.5619140863418579),
    (4321.0625, 0.12555456161499023), (9999.9, 0.04560413584113121),
    (3141.5926, 0.1874476969242096), (7.77, 0.058577727526426315), (-2.5, 0.0),
    (-300.3, 0.05476956441998482),
]
PINNED_OCTAVES = [
    ((1234.567,), {"octaves": 3}, 0.08171171694993973),
    ((55.5,), {"octaves": 2, "persistence": 0.7, "lacunarity": 2.5, "repeat": 16, "base": 5},
     0.06495864689350128),
]


def test_pinned_values_of_the_reference_package():
    xs = np.array([x for x, _ in PINNED])
    np.testing.assert_allclose(perlin.pnoise1(xs), [v for _, v in PINNED], rtol=0, atol=1e-6)
    # exact in fact: the same single-precision arithmetic
    assert perlin.pnoise1(xs).tolist() == [v for _, v in PINNED]
    for args, kwargs, value in PINNED_OCTAVES:
        assert perlin.pnoise1(*args, **kwargs) == pytest.approx(value, abs=1e-6)


def test_equals_the_noise_package_for_make_rcdb_arguments():
    noise = pytest.importorskip("noise")
    xs = np.random.default_rng(0).uniform(0.0, 1e4, 20_000)  # make_rcdb.py: pnoise1(U(0, 1e4))
    ours = perlin.pnoise1(xs)
    theirs = np.array([noise.pnoise1(float(x)) for x in xs])
    assert np.abs(ours - theirs).max() <= 1e-6
    # every lattice cell of the period (the permutation entry of each one matters)
    cells = (np.arange(1024)[:, None] + np.array([0.13, 0.5, 0.77])[None]).ravel()
    assert np.abs(perlin.pnoise1(cells) - np.array([noise.pnoise1(float(x)) for x in cells])).max() <= 1e-6


@pytest.mark.parametrize("kwargs", [{"octaves": 3}, {"octaves": 4, "persistence": 0.7, "lacunarity": 2.5},
                                    {"repeat": 7}, {"base": 17}, {"octaves": 2, "repeat": 100, "base": 3}])
def test_equals_the_noise_package_for_other_arguments(kwargs):
    noise = pytest.importorskip("noise")
    xs = np.random.default_rng(1).uniform(-300.0, 3000.0, 3000)
    theirs = np.array([noise.pnoise1(float(x), **kwargs) for x in xs])
    assert np.abs(perlin.pnoise1(xs, **kwargs) - theirs).max() <= 1e-6


def test_not_the_old_permutation():
    """fdsl used its own shuffled table before; the reference table gives other values."""
    assert perlin.PERM[:4].tolist() == [151, 160, 137, 91]
    assert sorted(perlin.PERM[:256].tolist()) == list(range(256))
    assert np.array_equal(perlin.PERM[:256], perlin.PERM[256:])


def test_shape_scalars_zeros_and_range():
    grid = np.random.default_rng(2).uniform(0, 1e4, (3, 5, 7))
    out = perlin.pnoise1(grid)
    assert out.shape == grid.shape and out.dtype == np.float64
    assert isinstance(perlin.pnoise1(3.3), float) and perlin.pnoise1(3.3) == perlin.pnoise1(np.array([3.3]))[0]
    assert np.all(perlin.pnoise1(np.arange(-50.0, 2000.0)) == 0.0)
    values = perlin.pnoise1(np.random.default_rng(3).uniform(0, 1e4, 50_000))
    assert 0.3 < values.std() < 0.36 and np.abs(values).max() < 1.0


def test_callable_from_numba_kernels():
    @numba.njit
    def total(xs):
        s = 0.0
        for x in xs:
            s += perlin.pnoise1_jit(x) + perlin.pnoise1_jit(x, 2, 0.5, 2.0, 1024, 0)
        return s

    xs = np.random.default_rng(4).uniform(0, 1e4, 100)
    expected = perlin.pnoise1(xs).sum() + perlin.pnoise1(xs, octaves=2).sum()
    assert total(xs) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("kwargs", [{"octaves": 0}, {"repeat": 0}, {"base": -1}, {"base": 257}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        perlin.pnoise1(1.5, **kwargs)
