"""The ledger contract, run against every backend: claims, leases, checkpoints, error queue."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from logferry.ledger import Ledger, Status
from logferry.ledger.base import ClaimLostError, Seen
from logferry.records import ObjectInfo
from tests.ledger.conftest import Backend

OBJ = ObjectInfo("logs/a.gz", 100, "etag-1", 1_700_000_000_000)


def _obj(i: int) -> ObjectInfo:
    return ObjectInfo(f"k{i:03d}", 1, "e", 0)


def test_claim_checkpoint_complete(ledger: Ledger) -> None:
    claim = ledger.claim("s3://b", OBJ, "me", 60)
    assert claim is not None
    assert claim.position == 0
    assert claim.attempts == 1
    ledger.checkpoint(claim, 500, 4000, 60)
    entry = ledger.get("s3://b", OBJ.key, OBJ.etag)
    assert entry
    assert entry.status == Status.ACTIVE
    assert entry.position == 500
    assert entry.bytes == 4000
    assert entry.owner == "me"
    assert entry.size == 100
    ledger.complete(claim)
    entry = ledger.get("s3://b", OBJ.key, OBJ.etag)
    assert entry
    assert entry.status == Status.DONE
    assert entry.lines == 500
    assert entry.owner is None
    # done objects are not claimed again, unless forced (a deliberate re-send) from 0
    assert ledger.claim("s3://b", OBJ, "me", 60) is None
    again = ledger.claim("s3://b", OBJ, "me", 60, force=True)
    assert again is not None
    assert again.position == 0
    assert again.attempts == 2
    forced = ledger.get("s3://b", OBJ.key, OBJ.etag)
    assert forced
    assert (forced.position, forced.lines, forced.bytes) == (0, 0, 0)


def test_get_unknown_is_none(ledger: Ledger) -> None:
    assert ledger.get("s3://b", "nope", "e") is None
    assert ledger.entry(12345) is None
    assert ledger.lookup("s3://b", []) == {}
    assert ledger.status() == []
    assert ledger.entries() == []


def test_new_etag_is_a_new_object(ledger: Ledger) -> None:
    claim = ledger.claim("s3://b", OBJ, "me", 60)
    assert claim
    ledger.complete(claim)
    newer = ObjectInfo(OBJ.key, 200, "etag-2", OBJ.last_modified_ms + 1)
    assert ledger.claim("s3://b", newer, "me", 60) is not None
    seen = ledger.lookup("s3://b", [OBJ.key])[OBJ.key]
    assert (seen.etag, seen.status, seen.attempts) == ("etag-2", Status.ACTIVE, 1)


def test_lookup_known_keys_of_one_source(ledger: Ledger) -> None:
    for i in range(3):
        assert ledger.claim("s3://b", _obj(i), "me", 60)
    assert ledger.claim("s3://other", _obj(5), "me", 60)
    found = ledger.lookup("s3://b", (f"k{i:03d}" for i in range(6)))
    assert found == {f"k{i:03d}": Seen("e", Status.ACTIVE, 1) for i in range(3)}
    # many keys at once (SQLite batches them; Postgres sends one array)
    assert len(ledger.lookup("s3://b", [f"x{i}" for i in range(1200)] + ["k001"])) == 1


def test_live_claim_blocks_others_until_lease_expires(ledger: Ledger) -> None:
    first = ledger.claim("s3://b", OBJ, "host-x:1:a", 60)
    assert first is not None
    assert ledger.claim("s3://b", OBJ, "host-x:2:b", 60) is None
    # an expired lease can be taken over, and resumes at the checkpoint
    ledger.checkpoint(first, 7, 10, -1)
    taken = ledger.claim("s3://b", OBJ, "host-x:2:b", 60)
    assert taken is not None
    assert taken.position == 7
    assert taken.attempts == 2
    with pytest.raises(ClaimLostError):
        ledger.checkpoint(first, 9, 10, 60)
    for lost in (ledger.complete, ledger.release):
        with pytest.raises(ClaimLostError):
            lost(first)
    with pytest.raises(ClaimLostError):
        ledger.fail(first, "late")
    entry = ledger.get("s3://b", OBJ.key, OBJ.etag)
    assert entry
    assert entry.owner == "host-x:2:b"
    assert entry.position == 7


def test_same_owner_reclaims_its_own_claim(ledger: Ledger) -> None:
    first = ledger.claim("s3://b", OBJ, "host-x:1:a", 60)
    assert first
    again = ledger.claim("s3://b", OBJ, "host-x:1:a", 60)
    assert again is not None
    assert again.attempts == 2


def test_renew_extends_only_held_leases(ledger: Ledger) -> None:
    mine = ledger.claim("s3://b", OBJ, "host-x:1:a", -1)
    assert mine
    ledger.renew([mine], 60)
    assert ledger.claim("s3://b", OBJ, "host-x:2:b", 60) is None  # renewed: still held
    ledger.renew([mine], -1)
    theirs = ledger.claim("s3://b", OBJ, "host-x:2:b", 60)
    assert theirs
    ledger.renew([mine], 3600)  # a lost claim is not revived by a heartbeat
    ledger.renew([], 60)
    with pytest.raises(ClaimLostError):
        ledger.checkpoint(mine, 1, 1, 60)
    ledger.checkpoint(theirs, 1, 1, 60)


def _dead_local_owner() -> str:
    """The owner id a process of ours had, once that process has exited."""
    code = "from logferry.ledger.base import new_owner_id; print(new_owner_id())"
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_dead_process_claim_is_taken_at_once(ledger: Ledger) -> None:
    dead_owner = _dead_local_owner()
    assert ledger.claim("s3://b", OBJ, dead_owner, 3600) is not None
    assert ledger.claim("s3://b", OBJ, "me", 60) is not None


def test_old_owner_ids_wait_for_the_lease(ledger: Ledger) -> None:
    """An owner id of an older version names no PID namespace: only its lease says it is dead."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    old_style = f"{socket.gethostname()}:{proc.pid}:0123abcd"
    first = ledger.claim("s3://b", OBJ, old_style, 3600)
    assert first is not None
    assert ledger.claim("s3://b", OBJ, "me", 60) is None
    ledger.renew([first], -1)
    assert ledger.claim("s3://b", OBJ, "me", 60) is not None


