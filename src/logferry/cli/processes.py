"""``--processes N``: a command run as N processes on this machine, shown as one.

Adding it to a command is two lines: ``@processes_option`` among its options, and, once
its arguments and configuration are checked (config errors are reported once, here),
``if processes > 1 and (code := fan_out(processes, follow=..., ...)) is not None:
sys.exit(code)``: the copies are forked there and go on with the command (restarted
ones are this command line again without ``--processes``); see
:mod:`logferry.engine.processes` for how they share the work.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

from logferry import registry
from logferry.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    FailureLog,
    err,
    fail_usage,
    make_progress,
    print_summary,
    print_worker_summary,
)
from logferry.engine import Progress, ShipResult
from logferry.engine.processes import Event, Reporter, Supervisor, watch_parent
from logferry.engine.results import merge_results
from logferry.records import ObjectInfo
from logferry.registry import Role

if TYPE_CHECKING:
    from logferry.config import PipelineConfig

F = TypeVar("F", bound=Callable[..., Any])


def processes_option(func: F) -> F:
    """``--processes N`` (the ``processes`` argument); a copy started by a supervisor stops
    when its supervisor is gone."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("processes", 1) > 1 and kwargs.get("metrics_port") is not None:
            fail_usage("--metrics-port serves one process: drop it, or use --processes 1")
        if Reporter.current() is not None:
            watch_parent(lambda: os.kill(os.getpid(), signal.SIGTERM))
        return func(*args, **kwargs)

    option = click.option(
        "--processes",
        type=click.IntRange(min=1),
        default=1,
        show_default=True,
        metavar="N",
        help="Run as N processes sharing the ledger, to use N cores (each object is shipped "
        "by one of them).",
    )
    return option(wrapper)  # type: ignore[return-value]


def child_command(argv: Sequence[str], executable: str = sys.executable) -> list[str]:
    """This command line again (``argv`` is ``sys.argv``) without ``--processes``."""
    args: list[str] = []
    rest = iter(argv[1:])
    for arg in rest:
        if arg == "--processes":
            next(rest, None)
        elif not arg.startswith("--processes="):
            args.append(arg)
    if getattr(sys, "frozen", False):  # a frozen executable is the program itself
        return [executable, *args]
    # ``python -m logferry`` leaves the package's __main__.py in argv[0]: run it as -m again.
    program = ["-m", "logferry"] if argv[0].endswith("__main__.py") else [argv[0]]
    return [executable, *program, *args]


def fan_out(
    processes: int,
    *,
    follow: bool,
    as_json: bool,
    quiet: bool,
    passed_on: tuple[signal.Signals, ...] = (),
    restart_failed: bool = True,
    targets: Iterable[tuple[str, Role]] = (),
    fork: bool = True,
) -> int | None:
    """Run this command as ``processes`` copies; show one progress and one summary per
    source; return the exit status (the worst of every exit of every copy). Followed runs
    restart a copy that crashed (killed, or exit status 1 unless not ``restart_failed``),
    after a doubling delay. SIGINT and SIGTERM stop the copies; the ``passed_on`` signals
    (SIGHUP for a daemon that reloads) are sent on to them as they are.

    Copies are forked from this process where that is safe (see
    :meth:`Supervisor.fork_copies`): in a copy this returns None, and the caller goes on
    with the command as that copy. So call it once the arguments are checked and before
    opening connections or starting threads. ``targets`` names the sources, sinks and
    queues the copies will open (``(url, role)``): a stdout sink among them is refused (the
    copies' lines would interleave), and their libraries are imported before the fork, once
    for all. ``fork=False`` starts every copy as a new program (a user's own
    handler module may hold a client or a socket made at import, which copies must not share).
    """
    supervisor = Supervisor(
        child_command(sys.argv), processes, _unset_event, _unset_exit,
        restart=follow, restart_failed=restart_failed,
    )  # fmt: skip
    targets = list(targets)
    _refuse_stdout(url for url, role in targets if role == "sink")
    for url, role in targets:
        registry.preload(url, role)  # before forking: imported once, shared by the copies

    supervisor_pid = os.getpid()
    if fork and supervisor.fork_copies() is not None:
        # The PID from before the fork: a supervisor killed since then is noticed too.
        watch_parent(lambda: os.kill(os.getpid(), signal.SIGTERM), parent=supervisor_pid)
        return None
    view = Combined(processes, as_json=as_json, quiet=quiet, follow=follow)
    supervisor.on_event, supervisor.on_exit = view.on_event, view.on_exit
    view.supervisor = supervisor

    def on_signal(signum: int, frame: Any) -> None:
        if not supervisor.stopping:
            err.print(
                f"{signal.Signals(signum).name}: stopping {processes} processes (each finishes "
                "its batches in flight; again to force)"
            )
        supervisor.stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    for sig in passed_on:
        signal.signal(sig, lambda signum, _: supervisor.send(signum))
    return view.finish(supervisor.run())


def pipeline_targets(config: PipelineConfig) -> list[tuple[str, Role]]:
    """The sources and sinks of a pipeline file, for ``fan_out``'s ``targets``."""
    targets: list[tuple[str, Role]] = [(src.url, "source") for src in config.sources.values()]
    targets += [(sink.url, "sink") for sink in config.sinks.values() if sink.url]
    return targets


