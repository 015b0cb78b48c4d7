"""``roialign-suite track``: the history, its step detection, the check and the dashboard, on synthetic
histories with seeded noise (2% per median, independent for ours and torchvision's: the ratio's noise
is about 3%). The browser test of the page: tests/test_track_dashboard_browser.py.
"""
from __future__ import annotations

import random
import re
import shutil

import pytest

pytest.importorskip("asv.step_detect", reason="asv is the track extra: pip install 'roialign-suite[track]'")

from roialign_suite.benchmarks import dashboard, step_detection, track  # noqa: E402
from track_history import OURS, WORKLOADS, commit_id, machine_info, record_history  # noqa: E402

PLANTED_AT = 16  # of 20 commits: within the rule's recent_commits (5)


def planted(i: int) -> float:
    return 1.15 if i >= PLANTED_AT else 1.0


def findings_of(store):
    return track.analyse(track.build_series(track.load_runs(store)), track.load_rule())


@pytest.mark.parametrize("seed", range(3))
def test_a_planted_15_percent_step_is_flagged_at_its_commit(tmp_path, seed, capsys):
    record_history(tmp_path, seed, [3] * 20, planted)
    failing = [f for f in findings_of(tmp_path) if f.fails]
    # Our kernel got slower on every workload: the ratio view of each, and nothing else, fails.
    assert sorted((f.series.workload, f.series.view, f.series.implementation) for f in failing) == \
        sorted((w, track.RATIO, OURS) for w in WORKLOADS)
    for f in failing:
        assert (f.last_before, f.first_after) == (commit_id(PLANTED_AT - 1), commit_id(PLANTED_AT))
        assert f.step.change == pytest.approx(0.15, abs=0.04)
        assert f.step.confidence >= track.load_rule().min_confidence
    assert track.main(["check", "--store", str(tmp_path)]) == 1
    out = capsys.readouterr()
    assert f"since {commit_id(PLANTED_AT)[:12]} (after {commit_id(PLANTED_AT - 1)[:12]})" in out.err
    assert "track check FAILED: 2 regression(s)" in out.err


@pytest.mark.parametrize("seed", range(3))
def test_ten_reruns_of_an_unchanged_commit_flag_nothing(tmp_path, seed, capsys):
    record_history(tmp_path, seed, [1] * 10 + [10], lambda i: 1.0)
    assert findings_of(tmp_path) == []
    assert track.main(["check", "--store", str(tmp_path)]) == 0
    assert "track check passed" in capsys.readouterr().out


def test_a_step_on_too_few_runs_waits_for_a_rerun(tmp_path):
    # The newest commit 15% slower, measured 3 times, under a rule asking 4 runs after a step: reported,
    # not failing, until one more run of it is recorded.
    rule_file = tmp_path / "rule.toml"
    rule_file.write_text(track.CONFIG.read_text().replace("min_runs_after = 3", "min_runs_after = 4"))
    rule = track.load_rule(rule_file)
    assert rule.min_runs_after == 4
    store = tmp_path / "h"
    record_history(store, 0, [3] * 10 + [3], lambda i: 1.15 if i == 10 else 1.0)
    regressions = [f for f in track.analyse(track.build_series(track.load_runs(store)), rule)
                   if f.regression and f.series.view == track.RATIO]
    assert len(regressions) == len(WORKLOADS) and not any(f.fails for f in regressions)
    assert all("3 run(s) after it, 4 needed" in f.note for f in regressions)
    record_history(store, 5, [0] * 10 + [1], lambda i: 1.15, first_run=3)  # one more run of the newest
    assert track.main(["check", "--store", str(store), "--config", str(rule_file)]) == 1


def test_detection_rates_on_seeded_series():
    # The detector alone, 40 series each: a 15% step under 2% noise found at its commit, pure noise quiet.
    def series(rng, step_at, commits=20, runs=2):
        return [[(1.15 if c >= step_at else 1.0) * (1 + rng.gauss(0, 0.02)) for _ in range(runs)] for c in range(commits)]

    found = sum([s.after for s in step_detection.find_regressions(series(random.Random(n), 14), 0.1, 4.0)] == [14]
                for n in range(40))
    quiet = sum(step_detection.find_steps(series(random.Random(n), 99)) == [] for n in range(40))
    assert (found, quiet) == (40, 40)


