"""Edge artifacts side by side: size against accuracy, judged on this host and on the emulated aarch64.

    python -m benchmarks.edge_report DIR [DIR ...] --out docs/edge [--host-corpus full] [--arm-corpus ci]

For each arm64 artifact: the shipped .ort size against its fp32 parent, how many encoder MatMuls stayed fp32, and
the parity suite's verdict on this host (default: all 2,000 held-out tweets, for accuracy) and on the aarch64 ONNX
Runtime under QEMU (default: the ci corpus; emulation runs fp32 MatMuls ~100x slower than INT8 ones). Both verdicts
are also written into each manifest. Writes OUT/edge.{json,md}. Exit 0 only when every artifact passes on both."""
from __future__ import annotations

import argparse
import datetime as _dt
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from benchmarks.report_io import parse, write_report
from runtimes.artifact import read_manifest
from runtimes.errors import ConfigError


@dataclass(frozen=True)
class EdgeCheck:
    value: float
    passed: bool | None  # None: reported, not judged
    detail: str


@dataclass(frozen=True)
class Verdict:
    """The parity suite's verdict on one platform."""
    passed: bool
    platform: str
    cases: int
    checks: dict[str, EdgeCheck]  # check name -> result, in the suite's order
    seconds: float  # on the emulated aarch64 a QEMU time, not an ARM speed


@dataclass(frozen=True)
class EdgeRow:
    artifact: str
    task: str
    method: str  # the quantization method (static, dynamic)
    per_channel: bool
    word_embeddings_int8: bool
    kept_fp32: int  # encoder MatMuls the accuracy control kept fp32
    quantizable: int  # ... of this many quantizable encoder MatMuls
    size_bytes: int  # the shipped model (.ort, else .onnx)
    parent_bytes: int  # the fp32 parent's model.onnx
    host: Verdict
    arm: Verdict


@dataclass(frozen=True)
class EdgeReport:
    FILE: ClassVar[str] = "edge.json"
    MADE_BY: ClassVar[str] = "python -m benchmarks.edge_report"
    SCHEMA_VERSION: ClassVar[int] = 1
    created: str
    command: str
    host_cpu: str
    arm_platform: str
    qemu: str | None  # the emulator's version line, as the environment's env.json records it
    arm_env: dict  # the emulated environment (Arm64Env.describe()), recorded
    host_corpus: str
    arm_corpus: str
    rows: tuple[EdgeRow, ...]
    schema_version: int = SCHEMA_VERSION


def sizes_and_recipe(path: Path) -> dict:
    """An EdgeRow's fields from the manifest of an ORT-quantized artifact (read before any parity run)."""
    m = read_manifest(path)
    r = m.recipe
    sizes, acc = r.get("size_bytes") or {}, r.get("accuracy_control") or {}
    shipped = sizes.get("ort") or sizes.get("onnx")
    if not (shipped and sizes.get("parent_onnx") and "quantizable_nodes" in acc and r.get("method")):
        raise ConfigError(f"{path} is not an accuracy-controlled ORT INT8 artifact: its recipe lacks size_bytes, "
                          f"accuracy_control or method. Fix: pass an arm64 artifact (distilbert-deploy quantize SRC "
                          f"--out DIR --backend onnxruntime --method static --target arm64)")
    return {"artifact": str(path), "task": m.task, "method": r["method"], "per_channel": bool(r.get("per_channel")),
            "word_embeddings_int8": bool((r.get("word_embeddings") or {}).get("int8")),
            "kept_fp32": len(acc.get("kept_fp32", [])), "quantizable": acc["quantizable_nodes"],
            "size_bytes": shipped, "parent_bytes": sizes["parent_onnx"]}


def verdict(target) -> Verdict:
    """A parity TargetReport as the edge report keeps it."""
    return Verdict(target.passed, target.platform, target.cases,
                   {c.name: EdgeCheck(float(c.value), c.passed, c.detail) for c in target.checks}, target.seconds)


