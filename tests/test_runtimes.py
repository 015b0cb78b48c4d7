"""ONNX Runtime and OpenVINO RoiAlign adapters (implementations/onnx_runtimes.py).

Hand-checked fixtures, the adapter's contract (forward only, argument checks,
session cache, thread count), and a replay of every recorded known divergence
under properties/corpus/known_divergences/. Random cases against the float64
reference are properties in properties/test_runtime_conformance.py;
docs/conformance.md is the resulting matrix.
"""
import pathlib

import pytest
import torch

from roialign_suite.implementations import registry
from roialign_suite.implementations import onnx_runtimes as runtimes
from roialign_suite.properties.replay import load_corpus

RUNTIME_NAMES = [record.name for record in runtimes.records()]
CORPUS = pathlib.Path(__file__).resolve().parent.parent / "properties" / "corpus" / "known_divergences"
BOTH_CONVENTIONS = pytest.mark.parametrize("aligned", [False, True], ids=["legacy", "aligned"])
BOTH_DTYPES = pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])


def runtime(name: str) -> registry.Implementation:
    """The registry entry, or a skip carrying the reason it cannot run here."""
    entry = registry.by_name()[name]
    if entry.unavailable:
        pytest.skip(f"{name}: {entry.unavailable}")
    return entry


@pytest.fixture(params=RUNTIME_NAMES)
def entry(request) -> registry.Implementation:
    return runtime(request.param)


# --- hand-checked fixture ---------------------------------------------------

# detectron2 tests/layers/test_roi_align.py: arange(25) on a 5x5 map, box
# (1, 1, 3, 3), output 4x4, adaptive sampling, scale 1. Every sample point and
# weight is a short dyadic fraction, exact in float32, so the result is exact.
DETECTRON2_LEGACY = [[7.5, 8, 8.5, 9], [10, 10.5, 11, 11.5], [12.5, 13, 13.5, 14], [15, 15.5, 16, 16.5]]
DETECTRON2_ALIGNED = [[4.5, 5, 5.5, 6], [7, 7.5, 8, 8.5], [9.5, 10, 10.5, 11], [12, 12.5, 13, 13.5]]


@BOTH_DTYPES
@pytest.mark.parametrize("aligned, expected", [(False, DETECTRON2_LEGACY), (True, DETECTRON2_ALIGNED)], ids=["legacy", "aligned"])
def test_detectron2_fixture(entry, dtype, aligned, expected):
    x = torch.arange(25, dtype=dtype).reshape(1, 1, 5, 5)
    boxes = torch.tensor([[0, 1.0, 1.0, 3.0, 3.0]], dtype=dtype)
    out = entry.roi_align(x, boxes, (4, 4), 1.0, 0, aligned)
    assert out.dtype == dtype
    torch.testing.assert_close(out[0, 0], torch.tensor(expected, dtype=dtype), rtol=0, atol=0)


# --- the adapter's contract -------------------------------------------------


def test_registry_marks_runtimes_forward_only():
    entries = registry.by_name()
    assert [entries[n].differentiable for n in RUNTIME_NAMES] == [False, False]
    assert entries["numba"].differentiable and entries["reference"].differentiable


