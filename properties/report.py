"""The suite's machine-readable report (``--roialign-report=FILE.json``) and Markdown summary (``--roialign-summary=FILE.md``).

A sub-plugin (``roialign_suite.plugin`` registers it when either option is
given). It records one entry per test item of the property suite (modules of
``roialign_suite.properties``; a user's own tests in the same run are left
out): outcome, duration, the worst ``error / bound`` any example of it reached
(every comparison reports ``max(error / bound)`` through
:func:`roialign_suite.properties.discrepancy.target_discrepancy`; this plugin
observes those values with :func:`~roialign_suite.properties.discrepancy.observing`),
and for a failure the minimal example as code. Both files are written at the
end of the session, relative to the directory pytest was started in. Run it
without pytest-xdist (``-p no:xdist``): the records are gathered in-process.

JSON schema (``"schema": "roialign-suite-report/1"``)
------------------------------------------------------
The top-level object::

    schema            "roialign-suite-report/1"
    suite             {"name": "roialign-suite", "version": str}
    created           str, ISO 8601 UTC time the report was written ("2025-01-31T12:00:00Z")
    command           [str], pytest's arguments
    environment       {"python": str, "platform": str,
                       "packages": {name: version or null}}  -- torch, torchvision, numba, numpy,
                                                              hypothesis, pytest, onnxruntime, openvino
    implementations   [{"name": str, "device": str, "ours": bool, "differentiable": bool,
                        "unavailable": str or null}]          -- the implementations under test
    hypothesis        {"profile": str, "max_examples": int, "derandomize": bool,
                       "seed": int or str or null}           -- --roialign-seed / --hypothesis-seed
    exit_status       int, pytest's exit status
    totals            {"passed": int, "failed": int, "skipped": int, "xfailed": int, "xpassed": int}
    expected_failures null without --roialign-xfails; else
                      {"files": [str], "strict": bool,
                       "entries": [{"file": str, "line": int, "pattern": str,
                                    "kind": "test id" or "property", "reason": str,
                                    "matched": [node id]}],
                       "passed": [{"nodeid": str, "file": str, "line": int, "pattern": str,
                                   "entry_failed_as_expected": int}],  -- listed tests that passed;
                                   the count: tests of the same entry that failed as expected
                       "unmatched": [{"file": str, "line": int, "pattern": str, "reason": str}]}
    tests             [record], in the order the tests ran

A record::

    nodeid            str, pytest's node id
    test_id           str, "FILE.py::NAME[PARAMS]" (the same in a checkout and an installed suite)
    property          str, the test function's name
    implementation    str or null: the name of the implementation the test checks (its
                      implementation / our_implementation parameter's .name, or its
                      implementation_name in corpus replay)
    parameters        {name: value}: the other pytest parameters (JSON values; other objects as
                      their name or repr)
    outcome           "passed" | "failed" | "skipped" | "xfailed" | "xpassed"
                      (a setup or teardown error is "failed"; a strict XPASS is "xpassed")
    reason            str or null: the skip reason, or the xfail reason for xfailed / xpassed
    phase             "setup" | "call" | "teardown" or null: where it failed (null unless failed)
    duration          float, seconds, setup + call + teardown
    worst_error_over_bound  float or null: the largest max(error / bound) of any comparison in
                      any example of this test (above 1 is out of bound; 1.7976931348623157e308
                      stands for unbounded: a non-finite output or an error where the bound is
                      0); null when it made no bounded comparison
    worst_label       str or null: the comparison that reached it ("onnxruntime forward",
                      "flip along axis 3", ...)
    expected_failure  null, or the first expected-failures entry that lists the test:
                      {"file": str, "line": int, "pattern": str, "reason": str}
    failure           null unless failed; else
                      {"message": str, the error as pytest's summary line shows it,
                       "examples": [example]}  -- one per distinct failure Hypothesis found

An example::

    error             str, "ExceptionType: message" of this failure
    falsifying_example str or null: Hypothesis's "Failing test case: test_x(...)" (or
                      "Falsifying example: ...") text, verbatim
    reproduction      [str]: the reproduction scripts the property noted
                      (strategies.note_reproduction)
    notes             [str]: the failure's other notes (draws, the mirrored case, ...)
    reproduce_failure str or null: Hypothesis's "@reproduce_failure(VERSION, BLOB)" decorator
    code              str or null: a stand-alone Python script that raises this failure again:
                      kind "call" calls the property's body on the minimal example's arguments
                      (readable: the RoIAlignCase is spelled out; what an st.data() argument
                      drew is passed as ``Draws([...])``); kind "reproduce_failure" replays
                      Hypothesis's blob (same Hypothesis version and suite needed), for
                      properties whose arguments or draws are not plain values
    code_kind         "call" | "reproduce_failure" | null

The minimal example's arguments come from the test itself: for the duration
of a Hypothesis test its ``hypothesis.inner_test`` is wrapped to remember the
arguments of the calls that raised (Hypothesis's own hook for wrapping, used
by pytest-trio; it leaves the examples drawn unchanged); the texts come from
the exception's notes, or, when the exception is not at hand, from the
failure's text (the ``E`` lines of pytest's report).
"""
from __future__ import annotations

