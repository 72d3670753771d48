"""The ledger against a hostile world: runners in other PID namespaces, poison objects,
corrupt, unreadable or read-only ledgers, and commands that must not create one."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from logferry.cli.main import cli
from logferry.errors import ConfigError
from logferry.ledger import LedgerError, open_ledger
from logferry.ledger.base import Owner, new_owner_id, owner_is_dead
from logferry.records import ObjectInfo
from tests.ledger import conftest as ledger_fixtures

# The throwaway PostgreSQL databases of the ledger suite (fixtures used by name).
pg_admin = ledger_fixtures.pg_admin
pg_url = ledger_fixtures.pg_url

SRC = str(Path(__file__).resolve().parents[2] / "src")
OBJ = ObjectInfo("poison.gz", 1, "e", 0)


def _exited_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# -- owner ids --------------------------------------------------------------


def test_owner_id_names_host_pid_boot_and_pid_namespace() -> None:
    owner = new_owner_id()
    host, pid, rand, boot, pidns = owner.split(":")
    assert host == socket.gethostname() and int(pid) == os.getpid()
    assert re.fullmatch(r"[0-9a-f]{8}", rand)
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert boot == boot_id.replace("-", "")[:16]
    assert pidns == str(os.stat("/proc/self/ns/pid").st_ino)
    assert Owner.parse(owner) == Owner(host, os.getpid(), boot, pidns)
    assert new_owner_id() != owner  # two runners of one process are two owners


def test_only_a_pid_of_our_own_namespace_is_probed() -> None:
    me = Owner.parse(new_owner_id())
    assert me is not None
    dead = _exited_pid()

    def owner(host: str = me.host, boot: str = me.boot, pidns: str = me.pidns) -> str:
        return f"{host}:{dead}:0123abcd:{boot}:{pidns}"

    # the fast path: a process of this host, boot and namespace that is gone
    assert owner_is_dead(owner())
    assert not owner_is_dead(new_owner_id())  # ourselves
    assert not owner_is_dead(f"{me.host}:1:0123abcd:{me.boot}:{me.pidns}")  # alive
    # anywhere else the PID means nothing here: the lease decides
    assert not owner_is_dead(owner(pidns="4026599999"))  # another container
    assert not owner_is_dead(owner(boot="0" * 16))  # before a reboot
    assert not owner_is_dead(owner(host="elsewhere"))
    assert not owner_is_dead(owner(pidns="?"))  # its namespace was unreadable
    # owner ids of older versions, and anything else, are never judged by PID
    assert not owner_is_dead(f"{me.host}:{dead}:0123abcd")
    for junk in ("", "me", "host-x:1:a", f"{me.host}:x:y:{me.boot}:{me.pidns}", "a:1:b:c:d:e"):
        assert not owner_is_dead(junk)


# -- a runner in another PID namespace -----------------------------------------

HOLDER = """
import sys, time
from logferry.ledger import open_ledger
from logferry.ledger.base import new_owner_id
from logferry.records import ObjectInfo

led = open_ledger(sys.argv[1])
owner = new_owner_id()
claim = led.claim("s3://b", ObjectInfo("poison.gz", 1, "e", 0), owner, float(sys.argv[2]))
print("claimed" if claim else "refused", owner, flush=True)
time.sleep(600)
"""

# PID 1 of a new namespace, and the PIDs after it, are alive on the host too; choosing
# the holder's PID makes it one the host does not have, as in two real containers.
NAMESPACE_INIT = """
import subprocess, sys
with open("/proc/sys/kernel/ns_last_pid", "w") as f:
    f.write(str(int(sys.argv[1]) - 1))