def test_two_machines_merge_into_one_history_and_one_page(tmp_path):
    a, b = tmp_path / "ci-artifact-a", tmp_path / "ci-artifact-b"
    written = record_history(a, 1, [2] * 12, lambda i: 1.0)
    # Machine B: another fingerprint, 1.6x slower throughout, our kernel 15% slower from commit 8 on.
    written += record_history(b, 2, [3] * 12, lambda i: 1.15 if i >= 8 else 1.0,
                              machine=machine_info("Synthetic CPU B", 2), scale=1.6)
    merged = tmp_path / "history"
    for folder in (a, b):
        shutil.copytree(folder, merged, dirs_exist_ok=True)
    assert len({p.name for p in written}) == len(written) == len(list(merged.glob("*.json")))
    runs = track.load_runs(merged)
    machines = {r["machine"]["id"] for r in runs}
    assert len(machines) == 2
    series = track.build_series(runs)
    assert {s.machine for s in series} == machines
    # One series per machine x workload x implementation (time) and per machine x workload for ours (ratio).
    assert len(series) == len(machines) * len(WORKLOADS) * 3
    findings = track.analyse(series, track.load_rule())
    failing = [f for f in findings if f.fails]
    assert {f.series.machine_label for f in failing} == {"Synthetic CPU B, 2 cores"}
    assert {f.first_after for f in failing} == {commit_id(8)}
    page = dashboard.page(runs, series, findings, track.load_rule())
    drawn = re.findall(r'<path class="series" data-series="([^"]+)" d="M[^"]+"', page)
    assert sorted(drawn) == sorted(s.key for s in series)
    assert page.count('<svg class="graph"') == 2 * len(WORKLOADS)  # a ratio and a time graph per workload


def test_the_run_file_and_its_name(tmp_path):
    (path,) = record_history(tmp_path, 0, [1], lambda i: 1.0)
    (run,) = track.load_runs(tmp_path)
    assert path.name == f"{run['machine']['id']}-{commit_id(0)[:12]}-{re.sub('[^0-9]', '', run['recorded'])[:20]}.json"
    rows = {(r["workload"], r["implementation"]): r for r in run["results"]}
    base, ours = rows[("box-head-p2-fwd", "torchvision-cpu")], rows[("box-head-p2-fwd", OURS)]
    assert ours["speedup"] == pytest.approx(base["median_s"] / ours["median_s"])
    assert set(run["machine"]) >= {"id", "cpu", "cores", "threads", "libraries", "python"}


def test_the_command_reports_no_history_and_a_bad_rule(tmp_path, capsys):
    assert track.main(["check", "--store", str(tmp_path / "empty")]) == 2
    assert "no history" in capsys.readouterr().err
    record_history(tmp_path / "h", 0, [1, 1], lambda i: 1.0)
    bad = tmp_path / "bad.toml"
    bad.write_text("threshold = 0.1\n")
    assert track.main(["check", "--store", str(tmp_path / "h"), "--config", str(bad)]) == 2
    assert "needs threshold" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        track.main(["record", "--repeat", "0"])
    assert exit_.value.code == 2


def test_publish_writes_one_page(tmp_path):
    record_history(tmp_path / "h", 0, [2] * 8, lambda i: 1.15 if i >= 5 else 1.0)
    assert track.main(["publish", "--store", str(tmp_path / "h"), "--out", str(tmp_path / "site")]) == 0
    text = (tmp_path / "site" / "index.html").read_text()
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in text
    assert 'class="regressions"' in text and "FAILS the check" in text


def test_record_a_saved_run(tmp_path, capsys):
    import json

    from track_history import benchmark_json

    saved = tmp_path / "run.json"
    medians = {(w, i): s for w, pair in WORKLOADS.items() for i, s in zip(("torchvision-cpu", OURS), pair)}
    saved.write_text(json.dumps(benchmark_json(3, medians, machine_info("Synthetic CPU A", 4))))
    store = tmp_path / "history"
    assert track.main(["record", "--results", str(saved), "--store", str(store), "--machine", "ci-runner"]) == 0
    (run,) = track.load_runs(store)
    assert (run["commit"], run["machine"]["label"], run["baseline"]) == (commit_id(3), "ci-runner", "torchvision-cpu")
    assert f"recorded {store}" in capsys.readouterr().out


def test_commits_are_ordered_by_their_time_whatever_the_offset():
    runs = [{"commit": "b", "commit_time": "2026-01-01T12:30:00+02:00", "recorded": "2026-01-02T00:00:00+00:00"},
            {"commit": "a", "commit_time": "2026-01-01T11:00:00+00:00", "recorded": "2026-01-02T00:00:01+00:00"}]
    assert track.commit_order(runs) == ["b", "a"]  # 10:30 UTC before 11:00 UTC
