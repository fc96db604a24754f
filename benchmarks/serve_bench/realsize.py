"""The real-size case (`make bench-serve`, `distilbert-deploy serve-bench realsize`): a DistilBERT of dim 768 (the
`base-random` built-in, or a saved checkpoint's artifact) at 16, 32, 64 and 128 tokens, one request at a time
(c=1), end to end, with plain transformers alongside, so that the published Infinity figures can be set beside ours
as ratios to plain transformers measured here, in the same run.

Per token count: texts of exactly that many tokens ([CLS] and [SEP] included) cut from the held-out tweets; then
(both in-process ones before and again after the served ones, the faster round of each reported)
- plain transformers: `transformers.pipeline("text-classification")` on the artifact's source model (torch fp32,
  the same weights), one text per call, in this process;
- our pipeline in-process (`load_pipeline`, one text per call): what the service adds nothing to;
- our service (`distilbert-deploy serve`, batching configuration) and each peer asked for, one locust user (c=1),
  one step per token count against one server per engine.
In-process figures are calls per second over the timed calls (ceiling._timed: minimum time and count); served
figures are the locust step's throughput and p50."""
from __future__ import annotations

import datetime as _dt
import json
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

from runtimes.artifact import read_manifest
from runtimes.errors import ConfigError, DeployError

from .config import ServeBenchConfig

SCHEMA_VERSION = 1
TOKENS = (16, 32, 64, 128)
REAL_PEERS = ("infinity", "kserve", "kserve-grpc")
# Hugging Face's commercial Infinity, DistilBERT, batch 1, end to end, 2 physical Ice Lake cores (another machine:
# compare ratios to plain transformers, not absolute figures); plain transformers on the same cores
PUBLISHED = {"source": "Hugging Face Infinity (commercial), DistilBERT, batch 1, end to end, 2 physical Ice Lake "
                       "cores; plain transformers on the same cores",
             "infinity_rps": {16: 212.0, 32: 150.0, 64: 97.0, 128: 55.0},
             "transformers_rps": {16: 50.0, 32: 40.0}}


@dataclass(frozen=True)
class RealSizeConfig:
    artifact: Path
    tokens: tuple[int, ...] = TOKENS
    texts: int = 32  # distinct texts per token count, cycled
    warmup_s: float = 2.0
    duration_s: float = 8.0
    max_requests: int = 5000
    inproc_min_time_s: float = 4.0
    inproc_min_iters: int = 20
    batch_size: int = 16  # our server's --max-batch-size (the batching configuration)
    peers: tuple[str, ...] = ()
    quick: bool = False
    out: Path = Path("reports/serve-bench")
    name: str = "realsize"
    command: str = ""

    def __post_init__(self):
        if not self.tokens or any(not isinstance(t, int) or t < 3 for t in self.tokens):
            raise ConfigError(f"tokens must be integers >= 3 ([CLS] text [SEP]); got {self.tokens!r}")
        if bad := [p for p in self.peers if p not in REAL_PEERS]:
            raise ConfigError(f"peer(s) {', '.join(bad)} are not measured in the real-size case. Expected some of: "
                              f"{', '.join(REAL_PEERS)} (or none)")
        if self.texts < 1 or self.max_requests < 1 or self.inproc_min_iters < 1:
            raise ConfigError("texts, max_requests and inproc_min_iters must be >= 1")
        if self.duration_s <= 0 or self.warmup_s < 0 or self.inproc_min_time_s < 0:
            raise ConfigError("duration_s must be > 0; warmup_s and inproc_min_time_s >= 0")


QUICK = dict(texts=8, warmup_s=0.5, duration_s=2.0, max_requests=1000, inproc_min_time_s=0.5, inproc_min_iters=5)


def texts_of_length(tokenizer, n: int, count: int, pool: list[str]) -> list[str]:
    """`count` texts that each encode to exactly n tokens (special tokens included), cut word by word from `pool`
    (texts in order, joined); one-token words ("a") top a text up when the next word would overshoot."""
    size = lambda t: len(tokenizer(t, verbose=False)["input_ids"])
    words = " ".join(pool).split()
    out, k = [], 0
    while len(out) < count and k < len(words):
        text = ""
        while k < len(words) and size((text + " " + words[k]).strip()) <= n:
            text = (text + " " + words[k]).strip()
            k += 1
        if not text:  # a word longer than n tokens on its own: skip it
            k += 1
            continue
        while size(text) < n:
            text = (text + " a").strip()
        if size(text) == n:
            out.append(text)
    if len(out) < count:
        raise ConfigError(f"could not cut {count} texts of exactly {n} tokens from the held-out tweets")
    return out


