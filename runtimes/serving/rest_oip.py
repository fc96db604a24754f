"""OIP v2 REST (as Triton and KServe define it): health, server and model metadata, model config and infer, over
the data plane. The wire codec is oip.py; everything else is the data plane's."""
from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from .dataplane import DataPlane
from .model import VERSION
from .oip import HEADER, encode_response, parse_request
from .rest import guarded, read_body


def router(plane: DataPlane) -> APIRouter:
    r = APIRouter()

    @r.get("/v2/health/live")
    async def live():
        return JSONResponse({"live": True})

    @r.get("/v2/health/ready")
    async def ready():
        return JSONResponse({"ready": plane.ready}, 200 if plane.ready else 503)

    @r.get("/v2")
    async def server_metadata(request: Request):
        async def call():
            return JSONResponse(plane.server_metadata())
        return await guarded(plane, request, "server_metadata", None, call)

    @r.get("/v2/models/{name}")
    @r.get("/v2/models/{name}/versions/{version}")
    async def model_metadata(request: Request, name: str, version: str | None = None):
        async def call():
            return JSONResponse(plane.model(name, version).metadata())
        return await guarded(plane, request, "model_metadata", name, call)

    @r.get("/v2/models/{name}/ready")
    @r.get("/v2/models/{name}/versions/{version}/ready")
    async def model_ready(request: Request, name: str, version: str | None = None):
        async def call():
            ok = plane.model_ready(name, version)
            return JSONResponse({"name": name, "ready": ok}, 200 if ok else 503)
        return await guarded(plane, request, "model_ready", name, call)

    @r.get("/v2/models/{name}/config")
    @r.get("/v2/models/{name}/versions/{version}/config")
    async def model_config(request: Request, name: str, version: str | None = None):
        async def call():
            return JSONResponse(plane.model(name, version).triton_config())
        return await guarded(plane, request, "model_config", name, call)

    @r.post("/v2/models/{name}/infer")
    @r.post("/v2/models/{name}/versions/{version}/infer")
    async def infer(request: Request, name: str, version: str | None = None):
        started = time.monotonic()

        async def call():
            plane.model(name, version)  # 404 before the body is read
            body = await read_body(request, plane.cfg.max_body_bytes)
            header = request.headers.get(HEADER)
            req, tensors, params = await plane.infer(name, version, lambda: parse_request(body, header), started)
            binary = dict(req.outputs) if req.outputs is not None else {n: req.binary_default for n in tensors}
            payload, headers = encode_response(name, VERSION, req.id, tensors, binary, params)
            return Response(payload, headers=headers)
        return await guarded(plane, request, "infer", name, call, started=started)

    return r
