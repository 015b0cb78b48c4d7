"""How the suite names an implementation that is not a built-in: a user's target ``MODULE:ATTR``.

A target's record is called ``target:MODULE:ATTR`` (on the CPU) or
``target:MODULE:ATTR@DEVICE``; every other name is a built-in's. Cheap to
import (no torch), so the benchmark gate and report can tell targets apart.
"""
from __future__ import annotations

from typing import Tuple

TARGET_PREFIX = "target:"


def target_name(spec: str, device: str = "cpu") -> str:
    """The record name of the target ``spec`` (``MODULE:ATTR``) run on ``device``."""
    return f"{TARGET_PREFIX}{spec}" if device == "cpu" else f"{TARGET_PREFIX}{spec}@{device}"


def is_target(name: str) -> bool:
    """Whether ``name`` names a user's target rather than a built-in."""
    return name.startswith(TARGET_PREFIX)


def parse_target(name: str) -> Tuple[str, str]:
    """``target:MODULE:ATTR[@DEVICE]`` -> ``(MODULE:ATTR, DEVICE)`` (DEVICE ``"cpu"`` when absent)."""
    if not is_target(name):
        raise ValueError(f"{name!r} does not name a target ({TARGET_PREFIX}MODULE:ATTR[@DEVICE])")
    spec, _, device = name[len(TARGET_PREFIX):].partition("@")
    return spec, device or "cpu"
