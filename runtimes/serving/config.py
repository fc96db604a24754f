"""ServeConfig: every knob of the service, built once from the CLI (or a test) and validated without I/O."""
from __future__ import annotations

import re
from dataclasses import MISSING, dataclass, fields
from pathlib import Path

from ..errors import ConfigError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class ServeConfig:
    artifacts: tuple[Path, ...] = ()
    names: tuple[str, ...] = ()  # one per artifact; default: the artifact directory's name
    repository: Path | None = None  # every DIR/<name>/manifest.json is a model called <name>
    host: str = "127.0.0.1"
    port: int = 8000
    grpc_port: int | None = None  # OIP v2 gRPC (inference.GRPCInferenceService) on host:grpc_port; None = off
    max_batch_size: int = 16
    max_queue_delay_ms: float = 2.0
    max_queue: int = 256  # rows (texts, QA windows, raw batch rows) queued per model
    max_padding: float = 0.1  # padding a batch may add, as a fraction of its tokens (1 = any)
    max_batch_tokens: int | None = None  # padded tokens (rows x longest) per batch; None = no budget
    tokenizer_threads: int | None = None  # threads that parse, tokenize and finish requests; None = min(4, CPUs)
    instances: int = 1
    threads: int | None = None  # intra-op threads per instance; None = the backend's default
    device: str = "cpu"  # cuda: onnxruntime's CUDA provider, TensorRT engines
    cuda_graphs: bool = False  # tensorrt: one CUDA graph per (profile, shape)
    spin: bool | None = None  # onnxruntime: False = threads sleep between operators (frees cores for the event loop)
    timeout_s: float = 30.0  # a request's deadline, from arrival
    drain_timeout_s: float = 30.0
    max_body_bytes: int = 8 << 20
    max_request_items: int = 256  # texts (or raw batch rows) in one request
    api_key_env: str | None = None  # name of the environment variable holding the API key
    allow_unjudged: bool = False
    warmup: bool = True

    def __post_init__(self):
        if not self.artifacts and self.repository is None:
            raise ConfigError("nothing to serve: give artifact directories or --repository DIR")
        if self.names and len(self.names) != len(self.artifacts):
            raise ConfigError(f"--name was given {len(self.names)} times for {len(self.artifacts)} artifacts; give one "
                              f"name per artifact, in order, or none")
        for n in self.names:
            if not NAME.match(n):
                raise ConfigError(f"model name '{n}' is not allowed: use letters, digits, '_', '.' and '-' "
                                  f"(up to 128), starting with a letter or digit")
        for key in ("grpc_port", "max_batch_tokens", "tokenizer_threads"):
            v = getattr(self, key)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < (0 if key == "grpc_port" else 1)):
                raise ConfigError(f"{key} must be a positive integer (or unset); got {v!r}")
        if self.grpc_port is not None and self.grpc_port == self.port and self.port != 0:
            raise ConfigError(f"--grpc-port {self.grpc_port} is the HTTP --port too; give gRPC a port of its own")
        for key, low in (("port", 0), ("max_batch_size", 1), ("max_queue", 1), ("instances", 1),
                         ("max_body_bytes", 1024), ("max_request_items", 1)):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < low:
                raise ConfigError(f"{key} must be an integer >= {low}; got {getattr(self, key)!r}")
        if self.max_queue < self.max_batch_size:
            raise ConfigError(f"max_queue ({self.max_queue}) must be >= max_batch_size ({self.max_batch_size}): "
                              f"the queue has to hold one full batch")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1; got {self.threads}")
        if not 0 <= self.max_padding <= 1:
            raise ConfigError(f"max_padding is a fraction of a batch's tokens in [0, 1]; got {self.max_padding}")
        if self.max_queue_delay_ms < 0:
            raise ConfigError(f"max_queue_delay_ms must be >= 0; got {self.max_queue_delay_ms}")
        for key in ("timeout_s", "drain_timeout_s"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{key} must be > 0; got {getattr(self, key)}")


DEFAULTS = {f.name: f.default for f in fields(ServeConfig) if f.default is not MISSING}  # the CLI's defaults
