"""The parts of ``--processes`` that need no process: shares, the copies' command line,
adding up their results."""

from __future__ import annotations

import os
import threading

from logferry.cli.processes import child_command
from logferry.engine.processes import Share, shard_of, watch_parent
from logferry.engine.results import Failure, ShipResult, merge_results
from logferry.records import ObjectInfo

OBJECTS = [ObjectInfo(f"k{i:02d}", 10, "e", i) for i in range(30)]


def test_shares_cover_every_key_once() -> None:
    owners = [[s for s in range(3) if Share(s, 3).owns(o.key)] for o in OBJECTS]
    assert all(len(o) == 1 for o in owners)


def test_a_share_comes_first_then_the_others_from_their_end() -> None:
    share = Share(1, 3)
    order = share.order(OBJECTS)
    mine = [o for o in OBJECTS if shard_of(o.key, 3) == 1]
    assert order[: len(mine)] == mine
    nxt = [o for o in OBJECTS if shard_of(o.key, 3) == 2]
    assert order[len(mine) : len(mine) + len(nxt)] == nxt[::-1]
    assert sorted(order, key=lambda o: o.key) == OBJECTS


def test_without_stealing_a_share_is_only_its_own() -> None:
    assert Share(0, 2).order(OBJECTS, steal=False) == [
        o for o in OBJECTS if Share(0, 2).owns(o.key)
    ]


def test_alone_is_the_default_and_bad_values_mean_alone() -> None:
    assert Share.from_env({}) == Share()
    assert Share.from_env({"LOGFERRY_PROCESS": "2/3"}) == Share(2, 3)
    assert Share.from_env({"LOGFERRY_PROCESS": "3/3"}) == Share()
    assert Share().order(OBJECTS) == OBJECTS


def test_the_copies_run_the_command_line_without_processes() -> None:
    argv = ["/x/logferry/__main__.py", "ship", "s3://b", "--processes", "3", "--processes=4", "-q"]
    assert child_command(argv, "py") == ["py", "-m", "logferry", "ship", "s3://b", "-q"]
    assert child_command(["/usr/bin/logferry", "run"], "py") == ["py", "/usr/bin/logferry", "run"]


def test_results_add_up_and_a_failure_counts_once() -> None:
    a = ShipResult("s3://b", objects=2, lines=10, failed=[Failure("k", "bad")], counters={"x": 1})
    b = ShipResult("s3://b", objects=3, lines=5, failed=[Failure("k", "bad")], counters={"x": 2})
    merged = merge_results([a, ShipResult.from_dict(b.to_dict())])
    assert (merged.objects, merged.lines, merged.counters) == (5, 15, {"x": 3})
    assert merged.failed == [Failure("k", "bad")]


def test_a_parent_gone_before_the_watch_began_is_noticed() -> None:
    # A forked copy names its supervisor's PID from before the fork: if the supervisor died
    # before the copy started watching, getppid() already names another process.
    orphaned = threading.Event()
    watch_parent(orphaned.set, every=0.01, parent=os.getppid() + 10**6)
    assert orphaned.wait(2)


def test_copies_that_cannot_be_forked_start_as_new_programs(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import sys

    from logferry.engine.processes import Supervisor

    def no_fork() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    exits: list[int] = []
    supervisor = Supervisor(
        [sys.executable, "-c", "import os; print(os.environ['LOGFERRY_PROCESS'])"],
        2, lambda i, e: None, lambda i, code, again: exits.append(code),
    )  # fmt: skip
    assert supervisor.fork_copies() is None  # nothing forked, nothing left half-open
    assert supervisor.run() == [0, 0]
    assert exits == [0, 0]


def test_pipelines_with_python_handlers_are_not_forked() -> None:
    from logferry.cli.processes import forkable
    from logferry.config import parse_pipeline

    text = "sources: {a: {url: 's3://b', sinks: [h]}}\nsinks: {h: %s}\n"
    assert forkable(parse_pipeline(text % "{url: 'file:///tmp/x'}"))
    assert not forkable(parse_pipeline(text % "{type: python, handler: 'mod:Cls'}"))
