"""Triton python backend: the service's text inputs -> the model's padded input_ids / attention_mask, through the
project's task layer (the same tokenization, windows and truncation as the in-process pipeline)."""
from pathlib import Path

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        from runtimes.tasks.text_tensors import TextTask

        self.task = TextTask(Path(args["model_repository"]) / args["model_version"] / "artifact", args["model_name"])

    def execute(self, requests):
        from runtimes.tasks.encoding import pad_rows

        responses = []
        for request in requests:
            try:
                tensors = {n: t.as_numpy() for n in self.task.fields
                           if (t := pb_utils.get_input_tensor_by_name(request, n))}
                _, job = self.task.prepare(tensors)
                feed = pad_rows(job.rows, self.task.pipe.tokenizer.pad_token_id or 0)
                responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(k, v) for k, v in feed.items()]))
            except Exception as e:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{type(e).__name__}: {e}")))
        return responses
