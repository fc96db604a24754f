# distilbert-deploy. Every target creates or refreshes .venv itself (see DEVELOPERS.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU by default: pins the local CPU torch build. GPU: TORCH_CONSTRAINTS=constraints/gpu.txt EXTRAS=export,ort-gpu,dev
TORCH_CONSTRAINTS ?= constraints/cpu.txt
EXTRAS ?= export,ort,openvino,dev
comma := ,
STAMP := $(VENV)/.installed-$(subst $(comma),_,$(EXTRAS))
# A second venv with transformers 4.57: the real question-answering pipeline (removed in transformers 5) that
# tests/test_tasks_tf4.py checks the task layer against. Kept small: the CPU torch build (the oracle runs on CPU,
# GPU runs included), transformers, numpy.
VENV_TF4 ?= .venv-tf4
TF4_CONSTRAINTS ?= constraints/cpu.txt
TF4_STAMP := $(VENV_TF4)/.installed-tf4

export DISTILBERT_DEPLOY_CACHE ?= $(CURDIR)/.cache
export HF_HUB_DISABLE_TELEMETRY := 1

MODEL ?= default
TASK ?= text-classification
ARTIFACTS_DIR ?= artifacts
OUT ?= $(ARTIFACTS_DIR)/$(MODEL)/$(TASK)/onnxruntime-fp32

.PHONY: venv venv-tf4 demo test export-onnx clean
venv: $(STAMP)
venv-tf4: $(TF4_STAMP)

$(STAMP): pyproject.toml $(TORCH_CONSTRAINTS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c $(TORCH_CONSTRAINTS) -e '.[$(EXTRAS)]'
	@touch $@

$(TF4_STAMP): $(TF4_CONSTRAINTS)
	@test -x $(VENV_TF4)/bin/python || $(PYTHON) -m venv $(VENV_TF4)
	$(VENV_TF4)/bin/python -m pip install -q --upgrade pip
	$(VENV_TF4)/bin/python -m pip install -q -c $(TF4_CONSTRAINTS) torch 'transformers==4.57.*' numpy
	@touch $@

demo: $(STAMP)
	$(BIN)/distilbert-deploy demo --model $(MODEL) --artifacts $(ARTIFACTS_DIR)

export-onnx: $(STAMP)
	$(BIN)/distilbert-deploy export --model $(MODEL) --task $(TASK) --out $(OUT)

test: $(STAMP) $(TF4_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(ARTIFACTS_DIR) reports .cache

# Accuracy parity against PyTorch (benchmarks/parity). ARTIFACTS: space-separated artifact dirs;
# default: every artifact under $(ARTIFACTS_DIR). PARITY_ARGS: e.g. --corpus full --precision bf16 --tol k=v
ARTIFACTS ?= $(shell find $(ARTIFACTS_DIR) -name manifest.json -not -path '*/.*' 2>/dev/null | xargs -r -n1 dirname | sort)
PARITY_ARGS ?=
.PHONY: parity
parity: $(STAMP)
	$(BIN)/distilbert-deploy parity $(ARTIFACTS) --artifacts $(ARTIFACTS_DIR) --out reports $(PARITY_ARGS)

# Optimized / fp16 / INT8 artifacts (quantization/). BACKEND, METHOD (optimize, fp16, dynamic, static), TARGET
# (avx512-vnni, avx2, arm64, tensorrt, cuda; empty = the method's default); the source fp32 artifact is exported first when missing.
BACKEND ?= onnxruntime
METHOD ?= dynamic
TARGET ?=
QUANT_SRC ?= $(ARTIFACTS_DIR)/$(MODEL)/$(TASK)/onnxruntime-fp32
QUANT_OUT ?= $(if $(filter command line environment,$(origin OUT)),$(OUT),$(ARTIFACTS_DIR)/$(MODEL)/$(TASK)/$(BACKEND)-$(METHOD)$(if $(TARGET),-$(TARGET)))
QUANT_ARGS ?=
.PHONY: quantize
quantize: $(STAMP)
	@test -f $(QUANT_SRC)/manifest.json || $(BIN)/distilbert-deploy export --model $(MODEL) --task $(TASK) --out $(QUANT_SRC)
	$(BIN)/distilbert-deploy quantize $(QUANT_SRC) --out $(QUANT_OUT) --backend $(BACKEND) --method $(METHOD) $(if $(TARGET),--target $(TARGET)) $(QUANT_ARGS)

# OpenVINO IR from the ONNX fp32 artifact (exported first when missing). PRECISION: fp32, bf16 or fp16,
# the CPU inference precision hint (OpenVINO would pick bf16 itself on AVX512-BF16/AMX CPUs).
PRECISION ?= fp32
OV_SRC ?= $(ARTIFACTS_DIR)/$(MODEL)/$(TASK)/onnxruntime-fp32
OV_OUT ?= $(if $(filter command line environment,$(origin OUT)),$(OUT),$(ARTIFACTS_DIR)/$(MODEL)/$(TASK)/openvino-$(PRECISION))
.PHONY: export-openvino
export-openvino: $(STAMP)
	@test -f $(OV_SRC)/manifest.json || $(BIN)/distilbert-deploy export --model $(MODEL) --task $(TASK) --out $(OV_SRC)
	$(BIN)/distilbert-deploy export-openvino $(OV_SRC) --out $(OV_OUT) --precision $(PRECISION)
