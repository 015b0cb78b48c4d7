"""The dashboard in a real browser: headless Chromium (Debian's ``chromium``) loads the published page of
a two-machine synthetic history from disk; no console error, every series path drawn (its rendered
length measured by the page's script), and a screenshot kept under the test's tmp path."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

pytest.importorskip("asv.step_detect", reason="asv is the track extra: pip install 'roialign-suite[track]'")

from roialign_suite.benchmarks import track  # noqa: E402
from track_history import machine_info, record_history  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install chromium)")
FLAGS = ("--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--disable-extensions",
         "--window-size=1300,2400", "--virtual-time-budget=3000")
TIMEOUT_S = 120


def chromium(*args: str, profile) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=TIMEOUT_S)


def load(page, profile) -> tuple:
    """``(DOM after the load event, console messages)`` of ``page``."""
    done = chromium("--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri(), profile=profile)
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    return done.stdout, console


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    root = tmp_path_factory.mktemp("track-page")
    record_history(root / "history", 1, [2] * 12, lambda i: 1.0)
    record_history(root / "history", 2, [3] * 12, lambda i: 1.15 if i >= 8 else 1.0,
                   machine=machine_info("Synthetic CPU B", 2), scale=1.6)
    assert track.main(["publish", "--store", str(root / "history"), "--out", str(root / "site")]) == 0
    return root, track.build_series(track.load_runs(root / "history"))


def test_every_graph_is_drawn_without_console_errors(published):
    root, series = published
    dom, console = load(root / "site" / "index.html", root / "profile")
    assert console == []
    lengths = dict(re.findall(r'<path class="series" data-series="([^"]+)" d="[^"]+"[^>]*data-drawn-length="([0-9.]+)"', dom))
    assert sorted(lengths) == sorted(s.key for s in series)
    assert all(float(v) > 0 for v in lengths.values()), lengths
    assert f'data-series-drawn="{len(series)}"' in dom
    assert dom.count('<line class="step failing"') >= 2  # machine B's regression, ratio graphs of both workloads


def test_a_broken_page_is_seen(published, tmp_path):
    # The check itself: a script error reaches the console, a path with no geometry has length 0.
    root, _ = published
    text = (root / "site" / "index.html").read_text()
    broken = tmp_path / "broken.html"
    broken.write_text(text.replace('d="M', 'd="', 1).replace("</body>", "<script>undefinedThing();</script></body>"))
    dom, console = load(broken, tmp_path / "profile")
    assert any("undefinedThing" in line for line in console)
    assert 'data-drawn-length="0.0"' in dom


def test_screenshot(published):
    root, _ = published
    shot = root / "track-dashboard.png"
    done = chromium(f"--screenshot={shot}", (root / "site" / "index.html").as_uri(), profile=root / "profile-shot")
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
