"""Reading and checking bot files: the only layer that sees YAML.

`load_bot` returns a frozen `Bot` or raises `BotFileError`; `check_file` returns the `Bot` and
every `Problem` (file, line, column, message, hint). `LiveBots` watches files and swaps in each
valid edit.
"""

from botrunner.botfile.loader import BotFileError, check_file, load_bot
from botrunner.botfile.problems import Problem

__all__ = ["BotFileError", "Problem", "check_file", "load_bot"]
