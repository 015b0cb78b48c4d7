"""What a third-party CI adopts: expected failures (``--roialign-xfails``), the JSON report
(``--roialign-report``), the Markdown summary (``--roialign-summary``) and the profile options.

The runs are pytest inside pytest (in-process, as pytester's) on one or two of
the suite's properties with a few examples; the kernels with a planted bug are
in ``tests/report_kernels.py``. The report's end-to-end run goes through the
``roialign-suite check`` command once (a subprocess) and is read by several tests.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings

from roialign_suite import paths
from roialign_suite.pytest_plugin import expected_failures as xf
from roialign_suite.properties.discrepancy import UNBOUNDED
from roialign_suite.pytest_plugin.hypothesis_output import examples_from_text
from roialign_suite.pytest_plugin.run_report import SCHEMA
from roialign_suite.pytest_plugin.summary_markdown import markdown

HERE = Path(__file__).resolve().parent
SUITE = paths.package_dir("properties")
DIFFERENTIAL = str(SUITE / "test_differential.py")
ALIGNED = "report_kernels:ignores_aligned"      # fails on the suite's explicit aligned example: fast
FIRST_BOX = "report_kernels:first_box_only"     # fails on two boxes: generated, then shrunk


# --- running the suite inside this test session ---------------------------------------------------

def _suite_test_modules():
    return {name: module for name, module in list(sys.modules.items())
            if Path(getattr(module, "__file__", None) or "").parent == SUITE
            and Path(module.__file__).name.startswith("test_")}


@dataclass
class Run:
    ret: int
    stdout: str
    stderr: str

    def counts(self) -> dict:
        """pytest's closing line as ``{"passed": 1, "xfailed": 2, ...}``, tests that ran only.

        Deselections are left out: their number follows how many properties a
        module holds, not the behaviour a test checks.
        """
        last = [line for line in self.stdout.splitlines() if line.startswith("=") and " in " in line][-1]
        outcomes = re.findall(r"(\d+) (\w+)", last.split(" in ")[0])
        return {word: int(n) for n, word in outcomes if word != "deselected"}


@pytest.fixture
def suite(tmp_path, monkeypatch, capsys):
    """``suite(*args)``: pytest in-process (in ``tmp_path``) with the suite's plugin and the ``ci`` profile.

    Like pytester's in-process runs, but what the run imports stays imported (Numba registers
    types on import: importing its modules twice fails), except the run's own test modules: the
    suite's are imported afresh each run (a Hypothesis test takes the profile loaded when it is
    defined) and the originals put back after, and the session's Hypothesis profile is restored."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(HERE))  # report_kernels, for --roialign-target
    profile = settings.get_current_profile_name()

    def run(*args: str, rootdir: Path = tmp_path) -> Run:
        before, path, imported = set(sys.modules), list(sys.path), _suite_test_modules()
        for name in imported:
            del sys.modules[name]
        capsys.readouterr()
        try:
            # The outer session imported the plugin already; when it did so without pytest's
            # assertion rewriting (an editable install run from another checkout), the nested
            # session warns that it cannot rewrite it: an artefact of nesting, not of the suite.
            ret = pytest.main(["-p", "roialign_suite.pytest_plugin", "-p", "no:cacheprovider", f"--rootdir={rootdir}",
                               "-W", "ignore::pytest.PytestAssertRewriteWarning", "--roialign-profile=ci", *args])
        finally:
            for name in set(sys.modules) - before:
                file = Path(getattr(sys.modules[name], "__file__", None) or "/")
                if file.parent == SUITE or file.is_relative_to(tmp_path):
                    del sys.modules[name]
            sys.modules.update(imported)
            sys.path[:] = path
            settings.load_profile(profile)
        out, err = capsys.readouterr()
        return Run(int(ret), out, err)

    return run


def assert_lines(output: str, *patterns: str) -> None:
    """Each pattern matches a whole line of ``output``, in order (only ``*`` is special, unlike fnmatch's ``[...]``)."""
    lines = output.splitlines()
    at = 0
    for pattern in patterns:
        regex = re.compile(xf._glob(pattern))
        while at < len(lines) and not regex.fullmatch(lines[at]):
            at += 1
        assert at < len(lines), f"no line matching {pattern!r} (in order) in:\n" + "\n".join(lines[-60:])
        at += 1


