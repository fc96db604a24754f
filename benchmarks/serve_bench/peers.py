"""The engines under load, as launch specs: our service, and the peers (Ray Serve, Triton, KServe ModelServer over
REST and gRPC, infinity-emb), each started from its own venv on 127.0.0.1. A `Launch` says how to start one (argv,
environment, working directory), how to tell it is ready, and which protocol the load generator speaks to it
(locustfile.PROTOCOLS). Nothing heavy is imported here: each peer's libraries live in its own process.

`check_loopback` reads the listening sockets of a server's whole process tree from /proc after it is ready: a peer
that listens on anything but loopback is an error (inside a private network namespace, where only `lo` exists,
every socket is on loopback by construction)."""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from runtimes.artifact import read_manifest
from runtimes import procs
from runtimes.errors import DeployError

from .config import HOST, MODEL_NAME, ServeBenchConfig

REPO = procs.REPO
# the peers that serve each task here (the others answer text-classification only)
TASK_PEERS = {"text-classification": ("ray-1", "ray-2", "triton", "kserve", "kserve-grpc", "infinity"),
              "feature-extraction": ("infinity",)}
INFINITY_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DO_NOT_TRACK": "1",
                "INFINITY_ANONYMOUS_USAGE_STATS": "0", "HF_HUB_DISABLE_TELEMETRY": "1"}


OURS_GRPC = "ours-grpc"  # not a peer: our own service, driven over gRPC


class PeerError(DeployError):
    """A peer that was asked for cannot be started: its venv is missing, or it cannot serve this artifact."""


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    command: str  # what the report shows
    engine: str  # the engine, in words
    model: str  # the model name requests address
    protocol: str  # what the load generator speaks (locustfile.PROTOCOLS)
    port: int  # HTTP port (readiness; REST load)
    env: dict = field(default_factory=dict)  # added to this process's environment
    cwd: Path = REPO
    ready_path: str = "/v2/health/ready"  # GET -> 200 once it serves
    grpc_port: int | None = None  # the gRPC load goes here (protocol oip-grpc-text)
    served: str = ""  # the artifact it serves, when not the run's own (infinity: an ONNX ancestor)
    note: str = ""  # how it was set up, for the report

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


def venv_bin(kind: str, exe: str = "python") -> Path:
    path = procs.venv_bin(kind, exe)
    if not path.is_file():
        raise PeerError(f"peer '{kind}' needs .venv-{kind} (no {path}). Fix: make venv-{kind}, or drop it from "
                        f"--peer / SERVE_BENCH_PEERS")
    return path


def serve_args(cfg: ServeBenchConfig, max_batch_size: int, port: int) -> list[str]:
    """Our serve command line (without the executable)."""
    args = ["serve", str(cfg.artifact), "--name", MODEL_NAME, "--host", HOST, "--port", str(port),
            "--max-batch-size", str(max_batch_size), "--max-queue-delay-ms", f"{cfg.queue_delay_ms:g}",
            "--max-queue", str(cfg.max_queue), "--instances", str(cfg.instances)]
    if cfg.threads is not None:
        args += ["--threads", str(cfg.threads)]
    if not cfg.spin:
        args += ["--no-spin"]
    if cfg.max_padding is not None:
        args += ["--max-padding", f"{cfg.max_padding:g}"]
    return args


def ours(cfg: ServeBenchConfig, max_batch_size: int, port: int, task: str, grpc_port: int | None = None) -> Launch:
    """Our service; with grpc_port, also on OIP v2 gRPC, and the load goes there (ModelInfer, one BYTES `text`)."""
    import sys

    exe = Path(sys.executable).with_name("distilbert-deploy")
    head = [str(exe)] if exe.is_file() else [sys.executable, "-c",
                                            "import sys; from distilbert_deploy.cli import main; sys.exit(main())"]
    args = serve_args(cfg, max_batch_size, port) + (["--grpc-port", str(grpc_port)] if grpc_port else [])
    if grpc_port:
        return Launch(head + args, " ".join(["distilbert-deploy", *args]),
                      "distilbert-deploy serve (OIP v2 gRPC ModelInfer)", MODEL_NAME, "oip-grpc-text", port,
                      grpc_port=grpc_port)
    return Launch(head + args, " ".join(["distilbert-deploy", *args]), "distilbert-deploy serve", MODEL_NAME,
                  "openai-embed" if task == "feature-extraction" else "task", port)