def test_takeovers_of_dead_runners_count_until_crashed(ledger: Ledger) -> None:
    """A poison object (it gets every runner killed) is held after ``max_attempts``."""
    for attempt in range(1, 4):
        claim = ledger.claim("s3://b", OBJ, _dead_local_owner(), 3600, max_attempts=3)
        assert claim is not None and claim.attempts == attempt
    # the third runner died too: a fourth attempt would exceed 3
    assert ledger.claim("s3://b", OBJ, "host-y:9:c", 60, max_attempts=3) is None
    entry = ledger.get("s3://b", OBJ.key, OBJ.etag)
    assert entry is not None
    assert (entry.status, entry.error_class, entry.attempts, entry.owner) == (
        Status.FAILED,
        "Crashed",
        3,
        None,
    )
    assert entry.last_error is not None and "\n" not in entry.last_error
    assert "died" in entry.last_error and "logferry drain" in entry.last_error
    assert [e.id for e in ledger.entries(status=Status.FAILED)] == [entry.id]
    # the error queue's retry (no limit, as drain claims) takes it again
    again = ledger.claim("s3://b", OBJ, "host-y:9:c", 60)
    assert again is not None and again.attempts == 4


def test_expired_lease_takeover_counts_as_an_attempt(ledger: Ledger) -> None:
    first = ledger.claim("s3://b", OBJ, "host-x:1:a", -1, max_attempts=2)
    assert first is not None
    second = ledger.claim("s3://b", OBJ, "host-x:2:b", -1, max_attempts=2)
    assert second is not None and second.attempts == 2
    assert ledger.claim("s3://b", OBJ, "host-x:3:c", 60, max_attempts=2) is None
    entry = ledger.get("s3://b", OBJ.key, OBJ.etag)
    assert entry and entry.status == Status.FAILED and entry.error_class == "Crashed"
    with pytest.raises(ClaimLostError):
        ledger.checkpoint(second, 1, 1, 60)


def test_max_attempts_spares_live_holders_own_claims_and_failures(ledger: Ledger) -> None:
    """Only a takeover of a dead holder is refused: not a live claim, a re-claim, or a retry."""
    live = ledger.claim("s3://b", OBJ, "host-x:1:a", 60, max_attempts=1)
    assert live is not None
    assert ledger.claim("s3://b", OBJ, "host-x:2:b", 60, max_attempts=1) is None
    entry = ledger.get("s3://b", OBJ.key, OBJ.etag)
    assert entry and entry.status == Status.ACTIVE and entry.owner == "host-x:1:a"
    # its own owner claiming again (after a transient failure in the same run) is no takeover
    mine = ledger.claim("s3://b", OBJ, "host-x:1:a", 60, max_attempts=1)
    assert mine is not None and mine.attempts == 2
    ledger.fail(mine, "timeout", "RetryableSinkError")
    # a failed row is not a crash: the runner decides from attempts whether to retry it
    retry = ledger.claim("s3://b", OBJ, "host-x:2:b", -1, max_attempts=1)
    assert retry is not None and retry.attempts == 3
    # a forced claim (an explicit re-send) is not counted out either
    forced = ledger.claim("s3://b", OBJ, "host-x:3:c", 60, force=True, max_attempts=1)
    assert forced is not None and forced.attempts == 4


