"""Quick latency check, one process, runtimes interleaved round by round, best-of-N per runtime and shape.
Not the benchmark harness: a sanity ratio of each artifact against the first one (ORT fp32).

python -m benchmarks.openvino_quick DIR [DIR ...] [--shapes 1x128,8x128] [--rounds 20] [--iters 5]"""
from __future__ import annotations

import argparse
import time

import numpy as np


def feed(batch: int, seq: int, multiple_choice: bool) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    shape = (batch, 2, seq) if multiple_choice else (batch, seq)
    return {"input_ids": rng.integers(1000, 30000, shape, dtype=np.int64), "attention_mask": np.ones(shape, np.int64)}


def main(argv: list[str] | None = None) -> None:
    from runtimes.base import RuntimeOptions
    from runtimes.registry import load_runtime

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("artifacts", nargs="+")
    p.add_argument("--shapes", default="1x128,8x128", help="BATCHxSEQUENCE, comma-separated")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--iters", type=int, default=5, help="calls per runtime per round (the best one counts)")
    p.add_argument("--hint", choices=["latency", "throughput"], help="openvino performance hint")
    args = p.parse_args(argv)
    shapes = [tuple(map(int, s.split("x"))) for s in args.shapes.split(",")]
    runtimes = [load_runtime(a, RuntimeOptions(hint=args.hint) if "openvino" in a else RuntimeOptions())
                for a in args.artifacts]
    names = [f"{r.manifest.backend}-{r.manifest.precision}" for r in runtimes]
    for batch, seq in shapes:
        feeds = [feed(batch, seq, r.manifest.task == "multiple-choice") for r in runtimes]
        for r, f in zip(runtimes, feeds):  # warm-up
            for _ in range(3):
                r.infer(f)
        best = [float("inf")] * len(runtimes)
        for _ in range(args.rounds):
            for i, (r, f) in enumerate(zip(runtimes, feeds)):
                for _ in range(args.iters):
                    t = time.perf_counter()
                    r.infer(f)
                    best[i] = min(best[i], time.perf_counter() - t)
        print(f"bs{batch}x{seq}: " + "; ".join(f"{n} {b * 1e3:.2f} ms ({best[0] / b:.2f}x)" for n, b in zip(names, best)))
    for r in runtimes:
        r.close()


if __name__ == "__main__":
    main()
