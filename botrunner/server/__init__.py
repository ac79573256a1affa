"""`botrunner serve`: the HTTP transport over the engine (FastAPI on uvicorn)."""

from botrunner.server.app import create_app
from botrunner.server.state import ServerState, Settings

__all__ = ["ServerState", "Settings", "create_app"]
