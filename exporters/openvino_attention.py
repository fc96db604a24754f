"""Attention in the form OpenVINO's CPU plugin runs best.

`ov.convert_model` turns DistilBERT's eager attention into ScaledDotProductAttention whose key input is
Transpose(0,1,3,2) of Transpose(0,2,3,1) of the key projection. The CPU plugin executes that key transpose on its own,
as (0,2,3,1): an element-by-element scatter into [B, H, d, L] (0.03 ms per layer at 1x128 on the bench machine, INT8).
Written as MatMul(Q, K, transpose_b=True) with K = Transpose(0,2,1,3) of the projection, the same arithmetic leaves a
(0,2,1,3) transpose that moves whole head rows of d values (0.004 ms), and the MHA kernel reads K transposed itself.
tests/test_openvino.py checks the answers and the transpose the plugin runs."""
from __future__ import annotations

import numpy as np

# The transposes ov.convert_model puts on SDPA's key input, outer then inner; together they are (0,2,1,3).
KEY_OUTER, KEY_INNER = [0, 1, 3, 2], [0, 2, 3, 1]


def _order(node) -> list[int] | None:
    if node.get_type_name() != "Transpose" or (const := node.input_value(1).get_node()).get_type_name() != "Constant":
        return None
    return [int(v) for v in const.get_data()]


def explicit_attention(model) -> int:
    """Rewrite every non-causal ScaledDotProductAttention with a float additive mask in place; returns how many."""
    import openvino.opset13 as ops

    rewritten = 0
    for sdpa in model.get_ordered_ops():
        if sdpa.get_type_name() != "ScaledDotProductAttention" or sdpa.get_attributes().get("causal"):
            continue
        q, k, v = (sdpa.input_value(i) for i in range(3))
        mask = sdpa.input_value(3) if sdpa.get_input_size() > 3 else None
        if mask is not None and not mask.get_element_type().is_real():
            continue  # a boolean mask selects; only additive masks are rewritten
        outer = k.get_node()
        if _order(outer) == KEY_OUTER and _order(inner := outer.input_value(0).get_node()) == KEY_INNER:
            k = ops.transpose(inner.input_value(0), ops.constant(np.array([0, 2, 1, 3], dtype=np.int64))).output(0)
        if sdpa.get_input_size() > 4:
            scale = sdpa.input_value(4)
        else:
            head = q.get_partial_shape()[-1]
            if head.is_dynamic:
                continue
            scale = ops.constant(np.float32(head.get_length() ** -0.5)).output(0)
        scores = ops.multiply(ops.matmul(q, k, False, True), scale)
        if mask is not None:
            scores = ops.add(scores, mask)
        out = ops.matmul(ops.softmax(scores, -1), v, False, False)
        out.set_friendly_name(sdpa.get_friendly_name())
        for target in list(sdpa.output(0).get_target_inputs()):
            target.replace_source_output(out.output(0))
        rewritten += 1
    if rewritten:
        model.validate_nodes_and_infer_types()
    return rewritten


def attention_record(rewritten: int) -> dict:
    """What the manifest says about the rewrite."""
    return {"form": "MatMul(Q, K, transpose_b) + scale + mask + Softmax + MatMul, key transpose (0,2,1,3)"
                    if rewritten else "as converted", "rewritten_blocks": rewritten,
            "why": "the CPU plugin then transposes the key by whole head rows (exporters/openvino_attention.py)"}
