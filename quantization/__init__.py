"""INT8 / fp16 / optimizer recipes that turn an fp32 ONNX artifact into a new artifact."""
