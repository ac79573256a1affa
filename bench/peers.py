"""The peers under test: how to start each one against an upstream, and how to talk to it."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import secrets
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import procs
from bench.client import Conn, HttpTarget, HttpWorker, SdkTarget, SdkWorker

ROOT = Path(__file__).resolve().parent.parent
VENV_PY = ROOT / ".venv" / "bin" / "python"
BOTRUNNER = ROOT / ".venv" / "bin" / "botrunner"
LITELLM = ROOT / "bench" / ".venv-litellm" / "bin" / "litellm"
MODEL = "claude-sonnet-4-6"


class PeerUnavailable(Exception):
    pass


async def wait_http_ok(
    port: int, path: str, proc: procs.Proc | None, timeout: float, headers=None
) -> float:
    """Poll GET path until 200; return the moment (perf_counter) it answered."""
    deadline = time.perf_counter() + timeout
    last = "no answer"
    while time.perf_counter() < deadline:
        if proc is not None and not proc.alive():
            raise PeerUnavailable(
                f"exited with code {proc.popen.returncode} before serving:\n{proc.log_tail()}"
            )
        conn = Conn("127.0.0.1", port)
        try:
            status, body, _, _ = await asyncio.wait_for(
                conn.request("GET", path, headers=headers), 2.0
            )
            if status == 200:
                return time.perf_counter()
            last = f"HTTP {status} {body[:200]!r}"
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            last = f"{type(exc).__name__}"
        finally:
            await conn.close()
        await asyncio.sleep(0.02)
    tail = proc.log_tail() if proc else ""
    raise PeerUnavailable(f"not ready after {timeout:.0f}s (last: {last})\n{tail}")


@dataclass
class Peer:
    name: str
    label: str
    note: str
    persists_history: bool = False
    # The API of the fake upstream it talks to: "anthropic" (Messages) or "openai" (Chat
    # Completions, as a local model server speaks it).
    upstream_api: str = "anthropic"
    proc: procs.Proc | None = None
    port: int = 0
    startup_s: float | None = None
    version: str = ""
    target: HttpTarget | SdkTarget | None = None
    unavailable: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    async def start(self, upstream_url: str, workdir: Path, log_dir: Path, tag: str) -> None:
        raise NotImplementedError

    def worker(self):
        assert self.target is not None
        if isinstance(self.target, SdkTarget):
            return SdkWorker(self.target)
        return HttpWorker(self.target)

    async def stop(self) -> None:
        if isinstance(self.target, SdkTarget):
            await self.target.aclose()
        self.target = None
        if self.proc is not None:
            self.proc.stop()
            self.proc = None


class DirectPeer(Peer):
    async def start(self, upstream_url, workdir, log_dir, tag):
        import anthropic

        self.version = f"anthropic {anthropic.__version__}"
        self.target = SdkTarget(upstream_url, MODEL)
        self.startup_s = 0.0


class DirectHttpPeer(Peer):
    """Reference floor: the harness's lean HTTP client straight to the upstream's /v1/messages
    (the same client as the HTTP peers, so client-side costs cancel out exactly)."""

    async def start(self, upstream_url, workdir, log_dir, tag):
        self.version = "bench/client.py"
        port = int(upstream_url.rsplit(":", 1)[1])
        self.target = HttpTarget("127.0.0.1", port, "anthropic", model=MODEL, api_key="test")
        self.startup_s = 0.0


class BaselinePeer(Peer):
    async def start(self, upstream_url, workdir, log_dir, tag):
        import fastapi
        import uvicorn

        self.version = f"fastapi {fastapi.__version__}, uvicorn {uvicorn.__version__}"
        self.port = procs.free_port()
        t0 = time.perf_counter()
        self.proc = procs.spawn(
            f"baseline-{tag}",
            [
                str(VENV_PY),
                str(ROOT / "bench/baselines/fastapi_chatbot.py"),
                "--port",
                str(self.port),
            ],
            env={"ANTHROPIC_BASE_URL": upstream_url, "ANTHROPIC_API_KEY": "test"},
            log_dir=log_dir,
        )
        ready = await wait_http_ok(self.port, "/health", self.proc, 30)
        self.startup_s = ready - t0
        self.target = HttpTarget("127.0.0.1", self.port, "ndjson", ndjson_nonstream_field=True)


BOT_YAML = """\
# yaml-language-server: $schema=../schemas/bot.schema.json
name: {name}
description: A concise AI tutor (benchmark copy)
model:
{model_lines}
  max_tokens: 1024
  temperature: 0.5
