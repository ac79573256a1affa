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
