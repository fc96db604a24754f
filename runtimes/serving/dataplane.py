"""The protocol-independent data plane (KServe's `dataplane` is the shape): model lookup, readiness, metadata,
authentication, admission, deadlines, preparation off the event loop, the batcher hand-off, and every failure as a
typed ServingError with a `kind`. REST (rest_oip.py, rest_task.py, rest_embeddings.py) and gRPC (grpc_oip.py) are
thin adapters over it; each maps a kind to its own status once (HTTP_STATUS here, GRPC_CODE in grpc_oip.py)."""
from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from ..errors import ConfigError, DeployError, InputError
from ..tasks.feature_extraction import pool, pooling_config
from .batcher import DeadlineExceeded, QueueFull
from .config import ServeConfig
from .metrics import Metrics
from .model import SERVICE_PARAMETERS, VERSION, ServedModel
from .oip import InferRequest

log = logging.getLogger("distilbert_deploy.serve")
SERVER_NAME = "distilbert-deploy"
EXTENSIONS = ["binary_tensor_data", "model_configuration"]


class ServingError(DeployError):
    """A request the service refuses or cannot answer; `kind` picks the status in every protocol."""

    kind = "internal"

    def __init__(self, message: str, kind: str | None = None, retry_after: bool = False):
        super().__init__(message)
        if kind is not None:
            self.kind = kind
        self.retry_after = retry_after


class NotFound(ServingError):
    kind = "not_found"


class Unauthenticated(ServingError):
    kind = "auth"


class Unavailable(ServingError):
    """Draining ("draining") or still loading ("not_ready")."""


class TooLarge(ServingError):
    """A body over --max-body-bytes ("too_large") or a request over --max-request-items ("too_many_items")."""


# one table per protocol: the REST adapters use this one, grpc_oip.py its own
HTTP_STATUS = {"bad_input": 400, "auth": 401, "not_found": 404, "too_large": 413, "too_many_items": 413,
               "queue_full": 503, "draining": 503, "not_ready": 503, "deadline": 504, "model": 500, "internal": 500}


def kind_of(e: BaseException) -> str:
    if isinstance(e, ServingError):
        return e.kind
    if isinstance(e, QueueFull):
        return "queue_full"
    if isinstance(e, (DeadlineExceeded, asyncio.TimeoutError, TimeoutError)):
        return "deadline"
    if isinstance(e, (InputError, ConfigError)):
        return "bad_input"
    if isinstance(e, DeployError):
        return "model"
    return "internal"


def message_of(e: BaseException) -> str:
    """The client-facing message: ours say what and how to fix; anything unexpected names no internals."""
    kind = kind_of(e)
    if kind == "internal":
        log.error("internal error", exc_info=e)
        return f"internal error ({type(e).__name__}); see the server log"
    if kind == "deadline" and not str(e):
        return "the request's deadline passed before it was answered. Fix: raise the timeout or reduce the load"
    return str(e)


def presented_key(authorization, x_api_key) -> str | None:
    """The key a client sent, from either protocol's `authorization: Bearer <key>` or `x-api-key: <key>`."""
    if isinstance(authorization, str) and authorization.lower().startswith("bearer "):
        return authorization[7:]
    return x_api_key if isinstance(x_api_key, str) else None


def retry_after(e: BaseException) -> bool:
    return kind_of(e) in ("queue_full", "draining", "not_ready")


@dataclass(frozen=True)
class EmbedRequest:
    """Texts, or token-id lists taken as they are (no special tokens added); dimensions: keep the first N."""

    items: list
    truncate: bool = False
    dimensions: int | None = None


@dataclass
class Prepared:
    """What a preparation step (run in a worker thread) hands the batcher: the rows, and how to finish them."""

    rows: list
    finish: Callable[[list], Any]  # per-row outputs -> the adapter's answer (also run off the loop)


