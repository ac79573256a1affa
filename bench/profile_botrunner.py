"""Profile `botrunner serve` under the benchmark's load with py-spy.

    .venv/bin/pip install py-spy
    .venv/bin/python -m bench.profile_botrunner [--seconds 10] [--concurrency 32] [--plain]

Starts the instant fake upstream and botrunner (as bench/run does), drives streamed turns at the
given concurrency, records with `py-spy record` meanwhile, and writes bench/out/profile.txt (collapsed
stacks, for flamegraph.pl or speedscope), then prints the functions with the
most inclusive and self time.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench import procs
from bench.harness import closed_loop, parse_args, start_upstream
from bench.peers import ROOT, make_peers

OUT = ROOT / "bench" / "out"


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--plain", action="store_true", help="non-streamed turns")
    p.add_argument("--peer", default="botrunner")
    p.add_argument("--gil", action="store_true", help="only samples holding the GIL (CPU work)")
    args = p.parse_args()
    spy = shutil.which("py-spy") or str(ROOT / ".venv/bin/py-spy")
    cfg = parse_args(["--quick"])
    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="botrunner-prof-"))
    notes: list[str] = []
    procs.install_cleanup()
    up = await start_upstream("instant", cfg, OUT / "logs", notes)
    peer = make_peers([args.peer])[0]
    try:
        await peer.start(up.url, work, OUT / "logs", "prof")
        await closed_loop(peer, 8, 1.0, "warm", not args.plain)
        raw = OUT / "profile.txt"
        rec = subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(peer.pid),
                "--duration",
                str(int(args.seconds)),
                "--rate",
                "250",
                "--format",
                "raw",
                "--output",
                str(raw),
                "--nonblocking",
            ],  # fmt: skip
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        before = thread_cpu(peer.pid)
        res = await closed_loop(peer, args.concurrency, args.seconds + 1, "prof", not args.plain)
        after = thread_cpu(peer.pid)
        rec.wait(60)
        print(f"{res['ok']} turns, {res['errors']} errors in {res['elapsed']:.1f}s")
        print_thread_cpu(before, after, res["ok"])
        if rec.returncode != 0:
            print("py-spy failed:", rec.stderr.read().decode()[-500:])
            return
        summarize(raw)
    finally:
        await peer.stop()
        up.proc.stop()
        shutil.rmtree(work, ignore_errors=True)


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) per thread of `pid`, from /proc: the event loop (the main
    thread) and each other thread by id. py-spy's samples count a thread waiting in fsync as
    busy; this does not."""
    tick = os.sysconf("SC_CLK_TCK")
    out: collections.Counter[str] = collections.Counter()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = "event loop (main thread)" if task.name == str(pid) else f"thread {task.name}"
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended
        out[name] += (int(fields[11]) + int(fields[12])) / tick
    return dict(out)


def print_thread_cpu(before: dict[str, float], after: dict[str, float], turns: int) -> None:
    print("CPU ms per turn by thread (from /proc; py-spy's sampling adds some):")
    total = 0.0
    for name in sorted(after, key=lambda n: before.get(n, 0) - after[n]):
        ms = (after[name] - before.get(name, 0.0)) * 1000 / max(turns, 1)
        total += ms
        if ms >= 0.01:
            print(f"  {ms:6.2f}  {name}")
    print(f"  {total:6.2f}  total")


def summarize(raw: Path, top: int = 30) -> None:
    incl: collections.Counter[str] = collections.Counter()
    self_: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack:
            continue
        count = int(n)
        total += count
        frames = stack.split(";")
        for f in set(frames):
            incl[_short(f)] += count
        self_[_short(frames[-1])] += count
    print(f"\n{total} samples; inclusive time (top {top}):")
    for f, c in incl.most_common(top):
        print(f"  {100 * c / total:5.1f}%  {f}")
    print(f"\nself time (top {top}):")
    for f, c in self_.most_common(top):
        print(f"  {100 * c / total:5.1f}%  {f}")


def _short(frame: str) -> str:
    # "func (path/to/file.py:123)" -> "func (file.py)" keeping the package for botrunner
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    if "botrunner/" in path:
        path = "botrunner/" + path.split("botrunner/", 1)[1]
    elif "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    else:
        path = Path(path).name
    return f"{name} ({path})"


if __name__ == "__main__":
    asyncio.run(main())
