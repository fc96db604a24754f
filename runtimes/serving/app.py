"""The HTTP app: the REST adapters (OIP v2, the task endpoint, OpenAI embeddings) over one data plane, plus
/metrics and an OIP-shaped answer for unknown routes. Each adapter is its own module; this one only assembles."""
from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import rest_embeddings, rest_oip, rest_task
from .dataplane import SERVER_NAME, DataPlane
from .rest import guarded


def create_app(plane: DataPlane) -> FastAPI:
    app = FastAPI(title=SERVER_NAME, docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(StarletteHTTPException)
    async def route_errors(request: Request, e: StarletteHTTPException):  # no such route / method: OIP error body
        plane.metrics.requests.labels("_unknown", "none", str(e.status_code)).inc()
        return JSONResponse({"error": f"{request.method} {request.url.path}: {e.detail}. See /v2 (OIP v2 REST), "
                                      f"/v1/models/NAME/predict and /v1/embeddings"}, e.status_code,
                            headers=getattr(e, "headers", None))

    @app.get("/metrics")
    async def prometheus(request: Request):
        async def call():
            return Response(generate_latest(plane.metrics.registry), media_type=CONTENT_TYPE_LATEST)
        return await guarded(plane, request, "metrics", None, call)

    for adapter in (rest_oip, rest_task, rest_embeddings):
        app.include_router(adapter.router(plane))
    return app
