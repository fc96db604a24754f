"""`distilbert-deploy` console script. DeployError -> one readable line on stderr, exit code 2."""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from runtimes.errors import ConfigError, InputError, run_main

from .quantize_cli import add_parser as add_quantize_parser
from .serve_cli import add_parser as add_serve_parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.simplefilter("default", UserWarning)
    warnings.formatwarning = lambda msg, cat, *a, **k: f"notice: {msg}\n"
    return run_main(lambda _: args.run(args))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="distilbert-deploy", description=__doc__)
    sub = p.add_subparsers(required=True, metavar="COMMAND")

    e = sub.add_parser("export", help="export a model head to an artifact directory")
    e.add_argument("--model", default="default",
                   help="built-in (tiny, base-random, default), local save_pretrained dir, or hub id")
    e.add_argument("--task", default="text-classification", help="pipeline task name")
    e.add_argument("--out", type=Path, help="artifact directory (default: artifacts/MODEL/TASK/BACKEND-fp32)")
    e.add_argument("--backend", default="onnxruntime", help="onnxruntime (ONNX fp32) or torch (reference)")
    e.add_argument("--opset", type=int, default=17)
    e.add_argument("--max-batch", type=int, default=64, help="largest batch the artifact declares")
    e.add_argument("--cls-pruning", action="store_true",
                   help="text-classification / multiple-choice: the last layer computes only the [CLS] row the head "
                        "reads (same answers, 13%% fewer FLOPs at 128 tokens)")
    e.set_defaults(run=cmd_export)

    r = sub.add_parser("predict", help="pipeline-style answers from an artifact")
    r.add_argument("artifact", type=Path)
    r.add_argument("--text", action="append", default=[], help="input text (repeatable)")
    r.add_argument("--file", type=Path, help="one text per line, or JSON lines for QA/multiple-choice ('-' = stdin)")
    r.add_argument("--question", help="question-answering: the question")
    r.add_argument("--context", help="question-answering: the context")
    r.add_argument("--prompt", help="multiple-choice: the prompt")
    r.add_argument("--choice", action="append", default=[], help="multiple-choice: a candidate (repeatable)")
    r.add_argument("--top-k", type=int, help="answers per input (classification, fill-mask, QA)")
    r.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    r.add_argument("--providers", help="onnxruntime execution providers, comma-separated")
    r.add_argument("--precision", help="torch backend: fp32, bf16 (CPU) or fp16 (CUDA)")
    r.add_argument("--error-on-overflow", action="store_true",
                   help="fail on text longer than the maximum length instead of truncating it")
    r.add_argument("--full", action="store_true", help="feature-extraction: print every vector, not a preview")
    r.set_defaults(run=cmd_predict)

    i = sub.add_parser("inspect", help="print an artifact's manifest")
    i.add_argument("artifact", type=Path)
    i.add_argument("--json", action="store_true", help="raw manifest JSON")
    i.add_argument("--no-verify", action="store_true", help="skip the checksum check")
    i.set_defaults(run=cmd_inspect)

    q = sub.add_parser("parity", help="judge artifacts against the PyTorch fp32 reference on real text",
                       description="Exit 0: every target passes; 1: a target fails parity (the report says which "
                                   "case and how to reproduce it); 2: bad input or a backend that cannot run here.")
    q.add_argument("artifact", type=Path, nargs="*", help="artifact directories (default: every one under --artifacts)")
    q.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="where to look when none is given")
    q.add_argument("--out", type=Path, default=Path("reports"), help="writes parity.json and parity.md here")
    q.add_argument("--corpus", default="ci", choices=["ci", "full"],
                   help="ci: tens of cases per task, 300 labelled tweets; full: all 2000 held-out tweets")
    q.add_argument("--precision", action="append", default=[],
                   help="run these precisions (repeatable or comma-separated; torch artifacts run any the device "
                        "allows, built artifacts only their own; default: each artifact's own)")
    q.add_argument("--tol", action="append", default=[], metavar="[TASK.][PRECISION.]KEY=VALUE",
                   help="override a tolerance (see runtimes/judging/tolerances.py); 'none' reports without judging")
    q.add_argument("--case", action="append", default=[], help="only this case id or id prefix (repeatable)")
    q.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    q.add_argument("--platform", action="append", default=[], metavar="host|linux-aarch64",
                   help="where the artifact's inference runs (repeatable or comma-separated; default host). "
                        "linux-aarch64: the aarch64 build of ONNX Runtime under QEMU (make arm64-env); the PyTorch "
                        "reference and the judging stay on this host")
    q.add_argument("--no-manifest", action="store_true", help="do not write the verdict into the manifests")
    q.set_defaults(run=cmd_parity)

    add_quantize_parser(sub)

    g = sub.add_parser("docs", help="re-render docs/' reference reports and their tables from the JSON they come from",
                       description="Exit 0: every generated Markdown file is a fresh render (written where it was "
                                   "not); 1 with --check: some are not (nothing written); 2: bad input.")
    g.add_argument("--docs", type=Path, default=Path("docs"), help="the docs directory")
    g.add_argument("--check", action="store_true", help="only compare; exit 1 on drift")
    g.set_defaults(run=cmd_docs)

    v = sub.add_parser("env", help="what this machine can build and run: libraries, providers, devices, GPU, CPU "
                                   "ISA, the preset --target auto picks")
    v.add_argument("--json", action="store_true", help="the record as JSON")
    v.set_defaults(run=cmd_env)

    d = sub.add_parser("demo", help="export the default model, predict real tweets with both runtimes, then `optimize` "
                                     "it: the fastest artifact that passes parity on this machine, by measurement")
    d.add_argument("--model", default="default")
    d.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    d.add_argument("--reports", type=Path, default=Path("reports/demo"), help="writes selection.* and bench.* here")
    d.add_argument("--budget-s", type=float, help="optimize's time budget (default: demo_optimize.BUDGET_S)")
    d.set_defaults(run=cmd_demo)

    o = sub.add_parser("export-openvino", help="ONNX fp32 artifact -> OpenVINO IR artifact (CPU)")
    o.add_argument("src", type=Path, help="an onnxruntime fp32 artifact directory")
    o.add_argument("--out", type=Path, help="artifact directory (default: beside SRC, openvino-PRECISION)")
    o.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"],
                   help="inference precision hint (OpenVINO picks bf16 by itself on AVX512-BF16/AMX CPUs)")
    o.set_defaults(run=cmd_export_openvino)

    t = sub.add_parser("export-trt", help="ONNX fp32 artifact -> TensorRT fp16 engine artifact (strongly typed, "
                                          "fp32 islands, profiles per sequence bucket)",
                       description="Exit 0: engine written; 2: bad input, a missing TensorRT module or a target the "
                                   "flavor does not have (nothing is written).")
    t.add_argument("src", type=Path, help="an onnxruntime fp32 artifact directory (the plain export)")
    t.add_argument("--out", type=Path, help="artifact directory (default: beside SRC, FLAVOR-fp16)")
    t.add_argument("--flavor", default="tensorrt", choices=["tensorrt", "tensorrt-rtx"],
                   help="tensorrt: full TensorRT 10/11, built on the GPU it runs on; tensorrt-rtx: built without a GPU "
                        "for RTX compute capabilities")
    t.add_argument("--targets", default="", help="tensorrt-rtx: compute capabilities, e.g. sm89,sm86 "
                                                 "(default sm80,sm86,sm89,sm120); tensorrt: the build GPU")
    t.add_argument("--buckets", default="64,128,512", help="sequence-length bounds, one optimization profile each")
    t.add_argument("--opt-batch", type=int, help="batch size TensorRT tunes for (default: the source manifest's)")
    t.add_argument("--max-batch", type=int, help="largest batch (default: the source manifest's)")
    t.add_argument("--version-compatible", action="store_true", help="engine loads in later TensorRT of the same major")
    t.add_argument("--hardware-compatibility", default="none", choices=["none", "ampere+"],
                   help="full TensorRT: 'ampere+' builds one engine for every sm80+ GPU (slower kernels)")
    t.add_argument("--preflight", action="store_true",
                   help="only check the flavor's module, its targets and the build GPU; build nothing")
    t.set_defaults(run=cmd_export_trt)

    x = sub.add_parser("export-triton", help="artifacts -> a Triton model repository (native backends or the "
                                             "project's runtime in the python backend, plus a text ensemble)",
                       description="Exit 0: repository written (every config.pbtxt schema-checked); 2: bad input, "
                                   "nothing written.")
    x.add_argument("artifact", type=Path, nargs="+", help="artifact directories; each is a model named by its directory")
    x.add_argument("--out", type=Path, required=True, help="the repository directory")
    x.add_argument("--name", action="append", default=[], help="model name per artifact, in order (repeatable)")
    x.add_argument("--max-batch-size", type=int, default=16)
    x.add_argument("--max-queue-delay-us", type=int, default=2000, help="Triton dynamic batcher's queue delay")
    x.add_argument("--instances", type=int, default=1, help="instance_group count per model")
    x.add_argument("--kind", choices=["cpu", "gpu"], help="instance kind (default: gpu for TensorRT, cpu otherwise)")
    x.add_argument("--python-runtime", action="store_true",
                   help="serve each artifact through this project's runtime in Triton's python backend (any Triton)")
    x.add_argument("--onnx-tensorrt", action="store_true", help="ONNX on GPU: ORT's TensorRT accelerator, fp16")
    x.set_defaults(run=cmd_export_triton)

    add_serve_parser(sub)

    from .bench_cli import add_parsers as add_bench_parsers  # `bench` (run/render/compare), `compare`

    add_bench_parsers(sub)
    from .serve_bench_cli import add_parsers as add_serve_bench_parsers

    add_serve_bench_parsers(sub)
    from .optimize_cli import add_parser as add_optimize_parser

    add_optimize_parser(sub)
    return p


