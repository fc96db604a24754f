"""The optimize run: candidates for this CPU -> builds (subprocesses, cached) -> parity on the ci corpus ->
a screen timing that picks which recipes get a [CLS]-pruned variant -> one interleaved timing of every passing
candidate, the peers and PyTorch (the bench harness's select scenario) -> the finalists judged on the full corpus ->
the fastest that passed both, written atomically with the selection in its manifest, and the report."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from runtimes.artifact import cache_root, check_replaceable, read_manifest
from runtimes.errors import ConfigError, DeployError, InputError
from runtimes.hardware import cpu_class, cpu_info

from ..bench.config import DEFAULT_OPTIMUM_PYTHON
from ..bench.workloads import SELECT_WORKLOADS, parse_select
from . import selection
from .build import Built, build_cls_source, build_one, copy_artifact
from .candidates import COST_SCALE, cls_variant, enumerate_candidates, static_variant

PEERS = ("ort-qdynamic", "ov-nncf", "optimum-ortq")
BASELINES = ("torch-eager-fp32", "torch-compile-fp32")
# Estimates on the 2-core AMX Xeon (scaled by COST_SCALE): what the plan needs besides the builds.
# Measured there on 2026-12-02 (docs/optimize/amx.md): ci parity 5 s, full 12 s, load 1-3 s a target.
PARITY_CI_S, PARITY_FULL_S, LOAD_S, COMPILE_S, PEER_PREP_S, CLS_EXPORT_S = 6.0, 15.0, 2.0, 30.0, 30.0, 30.0


@dataclass(frozen=True)
class OptimizeConfig:
    src: Path
    out: Path
    rank: str = "tweets-bs1"
    workloads: tuple[str, ...] = SELECT_WORKLOADS
    budget_s: float | None = None
    report_dir: Path | None = None  # default: reports/optimize/<model>/<task>
    peers: tuple[str, ...] = PEERS
    baselines: tuple[str, ...] = BASELINES
    only: tuple[str, ...] = ()  # candidate ids to consider (default: every one that runs here)
    judge_peers: bool = True  # the peers' models judged by the parity suite too (ci corpus), for the report
    min_time_s: float = 1.0  # per target and workload in the final timing
    finalists: int = 3  # judged on the full corpus, fastest first
    cls_top: int = 2  # recipes that get a [CLS]-pruned variant (heads that read only [CLS])
    quick: bool = False  # tiny timing counts (tests)
    optimum_python: Path = Path(DEFAULT_OPTIMUM_PYTHON)
    command: str = ""
    cpu: dict | None = None  # cpu_info() (tests pass a synthetic one)

    def __post_init__(self):
        object.__setattr__(self, "workloads", tuple(dict.fromkeys(self.workloads)))
        for w in self.workloads + (self.rank,):
            kind, value, _ = parse_select(w)  # ConfigError on an unknown workload
            if kind == "file" and not Path(value).is_file():
                raise InputError(f"workload {w}: no file at {value}. Expected file:PATH[@N] with PATH a text file, "
                                 f"one input per line")
        if self.rank not in self.workloads:
            object.__setattr__(self, "workloads", (self.rank,) + self.workloads)
        if self.budget_s is not None and self.budget_s <= 0:
            raise ConfigError(f"--budget-s must be > 0 seconds, got {self.budget_s:g}")
        if self.finalists < 1 or self.cls_top < 0:
            raise ConfigError("--finalists must be >= 1 and --cls-top >= 0")
        if Path(self.out).absolute() == Path(self.src).absolute():
            raise ConfigError("--out must differ from the source artifact (optimize writes a new artifact)")


def check_source(src: Path):
    """The source must be a plain fp32 ONNX export (what `distilbert-deploy export` writes)."""
    m = read_manifest(src)
    if m.backend != "onnxruntime" or m.precision != "fp32" or "method" in m.recipe or m.recipe.get("cls_pruning"):
        what = f"a {m.backend} {m.precision} artifact" + (f" built by method {m.recipe['method']}"
                                                          if "method" in m.recipe else "")
        raise InputError(f"'{src}' is {what}, not a plain fp32 export; optimize builds every recipe from the fp32 "
                         f"ONNX export. Fix: `distilbert-deploy export --model MODEL --task {m.task} --out DIR` "
                         f"(or `make export-onnx`) and pass that DIR")
    if not m.source:
        raise InputError(f"'{src}' records no source model, so there is no PyTorch reference to judge against. "
                         f"Fix: re-export it with `distilbert-deploy export`")
    return m


def available_backends() -> tuple[str, ...]:
    from runtimes.registry import get_backend

    return tuple(b for b in ("onnxruntime", "openvino") if not get_backend(b).missing())


def timing_estimate(targets: int, workloads: int, min_time_s: float, scale: float, compile_: bool) -> float:
    """Timing is mostly min_time_s per pair (fixed) and its turns' settle gaps, loads and compiles scale with the CPU."""
    from ..bench.config import BenchConfig

    settle = min_time_s / BenchConfig.round_time_s * BenchConfig.settle_s
    return targets * (LOAD_S * scale + workloads * (min_time_s + settle + 0.6) * 1.3) + (COMPILE_S * scale if compile_ else 0)