def _report(where: Path, name="report.json") -> dict:
    return json.loads((where / name).read_text())


def _records(document: dict) -> dict:
    return {r["test_id"]: r for r in document["tests"]}


# --- the expected-failures file: format and matching ----------------------------------------------

def test_entries_are_pattern_and_reason_comments_and_blank_lines_skipped():
    entries = xf.parse("# known divergences\n\n"
                       "test_flip[onnxruntime]   # scale stored as float32\n"
                       "   test_differential.py::test_forward_matches_reference[numba]#no-space # why: a#b\n",
                       "x.txt")
    assert [(e.pattern, e.reason, e.line, e.kind) for e in entries] == [
        ("test_flip[onnxruntime]", "scale stored as float32", 3, "property"),
        ("test_differential.py::test_forward_matches_reference[numba]#no-space", "why: a#b", 4, "test id"),
    ]


@pytest.mark.parametrize("text, line", [("test_flip[numba]\n", 1), ("# c\n\ntest_flip[numba]   #   \n", 3),
                                        ("test_flip[numba # why\n", 1), ("test_flip[] # why\n", 1)])
def test_a_malformed_entry_is_an_error_naming_file_and_line(text, line):
    with pytest.raises(xf.ExpectedFailuresError, match=rf"^my-xfails\.txt:{line}: "):
        xf.parse(text, "my-xfails.txt")


NODE = "properties/test_edge_cases.py::test_box_kind_behaves_like_the_reference[onnxruntime-huge]"
IDS = [NODE, "roialign_suite/properties/test_edge_cases.py::test_box_kind_behaves_like_the_reference[onnxruntime-huge]"]


@pytest.mark.parametrize("pattern, matches", [
    # property[implementation]: any other parameters
    ("test_box_kind_behaves_like_the_reference[onnxruntime]", True),
    ("test_box_kind_behaves_like_the_reference", True),
    ("test_box_kind_behaves_like_the_reference[openvino]", False),
    ("test_box_kind_behaves_like_the_reference[onnx*]", True),
    ("test_box_kind_*[*]", True),
    ("test_box_kind[onnxruntime]", False),
    ("test_box_kind_behaves_like_the_reference[onnxruntime-huge]", False),  # parameters: the test-id form
    # test ids: the whole node id, or a suffix starting after a '/'
    (NODE, True),
    ("test_edge_cases.py::test_box_kind_behaves_like_the_reference[onnxruntime-huge]", True),
    ("roialign_suite/properties/test_edge_cases.py::test_box_kind_behaves_like_the_reference[onnxruntime-huge]", True),
    ("edge_cases.py::test_box_kind_behaves_like_the_reference[onnxruntime-huge]", False),
    ("::test_box_kind_behaves_like_the_reference[onnxruntime-huge]", True),
    ("test_edge_cases.py::test_box_kind_behaves_like_the_reference[onnxruntime-tiny]", False),
    ("test_edge_cases.py::test_box_kind_behaves_like_the_reference[onnxruntime-*]", True),
    ("test_edge_cases.py::test_box_kind_behaves_like_the_reference", False),
    ("test_edge_cases.py::*", True),
    # only '*' is special
    ("test_edge_cases.py::test_box_kind_behaves_like_the_reference[onnxruntime-hug?]", False),
])
def test_patterns_match_test_ids_or_property_and_implementation(pattern, matches):
    entry = xf.parse(f"{pattern}  # why\n", "x.txt")[0]
    assert entry.matches(IDS, "test_box_kind_behaves_like_the_reference", "onnxruntime") is matches


def test_a_bracketed_property_pattern_never_matches_a_test_without_implementation():
    entry = xf.parse("test_pooler_*[*]  # why\n", "x.txt")[0]
    assert not entry.matches(["properties/test_pooler_properties.py::test_x"], "test_pooler_x", None)
    assert xf.parse("test_pooler_*  # why\n", "x.txt")[0].matches([], "test_pooler_x", None)


# --- expected failures in a run -------------------------------------------------------------------

