"""Expected failures: ``--roialign-xfails=FILE`` marks listed suite tests ``xfail`` with their reason.

A kernel author adopting the suite starts from today's known divergences
(listed, each with why) and tightens the list as they are fixed: a listed
test that passes is reported ("expected failures that passed -- remove them
from FILE"), and so is an entry that matches no collected test (a typo).
``--roialign-strict-xfails`` turns both into a failed run. Modelled on
array-api-tests' ``xfails.txt``, with a reason required on every entry.

File format
-----------
UTF-8 text, one entry per line::

    # comment lines and blank lines are ignored
    test_forward_matches_reference[openvino]           # OpenVINO runs float64 models in float32
    test_differential.py::test_forward_matches_reference[target:mypkg.ops:roi_align]  # issue 12
    test_edge_cases.py::test_box_kind_behaves_like_the_reference[onnxruntime-tiny]  # scale in float32
    test_*[onnxruntime]                                # a glob: every property on it

- **Reason**: everything after the first ``#`` that follows whitespace is the
  reason; it is mandatory (an entry without one is a usage error naming the
  file and line) and is shown as the xfail reason, with ``FILE:LINE``.
  The pattern is the text before it, stripped.
- **Globs**: ``*`` matches any run of characters (none included, ``/``,
  ``::``, ``[`` and ``]`` included). No other character is special: ``[``,
  ``]`` and ``?`` are literal.
- **Test-id form** (the pattern contains ``::``): matches a test whose id is
  the pattern or ends with it after a ``/``. A test's ids are its pytest node
  id and ``roialign_suite/properties/FILE.py::NAME[PARAMS]`` (its module's
  file name and pytest's test name, the same in a checkout and in an installed
  suite), so ``test_differential.py::test_forward_matches_reference[onnxruntime]``,
  ``properties/test_differential.py::...`` and the full node id all work. A
  pattern starting with ``::`` matches the end of an id
  (``::test_flip[onnxruntime]``). Parameters come in pytest's order and
  spelling (``[onnxruntime-huge]``): copy them from the run's output.
- **Property form** (no ``::``): ``PROPERTY`` or ``PROPERTY[IMPLEMENTATION]``.
  ``PROPERTY`` matches the test function's name (``test_flip``); without
  brackets every test of that property matches (any implementation, any other
  parameters). ``IMPLEMENTATION`` matches the name of the implementation under
  test (:func:`item_implementation`: ``onnxruntime``, ``numba``,
  ``target:mypkg.ops:roi_align``, ``target:mypkg.ops:roi_align@cuda``); a
  test with other parameters as well (``[onnxruntime-huge]``) matches on its
  implementation alone, and a test with no implementation never matches a
  bracketed pattern. ``IMPLEMENTATION`` is the text between the first ``[``
  and the final ``]``.

A test several entries match takes the reason of the first (files in option
order, lines in file order); every entry that matches a collected test counts
as used. Entries are matched against every collected test of the suite, before
``-k``/``-m``/``--deselect`` deselection, so selecting a few tests does not
make the others' entries "unmatched"; running only some of the suite's files
does. Only the suite's tests (modules of ``roialign_suite.properties``) are
ever marked: a user's own tests in the same run are left alone.

A matched test gets ``pytest.mark.xfail(reason="REASON (FILE:LINE)",
strict=STRICT)``: failing, it is reported ``xfailed`` with that reason;
passing, ``xpassed`` and listed under "expected failures that passed -- remove
them from FILE" (with ``--roialign-strict-xfails``, pytest's
``[XPASS(strict)]`` failure). A test the suite itself skips (an implementation
that cannot run here, a forward-only one on a gradient property) stays skipped.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

import pytest

from roialign_suite import paths
from roialign_suite.pytest_plugin.activation import is_suite_module

PLUGIN_NAME = "roialign_suite.pytest_plugin.expected_failures"
# The parameters that name the implementation under test (Implementation records, or names in corpus replay).
IMPLEMENTATION_PARAMETERS = ("implementation", "our_implementation", "implementation_name")
_REASON = re.compile(r"\s#")


class ExpectedFailuresError(ValueError):
    """A malformed expected-failures file (the message names the file and line)."""


def _glob(pattern: str) -> str:
    """``pattern`` as a regular expression in which only ``*`` is special."""
    return ".*".join(re.escape(part) for part in pattern.split("*"))


@dataclass
class Entry:
    """One line of an expected-failures file."""

    pattern: str
    reason: str
    file: str
    line: int
    matched: List[str] = field(default_factory=list)  # node ids of the collected tests it matches

    def __post_init__(self):
        if "::" in self.pattern:
            self.kind = "test id"
            prefix = ".*" if self.pattern.startswith("::") else "(?:.*/)?"
            self._test_id = re.compile(prefix + _glob(self.pattern))
        else:
            self.kind = "property"
            name, bracket, rest = self.pattern.partition("[")
            if bracket and not rest.endswith("]"):
                raise self.error(f"{self.pattern!r}: a property[implementation] pattern must end with ']'")
            implementation = rest[:-1] if bracket else None
            if not name or implementation == "":
                raise self.error(f"{self.pattern!r}: expected PROPERTY or PROPERTY[IMPLEMENTATION] "
                                 "(or a test id containing '::')")
            self._property = re.compile(_glob(name))
            self._implementation = None if implementation is None else re.compile(_glob(implementation))

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def error(self, message: str) -> ExpectedFailuresError:
        return ExpectedFailuresError(f"{self.where}: {message}")

    def matches(self, ids: Sequence[str], property_name: str, implementation: Optional[str]) -> bool:
        """Whether a test with these ids, property (function name) and implementation name matches."""
        if self.kind == "test id":
            return any(self._test_id.fullmatch(i) for i in ids)
        if not self._property.fullmatch(property_name):
            return False
        if self._implementation is None:
            return True
        return implementation is not None and bool(self._implementation.fullmatch(implementation))

    def as_dict(self) -> dict:
        return {"file": self.file, "line": self.line, "pattern": self.pattern, "kind": self.kind,
                "reason": self.reason, "matched": list(self.matched)}


def parse(text: str, file: str) -> List[Entry]:
    """The entries of one file's ``text`` (``file`` names it in messages and reasons)."""
    entries = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        found = _REASON.search(line)
        pattern = (line[:found.start()] if found else line).strip()
        reason = line[found.end():].strip() if found else ""
        if not reason:
            raise ExpectedFailuresError(
                f"{file}:{number}: entry {pattern!r} has no reason; write it as "
                f"'{pattern}  # why it is expected to fail'")
        entries.append(Entry(pattern, reason, file, number))
    return entries


