"""The README is for users: its example bot must stay valid as the format changes."""

from __future__ import annotations

import re
from pathlib import Path

from botrunner.botfile.loader import check_file

ROOT = Path(__file__).resolve().parent.parent


def test_readme_first_bot_is_valid(tmp_path):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(# yaml-language-server.*?\nname:.*?)```", readme, re.S)
    assert blocks, "the README shows no example bot"
    for n, block in enumerate(blocks):
        path = tmp_path / f"readme{n}.yaml"
        path.write_text(block, encoding="utf-8")
        bot, problems = check_file(path)
        assert problems == [] and bot is not None


def test_readme_opens_with_the_two_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first_block = readme.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()]
    assert commands == ["make serve", "make test"]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "botrunner serve $(BOT)" in makefile and "BOT ?= bots/tutor.yaml" in makefile
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
