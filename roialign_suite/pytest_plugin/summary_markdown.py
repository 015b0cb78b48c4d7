"""The run report's Markdown summary, written from its JSON document (:mod:`.run_report`)."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

from roialign_suite.properties import discrepancy
from roialign_suite.pytest_plugin.hypothesis_output import first_line

OUTCOMES = ("passed", "failed", "skipped", "xfailed", "xpassed")


_CELL = {"passed": "pass", "failed": "FAIL", "xfailed": "xfail", "xpassed": "xpass", "skipped": "skip"}
_SEVERITY = ("failed", "xpassed", "xfailed", "passed", "skipped")


def _ratio(value: Optional[float]) -> str:
    if value is None:
        return ""
    if value >= discrepancy.UNBOUNDED:
        return "unbounded"
    return f"{value:.3g}"


def _cell(records: List[dict]) -> str:
    if not records:
        return ""
    outcomes = [r["outcome"] for r in records]
    worst_outcome = min(outcomes, key=_SEVERITY.index)
    text = _CELL[worst_outcome]
    if len(records) > 1:
        text += f" {outcomes.count(worst_outcome)}/{len(records)}"
    ratios = [r["worst_error_over_bound"] for r in records if r["worst_error_over_bound"] is not None]
    if ratios:
        text += f" · {_ratio(max(ratios))}"
    return text


def _fence(text: str, language: str = "") -> List[str]:
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return [ticks + language, text.rstrip("\n"), ticks]


def markdown(document: dict) -> str:
    """The summary: header, the property x implementation table, each failure with its minimal example,
    the expected-failure notes."""
    records = document["tests"]
    packages = document["environment"]["packages"]
    hyp = document["hypothesis"]
    names = [i["name"] for i in document["implementations"]]
    lines = [f"# RoIAlign conformance: {', '.join(names) or 'no implementation'}", ""]
    lines.append(f"roialign-suite {document['suite']['version']} · torch {packages.get('torch')} · "
                 f"torchvision {packages.get('torchvision')} · numba {packages.get('numba')} · "
                 f"hypothesis {packages.get('hypothesis')} (profile `{hyp['profile']}`, {hyp['max_examples']} examples, "
                 f"seed {hyp['seed'] if hyp['seed'] is not None else ('derandomized' if hyp['derandomize'] else 'random')}) · "
                 f"{document['created']}")
    lines.append("")
    totals = document["totals"]
    lines.append("**" + ", ".join(f"{n} {k}" for k, n in totals.items() if n) + "**" if any(totals.values())
                 else "**no test ran**")
    for implementation in document["implementations"]:
        if implementation["unavailable"]:
            lines.append(f"\n{implementation['name']} is not available here: {implementation['unavailable']}")
    lines += ["", "## Properties x implementations", "",
              "Each cell: the outcome (the worst of the cell's tests, with how many had it when there are several: "
              "other parameters, corpus cases) and the worst error / bound of any example (above 1 is out of bound).",
              ""]
    columns = list(dict.fromkeys(names + [r["implementation"] for r in records if r["implementation"] is not None]))
    columns = [c for c in columns if any(r["implementation"] == c for r in records)]
    has_none = any(r["implementation"] is None for r in records)
    header = ["property"] + [f"`{c}`" for c in columns] + (["(no implementation)"] if has_none else [])
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    properties = list(dict.fromkeys((r["test_id"].partition("::")[0], r["property"]) for r in records))
    for module, prop in properties:
        mine = [r for r in records if r["property"] == prop and r["test_id"].startswith(module + "::")]
        cells = [_cell([r for r in mine if r["implementation"] == c]) for c in columns]
        if has_none:
            cells.append(_cell([r for r in mine if r["implementation"] is None]))
        lines.append(f"| `{prop}` | " + " | ".join(cells) + " |")
    failures = [r for r in records if r["outcome"] == "failed"]
    lines += ["", "## Failures", ""]
    if not failures:
        lines += ["None.", ""]
    for record in failures:
        failure = record["failure"] or {"message": "", "examples": []}
        lines += [f"### `{record['test_id']}`", ""]
        where = f" (in {record['phase']})" if record["phase"] and record["phase"] != "call" else ""
        lines += [f"Error{where}:", ""] + _fence(failure["message"]) + [""]
        for n, example in enumerate(failure["examples"], start=1):
            if len(failure["examples"]) > 1:
                lines += [f"Failure {n} of {len(failure['examples'])}: `{first_line(example['error'], 200)}`", ""]
            if example.get("code"):
                lines += ["Minimal example (runs stand-alone and raises the failure):", ""]
                lines += _fence(example["code"], "python") + [""]
            if example.get("falsifying_example"):
                lines += ["Hypothesis's minimal example:", ""] + _fence(example["falsifying_example"]) + [""]
            for script in example.get("reproduction", []):
                lines += ["Reproduction noted by the property:", ""] + _fence(script, "python") + [""]
    lines += ["## Expected failures", ""]
    xfails = document["expected_failures"]
    if xfails is None:
        lines.append("No expected-failures file (`--roialign-xfails`).")
    else:
        strict = " (strict: a listed test that passes, or an entry that matches nothing, fails the run)" \
            if xfails["strict"] else ""
        lines += [f"From {', '.join(f'`{f}`' for f in xfails['files'])}{strict}.", ""]
        by_entry: Dict[Tuple[str, int], List[dict]] = {}
        for record in records:
            if record["expected_failure"]:
                key = (record["expected_failure"]["file"], record["expected_failure"]["line"])
                by_entry.setdefault(key, []).append(record)
        lines += ["| entry | reason | tests run: outcomes |", "|---|---|---|"]
        for entry in xfails["entries"]:
            mine = by_entry.get((entry["file"], entry["line"]), [])
            counts = ", ".join(f"{sum(1 for r in mine if r['outcome'] == o)} {o}" for o in OUTCOMES
                               if any(r["outcome"] == o for r in mine))
            if not entry["matched"]:
                counts = "**matches no collected test**"
            reason = entry["reason"].replace("|", "\\|")
            lines.append(f"| `{entry['pattern']}` ({Path(entry['file']).name}:{entry['line']}) | {reason} | "
                         f"{counts or 'not run'} |")
        passed = xfails["passed"]
        if passed:
            for file in xfails["files"]:
                mine = [p for p in passed if p["file"] == file]
                if mine:
                    lines += ["", f"### Expected failures that passed — remove them from `{file}`", ""]
                    lines += [f"- `{p['nodeid']}` (line {p['line']}: `{p['pattern']}`"
                              + (f"; {p['entry_failed_as_expected']} other test(s) of this entry failed as expected: "
                                 "narrow it, or keep it if the divergence shows on some draws only"
                                 if p.get("entry_failed_as_expected") else "") + ")" for p in mine]
        if xfails["unmatched"]:
            lines += ["", "### Entries that match no collected test — fix or remove them", ""]
            lines += [f"- `{u['file']}:{u['line']}`: `{u['pattern']}`" for u in xfails["unmatched"]]
    return "\n".join(lines) + "\n"
