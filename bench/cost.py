"""What prompt caching saves: one conversation through `botrunner serve`, cached and not.

A 40-turn conversation against the fake upstream, which applies the documented caching rules
(tests/fake_cache.py: writes at breakpoints above the model's minimum length, reads of the
longest live prefix within the 20-block lookback), with a 5,000-token system prompt and 20-turn
memory, for `window`, `summarize` and `full`. Each runs twice on a fresh server, store and
upstream: with the default `model.cache: auto` and with `model.cache: off`. The cost measure is
billed input tokens, input + 1.25 x cache writes + 0.1 x cache reads (5-minute writes, the
standard read price), taken from each turn's `done` usage; the ratio cached / uncached is
reported overall and for the second half (turns 21-40, where the window is full and has to drop
turns). Summary calls (`summarize`) are made in both runs and are not in a turn's usage, so they
are left out of both.

    .venv/bin/python -m bench.cost              # prints the table
    .venv/bin/python -m bench.cost --json out.json --turns 40 --strategies window,full
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import procs
from bench.peers import ROOT, VENV_PY, botrunner_cmd, wait_http_ok

MODEL = "claude-sonnet-5-5"  # 512-token minimum cacheable length (the catalogue)
TARGET_OVERALL, TARGET_SECOND_HALF = 0.20, 0.25
STRATEGIES = ("window", "summarize", "full")

BOT = """\
name: cost
model:
  name: {model}
  max_tokens: 1024
  cache: {cache}
system: |
{system}
  Today is {{{{ today }}}}.
memory:
  strategy: {strategy}
  max_turns: {max_turns}
retry:
  max_retries: 0
  timeout_seconds: 30
"""

_WORDS = [
    "explain",
    "clearly",
    "with",
    "one",
    "worked",
    "example",
    "and",
    "check",
    "the",
    "learner",
    "understood",
    "before",
    "moving",
    "on",
    "to",
    "the",
    "next",
    "idea",
    "keep",
    "answers",
    "short",
    "use",
    "plain",
    "words",
    "avoid",
    "jargon",
    "unless",
    "it",
    "is",
    "defined",
    "first",
]


def system_prompt(tokens: int) -> str:
    """About `tokens` tokens of instructions (the fake counts 4 bytes a token)."""
    lines, size, n = [], 0, 0
    while size < tokens * 4:
        line = f"  Rule {n + 1}: " + " ".join(_WORDS[(n + i) % len(_WORDS)] for i in range(12))
        lines.append(line + ".")
        size += len(line) + 2
        n += 1
    return "\n".join(lines)


def message(turn: int) -> str:
    words = " ".join(_WORDS[(turn * 7 + i) % len(_WORDS)] for i in range(24))
    return f"Question {turn}: how would you {words}?"


async def converse(port: int, turns: int, pause: float) -> list[dict[str, int]]:
    """Every turn's `done` usage, in order."""
    usages = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        for turn in range(1, turns + 1):
            response = await client.post(
                "/chat/cost", json={"message": message(turn)}, params={"user": "bench"}
            )
            response.raise_for_status()
            last = json.loads(response.text.strip().splitlines()[-1])
            if not last.get("done"):
                raise RuntimeError(f"turn {turn} failed: {last}")
            usages.append(last["usage"])
            # A user takes a moment to answer; `summarize` folds old turns meanwhile.
            await asyncio.sleep(pause)
    return usages


async def run_once(
    strategy: str, cache: str, cfg: argparse.Namespace, workdir: Path, log_dir: Path
) -> list[dict[str, int]]:
    """One conversation on a fresh upstream (an empty prompt cache), server and store."""
    tag = f"{strategy}-{cache}"
    up_port, port = procs.free_port(), procs.free_port()
    fake = ROOT / "tests" / "fake_anthropic.py"
    upstream = procs.spawn(
        f"cost-upstream-{tag}",
        [
            str(VENV_PY),
            str(fake),
            "--port",
            str(up_port),
            "--mode",
            "instant",
            "--tokens",
            f"{cfg.reply_tokens}-{cfg.reply_tokens}",
        ],  # fmt: skip
        log_dir=log_dir,
    )
    botdir = workdir / f"bots-{tag}"
    botdir.mkdir()
    (botdir / "cost.yaml").write_text(
        BOT.format(
            model=MODEL,
            cache=cache,
            system=system_prompt(cfg.system_tokens),
            strategy=strategy,
            max_turns=cfg.max_turns,
        )
    )
    server = procs.spawn(
        f"cost-serve-{tag}",
        [
            *botrunner_cmd(),
            "serve",
            str(botdir),
            "--port",
            str(port),
            "--no-reload",
            "--db",
            str(workdir / f"{tag}.db"),
            "--log",
            str(log_dir / f"cost-turns-{tag}.log"),
        ],  # fmt: skip
        env={"ANTHROPIC_BASE_URL": f"http://127.0.0.1:{up_port}", "ANTHROPIC_API_KEY": "test"},
        log_dir=log_dir,
        cwd=ROOT,
    )
    try:
        await wait_http_ok(up_port, "/health", upstream, 30)
        await wait_http_ok(port, "/readyz", server, 30)
        return await converse(port, cfg.turns, cfg.pause)
    finally:
        server.stop()
        upstream.stop()