def ray(cfg: ServeBenchConfig, replicas: int, max_batch_size: int, port: int) -> Launch:
    args = [*serve_args(cfg, max_batch_size, port), "--engine", "ray", "--replicas", str(replicas)]
    return Launch([str(venv_bin("ray", "distilbert-deploy")), *args],
                  " ".join([".venv-ray/bin/distilbert-deploy", *args]), f"Ray Serve, {replicas} replica(s)",
                  MODEL_NAME, "task", port)


def triton(cfg: ServeBenchConfig, max_batch_size: int, workdir: Path, port: int, grpc_port: int) -> Launch:
    from exporters.triton_repo import TritonExportConfig, export_triton

    from exporters.triton_server import server_command

    venv_bin("triton")
    repo = workdir / "repository"
    delay_us = int(cfg.queue_delay_ms * 1000)
    export_triton(TritonExportConfig(artifacts=(cfg.artifact,), out=repo, names=(MODEL_NAME,),
                                     max_batch_size=max_batch_size, instances=cfg.instances, python_runtime=True,
                                     max_queue_delay_us=delay_us))
    argv, env, version = server_command(repo, workdir, port, grpc_port)
    return Launch(argv, f"distilbert-deploy export-triton ARTIFACT --python-runtime --max-batch-size {max_batch_size} "
                        f"--max-queue-delay-us {delay_us}; tritonserver --model-repository REPO (nvidia-pytriton "
                        f"{version}'s bundled binary)",
                  "Triton (python backend: this project's runtime; text ensemble)", f"{MODEL_NAME}-text", "oip-text",
                  port, env=env)


def kserve(cfg: ServeBenchConfig, max_batch_size: int, port: int, grpc_port: int, grpc: bool) -> Launch:
    args = ["-m", "benchmarks.serve_bench.kserve_model", str(cfg.artifact), "--name", MODEL_NAME,
            "--http-port", str(port), "--grpc-port", str(grpc_port), "--batch-size", str(max_batch_size)]
    if cfg.threads is not None:
        args += ["--threads", str(cfg.threads)]
    how = "gRPC ModelInfer" if grpc else "REST POST /v2/models/bench/infer"
    return Launch([str(venv_bin("kserve")), *args], " ".join([".venv-kserve/bin/python", *args]),
                  f"KServe ModelServer 0.21 ({how}; a kserve.Model over this project's runtime)", MODEL_NAME,
                  "oip-grpc-text" if grpc else "oip-text", port, grpc_port=grpc_port,
                  note="KServe hard-codes 0.0.0.0 (REST) and [::] (gRPC): kserve_model.loopback() rebinds both to "
                       "127.0.0.1 at start-up; predict is sync (KServe runs it on its event loop, one request at a "
                       "time; ModelServer has no batcher of its own)")


def onnx_source(artifact: Path) -> Path:
    """The artifact itself when it is an ONNX Runtime artifact, else its nearest ONNX ancestor (manifest parents):
    infinity's optimum engine loads ONNX only."""
    seen, path = [], Path(artifact)
    while True:
        m = read_manifest(path)
        seen.append(f"{path} ({m.backend} {m.precision})")
        if m.backend == "onnxruntime":
            return path
        parent = (m.source.get("parent") or {}).get("path")
        if not parent or not Path(parent).is_dir() or len(seen) > 8:
            raise PeerError(f"infinity's optimum engine loads ONNX models only, and no ONNX Runtime artifact was "
                            f"found from {artifact} up its parents ({' -> '.join(seen)}). Fix: keep the fp32 ONNX "
                            f"artifact the optimized one was built from, or drop infinity from the peers")
        path = Path(parent)


