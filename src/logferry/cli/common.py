"""What every command shares: error handling, exit codes, progress and summary printing."""

from __future__ import annotations

import functools
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import click
import orjson
from rich.console import Console
from rich.markup import escape
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
from logferry.engine.processes import Reporter, ReportingProgress
from logferry.engine.results import plural
from logferry.errors import ConfigError, LogferryError
from logferry.records import ObjectInfo
from logferry.untrusted import visible

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
#: The reader of standard output went away: 128 + SIGPIPE, as a shell reports ``cat | head``.
EXIT_PIPE_CLOSED = 128 + signal.SIGPIPE

err = Console(stderr=True, highlight=False)
# Off a terminal (logs, CI, a pipe) there is no width to fit: never wrap or cut a line.
err.soft_wrap = not err.is_terminal

F = TypeVar("F", bound=Callable[..., Any])


def safe_text(value: object, *, markup: bool = True) -> str:
    """Text from outside (keys, source ids, error text, server answers), safe to print.

    Control characters and other invisible tricks become visible escapes (``\\x1b``), and
    with ``markup`` (for rich) ``[`` is escaped so the text can never be read as a tag.
    """
    text = visible(value)
    return escape(text) if markup else text


# In JSON, orjson already writes C0 controls as \\u escapes; these it leaves as they are.
_UNSAFE_IN_JSON = re.compile(r"[\x7f-\x9f\u200e\u200f\u202a-\u202e\u2028\u2029\u2066-\u2069]")


def json_text(value: Any, *, indent: bool = False) -> str:
    """``value`` as JSON that is safe on a terminal: every invisible trick a ``\\u`` escape."""
    try:
        text = orjson.dumps(value, default=str, option=orjson.OPT_INDENT_2 if indent else 0)
    except orjson.JSONEncodeError:  # lone surrogates (undecodable file names): ASCII escapes
        import json

        return json.dumps(value, default=str, indent=2 if indent else None)
    return _UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text.decode())


def fail_usage(message: str) -> None:
    """Print a one-line usage/config error and exit 2."""
    err.print(f"[bold red]error:[/] {safe_text(message)}", soft_wrap=True)
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
            err.print(f"[bold red]error:[/] {safe_text(exc)}", soft_wrap=True)
            sys.exit(EXIT_FAILED)

    return wrapper  # type: ignore[return-value]


