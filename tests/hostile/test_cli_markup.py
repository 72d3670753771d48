"""Keys and error text are printed as text: rich markup and terminal escapes are neutralised.

A bucket writer chooses object keys, and keys reach the summary, ``status``, ``errors``,
``drain``, ``job`` and the ``run`` daemon. Before the fix a key ``bad[/]key.gz`` crashed them
all (rich read it as a closing tag), ``[link=…]`` changed what was shown and
``evil\\x1b]0;pwn\\x07`` set the terminal's title.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from logferry.cli.common import json_text, safe_text
from tests.conftest import run_cli

CORRUPT_GZIP = b"\x1f\x8b\x08\x00garbage"
TITLE = "evil\x1b]0;pwn\x07.log.gz"
KEYS = ("bad[/]key.gz", "[link=evil]x.gz", TITLE)
# How each key must appear on a terminal: literally, with the escapes made visible.
SHOWN = ("bad[/]key.gz", "[link=evil]x.gz", "evil\\x1b]0;pwn\\x07.log.gz")


@pytest.fixture()
def hostile(tmp_path: Path) -> dict[str, str]:
    """A directory source with three hostile keys (corrupt, so they fail) and one good file."""
    src = tmp_path / "src"
    for key in KEYS:
        path = src / key  # "bad[/]key.gz" is the key of ]key.gz in the directory "bad["
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(CORRUPT_GZIP)
    (src / "good.log").write_text("a good line\n")
    return {
        "src": str(src),
        "dst": f"file://{tmp_path / 'dst'}",
        "ledger": f"sqlite:///{tmp_path / 'ledger.db'}",
    }


SGR = re.compile(r"\x1b\[[0-9;]*m")  # colours rich adds itself on a terminal


def assert_neutralised(output: str) -> None:
    """No traceback, no raw escape sequence, and every key shown as it is."""
    output = SGR.sub("", output)
    assert "Traceback" not in output and "MarkupError" not in output, output
    assert "\x1b]" not in output and "\x07" not in output, repr(output)
    for shown in SHOWN:
        assert shown in output, (shown, output)


def ship(h: dict[str, str], **env: str) -> subprocess.CompletedProcess[str]:
    return run_cli("ship", h["src"], "--to", h["dst"], "--ledger", h["ledger"], env=env)


def test_safe_text_neutralises_markup_controls_and_undecodable_names() -> None:
    assert safe_text("bad[/]key") == "bad\\[/]key"
    assert safe_text("[link=http://evil]x") == "\\[link=http://evil]x"
    assert safe_text(TITLE) == "evil\\x1b]0;pwn\\x07.log.gz"
    assert safe_text("line\nfake line\r\x9b\u202e") == "line\\x0afake line\\x0d\\x9b\\u202e"
    assert safe_text("caf\udce9.log", markup=False) == "caf\\xe9.log"  # surrogateescape byte
    assert safe_text("[b]x[/b]", markup=False) == "[b]x[/b]"
    assert json.loads(json_text({"k": "\x9b\u202e\x1b"})) == {"k": "\x9b\u202e\x1b"}
    assert "\x9b" not in json_text({"k": "\x9b"}) and "\u202e" not in json_text({"k": "\u202e"})


def test_ship_summary_shows_hostile_keys_and_the_run_goes_on(hostile: dict[str, str]) -> None:
    p = ship(hostile)
    assert p.returncode == 1, p.stderr  # three objects failed, not a crash
    assert_neutralised(p.stderr)
    assert "shipped 1 object," in p.stderr
    assert "3 failed" in p.stderr
    assert (Path(hostile["dst"][7:])).rglob("*.jsonl")


def test_ship_on_a_terminal_with_the_progress_bar(hostile: dict[str, str]) -> None:
    p = ship(hostile, TTY_COMPATIBLE="1", COLUMNS="400")
    assert p.returncode == 1, p.stderr
    assert_neutralised(p.stderr)
    assert "\x1b]8;" not in p.stderr  # no hyperlink was made from [link=…]


@pytest.mark.parametrize("terminal", ["0", "1"])
def test_status_errors_show_and_drain(hostile: dict[str, str], terminal: str) -> None:
    assert ship(hostile).returncode == 1
    env = {"TTY_COMPATIBLE": terminal, "COLUMNS": "400"}
    led = ("--ledger", hostile["ledger"])

    status = run_cli("status", *led, env=env)
    assert status.returncode == 0, status.stderr
    assert_neutralised(status.stdout + status.stderr)

    listed = run_cli("errors", *led, env=env)
    assert listed.returncode == 0, listed.stderr
    assert_neutralised(listed.stdout)
    assert len(listed.stdout.splitlines()) == 3  # one line per key: no newline smuggled in

    as_json = run_cli("errors", "--json", *led, env=env)
    entries = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert sorted(e["key"] for e in entries) == sorted(KEYS)  # JSON keeps the exact key
    for entry in entries:
        show = run_cli("errors", "show", str(entry["id"]), *led, env=env)
        assert show.returncode == 0, show.stderr
        assert "\x1b" not in show.stdout and "\x07" not in show.stdout
        assert json.loads(show.stdout)["key"] == entry["key"]

    drain = run_cli("drain", "--to", hostile["dst"], *led, env=env)
    assert drain.returncode == 1, drain.stderr  # still corrupt: still failing, no crash
    assert_neutralised(drain.stderr)
    assert "3 still failing" in drain.stderr


def test_job_prints_hostile_keys(hostile: dict[str, str]) -> None:
    env = {
        "LOGFERRY_SOURCE": hostile["src"],
        "LOGFERRY_SINKS": hostile["dst"],
        "LOGFERRY_LEDGER": hostile["ledger"],
    }
    p = run_cli("job", env=env)
    assert p.returncode == 1, p.stderr
    assert_neutralised(p.stderr)


def test_run_daemon_keeps_running_over_hostile_keys(
    hostile: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        f"ledger: {hostile['ledger']}\ninterval: 0.2\n"
        f"sinks: {{out: {{url: '{hostile['dst']}'}}}}\n"
        f"sources: {{hostile: {{url: '{hostile['src']}', sinks: [out]}}}}\n"
    )
    once = run_cli("run", "-c", str(config), "--once")
    assert once.returncode == 1, once.stderr
    assert_neutralised(once.stderr)
    # The daemon prints every cycle's summary; before the fix the first one killed it.
    proc = subprocess.Popen(
        [sys.executable, "-m", "logferry", "run", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(3)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Traceback" not in stderr and "\x1b]" not in stderr, stderr
    assert stderr.count("bad[/]key.gz") >= 1


def test_log_lines_neutralise_control_characters(hostile: dict[str, str]) -> None:
    p = run_cli(
        "-vv", "ship", hostile["src"], "--to", hostile["dst"], "--ledger", hostile["ledger"]
    )
    assert p.returncode == 1
    assert "\x1b]" not in p.stderr and "\x07" not in p.stderr
