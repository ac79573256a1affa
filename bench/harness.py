"""botrunner's benchmark harness: one unattended run, every peer side by side, same upstream.

    .venv/bin/python -m bench.harness [--quick] [--force] [--peers direct,botrunner,...]

See bench/README.md for the method. Writes results.json, results.md and results.png to --out
(default docs/benchmarks/).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import procs
from bench.client import Conn, HttpTarget, HttpWorker, Turn
from bench.peers import (
    ROOT,
    VENV_PY,
    BotrunnerPeer,
    Peer,
    PeerUnavailable,
    bot_yaml,
    botrunner_cmd,
    make_peers,
    wait_http_ok,
)

ALL_PEERS = [
    "direct",
    "direct-http",
    "botrunner",
    "botrunner-postgres",
    "botrunner-postgres-w2",
    "baseline",
    "litellm",
]
ALL_SECTIONS = ["latency", "throughput", "history", "tool", "validate", "reload", "cost"]
MESSAGE = "Explain gradient descent in two sentences."


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- statistics --------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float | None:
    """Percentile with linear interpolation (q in 0..100)."""
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def med(values: list[float | None]) -> float | None:
    vals = [x for x in values if x is not None]
    return statistics.median(vals) if vals else None


def r(x: float | None, nd: int = 2) -> float | None:
    return None if x is None else round(x, nd)


# -- load check --------------------------------------------------------------------------------


def busy_fraction(seconds: float = 1.5) -> float:
    """Fraction of all CPUs busy over a short window, from /proc/stat."""

    def snap():
        f = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        vals = list(map(int, f))
        idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
        return sum(vals), idle

    t1, i1 = snap()
    time.sleep(seconds)
    t2, i2 = snap()
    return 0.0 if t2 == t1 else 1.0 - (i2 - i1) / (t2 - t1)


def check_load(force: bool) -> dict:
    ncpu = procs.cpu_count()
    la = procs.loadavg()
    busy = busy_fraction(3.0)
    info = {"loadavg": la, "cpus": ncpu, "busy_fraction": round(busy, 3)}
    problems = []
    # Refuse on what the CPUs are doing now; the load average lags by minutes, so it only warns.
    if busy > 0.5:
        problems.append(f"{busy:.0%} of the CPUs were busy over the last 3 s")
    if problems:
        msg = "machine is loaded: " + "; ".join(problems)
        if not force:
            log(msg + ". Refusing to run (numbers would be noise). Use --force to run anyway.")
            sys.exit(3)
        log("WARNING: " + msg + " (--force: running anyway; results are flagged)")
        info["forced_while_loaded"] = True
    elif busy > 0.15 or la[0] > 0.5 * ncpu:
        log(f"warning: some background load (busy {busy:.0%}, loadavg {la[0]:.2f})")
        info["background_load_warning"] = True
    return info


# -- upstream ----------------------------------------------------------------------------------


class Upstream:
    def __init__(self, proc: procs.Proc, port: int, impl: str, mode: str) -> None:
        self.proc, self.port, self.impl, self.mode = proc, port, impl, mode
        self.url = f"http://127.0.0.1:{port}"
        self.max_cpu_pct = 0.0  # of one core, over any measured run of a server peer
        self.ceiling_cpu_pct = 0.0  # during the direct-http (rig ceiling) runs


# The fake upstream of each API a peer may talk to, and the request that probes it.
UPSTREAM_IMPLS = {"anthropic": "tests/fake_anthropic.py", "openai": "tests/fake_openai.py"}
_PROBE_PATHS = {"anthropic": "/v1/messages", "openai": "/v1/chat/completions"}


async def _probe_upstream(port: int, proc: procs.Proc, api: str = "anthropic") -> None:
    deadline = time.perf_counter() + 15
    body = json.dumps(
        {"model": "probe", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    ).encode()
    hdrs = {"content-type": "application/json", "x-api-key": "test",
            "anthropic-version": "2023-06-01"}  # fmt: skip
    last = ""
    while time.perf_counter() < deadline:
        if not proc.alive():
            raise PeerUnavailable(f"exited: {proc.log_tail()}")
        conn = Conn("127.0.0.1", port)
        try:
            status, resp, _, _ = await asyncio.wait_for(
                conn.request("POST", _PROBE_PATHS[api], body, hdrs), 5
            )
            if status == 200:
                return
            last = f"HTTP {status} {resp[:200]!r}"
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            last = type(exc).__name__
        finally:
            await conn.close()
        await asyncio.sleep(0.05)
    raise PeerUnavailable(f"upstream probe failed: {last}\n{proc.log_tail()}")


async def start_upstream(
    mode: str,
    cfg: argparse.Namespace,
    log_dir: Path,
    notes: list[str],
    *,
    echo_system: bool = False,
    suffix: str = "",
    api: str = "anthropic",
) -> Upstream:
    """The project's fake server for `api` (tests/fake_anthropic.py, or tests/fake_openai.py
    for Chat Completions) as its own process."""
    paced = ["--ttft-ms", str(cfg.ttft_ms), "--tokens", cfg.tokens, "--token-ms", cfg.token_ms]
    extra = ["--tool-calls"] if mode == "instant" else []
    if echo_system:
        extra.append("--echo-system")
    impl = UPSTREAM_IMPLS[api]
    port = procs.free_port()
    name = f"upstream-{mode}{'-echo' if echo_system else ''}{'-' + suffix if suffix else ''}"
    name += "" if api == "anthropic" else f"-{api}"
    proc = procs.spawn(
        name,
        [str(VENV_PY), str(ROOT / impl), "--port", str(port), "--mode", mode, *paced, *extra],
        log_dir=log_dir,
    )
    try:
        await _probe_upstream(port, proc, api)
    except PeerUnavailable as exc:
        proc.stop()
        notes.append(f"upstream {impl} ({mode}) unusable: {exc}")
        log(notes[-1])
        raise SystemExit("no usable fake upstream") from exc
    return Upstream(proc, port, impl, mode)


# -- measurement -------------------------------------------------------------------------------


FOREIGN: list[float] = []  # foreign CPU (cores) during each measured run


class Meter:
    """CPU of the process under test, the upstream and this client over one run."""

    def __init__(self, peer: Peer, upstream: Upstream) -> None:
        self.peer, self.upstream = peer, upstream

    def __enter__(self) -> Meter:
        self.t0 = time.perf_counter()
        self.p0 = procs.cpu_seconds(self.peer.pid) if self.peer.pid else None
        self.u0 = procs.cpu_seconds(self.upstream.proc.pid)
        self.c0 = time.process_time()
        self.m0 = procs.machine_busy_seconds()
        self.o0 = procs.own_cpu_seconds()
        self.database = self.peer.extra.get("database")
        self.d0 = procs.backend_cpu_seconds(self.database) if self.database else None
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self.t0
        self.peer_cpu = procs.cpu_seconds(self.peer.pid) - self.p0 if self.peer.pid else None
        self.up_cpu = procs.cpu_seconds(self.upstream.proc.pid) - self.u0
        self.client_cpu = time.process_time() - self.c0
        # the database server's share (its processes serving this peer's database)
        self.db_cpu = procs.backend_cpu_seconds(self.database) - self.d0 if self.database else None
        # CPU used on this machine by processes that are not part of the benchmark, in cores
        busy = procs.machine_busy_seconds() - self.m0
        foreign = busy - (procs.own_cpu_seconds() - self.o0)
        # How busy the whole machine was: a run at 100% measured the machine, not the peer.
        self.machine_busy_pct = 100.0 * busy / (self.wall * procs.cpu_count()) if self.wall else 0.0
        self.foreign_cores = max(0.0, foreign / self.wall) if self.wall else 0.0
        FOREIGN.append(self.foreign_cores)
        pct_core = 100.0 * self.up_cpu / self.wall if self.wall else 0.0
        if self.peer.name == "direct-http":  # the rig-ceiling run saturates it on purpose
            self.upstream.ceiling_cpu_pct = max(self.upstream.ceiling_cpu_pct, pct_core)
        else:
            self.upstream.max_cpu_pct = max(self.upstream.max_cpu_pct, pct_core)
        self.up_pct = pct_core


async def sequential(peer: Peer, n: int, session: str, stream: bool = True) -> list[Turn]:
    w = peer.worker()
    out = []
    try:
        for _ in range(n):
            out.append(await w.turn(session, MESSAGE, stream))
    finally:
        await w.close()
    return out


async def closed_loop(peer: Peer, conc: int, seconds: float, tag: str, stream: bool) -> dict:
    """`conc` simulated users each sending turns back to back for `seconds`."""
    deadline = time.perf_counter() + seconds
    ok = 0
    errors = 0
    first_errors: list[str] = []

    async def user(i: int) -> None:
        nonlocal ok, errors
        w = peer.worker()
        try:
            while time.perf_counter() < deadline:
                t = await w.turn(f"{tag}-u{i}", MESSAGE, stream)
                if t.ok:
                    ok += 1
                else:
                    errors += 1
                    if len(first_errors) < 3:
                        first_errors.append(t.error or "?")
        finally:
            await w.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(user(i) for i in range(conc)))
    elapsed = time.perf_counter() - t0
    return {"ok": ok, "errors": errors, "elapsed": elapsed, "error_samples": first_errors}


# -- phases ------------------------------------------------------------------------------------


async def start_peers(
    peers: list[Peer],
    upstreams: Upstream | dict[str, Upstream],
    workdir: Path,
    log_dir: Path,
    tag: str,
    status: dict,
) -> list[Peer]:
    live = []
    for p in peers:
        if p.name in status and status[p.name]["status"] != "ok":
            continue
        upstream = upstreams[p.name] if isinstance(upstreams, dict) else upstreams
        log(f"starting {p.name} against {upstream.mode} upstream")
        try:
            await p.start(upstream.url, workdir, log_dir, tag)
            warm = await sequential(p, 5, f"warm-{tag}")
            bad = [t for t in warm if not t.ok]
            if bad:
                raise PeerUnavailable(f"warm-up turns failed: {bad[0].error}")
            # The turns above kept one connection, so one process of a `--workers` peer: warm
            # every process (its first turn opens its upstream and database connections). A
            # fixed count for every peer, so each paced upstream is at the same draw of its
            # seeded sequence when the measured turns start (they are compared pairwise).
            await asyncio.gather(*(sequential(p, 2, f"warm-{tag}-{i}") for i in range(8)))
            live.append(p)
            status.setdefault(p.name, {"status": "ok"})
            status[p.name].setdefault("startup_s", []).append(p.startup_s)
            status[p.name]["version"] = p.version
            if p.extra.get("started_via"):
                status[p.name]["started_via"] = p.extra["started_via"]
        except PeerUnavailable as exc:
            reason = str(exc).strip()
            log(f"SKIPPING {p.name}: {reason.splitlines()[0] if reason else '?'}")
            status[p.name] = {"status": "skipped", "reason": reason[-1500:],
                              "version": p.version}  # fmt: skip
            await p.stop()
    return live


async def phase_latency(peers, cfg, workdir, log_dir, status, notes) -> tuple[dict, dict]:
    """Concurrency 1 on the paced upstream. Each peer gets its own instance of the paced upstream
    with the same seed and the same number of requests in the same order, so the i-th measured
    turn of every peer draws the same token count and pacing: turns are compared pairwise."""
    ups: dict[str, Upstream] = {}
    for p in peers:
        ups[p.name] = await start_upstream(
            "paced", cfg, log_dir, notes, suffix=p.name, api=p.upstream_api
        )
    log(
        f"paced upstreams: {', '.join(sorted({u.impl for u in ups.values()}))}, one per peer, same seed"
    )
    live = await start_peers(peers, ups, workdir, log_dir, "lat", status)
    samples: dict[str, dict[str, list]] = {
        p.name: {
            "ttft": [],
            "total": [],
            "seq": [],
            "round_ttft_p50": [],
            "round_total_p50": [],
            "errors": 0,
            "cpu": [],
            "turns": 0,
        }  # fmt: skip
        for p in live
    }
    try:
        for rnd in range(cfg.rounds):
            order = live[rnd % len(live) :] + live[: rnd % len(live)] if live else []
            for p in order:
                with Meter(p, ups[p.name]) as m:
                    turns = await sequential(p, cfg.latency_turns, f"lat-r{rnd}")
                s = samples[p.name]
                s["seq"] += turns
                good = [t for t in turns if t.ok]
                s["errors"] += len(turns) - len(good)
                ttft = [t.ttft * 1000 for t in good if t.ttft is not None]
                tot = [t.total * 1000 for t in good]
                s["ttft"] += ttft
                s["total"] += tot
                s["round_ttft_p50"].append(pct(ttft, 50))
                s["round_total_p50"].append(pct(tot, 50))
                if m.peer_cpu is not None and good:
                    s["cpu"].append(1000 * m.peer_cpu / len(good))
                s["turns"] += len(good)
            log(f"latency round {rnd + 1}/{cfg.rounds} done")
    finally:
        for p in live:
            await p.stop()
        for u in ups.values():
            u.proc.stop()
    out: dict[str, Any] = {}
    for name, s in samples.items():
        res = {
            "samples": s["turns"], "errors": s["errors"],
            "ttft_ms": {"p50": r(med(s["round_ttft_p50"])), "p99": r(pct(s["ttft"], 99))},
            "total_ms": {"p50": r(med(s["round_total_p50"])), "p99": r(pct(s["total"], 99))},
            "cpu_ms_per_turn": r(med(s["cpu"])),
        }  # fmt: skip
        for fname, suffix in (("direct", ""), ("direct-http", "_vs_lean_floor")):
            floor = samples.get(fname)
            if not floor or name in ("direct", "direct-http"):
                continue
            paired = len(s["seq"]) == len(floor["seq"])
            for key in ("ttft", "total"):
                if paired:
                    # the same upstream draws turn by turn: median of per-turn differences
                    diffs = [
                        (getattr(a, key) - getattr(b, key)) * 1000
                        for a, b in zip(s["seq"], floor["seq"], strict=True)
                        if a.ok and b.ok and getattr(a, key) is not None
                        and getattr(b, key) is not None
                    ]  # fmt: skip
                else:  # fall back to per-round p50 differences
                    rk = f"round_{key}_p50"
                    diffs = [a - b for a, b in zip(s[rk], floor[rk], strict=False)
                             if a is not None and b is not None]  # fmt: skip
                p99, f99 = pct(s[key], 99), pct(floor[key], 99)
                p99_of_p99 = p99 - f99 if p99 is not None and f99 is not None else None
                res[f"added_{key}_ms{suffix}"] = {
                    "p50": r(med(diffs)),
                    # paired: the p99 of what this peer added to the very same turn; else the
                    # difference of the two pooled p99s
                    "p99": r(pct(diffs, 99) if paired else p99_of_p99),
                    "p10": r(pct(diffs, 10)) if paired else None,
                    "p90": r(pct(diffs, 90)) if paired else None,
                    "p99_minus_floor_p99": r(p99_of_p99),
                    "paired_turns": len(diffs) if paired else 0,
                }
        out[name] = res
    up_info = {
        "impl": ", ".join(sorted({u.impl for u in ups.values()})) if ups else None,
        "instances": len(ups),
        "max_cpu_pct_of_core": r(max((u.max_cpu_pct for u in ups.values()), default=0), 1),
    }
    return out, up_info


async def phase_throughput(peers, instants, cfg, workdir, log_dir, status) -> tuple[dict, dict]:
    """Closed loops on the instant upstreams (`instants`: one per API the peers talk to)."""
    upstreams = {p.name: instants[p.upstream_api] for p in peers}
    live = await start_peers(peers, upstreams, workdir, log_dir, "tput", status)
    resources: dict[str, dict] = {}
    runs: dict[str, dict[str, list[dict]]] = {p.name: {} for p in live}
    try:
        # idle RSS: started, served its warm-up turns, then left alone for a moment
        await asyncio.sleep(1.0)
        for p in live:
            resources[p.name] = {"idle_rss_mb": r(procs.rss_mb(p.pid), 1) if p.pid else None}
        for p in live:  # warm-up at load, not measured
            await closed_loop(p, min(32, max(cfg.concurrency)), cfg.warmup_s, "warm", True)
        for rnd in range(cfg.rounds):
            for conc in cfg.concurrency:
                for stream in (True, False):
                    key = f"c{conc}_{'stream' if stream else 'nonstream'}"
                    order = live[rnd % len(live) :] + live[: rnd % len(live)]
                    for p in order:
                        with Meter(p, upstreams[p.name]) as m:
                            res = await closed_loop(
                                p, conc, cfg.tput_seconds, f"t{rnd}{key}", stream
                            )
                        res["turns_per_s"] = res["ok"] / res["elapsed"] if res["elapsed"] else 0
                        res["cpu_ms_per_turn"] = (
                            1000 * m.peer_cpu / res["ok"] if m.peer_cpu is not None and res["ok"]
                            else None
                        )  # fmt: skip
                        res["peer_cpu_pct"] = (
                            100 * m.peer_cpu / m.wall if m.peer_cpu is not None else None
                        )
                        res["client_cpu_ms_per_turn"] = (
                            1000 * m.client_cpu / res["ok"] if res["ok"] else None
                        )
                        res["db_cpu_ms_per_turn"] = (
                            1000 * m.db_cpu / res["ok"] if m.db_cpu is not None and res["ok"]
                            else None
                        )  # fmt: skip
                        res["upstream_cpu_pct"] = m.up_pct
                        res["machine_busy_pct"] = m.machine_busy_pct
                        runs[p.name].setdefault(key, []).append(res)
                        db = res["db_cpu_ms_per_turn"]
                        log(f"  {p.name:9s} {key:16s} {res['turns_per_s']:7.1f} turns/s "
                            f"errors={res['errors']} cpu/turn="
                            f"{_fmt(res['cpu_ms_per_turn'])} ms upstream={m.up_pct:.0f}%"
                            f"{'' if db is None else f' db server cpu/turn={db:.2f} ms'}")  # fmt: skip
            log(f"throughput round {rnd + 1}/{cfg.rounds} done")
        for p in live:
            resources[p.name]["peak_rss_mb"] = r(procs.hwm_mb(p.pid), 1) if p.pid else None
    finally:
        for p in live:
            await p.stop()
    out: dict[str, Any] = {}
    for name, by_key in runs.items():
        out[name] = {}
        for key, lst in by_key.items():
            out[name][key] = {
                "turns_per_s": r(med([x["turns_per_s"] for x in lst]), 1),
                "errors": sum(x["errors"] for x in lst),
                "ok": sum(x["ok"] for x in lst),
                "cpu_ms_per_turn": r(med([x["cpu_ms_per_turn"] for x in lst])),
                "peer_cpu_pct": r(med([x["peer_cpu_pct"] for x in lst]), 0),
                "client_cpu_ms_per_turn": r(med([x["client_cpu_ms_per_turn"] for x in lst])),
                "db_cpu_ms_per_turn": (
                    r(med([x["db_cpu_ms_per_turn"] for x in lst]))
                    if lst[0]["db_cpu_ms_per_turn"] is not None
                    else None
                ),  # fmt: skip
                "upstream_cpu_pct_max": r(max(x["upstream_cpu_pct"] for x in lst), 0),
                "machine_busy_pct": r(med([x["machine_busy_pct"] for x in lst]), 0),
                "rounds": [r(x["turns_per_s"], 1) for x in lst],
                "error_samples": sorted({e for x in lst for e in x["error_samples"]})[:3],
            }
    return out, resources


def _fmt(x: float | None, nd: int = 2) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


# -- botrunner-only sections -------------------------------------------------------------------

STRATEGIES = ["window", "full", "none", "summarize", "retrieval"]


HIST_USER = "bench-history"


async def _prefill_http(port: int, jobs: list[tuple[str, int, int]]) -> int:
    """Fallback prefill through the chat API (slow): returns the number of failed turns."""
    sem = asyncio.Semaphore(8)
    errors = 0

    async def fill(s: str, size: int, k: int) -> None:
        nonlocal errors
        async with sem:
            w = _hist_worker(port, s)
            try:
                for _ in range(size // 2):
                    t = await w.turn(f"{s}-{size}-{k}", MESSAGE, True)
                    if not t.ok:
                        errors += 1
                        if errors > 20:
                            return
            finally:
                await w.close()

    await asyncio.gather(*(fill(*j) for j in jobs))
    return errors


def _hist_worker(port: int, strategy: str) -> HttpWorker:
    t = HttpTarget("127.0.0.1", port, "ndjson", chat_path=f"/bots/h-{strategy}/chat/{{session}}")
    t.fixed_user = HIST_USER
    return HttpWorker(t)


async def _stored_messages(port: int, strategy: str, session: str) -> int | None:
    conn = Conn("127.0.0.1", port)
    try:
        status, body, _, _ = await conn.request(
            "GET", f"/bots/h-{strategy}/chat/{session}?user={HIST_USER}"
        )
        return len(json.loads(body).get("messages", [])) if status == 200 else None
    except (OSError, ValueError, asyncio.IncompleteReadError):
        return None
    finally:
        await conn.close()


async def section_history(cfg, upstream, workdir, log_dir) -> dict:
    """Turn latency with 10/100/1000 stored messages, per memory strategy (c=1, instant)."""
    sizes = cfg.history_sizes
    peer = BotrunnerPeer("botrunner-history", "botrunner serve", "history growth")
    peer.bots = {f"h-{s}": bot_yaml(name=f"h-{s}", strategy=s) for s in STRATEGIES}
    per = cfg.history_sessions
    jobs = [(s, size, k) for s in STRATEGIES for size in sizes for k in range(per)]
    # Prefill through botrunner's own store API before the server opens the file.
    t0 = time.perf_counter()
    spec = [[f"h-{s}", HIST_USER, f"{s}-{size}-{k}", size // 2] for s, size, k in jobs]
    pre = subprocess.run(
        [
            str(VENV_PY),
            str(ROOT / "bench/prefill_store.py"),
            str(peer.db_path(workdir, "hist")),
            json.dumps(spec),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    method = "store API (bench/prefill_store.py)"
    prefill_note = ""
    if pre.returncode != 0:
        prefill_note = "store prefill failed: " + (pre.stderr.strip().splitlines() or ["?"])[-1]
        log(prefill_note)
        peer.db_path(workdir, "hist").unlink(missing_ok=True)
    try:
        await peer.start(upstream.url, workdir, log_dir, "hist")
    except PeerUnavailable as exc:
        await peer.stop()
        return {"status": "skipped", "reason": str(exc)[-1500:]}
    try:
        big = sizes[-1]
        seen = await _stored_messages(peer.port, "window", f"window-{big}-0")
        if pre.returncode != 0 or seen != big:
            if pre.returncode == 0:
                prefill_note = f"store prefill not visible over HTTP ({seen} of {big} messages)"
                log(prefill_note)
            method = "chat API (fallback)"
            await _prefill_http(peer.port, jobs)
            seen = await _stored_messages(peer.port, "window", f"window-{big}-0")
        prefill_s = time.perf_counter() - t0
        log(f"history prefill via {method}: {sum(sz // 2 for _, sz, _ in jobs)} turns in "
            f"{prefill_s:.1f}s; window-{big}-0 holds {seen} messages")  # fmt: skip
        # Measure: each session gets `cfg.history_turns` turns; sizes interleaved.
        lat: dict[str, dict[int, list[float]]] = {s: {z: [] for z in sizes} for s in STRATEGIES}
        errs: list[str] = []
        workers = {st: _hist_worker(peer.port, st) for st in STRATEGIES}
        for _ in range(cfg.history_turns):  # interleaved: one turn per session per pass
            for k in range(per):
                for st in STRATEGIES:
                    for size in sizes:
                        t = await workers[st].turn(f"{st}-{size}-{k}", MESSAGE, True)
                        if t.ok:
                            lat[st][size].append(t.total * 1000)
                        else:
                            errs.append(t.error or "?")
        for w in workers.values():
            await w.close()
        out: dict[str, Any] = {"status": "ok", "prefill": method, "prefill_s": r(prefill_s, 1),
                               "prefill_note": prefill_note, "verified_messages": seen,
                               "errors": len(errs), "error_samples": sorted(set(errs))[:3],
                               "unit": "p50 turn latency, ms (instant upstream, c=1)"}  # fmt: skip
        for s in STRATEGIES:
            row: dict[str, Any] = {str(z): r(pct(lat[s][z], 50)) for z in sizes}
            a, b = pct(lat[s][sizes[0]], 50), pct(lat[s][sizes[-1]], 50)
            row["ratio_last_to_first"] = r(b / a, 3) if a and b else None
            out[s] = row
        return out
    finally:
        await peer.stop()


async def section_tool(cfg, upstream, workdir, log_dir) -> dict:
    tool_port = procs.free_port()
    tool_proc = procs.spawn(
        "tool-server",
        [str(VENV_PY), str(ROOT / "bench/tool_server.py"), "--port", str(tool_port)],
        log_dir=log_dir,
    )
    peer = BotrunnerPeer("botrunner-tool", "botrunner serve", "tool turn")
    peer.bots = {"bench": bot_yaml(tool_port=tool_port)}
    try:
        await wait_http_ok(tool_port, "/__stats", tool_proc, 10)
        await peer.start(upstream.url, workdir, log_dir, "tool")
        w = peer.worker()
        plain, tool, errs = [], [], []
        ask = "Use get_weather: what is the weather in Paris?"
        for msg in (MESSAGE, ask):  # warm-up, not measured
            await w.turn(f"tool-warm-{msg[:3]}", msg, True)
        for i in range(cfg.tool_turns):
            for msg, bucket in ((MESSAGE, plain), (ask, tool)):
                # fresh session per turn: the tool turn must not see earlier tool results
                t = await w.turn(f"tool-{i}-{len(bucket)}-{msg[:3]}", msg, True)
                (bucket.append(t.total * 1000) if t.ok else errs.append(t.error))
        await w.close()
        conn = Conn("127.0.0.1", tool_port)
        _, body, _, _ = await conn.request("GET", "/__stats")
        await conn.close()
        calls = json.loads(body).get("tool_calls", 0)
        p_plain, p_tool = pct(plain, 50), pct(tool, 50)
        return {
            "status": "ok" if calls else "no tool calls reached the tool server",
            "plain_turn_p50_ms": r(p_plain),
            "tool_turn_p50_ms": r(p_tool),
            "tool_turn_p99_ms": r(pct(tool, 99)),
            "added_by_tool_round_trip_ms": r(p_tool - p_plain if p_tool and p_plain else None),
            "tool_server_calls": calls,
            "turns": len(tool),
            "errors": len(errs),
            "error_samples": sorted({str(e) for e in errs})[:3],
            "note": "tool turn = model asks for get_weather -> HTTP GET to a local tool server -> "
            "second model call; both model calls on the instant upstream",
        }
    except PeerUnavailable as exc:
        return {"status": "skipped", "reason": str(exc)[-1500:]}
    finally:
        await peer.stop()
        tool_proc.stop()


def section_validate(cfg, workdir) -> dict:
    d = workdir / "validate-bots"
    d.mkdir(parents=True, exist_ok=True)
    rng = random.Random(5)
    n = cfg.validate_files
    for i in range(n):
        s = rng.choice(["window", "full", "none", "summarize", "retrieval"])
        tool = 9000 + i if i % 3 == 0 else None
        (d / f"bot{i:04d}.yaml").write_text(
            bot_yaml(name=f"bot{i:04d}", strategy=s, system=f"You are bot {i}.", tool_port=tool)
        )
    env = dict(os.environ)
    t0 = time.perf_counter()
    p = subprocess.run(
        [*botrunner_cmd(), "validate", str(d)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=ROOT,
    )
    batch = time.perf_counter() - t0
    singles = []
    for i in range(3):
        t1 = time.perf_counter()
        q = subprocess.run(
            [*botrunner_cmd(), "validate", str(d / f"bot{i:04d}.yaml")],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        singles.append(time.perf_counter() - t1)
    if p.returncode not in (0,):
        reason = (p.stdout + p.stderr).strip()[-1200:]
        return {"status": f"validate exited {p.returncode}", "reason": reason,
                "files": n, "batch_s": r(batch, 2),
                "ms_per_file": r(1000 * batch / n, 2)}  # fmt: skip
    return {
        "status": "ok",
        "files": n,
        "batch_s": r(batch, 2),
        "ms_per_file": r(1000 * batch / n, 2),
        "single_file_process_ms": r(1000 * med(singles), 1),
        "single_exit_code": q.returncode,
        "note": "`botrunner validate DIR` on generated tutor-like bots (1 in 3 with an HTTP tool); "
        "per file = whole process time / files, so interpreter start-up is included once",
    }


async def section_reload(cfg, workdir, log_dir, notes) -> dict:
    """Serve with reload on; edit the system prompt; time until a reply reflects it."""
    echo = await start_upstream("instant", cfg, log_dir, notes, echo_system=True)
    peer = BotrunnerPeer("botrunner-reload", "botrunner serve", "hot reload")
    peer.reload = True
    peer.bots = {"bench": bot_yaml(system="VERSION-0 You are a concise AI tutor.")}
    try:
        await peer.start(echo.url, workdir, log_dir, "reload")
        path = peer.extra["botdir"] / "bench.yaml"
        w = peer.worker()
        lat, served_req_start, misses = [], [], 0
        for i in range(1, cfg.reload_edits + 1):
            await asyncio.sleep(0.3)
            marker = f"VERSION-{i} "
            tmp = path.with_suffix(".tmp")
            tmp.write_text(bot_yaml(system=marker + "You are a concise AI tutor."))
            os.replace(tmp, path)
            t_save = time.perf_counter()
            deadline = t_save + 10
            seen = False
            n = 0
            while time.perf_counter() < deadline:
                n += 1
                t_req = time.perf_counter()
                t = await w.turn(f"reload-{i}-{n}", "hello", True)
                if t.ok and marker in t.text:
                    lat.append((time.perf_counter() - t_save) * 1000)
                    served_req_start.append((t_req - t_save) * 1000)
                    seen = True
                    break
                await asyncio.sleep(0.005)
            if not seen:
                misses += 1
        await w.close()
        return {
            "status": "ok" if lat else "no reply reflected the edit within 10 s",
            "edits": cfg.reload_edits,
            "missed": misses,
            "save_to_first_new_reply_ms": {"p50": r(med(lat)), "max": r(max(lat) if lat else None)},
            "save_to_request_start_ms_p50": r(med(served_req_start)),
            "upstream": echo.impl + " --echo-system",
            "note": "file replaced atomically (write + rename, as editors do); polled with one "
            "turn at a time on a fresh session; the reply echoes the system prompt",
        }
    except PeerUnavailable as exc:
        return {"status": "skipped", "reason": str(exc)[-1500:]}
    finally:
        await peer.stop()
        echo.proc.stop()


# -- main --------------------------------------------------------------------------------------


async def section_cost(cfg: argparse.Namespace, log_dir: Path) -> dict:
    """bench/cost.py's conversation (smaller with --quick), as a section of the run."""
    from bench import cost

    args = ["--turns", "8", "--max-turns", "4", "--system-tokens", "1000"] if cfg.quick else []
    try:
        return {"status": "ok", **await cost.measure(cost.parse_args(args), log_dir)}
    except Exception as exc:  # noqa: BLE001 - reported in the results, the run goes on
        return {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny workload (smoke test), ~30 s")
    p.add_argument("--force", action="store_true", help="run even when the machine is loaded")
    p.add_argument("--peers", default=",".join(ALL_PEERS),
                   help="comma list of: " + ",".join(ALL_PEERS)
                   + " (default), botrunner-sse, botrunner-openai, botrunner-local")  # fmt: skip
    p.add_argument("--sections", default=",".join(ALL_SECTIONS), help="comma list: " + ",".join(ALL_SECTIONS))  # fmt: skip
    p.add_argument("--out", type=Path, default=None,
                   help="default: docs/benchmarks for a full run, bench/out for --quick or a "
                   "partial run (--peers/--sections), so a partial run never replaces the "
                   "published results")  # fmt: skip
    p.add_argument("--rounds", type=int)
    p.add_argument("--no-chart", action="store_true")
    p.add_argument("--check-load-only", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--update-readme", action=argparse.BooleanOptionalAction, default=None,
                   help="rewrite the table in bench/README.md (default: on unless --quick)")  # fmt: skip
    cfg = p.parse_args(argv)
    q = cfg.quick
    cfg.rounds = cfg.rounds or (1 if q else 3)
    cfg.latency_turns = 3 if q else 16
    cfg.concurrency = [4] if q else [32, 128]
    cfg.tput_seconds = 0.5 if q else 3.0
    cfg.warmup_s = 0.3 if q else 1.0
    cfg.ttft_ms, cfg.tokens, cfg.token_ms = ("20", "4-8", "1-2") if q else ("250", "16-64", "10-20")
    cfg.history_sizes = [10, 20] if q else [10, 100, 1000]
    cfg.history_sessions = 1 if q else 3
    cfg.history_turns = 2 if q else 5
    cfg.tool_turns = 2 if q else 15
    cfg.validate_files = 20 if q else 1000
    cfg.reload_edits = 1 if q else 5
    cfg.peer_list = [x for x in cfg.peers.split(",") if x]
    cfg.section_list = [x for x in cfg.sections.split(",") if x]
    full = set(cfg.peer_list) == set(ALL_PEERS) and set(cfg.section_list) == set(ALL_SECTIONS)
    if cfg.out is None:
        cfg.out = ROOT / ("docs/benchmarks" if full and not q else "bench/out")
    if cfg.update_readme is None:
        cfg.update_readme = full and not q
    return cfg


def versions() -> dict:
    import anthropic
    import fastapi
    import uvicorn

    from bench.peers import _litellm_version, botrunner_version

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "python": platform.python_version(),
        "anthropic": anthropic.__version__,
        "fastapi": fastapi.__version__,
        "uvicorn": uvicorn.__version__,
        "botrunner": botrunner_version(),
        "litellm": _litellm_version()
        if (ROOT / "bench/.venv-litellm/bin/python").exists()
        else None,
        "git_commit": commit,
        "cpu_model": cpu,
        "cpus": procs.cpu_count(),
        "kernel": platform.release(),
    }


