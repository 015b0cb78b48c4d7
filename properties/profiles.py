"""Hypothesis profiles for the property suite.

- ``ci``: derandomized (same examples every run, so a red CI is replayable by
  re-running it), no example database, bounded example counts.
- ``dev``: the local default; random, remembers failures in ``.hypothesis/``.
- ``thorough``: many more examples, for a long hunt.

Choice, first match wins: pytest's ``--hypothesis-profile NAME`` (Hypothesis's
own option, applied after this module loads), env ``ROIALIGN_PROFILE``,
``ci`` when env ``CI`` is set, else ``dev``.
"""
from __future__ import annotations

import os
from typing import Mapping, Optional

from hypothesis import HealthCheck, settings

# Numba compiles (or loads its cache) on the first call, and the float64
# reference is plain Python loops: example timings vary too much for a deadline.
_COMMON = dict(
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

PROFILES = {
    "ci": dict(_COMMON, derandomize=True, database=None, max_examples=30),
    "dev": dict(_COMMON, max_examples=40),
    "thorough": dict(_COMMON, max_examples=1000),
}


def register() -> None:
    for name, options in PROFILES.items():
        settings.register_profile(name, **options)


def chosen(environ: Mapping[str, str] = os.environ) -> str:
    """The profile named by the environment (the pytest option overrides it later)."""
    name: Optional[str] = environ.get("ROIALIGN_PROFILE")
    if name:
        if name not in PROFILES:
            raise ValueError(f"ROIALIGN_PROFILE={name!r} is not one of {sorted(PROFILES)}")
        return name
    return "ci" if environ.get("CI") else "dev"


def load(environ: Mapping[str, str] = os.environ) -> str:
    register()
    name = chosen(environ)
    settings.load_profile(name)
    return name
