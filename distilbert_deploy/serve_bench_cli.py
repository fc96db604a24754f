"""Command line: `distilbert-deploy serve-bench {run,realsize,render}` (what `make bench-serve` runs).
Exit codes: 0 ok (the targets are reported, met or not); 2 bad input, or the service could not be measured."""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


from benchmarks.serve_bench.config import ServeBenchConfig, quick


def _ints(s: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in s.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{s}' is not a comma-separated list of integers") from None


def add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("artifact", type=Path, nargs="?",
                   help="a text-classification artifact (default: artifacts/MODEL/text-classification/onnxruntime-fp32)")
    p.add_argument("--model", default="default", help="for the default artifact path")
    p.add_argument("--concurrency", type=_ints, help="closed-loop users per step (default 1,4,16,64)")
    p.add_argument("--batch-size", type=int, help="--max-batch-size of the batching configuration (default 16)")
    p.add_argument("--queue-delay-ms", type=float, help="--max-queue-delay-ms (default 2, the service's default)")
    p.add_argument("--max-queue", type=int, help="--max-queue rows (default 256: above every step's concurrency)")
    p.add_argument("--instances", type=int, help="--instances (default 1)")
    p.add_argument("--threads", type=int, help="--threads, ORT intra-op threads per instance (default: the "
                                               "backend's own)")
    p.add_argument("--no-spin", dest="spin", action="store_false", help="the service runs with --no-spin")
    p.add_argument("--max-padding", type=float, help="--max-padding of the service (default: the service's own)")
    p.add_argument("--ceiling-threads", type=int, help="the in-process ceiling's threads (default: as --threads)")
    p.add_argument("--paired-warmup-pairs", type=int, help="untimed pairs before the paired c=1 latency (default 20)")
    p.add_argument("--paired-max-pairs", type=int, help="paired c=1 latency: at most this many pairs (default 400)")
    p.add_argument("--paired-max-s", type=float, help="paired c=1 latency: at most this many seconds (default 20)")
    p.add_argument("--warmup-s", type=float, help="seconds of warm-up per step (default 3)")
    p.add_argument("--duration-s", type=float, help="measured seconds per step (default 15)")
    p.add_argument("--max-requests", type=int, help="measured requests per step at most (default 20000)")
    p.add_argument("--texts", type=int, help="held-out tweets to cycle through (default 2000: all)")
    p.add_argument("--port", type=int, help="server port on 127.0.0.1 (default: a free one)")
    p.add_argument("--peer", action="append", default=[],
                   help="also measure ray-1, ray-2 (Ray Serve replicas), triton (the bundled tritonserver), kserve, "
                        "kserve-grpc (KServe ModelServer, REST / gRPC), infinity (infinity-emb, optimum engine); "
                        "repeatable or comma-separated; none = our service only (default: none)")
    p.add_argument("--grpc", action="store_true", help="also drive our batching server over OIP v2 gRPC "
                                                       "(--grpc-port; ModelInfer with one BYTES text)")
    p.add_argument("--quick", action="store_true", help="short steps and few texts (CI smoke test)")
    p.add_argument("--out", type=Path, default=Path("reports/serve-bench"))
    p.add_argument("--name", default="serve-bench", help="writes OUT/NAME.{json,md,png}")
    p.add_argument("--cmdline", help=argparse.SUPPRESS)  # the command recorded in the report (make sets it)


def _command() -> str:
    return shlex.join(["distilbert-deploy", *sys.argv[1:]])


def config_from_args(a) -> ServeBenchConfig:
    artifact = a.artifact or Path("artifacts") / a.model / "text-classification" / "onnxruntime-fp32"
    over = {k: v for k, v in dict(concurrency=a.concurrency, batch_size=a.batch_size, queue_delay_ms=a.queue_delay_ms,
                                  max_queue=a.max_queue, instances=a.instances, threads=a.threads,
                                  max_padding=a.max_padding, spin=a.spin,
                                  ceiling_threads=a.ceiling_threads, warmup_s=a.warmup_s, duration_s=a.duration_s,
                                  max_requests=a.max_requests, texts=a.texts, port=a.port,
                                  paired_warmup_pairs=a.paired_warmup_pairs, paired_max_pairs=a.paired_max_pairs,
                                  paired_max_s=a.paired_max_s).items() if v is not None}
    peers = tuple(x for p in a.peer for x in p.split(",") if x.strip() and x.strip() != "none")
    cfg = ServeBenchConfig(artifact=artifact, out=a.out, name=a.name, command=a.cmdline or _command(), peers=peers,
                           grpc=a.grpc,
                           **({} if a.quick else over))
    return quick(cfg, **over) if a.quick else cfg


def cmd_run(a) -> int:
    from benchmarks.serve_bench.netns import into_private_network, private_network
    from benchmarks.serve_bench.render import to_markdown, write_all
    from benchmarks.serve_bench.runner import run_serve_bench

    cfg = config_from_args(a)
    if any(p.startswith("ray") for p in cfg.peers) and not private_network():
        into_private_network()
    rep = run_serve_bench(cfg, lambda msg: print(msg, file=sys.stderr, flush=True))
    d = rep.to_dict()
    paths = write_all(d, cfg.out, cfg.name)
    print(to_markdown(d))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    if rep.failures:  # written first: the report shows them as rows; the exit status says it too
        from benchmarks.serve_bench.config import ServeBenchError

        raise ServeBenchError(f"{len(rep.failures)} peer(s) asked for could not be measured: "
                              + "; ".join(f"{f.label}: {f.error.splitlines()[0][:300]}" for f in rep.failures)
                              + f" (see {paths['md']})")
    return 0


def cmd_realsize(a) -> int:
    from benchmarks.serve_bench.realsize import RealSizeConfig, quick, run_realsize, to_markdown, write

    peers = tuple(x for p in a.peer for x in p.split(",") if x.strip() and x.strip() != "none")
    over = {k: v for k, v in dict(tokens=a.tokens, texts=a.texts, warmup_s=a.warmup_s,
                                  duration_s=a.duration_s).items() if v is not None}
    cfg = RealSizeConfig(artifact=a.artifact, peers=peers, out=a.out, name=a.name, command=a.cmdline or _command(),
                         **over)
    if a.quick:
        cfg = quick(cfg)
    d = run_realsize(cfg, lambda msg: print(msg, file=sys.stderr, flush=True))
    paths = write(d, cfg.out, cfg.name)
    print(to_markdown(d))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    if d["failures"]:
        from benchmarks.serve_bench.config import ServeBenchError

        raise ServeBenchError("real-size case: " + "; ".join(f"{f['label']} could not be measured" for f in
                                                              d["failures"]) + f" (see {paths['md']})")
    return 0


def cmd_render(a) -> int:
    from benchmarks.serve_bench.render import render

    paths = render(a.report, a.out)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def add_parsers(sub) -> None:
    """`distilbert-deploy serve-bench run|render` (the CLI's one error policy: DeployError -> one line, exit 2)."""
    p = sub.add_parser("serve-bench", help="the service load benchmark (make bench-serve)", description=__doc__)
    actions = p.add_subparsers(required=True, metavar="ACTION")
    r = actions.add_parser("run", help="run the service load benchmark")
    add_run_args(r)
    r.set_defaults(run=cmd_run)
    q = actions.add_parser("realsize", help="the real-size case: dim-768 DistilBERT at 16..128 tokens, c=1, with "
                                            "plain transformers alongside")
    q.add_argument("artifact", type=Path, help="a text-classification artifact of a dim-768 DistilBERT (default "
                                               "model: artifacts/base-random/text-classification/onnxruntime-fp32)")
    q.add_argument("--tokens", type=_ints, help="token counts, [CLS] and [SEP] included (default 16,32,64,128)")
    q.add_argument("--texts", type=int, help="texts per token count (default 32)")
    q.add_argument("--warmup-s", type=float, help="seconds of warm-up per step (default 2)")
    q.add_argument("--duration-s", type=float, help="measured seconds per step (default 8)")
    q.add_argument("--peer", action="append", default=[], help="also measure infinity, kserve, kserve-grpc at c=1")
    q.add_argument("--quick", action="store_true", help="short steps (smoke test)")
    q.add_argument("--out", type=Path, default=Path("reports/serve-bench"))
    q.add_argument("--name", default="realsize", help="writes OUT/NAME.{json,md}")
    q.add_argument("--cmdline", help=argparse.SUPPRESS)
    q.set_defaults(run=cmd_realsize)
    n = actions.add_parser("render", help="re-render REPORT.json's Markdown and PNG")
    n.add_argument("report", type=Path)
    n.add_argument("--out", type=Path, help="directory (default: beside the report)")
    n.set_defaults(run=cmd_render)

