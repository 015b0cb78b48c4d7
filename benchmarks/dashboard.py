"""``roialign-suite track publish``: the history as one static, self-contained HTML page (inline SVG and
one inline script, nothing fetched).

Per workload (and size) two graphs over the commits of the whole history (oldest left): the ratio view,
our time over torchvision's from the same run (lower is better), and the time view, the median in
milliseconds of every implementation (logarithmic axis: torchvision and ours differ by up to 20x).
One line per machine (and implementation): an SVG ``path`` of class ``series`` through each commit's
median, a dot per run; a step is a vertical dashed line at its
commit range (red: a regression that fails the check; orange: a regression the rule lets pass; grey:
any other step); workloads with a failing regression come first. Then the table of regressions, every
step, and the machines' fingerprints.

The script only measures: once loaded, each series path gets ``data-drawn-length`` (its rendered
length in pixels, ``getTotalLength()``) and ``body`` gets ``data-series-drawn`` (how many are longer
than zero), so a browser test can tell a drawn graph from a parsed one.
"""
from __future__ import annotations

import html
import math
import statistics
from pathlib import Path
from typing import Dict, List, Mapping, Sequence

from roialign_suite.benchmarks import track

WIDTH, HEIGHT = 560, 260
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 14, 58
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
DASHES = ("", "6 3", "2 3", "8 3 2 3")
# Measures the drawn series once loaded (module docstring).
SCRIPT = """<script>
window.addEventListener("load", function () {
  var drawn = 0;
  document.querySelectorAll("path.series").forEach(function (p) {
    var length = p.getTotalLength();
    p.setAttribute("data-drawn-length", length.toFixed(1));
    if (length > 0) { drawn += 1; }
  });
  document.body.setAttribute("data-series-drawn", String(drawn));
});
</script>
"""


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _tick(commit: str) -> str:
    """An x-axis label: 8 hex digits of a git hash; the end of any other id."""
    return commit[:8] if track.short(commit) != commit else (commit if len(commit) <= 14 else "…" + commit[-13:])


def _ticks(low: float, high: float, count: int = 4) -> List[float]:
    return [low + (high - low) * i / count for i in range(count + 1)]


def graph(title: str, series: Sequence[track.Series], commits: Sequence[str], findings: Sequence[track.Finding],
          colour: Mapping[str, str], dash: Mapping[str, str], scale: float, unit: str, log: bool = False) -> str:
    """One SVG: ``series`` (values times ``scale``, in ``unit``; a logarithmic axis if ``log``: positive
    values) against the commit positions of ``commits``."""
    x_of = {c: i for i, c in enumerate(commits)}
    axis = (lambda v: math.log10(v)) if log else (lambda v: v)
    values = [axis(v * scale) for s in series for g in s.groups for v in g]
    low, high = min(values), max(values)
    pad = (high - low) * 0.08 or abs(high) * 0.05 or 1.0
    low, high = low - pad, high + pad
    span_x = max(len(commits) - 1, 1)

    def px(i: float) -> float:
        return LEFT + (WIDTH - LEFT - RIGHT) * (i / span_x if len(commits) > 1 else 0.5)

    def py(v: float) -> float:
        """The y pixel of an axis value (already :func:`axis`-transformed)."""
        return TOP + (HEIGHT - TOP - BOTTOM) * (1 - (v - low) / (high - low))

    out = [f'<svg class="graph" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
           f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{_e(title)}">',
           f'<rect x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" height="{HEIGHT - TOP - BOTTOM}" fill="#fafafa" stroke="#ccc"/>']
    for v in _ticks(low, high):
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{py(v):.1f}" y2="{py(v):.1f}" stroke="#e4e4e4"/>'
                   f'<text x="{LEFT - 4}" y="{py(v) + 4:.1f}" font-size="10" text-anchor="end">'
                   f'{(10 ** v if log else v):.3g}</text>')
    out.append(f'<text x="12" y="{TOP + (HEIGHT - TOP - BOTTOM) / 2:.0f}" font-size="10" text-anchor="middle" '
               f'transform="rotate(-90 12 {TOP + (HEIGHT - TOP - BOTTOM) / 2:.0f})">{_e(unit)}</text>')
    every = max(1, len(commits) // 16)
    for i, c in enumerate(commits):
        if i % every == 0 or i == len(commits) - 1:
            x, y = px(i), HEIGHT - BOTTOM + 6
            out.append(f'<text x="{x:.1f}" y="{y}" font-size="9" font-family="monospace" text-anchor="end" '
                       f'transform="rotate(-50 {x:.1f} {y})">{_e(_tick(c))}</text>')
    keys = {s.key for s in series}
    for f in findings:
        if f.series.key not in keys:
            continue
        x = (px(x_of[f.last_before]) + px(x_of[f.first_after])) / 2
        stroke = "#d62728" if f.fails else ("#ff7f0e" if f.regression else "#999")
        out.append(f'<line class="step{" failing" if f.fails else ""}" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" '
                   f'y2="{HEIGHT - BOTTOM}" stroke="{stroke}" stroke-width="1.5" stroke-dasharray="4 3">'
                   f'<title>{_e(track.describe(f))}</title></line>')
    for s in series:
        medians = [axis(statistics.median(g) * scale) for g in s.groups]
        points = [(px(x_of[c]), py(m)) for c, m in zip(s.commits, medians)]
        d = "M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in points)
        if len(points) == 1:  # a lone commit: a visible tick
            d += f" L{points[0][0] + 0.1:.1f},{points[0][1]:.1f}"
        label = f"{s.implementation} on {s.machine_label}"
        out.append(f'<path class="series" data-series="{_e(s.key)}" d="{d}" fill="none" stroke="{colour[s.machine]}" '
                   f'stroke-width="1.8" stroke-dasharray="{dash[s.implementation]}"><title>{_e(label)}</title></path>')
        for c, g in zip(s.commits, s.groups):
            for v in g:
                out.append(f'<circle cx="{px(x_of[c]):.1f}" cy="{py(axis(v * scale)):.1f}" r="2" fill="{colour[s.machine]}" '
                           f'opacity="0.55"><title>{_e(track.short(c))}: {v * scale:.4g} {_e(unit)}</title></circle>')
    out.append("</svg>")
    return "".join(out)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], css: str) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _finding_row(f: track.Finding) -> List[str]:
    s, st = f.series, f.step
    verdict = "FAILS the check" if f.fails else (f"regression, passes: {f.note}" if f.regression else "step")
    return [s.workload, s.size, s.view, s.implementation, s.machine_label, f"{track.short(f.last_before)}..{track.short(f.first_after)}",
            f"{st.change:+.1%}", f"{st.confidence:.1f}", verdict]


