"""Open Inference Protocol v2 (KServe / Triton) REST codec: JSON and the binary tensor extension, both ways.

Binary extension: the body is a JSON header of Inference-Header-Content-Length bytes, then each binary tensor's
raw little-endian bytes in input order; BYTES elements carry a 4-byte little-endian length prefix."""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError

DTYPES = {"BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
          "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64, "FP16": np.float16,
          "FP32": np.float32, "FP64": np.float64, "BYTES": np.object_}
HEADER = "inference-header-content-length"


@dataclass
class InferRequest:
    id: str | None
    inputs: dict[str, np.ndarray]  # BYTES inputs are object arrays of bytes
    datatypes: dict[str, str]
    outputs: dict[str, bool] | None  # requested output name -> binary; None = every output
    binary_default: bool = False  # parameters.binary_data_output
    parameters: dict = field(default_factory=dict)


def datatype_of(a: np.ndarray) -> str:
    if a.dtype == np.object_ or a.dtype.kind in "SU":
        return "BYTES"
    for name, dt in DTYPES.items():
        if dt is not np.object_ and a.dtype == np.dtype(dt):
            return name
    raise TypeError(f"no OIP datatype for numpy {a.dtype}")


def parse_request(body: bytes, header_length: str | None) -> InferRequest:
    """An infer request body -> InferRequest; InputError (HTTP 400) says what is malformed."""
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise InputError(f"Inference-Header-Content-Length is '{header_length}'; expected the JSON header's "
                             f"length in bytes") from None
        if not 0 < n <= len(body):
            raise InputError(f"Inference-Header-Content-Length is {n} but the body has {len(body)} bytes; expected "
                             f"the JSON header's length (1..{len(body)})")
        head, blob = body[:n], memoryview(body)[n:]
    else:
        head, blob = body, memoryview(b"")
    try:
        doc = json.loads(head)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"the request is not valid JSON ({e}). Expected an OIP v2 infer request "
                         f"{{\"inputs\": [{{\"name\", \"shape\", \"datatype\", \"data\"}}]}}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list) or not doc["inputs"]:
        raise InputError("an infer request is a JSON object with a non-empty 'inputs' list; got "
                         + (f"keys {sorted(doc)}" if isinstance(doc, dict) else type(doc).__name__))
    params = _object(doc.get("parameters", {}), "parameters")
    inputs, datatypes, offset = {}, {}, 0
    for k, spec in enumerate(doc["inputs"]):
        name, shape, dtype, p = _input_header(spec, k)
        if name in inputs:
            raise InputError(f"input '{name}' is given twice")
        size = p.get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(blob):
                raise InputError(f"input '{name}' declares binary_data_size={size!r} but {len(blob) - offset} binary "
                                 f"bytes are left in the body")
            arr = from_binary(bytes(blob[offset:offset + size]), dtype, shape, name)
            offset += size
        elif "data" in spec:
            arr = _from_json(spec["data"], dtype, shape, name)
        else:
            raise InputError(f"input '{name}' has neither 'data' nor parameters.binary_data_size")
        inputs[name], datatypes[name] = arr, dtype
    if offset != len(blob):
        raise InputError(f"the body has {len(blob) - offset} binary bytes that no input claims (binary_data_size "
                         f"adds up to {offset})")
    outputs = None
    if doc.get("outputs") is not None:
        if not isinstance(doc["outputs"], list):
            raise InputError("'outputs' must be a list of {\"name\": ...} objects")
        outputs = {}
        for o in doc["outputs"]:
            if not isinstance(o, dict) or not isinstance(o.get("name"), str):
                raise InputError(f"each requested output must be {{\"name\": str}}; got {o!r}")
            outputs[o["name"]] = bool(_object(o.get("parameters", {}), "output parameters").get("binary_data", False))
    rid = doc.get("id")
    return InferRequest(None if rid is None else str(rid), inputs, datatypes, outputs,
                        bool(params.get("binary_data_output", False)), params)


def _object(x, what: str) -> dict:
    if not isinstance(x, dict):
        raise InputError(f"'{what}' must be a JSON object; got {type(x).__name__}")
    return x


def _input_header(spec, k: int) -> tuple[str, tuple[int, ...], str, dict]:
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise InputError(f"input #{k} must be an object with a 'name'; got {spec!r:.100}")
    name = spec["name"]
    shape = spec.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise InputError(f"input '{name}' shape must be a list of non-negative integers; got {shape!r}")
    dtype = spec.get("datatype")
    if dtype not in DTYPES:
        raise InputError(f"input '{name}' datatype {dtype!r} is not an OIP datatype. Expected one of: "
                         f"{', '.join(DTYPES)}")
    return name, tuple(shape), dtype, _object(spec.get("parameters", {}), f"input '{name}' parameters")


