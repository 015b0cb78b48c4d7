"""Hand-computed FPN level assignments for each dialect, torchvision agreement, degenerate and bad boxes.

Levels in these tables are absolute (``k``, not ``k - k_min``); the mappers
return 0-based indices, so the checks subtract ``K_MIN``.
"""
import math

import pytest
import torch
import torchvision

from roialign_suite import impl
from roialign_suite.impl.levels import DIALECTS, LevelMapper, levels_for_boxes
from roialign_suite.reference import levels as ref_levels

K_MIN, K_MAX = 2, 5  # P2-P5, as the FPN box head
DTYPES = pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
# Each dialect's legacy +1 on box sides (written here, not taken from impl).
PLUS_ONE = {"maskrcnn_benchmark": 1.0, "torchvision": 0.0, "detectron2": 0.0}


def _square(side, dialect):
    """A box at the origin whose side, as ``dialect`` measures it, is ``side``."""
    far = side - PLUS_ONE[dialect]
    return [0.0, 0.0, far, far]


def _levels(boxes, dtype=torch.float64, **kwargs):
    return (levels_for_boxes(torch.tensor(boxes, dtype=dtype), K_MIN, K_MAX, **kwargs) + K_MIN).tolist()


# (dialect side, absolute level) with s0 = 224, k0 = 4: the level changes at
# sides 112, 224, 448 and an exact threshold side lands on the upper level.
THRESHOLD_SIDES = [(111.0, 2), (112.0, 3), (223.0, 3), (224.0, 4), (447.0, 4), (448.0, 5)]


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
@DTYPES
def test_sides_at_and_around_thresholds(dialect, dtype):
    boxes = [_square(side, dialect) for side, _ in THRESHOLD_SIDES]
    expected = [level for _, level in THRESHOLD_SIDES]
    assert _levels(boxes, dtype, dialect=dialect) == expected
    assert [ref_levels.level_for_box(b, K_MIN, K_MAX, dialect=dialect) + K_MIN for b in boxes] == expected


def test_legacy_plus_one_moves_box_111_up_one_level():
    # (0, 0, 111, 111): 112 px wide with maskrcnn_benchmark's +1 -> level 3; 111 px elsewhere -> level 2.
    box = [[0.0, 0.0, 111.0, 111.0]]
    assert _levels(box, dialect="maskrcnn_benchmark") == [3]
    assert _levels(box, dialect="torchvision") == [2]
    assert _levels(box, dialect="detectron2") == [2]


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_224_box_lands_on_level_4(dialect):
    assert _levels([_square(224.0, dialect)], dialect=dialect) == [4]


# Just below the 224 threshold the eps decides (float64, s0 = 224, k0 = 4):
# side 223.9999: log2(side / 224) = -6.44e-7; + 1e-6 after the log -> 4 (torchvision);
#   log2(side / 224 + 1e-8) = -6.30e-7 -> 3 (detectron2).
# side 223.9998: log2(side / 224) = -1.29e-6; + 1e-6 after the log -> 3 (torchvision);
#   log2(side / 224 + 1e-6) = +1.55e-7 -> 4 (maskrcnn_benchmark, eps inside the log).
EPS_CASES = [
    (223.9999, "torchvision", 4),
    (223.9999, "detectron2", 3),
    (223.9998, "torchvision", 3),
    (223.9998, "maskrcnn_benchmark", 4),
]


@pytest.mark.parametrize("side, dialect, level", EPS_CASES)
def test_eps_placement_decides_just_below_threshold(side, dialect, level):
    box = [_square(side, dialect)]
    assert _levels(box, dialect=dialect) == [level]
    assert ref_levels.level_for_box(box[0], K_MIN, K_MAX, dialect=dialect) + K_MIN == level


def test_clamped_to_range():
    boxes = [[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1e5, 1e5]]
    for dialect in DIALECTS:
        assert _levels(boxes, dialect=dialect) == [K_MIN, K_MAX]


