"""The property suite's parametrisation: which implementations are under test (the plugin registers it in a suite run).

It parametrises the properties' ``implementation`` argument with every
implementation under test and ``our_implementation`` with those that are
ours, and names them in the run's header.

Under test: the ``--roialign-target`` callables, else (or also, with
``--roialign-with-builtins``) the built-ins named by
``--roialign-implementation``, by default those whose record says
``verified_by_default`` (ours, torchvision CPU and CUDA; the CUDA one skips
with its reason when no GPU is visible). The float64 ``reference`` is the
oracle, never a subject. The ONNX runtimes follow the ONNX operator and
diverge in documented ways (their records' ``divergences``);
``--roialign-implementation onnxruntime`` runs every property on one to show
where. So does ``torchvision-python`` (torchvision's pure-PyTorch
``_roi_align``, its deterministic-GPU path): not verified by default, since it
diverges by design (``docs/operator_contract.md``). Forward-only entries (``differentiable=False``) skip the gradient
properties with that reason. Targets are third-party: the properties only our
kernel promises (clear errors on bad input, a bitwise-deterministic backward)
are not asked of them.
"""
from __future__ import annotations

from typing import List

import pytest
from hypothesis import settings

from roialign_suite.pytest_plugin.activation import ACTIVE, PROFILE, is_suite_module, names
from roialign_suite.pytest_plugin.expected_failures import item_test_id
from roialign_suite import options
from roialign_suite.implementations import registry
from roialign_suite.properties import isolation
from roialign_suite.properties.findings import findings_dir
from roialign_suite.impl import threads


def pytest_configure(config):
    isolation.configure(config.getoption("roialign_isolate"), config.getoption("roialign_call_timeout"),
                        findings_dir(config))


def pytest_unconfigure(config):
    isolation.close_workers()


def implementations_under_test(config) -> List[registry.Implementation]:
    """Targets named by --roialign-target, else (or also, with --roialign-with-builtins) the chosen built-ins."""
    device = config.getoption("roialign_device")
    targets = [registry.target(spec, device) for spec in config.getoption("roialign_target")]
    known = registry.by_name()
    wanted = names(config.getoption("roialign_implementation"))
    choices = options.known_implementations()
    unknown = [n for n in wanted if n not in choices]
    if unknown:
        raise pytest.UsageError(f"--roialign-implementation {unknown}: choose from {choices}")
    builtins = [known[n] for n in wanted] if wanted else [i for i in known.values() if i.verified_by_default]
    chosen = targets + (builtins if config.getoption("roialign_with_builtins") else []) if targets else builtins
    return [isolation.isolated(i) if isolation.isolates(i) else i for i in chosen]


def params(implementations) -> list:
    """One ``pytest.param`` per implementation, id its name, skipped with its reason where it cannot run."""
    return [
        pytest.param(i, id=i.name, marks=[pytest.mark.skip(reason=f"{i.name}: {i.unavailable}")] if i.unavailable else [])
        for i in implementations
    ]


def pytest_generate_tests(metafunc):
    if not is_suite_module(metafunc.module, "properties"):
        return
    under_test = implementations_under_test(metafunc.config)
    if "implementation" in metafunc.fixturenames:
        metafunc.parametrize("implementation", params(under_test))
    if "our_implementation" in metafunc.fixturenames:
        ours = [i for i in under_test if i.ours]
        metafunc.parametrize("our_implementation", params(ours) or [pytest.param(None, id="no-ours", marks=pytest.mark.skip(
            reason="a property only our kernel promises; the --roialign-target kernels are third-party "
            "(add --roialign-with-builtins to check ours too)"))])


def pytest_report_header(config):
    under_test = ", ".join(
        i.name + (f" (skipped: {i.unavailable})" if i.unavailable else "") for i in implementations_under_test(config)
    )
    return [f"roialign: suite run ({config.stash[ACTIVE]}); under test: {under_test}; hypothesis profile: "
            f"{settings.get_current_profile_name()} ({config.stash[PROFILE]}); "
            f"kernels' threading layer: {threads.describe()}"]


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_runtest_call(item):
    """Around a suite test's call, inside Hypothesis's own wrapper: the digest fixed
    (:func:`_same_digest_however_invoked`), and a kernel in a worker checked without the
    explain phase (:func:`_without_explain_phase`)."""
    _same_digest_however_invoked(item)
    test = getattr(item, "obj", None)
    current = getattr(test, "_hypothesis_internal_use_settings", None)
    implementation = getattr(getattr(item, "callspec", None), "params", {}).get("implementation")
    if current is not None and implementation is not None and isolation.is_isolated(implementation):
        test._hypothesis_internal_use_settings = _without_explain_phase(current)
    try:
        yield
    finally:
        if current is not None:
            test._hypothesis_internal_use_settings = current


def _without_explain_phase(current: settings) -> settings:
    """``current`` without Hypothesis's explain phase, for a kernel in a worker.

    That phase re-runs the minimal failing example a hundred times and more with parts
    varied, to comment on which parts do not matter. When the failure is a hang, each
    re-run waits the full call timeout (measured on a planted hanging kernel at a 0.5 s
    timeout: 88 s of the test's 100 s; at 2 s, Hypothesis's own 300 s cap). The minimal
    example and its reproduction are unchanged. Hypothesis reads a test's settings when the
    test is called: :func:`pytest_runtest_call` swaps them for the call and puts them back.
    """
    return settings(current, phases=[phase for phase in current.phases if phase.name != "explain"])


def _same_digest_however_invoked(item) -> None:
    """The same derandomized examples however pytest is invoked.

    Hypothesis's pytest plugin adds the node id of a test with a ``parametrize`` marker (the
    box kinds, the dtypes, ...) to the digest that seeds derandomized runs (the ``ci``
    profile) and keys the example database; the node id depends on the rootdir
    (``properties/test_x.py::t[p]`` from a checkout, ``test_x.py::t[p]`` under ``roialign-suite
    check`` run elsewhere), so the same test would draw different examples and an
    expected-failures list made one way would not hold the other. For the suite's
    tests this replaces it, after Hypothesis's hook set it and before the test runs, by
    ``properties/FILE.py::NAME[PARAMS]`` (``benchmarks/...``): a checkout's node id, the
    same in a checkout and in an installed suite, from any directory.
    """
    inner = getattr(getattr(getattr(item, "obj", None), "hypothesis", None), "inner_test", None)
    if inner is None or getattr(inner, "_hypothesis_internal_add_digest", None) != item.nodeid.encode():
        return
    module = getattr(item, "module", None)
    for package in ("properties", "benchmarks"):
        if module is not None and is_suite_module(module, package):
            inner._hypothesis_internal_add_digest = f"{package}/{item_test_id(item)}".encode()
            return
