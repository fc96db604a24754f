"""Edge artifacts side by side: size against accuracy, judged on this host and on the emulated aarch64.

    python -m benchmarks.edge_report DIR [DIR ...] --out docs/edge [--host-corpus full] [--arm-corpus ci]

For each arm64 artifact: the shipped .ort size against its fp32 parent, how many encoder MatMuls stayed fp32, and
the parity suite's verdict on this host (default: all 2,000 held-out tweets, for accuracy) and on the aarch64 ONNX
Runtime under QEMU (default: the ci corpus; emulation runs fp32 MatMuls ~100x slower than INT8 ones). Both verdicts
are also written into each manifest. Writes OUT/edge.{json,md}. Exit 0 only when every artifact passes on both."""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import shlex
import sys
from pathlib import Path

from runtimes.artifact import read_manifest, write_text_atomic

SCHEMA_VERSION = 1


def _checks(target) -> dict:
    return {c.name: {"value": c.value, "passed": c.passed, "detail": c.detail} for c in target.checks}


def row(path: Path, host, arm) -> dict:
    m = read_manifest(path)
    r = m.recipe
    sizes = r.get("size_bytes", {})
    acc = r.get("accuracy_control", {})
    return {"artifact": str(path), "task": m.task, "method": r.get("method"), "per_channel": r.get("per_channel"),
            "word_embeddings_int8": bool((r.get("word_embeddings") or {}).get("int8")),
            "kept_fp32": len(acc.get("kept_fp32", [])), "quantizable": acc.get("quantizable_nodes"),
            "size_bytes": sizes.get("ort") or sizes.get("onnx"), "parent_bytes": sizes.get("parent_onnx"),
            "host": {"passed": host.passed, "platform": host.platform, "cases": host.cases, "checks": _checks(host),
                     "seconds": host.seconds},
            "arm": {"passed": arm.passed, "platform": arm.platform, "cases": arm.cases, "checks": _checks(arm),
                    "seconds": arm.seconds}}


def _value(side: dict, name: str, fmt: str) -> str:
    c = side["checks"].get(name)
    return "–" if c is None else format(c["value"], fmt)


def to_markdown(d: dict) -> str:
    lines = [f"# Edge artifacts: size against accuracy, on {d['host_cpu']} and on {d['arm_platform']}", "",
             f"Command: `{d['command']}`. Created {d['created']}. Host parity on the `{d['host_corpus']}` corpus, "
             f"emulated aarch64 parity on the `{d['arm_corpus']}` corpus ({d['qemu']}; emulated times are not ARM "
             f"speeds and are not reported).", "",
             "| artifact | method | kept fp32 | shipped size | vs fp32 parent | host: Δacc vs PyTorch | host: label "
             "agreement | host | aarch64: Δacc | aarch64: label agreement | aarch64 |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in d["rows"]:
        h, a = r["host"], r["arm"]
        method = f"{r['method']}{', per-channel' if r['per_channel'] else ''}{', INT8 embeddings' if r['word_embeddings_int8'] else ''}"
        lines.append(f"| `{Path(r['artifact']).name}` | {method} | {r['kept_fp32']} of {r['quantizable']} | "
                     f"{r['size_bytes'] / 1e6:.1f} MB | {r['size_bytes'] / r['parent_bytes']:.0%} | "
                     f"{_value(h, 'accuracy_delta', '+.4f')} | {_value(h, 'label_agreement', '.3f')} | "
                     f"{'pass' if h['passed'] else '**FAIL**'} | {_value(a, 'accuracy_delta', '+.4f')} | "
                     f"{_value(a, 'label_agreement', '.3f')} | {'pass' if a['passed'] else '**FAIL**'} |")
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
    rows = []
    for path in a.artifact:
        (host,) = run_parity(ParityConfig(artifacts=(path,), corpus=a.host_corpus, platforms=(HOST,))).targets
        (arm,) = run_parity(ParityConfig(artifacts=(path,), corpus=a.arm_corpus, platforms=(ARM64,))).targets
        rows.append(row(path, host, arm))
        print(f"{path}: host {'pass' if host.passed else 'FAIL'}, {arm.platform} {'pass' if arm.passed else 'FAIL'}",
              file=sys.stderr)
    d = {"schema_version": SCHEMA_VERSION, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
         "command": shlex.join(["python", "-m", "benchmarks.edge_report",
                                *(sys.argv[1:] if argv is None else argv)]),
         "host_cpu": cpu_info()["model"], "arm_platform": env.platform, "qemu": env.facts.get("qemu"),
         "arm_env": env.describe(), "host_corpus": a.host_corpus, "arm_corpus": a.arm_corpus, "rows": rows}
    a.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(a.out / "edge.json", json.dumps(d, indent=2) + "\n")
    write_text_atomic(a.out / "edge.md", to_markdown(d))
    print(f"wrote {a.out / 'edge.json'} and {a.out / 'edge.md'}")
    return 0 if all(r["host"]["passed"] and r["arm"]["passed"] for r in rows) else 1


if __name__ == "__main__":
    from runtimes.errors import run_main

    raise SystemExit(run_main(main))