def _random_boxes(count, dtype, seed=0):
    """Valid boxes (``x2 >= x1``, ``y2 >= y1``): sides log-uniform in [2**-3, 2**12], zero-size
    ones, and every 5th square within 2**(+-4e-6) of a threshold side 224 * 2**j (where eps decides)."""
    gen = torch.Generator().manual_seed(seed)
    corners = torch.rand(count, 2, generator=gen, dtype=torch.float64) * 1000
    sides = torch.exp2(torch.rand(count, 2, generator=gen, dtype=torch.float64) * 15 - 3)
    near = torch.randint(-3, 3, (count // 5,), generator=gen) + (torch.rand(count // 5, generator=gen, dtype=torch.float64) - 0.5) * 8e-6
    sides[::5] = (224 * torch.exp2(near))[:, None]
    sides[::97] = 0.0
    return torch.cat([corners, corners + sides], dim=1).to(dtype)


@DTYPES
def test_torchvision_dialect_is_torchvision_levelmapper(dtype):
    # Same formula, same dtype, same order of operations: equal everywhere, thresholds included.
    boxes = _random_boxes(100_000, dtype)
    halves = [boxes[:40_000], boxes[40_000:]]
    theirs = torchvision.ops.poolers.LevelMapper(K_MIN, K_MAX)(halves)
    ours = LevelMapper(K_MIN, K_MAX)(halves)
    assert ours.dtype == torch.int64 and ours.shape == (100_000,)
    assert torch.equal(ours, theirs)
    assert torch.equal(ref_levels.torchvision_levels_for_boxes(boxes, K_MIN, K_MAX), theirs)


@DTYPES
def test_torchvision_levelmapper_at_exact_thresholds(dtype):
    sides = torch.tensor([56.0, 112.0, 224.0, 448.0, 896.0], dtype=dtype)
    boxes = torch.stack([torch.zeros_like(sides), torch.zeros_like(sides), sides, sides], dim=1)
    expected = torchvision.ops.poolers.LevelMapper(K_MIN, K_MAX)([boxes])
    assert LevelMapper(K_MIN, K_MAX)([boxes]).tolist() == expected.tolist() == [0, 1, 2, 3, 3]


def test_constructor_is_torchvisions_and_eps_follows_dialect():
    positional = LevelMapper(1, 6, 100, 3, 0.5)
    assert (positional.k_min, positional.k_max, positional.s0, positional.lvl0, positional.eps) == (1, 6, 100, 3, 0.5)
    assert LevelMapper(2, 5).eps == 1e-6 and LevelMapper(2, 5).dialect.name == "torchvision"
    assert LevelMapper(2, 5, dialect="detectron2").eps == 1e-8
    assert LevelMapper(2, 5, eps=1e-3, dialect="detectron2").eps == 1e-3


def test_explicit_eps_is_used():
    # side 200: log2(200 / 224) = -0.1635; eps 0.2 after the log lifts it to level 4.
    box = [[0.0, 0.0, 200.0, 200.0]]
    assert _levels(box) == [3]
    assert _levels(box, eps=0.2) == [4]
    assert (LevelMapper(K_MIN, K_MAX, eps=0.2)([torch.tensor(box, dtype=torch.float64)]) + K_MIN).tolist() == [4]


def test_canonical_scale_and_level():
    # s0 = 32, k0 = 3: a 32 px box on level 3, 64 px on 4, 16 px on 2.
    boxes = [[0.0, 0.0, 32.0, 32.0], [0.0, 0.0, 64.0, 64.0], [0.0, 0.0, 16.0, 16.0]]
    assert _levels(boxes, canonical_scale=32, canonical_level=3) == [3, 4, 2]


def test_concatenates_images_in_order():
    first = torch.tensor([[0.0, 0.0, 448.0, 448.0]])
    second = torch.tensor([[0.0, 0.0, 112.0, 112.0], [5.0, 5.0, 229.0, 229.0]])
    empty = torch.zeros(0, 4)
    assert LevelMapper(K_MIN, K_MAX)([first, empty, second]).tolist() == [3, 1, 2]
    assert LevelMapper(K_MIN, K_MAX)([empty]).shape == (0,)


# --- degenerate boxes: documented levels, never NaN garbage -------------------

@pytest.mark.parametrize("dialect", sorted(DIALECTS))
@DTYPES
def test_degenerate_areas_get_lowest_level(dialect, dtype):
    off = PLUS_ONE[dialect]
    boxes = [
        [5.0, 5.0, 5.0 - off, 300.0],  # zero width as the dialect measures it
        [50.0, 0.0, 10.0, 300.0],  # inverted in x only: negative area
        [0.0, 300.0, 300.0, 0.0],  # inverted in y only
    ]
    assert _levels(boxes, dtype, dialect=dialect) == [K_MIN] * 3
    assert [ref_levels.level_for_box(b, K_MIN, K_MAX, dialect=dialect) for b in boxes] == [0] * 3


def test_negative_area_diverges_from_torchvision_garbage():
    # torchvision takes sqrt of the negative area and casts NaN to int64: a huge index that
    # matches no level, so MultiScaleRoIAlign leaves the row zero. We define the lowest level.
    boxes = torch.tensor([[0.0, 0.0, -4.0, 10.0], [0.0, 0.0, 30.0, 30.0]])
    theirs = torchvision.ops.poolers.LevelMapper(K_MIN, K_MAX)([boxes])
    assert int(theirs[0]) > K_MAX - K_MIN and int(theirs[1]) == 0
    assert LevelMapper(K_MIN, K_MAX)([boxes]).tolist() == [0, 0]


def test_box_inverted_in_both_axes_levelled_as_its_mirror():
    assert _levels([[448.0, 448.0, 0.0, 0.0]]) == _levels([[0.0, 0.0, 448.0, 448.0]]) == [5]


def test_float32_overflowing_area():
    # Finite float32 corners whose side overflows: inf * side -> top level, inf * 0 -> lowest.
    big = 3e38
    boxes = torch.tensor([[-big, -big, big, big], [-big, 0.0, big, 0.0]], dtype=torch.float32)
    assert (levels_for_boxes(boxes, K_MIN, K_MAX) + K_MIN).tolist() == [K_MAX, K_MIN]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_coordinate_names_the_row(bad):
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, bad, 10.0, 10.0]])
    with pytest.raises(ValueError, match=r"boxes row 1 has non-finite"):
        levels_for_boxes(boxes, K_MIN, K_MAX)
    with pytest.raises(ValueError, match=r"boxlists\[1\] row 1 has non-finite"):
        LevelMapper(K_MIN, K_MAX)([boxes[:1], boxes])


