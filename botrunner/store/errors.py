"""What a store raises: each error carries a message for the person who configured the store or
for the end user, never a traceback or a password."""

from __future__ import annotations


class StoreClosed(RuntimeError):
    """The store was closed; no more calls are accepted."""


class StoreError(RuntimeError):
    """The store cannot be opened or used as configured (unreachable server, wrong
    credentials, missing database, a schema newer than this botrunner...). The message is one
    line for the person who configured it: what is wrong and what to do; never a password."""


class TurnClosed(ValueError):
    """The turn is no longer pending, so nothing more may be written to it: it was closed
    already, perhaps by `fail_abandoned_turns` while its process was in fact still running
    (a client that stopped reading for minutes). What the store holds of it stays as it is."""


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message names the command that installs it."""


class LimitsUnavailable(Exception):
    """The limits backend can't be reached, so limits can't be enforced: the request is
    refused (nothing sent upstream) and may be retried after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float = 5.0) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
