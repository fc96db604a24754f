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
    head.add_row("versions", _fmt(m.versions))
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
