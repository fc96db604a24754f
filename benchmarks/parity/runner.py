"""One parity run: expand artifacts into (artifact, precision) targets, compare each against the PyTorch
reference on the corpus, write the verdict into each manifest, and return the Report."""
from __future__ import annotations

import datetime as _dt
import hashlib
import os
import platform as _platform
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtimes.artifact import read_manifest, update_manifest
from runtimes.base import PRECISIONS, RuntimeOptions
from runtimes.errors import ArtifactMismatch, ConfigError
from runtimes.judging.tolerances import parse_overrides, tolerance_for

from . import corpus
from .comparator import TASK_KWARGS, CaseResult, Recorder, TorchReference, compare_case, judge, run_case
from .report import Report, TargetReport, machine

BATCH_SIZE = 8
HOST = "host"
ARM64 = "linux-aarch64"  # the artifact runs in the aarch64 ONNX Runtime under QEMU (runtimes/arm64)
PLATFORMS = (HOST, ARM64)


@dataclass(frozen=True)
class ParityConfig:
    artifacts: tuple[Path, ...]
    corpus: str = "ci"
    precisions: tuple[str, ...] = ()  # () = each artifact's own precision
    tol: tuple[str, ...] = ()  # --tol overrides, as given
    cases: tuple[str, ...] = ()  # only these case ids (or id prefixes)
    device: str = "cpu"
    write_manifest: bool = True
    platforms: tuple[str, ...] = (HOST,)  # where the artifact's inference runs; the reference always runs here

    def __post_init__(self):
        if not self.artifacts:
            raise ConfigError("no artifacts given. Fix: pass artifact directories (they hold manifest.json), "
                              "or export one with `distilbert-deploy export`")
        if self.corpus not in corpus.SIZES:
            raise ConfigError(f"unknown corpus '{self.corpus}'. Expected one of: {', '.join(corpus.SIZES)}")
        if bad := [p for p in self.precisions if p not in PRECISIONS]:
            raise ConfigError(f"unknown precision {bad}. Expected some of: {', '.join(PRECISIONS)}")
        parse_overrides(self.tol)  # ConfigError on a malformed override
        bad = [p for p in self.platforms if p not in PLATFORMS]
        if bad or not self.platforms:
            raise ConfigError(f"unknown platform {bad}. Expected some of: {', '.join(PLATFORMS)} (host: this "
                              f"machine; {ARM64}: the aarch64 ONNX Runtime, emulated; build it with make arm64-env)")


def targets(cfg: ParityConfig) -> list[tuple[Path, str, str]]:
    """(artifact, precision, platform). --precision applies to artifacts that can run it: a torch artifact runs
    any precision the device allows; a compiled artifact only the precision it was built for."""
    out = []
    for path in cfg.artifacts:
        m = read_manifest(path)
        wanted = cfg.precisions or (m.precision,)
        runnable = [p for p in wanted if p == m.precision or m.backend == "torch"]
        if cfg.precisions and not runnable:
            continue
        out += [(Path(path), p, where) for p in runnable for where in cfg.platforms]
    if not out:
        raise ConfigError(f"none of the artifacts can run precision(s) {', '.join(cfg.precisions)}")
    return out


def repro_command(path: Path, precision: str, cfg: ParityConfig, case: str | None = None,
                  where: str = HOST) -> str:
    args = ["distilbert-deploy", "parity", str(path), "--precision", precision, "--corpus", cfg.corpus,
            "--out", "reports/repro"]
    if where != HOST:
        args += ["--platform", where]
    if cfg.device != "cpu":
        args += ["--device", cfg.device]
    for t in cfg.tol:
        args += ["--tol", t]
    if case:
        args += ["--case", case]
    return shlex.join(args)


def reference_for(manifest):
    """The fp32 PyTorch model the artifact was built from (same name and, where recorded, same weights)."""
    from sources.models import load_model

    src = manifest.source
    name = src.get("path") if src.get("kind") == "local" else src.get("name") or src.get("id")
    if not name:
        raise ArtifactMismatch("the artifact's manifest records no source model, so there is no PyTorch reference. "
                               "Fix: re-export it with `distilbert-deploy export`")
    loaded = load_model(name, manifest.task)
    if src.get("sha256") and loaded.source.get("sha256") and src["sha256"] != loaded.source["sha256"]:
        raise ArtifactMismatch(f"the reference '{name}' ({manifest.task}) has weights sha256 "
                               f"{loaded.source['sha256'][:12]}…, the artifact was built from {src['sha256'][:12]}…. "
                               f"Fix: rebuild the model cache (DISTILBERT_DEPLOY_CACHE) or re-export the artifact")
    return loaded


