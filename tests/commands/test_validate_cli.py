"""`botrunner validate` and `botrunner schema` as a user runs them: output and exit codes."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from botrunner.cli import main

ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
name: tutor
model:
  name: claude-sonnet-4-6
system: You are a tutor.
"""
BAD = GOOD.replace("system:", "sytem:")
WARN = GOOD + "greeting: no\n"
SECRET = (
    GOOD
    + """\
tools:
  - name: t
    description: d
    http:
      url: https://api.example.com/x
      headers:
        Authorization: Bearer ${BOTRUNNER_TEST_TOKEN}
"""
)


def run(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["botrunner", *args])
    with pytest.raises(SystemExit) as info:
        main()
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BOTRUNNER_TEST_TOKEN", raising=False)
    for name, text in {
        "good.yaml": GOOD,
        "bad.yaml": BAD,
        "warn.yaml": WARN,
        "secret.yaml": SECRET,
    }.items():
        Path(name).write_text(text, encoding="utf-8")
    return tmp_path


def test_valid_file_exits_0(files, monkeypatch, capsys):
    code, out, err = run(monkeypatch, capsys, "validate", "good.yaml")
    assert (code, out, err) == (0, "1 file checked: all valid\n", "")


def test_text_format(files, monkeypatch, capsys):
    code, out, _ = run(monkeypatch, capsys, "validate", "bad.yaml", "good.yaml")
    assert code == 1
    assert out == (
        'bad.yaml:4:1: error: unknown key "sytem"\n'
        '    hint: Did you mean "system"?\n'
        "2 files checked, 1 failed: 1 error\n"
    )


def test_warnings_alone_exit_0(files, monkeypatch, capsys):
    code, out, _ = run(monkeypatch, capsys, "validate", "warn.yaml")
    assert code == 0
    assert out.startswith('warn.yaml:5:11: warning: YAML reads "no" as the boolean false')
    assert out.endswith("1 file checked, 0 failed: 1 warning\n")


def test_json_format(files, monkeypatch, capsys):
    code, out, err = run(
        monkeypatch, capsys, "validate", "--format", "json", "bad.yaml", "warn.yaml"
    )
    assert code == 1
    assert json.loads(out) == [
        {
            "file": "bad.yaml",
            "line": 4,
            "column": 1,
            "severity": "error",
            "message": 'unknown key "sytem"',
            "hint": 'Did you mean "system"?',
        },
        {
            "file": "warn.yaml",
            "line": 5,
            "column": 11,
            "severity": "warning",
            "message": 'YAML reads "no" as the boolean false; botrunner uses the text "no" here',
            "hint": 'Put it in quotes ("no") so every tool reads it the same way.',
        },
    ]
    assert err == "2 files checked, 1 failed: 1 error, 1 warning\n"


def test_json_format_when_all_valid(files, monkeypatch, capsys):
    code, out, _ = run(monkeypatch, capsys, "validate", "--format=json", "good.yaml")
    assert (code, json.loads(out)) == (0, [])


def test_github_format(files, monkeypatch, capsys):
    code, out, _ = run(
        monkeypatch, capsys, "validate", "--format", "github", "bad.yaml", "warn.yaml"
    )
    assert code == 1
    assert out == (
        '::error file=bad.yaml,line=4,col=1::unknown key "sytem"%0Ahint: Did you mean "system"?\n'
        '::warning file=warn.yaml,line=5,col=11::YAML reads "no" as the boolean false; '
        'botrunner uses the text "no" here%0Ahint: Put it in quotes ("no") so every tool reads '
        "it the same way.\n"
    )


def test_github_format_escapes_properties_and_data():
    from botrunner.botfile.problems import Problem, format_github

    problem = Problem("a,b:c.yaml", 1, 2, "error", "100% wrong\nreally", "")
    assert format_github([problem]) == (
        "::error file=a%2Cb%3Ac.yaml,line=1,col=2::100%25 wrong%0Areally\n"
    )


def test_no_such_path_exits_2(files, monkeypatch, capsys):
    code, out, err = run(monkeypatch, capsys, "validate", "good.yaml", "nope.yaml")
    assert code == 2
    assert out == ""
    assert err == "botrunner validate: error: no such file or directory: nope.yaml\n"


def test_bad_option_exits_2(files, monkeypatch, capsys):
    code, _, err = run(monkeypatch, capsys, "validate", "--format", "xml", "good.yaml")
    assert code == 2
    assert "Invalid value for '--format': 'xml' is not one of 'text', 'json', 'github'" in err
    code, _, err = run(monkeypatch, capsys, "validate", "--frmat", "json", "good.yaml")
    assert code == 2
    assert "No such option '--frmat'" in err


def test_no_path_exits_2(files, monkeypatch, capsys):
    code, _, err = run(monkeypatch, capsys, "validate")
    assert code == 2
    assert "Missing argument 'PATH...'" in err


