"""A failure's examples read from what Hypothesis and the properties wrote: the exception's notes, or
pytest's failure text when the exception is not at hand."""
from __future__ import annotations

import ast
import re
from typing import List

FAILING_PREFIXES = ("Failing test case:", "Falsifying example:", "Failing explicit example:",
                    "Falsifying explicit example:")
REPRODUCE_FAILURE = re.compile(r"@reproduce_failure\((['\"][^'\"]*['\"]), (b['\"][^'\"]*['\"])\)")
MAX_TEXT = 20000


def _empty_example() -> dict:
    return {"falsifying_example": None, "reproduction": [], "notes": [], "reproduce_failure": None}


def split_notes(notes: List[str]) -> dict:
    """Hypothesis's and the property's notes, sorted into the example's fields."""
    example = _empty_example()
    for note in notes:
        text = str(note)
        found = REPRODUCE_FAILURE.search(text)
        if text.startswith(FAILING_PREFIXES) and example["falsifying_example"] is None:
            example["falsifying_example"] = text
        elif text.lstrip().startswith("# reproduction"):
            example["reproduction"].append(text.strip() + "\n")
        elif found:
            example["reproduce_failure"] = found.group(0)
        elif text.strip():
            example["notes"].append(text)
    return example


def _error_lines(text: str) -> List[str]:
    """The ``E``-prefixed lines of pytest's failure text, prefix removed (all lines when there are none)."""
    marked = [line for line in text.splitlines() if line == "E" or line.startswith("E ")]
    if not marked:
        return text.splitlines()
    return [line[8:] if line.startswith("E       ") else line[1:].lstrip() for line in marked]


def examples_from_text(text: str) -> List[dict]:
    """The examples in a failure's text (pytest's longrepr): each "Failing test case:" call through its
    closing parenthesis, the "# reproduction" scripts through the next blank line, the
    ``@reproduce_failure`` decorators."""
    lines = _error_lines(text)
    examples: List[dict] = []
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if line.startswith(FAILING_PREFIXES):
            examples.append(_empty_example())
            j = i
            call = lines[i].strip()
            while True:
                try:
                    ast.parse(call.split(":", 1)[1].strip())
                    break
                except SyntaxError:
                    j += 1
                    if j >= len(lines) or j - i > 2000:
                        j = i
                        call = lines[i].strip()
                        while j + 1 < len(lines) and lines[j].rstrip() != ")":
                            j += 1
                            call += "\n" + lines[j]
                        break
                    call += "\n" + lines[j]
            examples[-1]["falsifying_example"] = call
            i = j + 1
            continue
        if line.startswith("# reproduction"):
            j = i
            while j + 1 < len(lines) and lines[j + 1].strip():
                j += 1
            if not examples:
                examples.append(_empty_example())
            examples[-1]["reproduction"].append("\n".join(s.strip() for s in lines[i:j + 1]) + "\n")
            i = j + 1
            continue
        found = REPRODUCE_FAILURE.search(line)
        if found:
            if not examples:
                examples.append(_empty_example())
            examples[-1]["reproduce_failure"] = found.group(0)
        i += 1
    return examples


def clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "\n... (clipped)"


def error_text(error: BaseException) -> str:
    message = str(error)
    return clip(f"{type(error).__name__}: {message}" if message else type(error).__name__)


def first_line(text: str, limit: int = 300) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[:limit] + "..."