def element_count(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


def _from_json(data, dtype: str, shape, name: str) -> np.ndarray:
    flat = _flatten(data)
    if len(flat) != element_count(shape):
        raise InputError(f"input '{name}' has {len(flat)} elements; its shape {list(shape)} needs "
                         f"{element_count(shape)}")
    if dtype == "BYTES":
        if not all(isinstance(x, str) for x in flat):
            raise InputError(f"input '{name}' is BYTES: its JSON data must be strings")
        return np.array([x.encode() for x in flat], dtype=np.object_).reshape(shape)
    if any(isinstance(x, (str, list, dict)) or x is None for x in flat):
        raise InputError(f"input '{name}' is {dtype}: its JSON data must be numbers")
    if dtype != "BOOL" and any(isinstance(x, bool) for x in flat):
        raise InputError(f"input '{name}' is {dtype}: its JSON data must be numbers, not booleans")
    if dtype.startswith(("INT", "UINT")) and any(isinstance(x, float) for x in flat):
        raise InputError(f"input '{name}' is {dtype}: its JSON data must be integers")
    try:
        return np.asarray(flat, dtype=DTYPES[dtype]).reshape(shape)
    except (OverflowError, ValueError) as e:
        raise InputError(f"input '{name}' data does not fit {dtype}: {e}") from None


def _flatten(data) -> list:
    if not isinstance(data, list):
        return [data]
    out: list = []
    stack = [iter(data)]
    while stack:
        for x in stack[-1]:
            if isinstance(x, list):
                stack.append(iter(x))
                break
            out.append(x)
        else:
            stack.pop()
    return out


def from_binary(raw: bytes, dtype: str, shape, name: str) -> np.ndarray:
    if dtype == "BYTES":
        items, at = [], 0
        while at < len(raw):
            if at + 4 > len(raw):
                raise InputError(f"input '{name}' BYTES data is cut inside an element's 4-byte length prefix")
            (n,) = struct.unpack_from("<I", raw, at)
            if at + 4 + n > len(raw):
                raise InputError(f"input '{name}' BYTES element #{len(items)} declares {n} bytes; "
                                 f"{len(raw) - at - 4} are left")
            items.append(raw[at + 4:at + 4 + n])
            at += 4 + n
        if len(items) != element_count(shape):
            raise InputError(f"input '{name}' has {len(items)} BYTES elements; its shape {list(shape)} needs "
                             f"{element_count(shape)}")
        return np.array(items, dtype=np.object_).reshape(shape)
    dt = np.dtype(DTYPES[dtype]).newbyteorder("<")
    if len(raw) != element_count(shape) * dt.itemsize:
        raise InputError(f"input '{name}' has {len(raw)} binary bytes; shape {list(shape)} of {dtype} needs "
                         f"{element_count(shape) * dt.itemsize}")
    return np.frombuffer(raw, dtype=dt).astype(dt.newbyteorder("="), copy=False).reshape(shape)


def encode_response(model: str, version: str, request_id: str | None, outputs: dict[str, np.ndarray],
                    binary: dict[str, bool], parameters: dict | None = None) -> tuple[bytes, dict[str, str]]:
    """The infer response body and headers: JSON, or a JSON header plus binary tensors where asked."""
    doc: dict = {"model_name": model, "model_version": version}
    if request_id is not None:
        doc["id"] = request_id
    if parameters:
        doc["parameters"] = parameters
    blobs, described = [], []
    for name, arr in outputs.items():
        dtype = datatype_of(arr)
        entry: dict = {"name": name, "datatype": dtype, "shape": list(arr.shape)}
        if binary.get(name):
            raw = to_binary(arr, dtype)
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            flat = arr.reshape(-1)
            entry["data"] = ([x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x) for x in flat]
                             if dtype == "BYTES" else flat.tolist())
        described.append(entry)
    doc["outputs"] = described
    head = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
    if not blobs:
        return head, {"content-type": "application/json"}
    return head + b"".join(blobs), {"content-type": "application/octet-stream", HEADER: str(len(head))}


def to_binary(arr: np.ndarray, dtype: str) -> bytes:
    if dtype == "BYTES":
        parts = []
        for x in arr.reshape(-1):
            b = x if isinstance(x, bytes) else str(x).encode()
            parts += [struct.pack("<I", len(b)), b]
        return b"".join(parts)
    return np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
