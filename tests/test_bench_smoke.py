"""Smoke test for bench/: the harness still runs on a tiny workload. No timing assertions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_quick_runs_and_writes_results(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.harness",
            "--quick",
            "--force",
            "--no-chart",
            "--peers",
            "direct,baseline",
            "--sections",
            "latency,throughput",
            "--out",
            str(tmp_path),
        ],  # fmt: skip
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    for key in ("meta", "config", "peers", "latency", "throughput", "resources", "upstream",
                "ratios", "targets"):  # fmt: skip
        assert key in results, key
    assert set(results["peers"]) == {"direct", "baseline"}
    for name in ("direct", "baseline"):
        assert results["peers"][name]["status"] == "ok", results["peers"][name]
        assert {"ttft_ms", "total_ms", "samples", "errors"} <= set(results["latency"][name])
        tput = results["throughput"][name]
        assert {"c4_stream", "c4_nonstream"} <= set(tput)
        assert {"turns_per_s", "errors", "cpu_ms_per_turn"} <= set(tput["c4_stream"])
    assert "added_ttft_ms" in results["latency"]["baseline"]
    assert (tmp_path / "results.md").read_text().startswith("# Benchmark results")


def test_bench_quick_runs_botrunner_on_an_openai_compatible_upstream(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.harness",
            "--quick",
            "--force",
            "--no-chart",
            "--peers",
            "botrunner-local",
            "--sections",
            "latency,throughput",
            "--out",
            str(tmp_path),
        ],  # fmt: skip
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["peers"]["botrunner-local"]["status"] == "ok", results["peers"]
    assert results["upstream"]["instant_openai"]["impl"] == "tests/fake_openai.py"
    assert results["upstream"]["paced"]["impl"] == "tests/fake_openai.py"
    for key in ("c4_stream", "c4_nonstream"):
        run = results["throughput"]["botrunner-local"][key]
        assert run["errors"] == 0 and run["turns_per_s"] > 0


def test_bench_cost_runs_and_caching_saves(tmp_path: Path) -> None:
    """bench/cost.py end to end on a tiny conversation (no timing, no targets): after the
    first turn every cached turn bills less input than the same turn uncached."""
    out = tmp_path / "cost.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.cost",
            "--turns",
            "6",
            "--max-turns",
            "4",
            "--system-tokens",
            "800",
            "--strategies",
            "window",
            "--pause",
            "0.05",
            "--json",
            str(out),
        ],  # fmt: skip
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    window = json.loads(out.read_text())["strategies"]["window"]
    assert window["turns"] == 6
    cached, uncached = window["per_turn_billed"], window["per_turn_uncached"]
    assert all(c < u for c, u in zip(cached[1:], uncached[1:], strict=True))
    assert window["cached_tokens"]["cache_read_tokens"] > 0
