"""The crossover benchmark's arithmetic (benchmarks/crossover.py): fit, predicted and measured crossover.

Synthetic times from known constants, so the fit must give them back; no timing here.
"""
from __future__ import annotations

import pytest

from roialign_suite.benchmarks import crossover

MAP_BYTES = 100_000_000
TAPS_PER_ROI = 50_000
TRUE = {"GATHER_NS": 2.0, "NHWC_NS": 0.5, "CONVERT_NS": 0.1}


def _rows(counts=(16, 64, 256, 1024, 4096)):
    rows = []
    for count in counts:
        taps = count * TAPS_PER_ROI
        gather = TRUE["GATHER_NS"] * taps * 1e-9
        convert = (TRUE["CONVERT_NS"] * MAP_BYTES + TRUE["NHWC_NS"] * taps) * 1e-9
        rows.append({"rois": count, "taps": float(taps), "map_bytes": MAP_BYTES, "gather": gather,
                     "convert": convert, "auto": min(gather, convert)})
    return rows


def test_fit_recovers_the_constants_of_exact_times():
    assert crossover.fit(_rows()) == pytest.approx(TRUE, rel=1e-6)


def test_predicted_crossover_is_where_the_lines_meet():
    # 0.1 * 1e8 = 1e7 ns saved by gathering; 1.5 ns per tap * 5e4 taps per RoI = 7.5e4 ns lost per RoI
    assert crossover.predicted_crossover(TRUE, _rows()) == pytest.approx(1e7 / 7.5e4)


def test_measured_crossover_is_the_first_count_from_which_converting_wins_for_good():
    rows = _rows()
    assert crossover.measured_crossover(rows) == 256  # 133 RoIs predicted: 64 gathers, 256 converts
    rows[3]["convert"] = rows[3]["gather"] * 2  # a noisy point at 1024 pushes it past
    assert crossover.measured_crossover(rows) == 4096