def test_fail_keeps_position_and_release(ledger: Ledger) -> None:
    claim = ledger.claim("s3://b", OBJ, "me", 60)
    assert claim
    ledger.checkpoint(claim, 3, 30, 60)
    ledger.fail(claim, "boom\nsecond line", "DecodeError")
    entry = ledger.get("s3://b", OBJ.key, OBJ.etag)
    assert entry
    assert entry.status == Status.FAILED
    assert entry.last_error == "boom"
    assert entry.error_class == "DecodeError"
    assert entry.position == 3
    assert entry.owner is None
    retry = ledger.claim("s3://b", OBJ, "me", 60)
    assert retry
    assert retry.position == 3
    assert retry.attempts == 2
    ledger.release(retry)
    released = ledger.get("s3://b", OBJ.key, OBJ.etag)
    assert released
    assert released.status == Status.PENDING
    assert released.position == 3
    resumed = ledger.claim("s3://b", OBJ, "other", 60)
    assert resumed
    assert resumed.position == 3
    assert resumed.attempts == 3
    ledger.complete(resumed)
    done = ledger.get("s3://b", OBJ.key, OBJ.etag)
    assert done
    assert done.last_error is None


def test_fail_without_message_or_class(ledger: Ledger) -> None:
    claim = ledger.claim("s3://b", OBJ, "me", 60)
    assert claim
    ledger.fail(claim, "")
    entry = ledger.get("s3://b", OBJ.key, OBJ.etag)
    assert entry
    assert entry.last_error == "unknown error"
    assert entry.error_class is None


def test_status_aggregates(ledger: Ledger) -> None:
    for i in range(3):
        c = ledger.claim("s3://b", ObjectInfo(f"k{i}", 1, "e", 0), "me", 60)
        assert c
        ledger.checkpoint(c, 10, 100, 60)
        if i < 2:
            ledger.complete(c)
        else:
            ledger.fail(c, "bad")
    assert ledger.claim("s3://c", _obj(1), "me", 60)
    b, c = ledger.status()
    assert (b.source, b.done, b.failed, b.in_progress, b.lines, b.bytes) == (
        "s3://b",
        2,
        1,
        0,
        30,
        300,
    )
    assert isinstance(b.last_shipped, float)
    assert (c.source, c.done, c.failed, c.in_progress, c.lines, c.bytes, c.last_shipped) == (
        "s3://c",
        0,
        0,
        1,
        0,
        0,
        None,
    )
    assert all(type(v) is int for v in (b.done, b.failed, b.in_progress, b.lines, b.bytes))
    assert [e.key for e in ledger.entries(status=Status.FAILED)] == ["k2"]


def test_entries_filters_order_and_entry_by_id(ledger: Ledger) -> None:
    for i in range(3):
        c = ledger.claim("s3://b", _obj(i), "me", 60)
        assert c
        ledger.complete(c)
    assert ledger.claim("s3://c", _obj(9), "me", 60)
    rows = ledger.entries()
    assert [e.key for e in rows] == ["k009", "k002", "k001", "k000"]  # newest first
    assert [e.key for e in ledger.entries(source="s3://b")] == ["k002", "k001", "k000"]
    assert [e.key for e in ledger.entries(source="s3://b", status=Status.ACTIVE)] == []
    assert [e.key for e in ledger.entries(status=Status.ACTIVE)] == ["k009"]
    assert len({e.id for e in rows}) == 4
    for e in rows:
        assert ledger.entry(e.id) == e
        assert isinstance(e.first_seen, float)
        assert isinstance(e.updated, float)
        assert e.first_seen <= e.updated


