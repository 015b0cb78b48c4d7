"""Bad input gets a clear exception naming the argument (and the offending row), never a crash.

Our implementation promises this (``Implementation.ours``; the messages are
those of ``impl/inputs.py``), and so does the reference, with its own front
end (``reference/inputs.py``): the oracle never computes a value for input
outside the contract.
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, note

from roialign_suite import reference
from roialign_suite.impl.inputs import MAX_GRID
from roialign_suite.properties.strategies import bad_inputs


@given(bad=bad_inputs())
def test_bad_input_raises_a_clear_error(our_implementation, bad):
    note(f"{bad.description}: boxes={bad.boxes!r}")
    with pytest.raises(bad.error) as raised:
        our_implementation.roi_align(
            bad.features, bad.boxes, bad.output_size, bad.spatial_scale, bad.sampling_ratio, bad.aligned
        )
    for word in bad.message:
        assert word in str(raised.value), f"{bad.description}: {word!r} not in message {str(raised.value)!r}"


@given(bad=bad_inputs())
def test_the_reference_rejects_bad_input_clearly(bad):
    note(f"{bad.description}: boxes={bad.boxes!r}")
    with pytest.raises(bad.error) as raised:
        reference.roi_align(bad.features, bad.boxes, bad.output_size, bad.spatial_scale, bad.sampling_ratio, bad.aligned)
    for word in bad.message:
        assert word in str(raised.value), f"{bad.description}: {word!r} not in message {str(raised.value)!r}"


@pytest.mark.parametrize("aligned", [False, True], ids=["legacy", "aligned"])
def test_adaptive_grid_of_a_huge_box_is_rejected(our_implementation, aligned):
    """A box needing more than MAX_GRID adaptive samples per axis is refused, naming its row."""
    features = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    side = 4.0 * MAX_GRID
    boxes = torch.tensor([[0, 0.0, 0.0, 2.0, 2.0], [0, 0.0, 0.0, side, 1.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match="row 1"):
        our_implementation.roi_align(features, boxes, (2, 2), 1.0, 0, aligned)
    # The same box with a fixed grid is fine.
    assert our_implementation.roi_align(features, boxes, (2, 2), 1.0, 2, aligned).shape == (2, 1, 2, 2)


def test_boxes_of_the_wrong_kind_are_a_type_error(our_implementation):
    features = torch.zeros(1, 1, 4, 4)
    with pytest.raises(TypeError, match="boxes"):
        our_implementation.roi_align(features, [[0, 0.0, 0.0, 1.0, 1.0]], 2)
    with pytest.raises(TypeError, match=r"boxes\[0\]"):
        our_implementation.roi_align(features, [[0.0, 0.0, 1.0, 1.0]], 2)
