"""TaskPipeline: pipeline-style answers from any runtime with infer(feed) -> outputs."""
from __future__ import annotations

import inspect
from typing import Any, Sequence

from ..errors import ConfigError
from ..heads import get_head
from . import (classification, feature_extraction, fill_mask, multiple_choice, question_answering,
               token_classification)
from .encoding import Job, infer

PREPARERS = {
    "feature-extraction": feature_extraction.prepare,
    "fill-mask": fill_mask.prepare,
    "text-classification": classification.prepare,
    "token-classification": token_classification.prepare,
    "question-answering": question_answering.prepare,
    "multiple-choice": multiple_choice.prepare,
}
ON_OVERFLOW = ("truncate", "error")
PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")


class TaskPipeline:
    """Answers equal to transformers.pipeline(task) on the same model and text; the model call goes
    through `runtime.infer`, batch_size inputs per call, padded to the longest of each batch.

    labels: class names in logit order (text/token classification); None gives LABEL_i.
    max_length: the longest input in tokens; longer ones are cut with a TruncationWarning
      (on_overflow='truncate') or rejected with InputError (on_overflow='error').
    problem_type: as in the model config; picks sigmoid vs softmax for text-classification.
    """

    def __init__(self, runtime, tokenizer, task: str, labels: Sequence[str] | None = None, *,
                 max_length: int = 512, on_overflow: str = "truncate", batch_size: int = 8,
                 problem_type: str | None = None):
        get_head(task)  # ConfigError on an unknown task
        if on_overflow not in ON_OVERFLOW:
            raise ConfigError(f"on_overflow='{on_overflow}' is not an option. Expected one of: "
                              f"{', '.join(ON_OVERFLOW)}")
        if problem_type is not None and problem_type not in PROBLEM_TYPES:
            raise ConfigError(f"problem_type='{problem_type}' is not an option. Expected one of: "
                              f"{', '.join(PROBLEM_TYPES)} (or None)")
        for name, value, low in (("max_length", max_length, 3), ("batch_size", batch_size, 1)):
            if not isinstance(value, int) or value < low:
                raise ConfigError(f"{name} must be an integer >= {low}; got {value!r}")
        if not getattr(tokenizer, "is_fast", False):
            raise ConfigError(f"the task layer needs a fast tokenizer (offsets, overflow windows); got "
                              f"{type(tokenizer).__name__}. Fix: load it with runtimes.tasks.load_tokenizer(dir)")
        self.runtime, self.tokenizer, self.task = runtime, tokenizer, task
        self.labels = tuple(labels) if labels else None
        self.max_length, self.on_overflow, self.batch_size = max_length, on_overflow, batch_size
        self.problem_type = problem_type
        self._prepare = PREPARERS[task]
        self.options = tuple(inspect.signature(self._prepare).parameters)[2:]

    def __call__(self, inputs: Any = None, **kwargs) -> Any:
        job = self.prepare(inputs, **kwargs)
        return job.finish(infer(self, job.rows, job.groups))

    def prepare(self, inputs: Any = None, **kwargs) -> Job:
        """Validate and tokenize: the rows to run and how to finish them, without running the model."""
        if unknown := sorted(set(kwargs) - set(self.options)):
            raise ConfigError(f"{self.task} does not take {', '.join(unknown)}; it takes: "
                              f"{', '.join(self.options) or 'no options'}")
        return self._prepare(self, inputs, **kwargs)

    def __repr__(self) -> str:
        return (f"TaskPipeline(task={self.task!r}, runtime={type(self.runtime).__name__}, "
                f"max_length={self.max_length}, on_overflow={self.on_overflow!r}, batch_size={self.batch_size})")
