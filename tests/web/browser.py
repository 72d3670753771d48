"""A real browser for the dashboard tests: Playwright for Python driving Debian's chromium.

When ``/usr/bin/chromium`` is missing it is installed once per machine with
``apt-get install -y chromium``, under a file lock so parallel sessions do not race (as
``tests/influx.py`` does for influxd); a failed install fails the tests, never skips.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
_LOCK_FILE = Path(tempfile.gettempdir()) / "logferry-chromium-install.lock"


def ensure_chromium() -> str:
    """Path of Debian's chromium, installing the package first when missing."""
    if CHROMIUM.exists():
        return str(CHROMIUM)
    _LOCK_FILE.touch(exist_ok=True)
    with _LOCK_FILE.open("w") as lock:
        # Another session may be installing right now: wait for it, then look again.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if CHROMIUM.exists():
            return str(CHROMIUM)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for step in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
            try:
                done = subprocess.run(step, env=env, capture_output=True, text=True, timeout=900)
            except (OSError, subprocess.TimeoutExpired) as exc:
                pytest.fail(f"installing chromium failed at `{' '.join(step)}`: {exc}")
            if done.returncode != 0:
                tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
                pytest.fail(
                    f"installing chromium failed at `{' '.join(step)}` "
                    f"(exit {done.returncode}): {' | '.join(tail)}"
                )
    if not CHROMIUM.exists():
        pytest.fail(f"`apt-get install -y chromium` succeeded but {CHROMIUM} is missing")
    return str(CHROMIUM)
