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

from logferry.ledger import open_ledger
from logferry.ledger.base import Owner, new_owner_id, owner_is_dead
from logferry.records import ObjectInfo

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
