"""`botrunner serve`: the HTTP transport over the engine (FastAPI on uvicorn)."""

from botrunner.server.app import ServerState, Settings, create_app

__all__ = ["ServerState", "Settings", "create_app"]