def default_out(model: str, task: str, backend: str, suffix: str = "") -> Path:
    name = Path(model).name if Path(model).exists() else model.replace("/", "--")
    return Path("artifacts") / name / task / f"{backend}-fp32{suffix}"


def cmd_export(args) -> None:
    from exporters.onnx_export import ExportConfig, export

    out = args.out or default_out(args.model, args.task, args.backend, "-cls" if args.cls_pruning else "")
    cfg = ExportConfig(model=args.model, task=args.task, out=out, backend=args.backend, opset=args.opset,
                       max_batch=args.max_batch, cls_pruning=args.cls_pruning)
    m = export(cfg)
    fusions = m.recipe.get("optimizer_fusions")
    print(f"wrote {m.backend} {m.precision} artifact for {m.task} to {out}")
    if fusions is not None:
        print("ORT transformer optimizer finds: " + (", ".join(f"{k} x{v}" for k, v in fusions.items()) or "nothing"))
    if v := m.parity.get("export_validation"):
        diffs = ", ".join(f"{k} {x:.2g}" for k, x in v["max_abs_diff"].items())
        print(f"validated against PyTorch on shapes {v['shapes']}: max abs diff {diffs}")


# predict's input flags per task (--file works for every task)
TASK_FLAGS = {
    "question-answering": ("--question", "--context", "--top-k"),
    "multiple-choice": ("--prompt", "--choice"),
    "feature-extraction": ("--text", "--full"),
    "fill-mask": ("--text", "--top-k"),
    "text-classification": ("--text", "--top-k"),
    "token-classification": ("--text",),
}
USAGE = {"question-answering": "--question Q --context C", "multiple-choice": "--prompt P --choice A --choice B"}


