"""The plain fp32 ONNX graph -> an fp16 graph with fp32 islands, for a strongly typed TensorRT build.

TensorRT 11 and TensorRT-RTX take precision from the ONNX tensor types (no FP16 builder flag), so the graph
itself must say which ops stay fp32. LayerNorm, Softmax, reductions, Pow/Sqrt and Erf overflow or lose too much
in fp16 on BERT-family models (TensorRT issues #2564, #3101, #1500); they stay fp32, as do the graph's inputs
and outputs. The conversion starts from the plain export: ORT's fused com.microsoft ops are unknown to TensorRT."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from runtimes.errors import ExportError

ISLAND_OPS = ("LayerNormalization", "Softmax", "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd",
              "ReduceL2", "ReduceLogSumExp", "ReduceSumSquare", "Pow", "Sqrt", "Erf")
CONVERTER = "onnxruntime.transformers.float16.convert_float_to_float16 (keep_io_types, op_block_list)"


def convert(src: Path, dst: Path) -> dict:
    """Write the fp16-with-islands graph to dst; return the island record {ops, nodes, io}."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = onnx.load(str(src))
    if foreign := sorted({n.domain for n in model.graph.node if n.domain not in ("", "ai.onnx")}):
        raise ExportError(f"'{src}' holds ops from {foreign}: TensorRT's ONNX parser does not know fused ORT ops. "
                          f"Fix: build from the plain `distilbert-deploy export` artifact, not an optimized one")
    half = convert_float_to_float16(model, keep_io_types=True, op_block_list=list(ISLAND_OPS))
    graph = OnnxModel(half)
    graph.topological_sort()  # the converter can leave Cast nodes out of order; the ONNX checker rejects that
    onnx.checker.check_model(graph.model)
    onnx.save(graph.model, str(dst))
    nodes = [n for n in graph.model.graph.node if n.op_type in ISLAND_OPS]
    return {"ops": dict(Counter(n.op_type for n in nodes)), "nodes": [n.name for n in nodes],
            "io": "inputs int64, outputs float32", "converter": CONVERTER}


def check_islands(network, trt, islands: dict) -> int:
    """Every island node of the parsed network computes in fp32 (its layers' float inputs and outputs are FLOAT).
    Returns the number of layers checked; raises ExportError naming each island that is not fp32."""
    wanted = set(islands["nodes"])
    found: dict[str, list] = {name: [] for name in wanted}
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.name in wanted:  # the parser names a node's layer after the node; the converter's casts differ
            found[layer.name].append(layer)
    floats = (trt.DataType.FLOAT, trt.DataType.HALF, trt.DataType.BF16)
    bad, checked = [], 0
    for name, layers in found.items():
        if not layers:
            bad.append(f"{name}: no layer of the parsed network carries its name")
        for layer in layers:
            tensors = [layer.get_input(j) for j in range(layer.num_inputs)] + \
                      [layer.get_output(j) for j in range(layer.num_outputs)]
            types = {t.dtype for t in tensors if t is not None and t.dtype in floats}
            checked += 1
            if types - {trt.DataType.FLOAT}:
                bad.append(f"{name} ({layer.name}): {sorted(str(t) for t in types)}")
    if bad:
        raise ExportError(f"{len(bad)} fp32 island(s) are not fp32 in the parsed TensorRT network: "
                          f"{'; '.join(bad[:5])}. Nothing was written. This is a bug in the fp16 conversion; "
                          f"report it with the source artifact")
    return checked
