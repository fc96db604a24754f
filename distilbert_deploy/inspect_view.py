"""Readable manifest view for `distilbert-deploy inspect`."""
from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table

from runtimes.artifact import Artifact


def _fmt(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items()) or "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(_fmt, value)) or "-"
    return "-" if value is None else str(value)


def _edge_rows(m) -> list[tuple[str, str]]:
    """Size against the fp32 parent, and which nodes stayed fp32 and why (quantized artifacts)."""
    r, rows = m.recipe, []
    sizes = r.get("size_bytes") or {}
    if sizes.get("parent_onnx"):
        shipped = sizes.get("ort") or sizes.get("onnx")
        rows.append(("size", f"{m.model_file} {shipped / 1e6:.1f} MB vs fp32 parent {sizes['parent_onnx'] / 1e6:.1f} MB "
                             f"({shipped / sizes['parent_onnx']:.0%})"))
    if fp32 := r.get("fp32_nodes"):
        acc = r.get("accuracy_control") or {}
        kept = acc.get("kept_fp32") or []
        why = (f"the task head by design (INT8 heads flipped labels); {len(kept)} of {acc.get('quantizable_nodes', '?')} "
               f"encoder MatMuls kept by the accuracy control (most sensitive first, bound {acc.get('bound', {})})")
        rows.append(("fp32 nodes", f"{_fmt(fp32)}\nwhy: {why}"))
    return rows


def _verdict_rows(m) -> list[tuple[str, str]]:
    """The parity suite's verdict on this host and on every other platform it ran on."""
    suite = m.parity.get("suite") or {}
    rows = []
    for label, record in [("this host", suite), *((k, v) for k, v in (suite.get("platforms") or {}).items())]:
        runs = record.get("runs") or {}
        if runs:
            where = next((r.get("platform") for r in runs.values() if r.get("platform")), label)
            rows.append((f"parity ({label})", f"{'PASSED' if record.get('passed') else 'FAILED'} on {where}: "
                         + ", ".join(f"{p} {r.get('cases')} cases, corpus {r.get('corpus')}" for p, r in runs.items())))
    return rows


def render(art: Artifact, verified: bool = True) -> None:
    m = art.manifest
    out = Console()
    head = Table(title=f"artifact {art.path}", show_header=False, title_justify="left")
    head.add_column(style="bold")
    head.add_column()
    head.add_row("task", m.task)
    head.add_row("backend / precision", f"{m.backend} / {m.precision}")
    head.add_row("labels", _fmt(m.labels))
    head.add_row("schema / created", f"v{m.schema_version} / {m.created}")
    head.add_row("source", _fmt(m.source))
    for k in ("min", "opt", "max"):
        head.add_row(f"profile {k}", _fmt(m.shape_profile.get(k, {})))
    head.add_row("recipe", _fmt(m.recipe))
    for name, value in _edge_rows(m):
        head.add_row(name, value)
    head.add_row("versions", _fmt(m.versions))
    for name, value in _verdict_rows(m):
        head.add_row(name, value)
    head.add_row("parity", json.dumps(m.parity) if m.parity else "-")
    out.print(head)
    io = Table("io", "name", "dtype", "dims", title="inputs / outputs", title_justify="left")
    for kind, specs in (("in", m.inputs), ("out", m.outputs)):
        for t in specs:
            io.add_row(kind, t.name, t.dtype, " x ".join(map(str, t.dims)))
    out.print(io)
    files = Table("file", "bytes", "sha256", title="files (checksums verified)" if verified else "files (NOT verified: --no-verify)", title_justify="left")
    for name, digest in m.files.items():
        files.add_row(name, f"{(art.path / name).stat().st_size:,}", digest[:16] + "…")
    out.print(files)