def minimum_budget(cfg: OptimizeConfig, scale: float) -> float:
    """The least a run can take: the source alone judged (ci and full) and timed beside the peers and baselines."""
    n = 1 + len(cfg.peers) + len(cfg.baselines)
    return (PARITY_CI_S + PARITY_FULL_S + PEER_PREP_S) * scale + timing_estimate(
        n, len(cfg.workloads), cfg.min_time_s, scale, "torch-compile-fp32" in cfg.baselines)


class Clock:
    def __init__(self, budget: float | None):
        self.t0, self.budget = time.perf_counter(), budget

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def fits(self, more: float) -> bool:
        return self.budget is None or self.elapsed() + more <= self.budget


def judge(paths: dict[str, Path], corpus: str, log) -> dict[str, tuple[bool, str]]:
    """id -> (passed, reason) from the parity suite (the same corpus, tolerances and rules as `parity`). All in one
    run; when that raises (a candidate that cannot even load), each alone, so one bad artifact costs one verdict."""
    from benchmarks.parity.runner import ParityConfig, run_parity

    def verdicts(rep) -> dict[str, tuple[bool, str]]:
        by = {str(Path(t.artifact)): t for t in rep.targets}
        out = {}
        for cid, p in paths.items():
            t = by.get(str(p))
            if t is None:
                continue
            bad = [f"{c.name} {c.value:.4g} (limit {c.op} {c.limit:g})" for c in t.checks if c.passed is False]
            out[cid] = (t.passed, "; ".join(bad) or (f"{len(t.failures)} failing case(s)" if t.failures else ""))
        return out

    if not paths:
        return {}
    try:
        return verdicts(run_parity(ParityConfig(artifacts=tuple(paths.values()), corpus=corpus)))
    except DeployError as e:
        log(f"parity ({corpus}) of all candidates at once failed ({e}); judging each alone")
    out = {}
    for cid, p in paths.items():
        try:
            out.update(verdicts(run_parity(ParityConfig(artifacts=(p,), corpus=corpus))))
        except DeployError as e:
            out[cid] = (False, f"could not be judged: {e}")
    return out


def time_targets(cfg: OptimizeConfig, paths: dict[str, Path], report_dir: Path, name: str, *, workloads, peers,
                 baselines, min_time_s: float, log) -> dict:
    """One bench run (scenario select): every path, the peers and baselines interleaved. Returns the report dict."""
    from benchmarks.bench.config import BenchConfig, quick
    from benchmarks.bench.core import run_bench
    from benchmarks.bench.render import write_all

    bc = BenchConfig(artifacts=tuple(paths.values()), baselines=tuple(baselines), peers=tuple(peers),
                     scenarios=("select",), select_workloads=tuple(workloads), min_time_s=min_time_s,
                     optimum_python=cfg.optimum_python, parity_report=None, out=report_dir, name=name,
                     command=cfg.command or "distilbert-deploy optimize")
    if cfg.quick:
        bc = quick(bc, select_workloads=tuple(workloads), baselines=tuple(baselines), peers=tuple(peers),
                   min_time_s=min_time_s)
    d = run_bench(bc, None, log).to_dict()
    write_all(d, report_dir, name)
    return d