def billed(usage: dict[str, int]) -> float:
    return (
        usage["input_tokens"]
        + 1.25 * usage.get("cache_write_tokens", 0)
        + 0.1 * usage.get("cache_read_tokens", 0)
    )


def summarize_runs(cached: list[dict[str, int]], uncached: list[dict[str, int]]) -> dict:
    half = len(cached) // 2

    def total(usages: list[dict[str, int]], key: str) -> int:
        return sum(u.get(key, 0) for u in usages)

    def ratio(a: list[dict[str, int]], b: list[dict[str, int]]) -> float:
        return round(sum(map(billed, a)) / sum(map(billed, b)), 3)

    return {
        "turns": len(cached),
        "uncached_billed_input": round(sum(map(billed, uncached))),
        "cached_billed_input": round(sum(map(billed, cached))),
        "ratio_overall": ratio(cached, uncached),
        "ratio_second_half": ratio(cached[half:], uncached[half:]),
        "cached_tokens": {
            k: total(cached, k)
            for k in ("input_tokens", "cache_write_tokens", "cache_read_tokens", "output_tokens")
        },
        "per_turn_billed": [round(billed(u)) for u in cached],
        "per_turn_uncached": [round(billed(u)) for u in uncached],
    }


async def measure(cfg: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="botrunner-cost-"))
    results: dict[str, Any] = {
        "config": {
            "turns": cfg.turns,
            "max_turns": cfg.max_turns,
            "system_tokens": cfg.system_tokens,
            "reply_tokens": cfg.reply_tokens,
            "model": MODEL,
            "billed_input": "input + 1.25 x cache writes + 0.1 x cache reads",
        },
        "strategies": {},
    }
    try:
        for strategy in cfg.strategies:
            cached = await run_once(strategy, "auto", cfg, workdir, log_dir)
            uncached = await run_once(strategy, "off", cfg, workdir, log_dir)
            results["strategies"][strategy] = summarize_runs(cached, uncached)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def render(results: dict[str, Any]) -> str:
    c = results["config"]
    lines = [
        f"{c['turns']}-turn conversation, {c['system_tokens']:,}-token system prompt, "
        f"max_turns {c['max_turns']}, {c['model']}; billed input = {c['billed_input']}.",
        "",
        "| memory | uncached billed input | cached billed input | cached / uncached "
        "| second half | cache reads | cache writes |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in results["strategies"].items():
        t = s["cached_tokens"]
        ok = s["ratio_overall"] <= TARGET_OVERALL and s["ratio_second_half"] <= TARGET_SECOND_HALF
        lines.append(
            f"| {name} | {s['uncached_billed_input']:,} | {s['cached_billed_input']:,} | "
            f"{s['ratio_overall']:.3f} | {s['ratio_second_half']:.3f} | "
            f"{t['cache_read_tokens']:,} | {t['cache_write_tokens']:,} |" + ("" if ok else " MISS")
        )
    lines.append("")
    n = c["turns"]
    lines.append(
        f"Targets: cached / uncached <= {TARGET_OVERALL} overall and <= {TARGET_SECOND_HALF} "
        f"over the second half (turns {n // 2 + 1}-{n})."
    )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.cost", description=__doc__.splitlines()[0])
    p.add_argument("--turns", type=int, default=40)
    p.add_argument("--max-turns", type=int, default=20, help="memory.max_turns")
    p.add_argument("--system-tokens", type=int, default=5000)
    p.add_argument("--reply-tokens", type=int, default=40, help="words per fake reply")
    p.add_argument("--pause", type=float, default=0.2, help="seconds between turns")
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--json", type=Path, help="also write the numbers here")
    cfg = p.parse_args(argv)
    cfg.strategies = [s for s in cfg.strategies.split(",") if s]
    return cfg


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    procs.install_cleanup()
    log_dir = ROOT / "bench" / "out" / "logs"
    started = time.perf_counter()
    try:
        results = asyncio.run(measure(cfg, log_dir))
    finally:
        procs.kill_all()
    results["duration_s"] = round(time.perf_counter() - started, 1)
    print(render(results))
    if cfg.json:
        cfg.json.parent.mkdir(parents=True, exist_ok=True)
        cfg.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