def test_purge_failed(ledger: Ledger) -> None:
    ids = {}
    for source in ("s3://b", "s3://c"):
        for i in range(3):
            c = ledger.claim(source, _obj(i), "me", 60)
            assert c
            ledger.fail(c, "bad")
    ok = ledger.claim("s3://b", _obj(7), "me", 60)
    assert ok
    ledger.complete(ok)
    ids = {(e.source, e.key): e.id for e in ledger.entries()}
    done_id = ids["s3://b", "k007"]
    # only failed rows go, whatever ids are asked for
    assert ledger.purge_failed([ids["s3://b", "k000"], done_id]) == 1
    assert ledger.entry(done_id) is not None
    assert ledger.purge_failed([ids["s3://b", "k001"]], source="s3://c") == 0
    assert ledger.purge_failed([]) == 0
    assert ledger.purge_failed(source="s3://c") == 3
    assert ledger.purge_failed() == 2
    assert [e.key for e in ledger.entries()] == ["k007"]


def test_progress_survives_reopen(backend: Backend) -> None:
    led = backend.open()
    claim = led.claim("s3://b", OBJ, "me", 60)
    assert claim
    led.checkpoint(claim, 42, 420, 60)
    led.close()
    again = backend.open()
    entry = again.get("s3://b", OBJ.key, OBJ.etag)
    assert entry
    assert entry.position == 42
    assert entry.bytes == 420
    assert entry.status == Status.ACTIVE
    again.close()