system: |
  {system}
  Today is {{{{ today }}}}.
memory:
  strategy: {strategy}
  max_turns: 20
limits:
  max_message_chars: 2000
  per_user:
    requests_per_minute: 1000000
    tokens_per_day: 1000000000
  max_tool_rounds: 5
retry:
  max_retries: 0
  timeout_seconds: 60
"""

TOOL_YAML = """\
tools:
  - name: get_weather
    description: Get current weather for a city
    input_schema:
      type: object
      properties:
        city: {{type: string, description: City name}}
      required: [city]
    http:
      method: GET
      url: http://127.0.0.1:{port}/weather/{{{{ input.city }}}}
      params: {{units: metric}}
      timeout_seconds: 10
"""


def bot_yaml(
    name: str = "bench",
    strategy: str = "window",
    system: str = "You are a concise AI tutor.",
    tool_port: int | None = None,
    openai_url: str | None = None,
) -> str:
    """A bench bot on Anthropic (found by ANTHROPIC_BASE_URL), or with `openai_url` on provider
    openai pointed at that Chat Completions server (keyless, as a local model server)."""
    if openai_url:
        model_lines = f"  provider: openai\n  name: {MODEL}\n  base_url: {openai_url}"
    else:
        model_lines = f"  provider: anthropic\n  name: {MODEL}"
    text = BOT_YAML.format(name=name, model_lines=model_lines, strategy=strategy, system=system)
    if tool_port:
        text += TOOL_YAML.format(port=tool_port)
    return text


def botrunner_cmd() -> list[str]:
    """The console script when installed, else `python -m botrunner` from the checkout."""
    if BOTRUNNER.exists():
        return [str(BOTRUNNER)]
    return [str(VENV_PY), "-m", "botrunner"]


def botrunner_version() -> str:
    try:
        from importlib.metadata import version

        return f"botrunner {version('botrunner')}"
    except Exception:
        import re

        m = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
        return f"botrunner {m.group(1) if m else '?'} (checkout)"


class BotrunnerPeer(Peer):
    """`botrunner serve` on a directory of bench bots (SQLite store, limits on, window)."""

    bots: dict[str, str] | None = None  # file stem -> yaml; default: one window bot
    reload: bool = False
    protocol: str = "ndjson"

    def db_path(self, workdir: Path, tag: str) -> Path:
        return workdir / f"{self.name}-{tag}.db"

    def db_url(self, workdir: Path, tag: str) -> str:
        return str(self.db_path(workdir, tag))

    def extra_args(self) -> list[str]:
        return []

    async def start(self, upstream_url, workdir, log_dir, tag):
        self.version = botrunner_version()
        botdir = workdir / f"bots-{self.name}-{tag}"
        botdir.mkdir(parents=True, exist_ok=True)
        default = bot_yaml(
            openai_url=upstream_url + "/v1" if self.upstream_api == "openai" else None
        )
        for stem, text in (self.bots or {"bench": default}).items():
            (botdir / f"{stem}.yaml").write_text(text)
        self.extra["botdir"] = botdir
        self.port = procs.free_port()
        db = self.db_url(workdir, tag)
        argv = [*botrunner_cmd(), "serve", str(botdir), "--port", str(self.port), "--db", db]
        argv += self.extra_args()
        if not self.reload:
            argv.append("--no-reload")
        t0 = time.perf_counter()
        self.proc = procs.spawn(
            f"{self.name}-{tag}",
            argv,
            env={"ANTHROPIC_BASE_URL": upstream_url, "ANTHROPIC_API_KEY": "test"},
            log_dir=log_dir,
            cwd=ROOT,
        )
        ready = await wait_http_ok(self.port, "/readyz", self.proc, 30)
        self.startup_s = ready - t0
        self.target = HttpTarget(
            "127.0.0.1",
            self.port,
            self.protocol,
            model="bench",
            nonstream_via_openai=True,
            send_user=True,
        )


# The PostgreSQL server the postgres peers use; the URL names its maintenance database, where
# the peer creates a database of its own for each start and drops it when stopped.
POSTGRES_ADMIN = os.environ.get(
    "BOTRUNNER_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_ADMIN, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _drop_leftover_databases() -> None:
    """At exit (an interrupted run): drop the databases no peer got to drop."""
    for name in list(procs.DATABASES):
        with contextlib.suppress(Exception):
            asyncio.run(_pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


atexit.register(_drop_leftover_databases)


REDIS = os.environ.get("BOTRUNNER_BENCH_REDIS", "redis://127.0.0.1:6379/0")


def _drop_redis_keys(prefix: str) -> None:
    """Delete the run's limit counters (they expire anyway; this keeps Redis tidy)."""
    with contextlib.suppress(Exception):
        import redis

        client = redis.Redis.from_url(REDIS, socket_connect_timeout=2)
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


