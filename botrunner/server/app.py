"""The FastAPI app: a transport over the engine. It never parses YAML (bots come from LiveBots)
and holds no conversation state of its own (that is the engine's store).

    create_app(live, engine, settings) -> FastAPI
"""

from __future__ import annotations

import asyncio
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles

from botrunner.botfile.livebot import LiveBots
from botrunner.botfile.problems import format_text
from botrunner.engine import Engine
from botrunner.server import chat, errors, openai_compat
from botrunner.server.jsonbody import JSONBody
from botrunner.server.metrics import Metrics
from botrunner.server.middleware import Gate
from botrunner.server.state import ServerState, Settings

STATIC = resources.files("botrunner.server") / "static"


def create_app(live: LiveBots, engine: Engine, settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(
        title="botrunner",
        summary="A YAML bot over HTTP: streamed chat, stored sessions, OpenAI-compatible API.",
        docs_url="/docs",
        redoc_url=None,
        default_response_class=JSONBody,
    )
    state = ServerState(live, engine, settings, Metrics())
    app.state.botrunner = state
    errors.install(app)
    app.add_middleware(
        Gate,
        keys=settings.keys,
        max_body_bytes=settings.max_body_bytes,
        head_limits=settings.head_limits,
    )
    app.include_router(chat.router)
    app.include_router(openai_compat.router)

    @app.get("/livez", include_in_schema=False)
    async def livez() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(request: Request) -> JSONBody:
        # Probes need no key. Paths and reload errors are for the operator: with keys
        # configured, only a caller with a valid key sees them (and the backends' state).
        full = not settings.keys or getattr(request.state, "principal", None) is not None
        body = readiness(live) if full else brief_readiness(live)
        states = await backends(engine)
        ok = bool(live.bots) and all(states[b]["status"] == "ok" for b in ("store", "limits"))
        if full:
            body.update(states)
        if live.bots and not ok:
            body["status"] = "a backend is unavailable"
        return JSONBody(body, status_code=200 if ok else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        state.metrics.bots_loaded.set(len(live.bots))
        state.metrics.reload_errors.set(len(live.errors))
        return Response(state.metrics.render(), media_type=state.metrics.content_type)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"), headers={"cache-control": "no-cache"})

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return app


async def backends(engine: Engine) -> dict[str, Any]:
    """The store's and the limits backend's state: `ok`, or `unavailable` when a trivial
    request fails or takes over 2 s (chat requests then answer 503)."""

    async def state(backend: Any) -> str:
        try:
            await asyncio.wait_for(backend.ping(), 2.0)
        except Exception:  # noqa: BLE001 - any failure means not ready; the log says why
            return "unavailable"
        return "ok"

    store = await state(engine.store)
    if engine.limits_in_store:
        return {"store": {"status": store}, "limits": {"backend": "store", "status": store}}
    name = getattr(engine.limits, "name", type(engine.limits).__name__)
    return {
        "store": {"status": store},
        "limits": {"backend": name, "status": await state(engine.limits)},
    }


def brief_readiness(live: LiveBots) -> dict[str, Any]:
    """What anyone may know: whether the server is ready, and which bots it serves."""
    return {
        "status": "ready" if live.bots else "no bots loaded",
        "bots": [{"name": name} for name in sorted(live.bots)],
    }


def readiness(live: LiveBots) -> dict[str, Any]:
    """Loaded bots, and per file the last reload error exactly as `botrunner validate` prints it."""
    return {
        "status": "ready" if live.bots else "no bots loaded",
        "bots": [
            {"name": b.name, "version": b.version, "path": str(b.path)}
            for b in sorted(live.bots.values(), key=lambda b: b.name)
        ],
        "errors": [
            {"file": str(path), "problems": format_text(problems)}
            for path, problems in sorted(live.errors.items())
        ],
    }
