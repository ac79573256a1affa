"""The second round of authoring checks through `botrunner validate`, in every output format:
the model catalogue, tools' input_schema, header names and exact template positions."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from botrunner.cli import main

BROKEN = Path(__file__).resolve().parents[1] / "broken"


def run(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["botrunner", *args])
    with pytest.raises(SystemExit) as info:
        main()
    return info.value.code, capsys.readouterr().out


@pytest.fixture
def bots(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("misspelt_model", "max_tokens_too_high", "header_name_template"):
        shutil.copy(BROKEN / f"{name}.yaml", tmp_path / f"{name}.yaml")
    return tmp_path


def test_a_misspelt_model_is_a_warning_that_strict_fails(bots, monkeypatch, capsys):
    assert run(monkeypatch, capsys, "validate", "misspelt_model.yaml")[0] == 0
    code, out = run(monkeypatch, capsys, "validate", "--strict", "misspelt_model.yaml")
    assert code == 1
    assert out.startswith(
        'misspelt_model.yaml:3:9: warning: "claude-sonet-4-6" is not a model botrunner knows\n'
        '    hint: Did you mean "claude-sonnet-4-6"?'
    )


def test_json_names_line_column_and_hint(bots, monkeypatch, capsys):
    code, out = run(monkeypatch, capsys, "validate", "--format", "json", "max_tokens_too_high.yaml")
    assert code == 1
    assert json.loads(out) == [
        {
            "file": "max_tokens_too_high.yaml",
            "line": 4,
            "column": 15,
            "severity": "error",
            "message": "model.max_tokens is 100000, above the most claude-haiku-4-5 can write "
            "(64000 tokens)",
            "hint": "Use max_tokens: 64000 or less.",
        }
    ]


def test_github_annotations_for_header_names(bots, monkeypatch, capsys):
    code, out = run(
        monkeypatch, capsys, "validate", "--format", "github", "header_name_template.yaml"
    )
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith(
        "::error file=header_name_template.yaml,line=15,col=10::the header name "
        '"{{ input.city }}" is a template; header names are sent as written%0Ahint: '
    )
    assert lines[1].startswith("::error file=header_name_template.yaml,line=16,col=10::")


def test_a_known_model_within_its_limit_has_no_warning(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("ok.yaml").write_text(
        "name: ok\nmodel:\n  name: claude-haiku-4-5\n  max_tokens: 64000\nsystem: Hi.\n",
        encoding="utf-8",
    )
    assert run(monkeypatch, capsys, "validate", "--strict", "ok.yaml") == (
        0,
        "1 file checked: all valid\n",
    )


def test_an_unknown_model_far_from_any_known_one_still_warns(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("new.yaml").write_text(
        "name: new\nmodel:\n  name: claude-nova-9\nsystem: Hi.\n", encoding="utf-8"
    )
    code, out = run(monkeypatch, capsys, "validate", "new.yaml")
    assert code == 0
    assert out.startswith(
        'new.yaml:3:9: warning: "claude-nova-9" is not in botrunner\'s model catalogue\n'
    )


def test_the_reference_lists_every_catalogue_model_with_its_limits():
    from botrunner.commands.reference import render
    from botrunner.providers.catalogue import catalogue

    text = render()
    for model in catalogue().models:
        row = next(line for line in text.splitlines() if line.startswith(f"| `{model.id}` |"))
        assert f"| {model.max_output_tokens:,} |" in row