def read_lines(file: Path) -> list[str]:
    """Non-empty lines of a UTF-8 file ('-' = stdin); anything else is an InputError, never a traceback."""
    try:
        data = sys.stdin.buffer.read() if str(file) == "-" else file.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read --file {file}: {e.strerror}. Expected a readable text file") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"--file {file} is not UTF-8 text: byte {e.start} is {data[e.start:e.start + 1]!r} "
                         f"({e.reason}). Expected UTF-8, one input per line. Fix: convert it, e.g. "
                         f"iconv -f LATIN1 -t UTF-8 {file} > {file}.utf8") from None
    return [x for x in text.splitlines() if x.strip()]


def check_flags(args, task: str) -> None:
    """Flags for another task are an error naming this artifact's task and the flags it takes."""
    given = {"--text": bool(args.text), "--question": args.question is not None, "--context": args.context is not None,
             "--prompt": args.prompt is not None, "--choice": bool(args.choice), "--top-k": args.top_k is not None,
             "--full": args.full}
    wrong = [f for f, on in given.items() if on and f not in TASK_FLAGS.get(task, given)]
    if wrong:
        owners = {f: [t for t, flags in TASK_FLAGS.items() if f in flags] for f in wrong}
        said = "; ".join(f"{f} is for {', '.join(ts)}" for f, ts in owners.items())
        raise InputError(f"this artifact is {task}: {said}. {task} takes {', '.join(TASK_FLAGS[task])} or --file F")


