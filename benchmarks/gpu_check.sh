#!/usr/bin/env bash
# make gpu-check: the GPU-host checks (GPU tests under REQUIRE_HW=gpu, the torch CUDA fp16 eager and CUDA-graph bench
# baselines at 1x128, 8x128, 32x128, the service on --device cuda under a short bounded load), about 8 minutes on an
# H100/H200, everything written to one folder. See docs/gpu-check.md.
#
#   bash benchmarks/gpu_check.sh prepare   here, with PyPI: what the GPU machine lacks, into .whl/gpu-check/ (carried)
#   bash benchmarks/gpu_check.sh           there: refuses at once (exit 2) without a CUDA GPU, else runs the check
#
# Output folder: $GPU_CHECK_OUT, else $OUT (the device tool returns what is written there), else reports/gpu-check.
# Python: $GPU_CHECK_PYTHON, else python3 (on the lent image, the one that holds its CUDA torch).
# Exit: 0 every step passed; 1 a step failed (summary.md says which); 2 this machine cannot run the check.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
CARRY=.whl/gpu-check

if [ "${1:-run}" = prepare ]; then
    shift
    exec "${GPU_CHECK_PYTHON:-.venv/bin/python}" -m benchmarks.gpu_check prepare "$@"
fi
if [ "${1:-run}" != run ]; then
    echo "usage: bash benchmarks/gpu_check.sh [prepare|run]" >&2
    exit 2
fi

PY=${GPU_CHECK_PYTHON:-python3}
DIR=${GPU_CHECK_OUT:-${OUT:-reports/gpu-check}}
WORK=${GPU_CHECK_WORK:-/tmp/gpu-check-work}
SITE=${GPU_CHECK_SITE:-/tmp/gpu-check-site}
FIX="Fix: run it on a machine with an NVIDIA GPU and a CUDA build of torch, e.g. a lent H100/H200 through the device
tool (docs/gpu-check.md: make gpu-check-prepare here, then run 'bash benchmarks/gpu_check.sh' there with carry
[\"$CARRY\"])."

refuse() {  # no GPU: say so before any long work
    echo "gpu-check: $1. It checks a GPU host and cannot run here; nothing was run." >&2
    echo "$FIX" >&2
    exit 2
}

# 1. a GPU, seen by the driver and by torch (seconds; nothing else has run yet)
command -v nvidia-smi >/dev/null 2>&1 || refuse "no NVIDIA GPU is visible here (nvidia-smi is not on PATH)"
nvidia-smi -L >/dev/null 2>&1 || refuse "no NVIDIA GPU is visible here (nvidia-smi -L fails: $(nvidia-smi -L 2>&1 | head -1))"
command -v "$PY" >/dev/null 2>&1 || refuse "no Python at '$PY' (set GPU_CHECK_PYTHON)"
why=$("$PY" -c '
import importlib.util, sys
if importlib.util.find_spec("torch") is None:
    sys.exit("torch is not installed for " + sys.executable)
import torch
if not torch.cuda.is_available():
    sys.exit(f"torch {torch.__version__} (CUDA build: {torch.version.cuda}) sees no CUDA GPU")
' 2>&1) || refuse "$why"

# 2. what the image lacks, from the carried folder (there is no network there): wheels into a --target site first on
#    PYTHONPATH, the data packages unpacked beside them. Without the folder, this Python must already have everything.
mkdir -p "$DIR" || exit 2
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [ -f "$CARRY/manifest.json" ]; then
    rm -rf "$SITE"
    echo "[gpu-check] installing the carried wheels into $SITE (offline)"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
        "$CARRY"/wheels/*.whl || { echo "gpu-check: installing the carried wheels failed (above)" >&2; exit 2; }
    "$PY" -m benchmarks.gpu_check unpack --carry "$CARRY" --site "$SITE" || exit 2
else
    echo "[gpu-check] no $CARRY/manifest.json: using what $PY has (make gpu-check-prepare makes the folder)"
fi
"$PY" -m benchmarks.gpu_check deps || exit 2

# 3. the check itself (benchmarks/gpu_check.py run): logs, bench.{json,md}, summary.{md,json} in $DIR
exec "$PY" -m benchmarks.gpu_check run --out "$DIR" --work "$WORK"