import ast
import datetime
import functools
import importlib
import json
import math
import platform
import re
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest

from roialign_suite import paths
from roialign_suite.properties import discrepancy
from roialign_suite.properties.expected_failures import (
    IMPLEMENTATION_PARAMETERS,
    PLUGIN_NAME as EXPECTED_FAILURES,
    is_suite_item,
    item_implementation,
    item_property,
    item_test_id,
)

PLUGIN_NAME = "roialign_suite.properties.report"
SCHEMA = "roialign-suite-report/1"
OUTCOMES = ("passed", "failed", "skipped", "xfailed", "xpassed")
# The packages every run uses; each built-in's record adds its own (``Implementation.packages``).
SUITE_PACKAGES = ("torch", "numpy", "hypothesis", "pytest")
FAILING_PREFIXES = ("Failing test case:", "Falsifying example:", "Failing explicit example:",
                    "Falsifying explicit example:")
_REPRODUCE_FAILURE = re.compile(r"@reproduce_failure\((['\"][^'\"]*['\"]), (b['\"][^'\"]*['\"])\)")
_MAX_TEXT = 20000


# --- per test: worst error / bound, and the arguments of failing calls --------------------------------

class Worst:
    """The largest ``error / bound`` handed to :func:`discrepancy.target_discrepancy`, and its label."""

    def __init__(self):
        self.value: Optional[float] = None
        self.label: Optional[str] = None

    def __call__(self, label: str, value: float) -> None:
        value = float(value)
        if not math.isfinite(value):
            value = discrepancy.UNBOUNDED
        if self.value is None or value > self.value:
            self.value, self.label = value, label


class Draws:
    """Stands in for a property's ``st.data()`` argument: ``draw`` returns the recorded values in turn.

    A reported minimal example of a property that draws as it runs calls the property's body
    with ``data=Draws([...])``, the values spelled out.
    """

    def __init__(self, values):
        self.values = list(values)
        self._taken = 0

    def draw(self, strategy=None, label=None):
        if self._taken == len(self.values):
            raise LookupError(f"the property drew more than the {len(self.values)} recorded values")
        self._taken += 1
        return self.values[self._taken - 1]

    def __repr__(self) -> str:
        return f"Draws({self.values!r})"


class _RecordingData:
    """Hypothesis's ``data`` object, remembering what each ``draw`` returned."""

    def __init__(self, data):
        self._data = data
        self.values: List[Any] = []

    def draw(self, strategy, label=None):
        value = self._data.draw(strategy, label=label)
        self.values.append(value)
        return value

    def __repr__(self) -> str:
        return repr(self._data)


