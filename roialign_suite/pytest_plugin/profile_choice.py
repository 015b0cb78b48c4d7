"""Which Hypothesis profile a suite run uses: the user's when they chose one, else the suite's."""
from __future__ import annotations

import pytest


def load_profile(config) -> str:
    """Load the suite's Hypothesis profile unless the user chose one; returns why the profile in
    effect is in effect (for the header).

    First match wins: ``--roialign-profile`` (ours, asked by name); ``--hypothesis-profile``
    (Hypothesis loads it after this hook); a profile a conftest loaded before the suite
    configured (kept; ``--roialign-max-examples``/``--roialign-seed`` derive from it); else
    env ``ROIALIGN_PROFILE``, ``ci`` under CI, ``dev``. Ours are registered in every case,
    so ``--hypothesis-profile ci`` names the suite's ``ci``.
    """
    from hypothesis import settings

    from roialign_suite.properties import profiles

    requested = config.getoption("roialign_profile")
    max_examples, seed = config.getoption("roialign_max_examples"), config.getoption("roialign_seed")
    current = settings.get_current_profile_name()
    if requested:
        profiles.load(requested, max_examples, seed)
        return "--roialign-profile"
    if config.getoption("hypothesis_profile", None):
        profiles.register()
        return "--hypothesis-profile"
    if current != "default":
        profiles.register()
        profiles.derive(current, max_examples, seed)
        return "loaded by a conftest before the suite (kept)"
    try:
        profiles.load(None, max_examples, seed)
    except ValueError as error:  # env ROIALIGN_PROFILE names no profile
        raise pytest.UsageError(f"env ROIALIGN_PROFILE: {error}") from None
    return profiles.why_chosen()
