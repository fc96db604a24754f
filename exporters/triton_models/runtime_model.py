"""Triton python backend: a distilbert-deploy artifact (in 1/artifact) served through the project's own runtime.
Raw tensors in and out, as the native backends take them; checksums are verified at load."""
import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        from runtimes.base import RuntimeOptions
        from runtimes.registry import load_runtime

        config = json.loads(args["model_config"])
        device = config.get("parameters", {}).get("device", {}).get("string_value", "cpu")
        path = Path(args["model_repository"]) / args["model_version"] / "artifact"
        self.runtime = load_runtime(path, RuntimeOptions(device=device))
        self.inputs = [t.name for t in self.runtime.manifest.inputs]
        self.outputs = [t.name for t in self.runtime.manifest.outputs]

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                feed = {n: pb_utils.get_input_tensor_by_name(request, n).as_numpy() for n in self.inputs}
                out = self.runtime.infer(feed)
                responses.append(pb_utils.InferenceResponse(
                    [pb_utils.Tensor(n, np.ascontiguousarray(out[n], dtype=np.float32)) for n in self.outputs]))
            except Exception as e:  # one bad request is answered with its error; the model stays up
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{type(e).__name__}: {e}")))
        return responses

    def finalize(self):
        self.runtime.close()