def _value(side: Verdict, name: str, fmt: str) -> str:
    c = side.checks.get(name)
    return "–" if c is None else format(c.value, fmt)


def to_markdown(doc: dict) -> str:
    d = parse(EdgeReport, doc, EdgeReport.FILE)
    lines = [f"# Edge artifacts: size against accuracy, on {d.host_cpu} and on {d.arm_platform}", "",
             f"Command: `{d.command}`. Created {d.created}. Host parity on the `{d.host_corpus}` corpus, "
             f"emulated aarch64 parity on the `{d.arm_corpus}` corpus ({d.qemu}; emulated times are not ARM "
             f"speeds and are not reported).", "",
             "| artifact | method | kept fp32 | shipped size | vs fp32 parent | host: Δacc vs PyTorch | host: label "
             "agreement | host | aarch64: Δacc | aarch64: label agreement | aarch64 |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in d.rows:
        h, a = r.host, r.arm
        method = f"{r.method}{', per-channel' if r.per_channel else ''}{', INT8 embeddings' if r.word_embeddings_int8 else ''}"
        lines.append(f"| `{Path(r.artifact).name}` | {method} | {r.kept_fp32} of {r.quantizable} | "
                     f"{r.size_bytes / 1e6:.1f} MB | {r.size_bytes / r.parent_bytes:.0%} | "
                     f"{_value(h, 'accuracy_delta', '+.4f')} | {_value(h, 'label_agreement', '.3f')} | "
                     f"{'pass' if h.passed else '**FAIL**'} | {_value(a, 'accuracy_delta', '+.4f')} | "
                     f"{_value(a, 'label_agreement', '.3f')} | {'pass' if a.passed else '**FAIL**'} |")
    lines += ["", "Δacc: accuracy on the corpus's labelled held-out tweets minus PyTorch fp32's (limit −0.01). "
              "Per-artifact checks, case counts and times are in edge.json; every manifest carries both verdicts "
              "(`distilbert-deploy inspect DIR`)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.edge_report", description=__doc__.split("\n\n")[0])
    ap.add_argument("artifact", type=Path, nargs="+")
    ap.add_argument("--out", type=Path, default=Path("reports/edge"))
    ap.add_argument("--host-corpus", default="full", choices=["ci", "full"])
    ap.add_argument("--arm-corpus", default="ci", choices=["ci", "full"])
    a = ap.parse_args(argv)
    from benchmarks.bench.env import cpu_info
    from benchmarks.parity import ParityConfig, run_parity
    from benchmarks.parity.runner import ARM64, HOST
    from runtimes.arm64.env import locate

    env = locate()
    facts = [sizes_and_recipe(path) for path in a.artifact]  # a wrong artifact fails before the long parity runs
    rows = []
    for path, fields in zip(a.artifact, facts):
        (host,) = run_parity(ParityConfig(artifacts=(path,), corpus=a.host_corpus, platforms=(HOST,))).targets
        (arm,) = run_parity(ParityConfig(artifacts=(path,), corpus=a.arm_corpus, platforms=(ARM64,))).targets
        rows.append(EdgeRow(**fields, host=verdict(host), arm=verdict(arm)))
        print(f"{path}: host {'pass' if host.passed else 'FAIL'}, {arm.platform} {'pass' if arm.passed else 'FAIL'}",
              file=sys.stderr)
    d = EdgeReport(_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                   shlex.join(["python", "-m", "benchmarks.edge_report", *(sys.argv[1:] if argv is None else argv)]),
                   cpu_info()["model"], env.platform, env.facts.get("qemu"), env.describe(), a.host_corpus,
                   a.arm_corpus, tuple(rows))
    paths = write_report(d, a.out, to_markdown)
    print(f"wrote {paths['json']} and {paths['md']}")
    return 0 if all(r.host.passed and r.arm.passed for r in rows) else 1


if __name__ == "__main__":
    from runtimes.errors import run_main

    raise SystemExit(run_main(main))
