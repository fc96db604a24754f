"""The selection report: selection.json (everything), selection.md (one row per candidate, peer and baseline, and
why each loser lost), selection.png (p50 per workload)."""
from __future__ import annotations

import json
from pathlib import Path

from runtimes.artifact import write_file_atomic, write_text_atomic
from runtimes.hardware import CPU_CLASS_NAMES


def _ms(x) -> str:
    return "–" if x is None else (f"{x:.3g}" if x < 10 else f"{x:.1f}")


def _verdict(v) -> str:
    return {True: "pass", False: "**fail**", None: "–"}[v]


def to_markdown(d: dict) -> str:
    sel, cpu, ws = d["selection"], d["cpu"], d["workloads"]
    win = next(r for r in d["candidates"] if r["id"] == d["winner"])
    base = next((r for r in d["candidates"] if r["id"] == "torch-eager-fp32"), None)
    L = [f"# Selection: `{d['model']}` {d['task']} on {cpu['model']} ({cpu['class']})", "",
         f"Created {d['created']} by `{d['command']}` in {d['seconds']:.0f} s"
         + (f" (budget {d['budget_s']:g} s)" if d.get("budget_s") else "") + ".", "",
         f"- **CPU class**: {CPU_CLASS_NAMES.get(cpu['class'], cpu['class'])}; {cpu.get('logical_cpus')} logical CPUs; "
         f"flags: {', '.join(cpu['flags'])}",
         f"- **Winner**: `{d['winner']}`: {win['recipe']['why']}; selected by measurement, ranked by "
         f"`{d['rank']}` (p50)",
         "- **Runner-up**: " + (f"`{sel['runner_up']}`, {sel['ratio_to_runner_up']:.2f}x slower"
                                if sel["runner_up"] else "none passed both corpora"),
         "- **Against the best peer** (best peer p50 / winner p50): " + "; ".join(
             f"{w}: {v['ratio']:.2f}x ({v['id']})" for w, v in sel["best_peer"].items()),
         "- **Against the best peer that passes parity**: " + ("; ".join(
             f"{w}: {v['ratio']:.2f}x ({v['id']})" for w, v in sel.get("best_passing_peer", {}).items()) or
             "no peer passed (or none was judged)"),
         "- **Against PyTorch eager fp32**: " + "; ".join(f"{w}: {v:.2f}x" for w, v in sel["vs_baseline"].items()),
         "", "## Targets", "", "| target | value | limit | verdict | detail |", "|---|---|---|---|---|"]
    for t in d["targets"]:
        v = "–" if t["value"] is None else f"{t['value']:.2f}x"
        L.append(f"| {t['target']} | {v} | {t['limit']:g}x | {_verdict(t['passed'])} | {t['detail']} |")
    L += _profiles_section(d.get("profiles") or [])
    L += ["", "## Every target, one interleaved run", "",
          "p50 ms (p99 in brackets) per workload; parity on the ci corpus (screen) and the full held-out corpus "
          "(finalists).", "",
          "| target | kind | parity ci | parity full | " + " | ".join(f"`{w}`" for w in ws) + " | result |",
          "|---|---|---|---|" + "---|" * len(ws) + "---|"]
    for r in d["candidates"]:
        cells = [f"{_ms(r['p50'].get(w))} ({_ms(r['p99'].get(w))})" if r.get("p50", {}).get(w) is not None else "–"
                 for w in ws]
        if r["id"] == d["winner"]:
            why = "**winner**"
        elif r["kind"] == "candidate":
            why = sel["losers"].get(r["id"], "")
        elif r.get("status") == "skipped":
            why = f"not timed: {r.get('reason', '')}"
        else:
            p, w0 = r["p50"].get(d["rank"]), win["p50"].get(d["rank"])
            why = f"{w0 / p:.2f}x the winner's speed on {d['rank']}" if p and w0 else ""
            if r.get("ci") is False:
                why += f"; fails parity: {r.get('reason', '')}"
        name = f"**{r['id']}**" if r["id"] == d["winner"] else r["id"]
        L.append(f"| {name} | {r['kind']} | {_verdict(r.get('ci')) if r['kind'] != 'baseline' else ''} | "
                 f"{_verdict(r.get('full')) if r['kind'] == 'candidate' else ''} | " + " | ".join(cells) +
                 f" | {why} |")
    L += ["", "## Method", ""]
    for w, desc in d["bench"]["workloads"].items():
        L.append(f"- `{w}`: {desc or 'a fixed shape: seeded random ids, every token real'}")
    m = d["bench"]["method"]
    L += [f"- timing: {m.get('timer')}; {m.get('stopping')}; {m.get('interleaving')}",
          "- peers: plain `nncf.quantize` defaults (peer-ov-nncf), plain `quantize_dynamic(weight_type=QInt8)` "
          "(peer-ort-qdynamic), optimum's ORTQuantizer preset for this CPU (peer-optimum-ortq), torch.compile "
          "(torch-compile-fp32); PyTorch eager fp32 is the baseline.",
          "- parity: the parity suite's corpora, tolerances and verdict rules (`distilbert-deploy parity`); a "
          "candidate that crashed or failed is never selected.", ""]
    if base is None:
        L.append("PyTorch eager fp32 was not timed in this run.")
    return "\n".join(L) + "\n"