class BotrunnerPostgresPeer(BotrunnerPeer):
    """`botrunner serve` as the botrunner peer, on a PostgreSQL database of its own, with the
    per-user limit counters in Redis (`--limits`), as a multi-process deployment runs it."""

    database: str | None = None
    redis_prefix: str = ""
    workers: int = 1

    def extra_args(self) -> list[str]:
        args = ["--limits", f"{REDIS}?prefix={self.redis_prefix}"]
        if self.workers > 1:
            args += ["--workers", str(self.workers)]
        return args

    def db_url(self, workdir: Path, tag: str) -> str:
        assert self.database is not None
        return f"{POSTGRES_ADMIN.rpartition('/')[0]}/{self.database}"

    async def start(self, upstream_url, workdir, log_dir, tag):
        self.database = f"botrunner_bench_{tag.replace('-', '_')}_{secrets.token_hex(4)}"
        try:
            await _pg_admin(f"CREATE DATABASE {self.database}")
        except Exception as exc:  # noqa: BLE001 - any reason the server can't be used
            self.database = None
            raise PeerUnavailable(
                f"no PostgreSQL at {POSTGRES_ADMIN} (set BOTRUNNER_BENCH_POSTGRES): {exc}"
            ) from exc
        procs.DATABASES.add(self.database)
        self.extra["database"] = self.database
        self.redis_prefix = f"{self.database}:"
        await super().start(upstream_url, workdir, log_dir, tag)

    async def stop(self) -> None:
        await super().stop()
        if self.redis_prefix:
            _drop_redis_keys(self.redis_prefix)
        if self.database is not None:
            procs.DATABASES.discard(self.database)
            await _pg_admin(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")
            self.database = None


class LiteLLMPeer(Peer):
    async def start(self, upstream_url, workdir, log_dir, tag):
        if not LITELLM.exists():
            log = ROOT / "bench" / "out" / "litellm-install.log"
            tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
            raise PeerUnavailable(
                f"{LITELLM} not found: the LiteLLM install failed or was skipped "
                f"(bench/out/litellm-install.log) {tail}"
            )
        self.version = "litellm " + _litellm_version()
        key = "sk-bench-" + secrets.token_hex(12)
        cfg = workdir / f"litellm-{tag}.yaml"
        cfg.write_text(
            textwrap.dedent(f"""\
            model_list:
              - model_name: bench
                litellm_params:
                  model: anthropic/{MODEL}
                  api_base: {upstream_url}
                  api_key: test
            general_settings:
              master_key: {key}
            litellm_settings:
              telemetry: false
            """)
        )
        self.port = procs.free_port()
        t0 = time.perf_counter()
        self.proc = procs.spawn(
            f"litellm-{tag}",
            [
                str(LITELLM),
                "--config",
                str(cfg),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--num_workers",
                "1",
            ],  # fmt: skip
            env={
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "LITELLM_LOG": "ERROR",
                "ANTHROPIC_API_KEY": "test",
            },  # fmt: skip
            log_dir=log_dir,
        )
        ready = await wait_http_ok(
            self.port, "/health/liveliness", self.proc, 90, {"authorization": f"Bearer {key}"}
        )
        self.startup_s = ready - t0
        self.target = HttpTarget("127.0.0.1", self.port, "openai", model="bench", api_key=key)


def _litellm_version() -> str:
    import subprocess

    py = LITELLM.parent / "python"
    try:
        out = subprocess.run(
            [str(py), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return out.stdout.strip() or "?"
    except Exception:
        return "?"


def make_peers(names: list[str]) -> list[Peer]:
    out: list[Peer] = []
    for n in names:
        if n == "direct":
            out.append(DirectPeer("direct", "direct (SDK, floor)",
                                  "floor: anthropic SDK straight to the upstream; no server"))  # fmt: skip
        elif n == "direct-http":
            out.append(DirectHttpPeer("direct-http", "direct (lean HTTP client)",
                                      "reference floor: the bench's own HTTP client straight to "
                                      "the upstream"))  # fmt: skip
        elif n == "botrunner":
            out.append(BotrunnerPeer("botrunner", "botrunner serve",
                                     "SQLite history, rate limits on, window memory (20 turns)",
                                     persists_history=True))  # fmt: skip
        elif n == "botrunner-postgres":
            out.append(BotrunnerPostgresPeer(n, "botrunner serve (PostgreSQL)",
                                             "as botrunner, with history in PostgreSQL "
                                             "(asyncpg) and limits in Redis; both servers on "
                                             "the same 2 cores",
                                             persists_history=True))  # fmt: skip
        elif n == "botrunner-postgres-w2":
            peer = BotrunnerPostgresPeer(n, "botrunner serve --workers 2 (PostgreSQL)",
                                         "as botrunner (PostgreSQL), two worker processes on "
                                         "one port",
                                         persists_history=True)  # fmt: skip
            peer.workers = 2
            out.append(peer)
        elif n in ("botrunner-sse", "botrunner-openai"):
            proto = "sse" if n.endswith("sse") else "openai"
            peer = BotrunnerPeer(n, f"botrunner serve ({proto})",
                                 f"as botrunner, driven over {'SSE' if proto == 'sse' else '/v1/chat/completions'}",
                                 persists_history=True)  # fmt: skip
            peer.protocol = proto
            out.append(peer)
        elif n == "botrunner-local":
            peer = BotrunnerPeer(n, "botrunner serve (provider openai)",
                                 "as botrunner, its bot on provider openai against the fake Chat "
                                 "Completions server (a local model server's API, no key)",
                                 persists_history=True)  # fmt: skip
            peer.upstream_api = "openai"
            out.append(peer)
        elif n == "baseline":
            out.append(BaselinePeer("baseline", "hand-written FastAPI",
                                    "in-memory dict, history[-20:]; no persistence, no limits"))  # fmt: skip
        elif n == "litellm":
            out.append(LiteLLMPeer("litellm", "LiteLLM proxy",
                                   "stateless proxy: does NOT persist history; no per-user limits "
                                   "configured"))  # fmt: skip
        else:
            sys.exit(
                f"unknown peer {n!r} (direct, direct-http, botrunner, botrunner-postgres, "
                "botrunner-postgres-w2, "
                "botrunner-sse, botrunner-openai, botrunner-local, baseline, litellm)"
            )
    return out
