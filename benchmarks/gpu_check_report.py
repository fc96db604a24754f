"""The gpu-check summary (summary.json, written by `make gpu-check` on the lent GPU host): its typed schema and the
summary.md rendered from it. Standard library and benchmarks.report_io only, so the bare host can import it."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

from benchmarks.report_io import parse


@dataclass(frozen=True)
class Machine:
    gpu: str
    compute_capability: str  # e.g. sm90
    nvidia_smi: str  # name, driver, memory, compute capability; "" without nvidia-smi
    torch: str
    cuda: str | None
    python: str
    onnxruntime: str
    onnxruntime_providers: tuple[str, ...]
    tensorrt: bool
    tensorrt_rtx: bool
    cpu_count: int | None
    host: str


@dataclass(frozen=True)
class Carried:
    """What `gpu_check.py prepare` packed for the host (its manifest)."""
    created: str
    wheels: tuple[str, ...]
    data_packages: dict[str, str]  # package -> version
    weights: str
    bytes: int


@dataclass(frozen=True)
class StepRecord:
    status: str  # passed, FAILED or not run
    detail: str
    seconds: float
    rc: int | None  # None: not run, or stopped at its time limit


@dataclass(frozen=True)
class TestCase:
    id: str
    outcome: str  # passed, failed, error, skipped
    why: str
    seconds: float


@dataclass(frozen=True)
class GpuTests:
    command: str
    deselected: dict[str, str]  # test id -> why it was not run
    cases: tuple[TestCase, ...]
    counts: dict[str, int]  # passed, failed, error, skipped


@dataclass(frozen=True)
class BenchTarget:
    id: str
    status: str
    reason: str | None
    precision: str | None
    device: str | None


@dataclass(frozen=True)
class BenchRow:
    target: str
    shape: str  # BATCHxSEQ
    p50_ms: float
    p99_ms: float
    n: int
    sequences_per_s: float


@dataclass(frozen=True)
class GpuBench:
    command: str
    rows: tuple[BenchRow, ...]  # from the harness's bench.json, copied beside the summary
    targets: tuple[BenchTarget, ...] = ()


@dataclass(frozen=True)
class LoadStep:
    users: int
    ok: int
    errors: int
    error_messages: tuple[str, ...]
    wall_s: float
    answers_per_s: float
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True)
class GpuServe:
    load: str
    steps: tuple[LoadStep, ...]
    command: str = ""
    ready_s: float | None = None
    gpu_processes: str | None = None
    server_pid: int | None = None
    metrics_delta: dict | None = None
    exit_code: int | None = None
    error: str | None = None  # why the step stopped, when it did


@dataclass(frozen=True)
class GpuCheckSummary:
    FILE: ClassVar[str] = "summary.json"
    MADE_BY: ClassVar[str] = "make gpu-check"
    SCHEMA_VERSION: ClassVar[int] = 1
    created: str
    device: str  # where everything ran: cuda
    machine: Machine
    carried: Carried | None  # None: run without `prepare`'s package
    steps: dict[str, StepRecord]  # in the order they ran
    budget_s: float
    passed: bool  # every step passed
    seconds: float
    tests: GpuTests | None = None
    bench: GpuBench | None = None
    serve: GpuServe | None = None
    schema_version: int = SCHEMA_VERSION


def read_summary(doc, where: str = GpuCheckSummary.FILE) -> GpuCheckSummary:
    return parse(GpuCheckSummary, doc, where)


def render(doc: dict) -> str:
    """summary.md: a pure function of summary.json (validated first)."""
    read_summary(doc)
    m = doc["machine"]
    lines = [f"# gpu-check: {'PASSED' if doc['passed'] else 'FAILED'}", "",
             f"{doc['created']}, {doc['seconds']:.0f} s. Machine: {m['gpu']} ({m['compute_capability']}; "
             f"nvidia-smi: {m['nvidia_smi'] or 'n/a'}), {m['cpu_count']} CPUs, Python {m['python']}, torch "
             f"{m['torch']} (CUDA {m['cuda']}), onnxruntime {m['onnxruntime']} "
             f"({', '.join(m['onnxruntime_providers'])}), "
             f"TensorRT {'yes' if m['tensorrt'] else 'no'}, TensorRT-RTX {'yes' if m['tensorrt_rtx'] else 'no'}.", ""]
    if c := doc.get("carried"):
        lines += [f"Carried (benchmarks/gpu_check.py prepare, {c['created']}): {', '.join(c['wheels'])}; data "
                  f"{', '.join(f'{k} {v}' for k, v in c['data_packages'].items())}. {c['weights']}.", ""]
    lines += ["| step | status | s | detail |", "| --- | --- | ---: | --- |"]
    lines += [f"| {n} | {s['status']} | {s['seconds']:.0f} | {s['detail']} |" for n, s in doc["steps"].items()]
    if t := doc.get("tests"):
        lines += ["", "## GPU tests", "", f"`{t['command']}`", ""]
        lines += [f"- {c['outcome'].upper()} `{c['id']}`: {c['why']}" for c in t["cases"] if c["outcome"] != "passed"]
        lines += [f"- deselected `{k}`: {v}" for k, v in t["deselected"].items()]
        lines.append(f"- {t['counts']['passed']} passed (pytest.log lists every test and its outcome)")
    if (b := doc.get("bench")) and b["rows"]:
        lines += _bench(b)
    if s := doc.get("serve"):
        lines += _serve(s, doc["device"])
    lines += ["", "Logs beside this file: pytest.log (the tests), steps.log (export, bench, parity), serve-server.log."]
    return "\n".join(lines) + "\n"


def _bench(b: dict) -> list[str]:
    shapes = list(dict.fromkeys(r["shape"] for r in b["rows"]))
    table = {(r["target"], r["shape"]): r for r in b["rows"]}
    lines = ["", "## Bench: p50 ms (p99), end-to-end (host arrays in and out, torch.cuda.synchronize)", "",
             f"`{b['command']}`", "", "| target | " + " | ".join(shapes) + " |", "| --- |" + " ---: |" * len(shapes)]
    for target in dict.fromkeys(r["target"] for r in b["rows"]):
        cells = [f"{table[target, s]['p50_ms']:.3f} ({table[target, s]['p99_ms']:.3f})" if (target, s) in table
                 else "–" for s in shapes]
        lines.append(f"| {target} | " + " | ".join(cells) + " |")
    return lines + ["", "Targets: " + "; ".join(f"{t['id']} {t['status']}" + (f" ({t['reason']})" if t.get("reason")
                                                                           else "") for t in b.get("targets", [])),
                    "", "bench.md holds the harness's full report."]


def _serve(s: dict, device: str) -> list[str]:
    lines = ["", f"## Service on --device {device}", "", f"`{s.get('command', '')}`; {s['load']}. Ready in "
             f"{'–' if s.get('ready_s') is None else s['ready_s']} s; exit code after SIGTERM: {s.get('exit_code')}.", "",
             "| clients | answers | errors | answers/s | p50 ms | p99 ms |", "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {x['users']} | {x['ok']} | {x['errors']} | {x['answers_per_s']} | {x['p50_ms']} | {x['p99_ms']} |"
              for x in s["steps"]]
    if s.get("metrics_delta"):
        lines += ["", f"Server /metrics over the load: {json.dumps(s['metrics_delta'])}"]
    lines += ["", f"GPU processes (nvidia-smi; the server is pid {s.get('server_pid')}): "
                  f"{s.get('gpu_processes') or 'none listed'}"]
    return lines + (["", f"Error: {s['error']}"] if s.get("error") else [])
