"""The benchmark report's renderings: Markdown and PNG are pure functions of the JSON dict, so any old report
re-renders (`distilbert-deploy bench render REPORT.json`)."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from runtimes.hardware import isa_text

from benchmarks.report_io import pyplot, save_png, write_atomic, write_files

from .report import judged_speed_targets, load_report, ms_text, ratios, realtext_speedups


def _rate(x) -> str:
    if not x:
        return "–"
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _mb(x) -> str:
    return "–" if x is None else f"{x / 2**20:.1f}"


SCENARIO_TITLES = {"latency": "Latency at a fixed shape", "sweep": "Sweep over batch size and sequence length",
                   "realtext": "Real text (tweets)", "throughput": "Throughput at a batch size",
                   "coldstart": "Cold start (new process: start, imports, load, first inference)",
                   "select": "Selection workloads (distilbert-deploy optimize)"}


def to_markdown(d: dict) -> str:
    env, m = d["environment"], d["method"]
    cpu = env.get("cpu", {})
    flags = isa_text(cpu)
    gpu = env.get("gpu")
    git = env.get("git", {})
    lib = env.get("libraries", {})
    libs = ", ".join(f"{k} {v}" for k, v in lib.items() if k != "distilbert-deploy")
    rat = ratios(d)
    base = d["baseline"]
    have_base = any(t["id"] == base and t["status"] == "ok" for t in d["targets"])
    L = [f"# Benchmark: `{d['model']}` {d['task']}", "",
         f"Created {d['created']} by `{d['command']}`.", "",
         f"- **Machine**: {cpu.get('model')}, {cpu.get('physical_cores')} cores / {cpu.get('logical_cpus')} "
         f"threads ({cpu.get('usable_cpus')} usable), ISA: {flags}; load average at start "
         f"{cpu.get('load_average_1_5_15')}" + (f"; GPU: {gpu}" if gpu else "; no GPU"),
         f"- **Software**: Python {env.get('python')}, {libs}; git {str(git.get('sha'))[:12]}"
         + (" (dirty)" if git.get("dirty") else ""),
         f"- **Method**: timer `{m['timer']}`; {m['warmup']}; {m['stopping']}; {m['interleaving']}; percentiles: "
         f"numpy `{m['percentile_method']}`; threads: {m.get('threads')}",
         f"- **Ratios**: speed-up = `{base}` p50 / target p50 on the same workload in this run (> 1 is faster)"
         + ("" if have_base else f" — `{base}` was not measured in this run, so there are no ratios"), ""]
    L += speed_targets_section(d)
    scenarios = [s for s in SCENARIO_TITLES if any(r["scenario"] == s for r in d["results"])]
    for s in scenarios:
        rows = [r for r in d["results"] if r["scenario"] == s]
        L += [f"## {SCENARIO_TITLES[s]}", ""]
        if s == "coldstart":
            L += ["| target | runs | total s (p50) | start-up s | load s | first inference s | peak RSS MB |",
                  "|---|---|---|---|---|---|---|"]
            for r in rows:
                e = r["extra"]
                med = lambda k: ms_text(sorted(e[k])[len(e[k]) // 2]) if e.get(k) and None not in e[k] else "–"
                L.append(f"| `{r['target']}` | {r['stats']['n']} | {r['stats']['p50_ms'] / 1e3:.2f} | "
                         f"{med('startup_s')} | {med('load_s')} | {med('first_infer_s')} | "
                         f"{_mb(max(e.get('peak_rss_bytes') or [0]) or None)} |")
            L.append("")
            continue
        L += ["| target | workload | mean ms | p50 ms | p90 ms | p99 ms | std ms | seq/s | tokens/s | "
              f"speed-up vs {base} | n |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            st = r["stats"]
            x = rat.get((s, r["workload"], r["target"]))
            L.append(f"| `{r['target']}` | {r['workload']} | {ms_text(st['mean_ms'])} | {ms_text(st['p50_ms'])} | "
                     f"{ms_text(st['p90_ms'])} | {ms_text(st['p99_ms'])} | {ms_text(st['std_ms'])} | {_rate(st['sequences_per_s'])} | "
                     f"{_rate(st['tokens_per_s'])} | {f'{x:.2f}x' if x else '–'} | {st['n']} |")
        if s == "realtext":
            L += ["", realtext_summary(d, rows)]
        L.append("")
    L += ["## Targets", "", "| target | kind | backend | precision | device | launcher | timer (copies timed?) | "
          "model MB | load s | peak RSS MB | threads |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for t in d["targets"]:
        if t["status"] != "ok":
            continue
        mem = t["memory"]
        rss = _mb(mem.get("peak_rss_bytes")) + ("" if t["launcher"] == "subprocess" else " (shared)")
        copies = {None: "n/a", True: "yes", False: "no"}[t["includes_copies"]]
        threads = t["describe"].get("threads", "default")
        ran = t["describe"].get("inference_precision")
        ran = str(ran).replace("<Type: '", "").replace("'>", "") if ran else None
        prec = t["precision"] + (f" (OpenVINO runs {ran})" if ran and ran not in ("f32", "float32") else "")
        L.append(f"| `{t['id']}` | {t['kind']} | {t['backend']} | {prec} | {t['device']} | {t['launcher']} | "
                 f"`{t['timer']}` ({copies}) | {_mb(t['model_size_bytes'])} | {ms_text(t['load_s'])} | {rss} | "
                 f"{threads if threads is not None else 'default'} |")
    skipped = [t for t in d["targets"] if t["status"] != "ok"]
    if skipped:
        L += ["", "## Skipped", ""] + [f"- `{t['id']}`: {t['reason']}" for t in skipped]
    if d.get("accuracy"):
        L += ["", "## Accuracy (from the parity report)", "", "| target | accuracy | delta vs torch fp32 | "
              "label agreement | source |", "|---|---|---|---|---|"]
        for tid, a in d["accuracy"].items():
            f = lambda v: "–" if v is None else f"{v:.4f}"
            L.append(f"| `{tid}` | {f(a.get('accuracy'))} | {f(a.get('accuracy_delta'))} | "
                     f"{f(a.get('label_agreement'))} | {a.get('source', '')} |")
    if d.get("notes"):
        L += ["", "## Notes", ""] + [f"- {n}" for n in d["notes"]]
    return "\n".join(L) + "\n"


def _verdict(met) -> str:
    return {True: "**met**", False: "**not met**", None: "not judged"}[met]


def speed_targets_section(d: dict) -> list[str]:
    """The Markdown of the run's speed targets: the JSON's, or (a report written before they were recorded)
    judged here from its results."""
    ts = d.get("speed_targets") or [asdict(t) for t in judged_speed_targets(d)]
    if not ts:
        return []
    L = ["## Speed targets", ""] + [f"- `{i}`: {text}" for i, text in dict((t["id"], t["text"]) for t in ts).items()]
    L += ["", "| speed target | judged for | measured | verdict |", "|---|---|---|---|"]
    L += [f"| `{t['id']}` | `{t['target']}` | {t['measured']} | {_verdict(t['met'])} |" for t in ts]
    return L + [""]


def realtext_summary(d: dict, rows: list) -> str:
    if not rows:
        return ""
    r0 = rows[0]
    sp, best = realtext_speedups(d), realtext_speedups(d, "best_pass")
    lines = [f"Requests: {r0['extra'].get('description', '')}. Mean real tokens per request "
             f"{r0['tokens_per_call']:.1f}; padded tokens per request: "
             + ", ".join(f"{r['padding']} {r['padded_tokens_per_call']:.1f}"
                         for r in rows if r["target"] == r0["target"]) + ".", "",
             "| target | dynamic vs fixed (mean) | bucket vs fixed (mean) | dynamic vs fixed (best pass) | "
             "bucket vs fixed (best pass) |", "|---|---|---|---|---|"]
    f = lambda v, p: f"{v[p]:.2f}x" if v and p in v else "–"
    for t, v in sp.items():
        b = best.get(t)
        lines.append(f"| `{t}` | {f(v, 'dynamic')} | {f(v, 'bucket')} | {f(b, 'dynamic')} | {f(b, 'bucket')} |")
    lines.append("")
    lines.append("(time with every request padded to the fixed length / time with that padding, on the same "
                 "requests in the same run; mean: mean latency per request over all passes; best pass: the fastest "
                 "whole pass over the requests)")
    return "\n".join(lines)


def plot(d: dict, path: Path) -> bool:
    """Latency vs batch size per target (the sweep) and speed vs accuracy (when a parity report was found).
    Returns False when matplotlib is missing (the JSON and Markdown are still written)."""
    plt = pyplot()
    if plt is None:
        return False

    sweep = [r for r in d["results"] if r["scenario"] == "sweep"]
    seqs = sorted({r["sequence"] for r in sweep})[-3:]  # one panel per sequence length (at most 3)
    fig, axes = plt.subplots(1, max(1, len(seqs)) + 1, figsize=(5.2 * (max(1, len(seqs)) + 1), 5.2), squeeze=False)
    axes = list(axes[0])
    ax2 = axes[-1]
    if sweep:
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        markers = "osD^v<>pX*"
        targets = list(dict.fromkeys(r["target"] for r in sweep))
        for ax, s in zip(axes, seqs):
            for k, t in enumerate(targets):
                pts = sorted((r["batch"], r["stats"]["p50_ms"]) for r in sweep if r["target"] == t and r["sequence"] == s)
                if pts:
                    ax.plot(*zip(*pts), marker=markers[k // len(colors) % len(markers)],
                            color=colors[k % len(colors)], label=t)
            batches = sorted({r["batch"] for r in sweep})
            ax.set_xscale("log", base=2)
            ax.set_xticks(batches, [str(b) for b in batches])
            ax.set_yscale("log")
            ax.set_xlabel("batch size")
            ax.set_ylabel("p50 latency per call (ms)")
            ax.set_title(f"Latency vs batch size, sequence {s}")
            ax.grid(True, which="both", alpha=0.3)
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=min(5, len(labels)), fontsize=8, frameon=False)
    else:
        axes[0].text(0.5, 0.5, "no sweep scenario in this report", ha="center", va="center")
        axes[0].set_axis_off()
    lat = {r["target"]: r["stats"]["p50_ms"] for r in d["results"] if r["scenario"] == "latency"}
    acc = {t: a for t, a in d.get("accuracy", {}).items() if t in lat}
    key = "accuracy" if acc and all(a.get("accuracy") is not None for a in acc.values()) else "label_agreement"
    pts = [(lat[t], a.get(key), t) for t, a in acc.items() if a.get(key) is not None]
    if pts:
        for x, y, t in pts:
            ax2.scatter(x, y)
            ax2.annotate(t, (x, y), fontsize=7, xytext=(4, 4), textcoords="offset points")
        xs = [x for x, _, _ in pts]
        if max(xs) > 5 * min(xs):
            ax2.set_xscale("log")
        shape = next((r["workload"] for r in d["results"] if r["scenario"] == "latency"), "")
        ax2.set_xlabel(f"p50 latency, {shape} (ms)")
        ax2.set_ylabel("held-out accuracy" if key == "accuracy" else "label agreement with torch fp32")
        ax2.set_title("Speed vs accuracy (accuracy from the parity report)")
        ax2.grid(True, alpha=0.3)
    else:
        ax2.text(0.5, 0.5, "no parity figures for these targets\n(run `make parity` first)", ha="center",
                 va="center")
        ax2.set_axis_off()
    fig.suptitle(f"{d['model']} {d['task']} — {d['environment'].get('cpu', {}).get('model', '')}, "
                 f"{d['created']}", fontsize=9)
    rows = -(-len(set(r["target"] for r in sweep)) // 5) if sweep else 0
    fig.tight_layout(rect=(0, 0.05 * rows, 1, 1))
    save_png(fig, path)
    return True


def write_all(d: dict, out_dir: Path, name: str = "bench") -> dict[str, Path]:
    """JSON, Markdown and PNG, each written atomically."""
    return write_files(d, out_dir, name, to_markdown, plot)


def render(report_path: Path, out_dir: Path | None = None) -> dict[str, Path]:
    """Re-render a report's Markdown and PNG from its JSON (validated first)."""
    rep = load_report(report_path)
    d = rep.to_dict()
    out_dir = Path(out_dir) if out_dir else Path(report_path).parent
    name = Path(report_path).stem
    md = to_markdown(d)
    paths = {"md": out_dir / f"{name}.md", "png": out_dir / f"{name}.png"}
    write_atomic(paths["md"], md.encode())
    if not plot(d, paths["png"]):
        paths.pop("png")
    return paths
