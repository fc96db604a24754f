"""Triton's model configuration, built once: `model_config` returns the ModelConfig message as its JSON mapping,
which the service answers on `/v2/models/M/config` (and, through `json_format.ParseDict`, over gRPC) and which the
repository writer renders as config.pbtxt. One type map, from a manifest's dtypes to the OIP v2 datatypes and to
Triton's config types. Standard library only."""
from __future__ import annotations

DATATYPES = {"int64": "INT64", "float32": "FP32", "string": "BYTES"}  # OIP v2 tensor datatypes
PLATFORMS = {"onnxruntime": "onnxruntime_onnx", "openvino": "openvino", "torch": "pytorch_libtorch"}


def config_type(dtype: str) -> str:
    """Triton's DataType enum name for a manifest dtype (BYTES tensors are TYPE_STRING there)."""
    return "TYPE_STRING" if dtype == "string" else "TYPE_" + DATATYPES[dtype]


def dims_of(dims) -> list[int]:
    """Manifest dims (axis names for dynamic axes) as OIP/Triton dims (-1 for dynamic)."""
    return [d if isinstance(d, int) else -1 for d in dims]


def tensor(name: str, dtype: str, dims, optional: bool = False) -> dict:
    """One ModelInput/ModelOutput; symbolic dims (strings) are variable (-1)."""
    out = {"name": name, "data_type": config_type(dtype), "dims": dims_of(dims)}
    return {**out, "optional": True} if optional else out


def model_config(name: str, inputs, outputs, *, max_batch_size: int, backend: str | None = None,
                 platform: str | None = None, instances: int | None = 1, kind: str = "cpu",
                 dynamic_batching: dict | None = None, parameters: dict[str, str] | None = None, **fields) -> dict:
    """inputs, outputs: (name, dtype, dims[, optional]) with dims past the batch axis when max_batch_size > 0.
    instances None: no instance_group (ensembles). fields: further ModelConfig fields in their JSON form."""
    cfg: dict = {"name": name}
    if platform:
        cfg["platform"] = platform
    if backend:
        cfg["backend"] = backend
    cfg["max_batch_size"] = max_batch_size
    cfg["input"] = [tensor(*t) for t in inputs]
    cfg["output"] = [tensor(*t) for t in outputs]
    if dynamic_batching is not None:
        cfg["dynamic_batching"] = dynamic_batching
    if instances is not None:
        cfg["instance_group"] = [{"count": instances, "kind": f"KIND_{kind.upper()}"}]
    if parameters:
        cfg["parameters"] = {k: {"string_value": v} for k, v in parameters.items()}
    return {**cfg, **fields}
