# distilbert-deploy. Every target creates or refreshes .venv itself (see DEVELOPERS.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU by default: pins the local CPU torch build. GPU: TORCH_CONSTRAINTS=constraints/gpu.txt EXTRAS=export,ort-gpu,dev
TORCH_CONSTRAINTS ?= constraints/cpu.txt
EXTRAS ?= export,ort,openvino,serve,tensorrt-rtx,dev
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

.PHONY: venv venv-tf4 demo test test-fast export-onnx clean docs
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

DEMO_ARGS ?=
demo: $(STAMP)
	$(BIN)/distilbert-deploy demo --model $(MODEL) --artifacts $(ARTIFACTS_DIR) $(DEMO_ARGS)

EXPORT_ARGS ?=
export-onnx: $(STAMP)
	$(BIN)/distilbert-deploy export --model $(MODEL) --task $(TASK) --out $(OUT) $(EXPORT_ARGS)

# make test: every tier; what needs hardware or an environment this machine lacks skips with the reason
# (REQUIRE_HW=arm64,gpu,... turns those skips into failures; .ci/run requires what CI builds). The 40 slowest
# tests are listed at the end, so CI's output says where the time went.
# make test-fast: unit tests and the tiny-model paths in .venv alone: no other venv, server, emulation or engine
# build, no accuracy search (the markers in pyproject.toml). Run it before every commit.
PYTEST_ARGS ?=
FAST_MARKERS := not (slow or search or server or emulated or arm64 or ray or triton or kserve or infinity or tf4 or inc or tensorrt or gpu)
test: $(STAMP) $(TF4_STAMP)
	$(BIN)/python -m pytest --durations=40 $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m '$(FAST_MARKERS)' --durations=15 $(PYTEST_ARGS)

# The reference reports in docs/ and the tables hand-written docs take from them, re-rendered from their JSON
# (benchmarks/reports.py); tests/test_docs.py fails when the committed Markdown is not a fresh render.
docs: $(STAMP)
	$(BIN)/distilbert-deploy docs

clean:
	rm -rf $(ARTIFACTS_DIR) reports .cache

# Accuracy parity against PyTorch (benchmarks/parity). ARTIFACTS: space-separated artifact dirs;
# default: every artifact under $(ARTIFACTS_DIR). PARITY_ARGS: e.g. --corpus full --precision bf16 --tol k=v
ARTIFACTS ?= $(shell find $(ARTIFACTS_DIR) -name manifest.json -not -path '*/.*' 2>/dev/null | xargs -r -n1 dirname | sort)
PARITY_ARGS ?=
.PHONY: parity
parity: $(STAMP)
	$(BIN)/distilbert-deploy parity $(ARTIFACTS) --artifacts $(ARTIFACTS_DIR) --out reports $(PARITY_ARGS)

# Optimized / fp16 / INT8 artifacts (quantization/). BACKEND (onnxruntime, openvino, inc), METHOD, TARGET and OUT
# are passed on only when given, so their defaults are the CLI's, defined once in quantization/config.py
# (QuantizeConfig: onnxruntime; its DEFAULT_METHOD: onnxruntime dynamic, openvino and inc int8; `--target auto`,
# picked from this CPU's flags and recorded in the manifest; the artifact beside the source, BACKEND-METHOD[-TARGET]).
# Presets: avx512-vnni, avx2, arm64, tensorrt, cuda; openvino cpu-f32, avx512-bf16. The fp32 source is exported
# first when missing.
BACKEND ?=
METHOD ?=
TARGET ?=
QUANT_SRC ?= $(ARTIFACTS_DIR)/$(MODEL)/$(TASK)/onnxruntime-fp32
QUANT_OUT ?= $(if $(filter command line environment,$(origin OUT)),$(OUT))
QUANT_ARGS ?=
.PHONY: quantize
quantize: $(STAMP)
	@test -f $(QUANT_SRC)/manifest.json || $(BIN)/distilbert-deploy export --model $(MODEL) --task $(TASK) --out $(QUANT_SRC)
	$(BIN)/distilbert-deploy quantize $(QUANT_SRC) $(if $(QUANT_OUT),--out $(QUANT_OUT)) $(if $(BACKEND),--backend $(BACKEND)) $(if $(METHOD),--method $(METHOD)) $(if $(TARGET),--target $(TARGET)) $(QUANT_ARGS)

