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
from typing import Callable, ClassVar

from benchmarks.report_io import as_dict, parse, write_files
from runtimes.artifact import read_manifest
from runtimes.errors import ConfigError, DeployError

from .config import ServeBenchConfig

TOKENS = (16, 32, 64, 128)
REAL_PEERS = ("infinity", "kserve", "kserve-grpc")


@dataclass(frozen=True)
class Published:
    """Figures published elsewhere, set beside ours as ratios to plain transformers."""
    source: str
    infinity_rps: dict[str, float]  # token count (a JSON key, so a string) -> req/s
    transformers_rps: dict[str, float]


# Hugging Face's commercial Infinity, DistilBERT, batch 1, end to end, 2 physical Ice Lake cores (another machine:
# compare ratios to plain transformers, not absolute figures); plain transformers on the same cores
PUBLISHED = Published("Hugging Face Infinity (commercial), DistilBERT, batch 1, end to end, 2 physical Ice Lake "
                      "cores; plain transformers on the same cores",
                      {"16": 212.0, "32": 150.0, "64": 97.0, "128": 55.0}, {"16": 50.0, "32": 40.0})


@dataclass(frozen=True)
class InProcess:
    """Calls in this process, one text per call (ceiling._timed: minimum time and count)."""
    rps: float  # calls per second over the timed calls
    p50_ms: float
    calls: int


@dataclass(frozen=True)
class Served:
    """One locust step at c=1 against one server."""
    rps: float  # the step's throughput
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int


@dataclass(frozen=True)
class TokenRow:
    tokens: int  # [CLS] and [SEP] included
    transformers_rounds: dict[str, InProcess]  # before / after the served steps -> plain transformers
    inprocess_rounds: dict[str, InProcess]  # before / after -> our pipeline
    transformers: InProcess  # the faster round of each
    inprocess: InProcess
    served: dict[str, Served]  # engine label (ours, a peer) -> its step; an engine that failed before it is absent


@dataclass(frozen=True)
class Engine:
    engine: str  # what it is, with its version
    command: str
    ready_s: float
    exit_code: int | None  # after SIGTERM; None when a step failed first


@dataclass(frozen=True)
class Failure:
    label: str
    error: str


@dataclass(frozen=True)
class RealSizeReport:
    FILE: ClassVar[str] = "realsize.json"
    MADE_BY: ClassVar[str] = "make bench-serve"
    # 2: a row's served steps under `served` (engine label -> step: labels such as kserve-grpc are no field names);
    # in version 1 they sat beside `tokens`, keyed by label, and an engine could lack exit_code. upgrade_from_1
    # reads a version-1 file as version 2.
    SCHEMA_VERSION: ClassVar[int] = 2
    kind: str  # "serve-bench-realsize", to tell it from a serve-bench run's report
    created: str
    command: str
    artifact: str
    model: str  # the source model plain transformers loads
    backend: str
    precision: str
    dim: int | None  # the model's hidden size (its config.json); None when unreadable
    config: dict  # RealSizeConfig as run
    environment: dict  # benchmarks.bench.env.capture(), plus load_average_end
    published: Published
    engines: dict[str, Engine]  # label -> its server
    failures: tuple[Failure, ...]  # engines that could not be measured
    rows: tuple[TokenRow, ...]  # one per token count
    schema_version: int = SCHEMA_VERSION


_IN_PROCESS_KEYS = ("tokens", "transformers_rounds", "inprocess_rounds", "transformers", "inprocess")


def upgrade_from_1(doc):
    """A version-1 report document as version 2 (a new dict; anything else is returned as it is)."""
    if not isinstance(doc, dict) or doc.get("schema_version") != 1:
        return doc
    rows, engines = doc.get("rows"), doc.get("engines")
    if isinstance(rows, list):
        rows = [{**{k: v for k, v in r.items() if k in _IN_PROCESS_KEYS},
                 "served": {k: v for k, v in r.items() if k not in _IN_PROCESS_KEYS}} if isinstance(r, dict) else r
                for r in rows]
    if isinstance(engines, dict):
        engines = {k: {"exit_code": None, **e} if isinstance(e, dict) else e for k, e in engines.items()}
    return {**doc, "schema_version": 2, "rows": rows, "engines": engines}


def read_report(doc, where: str = RealSizeReport.FILE) -> RealSizeReport:
    """The typed report from its JSON document (version 1 or 2); a malformed one is a ReportError."""
    return parse(RealSizeReport, upgrade_from_1(doc), where)


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


def _inproc(call, texts: list[str], cfg: RealSizeConfig) -> InProcess:
    import numpy as np

    from .ceiling import _timed

    ms = _timed(call, texts, cfg.inproc_min_time_s, cfg.inproc_min_iters)
    return InProcess(1e3 / float(np.mean(ms)), float(np.percentile(ms, 50)), len(ms))


