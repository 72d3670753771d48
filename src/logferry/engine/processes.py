"""Several processes on one machine: a supervisor running N copies of a command, and the
share of a bucket each copy ships first.

Per-line work (decoding, encoding) is Python, and threads share one GIL: one process tops
out near one core. ``--processes N`` runs N copies of the command instead. They share the
ledger, whose claims keep every object to one of them (invariant 4). So that they do not
all race for the same first objects, each copy ships its own *share* first (a stable hash
of the key modulo N), then helps with the others' shares from their newest end: copies
meet only where two of them finish a share, and none idles while another has a long tail.

A copy learns its place from ``LOGFERRY_PROCESS`` (``INDEX/COUNT``) and reports to the
supervisor over the pipe ``LOGFERRY_REPORT_FD`` names: one JSON object per line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import orjson

from logferry.engine.results import Progress
from logferry.records import ObjectInfo

log = logging.getLogger("logferry")

ENV_SHARE = "LOGFERRY_PROCESS"
ENV_REPORT_FD = "LOGFERRY_REPORT_FD"

#: An event from a child: ``{"e": "pass" | "adv" | "done" | "msg" | "summary", ...}``.
Event = dict[str, Any]


def shard_of(key: str, shards: int) -> int:
    """A key's shard: stable across processes and hosts (unlike ``hash()``)."""
    return zlib.crc32(key.encode("utf-8", "surrogateescape")) % shards


@dataclass(frozen=True)
class Share:
    """This process's place among ``count`` copies of one command (``0/1``: alone)."""

    index: int = 0
    count: int = 1

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Share:
        """The share the supervisor gave this process; alone when none (or a bad value)."""
        index, _, count = env.get(ENV_SHARE, "").partition("/")
        if not (index.isdigit() and count.isdigit()) or int(index) >= int(count):
            return cls()
        return cls(int(index), int(count))

    @property
    def shared(self) -> bool:
        """True when other copies work on the same sources."""
        return self.count > 1

    def owns(self, key: str) -> bool:
        """True when ``key`` is in this process's own share."""
        return not self.shared or shard_of(key, self.count) == self.index

    def order(self, objects: Sequence[ObjectInfo], *, steal: bool = True) -> list[ObjectInfo]:
        """``objects`` in the order this process takes them: its own share (in the given
        order), then, with ``steal``, each other share from its end, the next share first."""
        if not self.shared:
            return list(objects)
        shares: list[list[ObjectInfo]] = [[] for _ in range(self.count)]
        for obj in objects:
            shares[shard_of(obj.key, self.count)].append(obj)
        ordered = shares[self.index]
        if steal:
            for step in range(1, self.count):
                ordered += reversed(shares[(self.index + step) % self.count])
        return ordered


class Reporter:
    """A child's side of the pipe to its supervisor: one JSON event per line."""

    _current: Reporter | None = None
    _looked = False

    def __init__(self, fd: int) -> None:
        self._file = os.fdopen(fd, "wb", buffering=0)
        self._lock = threading.Lock()

    @classmethod
    def forget(cls) -> None:
        """Look at the environment again on the next :meth:`current` (a forked copy)."""
        cls._current, cls._looked = None, False

    @classmethod
    def current(cls) -> Reporter | None:
        """The pipe this process reports to, when a supervisor started it."""
        if not cls._looked:
            cls._looked = True
            fd = os.environ.get(ENV_REPORT_FD, "")
            if fd.isdigit():
                with contextlib.suppress(OSError):
                    cls._current = Reporter(int(fd))
        return cls._current

    def send(self, event: Event) -> None:
        """Send one event (lost quietly if the supervisor is gone: it cannot be told)."""
        data = orjson.dumps(event) + b"\n"
        with self._lock, contextlib.suppress(OSError, ValueError):
            self._file.write(data)


class ReportingProgress(Progress):
    """A child's progress: events to the supervisor, the lines coalesced a few times a second."""

    def __init__(self, reporter: Reporter, every: float = 0.25) -> None:
        self._reporter = reporter
        self._every = every
        self._lock = threading.Lock()
        self._lines = self._bytes = 0
        self._last = time.monotonic()

    def start_pass(self, objects: int, nbytes: int) -> None:
        """Tell how many objects of its own share this pass holds."""
        self._reporter.send({"e": "pass", "objects": objects, "bytes": nbytes})

    def advanced(self, lines: int, raw_bytes: int) -> None:
        """Count; send the sums now and then."""
        with self._lock:
            self._lines += lines
            self._bytes += raw_bytes
            if time.monotonic() - self._last < self._every:
                return
        self._flush()

    def _flush(self) -> None:
        with self._lock:
            lines, nbytes, self._lines, self._bytes = self._lines, self._bytes, 0, 0
            self._last = time.monotonic()
        if lines or nbytes:
            self._reporter.send({"e": "adv", "lines": lines, "bytes": nbytes})

    def object_finished(self, obj: ObjectInfo, error: str | None) -> None:
        """Send the sums so far, then the object."""
        self._flush()
        self._reporter.send({"e": "done", "key": obj.key, "error": error})

    def message(self, text: str) -> None:
        """Forward the notice."""
        self._reporter.send({"e": "msg", "text": text})

    def close(self) -> None:
        """Send what is left."""
        self._flush()