def test_concurrent_claims_one_winner(backend: Backend) -> None:
    winners: list[str] = []
    lock = threading.Lock()

    def grab(name: str) -> None:
        led = backend.open()
        for i in range(50):
            if led.claim("s3://b", _obj(i), name, 60):
                with lock:
                    winners.append(f"k{i}")
        led.close()

    threads = [threading.Thread(target=grab, args=(f"h:{n}:x",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(winners) == sorted(f"k{i}" for i in range(50))


def test_one_ledger_shared_by_threads(ledger: Ledger) -> None:
    """The runner's workers share one ledger object; a brand-new row has exactly one winner."""
    barrier = threading.Barrier(8)
    winners: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        try:
            barrier.wait()
            claim = ledger.claim("s3://b", OBJ, f"h:{n}:x", 60)
            if claim:
                with lock:
                    winners.append(claim.owner)
            mine = ledger.claim("s3://b", _obj(100 + n), f"h:{n}:x", 60)
            assert mine
            for pos in range(1, 6):
                ledger.checkpoint(mine, pos, 10, 60)
            ledger.complete(mine)
        except BaseException as exc:  # surfaced below: pytest misses thread errors
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(winners) == 1
    (row,) = ledger.status()
    assert (row.done, row.in_progress, row.lines, row.bytes) == (8, 1, 40, 400)


RACER = """
import sys
from logferry.ledger import open_ledger
from logferry.ledger.base import new_owner_id
from logferry.records import ObjectInfo

led = open_ledger(sys.argv[1])
owner = new_owner_id()
print("ready", flush=True)
sys.stdin.readline()
won = [
    o.key
    for o in (ObjectInfo(f"k{i:03d}", 1, "e", 0) for i in range(int(sys.argv[2])))
    if led.claim("s3://race", o, owner, 60)
]
print(" ".join(won) or "-", flush=True)
# Claims stay held until the parent has every answer: a dead owner's claim may be taken.
sys.stdin.readline()
led.close()
"""


@pytest.mark.parametrize("rows", ["new", "released"])
def test_processes_racing_claim_each_object_once(backend: Backend, rows: str) -> None:
    """Several runner processes claim the same 100 objects at once: each is claimed once.

    ``new`` races the inserts; ``released`` races the takeover of existing, unheld rows.
    """
    n_objects, n_procs = 100, 4
    if rows == "released":
        led = backend.open()
        for i in range(n_objects):
            claim = led.claim("s3://race", _obj(i), "setup", 60)
            assert claim
            led.release(claim)
        led.close()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, backend.url, str(n_objects)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(n_procs)
    ]
    try:
        for p in procs:
            assert p.stdout, p.communicate()[1]
            assert p.stdout.readline().strip() == "ready", p.communicate()[1]
        for p in procs:  # released together so their claims interleave
            assert p.stdin
            p.stdin.write("go\n")
            p.stdin.flush()
        won: list[str] = []
        for p in procs:
            assert p.stdout
            line = p.stdout.readline().strip()
            assert line, p.communicate()[1]
            won += [k for k in line.split() if k != "-"]
    finally:
        for p in procs:
            _, err = p.communicate("exit\n", timeout=60)
            assert p.returncode == 0, err
    assert sorted(won) == [f"k{i:03d}" for i in range(n_objects)]


def test_stream_cursor_survives_release_and_force_resets_it(ledger: Ledger) -> None:
    claim = ledger.claim("cloudwatch://g", OBJ, "me", 60)
    assert claim is not None
    assert claim.cursor is None
    ledger.checkpoint(claim, 10, 100, 60, cursor="f/123")
    ledger.checkpoint(claim, 12, 10, 60)  # no cursor given: the stored one stays
    ledger.release(claim)
    again = ledger.claim("cloudwatch://g", OBJ, "other", 60)
    assert again is not None
    assert (again.position, again.cursor) == (12, "f/123")
    ledger.release(again)
    forced = ledger.claim("cloudwatch://g", OBJ, "me", 60, force=True)
    assert forced is not None
    assert (forced.position, forced.cursor) == (0, None)


def test_many_openers_of_a_brand_new_ledger_all_succeed(backend: Backend, tmp_path: Any) -> None:
    # Several runners started at the same moment on a ledger nobody has created yet: the
    # first creates it, the others wait for it ("database is locked" was an error once).
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def open_close(store: Backend) -> None:
        barrier.wait()
        try:
            store.open().close()
        except BaseException as exc:  # reported below, with the others
            errors.append(exc)

    for i in range(20):
        # A fresh SQLite file each round; PostgreSQL migrates under an advisory lock.
        store = (
            Backend("sqlite", f"sqlite:///{tmp_path}/{i}.db")
            if backend.name == "sqlite"
            else backend
        )
        threads = [threading.Thread(target=open_close, args=(store,)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []


def test_held_elsewhere_names_a_live_claim_on_the_same_version(ledger: Ledger) -> None:
    src = "tail:///logs/*.log*"
    old = ObjectInfo("/logs/app.log", 0, "fp-1", 0)
    renamed = ObjectInfo("/logs/app.log.1", 0, "fp-1", 0)
    assert ledger.held_elsewhere(src, "fp-1", renamed.key) is None
    claim = ledger.claim(src, old, "runner-a", 60)
    assert claim is not None
    assert ledger.held_elsewhere(src, "fp-1", renamed.key) == old.key
    assert ledger.held_elsewhere(src, "fp-1", old.key) is None  # not its own key
    assert ledger.held_elsewhere(src, "fp-2", renamed.key) is None
    assert ledger.held_elsewhere("tail:///other", "fp-1", renamed.key) is None
    ledger.release(claim)
    assert ledger.held_elsewhere(src, "fp-1", renamed.key) is None
    expired = ledger.claim(src, old, "runner-a", 0.01)
    assert expired is not None
    time.sleep(0.05)  # a runner that died: its lease runs out
    assert ledger.held_elsewhere(src, "fp-1", renamed.key) is None


def test_renew_reports_claims_taken_over(ledger: Ledger) -> None:
    mine = ledger.claim("s3://b", _obj(1), "h:1:a", 0.01)
    kept = ledger.claim("s3://b", _obj(2), "h:1:a", 60)
    assert mine is not None
    assert kept is not None
    time.sleep(0.05)  # this runner paused past its lease...
    theirs = ledger.claim("s3://b", _obj(1), "h:2:b", 60)  # ...and another took the row
    assert theirs is not None
    assert ledger.renew([mine, kept], 60) == [mine]
    assert ledger.renew([kept], 60) == []
    assert ledger.renew([], 60) == []


def test_status_last_shipped_counts_stream_checkpoints(ledger: Ledger) -> None:
    c = ledger.claim("tail:///x/*.log", ObjectInfo("/x/a.log", 0, "fp", 0), "me", 60)
    assert c
    assert ledger.status()[0].last_shipped is None  # claimed, nothing shipped yet
    before = time.time()
    ledger.checkpoint(c, 5, 50, 60, '{"offset": 50, "fp": "fp"}')
    (st,) = ledger.status()
    assert (st.done, st.in_progress, st.lines) == (0, 1, 5)
    assert st.last_shipped is not None and st.last_shipped >= before - 1
    ledger.release(c)  # followed, stopped: still shipped
    assert ledger.status()[0].last_shipped is not None


def test_cursors_are_stored_replaced_and_forgotten_by_prefix(ledger: Ledger) -> None:
    assert ledger.get_cursor("enqueue:r1:a/") is None
    ledger.set_cursor("enqueue:r1:a/", "k:a/1")
    ledger.set_cursor("enqueue:r1:a/", "k:a/2")
    ledger.set_cursor("enqueue:r1:b_/", "done")
    ledger.set_cursor("enqueue:r2:a/", "k:a/9")
    assert ledger.get_cursor("enqueue:r1:a/") == "k:a/2"
    assert ledger.delete_cursors("enqueue:r1:") == 2
    assert ledger.get_cursor("enqueue:r2:a/") == "k:a/9"  # another run's, kept