def timings(d: dict, paths: dict[str, Path]) -> dict[str, dict]:
    """target id in a bench report -> {p50: {workload: ms}, p99: {...}}; artifact targets mapped back to ids."""
    by_path = {str(Path(p)): cid for cid, p in paths.items()}
    ids = {t["id"]: by_path.get(str(Path(t["artifact"])), t["id"]) if t["kind"] == "artifact" else t["id"]
           for t in d["targets"] if t["status"] == "ok"}
    out: dict[str, dict] = {}
    for r in d["results"]:
        cid = ids.get(r["target"])
        if cid is None:
            continue
        e = out.setdefault(cid, {"p50": {}, "p99": {}})
        e["p50"][r["workload"]], e["p99"][r["workload"]] = r["stats"]["p50_ms"], r["stats"]["p99_ms"]
    return out


def optimize(cfg: OptimizeConfig, log=print) -> dict:
    src_m = check_source(cfg.src)
    check_replaceable(cfg.out)

    cpu = cfg.cpu or cpu_info()
    klass = cpu_class(cpu)
    scale = COST_SCALE.get(klass, 2.5)
    if cfg.budget_s is not None and cfg.budget_s < (need := minimum_budget(cfg, scale)):
        raise ConfigError(f"--budget-s {cfg.budget_s:g} cannot fit even the fp32 source judged and timed beside the "
                          f"peers on this {klass} CPU (about {need:.0f} s). Fix: --budget-s {need:.0f} or more, or "
                          f"fewer --peer / --baseline / --workload")
    clock = Clock(cfg.budget_s)
    say = log
    log = lambda m: say(f"[{clock.elapsed():5.0f} s] {m}")  # noqa: E731
    model = src_m.source.get("id") or src_m.source.get("name") or Path(str(src_m.source.get("path", "model"))).name
    report_dir = Path(cfg.report_dir or Path("reports") / "optimize" / str(model).replace("/", "--") / src_m.task)
    report_dir.mkdir(parents=True, exist_ok=True)
    root = cache_root()
    src_sha = src_m.files[src_m.model_file]  # the export's own checksum
    cands = enumerate_candidates(cpu, src_m.task, available_backends())
    if cfg.only:
        unknown = [x for x in cfg.only if x not in {c.id for c in cands} | {f"{c.id}-cls" for c in cands}]
        if unknown:
            raise ConfigError(f"unknown or unavailable candidate {', '.join(unknown)} on this {klass} CPU. Expected "
                              f"some of: {', '.join(c.id for c in cands)} (and their -cls variants)")
        cands = [c for c in cands if c.id in cfg.only or f"{c.id}-cls" in cfg.only]
    records: dict[str, dict] = {}
    paths: dict[str, Path] = {}
    n_timed = 1 + len(cfg.peers) + len(cfg.baselines)
    reserve = lambda extra_targets=0: (PARITY_FULL_S * cfg.finalists * scale + timing_estimate(  # noqa: E731
        n_timed + len(paths) + extra_targets, len(cfg.workloads), cfg.min_time_s, scale,
        "torch-compile-fp32" in cfg.baselines) + PEER_PREP_S * scale)

    def record(c, b: Built | None, status=None, reason=""):
        records[c.id] = {"id": c.id, "kind": "candidate", "recipe": c.to_dict(), "status": status or b.status,
                         "build_s": b.seconds if b else None, "reason": reason or (b.reason if b else ""),
                         "build_note": b.note if b else "",
                         "ci": None, "full": None, "p50": {}, "p99": {}, "path": str(b.path) if b and b.path else None}

    def build_all(batch, base_for):
        for c in batch:
            cost = (c.cost_s + PARITY_CI_S) * scale
            if not clock.fits(cost + reserve(1)):
                record(c, None, "left-out", f"the budget ({cfg.budget_s:g} s) left no room: about {cost:.0f} s to "
                                            f"build and judge, {clock.elapsed():.0f} s spent")
                log(f"  {c.id}: left out by the budget")
                continue
            base = base_for(c)
            if base is None:
                record(c, None, "crashed", "its [CLS]-pruned fp32 export failed to build")
                continue
            log(f"  {c.id}: {'using the source' if not c.command else 'building'} ...")
            b = build_one(c, base, root, src_sha)
            record(c, b)
            if b.path:
                paths[c.id] = b.path
            log(f"  {c.id}: {b.status}" + (f" in {b.seconds:.0f} s" if b.seconds else "") +
                (f" ({b.note})" if b.note else "") + (f": {b.reason}" if b.reason else ""))

    log(f"optimize {cfg.src} ({src_m.task}) on {cpu.get('model')} [{klass}]: {len(cands)} candidate recipe(s)")
    build_all(cands, lambda c: Path(cfg.src))
    apply_verdicts(records, judge(dict(paths), "ci", log), "ci")

    # OpenVINO: each passing IR again with bucket padding and static shapes (a copy with a runtime default)
    statics = [v for c in cands if records.get(c.id, {}).get("ci") and (v := static_variant(c))
               and (not cfg.only or v.id in cfg.only or c.id in cfg.only)]
    if statics:
        build_all(statics, lambda c: Path(cfg.src))
        apply_verdicts(records, judge({v.id: paths[v.id] for v in statics if v.id in paths}, "ci", log), "ci")
    cands = cands + statics

    # [CLS]-pruned variants of the fastest passing recipes (measured in a short screen, candidates only)
    variants = {c.id: v for c in cands if (v := cls_variant(c, src_m.task))}
    if variants and cfg.cls_top and clock.fits(CLS_EXPORT_S * scale + reserve(cfg.cls_top + 1)):
        passing = {cid: paths[cid] for cid in paths if records[cid]["ci"]}
        if len(passing) > cfg.cls_top:
            log(f"screen: timing {len(passing)} passing candidate(s) on {cfg.rank} to pick the {cfg.cls_top} that "
                f"get a [CLS]-pruned variant")
            sd = time_targets(cfg, passing, report_dir, "screen", workloads=(cfg.rank,), peers=(), baselines=(),
                              min_time_s=min(0.3, cfg.min_time_s), log=lambda m: None)
            st = timings(sd, passing)
            top = sorted(passing, key=lambda cid: (st.get(cid, {}).get("p50", {}).get(cfg.rank, float("inf")), cid))
        else:
            top = list(passing)
        chosen = [cid for cid in top if cid in variants][:cfg.cls_top]
        pick = [variants[cid] for cid in chosen if not cfg.only or cid in cfg.only or variants[cid].id in cfg.only]
        for v in variants.values():
            if v not in pick:
                record(v, None, "left-out", "its unpruned recipe was not among the "
                                            f"{cfg.cls_top} fastest passing ones in the screen")
        if pick:
            log("building the [CLS]-pruned fp32 export ...")
            cls_src = build_cls_source(Path(cfg.src), root, src_sha)
            log(f"  {cls_src.id}: {cls_src.status}" + (f": {cls_src.reason}" if cls_src.reason else ""))
            build_all(pick, lambda c: cls_src.path)
            new = {cid: paths[cid] for cid in (v.id for v in pick) if cid in paths}
            apply_verdicts(records, judge(new, "ci", log), "ci")
    elif variants:
        for v in variants.values():
            record(v, None, "left-out", f"the budget ({cfg.budget_s:g} s) left no room for [CLS]-pruned variants"
                   if cfg.cls_top else "--cls-top 0")

    # one interleaved timing: every passing candidate, the peers, PyTorch
    passing = {cid: paths[cid] for cid in paths if records[cid]["ci"]}
    if not passing:
        raise no_winner(records)
    log(f"timing {len(passing)} candidate(s), {len(cfg.peers)} peer(s) and {len(cfg.baselines)} baseline(s) on "
        f"{', '.join(cfg.workloads)}, interleaved in one process")
    bench = time_targets(cfg, passing, report_dir, "bench", workloads=cfg.workloads, peers=cfg.peers,
                         baselines=cfg.baselines, min_time_s=cfg.min_time_s, log=log)
    tm = timings(bench, passing)
    for cid, t in tm.items():
        if cid in records:
            records[cid].update(t)
        else:
            kind = "baseline" if cid.startswith("torch-") and cid != "torch-compile-fp32" else "peer"
            records[cid] = {"id": cid, "kind": kind, "status": "timed", **t}
    for t in bench["targets"]:
        if t["status"] != "ok" and t["id"] not in records:
            records[t["id"]] = {"id": t["id"], "kind": "baseline" if t["id"] == selection.BASELINE else "peer",
                                "status": "skipped", "reason": t.get("reason", ""), "p50": {}, "p99": {}}

    if cfg.judge_peers:
        judge_peers(cfg, bench, root, src_sha, records, log)

    # finalists on the full held-out corpus, fastest first, until one passes
    while True:
        order = [r for r in selection.ranked(list(records.values()), cfg.rank) if r["full"] is None]
        if not order or any(r["full"] for r in records.values() if r["kind"] == "candidate"):
            break
        batch = {r["id"]: paths[r["id"]] for r in order[:cfg.finalists]}
        log(f"judging finalists on the full corpus: {', '.join(batch)}")
        apply_verdicts(records, judge(batch, "full", log), "full")
    sel = selection.select(list(records.values()), cfg.rank)
    if sel["winner"] is None:
        raise no_winner(records)
    result = summary(cfg, cpu, klass, records, sel, bench, clock, src_m)
    from .profiles import profile_misses

    result["profiles"] = profile_misses(Path(cfg.src), result, paths, bench, clock.fits, log)
    result["seconds"] = round(clock.elapsed(), 1)
    write_winner(paths[sel["winner"]], cfg.out, result)
    from .report import write_all

    result["report_files"] = {k: str(v) for k, v in write_all(result, report_dir).items()}
    return result


