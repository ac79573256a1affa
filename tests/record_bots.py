"""Record the cassettes of the bots in bots/ against the project's fake upstreams
(`fake_anthropic.py`, and `fake_openai.py` standing in for Ollama for bots/local.yaml, both in
script mode, answering by the rules in `bots_upstream.json`).

After editing a bot in bots/ or its tests, re-record and commit the cassettes:

    .venv/bin/python tests/record_bots.py          # rewrites bots/*.tests.cassette.json
    .venv/bin/python tests/record_bots.py DIR      # records the test files in DIR instead

`tests/test_bottest_bots.py` checks that the committed cassettes are what this gives.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from fake_anthropic import Auto, FakeAnthropic, load_script  # noqa: E402
from fake_openai import FakeOpenAI  # noqa: E402

RULES = HERE / "bots_upstream.json"
BOTS = HERE.parent / "bots"


def record(directory: Path = BOTS) -> subprocess.CompletedProcess[str]:
    """`botrunner test DIRECTORY --record` against scripted fake upstreams."""
    script = load_script(str(RULES))
    upstream = FakeAnthropic(default=Auto(mode="script", script=script)).start()
    local = FakeOpenAI(default=Auto(mode="script", script=script)).start()
    try:
        env = {
            **os.environ,
            "ANTHROPIC_BASE_URL": upstream.url,
            "ANTHROPIC_API_KEY": "sk-fake-recording-key",
            "OLLAMA_BASE_URL": local.url,  # bots/local.yaml's model server
        }
        return subprocess.run(
            [sys.executable, "-m", "botrunner", "test", str(directory), "--record"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        upstream.stop()
        local.stop()


if __name__ == "__main__":
    result = record(Path(sys.argv[1]) if len(sys.argv) > 1 else BOTS)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    sys.exit(result.returncode)