def test_a_listed_failure_is_xfailed_with_its_reason(suite, tmp_path):
    (tmp_path / "xfails.txt").write_text("# ours ignores aligned\n"
                      f"test_forward_matches_reference[target:{ALIGNED}]  # aligned ignored: issue 7\n")
    # A user's own test of the same name, in the same run, is not the suite's: it is left alone.
    (tmp_path / "test_user.py").write_text("def test_forward_matches_reference():\n    assert False\n")
    result = suite(DIFFERENTIAL, "test_user.py", "-k", "test_forward_matches_reference", f"--roialign-target={ALIGNED}",
                   "--roialign-max-examples=2", "--roialign-xfails=xfails.txt", "--roialign-report=report.json", "-rxf")
    assert result.counts() == {"failed": 1, "xfailed": 1}
    assert_lines(result.stdout, "XFAIL *test_forward_matches_reference*ignores_aligned* - aligned ignored: issue 7 (xfails.txt:2)",
             "FAILED *::test_forward_matches_reference - assert False")
    record = _records(_report(tmp_path))[f"test_differential.py::test_forward_matches_reference[target:{ALIGNED}]"]
    assert record["outcome"] == "xfailed" and record["reason"] == "aligned ignored: issue 7 (xfails.txt:2)"
    assert record["expected_failure"]["line"] == 2


def test_an_entry_without_a_reason_is_a_usage_error(suite, tmp_path):
    (tmp_path / "xfails.txt").write_text("# known\ntest_forward_matches_reference[numba]\n")
    result = suite(DIFFERENTIAL, "--roialign-xfails=xfails.txt")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "xfails.txt:2: entry 'test_forward_matches_reference[numba]' has no reason" in result.stderr


def test_an_entry_matching_no_collected_test_is_reported(suite, tmp_path):
    (tmp_path / "xfails.txt").write_text("test_forward_matches_referense[numba]  # a typo\n"
                      "test_backward_matches_reference[numba]  # collected, deselected by -k: used\n")
    args = (DIFFERENTIAL, "-k", "test_forward_matches_reference", "--roialign-implementation=numba",
            "--roialign-max-examples=2", "--roialign-xfails=xfails.txt", "--roialign-report=report.json")
    result = suite(*args)
    assert result.ret == 0
    assert_lines(result.stdout, "*expected-failure entries that match no collected test*xfails.txt*",
             "xfails.txt:1: test_forward_matches_referense[numba]  # a typo")
    assert "xfails.txt:2" not in result.stdout
    unmatched = _report(tmp_path)["expected_failures"]["unmatched"]
    assert [(u["line"], u["pattern"]) for u in unmatched] == [(1, "test_forward_matches_referense[numba]")]
    assert suite(*args, "--roialign-strict-xfails").ret == pytest.ExitCode.TESTS_FAILED


def test_a_listed_test_that_passes_is_reported_and_fails_a_strict_run(suite, tmp_path):
    (tmp_path / "xfails.txt").write_text("test_differential.py::test_forward_matches_reference[numba]  # fixed since\n")
    args = (DIFFERENTIAL, "-k", "test_forward_matches_reference", "--roialign-implementation=numba",
            "--roialign-max-examples=2", "--roialign-xfails=xfails.txt", "--roialign-report=report.json")
    result = suite(*args)
    assert result.ret == 0
    assert result.counts() == {"xpassed": 1}
    assert_lines(result.stdout, "*expected failures that passed — remove them from xfails.txt*",
             "xfails.txt:1: test_differential.py::test_forward_matches_reference[numba]  # fixed since",
             "    passed: *test_forward_matches_reference[numba]")
    document = _report(tmp_path)
    assert _records(document)["test_differential.py::test_forward_matches_reference[numba]"]["outcome"] == "xpassed"
    assert [p["line"] for p in document["expected_failures"]["passed"]] == [1]

    strict = suite(*args, "--roialign-strict-xfails")
    assert strict.ret == pytest.ExitCode.TESTS_FAILED
    assert_lines(strict.stdout, "*XPASS(strict)*", "*expected failures that passed — remove them from xfails.txt*")
    assert _records(_report(tmp_path))["test_differential.py::test_forward_matches_reference[numba]"]["outcome"] == "xpassed"


