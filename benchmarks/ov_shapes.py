"""Why OpenVINO's dynamic-shape model loses on real text: one OpenVINO IR artifact at fixed batch-1 shapes, dynamic
against a static model compiled for that shape, then the dynamic model fed texts of random lengths (a new shape
nearly every call). `--batches`: how a service's batches (every size 1-16, bucketed lengths) should be compiled,
interleaved call by call: the dynamic model, one model per (batch, bucket), or one per bucket with the batch axis
dynamic. `--feeding` (a bucketed artifact): held-out tweets one at a time through the runtime's in-place path
against np.pad + infer(feed), interleaved call by call. `--profile 1xN`: OpenVINO's PERF_COUNT per node type at
that static shape. `--switching N`: a static 1xN model's call alone, then alternating call by call with a second
compiled copy of itself, with a 1x(N+8) model (what a bucketed artifact does on real text), with a sleep, with a
cache-evicting memory sweep; and the dynamic model at 1xN alone and alternating with 1x(N+8). `--bucket-sets
"16,32;64"`: tweets one at a time through the runtime per set of buckets. `--bounded`: static buckets against
bounded dynamic shapes. `python -m benchmarks.ov_shapes ARTIFACT [ARTIFACT...] [--batches] [--feeding]
[--profile 1x16] [--switching 32] [--bucket-sets SETS] [--bounded]`; docs/optimize/README.md."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks.bench.timing import CallHandle, rotated_passes


def feed(length: int, batch: int = 1) -> dict:
    """The bench's synthetic feed (seeded ids between [CLS] and [SEP], every token real) at batch x length."""
    from benchmarks.bench.workloads import build_feeds, fixed

    return build_feeds(fixed(batch, length), {"input_ids": ("batch", "sequence"),
                                              "attention_mask": ("batch", "sequence")})[0]


def median_ms(request, f, n: int) -> float:
    """Median ms of n calls after 5 untimed ones (the harness's call handle)."""
    return float(np.median(CallHandle(request.infer, [f]).run("probe", n, rewarm=5)) / 1e6)


def batch_profile(core, model, cfg, calls: int) -> str:
    """ms per call over mixed (batch, bucket) shapes, the three compile strategies interleaved call by call."""
    rng = np.random.default_rng(2)
    shapes = [(int(rng.choice([1, 2, 3, 4, 6, 8, 12, 16])), int(rng.choice([16, 32, 64]))) for _ in range(calls)]

    def compiled(shape):
        m = model.clone()
        if shape is not None:
            m.reshape({"input_ids": list(shape), "attention_mask": list(shape)})
        return core.compile_model(m, "CPU", cfg).create_infer_request()

    dyn = compiled(None)
    per_bucket = {n: compiled((-1, n)) for _, n in shapes}
    per_shape = {s: compiled(s) for s in set(shapes)}
    ways = {"dynamic": lambda b, n: dyn, f"per (batch, bucket), {len(per_shape)} models": lambda b, n: per_shape[(b, n)],
            f"per bucket, batch dynamic, {len(per_bucket)} models": lambda b, n: per_bucket[n]}
    def mixed(timed):
        for b, n in shapes:
            f = feed(n, b)
            for way, pick in ways.items():
                timed(way, pick(b, n).infer, f)

    # the first pass warms every model and shape up; the second is timed
    spent = rotated_passes({"mixed": mixed}, 1, warm_rounds=1, settle_s=0)
    return "mixed batches: " + ", ".join(f"{w} {sum(spent[w]) / len(shapes) / 1e6:.2f}" for w in ways) + " ms a call"


def tweet_rows(path: Path, max_length: int = 128) -> list[list[int]]:
    """The first 128 held-out tweets' token ids, cut as the artifact's tokenizer cuts them."""
    from sources.tweets import split
    from runtimes.tasks.encoding import load_tokenizer

    texts = [t.text for t in split()[1][:128]]
    return load_tokenizer(path)(texts, truncation=True, max_length=max_length)["input_ids"]


def tweet_feeds(path: Path) -> list[dict[str, np.ndarray]]:
    """Those tweets one at a time, each at its own length."""
    return [{"input_ids": np.array([r], dtype=np.int64), "attention_mask": np.ones((1, len(r)), np.int64)}
            for r in tweet_rows(path)]


