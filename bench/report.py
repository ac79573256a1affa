"""Ratios, targets, and the three outputs: results.json, results.md (tables), results.png."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "bench" / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"


def _get(d: Any, *keys, default=None):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def _ratio(a, b):
    return round(a / b, 2) if a is not None and b else None


def add_ratios_and_targets(res: dict) -> None:
    tput = res.get("throughput", {})
    names = list(tput)
    ratios: dict[str, Any] = {}
    for key in sorted({k for v in tput.values() for k in v}):
        table = {}
        for a in names:
            for b in names:
                if a != b:
                    table[f"{a}/{b}"] = _ratio(
                        _get(tput, a, key, "turns_per_s"), _get(tput, b, key, "turns_per_s")
                    )
        ratios[f"throughput_{key}"] = table
    lat = res.get("latency", {})
    for metric in ("ttft_ms", "total_ms"):
        table = {}
        for a in lat:
            for b in lat:
                if a != b:
                    table[f"{a}/{b}"] = _ratio(
                        _get(lat, a, metric, "p50"), _get(lat, b, metric, "p50")
                    )
        ratios[f"latency_{metric}_p50"] = table
    res["ratios"] = ratios

    b = "botrunner"
    t: list[dict] = []

    def target(tid, text, value, limit, ok_fn, unit="", why_missing=None):
        if value is None:
            t.append({"id": tid, "target": text, "value": None, "unit": unit, "pass": None,
                      "note": why_missing or "not measured"})  # fmt: skip
        else:
            t.append({"id": tid, "target": text, "value": value, "unit": unit,
                      "limit": limit, "pass": bool(ok_fn(value, limit))})  # fmt: skip

    peer_state = _get(res, "peers", b, "status")
    why = None if peer_state == "ok" else f"botrunner serve: {peer_state or 'not run'}"
    le = lambda v, lim: v <= lim  # noqa: E731
    ge = lambda v, lim: v >= lim  # noqa: E731
    target("ttft_p50", "added TTFT p50 <= 3 ms (c=1, paced)",
           _get(lat, b, "added_ttft_ms", "p50"), 3, le, "ms", why)  # fmt: skip
    target("ttft_p99", "added TTFT p99 <= 6 ms (c=1, paced)",
           _get(lat, b, "added_ttft_ms", "p99"), 6, le, "ms", why)  # fmt: skip
    k32 = "c32_stream"
    br32 = _get(tput, b, k32, "turns_per_s")
    target("tput_vs_litellm", ">= 5x LiteLLM streamed turns/s at c=32",
           _ratio(br32, _get(tput, "litellm", k32, "turns_per_s")), 5, ge, "x",
           why or (None if _get(tput, "litellm") else "LiteLLM not measured"))  # fmt: skip
    target("tput_vs_baseline", ">= hand-written baseline streamed turns/s at c=32",
           _ratio(br32, _get(tput, "baseline", k32, "turns_per_s")), 1, ge, "x",
           why or (None if _get(tput, "baseline") else "baseline not measured"))  # fmt: skip
    target("cpu_per_turn", "CPU per streamed turn <= 6 ms (c=32)",
           _get(tput, b, k32, "cpu_ms_per_turn"), 6, le, "ms", why)  # fmt: skip
    hist = res.get("history", {})
    target("history_flat", "window: turn at 1,000 stored messages within 10% of 10",
           _get(hist, "window", "ratio_last_to_first"), 0.10, lambda v, lim: abs(v - 1) <= lim, "x",
           f"history: {hist.get('status')}")  # fmt: skip
    target("validate", "validate < 20 ms per file (1,000 files)",
           _get(res, "validate", "ms_per_file") if _get(res, "validate", "status") == "ok" else None,
           20, lambda v, lim: v < lim, "ms", f"validate: {_get(res, 'validate', 'status')}")  # fmt: skip
    target("reload", "hot reload live <= 200 ms after save (p50)",
           _get(res, "reload", "save_to_first_new_reply_ms", "p50"), 200, le, "ms",
           f"reload: {_get(res, 'reload', 'status')}")  # fmt: skip
    target("startup", "startup to first served request < 3 s",
           _get(res, "peers", b, "startup_s"), 3, lambda v, lim: v < lim, "s", why)  # fmt: skip
    pg = "botrunner-postgres"
    pg_state = _get(res, "peers", pg, "status")
    why_pg = None if pg_state == "ok" else f"{pg}: {pg_state or 'not run'}"
    target("pg_cpu_per_turn", "PostgreSQL store: CPU per streamed turn (c=32) within 1.3x of SQLite",
           _ratio(_get(tput, pg, k32, "cpu_ms_per_turn"), _get(tput, b, k32, "cpu_ms_per_turn")),
           1.3, le, "x", why_pg or why)  # fmt: skip
    target("pg_errors", "PostgreSQL store: 0 errors at c=128 (streamed and plain)",
           None if _get(tput, pg, "c128_stream") is None else
           sum(_get(tput, pg, k, "errors") or 0 for k in ("c128_stream", "c128_nonstream")),
           0, le, "", why_pg)  # fmt: skip
    w2 = "botrunner-postgres-w2"
    w2_state = _get(res, "peers", w2, "status")
    why_w2 = None if w2_state == "ok" else f"{w2}: {w2_state or 'not run'}"
    target("pg_workers", "--workers 2: >= 1.4x one worker's streamed turns/s at c=128 (PostgreSQL)",
           _ratio(_get(tput, w2, "c128_stream", "turns_per_s"),
                  _get(tput, pg, "c128_stream", "turns_per_s")),
           1.4, ge, "x", why_w2 or why_pg)  # fmt: skip
    target("pg_w2_errors", "--workers 2: 0 errors at c=128 (streamed and plain)",
           None if _get(tput, w2, "c128_stream") is None else
           sum(_get(tput, w2, k, "errors") or 0 for k in ("c128_stream", "c128_nonstream")),
           0, le, "", why_w2)  # fmt: skip
    cost = res.get("cost", {})
    for s in ("window", "summarize", "full"):
        target(f"cost_{s}", f"{s}: cached billed input <= 0.2 of uncached (40 turns)",
               _get(cost, "strategies", s, "ratio_overall"), 0.2, le, "x",
               f"cost: {cost.get('status')}")  # fmt: skip
        target(f"cost_{s}_half", f"{s}: <= 0.25 of uncached over turns 21-40",
               _get(cost, "strategies", s, "ratio_second_half"), 0.25, le, "x",
               f"cost: {cost.get('status')}")  # fmt: skip
    res["targets"] = t


# -- markdown ----------------------------------------------------------------------------------


def _f(x, nd=1, suffix=""):
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{nd}f}{suffix}"
    return f"{x}{suffix}"


def render_md(res: dict) -> str:
    m = res["meta"]
    v = m["versions"]
    ups = res.get("upstream", {})
    lines = []
    lines.append(f"Run {m['started']} · commit `{v.get('git_commit')}` · {v.get('cpus')} CPUs "
                 f"({v.get('cpu_model')}) · Python {v.get('python')} · "
                 f"{'QUICK (smoke) workload · ' if m.get('quick') else ''}"
                 f"took {m.get('duration_s')} s")  # fmt: skip
    la = m.get("load_before", {})
    lines.append(f"Load before: loadavg {la.get('loadavg')}, busy {la.get('busy_fraction')}"
                 f"{' — FORCED WHILE LOADED' if la.get('forced_while_loaded') else ''}; "
                 f"after: {m.get('load_after', {}).get('loadavg')}")  # fmt: skip
    fc = m.get("foreign_cpu_cores") or {}
    if fc.get("runs"):
        noisy = (fc.get("median") or 0) > 0.25
        lines.append(f"Other processes on the machine during measured runs: median "
                     f"{fc.get('median')} cores, max {fc.get('max')} cores of {v.get('cpus')}"
                     f"{' — **NOISY RUN: the peers competed with foreign load; treat absolute numbers with care**' if noisy else ''}")  # fmt: skip
    up_txt = "; ".join(
        f"{k}: `{u['impl']}`"
        + (f" ({u['instances']} instances, one per peer, same seed)" if u.get("instances") else "")
        + f", max {u['max_cpu_pct_of_core']}% of one core while serving the server peers"
        + (f" ({u['max_cpu_pct_during_direct_http']}% during the direct-http rig-ceiling runs)"
           if u.get("max_cpu_pct_during_direct_http") else "")
        for k, u in ups.items()
    )  # fmt: skip
    lines.append(f"Upstream: {up_txt or '–'}")
    lines.append("")
    peers = res.get("peers", {})
    lat = res.get("latency", {})
    tput = res.get("throughput", {})
    rs = res.get("resources", {})

    lines.append("| peer | history / limits | TTFT p50 | TTFT p99 | added TTFT p50 / p99 | "
                 "added total p50 / p99 | c32 stream | c32 plain | c128 stream | c128 plain | "
                 "errors | CPU ms/turn (c32 stream) | idle / peak RSS MB | startup s |")  # fmt: skip
    lines.append("|" + "---|" * 14)
    for name, p in peers.items():
        label = f"**{p['label']}** ({p.get('version', '')})"
        if p.get("status") == "not run":
            lines.append(f"| {label} | not run in this invocation (sections: "
                         f"{', '.join(res.get('config', {}).get('section_list', []))}) |"
                         + " |" * 12)  # fmt: skip
            continue
        if p.get("status") != "ok":
            reason = (p.get("reason") or p.get("status") or "").strip().splitlines()
            lines.append(f"| {label} | SKIPPED (failed to start; rerun with `bench/run --peers "
                         f"{name}`): {reason[0][:160] if reason else ''} |"
                         + " |" * 12)  # fmt: skip
            continue
        la_ = lat.get(name, {})
        tp = tput.get(name, {})
        errs = sum(x.get("errors", 0) for x in tp.values()) + la_.get("errors", 0)
        add_t = la_.get("added_ttft_ms")
        add_tot = la_.get("added_total_ms")
        cell = lambda k, tp=tp: _f(_get(tp, k, "turns_per_s"))  # noqa: E731
        lines.append(
            f"| {label} | {p['note']} | {_f(_get(la_, 'ttft_ms', 'p50'))} | "
            f"{_f(_get(la_, 'ttft_ms', 'p99'))} | "
            f"{(_f(add_t['p50']) + ' / ' + _f(add_t['p99'])) if add_t else 'floor'} | "
            f"{(_f(add_tot['p50']) + ' / ' + _f(add_tot['p99'])) if add_tot else 'floor'} | "
            f"{cell('c32_stream')} | {cell('c32_nonstream')} | {cell('c128_stream')} | "
            f"{cell('c128_nonstream')} | {errs} | "
            f"{_f(_get(tp, 'c32_stream', 'cpu_ms_per_turn'), 2)} | "
            f"{_f(_get(rs, name, 'idle_rss_mb'), 0)} / {_f(_get(rs, name, 'peak_rss_mb'), 0)} | "
            f"{_f(p.get('startup_s'), 2)} |"
        )
    lines.append("")
    lines.append("Latency in ms at concurrency 1 on the paced upstream; throughput in completed "
                 "turns/s on the instant upstream (\"plain\" = not streamed); CPU of the process "
                 "under test (its whole process tree) per completed turn.")  # fmt: skip

    def per_peer(key: str, field: str, text: str, unit: str, nd: int, after: str = "") -> bool:
        """One paragraph listing `field` of every peer that has it; False when none does."""
        values = {n: _get(tp, key, field) for n, tp in tput.items()}
        if all(v is None for v in values.values()):
            return False
        listed = ", ".join(f"{n}: {_f(v, nd)}{unit}" for n, v in values.items() if v is not None)
        lines.extend(["", f"{text}: {listed}.{after}"])
        return True

    per_peer("c32_stream", "db_cpu_ms_per_turn",
             "Database server CPU per streamed turn at c=32 (the PostgreSQL processes serving "
             "the peer's database; not in the column above)", " ms", 2)  # fmt: skip
    if per_peer("c128_stream", "machine_busy_pct",
                "Whole machine busy during the streamed c=128 runs (all CPUs, every process: "
                "peer, load generator, upstream, PostgreSQL, Redis)", "%", 0,
                " Near 100%, a peer's throughput is the machine's limit, not its own."):  # fmt: skip
        w2 = tput.get("botrunner-postgres-w2", {}).get("c128_stream", {})
        one = _get(tput, "botrunner-postgres", "c128_stream", "turns_per_s")
        if w2.get("machine_busy_pct") and w2.get("turns_per_s") and one:
            # Every process's CPU per turn is what it is; all CPUs busy is the most there is.
            ceiling = w2["turns_per_s"] * 100 / w2["machine_busy_pct"]
            lines.append(f"At its CPU cost per turn (all processes), --workers 2 could reach at "
                         f"most {ceiling:.0f} streamed turns/s on this machine, "
                         f"{ceiling / one:.2f}x one worker.")  # fmt: skip
    if any(k not in ("c32_stream", "c32_nonstream", "c128_stream", "c128_nonstream")
           for v_ in tput.values() for k in v_):  # fmt: skip
        lines.append("")
        lines.append("Throughput (turns/s): " + "; ".join(
            f"{n}: " + ", ".join(f"{k} {_f(x['turns_per_s'])}" for k, x in tp.items())
            for n, tp in tput.items()))  # fmt: skip
    lines.append("")

    lean = [f"{n}: TTFT {_f(_get(x, 'added_ttft_ms_vs_lean_floor', 'p50'))} / "
            f"{_f(_get(x, 'added_ttft_ms_vs_lean_floor', 'p99'))}, total "
            f"{_f(_get(x, 'added_total_ms_vs_lean_floor', 'p50'))} / "
            f"{_f(_get(x, 'added_total_ms_vs_lean_floor', 'p99'))}"
            for n, x in lat.items() if "added_ttft_ms_vs_lean_floor" in x]  # fmt: skip
    if lean:
        lines.append("Added ms (p50 / p99) over the lean-client floor `direct-http` instead of the "
                     "SDK floor (client-side SDK cost taken out): " + "; ".join(lean) + ".")  # fmt: skip
        lines.append("")
    ratios = res.get("ratios", {})
    rt = ratios.get("throughput_c32_stream", {})
    if rt:
        pairs = [k for k in rt if k.startswith("botrunner/")] or list(rt)[:6]
        lines.append("Ratios, streamed turns/s at c=32: " + ", ".join(
            f"{k} = {_f(rt[k], 2)}" for k in pairs) + ".")  # fmt: skip
        others = [k for k in rt if k.endswith("/direct") and not k.startswith("botrunner/")]
        if others:
            lines.append("Each peer against the floor: " + ", ".join(
                f"{k} = {_f(rt[k], 2)}" for k in others) + ".")  # fmt: skip
        lines.append("")

    hist = res.get("history", {})
    lines.append("**botrunner only**")
    lines.append("")
    if hist.get("status") == "ok":
        sizes = [k for k in hist.get("window", {}) if k.isdigit()]
        lines.append("| memory strategy | " + " | ".join(f"{s} msgs" for s in sizes)
                     + " | last/first |")  # fmt: skip
        lines.append("|" + "---|" * (len(sizes) + 2))
        for s in ("window", "full", "none", "summarize", "retrieval"):
            row = hist.get(s, {})
            lines.append(f"| {s} | " + " | ".join(_f(row.get(z)) for z in sizes)
                         + f" | {_f(row.get('ratio_last_to_first'), 2)} |")  # fmt: skip
        lines.append("")
        lines.append(f"Turn latency p50 (ms), instant upstream, c=1, by stored messages in the "
                     f"session (prefilled via {hist.get('prefill', 'the chat API')} in {hist.get('prefill_s')} s; "
                     f"errors {hist.get('errors')}).")  # fmt: skip
    else:
        lines.append(f"- History growth: {hist.get('status')} "
                     f"{_first(hist.get('reason'))}")  # fmt: skip
    lines.append("")
    tool = res.get("tool", {})
    if tool.get("status") == "ok":
        lines.append(f"- Tool turn (one HTTP tool round trip, c=1): p50 {_f(tool.get('tool_turn_p50_ms'))} ms "
                     f"vs {_f(tool.get('plain_turn_p50_ms'))} ms for a plain turn "
                     f"(+{_f(tool.get('added_by_tool_round_trip_ms'))} ms, which includes the "
                     f"second model call); {tool.get('tool_server_calls')} tool calls served.")  # fmt: skip
    else:
        lines.append(f"- Tool turn: {tool.get('status')} {_first(tool.get('reason'))}")
    val = res.get("validate", {})
    if val.get("status") == "ok":
        lines.append(f"- `botrunner validate` on {val['files']} files: {_f(val['batch_s'], 2)} s "
                     f"= {_f(val['ms_per_file'], 2)} ms per file; one file in its own process: "
                     f"{_f(val.get('single_file_process_ms'))} ms.")  # fmt: skip
    else:
        lines.append(f"- validate: {val.get('status')} {_first(val.get('reason'))}")
    rl = res.get("reload", {})
    if rl.get("status") == "ok":
        lines.append(f"- Hot reload, save to first reply from the new version: p50 "
                     f"{_f(_get(rl, 'save_to_first_new_reply_ms', 'p50'))} ms, max "
                     f"{_f(_get(rl, 'save_to_first_new_reply_ms', 'max'))} ms over "
                     f"{rl.get('edits')} edits ({rl.get('missed')} missed).")  # fmt: skip
    else:
        lines.append(f"- Hot reload: {rl.get('status')} {_first(rl.get('reason'))}")
    cost = res.get("cost", {})
    if cost.get("status") == "ok":
        from bench.cost import render as render_cost

        lines += ["", "Prompt caching (`python -m bench.cost`): " + render_cost(cost)]
    else:
        lines.append(f"- Prompt caching cost: {cost.get('status')} {_first(cost.get('reason'))}")
    lines.append("")
    lines.append("**Targets** (from issue 5; not faked: `–` means not measured in this run)")
    lines.append("")
    lines.append("| target | measured | result |")
    lines.append("|---|---|---|")
    for t in res.get("targets", []):
        if t["pass"] is None:
            lines.append(f"| {t['target']} | – | not measured ({t.get('note', '')[:100]}) |")
        else:
            lines.append(f"| {t['target']} | {_f(t['value'], 2)} {t['unit']} | "
                         f"{'PASS' if t['pass'] else 'MISS'} |")  # fmt: skip
    if res.get("notes"):
        lines.append("")
        lines.append("Notes: " + " ".join(_first(n) for n in res["notes"]))
    return "\n".join(lines) + "\n"


def _first(text) -> str:
    if not text:
        return ""
    s = str(text).strip().splitlines()
    return s[0][:200] if s else ""


# -- chart -------------------------------------------------------------------------------------


def render_png(res: dict, path: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed (pip install matplotlib into .venv); no chart"
    lat, tput = res.get("latency", {}), res.get("throughput", {})
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    fig.suptitle(f"botrunner benchmarks ({res['meta']['versions'].get('cpus')} CPUs, "
                 f"commit {res['meta']['versions'].get('git_commit')})")  # fmt: skip

    ax = axes[0][0]
    names = [n for n in lat if n not in ("direct", "direct-http")]
    p50 = [_get(lat, n, "added_ttft_ms", "p50") or 0 for n in names]
    p99 = [_get(lat, n, "added_ttft_ms", "p99") or 0 for n in names]
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], p50, 0.4, label="p50")
    ax.bar([x + 0.2 for x in xs], p99, 0.4, label="p99")
    ax.axhline(3, color="green", ls="--", lw=1, label="target p50 (3 ms)")
    ax.set_xticks(list(xs), names)
    ax.set_ylabel("ms over direct SDK")
    ax.set_title("Added time to first token (c=1, paced)")
    ax.legend(fontsize=8)

    ax = axes[0][1]
    names = [n for n in tput if n != "direct-http"]  # the rig ceiling would dwarf the rest
    keys = [k for k in ("c32_stream", "c32_nonstream", "c128_stream", "c128_nonstream")
            if any(k in tput[n] for n in names)] or sorted({k for n in names for k in tput[n]})  # fmt: skip
    w = 0.8 / max(1, len(keys))
    for i, k in enumerate(keys):
        ax.bar([x + i * w - 0.4 + w / 2 for x in range(len(names))],
               [_get(tput, n, k, "turns_per_s") or 0 for n in names], w, label=k)  # fmt: skip
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("completed turns / s")
    ceiling = _get(tput, "direct-http", "c32_stream", "turns_per_s")
    ax.set_title("Throughput (instant upstream)"
                 + (f"; rig ceiling {ceiling:.0f}/s not shown" if ceiling else ""))  # fmt: skip
    ax.legend(fontsize=8)

    ax = axes[1][0]
    k = "c32_stream" if "c32_stream" in keys else (keys[0] if keys else None)
    names_cpu = [n for n in names if k and _get(tput, n, k, "cpu_ms_per_turn") is not None]
    ax.bar(names_cpu, [_get(tput, n, k, "cpu_ms_per_turn") for n in names_cpu], color="tab:orange")
    ax.axhline(6, color="green", ls="--", lw=1, label="target (6 ms)")
    ax.set_ylabel("CPU ms per turn")
    ax.set_title(f"CPU per turn of the process under test ({k})")
    ax.legend(fontsize=8)

    ax = axes[1][1]
    hist = res.get("history", {})
    if hist.get("status") == "ok":
        for s in ("window", "full", "none", "summarize", "retrieval"):
            row = hist.get(s, {})
            sizes = [int(z) for z in row if z.isdigit()]
            ax.plot(sizes, [row[str(z)] for z in sizes], marker="o", label=s)
        ax.set_xscale("log")
        ax.set_xlabel("stored messages in the session")
        ax.set_ylabel("turn latency p50, ms")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, f"history growth: {hist.get('status')}", ha="center", va="center",
                wrap=True)  # fmt: skip
        ax.set_axis_off()
    ax.set_title("botrunner: turn cost as history grows")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return None


def write_all(res: dict, out: Path, *, chart: bool = True, update_readme: bool = False) -> None:
    md = render_md(res)
    if chart:
        err = render_png(res, out / "results.png")
        if err:
            res.setdefault("notes", []).append(err)
    (out / "results.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    (out / "results.md").write_text("# Benchmark results\n\n" + md)
    print("\n" + md)
    if update_readme and README.exists():
        text = README.read_text()
        if START in text and END in text:
            new = re.sub(
                re.escape(START) + r".*?" + re.escape(END),
                lambda _m: f"{START}\n{md}{END}",
                text,
                flags=re.S,
            )
            README.write_text(new)