def install_signal_handlers(
    stop: threading.Event | Callable[[], None],
    shutdown_timeout: float = 30.0,
    force_after: float | None = None,
) -> None:
    """First SIGINT/SIGTERM: finish the batch in flight, checkpoint, stop. Second: exit now.

    If the work in flight has not wound down after ``shutdown_timeout`` seconds (a sink
    hanging on a request, say), exit anyway: the ledger only ever holds acknowledged
    positions, so stopping mid-batch costs at most a re-send of that batch. A command that
    winds down by itself within ``shutdown_timeout`` (the worker) passes a later ``force_after``.
    """
    force_after = shutdown_timeout if force_after is None else force_after

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
        # A copy under --processes says nothing: its supervisor said it once for all.
        if Reporter.current() is None:
            err.print(
                f"{name}: finishing the batches in flight, then stopping "
                f"(at most {shutdown_timeout:g} s; again to force)"
            )
        timer = threading.Timer(
            force_after, force_exit, args=(f"still busy after {force_after:g} s",)
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
            self._bar.console.print(
                f"[red]failed[/] {safe_text(obj.key)}: {safe_text(error)}", soft_wrap=True
            )

    def message(self, text: str) -> None:
        """Print above the bar."""
        self._bar.console.print(safe_text(text), soft_wrap=True)

    def close(self) -> None:
        """Stop redrawing."""
        self._bar.stop()


def _say(line: str) -> None:
    # One write per line: workers finishing at once must not interleave half lines.
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


class PlainProgress(Progress):
    """Progress lines on stderr when it is not a terminal (logs, CI)."""

    def __init__(self, every: float = 5.0) -> None:
        self._every = every
        self._lock = threading.Lock()
        self._done = self._total = self._lines = self._bytes = 0
        self._t0 = self._last = time.monotonic()

    def _line(self) -> str:
        elapsed = max(time.monotonic() - self._t0, 1e-6)
        # Streams have no total to count against: say how many are done, if any.
        done = (
            f"{self._done}/{self._total} {self.unit}"
            if self._total
            else plural(self._done, self.unit) + " done"
        )
        return (
            f"progress: {done}, {self._lines:,} lines, "
            f"{human_bytes(self._bytes)} read, {self._lines / elapsed:,.0f} lines/s"
        )

    def start_pass(self, objects: int, nbytes: int) -> None:
        """Announce the pass."""
        with self._lock:
            self._total += objects
        _say(f"listing found {plural(objects, self.unit)} to ship ({human_bytes(nbytes)})")

    def advanced(self, lines: int, raw_bytes: int) -> None:
        """Print a line every few seconds."""
        with self._lock:
            self._lines += lines
            self._bytes += raw_bytes
            now = time.monotonic()
            if now - self._last >= self._every:
                self._last = now
                _say(self._line())

    def object_finished(self, obj: ObjectInfo, error: str | None) -> None:
        """Count it; name failures."""
        with self._lock:
            self._done += 1
        if error:
            _say(f"failed {safe_text(obj.key, markup=False)}: {safe_text(error, markup=False)}")

    def message(self, text: str) -> None:
        """Print the notice."""
        _say(safe_text(text, markup=False))


class FailureLog(Progress):
    """A daemon's progress: each failure and notice as one plain line as it happens."""

    def object_finished(self, obj: ObjectInfo, error: str | None) -> None:
        """Name failures."""
        if error:
            _say(f"failed {safe_text(obj.key, markup=False)}: {safe_text(error, markup=False)}")

    def message(self, text: str) -> None:
        """Print the notice."""
        _say(safe_text(text, markup=False))


def make_progress(quiet: bool) -> Progress:
    """A bar on a terminal, plain lines otherwise, nothing with --quiet; under --processes,
    events to the supervisor, which shows one bar for all."""
    reporter = Reporter.current()
    if reporter is not None:
        return ReportingProgress(reporter)
    if quiet:
        return Progress()
    return RichBar() if err.is_terminal else PlainProgress()


def print_summary(
    result: ShipResult, *, as_json: bool, quiet: bool, verb: str = "shipped", final: bool = True
) -> int:
    """Print the summary (human on stderr, ``--json`` on stdout) and return the exit code.

    When the reader of ``--to -`` went away (``| head``), print nothing and exit as Unix
    tools do on SIGPIPE (141): what was not written stays unacknowledged for the next run.
    Under ``--processes`` the summary goes to the supervisor: it adds up the ``final`` ones
    into one, and prints the others (a followed run's cycles) as they come.
    """
    from logferry.sinks.stdout import OUTPUT_CLOSED

    if OUTPUT_CLOSED.is_set():
        return EXIT_PIPE_CLOSED
    reporter = Reporter.current()
    if reporter is not None:
        summary = {"result": result.to_dict(), "unit": result.unit, "final": final}
        reporter.send({"e": "summary", "json": as_json, "quiet": quiet, "verb": verb, **summary})
        return EXIT_OK if result.ok else EXIT_FAILED
    if as_json:
        sys.stdout.write(json_text(result.to_dict()) + "\n")
        sys.stdout.flush()
    if not quiet:
        counters = ", ".join(f"{k} {v}" for k, v in sorted(result.counters.items()))
        # Each failure was printed once, as it happened; the summary only counts them.
        failed = f"{len(result.failed)} failed" + (
            " (above; `logferry errors` lists them)" if result.failed else ""
        )
        err.print(
            f"{verb} {plural(result.objects, result.unit)}, {plural(result.lines, 'lines')} "
            f"({human_bytes(result.bytes)}) in {result.seconds:.1f} s; "
            f"{result.skipped} skipped; {failed}" + (f"; {counters}" if counters else ""),
            soft_wrap=True,
            highlight=False,
        )
        if result.dead_letters:
            err.print(
                f"{result.dead_letters:,} records a sink refused are kept as dead letters: "
                "`logferry drain --to SINK` delivers them",
                soft_wrap=True,
            )
        for name, value in result.reports.items():
            report = orjson.dumps(value, default=str).decode()
            err.print(f"  handler {safe_text(name)}: {safe_text(report)}", soft_wrap=True)
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


def print_worker_summary(data: dict[str, Any], *, as_json: bool, quiet: bool) -> None:
    """Print a worker's summary (``WorkerStats.to_dict()``: human on stderr, ``--json`` on
    stdout). Under ``--processes`` it goes to the supervisor, which adds them up into one."""
    reporter = Reporter.current()
    if reporter is not None:
        reporter.send({"e": "summary", "worker": data, "json": as_json, "quiet": quiet})
        return
    if as_json:
        sys.stdout.write(json_text(data) + "\n")
        sys.stdout.flush()
    if quiet:
        return
    m = data["messages"]
    err.print(
        f"worker: {plural(m['received'], 'messages')} received: {m['acked']} acked, "
        f"{m['naked']} given back, {m['dead_lettered']} dead-lettered, "
        f"{m['forwarded']} forwarded; shipped {plural(data['objects'], 'objects')}, "
        f"{plural(data['lines'], 'lines')} ({human_bytes(data['bytes'])}), "
        f"{data['duplicates_skipped']} duplicates skipped in {data['seconds']:.1f} s",
        soft_wrap=True,
        highlight=False,
    )


def emit_json(value: Any) -> None:
    """Print one JSON document on stdout."""
    click.echo(json_text(value, indent=True))
