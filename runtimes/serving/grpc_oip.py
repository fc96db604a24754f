"""OIP v2 over gRPC: the `inference.GRPCInferenceService` that Triton and KServe share, as a thin adapter over the
data plane. A request's tensors decode in the plane's worker thread (parse_infer), answers go out as
raw_output_contents, and every failure maps to a gRPC code once (GRPC_CODE). Imported only by `serve --grpc-port`:
it needs grpcio and protobuf (the `serve` extra); the stubs are generated (oip_grpc/README.md)."""
from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable

import grpc
import numpy as np
from google.protobuf import json_format

from ..errors import ConfigError, InputError
from .dataplane import DataPlane, TooLarge, kind_of, message_of, presented_key, retry_after
from .model import VERSION
from .oip import DTYPES, InferRequest, datatype_of, element_count, from_binary, to_binary
from .oip_grpc import grpc_service_pb2 as pb, grpc_service_pb2_grpc as pb_grpc, model_config_pb2 as mc

Code = grpc.StatusCode
GRPC_CODE = {"bad_input": Code.INVALID_ARGUMENT, "auth": Code.UNAUTHENTICATED, "not_found": Code.NOT_FOUND,
             "too_large": Code.RESOURCE_EXHAUSTED, "too_many_items": Code.RESOURCE_EXHAUSTED,
             "queue_full": Code.RESOURCE_EXHAUSTED, "draining": Code.UNAVAILABLE, "not_ready": Code.UNAVAILABLE,
             "deadline": Code.DEADLINE_EXCEEDED, "model": Code.INTERNAL, "internal": Code.INTERNAL}
# InferTensorContents field per datatype (FP16 and BF16 travel only as raw_input_contents)
CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
            "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
            "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents",
            "FP64": "fp64_contents", "BYTES": "bytes_contents"}
ENCODE_OFF_LOOP_BYTES = 1 << 16  # bigger answers are encoded in a worker thread
HARD_LIMIT_FACTOR = 2  # grpc reads messages up to this many times --max-body-bytes; ModelInfer refuses those over 1x


# --- codec: ModelInferRequest -> InferRequest (as oip.parse_request gives REST's), tensors -> ModelInferResponse


def parse_infer(request: pb.ModelInferRequest) -> InferRequest:
    raw = request.raw_input_contents
    if not request.inputs:
        raise InputError("a ModelInferRequest needs at least one input")
    if raw and len(raw) != len(request.inputs):
        raise InputError(f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs: give one per "
                         f"input, in input order, or none (typed contents)")
    inputs, datatypes = {}, {}
    for k, t in enumerate(request.inputs):
        name, dtype, shape = t.name, t.datatype, tuple(t.shape)
        if name in inputs:
            raise InputError(f"input '{name}' is given twice")
        if dtype not in DTYPES:
            raise InputError(f"input '{name}' datatype {dtype!r} is not an OIP datatype. Expected one of: "
                             f"{', '.join(DTYPES)}")
        if any(d < 0 for d in shape):
            raise InputError(f"input '{name}' shape must be non-negative integers; got {list(shape)}")
        if raw:
            if t.HasField("contents"):
                raise InputError(f"input '{name}' has typed contents and raw_input_contents: give one of them")
            inputs[name] = from_binary(raw[k], dtype, shape, name)
        else:
            inputs[name] = _from_contents(t, dtype, shape)
        datatypes[name] = dtype
    outputs = {o.name: True for o in request.outputs} or None
    return InferRequest(request.id or None, inputs, datatypes, outputs, True, parameters_of(request.parameters))


def _from_contents(t, dtype: str, shape: tuple) -> np.ndarray:
    field = CONTENTS.get(dtype)
    if field is None:
        raise InputError(f"input '{t.name}' is {dtype}, which has no typed contents: send it in raw_input_contents")
    values = getattr(t.contents, field)
    if len(values) != element_count(shape):
        raise InputError(f"input '{t.name}' has {len(values)} elements in contents.{field}; its shape {list(shape)} "
                         f"needs {element_count(shape)}")
    if dtype == "BYTES":
        return np.array(list(values), dtype=np.object_).reshape(shape)
    try:
        return np.array(values, dtype=DTYPES[dtype]).reshape(shape)
    except (OverflowError, ValueError) as e:
        raise InputError(f"input '{t.name}' contents do not fit {dtype}: {e}") from None


def parameters_of(params) -> dict:
    """InferParameter map -> the plain dict REST's JSON parameters give (timeout, truncation, pipeline options)."""
    out = {}
    for key, p in params.items():
        which = p.WhichOneof("parameter_choice")
        if which is not None:
            out[key] = getattr(p, which)
    return out


