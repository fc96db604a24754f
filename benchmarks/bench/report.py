"""The benchmark report: typed, versioned JSON (dataclasses) and its renderings. Markdown and PNG are pure
functions of the JSON dict, so any old report re-renders (`distilbert-deploy bench render REPORT.json`)."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from runtimes.artifact import write_file_atomic
from runtimes.errors import ConfigError
from runtimes.hardware import isa_text

import numpy as np

from .stats import Stats

SCHEMA_VERSION = 1
BASELINE = "torch-eager-fp32"  # every ratio is against this target, measured in the same run
# The speed targets judged in a run (a speed target is a benchmark's verdict, never a unit test's assertion).
# Real text: each request padded to its own longest row is >= REALTEXT_SPEEDUP_MIN x faster than every request padded
# to the fixed length (mean latency per request, same requests, same run), on the workload it was set for:
REALTEXT_SPEEDUP_MIN = 3.0
REALTEXT_WORKLOAD = {"realtext_size": 128, "realtext_batch": 8, "realtext_fixed": 128, "realtext_sort": True,
                     "realtext_split": "heldout"}  # BenchConfig's defaults: 128 held-out tweets, sorted, 8 a request


class ReportError(ConfigError):
    """A report file that cannot be read: missing, not JSON, another schema version, or malformed."""


@dataclass(frozen=True)
class TargetInfo:
    id: str
    kind: str  # artifact, torch, ort-default, ov-nncf, optimum-ort, optimum-ov
    artifact: str
    backend: str
    precision: str
    device: str
    launcher: str
    status: str  # "ok" or "skipped"
    reason: str = ""  # why it was skipped
    timer: str = ""
    includes_copies: bool | None = None  # host<->device copies inside the timed region (None: CPU)
    model_size_bytes: int | None = None
    load_s: float | None = None
    memory: dict = field(default_factory=dict)  # peak_rss_bytes, load_rss_delta_bytes, gpu_peak_bytes, note
    describe: dict = field(default_factory=dict)  # backend, versions, threads, providers ...


@dataclass(frozen=True)
class Result:
    scenario: str  # latency, sweep, realtext, throughput, coldstart
    workload: str
    target: str
    batch: int
    sequence: int
    padding: str
    sequences_per_call: float
    tokens_per_call: float  # real tokens
    padded_tokens_per_call: float
    samples_ns: tuple[int, ...]  # every timed call, in order
    stats: Stats
    extra: dict = field(default_factory=dict)  # cold start parts, real-text details


@dataclass(frozen=True)
class SpeedTarget:
    """A speed target judged on one measured target's results of the run (the JSON's `speed_targets`)."""
    id: str  # e.g. "realtext-dynamic"
    target: str  # the measured target (a TargetInfo id) it was judged for
    text: str  # what is asked
    measured: str  # the numbers it was judged on, and why it was not judged when it was not
    ratio: float | None  # the judged figure (None: not measured)
    met: bool | None  # None: not judged in this run (QUICK, or another workload than the target's)


@dataclass(frozen=True)
class BenchReport:
    created: str
    command: str
    model: str
    task: str
    method: dict  # timer, warm-up, stopping rule, interleaving, percentile method
    config: dict
    environment: dict
    targets: tuple[TargetInfo, ...]
    results: tuple[Result, ...]
    accuracy: dict = field(default_factory=dict)  # target id -> figures from a parity report
    notes: tuple[str, ...] = ()
    baseline: str = BASELINE
    speed_targets: tuple[SpeedTarget, ...] = ()  # judged_speed_targets() of the results; absent in older reports
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict:
        d = asdict(self)
        return {"schema_version": d.pop("schema_version"), **d}

    @classmethod
    def from_dict(cls, d: dict, where: str = "report") -> "BenchReport":
        check_header(d, where, SCHEMA_VERSION, "bench.json", "make bench")
        try:
            targets = tuple(TargetInfo(**t) for t in d["targets"])
            results = tuple(Result(**{**r, "samples_ns": tuple(int(x) for x in r["samples_ns"]),
                                      "stats": Stats(**r["stats"])}) for r in d["results"])
            speed = tuple(SpeedTarget(**t) for t in d.get("speed_targets", ()))
            known = {f.name for f in fields(cls)}
            rest = {k: v for k, v in d.items()
                    if k in known and k not in ("targets", "results", "notes", "speed_targets")}
            return cls(**{**rest, "targets": targets, "results": results, "notes": tuple(d.get("notes", ())),
                          "speed_targets": speed})
        except (KeyError, TypeError, ValueError) as e:
            raise ReportError(f"{where}: malformed benchmark report ({type(e).__name__}: {e}). Fix: pass a "
                              f"bench.json written by `make bench`, or re-run it") from None


def load_report(path: str | os.PathLike) -> BenchReport:
    return BenchReport.from_dict(read_json(path, "make bench", "reports/bench.json"), where=str(path))


def read_json(path: str | os.PathLike, made_by: str, writes: str):
    """A report file's parsed JSON; a missing or unreadable file is a ReportError that names the command."""
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"report '{path}' does not exist. Fix: run `{made_by}` (writes {writes}) "
                          f"or pass the path of one")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ReportError(f"report '{path}' is not valid JSON ({e}). It may be truncated. Fix: re-run "
                          f"`{made_by}`") from None


