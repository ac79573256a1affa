"""The `botrunner` command line: one function per command, each returning an exit code.

Command modules are imported lazily so `botrunner validate` never loads the SDK or web stack.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

DB_HELP = (
    "Conversation store: a SQLite file (or sqlite:///PATH), or a PostgreSQL URL "
    "(postgresql://USER@HOST:5432/DBNAME); BOTRUNNER_DB works too."
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="botrunner", prog_name="botrunner")
def cli() -> None:
    """botrunner: turn a YAML file into a production chatbot."""


@cli.command()
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json", "github"]),
    default="text",
    show_default=True,
    help="text: like a compiler; json: a list of objects; github: GitHub Actions annotations.",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Also fail on warnings and on ${NAME} variables that are not set (names only, never values).",
)
def validate(paths: tuple[str, ...], output_format: str, strict: bool) -> int:
    """Check bot files: files, directories (every *.yaml / *.yml) and globs.

    Exit code 0 if every file is valid, 1 if any is not, 2 on a usage error.
    """
    from botrunner.commands import validate as command

    return command.run(paths, output_format=output_format, strict=strict)


@cli.command("test")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option(
    "--live",
    is_flag=True,
    help="Run against the real model (needs a key); cassettes are neither read nor written.",
)
@click.option(
    "--record",
    is_flag=True,
    help="Run against the real model and write the cassettes (NAME.tests.cassette.json).",
)
@click.option(
    "-k",
    "keywords",
    multiple=True,
    metavar="PATTERN",
    help="Only the tests whose name contains PATTERN (any case; repeatable).",
)
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="How many tests run at once.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: a line per test, failures under it; json: one object with a tests list.",
)
@click.option(
    "--junit",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write a JUnit XML report to this file (for GitHub, GitLab, Jenkins).",
)
@click.option("--strict", is_flag=True, help="Also fail on tests that have no recording.")
def run_tests(
    paths: tuple[str, ...],
    live: bool,
    record: bool,
    keywords: tuple[str, ...],
    jobs: int,
    output_format: str,
    junit: Path | None,
    strict: bool,
) -> int:
    """Run the conversation tests in PATH (*.tests.yaml files, directories, or bot files).

    Replays each test from its cassette by default: no API key, no network. Exit code 0 if
    every test passed, 1 if one failed or is stale, 2 on a usage error.
    """
    from botrunner.commands import test as command

    return command.run(
        paths,
        live=live,
        record=record,
        keywords=keywords,
        jobs=jobs,
        output_format=output_format,
        junit=junit,
        strict=strict,
    )


@cli.command()
@click.argument("name")
@click.option(
    "--kind",
    type=click.Choice(["tutor", "support", "tool"]),
    default="tutor",
    show_default=True,
    help="tutor: a teacher with memory; support: summarized memory and limits; tool: calls a web API.",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("bots"),
    show_default=True,
    help="Where to write NAME.yaml.",
)
def new(name: str, kind: str, directory: Path) -> int:
    """Start a bot: write DIR/NAME.yaml, commented and valid as written.

    Never overwrites a file. Exit code 0 when written, 1 if the file exists, 2 for a bad name.
    """
    from botrunner.commands import new as command

    return command.run(name, kind=kind, directory=directory)


@cli.command()
@click.option("--markdown", is_flag=True, hidden=True, help="Print the Markdown reference.")
@click.option("--tests", is_flag=True, help="The schema of test files (*.tests.yaml) instead.")
def schema(markdown: bool, tests: bool) -> int:
    """Print the bot file JSON Schema (for editors and other tools)."""
    from botrunner.commands import schema as command

    return command.run(markdown=markdown, tests=tests)


@cli.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--session", help="Resume (or start) the stored conversation with this name.")
@click.option(
    "--var",
    "variables",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set a template variable declared under `variables:` (repeatable).",
)
@click.option(
    "--user",
    "user_attributes",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set a user attribute (user.KEY in the template), as a client would send it (repeatable).",
)
@click.option(
    "--db",
    default="botrunner.db",
    show_default=True,
    envvar="BOTRUNNER_DB",
    help=DB_HELP,
)
@click.option("--no-reload", is_flag=True, help="Don't watch the bot file for edits.")
@click.option("--log", "log_to", help="Write the JSON turn log to this file (- for stderr).")
def chat(
    path: Path,
    session: str | None,
    variables: tuple[str, ...],
    user_attributes: tuple[str, ...],
    db: str,
    no_reload: bool,
    log_to: str | None,
) -> int:
    """Chat with the bot in PATH in the terminal, or line by line from a pipe."""
    values = _pairs(variables, "--var")
    user = _pairs(user_attributes, "--user")
    if log_to:
        from botrunner.engine import turnlog

        turnlog.configure(log_to)
    else:
        import logging

        # The terminal is for the conversation: every failure the user must know about is
        # printed as an error line; the structured log goes where --log says.
        logging.getLogger("botrunner").addHandler(logging.NullHandler())
    from botrunner.commands import chat as command

    return command.run(
        path, session=session, variables=values, user=user, db=db, reload=not no_reload
    )


def _pairs(items: tuple[str, ...], option: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{item!r}: write it as KEY=VALUE", param_hint=option)
        values[name] = value
    return values


@cli.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port (0: any free port).")
@click.option(
    "--db",
    default="botrunner.db",
    show_default=True,
    envvar="BOTRUNNER_DB",
    help=DB_HELP,
)
@click.option(
    "--limits",
    envvar="BOTRUNNER_LIMITS",
    help="Where per-user limit counters live: redis://host:6379/0 (default: in the --db store).",
)
@click.option("--no-reload", is_flag=True, help="Don't watch the bot files for edits.")
@click.option(
    "--keys",
    "keys_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="API keys file (JSON lines); BOTRUNNER_API_KEYS works too.",
)
@click.option(
    "--log",
    "log_to",
    default="-",
    show_default=True,
    help="Where the JSON turn log goes: a file, or - for stderr.",
)
@click.option(
    "--insecure-no-auth",
    is_flag=True,
    help="Allow a non-loopback --host without API keys (only behind your own access control).",
)
@click.option(
    "--grace",
    default=30.0,
    show_default=True,
    type=float,
    help="Seconds replies in flight may take to finish on shutdown.",
)
@click.option(
    "--max-header-bytes",
    envvar="BOTRUNNER_MAX_HEADER_BYTES",
    show_envvar=True,
    default=32 * 1024,
    show_default=True,
    type=click.IntRange(min=1),
    help="Largest request line and headers accepted, in bytes (larger: 431).",
)
@click.option(
    "--max-headers",
    envvar="BOTRUNNER_MAX_HEADERS",
    show_envvar=True,
    default=100,
    show_default=True,
    type=click.IntRange(min=1),
    help="Most request headers accepted (more: 431).",
)
@click.option(
    "--header-timeout",
    envvar="BOTRUNNER_HEADER_TIMEOUT",
    show_envvar=True,
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds a connection may take to send a request's line and headers (slower: 408).",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Processes serving the port, each with its own event loop (needs a PostgreSQL --db).",
)
@click.option("--worker", hidden=True, help="Internal: the sockets a --workers parent passes.")
def serve(
    path: Path,
    host: str,
    port: int,
    db: str,
    limits: str | None,
    no_reload: bool,
    keys_file: Path | None,
    log_to: str,
    insecure_no_auth: bool,
    grace: float,
    max_header_bytes: int,
    max_headers: int,
    header_timeout: float,
    workers: int,
    worker: str | None,
) -> int:
    """Serve the bot in PATH (a bot file or a directory of them) over HTTP."""
    from botrunner.commands import serve as command
    from botrunner.server.headlimits import HeadLimits

    return command.run(
        path,
        host=host,
        port=port,
        db=db,
        limits=limits,
        reload=not no_reload,
        keys_file=keys_file,
        log_to=log_to,
        insecure_no_auth=insecure_no_auth,
        grace=grace,
        head_limits=HeadLimits(max_header_bytes, max_headers, header_timeout),
        workers=workers,
        worker=worker,
    )


@cli.command()
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


@cli.group()
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


def _known_failure(exc: Exception) -> int:
    """The error boundary: a failure the user can fix (a store that cannot be opened) is one
    line and exit code 2; anything else is a bug and propagates."""
    from botrunner.store.base import StoreError

    if not isinstance(exc, StoreError):
        raise exc
    click.echo(f"error: {exc}", err=True)
    return 2


def main() -> None:
    try:
        # standalone_mode=False lets every command return its own exit code.
        code = cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        code = 130
    except click.ClickException as exc:
        exc.show()
        code = 2 if isinstance(exc, click.UsageError) else exc.exit_code
    except KeyboardInterrupt:
        code = 130
    except Exception as exc:  # noqa: BLE001 - re-raised unless it is a known failure
        code = _known_failure(exc)
    sys.exit(code if isinstance(code, int) else 0)
