"""Tools the model may call. Today: HTTP tools declared in the bot file (`http.py`), with the
bot's secrets redacted from whatever comes back (`redact.py`)."""

from botrunner.tools.http import ToolOutcome, ToolRunner
from botrunner.tools.redact import REDACTED, Redactor, redact, redactor

__all__ = ["REDACTED", "Redactor", "ToolOutcome", "ToolRunner", "redact", "redactor"]
