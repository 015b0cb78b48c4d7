"""Which implementations the properties run on, and the Hypothesis profile.

Options (``pytest properties --help``, section "roialign"):

* ``--roi-align=MODULE:ATTR`` (repeatable): verify that callable (signature and
  semantics of ``torchvision.ops.roi_align``, differentiable w.r.t. input)
  instead of the built-ins. It is treated as third-party: it gets the float32
  coordinate allowance near discontinuities, and the properties only our
  kernel promises (clear errors on bad input, bitwise-deterministic backward)
  do not apply to it. Add ``--with-builtins`` to check the built-ins too.
* ``--device=cuda``: run the ``--roi-align`` targets on that device (CPU
  tensors are moved there and back); skipped with the reason when absent.
* ``--level-mapper=MODULE:ATTR``: the level mapper under test, read by the
  level-assignment properties (``request.config.getoption("--level-mapper")``).

* ``--implementation=NAME`` (repeatable): the registry built-ins to verify
  (default: see ``DEFAULT_BUILTINS``).

By default the implementations under test are the built-ins that claim to
follow the definition: ``numba`` (ours), ``torchvision-cpu`` and
``torchvision-cuda`` (skipped with its reason when no GPU is visible). The
float64 ``reference`` is the oracle, never a subject. The ONNX runtimes
(``onnxruntime``, ``openvino``) follow the ONNX operator instead and diverge
in documented ways (``properties/corpus/known_divergences/``, replayed by
``test_corpus.py``); ``--implementation onnxruntime`` runs every property on
one to show where. Forward-only entries (``differentiable=False``) skip the
gradient properties with that reason.

Fixtures: ``implementation`` (each under test), ``our_implementation`` (each
with ``.ours``; none when only targets are checked).
"""
from __future__ import annotations

from typing import List

import pytest
from hypothesis import settings

from roialign_suite.properties import profiles
from roialign_suite.properties import implementations as registry

profiles.load()

DEFAULT_BUILTINS = ("numba", "torchvision-cpu", "torchvision-cuda")


def pytest_addoption(parser):
    group = parser.getgroup("roialign", "RoIAlign property suite")
    group.addoption(
        "--roi-align", action="append", default=[], metavar="MODULE:ATTR",
        help="verify this roi_align (torchvision.ops.roi_align's signature) instead of the built-ins; "
        "repeatable; treated as third-party (no bad-input/determinism properties)",
    )
    group.addoption(
        "--implementation", action="append", default=[], metavar="NAME",
        help=f"registry built-in to verify; repeatable (default: {', '.join(DEFAULT_BUILTINS)})",
    )
    group.addoption(
        "--with-builtins", action="store_true", default=False,
        help="with --roi-align, also verify the built-in implementations (ours, torchvision)",
    )
    group.addoption(
        "--device", default="cpu", metavar="DEVICE",
        help="device the --roi-align targets run on (cpu or cuda); default cpu",
    )
    group.addoption(
        "--level-mapper", default=None, metavar="MODULE:ATTR",
        help="LevelMapper class under test in the level-assignment properties",
    )


def implementations_under_test(config) -> List[registry.Implementation]:
    """Targets named by --roi-align, else (or also, with --with-builtins) the chosen built-ins."""
    targets = [registry.target(spec, config.getoption("--device")) for spec in config.getoption("--roi-align")]
    known = registry.by_name()
    names = config.getoption("--implementation") or DEFAULT_BUILTINS
    unknown = [n for n in names if n not in known or n == "reference"]
    if unknown:
        raise pytest.UsageError(f"--implementation {unknown}: choose from {sorted(set(known) - {'reference'})}")
    builtins = [known[n] for n in names]
    if not targets:
        return builtins
    return targets + (builtins if config.getoption("--with-builtins") else [])


def _params(implementations):
    return [
        pytest.param(i, id=i.name, marks=[pytest.mark.skip(reason=f"{i.name}: {i.unavailable}")] if i.unavailable else [])
        for i in implementations
    ]


def pytest_generate_tests(metafunc):
    under_test = implementations_under_test(metafunc.config)
    if "implementation" in metafunc.fixturenames:
        metafunc.parametrize("implementation", _params(under_test))
    if "our_implementation" in metafunc.fixturenames:
        ours = [i for i in under_test if i.ours]
        params = _params(ours) or [pytest.param(None, id="no-ours", marks=pytest.mark.skip(
            reason="a property only our kernel promises; the --roi-align targets are third-party "
            "(add --with-builtins to check ours too)"))]
        metafunc.parametrize("our_implementation", params)


def pytest_report_header(config):
    names = ", ".join(
        i.name + (f" (skipped: {i.unavailable})" if i.unavailable else "") for i in implementations_under_test(config)
    )
    return [f"roialign: under test: {names}; hypothesis profile: {settings.get_current_profile_name()}"]
