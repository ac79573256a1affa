"""The `botrunner` command line: one function per command, each returning an exit code.

Command modules are imported lazily so `botrunner validate` never loads the SDK or web stack.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click


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
def schema(markdown: bool) -> int:
    """Print the bot file JSON Schema (for editors and other tools)."""
    from botrunner.commands import schema as command

    return command.run(markdown=markdown)


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
    type=click.Path(dir_okay=False, path_type=Path),
    help="Conversation store (a SQLite file).",
)
@click.option("--no-reload", is_flag=True, help="Don't watch the bot file for edits.")
@click.option("--log", "log_to", help="Write the JSON turn log to this file (- for stderr).")
def chat(
    path: Path,
    session: str | None,
    variables: tuple[str, ...],
    user_attributes: tuple[str, ...],
    db: Path,
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
    help="Conversation store: a SQLite file (or a store URL).",
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
def serve(
    path: Path,
    host: str,
    port: int,
    db: str,
    no_reload: bool,
    keys_file: Path | None,
    log_to: str,
    insecure_no_auth: bool,
    grace: float,
    max_header_bytes: int,
    max_headers: int,
) -> int:
    """Serve the bot in PATH (a bot file or a directory of them) over HTTP."""
    from botrunner.commands import serve as command
    from botrunner.server.headlimits import HeadLimits

    return command.run(
        path,
        host=host,
        port=port,
        db=db,
        reload=not no_reload,
        keys_file=keys_file,
        log_to=log_to,
        insecure_no_auth=insecure_no_auth,
        grace=grace,
        head_limits=HeadLimits(max_header_bytes, max_headers),
    )


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
    sys.exit(code if isinstance(code, int) else 0)
