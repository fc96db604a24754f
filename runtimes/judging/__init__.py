"""Judging a backend's outputs against PyTorch fp32's, numpy only: parity's metrics and tolerances (used by
benchmarks/parity) and the agreement metrics of the INT8 accuracy searches (used by quantization)."""