def test_output_has_no_gradient(entry):
    x = torch.rand(1, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    out = entry.roi_align(x, torch.tensor([[0, 0.5, 0.5, 4.0, 5.0]], dtype=torch.float64), 2, 1.0, 2)
    assert out.grad_fn is None and not out.requires_grad


def test_missing_package_gives_install_hint():
    # Installed packages (torch) are left out of the reason; absent ones are named.
    reason = runtimes._missing("torch", "no_such_package_for_roialign_suite")
    assert reason.startswith("no_such_package_for_roialign_suite not installed") and "[runtimes]" in reason
    assert runtimes._missing("torch") is None


@pytest.mark.parametrize("sampling_ratio, expected", [(-1, 0), (0, 0), (3, 3)])
def test_adaptive_sampling_maps_to_onnx_zero(sampling_ratio, expected):
    assert runtimes.onnx_sampling_ratio(sampling_ratio) == expected


@BOTH_CONVENTIONS
def test_negative_sampling_ratio_is_adaptive(entry, aligned):
    x = torch.rand(1, 2, 9, 9, dtype=torch.float64)
    boxes = torch.tensor([[0, 0.5, 1.0, 8.0, 7.5]], dtype=torch.float64)
    torch.testing.assert_close(entry.roi_align(x, boxes, 3, 1.0, -1, aligned), entry.roi_align(x, boxes, 3, 1.0, 0, aligned), rtol=0, atol=0)


def test_list_of_boxes_equals_batch_index_form(entry):
    x = torch.rand(2, 3, 8, 8)
    as_list = [torch.tensor([[1.0, 1.0, 6.0, 5.0]]), torch.tensor([[0.5, 2.0, 7.0, 7.5], [2.0, 2.0, 3.0, 3.0]])]
    as_rows = torch.tensor([[0, 1.0, 1.0, 6.0, 5.0], [1, 0.5, 2.0, 7.0, 7.5], [1, 2.0, 2.0, 3.0, 3.0]])
    torch.testing.assert_close(entry.roi_align(x, as_list, 3, 1.0, 2), entry.roi_align(x, as_rows, 3, 1.0, 2), rtol=0, atol=0)


def test_batch_index_selects_the_image(entry):
    x = torch.rand(2, 3, 8, 8)
    box = [0.5, 2.0, 7.0, 7.5]
    on_second = entry.roi_align(x, torch.tensor([[1.0] + box]), 3, 1.0, 2)
    alone = entry.roi_align(x[1:].clone(), torch.tensor([[0.0] + box]), 3, 1.0, 2)
    torch.testing.assert_close(on_second, alone, rtol=0, atol=0)


def test_no_boxes_gives_empty_output(entry):
    out = entry.roi_align(torch.rand(1, 3, 5, 5), torch.zeros(0, 5), (2, 4), 1.0, 2)
    assert out.shape == (0, 3, 2, 4)


@pytest.mark.parametrize(
    "boxes, message",
    [
        (torch.tensor([[0, 1.0, 1.0, 3.0, 3.0], [0, float("nan"), 1.0, 3.0, 3.0]]), "row 1 has non-finite"),
        (torch.tensor([[0, 1.0, 1.0, 3.0, 3.0], [2, 1.0, 1.0, 3.0, 3.0]]), "row 1 has batch index"),
    ],
    ids=["nan", "batch-index"],
)
def test_bad_boxes_name_the_row(entry, boxes, message):
    with pytest.raises(ValueError, match=message):
        entry.roi_align(torch.rand(1, 1, 5, 5), boxes, 2, 1.0, 2)


def test_bad_dtype_is_rejected(entry):
    with pytest.raises(TypeError, match="input dtype"):
        entry.roi_align(torch.rand(1, 1, 5, 5).half(), torch.tensor([[0, 1.0, 1.0, 3.0, 3.0]]).half(), 2)


def test_one_session_per_configuration():
    runtime("onnxruntime")
    adapter = runtimes.onnxruntime_roi_align(threads=1)
    x, boxes = torch.rand(1, 1, 6, 6), torch.tensor([[0, 1.0, 1.0, 4.0, 4.0]])
    adapter(x, boxes, 2, 0.5, 2)
    adapter(torch.rand(2, 3, 7, 9), torch.tensor([[1, 0.0, 1.0, 5.0, 4.0]]), 2, 0.5, 2)  # other shapes, same model
    assert len(adapter.session) == 1
    adapter(x.double(), boxes.double(), 2, 0.5, 2)
    adapter(x, boxes, 2, 0.5, 2, aligned=True)
    assert len(adapter.session) == 3


def test_compiled_models_kept_are_bounded():
    """A run draws a new scale for nearly every example: only the latest models are kept."""
    from roialign_suite.implementations.calling import PerConfiguration

    built = []
    cache = PerConfiguration(lambda key: built.append(key) or f"model {key}", capacity=2)
    assert [cache(k) for k in (1, 2, 1, 3, 1, 2)] == ["model 1", "model 2", "model 1", "model 3", "model 1", "model 2"]
    assert built == [1, 2, 3, 2] and len(cache) == 2  # 2 was the least recently used when 3 came


@pytest.mark.parametrize(
    "name, make", list(zip(RUNTIME_NAMES, [runtimes.onnxruntime_roi_align, runtimes.openvino_roi_align])), ids=RUNTIME_NAMES
)
def test_thread_count_does_not_change_the_result(name, make):
    runtime(name)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 8, 20, 24, generator=gen)
    boxes = torch.cat([torch.randint(0, 2, (64, 1), generator=gen).float(), torch.rand(64, 4, generator=gen) * 80], dim=1)
    one, four = make(threads=1)(x, boxes, 7, 0.25, 2), make(threads=4)(x, boxes, 7, 0.25, 2)
    torch.testing.assert_close(one, four, rtol=0, atol=0)


# --- known divergences: replayed so that a change in a runtime shows up ------
# properties/test_corpus.py replays the whole corpus; this runs the runtimes'
# cases with the same check, so `pytest tests` alone still notices a change.


def _known_divergences():
    return [pytest.param(c, id=name) for name, c in load_corpus(CORPUS) if c["implementation"] in RUNTIME_NAMES]


def test_every_runtime_has_recorded_divergences():
    assert {c.values[0]["implementation"] for c in _known_divergences()} == set(RUNTIME_NAMES)


@pytest.mark.parametrize("entry_json", _known_divergences())
def test_known_divergence_still_diverges(entry_json):
    from roialign_suite.properties.replay import case_from_entry, check_still_diverges

    check_still_diverges(runtime(entry_json["implementation"]), case_from_entry(entry_json), entry_json)