def run_realsize(cfg: RealSizeConfig, log: Callable[[str], None] = print) -> dict:
    """The real-size case run; its report document (RealSizeReport as JSON data)."""
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
    rounds = {(n, key): {} for n in cfg.tokens for key in ("transformers", "inprocess")}  # -> {when: InProcess}
    served = {n: {} for n in cfg.tokens}  # -> {label: Served}
    pipe_t, src = transformers_pipeline(cfg.artifact)
    pipe = load_pipeline(cfg.artifact, RuntimeOptions(), batch_size=cfg.batch_size)

    def inproc_round(when: str) -> None:
        """Plain transformers and our pipeline, one after the other at each length; kept per round."""
        for n in cfg.tokens:
            for key, call in (("transformers", pipe_t), ("inprocess", pipe)):
                r = rounds[n, key][when] = _inproc(call, texts[n], cfg)
                log(f"real-size {n} tokens, {when}: {key} in-process {r.rps:.1f} req/s")

    try:
        inproc_round("before")
        engines, failures = _served(cfg, texts, served, log)
        inproc_round("after")
    finally:
        pipe.runtime.close()

    def faster(n: int, key: str) -> InProcess:  # the hardest denominator for ours, the best in-process for us
        return max(rounds[n, key].values(), key=lambda r: r.rps)

    rows = tuple(TokenRow(n, rounds[n, "transformers"], rounds[n, "inprocess"], faster(n, "transformers"),
                          faster(n, "inprocess"), served[n]) for n in cfg.tokens)
    environment["load_average_end"] = envmod.cpu_info()["load_average_1_5_15"]
    report = RealSizeReport("serve-bench-realsize", created, cfg.command, str(cfg.artifact), str(src), m.backend,
                            m.precision, _dim(cfg.artifact), _jsonable(asdict(cfg)), environment, PUBLISHED,
                            engines, tuple(failures), rows)
    return as_dict(report)


def _served(cfg: RealSizeConfig, texts: dict, served: dict, log) -> tuple[dict[str, Engine], list[Failure]]:
    """Our service and each peer at c=1, one server per engine, one locust step per token count, into served."""
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
                    engines[label] = Engine(server.engine, server.command, server.ready_s, None)
                    log(f"real-size {label}: ready in {server.ready_s:.1f} s")
                    for n in cfg.tokens:
                        (work / f"t{n}").mkdir()
                        path = work / f"t{n}" / "texts.json"
                        path.write_text(json.dumps(texts[n]))
                        s = run_step(scfg, server, 1, path, path.parent)
                        served[n][label] = Served(s.throughput_rps, s.p50_ms, s.p99_ms, s.requests, s.errors)
                        log(f"real-size {label} {n} tokens: {s.throughput_rps:.1f} req/s, p50 {s.p50_ms:.2f} ms, "
                            f"{s.errors} errors")
                    engines[label] = replace(engines[label], exit_code=server.stop())
            except DeployError as e:
                log(f"real-size {label}: FAILED: {e}")
                failures.append(Failure(label, f"{type(e).__name__}: {e}"))
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


def _cell(s: Served | None) -> str:
    if s is None:
        return "–"
    return f"{_r(s.rps)} ({s.p50_ms:.2f})" + (f", {s.errors} err" if s.errors else "")


def to_markdown(doc: dict) -> str:
    from runtimes.hardware import isa_text

    d = read_report(doc)
    cpu = d.environment.get("cpu", {})
    labels = list(d.engines)
    pub = d.published
    L = [f"# Real-size case: `{d.model}` (dim {d.dim}) text-classification, {d.backend} {d.precision}, c=1", "",
         f"Created {d.created} by `{d.command}`.", "",
         f"- **Machine**: {cpu.get('model')}, {cpu.get('physical_cores')} cores / {cpu.get('logical_cpus')} threads, "
         f"flags: {isa_text(cpu)}; load average {cpu.get('load_average_1_5_15')} at start, "
         f"{d.environment.get('load_average_end')} at end.",
         "- **Texts**: cut from the held-out tweets to exactly N tokens ([CLS] and [SEP] included), "
         f"{d.config.get('texts')} per N, cycled; one request (or call) at a time.",
         "- **Plain transformers**: `transformers.pipeline('text-classification')` on the same weights (torch fp32), "
         "in this process, one text per call: no HTTP at all, so its req/s is what a server around it could at best "
         "reach.",
         f"- **Published** ({pub.source}): another machine; compare the ratios to plain transformers, not the req/s.",
         "",
         "| tokens | plain transformers req/s | our pipeline in-process | "
         + " | ".join(f"{d.engines[k].engine if k != 'ours' else 'our service'} c=1 req/s (p50 ms)" for k in labels)
         + " | " + " | ".join(f"{k} / transformers" for k in labels)
         + " | published Infinity req/s | published Infinity / transformers |",
         "|---|---|---|" + "---|" * (2 * len(labels) + 2)]
    for row in d.rows:
        t = row.transformers.rps
        cells = [_cell(row.served.get(k)) for k in labels]
        ratios = [_x(row.served[k].rps, t) if k in row.served else "–" for k in labels]
        pi, pt = pub.infinity_rps.get(str(row.tokens)), pub.transformers_rps.get(str(row.tokens))
        L.append(f"| {row.tokens} | {_r(t)} | {_r(row.inprocess.rps)} | " + " | ".join(cells) + " | "
                 + " | ".join(ratios) + f" | {_r(pi)} | {_x(pi, pt)} |")
    L += ["", "| engine | command | ready after s | exit code after SIGTERM |", "|---|---|---|---|"]
    for k, e in d.engines.items():
        L.append(f"| {k} | `{e.command}` | {_r(e.ready_s)} | {e.exit_code} |")
    for f in d.failures:
        L += ["", f"### Failure: {f.label}", "", "```", f.error.strip(), "```"]
    return "\n".join(L) + "\n"


def write(d: dict, out: Path, name: str) -> dict[str, Path]:
    """OUT/NAME.json and OUT/NAME.md, each written atomically (the Markdown rendered, so the document checked,
    first). NAME is the CLI's --name, so this is report_io.write_files (no PNG), not write_report (FILE only)."""
    report = read_report(d, f"{name}.json")
    return write_files(as_dict(report), Path(out), name, to_markdown, lambda _d, _path: False)


def quick(cfg: RealSizeConfig) -> RealSizeConfig:
    return replace(cfg, quick=True, **QUICK)
