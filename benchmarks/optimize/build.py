"""Build candidates: one `distilbert-deploy` subprocess each, so a crash costs one candidate. Built artifacts are
cached by recipe under CACHE/optimize/<source sha>/<candidate>-<command hash>/ and reused while the source is
the same."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from runtimes.artifact import MANIFEST_NAME, read_manifest
from runtimes.errors import DeployError
from runtimes.procs import cli_argv

from .candidates import SOURCE, Candidate

BUILD_TIMEOUT_S = 1800
# ONNX Runtime INT8 recipes end in an accuracy search (quantization/ort_accuracy.py: which encoder nodes stay fp32),
# minutes per recipe. The nodes a search found are kept in a recipe book per (source model, task, candidate):
# the shipped one (this package, for the built-in models) and this machine's (CACHE/optimize/recipes.json). A
# booked recipe is replayed with --keep-fp32 (the bound is still checked once); if it misses, the search runs.
SHIPPED_BOOK = Path(__file__).with_name("recipes.json")


@dataclass
class Built:
    id: str
    path: Path | None
    status: str  # source, built, reused, crashed
    seconds: float = 0.0
    reason: str = ""
    log: str = ""
    note: str = ""


def cache_dir(root: Path, src_sha: str, name: str, argv: list[str]) -> Path:
    digest = hashlib.sha256(json.dumps(argv[2:]).encode()).hexdigest()[:8]  # the command without python -m ...
    return root / "optimize" / src_sha[:16] / f"{name}-{digest}"


def cli(*args: str) -> list[str]:
    return cli_argv(*args)


def cls_source_argv(src_manifest, out: Path) -> list[str]:
    """The [CLS]-pruned fp32 export of the model the source was exported from (same opset and largest batch)."""
    s = src_manifest.source
    model = s.get("path") or s.get("id") or s.get("name")
    return cli("export", "--model", str(model), "--task", src_manifest.task, "--out", str(out), "--cls-pruning",
               "--max-batch", str(src_manifest.shape_profile["max"]["batch"]),
               "--opset", str(src_manifest.recipe.get("opset", 17)))


def candidate_argv(c: Candidate, base: Path, out: Path) -> list[str]:
    return cli(c.command[0], str(base), "--out", str(out), *c.command[1:])


def _reason(proc: subprocess.CompletedProcess | None, timeout: bool, log: str) -> str:
    if timeout:
        return f"timed out after {BUILD_TIMEOUT_S} s"
    rc = proc.returncode
    if rc < 0:
        return f"crashed: killed by signal {signal.Signals(-rc).name}"
    lines = [x for x in log.splitlines() if x.strip()]
    err = next((x for x in reversed(lines) if x.startswith("error:")), None)
    return (err or (lines[-1] if lines else "no output"))[:500] + f" (exit {rc})"


def run_build(argv: list[str], out: Path, env: dict | None = None) -> tuple[bool, str, str, float]:
    """(ok, reason, log tail, seconds) of one build command writing the artifact `out`."""
    t0 = time.perf_counter()
    timeout = False
    proc = None
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
                              env={**os.environ, **(env or {})})
        log = (proc.stdout or "") + (proc.stderr or "")
    except subprocess.TimeoutExpired as e:
        timeout, log = True, str(e.stdout or "") + str(e.stderr or "")
    seconds = time.perf_counter() - t0
    ok = not timeout and proc.returncode == 0 and (out / MANIFEST_NAME).is_file()
    if not timeout and proc.returncode == 0 and not ok:
        return False, f"the command exited 0 but wrote no artifact at {out}", log[-2000:], seconds
    return ok, "" if ok else _reason(proc, timeout, log), log[-2000:], seconds


def reusable(path: Path) -> bool:
    try:
        read_manifest(path)
        return True
    except DeployError:
        return False


def book_key(base: Path, c: Candidate) -> str:
    m = read_manifest(base)
    return f"{m.source.get('sha256', '?')[:16]}/{m.task}/{c.id}"


def read_book(root: Path) -> dict:
    book = {}
    for path in (SHIPPED_BOOK, root / "optimize" / "recipes.json"):
        try:
            book.update(json.loads(path.read_text()))
        except (OSError, ValueError):
            pass
    return book


def remember(root: Path, key: str, out: Path) -> None:
    """Book the fp32 nodes the search of a fresh build found (this machine's book, atomically)."""
    from runtimes.artifact import write_text_atomic

    kept = read_manifest(out).recipe.get("accuracy_control", {}).get("kept_fp32")
    if kept is None:
        return
    path = root / "optimize" / "recipes.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        book = json.loads(path.read_text())
    except (OSError, ValueError):
        book = {}
    book[key] = kept
    write_text_atomic(path, json.dumps(book, indent=1, sort_keys=True) + "\n")


def copy_artifact(path: Path, out: Path, edit) -> None:
    """`path`'s files copied to `out` atomically, its manifest changed in place by edit(manifest dict) and still
    valid (the model files, and so their checksums, are unchanged)."""
    import shutil

    from runtimes.artifact import Manifest, staging_dir

    m = read_manifest(path)
    with staging_dir(out) as tmp:
        for name in [*m.files, MANIFEST_NAME]:
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path / name, tmp / name)
        d = json.loads((tmp / MANIFEST_NAME).read_text())
        edit(d)
        Manifest.from_dict(d)
        (tmp / MANIFEST_NAME).write_text(json.dumps(d, indent=2) + "\n")


