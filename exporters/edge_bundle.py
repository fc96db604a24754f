"""The edge bundle the arm64 preset ships beside model.ort: the reduced operator configuration for an ONNX Runtime
minimal build (written by the .ort conversion itself, with type reduction) and a README that states what a device
build needs: the ORT version, the input contract, the labels and the size. The tokenizer files come with every
derived artifact (copy_side_files)."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from runtimes.artifact import Manifest
from runtimes.errors import QuantizationError
from runtimes.progress import step

OPS_CONFIG = "required_operators_and_types.config"
README = "README.md"


def write_ort_format(onnx_path: Path, target: Path) -> dict:
    """Convert to ORT's flatbuffer format (fixed optimizations for ARM) and keep the operator/type configuration the
    converter derives from it. Returns {"ort": bytes, "ops_config": file name}."""
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    with step("convert to .ort (fixed optimizations, target_platform arm) + reduced operator config"), \
            tempfile.TemporaryDirectory(dir=onnx_path.parent.parent) as work:
        src = Path(work) / "in" / "model.onnx"
        src.parent.mkdir()
        shutil.copy2(onnx_path, src)
        out = Path(work) / "out"
        convert_onnx_models_to_ort(src.parent, out, [OptimizationStyle.Fixed], target_platform="arm",
                                   enable_type_reduction=True)
        made, configs = sorted(out.rglob("*.ort")), sorted(out.rglob("*.config"))
        if not made or not configs:
            raise QuantizationError(f"onnxruntime's .ort conversion produced {len(made)} .ort and {len(configs)} "
                                    f"config files (expected one of each). Nothing was written")
        shutil.move(str(made[0]), target)
        lines = configs[0].read_text().splitlines()  # its header names the temporary path it converted
        (target.parent / OPS_CONFIG).write_text("\n".join("# - model.ort" if x.startswith("# - ") else x
                                                            for x in lines) + "\n")
    return {"ort": target.stat().st_size, "ops_config": OPS_CONFIG}


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def readme(m: Manifest) -> str:
    r = m.recipe
    sizes = r.get("size_bytes", {})
    ort_version = m.versions.get("onnxruntime", "?")
    kept = r.get("accuracy_control", {}).get("kept_fp32", [])
    quantizable = r.get("accuracy_control", {}).get("quantizable_nodes", "?")
    emb = r.get("word_embeddings") or {}
    inputs = "\n".join(f"| `{t.name}` | {t.dtype} | {' x '.join(map(str, t.dims))} |" for t in m.inputs)
    outputs = "\n".join(f"| `{t.name}` | {t.dtype} | {' x '.join(map(str, t.dims))} |" for t in m.outputs)
    labels = ", ".join(f"{i}: `{x}`" for i, x in enumerate(m.labels)) if m.labels else "none (this head has no labels)"
    lo, hi = m.shape_profile.get("min", {}), m.shape_profile.get("max", {})
    return f"""# {m.task} for ARM64 edge devices ({m.recipe.get('preset')} preset)

`model.ort` is the model to ship: ONNX Runtime's flatbuffer format, INT8 ({r.get('format')}, activations
{r.get('activation_type')}, weights {r.get('weight_type')}, per-channel {r.get('per_channel')}), graph optimizations
fixed for ARM. `model.onnx` is the same graph, for inspection and other builds.

## Runtime
- ONNX Runtime **{ort_version}** wrote it. Load it with that version or newer: the full package
  (`pip install onnxruntime=={ort_version}` on aarch64 Linux, or onnxruntime-mobile builds), or a minimal build.
- Minimal build: `{OPS_CONFIG}` lists the operators and types this model needs. Build ONNX Runtime with
  `./build.sh --minimal_build --include_ops_by_config {OPS_CONFIG} --enable_reduced_operator_type_support`
  plus the target's cross-compile options (ONNX Runtime docs, "Custom build"); it carries only those kernels.
- CPU execution provider; the QDQ INT8 kernels use NEON dot-product instructions where the CPU has them.

## Input contract
| input | dtype | dims |
|---|---|---|
{inputs}

No `token_type_ids`: DistilBERT has no segment embeddings. Sequences {lo.get('sequence', 1)}..{hi.get('sequence', '?')}
tokens, batch {lo.get('batch', 1)}..{hi.get('batch', '?')}; `attention_mask` is 1 on real tokens, 0 on padding.
Tokenize with the files here (`tokenizer.json`, `tokenizer_config.json`; WordPiece, lower-cased), e.g.
`tokenizers.Tokenizer.from_file("tokenizer.json")` on the device or any BERT-uncased WordPiece implementation.

| output | dtype | dims |
|---|---|---|
{outputs}

Labels (index: name): {labels}

## Size
| file | size |
|---|---|
| `model.ort` (ships) | {_mb(sizes.get('ort', 0))} |
| `model.onnx` (same graph) | {_mb(sizes.get('onnx', 0))} |
| fp32 parent `model.onnx` | {_mb(sizes.get('parent_onnx', 0))} |

## What stayed fp32, and why
- The task head: quantizing it flipped the default classifier's labels, so every recipe keeps it fp32.
- {len(kept)} of {quantizable} encoder MatMuls: the accuracy control kept the most sensitive ones in fp32 so the
  model stays within {r.get('max_accuracy_drop')} of the fp32 parent on validation tweets kept apart from the held-out set
  (the search and every trial are in `manifest.json` under `recipe.accuracy_control`).
- Word embeddings: {'INT8 (QDQ Gather)' if emb.get('int8') else 'fp32' + (' (' + emb.get('why', '')[:200] + ')' if emb.get('why') else '')}.

## Checked where
`distilbert-deploy parity DIR --platform host,linux-aarch64` judges it against PyTorch fp32 with the x86 build of
ONNX Runtime and with the aarch64 build (emulated with QEMU: answers are the ARM kernels', times are not ARM speeds).
The verdicts are in `manifest.json` (`parity.suite` for this host, `parity.suite.platforms.linux-aarch64`);
`distilbert-deploy inspect DIR` shows both.
"""


def write_readme(staging: Path, m: Manifest) -> None:
    (staging / README).write_text(readme(m))
