"""What every REST adapter shares: the API key from headers, the bounded body read, and `guarded`, which maps a
data-plane error to its HTTP status once (dataplane.HTTP_STATUS) and records the request's metrics."""
from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from .dataplane import HTTP_STATUS, DataPlane, TooLarge, kind_of, message_of, presented_key, retry_after

OPEN_PATHS = ("/v2/health/live", "/v2/health/ready")


def api_key_of(request: Request) -> str | None:
    return presented_key(request.headers.get("authorization"), request.headers.get("x-api-key"))


def error_headers(e: BaseException) -> dict:
    kind = kind_of(e)
    headers = {"Retry-After": "1"} if retry_after(e) else {}
    if kind == "draining":
        headers["Connection"] = "close"
    if kind == "auth":
        headers["WWW-Authenticate"] = "Bearer"
    return headers


ErrorBody = Callable[[BaseException, int], dict]


def oip_error(e: BaseException, status: int) -> dict:
    return {"error": message_of(e)}


async def guarded(plane: DataPlane, request: Request, endpoint: str, name: str | None,
                  call: Callable[[], Awaitable[Response]], error_body: ErrorBody = oip_error,
                  started: float | None = None) -> Response:
    """Authenticate (except the health paths), run the call, answer any failure with its status and body."""
    started = time.monotonic() if started is None else started
    error = None
    try:
        if request.url.path not in OPEN_PATHS:
            plane.authenticate(api_key_of(request))
        response = await call()
    except asyncio.CancelledError:
        raise
    except BaseException as e:  # noqa: BLE001 - every failure becomes a status; the service stays up
        error = e
        status = HTTP_STATUS[kind_of(e)]
        response = JSONResponse(error_body(e, status), status, headers=error_headers(e))
    plane.record(name, endpoint, str(response.status_code), started, error)
    return response


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the body is {declared} bytes; this server accepts at most {limit} (--max-body-bytes). "
                       f"Fix: send fewer texts per request", "too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the body is over {limit} bytes (--max-body-bytes). Fix: send fewer texts per request",
                           "too_large")
        chunks.append(chunk)
    return b"".join(chunks)