# The fastest verified artifact for this machine (benchmarks/optimize; docs/optimize/README.md): builds every recipe
# that runs on this CPU (one subprocess each, cached), judges each with the parity suite, times the passing ones
# side by side with the peers and PyTorch, writes the fastest to OPT_OUT with the selection in its manifest and the
# report in reports/optimize/MODEL/TASK/. The fp32 source is exported first when missing. OPT_ARGS: --workload,
# --rank, --budget-s S, --peer, --only (see `distilbert-deploy optimize -h`).
OPT_SRC ?= $(ARTIFACTS_DIR)/$(MODEL)/$(TASK)/onnxruntime-fp32
OPT_OUT ?= $(if $(filter command line environment,$(origin OUT)),$(OUT),$(ARTIFACTS_DIR)/$(MODEL)/$(TASK)/optimized)
OPT_ARGS ?=
.PHONY: optimize
optimize: $(STAMP)
	@test -f $(OPT_SRC)/manifest.json || $(BIN)/distilbert-deploy export --model $(MODEL) --task $(TASK) --out $(OPT_SRC)
	$(BIN)/distilbert-deploy optimize $(OPT_SRC) --out $(OPT_OUT) --optimum-python $(VENV_OPTIMUM)/bin/python \
		--cmdline 'make optimize MODEL=$(MODEL) TASK=$(TASK)$(if $(OPT_ARGS), OPT_ARGS="$(OPT_ARGS)")' $(OPT_ARGS)

# OpenVINO IR from the ONNX fp32 artifact (exported first when missing). PRECISION: fp32, bf16 or fp16,
# the CPU inference precision hint (OpenVINO would pick bf16 itself on AVX512-BF16/AMX CPUs).
PRECISION ?= fp32
OV_SRC ?= $(ARTIFACTS_DIR)/$(MODEL)/$(TASK)/onnxruntime-fp32
OV_OUT ?= $(if $(filter command line environment,$(origin OUT)),$(OUT),$(ARTIFACTS_DIR)/$(MODEL)/$(TASK)/openvino-$(PRECISION))
.PHONY: export-openvino
export-openvino: $(STAMP)
	@test -f $(OV_SRC)/manifest.json || $(BIN)/distilbert-deploy export --model $(MODEL) --task $(TASK) --out $(OV_SRC)
	$(BIN)/distilbert-deploy export-openvino $(OV_SRC) --out $(OV_OUT) --precision $(PRECISION)

# TensorRT fp16 engine from the ONNX fp32 artifact (exported first when missing; exporters/tensorrt_export.py).
# TRT_FLAVOR: tensorrt (full TensorRT 10/11 from NVIDIA's index, built on the GPU it runs on; the default) or
# tensorrt-rtx (built here without a GPU for TRT_TARGETS, e.g. sm89,sm86). The flavor is checked before anything is
# exported. TRT_ARGS: e.g. --buckets 64,128,512 --max-batch 32 --version-compatible (see `distilbert-deploy export-trt -h`).
TRT_FLAVOR ?= tensorrt
TRT_TARGETS ?=
TRT_ARGS ?=
TRT_SRC ?= $(ARTIFACTS_DIR)/$(MODEL)/$(TASK)/onnxruntime-fp32
TRT_OUT ?= $(if $(filter command line environment,$(origin OUT)),$(OUT),$(ARTIFACTS_DIR)/$(MODEL)/$(TASK)/$(TRT_FLAVOR)-fp16)
TRT_FLAGS = --flavor $(TRT_FLAVOR) $(if $(TRT_TARGETS),--targets $(TRT_TARGETS)) $(TRT_ARGS)
.PHONY: export-trt
export-trt: $(STAMP)
	$(BIN)/distilbert-deploy export-trt $(TRT_SRC) --out $(TRT_OUT) $(TRT_FLAGS) --preflight
	@test -f $(TRT_SRC)/manifest.json || $(BIN)/distilbert-deploy export --model $(MODEL) --task $(TASK) --out $(TRT_SRC)
	$(BIN)/distilbert-deploy export-trt $(TRT_SRC) --out $(TRT_OUT) $(TRT_FLAGS)

