"""Every option of the suite, declared once (:data:`OPTIONS`), and one validator per kind of value.

The pytest plugin adds each as ``--roialign-NAME`` (:func:`add_to_pytest`) and the
``roialign-suite`` subcommands as ``--NAME`` (:func:`add_to_argparse`), then forward the
given ones to the pytest child as ``--roialign-NAME=VALUE`` (:func:`forwarded`).

A validator takes the option's string and returns the value (or raises ``ValueError``
with the problem in one line). The command applies them as argparse types, and its
parser prints one line and exits 2 (:class:`OneLineParser`); the plugin applies them in
``pytest_configure`` of a suite run (:func:`validate_pytest`), where a ``pytest.UsageError``
gives pytest's one ``ERROR:`` line and its usage status, 4.

Stdlib only at import: the plugin imports this module in every pytest process. The
validators that need the suite's registries import them when called, which happens
only when the option is given.
"""
from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

PYTEST_PREFIX = "--roialign-"
TEST_EXTRA = "pip install 'roialign-suite[test]'"


# --- validators: str -> value, ValueError with a one-line reason ---------------------

def module_attr(value: str) -> str:
    """``MODULE:ATTR`` in form (both parts present, one colon)."""
    module, sep, attr = value.partition(":")
    if not sep:
        head, dot, tail = value.rpartition(".")
        hint = f"; did you mean {head + ':' + tail!r}?" if dot and head and tail else ""
        raise ValueError(f"expected MODULE:ATTR (a colon before the attribute), got {value!r}{hint}")
    if not module or not attr or ":" in attr:
        raise ValueError(f"expected MODULE:ATTR, got {value!r}")
    return value


def callable_object(value: str) -> str:
    """``MODULE:ATTR`` naming a callable that imports (the spec is returned; the object is loaded again
    where it is used). The module is imported as the pytest child would: from ``sys.path``."""
    module_name, _, attr = module_attr(value).partition(":")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"cannot import module {module_name!r} ({error})") from None
    except Exception as error:  # the user's module failed while importing
        raise ValueError(f"importing {module_name!r} raised {type(error).__name__}: {error}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{value!r} is a {type(obj).__name__}, not callable")
    return value


_DEVICE = re.compile(r"(cpu|cuda)(:\d+)?")


def device(value: str) -> str:
    """``cpu``, ``cuda`` or ``cuda:N`` (the devices a target runs on)."""
    if not _DEVICE.fullmatch(value):
        raise ValueError(f"unknown device {value!r}; expected cpu, cuda or cuda:N")
    return value


def integer(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"expected an integer, got {value!r}") from None


def positive_integer(value: str) -> int:
    number = integer(value)
    if number < 1:
        raise ValueError(f"expected an integer >= 1, got {value!r}")
    return number


def non_negative_number(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"expected a number, got {value!r}") from None
    if not number >= 0:  # NaN too
        raise ValueError(f"expected a number >= 0, got {value!r}")
    return number


def existing_file(value: str) -> str:
    if not os.path.isfile(value):
        raise ValueError(f"no such file: {value!r}")
    return value


def folder(value: str) -> str:
    """A folder, existing or to be made (it must not be a file)."""
    if os.path.exists(value) and not os.path.isdir(value):
        raise ValueError(f"{value!r} is not a folder")
    return value


def iso_time(value: str) -> str:
    """An ISO 8601 time (``2026-12-07T14:38:25+00:00``)."""
    import datetime

    try:
        datetime.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"expected an ISO 8601 time such as 2026-12-07T14:38:25+00:00, got {value!r}") from None
    return value


def profile(value: str) -> str:
    """A profile of ``roialign_suite.properties.profiles``."""
    from roialign_suite.properties import profiles

    if value not in profiles.PROFILES:
        raise ValueError(f"unknown profile {value!r}; choose from {', '.join(sorted(profiles.PROFILES))}")
    return value


def level_dialect(value: str) -> str:
    """A dialect of ``roialign_suite.impl.levels`` (imports torch: only when the option is given)."""
    from roialign_suite.impl.levels import DIALECTS

    if value not in DIALECTS:
        raise ValueError(f"unknown dialect {value!r}; choose from {', '.join(sorted(DIALECTS))}")
    return value


def names(value: str) -> List[str]:
    """One value of a repeatable name option, possibly comma-separated."""
    return [n.strip() for n in value.split(",") if n.strip()]


def known_implementations() -> List[str]:
    """Names ``--implementation`` accepts: the registry's built-ins, less the definition (the oracle
    itself). The model workloads' poolers are built-ins too."""
    from roialign_suite.implementations import registry

    return sorted(n for n, i in registry.by_name().items() if not i.definition)