class FailingCalls:
    """While active, wraps ``test.hypothesis.inner_test`` to remember ``(exception, arguments)`` of the
    calls that raised (the last few: the final replays of the minimal examples come last); an
    ``st.data()`` argument is remembered as the ``Draws`` it made."""

    KEEP = 64

    def __init__(self, function):
        self.function = function
        self.calls: List[Tuple[BaseException, Dict[str, Any]]] = []
        handle = getattr(function, "hypothesis", None)
        self.handle = handle if handle is not None and hasattr(handle, "inner_test") else None
        self.original = None

    def __enter__(self):
        if self.handle is None:
            return self
        original = self.original = self.handle.inner_test
        try:
            import inspect

            signature = inspect.signature(original)
        except (TypeError, ValueError):
            signature = None

        from hypothesis.strategies import DataObject

        @functools.wraps(original)
        def remembering(*args, **kwargs):
            kwargs = {name: _RecordingData(value) if isinstance(value, DataObject) else value
                      for name, value in kwargs.items()}
            try:
                return original(*args, **kwargs)
            except BaseException as error:
                try:
                    arguments = dict(signature.bind(*args, **kwargs).arguments) if signature else dict(kwargs)
                except TypeError:
                    arguments = dict(kwargs)
                arguments = {name: Draws(value.values) if isinstance(value, _RecordingData) else value
                             for name, value in arguments.items()}
                self.calls.append((error, arguments))
                del self.calls[:-self.KEEP]
                raise

        self.handle.inner_test = remembering
        return self

    def __exit__(self, *exc):
        if self.handle is not None:
            self.handle.inner_test = self.original
        return False

    def arguments_of(self, error: BaseException) -> Optional[Dict[str, Any]]:
        for raised, arguments in reversed(self.calls):
            if raised is error:
                return arguments
        return None


# --- the minimal example as code ------------------------------------------------------------------

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
        imports.append("from roialign_suite.properties.report import Draws")
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


def _first_line(text: str, limit: int = 300) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[:limit] + "..."


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
    found = _REPRODUCE_FAILURE.search(decorator)
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


# --- failure texts ---------------------------------------------------------------------------------

def _leaves(error: BaseException) -> List[BaseException]:
    """The exceptions in an exception group (Hypothesis's several distinct failures), or the exception."""
    group = getattr(error, "exceptions", None)  # BaseExceptionGroup (3.11+, or the exceptiongroup backport)
    if isinstance(group, (list, tuple)) and all(isinstance(e, BaseException) for e in group):
        return [leaf for sub in group for leaf in _leaves(sub)]
    return [error]


def _pytest_arguments(item) -> Optional[Dict[str, Any]]:
    """The test function's arguments pytest supplies (parameters, fixtures), or None if one is missing."""
    import inspect

    funcargs = getattr(item, "funcargs", None)
    try:
        names = list(inspect.signature(item.function).parameters)
    except (AttributeError, TypeError, ValueError):
        return None
    if funcargs is None:
        return None
    return {n: funcargs[n] for n in names if n in funcargs}


def _empty_example() -> dict:
    return {"falsifying_example": None, "reproduction": [], "notes": [], "reproduce_failure": None}


def split_notes(notes: List[str]) -> dict:
    """Hypothesis's and the property's notes, sorted into the example's fields."""
    example = _empty_example()
    for note in notes:
        text = str(note)
        found = _REPRODUCE_FAILURE.search(text)
        if text.startswith(FAILING_PREFIXES) and example["falsifying_example"] is None:
            example["falsifying_example"] = text
        elif text.lstrip().startswith("# reproduction"):
            example["reproduction"].append(text.strip() + "\n")
        elif found:
            example["reproduce_failure"] = found.group(0)
        elif text.strip():
            example["notes"].append(text)
    return example


def _error_lines(text: str) -> List[str]:
    """The ``E``-prefixed lines of pytest's failure text, prefix removed (all lines when there are none)."""
    marked = [line for line in text.splitlines() if line == "E" or line.startswith("E ")]
    if not marked:
        return text.splitlines()
    return [line[8:] if line.startswith("E       ") else line[1:].lstrip() for line in marked]


