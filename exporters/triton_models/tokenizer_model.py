"""Triton python backend: the service's text inputs -> the model's padded input_ids / attention_mask, through the
project's task layer (the same tokenization, windows and truncation as the in-process pipeline)."""
from pathlib import Path

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        from runtimes.artifact import read_manifest
        from runtimes.serving.model import text_inputs
        from runtimes.tasks import TaskPipeline, load_tokenizer

        path = Path(args["model_repository"]) / args["model_version"] / "artifact"
        self.manifest = read_manifest(path)
        m = self.manifest
        tokenizer = load_tokenizer(path)
        self.pipe = TaskPipeline(None, tokenizer, m.task, m.labels, max_length=m.shape_profile["max"]["sequence"])
        self.fields = [n for n, _ in text_inputs(m.task)]
        self.name = args["model_name"]

    def execute(self, requests):
        from runtimes.serving.model import texts_of
        from runtimes.tasks.encoding import pad_rows

        responses = []
        for request in requests:
            try:
                tensors = {n: t.as_numpy() for n in self.fields if (t := pb_utils.get_input_tensor_by_name(request, n))}
                job = self.pipe.prepare(texts_of(self.name, self.manifest, tensors))
                feed = pad_rows(job.rows, self.pipe.tokenizer.pad_token_id or 0)
                responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(k, v) for k, v in feed.items()]))
            except Exception as e:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{type(e).__name__}: {e}")))
        return responses
