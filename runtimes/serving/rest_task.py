"""The pipeline-style task endpoint, `POST /v1/models/NAME/predict` ({"inputs": ..., "parameters": {...}} in,
transformers.pipeline's answer out), over the data plane."""
from __future__ import annotations

import json
import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ..errors import InputError
from .dataplane import DataPlane
from .rest import guarded, read_body


def parse_predict(body: bytes) -> tuple[object, dict]:
    """A predict body -> (inputs, parameters); InputError says what is malformed."""
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"the body is not valid JSON ({e}). Expected {{\"inputs\": ..., \"parameters\": "
                         f"{{...}}}}") from None
    if not isinstance(doc, dict) or "inputs" not in doc or set(doc) - {"inputs", "parameters"}:
        raise InputError("the body must be {\"inputs\": ..., \"parameters\": {...}} (parameters optional); got "
                         + (f"keys {sorted(doc)}" if isinstance(doc, dict) else type(doc).__name__))
    return doc["inputs"], doc.get("parameters") or {}


def router(plane: DataPlane) -> APIRouter:
    r = APIRouter()

    @r.post("/v1/models/{name}/predict")
    async def predict(request: Request, name: str):
        started = time.monotonic()

        async def call():
            plane.model(name)
            body = await read_body(request, plane.cfg.max_body_bytes)
            answers, truncated = await plane.predict(name, lambda: parse_predict(body), started)
            headers = {"X-Truncated-Inputs": ",".join(map(str, truncated))} if truncated else None
            return JSONResponse(answers, headers=headers)
        return await guarded(plane, request, "predict", name, call, started=started)

    return r
