"""Hot reload through the server: edits are live within a second; broken edits keep the old bot."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from fake_anthropic import text
from test_server_harness import ThreadServer, bot_yaml, upstream_env, wait_until, write_bot

from botrunner.server.auth import load_keys


@pytest.fixture
def reloading(tmp_path, fake_anthropic, monkeypatch):
    upstream_env(monkeypatch, fake_anthropic)
    path = write_bot(tmp_path, system="You are version one.")
    with ThreadServer(path, tmp_path / "bots.db", reload=True) as srv:
        time.sleep(0.3)  # let the watcher register before the first edit
        with httpx.Client(base_url=srv.url, timeout=30) as client:
            yield srv, client, path


def version(client: httpx.Client) -> str:
    return client.get("/readyz").json()["bots"][0]["version"]


def test_system_edit_is_live_within_a_second(reloading, fake_anthropic):
    _srv, client, path = reloading
    old = version(client)
    path.write_text(bot_yaml(system="You are version two."), encoding="utf-8")
    saved = time.monotonic()
    wait_until(lambda: version(client) != old, timeout=1.0, step=0.01)
    assert time.monotonic() - saved < 1.0
    fake_anthropic.enqueue(text("v2 here"))
    response = client.post("/chat/r", json={"message": "hi"})
    assert response.status_code == 200
    assert fake_anthropic.requests[-1].system == "You are version two."


def test_broken_edit_keeps_old_bot_and_shows_error(reloading, fake_anthropic):
    _srv, client, path = reloading
    old = version(client)
    path.write_text("name: tutor\nmodel:\n  name: [unclosed\nsystem: x\n", encoding="utf-8")
    ready = wait_until(lambda: (r := client.get("/readyz").json())["errors"] and r, timeout=2)
    assert ready["bots"] == [{"name": "tutor", "version": old, "path": str(path.resolve())}]
    [error] = ready["errors"]
    assert error["file"] == str(path.resolve())
    # Exactly as `botrunner validate` prints it: FILE:LINE:COL: error: MESSAGE
    assert re.match(r"^\S*tutor\.yaml:\d+:\d+: error: ", error["problems"]), error["problems"]
    fake_anthropic.enqueue(text("still v1"))
    assert client.post("/chat/r", json={"message": "hi"}).status_code == 200
    assert fake_anthropic.requests[-1].system == "You are version one."
    # Fixing the file clears the error.
    path.write_text(bot_yaml(system="You are fixed."), encoding="utf-8")
    wait_until(lambda: not client.get("/readyz").json()["errors"], timeout=2)
    assert version(client) != old


def test_readyz_details_need_a_key_when_keys_are_set(tmp_path, fake_anthropic, monkeypatch):
    upstream_env(monkeypatch, fake_anthropic)
    path = write_bot(tmp_path, system="You are version one.")
    keys = load_keys(environ={"BOTRUNNER_API_KEYS": "ops=sk-ops"})
    with (
        ThreadServer(path, tmp_path / "bots.db", reload=True, keys=keys) as srv,
        httpx.Client(base_url=srv.url, timeout=30) as client,
    ):
        time.sleep(0.3)  # let the watcher register before the edit
        path.write_text("name: tutor\nmodel:\n  name: [unclosed\nsystem: x\n", encoding="utf-8")
        ops = {"Authorization": "Bearer sk-ops"}
        ready = wait_until(lambda: (r := client.get("/readyz", headers=ops).json())["errors"] and r)
        assert ready["bots"][0]["path"] == str(path.resolve())
        assert "error:" in ready["errors"][0]["problems"]
        # Without a key, or with a wrong one, a probe learns only the status and the bot names.
        for headers in ({}, {"Authorization": "Bearer sk-wrong"}):
            brief = client.get("/readyz", headers=headers)
            assert brief.status_code == 200
            assert brief.json() == {"status": "ready", "bots": [{"name": "tutor"}]}
            assert str(tmp_path) not in brief.text and "unclosed" not in brief.text