def load(paths: Iterable[str]) -> List[Entry]:
    """Every entry of these files, in order."""
    entries = []
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as error:
            raise ExpectedFailuresError(f"cannot read expected-failures file {path}: {error.strerror or error}. "
                                        f"Shipped examples: {', '.join(str(p) for p in shipped())}") from None
        entries += parse(text, str(path))
    return entries


def shipped() -> List[Path]:
    """The expected-failures files that ship with the suite (``roialign_suite/properties/xfails/``)."""
    return sorted((paths.package_dir("properties") / "xfails").glob("*.txt"))


# --- what a test is ---------------------------------------------------------------

def item_test_id(item) -> str:
    """``FILE.py::NAME[PARAMS]``: the suite module's file name and pytest's test name."""
    return f"{Path(str(item.path)).name}::{item.name}"


def item_ids(item) -> List[str]:
    """The ids a test-id pattern is matched against: the node id and ``roialign_suite/properties/<test id>``."""
    return [item.nodeid, "roialign_suite/properties/" + item_test_id(item)]


def item_property(item) -> str:
    """The property: the test function's name."""
    return getattr(item, "originalname", None) or item.name.partition("[")[0]


def item_implementation(item) -> Optional[str]:
    """The name of the implementation a test checks: the ``.name`` of its ``implementation`` or
    ``our_implementation`` parameter, or its ``implementation_name`` (corpus replay); None if none."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    for key in IMPLEMENTATION_PARAMETERS:
        if key in params and params[key] is not None:
            value = params[key]
            return value if isinstance(value, str) else getattr(value, "name", str(value))
    return None


def is_suite_item(item) -> bool:
    module = getattr(item, "module", None)
    return module is not None and is_suite_module(module, "properties")


# --- the plugin -------------------------------------------------------------------

_ENTRIES = pytest.StashKey[List[Entry]]()


class ExpectedFailures:
    """The sub-plugin ``roialign_suite.pytest_plugin`` registers when ``--roialign-xfails`` is given."""

    def __init__(self, entries: List[Entry], strict: bool, files: Sequence[str]):
        self.entries = entries
        self.strict = strict
        self.files = list(files)
        self.passed: Dict[str, Entry] = {}  # node id -> the entry that listed it, for listed tests that passed
        self.failed: Dict[str, Entry] = {}  # node id -> the entry that listed it, for listed tests that failed

    @classmethod
    def from_config(cls, config) -> "ExpectedFailures":
        files = config.getoption("roialign_xfails")
        try:
            entries = load(files)
        except ExpectedFailuresError as error:
            raise pytest.UsageError(f"--roialign-xfails: {error}") from None
        return cls(entries, bool(config.getoption("roialign_strict_xfails")), files)

    def entries_for(self, item) -> List[Entry]:
        return item.stash.get(_ENTRIES, [])

    def unmatched(self) -> List[Entry]:
        return [e for e in self.entries if not e.matched]

    @pytest.hookimpl(tryfirst=True)  # before -k / -m / --deselect take items out
    def pytest_collection_modifyitems(self, session, config, items):
        for item in items:
            if not is_suite_item(item):
                continue
            ids, prop, implementation = item_ids(item), item_property(item), item_implementation(item)
            matching = [e for e in self.entries if e.matches(ids, prop, implementation)]
            if not matching:
                continue
            for entry in matching:
                entry.matched.append(item.nodeid)
            first = matching[0]
            item.stash[_ENTRIES] = matching
            item.add_marker(pytest.mark.xfail(reason=f"{first.reason} ({first.where})", strict=self.strict))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = yield
        if call.when == "call" and self.entries_for(item):
            if call.excinfo is None:
                self.passed[item.nodeid] = self.entries_for(item)[0]
            elif not call.excinfo.errisinstance(pytest.skip.Exception):
                self.failed[item.nodeid] = self.entries_for(item)[0]
        return report

    def failed_as_expected(self, entry: Entry) -> int:
        """How many tests this entry gave their reason to failed, as it expects."""
        return sum(1 for e in self.failed.values() if e is entry)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session, exitstatus):
        if self.strict and self.unmatched() and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter, exitstatus, config):
        tr = terminalreporter
        markup = {"red": True} if self.strict else {"yellow": True}
        for file in self.files:
            passed = [(node, e) for node, e in self.passed.items() if e.file == file]
            if passed:
                tr.write_sep("=", f"expected failures that passed — remove them from {file}", **markup)
                entries = []
                for _, e in passed:
                    if not any(e is known for known in entries):
                        entries.append(e)
                for entry in entries:
                    tr.write_line(f"{entry.where}: {entry.pattern}  # {entry.reason}")
                    for node, _ in [(n, e) for n, e in passed if e is entry]:
                        tr.write_line(f"    passed: {node}")
                    others = self.failed_as_expected(entry)
                    if others:
                        tr.write_line(f"    ({others} other test(s) of this entry failed as expected: narrow the "
                                      "pattern, or keep it if the divergence shows on some draws only)")
            unmatched = [e for e in self.unmatched() if e.file == file]
            if unmatched:
                tr.write_sep("=", f"expected-failure entries that match no collected test — fix or remove them in {file}",
                             **markup)
                for entry in unmatched:
                    tr.write_line(f"{entry.where}: {entry.pattern}  # {entry.reason}")
        if self.strict and (self.passed or self.unmatched()):
            tr.write_line("--roialign-strict-xfails: the expected-failures files are out of date; the run fails",
                          red=True)

    def summary(self) -> dict:
        """For the JSON report: the files, strictness, every entry (with the tests it matched), the
        listed tests that passed, the entries that matched nothing."""
        return {
            "files": list(self.files),
            "strict": self.strict,
            "entries": [e.as_dict() for e in self.entries],
            "passed": [{"nodeid": node, "file": e.file, "line": e.line, "pattern": e.pattern,
                        "entry_failed_as_expected": self.failed_as_expected(e)}
                       for node, e in self.passed.items()],
            "unmatched": [{"file": e.file, "line": e.line, "pattern": e.pattern, "reason": e.reason}
                          for e in self.unmatched()],
        }


def register(config) -> Optional[ExpectedFailures]:
    """Register the plugin when ``--roialign-xfails`` names files (``roialign_suite.pytest_plugin``'s ``pytest_configure``)."""
    if not config.getoption("roialign_xfails"):
        return None
    plugin = ExpectedFailures.from_config(config)
    config.pluginmanager.register(plugin, PLUGIN_NAME)
    return plugin
