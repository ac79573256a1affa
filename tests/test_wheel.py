"""The schema and the model catalogue ship inside the wheel and are found there, without the
checkout."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_contains_the_schema_and_it_loads(tmp_path):
    from hatchling.builders.wheel import WheelBuilder

    builder = WheelBuilder(str(ROOT))
    (wheel,) = builder.build(directory=str(tmp_path / "dist"), versions=["standard"])
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        assert "botrunner/bot.schema.json" in names
        assert "botrunner/tests.schema.json" in names  # `botrunner test` checks test files
        # `botrunner new` writes its starters from package data.
        assert {"tutor", "support", "tool"} <= {
            Path(n).stem for n in names if n.startswith("botrunner/commands/starters/")
        }
        packaged = archive.read("botrunner/bot.schema.json").decode("utf-8")
        packaged_tests = archive.read("botrunner/tests.schema.json").decode("utf-8")
        archive.extractall(tmp_path / "site")
    assert packaged == (ROOT / "schemas" / "bot.schema.json").read_text(encoding="utf-8")
    assert packaged_tests == (ROOT / "schemas" / "tests.schema.json").read_text(encoding="utf-8")
    assert any(name.endswith("entry_points.txt") for name in names)
    assert "botrunner/providers/models.json" in names

    bot = tmp_path / "bot.yaml"
    bot.write_text("name: t\nmodel: {name: m}\nsytem: hi\n", encoding="utf-8")
    code = (
        "import sys, botrunner.botfile.schema as s, botrunner.botfile.loader as l; "
        "print(s.schema_path()); print(s.load_schema()['title']); "
        "print(l.check_file(sys.argv[1], env={})[1][0].message); "
        "from botrunner.providers import catalogue as c; "
        "print(c.find_model('claude-haiku-4-5').id); "
        "print(s.schema_path('tests.schema.json'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(bot)],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    location, title, message, haiku, tests_location = result.stdout.splitlines()
    assert Path(tests_location) == tmp_path / "site" / "botrunner" / "tests.schema.json"
    assert haiku == "claude-haiku-4-5-20251001"  # the catalogue is read from the wheel
    assert Path(location) == tmp_path / "site" / "botrunner" / "bot.schema.json"
    assert title == json.loads(packaged)["title"]
    assert message == 'unknown key "sytem"'


def test_checkout_falls_back_to_the_schemas_folder():
    from botrunner.botfile.schema import schema_path

    path = schema_path()
    assert path.name == "bot.schema.json"
    assert path.read_bytes() == (ROOT / "schemas" / "bot.schema.json").read_bytes()