def _refuse_stdout(sink_urls: Iterable[str | None]) -> None:
    """A usage error when a sink writes to stdout (``-``, ``stdout://``): the copies' lines
    would interleave there."""
    if any(url and registry.scheme_of(url, "sink") in ("-", "stdout") for url in sink_urls):
        fail_usage("--processes and the stdout sink (-) would mix their lines: pick one")


def forkable(config: PipelineConfig) -> bool:
    """False when the pipeline has ``type: python`` sinks: their modules are the user's, and
    what they make at import (a client, a socket, a file) must not be shared by copies."""
    return all(sink.type != "python" for sink in config.sinks.values())


def _unset_event(index: int, event: Event) -> None:
    raise AssertionError("the supervisor's view is set before it runs")


def _unset_exit(index: int, code: int, restart_in: float | None) -> None:
    raise AssertionError("the supervisor's view is set before it runs")


class Combined:
    """What the copies report, shown as one run: one progress, summaries added up."""

    def __init__(self, count: int, *, as_json: bool, quiet: bool, follow: bool) -> None:
        self.count = count
        self.follow = follow
        self.as_json = as_json
        self.quiet = quiet
        self.progress: Progress = (
            Progress() if quiet else FailureLog() if follow else make_progress(quiet)
        )
        self.supervisor: Supervisor | None = None
        #: Each copy's listing passes (objects, bytes of its own share), to add up.
        self._passes: list[list[tuple[int, int]]] = [[] for _ in range(count)]
        self._shown_passes = 0
        self._finals: list[ShipResult] = []
        #: Workers' summaries (``logferry worker``), added up into one at the end.
        self._workers: list[dict[str, Any]] = []
        self._summarized: set[int] = set()

    def on_event(self, index: int, event: Event) -> None:
        """One event from copy ``index``."""
        kind = event.get("e")
        if kind == "pass":
            self._passes[index].append((int(event["objects"]), int(event["bytes"])))
            # One bar for all: a pass starts when every copy has listed its share.
            while all(len(p) > self._shown_passes for p in self._passes):
                shares = [p[self._shown_passes] for p in self._passes]
                self._shown_passes += 1
                self.progress.start_pass(sum(n for n, _ in shares), sum(b for _, b in shares))
        elif kind == "adv":
            self.progress.advanced(int(event["lines"]), int(event["bytes"]))
        elif kind == "done":
            self.progress.object_finished(ObjectInfo(str(event["key"]), 0, "", 0), event["error"])
        elif kind == "msg":
            self.progress.message(str(event["text"]))
        elif kind == "summary":
            self._summary(index, event)

    def _summary(self, index: int, event: Event) -> None:
        if isinstance(event.get("worker"), dict):
            self._workers.append(event["worker"])
            self._summarized.add(index)
            return
        result = ShipResult.from_dict(event["result"], str(event.get("unit", "objects")))
        if event.get("final"):
            self._finals.append(result)
            self._summarized.add(index)
        else:  # a followed run's cycle: as it comes
            verb = str(event.get("verb", "shipped"))
            shown = {"as_json": bool(event.get("json")), "quiet": bool(event.get("quiet"))}
            print_summary(result, verb=verb, final=False, **shown)

    def _stopped_early(self, code: int) -> bool:
        """A copy the stop signal ended before it could catch it (still starting): it had
        shipped nothing, so this is no failure."""
        stopping = self.supervisor is not None and self.supervisor.stopping
        return stopping and code == -signal.SIGTERM

    def on_exit(self, index: int, code: int, restart_in: float | None) -> None:
        """Say so when a copy crashed (what the others did is kept)."""
        stopping = self.supervisor is not None and self.supervisor.stopping
        if self._stopped_early(code):
            return
        if code >= 0 and (code != EXIT_FAILED or index in self._summarized or stopping):
            return
        how = (
            f"was killed by {signal.Signals(-code).name}"
            if code < 0 and -code in signal.valid_signals()
            else f"exited with status {code}"
        )
        then = f"; restarting it in {restart_in:g} s" if restart_in is not None else ""
        err.print(
            f"process {index + 1} of {self.count} {how}: what it held is shipped again once "
            f"its claims expire{then}",
            soft_wrap=True,
        )

    def finish(self, codes: list[int]) -> int:
        """Close the progress, print one summary per source; the worst exit status."""
        self.progress.close()
        by_source: dict[str, list[ShipResult]] = {}
        for result in self._finals:
            by_source.setdefault(result.source, []).append(result)
        status = EXIT_OK
        for results in by_source.values():
            merged = merge_results(results)
            status = max(status, print_summary(merged, as_json=self.as_json, quiet=self.quiet))
        if self._workers:
            from logferry.engine.worker import WorkerStats

            merged_stats = WorkerStats.add_up(self._workers)
            print_worker_summary(merged_stats, as_json=self.as_json, quiet=self.quiet)
        # A daemon asked to stop ends well; a one-off run stopped early is interrupted.
        stopped = EXIT_OK if self.follow else EXIT_FAILED
        codes = [stopped if self._stopped_early(c) else c for c in codes]
        return max([status, *(EXIT_FAILED if code < 0 else code for code in codes)])
