"""Triton python backend: the text inputs and the model's outputs -> pipeline-style answers (`answer`: one JSON
per input, as the service's task endpoint gives), through the project's task layer."""
import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        from runtimes.tasks.text_tensors import TextTask

        self.task = TextTask(Path(args["model_repository"]) / args["model_version"] / "artifact", args["model_name"])
        self.outputs = [t.name for t in self.task.manifest.outputs]

    def execute(self, requests):
        from runtimes.tasks.text_tensors import per_input

        responses = []
        for request in requests:
            try:
                tensors = {n: t.as_numpy() for n in self.task.fields
                           if (t := pb_utils.get_input_tensor_by_name(request, n))}
                inputs, job = self.task.prepare(tensors)  # the same rows the tokenizer model made: deterministic
                outs = {n: pb_utils.get_input_tensor_by_name(request, n).as_numpy() for n in self.outputs}
                rows = [{n: np.asarray(outs[n][j], dtype=np.float32) for n in self.outputs} for j in range(len(job.rows))]
                answers = per_input(self.task.manifest.task, job.finish(rows), len(inputs))
                data = np.array([json.dumps(a, ensure_ascii=False).encode() for a in answers], dtype=np.object_)
                responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("answer", data)]))
            except Exception as e:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{type(e).__name__}: {e}")))
        return responses