# Triton model repository (exporters/triton_repo.py). ARTIFACT: artifact dir(s) (default: the ONNX fp32 artifact of
# MODEL/TASK, exported first when missing); TRITON_OUT; TRITON_ARGS: --python-runtime, --max-batch-size N,
# --instances N, --kind cpu|gpu, --onnx-tensorrt (see `distilbert-deploy export-triton -h`).
TRITON_SRC ?= $(ARTIFACTS_DIR)/$(MODEL)/$(TASK)/onnxruntime-fp32
TRITON_ARTIFACTS ?= $(if $(filter command line,$(origin ARTIFACT)),$(ARTIFACT),$(TRITON_SRC))
TRITON_OUT ?= $(if $(filter command line environment,$(origin OUT)),$(OUT),triton-repository)
TRITON_ARGS ?=
.PHONY: export-triton venv-triton
export-triton: $(STAMP)
	@test "$(TRITON_ARTIFACTS)" != "$(TRITON_SRC)" || test -f $(TRITON_SRC)/manifest.json || \
		$(BIN)/distilbert-deploy export --model $(MODEL) --task $(TASK) --out $(TRITON_SRC)
	$(BIN)/distilbert-deploy export-triton $(TRITON_ARTIFACTS) --out $(TRITON_OUT) $(TRITON_ARGS)

# OIP v2 gRPC stubs (runtimes/serving/oip_grpc/*_pb2*.py, committed) from the vendored Triton protos. grpcio-tools
# goes into the cache, not the venv: 1.81.1's protoc emits the protobuf 6.33 code that the venv's protobuf 6 and
# tritonclient[grpc] need (later ones emit and install protobuf 7).
GRPC_TOOLS ?= grpcio-tools==1.81.1
.PHONY: grpc-stubs
grpc-stubs: $(STAMP)
	$(BIN)/python -m pip install -q --no-deps --target $(DISTILBERT_DEPLOY_CACHE)/grpc-tools '$(GRPC_TOOLS)'
	PYTHONPATH=$(DISTILBERT_DEPLOY_CACHE)/grpc-tools $(BIN)/python -m runtimes.serving.oip_grpc.generate

# A real Triton server for the --python-runtime repository: nvidia-pytriton bundles tritonserver (python backend
# only) and pins numpy 1.26, so it lives in its own venv with this project (core + onnxruntime + openvino) installed
# for the python models. `make test` builds it (tests/test_triton.py serves a repository with it).
VENV_TRITON ?= .venv-triton
TRITON_STAMP := $(VENV_TRITON)/.installed-triton
venv-triton: $(TRITON_STAMP)

$(TRITON_STAMP): pyproject.toml
	@test -x $(VENV_TRITON)/bin/python || $(PYTHON) -m venv $(VENV_TRITON)
	$(VENV_TRITON)/bin/python -m pip install -q --upgrade pip
	$(VENV_TRITON)/bin/python -m pip install -q 'nvidia-pytriton==0.7.*' 'numpy==1.26.*' -e '.[ort,openvino]'
	@touch $@

test: $(TRITON_STAMP)

# Ray Serve (`distilbert-deploy serve --engine ray`): its own venv, because Ray installs protobuf 7 and the main
# venv's tritonclient[grpc] needs protobuf < 7; with openvino, for the demo's OpenVINO winner in `make bench-serve`.
# `make test` builds it (tests/test_ray_serve.py runs it inside a private network namespace: Ray's internal servers
# bind the host address even when asked for loopback).
VENV_RAY ?= .venv-ray
RAY_STAMP := $(VENV_RAY)/.installed-ray-openvino
.PHONY: venv-ray
venv-ray: $(RAY_STAMP)

$(RAY_STAMP): pyproject.toml
	@test -x $(VENV_RAY)/bin/python || $(PYTHON) -m venv $(VENV_RAY)
	$(VENV_RAY)/bin/python -m pip install -q --upgrade pip
	$(VENV_RAY)/bin/python -m pip install -q -e '.[ort,serve,ray]' openvino
	@touch $@

test: $(RAY_STAMP)

# KServe ModelServer (a bench-serve peer: benchmarks/serve_bench/kserve_model.py serves our artifact through a
# kserve.Model that calls runtimes.pipeline): its own venv with kserve 0.21 and this project (core + onnxruntime +
# openvino, for the demo's OpenVINO winner), no torch. About a minute from a warm pip cache. `make test` builds it
# (tests/test_kserve_peer.py starts it on 127.0.0.1).
VENV_KSERVE ?= .venv-kserve
KSERVE_STAMP := $(VENV_KSERVE)/.installed-kserve
.PHONY: venv-kserve
venv-kserve: $(KSERVE_STAMP)

