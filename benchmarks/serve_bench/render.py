"""The service load report's renderings: Markdown and PNG are pure functions of the JSON dict, so any old report
re-renders (`distilbert-deploy serve-bench render REPORT.json`)."""
from __future__ import annotations

from pathlib import Path

from benchmarks.report_io import pyplot, save_png, write_atomic, write_files
from runtimes.hardware import isa_text

from .report import BATCHING, CEILING_AT, CEILING_FRACTION, NO_BATCHING, OURS, table_cell, ceiling_figures, load_report


def _peers_section(d: dict) -> list[str]:
    runs, failures = d["runs"], d.get("failures", ())
    if not any(r["label"] not in OURS for r in runs) and not failures:
        return []
    L = ["", "## Peers under the same load", "",
         "The same artifact and the same tweets, one engine at a time, each started, measured and stopped in turn "
         "(throughput req/s, p50 / p99 ms per concurrency; startup = spawn to ready; memory = resident set of the "
         "engine's whole process tree after its steps).", "",
         "| engine | " + " | ".join(f"c={c}" for c in sorted({s['concurrency'] for r in runs for s in r['steps']}))
         + " | startup s | memory MiB |"]
    conc = sorted({s["concurrency"] for r in runs for s in r["steps"]})
    L.append("|---|" + "---|" * (len(conc) + 2))
    for r in runs:
        if r["label"] == NO_BATCHING:
            continue
        by = {s["concurrency"]: s for s in r["steps"]}
        cells = [f"{by[c]['throughput_rps']:.1f} ({_ms(by[c]['p50_ms'])} / {_ms(by[c]['p99_ms'])})"
                 + (f", {by[c]['errors']} err" if by[c]["errors"] else "") if c in by else "–" for c in conc]
        L.append(f"| {r.get('engine', r['label'])} ({r['label']}) | " + " | ".join(cells)
                 + f" | {_f(r['ready_s'])} | {_f(r.get('rss_mb'), 0)} |")
    for f in failures:
        L.append(f"| {f['label']} | **failed**: {table_cell(f['error'])} |" + " |" * (len(conc) + 1))
    said = {r["label"]: [x for x in (r.get("note"), f"served `{r['served']}`" if r.get("served") else "",
                                     f"listened on {', '.join(r['listening'])}" if r.get("listening") else "") if x]
            for r in runs if r["label"] not in OURS}
    notes = [f"- **{label}**: " + "; ".join(parts) for label, parts in said.items() if parts]  # older reports: none
    L += [""] + notes if notes else []
    for f in failures:
        L += ["", f"### Peer failure: {f['label']}", "", "```", f["error"].strip(), "```"]
    return L


# ---------------------------------------------------------------- rendering (pure functions of the dict)

def _f(x, digits: int = 1) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _ms(x) -> str:
    if x is None:
        return "–"
    return f"{x:.2f}" if x < 10 else f"{x:.1f}"


def _verdict(met) -> str:
    return {True: "**met**", False: "**not met**", None: "not measured"}[met]


