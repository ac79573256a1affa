"""Tools the model may call. Today: HTTP tools declared in the bot file (`http.py`)."""

from botrunner.tools.http import ToolOutcome, ToolRunner
from botrunner.tools.secrets import redact

__all__ = ["ToolOutcome", "ToolRunner", "redact"]
