"""How far the aarch64 ONNX Runtime's answers are from x86's for the same artifact and the same tweets.

    python -m benchmarks.arm_drift DIR [DIR ...] [--tweets 24] [--out docs/edge]

Runs the first N held-out tweets (one per call) through the host's onnxruntime and through the emulated aarch64
one (make arm64-env) and reports the largest absolute difference of any output value and how often the argmax of
the first output agrees. Parity judges each platform against PyTorch; this compares the two platforms directly.
Writes OUT/drift.{json,md}."""
from __future__ import annotations

import argparse
import datetime as _dt
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from benchmarks.report_io import parse, write_report
from runtimes.artifact import load_artifact


@dataclass(frozen=True)
class Drift:
    artifact: str
    task: str
    method: str | None
    tweets: int
    max_abs_difference: float  # of any output value, aarch64 against x86
    argmax_agreement: float  # of the first output
    platform: str


@dataclass(frozen=True)
class DriftReport:
    FILE: ClassVar[str] = "drift.json"
    MADE_BY: ClassVar[str] = "python -m benchmarks.arm_drift"
    SCHEMA_VERSION: ClassVar[int] = 1
    created: str
    rows: tuple[Drift, ...]
    command: str
    schema_version: int = SCHEMA_VERSION


def drift(path: Path, n: int) -> Drift:
    from sources.tweets import split
    from runtimes.arm64.runtime import EmulatedArm64Runtime
    from runtimes.registry import load_runtime
    from runtimes.tasks import load_tokenizer

    tok = load_tokenizer(path)
    feeds = []
    for t in split()[1][:n]:
        enc = tok([t.text], return_tensors="np")
        feeds.append({k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask")})
    art = load_artifact(path)
    with load_runtime(path) as host, EmulatedArm64Runtime(art) as arm:
        on_arm = arm.run_feeds(feeds)
        platform = arm.env.platform
        worst, agree = 0.0, 0
        for feed, a in zip(feeds, on_arm):
            if isinstance(a, Exception):
                raise a
            h = host.infer(feed)
            worst = max(worst, *(float(np.abs(a[k] - h[k]).max()) for k in h))
            first = next(iter(h))
            agree += int(np.array_equal(a[first].argmax(-1), h[first].argmax(-1)))
    m = art.manifest
    return Drift(str(path), m.task, m.recipe.get("method"), len(feeds), worst, agree / len(feeds), platform)


def render(doc: dict) -> str:
    d = parse(DriftReport, doc, DriftReport.FILE)
    lines = ["# aarch64 against x86: the same artifact, the same tweets", "", f"Command: `{d.command}`. "
             f"Created {d.created}. Platform: {d.rows[0].platform}.", "",
             "| artifact | method | tweets | max abs difference of any output | argmax agreement |", "|---|---|---|---|---|"]
    lines += [f"| `{r.artifact}` | {r.method} | {r.tweets} | {r.max_abs_difference:.3g} | "
              f"{r.argmax_agreement:.3f} |" for r in d.rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.arm_drift", description=__doc__.split("\n\n")[0])
    ap.add_argument("artifact", type=Path, nargs="+")
    ap.add_argument("--tweets", type=int, default=24)
    ap.add_argument("--out", type=Path, default=Path("reports/edge"))
    a = ap.parse_args(argv)
    d = DriftReport(_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                    tuple(drift(p, a.tweets) for p in a.artifact),
                    " ".join(["python -m benchmarks.arm_drift", *(sys.argv[1:] if argv is None else argv)]))
    paths = write_report(d, a.out, render)
    print(paths["md"].read_text(), end="")
    return 0


if __name__ == "__main__":
    from runtimes.errors import run_main

    raise SystemExit(run_main(main))
