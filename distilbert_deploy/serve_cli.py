"""`distilbert-deploy serve`: its flags, built from ServeConfig's defaults, and the command."""
from __future__ import annotations

from pathlib import Path

from runtimes.errors import InputError


def add_parser(sub) -> None:
    s = sub.add_parser("serve", help="serve artifacts over OIP v2 REST (Triton/KServe clients) and a task endpoint",
                       description="Serve verified artifacts: OIP v2 REST (/v2/...) and gRPC (--grpc-port), the "
                                   "pipeline-style task endpoint (/v1/models/NAME/predict), OpenAI embeddings "
                                   "(/v1/embeddings) and Prometheus /metrics, with dynamic batching. "
                                   "Exit 0 after a graceful drain (SIGTERM/SIGINT); 2 on a bad or refused artifact.")
    s.add_argument("artifact", type=Path, nargs="*", help="artifact directories; each is a model named by its directory")
    s.add_argument("--name", action="append", default=[], help="model name for each artifact, in order (repeatable)")
    s.add_argument("--repository", type=Path, help="also serve every DIR/<model name>/ artifact (a model repository)")
    from runtimes.serving.config import DEFAULTS as SD  # defaults defined once, in ServeConfig

    s.add_argument("--host", default=SD["host"], help="bind address of HTTP and gRPC (default: loopback only)")
    s.add_argument("--port", type=int, default=SD["port"])
    s.add_argument("--grpc-port", type=int, default=SD["grpc_port"],
                   help="also serve OIP v2 over gRPC (inference.GRPCInferenceService, tritonclient.grpc) on this port")
    s.add_argument("--max-batch-size", type=int, default=SD["max_batch_size"],
                   help="rows per batch (texts, QA windows, raw rows)")
    s.add_argument("--max-batch-tokens", type=int, default=SD["max_batch_tokens"],
                   help="padded tokens (rows x longest row) per batch (TEI's token budget); default: no budget")
    s.add_argument("--max-queue-delay-ms", type=float, default=SD["max_queue_delay_ms"],
                   help="how long the oldest queued row waits for its batch to fill")
    s.add_argument("--max-padding", type=float, default=SD["max_padding"],
                   help="padding a batch may add, as a fraction of its tokens (rows of other lengths wait for their "
                        "own batch); 1 = any")
    s.add_argument("--max-queue", type=int, default=SD["max_queue"],
                   help="rows queued per model; beyond it: 503 + Retry-After (gRPC: RESOURCE_EXHAUSTED)")
    s.add_argument("--instances", type=int, default=SD["instances"],
                   help="runtime instances per model, one worker thread each")
    s.add_argument("--threads", type=int, default=SD["threads"], help="intra-op threads per instance (default: the backend's)")
    s.add_argument("--tokenizer-threads", type=int, default=SD["tokenizer_threads"],
                   help="threads that parse, tokenize and finish requests off the event loop (default: min(4, CPUs))")
    s.add_argument("--device", default=SD["device"], choices=["cpu", "cuda"], help="cuda: TensorRT engines, ORT's CUDA provider")
    s.add_argument("--cuda-graphs", action="store_true", help="tensorrt: capture and replay one CUDA graph per shape")
    s.add_argument("--no-spin", dest="spin", action="store_const", const=False,
                   help="onnxruntime: intra-op threads sleep between operators instead of spin-waiting (leaves the "
                        "cores to the event loop under load; costs single-request latency)")
    s.add_argument("--timeout-s", type=float, default=SD["timeout_s"], help="a request's deadline; past it: 504")
    s.add_argument("--drain-timeout-s", type=float, default=SD["drain_timeout_s"], help="how long a drain may take on SIGTERM")
    s.add_argument("--max-body-bytes", type=int, default=SD["max_body_bytes"], help="larger bodies get 413")
    s.add_argument("--max-request-items", type=int, default=SD["max_request_items"], help="texts per request; more get 413")
    s.add_argument("--api-key-env", metavar="VAR", help="require the key in this environment variable "
                                                        "(Authorization: Bearer KEY; gRPC: the same metadata); "
                                                        "health stays open")
    s.add_argument("--allow-unjudged", action="store_true",
                   help="serve artifacts with no parity verdict (with a warning); failed ones are always refused")
    s.add_argument("--engine", default="uvicorn", choices=["uvicorn", "ray"],
                   help="ray: the same app as a Ray Serve deployment (extra `ray`; in this repo .venv-ray)")
    s.add_argument("--replicas", type=int, default=1, help="ray: replicas, each loading and verifying the artifacts")
    s.add_argument("--autoscale", metavar="MIN:MAX", help="ray: autoscale between MIN and MAX replicas")
    s.add_argument("--ray-address", help="ray: join this cluster (e.g. auto, or HEAD:6379) instead of starting one")
    s.set_defaults(run=cmd_serve)


def cmd_serve(args) -> int:
    import logging

    import importlib.util

    from runtimes.errors import BackendUnavailable

    if missing := [m for m in ("fastapi", "uvicorn", "prometheus_client") if importlib.util.find_spec(m) is None]:
        raise BackendUnavailable("serve", missing=missing, hint="pip install 'distilbert-deploy[serve]' (in this repo: "
                                                                 "make venv EXTRAS=...,serve)")
    from runtimes.serving.config import DEFAULTS, ServeConfig

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = ServeConfig(artifacts=tuple(args.artifact), names=tuple(args.name), repository=args.repository,
                      **{k: getattr(args, k) for k in DEFAULTS if k not in ("artifacts", "names", "repository",
                                                                            "warmup")})
    if args.engine == "ray":
        if importlib.util.find_spec("ray") is None:
            raise BackendUnavailable("ray", missing=["ray"], hint="pip install 'distilbert-deploy[ray]' (in this repo: "
                                                                 "make venv-ray, then .venv-ray/bin/distilbert-deploy)")
        from runtimes.serving.ray_serve import run

        return run(cfg, args.replicas, args.autoscale, args.ray_address)
    if args.replicas != 1 or args.autoscale or args.ray_address:
        raise InputError("--replicas, --autoscale and --ray-address are Ray Serve options. Fix: add --engine ray")
    from runtimes.serving.server import serve

    return serve(cfg)
