"""The order statistics of :mod:`antigen_profile.orderstats` equal NumPy's to the last bit."""

from __future__ import annotations

import numpy as np
import pytest

from antigen_profile import orderstats


def _same(ours: object, numpy: object) -> bool:
    """Equal to the last bit (NaN equal to NaN)."""
    a = np.asarray(ours, dtype=np.float64)
    b = np.asarray(numpy, dtype=np.float64)
    return a.shape == b.shape and a.tobytes() == b.tobytes()


def _arrays(seed: int) -> list[np.ndarray]:
    """Awkward inputs: tiny and odd/even sizes, ties, wide ranges, infinities, big blocks."""
    rng = np.random.default_rng(seed)
    out = [np.array([3.5]), np.array([1.0, 2.0]), np.array([2.0, 1.0, 2.0])]
    for n in (3, 4, 5, 10, 11, 99, 100, 1000, 1001, 20_000, 200_001):
        out.append(rng.normal(size=n))
        out.append(rng.lognormal(3, 2, size=n) * rng.choice([-1, 1], size=n))
        out.append(rng.integers(-5, 6, size=n).astype(np.float64))  # many ties
        out.append(np.round(rng.normal(1e6, 1e5, size=n), 1))
    with_inf = rng.normal(size=1001)
    with_inf[[3, 500]] = np.inf
    with_inf[7] = -np.inf
    out.append(with_inf)
    out.append(np.full(64, 7.25))
    out.append(rng.normal(size=1000).astype(np.float32))  # float32 kept as given
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_median_equals_numpy(seed: int) -> None:
    for values in _arrays(seed):
        before = values.copy()
        assert _same(orderstats.median(values), np.median(values)), values.size
        assert np.array_equal(values, before), "the input is left as it was"


@pytest.mark.parametrize("seed", [0, 1])
def test_percentile_equals_numpy(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    qs = [0.0, 0.5, 1.0, 5.0, 25.0, 50.0, 75.0, 95.0, 99.0, 99.5, 99.9, 100.0]
    qs += list(rng.uniform(0, 100, size=10))
    for values in _arrays(seed):
        for q in qs:
            assert _same(orderstats.percentile(values, q), np.percentile(values, q)), (
                values.size,
                q,
            )
        assert _same(
            orderstats.percentiles(values, [0.5, 99.5]), np.percentile(values, [0.5, 99.5])
        )
        assert _same(
            orderstats.percentiles(values, [99.5, 5.0]), np.percentile(values, [99.5, 5.0])
        )


def test_numpy_scalar_and_integer_percentiles_equal_numpy() -> None:
    values = np.random.default_rng(5).normal(size=12_345)
    for q in (np.float64(99.5), 99, np.float32(12.5), 0, 100):
        assert _same(orderstats.percentile(values, q), np.percentile(values, q)), q


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_median_and_median_above_equal_numpy(seed: int) -> None:
    rng = np.random.default_rng(200 + seed)
    for values in _arrays(seed):
        finite = values[np.isfinite(values)]
        candidates = [np.min(values) - 1, np.max(values), np.max(values) + 1]
        if finite.size:
            candidates += list(rng.choice(finite, size=min(5, finite.size)))
            candidates += [float(np.median(finite)), float(np.percentile(finite, 99.5))]
        for threshold in candidates:
            median, above, upper = orderstats.median_and_median_above(values, threshold)
            positive = values[values > threshold]
            assert _same(median, np.median(values))
            assert above == positive.size
            if positive.size:
                assert _same(upper, np.median(positive)), (values.size, threshold)
            else:
                assert upper is None


def test_nan_and_empty_are_numpys() -> None:
    values = np.random.default_rng(3).normal(size=1001)
    values[[10, 900]] = np.nan
    assert np.isnan(orderstats.median(values))
    assert np.isnan(orderstats.percentile(values, 99.5))
    assert np.isnan(orderstats.percentiles(values, [0.5, 99.5])).all()
    median, above, upper = orderstats.median_and_median_above(values, 0.0)
    assert np.isnan(median) and above == int(np.count_nonzero(values > 0))
    assert _same(upper, np.median(values[values > 0]))
    with pytest.warns(RuntimeWarning):
        assert np.isnan(orderstats.median(np.empty(0)))


def test_order_statistics_are_the_sorted_values() -> None:
    values = np.random.default_rng(4).normal(size=5000)
    wanted = [0, 1, 2, 2499, 2500, 4000, 4001, 4999]
    found = orderstats.order_statistics(values, wanted)
    assert found is not None
    assert _same(found, np.sort(values)[wanted])
    shuffled = [4001, 0, 2500]
    found = orderstats.order_statistics(values, shuffled)
    assert found is not None and _same(found, np.sort(values)[shuffled])
    with pytest.raises(IndexError):
        orderstats.order_statistics(values, [5000])


def test_overwrite_input_reorders_but_keeps_the_values() -> None:
    values = np.random.default_rng(6).normal(size=10_001)
    work = values.copy()
    assert _same(orderstats.median(work, overwrite_input=True), np.median(values))
    assert np.array_equal(np.sort(work), np.sort(values))
    strided = values[::2]
    before = strided.copy()
    assert _same(orderstats.median(strided, overwrite_input=True), np.median(before))
    assert np.array_equal(strided, before), "a view that is not contiguous is copied"
