"""Tools the model may call. Today: HTTP tools declared in the bot file (`http.py`)."""

from botrunner.tools.http import ToolOutcome, ToolRunner, redact

__all__ = ["ToolOutcome", "ToolRunner", "redact"]
