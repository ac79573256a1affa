"""`botrunner serve --workers N`: N real processes on one port sharing one database; a worker
that dies is replaced, a parent that dies takes its workers with it, SIGTERM stops them all
gracefully; and a SQLite database is refused."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from urllib.parse import urlsplit

import httpx
from fake_anthropic import Auto, slow, text
from processes import alive, children, connections_by_process, need_proc
from test_server_harness import BOTRUNNER, REPO, ProcessServer, wait_until, write_bot


def serve_env(fake) -> dict[str, str]:
    return {"ANTHROPIC_BASE_URL": fake.url, "ANTHROPIC_API_KEY": "test", "CI": "false"}


def test_workers_refuse_a_sqlite_database(tmp_path):
    path = write_bot(tmp_path)
    proc = subprocess.run(
        [*BOTRUNNER, "serve", str(path), "--db", str(tmp_path / "b.db"), "--workers", "2"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: --workers 2 needs a database every worker can share: use --db "
        "postgresql://USER@HOST:5432/DBNAME. A SQLite file has one writing process; serve it "
        "with one worker."
    ]
    assert not (tmp_path / "b.db").exists()


async def _open_connections(url: str, count: int) -> list[httpx.Response]:
    """`count` requests on `count` connections, all open at once (the replies are slow)."""
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        return await asyncio.gather(
            *(client.post(f"/chat/w{i}", json={"message": f"hi {i}"}) for i in range(count))
        )


def test_workers_serve_one_port_and_replace_a_worker_that_dies(tmp_path, fake_anthropic, shared_db):
    need_proc()
    fake_anthropic.auto = Auto(mode="paced", ttft=(3.0, 3.0), tokens=(3, 3))
    args = [str(write_bot(tmp_path)), "--db", shared_db, "--workers", "2", "--no-reload"]
    with ProcessServer(args, serve_env(fake_anthropic)) as srv:
        assert srv.proc is not None
        port = urlsplit(srv.url).port
        workers = wait_until(lambda: (w := children(srv.proc.pid)) and len(w) == 2 and w)
        # 16 connections at once: the kernel gives some to each worker.
        seen: dict[int, int] = {}

        def look() -> None:
            # Until both have some, while the replies wait on the model (3 s): on a loaded
            # machine the 16 connections take a while to be made.
            deadline = time.monotonic() + 2.5
            while time.monotonic() < deadline and set(seen) != workers:
                seen.update(connections_by_process(port, workers))
                time.sleep(0.05)

        async def during() -> list[httpx.Response]:
            task = asyncio.ensure_future(_open_connections(srv.url, 16))
            await asyncio.to_thread(look)
            return await task

        replies = asyncio.run(during())
        assert [r.status_code for r in replies] == [200] * 16
        assert set(seen) == workers, (seen, workers)

        killed = min(workers)
        subprocess.run(["kill", "-KILL", str(killed)], check=True)
        fake_anthropic.auto = Auto(mode="echo")
        # The other worker answers meanwhile, and a new one takes the dead one's place.
        for i in range(4):
            reply = httpx.post(
                srv.url + f"/chat/k{i}", json={"message": "still there?"}, timeout=30
            )
            assert reply.status_code == 200 and '"done":true' in reply.text
        replaced = wait_until(
            lambda: (w := children(srv.proc.pid)) and len(w) == 2 and killed not in w and w,
            timeout=60,
        )
        assert len(replaced & workers) == 1
        assert any("worker" in line and "killed by SIGKILL" in line for line in srv.stderr_lines)

        # SIGTERM: the parent forwards it, a reply in flight finishes, everyone exits 0.
        fake_anthropic.enqueue(slow(text("one two three four five"), token_delay=0.3))
        with httpx.stream(
            "POST", srv.url + "/chat/last", json={"message": "last"}, timeout=30
        ) as stream:
            lines = stream.iter_lines()
            assert "delta" in json.loads(next(lines))
            srv.terminate()
            assert json.loads(list(lines)[-1])["done"] is True
        assert srv.wait(60) == 0
        assert not any(alive(pid) for pid in replaced)


def test_a_parent_killed_takes_its_workers_with_it(tmp_path, fake_anthropic, shared_db):
    need_proc()
    args = [str(write_bot(tmp_path)), "--db", shared_db, "--workers", "2", "--no-reload"]
    with ProcessServer(args, serve_env(fake_anthropic)) as srv:
        assert srv.proc is not None
        workers = wait_until(lambda: (w := children(srv.proc.pid)) and len(w) == 2 and w)
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(10)
        wait_until(lambda: not any(alive(pid) for pid in workers), timeout=30)