def host_platform() -> str:
    return f"{_platform.system().lower()}-{_platform.machine()}"


def open_candidate(path: Path, options: RuntimeOptions, where: str):
    """The loaded runtime under test and the platform it runs on, as reports record it."""
    from runtimes.registry import load_runtime

    if where == ARM64:
        from runtimes.arm64.runtime import EmulatedArm64Runtime
        from runtimes.artifact import load_artifact

        runtime = EmulatedArm64Runtime(load_artifact(path), options).load()
        return runtime, runtime.env.platform
    return load_runtime(path, options), host_platform()


class Replay:
    """Outputs computed ahead of the cases (by the emulated aarch64), served for the feeds the task layer asks for."""

    def __init__(self, feeds: list[dict], outputs: list):
        self.table = {feed_key(f): o for f, o in zip(feeds, outputs)}

    def infer(self, feed):
        out = self.table.get(feed_key(feed))
        if out is None:
            raise ArtifactMismatch("internal: the task layer asked for a feed that was not run ahead (its "
                                   "tokenization is not deterministic?)")
        if isinstance(out, Exception):
            raise out
        return out


def feed_key(feed: dict) -> bytes:
    h = hashlib.sha256()
    for name in sorted(feed):
        a = np.ascontiguousarray(feed[name])
        h.update(f"{name}{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.digest()


def precomputed(arm, path: Path, options: RuntimeOptions, cases, mk: dict, progress, label: str) -> Replay:
    """The feeds of every case (the task layer driven by the host runtime, whose outputs are dropped), run on the
    emulated aarch64 side by side (EmulatedArm64Runtime.run_feeds)."""
    from runtimes.registry import load_runtime
    from runtimes.tasks import TaskPipeline, load_tokenizer

    m = arm.manifest
    feeds = []
    with load_runtime(path, options) as host:
        pipe = TaskPipeline(Recorder(host), load_tokenizer(path), m.task, m.labels, **mk)
        for case in cases:
            try:
                feeds += [f for f, _ in run_case(pipe, case, TASK_KWARGS[m.task])[1]]
            except Exception:  # noqa: BLE001 (the replayed run reports the case)
                feeds += [f for f, _ in pipe.runtime.take()]
    bar = progress.add_task(f"{label}: emulated inference", total=len(feeds)) if progress else None
    outputs = arm.run_feeds(feeds, done=(lambda: progress.advance(bar)) if progress else None)
    return Replay(feeds, outputs)


def run_parity(cfg: ParityConfig, progress=None) -> Report:
    """progress: a rich Progress (or None) that gets one bar per target."""
    from runtimes.tasks import TaskPipeline, load_tokenizer

    overrides = parse_overrides(cfg.tol)
    if ARM64 in cfg.platforms:  # before any reference loads: a missing environment is bad input, said at once
        from runtimes.arm64.env import locate

        locate()
    environment = machine()  # before the runs: the load average at start, as the bench records it
    references: dict = {}
    ref_results: dict = {}  # (reference key, max_len, batch, case id) -> the reference's answer: computed once
    reports = []
    for path, precision, where in targets(cfg):
        m = read_manifest(path)
        key = (m.source.get("name"), m.source.get("sha256"), m.task)
        if key not in references:
            references[key] = reference_for(m)
        ref = references[key]
        tol = tolerance_for(m.task, precision, overrides)
        max_len = m.shape_profile["max"]["sequence"]
        batch = min(BATCH_SIZE, m.shape_profile["max"]["batch"])
        cases = [c for c in corpus.cases(m.task, ref.tokenizer, cfg.corpus)
                 if not cfg.cases or any(c.id == x or c.id.startswith(x.rstrip("*")) for x in cfg.cases)]
        if not cases:
            raise ConfigError(f"no {m.task} case matches --case {', '.join(cfg.cases)}")
        label = f"{m.task}-{m.backend}-{precision}" + ("" if where == HOST else f" on {where}")
        bar = progress.add_task(label, total=len(cases)) if progress else None
        t0 = time.perf_counter()
        device = "cuda" if m.backend == "tensorrt" else cfg.device  # an engine runs on its GPU or not at all
        options = RuntimeOptions(device=device, precision=precision)
        runtime, platform = open_candidate(path, options, where)
        try:
            mk = dict(max_length=max_len, batch_size=batch)
            ref_pipe = TaskPipeline(Recorder(TorchReference(ref.model, m.task)), ref.tokenizer, m.task, ref.labels, **mk)
            candidate = runtime
            if where == ARM64:  # every feed runs ahead, spread over the emulated workers; the cases then replay them
                candidate = precomputed(runtime, path, options, cases, mk, progress, label)
            got_pipe = TaskPipeline(Recorder(candidate), load_tokenizer(path), m.task, m.labels, **mk)
            special = set(ref.tokenizer.all_special_ids)
            results = []
            for case in cases:
                rkey = (key, max_len, batch, case.id)
                if rkey not in ref_results:
                    ref_results[rkey] = run_case(ref_pipe, case, TASK_KWARGS[m.task])
                r = ref_results[rkey]
                try:
                    g = run_case(got_pipe, case, TASK_KWARGS[m.task])
                except Exception as e:  # a crash on one case is a failing case, not a crashed suite
                    got_pipe.runtime.take()
                    results.append(CaseResult(case.id, error=f"{type(e).__name__}: {e}"))
                else:
                    results.append(compare_case(m.task, case, r, g, (ref.labels, m.labels), special))
                if progress:
                    progress.advance(bar)
        finally:
            runtime.close()
        checks, fails = judge(m.task, results, tol, lambda cid: repro_command(path, precision, cfg, cid, where))
        passed = all(c.passed is not False for c in checks) and not fails
        rep = TargetReport(str(path), m.task, m.backend, precision, device, f"torch fp32 cpu: {ref.name}",
                           passed, len(cases), round(time.perf_counter() - t0, 2), tuple(checks), tuple(fails),
                           repro_command(path, precision, cfg, where=where), {k: v for k, v in vars(tol).items()},
                           platform)
        reports.append(rep)
        if cfg.write_manifest and not cfg.cases:
            write_summary(path, rep, cfg, where)
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    command = ["distilbert-deploy", "parity", *map(str, cfg.artifacts)]
    if cfg.platforms != (HOST,):
        command += ["--platform", ",".join(cfg.platforms)]
    return Report(all(r.passed for r in reports), tuple(reports),
                  {"size": cfg.corpus, "version": corpus.version(), "file": "benchmarks/parity/corpus.json"},
                  created, shlex.join(command), environment)


def write_summary(path: Path, rep: TargetReport, cfg: ParityConfig, where: str = HOST) -> None:
    """parity.suite in the manifest: one entry per precision run, next to export_validation. Runs on this host
    decide suite.passed (what the service checks); runs elsewhere (the emulated aarch64) are kept beside them under
    suite.platforms.<platform>, each with the platform it ran on, so a reader sees both verdicts."""
    m = read_manifest(path)
    suite = dict(m.parity.get("suite") or {})
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    run = {**rep.summary(), "corpus": cfg.corpus, "corpus_version": corpus.version()}
    if where == HOST:
        runs = {**suite.get("runs", {}), rep.precision: run}
        suite.update(passed=all(r["passed"] for r in runs.values()), runs=runs, updated=now)
    else:
        other = dict(suite.get("platforms") or {})
        runs = {**other.get(where, {}).get("runs", {}), rep.precision: run}
        other[where] = {"passed": all(r["passed"] for r in runs.values()), "platform": rep.platform, "runs": runs,
                        "updated": now}
        suite["platforms"] = other
    update_manifest(path, parity={**m.parity, "suite": suite})


def default_artifacts(root: str | os.PathLike = "artifacts") -> tuple[Path, ...]:
    """Every artifact directory under root (a manifest.json; staging dirs start with '.')."""
    root = Path(root)
    return tuple(sorted(p.parent for p in root.rglob("manifest.json")
                        if not any(part.startswith(".") for part in p.relative_to(root).parts)))