def transformers_pipeline(artifact: Path):
    """transformers.pipeline on the artifact's source model: the same weights, torch fp32, eager."""
    import transformers

    from sources.models import BUILTINS, load_model

    m = read_manifest(artifact)
    src = m.source.get("id") if m.source.get("kind") == "builtin" else m.source.get("path")
    if not src or (m.source.get("kind") == "builtin" and src not in BUILTINS):
        raise ConfigError(f"'{artifact}' records no source model that plain transformers can load "
                          f"(source {m.source.get('kind')!r}). Fix: export it from a built-in or a local checkpoint")
    lm = load_model(src, m.task)
    return transformers.pipeline(m.task, model=lm.model, tokenizer=lm.tokenizer, device="cpu"), src


def _inproc(call, texts: list[str], cfg: RealSizeConfig) -> dict:
    import numpy as np

    from .ceiling import _timed

    ms = _timed(call, texts, cfg.inproc_min_time_s, cfg.inproc_min_iters)
    return {"rps": 1e3 / float(np.mean(ms)), "p50_ms": float(np.percentile(ms, 50)), "calls": len(ms)}


def run_realsize(cfg: RealSizeConfig, log: Callable[[str], None] = print) -> dict:
    from benchmarks.bench import env as envmod

    from runtimes.base import RuntimeOptions
    from runtimes.pipeline import load_pipeline
    from runtimes.tasks import load_tokenizer

    from .runner import REPO, heldout_texts

    m = read_manifest(cfg.artifact)
    if m.task != "text-classification":
        raise ConfigError(f"the real-size case is text-classification; '{cfg.artifact}' is a {m.task} artifact. "
                          f"Fix: make export-onnx MODEL=base-random")
    tok = load_tokenizer(cfg.artifact)
    pool = heldout_texts(2000)
    texts = {n: texts_of_length(tok, n, cfg.texts, pool) for n in cfg.tokens}
    environment = envmod.capture(REPO)
    created = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    rows = {n: {"tokens": n} for n in cfg.tokens}
    pipe_t, src = transformers_pipeline(cfg.artifact)
    pipe = load_pipeline(cfg.artifact, RuntimeOptions(), batch_size=cfg.batch_size)

    def inproc_round(when: str) -> None:
        """Plain transformers and our pipeline, one after the other at each length; kept per round."""
        for n in cfg.tokens:
            for key, call in (("transformers", pipe_t), ("inprocess", pipe)):
                r = _inproc(call, texts[n], cfg)
                rows[n].setdefault(f"{key}_rounds", {})[when] = r
                log(f"real-size {n} tokens, {when}: {key} in-process {r['rps']:.1f} req/s")

    try:
        inproc_round("before")
        engines, failures = _served(cfg, texts, rows, log)
        inproc_round("after")
    finally:
        pipe.runtime.close()
    for n in cfg.tokens:  # the faster round of each: the hardest denominator for ours, the best in-process for us
        for key in ("transformers", "inprocess"):
            rows[n][key] = max(rows[n][f"{key}_rounds"].values(), key=lambda r: r["rps"])
    environment["load_average_end"] = envmod.cpu_info()["load_average_1_5_15"]
    return {"schema_version": SCHEMA_VERSION, "kind": "serve-bench-realsize", "created": created,
            "command": cfg.command, "artifact": str(cfg.artifact), "model": str(src), "backend": m.backend,
            "precision": m.precision, "dim": _dim(cfg.artifact), "config": _jsonable(asdict(cfg)),
            "environment": environment, "published": PUBLISHED, "engines": engines, "failures": failures,
            "rows": [rows[n] for n in cfg.tokens]}


def _served(cfg: RealSizeConfig, texts: dict, rows: dict, log) -> tuple[dict, list]:
    """Our service and each peer at c=1, one server per engine, one locust step per token count, into rows."""
    from .runner import run_step
    from .server import Server

    scfg = ServeBenchConfig(artifact=cfg.artifact, concurrency=(1,), batch_size=cfg.batch_size,
                            warmup_s=cfg.warmup_s, duration_s=cfg.duration_s, max_requests=cfg.max_requests)
    engines, failures = {}, []
    with tempfile.TemporaryDirectory(prefix="serve-bench-realsize-") as tmp:
        for label in ("ours", *cfg.peers):
            work = Path(tmp) / label
            work.mkdir()
            try:
                with Server(scfg, cfg.batch_size, work / "server.log", None if label == "ours" else label) as server:
                    engines[label] = {"engine": server.engine, "command": server.command, "ready_s": server.ready_s}
                    log(f"real-size {label}: ready in {server.ready_s:.1f} s")
                    for n in cfg.tokens:
                        (work / f"t{n}").mkdir()
                        path = work / f"t{n}" / "texts.json"
                        path.write_text(json.dumps(texts[n]))
                        s = run_step(scfg, server, 1, path, path.parent)
                        rows[n][label] = {"rps": s.throughput_rps, "p50_ms": s.p50_ms, "p99_ms": s.p99_ms,
                                          "requests": s.requests, "errors": s.errors}
                        log(f"real-size {label} {n} tokens: {s.throughput_rps:.1f} req/s, p50 {s.p50_ms:.2f} ms, "
                            f"{s.errors} errors")
                    engines[label]["exit_code"] = server.stop()
            except DeployError as e:
                log(f"real-size {label}: FAILED: {e}")
                failures.append({"label": label, "error": f"{type(e).__name__}: {e}"})
    return engines, failures