def check_header(d, where: str, version: int, name: str, made_by: str) -> None:
    """A report dict is an object of this schema version, or a ReportError says what to pass instead."""
    if not isinstance(d, dict):
        raise ReportError(f"{where}: expected a JSON object, got {type(d).__name__}. Fix: pass a "
                          f"{name} written by `{made_by}`")
    if d.get("schema_version") != version:
        raise ReportError(f"{where}: schema version {d.get('schema_version')!r} is not supported (this code reads "
                          f"version {version}). Fix: pass a {name} written by this version, or "
                          f"re-run `{made_by}`")


def write_atomic(target: Path, data: bytes) -> None:
    """Temp file beside the target, then rename: a reader never sees half a report."""
    target.parent.mkdir(parents=True, exist_ok=True)
    write_file_atomic(target, data)


# ---------------------------------------------------------------- rendering (pure functions of the dict)

def _ms(x) -> str:
    if x is None:
        return "–"
    return f"{x:.3g}" if x < 10 else f"{x:.1f}"


def _rate(x) -> str:
    if not x:
        return "–"
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _mb(x) -> str:
    return "–" if x is None else f"{x / 2**20:.1f}"


def ratios(d: dict) -> dict[tuple[str, str, str], float | None]:
    """(scenario, workload, target) -> speed-up against the baseline target on the same workload of the same
    run (baseline p50 / target p50); None when the baseline was not measured on that workload."""
    base = {(r["scenario"], r["workload"]): r["stats"]["p50_ms"] for r in d["results"] if r["target"] == d["baseline"]}
    out = {}
    for r in d["results"]:
        b = base.get((r["scenario"], r["workload"]))
        out[r["scenario"], r["workload"], r["target"]] = b / r["stats"]["p50_ms"] if b and r["stats"]["p50_ms"] else None
    return out


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
                med = lambda k: _ms(sorted(e[k])[len(e[k]) // 2]) if e.get(k) and None not in e[k] else "–"
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
            L.append(f"| `{r['target']}` | {r['workload']} | {_ms(st['mean_ms'])} | {_ms(st['p50_ms'])} | "
                     f"{_ms(st['p90_ms'])} | {_ms(st['p99_ms'])} | {_ms(st['std_ms'])} | {_rate(st['sequences_per_s'])} | "
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
                 f"`{t['timer']}` ({copies}) | {_mb(t['model_size_bytes'])} | {_ms(t['load_s'])} | {rss} | "
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


def _best_pass(r: dict) -> float | None:
    passes = r.get("extra", {}).get("pass_seconds")
    return min(passes) if passes else None


def _per_request_min(r: dict, passes: int) -> float | None:
    """Sum over requests of each request's fastest time in the first `passes` passes."""
    n = r.get("extra", {}).get("requests_per_pass")
    xs = r["samples_ns"]
    if not n or len(xs) < n * passes:
        return None
    return float(np.asarray(xs[:n * passes], dtype=np.float64).reshape(passes, n).min(axis=0).sum())


def realtext_speedups(d: dict, stat: str = "mean") -> dict[str, dict[str, float]]:
    """target -> {padding: time with fixed padding / time with this padding}, on the same requests in the same
    run. stat 'mean': mean latency per request (all passes); 'best_pass': the fastest whole pass over the requests
    (least disturbed by neighbours, as timeit's best-of)."""
    rows = [r for r in d["results"] if r["scenario"] == "realtext"]
    out: dict[str, dict[str, float]] = {}
    for t in dict.fromkeys(r["target"] for r in rows):
        mine = [r for r in rows if r["target"] == t]
        if stat == "per_request_min":  # the same number of passes for every padding: no padding gets more tries
            k = min((len(r["samples_ns"]) // max(1, r.get("extra", {}).get("requests_per_pass") or 1)) for r in mine)
            by = {r["padding"]: _per_request_min(r, k) if k else None for r in mine}
        else:
            by = {r["padding"]: (r["stats"]["mean_ms"] if stat == "mean" else _best_pass(r)) for r in mine}
        if by.get("fixed"):
            out[t] = {p: by["fixed"] / v for p, v in by.items() if p != "fixed" and v}
    return out


def _workload_text(w: dict) -> str:
    split = {"heldout": "held-out"}.get(w.get("realtext_split"), w.get("realtext_split"))
    return (f"the first {w.get('realtext_size')} {split} tweets, "
            + ("length-sorted" if w.get("realtext_sort") else "in corpus order")
            + f", {w.get('realtext_batch')} a request, fixed padding {w.get('realtext_fixed')}")


def judged_speed_targets(d: dict) -> list[SpeedTarget]:
    """The run's speed targets, judged on its own results (a pure function of the report dict). Per artifact target
    that ran the realtext scenario: dynamic padding (each request padded to its own longest row) is at least
    REALTEXT_SPEEDUP_MIN x faster than fixed padding, mean latency per request. Judged only on REALTEXT_WORKLOAD and
    never on a QUICK run: there met is None and `measured` says why (the ratio is still given)."""
    rows = [r for r in d["results"] if r["scenario"] == "realtext"]
    if not rows:
        return []
    cfg = d.get("config") or {}
    kinds = {t["id"]: t["kind"] for t in d["targets"]}
    means, best = realtext_speedups(d), realtext_speedups(d, "best_pass")
    fixed = REALTEXT_WORKLOAD["realtext_fixed"]
    text = (f"real text: each request padded to its own longest row is >= {REALTEXT_SPEEDUP_MIN:g}x faster than "
            f"every request padded to {fixed} tokens (mean latency per request, same requests, same run; "
            f"{_workload_text(REALTEXT_WORKLOAD)})")
    if cfg.get("quick"):
        why = "QUICK run (tiny shapes and counts: a smoke test of the harness, not a measurement)"
    elif other := {k: cfg.get(k) for k, v in REALTEXT_WORKLOAD.items() if cfg.get(k) != v}:
        why = "this run's workload is not the target's (" + ", ".join(f"{k}={v}" for k, v in other.items()) + ")"
    else:
        why = ""
    out = []
    for tid in dict.fromkeys(r["target"] for r in rows):
        if kinds.get(tid) != "artifact":  # baselines and peers are references, not what the project ships
            continue
        x = means.get(tid, {}).get("dynamic")
        if x is None:
            out.append(SpeedTarget("realtext-dynamic", tid, text, "not measured (no dynamic and fixed padding rows "
                                                                  "for this target)", None, None))
            continue
        mean = {r["padding"]: r["stats"]["mean_ms"] for r in rows if r["target"] == tid}
        b = best.get(tid, {}).get("dynamic")
        measured = (f"mean {_ms(mean['fixed'])} ms a request padded to {cfg.get('realtext_fixed')} / "
                    f"{_ms(mean['dynamic'])} ms padded to its own length = {x:.2f}x"
                    + (f" (best pass {b:.2f}x)" if b else ""))
        out.append(SpeedTarget("realtext-dynamic", tid, text, measured + (f"; not judged: {why}" if why else ""),
                               x, None if why else x >= REALTEXT_SPEEDUP_MIN))
    return out


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
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


def save_png(fig, path: str | os.PathLike) -> None:
    """A matplotlib figure to PNG, written atomically, then closed."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_atomic(Path(path), buf.getvalue())


def write_files(d: dict, out_dir: Path, name: str, markdown, plot_to) -> dict[str, Path]:
    """A report's JSON, Markdown (markdown(d)) and PNG (plot_to(d, path) -> drawn?), each written atomically."""
    out_dir = Path(out_dir)
    paths = {"json": out_dir / f"{name}.json", "md": out_dir / f"{name}.md", "png": out_dir / f"{name}.png"}
    md = markdown(d)  # render before writing anything: a rendering error leaves no half-written set
    write_atomic(paths["json"], (json.dumps(d, indent=1, ensure_ascii=False) + "\n").encode())
    write_atomic(paths["md"], md.encode())
    if not plot_to(d, paths["png"]):
        paths.pop("png")
    return paths


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