def page(runs: Sequence[Mapping], series: Sequence[track.Series], findings: Sequence[track.Finding],
         rule: track.Rule) -> str:
    """The dashboard's HTML."""
    commits = track.commit_order(runs)
    machines: Dict[str, Mapping] = {}
    for r in runs:
        machines.setdefault(r["machine"]["id"], r["machine"])
    colour = {m: COLOURS[i % len(COLOURS)] for i, m in enumerate(machines)}
    implementations = sorted({s.implementation for s in series}, key=lambda n: (n == runs[0]["baseline"], n))
    dash = {n: DASHES[i % len(DASHES)] for i, n in enumerate(implementations)}
    sections = []
    failing_workloads = {(f.series.workload, f.series.size) for f in findings if f.fails}
    # Workloads with a failing regression first, then in name order.
    for workload, size in sorted(dict.fromkeys((s.workload, s.size) for s in series), key=lambda k: (k not in failing_workloads, k)):
        mine = [s for s in series if (s.workload, s.size) == (workload, size)]
        ratio = [s for s in mine if s.view == track.RATIO]
        time = [s for s in mine if s.view == track.TIME]
        graphs = []
        if ratio:
            graphs.append(f'<figure><figcaption>ratio: our time / {_e(runs[0]["baseline"])} (same run; lower is better)</figcaption>'
                          f'{graph(workload + " ratio", ratio, commits, findings, colour, dash, 1.0, "time ratio")}</figure>')
        if time:
            graphs.append(f'<figure><figcaption>absolute: median per implementation (ms, logarithmic; lower is better)</figcaption>'
                          f'{graph(workload + " time", time, commits, findings, colour, dash, 1e3, "ms", log=True)}</figure>')
        sections.append(f'<section class="workload"><h2>{_e(workload)} <small>({_e(size)})</small></h2>{"".join(graphs)}</section>')
    legend = "".join(f'<span class="key"><svg width="26" height="10"><line x1="0" x2="26" y1="5" y2="5" stroke="{colour[m]}" '
                     f'stroke-width="2"/></svg> {_e(info["label"])} <code>{_e(m)}</code></span>' for m, info in machines.items())
    legend += "".join(f'<span class="key"><svg width="26" height="10"><line x1="0" x2="26" y1="5" y2="5" stroke="#333" '
                      f'stroke-width="2" stroke-dasharray="{dash[n]}"/></svg> {_e(n)}</span>' for n in implementations)
    regressions = [f for f in findings if f.regression]
    header = ("workload", "size", "view", "implementation", "machine", "commits (before..after)", "change", "z", "verdict")
    failing = sum(f.fails for f in findings)
    machine_rows = [[m, i["label"], i["cpu"], str(i["cores"]), str(i["threads"]), i.get("python") or "",
                     ", ".join(f"{k} {v}" for k, v in (i.get("libraries") or {}).items() if v)] for m, i in machines.items()]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>RoIAlign kernel performance history</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
section.workload {{ margin-bottom: 1.5em; }} figure {{ display: inline-block; margin: 0 1em 0 0; }}
figcaption {{ font-size: 0.85em; color: #555; }} h2 {{ font-size: 1.1em; margin-bottom: 0.3em; }}
table {{ border-collapse: collapse; font-size: 0.85em; margin-bottom: 1em; }} td, th {{ border: 1px solid #ccc; padding: 2px 6px; }}
.key {{ margin-right: 1.2em; font-size: 0.85em; white-space: nowrap; }} .status {{ font-weight: bold; }}
</style></head><body>
<h1>RoIAlign kernel performance history</h1>
<p class="status">{len(runs)} runs, {len(commits)} commits, {len(machines)} machine(s); {failing} regression(s) failing the check
(rule: at least {rule.threshold:.0%} slower, z &ge; {rule.min_confidence:g}, within the last {rule.recent_commits} commits,
&ge; {rule.min_runs_after} runs after, views {", ".join(rule.fail_on)}).</p>
<p>{legend}</p>
<h2>Regressions</h2>
{_table(header, [_finding_row(f) for f in regressions], "regressions") if regressions else "<p>none</p>"}
{"".join(sections)}
<h2>Every step</h2>
{_table(header, [_finding_row(f) for f in findings], "steps") if findings else "<p>none</p>"}
<h2>Machines</h2>
{_table(("id", "label", "CPU", "cores", "threads", "Python", "libraries"), machine_rows, "machines")}
{SCRIPT}</body></html>
"""


def write(out: Path, runs, series, findings, rule) -> Path:
    """Write ``out/index.html``; its path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "index.html"
    path.write_text(page(runs, series, findings, rule))
    return path