def examples_from_text(text: str) -> List[dict]:
    """The examples in a failure's text (pytest's longrepr): each "Failing test case:" call through its
    closing parenthesis, the "# reproduction" scripts through the next blank line, the
    ``@reproduce_failure`` decorators."""
    lines = _error_lines(text)
    examples: List[dict] = []
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if line.startswith(FAILING_PREFIXES):
            examples.append(_empty_example())
            j = i
            call = lines[i].strip()
            while True:
                try:
                    ast.parse(call.split(":", 1)[1].strip())
                    break
                except SyntaxError:
                    j += 1
                    if j >= len(lines) or j - i > 2000:
                        j = i
                        call = lines[i].strip()
                        while j + 1 < len(lines) and lines[j].rstrip() != ")":
                            j += 1
                            call += "\n" + lines[j]
                        break
                    call += "\n" + lines[j]
            examples[-1]["falsifying_example"] = call
            i = j + 1
            continue
        if line.startswith("# reproduction"):
            j = i
            while j + 1 < len(lines) and lines[j + 1].strip():
                j += 1
            if not examples:
                examples.append(_empty_example())
            examples[-1]["reproduction"].append("\n".join(s.strip() for s in lines[i:j + 1]) + "\n")
            i = j + 1
            continue
        found = _REPRODUCE_FAILURE.search(line)
        if found:
            if not examples:
                examples.append(_empty_example())
            examples[-1]["reproduce_failure"] = found.group(0)
        i += 1
    return examples


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "\n... (clipped)"


def _error_text(error: BaseException) -> str:
    message = str(error)
    return _clip(f"{type(error).__name__}: {message}" if message else type(error).__name__)


# --- JSON-safe values ---------------------------------------------------------------------------