def implementation(value: str) -> str:
    """Built-in implementation name(s), comma-separated allowed (imports the registry: torch)."""
    wanted = names(value)
    if not wanted:
        raise ValueError("expected a name")
    known = known_implementations()
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ValueError(f"unknown implementation {', '.join(map(repr, unknown))}; choose from {', '.join(known)}")
    return value


# Which kernels' calls run in a worker process (properties/isolation.py), and how long one may run.
ISOLATE_CHOICES = ("third-party", "all", "none")
DEFAULT_CALL_TIMEOUT_S = 60.0


def isolate_choice(value: str) -> str:
    if value not in ISOLATE_CHOICES:
        raise ValueError(f"unknown choice {value!r}; choose from {', '.join(ISOLATE_CHOICES)}")
    return value


def positive_number(value: str) -> float:
    number = non_negative_number(value)
    if number == 0:
        raise ValueError(f"expected a number > 0, got {value!r}")
    return number


def workload_names(value: str) -> str:
    if not names(value):
        raise ValueError("expected a name")
    return value


# --- the declarations -------------------------------------------------------------------

# The commands: check, bench, verify, fuzz; jobs: gate and report (their pytest options after --).
CHECK, BENCH, VERIFY, FUZZ, JOBS, ECOSYSTEM = "check", "bench", "verify", "fuzz", "jobs", "ecosystem"
# Commands with options of their own only (no --roialign- form): gate and report (each job's own parser),
# and the benchmark scripts.
GATE, REPORT, CROSSOVER, IPEX_BENCH, GPU_RECORD = "gate", "report", "crossover", "ipex-bench", "gpu-record"
WHERE_TIME_GOES = "where-time-goes"
# roialign-suite track's actions (benchmarks/track.py).
TRACK_RECORD, TRACK_CHECK, TRACK_PUBLISH = "track-record", "track-check", "track-publish"
TRACK = (TRACK_RECORD, TRACK_CHECK, TRACK_PUBLISH)


@dataclass(frozen=True)
class Option:
    """One option: ``--roialign-NAME`` in pytest, ``--NAME`` in the commands listed in ``commands``."""

    name: str
    help: str
    validate: Optional[Callable[[str], Any]] = None
    default: Any = None
    metavar: Optional[str] = None
    repeatable: bool = False  # action="append"
    flag: bool = False  # action="store_true"
    commands: Tuple[str, ...] = ()
    pytest: bool = True  # also a --roialign-NAME pytest option (False: a command's own option)
    type: Optional[Callable[[str], Any]] = None  # argparse type of a command's own option

    @property
    def dest(self) -> str:
        """The pytest ``config.option`` attribute."""
        return "roialign_" + self.name.replace("-", "_")

    def given(self, value) -> bool:
        return value not in (None, False, [], self.default)