def watch_parent(
    on_orphaned: Callable[[], None], every: float = 1.0, parent: int | None = None
) -> None:
    """Call ``on_orphaned`` once if the process that started this one goes away (a supervisor
    killed with -9 must not leave its copies running for ever). ``parent``: its PID, known
    from before this process began (a forked copy), so that a parent gone already counts."""
    if parent is None:
        parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        on_orphaned()

    threading.Thread(target=watch, name="logferry-parent-watch", daemon=True).start()


class Forked:
    """A copy started by ``fork``, with the part of ``Popen``'s interface the supervisor uses
    (``returncode`` as ``Popen`` gives it: negative for a signal)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """Its exit status once it ended (reaping it), else None."""
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere: its status is lost
                self.returncode = 1
            else:
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        """Signal it while it runs (never a PID reused after it was reaped)."""
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        """SIGTERM."""
        self.send_signal(signal.SIGTERM)


@dataclass
class Child:
    """One copy of the command, as the supervisor sees it."""

    index: int
    process: subprocess.Popen[bytes] | Forked | None = None
    reader: threading.Thread | None = None
    started: float = 0.0
    #: Exit status of its last run (negative: killed by that signal).
    returncode: int | None = None
    crashes: int = 0
    restart_at: float | None = None
    #: Its exit statuses, one per run.
    exits: list[int] = field(default_factory=list)


class Supervisor:
    """Runs ``count`` copies of ``argv``, each told its share, and pumps their events.

    ``on_event(index, event)`` is called in the caller's thread for every event a copy
    reports; ``on_exit(index, returncode, restart_in)`` when a copy ends (``restart_in``:
    seconds until it starts again, or None). With ``restart``, a copy that crashed (killed
    by a signal, or, with ``restart_failed``, exit status 1 while nobody asked it to stop)
    starts again after a doubling delay; a copy that ran ``healthy`` seconds has its delay
    reset. Without ``restart_failed`` exit status 1 is a copy's own verdict (it ran and some
    work failed), kept as it is.
    """

    def __init__(
        self,
        argv: Sequence[str],
        count: int,
        on_event: Callable[[int, Event], None],
        on_exit: Callable[[int, int, float | None], None],
        *,
        restart: bool = False,
        restart_failed: bool = True,
        backoff: tuple[float, float] = (1.0, 60.0),
        healthy: float = 60.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.children = [Child(i) for i in range(count)]
        self.on_event = on_event
        self.on_exit = on_exit
        self.restart = restart
        self.restart_failed = restart_failed
        self.backoff = backoff
        self.healthy = healthy
        self.env = dict(os.environ if env is None else env)
        #: Events from the copies; ``None`` when a copy's pipe closed (it is exiting).
        self._events: queue.Queue[tuple[int, Event | None]] = queue.Queue()
        self._stopping = threading.Event()
        # Re-entrant: stop() runs in a signal handler, which may interrupt _spawn holding it.
        self._lock = threading.RLock()

    def fork_copies(self) -> int | None:
        """Start every copy by forking this process, where that is safe: on a system with
        ``fork``, while this process runs one thread. Return the copy's index in each copy,
        which then goes on with the command as that copy; None here, in the supervisor
        (and when it could not fork: :meth:`run` then starts the copies as new programs).

        A forked copy starts in milliseconds and shares the modules the command imported;
        a new program imports them again (a large part of a short run's CPU, paid N times
        on N cores that have other work to do). Copies restarted after a crash are new
        programs: by then the supervisor runs threads, which ``fork`` does not copy.
        """
        if not hasattr(os, "fork") or threading.active_count() > 1 or self._stopping.is_set():
            return None
        pipes = [os.pipe() for _ in self.children]
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()  # else each copy would write the buffered text again
        for child, (_, write) in zip(self.children, pipes, strict=True):
            try:
                pid = os.fork()
            except OSError as exc:  # EAGAIN, ENOMEM: run() starts the rest as new programs
                log.warning("cannot fork process %d: %s; starting it anew", child.index + 1, exc)
                break
            if pid == 0:
                self._become(child.index, write, pipes)
                return child.index
            child.process, child.started = Forked(pid), time.monotonic()
        for child, (read, write) in zip(self.children, pipes, strict=True):
            os.close(write)
            if child.process is None:
                os.close(read)
            else:
                self._start_reader(child, read)
        return None

    def _become(self, index: int, write: int, pipes: list[tuple[int, int]]) -> None:
        """In a forked copy: its own session (as for a new program), its pipe, its share."""
        os.setsid()
        for read, other in pipes:
            os.close(read)
            if other != write:
                os.close(other)
        os.environ[ENV_SHARE] = f"{index}/{len(self.children)}"
        os.environ[ENV_REPORT_FD] = str(write)
        Reporter.forget()

    def run(self) -> list[int]:
        """Start every copy not started yet and wait for them all; return every exit status
        of every copy (a restarted copy's earlier ones too: a failure is not hidden by the
        run after it; 1 for a copy that never ran)."""
        for child in self.children:
            if child.process is None:
                self._spawn(child)
        while True:
            self._pump(0.1)
            now = time.monotonic()
            for child in self.children:
                self._reap(child, now)
            if all(c.process is None and c.restart_at is None for c in self.children):
                break
        self._pump(0)
        return [code for c in self.children for code in (c.exits or [1])]

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Pass ``sig`` on to every running copy (each finishes its batches and stops); no
        copy starts again after this. A second call passes it on again (copies force-exit)."""
        self._stopping.set()
        with self._lock:
            for child in self.children:
                child.restart_at = None
        self.send(sig)

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stopping.is_set()

    def send(self, sig: int) -> None:
        """Send ``sig`` to every running copy (SIGHUP: reload a pipeline file)."""
        with self._lock:
            for child in self.children:
                if child.process is not None and child.process.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        child.process.send_signal(sig)

    def _spawn(self, child: Child) -> None:
        read, write = os.pipe()
        env = {
            **self.env,
            ENV_SHARE: f"{child.index}/{len(self.children)}",
            ENV_REPORT_FD: str(write),
        }
        with self._lock:
            child.restart_at = None
            if self._stopping.is_set():
                os.close(read)
                os.close(write)
                return
            try:
                # Its own session: a terminal's ^C reaches the supervisor only, which passes
                # it on once (twice would make a copy force-exit); and where the kernel shares
                # CPU between sessions (autogroup), each copy gets a share of its own rather
                # than N copies splitting one on a busy machine.
                child.process = subprocess.Popen(
                    self.argv, env=env, pass_fds=(write,), start_new_session=True
                )
            finally:
                os.close(write)
            if self._stopping.is_set():  # stop() came during Popen, before it knew this one
                child.process.terminate()
        child.started = time.monotonic()
        self._start_reader(child, read)

    def _start_reader(self, child: Child, read: int) -> None:
        pipe = os.fdopen(read, "rb")
        child.reader = threading.Thread(
            target=self._read, args=(child.index, pipe), name=f"logferry-child-{child.index}"
        )
        child.reader.daemon = True
        child.reader.start()

    def _read(self, index: int, pipe: IO[bytes]) -> None:
        with pipe:
            for line in pipe:
                try:
                    event = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue  # a copy cut off mid-line by a kill: its last event is lost
                if isinstance(event, dict):
                    self._events.put((index, event))
        self._events.put((index, None))  # its end: wake the pump to reap it now

    def _pump(self, timeout: float) -> None:
        try:
            index, event = (
                self._events.get(timeout=timeout) if timeout else self._events.get_nowait()
            )
        except queue.Empty:
            return
        while True:
            if event is not None:
                self.on_event(index, event)
            try:
                index, event = self._events.get_nowait()
            except queue.Empty:
                return

    def _reap(self, child: Child, now: float) -> None:
        if child.restart_at is not None and now >= child.restart_at:
            self._spawn(child)
            return
        process = child.process
        if process is None:
            return
        if process.poll() is None:
            if child.reader is None or child.reader.is_alive():
                return
            # Its pipe closed: it is exiting. Reap it now rather than on the next tick.
            deadline = now + 0.2
            while process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.002)
            if process.returncode is None:
                return
        if child.reader is not None:
            child.reader.join(5.0)  # its last events (the summary) come before its exit
        self._pump(0)
        code = process.returncode
        assert code is not None  # polled above
        child.process, child.returncode = None, code
        child.exits.append(code)
        restart_in: float | None = None
        crashed = code < 0 or (code == 1 and self.restart_failed)
        if self.restart and crashed and not self._stopping.is_set():
            if now - child.started >= self.healthy:
                child.crashes = 0
            base, cap = self.backoff
            restart_in = min(base * 2**child.crashes, cap)
            child.crashes += 1
            child.restart_at = now + restart_in
        self.on_exit(child.index, code, restart_in)
