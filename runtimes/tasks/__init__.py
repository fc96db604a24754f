"""The task layer: pipeline-style answers (labels, fill-mask top-k, entities, QA spans, embeddings,
multiple-choice) on top of any runtime's infer(feed) -> outputs, equal to transformers.pipeline's.
numpy and the fast tokenizer only: importing this pulls in no torch."""
from .core import TaskPipeline
from .encoding import TruncationWarning, load_tokenizer

__all__ = ["TaskPipeline", "TruncationWarning", "load_tokenizer"]
