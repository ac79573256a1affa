"""Per-user limits over HTTP, with every limits backend (`limits_backend`: the SQLite and
PostgreSQL stores, Redis):
atomic admission under concurrency, and the daily token budget with reservations."""

from __future__ import annotations

import asyncio
import json

import httpx
from fake_anthropic import text
from test_server_harness import ThreadServer, upstream_env, write_bot

# How long a reply takes in the budget tests: the simultaneous requests must all be admitted or
# refused while the first replies still run. One user's admissions with a budget queue on one
# lock through their commits (PostgreSQL: one fsync each), which on a loaded 2-core machine
# took up to 0.4 s for 20 requests.
TURN = 1.5


def limited_bot(tmp_path, per_user: str):
    return write_bot(tmp_path, extra=f"limits:\n  per_user:\n{per_user}")


async def test_100_simultaneous_requests_admit_exactly_5(
    tmp_path, fake_anthropic, monkeypatch, limits_backend
):
    upstream_env(monkeypatch, fake_anthropic)
    fake_anthropic.enqueue(*(text(f"Answer {i}") for i in range(5)))
    path = limited_bot(tmp_path, "    requests_per_minute: 5\n")

    async def one(client: httpx.AsyncClient, i: int) -> httpx.Response:
        return await client.post(f"/chat/s{i}", json={"message": f"question {i}"})

    with ThreadServer(path, limits_backend.db, limits=limits_backend.url) as srv:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(base_url=srv.url, limits=limits, timeout=30) as client:
            responses = await asyncio.gather(*(one(client, i) for i in range(100)))
            statuses = sorted(r.status_code for r in responses)
            assert statuses.count(200) == 5, statuses
            assert statuses.count(429) == 95
            for r in responses:
                if r.status_code == 429:
                    body = r.json()["error"]
                    assert body["code"] == "rate_limited" and body["kind"] == "requests"
                    assert "5 per minute" in body["message"]
                    assert int(r.headers["retry-after"]) >= 1
                else:
                    assert json.loads(r.text.splitlines()[-1])["done"] is True
            # Refused requests never reached the model and left no history.
            assert len(fake_anthropic.requests) == 5
            refused = [i for i, r in enumerate(responses) if r.status_code == 429]
            history = await client.get(f"/chat/s{refused[0]}")
            assert history.json()["messages"] == []


def test_tokens_per_day_exhausted(tmp_path, fake_anthropic, monkeypatch, limits_backend):
    upstream_env(monkeypatch, fake_anthropic)
    fake_anthropic.enqueue(text("A long answer", input_tokens=40, output_tokens=20))
    path = limited_bot(tmp_path, "    tokens_per_day: 50\n")
    with (
        ThreadServer(path, limits_backend.db, limits=limits_backend.url) as srv,
        httpx.Client(base_url=srv.url, timeout=30) as client,
    ):
        first = client.post("/chat/t", json={"message": "hi"})
        assert first.status_code == 200 and '"done":true' in first.text
        second = client.post("/chat/t", json={"message": "again"})
        assert second.status_code == 429
        error = second.json()["error"]
        assert error["code"] == "rate_limited" and error["kind"] == "tokens"
        assert "budget of 50 tokens" in error["message"]
        assert 1 <= int(second.headers["retry-after"]) <= 86400
        # Another user still has their own budget (no upstream call needed to show the 429
        # is per user: this one is admitted and reaches the model).
        fake_anthropic.enqueue(text("Hi other"))
        other = client.post("/chat/t", json={"message": "hi", "user": {"id": "other"}})
        assert other.status_code == 200
        messages = client.get("/chat/t").json()["messages"]
        assert [m["text"] for m in messages] == ["hi", "A long answer"]
    assert len(fake_anthropic.requests) == 2


async def test_20_simultaneous_requests_cannot_spend_the_token_budget_20_times(
    tmp_path, fake_anthropic, monkeypatch, limits_backend
):
    """The budget holds under concurrency: the first turn reserves its estimate (input plus
    max_tokens: over 100) at admission, so the 19 others are refused before reaching the model,
    although no turn has finished (been charged) yet."""
    upstream_env(monkeypatch, fake_anthropic)
    fake_anthropic.enqueue(
        *(text(f"Answer {i}", input_tokens=70, output_tokens=50, ttft=TURN) for i in range(20))
    )
    path = limited_bot(tmp_path, "    tokens_per_day: 100\n")

    async def one(client: httpx.AsyncClient, i: int) -> httpx.Response:
        return await client.post(f"/chat/s{i}", json={"message": f"question {i}"})

    with ThreadServer(path, limits_backend.db, limits=limits_backend.url) as srv:
        limits = httpx.Limits(max_connections=50, max_keepalive_connections=50)
        async with httpx.AsyncClient(base_url=srv.url, limits=limits, timeout=30) as client:
            responses = await asyncio.gather(*(one(client, i) for i in range(20)))
            statuses = [r.status_code for r in responses]
            assert statuses.count(200) == 1 and statuses.count(429) == 19, statuses
            assert len(fake_anthropic.requests) == 1
            for r in responses:
                if r.status_code == 429:
                    error = r.json()["error"]
                    assert error["kind"] == "tokens"
                    assert "in progress" in error["message"], error["message"]
                    assert 1 <= int(r.headers["retry-after"]) <= 10
            # The turn ended and was charged its real usage (120 tokens): the budget is spent
            # until midnight UTC, and the refusal now says so.
            later = await client.post("/chat/later", json={"message": "and now?"})
            assert later.status_code == 429
            assert "used today's budget of 100 tokens" in later.json()["error"]["message"]
            assert int(later.headers["retry-after"]) > 10 or _near_midnight()
    assert len(fake_anthropic.requests) == 1


async def test_reservations_are_replaced_by_real_usage_when_turns_end(
    tmp_path, fake_anthropic, monkeypatch, limits_backend
):
    """Each turn holds about max_tokens (256) plus its input while it runs; when it ends, its
    real usage (here 30 tokens) replaces the estimate, so the next wave is admitted again."""
    upstream_env(monkeypatch, fake_anthropic)
    path = limited_bot(tmp_path, "    tokens_per_day: 1000\n")

    async def one(client: httpx.AsyncClient, i: int) -> httpx.Response:
        return await client.post(f"/chat/s{i}", json={"message": "hi"})

    with ThreadServer(path, limits_backend.db, limits=limits_backend.url) as srv:
        async with httpx.AsyncClient(base_url=srv.url, timeout=30) as client:
            for wave in range(2):
                fake_anthropic.enqueue(
                    *(text("ok", input_tokens=20, output_tokens=10, ttft=TURN) for _ in range(20))
                )
                responses = await asyncio.gather(*(one(client, i) for i in range(20)))
                admitted = [r for r in responses if r.status_code == 200]
                # ~260 tokens each: admitted while used + reserved < 1000, i.e. 4 at a time.
                assert len(admitted) == 4, (wave, [r.status_code for r in responses])
                fake_anthropic.clear()


def _near_midnight() -> bool:
    import time

    return 86400 - time.time() % 86400 < 15