def derive_static(path: Path, out: Path) -> None:
    """`path` (an OpenVINO artifact) with recipe.runtime_defaults asking for bucket padding and static shapes."""
    from .candidates import BUCKETS

    m = read_manifest(path)

    def edit(d):
        d["recipe"]["runtime_defaults"] = {"static_shapes": True, "sequence_buckets": list(BUCKETS)}
        d["parity"] = {}
        d["source"]["parent"] = {"path": str(path.absolute()), "sha256": m.files[m.model_file]}

    copy_artifact(path, out, edit)


def build_one(c: Candidate, base: Path, root: Path, src_sha: str) -> Built:
    """Build (or reuse) candidate `c` from the fp32 artifact `base` (the source, or its [CLS]-pruned export)."""
    if c.static:
        inner = build_one(c.unstatic, base, root, src_sha)
        if inner.path is None:
            return Built(c.id, None, "crashed", inner.seconds, f"its dynamic-shape build failed: {inner.reason}")
        out = cache_dir(root, src_sha, c.id, ["-", "-", "static", str(inner.path)])
        if not reusable(out):
            derive_static(inner.path, out)
        return Built(c.id, out, "built", inner.seconds, note="bucket padding, static shapes")
    if not c.command:
        return Built(c.id, base, "source")
    searched = c.backend == "onnxruntime" and c.precision == "int8"  # dynamic and static end in the search
    attempts = [c]
    if searched and (kept := read_book(root).get(book_key(base, c))) is not None:
        booked = Candidate(c.id, c.backend, c.precision, c.command + ("--keep-fp32", ",".join(kept)), c.cls_pruned)
        attempts = [booked, c] if kept else [c]
    seconds, notes = 0.0, []
    for attempt in attempts:
        out = cache_dir(root, src_sha, c.id, candidate_argv(attempt, base, Path("OUT")))
        if reusable(out):
            return Built(c.id, out, "reused", reason="; ".join(notes))
        ok, reason, log, took = run_build(candidate_argv(attempt, base, out), out)
        seconds += took
        if ok:
            if searched and attempt is c:
                remember(root, book_key(base, c), out)
            note = "searched its fp32 nodes" if searched and attempt is c else (
                "replayed the booked fp32 nodes" if searched else "")
            return Built(c.id, out, "built", round(seconds, 1), "; ".join(notes), log, note)
        notes.append(f"booked recipe missed ({reason}); searched again" if attempt is not c else reason)
    return Built(c.id, None, "crashed", round(seconds, 1), notes[-1], log)


def build_cls_source(src: Path, root: Path, src_sha: str) -> Built:
    m = read_manifest(src)
    out = cache_dir(root, src_sha, f"{SOURCE}-cls", cls_source_argv(m, Path("OUT")))
    if reusable(out):
        return Built(f"{SOURCE}-cls", out, "reused")
    ok, reason, log, seconds = run_build(cls_source_argv(m, out), out)
    return Built(f"{SOURCE}-cls", out if ok else None, "built" if ok else "crashed", round(seconds, 1), reason, log)