def test_passing_tests_of_a_broad_entry_that_also_matched_failures_say_so(suite, tmp_path):
    """A property-wide entry for a divergence that shows on some draws: its passing tests are listed,
    with how many of its tests failed as expected (so "remove" is not the only advice)."""
    (tmp_path / "xfails.txt").write_text(f"test_*[target:{ALIGNED}]  # aligned ignored: issue 7\n")
    result = suite(DIFFERENTIAL, str(SUITE / "test_edge_cases.py"), "-k", "test_forward_matches_reference or test_no_boxes",
                   f"--roialign-target={ALIGNED}", "--roialign-max-examples=2", "--roialign-xfails=xfails.txt",
                   "--roialign-report=report.json")
    assert result.ret == 0
    assert result.counts() == {"xfailed": 1, "xpassed": 4}
    assert_lines(result.stdout, "*expected failures that passed — remove them from xfails.txt*",
                 f"xfails.txt:1: test_*[target:{ALIGNED}]  # aligned ignored: issue 7",
                 "    passed: *test_no_boxes*", "    passed: *test_no_boxes*",
                 "    (1 other test(s) of this entry failed as expected: narrow the pattern, or keep it if the "
                 "divergence shows on some draws only)")
    passed = _report(tmp_path)["expected_failures"]["passed"]
    assert len(passed) == 4 and all(p["entry_failed_as_expected"] == 1 for p in passed)


def test_every_shipped_xfails_file_matches_tests_of_its_kernels(suite):
    """Every entry of every ``xfails/*.txt`` names a test collected for the kernels whose record ships
    it (one collection-only run with all of them: a pattern that matches nothing is a typo)."""
    from roialign_suite.implementations import registry

    shipped = {p.name: p for p in xf.shipped()}
    kernels = [i for i in registry.builtin() if i.xfails]
    assert {i.xfails for i in kernels} == set(shipped), "a shipped file no record names, or a record's missing file"
    for path in shipped.values():
        assert xf.load([str(path)])
    result = suite(str(SUITE), "--collect-only", "-q", f"--roialign-implementation={','.join(i.name for i in kernels)}",
                   *[f"--roialign-xfails={path}" for path in shipped.values()])
    assert result.ret == 0, result.stdout[-3000:]
    assert "match no collected test" not in result.stdout, result.stdout[-3000:]


# --- the options take effect ------------------------------------------------------------------------

COUNTING = """
import os
from hypothesis import given, settings, strategies as st

@given(st.integers())
def test_draws(x):
    with open(os.environ["DRAWS"], "a") as f:
        f.write(f"{settings.get_current_profile_name()} {settings().max_examples} {x}\\n")
"""


def _draws(suite, tmp_path, *args):
    out = tmp_path / f"draws-{len(list(tmp_path.glob('draws-*')))}.txt"
    os.environ["DRAWS"] = str(out)
    try:
        result = suite("test_counting.py", *args)
    finally:
        del os.environ["DRAWS"]
    assert result.ret == 0, result.stdout[-3000:]
    return [line.split() for line in out.read_text().splitlines()]


def test_max_examples_sets_how_many_examples_a_property_runs(suite, tmp_path):
    (tmp_path / "test_counting.py").write_text(COUNTING)
    assert len(_draws(suite, tmp_path, "--roialign-max-examples=3")) == 3
    assert len(_draws(suite, tmp_path, "--roialign-max-examples=7")) == 7


def test_a_seed_draws_the_same_examples_again(suite, tmp_path):
    (tmp_path / "test_counting.py").write_text(COUNTING)
    first = [x for *_, x in _draws(suite, tmp_path, "--roialign-seed=11", "--roialign-max-examples=20")]
    again = [x for *_, x in _draws(suite, tmp_path, "--roialign-seed=11", "--roialign-max-examples=20")]
    other = [x for *_, x in _draws(suite, tmp_path, "--roialign-seed=12", "--roialign-max-examples=20")]
    assert first == again
    assert first != other