def _paired_section(p: dict | None, endpoint: str, over: str = "") -> list[str]:
    L = ["", f"## Paired latency at concurrency 1{over} (in-process and service, side by side)", ""]
    if p is None:
        return L + ["Not measured in this run (it runs against the batching server)."]
    grpc = p.get("protocol") == "oip-grpc-text"
    call = "gRPC `ModelInfer` (one BYTES `text`)" if grpc else f"`POST {endpoint}`"
    kind = "gRPC" if grpc else "HTTP"
    conn = "one gRPC channel" if grpc else "one keep-alive connection"
    wire = "gRPC, protobuf" if grpc else "HTTP, JSON"
    L += [f"The latency target is judged here, not on the locust c=1 step above: with the {p['configuration']} server "
          f"up ({p['when']}), this process loaded the same artifact in-process ({p['threads'] or 'default'} threads) "
          f"and, on the same held-out texts one at a time, alternated one in-process call and one "
          f"{call} over {conn}, swapping which goes first every pair. "
          f"Both sides of a pair are measured within milliseconds of each other, so a slow moment of the shared "
          f"machine slows both alike and cancels out of the difference (what it does not cancel is a lasting "
          f"difference between the two processes' runtimes, e.g. where their threads run). "
          f"The service side is client side (request sent to answer read: {wire}, tokenizing, the batcher and "
          f"the runtime in the server process).", "",
          f"| | in-process | service ({kind}) | service − in-process |", "|---|---|---|---|",
          f"| p50 ms | {_ms(p['inprocess_p50_ms'])} | {_ms(p['service_p50_ms'])} | {_diff(p['p50_diff_ms'])} |",
          f"| p90 ms | {_ms(p['inprocess_p90_ms'])} | {_ms(p['service_p90_ms'])} | "
          f"{_diff(None if p['pairs'] == 0 else p['service_p90_ms'] - p['inprocess_p90_ms'])} |",
          f"| median of the per-pair differences, ms | – | – | {_diff(p['median_diff_ms'])} |", "",
          f"{p['pairs']} pairs in {p['duration_s']:.1f} s after {p['warmup_pairs']} untimed warm-up pairs; stopped by "
          f"its {p['stopped_by']} bound (at most {p['max_pairs']} pairs or {p['max_s']:g} s); {p['requests']} {kind} "
          f"requests over {p['connections']} {'channel' if grpc else 'connection'}(s), {p['errors']} errors."]
    if p["error_messages"]:
        L += ["", "Errors (first few): " + "; ".join(f"`{e}`" for e in p["error_messages"])]
    return L


def _diff(x) -> str:
    return "–" if x is None else f"{x:+.2f}"


