"""The commands that run bots: chat (a terminal) and serve (HTTP)."""

from __future__ import annotations

from pathlib import Path

import click

from botrunner.cli.stores import DB_HELP


@click.command()
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


@click.command()
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