def feeding_profile(path: Path, rounds: int) -> str:
    """ms a call on held-out tweets one at a time (bucketed artifact): the runtime (feed written, zero-padded, into
    the bucket model's input tensors) against pad_to_bucket + request.infer(padded), interleaved call by call."""
    from runtimes.openvino_backend import pad_to_bucket
    from runtimes.registry import load_runtime

    rt = load_runtime(path)
    if not rt.buckets:
        return "feeding: not a bucketed artifact (no recipe.runtime_defaults.sequence_buckets)"
    feeds = tweet_feeds(path)

    def padded(f):
        p, _ = pad_to_bucket(f, rt.seq_axis, rt.buckets)
        rt._requests(p)[0].infer(p)

    ways = {"runtime (in place)": rt.infer, "np.pad + infer(feed)": padded}

    def tweets(timed):
        for i, f in enumerate(feeds):
            for way in (list(ways) if i % 2 else list(ways)[::-1]):
                timed(way, ways[way], f)

    spent = rotated_passes({"tweets": tweets}, rounds, warm_rounds=1, settle_s=0)  # the first pass warms up
    rt.close()
    n = rounds * len(feeds)
    return "tweets one at a time: " + ", ".join(f"{w} {sum(spent[w]) / n / 1e6:.2f}" for w in ways) + " ms a call"


def bucket_sets_profile(path: Path, sets: str, rounds: int) -> str:
    """ms a call on held-out tweets one at a time through the runtime, with its buckets replaced by each set in turn
    ("16,24,32;32,64"): more buckets pad less but rotate more compiled models, each with its own packed weights. One
    pass over the tweets per set per round, the sets rotated between rounds, 50 ms idle before each pass."""
    from runtimes.registry import load_runtime

    rt = load_runtime(path)
    if not rt.buckets:
        return "bucket sets: not a bucketed artifact (no recipe.runtime_defaults.sequence_buckets)"
    feeds = tweet_feeds(path)
    choices = [tuple(int(x) for x in one.split(",")) for one in sets.split(";")]
    def with_set(c):
        def one_pass(timed):
            rt.buckets = c + tuple(b for b in (96, 128, 256, 512) if b > c[-1])
            for f in feeds:
                timed(c, rt.infer, f)
        return one_pass

    # round 0 compiles and warms every set's models
    spent = rotated_passes({c: with_set(c) for c in choices}, rounds, warm_rounds=1)
    rt.close()
    return "tweets one at a time by bucket set: " + ", ".join(
        f"{'/'.join(map(str, c))}: mean {np.mean(x) / 1e6:.3f} p50 {np.median(x) / 1e6:.3f}" for c, x in spent.items()) + " ms"


def bounded_profile(core, model, cfg, path: Path, rounds: int) -> str:
    """ms a call on held-out tweets one at a time, the IR called directly: static 8-token buckets (16-64), the dynamic
    IR fed exact lengths, and OpenVINO's bounded dynamic shape [1, 1..64] fed exact and bucket-padded lengths. One
    pass per way per round, rotated, 50 ms idle before each; round 0 compiles and warms."""
    import openvino as ov

    from benchmarks.optimize.candidates import BUCKETS

    rows = tweet_rows(path, max_length=64)
    buckets = tuple(b for b in BUCKETS if b <= 64)  # the shipped buckets the tweets fall into

    def compiled(shape):
        m = model.clone()
        if shape is not None:
            m.reshape({"input_ids": shape, "attention_mask": shape})
        return core.compile_model(m, "CPU", cfg).create_infer_request()

    def padded(row, n):
        ids, mask = np.zeros((1, n), np.int64), np.zeros((1, n), np.int64)
        ids[0, :len(row)], mask[0, :len(row)] = row, 1
        return {"input_ids": ids, "attention_mask": mask}

    def bucket(n):
        return next(b for b in buckets if b >= n)

    static = {b: compiled([1, b]) for b in buckets}
    dyn, bounded = compiled(None), compiled([1, ov.Dimension(1, 64)])
    ways = {"static buckets": lambda r: static[bucket(len(r))].infer(padded(r, bucket(len(r)))),
            "dynamic exact": lambda r: dyn.infer(padded(r, len(r))),
            "bounded 1..64 exact": lambda r: bounded.infer(padded(r, len(r))),
            "bounded 1..64 padded": lambda r: bounded.infer(padded(r, bucket(len(r))))}
    def one_pass(w):
        return lambda timed: [timed(w, ways[w], row) for row in rows]

    spent = rotated_passes({w: one_pass(w) for w in ways}, rounds, warm_rounds=1)
    return "tweets one at a time, the IR called directly: " + ", ".join(
        f"{w} mean {np.mean(x) / 1e6:.3f}" for w, x in spent.items()) + " ms"


def node_profile(core, model, cfg, shape: str, calls: int) -> str:
    """OpenVINO PERF_COUNT at one static shape: mean µs a call per (node type, kernel), the largest first."""
    import collections

    b, n = (int(x) for x in shape.split("x"))
    m = model.clone()
    m.reshape({"input_ids": [b, n], "attention_mask": [b, n]})
    r = core.compile_model(m, "CPU", {**cfg, "PERF_COUNT": True}).create_infer_request()
    f = feed(n, b)
    for _ in range(10):
        r.infer(f)
    spent = collections.Counter()
    for _ in range(calls):
        r.infer(f)
        for p in r.profiling_info:
            if p.status == p.Status.EXECUTED:
                spent[f"{p.node_type} ({p.exec_type})"] += p.real_time.total_seconds() * 1e6 / calls
    total = sum(spent.values())
    return (f"profile {shape}: nodes {total:.0f} µs a call; "
            + ", ".join(f"{k} {v:.0f} µs ({v / total:.0%})" for k, v in spent.most_common(5)))


