"""Processes the benchmark starts, and what /proc says about them.

Every process is started in its own session (so its own process group) and registered here;
`kill_all()` runs at exit, on SIGTERM and on Ctrl-C, and signals each group: SIGTERM, a grace
period, then SIGKILL. Nothing is killed by name.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

_STARTED: list[Proc] = []
# Databases the benchmark created: their server processes' CPU is the benchmark's own.
DATABASES: set[str] = set()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log_path: Path
    started_at: float = field(default_factory=time.perf_counter)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, n: int = 15) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def stop(self, grace: float = 3.0) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(grace)
        # The group may outlive its leader (workers, reloaders): always finish it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(1)
        if self in _STARTED:
            _STARTED.remove(self)


def spawn(
    name: str, argv: list[str], *, env: dict[str, str] | None = None, log_dir: Path, cwd=None
) -> Proc:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    full_env = dict(os.environ)
    full_env.update(env or {})
    log = open(log_path, "wb")  # noqa: SIM115 - handed to the child
    popen = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=full_env,
        cwd=cwd,
        start_new_session=True,
    )
    log.close()
    proc = Proc(name, popen, log_path)
    _STARTED.append(proc)
    return proc


def kill_all() -> None:
    for proc in list(_STARTED):
        proc.stop(grace=2.0)


def install_cleanup() -> None:
    atexit.register(kill_all)

    def on_signal(signum, _frame):
        kill_all()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    # SIGINT is KeyboardInterrupt (even when started in the background, where the shell would
    # have it ignored); the harness catches it and stops everything it started.
    signal.signal(signal.SIGINT, signal.default_int_handler)


# -- /proc ------------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm may contain spaces and parentheses: split after the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        f = _stat_fields(int(entry))
        if f:
            kids.setdefault(int(f[1]), []).append(int(entry))
    return kids


def tree(pid: int) -> list[int]:
    kids = _children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_seconds(pid: int) -> float:
    """utime+stime of the process and all its live descendants, plus the reaped children's
    cutime+cstime, in seconds."""
    total = 0
    for p in tree(pid):
        f = _stat_fields(p)
        if f:
            # fields after ')' are numbered from 3: utime=14, stime=15, cutime=16, cstime=17
            total += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return total / CLK_TCK


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_mb(pid: int) -> float:
    """Current resident set of the process tree, MiB."""
    return sum(_status_kb(p, "VmRSS") for p in tree(pid)) / 1024


def hwm_mb(pid: int) -> float:
    """Peak resident set (VmHWM) summed over the process tree, MiB."""
    return sum(_status_kb(p, "VmHWM") for p in tree(pid)) / 1024


def loadavg() -> tuple[float, float, float]:
    a, b, c = Path("/proc/loadavg").read_text().split()[:3]
    return float(a), float(b), float(c)


def cpu_count() -> int:
    return len(os.sched_getaffinity(0))


def machine_busy_seconds() -> float:
    """CPU-seconds all CPUs spent not idle since boot (from /proc/stat)."""
    vals = list(map(int, Path("/proc/stat").read_text().splitlines()[0].split()[1:]))
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    # guest time is already counted in user/nice
    return (sum(vals[:8]) - idle) / CLK_TCK


def own_cpu_seconds() -> float:
    """CPU of this harness plus every process tree it started and still runs, plus the
    PostgreSQL backends serving the databases it created."""
    t = os.times()
    total = t.user + t.system + t.children_user + t.children_system
    for proc in list(_STARTED):
        if proc.alive():
            total += cpu_seconds(proc.pid)
    return total + sum(backend_cpu_seconds(db) for db in list(DATABASES))


def backends(database: str) -> list[int]:
    """PostgreSQL server processes connected to `database` (on this machine), found by the
    process title the server gives them: "postgres: [CLUSTER: ]USER DATABASE HOST(PORT) STATE"."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        words = title.split()
        if words[:1] == ["postgres:"] and database in words[2:4]:
            found.append(int(entry.name))
    return found


def backend_cpu_seconds(database: str) -> float:
    """utime+stime of the server processes serving `database` now (a connection that closed
    takes its CPU with it: the bench's pools keep theirs open while measuring)."""
    total = 0
    for pid in backends(database):
        f = _stat_fields(pid)
        if f:
            total += int(f[11]) + int(f[12])
    return total / CLK_TCK
