from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.feedserver import FeedServer

ROOT = Path(__file__).resolve().parent.parent
NEWSWATCH = [sys.executable, "-m", "pipelines.cli"]


@pytest.fixture
def feed_server():
    with FeedServer() as server:
        yield server


def write_yaml(path: Path, data: dict) -> Path:
    # JSON is valid YAML: no quoting surprises in generated configs.
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def run_newswatch(*args: str, timeout: float = 180, **kwargs) -> subprocess.CompletedProcess:
    """The real command, as a user runs it (`newswatch ...`), in a child process."""
    return subprocess.run(
        [*NEWSWATCH, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        **kwargs,
    )


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def wait_for(predicate, timeout_s: float, step_s: float = 0.05):
    """The first truthy value of `predicate()` within `timeout_s`, else None."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step_s)
    return None


def start_stream(feeds: Path, out: Path, *extra: str) -> subprocess.Popen:
    """`newswatch run --mode stream` in the background, ticking every 0.25 s; the caller stops it."""
    return subprocess.Popen(
        [*NEWSWATCH, "run", "--feeds", str(feeds), "--out", str(out), "--mode", "stream", "--tick", "0.25", *extra],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
