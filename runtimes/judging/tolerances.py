"""Pass/fail thresholds keyed by (task, precision), with the reasoning behind each default.

fp32 is judged numerically and tightly: ONNX Runtime and PyTorch run the same fp32 graph and differ
only in summation order and fused kernels, which moves DistilBERT-size outputs by ~1e-6..1e-5; 1e-4
(the export validation's atol) leaves head-room yet catches any real change (a 1% weight perturbation
moves logits by ~1e-2). Every decision must agree exactly.

fp16, bf16 and int8 are judged on what users see: decisions (labels, choices, tokens, spans) and the
task-metric delta. Their raw errors are reported but not judged (None): bf16 keeps 8 mantissa bits,
so logits move by ~1e-2 on any model and a numeric bound says nothing about answers. A decision is
counted only where the reference is decisive (top-two probability gap >= tie_margin): flipping a
near-tie is rounding, not a regression, and the accuracy delta catches systematic drift. A question-answering
span is as decisive as the less decisive of its start and end positions. A head with fewer than
MIN_DECISIVE decisive decisions (an untrained head, whose outputs are near-uniform) cannot be judged by
its answers; it is judged by the worst-case cosine of its raw outputs at the precision's min_embedding_cosine.

Override any field on the command line: `--tol key=value` (every task and precision),
`--tol PRECISION.key=value` or `--tol TASK.PRECISION.key=value`; `none` turns a check off."""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

from runtimes.base import PRECISIONS
from runtimes.errors import ConfigError
from runtimes.heads import TASKS


MIN_DECISIVE = 10  # fewer decisive reference decisions than this cannot judge a head's answers


@dataclass(frozen=True)
class Tolerance:
    max_abs: float | None = None  # raw outputs on real tokens
    max_rel_err: float | None = None  # ||got - ref|| / ||ref|| per case
    min_cosine: float | None = None  # raw outputs, per case
    min_agreement: float = 1.0  # labels / choices / per-token labels / top-1 / exact spans
    tie_margin: float = 0.0  # reference decisions with a smaller top-two probability gap are not counted
    min_span_f1: float | None = None  # question-answering: mean span F1 against the reference
    min_top5_overlap: float | None = None  # fill-mask: mean |top5 ∩ top5_ref| / 5
    min_embedding_cosine: float | None = None  # feature-extraction: worst per-token cosine
    max_accuracy_drop: float | None = None  # labelled data: reference accuracy - candidate accuracy

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if v is not None and not (isinstance(v, (int, float)) and v >= 0):
                raise ConfigError(f"tolerance {f.name} must be a number >= 0 or None; got {v!r}")


FP32 = Tolerance(max_abs=1e-4, max_rel_err=1e-4, min_cosine=0.99999, min_agreement=1.0, tie_margin=0.0,
                 min_span_f1=1.0, min_top5_overlap=1.0, min_embedding_cosine=0.99999, max_accuracy_drop=0.0)
# Low precision: decisions and task delta. int8 gets a wider decision budget than the 16-bit formats (its
# error is quantization noise on every weight, not rounding of the result) but the same accuracy budget:
# held-out accuracy within 1.0 point of PyTorch fp32 is the release bar for every INT8 artifact.
LOW = {
    "fp16": Tolerance(min_agreement=0.98, tie_margin=0.05, min_span_f1=0.95, min_top5_overlap=0.8,
                      min_embedding_cosine=0.99, max_accuracy_drop=0.01),
    "bf16": Tolerance(min_agreement=0.98, tie_margin=0.05, min_span_f1=0.95, min_top5_overlap=0.8,
                      min_embedding_cosine=0.98, max_accuracy_drop=0.01),
    "int8": Tolerance(min_agreement=0.95, tie_margin=0.1, min_span_f1=0.9, min_top5_overlap=0.6,
                      min_embedding_cosine=0.95, max_accuracy_drop=0.01),
}
DEFAULTS: dict[tuple[str, str], Tolerance] = {
    (task, precision): FP32 if precision == "fp32" else LOW[precision] for task in TASKS for precision in PRECISIONS
}


def parse_overrides(items: list[str] | tuple[str, ...]) -> tuple[tuple[str | None, str | None, str, float | None], ...]:
    """'key=value', 'PRECISION.key=value' or 'TASK.PRECISION.key=value' -> (task, precision, key, value)."""
    names = {f.name for f in fields(Tolerance)}
    out = []
    for item in items:
        where, sep, raw = item.partition("=")
        parts = where.strip().split(".")
        if not sep or len(parts) > 3 or parts[-1] not in names:
            raise ConfigError(f"--tol '{item}' is not KEY=VALUE with KEY one of {', '.join(sorted(names))} "
                              f"(optionally prefixed by PRECISION. or TASK.PRECISION.)")
        task = parts[0] if len(parts) == 3 else None
        precision = parts[-2] if len(parts) >= 2 else None
        if task is not None and task not in TASKS:
            raise ConfigError(f"--tol '{item}': unknown task '{task}'. Expected one of: {', '.join(TASKS)}")
        if precision is not None and precision not in PRECISIONS:
            raise ConfigError(f"--tol '{item}': unknown precision '{precision}'. Expected one of: {', '.join(PRECISIONS)}")
        try:
            value = None if raw.strip().lower() == "none" else float(raw)
        except ValueError:
            raise ConfigError(f"--tol '{item}': '{raw}' is not a number or 'none'") from None
        out.append((task, precision, parts[-1], value))
    return tuple(out)


def tolerance_for(task: str, precision: str, overrides=()) -> Tolerance:
    tol = DEFAULTS[task, precision]
    for o_task, o_prec, key, value in overrides:
        if o_task in (None, task) and o_prec in (None, precision):
            if value is None and key in ("min_agreement", "tie_margin"):
                raise ConfigError(f"--tol {key} cannot be none; give a number")
            tol = replace(tol, **{key: value})
    return tol
