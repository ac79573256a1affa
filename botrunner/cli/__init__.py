"""The `botrunner` command line: one function per command, each returning an exit code, and
the one error boundary (`main`). The commands are in `authoring`, `running` and `stores`.

Command modules are imported lazily so `botrunner validate` never loads the SDK or web stack.
"""

from __future__ import annotations

import sys

import click

from botrunner.cli.authoring import new, run_tests, schema, validate
from botrunner.cli.running import chat, serve
from botrunner.cli.stores import db, usage


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="botrunner", prog_name="botrunner")
def cli() -> None:
    """botrunner: turn a YAML file into a production chatbot."""


for _command in (validate, run_tests, new, schema, chat, serve, usage, db):
    cli.add_command(_command)


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
