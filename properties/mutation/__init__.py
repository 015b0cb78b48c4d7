"""Mutation self-check: plant one known bug at a time and see the property suite catch it.

- ``mutants``: the catalogue (``MUTANTS``): each entry an exact snippet of a
  source file and the buggy code that replaces it, with its bug class.
- ``smoke``: the "does the mutated code still run" call made before the suite,
  so a mutant that merely breaks the import counts as INVALID, not caught.
- ``plugin``: a pytest plugin that refuses to run unless ``impl`` and
  ``reference`` come from the mutated copy.
- ``roialign-suite mutate``: the runner (``--help``; ``tox -e mutate``).
"""