def predict_inputs(args, task: str, lines: list[str] | None) -> list:
    if lines is not None:
        if task not in USAGE:
            return lines
        out = []
        for n, line in enumerate(lines, 1):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise InputError(f"--file: {task} expects JSON lines, one object per line; non-empty line {n} is "
                                 f"not JSON ({e.msg}): {line[:60]!r}") from None
        return out
    if task == "question-answering":
        return [{"question": args.question, "context": args.context}] if args.question and args.context else []
    if task == "multiple-choice":
        return [{"prompt": args.prompt, "choices": args.choice}] if args.prompt and args.choice else []
    return list(args.text)


def cmd_predict(args) -> None:
    from runtimes.base import RuntimeOptions
    from runtimes.pipeline import load_pipeline

    lines = read_lines(args.file) if args.file else None  # before the model loads: a bad file fails fast
    providers = tuple(p.strip() for p in args.providers.split(",")) if args.providers else ()
    options = RuntimeOptions(device=args.device, precision=args.precision, providers=providers)
    pipe = load_pipeline(args.artifact, options, on_overflow="error" if args.error_on_overflow else "truncate")
    try:
        check_flags(args, pipe.task)
        inputs = predict_inputs(args, pipe.task, lines)
        if not inputs:
            raise InputError(f"no input given for {pipe.task}. Expected {USAGE.get(pipe.task, '--text T')} (or --file)")
        kwargs = {"top_k": args.top_k} if args.top_k else {}
        # One call per input: each answer is exactly what transformers.pipeline(input) gives.
        answers = [pipe(x, **kwargs) for x in inputs]
    finally:
        pipe.runtime.close()
    if pipe.task == "feature-extraction" and not args.full:
        answers = [{"tokens": len(a[0]), "dim": len(a[0][0]), "cls[:4]": [round(x, 4) for x in a[0][0][:4]]}
                   for a in answers]  # a preview; --full prints every vector
    for inp, ans in zip(inputs, answers):
        print(json.dumps({"input": inp, "output": ans}, ensure_ascii=False))


def cmd_inspect(args) -> None:
    from runtimes.artifact import load_artifact

    art = load_artifact(args.artifact, verify=not args.no_verify)
    if args.json:
        print(json.dumps(art.manifest.to_dict(), indent=2))
        return
    from .inspect_view import render

    render(art, verified=not args.no_verify)


def cmd_parity(args) -> int:
    """A failing verdict is a result, not bad input: exit 1 (DeployError stays exit 2)."""
    from .parity_cli import run

    return run(args)


