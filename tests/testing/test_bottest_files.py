"""Test files (`*.tests.yaml`) are checked like bot files: a draft-07 schema with every field
described, unknown keys with "did you mean", every problem at file:line:col; `validate` checks
them too, and `serve` never mistakes them for bots."""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import jsonschema
import pytest
import yaml

from botrunner.botfile.livebot import LiveBots
from botrunner.botfile.schema import TESTS_SCHEMA_NAME, load_schema
from botrunner.commands import schema as schema_command
from botrunner.commands import validate
from botrunner.commands.reference import TESTS_DOC_PATH, render_tests
from botrunner.testing.loader import check_test_file

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = load_schema(TESTS_SCHEMA_NAME)
BOT = ROOT / "bots" / "weather.yaml"


def _objects(node, path="$"):
    if isinstance(node, dict):
        yield path, node
        for key, sub in node.get("properties", {}).items():
            yield from _objects(sub, f"{path}.{key}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                yield from _objects(node[key], f"{path}[{key}]")


def test_the_schema_is_draft_07_and_every_field_is_described():
    assert SCHEMA["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    count = 0
    for path, node in _objects(SCHEMA):
        for key, prop in node.get("properties", {}).items():
            assert prop.get("description"), f"{path}.{key} has no description"
            count += 1
    assert count > 30


def test_fixed_objects_reject_unknown_keys_but_allow_x_notes():
    fixed = [(p, n) for p, n in _objects(SCHEMA) if "properties" in n]
    assert len(fixed) >= 7
    for path, node in fixed:
        assert node["additionalProperties"] is False, path
        assert "^x-" in node["patternProperties"], path


def test_the_bots_test_files_are_valid_for_editors_and_for_botrunner():
    validator = jsonschema.Draft7Validator(SCHEMA)
    files = sorted((ROOT / "bots").glob("*.tests.yaml"))
    assert len(files) >= 3
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert text.startswith("# yaml-language-server: $schema=../schemas/tests.schema.json\n")
        assert list(validator.iter_errors(yaml.safe_load(text))) == [], path
        test_file, problems = check_test_file(path)
        assert problems == [] and test_file is not None


def check(tmp_path, text: str) -> list[str]:
    (tmp_path / "weather.yaml").write_text(BOT.read_text(), encoding="utf-8")
    path = tmp_path / "t.tests.yaml"
    path.write_text(text, encoding="utf-8")
    test_file, problems = check_test_file(path)
    assert test_file is None
    return [f"{p.line}:{p.column}: {p.message} | {p.hint}" for p in problems]


GOOD = """\
bot: weather.yaml
tests:
  - name: one
    turns:
      - user: hi
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            GOOD.replace("tests:", "test:"),
            ['2:1: unknown key "test" | Did you mean "tests"?'],
        ),
        (
            GOOD + "        expect: {contians: [x]}\n",
            ['6:18: unknown key "contians" in tests[0].turns[0].expect | Did you mean "contains"?'],
        ),
        (
            GOOD + "        expect: {error: too_long}\n",
            ["6:25: tests[0].turns[0].expect.error must be one of"],
        ),
        (
            GOOD.replace("weather.yaml", "wether.yaml"),
            ['1:6: the bot file "wether.yaml" does not exist'],
        ),
        (
            GOOD.replace("    turns:", "    vars: {company: Initech}\n    turns:"),
            ['4:12: the bot has no variable "company" | The bot file declares no variables.'],
        ),
        (
            GOOD.replace("    turns:", "    tools: {get_wether: {json: 1}}\n    turns:"),
            ['4:13: the bot has no tool "get_wether" | Did you mean "get_weather"?'],
        ),
        (
            GOOD + "        expect: {tool_calls: [{name: find_places}]}\n",
            ['6:38: the bot has no tool "find_places" | Did you mean "find_place"?'],
        ),
        (
            GOOD + '        expect: {matches: "C+("}\n',
            ["6:30: this regular expression does not compile: missing ), unterminated subpattern"],
        ),
        (
            GOOD + GOOD.split("tests:\n")[1],
            ['6:11: a test named "one" is already on line 3'],
        ),
        (
            GOOD.replace("    turns:", "    now: next tuesday\n    turns:"),
            ['4:10: "next tuesday" is not a date and time botrunner can read'],
        ),
        (
            GOOD.replace("    turns:", "    tools: {find_place: {json: 1, body: x}}\n    turns:"),
            ["4:35: a canned response has either json: or body:, not both"],
        ),
        (GOOD.replace("      - user: hi\n", ""), ["4:11: tests[0].turns has no value"]),
        ("", ["1:1: the file is empty | A test file needs bot: and tests:. See docs/testing.md."]),
        (
            "- a list\n",
            ["1:1: a test file must be a mapping of key: value lines (bot:, tests: ...)"],
        ),
    ],
)
def test_a_broken_test_file_is_reported_at_its_place(tmp_path, text, expected):
    found = check(tmp_path, text)
    assert len(found) == len(expected), found
    for got, want in zip(found, expected, strict=True):
        assert got.startswith(want), (got, want)


def test_a_bot_file_with_errors_is_named_with_the_way_to_fix_it(tmp_path):
    (tmp_path / "weather.yaml").write_text(BOT.read_text().replace("system:", "sytem:"), "utf-8")
    path = tmp_path / "t.tests.yaml"
    path.write_text(GOOD, encoding="utf-8")
    _, problems = check_test_file(path)
    assert [(p.line, p.column) for p in problems] == [(1, 6)]
    assert problems[0].message == f"the bot file {tmp_path / 'weather.yaml'} has 1 error"
    assert (
        problems[0].hint
        == f"Run botrunner validate {tmp_path / 'weather.yaml'} and fix them first."
    )


def test_validate_checks_test_files_too(tmp_path):
    out = io.StringIO()
    assert validate.run([str(ROOT / "bots")], out=out, err=io.StringIO()) == 0
    assert "8 files checked: all valid" in out.getvalue()  # 4 bots, 4 test files

    (tmp_path / "weather.yaml").write_text(BOT.read_text(), encoding="utf-8")
    (tmp_path / "weather.tests.yaml").write_text(GOOD.replace("name:", "nmae:"), "utf-8")
    out = io.StringIO()
    assert validate.run([str(tmp_path)], out=out, err=io.StringIO()) == 1
    assert f'{tmp_path / "weather.tests.yaml"}:3:5: error: unknown key "nmae"' in out.getvalue()
    assert "2 files checked, 1 failed" in out.getvalue()


def test_serving_a_folder_never_loads_its_test_files_as_bots():
    live = LiveBots(ROOT / "bots")
    assert live.load_all() == []
    assert sorted(live.bots) == ["local", "support", "tutor", "weather"]
    assert all(not path.name.endswith(".tests.yaml") for path in live.files())


def test_botrunner_schema_tests_prints_the_test_file_schema():
    out = io.StringIO()
    assert schema_command.run(tests=True, out=out) == 0
    assert out.getvalue() == (ROOT / "schemas" / "tests.schema.json").read_text(encoding="utf-8")


def test_expect_error_names_every_code_a_turn_can_end_with():
    """`expect.error` lists the codes of the engine and the providers: a new one added there
    must be testable (and a typo in a test file gets "did you mean")."""
    enum = SCHEMA["properties"]["tests"]["items"]["properties"]["turns"]["items"]
    codes = set(enum["properties"]["expect"]["properties"]["error"]["enum"])
    found = set()
    for path in (ROOT / "botrunner").rglob("*.py"):
        source = path.read_text(encoding="utf-8")
        found |= set(re.findall(r'\b(?:ProviderError|InputError|Error)\(\s*"([a-z_]+)"', source))
    found -= {"stale"}  # a replay's own refusal, reported as the test's status
    assert found and found <= codes, sorted(found - codes)


def test_the_test_file_reference_is_generated_from_the_schema():
    assert TESTS_DOC_PATH == ROOT / "docs" / "tests-reference.md"
    assert TESTS_DOC_PATH.read_text(encoding="utf-8") == render_tests(), (
        "docs/tests-reference.md is out of date: run python -m botrunner.commands.reference"
    )
    text = render_tests()
    for path, node in _objects(SCHEMA):
        for key in node.get("properties", {}):
            assert f"| `{key}`" in text, f"{path}.{key}"
    assert "## `tests[].tools.<name>`" in text


def test_the_examples_in_the_docs_are_valid_test_files(tmp_path):
    blocks = []
    for doc in ("docs/testing.md", "README.md"):
        text = (ROOT / doc).read_text(encoding="utf-8")
        pattern = r"```yaml\n(# yaml-language-server: \$schema=\.\./schemas/tests.*?)```"
        blocks += re.findall(pattern, text, re.S)
    assert len(blocks) >= 3
    for n, block in enumerate(blocks):
        shutil.copytree(ROOT / "bots", tmp_path / f"bots{n}")
        path = tmp_path / f"bots{n}" / "doc.tests.yaml"
        path.write_text(block, encoding="utf-8")
        test_file, problems = check_test_file(path)
        assert problems == [] and test_file is not None, problems