def judge_peers(cfg, bench: dict, root: Path, src_sha: str, records: dict, log) -> None:
    """The peers' models through the same parity suite (ci corpus): the report says whether a faster peer's
    answers would pass."""
    from .build import reusable
    from .peers import peer_models, wrap

    paths = {}
    for pid, (backend, files, recipe) in peer_models(cfg.src, bench).items():
        dest = root / "optimize" / src_sha[:16] / "peers" / pid
        try:
            paths[pid] = dest if reusable(dest) else wrap(Path(cfg.src), backend, files, recipe, dest)
        except DeployError as e:
            records[pid]["reason"] = f"could not be judged: {e}"
    if paths:
        log(f"judging the peers' models with the same suite (ci corpus): {', '.join(paths)}")
        apply_verdicts(records, judge(paths, "ci", log), "ci")


def apply_verdicts(records: dict, verdicts: dict, corpus: str) -> None:
    for cid, (ok, reason) in verdicts.items():
        records[cid][corpus] = ok
        if not ok:
            records[cid]["reason"] = reason


def no_winner(records: dict) -> DeployError:
    lines = "; ".join(f"{r['id']}: {selection.why_lost(r, None, '')}" for r in records.values() if r["kind"] == "candidate")
    from runtimes.errors import ParityError

    return ParityError(f"no candidate passed parity, so nothing was written ({lines}). Fix: look at the parity "
                       f"reports (`distilbert-deploy parity ARTIFACT`) or widen the candidate set")


