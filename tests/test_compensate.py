"""Tests of compensation: observed = true @ S, so compensating recovers the true signal."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from antigen_profile import compensate as compensation
from antigen_profile.compensate import CompensationError, compensate, compensate_inplace

CHANNELS = ["FSC-A", "PE-A", "SSC-A", "APC-A", "BV421-A", "Time"]
#: The matrix lists its detectors in an order that differs from the file's on purpose.
DETECTORS = ["APC-A", "PE-A", "BV421-A"]


def _spillover(detectors: list[str] = DETECTORS, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    k = len(detectors)
    matrix = np.eye(k) + rng.uniform(0.0, 0.25, (k, k)) * (1 - np.eye(k))
    return pd.DataFrame(matrix, index=detectors, columns=detectors)


def _tube(spill: pd.DataFrame, n: int = 2000, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(observed, true) events: fluorescence observed = true @ S over the matrix's detectors."""
    rng = np.random.default_rng(seed)
    true = rng.lognormal(6.0, 1.5, (n, len(CHANNELS)))
    columns = [CHANNELS.index(d) for d in spill.columns]
    observed = true.copy()
    observed[:, columns] = true[:, columns] @ spill.to_numpy()
    return observed, true


def test_compensation_recovers_the_true_signal() -> None:
    spill = _spillover()
    observed, true = _tube(spill)
    assert not np.allclose(observed, true)  # the spillover is real
    result = compensate(observed, CHANNELS, spill)
    np.testing.assert_allclose(result, true, rtol=1e-9, atol=1e-9)


def test_channels_outside_the_matrix_are_untouched() -> None:
    spill = _spillover()
    observed, _ = _tube(spill)
    result = compensate(observed, CHANNELS, spill)
    for name in ("FSC-A", "SSC-A", "Time"):
        j = CHANNELS.index(name)
        np.testing.assert_array_equal(result[:, j], observed[:, j])


def test_input_array_is_not_modified() -> None:
    spill = _spillover()
    observed, _ = _tube(spill)
    before = observed.copy()
    result = compensate(observed, CHANNELS, spill)
    np.testing.assert_array_equal(observed, before)
    assert not np.shares_memory(result, observed)


def test_integer_input_gives_float64() -> None:
    spill = _spillover()
    observed = np.full((10, len(CHANNELS)), 1000, dtype=np.int32)
    result = compensate(observed, CHANNELS, spill)
    assert result.dtype == np.float64
    np.testing.assert_array_equal(observed, 1000)


@pytest.mark.parametrize("spill", [None, pd.DataFrame()])
def test_no_spillover_returns_a_copy(spill: pd.DataFrame | None) -> None:
    observed, _ = _tube(_spillover())
    result = compensate(observed, CHANNELS, spill)
    np.testing.assert_array_equal(result, observed)
    assert result is not observed
    assert not np.shares_memory(result, observed)
    result[0, 0] = -1.0
    assert observed[0, 0] != -1.0


def test_rows_and_columns_naming_different_detectors() -> None:
    spill = _spillover()
    shuffled = spill.copy()
    shuffled.index = ["PE-A", "APC-A", "BV421-A"]
    with pytest.raises(CompensationError):
        compensate(_tube(spill)[0], CHANNELS, shuffled)


def test_non_square_matrix() -> None:
    frame = pd.DataFrame(np.ones((2, 3)), index=["PE-A", "APC-A"], columns=DETECTORS)
    with pytest.raises(CompensationError):
        compensate(_tube(_spillover())[0], CHANNELS, frame)


def test_detector_not_in_the_tube_is_named() -> None:
    spill = _spillover(["PE-A", "PE-Cy7-A"])
    with pytest.raises(CompensationError, match="PE-Cy7-A"):
        compensate(_tube(_spillover())[0], CHANNELS, spill)


