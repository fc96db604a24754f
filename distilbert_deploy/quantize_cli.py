"""`distilbert-deploy quantize`: its flags, built from QuantizeConfig's defaults, and the command."""
from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    from quantization.config import CALIBRATE_METHODS, DEFAULTS as QD, NNCF_SCHEMES  # defaults once, in QuantizeConfig

    z = sub.add_parser("quantize", help="optimized / fp16 / INT8 artifact from an fp32 artifact (a new artifact)")
    z.add_argument("artifact", type=Path, help="source artifact (onnxruntime fp32)")
    z.add_argument("--out", type=Path, help="new artifact directory (default: beside the source, BACKEND-METHOD, "
                                            "-TARGET when --target is given)")
    z.add_argument("--backend", default=QD["backend"], help="onnxruntime, openvino (NNCF) or inc (Intel Neural "
                                                            "Compressor, in its own .venv-inc: make venv-inc)")
    z.add_argument("--method", default=QD["method"], help="onnxruntime: optimize, fp16, dynamic (default), static; "
                                                          "openvino and inc: int8 (default), int8-accuracy")
    z.add_argument("--target", help=f"hardware preset (default: {QD['target']}). auto: picked from this CPU's flags, "
                                    "recorded in the manifest with why (see `distilbert-deploy env`). onnxruntime: "
                                    "avx512-vnni, avx2, arm64, tensorrt, cuda (fp16); openvino: cpu-f32, avx512-bf16; "
                                    "inc: none")
    z.add_argument("--calibration-size", type=int, default=QD["calibration_size"],
                   help="static: train tweets to calibrate on")
    z.add_argument("--calibrate-method", default=QD["calibrate_method"], choices=CALIBRATE_METHODS)
    z.add_argument("--per-channel", action="store_true", help="per-channel weight scales")
    z.add_argument("--max-accuracy-drop", type=float, default=QD["max_accuracy_drop"],
                   help="fraction (0.01 = 1 point); enforced by onnxruntime dynamic/static and the int8-accuracy methods")
    z.add_argument("--keep-fp32", type=lambda s: tuple(x.strip() for x in s.split(",") if x.strip()),
                   default=QD["keep_fp32"],
                   metavar="NODE,...", help="onnxruntime dynamic/static: keep these encoder nodes fp32 and skip the "
                                            "accuracy search (names from a manifest's recipe.fp32_nodes); the bound "
                                            "is still checked")
    z.add_argument("--nncf-scheme", default=QD["nncf_scheme"], choices=NNCF_SCHEMES,
                   help="openvino: NNCF's model_type TRANSFORMER (default) or nncf.quantize's own defaults (the task "
                        "head stays fp32 in both)")
    z.set_defaults(run=cmd_quantize)


def quantize_config(args):
    """The QuantizeConfig of `quantize`'s arguments; --out defaults to SRC's sibling BACKEND-METHOD[-TARGET], named
    after the method the backend resolves to."""
    from quantization.config import DEFAULT_METHOD, QuantizeConfig

    given = {k: getattr(args, k) for k in ("backend", "method", "calibration_size", "calibrate_method", "per_channel",
                                           "max_accuracy_drop", "keep_fp32", "nncf_scheme")}
    if args.target is not None:
        given["target"] = args.target
    out = args.out
    if out is None:
        method = args.method or DEFAULT_METHOD.get(args.backend, "")
        out = Path(args.artifact).parent / (f"{args.backend}-{method}" + (f"-{args.target}" if args.target else ""))
    return QuantizeConfig(artifact=args.artifact, out=out, **given)


def cmd_quantize(args) -> None:
    from quantization.api import quantize

    cfg = quantize_config(args)
    m = quantize(cfg)
    sizes, choice = m.recipe.get("size_bytes", {}), cfg.target_choice
    print(f"wrote {m.backend} {m.precision} artifact ({m.recipe.get('method')}, target {choice['picked'] or 'none'}) "
          f"for {m.task} to {cfg.out}")
    if choice["requested"] == "auto" and choice["picked"]:
        print(f"--target auto picked {choice['picked']}: {choice['why']}")
    if fusions := m.recipe.get("fusions"):
        print("fusions: " + ", ".join(f"{k} x{v}" for k, v in fusions.items()))
    if sizes:
        print("size on disk: " + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in sizes.items()))
    print(f"next: distilbert-deploy parity {cfg.out}")
