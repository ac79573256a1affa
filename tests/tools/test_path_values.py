"""Tool path values that could leave their segment (issue 9, item 7), beyond the cases
`tests/tools/test_tools.py` covers: look-alike characters that servers folding Unicode (NFKC)
read as "/", "\\" or ".", and what `validate` says about `| segments`.
"""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from test_tools import ToolServer, one_tool

from botrunner.botfile.loader import check_file
from botrunner.tools import ToolRunner


@pytest.fixture
def tool_server() -> Iterator[ToolServer]:
    server = ToolServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def runner() -> AsyncIterator[ToolRunner]:
    tools = ToolRunner()
    try:
        yield tools
    finally:
        await tools.aclose()


@pytest.mark.parametrize(
    "value",
    [
        "\uff0e\uff0e",  # fullwidth "..": NFKC folds it to ".."
        "\uff0e\uff0e\uff0fadmin",  # fullwidth "../admin"
        "..\uff0fadmin",  # only the slash fullwidth
        "a\uff3cb",  # fullwidth backslash
        "\u2025",  # TWO DOT LEADER: NFKC ".."
        "%EF%BC%8F",  # a fullwidth slash, percent-encoded by the model
    ],
)
async def test_a_look_alike_that_a_server_folds_into_a_separator_is_refused(
    tmp_path, tool_server, runner, value
):
    tool, secrets = one_tool(tmp_path, tool_server.url + "/weather/{{ input.a }}/x")
    outcome = await runner.run(tool, {"a": value}, secrets)
    assert outcome.is_error, outcome.content
    assert "cannot fill a path segment" in outcome.content
    assert tool_server.seen == []


async def test_look_alikes_in_a_segments_value_are_refused_only_where_they_make_dot_dot(
    tmp_path, tool_server, runner
):
    tool, secrets = one_tool(tmp_path, tool_server.url + "/echo/{{ input.a | segments }}")
    refused = await runner.run(tool, {"a": "docs/\uff0e\uff0e/secret"}, secrets)
    assert refused.is_error and "has a .. segment" in refused.content
    assert tool_server.seen == []
    # Fullwidth letters are just letters: sent, each segment encoded.
    fine = await runner.run(tool, {"a": "docs/\uff46ile.txt"}, secrets)
    assert not fine.is_error, fine.content
    assert tool_server.paths() == ["/echo/docs/%EF%BD%86ile.txt"]


def check(tmp_path: Path, http: str) -> list[str]:
    path = tmp_path / "files.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            name: files
            model: {name: claude-test, max_tokens: 256}
            system: You read files.
            tools:
              - name: read
                description: Read a file.
                input_schema: {type: object, properties: {path: {type: string}}}
                http:
            """
        )
        + textwrap.indent(textwrap.dedent(http), "      "),
        encoding="utf-8",
    )
    _, problems = check_file(path, env={})
    return [f"{p.line}:{p.column}: {p.message} | {p.hint}" for p in problems if p.is_error]


def test_validate_accepts_a_segments_placeholder_in_the_path(tmp_path):
    assert (
        check(tmp_path, 'url: "https://files.example.com/v1/{{ input.path | segments }}"\n') == []
    )


@pytest.mark.parametrize(
    ("http", "where"),
    [
        ('url: "https://x.example.com/v1"\nparams: {p: "{{ input.path | segments }}"}\n', "10:"),
        ('url: "https://x.example.com/v1"\nheaders: {X-P: "{{ input.path | segments }}"}\n', "10:"),
        (
            'method: POST\nurl: "https://x.example.com/v1"\nbody: {p: "{{ input.path | segments }}"}\n',
            "11:",
        ),
    ],
)
def test_validate_says_segments_is_only_for_the_path(tmp_path, http, where):
    [problem] = check(tmp_path, http)
    assert problem.startswith(where), problem
    assert "| segments can only be used in a tool URL's path" in problem
    assert "{{ input.path | segments }}" in problem  # the hint shows where it goes
