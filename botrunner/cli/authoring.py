"""The commands for writing and checking bots: validate, test, new, schema."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
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


@click.command("test")
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


@click.command()
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


@click.command()
@click.option("--markdown", is_flag=True, hidden=True, help="Print the Markdown reference.")
@click.option("--tests", is_flag=True, help="The schema of test files (*.tests.yaml) instead.")
def schema(markdown: bool, tests: bool) -> int:
    """Print the bot file JSON Schema (for editors and other tools)."""
    from botrunner.commands import schema as command

    return command.run(markdown=markdown, tests=tests)