def infinity(cfg: ServeBenchConfig, max_batch_size: int, workdir: Path, port: int, task: str) -> Launch:
    exe = venv_bin("infinity", "infinity_emb")
    src = onnx_source(cfg.artifact)
    model = workdir / "model"  # a copy: infinity may write an optimized graph beside its model
    if model.exists():
        shutil.rmtree(model)
    shutil.copytree(src, model, ignore=shutil.ignore_patterns("manifest.json"))
    hf = workdir / "hf-home"  # private: its optimized-graph cache is keyed by the model id, here always "."
    hf.mkdir(exist_ok=True)
    args = ["v2", "--model-id", ".", "--served-model-name", MODEL_NAME, "--engine", "optimum", "--device", "cpu",
            "--host", HOST, "--port", str(port), "--batch-size", str(max_batch_size), "--no-model-warmup",
            "--log-level", "warning"]
    endpoint = "/classify" if task == "text-classification" else "/embeddings"
    served = "" if src == Path(cfg.artifact) else str(src)
    return Launch([str(exe), *args], " ".join(["cd MODEL_COPY &&", ".venv-infinity/bin/infinity_emb", *args]),
                  f"infinity-emb 0.0.78 (--engine optimum, POST {endpoint})", MODEL_NAME,
                  "infinity-classify" if task == "text-classification" else "openai-embed-infinity", port,
                  env={**INFINITY_ENV, "HF_HOME": str(hf)}, cwd=model, ready_path="/models", served=served,
                  note="an absolute --model-id fails with the optimum engine, so it runs in a copy of the ONNX "
                       "artifact with --model-id .; --no-model-warmup, as its warm-up sends 512 words to a "
                       "512-position model untruncated and crashes; offline, with a private HF_HOME; its own ORT "
                       "graph optimization step fails with optimum 2.1 (OptimizationConfig lost "
                       "optimize_with_onnxruntime_only; optimum 1.x needs a torch older than this CPU build) and it "
                       "serves the graph as given, with ONNX Runtime's default session optimizations; it exits on "
                       "SIGTERM by the signal (-15)"
                       + (f"; serves {src} (the ONNX artifact this one was built from)" if served else ""))


def launch(cfg: ServeBenchConfig, peer: str | None, max_batch_size: int, workdir: Path, port: int, grpc_port: int,
           task: str) -> Launch:
    """How to start `peer` (None: our service) on 127.0.0.1:port."""
    if peer is None:
        return ours(cfg, max_batch_size, port, task)
    if peer == OURS_GRPC:
        return ours(cfg, max_batch_size, port, task, grpc_port)
    if peer not in TASK_PEERS.get(task, ()):
        raise PeerError(f"peer '{peer}' is not measured on {task} here (it serves: "
                        f"{', '.join(t for t, ps in TASK_PEERS.items() if peer in ps)}). Fix: --peer "
                        f"{','.join(TASK_PEERS.get(task, ())) or 'none'}")
    if peer.startswith("ray-"):
        return ray(cfg, int(peer.split("-")[1]), max_batch_size, port)
    if peer == "triton":
        return triton(cfg, max_batch_size, workdir, port, grpc_port)
    if peer in ("kserve", "kserve-grpc"):
        return kserve(cfg, max_batch_size, port, grpc_port, grpc=peer == "kserve-grpc")
    if peer == "infinity":
        return infinity(cfg, max_batch_size, workdir, port, task)
    raise PeerError(f"unknown peer '{peer}'")


# ------------------------------------------------------------------------------------------ loopback only

def _hex_addr(s: str) -> str:
    """/proc/net/tcp{,6} local address (little-endian words of hex) -> text."""
    import ipaddress

    raw = bytes.fromhex(s)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw[::-1]))
    ip = ipaddress.IPv6Address(b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
    return f"::ffff:{ip.ipv4_mapped}" if ip.ipv4_mapped is not None else str(ip)


def is_loopback(addr: str) -> bool:
    import ipaddress

    ip = ipaddress.ip_address(addr)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def listening(pids: list[int], net: Path = Path("/proc/net")) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state that one of `pids` holds."""
    inodes: set[str] = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    out = []
    for name in ("tcp", "tcp6"):
        try:
            lines = (net / name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 9 and f[3] == "0A" and f[9] in inodes:  # 0A: TCP_LISTEN
                addr, port = f[1].rsplit(":", 1)
                out.append((_hex_addr(addr), int(port, 16)))
    return sorted(set(out))


def check_loopback(what: str, pids: list[int], private_network: bool) -> list[tuple[str, int]]:
    """The server's listening sockets; a PeerError when one is not on loopback (outside a private namespace)."""
    socks = listening(pids)
    bad = [(a, p) for a, p in socks if not is_loopback(a)]
    if bad and not private_network:
        raise PeerError(f"{what} listens beyond loopback: {', '.join(f'{a}:{p}' for a, p in bad)}. Every engine "
                        f"here must bind 127.0.0.1 only")
    return socks