OPTIONS: Tuple[Option, ...] = (
    Option("target", "verify (and time) this roi_align (torchvision.ops.roi_align's signature) instead of the "
           "built-ins; repeatable; treated as third-party", callable_object, default=[], metavar="MODULE:ATTR",
           repeatable=True, commands=(CHECK, BENCH, VERIFY, FUZZ, JOBS)),
    Option("device", "device the targets run on (cpu, cuda or cuda:N); default cpu", device, default="cpu",
           metavar="DEVICE", commands=(CHECK, BENCH, VERIFY, FUZZ, JOBS)),
    Option("implementation", "built-in implementation(s) to verify or time (repeatable or comma-separated; "
           "default: the registry's defaults; see roialign_suite.implementations.registry)", implementation,
           default=[], metavar="NAME", repeatable=True, commands=(CHECK, FUZZ, ECOSYSTEM)),
    Option("with-builtins", "with --roialign-target, also verify the built-in implementations", flag=True,
           default=False, commands=(CHECK, FUZZ)),
    Option("level-mapper", "LevelMapper class under test (torchvision's constructor and call)", callable_object,
           metavar="MODULE:ATTR", commands=(CHECK, FUZZ)),
    Option("level-dialect", "the level formula the level mapper claims to follow (torchvision, "
           "maskrcnn_benchmark, detectron2; default torchvision)", level_dialect, default="torchvision",
           metavar="DIALECT", commands=(CHECK, FUZZ)),
    Option("profile", "Hypothesis profile: ci (derandomized), dev, thorough (default: a profile your conftest "
           "loaded, else env ROIALIGN_PROFILE, else ci under CI, else dev)", profile, metavar="NAME",
           commands=(CHECK, ECOSYSTEM)),
    Option("max-examples", "examples per property (overrides the profile)", positive_integer, metavar="N",
           commands=(CHECK, ECOSYSTEM)),
    Option("seed", "seed every property (a random, reproducible run; turns derandomization off)", integer,
           metavar="N", commands=(CHECK, ECOSYSTEM)),
    Option("isolate", "which kernels' calls run in a worker process, so that a crash or a hang is a finding and "
           "the run goes on: third-party (every kernel but ours; default), all, none", isolate_choice,
           default="third-party", metavar="WHICH", commands=(CHECK, VERIFY, FUZZ, ECOSYSTEM)),
    Option("call-timeout", "seconds an isolated call may run before it counts as a hang: its worker is killed "
           f"and the example fails (default {DEFAULT_CALL_TIMEOUT_S:g})", positive_number,
           default=DEFAULT_CALL_TIMEOUT_S, metavar="SECONDS",
           commands=(CHECK, VERIFY, FUZZ, ECOSYSTEM)),
    Option("corpus", "replay this corpus folder instead of the shipped one, and write findings there (default: "
           "env ROIALIGN_CORPUS; a folder that does not exist yet holds no cases; fuzz: a checkout's "
           "properties/corpus/fuzz, else roialign-corpus/ here)", folder, metavar="DIR",
           commands=(CHECK, FUZZ)),
    Option("xfails", "expected-failures file (test id or property[implementation] patterns, each with a "
           "reason); repeatable", existing_file, default=[], metavar="FILE", repeatable=True, commands=(CHECK,)),
    Option("strict-xfails", "a listed expected failure that passes, or an entry that matches no collected "
           "test, fails the run (default: reported only)", flag=True, default=False, commands=(CHECK,)),
    Option("report", "write every property x implementation outcome, worst error/bound and minimal example "
           "as JSON", metavar="FILE.json", commands=(CHECK,)),
    Option("summary", "write a Markdown summary of the report", metavar="FILE.md", commands=(CHECK,)),
    Option("quick", "benchmarks: toy workloads, one round unless --roialign-bench-min-rounds (CI smoke run; gate: "
           "checks the pipeline, not the thresholds; report and ecosystem --bench: the run is not saved)", flag=True,
           default=False, commands=(BENCH, GATE, REPORT, ECOSYSTEM, TRACK_RECORD, WHERE_TIME_GOES)),
    Option("workload", "benchmarks: workload(s) to time (repeatable or comma-separated; default all)",
           workload_names, default=[], metavar="NAME", repeatable=True),
    Option("bench-budget", "benchmarks: seconds of timed rounds per case (default 2)", non_negative_number,
           metavar="SECONDS"),
    Option("bench-min-rounds", "benchmarks: fewest timed rounds per case", positive_integer, metavar="N"),
    # The commands' own options.
    Option("bench", "time every installed third-party kernel beside ours and torchvision on the box head (P2 and "
           "the FPN pooler, forward and forward+backward) instead of checking them: report and kernels.md under "
           "--out (pytest arguments after --)", flag=True, default=False, commands=(ECOSYSTEM,), pytest=False),
    Option("run", "run the benchmarks first (gate, track record: the gated workloads; report: every workload, "
           "saved under .benchmarks/)", flag=True, default=False, commands=(GATE, REPORT, TRACK_RECORD), pytest=False),
    Option("results", "pytest-benchmark JSON to read (default: the latest run saved under .benchmarks/)",
           metavar="FILE.json", commands=(GATE, REPORT, TRACK_RECORD), pytest=False, type=Path),
    Option("repeat", "track record --run: benchmark runs, each recorded (default 1; a commit needs "
           "min_runs_after runs of benchmarks/track.toml before its step can fail the check)", positive_integer,
           default=1, metavar="N", commands=(TRACK_RECORD,), pytest=False),
    Option("store", "the history folder: one JSON file per run, merged by copying (default roialign-history/ "
           "here)", folder, metavar="DIR", commands=TRACK, pytest=False),
    Option("machine", "a label for this machine in the history (default: its CPU and cores)", metavar="NAME",
           commands=(TRACK_RECORD,), pytest=False),
    Option("commit", "record the run under this commit (default: the run's commit_info, pytest-benchmark's "
           "git state)", metavar="ID", commands=(TRACK_RECORD,), pytest=False),
    Option("commit-time", "with --commit: the commit's time, ISO 8601 (it orders the history)", iso_time, metavar="TIME",
           commands=(TRACK_RECORD,), pytest=False),
    Option("config", "track check's rule (default benchmarks/track.toml)", existing_file, metavar="FILE.toml",
           commands=(TRACK_CHECK, TRACK_PUBLISH), pytest=False),
    Option("out", "the folder written (report, crossover: report/; ecosystem: roialign-ecosystem/, with --bench "
           "roialign-ecosystem/bench/; fuzz: "
           ".hypothesis/fuzz/TIME; gpu-record: benchmarks/records/DATE-cuda; track publish: report/track)",
           metavar="DIR", commands=(REPORT, CROSSOVER, ECOSYSTEM, FUZZ, GPU_RECORD, TRACK_PUBLISH), pytest=False,
           type=Path),
    Option("rounds", "timed calls per measurement (their median is reported)", positive_integer, metavar="N",
           commands=(CROSSOVER, IPEX_BENCH, WHERE_TIME_GOES), pytest=False),
    Option("threads", "torch and Numba threads while timing (default 2)", positive_integer, default=2, metavar="N",
           commands=(CROSSOVER, IPEX_BENCH, WHERE_TIME_GOES), pytest=False),
)


