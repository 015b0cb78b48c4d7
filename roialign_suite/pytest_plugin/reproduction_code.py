"""A failure's minimal example as a stand-alone Python script: a call of the property's body on the
minimal example's arguments, or a replay of Hypothesis's ``@reproduce_failure`` blob."""
from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import Any, Dict, List, Optional

from roialign_suite import paths
from roialign_suite.pytest_plugin.expected_failures import item_property, item_test_id
from roialign_suite.pytest_plugin.hypothesis_output import REPRODUCE_FAILURE
from roialign_suite.pytest_plugin.outcome_recording import Draws


def _suite_module(name: str) -> str:
    """A module name as importable from an installed suite (``properties.x`` -> ``roialign_suite.properties.x``)."""
    top = name.partition(".")[0]
    return "roialign_suite." + name if top in paths.SUBPACKAGES else name


def _implementation_expression(value) -> Optional[str]:
    from roialign_suite.implementations import registry

    name = getattr(value, "name", None)
    if not isinstance(value, registry.Implementation) or not isinstance(name, str) or not registry.resolvable(name):
        return None
    return f"registry.resolve({name!r})"


_PLAIN = (str, int, float, bool, type(None), tuple, list, dict, bytes, complex)


def expression(value, imports: List[str]) -> Optional[str]:
    """Python source that evaluates to ``value`` (imports it needs appended), or None when its repr does not
    round-trip (checked by evaluating it)."""
    implementation = _implementation_expression(value)
    if implementation is not None:
        imports.append("from roialign_suite.implementations import registry")
        return implementation
    if isinstance(value, Draws):
        drawn = [expression(v, imports) for v in value.values]
        if any(source is None for source in drawn):
            return None
        imports.append("from roialign_suite.pytest_plugin.outcome_recording import Draws")
        return f"Draws([{', '.join(drawn)}])"
    text = repr(value)
    namespace: Dict[str, Any] = {"inf": math.inf, "nan": math.nan}
    needed = []
    cls = type(value)
    if not isinstance(value, _PLAIN):
        qualname, module = getattr(cls, "__qualname__", ""), getattr(cls, "__module__", "")
        if not qualname.isidentifier() or not module:
            return None
        module = _suite_module(module)
        try:
            namespace[qualname] = getattr(importlib.import_module(module), qualname)
        except (ImportError, AttributeError):
            return None
        needed.append(f"from {module} import {qualname}")
    try:
        again = eval(text, namespace)  # noqa: S307 (our own repr of a test argument)
        same = type(again) is cls and bool(again == value)
    except Exception:
        return None
    if not same:
        return None
    if "inf" in text or "nan" in text:
        needed.append("from math import inf, nan")
    imports.extend(needed)
    return text


def _script(header: List[str], imports: List[str], body: List[str]) -> str:
    unique = list(dict.fromkeys(imports))
    return "\n".join(header + unique + [""] + body) + "\n"


def keyword_lines(arguments: Dict[str, Any], imports: List[str]) -> Optional[List[str]]:
    """``    name=<source>,`` per argument (imports appended), or None when one cannot be written as code."""
    lines = []
    for name, value in arguments.items():
        source = expression(value, imports)
        if source is None:
            return None
        lines.append(f"    {name}={source},")
    return lines


def call_code(item, arguments: Dict[str, Any], hypothesis_test: bool, error: str) -> Optional[str]:
    """A script calling the property's body (``test.hypothesis.inner_test`` for a Hypothesis test) on
    ``arguments``; None when an argument cannot be written as code."""
    module = "roialign_suite.properties." + Path(str(item.path)).stem
    function = item_property(item)
    imports: List[str] = []
    lines = keyword_lines(arguments, imports)
    if lines is None:
        return None
    imports.append(f"from {module} import {function}")
    call = f"{function}.hypothesis.inner_test(" if hypothesis_test else f"{function}("
    header = [f"# Reproduces {item_test_id(item)}: the minimal example that fails.",
              f"# Expected to raise {error}"]
    return _script(header, imports, [call] + lines + [")"])


def reproduce_failure_code(item, decorator: str, funcargs: Dict[str, Any], profile: str,
                           error: str) -> Optional[str]:
    """A script replaying Hypothesis's ``@reproduce_failure`` blob on the property, with its pytest parameters."""
    found = REPRODUCE_FAILURE.search(decorator)
    if not found:
        return None
    module = "roialign_suite.properties." + Path(str(item.path)).stem
    function = item_property(item)
    imports = ["from hypothesis import reproduce_failure", "from roialign_suite.properties import profiles"]
    lines = keyword_lines(funcargs, imports)
    if lines is None:
        return None
    import hypothesis

    header = [f"# Reproduces {item_test_id(item)}: replays Hypothesis's minimal example",
              f"# (needs hypothesis=={hypothesis.__version__} and this version of roialign-suite).",
              f"# Expected to raise {error}"]
    body = [f"profiles.load({profile!r})  # before the import: the property takes the profile's settings",
            f"from {module} import {function}", "",
            f"reproduce_failure({found.group(1)}, {found.group(2)})({function})("] + lines + [")"]
    return _script(header, imports, body)


def _pretty_implementation(value, printer, cycle) -> None:
    printer.text(_implementation_expression(value) or repr(value))


def print_implementations_as_code() -> None:
    """Have Hypothesis print an :class:`Implementation` argument in its failing examples as the code that
    gets it (``registry.resolve('onnxruntime')``, ``registry.resolve('target:mypkg.ops:roi_align')``) instead of
    every field of the record, so the example reads, and pastes, as a call."""
    try:
        from hypothesis.vendor import pretty
    except ImportError:  # pragma: no cover (Hypothesis moved its printer: keep its default)
        return
    for_type_by_name = getattr(pretty, "for_type_by_name", None)
    if for_type_by_name is not None:
        for_type_by_name("roialign_suite.implementations.records", "Implementation", _pretty_implementation)