def cmd_docs(args) -> int | None:
    from benchmarks.reports import check, write

    if not args.docs.is_dir():
        raise ConfigError(f"no docs directory at {args.docs}. Fix: run from the repository root or pass --docs DIR")
    if args.check:
        drifts = check(args.docs)
        for d in drifts:
            print(f"{d.path}: {d.why}", file=sys.stderr)
        if drifts:
            print(f"{len(drifts)} generated file(s) drifted from their JSON. Fix: make docs", file=sys.stderr)
            return 1
        print(f"every generated file under {args.docs} is a fresh render")
        return None
    written = write(args.docs)
    print("\n".join(f"wrote {p}" for p in written) or f"every generated file under {args.docs} was a fresh render")
    return None


def cmd_env(args) -> None:
    from .env_report import gather, render

    record = gather()
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        render(record)


def cmd_demo(args) -> None:
    from .demo import run

    run(args.model, args.artifacts, args.reports, args.budget_s)


def cmd_export_openvino(args) -> None:
    from exporters.openvino_export import OpenVinoExportConfig, export_openvino

    out = args.out or args.src.parent / f"openvino-{args.precision}"
    m = export_openvino(OpenVinoExportConfig(src=args.src, out=out, precision=args.precision))
    diffs = ", ".join(f"{k} {x:.2g}" for k, x in m.parity["export_validation"]["max_abs_diff"].items())
    print(f"wrote openvino {m.precision} artifact for {m.task} to {out} "
          f"(INFERENCE_PRECISION_HINT={m.recipe['inference_precision_hint']}); max abs diff vs ONNX: {diffs}")


def cmd_export_triton(args) -> None:
    from exporters.triton_repo import TritonExportConfig, export_triton

    record = export_triton(TritonExportConfig(
        artifacts=tuple(args.artifact), out=args.out, names=tuple(args.name), max_batch_size=args.max_batch_size,
        instances=args.instances, kind=args.kind, python_runtime=args.python_runtime,
        max_queue_delay_us=args.max_queue_delay_us, onnx_tensorrt=args.onnx_tensorrt))
    for name, m in record["models"].items():
        print(f"{name}: {m['task']} {m['backend']} {m['precision']} -> Triton {m['triton_backend']} "
              f"(KIND_{m['kind'].upper()}), text ensemble {m['text_ensemble']}")
    print(f"wrote {args.out} (every config.pbtxt parsed against Triton's ModelConfig schema); "
          f"serve it: tritonserver --model-repository {args.out}")


def cmd_export_trt(args) -> None:
    from exporters.tensorrt_export import TrtExportConfig, default_out, describe_build, export_trt, preflight

    try:
        buckets = tuple(int(x) for x in args.buckets.split(",") if x.strip())
    except ValueError:
        raise InputError(f"--buckets '{args.buckets}' must be comma-separated integers, e.g. 64,128,512") from None
    cfg = TrtExportConfig(src=args.src, out=args.out or default_out(args.src, args.flavor), flavor=args.flavor,
                          targets=tuple(x.strip().lower() for x in args.targets.split(",") if x.strip()),
                          buckets=buckets, opt_batch=args.opt_batch, max_batch=args.max_batch,
                          version_compatible=args.version_compatible,
                          hardware_compatibility=args.hardware_compatibility)
    if args.preflight:
        flavor, targets, _ = preflight(cfg)
        print(f"{args.flavor} {flavor.version} can build for {', '.join(targets)}")
        return
    m = export_trt(cfg)
    print(describe_build(m) + f" -> {cfg.out}")
    print("it runs on an NVIDIA GPU with "
          f"{m.recipe['flavor']} ({', '.join(m.recipe['compute_capabilities'])}); next there: "
          f"distilbert-deploy parity {cfg.out} --device cuda")


if __name__ == "__main__":
    sys.exit(main())
