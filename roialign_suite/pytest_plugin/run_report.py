"""The suite's machine-readable report (``--roialign-report=FILE.json``) and Markdown summary (``--roialign-summary=FILE.md``).

A sub-plugin (``roialign_suite.pytest_plugin`` registers it when either option is
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

import datetime
import json
import math
import platform
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest

from roialign_suite.properties import discrepancy
from roialign_suite.pytest_plugin.expected_failures import (
    IMPLEMENTATION_PARAMETERS,
    PLUGIN_NAME as EXPECTED_FAILURES,
    is_suite_item,
    item_implementation,
    item_property,
    item_test_id,
)
from roialign_suite.pytest_plugin.hypothesis_output import clip, error_text, examples_from_text, first_line, split_notes
from roialign_suite.pytest_plugin.outcome_recording import FailingCalls, Worst
from roialign_suite.pytest_plugin.property_parametrization import implementations_under_test
from roialign_suite.pytest_plugin.reproduction_code import call_code, print_implementations_as_code, reproduce_failure_code
from roialign_suite.pytest_plugin.summary_markdown import OUTCOMES, markdown

PLUGIN_NAME = "roialign_suite.pytest_plugin.run_report"
SCHEMA = "roialign-suite-report/1"
# The packages every run uses; each built-in's record adds its own (``Implementation.packages``).
SUITE_PACKAGES = ("torch", "numpy", "hypothesis", "pytest")


# --- failures: the exceptions and the arguments pytest supplied -----------------------------------

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
            message = error_text(call.excinfo.value)
        else:
            crash = getattr(getattr(report, "longrepr", None), "reprcrash", None)
            message = getattr(crash, "message", None) or first_line(str(report.longrepr))
        examples = []
        if call.excinfo is not None:
            worst, calls = item.stash.get(_STATE, (Worst(), FailingCalls(None)))
            for error in _leaves(call.excinfo.value):
                example = {"error": error_text(error)}
                example.update(split_notes(list(getattr(error, "__notes__", []) or [])))
                example.update(self._code(item, error, example, calls) if call.when == "call"
                               else {"code": None, "code_kind": None})
                examples.append(example)
        else:  # the exception is not at hand: read the failure's text
            examples = [dict(error=clip(message), code=None, code_kind=None, **e)
                        for e in examples_from_text(str(report.longrepr))]
        return {"message": clip(message), "examples": examples}

    def _code(self, item, error, example, calls: FailingCalls) -> dict:
        expected = first_line(error_text(error))
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


def register(config) -> Optional[Report]:
    """Register the plugin when ``--roialign-report`` or ``--roialign-summary`` is given."""
    json_path, markdown_path = config.getoption("roialign_report"), config.getoption("roialign_summary")
    if not json_path and not markdown_path:
        return None
    print_implementations_as_code()
    plugin = Report(config, json_path, markdown_path)
    config.pluginmanager.register(plugin, PLUGIN_NAME)
    return plugin