def test_profile_option_chooses_the_profile(suite, tmp_path):
    (tmp_path / "test_counting.py").write_text(COUNTING)
    profile, max_examples, _ = _draws(suite, tmp_path, "--roialign-profile=dev", "--roialign-max-examples=2")[0]
    assert (profile, max_examples) == ("dev-max_examples=2", "2")
    result = suite("test_counting.py", "--roialign-profile=nonesuch")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert_lines(result.stderr, "ERROR: --roialign-profile: unknown profile 'nonesuch'; choose from ci, dev, thorough")


def test_derandomized_draws_do_not_depend_on_how_pytest_is_invoked(suite, tmp_path):
    """The ci profile draws the same examples for a test with a parametrize marker (here the box kinds),
    whether its node id is a checkout's (rootdir above ``properties/``) or ``roialign-suite check``'s."""
    args = (str(SUITE / "test_edge_cases.py"), "-k", "test_box_kind_behaves_like_the_reference",
            "--roialign-implementation=numba", "--roialign-max-examples=4")
    worst = {}
    for rootdir in (tmp_path, SUITE.parent):
        assert suite(*args, f"--roialign-report={tmp_path / 'report.json'}", rootdir=rootdir).ret == 0
        records = _report(tmp_path)["tests"]
        assert {r["nodeid"].startswith("properties/") for r in records} == {rootdir == SUITE.parent}
        worst[rootdir] = {r["test_id"]: r["worst_error_over_bound"] for r in records}
    from roialign_suite.properties.test_edge_cases import EDGE_KINDS

    assert len(worst[tmp_path]) == len(EDGE_KINDS) and worst[tmp_path] == worst[SUITE.parent]


# --- the report, end to end through `roialign-suite check` ------------------------------------------

SELECTED = ("(test_forward_matches_reference and not known_divergences) or test_no_boxes "
            "or test_bad_input_raises_a_clear_error or test_torchvision_cuda_agrees_with_ours")


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    """``roialign-suite check`` on our kernel and the first-box-only kernel, a few properties: its output,
    exit status, pytest's own outcome of each test (from -v) and the report files."""
    where = tmp_path_factory.mktemp("check")
    (where / "xfails.txt").write_text("test_no_boxes[numba]  # listed to show in the summary; passes\n")
    # This copy of the suite (paths.child_environment), and report_kernels for the target.
    env = paths.child_environment(dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])))
    env.pop("ROIALIGN_PROFILE", None)
    command = [sys.executable, "-m", "roialign_suite", "check", "--target", FIRST_BOX, "--implementation", "numba",
               "--xfails", "xfails.txt", "--report", "out/report.json", "--summary", "out/summary.md",
               "--profile", "ci", "--max-examples", "10",
               "--", "--roialign-with-builtins", "-k", SELECTED, "-v", "-p", "no:cacheprovider"]
    done = subprocess.run(command, cwd=where, env=env, capture_output=True, text=True, timeout=900)
    assert (where / "out/report.json").is_file(), done.stdout[-5000:] + done.stderr[-5000:]
    outcomes = {}
    for line in done.stdout.splitlines():
        found = re.match(r"^(\S*::\S+) (PASSED|FAILED|SKIPPED|XFAIL|XPASS|ERROR)\b", line)
        if found:
            outcomes[found.group(1).split("::", 1)[1]] = found.group(2)
    return {"done": done, "outcomes": outcomes, "report": json.loads((where / "out/report.json").read_text()),
            "summary": (where / "out/summary.md").read_text(), "where": where}


PYTEST_OUTCOME = {"PASSED": "passed", "FAILED": "failed", "SKIPPED": "skipped", "XFAIL": "xfailed", "XPASS": "xpassed"}


