"""The logicle: exact (flowutils, as FlowKit) and by table (what gating uses), both against
FlowKit's ``LogicleTransform`` over the whole range, negatives and off-scale values included."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from antigen_profile.transforms import (
    TABLE_TOLERANCE,
    LogicleTable,
    logicle,
    logicle_inverse,
    logicle_table,
)

#: The config's parameters, then a wider linear region with negative decades, and a 20-bit
#: scale with a narrow one. (Not W=0: there flowutils itself returns -1 for values below
#: about 1e-20, and -33 for 1e-200, where the table is right.)
PARAMS = [
    {"T": 262144, "W": 0.5, "M": 4.5, "A": 0},
    {"T": 10000, "W": 1.0, "M": 4.0, "A": 0.5},
    {"T": 1048576, "W": 0.1, "M": 6.0, "A": 0},
]


def _flowkit(params: dict[str, float]) -> object:
    from flowkit import transforms

    return transforms.LogicleTransform(
        param_t=params["T"], param_w=params["W"], param_m=params["M"], param_a=params["A"]
    )


def _values(params: dict[str, float], n: int = 400_000, seed: int = 3) -> np.ndarray:
    """Dense in every region the logicle bends: around zero, both signs, decades up to T and
    beyond it, exact knots' neighbours, and the special values."""
    rng = np.random.default_rng(seed)
    top = float(params["T"])
    return np.concatenate(
        [
            np.sinh(rng.uniform(-np.arcsinh(2 * top), np.arcsinh(2 * top), n)),
            rng.uniform(-top, top, n // 4),
            rng.normal(0.0, 50.0, n // 4),
            [0.0, -0.0, top, -top, np.nextafter(top, 0), np.nextafter(top, np.inf), 2 * top],
            [1e300, -1e300, 5e-324, np.nan, np.inf, -np.inf],
        ]
    )


@pytest.mark.parametrize("params", PARAMS, ids=lambda p: f"T{p['T']:g}W{p['W']:g}")
def test_exact_logicle_is_flowkits(params: dict[str, float]) -> None:
    values = _values(params, n=50_000)
    theirs = np.asarray(_flowkit(params).apply(values.reshape(-1, 1))).ravel()  # type: ignore[attr-defined]
    np.testing.assert_allclose(logicle(values, params), theirs, rtol=0, atol=1e-12)
    scale = np.linspace(-0.3, 1.2, 10_001)
    back = np.asarray(_flowkit(params).inverse(scale.reshape(-1, 1))).ravel()  # type: ignore[attr-defined]
    np.testing.assert_allclose(logicle_inverse(scale, params), back, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("params", PARAMS, ids=lambda p: f"T{p['T']:g}W{p['W']:g}")
def test_table_logicle_is_within_1e_8_of_flowkit(params: dict[str, float]) -> None:
    values = _values(params)
    theirs = np.asarray(_flowkit(params).apply(values.reshape(-1, 1))).ravel()  # type: ignore[attr-defined]
    table = logicle_table(params)
    ours = table(values)
    assert ours.shape == values.shape
    error = np.abs(ours - theirs)
    assert np.all(np.isfinite(error)), "NaN and infinities are handled as FlowKit does"
    assert error.max() <= 1e-8, error.max()
    assert table.max_error <= TABLE_TOLERANCE
    # the documented bound is the real one, not a loose guess
    assert error.max() <= 1.1 * table.max_error
    outside = ~(np.abs(values) <= params["T"])
    assert outside.sum() > 1000
    np.testing.assert_array_equal(ours[outside], theirs[outside])  # exact beyond the table


def test_a_coarse_table_adds_knots_until_within_tolerance() -> None:
    params = PARAMS[0]
    table = LogicleTable.build(params, knots=1024)
    assert table.values.size > 1024 and table.max_error <= TABLE_TOLERANCE
    values = _values(params, n=100_000)
    assert np.abs(table(values) - logicle(values, params)).max() <= 1e-8


def test_table_keeps_shape_and_handles_empty_input() -> None:
    params = PARAMS[0]
    table = logicle_table(params)
    grid = np.linspace(-1000.0, 200_000.0, 12).reshape(3, 4)
    assert table(grid).shape == (3, 4)
    np.testing.assert_allclose(table(grid), logicle(grid, params), atol=1e-9)
    assert table(np.array([])).shape == (0,)
    assert table(np.array([5, 50, 500])).dtype == np.float64  # integers are fine


def test_table_is_built_once_per_parameter_set() -> None:
    first = logicle_table({"T": 262144, "W": 0.5, "M": 4.5, "A": 0})
    assert logicle_table({"T": 262144.0, "W": 0.5, "M": 4.5, "A": 0.0}) is first
    assert logicle_table(PARAMS[1]) is not first
    assert isinstance(first, LogicleTable)


def test_logicle_does_not_import_flowkit() -> None:
    """FlowKit's import costs ~2 s per Snakemake job; the transforms need only flowutils."""
    code = (
        "import sys, numpy as np\n"
        "from antigen_profile.transforms import logicle, logicle_table\n"
        "p = {'T': 262144, 'W': 0.5, 'M': 4.5, 'A': 0}\n"
        "logicle(np.arange(10.0), p); logicle_table(p)(np.arange(10.0))\n"
        "assert 'flowkit' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
