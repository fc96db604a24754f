"""Quick CPU latency of several ONNX Runtime artifacts IN ONE PROCESS, interleaved, best-of-N.

Rounds cycle through every (artifact, shape) so drift (thermal, neighbours) hits all alike; each
figure is the best and the median over rounds; ratios are against the first artifact (the baseline).

    python -m benchmarks.cpu_quick BASE_DIR OTHER_DIR ... [--rounds 20] [--shapes 1x128,8x128]"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def feeds(shape: tuple[int, int], multiple_choice: bool):
    import numpy as np

    b, s = shape
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 30000, size=(b, 1, s) if multiple_choice else (b, s), dtype=np.int64)
    ids[..., 0], ids[..., -1] = 101, 102
    return {"input_ids": ids, "attention_mask": np.ones_like(ids)}


def run(paths: list[Path], shapes: list[tuple[int, int]], rounds: int, threads: int | None) -> dict:
    from runtimes.base import RuntimeOptions
    from runtimes.registry import load_runtime

    runtimes = {str(p): load_runtime(p, RuntimeOptions(threads=threads)) for p in paths}
    inputs = {s: feeds(s, next(iter(runtimes.values())).manifest.task == "multiple-choice") for s in shapes}
    samples = {(p, s): [] for p in runtimes for s in shapes}
    for rt in runtimes.values():  # warm-up
        for s in shapes:
            for _ in range(2):
                rt.infer(inputs[s])
    for _ in range(rounds):
        for p, rt in runtimes.items():
            for s in shapes:
                t0 = time.perf_counter()
                rt.infer(inputs[s])
                samples[p, s].append(time.perf_counter() - t0)
    base = str(paths[0])
    rows = []
    for (p, s), xs in samples.items():
        best, base_best = min(xs), min(samples[base, s])
        rows.append({"artifact": p, "precision": runtimes[p].manifest.precision,
                     "method": runtimes[p].manifest.recipe.get("method", "export"), "shape": f"{s[0]}x{s[1]}",
                     "best_ms": round(best * 1e3, 2), "median_ms": round(statistics.median(xs) * 1e3, 2),
                     "speedup_vs_base": round(base_best / best, 2), "samples_ms": [round(x * 1e3, 3) for x in xs]})
    for rt in runtimes.values():
        rt.close()
    return {"schema_version": 1, "baseline": base, "rounds": rounds, "threads": threads, "rows": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("artifacts", type=Path, nargs="+", help="first one is the baseline")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--shapes", default="1x128,8x128", help="BATCHxSEQ, comma-separated")
    p.add_argument("--threads", type=int)
    p.add_argument("--json", type=Path, help="also write the report (raw samples included) here")
    a = p.parse_args(argv)
    shapes = [tuple(int(x) for x in s.split("x")) for s in a.shapes.split(",")]
    rep = run(a.artifacts, shapes, a.rounds, a.threads)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(rep, indent=2))
    print(f"| artifact | method | precision | shape | best ms | median ms | speed-up vs {Path(rep['baseline']).name} |")
    print("|---|---|---|---|---|---|---|")
    for r in sorted(rep["rows"], key=lambda r: (r["shape"], r["artifact"])):
        print(f"| {Path(r['artifact']).name} | {r['method']} | {r['precision']} | {r['shape']} | {r['best_ms']} "
              f"| {r['median_ms']} | {r['speedup_vs_base']}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
