"""The KServe peer: our artifact served by KServe's own ModelServer through a `kserve.Model` that calls the task
layer (`runtimes.pipeline.load_pipeline`). Runs in .venv-kserve only (`make venv-kserve`), as
`.venv-kserve/bin/python -m benchmarks.serve_bench.kserve_model ARTIFACT --name M --http-port P --grpc-port G`;
nothing else imports it (kserve is imported inside main()).

Protocol (as the Triton peer's text ensemble): OIP v2 infer, REST `POST /v2/models/M/infer` or gRPC `ModelInfer`,
one BYTES input `text` of shape [n]; one BYTES output `answer` of shape [n], each element the task layer's answer
as a JSON string. KServe's v1 `POST /v1/models/M:predict {"instances": [text, ...]}` answers `{"predictions":
[answer, ...]}`.

`predict` is a plain (sync) method, as KServe's custom-model examples write it: KServe runs it on its event loop, one
request at a time; ModelServer has no batcher of its own (KServe batches in a separate agent container). Its
per-request log lines (uvicorn's access log, kserve.trace, the gRPC interceptor's) are turned down to warnings, as
our service writes none.

KServe 0.21 binds REST to 0.0.0.0 and gRPC to [::] with no option to change it. Here the peer must stay on loopback,
so `loopback()` patches both at start-up: the REST server's uvicorn.Config gets host 127.0.0.1 after KServe built it
(its `RESTServer` is swapped, in `kserve.model_server`, for a subclass that resets `config.host`), and the gRPC
server's `add_insecure_port("[::]:P")` is rewritten to `127.0.0.1:P` on the server object KServe creates. Each
patch raises at start when KServe's code no longer has the spot it patches, and the benchmark checks the listening
sockets from /proc/net/tcp{,6} once the server is ready (peers.check_loopback)."""
from __future__ import annotations

import argparse
import json
import os
import sys

HOST = "127.0.0.1"
INPUT, OUTPUT = "text", "answer"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.serve_bench.kserve_model", description=__doc__)
    p.add_argument("artifact")
    p.add_argument("--name", default="bench")
    p.add_argument("--http-port", type=int, required=True)
    p.add_argument("--grpc-port", type=int, required=True)
    p.add_argument("--threads", type=int, help="the runtime's intra-op threads (default: the backend's own)")
    p.add_argument("--batch-size", type=int, default=16, help="the pipeline's batch size for a multi-text request")
    return p.parse_args(argv)


def loopback(model_server_module, grpc_server_module) -> None:
    """Bind KServe's REST and gRPC servers to 127.0.0.1 (see the module's docstring)."""
    base = getattr(model_server_module, "RESTServer", None)
    if base is None or not hasattr(grpc_server_module, "aio"):
        raise RuntimeError("kserve's RESTServer / grpc aio server are not where kserve 0.21 has them: the loopback "
                           "patch cannot be applied (pin kserve==0.21.0, make venv-kserve)")

    class LoopbackREST(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if not hasattr(self, "config") or getattr(self.config, "host", None) is None:
                raise RuntimeError("kserve's RESTServer has no uvicorn config to rebind to 127.0.0.1")
            self.config.host = HOST

    model_server_module.RESTServer = LoopbackREST

    real_aio = grpc_server_module.aio

    class _Aio:
        def __getattr__(self, name):
            return getattr(real_aio, name)

        @staticmethod
        def server(*args, **kwargs):
            srv = real_aio.server(*args, **kwargs)
            add = srv.add_insecure_port

            def add_loopback(address: str) -> int:
                port = address.rsplit(":", 1)[1]
                return add(f"{HOST}:{port}")

            srv.add_insecure_port = add_loopback
            return srv

    grpc_server_module.aio = _Aio()


def main(argv: list[str] | None = None) -> int:
    a = parse_args(sys.argv[1:] if argv is None else argv)
    sys.argv = sys.argv[:1]  # kserve parses sys.argv at import (parse_known_args): give it none of ours
    os.environ.setdefault("DISTILBERT_DEPLOY_QUIET", "1")

    import kserve
    import kserve.model_server
    import kserve.protocol.grpc.server
    from kserve import InferOutput, InferRequest, InferResponse

    from runtimes.base import RuntimeOptions
    from runtimes.pipeline import load_pipeline

    loopback(kserve.model_server, kserve.protocol.grpc.server)

    class ArtifactModel(kserve.Model):
        def __init__(self, name: str):
            super().__init__(name)
            self.pipe = None

        def load(self) -> bool:
            self.pipe = load_pipeline(a.artifact, RuntimeOptions(threads=a.threads), batch_size=a.batch_size)
            self.pipe(["warm-up"])  # the first call allocates; keep it out of the first request
            self.ready = True
            return self.ready

        def predict(self, payload, headers=None):
            if isinstance(payload, InferRequest):
                inp = next((i for i in payload.inputs if i.name == INPUT), None)
                if inp is None or inp.datatype != "BYTES":
                    raise kserve.errors.InvalidInput(f"expected one BYTES input '{INPUT}'")
                texts = [x.decode() if isinstance(x, bytes) else str(x) for x in inp.as_numpy().reshape(-1)]
                answers = self.pipe(texts)
                out = InferOutput(OUTPUT, shape=[len(answers)], datatype="BYTES",
                                  data=[json.dumps(x) for x in answers])
                return InferResponse(response_id=payload.id or "", model_name=self.name, infer_outputs=[out])
            texts = payload.get("instances") if isinstance(payload, dict) else None
            if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                raise kserve.errors.InvalidInput('expected {"instances": [text, ...]}')
            return {"predictions": self.pipe(texts)}

    model = ArtifactModel(a.name)
    model.load()
    server = kserve.ModelServer(http_port=a.http_port, grpc_port=a.grpc_port, workers=1,
                                enable_latency_logging=False)
    import logging  # after ModelServer configured KServe's logging: no log line per request (ours writes none)

    for name in ("uvicorn.access", "kserve.trace", "kserve"):  # kserve: its gRPC interceptor logs every call
        logging.getLogger(name).setLevel(logging.WARNING)
    server.start([model])
    return 0


if __name__ == "__main__":
    sys.exit(main())
