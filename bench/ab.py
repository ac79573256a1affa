"""A/B: `botrunner serve` from two revisions side by side, interleaved, same upstream.

    .venv/bin/python -m bench.ab HEAD~1 .            # a commit against the working tree
    .venv/bin/python -m bench.ab main my-branch --rounds 8 --concurrency 32 --seconds 6

Each revision is checked out into a temporary `git worktree` ("." is the working tree as it
is) and served by this venv's interpreter with that tree first on PYTHONPATH, so only
botrunner's own code differs. Both servers run against one instant fake upstream; rounds
alternate A B, B A, ... and each round drives streamed turns at the given concurrency for the
given seconds. Reported: the median CPU ms per turn of each server process (from /proc: robust
on a shared machine) and completed turns/s. Differences smaller than the spread of the rounds
(printed) are noise.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

from bench import procs
from bench.harness import closed_loop, parse_args, start_upstream
from bench.peers import ROOT, make_peers


def checkout(rev: str, into: Path) -> Path:
    if rev == ".":
        return ROOT
    if Path(rev).is_dir():  # a checkout somewhere else (e.g. an experiment), used as it is
        return Path(rev).resolve()
    tree = into / rev.replace("/", "_").replace("~", "-")
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(tree), rev], check=True
    )
    return tree


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a", help="a git revision, a directory with a checkout, or . (working tree)")
    p.add_argument("b", nargs="?", default=".", help="default: the working tree")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--concurrency", type=int, default=32)
    args = p.parse_args()
    cfg = parse_args(["--quick"])
    procs.install_cleanup()
    work = Path(tempfile.mkdtemp(prefix="botrunner-ab-"))
    logs = ROOT / "bench" / "out" / "logs"
    trees: list[Path] = []
    try:
        revs = [args.a, args.b]
        trees = [checkout(rev, work) for rev in revs]
        up = await start_upstream("instant", cfg, logs, [])
        peers = []
        for i, tree in enumerate(trees):
            os.environ["PYTHONPATH"] = str(tree)  # read by procs.spawn for this server only
            peer = make_peers(["botrunner"])[0]
            await peer.start(up.url, work, logs, f"ab{i}")
            await closed_loop(peer, 8, 1.0, "warm", True)
            peers.append(peer)
        os.environ.pop("PYTHONPATH", None)
        cpu: list[list[float]] = [[], []]
        rate: list[list[float]] = [[], []]
        for r in range(args.rounds):
            order = [0, 1] if r % 2 == 0 else [1, 0]
            for i in order:
                before = procs.cpu_seconds(peers[i].pid)
                res = await closed_loop(peers[i], args.concurrency, args.seconds, "ab", True)
                used = procs.cpu_seconds(peers[i].pid) - before
                cpu[i].append(used * 1000 / max(res["ok"], 1))
                rate[i].append(res["ok"] / res["elapsed"])
        for i, rev in enumerate(revs):
            spread = f"{min(cpu[i]):.2f}..{max(cpu[i]):.2f}"
            print(
                f"{rev:>20}: {statistics.median(cpu[i]):5.2f} CPU ms/turn (rounds {spread}), "
                f"{statistics.median(rate[i]):6.1f} turns/s"
            )
        print(f"B/A CPU per turn: {statistics.median(cpu[1]) / statistics.median(cpu[0]):.3f}")
        for peer in peers:
            await peer.stop()
        up.proc.stop()
    finally:
        for tree in trees:
            if tree.parent == work:
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                    check=False,
                )
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