def test_directories_are_searched_recursively(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bots" / "team").mkdir(parents=True)
    (tmp_path / "bots" / ".hidden").mkdir()
    (tmp_path / "bots" / "a.yaml").write_text(GOOD)
    (tmp_path / "bots" / "team" / "b.yml").write_text(BAD)
    (tmp_path / "bots" / "notes.txt").write_text("not a bot")
    (tmp_path / "bots" / ".hidden" / "c.yaml").write_text(BAD)
    code, out, _ = run(monkeypatch, capsys, "validate", "--format", "json", "bots")
    assert code == 1
    assert [p["file"] for p in json.loads(out)] == ["bots/team/b.yml"]
    code, out, _ = run(monkeypatch, capsys, "validate", "bots/", "bots/a.yaml")
    assert out.endswith("2 files checked, 1 failed: 1 error\n")  # each file once


def test_empty_directory_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    code, _, err = run(monkeypatch, capsys, "validate", "empty")
    assert code == 2
    assert err == "botrunner validate: error: no bot files (*.yaml, *.yml) found\n"


def test_globs(files, monkeypatch, capsys):
    code, out, _ = run(monkeypatch, capsys, "validate", "g*.yaml", "w*.yaml")
    assert code == 0
    assert out.endswith("2 files checked, 0 failed: 1 warning\n")
    code, _, err = run(monkeypatch, capsys, "validate", "zz*.yaml")
    assert code == 2
    assert err == "botrunner validate: error: no bot files match zz*.yaml\n"


def test_strict_reports_unset_variables_by_name(files, monkeypatch, capsys):
    code, out, _ = run(monkeypatch, capsys, "validate", "secret.yaml")
    assert (code, out) == (0, "1 file checked: all valid\n")
    code, out, _ = run(monkeypatch, capsys, "validate", "--strict", "secret.yaml")
    assert code == 1
    assert out.startswith(
        "secret.yaml:11:31: error: the environment variable BOTRUNNER_TEST_TOKEN is not set\n"
    )
    monkeypatch.setenv("BOTRUNNER_TEST_TOKEN", "tok-very-secret")
    code, out, _ = run(monkeypatch, capsys, "validate", "--strict", "secret.yaml")
    assert (code, out) == (0, "1 file checked: all valid\n")
    assert "tok-very-secret" not in out


def test_strict_fails_on_warnings(files, monkeypatch, capsys):
    code, out, _ = run(monkeypatch, capsys, "validate", "--strict", "warn.yaml")
    assert code == 1
    assert out.endswith("1 file checked, 1 failed: 1 warning\n")


def test_schema_command_prints_the_schema(monkeypatch, capsys):
    code, out, _ = run(monkeypatch, capsys, "schema")
    assert code == 0
    assert out == (ROOT / "schemas" / "bot.schema.json").read_text(encoding="utf-8")
    json.loads(out)


def test_schema_markdown_matches_the_docs(monkeypatch, capsys):
    code, out, _ = run(monkeypatch, capsys, "schema", "--markdown")
    assert code == 0
    assert out == (ROOT / "docs" / "bot-reference.md").read_text(encoding="utf-8")


def test_python_m_botrunner_validate_bots_exits_0():
    result = subprocess.run(
        [sys.executable, "-m", "botrunner", "validate", "bots/"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.endswith("files checked: all valid\n")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("huge_constant", "the power 7 ** 999999 would have more than 4000 digits"),
        ("huge_number_literal", "a number in this template has more than 4000 digits"),
        ("deep_nesting", "the values here are nested more than 64 levels deep"),
    ],
)
def test_files_that_used_to_crash_validate_are_reported_problems(name, message):
    result = subprocess.run(
        [sys.executable, "-m", "botrunner", "validate", f"tests/broken/{name}.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert (result.returncode, result.stderr) == (1, "")
    assert result.stdout.startswith(f"tests/broken/{name}.yaml:")
    assert message in result.stdout
    assert result.stdout.endswith("1 file checked, 1 failed: 1 error\n")


def test_validate_checks_many_files_in_one_run(tmp_path):
    # Speed is measured in bench/ (validate-1000), never asserted here: this checks the
    # many-files path itself (one process, every file reported valid).
    from botrunner.commands.validate import run as validate

    source = (ROOT / "bots" / "weather.yaml").read_text(encoding="utf-8")
    for i in range(50):
        (tmp_path / f"bot{i}.yaml").write_text(source.replace("weather", f"weather{i}"))
    out = io.StringIO()
    assert validate([str(tmp_path)], out=out, err=_Null()) == 0
    assert out.getvalue().endswith("50 files checked: all valid\n")


class _Null:
    def write(self, text: str) -> int:
        return len(text)


def test_pre_commit_hook_definition():
    import yaml

    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    (hook,) = hooks
    assert hook["id"] == "botrunner-validate"
    assert hook["entry"] == "botrunner validate"
    assert hook["language"] == "python"
    assert hook["files"] == r"^bots/.*\.ya?ml$"
