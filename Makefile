# distilbert-deploy. Every target creates or refreshes .venv itself (see DEVELOPERS.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU by default: pins the local CPU torch build. GPU: TORCH_CONSTRAINTS=constraints/gpu.txt EXTRAS=export,ort-gpu,dev
TORCH_CONSTRAINTS ?= constraints/cpu.txt
EXTRAS ?= export,ort,dev
comma := ,
STAMP := $(VENV)/.installed-$(subst $(comma),_,$(EXTRAS))

export DISTILBERT_DEPLOY_CACHE ?= $(CURDIR)/.cache
export HF_HUB_DISABLE_TELEMETRY := 1

MODEL ?= default
TASK ?= text-classification
ARTIFACTS_DIR ?= artifacts
OUT ?= $(ARTIFACTS_DIR)/$(MODEL)/$(TASK)/onnxruntime-fp32

.PHONY: venv demo test export-onnx clean
venv: $(STAMP)

$(STAMP): pyproject.toml $(TORCH_CONSTRAINTS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c $(TORCH_CONSTRAINTS) -e '.[$(EXTRAS)]'
	@touch $@

demo: $(STAMP)
	$(BIN)/distilbert-deploy demo --model $(MODEL) --artifacts $(ARTIFACTS_DIR)

export-onnx: $(STAMP)
	$(BIN)/distilbert-deploy export --model $(MODEL) --task $(TASK) --out $(OUT)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(ARTIFACTS_DIR) reports .cache
