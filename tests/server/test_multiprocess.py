"""Two real `botrunner serve` processes on one PostgreSQL database behave as one service: the
rate limit is exact across them (with the counters in the database and in Redis), a session
started on one continues on the other, and a process SIGKILLed mid-stream loses nothing any
client saw finish while its turns in flight end as failed, closed by the other."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fake_anthropic import Auto, slow, text
from limits_backends import REDIS_URL
from test_server_harness import ProcessServer, wait_until, write_bot

from botrunner.commands.serve import TEST_SWEEP_ENV


def serve_env(fake) -> dict[str, str]:
    return {"ANTHROPIC_BASE_URL": fake.url, "ANTHROPIC_API_KEY": "test", "CI": "false"}


@contextlib.contextmanager
def two_servers(
    args: list[str], fake, second_env: dict[str, str] | None = None
) -> Iterator[tuple[ProcessServer, ProcessServer]]:
    """Two `serve` processes on the same options, started at the same time; the second one
    with `second_env` added to its environment."""
    envs = [serve_env(fake), {**serve_env(fake), **(second_env or {})}]
    servers = [ProcessServer(args, env) for env in envs]
    with contextlib.ExitStack() as stack, ThreadPoolExecutor(2) as pool:
        for started in pool.map(stack.enter_context, servers):
            assert started.url
        yield servers[0], servers[1]


@pytest.fixture(params=["store", "redis"])
def limits_args(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """`serve` options for where the counters live: the database, or Redis (a key prefix of
    this test's own; every key it leaves must have a TTL, and is deleted afterwards)."""
    if request.param == "store":
        yield []
        return
    redis = request.getfixturevalue("redis_session")
    prefix = redis.new_prefix()
    yield ["--limits", f"{REDIS_URL}?prefix={prefix}"]
    missing = redis.keys_without_ttl(prefix)
    redis.delete(prefix)
    assert not missing, f"Redis keys without a TTL: {missing}"


async def _round(urls: list[str], user: str, count: int) -> list[httpx.Response]:
    """`count` requests at once from `user`, spread over the servers in turn."""
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        return await asyncio.gather(
            *(
                client.post(
                    f"{urls[i % len(urls)]}/chat/r{i}",
                    json={"message": f"question {i}", "user": {"id": user}},
                )
                for i in range(count)
            )
        )


def test_two_processes_are_one_service(tmp_path, fake_anthropic, shared_db, limits_args):
    fake_anthropic.auto = Auto(mode="echo")
    limits = "limits:\n  per_user:\n    requests_per_minute: 5\n"
    args = [str(write_bot(tmp_path, extra=limits)), "--db", shared_db, "--no-reload"]
    with two_servers([*args, *limits_args], fake_anthropic) as (a, b):
        # The rate limit is exact across both: 60 requests at once admit 5, round after round
        # (a new user each round, so no round waits for the last one's minute to pass).
        for round_ in range(3):
            before = len(fake_anthropic.requests)
            user = f"u{round_}-{uuid.uuid4().hex[:6]}"
            replies = asyncio.run(_round([a.url, b.url], user, 60))
            statuses = [r.status_code for r in replies]
            assert statuses.count(200) == 5 and statuses.count(429) == 55, (round_, statuses)
            assert len(fake_anthropic.requests) - before == 5
            assert all(
                r.json()["error"]["kind"] == "requests" for r in replies if r.status_code == 429
            )

        # A session started on one process continues on the other.
        ada = {"id": "ada"}
        first = httpx.post(a.url + "/chat/s", json={"message": "I am Ada", "user": ada}, timeout=30)
        assert first.status_code == 200 and '"done":true' in first.text
        second = httpx.post(
            b.url + "/chat/s", json={"message": "Who am I?", "user": ada}, timeout=30
        )
        assert second.status_code == 200 and '"done":true' in second.text
        sent = fake_anthropic.requests[-1].messages
        assert [m["role"] for m in sent] == ["user", "assistant", "user"]
        assert "I am Ada" in json.dumps(sent[0])
        history = httpx.get(a.url + "/chat/s", params={"user": "ada"}, timeout=30).json()
        assert [(m["role"], m["status"]) for m in history["messages"]] == [
            ("user", "ok"),
            ("assistant", "ok"),
            ("user", "ok"),
            ("assistant", "ok"),
        ]


@contextlib.contextmanager
def _streaming(url: str, session: str) -> Iterator[Iterator[str]]:
    """A reply that has started (its first delta read): the rest of its lines."""
    with (
        httpx.Client(timeout=30) as client,
        client.stream(
            "POST", f"{url}/chat/{session}", json={"message": f"slow {session}"}
        ) as reply,
    ):
        assert reply.status_code == 200
        lines = reply.iter_lines()
        assert "delta" in json.loads(next(lines))
        yield lines


def test_a_process_killed_mid_stream_loses_no_acknowledged_turn(
    tmp_path, fake_anthropic, shared_db
):
    fake_anthropic.auto = Auto(mode="echo")
    args = [str(write_bot(tmp_path)), "--db", shared_db, "--no-reload"]
    # B closes the turns pending for over 1.5 s (not the bot's 120), every 0.1 s.
    with two_servers(args, fake_anthropic, {TEST_SWEEP_ENV: "1.5,0.1"}) as (a, b):
        seen: dict[str, str] = {}  # session -> the reply the client saw complete
        for i in range(5):
            reply = httpx.post(a.url + f"/chat/k{i}", json={"message": f"keep {i}"}, timeout=30)
            lines = [json.loads(line) for line in reply.text.splitlines()]
            assert lines[-1]["done"] is True
            seen[f"k{i}"] = "".join(line.get("delta", "") for line in lines)
        # Two replies in flight on A (slow), then A is killed: no close, no flush.
        words = " ".join(f"word{i}" for i in range(40))
        fake_anthropic.enqueue(*(slow(text(words), token_delay=0.2) for _ in range(2)))
        with _streaming(a.url, "f0") as first, _streaming(a.url, "f1") as second:
            assert a.proc is not None
            a.proc.kill()
            assert a.proc.wait(10) == -9
            for rest in (first, second):
                with contextlib.suppress(httpx.HTTPError):
                    assert not any('"done"' in line for line in rest)  # never acknowledged

        # Everything any client saw finish is there, read from the other process.
        for session, text_seen in seen.items():
            history = httpx.get(b.url + f"/chat/{session}", timeout=30).json()["messages"]
            assert [(m["role"], m["status"]) for m in history] == [
                ("user", "ok"),
                ("assistant", "ok"),
            ], session
            assert history[1]["text"] == text_seen
        # The killed turns were never completed: the other process closes them as failed
        # once no process can be running them, and they are never sent to the model again.
        for i in range(2):

            def killed_turn(session: str = f"f{i}") -> dict:
                return httpx.get(f"{b.url}/chat/{session}", timeout=30).json()["messages"][0]

            wait_until(lambda: killed_turn()["status"] == "error", timeout=10)
            assert killed_turn()["text"] == f"slow f{i}"
            again = httpx.post(b.url + f"/chat/f{i}", json={"message": "again"}, timeout=30)
            assert again.status_code == 200 and '"done":true' in again.text
            assert [m["role"] for m in fake_anthropic.requests[-1].messages] == ["user"]