def add_pytest_arguments(parser: argparse.ArgumentParser) -> None:
    """The gate and report jobs' positional pytest arguments for ``--run`` (after ``--``), as ``pytest_args``."""
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments for --run (after --)")


def _argparse_kwargs(option: Option) -> Dict[str, Any]:
    if option.flag:
        return dict(action="store_true", help=option.help)
    return dict(action="append" if option.repeatable else "store", metavar=option.metavar, help=option.help)


def add_to_pytest(group) -> None:
    """The plugin's options: strings, validated in a suite run's ``pytest_configure``
    (pytest's own parser would print its usage and four lines)."""
    for option in OPTIONS:
        if option.pytest:
            group.addoption(PYTEST_PREFIX + option.name, dest=option.dest, default=option.default,
                            **_argparse_kwargs(option))


def validate_pytest(config, usage_error) -> None:
    """Replace each given option's value by its validated value; a bad one raises ``usage_error``
    (``pytest.UsageError``) naming the option."""
    for option in OPTIONS:
        value = getattr(config.option, option.dest, None)
        if not option.pytest or option.validate is None or not option.given(value):
            continue
        try:
            checked = [option.validate(v) for v in value] if option.repeatable else option.validate(value)
        except ValueError as error:
            raise usage_error(f"{PYTEST_PREFIX}{option.name}: {error}") from None
        setattr(config.option, option.dest, checked)


def given_pytest(config) -> List[str]:
    """The ``--roialign-*`` options given on this run's command line (or ini ``addopts``)."""
    return [PYTEST_PREFIX + o.name for o in OPTIONS if o.pytest and o.given(getattr(config.option, o.dest, None))]


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line on stderr and exits 2 (no usage block)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _argparse_type(validate: Callable[[str], Any]):
    def checked(value: str):
        try:
            return validate(value)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    checked.__name__ = validate.__name__
    return checked


def add_to_argparse(parser: argparse.ArgumentParser, command: str, **defaults: Any) -> None:
    """The options of ``command`` (:data:`CHECK`, :data:`BENCH`, :data:`JOBS`, ...) as ``--NAME``. A suite
    option's default is None (not given: the plugin's default applies in the child); a command's own
    option (``pytest=False``) defaults to ``defaults[dest without roialign_]``, else its declared default."""
    for option in OPTIONS:
        if command in option.commands:
            validate = option.validate or option.type
            extra = {} if validate is None or option.flag else {"type": _argparse_type(validate)}
            default = defaults.get(option.dest[len("roialign_"):], option.default) if not option.pytest else None
            parser.add_argument("--" + option.name, dest=option.dest, default=default, **_argparse_kwargs(option),
                                **extra)


def forwarded(args: argparse.Namespace) -> List[str]:
    """The given options of a parsed command line as the plugin's ``--roialign-NAME=VALUE`` arguments."""
    out: List[str] = []
    for option in OPTIONS:
        value = getattr(args, option.dest, None)
        if not option.pytest or value is None or value is False:
            continue
        if option.flag:
            out.append(PYTEST_PREFIX + option.name)
        else:
            out += [f"{PYTEST_PREFIX}{option.name}={v}" for v in (value if option.repeatable else [value])]
    return out


def importable_from_cwd() -> None:
    """Put the working directory first on ``sys.path``, as ``python -m pytest`` does for the child,
    so the command resolves a ``MODULE:ATTR`` the child will find."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
