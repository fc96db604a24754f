"""The REAL transformers 4.x question-answering pipeline, as an oracle for tests/test_tasks_tf4.py.

Run with the python of .venv-tf4 (make venv-tf4: transformers 4.57, which still has the pipeline that
transformers 5 removed). Imports no project code. Reads a JSON request on stdin:
    {"model_dir": "...", "cases": [{"question": str | [str], "context": str | [str], "kwargs": {...}}, ...]}
and prints {"transformers": "4.57.x", "answers": [pipeline(question=..., context=..., **kwargs), ...]} as JSON.
"""
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def plain(x):
    """numpy/torch scalars -> Python numbers, so the answers are plain JSON."""
    if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    return x.item() if hasattr(x, "item") else x


def main() -> None:
    import transformers

    request = json.load(sys.stdin)
    if not transformers.__version__.startswith("4."):
        sys.exit(f"needs transformers 4.x (has the question-answering pipeline); got {transformers.__version__}")
    model_dir = request["model_dir"]
    # tokenizer_type: transformers 5 saves tokenizer_class "TokenizersBackend", which 4.x does not know; the
    # model type's fast tokenizer (DistilBertTokenizerFast) reads the same tokenizer.json
    model_type = transformers.AutoConfig.from_pretrained(model_dir).model_type
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir, tokenizer_type=model_type, use_fast=True)
    assert tokenizer.is_fast, type(tokenizer)
    qa = transformers.pipeline("question-answering", model=model_dir, tokenizer=tokenizer, device="cpu")
    answers = [plain(qa(question=c["question"], context=c["context"], **c.get("kwargs", {})))
               for c in request["cases"]]
    json.dump({"transformers": transformers.__version__, "answers": answers}, sys.stdout)


if __name__ == "__main__":
    main()
