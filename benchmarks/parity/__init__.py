"""Accuracy parity: every artifact judged against the PyTorch fp32 reference on a versioned corpus of
real text, with task-aware metrics and tolerances keyed by (task, precision).

    from benchmarks.parity import ParityConfig, run_parity
    report = run_parity(ParityConfig(artifacts=(Path("artifacts/default/text-classification/onnxruntime-fp32"),)))
    bool(report)  # passed
"""
from .report import Report
from .runner import ParityConfig, run_parity

__all__ = ["ParityConfig", "Report", "run_parity"]