@pytest.mark.parametrize(
    "matrix",
    [
        [[1.0, 1.0], [1.0, 1.0]],
        [[1.0, 0.5], [2.0, 1.0]],
        [[1.0, 0.0], [0.0, 0.0]],
        [[1.0, 1.0], [1.0, 1.0 + 1e-12]],
    ],
)
def test_singular_matrix(matrix: list[list[float]]) -> None:
    spill = pd.DataFrame(matrix, index=["PE-A", "APC-A"], columns=["PE-A", "APC-A"])
    with pytest.raises(CompensationError, match="singular"):
        compensate(_tube(_spillover())[0], CHANNELS, spill)


#: Agreement asked of two evaluations of the same product, relative to the data's scale (its
#: largest value). Two BLAS kernels may round differently: a 1-row block goes through a
#: matrix-vector kernel, the whole tube through a matrix-matrix one, and their summation
#: order and FMA use differ by the CPU that OpenBLAS detects (OPENBLAS_CORETYPE=Haswell gives
#: 1.5e-11 on values near 1e5, about 1e-16 of the scale). Rounding of a 3-term dot product
#: stays within a few 1e-16 of the scale; a real fault (a block skipped or done twice, a
#: column mapped wrongly, a block overwritten while still being read) is off by a spillover
#: coefficient, 1e-3 of the scale or more. 1e-12 sits far from both.
PRODUCT_TOLERANCE = 1e-12


def _assert_same_product(actual: np.ndarray, expected: np.ndarray, scale: float) -> None:
    np.testing.assert_allclose(actual, expected, rtol=0, atol=PRODUCT_TOLERANCE * scale)


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("rows", [1, 7, 8192])
def test_in_place_blocks_equal_one_full_product_within_rounding(
    order: str, rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Block by block in place (any block size, either memory order) gives the numbers of one
    product over every event, up to the BLAS kernel's rounding (see PRODUCT_TOLERANCE)."""
    spill = _spillover()
    observed, _ = _tube(spill, n=20_011)
    columns = [CHANNELS.index(d) for d in spill.columns]
    expected = observed.copy()
    expected[:, columns] = observed[:, columns] @ np.linalg.inv(spill.to_numpy())
    scale = float(np.abs(observed).max())
    monkeypatch.setattr(compensation, "ROWS_PER_BLOCK", rows)
    events = np.array(observed, order=order)
    result = compensate_inplace(events, CHANNELS, spill)
    assert result is events
    _assert_same_product(result, expected, scale)
    copied = compensate(np.array(observed, order=order), CHANNELS, spill)
    _assert_same_product(copied, expected, scale)
    assert copied.flags.f_contiguous == (order == "F")


def test_the_product_tolerance_still_catches_one_wrong_block(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The tolerance is not so loose that a block left uncompensated would pass."""
    spill = _spillover()
    observed, _ = _tube(spill, n=100)
    columns = [CHANNELS.index(d) for d in spill.columns]
    expected = observed.copy()
    expected[:, columns] = observed[:, columns] @ np.linalg.inv(spill.to_numpy())
    monkeypatch.setattr(compensation, "ROWS_PER_BLOCK", 7)
    result = compensate_inplace(observed.copy(), CHANNELS, spill)
    result[7:14] = observed[7:14]  # as if the second block had been skipped
    with pytest.raises(AssertionError):
        _assert_same_product(result, expected, float(np.abs(observed).max()))


def test_in_place_leaves_the_events_untouched_on_error() -> None:
    spill = pd.DataFrame(
        [[1.0, 1.0], [1.0, 1.0]], index=["PE-A", "APC-A"], columns=["PE-A", "APC-A"]
    )
    observed, _ = _tube(_spillover())
    before = observed.copy()
    with pytest.raises(CompensationError):
        compensate_inplace(observed, CHANNELS, spill)
    np.testing.assert_array_equal(observed, before)
    assert compensate_inplace(observed, CHANNELS, None) is observed
    np.testing.assert_array_equal(observed, before)


def test_in_place_needs_float64() -> None:
    observed = np.full((10, len(CHANNELS)), 1000, dtype=np.float32)
    with pytest.raises(TypeError, match="float64"):
        compensate_inplace(observed, CHANNELS, _spillover())
