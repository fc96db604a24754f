"""Artifacts executed by the aarch64 build of ONNX Runtime, in an emulated aarch64 Python (QEMU user mode).

`make arm64-env` builds the environment (tools/arm64-env.sh); env.py finds and describes it; runtime.py is a Runtime whose
inference runs in worker.py under qemu-aarch64, so the parity suite judges the ARM kernels' answers unchanged.
Emulated times are not ARM speeds: nothing here reports them as latency."""