def encode_infer(name: str, request_id: str | None, tensors: dict[str, np.ndarray],
                 parameters: dict | None) -> pb.ModelInferResponse:
    response = pb.ModelInferResponse(model_name=name, model_version=VERSION, id=request_id or "")
    for key, arr in tensors.items():
        dtype = datatype_of(arr)
        response.outputs.add(name=key, datatype=dtype, shape=arr.shape)
        response.raw_output_contents.append(to_binary(arr, dtype))
    for key, value in (parameters or {}).items():  # truncated_inputs [0, 3] -> "0,3", as REST's header gives it
        response.parameters[key].string_param = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    return response


# --- the service ----------------------------------------------------------------------------------------------


def key_of(metadata) -> str | None:
    """The API key from gRPC metadata (keys arrive lowercase), read as REST reads its headers."""
    md = dict(metadata or ())
    return presented_key(md.get("authorization"), md.get("x-api-key"))


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """ServerLive/ServerReady stay open (as REST's /v2/health/*); every other RPC checks the API key and is
    counted in the metrics. RPCs this service does not offer answer UNIMPLEMENTED (the generated base)."""

    def __init__(self, plane: DataPlane):
        self.plane = plane

    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=self.plane.ready)

    async def ServerMetadata(self, request, context):
        return await self._guard(context, "grpc_server_metadata", None,
                                 lambda: pb.ServerMetadataResponse(**self.plane.server_metadata()))

    async def ModelReady(self, request, context):
        return await self._guard(context, "grpc_model_ready", request.name, lambda: pb.ModelReadyResponse(
            ready=self.plane.model_ready(request.name, request.version)))

    async def ModelMetadata(self, request, context):
        def call():
            meta = self.plane.model(request.name, request.version).metadata()
            meta.pop("parameters", None)  # not in ModelMetadataResponse (REST's JSON has it)
            return json_format.ParseDict(meta, pb.ModelMetadataResponse())
        return await self._guard(context, "grpc_model_metadata", request.name, call)

    async def ModelConfig(self, request, context):
        return await self._guard(context, "grpc_model_config", request.name, lambda: pb.ModelConfigResponse(
            config=json_format.ParseDict(self.plane.model(request.name, request.version).triton_config(),
                                         mc.ModelConfig())))

    async def ModelInfer(self, request, context):
        started = time.monotonic()
        name = request.model_name

        async def call():
            limit, size = self.plane.cfg.max_body_bytes, request.ByteSize()
            if size > limit:
                raise TooLarge(f"the ModelInferRequest is {size} bytes; this server accepts at most "
                               f"{limit} (--max-body-bytes). Fix: send fewer or shorter inputs per request",
                               "too_large")
            req, tensors, params = await self.plane.infer(name, request.model_version, lambda: parse_infer(request),
                                                          started)
            if sum(a.nbytes for a in tensors.values()) <= ENCODE_OFF_LOOP_BYTES:
                return encode_infer(name, req.id, tensors, params)
            return await asyncio.get_running_loop().run_in_executor(self.plane.prep_pool, encode_infer, name,
                                                                    req.id, tensors, params)
        return await self._guard(context, "grpc_infer", name, call, started)

    async def _guard(self, context, endpoint: str, name: str | None, call: Callable[[], Any | Awaitable],
                     started: float | None = None):
        started = time.monotonic() if started is None else started
        try:
            self.plane.authenticate(key_of(context.invocation_metadata()))
            reply = call()
            if asyncio.iscoroutine(reply):
                reply = await reply
        except asyncio.CancelledError:  # the client went away, or its own deadline passed
            self.plane.record(name, endpoint, Code.CANCELLED.name, started)
            raise
        except Exception as e:  # noqa: BLE001 - every failure is answered with its code
            code = GRPC_CODE[kind_of(e)]
            self.plane.record(name, endpoint, code.name, started, e)
            await context.abort(code, message_of(e), (("retry-after", "1"),) if retry_after(e) else ())
        self.plane.record(name, endpoint, Code.OK.name, started)
        return reply


async def start_server(plane: DataPlane, host: str, port: int) -> grpc.aio.Server:
    """The gRPC server on host:port, bound and started on the running loop. A ModelInfer message over
    --max-body-bytes is refused by ModelInfer (RESOURCE_EXHAUSTED naming the flag, counted in the metrics); one over
    HARD_LIMIT_FACTOR times it by grpc itself before it is read (its own "larger than max" message, not counted).
    No SO_REUSEPORT: a port in use stops the start."""
    hard_limit = HARD_LIMIT_FACTOR * plane.cfg.max_body_bytes
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", hard_limit), ("grpc.so_reuseport", 0)])
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(plane), server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if not bound:
        raise ConfigError(f"--grpc-port {port}: cannot listen on {address} (is the port in use?). Fix: give a free "
                          f"port, or drop --grpc-port")
    await server.start()
    return server