def test_report_has_a_record_for_every_test_with_its_outcome(checked):
    done, document = checked["done"], checked["report"]
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, done.stdout[-3000:] + done.stderr[-3000:]
    assert document["schema"] == SCHEMA and document["exit_status"] == 1
    assert checked["outcomes"], done.stdout[-3000:]
    records = {r["nodeid"].split("::", 1)[1]: r for r in document["tests"]}
    assert {name: PYTEST_OUTCOME[o] for name, o in checked["outcomes"].items()} == \
        {name: r["outcome"] for name, r in records.items()}
    implementations = {"numba", f"target:{FIRST_BOX}"}
    assert {i["name"] for i in document["implementations"]} == implementations
    for prop in ("test_forward_matches_reference", "test_no_boxes"):
        assert {r["implementation"] for r in records.values() if r["property"] == prop} == implementations
    by_id = _records(document)
    ours = by_id["test_differential.py::test_forward_matches_reference[numba]"]
    theirs = by_id[f"test_differential.py::test_forward_matches_reference[target:{FIRST_BOX}]"]
    assert ours["outcome"] == "passed" and 0 <= ours["worst_error_over_bound"] <= 1
    assert ours["worst_label"] == "numba forward"
    assert theirs["outcome"] == "failed" and theirs["phase"] == "call"
    assert 1 < theirs["worst_error_over_bound"] <= UNBOUNDED
    assert by_id["test_edge_cases.py::test_no_boxes[numba-tensor-float32]"]["parameters"] == \
        {"as_list": False, "dtype": "float32"}
    assert by_id["test_edge_cases.py::test_no_boxes[numba-tensor-float32]"]["outcome"] == "xpassed"
    # our_implementation: only numba is ours
    assert by_id["test_bad_input.py::test_bad_input_raises_a_clear_error[numba]"]["implementation"] == "numba"
    assert {r["implementation"] for r in records.values() if r["property"] == "test_bad_input_raises_a_clear_error"} \
        == {"numba"}
    cuda = by_id["test_differential.py::test_torchvision_cuda_agrees_with_ours"]
    assert cuda["implementation"] is None
    if cuda["outcome"] == "skipped":  # no GPU here: the reason is recorded
        assert cuda["reason"].startswith("torchvision-cuda: ")
    header = document["hypothesis"]
    assert (header["profile"], header["max_examples"], header["derandomize"]) == ("ci-max_examples=10", 10, True)
    assert set(document["environment"]["packages"]) >= {"torch", "torchvision", "numba"}
    assert document["environment"]["packages"]["torch"]


def test_reported_minimal_example_code_reproduces_the_failure(checked):
    record = _records(checked["report"])[f"test_differential.py::test_forward_matches_reference[target:{FIRST_BOX}]"]
    (example,) = record["failure"]["examples"]
    assert example["error"].startswith("AssertionError: ") and example["error"] in record["failure"]["message"]
    assert example["falsifying_example"].startswith("Failing test case: test_forward_matches_reference(")
    assert example["reproduction"] and example["reproduce_failure"].startswith("@reproduce_failure(")
    assert example["code_kind"] == "call"
    code = example["code"]
    assert "RoIAlignCase(" in code and f"registry.resolve('target:{FIRST_BOX}')" in code
    # The minimal example has two boxes (the bug needs two), and running the code fails the same way.
    case = re.search(r"data=Draws\(\[(RoIAlignCase\(.*\))\]\),\n", code).group(1)
    from roialign_suite.properties.strategies import RoIAlignCase

    assert eval(case, {"RoIAlignCase": RoIAlignCase}).num_boxes == 2
    sys.path.insert(0, str(HERE))
    try:
        with pytest.raises(AssertionError, match=re.escape(example["error"].split(": ", 1)[1].split(" got ")[0])):
            exec(compile(code, "<reported example>", "exec"), {"__name__": "reported_example"})
        # ... and on our kernel the same case passes: it is the bug that fails it.
        exec(compile(code.replace(f"registry.resolve('target:{FIRST_BOX}')", "registry.resolve('numba')"),
                     "<reported example on ours>", "exec"), {"__name__": "reported_example"})
    finally:
        sys.path.remove(str(HERE))


