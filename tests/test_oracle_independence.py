"""The oracles share nothing with the code under test: ``reference/`` imports nothing from ``impl/``
or ``implementations/`` (the adapters and records of the kernels under test).

A bug in code both sides used would be invisible to every comparison between
them, so the rule is checked twice: statically (no import statement in
``reference/*.py`` names a forbidden package, absolutely or relatively)
and dynamically (importing every reference module in a fresh interpreter
loads no module of a forbidden package, whatever the route).
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "reference"
PACKAGE = "roialign_suite"
# The code under test: our kernels, and the adapters and records of every implementation.
FORBIDDEN = (f"{PACKAGE}.impl", f"{PACKAGE}.implementations")
REFERENCE_FILES = sorted(REFERENCE.glob("*.py"))


def _is_forbidden(module: str) -> bool:
    return any(module == f or module.startswith(f + ".") for f in FORBIDDEN)


def forbidden_imports(path: Path) -> list:
    """``(line, statement)`` of every import in ``path`` that reaches a :data:`FORBIDDEN` package.

    Relative imports are resolved against ``roialign_suite.reference`` (the
    package ``path`` belongs to), so ``from ..impl import x`` and ``from .. import impl`` count.
    """
    # For a module of the package and for its __init__.py alike, level 1 is the package itself.
    package = f"{PACKAGE}.reference".split(".")
    source = path.read_text()
    found = []
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                up = node.level - 1
                if up >= len(package):
                    raise AssertionError(f"{path}:{node.lineno}: relative import beyond the top-level package")
                module = ".".join(package[: len(package) - up] + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # `from roialign_suite import impl` imports the module roialign_suite.impl.
            targets = [module] + [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        if any(_is_forbidden(t) for t in targets):
            found.append((node.lineno, ast.get_source_segment(source, node)))
    return found


def test_reference_files_are_found():
    names = {p.name for p in REFERENCE_FILES}
    assert {"__init__.py", "inputs.py", "roi_align.py", "levels.py", "pooler.py"} <= names


@pytest.mark.parametrize("path", REFERENCE_FILES, ids=lambda p: p.name)
def test_no_reference_file_imports_the_code_under_test(path):
    assert forbidden_imports(path) == [], f"{path.relative_to(REPO)} imports from one of {FORBIDDEN}"


@pytest.mark.parametrize(
    "source",
    [
        "from roialign_suite.impl.inputs import rois_from_boxes",
        "import roialign_suite.impl.levels as levels",
        "from roialign_suite import impl",
        "from ..impl import pooler",
        "from .. import impl",
        "def f():\n    from roialign_suite.impl import roi_align\n",
        "from roialign_suite.implementations.torchvision import roi_align_cpu",
        "from roialign_suite import implementations",
        "from ..implementations import registry",
        "import roialign_suite.implementations.records",
    ],
)
def test_the_static_check_sees_every_spelling(tmp_path, source):
    # The checker itself: each way of importing impl or implementations is caught.
    path = tmp_path / "module.py"
    path.write_text(source + "\n")
    assert forbidden_imports(path)


def test_the_static_check_passes_other_imports(tmp_path):
    path = tmp_path / "module.py"
    path.write_text("from roialign_suite.reference import inputs\nfrom . import levels\nimport torch\nimpl = 1\n"
                    "import roialign_suite.implementations_elsewhere\n")
    assert forbidden_imports(path) == []


_CHILD = f"FORBIDDEN = {FORBIDDEN!r}\n" + """
import importlib, json, pkgutil, sys
import roialign_suite.reference as reference
names = sorted(m.name for m in pkgutil.iter_modules(reference.__path__, reference.__name__ + "."))
for name in names:
    importlib.import_module(name)
print(json.dumps({
    "imported": names,
    "forbidden": sorted(m for m in sys.modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)),
    "reference_file": reference.__file__,
}))
"""


def test_importing_every_reference_module_loads_nothing_under_test():
    # A fresh interpreter, run from the repository root so it imports this checkout.
    result = subprocess.run(
        [sys.executable, "-c", _CHILD], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(report["reference_file"]).resolve() == (REFERENCE / "__init__.py").resolve()
    expected = {f"{PACKAGE}.reference.{p.stem}" for p in REFERENCE_FILES if p.name != "__init__.py"}
    assert set(report["imported"]) == expected
    assert report["forbidden"] == [], f"importing the reference loaded {report['forbidden']}"
