"""A template problem is reported where the author sees it: the file line inside any YAML
scalar style (literal, folded, plain, quoted), at the column of the offending character."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from botrunner.botfile.loader import check_file

HEAD = "name: tutor\nmodel:\n  name: claude-sonnet-4-6\nvariables:\n  company: Acme\n"


def first_problem(tmp_path: Path, body: str, newline: str = "\n", bom: bool = False) -> str:
    text = HEAD + textwrap.dedent(body)
    data = ("\ufeff" if bom else "") + text.replace("\n", newline)
    path = tmp_path / "bot.yaml"
    path.write_bytes(data.encode("utf-8"))
    _, problems = check_file(path, env={})
    assert problems, "expected a problem"
    p = problems[0]
    return f"{p.line}:{p.column}: {p.message}"


@pytest.mark.parametrize(
    "body",
    [
        # literal block: the file's lines are the template's lines
        "system: |\n  You work for {{ company }}.\n  Be kind.\n  Hi {{ user.name }.\n",
        # folded block: lines are joined with spaces in the value
        "system: >\n  You work for {{ company }}.\n  Be kind.\n  Hi {{ user.name }.\n",
        # plain multi-line scalar: folded too, and continuation lines may be indented more
        "system: You work for {{ company }}.\n  Be kind.\n      Hi {{ user.name }.\n",
        # double-quoted multi-line scalar
        'system: "You work for {{ company }}.\n  Be kind.\n  Hi {{ user.name }."\n',
        # single-quoted, with an escaped quote before the error
        "system: 'You''re with {{ company }}.\n  Be kind.\n  Hi {{ user.name }.'\n",
    ],
    ids=["literal", "folded", "plain", "double-quoted", "single-quoted"],
)
def test_a_syntax_error_is_at_the_offending_brace_in_every_style(tmp_path, body):
    where = first_problem(tmp_path, body)
    lines = (HEAD + textwrap.dedent(body)).splitlines()
    row = next(i for i, text in enumerate(lines) if "name }." in text)
    col = lines[row].index("name }.") + 6
    assert where == f"{row + 1}:{col}: system: template syntax error: unexpected '}}'"


@pytest.mark.parametrize("style", ["|", ">", ""])
def test_an_undefined_name_is_at_its_own_line_and_column(tmp_path, style):
    indicator = f" {style}\n  " if style else " "
    body = f"system:{indicator}One {{{{ company }}}} and\n  two, then\n    three {{{{ nope }}}}.\n"
    where = first_problem(tmp_path, body)
    lines = (HEAD + body).splitlines()
    row = next(i for i, text in enumerate(lines) if "nope" in text)
    assert where == f'{row + 1}:{lines[row].index("nope") + 1}: undefined variable "nope" in system'


def test_positions_hold_with_crlf_line_endings_and_a_bom(tmp_path):
    body = "system: >\n  You work for {{ company }}.\n  Hi {{ user.name }.\n"
    assert first_problem(tmp_path, body, newline="\r\n", bom=True) == (
        "8:19: system: template syntax error: unexpected '}'"
    )


def test_an_unknown_tag_points_at_the_tag_name(tmp_path):
    body = "system: |\n  {% if user.name %}\n  Hi\n  {% endfi %}\n"
    assert first_problem(tmp_path, body).startswith(
        "9:6: system: template syntax error: Encountered unknown tag 'endfi'"
    )


def test_an_unfinished_tag_points_at_the_end_of_the_template(tmp_path):
    assert first_problem(tmp_path, 'system: "Hi {{ user.name"\n') == (
        "6:25: system: template syntax error: unexpected end of template, expected "
        "'end of print statement'."
    )