def test_summary_has_the_table_the_failure_with_its_example_and_the_expected_failures(checked):
    summary, document = checked["summary"], checked["report"]
    assert summary == markdown(document)
    lines = summary.splitlines()
    header = next(line for line in lines if line.startswith("| property |"))
    assert header == f"| property | `target:{FIRST_BOX}` | `numba` | (no implementation) |"
    row = next(line for line in lines if line.startswith("| `test_forward_matches_reference` |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1].startswith("FAIL · ") and cells[2].startswith("pass · ") and cells[3] == ""
    assert next(line for line in lines if line.startswith("| `test_no_boxes` |")).split("|")[3].strip().startswith("xpass 4/4")
    cuda = next(line for line in lines if line.startswith("| `test_torchvision_cuda_agrees_with_ours` |"))
    expected = {"skipped": "skip", "passed": "pass"}[_records(document)["test_differential.py::test_torchvision_cuda_agrees_with_ours"]["outcome"]]
    assert [c.strip() for c in cuda.strip("|").split("|")][1:3] == ["", ""]
    assert [c.strip() for c in cuda.strip("|").split("|")][3].startswith(expected)
    failure = summary.index(f"### `test_differential.py::test_forward_matches_reference[target:{FIRST_BOX}]`")
    code = _records(document)[f"test_differential.py::test_forward_matches_reference[target:{FIRST_BOX}]"]["failure"]["examples"][0]["code"]
    assert summary.index("```python\n" + code, failure) > failure
    notes = summary[summary.index("## Expected failures"):]
    assert "`test_no_boxes[numba]` (xfails.txt:1) | listed to show in the summary; passes | 4 xpassed |" in notes
    assert "### Expected failures that passed — remove them from `xfails.txt`" in notes


# --- reading a failure's text when the exception is not at hand ---------------------------------------

def test_examples_are_read_back_from_the_failure_text():
    text = """\
    def test(...):
>       raise AssertionError(
E       AssertionError: x forward differs
E       Failing test case: test_forward_matches_reference(
E           implementation=registry.by_name()['numba'],
E           case=RoIAlignCase(shape=(
E               1,  # or any other generated value
E            ),
E            boxes=((0, 0.0, 0.0, 4.0, 4.0),)),
E       )
E       # reproduction (run from the repository root)
E       case = RoIAlignCase(shape=(1,), boxes=((0, 0.0, 0.0, 4.0, 4.0),))
E       print(case)
E       
E       You can reproduce this test case by temporarily adding @reproduce_failure('6.1.0', b'AXic') as a decorator on your test function

properties/tolerances.py:232: AssertionError"""
    (example,) = examples_from_text(text)
    assert example["falsifying_example"].startswith("Failing test case: test_forward_matches_reference(\n")
    assert example["falsifying_example"].endswith("boxes=((0, 0.0, 0.0, 4.0, 4.0),)),\n)")
    assert example["reproduction"] == ["# reproduction (run from the repository root)\n"
                                       "case = RoIAlignCase(shape=(1,), boxes=((0, 0.0, 0.0, 4.0, 4.0),))\nprint(case)\n"]
    assert example["reproduce_failure"] == "@reproduce_failure('6.1.0', b'AXic')"


CONSTANTS = "ODD_NUMBERS = (1234567, 7654321, 2222223, 9999991, 1234.5678, 8765.4321, 2222.2223, 9999.9991)\n"
DRAWING = """
import os, sys
from hypothesis import given, strategies as st
if os.environ.get("IMPORT_CONSTANTS"):
    import constants_here  # a module of the user's, full of literals

@given(st.floats(-1e7, 1e7), st.integers(0, 10**7))
def test_draws(x, n):
    print("drew", x, n)
"""


def test_derandomized_draws_do_not_depend_on_what_is_imported(tmp_path):
    """Hypothesis draws literals found in imported local modules; under the ci profile it must not,
    or a run draws differently depending on which modules happen to be loaded (profiles.ignore_imported_constants)."""
    (tmp_path / "constants_here.py").write_text(CONSTANTS)
    (tmp_path / "test_drawing.py").write_text(DRAWING)

    def draws(**env) -> list:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "roialign_suite.pytest_plugin", "-p", "no:cacheprovider", "-s", "-q",
             "--roialign-profile=ci", "--roialign-max-examples=200", "test_drawing.py"],
            cwd=tmp_path, env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return [line for line in done.stdout.splitlines() if line.startswith("drew ")]

    without, with_constants = draws(), draws(IMPORT_CONSTANTS="1")
    assert len(without) == 200
    assert with_constants == without