$(KSERVE_STAMP): pyproject.toml $(TORCH_CONSTRAINTS)
	@test -x $(VENV_KSERVE)/bin/python || $(PYTHON) -m venv $(VENV_KSERVE)
	$(VENV_KSERVE)/bin/python -m pip install -q --upgrade pip
	$(VENV_KSERVE)/bin/python -m pip install -q -c $(TORCH_CONSTRAINTS) 'kserve==0.21.0' openvino -e '.[ort]'
	@touch $@

test: $(KSERVE_STAMP)

# infinity-emb (a bench-serve peer, `--engine optimum` on the same ONNX model): its own venv. The CPU torch goes in
# first from TORCH_CONSTRAINTS, or its extras pull a 5.8 GB CUDA build; several GB all the same, so only
# `make bench-serve` builds it (not `make test`, not CI). tests/test_infinity_peer.py uses it where it exists.
VENV_INFINITY ?= .venv-infinity
INFINITY_STAMP := $(VENV_INFINITY)/.installed-infinity
.PHONY: venv-infinity
venv-infinity: $(INFINITY_STAMP)

$(INFINITY_STAMP): $(TORCH_CONSTRAINTS)
	@test -x $(VENV_INFINITY)/bin/python || $(PYTHON) -m venv $(VENV_INFINITY)
	$(VENV_INFINITY)/bin/python -m pip install -q --upgrade pip
	$(VENV_INFINITY)/bin/python -m pip install -q -c $(TORCH_CONSTRAINTS) torch
	$(VENV_INFINITY)/bin/python -m pip install -q -c $(TORCH_CONSTRAINTS) 'infinity-emb[server,optimum]==0.0.78'
	@touch $@

# Intel Neural Compressor: its own venv, because onnx-neural-compressor pins numpy 1.x and needs the undeclared
# prettytable and scipy. No project install, no torch: quantization/inc.py (main venv) tokenizes everything and runs
# quantization/inc_worker.py with this python. Then `make quantize BACKEND=inc METHOD=int8-accuracy` (or int8).
# `make test` builds it too, so tests/test_inc.py runs instead of skipping.
VENV_INC ?= .venv-inc
INC_STAMP := $(VENV_INC)/.installed-inc
.PHONY: venv-inc
venv-inc: $(INC_STAMP)

$(INC_STAMP):
	@test -x $(VENV_INC)/bin/python || $(PYTHON) -m venv $(VENV_INC)
	$(VENV_INC)/bin/python -m pip install -q --upgrade pip
	$(VENV_INC)/bin/python -m pip install -q 'onnx-neural-compressor==1.0' 'numpy==1.26.*' prettytable scipy onnx onnxruntime
	@touch $@

test: $(INC_STAMP)

# INT8 floor benchmark (benchmarks/int8_floor.py): the project's fastest CPU artifacts against the INT8 GEMM peak,
# PyTorch eager fp32 and plain nncf.quantize defaults, one process, interleaved. FLOOR_MODEL: base-random (base size).
FLOOR_MODEL ?= base-random
FLOOR_ARGS ?=
.PHONY: bench-int8
bench-int8: $(STAMP)
	$(BIN)/python -m benchmarks.int8_floor --model $(FLOOR_MODEL) --artifacts $(ARTIFACTS_DIR) --out reports $(FLOOR_ARGS)

# Latency benchmark harness (benchmarks/bench; docs/bench.md). Variables: MODEL, TASK, ARTIFACTS (space-separated
# dirs; default here: the ONNX fp32 artifact of MODEL/TASK, exported first when missing), SCENARIO (latency, sweep,
# realtext, throughput, coldstart, comma-separated; default all), QUICK=1 (tiny shapes/counts), BENCH_ARGS (more
# flags, see `distilbert-deploy bench run -h`). Baselines: PyTorch eager fp32/bf16 and torch.compile; peers:
# plain ORT, plain OpenVINO+NNCF, and optimum/optimum-intel from $(VENV_OPTIMUM) (`make venv-optimum`; skipped with
# the reason when absent). Writes $(BENCH_OUT)/bench.{json,md,png}.
VENV_OPTIMUM ?= .venv-optimum
OPTIMUM_STAMP := $(VENV_OPTIMUM)/.installed-optimum
BENCH_SRC ?= $(ARTIFACTS_DIR)/$(MODEL)/$(TASK)/onnxruntime-fp32
BENCH_ARTIFACTS ?= $(if $(filter command line,$(origin ARTIFACTS)),$(ARTIFACTS),$(BENCH_SRC))
SCENARIO ?= all
QUICK ?=
BENCH_OUT ?= reports
BENCH_ARGS ?=
BENCH_CMD = make bench MODEL=$(MODEL) TASK=$(TASK) SCENARIO=$(SCENARIO)$(if $(QUICK), QUICK=1)$(if $(filter command line,$(origin ARTIFACTS)), ARTIFACTS="$(ARTIFACTS)")$(if $(filter command line,$(origin BENCH_OUT)), BENCH_OUT=$(BENCH_OUT))$(if $(BENCH_ARGS), BENCH_ARGS="$(BENCH_ARGS)")
.PHONY: bench venv-optimum
venv-optimum: $(OPTIMUM_STAMP)

