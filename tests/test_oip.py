"""The OIP v2 codec alone: requests as tritonclient builds them (its own serializers), JSON and binary, decode to the
right arrays; responses decode with tritonclient's own parser; malformed ones are InputErrors that say what is wrong."""
from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from runtimes.errors import InputError
from runtimes.serving.oip import encode_response, parse_request


def binary_body(inputs: list[tuple[str, str, list, bytes]], **doc) -> tuple[bytes, str]:
    head = json.dumps({"inputs": [{"name": n, "datatype": d, "shape": s, "parameters": {"binary_data_size": len(raw)}}
                                  for n, d, s, raw in inputs], **doc}).encode()
    return head + b"".join(raw for *_, raw in inputs), str(len(head))


def test_binary_request_as_tritonclient_writes_it():
    import tritonclient.utils as utils
    texts = np.array([["héllo"], [""], ["a" * 300]], dtype=np.object_)
    ids = np.array([[101, 7592, 102], [101, 0, 102]], dtype=np.int64)
    body, n = binary_body([("text", "BYTES", [3, 1], utils.serialize_byte_tensor(texts).item()),
                           ("input_ids", "INT64", [2, 3], ids.tobytes())], id="r1",
                          parameters={"binary_data_output": True})
    req = parse_request(body, n)
    assert req.id == "r1" and req.binary_default and req.outputs is None
    assert req.inputs["text"].shape == (3, 1) and req.inputs["text"][0, 0] == "héllo".encode()
    assert req.inputs["text"][1, 0] == b"" and len(req.inputs["text"][2, 0]) == 300
    np.testing.assert_array_equal(req.inputs["input_ids"], ids)
    assert req.datatypes == {"text": "BYTES", "input_ids": "INT64"}


def test_json_request_nested_or_flat_data_and_requested_outputs():
    doc = {"inputs": [{"name": "m", "datatype": "INT64", "shape": [2, 2], "data": [[1, 0], [1, 1]]},
                      {"name": "f", "datatype": "FP32", "shape": [3], "data": [0.5, 1, -2]},
                      {"name": "t", "datatype": "BYTES", "shape": [1], "data": ["ok"]}],
           "outputs": [{"name": "logits", "parameters": {"binary_data": True}}, {"name": "label"}]}
    req = parse_request(json.dumps(doc).encode(), None)
    assert req.inputs["m"].tolist() == [[1, 0], [1, 1]] and req.inputs["m"].dtype == np.int64
    assert req.inputs["f"].dtype == np.float32 and req.inputs["f"].tolist() == [0.5, 1.0, -2.0]
    assert req.inputs["t"].tolist() == [b"ok"]
    assert req.outputs == {"logits": True, "label": False}


@pytest.mark.parametrize("body,header,words", [
    (b"[1, 2]", None, "non-empty 'inputs' list"),
    (b'{"inputs": []}', None, "non-empty 'inputs' list"),
    (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "INT65", "data": [1]}]}', None, "not an oip datatype"),
    (b'{"inputs": [{"name": "x", "shape": [-1], "datatype": "INT64", "data": [1]}]}', None, "non-negative integers"),
    (b'{"inputs": [{"name": "x", "shape": [2], "datatype": "INT64", "data": [1, 2.5]}]}', None, "must be integers"),
    (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "INT64", "data": ["1"]}]}', None, "must be numbers"),
    (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "data": [1]}]}', None, "must be strings"),
    (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "INT64"}]}', None, "neither 'data' nor"),
    (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "INT64", "data": [1]},'
     b' {"name": "x", "shape": [1], "datatype": "INT64", "data": [1]}]}', None, "given twice"),
    (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "INT64", "data": [1]}]}', "abc", "length in bytes"),
])
def test_malformed_requests(body, header, words):
    with pytest.raises(InputError) as e:
        parse_request(body, header)
    assert words in str(e.value).lower()


def test_malformed_binary_data():
    raw = struct.pack("<I", 10) + b"short"
    body, n = binary_body([("text", "BYTES", [1], raw)])
    with pytest.raises(InputError, match="declares 10 bytes; 5 are left"):
        parse_request(body, n)
    body, n = binary_body([("ids", "INT64", [2], b"\x00" * 12)])
    with pytest.raises(InputError, match="has 12 binary bytes; shape \\[2\\] of INT64 needs 16"):
        parse_request(body, n)
    body, n = binary_body([("ids", "INT64", [1], b"\x00" * 8)])
    with pytest.raises(InputError, match="3 binary bytes that no input claims"):
        parse_request(body + b"xyz", n)


def test_responses_decode_with_tritonclients_own_parser():
    import tritonclient.http as http
    outputs = {"logits": np.array([[0.25, -1.5]], dtype=np.float32), "label": np.array([b"pos"], dtype=np.object_),
               "start": np.array([3], dtype=np.int64)}
    for binary in (True, False):
        body, headers = encode_response("m", "1", "r9", outputs, {k: binary for k in outputs}, {"truncated_inputs": [0]})
        n = int(headers["inference-header-content-length"]) if binary else None
        assert headers["content-type"] == ("application/octet-stream" if binary else "application/json")
        result = http.InferResult.from_response_body(body, header_length=n)
        np.testing.assert_array_equal(result.as_numpy("logits"), outputs["logits"])
        assert result.as_numpy("start").tolist() == [3]
        label = result.as_numpy("label")[0]
        assert (label.decode() if isinstance(label, bytes) else label) == "pos"
        assert result.get_response()["id"] == "r9" and result.get_response()["parameters"] == {"truncated_inputs": [0]}