def _json_value(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    name = getattr(value, "name", None)
    return name if isinstance(name, str) else repr(value)


def _packages() -> List[str]:
    """The packages whose versions a report records: the suite's, then each built-in's, once each."""
    from roialign_suite.implementations import registry

    return list(dict.fromkeys(SUITE_PACKAGES + tuple(p for i in registry.builtin() for p in i.packages)))


def _version(package: str) -> Optional[str]:
    module = sys.modules.get(package)
    version = getattr(module, "__version__", None)
    if isinstance(version, str):
        return version
    try:
        from importlib.metadata import version as metadata_version

        return metadata_version(package)
    except Exception:
        return None


# --- the plugin ---------------------------------------------------------------------------------

_STATE = pytest.StashKey[Tuple[Worst, FailingCalls]]()


class Report:
    """Gathers the records; writes the JSON report and the Markdown summary at the end of the session."""

    def __init__(self, config, json_path: Optional[str], markdown_path: Optional[str]):
        self.config = config
        base = Path(config.invocation_params.dir)
        self.json_path = base / json_path if json_path else None
        self.markdown_path = base / markdown_path if markdown_path else None
        self.records: Dict[str, dict] = {}
        self.written: List[Path] = []
        self.exit_status = 0

    # --- gathering ---
    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item):
        if not is_suite_item(item):
            return (yield)
        worst, calls = Worst(), FailingCalls(getattr(item, "obj", None))
        item.stash[_STATE] = (worst, calls)
        with discrepancy.observing(worst), calls:
            return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = yield
        if is_suite_item(item):
            record = self._record(item)
            if call.when == "call":
                worst, calls = item.stash.get(_STATE, (Worst(), FailingCalls(None)))
                record["worst_error_over_bound"], record["worst_label"] = worst.value, worst.label
            if report.failed and record["failure"] is None and not _strict_xpass(report):
                record["failure"] = self._failure(item, call, report)
        return report

    def _record(self, item) -> dict:
        record = self.records.get(item.nodeid)
        if record is None:
            params = getattr(getattr(item, "callspec", None), "params", {})
            expected = None
            plugin = self.config.pluginmanager.get_plugin(EXPECTED_FAILURES)
            if plugin is not None and plugin.entries_for(item):
                entry = plugin.entries_for(item)[0]
                expected = {"file": entry.file, "line": entry.line, "pattern": entry.pattern, "reason": entry.reason}
            record = self.records[item.nodeid] = {
                "nodeid": item.nodeid,
                "test_id": item_test_id(item),
                "property": item_property(item),
                "implementation": item_implementation(item),
                "parameters": {k: _json_value(v) for k, v in params.items() if k not in IMPLEMENTATION_PARAMETERS},
                "outcome": "passed",
                "reason": None,
                "phase": None,
                "duration": 0.0,
                "worst_error_over_bound": None,
                "worst_label": None,
                "expected_failure": expected,
                "failure": None,
            }
        return record

    def _failure(self, item, call, report) -> dict:
        if call.excinfo is not None:
            message = _error_text(call.excinfo.value)
        else:
            crash = getattr(getattr(report, "longrepr", None), "reprcrash", None)
            message = getattr(crash, "message", None) or _first_line(str(report.longrepr))
        examples = []
        if call.excinfo is not None:
            worst, calls = item.stash.get(_STATE, (Worst(), FailingCalls(None)))
            for error in _leaves(call.excinfo.value):
                example = {"error": _error_text(error)}
                example.update(split_notes(list(getattr(error, "__notes__", []) or [])))
                example.update(self._code(item, error, example, calls) if call.when == "call"
                               else {"code": None, "code_kind": None})
                examples.append(example)
        else:  # the exception is not at hand: read the failure's text
            examples = [dict(error=_clip(message), code=None, code_kind=None, **e)
                        for e in examples_from_text(str(report.longrepr))]
        return {"message": _clip(message), "examples": examples}

    def _code(self, item, error, example, calls: FailingCalls) -> dict:
        expected = _first_line(_error_text(error))
        hypothesis_test = calls.handle is not None
        pytest_arguments = _pytest_arguments(item)
        arguments = calls.arguments_of(error) if hypothesis_test else pytest_arguments
        if arguments is not None:
            code = call_code(item, arguments, hypothesis_test, expected)
            if code is not None:
                return {"code": code, "code_kind": "call"}
        if example.get("reproduce_failure") and pytest_arguments is not None:
            code = reproduce_failure_code(item, example["reproduce_failure"], pytest_arguments, _base_profile(),
                                          expected)
            if code is not None:
                return {"code": code, "code_kind": "reproduce_failure"}
        return {"code": None, "code_kind": None}

    def pytest_runtest_logreport(self, report):
        record = self.records.get(report.nodeid)
        if record is None:
            return
        record["duration"] += float(getattr(report, "duration", 0.0) or 0.0)
        xfail_reason = getattr(report, "wasxfail", None)
        if report.skipped:
            if record["outcome"] == "passed":
                record["outcome"] = "xfailed" if xfail_reason is not None else "skipped"
                record["reason"] = xfail_reason if xfail_reason is not None else _skip_reason(report)
        elif report.failed:
            if _strict_xpass(report):
                record["outcome"], record["reason"] = "xpassed", str(report.longrepr)[len("[XPASS(strict)] "):]
            elif record["outcome"] != "failed":
                record["outcome"], record["phase"] = "failed", report.when
        elif report.when == "call" and xfail_reason is not None:
            record["outcome"], record["reason"] = "xpassed", xfail_reason

    # --- writing ---
    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session, exitstatus):
        self.exit_status = int(session.exitstatus)
        document = self.document()
        if self.json_path:
            self.json_path.parent.mkdir(parents=True, exist_ok=True)
            self.json_path.write_text(json.dumps(document, indent=1, allow_nan=False) + "\n", encoding="utf-8")
            self.written.append(self.json_path)
        if self.markdown_path:
            self.markdown_path.parent.mkdir(parents=True, exist_ok=True)
            self.markdown_path.write_text(markdown(document), encoding="utf-8")
            self.written.append(self.markdown_path)

    def pytest_terminal_summary(self, terminalreporter):
        for path in self.written:
            terminalreporter.write_line(f"roialign: wrote {path}")

    def document(self) -> dict:
        config = self.config
        records = list(self.records.values())
        totals = {outcome: sum(1 for r in records if r["outcome"] == outcome) for outcome in OUTCOMES}
        plugin = config.pluginmanager.get_plugin(EXPECTED_FAILURES)
        import roialign_suite

        return {
            "schema": SCHEMA,
            "suite": {"name": "roialign-suite", "version": roialign_suite.__version__},
            "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "command": [str(a) for a in config.invocation_params.args],
            "environment": {"python": platform.python_version(), "platform": platform.platform(),
                            "packages": {p: _version(p) for p in _packages()}},
            "implementations": _implementations(config),
            "hypothesis": _hypothesis(config),
            "exit_status": self.exit_status,
            "totals": totals,
            "expected_failures": plugin.summary() if plugin is not None else None,
            "tests": records,
        }


