"""A throw-away Redis server on loopback, for workers that share one example database.

``LocalRedis`` starts Debian's ``redis-server`` bound to 127.0.0.1 only, on a
free port, with its files in a temporary directory and persistence off, and
stops it on exit. A team's long-lived server is configured by hand instead
(docs/fuzzing.md); the runner then only gets its ``--redis`` URL.
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 10.0


def redis_server_missing() -> Optional[str]:
    """Why a local server cannot be started here, or None."""
    if shutil.which("redis-server") is None:
        return "redis-server is not installed (apt-get install -y redis-server)"
    try:
        import redis  # noqa: F401
    except ImportError:
        return "the redis Python client is not installed (pip install 'roialign-suite[fuzz]')"
    return None


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class LocalRedis:
    """``with LocalRedis() as server: server.url`` -> ``redis://127.0.0.1:PORT/0``."""

    def __init__(self):
        self.port = free_port()
        self.url = f"redis://{LOOPBACK}:{self.port}/0"
        self._dir: Optional[tempfile.TemporaryDirectory] = None
        self._process: Optional[subprocess.Popen] = None

    def start(self) -> "LocalRedis":
        problem = redis_server_missing()
        if problem:
            raise RuntimeError(problem)
        self._dir = tempfile.TemporaryDirectory(prefix="roialign-redis-")
        self._process = subprocess.Popen(
            ["redis-server", "--bind", LOOPBACK, "--port", str(self.port), "--protected-mode", "yes",
             "--dir", self._dir.name, "--save", "", "--appendonly", "no", "--daemonize", "no",
             "--logfile", str(Path(self._dir.name) / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self._wait_until_ready()
        return self

    def _wait_until_ready(self) -> None:
        import redis

        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self._process.poll() is not None:
                log = Path(self._dir.name) / "redis.log"
                raise RuntimeError(f"redis-server exited ({self._process.returncode}): "
                                   f"{log.read_text()[-1000:] if log.exists() else ''}")
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server did not answer on {self.url} within {START_TIMEOUT_S} s")
                time.sleep(0.05)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> "LocalRedis":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