def _dim(artifact: Path) -> int | None:
    try:
        return int(json.loads((Path(artifact) / "config.json").read_text()).get("dim"))
    except (OSError, ValueError, TypeError):
        return None


def _jsonable(d: dict) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}


# ---------------------------------------------------------------- rendering (a pure function of the JSON)

def _r(x) -> str:
    return "–" if x is None else f"{x:.1f}"


def _x(a, b) -> str:
    return f"{a / b:.2f}x" if a and b else "–"


def to_markdown(d: dict) -> str:
    from runtimes.hardware import isa_text

    cpu = d["environment"].get("cpu", {})
    labels = [k for k in d["engines"]]
    pub = d["published"]
    L = [f"# Real-size case: `{d['model']}` (dim {d['dim']}) text-classification, {d['backend']} {d['precision']}, "
         f"c=1", "", f"Created {d['created']} by `{d['command']}`.", "",
         f"- **Machine**: {cpu.get('model')}, {cpu.get('physical_cores')} cores / {cpu.get('logical_cpus')} threads, "
         f"flags: {isa_text(cpu)}; load average {cpu.get('load_average_1_5_15')} at start, "
         f"{d['environment'].get('load_average_end')} at end.",
         "- **Texts**: cut from the held-out tweets to exactly N tokens ([CLS] and [SEP] included), "
         f"{d['config']['texts']} per N, cycled; one request (or call) at a time.",
         "- **Plain transformers**: `transformers.pipeline('text-classification')` on the same weights (torch fp32), "
         "in this process, one text per call: no HTTP at all, so its req/s is what a server around it could at best "
         "reach.",
         f"- **Published** ({pub['source']}): another machine; compare the ratios to plain transformers, not the "
         f"req/s.", "",
         "| tokens | plain transformers req/s | our pipeline in-process | "
         + " | ".join(f"{d['engines'][k]['engine'] if k != 'ours' else 'our service'} c=1 req/s (p50 ms)"
                      for k in labels)
         + " | " + " | ".join(f"{k} / transformers" for k in labels)
         + " | published Infinity req/s | published Infinity / transformers |",
         "|---|---|---|" + "---|" * (2 * len(labels) + 2)]
    for row in d["rows"]:
        n, t = row["tokens"], row["transformers"]["rps"]
        cells = [f"{_r(row[k]['rps'])} ({row[k]['p50_ms']:.2f})" + (f", {row[k]['errors']} err" if row[k]["errors"]
                                                                     else "") if k in row else "–" for k in labels]
        ratios = [_x(row[k]["rps"], t) if k in row else "–" for k in labels]
        pi, pt = pub["infinity_rps"].get(str(n), pub["infinity_rps"].get(n)), \
            pub["transformers_rps"].get(str(n), pub["transformers_rps"].get(n))
        L.append(f"| {n} | {_r(t)} | {_r(row['inprocess']['rps'])} | " + " | ".join(cells) + " | "
                 + " | ".join(ratios) + f" | {_r(pi)} | {_x(pi, pt)} |")
    L += ["", "| engine | command | ready after s | exit code after SIGTERM |", "|---|---|---|---|"]
    for k, e in d["engines"].items():
        L.append(f"| {k} | `{e['command']}` | {_r(e['ready_s'])} | {e.get('exit_code')} |")
    for f in d["failures"]:
        L += ["", f"### Failure: {f['label']}", "", "```", f["error"].strip(), "```"]
    return "\n".join(L) + "\n"


def write(d: dict, out: Path, name: str) -> dict[str, Path]:
    from benchmarks.report_io import write_atomic

    paths = {"json": Path(out) / f"{name}.json", "md": Path(out) / f"{name}.md"}
    md = to_markdown(d)
    write_atomic(paths["json"], (json.dumps(d, indent=1) + "\n").encode())
    write_atomic(paths["md"], md.encode())
    return paths


def quick(cfg: RealSizeConfig) -> RealSizeConfig:
    return replace(cfg, quick=True, **QUICK)