def scratch_dir(cfg: argparse.Namespace) -> Path:
    """Logs and partial results: bench/out for the published run, else next to the results
    (so a smoke test never touches the logs of a run in progress)."""
    if cfg.out.resolve() == (ROOT / "docs" / "benchmarks").resolve():
        return ROOT / "bench" / "out"
    return cfg.out


def checkpoint(results: dict) -> None:
    """Write what we have so far, so an interrupted run still leaves its numbers behind."""
    out = Path(results["meta"]["scratch"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "partial-results.json").write_text(json.dumps(results, indent=2, default=str))


async def run(cfg: argparse.Namespace) -> dict:
    t_start = time.perf_counter()
    log_dir = scratch_dir(cfg) / "logs"
    if log_dir.exists():
        shutil.rmtree(log_dir, ignore_errors=True)
    workdir = Path(tempfile.mkdtemp(prefix="botrunner-bench-"))
    notes: list[str] = []
    load_before = check_load(cfg.force)
    results: dict[str, Any] = {
        "schema": 1,
        "meta": {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "quick": cfg.quick,
            "command": "bench/run " + " ".join(sys.argv[1:]),
            "scratch": str(scratch_dir(cfg)),
            "load_before": load_before,
            "versions": versions(),
        },
        "config": {
            k: getattr(cfg, k)
            for k in (
                "rounds",
                "latency_turns",
                "concurrency",
                "tput_seconds",
                "ttft_ms",
                "tokens",
                "token_ms",
                "history_sizes",
                "validate_files",
                "peer_list",
                "section_list",
            )
        },  # fmt: skip
        "peers": {},
        "latency": {},
        "throughput": {},
        "resources": {},
        "upstream": {},
        "history": {"status": "not run"},
        "tool": {"status": "not run"},
        "validate": {"status": "not run"},
        "reload": {"status": "not run"},
        "cost": {"status": "not run"},
        "notes": notes,
    }
    status: dict[str, dict] = {}
    peers = make_peers(cfg.peer_list)
    try:
        instant = None
        if "latency" in cfg.section_list:
            lat, up_info = await phase_latency(peers, cfg, workdir, log_dir, status, notes)
            results["latency"] = lat
            results["upstream"]["paced"] = up_info
            checkpoint(results)
        need_instant = {"throughput", "history", "tool"} & set(cfg.section_list)
        if need_instant:
            instant = await start_upstream("instant", cfg, log_dir, notes)
            log(f"instant upstream: {instant.impl} on {instant.url}")
        if "throughput" in cfg.section_list:
            instants = {"anthropic": instant}
            if any(p.upstream_api == "openai" for p in peers):
                instants["openai"] = await start_upstream(
                    "instant", cfg, log_dir, notes, api="openai"
                )
            tput, res = await phase_throughput(peers, instants, cfg, workdir, log_dir, status)
            if "openai" in instants:
                results["upstream"]["instant_openai"] = {
                    "impl": instants["openai"].impl,
                    "max_cpu_pct_of_core": r(instants["openai"].max_cpu_pct, 1),
                }
                instants["openai"].proc.stop()
            results["throughput"], results["resources"] = tput, res
            checkpoint(results)
        br = any(n.startswith("botrunner") for n in cfg.peer_list)
        if br and "history" in cfg.section_list:
            log("section: history growth")
            results["history"] = await section_history(cfg, instant, workdir, log_dir)
            checkpoint(results)
        if br and "tool" in cfg.section_list:
            log("section: tool turn")
            results["tool"] = await section_tool(cfg, instant, workdir, log_dir)
            checkpoint(results)
        if instant:
            results["upstream"]["instant"] = {
                "impl": instant.impl,
                "max_cpu_pct_of_core": r(instant.max_cpu_pct, 1),
                "max_cpu_pct_during_direct_http": r(instant.ceiling_cpu_pct, 1),
            }

            instant.proc.stop()
        if br and "validate" in cfg.section_list:
            log("section: validate")
            results["validate"] = section_validate(cfg, workdir)
            checkpoint(results)
        if br and "reload" in cfg.section_list:
            log("section: hot reload")
            results["reload"] = await section_reload(cfg, workdir, log_dir, notes)
            checkpoint(results)
        if br and "cost" in cfg.section_list:
            log("section: cost of a conversation with and without prompt caching")
            results["cost"] = await section_cost(cfg, log_dir)
    finally:
        for p in peers:
            await p.stop()
        procs.kill_all()
        shutil.rmtree(workdir, ignore_errors=True)
    for p in peers:
        st = status.get(p.name, {"status": "not run"})
        st["startup_s"] = r(med(st.get("startup_s", [])), 3) if st.get("startup_s") else None
        results["peers"][p.name] = {"label": p.label, "note": p.note,
                                    "persists_history": p.persists_history, **st}  # fmt: skip
        if p.name in results["resources"]:
            results["resources"][p.name]["startup_s"] = st["startup_s"]
    results["meta"]["load_after"] = {"loadavg": procs.loadavg()}
    results["meta"]["foreign_cpu_cores"] = {
        "median": r(med(FOREIGN), 2),
        "max": r(max(FOREIGN), 2) if FOREIGN else None,
        "runs": len(FOREIGN),
        "note": "CPU used by processes outside the benchmark during measured runs, in cores",
    }
    results["meta"]["duration_s"] = round(time.perf_counter() - t_start, 1)
    from bench.report import add_ratios_and_targets

    add_ratios_and_targets(results)
    return results


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    if cfg.check_load_only:
        check_load(cfg.force)
        return 0
    procs.install_cleanup()
    try:
        results = asyncio.run(run(cfg))
    except KeyboardInterrupt:
        log("interrupted: stopping every process started")
        procs.kill_all()
        return 130
    from bench import report

    cfg.out.mkdir(parents=True, exist_ok=True)
    report.write_all(results, cfg.out, chart=not cfg.no_chart, update_readme=cfg.update_readme)
    log(f"done in {results['meta']['duration_s']}s; wrote {cfg.out}/results.json, .md, .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
