"""The allclose rule of every numerical check: |a - b| <= atol + rtol * |b|, element-wise."""

from __future__ import annotations

import math

import numpy as np
import pytest

from transnext_deploy.compare import FP32_TOLERANCE, Tolerance, allclose_check, smallest_atol


def test_worst_element_is_the_one_closest_to_its_bound_not_the_largest_difference():
    ref = np.array([[100.0, 0.0], [1.0, -50.0]])
    out = ref + np.array([[4e-3, 0.0], [1.5e-3, -1e-3]])
    worst = allclose_check(ref, out, Tolerance(atol=1e-3, rtol=1e-4))
    # bounds: 1.1e-2 at 100, 1e-3 at 0, 1.1e-3 at 1, 6e-3 at -50
    assert worst.index == (1, 0)
    assert worst.abs_diff == pytest.approx(1.5e-3) and worst.ref_abs == 1.0
    assert worst.allowed == pytest.approx(1.1e-3) and worst.ratio == pytest.approx(1.5e-3 / 1.1e-3)
    assert worst.ratio > 1  # fails
    # numpy.allclose agrees on pass/fail at both sides of the bound
    assert not np.allclose(out, ref, atol=1e-3, rtol=1e-4)
    assert allclose_check(ref, out, Tolerance(atol=2e-3, rtol=1e-4)).ratio <= 1
    assert np.allclose(out, ref, atol=2e-3, rtol=1e-4)


def test_relative_part_follows_the_reference_magnitude():
    ref = np.full((3,), 3.0e4)
    out = ref + 2.0  # |a-b| = 2: far past a max-abs bound of 1e-4, within rtol 1e-4 of 3e4
    assert allclose_check(ref, out, Tolerance(atol=1e-4, rtol=0.0)).ratio > 1e4
    assert allclose_check(ref, out, Tolerance(atol=1e-4, rtol=1e-4)).ratio < 1


def test_non_finite_output_and_zero_tolerance():
    ref = np.zeros((2, 2))
    out = ref.copy()
    assert allclose_check(ref, out, Tolerance(0.0, 0.0)).ratio == 0.0  # exact equality passes at zero tolerance
    out[0, 1] = 1e-9
    assert allclose_check(ref, out, Tolerance(0.0, 0.0)).ratio == math.inf
    out[0, 1] = 0.0
    out[1, 0] = np.nan
    worst = allclose_check(ref, out, Tolerance(1.0, 1.0))
    assert worst.index == (1, 0) and worst.ratio == math.inf


def test_smallest_atol_is_the_tightest_passing_value():
    g = np.random.default_rng(0)
    ref = g.standard_normal((4, 50)) * 10
    out = ref + g.standard_normal(ref.shape) * 1e-4
    for rtol in (0.0, 1e-5, 1e-4):
        atol = smallest_atol(ref, out, rtol)
        assert allclose_check(ref, out, Tolerance(atol, rtol)).ratio <= 1 + 1e-12
        assert allclose_check(ref, out, Tolerance(atol * 0.99, rtol)).ratio > 1
    assert smallest_atol(ref, ref, 0.0) == 0.0


def test_tolerance_rejects_bad_values_and_the_default_is_set():
    for bad in (-1e-4, math.nan, math.inf, "x"):
        with pytest.raises(ValueError, match="atol must be a finite number >= 0"):
            Tolerance(bad, 0.0)
    with pytest.raises(ValueError, match="rtol must be"):
        Tolerance(0.0, -1.0)
    assert FP32_TOLERANCE.atol > 0 and FP32_TOLERANCE.rtol > 0
    with pytest.raises(ValueError, match="shape mismatch"):
        allclose_check(np.zeros(3), np.zeros(4), FP32_TOLERANCE)
