"""The comparison's failure message (properties/tolerances.py)."""
import pytest
import torch

from roialign_suite.properties.tolerances import assert_within


def test_a_nan_on_both_sides_is_counted_out_of_bound():
    """NaN compares false with every bound: the message counted 0 of 1 elements out of bound for
    the one element that failed (Paddle's empty-grid NaN in the linearity check, a fuzz run)."""
    nan = torch.tensor([float("nan"), 1.0], dtype=torch.float64)
    with pytest.raises(AssertionError, match=r"got nan, expected nan, .*\(1 of 2 elements out of bound\)"):
        assert_within(nan, nan.clone(), torch.full((2,), 1e-3, dtype=torch.float64), "linearity")
