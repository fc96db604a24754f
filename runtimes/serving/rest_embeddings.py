"""OpenAI-compatible embeddings, as text-embeddings-inference, infinity and vLLM serve them: `POST /v1/embeddings`
and `GET /v1/models`, with OpenAI's request, response and error shapes, over the data plane. Vectors are pooled as
the artifact's pooling config says (manifest source.pooling; default mean, L2-normalized). `dimensions` keeps the
first N values and normalizes again (truncation, as OpenAI's text-embedding-3 does; a model not trained for it
loses quality). `truncate: true` (TEI's option) cuts over-long inputs instead of refusing them."""
from __future__ import annotations

import asyncio
import base64
import json
import time

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ..errors import InputError
from .dataplane import DataPlane, EmbedRequest, kind_of, message_of
from .rest import guarded, read_body

FIELDS = {"input", "model", "encoding_format", "dimensions", "user", "truncate"}
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error",
               413: "invalid_request_error", 503: "server_error", 504: "timeout", 500: "server_error"}


def openai_error(e: BaseException, status: int) -> dict:
    return {"error": {"message": message_of(e), "type": ERROR_TYPES.get(status, "server_error"), "param": None,
                      "code": kind_of(e)}}


def parse_embeddings(body: bytes) -> tuple[str, EmbedRequest, str]:
    """An OpenAI embeddings body -> (model name, request, encoding_format); InputError says what is wrong."""
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"the body is not valid JSON ({e}). Expected {{\"model\": ..., \"input\": ...}}") from None
    if not isinstance(doc, dict):
        raise InputError(f"the body must be a JSON object {{\"model\": ..., \"input\": ...}}; got {type(doc).__name__}")
    if unknown := sorted(set(doc) - FIELDS):
        raise InputError(f"unknown field(s) {unknown}; /v1/embeddings takes {sorted(FIELDS)}")
    if not isinstance(doc.get("model"), str):
        raise InputError("'model' is required: the served feature-extraction model's name (GET /v1/models)")
    fmt = doc.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise InputError(f"encoding_format must be 'float' or 'base64'; got {fmt!r}")
    dims = doc.get("dimensions")
    if dims is not None and (type(dims) is not int or dims < 1):
        raise InputError(f"dimensions must be a positive integer; got {dims!r}")
    truncate = doc.get("truncate", False)
    if not isinstance(truncate, bool):
        raise InputError(f"truncate must be true or false; got {truncate!r}")
    raw = doc.get("input")
    if isinstance(raw, str) or (isinstance(raw, list) and raw and all(type(t) is int for t in raw)):
        items = [raw]  # one text, or one token array
    elif isinstance(raw, list) and raw:
        items = raw
        if not (all(isinstance(x, str) for x in items) or all(isinstance(x, list) for x in items)):
            raise InputError("'input' must be a string, a list of strings, a token array, or a list of token arrays "
                             "(not a mix)")
    else:
        raise InputError(f"'input' must be a non-empty string or list; got {raw!r:.80}")
    for i, x in enumerate(items):
        if isinstance(x, str) and not x.strip():
            raise InputError(f"input #{i} is empty; every input must hold text")
    return doc["model"], EmbedRequest(items, truncate, dims), fmt


def encode(v: np.ndarray, fmt: str):
    return base64.b64encode(v.astype("<f4").tobytes()).decode() if fmt == "base64" else v.tolist()


def router(plane: DataPlane) -> APIRouter:
    r = APIRouter()

    @r.get("/v1/models")
    async def models(request: Request):
        async def call():
            return JSONResponse({"object": "list", "data": [
                {"id": n, "object": "model", "created": 0, "owned_by": "distilbert-deploy",
                 "task": m.manifest.task} for n, m in sorted(plane.models.items())]})
        return await guarded(plane, request, "openai_models", None, call, openai_error)

    @r.post("/v1/embeddings")
    async def embeddings(request: Request):
        started = time.monotonic()

        async def call():
            body = await read_body(request, plane.cfg.max_body_bytes)
            loop = asyncio.get_running_loop()
            name, req, fmt = await loop.run_in_executor(plane.prep_pool, parse_embeddings, body)  # off the loop
            vectors, tokens = await plane.embed(name, lambda: req, started)
            data = await loop.run_in_executor(plane.prep_pool, lambda: [
                {"object": "embedding", "index": i, "embedding": encode(v, fmt)} for i, v in enumerate(vectors)])
            return JSONResponse({"object": "list", "model": name, "data": data,
                                 "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
        return await guarded(plane, request, "embeddings", None, call, openai_error, started)

    return r