$(OPTIMUM_STAMP): $(TORCH_CONSTRAINTS)
	@test -x $(VENV_OPTIMUM)/bin/python || $(PYTHON) -m venv $(VENV_OPTIMUM)
	$(VENV_OPTIMUM)/bin/python -m pip install -q --upgrade pip
	$(VENV_OPTIMUM)/bin/python -m pip install -q -c $(TORCH_CONSTRAINTS) 'optimum-intel==1.27.0' 'optimum-onnx==0.1.0' \
		'optimum==2.1.0' 'transformers==4.57.6' torch onnxruntime openvino nncf numpy
	@touch $@

bench: $(STAMP)
	@test -f $(BENCH_SRC)/manifest.json || $(BIN)/distilbert-deploy export --model $(MODEL) --task $(TASK) --out $(BENCH_SRC)
	$(BIN)/distilbert-deploy bench run $(BENCH_ARTIFACTS) --scenario $(SCENARIO) $(if $(QUICK),--quick) \
		--out $(BENCH_OUT) --optimum-python $(VENV_OPTIMUM)/bin/python --cmdline '$(BENCH_CMD)' $(BENCH_ARGS)

# Every artifact type x every task of MODEL (benchmarks/artifact_matrix.py): builds what is missing (one CLI
# subprocess each, failures recorded), judges everything with the parity suite in one run, writes
# reports/matrix/matrix.{json,md}. MATRIX_ARGS: --types a,b --tasks x,y --corpus ci|full --rebuild.
MATRIX_ARGS ?=
.PHONY: matrix
matrix: $(STAMP) $(INC_STAMP)
	$(BIN)/python -m benchmarks.artifact_matrix --model $(MODEL) --artifacts $(ARTIFACTS_DIR) --out reports/matrix $(MATRIX_ARGS)

# The production service (runtimes/serving; docs/serving.md). ARTIFACT: artifact dir(s) to serve (default: the
# demo's winner, artifacts/MODEL/text-classification/optimized, built by `make demo` when missing). SERVE_ARGS: more flags, e.g. --port 8080
# --max-batch-size 32 --instances 2 --api-key-env API_KEY (see `distilbert-deploy serve -h`). Binds 127.0.0.1:8000.
SERVE_ARTIFACT := $(ARTIFACTS_DIR)/$(MODEL)/text-classification/optimized
ARTIFACT ?= $(SERVE_ARTIFACT)
SERVE_ARGS ?=
.PHONY: serve
serve: $(STAMP)
	@test "$(ARTIFACT)" != "$(SERVE_ARTIFACT)" || test -f $(SERVE_ARTIFACT)/manifest.json || \
		$(BIN)/distilbert-deploy demo --model $(MODEL) --artifacts $(ARTIFACTS_DIR)
	exec $(BIN)/distilbert-deploy serve $(ARTIFACT) $(SERVE_ARGS)