def _profiles_section(profiles: list[dict]) -> list[str]:
    if not profiles:
        return []
    L = ["", "## Where the time goes, on the workloads where a target was missed", "",
         "The winner and the best peer, each profiled alone at the workload's mean padded shape (seeded random ids, "
         "every token real) as our runtime runs it: a bucketed IR at its bucket, OpenVINO at the artifact's "
         "inference precision (`benchmarks/optimize/profiles.py`). The call is timed with the profiler off, side by "
         "side; the operators' µs a call come from the profiler, whose own cost differs by tool (ONNX Runtime's "
         "adds several µs a node), so compare shares within a row, and calls across rows.", ""]
    for e in profiles:
        L += [f"**`{e['workload']}`** at {e['shape']}" + (f": {e['reading']}" if e.get("reading") else ""), "",
              "| target | call µs | tool | ran at | operators µs (profiled call µs) | matrix multiplies | largest "
              "operators, µs (share) |", "|---|---|---|---|---|---|---|"]
        for p in e["targets"]:
            if "error" in p:
                L.append(f"| {p['id']} | – | – | – | – | – | not profiled: {p['error']} |")
                continue
            ops = "; ".join(f"{o['op']} {o['us']:.0f} ({o['share']:.0%})" for o in p["ops"])
            call = f"{p['wall_us']:.0f}" if p.get("wall_us") is not None else "–"
            L.append(f"| {p['id']} | {call} | {p['tool']} | {p['ran_at']} | {p['node_us']:.0f} "
                     f"({p['profiled_wall_us']:.0f}) | {p['gemm_share']:.0%} | {ops} |")
        L.append("")
    return L[:-1]


def plot(d: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ws = d["workloads"]
    rows = [r for r in d["candidates"] if r.get("p50")]
    fig, axes = plt.subplots(1, len(ws), figsize=(4.2 * len(ws), 0.32 * len(rows) + 1.6), squeeze=False)
    colors = {"candidate": "#9aa5b1", "peer": "#e8a23a", "baseline": "#4a78b5"}
    for ax, w in zip(axes[0], ws):
        rs = sorted([r for r in rows if r["p50"].get(w) is not None], key=lambda r: r["p50"][w], reverse=True)
        ax.barh([r["id"] for r in rs], [r["p50"][w] for r in rs],
                color=["#2e9e5b" if r["id"] == d["winner"] else colors.get(r["kind"], "#999") for r in rs])
        ax.set_title(w, fontsize=9)
        ax.set_xlabel("p50 ms")
        ax.tick_params(axis="y", labelsize=7)
    fig.suptitle(f"{d['task']} on {d['cpu']['model']} ({d['cpu']['class']}): winner {d['winner']} (green), peers "
                 f"(orange), PyTorch (blue)", fontsize=9)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def write_all(d: dict, out: Path, name: str = "selection") -> dict[str, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / f"{name}.json", "md": out / f"{name}.md", "png": out / f"{name}.png"}
    write_file_atomic(paths["json"], (json.dumps(d, indent=2, default=str) + "\n").encode())
    write_text_atomic(paths["md"], to_markdown(d))
    plot(d, paths["png"])
    return paths