def _strict_xpass(report) -> bool:
    return report.when == "call" and isinstance(report.longrepr, str) and report.longrepr.startswith("[XPASS(strict)]")


def _skip_reason(report) -> Optional[str]:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr) if longrepr else None


def _implementations(config) -> List[dict]:
    from roialign_suite.properties.session import implementations_under_test

    try:
        under_test = implementations_under_test(config)
    except Exception:  # a usage error already reported
        return []
    return [{"name": i.name, "device": i.device, "ours": i.ours, "differentiable": i.differentiable,
             "unavailable": i.unavailable} for i in under_test]


def _base_profile() -> str:
    from hypothesis import settings

    from roialign_suite.properties.profiles import PROFILES

    name = settings.get_current_profile_name()
    base = name.partition("-")[0]
    return base if base in PROFILES else "ci"


def _hypothesis(config) -> dict:
    from hypothesis import settings

    current = settings()
    seed = config.getoption("roialign_seed")
    if seed is None:
        seed = config.getoption("hypothesis_seed", None)
    return {"profile": settings.get_current_profile_name(), "max_examples": current.max_examples,
            "derandomize": bool(current.derandomize), "seed": _json_value(seed)}


# --- Markdown ---------------------------------------------------------------------------------

_CELL = {"passed": "pass", "failed": "FAIL", "xfailed": "xfail", "xpassed": "xpass", "skipped": "skip"}
_SEVERITY = ("failed", "xpassed", "xfailed", "passed", "skipped")


def _ratio(value: Optional[float]) -> str:
    if value is None:
        return ""
    if value >= discrepancy.UNBOUNDED:
        return "unbounded"
    return f"{value:.3g}"


def _cell(records: List[dict]) -> str:
    if not records:
        return ""
    outcomes = [r["outcome"] for r in records]
    worst_outcome = min(outcomes, key=_SEVERITY.index)
    text = _CELL[worst_outcome]
    if len(records) > 1:
        text += f" {outcomes.count(worst_outcome)}/{len(records)}"
    ratios = [r["worst_error_over_bound"] for r in records if r["worst_error_over_bound"] is not None]
    if ratios:
        text += f" · {_ratio(max(ratios))}"
    return text


def _fence(text: str, language: str = "") -> List[str]:
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return [ticks + language, text.rstrip("\n"), ticks]