# Service load benchmark (benchmarks/serve_bench; docs/serve-bench/README.md): headless locust on 127.0.0.1 drives
# `distilbert-deploy serve` with held-out tweets at concurrency 1, 4, 16 and 64, batching on (--max-batch-size 16)
# against off (--max-batch-size 1), with the in-process pipeline on the same texts as the ceiling, and judges the
# issue's targets in that one run. SERVE_BENCH_RUNS (default all four), each writing $(SERVE_BENCH_OUT)/NAME.{json,md,png}:
# - fp32: the ONNX fp32 artifact of MODEL/TASK (exported first when missing), peers SERVE_BENCH_FP32_PEERS (none);
# - optimized: the fastest verified artifact, the one `make demo` selects (artifacts/MODEL/TASK/optimized, built by
#   `make demo` when missing), with the peers SERVE_BENCH_PEERS under the same load (and ours over gRPC too, beside
#   KServe's gRPC); the peer targets are judged here;
# - embeddings: MODEL's feature-extraction ONNX fp32 artifact, our /v1/embeddings against infinity's /embeddings;
# - realsize: a dim-768 DistilBERT (REAL_MODEL, default base-random) at 16/32/64/128 tokens, c=1, with plain
#   transformers alongside and infinity when it is a peer (`distilbert-deploy serve-bench realsize -h`).
# Every peer runs from its own venv, built here for the peers named: .venv-ray, .venv-triton, .venv-kserve and
# .venv-infinity (several GB; only this target builds it). A peer asked for that cannot be measured is a row of the
# report and makes the target exit 2 (after every run). QUICK=1: short steps (smoke test); SERVE_BENCH_ARGS: more
# flags for the load runs (`distilbert-deploy serve-bench run -h`); REALSIZE_ARGS for the real-size case.
SERVE_BENCH_SRC ?= $(ARTIFACTS_DIR)/$(MODEL)/$(TASK)/onnxruntime-fp32
SERVE_BENCH_FAST ?= $(ARTIFACTS_DIR)/$(MODEL)/$(TASK)/optimized
SERVE_BENCH_EMBED ?= $(ARTIFACTS_DIR)/$(MODEL)/feature-extraction/onnxruntime-fp32
REAL_MODEL ?= base-random
SERVE_BENCH_REAL ?= $(ARTIFACTS_DIR)/$(REAL_MODEL)/text-classification/onnxruntime-fp32
SERVE_BENCH_RUNS ?= fp32 optimized embeddings realsize
SERVE_BENCH_OUT ?= reports/serve-bench
SERVE_BENCH_ARGS ?=
REALSIZE_ARGS ?=
# peers under the same load on the fastest artifact (the Ray ones run the whole benchmark in a private network
# namespace, as root); none for our service alone
SERVE_BENCH_PEERS ?= ray-1,ray-2,triton,kserve,kserve-grpc,infinity
SERVE_BENCH_FP32_PEERS ?= none
_SB_PEERS := $(subst $(comma), ,$(SERVE_BENCH_PEERS) $(SERVE_BENCH_FP32_PEERS))
_SB_INFINITY := $(if $(filter infinity,$(_SB_PEERS)),infinity,none)
SERVE_BENCH_CMD = make bench-serve MODEL=$(MODEL) TASK=$(TASK)$(if $(QUICK), QUICK=1)$(if $(filter command line,$(origin SERVE_BENCH_OUT)), SERVE_BENCH_OUT=$(SERVE_BENCH_OUT))$(if $(filter command line,$(origin SERVE_BENCH_PEERS)), SERVE_BENCH_PEERS=$(SERVE_BENCH_PEERS))$(if $(filter command line,$(origin SERVE_BENCH_RUNS)), SERVE_BENCH_RUNS="$(SERVE_BENCH_RUNS)")$(if $(SERVE_BENCH_ARGS), SERVE_BENCH_ARGS="$(SERVE_BENCH_ARGS)")
_SB_RUN = $(BIN)/distilbert-deploy serve-bench run $(if $(QUICK),--quick) --out $(SERVE_BENCH_OUT) --cmdline '$(SERVE_BENCH_CMD)' $(SERVE_BENCH_ARGS)
.PHONY: bench-serve
bench-serve: $(STAMP) $(if $(filter ray%,$(_SB_PEERS)),$(RAY_STAMP)) $(if $(filter triton,$(_SB_PEERS)),$(TRITON_STAMP)) \
		$(if $(filter kserve%,$(_SB_PEERS)),$(KSERVE_STAMP)) $(if $(filter infinity,$(_SB_PEERS)),$(INFINITY_STAMP))
	@test -f $(SERVE_BENCH_SRC)/manifest.json || $(BIN)/distilbert-deploy export --model $(MODEL) --task $(TASK) --out $(SERVE_BENCH_SRC)
	$(if $(filter optimized,$(SERVE_BENCH_RUNS)),@test -f $(SERVE_BENCH_FAST)/manifest.json || $(BIN)/distilbert-deploy demo --model $(MODEL) --artifacts $(ARTIFACTS_DIR))
	$(if $(filter embeddings,$(SERVE_BENCH_RUNS)),@test -f $(SERVE_BENCH_EMBED)/manifest.json || $(BIN)/distilbert-deploy export --model $(MODEL) --task feature-extraction --out $(SERVE_BENCH_EMBED))
	$(if $(filter realsize,$(SERVE_BENCH_RUNS)),@test -f $(SERVE_BENCH_REAL)/manifest.json || $(BIN)/distilbert-deploy export --model $(REAL_MODEL) --task text-classification --out $(SERVE_BENCH_REAL))
	rc=0; \
	$(if $(filter fp32,$(SERVE_BENCH_RUNS)),$(_SB_RUN) $(SERVE_BENCH_SRC) --name fp32 --peer $(SERVE_BENCH_FP32_PEERS) || rc=2;) \
	$(if $(filter optimized,$(SERVE_BENCH_RUNS)),$(_SB_RUN) $(SERVE_BENCH_FAST) --name optimized --grpc --peer $(SERVE_BENCH_PEERS) || rc=2;) \
	$(if $(filter embeddings,$(SERVE_BENCH_RUNS)),$(_SB_RUN) $(SERVE_BENCH_EMBED) --name embeddings --peer $(_SB_INFINITY) || rc=2;) \
	$(if $(filter realsize,$(SERVE_BENCH_RUNS)),$(BIN)/distilbert-deploy serve-bench realsize $(SERVE_BENCH_REAL) $(if $(QUICK),--quick) --out $(SERVE_BENCH_OUT) --peer $(_SB_INFINITY) --cmdline '$(SERVE_BENCH_CMD)' $(REALSIZE_ARGS) || rc=2;) \
	exit $$rc