sys.exit(subprocess.run([sys.executable, "-c", sys.argv[2], *sys.argv[3:]]).returncode)
"""


def _free_host_pid() -> int:
    for pid in range(31_000, 20_000, -7):
        if not Path(f"/proc/{pid}").exists():
            return pid
    pytest.fail("no free PID between 20000 and 31000 on this host", pytrace=False)


def test_claim_held_in_another_pid_namespace_waits_for_its_lease(tmp_path: Path) -> None:
    """Same host name, another PID namespace: its PID is not ours to probe (1,584 duplicates)."""
    url = f"sqlite:///{tmp_path}/ledger.db"
    lease = 6.0
    pid = _free_host_pid()
    cmd = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]
    cmd += [sys.executable, "-c", NAMESPACE_INIT, str(pid), HOLDER, url, str(lease)]
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        claimed_at = time.time()
        if not line.startswith("claimed"):
            proc.kill()
            _, stderr = proc.communicate(timeout=10)
            pytest.fail(
                "could not run a claim holder in a new PID namespace with `unshare --pid "
                f"--fork --mount-proc` (root and CAP_SYS_ADMIN needed): {line.strip()!r} "
                f"{stderr.strip()[-500:]}",
                pytrace=False,
            )
        owner = line.split()[1]
        parsed = Owner.parse(owner)
        assert parsed is not None and parsed.pid == pid
        assert parsed.pidns != str(os.stat("/proc/self/ns/pid").st_ino)
        assert not Path(f"/proc/{pid}").exists()  # no such process out here

        led = open_ledger(url)
        try:
            assert led.claim("s3://b", OBJ, new_owner_id(), 60) is None  # its lease is live
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            # dead now, but nothing out here can tell: only the lease can
            assert led.claim("s3://b", OBJ, new_owner_id(), 60) is None
            deadline = claimed_at + lease + 15
            while (taken := led.claim("s3://b", OBJ, new_owner_id(), 60)) is None:
                assert time.time() < deadline, "the dead holder's claim was never taken over"
                time.sleep(0.2)
            assert time.time() >= claimed_at + lease - 1.0  # not before its lease ran out
            assert taken.attempts == 2
        finally:
            led.close()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


# -- ledgers that are missing, corrupt, foreign, read-only or slow ----------------


def _cli(*args: str, env: dict[str, str] | None = None) -> Result:
    result = CliRunner().invoke(cli, list(args), env=env)
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), result.exception
    return result


def _ledger_with_failures(path: Path, *keys: str, source: str = "s3://b") -> list[int]:
    led = open_ledger(str(path))
    try:
        for key in keys:
            claim = led.claim(source, ObjectInfo(key, 1, "e", 0), "me", 60)
            assert claim is not None
            led.fail(claim, f"{key} is broken", "DecodeError")
        return [e.id for e in led.entries(source=source)]
    finally:
        led.close()


def _failed_keys(path: Path) -> list[str]:
    led = open_ledger(str(path), create=False, readonly=True)
    try:
        return sorted(e.key for e in led.entries())
    finally:
        led.close()


@pytest.fixture()
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No LOGFERRY_LEDGER, and a default ledger path under ``tmp_path/state``."""
    monkeypatch.delenv("LOGFERRY_LEDGER", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


@pytest.mark.parametrize(
    "args",
    [["status"], ["status", "--json"], ["errors"], ["errors", "show", "1"],
     ["errors", "purge", "--yes"], ["errors", "purge", "--yes", "--id", "1"]],
)  # fmt: skip
def test_read_commands_do_not_create_a_ledger(
    args: list[str], tmp_path: Path, isolated_env: Path
) -> None:
    missing = tmp_path / "nowhere" / "ledger.db"
    result = _cli(*args, "--ledger", str(missing))
    assert result.exit_code == 2
    assert f"no ledger at {missing}: ship something first, or pass --ledger" in result.output
    assert len(result.output.strip().splitlines()) == 1
    # the default ledger is not made either
    result = _cli(*args)
    assert result.exit_code == 2 and "no ledger at" in result.output
    assert not (tmp_path / "nowhere").exists() and not isolated_env.exists()


def test_errors_group_options_reach_subcommands(tmp_path: Path, isolated_env: Path) -> None:
    """``errors --ledger A purge`` purges A, never the default ledger (issue 12)."""
    la, lb = tmp_path / "lA.db", tmp_path / "lB.db"
    ids_a = _ledger_with_failures(la, "a1", "a2")
    _ledger_with_failures(lb, "b1", "b2")
    env = {"LOGFERRY_LEDGER": str(lb)}  # the ledger a fallback would wrongly purge
    shown = _cli("errors", "--ledger", str(la), "show", str(ids_a[0]), env=env)
    assert shown.exit_code == 0 and '"key":"a' in shown.output.replace(" ", "")
    result = _cli("errors", "--ledger", str(la), "purge", "--yes", "--id", str(ids_a[0]), env=env)
    assert result.exit_code == 0, result.output
    assert "purged 1 entries" in result.output
    assert len(_failed_keys(la)) == 1 and _failed_keys(lb) == ["b1", "b2"]
    # the subcommand's own option wins over the group's
    result = _cli("errors", "--ledger", str(la), "purge", "--yes", "--ledger", str(lb), env=env)
    assert result.exit_code == 0 and _failed_keys(lb) == [] and len(_failed_keys(la)) == 1
    # the group's --source narrows the purge too
    other = tmp_path / "other"
    other.mkdir()
    _ledger_with_failures(la, "c1", source=f"file://{other}")
    result = _cli("errors", "--ledger", str(la), "--source", str(other), "purge", "--yes")
    assert result.exit_code == 0, result.output
    assert "purged 1 entries" in result.output and len(_failed_keys(la)) == 1
    assert not isolated_env.exists()


def test_corrupt_ledger_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "ledger.db"
    bad.write_bytes(os.urandom(8192))
    for args in (["status"], ["errors"], ["errors", "purge", "--yes"]):
        result = _cli(*args, "--ledger", str(bad))
        assert result.exit_code == 2
        assert result.output.strip() == (
            f"error: {bad} is not a logferry ledger (not a SQLite database): "
            "move it away or pass --ledger"
        )


def test_broken_ledger_url_is_one_line() -> None:
    for url in ("postgresql://u:secret@[::1/db", "postgresql://[::1"):
        result = _cli("status", "--ledger", url)
        assert result.exit_code == 2
        assert "bad ledger URL" in result.output and "IPv6" in result.output
        assert len(result.output.strip().splitlines()) == 1 and "secret" not in result.output


def test_statement_timeout_in_status_is_one_line(pg_url: str) -> None:
    import psycopg

    _ = open_ledger(pg_url)
    _.close()
    slow = pg_url + "?options=-c%20statement_timeout%3D300"
    with psycopg.connect(pg_url) as locker:
        locker.execute("LOCK TABLE logferry_objects IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        result = _cli("status", "--ledger", slow)
        assert time.monotonic() - started < 30
        locker.rollback()
    assert result.exit_code == 1, result.output
    assert "did not answer in time" in result.output and "statement timeout" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_readonly_postgres_ledger(pg_url: str) -> None:
    import psycopg

    with pytest.raises(ConfigError, match="no ledger at"):
        open_ledger(pg_url, create=False, readonly=True)
    with pytest.raises(ConfigError, match="no ledger at"):
        open_ledger(pg_url, create=False)
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT to_regclass('logferry_objects')").fetchone() == (None,)
    led = open_ledger(pg_url)
    claim = led.claim("s3://b", OBJ, "me", 60)
    assert claim is not None
    led.fail(claim, "boom", "DecodeError")
    led.close()
    ro = open_ledger(pg_url, create=False, readonly=True)
    try:
        assert [r.failed for r in ro.status()] == [1] and len(ro.entries()) == 1
        with pytest.raises(LedgerError, match="read-only transaction"):
            ro.purge_failed()
    finally:
        ro.close()


def test_ledger_on_a_read_only_filesystem(tmp_path: Path) -> None:
    """``status`` and ``errors`` read a ledger on a read-only mount; ``purge`` says why not."""
    here = tmp_path / "ro"
    here.mkdir()
    (entry_id,) = _ledger_with_failures(here / "ledger.db", "broken.gz")
    assert sorted(p.name for p in here.iterdir()) == ["ledger.db"]  # no -wal / -shm left
    ledger = str(here / "ledger.db")
    script = (
        f"mount --bind -o ro {here} {here} && touch {here}/probe 2>/dev/null && exit 99; "
        f'for args in "status --json" "errors --json" "errors show {entry_id}" '
        '"errors purge --yes"; do '
        f'{sys.executable} -m logferry $args --ledger {ledger}; echo "rc=$?"; done'
    )
    p = subprocess.run(
        ["unshare", "--mount", "sh", "-c", script],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": SRC}, timeout=120,
    )  # fmt: skip
    if p.returncode == 99 or "rc=" not in p.stdout:
        pytest.fail(
            "could not mount a read-only bind mount in a new mount namespace (`unshare --mount`"
            f" then `mount --bind -o ro`; root needed): {p.stderr.strip()[-500:]}",
            pytrace=False,
        )
    assert "Traceback" not in p.stdout + p.stderr
    codes = re.findall(r"rc=(\d+)", p.stdout)
    assert codes == ["0", "0", "0", "2"], p.stdout + p.stderr
    assert '"failed": 1' in p.stdout or '"failed":1' in p.stdout
    assert "broken.gz is broken" in p.stdout
    (purge_error,) = [line for line in p.stderr.splitlines() if line.strip()]
    assert purge_error == (
        f"error: cannot write ledger {ledger}: Read-only file system (`status` and `errors` "
        "can still read it)"
    )
    assert _failed_keys(here / "ledger.db") == ["broken.gz"]