def switching_profile(core, model, cfg, n: int, rounds: int, calls: int) -> str:
    """Median ms of a static 1xn model's call: alone; alternating call by call with an identical compiled copy (same
    shape, its own packed weights and executor), with the next bucket's model, with an untimed 0.3 ms sleep, with an
    untimed sweep over 16 MB (the L3 evicted, no other model run); and the dynamic model at 1xn alone and
    alternating with 1x(n+8). Only the 1xn calls are timed; the ways run in rotated rounds."""
    def compiled(length):
        m = model.clone()
        if length:
            m.reshape({"input_ids": [1, length], "attention_mask": [1, length]})
        return core.compile_model(m, "CPU", cfg).create_infer_request()

    a, b, c, d = compiled(n), compiled(n), compiled(n + 8), compiled(None)
    fa, fc = feed(n), feed(n + 8)
    sweep = np.ones(2 << 20)  # 16 MB of float64
    ways = {"alone": [(a.infer, fa)], "with a copy": [(a.infer, fa), (b.infer, fa)],
            f"with 1x{n + 8}": [(a.infer, fa), (c.infer, fc)], "with a 0.3 ms sleep": [(a.infer, fa), (time.sleep, 3e-4)],
            "with a 16 MB sweep": [(a.infer, fa), (lambda _: sweep.sum(), None)],
            "dynamic alone": [(d.infer, fa)], f"dynamic with 1x{n + 8}": [(d.infer, fa), (d.infer, fc)]}

    def one_pass(w):
        def run(timed):  # (call, its argument) steps; the first two warm up; the way's first model at 1xn is timed
            steps = ways[w] * (calls // len(ways[w]))
            for i, (call, arg) in enumerate(steps[:2] + steps):
                timed(w, call, arg) if i >= 2 and call == steps[0][0] and arg is fa else call(arg)
        return run

    spent = rotated_passes({w: one_pass(w) for w in ways}, rounds, warm_rounds=0)
    return (f"switching at 1x{n} (the 1x{n} call): "
            + ", ".join(f"{w} {np.median(x) / 1e6:.3f}" for w, x in spent.items()) + " ms")


def main(argv=None) -> int:
    import openvino as ov

    from runtimes.artifact import read_manifest
    from runtimes.hardware import cpu_class, cpu_info
    from runtimes.openvino_backend import precision_hint

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("artifact", type=Path, nargs="+")
    p.add_argument("--lengths", default="16,32,64,128")
    p.add_argument("--calls", type=int, default=80)
    p.add_argument("--batches", action="store_true", help="also the mixed-batch profile (a service's batches)")
    p.add_argument("--feeding", action="store_true", help="also the in-place feeding against np.pad (bucketed)")
    p.add_argument("--profile", metavar="BxS", help="also OpenVINO's PERF_COUNT per node type at this shape")
    p.add_argument("--switching", type=int, metavar="N", help="also the cost of switching between static models")
    p.add_argument("--bucket-sets", metavar="B,B;B,B", help="also tweets one at a time with each set of buckets "
                   "(bucketed artifact; buckets over the set's last stay 96,128,256,512)")
    p.add_argument("--bounded", action="store_true", help="also static buckets against bounded dynamic shapes "
                   "[1, 1..64] on the tweets")
    p.add_argument("--rounds", type=int, default=6, help="--feeding: timed passes over the tweets; --switching: "
                                                         "rounds of --calls calls per way")
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
        spent = rotated_passes({"random": lambda timed: [timed("random", dyn.infer, feed(int(n))) for n in lengths]},
                               1, warm_rounds=0, settle_s=0)["random"]
        cells.append(f"random lengths 10-60: dynamic {sum(spent) / len(lengths) / 1e6:.2f} ms a call")
        if a.batches:
            cells.append(batch_profile(core, model, cfg, a.calls))
        if a.profile:
            cells.append(node_profile(core, model, cfg, a.profile, a.calls))
        if a.feeding:
            cells.append(feeding_profile(path, a.rounds))
        if a.bucket_sets:
            cells.append(bucket_sets_profile(path, a.bucket_sets, a.rounds))
        if a.bounded:
            cells.append(bounded_profile(core, model, cfg, path, a.rounds))
        if a.switching:
            cells.append(switching_profile(core, model, cfg, a.switching, a.rounds, a.calls))
        print(f"{path.name}: " + "; ".join(cells))
    return 0


if __name__ == "__main__":
    from runtimes.errors import run_main

    raise SystemExit(run_main(main))