# Edge: the arm64 artifact judged on aarch64 (runtimes/arm64; docs/edge/README.md). arm64-env builds, without root,
# an emulated aarch64 Python (a Debian trixie arm64 root filesystem unpacked from its .debs, the aarch64 onnxruntime
# wheel of the host's version and its own qemu-aarch64-static; PyPI and Debian's mirror) once per recipe under
# ARM64_CACHE (unset: /var/cache/distilbert-deploy where writable, else ~/.cache/distilbert-deploy) and links it as
# .arm64-env. parity-arm judges ARTIFACTS (default: every arm64 artifact under $(ARTIFACTS_DIR)) on the host AND on
# the emulated aarch64, side by side in one report.
ARM64_ENV := .arm64-env
ARM64_STAMP := $(ARM64_ENV)/env.json
ARM_ARTIFACTS ?= $(if $(filter command line,$(origin ARTIFACTS)),$(ARTIFACTS),$(shell find $(ARTIFACTS_DIR) -path '*arm64*' -name manifest.json -not -path '*/.*' 2>/dev/null | xargs -r -n1 dirname | sort))
.PHONY: arm64-env parity-arm
arm64-env: $(STAMP)
	bash tools/arm64-env.sh $(BIN)/python $(ARM64_ENV)

parity-arm: $(STAMP) arm64-env
	@test -n "$(ARM_ARTIFACTS)" || { echo "parity-arm: no arm64 artifact under $(ARTIFACTS_DIR). Fix: make quantize METHOD=static TARGET=arm64, or pass ARTIFACTS=DIR" >&2; exit 2; }
	$(BIN)/distilbert-deploy parity $(ARM_ARTIFACTS) --platform host,linux-aarch64 --out reports/arm64 $(PARITY_ARGS)

# GPU-host check (benchmarks/gpu_check.sh; docs/gpu-check.md): REQUIRE_HW=gpu pytest -m gpu, the torch CUDA fp16 eager
# and CUDA-graph bench baselines at 1x128, 8x128 and 32x128, and the service on --device cuda under a short bounded
# load, sized for about 8 minutes on an H100/H200; one folder ($GPU_CHECK_OUT, else $OUT, else reports/gpu-check).
# Exits 2 at once without a CUDA GPU. The lent image has no network: gpu-check-prepare (here, with PyPI) writes the
# files it needs to .whl/gpu-check/, which travel with the command.
.PHONY: gpu-check gpu-check-prepare
gpu-check:
	bash benchmarks/gpu_check.sh
gpu-check-prepare: $(STAMP)
	GPU_CHECK_PYTHON=$(BIN)/python bash benchmarks/gpu_check.sh prepare
