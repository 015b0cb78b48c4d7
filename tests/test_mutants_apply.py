"""The mutation catalogue still fits the code: every planted bug applies exactly once and changes the program.

When the code a mutant targets is edited, its snippet stops matching and this
fails, instead of the self-check silently testing nothing. (Whether the
suite catches each mutant is ``roialign-suite mutate``'s job.)
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from roialign_suite.properties.mutation.mutants import MUTANTS, PROPERTY_SUITES, UNIT_SUITES, Mutant, MutantDoesNotApply

REPO = Path(__file__).resolve().parents[1]

# The bug classes the issue asks the self-check to cover.
REQUIRED_CLASSES = {
    "offset", "clamp", "grid rounding", "sample position", "denominator", "boundary comparison",
    "swapped axes", "swapped weights", "batch index", "channel index", "gradient accumulation",
    "gradient scaling", "level mapper", "pooler",
}


def _source(mutant: Mutant) -> str:
    return (REPO / mutant.path).read_text()


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.id)
def test_original_snippet_occurs_exactly_once(mutant):
    assert _source(mutant).count(mutant.original) == 1, f"{mutant.id}: snippet not found exactly once in {mutant.path}"


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.id)
def test_mutated_source_parses_and_differs(mutant):
    """The replacement is valid Python and changes the syntax tree (not just a comment or whitespace)."""
    source = _source(mutant)
    mutated = mutant.apply(source)
    assert ast.dump(ast.parse(mutated)) != ast.dump(ast.parse(source))


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.id)
def test_target_has_suites(mutant):
    assert mutant.path in PROPERTY_SUITES and mutant.path in UNIT_SUITES


def test_apply_refuses_a_snippet_that_is_missing_or_repeated():
    mutant = Mutant("m", "offset", "", "x.py", "a = 1\n", "a = 2\n")
    with pytest.raises(MutantDoesNotApply, match="0 times"):
        mutant.apply("b = 1\n")
    with pytest.raises(MutantDoesNotApply, match="2 times"):
        mutant.apply("a = 1\na = 1\n")


def test_ids_are_unique():
    ids = [m.id for m in MUTANTS]
    assert len(ids) == len(set(ids))


def test_catalogue_covers_the_required_bug_classes():
    assert len(MUTANTS) >= 24
    assert REQUIRED_CLASSES <= {m.bug_class for m in MUTANTS}
