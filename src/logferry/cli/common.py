"""What every command shares: error handling, exit codes, progress and summary printing."""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import click
import orjson
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress

from logferry.engine import Progress, ShipResult
from logferry.errors import ConfigError, LogferryError
from logferry.records import ObjectInfo

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

err = Console(stderr=True, highlight=False)

F = TypeVar("F", bound=Callable[..., Any])


def fail_usage(message: str) -> None:
    """Print a one-line usage/config error and exit 2."""
    err.print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)
    sys.exit(EXIT_USAGE)


def handle_errors(func: F) -> F:
    """Turn our errors into one-line messages and exit codes (no traceback for user mistakes)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            fail_usage(str(exc))
        except LogferryError as exc:
            err.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
            sys.exit(EXIT_FAILED)

    return wrapper  # type: ignore[return-value]


def install_signal_handlers(
    stop: threading.Event | Callable[[], None], shutdown_timeout: float = 30.0
) -> None:
    """First SIGINT/SIGTERM: finish the batch in flight, checkpoint, stop. Second: exit now.

    If the work in flight has not wound down after ``shutdown_timeout`` seconds (a sink
    hanging on a request, say), exit anyway: the ledger only ever holds acknowledged
    positions, so stopping mid-batch costs at most a re-send of that batch.
    """

    def force_exit(why: str) -> None:
        err.print(f"{why}: exiting now (the ledger stays consistent)")
        sys.stderr.flush()
        os._exit(EXIT_FAILED)

    stopping = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        if stopping.is_set():
            force_exit("second interrupt")
        stopping.set()
        if isinstance(stop, threading.Event):
            stop.set()
        else:
            stop()
        name = signal.Signals(signum).name
        err.print(
            f"{name}: finishing the batches in flight, then stopping "
            f"(at most {shutdown_timeout:g} s; again to force)"
        )
        timer = threading.Timer(
            shutdown_timeout, force_exit, args=(f"still busy after {shutdown_timeout:g} s",)
        )
        timer.daemon = True
        timer.start()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KB'."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


class RichBar(Progress):
    """A progress bar on a terminal: objects, lines, MB, lines/s, ETA."""

    def __init__(self) -> None:
        self._bar = RichProgress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(
                "{task.fields[lines]:,} lines · {task.fields[mb]:.1f} MB · {task.fields[rate]:,.0f} lines/s"
            ),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err,
            transient=False,
        )
        self._task: TaskID | None = None
        self._lines = 0
        self._bytes = 0
        self._t0 = time.monotonic()
        self._lock = threading.Lock()

    def start_pass(self, objects: int, nbytes: int) -> None:
        """Reset the bar for a new listing pass."""
        self._bar.start()  # only once work begins: a config error leaves the terminal as it was
        with self._lock:
            if self._task is not None:
                self._bar.remove_task(self._task)
            self._task = self._bar.add_task(
                "shipping", total=objects, lines=self._lines, mb=0.0, rate=0.0
            )

    def advanced(self, lines: int, raw_bytes: int) -> None:
        """Count lines and bytes."""
        with self._lock:
            self._lines += lines
            self._bytes += raw_bytes
            if self._task is not None:
                rate = self._lines / max(time.monotonic() - self._t0, 1e-6)
                self._bar.update(self._task, lines=self._lines, mb=self._bytes / 1e6, rate=rate)

    def object_finished(self, obj: ObjectInfo, error: str | None) -> None:
        """One more object finished."""
        with self._lock:
            if self._task is not None:
                self._bar.advance(self._task)
        if error:
            self._bar.console.print(f"[red]failed[/] {obj.key}: {error}", soft_wrap=True)

    def message(self, text: str) -> None:
        """Print above the bar."""
        self._bar.console.print(text, soft_wrap=True)

    def close(self) -> None:
        """Stop redrawing."""
        self._bar.stop()


class PlainProgress(Progress):
    """Progress lines on stderr when it is not a terminal (logs, CI)."""

    def __init__(self, every: float = 5.0) -> None:
        self._every = every
        self._lock = threading.Lock()
        self._done = self._total = self._lines = self._bytes = 0
        self._t0 = self._last = time.monotonic()

    def _line(self) -> str:
        elapsed = max(time.monotonic() - self._t0, 1e-6)
        return (
            f"progress: {self._done}/{self._total} objects, {self._lines} lines, "
            f"{human_bytes(self._bytes)} read, {self._lines / elapsed:,.0f} lines/s"
        )

    def start_pass(self, objects: int, nbytes: int) -> None:
        """Announce the pass."""
        with self._lock:
            self._total += objects
        print(f"listing found {objects} objects to ship ({human_bytes(nbytes)})", file=sys.stderr)

    def advanced(self, lines: int, raw_bytes: int) -> None:
        """Print a line every few seconds."""
        with self._lock:
            self._lines += lines
            self._bytes += raw_bytes
            now = time.monotonic()
            if now - self._last >= self._every:
                self._last = now
                print(self._line(), file=sys.stderr, flush=True)

    def object_finished(self, obj: ObjectInfo, error: str | None) -> None:
        """Count it; name failures."""
        with self._lock:
            self._done += 1
        if error:
            print(f"failed {obj.key}: {error}", file=sys.stderr, flush=True)

    def message(self, text: str) -> None:
        """Print the notice."""
        print(text, file=sys.stderr, flush=True)


def make_progress(quiet: bool) -> Progress:
    """A bar on a terminal, plain lines otherwise, nothing with --quiet."""
    if quiet:
        return Progress()
    return RichBar() if err.is_terminal else PlainProgress()


def print_summary(result: ShipResult, *, as_json: bool, quiet: bool, verb: str = "shipped") -> int:
    """Print the summary (human on stderr, ``--json`` on stdout) and return the exit code."""
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(result.to_dict()) + b"\n")
        sys.stdout.flush()
    if not quiet:
        counters = ", ".join(f"{k} {v}" for k, v in sorted(result.counters.items()))
        err.print(
            f"{verb} {result.objects} objects, {result.lines:,} lines "
            f"({human_bytes(result.bytes)}) in {result.seconds:.1f} s; "
            f"{result.skipped} skipped; {len(result.failed)} failed"
            + (f"; {counters}" if counters else ""),
            soft_wrap=True,
            highlight=False,
        )
        for f in result.failed:
            err.print(f"  [red]failed[/] {f.key}: {f.error}", soft_wrap=True)
        for name, value in result.reports.items():
            err.print(
                f"  handler {name}: {orjson.dumps(value, default=str).decode()}", soft_wrap=True
            )
        if result.held:
            err.print(
                f"{result.held} objects wait in the error queue after failing every attempt: "
                "see `logferry errors`, retry with `logferry drain`",
                soft_wrap=True,
            )
        if result.interrupted:
            err.print(
                "interrupted: the rest will ship on the next run (the ledger has the position)"
            )
    return EXIT_OK if result.ok else EXIT_FAILED


def emit_json(value: Any) -> None:
    """Print one JSON document on stdout."""
    click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())