def summary(cfg, cpu, klass, records, sel, bench, clock, src_m) -> dict:
    import datetime as _dt

    win = records[sel["winner"]]
    return {"selected_by": "measurement", "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "command": cfg.command, "source": str(cfg.src), "out": str(cfg.out), "task": src_m.task,
            "model": src_m.source.get("id") or src_m.source.get("name"),
            "cpu": {"model": cpu.get("model"), "class": klass, "flags": [f for f, on in cpu.get("flags", {}).items() if on],
                    "logical_cpus": cpu.get("logical_cpus")},
            "rank": cfg.rank, "workloads": list(cfg.workloads), "budget_s": cfg.budget_s,
            "seconds": round(clock.elapsed(), 1), "winner": sel["winner"], "winner_recipe": win["recipe"],
            "selection": sel, "targets": selection.targets(sel, list(records.values()), cfg.rank),
            "candidates": [records[k] for k in sorted(records, key=lambda k: (records[k]["kind"] != "candidate", k))],
            "bench": {"environment": bench["environment"], "method": bench["method"],
                      "workloads": {r["workload"]: r.get("extra", {}).get("description", "") for r in bench["results"]}}}


def write_winner(path: Path, out: Path, result: dict) -> None:
    """Copy the winning artifact into `out` atomically, with the selection recorded in its manifest's recipe."""
    keep = ("winner", "rank", "cpu", "selection", "targets", "created", "command", "seconds", "budget_s")
    rec = {k: result[k] for k in keep}
    rec["selected_by"] = "measurement"
    rec["candidates"] = [{k: r.get(k) for k in ("id", "kind", "status", "ci", "full", "reason", "p50", "p99")}
                         for r in result["candidates"]]
    rec["built_from"] = str(path)
    copy_artifact(path, out, lambda d: d["recipe"].update(selection=rec))
