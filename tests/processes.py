"""What the kernel says about server processes (Linux /proc): a process's children, and which
processes hold the accepted connections of a port. For the multi-process tests; no tests here."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

PROC = Path("/proc")


def need_proc() -> None:
    if not sys.platform.startswith("linux") or not (PROC / "net" / "tcp").exists():
        pytest.skip("reads /proc to see which process holds which connection (Linux only)")


def children(pid: int) -> set[int]:
    found = set()
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after its closing paren.
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = (PROC / str(pid) / "stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def connections_by_process(port: int, pids: set[int]) -> dict[int, int]:
    """How many established connections to local `port` each of `pids` has accepted."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        path = PROC / "net" / table
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01":  # 01: ESTABLISHED
                inodes.add(fields[9])
    counts: dict[int, int] = {}
    for pid in pids:
        fd_dir = PROC / str(pid) / "fd"
        try:
            links = [os.readlink(fd_dir / fd) for fd in os.listdir(fd_dir)]
        except OSError:
            continue
        held = sum(1 for link in links if link.startswith("socket:[") and link[8:-1] in inodes)
        if held:
            counts[pid] = held
    return counts
