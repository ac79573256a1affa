"""The `botrunner` command line: one function per command, each returning an exit code.

Command modules are imported lazily so `botrunner validate` never loads the SDK or web stack.
"""

from __future__ import annotations

import sys

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="botrunner")
def cli() -> None:
    """botrunner: turn a YAML file into a production chatbot."""


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
