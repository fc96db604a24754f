"""One frozen spec per DistilBERT head: the task name (as transformers pipelines name it),
its transformers class, and its ONNX I/O with dynamic axes. Pure data: no torch here."""
from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name
    dims: tuple[str | int, ...]  # str = dynamic axis name, int = fixed size

    def to_dict(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "dims": list(self.dims)}

    @classmethod
    def from_dict(cls, d: dict) -> "TensorSpec":
        return cls(d["name"], d["dtype"], tuple(d["dims"]))


@dataclass(frozen=True)
class HeadSpec:
    task: str
    model_class: str  # transformers class name
    outputs: tuple[str, ...]
    output_tail: tuple[str, ...]  # dims after the batch (and choice) axes, per output
    multiple_choice: bool = False

    @property
    def leading_dims(self) -> tuple[str, ...]:
        return ("batch", "num_choices") if self.multiple_choice else ("batch",)

    def input_specs(self) -> tuple[TensorSpec, ...]:
        dims = (*self.leading_dims, "sequence")
        return (TensorSpec("input_ids", "int64", dims), TensorSpec("attention_mask", "int64", dims))

    def output_specs(self, *, hidden: int, num_labels: int, vocab: int) -> tuple[TensorSpec, ...]:
        sizes = {"hidden": hidden, "num_labels": num_labels, "vocab": vocab}
        lead = ("batch",)  # multiple-choice folds choices into its logits' last axis
        return tuple(
            TensorSpec(name, "float32", (*lead, *(sizes.get(d, d) for d in tail.split(",") if d)))
            for name, tail in zip(self.outputs, self.output_tail)
        )


HEADS: dict[str, HeadSpec] = {
    h.task: h
    for h in (
        HeadSpec("feature-extraction", "DistilBertModel", ("last_hidden_state",), ("sequence,hidden",)),
        HeadSpec("fill-mask", "DistilBertForMaskedLM", ("logits",), ("sequence,vocab",)),
        HeadSpec("text-classification", "DistilBertForSequenceClassification", ("logits",), ("num_labels",)),
        HeadSpec("token-classification", "DistilBertForTokenClassification", ("logits",), ("sequence,num_labels",)),
        HeadSpec("question-answering", "DistilBertForQuestionAnswering", ("start_logits", "end_logits"),
                 ("sequence", "sequence")),
        HeadSpec("multiple-choice", "DistilBertForMultipleChoice", ("logits",), ("num_choices",), multiple_choice=True),
    )
}
TASKS: tuple[str, ...] = tuple(HEADS)


def get_head(task: str) -> HeadSpec:
    try:
        return HEADS[task]
    except KeyError:
        raise ConfigError(
            f"unknown task '{task}'. Expected one of: {', '.join(TASKS)} (transformers pipeline names)"
        ) from None