class DataPlane:
    """The service's state and every protocol's path to the models. One per process (one per Ray replica)."""

    def __init__(self, cfg: ServeConfig, models: dict[str, ServedModel], api_key: str | None = None,
                 metrics: Metrics | None = None):
        self.cfg, self.models, self.api_key = cfg, models, api_key
        self.metrics = metrics or Metrics()
        self.draining = False
        self.inflight = 0
        self.load_error: BaseException | None = None
        workers = cfg.tokenizer_threads or min(4, os.cpu_count() or 1)
        self.prep_pool = ThreadPoolExecutor(workers, thread_name_prefix="prepare")

    # ------------------------------------------------------------------ state and description
    @property
    def ready(self) -> bool:
        return not self.draining and self.load_error is None and all(m.ready for m in self.models.values())

    def server_metadata(self) -> dict:
        from importlib import metadata
        try:
            version = metadata.version("distilbert-deploy")
        except metadata.PackageNotFoundError:
            version = "unknown"
        return {"name": SERVER_NAME, "version": version, "extensions": EXTENSIONS}

    def model(self, name: str, version: str | None = None) -> ServedModel:
        model = self.models.get(name)
        if model is None:
            raise NotFound(f"unknown model '{name}'. Served: {', '.join(sorted(self.models))}")
        if version not in (None, "", VERSION):
            raise NotFound(f"model '{name}' has no version '{version}'; it serves version {VERSION}")
        return model

    def model_ready(self, name: str, version: str | None = None) -> bool:
        return self.model(name, version).ready and not self.draining

    def label(self, name: str | None) -> str:
        """A metrics label: the request's text never becomes one (cardinality)."""
        return name if name in self.models else "_unknown"

    def record(self, name: str | None, endpoint: str, status: str, started: float,
               error: BaseException | None = None) -> None:
        if error is not None:
            self.metrics.errors.labels(self.label(name), kind_of(error)).inc()
        self.metrics.requests.labels(self.label(name), endpoint, status).inc()
        self.metrics.request_seconds.labels(self.label(name), endpoint).observe(time.monotonic() - started)

    # ------------------------------------------------------------------ guards
    def authenticate(self, given: str | None) -> None:
        """given: the key the client sent (Bearer token, X-API-Key, or gRPC metadata), None when it sent none."""
        if self.api_key is None:
            return
        if given is None or not hmac.compare_digest(given.encode(), self.api_key.encode()):
            raise Unauthenticated("missing or wrong API key. Expected 'Authorization: Bearer <key>' (or "
                                  "'X-API-Key: <key>'; gRPC: the same as metadata)")

    @contextmanager
    def admitted(self) -> Iterator[None]:
        """Counts a request from acceptance to answer (the drain waits for zero); refuses while draining."""
        if self.draining:
            raise Unavailable("the server is shutting down and accepts no new requests. Retry on another replica",
                              "draining", retry_after=True)
        if not self.ready:
            raise Unavailable("the server is not ready yet (models are loading and warming up). Retry when "
                              "/v2/health/ready answers 200", "not_ready", retry_after=True)
        self.inflight += 1
        self.metrics.inflight.set(self.inflight)
        try:
            yield
        finally:
            self.inflight -= 1
            self.metrics.inflight.set(self.inflight)

    def check_items(self, n: int) -> None:
        if n > self.cfg.max_request_items:
            raise TooLarge(f"the request holds {n} inputs; this server takes at most {self.cfg.max_request_items} "
                           f"per request (--max-request-items). Fix: split it into smaller requests", "too_many_items")

    def deadline(self, params: dict, started: float) -> float:
        """From arrival: --timeout-s, or the request's parameters.timeout (microseconds, Triton's) if sooner."""
        timeout = self.cfg.timeout_s
        if "timeout" in params:
            t = params["timeout"]
            if not isinstance(t, (int, float)) or isinstance(t, bool) or t <= 0:
                raise InputError(f"parameters.timeout must be a positive number of microseconds; got {t!r}")
            timeout = min(timeout, t / 1e6)
        return started + timeout

    @staticmethod
    def task_options(params: dict) -> tuple[dict, bool]:
        """(pipeline options, truncation) from request parameters; the service's own keys are not options."""
        truncation = params.get("truncation", True)
        if not isinstance(truncation, bool):
            raise InputError(f"parameters.truncation must be true or false; got {truncation!r}")
        return {k: v for k, v in params.items() if k not in SERVICE_PARAMETERS}, truncation

    # ------------------------------------------------------------------ the one path to a model
    async def run(self, model: ServedModel, prepare: Callable[[], Prepared], deadline: Callable[[], float] | float):
        """Admit, prepare (parse, validate, tokenize) in a worker thread, queue the rows, await their outputs
        within the deadline, finish in a worker thread. The event loop only awaits. deadline: a time, or a callable
        run after preparation (when it depends on the parsed request)."""
        loop = asyncio.get_running_loop()
        with self.admitted():
            with model.batcher.preparing():
                prepared = await loop.run_in_executor(self.prep_pool, prepare)
                due = deadline() if callable(deadline) else deadline
                future = self._submit(model, prepared.rows, due)
            outs = await self._wait(future, due)
            return await loop.run_in_executor(self.prep_pool, prepared.finish, outs)

    def _submit(self, model: ServedModel, rows: list, deadline: float) -> Future:
        if len(rows) > self.cfg.max_queue:
            raise TooLarge(f"the request needs {len(rows)} model rows; the queue holds at most {self.cfg.max_queue} "
                           f"(--max-queue). Fix: split it", "too_many_items")
        return model.batcher.submit(rows, deadline)

    @staticmethod
    async def _wait(future: Future, deadline: float) -> list:
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future),
                                          timeout=max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            future.cancel()
            raise DeadlineExceeded("the request's deadline passed before it was answered. Fix: raise the timeout "
                                   "or reduce the load") from None

    # ------------------------------------------------------------------ what the protocols ask for
    async def infer(self, name: str, version: str | None, parse: Callable[[], InferRequest],
                    started: float) -> tuple[InferRequest, dict[str, np.ndarray], dict | None]:
        """OIP v2 ModelInfer, either protocol: parse() decodes the wire request (in a worker thread).
        Returns (request, output tensors, response parameters)."""
        model = self.model(name, version)
        box: dict = {}

        def prepare() -> Prepared:
            req = box["req"] = parse()
            box["deadline"] = self.deadline(req.parameters, started)
            raw = {t.name for t in model.manifest.inputs}
            if set(req.inputs) & raw:
                rows = model.raw_rows(req.inputs)
                self.check_items(len(rows))
                return Prepared(rows, lambda outs: ({o.name: np.stack([r[o.name] for r in outs])
                                                     for o in model.manifest.outputs}, None))
            items = model.text_inputs_of(req.inputs)
            self.check_items(len(items))
            options, truncation = self.task_options(req.parameters)
            job = model.pipeline(truncation).prepare(items, **options)
            params = {"truncated_inputs": list(job.truncated)} if job.truncated else None
            return Prepared(model.rows_of(job), lambda outs: (model.text_outputs(
                model.per_input(job.finish(outs), len(items))), params))

        tensors, params = await self.run(model, prepare, lambda: box["deadline"])
        req = box["req"]
        if req.outputs is not None:
            if unknown := sorted(set(req.outputs) - set(tensors)):
                raise InputError(f"model '{name}' has no output {unknown} for this request; it gives "
                                 f"{sorted(tensors)}")
            tensors = {n: tensors[n] for n in req.outputs}
        return req, tensors, params

    async def predict(self, name: str, parse: Callable[[], tuple[Any, dict]],
                      started: float) -> tuple[Any, tuple[int, ...]]:
        """The pipeline-style task endpoint: parse() gives (inputs, parameters) from the wire (in a worker thread).
        Returns (answers as transformers.pipeline gives them, truncated input indices)."""
        model = self.model(name)
        box: dict = {}

        def prepare() -> Prepared:
            inputs, params = parse()
            if not isinstance(params, dict):
                raise InputError("'parameters' must be a JSON object of pipeline options")
            self.check_items(len(inputs) if isinstance(inputs, list) else 1)
            options, truncation = self.task_options(params)
            box["deadline"] = self.deadline(params, started)
            job = model.pipeline(truncation).prepare(inputs, **options)
            return Prepared(model.rows_of(job), lambda outs: (job.finish(outs), job.truncated))

        return await self.run(model, prepare, lambda: box["deadline"])

    async def embed(self, name: str, parse: Callable[[], EmbedRequest],
                    started: float) -> tuple[list[np.ndarray], int]:
        """Sentence embeddings from a feature-extraction model, pooled as its pooling config says.
        Returns (one vector per input, the tokens they held)."""
        model = self.model(name)
        if model.manifest.task != "feature-extraction":
            raise InputError(f"model '{name}' is a {model.manifest.task} model; embeddings come from "
                             f"feature-extraction models: {', '.join(self.embedding_models()) or 'none served'}")
        pooling = pooling_config(model.manifest)

        def prepare() -> Prepared:
            req = parse()
            self.check_items(len(req.items))
            hidden = model.manifest.outputs[0].dims[-1]
            if req.dimensions is not None and not 1 <= req.dimensions <= hidden:
                raise InputError(f"dimensions must be 1..{hidden} (this model's width); got {req.dimensions}")
            if req.items and all(isinstance(x, str) for x in req.items):
                rows = model.pipeline(req.truncate).prepare(req.items).rows
            else:
                rows = model.token_rows(req.items, req.truncate)
            tokens = sum(map(len, rows))
            return Prepared(model.rows_of_ids(rows), lambda outs: (
                [pool(o["last_hidden_state"], pooling, req.dimensions) for o in outs], tokens))

        return await self.run(model, prepare, self.deadline({}, started))

    def embedding_models(self) -> list[str]:
        return sorted(n for n, m in self.models.items() if m.manifest.task == "feature-extraction")

    def close(self) -> None:
        self.prep_pool.shutdown(wait=False, cancel_futures=True)
