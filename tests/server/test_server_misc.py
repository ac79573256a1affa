"""Client disconnects, keys configuration, and the serve command's refusals."""

from __future__ import annotations

import json
import subprocess

import httpx
import pytest
from fake_anthropic import slow, text
from test_server_harness import BOTRUNNER, REPO, ThreadServer, upstream_env, wait_until, write_bot

from botrunner.commands.serve import is_loopback
from botrunner.server.auth import KeysError, Principal, load_keys, resolve_user


def test_client_disconnect_closes_the_turn(tmp_path, fake_anthropic, monkeypatch):
    upstream_env(monkeypatch, fake_anthropic)
    words = " ".join(f"word{i}" for i in range(40))
    fake_anthropic.enqueue(slow(text(words), token_delay=0.1))
    with (
        ThreadServer(write_bot(tmp_path), tmp_path / "bots.db") as srv,
        httpx.Client(base_url=srv.url, timeout=30) as client,
    ):
        with client.stream("POST", "/chat/d", json={"message": "talk"}) as response:
            first = json.loads(next(response.iter_lines()))
            assert first == {"delta": "word0"}
        # The turn is closed (not left pending) soon after the client went away...
        status = lambda: [m["status"] for m in client.get("/chat/d").json()["messages"]]  # noqa: E731
        wait_until(lambda: "pending" not in status(), timeout=3)
        assert status()[0] == "error"
        # ...and the next turn works without sending the broken one to the model.
        fake_anthropic.enqueue(text("Back again"))
        again = client.post("/chat/d", json={"message": "hello?"})
        assert json.loads(again.text.splitlines()[-1])["done"] is True
        assert len(fake_anthropic.requests[-1].messages) == 1


def test_keys_from_env_and_file(tmp_path):
    import hashlib

    digest = hashlib.sha256(b"sk-hashed").hexdigest()
    keys_file = tmp_path / "keys.jsonl"
    keys_file.write_text(f'\n{{"principal": "ops", "key_sha256": "{digest}", "trusted": true}}\n')
    env = {"BOTRUNNER_API_KEYS": "web=sk-web, sk-bare", "BOTRUNNER_TRUSTED_PRINCIPALS": "web"}
    ring = load_keys(keys_file, environ=env)
    assert len(ring) == 3
    assert ring.authenticate("sk-web") == Principal("web", trusted=True)
    assert ring.authenticate("sk-hashed") == Principal("ops", trusted=True)
    assert ring.authenticate("sk-bare").name.startswith("key-")
    assert ring.authenticate("sk-other") is None
    assert not load_keys(environ={})
    keys_file.write_text('{"principal": "x"}\n')
    with pytest.raises(KeysError, match=r"keys.jsonl:1: give \"key\""):
        load_keys(keys_file, environ={})
    with pytest.raises(KeysError, match="already configured"):
        load_keys(environ={"BOTRUNNER_API_KEYS": "a=k1,b=k1"})


def test_resolve_user():
    assert resolve_user(None, None) == "anonymous"
    assert resolve_user(None, "ann") == "ann"
    assert resolve_user(Principal("web"), None) == "web"
    assert resolve_user(Principal("be", trusted=True), 42) == "be:42"
    with pytest.raises(PermissionError):
        resolve_user(Principal("web"), "someone")
    with pytest.raises(ValueError):
        resolve_user(None, "bad\nid")


def test_is_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.com")


def serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BOTRUNNER, "serve", *args],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serve_refuses_invalid_files_and_open_hosts(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: Broken Bot\nmodel:\n  name: m\n  max_tokens: 10\nsystem: hi\n")
    result = serve(str(broken), "--port", "0")
    assert result.returncode == 1
    assert f'{broken}:1:7: error: name "Broken Bot" is not allowed' in result.stderr
    assert '    hint: Try "broken-bot".' in result.stderr
    (tmp_path / "ok").mkdir()
    good = write_bot(tmp_path / "ok")
    result = serve(str(good), "--host", "0.0.0.0", "--port", "0")
    assert result.returncode == 2 and "without API keys" in result.stderr
    bad_keys = tmp_path / "keys.jsonl"
    bad_keys.write_text("not json\n")
    result = serve(str(good), "--keys", str(bad_keys), "--port", "0")
    assert result.returncode == 2 and "keys.jsonl:1: not a JSON object" in result.stderr