def to_markdown(d: dict) -> str:
    env, cfg, m, load = d["environment"], d["config"], d["method"], d["load"]
    cpu = env.get("cpu", {})
    flags = isa_text(cpu)
    git = env.get("git", {})
    lib = env.get("libraries", {})
    libs = ", ".join(f"{k} {v}" for k, v in lib.items() if k != "distilbert-deploy")
    ceiling, inproc_p50 = ceiling_figures(d["ceilings"])
    L = [f"# Service load benchmark: `{d['model']}` {d['task']} ({d['backend']} {d['precision']})", "",
         f"Created {d['created']} by `{d['command']}`.", "",
         f"- **Machine**: {cpu.get('model')}, {cpu.get('physical_cores')} cores / {cpu.get('logical_cpus')} threads "
         f"({cpu.get('usable_cpus')} usable), flags: {flags}; load average at start {cpu.get('load_average_1_5_15')}"
         f", at end {env.get('load_average_end')}. The load generator, the server's event loop and the runtime "
         f"share these CPUs.",
         f"- **Software**: Python {env.get('python')}, {libs}; git {str(git.get('sha'))[:12]}"
         + (" (dirty)" if git.get("dirty") else ""),
         f"- **Service**: `{m['serve_command']}` with `--max-batch-size {cfg['batch_size']}` (batching) or "
         f"`--max-batch-size 1` (no batching); one server process at a time, stopped with SIGTERM.",
         f"- **Load**: {load['tool']} {load['version']} headless, `{load['user_class']}`, closed loop (each user sends "
         f"its next request when the answer is in, so concurrency = users); one text per request to "
         f"`POST {load['endpoint']}`; {load['texts']} held-out tweets ({load['text_source']}), mean "
         f"{load['mean_chars']:.0f} characters, cycled in order; 127.0.0.1 only.",
         f"- **Steps**: {m['steps']}",
         f"- **Figures**: {m['figures']}",
         f"- **Ceiling**: {m['ceiling']}",
         f"- **Paired c=1 latency**: {m['paired']}", ""]
    L += ["## Targets", "", "| target | measured | verdict |", "|---|---|---|"]
    for t in d["targets"]:
        L.append(f"| {t['text']} | {t['measured']} | {_verdict(t['met'])} |")
    L += ["", "## Results", "",
          "| configuration | concurrency | requests | throughput req/s | of ceiling | p50 ms | p90 ms | p99 ms | "
          "errors | mean batch (server) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in d["runs"]:
        for s in r["steps"]:
            frac = f"{s['throughput_rps'] / ceiling:.0%}" if ceiling else "–"
            mb = s["server"].get("mean_batch_size")
            L.append(f"| {r['label']} (max batch {r['max_batch_size']}) | {s['concurrency']} | {s['requests']} | "
                     f"{_f(s['throughput_rps'])} | {frac} | {_ms(s['p50_ms'])} | {_ms(s['p90_ms'])} | "
                     f"{_ms(s['p99_ms'])} | {s['errors']} | {_f(mb, 2)} |")
    if ceiling:
        L.append(f"| in-process ceiling | – | – | {_f(ceiling)} texts/s | "
                 f"100% | {_ms(inproc_p50)} (one text) | – | – | – | – |")
    on = {s["concurrency"]: s for r in d["runs"] if r["label"] == BATCHING for s in r["steps"]}
    off = {s["concurrency"]: s for r in d["runs"] if r["label"] == NO_BATCHING for s in r["steps"]}
    both = sorted(set(on) & set(off))
    if both:
        L += ["", "Batching on / off, throughput: " + ", ".join(
            f"c={c}: {on[c]['throughput_rps'] / off[c]['throughput_rps']:.2f}x" if off[c]["throughput_rps"] else
            f"c={c}: –" for c in both) + "."]
    L += _peers_section(d)
    L += _paired_section(d.get("paired"), load["endpoint"])
    if d.get("paired_grpc"):
        L += _paired_section(d["paired_grpc"], load["endpoint"], " over gRPC")
    L += ["", "## In-process ceiling", "",
          "Texts/s of the same pipeline in three ways: `chunks` (calls of the max batch of texts, in corpus order), "
          "`one-by-one` (one text per call), `sorted` (all texts in one call: sorted by length, then batched); the "
          "ceiling is the best of them.", "",
          "| run | batch size | threads | chunks texts/s | one-by-one texts/s | sorted texts/s | ceiling | "
          "one text p50 ms | one text p90 ms | calls (chunks / one text / sorted) |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for c in d["ceilings"]:
        mo = c["modes_texts_per_s"]
        L.append(f"| {c['when']} | {c['batch_size']} | {c['threads'] or 'default'} | {_f(mo.get('chunks'))} | "
                 f"{_f(mo.get('one-by-one'))} | {_f(mo.get('sorted'))} | {_f(c['throughput_texts_per_s'])} "
                 f"({c['best_mode']}) | {_ms(c['single_p50_ms'])} | {_ms(c['single_p90_ms'])} | "
                 f"{len(c['chunk_ms'])} / {len(c['single_ms'])} / {len(c['sorted_pass_ms'])} |")
    L += ["", "## Server side (from `/metrics`, whole step including warm-up)", "",
          "| configuration | concurrency | batches | mean rows per batch | inference ms per batch | inference ms per "
          "row | queue wait ms per row | padding | server time ms per request | CPU cores: server / load generator |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for r in d["runs"]:
        for s in r["steps"]:
            v = s["server"]
            pad = f"{v['padding_fraction']:.0%}" if v.get("padding_fraction") is not None else "–"
            per_row = (v["mean_inference_ms"] / v["mean_batch_size"] if v.get("mean_inference_ms") is not None
                       and v.get("mean_batch_size") else None)
            L.append(f"| {r['label']} | {s['concurrency']} | {v.get('batches', '–')} | {_f(v.get('mean_batch_size'), 2)}"
                     f" | {_ms(v.get('mean_inference_ms'))} | {_ms(per_row)} | {_ms(v.get('mean_queue_wait_ms'))} | "
                     f"{pad} | {_ms(v.get('mean_request_ms'))} | {_f(v.get('server_cpu_cores'), 2)} / "
                     f"{_f(v.get('load_generator_cpu_cores'), 2)} |")
    L += ["", "## Servers", "", "| configuration | command | ready after s | exit code after SIGTERM |",
          "|---|---|---|---|"]
    for r in d["runs"]:
        L.append(f"| {r['label']} | `{r['command']}` | {_f(r['ready_s'])} | "
                 f"{r['exit_code'] if r['exit_code'] is not None else 'killed'} |")
    L += ["", "## Locust's own figures (cross-check; locust rounds latencies to whole ms, 2 significant digits "
              "above 100 ms)", "",
          "| configuration | concurrency | requests | failures | p50 ms | p90 ms | p99 ms |", "|---|---|---|---|---|---|---|"]
    for r in d["runs"]:
        for s in r["steps"]:
            lc = s["locust"]
            n = {k: "–" if lc.get(k) is None else f"{lc[k]:g}"
                 for k in ("requests", "failures", "p50_ms", "p90_ms", "p99_ms")}
            L.append(f"| {r['label']} | {s['concurrency']} | {n['requests']} | {n['failures']} | {n['p50_ms']} | "
                     f"{n['p90_ms']} | {n['p99_ms']} |")
    if d.get("notes"):
        L += ["", "## Notes", ""] + [f"- {n}" for n in d["notes"]]
    return "\n".join(L) + "\n"


def plot(d: dict, path: Path) -> bool:
    """Throughput vs concurrency (batching on and off, the ceiling as a line) and p50/p99 latency vs concurrency.
    Returns False when matplotlib is missing (the JSON and Markdown are still written)."""
    plt = pyplot()
    if plt is None:
        return False

    ceiling, inproc_p50 = ceiling_figures(d["ceilings"])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.6))
    styles = {BATCHING: ("tab:blue", "o"), NO_BATCHING: ("tab:orange", "s")}
    conc = sorted({s["concurrency"] for r in d["runs"] for s in r["steps"]})
    for r in d["runs"]:
        color, marker = styles.get(r["label"], ("tab:gray", "^"))
        pts = sorted((s["concurrency"], s) for s in r["steps"])
        xs = [c for c, _ in pts]
        name = f"{r['label']} (max batch {r['max_batch_size']})"
        ax1.plot(xs, [s["throughput_rps"] for _, s in pts], marker=marker, color=color, label=name)
        ax2.plot(xs, [s["p50_ms"] for _, s in pts], marker=marker, color=color, label=f"{name} p50")
        ax2.plot(xs, [s["p99_ms"] for _, s in pts], marker=marker, color=color, linestyle="--",
                 label=f"{name} p99")
    if ceiling:
        ax1.axhline(ceiling, color="tab:green", linestyle=":", label=f"in-process ceiling ({ceiling:.0f} texts/s)")
        ax1.axhline(ceiling * CEILING_FRACTION, color="tab:green", linestyle="-", alpha=0.3,
                    label=f"{CEILING_FRACTION:.0%} of the ceiling (target at c={CEILING_AT})")
    if inproc_p50:
        ax2.axhline(inproc_p50, color="tab:green", linestyle=":", label=f"in-process p50, one text "
                                                                         f"({inproc_p50:.2f} ms)")
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        if conc:
            ax.set_xticks(conc, [str(c) for c in conc])
        ax.set_xlabel("concurrency (closed-loop users)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    ax1.set_ylim(bottom=0)
    ax1.set_ylabel("throughput (answers/s)")
    ax1.set_title("Throughput")
    ax2.set_yscale("log")
    ax2.set_ylabel("latency, client side (ms)")
    ax2.set_title("Latency p50 (solid) and p99 (dashed)")
    fig.suptitle(f"{d['model']} {d['task']} served ({d['backend']} {d['precision']}) — "
                 f"{d['environment'].get('cpu', {}).get('model', '')}, {d['created']}", fontsize=9)
    fig.tight_layout()
    save_png(fig, path)
    return True


def write_all(d: dict, out_dir: Path, name: str = "serve-bench") -> dict[str, Path]:
    """JSON, Markdown and PNG, each written atomically (the Markdown is rendered before anything is written)."""
    return write_files(d, out_dir, name, to_markdown, plot)


def render(report_path: Path, out_dir: Path | None = None) -> dict[str, Path]:
    """Re-render a report's Markdown and PNG from its JSON (validated first)."""
    d = load_report(report_path).to_dict()
    out_dir = Path(out_dir) if out_dir else Path(report_path).parent
    name = Path(report_path).stem
    paths = {"md": out_dir / f"{name}.md", "png": out_dir / f"{name}.png"}
    write_atomic(paths["md"], to_markdown(d).encode())
    if not plot(d, paths["png"]):
        paths.pop("png")
    return paths
