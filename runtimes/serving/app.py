"""The HTTP layer: OIP v2 REST (as Triton and KServe define it), the pipeline-style task endpoint and /metrics.
Parsing and encoding live in oip.py, batching in batcher.py, tensors <-> task inputs in model.py: this module
only routes, guards (auth, body size, admission, deadlines) and maps errors to statuses."""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from dataclasses import dataclass, field

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import ConfigError, DeployError, InputError
from .batcher import DeadlineExceeded, QueueFull
from .config import ServeConfig
from .metrics import Metrics
from .model import SERVICE_PARAMETERS, VERSION, ServedModel
from .oip import HEADER, encode_response, parse_request

log = logging.getLogger("distilbert_deploy.serve")
SERVER_NAME = "distilbert-deploy"
EXTENSIONS = ["binary_tensor_data", "model_configuration"]
OPEN_PATHS = ("/v2/health/live", "/v2/health/ready")


class HTTPError(Exception):
    def __init__(self, status: int, message: str, kind: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.kind, self.headers = status, kind, headers or {}


@dataclass
class ServiceState:
    cfg: ServeConfig
    models: dict[str, ServedModel]
    metrics: Metrics = field(default_factory=Metrics)
    api_key: str | None = None
    draining: bool = False
    inflight: int = 0
    load_error: BaseException | None = None

    @property
    def ready(self) -> bool:
        return not self.draining and self.load_error is None and all(m.ready for m in self.models.values())


def status_of(e: BaseException) -> HTTPError:
    """Our errors -> HTTP statuses; anything unexpected is a 500 that names no internals."""
    if isinstance(e, HTTPError):
        return e
    if isinstance(e, QueueFull):
        return HTTPError(503, str(e), "queue_full", {"Retry-After": "1"})
    if isinstance(e, (DeadlineExceeded, asyncio.TimeoutError)):
        return HTTPError(504, str(e) or "the request's deadline passed before it was answered. Fix: raise the "
                                        "timeout or reduce the load", "deadline")
    if isinstance(e, (InputError, ConfigError)):
        return HTTPError(400, str(e), "bad_input")
    if isinstance(e, DeployError):
        return HTTPError(500, str(e), "model")
    log.exception("internal error")
    return HTTPError(500, f"internal error ({type(e).__name__}); see the server log", "internal")


def create_app(state: ServiceState) -> FastAPI:
    app = FastAPI(title=SERVER_NAME, docs_url=None, redoc_url=None, openapi_url=None)
    cfg, metrics = state.cfg, state.metrics

    @app.exception_handler(StarletteHTTPException)
    async def route_errors(request: Request, e: StarletteHTTPException):  # no such route / method: OIP error body
        metrics.requests.labels("_unknown", "none", str(e.status_code)).inc()
        return JSONResponse({"error": f"{request.method} {request.url.path}: {e.detail}. See /v2 (OIP v2 REST) and "
                                      f"/v1/models/NAME/predict"}, e.status_code, headers=getattr(e, "headers", None))

    def model_label(name: str | None) -> str:
        return name if name in state.models else "_unknown"  # URL text never becomes a label (cardinality)

    def check_key(request: Request) -> None:
        if state.api_key is None or request.url.path in OPEN_PATHS:
            return
        auth = request.headers.get("authorization", "")
        given = auth[7:] if auth.lower().startswith("bearer ") else request.headers.get("x-api-key", "")
        if not hmac.compare_digest(given.encode(), state.api_key.encode()):
            raise HTTPError(401, "missing or wrong API key. Expected the header 'Authorization: Bearer <key>' "
                                 "(or 'X-API-Key: <key>')", "auth", {"WWW-Authenticate": "Bearer"})

    def get_model(name: str, version: str | None = None) -> ServedModel:
        model = state.models.get(name)
        if model is None:
            raise HTTPError(404, f"unknown model '{name}'. Served: {', '.join(sorted(state.models))}", "not_found")
        if version not in (None, "", VERSION):
            raise HTTPError(404, f"model '{name}' has no version '{version}'; it serves version {VERSION}",
                            "not_found")
        return model

    async def guarded(request: Request, endpoint: str, name: str | None, call):
        started = time.monotonic()
        try:
            check_key(request)
            response = await call()
        except BaseException as e:  # noqa: BLE001
            if isinstance(e, asyncio.CancelledError):
                raise
            err = status_of(e)
            metrics.errors.labels(model_label(name), err.kind).inc()
            response = JSONResponse({"error": str(err)}, err.status, headers=err.headers)
        metrics.requests.labels(model_label(name), endpoint, str(response.status_code)).inc()
        metrics.request_seconds.labels(model_label(name), endpoint).observe(time.monotonic() - started)
        return response

    async def read_body(request: Request) -> bytes:
        limit = cfg.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise HTTPError(413, f"the body is {declared} bytes; this server accepts at most {limit} "
                                 f"(--max-body-bytes). Fix: send fewer texts per request", "too_large")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HTTPError(413, f"the body is over {limit} bytes (--max-body-bytes). Fix: send fewer texts per "
                                     f"request", "too_large")
            chunks.append(chunk)
        return b"".join(chunks)

    class Admission:
        """Counts a request from acceptance to answer (the drain waits for zero); refuses while draining."""

        def __enter__(self):
            if state.draining:
                raise HTTPError(503, "the server is shutting down and accepts no new requests. Retry on another "
                                     "replica", "draining", {"Retry-After": "1", "Connection": "close"})
            if not state.ready:
                raise HTTPError(503, "the server is not ready yet (models are loading and warming up). Retry when "
                                     "/v2/health/ready answers 200", "not_ready", {"Retry-After": "1"})
            state.inflight += 1
            metrics.inflight.set(state.inflight)

        def __exit__(self, *exc):
            state.inflight -= 1
            metrics.inflight.set(state.inflight)

    def check_items(n: int) -> None:
        if n > cfg.max_request_items:
            raise HTTPError(413, f"the request holds {n} inputs; this server takes at most {cfg.max_request_items} "
                                 f"per request (--max-request-items). Fix: split it into smaller requests",
                            "too_many_items")

    def deadline_of(params: dict, started: float) -> float:
        timeout = cfg.timeout_s
        if "timeout" in params:
            t = params["timeout"]
            if not isinstance(t, (int, float)) or isinstance(t, bool) or t <= 0:
                raise InputError(f"parameters.timeout must be a positive number of microseconds; got {t!r}")
            timeout = min(timeout, t / 1e6)
        return started + timeout

    def submit(model: ServedModel, rows: list, deadline: float):
        if len(rows) > cfg.max_queue:
            raise HTTPError(413, f"the request needs {len(rows)} model rows; the queue holds at most {cfg.max_queue} "
                                 f"(--max-queue). Fix: split it", "too_many_items")
        return model.batcher.submit(rows, deadline)

    async def wait(future, deadline: float) -> list:
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout=max(0.0, deadline - time.monotonic()))

    def task_options(params: dict) -> tuple[dict, bool]:
        truncation = params.get("truncation", True)
        if not isinstance(truncation, bool):
            raise InputError(f"parameters.truncation must be true or false; got {truncation!r}")
        return {k: v for k, v in params.items() if k not in SERVICE_PARAMETERS}, truncation

    # health and metadata
    @app.get("/v2/health/live")
    async def live():
        return JSONResponse({"live": True})

    @app.get("/v2/health/ready")
    async def ready():
        return JSONResponse({"ready": state.ready}, 200 if state.ready else 503)

    @app.get("/v2")
    async def server_metadata(request: Request):
        async def call():
            from importlib import metadata
            try:
                version = metadata.version("distilbert-deploy")
            except metadata.PackageNotFoundError:
                version = "unknown"
            return JSONResponse({"name": SERVER_NAME, "version": version, "extensions": EXTENSIONS})
        return await guarded(request, "server_metadata", None, call)

    @app.get("/v2/models/{name}")
    @app.get("/v2/models/{name}/versions/{version}")
    async def model_metadata(request: Request, name: str, version: str | None = None):
        async def call():
            return JSONResponse(get_model(name, version).metadata())
        return await guarded(request, "model_metadata", name, call)

    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def model_ready(request: Request, name: str, version: str | None = None):
        async def call():
            ok = get_model(name, version).ready and not state.draining
            return JSONResponse({"name": name, "ready": ok}, 200 if ok else 503)
        return await guarded(request, "model_ready", name, call)

    @app.get("/v2/models/{name}/config")
    @app.get("/v2/models/{name}/versions/{version}/config")
    async def model_config(request: Request, name: str, version: str | None = None):
        async def call():
            return JSONResponse(get_model(name, version).triton_config())
        return await guarded(request, "model_config", name, call)

    @app.get("/metrics")
    async def prometheus(request: Request):
        async def call():
            return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
        return await guarded(request, "metrics", None, call)

    # inference
    @app.post("/v2/models/{name}/infer")
    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def infer(request: Request, name: str, version: str | None = None):
        started = time.monotonic()

        async def call():
            model = get_model(name, version)
            with Admission():
                with model.batcher.preparing():
                    req = parse_request(await read_body(request), request.headers.get(HEADER))
                    deadline = deadline_of(req.parameters, started)
                    raw = {t.name for t in model.manifest.inputs}
                    truncated: list[int] = []
                    if set(req.inputs) & raw:
                        rows = model.raw_rows(req.inputs)
                        check_items(len(rows))
                        future = submit(model, rows, deadline)
                        finish = None
                    else:
                        items = model.text_inputs_of(req.inputs)
                        check_items(len(items))
                        options, truncation = task_options(req.parameters)
                        job = model.pipeline(truncation).prepare(items, **options)
                        truncated = list(job.truncated)
                        future = submit(model, model.rows_of(job), deadline)
                        finish = job.finish
                outs = await wait(future, deadline)
                if finish is None:
                    tensors = {o.name: np.stack([r[o.name] for r in outs]) for o in model.manifest.outputs}
                else:
                    tensors = model.text_outputs(model.per_input(finish(outs), len(items)))
                if req.outputs is not None:
                    if unknown := sorted(set(req.outputs) - set(tensors)):
                        raise InputError(f"model '{name}' has no output {unknown} for this request; it gives "
                                         f"{sorted(tensors)}")
                    tensors = {n: tensors[n] for n in req.outputs}
                    binary = dict(req.outputs)
                else:
                    binary = {n: req.binary_default for n in tensors}
                params = {"truncated_inputs": truncated} if truncated else None
                body, headers = encode_response(name, VERSION, req.id, tensors, binary, params)
                return Response(body, headers=headers)
        return await guarded(request, "infer", name, call)

    @app.post("/v1/models/{name}/predict")
    async def predict(request: Request, name: str):
        started = time.monotonic()

        async def call():
            model = get_model(name)
            with Admission():
                with model.batcher.preparing():
                    body = await read_body(request)
                    try:
                        doc = json.loads(body)
                    except (json.JSONDecodeError, UnicodeDecodeError) as e:
                        raise InputError(f"the body is not valid JSON ({e}). Expected {{\"inputs\": ..., "
                                         f"\"parameters\": {{...}}}}") from None
                    if not isinstance(doc, dict) or "inputs" not in doc or set(doc) - {"inputs", "parameters"}:
                        raise InputError("the body must be {\"inputs\": ..., \"parameters\": {...}} (parameters "
                                         "optional); got " + (f"keys {sorted(doc)}" if isinstance(doc, dict)
                                                             else type(doc).__name__))
                    params = doc.get("parameters") or {}
                    if not isinstance(params, dict):
                        raise InputError("'parameters' must be a JSON object of pipeline options")
                    inputs = doc["inputs"]
                    check_items(len(inputs) if isinstance(inputs, list) else 1)
                    options, truncation = task_options(params)
                    deadline = deadline_of(params, started)
                    job = model.pipeline(truncation).prepare(inputs, **options)
                    future = submit(model, model.rows_of(job), deadline)
                answers = job.finish(await wait(future, deadline))
                headers = {"X-Truncated-Inputs": ",".join(map(str, job.truncated))} if job.truncated else None
                return JSONResponse(answers, headers=headers)
        return await guarded(request, "predict", name, call)

    return app
