"""Fixtures for every test: the fake upstreams, one per provider, and `upstream`, which runs a
test once against each (the provider-neutral tests: engine, tools, retries); the stores every
store test runs against (`store_url`: SQLite and PostgreSQL); every limits backend behind one
parametrized fixture (`limits_backend`), Redis, and a database several processes can share
(`shared_db`)."""

from collections.abc import Iterator

import pytest
from fake_anthropic import FakeAnthropic, fake_anthropic  # noqa: F401
from fake_openai import FakeOpenAI, fake_openai  # noqa: F401
from limits_backends import limits_backend, redis_session, shared_db  # noqa: F401
from stores import pg_database, pg_url, store_url  # noqa: F401

from botrunner.botfile.schema import load_schema

FAKES = {"anthropic": FakeAnthropic, "openai": FakeOpenAI}
_IN_BOT_FILES = load_schema()["properties"]["model"]["properties"]["provider"]["enum"]
assert set(FAKES) == set(_IN_BOT_FILES), "a new provider needs its fake upstream here"


@pytest.fixture(params=sorted(FAKES))
def upstream(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """A running fake upstream for each provider (`.provider` names it), and that provider's
    SDK pointed at it by its environment variables (`.url_env`, `.key_env`)."""
    for fake in FAKES.values():
        monkeypatch.delenv(fake.url_env, raising=False)
        monkeypatch.delenv(fake.key_env, raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    server = FAKES[request.param]().start()
    monkeypatch.setenv(server.url_env, server.url)
    monkeypatch.setenv(server.key_env, "test-key")
    try:
        yield server
    finally:
        server.stop()
