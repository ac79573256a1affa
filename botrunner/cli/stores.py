"""The commands that read or manage a conversation store: usage, db migrate, db copy."""

from __future__ import annotations

from pathlib import Path

import click

DB_HELP = (
    "Conversation store: a SQLite file (or sqlite:///PATH), or a PostgreSQL URL "
    "(postgresql://USER@HOST:5432/DBNAME); BOTRUNNER_DB works too."
)


@click.command()
@click.option(
    "--db", "db", default="botrunner.db", show_default=True, envvar="BOTRUNNER_DB", help=DB_HELP
)
@click.option(
    "--since",
    help="Only usage since then: 30m, 24h, 7d, 2w back from now, or a UTC date (2026-11-01).",
)
@click.option(
    "--by",
    type=click.Choice(["bot", "user", "day"]),
    default="bot",
    show_default=True,
    help="One row per bot, per user or per UTC day (and per model).",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json", "csv"]),
    default="text",
    show_default=True,
)
@click.option(
    "--prices",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A YAML or JSON file of prices (dollars per million tokens) that replace the "
    "catalogue's, e.g. `claude-opus-5-5: {input: 3.5}`.",
)
def usage(db: str, since: str | None, by: str, output_format: str, prices: Path | None) -> int:
    """Tokens (input, cache writes, cache reads, output) and estimated cost from a store."""
    from botrunner.commands import usage as command

    return command.run(db, by=by, since=since, output_format=output_format, prices=prices)  # type: ignore[arg-type]


@click.group()
def db() -> None:
    """The conversation store: apply migrations, copy one store into another."""


@db.command("migrate")
@click.option(
    "--db", "url", default="botrunner.db", show_default=True, envvar="BOTRUNNER_DB", help=DB_HELP
)
def db_migrate(url: str) -> int:
    """Apply the store's schema migrations (serve does it at start-up too).

    Exit code 0 when the schema is up to date, 2 if the store cannot be opened.
    """
    from botrunner.commands import db as command

    return command.migrate(url)


@db.command("copy")
@click.option("--from", "source", required=True, metavar="STORE", help="The store to copy from.")
@click.option("--to", "target", required=True, metavar="STORE", help="The store to copy into.")
def db_copy(source: str, target: str) -> int:
    """Copy every conversation, message, summary and usage record from one store to another.

    STORE is a SQLite file or a PostgreSQL URL, e.g. --from botrunner.db --to
    postgresql://botrunner@db:5432/botrunner. Safe to run again: what is already there is
    left alone, conversations that went on since are updated. Exit code 0 when everything was
    copied and verified, 1 on a conflict or mismatch (listed), 2 if a store cannot be opened.
    """
    from botrunner.commands import db as command

    return command.copy(source, target)
