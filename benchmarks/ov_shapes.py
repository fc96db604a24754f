"""Why OpenVINO's dynamic-shape model loses on real text: one OpenVINO IR artifact at fixed batch-1 shapes, dynamic
against a static model compiled for that shape, then the dynamic model fed texts of random lengths (a new shape
nearly every call). `python -m benchmarks.ov_shapes ARTIFACT [ARTIFACT...]`; docs/optimize/README.md."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def feed(length: int) -> dict:
    ids = np.random.default_rng(0).integers(1000, 30000, size=(1, length)).astype(np.int64)
    ids[:, 0], ids[:, -1] = 101, 102
    return {"input_ids": ids, "attention_mask": np.ones_like(ids)}


def median_ms(request, f, n: int) -> float:
    for _ in range(5):
        request.infer(f)
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        request.infer(f)
        ts.append(time.perf_counter() - t)
    return float(np.median(ts) * 1e3)


def main(argv=None) -> int:
    import openvino as ov

    from runtimes.artifact import read_manifest
    from runtimes.hardware import cpu_class, cpu_info
    from runtimes.openvino_backend import precision_hint

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("artifact", type=Path, nargs="+")
    p.add_argument("--lengths", default="16,32,64,128")
    p.add_argument("--calls", type=int, default=80)
    a = p.parse_args(argv)
    cpu = cpu_info()
    print(f"{cpu['model']} ({cpu_class(cpu)}), openvino {ov.get_version()}")
    core = ov.Core()
    for path in a.artifact:
        m = read_manifest(path)
        model = core.read_model(str(path / m.model_file))
        cfg = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision_hint(m)}
        dyn = core.compile_model(model, "CPU", cfg).create_infer_request()
        cells = []
        for n in (int(x) for x in a.lengths.split(",")):
            fixed = model.clone()
            fixed.reshape({"input_ids": [1, n], "attention_mask": [1, n]})
            st = core.compile_model(fixed, "CPU", cfg).create_infer_request()
            cells.append(f"1x{n}: dynamic {median_ms(dyn, feed(n), a.calls):.2f} / static {median_ms(st, feed(n), a.calls):.2f} ms")
        lengths = np.random.default_rng(1).integers(10, 60, 100)
        t = time.perf_counter()
        for n in lengths:
            dyn.infer(feed(int(n)))
        cells.append(f"random lengths 10-60: dynamic {(time.perf_counter() - t) / len(lengths) * 1e3:.2f} ms a call")
        print(f"{path.name}: " + "; ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
