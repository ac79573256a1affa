"""Files real authors write stay valid: Windows line endings with a BOM, flow style, YAML
anchors and merge keys under x- notes, any language, very long prompts."""

from __future__ import annotations

from pathlib import Path

from botrunner.botfile.loader import check_file

BOT = """\
name: tutor
model:
  name: claude-sonnet-4-6
  max_tokens: 1024
system: |
  You are a tutor for {{ subject }}.
variables:
  subject: maths
"""


def problems_in(tmp_path: Path, text: str, *, raw: bytes | None = None) -> list[str]:
    path = tmp_path / "bot.yaml"
    path.write_bytes(raw if raw is not None else text.encode("utf-8"))
    bot, problems = check_file(path, strict=True, env={})
    shown = [f"{p.line}:{p.column}: {p.message}" for p in problems]
    assert bot is not None or shown
    return shown


def test_crlf_line_endings_with_a_bom(tmp_path):
    raw = b"\xef\xbb\xbf" + BOT.replace("\n", "\r\n").encode("utf-8")
    assert problems_in(tmp_path, "", raw=raw) == []
    path = tmp_path / "bot.yaml"
    bot, _ = check_file(path, env={})
    assert bot.system.render({"subject": "maths"}) == "You are a tutor for maths.\n"


def test_flow_style_mappings_and_lists(tmp_path):
    text = (
        "{name: tutor, model: {name: claude-sonnet-4-6, max_tokens: 512},"
        ' system: "Be brief.", memory: {strategy: window, max_turns: 4},'
        " limits: {per_user: {requests_per_minute: 5}}}\n"
    )
    assert problems_in(tmp_path, text) == []


def test_anchors_and_merge_keys_under_x_notes(tmp_path):
    text = BOT + (
        "x-defaults: &limits\n"
        "  max_message_chars: 1000\n"
        "limits:\n"
        "  <<: *limits\n"
        "  per_user: {requests_per_minute: 5}\n"
    )
    assert problems_in(tmp_path, text) == []
    bot, _ = check_file(tmp_path / "bot.yaml", env={})
    assert bot.limits.max_message_chars == 1000


def test_unicode_everywhere(tmp_path):
    text = BOT.replace("You are a tutor", "Tu es un tuteur 😊 für Mathé — 数学") + (
        "greeting: ¡Hola! Привет! こんにちは\n"
    )
    assert problems_in(tmp_path, text) == []


def test_a_very_long_system_prompt(tmp_path):
    long = "".join(
        f"  Rule {n}: answer in full sentences about {{{{ subject }}}}.\n" for n in range(4000)
    )
    text = BOT.replace("  You are a tutor for {{ subject }}.\n", long)
    assert len(text) > 200_000
    assert problems_in(tmp_path, text) == []
