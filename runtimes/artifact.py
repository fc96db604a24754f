"""Artifact = a directory with model file(s), tokenizer files and manifest.json.

Written atomically (staged in a sibling temp dir, then renamed into place); loading checks
the schema version and the sha256 of every file before any backend is touched."""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterator

from .errors import ArtifactError
from .heads import TensorSpec, get_head

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class Manifest:
    task: str
    backend: str
    precision: str
    model_file: str  # the main model file, relative to the artifact dir
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    shape_profile: dict  # {"min"|"opt"|"max": {axis: size}}
    labels: tuple[str, ...] | None = None
    source: dict = field(default_factory=dict)  # model id/path + hash, parent artifact
    recipe: dict = field(default_factory=dict)  # how it was built (opset, fusions, ...)
    versions: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)  # file name -> sha256
    parity: dict = field(default_factory=dict)
    created: str = ""
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self):
        get_head(self.task)  # raises ConfigError on an unknown task

    def to_dict(self) -> dict:
        d = asdict(self)
        d["inputs"] = [t.to_dict() for t in self.inputs]
        d["outputs"] = [t.to_dict() for t in self.outputs]
        d["labels"] = list(self.labels) if self.labels is not None else None
        return {"schema_version": d.pop("schema_version"), **d}

    @classmethod
    def from_dict(cls, d: dict, where: str = "manifest") -> "Manifest":
        version = d.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ArtifactError(
                f"{where}: schema version {version!r} is not supported (this distilbert-deploy reads "
                f"version {SCHEMA_VERSION}). Fix: re-export the artifact with this version "
                f"(`distilbert-deploy export ...`) or use the distilbert-deploy release that wrote it"
            )
        try:
            return cls(
                **{k: v for k, v in d.items() if k not in ("inputs", "outputs", "labels")},
                inputs=tuple(TensorSpec.from_dict(t) for t in d["inputs"]),
                outputs=tuple(TensorSpec.from_dict(t) for t in d["outputs"]),
                labels=tuple(d["labels"]) if d.get("labels") is not None else None,
            )
        except (KeyError, TypeError) as e:
            raise ArtifactError(f"{where}: malformed manifest ({e}). Fix: re-export the artifact") from None


@dataclass(frozen=True)
class Artifact:
    path: Path
    manifest: Manifest

    @property
    def model_path(self) -> Path:
        return self.path / self.manifest.model_file


def cache_root() -> Path:
    """Where built models and run-time caches live: $DISTILBERT_DEPLOY_CACHE, else ~/.cache/distilbert-deploy."""
    env = os.environ.get("DISTILBERT_DEPLOY_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "distilbert-deploy"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _artifact_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST_NAME)


def read_manifest(path: str | os.PathLike) -> Manifest:
    path = Path(path)
    mfile = path / MANIFEST_NAME
    if not path.is_dir():
        raise ArtifactError(f"artifact directory '{path}' does not exist. Fix: pass the directory that "
                            f"`distilbert-deploy export` wrote (it holds {MANIFEST_NAME})")
    if not mfile.is_file():
        raise ArtifactError(f"'{path}' is not an artifact: no {MANIFEST_NAME}. Fix: export one with "
                            f"`distilbert-deploy export --out {path}`")
    try:
        data = json.loads(mfile.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{mfile}: not valid JSON ({e}). Fix: re-export the artifact") from None
    return Manifest.from_dict(data, where=str(mfile))


def load_artifact(path: str | os.PathLike, *, verify: bool = True) -> Artifact:
    """Read the manifest and (by default) verify every file's sha256."""
    path = Path(path)
    manifest = read_manifest(path)
    if verify:
        bad = []
        for name, digest in manifest.files.items():
            f = path / name
            if not f.is_file():
                bad.append(f"{name}: missing")
            elif sha256_file(f) != digest:
                bad.append(f"{name}: sha256 mismatch (size {f.stat().st_size} bytes)")
        if bad:
            raise ArtifactError(
                f"artifact '{path}' failed its checksum check: {'; '.join(bad)}. The files were changed, "
                f"truncated or tampered with after export. Fix: re-export it (`distilbert-deploy export`)"
            )
    if manifest.model_file not in manifest.files:
        raise ArtifactError(f"artifact '{path}': model file '{manifest.model_file}' is not listed in the manifest")
    return Artifact(path, manifest)


def library_versions(*modules: str) -> dict[str, str]:
    """Installed versions of the named distributions (import-free)."""
    from importlib import metadata

    out = {}
    for name in ("distilbert-deploy", *modules):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def finalize(staging: Path, manifest: Manifest) -> Manifest:
    """Checksum every staged file and write manifest.json into the staging dir."""
    files = {p.relative_to(staging).as_posix(): sha256_file(p) for p in _artifact_files(staging)}
    if manifest.model_file not in files:
        raise ArtifactError(f"internal: staged artifact lacks its model file '{manifest.model_file}'")
    manifest = replace(manifest, files=files,
                       created=manifest.created or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    _write_json(staging / MANIFEST_NAME, manifest.to_dict())
    return manifest


MODEL_SUFFIXES = (".onnx", ".onnx.data", ".ort", ".xml", ".bin", ".safetensors")


def copy_side_files(parent: Artifact, dst: Path) -> None:
    """Copy a parent artifact's tokenizer and config files (never model files) into a staging dir."""
    for name in parent.manifest.files:
        if not name.endswith(MODEL_SUFFIXES):
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(parent.path / name, dst / name)


def derived_manifest(parent: Artifact, **changes) -> Manifest:
    """The manifest of an artifact built from `parent`: same source, plus a record of the parent
    model; checksums, parity and creation time start empty (finalize fills them)."""
    m = parent.manifest
    record = {"path": str(parent.path.absolute()), "sha256": m.files[m.model_file]}
    return replace(m, source={**m.source, "parent": record}, files={}, parity={}, created="", **changes)


def update_manifest(path: str | os.PathLike, **changes) -> Manifest:
    """Atomically rewrite fields of an existing artifact's manifest (e.g. the parity summary)."""
    path = Path(path)
    manifest = replace(read_manifest(path), **changes)
    _write_json(path / MANIFEST_NAME, manifest.to_dict())
    return manifest


def _write_json(target: Path, data: dict) -> None:
    write_text_atomic(target, json.dumps(data, indent=2) + "\n")


def write_text_atomic(target: str | os.PathLike, text: str) -> None:
    write_file_atomic(target, text.encode())


def write_file_atomic(target: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file beside `target`, then rename it into place: readers never see half a file."""
    target = Path(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_replaceable(final: str | os.PathLike, marker: str = MANIFEST_NAME) -> Path:
    """`final` absolute, if it is free or an artifact directory this tool wrote (holding `marker`, or empty);
    otherwise an ArtifactError, before any work is done."""
    final = Path(final).absolute()
    if final.exists() and not (final.is_dir() and ((final / marker).exists() or not any(final.iterdir()))):
        raise ArtifactError(f"refusing to overwrite '{final}': it exists and is not a directory this tool wrote. "
                            f"Fix: choose another --out or remove it")
    return final


@contextmanager
def staging_dir(final: str | os.PathLike, marker: str = MANIFEST_NAME) -> Iterator[Path]:
    """Yield an empty temp dir beside `final`; on success rename it into place, on error delete it.

    An existing artifact at `final` (a directory holding `marker`) is replaced only once the new one is complete."""
    final = check_replaceable(final, marker)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    os.chmod(tmp, 0o755)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
    if final.exists():
        os.rename(final, old)
    os.rename(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
