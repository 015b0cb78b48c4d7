"""The registry: adapter modules register their records; the records answer the questions names used to."""
from __future__ import annotations

import pkgutil
import types

import pytest

from roialign_suite.implementations import naming, registry
from roialign_suite.implementations.records import Implementation

# Modules of implementations/ that are not adapters (they register no kernel).
INFRASTRUCTURE = {"__init__", "records", "registry", "calling", "naming"}


def _record(name: str) -> Implementation:
    return Implementation(name, lambda *args: None)


def test_a_module_registers_its_record_or_records():
    one = types.SimpleNamespace(__name__="one", record=lambda: _record("a"))
    several = types.SimpleNamespace(__name__="several", records=lambda: [_record("b"), _record("c")])
    assert [i.name for i in registry.module_records(one)] == ["a"]
    assert [i.name for i in registry.module_records(several)] == ["b", "c"]


def test_a_module_without_records_is_refused_by_name():
    with pytest.raises(TypeError, match="nothing_here has neither record"):
        registry.module_records(types.SimpleNamespace(__name__="nothing_here"))


def test_every_adapter_module_is_registered_once():
    folder = registry.__file__.rsplit("/", 1)[0]
    adapters = {m.name for m in pkgutil.iter_modules([folder])} - INFRASTRUCTURE
    assert sorted(registry.BUILTIN_MODULES) == sorted(adapters)


def test_builtin_names_are_unique_and_none_looks_like_a_target():
    names = [i.name for i in registry.builtin()]
    assert len(names) == len(set(names))
    assert not any(naming.is_target(n) for n in names)


def test_the_records_name_ours_the_baseline_and_the_definition():
    assert (registry.the_one("ours").name, registry.the_one("baseline").name, registry.the_one("definition").name) == \
        ("numba", "torchvision-cpu", "reference")
    assert registry.names_where("multiscale_roi_align") == ("numba", "torchvision-cpu")


def test_the_one_refuses_when_not_exactly_one(monkeypatch):
    monkeypatch.setattr(registry, "builtin", lambda: [_record("a"), _record("b")])
    with pytest.raises(LookupError, match=r"one built-in with ours=True, found \[\]"):
        registry.the_one("ours")


@pytest.mark.parametrize("spec, device", [("mypkg.ops:roi_align", "cpu"), ("mypkg.ops:roi_align", "cuda:1")])
def test_target_names_round_trip(spec, device):
    assert naming.parse_target(naming.target_name(spec, device)) == (spec, device)


def test_a_builtin_name_is_not_parsed_as_a_target():
    with pytest.raises(ValueError, match="does not name a target"):
        naming.parse_target("numba")


def test_a_box_within_float32_rounding_of_zero_height_may_have_an_empty_grid():
    """OpenVINO gave NaN (its empty-grid divergence) on a box 7e-7 feature pixels tall at y = 9.2,
    whose float64 grid is 1 (a fuzz campaign): float32 coordinates may round its two ends to one."""
    import torch

    from roialign_suite.implementations.records import adaptive_grid_may_round_empty
    from roialign_suite.properties.strategies import RoIAlignCase

    tiny = RoIAlignCase(shape=(1, 1, 10, 1), boxes=((0, 0.0, 26.261260986328125, 0.16942748427391052, 26.261262893676758),),
                        output_size=(1, 1), spatial_scale=0.3688893779260501, sampling_ratio=0, aligned=True)
    (geometry,) = tiny.geometries()
    assert geometry.grid_h == 1 and adaptive_grid_may_round_empty(tiny, geometry, torch.float32)
    assert not adaptive_grid_may_round_empty(tiny, geometry, torch.float64)
    assert not adaptive_grid_may_round_empty(tiny.replace(sampling_ratio=2), geometry, torch.float32)
    ordinary = tiny.replace(boxes=((0, 0.0, 26.0, 0.2, 27.0),))
    assert not adaptive_grid_may_round_empty(ordinary, ordinary.geometries()[0], torch.float32)
    assert registry.by_name()["openvino"].divergent_boxes(tiny) == [0]