def markdown(document: dict) -> str:
    """The summary: header, the property x implementation table, each failure with its minimal example,
    the expected-failure notes."""
    records = document["tests"]
    packages = document["environment"]["packages"]
    hyp = document["hypothesis"]
    names = [i["name"] for i in document["implementations"]]
    lines = [f"# RoIAlign conformance: {', '.join(names) or 'no implementation'}", ""]
    lines.append(f"roialign-suite {document['suite']['version']} · torch {packages.get('torch')} · "
                 f"torchvision {packages.get('torchvision')} · numba {packages.get('numba')} · "
                 f"hypothesis {packages.get('hypothesis')} (profile `{hyp['profile']}`, {hyp['max_examples']} examples, "
                 f"seed {hyp['seed'] if hyp['seed'] is not None else ('derandomized' if hyp['derandomize'] else 'random')}) · "
                 f"{document['created']}")
    lines.append("")
    totals = document["totals"]
    lines.append("**" + ", ".join(f"{n} {k}" for k, n in totals.items() if n) + "**" if any(totals.values())
                 else "**no test ran**")
    for implementation in document["implementations"]:
        if implementation["unavailable"]:
            lines.append(f"\n{implementation['name']} is not available here: {implementation['unavailable']}")
    lines += ["", "## Properties x implementations", "",
              "Each cell: the outcome (the worst of the cell's tests, with how many had it when there are several: "
              "other parameters, corpus cases) and the worst error / bound of any example (above 1 is out of bound).",
              ""]
    columns = list(dict.fromkeys(names + [r["implementation"] for r in records if r["implementation"] is not None]))
    columns = [c for c in columns if any(r["implementation"] == c for r in records)]
    has_none = any(r["implementation"] is None for r in records)
    header = ["property"] + [f"`{c}`" for c in columns] + (["(no implementation)"] if has_none else [])
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    properties = list(dict.fromkeys((r["test_id"].partition("::")[0], r["property"]) for r in records))
    for module, prop in properties:
        mine = [r for r in records if r["property"] == prop and r["test_id"].startswith(module + "::")]
        cells = [_cell([r for r in mine if r["implementation"] == c]) for c in columns]
        if has_none:
            cells.append(_cell([r for r in mine if r["implementation"] is None]))
        lines.append(f"| `{prop}` | " + " | ".join(cells) + " |")
    failures = [r for r in records if r["outcome"] == "failed"]
    lines += ["", "## Failures", ""]
    if not failures:
        lines += ["None.", ""]
    for record in failures:
        failure = record["failure"] or {"message": "", "examples": []}
        lines += [f"### `{record['test_id']}`", ""]
        where = f" (in {record['phase']})" if record["phase"] and record["phase"] != "call" else ""
        lines += [f"Error{where}:", ""] + _fence(failure["message"]) + [""]
        for n, example in enumerate(failure["examples"], start=1):
            if len(failure["examples"]) > 1:
                lines += [f"Failure {n} of {len(failure['examples'])}: `{_first_line(example['error'], 200)}`", ""]
            if example.get("code"):
                lines += ["Minimal example (runs stand-alone and raises the failure):", ""]
                lines += _fence(example["code"], "python") + [""]
            if example.get("falsifying_example"):
                lines += ["Hypothesis's minimal example:", ""] + _fence(example["falsifying_example"]) + [""]
            for script in example.get("reproduction", []):
                lines += ["Reproduction noted by the property:", ""] + _fence(script, "python") + [""]
    lines += ["## Expected failures", ""]
    xfails = document["expected_failures"]
    if xfails is None:
        lines.append("No expected-failures file (`--roialign-xfails`).")
    else:
        strict = " (strict: a listed test that passes, or an entry that matches nothing, fails the run)" \
            if xfails["strict"] else ""
        lines += [f"From {', '.join(f'`{f}`' for f in xfails['files'])}{strict}.", ""]
        by_entry: Dict[Tuple[str, int], List[dict]] = {}
        for record in records:
            if record["expected_failure"]:
                key = (record["expected_failure"]["file"], record["expected_failure"]["line"])
                by_entry.setdefault(key, []).append(record)
        lines += ["| entry | reason | tests run: outcomes |", "|---|---|---|"]
        for entry in xfails["entries"]:
            mine = by_entry.get((entry["file"], entry["line"]), [])
            counts = ", ".join(f"{sum(1 for r in mine if r['outcome'] == o)} {o}" for o in OUTCOMES
                               if any(r["outcome"] == o for r in mine))
            if not entry["matched"]:
                counts = "**matches no collected test**"
            reason = entry["reason"].replace("|", "\\|")
            lines.append(f"| `{entry['pattern']}` ({Path(entry['file']).name}:{entry['line']}) | {reason} | "
                         f"{counts or 'not run'} |")
        passed = xfails["passed"]
        if passed:
            for file in xfails["files"]:
                mine = [p for p in passed if p["file"] == file]
                if mine:
                    lines += ["", f"### Expected failures that passed — remove them from `{file}`", ""]
                    lines += [f"- `{p['nodeid']}` (line {p['line']}: `{p['pattern']}`"
                              + (f"; {p['entry_failed_as_expected']} other test(s) of this entry failed as expected: "
                                 "narrow it, or keep it if the divergence shows on some draws only"
                                 if p.get("entry_failed_as_expected") else "") + ")" for p in mine]
        if xfails["unmatched"]:
            lines += ["", "### Entries that match no collected test — fix or remove them", ""]
            lines += [f"- `{u['file']}:{u['line']}`: `{u['pattern']}`" for u in xfails["unmatched"]]
    return "\n".join(lines) + "\n"


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


def register(config) -> Optional[Report]:
    """Register the plugin when ``--roialign-report`` or ``--roialign-summary`` is given."""
    json_path, markdown_path = config.getoption("roialign_report"), config.getoption("roialign_summary")
    if not json_path and not markdown_path:
        return None
    print_implementations_as_code()
    plugin = Report(config, json_path, markdown_path)
    config.pluginmanager.register(plugin, PLUGIN_NAME)
    return plugin