@pytest.mark.parametrize(
    "boxlists, error, message",
    [
        (torch.zeros(3, 4), TypeError, "list of Tensor"),
        ([], ValueError, "at least one"),
        ([torch.zeros(3, 5)], ValueError, r"boxlists\[0\] must have shape \[K, 4\]"),
        ([torch.zeros(3, 4, dtype=torch.int64)], TypeError, "float32 or float64"),
        ([torch.zeros(1, 4), torch.zeros(1, 4, dtype=torch.float64)], TypeError, r"boxlists\[1\] dtype"),
        ([[0.0, 0.0, 1.0, 1.0]], TypeError, r"boxlists\[0\] must be a torch.Tensor"),
    ],
)
def test_bad_boxlists(boxlists, error, message):
    with pytest.raises(error, match=message):
        LevelMapper(K_MIN, K_MAX)(boxlists)


@pytest.mark.parametrize(
    "args, kwargs, error, message",
    [
        ((5, 2), {}, ValueError, "k_min must be <= k_max"),
        ((2.0, 5), {}, TypeError, "k_min must be an int"),
        ((2, 5), {"dialect": "mmdet"}, ValueError, "dialect must be one of"),
        ((2, 5), {"canonical_scale": 0}, ValueError, "canonical_scale"),
        ((2, 5), {"canonical_level": 4.5}, TypeError, "canonical_level"),
        ((2, 5), {"eps": -1e-6}, ValueError, "eps"),
        ((2, 5), {"eps": math.nan}, ValueError, "eps"),
    ],
)
def test_bad_parameters(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        LevelMapper(*args, **kwargs)
    with pytest.raises(error, match=message):
        levels_for_boxes(torch.zeros(1, 4), *args, **kwargs)


def test_exported_from_impl():
    assert impl.LevelMapper is LevelMapper and impl.levels_for_boxes is levels_for_boxes
