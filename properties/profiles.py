"""Hypothesis profiles for the property suite.

- ``ci``: derandomized (same examples every run, so a red CI is replayable by
  re-running it), no example database, bounded example counts.
- ``dev``: the local default; random, remembers failures in ``.hypothesis/``.
- ``thorough``: many more examples, for a long hunt.

Choice, first match wins (``roialign_suite.pytest_plugin.load_profile``): ``--roialign-profile NAME``,
Hypothesis's own ``--hypothesis-profile``, a profile the user's conftest loaded, env
``ROIALIGN_PROFILE``, ``ci`` when env ``CI`` is set, else ``dev``.
``--roialign-max-examples`` and ``--roialign-seed`` derive a profile from the
chosen one (a seed turns derandomization off: the run is random but
reproducible from that seed).

A derandomized profile also keeps Hypothesis from drawing constants found in
the modules that happen to be imported (``ignore_imported_constants``).
"""
from __future__ import annotations

import os
from typing import Mapping, Optional


# Numba compiles (or loads its cache) on the first call, and the float64
# reference is plain Python loops: example timings vary too much for a deadline.
_COMMON = dict(
    deadline=None,
    print_blob=True,
    suppress_health_check=("too_slow", "data_too_large"),  # HealthCheck names
)

PROFILES = {
    "ci": dict(_COMMON, derandomize=True, database=None, max_examples=30),
    "dev": dict(_COMMON, max_examples=40),
    "thorough": dict(_COMMON, max_examples=1000),
}


def register() -> None:
    """Register the profiles with Hypothesis (imported here: the plugin imports this module only in a suite run)."""
    from hypothesis import HealthCheck, settings

    for name, options in PROFILES.items():
        checks = [HealthCheck[check] for check in options["suppress_health_check"]]
        settings.register_profile(name, **dict(options, suppress_health_check=checks))


def chosen(requested: Optional[str] = None, environ: Mapping[str, str] = os.environ) -> str:
    """The profile named by the option, else the environment."""
    name = requested or environ.get("ROIALIGN_PROFILE")
    if name:
        if name not in PROFILES:
            raise ValueError(f"profile {name!r} is not one of {sorted(PROFILES)}")
        return name
    return "ci" if environ.get("CI") else "dev"


def why_chosen(requested: Optional[str] = None, environ: Mapping[str, str] = os.environ) -> str:
    """Which rule of :func:`chosen` picked the profile, in words."""
    if requested:
        return "--roialign-profile"
    if environ.get("ROIALIGN_PROFILE"):
        return "env ROIALIGN_PROFILE"
    return "env CI is set" if environ.get("CI") else "the suite's default"


def load(requested: Optional[str] = None, max_examples: Optional[int] = None, seed: Optional[int] = None,
         environ: Mapping[str, str] = os.environ) -> str:
    """Register the profiles and load the chosen one (derived for ``max_examples`` / ``seed``); returns its name."""
    register()
    return derive(chosen(requested, environ), max_examples, seed)


def derive(name: str, max_examples: Optional[int] = None, seed: Optional[int] = None) -> str:
    """Load the registered profile ``name``, or one derived from it for ``max_examples`` / ``seed``
    (a seed turns derandomization off); returns the loaded profile's name."""
    from hypothesis import settings

    changes = {}
    if max_examples is not None:
        if max_examples < 1:
            raise ValueError(f"max_examples must be >= 1, got {max_examples}")
        changes["max_examples"] = max_examples
    if seed is not None:
        changes["derandomize"] = False
    if changes:
        derived = name + "".join(f"-{key}={value}" for key, value in sorted(changes.items()))
        settings.register_profile(derived, parent=settings.get_profile(name), **changes)
        name = derived
    settings.load_profile(name)
    if settings.get_profile(name).derandomize:
        ignore_imported_constants()
    return name


def ignore_imported_constants() -> None:
    """Draw without the literals Hypothesis (6.131+) collects from every imported module outside
    site-packages.

    Those depend on what is imported: one test module or the whole tree, a checkout or an
    installed suite, the user's own package in editable mode. A derandomized run then draws
    different examples depending on how it was invoked, and a failure in CI need not show
    when that one test is run again (nor an expected-failures file stay valid). Hypothesis's
    own constants (edges of each type, NaN, infinities) stay. Internal API: where it is
    missing there is nothing to ignore.
    """
    try:
        from hypothesis.internal.conjecture import providers
    except ImportError:
        return
    if not (hasattr(providers, "_get_local_constants") and hasattr(providers, "Constants")):
        return
    none = providers.Constants()
    providers._get_local_constants = lambda: none
    cache = getattr(providers, "CONSTANTS_CACHE", None)
    if cache is not None and hasattr(cache, "cache"):
        cache.cache.clear()
